/*
 * Integration tests of objects through the module's PKCS#11 interface:
 * imports of every key type, certificates and data objects, copying,
 * destroying, attribute rules (sensitive, one-way, read-only, trusted,
 * wrap and unwrap templates, dates, allowed mechanisms), key pair
 * generation templates, and hostile arguments. Return codes are those the
 * PKCS#11 3.0 specification gives.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/x509.h>

#include "harness.h"

#define F env.f
#define EV_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_OBJECT_CLASS c_data = CKO_DATA, c_cert = CKO_CERTIFICATE, c_pub = CKO_PUBLIC_KEY,
		       c_priv = CKO_PRIVATE_KEY, c_secret = CKO_SECRET_KEY;
static CK_KEY_TYPE k_ec = CKK_EC, k_ed = CKK_EC_EDWARDS, k_rsa = CKK_RSA, k_aes = CKK_AES,
		   k_generic = CKK_GENERIC_SECRET;


static const CK_BYTE aes_value[32] = { 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
	0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
	0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10 };

/* A zone with a logged-in read-write user session. */
static CK_SESSION_HANDLE
user_session(const char *zone)
{
	env_init();
	return env_session(env_new_zone(zone), 1, 1);
}

static CK_BBOOL
get_bool(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
	CK_BBOOL b = 0xaa;
	CK_ATTRIBUTE a = { type, &b, sizeof(b) };

	ck_assert_int_eq(F->C_GetAttributeValue(h, o, &a, 1), CKR_OK);
	ck_assert_uint_eq(a.ulValueLen, sizeof(b));
	return b;
}

static CK_ULONG
get_ulong(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
	CK_ULONG v = 0;
	CK_ATTRIBUTE a = { type, &v, sizeof(v) };

	ck_assert_int_eq(F->C_GetAttributeValue(h, o, &a, 1), CKR_OK);
	ck_assert_uint_eq(a.ulValueLen, sizeof(v));
	return v;
}

/* An attribute's value into buf; returns its length. */
static CK_ULONG
get_bytes(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, void *buf,
    CK_ULONG size)
{
	CK_ATTRIBUTE a = { type, buf, size };

	ck_assert_int_eq(F->C_GetAttributeValue(h, o, &a, 1), CKR_OK);
	return a.ulValueLen;
}

/* How many objects a template finds; the first into *first (may be NULL). */
static CK_ULONG
find(CK_SESSION_HANDLE h, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *first)
{
	CK_OBJECT_HANDLE found[32];
	CK_ULONG count = 0;

	ck_assert_int_eq(F->C_FindObjectsInit(h, t, n), CKR_OK);
	ck_assert_int_eq(F->C_FindObjects(h, found, 32, &count), CKR_OK);
	ck_assert_int_eq(F->C_FindObjectsFinal(h), CKR_OK);
	if (first != NULL && count > 0)
		*first = found[0];
	return count;
}

/* The provenance of an imported key: not local, never "always" anything. */
static void
assert_imported(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, int secret)
{
	ck_assert_int_eq(get_bool(h, o, CKA_LOCAL), CK_FALSE);
	ck_assert_uint_eq(get_ulong(h, o, CKA_KEY_GEN_MECHANISM), CK_UNAVAILABLE_INFORMATION);
	if (secret) {
		ck_assert_int_eq(get_bool(h, o, CKA_ALWAYS_SENSITIVE), CK_FALSE);
		ck_assert_int_eq(get_bool(h, o, CKA_NEVER_EXTRACTABLE), CK_FALSE);
	}
}

/* An AES key from aes_value with extra attributes; CKR_OK asserted. */
static CK_OBJECT_HANDLE
make_aes(CK_SESSION_HANDLE h, CK_ATTRIBUTE *extra, CK_ULONG nextra)
{
	CK_ATTRIBUTE t[16] = {
		{ CKA_CLASS, &c_secret, sizeof(c_secret) },
		{ CKA_KEY_TYPE, &k_aes, sizeof(k_aes) },
		{ CKA_VALUE, (void *)aes_value, sizeof(aes_value) },
	};
	CK_OBJECT_HANDLE o;
	CK_ULONG i;
	CK_RV rv;

	ck_assert_uint_le(nextra, 13);
	for (i = 0; i < nextra; i++)
		t[3 + i] = extra[i];
	rv = F->C_CreateObject(h, t, 3 + nextra, &o);
	ck_assert_msg(rv == CKR_OK, "C_CreateObject AES: 0x%lx", rv);
	return o;
}

/* A generated AES-256 key with extra attributes. */
static CK_OBJECT_HANDLE
gen_aes(CK_SESSION_HANDLE h, CK_ATTRIBUTE *extra, CK_ULONG nextra)
{
	CK_ULONG len = 32;
	CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_ATTRIBUTE t[16] = { { CKA_VALUE_LEN, &len, sizeof(len) } };
	CK_OBJECT_HANDLE o;
	CK_ULONG i;
	CK_RV rv;

	ck_assert_uint_le(nextra, 15);
	for (i = 0; i < nextra; i++)
		t[1 + i] = extra[i];
	rv = F->C_GenerateKey(h, &m, t, 1 + nextra, &o);
	ck_assert_msg(rv == CKR_OK, "C_GenerateKey AES: 0x%lx", rv);
	return o;
}

/* DER ECDSA signature to raw r||s of n bytes each. */
static CK_ULONG
ecdsa_raw(const unsigned char *der, size_t derlen, CK_BYTE *out, int n)
{
	const unsigned char *p = der;
	ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
	const BIGNUM *r, *ss;

	ck_assert_ptr_nonnull(s);
	ECDSA_SIG_get0(s, &r, &ss);
	ck_assert_int_eq(BN_bn2binpad(r, out, n), n);
	ck_assert_int_eq(BN_bn2binpad(ss, out + n, n), n);
	ECDSA_SIG_free(s);
	return (CK_ULONG)(2 * n);
}

static const CK_BYTE msg[] = "edgevault signs this";

/* Sign msg in the module with priv; OpenSSL verifies with k (md NULL: EdDSA). */
static void
module_signs(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE priv, CK_MECHANISM_TYPE m, EVP_PKEY *k,
    const EVP_MD *md, int ec)
{
	CK_MECHANISM mech = { m, NULL, 0 };
	CK_BYTE sig[1024];
	CK_ULONG len = sizeof(sig);
	unsigned char *der = NULL;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int derlen;

	ck_assert_int_eq(F->C_SignInit(h, &mech, priv), CKR_OK);
	ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)msg, sizeof(msg), sig, &len), CKR_OK);
	if (ec) {
		derlen = env_ecdsa_der(sig, len, &der);
		ck_assert_int_gt(derlen, 0);
	} else {
		der = OPENSSL_memdup(sig, len);
		derlen = (int)len;
	}
	ck_assert_int_eq(EVP_DigestVerifyInit(ctx, NULL, md, NULL, k), 1);
	ck_assert_int_eq(EVP_DigestVerify(ctx, der, (size_t)derlen, msg, sizeof(msg)), 1);
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
}

/* OpenSSL signs msg with k; the module verifies with pub, and refuses a changed one. */
static void
module_verifies(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE pub, CK_MECHANISM_TYPE m, EVP_PKEY *k,
    const EVP_MD *md, int ec_half)
{
	CK_MECHANISM mech = { m, NULL, 0 };
	unsigned char der[1024];
	CK_BYTE sig[1024];
	size_t derlen = sizeof(der);
	CK_ULONG len;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	ck_assert_int_eq(EVP_DigestSignInit(ctx, NULL, md, NULL, k), 1);
	ck_assert_int_eq(EVP_DigestSign(ctx, der, &derlen, msg, sizeof(msg)), 1);
	EVP_MD_CTX_free(ctx);
	if (ec_half > 0) {
		len = ecdsa_raw(der, derlen, sig, ec_half);
	} else {
		memcpy(sig, der, derlen);
		len = (CK_ULONG)derlen;
	}
	ck_assert_int_eq(F->C_VerifyInit(h, &mech, pub), CKR_OK);
	ck_assert_int_eq(F->C_Verify(h, (CK_BYTE *)msg, sizeof(msg), sig, len), CKR_OK);
	sig[len / 2] ^= 1;
	ck_assert_int_eq(F->C_VerifyInit(h, &mech, pub), CKR_OK);
	ck_assert_int_eq(F->C_Verify(h, (CK_BYTE *)msg, sizeof(msg), sig, len),
	    CKR_SIGNATURE_INVALID);
}

/* A big number parameter of an OpenSSL key, big-endian, into buf. */
static CK_ULONG
bn_param(EVP_PKEY *k, const char *name, CK_BYTE *buf, size_t size)
{
	BIGNUM *bn = NULL;
	int n;

	ck_assert_int_eq(EVP_PKEY_get_bn_param(k, name, &bn), 1);
	n = BN_num_bytes(bn);
	ck_assert_int_le(n, (int)size);
	ck_assert_int_eq(BN_bn2bin(bn, buf), n);
	BN_clear_free(bn);
	return (CK_ULONG)n;
}

/* The DER OCTET STRING of an EC point. */
static CK_ULONG
ec_point_der(EVP_PKEY *k, CK_BYTE *out, size_t size)
{
	unsigned char pt[133];
	size_t ptlen = 0;

	ck_assert_int_eq(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
			     sizeof(pt), &ptlen),
	    1);
	ck_assert_uint_lt(ptlen, 128);
	ck_assert_uint_le(ptlen + 2, size);
	out[0] = 0x04;
	out[1] = (CK_BYTE)ptlen;
	memcpy(out + 2, pt, ptlen);
	return (CK_ULONG)(ptlen + 2);
}

START_TEST(test_import_ec)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE priv, pub;
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	CK_BYTE d[32], point[70], buf[128];
	CK_ULONG dlen, plen;

	ck_assert_ptr_nonnull(k);
	dlen = bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY, d, sizeof(d));
	plen = ec_point_der(k, point, sizeof(point));
	{
		CK_ATTRIBUTE pt[] = {
			{ CKA_CLASS, &c_priv, sizeof(c_priv) },
			{ CKA_KEY_TYPE, &k_ec, sizeof(k_ec) },
			{ CKA_EC_PARAMS, (void *)env_p256, sizeof(env_p256) },
			{ CKA_VALUE, d, dlen },
			{ CKA_SIGN, &yes, sizeof(yes) },
		};
		CK_ATTRIBUTE ut[] = {
			{ CKA_CLASS, &c_pub, sizeof(c_pub) },
			{ CKA_KEY_TYPE, &k_ec, sizeof(k_ec) },
			{ CKA_EC_PARAMS, (void *)env_p256, sizeof(env_p256) },
			{ CKA_EC_POINT, point, plen },
			{ CKA_VERIFY, &yes, sizeof(yes) },
		};

		h = user_session("ec-import");
		ck_assert_int_eq(F->C_CreateObject(h, pt, 5, &priv), CKR_OK);
		ck_assert_int_eq(F->C_CreateObject(h, ut, 5, &pub), CKR_OK);
	}
	assert_imported(h, priv, 1);
	assert_imported(h, pub, 0);
	ck_assert_uint_eq(get_ulong(h, priv, CKA_CLASS), CKO_PRIVATE_KEY);
	ck_assert_uint_eq(get_ulong(h, priv, CKA_KEY_TYPE), CKK_EC);
	ck_assert_uint_eq(get_bytes(h, pub, CKA_EC_POINT, buf, sizeof(buf)), plen);
	ck_assert_mem_eq(buf, point, plen);
	ck_assert_uint_eq(get_bytes(h, priv, CKA_EC_PARAMS, buf, sizeof(buf)), sizeof(env_p256));
	ck_assert_mem_eq(buf, env_p256, sizeof(env_p256));
	module_signs(h, priv, CKM_ECDSA_SHA256, k, EVP_sha256(), 1);
	module_verifies(h, pub, CKM_ECDSA_SHA256, k, EVP_sha256(), 32);
	OPENSSL_cleanse(d, sizeof(d));
	EVP_PKEY_free(k);
}
END_TEST

START_TEST(test_import_ed25519)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE priv, pub;
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	CK_BYTE d[32], q[32];
	size_t dlen = sizeof(d), qlen = sizeof(q);

	ck_assert_ptr_nonnull(k);
	ck_assert_int_eq(EVP_PKEY_get_raw_private_key(k, d, &dlen), 1);
	ck_assert_int_eq(EVP_PKEY_get_raw_public_key(k, q, &qlen), 1);
	{
		CK_ATTRIBUTE pt[] = {
			{ CKA_CLASS, &c_priv, sizeof(c_priv) },
			{ CKA_KEY_TYPE, &k_ed, sizeof(k_ed) },
			{ CKA_EC_PARAMS, (void *)env_ed25519, sizeof(env_ed25519) },
			{ CKA_VALUE, d, dlen },
		};
		CK_ATTRIBUTE ut[] = {
			{ CKA_CLASS, &c_pub, sizeof(c_pub) },
			{ CKA_KEY_TYPE, &k_ed, sizeof(k_ed) },
			{ CKA_EC_PARAMS, (void *)env_ed25519, sizeof(env_ed25519) },
			{ CKA_EC_POINT, q, qlen },
		};

		h = user_session("ed-import");
		ck_assert_int_eq(F->C_CreateObject(h, pt, 4, &priv), CKR_OK);
		ck_assert_int_eq(F->C_CreateObject(h, ut, 4, &pub), CKR_OK);
	}
	assert_imported(h, priv, 1);
	assert_imported(h, pub, 0);
	ck_assert_uint_eq(get_ulong(h, pub, CKA_KEY_TYPE), CKK_EC_EDWARDS);
	module_signs(h, priv, CKM_EDDSA, k, NULL, 0);
	module_verifies(h, pub, CKM_EDDSA, k, NULL, 0);
	OPENSSL_cleanse(d, sizeof(d));
	EVP_PKEY_free(k);
}
END_TEST

START_TEST(test_import_rsa)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE priv, pub;
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	CK_BYTE n[256], e[8], d[256], p[128], q[128], dp[128], dq[128], qi[128], buf[512];
	CK_ULONG nl, el, dl, pl, ql, dpl, dql, qil;

	ck_assert_ptr_nonnull(k);
	nl = bn_param(k, OSSL_PKEY_PARAM_RSA_N, n, sizeof(n));
	el = bn_param(k, OSSL_PKEY_PARAM_RSA_E, e, sizeof(e));
	dl = bn_param(k, OSSL_PKEY_PARAM_RSA_D, d, sizeof(d));
	pl = bn_param(k, OSSL_PKEY_PARAM_RSA_FACTOR1, p, sizeof(p));
	ql = bn_param(k, OSSL_PKEY_PARAM_RSA_FACTOR2, q, sizeof(q));
	dpl = bn_param(k, OSSL_PKEY_PARAM_RSA_EXPONENT1, dp, sizeof(dp));
	dql = bn_param(k, OSSL_PKEY_PARAM_RSA_EXPONENT2, dq, sizeof(dq));
	qil = bn_param(k, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, qi, sizeof(qi));
	{
		CK_ATTRIBUTE pt[] = {
			{ CKA_CLASS, &c_priv, sizeof(c_priv) },
			{ CKA_KEY_TYPE, &k_rsa, sizeof(k_rsa) },
			{ CKA_MODULUS, n, nl },
			{ CKA_PUBLIC_EXPONENT, e, el },
			{ CKA_PRIVATE_EXPONENT, d, dl },
			{ CKA_PRIME_1, p, pl },
			{ CKA_PRIME_2, q, ql },
			{ CKA_EXPONENT_1, dp, dpl },
			{ CKA_EXPONENT_2, dq, dql },
			{ CKA_COEFFICIENT, qi, qil },
			{ CKA_SIGN, &yes, sizeof(yes) },
		};
		CK_ATTRIBUTE ut[] = {
			{ CKA_CLASS, &c_pub, sizeof(c_pub) },
			{ CKA_KEY_TYPE, &k_rsa, sizeof(k_rsa) },
			{ CKA_MODULUS, n, nl },
			{ CKA_PUBLIC_EXPONENT, e, el },
			{ CKA_VERIFY, &yes, sizeof(yes) },
		};

		h = user_session("rsa-import");
		ck_assert_int_eq(F->C_CreateObject(h, pt, 11, &priv), CKR_OK);
		ck_assert_int_eq(F->C_CreateObject(h, ut, 5, &pub), CKR_OK);
	}
	assert_imported(h, priv, 1);
	assert_imported(h, pub, 0);
	ck_assert_uint_eq(get_bytes(h, priv, CKA_MODULUS, buf, sizeof(buf)), nl);
	ck_assert_mem_eq(buf, n, nl);
	ck_assert_uint_eq(get_ulong(h, pub, CKA_MODULUS_BITS), 2048);
	/* The private exponent is sensitive (the default). */
	{
		CK_ATTRIBUTE a = { CKA_PRIVATE_EXPONENT, buf, sizeof(buf) };

		ck_assert_int_eq(F->C_GetAttributeValue(h, priv, &a, 1), CKR_ATTRIBUTE_SENSITIVE);
		ck_assert_uint_eq(a.ulValueLen, CK_UNAVAILABLE_INFORMATION);
	}
	module_signs(h, priv, CKM_SHA256_RSA_PKCS, k, EVP_sha256(), 0);
	module_verifies(h, pub, CKM_SHA256_RSA_PKCS, k, EVP_sha256(), 0);
	OPENSSL_cleanse(d, sizeof(d));
	OPENSSL_cleanse(p, sizeof(p));
	OPENSSL_cleanse(q, sizeof(q));
	EVP_PKEY_free(k);
}
END_TEST

START_TEST(test_import_secret_keys)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE aes, gen;
	CK_BYTE hkey[20] = "hmac key of 20 bytes";
	CK_ATTRIBUTE gt[] = {
		{ CKA_CLASS, &c_secret, sizeof(c_secret) },
		{ CKA_KEY_TYPE, &k_generic, sizeof(k_generic) },
		{ CKA_VALUE, hkey, sizeof(hkey) },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_VERIFY, &yes, sizeof(yes) },
	};
	CK_MECHANISM ecb = { CKM_AES_ECB, NULL, 0 };
	CK_MECHANISM hmac = { CKM_SHA256_HMAC, NULL, 0 };
	CK_BYTE block[16] = "sixteen byte blk", ct[32], expect[32], mac[32];
	CK_ULONG ctlen = sizeof(ct), maclen = sizeof(mac);
	unsigned int elen = 0;
	int outl = 0;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();

	h = user_session("secret-import");
	aes = make_aes(h, NULL, 0);
	ck_assert_int_eq(F->C_CreateObject(h, gt, 5, &gen), CKR_OK);
	assert_imported(h, aes, 1);
	assert_imported(h, gen, 1);
	ck_assert_uint_eq(get_ulong(h, aes, CKA_VALUE_LEN), 32);
	ck_assert_uint_eq(get_ulong(h, gen, CKA_VALUE_LEN), sizeof(hkey));

	/* AES-256 of one block, as OpenSSL computes it. */
	ck_assert_int_eq(F->C_EncryptInit(h, &ecb, aes), CKR_OK);
	ck_assert_int_eq(F->C_Encrypt(h, block, sizeof(block), ct, &ctlen), CKR_OK);
	ck_assert_uint_eq(ctlen, 16);
	ck_assert_int_eq(EVP_EncryptInit_ex(c, EVP_aes_256_ecb(), NULL, aes_value, NULL), 1);
	EVP_CIPHER_CTX_set_padding(c, 0);
	ck_assert_int_eq(EVP_EncryptUpdate(c, expect, &outl, block, sizeof(block)), 1);
	ck_assert_int_eq(outl, 16);
	EVP_CIPHER_CTX_free(c);
	ck_assert_mem_eq(ct, expect, 16);

	/* HMAC-SHA256 with the generic secret. */
	ck_assert_int_eq(F->C_SignInit(h, &hmac, gen), CKR_OK);
	ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)msg, sizeof(msg), mac, &maclen), CKR_OK);
	ck_assert_uint_eq(maclen, 32);
	ck_assert_ptr_nonnull(
	    HMAC(EVP_sha256(), hkey, sizeof(hkey), msg, sizeof(msg), expect, &elen));
	ck_assert_uint_eq(elen, 32);
	ck_assert_mem_eq(mac, expect, 32);
}
END_TEST

/* A generated pair is local, and both halves carry the same curve. */
START_TEST(test_generated_pair_provenance)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv;
	CK_BYTE a[64], b[64];
	CK_ULONG al, bl;

	h = user_session("gen-prov");
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "gen", CK_FALSE, &pub, &priv);
	ck_assert_int_eq(get_bool(h, pub, CKA_LOCAL), CK_TRUE);
	ck_assert_int_eq(get_bool(h, priv, CKA_LOCAL), CK_TRUE);
	ck_assert_uint_eq(get_ulong(h, pub, CKA_KEY_GEN_MECHANISM), CKM_EC_KEY_PAIR_GEN);
	ck_assert_uint_eq(get_ulong(h, priv, CKA_KEY_GEN_MECHANISM), CKM_EC_KEY_PAIR_GEN);
	al = get_bytes(h, pub, CKA_EC_PARAMS, a, sizeof(a));
	bl = get_bytes(h, priv, CKA_EC_PARAMS, b, sizeof(b));
	ck_assert_uint_eq(al, sizeof(env_p256));
	ck_assert_uint_eq(bl, al);
	ck_assert_mem_eq(a, b, al);
	ck_assert_mem_eq(a, env_p256, al);
	ck_assert_int_eq(get_bool(h, priv, CKA_ALWAYS_SENSITIVE), CK_TRUE);
	ck_assert_int_eq(get_bool(h, priv, CKA_NEVER_EXTRACTABLE), CK_TRUE);

	/* Edwards, with the curve given by its printable name. */
	{
		static const CK_BYTE ed_name[] = { 0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's', '2',
			'5', '5', '1', '9' };

		env_gen_ec(h, CKM_EC_EDWARDS_KEY_PAIR_GEN, ed_name, sizeof(ed_name), "ed", CK_FALSE,
		    &pub, &priv);
	}
	ck_assert_int_eq(get_bool(h, pub, CKA_LOCAL), CK_TRUE);
	ck_assert_int_eq(get_bool(h, priv, CKA_LOCAL), CK_TRUE);
	ck_assert_uint_eq(get_ulong(h, priv, CKA_KEY_GEN_MECHANISM), CKM_EC_EDWARDS_KEY_PAIR_GEN);
	al = get_bytes(h, pub, CKA_EC_PARAMS, a, sizeof(a));
	bl = get_bytes(h, priv, CKA_EC_PARAMS, b, sizeof(b));
	ck_assert_uint_gt(al, 0);
	ck_assert_uint_eq(bl, al);
	ck_assert_mem_eq(a, b, al);
}
END_TEST

/* A self-signed certificate's DER (OpenSSL_free it), and its subject, issuer, serial DER. */
static int
make_cert(unsigned char **der, unsigned char **subj, int *subjlen, unsigned char **serial,
    int *seriallen)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	int len;

	ck_assert_ptr_nonnull(k);
	ck_assert_int_eq(X509_set_version(x, 2), 1);
	ck_assert_int_eq(ASN1_INTEGER_set(X509_get_serialNumber(x), 0x1234567), 1);
	ck_assert_int_eq(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
			     (const unsigned char *)"edgevault test", -1, -1, 0),
	    1);
	ck_assert_int_eq(X509_set_subject_name(x, name), 1);
	ck_assert_int_eq(X509_set_issuer_name(x, name), 1);
	ck_assert_ptr_nonnull(X509_gmtime_adj(X509_getm_notBefore(x), 0));
	ck_assert_ptr_nonnull(X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365));
	ck_assert_int_eq(X509_set_pubkey(x, k), 1);
	ck_assert_int_gt(X509_sign(x, k, EVP_sha256()), 0);
	*der = NULL;
	len = i2d_X509(x, der);
	ck_assert_int_gt(len, 0);
	*subj = NULL;
	*subjlen = i2d_X509_NAME(name, subj);
	ck_assert_int_gt(*subjlen, 0);
	*serial = NULL;
	*seriallen = i2d_ASN1_INTEGER(X509_get_serialNumber(x), serial);
	ck_assert_int_gt(*seriallen, 0);
	X509_NAME_free(name);
	X509_free(x);
	EVP_PKEY_free(k);
	return len;
}

START_TEST(test_certificate)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE o, found;
	CK_CERTIFICATE_TYPE x509 = CKC_X_509;
	unsigned char *der, *subj, *serial;
	int derlen, subjlen, seriallen;
	CK_BYTE buf[1024], bad[] = { 0x30, 0x82, 0x01, 0x00, 0x02, 0x01 };
	CK_ULONG len;

	derlen = make_cert(&der, &subj, &subjlen, &serial, &seriallen);
	{
		CK_ATTRIBUTE t[] = {
			{ CKA_CLASS, &c_cert, sizeof(c_cert) },
			{ CKA_CERTIFICATE_TYPE, &x509, sizeof(x509) },
			{ CKA_TOKEN, &yes, sizeof(yes) },
			{ CKA_ID, "cert-1", 6 },
			{ CKA_LABEL, "my cert", 7 },
			{ CKA_VALUE, der, (CK_ULONG)derlen },
		};
		CK_ATTRIBUTE by_id[] = {
			{ CKA_CLASS, &c_cert, sizeof(c_cert) },
			{ CKA_ID, "cert-1", 6 },
		};
		CK_ATTRIBUTE by_other_id[] = {
			{ CKA_CLASS, &c_cert, sizeof(c_cert) },
			{ CKA_ID, "cert-2", 6 },
		};

		env_init();
		slot = env_new_zone("certs");
		h = env_session(slot, 1, 1);
		/* Not DER of a certificate. */
		t[5].pValue = bad;
		t[5].ulValueLen = sizeof(bad);
		ck_assert_int_eq(F->C_CreateObject(h, t, 6, &o), CKR_ATTRIBUTE_VALUE_INVALID);
		t[5].pValue = der;
		t[5].ulValueLen = (CK_ULONG)derlen;
		/* CKA_CERTIFICATE_TYPE is required. */
		t[1] = t[5];
		ck_assert_int_eq(F->C_CreateObject(h, t, 5, &o), CKR_TEMPLATE_INCOMPLETE);
		t[1].type = CKA_CERTIFICATE_TYPE;
		t[1].pValue = &x509;
		t[1].ulValueLen = sizeof(x509);
		ck_assert_int_eq(F->C_CreateObject(h, t, 6, &o), CKR_OK);

		ck_assert_uint_eq(find(h, by_id, 2, &found), 1);
		ck_assert_uint_eq(found, o);
		ck_assert_uint_eq(find(h, by_other_id, 2, NULL), 0);
		/* Seen after a restart too: it is a token object. */
		ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
		env_init();
		h = env_session(slot, 0, 0);
		ck_assert_uint_eq(find(h, by_id, 2, &found), 1);
	}
	ck_assert_int_eq(get_bool(h, found, CKA_PRIVATE), CK_FALSE);
	ck_assert_uint_eq(get_ulong(h, found, CKA_CERTIFICATE_TYPE), CKC_X_509);
	len = get_bytes(h, found, CKA_SUBJECT, buf, sizeof(buf));
	ck_assert_uint_eq(len, (CK_ULONG)subjlen);
	ck_assert_mem_eq(buf, subj, len);
	len = get_bytes(h, found, CKA_ISSUER, buf, sizeof(buf));
	ck_assert_uint_eq(len, (CK_ULONG)subjlen);
	ck_assert_mem_eq(buf, subj, len);
	len = get_bytes(h, found, CKA_SERIAL_NUMBER, buf, sizeof(buf));
	ck_assert_uint_eq(len, (CK_ULONG)seriallen);
	ck_assert_mem_eq(buf, serial, len);
	len = get_bytes(h, found, CKA_VALUE, buf, sizeof(buf));
	ck_assert_uint_eq(len, (CK_ULONG)derlen);
	ck_assert_mem_eq(buf, der, len);
	OPENSSL_free(der);
	OPENSSL_free(subj);
	OPENSSL_free(serial);
}
END_TEST

/* A subject given in the template is kept as given. */
START_TEST(test_certificate_given_subject)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE o;
	CK_CERTIFICATE_TYPE x509 = CKC_X_509;
	unsigned char *der, *subj, *serial;
	int derlen, subjlen, seriallen;
	CK_BYTE buf[1024];

	derlen = make_cert(&der, &subj, &subjlen, &serial, &seriallen);
	{
		CK_ATTRIBUTE t[] = {
			{ CKA_CLASS, &c_cert, sizeof(c_cert) },
			{ CKA_CERTIFICATE_TYPE, &x509, sizeof(x509) },
			{ CKA_SUBJECT, "given", 5 },
			{ CKA_VALUE, der, (CK_ULONG)derlen },
		};

		h = user_session("certs2");
		ck_assert_int_eq(F->C_CreateObject(h, t, 4, &o), CKR_OK);
	}
	ck_assert_uint_eq(get_bytes(h, o, CKA_SUBJECT, buf, sizeof(buf)), 5);
	ck_assert_mem_eq(buf, "given", 5);
	ck_assert_uint_eq(get_bytes(h, o, CKA_ISSUER, buf, sizeof(buf)), (CK_ULONG)subjlen);
	OPENSSL_free(der);
	OPENSSL_free(subj);
	OPENSSL_free(serial);
}
END_TEST

START_TEST(test_data_objects)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE o, o2, found;
	CK_BYTE buf[64];
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &c_data, sizeof(c_data) },
		{ CKA_APPLICATION, "edge-app", 8 },
		{ CKA_VALUE, "payload bytes", 13 },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE by_app[] = {
		{ CKA_CLASS, &c_data, sizeof(c_data) },
		{ CKA_APPLICATION, "edge-app", 8 },
	};
	CK_ATTRIBUTE empty[] = { { CKA_CLASS, &c_data, sizeof(c_data) } };

	h = user_session("data");
	ck_assert_int_eq(F->C_CreateObject(h, t, 5, &o), CKR_OK);
	ck_assert_int_eq(F->C_CreateObject(h, empty, 1, &o2), CKR_OK);
	/* A copy with a new application. */
	{
		CK_ATTRIBUTE app = { CKA_APPLICATION, "other-app", 9 };
		CK_OBJECT_HANDLE c;

		ck_assert_int_eq(F->C_CopyObject(h, o, &app, 1, &c), CKR_OK);
		ck_assert_uint_eq(get_bytes(h, c, CKA_APPLICATION, buf, sizeof(buf)), 9);
		ck_assert_uint_eq(get_bytes(h, c, CKA_VALUE, buf, sizeof(buf)), 13);
		ck_assert_mem_eq(buf, "payload bytes", 13);
		ck_assert_int_eq(get_bool(h, c, CKA_TOKEN), CK_TRUE);
		ck_assert_int_eq(F->C_DestroyObject(h, c), CKR_OK);
	}
	ck_assert_uint_eq(find(h, by_app, 2, &found), 1);
	ck_assert_uint_eq(found, o);
	ck_assert_uint_eq(get_bytes(h, o, CKA_VALUE, buf, sizeof(buf)), 13);
	ck_assert_mem_eq(buf, "payload bytes", 13);
	ck_assert_uint_eq(get_bytes(h, o, CKA_APPLICATION, buf, sizeof(buf)), 8);
	ck_assert_mem_eq(buf, "edge-app", 8);
	/* Defaults: empty application and value, a session object, not private. */
	ck_assert_uint_eq(get_bytes(h, o2, CKA_APPLICATION, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(get_bytes(h, o2, CKA_VALUE, buf, sizeof(buf)), 0);
	ck_assert_int_eq(get_bool(h, o2, CKA_TOKEN), CK_FALSE);
	ck_assert_int_eq(get_bool(h, o2, CKA_PRIVATE), CK_FALSE);
	ck_assert_int_eq(get_bool(h, o, CKA_PRIVATE), CK_TRUE);
	/* A private data object is out of sight after logout. */
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	ck_assert_uint_eq(find(h, by_app, 2, NULL), 0);
	ck_assert_int_eq(F->C_GetAttributeValue(h, o, t, 1), CKR_OBJECT_HANDLE_INVALID);
}
END_TEST

START_TEST(test_copy_object)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h, ro;
	CK_OBJECT_HANDLE pub, priv, copy, found;
	CK_BYTE buf[64];
	CK_ATTRIBUTE relabel[] = {
		{ CKA_LABEL, "the copy", 8 },
		{ CKA_TOKEN, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE by_label[] = {
		{ CKA_LABEL, "the copy", 8 },
		{ CKA_CLASS, &c_priv, sizeof(c_priv) },
	};
	CK_ATTRIBUTE to_secret = { CKA_CLASS, &c_secret, sizeof(c_secret) };
	CK_ATTRIBUTE same_class = { CKA_CLASS, &c_priv, sizeof(c_priv) };
	CK_ATTRIBUTE unsens = { CKA_SENSITIVE, &no, sizeof(no) };
	CK_ATTRIBUTE uncopyable = { CKA_COPYABLE, &no, sizeof(no) };
	CK_ATTRIBUTE session_only = { CKA_TOKEN, &no, sizeof(no) };
	EVP_PKEY *k;

	env_init();
	slot = env_new_zone("copy");
	h = env_session(slot, 1, 1);
	ro = env_session(slot, 0, 1);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "orig", CK_FALSE, &pub, &priv);

	ck_assert_int_eq(F->C_CopyObject(h, priv, relabel, 2, &copy), CKR_OK);
	ck_assert_uint_ne(copy, priv);
	ck_assert_uint_ne(copy, CK_INVALID_HANDLE);
	ck_assert_uint_eq(get_bytes(h, copy, CKA_LABEL, buf, sizeof(buf)), 8);
	ck_assert_mem_eq(buf, "the copy", 8);
	ck_assert_int_eq(get_bool(h, copy, CKA_TOKEN), CK_TRUE);
	ck_assert_int_eq(get_bool(h, priv, CKA_TOKEN), CK_FALSE);
	ck_assert_uint_eq(get_bytes(h, priv, CKA_LABEL, buf, sizeof(buf)), 4);
	/* A copy keeps the history of its source. */
	ck_assert_int_eq(get_bool(h, copy, CKA_LOCAL), CK_TRUE);
	ck_assert_int_eq(get_bool(h, copy, CKA_ALWAYS_SENSITIVE), CK_TRUE);

	/* What may not change in a copy. */
	ck_assert_int_eq(F->C_CopyObject(h, priv, &to_secret, 1, &copy), CKR_ATTRIBUTE_READ_ONLY);
	ck_assert_int_eq(F->C_CopyObject(h, priv, &same_class, 1, &copy),
	    CKR_ATTRIBUTE_READ_ONLY);
	ck_assert_int_eq(F->C_CopyObject(h, priv, &unsens, 1, &copy), CKR_ATTRIBUTE_READ_ONLY);
	ck_assert_int_eq(F->C_CopyObject(ro, priv, &relabel[1], 1, &copy), CKR_SESSION_READ_ONLY);
	ck_assert_int_eq(F->C_CopyObject(h, priv, relabel, 2, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_CopyObject(h, priv, NULL, 1, &copy), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_CopyObject(h, CK_INVALID_HANDLE, NULL, 0, &copy),
	    CKR_OBJECT_HANDLE_INVALID);
	/* An uncopyable object; it may not be made copyable again, either. */
	ck_assert_int_eq(F->C_SetAttributeValue(h, pub, &uncopyable, 1), CKR_OK);
	ck_assert_int_eq(F->C_CopyObject(h, pub, NULL, 0, &copy), CKR_ACTION_PROHIBITED);
	uncopyable.pValue = &yes;
	ck_assert_int_eq(F->C_SetAttributeValue(h, pub, &uncopyable, 1), CKR_ATTRIBUTE_READ_ONLY);
	/* One-way attributes of a secret key move only their way in a copy. */
	{
		CK_ATTRIBUTE wwt_extra[] = {
			{ CKA_WRAP_WITH_TRUSTED, &yes, sizeof(yes) },
			{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
			{ CKA_SENSITIVE, &no, sizeof(no) },
		};
		CK_ATTRIBUTE unwwt = { CKA_WRAP_WITH_TRUSTED, &no, sizeof(no) };
		CK_ATTRIBUTE safer[] = {
			{ CKA_EXTRACTABLE, &no, sizeof(no) },
			{ CKA_SENSITIVE, &yes, sizeof(yes) },
		};
		CK_ATTRIBUTE extr = { CKA_EXTRACTABLE, &yes, sizeof(yes) };
		CK_OBJECT_HANDLE src = make_aes(h, wwt_extra, 3), safe;

		ck_assert_int_eq(F->C_CopyObject(h, src, &unwwt, 1, &copy), CKR_ATTRIBUTE_READ_ONLY);
		ck_assert_int_eq(F->C_CopyObject(h, src, safer, 2, &safe), CKR_OK);
		ck_assert_int_eq(get_bool(h, safe, CKA_EXTRACTABLE), CK_FALSE);
		ck_assert_int_eq(get_bool(h, safe, CKA_NEVER_EXTRACTABLE), CK_FALSE);
		ck_assert_int_eq(get_bool(h, safe, CKA_SENSITIVE), CK_TRUE);
		ck_assert_int_eq(get_bool(h, safe, CKA_ALWAYS_SENSITIVE), CK_FALSE);
		ck_assert_int_eq(get_bool(h, safe, CKA_WRAP_WITH_TRUSTED), CK_TRUE);
		ck_assert_int_eq(F->C_CopyObject(h, safe, &extr, 1, &copy), CKR_ATTRIBUTE_READ_ONLY);
		ck_assert_int_eq(F->C_CopyObject(h, safe, &unsens, 1, &copy),
		    CKR_ATTRIBUTE_READ_ONLY);
	}
	/* A session copy of a session object. */
	ck_assert_int_eq(F->C_CopyObject(h, priv, &session_only, 1, &copy), CKR_OK);
	ck_assert_int_eq(get_bool(h, copy, CKA_TOKEN), CK_FALSE);

	/* The token copy survives a restart and still signs. */
	{
		CK_BYTE spki[256];
		CK_ATTRIBUTE a = { CKA_PUBLIC_KEY_INFO, spki, sizeof(spki) };
		const unsigned char *p = spki;

		ck_assert_int_eq(F->C_GetAttributeValue(h, pub, &a, 1), CKR_OK);
		k = d2i_PUBKEY(NULL, &p, (long)a.ulValueLen);
		ck_assert_ptr_nonnull(k);
	}
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_init();
	h = env_session(slot, 1, 1);
	ck_assert_uint_eq(find(h, by_label, 2, &found), 1);
	module_signs(h, found, CKM_ECDSA_SHA256, k, EVP_sha256(), 1);
	EVP_PKEY_free(k);
}
END_TEST

START_TEST(test_object_size_and_destroy)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE a, b;
	CK_OBJECT_HANDLE pub, priv, tpub, tpriv;
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_ULONG size = 0, len;
	CK_BYTE sig[64];
	CK_ATTRIBUTE label = { CKA_LABEL, NULL, 0 };
	CK_RV rv;

	env_init();
	slot = env_new_zone("destroy");
	a = env_session(slot, 1, 1);
	b = env_session(slot, 1, 1);
	env_gen_ec(a, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "sess", CK_FALSE, &pub, &priv);
	env_gen_ec(a, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "tok", CK_TRUE, &tpub, &tpriv);

	ck_assert_int_eq(F->C_GetObjectSize(a, priv, &size), CKR_OK);
	ck_assert_uint_gt(size, 0);
	ck_assert_int_eq(F->C_GetObjectSize(a, tpriv, &size), CKR_OK);
	ck_assert_uint_gt(size, 0);
	ck_assert_int_eq(F->C_GetObjectSize(a, tpriv, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GetObjectSize(a, 0x7ffffff0, &size), CKR_OBJECT_HANDLE_INVALID);
	ck_assert_int_eq(F->C_GetObjectSize(0x7ffffff0, priv, &size), CKR_SESSION_HANDLE_INVALID);

	/* Session a signs with each key while session b destroys it. */
	ck_assert_int_eq(F->C_SignInit(a, &m, priv), CKR_OK);
	ck_assert_int_eq(F->C_SignUpdate(a, (CK_BYTE *)"part", 4), CKR_OK);
	ck_assert_int_eq(F->C_DestroyObject(b, priv), CKR_OK);
	len = sizeof(sig);
	rv = F->C_SignFinal(a, sig, &len);
	ck_assert_msg(rv == CKR_OK || rv == CKR_KEY_HANDLE_INVALID, "C_SignFinal: 0x%lx", rv);
	/* Either way the operation is over. */
	ck_assert_int_eq(F->C_SignFinal(a, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
	ck_assert_int_eq(F->C_SignInit(a, &m, priv), CKR_KEY_HANDLE_INVALID);

	ck_assert_int_eq(F->C_SignInit(a, &m, tpriv), CKR_OK);
	ck_assert_int_eq(F->C_DestroyObject(b, tpriv), CKR_OK);
	len = sizeof(sig);
	rv = F->C_Sign(a, (CK_BYTE *)"data", 4, sig, &len);
	ck_assert_msg(rv == CKR_OK || rv == CKR_KEY_HANDLE_INVALID, "C_Sign: 0x%lx", rv);
	ck_assert_int_eq(F->C_SignInit(a, &m, tpriv), CKR_KEY_HANDLE_INVALID);

	/* A destroyed handle is invalid everywhere. */
	ck_assert_int_eq(F->C_DestroyObject(a, priv), CKR_OBJECT_HANDLE_INVALID);
	ck_assert_int_eq(F->C_DestroyObject(b, tpriv), CKR_OBJECT_HANDLE_INVALID);
	ck_assert_int_eq(F->C_GetAttributeValue(a, tpriv, &label, 1), CKR_OBJECT_HANDLE_INVALID);
	ck_assert_int_eq(F->C_SetAttributeValue(a, priv, &label, 1), CKR_OBJECT_HANDLE_INVALID);
	ck_assert_int_eq(F->C_GetObjectSize(a, tpriv, &size), CKR_OBJECT_HANDLE_INVALID);
	ck_assert_int_eq(F->C_CopyObject(a, tpriv, NULL, 0, &pub), CKR_OBJECT_HANDLE_INVALID);
	ck_assert_int_eq(F->C_DestroyObject(a, CK_INVALID_HANDLE), CKR_OBJECT_HANDLE_INVALID);
	/* Still gone after a restart. */
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_init();
	a = env_session(slot, 1, 1);
	ck_assert_int_eq(F->C_GetAttributeValue(a, tpriv, &label, 1), CKR_OBJECT_HANDLE_INVALID);
	ck_assert_int_eq(F->C_GetAttributeValue(a, tpub, &label, 1), CKR_OK);
}
END_TEST

START_TEST(test_secret_value_rules)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h, ro;
	CK_OBJECT_HANDLE open_key, sens, tok, pub, priv;
	CK_BYTE buf[64], label[8] = "x";
	CK_ATTRIBUTE open_extra[] = {
		{ CKA_SENSITIVE, &no, sizeof(no) },
		{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE tok_extra[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &no, sizeof(no) },
	};
	CK_ATTRIBUTE value = { CKA_VALUE, buf, sizeof(buf) };
	CK_ATTRIBUTE set_sens = { CKA_SENSITIVE, &yes, sizeof(yes) };
	CK_ATTRIBUTE unset_sens = { CKA_SENSITIVE, &no, sizeof(no) };
	CK_ATTRIBUTE set_unextr = { CKA_EXTRACTABLE, &no, sizeof(no) };
	CK_ATTRIBUTE set_extr = { CKA_EXTRACTABLE, &yes, sizeof(yes) };
	CK_ATTRIBUTE new_label = { CKA_LABEL, label, 1 };
	CK_ATTRIBUTE new_value = { CKA_VALUE, (void *)aes_value, 16 };

	env_init();
	slot = env_new_zone("secrets");
	h = env_session(slot, 1, 1);
	ro = env_session(slot, 0, 1);

	/* Extractable, not sensitive: CKA_VALUE is what was imported. */
	open_key = make_aes(h, open_extra, 2);
	ck_assert_int_eq(F->C_GetAttributeValue(h, open_key, &value, 1), CKR_OK);
	ck_assert_uint_eq(value.ulValueLen, sizeof(aes_value));
	ck_assert_mem_eq(buf, aes_value, sizeof(aes_value));
	value.pValue = NULL;
	value.ulValueLen = 0;
	ck_assert_int_eq(F->C_GetAttributeValue(h, open_key, &value, 1), CKR_OK);
	ck_assert_uint_eq(value.ulValueLen, sizeof(aes_value));
	value.pValue = buf;
	value.ulValueLen = 4;
	ck_assert_int_eq(F->C_GetAttributeValue(h, open_key, &value, 1), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(value.ulValueLen, CK_UNAVAILABLE_INFORMATION);

	/* Not sensitive but unextractable: not revealed either (PKCS#11 3.0 5.7). */
	{
		CK_ATTRIBUTE unextr_extra[] = {
			{ CKA_SENSITIVE, &no, sizeof(no) },
			{ CKA_EXTRACTABLE, &no, sizeof(no) },
		};
		CK_OBJECT_HANDLE k = make_aes(h, unextr_extra, 2);

		value.ulValueLen = sizeof(buf);
		ck_assert_int_eq(F->C_GetAttributeValue(h, k, &value, 1),
		    CKR_ATTRIBUTE_SENSITIVE);
		ck_assert_uint_eq(value.ulValueLen, CK_UNAVAILABLE_INFORMATION);
	}
	/* Sensitive by default. */
	sens = make_aes(h, NULL, 0);
	value.ulValueLen = sizeof(buf);
	ck_assert_int_eq(F->C_GetAttributeValue(h, sens, &value, 1), CKR_ATTRIBUTE_SENSITIVE);
	ck_assert_uint_eq(value.ulValueLen, CK_UNAVAILABLE_INFORMATION);
	ck_assert_int_eq(get_bool(h, sens, CKA_SENSITIVE), CK_TRUE);
	ck_assert_int_eq(get_bool(h, sens, CKA_EXTRACTABLE), CK_FALSE);

	/* One-way: sensitive stays sensitive, unextractable stays so. */
	ck_assert_int_eq(F->C_SetAttributeValue(h, open_key, &set_sens, 1), CKR_OK);
	value.ulValueLen = sizeof(buf);
	ck_assert_int_eq(F->C_GetAttributeValue(h, open_key, &value, 1), CKR_ATTRIBUTE_SENSITIVE);
	ck_assert_uint_eq(value.ulValueLen, CK_UNAVAILABLE_INFORMATION);
	ck_assert_int_eq(get_bool(h, open_key, CKA_ALWAYS_SENSITIVE), CK_FALSE);
	ck_assert_int_eq(F->C_SetAttributeValue(h, open_key, &unset_sens, 1),
	    CKR_ATTRIBUTE_READ_ONLY);
	ck_assert_int_eq(get_bool(h, open_key, CKA_SENSITIVE), CK_TRUE);
	ck_assert_int_eq(F->C_SetAttributeValue(h, open_key, &set_unextr, 1), CKR_OK);
	ck_assert_int_eq(F->C_SetAttributeValue(h, open_key, &set_extr, 1),
	    CKR_ATTRIBUTE_READ_ONLY);
	ck_assert_int_eq(get_bool(h, open_key, CKA_EXTRACTABLE), CK_FALSE);
	ck_assert_int_eq(get_bool(h, open_key, CKA_NEVER_EXTRACTABLE), CK_FALSE);
	/* The key material is not an attribute to set. */
	ck_assert_int_eq(F->C_SetAttributeValue(h, sens, &new_value, 1), CKR_ATTRIBUTE_READ_ONLY);

	/* A token key in a read-only session: not changed; and the change persists. */
	tok = make_aes(h, tok_extra, 3);
	ck_assert_int_eq(F->C_SetAttributeValue(ro, tok, &new_label, 1), CKR_SESSION_READ_ONLY);
	ck_assert_int_eq(F->C_SetAttributeValue(ro, tok, &set_sens, 1), CKR_SESSION_READ_ONLY);
	ck_assert_int_eq(get_bool(h, tok, CKA_SENSITIVE), CK_FALSE);
	ck_assert_int_eq(F->C_SetAttributeValue(h, tok, &set_sens, 1), CKR_OK);
	/* A session object may be changed in a read-only session. */
	ck_assert_int_eq(F->C_SetAttributeValue(ro, sens, &new_label, 1), CKR_OK);
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_init();
	h = env_session(slot, 1, 1);
	value.ulValueLen = sizeof(buf);
	ck_assert_int_eq(F->C_GetAttributeValue(h, tok, &value, 1), CKR_ATTRIBUTE_SENSITIVE);
	ck_assert_int_eq(F->C_SetAttributeValue(h, tok, &unset_sens, 1), CKR_ATTRIBUTE_READ_ONLY);

	/* Attributes no one may change. */
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "ro", CK_FALSE, &pub, &priv);
	{
		CK_ULONG ul = CKO_SECRET_KEY;
		CK_ATTRIBUTE cls = { CKA_CLASS, &ul, sizeof(ul) };
		CK_ATTRIBUTE kt = { CKA_KEY_TYPE, &k_rsa, sizeof(k_rsa) };
		CK_ATTRIBUTE local = { CKA_LOCAL, &no, sizeof(no) };
		CK_ATTRIBUTE params = { CKA_EC_PARAMS, (void *)env_ed25519, sizeof(env_ed25519) };
		CK_ATTRIBUTE genmech = { CKA_KEY_GEN_MECHANISM, &ul, sizeof(ul) };
		CK_ATTRIBUTE always = { CKA_ALWAYS_SENSITIVE, &no, sizeof(no) };
		CK_ATTRIBUTE token = { CKA_TOKEN, &yes, sizeof(yes) };
		CK_ATTRIBUTE priv_attr = { CKA_PRIVATE, &no, sizeof(no) };
		CK_ATTRIBUTE modifiable = { CKA_MODIFIABLE, &no, sizeof(no) };

		ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &cls, 1), CKR_ATTRIBUTE_READ_ONLY);
		ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &kt, 1), CKR_ATTRIBUTE_READ_ONLY);
		ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &local, 1), CKR_ATTRIBUTE_READ_ONLY);
		ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &params, 1),
		    CKR_ATTRIBUTE_READ_ONLY);
		ck_assert_int_eq(F->C_SetAttributeValue(h, pub, &params, 1), CKR_ATTRIBUTE_READ_ONLY);
		ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &genmech, 1),
		    CKR_ATTRIBUTE_READ_ONLY);
		ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &always, 1),
		    CKR_ATTRIBUTE_READ_ONLY);
		ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &token, 1), CKR_ATTRIBUTE_READ_ONLY);
		ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &priv_attr, 1),
		    CKR_ATTRIBUTE_READ_ONLY);
		ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &modifiable, 1),
		    CKR_ATTRIBUTE_READ_ONLY);
		/* A failed call changes nothing, also the attributes before the bad one. */
		{
			CK_ATTRIBUTE two[] = { { CKA_LABEL, "changed", 7 }, { CKA_CLASS, &ul,
										sizeof(ul) } };

			ck_assert_int_eq(F->C_SetAttributeValue(h, priv, two, 2),
			    CKR_ATTRIBUTE_READ_ONLY);
			ck_assert_uint_eq(get_bytes(h, priv, CKA_LABEL, buf, sizeof(buf)), 2);
			ck_assert_mem_eq(buf, "ro", 2);
		}
		ck_assert_uint_eq(get_ulong(h, priv, CKA_CLASS), CKO_PRIVATE_KEY);
		ck_assert_int_eq(get_bool(h, priv, CKA_LOCAL), CK_TRUE);
	}
}
END_TEST

/* CKA_MODIFIABLE FALSE and CKA_DESTROYABLE FALSE: CKR_ACTION_PROHIBITED. */
START_TEST(test_modifiable_destroyable)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE fixed, kept, data;
	CK_ATTRIBUTE fixed_extra[] = { { CKA_MODIFIABLE, &no, sizeof(no) } };
	CK_ATTRIBUTE kept_extra[] = {
		{ CKA_DESTROYABLE, &no, sizeof(no) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE data_t[] = {
		{ CKA_CLASS, &c_data, sizeof(c_data) },
		{ CKA_VALUE, "v", 1 },
		{ CKA_MODIFIABLE, &no, sizeof(no) },
		{ CKA_DESTROYABLE, &no, sizeof(no) },
	};
	CK_ATTRIBUTE label = { CKA_LABEL, "new", 3 };
	CK_ATTRIBUTE sens = { CKA_SENSITIVE, &yes, sizeof(yes) };

	h = user_session("fixed");
	fixed = make_aes(h, fixed_extra, 1);
	ck_assert_int_eq(get_bool(h, fixed, CKA_MODIFIABLE), CK_FALSE);
	ck_assert_int_eq(F->C_SetAttributeValue(h, fixed, &label, 1), CKR_ACTION_PROHIBITED);
	ck_assert_int_eq(F->C_SetAttributeValue(h, fixed, &sens, 1), CKR_ACTION_PROHIBITED);
	/* Unmodifiable is not undestroyable. */
	ck_assert_int_eq(F->C_DestroyObject(h, fixed), CKR_OK);

	kept = make_aes(h, kept_extra, 2);
	ck_assert_int_eq(get_bool(h, kept, CKA_DESTROYABLE), CK_FALSE);
	ck_assert_int_eq(F->C_DestroyObject(h, kept), CKR_ACTION_PROHIBITED);
	ck_assert_int_eq(F->C_SetAttributeValue(h, kept, &label, 1), CKR_OK);
	ck_assert_int_eq(get_bool(h, kept, CKA_TOKEN), CK_TRUE);

	ck_assert_int_eq(F->C_CreateObject(h, data_t, 4, &data), CKR_OK);
	ck_assert_int_eq(F->C_SetAttributeValue(h, data, &label, 1), CKR_ACTION_PROHIBITED);
	ck_assert_int_eq(F->C_DestroyObject(h, data), CKR_ACTION_PROHIBITED);
	ck_assert_int_eq(F->C_GetAttributeValue(h, data, &label, 1), CKR_OK);
}
END_TEST

/* A CK_DATE from its text. */
static void
date_of(CK_DATE *d, const char *yyyymmdd)
{
	memcpy(d->year, yyyymmdd, 4);
	memcpy(d->month, yyyymmdd + 4, 2);
	memcpy(d->day, yyyymmdd + 6, 2);
}

START_TEST(test_allowed_mechanisms_and_dates)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv, aes;
	CK_MECHANISM_TYPE only[] = { CKM_ECDSA_SHA256, CKM_ECDSA_SHA384 };
	CK_MECHANISM ecdsa = { CKM_ECDSA, NULL, 0 };
	CK_MECHANISM ecdsa256 = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_MECHANISM ecb = { CKM_AES_ECB, NULL, 0 };
	CK_BYTE buf[64];
	CK_ULONG len;
	CK_DATE future, past, today_d;
	char now[9];
	time_t t = time(NULL);
	struct tm tm;
	CK_ATTRIBUTE allowed = { CKA_ALLOWED_MECHANISMS, only, sizeof(only) };
	CK_ATTRIBUTE start = { CKA_START_DATE, &future, sizeof(future) };
	CK_ATTRIBUTE end = { CKA_END_DATE, &past, sizeof(past) };
	CK_ATTRIBUTE no_start = { CKA_START_DATE, NULL, 0 };
	CK_ATTRIBUTE no_end = { CKA_END_DATE, NULL, 0 };
	CK_ATTRIBUTE got = { CKA_ALLOWED_MECHANISMS, buf, sizeof(buf) };

	gmtime_r(&t, &tm);
	strftime(now, sizeof(now), "%Y%m%d", &tm);
	date_of(&future, "29991231");
	date_of(&past, "20000101");
	date_of(&today_d, now);

	h = user_session("allowed");
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "allowed", CK_FALSE, &pub, &priv);
	memset(buf, 0x5a, sizeof(buf));
	/* Empty by default: any mechanism. */
	ck_assert_uint_eq(get_bytes(h, priv, CKA_ALLOWED_MECHANISMS, buf, sizeof(buf)), 0);
	ck_assert_int_eq(F->C_SignInit(h, &ecdsa, priv), CKR_OK);
	len = sizeof(buf);
	ck_assert_int_eq(F->C_Sign(h, buf, 32, buf, &len), CKR_OK);

	allowed.ulValueLen = 5; /* not a whole number of mechanism types */
	ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &allowed, 1),
	    CKR_ATTRIBUTE_VALUE_INVALID);
	allowed.ulValueLen = sizeof(only);
	ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &allowed, 1), CKR_OK);
	ck_assert_int_eq(F->C_GetAttributeValue(h, priv, &got, 1), CKR_OK);
	ck_assert_uint_eq(got.ulValueLen, sizeof(only));
	ck_assert_mem_eq(buf, only, sizeof(only));
	ck_assert_int_eq(F->C_SignInit(h, &ecdsa, priv), CKR_MECHANISM_INVALID);
	ck_assert_int_eq(F->C_SignInit(h, &ecdsa256, priv), CKR_OK);
	len = sizeof(buf);
	ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)msg, sizeof(msg), buf, &len), CKR_OK);

	/* Dates: a start in the future, an end in the past. */
	ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &start, 1), CKR_OK);
	ck_assert_int_eq(F->C_SignInit(h, &ecdsa256, priv), CKR_KEY_FUNCTION_NOT_PERMITTED);
	ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &no_start, 1), CKR_OK);
	ck_assert_int_eq(F->C_SignInit(h, &ecdsa256, priv), CKR_OK);
	len = sizeof(buf);
	ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)msg, sizeof(msg), buf, &len), CKR_OK);
	ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &end, 1), CKR_OK);
	ck_assert_int_eq(F->C_SignInit(h, &ecdsa256, priv), CKR_KEY_FUNCTION_NOT_PERMITTED);
	ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &no_end, 1), CKR_OK);
	/* A date that is no CK_DATE. */
	end.ulValueLen = 4;
	ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &end, 1), CKR_ATTRIBUTE_VALUE_INVALID);
	end.ulValueLen = sizeof(CK_DATE);
	/* Today is within a key's period that starts and ends today. */
	start.pValue = &today_d;
	end.pValue = &today_d;
	ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &start, 1), CKR_OK);
	ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &end, 1), CKR_OK);
	ck_assert_int_eq(F->C_SignInit(h, &ecdsa256, priv), CKR_OK);
	len = sizeof(buf);
	ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)msg, sizeof(msg), buf, &len), CKR_OK);

	/* The same in a template, on a secret key and its encryption. */
	{
		CK_MECHANISM_TYPE cbc_only = CKM_AES_CBC;
		CK_ATTRIBUTE extra[] = {
			{ CKA_ALLOWED_MECHANISMS, &cbc_only, sizeof(cbc_only) },
			{ CKA_END_DATE, &past, sizeof(past) },
		};

		aes = make_aes(h, extra, 1);
		ck_assert_int_eq(F->C_EncryptInit(h, &ecb, aes), CKR_MECHANISM_INVALID);
		aes = make_aes(h, extra + 1, 1);
		ck_assert_int_eq(F->C_EncryptInit(h, &ecb, aes), CKR_KEY_FUNCTION_NOT_PERMITTED);
		extra[1].ulValueLen = 3;
		ck_assert_int_eq(F->C_CreateObject(h, (CK_ATTRIBUTE[]){
				{ CKA_CLASS, &c_secret, sizeof(c_secret) },
				{ CKA_KEY_TYPE, &k_aes, sizeof(k_aes) },
				{ CKA_VALUE, (void *)aes_value, 16 }, extra[1] }, 4, &aes),
		    CKR_ATTRIBUTE_VALUE_INVALID);
	}
}
END_TEST

/* Wrap hkey under wkey with CKM_AES_KEY_WRAP_KWP; returns the CK_RV, the blob in out. */
static CK_RV
wrap(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE wkey, CK_OBJECT_HANDLE key, CK_BYTE *out,
    CK_ULONG *len)
{
	CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_KWP, NULL, 0 };

	*len = 128;
	return F->C_WrapKey(h, &kwp, wkey, key, out, len);
}

START_TEST(test_trusted_and_wrap_with_trusted)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE trusted, plain_w, key, unwrapped, user_key;
	CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_KWP, NULL, 0 };
	CK_BYTE blob[128], buf[64];
	CK_ULONG len;
	CK_ATTRIBUTE trusted_extra[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &no, sizeof(no) },
		{ CKA_TRUSTED, &yes, sizeof(yes) },
		{ CKA_LABEL, "trusted", 7 },
	};
	CK_ATTRIBUTE public_extra[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &no, sizeof(no) },
		{ CKA_LABEL, "later", 5 },
	};
	CK_ATTRIBUTE set_trusted = { CKA_TRUSTED, &yes, sizeof(yes) };
	CK_ATTRIBUTE wwt_extra[] = {
		{ CKA_WRAP_WITH_TRUSTED, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE unset_wwt = { CKA_WRAP_WITH_TRUSTED, &no, sizeof(no) };
	CK_ATTRIBUTE by_label[] = { { CKA_LABEL, "trusted", 7 } };
	CK_ATTRIBUTE unwrap_t[] = {
		{ CKA_CLASS, &c_secret, sizeof(c_secret) },
		{ CKA_KEY_TYPE, &k_aes, sizeof(k_aes) },
		{ CKA_SENSITIVE, &no, sizeof(no) },
		{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE value = { CKA_VALUE, buf, sizeof(buf) };

	env_init();
	slot = env_new_zone("trusted");
	h = env_session(slot, 1, 1);
	/* The user may not make a key trusted, neither at creation nor later. */
	ck_assert_int_eq(F->C_CreateObject(h, (CK_ATTRIBUTE[]){
			{ CKA_CLASS, &c_secret, sizeof(c_secret) },
			{ CKA_KEY_TYPE, &k_aes, sizeof(k_aes) },
			{ CKA_VALUE, (void *)aes_value, sizeof(aes_value) },
			{ CKA_TRUSTED, &yes, sizeof(yes) } }, 4, &key),
	    CKR_ATTRIBUTE_READ_ONLY);
	user_key = make_aes(h, public_extra, 3);
	ck_assert_int_eq(F->C_SetAttributeValue(h, user_key, &set_trusted, 1),
	    CKR_ATTRIBUTE_READ_ONLY);
	ck_assert_int_eq(get_bool(h, user_key, CKA_TRUSTED), CK_FALSE);

	/* The SO may, on public objects. */
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	ck_assert_int_eq(F->C_Login(h, CKU_SO, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN)), CKR_OK);
	trusted = make_aes(h, trusted_extra, 4);
	ck_assert_int_eq(F->C_SetAttributeValue(h, user_key, &set_trusted, 1), CKR_OK);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	ck_assert_int_eq(F->C_Login(h, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN)),
	    CKR_OK);
	ck_assert_uint_eq(find(h, by_label, 1, NULL), 1);
	ck_assert_int_eq(get_bool(h, trusted, CKA_TRUSTED), CK_TRUE);
	ck_assert_int_eq(get_bool(h, user_key, CKA_TRUSTED), CK_TRUE);

	/* A key that wants a trusted wrapper is not wrapped by any other. */
	plain_w = gen_aes(h, NULL, 0);
	key = make_aes(h, wwt_extra, 2);
	ck_assert_int_eq(F->C_SetAttributeValue(h, key, &unset_wwt, 1), CKR_ATTRIBUTE_READ_ONLY);
	ck_assert_int_eq(wrap(h, plain_w, key, blob, &len), CKR_KEY_NOT_WRAPPABLE);
	ck_assert_int_eq(wrap(h, trusted, key, blob, &len), CKR_OK);
	ck_assert_int_eq(wrap(h, user_key, key, blob, &len), CKR_OK);
	/* And back: the same key. */
	ck_assert_int_eq(F->C_UnwrapKey(h, &kwp, user_key, blob, len, unwrap_t, 4, &unwrapped),
	    CKR_OK);
	ck_assert_int_eq(F->C_GetAttributeValue(h, unwrapped, &value, 1), CKR_OK);
	ck_assert_uint_eq(value.ulValueLen, sizeof(aes_value));
	ck_assert_mem_eq(buf, aes_value, sizeof(aes_value));
	assert_imported(h, unwrapped, 1);
	/* Without CKA_WRAP_WITH_TRUSTED, any wrapping key will do. */
	ck_assert_int_eq(wrap(h, plain_w, unwrapped, blob, &len), CKR_OK);
}
END_TEST

START_TEST(test_wrap_template)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE w, aes, gen, unextractable;
	CK_KEY_TYPE want = CKK_GENERIC_SECRET;
	CK_ATTRIBUTE wt[] = {
		{ CKA_KEY_TYPE, &want, sizeof(want) },
		{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE w_extra[] = { { CKA_WRAP_TEMPLATE, wt, sizeof(wt) } };
	CK_ATTRIBUTE extractable[] = { { CKA_EXTRACTABLE, &yes, sizeof(yes) } };
	CK_BYTE hkey[24] = "generic secret 24 bytes";
	CK_ATTRIBUTE gt[] = {
		{ CKA_CLASS, &c_secret, sizeof(c_secret) },
		{ CKA_KEY_TYPE, &k_generic, sizeof(k_generic) },
		{ CKA_VALUE, hkey, sizeof(hkey) },
		{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE got[2], a;
	CK_BYTE v0[16], v1[16], blob[128];
	CK_ULONG len, i;
	CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_KWP, NULL, 0 };

	h = user_session("wraptmpl");
	w = gen_aes(h, w_extra, 1);
	aes = make_aes(h, extractable, 1);
	unextractable = make_aes(h, NULL, 0);
	ck_assert_int_eq(F->C_CreateObject(h, gt, 4, &gen), CKR_OK);

	ck_assert_int_eq(wrap(h, w, aes, blob, &len), CKR_KEY_NOT_WRAPPABLE);
	ck_assert_int_eq(wrap(h, w, gen, blob, &len), CKR_OK);
	ck_assert_uint_eq(len, 32);
	/* A length query, then too small. */
	len = 0;
	ck_assert_int_eq(F->C_WrapKey(h, &kwp, w, gen, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, 32);
	len = 8;
	ck_assert_int_eq(F->C_WrapKey(h, &kwp, w, gen, blob, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, 32);
	/* A wrapping key that may not wrap; a public key, which is not wrapped. */
	{
		CK_ATTRIBUTE nowrap = { CKA_WRAP, &no, sizeof(no) };
		CK_OBJECT_HANDLE pub, priv;

		ck_assert_int_eq(F->C_SetAttributeValue(h, aes, &nowrap, 1), CKR_OK);
		ck_assert_int_eq(wrap(h, aes, gen, blob, &len), CKR_KEY_FUNCTION_NOT_PERMITTED);
		nowrap.pValue = &yes;
		ck_assert_int_eq(F->C_SetAttributeValue(h, aes, &nowrap, 1), CKR_OK);
		env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "pub", CK_FALSE, &pub, &priv);
		ck_assert_int_eq(wrap(h, w, pub, blob, &len), CKR_KEY_NOT_WRAPPABLE);
	}
	/* An unextractable key is not wrapped by anyone. */
	ck_assert_int_eq(wrap(h, w, unextractable, blob, &len), CKR_KEY_UNEXTRACTABLE);
	ck_assert_int_eq(wrap(h, aes, unextractable, blob, &len), CKR_KEY_UNEXTRACTABLE);

	/* Reading CKA_WRAP_TEMPLATE, PKCS#11 3.0 section 5.7: first the count. */
	a.type = CKA_WRAP_TEMPLATE;
	a.pValue = NULL;
	a.ulValueLen = 0;
	ck_assert_int_eq(F->C_GetAttributeValue(h, w, &a, 1), CKR_OK);
	ck_assert_uint_eq(a.ulValueLen, 2 * sizeof(CK_ATTRIBUTE));
	/* Too small an array. */
	memset(got, 0, sizeof(got));
	a.pValue = got;
	a.ulValueLen = sizeof(CK_ATTRIBUTE);
	ck_assert_int_eq(F->C_GetAttributeValue(h, w, &a, 1), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(a.ulValueLen, CK_UNAVAILABLE_INFORMATION);
	/* Then each element's type and length. */
	a.ulValueLen = sizeof(got);
	ck_assert_int_eq(F->C_GetAttributeValue(h, w, &a, 1), CKR_OK);
	ck_assert_uint_eq(a.ulValueLen, sizeof(got));
	for (i = 0; i < 2; i++) {
		if (got[i].type == CKA_KEY_TYPE)
			ck_assert_uint_eq(got[i].ulValueLen, sizeof(CK_KEY_TYPE));
		else if (got[i].type == CKA_EXTRACTABLE)
			ck_assert_uint_eq(got[i].ulValueLen, sizeof(CK_BBOOL));
		else
			ck_abort_msg("unexpected type 0x%lx", got[i].type);
	}
	ck_assert_uint_ne(got[0].type, got[1].type);
	/* Then the values. */
	got[0].pValue = v0;
	got[1].pValue = v1;
	got[0].ulValueLen = got[1].ulValueLen = sizeof(v0);
	ck_assert_int_eq(F->C_GetAttributeValue(h, w, &a, 1), CKR_OK);
	for (i = 0; i < 2; i++) {
		if (got[i].type == CKA_KEY_TYPE)
			ck_assert_mem_eq(got[i].pValue, &want, sizeof(want));
		else
			ck_assert_int_eq(*(CK_BBOOL *)got[i].pValue, CK_TRUE);
	}
	/* An element too small for its value. */
	got[0].ulValueLen = got[1].ulValueLen = 0;
	ck_assert_int_eq(F->C_GetAttributeValue(h, w, &a, 1), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(got[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
	ck_assert_uint_eq(got[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
	/* A template that is not a whole number of CK_ATTRIBUTEs. */
	w_extra[0].ulValueLen = sizeof(CK_ATTRIBUTE) + 1;
	{
		CK_ULONG l32 = 32;
		CK_MECHANISM gen_m = { CKM_AES_KEY_GEN, NULL, 0 };
		CK_ATTRIBUTE t[] = { { CKA_VALUE_LEN, &l32, sizeof(l32) }, w_extra[0] };

		ck_assert_int_eq(F->C_GenerateKey(h, &gen_m, t, 2, &w),
		    CKR_ATTRIBUTE_VALUE_INVALID);
	}
}
END_TEST

START_TEST(test_unwrap_template)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE uw, key, out;
	CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_KWP, NULL, 0 };
	CK_ATTRIBUTE ut[] = {
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_LABEL, "from-uw", 7 },
	};
	CK_ATTRIBUTE uw_extra[] = { { CKA_UNWRAP_TEMPLATE, ut, sizeof(ut) } };
	CK_ATTRIBUTE extractable[] = { { CKA_EXTRACTABLE, &yes, sizeof(yes) } };
	CK_ATTRIBUTE plain_t[] = {
		{ CKA_CLASS, &c_secret, sizeof(c_secret) },
		{ CKA_KEY_TYPE, &k_aes, sizeof(k_aes) },
	};
	CK_ATTRIBUTE conflict_t[] = {
		{ CKA_CLASS, &c_secret, sizeof(c_secret) },
		{ CKA_KEY_TYPE, &k_aes, sizeof(k_aes) },
		{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE agree_t[] = {
		{ CKA_CLASS, &c_secret, sizeof(c_secret) },
		{ CKA_KEY_TYPE, &k_aes, sizeof(k_aes) },
		{ CKA_LABEL, "from-uw", 7 },
	};
	CK_BYTE blob[128], buf[32];
	CK_ULONG len;
	CK_MECHANISM ecb = { CKM_AES_ECB, NULL, 0 };
	CK_BYTE block[16] = { 0 }, c1[16], c2[16];
	CK_ULONG l1 = sizeof(c1), l2 = sizeof(c2);

	h = user_session("unwraptmpl");
	uw = gen_aes(h, uw_extra, 1);
	key = make_aes(h, extractable, 1);
	ck_assert_int_eq(wrap(h, uw, key, blob, &len), CKR_OK);

	ck_assert_int_eq(F->C_UnwrapKey(h, &kwp, uw, blob, len, plain_t, 2, &out), CKR_OK);
	ck_assert_int_eq(get_bool(h, out, CKA_EXTRACTABLE), CK_FALSE);
	ck_assert_uint_eq(get_bytes(h, out, CKA_LABEL, buf, sizeof(buf)), 7);
	ck_assert_mem_eq(buf, "from-uw", 7);
	assert_imported(h, out, 1);
	/* The same key. */
	ck_assert_int_eq(F->C_EncryptInit(h, &ecb, out), CKR_OK);
	ck_assert_int_eq(F->C_Encrypt(h, block, 16, c1, &l1), CKR_OK);
	ck_assert_int_eq(F->C_EncryptInit(h, &ecb, key), CKR_OK);
	ck_assert_int_eq(F->C_Encrypt(h, block, 16, c2, &l2), CKR_OK);
	ck_assert_mem_eq(c1, c2, 16);
	/* The unwrapped key is unextractable: it is not wrapped again. */
	ck_assert_int_eq(wrap(h, uw, out, blob + 64, &l1), CKR_KEY_UNEXTRACTABLE);

	ck_assert_int_eq(F->C_UnwrapKey(h, &kwp, uw, blob, len, conflict_t, 3, &out),
	    CKR_TEMPLATE_INCONSISTENT);
	ck_assert_int_eq(F->C_UnwrapKey(h, &kwp, uw, blob, len, agree_t, 3, &out), CKR_OK);
	/* Unwrapping templates refuse what only the module sets. */
	{
		CK_ATTRIBUTE local_t[] = {
			{ CKA_CLASS, &c_secret, sizeof(c_secret) },
			{ CKA_KEY_TYPE, &k_aes, sizeof(k_aes) },
			{ CKA_LOCAL, &yes, sizeof(yes) },
		};

		ck_assert_int_eq(F->C_UnwrapKey(h, &kwp, uw, blob, len, local_t, 3, &out),
		    CKR_ATTRIBUTE_READ_ONLY);
	}
	/* A damaged blob. */
	blob[3] ^= 0x40;
	ck_assert_int_eq(F->C_UnwrapKey(h, &kwp, uw, blob, len, plain_t, 2, &out),
	    CKR_WRAPPED_KEY_INVALID);
}
END_TEST

START_TEST(test_generate_templates)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv, k;
	CK_MECHANISM ec = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_MECHANISM aes_gen = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_ULONG l32 = 32, bits = 2048, wide = 1;
	CK_BYTE wide4[4] = { 1, 0, 0, 0 };
	CK_ATTRIBUTE by_label[] = { { CKA_LABEL, "half", 4 } };
	CK_ATTRIBUTE pubt[] = {
		{ CKA_EC_PARAMS, (void *)env_p256, sizeof(env_p256) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_LABEL, "half", 4 },
		{ CKA_KEY_TYPE, &k_ec, sizeof(k_ec) },
	};
	CK_ATTRIBUTE privt[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_LABEL, "half", 4 },
		{ CKA_SIGN, &yes, sizeof(yes) },
	};

	env_init();
	slot = env_new_zone("gentmpl");
	h = env_session(slot, 1, 1);
	/* A key type the mechanism does not make. */
	pubt[3].pValue = &k_rsa;
	ck_assert_int_eq(F->C_GenerateKeyPair(h, &ec, pubt, 4, privt, 3, &pub, &priv),
	    CKR_TEMPLATE_INCONSISTENT);
	pubt[3].pValue = &k_ec;
	privt[2].type = CKA_KEY_TYPE;
	privt[2].pValue = &k_ed;
	privt[2].ulValueLen = sizeof(k_ed);
	ck_assert_int_eq(F->C_GenerateKeyPair(h, &ec, pubt, 4, privt, 3, &pub, &priv),
	    CKR_TEMPLATE_INCONSISTENT);
	/* A class the mechanism does not make. */
	privt[2].type = CKA_CLASS;
	privt[2].pValue = &c_secret;
	privt[2].ulValueLen = sizeof(c_secret);
	ck_assert_int_eq(F->C_GenerateKeyPair(h, &ec, pubt, 4, privt, 3, &pub, &priv),
	    CKR_TEMPLATE_INCONSISTENT);
	/* Attributes only the module sets. */
	privt[2].type = CKA_LOCAL;
	privt[2].pValue = &yes;
	privt[2].ulValueLen = sizeof(yes);
	ck_assert_int_eq(F->C_GenerateKeyPair(h, &ec, pubt, 4, privt, 3, &pub, &priv),
	    CKR_ATTRIBUTE_READ_ONLY);
	pubt[3].type = CKA_LOCAL;
	pubt[3].pValue = &yes;
	pubt[3].ulValueLen = sizeof(yes);
	privt[2].type = CKA_SIGN;
	ck_assert_int_eq(F->C_GenerateKeyPair(h, &ec, pubt, 4, privt, 3, &pub, &priv),
	    CKR_ATTRIBUTE_READ_ONLY);
	pubt[3].type = CKA_VERIFY;
	/* The private half refused: no public half is left in the store. */
	privt[2].pValue = wide4;
	privt[2].ulValueLen = sizeof(wide4);
	ck_assert_int_eq(F->C_GenerateKeyPair(h, &ec, pubt, 4, privt, 3, &pub, &priv),
	    CKR_ATTRIBUTE_VALUE_INVALID);
	privt[2].type = CKA_MODULUS_BITS;
	privt[2].pValue = &bits;
	privt[2].ulValueLen = sizeof(bits);
	ck_assert_int_eq(F->C_GenerateKeyPair(h, &ec, pubt, 4, privt, 3, &pub, &priv),
	    CKR_ATTRIBUTE_TYPE_INVALID);
	privt[2].type = CKA_ALWAYS_SENSITIVE;
	privt[2].pValue = &yes;
	privt[2].ulValueLen = sizeof(yes);
	ck_assert_int_eq(F->C_GenerateKeyPair(h, &ec, pubt, 4, privt, 3, &pub, &priv),
	    CKR_ATTRIBUTE_READ_ONLY);
	ck_assert_uint_eq(find(h, by_label, 1, NULL), 0);
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_init();
	h = env_session(slot, 1, 1);
	ck_assert_uint_eq(find(h, by_label, 1, NULL), 0);
	/* And a good template still works. */
	privt[2].type = CKA_SIGN;
	ck_assert_int_eq(F->C_GenerateKeyPair(h, &ec, pubt, 4, privt, 3, &pub, &priv), CKR_OK);
	ck_assert_uint_eq(find(h, by_label, 1, NULL), 2);

	/* A token key needs a read-write session. */
	{
		CK_SESSION_HANDLE ro = env_session(slot, 0, 1);
		CK_ATTRIBUTE t[] = {
			{ CKA_VALUE_LEN, &l32, sizeof(l32) },
			{ CKA_TOKEN, &yes, sizeof(yes) },
		};

		ck_assert_int_eq(F->C_GenerateKey(ro, &aes_gen, t, 2, &k), CKR_SESSION_READ_ONLY);
		ck_assert_int_eq(F->C_GenerateKeyPair(ro, &ec, pubt, 4, privt, 3, &pub, &priv),
		    CKR_SESSION_READ_ONLY);
		ck_assert_int_eq(F->C_CloseSession(ro), CKR_OK);
	}
	/* Secret keys: the same rules. */
	{
		CK_ATTRIBUTE t[] = {
			{ CKA_VALUE_LEN, &l32, sizeof(l32) },
			{ CKA_KEY_TYPE, &k_generic, sizeof(k_generic) },
		};

		ck_assert_int_eq(F->C_GenerateKey(h, &aes_gen, t, 2, &k),
		    CKR_TEMPLATE_INCONSISTENT);
		t[1].type = CKA_LOCAL;
		t[1].pValue = &no;
		t[1].ulValueLen = sizeof(no);
		ck_assert_int_eq(F->C_GenerateKey(h, &aes_gen, t, 2, &k),
		    CKR_ATTRIBUTE_READ_ONLY);
		t[1].type = CKA_CLASS;
		t[1].pValue = &c_data;
		t[1].ulValueLen = sizeof(c_data);
		ck_assert_int_eq(F->C_GenerateKey(h, &aes_gen, t, 2, &k),
		    CKR_TEMPLATE_INCONSISTENT);
		t[1].type = CKA_ENCRYPT;
		t[1].pValue = &wide;
		t[1].ulValueLen = sizeof(wide);
		ck_assert_int_eq(F->C_GenerateKey(h, &aes_gen, t, 2, &k),
		    CKR_ATTRIBUTE_VALUE_INVALID);
		t[1].pValue = &yes;
		t[1].ulValueLen = sizeof(yes);
		ck_assert_int_eq(F->C_GenerateKey(h, &aes_gen, t, 2, &k), CKR_OK);
		ck_assert_int_eq(get_bool(h, k, CKA_LOCAL), CK_TRUE);
		ck_assert_uint_eq(get_ulong(h, k, CKA_KEY_GEN_MECHANISM), CKM_AES_KEY_GEN);
	}
}
END_TEST

START_TEST(test_hostile_arguments)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE o, pub, priv, aes, found[4];
	CK_MECHANISM gen = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_MECHANISM ec = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_KWP, NULL, 0 };
	CK_MECHANISM ecdsa = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_ULONG l32 = 32, n;
	CK_ATTRIBUTE gt[] = { { CKA_VALUE_LEN, &l32, sizeof(l32) } };
	CK_ATTRIBUTE pubt[] = { { CKA_EC_PARAMS, (void *)env_p256, sizeof(env_p256) } };
	CK_ATTRIBUTE data_t[] = { { CKA_CLASS, &c_data, sizeof(c_data) } };
	CK_ATTRIBUTE label = { CKA_LABEL, NULL, 0 };
	CK_BYTE blob[128];
	CK_ULONG len = sizeof(blob);
	CK_SESSION_INFO si;
	CK_TOKEN_INFO ti;
	CK_SLOT_INFO sli;
	CK_MECHANISM_INFO mi;

	env_init();
	slot = env_new_zone("hostile");
	h = env_session(slot, 1, 1);
	aes = gen_aes(h, (CK_ATTRIBUTE[]){ { CKA_EXTRACTABLE, &yes, sizeof(yes) } }, 1);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "hostile", CK_FALSE, &pub, &priv);

	/* NULL where a pointer is required. */
	ck_assert_int_eq(F->C_CreateObject(h, NULL, 1, &o), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_CreateObject(h, data_t, 1, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GetAttributeValue(h, pub, NULL, 1), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_SetAttributeValue(h, pub, NULL, 1), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_FindObjectsInit(h, NULL, 1), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_FindObjectsInit(h, NULL, 0), CKR_OK);
	ck_assert_int_eq(F->C_FindObjects(h, NULL, 4, &n), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_FindObjects(h, found, 4, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_FindObjectsFinal(h), CKR_OK);
	ck_assert_int_eq(F->C_GenerateKey(h, NULL, gt, 1, &o), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GenerateKey(h, &gen, NULL, 1, &o), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GenerateKey(h, &gen, gt, 1, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GenerateKeyPair(h, NULL, pubt, 1, NULL, 0, &pub, &priv),
	    CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GenerateKeyPair(h, &ec, NULL, 1, NULL, 0, &pub, &priv),
	    CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GenerateKeyPair(h, &ec, pubt, 1, NULL, 1, &pub, &priv),
	    CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GenerateKeyPair(h, &ec, pubt, 1, NULL, 0, NULL, &priv),
	    CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GenerateKeyPair(h, &ec, pubt, 1, NULL, 0, &pub, NULL),
	    CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_WrapKey(h, &kwp, aes, aes, blob, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_WrapKey(h, NULL, aes, aes, blob, &len), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_UnwrapKey(h, &kwp, aes, NULL, 40, data_t, 1, &o),
	    CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_UnwrapKey(h, &kwp, aes, blob, 40, NULL, 1, &o), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_UnwrapKey(h, &kwp, aes, blob, 40, data_t, 1, NULL),
	    CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_DeriveKey(h, NULL, priv, NULL, 0, &o), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GetSessionInfo(h, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GetTokenInfo(slot, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GetSlotInfo(slot, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GetInfo(NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GetMechanismInfo(slot, CKM_AES_KEY_GEN, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GetMechanismList(slot, NULL, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GetSlotList(CK_FALSE, NULL, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GetObjectSize(h, pub, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_CopyObject(h, pub, NULL, 0, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_SignInit(h, NULL, priv), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GenerateRandom(h, NULL, 8), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, NULL),
	    CKR_ARGUMENTS_BAD);

	/* An invalid session handle, and CK_INVALID_HANDLE as one. */
	{
		CK_SESSION_HANDLE bad[] = { 0x7fff0001, CK_INVALID_HANDLE };
		size_t i;

		for (i = 0; i < EV_ARRAY_LEN(bad); i++) {
			CK_SESSION_HANDLE b = bad[i];

			ck_assert_int_eq(F->C_CreateObject(b, data_t, 1, &o),
			    CKR_SESSION_HANDLE_INVALID);
			ck_assert_int_eq(F->C_GetAttributeValue(b, pub, &label, 1),
			    CKR_SESSION_HANDLE_INVALID);
			ck_assert_int_eq(F->C_SetAttributeValue(b, pub, &label, 1),
			    CKR_SESSION_HANDLE_INVALID);
			ck_assert_int_eq(F->C_DestroyObject(b, pub), CKR_SESSION_HANDLE_INVALID);
			ck_assert_int_eq(F->C_CopyObject(b, pub, NULL, 0, &o),
			    CKR_SESSION_HANDLE_INVALID);
			ck_assert_int_eq(F->C_FindObjectsInit(b, NULL, 0),
			    CKR_SESSION_HANDLE_INVALID);
			ck_assert_int_eq(F->C_FindObjects(b, found, 4, &n),
			    CKR_SESSION_HANDLE_INVALID);
			ck_assert_int_eq(F->C_FindObjectsFinal(b), CKR_SESSION_HANDLE_INVALID);
			ck_assert_int_eq(F->C_GenerateKey(b, &gen, gt, 1, &o),
			    CKR_SESSION_HANDLE_INVALID);
			ck_assert_int_eq(F->C_GenerateKeyPair(b, &ec, pubt, 1, NULL, 0, &pub, &priv),
			    CKR_SESSION_HANDLE_INVALID);
			ck_assert_int_eq(F->C_WrapKey(b, &kwp, aes, aes, blob, &len),
			    CKR_SESSION_HANDLE_INVALID);
			ck_assert_int_eq(F->C_SignInit(b, &ecdsa, priv), CKR_SESSION_HANDLE_INVALID);
			ck_assert_int_eq(F->C_GetSessionInfo(b, &si), CKR_SESSION_HANDLE_INVALID);
			ck_assert_int_eq(F->C_CloseSession(b), CKR_SESSION_HANDLE_INVALID);
			ck_assert_int_eq(F->C_Logout(b), CKR_SESSION_HANDLE_INVALID);
		}
	}

	ck_assert_int_eq(F->C_GetTokenInfo(0x7fff0001, &ti), CKR_SLOT_ID_INVALID);
	ck_assert_int_eq(F->C_GetSlotInfo(0x7fff0001, &sli), CKR_SLOT_ID_INVALID);
	ck_assert_int_eq(F->C_GetMechanismInfo(slot, 0x7fff0001, &mi), CKR_MECHANISM_INVALID);
	ck_assert_int_eq(F->C_GenerateKey(h, &(CK_MECHANISM){ 0x7fff0001, NULL, 0 }, gt, 1, &o),
	    CKR_MECHANISM_INVALID);
	ck_assert_int_eq(F->C_GenerateKey(h, &ec, gt, 1, &o), CKR_MECHANISM_INVALID);

	/* CK_INVALID_HANDLE as an object. */
	ck_assert_int_eq(F->C_GetAttributeValue(h, CK_INVALID_HANDLE, &label, 1),
	    CKR_OBJECT_HANDLE_INVALID);
	ck_assert_int_eq(F->C_SetAttributeValue(h, CK_INVALID_HANDLE, &label, 1),
	    CKR_OBJECT_HANDLE_INVALID);
	ck_assert_int_eq(F->C_SignInit(h, &ecdsa, CK_INVALID_HANDLE), CKR_KEY_HANDLE_INVALID);
	ck_assert_int_eq(F->C_WrapKey(h, &kwp, CK_INVALID_HANDLE, aes, blob, &len),
	    CKR_WRAPPING_KEY_HANDLE_INVALID);
	ck_assert_int_eq(F->C_WrapKey(h, &kwp, aes, CK_INVALID_HANDLE, blob, &len),
	    CKR_KEY_HANDLE_INVALID);
	ck_assert_int_eq(F->C_UnwrapKey(h, &kwp, CK_INVALID_HANDLE, blob, 40,
			     (CK_ATTRIBUTE[]){ { CKA_CLASS, &c_secret, sizeof(c_secret) },
				 { CKA_KEY_TYPE, &k_aes, sizeof(k_aes) } },
			     2, &o),
	    CKR_UNWRAPPING_KEY_HANDLE_INVALID);
	/* A key handle that is not a key. */
	ck_assert_int_eq(F->C_CreateObject(h, data_t, 1, &o), CKR_OK);
	ck_assert_int_eq(F->C_SignInit(h, &ecdsa, o), CKR_KEY_HANDLE_INVALID);

	/* Malformed templates. */
	{
		CK_BYTE wide[4] = { 1, 0, 0, 0 };
		CK_ATTRIBUTE bool4[] = {
			{ CKA_CLASS, &c_data, sizeof(c_data) },
			{ CKA_TOKEN, wide, sizeof(wide) },
		};
		CK_ATTRIBUTE short_class[] = { { CKA_CLASS, wide, sizeof(wide) } };
		CK_ATTRIBUTE unknown[] = {
			{ CKA_CLASS, &c_data, sizeof(c_data) },
			{ 0x0badbeefUL, "x", 1 },
		};
		CK_ATTRIBUTE twice[] = {
			{ CKA_CLASS, &c_data, sizeof(c_data) },
			{ CKA_LABEL, "one", 3 },
			{ CKA_LABEL, "two", 3 },
		};
		CK_ATTRIBUTE twice_bool[] = {
			{ CKA_CLASS, &c_data, sizeof(c_data) },
			{ CKA_TOKEN, &no, sizeof(no) },
			{ CKA_TOKEN, &yes, sizeof(yes) },
		};
		CK_ATTRIBUTE twice_class[] = {
			{ CKA_CLASS, &c_data, sizeof(c_data) },
			{ CKA_CLASS, &c_secret, sizeof(c_secret) },
		};
		CK_ATTRIBUTE null_value[] = {
			{ CKA_CLASS, &c_data, sizeof(c_data) },
			{ CKA_VALUE, NULL, 5 },
		};
		CK_ATTRIBUTE bad_class[] = { { CKA_CLASS, &l32, sizeof(l32) } };
		CK_ATTRIBUTE set_bool4 = { CKA_SIGN, wide, sizeof(wide) };
		CK_ATTRIBUTE set_unknown = { 0x0badbeefUL, "x", 1 };
		CK_ATTRIBUTE secret_twice[] = {
			{ CKA_CLASS, &c_secret, sizeof(c_secret) },
			{ CKA_KEY_TYPE, &k_aes, sizeof(k_aes) },
			{ CKA_VALUE, (void *)aes_value, 16 },
			{ CKA_VALUE, (void *)aes_value, 32 },
		};

		ck_assert_int_eq(F->C_CreateObject(h, bool4, 2, &o), CKR_ATTRIBUTE_VALUE_INVALID);
		ck_assert_int_eq(F->C_CreateObject(h, short_class, 1, &o),
		    CKR_ATTRIBUTE_VALUE_INVALID);
		ck_assert_int_eq(F->C_CreateObject(h, unknown, 2, &o), CKR_ATTRIBUTE_TYPE_INVALID);
		ck_assert_int_eq(F->C_CreateObject(h, twice, 3, &o), CKR_TEMPLATE_INCONSISTENT);
		ck_assert_int_eq(F->C_CreateObject(h, twice_bool, 3, &o),
		    CKR_TEMPLATE_INCONSISTENT);
		ck_assert_int_eq(F->C_CreateObject(h, twice_class, 2, &o),
		    CKR_TEMPLATE_INCONSISTENT);
		ck_assert_int_eq(F->C_CreateObject(h, secret_twice, 4, &o),
		    CKR_TEMPLATE_INCONSISTENT);
		ck_assert_int_eq(F->C_CreateObject(h, null_value, 2, &o),
		    CKR_ATTRIBUTE_VALUE_INVALID);
		ck_assert_int_eq(F->C_CreateObject(h, bad_class, 1, &o),
		    CKR_ATTRIBUTE_VALUE_INVALID);
		ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &set_bool4, 1),
		    CKR_ATTRIBUTE_VALUE_INVALID);
		ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &set_unknown, 1),
		    CKR_ATTRIBUTE_TYPE_INVALID);
		gt[0].pValue = wide;
		gt[0].ulValueLen = sizeof(wide);
		ck_assert_int_eq(F->C_GenerateKey(h, &gen, gt, 1, &o),
		    CKR_ATTRIBUTE_VALUE_INVALID);
		/* Nothing of these was made. */
		ck_assert_uint_eq(find(h, twice, 1, NULL), 1);
	}
	/* C_GetAttributeValue answers each attribute (PKCS#11 3.0 5.7). */
	{
		CK_BYTE b1[64], b2[4];
		CK_ATTRIBUTE t[] = {
			{ 0x0badbeefUL, b1, sizeof(b1) },
			{ CKA_EC_PARAMS, b1, sizeof(b1) },
			{ CKA_EC_POINT, b2, sizeof(b2) },
		};

		ck_assert_int_eq(F->C_GetAttributeValue(h, pub, t, 3), CKR_ATTRIBUTE_TYPE_INVALID);
		ck_assert_uint_eq(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
		ck_assert_uint_eq(t[1].ulValueLen, sizeof(env_p256));
		ck_assert_mem_eq(b1, env_p256, sizeof(env_p256));
		ck_assert_uint_eq(t[2].ulValueLen, CK_UNAVAILABLE_INFORMATION);
		t[0].type = CKA_LABEL;
		t[0].ulValueLen = sizeof(b1);
		t[2].ulValueLen = sizeof(b2);
		ck_assert_int_eq(F->C_GetAttributeValue(h, pub, t, 3), CKR_BUFFER_TOO_SMALL);
		ck_assert_uint_eq(t[0].ulValueLen, 7);
		ck_assert_uint_eq(t[2].ulValueLen, CK_UNAVAILABLE_INFORMATION);
	}
}
END_TEST

/* Objects of one zone are not there for a session of another. */
START_TEST(test_other_zone_handles)
{
	CK_SLOT_ID za, zb;
	CK_SESSION_HANDLE a, b;
	CK_OBJECT_HANDLE pub, priv, tpub, tpriv, aes, taes, bkey, o;
	CK_MECHANISM ecdsa = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_MECHANISM ecb = { CKM_AES_ECB, NULL, 0 };
	CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_KWP, NULL, 0 };
	CK_ATTRIBUTE label = { CKA_LABEL, "stolen", 6 };
	CK_ATTRIBUTE all[] = { { CKA_LABEL, "a-key", 5 } };
	CK_ATTRIBUTE tok[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_LABEL, "a-key", 5 },
		{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
	};
	CK_BYTE blob[128];
	CK_ULONG len;
	CK_OBJECT_HANDLE keys[6];
	size_t i;

	env_init();
	za = env_new_zone("zone-a");
	zb = env_new_zone("zone-b");
	ck_assert_uint_ne(za, zb);
	a = env_session(za, 1, 1);
	b = env_session(zb, 1, 1);
	env_gen_ec(a, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "a-key", CK_FALSE, &pub, &priv);
	env_gen_ec(a, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "a-key", CK_TRUE, &tpub, &tpriv);
	aes = gen_aes(a, tok + 1, 2);
	taes = gen_aes(a, tok, 3);
	bkey = gen_aes(b, tok + 2, 1);
	keys[0] = pub;
	keys[1] = priv;
	keys[2] = tpub;
	keys[3] = tpriv;
	keys[4] = aes;
	keys[5] = taes;

	ck_assert_uint_eq(find(a, all, 1, NULL), 6);
	ck_assert_uint_eq(find(b, all, 1, NULL), 0);
	ck_assert_uint_eq(find(b, NULL, 0, NULL), 1);
	for (i = 0; i < EV_ARRAY_LEN(keys); i++) {
		CK_OBJECT_HANDLE k = keys[i];

		ck_assert_int_eq(F->C_GetAttributeValue(b, k, &label, 1),
		    CKR_OBJECT_HANDLE_INVALID);
		ck_assert_int_eq(F->C_SetAttributeValue(b, k, &label, 1),
		    CKR_OBJECT_HANDLE_INVALID);
		ck_assert_int_eq(F->C_CopyObject(b, k, NULL, 0, &o), CKR_OBJECT_HANDLE_INVALID);
		ck_assert_int_eq(F->C_DestroyObject(b, k), CKR_OBJECT_HANDLE_INVALID);
		ck_assert_int_eq(F->C_GetObjectSize(b, k, &len), CKR_OBJECT_HANDLE_INVALID);
		ck_assert_int_eq(F->C_SignInit(b, &ecdsa, k), CKR_KEY_HANDLE_INVALID);
		ck_assert_int_eq(F->C_VerifyInit(b, &ecdsa, k), CKR_KEY_HANDLE_INVALID);
		ck_assert_int_eq(F->C_EncryptInit(b, &ecb, k), CKR_KEY_HANDLE_INVALID);
		ck_assert_int_eq(F->C_DecryptInit(b, &ecb, k), CKR_KEY_HANDLE_INVALID);
		ck_assert_int_eq(wrap(b, k, bkey, blob, &len), CKR_WRAPPING_KEY_HANDLE_INVALID);
		ck_assert_int_eq(wrap(b, bkey, k, blob, &len), CKR_KEY_HANDLE_INVALID);
	}
	/* Nothing of zone a changed, and it still works there. */
	ck_assert_uint_eq(find(a, all, 1, NULL), 6);
	ck_assert_int_eq(wrap(a, aes, taes, blob, &len), CKR_OK);
	ck_assert_int_eq(F->C_UnwrapKey(b, &kwp, aes, blob, len,
			     (CK_ATTRIBUTE[]){ { CKA_CLASS, &c_secret, sizeof(c_secret) },
				 { CKA_KEY_TYPE, &k_aes, sizeof(k_aes) } },
			     2, &o),
	    CKR_UNWRAPPING_KEY_HANDLE_INVALID);
	ck_assert_int_eq(F->C_SignInit(a, &ecdsa, tpriv), CKR_OK);
	/* After a restart too. */
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_init();
	b = env_session(zb, 1, 1);
	ck_assert_int_eq(F->C_GetAttributeValue(b, tpriv, &label, 1), CKR_OBJECT_HANDLE_INVALID);
	ck_assert_int_eq(F->C_SignInit(b, &ecdsa, tpriv), CKR_KEY_HANDLE_INVALID);
	a = env_session(za, 1, 1);
	ck_assert_int_eq(F->C_SignInit(a, &ecdsa, tpriv), CKR_OK);
}
END_TEST

/* Every object has a CKA_UNIQUE_ID the token chose (PKCS#11 3.0 4.4). */
START_TEST(test_unique_id)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE a, b, copy, found;
	CK_BYTE ida[128], idb[128], idc[128], again[128];
	CK_ULONG la, lb, lc;
	CK_ATTRIBUTE data_t[] = {
		{ CKA_CLASS, &c_data, sizeof(c_data) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE given[] = {
		{ CKA_CLASS, &c_data, sizeof(c_data) },
		{ CKA_UNIQUE_ID, "mine", 4 },
	};
	CK_ATTRIBUTE set = { CKA_UNIQUE_ID, "mine", 4 };
	CK_ATTRIBUTE by_id = { CKA_UNIQUE_ID, ida, 0 };

	env_init();
	slot = env_new_zone("uniqueid");
	h = env_session(slot, 1, 1);
	ck_assert_int_eq(F->C_CreateObject(h, data_t, 2, &a), CKR_OK);
	b = gen_aes(h, NULL, 0);
	ck_assert_int_eq(F->C_CopyObject(h, a, NULL, 0, &copy), CKR_OK);
	la = get_bytes(h, a, CKA_UNIQUE_ID, ida, sizeof(ida));
	lb = get_bytes(h, b, CKA_UNIQUE_ID, idb, sizeof(idb));
	lc = get_bytes(h, copy, CKA_UNIQUE_ID, idc, sizeof(idc));
	ck_assert_uint_gt(la, 0);
	ck_assert_uint_gt(lb, 0);
	ck_assert_uint_gt(lc, 0);
	ck_assert(la != lb || memcmp(ida, idb, la) != 0);
	ck_assert(la != lc || memcmp(ida, idc, la) != 0);
	ck_assert_int_eq(F->C_CreateObject(h, given, 2, &b), CKR_ATTRIBUTE_READ_ONLY);
	ck_assert_int_eq(F->C_SetAttributeValue(h, a, &set, 1), CKR_ATTRIBUTE_READ_ONLY);
	ck_assert_int_eq(F->C_CopyObject(h, a, &set, 1, &b), CKR_ATTRIBUTE_READ_ONLY);
	/* It never changes, and finds its object. */
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_init();
	h = env_session(slot, 1, 1);
	ck_assert_uint_eq(get_bytes(h, a, CKA_UNIQUE_ID, again, sizeof(again)), la);
	ck_assert_mem_eq(again, ida, la);
	by_id.ulValueLen = la;
	ck_assert_uint_eq(find(h, &by_id, 1, &found), 1);
	ck_assert_uint_eq(found, a);
}
END_TEST

/* Token keys still work after their attributes changed and the module restarted. */
START_TEST(test_token_key_changed_then_used)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv, aes;
	CK_ATTRIBUTE tok[] = { { CKA_TOKEN, &yes, sizeof(yes) } };
	CK_ATTRIBUTE changes[] = {
		{ CKA_LABEL, "renamed", 7 },
		{ CKA_ID, "new-id", 6 },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_DERIVE, &no, sizeof(no) },
	};
	CK_MECHANISM ecb = { CKM_AES_ECB, NULL, 0 };
	CK_BYTE block[16] = { 0 }, c1[16], c2[16];
	CK_ULONG l1 = sizeof(c1), l2 = sizeof(c2);
	EVP_PKEY *k;

	env_init();
	slot = env_new_zone("changed");
	h = env_session(slot, 1, 1);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "chg", CK_TRUE, &pub, &priv);
	aes = make_aes(h, tok, 1);
	ck_assert_int_eq(F->C_EncryptInit(h, &ecb, aes), CKR_OK);
	ck_assert_int_eq(F->C_Encrypt(h, block, 16, c1, &l1), CKR_OK);
	ck_assert_int_eq(F->C_SetAttributeValue(h, priv, changes, 4), CKR_OK);
	ck_assert_int_eq(F->C_SetAttributeValue(h, aes, changes, 4), CKR_OK);
	{
		CK_BYTE spki[256];
		CK_ATTRIBUTE a = { CKA_PUBLIC_KEY_INFO, spki, sizeof(spki) };
		const unsigned char *p = spki;

		ck_assert_int_eq(F->C_GetAttributeValue(h, pub, &a, 1), CKR_OK);
		k = d2i_PUBKEY(NULL, &p, (long)a.ulValueLen);
		ck_assert_ptr_nonnull(k);
	}
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_init();
	h = env_session(slot, 1, 1);
	module_signs(h, priv, CKM_ECDSA_SHA256, k, EVP_sha256(), 1);
	ck_assert_int_eq(F->C_EncryptInit(h, &ecb, aes), CKR_OK);
	ck_assert_int_eq(F->C_Encrypt(h, block, 16, c2, &l2), CKR_OK);
	ck_assert_mem_eq(c1, c2, 16);
	EVP_PKEY_free(k);
}
END_TEST

/* Private values of an extractable, non-sensitive private key are what was imported. */
START_TEST(test_private_values_readable)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE ec, rsa;
	EVP_PKEY *ek = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY *rk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	CK_BYTE d[32], n[256], e[8], rd[256], p[128], q[128], dp[128], dq[128], qi[128];
	CK_BYTE buf[512];
	CK_ULONG dl, nl, el, rdl, pl, ql, dpl, dql, qil, len;
	CK_OBJECT_HANDLE bare;
	BIGNUM *x, *y;

	ck_assert_ptr_nonnull(ek);
	ck_assert_ptr_nonnull(rk);
	dl = bn_param(ek, OSSL_PKEY_PARAM_PRIV_KEY, d, sizeof(d));
	nl = bn_param(rk, OSSL_PKEY_PARAM_RSA_N, n, sizeof(n));
	el = bn_param(rk, OSSL_PKEY_PARAM_RSA_E, e, sizeof(e));
	rdl = bn_param(rk, OSSL_PKEY_PARAM_RSA_D, rd, sizeof(rd));
	pl = bn_param(rk, OSSL_PKEY_PARAM_RSA_FACTOR1, p, sizeof(p));
	ql = bn_param(rk, OSSL_PKEY_PARAM_RSA_FACTOR2, q, sizeof(q));
	dpl = bn_param(rk, OSSL_PKEY_PARAM_RSA_EXPONENT1, dp, sizeof(dp));
	dql = bn_param(rk, OSSL_PKEY_PARAM_RSA_EXPONENT2, dq, sizeof(dq));
	qil = bn_param(rk, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, qi, sizeof(qi));
	{
		CK_ATTRIBUTE et[] = {
			{ CKA_CLASS, &c_priv, sizeof(c_priv) },
			{ CKA_KEY_TYPE, &k_ec, sizeof(k_ec) },
			{ CKA_EC_PARAMS, (void *)env_p256, sizeof(env_p256) },
			{ CKA_VALUE, d, dl },
			{ CKA_SENSITIVE, &no, sizeof(no) },
			{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
		};
		CK_ATTRIBUTE rt[] = {
			{ CKA_CLASS, &c_priv, sizeof(c_priv) },
			{ CKA_KEY_TYPE, &k_rsa, sizeof(k_rsa) },
			{ CKA_MODULUS, n, nl },
			{ CKA_PUBLIC_EXPONENT, e, el },
			{ CKA_PRIVATE_EXPONENT, rd, rdl },
			{ CKA_PRIME_1, p, pl },
			{ CKA_SENSITIVE, &no, sizeof(no) },
			{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
			{ CKA_PRIME_2, q, ql },
			{ CKA_EXPONENT_1, dp, dpl },
			{ CKA_EXPONENT_2, dq, dql },
			{ CKA_COEFFICIENT, qi, qil },
		};

		h = user_session("privvalues");
		ck_assert_int_eq(F->C_CreateObject(h, et, 6, &ec), CKR_OK);
		ck_assert_int_eq(F->C_CreateObject(h, rt, 12, &rsa), CKR_OK);
		/* Only the modulus and the exponents: a private key a token may hold. */
		ck_assert_int_eq(F->C_CreateObject(h, rt, 5, &bare), CKR_OK);
	}
	/* Compared as numbers: a leading zero byte may or may not be there. */
	len = get_bytes(h, ec, CKA_VALUE, buf, sizeof(buf));
	x = BN_bin2bn(buf, (int)len, NULL);
	y = BN_bin2bn(d, (int)dl, NULL);
	ck_assert_int_eq(BN_cmp(x, y), 0);
	BN_free(x);
	BN_free(y);
	len = get_bytes(h, rsa, CKA_PRIVATE_EXPONENT, buf, sizeof(buf));
	x = BN_bin2bn(buf, (int)len, NULL);
	y = BN_bin2bn(rd, (int)rdl, NULL);
	ck_assert_int_eq(BN_cmp(x, y), 0);
	BN_free(x);
	BN_free(y);
	len = get_bytes(h, rsa, CKA_PRIME_2, buf, sizeof(buf));
	x = BN_bin2bn(buf, (int)len, NULL);
	y = BN_bin2bn(q, (int)ql, NULL);
	ck_assert_int_eq(BN_cmp(x, y), 0);
	BN_free(x);
	BN_free(y);
	module_signs(h, rsa, CKM_SHA256_RSA_PKCS, rk, EVP_sha256(), 0);
	module_signs(h, bare, CKM_SHA256_RSA_PKCS, rk, EVP_sha256(), 0);
	OPENSSL_cleanse(d, sizeof(d));
	OPENSSL_cleanse(rd, sizeof(rd));
	EVP_PKEY_free(ek);
	EVP_PKEY_free(rk);
}
END_TEST

/* C_CreateObject refusals for keys. */
/*
 * Searches follow another process's changes at once: a key it makes is
 * found by the next search here, one it renames is found by its new label
 * only, one it destroys is found no more; by templates the store answers
 * alone (label, class, CKA_TOKEN) and by one that needs the object loaded
 * (CKA_ENCRYPT). Session objects are found beside token objects, and
 * CKA_TOKEN picks one kind.
 */
struct find_kid_arg {
	CK_SLOT_ID slot;
};

static void
kid_find_changes(int rd, int wr, void *arg)
{
	const struct find_kid_arg *a = arg;
	CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_ULONG len = 32;
	CK_ATTRIBUTE t[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_VALUE_LEN, &len, sizeof(len) },
		{ CKA_ENCRYPT, &yes, sizeof(yes) },
		{ CKA_LABEL, "from-child", 10 },
	};
	CK_ATTRIBUTE rename[] = { { CKA_LABEL, "renamed-by-child", 16 } };
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
	CK_RV rv = kid_init();

	if (rv == CKR_OK)
		rv = kid_session(a->slot, 1, &h);
	if (rv == CKR_OK)
		rv = F->C_GenerateKey(h, &m, t, EV_ARRAY_LEN(t), &o);
	put(wr, rv);
	put(wr, o);
	(void)take(rd);
	put(wr, F->C_SetAttributeValue(h, o, rename, 1));
	(void)take(rd);
	put(wr, F->C_DestroyObject(h, o));
	(void)F->C_Finalize(NULL);
	_exit(0);
}

START_TEST(test_find_follows_other_process)
{
	struct find_kid_arg a;
	struct kid k;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE child, sess, found[4];
	CK_ATTRIBUTE by_label[] = { { CKA_LABEL, "from-child", 10 } };
	CK_ATTRIBUTE by_new[] = { { CKA_LABEL, "renamed-by-child", 16 } };
	CK_ATTRIBUTE by_new_cls[] = { { CKA_CLASS, &c_secret, sizeof(c_secret) },
		{ CKA_LABEL, "renamed-by-child", 16 }, { CKA_TOKEN, &yes, sizeof(yes) } };
	CK_ATTRIBUTE by_new_loaded[] = { { CKA_LABEL, "renamed-by-child", 16 },
		{ CKA_ENCRYPT, &yes, sizeof(yes) } };
	CK_ATTRIBUTE by_new_session[] = { { CKA_LABEL, "renamed-by-child", 16 },
		{ CKA_TOKEN, &no, sizeof(no) } };
	CK_ATTRIBUTE sess_tmpl[] = {
		{ CKA_CLASS, &c_secret, sizeof(c_secret) },
		{ CKA_KEY_TYPE, &k_aes, sizeof(k_aes) },
		{ CKA_VALUE, (void *)aes_value, sizeof(aes_value) },
		{ CKA_LABEL, "renamed-by-child", 16 },
	};
	char label[32];
	CK_ATTRIBUTE got = { CKA_LABEL, label, sizeof(label) };
	CK_SESSION_INFO si;

	h = user_session("findproc");
	ck_assert_int_eq(F->C_GetSessionInfo(h, &si), CKR_OK);
	a.slot = si.slotID;
	ck_assert_uint_eq(env_find(h, by_label, 1, found, 4), 0);

	kid_start(&k, kid_find_changes, &a);
	kid_expect(&k, CKR_OK, "child: C_GenerateKey");
	child = kid_get(&k);
	ck_assert_uint_eq(env_find(h, by_label, 1, found, 4), 1);
	ck_assert_uint_eq(found[0], child);
	/* Loaded here before the rename: the rename must reach it too. */
	ck_assert_int_eq(F->C_GetAttributeValue(h, child, &got, 1), CKR_OK);
	ck_assert_uint_eq(got.ulValueLen, 10);

	ck_assert_int_eq(F->C_CreateObject(h, sess_tmpl, EV_ARRAY_LEN(sess_tmpl), &sess),
	    CKR_OK);
	kid_put(&k, 1);
	kid_expect(&k, CKR_OK, "child: C_SetAttributeValue");
	ck_assert_uint_eq(env_find(h, by_label, 1, found, 4), 0);
	ck_assert_uint_eq(env_find(h, by_new, 1, found, 4), 2); /* the token key, then ours */
	ck_assert_uint_eq(found[0], child);
	ck_assert_uint_eq(found[1], sess);
	ck_assert_uint_eq(env_find(h, by_new_cls, 3, found, 4), 1);
	ck_assert_uint_eq(found[0], child);
	ck_assert_uint_eq(env_find(h, by_new_loaded, 2, found, 4), 2);
	ck_assert_uint_eq(env_find(h, by_new_session, 2, found, 4), 1);
	ck_assert_uint_eq(found[0], sess);
	got.ulValueLen = sizeof(label);
	ck_assert_int_eq(F->C_GetAttributeValue(h, child, &got, 1), CKR_OK);
	ck_assert_mem_eq(label, "renamed-by-child", 16);

	kid_put(&k, 1);
	kid_expect(&k, CKR_OK, "child: C_DestroyObject");
	kid_done(&k);
	ck_assert_uint_eq(env_find(h, by_new_cls, 3, found, 4), 0);
	ck_assert_uint_eq(env_find(h, by_new_loaded, 2, found, 4), 1);
	ck_assert_uint_eq(env_find(h, by_new, 1, found, 4), 1);
	ck_assert_uint_eq(found[0], sess);
	ck_assert_int_eq(F->C_DestroyObject(h, sess), CKR_OK);
	ck_assert_uint_eq(env_find(h, by_new, 1, found, 4), 0);
}
END_TEST

START_TEST(test_create_key_refusals)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE o;
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	CK_BYTE point[70];
	CK_ULONG plen;

	ck_assert_ptr_nonnull(k);
	plen = ec_point_der(k, point, sizeof(point));
	h = user_session("refusals");
	{
		CK_ATTRIBUTE no_type[] = {
			{ CKA_CLASS, &c_secret, sizeof(c_secret) },
			{ CKA_VALUE, (void *)aes_value, 32 },
		};
		CK_ATTRIBUTE no_value[] = {
			{ CKA_CLASS, &c_secret, sizeof(c_secret) },
			{ CKA_KEY_TYPE, &k_aes, sizeof(k_aes) },
		};
		CK_ATTRIBUTE bad_len[] = {
			{ CKA_CLASS, &c_secret, sizeof(c_secret) },
			{ CKA_KEY_TYPE, &k_aes, sizeof(k_aes) },
			{ CKA_VALUE, (void *)aes_value, 15 },
		};
		CK_ATTRIBUTE local[] = {
			{ CKA_CLASS, &c_secret, sizeof(c_secret) },
			{ CKA_KEY_TYPE, &k_aes, sizeof(k_aes) },
			{ CKA_VALUE, (void *)aes_value, 32 },
			{ CKA_LOCAL, &yes, sizeof(yes) },
		};
		CK_ATTRIBUTE no_point[] = {
			{ CKA_CLASS, &c_pub, sizeof(c_pub) },
			{ CKA_KEY_TYPE, &k_ec, sizeof(k_ec) },
			{ CKA_EC_PARAMS, (void *)env_p256, sizeof(env_p256) },
		};
		CK_ATTRIBUTE bad_point[] = {
			{ CKA_CLASS, &c_pub, sizeof(c_pub) },
			{ CKA_KEY_TYPE, &k_ec, sizeof(k_ec) },
			{ CKA_EC_PARAMS, (void *)env_p256, sizeof(env_p256) },
			{ CKA_EC_POINT, point, plen },
		};

		ck_assert_int_eq(F->C_CreateObject(h, no_type, 2, &o), CKR_TEMPLATE_INCOMPLETE);
		ck_assert_int_eq(F->C_CreateObject(h, no_value, 2, &o), CKR_TEMPLATE_INCOMPLETE);
		ck_assert_int_eq(F->C_CreateObject(h, bad_len, 3, &o), CKR_ATTRIBUTE_VALUE_INVALID);
		ck_assert_int_eq(F->C_CreateObject(h, local, 4, &o), CKR_ATTRIBUTE_READ_ONLY);
		local[3].type = CKA_ALWAYS_SENSITIVE;
		ck_assert_int_eq(F->C_CreateObject(h, local, 4, &o), CKR_ATTRIBUTE_READ_ONLY);
		local[3].type = CKA_NEVER_EXTRACTABLE;
		ck_assert_int_eq(F->C_CreateObject(h, local, 4, &o), CKR_ATTRIBUTE_READ_ONLY);
		local[3].type = CKA_KEY_GEN_MECHANISM;
		local[3].pValue = &plen;
		local[3].ulValueLen = sizeof(plen);
		ck_assert_int_eq(F->C_CreateObject(h, local, 4, &o), CKR_ATTRIBUTE_READ_ONLY);
		ck_assert_int_eq(F->C_CreateObject(h, no_point, 3, &o), CKR_TEMPLATE_INCOMPLETE);
		ck_assert_int_eq(F->C_CreateObject(h, bad_point, 4, &o), CKR_OK);
		/* A point that is not on the curve. */
		point[plen - 1] ^= 0x01;
		ck_assert_int_eq(F->C_CreateObject(h, bad_point, 4, &o),
		    CKR_ATTRIBUTE_VALUE_INVALID);
	}
	EVP_PKEY_free(k);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("objects");
	TCase *tc = tcase_create(env_root()); /* the root the suite runs on (EV_ROOT) */

	tcase_add_checked_fixture(tc, env_setup, env_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_import_ec);
	tcase_add_test(tc, test_find_follows_other_process);
	tcase_add_test(tc, test_import_ed25519);
	tcase_add_test(tc, test_import_rsa);
	tcase_add_test(tc, test_import_secret_keys);
	tcase_add_test(tc, test_generated_pair_provenance);
	tcase_add_test(tc, test_certificate);
	tcase_add_test(tc, test_certificate_given_subject);
	tcase_add_test(tc, test_data_objects);
	tcase_add_test(tc, test_copy_object);
	tcase_add_test(tc, test_object_size_and_destroy);
	tcase_add_test(tc, test_secret_value_rules);
	tcase_add_test(tc, test_modifiable_destroyable);
	tcase_add_test(tc, test_allowed_mechanisms_and_dates);
	tcase_add_test(tc, test_trusted_and_wrap_with_trusted);
	tcase_add_test(tc, test_wrap_template);
	tcase_add_test(tc, test_unwrap_template);
	tcase_add_test(tc, test_generate_templates);
	tcase_add_test(tc, test_hostile_arguments);
	tcase_add_test(tc, test_other_zone_handles);
	tcase_add_test(tc, test_unique_id);
	tcase_add_test(tc, test_token_key_changed_then_used);
	tcase_add_test(tc, test_private_values_readable);
	tcase_add_test(tc, test_create_key_refusals);
	suite_add_tcase(s, tc);
	return env_run(s);
}
