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

#define HASH_LEN EV_AUDIT_HASH_LEN
#define SIG_B64_LEN 88
#define HEAD_MAX 256
#define LOCK_WAIT_MS 10000
#define CHUNK 65536

struct ev_audit_reader {
	char *path;
	int fd;
	uint64_t size; /* the file's, when opened: read no further */
	uint64_t left; /* bytes of it not read yet */
	ev_audit_head head;
	char *head_problem; /* head.problem's */
	unsigned char chunk[CHUNK];
	size_t pos, end;		  /* chunk[pos..end) not taken yet */
	char text[EV_AUDIT_LINE_MAX + 1]; /* line.text */
	ev_audit_line line;		  /* the line handed out last */
	size_t nlines;
};

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

/* The head file: {"seq":N,"hash":"<hex>"}, or a problem in r->head_problem. */
static CK_RV
parse_head(ev_audit_reader *r, const unsigned char *buf, size_t len)
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
		rv = ev_json_int(ev_json_member(o, "seq"), 1, EV_JSON_SAFE_MAX, &r->head.seq,
				 "head", "\"seq\"", err, sizeof(err));
	if (rv == CKR_OK)
		rv = ev_json_hex(ev_json_member(o, "hash"), HASH_LEN, HASH_LEN,
				 "expected 64 hex digits", &hash, &hlen, "head", "\"hash\"", err,
				 sizeof(err));
	if (rv == CKR_OK)
		memcpy(r->head.hash, hash, HASH_LEN);
	free(hash);
	json_object_put(o);
	if (rv == CKR_HOST_MEMORY)
		return rv;
	if (rv != CKR_OK) {
		r->head_problem = strdup(err);
		if (r->head_problem == NULL)
			return CKR_HOST_MEMORY;
		r->head.problem = r->head_problem;
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

/*
 * Open path for reading as a regular file only: a FIFO or device at its
 * name would block the open (or the reads) while the reader holds the
 * lock writers wait for, a symlink would read another file (the writer
 * does not follow one either). The fd, or -1 with errno (EINVAL: not a
 * regular file).
 */
static int
open_regular(const char *path)
{
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK), flags, e;

	if (fd < 0)
		return -1;
	if (fstat(fd, &sb) != 0)
		goto fail;
	if (!S_ISREG(sb.st_mode)) {
		errno = EINVAL;
		goto fail;
	}
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0)
		goto fail;
	return fd;
fail:
	e = errno;
	close(fd);
	errno = e;
	return -1;
}

/* "not a regular file" for EINVAL from open_regular(), else strerror. */
static const char *
open_error(int e)
{
	return e == EINVAL ? "not a regular file" : strerror(e);
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

/* Read <path>.head (absent: r->head.present stays 0). */
static CK_RV
read_head(ev_audit_reader *r, char *err, size_t errlen)
{
	unsigned char *buf = NULL;
	char hpath[4096];
	size_t len = 0;
	CK_RV rv;
	int fd, e;

	if ((size_t)snprintf(hpath, sizeof(hpath), "%s.head", r->path) >= sizeof(hpath)) {
		ev_errf(err, errlen, "%s: path too long", r->path);
		return CKR_DEVICE_ERROR;
	}
	fd = open_regular(hpath);
	if (fd < 0 && errno == ENOENT)
		return CKR_OK;
	if (fd < 0 || slurp(fd, HEAD_MAX, &buf, &len) != 0) {
		/* errno before close() may change it. */
		e = errno;
		ev_errf(err, errlen, "%s: %s", hpath, open_error(e));
		if (fd >= 0)
			close(fd);
		return e == ENOMEM ? CKR_HOST_MEMORY : CKR_DEVICE_ERROR;
	}
	close(fd);
	r->head.present = 1;
	rv = parse_head(r, buf, len);
	free(buf);
	return rv;
}

CK_RV
ev_audit_reader_open(const char *path, ev_audit_reader **out, char *err, size_t errlen)
{
	ev_audit_reader *r = NULL;
	struct stat sb;
	CK_RV rv = CKR_HOST_MEMORY;

	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		goto out;
	r->fd = -1;
	if ((r->path = strdup(path)) == NULL)
		goto out;
	r->fd = open_regular(path);
	if (r->fd < 0) {
		ev_errf(err, errlen, "%s: %s", path, open_error(errno));
		rv = errno == ENOENT ? EVR_NOT_FOUND : CKR_DEVICE_ERROR;
		goto out;
	}
	if (lock_shared(r->fd) != 0) {
		ev_errf(err, errlen, "%s: cannot lock it for reading: %s", path,
			errno == EWOULDBLOCK ? "a writer holds it" : strerror(errno));
		rv = CKR_DEVICE_ERROR;
		goto out;
	}
	/* The head is replaced while the writer holds the lock: it and the size under it. */
	if (fstat(r->fd, &sb) != 0) {
		ev_errf(err, errlen, "%s: %s", path, strerror(errno));
		rv = CKR_DEVICE_ERROR;
		goto out;
	}
	r->size = (uint64_t)sb.st_size;
	r->left = r->size;
	rv = read_head(r, err, errlen);
	if (rv != CKR_OK)
		goto out;
	/* Lines before r->size are final (the writer only appends): read them unlocked. */
	if (flock(r->fd, LOCK_UN) != 0) {
		ev_errf(err, errlen, "%s: cannot unlock it: %s", path, strerror(errno));
		rv = CKR_DEVICE_ERROR;
		goto out;
	}
	*out = r;
	r = NULL; /* transferred */
out:
	ev_audit_reader_free(r);
	return rv;
}

const char *
ev_audit_reader_path(const ev_audit_reader *r)
{
	return r->path;
}

const ev_audit_head *
ev_audit_reader_head(const ev_audit_reader *r)
{
	return &r->head;
}

uint64_t
ev_audit_reader_size(const ev_audit_reader *r)
{
	return r->size;
}

/* Forget the line handed out last. */
static void
line_clear(ev_audit_line *l)
{
	free(l->problem);
	json_object_put(l->obj);
	memset(l, 0, sizeof(*l));
}

/*
 * Read the next line's bytes into r->line: its first EV_AUDIT_LINE_MAX
 * bytes kept, all of them hashed. 1 a line; 0 none left; -1 with err.
 */
static int
read_line(ev_audit_reader *r, char *err, size_t errlen)
{
	ev_audit_line *l = &r->line;
	crypto_generichash_state st;
	size_t kept = 0, seg, room;
	unsigned char *nl;
	ssize_t n;

	line_clear(l);
	crypto_generichash_init(&st, NULL, 0, HASH_LEN);
	for (;;) {
		if (r->pos == r->end) {
			if (r->left == 0)
				break;
			n = read(r->fd, r->chunk,
				 r->left < sizeof(r->chunk) ? (size_t)r->left : sizeof(r->chunk));
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				ev_errf(err, errlen, "%s: %s", r->path, strerror(errno));
				return -1;
			}
			if (n == 0) { /* cut shorter since it was opened: what is there */
				r->left = 0;
				break;
			}
			r->pos = 0;
			r->end = (size_t)n;
			r->left -= (uint64_t)n;
		}
		nl = memchr(r->chunk + r->pos, '\n', r->end - r->pos);
		seg = nl != NULL ? (size_t)(nl - (r->chunk + r->pos)) : r->end - r->pos;
		crypto_generichash_update(&st, r->chunk + r->pos, seg);
		room = EV_AUDIT_LINE_MAX - kept;
		memcpy(r->text + kept, r->chunk + r->pos, seg < room ? seg : room);
		kept += seg < room ? seg : room;
		l->len += seg;
		r->pos += seg;
		if (nl != NULL) {
			r->pos++;
			l->ended = 1;
			break;
		}
	}
	if (l->len == 0 && !l->ended)
		return 0;
	r->text[kept] = '\0';
	crypto_generichash_final(&st, l->hash, HASH_LEN);
	l->text = r->text;
	l->no = ++r->nlines;
	return 1;
}

CK_RV
ev_audit_reader_next(ev_audit_reader *r, const ev_audit_line **l, char *err, size_t errlen)
{
	int rc = read_line(r, err, errlen);
	CK_RV rv;

	*l = NULL;
	if (rc < 0)
		return CKR_DEVICE_ERROR;
	if (rc == 0)
		return CKR_OK;
	rv = parse_line(&r->line);
	if (rv != CKR_OK) {
		ev_errf(err, errlen, "out of memory");
		return rv;
	}
	*l = &r->line;
	return CKR_OK;
}

void
ev_audit_reader_free(ev_audit_reader *r)
{
	if (r == NULL)
		return;
	line_clear(&r->line);
	if (r->fd >= 0)
		close(r->fd);
	free(r->head_problem);
	free(r->path);
	free(r);
}

/* pread() all n bytes at off into buf; 0, or -1 with err. */
static int
read_at(ev_audit_reader *r, unsigned char *buf, size_t n, uint64_t off, char *err, size_t errlen)
{
	size_t got = 0;
	ssize_t k;

	while (got < n) {
		k = pread(r->fd, buf + got, n - got, (off_t)(off + got));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			ev_errf(err, errlen, "%s: %s", r->path,
				k < 0 ? strerror(errno) : "cut shorter while being read");
			return -1;
		}
		got += (size_t)k;
	}
	return 0;
}

/* The '\n' bytes of the file up to r->size. 0, or -1 with err. */
static int
count_lines(ev_audit_reader *r, uint64_t *lines, char *err, size_t errlen)
{
	uint64_t off = 0;
	size_t n;
	unsigned char *p, *e;

	*lines = 0;
	for (off = 0; off < r->size; off += n) {
		n = r->size - off < sizeof(r->chunk) ? (size_t)(r->size - off) : sizeof(r->chunk);
		if (read_at(r, r->chunk, n, off, err, errlen) != 0)
			return -1;
		for (p = r->chunk, e = r->chunk + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL;
		     p++)
			(*lines)++;
	}
	return 0;
}

/* The seq a line of ours starts with ({"seq":N,...), or 0. */
static int64_t
seq_prefix(const unsigned char *p, size_t len)
{
	static const char pre[] = "{\"seq\":";
	size_t i = sizeof(pre) - 1;
	int64_t seq = 0;

	if (len <= i || memcmp(p, pre, i) != 0)
		return 0;
	for (; i < len && p[i] >= '0' && p[i] <= '9' && seq < EV_JSON_SAFE_MAX; i++)
		seq = seq * 10 + (p[i] - '0');
	return seq;
}

/*
 * The line [start, start + len) of the file, line number no, when it is
 * the checkpoint the head names: its time into *time_us. 1 it is, 0 not,
 * -1 out of memory.
 */
static int
head_line_time(ev_audit_reader *r, const unsigned char *p, size_t len, size_t no,
	       int64_t *time_us)
{
	ev_audit_line *l = &r->line;
	int found;

	line_clear(l);
	crypto_generichash(l->hash, HASH_LEN, p, len, NULL, 0);
	if (sodium_memcmp(l->hash, r->head.hash, HASH_LEN) != 0)
		return 0;
	memcpy(r->text, p, len);
	r->text[len] = '\0';
	l->text = r->text;
	l->len = len;
	l->ended = 1;
	l->no = no;
	if (parse_line(l) != CKR_OK)
		return -1;
	found = l->problem == NULL && l->seq == r->head.seq &&
		strcmp(l->event, EV_AUDIT_CHECKPOINT) == 0;
	if (found)
		*time_us = l->time_us;
	line_clear(l);
	return found;
}

/* The bytes [lo, hi) of the file, in r->chunk. */
struct window {
	uint64_t lo, hi;
};

/*
 * The last '\n' before offset hi, into *at, reading back a chunk at a
 * time through w. 1 found; 0 none; -1 with err.
 */
static int
prev_newline(ev_audit_reader *r, uint64_t hi, struct window *w, uint64_t *at, char *err,
	     size_t errlen)
{
	unsigned char *nl;

	while (hi > 0) {
		if (!(w->lo < hi && hi <= w->hi)) {
			w->hi = hi;
			w->lo = hi > sizeof(r->chunk) ? hi - sizeof(r->chunk) : 0;
			if (read_at(r, r->chunk, (size_t)(w->hi - w->lo), w->lo, err, errlen) != 0)
				return -1;
		}
		nl = memrchr(r->chunk, '\n', (size_t)(hi - w->lo));
		if (nl != NULL) {
			*at = w->lo + (uint64_t)(nl - r->chunk);
			return 1;
		}
		hi = w->lo;
	}
	return 0;
}

/*
 * The time of the checkpoint line the head names, found scanning back
 * from the end (the head is written after its line, so it is among the
 * last): lines of ours start with their seq ({"seq":N,...), so the scan
 * stops at the first line before it; only the lines after it are hashed
 * and only it is parsed. *time_us 0: not found. CKR_OK;
 * CKR_DEVICE_ERROR, CKR_HOST_MEMORY with err.
 */
static CK_RV
find_head_line(ev_audit_reader *r, uint64_t lines, int64_t *time_us, char *err, size_t errlen)
{
	unsigned char line[EV_AUDIT_LINE_MAX];
	struct window w = {0, 0};
	uint64_t hi = r->size, start, at;
	size_t no = (size_t)lines + 1; /* the line ending at hi: after the last '\n' */
	int64_t seq;
	int rc;

	*time_us = 0;
	for (;;) {
		rc = prev_newline(r, hi, &w, &at, err, errlen);
		if (rc < 0)
			return CKR_DEVICE_ERROR;
		start = rc > 0 ? at + 1 : 0;
		/* Longer lines (than EV_AUDIT_LINE_MAX) are not it. */
		if (hi > start && hi - start <= EV_AUDIT_LINE_MAX) {
			const unsigned char *p = r->chunk + (start - w.lo);
			size_t len = (size_t)(hi - start);

			/* Across two windows (the scan moved back to its start): read on its own. */
			if (hi > w.hi) {
				if (read_at(r, line, len, start, err, errlen) != 0)
					return CKR_DEVICE_ERROR;
				p = line;
			}
			seq = seq_prefix(p, len);
			if (seq != 0 && seq < r->head.seq)
				return CKR_OK; /* before it: not there */
			if (seq == 0 || seq == r->head.seq) {
				rc = head_line_time(r, p, len, no, time_us);
				if (rc < 0) {
					ev_errf(err, errlen, "out of memory");
					return CKR_HOST_MEMORY;
				}
				if (rc > 0)
					return CKR_OK;
			}
		}
		if (start == 0)
			return CKR_OK;
		hi = start - 1;
		no--;
	}
}

CK_RV
ev_audit_reader_stat(ev_audit_reader *r, ev_audit_stat *s, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	s->size = r->size;
	r->left = 0; /* read through: no line left to hand out */
	r->pos = r->end = 0;
	if (count_lines(r, &s->lines, err, errlen) != 0)
		return CKR_DEVICE_ERROR;
	if (!r->head.present || r->head.problem != NULL)
		return CKR_OK;
	s->head_seq = r->head.seq;
	return find_head_line(r, s->lines, &s->head_time_us, err, errlen);
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
	/* The device is a member of a line: shorter than the line, so this holds the message. */
	unsigned char k[32], sig[crypto_sign_BYTES], prev[HASH_LEN],
	    msg[sizeof(prefix) - 1 + 8 + HASH_LEN + EV_AUDIT_LINE_MAX];
	char mine[EV_AUDIT_KEY_B64_LEN + 1];
	size_t dlen = strlen(l->device), mlen, plen = sizeof(prefix) - 1, i;
	int rc = -1;

	if (b64_decode(l->key, EV_AUDIT_KEY_B64_LEN, k, sizeof(k)) != 0) {
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
	if (dlen > EV_AUDIT_LINE_MAX)
		return -1; /* a line is no longer */
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
	return rc;
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

/* Verification so far, fed one line at a time. */
struct verify_state {
	const unsigned char *key;
	const ev_audit_head *head;
	const char *path;
	unsigned char prev[HASH_LEN]; /* the hash of the line before */
	size_t prev_no;		      /* its number; 0: none */
	int64_t seq;		      /* the seq expected next */
	int64_t last_seq;
	size_t torn_no; /* the first torn line no checkpoint covers yet; 0: none */
	size_t head_no; /* the line the head names, when reached */
	size_t pend_no; /* a line with a problem, torn if the next is audit.torn after it */
	size_t pend_last; /* the last of a run of them (a crash while recovering): pend_hash's */
	unsigned char pend_hash[HASH_LEN];
	char pend_problem[EV_AUDIT_WHY_MAX];
};

/*
 * Whether l, a problem line after a problem line, is the start of the
 * audit.torn line the writer wrote after it, cut by a second crash: its
 * bytes a prefix of {"seq":<the seq expected>, or starting with it.
 */
static int
torn_again(const struct verify_state *st, const ev_audit_line *l)
{
	char want[48];
	size_t n;

	n = (size_t)snprintf(want, sizeof(want), "{\"seq\":%lld,", (long long)st->seq);
	if (l->len < n)
		n = l->len;
	return l->ended && n > 0 && memcmp(l->text, want, n) == 0;
}

/*
 * A problem line, pend_no (to pend_last), followed by l: torn (the
 * writer's audit.torn after it), or bad. 0 (torn); 1: l is torn too, the
 * run goes on; -1 bad.
 */
static int
verify_pending(struct verify_state *st, const ev_audit_line *l, ev_audit_verdict *v)
{
	char hex[2 * HASH_LEN + 1];

	if (l != NULL && l->problem != NULL && l->no - st->pend_no < EV_AUDIT_TORN_RUN_MAX &&
	    torn_again(st, l)) {
		st->pend_last = l->no;
		memcpy(st->pend_hash, l->hash, HASH_LEN);
		return 1;
	}
	sodium_bin2hex(hex, sizeof(hex), st->pend_hash, HASH_LEN);
	if (l == NULL || l->problem != NULL || strcmp(l->event, EV_AUDIT_TORN) != 0 ||
	    strcmp(hex, l->prev) != 0) {
		bad(v, st->pend_no, "%s", st->pend_problem);
		return -1;
	}
	if (v->torn == 0)
		snprintf(v->warning, sizeof(v->warning),
			 "line %zu: cut short by a crash while writing; the writer went on after "
			 "it (line %zu: %s)",
			 st->pend_no, st->pend_last + 1, EV_AUDIT_TORN);
	v->torn += st->pend_last - st->pend_no + 1;
	if (st->torn_no == 0)
		st->torn_no = st->pend_no;
	memcpy(st->prev, st->pend_hash, HASH_LEN);
	st->prev_no = st->pend_last;
	st->pend_no = 0;
	return 0;
}

/* The line at the head's seq: the checkpoint it records. 0, or -1 (bad). */
static int
verify_head_line(struct verify_state *st, const ev_audit_line *l, ev_audit_verdict *v)
{
	if (strcmp(l->event, EV_AUDIT_CHECKPOINT) != 0) {
		bad(v, l->no,
		    "line %zu: %s.head names seq %lld, but the line is %s, not %s (the head was "
		    "rewritten)",
		    l->no, st->path, (long long)st->head->seq, l->event, EV_AUDIT_CHECKPOINT);
		return -1;
	}
	if (sodium_memcmp(l->hash, st->head->hash, HASH_LEN) != 0) {
		bad(v, l->no,
		    "line %zu: its hash is not the one %s.head records for seq %lld (edited)",
		    l->no, st->path, (long long)st->head->seq);
		return -1;
	}
	st->head_no = l->no;
	return 0;
}

/* Line l after the lines before it. 0 go on; -1 l (or a line before it) is bad. */
static int
verify_line(struct verify_state *st, const ev_audit_line *l, ev_audit_verdict *v)
{
	char hex[2 * HASH_LEN + 1];

	if (st->pend_no != 0) {
		int r = verify_pending(st, l, v);

		if (r != 0)
			return r < 0 ? -1 : 0;
	}
	if (!l->ended) {
		bad(v, l->no,
		    "line %zu: cut short, no line end (a write interrupted, or the file "
		    "truncated)",
		    l->no);
		return -1;
	}
	if (l->problem != NULL) {
		/* Bad, unless the next line is the writer's audit.torn after it. */
		st->pend_no = l->no;
		st->pend_last = l->no;
		memcpy(st->pend_hash, l->hash, HASH_LEN);
		snprintf(st->pend_problem, sizeof(st->pend_problem), "%s", l->problem);
		return 0;
	}
	/*
	 * A torn line took no seq: the writer's audit.torn after it has the seq
	 * after the last whole line's (src/audit.c tail_sync), as any next line.
	 */
	if (l->seq != st->seq) {
		bad(v, l->no,
		    "line %zu: seq is %lld, expected %lld (deleted, inserted or reordered lines)",
		    l->no, (long long)l->seq, (long long)st->seq);
		return -1;
	}
	sodium_bin2hex(hex, sizeof(hex), st->prev, sizeof(st->prev));
	if (strcmp(hex, l->prev) != 0) {
		if (st->prev_no == 0)
			bad(v, l->no,
			    "line 1: prev is not 64 zeros (the lines before it were deleted)");
		else
			bad(v, l->no,
			    "line %zu: prev does not match the hash of line %zu (edited, deleted "
			    "or reordered lines)",
			    l->no, st->prev_no);
		return -1;
	}
	if (strcmp(l->event, EV_AUDIT_CHECKPOINT) == 0) {
		if (check_checkpoint(l, st->key, v->why, sizeof(v->why)) != 0) {
			v->valid = 0;
			v->bad_line = l->no;
			return -1;
		}
		v->checkpoints++;
		v->last_checkpoint_seq = l->seq;
		v->last_checkpoint_line = l->no;
		st->torn_no = 0;
	}
	if (st->head->present && l->seq == st->head->seq && verify_head_line(st, l, v) != 0)
		return -1;
	memcpy(st->prev, l->hash, HASH_LEN);
	st->prev_no = l->no;
	st->seq = l->seq + 1;
	st->last_seq = l->seq;
	return 0;
}

/* After the last line (nlines of them). 0 valid; -1 bad. */
static int
verify_end(struct verify_state *st, size_t nlines, ev_audit_verdict *v)
{
	if (st->pend_no != 0 && verify_pending(st, NULL, v) != 0)
		return -1;
	if (st->torn_no != 0) {
		bad(v, st->torn_no,
		    "line %zu: cut short (a crash while writing, or an edit), and no later "
		    "checkpoint covers it",
		    st->torn_no);
		return -1;
	}
	if (st->head->present && st->head_no == 0) {
		bad(v, nlines + 1,
		    "line %zu: missing: the file ends at seq %lld, but %s.head records checkpoint "
		    "seq %lld (truncated)",
		    nlines + 1, (long long)st->last_seq, st->path, (long long)st->head->seq);
		return -1;
	}
	/*
	 * The writer replaces the head at every checkpoint, so checkpoints without
	 * one mean it was removed (hiding a truncation), except for a crash between
	 * writing the first checkpoint and its head: one checkpoint, the last line.
	 */
	if (!st->head->present && v->checkpoints == 1 && v->last_checkpoint_line == nlines)
		v->head_missing = 1;
	else if (!st->head->present && v->checkpoints > 0) {
		bad(v, 0,
		    "%s.head: missing, but the file has %zu checkpoint%s (the last at line %zu): "
		    "the head was removed (truncated?) or could not be written",
		    st->path, v->checkpoints, v->checkpoints == 1 ? "" : "s",
		    v->last_checkpoint_line);
		return -1;
	}
	v->valid = 1;
	v->unsigned_lines = nlines - v->last_checkpoint_line;
	return 0;
}

CK_RV
ev_audit_verify(ev_audit_reader *r, const unsigned char key[32], ev_audit_verdict *v, char *err,
		size_t errlen)
{
	struct verify_state st = {.key = key, .head = &r->head, .path = r->path, .seq = 1};
	const ev_audit_line *l = NULL;
	int decided = 0, rc;
	CK_RV rv;

	memset(v, 0, sizeof(*v));
	if (key == NULL)
		return CKR_ARGUMENTS_BAD;
	if (r->head.present && r->head.problem != NULL) {
		bad(v, 0, "%s.head: %s", r->path, r->head.problem);
		decided = 1;
	}
	for (;;) {
		if (decided) {
			/* The verdict is in: the rest is only counted. */
			rc = read_line(r, err, errlen);
			if (rc < 0)
				return CKR_DEVICE_ERROR;
			if (rc == 0)
				break;
			continue;
		}
		rv = ev_audit_reader_next(r, &l, err, errlen);
		if (rv != CKR_OK)
			return rv;
		if (l == NULL)
			break;
		decided = verify_line(&st, l, v) != 0;
	}
	v->lines = r->nlines;
	if (!decided)
		(void)verify_end(&st, r->nlines, v);
	return CKR_OK;
}

/*
 * tm's fields as read, turned into seconds since the epoch (UTC); -1
 * when they name no such time (2026-02-30, 24:00:00, a leap second):
 * timegm() would roll them over, so they must come back the same.
 */
static time_t
utc_seconds(const struct tm *tm)
{
	struct tm in = *tm, back;
	time_t secs = timegm(&in);

	if (secs == (time_t)-1 || gmtime_r(&secs, &back) == NULL)
		return (time_t)-1;
	if (back.tm_year != tm->tm_year || back.tm_mon != tm->tm_mon ||
	    back.tm_mday != tm->tm_mday || back.tm_hour != tm->tm_hour ||
	    back.tm_min != tm->tm_min || back.tm_sec != tm->tm_sec)
		return (time_t)-1;
	return secs;
}

/* The n digits at s as a number; -1 when one is not a digit (strptime() would skip spaces). */
static int
digits_at(const char *s, int n)
{
	int v = 0, i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* "YYYY-MM-DD" at s into tm; 0, or -1. */
static int
date_at(const char *s, struct tm *tm)
{
	int y = digits_at(s, 4), m = digits_at(s + 5, 2), d = digits_at(s + 8, 2);

	if (y < 0 || m < 1 || d < 1 || s[4] != '-' || s[7] != '-')
		return -1;
	tm->tm_year = y - 1900;
	tm->tm_mon = m - 1;
	tm->tm_mday = d;
	return 0;
}

int
ev_audit_time_parse(const char *s, int64_t *start, int64_t *end)
{
	struct tm tm;
	const char *p;
	int64_t frac = 0, unit = 1000000;
	size_t len = strlen(s);
	time_t secs;
	int digits = 0;

	memset(&tm, 0, sizeof(tm));
	if (len < 10 || date_at(s, &tm) != 0)
		return -1;
	if (len == 10) {
		secs = utc_seconds(&tm);
		if (secs == (time_t)-1)
			return -1;
		*start = (int64_t)secs * 1000000;
		*end = *start + (int64_t)86400 * 1000000;
		return 0;
	}
	if (len < 20 || s[10] != 'T' || s[13] != ':' || s[16] != ':')
		return -1;
	tm.tm_hour = digits_at(s + 11, 2);
	tm.tm_min = digits_at(s + 14, 2);
	tm.tm_sec = digits_at(s + 17, 2);
	if (tm.tm_hour < 0 || tm.tm_min < 0 || tm.tm_sec < 0)
		return -1;
	p = s + 19;
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
	secs = utc_seconds(&tm);
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
	if (f->has_since && l->time_us < f->since)
		return 0;
	if (f->has_until && l->time_us >= f->until)
		return 0;
	for (i = 0; i < f->nevents; i++)
		if (kind_matches(l->event, f->events[i]))
			break;
	return f->nevents == 0 || i < f->nevents;
}

/*
 * What each count counts: an event kind, and an outcome or any (NULL).
 * Events done count only with outcome ok: a refusal or failure of one is
 * counted in refusals or failures, not as done.
 */
static const struct {
	const char *name;
	const char *event;
	const char *outcome;
} counts[EV_AUDIT_C_COUNT] = {
    [EV_AUDIT_C_ZONES_CREATED] = {"zones_created", EV_AUDIT_ZONE_CREATED, "ok"},
    [EV_AUDIT_C_ZONES_REINITIALISED] = {"zones_reinitialised", EV_AUDIT_ZONE_REINITIALISED, "ok"},
    [EV_AUDIT_C_ZONES_REMOVED] = {"zones_removed", EV_AUDIT_ZONE_REMOVED, "ok"},
    [EV_AUDIT_C_ZONES_REVOKED] = {"zones_revoked", EV_AUDIT_ZONE_REVOKED, "ok"},
    [EV_AUDIT_C_ZONES_REKEYED] = {"zones_rekeyed", EV_AUDIT_ZONE_REKEYED, "ok"},
    [EV_AUDIT_C_KEYS_GENERATED] = {"keys_generated", EV_AUDIT_KEY_GENERATED, "ok"},
    [EV_AUDIT_C_KEYS_IMPORTED] = {"keys_imported", EV_AUDIT_KEY_IMPORTED, "ok"},
    [EV_AUDIT_C_KEYS_ROTATED] = {"keys_rotated", EV_AUDIT_KEY_ROTATED, "ok"},
    [EV_AUDIT_C_KEYS_RETIRED] = {"keys_retired", EV_AUDIT_KEY_RETIRED, "ok"},
    [EV_AUDIT_C_KEYS_DESTROYED] = {"keys_destroyed", EV_AUDIT_KEY_DESTROYED, "ok"},
    [EV_AUDIT_C_KEYS_REVOKED] = {"keys_revoked", EV_AUDIT_KEY_REVOKED, "ok"},
    [EV_AUDIT_C_LOGINS_OK] = {"logins_ok", EV_AUDIT_LOGIN, "ok"},
    [EV_AUDIT_C_LOGINS_REFUSED] = {"logins_refused", EV_AUDIT_LOGIN, "refused"},
    [EV_AUDIT_C_PIN_LOCKS] = {"pin_locks", EV_AUDIT_PIN_LOCKED, "refused"},
    [EV_AUDIT_C_PINS_SET] = {"pins_set", EV_AUDIT_PIN_SET, "ok"},
    [EV_AUDIT_C_ATTESTATIONS_OK] = {"attestations_ok", EV_AUDIT_ATTESTATION, "ok"},
    [EV_AUDIT_C_ATTESTATIONS_REFUSED] = {"attestations_refused", EV_AUDIT_ATTESTATION, "refused"},
    [EV_AUDIT_C_REVOCATION_LISTS_APPLIED] = {"revocation_lists_applied", EV_AUDIT_REVOCATION_LIST,
					     "ok"},
    [EV_AUDIT_C_REVOCATION_LISTS_REFUSED] = {"revocation_lists_refused", EV_AUDIT_REVOCATION_LIST,
					     "refused"},
    [EV_AUDIT_C_ROOT_UNREACHABLE] = {"root_unreachable", EV_AUDIT_ROOT_UNREACHABLE, "failed"},
    [EV_AUDIT_C_DEGRADED_ENTERED] = {"degraded_entered", EV_AUDIT_DEGRADED_ENTERED, NULL},
    [EV_AUDIT_C_CHECKPOINTS] = {"checkpoints", EV_AUDIT_CHECKPOINT, "ok"},
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

/* Whose trail it is: the device of its lines, the key of its last checkpoint. 0, or -1. */
static int
note_origin(ev_audit_summary *s, const ev_audit_line *l)
{
	if (s->device == NULL) {
		s->device = strdup(l->device);
		if (s->device == NULL)
			return -1;
	} else if (strcmp(s->device, l->device) != 0)
		s->several_devices = 1;
	if (strcmp(l->event, EV_AUDIT_CHECKPOINT) == 0)
		snprintf(s->checkpoint_key, sizeof(s->checkpoint_key), "%s", l->key);
	return 0;
}

/*
 * The line the writer puts in place of events it lost (out of memory;
 * src/audit_event.h): it has the first lost event's kind, but records no
 * such event, only a failure.
 */
static int
is_lost_line(const ev_audit_line *l)
{
	json_object *d;

	return strcmp(l->outcome, "failed") == 0 &&
	       json_object_object_get_ex(l->obj, "detail", &d) &&
	       json_object_is_type(d, json_type_object) && json_object_object_get_ex(d, "lost", NULL);
}

/* Count line l (well formed, in the period). CKR_OK, CKR_HOST_MEMORY. */
static CK_RV
count_line(ev_audit_summary *s, const ev_audit_line *l)
{
	ev_audit_counts *c = zone_counts(s, l->zone);
	int lost = is_lost_line(l);
	unsigned k;

	if (c == NULL)
		return CKR_HOST_MEMORY;
	s->lines++;
	if (s->first[0] == '\0')
		snprintf(s->first, sizeof(s->first), "%s", l->time);
	snprintf(s->last, sizeof(s->last), "%s", l->time);
	for (k = 0; k < EV_AUDIT_C_COUNT; k++)
		if ((counts[k].event == NULL || (!lost && strcmp(l->event, counts[k].event) == 0)) &&
		    (counts[k].outcome == NULL || strcmp(l->outcome, counts[k].outcome) == 0))
			c->n[k]++;
	return CKR_OK;
}

CK_RV
ev_audit_summarize(ev_audit_reader *r, const ev_audit_filter *f, ev_audit_summary *s, char *err,
		   size_t errlen)
{
	ev_audit_filter times = {.has_since = f->has_since,
				  .since = f->since,
				  .has_until = f->has_until,
				  .until = f->until};
	const ev_audit_line *l = NULL;
	CK_RV rv;

	memset(s, 0, sizeof(*s));
	for (;;) {
		rv = ev_audit_reader_next(r, &l, err, errlen);
		if (rv != CKR_OK || l == NULL)
			break;
		if (l->problem != NULL) {
			s->skipped++;
			continue;
		}
		if (note_origin(s, l) != 0) {
			rv = CKR_HOST_MEMORY;
			break;
		}
		if (ev_audit_match(l, &times) && (rv = count_line(s, l)) != CKR_OK)
			break;
	}
	if (rv == CKR_HOST_MEMORY)
		ev_errf(err, errlen, "out of memory");
	if (rv != CKR_OK)
		ev_audit_summary_clear(s);
	return rv;
}

void
ev_audit_summary_clear(ev_audit_summary *s)
{
	if (s == NULL)
		return;
	free(s->zones);
	free(s->device);
	memset(s, 0, sizeof(*s));
}
