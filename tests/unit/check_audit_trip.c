/*
 * The audit trail's round trip: what the writer (src/audit.c) writes, the
 * reader (src/audit_read.c) verifies. Unusual labels and CKA_IDs, and the
 * ends a crash leaves (a line cut in the middle, a line that lost only
 * its '\n'), then ev_audit_verify() with the writer's checkpoint key.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sodium.h>

#include "audit.h"
#include "audit_read.h"
#include "config.h"
#include "root/root.h"
#include "store.h"
#include "testutil.h"

/*
 * A stand-in root whose blob is the associated data, then the secret: it
 * opens only with the same associated data. Enough for the key setup.
 */
static CK_RV
plain_seal(ev_root *r, const unsigned char *aad, size_t aadlen, const ev_secret *plain,
	   const ev_seal_opts *opts, unsigned char **blob, size_t *bloblen)
{
	(void)r;
	(void)opts;
	*bloblen = aadlen + plain->len;
	*blob = malloc(*bloblen);
	ck_assert_ptr_nonnull(*blob);
	memcpy(*blob, aad, aadlen);
	memcpy(*blob + aadlen, plain->data, plain->len);
	return CKR_OK;
}

static CK_RV
plain_unseal(ev_root *r, const unsigned char *aad, size_t aadlen, const unsigned char *blob,
	     size_t bloblen, ev_unseal_opts *opts, ev_secret **plain)
{
	(void)r;
	(void)opts;
	if (bloblen < aadlen || memcmp(blob, aad, aadlen) != 0)
		return CKR_ENCRYPTED_DATA_INVALID;
	*plain = ev_secret_dup(blob + aadlen, bloblen - aadlen);
	return *plain != NULL ? CKR_OK : CKR_HOST_MEMORY;
}

static const struct ev_root_ops plain_ops = {
    .name = "plain", .seal = plain_seal, .unseal = plain_unseal};
static ev_root plain_root = {.ops = &plain_ops};

/* The test's configuration, store and checkpoint public key. */
static ev_config *cfg;
static ev_store *store;
static unsigned char pk[32];

static void
setup(void)
{
	char text[1024], err[512] = "";
	unsigned char *v = NULL;
	ev_audit *a = NULL;
	size_t n = 0;

	tmpdir_make("ev_audit_trip");
	ck_assert_int_eq(mkdir(path_of("store"), 0700), 0);
	snprintf(text, sizeof(text),
		 "[store]\ndir = %s\n[device]\nid = dev-trip\n[root]\nmodule = /m.so\n"
		 "token_label = t\npin_env = EV_TEST_PIN\n[audit]\nsyslog = false\n"
		 "checkpoint_lines = 1000\n",
		 path_of("store"));
	write_text("edgevault.conf", text, 0600);
	ck_assert_msg(ev_config_load(path_of("edgevault.conf"), &cfg, err, sizeof(err)) == CKR_OK,
		      "config: %s", err);
	ck_assert_msg(ev_store_open(path_of("store"), EV_STORE_CREATE, &store, err,
				    sizeof(err)) == CKR_OK,
		      "store: %s", err);
	/* The key made once, as at the store's first start. */
	ck_assert_int_eq(ev_audit_open(cfg, &a), CKR_OK);
	ck_assert_int_eq(ev_audit_key_setup(a, &plain_root, store), CKR_OK);
	ev_audit_close(a);
	ck_assert_int_eq(ev_store_meta_get(store, EV_META_AUDIT_KEY_PUBLIC, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 32);
	memcpy(pk, v, 32);
	free(v);
}

static void
teardown(void)
{
	ev_store_close(store);
	ev_config_free(cfg);
	tmpdir_remove();
}

/* A writer; keyed: with the checkpoint key (and so a checkpoint at its close). */
static ev_audit *
writer(int keyed)
{
	ev_audit *a = NULL;

	ck_assert_int_eq(ev_audit_open(cfg, &a), CKR_OK);
	if (keyed)
		ck_assert_int_eq(ev_audit_key_setup(a, &plain_root, store), CKR_OK);
	return a;
}

/* key.generated of an object labelled label[0..label_len) with CKA_ID id[0..id_len). */
static void
emit_key(ev_audit *a, const void *label, size_t label_len, const void *id, size_t id_len)
{
	ev_audit_event e = EV_AUDIT_EVENT_INIT(EV_AUDIT_KEY_GENERATED, EV_AUDIT_OK);
	ev_audit_object o = {0};

	o.handle = 7;
	o.cls = CKO_PRIVATE_KEY;
	o.key_type = CKK_EC;
	o.label = label;
	o.label_len = label_len;
	o.ckid = id;
	o.ckid_len = id_len;
	e.zone = 1;
	e.object = &o;
	ev_audit_emit_to(a, &e);
}

static const char *
audit_file(void)
{
	return path_of("store/" EV_AUDIT_FILE);
}

/* Append bytes to the file as a crash would leave them. */
static void
append(const char *bytes, size_t len)
{
	FILE *f = fopen(audit_file(), "ae");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(bytes, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
}

/* Cut the file's last n bytes. */
static void
cut(off_t n)
{
	struct stat st;

	ck_assert_int_eq(stat(audit_file(), &st), 0);
	ck_assert_int_eq(truncate(audit_file(), st.st_size - n), 0);
}

/* The verdict on the file with the writer's key: must be valid. */
static void
verify(ev_audit_verdict *v)
{
	ev_audit_reader *r = NULL;
	char err[512] = "";

	ck_assert_msg(ev_audit_reader_open(audit_file(), &r, err, sizeof(err)) == CKR_OK, "%s",
		      err);
	ck_assert_msg(ev_audit_verify(r, pk, v, err, sizeof(err)) == CKR_OK, "%s", err);
	ev_audit_reader_free(r);
	ck_assert_msg(v->valid, "not valid: %s", v->why);
	ck_assert_uint_eq(v->unsigned_lines, 0);
}

/* Line no (1-based) of the file, parsed by the reader: its object member, a new reference. */
static json_object *
object_of(size_t no)
{
	ev_audit_reader *r = NULL;
	const ev_audit_line *l = NULL;
	json_object *o = NULL, *v;
	char err[512] = "";

	ck_assert_int_eq(ev_audit_reader_open(audit_file(), &r, err, sizeof(err)), CKR_OK);
	do
		ck_assert_int_eq(ev_audit_reader_next(r, &l, err, sizeof(err)), CKR_OK);
	while (l != NULL && l->no != no);
	ck_assert_ptr_nonnull(l);
	ck_assert_msg(l->problem == NULL, "line %zu: %s", no, l->problem);
	ck_assert(json_object_object_get_ex(l->obj, "object", &v));
	o = json_object_get(v);
	ev_audit_reader_free(r);
	return o;
}

static const char *
str_member(json_object *o, const char *name)
{
	json_object *v;

	if (!json_object_object_get_ex(o, name, &v))
		return NULL;
	ck_assert(json_object_is_type(v, json_type_string));
	return json_object_get_string(v);
}

static int
cut_flag(json_object *o, const char *name)
{
	json_object *v;

	if (!json_object_object_get_ex(o, name, &v))
		return 0;
	ck_assert(json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v));
	return 1;
}

/* Line no's label (NULL: none), its label_cut, its id and id_cut as expected. */
static void
object_is(size_t no, const char *label, int label_cut, size_t id_hex, int id_cut)
{
	json_object *o = object_of(no);
	const char *id = str_member(o, "id");

	if (label == NULL)
		ck_assert_ptr_null(str_member(o, "label"));
	else
		ck_assert_str_eq(str_member(o, "label"), label);
	ck_assert_int_eq(cut_flag(o, "label_cut"), label_cut);
	ck_assert_uint_eq(id != NULL ? strlen(id) : 0, id_hex);
	ck_assert_int_eq(cut_flag(o, "id_cut"), id_cut);
	json_object_put(o);
}

/* Labels and CKA_IDs of every shape: each line well formed, the whole file valid. */
START_TEST(test_labels_and_ids)
{
	static const char nul_inside[] = {'a', '\0', 'b'};
	/* As applications pass it: sizeof, with the terminating NUL. */
	static const char with_nul[] = "signing key";
	static const unsigned char not_utf8[] = {'k', 0xff, 0xfe, 'x'};
	static const char quotes[] = "q\"b\\s/n\nx";
	static const char utf8[] = "cl\xc3\xa9 \xe2\x82\xac";
	unsigned char id[300], long_label[300];
	char want[700];
	ev_audit_verdict v;
	ev_audit *a;

	memset(id, 0xab, sizeof(id));
	memset(long_label, 'L', sizeof(long_label));
	a = writer(1);
	emit_key(a, nul_inside, sizeof(nul_inside), id, 16);		  /* line 1 */
	emit_key(a, with_nul, sizeof(with_nul), id, 128);		  /* line 2 */
	emit_key(a, not_utf8, sizeof(not_utf8), id, 129);		  /* line 3 */
	emit_key(a, long_label, sizeof(long_label), id, sizeof(id));	  /* line 4 */
	emit_key(a, quotes, strlen(quotes), NULL, 0);			  /* line 5 */
	emit_key(a, utf8, strlen(utf8), id, 1);				  /* line 6 */
	long_label[299] = '\0';
	emit_key(a, long_label, sizeof(long_label), NULL, 0);		  /* line 7 */
	ev_audit_close(a);						  /* line 8: checkpoint */

	verify(&v);
	ck_assert_uint_eq(v.lines, 8);
	ck_assert_uint_eq(v.checkpoints, 1);
	ck_assert_uint_eq(v.torn, 0);

	object_is(1, "hex:610062", 0, 32, 0);
	object_is(2, "hex:7369676e696e67206b657900", 0, 256, 0);
	object_is(3, "hex:6bfffe78", 0, 256, 1);
	memset(want, 'L', 256);
	want[256] = '\0';
	object_is(4, want, 1, 256, 1);
	object_is(5, "hex:7122625c732f6e0a78", 0, 0, 0);
	object_is(6, utf8, 0, 2, 0);
	/* Cut to 256 bytes, which leave the NUL out: printable, so a string. */
	object_is(7, want, 1, 0, 0);
}
END_TEST

/*
 * Lines 1 and 2 (a checkpoint), then the bytes a crash left (no '\n'),
 * then a writer that finds them, writes a line and its checkpoint.
 */
static void
crash_after_checkpoint(const char *left)
{
	ev_audit *a = writer(1);

	emit_key(a, "one", 3, NULL, 0);
	ev_audit_close(a);
	append(left, strlen(left));
	a = writer(1);
	emit_key(a, "two", 3, NULL, 0);
	ev_audit_close(a);
}

/* Valid, with lines lines of which torn torn, and its checkpoints at seq 2 and 5. */
static void
verify_torn(size_t lines, size_t torn)
{
	ev_audit_verdict v;

	verify(&v);
	ck_assert_uint_eq(v.lines, lines);
	ck_assert_uint_eq(v.torn, torn);
	ck_assert_str_ne(v.warning, "");
	ck_assert_uint_eq(v.checkpoints, 2);
	ck_assert_int_eq(v.last_checkpoint_seq, 5);
}

/* A crash in the middle of a line: an audit.torn line, a warning once a checkpoint follows. */
START_TEST(test_torn_mid_line)
{
	static const char part[] = "{\"seq\":3,\"time\":\"2026-11-24T10:";

	/* The torn bytes, audit.torn (seq 3), seq 4, checkpoint (seq 5). */
	crash_after_checkpoint(part);
	verify_torn(6, 1);
}
END_TEST

/*
 * A line written without the key (no checkpoint at its writer's close),
 * its '\n' lost, then a writer that finds it, writes a line and its
 * checkpoint.
 */
static void
newline_lost(void)
{
	ev_audit *a = writer(0);

	emit_key(a, "last", 4, NULL, 0);
	ev_audit_close(a);
	cut(1);
	a = writer(1);
	emit_key(a, "after", 5, NULL, 0);
	ev_audit_close(a);
}

/*
 * A crash that lost only the last line's '\n': the line is ended and
 * counts, no audit.torn line (whose seq would repeat the line's).
 */
START_TEST(test_torn_before_newline)
{
	ev_audit_verdict v;
	ev_audit *a;

	a = writer(1);
	emit_key(a, "one", 3, NULL, 0);
	ev_audit_close(a); /* lines 1, 2 (checkpoint) */
	newline_lost();	   /* seq 3 without its '\n', seq 4, checkpoint (seq 5) */
	verify(&v);
	ck_assert_uint_eq(v.lines, 5);
	ck_assert_uint_eq(v.torn, 0);
	ck_assert_str_eq(v.warning, "");
	ck_assert_int_eq(v.last_checkpoint_seq, 5);

	/* The same when the file's only line lost its '\n'. */
	ck_assert_int_eq(unlink(audit_file()), 0);
	ck_assert_int_eq(unlink(path_of("store/" EV_AUDIT_FILE ".head")), 0);
	newline_lost();
	verify(&v);
	ck_assert_uint_eq(v.lines, 3);
	ck_assert_uint_eq(v.torn, 0);
}
END_TEST

/*
 * A last line without its '\n' that does not chain (no line the writer
 * would have written there): torn, as any other cut. (Not the trail of a
 * crash: the reader refuses it, at that line.)
 */
START_TEST(test_torn_not_chained)
{
	static const char other[] =
	    "{\"seq\":3,\"time\":\"2026-11-24T10:00:00.000000Z\",\"device\":\"dev-trip\","
	    "\"pid\":1,\"program\":\"x\",\"event\":\"login\",\"outcome\":\"ok\",\"prev\":"
	    "\"0000000000000000000000000000000000000000000000000000000000000000\"}";
	const ev_audit_line *l = NULL;
	unsigned char hash[32];
	ev_audit_reader *r = NULL;
	char err[512] = "", hex[65];

	crash_after_checkpoint(other);

	ck_assert_int_eq(ev_audit_reader_open(audit_file(), &r, err, sizeof(err)), CKR_OK);
	do {
		ck_assert_int_eq(ev_audit_reader_next(r, &l, err, sizeof(err)), CKR_OK);
		ck_assert_ptr_nonnull(l);
		if (l->no == 3) {
			ck_assert(l->ended);
			memcpy(hash, l->hash, sizeof(hash));
		}
	} while (l->no != 4);
	ck_assert_msg(l->problem == NULL, "%s", l->problem);
	ck_assert_str_eq(l->event, EV_AUDIT_TORN);
	ck_assert_int_eq(l->seq, 3);
	sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
	ck_assert_str_eq(l->prev, hex);
	ev_audit_reader_free(r);
}
END_TEST

/* The offset of the file's no-th '\n' (1-based). */
static off_t
newline_at(size_t no)
{
	FILE *f = fopen(audit_file(), "re");
	off_t off = 0;
	int c;

	ck_assert_ptr_nonnull(f);
	while ((c = getc(f)) != EOF) {
		if (c == '\n' && --no == 0)
			break;
		off++;
	}
	ck_assert_int_ne(c, EOF);
	fclose(f);
	return off;
}

/*
 * Torn bytes (line 3), then a crash while recovering from them: the
 * writer's audit.torn line after them (line 4) cut to its first keep
 * bytes (-1: all of them, only its '\n' lost); then a writer that finds
 * that, writes a line and its checkpoint.
 */
static void
crash_in_recovery(off_t keep)
{
	static const char part[] = "{\"seq\":3,\"time\":\"2026-11-24T10:";
	ev_audit *a = writer(1);

	emit_key(a, "one", 3, NULL, 0);
	ev_audit_close(a); /* lines 1, 2 (checkpoint) */
	append(part, strlen(part));
	a = writer(0);
	emit_key(a, "two", 3, NULL, 0); /* line 4: audit.torn (seq 3); line 5: seq 4 */
	ev_audit_close(a);
	ck_assert_int_eq(truncate(audit_file(), keep < 0 ? newline_at(4)
						      : newline_at(3) + 1 + keep),
			 0);
	a = writer(1);
	emit_key(a, "three", 5, NULL, 0);
	ev_audit_close(a);
}

/*
 * A crash that lost only the '\n' of the audit.torn line after torn
 * bytes: the line counts (seq 3, after the checkpoint before the torn
 * bytes), the chain goes on at seq 4.
 */
START_TEST(test_torn_recovery_newline_lost)
{
	crash_in_recovery(-1); /* line 5: seq 4, line 6: checkpoint (seq 5) */
	verify_torn(6, 1);
}
END_TEST

/*
 * A crash in the middle of the audit.torn line after torn bytes: torn
 * too, and a second audit.torn line (seq 3 again: the first took none).
 */
START_TEST(test_torn_recovery_cut)
{
	off_t keep[] = {1, 8, 30};

	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
		crash_in_recovery(keep[i]); /* line 5: audit.torn (seq 3), seq 4, checkpoint */
		verify_torn(7, 2);
		ck_assert_int_eq(unlink(audit_file()), 0);
		ck_assert_int_eq(unlink(path_of("store/" EV_AUDIT_FILE ".head")), 0);
	}
}
END_TEST

static Suite *
trip_suite(void)
{
	Suite *s = suite_create("audit_trip");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_labels_and_ids);
	tcase_add_test(tc, test_torn_mid_line);
	tcase_add_test(tc, test_torn_before_newline);
	tcase_add_test(tc, test_torn_not_chained);
	tcase_add_test(tc, test_torn_recovery_newline_lost);
	tcase_add_test(tc, test_torn_recovery_cut);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(trip_suite());
}
