/*
 * Reading the audit trail: src/audit_read.h, doc/audit.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "audit.h"
#include "audit_read.h"
#include "json.h"

#define HASH_LEN 32
#define KEY_B64_LEN 44
#define SIG_B64_LEN 88
#define HEAD_MAX 256
#define LOCK_WAIT_MS 10000

/* "line N": the doc of ev_json_* messages about line N. */
static const char *
line_doc(size_t no, char buf[32])
{
	snprintf(buf, 32, "line %zu", no);
	return buf;
}

static int
is_lower_hex(const char *s, size_t minlen, size_t maxlen)
{
	size_t n = strlen(s), i;

	if (n < minlen || n > maxlen || n % 2 != 0)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/*
 * Member name of o into *v: 1; absent: 0 when optional, else -1 with
 * "<doc>: \"<name>\": missing" in err; where gets "\"<name>\"".
 */
static int
member(json_object *o, const char *name, int required, json_object **v, char where[48],
       const char *doc, char *err, size_t errlen)
{
	snprintf(where, 48, "\"%s\"", name);
	if (json_object_object_get_ex(o, name, v))
		return 1;
	if (required)
		ev_errf(err, errlen, "%s: %s: missing", doc, where);
	return required ? -1 : 0;
}

/* A string member: absent (NULL, when optional) or a string. */
static CK_RV
get_str(json_object *o, const char *name, int required, const char **out, const char *doc,
	char *err, size_t errlen)
{
	json_object *v = NULL;
	char where[48];
	size_t len;
	int has = member(o, name, required, &v, where, doc, err, errlen);
	CK_RV rv;

	if (has <= 0)
		return has == 0 ? CKR_OK : CKR_DATA_INVALID;
	rv = ev_json_string(v, out, &len, doc, where, err, errlen);
	/* Every user of the line takes it as a C string: a NUL in it would hide the rest. */
	if (rv == CKR_OK && strlen(*out) != len) {
		*out = NULL;
		ev_errf(err, errlen, "%s: %s: holds a NUL byte", doc, where);
		rv = CKR_DATA_INVALID;
	}
	return rv;
}

/* An integer member in [min, EV_JSON_SAFE_MAX]; absent leaves *out. */
static CK_RV
get_int(json_object *o, const char *name, int required, int64_t min, int64_t *out, const char *doc,
	char *err, size_t errlen)
{
	json_object *v = NULL;
	char where[48];
	int has = member(o, name, required, &v, where, doc, err, errlen);

	if (has <= 0)
		return has == 0 ? CKR_OK : CKR_DATA_INVALID;
	return ev_json_int(v, min, EV_JSON_SAFE_MAX, out, doc, where, err, errlen);
}

/* The members of "object" that the reader uses. */
static CK_RV
read_object(ev_audit_line *l, json_object *obj, const char *doc, char *err, size_t errlen)
{
	CK_RV rv;

	if (!json_object_is_type(obj, json_type_object)) {
		ev_errf(err, errlen, "%s: \"object\": expected an object", doc);
		return CKR_DATA_INVALID;
	}
	rv = get_str(obj, "class", 0, &l->cls, doc, err, errlen);
	if (rv == CKR_OK)
		rv = get_str(obj, "key_type", 0, &l->key_type, doc, err, errlen);
	if (rv == CKR_OK)
		rv = get_str(obj, "label", 0, &l->label, doc, err, errlen);
	if (rv == CKR_OK)
		rv = get_str(obj, "id", 0, &l->id, doc, err, errlen);
	if (rv == CKR_OK)
		rv = get_int(obj, "generation", 0, 1, &l->generation, doc, err, errlen);
	if (rv == CKR_OK && l->id != NULL && !is_lower_hex(l->id, 2, SIZE_MAX)) {
		ev_errf(err, errlen, "%s: \"object\": \"id\": expected lowercase hex", doc);
		rv = CKR_DATA_INVALID;
	}
	return rv;
}

/* Fill l's members from its parsed JSON; CKR_DATA_INVALID with err. */
static CK_RV
read_members(ev_audit_line *l, const char *doc, char *err, size_t errlen)
{
	json_object *o = l->obj, *v;
	int64_t end;
	CK_RV rv;

	if (!json_object_is_type(o, json_type_object)) {
		ev_errf(err, errlen, "%s: not a JSON object", doc);
		return CKR_DATA_INVALID;
	}
	rv = get_int(o, "seq", 1, 1, &l->seq, doc, err, errlen);
	if (rv == CKR_OK)
		rv = get_str(o, "time", 1, &l->time, doc, err, errlen);
	if (rv == CKR_OK && ev_audit_time_parse(l->time, &l->time_us, &end) != 0) {
		ev_errf(err, errlen, "%s: \"time\": not a UTC time as 2026-11-24T10:00:00.123456Z",
			doc);
		rv = CKR_DATA_INVALID;
	}
	if (rv == CKR_OK)
		rv = get_str(o, "device", 1, &l->device, doc, err, errlen);
	if (rv == CKR_OK)
		rv = get_int(o, "pid", 1, 1, &l->pid, doc, err, errlen);
	if (rv == CKR_OK)
		rv = get_str(o, "program", 1, &l->program, doc, err, errlen);
	if (rv == CKR_OK)
		rv = get_str(o, "event", 1, &l->event, doc, err, errlen);
	if (rv == CKR_OK)
		rv = get_str(o, "outcome", 1, &l->outcome, doc, err, errlen);
	if (rv == CKR_OK && strcmp(l->outcome, "ok") != 0 && strcmp(l->outcome, "refused") != 0 &&
	    strcmp(l->outcome, "failed") != 0) {
		ev_errf(err, errlen, "%s: \"outcome\": expected ok, refused or failed", doc);
		rv = CKR_DATA_INVALID;
	}
	if (rv == CKR_OK)
		rv = get_int(o, "zone", 0, 1, &l->zone, doc, err, errlen);
	if (rv == CKR_OK)
		rv = get_str(o, "user", 0, &l->user, doc, err, errlen);
	if (rv == CKR_OK && json_object_object_get_ex(o, "object", &v))
		rv = read_object(l, v, doc, err, errlen);
	if (rv == CKR_OK)
		rv = get_str(o, "reason", 0, &l->reason, doc, err, errlen);
	if (rv == CKR_OK && json_object_object_get_ex(o, "detail", &v) &&
	    !json_object_is_type(v, json_type_object)) {
		ev_errf(err, errlen, "%s: \"detail\": expected an object", doc);
		rv = CKR_DATA_INVALID;
	}
	if (rv == CKR_OK)
		rv = get_str(o, "key", strcmp(l->event, EV_AUDIT_CHECKPOINT) == 0, &l->key, doc,
			     err, errlen);
	if (rv == CKR_OK)
		rv = get_str(o, "sig", l->key != NULL, &l->sig, doc, err, errlen);
	if (rv == CKR_OK)
		rv = get_str(o, "prev", 1, &l->prev, doc, err, errlen);
	if (rv == CKR_OK && !is_lower_hex(l->prev, 2 * HASH_LEN, 2 * HASH_LEN)) {
		ev_errf(err, errlen, "%s: \"prev\": expected 64 lowercase hex digits", doc);
		rv = CKR_DATA_INVALID;
	}
	return rv;
}

/* Parse line l; a problem is recorded in l->problem. CKR_OK or CKR_HOST_MEMORY. */
static CK_RV
parse_line(ev_audit_line *l)
{
	char err[EV_AUDIT_WHY_MAX] = "", doc[32];
	ev_audit_line keep = *l;
	CK_RV rv;

	line_doc(l->no, doc);
	if (l->len > EV_AUDIT_LINE_MAX) {
		ev_errf(err, sizeof(err), "%s: longer than %d bytes", doc, EV_AUDIT_LINE_MAX);
		rv = CKR_DATA_INVALID;
	} else {
		rv = ev_json_parse_strict((const unsigned char *)l->text, l->len, &l->obj, err,
					  sizeof(err));
		if (rv == CKR_HOST_MEMORY)
			return rv;
		if (rv != CKR_OK) {
			char why[EV_AUDIT_WHY_MAX];

			snprintf(why, sizeof(why), "%s", err);
			ev_errf(err, sizeof(err), "%s: %s", doc, why);
		} else
			rv = read_members(l, doc, err, sizeof(err));
	}
	if (rv == CKR_OK)
		return CKR_OK;
	/* A line with a problem has none of its members. */
	keep.obj = l->obj;
	*l = keep;
	l->problem = strdup(err);
	return l->problem != NULL ? CKR_OK : CKR_HOST_MEMORY;
}

/* Split t->buf into t->lines and parse each. */
static CK_RV
split_lines(ev_audit_trail *t)
{
	size_t i, start, n = 0;
	CK_RV rv;

	for (i = 0; i < t->len; i++)
		if (t->buf[i] == '\n')
			n++;
	if (t->len > 0 && t->buf[t->len - 1] != '\n')
		n++;
	t->lines = calloc(n + 1, sizeof(*t->lines));
	if (t->lines == NULL)
		return CKR_HOST_MEMORY;
	for (start = 0, i = 0; start < t->len; i++) {
		ev_audit_line *l = &t->lines[t->nlines];

		if (i < t->len && t->buf[i] != '\n')
			continue;
		l->no = ++t->nlines;
		l->text = (const char *)t->buf + start;
		l->len = i - start;
		l->ended = i < t->len;
		t->buf[i] = '\0'; /* buf has a byte after len */
		rv = parse_line(l);
		if (rv != CKR_OK)
			return rv;
		start = i + 1;
	}
	return CKR_OK;
}

/* The head file: {"seq":N,"hash":"<hex>"}, or a problem in t->head_problem. */
static CK_RV
parse_head(ev_audit_trail *t, const unsigned char *buf, size_t len)
{
	static const ev_json_member_def defs[] = {{"seq", 1}, {"hash", 1}};
	json_object *o = NULL;
	char err[EV_AUDIT_WHY_MAX] = "";
	unsigned char *hash = NULL;
	size_t hlen = 0;
	CK_RV rv;

	rv = ev_json_parse_strict(buf, len, &o, err, sizeof(err));
	if (rv == CKR_OK && !json_object_is_type(o, json_type_object)) {
		ev_errf(err, sizeof(err), "not a JSON object");
		rv = CKR_DATA_INVALID;
	}
	for (size_t i = 0; rv == CKR_OK && i < EV_ARRAY_SIZE(defs); i++)
		if (ev_json_member(o, defs[i].name) == NULL) {
			ev_errf(err, sizeof(err), "\"%s\": missing", defs[i].name);
			rv = CKR_DATA_INVALID;
		}
	if (rv == CKR_OK)
		rv = ev_json_int(ev_json_member(o, "seq"), 1, EV_JSON_SAFE_MAX, &t->head_seq,
				 "head", "\"seq\"", err, sizeof(err));
	if (rv == CKR_OK)
		rv = ev_json_hex(ev_json_member(o, "hash"), HASH_LEN, HASH_LEN,
				 "expected 64 hex digits", &hash, &hlen, "head", "\"hash\"", err,
				 sizeof(err));
	if (rv == CKR_OK)
		memcpy(t->head_hash, hash, HASH_LEN);
	free(hash);
	json_object_put(o);
	if (rv == CKR_HOST_MEMORY)
		return rv;
	if (rv != CKR_OK) {
		t->head_problem = strdup(err);
		if (t->head_problem == NULL)
			return CKR_HOST_MEMORY;
	}
	return CKR_OK;
}

/* ev_read_all(), with errno EFBIG when there is more than max. */
static int
slurp(int fd, size_t max, unsigned char **buf, size_t *len)
{
	int rc = ev_read_all(fd, max, buf, len);

	if (rc == -2)
		errno = EFBIG;
	return rc == 0 ? 0 : -1;
}

/* A shared flock on fd, waiting at most LOCK_WAIT_MS. 0, or -1 with errno. */
static int
lock_shared(int fd)
{
	struct timespec ts = {0, 10 * 1000 * 1000};
	int waited;

	for (waited = 0; flock(fd, LOCK_SH | LOCK_NB) != 0; waited += 10) {
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK || waited >= LOCK_WAIT_MS)
			return -1;
		nanosleep(&ts, NULL);
	}
	return 0;
}

/* Read <path>.head (absent: t->has_head stays 0). */
static CK_RV
read_head(ev_audit_trail *t, char *err, size_t errlen)
{
	unsigned char *buf = NULL;
	char hpath[4096];
	size_t len = 0;
	CK_RV rv;
	int fd;

	if ((size_t)snprintf(hpath, sizeof(hpath), "%s.head", t->path) >= sizeof(hpath)) {
		ev_errf(err, errlen, "%s: path too long", t->path);
		return CKR_DEVICE_ERROR;
	}
	fd = open(hpath, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 && errno == ENOENT)
		return CKR_OK;
	if (fd < 0 || slurp(fd, HEAD_MAX, &buf, &len) != 0) {
		ev_errf(err, errlen, "%s: %s", hpath, strerror(errno));
		if (fd >= 0)
			close(fd);
		return errno == ENOMEM ? CKR_HOST_MEMORY : CKR_DEVICE_ERROR;
	}
	close(fd);
	t->has_head = 1;
	rv = parse_head(t, buf, len);
	free(buf);
	return rv;
}

CK_RV
ev_audit_trail_load(const char *path, ev_audit_trail **out, char *err, size_t errlen)
{
	ev_audit_trail *t = NULL;
	CK_RV rv = CKR_HOST_MEMORY;
	int fd = -1;

	*out = NULL;
	t = calloc(1, sizeof(*t));
	if (t == NULL || (t->path = strdup(path)) == NULL)
		goto out;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		ev_errf(err, errlen, "%s: %s", path, strerror(errno));
		rv = errno == ENOENT ? EVR_NOT_FOUND : CKR_DEVICE_ERROR;
		goto out;
	}
	if (lock_shared(fd) != 0) {
		ev_errf(err, errlen, "%s: cannot lock it for reading: %s", path,
			errno == EWOULDBLOCK ? "a writer holds it" : strerror(errno));
		rv = CKR_DEVICE_ERROR;
		goto out;
	}
	/* The head is replaced while the writer holds the lock: read both under it. */
	if (slurp(fd, SIZE_MAX / 2, &t->buf, &t->len) != 0) {
		ev_errf(err, errlen, "%s: %s", path, strerror(errno));
		rv = errno == ENOMEM ? CKR_HOST_MEMORY : CKR_DEVICE_ERROR;
		goto out;
	}
	rv = read_head(t, err, errlen);
	if (rv != CKR_OK)
		goto out;
	close(fd); /* unlocks */
	fd = -1;
	rv = split_lines(t);
	if (rv != CKR_OK) {
		ev_errf(err, errlen, "out of memory");
		goto out;
	}
	*out = t;
	t = NULL; /* transferred */
out:
	if (fd >= 0)
		close(fd);
	ev_audit_trail_free(t);
	return rv;
}

void
ev_audit_trail_free(ev_audit_trail *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->nlines; i++) {
		free(t->lines[i].problem);
		json_object_put(t->lines[i].obj);
	}
	free(t->lines);
	free(t->buf);
	free(t->head_problem);
	free(t->path);
	free(t);
}

static void
line_hash(const ev_audit_line *l, unsigned char h[HASH_LEN])
{
	crypto_generichash(h, HASH_LEN, (const unsigned char *)l->text, l->len, NULL, 0);
}

/* A base64 member of exactly n bytes; 0, or -1. */
static int
b64_decode(const char *s, size_t b64len, unsigned char *out, size_t n)
{
	size_t got = 0;

	if (strlen(s) != b64len)
		return -1;
	if (sodium_base642bin(out, n, s, b64len, NULL, &got, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0)
		return -1;
	return got == n ? 0 : -1;
}

/* The checkpoint at l: its key is key, its signature verifies. 0, or -1 with why. */
static int
check_checkpoint(const ev_audit_line *l, const unsigned char key[32], char *why, size_t whylen)
{
	static const char prefix[] = EV_AUDIT_SIG_PREFIX;
	unsigned char k[32], sig[crypto_sign_BYTES], prev[HASH_LEN], *msg;
	char mine[KEY_B64_LEN + 1];
	size_t dlen = strlen(l->device), mlen, plen = sizeof(prefix) - 1, i;
	int rc = -1;

	if (b64_decode(l->key, KEY_B64_LEN, k, sizeof(k)) != 0) {
		ev_errf(why, whylen,
			"line %zu: the checkpoint's \"key\" is not a base64 Ed25519 key", l->no);
		return -1;
	}
	if (sodium_memcmp(k, key, sizeof(k)) != 0) {
		sodium_bin2base64(mine, sizeof(mine), key, 32, sodium_base64_VARIANT_ORIGINAL);
		ev_errf(why, whylen,
			"line %zu: checkpoint made with another key (%s, not the trusted %s)",
			l->no, l->key, mine);
		return -1;
	}
	if (b64_decode(l->sig, SIG_B64_LEN, sig, sizeof(sig)) != 0) {
		ev_errf(why, whylen, "line %zu: the checkpoint's \"sig\" is not a base64 signature",
			l->no);
		return -1;
	}
	if (sodium_hex2bin(prev, sizeof(prev), l->prev, 2 * HASH_LEN, NULL, NULL, NULL) != 0)
		return -1; /* checked when parsed */
	mlen = plen + 8 + HASH_LEN + dlen;
	msg = malloc(mlen);
	if (msg == NULL) {
		ev_errf(why, whylen, "out of memory");
		return -1;
	}
	memcpy(msg, prefix, plen);
	for (i = 0; i < 8; i++)
		msg[plen + i] = (unsigned char)((uint64_t)l->seq >> (56 - 8 * i));
	memcpy(msg + plen + 8, prev, HASH_LEN);
	memcpy(msg + plen + 8 + HASH_LEN, l->device, dlen);
	if (crypto_sign_verify_detached(sig, msg, mlen, key) == 0)
		rc = 0;
	else
		ev_errf(why, whylen,
			"line %zu: the checkpoint's signature does not verify (lines up to it "
			"were changed, or it was forged)",
			l->no);
	free(msg);
	return rc;
}

/* Line i is cut short and line i+1 is the writer's audit.torn after it. */
static int
is_torn(const ev_audit_trail *t, size_t i)
{
	const ev_audit_line *n = i + 1 < t->nlines ? &t->lines[i + 1] : NULL;
	unsigned char h[HASH_LEN];
	char hex[2 * HASH_LEN + 1];

	if (n == NULL || n->problem != NULL || strcmp(n->event, EV_AUDIT_TORN) != 0)
		return 0;
	line_hash(&t->lines[i], h);
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	return strcmp(hex, n->prev) == 0;
}

static void bad(ev_audit_verdict *v, size_t no, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
bad(ev_audit_verdict *v, size_t no, const char *fmt, ...)
{
	va_list ap;

	v->valid = 0;
	v->bad_line = no;
	va_start(ap, fmt);
	vsnprintf(v->why, sizeof(v->why), fmt, ap);
	va_end(ap);
}

CK_RV
ev_audit_verify(const ev_audit_trail *t, const unsigned char key[32], ev_audit_verdict *v)
{
	unsigned char prev[HASH_LEN] = {0}, h[HASH_LEN];
	char hex[2 * HASH_LEN + 1];
	size_t i, prev_no = 0, torn_no = 0, head_no = 0;
	int64_t seq = 1, last_seq = 0;
	int after_torn = 0;

	memset(v, 0, sizeof(*v));
	if (key == NULL)
		return CKR_ARGUMENTS_BAD;
	v->lines = t->nlines;
	if (t->has_head && t->head_problem != NULL) {
		bad(v, 0, "%s.head: %s", t->path, t->head_problem);
		return CKR_OK;
	}
	for (i = 0; i < t->nlines; i++) {
		const ev_audit_line *l = &t->lines[i];

		if (!l->ended) {
			bad(v, l->no,
			    "line %zu: cut short, no line end (a write interrupted, or the file "
			    "truncated)",
			    l->no);
			return CKR_OK;
		}
		line_hash(l, h);
		if (l->problem != NULL && is_torn(t, i)) {
			if (v->torn++ == 0)
				snprintf(
				    v->warning, sizeof(v->warning),
				    "line %zu: cut short by a crash while writing; the writer went "
				    "on after it (line %zu: %s)",
				    l->no, l->no + 1, EV_AUDIT_TORN);
			if (torn_no == 0)
				torn_no = l->no;
			memcpy(prev, h, HASH_LEN);
			prev_no = l->no;
			after_torn = 1;
			continue;
		}
		if (l->problem != NULL) {
			bad(v, l->no, "%s", l->problem);
			return CKR_OK;
		}
		/* The cut line's seq may have been taken or not: both are the writer's. */
		if (l->seq != seq && !(after_torn && l->seq == seq + 1)) {
			bad(v, l->no,
			    "line %zu: seq is %lld, expected %lld (deleted, inserted or reordered "
			    "lines)",
			    l->no, (long long)l->seq, (long long)seq);
			return CKR_OK;
		}
		sodium_bin2hex(hex, sizeof(hex), prev, sizeof(prev));
		if (strcmp(hex, l->prev) != 0) {
			if (prev_no == 0)
				bad(v, l->no,
				    "line 1: prev is not 64 zeros (the lines before it were "
				    "deleted)");
			else
				bad(v, l->no,
				    "line %zu: prev does not match the hash of line %zu (edited, "
				    "deleted or reordered lines)",
				    l->no, prev_no);
			return CKR_OK;
		}
		if (strcmp(l->event, EV_AUDIT_CHECKPOINT) == 0) {
			if (check_checkpoint(l, key, v->why, sizeof(v->why)) != 0) {
				v->valid = 0;
				v->bad_line = l->no;
				return CKR_OK;
			}
			v->checkpoints++;
			v->last_checkpoint_seq = l->seq;
			v->last_checkpoint_line = l->no;
			torn_no = 0;
		}
		if (t->has_head && l->seq == t->head_seq) {
			if (strcmp(l->event, EV_AUDIT_CHECKPOINT) != 0) {
				bad(v, l->no,
				    "line %zu: %s.head names seq %lld, but the line is %s, not "
				    "%s (the head was rewritten)",
				    l->no, t->path, (long long)t->head_seq, l->event,
				    EV_AUDIT_CHECKPOINT);
				return CKR_OK;
			}
			if (sodium_memcmp(h, t->head_hash, HASH_LEN) != 0) {
				bad(v, l->no,
				    "line %zu: its hash is not the one %s.head records for seq "
				    "%lld "
				    "(edited)",
				    l->no, t->path, (long long)t->head_seq);
				return CKR_OK;
			}
			head_no = l->no;
		}
		memcpy(prev, h, HASH_LEN);
		prev_no = l->no;
		seq = l->seq + 1;
		last_seq = l->seq;
		after_torn = 0;
	}
	if (torn_no != 0) {
		bad(v, torn_no,
		    "line %zu: cut short (a crash while writing, or an edit), and no later "
		    "checkpoint covers it",
		    torn_no);
		return CKR_OK;
	}
	if (t->has_head && head_no == 0) {
		bad(v, t->nlines + 1,
		    "line %zu: missing: the file ends at seq %lld, but %s.head records checkpoint "
		    "seq %lld (truncated)",
		    t->nlines + 1, (long long)last_seq, t->path, (long long)t->head_seq);
		return CKR_OK;
	}
	/*
	 * The writer replaces the head at every checkpoint, so checkpoints without
	 * one mean it was removed (hiding a truncation), except for a crash between
	 * writing the first checkpoint and its head: one checkpoint, the last line.
	 */
	if (!t->has_head && v->checkpoints == 1 && v->last_checkpoint_line == t->nlines)
		v->head_missing = 1;
	else if (!t->has_head && v->checkpoints > 0) {
		bad(v, 0,
		    "%s.head: missing, but the file has %zu checkpoint%s (the last at line %zu): "
		    "the head was removed (truncated?) or could not be written",
		    t->path, v->checkpoints, v->checkpoints == 1 ? "" : "s",
		    v->last_checkpoint_line);
		return CKR_OK;
	}
	v->valid = 1;
	v->unsigned_lines = t->nlines - v->last_checkpoint_line;
	return CKR_OK;
}

int
ev_audit_time_parse(const char *s, int64_t *start, int64_t *end)
{
	struct tm tm;
	const char *p;
	int64_t frac = 0, unit = 1000000;
	time_t secs;
	int digits = 0;

	memset(&tm, 0, sizeof(tm));
	if (strlen(s) == 10) {
		p = strptime(s, "%Y-%m-%d", &tm);
		if (p == NULL || *p != '\0' || s[4] != '-' || s[7] != '-')
			return -1;
		secs = timegm(&tm);
		if (secs == (time_t)-1)
			return -1;
		*start = (int64_t)secs * 1000000;
		*end = *start + (int64_t)86400 * 1000000;
		return 0;
	}
	if (strlen(s) < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
	    s[16] != ':')
		return -1;
	p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (p == NULL || p != s + 19)
		return -1;
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9' && digits < 6; p++, digits++) {
			frac = frac * 10 + (*p - '0');
			unit /= 10;
		}
		if (digits == 0)
			return -1;
	}
	if (p[0] != 'Z' || p[1] != '\0')
		return -1;
	secs = timegm(&tm);
	if (secs == (time_t)-1)
		return -1;
	*start = (int64_t)secs * 1000000 + frac * unit;
	*end = *start + unit;
	return 0;
}

/* kind is the event k, or k's family ("key" for key.*). */
static int
kind_matches(const char *event, const char *k)
{
	size_t n = strlen(k);

	return strcmp(event, k) == 0 || (strncmp(event, k, n) == 0 && event[n] == '.');
}

int
ev_audit_match(const ev_audit_line *l, const ev_audit_filter *f)
{
	size_t i;

	if (l->problem != NULL)
		return 0;
	if (f->zone != 0 && l->zone != f->zone)
		return 0;
	if (f->label != NULL && (l->label == NULL || strcmp(l->label, f->label) != 0))
		return 0;
	if (f->id != NULL && (l->id == NULL || strcasecmp(l->id, f->id) != 0))
		return 0;
	if (f->since != 0 && l->time_us < f->since)
		return 0;
	if (f->until != 0 && l->time_us >= f->until)
		return 0;
	for (i = 0; i < f->nevents; i++)
		if (kind_matches(l->event, f->events[i]))
			break;
	return f->nevents == 0 || i < f->nevents;
}

/* What each count counts: an event kind, and an outcome or any (NULL). */
static const struct {
	const char *name;
	const char *event;
	const char *outcome;
} counts[EV_AUDIT_C_COUNT] = {
    [EV_AUDIT_C_ZONES_CREATED] = {"zones_created", EV_AUDIT_ZONE_CREATED, NULL},
    [EV_AUDIT_C_ZONES_REMOVED] = {"zones_removed", EV_AUDIT_ZONE_REMOVED, NULL},
    [EV_AUDIT_C_ZONES_REVOKED] = {"zones_revoked", EV_AUDIT_ZONE_REVOKED, NULL},
    [EV_AUDIT_C_ZONES_REKEYED] = {"zones_rekeyed", EV_AUDIT_ZONE_REKEYED, NULL},
    [EV_AUDIT_C_KEYS_GENERATED] = {"keys_generated", EV_AUDIT_KEY_GENERATED, NULL},
    [EV_AUDIT_C_KEYS_IMPORTED] = {"keys_imported", EV_AUDIT_KEY_IMPORTED, NULL},
    [EV_AUDIT_C_KEYS_ROTATED] = {"keys_rotated", EV_AUDIT_KEY_ROTATED, NULL},
    [EV_AUDIT_C_KEYS_RETIRED] = {"keys_retired", EV_AUDIT_KEY_RETIRED, NULL},
    [EV_AUDIT_C_KEYS_DESTROYED] = {"keys_destroyed", EV_AUDIT_KEY_DESTROYED, NULL},
    [EV_AUDIT_C_KEYS_REVOKED] = {"keys_revoked", EV_AUDIT_KEY_REVOKED, NULL},
    [EV_AUDIT_C_LOGINS_OK] = {"logins_ok", EV_AUDIT_LOGIN, "ok"},
    [EV_AUDIT_C_LOGINS_REFUSED] = {"logins_refused", EV_AUDIT_LOGIN, "refused"},
    [EV_AUDIT_C_PIN_LOCKS] = {"pin_locks", EV_AUDIT_PIN_LOCKED, NULL},
    [EV_AUDIT_C_ATTESTATIONS_OK] = {"attestations_ok", EV_AUDIT_ATTESTATION, "ok"},
    [EV_AUDIT_C_ATTESTATIONS_REFUSED] = {"attestations_refused", EV_AUDIT_ATTESTATION, "refused"},
    [EV_AUDIT_C_REVOCATION_LISTS_APPLIED] = {"revocation_lists_applied", EV_AUDIT_REVOCATION_LIST,
					     "ok"},
    [EV_AUDIT_C_REVOCATION_LISTS_REFUSED] = {"revocation_lists_refused", EV_AUDIT_REVOCATION_LIST,
					     "refused"},
    [EV_AUDIT_C_ROOT_UNREACHABLE] = {"root_unreachable", EV_AUDIT_ROOT_UNREACHABLE, NULL},
    [EV_AUDIT_C_DEGRADED] = {"degraded_entered", EV_AUDIT_DEGRADED_ENTERED, NULL},
    [EV_AUDIT_C_CHECKPOINTS] = {"checkpoints", EV_AUDIT_CHECKPOINT, NULL},
    [EV_AUDIT_C_REFUSALS] = {"refusals", NULL, "refused"},
    [EV_AUDIT_C_FAILURES] = {"failures", NULL, "failed"},
};

const char *
ev_audit_count_name(unsigned i)
{
	return i < EV_AUDIT_C_COUNT ? counts[i].name : NULL;
}

/* The counts of zone in s, added in order when new; NULL when out of memory. */
static ev_audit_counts *
zone_counts(ev_audit_summary *s, int64_t zone)
{
	ev_audit_counts *nz;
	size_t i;

	for (i = 0; i < s->nzones && s->zones[i].zone < zone; i++)
		;
	if (i < s->nzones && s->zones[i].zone == zone)
		return &s->zones[i];
	nz = realloc(s->zones, (s->nzones + 1) * sizeof(*nz));
	if (nz == NULL)
		return NULL;
	s->zones = nz;
	memmove(&nz[i + 1], &nz[i], (s->nzones - i) * sizeof(*nz));
	memset(&nz[i], 0, sizeof(*nz));
	nz[i].zone = zone;
	s->nzones++;
	return &nz[i];
}

CK_RV
ev_audit_summarize(const ev_audit_trail *t, const ev_audit_filter *f, ev_audit_summary *s)
{
	ev_audit_filter times = {.since = f->since, .until = f->until};
	ev_audit_counts *c;
	size_t i;
	unsigned k;

	memset(s, 0, sizeof(*s));
	for (i = 0; i < t->nlines; i++) {
		const ev_audit_line *l = &t->lines[i];

		if (l->problem != NULL) {
			s->skipped++;
			continue;
		}
		if (!ev_audit_match(l, &times))
			continue;
		c = zone_counts(s, l->zone);
		if (c == NULL) {
			ev_audit_summary_clear(s);
			return CKR_HOST_MEMORY;
		}
		s->lines++;
		if (s->first == NULL)
			s->first = l->time;
		s->last = l->time;
		for (k = 0; k < EV_AUDIT_C_COUNT; k++)
			if ((counts[k].event == NULL || strcmp(l->event, counts[k].event) == 0) &&
			    (counts[k].outcome == NULL ||
			     strcmp(l->outcome, counts[k].outcome) == 0))
				c->n[k]++;
	}
	return CKR_OK;
}

void
ev_audit_summary_clear(ev_audit_summary *s)
{
	if (s == NULL)
		return;
	free(s->zones);
	memset(s, 0, sizeof(*s));
}
