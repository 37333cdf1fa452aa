/*
 * Reading the audit trail (doc/audit.md): the file read one line at a
 * time, each line parsed, the chain and checkpoints verified, lines
 * filtered for `edgevault audit show` and counted for `audit summary`.
 * The writer is src/audit.h; nothing here writes.
 */
#ifndef EV_AUDIT_READ_H
#define EV_AUDIT_READ_H

#include <json-c/json.h>

#include "common.h"

/* What ev_audit_verify() and the tool write about a line. */
#define EV_AUDIT_WHY_MAX 512

/*
 * One line of the file, as ev_audit_reader_next() hands it out: every
 * pointer points into the reader and stays valid until the next call of
 * ev_audit_reader_next() or ev_audit_reader_free(). A member absent from
 * the line, or a line with a problem, leaves its pointer NULL and its
 * number 0.
 */
typedef struct ev_audit_line {
	size_t no;		/* 1 for the file's first line */
	const char *text;	/* the line's bytes, NUL-terminated where its '\n' was; only the
				   first EV_AUDIT_LINE_MAX when it is longer (len says) */
	size_t len;		/* the line's length, without the '\n' */
	int ended;		/* the line had its '\n' (only the last line may not) */
	unsigned char hash[32]; /* BLAKE2b-256 of all len bytes (the next line's "prev") */
	char *problem;		/* why it is not a well-formed audit line; NULL: it is */
	json_object *obj;	/* the line parsed; NULL when it is not strict JSON */
	int64_t seq;
	int64_t time_us; /* "time" in microseconds since the epoch */
	const char *time;
	const char *device;
	int64_t pid;
	const char *program;
	const char *event;
	const char *outcome; /* "ok", "refused" or "failed" */
	int64_t zone;	     /* 0: none */
	const char *user;
	const char *cls;      /* object.class ("private", ...) */
	const char *key_type; /* object.key_type ("ec", ...) */
	const char *label;    /* object.label, as in the line ("hex:..." for bytes) */
	const char *id;	      /* object.id (lowercase hex) */
	int64_t generation;   /* object.generation */
	const char *reason;
	const char *key;  /* checkpoints: base64 */
	const char *sig;  /* checkpoints: base64 */
	const char *prev; /* 64 lowercase hex digits */
} ev_audit_line;

/* <path>.head as it was when the reader opened the file. */
typedef struct ev_audit_head {
	int present;	     /* <path>.head was there */
	const char *problem; /* it was there but not {"seq":N,"hash":"<hex>"}; NULL: fine */
	int64_t seq;
	unsigned char hash[32];
} ev_audit_head;

/*
 * A trail read one line at a time: memory does not grow with the file
 * (one line of at most EV_AUDIT_LINE_MAX bytes and its parse are kept;
 * a longer line is read through and reported as a problem).
 */
typedef struct ev_audit_reader ev_audit_reader;

/*
 * Open the file at path for reading. Under a shared flock() on it (waited
 * for 10 seconds at most; a writer holds it exclusively while it appends
 * a line or replaces the head) <path>.head is read and the file's size
 * taken; the lock is then let go, and the reader reads the file up to that
 * size and no further: the writer only ever appends whole lines, so these
 * bytes are final, and no line being written is seen in part, while
 * writers are not kept waiting for as long as a long file takes to read.
 * *out is the caller's (ev_audit_reader_free). CKR_OK; CKR_DEVICE_ERROR
 * when a file cannot be read or locked (err says why; EVR_NOT_FOUND when
 * path does not exist); CKR_HOST_MEMORY.
 */
CK_RV ev_audit_reader_open(const char *path, ev_audit_reader **out, char *err,
			   size_t errlen) EV_MUST_CHECK;

/* The path r reads, its .head, and the file's size when r opened it. */
const char *ev_audit_reader_path(const ev_audit_reader *r);
const ev_audit_head *ev_audit_reader_head(const ev_audit_reader *r);
uint64_t ev_audit_reader_size(const ev_audit_reader *r);

/*
 * The next line, parsed, into *l (ev_audit_line.problem says what is
 * wrong with one: longer than EV_AUDIT_LINE_MAX, not strict JSON, a
 * required member missing or of the wrong type); *l is NULL after the
 * last line. CKR_OK; CKR_DEVICE_ERROR when the file cannot be read (err
 * says why); CKR_HOST_MEMORY. After an error *l is NULL.
 */
CK_RV ev_audit_reader_next(ev_audit_reader *r, const ev_audit_line **l, char *err,
			   size_t errlen) EV_MUST_CHECK;

/* What `status` and `metrics` show of a trail (ev_audit_reader_stat). */
typedef struct ev_audit_stat {
	uint64_t size;	      /* the file's, when the reader opened it */
	uint64_t lines;	      /* lines ended by '\n' */
	int64_t head_seq;     /* the seq <path>.head names; 0: no head, or not well formed */
	int64_t head_time_us; /* the time of the checkpoint line it names; 0: not found */
} ev_audit_stat;

/*
 * The size, lines and head of the trail r (just opened) reads, without
 * parsing or hashing it all: the '\n' bytes up to the size are counted,
 * and the head's checkpoint line is found scanning back from the end
 * (lines after it hashed, only it parsed: a line whose seq, hash or kind
 * is not the head's is not it). Memory as ev_audit_reader_next(); r gives
 * no line after it. CKR_OK; CKR_DEVICE_ERROR when the file cannot be read
 * (err says why); CKR_HOST_MEMORY.
 */
CK_RV ev_audit_reader_stat(ev_audit_reader *r, ev_audit_stat *s, char *err,
			   size_t errlen) EV_MUST_CHECK;

/* Close r; NULL is a no-op. */
void ev_audit_reader_free(ev_audit_reader *r);

/* What ev_audit_verify() found. */
typedef struct ev_audit_verdict {
	int valid;		    /* the chain, checkpoints and head hold */
	size_t bad_line;	    /* the first bad line (1-based); 0: none, or the .head itself */
	char why[EV_AUDIT_WHY_MAX]; /* "line 17: prev does not match ..."; "" when valid */
	size_t lines;
	size_t checkpoints;		/* checkpoints verified (before bad_line) */
	int64_t last_checkpoint_seq;	/* 0: none */
	size_t last_checkpoint_line;	/* 0: none */
	size_t unsigned_lines;		/* lines after the last checkpoint: not signed yet */
	size_t torn;			/* lines cut short by a crash and recovered (audit.torn) */
	char warning[EV_AUDIT_WHY_MAX]; /* the first torn line, in words; "" when none */
	int head_missing; /* valid, but no .head after the only checkpoint, the last line */
} ev_audit_verdict;

/*
 * Verify the lines r has still to give (all of them: call it on a reader
 * just opened) against the checkpoint public key key (Ed25519, 32 bytes),
 * one line at a time: every line well formed, "seq" contiguous from 1,
 * "prev" the BLAKE2b-256 of the line before, each checkpoint's "key"
 * equal to key and its "sig" a valid signature (EV_AUDIT_SIG_PREFIX in
 * src/audit.h), the line at the .head's seq an audit.checkpoint line
 * hashing to its hash and the file reaching it, the last line ended, a
 * .head whenever there is a checkpoint (one checkpoint as the last line
 * without a head, a crash before the head was written, is a warning:
 * v->head_missing). A line cut short and followed by an audit.torn line
 * whose "prev" is its hash is a warning (v->torn, v->warning) when a
 * later checkpoint verifies, else the first bad line. Lines after the
 * last checkpoint are counted (v->unsigned_lines), not refused. The
 * lines after the first bad one are counted (v->lines), not parsed.
 * CKR_OK with *v filled (v->valid says the outcome); CKR_ARGUMENTS_BAD
 * when key is NULL; ev_audit_reader_next()'s errors (err says why).
 */
CK_RV ev_audit_verify(ev_audit_reader *r, const unsigned char key[32], ev_audit_verdict *v,
		      char *err, size_t errlen) EV_MUST_CHECK;

/*
 * A time as the tool takes it: "2026-11-24T10:00:00.123456Z" (the lines'
 * form; the fraction may have 0 to 6 digits, and may be left out with its
 * dot) or a date "2026-11-24", both UTC. *start is its first microsecond
 * since the epoch, *end the first after it (a date covers its whole
 * day). 0, or -1 when s is not such a time (an impossible date or time,
 * as 2026-02-30 or 24:00:00, is not).
 */
int ev_audit_time_parse(const char *s, int64_t *start, int64_t *end) EV_MUST_CHECK;

/* Which lines `audit show` and `audit summary` take; a zeroed filter takes all. */
typedef struct ev_audit_filter {
	int64_t zone;		   /* 0: any */
	const char *label;	   /* object.label equal to it; NULL: any */
	const char *id;		   /* object.id equal to it (hex, any case); NULL: any */
	const char *const *events; /* kinds: "key.rotated", or a family "key" (key.*) */
	size_t nevents;		   /* 0: any kind */
	int has_since;		   /* 0: no lower bound */
	int64_t since;		   /* time_us >= since (when has_since) */
	int has_until;		   /* 0: no upper bound */
	int64_t until;		   /* time_us < until (when has_until) */
} ev_audit_filter;

/* 1 when line l is well formed and f takes it, else 0. */
int ev_audit_match(const ev_audit_line *l, const ev_audit_filter *f);

/* The counts of `audit summary`, for one zone: indexes into ev_audit_counts.n. */
enum {
	EV_AUDIT_C_ZONES_CREATED,
	EV_AUDIT_C_ZONES_REINITIALISED,
	EV_AUDIT_C_ZONES_REMOVED,
	EV_AUDIT_C_ZONES_REVOKED,
	EV_AUDIT_C_ZONES_REKEYED,
	EV_AUDIT_C_KEYS_GENERATED,
	EV_AUDIT_C_KEYS_IMPORTED,
	EV_AUDIT_C_KEYS_ROTATED,
	EV_AUDIT_C_KEYS_RETIRED,
	EV_AUDIT_C_KEYS_DESTROYED,
	EV_AUDIT_C_KEYS_REVOKED,
	EV_AUDIT_C_LOGINS_OK,
	EV_AUDIT_C_LOGINS_REFUSED,
	EV_AUDIT_C_PIN_LOCKS,
	EV_AUDIT_C_PINS_SET,
	EV_AUDIT_C_ATTESTATIONS_OK,
	EV_AUDIT_C_ATTESTATIONS_REFUSED,
	EV_AUDIT_C_REVOCATION_LISTS_APPLIED,
	EV_AUDIT_C_REVOCATION_LISTS_REFUSED,
	EV_AUDIT_C_ROOT_UNREACHABLE,
	EV_AUDIT_C_DEGRADED_ENTERED,
	EV_AUDIT_C_CHECKPOINTS,
	EV_AUDIT_C_REFUSALS, /* lines of any kind with outcome refused */
	EV_AUDIT_C_FAILURES, /* lines of any kind with outcome failed */
	EV_AUDIT_C_COUNT
};

/* Count i's name in JSON and in the tool's table ("keys_generated"). */
const char *ev_audit_count_name(unsigned i);

typedef struct ev_audit_counts {
	int64_t
	    zone; /* 0: lines about no zone (the device: revocation lists, the root, checkpoints) */
	uint64_t n[EV_AUDIT_C_COUNT];
} ev_audit_counts;

/* Room for a line's "time" (ev_audit_time_parse() takes at most 27 characters). */
#define EV_AUDIT_TIME_MAX 32
/* A checkpoint's "key": an Ed25519 public key in base64 (44 characters; room: + 1). */
#define EV_AUDIT_KEY_B64_LEN 44

typedef struct ev_audit_summary {
	ev_audit_counts *zones; /* ascending by zone; only zones with lines in the period */
	size_t nzones;
	size_t lines;		       /* well-formed lines in the period */
	size_t skipped;		       /* lines with a problem, not counted */
	char first[EV_AUDIT_TIME_MAX]; /* the time of the first and last line counted; */
	char last[EV_AUDIT_TIME_MAX];  /* "": none */
	/* Whose trail it is, from all its well-formed lines (in the period or not): */
	char *device;				   /* the first line's "device"; NULL: no line */
	int several_devices;			   /* a later line names another device */
	char checkpoint_key[EV_AUDIT_KEY_B64_LEN + 1]; /* the last checkpoint's "key"; "": none */
} ev_audit_summary;

/*
 * Count the lines r has still to give that f takes (only its times are
 * used) per zone into *s, the caller's (ev_audit_summary_clear), one line
 * at a time. CKR_OK; ev_audit_reader_next()'s errors (err says why);
 * CKR_HOST_MEMORY. *s is cleared on error.
 */
CK_RV ev_audit_summarize(ev_audit_reader *r, const ev_audit_filter *f, ev_audit_summary *s,
			 char *err, size_t errlen) EV_MUST_CHECK;

/* Free what a summary holds (not the summary); NULL is a no-op. */
void ev_audit_summary_clear(ev_audit_summary *s);

#endif
