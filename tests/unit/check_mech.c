/*
 * Unit tests: the mechanism table and every mechanism family, checked
 * against OpenSSL used directly (never through ev_op), known-answer
 * vectors, and the PKCS#11 length and buffer conventions.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "attr.h"
#include "key.h"
#include "mech/mech.h"
#include "secmem.h"

static const CK_BYTE oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const CK_BYTE oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const CK_BYTE oid_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};

/* Keys made once in main(), before the forks. */
static ev_key *p256, *p256_pub, *p384, *p384_pub, *ed, *ed_pub, *rsa, *rsa_pub;

static const CK_BYTE msg[] = "The quick brown fox jumps over the lazy dog, twice over.";

static void
hex(const char *h, CK_BYTE *out, size_t *len)
{
	size_t n = strlen(h) / 2, i;
	unsigned int b;

	for (i = 0; i < n; i++) {
		sscanf(h + 2 * i, "%2x", &b);
		out[i] = (CK_BYTE)b;
	}
	*len = n;
}

/* No ck_assert here: main() calls it outside any test. */
static CK_RV
gen_pair(CK_MECHANISM_TYPE mech, const void *ecp, size_t ecplen, CK_ULONG bits, ev_key **priv,
	 ev_key **pub)
{
	ev_attrs *t = ev_attrs_new();
	CK_RV rv = CKR_HOST_MEMORY;

	if (t == NULL)
		return rv;
	if (ecp != NULL)
		rv = ev_attrs_set(t, CKA_EC_PARAMS, ecp, ecplen);
	if (bits != 0)
		rv = ev_attrs_set_ulong(t, CKA_MODULUS_BITS, bits);
	if (rv == CKR_OK)
		rv = ev_key_generate_pair(mech, t, priv, pub);
	ev_attrs_free(t);
	return rv;
}

static ev_key *
secret_key(CK_KEY_TYPE type, const void *val, CK_ULONG len)
{
	CK_ATTRIBUTE t[] = {{CKA_VALUE, (void *)val, len}};
	ev_key *k = NULL;

	ck_assert_int_eq(ev_key_from_template(CKO_SECRET_KEY, type, t, 1, &k), CKR_OK);
	return k;
}

/* One-shot sign (or encrypt/decrypt/digest) through ev_op. */
static CK_RV
run(ev_op_kind kind, CK_MECHANISM *m, const ev_key *k, const CK_BYTE *in, CK_ULONG inlen,
    CK_BYTE *out, CK_ULONG *outlen)
{
	ev_op *op = NULL;
	CK_RV rv;

	rv = ev_op_new(kind, m, k, &op);
	if (rv != CKR_OK)
		return rv;
	rv = ev_op_oneshot(op, in, inlen, out, outlen);
	ck_assert_int_eq(ev_op_active(op), 0);
	ev_op_free(op);
	return rv;
}

/* Multi-part through ev_op in chunks of the given size; output appended. */
static CK_RV
run_parts(ev_op_kind kind, CK_MECHANISM *m, const ev_key *k, const CK_BYTE *in, CK_ULONG inlen,
	  size_t chunk, CK_BYTE *out, CK_ULONG *outlen)
{
	ev_op *op = NULL;
	CK_ULONG done = 0, pos = 0, n;
	int has_out = kind == EV_OP_ENCRYPT || kind == EV_OP_DECRYPT;
	CK_RV rv;

	rv = ev_op_new(kind, m, k, &op);
	if (rv != CKR_OK)
		return rv;
	while (pos < inlen) {
		CK_ULONG c = inlen - pos < chunk ? inlen - pos : chunk, want = 0;

		if (has_out) {
			/* Ask first, then give exactly that: update sizes are exact. */
			rv = ev_op_update(op, in + pos, c, NULL, &want);
			if (rv != CKR_OK)
				goto out;
			ck_assert(ev_op_active(op));
			ck_assert_uint_le(done + want, *outlen);
		}
		n = want;
		rv =
		    ev_op_update(op, in + pos, c, has_out ? out + done : NULL, has_out ? &n : NULL);
		if (rv != CKR_OK)
			goto out;
		ck_assert(ev_op_in_multipart(op));
		if (has_out) {
			ck_assert_uint_eq(n, want);
			done += n;
		}
		pos += c;
	}
	n = 0;
	rv = ev_op_final(op, NULL, &n);
	if (rv != CKR_OK)
		goto out;
	ck_assert_uint_le(done + n, *outlen);
	rv = ev_op_final(op, out + done, &n);
	if (rv == CKR_OK)
		*outlen = done + n;
out:
	ck_assert_int_eq(ev_op_active(op), 0);
	ev_op_free(op);
	return rv;
}

static CK_RV
verify(CK_MECHANISM *m, const ev_key *k, const CK_BYTE *in, CK_ULONG inlen, const CK_BYTE *sig,
       CK_ULONG siglen)
{
	ev_op *op = NULL;
	CK_RV rv;

	rv = ev_op_new(EV_OP_VERIFY, m, k, &op);
	if (rv != CKR_OK)
		return rv;
	rv = ev_op_verify(op, in, inlen, sig, siglen);
	ck_assert_int_eq(ev_op_active(op), 0);
	ev_op_free(op);
	return rv;
}

static CK_RV
verify_parts(CK_MECHANISM *m, const ev_key *k, const CK_BYTE *in, CK_ULONG inlen, size_t chunk,
	     const CK_BYTE *sig, CK_ULONG siglen)
{
	ev_op *op = NULL;
	CK_ULONG pos;
	CK_RV rv;

	rv = ev_op_new(EV_OP_VERIFY, m, k, &op);
	if (rv != CKR_OK)
		return rv;
	for (pos = 0; pos < inlen; pos += chunk) {
		rv = ev_op_update(op, in + pos, inlen - pos < chunk ? inlen - pos : chunk, NULL,
				  NULL);
		ck_assert_int_eq(rv, CKR_OK);
	}
	rv = ev_op_verify_final(op, sig, siglen);
	ev_op_free(op);
	return rv;
}

/* Table */

static const struct {
	CK_MECHANISM_TYPE type;
	CK_ULONG min, max;
	CK_FLAGS flags;
} expected[] = {
    {CKM_EC_KEY_PAIR_GEN, 256, 384,
     CKF_GENERATE_KEY_PAIR | CKF_EC_F_P | CKF_EC_OID | CKF_EC_UNCOMPRESS},
    {CKM_ECDSA, 256, 384, CKF_SIGN | CKF_VERIFY},
    {CKM_ECDSA_SHA256, 256, 384, CKF_SIGN | CKF_VERIFY},
    {CKM_ECDSA_SHA384, 256, 384, CKF_SIGN | CKF_VERIFY},
    {CKM_ECDH1_DERIVE, 256, 384, CKF_DERIVE},
    {CKM_EC_EDWARDS_KEY_PAIR_GEN, 256, 256, CKF_GENERATE_KEY_PAIR},
    {CKM_EDDSA, 256, 256, CKF_SIGN | CKF_VERIFY},
    {CKM_RSA_PKCS_KEY_PAIR_GEN, 2048, 4096, CKF_GENERATE_KEY_PAIR},
    {CKM_RSA_PKCS, 2048, 8192,
     CKF_SIGN | CKF_VERIFY | CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP},
    {CKM_RSA_PKCS_PSS, 2048, 8192, CKF_SIGN | CKF_VERIFY},
    {CKM_RSA_PKCS_OAEP, 2048, 8192, CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP},
    {CKM_SHA1_RSA_PKCS, 2048, 8192, CKF_SIGN | CKF_VERIFY},
    {CKM_SHA256_RSA_PKCS, 2048, 8192, CKF_SIGN | CKF_VERIFY},
    {CKM_SHA384_RSA_PKCS, 2048, 8192, CKF_SIGN | CKF_VERIFY},
    {CKM_SHA512_RSA_PKCS, 2048, 8192, CKF_SIGN | CKF_VERIFY},
    {CKM_SHA256_RSA_PKCS_PSS, 2048, 8192, CKF_SIGN | CKF_VERIFY},
    {CKM_SHA384_RSA_PKCS_PSS, 2048, 8192, CKF_SIGN | CKF_VERIFY},
    {CKM_SHA512_RSA_PKCS_PSS, 2048, 8192, CKF_SIGN | CKF_VERIFY},
    {CKM_AES_KEY_GEN, 16, 32, CKF_GENERATE},
    {CKM_AES_ECB, 16, 32, CKF_ENCRYPT | CKF_DECRYPT},
    {CKM_AES_CBC, 16, 32, CKF_ENCRYPT | CKF_DECRYPT},
    {CKM_AES_CBC_PAD, 16, 32, CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP},
    {CKM_AES_CTR, 16, 32, CKF_ENCRYPT | CKF_DECRYPT},
    {CKM_AES_GCM, 16, 32, CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP},
    {CKM_AES_KEY_WRAP, 16, 32, CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP},
    {CKM_AES_KEY_WRAP_PAD, 16, 32, CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP},
    {CKM_AES_KEY_WRAP_KWP, 16, 32, CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP},
    {CKM_GENERIC_SECRET_KEY_GEN, 1, 512, CKF_GENERATE},
    {CKM_SHA256_HMAC, 1, 4096, CKF_SIGN | CKF_VERIFY},
    {CKM_SHA384_HMAC, 1, 4096, CKF_SIGN | CKF_VERIFY},
    {CKM_SHA512_HMAC, 1, 4096, CKF_SIGN | CKF_VERIFY},
    {CKM_SHA_1, 0, 0, CKF_DIGEST},
    {CKM_SHA256, 0, 0, CKF_DIGEST},
    {CKM_SHA384, 0, 0, CKF_DIGEST},
    {CKM_SHA512, 0, 0, CKF_DIGEST},
};

START_TEST(test_table)
{
	CK_MECHANISM_INFO info;
	const ev_mech *m;
	size_t i;

	for (i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
		m = ev_mech_find(expected[i].type);
		ck_assert_msg(m != NULL, "mechanism 0x%lx missing", expected[i].type);
		ev_mech_info(m, &info);
		ck_assert_uint_eq(info.ulMinKeySize, expected[i].min);
		ck_assert_uint_eq(info.ulMaxKeySize, expected[i].max);
		ck_assert_msg((info.flags & expected[i].flags) == expected[i].flags,
			      "mechanism 0x%lx flags 0x%lx", expected[i].type, info.flags);
		ck_assert(ev_mech_can(m, expected[i].flags & -expected[i].flags));
	}
	/* Only what is offered. */
	ck_assert(!ev_mech_can(ev_mech_find(CKM_AES_ECB), CKF_WRAP));
	ck_assert(!ev_mech_can(ev_mech_find(CKM_ECDSA), CKF_ENCRYPT));
	ck_assert(!ev_mech_can(ev_mech_find(CKM_SHA256_RSA_PKCS_PSS), CKF_DECRYPT));
	ck_assert_ptr_null(ev_mech_find(CKM_DES_ECB));
	ck_assert_ptr_null(ev_mech_find(CKM_MD5));
	ck_assert_ptr_null(ev_mech_find(0x7fffffffUL));
}
END_TEST

START_TEST(test_list)
{
	CK_MECHANISM_TYPE list[128];
	CK_ULONG n = 0, small, i, j;

	ck_assert_int_eq(ev_mech_list(NULL, &n), CKR_OK);
	ck_assert_uint_ge(n, sizeof(expected) / sizeof(expected[0]));
	ck_assert_uint_le(n, 128);
	small = n - 1;
	ck_assert_int_eq(ev_mech_list(list, &small), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(small, n);
	small = 128;
	ck_assert_int_eq(ev_mech_list(list, &small), CKR_OK);
	ck_assert_uint_eq(small, n);
	for (i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
		for (j = 0; j < n; j++)
			if (list[j] == expected[i].type)
				break;
		ck_assert_uint_lt(j, n);
	}
	for (j = 0; j < n; j++)
		ck_assert_ptr_nonnull(ev_mech_find(list[j]));
	ck_assert_int_eq(ev_mech_list(list, NULL), CKR_ARGUMENTS_BAD);
}
END_TEST

START_TEST(test_key_ok)
{
	static const CK_BYTE k16[16] = {1};
	ev_key *aes = secret_key(CKK_AES, k16, 16);
	ev_key *h = secret_key(CKK_SHA256_HMAC, k16, 16);
	ev_key small = {.cls = CKO_PRIVATE_KEY, .type = CKK_RSA};
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	ev_op *op = NULL;

	ck_assert_int_eq(ev_mech_key_ok(ev_mech_find(CKM_ECDSA), p256), CKR_OK);
	ck_assert_int_eq(ev_mech_key_ok(ev_mech_find(CKM_ECDSA), ed), CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_int_eq(ev_mech_key_ok(ev_mech_find(CKM_AES_GCM), h), CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_int_eq(ev_mech_key_ok(ev_mech_find(CKM_SHA256_HMAC), h), CKR_OK);
	ck_assert_int_eq(ev_mech_key_ok(ev_mech_find(CKM_SHA384_HMAC), h),
			 CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_int_eq(ev_mech_key_ok(ev_mech_find(CKM_SHA384_HMAC), aes),
			 CKR_KEY_TYPE_INCONSISTENT);
	small.pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	ck_assert_ptr_nonnull(small.pkey);
	ck_assert_int_eq(ev_mech_key_ok(ev_mech_find(CKM_SHA256_RSA_PKCS), &small),
			 CKR_KEY_SIZE_RANGE);
	m.mechanism = CKM_SHA256_RSA_PKCS;
	ck_assert_int_eq(ev_op_new(EV_OP_SIGN, &m, &small, &op), CKR_KEY_SIZE_RANGE);
	EVP_PKEY_free(small.pkey);

	/* Operations check the same, and the key's class. */
	m.mechanism = CKM_ECDSA;
	ck_assert_int_eq(ev_op_new(EV_OP_SIGN, &m, rsa, &op), CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_int_eq(ev_op_new(EV_OP_SIGN, &m, p256_pub, &op), CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_ptr_null(op);
	m.mechanism = CKM_RSA_PKCS;
	ck_assert_int_eq(ev_op_new(EV_OP_DECRYPT, &m, rsa_pub, &op), CKR_KEY_TYPE_INCONSISTENT);
	m.mechanism = CKM_SHA256;
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, aes, &op), CKR_MECHANISM_INVALID);
	m.mechanism = CKM_ECDSA;
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, p256, &op), CKR_MECHANISM_INVALID);
	m.mechanism = CKM_DES3_CBC;
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, aes, &op), CKR_MECHANISM_INVALID);
	m.mechanism = CKM_AES_KEY_GEN;
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, aes, &op), CKR_MECHANISM_INVALID);
	ck_assert_ptr_null(op);
	ev_key_free(aes);
	ev_key_free(h);
}
END_TEST

/* ECDSA */

/* Verify r || s with OpenSSL directly: DER via ECDSA_SIG, then EVP. */
static int
ossl_ecdsa_verify(EVP_PKEY *pkey, const EVP_MD *md, const CK_BYTE *in, size_t inlen,
		  const CK_BYTE *sig, size_t siglen)
{
	ECDSA_SIG *s = ECDSA_SIG_new();
	unsigned char *der = NULL;
	EVP_MD_CTX *ctx;
	EVP_PKEY_CTX *pctx;
	int derlen, ok;
	size_t n = siglen / 2;

	ECDSA_SIG_set0(s, BN_bin2bn(sig, (int)n, NULL), BN_bin2bn(sig + n, (int)n, NULL));
	derlen = i2d_ECDSA_SIG(s, &der);
	if (md != NULL) {
		ctx = EVP_MD_CTX_new();
		ok = EVP_DigestVerifyInit(ctx, NULL, md, NULL, pkey) == 1 &&
		     EVP_DigestVerify(ctx, der, (size_t)derlen, in, inlen) == 1;
		EVP_MD_CTX_free(ctx);
	} else {
		pctx = EVP_PKEY_CTX_new(pkey, NULL);
		ok = EVP_PKEY_verify_init(pctx) == 1 &&
		     EVP_PKEY_verify(pctx, der, (size_t)derlen, in, inlen) == 1;
		EVP_PKEY_CTX_free(pctx);
	}
	OPENSSL_free(der);
	ECDSA_SIG_free(s);
	return ok;
}

static void
ecdsa_case(ev_key *priv, ev_key *pub, CK_ULONG siglen)
{
	static const struct {
		CK_MECHANISM_TYPE mech;
		const char *md;
	} cases[] = {{CKM_ECDSA, NULL}, {CKM_ECDSA_SHA256, "SHA256"}, {CKM_ECDSA_SHA384, "SHA384"}};
	CK_BYTE sig[256], hash[48];
	CK_ULONG len;
	size_t i;

	ck_assert_int_eq(EVP_Digest(msg, sizeof(msg), hash, NULL, EVP_sha256(), NULL), 1);
	for (i = 0; i < 3; i++) {
		CK_MECHANISM m = {cases[i].mech, NULL, 0};
		const CK_BYTE *in = cases[i].md != NULL ? msg : hash;
		CK_ULONG inlen = cases[i].md != NULL ? sizeof(msg) : 32;
		EVP_MD *md = cases[i].md ? EVP_MD_fetch(NULL, cases[i].md, NULL) : NULL;

		len = sizeof(sig);
		ck_assert_int_eq(run(EV_OP_SIGN, &m, priv, in, inlen, sig, &len), CKR_OK);
		ck_assert_uint_eq(len, siglen);
		ck_assert(ossl_ecdsa_verify(pub->pkey, md, in, inlen, sig, len));
		ck_assert_int_eq(verify(&m, pub, in, inlen, sig, len), CKR_OK);
		ck_assert_int_eq(verify(&m, priv, in, inlen, sig, len), CKR_OK);
		ck_assert_int_eq(verify_parts(&m, pub, in, inlen, 5, sig, len), CKR_OK);
		/* Multi-part signing gives a signature OpenSSL accepts too. */
		len = sizeof(sig);
		ck_assert_int_eq(run_parts(EV_OP_SIGN, &m, priv, in, inlen, 7, sig, &len), CKR_OK);
		ck_assert_uint_eq(len, siglen);
		ck_assert(ossl_ecdsa_verify(pub->pkey, md, in, inlen, sig, len));
		/* Tampering and lengths. */
		sig[3] ^= 1;
		ck_assert_int_eq(verify(&m, pub, in, inlen, sig, len), CKR_SIGNATURE_INVALID);
		ck_assert_int_eq(verify_parts(&m, pub, in, inlen, 3, sig, len),
				 CKR_SIGNATURE_INVALID);
		sig[3] ^= 1;
		ck_assert_int_eq(verify(&m, pub, in, inlen, sig, len - 1), CKR_SIGNATURE_LEN_RANGE);
		ck_assert_int_eq(verify(&m, pub, in, inlen - 1, sig, len), CKR_SIGNATURE_INVALID);
		/* r = 0 must be refused, not crash. */
		memset(sig, 0, len / 2);
		ck_assert_int_eq(verify(&m, pub, in, inlen, sig, len), CKR_SIGNATURE_INVALID);
		EVP_MD_free(md);
	}
}

START_TEST(test_ecdsa)
{
	CK_MECHANISM m = {CKM_ECDSA_SHA256, (void *)"x", 1};
	ev_op *op = NULL;

	ecdsa_case(p256, p256_pub, 64);
	ecdsa_case(p384, p384_pub, 96);
	ck_assert_int_eq(ev_op_new(EV_OP_SIGN, &m, p256, &op), CKR_MECHANISM_PARAM_INVALID);
}
END_TEST

/* EdDSA */

START_TEST(test_eddsa)
{
	CK_EDDSA_PARAMS params = {CK_FALSE, 0, NULL};
	CK_MECHANISM m = {CKM_EDDSA, NULL, 0};
	CK_BYTE sig[64], sig2[64], big[3000];
	CK_ULONG len = sizeof(sig), len2 = sizeof(sig2);
	EVP_MD_CTX *ctx;
	ev_op *op = NULL;

	ck_assert_int_eq(run(EV_OP_SIGN, &m, ed, msg, sizeof(msg), sig, &len), CKR_OK);
	ck_assert_uint_eq(len, 64);
	ctx = EVP_MD_CTX_new();
	ck_assert_int_eq(EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, ed_pub->pkey), 1);
	ck_assert_int_eq(EVP_DigestVerify(ctx, sig, len, msg, sizeof(msg)), 1);
	EVP_MD_CTX_free(ctx);
	ck_assert_int_eq(verify(&m, ed_pub, msg, sizeof(msg), sig, len), CKR_OK);

	/* Multi-part is buffered: same (deterministic) signature. */
	m.pParameter = &params;
	m.ulParameterLen = sizeof(params);
	ck_assert_int_eq(run_parts(EV_OP_SIGN, &m, ed, msg, sizeof(msg), 4, sig2, &len2), CKR_OK);
	ck_assert_mem_eq(sig, sig2, 64);
	ck_assert_int_eq(verify_parts(&m, ed_pub, msg, sizeof(msg), 9, sig, len), CKR_OK);
	memset(big, 0x5a, sizeof(big));
	len = sizeof(sig);
	ck_assert_int_eq(run_parts(EV_OP_SIGN, &m, ed, big, sizeof(big), 1000, sig, &len), CKR_OK);
	ck_assert_int_eq(verify(&m, ed_pub, big, sizeof(big), sig, len), CKR_OK);
	/* Empty message. */
	len = sizeof(sig);
	ck_assert_int_eq(run(EV_OP_SIGN, &m, ed, NULL, 0, sig, &len), CKR_OK);
	ck_assert_int_eq(verify(&m, ed_pub, NULL, 0, sig, len), CKR_OK);

	sig[0] ^= 0x80;
	ck_assert_int_eq(verify(&m, ed_pub, NULL, 0, sig, len), CKR_SIGNATURE_INVALID);
	ck_assert_int_eq(verify(&m, ed_pub, NULL, 0, sig, 63), CKR_SIGNATURE_LEN_RANGE);

	/* Ed25519ph and Ed25519ctx are not offered; sizes must match. */
	params.phFlag = CK_TRUE;
	ck_assert_int_eq(ev_op_new(EV_OP_SIGN, &m, ed, &op), CKR_MECHANISM_PARAM_INVALID);
	params.phFlag = CK_FALSE;
	params.ulContextDataLen = 3;
	params.pContextData = (CK_BYTE_PTR) "abc";
	ck_assert_int_eq(ev_op_new(EV_OP_SIGN, &m, ed, &op), CKR_MECHANISM_PARAM_INVALID);
	m.ulParameterLen = 1;
	ck_assert_int_eq(ev_op_new(EV_OP_SIGN, &m, ed, &op), CKR_MECHANISM_PARAM_INVALID);
	m.pParameter = NULL;
	m.ulParameterLen = sizeof(params);
	ck_assert_int_eq(ev_op_new(EV_OP_SIGN, &m, ed, &op), CKR_MECHANISM_PARAM_INVALID);
	ck_assert_ptr_null(op);
}
END_TEST

/* RSA */

static EVP_PKEY_CTX *
ossl_verify_ctx(EVP_MD_CTX *ctx, const char *md, int pss, const char *mgf, int slen)
{
	EVP_PKEY_CTX *pctx = NULL;
	EVP_MD *d = EVP_MD_fetch(NULL, md, NULL);

	ck_assert_int_eq(EVP_DigestVerifyInit(ctx, &pctx, d, NULL, rsa_pub->pkey), 1);
	if (pss) {
		EVP_MD *m = EVP_MD_fetch(NULL, mgf, NULL);

		ck_assert_int_eq(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
		ck_assert_int_eq(EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, m), 1);
		ck_assert_int_eq(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, slen), 1);
		EVP_MD_free(m);
	}
	EVP_MD_free(d);
	return pctx;
}

START_TEST(test_rsa_pkcs_sign)
{
	static const struct {
		CK_MECHANISM_TYPE mech;
		const char *md;
	} cases[] = {
	    {CKM_SHA1_RSA_PKCS, "SHA1"},
	    {CKM_SHA256_RSA_PKCS, "SHA256"},
	    {CKM_SHA384_RSA_PKCS, "SHA384"},
	    {CKM_SHA512_RSA_PKCS, "SHA512"},
	};
	/* DigestInfo prefix of SHA-256 (RFC 8017 9.2 note 1). */
	static const CK_BYTE di256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
					0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
	CK_BYTE sig[512], di[sizeof(di256) + 32], big[256];
	CK_ULONG len;
	EVP_MD_CTX *ctx;
	size_t i;

	for (i = 0; i < 4; i++) {
		CK_MECHANISM m = {cases[i].mech, NULL, 0};

		len = sizeof(sig);
		ck_assert_int_eq(run(EV_OP_SIGN, &m, rsa, msg, sizeof(msg), sig, &len), CKR_OK);
		ck_assert_uint_eq(len, 256);
		ctx = EVP_MD_CTX_new();
		ossl_verify_ctx(ctx, cases[i].md, 0, NULL, 0);
		ck_assert_int_eq(EVP_DigestVerify(ctx, sig, len, msg, sizeof(msg)), 1);
		EVP_MD_CTX_free(ctx);
		ck_assert_int_eq(verify(&m, rsa_pub, msg, sizeof(msg), sig, len), CKR_OK);
		ck_assert_int_eq(verify_parts(&m, rsa_pub, msg, sizeof(msg), 11, sig, len), CKR_OK);
		len = sizeof(sig);
		ck_assert_int_eq(run_parts(EV_OP_SIGN, &m, rsa, msg, sizeof(msg), 10, sig, &len),
				 CKR_OK);
		ck_assert_int_eq(verify(&m, rsa_pub, msg, sizeof(msg), sig, len), CKR_OK);
		sig[100] ^= 1;
		ck_assert_int_eq(verify(&m, rsa_pub, msg, sizeof(msg), sig, len),
				 CKR_SIGNATURE_INVALID);
		ck_assert_int_eq(verify(&m, rsa_pub, msg, sizeof(msg), sig, len - 1),
				 CKR_SIGNATURE_LEN_RANGE);
	}

	/* Raw CKM_RSA_PKCS over a DigestInfo verifies as SHA256withRSA. */
	{
		CK_MECHANISM m = {CKM_RSA_PKCS, NULL, 0};

		memcpy(di, di256, sizeof(di256));
		EVP_Digest(msg, sizeof(msg), di + sizeof(di256), NULL, EVP_sha256(), NULL);
		len = sizeof(sig);
		ck_assert_int_eq(run(EV_OP_SIGN, &m, rsa, di, sizeof(di), sig, &len), CKR_OK);
		ctx = EVP_MD_CTX_new();
		ossl_verify_ctx(ctx, "SHA256", 0, NULL, 0);
		ck_assert_int_eq(EVP_DigestVerify(ctx, sig, len, msg, sizeof(msg)), 1);
		EVP_MD_CTX_free(ctx);
		ck_assert_int_eq(verify(&m, rsa_pub, di, sizeof(di), sig, len), CKR_OK);
		ck_assert_int_eq(verify_parts(&m, rsa_pub, di, sizeof(di), 6, sig, len), CKR_OK);
		ck_assert_int_eq(verify(&m, rsa_pub, di, sizeof(di) - 1, sig, len),
				 CKR_SIGNATURE_INVALID);
		/* Input up to k - 11. */
		memset(big, 7, sizeof(big));
		len = sizeof(sig);
		ck_assert_int_eq(run(EV_OP_SIGN, &m, rsa, big, 245, sig, &len), CKR_OK);
		len = sizeof(sig);
		ck_assert_int_eq(run(EV_OP_SIGN, &m, rsa, big, 246, sig, &len), CKR_DATA_LEN_RANGE);
		len = sizeof(sig);
		ck_assert_int_eq(run_parts(EV_OP_SIGN, &m, rsa, big, 246, 100, sig, &len),
				 CKR_DATA_LEN_RANGE);
	}
}
END_TEST

START_TEST(test_rsa_pss)
{
	static const struct {
		CK_MECHANISM_TYPE mech, hash;
		CK_RSA_PKCS_MGF_TYPE mgf;
		const char *md, *mgfmd;
		CK_ULONG slen;
	} cases[] = {
	    {CKM_SHA256_RSA_PKCS_PSS, CKM_SHA256, CKG_MGF1_SHA256, "SHA256", "SHA256", 32},
	    {CKM_SHA384_RSA_PKCS_PSS, CKM_SHA384, CKG_MGF1_SHA384, "SHA384", "SHA384", 48},
	    {CKM_SHA512_RSA_PKCS_PSS, CKM_SHA512, CKG_MGF1_SHA512, "SHA512", "SHA512", 64},
	    {CKM_SHA256_RSA_PKCS_PSS, CKM_SHA256, CKG_MGF1_SHA1, "SHA256", "SHA1", 0},
	    {CKM_RSA_PKCS_PSS, CKM_SHA256, CKG_MGF1_SHA256, "SHA256", "SHA256", 32},
	    {CKM_RSA_PKCS_PSS, CKM_SHA384, CKG_MGF1_SHA384, "SHA384", "SHA384", 20},
	    {CKM_RSA_PKCS_PSS, CKM_SHA_1, CKG_MGF1_SHA1, "SHA1", "SHA1", 20},
	};
	CK_BYTE sig[512], hash[64];
	unsigned int hlen;
	CK_ULONG len;
	EVP_MD_CTX *ctx;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CK_RSA_PKCS_PSS_PARAMS p = {cases[i].hash, cases[i].mgf, cases[i].slen};
		CK_MECHANISM m = {cases[i].mech, &p, sizeof(p)};
		int raw = cases[i].mech == CKM_RSA_PKCS_PSS;
		EVP_MD *md = EVP_MD_fetch(NULL, cases[i].md, NULL);
		const CK_BYTE *in = msg;
		CK_ULONG inlen = sizeof(msg);

		EVP_Digest(msg, sizeof(msg), hash, &hlen, md, NULL);
		if (raw) {
			in = hash;
			inlen = hlen;
		}
		len = sizeof(sig);
		ck_assert_int_eq(run(EV_OP_SIGN, &m, rsa, in, inlen, sig, &len), CKR_OK);
		ck_assert_uint_eq(len, 256);
		ctx = EVP_MD_CTX_new();
		ossl_verify_ctx(ctx, cases[i].md, 1, cases[i].mgfmd, (int)cases[i].slen);
		ck_assert_int_eq(EVP_DigestVerify(ctx, sig, len, msg, sizeof(msg)), 1);
		EVP_MD_CTX_free(ctx);
		ck_assert_int_eq(verify(&m, rsa_pub, in, inlen, sig, len), CKR_OK);
		if (!raw) {
			ck_assert_int_eq(verify_parts(&m, rsa_pub, in, inlen, 13, sig, len),
					 CKR_OK);
			len = sizeof(sig);
			ck_assert_int_eq(run_parts(EV_OP_SIGN, &m, rsa, in, inlen, 17, sig, &len),
					 CKR_OK);
			ck_assert_int_eq(verify(&m, rsa_pub, in, inlen, sig, len), CKR_OK);
		} else {
			/* The input must be a hash of hashAlg's size. */
			len = sizeof(sig);
			ck_assert_int_eq(run(EV_OP_SIGN, &m, rsa, in, inlen - 1, sig, &len),
					 CKR_DATA_LEN_RANGE);
			ck_assert_int_eq(verify(&m, rsa_pub, in, inlen + 1, sig, 256),
					 CKR_DATA_LEN_RANGE);
		}
		sig[0] ^= 1;
		ck_assert_int_eq(verify(&m, rsa_pub, in, inlen, sig, 256), CKR_SIGNATURE_INVALID);
		EVP_MD_free(md);
	}
}
END_TEST

START_TEST(test_rsa_param_errors)
{
	CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};
	CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0};
	CK_MECHANISM m = {CKM_SHA256_RSA_PKCS_PSS, NULL, 0};
	ev_op *op = NULL;

	ck_assert_int_eq(ev_op_new(EV_OP_SIGN, &m, rsa, &op), CKR_MECHANISM_PARAM_INVALID);
	m.pParameter = &pss;
	m.ulParameterLen = sizeof(pss) - 1;
	ck_assert_int_eq(ev_op_new(EV_OP_SIGN, &m, rsa, &op), CKR_MECHANISM_PARAM_INVALID);
	m.ulParameterLen = sizeof(pss);
	pss.hashAlg = CKM_SHA384; /* not the mechanism's hash */
	ck_assert_int_eq(ev_op_new(EV_OP_SIGN, &m, rsa, &op), CKR_MECHANISM_PARAM_INVALID);
	pss.hashAlg = CKM_SHA256;
	pss.mgf = 0x77;
	ck_assert_int_eq(ev_op_new(EV_OP_VERIFY, &m, rsa_pub, &op), CKR_MECHANISM_PARAM_INVALID);
	pss.mgf = CKG_MGF1_SHA256;
	pss.sLen = 256 - 32 - 1; /* emLen < hLen + sLen + 2 */
	ck_assert_int_eq(ev_op_new(EV_OP_SIGN, &m, rsa, &op), CKR_MECHANISM_PARAM_INVALID);
	pss.sLen = 256 - 32 - 2;
	ck_assert_int_eq(ev_op_new(EV_OP_SIGN, &m, rsa, &op), CKR_OK);
	ev_op_free(op);
	m.mechanism = CKM_RSA_PKCS_PSS;
	pss.hashAlg = CKM_MD5;
	pss.sLen = 0;
	ck_assert_int_eq(ev_op_new(EV_OP_SIGN, &m, rsa, &op), CKR_MECHANISM_PARAM_INVALID);

	m.mechanism = CKM_RSA_PKCS_OAEP;
	m.pParameter = NULL;
	m.ulParameterLen = 0;
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, rsa_pub, &op), CKR_MECHANISM_PARAM_INVALID);
	m.pParameter = &oaep;
	m.ulParameterLen = sizeof(oaep);
	oaep.mgf = CKG_MGF1_SHA1; /* a different MGF hash is refused */
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, rsa_pub, &op), CKR_MECHANISM_PARAM_INVALID);
	oaep.mgf = CKG_MGF1_SHA256;
	oaep.source = 2;
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, rsa_pub, &op), CKR_MECHANISM_PARAM_INVALID);
	oaep.source = CKZ_DATA_SPECIFIED;
	oaep.ulSourceDataLen = 4;
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, rsa_pub, &op), CKR_MECHANISM_PARAM_INVALID);
	oaep.ulSourceDataLen = 0;
	oaep.hashAlg = CKM_SHA224;
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, rsa_pub, &op), CKR_MECHANISM_PARAM_INVALID);
	m.mechanism = CKM_SHA256_RSA_PKCS;
	ck_assert_int_eq(ev_op_new(EV_OP_SIGN, &m, rsa, &op), CKR_MECHANISM_PARAM_INVALID);
	ck_assert_ptr_null(op);
}
END_TEST

START_TEST(test_rsa_encrypt)
{
	static const CK_MECHANISM_TYPE hashes[] = {CKM_SHA_1, CKM_SHA256, CKM_SHA384, CKM_SHA512};
	static const CK_RSA_PKCS_MGF_TYPE mgfs[] = {CKG_MGF1_SHA1, CKG_MGF1_SHA256, CKG_MGF1_SHA384,
						    CKG_MGF1_SHA512};
	static const char *names[] = {"SHA1", "SHA256", "SHA384", "SHA512"};
	static const size_t hlens[] = {20, 32, 48, 64};
	CK_BYTE ct[256], pt[256], big[256];
	CK_ULONG ctlen, ptlen;
	EVP_PKEY_CTX *pctx;
	size_t i, n;

	memset(big, 0x42, sizeof(big));
	for (i = 0; i < 4; i++) {
		CK_RSA_PKCS_OAEP_PARAMS p = {hashes[i], mgfs[i], CKZ_DATA_SPECIFIED,
					     (CK_BYTE_PTR) "label", 5};
		CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &p, sizeof(p)};
		EVP_MD *md = EVP_MD_fetch(NULL, names[i], NULL);

		ctlen = sizeof(ct);
		ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, rsa_pub, msg, sizeof(msg), ct, &ctlen),
				 CKR_OK);
		ck_assert_uint_eq(ctlen, 256);
		/* OpenSSL decrypts it with the same parameters. */
		pctx = EVP_PKEY_CTX_new(rsa->pkey, NULL);
		ck_assert_int_eq(EVP_PKEY_decrypt_init(pctx), 1);
		EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING);
		EVP_PKEY_CTX_set_rsa_oaep_md(pctx, md);
		EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md);
		EVP_PKEY_CTX_set0_rsa_oaep_label(pctx, OPENSSL_memdup("label", 5), 5);
		n = sizeof(pt);
		ck_assert_int_eq(EVP_PKEY_decrypt(pctx, pt, &n, ct, ctlen), 1);
		ck_assert_uint_eq(n, sizeof(msg));
		ck_assert_mem_eq(pt, msg, n);
		EVP_PKEY_CTX_free(pctx);
		/* And we do, in parts too. */
		ptlen = sizeof(pt);
		ck_assert_int_eq(run(EV_OP_DECRYPT, &m, rsa, ct, ctlen, pt, &ptlen), CKR_OK);
		ck_assert_uint_eq(ptlen, sizeof(msg));
		ck_assert_mem_eq(pt, msg, ptlen);
		ptlen = sizeof(pt);
		ck_assert_int_eq(run_parts(EV_OP_DECRYPT, &m, rsa, ct, ctlen, 100, pt, &ptlen),
				 CKR_OK);
		ck_assert_mem_eq(pt, msg, ptlen);
		/* A different label fails. */
		p.pSourceData = (CK_BYTE_PTR) "lab3l";
		ptlen = sizeof(pt);
		ck_assert_int_eq(run(EV_OP_DECRYPT, &m, rsa, ct, ctlen, pt, &ptlen),
				 CKR_ENCRYPTED_DATA_INVALID);
		ptlen = sizeof(pt);
		ck_assert_int_eq(run(EV_OP_DECRYPT, &m, rsa, ct, ctlen - 1, pt, &ptlen),
				 CKR_ENCRYPTED_DATA_LEN_RANGE);
		/* Input limit k - 2 hLen - 2. */
		ctlen = sizeof(ct);
		ck_assert_int_eq(
		    run(EV_OP_ENCRYPT, &m, rsa_pub, big, 256 - 2 * hlens[i] - 2, ct, &ctlen),
		    CKR_OK);
		ctlen = sizeof(ct);
		ck_assert_int_eq(
		    run(EV_OP_ENCRYPT, &m, rsa_pub, big, 256 - 2 * hlens[i] - 1, ct, &ctlen),
		    CKR_DATA_LEN_RANGE);
		EVP_MD_free(md);
	}

	/* PKCS#1 v1.5 encryption, and the decrypt buffer conventions. */
	{
		CK_MECHANISM m = {CKM_RSA_PKCS, NULL, 0};
		ev_op *op = NULL;

		ctlen = sizeof(ct);
		ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, rsa_pub, msg, sizeof(msg), ct, &ctlen),
				 CKR_OK);
		ctlen = sizeof(ct);
		ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, rsa_pub, big, 246, ct, &ctlen),
				 CKR_DATA_LEN_RANGE);
		ctlen = sizeof(ct);
		ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, rsa_pub, msg, sizeof(msg), ct, &ctlen),
				 CKR_OK);

		ck_assert_int_eq(ev_op_new(EV_OP_DECRYPT, &m, rsa, &op), CKR_OK);
		ptlen = 0;
		ck_assert_int_eq(ev_op_oneshot(op, ct, ctlen, NULL, &ptlen), CKR_OK);
		ck_assert_uint_eq(ptlen, 256); /* an upper bound */
		ck_assert(ev_op_active(op));
		ptlen = 10;
		ck_assert_int_eq(ev_op_oneshot(op, ct, ctlen, pt, &ptlen), CKR_BUFFER_TOO_SMALL);
		ck_assert_uint_eq(ptlen, sizeof(msg)); /* now exact */
		ck_assert(ev_op_active(op));
		ck_assert_int_eq(ev_op_oneshot(op, ct, ctlen, pt, &ptlen), CKR_OK);
		ck_assert_uint_eq(ptlen, sizeof(msg));
		ck_assert_mem_eq(pt, msg, ptlen);
		ck_assert(!ev_op_active(op));
		ev_op_free(op);

		/* A buffer between the exact size and the bound succeeds at once. */
		ck_assert_int_eq(ev_op_new(EV_OP_DECRYPT, &m, rsa, &op), CKR_OK);
		ptlen = sizeof(msg) + 1;
		ck_assert_int_eq(ev_op_oneshot(op, ct, ctlen, pt, &ptlen), CKR_OK);
		ck_assert_uint_eq(ptlen, sizeof(msg));
		ck_assert_mem_eq(pt, msg, ptlen);
		ev_op_free(op);

		/*
		 * A block with the wrong padding type, made with raw RSA: random
		 * tampering would pass the v1.5 check once in ~65536 runs.
		 */
		memset(big, 0xff, sizeof(big));
		big[0] = 0x00;
		big[1] = 0x01;
		pctx = EVP_PKEY_CTX_new(rsa_pub->pkey, NULL);
		ck_assert_int_eq(EVP_PKEY_encrypt_init(pctx), 1);
		ck_assert_int_eq(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_NO_PADDING), 1);
		n = sizeof(ct);
		ck_assert_int_eq(EVP_PKEY_encrypt(pctx, ct, &n, big, 256), 1);
		EVP_PKEY_CTX_free(pctx);
		ptlen = sizeof(pt);
		ck_assert_int_eq(run(EV_OP_DECRYPT, &m, rsa, ct, n, pt, &ptlen),
				 CKR_ENCRYPTED_DATA_INVALID);
	}
}
END_TEST

/* AES */

static const CK_BYTE key32[32] = {0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae,
				  0xf0, 0x85, 0x7d, 0x77, 0x81, 0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61,
				  0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4};
static const CK_BYTE iv16[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* OpenSSL directly: the reference result. */
static size_t
ossl_cipher(const char *name, const CK_BYTE *key, const CK_BYTE *iv, size_t ivlen, int pad,
	    const CK_BYTE *aad, size_t aadlen, size_t taglen, const CK_BYTE *in, size_t inlen,
	    CK_BYTE *out)
{
	EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, name, NULL);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int l1 = 0, l2 = 0, l;

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(EVP_EncryptInit_ex2(ctx, c, NULL, NULL, NULL), 1);
	if (taglen > 0)
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, (int)ivlen, NULL);
	ck_assert_int_eq(EVP_EncryptInit_ex2(ctx, NULL, key, iv, NULL), 1);
	EVP_CIPHER_CTX_set_padding(ctx, pad);
	if (aadlen > 0)
		EVP_EncryptUpdate(ctx, NULL, &l, aad, (int)aadlen);
	ck_assert_int_eq(EVP_EncryptUpdate(ctx, out, &l1, in, (int)inlen), 1);
	ck_assert_int_eq(EVP_EncryptFinal_ex(ctx, out + l1, &l2), 1);
	if (taglen > 0)
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, (int)taglen, out + l1 + l2);
	EVP_CIPHER_CTX_free(ctx);
	EVP_CIPHER_free(c);
	return (size_t)(l1 + l2) + taglen;
}

static void
aes_mode_case(CK_MECHANISM *m, const char *name, size_t keylen, int pad, const CK_BYTE *aad,
	      size_t aadlen, size_t taglen, const CK_BYTE *iv, size_t ivlen)
{
	static const size_t lens[] = {0, 16, 48, 61, 100, 257};
	static const size_t chunks[] = {1, 7, 13, 16, 31, 1000};
	ev_key *k = secret_key(CKK_AES, key32, keylen);
	CK_BYTE in[300], ref[400], out[400], back[400];
	CK_ULONG outlen, backlen;
	size_t refn, i, j;
	int block = !pad && (strstr(name, "ECB") || strstr(name, "CBC"));

	for (i = 0; i < sizeof(in); i++)
		in[i] = (CK_BYTE)(i * 7 + 3);
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t n = lens[i];

		if (block && n % 16 != 0)
			continue;
		refn = ossl_cipher(name, key32, iv, ivlen, pad, aad, aadlen, taglen, in, n, ref);
		outlen = sizeof(out);
		ck_assert_int_eq(run(EV_OP_ENCRYPT, m, k, in, n, out, &outlen), CKR_OK);
		ck_assert_uint_eq(outlen, refn);
		ck_assert_mem_eq(out, ref, refn);
		backlen = sizeof(back);
		ck_assert_int_eq(run(EV_OP_DECRYPT, m, k, out, outlen, back, &backlen), CKR_OK);
		ck_assert_uint_eq(backlen, n);
		ck_assert_mem_eq(back, in, n);
		for (j = 0; j < sizeof(chunks) / sizeof(chunks[0]); j++) {
			outlen = sizeof(out);
			ck_assert_int_eq(
			    run_parts(EV_OP_ENCRYPT, m, k, in, n, chunks[j], out, &outlen), CKR_OK);
			ck_assert_uint_eq(outlen, refn);
			ck_assert_mem_eq(out, ref, refn);
			backlen = sizeof(back);
			ck_assert_int_eq(
			    run_parts(EV_OP_DECRYPT, m, k, ref, refn, chunks[j], back, &backlen),
			    CKR_OK);
			ck_assert_uint_eq(backlen, n);
			ck_assert_mem_eq(back, in, n);
		}
	}
	ev_key_free(k);
}

START_TEST(test_aes_modes)
{
	static const char *ecb[] = {"AES-128-ECB", "AES-192-ECB", "AES-256-ECB"};
	static const char *cbc[] = {"AES-128-CBC", "AES-192-CBC", "AES-256-CBC"};
	static const char *ctr[] = {"AES-128-CTR", "AES-192-CTR", "AES-256-CTR"};
	static const char *gcm[] = {"AES-128-GCM", "AES-192-GCM", "AES-256-GCM"};
	static const CK_BYTE aad[] = "header bytes";
	CK_AES_CTR_PARAMS ctrp = {128, {0}};
	CK_GCM_PARAMS gp = {(CK_BYTE_PTR)iv16, 12, 96, (CK_BYTE_PTR)aad, sizeof(aad), 128};
	CK_MECHANISM m;
	size_t i, keylen;

	memcpy(ctrp.cb, iv16, 16);
	for (i = 0; i < 3; i++) {
		keylen = 16 + 8 * i;
		m = (CK_MECHANISM){CKM_AES_ECB, NULL, 0};
		aes_mode_case(&m, ecb[i], keylen, 0, NULL, 0, 0, NULL, 0);
		m = (CK_MECHANISM){CKM_AES_CBC, (void *)iv16, 16};
		aes_mode_case(&m, cbc[i], keylen, 0, NULL, 0, 0, iv16, 16);
		m = (CK_MECHANISM){CKM_AES_CBC_PAD, (void *)iv16, 16};
		aes_mode_case(&m, cbc[i], keylen, 1, NULL, 0, 0, iv16, 16);
		m = (CK_MECHANISM){CKM_AES_CTR, &ctrp, sizeof(ctrp)};
		aes_mode_case(&m, ctr[i], keylen, 0, NULL, 0, 0, iv16, 16);
		m = (CK_MECHANISM){CKM_AES_GCM, &gp, sizeof(gp)};
		aes_mode_case(&m, gcm[i], keylen, 0, aad, sizeof(aad), 16, iv16, 12);
	}
	/* GCM: a long IV, a short tag, no AAD. */
	gp.ulIvLen = 16;
	gp.ulTagBits = 96;
	gp.pAAD = NULL;
	gp.ulAADLen = 0;
	m = (CK_MECHANISM){CKM_AES_GCM, &gp, sizeof(gp)};
	aes_mode_case(&m, gcm[2], 32, 0, NULL, 0, 12, iv16, 16);
}
END_TEST

START_TEST(test_aes_errors)
{
	ev_key *k = secret_key(CKK_AES, key32, 16);
	CK_GCM_PARAMS gp = {(CK_BYTE_PTR)iv16, 12, 96, NULL, 0, 128};
	CK_AES_CTR_PARAMS ctrp = {0, {0}};
	CK_MECHANISM m = {CKM_AES_ECB, NULL, 0};
	CK_BYTE in[64] = {0}, out[96];
	CK_ULONG outlen = sizeof(out);
	ev_op *op = NULL;
	CK_ULONG bits[] = {0, 8, 95, 97, 136, 64};
	size_t i;

	/* Whole blocks only, without padding. */
	ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, k, in, 15, out, &outlen), CKR_DATA_LEN_RANGE);
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_DECRYPT, &m, k, in, 17, out, &outlen),
			 CKR_ENCRYPTED_DATA_LEN_RANGE);
	outlen = sizeof(out);
	ck_assert_int_eq(run_parts(EV_OP_ENCRYPT, &m, k, in, 20, 7, out, &outlen),
			 CKR_DATA_LEN_RANGE);
	outlen = sizeof(out);
	ck_assert_int_eq(run_parts(EV_OP_DECRYPT, &m, k, in, 20, 7, out, &outlen),
			 CKR_ENCRYPTED_DATA_LEN_RANGE);
	m = (CK_MECHANISM){CKM_AES_CBC, (void *)iv16, 16};
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, k, in, 33, out, &outlen), CKR_DATA_LEN_RANGE);

	/* CBC_PAD: bad lengths and bad padding. */
	m = (CK_MECHANISM){CKM_AES_CBC_PAD, (void *)iv16, 16};
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_DECRYPT, &m, k, in, 0, out, &outlen),
			 CKR_ENCRYPTED_DATA_LEN_RANGE);
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_DECRYPT, &m, k, in, 31, out, &outlen),
			 CKR_ENCRYPTED_DATA_LEN_RANGE);
	{
		/* A last block that decrypts to 0x00 padding. */
		CK_BYTE ct[32];
		size_t n = ossl_cipher("AES-128-CBC", key32, iv16, 16, 0, NULL, 0, 0, in, 32, ct);

		outlen = sizeof(out);
		ck_assert_int_eq(run(EV_OP_DECRYPT, &m, k, ct, n, out, &outlen),
				 CKR_ENCRYPTED_DATA_INVALID);
		outlen = sizeof(out);
		ck_assert_int_eq(run_parts(EV_OP_DECRYPT, &m, k, ct, n, 5, out, &outlen),
				 CKR_ENCRYPTED_DATA_INVALID);
	}

	/* Parameters. */
	m.ulParameterLen = 15;
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, k, &op), CKR_MECHANISM_PARAM_INVALID);
	m.pParameter = NULL;
	m.ulParameterLen = 16;
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, k, &op), CKR_MECHANISM_PARAM_INVALID);
	m = (CK_MECHANISM){CKM_AES_ECB, (void *)iv16, 16};
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, k, &op), CKR_MECHANISM_PARAM_INVALID);
	m = (CK_MECHANISM){CKM_AES_CTR, &ctrp, sizeof(ctrp)};
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, k, &op), CKR_MECHANISM_PARAM_INVALID);
	ctrp.ulCounterBits = 129;
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, k, &op), CKR_MECHANISM_PARAM_INVALID);
	m = (CK_MECHANISM){CKM_AES_GCM, &gp, sizeof(gp)};
	for (i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
		gp.ulTagBits = bits[i];
		ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, k, &op), CKR_MECHANISM_PARAM_INVALID);
	}
	gp.ulTagBits = 104;
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, k, &op), CKR_OK);
	ev_op_free(op);
	gp.ulIvLen = 0;
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, k, &op), CKR_MECHANISM_PARAM_INVALID);
	gp.ulIvLen = 12;
	gp.ulAADLen = 5; /* with a NULL pAAD */
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, k, &op), CKR_MECHANISM_PARAM_INVALID);
	m.pParameter = NULL;
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, k, &op), CKR_MECHANISM_PARAM_INVALID);
	m.pParameter = &gp;
	m.ulParameterLen = 3;
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, k, &op), CKR_MECHANISM_PARAM_INVALID);
	ck_assert_ptr_null(op);
	/* GCM decryption of less than a tag. */
	gp.ulAADLen = 0;
	m.ulParameterLen = sizeof(gp);
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_DECRYPT, &m, k, in, 12, out, &outlen),
			 CKR_ENCRYPTED_DATA_LEN_RANGE); /* tag of 104 bits */
	ev_key_free(k);
}
END_TEST

START_TEST(test_aes_ctr_wrap)
{
	ev_key *k = secret_key(CKK_AES, key32, 16);
	CK_AES_CTR_PARAMS p = {8, {0}};
	CK_MECHANISM m = {CKM_AES_CTR, &p, sizeof(p)};
	CK_BYTE in[64] = {0}, out[64];
	CK_ULONG outlen;

	/* Counter byte at 0xfe: two blocks left in 8 counter bits. */
	p.cb[15] = 0xfe;
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, k, in, 32, out, &outlen), CKR_OK);
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, k, in, 33, out, &outlen), CKR_DATA_LEN_RANGE);
	outlen = sizeof(out);
	ck_assert_int_eq(run_parts(EV_OP_ENCRYPT, &m, k, in, 40, 10, out, &outlen),
			 CKR_DATA_LEN_RANGE);
	/* 64 bits with the low half all ones: one block left before a carry. */
	p.ulCounterBits = 64;
	memset(p.cb + 8, 0xff, 8);
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, k, in, 16, out, &outlen), CKR_OK);
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, k, in, 17, out, &outlen), CKR_DATA_LEN_RANGE);
	/* 65 bits: bit 64 clear, so plenty of room. */
	p.ulCounterBits = 65;
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, k, in, 64, out, &outlen), CKR_OK);
	p.cb[7] = 0x01;
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, k, in, 17, out, &outlen), CKR_DATA_LEN_RANGE);
	ev_key_free(k);
}
END_TEST

START_TEST(test_gcm_tamper)
{
	ev_key *k = secret_key(CKK_AES, key32, 32);
	CK_GCM_PARAMS gp = {(CK_BYTE_PTR)iv16, 12, 96, (CK_BYTE_PTR) "aad", 3, 128};
	CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof(gp)};
	CK_BYTE ct[200], out[200];
	CK_ULONG ctlen = sizeof(ct), outlen, n, i;
	ev_op *op = NULL;

	ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, k, msg, sizeof(msg), ct, &ctlen), CKR_OK);
	ct[ctlen - 1] ^= 1;
	memset(out, 0xee, sizeof(out));
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_DECRYPT, &m, k, ct, ctlen, out, &outlen),
			 CKR_ENCRYPTED_DATA_INVALID);
	ck_assert(memmem(out, sizeof(out), msg, 8) == NULL);

	/* Multi-part: updates release nothing; the final refuses. */
	memset(out, 0xee, sizeof(out));
	ck_assert_int_eq(ev_op_new(EV_OP_DECRYPT, &m, k, &op), CKR_OK);
	for (i = 0; i < ctlen; i += 10) {
		n = sizeof(out);
		ck_assert_int_eq(ev_op_update(op, ct + i, ctlen - i < 10 ? ctlen - i : 10, out, &n),
				 CKR_OK);
		ck_assert_uint_eq(n, 0);
	}
	n = 0;
	ck_assert_int_eq(ev_op_final(op, NULL, &n), CKR_OK);
	ck_assert_uint_eq(n, sizeof(msg));
	n = sizeof(out);
	ck_assert_int_eq(ev_op_final(op, out, &n), CKR_ENCRYPTED_DATA_INVALID);
	ck_assert(!ev_op_active(op));
	ck_assert(memmem(out, sizeof(out), msg, 8) == NULL);
	ev_op_free(op);

	/* Changed AAD fails as well; the original verifies. */
	ct[ctlen - 1] ^= 1;
	gp.pAAD = (CK_BYTE_PTR) "aae";
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_DECRYPT, &m, k, ct, ctlen, out, &outlen),
			 CKR_ENCRYPTED_DATA_INVALID);
	gp.pAAD = (CK_BYTE_PTR) "aad";
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_DECRYPT, &m, k, ct, ctlen, out, &outlen), CKR_OK);
	ck_assert_mem_eq(out, msg, sizeof(msg));
	ev_key_free(k);
}
END_TEST

/* Key wrap */

START_TEST(test_kw_vectors)
{
	/* RFC 3394 4.1 and 4.6. */
	CK_BYTE kek[32], data[32], want[40], out[48], back[48];
	size_t keklen, datalen, wantlen;
	CK_ULONG outlen, backlen;
	CK_MECHANISM m = {CKM_AES_KEY_WRAP, NULL, 0};
	ev_key *k;

	hex("000102030405060708090A0B0C0D0E0F", kek, &keklen);
	hex("00112233445566778899AABBCCDDEEFF", data, &datalen);
	hex("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5", want, &wantlen);
	k = secret_key(CKK_AES, kek, keklen);
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, k, data, datalen, out, &outlen), CKR_OK);
	ck_assert_uint_eq(outlen, wantlen);
	ck_assert_mem_eq(out, want, wantlen);
	backlen = sizeof(back);
	ck_assert_int_eq(run(EV_OP_DECRYPT, &m, k, out, outlen, back, &backlen), CKR_OK);
	ck_assert_mem_eq(back, data, datalen);
	out[5] ^= 1;
	backlen = sizeof(back);
	ck_assert_int_eq(run(EV_OP_DECRYPT, &m, k, out, outlen, back, &backlen),
			 CKR_ENCRYPTED_DATA_INVALID);
	backlen = sizeof(back);
	ck_assert_int_eq(run(EV_OP_DECRYPT, &m, k, out, outlen - 1, back, &backlen),
			 CKR_ENCRYPTED_DATA_LEN_RANGE);
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, k, data, 12, out, &outlen), CKR_DATA_LEN_RANGE);
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, k, data, 8, out, &outlen), CKR_DATA_LEN_RANGE);
	/* Driven in parts, it is buffered to the end. */
	outlen = sizeof(out);
	ck_assert_int_eq(run_parts(EV_OP_ENCRYPT, &m, k, data, datalen, 5, out, &outlen), CKR_OK);
	ck_assert_mem_eq(out, want, wantlen);
	ev_key_free(k);

	hex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", kek, &keklen);
	hex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F", data, &datalen);
	hex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21",
	    want, &wantlen);
	k = secret_key(CKK_AES, kek, keklen);
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, k, data, datalen, out, &outlen), CKR_OK);
	ck_assert_uint_eq(outlen, wantlen);
	ck_assert_mem_eq(out, want, wantlen);
	ev_key_free(k);
}
END_TEST

START_TEST(test_kwp_vectors)
{
	/* RFC 5649 section 6. */
	CK_BYTE kek[24], data[24], want[40], out[48], back[48];
	size_t keklen, datalen, wantlen;
	CK_ULONG outlen, backlen;
	CK_MECHANISM m = {CKM_AES_KEY_WRAP_KWP, NULL, 0};
	ev_key *k;

	hex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8", kek, &keklen);
	k = secret_key(CKK_AES, kek, keklen);
	hex("c37b7e6492584340bed12207808941155068f738", data, &datalen);
	hex("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a", want, &wantlen);
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, k, data, datalen, out, &outlen), CKR_OK);
	ck_assert_uint_eq(outlen, wantlen);
	ck_assert_mem_eq(out, want, wantlen);
	backlen = sizeof(back);
	ck_assert_int_eq(run(EV_OP_DECRYPT, &m, k, out, outlen, back, &backlen), CKR_OK);
	ck_assert_uint_eq(backlen, datalen);
	ck_assert_mem_eq(back, data, datalen);

	hex("466f7250617369", data, &datalen);
	hex("afbeb0f07dfbf5419200f2ccb50bb24f", want, &wantlen);
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, k, data, datalen, out, &outlen), CKR_OK);
	ck_assert_uint_eq(outlen, wantlen);
	ck_assert_mem_eq(out, want, wantlen);
	backlen = sizeof(back);
	ck_assert_int_eq(run(EV_OP_DECRYPT, &m, k, out, outlen, back, &backlen), CKR_OK);
	ck_assert_uint_eq(backlen, 7);
	ck_assert_mem_eq(back, data, 7);
	out[0] ^= 1;
	backlen = sizeof(back);
	ck_assert_int_eq(run(EV_OP_DECRYPT, &m, k, out, outlen, back, &backlen),
			 CKR_ENCRYPTED_DATA_INVALID);
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, k, data, 0, out, &outlen), CKR_DATA_LEN_RANGE);
	ev_key_free(k);
}
END_TEST

START_TEST(test_kw_pad)
{
	/* PKCS#7 to 8 bytes, then RFC 3394: checked against OpenSSL's KW. */
	CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
	ev_key *k = secret_key(CKK_AES, key32, 16);
	CK_BYTE padded[40], ref[48], out[48], back[48];
	CK_ULONG outlen, backlen;
	size_t n, i;

	for (n = 8; n <= 32; n += 3) {
		size_t plen = (n / 8 + 1) * 8;
		EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, "AES-128-WRAP", NULL);
		EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
		int l = 0;

		memcpy(padded, msg, n);
		for (i = n; i < plen; i++)
			padded[i] = (CK_BYTE)(plen - n);
		EVP_EncryptInit_ex2(ctx, c, key32, NULL, NULL);
		ck_assert_int_eq(EVP_EncryptUpdate(ctx, ref, &l, padded, (int)plen), 1);
		EVP_CIPHER_CTX_free(ctx);
		EVP_CIPHER_free(c);
		outlen = sizeof(out);
		ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, k, msg, n, out, &outlen), CKR_OK);
		ck_assert_uint_eq(outlen, (size_t)l);
		ck_assert_mem_eq(out, ref, outlen);
		backlen = sizeof(back);
		ck_assert_int_eq(run(EV_OP_DECRYPT, &m, k, out, outlen, back, &backlen), CKR_OK);
		ck_assert_uint_eq(backlen, n);
		ck_assert_mem_eq(back, msg, n);
	}
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_ENCRYPT, &m, k, msg, 7, out, &outlen), CKR_DATA_LEN_RANGE);
	ev_key_free(k);
}
END_TEST

/* Digests and HMAC */

START_TEST(test_digest)
{
	CK_MECHANISM m = {CKM_SHA256, NULL, 0};
	CK_BYTE out[64], want[64], keyd[64];
	size_t wantlen;
	CK_ULONG outlen = sizeof(out);
	ev_key *aes = secret_key(CKK_AES, key32, 32);
	ev_op *op = NULL;
	unsigned int n;

	hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want, &wantlen);
	ck_assert_int_eq(run(EV_OP_DIGEST, &m, NULL, (const CK_BYTE *)"abc", 3, out, &outlen),
			 CKR_OK);
	ck_assert_uint_eq(outlen, 32);
	ck_assert_mem_eq(out, want, 32);
	outlen = sizeof(out);
	ck_assert_int_eq(
	    run_parts(EV_OP_DIGEST, &m, NULL, (const CK_BYTE *)"abc", 3, 1, out, &outlen), CKR_OK);
	ck_assert_mem_eq(out, want, 32);

	m.mechanism = CKM_SHA512;
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_DIGEST, &m, NULL, msg, sizeof(msg), out, &outlen), CKR_OK);
	EVP_Digest(msg, sizeof(msg), want, &n, EVP_sha512(), NULL);
	ck_assert_uint_eq(outlen, n);
	ck_assert_mem_eq(out, want, n);
	m.mechanism = CKM_SHA384;
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_DIGEST, &m, NULL, msg, sizeof(msg), out, &outlen), CKR_OK);
	EVP_Digest(msg, sizeof(msg), want, &n, EVP_sha384(), NULL);
	ck_assert_mem_eq(out, want, 48);
	m.mechanism = CKM_SHA_1;
	outlen = sizeof(out);
	ck_assert_int_eq(run(EV_OP_DIGEST, &m, NULL, msg, sizeof(msg), out, &outlen), CKR_OK);
	ck_assert_uint_eq(outlen, 20);

	/* C_DigestKey: the key's value goes in between other data. */
	m.mechanism = CKM_SHA256;
	memcpy(keyd, "ab", 2);
	memcpy(keyd + 2, key32, 32);
	keyd[34] = 'c';
	EVP_Digest(keyd, 35, want, &n, EVP_sha256(), NULL);
	ck_assert_int_eq(ev_op_new(EV_OP_DIGEST, &m, NULL, &op), CKR_OK);
	ck_assert_int_eq(ev_op_update(op, (const CK_BYTE *)"ab", 2, NULL, NULL), CKR_OK);
	ck_assert_int_eq(ev_op_digest_key(op, aes), CKR_OK);
	ck_assert_int_eq(ev_op_update(op, (const CK_BYTE *)"c", 1, NULL, NULL), CKR_OK);
	outlen = sizeof(out);
	ck_assert_int_eq(ev_op_final(op, out, &outlen), CKR_OK);
	ck_assert_mem_eq(out, want, 32);
	ev_op_free(op);
	ck_assert_int_eq(ev_op_new(EV_OP_DIGEST, &m, NULL, &op), CKR_OK);
	ck_assert_int_eq(ev_op_digest_key(op, p256), CKR_KEY_INDIGESTIBLE);
	ck_assert(!ev_op_active(op));
	ev_op_free(op);

	m.pParameter = out;
	m.ulParameterLen = 1;
	ck_assert_int_eq(ev_op_new(EV_OP_DIGEST, &m, NULL, &op), CKR_MECHANISM_PARAM_INVALID);
	ev_key_free(aes);
}
END_TEST

START_TEST(test_hmac)
{
	static const struct {
		CK_MECHANISM_TYPE mech;
		CK_KEY_TYPE ktype;
		const char *md;
		const char *want; /* RFC 4231 test case 2 */
	} cases[] = {
	    {CKM_SHA256_HMAC, CKK_SHA256_HMAC, "SHA256",
	     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
	    {CKM_SHA384_HMAC, CKK_GENERIC_SECRET, "SHA384",
	     "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
	     "8e2240ca5e69e2c78b3239ecfab21649"},
	    {CKM_SHA512_HMAC, CKK_SHA512_HMAC, "SHA512",
	     "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
	     "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"},
	};
	static const CK_BYTE data[] = "what do ya want for nothing?";
	CK_BYTE mac[64], want[64], big[300];
	size_t wantlen, n;
	CK_ULONG len;
	size_t i;

	memset(big, 0xa5, sizeof(big));
	for (i = 0; i < 3; i++) {
		CK_MECHANISM m = {cases[i].mech, NULL, 0};
		ev_key *k = secret_key(cases[i].ktype, "Jefe", 4);
		ev_key *bk = secret_key(cases[i].ktype, big, 200);

		hex(cases[i].want, want, &wantlen);
		len = sizeof(mac);
		ck_assert_int_eq(run(EV_OP_SIGN, &m, k, data, sizeof(data) - 1, mac, &len), CKR_OK);
		ck_assert_uint_eq(len, wantlen);
		ck_assert_mem_eq(mac, want, wantlen);
		len = sizeof(mac);
		ck_assert_int_eq(run_parts(EV_OP_SIGN, &m, k, data, sizeof(data) - 1, 3, mac, &len),
				 CKR_OK);
		ck_assert_mem_eq(mac, want, wantlen);
		ck_assert_int_eq(verify(&m, k, data, sizeof(data) - 1, want, wantlen), CKR_OK);
		ck_assert_int_eq(verify_parts(&m, k, data, sizeof(data) - 1, 5, want, wantlen),
				 CKR_OK);
		want[wantlen - 1] ^= 1;
		ck_assert_int_eq(verify(&m, k, data, sizeof(data) - 1, want, wantlen),
				 CKR_SIGNATURE_INVALID);
		ck_assert_int_eq(verify_parts(&m, k, data, sizeof(data) - 1, 5, want, wantlen),
				 CKR_SIGNATURE_INVALID);
		ck_assert_int_eq(verify(&m, k, data, sizeof(data) - 1, want, wantlen - 1),
				 CKR_SIGNATURE_LEN_RANGE);
		/* A key longer than the block is hashed first: as OpenSSL does. */
		len = sizeof(mac);
		ck_assert_int_eq(run(EV_OP_SIGN, &m, bk, big, sizeof(big), mac, &len), CKR_OK);
		n = sizeof(want);
		ck_assert_ptr_nonnull(EVP_Q_mac(NULL, "HMAC", NULL, cases[i].md, NULL, big, 200,
						big, sizeof(big), want, sizeof(want), &n));
		ck_assert_uint_eq(len, n);
		ck_assert_mem_eq(mac, want, n);
		ev_key_free(k);
		ev_key_free(bk);
	}
}
END_TEST

/* Reuse: what a session does with the last ended op (ev_op_park, ev_op_reuse). */

/* One single-part call (a verification when sig is not NULL) on the spare when it can be reused. */
static CK_RV
on_spare(ev_op **spare, ev_op_kind kind, CK_MECHANISM *m, const ev_key *k, const CK_BYTE *in,
	 CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen, const CK_BYTE *sig, CK_ULONG siglen,
	 int *reused)
{
	ev_op *op = *spare;
	CK_RV rv;

	*spare = NULL;
	*reused = op != NULL && ev_op_reuse(op, kind, m, k) == CKR_OK;
	if (!*reused) {
		ev_op_free(op);
		op = NULL;
		rv = ev_op_new(kind, m, k, &op);
		if (rv != CKR_OK)
			return rv;
	}
	ck_assert(ev_op_active(op));
	if (kind == EV_OP_VERIFY)
		rv = ev_op_verify(op, in, inlen, sig, siglen);
	else
		rv = ev_op_oneshot(op, in, inlen, out, outlen);
	if (ev_op_park(op))
		*spare = op;
	else
		ev_op_free(op);
	return rv;
}

/* One call on the spare (reused from the second round on) giving exactly want. */
static void
expect_on_spare(ev_op **spare, ev_op_kind kind, CK_MECHANISM *m, const ev_key *k,
		const CK_BYTE *in, CK_ULONG inlen, const CK_BYTE *want, CK_ULONG wantlen, int round)
{
	CK_BYTE out[512];
	CK_ULONG len = sizeof(out);
	int reused;

	ck_assert_int_eq(on_spare(spare, kind, m, k, in, inlen, out, &len, NULL, 0, &reused),
			 CKR_OK);
	ck_assert_int_eq(reused, round > 0);
	ck_assert_uint_eq(len, wantlen);
	ck_assert_mem_eq(out, want, wantlen);
}

START_TEST(test_reuse)
{
	static const CK_BYTE aad[] = "header";
	ev_key *hk = secret_key(CKK_GENERIC_SECRET, "Jefe", 4), *hk2 = secret_key(CKK_GENERIC_SECRET, "Jeff", 4);
	ev_key *ak = secret_key(CKK_AES, key32, 32);
	CK_MECHANISM hm = {CKM_SHA256_HMAC, NULL, 0}, h384 = {CKM_SHA384_HMAC, NULL, 0};
	CK_BYTE iv12[12] = {9}, in[100], out[200], ref[200], back[200], want[64];
	CK_GCM_PARAMS gp = {iv12, 12, 96, (CK_BYTE *)aad, sizeof(aad) - 1, 128};
	CK_MECHANISM gm = {CKM_AES_GCM, &gp, sizeof(gp)}, cm = {CKM_AES_CBC_PAD, (void *)iv16, 16};
	CK_MECHANISM em = {CKM_ECDSA, NULL, 0}, esm = {CKM_ECDSA_SHA256, NULL, 0};
	CK_MECHANISM edm = {CKM_EDDSA, NULL, 0}, rm = {CKM_SHA256_RSA_PKCS, NULL, 0};
	CK_MECHANISM rraw = {CKM_RSA_PKCS, NULL, 0}, kw = {CKM_AES_KEY_WRAP, NULL, 0};
	CK_MECHANISM bad = {CKM_SHA256_HMAC, (void *)iv16, 16};
	CK_ULONG len;
	ev_op *spare = NULL, *op = NULL;
	size_t refn, i;
	int reused, round;

	for (i = 0; i < sizeof(in); i++)
		in[i] = (CK_BYTE)(i * 5 + 1);

	/* HMAC: the same MAC every time, also after a failed verification. */
	len = sizeof(want);
	ck_assert_int_eq(run(EV_OP_SIGN, &hm, hk, in, 32, want, &len), CKR_OK);
	for (round = 0; round < 3; round++)
		expect_on_spare(&spare, EV_OP_SIGN, &hm, hk, in, 32, want, len, round);
	/* Another key, mechanism, kind or a bad parameter: no reuse, the right answer. */
	ck_assert_int_ne(ev_op_reuse(spare, EV_OP_SIGN, &hm, hk2), CKR_OK);
	ck_assert_int_ne(ev_op_reuse(spare, EV_OP_SIGN, &h384, hk), CKR_OK);
	ck_assert_int_ne(ev_op_reuse(spare, EV_OP_VERIFY, &hm, hk), CKR_OK);
	ck_assert_int_eq(ev_op_reuse(spare, EV_OP_SIGN, &bad, hk), CKR_MECHANISM_PARAM_INVALID);
	ev_op_free(spare);
	spare = NULL;
	for (round = 0; round < 3; round++) {
		want[0] ^= round == 1; /* the middle one fails */
		ck_assert_int_eq(on_spare(&spare, EV_OP_VERIFY, &hm, hk, in, 32, NULL, NULL, want, len,
					  &reused), round == 1 ? CKR_SIGNATURE_INVALID : CKR_OK);
		want[0] ^= round == 1;
		ck_assert_int_eq(reused, round > 0);
	}
	ev_op_free(spare);
	spare = NULL;

	/* GCM: new IVs (of another length too), AAD and tag sizes, as a fresh context. */
	for (round = 0; round < 4; round++) {
		iv12[0] = (CK_BYTE)round;
		gp.ulIvLen = round == 2 ? 8 : 12;
		gp.ulAADLen = round == 1 ? 0 : sizeof(aad) - 1;
		gp.ulTagBits = round == 3 ? 96 : 128;
		refn = ossl_cipher("AES-256-GCM", key32, iv12, gp.ulIvLen, 0, aad, gp.ulAADLen,
				   gp.ulTagBits / 8, in, 61, ref);
		expect_on_spare(&spare, EV_OP_ENCRYPT, &gm, ak, in, 61, ref, refn, round);
	}
	ev_op_free(spare);
	spare = NULL;
	/* Decryption: a bad tag, then the good one on the same context. */
	for (round = 0; round < 2; round++) {
		ref[0] ^= round == 0;
		len = sizeof(back);
		ck_assert_int_eq(on_spare(&spare, EV_OP_DECRYPT, &gm, ak, ref, refn, back, &len, NULL,
					  0, &reused), round == 0 ? CKR_ENCRYPTED_DATA_INVALID : CKR_OK);
		ref[0] ^= round == 0;
	}
	ck_assert_int_eq(reused, 1);
	ck_assert_uint_eq(len, 61);
	ck_assert_mem_eq(back, in, 61);
	ev_op_free(spare);
	spare = NULL;

	/* CBC_PAD: a partial block left by an operation that failed is gone. */
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &cm, ak, &op), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(ev_op_update(op, in, 7, out, &len), CKR_OK);
	ck_assert_int_eq(ev_op_update(op, NULL, 5, out, &len), CKR_ARGUMENTS_BAD);
	ck_assert(ev_op_park(op));
	spare = op;
	refn = ossl_cipher("AES-256-CBC", key32, iv16, 16, 1, NULL, 0, 0, in, 40, ref);
	expect_on_spare(&spare, EV_OP_ENCRYPT, &cm, ak, in, 40, ref, refn, 1);
	ev_op_free(spare);
	spare = NULL;

	/* The wrap modes start afresh. */
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &kw, ak, &op), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(ev_op_oneshot(op, in, 32, out, &len), CKR_OK);
	ck_assert_int_ne(ev_op_reuse(op, EV_OP_ENCRYPT, &kw, ak), CKR_OK);
	ck_assert(!ev_op_park(op)); /* never reused: not kept */
	ev_op_free(op);
	/* And so does OAEP. */
	{
		CK_RSA_PKCS_OAEP_PARAMS p = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED,
					     NULL, 0};
		CK_MECHANISM om = {CKM_RSA_PKCS_OAEP, &p, sizeof(p)};
		CK_BYTE ct[1024];

		ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &om, rsa_pub, &op), CKR_OK);
		len = sizeof(ct);
		ck_assert_int_eq(ev_op_oneshot(op, in, 32, ct, &len), CKR_OK);
		ck_assert(!ev_op_park(op));
		ev_op_free(op);
		ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &rraw, rsa_pub, &op), CKR_OK);
		len = sizeof(ct);
		ck_assert_int_eq(ev_op_oneshot(op, in, 32, ct, &len), CKR_OK);
		ck_assert(ev_op_park(op)); /* raw PKCS #1 is */
		ev_op_free(op);
	}

	/* Signatures: each one verifies; the deterministic ones equal a fresh op's. */
	{
		struct {
			CK_MECHANISM *m;
			ev_key *k, *pub;
			CK_ULONG inlen;
			int deterministic;
		} sigs[] = {
		    {&em, p256, p256_pub, 32, 0},   {&esm, p256, p256_pub, 100, 0},
		    {&edm, ed, ed_pub, 100, 1},	    {&rm, rsa, rsa_pub, 100, 1},
		    {&rraw, rsa, rsa_pub, 51, 1},
		};
		CK_BYTE sig[512], fresh[512];
		CK_ULONG flen;
		ev_op *vspare = NULL;

		for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
			flen = sizeof(fresh);
			ck_assert_int_eq(run(EV_OP_SIGN, sigs[i].m, sigs[i].k, in, sigs[i].inlen,
					     fresh, &flen), CKR_OK);
			for (round = 0; round < 3; round++) {
				len = sizeof(sig);
				ck_assert_int_eq(on_spare(&spare, EV_OP_SIGN, sigs[i].m, sigs[i].k, in,
							  sigs[i].inlen, sig, &len, NULL, 0, &reused),
						 CKR_OK);
				ck_assert_int_eq(reused, round > 0);
				ck_assert_uint_eq(len, flen);
				if (sigs[i].deterministic)
					ck_assert_mem_eq(sig, fresh, flen);
				sig[0] ^= round == 1; /* the middle verification fails */
				ck_assert_int_eq(on_spare(&vspare, EV_OP_VERIFY, sigs[i].m,
							  sigs[i].pub, in, sigs[i].inlen, NULL, NULL,
							  sig, len, &reused),
						 round == 1 ? CKR_SIGNATURE_INVALID : CKR_OK);
				ck_assert_int_eq(reused, round > 0);
			}
			ev_op_free(spare);
			ev_op_free(vspare);
			spare = vspare = NULL;
		}
	}
	ev_key_free(hk);
	ev_key_free(hk2);
	ev_key_free(ak);
}
END_TEST

/* Conventions */

START_TEST(test_conventions)
{
	CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
	CK_BYTE sig[64], ct[100];
	CK_ULONG len, n;
	ev_op *op = NULL;
	ev_key *aes = secret_key(CKK_AES, key32, 16);

	/* Length query, too small, then the right buffer. */
	ck_assert_int_eq(ev_op_new(EV_OP_SIGN, &m, p256, &op), CKR_OK);
	ck_assert(!ev_op_in_multipart(op));
	ck_assert_int_eq(ev_op_oneshot(op, msg, sizeof(msg), NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, 64);
	ck_assert(ev_op_active(op));
	len = 63;
	ck_assert_int_eq(ev_op_oneshot(op, msg, sizeof(msg), sig, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, 64);
	ck_assert(ev_op_active(op));
	ck_assert_int_eq(ev_op_oneshot(op, msg, sizeof(msg), sig, &len), CKR_OK);
	ck_assert(!ev_op_active(op));
	ck_assert_int_eq(ev_op_oneshot(op, msg, sizeof(msg), sig, &len),
			 CKR_OPERATION_NOT_INITIALIZED);
	ck_assert_int_eq(ev_op_update(op, msg, 1, NULL, NULL), CKR_OPERATION_NOT_INITIALIZED);
	ev_op_free(op);
	ck_assert_int_eq(verify(&m, p256_pub, msg, sizeof(msg), sig, len), CKR_OK);

	/* Same for a final. */
	ck_assert_int_eq(ev_op_new(EV_OP_SIGN, &m, p256, &op), CKR_OK);
	ck_assert_int_eq(ev_op_update(op, msg, 10, NULL, NULL), CKR_OK);
	ck_assert(ev_op_in_multipart(op));
	ck_assert_int_eq(ev_op_update(op, msg + 10, sizeof(msg) - 10, NULL, NULL), CKR_OK);
	ck_assert_int_eq(ev_op_final(op, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, 64);
	len = 1;
	ck_assert_int_eq(ev_op_final(op, sig, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert(ev_op_active(op));
	ck_assert_int_eq(ev_op_final(op, sig, &len), CKR_OK);
	ck_assert(!ev_op_active(op));
	ev_op_free(op);
	ck_assert_int_eq(verify(&m, p256_pub, msg, sizeof(msg), sig, len), CKR_OK);

	/* Encrypt update: exact sizes, too small keeps the operation. */
	m = (CK_MECHANISM){CKM_AES_CBC_PAD, (void *)iv16, 16};
	ck_assert_int_eq(ev_op_new(EV_OP_ENCRYPT, &m, aes, &op), CKR_OK);
	ck_assert_int_eq(ev_op_update(op, msg, 20, NULL, &n), CKR_OK);
	ck_assert_uint_eq(n, 16);
	n = 15;
	ck_assert_int_eq(ev_op_update(op, msg, 20, ct, &n), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(n, 16);
	ck_assert(ev_op_active(op));
	ck_assert_int_eq(ev_op_update(op, msg, 20, ct, &n), CKR_OK);
	ck_assert_uint_eq(n, 16);
	n = 0;
	ck_assert_int_eq(ev_op_update(op, msg + 20, 12, NULL, &n), CKR_OK);
	ck_assert_uint_eq(n, 16);
	n = 16;
	ck_assert_int_eq(ev_op_update(op, msg + 20, 12, ct + 16, &n), CKR_OK);
	ck_assert_int_eq(ev_op_final(op, NULL, &n), CKR_OK);
	ck_assert_uint_eq(n, 16);
	n = 16;
	ck_assert_int_eq(ev_op_final(op, ct + 32, &n), CKR_OK);
	ev_op_free(op);

	/* CBC_PAD decrypt final: a bound first, then the exact size. */
	ck_assert_int_eq(ev_op_new(EV_OP_DECRYPT, &m, aes, &op), CKR_OK);
	n = sizeof(ct);
	ck_assert_int_eq(ev_op_update(op, ct, 48, sig, &n), CKR_OK);
	ck_assert_uint_eq(n, 32); /* the last block is held back */
	ck_assert_mem_eq(sig, msg, 32);
	ck_assert_int_eq(ev_op_final(op, NULL, &n), CKR_OK);
	ck_assert_uint_eq(n, 16);
	n = 0;
	ck_assert_int_eq(ev_op_final(op, sig, &n), CKR_OK); /* 0 bytes after padding */
	ck_assert_uint_eq(n, 0);
	ev_op_free(op);

	ck_assert_int_eq(ev_op_new(EV_OP_DECRYPT, &m, aes, &op), CKR_OK);
	len = sizeof(ct);
	ck_assert_int_eq(ev_op_oneshot(op, ct, 48, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, 48);
	len = 31;
	ck_assert_int_eq(ev_op_oneshot(op, ct, 48, sig, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, 32);
	ck_assert_int_eq(ev_op_oneshot(op, ct, 48, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, 32);
	ck_assert_int_eq(ev_op_oneshot(op, ct, 48, sig, &len), CKR_OK);
	ck_assert_mem_eq(sig, msg, 32);
	ev_op_free(op);

	/* Verify operations have no single-part output call. */
	m = (CK_MECHANISM){CKM_ECDSA_SHA256, NULL, 0};
	ck_assert_int_eq(ev_op_new(EV_OP_VERIFY, &m, p256_pub, &op), CKR_OK);
	ck_assert_int_eq(ev_op_final(op, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
	ev_op_free(op);
	ev_op_free(NULL);
	ev_key_free(aes);
}
END_TEST

/* Wrap and unwrap */

START_TEST(test_wrap)
{
	static const CK_BYTE k24[24] = {9, 8, 7, 6, 5, 4, 3, 2, 1};
	ev_key *kek = secret_key(CKK_AES, key32, 32);
	ev_key *target = secret_key(CKK_AES, k24, 24);
	ev_key *odd = secret_key(CKK_GENERIC_SECRET, k24, 20);
	CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0};
	CK_GCM_PARAMS gp = {(CK_BYTE_PTR)iv16, 12, 96, NULL, 0, 128};
	CK_MECHANISM mechs[] = {
	    {CKM_AES_KEY_WRAP, NULL, 0},
	    {CKM_AES_KEY_WRAP_PAD, NULL, 0},
	    {CKM_AES_KEY_WRAP_KWP, NULL, 0},
	    {CKM_AES_GCM, &gp, sizeof(gp)},
	    {CKM_AES_CBC_PAD, (void *)iv16, 16},
	    {CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep)},
	    {CKM_RSA_PKCS, NULL, 0},
	};
	CK_BYTE out[2048];
	CK_ULONG len, need;
	ev_secret *plain = NULL, *ref = NULL;
	ev_key *back = NULL;
	size_t i;

	for (i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++) {
		int rsa_mech =
		    mechs[i].mechanism == CKM_RSA_PKCS_OAEP || mechs[i].mechanism == CKM_RSA_PKCS;
		ev_key *w = rsa_mech ? rsa_pub : kek, *u = rsa_mech ? rsa : kek;

		ck_assert_int_eq(ev_mech_wrap(&mechs[i], w, target, NULL, &need), CKR_OK);
		len = need - 1;
		if (!rsa_mech && mechs[i].mechanism != CKM_AES_CBC_PAD) {
			ck_assert_int_eq(ev_mech_wrap(&mechs[i], w, target, out, &len),
					 CKR_BUFFER_TOO_SMALL);
			ck_assert_uint_eq(len, need);
		}
		len = sizeof(out);
		ck_assert_int_eq(ev_mech_wrap(&mechs[i], w, target, out, &len), CKR_OK);
		ck_assert_uint_le(len, need);
		ck_assert_int_eq(ev_mech_unwrap(&mechs[i], u, out, len, &plain), CKR_OK);
		ck_assert_uint_eq(plain->len, 24);
		ck_assert_mem_eq(plain->data, k24, 24);
		ev_secret_free(plain);
		plain = NULL;
		/* Tampering is caught (v1.5 padding only probabilistically: skipped). */
		out[len - 1] ^= 1;
		if (mechs[i].mechanism != CKM_RSA_PKCS) {
			ck_assert_int_eq(ev_mech_unwrap(&mechs[i], u, out, len, &plain),
					 CKR_WRAPPED_KEY_INVALID);
			ck_assert_ptr_null(plain);
		}
		if (!rsa_mech && mechs[i].mechanism != CKM_AES_GCM) {
			ck_assert_int_eq(ev_mech_unwrap(&mechs[i], u, out, len - 1, &plain),
					 CKR_WRAPPED_KEY_LEN_RANGE);
		}
	}

	/* A private key: PKCS#8 under KWP and GCM, back to the same key. */
	for (i = 2; i < 4; i++) {
		len = sizeof(out);
		ck_assert_int_eq(ev_mech_wrap(&mechs[i], kek, p384, out, &len), CKR_OK);
		ck_assert_int_eq(ev_mech_unwrap(&mechs[i], kek, out, len, &plain), CKR_OK);
		ck_assert_int_eq(ev_key_export_secret(p384, &ref), CKR_OK);
		ck_assert(ev_secret_equal(plain, ref));
		ck_assert_int_eq(ev_key_import_secret(CKO_PRIVATE_KEY, CKK_EC, plain, &back),
				 CKR_OK);
		ck_assert_int_eq(EVP_PKEY_eq(back->pkey, p384->pkey), 1);
		ev_key_free(back);
		ev_secret_free(plain);
		ev_secret_free(ref);
		plain = ref = NULL;
	}

	/* RFC 3394 pads a secret key's value with zeros to whole semiblocks. */
	len = sizeof(out);
	ck_assert_int_eq(ev_mech_wrap(&mechs[0], kek, odd, out, &len), CKR_OK);
	ck_assert_uint_eq(len, 32);
	ck_assert_int_eq(ev_mech_unwrap(&mechs[0], kek, out, len, &plain), CKR_OK);
	ck_assert_uint_eq(plain->len, 24);
	ck_assert_mem_eq(plain->data, k24, 20);
	ck_assert_int_eq(plain->data[20] | plain->data[21] | plain->data[22] | plain->data[23], 0);
	ev_secret_free(plain);
	plain = NULL;

	/* Errors specific to wrapping. */
	{
		CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};

		len = sizeof(out);
		ck_assert_int_eq(ev_mech_wrap(&ecb, kek, target, out, &len), CKR_MECHANISM_INVALID);
		ck_assert_int_eq(ev_mech_unwrap(&ecb, kek, out, 32, &plain), CKR_MECHANISM_INVALID);
		len = sizeof(out);
		ck_assert_int_eq(ev_mech_wrap(&mechs[0], p256, target, out, &len),
				 CKR_WRAPPING_KEY_TYPE_INCONSISTENT);
		ck_assert_int_eq(ev_mech_unwrap(&mechs[0], rsa, out, 32, &plain),
				 CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT);
		len = sizeof(out);
		ck_assert_int_eq(ev_mech_wrap(&mechs[0], kek, p256_pub, out, &len),
				 CKR_KEY_NOT_WRAPPABLE);
		/* A private key does not fit in RSA encryption. */
		len = sizeof(out);
		ck_assert_int_eq(ev_mech_wrap(&mechs[5], rsa_pub, rsa, out, &len),
				 CKR_KEY_SIZE_RANGE);
		ck_assert_ptr_null(plain);
	}
	ev_key_free(kek);
	ev_key_free(target);
	ev_key_free(odd);
}
END_TEST

/* ECDH */

static size_t
ossl_ecdh(EVP_PKEY *priv, EVP_PKEY *peer, CK_BYTE *out)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(priv, NULL);
	size_t len = 128;

	ck_assert_int_eq(EVP_PKEY_derive_init(ctx), 1);
	ck_assert_int_eq(EVP_PKEY_derive_set_peer(ctx, peer), 1);
	ck_assert_int_eq(EVP_PKEY_derive(ctx, out, &len), 1);
	EVP_PKEY_CTX_free(ctx);
	return len;
}

START_TEST(test_ecdh)
{
	ev_key *other = NULL, *other_pub = NULL;
	ev_attrs *attrs = ev_attrs_new();
	CK_ECDH1_DERIVE_PARAMS p = {CKD_NULL, 0, NULL, 0, NULL};
	CK_MECHANISM m = {CKM_ECDH1_DERIVE, &p, sizeof(p)};
	const CK_ATTRIBUTE *pt;
	CK_BYTE z[128], kdf[64];
	unsigned char raw[133];
	size_t zlen, rawlen = 0;
	ev_secret *s = NULL, *s2 = NULL;
	EVP_KDF *x963;
	EVP_KDF_CTX *kctx;
	OSSL_PARAM params[4];

	ck_assert_int_eq(
	    gen_pair(CKM_EC_KEY_PAIR_GEN, oid_p256, sizeof(oid_p256), 0, &other, &other_pub),
	    CKR_OK);
	ck_assert_int_eq(ev_key_public_attrs(other_pub, attrs), CKR_OK);
	pt = ev_attrs_get(attrs, CKA_EC_POINT);
	ck_assert_ptr_nonnull(pt);
	EVP_PKEY_get_octet_string_param(other_pub->pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, raw,
					sizeof(raw), &rawlen);
	zlen = ossl_ecdh(p256->pkey, other_pub->pkey, z);

	/* The DER form and the raw form of the peer's point. */
	p.pPublicData = pt->pValue;
	p.ulPublicDataLen = pt->ulValueLen;
	ck_assert_int_eq(ev_mech_derive(&m, p256, 0, &s), CKR_OK);
	ck_assert_uint_eq(s->len, zlen);
	ck_assert_mem_eq(s->data, z, zlen);
	ev_secret_free(s);
	p.pPublicData = raw;
	p.ulPublicDataLen = rawlen;
	ck_assert_int_eq(ev_mech_derive(&m, p256, 16, &s), CKR_OK);
	ck_assert_uint_eq(s->len, 16);
	ck_assert_mem_eq(s->data, z + zlen - 16, 16); /* leading bytes dropped */
	ev_secret_free(s);
	ck_assert_int_eq(ev_mech_derive(&m, p256, 33, &s), CKR_TEMPLATE_INCONSISTENT);

	/* Both sides agree. */
	{
		ev_attrs *a2 = ev_attrs_new();
		const CK_ATTRIBUTE *pt2;

		ck_assert_int_eq(ev_key_public_attrs(p256_pub, a2), CKR_OK);
		pt2 = ev_attrs_get(a2, CKA_EC_POINT);
		p.pPublicData = pt2->pValue;
		p.ulPublicDataLen = pt2->ulValueLen;
		ck_assert_int_eq(ev_mech_derive(&m, other, 0, &s2), CKR_OK);
		ck_assert_mem_eq(s2->data, z, zlen);
		ev_secret_free(s2);
		ev_attrs_free(a2);
	}

	/* X9.63 KDF with shared data, as OpenSSL's X963KDF makes it. */
	p.kdf = CKD_SHA256_KDF;
	p.pSharedData = (CK_BYTE_PTR) "shared info";
	p.ulSharedDataLen = 11;
	p.pPublicData = raw;
	p.ulPublicDataLen = rawlen;
	ck_assert_int_eq(ev_mech_derive(&m, p256, 40, &s), CKR_OK);
	x963 = EVP_KDF_fetch(NULL, "X963KDF", NULL);
	kctx = EVP_KDF_CTX_new(x963);
	params[0] = OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0);
	params[1] = OSSL_PARAM_construct_octet_string("key", z, zlen);
	params[2] = OSSL_PARAM_construct_octet_string("info", "shared info", 11);
	params[3] = OSSL_PARAM_construct_end();
	ck_assert_int_eq(EVP_KDF_derive(kctx, kdf, 40, params), 1);
	ck_assert_uint_eq(s->len, 40);
	ck_assert_mem_eq(s->data, kdf, 40);
	ev_secret_free(s);
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(x963);
	p.kdf = CKD_SHA512_KDF;
	ck_assert_int_eq(ev_mech_derive(&m, p256, 0, &s), CKR_OK);
	ck_assert_uint_eq(s->len, 64);
	ev_secret_free(s);
	s = NULL;

	/* Errors. */
	p.kdf = CKD_NULL; /* shared data only with a KDF */
	ck_assert_int_eq(ev_mech_derive(&m, p256, 0, &s), CKR_MECHANISM_PARAM_INVALID);
	p.kdf = 0x99;
	ck_assert_int_eq(ev_mech_derive(&m, p256, 0, &s), CKR_MECHANISM_PARAM_INVALID);
	p.kdf = CKD_NULL;
	p.pSharedData = NULL;
	p.ulSharedDataLen = 0;
	raw[rawlen - 1] ^= 1; /* off the curve */
	ck_assert_int_eq(ev_mech_derive(&m, p256, 0, &s), CKR_MECHANISM_PARAM_INVALID);
	raw[rawlen - 1] ^= 1;
	p.ulPublicDataLen = 10;
	ck_assert_int_eq(ev_mech_derive(&m, p256, 0, &s), CKR_MECHANISM_PARAM_INVALID);
	p.ulPublicDataLen = rawlen;
	ck_assert_int_eq(ev_mech_derive(&m, p384, 0, &s), CKR_MECHANISM_PARAM_INVALID);
	ck_assert_int_eq(ev_mech_derive(&m, ed, 0, &s), CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_int_eq(ev_mech_derive(&m, p256_pub, 0, &s), CKR_KEY_TYPE_INCONSISTENT);
	m.ulParameterLen = 3;
	ck_assert_int_eq(ev_mech_derive(&m, p256, 0, &s), CKR_MECHANISM_PARAM_INVALID);
	m.mechanism = CKM_ECDSA;
	ck_assert_int_eq(ev_mech_derive(&m, p256, 0, &s), CKR_MECHANISM_INVALID);
	ck_assert_ptr_null(s);

	ev_attrs_free(attrs);
	ev_key_free(other);
	ev_key_free(other_pub);
}
END_TEST

/* Threads */

/* Many threads share one key object, each with its own operations. */
static void *
sign_worker(void *arg)
{
	static const CK_MECHANISM_TYPE mechs[] = {CKM_ECDSA_SHA256, CKM_SHA256_RSA_PKCS, CKM_EDDSA};
	ev_key *keys[] = {p256, rsa, ed}, *pubs[] = {p256_pub, rsa_pub, ed_pub};
	long id = (long)(intptr_t)arg, bad = 0;
	CK_BYTE sig[256];
	CK_ULONG len;
	int i;

	for (i = 0; i < 60; i++) {
		size_t j = (size_t)(i + id) % 3;
		CK_MECHANISM m = {mechs[j], NULL, 0};
		ev_op *op = NULL;

		len = sizeof(sig);
		if (ev_op_new(EV_OP_SIGN, &m, keys[j], &op) != CKR_OK ||
		    ev_op_oneshot(op, msg, sizeof(msg), sig, &len) != CKR_OK)
			bad++;
		ev_op_free(op);
		op = NULL;
		if (ev_op_new(EV_OP_VERIFY, &m, pubs[j], &op) != CKR_OK ||
		    ev_op_verify(op, msg, sizeof(msg), sig, len) != CKR_OK)
			bad++;
		ev_op_free(op);
	}
	return (void *)(intptr_t)bad;
}

START_TEST(test_threads)
{
	pthread_t t[6];
	void *bad;
	long i;

	for (i = 0; i < 6; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, sign_worker, (void *)(intptr_t)i), 0);
	for (i = 0; i < 6; i++) {
		ck_assert_int_eq(pthread_join(t[i], &bad), 0);
		ck_assert_ptr_null(bad);
	}
}
END_TEST

static Suite *
mech_suite(void)
{
	Suite *s = suite_create("mech");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_table);
	tcase_add_test(tc, test_list);
	tcase_add_test(tc, test_key_ok);
	tcase_add_test(tc, test_ecdsa);
	tcase_add_test(tc, test_eddsa);
	tcase_add_test(tc, test_rsa_pkcs_sign);
	tcase_add_test(tc, test_rsa_pss);
	tcase_add_test(tc, test_rsa_param_errors);
	tcase_add_test(tc, test_rsa_encrypt);
	tcase_add_test(tc, test_aes_modes);
	tcase_add_test(tc, test_aes_errors);
	tcase_add_test(tc, test_aes_ctr_wrap);
	tcase_add_test(tc, test_gcm_tamper);
	tcase_add_test(tc, test_kw_vectors);
	tcase_add_test(tc, test_kwp_vectors);
	tcase_add_test(tc, test_kw_pad);
	tcase_add_test(tc, test_digest);
	tcase_add_test(tc, test_hmac);
	tcase_add_test(tc, test_reuse);
	tcase_add_test(tc, test_conventions);
	tcase_add_test(tc, test_wrap);
	tcase_add_test(tc, test_ecdh);
	tcase_add_test(tc, test_threads);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	if (ev_secmem_init() != 0)
		return 1;
	if (gen_pair(CKM_EC_KEY_PAIR_GEN, oid_p256, sizeof(oid_p256), 0, &p256, &p256_pub) ||
	    gen_pair(CKM_EC_KEY_PAIR_GEN, oid_p384, sizeof(oid_p384), 0, &p384, &p384_pub) ||
	    gen_pair(CKM_EC_EDWARDS_KEY_PAIR_GEN, oid_ed25519, sizeof(oid_ed25519), 0, &ed,
		     &ed_pub) ||
	    gen_pair(CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0, 2048, &rsa, &rsa_pub)) {
		fprintf(stderr, "key generation failed\n");
		return 1;
	}

	sr = srunner_create(mech_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	ev_key_free(p256);
	ev_key_free(p256_pub);
	ev_key_free(p384);
	ev_key_free(p384_pub);
	ev_key_free(ed);
	ev_key_free(ed_pub);
	ev_key_free(rsa);
	ev_key_free(rsa_pub);
	return failed == 0 ? 0 : 1;
}
