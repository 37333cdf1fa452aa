/*
 * Unit tests of PIN hashing (src/pin.c). Argon2id runs with libsodium's
 * minimum limits so the tests stay fast; the limits are stored in the hash
 * string, so verification does not depend on them.
 */
#include <check.h>
#include <sys/resource.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "pin.h"
#include "secmem.h"
#include "testutil.h"

#define OPS crypto_pwhash_argon2id_OPSLIMIT_MIN
#define MEM crypto_pwhash_argon2id_MEMLIMIT_MIN

static const CK_UTF8CHAR pin1[] = "123456";
static const CK_UTF8CHAR pin2[] = "123457";

static char *
hash_of(const CK_UTF8CHAR *pin, CK_ULONG len)
{
	char *h = NULL;
	CK_RV rv;

	rv = ev_pin_hash(pin, len, OPS, MEM, &h);
	ck_assert_msg(rv == CKR_OK, "ev_pin_hash: 0x%lx", (unsigned long)rv);
	ck_assert_ptr_nonnull(h);
	return h;
}

START_TEST(test_hash_verify)
{
	char *h = hash_of(pin1, 6);

	ck_assert_msg(strncmp(h, "$argon2id$", 10) == 0, "not Argon2id: %s", h);
	ck_assert_int_eq(ev_pin_verify(h, pin1, 6), 1);
	free(h);
}
END_TEST

START_TEST(test_wrong_pin)
{
	char *h = hash_of(pin1, 6);

	ck_assert_int_eq(ev_pin_verify(h, pin2, 6), 0);
	/* A prefix or an extension of the right PIN is a wrong PIN. */
	ck_assert_int_eq(ev_pin_verify(h, pin1, 5), 0);
	ck_assert_int_eq(ev_pin_verify(h, (const CK_UTF8CHAR *)"1234567", 7), 0);
	ck_assert_int_eq(ev_pin_verify(h, NULL, 6), 0);
	ck_assert_int_eq(ev_pin_verify(NULL, pin1, 6), 0);
	ck_assert_int_eq(ev_pin_verify("not a hash", pin1, 6), 0);
	free(h);
}
END_TEST

START_TEST(test_length_limits)
{
	CK_UTF8CHAR big[EV_PIN_MAX_LEN + 1];
	char *h = (char *)1;

	memset(big, 'x', sizeof(big));
	ck_assert_uint_eq(ev_pin_hash(pin1, EV_PIN_MIN_LEN - 1, OPS, MEM, &h), CKR_PIN_LEN_RANGE);
	ck_assert_ptr_null(h);
	ck_assert_uint_eq(ev_pin_hash(pin1, 0, OPS, MEM, &h), CKR_PIN_LEN_RANGE);
	ck_assert_uint_eq(ev_pin_hash(big, EV_PIN_MAX_LEN + 1, OPS, MEM, &h), CKR_PIN_LEN_RANGE);
	ck_assert_ptr_null(h);

	/* Both ends of the range are accepted. */
	h = hash_of(pin1, EV_PIN_MIN_LEN);
	ck_assert_int_eq(ev_pin_verify(h, pin1, EV_PIN_MIN_LEN), 1);
	free(h);
	h = hash_of(big, EV_PIN_MAX_LEN);
	ck_assert_int_eq(ev_pin_verify(h, big, EV_PIN_MAX_LEN), 1);
	/* Out-of-range lengths never verify. */
	ck_assert_int_eq(ev_pin_verify(h, big, EV_PIN_MAX_LEN + 1), 0);
	free(h);
}
END_TEST

START_TEST(test_salted)
{
	char *a = hash_of(pin1, 6);
	char *b = hash_of(pin1, 6);

	ck_assert_str_ne(a, b);
	ck_assert_int_eq(ev_pin_verify(a, pin1, 6), 1);
	ck_assert_int_eq(ev_pin_verify(b, pin1, 6), 1);
	free(a);
	free(b);
}
END_TEST

START_TEST(test_not_terminated)
{
	/* The caller's PIN need not be NUL-terminated, and may contain NUL. */
	CK_UTF8CHAR buf[8] = {'9', '8', '7', '6', 'X', 'X', 'X', 'X'};
	CK_UTF8CHAR withnul[6] = {'1', '2', 0, '3', '4', '5'};
	char *h = hash_of(buf, 4);

	ck_assert_int_eq(ev_pin_verify(h, (const CK_UTF8CHAR *)"9876", 4), 1);
	free(h);
	h = hash_of(withnul, sizeof(withnul));
	ck_assert_int_eq(ev_pin_verify(h, withnul, sizeof(withnul)), 1);
	ck_assert_int_eq(ev_pin_verify(h, withnul, 2), 0);
	free(h);
}
END_TEST

START_TEST(test_bad_arguments)
{
	char *h = NULL;

	ck_assert_uint_eq(ev_pin_hash(NULL, 6, OPS, MEM, &h), CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(ev_pin_hash(pin1, 6, OPS, MEM, NULL), CKR_ARGUMENTS_BAD);
	/* Limits libsodium refuses: no hash. */
	ck_assert_uint_eq(ev_pin_hash(pin1, 6, 0, MEM, &h), CKR_HOST_MEMORY);
	ck_assert_ptr_null(h);
}
END_TEST

/* A memo matches its own PIN with its own hash string, and nothing else. */
START_TEST(test_memo_match)
{
	char *h = hash_of(pin1, 6), *h2 = hash_of(pin1, 6);
	ev_pin_memo *m = NULL;

	ck_assert_uint_eq(ev_pin_memo_new(h, pin1, 6, &m), CKR_OK);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(ev_pin_memo_match(m, h, pin1, 6), 1);
	/* Another PIN, a prefix, an extension. */
	ck_assert_int_eq(ev_pin_memo_match(m, h, pin2, 6), 0);
	ck_assert_int_eq(ev_pin_memo_match(m, h, pin1, 5), 0);
	ck_assert_int_eq(ev_pin_memo_match(m, h, (const CK_UTF8CHAR *)"1234567", 7), 0);
	/* The same PIN set again (another salt, another string): no match. */
	ck_assert_int_eq(ev_pin_memo_match(m, h2, pin1, 6), 0);
	/* The hash/PIN boundary is not movable: "...x" + "23456" is not "..." + "x23456". */
	h[strlen(h) - 1] = '\0';
	ck_assert_int_eq(ev_pin_memo_match(m, h, pin1, 6), 0);
	ck_assert_int_eq(ev_pin_memo_match(NULL, h2, pin1, 6), 0);
	ck_assert_int_eq(ev_pin_memo_match(m, NULL, pin1, 6), 0);
	ck_assert_int_eq(ev_pin_memo_match(m, h2, NULL, 6), 0);
	ev_pin_memo_free(m);
	ev_pin_memo_free(NULL);
	free(h);
	free(h2);
}
END_TEST

START_TEST(test_memo_arguments)
{
	char *h = hash_of(pin1, 6);
	ev_pin_memo *m = (ev_pin_memo *)1;

	ck_assert_uint_eq(ev_pin_memo_new(NULL, pin1, 6, &m), CKR_ARGUMENTS_BAD);
	ck_assert_ptr_null(m);
	ck_assert_uint_eq(ev_pin_memo_new(h, NULL, 6, &m), CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(ev_pin_memo_new(h, pin1, 6, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(ev_pin_memo_new(h, pin1, EV_PIN_MIN_LEN - 1, &m), CKR_PIN_LEN_RANGE);
	ck_assert_uint_eq(ev_pin_memo_new(h, pin1, EV_PIN_MAX_LEN + 1, &m), CKR_PIN_LEN_RANGE);
	ck_assert_ptr_null(m);
	free(h);
}
END_TEST

/* No memo in memory that may be swapped out (RLIMIT_MEMLOCK 0, not root). */
START_TEST(test_memo_needs_locked_memory)
{
	struct rlimit rl = {0, 0};
	ev_pin_memo *m = (ev_pin_memo *)1;
	char *h;

	/* The limit and the user change would outlive this test in a shared process. */
	if (getenv("CK_FORK") != NULL && strcmp(getenv("CK_FORK"), "no") == 0)
		return;
	/* Before the pool maps its first arena, so that none is locked. */
	ck_assert_int_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0);
	if (geteuid() == 0) {
		ck_assert_int_eq(setresgid(65534, 65534, 65534), 0);
		ck_assert_int_eq(setresuid(65534, 65534, 65534), 0);
	}
	h = hash_of(pin1, 6);
	ck_assert_uint_eq(ev_pin_memo_new(h, pin1, 6, &m), CKR_DEVICE_MEMORY);
	ck_assert_ptr_null(m);
	free(h);
}
END_TEST

static Suite *
pin_suite(void)
{
	Suite *s = suite_create("pin");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_hash_verify);
	tcase_add_test(tc, test_wrong_pin);
	tcase_add_test(tc, test_length_limits);
	tcase_add_test(tc, test_salted);
	tcase_add_test(tc, test_not_terminated);
	tcase_add_test(tc, test_bad_arguments);
	tcase_add_test(tc, test_memo_match);
	tcase_add_test(tc, test_memo_arguments);
	tcase_add_test(tc, test_memo_needs_locked_memory);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(pin_suite());
}
