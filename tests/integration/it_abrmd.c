/*
 * The TPM root through tpm2-abrmd, the resource manager: swtpm behind
 * tpm2-abrmd on a private D-Bus session bus (EV_ROOT=tpm2-abrmd, whatever
 * the environment says), the module's TCTI "tabrmd:...". A zone is made,
 * a key generated and used in one process; another process (the same
 * store, the root opened afresh) signs with it; several processes use the
 * TPM at once, more than a TPM without a resource manager has object slots
 * for (doc/key-protection.md, "Several processes").
 *
 * The tabrmd TCTI talks D-Bus with GLib, which does not survive fork():
 * every process that uses the root here is a child forked before the test
 * process itself opens the root, and the test process opens it last, so
 * all of them reach tpm2-abrmd in process. (Children forked after their
 * parent reached it use edgevault-tpm-helper: it_module and it_revoke
 * under EV_ROOT=tpm2-abrmd.)
 * Children never assert; they report return codes through pipes (kid_*).
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "harness.h"

#define F env.f
#define MSG "signed through tpm2-abrmd"
#define LABEL "k"
#define PROCS 4	 /* at once: more than swtpm's three object slots */
#define ROUNDS 5 /* each: open the root, log in (unseal), sign, close it */

static void
setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	env_setup();
}

/*
 * A child that makes a zone on the free slot (SO_PIN, USER_PIN) with the
 * key pair LABEL in it and signs with it: its first failure, the zone's
 * slot, the signature.
 */
static void
kid_make(int rd, int wr, void *arg)
{
	CK_MECHANISM gen = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE pubt[] = {
		{ CKA_EC_PARAMS, (void *)env_p256, sizeof(env_p256) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_LABEL, (void *)LABEL, strlen(LABEL) },
	};
	CK_ATTRIBUTE privt[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_LABEL, (void *)LABEL, strlen(LABEL) },
		{ CKA_SIGN, &yes, sizeof(yes) },
	};
	CK_SLOT_ID slots[16], slot = 0;
	CK_ULONG n = 16, len = 0;
	CK_UTF8CHAR lab[32];
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv;
	CK_BYTE sig[128];
	CK_RV rv;

	(void)rd;
	(void)arg;
	env_label(lab, "abrmd");
	rv = kid_init();
	if (rv == CKR_OK)
		rv = F->C_GetSlotList(CK_FALSE, slots, &n);
	if (rv == CKR_OK) {
		slot = slots[n - 1]; /* the free slot comes last */
		rv = F->C_InitToken(slot, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN), lab);
	}
	if (rv == CKR_OK)
		rv = F->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h);
	if (rv == CKR_OK)
		rv = F->C_Login(h, CKU_SO, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN));
	if (rv == CKR_OK)
		rv = F->C_InitPIN(h, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN));
	if (rv == CKR_OK)
		rv = F->C_Logout(h);
	if (rv == CKR_OK)
		rv = F->C_Login(h, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN));
	if (rv == CKR_OK)
		rv = F->C_GenerateKeyPair(h, &gen, pubt, 3, privt, 3, &pub, &priv);
	if (rv == CKR_OK) {
		len = sizeof(sig);
		rv = kid_sign_label(h, LABEL, MSG, sig, &len);
	}
	(void)F->C_Finalize(NULL);
	put(wr, rv);
	put(wr, slot);
	put_bytes(wr, sig, rv == CKR_OK ? len : 0);
}

struct signer {
	CK_SLOT_ID slot;
	int rounds;
};

/*
 * A child that opens the root, logs in (the zone key unsealed by the
 * TPM), signs and closes it again, a->rounds times; before its first
 * round it reports (its first C_Initialize and C_Login done) and waits
 * for the go. Its first failure, then its last signature.
 */
static void
kid_signer(int rd, int wr, void *arg)
{
	const struct signer *a = arg;
	CK_SESSION_HANDLE h;
	CK_BYTE sig[128];
	CK_ULONG len = 0;
	CK_RV rv;
	int i;

	rv = kid_init();
	if (rv == CKR_OK)
		rv = kid_session(a->slot, 0, &h);
	put(wr, rv); /* ready: the root open, the zone key unsealed */
	(void)take(rd);
	for (i = 0; i < a->rounds && rv == CKR_OK; i++) {
		if (i > 0) {
			(void)F->C_Finalize(NULL);
			rv = kid_init();
			if (rv == CKR_OK)
				rv = kid_session(a->slot, 0, &h);
		}
		len = sizeof(sig);
		if (rv == CKR_OK)
			rv = kid_sign_label(h, LABEL, MSG, sig, &len);
	}
	(void)F->C_Finalize(NULL);
	put(wr, rv);
	put_bytes(wr, sig, rv == CKR_OK ? len : 0);
}

/* A zone with the key pair LABEL, made by a child: its slot; sig gets that child's signature. */
static CK_SLOT_ID
zone_by_child(CK_BYTE *sig, CK_ULONG *len)
{
	struct kid k;
	CK_SLOT_ID slot;

	kid_start(&k, kid_make, NULL);
	kid_expect(&k, CKR_OK, "child: zone, key pair and signature through tpm2-abrmd");
	slot = kid_get(&k);
	*len = kid_get_bytes(&k, sig, *len);
	kid_done(&k);
	return slot;
}

/* Here, last: the root opened in this process; sig (DER-less, r||s) checked by OpenSSL. */
static void
verify_here(CK_SESSION_HANDLE h, const CK_BYTE *sig, CK_ULONG len)
{
	CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, (void *)LABEL, strlen(LABEL) },
	};
	CK_OBJECT_HANDLE pub;
	CK_ULONG n = 0;
	unsigned char *der = NULL;
	EVP_PKEY *k;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int derlen;

	ck_assert_ptr_nonnull(ctx);
	ck_assert_int_eq(F->C_FindObjectsInit(h, t, 2), CKR_OK);
	ck_assert_int_eq(F->C_FindObjects(h, &pub, 1, &n), CKR_OK);
	ck_assert_int_eq(F->C_FindObjectsFinal(h), CKR_OK);
	ck_assert_uint_eq(n, 1);
	k = env_spki(h, pub);
	derlen = env_ecdsa_der(sig, len, &der);
	ck_assert_int_eq(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k), 1);
	ck_assert_msg(EVP_DigestVerify(ctx, der, (size_t)derlen, (const unsigned char *)MSG,
			  strlen(MSG)) == 1,
	    "a signature made through tpm2-abrmd does not verify");
	OPENSSL_free(der);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(k);
}

/* One process makes the zone and key and signs; another signs; this one checks and signs. */
START_TEST(test_zone_key_sign_restart)
{
	struct signer a;
	struct kid k;
	CK_BYTE sig1[128], sig2[128], sig3[128];
	CK_ULONG len1 = sizeof(sig1), len2, len3;
	CK_SESSION_HANDLE h;

	a.slot = zone_by_child(sig1, &len1);
	a.rounds = 1;
	/* Another process: the root opened afresh, the zone key unsealed again. */
	kid_start(&k, kid_signer, &a);
	kid_expect(&k, CKR_OK, "second process: C_Initialize and C_Login");
	kid_put(&k, 1);
	kid_expect(&k, CKR_OK, "second process: signature");
	len2 = kid_get_bytes(&k, sig2, sizeof(sig2));
	kid_done(&k);

	/* This process, then again after C_Finalize and C_Initialize. */
	env_init();
	h = env_session(a.slot, 0, 1);
	verify_here(h, sig1, len1);
	verify_here(h, sig2, len2);
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_init();
	h = env_session(a.slot, 0, 1);
	len3 = sizeof(sig3);
	ck_assert_int_eq(kid_sign_label(h, LABEL, MSG, sig3, &len3), CKR_OK);
	verify_here(h, sig3, len3);
}
END_TEST

/*
 * PROCS processes, each with the root open and its zone key unsealed,
 * then ROUNDS times each opening the root again, logging in and signing,
 * all at once: through the resource manager each has TPM object slots of
 * its own.
 */
START_TEST(test_processes_at_once)
{
	struct signer a;
	struct kid k[PROCS];
	CK_BYTE sig[PROCS][128];
	CK_ULONG len[PROCS], len0 = sizeof(sig[0]);
	CK_SESSION_HANDLE h;
	int i;

	a.slot = zone_by_child(sig[0], &len0);
	a.rounds = ROUNDS;
	for (i = 0; i < PROCS; i++)
		kid_start(&k[i], kid_signer, &a);
	/* All connected and logged in before any goes on. */
	for (i = 0; i < PROCS; i++)
		kid_expect(&k[i], CKR_OK, "a process: C_Initialize and C_Login");
	for (i = 0; i < PROCS; i++)
		kid_put(&k[i], 1);
	for (i = 0; i < PROCS; i++) {
		kid_expect(&k[i], CKR_OK, "a process: rounds of C_Initialize, C_Login, C_Sign");
		len[i] = kid_get_bytes(&k[i], sig[i], sizeof(sig[i]));
	}
	for (i = 0; i < PROCS; i++)
		kid_done(&k[i]);
	env_init();
	h = env_session(a.slot, 0, 1);
	for (i = 0; i < PROCS; i++)
		verify_here(h, sig[i], len[i]);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("abrmd");
	TCase *tc = tcase_create("tpm2-abrmd");

	/* This suite is about the root through tpm2-abrmd, whatever EV_ROOT says. */
	setenv("EV_ROOT", "tpm2-abrmd", 1);
	tcase_add_checked_fixture(tc, setup, env_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_zone_key_sign_restart);
	tcase_add_test(tc, test_processes_at_once);
	suite_add_tcase(s, tc);
	return env_run(s);
}
