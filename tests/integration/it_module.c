/*
 * Integration tests of the module against a real SoftHSMv2 root: the
 * interface, slots and tokens, sessions and login states, objects,
 * mechanisms (results checked by OpenSSL outside the module), persistence,
 * fork and several processes.
 */
#include <check.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "harness.h"
#include "pkcs11/edgevault.h"

#define F env.f

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

/* Every slot of both function lists is filled. */
START_TEST(test_function_lists_complete)
{
	void **p;
	size_t i, n;
	CK_INTERFACE list[4];
	CK_ULONG count = 0;
	CK_INTERFACE *iface;
	CK_VERSION v240 = { 2, 40 }, v999 = { 9, 99 };

	n = (sizeof(CK_FUNCTION_LIST_3_0) - offsetof(CK_FUNCTION_LIST_3_0, C_Initialize)) /
	    sizeof(void *);
	p = (void **)&env.f->C_Initialize;
	for (i = 0; i < n; i++)
		ck_assert_msg(p[i] != NULL, "3.0 list slot %zu is NULL", i);
	ck_assert_uint_eq(n, 92);
	n = (sizeof(CK_FUNCTION_LIST) - offsetof(CK_FUNCTION_LIST, C_Initialize)) / sizeof(void *);
	ck_assert_uint_eq(n, 68);
	p = (void **)&env.f240->C_Initialize;
	for (i = 0; i < n; i++)
		ck_assert_msg(p[i] != NULL, "2.40 list slot %zu is NULL", i);
	ck_assert_int_eq(env.f->version.major, 3);
	ck_assert_int_eq(env.f240->version.major, 2);
	ck_assert_int_eq(env.f240->version.minor, 40);

	ck_assert_int_eq(F->C_GetInterfaceList(NULL, &count), CKR_OK);
	ck_assert_uint_eq(count, 2);
	count = 1;
	ck_assert_int_eq(F->C_GetInterfaceList(list, &count), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(count, 2);
	ck_assert_int_eq(F->C_GetInterfaceList(list, &count), CKR_OK);
	ck_assert_str_eq((char *)list[0].pInterfaceName, "PKCS 11");
	ck_assert_int_eq(F->C_GetInterfaceList(list, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GetInterface((CK_UTF8CHAR *)"PKCS 11", &v240, &iface, 0), CKR_OK);
	ck_assert_ptr_eq(iface->pFunctionList, env.f240);
	ck_assert_int_eq(F->C_GetInterface((CK_UTF8CHAR *)"PKCS 11", &v999, &iface, 0),
	    CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GetInterface((CK_UTF8CHAR *)"Vendor nobody", NULL, &iface, 0),
	    CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GetInterface(NULL, NULL, NULL, 0), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GetInterface(NULL, NULL, &iface, CKF_INTERFACE_FORK_SAFE),
	    CKR_ARGUMENTS_BAD);
}
END_TEST

START_TEST(test_initialize_rules)
{
	CK_SLOT_ID slots[4];
	CK_ULONG n = 4;
	CK_INFO info;
	CK_C_INITIALIZE_ARGS partial = { .LockMutex = (CK_LOCKMUTEX)1 };
	CK_C_INITIALIZE_ARGS reserved = { .flags = CKF_OS_LOCKING_OK, .pReserved = &n };

	ck_assert_int_eq(F->C_GetSlotList(CK_FALSE, slots, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
	ck_assert_int_eq(F->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
	ck_assert_int_eq(F->C_Initialize(&partial), CKR_ARGUMENTS_BAD);
	/* p11-kit passes a non-NULL pReserved: accepted. */
	ck_assert_int_eq(F->C_Initialize(&reserved), CKR_OK);
	ck_assert_int_eq(F->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);
	ck_assert_int_eq(F->C_GetInfo(&info), CKR_OK);
	ck_assert_int_eq(info.cryptokiVersion.major, 3);
	ck_assert_mem_eq(info.manufacturerID, "edgevault ", 10);
	ck_assert_int_eq(F->C_GetInfo(NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_Finalize(&n), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
	/* And again: a second cycle works. */
	ck_assert_int_eq(F->C_Initialize(NULL), CKR_OK);
}
END_TEST

START_TEST(test_bad_config_fails_initialize)
{
	setenv("EDGEVAULT_CONF", "/nonexistent/edgevault.conf", 1);
	ck_assert_int_eq(F->C_Initialize(NULL), CKR_GENERAL_ERROR);
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
}
END_TEST

/* Application mutex callbacks: used when OS locking is not allowed. */
static int app_creates, app_locks;

static CK_RV
app_create(CK_VOID_PTR_PTR m)
{
	pthread_mutex_t *p = malloc(sizeof(*p));

	pthread_mutex_init(p, NULL);
	*m = p;
	__atomic_add_fetch(&app_creates, 1, __ATOMIC_SEQ_CST);
	return CKR_OK;
}

static CK_RV
app_destroy(CK_VOID_PTR m)
{
	pthread_mutex_destroy(m);
	free(m);
	return CKR_OK;
}

static CK_RV
app_lock(CK_VOID_PTR m)
{
	__atomic_add_fetch(&app_locks, 1, __ATOMIC_SEQ_CST);
	return pthread_mutex_lock(m) == 0 ? CKR_OK : CKR_GENERAL_ERROR;
}

static CK_RV
app_unlock(CK_VOID_PTR m)
{
	return pthread_mutex_unlock(m) == 0 ? CKR_OK : CKR_GENERAL_ERROR;
}

START_TEST(test_app_mutex_callbacks)
{
	CK_C_INITIALIZE_ARGS args = { app_create, app_destroy, app_lock, app_unlock, 0, NULL };
	CK_SLOT_ID slots[4];
	CK_ULONG n = 4;

	ck_assert_int_eq(F->C_Initialize(&args), CKR_OK);
	ck_assert_int_eq(F->C_GetSlotList(CK_FALSE, slots, &n), CKR_OK);
	ck_assert_int_gt(app_creates, 0);
	ck_assert_int_gt(app_locks, 0);
}
END_TEST

START_TEST(test_slots_and_zone_creation)
{
	CK_SLOT_ID slots[8], slot;
	CK_ULONG n = 0;
	CK_TOKEN_INFO ti;
	CK_SLOT_INFO si;
	CK_UTF8CHAR lab[32];

	env_init();
	ck_assert_int_eq(F->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(F->C_GetSlotList(CK_FALSE, slots, NULL), CKR_ARGUMENTS_BAD);
	n = 1;
	ck_assert_int_eq(F->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	slot = slots[0];
	ck_assert_int_eq(F->C_GetSlotInfo(slot, &si), CKR_OK);
	ck_assert(si.flags & CKF_TOKEN_PRESENT);
	ck_assert_int_eq(F->C_GetTokenInfo(slot, &ti), CKR_OK);
	ck_assert(!(ti.flags & CKF_TOKEN_INITIALIZED));
	ck_assert_int_eq(F->C_GetTokenInfo(9999, &ti), CKR_SLOT_ID_INVALID);
	ck_assert_int_eq(F->C_GetSlotInfo(9999, &si), CKR_SLOT_ID_INVALID);

	env_label(lab, "zone-a");
	ck_assert_int_eq(F->C_InitToken(slot, (CK_UTF8CHAR *)"abc", 3, lab), CKR_PIN_LEN_RANGE);
	ck_assert_int_eq(F->C_InitToken(slot, NULL, 0, lab), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_InitToken(9999, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN), lab),
	    CKR_SLOT_ID_INVALID);
	ck_assert_int_eq(F->C_InitToken(slot, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN), lab), CKR_OK);

	n = 8;
	ck_assert_int_eq(F->C_GetSlotList(CK_FALSE, slots, &n), CKR_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(slots[0], slot);
	ck_assert_uint_ne(slots[1], slot);
	n = 1;
	ck_assert_int_eq(F->C_GetSlotList(CK_FALSE, slots, &n), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(n, 2);

	ck_assert_int_eq(F->C_GetTokenInfo(slot, &ti), CKR_OK);
	ck_assert_mem_eq(ti.label, lab, 32);
	ck_assert(ti.flags & CKF_TOKEN_INITIALIZED);
	ck_assert(ti.flags & CKF_LOGIN_REQUIRED);
	ck_assert(ti.flags & CKF_RNG);
	ck_assert(!(ti.flags & CKF_USER_PIN_INITIALIZED));
	ck_assert_mem_eq(ti.manufacturerID, "edgevault ", 10);
	ck_assert_uint_eq(ti.ulSessionCount, 0);
}
END_TEST

START_TEST(test_login_state_table)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE ro, rw;
	CK_SESSION_INFO info;
	CK_TOKEN_INFO ti;

	env_init();
	slot = env_new_zone("states");
	ck_assert_int_eq(F->C_OpenSession(slot, 0, NULL, NULL, &ro),
	    CKR_SESSION_PARALLEL_NOT_SUPPORTED);
	ck_assert_int_eq(F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, NULL),
	    CKR_ARGUMENTS_BAD);
	ro = env_session(slot, 0, 0);
	rw = env_session(slot, 1, 0);
	ck_assert_int_eq(F->C_GetSessionInfo(ro, &info), CKR_OK);
	ck_assert_uint_eq(info.state, CKS_RO_PUBLIC_SESSION);
	ck_assert_uint_eq(info.slotID, slot);
	ck_assert_int_eq(F->C_GetSessionInfo(rw, &info), CKR_OK);
	ck_assert_uint_eq(info.state, CKS_RW_PUBLIC_SESSION);
	ck_assert_int_eq(F->C_GetSessionInfo(424242, &info), CKR_SESSION_HANDLE_INVALID);

	/* SO may not log in while a read-only session exists. */
	ck_assert_int_eq(F->C_Login(rw, CKU_SO, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN)),
	    CKR_SESSION_READ_ONLY_EXISTS);
	ck_assert_int_eq(F->C_Login(rw, 77, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN)),
	    CKR_USER_TYPE_INVALID);
	ck_assert_int_eq(F->C_Logout(rw), CKR_USER_NOT_LOGGED_IN);
	ck_assert_int_eq(F->C_Login(rw, CKU_USER, NULL, 0), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_Login(rw, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN)),
	    CKR_OK);
	ck_assert_int_eq(F->C_GetSessionInfo(ro, &info), CKR_OK);
	ck_assert_uint_eq(info.state, CKS_RO_USER_FUNCTIONS);
	ck_assert_int_eq(F->C_GetSessionInfo(rw, &info), CKR_OK);
	ck_assert_uint_eq(info.state, CKS_RW_USER_FUNCTIONS);
	ck_assert_int_eq(F->C_Login(ro, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN)),
	    CKR_USER_ALREADY_LOGGED_IN);
	ck_assert_int_eq(F->C_Login(rw, CKU_SO, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN)),
	    CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
	ck_assert_int_eq(F->C_Logout(ro), CKR_OK);
	ck_assert_int_eq(F->C_GetSessionInfo(rw, &info), CKR_OK);
	ck_assert_uint_eq(info.state, CKS_RW_PUBLIC_SESSION);

	/* SO: only with read-write sessions; then no read-only session may open. */
	ck_assert_int_eq(F->C_CloseSession(ro), CKR_OK);
	ck_assert_int_eq(F->C_CloseSession(ro), CKR_SESSION_HANDLE_INVALID);
	ck_assert_int_eq(F->C_Login(rw, CKU_SO, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN)), CKR_OK);
	ck_assert_int_eq(F->C_GetSessionInfo(rw, &info), CKR_OK);
	ck_assert_uint_eq(info.state, CKS_RW_SO_FUNCTIONS);
	ck_assert_int_eq(F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro),
	    CKR_SESSION_READ_WRITE_SO_EXISTS);
	ck_assert_int_eq(F->C_GetTokenInfo(slot, &ti), CKR_OK);
	ck_assert_uint_eq(ti.ulSessionCount, 1);
	ck_assert_uint_eq(ti.ulRwSessionCount, 1);
	ck_assert_int_eq(F->C_CloseAllSessions(slot), CKR_OK);
	ck_assert_int_eq(F->C_GetSessionInfo(rw, &info), CKR_SESSION_HANDLE_INVALID);
	/* Closing the last session logged the SO out. */
	ro = env_session(slot, 0, 0);
	ck_assert_int_eq(F->C_GetSessionInfo(ro, &info), CKR_OK);
	ck_assert_uint_eq(info.state, CKS_RO_PUBLIC_SESSION);
}
END_TEST

START_TEST(test_pin_lockout_persists)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	CK_TOKEN_INFO ti;
	CK_UTF8CHAR bad[] = "wrong-pin";

	env_init();
	slot = env_new_zone("lockout");
	h = env_session(slot, 1, 0);
	ck_assert_int_eq(F->C_Login(h, CKU_USER, bad, sizeof(bad) - 1), CKR_PIN_INCORRECT);
	ck_assert_int_eq(F->C_GetTokenInfo(slot, &ti), CKR_OK);
	ck_assert(ti.flags & CKF_USER_PIN_COUNT_LOW);
	ck_assert(!(ti.flags & CKF_USER_PIN_LOCKED));
	/* A correct PIN resets the counter. */
	ck_assert_int_eq(F->C_Login(h, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN)),
	    CKR_OK);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	ck_assert_int_eq(F->C_GetTokenInfo(slot, &ti), CKR_OK);
	ck_assert(!(ti.flags & CKF_USER_PIN_COUNT_LOW));
	/* max_fails = 3 in the test config. */
	ck_assert_int_eq(F->C_Login(h, CKU_USER, bad, sizeof(bad) - 1), CKR_PIN_INCORRECT);
	ck_assert_int_eq(F->C_Login(h, CKU_USER, bad, sizeof(bad) - 1), CKR_PIN_INCORRECT);
	ck_assert_int_eq(F->C_GetTokenInfo(slot, &ti), CKR_OK);
	ck_assert(ti.flags & CKF_USER_PIN_FINAL_TRY);
	ck_assert_int_eq(F->C_Login(h, CKU_USER, bad, sizeof(bad) - 1), CKR_PIN_LOCKED);
	ck_assert_int_eq(F->C_Login(h, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN)),
	    CKR_PIN_LOCKED);
	/* The lockout survives a restart. */
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_init();
	ck_assert_int_eq(F->C_GetTokenInfo(slot, &ti), CKR_OK);
	ck_assert(ti.flags & CKF_USER_PIN_LOCKED);
	h = env_session(slot, 1, 0);
	ck_assert_int_eq(F->C_Login(h, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN)),
	    CKR_PIN_LOCKED);
	/* The SO resets the user PIN, which unlocks it. */
	ck_assert_int_eq(F->C_Login(h, CKU_SO, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN)), CKR_OK);
	ck_assert_int_eq(F->C_InitPIN(h, (CK_UTF8CHAR *)"new-user-pin", 12), CKR_OK);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	ck_assert_int_eq(F->C_Login(h, CKU_USER, (CK_UTF8CHAR *)"new-user-pin", 12), CKR_OK);
}
END_TEST

START_TEST(test_set_pin)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE ro, rw;

	env_init();
	slot = env_new_zone("setpin");
	ro = env_session(slot, 0, 0);
	rw = env_session(slot, 1, 0);
	ck_assert_int_eq(F->C_SetPIN(ro, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN),
			     (CK_UTF8CHAR *)"another-pin", 11),
	    CKR_SESSION_READ_ONLY);
	ck_assert_int_eq(F->C_SetPIN(rw, (CK_UTF8CHAR *)"not-the-pin", 11,
			     (CK_UTF8CHAR *)"another-pin", 11),
	    CKR_PIN_INCORRECT);
	ck_assert_int_eq(F->C_SetPIN(rw, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN),
			     (CK_UTF8CHAR *)"ab", 2),
	    CKR_PIN_LEN_RANGE);
	ck_assert_int_eq(F->C_SetPIN(rw, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN),
			     (CK_UTF8CHAR *)"another-pin", 11),
	    CKR_OK);
	ck_assert_int_eq(F->C_Login(rw, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN)),
	    CKR_PIN_INCORRECT);
	ck_assert_int_eq(F->C_Login(rw, CKU_USER, (CK_UTF8CHAR *)"another-pin", 11), CKR_OK);
	/* InitPIN needs the SO. */
	ck_assert_int_eq(F->C_InitPIN(rw, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN)),
	    CKR_USER_NOT_LOGGED_IN);
}
END_TEST


static void
sign_and_check(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub,
    CK_MECHANISM_TYPE m, const EVP_MD *md, int ec, CK_ULONG expect_len)
{
	CK_MECHANISM mech = { m, NULL, 0 };
	CK_BYTE data[] = "edgevault signs this";
	CK_BYTE sig[1024];
	CK_ULONG len = 0;
	unsigned char *der = NULL;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY *k = env_spki(h, pub);
	int derlen;

	ck_assert_int_eq(F->C_SignInit(h, &mech, priv), CKR_OK);
	ck_assert_int_eq(F->C_SignInit(h, &mech, priv), CKR_OPERATION_ACTIVE);
	/* Length query, then too small, then right: the operation survives both. */
	ck_assert_int_eq(F->C_Sign(h, data, sizeof(data), NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, expect_len);
	len = 1;
	ck_assert_int_eq(F->C_Sign(h, data, sizeof(data), sig, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, expect_len);
	len = sizeof(sig);
	ck_assert_int_eq(F->C_Sign(h, data, sizeof(data), sig, &len), CKR_OK);
	ck_assert_uint_eq(len, expect_len);
	/* The operation is over. */
	ck_assert_int_eq(F->C_Sign(h, data, sizeof(data), sig, &len),
	    CKR_OPERATION_NOT_INITIALIZED);

	if (ec) {
		derlen = env_ecdsa_der(sig, len, &der);
		ck_assert_int_gt(derlen, 0);
	} else {
		der = OPENSSL_memdup(sig, len);
		derlen = (int)len;
	}
	ck_assert_int_eq(EVP_DigestVerifyInit(ctx, NULL, md, NULL, k), 1);
	ck_assert_int_eq(EVP_DigestVerify(ctx, der, (size_t)derlen, data, sizeof(data)), 1);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(k);
	OPENSSL_free(der);

	/* And the module verifies its own signature, and refuses a changed one. */
	ck_assert_int_eq(F->C_VerifyInit(h, &mech, pub), CKR_OK);
	ck_assert_int_eq(F->C_Verify(h, data, sizeof(data), sig, len), CKR_OK);
	sig[len / 2] ^= 1;
	ck_assert_int_eq(F->C_VerifyInit(h, &mech, pub), CKR_OK);
	ERR_clear_error();
	ck_assert_int_eq(F->C_Verify(h, data, sizeof(data), sig, len), CKR_SIGNATURE_INVALID);
	/* The failure stays inside the module: OpenSSL's error queue is the host's. */
	ck_assert_uint_eq(ERR_peek_error(), 0);
}

START_TEST(test_ec_sign_verified_by_openssl)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv;

	env_init();
	h = env_session(env_new_zone("ec"), 1, 1);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "p256", CK_TRUE, &pub, &priv);
	sign_and_check(h, priv, pub, CKM_ECDSA_SHA256, EVP_sha256(), 1, 64);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p384, sizeof(env_p384), "p384", CK_TRUE, &pub, &priv);
	sign_and_check(h, priv, pub, CKM_ECDSA_SHA384, EVP_sha384(), 1, 96);
	env_gen_ec(h, CKM_EC_EDWARDS_KEY_PAIR_GEN, env_ed25519, sizeof(env_ed25519), "ed", CK_FALSE, &pub,
	    &priv);
	sign_and_check(h, priv, pub, CKM_EDDSA, NULL, 0, 64);
}
END_TEST

START_TEST(test_rsa_sign_verified_by_openssl)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv;
	CK_MECHANISM mech = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
	CK_ULONG bits = 2048;
	CK_BYTE e[] = { 1, 0, 1 };
	CK_ATTRIBUTE pubt[] = {
		{ CKA_MODULUS_BITS, &bits, sizeof(bits) },
		{ CKA_PUBLIC_EXPONENT, e, sizeof(e) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE privt[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_SIGN, &yes, sizeof(yes) },
	};
	CK_BYTE mod[512];
	CK_ATTRIBUTE am = { CKA_MODULUS, mod, sizeof(mod) };

	env_init();
	h = env_session(env_new_zone("rsa"), 1, 1);
	ck_assert_int_eq(F->C_GenerateKeyPair(h, &mech, pubt, 3, privt, 2, &pub, &priv), CKR_OK);
	ck_assert_int_eq(F->C_GetAttributeValue(h, pub, &am, 1), CKR_OK);
	ck_assert_uint_eq(am.ulValueLen, 256);
	sign_and_check(h, priv, pub, CKM_SHA256_RSA_PKCS, EVP_sha256(), 0, 256);
}
END_TEST

START_TEST(test_attributes)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv;
	CK_BYTE buf[256];
	CK_BBOOL b;
	CK_ULONG ul;
	CK_ATTRIBUTE value = { CKA_VALUE, buf, sizeof(buf) };
	CK_ATTRIBUTE several[] = {
		{ CKA_LABEL, NULL, 0 },
		{ CKA_MODULUS, buf, sizeof(buf) }, /* not an EC attribute */
		{ CKA_EC_PARAMS, buf, 1 },         /* too small */
	};
	CK_ATTRIBUTE flags[] = {
		{ CKA_LOCAL, &b, sizeof(b) },
	};
	CK_ATTRIBUTE mech = { CKA_KEY_GEN_MECHANISM, &ul, sizeof(ul) };
	CK_ATTRIBUTE gen = { CKA_EV_GENERATION, &ul, sizeof(ul) };
	CK_ATTRIBUTE unsens = { CKA_SENSITIVE, &no, sizeof(no) };
	CK_ATTRIBUTE extract = { CKA_EXTRACTABLE, &yes, sizeof(yes) };
	CK_ATTRIBUTE cls = { CKA_CLASS, &ul, sizeof(ul) };
	CK_ATTRIBUTE newlabel = { CKA_LABEL, "renamed", 7 };
	CK_ATTRIBUTE point = { CKA_EC_POINT, buf, sizeof(buf) };

	env_init();
	h = env_session(env_new_zone("attrs"), 1, 1);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "attrs", CK_TRUE, &pub, &priv);

	ck_assert_int_eq(F->C_GetAttributeValue(h, priv, &value, 1), CKR_ATTRIBUTE_SENSITIVE);
	ck_assert_uint_eq(value.ulValueLen, CK_UNAVAILABLE_INFORMATION);
	ck_assert_int_eq(F->C_GetAttributeValue(h, priv, several, 3), CKR_ATTRIBUTE_TYPE_INVALID);
	ck_assert_uint_eq(several[0].ulValueLen, 5);
	ck_assert_uint_eq(several[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
	ck_assert_uint_eq(several[2].ulValueLen, CK_UNAVAILABLE_INFORMATION);
	ck_assert_int_eq(F->C_GetAttributeValue(h, priv, flags, 1), CKR_OK);
	ck_assert_int_eq(b, CK_TRUE);
	ck_assert_int_eq(F->C_GetAttributeValue(h, priv, &mech, 1), CKR_OK);
	ck_assert_uint_eq(ul, CKM_EC_KEY_PAIR_GEN);
	ck_assert_int_eq(F->C_GetAttributeValue(h, priv, &gen, 1), CKR_OK);
	ck_assert_uint_eq(ul, 1);
	flags[0].type = CKA_ALWAYS_SENSITIVE;
	ck_assert_int_eq(F->C_GetAttributeValue(h, priv, flags, 1), CKR_OK);
	ck_assert_int_eq(b, CK_TRUE);
	flags[0].type = CKA_NEVER_EXTRACTABLE;
	ck_assert_int_eq(F->C_GetAttributeValue(h, priv, flags, 1), CKR_OK);
	ck_assert_int_eq(b, CK_TRUE);

	/* EC point: a DER OCTET STRING holding the uncompressed point. */
	ck_assert_int_eq(F->C_GetAttributeValue(h, pub, &point, 1), CKR_OK);
	ck_assert_uint_eq(point.ulValueLen, 67);
	ck_assert_int_eq(buf[0], 0x04);
	ck_assert_int_eq(buf[1], 65);
	ck_assert_int_eq(buf[2], 0x04);

	/* One-way attributes. */
	ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &unsens, 1), CKR_ATTRIBUTE_READ_ONLY);
	ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &extract, 1), CKR_ATTRIBUTE_READ_ONLY);
	ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &cls, 1), CKR_ATTRIBUTE_READ_ONLY);
	ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &newlabel, 1), CKR_OK);
	several[0].pValue = buf;
	several[0].ulValueLen = sizeof(buf);
	ck_assert_int_eq(F->C_GetAttributeValue(h, priv, several, 1), CKR_OK);
	ck_assert_uint_eq(several[0].ulValueLen, 7);
	ck_assert_mem_eq(buf, "renamed", 7);
	/* The renamed key still unwraps and signs after a restart. */
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_init();
}
END_TEST

START_TEST(test_find_objects)
{
	CK_SESSION_HANDLE h, pubh;
	CK_OBJECT_HANDLE pub, priv, found[8];
	CK_ULONG n = 0;
	CK_OBJECT_CLASS priv_cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE by_label[] = { { CKA_LABEL, "k2", 2 } };
	CK_ATTRIBUTE by_label_cls[] = { { CKA_LABEL, "k2", 2 },
		{ CKA_CLASS, &priv_cls, sizeof(priv_cls) } };
	CK_SLOT_ID slot;
	char label[8];
	int i;

	env_init();
	slot = env_new_zone("find");
	h = env_session(slot, 1, 1);
	for (i = 0; i < 4; i++) {
		snprintf(label, sizeof(label), "k%d", i);
		env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), label, i % 2 ? CK_TRUE : CK_FALSE,
		    &pub, &priv);
	}
	ck_assert_int_eq(F->C_FindObjects(h, found, 8, &n), CKR_OPERATION_NOT_INITIALIZED);
	ck_assert_int_eq(F->C_FindObjectsInit(h, by_label, 1), CKR_OK);
	ck_assert_int_eq(F->C_FindObjectsInit(h, by_label, 1), CKR_OPERATION_ACTIVE);
	ck_assert_int_eq(F->C_FindObjects(h, found, 8, &n), CKR_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(F->C_FindObjects(h, found, 8, &n), CKR_OK);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(F->C_FindObjectsFinal(h), CKR_OK);
	ck_assert_int_eq(F->C_FindObjectsFinal(h), CKR_OPERATION_NOT_INITIALIZED);

	ck_assert_int_eq(F->C_FindObjectsInit(h, by_label_cls, 2), CKR_OK);
	ck_assert_int_eq(F->C_FindObjects(h, found, 8, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(F->C_FindObjectsFinal(h), CKR_OK);

	/* All of them, one at a time. */
	ck_assert_int_eq(F->C_FindObjectsInit(h, NULL, 0), CKR_OK);
	for (i = 0;; i++) {
		ck_assert_int_eq(F->C_FindObjects(h, found, 1, &n), CKR_OK);
		if (n == 0)
			break;
	}
	ck_assert_int_eq(i, 8);
	ck_assert_int_eq(F->C_FindObjectsFinal(h), CKR_OK);

	/* After logout, private keys are out of sight. */
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	ck_assert_int_eq(F->C_FindObjectsInit(h, by_label_cls, 2), CKR_OK);
	ck_assert_int_eq(F->C_FindObjects(h, found, 8, &n), CKR_OK);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(F->C_FindObjectsFinal(h), CKR_OK);
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){ CKM_ECDSA, NULL, 0 }, priv),
	    CKR_KEY_HANDLE_INVALID);

	/* Session objects die with their session; token objects stay. */
	pubh = env_session(slot, 1, 1);
	ck_assert_int_eq(F->C_CloseSession(h), CKR_OK);
	ck_assert_int_eq(F->C_FindObjectsInit(pubh, by_label, 1), CKR_OK);
	ck_assert_int_eq(F->C_FindObjects(pubh, found, 8, &n), CKR_OK);
	ck_assert_uint_eq(n, 0); /* k2 was a session pair */
	ck_assert_int_eq(F->C_FindObjectsFinal(pubh), CKR_OK);
}
END_TEST

START_TEST(test_object_rights)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE ro, rw;
	CK_OBJECT_HANDLE o;
	CK_OBJECT_CLASS data = CKO_DATA;
	CK_ATTRIBUTE tok_data[] = {
		{ CKA_CLASS, &data, sizeof(data) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_VALUE, "hello", 5 },
	};
	CK_ATTRIBUTE priv_data[] = {
		{ CKA_CLASS, &data, sizeof(data) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE bad_attr[] = {
		{ CKA_CLASS, &data, sizeof(data) },
		{ CKA_MODULUS, "x", 1 },
	};
	CK_ATTRIBUTE local[] = {
		{ CKA_CLASS, &data, sizeof(data) },
		{ CKA_TOKEN, &no, sizeof(no) },
	};
	CK_ATTRIBUTE no_class[] = { { CKA_TOKEN, &no, sizeof(no) } };
	CK_BYTE buf[16];
	CK_ATTRIBUTE value = { CKA_VALUE, buf, sizeof(buf) };

	env_init();
	slot = env_new_zone("rights");
	ro = env_session(slot, 0, 0);
	rw = env_session(slot, 1, 0);
	ck_assert_int_eq(F->C_CreateObject(ro, tok_data, 3, &o), CKR_SESSION_READ_ONLY);
	ck_assert_int_eq(F->C_CreateObject(rw, priv_data, 2, &o), CKR_USER_NOT_LOGGED_IN);
	ck_assert_int_eq(F->C_CreateObject(rw, bad_attr, 2, &o), CKR_ATTRIBUTE_TYPE_INVALID);
	ck_assert_int_eq(F->C_CreateObject(rw, no_class, 1, &o), CKR_TEMPLATE_INCOMPLETE);
	ck_assert_int_eq(F->C_CreateObject(rw, tok_data, 3, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_CreateObject(ro, local, 2, &o), CKR_OK);
	ck_assert_int_eq(F->C_DestroyObject(ro, o), CKR_OK);
	ck_assert_int_eq(F->C_DestroyObject(ro, o), CKR_OBJECT_HANDLE_INVALID);
	ck_assert_int_eq(F->C_CreateObject(rw, tok_data, 3, &o), CKR_OK);
	ck_assert_int_eq(F->C_GetAttributeValue(ro, o, &value, 1), CKR_OK);
	ck_assert_uint_eq(value.ulValueLen, 5);
	ck_assert_mem_eq(buf, "hello", 5);
	ck_assert_int_eq(F->C_DestroyObject(ro, o), CKR_SESSION_READ_ONLY);
	ck_assert_int_eq(F->C_DestroyObject(rw, o), CKR_OK);
	ck_assert_int_eq(F->C_GetAttributeValue(ro, o, &value, 1), CKR_OBJECT_HANDLE_INVALID);
}
END_TEST

START_TEST(test_aes_hmac_digest)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE aes, hmac;
	CK_ULONG len32 = 32;
	CK_MECHANISM gen = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_MECHANISM hgen = { CKM_GENERIC_SECRET_KEY_GEN, NULL, 0 };
	CK_ATTRIBUTE t[] = { { CKA_VALUE_LEN, &len32, sizeof(len32) } };
	CK_BYTE iv[12] = { 1, 2, 3 }, aad[] = "aad";
	CK_GCM_PARAMS gcm = { iv, sizeof(iv), 96, aad, 3, 128 };
	CK_MECHANISM mgcm = { CKM_AES_GCM, &gcm, sizeof(gcm) };
	CK_MECHANISM mhmac = { CKM_SHA256_HMAC, NULL, 0 };
	CK_MECHANISM msha = { CKM_SHA256, NULL, 0 };
	CK_BYTE msg[100], ct[200], pt[200], mac[64], dig[64], expect[32];
	CK_ULONG ctlen = sizeof(ct), ptlen = sizeof(pt), maclen = sizeof(mac), diglen;

	memset(msg, 'm', sizeof(msg));
	env_init();
	h = env_session(env_new_zone("sym"), 1, 1);
	ck_assert_int_eq(F->C_GenerateKey(h, &gen, t, 1, &aes), CKR_OK);
	ck_assert_int_eq(F->C_GenerateKey(h, &hgen, t, 1, &hmac), CKR_OK);

	ck_assert_int_eq(F->C_EncryptInit(h, &mgcm, aes), CKR_OK);
	ck_assert_int_eq(F->C_Encrypt(h, msg, sizeof(msg), ct, &ctlen), CKR_OK);
	ck_assert_uint_eq(ctlen, sizeof(msg) + 16);
	ck_assert_int_eq(F->C_DecryptInit(h, &mgcm, aes), CKR_OK);
	ck_assert_int_eq(F->C_Decrypt(h, ct, ctlen, pt, &ptlen), CKR_OK);
	ck_assert_uint_eq(ptlen, sizeof(msg));
	ck_assert_mem_eq(pt, msg, sizeof(msg));
	ct[5] ^= 1;
	ptlen = sizeof(pt);
	ck_assert_int_eq(F->C_DecryptInit(h, &mgcm, aes), CKR_OK);
	ck_assert_int_eq(F->C_Decrypt(h, ct, ctlen, pt, &ptlen), CKR_ENCRYPTED_DATA_INVALID);

	ck_assert_int_eq(F->C_SignInit(h, &mhmac, hmac), CKR_OK);
	ck_assert_int_eq(F->C_SignUpdate(h, msg, 50), CKR_OK);
	ck_assert_int_eq(F->C_SignUpdate(h, msg + 50, 50), CKR_OK);
	ck_assert_int_eq(F->C_SignFinal(h, mac, &maclen), CKR_OK);
	ck_assert_uint_eq(maclen, 32);
	ck_assert_int_eq(F->C_VerifyInit(h, &mhmac, hmac), CKR_OK);
	ck_assert_int_eq(F->C_Verify(h, msg, sizeof(msg), mac, maclen), CKR_OK);

	ck_assert_int_eq(F->C_DigestInit(h, &msha), CKR_OK);
	diglen = sizeof(dig);
	ck_assert_int_eq(F->C_Digest(h, msg, sizeof(msg), dig, &diglen), CKR_OK);
	ck_assert_uint_eq(diglen, 32);
	ck_assert_int_eq(EVP_Digest(msg, sizeof(msg), expect, NULL, EVP_sha256(), NULL), 1);
	ck_assert_mem_eq(dig, expect, 32);

	/* Usage attributes are enforced. */
	{
		CK_ATTRIBUTE nosign = { CKA_SIGN, &no, sizeof(no) };

		ck_assert_int_eq(F->C_SetAttributeValue(h, hmac, &nosign, 1), CKR_OK);
		ck_assert_int_eq(F->C_SignInit(h, &mhmac, hmac), CKR_KEY_FUNCTION_NOT_PERMITTED);
	}
	ck_assert_int_eq(F->C_EncryptInit(h, &(CK_MECHANISM){ 0x7fffffff, NULL, 0 }, aes),
	    CKR_MECHANISM_INVALID);
	ck_assert_int_eq(F->C_EncryptInit(h, &mgcm, 987654), CKR_KEY_HANDLE_INVALID);
	ck_assert_int_eq(F->C_EncryptInit(h, NULL, aes), CKR_ARGUMENTS_BAD);
}
END_TEST

/* Keys survive a fresh start of the module: store and root reopened. */
START_TEST(test_persistence)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv, found[4];
	CK_ULONG n;
	CK_OBJECT_CLASS pc = CKO_PRIVATE_KEY, uc = CKO_PUBLIC_KEY;
	CK_ATTRIBUTE fpriv[] = { { CKA_LABEL, "keep", 4 }, { CKA_CLASS, &pc, sizeof(pc) } };
	CK_ATTRIBUTE fpub[] = { { CKA_LABEL, "keep", 4 }, { CKA_CLASS, &uc, sizeof(uc) } };

	env_init();
	slot = env_new_zone("persist");
	h = env_session(slot, 1, 1);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "keep", CK_TRUE, &pub, &priv);
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);

	env_init();
	h = env_session(slot, 1, 1);
	ck_assert_int_eq(F->C_FindObjectsInit(h, fpriv, 2), CKR_OK);
	ck_assert_int_eq(F->C_FindObjects(h, found, 4, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	priv = found[0];
	ck_assert_int_eq(F->C_FindObjectsFinal(h), CKR_OK);
	ck_assert_int_eq(F->C_FindObjectsInit(h, fpub, 2), CKR_OK);
	ck_assert_int_eq(F->C_FindObjects(h, found, 4, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	pub = found[0];
	ck_assert_int_eq(F->C_FindObjectsFinal(h), CKR_OK);
	sign_and_check(h, priv, pub, CKM_ECDSA_SHA256, EVP_sha256(), 1, 64);
}
END_TEST

/* In a child after fork, nothing works until it calls C_Initialize itself. */
START_TEST(test_fork)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv;
	pid_t pid;
	int status;

	env_init();
	slot = env_new_zone("fork");
	h = env_session(slot, 1, 1);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "fork", CK_TRUE, &pub, &priv);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		CK_SLOT_ID slots[4];
		CK_ULONG n = 4;
		CK_SESSION_HANDLE ch;
		int ok = 1;

		ok &= F->C_GetSlotList(CK_FALSE, slots, &n) == CKR_CRYPTOKI_NOT_INITIALIZED;
		ok &= F->C_SignInit(h, &(CK_MECHANISM){ CKM_ECDSA, NULL, 0 }, priv) ==
		    CKR_CRYPTOKI_NOT_INITIALIZED;
		ok &= F->C_Initialize(NULL) == CKR_OK;
		ok &= F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ch) == CKR_OK;
		ok &= F->C_Login(ch, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN)) == CKR_OK;
		ok &= F->C_SignInit(ch, &(CK_MECHANISM){ CKM_ECDSA_SHA256, NULL, 0 }, priv) ==
		    CKR_OK;
		{
			CK_BYTE sig[64];
			CK_ULONG len = sizeof(sig);

			ok &= F->C_Sign(ch, (CK_BYTE *)"x", 1, sig, &len) == CKR_OK;
		}
		ok &= F->C_Finalize(NULL) == CKR_OK;
		_exit(ok ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	/* The parent is unaffected. */
	sign_and_check(h, priv, pub, CKM_ECDSA_SHA256, EVP_sha256(), 1, 64);
}
END_TEST

/*
 * Children the module's own fork handling cannot see coming: one made by
 * syscall(SYS_fork), which runs no fork handler, and the child handler of
 * a pthread_atfork registered before C_Initialize, which runs before any
 * the module registers. Neither may use the parent's state.
 */
static CK_RV early_handler_rv = CKR_OK;

static void
early_child_handler(void)
{
	CK_ULONG n = 0;

	early_handler_rv = F->C_GetSlotList(CK_FALSE, NULL, &n);
}

START_TEST(test_fork_without_handlers)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	pid_t pid;
	int status;

	ck_assert_int_eq(pthread_atfork(NULL, NULL, early_child_handler), 0);
	env_init();
	slot = env_new_zone("rawfork");
	h = env_session(slot, 1, 1);
	pid = (pid_t)syscall(SYS_fork);
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		CK_SLOT_ID slots[4];
		CK_ULONG n = 4;
		CK_SESSION_HANDLE ch;
		CK_SESSION_INFO info;
		int ok = 1;

		ok &= F->C_GetSlotList(CK_FALSE, slots, &n) == CKR_CRYPTOKI_NOT_INITIALIZED;
		ok &= F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ch) ==
		    CKR_CRYPTOKI_NOT_INITIALIZED;
		ok &= F->C_GetSessionInfo(h, &info) == CKR_CRYPTOKI_NOT_INITIALIZED;
		_exit(ok ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);

	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0)
		_exit(early_handler_rv == CKR_CRYPTOKI_NOT_INITIALIZED ? 0 : 1);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	ck_assert_int_eq(F->C_CloseSession(h), CKR_OK);
}
END_TEST

/* Two processes on one store: one writes keys while the other signs and finds them. */
START_TEST(test_two_processes)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv, found[64];
	CK_ULONG n;
	CK_OBJECT_CLASS pc = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE fpriv[] = { { CKA_CLASS, &pc, sizeof(pc) } };
	pid_t pid;
	int status, i;

	env_init();
	slot = env_new_zone("twoproc");
	h = env_session(slot, 1, 1);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "first", CK_TRUE, &pub, &priv);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		CK_SESSION_HANDLE ch;
		CK_OBJECT_HANDLE a, b;
		int ok = F->C_Initialize(NULL) == CKR_OK;

		ok &= F->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
			  &ch) == CKR_OK;
		ok &= F->C_Login(ch, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN)) == CKR_OK;
		for (i = 0; i < 10 && ok; i++) {
			CK_MECHANISM m = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
			CK_ATTRIBUTE pt[] = { { CKA_EC_PARAMS, (void *)env_p256, sizeof(env_p256) },
				{ CKA_TOKEN, &yes, sizeof(yes) } };
			CK_ATTRIBUTE st[] = { { CKA_TOKEN, &yes, sizeof(yes) } };

			ok &= F->C_GenerateKeyPair(ch, &m, pt, 2, st, 1, &a, &b) == CKR_OK;
		}
		ok &= F->C_Finalize(NULL) == CKR_OK;
		_exit(ok ? 0 : 1);
	}
	/* Meanwhile: keep signing here. */
	for (i = 0; i < 20; i++) {
		CK_BYTE sig[64];
		CK_ULONG len = sizeof(sig);

		ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){ CKM_ECDSA_SHA256, NULL, 0 },
				     priv),
		    CKR_OK);
		ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)"abc", 3, sig, &len), CKR_OK);
		ck_assert_int_eq(F->C_FindObjectsInit(h, fpriv, 1), CKR_OK);
		ck_assert_int_eq(F->C_FindObjects(h, found, 64, &n), CKR_OK);
		ck_assert_int_eq(F->C_FindObjectsFinal(h), CKR_OK);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	/* Everything the child made is visible here, and usable. */
	ck_assert_int_eq(F->C_FindObjectsInit(h, fpriv, 1), CKR_OK);
	ck_assert_int_eq(F->C_FindObjects(h, found, 64, &n), CKR_OK);
	ck_assert_int_eq(F->C_FindObjectsFinal(h), CKR_OK);
	ck_assert_uint_eq(n, 11);
	for (i = 0; i < (int)n; i++) {
		CK_BYTE sig[64];
		CK_ULONG len = sizeof(sig);

		ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){ CKM_ECDSA_SHA256, NULL, 0 },
				     found[i]),
		    CKR_OK);
		ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)"abc", 3, sig, &len), CKR_OK);
	}
}
END_TEST

START_TEST(test_reinit_token)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv, found[4];
	CK_ULONG n;
	CK_UTF8CHAR lab[32];
	CK_TOKEN_INFO ti;

	env_init();
	slot = env_new_zone("reinit");
	h = env_session(slot, 1, 1);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "gone", CK_TRUE, &pub, &priv);
	env_label(lab, "fresh");
	ck_assert_int_eq(F->C_InitToken(slot, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN), lab),
	    CKR_SESSION_EXISTS);
	ck_assert_int_eq(F->C_CloseSession(h), CKR_OK);
	ck_assert_int_eq(F->C_InitToken(slot, (CK_UTF8CHAR *)"wrong-so", 8, lab),
	    CKR_PIN_INCORRECT);
	ck_assert_int_eq(F->C_InitToken(slot, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN), lab), CKR_OK);
	ck_assert_int_eq(F->C_GetTokenInfo(slot, &ti), CKR_OK);
	ck_assert_mem_eq(ti.label, lab, 32);
	ck_assert(!(ti.flags & CKF_USER_PIN_INITIALIZED));
	h = env_session(slot, 1, 0);
	ck_assert_int_eq(F->C_FindObjectsInit(h, NULL, 0), CKR_OK);
	ck_assert_int_eq(F->C_FindObjects(h, found, 4, &n), CKR_OK);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(F->C_FindObjectsFinal(h), CKR_OK);
	/* No handle of the old zone is usable, not even one this process had loaded. */
	{
		CK_BYTE buf[64];
		CK_ATTRIBUTE label = { CKA_LABEL, buf, sizeof(buf) };

		ck_assert_int_eq(F->C_GetAttributeValue(h, pub, &label, 1),
		    CKR_OBJECT_HANDLE_INVALID);
	}
}
END_TEST

START_TEST(test_random_and_unsupported)
{
	CK_SESSION_HANDLE h;
	CK_BYTE a[32] = { 0 }, b[32] = { 0 };
	CK_SLOT_ID slot, zone;

	env_init();
	zone = env_new_zone("misc");
	h = env_session(zone, 0, 0);
	ck_assert_int_eq(F->C_GenerateRandom(h, a, sizeof(a)), CKR_OK);
	ck_assert_int_eq(F->C_GenerateRandom(h, b, sizeof(b)), CKR_OK);
	ck_assert_int_ne(memcmp(a, b, sizeof(a)), 0);
	ck_assert_int_eq(F->C_GenerateRandom(h, NULL, 4), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GenerateRandom(999, a, 4), CKR_SESSION_HANDLE_INVALID);
	ck_assert_int_eq(F->C_SeedRandom(h, a, 4), CKR_RANDOM_SEED_NOT_SUPPORTED);
	ck_assert_int_eq(F->C_SignRecoverInit(h, NULL, 0), CKR_FUNCTION_NOT_SUPPORTED);
	ck_assert_int_eq(F->C_MessageEncryptInit(h, NULL, 0), CKR_FUNCTION_NOT_SUPPORTED);
	ck_assert_int_eq(F->C_GetFunctionStatus(h), CKR_FUNCTION_NOT_PARALLEL);
	/* Creating the zone was an event for its slot, in this process too; then there is none. */
	ck_assert_int_eq(F->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), CKR_OK);
	ck_assert_uint_eq(slot, zone);
	ck_assert_int_eq(F->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), CKR_NO_EVENT);
}
END_TEST

/*
 * Review fixes. Secret material of a key not yet unwrapped, read under the
 * application's mutexes (a read-write lock is then a plain mutex): the
 * object's lock must not be taken twice by one thread.
 */
START_TEST(test_app_mutex_uncached_value)
{
	CK_C_INITIALIZE_ARGS args = { app_create, app_destroy, app_lock, app_unlock, 0, NULL };
	static const CK_BYTE value[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &no, sizeof(no) },
		{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
		{ CKA_LABEL, (void *)"plain", 5 },
		{ CKA_VALUE, (void *)value, sizeof(value) },
	};
	CK_ATTRIBUTE by_label = { CKA_LABEL, (void *)"plain", 5 };
	CK_BYTE got[32];
	CK_ATTRIBUTE get = { CKA_VALUE, got, sizeof(got) };
	CK_OBJECT_HANDLE o, found;
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
	CK_ULONG n = 0;

	ck_assert_int_eq(F->C_Initialize(&args), CKR_OK);
	slot = env_new_zone("app-mutex");
	h = env_session(slot, 1, 1);
	ck_assert_int_eq(F->C_CreateObject(h, t, 7, &o), CKR_OK);
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	/* A fresh process state: the key is still wrapped. */
	ck_assert_int_eq(F->C_Initialize(&args), CKR_OK);
	h = env_session(slot, 1, 1);
	ck_assert_int_eq(F->C_FindObjectsInit(h, &by_label, 1), CKR_OK);
	ck_assert_int_eq(F->C_FindObjects(h, &found, 1, &n), CKR_OK);
	ck_assert_int_eq(F->C_FindObjectsFinal(h), CKR_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(F->C_GetAttributeValue(h, found, &get, 1), CKR_OK);
	ck_assert_uint_eq(get.ulValueLen, sizeof(value));
	ck_assert_mem_eq(got, value, sizeof(value));
}
END_TEST

/* A boolean given with a length but no value is refused, not dereferenced. */
START_TEST(test_null_trusted_value)
{
	static const CK_BYTE value[16] = { 0 };
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_VALUE, (void *)value, sizeof(value) },
		{ CKA_TRUSTED, NULL, sizeof(CK_BBOOL) },
	};
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE o;

	env_init();
	h = env_session(env_new_zone("null-trusted"), 1, 1);
	ck_assert_int_eq(F->C_CreateObject(h, t, 4, &o), CKR_ATTRIBUTE_VALUE_INVALID);
}
END_TEST

/* PKCS#11 C_Logout: the application's private session objects are destroyed. */
START_TEST(test_logout_drops_private_session_objects)
{
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_ATTRIBUTE priv_t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_VALUE, (void *)"secret", 6 },
	};
	CK_ATTRIBUTE pub_t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_PRIVATE, &no, sizeof(no) },
		{ CKA_VALUE, (void *)"public", 6 },
	};
	CK_BYTE buf[16];
	CK_ATTRIBUTE get = { CKA_VALUE, buf, sizeof(buf) };
	CK_OBJECT_HANDLE priv, pub;
	CK_SESSION_HANDLE h, other;
	CK_SLOT_ID slot;

	env_init();
	slot = env_new_zone("logout-objects");
	h = env_session(slot, 1, 1);
	other = env_session(slot, 0, 0);
	ck_assert_int_eq(F->C_CreateObject(h, priv_t, 3, &priv), CKR_OK);
	ck_assert_int_eq(F->C_CreateObject(h, pub_t, 3, &pub), CKR_OK);
	/* Logging out from another session of the application is the same logout. */
	ck_assert_int_eq(F->C_Logout(other), CKR_OK);
	ck_assert_int_eq(F->C_Login(h, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN)),
	    CKR_OK);
	ck_assert_int_eq(F->C_GetAttributeValue(h, priv, &get, 1), CKR_OBJECT_HANDLE_INVALID);
	get.ulValueLen = sizeof(buf);
	ck_assert_int_eq(F->C_GetAttributeValue(h, pub, &get, 1), CKR_OK);
	ck_assert_uint_eq(get.ulValueLen, 6);
}
END_TEST

/* CKA_ALWAYS_AUTHENTICATE: each signature needs C_Login(CKU_CONTEXT_SPECIFIC). */
START_TEST(test_always_authenticate)
{
	CK_MECHANISM gen = { CKM_EC_KEY_PAIR_GEN, NULL, 0 }, mech = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_ATTRIBUTE pubt[] = {
		{ CKA_EC_PARAMS, (void *)env_p256, sizeof(env_p256) },
		{ CKA_VERIFY, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE privt[] = {
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_ALWAYS_AUTHENTICATE, &yes, sizeof(yes) },
	};
	CK_BYTE data[] = "authenticate each time", sig[128];
	CK_ULONG len = sizeof(sig);
	CK_OBJECT_HANDLE pub, priv;
	CK_SESSION_HANDLE h;

	env_init();
	h = env_session(env_new_zone("always-auth"), 1, 1);
	ck_assert_int_eq(F->C_GenerateKeyPair(h, &gen, pubt, 2, privt, 2, &pub, &priv), CKR_OK);
	/* Nothing to re-authenticate for yet. */
	ck_assert_int_eq(F->C_Login(h, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR *)USER_PIN,
			     strlen(USER_PIN)),
	    CKR_OPERATION_NOT_INITIALIZED);
	ck_assert_int_eq(F->C_SignInit(h, &mech, priv), CKR_OK);
	ck_assert_int_eq(F->C_Sign(h, data, sizeof(data), sig, &len), CKR_USER_NOT_LOGGED_IN);
	ck_assert_int_eq(F->C_Login(h, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR *)"wrong-pin", 9),
	    CKR_PIN_INCORRECT);
	ck_assert_int_eq(F->C_Sign(h, data, sizeof(data), sig, &len), CKR_USER_NOT_LOGGED_IN);
	ck_assert_int_eq(F->C_Login(h, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR *)USER_PIN,
			     strlen(USER_PIN)),
	    CKR_OK);
	len = sizeof(sig);
	ck_assert_int_eq(F->C_Sign(h, data, sizeof(data), sig, &len), CKR_OK);
	/* The next signature asks again. */
	ck_assert_int_eq(F->C_SignInit(h, &mech, priv), CKR_OK);
	ck_assert_int_eq(F->C_Sign(h, data, sizeof(data), sig, &len), CKR_USER_NOT_LOGGED_IN);
	ck_assert_int_eq(F->C_SessionCancel(h, CKF_SIGN), CKR_OK);
	/* Verification with the public half is not gated. */
	ck_assert_int_eq(F->C_VerifyInit(h, &mech, pub), CKR_OK);
	ck_assert_int_eq(F->C_Verify(h, data, sizeof(data), sig, len), CKR_OK);
}
END_TEST

/*
 * Threads logging in and out, signing, opening and closing sessions (the
 * last close logs out and wipes), changing, copying and sizing one object.
 * Passes when nothing deadlocks or crashes (run it under the sanitizers).
 */
struct stress {
	CK_SLOT_ID slot;
	CK_OBJECT_HANDLE priv, pub;
	int kind;
};

static void *
stress_thread(void *arg)
{
	struct stress *st = arg;
	CK_MECHANISM mech = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_BYTE data[] = "stress", sig[128], label[8];
	CK_ATTRIBUTE lab = { CKA_LABEL, label, sizeof(label) };
	CK_SESSION_HANDLE h, h2;
	CK_OBJECT_HANDLE copy;
	CK_ULONG len, size;
	int i;

	for (i = 0; i < 40; i++) {
		if (F->C_OpenSession(st->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
			&h) != CKR_OK)
			continue;
		switch (st->kind) {
		case 0:
			(void)F->C_Login(h, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN));
			if (F->C_SignInit(h, &mech, st->priv) == CKR_OK) {
				len = sizeof(sig);
				(void)F->C_Sign(h, data, sizeof(data), sig, &len);
			}
			if (i % 3 == 0)
				(void)F->C_Logout(h);
			break;
		case 1:
			snprintf((char *)label, sizeof(label), "l%06d", i);
			(void)F->C_SetAttributeValue(h, st->pub, &lab, 1);
			(void)F->C_GetObjectSize(h, st->pub, &size);
			if (F->C_CopyObject(h, st->pub, NULL, 0, &copy) == CKR_OK)
				(void)F->C_DestroyObject(h, copy);
			lab.ulValueLen = sizeof(label);
			(void)F->C_GetAttributeValue(h, st->pub, &lab, 1);
			break;
		default:
			if (F->C_OpenSession(st->slot, CKF_SERIAL_SESSION, NULL, NULL, &h2) == CKR_OK)
				(void)F->C_CloseSession(h2);
			break;
		}
		(void)F->C_CloseSession(h);
	}
	return NULL;
}

START_TEST(test_threads_login_sign_close)
{
	CK_MECHANISM gen = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_ATTRIBUTE pubt[] = {
		{ CKA_EC_PARAMS, (void *)env_p256, sizeof(env_p256) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE privt[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_SIGN, &yes, sizeof(yes) },
	};
	struct stress st[6];
	pthread_t th[6];
	CK_OBJECT_HANDLE pub, priv;
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
	size_t i;

	env_init();
	slot = env_new_zone("threads");
	h = env_session(slot, 1, 1);
	ck_assert_int_eq(F->C_GenerateKeyPair(h, &gen, pubt, 2, privt, 2, &pub, &priv), CKR_OK);
	ck_assert_int_eq(F->C_CloseSession(h), CKR_OK);
	for (i = 0; i < 6; i++) {
		st[i] = (struct stress){ slot, priv, pub, (int)(i % 3) };
		ck_assert_int_eq(pthread_create(&th[i], NULL, stress_thread, &st[i]), 0);
	}
	for (i = 0; i < 6; i++)
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
	/* Still whole: the key signs. */
	h = env_session(slot, 1, 1);
	sign_and_check(h, priv, pub, CKM_ECDSA_SHA256, EVP_sha256(), 1, 64);
}
END_TEST

/*
 * A session keeps the key object of its last operation for the next
 * C_*Init with the same handle (session.h, spare_key): every check runs
 * again on it. And sessions are found through an index spread over
 * shards: more sessions than shards, closed in any order.
 */
static CK_RV
hmac_once(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k)
{
	CK_MECHANISM m = { CKM_SHA256_HMAC, NULL, 0 };
	CK_BYTE msg[32] = { 0 }, mac[32];
	CK_ULONG maclen = sizeof(mac);
	CK_RV rv = F->C_SignInit(h, &m, k);

	return rv != CKR_OK ? rv : F->C_Sign(h, msg, sizeof(msg), mac, &maclen);
}

START_TEST(test_kept_key_checked_again)
{
	CK_MECHANISM hgen = { CKM_GENERIC_SECRET_KEY_GEN, NULL, 0 };
	CK_ULONG len32 = 32;
	CK_ATTRIBUTE t[] = { { CKA_VALUE_LEN, &len32, sizeof(len32) } };
	CK_ATTRIBUTE tt[] = {
		{ CKA_VALUE_LEN, &len32, sizeof(len32) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE nosign = { CKA_SIGN, &no, sizeof(no) };
	CK_SESSION_HANDLE h, other, many[70];
	CK_OBJECT_HANDLE k, tk;
	size_t i;
	CK_SLOT_ID slot;

	env_init();
	h = env_session((slot = env_new_zone("kept")), 1, 1);
	ck_assert_int_eq(F->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
				 &other), CKR_OK);

	/* Destroyed from another session: the kept object is not used again. */
	ck_assert_int_eq(F->C_GenerateKey(h, &hgen, t, 1, &k), CKR_OK);
	ck_assert_int_eq(hmac_once(h, k), CKR_OK);
	ck_assert_int_eq(hmac_once(h, k), CKR_OK);
	ck_assert_int_eq(F->C_DestroyObject(other, k), CKR_OK);
	ck_assert_int_eq(hmac_once(h, k), CKR_KEY_HANDLE_INVALID);

	/* Changed attributes are read again. */
	ck_assert_int_eq(F->C_GenerateKey(h, &hgen, t, 1, &k), CKR_OK);
	ck_assert_int_eq(hmac_once(h, k), CKR_OK);
	ck_assert_int_eq(F->C_SetAttributeValue(other, k, &nosign, 1), CKR_OK);
	ck_assert_int_eq(hmac_once(h, k), CKR_KEY_FUNCTION_NOT_PERMITTED);

	/* A private token key, kept, is not seen once the user logged out. */
	ck_assert_int_eq(F->C_GenerateKey(h, &hgen, tt, 3, &tk), CKR_OK);
	ck_assert_int_eq(hmac_once(h, tk), CKR_OK);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	ck_assert_int_eq(hmac_once(h, tk), CKR_KEY_HANDLE_INVALID);
	ck_assert_int_eq(F->C_CloseSession(other), CKR_OK);
	ck_assert_int_eq(hmac_once(other, tk), CKR_SESSION_HANDLE_INVALID);

	/* More sessions than the index has shards: each found, each closed for good. */
	for (i = 0; i < sizeof(many) / sizeof(many[0]); i++)
		ck_assert_int_eq(F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &many[i]),
		    CKR_OK);
	for (i = 0; i < sizeof(many) / sizeof(many[0]); i += 2)
		ck_assert_int_eq(F->C_CloseSession(many[i]), CKR_OK);
	for (i = 0; i < sizeof(many) / sizeof(many[0]); i++) {
		CK_SESSION_INFO info;

		ck_assert_int_eq(F->C_GetSessionInfo(many[i], &info),
		    i % 2 == 0 ? CKR_SESSION_HANDLE_INVALID : CKR_OK);
	}
	ck_assert_int_eq(F->C_CloseAllSessions(slot), CKR_OK);
	for (i = 1; i < sizeof(many) / sizeof(many[0]); i += 2) {
		CK_SESSION_INFO info;

		ck_assert_int_eq(F->C_GetSessionInfo(many[i], &info), CKR_SESSION_HANDLE_INVALID);
	}
	ck_assert_int_eq(hmac_once(h, tk), CKR_SESSION_HANDLE_INVALID);
}
END_TEST

#define RACERS 6

/* A child: wait for the start, C_Initialize, C_Finalize. */
static void
kid_first_use(int rd, int wr, void *arg)
{
	CK_RV rv;

	(void)arg;
	(void)take(rd);
	rv = kid_init();
	if (rv == CKR_OK)
		rv = env.f->C_Finalize(NULL);
	put(wr, rv);
}

/* A child: wait for the start, C_Initialize, log in, sign with "race", C_Finalize. */
static void
kid_first_sign(int rd, int wr, void *arg)
{
	const CK_SLOT_ID *slot = arg;
	CK_SESSION_HANDLE h;
	CK_BYTE sig[128];
	CK_ULONG len = sizeof(sig);
	CK_RV rv;

	(void)take(rd);
	rv = kid_init();
	if (rv == CKR_OK)
		rv = kid_session(*slot, 0, &h);
	if (rv == CKR_OK)
		rv = kid_sign_label(h, "race", "msg", sig, &len);
	if (rv == CKR_OK)
		rv = env.f->C_Finalize(NULL);
	put(wr, rv);
}

/* Start RACERS children running fn at the same moment; each must answer CKR_OK. */
static void
race(kid_fn *fn, void *arg, const char *what)
{
	struct kid k[RACERS];
	int i;

	for (i = 0; i < RACERS; i++)
		kid_start(&k[i], fn, arg);
	for (i = 0; i < RACERS; i++)
		kid_put(&k[i], 1);
	for (i = 0; i < RACERS; i++)
		kid_expect(&k[i], CKR_OK, what);
	for (i = 0; i < RACERS; i++)
		kid_done(&k[i]);
}

/*
 * Processes that start at once on one SoftHSMv2 root: on a new device
 * they make one root key between them (not one each, which would leave
 * the device unable to choose), and processes logging in to the upstream
 * token do not hide it from one initialising the upstream module.
 */
START_TEST(test_processes_connect_at_once)
{
	CK_OBJECT_HANDLE pub, priv;
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
	int round;

	race(kid_first_use, NULL, "first use of a new device");
	/* One root key: with two, the root cannot be opened and no zone made. */
	env_init();
	slot = env_new_zone("race");
	h = env_session(slot, 1, 1);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "race", CK_TRUE, &pub,
	    &priv);
	for (round = 0; round < 3; round++)
		race(kid_first_sign, &slot, "sign in a new process");
	sign_and_check(h, priv, pub, CKM_ECDSA_SHA256, EVP_sha256(), 1, 64);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("module");
	TCase *tc = tcase_create(env_root()); /* the root the suite runs on (EV_ROOT) */

	tcase_add_checked_fixture(tc, env_setup, env_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_function_lists_complete);
	tcase_add_test(tc, test_initialize_rules);
	tcase_add_test(tc, test_bad_config_fails_initialize);
	tcase_add_test(tc, test_app_mutex_callbacks);
	tcase_add_test(tc, test_slots_and_zone_creation);
	tcase_add_test(tc, test_login_state_table);
	tcase_add_test(tc, test_pin_lockout_persists);
	tcase_add_test(tc, test_set_pin);
	tcase_add_test(tc, test_ec_sign_verified_by_openssl);
	tcase_add_test(tc, test_rsa_sign_verified_by_openssl);
	tcase_add_test(tc, test_attributes);
	tcase_add_test(tc, test_find_objects);
	tcase_add_test(tc, test_object_rights);
	tcase_add_test(tc, test_aes_hmac_digest);
	tcase_add_test(tc, test_persistence);
	tcase_add_test(tc, test_fork);
	tcase_add_test(tc, test_fork_without_handlers);
	tcase_add_test(tc, test_two_processes);
	tcase_add_test(tc, test_reinit_token);
	tcase_add_test(tc, test_random_and_unsupported);
	tcase_add_test(tc, test_app_mutex_uncached_value);
	tcase_add_test(tc, test_null_trusted_value);
	tcase_add_test(tc, test_logout_drops_private_session_objects);
	tcase_add_test(tc, test_always_authenticate);
	tcase_add_test(tc, test_threads_login_sign_close);
	tcase_add_test(tc, test_kept_key_checked_again);
	if (env_root_is("pkcs11"))
		tcase_add_test(tc, test_processes_connect_at_once);
	suite_add_tcase(s, tc);
	return env_run(s);
}
