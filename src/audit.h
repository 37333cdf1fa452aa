/*
 * The audit trail: every lifecycle event is one JSON line, hash-chained
 * to the line before it, appended to one file that every process of the
 * store shares, and copied to syslog. Periodic checkpoint lines carry an
 * Ed25519 signature by a key whose private half is sealed by the root,
 * so someone holding only the disk can edit lines and recompute the
 * chain, but cannot sign a checkpoint over the edited chain.
 * doc/audit.md gives the format exactly; src/audit_read.h reads it.
 *
 * Writing. A line is written with one write() on an O_APPEND descriptor
 * while holding an exclusive flock() on the file (waited for 5 s at most,
 * once per process: after a wait timed out, callers in the next 5 s try
 * once without waiting; a line not written goes to syslog only), after
 * reading the last
 * line (its "seq" and its hash) when another process has written since
 * this one last did: so processes writing at once neither interleave
 * nor fork the chain. [audit] fsync says when the file is synced. The
 * syslog copies (every line written, checkpoints and audit.torn lines
 * too) and the per-line sync are done after the locks are released.
 *
 * Failure. The audit never fails the operation it records: a line that
 * cannot be written (the flock not had in time, out of memory, a write
 * error) is logged (ev_error), still goes to syslog, and is counted; the
 * next line written to the file is then one that says so (event: the
 * first one's, outcome "failed", reason EV_AUDIT_UNWRITTEN_REASON and the
 * first cause in brackets, zone: theirs or none, detail "lost": how
 * many), so a reader of the file alone sees the gap. The
 * hot path (signing, encrypting) writes no line: use is counted per key
 * (doc/audit.md, "Use counters").
 *
 * Never put a secret, a PIN or key material in an event: labels, CKA_ID,
 * handles, generations and words only.
 *
 * Lock order: the audit's own mutex is innermost; ev_audit_emit() may be
 * called with any other lock held, and takes no other lock.
 */
#ifndef EV_AUDIT_H
#define EV_AUDIT_H

#include "common.h"
#include "config.h"
#include "secmem.h"

struct ev_root;
struct ev_store;
typedef struct ev_audit ev_audit;

/* The file when [audit] file is not set: <store dir>/EV_AUDIT_FILE. */
#define EV_AUDIT_FILE "audit.log"

/* The longest line written (the last member, "prev", always fits; longer labels are cut). */
#define EV_AUDIT_LINE_MAX 4096
#define EV_AUDIT_LABEL_MAX 256  /* label bytes kept in a line ("label_cut": true beyond) */
#define EV_AUDIT_ID_MAX 128     /* CKA_ID bytes kept in a line ("id_cut": true beyond) */
#define EV_AUDIT_REASON_MAX 512 /* reason bytes kept in a line */
/* Torn lines in a row (a crash while recovering from one) the writer looks back over and the reader accepts. */
#define EV_AUDIT_TORN_RUN_MAX 8

/* The reason of the line counting lines not written to the file (then the cause, in brackets). */
#define EV_AUDIT_UNWRITTEN_REASON "audit lines not written to the file"

/*
 * Event kinds: the "event" member. doc/audit.md says which action
 * produces each.
 */
#define EV_AUDIT_ZONE_CREATED "zone.created"          /* C_InitToken on the free slot */
#define EV_AUDIT_ZONE_REINITIALISED "zone.reinitialised" /* C_InitToken on a zone */
#define EV_AUDIT_ZONE_REMOVED "zone.removed"          /* a zone deleted from the store */
#define EV_AUDIT_ZONE_REVOKED "zone.revoked"          /* locally or by a list */
#define EV_AUDIT_ZONE_REKEYED "zone.rekeyed"          /* EV_RotateZoneKey, EV_RebindZone */
#define EV_AUDIT_KEY_GENERATED "key.generated"        /* C_GenerateKey(Pair), token keys */
#define EV_AUDIT_KEY_IMPORTED "key.imported"          /* C_CreateObject, C_UnwrapKey, C_DeriveKey, C_CopyObject */
#define EV_AUDIT_KEY_UNWRAPPED "key.unwrapped"        /* a process opened a key's wrapped material */
#define EV_AUDIT_KEY_ROTATED "key.rotated"            /* a new generation made */
#define EV_AUDIT_KEY_RETIRED "key.retired"            /* the old generation rotated out */
#define EV_AUDIT_KEY_DESTROYED "key.destroyed"        /* C_DestroyObject, grace period ended */
#define EV_AUDIT_KEY_REVOKED "key.revoked"            /* locally or by a list */
#define EV_AUDIT_LOGIN "login"                        /* C_Login: outcome ok or refused */
#define EV_AUDIT_PIN_LOCKED "pin.locked"              /* the failure that reached max_fails */
#define EV_AUDIT_PIN_SET "pin.set"                    /* C_InitToken (SO), C_InitPIN, C_SetPIN */
#define EV_AUDIT_ATTESTATION "attestation"            /* outcome ok (accepted) or refused */
#define EV_AUDIT_REVOCATION_LIST "revocation.list"    /* outcome ok (applied) or refused */
#define EV_AUDIT_ROOT_UNREACHABLE "root.unreachable"  /* the root could not be reached */
#define EV_AUDIT_ROOT_REACHABLE "root.reachable"      /* reached again after root.unreachable */
#define EV_AUDIT_DEGRADED_ENTERED "degraded.entered"  /* issue 9: offline grace started */
#define EV_AUDIT_DEGRADED_LEFT "degraded.left"
#define EV_AUDIT_CHECKPOINT "audit.checkpoint"        /* a signed checkpoint (written here) */
#define EV_AUDIT_TORN "audit.torn"                    /* the line before was cut short (written here) */

typedef enum ev_audit_outcome {
	EV_AUDIT_OK = 0,  /* "ok" */
	EV_AUDIT_REFUSED, /* "refused": a check said no (wrong PIN, stale evidence, old list) */
	EV_AUDIT_FAILED,  /* "failed": something broke (root unreachable, store error) */
} ev_audit_outcome;

/* The object a line is about; every pointer may be NULL (absent). */
typedef struct ev_audit_object {
	int64_t handle;               /* the object handle (store id); 0: none */
	CK_OBJECT_CLASS cls;          /* CKO_*; CK_UNAVAILABLE_INFORMATION: not given */
	CK_KEY_TYPE key_type;         /* CKK_*; CK_UNAVAILABLE_INFORMATION: not given */
	const unsigned char *label;   /* CKA_LABEL bytes */
	size_t label_len;
	const unsigned char *ckid;    /* CKA_ID bytes */
	size_t ckid_len;
	int64_t generation;           /* 0: not given */
} ev_audit_object;

/* One member of "detail": a string when str is not NULL, else the integer num. */
typedef struct ev_audit_detail {
	const char *name;
	const char *str;
	int64_t num;
} ev_audit_detail;

typedef struct ev_audit_event {
	const char *event;              /* EV_AUDIT_*; required */
	ev_audit_outcome outcome;
	int64_t zone;                   /* 0: none */
	CK_USER_TYPE user;              /* CKU_SO, CKU_USER, ...; CK_UNAVAILABLE_INFORMATION: none */
	const ev_audit_object *object;  /* NULL: none */
	const char *reason;             /* words; NULL: none */
	const ev_audit_detail *detail;  /* NULL: none */
	size_t ndetail;
	/*
	 * [audit] fsync = always: 1 lets the sync wait for the watcher's next
	 * tick (about WATCH_PERIOD_MS, src/event.c), the next line synced at
	 * once, a checkpoint or C_Finalize, whichever comes first, instead of
	 * an fdatasync() before the call returns. For a user's successful
	 * login, the routine event of every process: its sync costs more than
	 * the rest of a login. A power cut can lose such lines of the last second; a crash
	 * of the process loses nothing (the line is written). Without a
	 * watcher thread, ignored.
	 */
	int sync_later;
} ev_audit_event;

/* An event with nothing but its kind and outcome set (zone 0, no user, no object). */
#define EV_AUDIT_EVENT_INIT(kind, out)                                                             \
	{                                                                                          \
		.event = (kind), .outcome = (out), .user = CK_UNAVAILABLE_INFORMATION              \
	}

/*
 * The audit file's path as the configuration names it, into buf:
 * [audit] file, else <store dir>/audit.log. NULL when it does not fit.
 */
const char *ev_audit_path(const ev_config *cfg, char *buf, size_t len);

/*
 * The writer of a process (C_Initialize). With [audit] enabled = false,
 * *out is a writer that writes nothing. A file that cannot be opened is
 * logged and leaves a writer that sends lines to syslog only.
 * CKR_OK, or CKR_HOST_MEMORY.
 */
CK_RV ev_audit_open(const ev_config *cfg, ev_audit **out) EV_MUST_CHECK;

/*
 * C_Finalize: write a checkpoint when this process wrote lines since the
 * last one and holds the checkpoint key, sync, close. NULL is a no-op.
 */
void ev_audit_close(ev_audit *a);

/* In a child after fork(): forget the parent's writer without writing or unlocking. */
void ev_audit_abandon(ev_audit *a);

/*
 * Write one line for e through the module's writer (ev_mod->audit); a
 * no-op when the module is not initialised in this process. Writes a
 * checkpoint after it when one is due and the key is held. Never fails
 * the caller: problems are logged.
 */
void ev_audit_emit(const ev_audit_event *e);

/* The same through a given writer (unit tests, the TPM helper has none). */
void ev_audit_emit_to(ev_audit *a, const ev_audit_event *e);

/*
 * Bulk work (rotating or revoking thousands of keys): between
 * ev_audit_hold() and ev_audit_release() in one thread, lines are
 * written as usual but synced once, at the release. Nested holds count.
 */
void ev_audit_hold(void);
void ev_audit_release(void);

/*
 * The checkpoint key, at the process's first use of the root (called
 * from ev_module_root() with the store lock held): unseal it from the
 * store (meta EV_META_AUDIT_KEY_SEALED), or, when the store has none,
 * make one, seal it and record both halves. After this the writer signs
 * checkpoints without the root. CKR_OK; the root's errors (the writer
 * then signs nothing until a later call succeeds; logged);
 * EVR_AUDIT_KEY_MISMATCH (below) when the sealed key does not match the
 * recorded public key or a half is missing; EVR_AUDIT_KEY_LATER (below).
 * A disabled writer: CKR_OK, nothing done.
 */
CK_RV ev_audit_key_setup(ev_audit *a, struct ev_root *root, struct ev_store *store)
    EV_MUST_CHECK;

/*
 * Internal answer of ev_audit_key_setup() and ev_audit_key_open(): the
 * store has no checkpoint key and the caller's transaction is open, which
 * may still roll back; the key is made at a later call, outside it
 * (ev_module_root() tries again). Never returned to an application.
 */
#define EVR_AUDIT_KEY_LATER (CKR_VENDOR_DEFINED | 0x45560020UL)

/*
 * Internal answer of ev_audit_key_setup() and ev_audit_key_open(): the
 * store's sealed checkpoint key and its recorded public half disagree,
 * or one is missing. Permanent: trying again does not help (the module
 * stops trying). Applications see CKR_DEVICE_ERROR.
 */
#define EVR_AUDIT_KEY_MISMATCH (CKR_VENDOR_DEFINED | 0x45560021UL)

/*
 * The checkpoint key of the store, under the root now: the sealed private
 * half unsealed (with the associated data that binds it to the audit and
 * to [device] id) and checked against the recorded public half, or made,
 * sealed and recorded when the store has none. An existing key is read
 * and unsealed without the store's write lock (no other process waits
 * for the root); a missing one is made in a write transaction of its
 * own, after reading again inside it, so two processes end with one key
 * (EVR_AUDIT_KEY_LATER inside the caller's transaction, which may still
 * roll back). *sk (secure memory, the caller's) and pk on CKR_OK; *sk NULL
 * otherwise. Caller holds the store lock. Errors: the root's
 * (ev_root_unseal(), ev_root_seal()), EVR_AUDIT_KEY_MISMATCH (the halves
 * disagree, a half missing), the store's, CKR_HOST_MEMORY. The writer a
 * gives the device id only; it is not changed (ev_audit_key_setup()).
 */
CK_RV ev_audit_key_open(ev_audit *a, struct ev_root *root, struct ev_store *store,
    ev_secret **sk, unsigned char pk[32]) EV_MUST_CHECK;

/* Whether the writer holds the checkpoint key: 1 or 0 (NULL: 0). */
int ev_audit_has_key(ev_audit *a);

/*
 * Write a checkpoint line now (the tool's `audit checkpoint`, C_Finalize).
 * CKR_OK (also when nothing was written since the last checkpoint: none
 * is added); CKR_FUNCTION_REJECTED when this writer holds no checkpoint
 * key yet; CKR_DEVICE_ERROR when the file cannot be locked (within 5 s),
 * written or synced, or does not hold the checkpoint <file>.head names
 * (cut back: no checkpoint is signed by this writer again);
 * CKR_HOST_MEMORY.
 */
CK_RV ev_audit_checkpoint(ev_audit *a) EV_MUST_CHECK;

/*
 * The watcher thread's periodic call (src/event.c): a checkpoint when
 * [audit] checkpoint_interval seconds passed since the last one (the
 * head's mtime, or the writer's start without a head) and lines came
 * after it, so the lines of an idle device are sealed too; the line
 * count rule and forcing are left to writes and ev_audit_checkpoint().
 * Only when this writer holds the checkpoint key; the flock is tried
 * once, without waiting (the next call tries again). Also writes the
 * line counting lines not written, when there are. Problems are logged.
 * NULL, or a disabled writer, or an interval of 0: a no-op.
 */
void ev_audit_checkpoint_if_due(ev_audit *a);

/*
 * The watcher thread is running (on = 1, after it started) or is about
 * to stop (on = 0, before it is joined): whether ev_audit_event's
 * sync_later may wait for ev_audit_sync_later(). NULL: a no-op.
 */
void ev_audit_watched(ev_audit *a, int on);

/*
 * The watcher thread's periodic call: sync the lines written with
 * sync_later and not synced since ([audit] fsync = always). A failed sync
 * is logged once; the lines stay unsynced until the next call. NULL: a no-op.
 */
void ev_audit_sync_later(ev_audit *a);

/* Meta keys in the store: the checkpoint key's sealed private half and its public half. */
#define EV_META_AUDIT_KEY_SEALED "audit_key_sealed"
#define EV_META_AUDIT_KEY_PUBLIC "audit_key_public"

/*
 * What a checkpoint signs (Ed25519, detached): this prefix, then the
 * checkpoint line's "seq" as 8 bytes big-endian, then the 32 bytes its
 * "prev" names (the hash of the line before it, which chains every line
 * before), then the "device" string's bytes.
 */
#define EV_AUDIT_SIG_PREFIX "edgevault-audit-checkpoint-v1"

/* A line's hash: BLAKE2b-256 of its bytes without the '\n' (the next line's "prev"). */
#define EV_AUDIT_HASH_LEN 32

#endif
