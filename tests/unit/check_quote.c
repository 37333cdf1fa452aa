/*
 * Unit tests of the tpm2-quote provider (src/quote.c): the reference
 * policy read strictly, the rules and their boundaries, the quote
 * verifier against quotes crafted here (an OpenSSL P-256 key standing in
 * for the TPM's AK, TPMS_ATTEST marshalled with tss2-mu) and mutated, and
 * the provider with a root that quotes in software.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_tpm2_types.h>

#include "lock.h"
#include "module.h"
#include "quote.h"
#include "secmem.h"
#include "signed.h"
#include "testutil.h"

#define ISSUED 1795430400LL /* 2026-11-23T10:40:00Z */
#define EXPIRES (ISSUED + 86400)
#define DIGEST_HEX "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969"
#define PCRS_0_7 0x81u
#define AK_HEX "000b8f3a1e5c7d2b9a604f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778"
#define AKSEQ "\"ak\": \"" AK_HEX "\", \"seq\": 1, "

/* What make_ref() puts in "ak" and "seq": AK_HEX and 1 unless a test says otherwise. */
static char ref_ak[2 * EV_QUOTE_AK_NAME_LEN + 8];
static long long ref_seq;

static void
setup(void)
{
	tmpdir_make("ev_quote");
	snprintf(ref_ak, sizeof(ref_ak), "%s", AK_HEX);
	ref_seq = 1;
}

/* ---- the reference policy ---- */

/* A document; zones NULL for none. In a static buffer. */
static const char *
make_ref(const char *device, const char *pcrs, const char *digest, const char *zones,
	 long long issued, long long expires)
{
	static char doc[4096];
	char zm[200] = "";

	if (zones != NULL)
		snprintf(zm, sizeof(zm), ", \"zones\": [%s]", zones);
	snprintf(doc, sizeof(doc),
		 "{\"version\": 1, \"device\": \"%s\", \"pcrs\": [%s], \"digest\": \"%s\"%s, "
		 "\"ak\": \"%s\", \"seq\": %lld, \"issued_at\": %lld, \"expires_at\": %lld}\n",
		 device, pcrs, digest, zm, ref_ak, ref_seq, issued, expires);
	return doc;
}

static ev_tpm_reference *
ref_ok(const char *doc)
{
	ev_tpm_reference *r = NULL;
	char err[256] = "";

	ck_assert_msg(ev_tpm_reference_parse((const unsigned char *)doc, strlen(doc), &r, err,
					     sizeof(err)) == CKR_OK,
		      "%s: %s", doc, err);
	ck_assert_ptr_nonnull(r);
	return r;
}

static void
ref_fails(const char *doc, const char *must)
{
	ev_tpm_reference *r = (ev_tpm_reference *)1;
	char err[512] = "";
	CK_RV rv;

	rv = ev_tpm_reference_parse((const unsigned char *)doc, strlen(doc), &r, err, sizeof(err));
	ck_assert_msg(rv == CKR_DATA_INVALID, "0x%lx for %s", (unsigned long)rv, doc);
	ck_assert_ptr_null(r);
	ck_assert_err_has(err, "TPM reference policy");
	ck_assert_msg(strstr(err, must) != NULL, "\"%s\" not in \"%s\" for %s", must, err, doc);
}

START_TEST(test_ref_parse)
{
	ev_tpm_reference *r;
	unsigned char want[32], akw[EV_QUOTE_AK_NAME_LEN];
	size_t n = 0;

	r = ref_ok(make_ref("edge-0042", "0, 7", DIGEST_HEX, NULL, ISSUED, EXPIRES));
	ck_assert_str_eq(r->scope.device, "edge-0042");
	ck_assert_uint_eq(r->pcrs, PCRS_0_7);
	ck_assert_int_eq(sodium_hex2bin(want, sizeof(want), DIGEST_HEX, 64, NULL, &n, NULL), 0);
	ck_assert_mem_eq(r->pcr_digest, want, 32);
	ck_assert_ptr_null(r->scope.zones); /* every zone */
	ck_assert_uint_eq(r->scope.nzones, 0);
	ck_assert_int_eq(r->scope.issued_at, ISSUED);
	ck_assert_int_eq(r->scope.expires_at, EXPIRES);
	ck_assert_int_eq(sodium_hex2bin(akw, sizeof(akw), AK_HEX, 68, NULL, &n, NULL), 0);
	ck_assert_mem_eq(r->ak_name, akw, sizeof(akw));
	ck_assert_int_eq(r->seq, 1);
	ev_tpm_reference_free(r);

	/* Zones, every PCR, the highest seq, the digest in capitals. */
	ref_seq = 9007199254740992LL;
	r = ref_ok(make_ref("d", "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23",
			    "3D458CFE55CC03EA1F443F1562BEEC8DF51C75E14A9FCF9A7234A13F198E7969",
			    "2, 9007199254740992", 0, 1));
	ck_assert_uint_eq(r->pcrs, 0xffffffu);
	ck_assert_mem_eq(r->pcr_digest, want, 32);
	ck_assert_uint_eq(r->scope.nzones, 2);
	ck_assert_int_eq(r->scope.zones[1], 9007199254740992LL);
	ck_assert_int_eq(r->seq, 9007199254740992LL);
	ev_tpm_reference_free(r);
	ev_tpm_reference_free(NULL);
}
END_TEST

START_TEST(test_ref_malformed)
{
	static const char *bad_digests[] = {
	    "",
	    "3d45",
	    DIGEST_HEX "00",
	    "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e796",
	    "xx458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969",
	};
	size_t i;

	ref_fails(make_ref("d", "7, 0", DIGEST_HEX, NULL, 10, 20), "expected ascending");
	ref_fails(make_ref("d", "0, 0", DIGEST_HEX, NULL, 10, 20), "none twice");
	ref_fails(make_ref("d", "24", DIGEST_HEX, NULL, 10, 20), "\"pcrs\"[0]");
	ref_fails(make_ref("d", "-1", DIGEST_HEX, NULL, 10, 20), "\"pcrs\"[0]");
	ref_fails(make_ref("d", "\"7\"", DIGEST_HEX, NULL, 10, 20), "\"pcrs\"[0]");
	ref_fails(make_ref("d", "1.0", DIGEST_HEX, NULL, 10, 20), "\"pcrs\"[0]");
	ref_fails(make_ref("d", "", DIGEST_HEX, NULL, 10, 20), "0 PCRs, expected 1 to 24");
	ref_fails(make_ref("d", "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,23",
			   DIGEST_HEX, NULL, 10, 20),
		  "25 PCRs");
	for (i = 0; i < sizeof(bad_digests) / sizeof(bad_digests[0]); i++)
		ref_fails(make_ref("d", "0", bad_digests[i], NULL, 10, 20), "\"digest\"");
	ref_fails(make_ref("d", "0", DIGEST_HEX, "", 10, 20), "0 zones");
	ref_fails(make_ref("d", "0", DIGEST_HEX, "1, 1", 10, 20), "given twice");
	ref_fails(make_ref("d", "0", DIGEST_HEX, NULL, 20, 20), "is not after");
	ref_fails(make_ref("", "0", DIGEST_HEX, NULL, 10, 20), "\"device\"");
	ref_fails("{\"version\": 1, \"device\": \"d\", \"pcrs\": 7, \"digest\": \"" DIGEST_HEX
		  "\", " AKSEQ "\"issued_at\": 1, \"expires_at\": 2}",
		  "expected an array");
	ref_fails("{\"version\": 2, \"device\": \"d\", \"pcrs\": [7], \"digest\": \"" DIGEST_HEX
		  "\", " AKSEQ "\"issued_at\": 1, \"expires_at\": 2}",
		  "2 is not supported");
	ref_fails("{\"version\": 1, \"device\": \"d\", \"pcrs\": [7], \"digest\": \"" DIGEST_HEX
		  "\", " AKSEQ "\"issued_at\": 1, \"expires_at\": 2, \"bank\": \"sha1\"}",
		  "unknown member \"bank\"");
	ref_fails("{\"version\": 1, \"device\": \"d\", \"pcrs\": [7], " AKSEQ "\"issued_at\": 1, "
		  "\"expires_at\": 2}",
		  "\"digest\": missing");
	ref_fails("{\"version\": 1, \"device\": \"d\", \"digest\": \"" DIGEST_HEX
		  "\", " AKSEQ "\"issued_at\": 1, \"expires_at\": 2}",
		  "\"pcrs\": missing");
	ref_fails("{\"version\": 1, \"device\": \"d\", \"pcrs\": [7], \"digest\": \"" DIGEST_HEX
		  "\", \"zones\": null, " AKSEQ "\"issued_at\": 1, \"expires_at\": 2}",
		  "null is not a value here");
	ref_fails("{\"version\": 1, \"device\": \"d\", \"pcrs\": [7], \"pcrs\": [0], \"digest\": "
		  "\"" DIGEST_HEX "\", " AKSEQ "\"issued_at\": 1, \"expires_at\": 2}",
		  "");
	ref_fails("[1]", "expected a JSON object");
	/* The AK: required, a TPM name of nameAlg SHA-256, 34 bytes. */
	ref_fails("{\"version\": 1, \"device\": \"d\", \"pcrs\": [7], \"digest\": \"" DIGEST_HEX
		  "\", \"seq\": 1, \"issued_at\": 1, \"expires_at\": 2}",
		  "\"ak\": missing");
	snprintf(ref_ak, sizeof(ref_ak), "%s", "000b");
	ref_fails(make_ref("d", "0", DIGEST_HEX, NULL, 10, 20), "\"ak\"");
	snprintf(ref_ak, sizeof(ref_ak), "%s", AK_HEX "00");
	ref_fails(make_ref("d", "0", DIGEST_HEX, NULL, 10, 20), "\"ak\"");
	snprintf(ref_ak, sizeof(ref_ak), "%s", DIGEST_HEX);
	ref_fails(make_ref("d", "0", DIGEST_HEX, NULL, 10, 20), "\"ak\"");
	snprintf(ref_ak, sizeof(ref_ak), "0004%s", AK_HEX + 4); /* nameAlg SHA-1 */
	ref_fails(make_ref("d", "0", DIGEST_HEX, NULL, 10, 20), "nameAlg SHA-256");
	snprintf(ref_ak, sizeof(ref_ak), "%s", AK_HEX);
	/* The seq: required, 1 .. 2^53. */
	ref_fails("{\"version\": 1, \"device\": \"d\", \"pcrs\": [7], \"digest\": \"" DIGEST_HEX
		  "\", \"ak\": \"" AK_HEX "\", \"issued_at\": 1, \"expires_at\": 2}",
		  "\"seq\": missing");
	ref_seq = 0;
	ref_fails(make_ref("d", "0", DIGEST_HEX, NULL, 10, 20), "\"seq\"");
	ref_seq = -1;
	ref_fails(make_ref("d", "0", DIGEST_HEX, NULL, 10, 20), "\"seq\"");
	ref_seq = 9007199254740993LL;
	ref_fails(make_ref("d", "0", DIGEST_HEX, NULL, 10, 20), "\"seq\"");
	ref_seq = 1;
}
END_TEST

static ev_secret *
new_key(unsigned char pk[32])
{
	ev_secret *seed = NULL;

	ck_assert_uint_eq(ev_signkey_generate(&seed, pk), CKR_OK);
	return seed;
}

static char *
envelope(const char *doc, const char *type, const ev_secret *seed, size_t *len)
{
	char *env = NULL;

	ck_assert_uint_eq(
	    ev_signed_make((const unsigned char *)doc, strlen(doc), type, seed, &env, len), CKR_OK);
	return env;
}

START_TEST(test_ref_load)
{
	unsigned char pk[32], pk2[32], digest[32];
	ev_secret *seed = new_key(pk), *other = new_key(pk2);
	const char *doc = make_ref("edge", "0,7", DIGEST_HEX, "1", ISSUED, EXPIRES);
	ev_tpm_reference *r = NULL;
	char err[256] = "", *env;
	size_t len = 0;

	env = envelope(doc, EV_SIGNED_TPM_REFERENCE, seed, &len);
	ck_assert_uint_eq(
	    ev_tpm_reference_load((unsigned char *)env, len, pk, &r, err, sizeof(err)), CKR_OK);
	crypto_generichash(digest, 32, (unsigned char *)env, len, NULL, 0);
	ck_assert_mem_eq(r->digest, digest, 32);
	ck_assert_uint_eq(r->pcrs, PCRS_0_7);
	ev_tpm_reference_free(r);
	/* Another verifier's key. */
	ck_assert_uint_eq(
	    ev_tpm_reference_load((unsigned char *)env, len, pk2, &r, err, sizeof(err)),
	    CKR_SIGNATURE_INVALID);
	ck_assert_ptr_null(r);
	free(env);
	/* An attestation result's envelope is not a reference policy. */
	env = envelope(doc, EV_SIGNED_ATTESTATION, seed, &len);
	ck_assert_uint_eq(
	    ev_tpm_reference_load((unsigned char *)env, len, pk, &r, err, sizeof(err)),
	    CKR_DATA_INVALID);
	ck_assert_err_has(err, "expected \"edgevault-tpm-reference\"");
	free(env);
	/* A malformed document, well signed. */
	env = envelope(make_ref("edge", "7,0", DIGEST_HEX, NULL, 1, 2), EV_SIGNED_TPM_REFERENCE,
		       seed, &len);
	ck_assert_uint_eq(
	    ev_tpm_reference_load((unsigned char *)env, len, pk, &r, err, sizeof(err)),
	    CKR_DATA_INVALID);
	ck_assert_err_has(err, "ascending");
	free(env);
	ck_assert_uint_eq(ev_tpm_reference_load(NULL, 0, pk, NULL, err, sizeof(err)),
			  CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(ev_tpm_reference_load(NULL, 0, NULL, &r, err, sizeof(err)),
			  CKR_ARGUMENTS_BAD);
	ev_secret_free(seed);
	ev_secret_free(other);
}
END_TEST

/* ---- the rules ---- */

struct fixture {
	ev_config cfg;
	ev_policy policy;
	ev_attest_ctx ctx;
	unsigned char digest[32]; /* DIGEST_HEX */
	unsigned char ak_name[EV_QUOTE_AK_NAME_LEN]; /* AK_HEX */
};

static void
fixture_init(struct fixture *f)
{
	size_t n = 0;

	memset(f, 0, sizeof(*f));
	f->cfg.attest = EV_ATTEST_TPM2_QUOTE;
	f->cfg.clock_skew = 60;
	f->cfg.attest_pcrs = PCRS_0_7;
	f->policy.max_evidence_age = 600;
	f->ctx.cfg = &f->cfg;
	f->ctx.device = "edge";
	f->ctx.zone = 1;
	f->ctx.now = ISSUED;
	f->ctx.policy = &f->policy;
	ck_assert_int_eq(sodium_hex2bin(f->digest, 32, DIGEST_HEX, 64, NULL, &n, NULL), 0);
	ck_assert_int_eq(sodium_hex2bin(f->ak_name, sizeof(f->ak_name), AK_HEX, 68, NULL, &n, NULL),
			 0);
}

/* Check a reference document against the PCR digest and AK name found. */
static void
check(const char *doc, const unsigned char found[32], const unsigned char ak[EV_QUOTE_AK_NAME_LEN],
      const ev_attest_ctx *ctx, ev_verdict *v)
{
	ev_tpm_reference *r = ref_ok(doc);

	memset(r->digest, 0xd1, sizeof(r->digest));
	memset(v, 0xee, sizeof(*v));
	ev_quote_check(r, found, ak, ctx, v);
	ev_tpm_reference_free(r);
	ck_assert_msg(memchr(v->reason, '\0', sizeof(v->reason)) != NULL, "reason not terminated");
	ck_assert_msg(v->reason[0] != '\0', "no reason");
	if (!v->accepted)
		ck_assert_int_eq(v->valid_until, 0);
}

static void
accepted(const char *doc, const struct fixture *f, int64_t valid_until)
{
	ev_verdict v;

	check(doc, f->digest, f->ak_name, &f->ctx, &v);
	ck_assert_msg(v.accepted == 1, "refused at %lld: %s", (long long)f->ctx.now, v.reason);
	ck_assert_int_eq(v.valid_until, valid_until);
}

static void
refused(const char *doc, const struct fixture *f, const char *why)
{
	ev_verdict v;

	check(doc, f->digest, f->ak_name, &f->ctx, &v);
	ck_assert_msg(v.accepted == 0, "accepted at %lld: %s", (long long)f->ctx.now, v.reason);
	ck_assert_err_has(v.reason, why);
}

START_TEST(test_rules_accepted)
{
	struct fixture f;
	ev_verdict v1, v2, v3;
	unsigned char other[32];
	const char *doc;

	fixture_init(&f);
	doc = make_ref("edge", "0,7", DIGEST_HEX, NULL, ISSUED, EXPIRES);
	/* Fresh for max_evidence_age from now, within the reference's life. */
	accepted(doc, &f, ISSUED + 600);
	f.ctx.now = EXPIRES - 601;
	accepted(doc, &f, EXPIRES - 1);
	/* The reference ends first: its expiry bounds it. */
	f.ctx.now = EXPIRES - 600;
	accepted(doc, &f, EXPIRES);
	f.ctx.now = EXPIRES - 1;
	accepted(doc, &f, EXPIRES);
	/* Issued up to clock_skew ahead of this clock. */
	f.ctx.now = ISSUED - 60;
	accepted(doc, &f, ISSUED - 60 + 600);
	/* Zones: any when absent, the listed ones when present. */
	f.ctx.zone = 9007199254740992LL;
	accepted(doc, &f, ISSUED - 60 + 600);
	f.ctx.zone = 2;
	accepted(make_ref("edge", "0,7", DIGEST_HEX, "1, 2", ISSUED, EXPIRES), &f,
		 ISSUED - 60 + 600);
	doc = make_ref("edge", "0,7", DIGEST_HEX, NULL, ISSUED, EXPIRES);

	/* The verdict's digest: the same for the same reference and state, another for another
	 * state. */
	check(doc, f.digest, f.ak_name, &f.ctx, &v1);
	f.ctx.now += 5;
	check(doc, f.digest, f.ak_name, &f.ctx, &v2);
	ck_assert_mem_eq(v1.digest, v2.digest, 32);
	memcpy(other, f.digest, 32);
	other[31] ^= 1;
	check(doc, other, f.ak_name, &f.ctx, &v3);
	ck_assert_int_eq(v3.accepted, 0);
	ck_assert_mem_ne(v1.digest, v3.digest, 32);
	ck_assert_err_has(v1.reason, "accepted for zone 2: PCRs 0,7");
}
END_TEST

START_TEST(test_rules_refused)
{
	struct fixture f;
	unsigned char other[32];
	char hex[65];
	const char *doc;
	ev_verdict v;

	fixture_init(&f);
	doc = make_ref("edge", "0,7", DIGEST_HEX, NULL, ISSUED, EXPIRES);
	/* Expired at its exact expiry. */
	f.ctx.now = EXPIRES;
	refused(doc, &f, "expired at 2026-11-24T10:40:00Z");
	/* Issued more than clock_skew ahead. */
	f.ctx.now = ISSUED - 61;
	refused(doc, &f, "issued in the future");
	f.cfg.clock_skew = 0;
	f.ctx.now = ISSUED - 1;
	refused(doc, &f, "issued in the future");
	f.ctx.now = ISSUED;
	accepted(doc, &f, ISSUED + 600);
	/* Another device. */
	refused(make_ref("edge-2", "0,7", DIGEST_HEX, NULL, ISSUED, EXPIRES), &f,
		"for device \"edge-2\", not this one");
	/* A zone it does not admit. */
	refused(make_ref("edge", "0,7", DIGEST_HEX, "2,3", ISSUED, EXPIRES), &f,
		"does not admit zone 1");
	/* Other PCRs than the configured ones, more or fewer. */
	refused(make_ref("edge", "0,1,7", DIGEST_HEX, NULL, ISSUED, EXPIRES), &f,
		"reference for PCRs 0,1,7, not the configured 0,7");
	refused(make_ref("edge", "7", DIGEST_HEX, NULL, ISSUED, EXPIRES), &f,
		"reference for PCRs 7, not the configured 0,7");
	/* Another PCR state: the digest found is named. */
	memcpy(other, f.digest, 32);
	other[0] ^= 0x80;
	sodium_bin2hex(hex, sizeof(hex), other, 32);
	doc = make_ref("edge", "0,7", DIGEST_HEX, NULL, ISSUED,
		       EXPIRES); /* make_ref's buffer was reused */
	check(doc, other, f.ak_name, &f.ctx, &v);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_err_has(v.reason, "PCR digest ");
	ck_assert_err_has(v.reason, hex);
	ck_assert_err_has(v.reason, "differs from the reference's (PCRs 0,7)");
	/* Another AK than the one pinned, even with the expected PCR digest: the name found is named. */
	{
		unsigned char ak2[EV_QUOTE_AK_NAME_LEN];
		char akhex[2 * EV_QUOTE_AK_NAME_LEN + 1];

		memcpy(ak2, f.ak_name, sizeof(ak2));
		ak2[EV_QUOTE_AK_NAME_LEN - 1] ^= 1;
		sodium_bin2hex(akhex, sizeof(akhex), ak2, sizeof(ak2));
		doc = make_ref("edge", "0,7", DIGEST_HEX, NULL, ISSUED, EXPIRES);
		check(doc, f.digest, ak2, &f.ctx, &v);
		ck_assert_int_eq(v.accepted, 0);
		ck_assert_err_has(v.reason, "the quote's attestation key ");
		ck_assert_err_has(v.reason, akhex);
		ck_assert_err_has(v.reason, "is not the reference's");
	}
	/* No evidence. */
	ev_quote_check(NULL, f.digest, f.ak_name, &f.ctx, &v);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_err_has(v.reason, "no evidence");
	ev_quote_check(NULL, f.digest, f.ak_name, &f.ctx, NULL);
}
END_TEST

/* ---- quotes, crafted ---- */

/* A software AK: an OpenSSL P-256 key and its TPMT_PUBLIC. */
struct ak {
	EVP_PKEY *key;
	TPMT_PUBLIC pub;
};

static void
ak_make(struct ak *a)
{
	unsigned char point[65];
	size_t n = 0;

	memset(a, 0, sizeof(*a));
	a->key = EVP_EC_gen("P-256");
	ck_assert_ptr_nonnull(a->key);
	ck_assert_int_eq(EVP_PKEY_get_octet_string_param(a->key, OSSL_PKEY_PARAM_PUB_KEY, point,
							 sizeof(point), &n),
			 1);
	ck_assert_uint_eq(n, 65);
	a->pub.type = TPM2_ALG_ECC;
	a->pub.nameAlg = TPM2_ALG_SHA256;
	a->pub.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
				  TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
				  TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED |
				  TPMA_OBJECT_SIGN_ENCRYPT;
	a->pub.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
	a->pub.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
	a->pub.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
	a->pub.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
	a->pub.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
	a->pub.unique.ecc.x.size = 32;
	memcpy(a->pub.unique.ecc.x.buffer, point + 1, 32);
	a->pub.unique.ecc.y.size = 32;
	memcpy(a->pub.unique.ecc.y.buffer, point + 33, 32);
}

/*
 * The AK's name and qualified name, computed here as TPM 2.0 Part 1
 * defines them: nameAlg || SHA-256(TPMT_PUBLIC), and for a primary of the
 * owner hierarchy nameAlg || SHA-256(TPM_RH_OWNER || name).
 */
static void
ak_names(const struct ak *a, unsigned char name[34], unsigned char qn[34])
{
	unsigned char buf[1024], cat[4 + 34] = {0x40, 0x00, 0x00, 0x01};
	size_t n = 0;

	ck_assert_int_eq(Tss2_MU_TPMT_PUBLIC_Marshal(&a->pub, buf, sizeof(buf), &n),
			 TSS2_RC_SUCCESS);
	name[0] = 0x00;
	name[1] = 0x0b;
	crypto_hash_sha256(name + 2, buf, n);
	memcpy(cat + 4, name, 34);
	qn[0] = 0x00;
	qn[1] = 0x0b;
	crypto_hash_sha256(qn + 2, cat, sizeof(cat));
}

/* A quote's attest structure: a TPM's, over pcrs of the SHA-256 bank, with nonce and digest. */
static void
attest_make(TPMS_ATTEST *a, uint32_t pcrs, const unsigned char *nonce, size_t nonce_len,
	    const unsigned char digest[32])
{
	TPMS_PCR_SELECTION *s;
	unsigned i;

	memset(a, 0, sizeof(*a));
	a->magic = TPM2_GENERATED_VALUE;
	a->type = TPM2_ST_ATTEST_QUOTE;
	a->qualifiedSigner.size = 34;
	a->extraData.size = (UINT16)nonce_len;
	memcpy(a->extraData.buffer, nonce, nonce_len);
	a->clockInfo.clock = 123456;
	a->clockInfo.safe = 1;
	a->attested.quote.pcrSelect.count = 1;
	s = &a->attested.quote.pcrSelect.pcrSelections[0];
	s->hash = TPM2_ALG_SHA256;
	s->sizeofSelect = 3;
	for (i = 0; i < 24; i++)
		if (pcrs & (1u << i))
			s->pcrSelect[i / 8] |= (BYTE)(1u << (i % 8));
	a->attested.quote.pcrDigest.size = 32;
	memcpy(a->attested.quote.pcrDigest.buffer, digest, 32);
}

/* Sign q->attest with the AK (ECDSA-SHA256) into q->sig, as a TPMT_SIGNATURE. */
static void
quote_sign(struct ev_quote *q, const struct ak *a)
{
	unsigned char der[128];
	const unsigned char *p = der;
	size_t derlen = sizeof(der);
	const BIGNUM *r, *s;
	TPMT_SIGNATURE sig;
	ECDSA_SIG *es;
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	ck_assert_ptr_nonnull(md);
	ck_assert_int_eq(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, a->key), 1);
	ck_assert_int_eq(EVP_DigestSign(md, der, &derlen, q->attest, q->attest_len), 1);
	EVP_MD_CTX_free(md);
	es = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
	ck_assert_ptr_nonnull(es);
	ECDSA_SIG_get0(es, &r, &s);
	memset(&sig, 0, sizeof(sig));
	sig.sigAlg = TPM2_ALG_ECDSA;
	sig.signature.ecdsa.hash = TPM2_ALG_SHA256;
	sig.signature.ecdsa.signatureR.size =
	    (UINT16)BN_bn2bin(r, sig.signature.ecdsa.signatureR.buffer);
	sig.signature.ecdsa.signatureS.size =
	    (UINT16)BN_bn2bin(s, sig.signature.ecdsa.signatureS.buffer);
	ECDSA_SIG_free(es);
	q->sig_len = 0;
	ck_assert_int_eq(Tss2_MU_TPMT_SIGNATURE_Marshal(&sig, q->sig, sizeof(q->sig), &q->sig_len),
			 TSS2_RC_SUCCESS);
}

/*
 * A whole quote: attest marshalled, AK public marshalled, signed. A
 * qualifiedSigner of 34 zero bytes (attest_make's) becomes the AK's
 * qualified name; any other is left as the test set it.
 */
static void
quote_make(struct ev_quote *q, const struct ak *a, const TPMS_ATTEST *at)
{
	static const unsigned char zero[34];
	unsigned char name[34];
	TPMS_ATTEST t = *at;

	if (t.qualifiedSigner.size == 34 && memcmp(t.qualifiedSigner.name, zero, 34) == 0)
		ak_names(a, name, t.qualifiedSigner.name);
	memset(q, 0, sizeof(*q));
	ck_assert_int_eq(
	    Tss2_MU_TPMS_ATTEST_Marshal(&t, q->attest, sizeof(q->attest), &q->attest_len),
	    TSS2_RC_SUCCESS);
	ck_assert_int_eq(Tss2_MU_TPMT_PUBLIC_Marshal(&a->pub, q->ak, sizeof(q->ak), &q->ak_len),
			 TSS2_RC_SUCCESS);
	quote_sign(q, a);
}

/* Verify must refuse q with rv and a reason holding why. */
static void
quote_refused(const struct ev_quote *q, uint32_t pcrs, const unsigned char *nonce, CK_RV want,
	      const char *why)
{
	unsigned char d[32], name[EV_QUOTE_AK_NAME_LEN];
	char err[160] = "";
	CK_RV rv;

	rv = ev_quote_verify(q, pcrs, nonce, 32, d, name, err, sizeof(err));
	ck_assert_msg(rv == want, "0x%lx (%s), expected 0x%lx", (unsigned long)rv, err,
		      (unsigned long)want);
	ck_assert_err_has(err, why);
}

START_TEST(test_quote_verify)
{
	unsigned char nonce[32], digest[32], got[32], name[34], qn[34], gotname[34], n2[34];
	struct ev_quote q;
	TPMS_ATTEST at;
	struct ak a;
	char err[160] = "";

	ak_make(&a);
	ak_names(&a, name, qn);
	randombytes_buf(nonce, sizeof(nonce));
	randombytes_buf(digest, sizeof(digest));
	attest_make(&at, PCRS_0_7, nonce, sizeof(nonce), digest);
	quote_make(&q, &a, &at);
	memset(got, 0, sizeof(got));
	memset(gotname, 0, sizeof(gotname));
	ck_assert_uint_eq(ev_quote_verify(&q, PCRS_0_7, nonce, 32, got, gotname, err, sizeof(err)),
			  CKR_OK);
	ck_assert_mem_eq(got, digest, 32);
	/* The name of the AK that signed, as the TPM computes it. */
	ck_assert_mem_eq(gotname, name, 34);
	ck_assert_int_eq(ev_quote_ak_name(q.ak, q.ak_len, n2, NULL), 0);
	ck_assert_mem_eq(n2, name, 34);
	ck_assert_int_eq(ev_quote_ak_name(q.ak, q.ak_len - 1, n2, NULL), -1);
	ck_assert_uint_eq(ev_quote_verify(NULL, PCRS_0_7, nonce, 32, got, gotname, err, sizeof(err)),
			  CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(ev_quote_verify(&q, PCRS_0_7, NULL, 32, got, gotname, err, sizeof(err)),
			  CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(ev_quote_verify(&q, PCRS_0_7, nonce, 32, got, NULL, err, sizeof(err)),
			  CKR_ARGUMENTS_BAD);
	EVP_PKEY_free(a.key);
}
END_TEST

START_TEST(test_quote_mutated)
{
	unsigned char nonce[32], other_nonce[32], digest[32], qn_b[34], name_a[34];
	struct ev_quote q, good;
	TPMS_ATTEST at;
	struct ak a, b;

	ak_make(&a);
	ak_make(&b);
	randombytes_buf(nonce, sizeof(nonce));
	randombytes_buf(digest, sizeof(digest));
	memcpy(other_nonce, nonce, 32);
	other_nonce[31] ^= 1;
	attest_make(&at, PCRS_0_7, nonce, sizeof(nonce), digest);
	quote_make(&good, &a, &at);

	/* Another appraisal's nonce: a replayed quote. */
	quote_refused(&good, PCRS_0_7, other_nonce, CKR_DATA_INVALID, "nonce (replayed?)");
	attest_make(&at, PCRS_0_7, nonce, 16, digest);
	quote_make(&q, &a, &at);
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "nonce");
	/* Other PCRs than the configured ones. */
	quote_refused(&good, 0x80u, nonce, CKR_DATA_INVALID,
		      "the quote covers PCRs 0,7, not the configured 7");
	attest_make(&at, 0x10000u, nonce, sizeof(nonce), digest);
	quote_make(&q, &a, &at);
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID,
		      "covers PCRs 16, not the configured 0,7");
	/* Another bank, two banks, a selection beyond PCR 23. */
	attest_make(&at, PCRS_0_7, nonce, sizeof(nonce), digest);
	at.attested.quote.pcrSelect.pcrSelections[0].hash = TPM2_ALG_SHA1;
	quote_make(&q, &a, &at);
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "of another selection");
	attest_make(&at, PCRS_0_7, nonce, sizeof(nonce), digest);
	at.attested.quote.pcrSelect.count = 2;
	at.attested.quote.pcrSelect.pcrSelections[1] = at.attested.quote.pcrSelect.pcrSelections[0];
	quote_make(&q, &a, &at);
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "of another selection");
	attest_make(&at, PCRS_0_7, nonce, sizeof(nonce), digest);
	at.attested.quote.pcrSelect.pcrSelections[0].sizeofSelect = 4;
	at.attested.quote.pcrSelect.pcrSelections[0].pcrSelect[3] = 1;
	quote_make(&q, &a, &at);
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "of another selection");
	/* A PCR digest of another size. */
	attest_make(&at, PCRS_0_7, nonce, sizeof(nonce), digest);
	at.attested.quote.pcrDigest.size = 20;
	quote_make(&q, &a, &at);
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "20 bytes");
	/* Not made by a TPM, or not a quote (signed all the same). */
	attest_make(&at, PCRS_0_7, nonce, sizeof(nonce), digest);
	at.magic = 0x47544347;
	quote_make(&q, &a, &at);
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "not made by the TPM");
	attest_make(&at, PCRS_0_7, nonce, sizeof(nonce), digest);
	at.type = TPM2_ST_ATTEST_TIME;
	memset(&at.attested, 0, sizeof(at.attested));
	quote_make(&q, &a, &at);
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "other than a quote (type 0x8019)");
	/* Signed by the AK, but qualifiedSigner names another key, or the AK not as an owner primary. */
	attest_make(&at, PCRS_0_7, nonce, sizeof(nonce), digest);
	ak_names(&b, at.qualifiedSigner.name, qn_b);
	quote_make(&q, &a, &at);
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "the quote's signer is not");
	attest_make(&at, PCRS_0_7, nonce, sizeof(nonce), digest);
	ak_names(&a, at.qualifiedSigner.name, qn_b); /* the name, not the qualified name */
	quote_make(&q, &a, &at);
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "the quote's signer is not");
	attest_make(&at, PCRS_0_7, nonce, sizeof(nonce), digest);
	ak_names(&a, name_a, at.qualifiedSigner.name);
	at.qualifiedSigner.size = 33;
	quote_make(&q, &a, &at);
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "the quote's signer is not");
	attest_make(&at, PCRS_0_7, nonce, sizeof(nonce), digest);

	/* A byte changed after signing, a signature by another key, the signature cut. */
	q = good;
	q.attest[q.attest_len - 1] ^= 1;
	quote_refused(&q, PCRS_0_7, nonce, CKR_SIGNATURE_INVALID, "does not verify");
	q = good;
	quote_sign(&q, &b);
	quote_refused(&q, PCRS_0_7, nonce, CKR_SIGNATURE_INVALID, "does not verify");
	q = good;
	q.sig_len--;
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "signature is malformed");
	q = good;
	q.sig[1] = 0x14; /* TPM2_ALG_RSASSA... */
	q.sig[0] = 0x00;
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "signature is malformed");
	/* Trailing bytes, or a short structure. */
	q = good;
	q.attest[q.attest_len++] = 0;
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "attestation structure is malformed");
	q = good;
	q.attest_len -= 1;
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "attestation structure is malformed");
	q = good;
	q.attest_len = sizeof(q.attest) + 1;
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "attestation structure is malformed");

	/* An AK that is not restricted: it could sign anything, so its word is nothing. */
	a.pub.objectAttributes &= ~TPMA_OBJECT_RESTRICTED;
	quote_make(&q, &a, &at);
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "not a restricted ECDSA-SHA256");
	a.pub.objectAttributes |= TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
	quote_make(&q, &a, &at);
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "not a restricted ECDSA-SHA256");
	a.pub.objectAttributes &= ~TPMA_OBJECT_DECRYPT;
	a.pub.parameters.eccDetail.curveID = TPM2_ECC_NIST_P384;
	quote_make(&q, &a, &at);
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "not a restricted ECDSA-SHA256");
	a.pub.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
	/* A point off the curve. */
	a.pub.unique.ecc.y.buffer[31] ^= 1;
	quote_make(&q, &a, &at);
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "not on P-256");
	a.pub.unique.ecc.y.buffer[31] ^= 1;
	/* The public area with a byte more. */
	q = good;
	q.ak[q.ak_len++] = 0;
	quote_refused(&q, PCRS_0_7, nonce, CKR_DATA_INVALID, "public area is malformed");
	EVP_PKEY_free(a.key);
	EVP_PKEY_free(b.key);
}
END_TEST

/* ---- the provider, with a root that quotes in software ---- */

struct fake_root {
	ev_root base; /* first */
	struct ak ak;
	unsigned char digest[32]; /* the PCR digest it reports */
	CK_RV answer;		  /* what it answers (CKR_OK: a quote) */
	int calls;
	unsigned char nonces[4][32];
	int replay;		  /* answer with the last quote made, whatever the nonce */
	struct ev_quote last;	  /* the last quote made */
};

static CK_RV
fake_quote(ev_root *base, uint32_t pcrs, const unsigned char *nonce, size_t nonce_len,
	   struct ev_quote *q)
{
	struct fake_root *r = (struct fake_root *)base;
	TPMS_ATTEST at;

	ck_assert_uint_eq(nonce_len, 32);
	if (r->calls < 4)
		memcpy(r->nonces[r->calls], nonce, 32);
	r->calls++;
	if (r->answer != CKR_OK)
		return r->answer;
	if (r->replay && r->last.attest_len > 0) {
		*q = r->last;
		return CKR_OK;
	}
	attest_make(&at, pcrs, nonce, nonce_len, r->digest);
	quote_make(q, &r->ak, &at);
	r->last = *q;
	return CKR_OK;
}

static const struct ev_root_ops fake_ops = {
    .name = "fake",
    .quote = fake_quote,
};

static const struct ev_root_ops noquote_ops = {
    .name = "pkcs11",
};

struct pfixture {
	struct fixture f;
	struct fake_root root;
	ev_secret *seed;
	char path[400];
	ev_module mod; /* ev_mod: the store that keeps the highest seq */
};

/* make_ref()'s "ak": the name of a's key. */
static void
pin_ak(const struct ak *a)
{
	unsigned char name[34], qn[34];

	ak_names(a, name, qn);
	sodium_bin2hex(ref_ak, sizeof(ref_ak), name, sizeof(name));
}

static void
pfixture_init(struct pfixture *p)
{
	char err[256] = "";

	fixture_init(&p->f);
	memset(&p->root, 0, sizeof(p->root));
	p->root.base.ops = &fake_ops;
	ak_make(&p->root.ak);
	memcpy(p->root.digest, p->f.digest, 32);
	p->seed = new_key(p->f.cfg.verifier_key);
	p->f.cfg.has_verifier_key = 1;
	snprintf(p->path, sizeof(p->path), "%s", path_of("reference.json"));
	p->f.cfg.attest_reference_path = p->path;
	p->f.ctx.root = &p->root.base;
	pin_ak(&p->root.ak);
	memset(&p->mod, 0, sizeof(p->mod));
	ck_assert_msg(ev_store_open(tmpdir, EV_STORE_CREATE, &p->mod.store, err, sizeof(err)) ==
			  CKR_OK,
		      "%s", err);
	p->mod.store_lock = ev_mutex_new();
	ck_assert_ptr_nonnull(p->mod.store_lock);
	ev_mod = &p->mod;
}

static void
pfixture_fini(struct pfixture *p)
{
	ev_mod = NULL;
	ev_store_close(p->mod.store);
	ev_mutex_free(p->mod.store_lock);
	EVP_PKEY_free(p->root.ak.key);
	ev_secret_free(p->seed);
}

static void
publish(struct pfixture *p, const char *doc, const ev_secret *seed)
{
	char *env;
	size_t len;

	env = envelope(doc, EV_SIGNED_TPM_REFERENCE, seed != NULL ? seed : p->seed, &len);
	write_file("reference.json", env, len);
	free(env);
}

static CK_RV
appraise(struct pfixture *p, ev_verdict *v)
{
	const ev_attest_provider *prov = ev_attest_provider_of(&p->f.cfg);
	CK_RV rv;

	ck_assert_ptr_eq(prov, &ev_tpm2_quote_provider);
	ck_assert_str_eq(prov->name, "tpm2-quote");
	ck_assert_int_eq(prov->needs_root, 1);
	memset(v, 0xee, sizeof(*v));
	rv = prov->appraise(&p->f.ctx, v);
	ck_assert_msg(memchr(v->reason, '\0', sizeof(v->reason)) != NULL, "reason not terminated");
	if (!v->accepted)
		ck_assert_int_eq(v->valid_until, 0);
	return rv;
}

START_TEST(test_provider_accepted)
{
	struct pfixture p;
	ev_verdict v, v2;

	pfixture_init(&p);
	publish(&p, make_ref("edge", "0,7", DIGEST_HEX, NULL, ISSUED, EXPIRES), NULL);
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_msg(v.accepted, "%s", v.reason);
	ck_assert_int_eq(v.valid_until, ISSUED + 600);
	/* A second appraisal quotes again, with another nonce; the same state, the same digest. */
	ck_assert_uint_eq(appraise(&p, &v2), CKR_OK);
	ck_assert_int_eq(v2.accepted, 1);
	ck_assert_int_eq(p.root.calls, 2);
	ck_assert_mem_ne(p.root.nonces[0], p.root.nonces[1], 32);
	ck_assert_mem_eq(v.digest, v2.digest, 32);
	pfixture_fini(&p);
}
END_TEST

START_TEST(test_provider_refused)
{
	struct pfixture p;
	unsigned char pk2[32];
	ev_secret *other = new_key(pk2);
	ev_verdict v;

	pfixture_init(&p);
	/* No reference yet. */
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_err_has(v.reason, "no reference policy at ");
	/* Signed by another key. */
	publish(&p, make_ref("edge", "0,7", DIGEST_HEX, NULL, ISSUED, EXPIRES), other);
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_err_has(v.reason, "signature does not verify with the pinned public key");
	/* References the rules refuse spare the TPM a quote. */
	publish(&p, make_ref("edge", "0", DIGEST_HEX, NULL, ISSUED, EXPIRES), NULL);
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_err_has(v.reason, "reference for PCRs 0, not the configured 0,7");
	publish(&p, make_ref("other", "0,7", DIGEST_HEX, NULL, ISSUED, EXPIRES), NULL);
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_err_has(v.reason, "for device \"other\"");
	publish(&p, make_ref("edge", "0,7", DIGEST_HEX, NULL, ISSUED - 10, ISSUED), NULL);
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_err_has(v.reason, "expired");
	ck_assert_int_eq(p.root.calls, 0);
	/* Another PCR state. */
	publish(&p, make_ref("edge", "0,7", DIGEST_HEX, NULL, ISSUED, EXPIRES), NULL);
	p.root.digest[5] ^= 1;
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_err_has(v.reason, "differs from the reference's (PCRs 0,7)");
	p.root.digest[5] ^= 1;
	/* A quote signed by another key than the AK it comes with. */
	EVP_PKEY_free(p.root.ak.key);
	p.root.ak.key = EVP_EC_gen("P-256");
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_err_has(v.reason, "the quote's signature does not verify");
	/*
	 * Whoever answers for the TPM signs with a key of their own, consistent
	 * with the public area it sends: the quote verifies, the AK is not the
	 * one pinned, and the refusal names the one found.
	 */
	EVP_PKEY_free(p.root.ak.key);
	ak_make(&p.root.ak);
	{
		unsigned char name[34], qn[34];
		char hex[69];

		ak_names(&p.root.ak, name, qn);
		sodium_bin2hex(hex, sizeof(hex), name, sizeof(name));
		ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
		ck_assert_int_eq(v.accepted, 0);
		ck_assert_err_has(v.reason, "the quote's attestation key ");
		ck_assert_err_has(v.reason, hex);
		ck_assert_err_has(v.reason, "is not the reference's");
		/* Pinned by a new reference (seq 2), the same key is accepted. */
		snprintf(ref_ak, sizeof(ref_ak), "%s", hex);
		ref_seq = 2;
		publish(&p, make_ref("edge", "0,7", DIGEST_HEX, NULL, ISSUED, EXPIRES), NULL);
		ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
		ck_assert_msg(v.accepted, "%s", v.reason);
	}
	/* The TPM unreachable: the machinery failed, no verdict. */
	p.root.answer = CKR_DEVICE_ERROR;
	ck_assert_uint_eq(appraise(&p, &v), CKR_DEVICE_ERROR);
	/* A root that cannot quote. */
	p.root.base.ops = &noquote_ops;
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_err_has(v.reason, "the root of trust (pkcs11) cannot quote");
	/* No root. */
	p.f.ctx.root = NULL;
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_err_has(v.reason, "no root of trust to quote with");
	/* Not configured. */
	p.f.cfg.attest_pcrs = 0;
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_err_has(v.reason, "no [attestation] pcrs");
	p.f.cfg.attest_reference_path = NULL;
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_err_has(v.reason, "no [attestation] reference_path");
	p.f.cfg.has_verifier_key = 0;
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_err_has(v.reason, "no [attestation] verifier_key");
	ck_assert_uint_eq(ev_tpm2_quote_provider.appraise(NULL, &v), CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(ev_tpm2_quote_provider.appraise(&p.f.ctx, NULL), CKR_ARGUMENTS_BAD);
	ev_secret_free(other);
	pfixture_fini(&p);
}
END_TEST

/*
 * A replayed quote: whoever answers for the TPM records a genuine quote
 * (the right AK, the right state) and hands it back at the next
 * appraisal. Refused because each appraisal asks with a new nonce and
 * checks the quote carries it; a provider that reused a nonce would
 * accept it.
 */
START_TEST(test_provider_replay)
{
	struct pfixture p;
	ev_verdict v;
	int i;

	pfixture_init(&p);
	publish(&p, make_ref("edge", "0,7", DIGEST_HEX, NULL, ISSUED, EXPIRES), NULL);
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_msg(v.accepted, "%s", v.reason);
	p.root.replay = 1;
	for (i = 0; i < 3; i++) {
		ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
		ck_assert_int_eq(v.accepted, 0);
		ck_assert_str_eq(v.reason,
				 "the quote does not carry this appraisal's nonce (replayed?)");
	}
	/* Every appraisal asked with a nonce of its own. */
	ck_assert_int_eq(p.root.calls, 4);
	for (i = 1; i < 4; i++)
		ck_assert_mem_ne(p.root.nonces[i], p.root.nonces[i - 1], 32);
	ck_assert_mem_ne(p.root.nonces[0], p.root.nonces[2], 32);
	ck_assert_mem_ne(p.root.nonces[0], p.root.nonces[3], 32);
	ck_assert_mem_ne(p.root.nonces[1], p.root.nonces[3], 32);
	/* The genuine TPM again: accepted. */
	p.root.replay = 0;
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_msg(v.accepted, "%s", v.reason);
	pfixture_fini(&p);
}
END_TEST

/* The rollback rule alone: lower refused, equal and higher admitted, the highest kept. */
START_TEST(test_seq_admit)
{
	ev_store *st = NULL;
	char err[256] = "";
	int64_t last = 0;

	ck_assert_uint_eq(ev_store_open(tmpdir, EV_STORE_CREATE, &st, err, sizeof(err)), CKR_OK);
	ck_assert_uint_eq(ev_store_meta_get_int(st, EV_META_TPM_REFERENCE_SEQ, &last),
			  EVR_NOT_FOUND);
	ck_assert_uint_eq(ev_quote_seq_admit(st, 5, err, sizeof(err)), CKR_OK);
	ck_assert_uint_eq(ev_quote_seq_admit(st, 5, err, sizeof(err)), CKR_OK);
	ck_assert_uint_eq(ev_quote_seq_admit(st, 4, err, sizeof(err)), CKR_DATA_INVALID);
	ck_assert_str_eq(err, "reference policy seq 4 is older than the 5 already accepted");
	ck_assert_uint_eq(ev_quote_seq_admit(st, 1, err, sizeof(err)), CKR_DATA_INVALID);
	ck_assert_uint_eq(ev_quote_seq_admit(st, 6, err, sizeof(err)), CKR_OK);
	ck_assert_uint_eq(ev_quote_seq_admit(st, 5, err, sizeof(err)), CKR_DATA_INVALID);
	ck_assert_uint_eq(ev_quote_seq_admit(st, 9007199254740992LL, err, sizeof(err)), CKR_OK);
	ck_assert_uint_eq(ev_quote_seq_admit(st, 9007199254740991LL, err, sizeof(err)),
			  CKR_DATA_INVALID);
	ck_assert_uint_eq(ev_store_meta_get_int(st, EV_META_TPM_REFERENCE_SEQ, &last), CKR_OK);
	ck_assert_int_eq(last, 9007199254740992LL);
	/* Kept across a reopen: it is the store's. */
	ev_store_close(st);
	st = NULL;
	ck_assert_uint_eq(ev_store_open(tmpdir, 0, &st, err, sizeof(err)), CKR_OK);
	ck_assert_uint_eq(ev_quote_seq_admit(st, 7, err, sizeof(err)), CKR_DATA_INVALID);
	ck_assert_uint_eq(ev_quote_seq_admit(st, 0, err, sizeof(err)), CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(ev_quote_seq_admit(NULL, 1, err, sizeof(err)), CKR_ARGUMENTS_BAD);
	ev_store_close(st);
}
END_TEST

/* The provider: an older reference put back is refused, the same or a newer one accepted. */
START_TEST(test_provider_rollback)
{
	struct pfixture p;
	ev_verdict v;

	pfixture_init(&p);
	ref_seq = 5;
	publish(&p, make_ref("edge", "0,7", DIGEST_HEX, NULL, ISSUED, EXPIRES), NULL);
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_msg(v.accepted, "%s", v.reason);
	/* The same reference read again. */
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_msg(v.accepted, "%s", v.reason);
	/* An older one, unexpired and well signed, put back: refused before any quote. */
	ref_seq = 4;
	publish(&p, make_ref("edge", "0,7", DIGEST_HEX, NULL, ISSUED, EXPIRES), NULL);
	p.root.calls = 0;
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_str_eq(v.reason, "reference policy seq 4 is older than the 5 already accepted");
	ck_assert_int_eq(p.root.calls, 0);
	/* A newer one, even one the device does not match, raises the bar. */
	ref_seq = 6;
	publish(&p, make_ref("edge", "0,7", DIGEST_HEX, NULL, ISSUED, EXPIRES), NULL);
	p.root.digest[0] ^= 1;
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_err_has(v.reason, "differs from the reference's");
	p.root.digest[0] ^= 1;
	ref_seq = 5;
	publish(&p, make_ref("edge", "0,7", DIGEST_HEX, NULL, ISSUED, EXPIRES), NULL);
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_err_has(v.reason, "seq 5 is older than the 6 already accepted");
	/* A reference the rules refuse anyway (expired) does not raise it. */
	ref_seq = 100;
	publish(&p, make_ref("edge", "0,7", DIGEST_HEX, NULL, ISSUED - 10, ISSUED), NULL);
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_err_has(v.reason, "expired");
	ref_seq = 7;
	publish(&p, make_ref("edge", "0,7", DIGEST_HEX, NULL, ISSUED, EXPIRES), NULL);
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_msg(v.accepted, "%s", v.reason);
	/* No store: refused, not accepted unguarded. */
	ev_mod = NULL;
	ck_assert_uint_eq(appraise(&p, &v), CKR_OK);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_err_has(v.reason, "no store to keep the reference policy's seq");
	ev_mod = &p.mod;
	pfixture_fini(&p);
}
END_TEST

static Suite *
quote_suite(void)
{
	Suite *s = suite_create("quote");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, tmpdir_remove);
	tcase_add_test(tc, test_ref_parse);
	tcase_add_test(tc, test_ref_malformed);
	tcase_add_test(tc, test_ref_load);
	tcase_add_test(tc, test_rules_accepted);
	tcase_add_test(tc, test_rules_refused);
	tcase_add_test(tc, test_quote_verify);
	tcase_add_test(tc, test_quote_mutated);
	tcase_add_test(tc, test_provider_accepted);
	tcase_add_test(tc, test_provider_refused);
	tcase_add_test(tc, test_provider_replay);
	tcase_add_test(tc, test_seq_admit);
	tcase_add_test(tc, test_provider_rollback);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	if (ev_secmem_init() != 0)
		return 1;
	return run_suite(quote_suite());
}
