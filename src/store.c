/*
 * The SQLite store. See store.h for the contract.
 *
 * Every statement is prepared once per connection (lazily, on first use)
 * and kept in the ev_store, because object lookups and counter updates run
 * on the hot path of sessions. A statement is always left reset and with
 * its bindings cleared, so values bound with SQLITE_STATIC never outlive
 * the call that bound them.
 *
 * Nothing is built from values: every value is bound. The only SQL made
 * at run time is the search in ev_store_obj_find(), assembled from
 * constant fragments so that each combination of filters gets a
 * statement the planner can answer from an index.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "log.h"
#include "store.h"

/* The schema version this code writes and understands. */
#define EV_SCHEMA_VERSION 6

/* Writers wait this long for one another before giving up. */
#define EV_BUSY_TIMEOUT_MS 10000

enum st_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_SP_BEGIN,
	ST_SP_RELEASE,
	ST_SP_ROLLBACK,
	ST_DATA_VERSION,
	ST_META_GET,
	ST_META_SET,
	ST_ZONE_NEXT_ID,
	ST_ZONE_INSERT,
	ST_ZONE_GET,
	ST_ZONE_LIST,
	ST_ZONE_SET_SO_PIN,
	ST_ZONE_SET_USER_PIN,
	ST_ZONE_SET_SO_FAILS,
	ST_ZONE_SET_USER_FAILS,
	ST_ZONE_ADD_SO_FAIL,
	ST_ZONE_ADD_USER_FAIL,
	ST_ZONE_GET_SO_FAILS,
	ST_ZONE_GET_USER_FAILS,
	ST_ZONE_DELETE,
	ST_ZONE_REVOKE,
	ST_ZONE_REVOKED,
	ST_ZONE_SET_SEALED,
	ST_ZONE_SET_SO_SEALED,
	ST_OBJ_INSERT,
	ST_OBJ_SET_COLUMNS,
	ST_OBJ_CLASS,
	ST_OBJ_SET_WRAPPED,
	ST_OBJ_GET,
	ST_OBJ_DELETE,
	ST_OBJ_DELETE_ZONE,
	ST_OBJ_FIND_KEYS,
	ST_OBJ_RETIRE,
	ST_OBJ_RETIRE_CURRENT,
	ST_OBJ_RETIRED_AT,
	ST_OBJ_COPIES,
	ST_OBJ_ROTATABLE,
	ST_OBJ_EXPIRED,
	ST_OBJ_NEXT_DESTROY,
	ST_OBJ_WRAPPED_IDS,
	ST_OBJ_KEY_IDS,
	ST_OBJ_COUNT_ALL,
	ST_OBJ_COUNT_PUBLIC,
	ST_ATTR_INSERT,
	ST_ATTR_DELETE_ALL,
	ST_CHANGE_ADD,
	ST_CHANGE_LAST,
	ST_CHANGE_SINCE,
	ST_REVLOG_ADD,
	ST_REVLOG_SEEN,
	ST_ENTRY_APPLIED,
	ST_ENTRY_ADD,
	ST_REVLOG_LIST,
	ST_REVOKED_ADD,
	ST_REVOKED_LIST,
	ST_ATTESTLOG_ADD,
	ST_ATTESTLOG_ACCEPTED,
	ST_ATTESTLOG_LIST,
	ST_USE_ADD,
	ST_USE_LIST,
	ST__COUNT
};

static const char *const st_sql[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SP_BEGIN] = "SAVEPOINT ev_op",
    [ST_SP_RELEASE] = "RELEASE ev_op",
    [ST_SP_ROLLBACK] = "ROLLBACK TO ev_op",
    [ST_DATA_VERSION] = "PRAGMA data_version",
    [ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [ST_META_SET] = "INSERT INTO meta(key, value) VALUES(?1, ?2) "
		    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    /*
     * sqlite_sequence remembers the highest id ever handed out, even
     * after that zone is deleted; max(id) covers a table whose sequence
     * row is missing (nothing inserted yet, or the row was removed).
     */
    [ST_ZONE_NEXT_ID] = "SELECT max(coalesce((SELECT seq FROM sqlite_sequence "
			"WHERE name = 'zones'), 0), coalesce((SELECT max(id) FROM zones), 0)) + 1",
    [ST_ZONE_INSERT] = "INSERT INTO zones(id, label, serial, sealed_key, so_pin, user_pin, "
		       "so_fails, user_fails, created, revoked, so_sealed_key) "
		       "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [ST_ZONE_GET] = "SELECT label, serial, sealed_key, so_pin, user_pin, so_fails, user_fails, "
		    "created, revoked, so_sealed_key FROM zones WHERE id = ?1",
    [ST_ZONE_LIST] = "SELECT id FROM zones ORDER BY id",
    [ST_ZONE_SET_SO_PIN] = "UPDATE zones SET so_pin = ?2, so_fails = 0 WHERE id = ?1",
    [ST_ZONE_SET_USER_PIN] = "UPDATE zones SET user_pin = ?2, user_fails = 0 WHERE id = ?1",
    [ST_ZONE_SET_SO_FAILS] = "UPDATE zones SET so_fails = ?2 WHERE id = ?1",
    [ST_ZONE_SET_USER_FAILS] = "UPDATE zones SET user_fails = ?2 WHERE id = ?1",
    [ST_ZONE_ADD_SO_FAIL] = "UPDATE zones SET so_fails = so_fails + 1 WHERE id = ?1",
    [ST_ZONE_ADD_USER_FAIL] = "UPDATE zones SET user_fails = user_fails + 1 WHERE id = ?1",
    [ST_ZONE_GET_SO_FAILS] = "SELECT so_fails FROM zones WHERE id = ?1",
    [ST_ZONE_GET_USER_FAILS] = "SELECT user_fails FROM zones WHERE id = ?1",
    [ST_ZONE_DELETE] = "DELETE FROM zones WHERE id = ?1",
    /* Only a zone not yet revoked: a second revocation changes nothing. */
    [ST_ZONE_REVOKE] = "UPDATE zones SET revoked = ?2, sealed_key = zeroblob(0), so_pin = NULL, "
		       "user_pin = NULL, so_fails = 0, user_fails = 0, so_sealed_key = NULL "
		       "WHERE id = ?1 AND revoked = 0",
    [ST_ZONE_REVOKED] = "SELECT revoked FROM zones WHERE id = ?1",
    /* A revoked zone's key stays destroyed: such a zone counts as absent here. */
    [ST_ZONE_SET_SEALED] = "UPDATE zones SET sealed_key = ?2 WHERE id = ?1 AND revoked = 0",
    [ST_ZONE_SET_SO_SEALED] = "UPDATE zones SET so_sealed_key = ?2 WHERE id = ?1 AND revoked = 0",
    [ST_OBJ_INSERT] = "INSERT INTO objects(zone, class, key_type, label, ckid, private, "
		      "generation, wrapped, origin, previous, created, retired, destroy_at) "
		      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    /* Class and privacy are kept when the new list does not name them. */
    [ST_OBJ_SET_COLUMNS] = "UPDATE objects SET class = coalesce(?2, class), key_type = ?3, "
			   "label = ?4, ckid = ?5, private = coalesce(?6, private) "
			   "WHERE id = ?1",
    [ST_OBJ_CLASS] = "SELECT class FROM objects WHERE id = ?1",
    [ST_OBJ_SET_WRAPPED] = "UPDATE objects SET wrapped = ?2 WHERE id = ?1",
    /* One statement, so the object and its attributes come from one snapshot. */
    [ST_OBJ_GET] = "SELECT o.zone, o.class, o.private, o.generation, o.wrapped, o.origin, "
		   "o.previous, o.created, o.retired, o.destroy_at, a.type, a.value "
		   "FROM objects o LEFT JOIN attrs a ON a.object = o.id WHERE o.id = ?1 "
		   "ORDER BY a.type",
    [ST_OBJ_DELETE] = "DELETE FROM objects WHERE id = ?1",
    [ST_OBJ_DELETE_ZONE] = "DELETE FROM objects WHERE zone = ?1",
    /*
     * Answered from the (zone, label) index: the unary + keeps the
     * planner off (zone, class), which matches every key of the zone, and
     * the optional filters are ORs no index can serve.
     */
    [ST_OBJ_FIND_KEYS] = "SELECT id FROM objects WHERE zone = ?1 AND label = ?2 "
			 "AND +class IN (?3, ?4, ?5) AND (?6 IS NULL OR ckid = ?6) "
			 "AND (?7 = 0 OR generation = ?7) ORDER BY id",
    [ST_OBJ_RETIRE] = "UPDATE objects SET retired = ?2, destroy_at = ?3 WHERE id = ?1",
    [ST_OBJ_RETIRE_CURRENT] = "UPDATE objects SET retired = ?2, destroy_at = ?3 "
			      "WHERE id = ?1 AND retired = 0",
    [ST_OBJ_RETIRED_AT] = "SELECT retired FROM objects WHERE id = ?1",
    [ST_OBJ_COPIES] = "SELECT id FROM objects WHERE origin = ?1 ORDER BY id",
    /*
     * Answered from the (zone, class) index; the unary + keeps the
     * planner off the (origin) and (retired, destroy_at) indexes, where
     * 0 matches nearly every object of every zone.
     */
    [ST_OBJ_ROTATABLE] = "SELECT id FROM objects WHERE zone = ?1 AND class IN (?2, ?3) "
			 "AND +retired = 0 AND +origin = 0 AND created < ?4 ORDER BY id",
    /*
     * From the (retired, destroy_at) index, so only retired objects are
     * read: with a plain ORDER BY id the planner would rather walk the
     * whole table in id order than sort the few ids it finds.
     */
    [ST_OBJ_EXPIRED] = "SELECT id FROM objects WHERE retired > 0 AND destroy_at <= ?1 "
		       "ORDER BY +id",
    /*
     * A retired object with destroy_at 0 is overdue, not "none": it
     * counts as 1, so the caller sweeps at once.
     */
    [ST_OBJ_NEXT_DESTROY] = "SELECT coalesce(min(max(destroy_at, 1)), 0) FROM objects "
			    "WHERE retired > 0",
    [ST_OBJ_WRAPPED_IDS] = "SELECT id FROM objects WHERE zone = ?1 AND wrapped IS NOT NULL "
			   "ORDER BY id",
    [ST_OBJ_KEY_IDS] = "SELECT id FROM objects WHERE zone = ?1 AND +class IN (?2, ?3, ?4) "
		       "ORDER BY id",
    [ST_OBJ_COUNT_ALL] = "SELECT count(*) FROM objects WHERE zone = ?1",
    [ST_OBJ_COUNT_PUBLIC] = "SELECT count(*) FROM objects WHERE zone = ?1 AND private = 0",
    [ST_ATTR_INSERT] = "INSERT INTO attrs(object, type, value) VALUES(?1, ?2, ?3)",
    [ST_ATTR_DELETE_ALL] = "DELETE FROM attrs WHERE object = ?1",
    [ST_CHANGE_ADD] = "INSERT INTO changes(kind, zone, object, time) VALUES(?1, ?2, ?3, ?4)",
    [ST_CHANGE_LAST] = "SELECT coalesce(max(seq), 0) FROM changes",
    [ST_CHANGE_SINCE] = "SELECT seq, kind, zone, object FROM changes WHERE seq > ?1 "
			"ORDER BY seq LIMIT ?2",
    [ST_REVLOG_ADD] = "INSERT INTO revlog(time, source, sequence, digest, applied, detail) "
		      "VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_REVLOG_SEEN] = "SELECT EXISTS(SELECT 1 FROM revlog WHERE digest = ?1)",
    [ST_ENTRY_APPLIED] = "SELECT EXISTS(SELECT 1 FROM revoked_entries WHERE digest = ?1)",
    [ST_ENTRY_ADD] = "INSERT INTO revoked_entries(digest, log) VALUES(?1, ?2)",
    [ST_REVLOG_LIST] = "SELECT id, time, source, sequence, digest, applied, detail FROM revlog "
		       "ORDER BY id",
    [ST_REVOKED_ADD] = "INSERT INTO revoked(time, log, kind, zone, object, label, ckid, "
		       "generation, reason) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_REVOKED_LIST] = "SELECT id, time, log, kind, zone, object, label, ckid, generation, "
			"reason FROM revoked ORDER BY id",
    [ST_ATTESTLOG_ADD] = "INSERT INTO attestlog(time, zone, purpose, provider, accepted, digest, "
			 "valid_until, reason) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_ATTESTLOG_ACCEPTED] = "SELECT EXISTS(SELECT 1 FROM attestlog WHERE digest = ?1 "
			      "AND zone = ?2 AND accepted = 1)",
    [ST_ATTESTLOG_LIST] = "SELECT id, time, zone, purpose, provider, accepted, digest, "
			  "valid_until, reason FROM attestlog ORDER BY id",
    /* Counts add up across processes; the identity follows the key's latest (a label may change). */
    [ST_USE_ADD] = "INSERT INTO uses(object, op, zone, class, label, ckid, generation, count, "
		   "last_use) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
		   "ON CONFLICT(object, op) DO UPDATE SET count = count + excluded.count, "
		   "last_use = max(last_use, excluded.last_use), label = excluded.label, "
		   "ckid = excluded.ckid",
    [ST_USE_LIST] = "SELECT object, op, zone, class, label, ckid, generation, count, last_use "
		    "FROM uses ORDER BY zone, object, op",
};

/* Filters of ev_store_obj_find(), as bits of the index into find_st[]. */
#define FIND_PRIVATE 0x01u /* private objects included */
#define FIND_CLASS 0x02u
#define FIND_KEY_TYPE 0x04u
#define FIND_LABEL 0x08u
#define FIND_CKID 0x10u
#define FIND_GENERATION 0x20u /* one generation, retired or not; else current ones only */
#define FIND_VARIANTS 0x40u

/* Read connections a store opens at most for ev_store_obj_find_shared(). */
#define READERS 4

/*
 * One of a store's shared read connections (ev_store_obj_find_shared()):
 * opened on first use, used by one thread at a time under mu, with its own
 * search statements.
 */
struct reader {
	pthread_mutex_t mu;
	sqlite3 *db;
	sqlite3_stmt *find_st[FIND_VARIANTS];
};

struct ev_store {
	sqlite3 *db;
	char *path;
	dev_t dev; /* identity of the database file, for ev_store_abandon() and the readers */
	ino_t ino;
	int readonly; /* EV_STORE_READONLY: the readers open read-only too */
	int relock_fd[2]; /* after abandon: descriptors holding re-taken locks, or -1 */
	sqlite3_stmt *st[ST__COUNT];
	sqlite3_stmt *find_st[FIND_VARIANTS];
	struct reader readers[READERS];
	size_t nreaders; /* how many readers' mutexes are initialised */
	ev_store *abandoned_next;
};

/*
 * Connections given up by a child after fork(). They are never closed
 * (see ev_store_abandon()); keeping them on a list keeps them reachable
 * so leak checkers and readers of a core dump see where they went.
 */
static ev_store *abandoned;
static pthread_mutex_t abandoned_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * Schema, one step per version: steps[v] turns a version v-1 database
 * into version v. A later version appends a step; existing steps never
 * change, since stores in the field have already run them.
 */
static const char *const schema_v1[] = {
    "CREATE TABLE meta ("
    " key TEXT PRIMARY KEY,"
    " value BLOB)",
    "CREATE TABLE zones ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " label BLOB,"
    " serial TEXT,"
    " sealed_key BLOB NOT NULL,"
    " so_pin TEXT,"
    " user_pin TEXT,"
    " so_fails INTEGER NOT NULL DEFAULT 0,"
    " user_fails INTEGER NOT NULL DEFAULT 0,"
    " created INTEGER)",
    "CREATE TABLE objects ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " zone INTEGER NOT NULL REFERENCES zones(id) ON DELETE CASCADE,"
    " class INTEGER,"
    " key_type INTEGER,"
    " label BLOB,"
    " ckid BLOB,"
    " private INTEGER NOT NULL DEFAULT 1,"
    " generation INTEGER NOT NULL DEFAULT 1,"
    " wrapped BLOB)",
    "CREATE INDEX objects_zone_label ON objects(zone, label)",
    "CREATE INDEX objects_zone_ckid ON objects(zone, ckid)",
    "CREATE INDEX objects_zone_class ON objects(zone, class)",
    "CREATE TABLE attrs ("
    " object INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,"
    " type INTEGER NOT NULL,"
    " value BLOB,"
    " PRIMARY KEY(object, type)) WITHOUT ROWID",
    NULL,
};

/*
 * Revocation: zones can be revoked (the row stays, emptied), a change log
 * other processes follow, and the revocation history. The history keeps
 * no reference to zones or objects: it outlives them.
 */
static const char *const schema_v2[] = {
    "ALTER TABLE zones ADD COLUMN revoked INTEGER NOT NULL DEFAULT 0",
    "CREATE TABLE changes ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " kind INTEGER NOT NULL,"
    " zone INTEGER NOT NULL,"
    " object INTEGER NOT NULL DEFAULT 0,"
    " time INTEGER NOT NULL)",
    "CREATE TABLE revlog ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " time INTEGER NOT NULL,"
    " source TEXT NOT NULL,"
    " sequence INTEGER NOT NULL,"
    " digest BLOB NOT NULL,"
    " applied INTEGER NOT NULL,"
    " detail TEXT)",
    "CREATE INDEX revlog_digest ON revlog(digest)",
    "CREATE TABLE revoked ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " time INTEGER NOT NULL,"
    " log INTEGER NOT NULL REFERENCES revlog(id),"
    " kind INTEGER NOT NULL,"
    " zone INTEGER NOT NULL,"
    " object INTEGER NOT NULL,"
    " label BLOB,"
    " ckid BLOB,"
    " generation INTEGER NOT NULL,"
    " reason TEXT NOT NULL)",
    "CREATE TABLE revoked_entries ("
    " digest BLOB PRIMARY KEY,"
    " log INTEGER NOT NULL REFERENCES revlog(id)) WITHOUT ROWID",
    NULL,
};

/*
 * Attestation and rotation: an object's lineage (origin of a copy, the
 * generation it replaced), when it was made, and when it was retired and
 * is to be destroyed; the attestation history. Objects made before this
 * step count as made now: their age is unknown, and a rotation period
 * then starts from the upgrade rather than making every key due at once.
 * The history, like the revocation history, outlives zones.
 */
static const char *const schema_v3[] = {
    "ALTER TABLE objects ADD COLUMN origin INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE objects ADD COLUMN previous INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE objects ADD COLUMN created INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE objects ADD COLUMN retired INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE objects ADD COLUMN destroy_at INTEGER NOT NULL DEFAULT 0",
    "UPDATE objects SET created = CAST(strftime('%s', 'now') AS INTEGER)",
    "CREATE INDEX objects_retired ON objects(retired, destroy_at)",
    "CREATE INDEX objects_origin ON objects(origin)",
    "CREATE TABLE attestlog ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " time INTEGER NOT NULL,"
    " zone INTEGER NOT NULL,"
    " purpose TEXT NOT NULL,"
    " provider TEXT,"
    " accepted INTEGER NOT NULL,"
    " digest BLOB NOT NULL,"
    " valid_until INTEGER NOT NULL,"
    " reason TEXT)",
    "CREATE INDEX attestlog_digest ON attestlog(digest)",
    NULL,
};

/*
 * PCR binding: a zone whose key is sealed to PCRs also keeps a copy of
 * it sealed under an auth value derived from the SO PIN (NULL: none), so
 * the SO can bind it again after the PCRs changed.
 */
static const char *const schema_v4[] = {
    "ALTER TABLE zones ADD COLUMN so_sealed_key BLOB",
    NULL,
};

/*
 * Use counters: how many operations of each kind (sign, decrypt, ...)
 * each token key made, and when it was last used. Every process adds its
 * deltas. A row names the key (zone, class, label, CKA_ID, generation)
 * and, like the revocation history, outlives the object: the use of a
 * destroyed or revoked key stays on record.
 */
static const char *const schema_v5[] = {
    "CREATE TABLE uses ("
    " object INTEGER NOT NULL,"
    " op TEXT NOT NULL,"
    " zone INTEGER NOT NULL,"
    " class INTEGER NOT NULL,"
    " label BLOB,"
    " ckid BLOB,"
    " generation INTEGER NOT NULL,"
    " count INTEGER NOT NULL,"
    " last_use INTEGER NOT NULL,"
    " PRIMARY KEY(object, op)) WITHOUT ROWID",
    NULL,
};

/*
 * Searches answered from the index alone: a search by label or CKA_ID
 * reads the retired, private, class and key type filters from the index
 * entry instead of the object's row, so it touches one index page, not a
 * row page too. They replace the (zone, label) and (zone, ckid) indexes,
 * whose prefixes they are.
 */
static const char *const schema_v6[] = {
    "CREATE INDEX objects_zone_label_find ON objects(zone, label, retired, private, class, key_type)",
    "DROP INDEX objects_zone_label",
    "CREATE INDEX objects_zone_ckid_find ON objects(zone, ckid, retired, private, class, key_type)",
    "DROP INDEX objects_zone_ckid",
    NULL,
};

static const char *const *const schema_steps[EV_SCHEMA_VERSION + 1] = {
    [1] = schema_v1,
    [2] = schema_v2,
    [3] = schema_v3,
    [4] = schema_v4,
    [5] = schema_v5,
    [6] = schema_v6,
};

static CK_RV
db_error_on(sqlite3 *db, const char *what)
{
	ev_error("store: %s: %s", what, sqlite3_errmsg(db));
	return CKR_DEVICE_ERROR;
}

static CK_RV
db_error(ev_store *s, const char *what)
{
	return db_error_on(s->db, what);
}

/* The cached statement, prepared on first use; NULL (logged) on failure. */
static sqlite3_stmt *
stmt(ev_store *s, enum st_id id)
{
	int rc;

	if (s->st[id] != NULL)
		return s->st[id];
	rc = sqlite3_prepare_v3(s->db, st_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s->st[id], NULL);
	if (rc != SQLITE_OK) {
		ev_error("store: prepare %d: %s", (int)id, sqlite3_errmsg(s->db));
		s->st[id] = NULL;
	}
	return s->st[id];
}

/*
 * Return a statement to its idle state. sqlite3_reset() repeats the error
 * of the last step, which the caller has already handled, so its answer
 * carries nothing new.
 */
static void
done(sqlite3_stmt *st)
{
	if (st == NULL)
		return;
	(void)sqlite3_reset(st);
	(void)sqlite3_clear_bindings(st);
}

/*
 * Bind bytes as a BLOB. A zero-length value stays a zero-length BLOB,
 * never NULL: an empty CKA_LABEL is present and must match only an empty
 * label, while an absent one is NULL (bound with sqlite3_bind_null()).
 */
static int
bind_bytes(sqlite3_stmt *st, int i, const void *p, size_t len)
{
	if (len == 0)
		return sqlite3_bind_zeroblob(st, i, 0);
	return sqlite3_bind_blob64(st, i, p, len, SQLITE_STATIC);
}

/* An optional BLOB: NULL when p is NULL. */
static int
bind_bytes_or_null(sqlite3_stmt *st, int i, const void *p, size_t len)
{
	if (p == NULL)
		return sqlite3_bind_null(st, i);
	return bind_bytes(st, i, p, len);
}

static int
bind_text_or_null(sqlite3_stmt *st, int i, const char *str)
{
	if (str == NULL)
		return sqlite3_bind_null(st, i);
	return sqlite3_bind_text(st, i, str, -1, SQLITE_STATIC);
}

/* Run a statement that returns no rows. */
static CK_RV
exec_st(ev_store *s, enum st_id id, const char *what)
{
	sqlite3_stmt *st = stmt(s, id);
	CK_RV rv = CKR_OK;

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	if (sqlite3_step(st) != SQLITE_DONE)
		rv = db_error(s, what);
	done(st);
	return rv;
}

/* Copy a column's bytes into a new allocation (one byte when empty, so never NULL). */
static CK_RV
column_dup(sqlite3_stmt *st, int col, unsigned char **out, size_t *len)
{
	const void *p = sqlite3_column_blob(st, col);
	size_t n = (size_t)sqlite3_column_bytes(st, col);

	*out = malloc(n > 0 ? n : 1);
	if (*out == NULL)
		return CKR_HOST_MEMORY;
	if (n > 0)
		memcpy(*out, p, n);
	*len = n;
	return CKR_OK;
}

/*
 * A scope for a call made of several statements, so that it is atomic on
 * its own: a write transaction when the caller has none, else a savepoint
 * in the caller's transaction (so a failed call leaves the caller's
 * earlier work intact).
 */
static CK_RV
op_begin(ev_store *s, int *own)
{
	*own = sqlite3_get_autocommit(s->db);
	return exec_st(s, *own ? ST_BEGIN : ST_SP_BEGIN, "begin");
}

static CK_RV
op_end(ev_store *s, int own, CK_RV rv)
{
	CK_RV rv2;

	if (rv == CKR_OK) {
		rv2 = exec_st(s, own ? ST_COMMIT : ST_SP_RELEASE, "commit");
		if (rv2 == CKR_OK)
			return CKR_OK;
		rv = rv2;
	}
	if (own) {
		if (!sqlite3_get_autocommit(s->db))
			(void)exec_st(s, ST_ROLLBACK, "rollback");
	} else {
		/* ROLLBACK TO keeps the savepoint open; RELEASE ends it. */
		(void)exec_st(s, ST_SP_ROLLBACK, "rollback");
		(void)exec_st(s, ST_SP_RELEASE, "release");
	}
	return rv;
}

/*
 * SQLite's lock layout (file format documentation: "the lock-byte page",
 * and the WAL-index "DMS" lock). Every process with the database open in
 * WAL mode holds a read lock on the SHARED range of the database file and
 * on the DMS byte of the -shm file for as long as it is connected.
 */
#define SQLITE_SHARED_FIRST (0x40000000L + 2)
#define SQLITE_SHARED_SIZE 510
#define SQLITE_SHM_DMS 128

/* Take a read lock on [start, start+len) of path, keeping the descriptor open. */
static int
relock(const char *path, off_t start, off_t len, dev_t dev, ino_t ino)
{
	struct flock fl;
	struct stat sb;
	int fd, i;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	if (fstat(fd, &sb) != 0 || (ino != 0 && (sb.st_dev != dev || sb.st_ino != ino)))
		goto fail;
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_RDLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = start;
	fl.l_len = len;
	/* A write lock is only held for a moment (a closing connection's check). */
	for (i = 0; i < 500; i++) {
		if (fcntl(fd, F_SETLK, &fl) == 0)
			return fd;
		if (errno != EAGAIN && errno != EACCES && errno != EINTR)
			break;
		usleep(10000);
	}
fail:
	(void)close(fd);
	return -1;
}

static void reader_close(struct reader *r);

static void
store_free(ev_store *s)
{
	size_t i;

	for (i = 0; i < s->nreaders; i++)
		reader_close(&s->readers[i]);
	for (i = 0; i < EV_ARRAY_SIZE(s->st); i++)
		(void)sqlite3_finalize(s->st[i]);
	for (i = 0; i < EV_ARRAY_SIZE(s->find_st); i++)
		(void)sqlite3_finalize(s->find_st[i]);
	if (s->db != NULL && sqlite3_close(s->db) != SQLITE_OK)
		ev_error("store: close: %s", sqlite3_errmsg(s->db));
	free(s->path);
	free(s);
}

/* mkdir -p with mode 0700 for every directory it creates. */
static int
make_dirs(const char *dir)
{
	char *p, *q, c;
	int ret = -1;

	p = strdup(dir);
	if (p == NULL)
		return -1;
	for (q = p + 1;; q++) {
		if (*q != '/' && *q != '\0')
			continue;
		c = *q;
		*q = '\0';
		if (mkdir(p, 0700) != 0 && errno != EEXIST)
			goto out;
		*q = c;
		if (c == '\0')
			break;
	}
	ret = 0;
out:
	free(p);
	return ret;
}

/* Run a PRAGMA that answers one row; the answer's text is copied to buf. */
static int
pragma(ev_store *s, const char *sql, char *buf, size_t buflen)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);

		if (buf != NULL)
			snprintf(buf, buflen, "%s", t ? (const char *)t : "");
		rc = sqlite3_step(st);
	}
	if (rc == SQLITE_DONE)
		rc = SQLITE_OK;
	else
		rc = sqlite3_errcode(s->db);
	(void)sqlite3_finalize(st);
	return rc;
}

/* The stored schema version: 0 for an empty database. */
static int
schema_version(ev_store *s, long long *version)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*version = 0;
	rc = sqlite3_prepare_v2(
	    s->db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'", -1,
	    &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		rc = sqlite3_errcode(s->db);
		goto out;
	}
	if (sqlite3_column_int(st, 0) == 0) {
		rc = SQLITE_OK;
		goto out;
	}
	(void)sqlite3_finalize(st);
	st = NULL;
	rc = sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = 'schema_version'", -1,
				&st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*version = sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_OK;
	} else {
		rc = sqlite3_errcode(s->db);
	}
out:
	(void)sqlite3_finalize(st);
	return rc;
}

/*
 * Bring the schema to EV_SCHEMA_VERSION. The version is read again under
 * the write lock, so two processes opening a new store at once run each
 * step exactly once.
 */
static CK_RV
migrate(ev_store *s, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	long long version;
	int rc, v, i;
	CK_RV rv = CKR_DEVICE_ERROR;

	rc = schema_version(s, &version);
	if (rc != SQLITE_OK)
		goto fail;
	if (version == EV_SCHEMA_VERSION)
		return CKR_OK;
	if (version > EV_SCHEMA_VERSION)
		goto newer;

	rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	rc = schema_version(s, &version);
	if (rc != SQLITE_OK)
		goto fail;
	if (version > EV_SCHEMA_VERSION)
		goto newer;
	if (version < 0) {
		ev_errf(err, errlen, "store %s: invalid schema version %lld", s->path, version);
		ev_error("store: %s: invalid schema version", s->path);
		goto out;
	}
	for (v = (int)version + 1; v <= EV_SCHEMA_VERSION; v++) {
		for (i = 0; schema_steps[v][i] != NULL; i++) {
			rc = sqlite3_exec(s->db, schema_steps[v][i], NULL, NULL, NULL);
			if (rc != SQLITE_OK)
				goto fail;
		}
		ev_debug("store: %s: schema upgraded to version %d", s->path, v);
	}
	rc = sqlite3_prepare_v2(s->db,
				"INSERT INTO meta(key, value) VALUES('schema_version', ?1) "
				"ON CONFLICT(key) DO UPDATE SET value = excluded.value",
				-1, &st, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	rc = sqlite3_bind_int64(st, 1, EV_SCHEMA_VERSION);
	if (rc != SQLITE_OK)
		goto fail;
	if (sqlite3_step(st) != SQLITE_DONE)
		goto fail;
	rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	rv = CKR_OK;
	goto out;

newer:
	ev_errf(err, errlen,
		"store %s has schema version %lld, newer than this edgevault supports (%d)",
		s->path, version, EV_SCHEMA_VERSION);
	ev_error("store: %s: schema version %lld is newer than supported (%d)", s->path, version,
		 EV_SCHEMA_VERSION);
	goto out;
fail:
	ev_errf(err, errlen, "store %s: cannot create or upgrade the schema: %s", s->path,
		sqlite3_errmsg(s->db));
	ev_error("store: %s: schema: %s", s->path, sqlite3_errmsg(s->db));
out:
	(void)sqlite3_finalize(st);
	if (rv != CKR_OK && !sqlite3_get_autocommit(s->db))
		(void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rv;
}

/* A read-only open does no schema work: it only accepts the current schema. */
static CK_RV
check_schema(ev_store *s, char *err, size_t errlen)
{
	long long version;

	if (schema_version(s, &version) != SQLITE_OK) {
		ev_errf(err, errlen, "store %s: cannot read the schema: %s", s->path,
			sqlite3_errmsg(s->db));
		ev_error("store: %s: schema: %s", s->path, sqlite3_errmsg(s->db));
		return CKR_DEVICE_ERROR;
	}
	if (version == EV_SCHEMA_VERSION)
		return CKR_OK;
	if (version > EV_SCHEMA_VERSION) {
		ev_errf(err, errlen,
			"store %s has schema version %lld, newer than this edgevault supports (%d)",
			s->path, version, EV_SCHEMA_VERSION);
	} else if (version == 0) {
		ev_errf(err, errlen, "store %s is not initialised", s->path);
	} else {
		ev_errf(err, errlen,
			"store %s has schema version %lld (current %d): open it read-write once "
			"to upgrade",
			s->path, version, EV_SCHEMA_VERSION);
	}
	ev_error("store: %s: schema version %lld, expected %d", s->path, version,
		 EV_SCHEMA_VERSION);
	return CKR_DEVICE_ERROR;
}

CK_RV
ev_store_open(const char *dir, unsigned flags, ev_store **out, char *err, size_t errlen)
{
	ev_store *s = NULL;
	struct stat sb;
	char mode[16];
	int rc, fd, oflags;
	int readonly = (flags & EV_STORE_READONLY) != 0;
	size_t i;
	CK_RV rv = CKR_DEVICE_ERROR;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL)
		return CKR_DEVICE_ERROR;
	*out = NULL;
	if (dir == NULL || *dir == '\0') {
		ev_errf(err, errlen, "no store directory given");
		return CKR_DEVICE_ERROR;
	}

	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return CKR_HOST_MEMORY;
	s->relock_fd[0] = s->relock_fd[1] = -1;
	for (i = 0; i < READERS; i++) {
		if (pthread_mutex_init(&s->readers[i].mu, NULL) != 0) {
			rv = CKR_HOST_MEMORY;
			goto out;
		}
		s->nreaders = i + 1;
	}
	if (asprintf(&s->path, "%s/%s", dir, EV_STORE_FILE) < 0) {
		s->path = NULL;
		rv = CKR_HOST_MEMORY;
		goto out;
	}

	if ((flags & EV_STORE_CREATE) && !readonly) {
		if (make_dirs(dir) != 0) {
			ev_errf(err, errlen, "cannot create store directory %s: %s", dir,
				strerror(errno));
			ev_error("store: cannot create directory %s: %m", dir);
			goto out;
		}
		/*
		 * Create the file ourselves so it is 0600 from the start:
		 * SQLite would use 0644. Its -wal and -shm files copy the
		 * database file's mode.
		 */
		fd = open(s->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0) {
			ev_errf(err, errlen, "cannot create store %s: %s", s->path,
				strerror(errno));
			ev_error("store: cannot create %s: %m", s->path);
			goto out;
		}
		(void)close(fd);
	} else if (stat(s->path, &sb) != 0) {
		if (errno == ENOENT)
			ev_errf(err, errlen, "store %s does not exist", s->path);
		else
			ev_errf(err, errlen, "cannot access store %s: %s", s->path,
				strerror(errno));
		ev_error("store: cannot access %s: %m", s->path);
		goto out;
	}

	oflags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
	/* Callers serialise each ev_store, so SQLite's own mutex would only cost. */
	oflags |= SQLITE_OPEN_NOMUTEX;
	rc = sqlite3_open_v2(s->path, &s->db, oflags, NULL);
	if (rc != SQLITE_OK)
		goto db_fail;
	if (sqlite3_extended_result_codes(s->db, 1) != SQLITE_OK)
		goto db_fail;
	if (stat(s->path, &sb) == 0) {
		s->dev = sb.st_dev;
		s->ino = sb.st_ino;
	}
	s->readonly = readonly;
	if (sqlite3_busy_timeout(s->db, EV_BUSY_TIMEOUT_MS) != SQLITE_OK)
		goto db_fail;
	if (pragma(s, "PRAGMA foreign_keys = ON", NULL, 0) != SQLITE_OK)
		goto db_fail;
	/*
	 * Deleted content is overwritten with zeros, not left in free pages:
	 * a revoked zone's sealed key and its objects' wrapped keys must not
	 * be recoverable from the file.
	 */
	if (pragma(s, "PRAGMA secure_delete = ON", mode, sizeof(mode)) != SQLITE_OK)
		goto db_fail;
	if (strcmp(mode, "1") != 0) {
		ev_errf(err, errlen, "store %s: cannot enable secure_delete (got %s)", s->path,
			mode);
		ev_error("store: %s: cannot enable secure_delete", s->path);
		goto out;
	}
	if (!readonly) {
		/* WAL: readers never wait for a writer, and other processes may read. */
		if (pragma(s, "PRAGMA journal_mode = WAL", mode, sizeof(mode)) != SQLITE_OK)
			goto db_fail;
		if (strcmp(mode, "wal") != 0) {
			ev_errf(err, errlen, "store %s: cannot enable WAL mode (got %s)", s->path,
				mode);
			ev_error("store: %s: cannot enable WAL mode", s->path);
			goto out;
		}
		/* A committed key must survive a power loss: sync the WAL on every commit. */
		if (pragma(s, "PRAGMA synchronous = FULL", NULL, 0) != SQLITE_OK)
			goto db_fail;
		rv = migrate(s, err, errlen);
	} else {
		rv = check_schema(s, err, errlen);
	}
	if (rv != CKR_OK)
		goto out;

	*out = s;
	s = NULL; /* transferred */
	rv = CKR_OK;
	goto out;

db_fail:
	if (s->db == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	ev_errf(err, errlen, "cannot open store %s: %s", s->path, sqlite3_errmsg(s->db));
	ev_error("store: open %s: %s", s->path, sqlite3_errmsg(s->db));
	rv = CKR_DEVICE_ERROR;
out:
	if (s != NULL)
		store_free(s);
	return rv;
}

void
ev_store_close(ev_store *s)
{
	if (s == NULL)
		return;
	store_free(s);
}

void
ev_store_abandon(ev_store *s)
{
	char shm[PATH_MAX];

	if (s == NULL)
		return;
	/*
	 * Closing a connection inherited across fork() would act on the
	 * parent's state: it may checkpoint and delete the WAL file or
	 * reset the shared-memory index the parent is using, or roll back
	 * a transaction the parent has open. So the child never touches it
	 * again: no finalize, no close.
	 *
	 * But POSIX locks are not inherited, while SQLite's per-process
	 * record of them is: it believes this process holds the locks the
	 * parent held, so a new connection opened here takes none of its
	 * own. Other processes would then think nobody else is connected:
	 * the last one to close checkpoints and deletes the WAL this child
	 * still writes to, and the child's later commits are lost. So take
	 * back, in this process, the two locks every connected process
	 * holds (the abandoned connection can never release them, and
	 * closing these descriptors would drop every lock this process
	 * has on the files, so they stay open too).
	 */
	if (s->relock_fd[0] < 0)
		s->relock_fd[0] =
		    relock(s->path, SQLITE_SHARED_FIRST, SQLITE_SHARED_SIZE, s->dev, s->ino);
	if (s->relock_fd[1] < 0 &&
	    (size_t)snprintf(shm, sizeof(shm), "%s-shm", s->path) < sizeof(shm))
		s->relock_fd[1] = relock(shm, SQLITE_SHM_DMS, 1, 0, 0);
	if (s->relock_fd[0] < 0 || s->relock_fd[1] < 0)
		ev_warn("store: %s: cannot take back the store locks after fork", s->path);

	pthread_mutex_lock(&abandoned_lock);
	s->abandoned_next = abandoned;
	abandoned = s;
	pthread_mutex_unlock(&abandoned_lock);
}

CK_RV
ev_store_begin(ev_store *s)
{
	return exec_st(s, ST_BEGIN, "begin");
}

CK_RV
ev_store_commit(ev_store *s)
{
	return exec_st(s, ST_COMMIT, "commit");
}

CK_RV
ev_store_rollback(ev_store *s)
{
	if (sqlite3_get_autocommit(s->db))
		return CKR_OK;
	return exec_st(s, ST_ROLLBACK, "rollback");
}

int
ev_store_in_transaction(ev_store *s)
{
	return !sqlite3_get_autocommit(s->db);
}

CK_RV
ev_store_checkpoint(ev_store *s)
{
	int rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);

	if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
		ev_debug("store: %s: checkpoint held back by a reader", s->path);
		return CKR_OK;
	}
	if (rc != SQLITE_OK)
		return db_error(s, "checkpoint");
	return CKR_OK;
}

CK_RV
ev_store_data_version(ev_store *s, int64_t *version)
{
	sqlite3_stmt *st = stmt(s, ST_DATA_VERSION);
	CK_RV rv = CKR_OK;

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	if (sqlite3_step(st) == SQLITE_ROW)
		*version = sqlite3_column_int64(st, 0);
	else
		rv = db_error(s, "data_version");
	done(st);
	return rv;
}

CK_RV
ev_store_meta_get(ev_store *s, const char *key, unsigned char **val, size_t *len)
{
	sqlite3_stmt *st = stmt(s, ST_META_GET);
	CK_RV rv;
	int rc;

	*val = NULL;
	*len = 0;
	if (st == NULL)
		return CKR_DEVICE_ERROR;
	if (sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) != SQLITE_OK) {
		rv = db_error(s, "meta get");
		goto out;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		rv = EVR_NOT_FOUND;
	else if (rc == SQLITE_ROW)
		rv = column_dup(st, 0, val, len);
	else
		rv = db_error(s, "meta get");
out:
	done(st);
	return rv;
}

CK_RV
ev_store_meta_set(ev_store *s, const char *key, const void *val, size_t len)
{
	sqlite3_stmt *st = stmt(s, ST_META_SET);
	CK_RV rv = CKR_OK;

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	if (sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) != SQLITE_OK ||
	    bind_bytes(st, 2, val, len) != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE)
		rv = db_error(s, "meta set");
	done(st);
	return rv;
}

/*
 * A meta value as a decimal int64: an optional '-' and digits, nothing
 * else (no space, no '+'), within range.
 */
static int
parse_int64(const unsigned char *p, size_t n, int64_t *out)
{
	uint64_t v = 0, limit = (uint64_t)INT64_MAX;
	size_t i = 0;
	int neg = 0;

	if (p == NULL || n == 0)
		return -1;
	if (p[0] == '-') {
		neg = 1;
		limit += 1; /* |INT64_MIN| */
		i = 1;
	}
	if (i == n)
		return -1;
	for (; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		if (v > (limit - (uint64_t)(p[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	if (neg)
		*out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
	else
		*out = (int64_t)v;
	return 0;
}

CK_RV
ev_store_meta_get_int(ev_store *s, const char *key, int64_t *val)
{
	sqlite3_stmt *st = stmt(s, ST_META_GET);
	const unsigned char *p;
	size_t n;
	int64_t v;
	CK_RV rv = CKR_OK;
	int rc;

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	if (sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) != SQLITE_OK) {
		rv = db_error(s, "meta get");
		goto out;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		rv = EVR_NOT_FOUND;
		goto out;
	}
	if (rc != SQLITE_ROW) {
		rv = db_error(s, "meta get");
		goto out;
	}
	/* Text of whatever type is stored (an INTEGER reads as its decimal form). */
	p = sqlite3_column_text(st, 0);
	n = (size_t)sqlite3_column_bytes(st, 0);
	if (p == NULL && sqlite3_errcode(s->db) == SQLITE_NOMEM) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	if (parse_int64(p, n, &v) != 0) {
		ev_error("store: meta %s: not an integer", key);
		rv = CKR_DEVICE_ERROR;
		goto out;
	}
	*val = v;
out:
	done(st);
	return rv;
}

CK_RV
ev_store_meta_set_int(ev_store *s, const char *key, int64_t val)
{
	sqlite3_stmt *st = stmt(s, ST_META_SET);
	char buf[24];
	CK_RV rv = CKR_OK;

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	snprintf(buf, sizeof(buf), "%lld", (long long)val);
	if (sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, buf, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE)
		rv = db_error(s, "meta set");
	done(st);
	return rv;
}

void
ev_zone_rec_clear(ev_zone_rec *z)
{
	if (z == NULL)
		return;
	free(z->sealed);
	free(z->so_sealed);
	/* PIN hashes are not PINs, but there is no reason to leave them in the heap. */
	if (z->so_pin != NULL) {
		sodium_memzero(z->so_pin, strlen(z->so_pin));
		free(z->so_pin);
	}
	if (z->user_pin != NULL) {
		sodium_memzero(z->user_pin, strlen(z->user_pin));
		free(z->user_pin);
	}
	memset(z, 0, sizeof(*z));
}

CK_RV
ev_store_zone_next_id(ev_store *s, int64_t *id)
{
	sqlite3_stmt *st = stmt(s, ST_ZONE_NEXT_ID);
	CK_RV rv = CKR_OK;

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	if (sqlite3_step(st) == SQLITE_ROW)
		*id = sqlite3_column_int64(st, 0);
	else
		rv = db_error(s, "zone next id");
	done(st);
	return rv;
}

CK_RV
ev_store_zone_insert(ev_store *s, const ev_zone_rec *z)
{
	sqlite3_stmt *st;
	size_t serial_len = strnlen(z->serial, sizeof(z->serial) - 1);
	CK_RV rv = CKR_OK;

	if (z->id < 1) {
		ev_error("store: zone insert: invalid zone id");
		return CKR_DEVICE_ERROR;
	}
	st = stmt(s, ST_ZONE_INSERT);
	if (st == NULL)
		return CKR_DEVICE_ERROR;
	if (sqlite3_bind_int64(st, 1, z->id) != SQLITE_OK ||
	    sqlite3_bind_blob(st, 2, z->label, sizeof(z->label), SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 3, z->serial, (int)serial_len, SQLITE_STATIC) != SQLITE_OK ||
	    bind_bytes(st, 4, z->sealed, z->sealed != NULL ? z->sealed_len : 0) != SQLITE_OK ||
	    bind_text_or_null(st, 5, z->so_pin) != SQLITE_OK ||
	    bind_text_or_null(st, 6, z->user_pin) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 7, z->so_fails) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 8, z->user_fails) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 9, z->created) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 10, z->revoked) != SQLITE_OK ||
	    (z->so_sealed != NULL ? bind_bytes(st, 11, z->so_sealed, z->so_sealed_len)
				  : sqlite3_bind_null(st, 11)) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE)
		rv = db_error(s, "zone insert");
	done(st);
	return rv;
}

static CK_RV
column_strdup(sqlite3_stmt *st, int col, char **out)
{
	const unsigned char *t;

	*out = NULL;
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return CKR_OK;
	t = sqlite3_column_text(st, col);
	if (t == NULL)
		return CKR_HOST_MEMORY;
	*out = strdup((const char *)t);
	return *out != NULL ? CKR_OK : CKR_HOST_MEMORY;
}

CK_RV
ev_store_zone_get(ev_store *s, int64_t id, ev_zone_rec *z)
{
	sqlite3_stmt *st = stmt(s, ST_ZONE_GET);
	const void *p;
	size_t n;
	int rc;
	CK_RV rv;

	memset(z, 0, sizeof(*z));
	if (st == NULL)
		return CKR_DEVICE_ERROR;
	if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK) {
		rv = db_error(s, "zone get");
		goto out;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		rv = EVR_NOT_FOUND;
		goto out;
	}
	if (rc != SQLITE_ROW) {
		rv = db_error(s, "zone get");
		goto out;
	}
	z->id = id;
	memset(z->label, ' ', sizeof(z->label));
	p = sqlite3_column_blob(st, 0);
	n = (size_t)sqlite3_column_bytes(st, 0);
	if (p != NULL)
		memcpy(z->label, p, n < sizeof(z->label) ? n : sizeof(z->label));
	p = sqlite3_column_text(st, 1);
	if (p != NULL)
		snprintf(z->serial, sizeof(z->serial), "%s", (const char *)p);
	rv = column_dup(st, 2, &z->sealed, &z->sealed_len);
	if (rv == CKR_OK)
		rv = column_strdup(st, 3, &z->so_pin);
	if (rv == CKR_OK)
		rv = column_strdup(st, 4, &z->user_pin);
	if (rv != CKR_OK)
		goto out;
	z->so_fails = (unsigned)sqlite3_column_int64(st, 5);
	z->user_fails = (unsigned)sqlite3_column_int64(st, 6);
	z->created = sqlite3_column_int64(st, 7);
	z->revoked = sqlite3_column_int64(st, 8);
	if (sqlite3_column_type(st, 9) != SQLITE_NULL)
		rv = column_dup(st, 9, &z->so_sealed, &z->so_sealed_len);
out:
	done(st);
	if (rv != CKR_OK)
		ev_zone_rec_clear(z);
	return rv;
}

/*
 * Room for one more element of size sz in v (cnt used of *cap): v itself
 * or its reallocation; NULL (v untouched) when memory runs out.
 */
static void *
grow(void *v, size_t *cap, size_t cnt, size_t sz)
{
	size_t ncap;
	void *nv;

	if (cnt < *cap)
		return v;
	ncap = *cap ? *cap * 2 : 16;
	if (ncap < *cap || ncap > SIZE_MAX / sz)
		return NULL;
	nv = realloc(v, ncap * sz);
	if (nv != NULL)
		*cap = ncap;
	return nv;
}

/* Collect the first column of every row as ids; *ids is NULL when there are none. */
static CK_RV
collect_ids_on(sqlite3 *db, sqlite3_stmt *st, const char *what, int64_t **ids, size_t *n)
{
	int64_t *v = NULL, *nv;
	size_t cnt = 0, cap = 0;
	int rc;
	CK_RV rv = CKR_OK;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		nv = grow(v, &cap, cnt, sizeof(*v));
		if (nv == NULL) {
			rv = CKR_HOST_MEMORY;
			goto out;
		}
		v = nv;
		v[cnt++] = sqlite3_column_int64(st, 0);
	}
	if (rc != SQLITE_DONE)
		rv = db_error_on(db, what);
out:
	if (rv != CKR_OK) {
		free(v);
		v = NULL;
		cnt = 0;
	}
	*ids = v;
	*n = cnt;
	return rv;
}

static CK_RV
collect_ids(ev_store *s, sqlite3_stmt *st, const char *what, int64_t **ids, size_t *n)
{
	return collect_ids_on(s->db, st, what, ids, n);
}

CK_RV
ev_store_zone_list(ev_store *s, int64_t **ids, size_t *n)
{
	sqlite3_stmt *st = stmt(s, ST_ZONE_LIST);
	CK_RV rv;

	*ids = NULL;
	*n = 0;
	if (st == NULL)
		return CKR_DEVICE_ERROR;
	rv = collect_ids(s, st, "zone list", ids, n);
	done(st);
	return rv;
}

/*
 * Finish an UPDATE or DELETE of one row whose parameters are bound:
 * EVR_NOT_FOUND when no row had that id.
 */
static CK_RV
finish_one(ev_store *s, sqlite3_stmt *st, int bind_rc, const char *what)
{
	CK_RV rv = CKR_OK;

	if (bind_rc != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE)
		rv = db_error(s, what);
	else if (sqlite3_changes(s->db) == 0)
		rv = EVR_NOT_FOUND;
	done(st);
	return rv;
}

static CK_RV
by_id(ev_store *s, enum st_id id_st, int64_t id, const char *what)
{
	sqlite3_stmt *st = stmt(s, id_st);

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	return finish_one(s, st, sqlite3_bind_int64(st, 1, id), what);
}

static CK_RV
by_id_text(ev_store *s, enum st_id id_st, int64_t id, const char *text, const char *what)
{
	sqlite3_stmt *st = stmt(s, id_st);
	int rc;

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	rc = sqlite3_bind_int64(st, 1, id);
	if (rc == SQLITE_OK)
		rc = bind_text_or_null(st, 2, text);
	return finish_one(s, st, rc, what);
}

static CK_RV
by_id_int(ev_store *s, enum st_id id_st, int64_t id, int64_t num, const char *what)
{
	sqlite3_stmt *st = stmt(s, id_st);
	int rc;

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	rc = sqlite3_bind_int64(st, 1, id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, num);
	return finish_one(s, st, rc, what);
}

CK_RV
ev_store_zone_set_pin(ev_store *s, int64_t id, CK_USER_TYPE which, const char *hash)
{
	if (which == CKU_SO)
		return by_id_text(s, ST_ZONE_SET_SO_PIN, id, hash, "zone set pin");
	if (which == CKU_USER)
		return by_id_text(s, ST_ZONE_SET_USER_PIN, id, hash, "zone set pin");
	ev_error("store: zone set pin: invalid user type %lu", (unsigned long)which);
	return CKR_DEVICE_ERROR;
}

CK_RV
ev_store_zone_set_fails(ev_store *s, int64_t id, CK_USER_TYPE which, unsigned fails)
{
	if (which == CKU_SO)
		return by_id_int(s, ST_ZONE_SET_SO_FAILS, id, fails, "zone set fails");
	if (which == CKU_USER)
		return by_id_int(s, ST_ZONE_SET_USER_FAILS, id, fails, "zone set fails");
	ev_error("store: zone set fails: invalid user type %lu", (unsigned long)which);
	return CKR_DEVICE_ERROR;
}

CK_RV
ev_store_zone_add_fail(ev_store *s, int64_t id, CK_USER_TYPE which, unsigned *fails)
{
	enum st_id add_id, get_id;
	sqlite3_stmt *st = NULL;
	int own = 0, rc;
	CK_RV rv;

	if (which == CKU_SO) {
		add_id = ST_ZONE_ADD_SO_FAIL;
		get_id = ST_ZONE_GET_SO_FAILS;
	} else if (which == CKU_USER) {
		add_id = ST_ZONE_ADD_USER_FAIL;
		get_id = ST_ZONE_GET_USER_FAILS;
	} else {
		ev_error("store: zone add fail: invalid user type %lu", (unsigned long)which);
		return CKR_DEVICE_ERROR;
	}
	/* Increment and read back under one write lock: no other process's count is lost. */
	rv = op_begin(s, &own);
	if (rv != CKR_OK)
		return rv;
	rv = by_id(s, add_id, id, "zone add fail");
	if (rv != CKR_OK)
		goto out;
	st = stmt(s, get_id);
	if (st == NULL) {
		rv = CKR_DEVICE_ERROR;
		goto out;
	}
	rc = sqlite3_bind_int64(st, 1, id);
	if (rc != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
		rv = db_error(s, "zone add fail");
		goto out;
	}
	*fails = (unsigned)sqlite3_column_int64(st, 0);
out:
	done(st);
	return op_end(s, own, rv);
}

CK_RV
ev_store_zone_revoke(ev_store *s, int64_t id, int64_t when)
{
	sqlite3_stmt *st = NULL;
	int own = 0, rc;
	CK_RV rv;

	/* 0 means "not revoked": a zone revoked at 0 would look untouched. */
	if (when < 1) {
		ev_error("store: zone revoke: invalid time %lld", (long long)when);
		return CKR_DEVICE_ERROR;
	}
	rv = op_begin(s, &own);
	if (rv != CKR_OK)
		return rv;
	rv = by_id_int(s, ST_ZONE_REVOKE, id, when, "zone revoke");
	if (rv == EVR_NOT_FOUND) {
		/* Nothing updated: absent, or revoked before (then nothing changes). */
		st = stmt(s, ST_ZONE_REVOKED);
		if (st == NULL) {
			rv = CKR_DEVICE_ERROR;
			goto out;
		}
		if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK) {
			rv = db_error(s, "zone revoke");
			goto out;
		}
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			rv = CKR_OK;
		else if (rc == SQLITE_DONE)
			rv = EVR_NOT_FOUND;
		else
			rv = db_error(s, "zone revoke");
		goto out;
	}
	if (rv != CKR_OK)
		goto out;
	/* Attributes go with the objects: ON DELETE CASCADE; secure_delete overwrites them. */
	st = stmt(s, ST_OBJ_DELETE_ZONE);
	if (st == NULL) {
		rv = CKR_DEVICE_ERROR;
		goto out;
	}
	if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE)
		rv = db_error(s, "zone revoke");
out:
	done(st);
	return op_end(s, own, rv);
}

CK_RV
ev_store_zone_set_sealed(ev_store *s, int64_t id, const unsigned char *blob, size_t len)
{
	sqlite3_stmt *st;
	int rc;

	/* An empty sealed key is a revoked zone's: never set one this way. */
	if (blob == NULL || len == 0) {
		ev_error("store: zone set sealed: empty key");
		return CKR_DEVICE_ERROR;
	}
	st = stmt(s, ST_ZONE_SET_SEALED);
	if (st == NULL)
		return CKR_DEVICE_ERROR;
	rc = sqlite3_bind_int64(st, 1, id);
	if (rc == SQLITE_OK)
		rc = bind_bytes(st, 2, blob, len);
	return finish_one(s, st, rc, "zone set sealed");
}

CK_RV
ev_store_zone_set_so_sealed(ev_store *s, int64_t id, const unsigned char *blob, size_t len)
{
	sqlite3_stmt *st;
	int rc;

	if (blob != NULL && len == 0) {
		ev_error("store: zone set SO copy: empty key");
		return CKR_DEVICE_ERROR;
	}
	st = stmt(s, ST_ZONE_SET_SO_SEALED);
	if (st == NULL)
		return CKR_DEVICE_ERROR;
	rc = sqlite3_bind_int64(st, 1, id);
	if (rc == SQLITE_OK)
		rc = blob != NULL ? bind_bytes(st, 2, blob, len) : sqlite3_bind_null(st, 2);
	return finish_one(s, st, rc, "zone set SO copy");
}

CK_RV
ev_store_zone_delete(ev_store *s, int64_t id)
{
	/* Objects and their attributes go with it: ON DELETE CASCADE. */
	return by_id(s, ST_ZONE_DELETE, id, "zone delete");
}

void
ev_obj_rec_clear(ev_obj_rec *o)
{
	if (o == NULL)
		return;
	free(o->wrapped);
	ev_attrs_free(o->attrs);
	memset(o, 0, sizeof(*o));
}

/*
 * The indexed columns of an object, taken from its attributes. Label and
 * CKA_ID are NULL when absent and a zero-length BLOB when empty. Class and
 * privacy are "unknown" (has_* = 0) when absent, so that the caller can
 * fall back; a malformed CKA_PRIVATE counts as private, the safe side.
 * A NULL list is an object without attributes.
 */
struct obj_cols {
	int has_class;
	CK_ULONG cls;
	int has_key_type;
	CK_ULONG key_type;
	const CK_ATTRIBUTE *label;
	const CK_ATTRIBUTE *ckid;
	int has_private;
	int private;
};

static void
obj_cols_from(const ev_attrs *a, struct obj_cols *c)
{
	CK_BBOOL b;
	CK_RV rv;

	memset(c, 0, sizeof(*c));
	if (a == NULL)
		return;
	c->has_class = ev_attrs_ulong(a, CKA_CLASS, &c->cls) == CKR_OK;
	c->has_key_type = ev_attrs_ulong(a, CKA_KEY_TYPE, &c->key_type) == CKR_OK;
	c->label = ev_attrs_get(a, CKA_LABEL);
	c->ckid = ev_attrs_get(a, CKA_ID);
	rv = ev_attrs_bool(a, CKA_PRIVATE, &b);
	if (rv == CKR_OK) {
		c->has_private = 1;
		c->private = b != CK_FALSE;
	} else if (rv != EVR_NOT_FOUND) {
		c->has_private = 1;
		c->private = 1;
	}
}

static int
bind_attr_or_null(sqlite3_stmt *st, int i, const CK_ATTRIBUTE *at)
{
	if (at == NULL)
		return sqlite3_bind_null(st, i);
	return bind_bytes(st, i, at->pValue, at->ulValueLen);
}

/* Write every attribute of a as rows of object id (which has none yet). */
static CK_RV
insert_attrs(ev_store *s, int64_t id, CK_OBJECT_CLASS cls, const ev_attrs *a)
{
	sqlite3_stmt *st = stmt(s, ST_ATTR_INSERT);
	size_t i;
	CK_RV rv = CKR_OK;

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	for (i = 0; a != NULL && i < a->n; i++) {
		const CK_ATTRIBUTE *at = &a->v[i];

		/* Key material never reaches the disk in the clear, whatever the caller did. */
		if (ev_attr_is_secret(cls, at->type)) {
			ev_error("store: refusing to store secret attribute 0x%lx",
				 (unsigned long)at->type);
			rv = CKR_DEVICE_ERROR;
			break;
		}
		/* Types are CK_ULONG; stored as their 64-bit pattern, read back the same way. */
		if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK ||
		    sqlite3_bind_int64(st, 2, (sqlite3_int64)(uint64_t)at->type) != SQLITE_OK ||
		    bind_bytes(st, 3, at->pValue, at->ulValueLen) != SQLITE_OK ||
		    sqlite3_step(st) != SQLITE_DONE) {
			rv = db_error(s, "attribute insert");
			break;
		}
		done(st);
	}
	done(st);
	return rv;
}

CK_RV
ev_store_obj_insert(ev_store *s, ev_obj_rec *o)
{
	sqlite3_stmt *st;
	struct obj_cols c;
	CK_OBJECT_CLASS cls;
	int64_t id = 0, created;
	int own = 0;
	CK_RV rv;

	obj_cols_from(o->attrs, &c);
	cls = c.has_class ? c.cls : o->cls;
	created = o->created != 0 ? o->created : (int64_t)time(NULL);
	rv = op_begin(s, &own);
	if (rv != CKR_OK)
		return rv;
	st = stmt(s, ST_OBJ_INSERT);
	if (st == NULL) {
		rv = CKR_DEVICE_ERROR;
		goto out;
	}
	if (sqlite3_bind_int64(st, 1, o->zone) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, (sqlite3_int64)(uint64_t)cls) != SQLITE_OK ||
	    (c.has_key_type ? sqlite3_bind_int64(st, 3, (sqlite3_int64)(uint64_t)c.key_type)
			    : sqlite3_bind_null(st, 3)) != SQLITE_OK ||
	    bind_attr_or_null(st, 4, c.label) != SQLITE_OK ||
	    bind_attr_or_null(st, 5, c.ckid) != SQLITE_OK ||
	    sqlite3_bind_int(st, 6, c.has_private ? c.private : o->private != 0) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 7, o->generation) != SQLITE_OK ||
	    (o->wrapped != NULL ? bind_bytes(st, 8, o->wrapped, o->wrapped_len)
				: sqlite3_bind_null(st, 8)) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 9, o->origin) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 10, o->previous) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 11, created) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 12, o->retired) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 13, o->destroy_at) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE) {
		rv = db_error(s, "object insert");
		goto out;
	}
	id = sqlite3_last_insert_rowid(s->db);
	rv = insert_attrs(s, id, cls, o->attrs);
out:
	done(st);
	rv = op_end(s, own, rv);
	if (rv == CKR_OK) {
		o->id = id;
		o->created = created;
	}
	return rv;
}

CK_RV
ev_store_obj_set_wrapped(ev_store *s, int64_t id, const unsigned char *blob, size_t len)
{
	sqlite3_stmt *st = stmt(s, ST_OBJ_SET_WRAPPED);
	CK_RV rv = CKR_OK;
	int rc;

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	rc = sqlite3_bind_int64(st, 1, id);
	if (rc == SQLITE_OK)
		rc = blob != NULL ? bind_bytes(st, 2, blob, len) : sqlite3_bind_null(st, 2);
	if (rc != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE)
		rv = db_error(s, "object set wrapped");
	else if (sqlite3_changes(s->db) == 0)
		rv = EVR_NOT_FOUND;
	done(st);
	return rv;
}

CK_RV
ev_store_obj_set_attrs(ev_store *s, int64_t id, const ev_attrs *attrs)
{
	sqlite3_stmt *st = NULL;
	struct obj_cols c;
	CK_OBJECT_CLASS cls = 0;
	int own = 0;
	CK_RV rv;

	obj_cols_from(attrs, &c);
	rv = op_begin(s, &own);
	if (rv != CKR_OK)
		return rv;
	st = stmt(s, ST_OBJ_SET_COLUMNS);
	if (st == NULL) {
		rv = CKR_DEVICE_ERROR;
		goto out;
	}
	if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK ||
	    (c.has_class ? sqlite3_bind_int64(st, 2, (sqlite3_int64)(uint64_t)c.cls)
			 : sqlite3_bind_null(st, 2)) != SQLITE_OK ||
	    (c.has_key_type ? sqlite3_bind_int64(st, 3, (sqlite3_int64)(uint64_t)c.key_type)
			    : sqlite3_bind_null(st, 3)) != SQLITE_OK ||
	    bind_attr_or_null(st, 4, c.label) != SQLITE_OK ||
	    bind_attr_or_null(st, 5, c.ckid) != SQLITE_OK ||
	    (c.has_private ? sqlite3_bind_int(st, 6, c.private) : sqlite3_bind_null(st, 6)) !=
		SQLITE_OK) {
		rv = db_error(s, "object set attributes");
		goto out;
	}
	if (sqlite3_step(st) != SQLITE_DONE) {
		rv = db_error(s, "object set attributes");
		goto out;
	}
	if (sqlite3_changes(s->db) == 0) {
		rv = EVR_NOT_FOUND;
		goto out;
	}
	done(st);
	/* The class the object ends up with decides which attributes are secret. */
	if (c.has_class) {
		cls = c.cls;
	} else {
		st = stmt(s, ST_OBJ_CLASS);
		if (st == NULL) {
			rv = CKR_DEVICE_ERROR;
			goto out;
		}
		if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
			rv = db_error(s, "object set attributes");
			goto out;
		}
		cls = (CK_OBJECT_CLASS)(uint64_t)sqlite3_column_int64(st, 0);
	}
	done(st);
	st = stmt(s, ST_ATTR_DELETE_ALL);
	if (st == NULL) {
		rv = CKR_DEVICE_ERROR;
		goto out;
	}
	if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE) {
		rv = db_error(s, "object set attributes");
		goto out;
	}
	done(st);
	st = NULL;
	rv = insert_attrs(s, id, cls, attrs);
out:
	done(st);
	return op_end(s, own, rv);
}

CK_RV
ev_store_obj_get(ev_store *s, int64_t id, ev_obj_rec *o)
{
	sqlite3_stmt *st = stmt(s, ST_OBJ_GET);
	CK_ATTRIBUTE_TYPE type;
	const void *val;
	CK_ULONG vlen;
	int rc, first = 1;
	CK_RV rv = CKR_OK;

	memset(o, 0, sizeof(*o));
	if (st == NULL)
		return CKR_DEVICE_ERROR;
	o->attrs = ev_attrs_new();
	if (o->attrs == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK) {
		rv = db_error(s, "object get");
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (first) {
			first = 0;
			o->id = id;
			o->zone = sqlite3_column_int64(st, 0);
			o->cls = (CK_OBJECT_CLASS)(uint64_t)sqlite3_column_int64(st, 1);
			o->private = sqlite3_column_int(st, 2) != 0;
			o->generation = sqlite3_column_int64(st, 3);
			if (sqlite3_column_type(st, 4) != SQLITE_NULL) {
				rv = column_dup(st, 4, &o->wrapped, &o->wrapped_len);
				if (rv != CKR_OK)
					goto out;
			}
			o->origin = sqlite3_column_int64(st, 5);
			o->previous = sqlite3_column_int64(st, 6);
			o->created = sqlite3_column_int64(st, 7);
			o->retired = sqlite3_column_int64(st, 8);
			o->destroy_at = sqlite3_column_int64(st, 9);
		}
		/* No attribute row: the LEFT JOIN gives NULL for a.type. */
		if (sqlite3_column_type(st, 10) == SQLITE_NULL)
			continue;
		/* The value first, then its length: the order SQLite documents. */
		type = (CK_ATTRIBUTE_TYPE)(uint64_t)sqlite3_column_int64(st, 10);
		val = sqlite3_column_blob(st, 11);
		vlen = (CK_ULONG)sqlite3_column_bytes(st, 11);
		rv = ev_attrs_set(o->attrs, type, val, vlen);
		if (rv != CKR_OK) {
			if (rv != CKR_HOST_MEMORY) {
				ev_error("store: object get: bad attribute row");
				rv = CKR_DEVICE_ERROR;
			}
			goto out;
		}
	}
	if (rc != SQLITE_DONE)
		rv = db_error(s, "object get");
	else if (first)
		rv = EVR_NOT_FOUND;
out:
	done(st);
	if (rv != CKR_OK)
		ev_obj_rec_clear(o);
	return rv;
}

CK_RV
ev_store_obj_delete(ev_store *s, int64_t id)
{
	/* The attribute rows go with it: ON DELETE CASCADE. */
	return by_id(s, ST_OBJ_DELETE, id, "object delete");
}

/* The search statement for a combination of filters, built and prepared once per connection. */
static sqlite3_stmt *
find_stmt(sqlite3 *db, sqlite3_stmt **cache, unsigned variant)
{
	const char *cls;
	char sql[256];
	int rc;

	if (cache[variant] != NULL)
		return cache[variant];
	/*
	 * Constant fragments only; fixed parameter numbers whichever are
	 * present. With a label or CKA_ID, the unary + keeps the planner off
	 * the (zone, class) index: without statistics it rates both alike,
	 * but a class matches many objects and a label or id a few. The
	 * retired filter always has it: "retired = 0" alone would draw the
	 * planner to the (retired, destroy_at) index, which holds every
	 * current object of every zone under 0.
	 *
	 * No ORDER BY: with one, a search by label would sort, since the
	 * index that answers it alone orders its entries by retired,
	 * private, class and key type before the id. find_on() sorts.
	 */
	if (!(variant & FIND_CLASS))
		cls = "";
	else if (variant & (FIND_LABEL | FIND_CKID))
		cls = " AND +class = ?2";
	else
		cls = " AND class = ?2";
	snprintf(sql, sizeof(sql), "SELECT id FROM objects WHERE zone = ?1%s%s%s%s%s%s",
		 (variant & FIND_PRIVATE) ? "" : " AND private = 0", cls,
		 (variant & FIND_KEY_TYPE) ? " AND key_type = ?3" : "",
		 (variant & FIND_LABEL) ? " AND label = ?4" : "",
		 (variant & FIND_CKID) ? " AND ckid = ?5" : "",
		 (variant & FIND_GENERATION) ? " AND generation = ?6" : " AND +retired = 0");
	rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &cache[variant], NULL);
	if (rc != SQLITE_OK) {
		ev_error("store: prepare find %u: %s", variant, sqlite3_errmsg(db));
		cache[variant] = NULL;
	}
	return cache[variant];
}

static int
cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Ascending, as the contract says; most searches find one id, or ids already in order. */
static void
sort_ids(int64_t *ids, size_t n)
{
	size_t i;

	for (i = 1; i < n; i++)
		if (ids[i - 1] > ids[i]) {
			qsort(ids, n, sizeof(*ids), cmp_id);
			return;
		}
}

/* ev_store_obj_find() on a connection and its statement cache. */
static CK_RV
find_on(sqlite3 *db, sqlite3_stmt **cache, const ev_obj_query *q, int64_t **ids, size_t *n)
{
	sqlite3_stmt *st;
	unsigned variant = 0;
	int rc;
	CK_RV rv;

	*ids = NULL;
	*n = 0;
	if (q->include_private)
		variant |= FIND_PRIVATE;
	if (q->has_class)
		variant |= FIND_CLASS;
	if (q->has_key_type)
		variant |= FIND_KEY_TYPE;
	if (q->has_label)
		variant |= FIND_LABEL;
	if (q->has_ckid)
		variant |= FIND_CKID;
	if (q->has_generation)
		variant |= FIND_GENERATION;
	st = find_stmt(db, cache, variant);
	if (st == NULL)
		return CKR_DEVICE_ERROR;
	rc = sqlite3_bind_int64(st, 1, q->zone);
	if (rc == SQLITE_OK && q->has_class)
		rc = sqlite3_bind_int64(st, 2, (sqlite3_int64)(uint64_t)q->cls);
	if (rc == SQLITE_OK && q->has_key_type)
		rc = sqlite3_bind_int64(st, 3, (sqlite3_int64)(uint64_t)q->key_type);
	if (rc == SQLITE_OK && q->has_label)
		rc = bind_bytes(st, 4, q->label, q->label_len);
	if (rc == SQLITE_OK && q->has_ckid)
		rc = bind_bytes(st, 5, q->ckid, q->ckid_len);
	if (rc == SQLITE_OK && q->has_generation)
		rc = sqlite3_bind_int64(st, 6, q->generation);
	if (rc != SQLITE_OK) {
		rv = db_error_on(db, "object find");
		goto out;
	}
	rv = collect_ids_on(db, st, "object find", ids, n);
	if (rv == CKR_OK)
		sort_ids(*ids, *n);
out:
	done(st);
	return rv;
}

CK_RV
ev_store_obj_find(ev_store *s, const ev_obj_query *q, int64_t **ids, size_t *n)
{
	return find_on(s->db, s->find_st, q, ids, n);
}

CK_RV
ev_store_obj_count(ev_store *s, int64_t zone, int include_private, CK_ULONG *count)
{
	sqlite3_stmt *st = stmt(s, include_private ? ST_OBJ_COUNT_ALL : ST_OBJ_COUNT_PUBLIC);
	CK_RV rv = CKR_OK;

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	if (sqlite3_bind_int64(st, 1, zone) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW)
		rv = db_error(s, "object count");
	else
		*count = (CK_ULONG)sqlite3_column_int64(st, 0);
	done(st);
	return rv;
}

CK_RV
ev_store_obj_find_keys(ev_store *s, int64_t zone, const void *label, size_t label_len,
		       const void *ckid, size_t ckid_len, int64_t generation, int64_t **ids,
		       size_t *n)
{
	sqlite3_stmt *st = stmt(s, ST_OBJ_FIND_KEYS);
	CK_RV rv;

	*ids = NULL;
	*n = 0;
	if (st == NULL)
		return CKR_DEVICE_ERROR;
	if (sqlite3_bind_int64(st, 1, zone) != SQLITE_OK ||
	    bind_bytes(st, 2, label, label_len) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 3, (sqlite3_int64)(uint64_t)CKO_PRIVATE_KEY) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 4, (sqlite3_int64)(uint64_t)CKO_PUBLIC_KEY) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 5, (sqlite3_int64)(uint64_t)CKO_SECRET_KEY) != SQLITE_OK ||
	    (ckid != NULL ? bind_bytes(st, 6, ckid, ckid_len) : sqlite3_bind_null(st, 6)) !=
		SQLITE_OK ||
	    sqlite3_bind_int64(st, 7, generation) != SQLITE_OK) {
		rv = db_error(s, "object find keys");
		goto out;
	}
	rv = collect_ids(s, st, "object find keys", ids, n);
out:
	done(st);
	return rv;
}

/*
 * Run a statement whose parameters are all integers (args[0] is ?1, ...)
 * and collect the ids it answers.
 */
static CK_RV
ids_by_ints(ev_store *s, enum st_id id_st, const int64_t *args, int nargs, const char *what,
	    int64_t **ids, size_t *n)
{
	sqlite3_stmt *st = stmt(s, id_st);
	CK_RV rv;
	int i;

	*ids = NULL;
	*n = 0;
	if (st == NULL)
		return CKR_DEVICE_ERROR;
	for (i = 0; i < nargs; i++) {
		if (sqlite3_bind_int64(st, i + 1, args[i]) != SQLITE_OK) {
			rv = db_error(s, what);
			goto out;
		}
	}
	rv = collect_ids(s, st, what, ids, n);
out:
	done(st);
	return rv;
}

static CK_RV
retire_by(ev_store *s, enum st_id which, int64_t id, int64_t when, int64_t destroy_at)
{
	sqlite3_stmt *st;
	int rc;

	/* 0 means "current": an object retired at 0 would look untouched. */
	if (when < 1 || destroy_at < 0) {
		ev_error("store: object retire: invalid time %lld / %lld", (long long)when,
			 (long long)destroy_at);
		return CKR_DEVICE_ERROR;
	}
	st = stmt(s, which);
	if (st == NULL)
		return CKR_DEVICE_ERROR;
	rc = sqlite3_bind_int64(st, 1, id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, when);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 3, destroy_at);
	return finish_one(s, st, rc, "object retire");
}

CK_RV
ev_store_obj_retire(ev_store *s, int64_t id, int64_t when, int64_t destroy_at)
{
	return retire_by(s, ST_OBJ_RETIRE, id, when, destroy_at);
}

CK_RV
ev_store_obj_retire_current(ev_store *s, int64_t id, int64_t when, int64_t destroy_at,
    int64_t *was)
{
	sqlite3_stmt *st;
	CK_RV rv;
	int rc;

	*was = 0;
	rv = retire_by(s, ST_OBJ_RETIRE_CURRENT, id, when, destroy_at);
	if (rv != EVR_NOT_FOUND)
		return rv;
	/* Nothing changed: absent, or retired already (when, is said). */
	st = stmt(s, ST_OBJ_RETIRED_AT);
	if (st == NULL)
		return CKR_DEVICE_ERROR;
	rc = sqlite3_bind_int64(st, 1, id);
	if (rc != SQLITE_OK)
		rv = db_error(s, "object retired at");
	else if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		*was = sqlite3_column_int64(st, 0);
	else if (rc != SQLITE_DONE)
		rv = db_error(s, "object retired at");
	done(st);
	return rv == EVR_NOT_FOUND && *was != 0 ? CKR_OK : rv;
}

CK_RV
ev_store_obj_copies(ev_store *s, int64_t id, int64_t **ids, size_t *n)
{
	/* Origin 0 marks "not a copy": it names no source. */
	if (id < 1) {
		*ids = NULL;
		*n = 0;
		return CKR_OK;
	}
	return ids_by_ints(s, ST_OBJ_COPIES, &id, 1, "object copies", ids, n);
}

CK_RV
ev_store_obj_rotatable(ev_store *s, int64_t zone, int64_t made_before, int64_t **ids, size_t *n)
{
	const int64_t args[] = {
	    zone,
	    (int64_t)(uint64_t)CKO_PRIVATE_KEY,
	    (int64_t)(uint64_t)CKO_SECRET_KEY,
	    made_before,
	};

	return ids_by_ints(s, ST_OBJ_ROTATABLE, args, (int)EV_ARRAY_SIZE(args), "object rotatable",
			   ids, n);
}

CK_RV
ev_store_obj_expired(ev_store *s, int64_t now, int64_t **ids, size_t *n)
{
	return ids_by_ints(s, ST_OBJ_EXPIRED, &now, 1, "object expired", ids, n);
}

CK_RV
ev_store_obj_next_destroy(ev_store *s, int64_t *when)
{
	sqlite3_stmt *st = stmt(s, ST_OBJ_NEXT_DESTROY);
	CK_RV rv = CKR_OK;

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	if (sqlite3_step(st) == SQLITE_ROW)
		*when = sqlite3_column_int64(st, 0);
	else
		rv = db_error(s, "object next destroy");
	done(st);
	return rv;
}

CK_RV
ev_store_obj_wrapped_ids(ev_store *s, int64_t zone, int64_t **ids, size_t *n)
{
	return ids_by_ints(s, ST_OBJ_WRAPPED_IDS, &zone, 1, "object wrapped ids", ids, n);
}

CK_RV
ev_store_obj_key_ids(ev_store *s, int64_t zone, int64_t **ids, size_t *n)
{
	const int64_t args[] = {
	    zone,
	    (int64_t)CKO_PRIVATE_KEY,
	    (int64_t)CKO_PUBLIC_KEY,
	    (int64_t)CKO_SECRET_KEY,
	};

	return ids_by_ints(s, ST_OBJ_KEY_IDS, args, (int)EV_ARRAY_SIZE(args), "object key ids", ids,
			   n);
}

CK_RV
ev_store_change_add(ev_store *s, ev_change_kind kind, int64_t zone, int64_t object)
{
	sqlite3_stmt *st;
	CK_RV rv = CKR_OK;

	if (kind < EV_CHANGE_ZONE_CREATED || kind > EV_CHANGE_ZONE_RESEALED) {
		ev_error("store: change add: invalid kind %d", (int)kind);
		return CKR_DEVICE_ERROR;
	}
	st = stmt(s, ST_CHANGE_ADD);
	if (st == NULL)
		return CKR_DEVICE_ERROR;
	if (sqlite3_bind_int(st, 1, (int)kind) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, zone) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 3, object) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL)) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE)
		rv = db_error(s, "change add");
	done(st);
	return rv;
}

CK_RV
ev_store_change_last(ev_store *s, int64_t *seq)
{
	sqlite3_stmt *st = stmt(s, ST_CHANGE_LAST);
	CK_RV rv = CKR_OK;

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	if (sqlite3_step(st) == SQLITE_ROW)
		*seq = sqlite3_column_int64(st, 0);
	else
		rv = db_error(s, "change last");
	done(st);
	return rv;
}

CK_RV
ev_store_change_since(ev_store *s, int64_t after, size_t max, ev_change **v, size_t *n)
{
	sqlite3_stmt *st;
	ev_change *cv = NULL, *ncv;
	size_t cnt = 0, cap = 0;
	int rc;
	CK_RV rv = CKR_OK;

	*v = NULL;
	*n = 0;
	if (max == 0)
		return CKR_OK;
	st = stmt(s, ST_CHANGE_SINCE);
	if (st == NULL)
		return CKR_DEVICE_ERROR;
	if (sqlite3_bind_int64(st, 1, after) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, max > (size_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)max) !=
		SQLITE_OK) {
		rv = db_error(s, "change since");
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		ncv = grow(cv, &cap, cnt, sizeof(*cv));
		if (ncv == NULL) {
			rv = CKR_HOST_MEMORY;
			goto out;
		}
		cv = ncv;
		cv[cnt].seq = sqlite3_column_int64(st, 0);
		cv[cnt].kind = (ev_change_kind)sqlite3_column_int(st, 1);
		cv[cnt].zone = sqlite3_column_int64(st, 2);
		cv[cnt].object = sqlite3_column_int64(st, 3);
		cnt++;
	}
	if (rc != SQLITE_DONE)
		rv = db_error(s, "change since");
out:
	done(st);
	if (rv != CKR_OK) {
		free(cv);
		return rv;
	}
	*v = cv;
	*n = cnt;
	return CKR_OK;
}

/*
 * The audit logs: the revocation history (revlog, revoked) and the
 * attestation history (attestlog) share how rows are added, asked about
 * and listed.
 */

/*
 * Step an insert whose parameters were bound (bound: whether every bind
 * succeeded): *id is the new row's id. The statement is made idle.
 */
static CK_RV
insert_row(ev_store *s, sqlite3_stmt *st, int bound, const char *what, int64_t *id)
{
	CK_RV rv = CKR_OK;

	if (!bound || sqlite3_step(st) != SQLITE_DONE)
		rv = db_error(s, what);
	else
		*id = sqlite3_last_insert_rowid(s->db);
	done(st);
	return rv;
}

/*
 * Run a yes/no query with a 32-byte digest as ?1 (and zone as ?2 when it
 * is not NULL): *yes is whether column 0 of its one row is not 0.
 */
static CK_RV
digest_query(ev_store *s, enum st_id id, const unsigned char digest[32], const int64_t *zone,
    const char *what, int *yes)
{
	sqlite3_stmt *st = stmt(s, id);
	CK_RV rv = CKR_OK;

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	if (bind_bytes(st, 1, digest, 32) != SQLITE_OK ||
	    (zone != NULL && sqlite3_bind_int64(st, 2, *zone) != SQLITE_OK) ||
	    sqlite3_step(st) != SQLITE_ROW)
		rv = db_error(s, what);
	else
		*yes = sqlite3_column_int(st, 0) != 0;
	done(st);
	return rv;
}

/* Column col as a 32-byte digest; CKR_DEVICE_ERROR (logged: row id of log what) otherwise. */
static CK_RV
column_digest(sqlite3_stmt *st, int col, unsigned char out[32], const char *what, int64_t id)
{
	/* The value first, then its length: the order SQLite documents. */
	const void *d = sqlite3_column_blob(st, col);

	if (d == NULL || sqlite3_column_bytes(st, col) != 32) {
		ev_error("store: %s %lld: bad digest", what, (long long)id);
		return CKR_DEVICE_ERROR;
	}
	memcpy(out, d, 32);
	return CKR_OK;
}

/*
 * Columns col and col + 1 as a label and a CKA_ID, each optional: NULL
 * stays NULL, an empty value is a one-byte allocation of length 0.
 */
static CK_RV
column_label_ckid(sqlite3_stmt *st, int col, unsigned char **label, size_t *label_len,
    unsigned char **ckid, size_t *ckid_len)
{
	CK_RV rv = CKR_OK;

	if (sqlite3_column_type(st, col) != SQLITE_NULL)
		rv = column_dup(st, col, label, label_len);
	if (rv == CKR_OK && sqlite3_column_type(st, col + 1) != SQLITE_NULL)
		rv = column_dup(st, col + 1, ckid, ckid_len);
	return rv;
}

/* Fill a zeroed record from the statement's current row. */
typedef CK_RV row_reader(sqlite3_stmt *st, void *rec);

/* Free what a record holds (as its type's _clear does). */
typedef void rec_clearer(void *rec);

/*
 * Every row of statement id, oldest first, as records of rec_size bytes
 * read by read_row: *v malloc'ed (NULL when *n == 0). On an error nothing
 * is returned: the records read are cleared with clear and freed.
 */
static CK_RV
list_rows(ev_store *s, enum st_id id, size_t rec_size, row_reader *read_row, rec_clearer *clear,
    const char *what, void **v, size_t *n)
{
	sqlite3_stmt *st = stmt(s, id);
	unsigned char *vv = NULL, *nv, *r;
	size_t cnt = 0, cap = 0, i;
	int rc;
	CK_RV rv = CKR_OK;

	*v = NULL;
	*n = 0;
	if (st == NULL)
		return CKR_DEVICE_ERROR;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		nv = grow(vv, &cap, cnt, rec_size);
		if (nv == NULL) {
			rv = CKR_HOST_MEMORY;
			goto out;
		}
		vv = nv;
		r = vv + cnt++ * rec_size;
		memset(r, 0, rec_size);
		rv = read_row(st, r);
		if (rv != CKR_OK)
			goto out;
	}
	if (rc != SQLITE_DONE)
		rv = db_error(s, what);
out:
	done(st);
	if (rv != CKR_OK) {
		for (i = 0; i < cnt; i++)
			clear(vv + i * rec_size);
		free(vv);
		return rv;
	}
	*v = vv;
	*n = cnt;
	return CKR_OK;
}

void
ev_revlog_rec_clear(ev_revlog_rec *r)
{
	if (r == NULL)
		return;
	free(r->source);
	free(r->detail);
	memset(r, 0, sizeof(*r));
}

CK_RV
ev_store_revlog_add(ev_store *s, ev_revlog_rec *r)
{
	sqlite3_stmt *st = stmt(s, ST_REVLOG_ADD);
	int bound;

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	/* A NULL source is refused by the NOT NULL constraint. */
	bound = sqlite3_bind_int64(st, 1, r->time) == SQLITE_OK &&
	    bind_text_or_null(st, 2, r->source) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 3, r->sequence) == SQLITE_OK &&
	    bind_bytes(st, 4, r->digest, sizeof(r->digest)) == SQLITE_OK &&
	    sqlite3_bind_int(st, 5, r->applied != 0) == SQLITE_OK &&
	    bind_text_or_null(st, 6, r->detail) == SQLITE_OK;
	return insert_row(s, st, bound, "revocation log add", &r->id);
}

CK_RV
ev_store_entry_applied(ev_store *s, const unsigned char digest[32], int *applied)
{
	return digest_query(s, ST_ENTRY_APPLIED, digest, NULL, "revocation entry applied", applied);
}

CK_RV
ev_store_entry_add(ev_store *s, const unsigned char digest[32], int64_t log)
{
	sqlite3_stmt *st = stmt(s, ST_ENTRY_ADD);
	CK_RV rv = CKR_OK;

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	if (bind_bytes(st, 1, digest, 32) != SQLITE_OK || sqlite3_bind_int64(st, 2, log) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE)
		rv = db_error(s, "revocation entry add");
	done(st);
	return rv;
}

CK_RV
ev_store_revlog_seen(ev_store *s, const unsigned char digest[32], int *seen)
{
	return digest_query(s, ST_REVLOG_SEEN, digest, NULL, "revocation log seen", seen);
}

static CK_RV
read_revlog(sqlite3_stmt *st, void *rec)
{
	ev_revlog_rec *r = rec;
	CK_RV rv;

	r->id = sqlite3_column_int64(st, 0);
	r->time = sqlite3_column_int64(st, 1);
	rv = column_strdup(st, 2, &r->source);
	if (rv != CKR_OK)
		return rv;
	r->sequence = sqlite3_column_int64(st, 3);
	rv = column_digest(st, 4, r->digest, "revocation log", r->id);
	if (rv != CKR_OK)
		return rv;
	r->applied = sqlite3_column_int(st, 5) != 0;
	return column_strdup(st, 6, &r->detail);
}

static void
clear_revlog(void *rec)
{
	ev_revlog_rec_clear(rec);
}

CK_RV
ev_store_revlog_list(ev_store *s, ev_revlog_rec **v, size_t *n)
{
	void *vv;
	CK_RV rv = list_rows(s, ST_REVLOG_LIST, sizeof(**v), read_revlog, clear_revlog,
	    "revocation log list", &vv, n);

	*v = vv;
	return rv;
}

void
ev_revoked_rec_clear(ev_revoked_rec *r)
{
	if (r == NULL)
		return;
	free(r->label);
	free(r->ckid);
	free(r->reason);
	memset(r, 0, sizeof(*r));
}

CK_RV
ev_store_revoked_add(ev_store *s, ev_revoked_rec *r)
{
	sqlite3_stmt *st = stmt(s, ST_REVOKED_ADD);
	int bound;

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	/* An unknown log is refused by its foreign key, a NULL reason by NOT NULL. */
	bound = sqlite3_bind_int64(st, 1, r->time) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 2, r->log) == SQLITE_OK &&
	    sqlite3_bind_int(st, 3, r->kind) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 4, r->zone) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 5, r->object) == SQLITE_OK &&
	    bind_bytes_or_null(st, 6, r->label, r->label_len) == SQLITE_OK &&
	    bind_bytes_or_null(st, 7, r->ckid, r->ckid_len) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 8, r->generation) == SQLITE_OK &&
	    bind_text_or_null(st, 9, r->reason) == SQLITE_OK;
	return insert_row(s, st, bound, "revoked add", &r->id);
}

static CK_RV
read_revoked(sqlite3_stmt *st, void *rec)
{
	ev_revoked_rec *r = rec;
	CK_RV rv;

	r->id = sqlite3_column_int64(st, 0);
	r->time = sqlite3_column_int64(st, 1);
	r->log = sqlite3_column_int64(st, 2);
	r->kind = sqlite3_column_int(st, 3);
	r->zone = sqlite3_column_int64(st, 4);
	r->object = sqlite3_column_int64(st, 5);
	rv = column_label_ckid(st, 6, &r->label, &r->label_len, &r->ckid, &r->ckid_len);
	if (rv != CKR_OK)
		return rv;
	r->generation = sqlite3_column_int64(st, 8);
	return column_strdup(st, 9, &r->reason);
}

static void
clear_revoked(void *rec)
{
	ev_revoked_rec_clear(rec);
}

CK_RV
ev_store_revoked_list(ev_store *s, ev_revoked_rec **v, size_t *n)
{
	void *vv;
	CK_RV rv = list_rows(s, ST_REVOKED_LIST, sizeof(**v), read_revoked, clear_revoked,
	    "revoked list", &vv, n);

	*v = vv;
	return rv;
}

void
ev_attestlog_rec_clear(ev_attestlog_rec *r)
{
	if (r == NULL)
		return;
	free(r->purpose);
	free(r->provider);
	free(r->reason);
	memset(r, 0, sizeof(*r));
}

CK_RV
ev_store_attestlog_add(ev_store *s, ev_attestlog_rec *r)
{
	sqlite3_stmt *st = stmt(s, ST_ATTESTLOG_ADD);
	int bound;

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	/* A NULL purpose is refused by the NOT NULL constraint. */
	bound = sqlite3_bind_int64(st, 1, r->time) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 2, r->zone) == SQLITE_OK &&
	    bind_text_or_null(st, 3, r->purpose) == SQLITE_OK &&
	    bind_text_or_null(st, 4, r->provider) == SQLITE_OK &&
	    sqlite3_bind_int(st, 5, r->accepted != 0) == SQLITE_OK &&
	    bind_bytes(st, 6, r->digest, sizeof(r->digest)) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 7, r->valid_until) == SQLITE_OK &&
	    bind_text_or_null(st, 8, r->reason) == SQLITE_OK;
	return insert_row(s, st, bound, "attestation log add", &r->id);
}

CK_RV
ev_store_attestlog_accepted(ev_store *s, int64_t zone, const unsigned char digest[32], int *found)
{
	return digest_query(s, ST_ATTESTLOG_ACCEPTED, digest, &zone, "attestation log accepted",
	    found);
}

static CK_RV
read_attestlog(sqlite3_stmt *st, void *rec)
{
	ev_attestlog_rec *r = rec;
	CK_RV rv;

	r->id = sqlite3_column_int64(st, 0);
	r->time = sqlite3_column_int64(st, 1);
	r->zone = sqlite3_column_int64(st, 2);
	rv = column_strdup(st, 3, &r->purpose);
	if (rv == CKR_OK)
		rv = column_strdup(st, 4, &r->provider);
	if (rv != CKR_OK)
		return rv;
	r->accepted = sqlite3_column_int(st, 5) != 0;
	rv = column_digest(st, 6, r->digest, "attestation log", r->id);
	if (rv != CKR_OK)
		return rv;
	r->valid_until = sqlite3_column_int64(st, 7);
	return column_strdup(st, 8, &r->reason);
}

static void
clear_attestlog(void *rec)
{
	ev_attestlog_rec_clear(rec);
}

CK_RV
ev_store_attestlog_list(ev_store *s, ev_attestlog_rec **v, size_t *n)
{
	void *vv;
	CK_RV rv = list_rows(s, ST_ATTESTLOG_LIST, sizeof(**v), read_attestlog, clear_attestlog,
	    "attestation log list", &vv, n);

	*v = vv;
	return rv;
}

void
ev_use_rec_clear(ev_use_rec *r)
{
	if (r == NULL)
		return;
	free(r->label);
	free(r->ckid);
	memset(r, 0, sizeof(*r));
}

CK_RV
ev_store_use_add(ev_store *s, const ev_use_rec *r)
{
	sqlite3_stmt *st = stmt(s, ST_USE_ADD);
	CK_RV rv = CKR_OK;
	int bound;

	if (st == NULL)
		return CKR_DEVICE_ERROR;
	bound = sqlite3_bind_int64(st, 1, r->object) == SQLITE_OK &&
	    sqlite3_bind_text(st, 2, r->op, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 3, r->zone) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 4, (sqlite3_int64)r->cls) == SQLITE_OK &&
	    bind_bytes_or_null(st, 5, r->label, r->label_len) == SQLITE_OK &&
	    bind_bytes_or_null(st, 6, r->ckid, r->ckid_len) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 7, r->generation) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 8, r->count) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 9, r->last_use) == SQLITE_OK;
	if (!bound || sqlite3_step(st) != SQLITE_DONE)
		rv = db_error(s, "use add");
	done(st);
	return rv;
}

static CK_RV
read_use(sqlite3_stmt *st, void *rec)
{
	ev_use_rec *r = rec;
	const unsigned char *op;
	CK_RV rv;

	r->object = sqlite3_column_int64(st, 0);
	op = sqlite3_column_text(st, 1);
	if (op == NULL)
		return CKR_HOST_MEMORY;
	snprintf(r->op, sizeof(r->op), "%s", (const char *)op);
	r->zone = sqlite3_column_int64(st, 2);
	r->cls = (CK_OBJECT_CLASS)sqlite3_column_int64(st, 3);
	rv = column_label_ckid(st, 4, &r->label, &r->label_len, &r->ckid, &r->ckid_len);
	if (rv != CKR_OK)
		return rv;
	r->generation = sqlite3_column_int64(st, 6);
	r->count = sqlite3_column_int64(st, 7);
	r->last_use = sqlite3_column_int64(st, 8);
	return CKR_OK;
}

static void
clear_use(void *rec)
{
	ev_use_rec_clear(rec);
}

CK_RV
ev_store_use_list(ev_store *s, ev_use_rec **v, size_t *n)
{
	void *vv;
	CK_RV rv = list_rows(s, ST_USE_LIST, sizeof(**v), read_use, clear_use, "use list", &vv, n);

	*v = vv;
	return rv;
}

/*
 * Shared readers (ev_store_obj_find_shared()).
 *
 * A search takes one of READERS connections, each under its own mutex,
 * so searches of different threads run in parallel with each other and
 * with the owner's writes: in WAL mode a reader neither waits for a
 * writer nor holds one up. A thread keeps to the reader it was first
 * given while that one is free, so with up to READERS threads no mutex
 * is contended. The connections see every transaction committed before
 * their statement starts, by this process or another, as the owner's
 * connection does.
 */

static void
reader_close(struct reader *r)
{
	size_t i;

	for (i = 0; i < EV_ARRAY_SIZE(r->find_st); i++) {
		(void)sqlite3_finalize(r->find_st[i]);
		r->find_st[i] = NULL;
	}
	if (r->db != NULL && sqlite3_close(r->db) != SQLITE_OK)
		ev_error("store: close reader: %s", sqlite3_errmsg(r->db));
	r->db = NULL;
	(void)pthread_mutex_destroy(&r->mu);
}

/* Open r's connection if it has none yet (r->mu held). */
static CK_RV
reader_open(ev_store *s, struct reader *r)
{
	struct stat sb;
	int rc;

	if (r->db != NULL)
		return CKR_OK;
	/*
	 * Read-write like the owner's, unless the owner's is read-only: a
	 * read-only connection to a WAL database may not set up the -shm
	 * file itself, and query_only keeps a read-write one to reading.
	 */
	rc = sqlite3_open_v2(s->path, &r->db,
	    (s->readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX,
	    NULL);
	/* The owner's file, not one put in its place since. */
	if (rc == SQLITE_OK &&
	    (stat(s->path, &sb) != 0 || sb.st_dev != s->dev || sb.st_ino != s->ino)) {
		ev_error("store: %s is no longer the file this store opened", s->path);
		(void)sqlite3_close(r->db);
		r->db = NULL;
		return CKR_DEVICE_ERROR;
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_extended_result_codes(r->db, 1);
	if (rc == SQLITE_OK)
		rc = sqlite3_busy_timeout(r->db, EV_BUSY_TIMEOUT_MS);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(r->db, "PRAGMA query_only = ON", NULL, NULL, NULL);
	/*
	 * Room for the search indexes of a large store (some 40 bytes a
	 * key: 4 MiB for 100,000), so a search reads no page from the
	 * file; filled only as far as searches go.
	 */
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(r->db, "PRAGMA cache_size = -4096", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		return CKR_OK;
	if (r->db == NULL)
		return CKR_HOST_MEMORY;
	ev_error("store: open reader %s: %s", s->path, sqlite3_errmsg(r->db));
	(void)sqlite3_close(r->db);
	r->db = NULL;
	return CKR_DEVICE_ERROR;
}

/* The reader a thread tries first: handed out in turn on the thread's first search. */
static _Thread_local unsigned reader_hint;
static _Thread_local int reader_hinted;
static atomic_uint reader_next;

/* A reader, locked: the thread's own when free, else any free one, else wait for its own. */
static struct reader *
reader_take(ev_store *s)
{
	size_t i, first;

	if (!reader_hinted) {
		reader_hint = atomic_fetch_add_explicit(&reader_next, 1, memory_order_relaxed);
		reader_hinted = 1;
	}
	first = reader_hint % s->nreaders;
	for (i = 0; i < s->nreaders; i++) {
		struct reader *r = &s->readers[(first + i) % s->nreaders];

		if (pthread_mutex_trylock(&r->mu) == 0)
			return r;
	}
	if (pthread_mutex_lock(&s->readers[first].mu) != 0)
		return NULL;
	return &s->readers[first];
}

CK_RV
ev_store_obj_find_shared(ev_store *s, const ev_obj_query *q, int64_t **ids, size_t *n)
{
	struct reader *r;
	CK_RV rv;

	*ids = NULL;
	*n = 0;
	r = s->nreaders > 0 ? reader_take(s) : NULL;
	if (r == NULL)
		return CKR_DEVICE_ERROR;
	rv = reader_open(s, r);
	if (rv == CKR_OK)
		rv = find_on(r->db, r->find_st, q, ids, n);
	(void)pthread_mutex_unlock(&r->mu);
	return rv;
}
