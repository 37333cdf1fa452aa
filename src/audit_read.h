/*
 * Reading the audit trail (doc/audit.md): the file loaded whole, its
 * lines parsed, the chain and checkpoints verified, lines filtered for
 * `edgevault audit show` and counted for `audit summary`. The writer is
 * src/audit.h; nothing here writes.
 */
#ifndef EV_AUDIT_READ_H
#define EV_AUDIT_READ_H

#include <json-c/json.h>

#include "common.h"

/* What ev_audit_verify() and the tool write about a line. */
#define EV_AUDIT_WHY_MAX 512

/*
 * One line of the file. Every pointer points into the trail (valid while
 * it is); a member absent from the line, or a line with a problem, leaves
 * its pointer NULL and its number 0.
 */
typedef struct ev_audit_line {
	size_t no;	  /* 1 for the file's first line */
	const char *text; /* the line's bytes, NUL-terminated where its '\n' was */
	size_t len;	  /* without the '\n' */
	int ended;	  /* the line had its '\n' (only the last line may not) */
	char *problem;	  /* why it is not a well-formed audit line; NULL: it is */
	json_object *obj; /* the line parsed; NULL when it is not strict JSON */
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

/* A file read whole: its lines and its .head. */
typedef struct ev_audit_trail {
	char *path;
	unsigned char *buf; /* the file's bytes (with a NUL after them) */
	size_t len;
	ev_audit_line *lines;
	size_t nlines;
	int has_head;	    /* <path>.head was there */
	char *head_problem; /* it was there but not {"seq":N,"hash":"<hex>"}; NULL: fine */
	int64_t head_seq;
	unsigned char head_hash[32];
} ev_audit_trail;

/*
 * Read the file at path, and <path>.head when there is one, holding a
 * shared flock() on the file meanwhile so that no line being written by
 * a writer (who holds it exclusively) is seen in part (waits at most 10
 * seconds for the lock). Every line is parsed (ev_audit_line.problem says
 * what is wrong with one: not strict JSON, a required member missing or of
 * the wrong type). *out is the caller's (ev_audit_trail_free). CKR_OK;
 * CKR_DEVICE_ERROR when a file cannot be read (err says why; EVR_NOT_FOUND
 * when path does not exist); CKR_HOST_MEMORY.
 */
CK_RV ev_audit_trail_load(const char *path, ev_audit_trail **out, char *err,
			  size_t errlen) EV_MUST_CHECK;

/* Free a trail; NULL is a no-op. */
void ev_audit_trail_free(ev_audit_trail *t);

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
 * Verify t against the checkpoint public key key (Ed25519, 32 bytes):
 * every line well formed, "seq" contiguous from 1, "prev" the BLAKE2b-256
 * of the line before, each checkpoint's "key" equal to key and its "sig"
 * a valid signature (EV_AUDIT_SIG_PREFIX in src/audit.h), the line at the
 * .head's seq an audit.checkpoint line hashing to its hash and the file
 * reaching it, the last line ended, a .head whenever there is a
 * checkpoint (one checkpoint as the last line without a head, a crash
 * before the head was written, is a warning: v->head_missing). A line
 * cut short and followed by an audit.torn line whose "prev" is its hash
 * is a warning (v->torn, v->warning) when a later checkpoint verifies,
 * else the first bad line. Lines after the last checkpoint
 * are counted (v->unsigned_lines), not refused. CKR_OK with *v filled
 * (v->valid says the outcome); CKR_ARGUMENTS_BAD when key is NULL.
 */
CK_RV ev_audit_verify(const ev_audit_trail *t, const unsigned char key[32],
		      ev_audit_verdict *v) EV_MUST_CHECK;

/*
 * A time as the tool takes it: "2026-11-24T10:00:00.123456Z" (the lines'
 * form; the fraction may have 0 to 6 digits, and may be left out with its
 * dot) or a date "2026-11-24", both UTC. *start is its first microsecond
 * since the epoch, *end the first after it (a date covers its whole
 * day). 0, or -1 when s is not such a time.
 */
int ev_audit_time_parse(const char *s, int64_t *start, int64_t *end) EV_MUST_CHECK;

/* Which lines `audit show` and `audit summary` take; a zeroed filter takes all. */
typedef struct ev_audit_filter {
	int64_t zone;		   /* 0: any */
	const char *label;	   /* object.label equal to it; NULL: any */
	const char *id;		   /* object.id equal to it (hex, any case); NULL: any */
	const char *const *events; /* kinds: "key.rotated", or a family "key" (key.*) */
	size_t nevents;		   /* 0: any kind */
	int64_t since;		   /* time_us >= since; 0: no bound */
	int64_t until;		   /* time_us < until; 0: no bound */
} ev_audit_filter;

/* 1 when line l is well formed and f takes it, else 0. */
int ev_audit_match(const ev_audit_line *l, const ev_audit_filter *f);

/* The counts of `audit summary`, for one zone: indexes into ev_audit_counts.n. */
enum {
	EV_AUDIT_C_ZONES_CREATED,
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
	EV_AUDIT_C_ATTESTATIONS_OK,
	EV_AUDIT_C_ATTESTATIONS_REFUSED,
	EV_AUDIT_C_REVOCATION_LISTS_APPLIED,
	EV_AUDIT_C_REVOCATION_LISTS_REFUSED,
	EV_AUDIT_C_ROOT_UNREACHABLE,
	EV_AUDIT_C_DEGRADED,
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

typedef struct ev_audit_summary {
	ev_audit_counts *zones; /* ascending by zone; only zones with lines in the period */
	size_t nzones;
	size_t lines;	   /* well-formed lines in the period */
	size_t skipped;	   /* lines with a problem, not counted */
	const char *first; /* the time of the first and last line counted; NULL: none */
	const char *last;
} ev_audit_summary;

/*
 * Count the lines of t that f takes (only its times are used) per zone
 * into *s, the caller's (ev_audit_summary_clear; its times point into t).
 * CKR_OK, CKR_HOST_MEMORY.
 */
CK_RV ev_audit_summarize(const ev_audit_trail *t, const ev_audit_filter *f,
			 ev_audit_summary *s) EV_MUST_CHECK;

/* Free what a summary holds (not the summary); NULL is a no-op. */
void ev_audit_summary_clear(ev_audit_summary *s);

#endif
