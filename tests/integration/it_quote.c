/*
 * Integration tests of the tpm2-quote attestation provider against
 * swtpm: a zone gated by require_attestation whose evidence is a quote of
 * PCRs 0 and 16 checked against a signed reference policy. Logins and
 * rotations are accepted with the right reference, and refused (with
 * the reason recorded) once PCR 16 is extended, or with a reference
 * signed by another key, for another device, expired, or for other PCRs.
 * The expected digest is computed here from the PCR values tpm2_pcrread
 * reads; the AK's name is learnt as an operator learns it, from the
 * refusal of a reference that pins another AK, and checked against the
 * name tpm2_readpublic gives for a key made from the same template.
 * Each test runs its own swtpm in its own directory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "envelope.h"
#include "harness.h"
#include "pkcs11/edgevault.h"

#define REF_TYPE "edgevault-tpm-reference"
#define DEVICE "test-device" /* env_write_tpm_config's [device] id */
#define PCRS "0,16"
#define B64 sodium_base64_VARIANT_ORIGINAL
/* An AK name no TPM key has: what a reference pins before the AK is known. */
#define NO_AK "000b0000000000000000000000000000000000000000000000000000000000000000"

static struct ev_swtpm tpm;
static unsigned char ver_pk[crypto_sign_PUBLICKEYBYTES], ver_sk[crypto_sign_SECRETKEYBYTES];
static char ref_path[400];
static char ak_hex[69] = NO_AK; /* the AK references pin (learn_ak()) */
static long long ref_seq;       /* the last reference's seq: each one written is the next */

static char *
tcti(void)
{
	return fmt("swtpm:host=127.0.0.1,port=%d", tpm.port);
}

/* The config: the TPM root, the quote provider over PCRs pcrs, every zone gated. */
static void
conf(const char *pcrs)
{
	char pk64[sodium_base64_ENCODED_LEN(crypto_sign_PUBLICKEYBYTES, B64)];
	char *s;

	sodium_bin2base64(pk64, sizeof(pk64), ver_pk, sizeof(ver_pk), B64);
	s = fmt("[attestation]\nprovider = tpm2-quote\nverifier_key = %s\nreference_path = %s\n"
		"pcrs = %s\n[policy]\nrequire_attestation = true\nmax_evidence_age = 600\n",
	    pk64, ref_path, pcrs);
	env_write_tpm_config(&tpm, NULL, s);
	free(s);
}

static void
setup(void)
{
	char state[300];

	env_setup();
	ck_assert_int_ge(sodium_init(), 0);
	ck_assert_int_eq(crypto_sign_keypair(ver_pk, ver_sk), 0);
	snprintf(ref_path, sizeof(ref_path), "%s/reference.json", env.dir);
	snprintf(ak_hex, sizeof(ak_hex), "%s", NO_AK);
	ref_seq = 0;
	snprintf(state, sizeof(state), "%s/tpm", env.dir);
	env_swtpm_start(&tpm, state);
	conf(PCRS);
}

static void
teardown(void)
{
	if (env.f != NULL)
		(void)env.f->C_Finalize(NULL);
	env_kill_children();
	env_swtpm_stop(&tpm);
	env_teardown();
}

/* The SHA-256 bank's PCRs (a list "0,16") as the TPM holds them now: their digest, in hex. */
static void
pcr_digest(const char *pcrs, char hex[65])
{
	unsigned char buf[24 * 32], md[32];
	char *path = fmt("%s/pcrs.bin", env.dir), *t = tcti();
	unsigned int mdlen = 0;
	size_t n;
	FILE *f;

	env_sh("tpm2_pcrread -T '%s' sha256:%s -o '%s' >/dev/null", t, pcrs, path);
	f = fopen(path, "rb");
	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	ck_assert_uint_gt(n, 0);
	ck_assert_uint_eq(n % 32, 0);
	/* The TPM's pcrDigest: SHA-256 of the values concatenated in index order. */
	ck_assert_int_eq(EVP_Digest(buf, n, md, &mdlen, EVP_sha256(), NULL), 1);
	sodium_bin2hex(hex, 65, md, sizeof(md));
	free(path);
	free(t);
}

/* Extend PCR 16 (resettable, unused by firmware) with some digest. */
static void
extend_pcr16(void)
{
	char *t = tcti();

	env_sh("tpm2_pcrextend -T '%s' "
	       "16:sha256=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	    t);
	free(t);
}

/* The transient objects the TPM holds: how many; their handles appended to list when not NULL. */
static int
transient_list(char *list, size_t size)
{
	char *t = tcti(), *cmd = fmt("tpm2_getcap -T '%s' handles-transient", t), line[128];
	FILE *p = popen(cmd, "r");
	int n = 0;

	ck_assert_ptr_nonnull(p);
	while (fgets(line, sizeof(line), p) != NULL)
		if (strstr(line, "0x") != NULL) {
			n++;
			if (list != NULL && strlen(list) + strlen(line) < size)
				strcat(list, line);
		}
	ck_assert_int_eq(pclose(p), 0);
	free(cmd);
	free(t);
	return n;
}

static int
transient_handles(void)
{
	return transient_list(NULL, 0);
}

/*
 * Write a reference policy pinning ak with seq, signed with sk, as an
 * agent does (beside it, then renamed).
 */
static void
put_reference_as(const char *device, const char *pcrs, const char *digest, const char *ak,
    long long seq, long long issued, long long expires, const unsigned char *sk)
{
	char *doc, *e, *tmp = fmt("%s.tmp", ref_path);
	FILE *f;

	doc = fmt("{\"version\":1,\"device\":\"%s\",\"pcrs\":[%s],\"digest\":\"%s\","
		  "\"ak\":\"%s\",\"seq\":%lld,\"issued_at\":%lld,\"expires_at\":%lld}",
	    device, pcrs, digest, ak, seq, issued, expires);
	e = env_envelope(REF_TYPE, doc, sk);
	f = fopen(tmp, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(e, 1, strlen(e), f), strlen(e));
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_msg(rename(tmp, ref_path) == 0, "rename: %s", strerror(errno));
	free(tmp);
	free(e);
	free(doc);
}

/* The next reference, pinning the AK learnt. */
static void
put_reference(const char *device, const char *pcrs, const char *digest, long long issued,
    long long expires, const unsigned char *sk)
{
	put_reference_as(device, pcrs, digest, ak_hex, ++ref_seq, issued, expires, sk);
}

/* The reference for the TPM's present state of PCRs 0 and 16, good for an hour. */
static void
good_reference(void)
{
	char hex[65];
	long long now = (long long)time(NULL);

	pcr_digest(PCRS, hex);
	put_reference(DEVICE, PCRS, hex, now - 5, now + 3600, ver_sk);
}

static CK_RV
login_user(CK_SESSION_HANDLE h)
{
	return env.f->C_Login(h, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN));
}

static CK_SESSION_HANDLE
open_session(CK_SLOT_ID slot)
{
	CK_SESSION_HANDLE h;

	ck_assert_int_eq(env.f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
			     NULL, &h),
	    CKR_OK);
	return h;
}

static EV_ADMIN_FUNCTION_LIST *
admin(void)
{
	CK_INTERFACE *iface = NULL;
	CK_VERSION v = { 1, 1 };

	ck_assert_int_eq(env.f->C_GetInterface((CK_UTF8CHAR *)EV_ADMIN_INTERFACE_NAME, &v, &iface,
			     0),
	    CKR_OK);
	ck_assert_ptr_nonnull(iface);
	return iface->pFunctionList;
}

/* The reason of the last refusal recorded for a purpose (malloc'ed; "" when none). */
static char *
last_refusal(const char *purpose)
{
	char *q = fmt("SELECT provider || ': ' || reason FROM attestlog WHERE accepted = 0 AND "
		      "purpose = '%s' ORDER BY id DESC LIMIT 1",
	    purpose);
	char *r = env_sql_text(q);

	free(q);
	return r;
}

/* Login is refused (CKR_FUNCTION_REJECTED) and the reason recorded holds why. */
static void
login_refused(CK_SLOT_ID slot, const char *why)
{
	CK_SESSION_HANDLE h = open_session(slot);
	char *r;

	ck_assert_int_eq(login_user(h), CKR_FUNCTION_REJECTED);
	r = last_refusal("login");
	ck_assert_msg(strstr(r, "tpm2-quote: ") == r, "attestlog: %s", r);
	ck_assert_msg(strstr(r, why) != NULL, "\"%s\" not in the attestlog's reason: %s", why, r);
	free(r);
	ck_assert_int_eq(env.f->C_CloseSession(h), CKR_OK);
}

/*
 * The AK's name into ak_hex, as an operator learns it: a reference for
 * the right state that pins no AK is refused, and the refusal names the
 * AK that signed. It must be the name of a key made from the AK's
 * template (doc/attestation.md) in the owner hierarchy of this TPM.
 */
static void
learn_ak(CK_SLOT_ID slot)
{
	long long now = (long long)time(NULL);
	char hex[65], *r, *p, *t = tcti(), *ctx = fmt("%s/ak.ctx", env.dir);
	char want[69], *namepath = fmt("%s/ak.name", env.dir);
	unsigned char bin[34];
	char before[512], after[512];
	int handles = transient_handles();
	size_t n;
	FILE *f;

	pcr_digest(PCRS, hex);
	put_reference_as(DEVICE, PCRS, hex, NO_AK, ++ref_seq, now - 5, now + 3600, ver_sk);
	login_refused(slot, "is not the reference's");
	r = last_refusal("login");
	p = strstr(r, "the quote's attestation key ");
	ck_assert_msg(p != NULL, "%s", r);
	ck_assert_int_eq(sscanf(p + strlen("the quote's attestation key "), "%68[0-9a-f]", ak_hex),
	    1);
	ck_assert_uint_eq(strlen(ak_hex), 68);
	ck_assert_str_ne(ak_hex, NO_AK);
	free(r);
	/*
	 * The same key from tpm2-tools: the name is the TPM's, not something
	 * made up. Flushed by its context, not with -t: the root's primary stays.
	 */
	before[0] = '\0';
	(void)transient_list(before, sizeof(before));
	env_sh("tpm2_createprimary -T '%s' -C o -g sha256 -G ecc256:ecdsa-sha256:null "
	       "-a 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|sign' "
	       "-c '%s' >/dev/null && tpm2_readpublic -T '%s' -c '%s' -n '%s' >/dev/null",
	    t, ctx, t, ctx, namepath);
	f = fopen(namepath, "rb");
	ck_assert_ptr_nonnull(f);
	n = fread(bin, 1, sizeof(bin), f);
	fclose(f);
	ck_assert_uint_eq(n, sizeof(bin));
	sodium_bin2hex(want, sizeof(want), bin, sizeof(bin));
	ck_assert_str_eq(ak_hex, want);
	free(namepath);
	/* What tpm2-tools left loaded, flushed by handle: the root's primary stays. */
	after[0] = '\0';
	(void)transient_list(after, sizeof(after));
	for (p = strtok(after, " -\n"); p != NULL; p = strtok(NULL, " -\n"))
		if (strstr(before, p) == NULL)
			env_sh("tpm2_flushcontext -T '%s' %s", t, p);
	ck_assert_int_eq(transient_handles(), handles);
	free(ctx);
	free(t);
}

START_TEST(test_quote_login)
{
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
	char before[65], after[65], *r;

	env_init();
	slot = env_new_zone("quoted");
	/* No reference yet. */
	login_refused(slot, "no reference policy at ");
	learn_ak(slot);
	good_reference();
	h = open_session(slot);
	ck_assert_int_eq(login_user(h), CKR_OK);
	ck_assert_int_eq(env_sql_long("SELECT count(*) FROM attestlog WHERE accepted = 1 AND "
				      "purpose = 'login' AND provider = 'tpm2-quote'"),
	    1);
	/* The same state again: no second row for it. */
	ck_assert_int_eq(env.f->C_Logout(h), CKR_OK);
	ck_assert_int_eq(login_user(h), CKR_OK);
	ck_assert_int_eq(env_sql_long("SELECT count(*) FROM attestlog WHERE accepted = 1"), 1);
	ck_assert_int_eq(env.f->C_Logout(h), CKR_OK);
	/* Nothing of the quotes left in the TPM, nor the root's primary (saved between uses). */
	ck_assert_int_eq(transient_handles(), 0);

	/* PCR 16 extended: another state, refused, and the digest found is named. */
	pcr_digest(PCRS, before);
	extend_pcr16();
	pcr_digest(PCRS, after);
	ck_assert_str_ne(before, after);
	ck_assert_int_eq(login_user(h), CKR_FUNCTION_REJECTED);
	r = last_refusal("login");
	ck_assert_msg(strstr(r, after) != NULL, "%s not in: %s", after, r);
	ck_assert_msg(strstr(r, "differs from the reference's (PCRs 0,16)") != NULL, "%s", r);
	free(r);
	/* A reference for the new state is accepted again. */
	good_reference();
	ck_assert_int_eq(login_user(h), CKR_OK);
}
END_TEST

START_TEST(test_quote_references_refused)
{
	unsigned char pk2[crypto_sign_PUBLICKEYBYTES], sk2[crypto_sign_SECRETKEYBYTES];
	long long now = (long long)time(NULL);
	CK_SLOT_ID slot;
	char hex[65], hex0[65];

	env_init();
	slot = env_new_zone("refused");
	learn_ak(slot);
	pcr_digest(PCRS, hex);
	/* Signed by another key. */
	ck_assert_int_eq(crypto_sign_keypair(pk2, sk2), 0);
	put_reference(DEVICE, PCRS, hex, now - 5, now + 3600, sk2);
	login_refused(slot, "signature does not verify with the pinned public key");
	/* For another device. */
	put_reference("other-device", PCRS, hex, now - 5, now + 3600, ver_sk);
	login_refused(slot, "for device \"other-device\", not this one");
	/* Expired. */
	put_reference(DEVICE, PCRS, hex, now - 7200, now - 3600, ver_sk);
	login_refused(slot, "expired at ");
	/* For other PCRs (the right digest of those, even). */
	pcr_digest("0", hex0);
	put_reference(DEVICE, "0", hex0, now - 5, now + 3600, ver_sk);
	login_refused(slot, "reference for PCRs 0, not the configured 0,16");
	/* Another AK than this TPM's, the right state: refused, naming this TPM's AK. */
	{
		char other[69];

		snprintf(other, sizeof(other), "%s", ak_hex);
		other[67] = other[67] == '0' ? '1' : '0';
		put_reference_as(DEVICE, PCRS, hex, other, ++ref_seq, now - 5, now + 3600, ver_sk);
		login_refused(slot, "is not the reference's");
		login_refused(slot, ak_hex);
	}
	/* The right one. */
	put_reference(DEVICE, PCRS, hex, now - 5, now + 3600, ver_sk);
	{
		CK_SESSION_HANDLE h = open_session(slot);
		char *why;

		ck_assert_int_eq(login_user(h), CKR_OK);
		ck_assert_int_eq(env.f->C_Logout(h), CKR_OK);
		/* An older reference put back, unexpired and well signed: refused (rollback). */
		put_reference_as(DEVICE, PCRS, hex, ak_hex, ref_seq - 1, now - 5, now + 3600,
		    ver_sk);
		why = fmt("reference policy seq %lld is older than the %lld already accepted",
		    ref_seq - 1, ref_seq);
		login_refused(slot, why);
		free(why);
		/* The same one again is fine. */
		put_reference_as(DEVICE, PCRS, hex, ak_hex, ref_seq, now - 5, now + 3600, ver_sk);
		ck_assert_int_eq(login_user(h), CKR_OK);
		ck_assert_int_eq(env.f->C_Logout(h), CKR_OK);
	}
	/* Configured for PCR 0 alone, the reference for 0,16 no longer fits. */
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	conf("0");
	env_init();
	login_refused(slot, "reference for PCRs 0,16, not the configured 0");
}
END_TEST

START_TEST(test_quote_rotation)
{
	CK_OBJECT_HANDLE pub, priv, got = CK_INVALID_HANDLE;
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
	char *r;

	env_init();
	slot = env_new_zone("rotated");
	learn_ak(slot);
	good_reference();
	h = env_session(slot, 1, 1);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "k", CK_TRUE, &pub, &priv);
	ck_assert_int_eq(admin()->EV_RotateKey(h, priv, &got), CKR_OK);
	ck_assert_int_eq(env_sql_long("SELECT count(*) FROM attestlog WHERE accepted = 1 AND "
				      "purpose = 'rotate' AND provider = 'tpm2-quote'"),
	    0); /* the state was recorded at login: once */
	/* Another state: the next rotation is refused and recorded; the session stays. */
	extend_pcr16();
	ck_assert_int_eq(admin()->EV_RotateKey(h, got, NULL), CKR_FUNCTION_REJECTED);
	r = last_refusal("rotate");
	ck_assert_msg(strstr(r, "tpm2-quote: PCR digest ") == r, "%s", r);
	free(r);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("quote");
	TCase *tc = tcase_create("tpm2-quote");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_quote_login);
	tcase_add_test(tc, test_quote_references_refused);
	tcase_add_test(tc, test_quote_rotation);
	suite_add_tcase(s, tc);
	return env_run(s);
}
