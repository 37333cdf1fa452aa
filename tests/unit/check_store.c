/*
 * Unit tests of the SQLite store (src/store.c). Each test makes its own
 * temporary store directory and removes it.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "attr.h"
#include "store.h"
#include "testutil.h"

static void
setup(void)
{
	tmpdir_make("ev_store");
}

/* The store directory of a test: a subdirectory, so CREATE has to make it. */
static const char *
store_dir(void)
{
	static char dir[300];

	snprintf(dir, sizeof(dir), "%s/store", tmpdir);
	return dir;
}

static ev_store *
open_store(unsigned flags)
{
	ev_store *s = NULL;
	char err[256];
	CK_RV rv;

	rv = ev_store_open(store_dir(), flags, &s, err, sizeof(err));
	ck_assert_msg(rv == CKR_OK, "open failed: 0x%lx %s", (unsigned long)rv, err);
	ck_assert_ptr_nonnull(s);
	return s;
}

static ev_store *
new_store(void)
{
	return open_store(EV_STORE_CREATE);
}

/* Run SQL on the store's file through a separate, plain connection. */
static void
raw_sql(const char *sql)
{
	char path[400];
	sqlite3 *db = NULL;
	char *msg = NULL;

	snprintf(path, sizeof(path), "%s/%s", store_dir(), EV_STORE_FILE);
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_busy_timeout(db, 5000), SQLITE_OK);
	ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", sql,
		      msg ? msg : "");
	sqlite3_free(msg);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
}

/* The single integer a query answers, through a separate connection. */
static long long
raw_int(const char *sql)
{
	char path[400];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	long long v;

	snprintf(path, sizeof(path), "%s/%s", store_dir(), EV_STORE_FILE);
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
	return v;
}

static void
make_zone(ev_store *s, int64_t id)
{
	static unsigned char sealed[] = {1, 2, 3, 0, 4};
	ev_zone_rec z;

	memset(&z, 0, sizeof(z));
	z.id = id;
	ev_padded_copy(z.label, sizeof(z.label), "zone");
	snprintf(z.serial, sizeof(z.serial), "%016llx", (unsigned long long)id);
	z.sealed = sealed;
	z.sealed_len = sizeof(sealed);
	z.created = 1700000000;
	ck_assert_int_eq(ev_store_zone_insert(s, &z), CKR_OK);
}

/*
 * Insert an object. label/ckid NULL means absent; key_type (CK_ULONG)-1
 * means absent. Returns its id.
 */
static int64_t
make_obj(ev_store *s, int64_t zone, CK_OBJECT_CLASS cls, CK_KEY_TYPE key_type, const char *label,
	 const char *ckid, int priv)
{
	ev_obj_rec o;

	memset(&o, 0, sizeof(o));
	o.zone = zone;
	o.cls = cls;
	o.private = priv;
	o.generation = 1;
	o.attrs = ev_attrs_new();
	ck_assert_ptr_nonnull(o.attrs);
	ck_assert_int_eq(ev_attrs_set_ulong(o.attrs, CKA_CLASS, cls), CKR_OK);
	if (key_type != (CK_KEY_TYPE)-1)
		ck_assert_int_eq(ev_attrs_set_ulong(o.attrs, CKA_KEY_TYPE, key_type), CKR_OK);
	if (label != NULL)
		ck_assert_int_eq(ev_attrs_set(o.attrs, CKA_LABEL, label, strlen(label)), CKR_OK);
	if (ckid != NULL)
		ck_assert_int_eq(ev_attrs_set(o.attrs, CKA_ID, ckid, strlen(ckid)), CKR_OK);
	ck_assert_int_eq(ev_attrs_set_bool(o.attrs, CKA_PRIVATE, priv ? CK_TRUE : CK_FALSE),
			 CKR_OK);
	ck_assert_int_eq(ev_attrs_set_bool(o.attrs, CKA_TOKEN, CK_TRUE), CKR_OK);
	ck_assert_int_eq(ev_store_obj_insert(s, &o), CKR_OK);
	ck_assert_int_gt(o.id, 0);
	ev_attrs_free(o.attrs);
	return o.id;
}

/* A search's answer (consumed): checked ascending (NULL when empty), up to max copied; n. */
static size_t
take_ids(int64_t *ids, size_t n, int64_t *out, size_t max)
{
	size_t i;

	if (n == 0)
		ck_assert_ptr_null(ids);
	for (i = 1; i < n; i++)
		ck_assert_int_lt(ids[i - 1], ids[i]);
	for (i = 0; i < n && i < max; i++)
		out[i] = ids[i];
	free(ids);
	return n;
}

/* Run a query; return the number of hits and copy up to max ids. */
static size_t
find(ev_store *s, const ev_obj_query *q, int64_t *out, size_t max)
{
	int64_t *ids = NULL;
	size_t n = 0;

	ck_assert_int_eq(ev_store_obj_find(s, q, &ids, &n), CKR_OK);
	return take_ids(ids, n, out, max);
}

START_TEST(test_create_reopen)
{
	ev_store *s = new_store();
	unsigned char *val = NULL;
	size_t len = 0;
	char path[400];
	struct stat sb;
	ev_zone_rec z;

	ck_assert_int_eq(ev_store_meta_set(s, "device", "abc", 3), CKR_OK);
	make_zone(s, 1);
	ev_store_close(s);

	ck_assert_int_eq(stat(store_dir(), &sb), 0);
	ck_assert_int_eq(sb.st_mode & 0777, 0700);
	snprintf(path, sizeof(path), "%s/%s", store_dir(), EV_STORE_FILE);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 0777, 0600);

	s = open_store(0);
	ck_assert_int_eq(ev_store_meta_get(s, "device", &val, &len), CKR_OK);
	ck_assert_uint_eq(len, 3);
	ck_assert_mem_eq(val, "abc", 3);
	free(val);
	ck_assert_int_eq(ev_store_meta_get(s, "nothing", &val, &len), EVR_NOT_FOUND);
	ck_assert_ptr_null(val);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(ev_store_zone_get(s, 1, &z), CKR_OK);
	ck_assert_str_eq(z.serial, "0000000000000001");
	ev_zone_rec_clear(&z);
	/* Opening an existing store with CREATE is fine too. */
	ev_store_close(s);
	s = new_store();
	ck_assert_int_eq(ev_store_zone_get(s, 1, &z), CKR_OK);
	ev_zone_rec_clear(&z);
	ev_store_close(s);
	ev_store_close(NULL);
}
END_TEST

START_TEST(test_wal_mode)
{
	ev_store *s = new_store();
	const char *sql = "PRAGMA journal_mode";

	ev_store_close(s);
	/* WAL is persistent in the file: a plain connection sees it. */
	{
		char path[400];
		sqlite3 *db = NULL;
		sqlite3_stmt *st = NULL;

		snprintf(path, sizeof(path), "%s/%s", store_dir(), EV_STORE_FILE);
		ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
		ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
		ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
		ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
		sqlite3_finalize(st);
		sqlite3_close(db);
	}
}
END_TEST

START_TEST(test_missing_without_create)
{
	ev_store *s = (ev_store *)&s;
	char err[256];
	CK_RV rv;

	rv = ev_store_open(store_dir(), 0, &s, err, sizeof(err));
	ck_assert_int_eq(rv, CKR_DEVICE_ERROR);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(strstr(err, store_dir()));
	ck_assert_ptr_nonnull(strstr(err, "does not exist"));

	/* Same for a read-only open, which never creates. */
	rv = ev_store_open(store_dir(), EV_STORE_READONLY | EV_STORE_CREATE, &s, err, sizeof(err));
	ck_assert_int_eq(rv, CKR_DEVICE_ERROR);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(strstr(err, "does not exist"));

	/* NULL err is allowed. */
	ck_assert_int_eq(ev_store_open(store_dir(), 0, &s, NULL, 0), CKR_DEVICE_ERROR);
}
END_TEST

START_TEST(test_not_a_database)
{
	char path[400], err[256];
	ev_store *s = NULL;
	FILE *f;

	ck_assert_int_eq(mkdir(store_dir(), 0700), 0);
	snprintf(path, sizeof(path), "%s/%s", store_dir(), EV_STORE_FILE);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < 200; i++)
		fputs("this is not a database ", f);
	fclose(f);
	ck_assert_int_eq(ev_store_open(store_dir(), 0, &s, err, sizeof(err)), CKR_DEVICE_ERROR);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(strstr(err, path));
}
END_TEST

START_TEST(test_readonly)
{
	ev_store *s = new_store();
	ev_zone_rec z;
	int64_t *ids = NULL;
	size_t n = 0;

	make_zone(s, 1);
	make_obj(s, 1, CKO_DATA, (CK_KEY_TYPE)-1, "d", NULL, 0);
	ev_store_close(s);

	s = open_store(EV_STORE_READONLY);
	ck_assert_int_eq(ev_store_zone_get(s, 1, &z), CKR_OK);
	ev_zone_rec_clear(&z);
	ck_assert_int_eq(ev_store_zone_list(s, &ids, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	free(ids);

	memset(&z, 0, sizeof(z));
	z.id = 2;
	z.sealed = (unsigned char *)"x";
	z.sealed_len = 1;
	ck_assert_int_eq(ev_store_zone_insert(s, &z), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_meta_set(s, "k", "v", 1), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_zone_delete(s, 1), CKR_DEVICE_ERROR);
	/* A transaction can be opened (SQLite allows it) but nothing written in it. */
	ck_assert_int_eq(ev_store_begin(s), CKR_OK);
	ck_assert_int_eq(ev_store_zone_insert(s, &z), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_rollback(s), CKR_OK);
	ck_assert_int_eq(ev_store_rollback(s), CKR_OK);
	ev_store_close(s);

	s = open_store(0);
	ck_assert_int_eq(ev_store_zone_get(s, 2, &z), EVR_NOT_FOUND);
	ck_assert_int_eq(ev_store_zone_get(s, 1, &z), CKR_OK);
	ev_zone_rec_clear(&z);
	ev_store_close(s);
}
END_TEST

START_TEST(test_schema_version)
{
	ev_store *s = new_store();
	unsigned char *val = NULL;
	size_t len = 0;

	ck_assert_int_eq(ev_store_meta_get(s, "schema_version", &val, &len), CKR_OK);
	ck_assert_uint_eq(len, 1);
	ck_assert_mem_eq(val, "6", 1);
	free(val);
	ev_store_close(s);
	ck_assert_int_eq(raw_int("SELECT value FROM meta WHERE key = 'schema_version'"), 6);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM sqlite_master WHERE type = 'index' "
				 "AND name LIKE 'objects_zone_%'"),
			 3);
	/* A fresh store gets version 3's parts too. */
	ck_assert_int_eq(raw_int("SELECT count(*) FROM sqlite_master WHERE type = 'index' "
				 "AND name IN ('objects_retired', 'objects_origin', "
				 "'attestlog_digest')"),
			 3);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM pragma_table_info('objects') WHERE name "
				 "IN ('origin', 'previous', 'created', 'retired', 'destroy_at') "
				 "AND \"notnull\" = 1 AND dflt_value = '0'"),
			 5);
}
END_TEST

START_TEST(test_newer_schema_refused)
{
	ev_store *s = new_store();
	char err[256];

	ev_store_close(s);
	raw_sql("UPDATE meta SET value = 99 WHERE key = 'schema_version'");

	s = (ev_store *)&s;
	ck_assert_int_eq(ev_store_open(store_dir(), 0, &s, err, sizeof(err)), CKR_DEVICE_ERROR);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(strstr(err, "newer"));
	ck_assert_ptr_nonnull(strstr(err, "99"));
	ck_assert_int_eq(ev_store_open(store_dir(), EV_STORE_READONLY, &s, err, sizeof(err)),
			 CKR_DEVICE_ERROR);
	ck_assert_ptr_nonnull(strstr(err, "newer"));
	/* The store is left as it was. */
	ck_assert_int_eq(raw_int("SELECT value FROM meta WHERE key = 'schema_version'"), 99);
}
END_TEST

START_TEST(test_readonly_uninitialised)
{
	char path[400], err[256];
	ev_store *s = NULL;
	FILE *f;

	/* An empty file is a valid, empty database: read-only cannot set it up. */
	ck_assert_int_eq(mkdir(store_dir(), 0700), 0);
	snprintf(path, sizeof(path), "%s/%s", store_dir(), EV_STORE_FILE);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	ck_assert_int_eq(ev_store_open(store_dir(), EV_STORE_READONLY, &s, err, sizeof(err)),
			 CKR_DEVICE_ERROR);
	ck_assert_ptr_nonnull(strstr(err, "not initialised"));
	s = open_store(0);
	ev_store_close(s);
	s = open_store(EV_STORE_READONLY);
	ev_store_close(s);
}
END_TEST

START_TEST(test_zone_insert_get)
{
	ev_store *s = new_store();
	unsigned char sealed[300];
	ev_zone_rec z, g;
	size_t i;

	for (i = 0; i < sizeof(sealed); i++)
		sealed[i] = (unsigned char)(i * 7);
	memset(&z, 0, sizeof(z));
	z.id = 3;
	memcpy(z.label, "label with 32 characters exactly", 32);
	snprintf(z.serial, sizeof(z.serial), "ABCDEF0123456789");
	z.sealed = sealed;
	z.sealed_len = sizeof(sealed);
	z.so_pin = "$argon2id$v=19$so";
	z.user_pin = NULL;
	z.so_fails = 2;
	z.user_fails = 0;
	z.created = 1712345678;
	ck_assert_int_eq(ev_store_zone_insert(s, &z), CKR_OK);
	/* The id is taken. */
	ck_assert_int_eq(ev_store_zone_insert(s, &z), CKR_DEVICE_ERROR);
	z.id = 0;
	ck_assert_int_eq(ev_store_zone_insert(s, &z), CKR_DEVICE_ERROR);

	ck_assert_int_eq(ev_store_zone_get(s, 3, &g), CKR_OK);
	ck_assert_int_eq(g.id, 3);
	ck_assert_mem_eq(g.label, "label with 32 characters exactly", 32);
	ck_assert_str_eq(g.serial, "ABCDEF0123456789");
	ck_assert_uint_eq(g.sealed_len, sizeof(sealed));
	ck_assert_mem_eq(g.sealed, sealed, sizeof(sealed));
	ck_assert_str_eq(g.so_pin, "$argon2id$v=19$so");
	ck_assert_ptr_null(g.user_pin);
	ck_assert_uint_eq(g.so_fails, 2);
	ck_assert_uint_eq(g.user_fails, 0);
	ck_assert_int_eq(g.created, 1712345678);
	ev_zone_rec_clear(&g);
	ck_assert_ptr_null(g.sealed);

	ck_assert_int_eq(ev_store_zone_get(s, 4, &g), EVR_NOT_FOUND);
	ev_zone_rec_clear(&g);
	ev_zone_rec_clear(NULL);
	ev_store_close(s);
}
END_TEST

START_TEST(test_zone_list_next_id)
{
	ev_store *s = new_store();
	int64_t *ids = NULL, id = 0;
	size_t n = 7;

	ck_assert_int_eq(ev_store_zone_list(s, &ids, &n), CKR_OK);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(ids);
	ck_assert_int_eq(ev_store_zone_next_id(s, &id), CKR_OK);
	ck_assert_int_eq(id, 1);

	make_zone(s, 1);
	make_zone(s, 2);
	ck_assert_int_eq(ev_store_zone_next_id(s, &id), CKR_OK);
	ck_assert_int_eq(id, 3);
	ck_assert_int_eq(ev_store_zone_delete(s, 2), CKR_OK);
	ck_assert_int_eq(ev_store_zone_delete(s, 2), EVR_NOT_FOUND);
	/* The id of a deleted zone is never given out again, even after a reopen. */
	ck_assert_int_eq(ev_store_zone_next_id(s, &id), CKR_OK);
	ck_assert_int_eq(id, 3);
	ev_store_close(s);
	s = open_store(0);
	ck_assert_int_eq(ev_store_zone_next_id(s, &id), CKR_OK);
	ck_assert_int_eq(id, 3);

	make_zone(s, 7);
	make_zone(s, 3);
	ck_assert_int_eq(ev_store_zone_next_id(s, &id), CKR_OK);
	ck_assert_int_eq(id, 8);
	ck_assert_int_eq(ev_store_zone_delete(s, 7), CKR_OK);
	ck_assert_int_eq(ev_store_zone_next_id(s, &id), CKR_OK);
	ck_assert_int_eq(id, 8);

	ck_assert_int_eq(ev_store_zone_list(s, &ids, &n), CKR_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(ids[0], 1);
	ck_assert_int_eq(ids[1], 3);
	free(ids);
	ev_store_close(s);
}
END_TEST

START_TEST(test_zone_pins_fails)
{
	ev_store *s = new_store();
	ev_zone_rec z;

	make_zone(s, 1);
	ck_assert_int_eq(ev_store_zone_set_fails(s, 1, CKU_SO, 3), CKR_OK);
	ck_assert_int_eq(ev_store_zone_set_fails(s, 1, CKU_USER, 5), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(s, 1, &z), CKR_OK);
	ck_assert_uint_eq(z.so_fails, 3);
	ck_assert_uint_eq(z.user_fails, 5);
	ck_assert_ptr_null(z.so_pin);
	ck_assert_ptr_null(z.user_pin);
	ev_zone_rec_clear(&z);

	/* Setting a PIN resets its own counter only. */
	ck_assert_int_eq(ev_store_zone_set_pin(s, 1, CKU_USER, "$argon2id$user"), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(s, 1, &z), CKR_OK);
	ck_assert_str_eq(z.user_pin, "$argon2id$user");
	ck_assert_uint_eq(z.user_fails, 0);
	ck_assert_uint_eq(z.so_fails, 3);
	ev_zone_rec_clear(&z);

	ck_assert_int_eq(ev_store_zone_set_pin(s, 1, CKU_SO, "$argon2id$so"), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(s, 1, &z), CKR_OK);
	ck_assert_str_eq(z.so_pin, "$argon2id$so");
	ck_assert_str_eq(z.user_pin, "$argon2id$user");
	ck_assert_uint_eq(z.so_fails, 0);
	ev_zone_rec_clear(&z);

	ck_assert_int_eq(ev_store_zone_set_pin(s, 1, CKU_USER, NULL), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(s, 1, &z), CKR_OK);
	ck_assert_ptr_null(z.user_pin);
	ev_zone_rec_clear(&z);

	ck_assert_int_eq(ev_store_zone_set_pin(s, 9, CKU_USER, "x"), EVR_NOT_FOUND);
	ck_assert_int_eq(ev_store_zone_set_fails(s, 9, CKU_USER, 1), EVR_NOT_FOUND);
	ck_assert_int_eq(ev_store_zone_set_pin(s, 1, CKU_CONTEXT_SPECIFIC, "x"), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_zone_set_fails(s, 1, 42, 1), CKR_DEVICE_ERROR);
	ev_store_close(s);
}
END_TEST

START_TEST(test_zone_add_fail)
{
	ev_store *a = new_store();
	ev_store *b = open_store(0);
	unsigned fails = 99;
	ev_zone_rec z;

	make_zone(a, 1);
	ck_assert_int_eq(ev_store_zone_add_fail(a, 1, CKU_USER, &fails), CKR_OK);
	ck_assert_uint_eq(fails, 1);
	/* Another connection counts on from there. */
	ck_assert_int_eq(ev_store_zone_add_fail(b, 1, CKU_USER, &fails), CKR_OK);
	ck_assert_uint_eq(fails, 2);
	ck_assert_int_eq(ev_store_zone_add_fail(a, 1, CKU_SO, &fails), CKR_OK);
	ck_assert_uint_eq(fails, 1);
	ck_assert_int_eq(ev_store_zone_get(a, 1, &z), CKR_OK);
	ck_assert_uint_eq(z.user_fails, 2);
	ck_assert_uint_eq(z.so_fails, 1);
	ev_zone_rec_clear(&z);

	/* Inside a transaction it is part of it. */
	ck_assert_int_eq(ev_store_begin(a), CKR_OK);
	ck_assert_int_eq(ev_store_zone_add_fail(a, 1, CKU_USER, &fails), CKR_OK);
	ck_assert_uint_eq(fails, 3);
	ck_assert_int_eq(ev_store_rollback(a), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(b, 1, &z), CKR_OK);
	ck_assert_uint_eq(z.user_fails, 2);
	ev_zone_rec_clear(&z);

	fails = 7;
	ck_assert_int_eq(ev_store_zone_add_fail(a, 9, CKU_USER, &fails), EVR_NOT_FOUND);
	ck_assert_int_eq(ev_store_zone_add_fail(a, 1, CKU_CONTEXT_SPECIFIC, &fails),
			 CKR_DEVICE_ERROR);
	ck_assert_uint_eq(fails, 7);
	/* A failed call leaves no transaction behind. */
	ck_assert_int_eq(ev_store_begin(a), CKR_OK);
	ck_assert_int_eq(ev_store_commit(a), CKR_OK);
	ev_store_close(a);
	ev_store_close(b);
}
END_TEST

#define ADD_FAIL_PROCS 4
#define ADD_FAIL_EACH 25

/* Processes counting at once lose no count: each gets a distinct value. */
START_TEST(test_zone_add_fail_processes)
{
	ev_store *s = new_store();
	pid_t pids[ADD_FAIL_PROCS];
	int res[2], i, status;
	char seen[ADD_FAIL_PROCS * ADD_FAIL_EACH + 1];
	unsigned char v;
	ev_zone_rec z;

	make_zone(s, 1);
	ev_store_close(s);
	ck_assert_int_eq(pipe(res), 0);
	for (i = 0; i < ADD_FAIL_PROCS; i++) {
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0) {
			ev_store *c = NULL;
			unsigned fails;
			int j;

			if (ev_store_open(store_dir(), 0, &c, NULL, 0) != CKR_OK)
				_exit(1);
			for (j = 0; j < ADD_FAIL_EACH; j++) {
				if (ev_store_zone_add_fail(c, 1, CKU_USER, &fails) != CKR_OK)
					_exit(2);
				v = (unsigned char)fails;
				if (write(res[1], &v, 1) != 1)
					_exit(3);
			}
			ev_store_close(c);
			_exit(0);
		}
	}
	close(res[1]);
	memset(seen, 0, sizeof(seen));
	for (i = 0; i < ADD_FAIL_PROCS * ADD_FAIL_EACH; i++) {
		ck_assert_int_eq(read(res[0], &v, 1), 1);
		ck_assert_uint_ge(v, 1);
		ck_assert_uint_le(v, ADD_FAIL_PROCS * ADD_FAIL_EACH);
		ck_assert_msg(!seen[v], "count %u given twice", v);
		seen[v] = 1;
	}
	close(res[0]);
	for (i = 0; i < ADD_FAIL_PROCS; i++) {
		ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
		ck_assert(WIFEXITED(status));
		ck_assert_int_eq(WEXITSTATUS(status), 0);
	}
	s = open_store(0);
	ck_assert_int_eq(ev_store_zone_get(s, 1, &z), CKR_OK);
	ck_assert_uint_eq(z.user_fails, ADD_FAIL_PROCS * ADD_FAIL_EACH);
	ev_zone_rec_clear(&z);
	ev_store_close(s);
}
END_TEST

START_TEST(test_zone_delete_cascades)
{
	ev_store *s = new_store();
	int64_t a, b, c;
	ev_obj_rec o;
	CK_ULONG count = 0;

	make_zone(s, 1);
	make_zone(s, 2);
	a = make_obj(s, 1, CKO_DATA, (CK_KEY_TYPE)-1, "a", NULL, 0);
	b = make_obj(s, 1, CKO_SECRET_KEY, CKK_AES, "b", "id", 1);
	c = make_obj(s, 2, CKO_DATA, (CK_KEY_TYPE)-1, "c", NULL, 0);
	ck_assert_int_eq(ev_store_zone_delete(s, 1), CKR_OK);
	ck_assert_int_eq(ev_store_obj_get(s, a, &o), EVR_NOT_FOUND);
	ck_assert_int_eq(ev_store_obj_get(s, b, &o), EVR_NOT_FOUND);
	ck_assert_int_eq(ev_store_obj_get(s, c, &o), CKR_OK);
	ev_obj_rec_clear(&o);
	ck_assert_int_eq(ev_store_obj_count(s, 1, 1, &count), CKR_OK);
	ck_assert_uint_eq(count, 0);
	ev_store_close(s);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM objects"), 1);
	/* Only object c's attribute rows are left. */
	ck_assert_int_eq(raw_int("SELECT count(*) FROM attrs WHERE object != (SELECT id FROM "
				 "objects)"),
			 0);
	ck_assert_int_gt(raw_int("SELECT count(*) FROM attrs"), 0);
}
END_TEST

START_TEST(test_obj_ids)
{
	ev_store *s = new_store();
	int64_t a, b, c, d;
	ev_obj_rec o;

	make_zone(s, 1);
	make_zone(s, 2);
	a = make_obj(s, 1, CKO_DATA, (CK_KEY_TYPE)-1, "a", NULL, 0);
	b = make_obj(s, 2, CKO_DATA, (CK_KEY_TYPE)-1, "b", NULL, 0);
	c = make_obj(s, 1, CKO_DATA, (CK_KEY_TYPE)-1, "c", NULL, 0);
	ck_assert_int_lt(a, b);
	ck_assert_int_lt(b, c);
	ck_assert_int_eq(ev_store_obj_delete(s, c), CKR_OK);
	ck_assert_int_eq(ev_store_obj_delete(s, c), EVR_NOT_FOUND);
	ck_assert_int_eq(ev_store_obj_get(s, c, &o), EVR_NOT_FOUND);
	/* The handle of a deleted object is never reused, even after a reopen. */
	ev_store_close(s);
	s = open_store(0);
	d = make_obj(s, 1, CKO_DATA, (CK_KEY_TYPE)-1, "d", NULL, 0);
	ck_assert_int_gt(d, c);

	/* An object must belong to an existing zone. */
	memset(&o, 0, sizeof(o));
	o.zone = 99;
	o.cls = CKO_DATA;
	ck_assert_int_eq(ev_store_obj_insert(s, &o), CKR_DEVICE_ERROR);
	ck_assert_int_eq(o.id, 0);
	ev_store_close(s);
}
END_TEST

START_TEST(test_obj_get_exact)
{
	ev_store *s = new_store();
	unsigned char big[5000], wrapped[77];
	const CK_ATTRIBUTE *at;
	ev_obj_rec o, g;
	size_t i;
	CK_ULONG ul;

	for (i = 0; i < sizeof(big); i++)
		big[i] = (unsigned char)(i ^ (i >> 8));
	for (i = 0; i < sizeof(wrapped); i++)
		wrapped[i] = (unsigned char)(255 - i);
	make_zone(s, 1);

	memset(&o, 0, sizeof(o));
	o.zone = 1;
	o.cls = CKO_PRIVATE_KEY;
	o.private = 1;
	o.generation = 4;
	o.wrapped = wrapped;
	o.wrapped_len = sizeof(wrapped);
	o.attrs = ev_attrs_new();
	ck_assert_ptr_nonnull(o.attrs);
	ck_assert_int_eq(ev_attrs_set_ulong(o.attrs, CKA_CLASS, CKO_PRIVATE_KEY), CKR_OK);
	ck_assert_int_eq(ev_attrs_set_ulong(o.attrs, CKA_KEY_TYPE, CKK_EC), CKR_OK);
	ck_assert_int_eq(ev_attrs_set(o.attrs, CKA_LABEL, "", 0), CKR_OK);
	ck_assert_int_eq(ev_attrs_set(o.attrs, CKA_ID, "\0\1\2", 3), CKR_OK);
	ck_assert_int_eq(ev_attrs_set(o.attrs, CKA_EC_PARAMS, big, sizeof(big)), CKR_OK);
	ck_assert_int_eq(ev_attrs_set_bool(o.attrs, CKA_SENSITIVE, CK_TRUE), CKR_OK);
	ck_assert_int_eq(ev_attrs_set(o.attrs, CKA_VENDOR_DEFINED | 0x45560000UL, "vv", 2), CKR_OK);
	ck_assert_int_eq(ev_attrs_set(o.attrs, CKA_VENDOR_DEFINED | 0x7fffffffUL, "w", 1), CKR_OK);
	ck_assert_int_eq(ev_attrs_set(o.attrs, CKF_ARRAY_ATTRIBUTE | 0x211UL, "arr", 3), CKR_OK);
	ck_assert_int_eq(ev_store_obj_insert(s, &o), CKR_OK);

	ck_assert_int_eq(ev_store_obj_get(s, o.id, &g), CKR_OK);
	ck_assert_int_eq(g.id, o.id);
	ck_assert_int_eq(g.zone, 1);
	ck_assert_uint_eq(g.cls, CKO_PRIVATE_KEY);
	ck_assert_int_eq(g.private, 1);
	ck_assert_int_eq(g.generation, 4);
	ck_assert_uint_eq(g.wrapped_len, sizeof(wrapped));
	ck_assert_mem_eq(g.wrapped, wrapped, sizeof(wrapped));
	ck_assert_uint_eq(g.attrs->n, o.attrs->n);
	for (i = 0; i < o.attrs->n; i++) {
		ck_assert_uint_eq(g.attrs->v[i].type, o.attrs->v[i].type);
		ck_assert_uint_eq(g.attrs->v[i].ulValueLen, o.attrs->v[i].ulValueLen);
		if (o.attrs->v[i].ulValueLen > 0)
			ck_assert_mem_eq(g.attrs->v[i].pValue, o.attrs->v[i].pValue,
					 o.attrs->v[i].ulValueLen);
	}
	at = ev_attrs_get(g.attrs, CKA_LABEL);
	ck_assert_ptr_nonnull(at);
	ck_assert_uint_eq(at->ulValueLen, 0);
	ck_assert_int_eq(ev_attrs_ulong(g.attrs, CKA_KEY_TYPE, &ul), CKR_OK);
	ck_assert_uint_eq(ul, CKK_EC);
	ev_obj_rec_clear(&g);
	ev_attrs_free(o.attrs);

	/* No wrapped blob and no attributes at all. */
	memset(&o, 0, sizeof(o));
	o.zone = 1;
	o.cls = CKO_DATA;
	o.generation = 1;
	ck_assert_int_eq(ev_store_obj_insert(s, &o), CKR_OK);
	ck_assert_int_eq(ev_store_obj_get(s, o.id, &g), CKR_OK);
	ck_assert_ptr_null(g.wrapped);
	ck_assert_uint_eq(g.wrapped_len, 0);
	ck_assert_uint_eq(g.cls, CKO_DATA);
	ck_assert_int_eq(g.private, 0);
	ck_assert_ptr_nonnull(g.attrs);
	ck_assert_uint_eq(g.attrs->n, 0);
	ev_obj_rec_clear(&g);
	ev_obj_rec_clear(NULL);
	ev_store_close(s);
}
END_TEST

START_TEST(test_obj_secret_refused)
{
	ev_store *s = new_store();
	ev_obj_rec o;
	CK_ULONG count = 9;

	make_zone(s, 1);
	memset(&o, 0, sizeof(o));
	o.zone = 1;
	o.cls = CKO_SECRET_KEY;
	o.attrs = ev_attrs_new();
	ck_assert_ptr_nonnull(o.attrs);
	ck_assert_int_eq(ev_attrs_set_ulong(o.attrs, CKA_CLASS, CKO_SECRET_KEY), CKR_OK);
	ck_assert_int_eq(ev_attrs_set(o.attrs, CKA_VALUE, "0123456789abcdef", 16), CKR_OK);
	ck_assert_int_eq(ev_store_obj_insert(s, &o), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_obj_count(s, 1, 1, &count), CKR_OK);
	ck_assert_uint_eq(count, 0);
	ev_attrs_free(o.attrs);
	ev_store_close(s);
}
END_TEST

START_TEST(test_obj_set_attrs)
{
	ev_store *s = new_store();
	ev_obj_query q;
	ev_obj_rec g;
	ev_attrs *a;
	int64_t id, hits[4];

	make_zone(s, 1);
	id = make_obj(s, 1, CKO_SECRET_KEY, CKK_AES, "old", "id1", 0);

	a = ev_attrs_new();
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(ev_attrs_set_ulong(a, CKA_CLASS, CKO_SECRET_KEY), CKR_OK);
	ck_assert_int_eq(ev_attrs_set_ulong(a, CKA_KEY_TYPE, CKK_GENERIC_SECRET), CKR_OK);
	ck_assert_int_eq(ev_attrs_set(a, CKA_LABEL, "new", 3), CKR_OK);
	ck_assert_int_eq(ev_attrs_set_bool(a, CKA_PRIVATE, CK_TRUE), CKR_OK);
	ck_assert_int_eq(ev_attrs_set(a, CKA_APPLICATION, "app", 3), CKR_OK);
	ck_assert_int_eq(ev_store_obj_set_attrs(s, id, a), CKR_OK);
	ck_assert_int_eq(ev_store_obj_set_attrs(s, id + 100, a), EVR_NOT_FOUND);

	ck_assert_int_eq(ev_store_obj_get(s, id, &g), CKR_OK);
	ck_assert_uint_eq(g.attrs->n, a->n);
	ck_assert_ptr_null(ev_attrs_get(g.attrs, CKA_ID));
	ck_assert_ptr_null(ev_attrs_get(g.attrs, CKA_TOKEN));
	ck_assert_ptr_nonnull(ev_attrs_get(g.attrs, CKA_APPLICATION));
	ck_assert_int_eq(g.private, 1);
	ev_obj_rec_clear(&g);

	memset(&q, 0, sizeof(q));
	q.zone = 1;
	q.include_private = 1;
	q.has_label = 1;
	q.label = "new";
	q.label_len = 3;
	ck_assert_uint_eq(find(s, &q, hits, 4), 1);
	ck_assert_int_eq(hits[0], id);
	q.label = "old";
	ck_assert_uint_eq(find(s, &q, hits, 4), 0);
	q.has_label = 0;
	q.has_ckid = 1;
	q.ckid = "id1";
	q.ckid_len = 3;
	ck_assert_uint_eq(find(s, &q, hits, 4), 0);
	q.has_ckid = 0;
	q.has_key_type = 1;
	q.key_type = CKK_GENERIC_SECRET;
	ck_assert_uint_eq(find(s, &q, hits, 4), 1);
	q.key_type = CKK_AES;
	ck_assert_uint_eq(find(s, &q, hits, 4), 0);
	/* Now private: hidden from a public search. */
	q.has_key_type = 0;
	q.include_private = 0;
	ck_assert_uint_eq(find(s, &q, hits, 4), 0);

	/* A secret attribute is refused and the old attributes stay. */
	ck_assert_int_eq(ev_attrs_set(a, CKA_VALUE, "k", 1), CKR_OK);
	ck_assert_int_eq(ev_store_obj_set_attrs(s, id, a), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_obj_get(s, id, &g), CKR_OK);
	ck_assert_ptr_null(ev_attrs_get(g.attrs, CKA_VALUE));
	ck_assert_ptr_nonnull(ev_attrs_get(g.attrs, CKA_APPLICATION));
	ev_obj_rec_clear(&g);
	ev_attrs_free(a);

	/* Without CKA_CLASS or CKA_PRIVATE in the list, class and privacy are kept. */
	a = ev_attrs_new();
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(ev_attrs_set(a, CKA_LABEL, "bare", 4), CKR_OK);
	ck_assert_int_eq(ev_store_obj_set_attrs(s, id, a), CKR_OK);
	ck_assert_int_eq(ev_store_obj_get(s, id, &g), CKR_OK);
	ck_assert_uint_eq(g.cls, CKO_SECRET_KEY);
	ck_assert_int_eq(g.private, 1);
	ck_assert_uint_eq(g.attrs->n, 1);
	ev_obj_rec_clear(&g);
	/* ... and the stored class still decides what is secret. */
	ck_assert_int_eq(ev_attrs_set(a, CKA_VALUE, "k", 1), CKR_OK);
	ck_assert_int_eq(ev_store_obj_set_attrs(s, id, a), CKR_DEVICE_ERROR);
	ev_attrs_free(a);
	ev_store_close(s);
}
END_TEST

START_TEST(test_obj_set_wrapped)
{
	ev_store *s = new_store();
	ev_obj_rec g;
	int64_t id;

	make_zone(s, 1);
	id = make_obj(s, 1, CKO_SECRET_KEY, CKK_AES, "k", NULL, 1);
	ck_assert_int_eq(ev_store_obj_get(s, id, &g), CKR_OK);
	ck_assert_ptr_null(g.wrapped);
	ev_obj_rec_clear(&g);

	ck_assert_int_eq(ev_store_obj_set_wrapped(s, id, (const unsigned char *)"\x01\x00\x02", 3),
			 CKR_OK);
	ck_assert_int_eq(ev_store_obj_get(s, id, &g), CKR_OK);
	ck_assert_uint_eq(g.wrapped_len, 3);
	ck_assert_mem_eq(g.wrapped, "\x01\x00\x02", 3);
	ev_obj_rec_clear(&g);

	ck_assert_int_eq(ev_store_obj_set_wrapped(s, id + 1, (const unsigned char *)"x", 1),
			 EVR_NOT_FOUND);
	ck_assert_int_eq(ev_store_obj_set_wrapped(s, id, NULL, 0), CKR_OK);
	ck_assert_int_eq(ev_store_obj_get(s, id, &g), CKR_OK);
	ck_assert_ptr_null(g.wrapped);
	ev_obj_rec_clear(&g);
	ev_store_close(s);
}
END_TEST

START_TEST(test_obj_find)
{
	ev_store *s = new_store();
	int64_t k1, k2, k3, pub, d1, d2, other, hits[8];
	ev_obj_query q;

	make_zone(s, 1);
	make_zone(s, 2);
	k1 = make_obj(s, 1, CKO_SECRET_KEY, CKK_AES, "key", "01", 1);
	k2 = make_obj(s, 1, CKO_SECRET_KEY, CKK_GENERIC_SECRET, "key", "02", 1);
	k3 = make_obj(s, 1, CKO_PRIVATE_KEY, CKK_EC, "ec", "01", 1);
	pub = make_obj(s, 1, CKO_PUBLIC_KEY, CKK_EC, "ec", "01", 0);
	d1 = make_obj(s, 1, CKO_DATA, (CK_KEY_TYPE)-1, "", NULL, 0);
	d2 = make_obj(s, 1, CKO_DATA, (CK_KEY_TYPE)-1, NULL, "", 0);
	other = make_obj(s, 2, CKO_SECRET_KEY, CKK_AES, "key", "01", 1);
	(void)other;

	memset(&q, 0, sizeof(q));
	q.zone = 1;
	q.include_private = 1;
	/* Everything of zone 1, ascending. */
	ck_assert_uint_eq(find(s, &q, hits, 8), 6);
	ck_assert_int_eq(hits[0], k1);
	ck_assert_int_eq(hits[5], d2);

	/* Private filtering. */
	q.include_private = 0;
	ck_assert_uint_eq(find(s, &q, hits, 8), 3);
	ck_assert_int_eq(hits[0], pub);
	ck_assert_int_eq(hits[1], d1);
	ck_assert_int_eq(hits[2], d2);
	q.include_private = 1;

	/* Class. */
	q.has_class = 1;
	q.cls = CKO_SECRET_KEY;
	ck_assert_uint_eq(find(s, &q, hits, 8), 2);
	ck_assert_int_eq(hits[0], k1);
	ck_assert_int_eq(hits[1], k2);
	q.include_private = 0;
	ck_assert_uint_eq(find(s, &q, hits, 8), 0);
	q.include_private = 1;

	/* Class and key type. */
	q.has_key_type = 1;
	q.key_type = CKK_AES;
	ck_assert_uint_eq(find(s, &q, hits, 8), 1);
	ck_assert_int_eq(hits[0], k1);
	q.has_class = 0;
	q.key_type = CKK_EC;
	ck_assert_uint_eq(find(s, &q, hits, 8), 2);
	ck_assert_int_eq(hits[0], k3);
	ck_assert_int_eq(hits[1], pub);
	q.has_key_type = 0;

	/* Label. */
	q.has_label = 1;
	q.label = "key";
	q.label_len = 3;
	ck_assert_uint_eq(find(s, &q, hits, 8), 2);
	q.label = "ke";
	q.label_len = 2;
	ck_assert_uint_eq(find(s, &q, hits, 8), 0);
	/* An empty label matches only the empty label, not an absent one. */
	q.label = "";
	q.label_len = 0;
	ck_assert_uint_eq(find(s, &q, hits, 8), 1);
	ck_assert_int_eq(hits[0], d1);
	q.label = NULL;
	ck_assert_uint_eq(find(s, &q, hits, 8), 1);
	ck_assert_int_eq(hits[0], d1);
	q.has_label = 0;

	/* CKA_ID, empty included. */
	q.has_ckid = 1;
	q.ckid = "01";
	q.ckid_len = 2;
	ck_assert_uint_eq(find(s, &q, hits, 8), 3);
	ck_assert_int_eq(hits[0], k1);
	ck_assert_int_eq(hits[1], k3);
	ck_assert_int_eq(hits[2], pub);
	q.ckid = "";
	q.ckid_len = 0;
	ck_assert_uint_eq(find(s, &q, hits, 8), 1);
	ck_assert_int_eq(hits[0], d2);

	/* Combinations. */
	q.ckid = "01";
	q.ckid_len = 2;
	q.has_label = 1;
	q.label = "ec";
	q.label_len = 2;
	ck_assert_uint_eq(find(s, &q, hits, 8), 2);
	q.has_class = 1;
	q.cls = CKO_PUBLIC_KEY;
	ck_assert_uint_eq(find(s, &q, hits, 8), 1);
	ck_assert_int_eq(hits[0], pub);
	q.has_key_type = 1;
	q.key_type = CKK_EC;
	ck_assert_uint_eq(find(s, &q, hits, 8), 1);
	q.key_type = CKK_RSA;
	ck_assert_uint_eq(find(s, &q, hits, 8), 0);
	q.key_type = CKK_EC;
	q.cls = CKO_PRIVATE_KEY;
	q.include_private = 0;
	ck_assert_uint_eq(find(s, &q, hits, 8), 0);
	q.include_private = 1;
	ck_assert_uint_eq(find(s, &q, hits, 8), 1);
	ck_assert_int_eq(hits[0], k3);

	/* Another zone, and a zone with nothing. */
	memset(&q, 0, sizeof(q));
	q.zone = 2;
	q.include_private = 1;
	ck_assert_uint_eq(find(s, &q, hits, 8), 1);
	q.zone = 3;
	ck_assert_uint_eq(find(s, &q, hits, 8), 0);
	ev_store_close(s);
}
END_TEST

START_TEST(test_obj_find_many)
{
	ev_store *s = new_store();
	int64_t hits[2], target = 0;
	ev_obj_query q;
	char label[32];
	int i;

	/* Many objects of one zone in one transaction; the lookup must be exact. */
	make_zone(s, 1);
	ck_assert_int_eq(ev_store_begin(s), CKR_OK);
	for (i = 0; i < 2000; i++) {
		snprintf(label, sizeof(label), "key-%d", i);
		int64_t id = make_obj(s, 1, CKO_SECRET_KEY, CKK_AES, label, NULL, 1);
		if (i == 1234)
			target = id;
	}
	ck_assert_int_eq(ev_store_commit(s), CKR_OK);
	memset(&q, 0, sizeof(q));
	q.zone = 1;
	q.include_private = 1;
	q.has_label = 1;
	q.label = "key-1234";
	q.label_len = 8;
	ck_assert_uint_eq(find(s, &q, hits, 2), 1);
	ck_assert_int_eq(hits[0], target);
	ev_store_close(s);
}
END_TEST

/* ev_store_obj_find_shared() by label: the number of hits, up to max ids copied (checked ascending). */
static size_t
find_shared(ev_store *s, int64_t zone, const char *label, int64_t *out, size_t max)
{
	ev_obj_query q;
	int64_t *ids = NULL;
	size_t n = 0;

	memset(&q, 0, sizeof(q));
	q.zone = zone;
	q.include_private = 1;
	q.has_label = 1;
	q.label = label;
	q.label_len = strlen(label);
	ck_assert_int_eq(ev_store_obj_find_shared(s, &q, &ids, &n), CKR_OK);
	return take_ids(ids, n, out, max);
}

/*
 * A reader opens the owner's file, not one put in its place since (the
 * same bytes, another file): the search fails rather than read it.
 */
START_TEST(test_reader_same_file)
{
	ev_store *s = new_store();
	ev_obj_query q;
	int64_t *ids = NULL;
	size_t n = 0, got;
	char path[400], moved[420], buf[4096];
	FILE *in, *out;

	make_zone(s, 1);
	snprintf(path, sizeof(path), "%s/%s", store_dir(), EV_STORE_FILE);
	snprintf(moved, sizeof(moved), "%s.moved", path);
	ck_assert_int_eq(rename(path, moved), 0);
	in = fopen(moved, "rb");
	out = fopen(path, "wb");
	ck_assert_ptr_nonnull(in);
	ck_assert_ptr_nonnull(out);
	while ((got = fread(buf, 1, sizeof(buf), in)) > 0)
		ck_assert_uint_eq(fwrite(buf, 1, got, out), got);
	ck_assert_int_eq(fclose(in), 0);
	ck_assert_int_eq(fclose(out), 0);
	memset(&q, 0, sizeof(q));
	q.zone = 1;
	ck_assert_int_eq(ev_store_obj_find_shared(s, &q, &ids, &n), CKR_DEVICE_ERROR);
	free(ids);
	ev_store_close(s);
}
END_TEST

struct shared_finder {
	ev_store *s;
	int64_t want[50];
	int bad;
};

static void *
shared_finder(void *arg)
{
	struct shared_finder *f = arg;
	ev_obj_query q;
	char label[32];
	int64_t *ids;
	size_t n;
	int i;

	for (i = 0; i < 500; i++) {
		memset(&q, 0, sizeof(q));
		q.zone = 1;
		q.include_private = 1;
		q.has_label = 1;
		q.label = label;
		q.label_len = (size_t)snprintf(label, sizeof(label), "many-%d", i % 50);
		ids = NULL;
		if (ev_store_obj_find_shared(f->s, &q, &ids, &n) != CKR_OK || n != 1 ||
		    ids[0] != f->want[i % 50])
			f->bad++;
		free(ids);
	}
	return NULL;
}

/*
 * The shared search sees at once what another connection (another
 * process) commits: a new object, a changed label, a deletion; not what
 * the owner's open transaction has not committed yet. Entries the index
 * orders otherwise (private before class) still come back ascending.
 * Threads beyond the store's readers search at once and all get answers.
 */
START_TEST(test_obj_find_shared)
{
	ev_store *s = new_store(), *other;
	int64_t a, b, c, hits[4];
	struct shared_finder f[6];
	pthread_t t[6];
	ev_attrs *attrs;
	char label[32];
	int i;

	make_zone(s, 1);
	/* (zone, label, retired, private, ...) orders b (public) before a. */
	a = make_obj(s, 1, CKO_SECRET_KEY, CKK_AES, "same", NULL, 1);
	b = make_obj(s, 1, CKO_DATA, (CK_KEY_TYPE)-1, "same", NULL, 0);
	ck_assert_uint_eq(find_shared(s, 1, "same", hits, 4), 2);
	ck_assert_int_eq(hits[0], a);
	ck_assert_int_eq(hits[1], b);

	other = open_store(0);
	c = make_obj(other, 1, CKO_SECRET_KEY, CKK_AES, "theirs", NULL, 1);
	ck_assert_uint_eq(find_shared(s, 1, "theirs", hits, 4), 1);
	ck_assert_int_eq(hits[0], c);
	attrs = ev_attrs_new();
	ck_assert_ptr_nonnull(attrs);
	ck_assert_int_eq(ev_attrs_set_ulong(attrs, CKA_CLASS, CKO_SECRET_KEY), CKR_OK);
	ck_assert_int_eq(ev_attrs_set(attrs, CKA_LABEL, "renamed", 7), CKR_OK);
	ck_assert_int_eq(ev_store_obj_set_attrs(other, c, attrs), CKR_OK);
	ev_attrs_free(attrs);
	ck_assert_uint_eq(find_shared(s, 1, "theirs", hits, 4), 0);
	ck_assert_uint_eq(find_shared(s, 1, "renamed", hits, 4), 1);
	ck_assert_int_eq(ev_store_obj_delete(other, c), CKR_OK);
	ck_assert_uint_eq(find_shared(s, 1, "renamed", hits, 4), 0);

	/* The owner's uncommitted insert is not seen, and does not hold the search up. */
	ck_assert_int_eq(ev_store_begin(s), CKR_OK);
	c = make_obj(s, 1, CKO_SECRET_KEY, CKK_AES, "pending", NULL, 1);
	ck_assert_uint_eq(find_shared(s, 1, "pending", hits, 4), 0);
	ck_assert_uint_eq(find_shared(other, 1, "pending", hits, 4), 0);
	ck_assert_int_eq(ev_store_commit(s), CKR_OK);
	ck_assert_uint_eq(find_shared(s, 1, "pending", hits, 4), 1);
	ck_assert_uint_eq(find_shared(other, 1, "pending", hits, 4), 1);
	ev_store_close(other);

	ck_assert_int_eq(ev_store_begin(s), CKR_OK);
	for (i = 0; i < 50; i++) {
		snprintf(label, sizeof(label), "many-%d", i);
		f[0].want[i] = make_obj(s, 1, CKO_SECRET_KEY, CKK_AES, label, NULL, 1);
	}
	ck_assert_int_eq(ev_store_commit(s), CKR_OK);
	for (i = 0; i < 6; i++) {
		f[i].s = s;
		f[i].bad = 0;
		memcpy(f[i].want, f[0].want, sizeof(f[i].want));
		ck_assert_int_eq(pthread_create(&t[i], NULL, shared_finder, &f[i]), 0);
	}
	for (i = 0; i < 6; i++) {
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
		ck_assert_int_eq(f[i].bad, 0);
	}
	ev_store_close(s);
}
END_TEST

/* Version 6: searches by label or CKA_ID have indexes that answer them alone. */
START_TEST(test_find_indexes)
{
	ev_store *s = new_store();

	ev_store_close(s);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
				 "name IN ('objects_zone_label_find', 'objects_zone_ckid_find')"),
	    2);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
				 "name IN ('objects_zone_label', 'objects_zone_ckid')"),
	    0);
}
END_TEST

START_TEST(test_obj_count)
{
	ev_store *s = new_store();
	CK_ULONG count = 99;

	make_zone(s, 1);
	make_zone(s, 2);
	ck_assert_int_eq(ev_store_obj_count(s, 1, 1, &count), CKR_OK);
	ck_assert_uint_eq(count, 0);
	make_obj(s, 1, CKO_SECRET_KEY, CKK_AES, "a", NULL, 1);
	make_obj(s, 1, CKO_SECRET_KEY, CKK_AES, "b", NULL, 1);
	make_obj(s, 1, CKO_DATA, (CK_KEY_TYPE)-1, "c", NULL, 0);
	make_obj(s, 2, CKO_DATA, (CK_KEY_TYPE)-1, "d", NULL, 0);
	ck_assert_int_eq(ev_store_obj_count(s, 1, 1, &count), CKR_OK);
	ck_assert_uint_eq(count, 3);
	ck_assert_int_eq(ev_store_obj_count(s, 1, 0, &count), CKR_OK);
	ck_assert_uint_eq(count, 1);
	ck_assert_int_eq(ev_store_obj_count(s, 2, 0, &count), CKR_OK);
	ck_assert_uint_eq(count, 1);
	ev_store_close(s);
}
END_TEST

START_TEST(test_transactions)
{
	ev_store *s = new_store();
	CK_ULONG count = 9;
	ev_zone_rec z;
	int64_t id;

	ck_assert_int_eq(ev_store_rollback(s), CKR_OK);
	make_zone(s, 1);

	/* Rolled back: nothing of it is left. */
	ck_assert_int_eq(ev_store_begin(s), CKR_OK);
	ck_assert_int_eq(ev_store_begin(s), CKR_DEVICE_ERROR);
	make_zone(s, 2);
	id = make_obj(s, 1, CKO_DATA, (CK_KEY_TYPE)-1, "x", NULL, 0);
	ck_assert_int_eq(ev_store_meta_set(s, "k", "v", 1), CKR_OK);
	ck_assert_int_eq(ev_store_zone_set_fails(s, 1, CKU_USER, 4), CKR_OK);
	ck_assert_int_eq(ev_store_rollback(s), CKR_OK);
	ck_assert_int_eq(ev_store_rollback(s), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(s, 2, &z), EVR_NOT_FOUND);
	ck_assert_int_eq(ev_store_obj_count(s, 1, 1, &count), CKR_OK);
	ck_assert_uint_eq(count, 0);
	ck_assert_int_eq(ev_store_zone_get(s, 1, &z), CKR_OK);
	ck_assert_uint_eq(z.user_fails, 0);
	ev_zone_rec_clear(&z);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM attrs"), 0);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM meta WHERE key = 'k'"), 0);

	/* A failed call inside a transaction leaves the earlier work of it intact. */
	ck_assert_int_eq(ev_store_begin(s), CKR_OK);
	make_zone(s, 3);
	{
		ev_obj_rec o;

		memset(&o, 0, sizeof(o));
		o.zone = 42;
		o.cls = CKO_DATA;
		ck_assert_int_eq(ev_store_obj_insert(s, &o), CKR_DEVICE_ERROR);
	}
	ck_assert_int_eq(ev_store_commit(s), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(s, 3, &z), CKR_OK);
	ev_zone_rec_clear(&z);

	/* Committed: persists; object ids of the rolled-back insert are not reused. */
	ck_assert_int_eq(ev_store_begin(s), CKR_OK);
	ck_assert_int_gt(make_obj(s, 1, CKO_DATA, (CK_KEY_TYPE)-1, "y", NULL, 0), 0);
	ck_assert_int_eq(ev_store_commit(s), CKR_OK);
	ck_assert_int_eq(ev_store_commit(s), CKR_DEVICE_ERROR);
	ev_store_close(s);
	s = open_store(0);
	ck_assert_int_eq(ev_store_obj_count(s, 1, 1, &count), CKR_OK);
	ck_assert_uint_eq(count, 1);
	(void)id;
	ev_store_close(s);
}
END_TEST

START_TEST(test_two_connections)
{
	ev_store *a = new_store();
	ev_store *b = open_store(0);
	int64_t va0, va1, vb0, vb1, id;
	ev_obj_rec o;
	ev_zone_rec z;

	ck_assert_int_eq(ev_store_data_version(a, &va0), CKR_OK);
	ck_assert_int_eq(ev_store_data_version(b, &vb0), CKR_OK);
	make_zone(a, 1);
	id = make_obj(a, 1, CKO_DATA, (CK_KEY_TYPE)-1, "x", NULL, 0);
	/* A's own commits do not change A's number; they change B's. */
	ck_assert_int_eq(ev_store_data_version(a, &va1), CKR_OK);
	ck_assert_int_eq(va1, va0);
	ck_assert_int_eq(ev_store_data_version(b, &vb1), CKR_OK);
	ck_assert_int_ne(vb1, vb0);
	ck_assert_int_eq(ev_store_obj_get(b, id, &o), CKR_OK);
	ev_obj_rec_clear(&o);
	/* No change since: same number. */
	ck_assert_int_eq(ev_store_data_version(b, &vb0), CKR_OK);
	ck_assert_int_eq(vb0, vb1);

	/* B writes, A sees it. */
	ck_assert_int_eq(ev_store_zone_set_fails(b, 1, CKU_SO, 2), CKR_OK);
	ck_assert_int_eq(ev_store_data_version(a, &va0), CKR_OK);
	ck_assert_int_ne(va0, va1);
	ck_assert_int_eq(ev_store_zone_get(a, 1, &z), CKR_OK);
	ck_assert_uint_eq(z.so_fails, 2);
	ev_zone_rec_clear(&z);
	ev_store_close(a);
	ev_store_close(b);
}
END_TEST

START_TEST(test_read_during_write)
{
	ev_store *a = new_store();
	ev_store *b = open_store(0);
	ev_store *ro;
	CK_ULONG count = 9;
	ev_zone_rec z;

	make_zone(a, 1);
	make_obj(a, 1, CKO_DATA, (CK_KEY_TYPE)-1, "x", NULL, 0);
	ro = open_store(EV_STORE_READONLY);

	/* A holds the write lock with uncommitted changes. */
	ck_assert_int_eq(ev_store_begin(a), CKR_OK);
	make_obj(a, 1, CKO_DATA, (CK_KEY_TYPE)-1, "y", NULL, 0);
	make_zone(a, 2);

	/* Readers are not blocked and see the committed state only. */
	ck_assert_int_eq(ev_store_obj_count(b, 1, 1, &count), CKR_OK);
	ck_assert_uint_eq(count, 1);
	ck_assert_int_eq(ev_store_zone_get(b, 2, &z), EVR_NOT_FOUND);
	ck_assert_int_eq(ev_store_obj_count(ro, 1, 1, &count), CKR_OK);
	ck_assert_uint_eq(count, 1);

	ck_assert_int_eq(ev_store_commit(a), CKR_OK);
	ck_assert_int_eq(ev_store_obj_count(b, 1, 1, &count), CKR_OK);
	ck_assert_uint_eq(count, 2);
	ck_assert_int_eq(ev_store_obj_count(ro, 1, 1, &count), CKR_OK);
	ck_assert_uint_eq(count, 2);
	ck_assert_int_eq(ev_store_zone_get(b, 2, &z), CKR_OK);
	ev_zone_rec_clear(&z);
	ev_store_close(ro);
	ev_store_close(a);
	ev_store_close(b);
}
END_TEST

/*
 * A forked child reports its result through a pipe rather than its exit
 * status: under valgrind, the child's status is valgrind's verdict on the
 * connection it deliberately abandoned (SQLite's memory is kept, by
 * design), not the test's.
 */
static void
child_report(int fd, char result)
{
	ssize_t n = write(fd, &result, 1);

	(void)n;
	_exit(0);
}

static char
child_result(int fd)
{
	char result = 0;

	ck_assert_int_eq(read(fd, &result, 1), 1);
	return result;
}

#define FORK_OBJECTS 200

/*
 * The child of a fork gives up the connection it inherited, opens its own
 * and writes while the parent keeps reading through the one it had.
 */
START_TEST(test_two_processes)
{
	ev_store *s = new_store();
	CK_ULONG count = 0, last = 0;
	int status = 0, reads = 0, res[2];
	int64_t v0, v1;
	pid_t pid, w;

	make_zone(s, 1);
	ck_assert_int_eq(ev_store_data_version(s, &v0), CKR_OK);
	ck_assert_int_eq(pipe(res), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		ev_store *c = NULL;
		int i, ok = 1;

		ev_store_abandon(s);
		if (ev_store_open(store_dir(), 0, &c, NULL, 0) != CKR_OK)
			child_report(res[1], 'o');
		for (i = 0; i < FORK_OBJECTS && ok; i++) {
			ev_obj_rec o;

			memset(&o, 0, sizeof(o));
			o.zone = 1;
			o.cls = CKO_DATA;
			o.generation = 1;
			/* Half in explicit transactions, half on their own. */
			if (i % 2 == 0 && ev_store_begin(c) != CKR_OK)
				ok = 0;
			if (ok && ev_store_obj_insert(c, &o) != CKR_OK)
				ok = 0;
			if (ok && i % 2 == 0 && ev_store_commit(c) != CKR_OK)
				ok = 0;
		}
		ev_store_close(c);
		child_report(res[1], ok ? 'k' : 'w');
	}

	/* Read while the child writes: every read succeeds and never goes back. */
	for (;;) {
		w = waitpid(pid, &status, WNOHANG);
		ck_assert_int_ge(w, 0);
		ck_assert_int_eq(ev_store_obj_count(s, 1, 1, &count), CKR_OK);
		ck_assert_uint_ge(count, last);
		last = count;
		reads++;
		if (w == pid)
			break;
	}
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(child_result(res[0]), 'k');
	close(res[0]);
	close(res[1]);
	ck_assert_int_eq(ev_store_obj_count(s, 1, 1, &count), CKR_OK);
	ck_assert_uint_eq(count, FORK_OBJECTS);
	ck_assert_int_eq(ev_store_data_version(s, &v1), CKR_OK);
	ck_assert_int_ne(v0, v1);
	ck_assert_int_gt(reads, 0);

	/* The parent's connection still writes normally. */
	make_obj(s, 1, CKO_DATA, (CK_KEY_TYPE)-1, "p", NULL, 0);
	ev_store_close(s);
	s = open_store(0);
	ck_assert_int_eq(ev_store_obj_count(s, 1, 1, &count), CKR_OK);
	ck_assert_uint_eq(count, FORK_OBJECTS + 1);
	ev_store_close(s);
}
END_TEST

/* Insert n objects in zone 1; 0 on success. */
static int
child_insert(ev_store *c, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		ev_obj_rec o;

		memset(&o, 0, sizeof(o));
		o.zone = 1;
		o.cls = CKO_DATA;
		o.generation = 1;
		if (ev_store_obj_insert(c, &o) != CKR_OK)
			return -1;
	}
	return 0;
}

/*
 * The parent closes its connection while the forked child, which gave up
 * the inherited one, keeps writing through its own. The parent must not
 * take itself for the last user and delete the WAL under the child: every
 * commit of the child is still there afterwards.
 */
START_TEST(test_fork_parent_closes)
{
	int to_child[2], to_parent[2], status = 0;
	ev_store *s = new_store();
	CK_ULONG count = 0;
	char b = 0;
	pid_t pid;

	make_zone(s, 1);
	ck_assert_int_eq(pipe(to_child), 0);
	ck_assert_int_eq(pipe(to_parent), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		ev_store *c = NULL;

		ev_store_abandon(s);
		if (ev_store_open(store_dir(), 0, &c, NULL, 0) != CKR_OK)
			child_report(to_parent[1], 'o');
		if (child_insert(c, 5) != 0)
			child_report(to_parent[1], '1');
		if (write(to_parent[1], "r", 1) != 1 || read(to_child[0], &b, 1) != 1)
			child_report(to_parent[1], 'p');
		/* The parent has closed its connection by now. */
		if (child_insert(c, 5) != 0)
			child_report(to_parent[1], '2');
		ev_store_close(c);
		child_report(to_parent[1], 'k');
	}
	ck_assert_int_eq(child_result(to_parent[0]), 'r');
	ev_store_close(s);
	ck_assert_int_eq(write(to_child[1], "c", 1), 1);
	ck_assert_int_eq(child_result(to_parent[0]), 'k');
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	close(to_child[0]);
	close(to_child[1]);
	close(to_parent[0]);
	close(to_parent[1]);

	s = open_store(0);
	ck_assert_int_eq(ev_store_obj_count(s, 1, 1, &count), CKR_OK);
	ck_assert_uint_eq(count, 10);
	ev_store_close(s);
}
END_TEST

/*
 * Version 1 of the schema, as the code before version 2 created it. A
 * copy, on purpose: stores in the field were made by exactly this text.
 */
static const char *const v1_schema =
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB);"
    "CREATE TABLE zones (id INTEGER PRIMARY KEY AUTOINCREMENT, label BLOB, serial TEXT,"
    " sealed_key BLOB NOT NULL, so_pin TEXT, user_pin TEXT,"
    " so_fails INTEGER NOT NULL DEFAULT 0, user_fails INTEGER NOT NULL DEFAULT 0,"
    " created INTEGER);"
    "CREATE TABLE objects (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " zone INTEGER NOT NULL REFERENCES zones(id) ON DELETE CASCADE, class INTEGER,"
    " key_type INTEGER, label BLOB, ckid BLOB, private INTEGER NOT NULL DEFAULT 1,"
    " generation INTEGER NOT NULL DEFAULT 1, wrapped BLOB);"
    "CREATE INDEX objects_zone_label ON objects(zone, label);"
    "CREATE INDEX objects_zone_ckid ON objects(zone, ckid);"
    "CREATE INDEX objects_zone_class ON objects(zone, class);"
    "CREATE TABLE attrs (object INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,"
    " type INTEGER NOT NULL, value BLOB, PRIMARY KEY(object, type)) WITHOUT ROWID;"
    "INSERT INTO meta(key, value) VALUES('schema_version', 1);";

/* A version 1 store with zone 4 (PINs, fail counts) and object 9 of it. */
static void
make_v1_store(void)
{
	char path[400];
	sqlite3 *db = NULL;
	char *msg = NULL;

	ck_assert_int_eq(mkdir(store_dir(), 0700), 0);
	snprintf(path, sizeof(path), "%s/%s", store_dir(), EV_STORE_FILE);
	ck_assert_int_eq(
	    sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
	    SQLITE_OK);
	ck_assert_msg(sqlite3_exec(db, v1_schema, NULL, NULL, &msg) == SQLITE_OK, "%s",
		      msg ? msg : "");
	ck_assert_msg(
	    sqlite3_exec(db,
			 "INSERT INTO zones(id, label, serial, sealed_key, so_pin, user_pin, "
			 "so_fails, user_fails, created) VALUES(4, x'7a6f6e65', 'S4', x'0102', "
			 "'$so', '$user', 2, 3, 1600000000);"
			 "INSERT INTO objects(id, zone, class, key_type, label, ckid, private, "
			 "generation, wrapped) VALUES(9, 4, 4, 31, x'6b', x'01', 1, 5, x'aabb');"
			 "INSERT INTO attrs(object, type, value) VALUES(9, 3, x'6b');",
			 NULL, NULL, &msg) == SQLITE_OK,
	    "%s", msg ? msg : "");
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
}

START_TEST(test_migrate_v1)
{
	ev_store *s = NULL;
	const CK_ATTRIBUTE *at;
	int64_t v = 0;
	ev_zone_rec z;
	ev_obj_rec o;
	char err[256];

	make_v1_store();
	ck_assert_int_eq(raw_int("SELECT count(*) FROM pragma_table_info('zones') "
				 "WHERE name = 'revoked'"),
			 0);
	/* Read-only does no schema work: it asks for one read-write open. */
	ck_assert_int_eq(ev_store_open(store_dir(), EV_STORE_READONLY, &s, err, sizeof(err)),
			 CKR_DEVICE_ERROR);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(strstr(err, "read-write"));

	s = open_store(0);
	ck_assert_int_eq(ev_store_meta_get_int(s, "schema_version", &v), CKR_OK);
	ck_assert_int_eq(v, 6);
	/* The zone and its object are kept as they were. */
	ck_assert_int_eq(ev_store_zone_get(s, 4, &z), CKR_OK);
	ck_assert_mem_eq(z.label, "zone", 4);
	ck_assert_str_eq(z.serial, "S4");
	ck_assert_uint_eq(z.sealed_len, 2);
	ck_assert_mem_eq(z.sealed, "\x01\x02", 2);
	ck_assert_str_eq(z.so_pin, "$so");
	ck_assert_str_eq(z.user_pin, "$user");
	ck_assert_uint_eq(z.so_fails, 2);
	ck_assert_uint_eq(z.user_fails, 3);
	ck_assert_int_eq(z.created, 1600000000);
	ck_assert_int_eq(z.revoked, 0);
	ev_zone_rec_clear(&z);
	ck_assert_int_eq(ev_store_obj_get(s, 9, &o), CKR_OK);
	ck_assert_int_eq(o.zone, 4);
	ck_assert_uint_eq(o.cls, CKO_SECRET_KEY);
	ck_assert_int_eq(o.generation, 5);
	ck_assert_uint_eq(o.wrapped_len, 2);
	ck_assert_mem_eq(o.wrapped, "\xaa\xbb", 2);
	ck_assert_uint_eq(o.attrs->n, 1);
	at = ev_attrs_get(o.attrs, CKA_LABEL);
	ck_assert_ptr_nonnull(at);
	ck_assert_uint_eq(at->ulValueLen, 1);
	ev_obj_rec_clear(&o);
	/* The new parts work on the migrated store. */
	ck_assert_int_eq(ev_store_change_add(s, EV_CHANGE_ZONE_REVOKED, 4, 0), CKR_OK);
	ck_assert_int_eq(ev_store_zone_revoke(s, 4, 1700000000), CKR_OK);
	ev_store_close(s);

	ck_assert_int_eq(raw_int("SELECT count(*) FROM pragma_table_info('zones') "
				 "WHERE name = 'revoked' AND \"notnull\" = 1 AND dflt_value = '0'"),
			 1);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
				 "name IN ('changes', 'revlog', 'revoked')"),
			 3);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
				 "tbl_name = 'revlog' AND sql LIKE '%(digest)%'"),
			 1);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM pragma_foreign_key_list('revoked') "
				 "WHERE \"table\" = 'revlog'"),
			 1);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM pragma_foreign_key_list('revoked')"), 1);
	ck_assert_int_eq(raw_int("SELECT value FROM meta WHERE key = 'schema_version'"), 6);
	ck_assert_int_eq(raw_int("SELECT revoked FROM zones WHERE id = 4"), 1700000000);

	/* Opening again runs no step twice. */
	s = open_store(0);
	ev_store_close(s);
	s = open_store(EV_STORE_READONLY);
	ev_store_close(s);
}
END_TEST

/*
 * The connection the store opens last, caught as SQLite opens it. It
 * starts with secure_delete off, as in an SQLite built without
 * SQLITE_SECURE_DELETE (some distributions turn it on by default): the
 * store must turn it on itself.
 */
static sqlite3 *caught_db;

static int
catch_db(sqlite3 *db, const char **msg, const struct sqlite3_api_routines *api)
{
	(void)msg;
	(void)api;
	caught_db = db;
	return sqlite3_exec(db, "PRAGMA secure_delete = OFF", NULL, NULL, NULL);
}

static void
catch_db_start(void)
{
	ck_assert_int_eq(sqlite3_auto_extension((void (*)(void))catch_db), SQLITE_OK);
}

static void
catch_db_stop(void)
{
	ck_assert_int_eq(sqlite3_cancel_auto_extension((void (*)(void))catch_db), 1);
}

static long long
db_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	long long v;

	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	ck_assert_int_eq(sqlite3_finalize(st), SQLITE_OK);
	return v;
}

START_TEST(test_secure_delete_pragma)
{
	ev_store *s;

	catch_db_start();
	caught_db = NULL;
	s = new_store();
	ck_assert_ptr_nonnull(caught_db);
	ck_assert_int_eq(db_int(caught_db, "PRAGMA secure_delete"), 1);
	ev_store_close(s);

	caught_db = NULL;
	s = open_store(EV_STORE_READONLY);
	ck_assert_ptr_nonnull(caught_db);
	ck_assert_int_eq(db_int(caught_db, "PRAGMA secure_delete"), 1);
	ev_store_close(s);
	catch_db_stop();
}
END_TEST

/* Whether the store file holds these bytes. */
static int
file_has(const void *needle, size_t len)
{
	char path[400];
	unsigned char *buf;
	struct stat sb;
	size_t i;
	FILE *f;
	int found = 0;

	snprintf(path, sizeof(path), "%s/%s", store_dir(), EV_STORE_FILE);
	ck_assert_int_eq(stat(path, &sb), 0);
	buf = malloc((size_t)sb.st_size);
	ck_assert_ptr_nonnull(buf);
	f = fopen(path, "rb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fread(buf, 1, (size_t)sb.st_size, f), (size_t)sb.st_size);
	fclose(f);
	for (i = 0; !found && i + len <= (size_t)sb.st_size; i++)
		found = memcmp(buf + i, needle, len) == 0;
	free(buf);
	return found;
}

/* Revoked secrets are overwritten in the file, not left in free pages. */
START_TEST(test_secure_delete_file)
{
	unsigned char sealed[48], wrapped[64];
	ev_store *s;
	ev_zone_rec z;
	ev_obj_rec o;

	/* Connections start with secure_delete off, whatever SQLite's build default. */
	catch_db_start();
	s = new_store();

	memset(sealed, 0x5a, sizeof(sealed));
	memcpy(sealed, "SEALED-ZONE-KEY!", 16);
	memset(wrapped, 0xa5, sizeof(wrapped));
	memcpy(wrapped, "WRAPPED-OBJ-KEY!", 16);
	memset(&z, 0, sizeof(z));
	z.id = 1;
	z.sealed = sealed;
	z.sealed_len = sizeof(sealed);
	z.so_pin = "$argon2id$SO-PIN-HASH-MARK";
	ck_assert_int_eq(ev_store_zone_insert(s, &z), CKR_OK);
	memset(&o, 0, sizeof(o));
	o.zone = 1;
	o.cls = CKO_SECRET_KEY;
	o.generation = 1;
	o.wrapped = wrapped;
	o.wrapped_len = sizeof(wrapped);
	ck_assert_int_eq(ev_store_obj_insert(s, &o), CKR_OK);
	/* Closing the last connection checkpoints the WAL into the file. */
	ev_store_close(s);
	ck_assert(file_has(sealed, sizeof(sealed)));
	ck_assert(file_has(wrapped, sizeof(wrapped)));
	ck_assert(file_has("SO-PIN-HASH-MARK", 16));

	s = open_store(0);
	ck_assert_int_eq(ev_store_zone_revoke(s, 1, 1700000000), CKR_OK);
	ev_store_close(s);
	ck_assert(!file_has("SEALED-ZONE-KEY!", 16));
	ck_assert(!file_has("WRAPPED-OBJ-KEY!", 16));
	ck_assert(!file_has("SO-PIN-HASH-MARK", 16));
	catch_db_stop();
}
END_TEST

START_TEST(test_zone_revoked_field)
{
	ev_store *s = new_store();
	ev_zone_rec z, g;

	make_zone(s, 1);
	ck_assert_int_eq(ev_store_zone_get(s, 1, &g), CKR_OK);
	ck_assert_int_eq(g.revoked, 0);
	ev_zone_rec_clear(&g);

	memset(&z, 0, sizeof(z));
	z.id = 2;
	z.sealed = (unsigned char *)"k";
	z.sealed_len = 1;
	z.revoked = 1699999999;
	ck_assert_int_eq(ev_store_zone_insert(s, &z), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(s, 2, &g), CKR_OK);
	ck_assert_int_eq(g.revoked, 1699999999);
	ev_zone_rec_clear(&g);
	ck_assert_int_eq(g.revoked, 0);
	ev_store_close(s);
}
END_TEST

START_TEST(test_zone_revoke)
{
	ev_store *s = new_store();
	int64_t a, b, c, other, *ids = NULL;
	CK_ULONG count = 9;
	size_t n = 9;
	ev_zone_rec z;
	ev_obj_rec o;

	make_zone(s, 1);
	make_zone(s, 2);
	ck_assert_int_eq(ev_store_zone_set_pin(s, 1, CKU_SO, "$so"), CKR_OK);
	ck_assert_int_eq(ev_store_zone_set_pin(s, 1, CKU_USER, "$user"), CKR_OK);
	ck_assert_int_eq(ev_store_zone_set_fails(s, 1, CKU_SO, 2), CKR_OK);
	ck_assert_int_eq(ev_store_zone_set_fails(s, 1, CKU_USER, 4), CKR_OK);
	ck_assert_int_eq(ev_store_zone_set_pin(s, 2, CKU_SO, "$so2"), CKR_OK);
	a = make_obj(s, 1, CKO_SECRET_KEY, CKK_AES, "a", "01", 1);
	b = make_obj(s, 1, CKO_DATA, (CK_KEY_TYPE)-1, "b", NULL, 0);
	c = make_obj(s, 1, CKO_PUBLIC_KEY, CKK_EC, "c", NULL, 0);
	other = make_obj(s, 2, CKO_SECRET_KEY, CKK_AES, "a", "01", 1);

	/* Rolled back with the caller's transaction: nothing happened. */
	ck_assert_int_eq(ev_store_begin(s), CKR_OK);
	ck_assert_int_eq(ev_store_zone_revoke(s, 1, 1700000001), CKR_OK);
	ck_assert_int_eq(ev_store_rollback(s), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(s, 1, &z), CKR_OK);
	ck_assert_int_eq(z.revoked, 0);
	ck_assert_uint_eq(z.sealed_len, 5);
	ev_zone_rec_clear(&z);
	ck_assert_int_eq(ev_store_obj_count(s, 1, 1, &count), CKR_OK);
	ck_assert_uint_eq(count, 3);

	ck_assert_int_eq(ev_store_zone_revoke(s, 1, 1700000002), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(s, 1, &z), CKR_OK);
	ck_assert_int_eq(z.id, 1);
	ck_assert_int_eq(z.revoked, 1700000002);
	ck_assert_ptr_nonnull(z.sealed);
	ck_assert_uint_eq(z.sealed_len, 0);
	ck_assert_ptr_null(z.so_pin);
	ck_assert_ptr_null(z.user_pin);
	ck_assert_uint_eq(z.so_fails, 0);
	ck_assert_uint_eq(z.user_fails, 0);
	ck_assert_mem_eq(z.label, "zone", 4);
	ck_assert_str_eq(z.serial, "0000000000000001");
	ck_assert_int_eq(z.created, 1700000000);
	ev_zone_rec_clear(&z);
	/* Its objects are gone, the other zone's are not. */
	ck_assert_int_eq(ev_store_obj_get(s, a, &o), EVR_NOT_FOUND);
	ck_assert_int_eq(ev_store_obj_get(s, b, &o), EVR_NOT_FOUND);
	ck_assert_int_eq(ev_store_obj_get(s, c, &o), EVR_NOT_FOUND);
	ck_assert_int_eq(ev_store_obj_count(s, 1, 1, &count), CKR_OK);
	ck_assert_uint_eq(count, 0);
	ck_assert_int_eq(ev_store_obj_get(s, other, &o), CKR_OK);
	ck_assert_int_eq(o.zone, 2);
	ev_obj_rec_clear(&o);
	ck_assert_int_eq(ev_store_zone_get(s, 2, &z), CKR_OK);
	ck_assert_int_eq(z.revoked, 0);
	ck_assert_uint_eq(z.sealed_len, 5);
	ck_assert_str_eq(z.so_pin, "$so2");
	ev_zone_rec_clear(&z);
	/* The row stays: the id is listed and never given out again. */
	ck_assert_int_eq(ev_store_zone_list(s, &ids, &n), CKR_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(ids[0], 1);
	ck_assert_int_eq(ids[1], 2);
	free(ids);

	/* Again: CKR_OK, and nothing changes (the first time stays). */
	ck_assert_int_eq(ev_store_zone_revoke(s, 1, 1800000000), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(s, 1, &z), CKR_OK);
	ck_assert_int_eq(z.revoked, 1700000002);
	ev_zone_rec_clear(&z);
	/* Absent, and an invalid time. */
	ck_assert_int_eq(ev_store_zone_revoke(s, 9, 1700000000), EVR_NOT_FOUND);
	ck_assert_int_eq(ev_store_zone_revoke(s, 2, 0), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_zone_get(s, 2, &z), CKR_OK);
	ck_assert_int_eq(z.revoked, 0);
	ev_zone_rec_clear(&z);
	/* Failed calls leave no transaction behind. */
	ck_assert_int_eq(ev_store_begin(s), CKR_OK);
	ck_assert_int_eq(ev_store_commit(s), CKR_OK);
	ev_store_close(s);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM objects"), 1);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM attrs WHERE object NOT IN "
				 "(SELECT id FROM objects)"),
			 0);
}
END_TEST

/* Already revoked: even a zone inserted revoked keeps what it has. */
START_TEST(test_zone_revoke_already)
{
	ev_store *s = new_store();
	ev_zone_rec z;
	CK_ULONG count = 0;

	memset(&z, 0, sizeof(z));
	z.id = 3;
	z.sealed = (unsigned char *)"key";
	z.sealed_len = 3;
	z.user_pin = "$u";
	z.revoked = 5;
	ck_assert_int_eq(ev_store_zone_insert(s, &z), CKR_OK);
	make_obj(s, 3, CKO_DATA, (CK_KEY_TYPE)-1, "d", NULL, 0);
	ck_assert_int_eq(ev_store_zone_revoke(s, 3, 1700000000), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(s, 3, &z), CKR_OK);
	ck_assert_int_eq(z.revoked, 5);
	ck_assert_uint_eq(z.sealed_len, 3);
	ck_assert_str_eq(z.user_pin, "$u");
	ev_zone_rec_clear(&z);
	ck_assert_int_eq(ev_store_obj_count(s, 3, 1, &count), CKR_OK);
	ck_assert_uint_eq(count, 1);
	/* Inside a caller's transaction too. */
	ck_assert_int_eq(ev_store_begin(s), CKR_OK);
	ck_assert_int_eq(ev_store_zone_revoke(s, 3, 1700000000), CKR_OK);
	ck_assert_int_eq(ev_store_zone_revoke(s, 8, 1700000000), EVR_NOT_FOUND);
	ck_assert_int_eq(ev_store_commit(s), CKR_OK);
	ev_store_close(s);
}
END_TEST

/* An object of a zone with a generation; label/ckid NULL means absent. */
static int64_t
make_key(ev_store *s, int64_t zone, CK_OBJECT_CLASS cls, const char *label, const char *ckid,
	 int64_t generation, int priv)
{
	ev_obj_rec o;

	memset(&o, 0, sizeof(o));
	o.zone = zone;
	o.cls = cls;
	o.private = priv;
	o.generation = generation;
	o.attrs = ev_attrs_new();
	ck_assert_ptr_nonnull(o.attrs);
	ck_assert_int_eq(ev_attrs_set_ulong(o.attrs, CKA_CLASS, cls), CKR_OK);
	if (label != NULL)
		ck_assert_int_eq(ev_attrs_set(o.attrs, CKA_LABEL, label, strlen(label)), CKR_OK);
	if (ckid != NULL)
		ck_assert_int_eq(ev_attrs_set(o.attrs, CKA_ID, ckid, strlen(ckid)), CKR_OK);
	ck_assert_int_eq(ev_attrs_set_bool(o.attrs, CKA_PRIVATE, priv ? CK_TRUE : CK_FALSE),
			 CKR_OK);
	ck_assert_int_eq(ev_store_obj_insert(s, &o), CKR_OK);
	ev_attrs_free(o.attrs);
	return o.id;
}

/* find_keys into out[] (up to max); the number of hits. */
static size_t
find_keys(ev_store *s, int64_t zone, const char *label, const char *ckid, int64_t gen, int64_t *out,
	  size_t max)
{
	int64_t *ids = (int64_t *)&ids;
	size_t n = 99;

	ck_assert_int_eq(ev_store_obj_find_keys(s, zone, label, label ? strlen(label) : 0, ckid,
						ckid ? strlen(ckid) : 0, gen, &ids, &n),
			 CKR_OK);
	return take_ids(ids, n, out, max);
}

START_TEST(test_obj_find_keys)
{
	ev_store *s = new_store();
	int64_t sk, priv, pub, sk2, empty_id, no_id, hits[8];

	make_zone(s, 1);
	make_zone(s, 2);
	sk = make_key(s, 1, CKO_SECRET_KEY, "k", "01", 1, 1);
	priv = make_key(s, 1, CKO_PRIVATE_KEY, "k", "01", 1, 1);
	pub = make_key(s, 1, CKO_PUBLIC_KEY, "k", "01", 1, 0);
	/* Not keys: never found. */
	make_key(s, 1, CKO_CERTIFICATE, "k", "01", 1, 0);
	make_key(s, 1, CKO_DATA, "k", "01", 1, 0);
	sk2 = make_key(s, 1, CKO_SECRET_KEY, "k", "02", 2, 1);
	empty_id = make_key(s, 1, CKO_SECRET_KEY, "k", "", 1, 1);
	no_id = make_key(s, 1, CKO_SECRET_KEY, "k", NULL, 3, 1);
	/* Other labels, and another zone. */
	make_key(s, 1, CKO_SECRET_KEY, "kk", "01", 1, 1);
	make_key(s, 1, CKO_SECRET_KEY, NULL, "01", 1, 1);
	make_key(s, 1, CKO_SECRET_KEY, "", "01", 1, 1);
	make_key(s, 2, CKO_SECRET_KEY, "k", "01", 1, 1);

	/* Label only: every key of it, private ones included. */
	ck_assert_uint_eq(find_keys(s, 1, "k", NULL, 0, hits, 8), 6);
	ck_assert_int_eq(hits[0], sk);
	ck_assert_int_eq(hits[1], priv);
	ck_assert_int_eq(hits[2], pub);
	ck_assert_int_eq(hits[3], sk2);
	ck_assert_int_eq(hits[4], empty_id);
	ck_assert_int_eq(hits[5], no_id);
	/* CKA_ID. */
	ck_assert_uint_eq(find_keys(s, 1, "k", "01", 0, hits, 8), 3);
	ck_assert_int_eq(hits[0], sk);
	ck_assert_int_eq(hits[1], priv);
	ck_assert_int_eq(hits[2], pub);
	ck_assert_uint_eq(find_keys(s, 1, "k", "02", 0, hits, 8), 1);
	ck_assert_int_eq(hits[0], sk2);
	/* An empty CKA_ID matches the empty one, not an absent one. */
	ck_assert_uint_eq(find_keys(s, 1, "k", "", 0, hits, 8), 1);
	ck_assert_int_eq(hits[0], empty_id);
	/* Generation. */
	ck_assert_uint_eq(find_keys(s, 1, "k", NULL, 2, hits, 8), 1);
	ck_assert_int_eq(hits[0], sk2);
	ck_assert_uint_eq(find_keys(s, 1, "k", NULL, 3, hits, 8), 1);
	ck_assert_int_eq(hits[0], no_id);
	ck_assert_uint_eq(find_keys(s, 1, "k", "02", 2, hits, 8), 1);
	ck_assert_int_eq(hits[0], sk2);
	ck_assert_uint_eq(find_keys(s, 1, "k", "01", 2, hits, 8), 0);
	ck_assert_uint_eq(find_keys(s, 1, "k", NULL, 4, hits, 8), 0);
	/* Labels match exactly; an empty label only the empty one. */
	ck_assert_uint_eq(find_keys(s, 1, "kk", NULL, 0, hits, 8), 1);
	ck_assert_uint_eq(find_keys(s, 1, "", NULL, 0, hits, 8), 1);
	ck_assert_uint_eq(find_keys(s, 1, "x", NULL, 0, hits, 8), 0);
	/* Other zones. */
	ck_assert_uint_eq(find_keys(s, 2, "k", "01", 1, hits, 8), 1);
	ck_assert_uint_eq(find_keys(s, 3, "k", NULL, 0, hits, 8), 0);
	ev_store_close(s);
}
END_TEST

START_TEST(test_meta_int)
{
	static const char nul_inside[] = {'1', '\0', '2'};
	ev_store *s = new_store();
	int64_t v = 0;

	ck_assert_int_eq(ev_store_meta_get_int(s, "n", &v), EVR_NOT_FOUND);
	ck_assert_int_eq(ev_store_meta_set_int(s, "n", 42), CKR_OK);
	ck_assert_int_eq(ev_store_meta_get_int(s, "n", &v), CKR_OK);
	ck_assert_int_eq(v, 42);
	ck_assert_int_eq(ev_store_meta_set_int(s, "n", -7), CKR_OK);
	ck_assert_int_eq(ev_store_meta_get_int(s, "n", &v), CKR_OK);
	ck_assert_int_eq(v, -7);
	ck_assert_int_eq(ev_store_meta_set_int(s, "max", INT64_MAX), CKR_OK);
	ck_assert_int_eq(ev_store_meta_get_int(s, "max", &v), CKR_OK);
	ck_assert(v == INT64_MAX);
	ck_assert_int_eq(ev_store_meta_set_int(s, "min", INT64_MIN), CKR_OK);
	ck_assert_int_eq(ev_store_meta_get_int(s, "min", &v), CKR_OK);
	ck_assert(v == INT64_MIN);
	ck_assert_int_eq(ev_store_meta_set_int(s, "zero", 0), CKR_OK);
	ck_assert_int_eq(ev_store_meta_get_int(s, "zero", &v), CKR_OK);
	ck_assert_int_eq(v, 0);
	/* Kept as decimal text. */
	ck_assert_int_eq(raw_int("SELECT value = '-7' AND typeof(value) = 'text' FROM meta "
				 "WHERE key = 'n'"),
			 1);
	/* Written as bytes: still read when it is decimal. */
	ck_assert_int_eq(ev_store_meta_set(s, "b", "123", 3), CKR_OK);
	ck_assert_int_eq(ev_store_meta_get_int(s, "b", &v), CKR_OK);
	ck_assert_int_eq(v, 123);

	/* Malformed values. */
	v = 5;
	ck_assert_int_eq(ev_store_meta_set(s, "b", "abc", 3), CKR_OK);
	ck_assert_int_eq(ev_store_meta_get_int(s, "b", &v), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_meta_set(s, "b", "", 0), CKR_OK);
	ck_assert_int_eq(ev_store_meta_get_int(s, "b", &v), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_meta_set(s, "b", "12x", 3), CKR_OK);
	ck_assert_int_eq(ev_store_meta_get_int(s, "b", &v), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_meta_set(s, "b", " 1", 2), CKR_OK);
	ck_assert_int_eq(ev_store_meta_get_int(s, "b", &v), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_meta_set(s, "b", "-", 1), CKR_OK);
	ck_assert_int_eq(ev_store_meta_get_int(s, "b", &v), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_meta_set(s, "b", nul_inside, sizeof(nul_inside)), CKR_OK);
	ck_assert_int_eq(ev_store_meta_get_int(s, "b", &v), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_meta_set(s, "b", "9223372036854775808", 19), CKR_OK);
	ck_assert_int_eq(ev_store_meta_get_int(s, "b", &v), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_meta_set(s, "b", "-9223372036854775809", 20), CKR_OK);
	ck_assert_int_eq(ev_store_meta_get_int(s, "b", &v), CKR_DEVICE_ERROR);
	ev_store_close(s);
	raw_sql("INSERT INTO meta(key, value) VALUES('r', 1.5), ('nul', NULL)");
	s = open_store(0);
	ck_assert_int_eq(ev_store_meta_get_int(s, "r", &v), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_meta_get_int(s, "nul", &v), CKR_DEVICE_ERROR);
	ck_assert_int_eq(v, 5);
	ev_store_close(s);
}
END_TEST

START_TEST(test_changes)
{
	ev_store *s = new_store();
	ev_store *b = open_store(0);
	ev_change *v = (ev_change *)&v;
	int64_t last = 99;
	size_t n = 99;
	time_t t0, t1;

	ck_assert_int_eq(ev_store_change_last(s, &last), CKR_OK);
	ck_assert_int_eq(last, 0);
	ck_assert_int_eq(ev_store_change_since(s, 0, 10, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(v);

	t0 = time(NULL);
	ck_assert_int_eq(ev_store_change_add(s, EV_CHANGE_ZONE_CREATED, 1, 0), CKR_OK);
	ck_assert_int_eq(ev_store_change_add(s, EV_CHANGE_OBJECT_UPDATED, 1, 10), CKR_OK);
	ck_assert_int_eq(ev_store_change_add(s, EV_CHANGE_OBJECT_ROTATED, 2, 11), CKR_OK);
	ck_assert_int_eq(ev_store_change_add(s, EV_CHANGE_ZONE_REVOKED, 2, 0), CKR_OK);
	ck_assert_int_eq(ev_store_change_add(s, EV_CHANGE_OBJECT_DESTROYED, 1, 12), CKR_OK);
	t1 = time(NULL);
	ck_assert_int_eq(ev_store_change_last(s, &last), CKR_OK);
	ck_assert_int_eq(last, 5);
	/* Another connection sees the same log. */
	ck_assert_int_eq(ev_store_change_last(b, &last), CKR_OK);
	ck_assert_int_eq(last, 5);

	ck_assert_int_eq(ev_store_change_since(b, 0, 100, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 5);
	ck_assert_int_eq(v[0].seq, 1);
	ck_assert_int_eq(v[0].kind, EV_CHANGE_ZONE_CREATED);
	ck_assert_int_eq(v[0].zone, 1);
	ck_assert_int_eq(v[0].object, 0);
	ck_assert_int_eq(v[2].seq, 3);
	ck_assert_int_eq(v[2].kind, EV_CHANGE_OBJECT_ROTATED);
	ck_assert_int_eq(v[2].zone, 2);
	ck_assert_int_eq(v[2].object, 11);
	ck_assert_int_eq(v[4].seq, 5);
	ck_assert_int_eq(v[4].kind, EV_CHANGE_OBJECT_DESTROYED);
	ck_assert_int_eq(v[4].object, 12);
	free(v);

	/* After and max. */
	ck_assert_int_eq(ev_store_change_since(s, 2, 2, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(v[0].seq, 3);
	ck_assert_int_eq(v[1].seq, 4);
	ck_assert_int_eq(v[1].kind, EV_CHANGE_ZONE_REVOKED);
	free(v);
	ck_assert_int_eq(ev_store_change_since(s, 4, 10, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(v[0].seq, 5);
	free(v);
	ck_assert_int_eq(ev_store_change_since(s, 5, 10, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(v);
	ck_assert_int_eq(ev_store_change_since(s, 0, 0, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(v);
	ck_assert_int_eq(ev_store_change_since(s, -1, (size_t)-1, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 5);
	free(v);

	/* Time is the time of the call. */
	ck_assert_int_ge(raw_int("SELECT min(time) FROM changes"), (long long)t0);
	ck_assert_int_le(raw_int("SELECT max(time) FROM changes"), (long long)t1);

	/* Part of the caller's transaction. */
	ck_assert_int_eq(ev_store_begin(s), CKR_OK);
	ck_assert_int_eq(ev_store_change_add(s, EV_CHANGE_OBJECT_REVOKED, 1, 13), CKR_OK);
	ck_assert_int_eq(ev_store_change_last(b, &last), CKR_OK);
	ck_assert_int_eq(last, 5);
	ck_assert_int_eq(ev_store_commit(s), CKR_OK);
	ck_assert_int_eq(ev_store_change_last(b, &last), CKR_OK);
	ck_assert_int_eq(last, 6);

	/* Unknown kinds are refused. */
	ck_assert_int_eq(ev_store_change_add(s, (ev_change_kind)0, 1, 0), CKR_DEVICE_ERROR);
	ck_assert_int_eq(
	    ev_store_change_add(s, (ev_change_kind)(EV_CHANGE_ZONE_RESEALED + 1), 1, 0),
	    CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_change_last(s, &last), CKR_OK);
	ck_assert_int_eq(last, 6);
	ev_store_close(b);
	ev_store_close(s);

	/* A read-only store cannot add. */
	s = open_store(EV_STORE_READONLY);
	ck_assert_int_eq(ev_store_change_add(s, EV_CHANGE_ZONE_CREATED, 1, 0), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_change_last(s, &last), CKR_OK);
	ck_assert_int_eq(last, 6);
	ev_store_close(s);
}
END_TEST

START_TEST(test_revlog)
{
	ev_store *s = new_store();
	ev_revlog_rec r, *v = (ev_revlog_rec *)&v;
	unsigned char d1[32], d2[32], zero[32];
	size_t n = 99, i;
	int64_t id1, id2;
	int seen = 7;

	memset(zero, 0, sizeof(zero));
	for (i = 0; i < sizeof(d1); i++) {
		d1[i] = (unsigned char)(i + 1);
		d2[i] = (unsigned char)(200 - i);
	}
	ck_assert_int_eq(ev_store_revlog_list(s, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(v);
	ck_assert_int_eq(ev_store_revlog_seen(s, d1, &seen), CKR_OK);
	ck_assert_int_eq(seen, 0);

	memset(&r, 0, sizeof(r));
	r.time = 1700000000;
	r.source = "0001.revlist";
	r.sequence = 17;
	memcpy(r.digest, d1, 32);
	r.applied = 1;
	r.detail = "3 keys";
	ck_assert_int_eq(ev_store_revlog_add(s, &r), CKR_OK);
	id1 = r.id;
	ck_assert_int_gt(id1, 0);

	memset(&r, 0, sizeof(r));
	r.time = 1700000100;
	r.source = "local";
	r.applied = 0;
	r.detail = NULL;
	ck_assert_int_eq(ev_store_revlog_add(s, &r), CKR_OK);
	id2 = r.id;
	ck_assert_int_gt(id2, id1);

	ck_assert_int_eq(ev_store_revlog_seen(s, d1, &seen), CKR_OK);
	ck_assert_int_eq(seen, 1);
	ck_assert_int_eq(ev_store_revlog_seen(s, zero, &seen), CKR_OK);
	ck_assert_int_eq(seen, 1);
	ck_assert_int_eq(ev_store_revlog_seen(s, d2, &seen), CKR_OK);
	ck_assert_int_eq(seen, 0);

	/* A source is required; a failed add assigns no id. */
	memset(&r, 0, sizeof(r));
	r.time = 1;
	memcpy(r.digest, d2, 32);
	ck_assert_int_eq(ev_store_revlog_add(s, &r), CKR_DEVICE_ERROR);
	ck_assert_int_eq(r.id, 0);
	ck_assert_int_eq(ev_store_revlog_seen(s, d2, &seen), CKR_OK);
	ck_assert_int_eq(seen, 0);

	ck_assert_int_eq(ev_store_revlog_list(s, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(v[0].id, id1);
	ck_assert_int_eq(v[0].time, 1700000000);
	ck_assert_str_eq(v[0].source, "0001.revlist");
	ck_assert_int_eq(v[0].sequence, 17);
	ck_assert_mem_eq(v[0].digest, d1, 32);
	ck_assert_int_eq(v[0].applied, 1);
	ck_assert_str_eq(v[0].detail, "3 keys");
	ck_assert_int_eq(v[1].id, id2);
	ck_assert_int_eq(v[1].time, 1700000100);
	ck_assert_str_eq(v[1].source, "local");
	ck_assert_int_eq(v[1].sequence, 0);
	ck_assert_mem_eq(v[1].digest, zero, 32);
	ck_assert_int_eq(v[1].applied, 0);
	ck_assert_ptr_null(v[1].detail);
	for (i = 0; i < n; i++)
		ev_revlog_rec_clear(&v[i]);
	ck_assert_ptr_null(v[0].source);
	free(v);
	ev_revlog_rec_clear(NULL);

	/* A damaged digest is reported, not returned. */
	ev_store_close(s);
	raw_sql("UPDATE revlog SET digest = x'01' WHERE id = 2");
	s = open_store(0);
	v = (ev_revlog_rec *)&v;
	ck_assert_int_eq(ev_store_revlog_list(s, &v, &n), CKR_DEVICE_ERROR);
	ck_assert_ptr_null(v);
	ck_assert_uint_eq(n, 0);
	ev_store_close(s);
}
END_TEST

START_TEST(test_revoked)
{
	ev_store *s = new_store();
	ev_revoked_rec r, *v = (ev_revoked_rec *)&v;
	ev_revlog_rec l;
	int64_t id1, id2, id3;
	size_t n = 99, i;

	ck_assert_int_eq(ev_store_revoked_list(s, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(v);

	memset(&l, 0, sizeof(l));
	l.time = 1700000000;
	l.source = "local";
	l.applied = 1;
	ck_assert_int_eq(ev_store_revlog_add(s, &l), CKR_OK);

	/* A key of a zone that does not exist: history has no reference to zones. */
	memset(&r, 0, sizeof(r));
	r.time = 1700000001;
	r.log = l.id;
	r.kind = 1;
	r.zone = 5;
	r.object = 77;
	r.label = (unsigned char *)"key";
	r.label_len = 3;
	r.ckid = (unsigned char *)"\x00\x01";
	r.ckid_len = 2;
	r.generation = 3;
	r.reason = "compromised";
	ck_assert_int_eq(ev_store_revoked_add(s, &r), CKR_OK);
	id1 = r.id;
	ck_assert_int_gt(id1, 0);

	/* A zone: no label, no CKA_ID. */
	memset(&r, 0, sizeof(r));
	r.time = 1700000002;
	r.log = l.id;
	r.kind = 2;
	r.zone = 6;
	r.reason = "";
	ck_assert_int_eq(ev_store_revoked_add(s, &r), CKR_OK);
	id2 = r.id;
	ck_assert_int_gt(id2, id1);

	/* Empty label and CKA_ID stay empty, not absent. */
	memset(&r, 0, sizeof(r));
	r.time = 1700000003;
	r.log = l.id;
	r.kind = 1;
	r.zone = 5;
	r.object = 78;
	r.label = (unsigned char *)"";
	r.label_len = 0;
	r.ckid = (unsigned char *)"";
	r.ckid_len = 0;
	r.generation = 1;
	r.reason = "rotated";
	ck_assert_int_eq(ev_store_revoked_add(s, &r), CKR_OK);
	id3 = r.id;

	/* An unknown log, or no reason: refused, no id. */
	r.id = 0;
	r.log = l.id + 1;
	ck_assert_int_eq(ev_store_revoked_add(s, &r), CKR_DEVICE_ERROR);
	ck_assert_int_eq(r.id, 0);
	r.log = l.id;
	r.reason = NULL;
	ck_assert_int_eq(ev_store_revoked_add(s, &r), CKR_DEVICE_ERROR);
	ck_assert_int_eq(r.id, 0);

	ck_assert_int_eq(ev_store_revoked_list(s, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(v[0].id, id1);
	ck_assert_int_eq(v[0].time, 1700000001);
	ck_assert_int_eq(v[0].log, l.id);
	ck_assert_int_eq(v[0].kind, 1);
	ck_assert_int_eq(v[0].zone, 5);
	ck_assert_int_eq(v[0].object, 77);
	ck_assert_uint_eq(v[0].label_len, 3);
	ck_assert_mem_eq(v[0].label, "key", 3);
	ck_assert_uint_eq(v[0].ckid_len, 2);
	ck_assert_mem_eq(v[0].ckid, "\x00\x01", 2);
	ck_assert_int_eq(v[0].generation, 3);
	ck_assert_str_eq(v[0].reason, "compromised");
	ck_assert_int_eq(v[1].id, id2);
	ck_assert_int_eq(v[1].kind, 2);
	ck_assert_int_eq(v[1].zone, 6);
	ck_assert_int_eq(v[1].object, 0);
	ck_assert_ptr_null(v[1].label);
	ck_assert_uint_eq(v[1].label_len, 0);
	ck_assert_ptr_null(v[1].ckid);
	ck_assert_uint_eq(v[1].ckid_len, 0);
	ck_assert_int_eq(v[1].generation, 0);
	ck_assert_str_eq(v[1].reason, "");
	ck_assert_int_eq(v[2].id, id3);
	ck_assert_ptr_nonnull(v[2].label);
	ck_assert_uint_eq(v[2].label_len, 0);
	ck_assert_ptr_nonnull(v[2].ckid);
	ck_assert_uint_eq(v[2].ckid_len, 0);
	ck_assert_str_eq(v[2].reason, "rotated");
	for (i = 0; i < n; i++)
		ev_revoked_rec_clear(&v[i]);
	ck_assert_ptr_null(v[0].label);
	free(v);
	ev_revoked_rec_clear(NULL);

	/* History outlives zones. */
	make_zone(s, 6);
	ck_assert_int_eq(ev_store_zone_delete(s, 6), CKR_OK);
	ck_assert_int_eq(ev_store_revoked_list(s, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 3);
	for (i = 0; i < n; i++)
		ev_revoked_rec_clear(&v[i]);
	free(v);
	ev_store_close(s);
}
END_TEST

/*
 * Insert an object with its lineage: label NULL means absent, wrapped
 * NULL none. created 0 lets the store set it. Returns its id.
 */
static int64_t
make_gen(ev_store *s, int64_t zone, CK_OBJECT_CLASS cls, const char *label, int64_t generation,
	 int64_t origin, int64_t created, const char *wrapped)
{
	ev_obj_rec o;

	memset(&o, 0, sizeof(o));
	o.zone = zone;
	o.cls = cls;
	o.private = cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY;
	o.generation = generation;
	o.origin = origin;
	o.created = created;
	if (wrapped != NULL) {
		o.wrapped = (unsigned char *)wrapped;
		o.wrapped_len = strlen(wrapped);
	}
	o.attrs = ev_attrs_new();
	ck_assert_ptr_nonnull(o.attrs);
	ck_assert_int_eq(ev_attrs_set_ulong(o.attrs, CKA_CLASS, cls), CKR_OK);
	if (label != NULL)
		ck_assert_int_eq(ev_attrs_set(o.attrs, CKA_LABEL, label, strlen(label)), CKR_OK);
	ck_assert_int_eq(ev_attrs_set_bool(o.attrs, CKA_PRIVATE, o.private ? CK_TRUE : CK_FALSE),
			 CKR_OK);
	ck_assert_int_eq(ev_store_obj_insert(s, &o), CKR_OK);
	ck_assert_int_gt(o.id, 0);
	ev_attrs_free(o.attrs);
	return o.id;
}

/* Check an id list (ascending, NULL when empty) against want[], then free it. */
static void
expect_ids(int64_t *ids, size_t n, const int64_t *want, size_t nwant)
{
	size_t i;

	ck_assert_uint_eq(n, nwant);
	if (n == 0)
		ck_assert_ptr_null(ids);
	for (i = 0; i < n; i++)
		ck_assert_int_eq(ids[i], want[i]);
	free(ids);
}

START_TEST(test_obj_lineage)
{
	ev_store *s = new_store();
	ev_obj_rec o, g;
	time_t t0, t1;

	make_zone(s, 1);
	memset(&o, 0, sizeof(o));
	o.zone = 1;
	o.cls = CKO_SECRET_KEY;
	o.private = 1;
	o.generation = 3;
	o.origin = 41;
	o.previous = 2;
	o.created = 1700000000;
	o.retired = 1700000500;
	o.destroy_at = 1700086900;
	ck_assert_int_eq(ev_store_obj_insert(s, &o), CKR_OK);
	ck_assert_int_eq(o.created, 1700000000);
	ck_assert_int_eq(ev_store_obj_get(s, o.id, &g), CKR_OK);
	ck_assert_int_eq(g.generation, 3);
	ck_assert_int_eq(g.origin, 41);
	ck_assert_int_eq(g.previous, 2);
	ck_assert_int_eq(g.created, 1700000000);
	ck_assert_int_eq(g.retired, 1700000500);
	ck_assert_int_eq(g.destroy_at, 1700086900);
	ev_obj_rec_clear(&g);

	/* Created 0: the store takes the time of the insert, and says so in o. */
	memset(&o, 0, sizeof(o));
	o.zone = 1;
	o.cls = CKO_DATA;
	o.generation = 1;
	t0 = time(NULL);
	ck_assert_int_eq(ev_store_obj_insert(s, &o), CKR_OK);
	t1 = time(NULL);
	ck_assert_int_ge(o.created, (int64_t)t0);
	ck_assert_int_le(o.created, (int64_t)t1);
	ck_assert_int_eq(ev_store_obj_get(s, o.id, &g), CKR_OK);
	ck_assert_int_eq(g.created, o.created);
	ck_assert_int_eq(g.origin, 0);
	ck_assert_int_eq(g.previous, 0);
	ck_assert_int_eq(g.retired, 0);
	ck_assert_int_eq(g.destroy_at, 0);
	ev_obj_rec_clear(&g);

	/* A failed insert leaves o as it was. */
	memset(&o, 0, sizeof(o));
	o.zone = 99;
	o.cls = CKO_DATA;
	o.generation = 1;
	ck_assert_int_eq(ev_store_obj_insert(s, &o), CKR_DEVICE_ERROR);
	ck_assert_int_eq(o.id, 0);
	ck_assert_int_eq(o.created, 0);
	ev_store_close(s);
}
END_TEST

START_TEST(test_obj_retire)
{
	ev_store *s = new_store();
	ev_store *b = open_store(0);
	int64_t k, other;
	ev_obj_rec g;

	make_zone(s, 1);
	k = make_gen(s, 1, CKO_SECRET_KEY, "k", 1, 0, 100, "blob");
	other = make_gen(s, 1, CKO_SECRET_KEY, "k", 2, 0, 200, "blob2");
	ck_assert_int_eq(ev_store_obj_retire(s, k, 1700000000, 1700086400), CKR_OK);
	ck_assert_int_eq(ev_store_obj_get(b, k, &g), CKR_OK);
	ck_assert_int_eq(g.retired, 1700000000);
	ck_assert_int_eq(g.destroy_at, 1700086400);
	/* Nothing else changes: material, lineage, attributes. */
	ck_assert_int_eq(g.created, 100);
	ck_assert_int_eq(g.generation, 1);
	ck_assert_uint_eq(g.wrapped_len, 4);
	ck_assert_mem_eq(g.wrapped, "blob", 4);
	ck_assert_ptr_nonnull(ev_attrs_get(g.attrs, CKA_LABEL));
	ev_obj_rec_clear(&g);
	ck_assert_int_eq(ev_store_obj_get(s, other, &g), CKR_OK);
	ck_assert_int_eq(g.retired, 0);
	ck_assert_int_eq(g.destroy_at, 0);
	ev_obj_rec_clear(&g);

	/* Again: the new times replace the old. A grace period of 0 is allowed. */
	ck_assert_int_eq(ev_store_obj_retire(s, k, 1700000001, 1700000001), CKR_OK);
	ck_assert_int_eq(ev_store_obj_get(s, k, &g), CKR_OK);
	ck_assert_int_eq(g.retired, 1700000001);
	ck_assert_int_eq(g.destroy_at, 1700000001);
	ev_obj_rec_clear(&g);

	/* Absent, and times that would read as "current". */
	ck_assert_int_eq(ev_store_obj_retire(s, 9999, 1700000000, 1700086400), EVR_NOT_FOUND);
	ck_assert_int_eq(ev_store_obj_retire(s, other, 0, 1700086400), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_obj_retire(s, other, -5, 1700086400), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_obj_retire(s, other, 1700000000, -1), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_obj_get(s, other, &g), CKR_OK);
	ck_assert_int_eq(g.retired, 0);
	ev_obj_rec_clear(&g);

	/* Part of the caller's transaction. */
	ck_assert_int_eq(ev_store_begin(s), CKR_OK);
	ck_assert_int_eq(ev_store_obj_retire(s, other, 1700000002, 1700000003), CKR_OK);
	ck_assert_int_eq(ev_store_rollback(s), CKR_OK);
	ck_assert_int_eq(ev_store_obj_get(s, other, &g), CKR_OK);
	ck_assert_int_eq(g.retired, 0);
	ev_obj_rec_clear(&g);
	ev_store_close(b);
	ev_store_close(s);
}
END_TEST

START_TEST(test_obj_find_retired)
{
	ev_store *s = new_store();
	int64_t g1, g2, g3, pub1, pub2, other, hits[8], *ids = NULL;
	ev_obj_query q;
	size_t n = 0;

	make_zone(s, 1);
	make_zone(s, 2);
	g1 = make_gen(s, 1, CKO_SECRET_KEY, "k", 1, 0, 0, "a");
	g2 = make_gen(s, 1, CKO_SECRET_KEY, "k", 2, 0, 0, "b");
	g3 = make_gen(s, 1, CKO_SECRET_KEY, "k", 3, 0, 0, "c");
	pub1 = make_gen(s, 1, CKO_PUBLIC_KEY, "p", 1, 0, 0, NULL);
	pub2 = make_gen(s, 1, CKO_PUBLIC_KEY, "p", 2, 0, 0, NULL);
	other = make_gen(s, 2, CKO_SECRET_KEY, "k", 1, 0, 0, "d");
	ck_assert_int_eq(ev_store_obj_retire(s, g1, 1000, 2000), CKR_OK);
	ck_assert_int_eq(ev_store_obj_retire(s, g2, 1000, 2000), CKR_OK);
	ck_assert_int_eq(ev_store_obj_retire(s, pub1, 1000, 2000), CKR_OK);
	ck_assert_int_eq(ev_store_obj_retire(s, other, 1000, 2000), CKR_OK);

	/* Without a generation: current objects only, with every other filter. */
	memset(&q, 0, sizeof(q));
	q.zone = 1;
	q.include_private = 1;
	ck_assert_uint_eq(find(s, &q, hits, 8), 2);
	ck_assert_int_eq(hits[0], g3);
	ck_assert_int_eq(hits[1], pub2);
	q.include_private = 0;
	ck_assert_uint_eq(find(s, &q, hits, 8), 1);
	ck_assert_int_eq(hits[0], pub2);
	q.include_private = 1;
	q.has_label = 1;
	q.label = "k";
	q.label_len = 1;
	ck_assert_uint_eq(find(s, &q, hits, 8), 1);
	ck_assert_int_eq(hits[0], g3);
	q.has_class = 1;
	q.cls = CKO_SECRET_KEY;
	ck_assert_uint_eq(find(s, &q, hits, 8), 1);
	ck_assert_int_eq(hits[0], g3);
	q.has_label = 0;
	ck_assert_uint_eq(find(s, &q, hits, 8), 1);
	q.zone = 2;
	ck_assert_uint_eq(find(s, &q, hits, 8), 0);

	/* With a generation: that generation, retired or not. */
	memset(&q, 0, sizeof(q));
	q.zone = 1;
	q.include_private = 1;
	q.has_generation = 1;
	q.generation = 1;
	ck_assert_uint_eq(find(s, &q, hits, 8), 2);
	ck_assert_int_eq(hits[0], g1);
	ck_assert_int_eq(hits[1], pub1);
	q.generation = 3;
	ck_assert_uint_eq(find(s, &q, hits, 8), 1);
	ck_assert_int_eq(hits[0], g3);
	q.generation = 2;
	q.has_label = 1;
	q.label = "k";
	q.label_len = 1;
	ck_assert_uint_eq(find(s, &q, hits, 8), 1);
	ck_assert_int_eq(hits[0], g2);
	q.has_class = 1;
	q.cls = CKO_PUBLIC_KEY;
	ck_assert_uint_eq(find(s, &q, hits, 8), 0);
	q.has_label = 0;
	ck_assert_uint_eq(find(s, &q, hits, 8), 1);
	ck_assert_int_eq(hits[0], pub2);
	/* The private filter still applies. */
	q.has_class = 0;
	q.include_private = 0;
	q.generation = 1;
	ck_assert_uint_eq(find(s, &q, hits, 8), 1);
	ck_assert_int_eq(hits[0], pub1);
	q.generation = 4;
	q.include_private = 1;
	ck_assert_uint_eq(find(s, &q, hits, 8), 0);
	q.zone = 2;
	q.generation = 1;
	ck_assert_uint_eq(find(s, &q, hits, 8), 1);
	ck_assert_int_eq(hits[0], other);

	/* Revocation's lookup sees every generation, retired ones included. */
	ck_assert_int_eq(ev_store_obj_find_keys(s, 1, "k", 1, NULL, 0, 0, &ids, &n), CKR_OK);
	expect_ids(ids, n, (const int64_t[]){g1, g2, g3}, 3);
	ck_assert_int_eq(ev_store_obj_find_keys(s, 1, "p", 1, NULL, 0, 1, &ids, &n), CKR_OK);
	expect_ids(ids, n, (const int64_t[]){pub1}, 1);
	ev_store_close(s);
}
END_TEST

START_TEST(test_obj_find_retired_many)
{
	ev_store *s = new_store();
	int64_t hits[2], target = 0, id;
	ev_obj_query q;
	char label[32];
	int i;

	/* Many retired objects and one current one: still exact. */
	make_zone(s, 1);
	ck_assert_int_eq(ev_store_begin(s), CKR_OK);
	for (i = 0; i < 1000; i++) {
		snprintf(label, sizeof(label), "key-%d", i % 10);
		id = make_gen(s, 1, CKO_SECRET_KEY, label, i / 10 + 1, 0, 0, "w");
		if (i == 995)
			target = id;
		else
			ck_assert_int_eq(ev_store_obj_retire(s, id, 1, 2), CKR_OK);
	}
	ck_assert_int_eq(ev_store_commit(s), CKR_OK);
	memset(&q, 0, sizeof(q));
	q.zone = 1;
	q.include_private = 1;
	ck_assert_uint_eq(find(s, &q, hits, 2), 1);
	ck_assert_int_eq(hits[0], target);
	q.has_label = 1;
	q.label = "key-5";
	q.label_len = 5;
	ck_assert_uint_eq(find(s, &q, hits, 2), 1);
	ck_assert_int_eq(hits[0], target);
	q.has_generation = 1;
	q.generation = 100;
	ck_assert_uint_eq(find(s, &q, hits, 2), 1);
	ck_assert_int_eq(hits[0], target);
	q.generation = 99;
	ck_assert_uint_eq(find(s, &q, hits, 2), 1);
	ck_assert_int_ne(hits[0], target);
	ev_store_close(s);
}
END_TEST

START_TEST(test_obj_copies)
{
	ev_store *s = new_store();
	int64_t src, c1, c2, unrelated, *ids = (int64_t *)&ids;
	size_t n = 99;

	make_zone(s, 1);
	src = make_gen(s, 1, CKO_SECRET_KEY, "k", 1, 0, 0, "w");
	unrelated = make_gen(s, 1, CKO_SECRET_KEY, "k", 1, 0, 0, "w");
	c1 = make_gen(s, 1, CKO_SECRET_KEY, "copy", 1, src, 0, "w");
	/* A copy of a copy names the first source too (origin is transitive). */
	c2 = make_gen(s, 1, CKO_SECRET_KEY, "copy2", 1, src, 0, "w");
	ck_assert_int_eq(ev_store_obj_retire(s, c2, 10, 20), CKR_OK);

	/* Retired copies included: a copy retires with its source. */
	ck_assert_int_eq(ev_store_obj_copies(s, src, &ids, &n), CKR_OK);
	expect_ids(ids, n, (const int64_t[]){c1, c2}, 2);
	ids = (int64_t *)&ids;
	ck_assert_int_eq(ev_store_obj_copies(s, unrelated, &ids, &n), CKR_OK);
	expect_ids(ids, n, NULL, 0);
	ck_assert_int_eq(ev_store_obj_copies(s, c1, &ids, &n), CKR_OK);
	expect_ids(ids, n, NULL, 0);
	ck_assert_int_eq(ev_store_obj_copies(s, 9999, &ids, &n), CKR_OK);
	expect_ids(ids, n, NULL, 0);
	/* 0 is "not a copy", never a source. */
	ids = (int64_t *)&ids;
	n = 99;
	ck_assert_int_eq(ev_store_obj_copies(s, 0, &ids, &n), CKR_OK);
	expect_ids(ids, n, NULL, 0);
	/* The source gone, its copies still name it. */
	ck_assert_int_eq(ev_store_obj_delete(s, src), CKR_OK);
	ck_assert_int_eq(ev_store_obj_copies(s, src, &ids, &n), CKR_OK);
	expect_ids(ids, n, (const int64_t[]){c1, c2}, 2);
	ev_store_close(s);
}
END_TEST

START_TEST(test_obj_rotatable)
{
	ev_store *s = new_store();
	int64_t priv, sec, sec_old, other, *ids = (int64_t *)&ids;
	size_t n = 99;

	make_zone(s, 1);
	make_zone(s, 2);
	priv = make_gen(s, 1, CKO_PRIVATE_KEY, "ec", 1, 0, 100, "w");
	make_gen(s, 1, CKO_PUBLIC_KEY, "ec", 1, 0, 100, NULL);
	sec = make_gen(s, 1, CKO_SECRET_KEY, "aes", 2, 0, 200, "w");
	sec_old = make_gen(s, 1, CKO_SECRET_KEY, "aes", 1, 0, 50, "w");
	ck_assert_int_eq(ev_store_obj_retire(s, sec_old, 200, 300), CKR_OK);
	make_gen(s, 1, CKO_CERTIFICATE, "ec", 1, 0, 100, NULL);
	make_gen(s, 1, CKO_DATA, "d", 1, 0, 100, NULL);
	/* Copies rotate with their source, never on their own. */
	make_gen(s, 1, CKO_SECRET_KEY, "aes-copy", 2, sec, 100, "w");
	make_gen(s, 1, CKO_PRIVATE_KEY, "ec-copy", 1, priv, 100, "w");
	other = make_gen(s, 2, CKO_SECRET_KEY, "aes", 1, 0, 100, "w");

	ck_assert_int_eq(ev_store_obj_rotatable(s, 1, INT64_MAX, &ids, &n), CKR_OK);
	expect_ids(ids, n, (const int64_t[]){priv, sec}, 2);
	/* Made before: created < made_before, exactly. */
	ck_assert_int_eq(ev_store_obj_rotatable(s, 1, 201, &ids, &n), CKR_OK);
	expect_ids(ids, n, (const int64_t[]){priv, sec}, 2);
	ck_assert_int_eq(ev_store_obj_rotatable(s, 1, 200, &ids, &n), CKR_OK);
	expect_ids(ids, n, (const int64_t[]){priv}, 1);
	ck_assert_int_eq(ev_store_obj_rotatable(s, 1, 101, &ids, &n), CKR_OK);
	expect_ids(ids, n, (const int64_t[]){priv}, 1);
	ids = (int64_t *)&ids;
	n = 99;
	ck_assert_int_eq(ev_store_obj_rotatable(s, 1, 100, &ids, &n), CKR_OK);
	expect_ids(ids, n, NULL, 0);
	/* Other zones. */
	ck_assert_int_eq(ev_store_obj_rotatable(s, 2, INT64_MAX, &ids, &n), CKR_OK);
	expect_ids(ids, n, (const int64_t[]){other}, 1);
	ck_assert_int_eq(ev_store_obj_rotatable(s, 3, INT64_MAX, &ids, &n), CKR_OK);
	expect_ids(ids, n, NULL, 0);
	/* A retired key is no longer a candidate. */
	ck_assert_int_eq(ev_store_obj_retire(s, priv, 300, 400), CKR_OK);
	ck_assert_int_eq(ev_store_obj_rotatable(s, 1, INT64_MAX, &ids, &n), CKR_OK);
	expect_ids(ids, n, (const int64_t[]){sec}, 1);
	ev_store_close(s);
}
END_TEST

START_TEST(test_obj_expired)
{
	ev_store *s = new_store();
	int64_t a, b, c, cur, when = 99, *ids = (int64_t *)&ids;
	size_t n = 99;

	make_zone(s, 1);
	make_zone(s, 2);
	ck_assert_int_eq(ev_store_obj_next_destroy(s, &when), CKR_OK);
	ck_assert_int_eq(when, 0);
	ck_assert_int_eq(ev_store_obj_expired(s, INT64_MAX, &ids, &n), CKR_OK);
	expect_ids(ids, n, NULL, 0);

	a = make_gen(s, 1, CKO_SECRET_KEY, "a", 1, 0, 0, "w");
	b = make_gen(s, 1, CKO_SECRET_KEY, "b", 1, 0, 0, "w");
	c = make_gen(s, 2, CKO_SECRET_KEY, "c", 1, 0, 0, "w");
	cur = make_gen(s, 1, CKO_SECRET_KEY, "cur", 1, 0, 0, "w");
	(void)cur;
	/* Current objects (destroy_at 0) are never expired, nor the next to go. */
	ck_assert_int_eq(ev_store_obj_next_destroy(s, &when), CKR_OK);
	ck_assert_int_eq(when, 0);
	ck_assert_int_eq(ev_store_obj_expired(s, INT64_MAX, &ids, &n), CKR_OK);
	expect_ids(ids, n, NULL, 0);

	ck_assert_int_eq(ev_store_obj_retire(s, c, 50, 200), CKR_OK);
	ck_assert_int_eq(ev_store_obj_retire(s, a, 50, 100), CKR_OK);
	ck_assert_int_eq(ev_store_obj_retire(s, b, 50, 200), CKR_OK);
	ck_assert_int_eq(ev_store_obj_next_destroy(s, &when), CKR_OK);
	ck_assert_int_eq(when, 100);

	/* destroy_at == now is expired; any zone. */
	ids = (int64_t *)&ids;
	n = 99;
	ck_assert_int_eq(ev_store_obj_expired(s, 99, &ids, &n), CKR_OK);
	expect_ids(ids, n, NULL, 0);
	ck_assert_int_eq(ev_store_obj_expired(s, 100, &ids, &n), CKR_OK);
	expect_ids(ids, n, (const int64_t[]){a}, 1);
	ck_assert_int_eq(ev_store_obj_expired(s, 199, &ids, &n), CKR_OK);
	expect_ids(ids, n, (const int64_t[]){a}, 1);
	ck_assert_int_eq(ev_store_obj_expired(s, 200, &ids, &n), CKR_OK);
	expect_ids(ids, n, (const int64_t[]){a, b, c}, 3);

	/* The sweep deletes; the next one is then the later group. */
	ck_assert_int_eq(ev_store_obj_delete(s, a), CKR_OK);
	ck_assert_int_eq(ev_store_obj_next_destroy(s, &when), CKR_OK);
	ck_assert_int_eq(when, 200);
	ck_assert_int_eq(ev_store_obj_delete(s, b), CKR_OK);
	ck_assert_int_eq(ev_store_obj_delete(s, c), CKR_OK);
	ck_assert_int_eq(ev_store_obj_next_destroy(s, &when), CKR_OK);
	ck_assert_int_eq(when, 0);

	/* Retired with no grace at all (destroy_at 0): overdue, not "none". */
	a = make_gen(s, 1, CKO_SECRET_KEY, "a", 2, 0, 0, "w");
	ck_assert_int_eq(ev_store_obj_retire(s, a, 50, 0), CKR_OK);
	ck_assert_int_eq(ev_store_obj_next_destroy(s, &when), CKR_OK);
	ck_assert_int_eq(when, 1);
	ck_assert_int_eq(ev_store_obj_expired(s, 1, &ids, &n), CKR_OK);
	expect_ids(ids, n, (const int64_t[]){a}, 1);
	ev_store_close(s);
}
END_TEST

START_TEST(test_obj_wrapped_ids)
{
	ev_store *s = new_store();
	int64_t a, b, retired, nothing, *ids = (int64_t *)&ids;
	size_t n = 99;

	make_zone(s, 1);
	make_zone(s, 2);
	ck_assert_int_eq(ev_store_obj_wrapped_ids(s, 1, &ids, &n), CKR_OK);
	expect_ids(ids, n, NULL, 0);
	a = make_gen(s, 1, CKO_SECRET_KEY, "a", 1, 0, 0, "w1");
	nothing = make_gen(s, 1, CKO_PUBLIC_KEY, "a", 1, 0, 0, NULL);
	retired = make_gen(s, 1, CKO_PRIVATE_KEY, "r", 1, 0, 0, "w2");
	b = make_gen(s, 1, CKO_PRIVATE_KEY, "b", 1, 0, 0, NULL);
	make_gen(s, 2, CKO_SECRET_KEY, "a", 1, 0, 0, "w3");
	ck_assert_int_eq(ev_store_obj_retire(s, retired, 10, 20), CKR_OK);
	/* Material set later, in the insert's transaction, counts too. */
	ck_assert_int_eq(ev_store_obj_set_wrapped(s, b, (const unsigned char *)"w4", 2), CKR_OK);

	ck_assert_int_eq(ev_store_obj_wrapped_ids(s, 1, &ids, &n), CKR_OK);
	expect_ids(ids, n, (const int64_t[]){a, retired, b}, 3);
	/* Cleared material does not. */
	ck_assert_int_eq(ev_store_obj_set_wrapped(s, a, NULL, 0), CKR_OK);
	ck_assert_int_eq(ev_store_obj_wrapped_ids(s, 1, &ids, &n), CKR_OK);
	expect_ids(ids, n, (const int64_t[]){retired, b}, 2);
	ck_assert_int_eq(ev_store_obj_wrapped_ids(s, 2, &ids, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	free(ids);
	ck_assert_int_eq(ev_store_obj_wrapped_ids(s, 3, &ids, &n), CKR_OK);
	expect_ids(ids, n, NULL, 0);
	(void)nothing;
	ev_store_close(s);
}
END_TEST

/* Every key object of a zone, retired public halves without material too; no other class. */
START_TEST(test_obj_key_ids)
{
	ev_store *s = new_store();
	int64_t priv, pub, rpriv, rpub, sec, *ids = (int64_t *)&ids;
	size_t n = 99;

	make_zone(s, 1);
	make_zone(s, 2);
	ck_assert_int_eq(ev_store_obj_key_ids(s, 1, &ids, &n), CKR_OK);
	expect_ids(ids, n, NULL, 0);
	rpriv = make_gen(s, 1, CKO_PRIVATE_KEY, "k", 1, 0, 0, "w1");
	rpub = make_gen(s, 1, CKO_PUBLIC_KEY, "k", 1, 0, 0, NULL);
	priv = make_gen(s, 1, CKO_PRIVATE_KEY, "k", 2, 0, 0, "w2");
	pub = make_gen(s, 1, CKO_PUBLIC_KEY, "k", 2, 0, 0, NULL);
	make_gen(s, 1, CKO_DATA, "d", 1, 0, 0, NULL);
	make_gen(s, 1, CKO_CERTIFICATE, "c", 1, 0, 0, NULL);
	sec = make_gen(s, 1, CKO_SECRET_KEY, NULL, 1, 0, 0, NULL);
	make_gen(s, 2, CKO_SECRET_KEY, "z2", 1, 0, 0, "w3");
	ck_assert_int_eq(ev_store_obj_retire(s, rpriv, 10, 20), CKR_OK);
	ck_assert_int_eq(ev_store_obj_retire(s, rpub, 10, 20), CKR_OK);

	ck_assert_int_eq(ev_store_obj_key_ids(s, 1, &ids, &n), CKR_OK);
	expect_ids(ids, n, (const int64_t[]){rpriv, rpub, priv, pub, sec}, 5);
	ck_assert_int_eq(ev_store_obj_key_ids(s, 2, &ids, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	free(ids);
	ck_assert_int_eq(ev_store_obj_key_ids(s, 3, &ids, &n), CKR_OK);
	expect_ids(ids, n, NULL, 0);
	ev_store_close(s);
}
END_TEST

START_TEST(test_zone_set_sealed)
{
	static const unsigned char blob[] = {9, 8, 0, 7, 6, 5};
	ev_store *s = new_store();
	ev_store *b = open_store(0);
	ev_zone_rec z;

	make_zone(s, 1);
	make_zone(s, 2);
	ck_assert_int_eq(ev_store_zone_set_sealed(s, 1, blob, sizeof(blob)), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(b, 1, &z), CKR_OK);
	ck_assert_uint_eq(z.sealed_len, sizeof(blob));
	ck_assert_mem_eq(z.sealed, blob, sizeof(blob));
	/* The rest of the zone is untouched. */
	ck_assert_str_eq(z.serial, "0000000000000001");
	ck_assert_int_eq(z.created, 1700000000);
	ev_zone_rec_clear(&z);
	ck_assert_int_eq(ev_store_zone_get(b, 2, &z), CKR_OK);
	ck_assert_uint_eq(z.sealed_len, 5);
	ev_zone_rec_clear(&z);

	ck_assert_int_eq(ev_store_zone_set_sealed(s, 3, blob, sizeof(blob)), EVR_NOT_FOUND);
	/* An empty key would read as revoked. */
	ck_assert_int_eq(ev_store_zone_set_sealed(s, 2, blob, 0), CKR_DEVICE_ERROR);
	ck_assert_int_eq(ev_store_zone_set_sealed(s, 2, NULL, 4), CKR_DEVICE_ERROR);
	/* A revoked zone's key stays destroyed. */
	ck_assert_int_eq(ev_store_zone_revoke(s, 2, 1700000100), CKR_OK);
	ck_assert_int_eq(ev_store_zone_set_sealed(s, 2, blob, sizeof(blob)), EVR_NOT_FOUND);
	ck_assert_int_eq(ev_store_zone_get(b, 2, &z), CKR_OK);
	ck_assert_uint_eq(z.sealed_len, 0);
	ev_zone_rec_clear(&z);

	/* Part of the caller's transaction. */
	ck_assert_int_eq(ev_store_begin(s), CKR_OK);
	ck_assert_int_eq(ev_store_zone_set_sealed(s, 1, (const unsigned char *)"x", 1), CKR_OK);
	ck_assert_int_eq(ev_store_rollback(s), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(s, 1, &z), CKR_OK);
	ck_assert_mem_eq(z.sealed, blob, sizeof(blob));
	ev_zone_rec_clear(&z);
	ev_store_close(b);
	ev_store_close(s);
}
END_TEST

START_TEST(test_zone_so_sealed)
{
	static const unsigned char main_blob[] = {3, 1, 0, 0, 1, 0};
	static const unsigned char copy[] = {3, 2, 0, 0, 0, 0, 7};
	ev_store *s = new_store();
	ev_store *b = open_store(0);
	ev_zone_rec z;

	/* A zone made without a copy has none. */
	make_zone(s, 1);
	ck_assert_int_eq(ev_store_zone_get(b, 1, &z), CKR_OK);
	ck_assert_ptr_null(z.so_sealed);
	ck_assert_uint_eq(z.so_sealed_len, 0);
	ev_zone_rec_clear(&z);

	/* Inserted with one. */
	memset(&z, 0, sizeof(z));
	z.id = 2;
	ev_padded_copy(z.label, sizeof(z.label), "bound");
	snprintf(z.serial, sizeof(z.serial), "%016llx", 2ULL);
	z.sealed = (unsigned char *)main_blob;
	z.sealed_len = sizeof(main_blob);
	z.so_sealed = (unsigned char *)copy;
	z.so_sealed_len = sizeof(copy);
	z.created = 1700000000;
	ck_assert_int_eq(ev_store_zone_insert(s, &z), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(b, 2, &z), CKR_OK);
	ck_assert_uint_eq(z.so_sealed_len, sizeof(copy));
	ck_assert_mem_eq(z.so_sealed, copy, sizeof(copy));
	ck_assert_mem_eq(z.sealed, main_blob, sizeof(main_blob));
	ev_zone_rec_clear(&z);

	/* Set, replaced, removed; the sealed key is left alone. */
	ck_assert_int_eq(ev_store_zone_set_so_sealed(s, 1, copy, sizeof(copy)), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(b, 1, &z), CKR_OK);
	ck_assert_mem_eq(z.so_sealed, copy, sizeof(copy));
	ck_assert_uint_eq(z.sealed_len, 5);
	ev_zone_rec_clear(&z);
	ck_assert_int_eq(ev_store_zone_set_so_sealed(s, 1, NULL, 0), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(b, 1, &z), CKR_OK);
	ck_assert_ptr_null(z.so_sealed);
	ck_assert_uint_eq(z.sealed_len, 5);
	ev_zone_rec_clear(&z);
	ck_assert_int_eq(ev_store_zone_set_so_sealed(s, 3, copy, sizeof(copy)), EVR_NOT_FOUND);
	ck_assert_int_eq(ev_store_zone_set_so_sealed(s, 1, copy, 0), CKR_DEVICE_ERROR);

	/* Part of the caller's transaction. */
	ck_assert_int_eq(ev_store_begin(s), CKR_OK);
	ck_assert_int_eq(ev_store_zone_set_so_sealed(s, 1, copy, sizeof(copy)), CKR_OK);
	ck_assert_int_eq(ev_store_rollback(s), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(s, 1, &z), CKR_OK);
	ck_assert_ptr_null(z.so_sealed);
	ev_zone_rec_clear(&z);

	/* Revocation destroys the copy with the key, and it stays destroyed. */
	ck_assert_int_eq(ev_store_zone_revoke(s, 2, 1700000100), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(b, 2, &z), CKR_OK);
	ck_assert_ptr_null(z.so_sealed);
	ck_assert_uint_eq(z.sealed_len, 0);
	ev_zone_rec_clear(&z);
	ck_assert_int_eq(ev_store_zone_set_so_sealed(s, 2, copy, sizeof(copy)), EVR_NOT_FOUND);
	ev_store_close(b);
	ev_store_close(s);
}
END_TEST

START_TEST(test_change_rekeyed)
{
	ev_store *s = new_store();
	ev_change *v = NULL;
	size_t n = 0;

	ck_assert_int_eq(ev_store_change_add(s, EV_CHANGE_ZONE_REKEYED, 3, 0), CKR_OK);
	ck_assert_int_eq(ev_store_change_since(s, 0, 10, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(v[0].kind, EV_CHANGE_ZONE_REKEYED);
	ck_assert_int_eq(v[0].zone, 3);
	ck_assert_int_eq(v[0].object, 0);
	free(v);
	ck_assert_int_eq(ev_store_change_add(s, EV_CHANGE_ZONE_RESEALED, 4, 0), CKR_OK);
	ck_assert_int_eq(ev_store_change_since(s, 1, 10, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(v[0].kind, EV_CHANGE_ZONE_RESEALED);
	ck_assert_int_eq(v[0].zone, 4);
	free(v);
	ck_assert_int_eq(
	    ev_store_change_add(s, (ev_change_kind)(EV_CHANGE_ZONE_RESEALED + 1), 3, 0),
	    CKR_DEVICE_ERROR);
	ev_store_close(s);
}
END_TEST

/* Use counters add up across connections, keep the later time, and outlive their object. */
START_TEST(test_use_counts)
{
	ev_store *s = new_store();
	ev_store *b = open_store(0);
	ev_use_rec r, *v = (ev_use_rec *)&v;
	size_t n = 99;

	ck_assert_int_eq(ev_store_use_list(s, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(v);

	memset(&r, 0, sizeof(r));
	r.object = 7;
	snprintf(r.op, sizeof(r.op), "sign");
	r.zone = 2;
	r.cls = CKO_PRIVATE_KEY;
	r.label = (unsigned char *)"k1";
	r.label_len = 2;
	r.ckid = (unsigned char *)"\x01\x02";
	r.ckid_len = 2;
	r.generation = 3;
	r.count = 5;
	r.last_use = 1700000100;
	ck_assert_int_eq(ev_store_use_add(s, &r), CKR_OK);
	/* Another connection adds to it: an earlier time does not go back, a new label is taken. */
	r.count = 2;
	r.last_use = 1700000000;
	r.label = (unsigned char *)"k2";
	ck_assert_int_eq(ev_store_use_add(b, &r), CKR_OK);
	/* Another operation of the same key, and a key with no label or CKA_ID. */
	snprintf(r.op, sizeof(r.op), "verify");
	r.count = 1;
	r.last_use = 1700000200;
	ck_assert_int_eq(ev_store_use_add(s, &r), CKR_OK);
	memset(&r, 0, sizeof(r));
	r.object = 3;
	snprintf(r.op, sizeof(r.op), "encrypt");
	r.zone = 1;
	r.cls = CKO_SECRET_KEY;
	r.generation = 1;
	r.count = 9;
	r.last_use = 1700000300;
	ck_assert_int_eq(ev_store_use_add(b, &r), CKR_OK);

	ck_assert_int_eq(ev_store_use_list(s, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 3);
	/* Zone 1 first. */
	ck_assert_int_eq(v[0].object, 3);
	ck_assert_str_eq(v[0].op, "encrypt");
	ck_assert_int_eq(v[0].zone, 1);
	ck_assert_uint_eq(v[0].cls, CKO_SECRET_KEY);
	ck_assert_ptr_null(v[0].label);
	ck_assert_ptr_null(v[0].ckid);
	ck_assert_int_eq(v[0].count, 9);
	ck_assert_int_eq(v[0].last_use, 1700000300);
	ck_assert_int_eq(v[1].object, 7);
	ck_assert_str_eq(v[1].op, "sign");
	ck_assert_int_eq(v[1].count, 7);
	ck_assert_int_eq(v[1].last_use, 1700000100);
	ck_assert_uint_eq(v[1].label_len, 2);
	ck_assert_mem_eq(v[1].label, "k2", 2);
	ck_assert_uint_eq(v[1].ckid_len, 2);
	ck_assert_mem_eq(v[1].ckid, "\x01\x02", 2);
	ck_assert_int_eq(v[1].generation, 3);
	ck_assert_str_eq(v[2].op, "verify");
	ck_assert_int_eq(v[2].count, 1);
	ev_use_rec_clear(&v[0]);
	ev_use_rec_clear(&v[1]);
	ev_use_rec_clear(&v[2]);
	free(v);
	ev_use_rec_clear(NULL);

	/* No object 7 or zone 2 exists: the rows stand on their own, as history. */
	ck_assert_int_eq(raw_int("SELECT count(*) FROM uses WHERE object = 7"), 2);
	ev_store_close(b);
	ev_store_close(s);
}
END_TEST

START_TEST(test_attestlog)
{
	ev_store *s = new_store();
	ev_store *b = open_store(0);
	ev_attestlog_rec r, *v = (ev_attestlog_rec *)&v;
	unsigned char d1[32], d2[32], zero[32];
	int64_t id1, id2, id3;
	size_t n = 99, i;
	int found = 7;

	memset(zero, 0, sizeof(zero));
	for (i = 0; i < sizeof(d1); i++) {
		d1[i] = (unsigned char)(i + 1);
		d2[i] = (unsigned char)(100 + i);
	}
	ck_assert_int_eq(ev_store_attestlog_list(s, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(v);
	ck_assert_int_eq(ev_store_attestlog_accepted(s, 1, d1, &found), CKR_OK);
	ck_assert_int_eq(found, 0);

	memset(&r, 0, sizeof(r));
	r.time = 1700000000;
	r.zone = 1;
	r.purpose = "login";
	r.provider = "result";
	r.accepted = 1;
	memcpy(r.digest, d1, 32);
	r.valid_until = 1700003600;
	r.reason = "accepted: issued 1699999990, zones 1 2";
	ck_assert_int_eq(ev_store_attestlog_add(s, &r), CKR_OK);
	id1 = r.id;
	ck_assert_int_gt(id1, 0);

	/* Refused evidence, and a refusal with no evidence at all. */
	memset(&r, 0, sizeof(r));
	r.time = 1700000100;
	r.zone = 1;
	r.purpose = "rotate";
	r.provider = "result";
	r.accepted = 0;
	memcpy(r.digest, d2, 32);
	r.reason = "stale";
	ck_assert_int_eq(ev_store_attestlog_add(s, &r), CKR_OK);
	id2 = r.id;
	memset(&r, 0, sizeof(r));
	r.time = 1700000200;
	r.zone = 2;
	r.purpose = "check";
	r.accepted = 0;
	ck_assert_int_eq(ev_store_attestlog_add(s, &r), CKR_OK);
	id3 = r.id;
	ck_assert_int_gt(id2, id1);
	ck_assert_int_gt(id3, id2);

	/* Accepted: this digest, this zone, accepted; seen by another connection. */
	ck_assert_int_eq(ev_store_attestlog_accepted(b, 1, d1, &found), CKR_OK);
	ck_assert_int_eq(found, 1);
	ck_assert_int_eq(ev_store_attestlog_accepted(b, 2, d1, &found), CKR_OK);
	ck_assert_int_eq(found, 0);
	ck_assert_int_eq(ev_store_attestlog_accepted(b, 1, d2, &found), CKR_OK);
	ck_assert_int_eq(found, 0);
	ck_assert_int_eq(ev_store_attestlog_accepted(b, 2, zero, &found), CKR_OK);
	ck_assert_int_eq(found, 0);

	/* A purpose is required; a failed add assigns no id. */
	memset(&r, 0, sizeof(r));
	r.time = 1;
	r.zone = 1;
	r.accepted = 1;
	memcpy(r.digest, d2, 32);
	ck_assert_int_eq(ev_store_attestlog_add(s, &r), CKR_DEVICE_ERROR);
	ck_assert_int_eq(r.id, 0);
	ck_assert_int_eq(ev_store_attestlog_accepted(s, 1, d2, &found), CKR_OK);
	ck_assert_int_eq(found, 0);

	ck_assert_int_eq(ev_store_attestlog_list(b, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(v[0].id, id1);
	ck_assert_int_eq(v[0].time, 1700000000);
	ck_assert_int_eq(v[0].zone, 1);
	ck_assert_str_eq(v[0].purpose, "login");
	ck_assert_str_eq(v[0].provider, "result");
	ck_assert_int_eq(v[0].accepted, 1);
	ck_assert_mem_eq(v[0].digest, d1, 32);
	ck_assert_int_eq(v[0].valid_until, 1700003600);
	ck_assert_str_eq(v[0].reason, "accepted: issued 1699999990, zones 1 2");
	ck_assert_int_eq(v[1].id, id2);
	ck_assert_str_eq(v[1].purpose, "rotate");
	ck_assert_int_eq(v[1].accepted, 0);
	ck_assert_mem_eq(v[1].digest, d2, 32);
	ck_assert_int_eq(v[1].valid_until, 0);
	ck_assert_str_eq(v[1].reason, "stale");
	ck_assert_int_eq(v[2].id, id3);
	ck_assert_int_eq(v[2].zone, 2);
	ck_assert_str_eq(v[2].purpose, "check");
	ck_assert_ptr_null(v[2].provider);
	ck_assert_mem_eq(v[2].digest, zero, 32);
	ck_assert_ptr_null(v[2].reason);
	for (i = 0; i < n; i++)
		ev_attestlog_rec_clear(&v[i]);
	ck_assert_ptr_null(v[0].purpose);
	free(v);
	ev_attestlog_rec_clear(NULL);
	ev_store_close(b);

	/* The history outlives the zone; a damaged digest is reported, not returned. */
	ev_store_close(s);
	raw_sql("UPDATE attestlog SET digest = x'01' WHERE id = 2");
	s = open_store(0);
	v = (ev_attestlog_rec *)&v;
	ck_assert_int_eq(ev_store_attestlog_list(s, &v, &n), CKR_DEVICE_ERROR);
	ck_assert_ptr_null(v);
	ck_assert_uint_eq(n, 0);
	ev_store_close(s);
}
END_TEST

/*
 * Version 2's step, as the code before version 3 ran it. A copy, on
 * purpose, like v1_schema.
 */
static const char *const v2_step =
    "ALTER TABLE zones ADD COLUMN revoked INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind INTEGER NOT NULL,"
    " zone INTEGER NOT NULL, object INTEGER NOT NULL DEFAULT 0, time INTEGER NOT NULL);"
    "CREATE TABLE revlog (id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL,"
    " source TEXT NOT NULL, sequence INTEGER NOT NULL, digest BLOB NOT NULL,"
    " applied INTEGER NOT NULL, detail TEXT);"
    "CREATE INDEX revlog_digest ON revlog(digest);"
    "CREATE TABLE revoked (id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL,"
    " log INTEGER NOT NULL REFERENCES revlog(id), kind INTEGER NOT NULL,"
    " zone INTEGER NOT NULL, object INTEGER NOT NULL, label BLOB, ckid BLOB,"
    " generation INTEGER NOT NULL, reason TEXT NOT NULL);"
    "CREATE TABLE revoked_entries (digest BLOB PRIMARY KEY,"
    " log INTEGER NOT NULL REFERENCES revlog(id)) WITHOUT ROWID;"
    "UPDATE meta SET value = 2 WHERE key = 'schema_version';";

/*
 * A version 2 store: zone 4 with objects 9 (a secret key) and 10 (its
 * public counterpart, generation 2), zone 5 revoked, a change and a
 * revocation log row.
 */
/* Run SQL on the store's database as it is, with no schema work. */
static void
store_exec(const char *sql)
{
	char path[400];
	sqlite3 *db = NULL;
	char *msg = NULL;

	snprintf(path, sizeof(path), "%s/%s", store_dir(), EV_STORE_FILE);
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s", msg ? msg : "");
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
}

static void
make_v2_store(void)
{
	char path[400];
	sqlite3 *db = NULL;
	char *msg = NULL;

	make_v1_store();
	store_exec(v2_step);
	snprintf(path, sizeof(path), "%s/%s", store_dir(), EV_STORE_FILE);
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	ck_assert_msg(
	    sqlite3_exec(
		db,
		"INSERT INTO objects(id, zone, class, key_type, label, ckid, private, "
		"generation, wrapped) VALUES(10, 4, 2, 3, x'6b', x'01', 0, 2, NULL);"
		"INSERT INTO zones(id, label, serial, sealed_key, created, revoked) "
		"VALUES(5, x'7a', 'S5', x'', 1600000000, 1650000000);"
		"INSERT INTO changes(kind, zone, object, time) VALUES(3, 5, 0, 1650000000);"
		"INSERT INTO revlog(time, source, sequence, digest, applied, detail) "
		"VALUES(1650000000, 'local', 0, zeroblob(32), 1, NULL);",
		NULL, NULL, &msg) == SQLITE_OK,
	    "%s", msg ? msg : "");
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
}

START_TEST(test_migrate_v2)
{
	ev_store *s = NULL;
	int64_t v = 0, last = 0, hits[4], *ids = NULL;
	ev_revlog_rec *rl = NULL;
	ev_attestlog_rec r;
	ev_obj_query q;
	ev_zone_rec z;
	ev_obj_rec o;
	size_t n = 0;
	char err[256];
	time_t t0, t1;

	make_v2_store();
	ck_assert_int_eq(raw_int("SELECT value FROM meta WHERE key = 'schema_version'"), 2);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM pragma_table_info('objects') "
				 "WHERE name = 'created'"),
			 0);
	/* Read-only does no schema work: it asks for one read-write open. */
	ck_assert_int_eq(ev_store_open(store_dir(), EV_STORE_READONLY, &s, err, sizeof(err)),
			 CKR_DEVICE_ERROR);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(strstr(err, "read-write"));

	t0 = time(NULL);
	s = open_store(0);
	t1 = time(NULL);
	ck_assert_int_eq(ev_store_meta_get_int(s, "schema_version", &v), CKR_OK);
	ck_assert_int_eq(v, 6);

	/* Existing objects: made "now" (the upgrade), current, not copies. */
	ck_assert_int_eq(ev_store_obj_get(s, 9, &o), CKR_OK);
	ck_assert_int_eq(o.zone, 4);
	ck_assert_int_eq(o.generation, 5);
	ck_assert_uint_eq(o.wrapped_len, 2);
	ck_assert_mem_eq(o.wrapped, "\xaa\xbb", 2);
	ck_assert_int_ge(o.created, (int64_t)t0);
	ck_assert_int_le(o.created, (int64_t)t1);
	ck_assert_int_eq(o.origin, 0);
	ck_assert_int_eq(o.previous, 0);
	ck_assert_int_eq(o.retired, 0);
	ck_assert_int_eq(o.destroy_at, 0);
	ev_obj_rec_clear(&o);
	ck_assert_int_eq(ev_store_obj_get(s, 10, &o), CKR_OK);
	ck_assert_int_ge(o.created, (int64_t)t0);
	ck_assert_int_le(o.created, (int64_t)t1);
	ck_assert_int_eq(o.retired, 0);
	ev_obj_rec_clear(&o);

	/* What version 2 held is kept. */
	ck_assert_int_eq(ev_store_zone_get(s, 5, &z), CKR_OK);
	ck_assert_int_eq(z.revoked, 1650000000);
	ck_assert_uint_eq(z.sealed_len, 0);
	ev_zone_rec_clear(&z);
	ck_assert_int_eq(ev_store_change_last(s, &last), CKR_OK);
	ck_assert_int_eq(last, 1);
	ck_assert_int_eq(ev_store_revlog_list(s, &rl, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	ev_revlog_rec_clear(&rl[0]);
	free(rl);

	/* The migrated objects are found, and the new parts work on them. */
	memset(&q, 0, sizeof(q));
	q.zone = 4;
	q.include_private = 1;
	ck_assert_uint_eq(find(s, &q, hits, 4), 2);
	ck_assert_int_eq(ev_store_obj_rotatable(s, 4, INT64_MAX, &ids, &n), CKR_OK);
	expect_ids(ids, n, (const int64_t[]){9}, 1);
	ck_assert_int_eq(ev_store_obj_retire(s, 9, 1700000000, 1700086400), CKR_OK);
	ck_assert_uint_eq(find(s, &q, hits, 4), 1);
	ck_assert_int_eq(hits[0], 10);
	ck_assert_int_eq(ev_store_obj_expired(s, 1700086400, &ids, &n), CKR_OK);
	expect_ids(ids, n, (const int64_t[]){9}, 1);
	memset(&r, 0, sizeof(r));
	r.time = 1700000000;
	r.zone = 4;
	r.purpose = "rotate";
	r.provider = "result";
	r.accepted = 1;
	ck_assert_int_eq(ev_store_attestlog_add(s, &r), CKR_OK);
	ev_store_close(s);

	ck_assert_int_eq(raw_int("SELECT count(*) FROM pragma_table_info('objects') WHERE name "
				 "IN ('origin', 'previous', 'created', 'retired', 'destroy_at') "
				 "AND \"notnull\" = 1 AND dflt_value = '0'"),
			 5);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
				 "name IN ('objects_retired', 'objects_origin', "
				 "'attestlog_digest')"),
			 3);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM pragma_index_info('objects_retired')"), 2);
	ck_assert_int_eq(raw_int("SELECT value FROM meta WHERE key = 'schema_version'"), 6);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM attestlog"), 1);

	/* Opening again runs no step twice. */
	s = open_store(0);
	ev_store_close(s);
	s = open_store(EV_STORE_READONLY);
	ev_store_close(s);
}
END_TEST

/*
 * Version 3's step, as the code before version 4 ran it. A copy, on
 * purpose, like v1_schema.
 */
static const char *const v3_step =
    "ALTER TABLE objects ADD COLUMN origin INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE objects ADD COLUMN previous INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE objects ADD COLUMN created INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE objects ADD COLUMN retired INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE objects ADD COLUMN destroy_at INTEGER NOT NULL DEFAULT 0;"
    "UPDATE objects SET created = CAST(strftime('%s', 'now') AS INTEGER);"
    "CREATE INDEX objects_retired ON objects(retired, destroy_at);"
    "CREATE INDEX objects_origin ON objects(origin);"
    "CREATE TABLE attestlog (id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL,"
    " zone INTEGER NOT NULL, purpose TEXT NOT NULL, provider TEXT, accepted INTEGER NOT NULL,"
    " digest BLOB NOT NULL, valid_until INTEGER NOT NULL, reason TEXT);"
    "CREATE INDEX attestlog_digest ON attestlog(digest);"
    "UPDATE meta SET value = 3 WHERE key = 'schema_version';";

/* A version 3 store: version 2's, and an attestation history row. */
static void
make_v3_store(void)
{
	make_v2_store();
	store_exec(v3_step);
	store_exec("INSERT INTO attestlog(time, zone, purpose, provider, accepted, digest, "
		   "valid_until, reason) VALUES(1650000000, 4, 'login', 'result', 0, "
		   "zeroblob(32), 0, 'stale');");
}

START_TEST(test_migrate_v3)
{
	static const unsigned char copy[] = {3, 2, 0, 0, 0, 0, 9};
	ev_store *s = NULL;
	ev_attestlog_rec *al = NULL;
	int64_t v = 0;
	ev_zone_rec z;
	size_t n = 0;
	char err[256];

	make_v3_store();
	ck_assert_int_eq(raw_int("SELECT value FROM meta WHERE key = 'schema_version'"), 3);
	ck_assert_int_eq(raw_int("SELECT count(*) FROM pragma_table_info('zones') "
				 "WHERE name = 'so_sealed_key'"),
			 0);
	/* Read-only does no schema work: it asks for one read-write open. */
	ck_assert_int_eq(ev_store_open(store_dir(), EV_STORE_READONLY, &s, err, sizeof(err)),
			 CKR_DEVICE_ERROR);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(strstr(err, "read-write"));

	s = open_store(0);
	ck_assert_int_eq(ev_store_meta_get_int(s, "schema_version", &v), CKR_OK);
	ck_assert_int_eq(v, 6);
	/* Zones made before: their key as it was, no SO copy; a revoked one stays revoked. */
	ck_assert_int_eq(ev_store_zone_get(s, 4, &z), CKR_OK);
	ck_assert_uint_eq(z.sealed_len, 2);
	ck_assert_mem_eq(z.sealed, "\x01\x02", 2);
	ck_assert_str_eq(z.so_pin, "$so");
	ck_assert_ptr_null(z.so_sealed);
	ev_zone_rec_clear(&z);
	ck_assert_int_eq(ev_store_zone_get(s, 5, &z), CKR_OK);
	ck_assert_int_eq(z.revoked, 1650000000);
	ck_assert_ptr_null(z.so_sealed);
	ev_zone_rec_clear(&z);
	ck_assert_int_eq(ev_store_attestlog_list(s, &al, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	ev_attestlog_rec_clear(&al[0]);
	free(al);
	/* The new column works on the migrated store. */
	ck_assert_int_eq(ev_store_zone_set_so_sealed(s, 4, copy, sizeof(copy)), CKR_OK);
	ck_assert_int_eq(ev_store_zone_get(s, 4, &z), CKR_OK);
	ck_assert_mem_eq(z.so_sealed, copy, sizeof(copy));
	ev_zone_rec_clear(&z);
	ck_assert_int_eq(ev_store_zone_set_so_sealed(s, 5, copy, sizeof(copy)), EVR_NOT_FOUND);
	ev_store_close(s);

	ck_assert_int_eq(
	    raw_int("SELECT count(*) FROM pragma_table_info('zones') "
		    "WHERE name = 'so_sealed_key' AND type = 'BLOB' AND \"notnull\" = 0"),
	    1);
	ck_assert_int_eq(raw_int("SELECT value FROM meta WHERE key = 'schema_version'"), 6);

	/* Opening again runs no step twice. */
	s = open_store(0);
	ev_store_close(s);
	s = open_store(EV_STORE_READONLY);
	ev_store_close(s);
}
END_TEST

static Suite *
store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("store");

	tcase_add_checked_fixture(tc, setup, tmpdir_remove);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_create_reopen);
	tcase_add_test(tc, test_wal_mode);
	tcase_add_test(tc, test_missing_without_create);
	tcase_add_test(tc, test_not_a_database);
	tcase_add_test(tc, test_readonly);
	tcase_add_test(tc, test_schema_version);
	tcase_add_test(tc, test_newer_schema_refused);
	tcase_add_test(tc, test_readonly_uninitialised);
	tcase_add_test(tc, test_zone_insert_get);
	tcase_add_test(tc, test_zone_list_next_id);
	tcase_add_test(tc, test_zone_pins_fails);
	tcase_add_test(tc, test_zone_add_fail);
	tcase_add_test(tc, test_zone_add_fail_processes);
	tcase_add_test(tc, test_zone_delete_cascades);
	tcase_add_test(tc, test_obj_ids);
	tcase_add_test(tc, test_obj_get_exact);
	tcase_add_test(tc, test_obj_secret_refused);
	tcase_add_test(tc, test_obj_set_attrs);
	tcase_add_test(tc, test_obj_set_wrapped);
	tcase_add_test(tc, test_obj_find);
	tcase_add_test(tc, test_obj_find_many);
	tcase_add_test(tc, test_obj_find_shared);
	tcase_add_test(tc, test_reader_same_file);
	tcase_add_test(tc, test_find_indexes);
	tcase_add_test(tc, test_obj_count);
	tcase_add_test(tc, test_transactions);
	tcase_add_test(tc, test_two_connections);
	tcase_add_test(tc, test_read_during_write);
	tcase_add_test(tc, test_two_processes);
	tcase_add_test(tc, test_fork_parent_closes);
	tcase_add_test(tc, test_migrate_v1);
	tcase_add_test(tc, test_secure_delete_pragma);
	tcase_add_test(tc, test_secure_delete_file);
	tcase_add_test(tc, test_zone_revoked_field);
	tcase_add_test(tc, test_zone_revoke);
	tcase_add_test(tc, test_zone_revoke_already);
	tcase_add_test(tc, test_obj_find_keys);
	tcase_add_test(tc, test_meta_int);
	tcase_add_test(tc, test_changes);
	tcase_add_test(tc, test_revlog);
	tcase_add_test(tc, test_revoked);
	tcase_add_test(tc, test_obj_lineage);
	tcase_add_test(tc, test_obj_retire);
	tcase_add_test(tc, test_obj_find_retired);
	tcase_add_test(tc, test_obj_find_retired_many);
	tcase_add_test(tc, test_obj_copies);
	tcase_add_test(tc, test_obj_rotatable);
	tcase_add_test(tc, test_obj_expired);
	tcase_add_test(tc, test_obj_wrapped_ids);
	tcase_add_test(tc, test_obj_key_ids);
	tcase_add_test(tc, test_zone_set_sealed);
	tcase_add_test(tc, test_change_rekeyed);
	tcase_add_test(tc, test_attestlog);
	tcase_add_test(tc, test_use_counts);
	tcase_add_test(tc, test_migrate_v2);
	tcase_add_test(tc, test_migrate_v3);
	tcase_add_test(tc, test_zone_so_sealed);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(store_suite());
}
