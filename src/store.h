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

/*
 * A number that changes whenever another connection (this process or
 * another) has committed a change since the last call: PRAGMA data_version.
 */
CK_RV ev_store_data_version(ev_store *s, int64_t *version);

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
	char *so_pin;            /* Argon2id hash string; NULL when unset */
	char *user_pin;          /* Argon2id hash string; NULL when unset */
	unsigned so_fails;       /* consecutive failed logins */
	unsigned user_fails;
	int64_t created;         /* unix time */
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

/* Read an object; EVR_NOT_FOUND when absent. Clear with ev_obj_rec_clear(). */
CK_RV ev_store_obj_get(ev_store *s, int64_t id, ev_obj_rec *o);

/* Delete an object; EVR_NOT_FOUND when absent. */
CK_RV ev_store_obj_delete(ev_store *s, int64_t id);

/*
 * Candidate objects of a zone for a search, narrowed by the indexed
 * columns the query names (each has_* flag says whether that filter is
 * used). The caller still matches the full template. Private objects are
 * included only with include_private. *ids malloc'ed, ascending.
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
} ev_obj_query;

CK_RV ev_store_obj_find(ev_store *s, const ev_obj_query *q, int64_t **ids, size_t *n);

/* Number of objects in a zone (private ones included or not). */
CK_RV ev_store_obj_count(ev_store *s, int64_t zone, int include_private, CK_ULONG *count);

#endif
