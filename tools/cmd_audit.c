/*
 * edgevault audit: the audit trail (doc/audit.md, "The edgevault audit
 * commands").
 *
 *   edgevault [--config FILE] [--module FILE] audit verify [--key BASE64] [--file PATH]
 *       [--json]
 *   edgevault [--config FILE] audit show [--zone N] [--label L] [--id HEX]
 *       [--event KIND[,KIND...]] [--since T] [--until T] [--file PATH] [--json]
 *   edgevault [--config FILE] audit summary [--since T] [--until T] [--file PATH] [--json]
 *   edgevault [--config FILE] [--module FILE] audit checkpoint
 *
 * `verify` trusts the checkpoint key the module confirms under the root
 * (EV_AuditPublicKey), or the one --key gives (an auditor off the
 * device); `show` and `summary` only read (the file, and the store
 * read-only for the keys a zone holds now); `checkpoint` has the module
 * sign one now (EV_AuditCheckpoint). The file is --file, else the
 * configuration's (ev_audit_path()).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "audit.h"
#include "audit_read.h"
#include "store.h"
#include "tool.h"

/* The admin interface version with EV_AuditCheckpoint and EV_AuditPublicKey. */
#define AUDIT_ADMIN_MINOR 3

static void
audit_usage(void)
{
	fprintf(
	    stderr,
	    "usage: edgevault audit verify [--key BASE64] [--file PATH] [--json]\n"
	    "       edgevault audit show [--zone N] [--label LABEL] [--id HEX]\n"
	    "           [--event KIND[,KIND...]] [--since T] [--until T] [--file PATH] [--json]\n"
	    "       edgevault audit summary [--since T] [--until T] [--file PATH] [--json]\n"
	    "       edgevault audit checkpoint\n"
	    "T: 2026-11-24T10:00:00Z (UTC, a fraction of a second allowed) or 2026-11-24\n");
}

/* The kinds --event takes (and their families: the part before the dot). */
static const char *const kinds[] = {
    EV_AUDIT_ZONE_CREATED,
    EV_AUDIT_ZONE_REINITIALISED,
    EV_AUDIT_ZONE_REMOVED,
    EV_AUDIT_ZONE_REVOKED,
    EV_AUDIT_ZONE_REKEYED,
    EV_AUDIT_KEY_GENERATED,
    EV_AUDIT_KEY_IMPORTED,
    EV_AUDIT_KEY_UNWRAPPED,
    EV_AUDIT_KEY_ROTATED,
    EV_AUDIT_KEY_RETIRED,
    EV_AUDIT_KEY_DESTROYED,
    EV_AUDIT_KEY_REVOKED,
    EV_AUDIT_LOGIN,
    EV_AUDIT_PIN_LOCKED,
    EV_AUDIT_PIN_SET,
    EV_AUDIT_ATTESTATION,
    EV_AUDIT_REVOCATION_LIST,
    EV_AUDIT_ROOT_UNREACHABLE,
    EV_AUDIT_ROOT_REACHABLE,
    EV_AUDIT_DEGRADED_ENTERED,
    EV_AUDIT_DEGRADED_LEFT,
    EV_AUDIT_CHECKPOINT,
    EV_AUDIT_TORN,
};

static int
known_kind(const char *k)
{
	size_t i, n = strlen(k);

	for (i = 0; i < EV_ARRAY_SIZE(kinds); i++)
		if (strcmp(kinds[i], k) == 0 ||
		    (strncmp(kinds[i], k, n) == 0 && kinds[i][n] == '.'))
			return 1;
	return 0;
}

/* What the commands that read the file share. */
struct audit_opts {
	const char *file;
	const char *key;
	ev_audit_filter f;
	char *events_buf; /* --event's value, cut at the commas */
	const char *events[EV_ARRAY_SIZE(kinds) + 1];
	char path[4096];
};

/* --since or --until: 0, or 2 after saying why. */
static int
parse_time_opt(const char *cmd, const char *opt, const char *s, int64_t *out, int until)
{
	int64_t start, end;

	if (ev_audit_time_parse(s, &start, &end) != 0) {
		fprintf(
		    stderr,
		    "edgevault audit %s: %s: \"%s\" is not a UTC time (2026-11-24T10:00:00Z) or a "
		    "date (2026-11-24)\n",
		    cmd, opt, s);
		return 2;
	}
	*out = until ? end : start;
	return 0;
}

/* --event KIND[,KIND...]: 0, or 2 after saying why. */
static int
parse_events(struct audit_opts *o, const char *s)
{
	char *p, *save = NULL;

	free(o->events_buf);
	o->events_buf = strdup(s);
	o->f.nevents = 0;
	if (o->events_buf == NULL)
		return 2;
	for (p = strtok_r(o->events_buf, ",", &save); p != NULL; p = strtok_r(NULL, ",", &save)) {
		if (!known_kind(p)) {
			fprintf(stderr,
				"edgevault audit show: --event: unknown event kind \"%s\"\n", p);
			return 2;
		}
		if (o->f.nevents == EV_ARRAY_SIZE(kinds)) {
			fprintf(stderr, "edgevault audit show: --event: too many kinds\n");
			return 2;
		}
		o->events[o->f.nevents++] = p;
	}
	if (o->f.nevents == 0) {
		fprintf(stderr, "edgevault audit show: --event: no kind given\n");
		return 2;
	}
	o->f.events = o->events;
	return 0;
}

/* --id HEX: 0, or 2 after saying why. */
static int
parse_id(const char *s)
{
	unsigned char *id = NULL;
	size_t n = 0;

	if (parse_hex(s, &id, &n) != 0) {
		fprintf(stderr, "edgevault audit show: --id: expected hex, two digits per byte\n");
		return 2;
	}
	free(id);
	return 0;
}

/*
 * The options of `audit <cmd>`; which are allowed depends on cmd. 0, or
 * 2 after saying what is wrong.
 */
static int
audit_options(const char *cmd, int argc, char **argv, struct audit_opts *o)
{
	static const struct option all[] = {
	    {"json", no_argument, NULL, 'j'},	     {"file", required_argument, NULL, 'f'},
	    {"key", required_argument, NULL, 'k'},   {"since", required_argument, NULL, 's'},
	    {"until", required_argument, NULL, 'u'}, {"zone", required_argument, NULL, 'z'},
	    {"label", required_argument, NULL, 'l'}, {"id", required_argument, NULL, 'i'},
	    {"event", required_argument, NULL, 'e'},
	};
	const char *allowed = strcmp(cmd, "verify") == 0    ? "jfk"
			      : strcmp(cmd, "summary") == 0 ? "jfsu"
							    : "jfsuzlie";
	struct option opts[EV_ARRAY_SIZE(all) + 1];
	size_t n = 0, i;
	char full[32];
	unsigned long zone;
	int c, rc = 0;

	for (i = 0; i < EV_ARRAY_SIZE(all); i++)
		if (strchr(allowed, all[i].val) != NULL)
			opts[n++] = all[i];
	memset(&opts[n], 0, sizeof(opts[n]));
	snprintf(full, sizeof(full), "audit %s", cmd);
	sub_begin();
	while (rc == 0 && (c = sub_option(full, argc, argv, opts)) != -1) {
		switch (c) {
		case 'j':
			json = 1;
			break;
		case 'f':
			o->file = optarg;
			break;
		case 'k':
			o->key = optarg;
			break;
		case 's':
			rc = parse_time_opt(cmd, "--since", optarg, &o->f.since, 0);
			o->f.has_since = 1;
			break;
		case 'u':
			rc = parse_time_opt(cmd, "--until", optarg, &o->f.until, 1);
			o->f.has_until = 1;
			break;
		case 'z':
			rc = parse_zone(optarg, &zone);
			o->f.zone = (int64_t)zone;
			break;
		case 'l':
			o->f.label = optarg;
			break;
		case 'i':
			rc = parse_id(optarg);
			o->f.id = optarg;
			break;
		case 'e':
			rc = parse_events(o, optarg);
			break;
		default:
			rc = 2;
		}
	}
	if (rc == 0 && optind != argc) {
		fprintf(stderr, "edgevault audit %s: unexpected argument \"%s\"\n", cmd,
			argv[optind]);
		rc = 2;
	}
	if (rc == 0 && o->f.has_since && o->f.has_until && o->f.until <= o->f.since) {
		fprintf(stderr, "edgevault audit %s: --until is not after --since\n", cmd);
		rc = 2;
	}
	if (rc != 0)
		audit_usage();
	return rc;
}

/* The file to read: --file, else the configuration's. 0, or 1 after saying why. */
static int
audit_file(struct audit_opts *o)
{
	ev_config *cfg = NULL;
	const char *p;

	if (o->file != NULL) {
		snprintf(o->path, sizeof(o->path), "%s", o->file);
		return 0;
	}
	if (load_config(&cfg) != 0)
		return 1;
	p = ev_audit_path(cfg, o->path, sizeof(o->path));
	ev_config_free(cfg);
	if (p == NULL) {
		fprintf(stderr, "edgevault: the audit file's path is too long\n");
		return 1;
	}
	return 0;
}

/* Say why the trail cannot be read; 1. */
static int
cannot_read(const char *err)
{
	fprintf(stderr, "edgevault: cannot read the audit trail: %s\n", err);
	return 1;
}

/* A reader of o->path: NULL after saying why. */
static ev_audit_reader *
audit_open(struct audit_opts *o)
{
	ev_audit_reader *r = NULL;
	char err[512] = "";

	if (ev_audit_reader_open(o->path, &r, err, sizeof(err)) != CKR_OK) {
		(void)cannot_read(err);
		return NULL;
	}
	return r;
}

/*
 * The module loaded (*f, *dl: close_module()) and its admin interface,
 * if it has the audit functions; NULL after saying why, nothing loaded.
 */
static EV_ADMIN_FUNCTION_LIST *
audit_admin(CK_FUNCTION_LIST_3_0 **f, void **dl)
{
	EV_ADMIN_FUNCTION_LIST *a;

	*f = open_module(dl);
	if (*f == NULL)
		return NULL;
	a = admin_interface();
	if (a != NULL && a->version.minor < AUDIT_ADMIN_MINOR) {
		fprintf(stderr,
			"edgevault: the module's admin interface is version %u.%u; the audit "
			"functions need 1.%u\n",
			a->version.major, a->version.minor, AUDIT_ADMIN_MINOR);
		a = NULL;
	}
	if (a == NULL) {
		close_module(*f, *dl);
		*f = NULL;
	}
	return a;
}

/* The checkpoint key as the module confirms it under the root: 0, or 1 after saying why. */
static int
module_key(unsigned char key[32])
{
	CK_FUNCTION_LIST_3_0 *f;
	EV_ADMIN_FUNCTION_LIST *a;
	CK_ULONG len = 32;
	void *dl = NULL;
	CK_RV rv;
	int rc = 1;

	a = audit_admin(&f, &dl);
	if (a == NULL)
		return 1;
	rv = a->EV_AuditPublicKey(key, &len);
	if (rv != CKR_OK || len != 32) {
		fprintf(
		    stderr,
		    "edgevault: the module cannot confirm its checkpoint key under the root (%s); "
		    "give the key with --key to verify without it\n",
		    rv != CKR_OK ? ckr_name(rv) : "not 32 bytes");
		goto out;
	}
	rc = 0;
out:
	close_module(f, dl);
	return rc;
}

/* --key: 0, or 2 after saying why. */
static int
option_key(const char *s, unsigned char key[32])
{
	size_t got = 0;

	if (sodium_base642bin(key, 32, s, strlen(s), NULL, &got, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    got != 32) {
		fprintf(stderr, "edgevault audit verify: --key: expected an Ed25519 public key in "
				"base64 (44 characters)\n");
		return 2;
	}
	return 0;
}

static void
verdict_text(const char *path, const char *b64, const char *source, const ev_audit_verdict *v)
{
	printf("audit trail %s: %s\n", path, v->valid ? "valid" : "NOT VALID");
	printf("trusted checkpoint key: %s (%s)\n", b64, source);
	if (!v->valid)
		printf("%s\n", v->why);
	printf("lines: %zu, checkpoints verified: %zu", v->lines, v->checkpoints);
	if (v->last_checkpoint_seq != 0)
		printf(" (the last: seq %lld, line %zu)", (long long)v->last_checkpoint_seq,
		       v->last_checkpoint_line);
	printf("\n");
	if (v->valid && v->checkpoints == 0 && v->lines > 0)
		printf("warning: no checkpoint: no line is signed yet\n");
	else if (v->valid && v->unsigned_lines > 0)
		printf("warning: %zu line%s after the last checkpoint, not signed yet\n",
		       v->unsigned_lines, v->unsigned_lines == 1 ? "" : "s");
	if (v->torn > 0)
		printf("warning: %zu line%s cut short by a crash; the first: %s\n", v->torn,
		       v->torn == 1 ? "" : "s", v->warning);
	if (v->head_missing)
		printf("warning: no %s.head after the checkpoint on the last line (a crash before "
		       "the head was written, or the head removed)\n",
		       path);
}

static void
verdict_json(const char *path, const char *b64, const char *source, const ev_audit_verdict *v)
{
	printf("{\"file\":");
	json_str(path);
	printf(",\"valid\":%s,\"key\":\"%s\",\"key_source\":\"%s\",\"lines\":%zu,"
	       "\"checkpoints\":%zu,\"last_checkpoint_seq\":%lld,\"last_checkpoint_line\":%zu,"
	       "\"unsigned_lines\":%zu,\"torn\":%zu,\"head_missing\":%s,\"bad_line\":%zu,"
	       "\"error\":",
	       v->valid ? "true" : "false", b64, source, v->lines, v->checkpoints,
	       (long long)v->last_checkpoint_seq, v->last_checkpoint_line,
	       v->valid ? v->unsigned_lines : 0, v->torn, v->head_missing ? "true" : "false",
	       v->bad_line);
	if (v->valid)
		printf("null");
	else
		json_str(v->why);
	printf(",\"warning\":");
	if (v->warning[0] != '\0')
		json_str(v->warning);
	else
		printf("null");
	printf("}\n");
}

static int
cmd_audit_verify(int argc, char **argv)
{
	struct audit_opts o = {0};
	ev_audit_reader *r = NULL;
	ev_audit_verdict v;
	unsigned char key[32];
	char b64[EV_AUDIT_KEY_B64_LEN + 1], err[512] = "";
	const char *source;
	int rc;

	rc = audit_options("verify", argc, argv, &o);
	if (rc == 0 && o.key != NULL && (rc = option_key(o.key, key)) != 0)
		audit_usage();
	if (rc != 0)
		goto out;
	rc = 1;
	if (audit_file(&o) != 0)
		goto out;
	/* The module first: its C_Finalize may add a checkpoint. */
	if (o.key == NULL && module_key(key) != 0)
		goto out;
	source = o.key != NULL ? "given with --key" : "the module's, confirmed under the root";
	sodium_bin2base64(b64, sizeof(b64), key, 32, sodium_base64_VARIANT_ORIGINAL);
	r = audit_open(&o);
	if (r == NULL)
		goto out;
	if (ev_audit_verify(r, key, &v, err, sizeof(err)) != CKR_OK) {
		rc = cannot_read(err);
		goto out;
	}
	if (json)
		verdict_json(o.path, b64, o.key != NULL ? "option" : "module", &v);
	else
		verdict_text(o.path, b64, source, &v);
	if (flush_stdout() != 0)
		goto out;
	if (!v.valid)
		fprintf(stderr, "edgevault: the audit trail is not valid: %s\n", v.why);
	rc = v.valid ? 0 : 1;
out:
	ev_audit_reader_free(r);
	free(o.events_buf);
	return rc;
}

/* show_member()'s quoting: always (free text), or when needed (a name). */
enum { Q_ALWAYS = 1, Q_NEEDED };

/*
 * " name=" and s, escaped; in double quotes always, or when needed: when
 * s is empty or holds a space, '"', '\\' or '=' (unquoted, the rest would
 * read as other members). Nothing when s is NULL.
 */
static void
show_member(const char *name, const char *s, int how)
{
	int quoted;

	if (s == NULL)
		return;
	quoted = how == Q_ALWAYS || *s == '\0' || strpbrk(s, " \"\\=") != NULL;
	printf(" %s=%s", name, quoted ? "\"" : "");
	print_text((const unsigned char *)s, strlen(s), quoted);
	if (quoted)
		printf("\"");
}

/* One line for a person; every string from the file escaped (it may hold anything). */
static void
show_line_text(const ev_audit_line *l)
{
	print_text((const unsigned char *)l->time, strlen(l->time), 0);
	printf(" #%lld ", (long long)l->seq);
	print_text((const unsigned char *)l->event, strlen(l->event), 0);
	printf(" %s", l->outcome);
	if (l->zone != 0)
		printf(" zone=%lld", (long long)l->zone);
	show_member("user", l->user, Q_NEEDED);
	show_member("class", l->cls, Q_NEEDED);
	show_member("key_type", l->key_type, Q_NEEDED);
	show_member("label", l->label, Q_ALWAYS);
	if (l->id != NULL)
		printf(" id=%s", l->id);
	if (l->generation != 0)
		printf(" generation=%lld", (long long)l->generation);
	show_member("reason", l->reason, Q_ALWAYS);
	printf(" pid=%lld", (long long)l->pid);
	show_member("program", l->program, Q_NEEDED);
	printf("\n");
}

/* Say how many lines were left out as not well formed. */
static void
say_skipped(size_t n)
{
	if (n > 0)
		fprintf(stderr,
			"edgevault: %zu line%s not well formed, left out (`edgevault audit verify` "
			"says why)\n",
			n, n == 1 ? "" : "s");
}

static int
cmd_audit_show(int argc, char **argv)
{
	struct audit_opts o = {0};
	ev_audit_reader *r = NULL;
	const ev_audit_line *l = NULL;
	char err[512] = "";
	size_t skipped = 0;
	int rc;

	rc = audit_options("show", argc, argv, &o);
	if (rc != 0)
		goto out;
	rc = 1;
	if (audit_file(&o) != 0 || (r = audit_open(&o)) == NULL)
		goto out;
	for (;;) {
		if (ev_audit_reader_next(r, &l, err, sizeof(err)) != CKR_OK) {
			/* What was printed stands; the exit says it is not all. */
			(void)flush_stdout();
			rc = cannot_read(err);
			goto out;
		}
		if (l == NULL)
			break;
		if (l->problem != NULL)
			skipped++;
		else if (!ev_audit_match(l, &o.f))
			continue;
		else if (json)
			printf("%s\n", l->text);
		else
			show_line_text(l);
	}
	if (flush_stdout() != 0)
		goto out;
	say_skipped(skipped);
	rc = 0;
out:
	ev_audit_reader_free(r);
	free(o.events_buf);
	return rc;
}

/* The keys a zone holds now, by class (retired generations left out). */
struct keys_now {
	int64_t zone;
	size_t n[3]; /* private, public, secret */
};

static const CK_OBJECT_CLASS key_classes[3] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKO_SECRET_KEY};

/* The store's zones and their keys: 0 with *out (malloc'ed), or 1 after saying why. */
static int
store_keys(ev_store *s, struct keys_now **out, size_t *nout)
{
	struct keys_now *k = NULL;
	int64_t *zones = NULL, *ids = NULL;
	size_t nz = 0, i, c, n;
	int rc = 1;

	if (ev_store_zone_list(s, &zones, &nz) != CKR_OK)
		goto out;
	k = calloc(nz + 1, sizeof(*k));
	if (k == NULL)
		goto out;
	for (i = 0; i < nz; i++) {
		k[i].zone = zones[i];
		for (c = 0; c < EV_ARRAY_SIZE(key_classes); c++) {
			ev_obj_query q = {.zone = zones[i],
					  .include_private = 1,
					  .has_class = 1,
					  .cls = key_classes[c]};

			if (ev_store_obj_find(s, &q, &ids, &n) != CKR_OK)
				goto out;
			free(ids);
			ids = NULL;
			k[i].n[c] = n;
		}
	}
	*out = k;
	*nout = nz;
	k = NULL; /* transferred */
	rc = 0;
out:
	if (rc != 0)
		fprintf(stderr, "edgevault: store: cannot count the zones' keys\n");
	free(k);
	free(zones);
	return rc;
}

/*
 * With --file, whether the trail is this device's and this store's: the
 * device its lines name is [device] id, and its last checkpoint (if any)
 * was signed with the store's checkpoint key. 1; 0 with why.
 */
static int
trail_is_ours(const ev_config *cfg, ev_store *st, const ev_audit_summary *s, char *why,
	      size_t whylen)
{
	unsigned char *pk = NULL;
	char b64[EV_AUDIT_KEY_B64_LEN + 1];
	size_t len = 0;
	int ours = 0;

	if (s->device == NULL) {
		snprintf(why, whylen, "no line of the file names its device");
		return 0;
	}
	if (s->several_devices) {
		snprintf(why, whylen, "the file's lines name several devices");
		return 0;
	}
	if (strcmp(s->device, cfg->device_id) != 0) {
		snprintf(why, whylen, "the file is device \"%s\"'s, not this device's (\"%s\")",
			 s->device, cfg->device_id);
		return 0;
	}
	if (s->checkpoint_key[0] == '\0')
		return 1;
	if (ev_store_meta_get(st, EV_META_AUDIT_KEY_PUBLIC, &pk, &len) == CKR_OK && len == 32) {
		sodium_bin2base64(b64, sizeof(b64), pk, len, sodium_base64_VARIANT_ORIGINAL);
		ours = strcmp(b64, s->checkpoint_key) == 0;
	}
	free(pk);
	if (!ours)
		snprintf(why, whylen,
			 "the file's checkpoints are signed with another key than this store's");
	return ours;
}

/*
 * The keys now in the configuration's store: 0 with *k; or 0 with *k
 * NULL, *n 0 and why saying why they are left out, when --file names a
 * trail that is not this store's, or there is no configuration or store
 * to read; or 1 after saying why.
 */
static int
keys_now(const struct audit_opts *o, const ev_audit_summary *sum, struct keys_now **k, size_t *n,
	 char *why, size_t whylen)
{
	ev_config *cfg = NULL;
	ev_store *s = NULL;
	char err[512] = "";
	int rc = 1;

	*k = NULL;
	*n = 0;
	if (ev_config_load(ev_config_path(), &cfg, err, sizeof(err)) != CKR_OK) {
		if (o->file != NULL) {
			snprintf(why, whylen, "no configuration (%s)", err);
			return 0;
		}
		fprintf(stderr, "edgevault: configuration: %s\n", err);
		return 1;
	}
	if (ev_store_open(cfg->store_dir, EV_STORE_READONLY, &s, err, sizeof(err)) != CKR_OK) {
		if (o->file != NULL) {
			snprintf(why, whylen, "no store (%s)", err);
			rc = 0;
		} else
			fprintf(stderr, "edgevault: store: %s\n", err);
	} else if (o->file != NULL && !trail_is_ours(cfg, s, sum, why, whylen))
		rc = 0;
	else
		rc = store_keys(s, k, n);
	ev_store_close(s);
	ev_config_free(cfg);
	return rc;
}

/* The columns of the summary: the zones of the store or the period, the device, the total. */
struct column {
	int64_t zone;		     /* -1: the total */
	const ev_audit_counts *c;    /* NULL: no line in the period */
	const struct keys_now *keys; /* NULL: not in the store */
};

/* Merge the zones of s and of k (both ascending) into columns. */
static struct column *
columns(const ev_audit_summary *s, const struct keys_now *k, size_t nk, size_t *ncol)
{
	struct column *col = calloc(s->nzones + nk + 2, sizeof(*col));
	size_t i = 0, j = 0, n = 0;

	if (col == NULL)
		return NULL;
	/* Zone 0 (the device) goes last, before the total. */
	if (s->nzones > 0 && s->zones[0].zone == 0)
		i = 1;
	while (i < s->nzones || j < nk) {
		if (j >= nk || (i < s->nzones && s->zones[i].zone < k[j].zone)) {
			col[n].zone = s->zones[i].zone;
			col[n++].c = &s->zones[i++];
		} else if (i >= s->nzones || k[j].zone < s->zones[i].zone) {
			col[n].zone = k[j].zone;
			col[n++].keys = &k[j++];
		} else {
			col[n].zone = k[j].zone;
			col[n].c = &s->zones[i++];
			col[n++].keys = &k[j++];
		}
	}
	col[n].zone = 0;
	col[n++].c = s->nzones > 0 && s->zones[0].zone == 0 ? &s->zones[0] : NULL;
	col[n++].zone = -1;
	*ncol = n;
	return col;
}

/* Count i of column c (the total: of all columns before it). */
static uint64_t
count_of(const struct column *col, size_t c, unsigned i)
{
	uint64_t sum = 0;
	size_t j;

	if (col[c].zone != -1)
		return col[c].c != NULL ? col[c].c->n[i] : 0;
	for (j = 0; j < c; j++)
		sum += count_of(col, j, i);
	return sum;
}

/* Keys now of column c by class (3: all); -1 when not known. */
static long long
keys_of(const struct column *col, size_t c, size_t cls, int have_store)
{
	long long sum = 0;
	size_t j, k;

	if (!have_store || col[c].zone == 0)
		return -1;
	if (col[c].zone == -1) {
		for (j = 0; j < c; j++)
			if (col[j].zone != 0)
				sum += keys_of(col, j, cls, have_store);
		return sum;
	}
	if (col[c].keys == NULL)
		return 0;
	if (cls < 3)
		return (long long)col[c].keys->n[cls];
	for (k = 0; k < 3; k++)
		sum += (long long)col[c].keys->n[k];
	return sum;
}

static void
summary_text(const char *path, const ev_audit_summary *s, const struct column *col, size_t ncol,
	     int have_store, const char *left_out)
{
	char name[32];
	size_t c;
	unsigned i;
	long long k;

	printf("audit summary of %s\n", path);
	printf("period: %s to %s, %zu line%s\n", s->first[0] ? s->first : "-",
	       s->last[0] ? s->last : "-", s->lines, s->lines == 1 ? "" : "s");
	if (left_out[0] != '\0') {
		printf("keys now: left out: ");
		print_text((const unsigned char *)left_out, strlen(left_out), 0);
		printf("\n");
	}
	printf("%-26s", "");
	for (c = 0; c < ncol; c++) {
		if (col[c].zone > 0)
			snprintf(name, sizeof(name), "zone %lld", (long long)col[c].zone);
		else
			snprintf(name, sizeof(name), "%s", col[c].zone == 0 ? "device" : "total");
		printf(" %9s", name);
	}
	printf("\n%-26s", "keys now");
	for (c = 0; c < ncol; c++) {
		k = keys_of(col, c, 3, have_store);
		if (k < 0)
			printf(" %9s", "-");
		else
			printf(" %9lld", k);
	}
	printf("\n");
	for (i = 0; i < EV_AUDIT_C_COUNT; i++) {
		printf("%-26s", ev_audit_count_name(i));
		for (c = 0; c < ncol; c++)
			printf(" %9llu", (unsigned long long)count_of(col, c, i));
		printf("\n");
	}
}

static void
counts_json(const struct column *col, size_t c)
{
	unsigned i;

	for (i = 0; i < EV_AUDIT_C_COUNT; i++)
		printf(",\"%s\":%llu", ev_audit_count_name(i),
		       (unsigned long long)count_of(col, c, i));
}

static void
summary_json(const char *path, const ev_audit_summary *s, const struct column *col, size_t ncol,
	     int have_store, const char *left_out)
{
	static const char *const cls[3] = {"private", "public", "secret"};
	size_t c, k;

	printf("{\"file\":");
	json_str(path);
	printf(",\"first\":");
	if (s->first[0] != '\0')
		json_str(s->first);
	else
		printf("null");
	printf(",\"last\":");
	if (s->last[0] != '\0')
		json_str(s->last);
	else
		printf("null");
	printf(",\"keys_now_left_out\":");
	if (left_out[0] != '\0')
		json_str(left_out);
	else
		printf("null");
	printf(",\"lines\":%zu,\"skipped\":%zu,\"zones\":[", s->lines, s->skipped);
	for (c = 0; c + 2 < ncol; c++) {
		printf("%s{\"zone\":%lld,\"keys_now\":", c > 0 ? "," : "", (long long)col[c].zone);
		if (!have_store) {
			printf("null");
		} else {
			printf("{");
			for (k = 0; k < 3; k++)
				printf("%s\"%s\":%lld", k > 0 ? "," : "", cls[k],
				       keys_of(col, c, k, have_store));
			printf("}");
		}
		counts_json(col, c);
		printf("}");
	}
	printf("],\"device\":{\"zone\":0");
	counts_json(col, ncol - 2);
	printf("},\"total\":{\"zone\":null");
	counts_json(col, ncol - 1);
	printf("}}\n");
}

static int
cmd_audit_summary(int argc, char **argv)
{
	struct audit_opts o = {0};
	ev_audit_reader *r = NULL;
	ev_audit_summary s = {0};
	struct keys_now *k = NULL;
	struct column *col = NULL;
	size_t nk = 0, ncol = 0;
	char err[512] = "", left_out[512] = "";
	int rc, have_store;
	CK_RV rv;

	rc = audit_options("summary", argc, argv, &o);
	if (rc != 0)
		goto out;
	rc = 1;
	if (audit_file(&o) != 0 || (r = audit_open(&o)) == NULL)
		goto out;
	rv = ev_audit_summarize(r, &o.f, &s, err, sizeof(err));
	if (rv != CKR_OK) {
		rc = cannot_read(err);
		goto out;
	}
	/* After the lines: whose trail it is decides whether the store's keys go with it. */
	if (keys_now(&o, &s, &k, &nk, left_out, sizeof(left_out)) != 0)
		goto out;
	have_store = k != NULL;
	col = columns(&s, k, nk, &ncol);
	if (col == NULL) {
		fprintf(stderr, "edgevault: out of memory\n");
		goto out;
	}
	if (json)
		summary_json(o.path, &s, col, ncol, have_store, left_out);
	else
		summary_text(o.path, &s, col, ncol, have_store, left_out);
	if (flush_stdout() != 0)
		goto out;
	say_skipped(s.skipped);
	rc = 0;
out:
	free(col);
	free(k);
	ev_audit_summary_clear(&s);
	ev_audit_reader_free(r);
	free(o.events_buf);
	return rc;
}

static int
cmd_audit_checkpoint(int argc, char **argv)
{
	CK_FUNCTION_LIST_3_0 *f;
	EV_ADMIN_FUNCTION_LIST *a;
	void *dl = NULL;
	CK_RV rv;
	int rc = 1;

	if (argc != 1) {
		audit_usage();
		return 2;
	}
	(void)argv;
	a = audit_admin(&f, &dl);
	if (a == NULL)
		return 1;
	rv = a->EV_AuditCheckpoint();
	if (rv != CKR_OK) {
		fprintf(stderr, "edgevault: audit checkpoint: %s%s\n", ckr_name(rv),
			rv == CKR_FUNCTION_REJECTED ? " (the audit is disabled, or the checkpoint "
						      "key is not available)"
			: rv == CKR_DEVICE_ERROR
			    ? " (the root cannot be reached, the file cannot be written, or "
			      "it is shorter than its last checkpoint says)"
			    : "");
		goto out;
	}
	printf("the audit trail is checkpointed up to its last line\n");
	rc = flush_stdout();
out:
	close_module(f, dl);
	return rc;
}

int
cmd_audit(int argc, char **argv)
{
	const char *sub = argc > 0 ? argv[0] : NULL;

	if (sub != NULL && strcmp(sub, "verify") == 0)
		return cmd_audit_verify(argc, argv);
	if (sub != NULL && strcmp(sub, "show") == 0)
		return cmd_audit_show(argc, argv);
	if (sub != NULL && strcmp(sub, "summary") == 0)
		return cmd_audit_summary(argc, argv);
	if (sub != NULL && strcmp(sub, "checkpoint") == 0)
		return cmd_audit_checkpoint(argc, argv);
	fprintf(stderr, "edgevault: unknown command: audit%s%s\n", sub ? " " : "", sub ? sub : "");
	audit_usage();
	return 2;
}
