/*
 * The audit trail's writer (audit.h; the format: doc/audit.md, "Writing
 * and locking" and "The checkpoint key" say how this file does it).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sodium.h>

#include "audit.h"
#include "json.h"
#include "log.h"
#include "module.h"
#include "root/root.h"
#include "secmem.h"
#include "store.h"

#define HASH_LEN 32
#define HEAD_MAX 256 /* the longest .head file read */
#define SCAN_CHUNK 4096
#define DEVICE_MAX 256	    /* device bytes kept in a line (and signed) */
#define LOCK_WAIT_MS 5000   /* the longest wait for another process's flock */
#define LOCK_STEP_MS 10	    /* between tries */
#define LOCK_LOG_EVERY 60   /* seconds between two logs of a lock not obtained */
#define COPY_LINES 4	    /* lines one call writes at most: torn end, lost count, its own, checkpoint */

/*
 * What a call that writes works with (malloc'ed: too big for a host
 * thread's stack): the line being built, and the lines written under the
 * lock, copied to syslog only once the locks are released.
 */
typedef struct work {
	char line[EV_AUDIT_LINE_MAX + 2]; /* one line, a torn end's '\n' before it, its '\n' */
	char copies[COPY_LINES * (EV_AUDIT_LINE_MAX + 1)]; /* lines, each '\0' ended */
	size_t copied;
} work;

struct ev_audit {
	int enabled;
	int fd; /* -1: syslog only */
	int use_syslog;
	ev_audit_fsync fsync;
	unsigned cp_lines;
	int64_t cp_interval;
	int64_t opened; /* unix time of ev_audit_open(): the interval's start without a head */
	char *path;
	char *head_path;
	char *device;	   /* [device] id as configured (the sealed key's associated data) */
	char *line_device; /* as lines carry it and checkpoints sign it: cut, valid UTF-8 */
	char program[16];
	pthread_mutex_t mu;	      /* everything below, and the file's writes by this process */
	int known;		      /* seq, hash and size below are the file's tail */
	int64_t seq;		      /* the last line's seq (0: none) */
	unsigned char hash[HASH_LEN]; /* BLAKE2b-256 of the last line (zeros: none) */
	off_t size;		      /* the file's size after this process's last write */
	int64_t mine;		      /* seq of the last line this process wrote (0: none) */
	int dirty;		      /* lines written and not synced (hold, fsync checkpoint) */
	int watched;		      /* a watcher calls ev_audit_sync_later() (sync_later) */
	int failed;		      /* the file's failure has been logged */
	int locked;		      /* this process holds the flock */
	int64_t lock_logged;	      /* unix time a lock timeout was last logged (0: never) */
	int64_t busy_until;	      /* monotonic ms: a wait timed out; until then, no waiting */
	int64_t dropped;	      /* lines not written to the file since (audit.h, "Failure") */
	char dropped_kind[65];	      /* the first one's event */
	int64_t dropped_zone;	      /* their zone, 0 when several */
	const char *dropped_why;      /* the first one's cause (a string constant) */
	work *work;		      /* the caller's, between file_lock() and file_unlock() */
	int truncated; /* the file does not hold the head's checkpoint: logged, no checkpoints */
	int64_t cp_failed_seq;	/* a checkpoint written at this seq whose head could not be */
	int64_t cp_failed_time; /* and when: the next is due from there (0: none failed) */
	ev_secret *sk; /* the checkpoint key (Ed25519, 64 bytes); NULL: none */
	unsigned char pk[crypto_sign_PUBLICKEYBYTES];
};

static _Thread_local unsigned hold_depth;

/* Associated data of the sealed checkpoint key: its purpose, then the device. */
#define KEY_AAD_PREFIX "edgevault audit key"

const char *
ev_audit_path(const ev_config *cfg, char *buf, size_t len)
{
	int n;

	if (cfg->audit_file != NULL)
		n = snprintf(buf, len, "%s", cfg->audit_file);
	else
		n = snprintf(buf, len, "%s/%s", cfg->store_dir, EV_AUDIT_FILE);
	if (n < 0 || (size_t)n >= len)
		return NULL;
	return buf;
}

static void
read_program(char out[16])
{
	FILE *f = fopen("/proc/self/comm", "re");
	size_t n = 0;

	out[0] = '\0';
	if (f == NULL)
		return;
	if (fgets(out, 16, f) != NULL)
		n = strcspn(out, "\n");
	out[n] = '\0';
	fclose(f);
}

/* The file could not be used: said once (until it works again: write_all()), as an error. */
static void
file_failed(ev_audit *a, const char *what)
{
	if (a->failed)
		return;
	a->failed = 1;
	if (a->fd < 0)
		ev_error("audit: %s %s: %m; lines go to syslog only", what, a->path);
	else
		ev_error("audit: %s %s: %m; lines that cannot be written go to syslog only, "
			 "counted (a line says how many once the file is written again); "
			 "later lines try the file again",
			 what, a->path);
}

static char *text_clean(const char *s, size_t max);

CK_RV
ev_audit_open(const ev_config *cfg, ev_audit **out)
{
	char buf[4096];
	ev_audit *a;
	CK_RV rv = CKR_HOST_MEMORY;

	*out = NULL;
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return CKR_HOST_MEMORY;
	a->fd = -1;
	if (pthread_mutex_init(&a->mu, NULL) != 0) {
		free(a);
		return CKR_HOST_MEMORY;
	}
	a->enabled = cfg->audit_enabled;
	if (!a->enabled)
		goto done;
	a->use_syslog = cfg->audit_syslog;
	a->fsync = cfg->audit_fsync;
	a->cp_lines = cfg->audit_checkpoint_lines > 0 ? cfg->audit_checkpoint_lines : 1;
	a->cp_interval = cfg->audit_checkpoint_interval;
	a->opened = (int64_t)time(NULL);
	read_program(a->program);
	if (ev_audit_path(cfg, buf, sizeof(buf)) == NULL) {
		ev_error("audit: the audit file's path is too long; lines go to syslog only");
		a->failed = 1;
		a->path = strdup("(too long)");
	} else {
		a->path = strdup(buf);
	}
	a->device = strdup(cfg->device_id != NULL ? cfg->device_id : "");
	/* Cleaned once: the line and the checkpoint's signature use the same bytes. */
	if (a->device != NULL)
		a->line_device = text_clean(a->device, DEVICE_MAX);
	if (a->path == NULL || a->device == NULL || a->line_device == NULL ||
	    asprintf(&a->head_path, "%s.head", a->path) < 0) {
		a->head_path = NULL;
		goto out;
	}
	if (!a->failed) {
		/* Read too: the tail is read to chain to it. */
		/* 0660 (less the umask): every process of the store's group appends. */
		a->fd = open(a->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
			     0660);
		if (a->fd < 0)
			file_failed(a, "cannot open");
	}
done:
	*out = a;
	a = NULL; /* transferred */
	rv = CKR_OK;
out:
	ev_audit_close(a);
	return rv;
}

/* Free a writer's memory; the caller has closed (or given up) its descriptor. */
static void
writer_free(ev_audit *a)
{
	ev_secret_free(a->sk);
	free(a->path);
	free(a->head_path);
	free(a->device);
	free(a->line_device);
	free(a);
}

void
ev_audit_abandon(ev_audit *a)
{
	if (a == NULL)
		return;
	/*
	 * The descriptor is this process's copy: closing it releases no
	 * flock the parent holds through its own. The mutex may be held by a
	 * parent thread that does not exist here: not touched.
	 */
	if (a->fd >= 0)
		close(a->fd);
	writer_free(a);
}

/* ---- Reading the tail ---------------------------------------------------------------- */

/* The offset of the last '\n' in [0, end), or -1 when there is none (or on a read error: -2). */
static off_t
last_newline(int fd, off_t end)
{
	unsigned char buf[SCAN_CHUNK];

	while (end > 0) {
		off_t from = end > SCAN_CHUNK ? end - SCAN_CHUNK : 0;
		ssize_t n = pread(fd, buf, (size_t)(end - from), from);

		if (n != end - from)
			return -2;
		for (ssize_t i = n - 1; i >= 0; i--)
			if (buf[i] == '\n')
				return from + i;
		end = from;
	}
	return -1;
}

/* BLAKE2b-256 of the bytes [from, to) of the file. 0, or -1 on a read error. */
static int
hash_range(int fd, off_t from, off_t to, unsigned char out[HASH_LEN])
{
	crypto_generichash_state st;
	unsigned char buf[SCAN_CHUNK];

	crypto_generichash_init(&st, NULL, 0, HASH_LEN);
	while (from < to) {
		size_t want = to - from > SCAN_CHUNK ? SCAN_CHUNK : (size_t)(to - from);
		ssize_t n = pread(fd, buf, want, from);

		if (n <= 0)
			return -1;
		crypto_generichash_update(&st, buf, (size_t)n);
		from += n;
	}
	crypto_generichash_final(&st, out, HASH_LEN);
	return 0;
}

/* The "seq" of the line [from, to): > 0, or 0 when it is not a line of ours. */
static int64_t
line_seq(int fd, off_t from, off_t to)
{
	char buf[EV_AUDIT_LINE_MAX + 1];
	json_object *o, *v;
	int64_t seq = 0;

	if (to - from > EV_AUDIT_LINE_MAX || to <= from)
		return 0;
	if (pread(fd, buf, (size_t)(to - from), from) != to - from)
		return 0;
	buf[to - from] = '\0';
	o = json_tokener_parse(buf);
	if (o != NULL && json_object_is_type(o, json_type_object) &&
	    json_object_object_get_ex(o, "seq", &v) && json_object_is_type(v, json_type_int))
		seq = json_object_get_int64(v);
	json_object_put(o);
	return seq > 0 ? seq : 0;
}

/*
 * Whether the bytes [from, to), which do not end in '\n', are a whole
 * line of ours that lost only its '\n' (a crash between the write and
 * the disk): strict JSON, an object, its integer "seq" the one after
 * prev_seq and its "prev" prev_hash in hex. Its seq, or 0.
 */
static int64_t
line_whole(int fd, off_t from, off_t to, int64_t prev_seq, const unsigned char prev_hash[HASH_LEN])
{
	unsigned char buf[EV_AUDIT_LINE_MAX];
	char hex[2 * HASH_LEN + 1], err[128];
	json_object *o = NULL, *v;
	int64_t seq = 0;

	if (to - from > EV_AUDIT_LINE_MAX || to <= from)
		return 0;
	if (pread(fd, buf, (size_t)(to - from), from) != to - from)
		return 0;
	if (ev_json_parse_strict(buf, (size_t)(to - from), &o, err, sizeof(err)) != CKR_OK)
		return 0;
	sodium_bin2hex(hex, sizeof(hex), prev_hash, HASH_LEN);
	if (json_object_is_type(o, json_type_object) &&
	    json_object_object_get_ex(o, "seq", &v) && json_object_is_type(v, json_type_int) &&
	    json_object_get_int64(v) == prev_seq + 1 && json_object_object_get_ex(o, "prev", &v) &&
	    json_object_is_type(v, json_type_string) && strcmp(json_object_get_string(v), hex) == 0)
		seq = prev_seq + 1;
	json_object_put(o);
	return seq;
}

/*
 * The seq of the last line of ours that ends before from (a line start),
 * over torn lines without one (a crash while recovering from a crash):
 * at most EV_AUDIT_TORN_RUN_MAX lines back. > 0; 0: none; -1: a read error.
 */
static int64_t
seq_before(int fd, off_t from)
{
	for (int i = 0; i < EV_AUDIT_TORN_RUN_MAX && from > 0; i++) {
		off_t nl = last_newline(fd, from - 1);
		int64_t seq;

		if (nl == -2)
			return -1;
		seq = line_seq(fd, nl + 1, from - 1);
		if (seq > 0)
			return seq;
		from = nl + 1;
	}
	return 0;
}

/* What the end of the file holds. */
typedef struct tail {
	int64_t seq;		      /* of the last whole line of ours (0: none) */
	unsigned char hash[HASH_LEN]; /* of that line, or of the torn bytes when torn */
	int torn;		      /* the last bytes are not a line of ours */
	int need_nl;		      /* and do not end in '\n' */
	off_t torn_len;
} tail;

/*
 * Read the tail of a file of size bytes. A last line that is not one of
 * ours (no integer "seq"), or does not end in '\n' and is not a whole
 * line of ours (line_whole()), is torn: t->hash is the hash of its bytes
 * and t->seq that of the line before it (torn too: of the last line of
 * ours before, seq_before()). A whole line without its '\n' is not torn
 * (t->need_nl only). 0, or -1 when the file cannot be read.
 */
static int
tail_read(int fd, off_t size, tail *t)
{
	unsigned char prev_hash[HASH_LEN] = {0};
	int64_t prev_seq = 0;
	off_t end, nl, start;

	memset(t, 0, sizeof(*t));
	if (size == 0)
		return 0;
	nl = last_newline(fd, size);
	if (nl == -2)
		return -1;
	if (nl == size - 1) {
		end = size - 1;
		nl = last_newline(fd, end);
		if (nl == -2)
			return -1;
	} else {
		end = size;
		t->need_nl = 1;
	}
	start = nl + 1;
	if (hash_range(fd, start, end, t->hash) != 0)
		return -1;
	if (!t->need_nl) {
		t->seq = line_seq(fd, start, end);
		if (t->seq > 0)
			return 0;
	}
	/* The line before the last bytes. */
	if (start > 0) {
		nl = last_newline(fd, start - 1);
		if (nl == -2 || hash_range(fd, nl + 1, start - 1, prev_hash) != 0)
			return -1;
		prev_seq = line_seq(fd, nl + 1, start - 1);
		/*
		 * Torn too: the writer's audit.torn line after it has the seq
		 * after the last whole line's, and prev its hash (prev_hash).
		 */
		if (prev_seq == 0)
			prev_seq = seq_before(fd, nl + 1);
		if (prev_seq < 0)
			return -1;
	}
	if (t->need_nl && (start == 0 || prev_seq > 0)) {
		t->seq = line_whole(fd, start, end, prev_seq, prev_hash);
		if (t->seq > 0)
			return 0;
	}
	t->torn = 1;
	t->torn_len = end - start;
	t->seq = prev_seq;
	if (start > 0 && t->seq == 0)
		ev_error("audit: the line before the torn end of the file has no seq; the chain "
			 "goes on from 1");
	return 0;
}

/* ---- Building lines -------------------------------------------------------------------- */

static const char *
class_name(CK_OBJECT_CLASS c, char buf[24])
{
	switch (c) {
	case CKO_DATA:
		return "data";
	case CKO_CERTIFICATE:
		return "certificate";
	case CKO_PUBLIC_KEY:
		return "public";
	case CKO_PRIVATE_KEY:
		return "private";
	case CKO_SECRET_KEY:
		return "secret";
	default:
		snprintf(buf, 24, "0x%lx", (unsigned long)c);
		return buf;
	}
}

static const char *
key_type_name(CK_KEY_TYPE k, char buf[24])
{
	switch (k) {
	case CKK_EC:
		return "ec";
	case CKK_EC_EDWARDS:
		return "ec_edwards";
	case CKK_EC_MONTGOMERY:
		return "ec_montgomery";
	case CKK_RSA:
		return "rsa";
	case CKK_AES:
		return "aes";
	case CKK_GENERIC_SECRET:
		return "generic_secret";
	default:
		snprintf(buf, 24, "0x%lx", (unsigned long)k);
		return buf;
	}
}

static const char *
user_name(CK_USER_TYPE u, char buf[24])
{
	switch (u) {
	case CKU_SO:
		return "so";
	case CKU_USER:
		return "user";
	case CKU_CONTEXT_SPECIFIC:
		return "context_specific";
	default:
		snprintf(buf, 24, "0x%lx", (unsigned long)u);
		return buf;
	}
}

static const char *const outcome_names[] = {"ok", "refused", "failed"};

/* n cut back so that p[0..n) does not end inside a UTF-8 sequence. */
static size_t
utf8_cut(const unsigned char *p, size_t n, size_t max)
{
	if (n <= max)
		return n;
	n = max;
	while (n > 0 && (p[n] & 0xc0) == 0x80)
		n--;
	return n;
}

/* s cut to at most max bytes and made valid UTF-8 (else non-ASCII bytes become '?'); NULL: no memory. */
static char *
text_clean(const char *s, size_t max)
{
	size_t n = strlen(s), i;
	char *c;

	n = utf8_cut((const unsigned char *)s, n, max);
	c = malloc(n + 1);
	if (c == NULL)
		return NULL;
	if (ev_utf8_valid((const unsigned char *)s, n, EV_UTF8_ANY))
		memcpy(c, s, n);
	else
		for (i = 0; i < n; i++)
			c[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
	c[n] = '\0';
	return c;
}

/* Add a string member, text_clean()ed. */
static int
add_text(json_object *o, const char *name, const char *s, size_t max)
{
	char *c = text_clean(s, max);
	json_object *v;

	if (c == NULL)
		return -1;
	v = json_object_new_string(c);
	free(c);
	if (v == NULL)
		return -1;
	return json_object_object_add(o, name, v);
}

static int
add_bool(json_object *o, const char *name, int b)
{
	json_object *v = json_object_new_boolean(b);

	if (v == NULL)
		return -1;
	return json_object_object_add(o, name, v);
}

static int
add_str(json_object *o, const char *name, const char *s)
{
	json_object *v = json_object_new_string(s);

	if (v == NULL)
		return -1;
	return json_object_object_add(o, name, v);
}

static int
add_int(json_object *o, const char *name, int64_t n)
{
	json_object *v = json_object_new_int64(n);

	if (v == NULL)
		return -1;
	return json_object_object_add(o, name, v);
}

static int
add_hex(json_object *o, const char *name, const char *prefix, const unsigned char *p, size_t n)
{
	size_t plen = strlen(prefix);
	char *hex = malloc(plen + 2 * n + 1);
	int r;

	if (hex == NULL)
		return -1;
	memcpy(hex, prefix, plen);
	sodium_bin2hex(hex + plen, 2 * n + 1, p, n);
	r = add_str(o, name, hex);
	free(hex);
	return r;
}

/* How much a line gives up to fit EV_AUDIT_LINE_MAX, step by step. */
enum { SHRINK_NONE, SHRINK_DETAIL, SHRINK_REASON, SHRINK_LABEL, SHRINK_STEPS };

static json_object *
object_json(const ev_audit_object *ob, int shrink)
{
	json_object *o = json_object_new_object();
	char buf[24];
	size_t n;
	int r = 0;

	if (o == NULL)
		return NULL;
	if (ob->handle != 0)
		r |= add_int(o, "handle", ob->handle);
	if (ob->cls != CK_UNAVAILABLE_INFORMATION)
		r |= add_str(o, "class", class_name(ob->cls, buf));
	if (ob->key_type != CK_UNAVAILABLE_INFORMATION)
		r |= add_str(o, "key_type", key_type_name(ob->key_type, buf));
	if (ob->label != NULL && shrink < SHRINK_LABEL) {
		/*
		 * The reader refuses strings holding NUL (and a control character
		 * misleads a terminal): as token.c's token labels, "hex:..." unless
		 * printable UTF-8 once cut.
		 */
		n = utf8_cut(ob->label, ob->label_len, EV_AUDIT_LABEL_MAX);
		if (ev_utf8_valid(ob->label, n, EV_UTF8_PRINTABLE)) {
			json_object *v =
			    json_object_new_string_len((const char *)ob->label, (int)n);

			r |= v == NULL ? -1 : json_object_object_add(o, "label", v);
		} else {
			n = ob->label_len < EV_AUDIT_LABEL_MAX ? ob->label_len : EV_AUDIT_LABEL_MAX;
			r |= add_hex(o, "label", "hex:", ob->label, n);
		}
		if (n < ob->label_len)
			r |= add_bool(o, "label_cut", 1);
	} else if (ob->label != NULL) {
		r |= add_bool(o, "label_cut", 1); /* dropped to fit EV_AUDIT_LINE_MAX */
	}
	if (ob->ckid != NULL) {
		n = ob->ckid_len < EV_AUDIT_ID_MAX ? ob->ckid_len : EV_AUDIT_ID_MAX;
		r |= add_hex(o, "id", "", ob->ckid, n);
		if (n < ob->ckid_len)
			r |= add_bool(o, "id_cut", 1);
	}
	if (ob->generation != 0)
		r |= add_int(o, "generation", ob->generation);
	if (r != 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* The time now as doc/audit.md writes it. */
static void
time_now(char out[40])
{
	struct timespec ts;
	struct tm tm;
	char d[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	if (strftime(d, sizeof(d), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		d[0] = '\0';
	snprintf(out, 40, "%.20s.%06dZ", d, (int)(ts.tv_nsec / 1000) % 1000000);
}

/* What a checkpoint line carries beyond an event. */
typedef struct cp_sig {
	const unsigned char *pk;
	const unsigned char *sig;
} cp_sig;

/*
 * The line for e with seq and prev, '\n' ended, into buf (at least
 * EV_AUDIT_LINE_MAX + 1 bytes): its length without the '\n', or 0 on
 * failure (out of memory).
 */
static size_t
line_build(const ev_audit *a, const ev_audit_event *e, int64_t seq,
	   const unsigned char prev[HASH_LEN], const cp_sig *cp, char *buf)
{
	char tbuf[40], ubuf[24];
	size_t len = 0;

	for (int shrink = SHRINK_NONE; shrink < SHRINK_STEPS && len == 0; shrink++) {
		json_object *o = json_object_new_object(), *v;
		const char *s;
		int r = 0;

		if (o == NULL)
			return 0;
		time_now(tbuf);
		r |= add_int(o, "seq", seq);
		r |= add_str(o, "time", tbuf);
		r |= add_str(o, "device", a->line_device);
		r |= add_int(o, "pid", (int64_t)getpid());
		r |= add_text(o, "program", a->program, 15);
		r |= add_text(o, "event", e->event, 64);
		r |= add_str(
		    o, "outcome",
		    outcome_names[e->outcome <= EV_AUDIT_FAILED ? e->outcome : EV_AUDIT_FAILED]);
		if (e->zone != 0)
			r |= add_int(o, "zone", e->zone);
		if (e->user != CK_UNAVAILABLE_INFORMATION)
			r |= add_str(o, "user", user_name(e->user, ubuf));
		if (e->object != NULL) {
			v = object_json(e->object, shrink);
			r |= v == NULL ? -1 : json_object_object_add(o, "object", v);
		}
		if (e->reason != NULL)
			r |= add_text(o, "reason", e->reason,
				      shrink >= SHRINK_REASON ? 64 : EV_AUDIT_REASON_MAX);
		if (e->ndetail > 0 && e->detail != NULL && shrink < SHRINK_DETAIL) {
			v = json_object_new_object();
			r |= v == NULL ? -1 : json_object_object_add(o, "detail", v);
			for (size_t i = 0; v != NULL && i < e->ndetail; i++) {
				const ev_audit_detail *d = &e->detail[i];

				if (d->str != NULL)
					r |= add_text(v, d->name, d->str, EV_AUDIT_REASON_MAX);
				else
					r |= add_int(v, d->name, d->num);
			}
		}
		if (cp != NULL) {
			char k[sodium_base64_ENCODED_LEN(crypto_sign_PUBLICKEYBYTES,
							 sodium_base64_VARIANT_ORIGINAL)];
			char sg[sodium_base64_ENCODED_LEN(crypto_sign_BYTES,
							  sodium_base64_VARIANT_ORIGINAL)];

			sodium_bin2base64(k, sizeof(k), cp->pk, crypto_sign_PUBLICKEYBYTES,
					  sodium_base64_VARIANT_ORIGINAL);
			sodium_bin2base64(sg, sizeof(sg), cp->sig, crypto_sign_BYTES,
					  sodium_base64_VARIANT_ORIGINAL);
			r |= add_str(o, "key", k);
			r |= add_str(o, "sig", sg);
		}
		r |= add_hex(o, "prev", "", prev, HASH_LEN);
		if (r == 0) {
			s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
								  JSON_C_TO_STRING_NOSLASHESCAPE);
			if (s != NULL && strlen(s) <= EV_AUDIT_LINE_MAX) {
				len = strlen(s);
				memcpy(buf, s, len);
				buf[len] = '\n';
			}
		}
		json_object_put(o);
		if (r != 0)
			return 0;
	}
	return len;
}

/* ---- Writing --------------------------------------------------------------------------- */

/* Keep a copy of the line p (n bytes, '\n's around it left out) for syslog after the unlock. */
static void
copy_add(ev_audit *a, const char *p, size_t n)
{
	work *w = a->work;

	if (n > 0 && p[0] == '\n')
		p++, n--;
	if (n > 0 && p[n - 1] == '\n')
		n--;
	if (!a->use_syslog || w == NULL || n == 0)
		return;
	if (w->copied + n + 1 > sizeof(w->copies)) {
		ev_error("audit: a line is not copied to syslog (more lines than expected)");
		return;
	}
	memcpy(w->copies + w->copied, p, n);
	w->copies[w->copied + n] = '\0';
	w->copied += n + 1;
}

/* The copies, to syslog: with no lock held (syslog() may block). w NULL: a no-op. */
static void
copies_send(work *w)
{
	size_t at;

	for (at = 0; w != NULL && at < w->copied; at += strlen(w->copies + at) + 1)
		syslog(LOG_AUTHPRIV | LOG_INFO, "edgevault audit: %s", w->copies + at);
}

/*
 * One line (with its '\n', and a '\n' before it for a torn end) written
 * with one write(), and kept for syslog. 0, or -1 (logged once).
 */
static int
write_all(ev_audit *a, const char *buf, size_t len)
{
	ssize_t n = write(a->fd, buf, len);

	if (n == (ssize_t)len) {
		if (a->failed) {
			a->failed = 0;
			ev_notice("audit: %s is written again", a->path);
		}
		copy_add(a, buf, len);
		return 0;
	}
	if (n >= 0)
		errno = ENOSPC;
	file_failed(a, "cannot write");
	return -1;
}

/* Write the line buf (len bytes before its '\n') after the tail, and chain to it. 0, or -1. */
static int
line_append(ev_audit *a, char *buf, size_t len)
{
	if (write_all(a, buf, len + 1) != 0)
		return -1;
	a->seq++;
	crypto_generichash(a->hash, HASH_LEN, (unsigned char *)buf, len, NULL, 0);
	a->mine = a->seq;
	a->dirty = 1;
	return 0;
}

/* Under the writer's mutex. 0, or -1 (logged once; the lines stay dirty). */
static int
sync_file(ev_audit *a)
{
	if (a->fd < 0)
		return -1;
	if (fdatasync(a->fd) != 0) {
		file_failed(a, "cannot sync");
		return -1;
	}
	a->dirty = 0;
	return 0;
}

/*
 * fdatasync() with no lock held: the caller took the lines' dirty mark
 * under the mutex, and puts it back when the sync fails (logged once).
 */
static void
sync_unlocked(ev_audit *a)
{
	int err;

	if (fdatasync(a->fd) == 0)
		return;
	err = errno;
	pthread_mutex_lock(&a->mu);
	a->dirty = 1;
	errno = err;
	file_failed(a, "cannot sync");
	pthread_mutex_unlock(&a->mu);
}

/*
 * The file's tail as this process must chain to: the cache when the file
 * has the size this process's last write left, else read. When the end
 * is torn, an audit.torn line goes after it first. Called under the
 * flock. 0, or -1.
 */
static int
tail_sync(ev_audit *a, char *buf)
{
	struct stat st;
	tail t;
	size_t len;

	if (fstat(a->fd, &st) != 0)
		return -1;
	if (a->known && st.st_size == a->size)
		return 0;
	if (tail_read(a->fd, st.st_size, &t) != 0)
		return -1;
	a->seq = t.seq;
	memcpy(a->hash, t.hash, HASH_LEN);
	if (t.torn) {
		char why[96];
		ev_audit_detail d = {.name = "bytes", .num = (int64_t)t.torn_len};
		ev_audit_event e = EV_AUDIT_EVENT_INIT(EV_AUDIT_TORN, EV_AUDIT_FAILED);

		snprintf(why, sizeof(why), "the end of the file (%lld bytes) is not a whole line",
			 (long long)t.torn_len);
		e.reason = why;
		e.detail = &d;
		e.ndetail = 1;
		ev_warn("audit: %s %s; an audit.torn line goes after it", a->path, why);
		buf[0] = '\n';
		len = line_build(a, &e, a->seq + 1, a->hash, NULL, buf + 1);
		if (len == 0)
			return -1;
		if (write_all(a, t.need_nl ? buf : buf + 1, len + 1 + (size_t)t.need_nl) != 0)
			return -1;
		a->seq++;
		crypto_generichash(a->hash, HASH_LEN, (unsigned char *)buf + 1, len, NULL, 0);
		a->mine = a->seq;
		a->dirty = 1;
	} else if (t.need_nl) {
		/* A whole line of ours that lost only its '\n': ended, and it counts. */
		ev_warn("audit: %s: the last line (seq %lld) had no '\\n'; one is added",
			a->path, (long long)t.seq);
		if (write_all(a, "\n", 1) != 0)
			return -1;
		a->dirty = 1;
	}
	a->known = 1;
	return 0;
}

/* The last checkpoint: from <file>.head (seq, its line's hash, and the time it was written). */
typedef struct head {
	int64_t seq;
	int64_t time;
	int has_hash; /* hash below was read (64 hex digits) */
	unsigned char hash[HASH_LEN];
} head;

static void
head_read(const ev_audit *a, head *h)
{
	char buf[HEAD_MAX + 1];
	json_object *o = NULL, *v;
	struct stat st;
	ssize_t n;
	int fd;

	h->seq = 0;
	h->time = a->opened;
	h->has_hash = 0;
	fd = open(a->head_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	n = read(fd, buf, HEAD_MAX);
	if (n > 0 && fstat(fd, &st) == 0) {
		buf[n] = '\0';
		o = json_tokener_parse(buf);
		if (o != NULL && json_object_object_get_ex(o, "seq", &v) &&
		    json_object_is_type(v, json_type_int)) {
			h->seq = json_object_get_int64(v);
			h->time = (int64_t)st.st_mtime;
			if (json_object_object_get_ex(o, "hash", &v) &&
			    json_object_is_type(v, json_type_string) &&
			    json_object_get_string_len(v) == 2 * HASH_LEN &&
			    sodium_hex2bin(h->hash, HASH_LEN, json_object_get_string(v),
					   2 * HASH_LEN, NULL, NULL, NULL) == 0)
				h->has_hash = 1;
		}
	}
	json_object_put(o);
	close(fd);
}

/* Replace <file>.head: a temporary file, synced, renamed over it. 0, or -1 (logged). */
static int
head_write(ev_audit *a, int64_t seq, const unsigned char hash[HASH_LEN])
{
	char hex[2 * HASH_LEN + 1], line[128], *tmp = NULL;
	int fd = -1, n, r = -1;

	sodium_bin2hex(hex, sizeof(hex), hash, HASH_LEN);
	n = snprintf(line, sizeof(line), "{\"seq\":%lld,\"hash\":\"%s\"}\n", (long long)seq, hex);
	if (asprintf(&tmp, "%s.%ld.tmp", a->head_path, (long)getpid()) < 0) {
		tmp = NULL;
		goto out;
	}
	/*
	 * A new file of our own: a symlink left at the name (the directory
	 * may be shared with the group) is removed, not followed.
	 */
	(void)unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (fd < 0 || write(fd, line, (size_t)n) != n || fsync(fd) != 0 ||
	    rename(tmp, a->head_path) != 0) {
		ev_error("audit: cannot write %s: %m", a->head_path);
		if (fd >= 0)
			unlink(tmp);
		goto out;
	}
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	free(tmp);
	return r;
}

/* Write a checkpoint line after the tail (under the flock, key held). 0, or -1. */
static int
checkpoint_write(ev_audit *a, char *buf)
{
	unsigned char msg[sizeof(EV_AUDIT_SIG_PREFIX) - 1 + 8 + HASH_LEN + DEVICE_MAX];
	unsigned char sig[crypto_sign_BYTES];
	ev_audit_event e = EV_AUDIT_EVENT_INIT(EV_AUDIT_CHECKPOINT, EV_AUDIT_OK);
	cp_sig cp = {.pk = a->pk, .sig = sig};
	size_t plen = sizeof(EV_AUDIT_SIG_PREFIX) - 1, dlen = strlen(a->line_device), m = 0, len;
	int64_t seq = a->seq + 1;

	memcpy(msg, EV_AUDIT_SIG_PREFIX, plen);
	m = plen;
	for (int i = 7; i >= 0; i--)
		msg[m++] = (unsigned char)((uint64_t)seq >> (8 * i));
	memcpy(msg + m, a->hash, HASH_LEN);
	m += HASH_LEN;
	memcpy(msg + m, a->line_device, dlen); /* the bytes the line's "device" carries */
	m += dlen;
	if (crypto_sign_detached(sig, NULL, msg, m, a->sk->data) != 0)
		return -1;
	len = line_build(a, &e, seq, a->hash, &cp, buf);
	if (len == 0 || line_append(a, buf, len) != 0)
		return -1;
	/* Whatever [audit] fsync says: the head never names a checkpoint that is not on disk. */
	if (sync_file(a) != 0 || head_write(a, seq, a->hash) != 0) {
		/*
		 * The line is there and the head is not (or is older): the
		 * next checkpoint is due counting from this one, not from the
		 * head, or every line and every watcher tick would write one.
		 */
		a->cp_failed_seq = seq;
		a->cp_failed_time = (int64_t)time(NULL);
		return -1;
	}
	a->cp_failed_seq = 0;
	a->cp_failed_time = 0;
	return 0;
}

/*
 * Whether a checkpoint is due after head h: checkpoint_lines lines since
 * it, or checkpoint_interval seconds, both counted from a later checkpoint
 * whose head could not be written when there is one. Under a->mu.
 */
static int
checkpoint_due(const ev_audit *a, const head *h)
{
	int64_t seq = h->seq, t = h->time;

	if (a->cp_failed_seq > seq) {
		seq = a->cp_failed_seq;
		t = a->cp_failed_time;
	}
	return a->seq - seq >= (int64_t)a->cp_lines ||
	       (a->cp_interval > 0 && (int64_t)time(NULL) - t >= a->cp_interval);
}

/*
 * Whether the file still holds the head's checkpoint: the line whose seq
 * is h->seq, found scanning back from the end (the tail is a->seq), is an
 * audit.checkpoint line whose hash is the head's. Otherwise the file was
 * cut back and written again since, and a checkpoint now would sign over
 * whatever was written. Under the flock, after tail_sync(). 1, or 0.
 */
static int
head_in_file(ev_audit *a, const head *h)
{
	char buf[EV_AUDIT_LINE_MAX + 1];
	unsigned char hash[HASH_LEN];
	struct stat st;
	off_t end, nl;
	int64_t left;
	int ok = 0;

	if (!h->has_hash || fstat(a->fd, &st) != 0 || st.st_size == 0)
		return 0;
	/* Lines back to it, and as many torn ends (each followed by an audit.torn line). */
	left = 2 * (a->seq - h->seq) + 2;
	end = st.st_size - 1; /* the last line's '\n' */
	while (left-- > 0 && end > 0) {
		json_object *o, *v;
		int64_t seq = 0;
		const char *ev = NULL;

		nl = last_newline(a->fd, end);
		if (nl == -2)
			return 0;
		if (end - (nl + 1) <= EV_AUDIT_LINE_MAX &&
		    pread(a->fd, buf, (size_t)(end - (nl + 1)), nl + 1) == end - (nl + 1)) {
			buf[end - (nl + 1)] = '\0';
			o = json_tokener_parse(buf);
			if (o != NULL && json_object_is_type(o, json_type_object) &&
			    json_object_object_get_ex(o, "seq", &v) &&
			    json_object_is_type(v, json_type_int))
				seq = json_object_get_int64(v);
			if (seq == h->seq && json_object_object_get_ex(o, "event", &v) &&
			    json_object_is_type(v, json_type_string))
				ev = json_object_get_string(v);
			if (seq == h->seq) {
				crypto_generichash(hash, HASH_LEN, (unsigned char *)buf,
						   (size_t)(end - (nl + 1)), NULL, 0);
				ok = ev != NULL && strcmp(ev, EV_AUDIT_CHECKPOINT) == 0 &&
				     sodium_memcmp(hash, h->hash, HASH_LEN) == 0;
			}
			json_object_put(o);
			if (seq != 0 && seq <= h->seq)
				return ok;
		}
		end = nl;
	}
	return 0;
}

/* Whether the line at p (len bytes, p[len] writable) is an audit.checkpoint line. */
static int
line_is_checkpoint(char *p, size_t len)
{
	static const char name[] = "\"" EV_AUDIT_CHECKPOINT "\"";
	json_object *o, *v;
	int r;

	/* Most lines do not name it: parse only those that do. */
	if (memmem(p, len, name, sizeof(name) - 1) == NULL)
		return 0;
	p[len] = '\0';
	o = json_tokener_parse(p);
	r = o != NULL && json_object_is_type(o, json_type_object) &&
	    json_object_object_get_ex(o, "event", &v) && json_object_is_type(v, json_type_string) &&
	    strcmp(json_object_get_string(v), EV_AUDIT_CHECKPOINT) == 0;
	json_object_put(o);
	return r;
}

/*
 * Whether the file holds an audit.checkpoint line anywhere: asked only
 * when the head is missing, so a trail cut back and re-chained with its
 * head removed is not signed over. Reads the whole file in chunks; lines
 * longer than EV_AUDIT_LINE_MAX and an unterminated tail are not ours and
 * are skipped. 1, 0, or -1 (read error or no memory; logged).
 */
static int
file_has_checkpoint(ev_audit *a)
{
	enum { CHUNK = 65536 };
	char *buf, *start, *nl;
	size_t have = 0, rest;
	off_t off = 0;
	ssize_t n;
	int r = 0, skipping = 0;

	buf = malloc(EV_AUDIT_LINE_MAX + 1 + CHUNK + 1);
	if (buf == NULL) {
		ev_error("audit: out of memory reading %s", a->path);
		return -1;
	}
	for (;;) {
		n = pread(a->fd, buf + have, CHUNK, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ev_error("audit: cannot read %s: %m", a->path);
			r = -1;
			break;
		}
		if (n == 0)
			break;
		off += n;
		have += (size_t)n;
		start = buf;
		while ((nl = memchr(start, '\n', (size_t)(buf + have - start))) != NULL) {
			if (!skipping && line_is_checkpoint(start, (size_t)(nl - start))) {
				r = 1;
				goto out;
			}
			skipping = 0;
			start = nl + 1;
		}
		rest = (size_t)(buf + have - start);
		if (rest > EV_AUDIT_LINE_MAX) {
			skipping = 1; /* too long to be a line of ours: skip to its end */
			rest = 0;
		}
		memmove(buf, start, rest);
		have = rest;
	}
out:
	free(buf);
	return r;
}

/*
 * A checkpoint when one is due (force: whenever a line came after the
 * last). Under the flock, after tail_sync(). 0 (also: none due, or no
 * key), or -1.
 */
static int
checkpoint_maybe(ev_audit *a, int force, char *buf)
{
	head h;

	if (a->sk == NULL || a->truncated)
		return 0;
	head_read(a, &h);
	if (h.seq > a->seq) {
		a->truncated = 1;
		ev_error("audit: %s ends at line %lld but its last checkpoint was line %lld: the "
			 "file was truncated; no checkpoint is written over it",
			 a->path, (long long)a->seq, (long long)h.seq);
		return 0;
	}
	if (h.seq == a->seq)
		return 0;
	if (!force && !checkpoint_due(a, &h))
		return 0;
	/*
	 * No head, but checkpoints in the file: the head was removed (or
	 * could not be written), and the lines since the last checkpoint may
	 * have been rewritten; nothing is signed over them.
	 */
	if (h.seq == 0) {
		int r = file_has_checkpoint(a);

		if (r < 0)
			return -1;
		if (r > 0) {
			a->truncated = 1;
			ev_error("audit: %s holds checkpoints but %s.head is missing: the head was "
				 "removed or could not be written; no checkpoint is written over the "
				 "file (check it with `edgevault audit verify`, then move it aside "
				 "to start a new trail)",
				 a->path, a->path);
			return 0;
		}
	}
	if (h.seq > 0 && !head_in_file(a, &h)) {
		a->truncated = 1;
		ev_error("audit: %s does not hold its last checkpoint (line %lld) as %s.head names "
			 "it: the file was cut back and written again; no checkpoint is written "
			 "over it",
			 a->path, (long long)h.seq, a->path);
		return 0;
	}
	return checkpoint_write(a, buf);
}

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Take this process's mutex, then the file's flock; w (may be NULL)
 * collects the lines written for syslog until file_unlock(). 0: both
 * held (or the mutex only when there is no file); -1: the flock is not
 * held (logged), the mutex is: call file_unlock() either way.
 *
 * The wait for the flock is bounded (LOCK_WAIT_MS): callers hold the
 * store lock, and a stopped process, or a child that inherited the lock,
 * must not hang every process of the store. The bound is the process's,
 * not each thread's: threads queued on the mutex behind a wait that timed
 * out, and every caller for LOCK_WAIT_MS after it, try once without
 * waiting. wait 0: try once (the watcher, which tries again later).
 */
static int
file_lock(ev_audit *a, work *w, int wait)
{
	struct timespec step = {.tv_sec = 0, .tv_nsec = LOCK_STEP_MS * 1000000L};
	int waited = 0, limit;
	int64_t now;

	pthread_mutex_lock(&a->mu);
	a->work = w;
	if (a->fd < 0)
		return 0;
	limit = wait && mono_ms() >= a->busy_until ? LOCK_WAIT_MS : 0;
	while (flock(a->fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno == EINTR)
			continue;
		if (errno == EWOULDBLOCK && waited < limit) {
			nanosleep(&step, NULL);
			waited += LOCK_STEP_MS;
			continue;
		}
		if (errno != EWOULDBLOCK) {
			file_failed(a, "cannot lock");
		} else if (limit > 0) {
			a->busy_until = mono_ms() + LOCK_WAIT_MS;
			now = (int64_t)time(NULL);
			if (a->lock_logged == 0 || now - a->lock_logged >= LOCK_LOG_EVERY) {
				a->lock_logged = now;
				ev_error("audit: %s stayed locked by another process for %d ms; "
					 "lines go to syslog only (counted) until it is released",
					 a->path, LOCK_WAIT_MS);
			}
		}
		/* Whoever holds it may write: the tail is read again next time. */
		a->known = 0;
		return -1;
	}
	a->busy_until = 0;
	a->locked = 1;
	return 0;
}

static void
file_unlock(ev_audit *a)
{
	struct stat st;

	if (a->fd >= 0 && a->locked) {
		a->locked = 0;
		/* The size this process leaves: unchanged at the next write means no one wrote. */
		if (a->known && fstat(a->fd, &st) == 0)
			a->size = st.st_size;
		else
			a->known = 0;
		(void)flock(a->fd, LOCK_UN);
	}
	a->work = NULL;
	pthread_mutex_unlock(&a->mu);
}

/* A line for e not written to the file, for why: counted (under the mutex). */
static void
dropped_add(ev_audit *a, const ev_audit_event *e, const char *why)
{
	if (a->fd < 0)
		return; /* no file at all: syslog is the trail (logged at the open) */
	if (a->dropped++ == 0) {
		snprintf(a->dropped_kind, sizeof(a->dropped_kind), "%s", e->event);
		a->dropped_zone = e->zone;
		a->dropped_why = why;
	} else if (a->dropped_zone != e->zone) {
		a->dropped_zone = 0;
	}
}

/*
 * After lines were not written (dropped_add()), the line that says so,
 * before anything else: the first one's event, outcome "failed", reason
 * EV_AUDIT_UNWRITTEN_REASON and the first cause, their zone (0: several),
 * detail "lost". Under the flock, after tail_sync(). 0, or -1 (still
 * counted).
 */
static int
lost_write(ev_audit *a, char *buf)
{
	char why[128];
	ev_audit_detail d = {.name = "lost", .num = a->dropped};
	ev_audit_event e = EV_AUDIT_EVENT_INIT(a->dropped_kind, EV_AUDIT_FAILED);
	size_t len;

	if (a->dropped == 0)
		return 0;
	snprintf(why, sizeof(why), "%s (%s)", EV_AUDIT_UNWRITTEN_REASON, a->dropped_why);
	e.zone = a->dropped_zone;
	e.reason = why;
	e.detail = &d;
	e.ndetail = 1;
	len = line_build(a, &e, a->seq + 1, a->hash, NULL, buf);
	if (len == 0) {
		ev_error("audit: out of memory; the line counting %lld lines not written is "
			 "not written yet",
			 (long long)a->dropped);
		return -1;
	}
	if (line_append(a, buf, len) != 0)
		return -1;
	ev_notice("audit: %lld lines that were not written to %s are counted in line %lld",
		  (long long)a->dropped, a->path, (long long)a->seq);
	a->dropped = 0;
	return 0;
}

/*
 * Whether a sync is due after the unlock ([audit] fsync = always), taken
 * under the mutex. A line that may be synced later leaves the mark for
 * the watcher's ev_audit_sync_later().
 */
static int
sync_take(ev_audit *a, int ok, int later)
{
	if (!ok || a->fsync != EV_AUDIT_FSYNC_ALWAYS || hold_depth > 0 || !a->dirty)
		return 0;
	if (later && a->watched)
		return 0;
	a->dirty = 0;
	return 1;
}

void
ev_audit_emit_to(ev_audit *a, const ev_audit_event *e)
{
	work *w;
	size_t len = 0;
	int ok = 0, sync;
	const char *why = "lock held";

	if (a == NULL || !a->enabled || e == NULL || e->event == NULL)
		return;
	w = malloc(sizeof(*w));
	if (w == NULL) {
		ev_error("audit: out of memory; a %s line is lost (counted)", e->event);
		pthread_mutex_lock(&a->mu);
		dropped_add(a, e, "out of memory");
		pthread_mutex_unlock(&a->mu);
		return;
	}
	w->copied = 0;
	if (file_lock(a, w, 1) == 0 && a->fd >= 0) {
		why = "file error";
		if (tail_sync(a, w->line) == 0 && lost_write(a, w->line) == 0) {
			len = line_build(a, e, a->seq + 1, a->hash, NULL, w->line);
			if (len == 0) {
				why = "out of memory";
				ev_error("audit: out of memory; a %s line is not written (counted)",
					 e->event);
			} else if (line_append(a, w->line, len) == 0) {
				ok = 1;
			}
		}
	}
	if (!ok) {
		a->known = 0;
		dropped_add(a, e, why);
		/* Syslog still gets the line, chained to nothing. */
		len = line_build(a, e, 0, (const unsigned char[HASH_LEN]){0}, NULL, w->line);
		copy_add(a, w->line, len);
	}
	if (ok && checkpoint_maybe(a, 0, w->line) != 0)
		a->known = 0;
	sync = sync_take(a, ok, e->sync_later);
	file_unlock(a);
	copies_send(w);
	if (sync)
		sync_unlocked(a);
	free(w);
}

void
ev_audit_watched(ev_audit *a, int on)
{
	if (a == NULL)
		return;
	pthread_mutex_lock(&a->mu);
	a->watched = on;
	pthread_mutex_unlock(&a->mu);
}

void
ev_audit_sync_later(ev_audit *a)
{
	int sync;

	if (a == NULL || !a->enabled)
		return;
	pthread_mutex_lock(&a->mu);
	sync = a->fd >= 0 && a->fsync == EV_AUDIT_FSYNC_ALWAYS && a->dirty;
	if (sync)
		a->dirty = 0;
	pthread_mutex_unlock(&a->mu);
	if (sync)
		sync_unlocked(a);
}

void
ev_audit_emit(const ev_audit_event *e)
{
	if (ev_check_init() != CKR_OK)
		return;
	ev_audit_emit_to(ev_mod->audit, e);
}

void
ev_audit_hold(void)
{
	hold_depth++;
}

void
ev_audit_release(void)
{
	ev_audit *a;
	int sync;

	if (hold_depth == 0 || --hold_depth > 0)
		return;
	if (ev_check_init() != CKR_OK)
		return;
	a = ev_mod->audit;
	if (a == NULL || !a->enabled || a->fd < 0)
		return;
	pthread_mutex_lock(&a->mu);
	sync = sync_take(a, 1, 0);
	pthread_mutex_unlock(&a->mu);
	if (sync)
		sync_unlocked(a);
}

CK_RV
ev_audit_checkpoint(ev_audit *a)
{
	work *w;
	CK_RV rv = CKR_OK;

	if (a == NULL || !a->enabled)
		return CKR_FUNCTION_REJECTED;
	w = malloc(sizeof(*w));
	if (w == NULL)
		return CKR_HOST_MEMORY;
	w->copied = 0;
	if (file_lock(a, w, 1) != 0)
		rv = CKR_DEVICE_ERROR;
	else if (a->sk == NULL)
		rv = CKR_FUNCTION_REJECTED;
	else if (a->fd < 0 || tail_sync(a, w->line) != 0 || lost_write(a, w->line) != 0 ||
		 checkpoint_maybe(a, 1, w->line) != 0)
		rv = CKR_DEVICE_ERROR;
	else if (a->truncated)
		rv = CKR_DEVICE_ERROR;
	if (rv == CKR_DEVICE_ERROR)
		a->known = 0;
	file_unlock(a);
	copies_send(w);
	free(w);
	return rv;
}

void
ev_audit_checkpoint_if_due(ev_audit *a)
{
	struct stat st;
	work *w;
	head h;
	int may;

	if (a == NULL || !a->enabled || a->cp_interval == 0)
		return;
	/*
	 * First without the flock: not due, or nothing written since the
	 * head (this process knows the tail, it is the head's line, and the
	 * file has not grown since), is the idle device's every tick.
	 */
	head_read(a, &h);
	pthread_mutex_lock(&a->mu);
	may = a->sk != NULL && !a->truncated && a->fd >= 0 && checkpoint_due(a, &h) &&
	      !(a->known && a->seq == h.seq && fstat(a->fd, &st) == 0 && st.st_size == a->size);
	pthread_mutex_unlock(&a->mu);
	if (!may)
		return;
	w = malloc(sizeof(*w));
	if (w == NULL)
		return;
	w->copied = 0;
	if (file_lock(a, w, 0) == 0 && a->fd >= 0) {
		if (tail_sync(a, w->line) != 0 || lost_write(a, w->line) != 0 ||
		    checkpoint_maybe(a, 0, w->line) != 0)
			a->known = 0;
	}
	file_unlock(a);
	copies_send(w);
	free(w);
}

/*
 * At close, under the flock: the count of lines not written, and a
 * checkpoint over what this process wrote since the last one.
 */
static void
close_write(ev_audit *a, char *buf)
{
	head h;

	if (a->dropped == 0 && (a->sk == NULL || a->mine == 0))
		return;
	if (tail_sync(a, buf) != 0 || lost_write(a, buf) != 0 || a->sk == NULL || a->mine == 0)
		return;
	head_read(a, &h);
	if (a->mine > h.seq && checkpoint_maybe(a, 1, buf) != 0)
		ev_warn("audit: no checkpoint could be written at close");
}

void
ev_audit_close(ev_audit *a)
{
	work *w;

	if (a == NULL)
		return;
	if (a->enabled && a->fd >= 0) {
		w = malloc(sizeof(*w));
		if (w != NULL)
			w->copied = 0;
		if (file_lock(a, w, 1) == 0 && w != NULL)
			close_write(a, w->line);
		if (a->locked && a->fsync != EV_AUDIT_FSYNC_NEVER && a->dirty)
			sync_file(a);
		if (a->dropped > 0)
			ev_error("audit: %lld lines were not written to %s (sent to syslog only)",
				 (long long)a->dropped, a->path);
		file_unlock(a);
		copies_send(w);
		free(w);
	}
	if (a->fd >= 0)
		close(a->fd);
	pthread_mutex_destroy(&a->mu);
	writer_free(a);
}

/* ---- The checkpoint key ---------------------------------------------------------------- */

/* The associated data binding the sealed key to its purpose and this device. */
static size_t
key_aad(const ev_audit *a, unsigned char *buf, size_t len)
{
	int n = snprintf((char *)buf, len, "%s%c%s", KEY_AAD_PREFIX, '\0', a->device);

	return n < 0 || (size_t)n >= len ? 0 : (size_t)n;
}

/* Make a key, seal it, record both halves (the caller's transaction). */
static CK_RV
key_create(ev_audit *a, ev_root *root, ev_store *store, const unsigned char *aad, size_t aadlen,
	   ev_secret **sk, unsigned char pk[crypto_sign_PUBLICKEYBYTES])
{
	unsigned char *blob = NULL;
	size_t bloblen = 0;
	CK_RV rv;

	*sk = ev_secret_new(crypto_sign_SECRETKEYBYTES);
	if (*sk == NULL)
		return CKR_HOST_MEMORY;
	crypto_sign_keypair(pk, (*sk)->data);
	rv = ev_root_seal(root, aad, aadlen, *sk, NULL, &blob, &bloblen);
	if (rv == CKR_OK)
		rv = ev_store_meta_set(store, EV_META_AUDIT_KEY_SEALED, blob, bloblen);
	if (rv == CKR_OK)
		rv = ev_store_meta_set(store, EV_META_AUDIT_KEY_PUBLIC, pk,
				       crypto_sign_PUBLICKEYBYTES);
	free(blob);
	if (rv == CKR_OK)
		ev_notice("audit: checkpoint key created");
	return rv;
}

/*
 * Read the checkpoint key's halves: *blob and pub (malloc'ed, the
 * caller's, NULL otherwise). CKR_OK; EVR_NOT_FOUND (no sealed half);
 * EVR_AUDIT_KEY_MISMATCH (a sealed half without a well-formed public
 * half); the store's errors.
 */
static CK_RV
key_read(ev_store *store, unsigned char **blob, size_t *bloblen, unsigned char **pub)
{
	size_t publen = 0;
	CK_RV rv;

	*blob = NULL;
	*pub = NULL;
	rv = ev_store_meta_get(store, EV_META_AUDIT_KEY_SEALED, blob, bloblen);
	if (rv != CKR_OK)
		goto out;
	rv = ev_store_meta_get(store, EV_META_AUDIT_KEY_PUBLIC, pub, &publen);
	if (rv == EVR_NOT_FOUND || (rv == CKR_OK && publen != crypto_sign_PUBLICKEYBYTES)) {
		ev_error("audit: the checkpoint key's public half is missing or malformed");
		rv = EVR_AUDIT_KEY_MISMATCH;
	}
out:
	if (rv != CKR_OK) {
		free(*blob);
		free(*pub);
		*blob = NULL;
		*pub = NULL;
	}
	return rv;
}

CK_RV
ev_audit_key_open(ev_audit *a, ev_root *root, ev_store *store, ev_secret **sk,
		  unsigned char pk[crypto_sign_PUBLICKEYBYTES])
{
	unsigned char aad[320], *blob = NULL, *pub = NULL, derived[crypto_sign_PUBLICKEYBYTES];
	size_t aadlen, bloblen = 0;
	CK_RV rv;

	*sk = NULL;
	aadlen = key_aad(a, aad, sizeof(aad));
	if (aadlen == 0)
		return CKR_GENERAL_ERROR;
	/*
	 * Read without the write lock: the key exists at every start but
	 * the store's first, and its unseal (slow on a TPM) must not make
	 * every other process of the store wait.
	 */
	rv = key_read(store, &blob, &bloblen, &pub);
	if (rv == EVR_NOT_FOUND) {
		if (ev_store_in_transaction(store)) {
			/* The caller's transaction may still roll back: made at a later call. */
			rv = EVR_AUDIT_KEY_LATER;
			goto out;
		}
		/*
		 * Made under the write lock, after reading again: another
		 * process may have made it since, and two processes must
		 * end with one key.
		 */
		rv = ev_store_begin(store);
		if (rv != CKR_OK)
			goto out;
		rv = key_read(store, &blob, &bloblen, &pub);
		if (rv == EVR_NOT_FOUND) {
			rv = key_create(a, root, store, aad, aadlen, sk, pk);
			if (rv == CKR_OK)
				rv = ev_store_commit(store);
			if (rv != CKR_OK)
				(void)ev_store_rollback(store);
			goto out;
		}
		/* Read only: the lock is let go before the unseal below. */
		(void)ev_store_rollback(store);
	}
	if (rv != CKR_OK)
		goto out;
	rv = ev_root_unseal(root, aad, aadlen, blob, bloblen, NULL, sk);
	if (rv != CKR_OK)
		goto out;
	if ((*sk)->len != crypto_sign_SECRETKEYBYTES ||
	    crypto_sign_ed25519_sk_to_pk(derived, (*sk)->data) != 0 ||
	    sodium_memcmp(derived, pub, crypto_sign_PUBLICKEYBYTES) != 0) {
		ev_error("audit: the sealed checkpoint key does not match the recorded public key");
		rv = EVR_AUDIT_KEY_MISMATCH;
		goto out;
	}
	memcpy(pk, pub, crypto_sign_PUBLICKEYBYTES);
out:
	if (rv != CKR_OK) {
		ev_secret_free(*sk);
		*sk = NULL;
	}
	free(blob);
	free(pub);
	return rv;
}

CK_RV
ev_audit_key_setup(ev_audit *a, ev_root *root, ev_store *store)
{
	unsigned char pk[crypto_sign_PUBLICKEYBYTES];
	ev_secret *sk = NULL;
	CK_RV rv;

	if (a == NULL || !a->enabled)
		return CKR_OK;
	rv = ev_audit_key_open(a, root, store, &sk, pk);
	if (rv == EVR_AUDIT_KEY_LATER)
		return rv;
	if (rv != CKR_OK) {
		ev_error("audit: the checkpoint key cannot be used (0x%lx); no checkpoints are "
			 "signed",
			 (unsigned long)rv);
		return rv;
	}
	pthread_mutex_lock(&a->mu);
	ev_secret_free(a->sk);
	a->sk = sk;
	memcpy(a->pk, pk, sizeof(pk));
	pthread_mutex_unlock(&a->mu);
	return CKR_OK;
}

int
ev_audit_has_key(ev_audit *a)
{
	int r;

	if (a == NULL)
		return 0;
	pthread_mutex_lock(&a->mu);
	r = a->sk != NULL;
	pthread_mutex_unlock(&a->mu);
	return r;
}
