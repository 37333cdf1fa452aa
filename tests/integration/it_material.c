/*
 * What the module holds of a key in secure memory, watched from inside:
 * this program links the module's code (libevcore) and runs the harness's
 * helpers on that copy, so the pool's figures (ev_secmem_get_stats) are
 * the module's own.
 */
#include <check.h>
#include <string.h>

#include "harness.h"
#include "secmem.h"

static CK_BBOOL yes = CK_TRUE;

static size_t
secrets_in_use(void)
{
	ev_secmem_stats st;

	ev_secmem_get_stats(&st);
	return st.in_use + st.large;
}

/* The harness on this program's copy of the module, not the one it loaded. */
static void
setup(void)
{
	CK_INTERFACE *iface = NULL;

	env_setup();
	ck_assert_int_eq(C_GetInterface(NULL, NULL, &iface, 0), CKR_OK);
	env.f = iface->pFunctionList;
	ck_assert_int_eq(C_GetFunctionList(&env.f240), CKR_OK);
}

static CK_RV
hmac_once(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k)
{
	CK_MECHANISM m = { CKM_SHA256_HMAC, NULL, 0 };
	CK_BYTE msg[32] = { 0 }, mac[32];
	CK_ULONG maclen = sizeof(mac);
	CK_RV rv = env.f->C_SignInit(h, &m, k);

	return rv != CKR_OK ? rv : env.f->C_Sign(h, msg, sizeof(msg), mac, &maclen);
}

/*
 * A key destroyed by another session of this process: the context the
 * signing session parked for it, and the key object it kept, go with it
 * (the change log's pass finds the key unmapped already). failed_init: a
 * C_SignInit with a handle that is no key comes between; the parked
 * context must still be found (C_DestroyObject walks the sessions only
 * for a key some session holds).
 */
static void
destroyed_elsewhere(int on_token, int failed_init)
{
	CK_MECHANISM hmac = { CKM_SHA256_HMAC, NULL, 0 };
	CK_MECHANISM hgen = { CKM_GENERIC_SECRET_KEY_GEN, NULL, 0 };
	CK_ULONG len32 = 32;
	CK_BBOOL tok = on_token ? CK_TRUE : CK_FALSE;
	CK_ATTRIBUTE t[] = {
		{ CKA_VALUE_LEN, &len32, sizeof(len32) },
		{ CKA_TOKEN, &tok, sizeof(tok) },
		{ CKA_SIGN, &yes, sizeof(yes) },
	};
	CK_SESSION_HANDLE a, b;
	CK_OBJECT_HANDLE k;
	CK_SLOT_ID slot;
	size_t before, parked;

	env_init();
	a = env_session((slot = env_new_zone("material")), 1, 1);
	ck_assert_int_eq(env.f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
				 NULL, &b), CKR_OK);
	before = secrets_in_use();
	ck_assert_int_eq(env.f->C_GenerateKey(a, &hgen, t, 3, &k), CKR_OK);
	ck_assert_int_eq(hmac_once(a, k), CKR_OK);
	ck_assert_int_eq(hmac_once(a, k), CKR_OK);
	parked = secrets_in_use();
	ck_assert_uint_gt(parked, before);
	if (failed_init)
		ck_assert_int_eq(env.f->C_SignInit(a, &hmac, k + 1000), CKR_KEY_HANDLE_INVALID);
	ck_assert_int_eq(env.f->C_DestroyObject(b, k), CKR_OK);
	ck_assert_uint_eq(secrets_in_use(), before);
	ck_assert_int_eq(hmac_once(a, k), CKR_KEY_HANDLE_INVALID);
}

START_TEST(test_destroyed_session_key_leaves_no_material)
{
	destroyed_elsewhere(0, 0);
}
END_TEST

START_TEST(test_destroyed_token_key_leaves_no_material)
{
	destroyed_elsewhere(1, 0);
}
END_TEST

START_TEST(test_failed_init_then_destroyed_leaves_no_material)
{
	destroyed_elsewhere(0, 1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("material");
	TCase *tc = tcase_create(env_root());

	tcase_add_checked_fixture(tc, setup, env_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_destroyed_session_key_leaves_no_material);
	tcase_add_test(tc, test_destroyed_token_key_leaves_no_material);
	tcase_add_test(tc, test_failed_init_then_destroyed_leaves_no_material);
	suite_add_tcase(s, tc);
	return env_run(s);
}
