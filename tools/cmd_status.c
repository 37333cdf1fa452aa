/*
 * `edgevault status [--json]` and `edgevault metrics [--out FILE]`: the
 * device, its zones, their keys with their use counts, and the audit
 * trail, read from the store (read-only) and the audit file; metrics in
 * the Prometheus text exposition format for node_exporter's textfile
 * collector (doc/audit.md, "Use counters, status and metrics").
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sodium.h>

#include "audit.h"
#include "audit_read.h"
#include "root/root.h"
#include "tool.h"
#include "uses.h"

/* A key as status shows it: a stored key object, or a destroyed one its counts remember. */
struct key {
	int64_t handle;
	int64_t zone;
	CK_OBJECT_CLASS cls;
	unsigned char *label; /* NULL: none */
	size_t label_len;
	unsigned char *ckid;  /* NULL: none */
	size_t ckid_len;
	int64_t generation;
	const char *state;    /* "current", "retired", "destroyed" */
	int64_t count[EV_USE_OPS];
	int64_t last[EV_USE_OPS];
};

struct zone {
	int64_t id;
	char label[33];
	int64_t revoked;      /* unix time; 0: active */
	unsigned so_fails, user_fails;
	size_t current, retired; /* private and secret keys */
};

struct audit_state {
	char path[4096];
	int exists;
	int64_t size;
	int64_t lines;
	int64_t cp_seq;       /* from <file>.head; 0: none */
	int64_t cp_time;      /* the checkpoint line's time; 0: unknown */
};

struct status {
	ev_config *cfg;
	struct zone *zones;
	size_t nzones;
	struct key *keys;
	size_t nkeys;
	struct audit_state audit;
	int64_t revlist_seq;  /* the highest sequence of an applied list; 0: none */
	int store_ok;         /* 0: the store could not be read (no zones, keys or list shown) */
};

/* Forget what was read from the store. */
static void
store_clear(struct status *st)
{
	size_t i;

	for (i = 0; i < st->nkeys; i++) {
		free(st->keys[i].label);
		free(st->keys[i].ckid);
	}
	free(st->keys);
	free(st->zones);
	st->keys = NULL;
	st->nkeys = 0;
	st->zones = NULL;
	st->nzones = 0;
	st->revlist_seq = 0;
}

static void
status_clear(struct status *st)
{
	store_clear(st);
	ev_config_free(st->cfg);
	memset(st, 0, sizeof(*st));
}

static const char *
class_name(CK_OBJECT_CLASS c)
{
	switch (c) {
	case CKO_PRIVATE_KEY:
		return "private";
	case CKO_PUBLIC_KEY:
		return "public";
	case CKO_SECRET_KEY:
		return "secret";
	default:
		return "other";
	}
}

static int
is_key_class(CK_OBJECT_CLASS c)
{
	return c == CKO_PRIVATE_KEY || c == CKO_PUBLIC_KEY || c == CKO_SECRET_KEY;
}

static struct key *
key_add(struct status *st)
{
	struct key *v = realloc(st->keys, (st->nkeys + 1) * sizeof(*v));

	if (v == NULL)
		return NULL;
	st->keys = v;
	memset(&v[st->nkeys], 0, sizeof(v[0]));
	return &v[st->nkeys++];
}

/* The stored keys by handle, for finding a use row's key (not one search of all per row). */
struct key_ref {
	int64_t handle;
	size_t i; /* in st->keys */
};

static int
key_ref_cmp(const void *a, const void *b)
{
	const struct key_ref *x = a, *y = b;

	return x->handle < y->handle ? -1 : x->handle > y->handle;
}

/* The index of the stored keys (st->keys now) by handle; NULL when out of memory. */
static struct key_ref *
key_index(const struct status *st)
{
	struct key_ref *v = malloc((st->nkeys ? st->nkeys : 1) * sizeof(*v));
	size_t i;

	if (v == NULL)
		return NULL;
	for (i = 0; i < st->nkeys; i++) {
		v[i].handle = st->keys[i].handle;
		v[i].i = i;
	}
	qsort(v, st->nkeys, sizeof(*v), key_ref_cmp);
	return v;
}

/* Copy an attribute's bytes (NULL when absent); -1 when out of memory. */
static int
attr_dup(const ev_attrs *a, CK_ATTRIBUTE_TYPE type, unsigned char **out, size_t *len)
{
	const CK_ATTRIBUTE *at = ev_attrs_get(a, type);

	*out = NULL;
	*len = 0;
	if (at == NULL)
		return 0;
	*out = malloc(at->ulValueLen + 1);
	if (*out == NULL)
		return -1;
	memcpy(*out, at->pValue, at->ulValueLen);
	*len = at->ulValueLen;
	return 0;
}

/* The key objects of a zone: stored ones, private and retired ones (public halves too). */
static CK_RV
read_keys(ev_store *s, struct status *st, struct zone *z)
{
	int64_t *ids = NULL;
	size_t n = 0, i;
	ev_obj_rec rec;
	struct key *k;
	CK_RV rv;

	rv = ev_store_obj_key_ids(s, z->id, &ids, &n);
	for (i = 0; rv == CKR_OK && i < n; i++) {
		int64_t id = ids[i];

		memset(&rec, 0, sizeof(rec));
		rv = ev_store_obj_get(s, id, &rec);
		if (rv != CKR_OK)
			break;
		if (is_key_class(rec.cls)) {
			k = key_add(st);
			if (k == NULL || attr_dup(rec.attrs, CKA_LABEL, &k->label, &k->label_len) != 0 ||
			    attr_dup(rec.attrs, CKA_ID, &k->ckid, &k->ckid_len) != 0) {
				rv = CKR_HOST_MEMORY;
			} else {
				k->handle = id;
				k->zone = z->id;
				k->cls = rec.cls;
				k->generation = rec.generation;
				k->state = rec.retired != 0 ? "retired" : "current";
				if (rec.cls != CKO_PUBLIC_KEY) {
					if (rec.retired != 0)
						z->retired++;
					else
						z->current++;
				}
			}
		}
		ev_obj_rec_clear(&rec);
	}
	free(ids);
	return rv;
}

static int
op_index(const char *name)
{
	int i;

	for (i = 0; i < EV_USE_OPS; i++)
		if (strcmp(ev_use_op_name((ev_use_op)i), name) == 0)
			return i;
	return -1;
}

/*
 * The use counts, onto the keys; a key no longer stored is listed as
 * destroyed. The rows come by zone, object and operation: a key's rows
 * follow each other, so each object is looked up once, by bsearch.
 */
static CK_RV
read_uses(ev_store *s, struct status *st)
{
	ev_use_rec *v = NULL;
	struct key_ref *idx = NULL, want, *found;
	size_t n = 0, i, nstored = st->nkeys, cur = 0;
	int64_t cur_object = 0;
	struct key *k;
	int op;
	CK_RV rv;

	rv = ev_store_use_list(s, &v, &n);
	if (rv == CKR_OK && n > 0 && (idx = key_index(st)) == NULL)
		rv = CKR_HOST_MEMORY;
	for (i = 0; rv == CKR_OK && i < n; i++) {
		op = op_index(v[i].op);
		if (op < 0)
			continue; /* an operation a later version counts */
		if (cur_object == 0 || v[i].object != cur_object) {
			want.handle = v[i].object;
			found = bsearch(&want, idx, nstored, sizeof(*idx), key_ref_cmp);
			if (found != NULL)
				cur = found->i;
			else {
				k = key_add(st);
				if (k == NULL) {
					rv = CKR_HOST_MEMORY;
					break;
				}
				k->handle = v[i].object;
				k->zone = v[i].zone;
				k->cls = v[i].cls;
				k->generation = v[i].generation;
				k->state = "destroyed";
				k->label = v[i].label;
				k->label_len = v[i].label_len;
				v[i].label = NULL; /* transferred */
				k->ckid = v[i].ckid;
				k->ckid_len = v[i].ckid_len;
				v[i].ckid = NULL; /* transferred */
				cur = st->nkeys - 1;
			}
			cur_object = v[i].object;
		}
		k = &st->keys[cur];
		k->count[op] += v[i].count;
		if (v[i].last_use > k->last[op])
			k->last[op] = v[i].last_use;
	}
	for (i = 0; i < n; i++)
		ev_use_rec_clear(&v[i]);
	free(v);
	free(idx);
	return rv;
}

static CK_RV
read_zones(ev_store *s, struct status *st)
{
	int64_t *ids = NULL;
	size_t n = 0, i;
	ev_zone_rec z;
	CK_RV rv;

	rv = ev_store_zone_list(s, &ids, &n);
	if (rv == CKR_OK && n > 0) {
		st->zones = calloc(n, sizeof(*st->zones));
		if (st->zones == NULL)
			rv = CKR_HOST_MEMORY;
	}
	for (i = 0; rv == CKR_OK && i < n; i++) {
		struct zone *zz = &st->zones[st->nzones];

		memset(&z, 0, sizeof(z));
		rv = ev_store_zone_get(s, ids[i], &z);
		if (rv != CKR_OK)
			break;
		zz->id = ids[i];
		unpad(zz->label, z.label, sizeof(z.label));
		zz->revoked = z.revoked;
		zz->so_fails = z.so_fails;
		zz->user_fails = z.user_fails;
		ev_zone_rec_clear(&z);
		st->nzones++;
		rv = read_keys(s, st, zz);
	}
	free(ids);
	return rv;
}

static CK_RV
read_revocation(ev_store *s, struct status *st)
{
	ev_revlog_rec *v = NULL;
	size_t n = 0, i;
	CK_RV rv;

	rv = ev_store_revlog_list(s, &v, &n);
	for (i = 0; i < n; i++) {
		if (v[i].applied && v[i].sequence > st->revlist_seq)
			st->revlist_seq = v[i].sequence;
		ev_revlog_rec_clear(&v[i]);
	}
	free(v);
	return rv;
}

/*
 * The audit file: size, lines, and the last checkpoint <file>.head names
 * (doc/audit.md), with its time from the checkpoint line of that seq;
 * read by src/audit_read.h (a snapshot under its lock), without parsing
 * or hashing every line: the cost does not grow with the trail's
 * history. A file that cannot be read is said on stderr.
 */
static void
read_audit(struct status *st)
{
	struct audit_state *a = &st->audit;
	ev_audit_reader *r = NULL;
	ev_audit_stat s;
	char err[512] = "";
	CK_RV rv;

	if (ev_audit_path(st->cfg, a->path, sizeof(a->path)) == NULL)
		return;
	rv = ev_audit_reader_open(a->path, &r, err, sizeof(err));
	if (rv != CKR_OK) {
		if (rv != EVR_NOT_FOUND)
			fprintf(stderr, "edgevault: audit: %s\n", err);
		return;
	}
	a->exists = 1;
	a->size = (int64_t)ev_audit_reader_size(r);
	rv = ev_audit_reader_stat(r, &s, err, sizeof(err));
	if (rv == CKR_OK) {
		a->lines = (int64_t)s.lines;
		a->cp_seq = s.head_seq;
		a->cp_time = s.head_time_us / 1000000;
	} else
		fprintf(stderr, "edgevault: audit: %s\n", err);
	ev_audit_reader_free(r);
}

/*
 * Everything status and metrics show. 0; 1 after saying why when the
 * store cannot be read (st->store_ok 0: the configuration and the audit
 * trail are read all the same); -1 after saying why when the
 * configuration cannot be read (nothing to show).
 */
static int
status_read(struct status *st)
{
	ev_store *s = NULL;
	char err[512] = "";
	CK_RV rv;

	if (load_config(&st->cfg) != 0)
		return -1;
	read_audit(st);
	if (ev_store_open(st->cfg->store_dir, EV_STORE_READONLY, &s, err, sizeof(err)) != CKR_OK) {
		fprintf(stderr, "edgevault: store: %s\n", err);
		return 1;
	}
	rv = read_zones(s, st);
	if (rv == CKR_OK)
		rv = read_uses(s, st);
	if (rv == CKR_OK)
		rv = read_revocation(s, st);
	ev_store_close(s);
	if (rv != CKR_OK) {
		fprintf(stderr, "edgevault: cannot read the store: %s\n", ckr_name(rv));
		store_clear(st); /* partly read: none of it is shown */
		return 1;
	}
	st->store_ok = 1;
	return 0;
}

static size_t
active_zones(const struct status *st)
{
	size_t i, n = 0;

	for (i = 0; i < st->nzones; i++)
		n += st->zones[i].revoked == 0;
	return n;
}

/* Bytes as a JSON string: prefix then lowercase hex; null when absent. */
static json_object *
json_hex(const char *prefix, const unsigned char *p, size_t n)
{
	size_t plen = strlen(prefix);
	char *hex;
	json_object *o;

	if (p == NULL)
		return NULL;
	hex = malloc(plen + 2 * n + 1);
	if (hex == NULL)
		return NULL;
	memcpy(hex, prefix, plen);
	sodium_bin2hex(hex + plen, 2 * n + 1, p, n);
	o = json_object_new_string(hex);
	free(hex);
	return o;
}

/* A label as JSON: a string when UTF-8, else "hex:..."; null when absent. */
static json_object *
json_label(const unsigned char *p, size_t n)
{
	if (p != NULL && is_utf8(p, n))
		return json_object_new_string_len((const char *)p, (int)n);
	return json_hex("hex:", p, n);
}

static json_object *
json_time(int64_t t)
{
	char buf[32];

	return t != 0 ? json_object_new_string(iso_time(t, buf)) : NULL;
}

static json_object *
json_key(const struct key *k)
{
	json_object *o = json_object_new_object(), *u = json_object_new_object(), *c;
	int i;

	json_object_object_add(o, "handle", json_object_new_int64(k->handle));
	json_object_object_add(o, "class", json_object_new_string(class_name(k->cls)));
	json_object_object_add(o, "label", json_label(k->label, k->label_len));
	json_object_object_add(o, "id", json_hex("", k->ckid, k->ckid_len));
	json_object_object_add(o, "generation", json_object_new_int64(k->generation));
	json_object_object_add(o, "state", json_object_new_string(k->state));
	for (i = 0; i < EV_USE_OPS; i++) {
		if (k->count[i] == 0)
			continue;
		c = json_object_new_object();
		json_object_object_add(c, "count", json_object_new_int64(k->count[i]));
		json_object_object_add(c, "last_use", json_time(k->last[i]));
		json_object_object_add(u, ev_use_op_name((ev_use_op)i), c);
	}
	json_object_object_add(o, "uses", u);
	return o;
}

static json_object *
json_zone(const struct status *st, const struct zone *z)
{
	json_object *o = json_object_new_object(), *x, *keys = json_object_new_array();
	unsigned max = st->cfg->pin_max_fails;
	size_t i;

	json_object_object_add(o, "id", json_object_new_int64(z->id));
	json_object_object_add(o, "label",
	    json_label((const unsigned char *)z->label, strnlen(z->label, sizeof(z->label))));
	json_object_object_add(o, "state", json_object_new_string(z->revoked ? "revoked" : "active"));
	json_object_object_add(o, "revoked_at", json_time(z->revoked));
	x = json_object_new_object();
	json_object_object_add(x, "current", json_object_new_int64((int64_t)z->current));
	json_object_object_add(x, "retired", json_object_new_int64((int64_t)z->retired));
	json_object_object_add(o, "keys", x);
	x = json_object_new_object();
	json_object_object_add(x, "so", json_object_new_int64(z->so_fails));
	json_object_object_add(x, "user", json_object_new_int64(z->user_fails));
	json_object_object_add(o, "pin_failures", x);
	x = json_object_new_object();
	json_object_object_add(x, "so", json_object_new_boolean(z->so_fails >= max));
	json_object_object_add(x, "user", json_object_new_boolean(z->user_fails >= max));
	json_object_object_add(o, "pin_locked", x);
	for (i = 0; i < st->nkeys; i++)
		if (st->keys[i].zone == z->id)
			json_object_array_add(keys, json_key(&st->keys[i]));
	json_object_object_add(o, "objects", keys);
	return o;
}

static json_object *
json_audit(const struct audit_state *a)
{
	json_object *o = json_object_new_object(), *c = NULL;

	json_object_object_add(o, "file", json_object_new_string(a->path));
	json_object_object_add(o, "exists", json_object_new_boolean(a->exists));
	json_object_object_add(o, "size", json_object_new_int64(a->size));
	json_object_object_add(o, "lines", json_object_new_int64(a->lines));
	if (a->cp_seq != 0) {
		c = json_object_new_object();
		json_object_object_add(c, "seq", json_object_new_int64(a->cp_seq));
		json_object_object_add(c, "time", json_time(a->cp_time));
	}
	json_object_object_add(o, "last_checkpoint", c);
	return o;
}

static void
print_status_json(const struct status *st, int root_ok)
{
	json_object *o = json_object_new_object(), *x, *zones = json_object_new_array();
	size_t i;

	json_object_object_add(o, "config", json_object_new_string(st->cfg->path));
	json_object_object_add(o, "device", json_object_new_string(st->cfg->device_id));
	x = json_object_new_object();
	json_object_object_add(x, "backend", json_object_new_string(st->cfg->root_backend));
	json_object_object_add(x, "reachable", json_object_new_boolean(root_ok));
	json_object_object_add(o, "root", x);
	x = json_object_new_object();
	json_object_object_add(x, "dir", json_object_new_string(st->cfg->store_dir));
	json_object_object_add(x, "ok", json_object_new_boolean(st->store_ok));
	json_object_object_add(o, "store", x);
	for (i = 0; i < st->nzones; i++)
		json_object_array_add(zones, json_zone(st, &st->zones[i]));
	json_object_object_add(o, "zones", zones);
	json_object_object_add(o, "audit", json_audit(&st->audit));
	x = json_object_new_object();
	json_object_object_add(x, "sequence",
	    st->revlist_seq != 0 ? json_object_new_int64(st->revlist_seq) : NULL);
	json_object_object_add(o, "revocation", x);
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
}

static void
print_key_text(const struct key *k)
{
	char buf[32];
	int i, any = 0;

	printf("  key %lld %s ", (long long)k->handle, class_name(k->cls));
	if (k->label != NULL) {
		putchar('"');
		print_text(k->label, k->label_len, 1);
		putchar('"');
	} else {
		printf("(no label)");
	}
	if (k->ckid != NULL && k->ckid_len > 0) {
		printf(" id ");
		print_hex(k->ckid, k->ckid_len);
	}
	printf(" generation %lld, %s:", (long long)k->generation, k->state);
	for (i = 0; i < EV_USE_OPS; i++) {
		if (k->count[i] == 0)
			continue;
		printf("%s %s %lld (last %s)", any ? "," : "", ev_use_op_name((ev_use_op)i),
		    (long long)k->count[i], iso_time(k->last[i], buf));
		any = 1;
	}
	printf("%s\n", any ? "" : " unused");
}

static void
print_status_text(const struct status *st, int root_ok, const char *root_err)
{
	const struct audit_state *a = &st->audit;
	unsigned max = st->cfg->pin_max_fails;
	char buf[32];
	size_t i, j;

	printf("configuration: %s\n", st->cfg->path);
	printf("device:        %s\n", st->cfg->device_id);
	printf("root:          %s: %s\n", st->cfg->root_backend, root_ok ? "reachable" : root_err);
	printf("store:         %s: %s\n", st->cfg->store_dir,
	    st->store_ok ? "ok" : "cannot be read");
	printf("zones:         %zu\n", active_zones(st));
	if (!a->exists)
		printf("audit:         %s: absent\n", a->path);
	else
		printf("audit:         %s: %lld bytes, %lld lines\n", a->path, (long long)a->size,
		    (long long)a->lines);
	if (a->cp_seq != 0)
		printf("checkpoint:    seq %lld at %s\n", (long long)a->cp_seq,
		    a->cp_time != 0 ? iso_time(a->cp_time, buf) : "(time unknown)");
	else
		printf("checkpoint:    none\n");
	if (st->revlist_seq != 0)
		printf("revocation:    list sequence %lld applied\n", (long long)st->revlist_seq);
	else
		printf("revocation:    no list applied\n");
	for (i = 0; i < st->nzones; i++) {
		const struct zone *z = &st->zones[i];

		printf("zone %lld \"", (long long)z->id);
		print_text((const unsigned char *)z->label, strnlen(z->label, sizeof(z->label)), 1);
		printf("\": %s, keys %zu current, %zu retired; PIN failures SO %u%s, user %u%s\n",
		    z->revoked ? "revoked" : "active", z->current,
		    z->retired, z->so_fails, z->so_fails >= max ? " (locked)" : "", z->user_fails,
		    z->user_fails >= max ? " (locked)" : "");
		for (j = 0; j < st->nkeys; j++)
			if (st->keys[j].zone == z->id)
				print_key_text(&st->keys[j]);
	}
}

int
cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	struct status st;
	ev_root *root = NULL;
	char root_err[512] = "";
	int c, root_ok, read_rc;

	memset(&st, 0, sizeof(st));
	sub_begin();
	while ((c = sub_option("status", argc, argv, opts)) != -1) {
		if (c != 'j')
			return 2;
		json = 1;
	}
	if (optind != argc) {
		fprintf(stderr, "usage: edgevault status [--json]\n");
		return 2;
	}
	/* An unreadable store is shown as such, with what else is known. */
	read_rc = status_read(&st);
	if (read_rc < 0) {
		status_clear(&st);
		return 1;
	}
	root_ok = ev_root_open(st.cfg, 0, &root, root_err, sizeof(root_err)) == CKR_OK;
	ev_root_free(root);
	if (json)
		print_status_json(&st, root_ok);
	else
		print_status_text(&st, root_ok, root_err);
	status_clear(&st);
	if (flush_stdout() != 0)
		return 1;
	return root_ok && read_rc == 0 ? 0 : 1;
}

/*
 * Metrics. A growing buffer: the text is made whole, then written at
 * once (to a temporary file renamed over FILE, or to stdout).
 */
struct buf {
	char *p;
	size_t len, cap;
	int bad;
};

static void
put_str(struct buf *b, const char *s, size_t n)
{
	char *np;

	if (b->bad)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;

		np = realloc(b->p, cap);
		if (np == NULL) {
			b->bad = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void __attribute__((format(printf, 2, 3)))
put_fmt(struct buf *b, const char *f, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	va_start(ap, f);
	n = vsnprintf(tmp, sizeof(tmp), f, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		b->bad = 1;
		return;
	}
	put_str(b, tmp, (size_t)n);
}

/* A label value, escaped as the exposition format says: backslash, double quote, newline. */
static void
put_label_value(struct buf *b, const unsigned char *p, size_t n)
{
	char hex[3];
	size_t i;

	if (!is_utf8(p, n)) {
		put_str(b, "hex:", 4);
		for (i = 0; i < n; i++) {
			snprintf(hex, sizeof(hex), "%02x", p[i]);
			put_str(b, hex, 2);
		}
		return;
	}
	for (i = 0; i < n; i++) {
		if (p[i] == '\\')
			put_str(b, "\\\\", 2);
		else if (p[i] == '"')
			put_str(b, "\\\"", 2);
		else if (p[i] == '\n')
			put_str(b, "\\n", 2);
		else
			put_str(b, (const char *)&p[i], 1);
	}
}

static void
put_head(struct buf *b, const char *name, const char *type, const char *help)
{
	put_fmt(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{zone="Z",label="L",id="I",generation="G",class="C",handle="H"} for a key; operation added by the caller. */
static void
put_key_labels(struct buf *b, const char *name, const struct key *k)
{
	char hex[3];
	size_t i;

	put_fmt(b, "%s{zone=\"%lld\",label=\"", name, (long long)k->zone);
	if (k->label != NULL)
		put_label_value(b, k->label, k->label_len);
	put_str(b, "\",id=\"", 6);
	for (i = 0; k->ckid != NULL && i < k->ckid_len; i++) {
		snprintf(hex, sizeof(hex), "%02x", k->ckid[i]);
		put_str(b, hex, 2);
	}
	put_fmt(b, "\",generation=\"%lld\",class=\"%s\",handle=\"%lld\"", (long long)k->generation,
	    class_name(k->cls), (long long)k->handle);
}

static void
metrics_keys(struct buf *b, const struct status *st, int last)
{
	size_t i;
	int op;

	if (last)
		put_head(b, "edgevault_key_last_use_timestamp_seconds", "gauge",
		    "Unix time of a key's last completed operation of a kind.");
	else
		put_head(b, "edgevault_key_operations_total", "counter",
		    "Completed operations per token key and kind (flushed every [audit] "
		    "counters_flush seconds and at C_Finalize).");
	for (i = 0; i < st->nkeys; i++) {
		for (op = 0; op < EV_USE_OPS; op++) {
			if (st->keys[i].count[op] == 0)
				continue;
			put_key_labels(b,
			    last ? "edgevault_key_last_use_timestamp_seconds"
				 : "edgevault_key_operations_total",
			    &st->keys[i]);
			put_fmt(b, ",operation=\"%s\"} %lld\n", ev_use_op_name((ev_use_op)op),
			    (long long)(last ? st->keys[i].last[op] : st->keys[i].count[op]));
		}
	}
}

/* Two samples of a zone: name{zone="Z",label="v1"} n1 and name{zone="Z",label="v2"} n2. */
static void
put_pair(struct buf *b, const char *name, int64_t zone, const char *label, const char *v1,
    long long n1, const char *v2, long long n2)
{
	put_fmt(b, "%s{zone=\"%lld\",%s=\"%s\"} %lld\n", name, (long long)zone, label, v1, n1);
	put_fmt(b, "%s{zone=\"%lld\",%s=\"%s\"} %lld\n", name, (long long)zone, label, v2, n2);
}

static void
metrics_zones(struct buf *b, const struct status *st)
{
	unsigned max = st->cfg->pin_max_fails;
	size_t i;

	put_head(b, "edgevault_zone_info", "gauge", "A zone and its label (always 1).");
	for (i = 0; i < st->nzones; i++) {
		put_fmt(b, "edgevault_zone_info{zone=\"%lld\",label=\"", (long long)st->zones[i].id);
		put_label_value(b, (const unsigned char *)st->zones[i].label,
		    strlen(st->zones[i].label));
		put_str(b, "\"} 1\n", 5);
	}
	put_head(b, "edgevault_zone_revoked", "gauge", "1 when the zone is revoked, else 0.");
	for (i = 0; i < st->nzones; i++)
		put_fmt(b, "edgevault_zone_revoked{zone=\"%lld\"} %d\n", (long long)st->zones[i].id,
		    st->zones[i].revoked != 0);
	put_head(b, "edgevault_zone_keys", "gauge",
	    "Private and secret keys of a zone, current or retired (rotated out).");
	for (i = 0; i < st->nzones; i++)
		put_pair(b, "edgevault_zone_keys", st->zones[i].id, "state", "current",
		    (long long)st->zones[i].current, "retired", (long long)st->zones[i].retired);
	put_head(b, "edgevault_pin_failures", "gauge", "Consecutive failed logins per zone and user.");
	for (i = 0; i < st->nzones; i++)
		put_pair(b, "edgevault_pin_failures", st->zones[i].id, "user", "so",
		    st->zones[i].so_fails, "user", st->zones[i].user_fails);
	put_head(b, "edgevault_pin_locked", "gauge", "1 when the PIN is locked ([pin] max_fails).");
	for (i = 0; i < st->nzones; i++)
		put_pair(b, "edgevault_pin_locked", st->zones[i].id, "user", "so",
		    st->zones[i].so_fails >= max, "user", st->zones[i].user_fails >= max);
}

static void
metrics_text(struct buf *b, const struct status *st)
{
	const struct audit_state *a = &st->audit;

	put_head(b, "edgevault_info", "gauge", "The device (always 1).");
	put_str(b, "edgevault_info{device=\"", 23);
	put_label_value(b, (const unsigned char *)st->cfg->device_id, strlen(st->cfg->device_id));
	put_str(b, "\",root_backend=\"", 16);
	put_label_value(b, (const unsigned char *)st->cfg->root_backend,
	    strlen(st->cfg->root_backend));
	put_str(b, "\"} 1\n", 5);
	metrics_zones(b, st);
	metrics_keys(b, st, 0);
	metrics_keys(b, st, 1);
	put_head(b, "edgevault_audit_file_bytes", "gauge", "Size of the audit file.");
	put_fmt(b, "edgevault_audit_file_bytes %lld\n", (long long)a->size);
	put_head(b, "edgevault_audit_lines", "gauge", "Lines in the audit file.");
	put_fmt(b, "edgevault_audit_lines %lld\n", (long long)a->lines);
	put_head(b, "edgevault_audit_last_checkpoint_seq", "gauge",
	    "The seq of the last signed checkpoint (<file>.head; 0: none).");
	put_fmt(b, "edgevault_audit_last_checkpoint_seq %lld\n", (long long)a->cp_seq);
	put_head(b, "edgevault_audit_last_checkpoint_timestamp_seconds", "gauge",
	    "Unix time of the last signed checkpoint (0: none or unknown).");
	put_fmt(b, "edgevault_audit_last_checkpoint_timestamp_seconds %lld\n",
	    (long long)a->cp_time);
	put_head(b, "edgevault_revocation_list_sequence", "gauge",
	    "The sequence number of the latest revocation list applied (0: none).");
	put_fmt(b, "edgevault_revocation_list_sequence %lld\n", (long long)st->revlist_seq);
}

int
cmd_metrics(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	struct status st;
	struct buf b = { NULL, 0, 0, 0 };
	const char *out = NULL;
	int c, rc = 1;

	memset(&st, 0, sizeof(st));
	sub_begin();
	while ((c = sub_option("metrics", argc, argv, opts)) != -1) {
		if (c != 'o')
			return 2;
		out = optarg;
	}
	if (optind != argc || (out != NULL && *out == '\0')) {
		fprintf(stderr, "usage: edgevault metrics [--out FILE]\n");
		return 2;
	}
	if (status_read(&st) != 0)
		goto out;
	metrics_text(&b, &st);
	if (b.bad) {
		fprintf(stderr, "edgevault: metrics: out of memory\n");
		goto out;
	}
	if (out != NULL) {
		/* node_exporter's textfile collector must never read a half-written file. */
		rc = write_file_atomic(out, b.p, b.len) == 0 ? 0 : 1; /* says why */
	} else {
		rc = write_all(STDOUT_FILENO, b.p, b.len) == 0 ? 0 : 1;
		if (rc != 0)
			fprintf(stderr, "edgevault: the metrics could not be written\n");
	}
out:
	free(b.p);
	status_clear(&st);
	return rc;
}
