/*
 * Unit tests: key generation, the public attributes in their exact
 * encodings, import from templates, the serialized secret round trip and
 * the secret attributes of extractable keys.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "attr.h"
#include "key.h"
#include "secmem.h"

static const CK_BYTE oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const CK_BYTE oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const CK_BYTE oid_p521[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};
static const CK_BYTE oid_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
/* 1.3.6.1.4.1.11591.15.1, as GnuPG and older OpenSC name Ed25519. */
static const CK_BYTE oid_ed25519_gnu[] = {0x06, 0x09, 0x2b, 0x06, 0x01, 0x04,
					  0x01, 0xda, 0x47, 0x0f, 0x01};
static const CK_BYTE str_ed25519[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r',
				      'd',  's',  '2', '5', '5', '1', '9'};
static const CK_BYTE str_p256[] = {0x13, 0x0a, 'p', 'r', 'i', 'm', 'e', '2', '5', '6', 'v', '1'};

/* An RSA pair made once in main(), before the forks. */
static ev_key *rsa, *rsa_pub;

/* No ck_assert here: main() calls it outside any test. */
static CK_RV
gen(CK_MECHANISM_TYPE mech, const void *ecp, size_t ecplen, CK_ULONG bits, ev_key **priv,
    ev_key **pub)
{
	ev_attrs *t = ev_attrs_new();
	CK_RV rv = CKR_OK;

	if (t == NULL)
		return CKR_HOST_MEMORY;
	if (ecp != NULL)
		rv = ev_attrs_set(t, CKA_EC_PARAMS, ecp, ecplen);
	if (rv == CKR_OK && bits != 0)
		rv = ev_attrs_set_ulong(t, CKA_MODULUS_BITS, bits);
	if (rv == CKR_OK)
		rv = ev_key_generate_pair(mech, t, priv, pub);
	ev_attrs_free(t);
	return rv;
}

static ev_attrs *
attrs_of(const ev_key *k)
{
	ev_attrs *a = ev_attrs_new();

	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(ev_key_public_attrs(k, a), CKR_OK);
	return a;
}

static const CK_ATTRIBUTE *
need(const ev_attrs *a, CK_ATTRIBUTE_TYPE type)
{
	const CK_ATTRIBUTE *at = ev_attrs_get(a, type);

	ck_assert_msg(at != NULL, "attribute 0x%lx missing", type);
	return at;
}

static CK_ULONG
ulong_of(const ev_attrs *a, CK_ATTRIBUTE_TYPE type)
{
	CK_ULONG v = 0;

	ck_assert_int_eq(ev_attrs_ulong(a, type, &v), CKR_OK);
	return v;
}

/*
 * CKA_PUBLIC_KEY_INFO parses as an SPKI of the same public key, and is
 * byte for byte what OpenSSL's own encoder makes of it (key.c builds EC
 * and Ed25519 ones from their parts).
 */
static void
check_spki(const ev_attrs *a, EVP_PKEY *pkey)
{
	const CK_ATTRIBUTE *at = need(a, CKA_PUBLIC_KEY_INFO);
	const unsigned char *p = at->pValue;
	EVP_PKEY *spki = d2i_PUBKEY(NULL, &p, (long)at->ulValueLen);
	unsigned char *der = NULL;
	int n;

	ck_assert_ptr_nonnull(spki);
	ck_assert_ptr_eq(p, (const unsigned char *)at->pValue + at->ulValueLen);
	ck_assert_int_eq(EVP_PKEY_eq(spki, pkey), 1);
	EVP_PKEY_free(spki);
	n = i2d_PUBKEY(pkey, &der);
	ck_assert_int_gt(n, 0);
	ck_assert_uint_eq(at->ulValueLen, (CK_ULONG)n);
	ck_assert_mem_eq(at->pValue, der, (size_t)n);
	OPENSSL_free(der);
}

static void
check_ec(const CK_BYTE *params, size_t plen, const CK_BYTE *oid, size_t oidlen, size_t n,
	 CK_ULONG bits)
{
	ev_key *priv = NULL, *pub = NULL;
	ev_attrs *a;
	const CK_ATTRIBUTE *pt;
	unsigned char raw[200];
	size_t rawlen = 0;
	CK_BYTE *v;

	ck_assert_int_eq(gen(CKM_EC_KEY_PAIR_GEN, params, plen, 0, &priv, &pub), CKR_OK);
	ck_assert_uint_eq(priv->cls, CKO_PRIVATE_KEY);
	ck_assert_uint_eq(pub->cls, CKO_PUBLIC_KEY);
	ck_assert_uint_eq(priv->type, CKK_EC);
	ck_assert_uint_eq(ev_key_size(priv), bits);
	ck_assert_uint_eq(ev_key_size(pub), bits);

	a = attrs_of(pub);
	ck_assert_uint_eq(ulong_of(a, CKA_KEY_TYPE), CKK_EC);
	ck_assert_uint_eq(need(a, CKA_EC_PARAMS)->ulValueLen, oidlen);
	ck_assert_mem_eq(need(a, CKA_EC_PARAMS)->pValue, oid, oidlen);
	/* DER OCTET STRING around the uncompressed point. */
	pt = need(a, CKA_EC_POINT);
	v = pt->pValue;
	ck_assert_uint_eq(pt->ulValueLen, 2 + 2 * n + 1);
	ck_assert_uint_eq(v[0], 0x04);
	ck_assert_uint_eq(v[1], 2 * n + 1);
	ck_assert_uint_eq(v[2], 0x04);
	EVP_PKEY_get_octet_string_param(pub->pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, raw,
					sizeof(raw), &rawlen);
	ck_assert_uint_eq(rawlen, 2 * n + 1);
	ck_assert_mem_eq(v + 2, raw, rawlen);
	check_spki(a, priv->pkey);
	ck_assert_ptr_null(ev_attrs_get(a, CKA_MODULUS));
	ev_attrs_free(a);

	/* The private key: parameters and SPKI, no point. */
	a = attrs_of(priv);
	ck_assert_mem_eq(need(a, CKA_EC_PARAMS)->pValue, oid, oidlen);
	ck_assert_ptr_null(ev_attrs_get(a, CKA_EC_POINT));
	check_spki(a, pub->pkey);
	ev_attrs_free(a);

	/* The public half holds no private scalar. */
	{
		BIGNUM *d = NULL;

		ck_assert_int_eq(EVP_PKEY_get_bn_param(pub->pkey, OSSL_PKEY_PARAM_PRIV_KEY, &d), 0);
		ck_assert_int_eq(EVP_PKEY_get_bn_param(priv->pkey, OSSL_PKEY_PARAM_PRIV_KEY, &d),
				 1);
		BN_clear_free(d);
	}
	ev_key_free(priv);
	ev_key_free(pub);
}

START_TEST(test_generate_ec)
{
	check_ec(oid_p256, sizeof(oid_p256), oid_p256, sizeof(oid_p256), 32, 256);
	check_ec(oid_p384, sizeof(oid_p384), oid_p384, sizeof(oid_p384), 48, 384);
	/* A printable curve name is accepted; the attribute is the OID. */
	check_ec(str_p256, sizeof(str_p256), oid_p256, sizeof(oid_p256), 32, 256);
}
END_TEST

START_TEST(test_generate_ed25519)
{
	const CK_BYTE *params[] = {oid_ed25519, str_ed25519, oid_ed25519_gnu};
	const size_t lens[] = {sizeof(oid_ed25519), sizeof(str_ed25519), sizeof(oid_ed25519_gnu)};
	unsigned char raw[32];
	size_t rawlen = sizeof(raw), i;

	for (i = 0; i < 3; i++) {
		ev_key *priv = NULL, *pub = NULL;
		ev_attrs *a;
		const CK_ATTRIBUTE *pt;

		ck_assert_int_eq(
		    gen(CKM_EC_EDWARDS_KEY_PAIR_GEN, params[i], lens[i], 0, &priv, &pub), CKR_OK);
		ck_assert_uint_eq(priv->type, CKK_EC_EDWARDS);
		ck_assert_uint_eq(ev_key_size(priv), 256);
		a = attrs_of(pub);
		ck_assert_uint_eq(ulong_of(a, CKA_KEY_TYPE), CKK_EC_EDWARDS);
		ck_assert_uint_eq(need(a, CKA_EC_PARAMS)->ulValueLen, sizeof(oid_ed25519));
		ck_assert_mem_eq(need(a, CKA_EC_PARAMS)->pValue, oid_ed25519, sizeof(oid_ed25519));
		pt = need(a, CKA_EC_POINT);
		ck_assert_uint_eq(pt->ulValueLen, 34);
		ck_assert_uint_eq(((CK_BYTE *)pt->pValue)[0], 0x04);
		ck_assert_uint_eq(((CK_BYTE *)pt->pValue)[1], 32);
		rawlen = sizeof(raw);
		ck_assert_int_eq(EVP_PKEY_get_raw_public_key(pub->pkey, raw, &rawlen), 1);
		ck_assert_mem_eq((CK_BYTE *)pt->pValue + 2, raw, 32);
		check_spki(a, priv->pkey);
		ev_attrs_free(a);
		ev_key_free(priv);
		ev_key_free(pub);
	}
}
END_TEST

START_TEST(test_generate_rsa)
{
	static const CK_BYTE e3[] = {0x03};
	ev_attrs *a, *t;
	ev_key *priv = NULL, *pub = NULL;
	const CK_ATTRIBUTE *mod, *exp;

	ck_assert_uint_eq(rsa->type, CKK_RSA);
	ck_assert_uint_eq(ev_key_size(rsa), 2048);
	a = attrs_of(rsa_pub);
	mod = need(a, CKA_MODULUS);
	exp = need(a, CKA_PUBLIC_EXPONENT);
	ck_assert_uint_eq(mod->ulValueLen, 256);
	ck_assert_uint_ge(((CK_BYTE *)mod->pValue)[0], 0x80);
	ck_assert_uint_eq(exp->ulValueLen, 3);
	ck_assert_mem_eq(exp->pValue, "\x01\x00\x01", 3);
	ck_assert_uint_eq(ulong_of(a, CKA_MODULUS_BITS), 2048);
	ck_assert_uint_eq(ulong_of(a, CKA_KEY_TYPE), CKK_RSA);
	check_spki(a, rsa->pkey);
	ev_attrs_free(a);
	a = attrs_of(rsa);
	ck_assert_ptr_null(ev_attrs_get(a, CKA_MODULUS_BITS));
	ck_assert_uint_eq(need(a, CKA_MODULUS)->ulValueLen, 256);
	ev_attrs_free(a);

	/* An explicit exponent, and an odd modulus size. */
	t = ev_attrs_new();
	ev_attrs_set_ulong(t, CKA_MODULUS_BITS, 2056);
	ev_attrs_set(t, CKA_PUBLIC_EXPONENT, e3, 1);
	ck_assert_int_eq(ev_key_generate_pair(CKM_RSA_PKCS_KEY_PAIR_GEN, t, &priv, &pub), CKR_OK);
	ck_assert_uint_eq(ev_key_size(pub), 2056);
	a = attrs_of(pub);
	ck_assert_uint_eq(need(a, CKA_PUBLIC_EXPONENT)->ulValueLen, 1);
	ck_assert_uint_eq(need(a, CKA_MODULUS)->ulValueLen, 257);
	ev_attrs_free(a);
	ev_attrs_free(t);
	ev_key_free(priv);
	ev_key_free(pub);
}
END_TEST

START_TEST(test_generate_errors)
{
	static const CK_BYTE garbage[] = {0x06, 0x08, 0x2a};
	static const CK_BYTE explicit_params[] = {0x30, 0x03, 0x02, 0x01, 0x01};
	static const CK_BYTE even[] = {0x01, 0x00, 0x00};
	CK_BYTE trailing[sizeof(oid_p256) + 1] = {0};
	ev_key *priv = (ev_key *)1, *pub = (ev_key *)1;
	ev_attrs *t = ev_attrs_new();

	ck_assert_int_eq(ev_key_generate_pair(CKM_EC_KEY_PAIR_GEN, t, &priv, &pub),
			 CKR_TEMPLATE_INCOMPLETE);
	ck_assert_ptr_null(priv);
	ck_assert_ptr_null(pub);
	ck_assert_int_eq(gen(CKM_EC_KEY_PAIR_GEN, oid_p521, sizeof(oid_p521), 0, &priv, &pub),
			 CKR_CURVE_NOT_SUPPORTED);
	ck_assert_int_eq(gen(CKM_EC_KEY_PAIR_GEN, oid_ed25519, sizeof(oid_ed25519), 0, &priv, &pub),
			 CKR_CURVE_NOT_SUPPORTED);
	ck_assert_int_eq(
	    gen(CKM_EC_EDWARDS_KEY_PAIR_GEN, oid_p256, sizeof(oid_p256), 0, &priv, &pub),
	    CKR_CURVE_NOT_SUPPORTED);
	ck_assert_int_eq(
	    gen(CKM_EC_KEY_PAIR_GEN, explicit_params, sizeof(explicit_params), 0, &priv, &pub),
	    CKR_CURVE_NOT_SUPPORTED);
	ck_assert_int_eq(gen(CKM_EC_KEY_PAIR_GEN, garbage, sizeof(garbage), 0, &priv, &pub),
			 CKR_ATTRIBUTE_VALUE_INVALID);
	memcpy(trailing, oid_p256, sizeof(oid_p256));
	ck_assert_int_eq(gen(CKM_EC_KEY_PAIR_GEN, trailing, sizeof(trailing), 0, &priv, &pub),
			 CKR_ATTRIBUTE_VALUE_INVALID);

	ck_assert_int_eq(ev_key_generate_pair(CKM_RSA_PKCS_KEY_PAIR_GEN, t, &priv, &pub),
			 CKR_TEMPLATE_INCOMPLETE);
	ck_assert_int_eq(gen(CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0, 1024, &priv, &pub),
			 CKR_KEY_SIZE_RANGE);
	ck_assert_int_eq(gen(CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0, 8192, &priv, &pub),
			 CKR_KEY_SIZE_RANGE);
	ev_attrs_set_ulong(t, CKA_MODULUS_BITS, 2048);
	ev_attrs_set(t, CKA_PUBLIC_EXPONENT, even, sizeof(even));
	ck_assert_int_eq(ev_key_generate_pair(CKM_RSA_PKCS_KEY_PAIR_GEN, t, &priv, &pub),
			 CKR_ATTRIBUTE_VALUE_INVALID);
	ev_attrs_set(t, CKA_PUBLIC_EXPONENT, "\x01", 1);
	ck_assert_int_eq(ev_key_generate_pair(CKM_RSA_PKCS_KEY_PAIR_GEN, t, &priv, &pub),
			 CKR_ATTRIBUTE_VALUE_INVALID);
	ev_attrs_set(t, CKA_MODULUS_BITS, "ab", 2);
	ck_assert_int_eq(ev_key_generate_pair(CKM_RSA_PKCS_KEY_PAIR_GEN, t, &priv, &pub),
			 CKR_ATTRIBUTE_VALUE_INVALID);
	ck_assert_int_eq(ev_key_generate_pair(CKM_AES_KEY_GEN, t, &priv, &pub),
			 CKR_MECHANISM_INVALID);
	ck_assert_ptr_null(priv);
	ck_assert_ptr_null(pub);
	ev_attrs_free(t);
}
END_TEST

START_TEST(test_generate_secret)
{
	static const CK_ULONG aes_ok[] = {16, 24, 32}, aes_bad[] = {0, 8, 17, 64};
	ev_attrs *t = ev_attrs_new(), *a;
	ev_key *k = NULL, *k2 = NULL;
	size_t i;

	ck_assert_int_eq(ev_key_generate_secret(CKM_AES_KEY_GEN, t, &k), CKR_TEMPLATE_INCOMPLETE);
	for (i = 0; i < 3; i++) {
		ev_attrs_set_ulong(t, CKA_VALUE_LEN, aes_ok[i]);
		ck_assert_int_eq(ev_key_generate_secret(CKM_AES_KEY_GEN, t, &k), CKR_OK);
		ck_assert_uint_eq(k->cls, CKO_SECRET_KEY);
		ck_assert_uint_eq(k->type, CKK_AES);
		ck_assert_uint_eq(k->secret->len, aes_ok[i]);
		ck_assert_uint_eq(ev_key_size(k), aes_ok[i]);
		a = attrs_of(k);
		ck_assert_uint_eq(ulong_of(a, CKA_VALUE_LEN), aes_ok[i]);
		ck_assert_uint_eq(ulong_of(a, CKA_KEY_TYPE), CKK_AES);
		ck_assert_ptr_null(ev_attrs_get(a, CKA_VALUE));
		ev_attrs_free(a);
		ck_assert_int_eq(ev_key_generate_secret(CKM_AES_KEY_GEN, t, &k2), CKR_OK);
		ck_assert(!ev_secret_equal(k->secret, k2->secret));
		ev_key_free(k);
		ev_key_free(k2);
	}
	for (i = 0; i < 4; i++) {
		ev_attrs_set_ulong(t, CKA_VALUE_LEN, aes_bad[i]);
		ck_assert_int_eq(ev_key_generate_secret(CKM_AES_KEY_GEN, t, &k),
				 CKR_ATTRIBUTE_VALUE_INVALID);
		ck_assert_ptr_null(k);
	}
	ev_attrs_set_ulong(t, CKA_VALUE_LEN, 20);
	ck_assert_int_eq(ev_key_generate_secret(CKM_GENERIC_SECRET_KEY_GEN, t, &k), CKR_OK);
	ck_assert_uint_eq(k->type, CKK_GENERIC_SECRET);
	ck_assert_uint_eq(ev_key_size(k), 20);
	ev_key_free(k);
	ev_attrs_set_ulong(t, CKA_VALUE_LEN, 0);
	ck_assert_int_eq(ev_key_generate_secret(CKM_GENERIC_SECRET_KEY_GEN, t, &k),
			 CKR_ATTRIBUTE_VALUE_INVALID);
	ev_attrs_set_ulong(t, CKA_VALUE_LEN, 513);
	ck_assert_int_eq(ev_key_generate_secret(CKM_GENERIC_SECRET_KEY_GEN, t, &k),
			 CKR_ATTRIBUTE_VALUE_INVALID);
	ck_assert_int_eq(ev_key_generate_secret(CKM_EC_KEY_PAIR_GEN, t, &k), CKR_MECHANISM_INVALID);
	ev_attrs_free(t);
}
END_TEST

/* A key lives until its last reference goes: a wiped cache never frees material in use. */
START_TEST(test_key_references)
{
	ev_attrs *t = ev_attrs_new();
	ev_key *k = NULL, *user;

	ck_assert_ptr_null(ev_key_ref(NULL));
	ev_key_free(NULL);
	ev_attrs_set_ulong(t, CKA_VALUE_LEN, 32);
	ck_assert_int_eq(ev_key_generate_secret(CKM_AES_KEY_GEN, t, &k), CKR_OK);
	user = ev_key_ref(k);
	ck_assert_ptr_eq(user, k);
	ev_key_free(k); /* the cache's reference */
	/* Still whole for its user (ASan would see a use after free). */
	ck_assert_uint_eq(user->secret->len, 32);
	ck_assert_uint_eq(ev_key_size(user), 32);
	ev_key_free(user);
	ev_attrs_free(t);
}
END_TEST

/* Import from templates */

static ev_key *
import(CK_OBJECT_CLASS cls, CK_KEY_TYPE type, CK_ATTRIBUTE *t, CK_ULONG n, CK_RV want)
{
	ev_key *k = NULL;

	ck_assert_int_eq(ev_key_from_template(cls, type, t, n, &k), want);
	if (want != CKR_OK)
		ck_assert_ptr_null(k);
	return k;
}

START_TEST(test_import_ec)
{
	ev_key *priv = NULL, *pub = NULL, *k;
	ev_attrs *a;
	ev_secret *d = NULL;
	const CK_ATTRIBUTE *pt;
	CK_BYTE raw[65], bad[67];
	CK_ATTRIBUTE t[2] = {{CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)}};

	ck_assert_int_eq(gen(CKM_EC_KEY_PAIR_GEN, oid_p256, sizeof(oid_p256), 0, &priv, &pub),
			 CKR_OK);
	a = attrs_of(pub);
	pt = need(a, CKA_EC_POINT);
	memcpy(raw, (CK_BYTE *)pt->pValue + 2, 65);

	/* DER-wrapped and raw points give the same key. */
	t[1] = (CK_ATTRIBUTE){CKA_EC_POINT, pt->pValue, pt->ulValueLen};
	k = import(CKO_PUBLIC_KEY, CKK_EC, t, 2, CKR_OK);
	ck_assert_int_eq(EVP_PKEY_eq(k->pkey, pub->pkey), 1);
	ev_key_free(k);
	t[1] = (CK_ATTRIBUTE){CKA_EC_POINT, raw, 65};
	k = import(CKO_PUBLIC_KEY, CKK_EC, t, 2, CKR_OK);
	ck_assert_int_eq(EVP_PKEY_eq(k->pkey, pub->pkey), 1);
	ev_key_free(k);

	/* Bad points. */
	raw[64] ^= 1;
	k = import(CKO_PUBLIC_KEY, CKK_EC, t, 2, CKR_ATTRIBUTE_VALUE_INVALID);
	raw[64] ^= 1;
	t[1].ulValueLen = 64;
	k = import(CKO_PUBLIC_KEY, CKK_EC, t, 2, CKR_ATTRIBUTE_VALUE_INVALID);
	memcpy(bad, pt->pValue, 67);
	bad[1] = 0x40; /* OCTET STRING length off by one */
	t[1] = (CK_ATTRIBUTE){CKA_EC_POINT, bad, 67};
	k = import(CKO_PUBLIC_KEY, CKK_EC, t, 2, CKR_ATTRIBUTE_VALUE_INVALID);
	t[1] = (CK_ATTRIBUTE){CKA_EC_POINT, NULL, 65};
	k = import(CKO_PUBLIC_KEY, CKK_EC, t, 2, CKR_ATTRIBUTE_VALUE_INVALID);
	k = import(CKO_PUBLIC_KEY, CKK_EC, t, 1, CKR_TEMPLATE_INCOMPLETE);
	k = import(CKO_PUBLIC_KEY, CKK_EC, t + 1, 1, CKR_TEMPLATE_INCOMPLETE);
	/* Wrong or unknown curves. */
	t[1] = (CK_ATTRIBUTE){CKA_EC_POINT, raw, 65};
	t[0] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)oid_p384, sizeof(oid_p384)};
	k = import(CKO_PUBLIC_KEY, CKK_EC, t, 2, CKR_ATTRIBUTE_VALUE_INVALID);
	t[0] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)oid_p521, sizeof(oid_p521)};
	k = import(CKO_PUBLIC_KEY, CKK_EC, t, 2, CKR_CURVE_NOT_SUPPORTED);
	t[0] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)oid_ed25519, sizeof(oid_ed25519)};
	k = import(CKO_PUBLIC_KEY, CKK_EC, t, 2, CKR_KEY_TYPE_INCONSISTENT);

	/* Private: the scalar, and the public point computed from it. */
	ck_assert_int_eq(ev_key_secret_attr(priv, CKA_VALUE, &d), CKR_OK);
	ck_assert_uint_eq(d->len, 32);
	t[0] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)};
	t[1] = (CK_ATTRIBUTE){CKA_VALUE, d->data, d->len};
	k = import(CKO_PRIVATE_KEY, CKK_EC, t, 2, CKR_OK);
	ck_assert_int_eq(EVP_PKEY_eq(k->pkey, priv->pkey), 1);
	ev_key_free(k);
	memset(d->data, 0, d->len);
	k = import(CKO_PRIVATE_KEY, CKK_EC, t, 2, CKR_ATTRIBUTE_VALUE_INVALID);
	memset(d->data, 0xff, d->len); /* above the group order */
	k = import(CKO_PRIVATE_KEY, CKK_EC, t, 2, CKR_ATTRIBUTE_VALUE_INVALID);
	k = import(CKO_PRIVATE_KEY, CKK_EC, t, 1, CKR_TEMPLATE_INCOMPLETE);
	ev_secret_free(d);
	ev_attrs_free(a);
	ev_key_free(priv);
	ev_key_free(pub);
}
END_TEST

START_TEST(test_import_ed25519)
{
	ev_key *priv = NULL, *pub = NULL, *k;
	ev_attrs *a;
	ev_secret *d = NULL;
	const CK_ATTRIBUTE *pt;
	CK_ATTRIBUTE t[2] = {{CKA_EC_PARAMS, (void *)str_ed25519, sizeof(str_ed25519)}};

	ck_assert_int_eq(
	    gen(CKM_EC_EDWARDS_KEY_PAIR_GEN, oid_ed25519, sizeof(oid_ed25519), 0, &priv, &pub),
	    CKR_OK);
	a = attrs_of(pub);
	pt = need(a, CKA_EC_POINT);
	t[1] = (CK_ATTRIBUTE){CKA_EC_POINT, pt->pValue, pt->ulValueLen};
	k = import(CKO_PUBLIC_KEY, CKK_EC_EDWARDS, t, 2, CKR_OK);
	ck_assert_int_eq(EVP_PKEY_eq(k->pkey, pub->pkey), 1);
	ev_key_free(k);
	t[1] = (CK_ATTRIBUTE){CKA_EC_POINT, (CK_BYTE *)pt->pValue + 2, 32};
	k = import(CKO_PUBLIC_KEY, CKK_EC_EDWARDS, t, 2, CKR_OK);
	ck_assert_int_eq(EVP_PKEY_eq(k->pkey, pub->pkey), 1);
	ev_key_free(k);
	t[1].ulValueLen = 31;
	k = import(CKO_PUBLIC_KEY, CKK_EC_EDWARDS, t, 2, CKR_ATTRIBUTE_VALUE_INVALID);
	k = import(CKO_PUBLIC_KEY, CKK_EC, t, 2, CKR_KEY_TYPE_INCONSISTENT);

	ck_assert_int_eq(ev_key_secret_attr(priv, CKA_VALUE, &d), CKR_OK);
	ck_assert_uint_eq(d->len, 32);
	t[0] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)oid_ed25519, sizeof(oid_ed25519)};
	t[1] = (CK_ATTRIBUTE){CKA_VALUE, d->data, d->len};
	k = import(CKO_PRIVATE_KEY, CKK_EC_EDWARDS, t, 2, CKR_OK);
	ck_assert_int_eq(EVP_PKEY_eq(k->pkey, priv->pkey), 1);
	ev_key_free(k);
	t[1].ulValueLen = 33;
	k = import(CKO_PRIVATE_KEY, CKK_EC_EDWARDS, t, 2, CKR_ATTRIBUTE_VALUE_INVALID);
	ev_secret_free(d);
	ev_attrs_free(a);
	ev_key_free(priv);
	ev_key_free(pub);
}
END_TEST

START_TEST(test_import_rsa)
{
	static const CK_ATTRIBUTE_TYPE comps[] = {CKA_PRIVATE_EXPONENT, CKA_PRIME_1,
						  CKA_PRIME_2,		CKA_EXPONENT_1,
						  CKA_EXPONENT_2,	CKA_COEFFICIENT};
	ev_secret *s[6] = {NULL};
	ev_attrs *a = attrs_of(rsa_pub);
	const CK_ATTRIBUTE *mod = need(a, CKA_MODULUS), *exp = need(a, CKA_PUBLIC_EXPONENT);
	CK_ATTRIBUTE t[8];
	ev_key *k;
	size_t i;

	t[0] = *mod;
	t[1] = *exp;
	k = import(CKO_PUBLIC_KEY, CKK_RSA, t, 2, CKR_OK);
	ck_assert_int_eq(EVP_PKEY_eq(k->pkey, rsa_pub->pkey), 1);
	ck_assert_uint_eq(ev_key_size(k), 2048);
	ev_key_free(k);
	k = import(CKO_PUBLIC_KEY, CKK_RSA, t, 1, CKR_TEMPLATE_INCOMPLETE);
	k = import(CKO_PUBLIC_KEY, CKK_RSA, t + 1, 1, CKR_TEMPLATE_INCOMPLETE);

	for (i = 0; i < 6; i++) {
		ck_assert_int_eq(ev_key_secret_attr(rsa, comps[i], &s[i]), CKR_OK);
		t[2 + i] = (CK_ATTRIBUTE){comps[i], s[i]->data, s[i]->len};
	}
	/* Minimal big-endian: d may be a byte short; p of a 2048-bit key never is. */
	ck_assert_uint_le(s[0]->len, 256);
	ck_assert_uint_ge(s[0]->len, 250);
	ck_assert_uint_eq(s[1]->len, 128);
	/* With the CRT values, and with n, e, d only. */
	k = import(CKO_PRIVATE_KEY, CKK_RSA, t, 8, CKR_OK);
	ck_assert_int_eq(EVP_PKEY_eq(k->pkey, rsa->pkey), 1);
	ev_key_free(k);
	k = import(CKO_PRIVATE_KEY, CKK_RSA, t, 3, CKR_OK);
	ck_assert_int_eq(EVP_PKEY_eq(k->pkey, rsa->pkey), 1);
	ev_key_free(k);
	/* Partial CRT values, a missing d, inconsistent primes. */
	k = import(CKO_PRIVATE_KEY, CKK_RSA, t, 5, CKR_TEMPLATE_INCOMPLETE);
	k = import(CKO_PRIVATE_KEY, CKK_RSA, t, 2, CKR_TEMPLATE_INCOMPLETE);
	s[1]->data[s[1]->len - 1] ^= 2;
	k = import(CKO_PRIVATE_KEY, CKK_RSA, t, 8, CKR_ATTRIBUTE_VALUE_INVALID);
	for (i = 0; i < 6; i++)
		ev_secret_free(s[i]);
	ev_attrs_free(a);
}
END_TEST

START_TEST(test_import_secret)
{
	static const CK_BYTE v[40] = {1, 2, 3};
	CK_ATTRIBUTE t[] = {{CKA_VALUE, (void *)v, 32}};
	ev_key *k;

	k = import(CKO_SECRET_KEY, CKK_AES, t, 1, CKR_OK);
	ck_assert_uint_eq(k->secret->len, 32);
	ck_assert_mem_eq(k->secret->data, v, 32);
	ev_key_free(k);
	t[0].ulValueLen = 15;
	k = import(CKO_SECRET_KEY, CKK_AES, t, 1, CKR_ATTRIBUTE_VALUE_INVALID);
	k = import(CKO_SECRET_KEY, CKK_SHA256_HMAC, t, 1, CKR_OK);
	ck_assert_uint_eq(k->type, CKK_SHA256_HMAC);
	ck_assert_uint_eq(ev_key_size(k), 15);
	ev_key_free(k);
	k = import(CKO_SECRET_KEY, CKK_GENERIC_SECRET, t, 1, CKR_OK);
	ev_key_free(k);
	t[0].ulValueLen = 0;
	k = import(CKO_SECRET_KEY, CKK_GENERIC_SECRET, t, 1, CKR_ATTRIBUTE_VALUE_INVALID);
	k = import(CKO_SECRET_KEY, CKK_GENERIC_SECRET, t, 0, CKR_TEMPLATE_INCOMPLETE);
	k = import(CKO_SECRET_KEY, CKK_RSA, t, 1, CKR_KEY_TYPE_INCONSISTENT);
	k = import(CKO_PRIVATE_KEY, CKK_AES, t, 1, CKR_KEY_TYPE_INCONSISTENT);
	k = import(CKO_SECRET_KEY, CKK_DES3, t, 1, CKR_ATTRIBUTE_VALUE_INVALID);
	k = import(CKO_PRIVATE_KEY, CKK_DSA, t, 1, CKR_ATTRIBUTE_VALUE_INVALID);
	k = import(CKO_DATA, CKK_AES, t, 1, CKR_ATTRIBUTE_VALUE_INVALID);
}
END_TEST

/* Serialized secrets */

START_TEST(test_export_import)
{
	ev_key *keys[3] = {NULL}, *pubs[3] = {NULL}, *back = NULL;
	static const CK_KEY_TYPE types[] = {CKK_EC, CKK_EC_EDWARDS, CKK_RSA};
	ev_secret *s = NULL, *s2 = NULL, *junk;
	size_t i;

	ck_assert_int_eq(
	    gen(CKM_EC_KEY_PAIR_GEN, oid_p384, sizeof(oid_p384), 0, &keys[0], &pubs[0]), CKR_OK);
	ck_assert_int_eq(gen(CKM_EC_EDWARDS_KEY_PAIR_GEN, oid_ed25519, sizeof(oid_ed25519), 0,
			     &keys[1], &pubs[1]),
			 CKR_OK);
	keys[2] = rsa;
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(ev_key_export_secret(keys[i], &s), CKR_OK);
		ck_assert_uint_eq(s->data[0], 0x30); /* a DER SEQUENCE: PrivateKeyInfo */
		ck_assert_int_eq(ev_key_import_secret(CKO_PRIVATE_KEY, types[i], s, &back), CKR_OK);
		ck_assert_uint_eq(back->cls, CKO_PRIVATE_KEY);
		ck_assert_uint_eq(back->type, types[i]);
		ck_assert_int_eq(EVP_PKEY_eq(back->pkey, keys[i]->pkey), 1);
		ck_assert_int_eq(ev_key_export_secret(back, &s2), CKR_OK);
		ck_assert(ev_secret_equal(s, s2));
		ev_key_free(back);
		ev_secret_free(s2);
		/* The wrong type, trailing bytes, truncation. */
		ck_assert_int_eq(
		    ev_key_import_secret(CKO_PRIVATE_KEY, types[(i + 1) % 3], s, &back),
		    CKR_ENCRYPTED_DATA_INVALID);
		ck_assert_ptr_null(back);
		junk = ev_secret_new(s->len + 1);
		memcpy(junk->data, s->data, s->len);
		ck_assert_int_eq(ev_key_import_secret(CKO_PRIVATE_KEY, types[i], junk, &back),
				 CKR_ENCRYPTED_DATA_INVALID);
		junk->len = s->len - 1;
		ck_assert_int_eq(ev_key_import_secret(CKO_PRIVATE_KEY, types[i], junk, &back),
				 CKR_ENCRYPTED_DATA_INVALID);
		ck_assert_int_eq(ev_key_import_secret(CKO_SECRET_KEY, CKK_AES, s, &back),
				 CKR_ENCRYPTED_DATA_INVALID);
		ev_secret_free(junk);
		ev_secret_free(s);
		s = NULL;
	}
	ck_assert_int_eq(ev_key_export_secret(pubs[0], &s), CKR_KEY_NOT_WRAPPABLE);
	ck_assert_ptr_null(s);

	/* Secret keys are their bytes. */
	s = ev_secret_dup("0123456789abcdef", 16);
	ck_assert_int_eq(ev_key_import_secret(CKO_SECRET_KEY, CKK_AES, s, &back), CKR_OK);
	ck_assert_int_eq(ev_key_export_secret(back, &s2), CKR_OK);
	ck_assert(ev_secret_equal(s, s2));
	ev_key_free(back);
	ev_secret_free(s2);
	s->len = 15;
	ck_assert_int_eq(ev_key_import_secret(CKO_SECRET_KEY, CKK_AES, s, &back),
			 CKR_ENCRYPTED_DATA_INVALID);
	ck_assert_int_eq(ev_key_import_secret(CKO_SECRET_KEY, CKK_GENERIC_SECRET, s, &back),
			 CKR_OK);
	ev_key_free(back);
	ck_assert_int_eq(ev_key_import_secret(CKO_PRIVATE_KEY, CKK_AES, s, &back),
			 CKR_ENCRYPTED_DATA_INVALID);
	ev_secret_free(s);
	for (i = 0; i < 2; i++) {
		ev_key_free(keys[i]);
		ev_key_free(pubs[i]);
	}
}
END_TEST

START_TEST(test_secret_attr)
{
	ev_key *priv = NULL, *pub = NULL, *aes;
	ev_secret *s = NULL;
	BIGNUM *d = NULL, *n = NULL;
	CK_ATTRIBUTE t[] = {{CKA_VALUE, (void *)"0123456789abcdef", 16}};

	ck_assert_int_eq(gen(CKM_EC_KEY_PAIR_GEN, oid_p384, sizeof(oid_p384), 0, &priv, &pub),
			 CKR_OK);
	ck_assert_int_eq(ev_key_secret_attr(priv, CKA_VALUE, &s), CKR_OK);
	ck_assert_uint_eq(s->len, 48); /* padded to the field size */
	EVP_PKEY_get_bn_param(priv->pkey, OSSL_PKEY_PARAM_PRIV_KEY, &d);
	n = BN_bin2bn(s->data, (int)s->len, NULL);
	ck_assert_int_eq(BN_cmp(d, n), 0);
	ev_secret_free(s);
	s = NULL;
	ck_assert_int_eq(ev_key_secret_attr(pub, CKA_VALUE, &s), CKR_ATTRIBUTE_TYPE_INVALID);
	ck_assert_int_eq(ev_key_secret_attr(priv, CKA_PRIVATE_EXPONENT, &s),
			 CKR_ATTRIBUTE_TYPE_INVALID);
	ck_assert_int_eq(ev_key_secret_attr(rsa, CKA_VALUE, &s), CKR_ATTRIBUTE_TYPE_INVALID);
	ck_assert_int_eq(ev_key_secret_attr(rsa, CKA_MODULUS, &s), CKR_ATTRIBUTE_TYPE_INVALID);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(ev_key_secret_attr(rsa, CKA_COEFFICIENT, &s), CKR_OK);
	ck_assert_uint_gt(s->len, 0);
	ck_assert_uint_le(s->len, 128);
	ev_secret_free(s);
	s = NULL;

	ck_assert_int_eq(ev_key_from_template(CKO_SECRET_KEY, CKK_AES, t, 1, &aes), CKR_OK);
	ck_assert_int_eq(ev_key_secret_attr(aes, CKA_VALUE, &s), CKR_OK);
	ck_assert_uint_eq(s->len, 16);
	ck_assert_mem_eq(s->data, "0123456789abcdef", 16);
	ev_secret_free(s);
	s = NULL;
	ck_assert_int_eq(ev_key_secret_attr(aes, CKA_PRIME_1, &s), CKR_ATTRIBUTE_TYPE_INVALID);

	BN_free(d);
	BN_free(n);
	ev_key_free(aes);
	ev_key_free(priv);
	ev_key_free(pub);
}
END_TEST

START_TEST(test_public_of)
{
	ev_key *pub = NULL, *aes = NULL;
	CK_ATTRIBUTE t[] = {{CKA_VALUE, (void *)"0123456789abcdef", 16}};
	BIGNUM *d = NULL;

	ck_assert_int_eq(ev_key_public_of(rsa, &pub), CKR_OK);
	ck_assert_uint_eq(pub->cls, CKO_PUBLIC_KEY);
	ck_assert_uint_eq(pub->type, CKK_RSA);
	ck_assert_int_eq(EVP_PKEY_eq(pub->pkey, rsa->pkey), 1);
	ck_assert_int_eq(EVP_PKEY_get_bn_param(pub->pkey, OSSL_PKEY_PARAM_RSA_D, &d), 0);
	ev_key_free(pub);
	ck_assert_int_eq(ev_key_from_template(CKO_SECRET_KEY, CKK_AES, t, 1, &aes), CKR_OK);
	ck_assert_int_eq(ev_key_public_of(aes, &pub), CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_ptr_null(pub);
	ev_key_free(aes);
	ev_key_free(NULL);
}
END_TEST

static Suite *
key_suite(void)
{
	Suite *s = suite_create("key");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_generate_ec);
	tcase_add_test(tc, test_generate_ed25519);
	tcase_add_test(tc, test_generate_rsa);
	tcase_add_test(tc, test_generate_errors);
	tcase_add_test(tc, test_generate_secret);
	tcase_add_test(tc, test_key_references);
	tcase_add_test(tc, test_import_ec);
	tcase_add_test(tc, test_import_ed25519);
	tcase_add_test(tc, test_import_rsa);
	tcase_add_test(tc, test_import_secret);
	tcase_add_test(tc, test_export_import);
	tcase_add_test(tc, test_secret_attr);
	tcase_add_test(tc, test_public_of);
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
	if (gen(CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0, 2048, &rsa, &rsa_pub) != CKR_OK) {
		fprintf(stderr, "key generation failed\n");
		return 1;
	}
	sr = srunner_create(key_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	ev_key_free(rsa);
	ev_key_free(rsa_pub);
	return failed == 0 ? 0 : 1;
}
