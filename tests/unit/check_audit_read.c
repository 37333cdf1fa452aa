/*
 * Unit tests of the audit trail's reader (src/audit_read.c): trails made
 * here by a small generator that writes lines as doc/audit.md says and
 * signs checkpoints with a key of the test, then edited, cut, reordered
 * and forged; each must give the exact first bad line.
 */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sodium.h>

#include "audit.h"
#include "audit_read.h"
#include "testutil.h"

#define MAX_LINES 64
/* 2026-11-24T10:00:00Z: line N is N seconds after it. */
#define BASE_TIME 1795514400LL

typedef struct trail {
	char *lines[MAX_LINES];
	size_t n;
	int64_t seq; /* the next line's */
	unsigned char pk[32], sk[64];
	unsigned char other_pk[32], other_sk[64];
} trail;

static trail T;

static void
setup(void)
{
	tmpdir_make("ev_audit_read");
	memset(&T, 0, sizeof(T));
	T.seq = 1;
	ck_assert_int_eq(crypto_sign_keypair(T.pk, T.sk), 0);
	ck_assert_int_eq(crypto_sign_keypair(T.other_pk, T.other_sk), 0);
}

static void
teardown(void)
{
	size_t i;

	for (i = 0; i < T.n; i++)
		free(T.lines[i]);
	tmpdir_remove();
}

static void
hash_hex(const char *line, char hex[65])
{
	unsigned char h[32];

	crypto_generichash(h, sizeof(h), (const unsigned char *)line, strlen(line), NULL, 0);
	sodium_bin2hex(hex, 65, h, sizeof(h));
}

/* The prev of the next line: the hash of the last one, 64 zeros for the first. */
static void
next_prev(char hex[65])
{
	if (T.n == 0)
		memset(hex, '0', 64), hex[64] = '\0';
	else
		hash_hex(T.lines[T.n - 1], hex);
}

static void
push(json_object *o)
{
	ck_assert_uint_lt(T.n, MAX_LINES);
	T.lines[T.n] = strdup(json_object_to_json_string_ext(
	    o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	ck_assert_ptr_nonnull(T.lines[T.n]);
	T.n++;
	T.seq++;
	json_object_put(o);
}

/* A line's members up to "outcome" (and "zone" when not 0). */
static json_object *
line_start(int64_t seq, const char *event, const char *outcome, int64_t zone)
{
	json_object *o = json_object_new_object();
	char t[40];
	time_t secs = (time_t)(BASE_TIME + seq);
	struct tm tm;

	gmtime_r(&secs, &tm);
	strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S.000123Z", &tm);
	json_object_object_add(o, "seq", json_object_new_int64(seq));
	json_object_object_add(o, "time", json_object_new_string(t));
	json_object_object_add(o, "device", json_object_new_string("edge-0042"));
	json_object_object_add(o, "pid", json_object_new_int64(4242));
	json_object_object_add(o, "program", json_object_new_string("pkcs11-tool"));
	json_object_object_add(o, "event", json_object_new_string(event));
	json_object_object_add(o, "outcome", json_object_new_string(outcome));
	if (zone != 0)
		json_object_object_add(o, "zone", json_object_new_int64(zone));
	return o;
}

/* Append an event line; label and id may be NULL. */
static void
add(const char *event, const char *outcome, int64_t zone, const char *label, const char *id)
{
	json_object *o = line_start(T.seq, event, outcome, zone), *obj;
	char prev[65];

	if (label != NULL || id != NULL) {
		obj = json_object_new_object();
		json_object_object_add(obj, "class", json_object_new_string("private"));
		if (label != NULL)
			json_object_object_add(obj, "label", json_object_new_string(label));
		if (id != NULL)
			json_object_object_add(obj, "id", json_object_new_string(id));
		json_object_object_add(obj, "generation", json_object_new_int64(1));
		json_object_object_add(o, "object", obj);
	}
	next_prev(prev);
	json_object_object_add(o, "prev", json_object_new_string(prev));
	push(o);
}

/* Append the line the writer puts in place of lost events of kind event (src/audit_event.h). */
static void
add_lost(const char *event, int64_t zone)
{
	json_object *o = line_start(T.seq, event, "failed", zone), *d = json_object_new_object();
	char prev[65];

	json_object_object_add(o, "reason", json_object_new_string("audit lines lost: out of memory"));
	json_object_object_add(d, "lost", json_object_new_int64(2));
	json_object_object_add(o, "detail", d);
	next_prev(prev);
	json_object_object_add(o, "prev", json_object_new_string(prev));
	push(o);
}

/* Append n plain events in zone 1. */
static void
add_n(size_t n)
{
	while (n-- > 0)
		add(EV_AUDIT_KEY_UNWRAPPED, "ok", 1, "web", "0a1b");
}

static void write_head(int64_t seq, size_t no);

/* Append a checkpoint whose "key" is key_pk, signed with sign_sk, and its .head (as the writer). */
static void
add_checkpoint_by(const unsigned char *key_pk, const unsigned char *sign_sk)
{
	json_object *o = line_start(T.seq, EV_AUDIT_CHECKPOINT, "ok", 0);
	static const char prefix[] = EV_AUDIT_SIG_PREFIX;
	unsigned char msg[256], sig[64], prev[32];
	char hex[65], b64[100];
	size_t plen = sizeof(prefix) - 1, i;

	next_prev(hex);
	ck_assert_int_eq(sodium_hex2bin(prev, 32, hex, 64, NULL, NULL, NULL), 0);
	memcpy(msg, prefix, plen);
	for (i = 0; i < 8; i++)
		msg[plen + i] = (unsigned char)((uint64_t)T.seq >> (56 - 8 * i));
	memcpy(msg + plen + 8, prev, 32);
	memcpy(msg + plen + 40, "edge-0042", 9);
	crypto_sign_detached(sig, NULL, msg, plen + 49, sign_sk);
	json_object_object_add(o, "key",
			       json_object_new_string(sodium_bin2base64(
				   b64, sizeof(b64), key_pk, 32, sodium_base64_VARIANT_ORIGINAL)));
	json_object_object_add(o, "sig",
			       json_object_new_string(sodium_bin2base64(
				   b64, sizeof(b64), sig, 64, sodium_base64_VARIANT_ORIGINAL)));
	json_object_object_add(o, "prev", json_object_new_string(hex));
	push(o);
	write_head(T.seq - 1, T.n);
}

static void
add_checkpoint(void)
{
	add_checkpoint_by(T.pk, T.sk);
}

/* Append raw bytes as a line (a torn line): the seq is not taken. */
static void
add_raw(const char *text)
{
	ck_assert_uint_lt(T.n, MAX_LINES);
	T.lines[T.n++] = strdup(text);
}

/* Replace line no (1-based) by text. */
static void
set_line(size_t no, const char *text)
{
	free(T.lines[no - 1]);
	T.lines[no - 1] = strdup(text);
}

/* In line no, replace the first from by to. */
static void
edit_line(size_t no, const char *from, const char *to)
{
	char *l = T.lines[no - 1], *p = strstr(l, from), *n;

	ck_assert_ptr_nonnull(p);
	n = malloc(strlen(l) - strlen(from) + strlen(to) + 1);
	ck_assert_ptr_nonnull(n);
	sprintf(n, "%.*s%s%s", (int)(p - l), l, to, p + strlen(from));
	free(l);
	T.lines[no - 1] = n;
}

static void
delete_line(size_t no)
{
	free(T.lines[no - 1]);
	memmove(&T.lines[no - 1], &T.lines[no], (T.n - no) * sizeof(char *));
	T.n--;
}

static void
swap_lines(size_t a, size_t b)
{
	char *x = T.lines[a - 1];

	T.lines[a - 1] = T.lines[b - 1];
	T.lines[b - 1] = x;
}

/* Recompute every "prev" from line no on, as someone with the disk would (no signing). */
static void
rechain(size_t no)
{
	json_object *o;
	char prev[65];
	size_t i;

	for (i = no - 1; i < T.n; i++) {
		o = json_tokener_parse(T.lines[i]);
		ck_assert_ptr_nonnull(o);
		hash_hex(T.lines[i - 1], prev);
		json_object_object_add(o, "prev", json_object_new_string(prev));
		free(T.lines[i]);
		T.lines[i] = strdup(json_object_to_json_string_ext(
		    o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
	}
}

/* Write the trail to tmpdir/audit.log, every line ended unless cut_last. */
static const char *
write_trail(int cut_last)
{
	FILE *f;
	const char *path = path_of("audit.log");
	size_t i;

	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	for (i = 0; i < T.n; i++)
		fprintf(f, "%s%s", T.lines[i], cut_last && i + 1 == T.n ? "" : "\n");
	ck_assert_int_eq(fclose(f), 0);
	return path;
}

/* The .head naming line no (1-based) as checkpoint seq. */
static void
write_head(int64_t seq, size_t no)
{
	char hex[65], text[128];

	hash_hex(T.lines[no - 1], hex);
	snprintf(text, sizeof(text), "{\"seq\":%lld,\"hash\":\"%s\"}\n", (long long)seq, hex);
	write_text("audit.log.head", text, 0644);
}

static ev_audit_reader *
load(const char *path)
{
	ev_audit_reader *r = NULL;
	char err[512] = "";

	ck_assert_msg(ev_audit_reader_open(path, &r, err, sizeof(err)) == CKR_OK, "%s", err);
	ck_assert_ptr_nonnull(r);
	return r;
}

/* The next line of r (NULL: the end). */
static const ev_audit_line *
next_line(ev_audit_reader *r)
{
	const ev_audit_line *l = NULL;
	char err[512] = "";

	ck_assert_msg(ev_audit_reader_next(r, &l, err, sizeof(err)) == CKR_OK, "%s", err);
	return l;
}

/* Line no of the file at path, into *out (its members copied where the tests look). */
static ev_audit_reader *
load_to(const char *path, size_t no, const ev_audit_line **out)
{
	ev_audit_reader *r = load(path);
	const ev_audit_line *l;

	do {
		l = next_line(r);
		ck_assert_ptr_nonnull(l);
	} while (l->no < no);
	*out = l;
	return r;
}

/* Verify the file at path with the trusted key; the verdict in *v. */
static void
verify_file(const char *path, ev_audit_verdict *v)
{
	ev_audit_reader *r = load(path);
	char err[512] = "";

	ck_assert_msg(ev_audit_verify(r, T.pk, v, err, sizeof(err)) == CKR_OK, "%s", err);
	ev_audit_reader_free(r);
}

/* Write, read and verify with the trusted key; the verdict in *v. */
static void
verify_as(int cut_last, ev_audit_verdict *v)
{
	verify_file(write_trail(cut_last), v);
}

static void
assert_valid(void)
{
	ev_audit_verdict v;

	verify_as(0, &v);
	ck_assert_msg(v.valid, "not valid: %s", v.why);
	ck_assert_uint_eq(v.bad_line, 0);
	ck_assert_str_eq(v.why, "");
}

/* Not valid, first bad line no, and why holds s. */
static void
assert_bad(int cut_last, size_t no, const char *s)
{
	ev_audit_verdict v;

	verify_as(cut_last, &v);
	ck_assert_msg(!v.valid, "valid, expected line %zu: %s", no, s);
	ck_assert_msg(v.bad_line == no, "bad line %zu, expected %zu: %s", v.bad_line, no, v.why);
	ck_assert_err_has(v.why, s);
}

/* 10 events, a checkpoint (line and seq 11), 2 events. */
static void
standard_trail(void)
{
	add(EV_AUDIT_ZONE_CREATED, "ok", 1, NULL, NULL);
	add(EV_AUDIT_LOGIN, "ok", 1, NULL, NULL);
	add(EV_AUDIT_KEY_GENERATED, "ok", 1, "web", "0a1b");
	add_n(7);
	add_checkpoint();
	add_n(2);
}

START_TEST(test_valid)
{
	ev_audit_verdict v;

	standard_trail();
	assert_valid();
	verify_as(0, &v);
	ck_assert_msg(v.valid, "%s", v.why);
	ck_assert_uint_eq(v.lines, 13);
	ck_assert_uint_eq(v.checkpoints, 1);
	ck_assert_int_eq(v.last_checkpoint_seq, 11);
	ck_assert_uint_eq(v.last_checkpoint_line, 11);
	ck_assert_uint_eq(v.unsigned_lines, 2);
	ck_assert_uint_eq(v.torn, 0);
	ck_assert_str_eq(v.warning, "");
}
END_TEST

START_TEST(test_empty_and_missing)
{
	ev_audit_reader *r = NULL;
	ev_audit_verdict v;
	char err[512] = "";

	verify_file(write_text("audit.log", "", 0644), &v);
	ck_assert(v.valid);
	ck_assert_uint_eq(v.lines, 0);
	r = load(path_of("audit.log"));
	ck_assert_ptr_null(next_line(r));
	ck_assert_ptr_null(next_line(r));
	ck_assert_uint_eq(ev_audit_verify(r, NULL, &v, err, sizeof(err)), CKR_ARGUMENTS_BAD);
	ev_audit_reader_free(r);
	ev_audit_reader_free(NULL);
	r = (ev_audit_reader *)1;
	ck_assert_uint_eq(ev_audit_reader_open(path_of("none.log"), &r, err, sizeof(err)),
			  EVR_NOT_FOUND);
	ck_assert_ptr_null(r);
	ck_assert_err_has(err, "none.log: No such file or directory");
}
END_TEST

START_TEST(test_edited_line)
{
	standard_trail();
	edit_line(3, "\"web\"", "\"wex\"");
	assert_bad(
	    0, 4,
	    "line 4: prev does not match the hash of line 3 (edited, deleted or reordered lines)");
}
END_TEST

/* Edited, and the chain recomputed after it: the checkpoint's signature fails. */
START_TEST(test_edited_and_rechained)
{
	standard_trail();
	edit_line(3, "\"web\"", "\"wex\"");
	rechain(4);
	assert_bad(0, 11, "line 11: the checkpoint's signature does not verify");
}
END_TEST

START_TEST(test_deleted_line)
{
	standard_trail();
	delete_line(5);
	assert_bad(0, 5, "line 5: seq is 6, expected 5 (deleted, inserted or reordered lines)");
}
END_TEST

START_TEST(test_deleted_first_line)
{
	standard_trail();
	delete_line(1);
	assert_bad(0, 1, "line 1: seq is 2, expected 1");
}
END_TEST

/* Deleted and renumbered: the seqs hold, the chain does not. */
START_TEST(test_deleted_and_renumbered)
{
	standard_trail();
	delete_line(5);
	for (size_t no = 5; no <= 10; no++) {
		char from[16], to[16];

		snprintf(from, sizeof(from), "{\"seq\":%zu,", no + 1);
		snprintf(to, sizeof(to), "{\"seq\":%zu,", no);
		edit_line(no, from, to);
	}
	assert_bad(0, 5, "line 5: prev does not match the hash of line 4");
}
END_TEST

START_TEST(test_swapped_lines)
{
	standard_trail();
	swap_lines(6, 7);
	assert_bad(0, 6, "line 6: seq is 7, expected 6");
}
END_TEST

START_TEST(test_truncated_with_head)
{
	standard_trail();
	write_head(11, 11);
	while (T.n > 8)
		delete_line(T.n);
	assert_bad(0, 9, "line 9: missing: the file ends at seq 8, but " /* path */);
	assert_bad(0, 9, ".head records checkpoint seq 11 (truncated)");
}
END_TEST

/*
 * Checkpoints without a head: the head was removed (hiding a truncation).
 * Cut before the first checkpoint, nothing tells the file from a young one.
 */
START_TEST(test_truncated_without_head)
{
	ev_audit_verdict v;

	standard_trail();
	add_n(3);
	add_checkpoint(); /* line and seq 17 */
	add_n(2);
	unlink(path_of("audit.log.head"));
	assert_bad(0, 0, ".head: missing, but the file has 2 checkpoints (the last at line 17)");
	/* Truncated after the first checkpoint, the head removed. */
	while (T.n > 13)
		delete_line(T.n);
	assert_bad(0, 0, ".head: missing, but the file has 1 checkpoint (the last at line 11)");
	/* Cut before the first checkpoint: unsigned lines, no evidence. */
	while (T.n > 8)
		delete_line(T.n);
	verify_as(0, &v);
	ck_assert_msg(v.valid, "%s", v.why);
	ck_assert_uint_eq(v.checkpoints, 0);
	ck_assert_uint_eq(v.unsigned_lines, 8);
	ck_assert_int_eq(v.head_missing, 0);
	/* Cut inside a line. */
	T.lines[7][20] = '\0';
	assert_bad(1, 8, "line 8: cut short, no line end");
}
END_TEST

/* A crash between the first checkpoint's line and its head: a warning. */
START_TEST(test_first_checkpoint_without_head)
{
	ev_audit_verdict v;

	add_n(4);
	add_checkpoint();
	unlink(path_of("audit.log.head"));
	verify_as(0, &v);
	ck_assert_msg(v.valid, "%s", v.why);
	ck_assert_int_eq(v.head_missing, 1);
	ck_assert_uint_eq(v.checkpoints, 1);
	/* A line after it: the writer would have gone on to a head at its next checkpoint. */
	add_n(1);
	assert_bad(0, 0, ".head: missing, but the file has 1 checkpoint (the last at line 5)");
}
END_TEST

/* The head names a line that is not a checkpoint, with its right hash. */
START_TEST(test_head_names_no_checkpoint)
{
	standard_trail();
	write_head(12, 12);
	assert_bad(0, 12, "line 12: ");
	assert_bad(0, 12,
		   ".head names seq 12, but the line is key.unwrapped, not "
		   "audit.checkpoint (the head was rewritten)");
}
END_TEST

START_TEST(test_last_line_cut_short)
{
	standard_trail();
	assert_bad(1, 13, "line 13: cut short, no line end");
}
END_TEST

START_TEST(test_head_edited_checkpoint)
{
	standard_trail();
	write_head(11, 12); /* the hash of another line */
	assert_bad(0, 11, "line 11: its hash is not the one ");
	assert_bad(0, 11, ".head records for seq 11 (edited)");
	write_text("audit.log.head", "{\"seq\":11}", 0644);
	assert_bad(0, 0, ".head: \"hash\": missing");
	write_text("audit.log.head", "{\"seq\":11,\"hash\":\"ab\",\"seq\":11}", 0644);
	assert_bad(0, 0, "given twice");
}
END_TEST

/*
 * The writer's audit.torn line after torn bytes (src/audit.c tail_sync):
 * seq the given one, a reason, detail.bytes, prev the torn bytes' hash.
 */
static void
add_torn_marker(int64_t seq)
{
	json_object *o = line_start(seq, EV_AUDIT_TORN, "failed", 0), *d = json_object_new_object();
	char prev[65], why[96];
	size_t n = strlen(T.lines[T.n - 1]);

	snprintf(why, sizeof(why), "the end of the file (%zu bytes) is not a whole line", n);
	json_object_object_add(o, "reason", json_object_new_string(why));
	json_object_object_add(d, "bytes", json_object_new_int64((int64_t)n));
	json_object_object_add(o, "detail", d);
	next_prev(prev);
	json_object_object_add(o, "prev", json_object_new_string(prev));
	push(o);
}

static void
torn_trail(void)
{
	add_n(5);
	/* Line 6: a crash while writing seq 6; the writer goes on after it. */
	add_raw("{\"seq\":6,\"time\":\"2026-11-24T10:00:06.000123Z\",\"dev");
	add_torn_marker(6);
	add_n(2);
}

START_TEST(test_torn_recovered)
{
	ev_audit_verdict v;

	torn_trail();
	add_checkpoint();
	verify_as(0, &v);
	ck_assert_msg(v.valid, "%s", v.why);
	ck_assert_uint_eq(v.torn, 1);
	ck_assert_err_has(v.warning, "line 6: cut short by a crash while writing");
	ck_assert_uint_eq(v.checkpoints, 1);
	ck_assert_int_eq(v.last_checkpoint_seq, 9);
	ck_assert_uint_eq(v.last_checkpoint_line, 10);
	ck_assert_uint_eq(v.unsigned_lines, 0);
}
END_TEST

/*
 * The writer's audit.torn takes the seq after the last whole line's (the
 * torn line took none, src/audit.c tail_sync): one further on is a line
 * deleted after the torn one, not a shape the writer makes.
 */
START_TEST(test_torn_seq_skipped)
{
	add_n(5);
	add_raw("{\"seq\":6,\"ti");
	T.seq = 7;
	add_torn_marker(7);
	add_checkpoint();
	assert_bad(0, 7, "line 7: seq is 7, expected 6");
}
END_TEST

/* Torn bytes as the file's first line: the writer's audit.torn is seq 1. */
START_TEST(test_torn_first_line)
{
	ev_audit_verdict v;

	add_raw("{\"seq\":1,\"time\":\"2026");
	add_torn_marker(1);
	add_n(1);
	add_checkpoint();
	verify_as(0, &v);
	ck_assert_msg(v.valid, "%s", v.why);
	ck_assert_uint_eq(v.torn, 1);
	ck_assert_int_eq(v.last_checkpoint_seq, 3);
}
END_TEST

START_TEST(test_torn_not_covered)
{
	torn_trail();
	assert_bad(0, 6,
		   "line 6: cut short (a crash while writing, or an edit), and no later "
		   "checkpoint covers it");
}
END_TEST

START_TEST(test_torn_without_marker)
{
	add_n(5);
	add_raw("{\"seq\":6,\"ti");
	add_n(1);
	add_checkpoint();
	assert_bad(0, 6, "line 6: not valid JSON");
}
END_TEST

/* A torn line made by someone else: audit.torn's prev is not its hash. */
START_TEST(test_torn_marker_mismatch)
{
	torn_trail();
	add_checkpoint();
	set_line(6, "{\"seq\":6,\"tx");
	assert_bad(0, 6, "line 6: not valid JSON");
}
END_TEST

static uint64_t
file_size(const char *path)
{
	struct stat sb;

	ck_assert_int_eq(stat(path, &sb), 0);
	return (uint64_t)sb.st_size;
}

/* The stat of the file at path. */
static void
stat_of(const char *path, ev_audit_stat *st)
{
	ev_audit_reader *r = load(path);
	char err[512] = "";

	ck_assert_msg(ev_audit_reader_stat(r, st, err, sizeof(err)) == CKR_OK, "%s", err);
	ck_assert_ptr_null(next_line(r));
	ev_audit_reader_free(r);
}

/* status and metrics: lines counted, the head's line found scanning back, not all parsed. */
START_TEST(test_stat)
{
	const int64_t cp_time = (BASE_TIME + 11) * 1000000 + 123;
	ev_audit_stat st;
	char *big;

	standard_trail();
	stat_of(write_trail(0), &st);
	ck_assert_uint_eq(st.lines, 13);
	ck_assert_uint_eq(st.size, file_size(path_of("audit.log")));
	ck_assert_int_eq(st.head_seq, 11);
	ck_assert_int_eq(st.head_time_us, cp_time);
	/* After it: a line longer than a chunk (a problem, not ours), the last line unended. */
	big = malloc(200001);
	ck_assert_ptr_nonnull(big);
	memset(big, 'x', 200000);
	big[200000] = '\0';
	add_raw(big);
	free(big);
	add_n(3);
	stat_of(write_trail(1), &st);
	ck_assert_uint_eq(st.lines, 16);
	ck_assert_int_eq(st.head_time_us, cp_time);
	/* The head's seq, but another line's hash: not found. */
	write_head(11, 10);
	stat_of(write_trail(0), &st);
	ck_assert_uint_eq(st.lines, 17);
	ck_assert_int_eq(st.head_seq, 11);
	ck_assert_int_eq(st.head_time_us, 0);
	/* The head's line, but line 11 is not a checkpoint (an edit): not found. */
	write_head(11, 11);
	edit_line(11, "audit.checkpoint", "audit.checkpoinT");
	write_head(11, 11);
	stat_of(write_trail(0), &st);
	ck_assert_int_eq(st.head_time_us, 0);
	/* No head. */
	ck_assert_int_eq(unlink(path_of("audit.log.head")), 0);
	stat_of(write_trail(0), &st);
	ck_assert_int_eq(st.head_seq, 0);
	ck_assert_uint_eq(st.lines, 17);
	/* Empty. */
	while (T.n > 0)
		delete_line(T.n);
	stat_of(write_trail(0), &st);
	ck_assert_uint_eq(st.lines, 0);
	ck_assert_uint_eq(st.size, 0);
}
END_TEST

/* The head's checkpoint line across a 64 KiB boundary from the end of the file: found. */
START_TEST(test_stat_across_chunks)
{
	const int64_t cp_time = (BASE_TIME + 11) * 1000000 + 123;
	size_t start = 0, size = 0, len, fill, i;
	ev_audit_stat st;
	char *big;

	standard_trail();
	for (i = 0; i < T.n; i++) {
		if (i == 10)
			start = size;
		size += strlen(T.lines[i]) + 1;
	}
	len = strlen(T.lines[10]);
	ck_assert_uint_ge(len, 16);
	/* A line not of ours after it, so that the end less 64 KiB falls in line 11's middle. */
	fill = start + len / 2 + 65536 - size - 1;
	big = malloc(fill + 1);
	ck_assert_ptr_nonnull(big);
	memset(big, 'x', fill);
	big[fill] = '\0';
	add_raw(big);
	free(big);
	stat_of(write_trail(0), &st);
	ck_assert_uint_eq(st.size, start + len / 2 + 65536);
	ck_assert_uint_eq(st.lines, 14);
	ck_assert_int_eq(st.head_seq, 11);
	ck_assert_int_eq(st.head_time_us, cp_time);
}
END_TEST

/* Opening path fails at once, and err holds s ("" for any). */
static void
assert_open_refused(const char *path, const char *s)
{
	ev_audit_reader *r = NULL;
	char err[512] = "";

	ck_assert_int_eq(ev_audit_reader_open(path, &r, err, sizeof(err)), CKR_DEVICE_ERROR);
	ck_assert_ptr_null(r);
	ck_assert_err_has(err, s);
}

/* A FIFO or a symlink at the file's or the head's name: refused at once, not waited on. */
START_TEST(test_not_regular)
{
	char t[4096], head[4096], real[4096];

	standard_trail();
	snprintf(t, sizeof(t), "%s", write_trail(0));
	snprintf(head, sizeof(head), "%s", path_of("audit.log.head"));
	snprintf(real, sizeof(real), "%s", path_of("real.log"));
	ck_assert_int_eq(unlink(head), 0);
	ck_assert_int_eq(mkfifo(head, 0600), 0);
	assert_open_refused(t, "audit.log.head: not a regular file");
	ck_assert_int_eq(unlink(head), 0);
	ck_assert_int_eq(symlink("audit.log", head), 0);
	assert_open_refused(t, "audit.log.head: ");
	ck_assert_int_eq(unlink(head), 0);
	ck_assert_int_eq(rename(t, real), 0);
	ck_assert_int_eq(mkfifo(t, 0600), 0);
	assert_open_refused(t, "audit.log: not a regular file");
	ck_assert_int_eq(unlink(t), 0);
	ck_assert_int_eq(symlink("real.log", t), 0);
	assert_open_refused(t, "audit.log: ");
	ck_assert_int_eq(unlink(t), 0);
	ck_assert_int_eq(rename(real, t), 0);
	ev_audit_reader_free(load(t));
}
END_TEST

START_TEST(test_bad_signature)
{
	char *sig;

	standard_trail();
	sig = strstr(T.lines[10], "\"sig\":\"") + 7;
	while (*sig == '/' || *sig == '+')
		sig++;
	*sig = *sig == 'A' ? 'B' : 'A';
	assert_bad(0, 11, "line 11: the checkpoint's signature does not verify");
}
END_TEST

START_TEST(test_signed_by_other_key)
{
	add_n(3);
	add_checkpoint_by(T.pk, T.other_sk);
	add_n(1);
	assert_bad(0, 4, "line 4: the checkpoint's signature does not verify");
}
END_TEST

START_TEST(test_other_key_member)
{
	char b64[64];

	add_n(3);
	add_checkpoint();
	add_n(2);
	add_checkpoint_by(T.other_pk, T.other_sk);
	sodium_bin2base64(b64, sizeof(b64), T.other_pk, 32, sodium_base64_VARIANT_ORIGINAL);
	assert_bad(0, 7, "line 7: checkpoint made with another key (");
	assert_bad(0, 7, b64);
	edit_line(7, "\"key\":\"", "\"key\":\"AA");
	rechain(8);
	assert_bad(0, 7, "line 7: the checkpoint's \"key\" is not a base64 Ed25519 key");
}
END_TEST

START_TEST(test_not_json)
{
	standard_trail();
	set_line(3, "seq=3 event=key.generated");
	assert_bad(0, 3, "line 3: not valid JSON");
}
END_TEST

START_TEST(test_duplicate_member)
{
	standard_trail();
	edit_line(3, "\"zone\":1,", "\"zone\":1,\"zone\":2,");
	assert_bad(0, 3, "line 3: not valid JSON: a member is given twice in an object");
}
END_TEST

START_TEST(test_members)
{
	standard_trail();
	edit_line(2, "\"pid\":4242,", "");
	assert_bad(0, 2, "line 2: \"pid\": missing");
	edit_line(2, "\"outcome\":\"ok\"", "\"outcome\":\"maybe\",\"pid\":1");
	assert_bad(0, 2, "line 2: \"outcome\": expected ok, refused or failed");
	edit_line(2, "\"outcome\":\"maybe\"", "\"outcome\":\"ok\"");
	edit_line(2, "\"seq\":2", "\"seq\":\"2\"");
	assert_bad(0, 2, "line 2: \"seq\": expected an integer, not string");
	edit_line(2, "\"seq\":\"2\"", "\"seq\":2");
	edit_line(2, ".000123Z", "+01:00");
	assert_bad(0, 2, "line 2: \"time\": not a UTC time");
	edit_line(2, "+01:00", ".000123Z");
	edit_line(3, "\"id\":\"0a1b\"", "\"id\":\"0A1B\"");
	assert_bad(0, 3, "line 3: \"object\": \"id\": expected lowercase hex");
	edit_line(3, "\"id\":\"0A1B\"", "\"id\":\"0a1b\"");
	/* A NUL inside a string would hide what follows it from every reader. */
	edit_line(3, "\"label\":\"web\"", "\"label\":\"web\\u0000.evil\"");
	assert_bad(0, 3, "line 3: \"label\": holds a NUL byte");
	edit_line(3, "\"label\":\"web\\u0000.evil\"", "\"label\":\"web\"");
	edit_line(2, "\"event\":\"login\"", "\"event\":\"login\\u0000\"");
	assert_bad(0, 2, "line 2: \"event\": holds a NUL byte");
	edit_line(2, "\"event\":\"login\\u0000\"", "\"event\":\"login\"");
	set_line(3, "[1,2]");
	assert_bad(0, 3, "line 3: not a JSON object");
	set_line(3, "");
	assert_bad(0, 3, "line 3: not valid JSON");
	set_line(3, "{}");
	assert_bad(0, 3, "line 3: \"seq\": missing");
}
END_TEST

START_TEST(test_checkpoint_without_sig)
{
	standard_trail();
	edit_line(11, "\"sig\":", "\"sigh\":");
	assert_bad(0, 11, "line 11: \"sig\": missing");
}
END_TEST

START_TEST(test_line_too_long)
{
	char *big = malloc(EV_AUDIT_LINE_MAX + 100);

	ck_assert_ptr_nonnull(big);
	add_n(2);
	memset(big, 'x', EV_AUDIT_LINE_MAX + 99);
	big[EV_AUDIT_LINE_MAX + 99] = '\0';
	add_raw(big);
	free(big);
	assert_bad(0, 3, "line 3: longer than 4096 bytes");
}
END_TEST

/* A reader waits for a writer holding the lock, and sees its line whole. */
START_TEST(test_reader_waits_for_writer)
{
	const char *path;
	ev_audit_reader *r;
	const ev_audit_line *l;
	int fd, pipefd[2], status;
	char c;
	pid_t pid;

	add_n(3);
	path = write_trail(0);
	ck_assert_int_eq(pipe(pipefd), 0);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		size_t half = strlen(T.lines[2]) / 2;

		/* A writer: half a line, a pause, the rest, under the lock. */
		fd = open(path, O_WRONLY | O_TRUNC);
		if (fd < 0 || flock(fd, LOCK_EX) != 0)
			_exit(1);
		dprintf(fd, "%s\n%s\n", T.lines[0], T.lines[1]);
		if (write(fd, T.lines[2], half) != (ssize_t)half || write(pipefd[1], "x", 1) != 1)
			_exit(1);
		usleep(300 * 1000);
		dprintf(fd, "%s\n", T.lines[2] + half);
		_exit(0);
	}
	close(pipefd[1]);
	ck_assert_int_eq(read(pipefd[0], &c, 1), 1);
	close(pipefd[0]);
	r = load_to(path, 3, &l);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert(l->ended);
	ck_assert_ptr_null(l->problem);
	ck_assert_ptr_null(next_line(r));
	ev_audit_reader_free(r);
}
END_TEST

/* A line appended after the reader opened the file is not read: it reads what was there. */
START_TEST(test_reader_snapshot)
{
	const char *path;
	ev_audit_reader *r;
	const ev_audit_line *l;
	FILE *f;

	add_n(3);
	path = write_trail(0);
	r = load(path);
	ck_assert_uint_eq(ev_audit_reader_size(r),
			  strlen(T.lines[0]) + strlen(T.lines[1]) + strlen(T.lines[2]) + 3);
	ck_assert_str_eq(ev_audit_reader_path(r), path);
	ck_assert_int_eq(ev_audit_reader_head(r)->present, 0);
	add_n(1);
	f = fopen(path, "a");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "%s\n", T.lines[3]);
	ck_assert_int_eq(fclose(f), 0);
	l = next_line(r);
	ck_assert_uint_eq(l->no, 1);
	ck_assert_str_eq(l->text, T.lines[0]);
	ck_assert_uint_eq(next_line(r)->no, 2);
	ck_assert_uint_eq(next_line(r)->no, 3);
	ck_assert_ptr_null(next_line(r));
	ev_audit_reader_free(r);
}
END_TEST

/* A line of 3 MiB: read through, not kept; its hash is of all of it; the next line is read. */
START_TEST(test_reader_long_line)
{
	size_t big = 3 << 20, i;
	unsigned char h[32];
	ev_audit_reader *r;
	const ev_audit_line *l;
	char *text = malloc(big + 1);
	FILE *f;

	ck_assert_ptr_nonnull(text);
	for (i = 0; i < big; i++)
		text[i] = (char)('a' + i % 26);
	text[big] = '\0';
	add_n(1);
	f = fopen(write_trail(0), "a");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "%s\n%s\n", text, T.lines[0]);
	ck_assert_int_eq(fclose(f), 0);
	crypto_generichash(h, sizeof(h), (const unsigned char *)text, big, NULL, 0);
	r = load_to(path_of("audit.log"), 2, &l);
	ck_assert_uint_eq(l->len, big);
	ck_assert_uint_eq(strlen(l->text), EV_AUDIT_LINE_MAX);
	ck_assert_int_eq(memcmp(l->text, text, EV_AUDIT_LINE_MAX), 0);
	ck_assert_int_eq(memcmp(l->hash, h, sizeof(h)), 0);
	ck_assert_str_eq(l->problem, "line 2: longer than 4096 bytes");
	l = next_line(r);
	ck_assert_uint_eq(l->no, 3);
	ck_assert_ptr_null(l->problem);
	ck_assert_ptr_null(next_line(r));
	ev_audit_reader_free(r);
	free(text);
}
END_TEST

/* The address space the process has now, in bytes (VmSize); 0 when unknown. */
static size_t
vm_size(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long kb = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmSize: %lu kB", &kb) == 1)
			break;
	fclose(f);
	return (size_t)kb * 1024;
}

/*
 * A trail of n valid lines of about 1 KiB each written straight to path
 * (no checkpoint: verify takes them as unsigned), then a line of big
 * bytes of 'x'.
 */
static void
write_big_trail(const char *path, size_t n, size_t big)
{
	char line[1200], prev[65], pad[901];
	size_t i;
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	memset(prev, '0', 64);
	prev[64] = '\0';
	memset(pad, 'p', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	for (i = 1; i <= n; i++) {
		snprintf(line, sizeof(line),
			 "{\"seq\":%zu,\"time\":\"2026-11-24T10:00:00.000123Z\",\"device\":"
			 "\"edge-0042\",\"pid\":4242,\"program\":\"pkcs11-tool\",\"event\":"
			 "\"key.unwrapped\",\"outcome\":\"ok\",\"zone\":1,\"object\":{\"class\":"
			 "\"private\",\"label\":\"%s\",\"id\":\"0a1b\",\"generation\":1},\"prev\":"
			 "\"%s\"}",
			 i, pad, prev);
		fprintf(f, "%s\n", line);
		hash_hex(line, prev);
	}
	for (i = 0; i < big; i++)
		putc('x', f);
	putc('\n', f);
	ck_assert_int_eq(fclose(f), 0);
}

/*
 * Verify and summarize the trail of write_big_trail(path, n, ...). 0 as
 * expected; else what went wrong, on stderr, and 1.
 */
static int
read_big_trail(const char *path, size_t n)
{
	ev_audit_reader *r = NULL;
	ev_audit_verdict v;
	ev_audit_summary s;
	ev_audit_filter f = {0};
	char err[512] = "";

	if (ev_audit_reader_open(path, &r, err, sizeof(err)) != CKR_OK ||
	    ev_audit_verify(r, T.pk, &v, err, sizeof(err)) != CKR_OK) {
		fprintf(stderr, "verify: %s\n", err);
		return 1;
	}
	ev_audit_reader_free(r);
	if (v.valid || v.bad_line != n + 1 || v.lines != n + 1 ||
	    strstr(v.why, "longer than 4096 bytes") == NULL) {
		fprintf(stderr, "verdict: valid %d, line %zu, lines %zu: %s\n", v.valid, v.bad_line,
			v.lines, v.why);
		return 1;
	}
	if (ev_audit_reader_open(path, &r, err, sizeof(err)) != CKR_OK ||
	    ev_audit_summarize(r, &f, &s, err, sizeof(err)) != CKR_OK) {
		fprintf(stderr, "summarize: %s\n", err);
		return 1;
	}
	ev_audit_reader_free(r);
	if (s.lines != n || s.skipped != 1 || s.nzones != 1) {
		fprintf(stderr, "summary: %zu lines, %zu skipped\n", s.lines, s.skipped);
		return 1;
	}
	ev_audit_summary_clear(&s);
	return 0;
}

/* What a reader that takes the file whole needs: 0 when it cannot have it. */
static int
take_whole(const char *path, size_t n)
{
	void *p = malloc(n * 1024);
	int got = p != NULL;

	(void)path;
	free(p);
	return got;
}

/*
 * The exit status of fn(path, n) in a child whose address space may grow
 * by 16 MiB at most (2: it cannot be limited).
 */
static int
limited(int (*fn)(const char *, size_t), const char *path, size_t n)
{
	struct rlimit rl;
	int status;
	pid_t pid = fork();

	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		rl.rlim_cur = rl.rlim_max = vm_size() + (16 << 20);
		if (rl.rlim_cur == 16 << 20 || setrlimit(RLIMIT_AS, &rl) != 0)
			_exit(2);
		_exit(fn(path, n));
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status), "the child died (signal %d)",
		      WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	ck_assert_msg(WEXITSTATUS(status) != 2, "cannot limit the address space");
	return WEXITSTATUS(status);
}

/*
 * Memory does not grow with the file: a trail of 24 MiB and a line of 24
 * MiB verified and summarized with 16 MiB more address space at most.
 */
START_TEST(test_reader_memory_bounded)
{
	const size_t n = 24 * 1024, big = 24 << 20;
	const char *path = path_of("big.log");

	write_big_trail(path, n, big);
	ck_assert_int_eq(limited(read_big_trail, path, n), 0);
	/* The same limit fails a reader that takes the file whole: the test can fail. */
	ck_assert_int_eq(limited(take_whole, path, n), 0);
}
END_TEST

START_TEST(test_time_parse)
{
	int64_t s, e;

	ck_assert_int_eq(ev_audit_time_parse("2026-11-24T10:00:00.123456Z", &s, &e), 0);
	ck_assert_int_eq(s, BASE_TIME * 1000000 + 123456);
	ck_assert_int_eq(e, s + 1);
	ck_assert_int_eq(ev_audit_time_parse("2026-11-24T10:00:00Z", &s, &e), 0);
	ck_assert_int_eq(s, BASE_TIME * 1000000);
	ck_assert_int_eq(e, s + 1000000);
	ck_assert_int_eq(ev_audit_time_parse("2026-11-24T10:00:00.5Z", &s, &e), 0);
	ck_assert_int_eq(s, BASE_TIME * 1000000 + 500000);
	ck_assert_int_eq(e, s + 100000);
	ck_assert_int_eq(ev_audit_time_parse("2026-11-24", &s, &e), 0);
	ck_assert_int_eq(s, (BASE_TIME - 10 * 3600) * 1000000);
	ck_assert_int_eq(e, s + 86400LL * 1000000);
	ck_assert_int_eq(ev_audit_time_parse("2026-11-24T10:00:00", &s, &e), -1);
	ck_assert_int_eq(ev_audit_time_parse("2026-11-24T10:00:00.Z", &s, &e), -1);
	ck_assert_int_eq(ev_audit_time_parse("2026-11-24T10:00:00.1234567Z", &s, &e), -1);
	ck_assert_int_eq(ev_audit_time_parse("2026-11-24 10:00:00Z", &s, &e), -1);
	ck_assert_int_eq(ev_audit_time_parse("2026-13-24", &s, &e), -1);
	/* Dates and times that do not exist, which timegm() would roll over. */
	ck_assert_int_eq(ev_audit_time_parse("2026-02-30", &s, &e), -1);
	ck_assert_int_eq(ev_audit_time_parse("2026-02-29", &s, &e), -1);
	ck_assert_int_eq(ev_audit_time_parse("2026-04-31T10:00:00Z", &s, &e), -1);
	ck_assert_int_eq(ev_audit_time_parse("2026-11-24T24:00:00Z", &s, &e), -1);
	ck_assert_int_eq(ev_audit_time_parse("2026-11-24T10:60:00Z", &s, &e), -1);
	ck_assert_int_eq(ev_audit_time_parse("2026-12-31T23:59:60Z", &s, &e), -1);
	ck_assert_int_eq(ev_audit_time_parse("2026-11-00", &s, &e), -1);
	/* The last of each: still times. */
	ck_assert_int_eq(ev_audit_time_parse("2028-02-29", &s, &e), 0);
	ck_assert_int_eq(ev_audit_time_parse("2026-12-31T23:59:59.999999Z", &s, &e), 0);
	ck_assert_int_eq(e, (int64_t)1798761600 * 1000000);
	/* Digits at their places only (strptime() skips spaces, takes signs). */
	ck_assert_int_eq(ev_audit_time_parse("2026-11- 4T10:00: 1Z", &s, &e), -1);
	ck_assert_int_eq(ev_audit_time_parse("2026-11- 4", &s, &e), -1);
	ck_assert_int_eq(ev_audit_time_parse(" 026-11-24", &s, &e), -1);
	ck_assert_int_eq(ev_audit_time_parse("+026-11-24", &s, &e), -1);
	ck_assert_int_eq(ev_audit_time_parse("2026-11-24T+1:00:00Z", &s, &e), -1);
	ck_assert_int_eq(ev_audit_time_parse("2026-11-24T10:0a:00Z", &s, &e), -1);
	ck_assert_int_eq(ev_audit_time_parse("yesterday", &s, &e), -1);
	ck_assert_int_eq(ev_audit_time_parse("", &s, &e), -1);
}
END_TEST

/* The lines of the file at path that f takes, as a string "1,4,5". */
static const char *
matching(const char *path, const ev_audit_filter *f)
{
	static char buf[256];
	ev_audit_reader *r = load(path);
	const ev_audit_line *l;
	size_t n = 0;

	buf[0] = '\0';
	while ((l = next_line(r)) != NULL)
		if (ev_audit_match(l, f))
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%zu", n ? "," : "",
					      l->no);
	ev_audit_reader_free(r);
	return buf;
}

static void
mixed_trail(void)
{
	add(EV_AUDIT_ZONE_CREATED, "ok", 1, NULL, NULL);	 /* 1 */
	add(EV_AUDIT_ZONE_CREATED, "ok", 2, NULL, NULL);	 /* 2 */
	add(EV_AUDIT_LOGIN, "ok", 1, NULL, NULL);		 /* 3 */
	add(EV_AUDIT_LOGIN, "refused", 2, NULL, NULL);		 /* 4 */
	add(EV_AUDIT_PIN_LOCKED, "refused", 2, NULL, NULL);	 /* 5 */
	add(EV_AUDIT_KEY_GENERATED, "ok", 1, "web", "0a1b");	 /* 6 */
	add(EV_AUDIT_KEY_GENERATED, "ok", 1, "api", "0c");	 /* 7 */
	add(EV_AUDIT_KEY_IMPORTED, "ok", 2, "web", "ff");	 /* 8 */
	add(EV_AUDIT_KEY_ROTATED, "ok", 1, "web", "0a1c");	 /* 9 */
	add(EV_AUDIT_KEY_RETIRED, "ok", 1, "web", "0a1b");	 /* 10 */
	add(EV_AUDIT_ATTESTATION, "refused", 1, NULL, NULL);	 /* 11 */
	add(EV_AUDIT_ATTESTATION, "ok", 1, NULL, NULL);		 /* 12 */
	add(EV_AUDIT_REVOCATION_LIST, "ok", 0, NULL, NULL);	 /* 13 */
	add(EV_AUDIT_KEY_REVOKED, "ok", 1, "api", "0c");	 /* 14 */
	add(EV_AUDIT_REVOCATION_LIST, "refused", 0, NULL, NULL); /* 15 */
	add(EV_AUDIT_ROOT_UNREACHABLE, "failed", 0, NULL, NULL); /* 16 */
	add(EV_AUDIT_KEY_DESTROYED, "ok", 1, "web", "0a1b");	 /* 17 */
	add_checkpoint();					 /* 18 */
	add_raw("garbage");					 /* 19 */
}

START_TEST(test_filters)
{
	const char *fam[] = {"key"}, *two[] = {"login", "pin.locked"}, *exact[] = {"key.rot"};
	ev_audit_filter f;
	ev_audit_reader *r;
	const ev_audit_line *l;
	const char *t;
	int64_t s, e;

	mixed_trail();
	t = write_trail(0);
	memset(&f, 0, sizeof(f));
	ck_assert_str_eq(matching(t, &f), "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18");
	r = load_to(t, 6, &l);
	ck_assert_str_eq(l->cls, "private");
	ck_assert_ptr_null(l->key_type);
	ck_assert_str_eq(l->label, "web");
	ck_assert_str_eq(l->id, "0a1b");
	ck_assert_int_eq(l->generation, 1);
	ck_assert_int_eq(l->zone, 1);
	ev_audit_reader_free(r);
	r = load_to(t, 19, &l);
	ck_assert_ptr_null(l->event);
	ck_assert_str_eq(l->problem, "line 19: not valid JSON: unexpected character at offset 0");
	ck_assert_ptr_null(next_line(r));
	ev_audit_reader_free(r);
	f.zone = 2;
	ck_assert_str_eq(matching(t, &f), "2,4,5,8");
	f.zone = 0;
	f.label = "web";
	ck_assert_str_eq(matching(t, &f), "6,8,9,10,17");
	f.id = "0A1B";
	ck_assert_str_eq(matching(t, &f), "6,10,17");
	f.label = NULL;
	f.id = "0a";
	ck_assert_str_eq(matching(t, &f), "");
	f.id = NULL;
	f.events = fam;
	f.nevents = 1;
	ck_assert_str_eq(matching(t, &f), "6,7,8,9,10,14,17");
	f.events = two;
	f.nevents = 2;
	ck_assert_str_eq(matching(t, &f), "3,4,5");
	f.events = exact;
	f.nevents = 1;
	ck_assert_str_eq(matching(t, &f), "");
	f.nevents = 0;
	/* Line N's time is BASE_TIME + N seconds (and 123 microseconds). */
	ck_assert_int_eq(ev_audit_time_parse("2026-11-24T10:00:05Z", &s, &e), 0);
	f.has_since = 1;
	f.since = s;
	ck_assert_int_eq(ev_audit_time_parse("2026-11-24T10:00:08.000123Z", &s, &e), 0);
	f.has_until = 1;
	f.until = e;
	ck_assert_str_eq(matching(t, &f), "5,6,7,8");
	ck_assert_int_eq(ev_audit_time_parse("2026-11-25", &s, &e), 0);
	f.since = s;
	f.has_until = 0;
	ck_assert_str_eq(matching(t, &f), "");
	/* A bound at the epoch (0) is a bound: before it, nothing. */
	f.has_since = 0;
	f.has_until = 1;
	f.until = 0;
	ck_assert_str_eq(matching(t, &f), "");
	ck_assert_int_eq(ev_audit_time_parse("1969-12-31", &s, &e), 0);
	f.until = e;
	ck_assert_str_eq(matching(t, &f), "");
	ck_assert_int_eq(ev_audit_time_parse("2026-11-24", &s, &e), 0);
	f.has_since = 1;
	f.since = s;
	f.until = e;
	f.zone = 1;
	f.label = "api";
	ck_assert_str_eq(matching(t, &f), "7,14");
}
END_TEST

/* Summarize the file at path into *s. */
static void
summarize(const char *path, const ev_audit_filter *f, ev_audit_summary *s)
{
	ev_audit_reader *r = load(path);
	char err[512] = "";

	ck_assert_msg(ev_audit_summarize(r, f, s, err, sizeof(err)) == CKR_OK, "%s", err);
	ev_audit_reader_free(r);
}

START_TEST(test_summary)
{
	static const uint64_t z0[EV_AUDIT_C_COUNT] = {
	    [EV_AUDIT_C_REVOCATION_LISTS_APPLIED] = 1,
	    [EV_AUDIT_C_REVOCATION_LISTS_REFUSED] = 1,
	    [EV_AUDIT_C_ROOT_UNREACHABLE] = 1,
	    [EV_AUDIT_C_CHECKPOINTS] = 1,
	    [EV_AUDIT_C_REFUSALS] = 1,
	    [EV_AUDIT_C_FAILURES] = 1,
	};
	static const uint64_t z1[EV_AUDIT_C_COUNT] = {
	    [EV_AUDIT_C_ZONES_CREATED] = 1,	   [EV_AUDIT_C_LOGINS_OK] = 1,
	    [EV_AUDIT_C_KEYS_GENERATED] = 2,	   [EV_AUDIT_C_KEYS_ROTATED] = 1,
	    [EV_AUDIT_C_KEYS_RETIRED] = 1,	   [EV_AUDIT_C_ATTESTATIONS_OK] = 1,
	    [EV_AUDIT_C_ATTESTATIONS_REFUSED] = 1, [EV_AUDIT_C_KEYS_REVOKED] = 1,
	    [EV_AUDIT_C_KEYS_DESTROYED] = 1,	   [EV_AUDIT_C_REFUSALS] = 1,
	};
	static const uint64_t z2[EV_AUDIT_C_COUNT] = {
	    [EV_AUDIT_C_ZONES_CREATED] = 1, [EV_AUDIT_C_LOGINS_REFUSED] = 1,
	    [EV_AUDIT_C_PIN_LOCKS] = 1,	    [EV_AUDIT_C_KEYS_IMPORTED] = 1,
	    [EV_AUDIT_C_REFUSALS] = 2,
	};
	ev_audit_filter f;
	ev_audit_summary s;
	const char *t;
	int64_t a, b;
	unsigned k;

	mixed_trail();
	t = write_trail(0);
	memset(&f, 0, sizeof(f));
	f.zone = 2; /* only times count */
	summarize(t, &f, &s);
	ck_assert_uint_eq(s.nzones, 3);
	ck_assert_uint_eq(s.lines, 18);
	ck_assert_uint_eq(s.skipped, 1);
	ck_assert_str_eq(s.first, "2026-11-24T10:00:01.000123Z");
	ck_assert_str_eq(s.last, "2026-11-24T10:00:18.000123Z");
	ck_assert_int_eq(s.zones[0].zone, 0);
	ck_assert_int_eq(s.zones[1].zone, 1);
	ck_assert_int_eq(s.zones[2].zone, 2);
	for (k = 0; k < EV_AUDIT_C_COUNT; k++) {
		ck_assert_msg(s.zones[0].n[k] == z0[k], "zone 0 %s", ev_audit_count_name(k));
		ck_assert_msg(s.zones[1].n[k] == z1[k], "zone 1 %s", ev_audit_count_name(k));
		ck_assert_msg(s.zones[2].n[k] == z2[k], "zone 2 %s", ev_audit_count_name(k));
	}
	ev_audit_summary_clear(&s);
	ck_assert_ptr_null(s.zones);
	/* A period: lines 9 to 12. */
	ck_assert_int_eq(ev_audit_time_parse("2026-11-24T10:00:09Z", &a, &b), 0);
	f.has_since = 1;
	f.since = a;
	ck_assert_int_eq(ev_audit_time_parse("2026-11-24T10:00:12.5Z", &a, &b), 0);
	f.has_until = 1;
	f.until = a;
	summarize(t, &f, &s);
	ck_assert_uint_eq(s.lines, 4);
	ck_assert_uint_eq(s.nzones, 1);
	ck_assert_uint_eq(s.zones[0].n[EV_AUDIT_C_KEYS_ROTATED], 1);
	ck_assert_uint_eq(s.zones[0].n[EV_AUDIT_C_KEYS_RETIRED], 1);
	ck_assert_uint_eq(s.zones[0].n[EV_AUDIT_C_ATTESTATIONS_OK], 1);
	ck_assert_uint_eq(s.zones[0].n[EV_AUDIT_C_ATTESTATIONS_REFUSED], 1);
	ck_assert_uint_eq(s.zones[0].n[EV_AUDIT_C_KEYS_GENERATED], 0);
	ev_audit_summary_clear(&s);
	ev_audit_summary_clear(NULL);
	ck_assert_str_eq(ev_audit_count_name(EV_AUDIT_C_KEYS_GENERATED), "keys_generated");
	ck_assert_ptr_null(ev_audit_count_name(EV_AUDIT_C_COUNT));
}
END_TEST

/* zone.reinitialised and pin.set are counted when ok, lost lines as failures; whose trail it is (device, checkpoint key). */
START_TEST(test_summary_origin)
{
	ev_audit_filter f = {0};
	ev_audit_summary s;
	char b64[64];

	summarize(write_trail(0), &f, &s);
	ck_assert_ptr_null(s.device);
	ck_assert_str_eq(s.checkpoint_key, "");
	ck_assert_str_eq(s.first, "");
	ck_assert_str_eq(s.last, "");
	ev_audit_summary_clear(&s);
	add(EV_AUDIT_ZONE_CREATED, "ok", 1, NULL, NULL);
	add(EV_AUDIT_PIN_SET, "ok", 1, NULL, NULL);
	add(EV_AUDIT_ZONE_REINITIALISED, "ok", 1, NULL, NULL);
	add(EV_AUDIT_ZONE_REINITIALISED, "refused", 1, NULL, NULL);
	add(EV_AUDIT_PIN_SET, "ok", 2, NULL, NULL);
	add(EV_AUDIT_PIN_SET, "failed", 1, NULL, NULL);
	add_lost(EV_AUDIT_KEY_GENERATED, 1);
	add_checkpoint();
	add_raw("not a line");
	summarize(write_trail(0), &f, &s);
	ck_assert_uint_eq(s.lines, 8);
	ck_assert_uint_eq(s.skipped, 1);
	ck_assert_uint_eq(s.nzones, 3);
	/* Only what was done: refusals and failures are counted as such. */
	ck_assert_uint_eq(s.zones[1].n[EV_AUDIT_C_PINS_SET], 1);
	ck_assert_uint_eq(s.zones[1].n[EV_AUDIT_C_ZONES_REINITIALISED], 1);
	ck_assert_uint_eq(s.zones[1].n[EV_AUDIT_C_REFUSALS], 1);
	ck_assert_uint_eq(s.zones[1].n[EV_AUDIT_C_KEYS_GENERATED], 0);
	ck_assert_uint_eq(s.zones[1].n[EV_AUDIT_C_FAILURES], 2);
	ck_assert_uint_eq(s.zones[2].n[EV_AUDIT_C_PINS_SET], 1);
	ck_assert_uint_eq(s.zones[2].n[EV_AUDIT_C_ZONES_REINITIALISED], 0);
	ck_assert_str_eq(s.device, "edge-0042");
	ck_assert_int_eq(s.several_devices, 0);
	sodium_bin2base64(b64, sizeof(b64), T.pk, 32, sodium_base64_VARIANT_ORIGINAL);
	ck_assert_str_eq(s.checkpoint_key, b64);
	ev_audit_summary_clear(&s);
	ck_assert_ptr_null(s.device);
	ck_assert_str_eq(ev_audit_count_name(EV_AUDIT_C_PINS_SET), "pins_set");
	ck_assert_str_eq(ev_audit_count_name(EV_AUDIT_C_ZONES_REINITIALISED),
			 "zones_reinitialised");
	/* Another device's line, even outside the period. */
	edit_line(1, "\"edge-0042\"", "\"edge-0043\"");
	ck_assert_int_eq(ev_audit_time_parse("2026-11-24T10:00:02Z", &f.since, &f.until), 0);
	f.has_since = 1;
	summarize(write_trail(0), &f, &s);
	ck_assert_uint_eq(s.lines, 7);
	ck_assert_str_eq(s.device, "edge-0043");
	ck_assert_int_eq(s.several_devices, 1);
	ck_assert_str_eq(s.first, "2026-11-24T10:00:02.000123Z");
	ev_audit_summary_clear(&s);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("audit_read");
	TCase *tc = tcase_create("verify");
	TCase *tf = tcase_create("read");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_valid);
	tcase_add_test(tc, test_empty_and_missing);
	tcase_add_test(tc, test_edited_line);
	tcase_add_test(tc, test_edited_and_rechained);
	tcase_add_test(tc, test_deleted_line);
	tcase_add_test(tc, test_deleted_first_line);
	tcase_add_test(tc, test_deleted_and_renumbered);
	tcase_add_test(tc, test_swapped_lines);
	tcase_add_test(tc, test_truncated_with_head);
	tcase_add_test(tc, test_truncated_without_head);
	tcase_add_test(tc, test_first_checkpoint_without_head);
	tcase_add_test(tc, test_head_names_no_checkpoint);
	tcase_add_test(tc, test_last_line_cut_short);
	tcase_add_test(tc, test_head_edited_checkpoint);
	tcase_add_test(tc, test_torn_recovered);
	tcase_add_test(tc, test_torn_seq_skipped);
	tcase_add_test(tc, test_torn_first_line);
	tcase_add_test(tc, test_torn_not_covered);
	tcase_add_test(tc, test_torn_without_marker);
	tcase_add_test(tc, test_torn_marker_mismatch);
	tcase_add_test(tc, test_stat);
	tcase_add_test(tc, test_stat_across_chunks);
	tcase_add_test(tc, test_not_regular);
	tcase_add_test(tc, test_bad_signature);
	tcase_add_test(tc, test_signed_by_other_key);
	tcase_add_test(tc, test_other_key_member);
	tcase_add_test(tc, test_not_json);
	tcase_add_test(tc, test_duplicate_member);
	tcase_add_test(tc, test_members);
	tcase_add_test(tc, test_checkpoint_without_sig);
	tcase_add_test(tc, test_line_too_long);
	tcase_add_test(tc, test_reader_waits_for_writer);
	tcase_add_test(tc, test_reader_snapshot);
	tcase_add_test(tc, test_reader_long_line);
	tcase_add_test(tc, test_reader_memory_bounded);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(tf, setup, teardown);
	tcase_add_test(tf, test_time_parse);
	tcase_add_test(tf, test_filters);
	tcase_add_test(tf, test_summary);
	tcase_add_test(tf, test_summary_origin);
	suite_add_tcase(s, tf);
	return run_suite(s);
}
