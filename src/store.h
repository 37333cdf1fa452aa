/*
 * The local store: one SQLite database (WAL mode) in the store directory,
 * holding zones, objects (public attributes and wrapped secrets), and
 * counters. Several processes may use one store at once: readers never
 * fail because a writer is busy (WAL), writers wait (busy timeout).
 *
 * Every function returns CKR_OK, EVR_NOT_FOUND where it says so,
 * CKR_HOST_MEMORY, or CKR_DEVICE_ERROR for any database failure (the
 * SQLite message is logged, never a secret). An ev_store is used by one
 * thread at a time: callers serialise with their own lock.
 *
 * Multi-statement changes are wrapped by the caller in ev_store_begin()
 * and ev_store_commit() (or ev_store_rollback()), so a crash leaves either
 * the old or the new state. Single calls outside a transaction are atomic
 * on their own.
 */
#ifndef EV_STORE_H
#define EV_STORE_H

#include "attr.h"
#include "common.h"

typedef struct ev_store ev_store;

#define EV_STORE_CREATE 0x1u   /* create the directory and database if absent */
#define EV_STORE_READONLY 0x2u /* open read-only (no schema changes) */

#define EV_STORE_FILE "edgevault.db"

/*
 * Open <dir>/edgevault.db, creating or migrating the schema as needed
 * (not with EV_STORE_READONLY). On failure *out is NULL and err (if not
 * NULL) holds a message naming the problem (missing, unreadable, newer
 * schema, ...). Errors: CKR_DEVICE_ERROR, CKR_HOST_MEMORY.
 */
CK_RV ev_store_open(const char *dir, unsigned flags, ev_store **out, char *err, size_t errlen);

/* Close. NULL is a no-op. */
void ev_store_close(ev_store *s);

/*
 * Forget the connection without closing it: for a child after fork(),
 * which must not touch its parent's SQLite connection. The memory stays
 * reachable (kept on a list) and is not reused. The child takes back the
 * file locks every connected process holds (POSIX locks are not
 * inherited), so a new ev_store_open() in the child is safe.
 */
void ev_store_abandon(ev_store *s);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK. Rollback of nothing is CKR_OK. */
CK_RV ev_store_begin(ev_store *s);
CK_RV ev_store_commit(ev_store *s);
CK_RV ev_store_rollback(ev_store *s);

/* Whether a transaction is open on this connection (ev_store_begin() and no commit or rollback yet): 1 or 0. */
int ev_store_in_transaction(ev_store *s);

/*
 * A number that changes whenever another connection (this process or
 * another) has committed a change since the last call: PRAGMA data_version.
 */
CK_RV ev_store_data_version(ev_store *s, int64_t *version);

/*
 * Copy the write-ahead log into the database and empty it, so pages a
 * revocation overwrote leave no old copy in the -wal file. Best effort:
 * a reader of another process may hold it back (logged, CKR_OK).
 */
CK_RV ev_store_checkpoint(ev_store *s);

/* Metadata by name. get: *val malloc'ed (NULL/0 when absent → EVR_NOT_FOUND). */
CK_RV ev_store_meta_get(ev_store *s, const char *key, unsigned char **val, size_t *len);
CK_RV ev_store_meta_set(ev_store *s, const char *key, const void *val, size_t len);

/* A zone: one token. */
typedef struct ev_zone_rec {
	int64_t id;              /* = the slot ID; >= 1 */
	CK_UTF8CHAR label[32];   /* blank padded, as in CK_TOKEN_INFO */
	char serial[17];         /* NUL-terminated, up to 16 characters */
	unsigned char *sealed;   /* zone key sealed by the root */
	size_t sealed_len;
	/* its SO recovery copy (sealed under the SO's auth value); NULL: none */
	unsigned char *so_sealed;
	size_t so_sealed_len;
	char *so_pin;            /* Argon2id hash string; NULL when unset */
	char *user_pin;          /* Argon2id hash string; NULL when unset */
	unsigned so_fails;       /* consecutive failed logins */
	unsigned user_fails;
	int64_t created;         /* unix time */
	int64_t revoked;         /* unix time it was revoked; 0 while it is not */
} ev_zone_rec;

/* Free the members of a record (not the record). */
void ev_zone_rec_clear(ev_zone_rec *z);

/*
 * The id the next zone will get: one more than any id ever used. Not
 * reserved: another process may take it first, unless the read and the
 * insert are in one transaction (ev_store_begin()).
 */
CK_RV ev_store_zone_next_id(ev_store *s, int64_t *id);

/* Insert a zone with z->id (CKR_DEVICE_ERROR if taken). */
CK_RV ev_store_zone_insert(ev_store *s, const ev_zone_rec *z);

/* Read a zone; EVR_NOT_FOUND when absent. Clear *z with ev_zone_rec_clear(). */
CK_RV ev_store_zone_get(ev_store *s, int64_t id, ev_zone_rec *z);

/* All zone ids, ascending; *ids malloc'ed (NULL when *n == 0). */
CK_RV ev_store_zone_list(ev_store *s, int64_t **ids, size_t *n);

/*
 * Replace a PIN hash (which = CKU_SO or CKU_USER; hash NULL = unset) and
 * reset its fail counter. EVR_NOT_FOUND when the zone is absent.
 */
CK_RV ev_store_zone_set_pin(ev_store *s, int64_t id, CK_USER_TYPE which, const char *hash);

/* Set a fail counter. EVR_NOT_FOUND when the zone is absent. */
CK_RV ev_store_zone_set_fails(ev_store *s, int64_t id, CK_USER_TYPE which, unsigned fails);

/*
 * Add one to a fail counter and give the new value in *fails, atomically
 * with respect to every other connection and process. A login that counts
 * its attempt this way before verifying (and resets the counter on
 * success) cannot be raced past the limit by parallel guessers, as a read
 * followed by ev_store_zone_set_fails() can. EVR_NOT_FOUND when the zone
 * is absent; CKR_DEVICE_ERROR for another user type.
 */
CK_RV ev_store_zone_add_fail(ev_store *s, int64_t id, CK_USER_TYPE which, unsigned *fails);

/*
 * Revoke a zone: mark it revoked at `when` (unix time) and destroy what
 * opened it: its sealed key (set to an empty blob), its PIN hashes, and
 * every object of the zone. The row stays, so the id is never reused and
 * the slot can say its token is gone. An already revoked zone: CKR_OK,
 * nothing changes. EVR_NOT_FOUND when absent.
 */
CK_RV ev_store_zone_revoke(ev_store *s, int64_t id, int64_t when);

/* Delete a zone and all its objects. EVR_NOT_FOUND when absent. */
CK_RV ev_store_zone_delete(ev_store *s, int64_t id);

/* An object of a zone. */
typedef struct ev_obj_rec {
	int64_t id;              /* assigned by ev_store_obj_insert(); the object handle */
	int64_t zone;
	CK_OBJECT_CLASS cls;
	int private;             /* CKA_PRIVATE */
	int64_t generation;      /* 1 for a new key */
	unsigned char *wrapped;  /* secret material wrapped by the zone key; NULL if none */
	size_t wrapped_len;
	ev_attrs *attrs;         /* all non-secret attributes */
	int64_t origin;          /* a copy's (C_CopyObject) source object, transitively; 0 otherwise */
	int64_t previous;        /* the generation this one replaced (rotation); 0 otherwise */
	int64_t created;         /* unix time; ev_store_obj_insert() sets now when 0 */
	int64_t retired;         /* unix time it was rotated out; 0 while current */
	int64_t destroy_at;      /* retired: unix time its grace period ends; 0 otherwise */
} ev_obj_rec;

/* Free the members of a record (not the record). */
void ev_obj_rec_clear(ev_obj_rec *o);

/*
 * Insert an object (id chosen by the store, never reused: AUTOINCREMENT),
 * with its attributes and o->wrapped (which may be NULL, to be set with
 * ev_store_obj_set_wrapped() in the same transaction once the id is known).
 * Label, CKA_ID, class and key type are indexed from o->attrs.
 */
CK_RV ev_store_obj_insert(ev_store *s, ev_obj_rec *o);

/* Set (blob NULL: clear) the wrapped secret. EVR_NOT_FOUND when the object is absent. */
CK_RV ev_store_obj_set_wrapped(ev_store *s, int64_t id, const unsigned char *blob, size_t len);

/*
 * Replace all attributes of an object (and its indexed columns).
 * EVR_NOT_FOUND when the object is absent.
 */
CK_RV ev_store_obj_set_attrs(ev_store *s, int64_t id, const ev_attrs *attrs);

/*
 * Retire an object (rotation): retired = when, destroy_at as given.
 * EVR_NOT_FOUND when absent.
 */
CK_RV ev_store_obj_retire(ev_store *s, int64_t id, int64_t when, int64_t destroy_at);

/*
 * Retire an object if it is current, in one statement (a rotation inside
 * its transaction: two rotations of one key never both retire it).
 * CKR_OK with *was = 0: retired now; CKR_OK with *was = when it was
 * retired: nothing changed; EVR_NOT_FOUND when absent; CKR_DEVICE_ERROR.
 */
CK_RV ev_store_obj_retire_current(ev_store *s, int64_t id, int64_t when, int64_t destroy_at,
    int64_t *was);

/* The token objects copied from id (origin = id), ascending; *ids malloc'ed. */
CK_RV ev_store_obj_copies(ev_store *s, int64_t id, int64_t **ids, size_t *n);

/*
 * Rotation candidates of a zone: current (not retired) private and secret
 * keys that are not copies (origin 0), made before made_before (created <
 * made_before; INT64_MAX for all). Ascending; *ids malloc'ed.
 */
CK_RV ev_store_obj_rotatable(ev_store *s, int64_t zone, int64_t made_before, int64_t **ids,
    size_t *n);

/* Retired objects (any zone) whose destroy_at <= now. Ascending; *ids malloc'ed. */
CK_RV ev_store_obj_expired(ev_store *s, int64_t now, int64_t **ids, size_t *n);

/* The earliest destroy_at of any retired object; 0 when there is none. */
CK_RV ev_store_obj_next_destroy(ev_store *s, int64_t *when);

/* The objects of a zone with wrapped material (retired ones too). Ascending. */
CK_RV ev_store_obj_wrapped_ids(ev_store *s, int64_t zone, int64_t **ids, size_t *n);

/*
 * Every key object (class CKO_PRIVATE_KEY, CKO_PUBLIC_KEY or
 * CKO_SECRET_KEY) of a zone: current and retired, private ones included,
 * with or without wrapped material (a retired public key has none). For
 * reports (`edgevault status`); the module searches with
 * ev_store_obj_find(). *ids malloc'ed, ascending (NULL when *n == 0);
 * CKR_DEVICE_ERROR when the store cannot be read.
 */
CK_RV ev_store_obj_key_ids(ev_store *s, int64_t zone, int64_t **ids, size_t *n);

/*
 * Replace a zone's sealed key (an empty one is refused: CKR_DEVICE_ERROR). EVR_NOT_FOUND
 * when the zone is absent or revoked (a revoked zone's key stays destroyed).
 */
CK_RV ev_store_zone_set_sealed(ev_store *s, int64_t id, const unsigned char *blob, size_t len);

/*
 * Replace a zone's SO recovery copy of its key; blob NULL: none (an
 * empty one is refused: CKR_DEVICE_ERROR). EVR_NOT_FOUND when the zone is
 * absent or revoked.
 */
CK_RV ev_store_zone_set_so_sealed(ev_store *s, int64_t id, const unsigned char *blob, size_t len);

/* Read an object; EVR_NOT_FOUND when absent. Clear with ev_obj_rec_clear(). */
CK_RV ev_store_obj_get(ev_store *s, int64_t id, ev_obj_rec *o);

/* Delete an object; EVR_NOT_FOUND when absent. */
CK_RV ev_store_obj_delete(ev_store *s, int64_t id);

/*
 * Candidate objects of a zone for a search, narrowed by the indexed
 * columns the query names (each has_* flag says whether that filter is
 * used). The caller still matches the full template. Private objects are
 * included only with include_private. Retired objects are included only
 * with has_generation (and then only of that generation). *ids
 * malloc'ed, ascending.
 */
typedef struct ev_obj_query {
	int64_t zone;
	int include_private;
	int has_class;
	CK_OBJECT_CLASS cls;
	int has_key_type;
	CK_KEY_TYPE key_type;
	const void *label; /* has_label: CKA_LABEL bytes */
	size_t label_len;
	int has_label;
	const void *ckid;  /* has_ckid: CKA_ID bytes */
	size_t ckid_len;
	int has_ckid;
	int64_t generation; /* has_generation: CKA_EV_GENERATION */
	int has_generation;
} ev_obj_query;

CK_RV ev_store_obj_find(ev_store *s, const ev_obj_query *q, int64_t **ids, size_t *n);

/*
 * ev_store_obj_find() for any thread at any time, without the caller's
 * lock: it runs on one of the store's own read connections (a few,
 * opened on first use, each used by one thread at a time), so searches
 * of several threads run in parallel and never wait for a writer (WAL).
 * It sees every transaction committed before it starts, by this process
 * or another; not the changes of a transaction still open on s. After
 * ev_store_abandon() it must not be called (the child opens its own
 * store).
 */
CK_RV ev_store_obj_find_shared(ev_store *s, const ev_obj_query *q, int64_t **ids, size_t *n);

/* Number of objects in a zone (private ones included or not). */
CK_RV ev_store_obj_count(ev_store *s, int64_t zone, int include_private, CK_ULONG *count);

/*
 * The key objects (class CKO_PRIVATE_KEY, CKO_PUBLIC_KEY or
 * CKO_SECRET_KEY) of a zone with CKA_LABEL label, narrowed to CKA_ID ckid
 * when ckid is not NULL and to a generation when generation is not 0.
 * Private objects included. *ids malloc'ed, ascending (NULL when *n == 0).
 */
CK_RV ev_store_obj_find_keys(ev_store *s, int64_t zone, const void *label, size_t label_len,
    const void *ckid, size_t ckid_len, int64_t generation, int64_t **ids, size_t *n);

/* Integer metadata (kept as decimal text). EVR_NOT_FOUND when absent. */
CK_RV ev_store_meta_get_int(ev_store *s, const char *key, int64_t *val);
CK_RV ev_store_meta_set_int(ev_store *s, const char *key, int64_t val);

/*
 * The change log: every change other processes must learn about (a zone
 * created, re-initialised or revoked, an object revoked, destroyed,
 * updated or rotated) adds a row in the transaction that makes the
 * change. Each process reads the rows after the last one it saw.
 */
typedef enum ev_change_kind {
	EV_CHANGE_ZONE_CREATED = 1,
	EV_CHANGE_ZONE_REINIT = 2, /* C_InitToken on an existing zone */
	EV_CHANGE_ZONE_REVOKED = 3,
	EV_CHANGE_OBJECT_REVOKED = 4,
	EV_CHANGE_OBJECT_DESTROYED = 5,
	EV_CHANGE_OBJECT_UPDATED = 6, /* attributes changed */
	EV_CHANGE_OBJECT_ROTATED = 7, /* retired by a rotation: its new state is in the store */
	EV_CHANGE_ZONE_REKEYED = 8,   /* the zone key and every blob of the zone replaced */
	EV_CHANGE_OBJECT_EXPIRED = 9, /* a retired generation's grace period ended: destroyed */
	EV_CHANGE_ZONE_RESEALED = 10, /* the same zone key sealed again (written by older versions) */
} ev_change_kind;

typedef struct ev_change {
	int64_t seq;                  /* ascending, never reused */
	ev_change_kind kind;
	int64_t zone;
	int64_t object;               /* 0 for zone changes */
} ev_change;

CK_RV ev_store_change_add(ev_store *s, ev_change_kind kind, int64_t zone, int64_t object);

/* The last change's seq; 0 when there is none. */
CK_RV ev_store_change_last(ev_store *s, int64_t *seq);

/* Up to max changes with seq > after, ascending; *v malloc'ed (NULL when *n == 0). */
CK_RV ev_store_change_since(ev_store *s, int64_t after, size_t max, ev_change **v, size_t *n);

/*
 * The revocation history. Every list the module read (applied or
 * refused) and every local revocation is one ev_revlog_rec; every thing
 * revoked is one ev_revoked_rec. The audit trail reads both.
 */
typedef struct ev_revlog_rec {
	int64_t id;                   /* assigned by ev_store_revlog_add() */
	int64_t time;                 /* unix time */
	char *source;                 /* the list file's name, or "local" */
	int64_t sequence;             /* the list's, 0 when unknown or local */
	unsigned char digest[32];     /* BLAKE2b-256 of the list file (zeros for local) */
	int applied;                  /* 1 applied, 0 refused */
	char *detail;                 /* why refused, or what was applied */
} ev_revlog_rec;

void ev_revlog_rec_clear(ev_revlog_rec *r);
CK_RV ev_store_revlog_add(ev_store *s, ev_revlog_rec *r);

/* Whether a list file with this digest was read before (applied or refused). */
CK_RV ev_store_revlog_seen(ev_store *s, const unsigned char digest[32], int *seen);

/*
 * Revocation entries applied, by a digest of what they name (kind, zone,
 * label, CKA_ID, generation): an entry acts once, on what exists when it
 * is first applied, so a later list that repeats it (lists are
 * cumulative) cannot revoke a key made since under the same label.
 */
CK_RV ev_store_entry_applied(ev_store *s, const unsigned char digest[32], int *applied);
CK_RV ev_store_entry_add(ev_store *s, const unsigned char digest[32], int64_t log);

/* The history, oldest first; free each with ev_revlog_rec_clear(), then *v. */
CK_RV ev_store_revlog_list(ev_store *s, ev_revlog_rec **v, size_t *n);

typedef struct ev_revoked_rec {
	int64_t id;                   /* assigned by ev_store_revoked_add() */
	int64_t time;
	int64_t log;                  /* the ev_revlog_rec it came with */
	int kind;                     /* EV_REVOKE_KEY, EV_REVOKE_ZONE, EV_REVOKE_DEVICE */
	int64_t zone;                 /* 0 for the device */
	int64_t object;               /* the object revoked (kind KEY); 0 otherwise */
	unsigned char *label;         /* CKA_LABEL (kind KEY), else NULL */
	size_t label_len;
	unsigned char *ckid;          /* CKA_ID (kind KEY), may be NULL */
	size_t ckid_len;
	int64_t generation;           /* kind KEY; 0 otherwise */
	char *reason;
} ev_revoked_rec;

void ev_revoked_rec_clear(ev_revoked_rec *r);
CK_RV ev_store_revoked_add(ev_store *s, ev_revoked_rec *r);
CK_RV ev_store_revoked_list(ev_store *s, ev_revoked_rec **v, size_t *n);

/*
 * The attestation history: every appraisal that refused evidence, and
 * accepted evidence once per document and zone (the audit trail reads it).
 */
typedef struct ev_attestlog_rec {
	int64_t id;                   /* assigned by ev_store_attestlog_add() */
	int64_t time;                 /* unix time */
	int64_t zone;
	char *purpose;                /* "login", "use", "rotate", "check" */
	char *provider;               /* "result", ... */
	int accepted;
	unsigned char digest[32];     /* of the evidence (zeros when there was none) */
	int64_t valid_until;          /* accepted: when it goes stale; 0 otherwise */
	char *reason;
} ev_attestlog_rec;

void ev_attestlog_rec_clear(ev_attestlog_rec *r);
CK_RV ev_store_attestlog_add(ev_store *s, ev_attestlog_rec *r);

/* Whether an accepted row with this digest and zone exists. */
CK_RV ev_store_attestlog_accepted(ev_store *s, int64_t zone, const unsigned char digest[32],
    int *found);

/* The history, oldest first; free each with ev_attestlog_rec_clear(), then *v. */
CK_RV ev_store_attestlog_list(ev_store *s, ev_attestlog_rec **v, size_t *n);

/*
 * Use counters (doc/audit.md, "Use counters, status and metrics"): per
 * token key and operation ("sign", "verify", "encrypt", "decrypt",
 * "wrap", "unwrap", "derive"), how many completed and the last time one
 * did. A row names its key and outlives it (history): rows are never
 * deleted with their object or zone.
 */
typedef struct ev_use_rec {
	int64_t object;               /* the object's store id (its handle) */
	char op[16];                  /* the operation's name, NUL-terminated */
	int64_t zone;
	CK_OBJECT_CLASS cls;
	unsigned char *label;         /* CKA_LABEL; NULL: none */
	size_t label_len;
	unsigned char *ckid;          /* CKA_ID; NULL: none */
	size_t ckid_len;
	int64_t generation;
	int64_t count;                /* ev_store_use_add(): the delta to add */
	int64_t last_use;             /* unix time; the stored value is the largest given */
} ev_use_rec;

/* Free the members of a record (not the record). NULL is a no-op. */
void ev_use_rec_clear(ev_use_rec *r);

/*
 * Add r->count to the row of (r->object, r->op), creating it when absent,
 * keep the later last_use, and take r's label and CKA_ID (which a
 * C_SetAttributeValue may have changed). Borrows r. One statement, atomic
 * against every other connection, so processes' deltas add up; a caller
 * adding several wraps them in one transaction.
 */
CK_RV ev_store_use_add(ev_store *s, const ev_use_rec *r);

/*
 * Every row, by zone, object and operation; free each with
 * ev_use_rec_clear(), then *v (NULL when *n == 0).
 */
CK_RV ev_store_use_list(ev_store *s, ev_use_rec **v, size_t *n);

/* Meta key of the device's current attestation nonce (bytes). */
#define EV_META_ATTEST_NONCE "attest_nonce"

#endif
