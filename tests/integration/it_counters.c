/*
 * Per-key use counters (src/uses.h, doc/audit.md "Use counters, status
 * and metrics"): each completed operation with a token key counts once,
 * the counts reach the store's uses table at C_Finalize and every
 * [audit] counters_flush seconds, processes add up, a destroyed key's
 * counts are kept, and the hot path writes no audit line.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define F env.f

/* The stored count of an object's operation (0 when there is no row). */
static long
uses(CK_OBJECT_HANDLE o, const char *op)
{
	char *q = fmt("SELECT coalesce(sum(count), 0) FROM uses WHERE object = %lu AND op = '%s'",
	    (unsigned long)o, op);
	long n = env_sql_long(q);

	free(q);
	return n;
}

/* Wait (DEADLINE) until the stored count is want; the last count read. */
static long
wait_uses(CK_OBJECT_HANDLE o, const char *op, long want)
{
	double end = now_s() + DEADLINE;
	long n;

	while ((n = uses(o, op)) != want && now_s() < end)
		nap_ms(100);
	return n;
}

static void
sign_n(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, int n)
{
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_BYTE sig[128];
	CK_ULONG len;
	int i;

	for (i = 0; i < n; i++) {
		len = sizeof(sig);
		ck_assert_int_eq(F->C_SignInit(h, &m, key), CKR_OK);
		ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)"msg", 3, sig, &len), CKR_OK);
	}
}

/*
 * Write the configuration (conf: its extra lines), initialise, make a
 * zone named label with a token EC key pair labelled label: a R/W user
 * session; *slot (slot may be NULL) the zone's.
 */
static CK_SESSION_HANDLE
ec_start(const char *conf, const char *label, CK_SLOT_ID *slot, CK_OBJECT_HANDLE *pub,
    CK_OBJECT_HANDLE *priv)
{
	CK_SESSION_HANDLE h;
	CK_SLOT_ID s;

	env_write_config(conf);
	env_init();
	s = env_new_zone(label);
	h = env_session(s, 1, 1);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), label, CK_TRUE, pub, priv);
	if (slot != NULL)
		*slot = s;
	return h;
}

/* An AES-256 key (token or session) that encrypts, decrypts, wraps and can be wrapped. */
static CK_OBJECT_HANDLE
gen_aes(CK_SESSION_HANDLE h, const char *label, CK_BBOOL token)
{
	CK_BBOOL yes = CK_TRUE;
	CK_ULONG len = 32;
	CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_ATTRIBUTE t[] = {
		{ CKA_TOKEN, &token, sizeof(token) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, (void *)label, strlen(label) },
		{ CKA_VALUE_LEN, &len, sizeof(len) },
		{ CKA_ENCRYPT, &yes, sizeof(yes) },
		{ CKA_DECRYPT, &yes, sizeof(yes) },
		{ CKA_WRAP, &yes, sizeof(yes) },
		{ CKA_UNWRAP, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
	};
	CK_OBJECT_HANDLE k;

	ck_assert_int_eq(F->C_GenerateKey(h, &m, t, 9, &k), CKR_OK);
	return k;
}

/* Encrypt one block with AES-CBC-PAD; the ciphertext in ct (32 bytes). */
static void
encrypt_once(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, CK_BYTE ct[32])
{
	CK_BYTE iv[16] = { 0 };
	CK_MECHANISM m = { CKM_AES_CBC_PAD, iv, sizeof(iv) };
	CK_ULONG len = 32;

	ck_assert_int_eq(F->C_EncryptInit(h, &m, key), CKR_OK);
	ck_assert_int_eq(F->C_Encrypt(h, (CK_BYTE *)"0123456789abcdef", 16, ct, &len), CKR_OK);
	ck_assert_uint_eq(len, 32);
}

/* Lines in the audit file (0 when there is none). */
static long
audit_lines(void)
{
	char *path = fmt("%s/store/audit.log", env.dir);
	FILE *f = fopen(path, "r");
	long n = 0;
	int c;

	free(path);
	if (f == NULL)
		return 0;
	while ((c = getc(f)) != EOF)
		if (c == '\n')
			n++;
	fclose(f);
	return n;
}

/*
 * Every kind of use counts once per completed operation: not per update,
 * not for a size query; a failed verification counts; session keys are
 * not counted; nothing reaches the store before C_Finalize (flush period
 * 60 s).
 */
START_TEST(test_counts_at_finalize)
{
	CK_MECHANISM ecdsa = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_BYTE iv[16] = { 0 };
	CK_MECHANISM cbc = { CKM_AES_CBC_PAD, iv, sizeof(iv) };
	CK_MECHANISM kw = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	CK_OBJECT_CLASS secret = CKO_SECRET_KEY;
	CK_KEY_TYPE aes = CKK_AES;
	CK_BBOOL no = CK_FALSE;
	CK_ATTRIBUTE ut[] = {
		{ CKA_CLASS, &secret, sizeof(secret) },
		{ CKA_KEY_TYPE, &aes, sizeof(aes) },
		{ CKA_TOKEN, &no, sizeof(no) },
	};
	CK_OBJECT_HANDLE pub, priv, spub, spriv, k, sk, target, unwrapped;
	CK_BYTE sig[128], ct[32], pt[32], wrapped[64];
	CK_ULONG len, wlen;
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
	char *q;
	int i;

	env_write_config("[audit]\ncounters_flush = 60\n");
	env_init();
	slot = env_new_zone("counters");
	h = env_session(slot, 1, 1);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "sig", CK_TRUE, &pub, &priv);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "ssig", CK_FALSE, &spub,
	    &spriv);
	k = gen_aes(h, "enc", CK_TRUE);
	target = gen_aes(h, "target", CK_TRUE);
	sk = gen_aes(h, "senc", CK_FALSE);

	/* N = 7 signatures: 5 single-part, 1 multi-part, 1 after a size query. */
	sign_n(h, priv, 5);
	ck_assert_int_eq(F->C_SignInit(h, &ecdsa, priv), CKR_OK);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(F->C_SignUpdate(h, (CK_BYTE *)"part", 4), CKR_OK);
	len = sizeof(sig);
	ck_assert_int_eq(F->C_SignFinal(h, sig, &len), CKR_OK);
	ck_assert_int_eq(F->C_SignInit(h, &ecdsa, priv), CKR_OK);
	ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)"msg", 3, NULL, &len), CKR_OK);
	ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)"msg", 3, sig, &len), CKR_OK);
	/* A failed operation does not count. */
	len = 1;
	ck_assert_int_eq(F->C_SignInit(h, &ecdsa, priv), CKR_OK);
	ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)"msg", 3, sig, &len), CKR_BUFFER_TOO_SMALL);
	len = sizeof(sig);
	ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)"msg", 3, sig, &len), CKR_OK);
	/* That was the 8th. Verifications: one good, one bad. */
	ck_assert_int_eq(F->C_VerifyInit(h, &ecdsa, pub), CKR_OK);
	ck_assert_int_eq(F->C_Verify(h, (CK_BYTE *)"msg", 3, sig, len), CKR_OK);
	ck_assert_int_eq(F->C_VerifyInit(h, &ecdsa, pub), CKR_OK);
	ck_assert_int_eq(F->C_Verify(h, (CK_BYTE *)"msh", 3, sig, len), CKR_SIGNATURE_INVALID);
	/* Session keys are used but not counted. */
	sign_n(h, spriv, 3);

	/* M = 4 encryptions (one of them multi-part), 2 decryptions. */
	for (i = 0; i < 3; i++)
		encrypt_once(h, k, ct);
	ck_assert_int_eq(F->C_EncryptInit(h, &cbc, k), CKR_OK);
	len = sizeof(ct);
	ck_assert_int_eq(F->C_EncryptUpdate(h, (CK_BYTE *)"0123456789abcdef", 16, ct, &len),
	    CKR_OK);
	wlen = sizeof(ct) - len;
	ck_assert_int_eq(F->C_EncryptFinal(h, ct + len, &wlen), CKR_OK);
	for (i = 0; i < 2; i++) {
		len = sizeof(pt);
		ck_assert_int_eq(F->C_DecryptInit(h, &cbc, k), CKR_OK);
		ck_assert_int_eq(F->C_Decrypt(h, ct, 32, pt, &len), CKR_OK);
		ck_assert_uint_eq(len, 16);
	}
	encrypt_once(h, sk, ct);

	/* One wrap (and a size query that does not count), one unwrap. */
	ck_assert_int_eq(F->C_WrapKey(h, &kw, k, target, NULL, &wlen), CKR_OK);
	wlen = sizeof(wrapped);
	ck_assert_int_eq(F->C_WrapKey(h, &kw, k, target, wrapped, &wlen), CKR_OK);
	ck_assert_int_eq(F->C_UnwrapKey(h, &kw, k, wrapped, wlen, ut, 3, &unwrapped), CKR_OK);

	/* Nothing is written before the flush. */
	ck_assert_int_eq(env_sql_long("SELECT count(*) FROM uses"), 0);
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);

	ck_assert_int_eq(uses(priv, "sign"), 8);
	ck_assert_int_eq(uses(pub, "verify"), 2);
	ck_assert_int_eq(uses(k, "encrypt"), 4);
	ck_assert_int_eq(uses(k, "decrypt"), 2);
	ck_assert_int_eq(uses(k, "wrap"), 1);
	ck_assert_int_eq(uses(k, "unwrap"), 1);
	ck_assert_int_eq(uses(target, "encrypt"), 0);
	ck_assert_int_eq(env_sql_long("SELECT count(*) FROM uses"), 6);
	/* The rows name their key. */
	q = fmt("SELECT count(*) FROM uses WHERE object = %lu AND zone = %lu AND "
		"label = CAST('sig' AS BLOB) AND ckid = CAST('sig' AS BLOB) AND generation = 1 "
		"AND class = %lu AND last_use > strftime('%%s','now') - 600",
	    (unsigned long)priv, (unsigned long)slot, (unsigned long)CKO_PRIVATE_KEY);
	ck_assert_int_eq(env_sql_long(q), 1);
	free(q);
}
END_TEST

/* With counters_flush = 1, a live process's counts reach the store within seconds. */
START_TEST(test_live_flush)
{
	CK_OBJECT_HANDLE pub, priv;
	CK_SESSION_HANDLE h;

	h = ec_start("[audit]\ncounters_flush = 1\n", "live", NULL, &pub, &priv);
	sign_n(h, priv, 3);
	ck_assert_int_eq(wait_uses(priv, "sign", 3), 3);
	sign_n(h, priv, 2);
	ck_assert_int_eq(wait_uses(priv, "sign", 5), 5);
	/* Nothing more at C_Finalize: the deltas were written once. */
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	ck_assert_int_eq(uses(priv, "sign"), 5);
}
END_TEST

struct signer_arg {
	CK_SLOT_ID slot;
	int n;
};

/* A child: sign n times with the key labelled "shared", finalize. */
static void
kid_signer(int rd, int wr, void *arg)
{
	const struct signer_arg *a = arg;
	CK_SESSION_HANDLE h;
	CK_BYTE sig[128];
	CK_ULONG len;
	CK_RV rv;
	int i;

	rv = kid_init();
	if (rv == CKR_OK)
		rv = kid_session(a->slot, 0, &h);
	for (i = 0; rv == CKR_OK && i < a->n; i++) {
		len = sizeof(sig);
		rv = kid_sign_label(h, "shared", "msg", sig, &len);
	}
	if (rv == CKR_OK)
		rv = env.f->C_Finalize(NULL);
	put(wr, rv);
}

/*
 * Processes add up: this one signs 4 times before forking two children
 * that sign 6 and 9 times (a child must not write its parent's pending
 * counts, of loaded or of freed objects), then 2 more.
 */
START_TEST(test_processes_add_up)
{
	struct signer_arg a1, a2;
	CK_OBJECT_HANDLE pub, priv, opub, opriv;
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
	struct kid k1, k2;

	/* Only C_Finalize flushes here: a periodic flush would not change the sums, but the
	 * parent's counts must still be pending when the children run. */
	h = ec_start("[audit]\ncounters_flush = 86400\n", "shared", &slot, &pub, &priv);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "other", CK_TRUE, &opub,
	    &opriv);
	sign_n(h, priv, 4);
	/* Counts of a freed object wait on the process's list: not the children's to write. */
	sign_n(h, opriv, 3);
	ck_assert_int_eq(F->C_DestroyObject(h, opriv), CKR_OK);
	a1 = (struct signer_arg){ slot, 6 };
	a2 = (struct signer_arg){ slot, 9 };
	kid_start(&k1, kid_signer, &a1);
	kid_start(&k2, kid_signer, &a2);
	kid_expect(&k1, CKR_OK, "child 1: signed and finalized");
	kid_expect(&k2, CKR_OK, "child 2: signed and finalized");
	kid_done(&k1);
	kid_done(&k2);
	ck_assert_int_eq(uses(priv, "sign"), 15);
	ck_assert_int_eq(uses(opriv, "sign"), 0);
	sign_n(h, priv, 2);
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	ck_assert_int_eq(uses(priv, "sign"), 21);
	ck_assert_int_eq(uses(opriv, "sign"), 3);
}
END_TEST

/* A child: destroy the private key labelled "gone2". */
static void
kid_destroyer(int rd, int wr, void *arg)
{
	const CK_SLOT_ID *slot = arg;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, "gone2", 5 },
	};
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE o;
	CK_ULONG n = 0;
	CK_RV rv;

	rv = kid_init();
	if (rv == CKR_OK)
		rv = kid_session(*slot, 1, &h);
	if (rv == CKR_OK)
		rv = env.f->C_FindObjectsInit(h, t, 2);
	if (rv == CKR_OK)
		rv = env.f->C_FindObjects(h, &o, 1, &n);
	if (rv == CKR_OK)
		rv = env.f->C_FindObjectsFinal(h);
	if (rv == CKR_OK)
		rv = n == 1 ? env.f->C_DestroyObject(h, o) : CKR_KEY_HANDLE_INVALID;
	if (rv == CKR_OK)
		rv = env.f->C_Finalize(NULL);
	put(wr, rv);
}

/*
 * A key destroyed with counts pending keeps them: its row outlives it,
 * here through C_DestroyObject while an operation still holds it, and
 * through another process destroying a key this one has used.
 */
START_TEST(test_destroyed_key_kept)
{
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_OBJECT_HANDLE pub, priv, pub2, priv2;
	CK_SESSION_HANDLE h, h2;
	CK_BYTE sig[128];
	CK_ULONG len = sizeof(sig);
	CK_SLOT_ID slot;
	struct kid k;
	char *q;

	env_init();
	slot = env_new_zone("destroy");
	h = env_session(slot, 1, 1);
	h2 = env_session(slot, 1, 1);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "gone", CK_TRUE, &pub, &priv);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "gone2", CK_TRUE, &pub2,
	    &priv2);
	sign_n(h, priv, 4);
	sign_n(h, priv2, 3);
	/* An operation holds priv while it is destroyed: it cannot go on, and counts no more. */
	ck_assert_int_eq(F->C_SignInit(h2, &m, priv), CKR_OK);
	ck_assert_int_eq(F->C_DestroyObject(h, priv), CKR_OK);
	ck_assert_int_eq(F->C_Sign(h2, (CK_BYTE *)"msg", 3, sig, &len), CKR_KEY_HANDLE_INVALID);
	/* Another process destroys priv2: this one forgets it at its next call. */
	kid_start(&k, kid_destroyer, &slot);
	kid_expect(&k, CKR_OK, "another process: C_DestroyObject");
	kid_done(&k);
	ck_assert_int_eq(F->C_SignInit(h, &m, priv2), CKR_KEY_HANDLE_INVALID);
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);

	ck_assert_int_eq(uses(priv, "sign"), 4);
	ck_assert_int_eq(uses(priv2, "sign"), 3);
	q = fmt("SELECT count(*) FROM objects WHERE id IN (%lu, %lu)", (unsigned long)priv,
	    (unsigned long)priv2);
	ck_assert_int_eq(env_sql_long(q), 0);
	free(q);
}
END_TEST

/* Signing writes no audit line (after the key's first use in the process). */
START_TEST(test_signing_writes_no_audit_line)
{
	CK_OBJECT_HANDLE pub, priv;
	CK_SESSION_HANDLE h;
	long before;

	h = ec_start("[audit]\nenabled = true\ncounters_flush = 1\n", "quiet", NULL, &pub, &priv);
	sign_n(h, priv, 1);
	before = audit_lines();
	sign_n(h, priv, 200);
	/* A flush happens meanwhile: it writes no line either. */
	ck_assert_int_eq(wait_uses(priv, "sign", 201), 201);
	ck_assert_int_eq(audit_lines(), before);
}
END_TEST

/*
 * [audit] enabled = false turns counting off too: no row, neither from the
 * watcher nor at C_Finalize.
 */
START_TEST(test_disabled_counts_nothing)
{
	CK_OBJECT_HANDLE pub, priv, k;
	CK_SESSION_HANDLE h;
	CK_BYTE ct[32];

	h = ec_start("[audit]\nenabled = false\ncounters_flush = 1\n", "off", NULL, &pub, &priv);
	k = gen_aes(h, "offenc", CK_TRUE);
	sign_n(h, priv, 5);
	encrypt_once(h, k, ct);
	/* Long enough for the watcher's flush, were it counting. */
	nap_ms(2500);
	ck_assert_int_eq(env_sql_long("SELECT count(*) FROM uses"), 0);
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	ck_assert_int_eq(env_sql_long("SELECT count(*) FROM uses"), 0);
}
END_TEST

/* Make every write to the uses table fail (on 1), or work again (on 0). */
static void
uses_fail(int on)
{
	if (on)
		env_sh("sqlite3 -cmd '.timeout 10000' '%s/store/edgevault.db' "
		       "\"CREATE TRIGGER uses_fail_i BEFORE INSERT ON uses BEGIN SELECT RAISE(ABORT, 'test'); END; "
		       "CREATE TRIGGER uses_fail_u BEFORE UPDATE ON uses BEGIN SELECT RAISE(ABORT, 'test'); END;\"",
		    env.dir);
	else
		env_sh("sqlite3 -cmd '.timeout 10000' '%s/store/edgevault.db' "
		       "'DROP TRIGGER uses_fail_i; DROP TRIGGER uses_fail_u;'",
		    env.dir);
}

/* Sign once, then wait past a flush (counters_flush = 1), n times. */
static void
sign_and_wait(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		sign_n(h, key, 1);
		nap_ms(1500);
	}
}

/*
 * A store that keeps failing: what a failed flush took is put back and
 * written once the store works, nothing lost nor counted twice; and
 * merged, one entry per key however many flushes fail, as the warning
 * of C_Finalize (whose flush fails too) says.
 */
START_TEST(test_store_failing)
{
	CK_OBJECT_HANDLE pub, priv;
	CK_SESSION_HANDLE h;
	char *log;

	h = ec_start("[audit]\ncounters_flush = 1\n", "failing", NULL, &pub, &priv);
	uses_fail(1);
	sign_and_wait(h, priv, 3);
	ck_assert_int_eq(uses(priv, "sign"), 0);
	uses_fail(0);
	ck_assert_int_eq(wait_uses(priv, "sign", 3), 3);

	/* Failing again, up to C_Finalize: the process's messages in a file. */
	uses_fail(1);
	env_log_start();
	sign_and_wait(h, priv, 3);
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	log = env_log_stop();
	ck_assert_msg(strstr(log, "use counts of 1 keys could not be written") != NULL, "%s", log);
	ck_assert_msg(strstr(log, "use counts of 1 keys were not written") != NULL, "%s", log);
	ck_assert_ptr_null(strstr(log, "use counts of 2 keys"));
	free(log);
	ck_assert_int_eq(uses(priv, "sign"), 3);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("counters");
	TCase *tc = tcase_create(env_root()); /* the root the suite runs on (EV_ROOT) */

	tcase_add_checked_fixture(tc, env_setup, env_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_counts_at_finalize);
	tcase_add_test(tc, test_live_flush);
	tcase_add_test(tc, test_processes_add_up);
	tcase_add_test(tc, test_destroyed_key_kept);
	tcase_add_test(tc, test_signing_writes_no_audit_line);
	tcase_add_test(tc, test_disabled_counts_nothing);
	tcase_add_test(tc, test_store_failing);
	suite_add_tcase(s, tc);
	return env_run(s);
}
