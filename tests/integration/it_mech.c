/*
 * Integration tests of the mechanisms through the module's PKCS#11
 * interface, against a real SoftHSMv2 root: signatures, RSA and AES
 * encryption, HMAC and digests, ECDH, key wrapping, and the length and
 * error conventions of PKCS#11 3.0 section 5.2. Every result is checked
 * by OpenSSL outside the module; return codes are the specification's.
 */
#include <check.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/opensslv.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "harness.h"

#define F env.f
#define N(a) (sizeof(a) / sizeof((a)[0]))

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;


/* A logged-in read-write session on a fresh zone. */
static CK_SESSION_HANDLE
setup(const char *label)
{
	env_init();
	return env_session(env_new_zone(label), 1, 1);
}

/* An EC or Edwards pair (session objects); params is the curve OID's DER. */
static void
gen_ec(CK_SESSION_HANDLE h, CK_MECHANISM_TYPE m, const CK_BYTE *params, CK_ULONG plen,
       CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	CK_MECHANISM mech = {m, NULL, 0};
	CK_ATTRIBUTE pubt[] = {
	    {CKA_EC_PARAMS, (void *)params, plen},
	    {CKA_VERIFY, &yes, sizeof(yes)},
	};
	CK_ATTRIBUTE privt[] = {
	    {CKA_SIGN, &yes, sizeof(yes)},
	    {CKA_DERIVE, &yes, sizeof(yes)},
	};

	ck_assert_int_eq(F->C_GenerateKeyPair(h, &mech, pubt, N(pubt), privt, N(privt), pub, priv),
			 CKR_OK);
}

/* A 2048-bit RSA pair for every use. */
static void
gen_rsa(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
	CK_ULONG bits = 2048;
	CK_BYTE e[] = {1, 0, 1};
	CK_ATTRIBUTE pubt[] = {
	    {CKA_MODULUS_BITS, &bits, sizeof(bits)}, {CKA_PUBLIC_EXPONENT, e, sizeof(e)},
	    {CKA_VERIFY, &yes, sizeof(yes)},	     {CKA_ENCRYPT, &yes, sizeof(yes)},
	    {CKA_WRAP, &yes, sizeof(yes)},
	};
	CK_ATTRIBUTE privt[] = {
	    {CKA_SIGN, &yes, sizeof(yes)},
	    {CKA_DECRYPT, &yes, sizeof(yes)},
	    {CKA_UNWRAP, &yes, sizeof(yes)},
	};

	ck_assert_int_eq(F->C_GenerateKeyPair(h, &mech, pubt, N(pubt), privt, N(privt), pub, priv),
			 CKR_OK);
}

/* A secret key with a value known to the test (OpenSSL computes the same). */
static CK_OBJECT_HANDLE
secret_key(CK_SESSION_HANDLE h, CK_KEY_TYPE kt, const CK_BYTE *val, CK_ULONG len,
	   CK_BBOOL extractable)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},   {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_VALUE, (void *)val, len},    {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
	    {CKA_SENSITIVE, &no, sizeof(no)}, {CKA_ENCRYPT, &yes, sizeof(yes)},
	    {CKA_DECRYPT, &yes, sizeof(yes)}, {CKA_WRAP, &yes, sizeof(yes)},
	    {CKA_UNWRAP, &yes, sizeof(yes)},  {CKA_SIGN, &yes, sizeof(yes)},
	    {CKA_VERIFY, &yes, sizeof(yes)},
	};
	CK_OBJECT_HANDLE o;

	ck_assert_int_eq(F->C_CreateObject(h, t, N(t), &o), CKR_OK);
	return o;
}

static CK_OBJECT_HANDLE
aes_key(CK_SESSION_HANDLE h, const CK_BYTE *val, CK_ULONG len)
{
	return secret_key(h, CKK_AES, val, len, CK_TRUE);
}

/*
 * OpenSSL's verdict on a module signature. md NULL with ec: raw ECDSA over
 * data (a hash). md NULL without ec: EdDSA. pad: RSA padding (0 for EC).
 */
static int
ossl_verify(EVP_PKEY *k, const EVP_MD *md, int ec, int raw, int pad, int saltlen,
	    const CK_BYTE *data, size_t dlen, const CK_BYTE *sig, size_t slen)
{
	unsigned char *der = NULL;
	size_t derlen = slen;
	EVP_MD_CTX *ctx;
	EVP_PKEY_CTX *pctx = NULL;
	int ok;

	if (ec)
		derlen = (size_t)env_ecdsa_der(sig, slen, &der);
	else
		der = OPENSSL_memdup(sig, slen);
	if (raw) {
		pctx = EVP_PKEY_CTX_new(k, NULL);
		ck_assert_int_eq(EVP_PKEY_verify_init(pctx), 1);
		if (pad != 0) {
			ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(pctx, pad), 0);
			if (md != NULL)
				ck_assert_int_gt(EVP_PKEY_CTX_set_signature_md(pctx, md), 0);
			if (pad == RSA_PKCS1_PSS_PADDING)
				ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, saltlen),
						 0);
		}
		ok = EVP_PKEY_verify(pctx, der, derlen, data, dlen);
		EVP_PKEY_CTX_free(pctx);
	} else {
		ctx = EVP_MD_CTX_new();
		ck_assert_int_eq(EVP_DigestVerifyInit(ctx, &pctx, md, NULL, k), 1);
		if (pad != 0) {
			ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(pctx, pad), 0);
			if (pad == RSA_PKCS1_PSS_PADDING)
				ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, saltlen),
						 0);
		}
		ok = EVP_DigestVerify(ctx, der, derlen, data, dlen);
		EVP_MD_CTX_free(ctx);
	}
	OPENSSL_free(der);
	return ok;
}

static const CK_BYTE msg[] = "edgevault signs this message, which is somewhat longer than a block";

/*
 * Sign data in one part (length query first), verify it with OpenSSL and
 * in the module; sign again in parts when the mechanism streams, and
 * check both signatures verify both ways. Wrong-length and changed
 * signatures are refused. Returns the signature length.
 */
static CK_ULONG
sign_check(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub, CK_MECHANISM *mech,
	   const CK_BYTE *data, CK_ULONG dlen, CK_ULONG expect_len, int multipart, const EVP_MD *md,
	   int ec, int raw, int pad, int saltlen)
{
	CK_BYTE sig[1024], sig2[1024];
	CK_ULONG len = 0, len2, i;
	EVP_PKEY *k = env_spki(h, pub);

	ck_assert_int_eq(F->C_SignInit(h, mech, priv), CKR_OK);
	ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)data, dlen, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, expect_len);
	len = sizeof(sig);
	ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)data, dlen, sig, &len), CKR_OK);
	ck_assert_uint_eq(len, expect_len);
	ck_assert_int_eq(ossl_verify(k, md, ec, raw, pad, saltlen, data, dlen, sig, len), 1);

	ck_assert_int_eq(F->C_VerifyInit(h, mech, pub), CKR_OK);
	ck_assert_int_eq(F->C_Verify(h, (CK_BYTE *)data, dlen, sig, len), CKR_OK);

	if (multipart) {
		/* Odd chunks: 1, 7, 13, ... bytes. */
		ck_assert_int_eq(F->C_SignInit(h, mech, priv), CKR_OK);
		for (i = 0; i < dlen;) {
			CK_ULONG n = 1 + (i % 13);

			if (n > dlen - i)
				n = dlen - i;
			ck_assert_int_eq(F->C_SignUpdate(h, (CK_BYTE *)data + i, n), CKR_OK);
			i += n;
		}
		len2 = 0;
		ck_assert_int_eq(F->C_SignFinal(h, NULL, &len2), CKR_OK);
		ck_assert_uint_eq(len2, expect_len);
		len2 = sizeof(sig2);
		ck_assert_int_eq(F->C_SignFinal(h, sig2, &len2), CKR_OK);
		ck_assert_uint_eq(len2, expect_len);
		ck_assert_int_eq(ossl_verify(k, md, ec, raw, pad, saltlen, data, dlen, sig2, len2),
				 1);
		/* The multi-part signature verifies in one part, and the other way round. */
		ck_assert_int_eq(F->C_VerifyInit(h, mech, pub), CKR_OK);
		ck_assert_int_eq(F->C_Verify(h, (CK_BYTE *)data, dlen, sig2, len2), CKR_OK);
		ck_assert_int_eq(F->C_VerifyInit(h, mech, pub), CKR_OK);
		ck_assert_int_eq(F->C_VerifyUpdate(h, (CK_BYTE *)data, 5), CKR_OK);
		ck_assert_int_eq(F->C_VerifyUpdate(h, (CK_BYTE *)data + 5, dlen - 5), CKR_OK);
		ck_assert_int_eq(F->C_VerifyFinal(h, sig, len), CKR_OK);
		/* Multi-part verify of a wrong length. */
		ck_assert_int_eq(F->C_VerifyInit(h, mech, pub), CKR_OK);
		ck_assert_int_eq(F->C_VerifyUpdate(h, (CK_BYTE *)data, dlen), CKR_OK);
		ck_assert_int_eq(F->C_VerifyFinal(h, sig, len - 1), CKR_SIGNATURE_LEN_RANGE);
		ck_assert_int_eq(F->C_VerifyFinal(h, sig, len), CKR_OPERATION_NOT_INITIALIZED);
	}

	/* Wrong lengths: CKR_SIGNATURE_LEN_RANGE, and the operation is over. */
	ck_assert_int_eq(F->C_VerifyInit(h, mech, pub), CKR_OK);
	ck_assert_int_eq(F->C_Verify(h, (CK_BYTE *)data, dlen, sig, len - 1),
			 CKR_SIGNATURE_LEN_RANGE);
	ck_assert_int_eq(F->C_Verify(h, (CK_BYTE *)data, dlen, sig, len),
			 CKR_OPERATION_NOT_INITIALIZED);
	ck_assert_int_eq(F->C_VerifyInit(h, mech, pub), CKR_OK);
	ck_assert_int_eq(F->C_Verify(h, (CK_BYTE *)data, dlen, sig, len + 1),
			 CKR_SIGNATURE_LEN_RANGE);
	/* A changed signature. */
	sig[len / 3] ^= 0x40;
	ck_assert_int_eq(F->C_VerifyInit(h, mech, pub), CKR_OK);
	ck_assert_int_eq(F->C_Verify(h, (CK_BYTE *)data, dlen, sig, len), CKR_SIGNATURE_INVALID);
	EVP_PKEY_free(k);
	return len;
}

START_TEST(test_ecdsa)
{
	CK_SESSION_HANDLE h = setup("ecdsa");
	CK_OBJECT_HANDLE pub, priv;
	CK_MECHANISM raw = {CKM_ECDSA, NULL, 0};
	CK_MECHANISM s256 = {CKM_ECDSA_SHA256, NULL, 0};
	CK_MECHANISM s384 = {CKM_ECDSA_SHA384, NULL, 0};
	CK_BYTE hash[64];
	unsigned int hlen;

	gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), &pub, &priv);
	ck_assert_int_eq(EVP_Digest(msg, sizeof(msg), hash, &hlen, EVP_sha256(), NULL), 1);
	sign_check(h, priv, pub, &raw, hash, hlen, 64, 0, NULL, 1, 1, 0, 0);
	sign_check(h, priv, pub, &s256, msg, sizeof(msg), 64, 1, EVP_sha256(), 1, 0, 0, 0);
	sign_check(h, priv, pub, &s384, msg, sizeof(msg), 64, 1, EVP_sha384(), 1, 0, 0, 0);

	gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p384, sizeof(env_p384), &pub, &priv);
	ck_assert_int_eq(EVP_Digest(msg, sizeof(msg), hash, &hlen, EVP_sha384(), NULL), 1);
	sign_check(h, priv, pub, &raw, hash, hlen, 96, 0, NULL, 1, 1, 0, 0);
	sign_check(h, priv, pub, &s256, msg, sizeof(msg), 96, 1, EVP_sha256(), 1, 0, 0, 0);
	sign_check(h, priv, pub, &s384, msg, sizeof(msg), 96, 1, EVP_sha384(), 1, 0, 0, 0);
}
END_TEST

START_TEST(test_eddsa)
{
	CK_SESSION_HANDLE h = setup("eddsa");
	CK_OBJECT_HANDLE pub, priv;
	CK_MECHANISM m = {CKM_EDDSA, NULL, 0};
	CK_EDDSA_PARAMS ph = {CK_TRUE, 0, NULL};
	CK_MECHANISM mph = {CKM_EDDSA, &ph, sizeof(ph)};

	gen_ec(h, CKM_EC_EDWARDS_KEY_PAIR_GEN, env_ed25519, sizeof(env_ed25519), &pub, &priv);
	/* Pure Ed25519 signs in parts too (the module buffers). */
	sign_check(h, priv, pub, &m, msg, sizeof(msg), 64, 1, NULL, 0, 0, 0, 0);
	/* Explicit pure-Ed25519 parameters are the same; Ed25519ph and Ed25519ctx are not offered.
	 */
	{
		CK_EDDSA_PARAMS pure = {CK_FALSE, 0, NULL};
		CK_EDDSA_PARAMS ctx = {CK_FALSE, 3, (CK_BYTE *)"ctx"};
		CK_MECHANISM mp = {CKM_EDDSA, &pure, sizeof(pure)};

		sign_check(h, priv, pub, &mp, msg, sizeof(msg), 64, 0, NULL, 0, 0, 0, 0);
		ck_assert_int_eq(
		    F->C_SignInit(h, &(CK_MECHANISM){CKM_EDDSA, &ctx, sizeof(ctx)}, priv),
		    CKR_MECHANISM_PARAM_INVALID);
	}
	ck_assert_int_eq(F->C_SignInit(h, &mph, priv), CKR_MECHANISM_PARAM_INVALID);
}
END_TEST

/* DER DigestInfo prefix of SHA-256 (RFC 8017 9.2 note 1). */
static const CK_BYTE sha256_prefix[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
					0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};

START_TEST(test_rsa_sign)
{
	CK_SESSION_HANDLE h = setup("rsasign");
	CK_OBJECT_HANDLE pub, priv;
	CK_BYTE di[sizeof(sha256_prefix) + 32], hash[64];
	unsigned int hlen;
	CK_MECHANISM pkcs = {CKM_RSA_PKCS, NULL, 0};
	CK_RSA_PKCS_PSS_PARAMS pss256 = {CKM_SHA256, CKG_MGF1_SHA256, 32};
	CK_RSA_PKCS_PSS_PARAMS pss384 = {CKM_SHA384, CKG_MGF1_SHA384, 48};
	CK_RSA_PKCS_PSS_PARAMS pss512 = {CKM_SHA512, CKG_MGF1_SHA512, 20};
	CK_MECHANISM pss = {CKM_RSA_PKCS_PSS, &pss256, sizeof(pss256)};
	struct {
		CK_MECHANISM_TYPE m;
		const EVP_MD *(*md)(void);
		CK_RSA_PKCS_PSS_PARAMS *pss;
	} hashed[] = {
	    {CKM_SHA256_RSA_PKCS, EVP_sha256, NULL},
	    {CKM_SHA384_RSA_PKCS, EVP_sha384, NULL},
	    {CKM_SHA512_RSA_PKCS, EVP_sha512, NULL},
	    {CKM_SHA256_RSA_PKCS_PSS, EVP_sha256, &pss256},
	    {CKM_SHA384_RSA_PKCS_PSS, EVP_sha384, &pss384},
	    {CKM_SHA512_RSA_PKCS_PSS, EVP_sha512, &pss512},
	};
	size_t i;

	gen_rsa(h, &pub, &priv);

	/* CKM_RSA_PKCS over a DigestInfo: the same as SHA256 with PKCS#1 v1.5. */
	ck_assert_int_eq(EVP_Digest(msg, sizeof(msg), hash, &hlen, EVP_sha256(), NULL), 1);
	memcpy(di, sha256_prefix, sizeof(sha256_prefix));
	memcpy(di + sizeof(sha256_prefix), hash, 32);
	sign_check(h, priv, pub, &pkcs, di, sizeof(di), 256, 0, NULL, 0, 1, RSA_PKCS1_PADDING, 0);

	/* CKM_RSA_PKCS_PSS: a hash in, of exactly the hash's length. */
	sign_check(h, priv, pub, &pss, hash, 32, 256, 0, EVP_sha256(), 0, 1, RSA_PKCS1_PSS_PADDING,
		   32);
	{
		CK_BYTE sig[256];
		CK_ULONG len = sizeof(sig);

		ck_assert_int_eq(F->C_SignInit(h, &pss, priv), CKR_OK);
		ck_assert_int_eq(F->C_Sign(h, hash, 31, sig, &len), CKR_DATA_LEN_RANGE);
		ck_assert_int_eq(F->C_Sign(h, hash, 32, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
	}

	for (i = 0; i < N(hashed); i++) {
		CK_MECHANISM m = {hashed[i].m, hashed[i].pss,
				  hashed[i].pss != NULL ? sizeof(*hashed[i].pss) : 0};
		int pad = hashed[i].pss != NULL ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING;
		int salt = hashed[i].pss != NULL ? (int)hashed[i].pss->sLen : 0;

		sign_check(h, priv, pub, &m, msg, sizeof(msg), 256, 1, hashed[i].md(), 0, 0, pad,
			   salt);
	}
}
END_TEST

/* An RSA encryption: module to module, and OpenSSL (public key) to module. */
static void
rsa_crypt_check(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE pub, CK_OBJECT_HANDLE priv,
		CK_MECHANISM *mech, const EVP_MD *oaep_md, const CK_BYTE *label, size_t labellen)
{
	CK_BYTE pt[] = "a secret of forty-odd bytes for RSA encryption";
	CK_BYTE ct[512], out[512];
	CK_ULONG ctlen = 0, outlen;
	EVP_PKEY *k = env_spki(h, pub);
	EVP_PKEY_CTX *ctx;
	size_t oct = sizeof(ct);

	ck_assert_int_eq(F->C_EncryptInit(h, mech, pub), CKR_OK);
	ck_assert_int_eq(F->C_Encrypt(h, pt, sizeof(pt), NULL, &ctlen), CKR_OK);
	ck_assert_uint_eq(ctlen, 256);
	ctlen = sizeof(ct);
	ck_assert_int_eq(F->C_Encrypt(h, pt, sizeof(pt), ct, &ctlen), CKR_OK);
	ck_assert_uint_eq(ctlen, 256);
	ck_assert_int_eq(F->C_DecryptInit(h, mech, priv), CKR_OK);
	outlen = sizeof(out);
	ck_assert_int_eq(F->C_Decrypt(h, ct, ctlen, out, &outlen), CKR_OK);
	ck_assert_uint_eq(outlen, sizeof(pt));
	ck_assert_mem_eq(out, pt, sizeof(pt));

	/* OpenSSL encrypts with the exported public key, the module decrypts. */
	ctx = EVP_PKEY_CTX_new(k, NULL);
	ck_assert_int_eq(EVP_PKEY_encrypt_init(ctx), 1);
	if (oaep_md != NULL) {
		ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING), 0);
		ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_oaep_md(ctx, oaep_md), 0);
		ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, oaep_md), 0);
		if (labellen > 0)
			ck_assert_int_gt(EVP_PKEY_CTX_set0_rsa_oaep_label(
					     ctx, OPENSSL_memdup(label, labellen), (int)labellen),
					 0);
	} else {
		ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 0);
	}
	ck_assert_int_eq(EVP_PKEY_encrypt(ctx, ct, &oct, pt, sizeof(pt)), 1);
	EVP_PKEY_CTX_free(ctx);
	ck_assert_uint_eq(oct, 256);
	ck_assert_int_eq(F->C_DecryptInit(h, mech, priv), CKR_OK);
	/* Length query: an upper bound is allowed for decryption. */
	outlen = 0;
	ck_assert_int_eq(F->C_Decrypt(h, ct, oct, NULL, &outlen), CKR_OK);
	ck_assert_uint_ge(outlen, sizeof(pt));
	outlen = sizeof(out);
	ck_assert_int_eq(F->C_Decrypt(h, ct, oct, out, &outlen), CKR_OK);
	ck_assert_uint_eq(outlen, sizeof(pt));
	ck_assert_mem_eq(out, pt, sizeof(pt));

	/*
	 * A changed ciphertext does not decrypt (for PKCS#1 v1.5 only before
	 * OpenSSL 3.2: its implicit rejection returns a synthetic plaintext);
	 * a short one is out of range.
	 */
	ct[100] ^= 1;
	if (oaep_md != NULL || OPENSSL_VERSION_NUMBER < 0x30200000L) {
		ck_assert_int_eq(F->C_DecryptInit(h, mech, priv), CKR_OK);
		outlen = sizeof(out);
		ck_assert_int_eq(F->C_Decrypt(h, ct, oct, out, &outlen),
				 CKR_ENCRYPTED_DATA_INVALID);
	}
	ck_assert_int_eq(F->C_DecryptInit(h, mech, priv), CKR_OK);
	outlen = sizeof(out);
	ck_assert_int_eq(F->C_Decrypt(h, ct, oct - 1, out, &outlen), CKR_ENCRYPTED_DATA_LEN_RANGE);
	EVP_PKEY_free(k);
}

START_TEST(test_rsa_encrypt)
{
	CK_SESSION_HANDLE h = setup("rsaenc");
	CK_OBJECT_HANDLE pub, priv;
	CK_MECHANISM pkcs = {CKM_RSA_PKCS, NULL, 0};
	CK_BYTE label[] = "the label";
	struct {
		CK_MECHANISM_TYPE hash;
		CK_RSA_PKCS_MGF_TYPE mgf;
		const EVP_MD *(*md)(void);
	} oaep[] = {
	    {CKM_SHA_1, CKG_MGF1_SHA1, EVP_sha1},
	    {CKM_SHA256, CKG_MGF1_SHA256, EVP_sha256},
	    {CKM_SHA384, CKG_MGF1_SHA384, EVP_sha384},
	    {CKM_SHA512, CKG_MGF1_SHA512, EVP_sha512},
	};
	size_t i;

	gen_rsa(h, &pub, &priv);
	rsa_crypt_check(h, pub, priv, &pkcs, NULL, NULL, 0);
	for (i = 0; i < N(oaep); i++) {
		CK_RSA_PKCS_OAEP_PARAMS p = {oaep[i].hash, oaep[i].mgf, CKZ_DATA_SPECIFIED, NULL,
					     0};
		CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &p, sizeof(p)};

		rsa_crypt_check(h, pub, priv, &m, oaep[i].md(), NULL, 0);
		p.pSourceData = label;
		p.ulSourceDataLen = sizeof(label) - 1;
		rsa_crypt_check(h, pub, priv, &m, oaep[i].md(), label, sizeof(label) - 1);
	}
	/* Too much data for the modulus. */
	{
		CK_BYTE big[246], ct[256];
		CK_ULONG ctlen = sizeof(ct);

		memset(big, 7, sizeof(big));
		ck_assert_int_eq(F->C_EncryptInit(h, &pkcs, pub), CKR_OK);
		ck_assert_int_eq(F->C_Encrypt(h, big, sizeof(big), ct, &ctlen), CKR_DATA_LEN_RANGE);
		ck_assert_int_eq(F->C_Encrypt(h, big, 10, ct, &ctlen),
				 CKR_OPERATION_NOT_INITIALIZED);
	}
}
END_TEST

/* OpenSSL's encryption or decryption with an AES mode; tag appended/consumed for GCM. */
static size_t
ossl_aes(const char *name, int enc, const CK_BYTE *key, const CK_BYTE *iv, size_t ivlen,
	 const CK_BYTE *aad, size_t aadlen, int pad, const CK_BYTE *in, size_t inlen, CK_BYTE *out)
{
	EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, name, NULL);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int gcm = strstr(name, "GCM") != NULL, l1 = 0, l2 = 0;
	OSSL_PARAM params[2] = {OSSL_PARAM_END, OSSL_PARAM_END};

	ck_assert_ptr_nonnull(c);
	if (gcm)
		params[0] = OSSL_PARAM_construct_size_t(OSSL_CIPHER_PARAM_AEAD_IVLEN, &ivlen);
	ck_assert_int_eq(EVP_CipherInit_ex2(ctx, c, NULL, NULL, enc, params), 1);
	ck_assert_int_eq(EVP_CipherInit_ex2(ctx, NULL, key, iv, enc, NULL), 1);
	EVP_CIPHER_CTX_set_padding(ctx, pad);
	if (gcm && aadlen > 0)
		ck_assert_int_eq(EVP_CipherUpdate(ctx, NULL, &l1, aad, (int)aadlen), 1);
	if (gcm && !enc) {
		inlen -= 16;
		ck_assert_int_eq(
		    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, (void *)(in + inlen)), 1);
	}
	l1 = 0;
	ck_assert_int_eq(EVP_CipherUpdate(ctx, out, &l1, in, (int)inlen), 1);
	ck_assert_int_eq(EVP_CipherFinal_ex(ctx, out + l1, &l2), 1);
	if (gcm && enc) {
		ck_assert_int_eq(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, out + l1 + l2),
				 1);
		l2 += 16;
	}
	EVP_CIPHER_CTX_free(ctx);
	EVP_CIPHER_free(c);
	return (size_t)(l1 + l2);
}

/* Run a whole multi-part encryption or decryption in odd chunks; returns the output length. */
static CK_ULONG
crypt_parts(CK_SESSION_HANDLE h, int enc, CK_MECHANISM *m, CK_OBJECT_HANDLE key, const CK_BYTE *in,
	    CK_ULONG inlen, CK_BYTE *out, CK_ULONG cap)
{
	static const CK_ULONG chunks[] = {1, 15, 17, 3, 33, 5, 16, 7};
	CK_ULONG done = 0, off = 0, n, len, i = 0;
	CK_RV (*init)
	(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE) =
	    enc ? F->C_EncryptInit : F->C_DecryptInit;
	CK_RV (*update)
	(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR) =
	    enc ? F->C_EncryptUpdate : F->C_DecryptUpdate;
	CK_RV (*final)
	(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR) =
	    enc ? F->C_EncryptFinal : F->C_DecryptFinal;
	CK_ULONG q;

	ck_assert_int_eq(init(h, m, key), CKR_OK);
	while (off < inlen) {
		n = chunks[i++ % N(chunks)];
		if (n > inlen - off)
			n = inlen - off;
		/* A length query first: it takes no input. */
		q = 0;
		ck_assert_int_eq(update(h, (CK_BYTE *)in + off, n, NULL, &q), CKR_OK);
		len = cap - done;
		ck_assert_int_eq(update(h, (CK_BYTE *)in + off, n, out + done, &len), CKR_OK);
		ck_assert_uint_le(len, q);
		done += len;
		off += n;
	}
	q = 0;
	ck_assert_int_eq(final(h, NULL, &q), CKR_OK);
	len = cap - done;
	ck_assert_int_eq(final(h, out + done, &len), CKR_OK);
	ck_assert_uint_le(len, q);
	return done + len;
}

static const CK_BYTE key256[32] = {0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae,
				   0xf0, 0x85, 0x7d, 0x77, 0x81, 0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61,
				   0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4};

START_TEST(test_aes_modes)
{
	CK_SESSION_HANDLE h = setup("aes");
	CK_OBJECT_HANDLE k128, k192, k256;
	CK_BYTE iv[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
	CK_AES_CTR_PARAMS ctr = {128,
				 {0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
				  0xfb, 0xfc, 0xfd, 0xfe, 0xff}};
	CK_BYTE aad[] = "additional data, authenticated";
	CK_GCM_PARAMS gcm = {iv, 12, 96, aad, sizeof(aad) - 1, 128};
	struct {
		CK_MECHANISM m;
		const char *name; /* %d for the key bits */
		const CK_BYTE *iv;
		size_t ivlen;
		int pad, gcm;
	} modes[] = {
	    {{CKM_AES_ECB, NULL, 0}, "AES-%d-ECB", NULL, 0, 0, 0},
	    {{CKM_AES_CBC, iv, 16}, "AES-%d-CBC", iv, 16, 0, 0},
	    {{CKM_AES_CBC_PAD, iv, 16}, "AES-%d-CBC", iv, 16, 1, 0},
	    {{CKM_AES_CTR, &ctr, sizeof(ctr)}, "AES-%d-CTR", ctr.cb, 16, 0, 0},
	    {{CKM_AES_GCM, &gcm, sizeof(gcm)}, "AES-%d-GCM", iv, 12, 0, 1},
	};
	CK_BYTE pt[200], ct[300], expect[300], out[300];
	CK_ULONG lens[] = {0, 16, 64, 160, 37, 199}, len, n;
	size_t i, j, kk, elen;

	for (i = 0; i < sizeof(pt); i++)
		pt[i] = (CK_BYTE)(i * 7 + 3);
	k128 = aes_key(h, key256, 16);
	k192 = aes_key(h, key256, 24);
	k256 = aes_key(h, key256, 32);
	for (kk = 0; kk < 3; kk++) {
		CK_OBJECT_HANDLE k = kk == 0 ? k128 : kk == 1 ? k192 : k256;
		int bits = 128 + 64 * (int)kk;

		for (i = 0; i < N(modes); i++) {
			char name[32];

			snprintf(name, sizeof(name), modes[i].name, bits);
			for (j = 0; j < N(lens); j++) {
				CK_ULONG l = lens[j];

				/* ECB and CBC take whole blocks only. */
				if (!modes[i].pad && !modes[i].gcm &&
				    modes[i].m.mechanism != CKM_AES_CTR && l % 16 != 0)
					continue;
				elen = ossl_aes(name, 1, key256, modes[i].iv, modes[i].ivlen, aad,
						sizeof(aad) - 1, modes[i].pad, pt, l, expect);

				/* Single part, with a length query and a too-small buffer. */
				ck_assert_int_eq(F->C_EncryptInit(h, &modes[i].m, k), CKR_OK);
				len = 0;
				ck_assert_int_eq(F->C_Encrypt(h, pt, l, NULL, &len), CKR_OK);
				ck_assert_uint_eq(len, elen);
				if (elen > 0) {
					len = elen - 1;
					ck_assert_int_eq(F->C_Encrypt(h, pt, l, ct, &len),
							 CKR_BUFFER_TOO_SMALL);
					ck_assert_uint_eq(len, elen);
				}
				len = sizeof(ct);
				ck_assert_int_eq(F->C_Encrypt(h, pt, l, ct, &len), CKR_OK);
				ck_assert_uint_eq(len, elen);
				ck_assert_mem_eq(ct, expect, elen);

				/* Multi-part in odd chunks. */
				n = crypt_parts(h, 1, &modes[i].m, k, pt, l, out, sizeof(out));
				ck_assert_uint_eq(n, elen);
				ck_assert_mem_eq(out, expect, elen);

				/* Decryption of OpenSSL's output, in one part and in parts. */
				ck_assert_int_eq(F->C_DecryptInit(h, &modes[i].m, k), CKR_OK);
				len = 0;
				ck_assert_int_eq(F->C_Decrypt(h, expect, elen, NULL, &len), CKR_OK);
				ck_assert_uint_ge(len, l);
				len = sizeof(out);
				ck_assert_int_eq(F->C_Decrypt(h, expect, elen, out, &len), CKR_OK);
				ck_assert_uint_eq(len, l);
				ck_assert_mem_eq(out, pt, l);
				n = crypt_parts(h, 0, &modes[i].m, k, expect, elen, out,
						sizeof(out));
				ck_assert_uint_eq(n, l);
				ck_assert_mem_eq(out, pt, l);
			}
		}
	}
}
END_TEST

START_TEST(test_aes_errors)
{
	CK_SESSION_HANDLE h = setup("aeserr");
	CK_OBJECT_HANDLE k = aes_key(h, key256, 32);
	CK_BYTE iv[16] = {9, 8, 7};
	CK_BYTE aad[] = "header";
	CK_GCM_PARAMS gcm = {iv, 12, 96, aad, sizeof(aad) - 1, 128};
	CK_GCM_PARAMS gcm0 = {iv, 12, 96, aad, sizeof(aad) - 1, 0};
	CK_GCM_PARAMS noiv = {NULL, 0, 0, NULL, 0, 128};
	CK_MECHANISM mgcm = {CKM_AES_GCM, &gcm, sizeof(gcm)};
	CK_MECHANISM mecb = {CKM_AES_ECB, NULL, 0};
	CK_MECHANISM mcbc = {CKM_AES_CBC, iv, 16};
	CK_MECHANISM mpad = {CKM_AES_CBC_PAD, iv, 16};
	CK_BYTE pt[64], ct[128], out[128], expect[128];
	CK_ULONG len, ctlen;
	size_t elen;

	memset(pt, 'p', sizeof(pt));
	/* GCM with AAD: equal to OpenSSL; a changed tag, AAD or text gives no plaintext. */
	elen = ossl_aes("AES-256-GCM", 1, key256, iv, 12, aad, sizeof(aad) - 1, 0, pt, 40, expect);
	ck_assert_int_eq(F->C_EncryptInit(h, &mgcm, k), CKR_OK);
	ctlen = sizeof(ct);
	ck_assert_int_eq(F->C_Encrypt(h, pt, 40, ct, &ctlen), CKR_OK);
	ck_assert_uint_eq(ctlen, elen);
	ck_assert_mem_eq(ct, expect, elen);
	ct[ctlen - 1] ^= 0x80; /* the tag */
	memset(out, 0, sizeof(out));
	ck_assert_int_eq(F->C_DecryptInit(h, &mgcm, k), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(F->C_Decrypt(h, ct, ctlen, out, &len), CKR_ENCRYPTED_DATA_INVALID);
	ck_assert_int_eq(memcmp(out, pt, 40) != 0, 1);
	ck_assert_int_eq(F->C_Decrypt(h, ct, ctlen, out, &len), CKR_OPERATION_NOT_INITIALIZED);
	/* In parts: nothing is released before the tag is checked. */
	ck_assert_int_eq(F->C_DecryptInit(h, &mgcm, k), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(F->C_DecryptUpdate(h, ct, 30, out, &len), CKR_OK);
	ck_assert_uint_eq(len, 0);
	len = sizeof(out);
	ck_assert_int_eq(F->C_DecryptUpdate(h, ct + 30, ctlen - 30, out, &len), CKR_OK);
	ck_assert_uint_eq(len, 0);
	len = sizeof(out);
	ck_assert_int_eq(F->C_DecryptFinal(h, out, &len), CKR_ENCRYPTED_DATA_INVALID);
	ck_assert_int_eq(memcmp(out, pt, 40) != 0, 1);
	ck_assert_int_eq(F->C_DecryptFinal(h, out, &len), CKR_OPERATION_NOT_INITIALIZED);
	/* Other AAD. */
	ct[ctlen - 1] ^= 0x80;
	gcm.ulAADLen--;
	ck_assert_int_eq(F->C_DecryptInit(h, &mgcm, k), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(F->C_Decrypt(h, ct, ctlen, out, &len), CKR_ENCRYPTED_DATA_INVALID);
	gcm.ulAADLen++;
	ck_assert_int_eq(F->C_DecryptInit(h, &mgcm, k), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(F->C_Decrypt(h, ct, ctlen, out, &len), CKR_OK);
	ck_assert_uint_eq(len, 40);
	ck_assert_mem_eq(out, pt, 40);
	/* Shorter than the tag. */
	ck_assert_int_eq(F->C_DecryptInit(h, &mgcm, k), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(F->C_Decrypt(h, ct, 15, out, &len), CKR_ENCRYPTED_DATA_LEN_RANGE);

	/* Bad GCM parameters. */
	ck_assert_int_eq(F->C_EncryptInit(h, &(CK_MECHANISM){CKM_AES_GCM, NULL, 0}, k),
			 CKR_MECHANISM_PARAM_INVALID);
	ck_assert_int_eq(F->C_EncryptInit(h, &(CK_MECHANISM){CKM_AES_GCM, &gcm0, sizeof(gcm0)}, k),
			 CKR_MECHANISM_PARAM_INVALID);
	ck_assert_int_eq(F->C_EncryptInit(h, &(CK_MECHANISM){CKM_AES_GCM, &noiv, sizeof(noiv)}, k),
			 CKR_MECHANISM_PARAM_INVALID);
	ck_assert_int_eq(F->C_EncryptInit(h, &(CK_MECHANISM){CKM_AES_GCM, &gcm, 3}, k),
			 CKR_MECHANISM_PARAM_INVALID);
	ck_assert_int_eq(F->C_EncryptInit(h, &(CK_MECHANISM){CKM_AES_CBC, iv, 8}, k),
			 CKR_MECHANISM_PARAM_INVALID);
	ck_assert_int_eq(F->C_EncryptInit(h, &(CK_MECHANISM){CKM_AES_CTR, NULL, 0}, k),
			 CKR_MECHANISM_PARAM_INVALID);
	ck_assert_int_eq(F->C_EncryptInit(h, &(CK_MECHANISM){CKM_AES_CBC, NULL, 0}, k),
			 CKR_MECHANISM_PARAM_INVALID);
	ck_assert_int_eq(F->C_EncryptInit(h, &(CK_MECHANISM){CKM_AES_ECB, iv, 16}, k),
			 CKR_MECHANISM_PARAM_INVALID);
	{
		CK_AES_CTR_PARAMS c0 = {0, {0}};

		ck_assert_int_eq(
		    F->C_EncryptInit(h, &(CK_MECHANISM){CKM_AES_CTR, &c0, sizeof(c0)}, k),
		    CKR_MECHANISM_PARAM_INVALID);
	}
	/* A failed init leaves no operation behind. */
	ck_assert_int_eq(F->C_EncryptInit(h, &mecb, k), CKR_OK);
	len = sizeof(ct);
	ck_assert_int_eq(F->C_Encrypt(h, pt, 16, ct, &len), CKR_OK);

	/* ECB and CBC take whole blocks. */
	ck_assert_int_eq(F->C_EncryptInit(h, &mecb, k), CKR_OK);
	len = sizeof(ct);
	ck_assert_int_eq(F->C_Encrypt(h, pt, 17, ct, &len), CKR_DATA_LEN_RANGE);
	ck_assert_int_eq(F->C_Encrypt(h, pt, 16, ct, &len), CKR_OPERATION_NOT_INITIALIZED);
	ck_assert_int_eq(F->C_DecryptInit(h, &mecb, k), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(F->C_Decrypt(h, ct, 17, out, &len), CKR_ENCRYPTED_DATA_LEN_RANGE);
	ck_assert_int_eq(F->C_Decrypt(h, ct, 16, out, &len), CKR_OPERATION_NOT_INITIALIZED);
	ck_assert_int_eq(F->C_EncryptInit(h, &mcbc, k), CKR_OK);
	len = sizeof(ct);
	ck_assert_int_eq(F->C_Encrypt(h, pt, 33, ct, &len), CKR_DATA_LEN_RANGE);
	ck_assert_int_eq(F->C_DecryptInit(h, &mcbc, k), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(F->C_Decrypt(h, ct, 31, out, &len), CKR_ENCRYPTED_DATA_LEN_RANGE);
	/* The same in parts: the final call sees the odd total. */
	ck_assert_int_eq(F->C_EncryptInit(h, &mcbc, k), CKR_OK);
	len = sizeof(ct);
	ck_assert_int_eq(F->C_EncryptUpdate(h, pt, 20, ct, &len), CKR_OK);
	ck_assert_uint_eq(len, 16);
	len = sizeof(ct);
	ck_assert_int_eq(F->C_EncryptFinal(h, ct, &len), CKR_DATA_LEN_RANGE);
	ck_assert_int_eq(F->C_EncryptFinal(h, ct, &len), CKR_OPERATION_NOT_INITIALIZED);
	ck_assert_int_eq(F->C_DecryptInit(h, &mecb, k), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(F->C_DecryptUpdate(h, ct, 20, out, &len), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(F->C_DecryptFinal(h, out, &len), CKR_ENCRYPTED_DATA_LEN_RANGE);
	/* CBC_PAD: ciphertext of whole blocks only, and a padding that checks. */
	ck_assert_int_eq(F->C_DecryptInit(h, &mpad, k), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(F->C_Decrypt(h, ct, 31, out, &len), CKR_ENCRYPTED_DATA_LEN_RANGE);
	ck_assert_int_eq(F->C_DecryptInit(h, &mpad, k), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(F->C_Decrypt(h, ct, 0, out, &len), CKR_ENCRYPTED_DATA_LEN_RANGE);
	/* Plain CBC output of non-padded data is (almost surely) a bad padding. */
	ck_assert_int_eq(F->C_EncryptInit(h, &mcbc, k), CKR_OK);
	memset(pt, 0, 16);
	pt[15] = 0x33;
	len = sizeof(ct);
	ck_assert_int_eq(F->C_Encrypt(h, pt, 16, ct, &len), CKR_OK);
	ck_assert_int_eq(F->C_DecryptInit(h, &mpad, k), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(F->C_Decrypt(h, ct, 16, out, &len), CKR_ENCRYPTED_DATA_INVALID);
}
END_TEST

START_TEST(test_hmac)
{
	CK_SESSION_HANDLE h = setup("hmac");
	CK_BYTE kv[40];
	CK_OBJECT_HANDLE k, aes;
	struct {
		CK_MECHANISM_TYPE m;
		const EVP_MD *(*md)(void);
		CK_ULONG len;
	} macs[] = {
	    {CKM_SHA256_HMAC, EVP_sha256, 32},
	    {CKM_SHA384_HMAC, EVP_sha384, 48},
	    {CKM_SHA512_HMAC, EVP_sha512, 64},
	};
	CK_BYTE mac[64], expect[64];
	unsigned int elen;
	CK_ULONG len, i, off;
	size_t j;

	for (i = 0; i < sizeof(kv); i++)
		kv[i] = (CK_BYTE)(0xa0 + i);
	k = secret_key(h, CKK_GENERIC_SECRET, kv, sizeof(kv), CK_FALSE);
	aes = aes_key(h, key256, 32);
	for (j = 0; j < N(macs); j++) {
		CK_MECHANISM m = {macs[j].m, NULL, 0};

		ck_assert_ptr_nonnull(
		    HMAC(macs[j].md(), kv, sizeof(kv), msg, sizeof(msg), expect, &elen));
		ck_assert_uint_eq(elen, macs[j].len);
		ck_assert_int_eq(F->C_SignInit(h, &m, k), CKR_OK);
		len = 0;
		ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)msg, sizeof(msg), NULL, &len), CKR_OK);
		ck_assert_uint_eq(len, elen);
		len = elen - 1;
		ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)msg, sizeof(msg), mac, &len),
				 CKR_BUFFER_TOO_SMALL);
		ck_assert_uint_eq(len, elen);
		len = sizeof(mac);
		ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)msg, sizeof(msg), mac, &len), CKR_OK);
		ck_assert_uint_eq(len, elen);
		ck_assert_mem_eq(mac, expect, elen);

		/* In parts of odd sizes. */
		ck_assert_int_eq(F->C_SignInit(h, &m, k), CKR_OK);
		for (off = 0; off < sizeof(msg); off += 11)
			ck_assert_int_eq(
			    F->C_SignUpdate(h, (CK_BYTE *)msg + off,
					    sizeof(msg) - off < 11 ? sizeof(msg) - off : 11),
			    CKR_OK);
		len = 1;
		ck_assert_int_eq(F->C_SignFinal(h, mac, &len), CKR_BUFFER_TOO_SMALL);
		ck_assert_uint_eq(len, elen);
		len = sizeof(mac);
		memset(mac, 0, sizeof(mac));
		ck_assert_int_eq(F->C_SignFinal(h, mac, &len), CKR_OK);
		ck_assert_uint_eq(len, elen);
		ck_assert_mem_eq(mac, expect, elen);

		ck_assert_int_eq(F->C_VerifyInit(h, &m, k), CKR_OK);
		ck_assert_int_eq(F->C_Verify(h, (CK_BYTE *)msg, sizeof(msg), expect, elen), CKR_OK);
		ck_assert_int_eq(F->C_VerifyInit(h, &m, k), CKR_OK);
		ck_assert_int_eq(F->C_VerifyUpdate(h, (CK_BYTE *)msg, 3), CKR_OK);
		ck_assert_int_eq(F->C_VerifyUpdate(h, (CK_BYTE *)msg + 3, sizeof(msg) - 3), CKR_OK);
		ck_assert_int_eq(F->C_VerifyFinal(h, expect, elen), CKR_OK);
		ck_assert_int_eq(F->C_VerifyInit(h, &m, k), CKR_OK);
		ck_assert_int_eq(F->C_Verify(h, (CK_BYTE *)msg, sizeof(msg), expect, elen - 1),
				 CKR_SIGNATURE_LEN_RANGE);
		expect[0] ^= 1;
		ck_assert_int_eq(F->C_VerifyInit(h, &m, k), CKR_OK);
		ck_assert_int_eq(F->C_Verify(h, (CK_BYTE *)msg, sizeof(msg), expect, elen),
				 CKR_SIGNATURE_INVALID);
		/* An AES key is no HMAC key. */
		ck_assert_int_eq(F->C_SignInit(h, &m, aes), CKR_KEY_TYPE_INCONSISTENT);
	}
	/* HMAC takes no parameter. */
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){CKM_SHA256_HMAC, kv, 4}, k),
			 CKR_MECHANISM_PARAM_INVALID);
}
END_TEST

START_TEST(test_digest)
{
	CK_SESSION_HANDLE h = setup("digest");
	CK_BYTE kv[24] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12,
			  13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24};
	CK_OBJECT_HANDLE k, pub, priv;
	struct {
		CK_MECHANISM_TYPE m;
		const EVP_MD *(*md)(void);
		CK_ULONG len;
	} dg[] = {
	    {CKM_SHA_1, EVP_sha1, 20},
	    {CKM_SHA256, EVP_sha256, 32},
	    {CKM_SHA384, EVP_sha384, 48},
	    {CKM_SHA512, EVP_sha512, 64},
	};
	CK_BYTE out[64], expect[64];
	unsigned int elen;
	CK_ULONG len, off;
	size_t j;

	k = aes_key(h, kv, sizeof(kv));
	gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), &pub, &priv);
	for (j = 0; j < N(dg); j++) {
		CK_MECHANISM m = {dg[j].m, NULL, 0};
		EVP_MD_CTX *ctx;

		ck_assert_int_eq(EVP_Digest(msg, sizeof(msg), expect, &elen, dg[j].md(), NULL), 1);
		ck_assert_uint_eq(elen, dg[j].len);
		ck_assert_int_eq(F->C_DigestInit(h, &m), CKR_OK);
		ck_assert_int_eq(F->C_DigestInit(h, &m), CKR_OPERATION_ACTIVE);
		len = 0;
		ck_assert_int_eq(F->C_Digest(h, (CK_BYTE *)msg, sizeof(msg), NULL, &len), CKR_OK);
		ck_assert_uint_eq(len, elen);
		len = 4;
		ck_assert_int_eq(F->C_Digest(h, (CK_BYTE *)msg, sizeof(msg), out, &len),
				 CKR_BUFFER_TOO_SMALL);
		ck_assert_uint_eq(len, elen);
		len = sizeof(out);
		ck_assert_int_eq(F->C_Digest(h, (CK_BYTE *)msg, sizeof(msg), out, &len), CKR_OK);
		ck_assert_uint_eq(len, elen);
		ck_assert_mem_eq(out, expect, elen);
		ck_assert_int_eq(F->C_Digest(h, (CK_BYTE *)msg, sizeof(msg), out, &len),
				 CKR_OPERATION_NOT_INITIALIZED);

		ck_assert_int_eq(F->C_DigestInit(h, &m), CKR_OK);
		for (off = 0; off < sizeof(msg); off += 9)
			ck_assert_int_eq(
			    F->C_DigestUpdate(h, (CK_BYTE *)msg + off,
					      sizeof(msg) - off < 9 ? sizeof(msg) - off : 9),
			    CKR_OK);
		/* (A single-part call after an update: test_single_part_after_update.) */
		len = 0;
		ck_assert_int_eq(F->C_DigestFinal(h, NULL, &len), CKR_OK);
		ck_assert_uint_eq(len, elen);
		len = elen - 1;
		ck_assert_int_eq(F->C_DigestFinal(h, out, &len), CKR_BUFFER_TOO_SMALL);
		ck_assert_uint_eq(len, elen);
		len = sizeof(out);
		ck_assert_int_eq(F->C_DigestFinal(h, out, &len), CKR_OK);
		ck_assert_uint_eq(len, elen);
		ck_assert_mem_eq(out, expect, elen);

		/* C_DigestKey: the key's value goes in where it is called. */
		ctx = EVP_MD_CTX_new();
		ck_assert_int_eq(EVP_DigestInit_ex(ctx, dg[j].md(), NULL), 1);
		ck_assert_int_eq(EVP_DigestUpdate(ctx, "ab", 2), 1);
		ck_assert_int_eq(EVP_DigestUpdate(ctx, kv, sizeof(kv)), 1);
		ck_assert_int_eq(EVP_DigestUpdate(ctx, "cd", 2), 1);
		ck_assert_int_eq(EVP_DigestFinal_ex(ctx, expect, &elen), 1);
		EVP_MD_CTX_free(ctx);
		ck_assert_int_eq(F->C_DigestInit(h, &m), CKR_OK);
		ck_assert_int_eq(F->C_DigestUpdate(h, (CK_BYTE *)"ab", 2), CKR_OK);
		ck_assert_int_eq(F->C_DigestKey(h, k), CKR_OK);
		ck_assert_int_eq(F->C_DigestUpdate(h, (CK_BYTE *)"cd", 2), CKR_OK);
		len = sizeof(out);
		ck_assert_int_eq(F->C_DigestFinal(h, out, &len), CKR_OK);
		ck_assert_uint_eq(len, elen);
		ck_assert_mem_eq(out, expect, elen);
	}
	/* Keys that are not secret keys cannot be digested; the error ends the operation. */
	ck_assert_int_eq(F->C_DigestInit(h, &(CK_MECHANISM){CKM_SHA256, NULL, 0}), CKR_OK);
	ck_assert_int_eq(F->C_DigestKey(h, pub), CKR_KEY_INDIGESTIBLE);
	ck_assert_int_eq(F->C_DigestUpdate(h, (CK_BYTE *)"x", 1), CKR_OPERATION_NOT_INITIALIZED);
	ck_assert_int_eq(F->C_DigestKey(h, k), CKR_OPERATION_NOT_INITIALIZED);
	ck_assert_int_eq(F->C_DigestInit(h, &(CK_MECHANISM){CKM_SHA256, kv, 1}),
			 CKR_MECHANISM_PARAM_INVALID);
	ck_assert_int_eq(F->C_DigestInit(h, &(CK_MECHANISM){CKM_AES_ECB, NULL, 0}),
			 CKR_MECHANISM_INVALID);
}
END_TEST

static void check_origin_attrs(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_BBOOL local,
			       CK_BBOOL asens, CK_BBOOL nextr, CK_ULONG vlen);

/* A secret key's CKA_VALUE (it must be extractable and not sensitive). */
static CK_ULONG
value_of(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_BYTE *buf, CK_ULONG cap)
{
	CK_ATTRIBUTE a = {CKA_VALUE, buf, cap};

	ck_assert_int_eq(F->C_GetAttributeValue(h, o, &a, 1), CKR_OK);
	return a.ulValueLen;
}

/* ECDH with a peer made by OpenSSL, on one curve, with CKD_NULL and CKD_SHA256_KDF. */
static void
ecdh_check(CK_SESSION_HANDLE h, const CK_BYTE *curve, CK_ULONG clen, const char *name)
{
	CK_OBJECT_HANDLE pub, priv, dk;
	EVP_PKEY *peer = EVP_EC_gen(name), *mine;
	EVP_PKEY_CTX *ctx;
	unsigned char *pt = NULL, z[128], kdf[64], der[200];
	size_t ptlen, zlen = sizeof(z);
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE gen = CKK_GENERIC_SECRET, aes = CKK_AES;
	CK_ULONG vlen = 0;
	CK_BYTE got[128], shared[] = "shared info";
	CK_ECDH1_DERIVE_PARAMS p = {CKD_NULL, 0, NULL, 0, NULL};
	CK_MECHANISM m = {CKM_ECDH1_DERIVE, &p, sizeof(p)};
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},	  {CKA_KEY_TYPE, &gen, sizeof(gen)},
	    {CKA_SENSITIVE, &no, sizeof(no)},	  {CKA_EXTRACTABLE, &yes, sizeof(yes)},
	    {CKA_VALUE_LEN, &vlen, sizeof(vlen)},
	};
	CK_ULONG n;

	ck_assert_ptr_nonnull(peer);
	gen_ec(h, CKM_EC_KEY_PAIR_GEN, curve, clen, &pub, &priv);
	ptlen = EVP_PKEY_get1_encoded_public_key(peer, &pt);
	ck_assert_uint_gt(ptlen, 0);
	p.pPublicData = pt;
	p.ulPublicDataLen = ptlen;

	/* OpenSSL's side: the peer's private key and the module's public key. */
	mine = env_spki(h, pub);
	ctx = EVP_PKEY_CTX_new(peer, NULL);
	ck_assert_int_eq(EVP_PKEY_derive_init(ctx), 1);
	ck_assert_int_eq(EVP_PKEY_derive_set_peer(ctx, mine), 1);
	ck_assert_int_eq(EVP_PKEY_derive(ctx, z, &zlen), 1);
	EVP_PKEY_CTX_free(ctx);

	/* CKD_NULL, no length: the whole shared secret. */
	ck_assert_int_eq(F->C_DeriveKey(h, &m, priv, t, N(t) - 1, &dk), CKR_OK);
	n = value_of(h, dk, got, sizeof(got));
	ck_assert_uint_eq(n, zlen);
	ck_assert_mem_eq(got, z, zlen);
	check_origin_attrs(h, dk, CK_FALSE, CK_FALSE, CK_FALSE, zlen);
	/* The same with the point as a DER OCTET STRING. */
	der[0] = 0x04;
	der[1] = (CK_BYTE)ptlen;
	memcpy(der + 2, pt, ptlen);
	p.pPublicData = der;
	p.ulPublicDataLen = ptlen + 2;
	vlen = zlen;
	ck_assert_int_eq(F->C_DeriveKey(h, &m, priv, t, N(t), &dk), CKR_OK);
	n = value_of(h, dk, got, sizeof(got));
	ck_assert_uint_eq(n, zlen);
	ck_assert_mem_eq(got, z, zlen);

	/* A shorter CKA_VALUE_LEN: the truncation removes bytes from the leading end. */
	vlen = 16;
	ck_assert_int_eq(F->C_DeriveKey(h, &m, priv, t, N(t), &dk), CKR_OK);
	n = value_of(h, dk, got, sizeof(got));
	ck_assert_uint_eq(n, 16);
	ck_assert_mem_eq(got, z + zlen - 16, 16);

	/* CKD_SHA256_KDF (ANSI X9.63) with shared data, 40 bytes. */
	{
		EVP_KDF *k = EVP_KDF_fetch(NULL, "X963KDF", NULL);
		EVP_KDF_CTX *kc = EVP_KDF_CTX_new(k);
		OSSL_PARAM op[] = {
		    OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0),
		    OSSL_PARAM_construct_octet_string("key", z, zlen),
		    OSSL_PARAM_construct_octet_string("info", shared, sizeof(shared) - 1),
		    OSSL_PARAM_construct_end(),
		};

		ck_assert_int_eq(EVP_KDF_derive(kc, kdf, 40, op), 1);
		EVP_KDF_CTX_free(kc);
		EVP_KDF_free(k);
	}
	p.kdf = CKD_SHA256_KDF;
	p.pSharedData = shared;
	p.ulSharedDataLen = sizeof(shared) - 1;
	vlen = 40;
	ck_assert_int_eq(F->C_DeriveKey(h, &m, priv, t, N(t), &dk), CKR_OK);
	n = value_of(h, dk, got, sizeof(got));
	ck_assert_uint_eq(n, 40);
	ck_assert_mem_eq(got, kdf, 40);
	/* An AES key from the KDF works and is the same key. */
	{
		CK_ATTRIBUTE ta[] = {
		    {CKA_CLASS, &cls, sizeof(cls)},
		    {CKA_KEY_TYPE, &aes, sizeof(aes)},
		    {CKA_VALUE_LEN, &vlen, sizeof(vlen)},
		    {CKA_ENCRYPT, &yes, sizeof(yes)},
		};
		CK_BYTE block[16] = {0}, ct[16], expect[16];
		CK_ULONG len = sizeof(ct);

		vlen = 32;
		ck_assert_int_eq(F->C_DeriveKey(h, &m, priv, ta, N(ta), &dk), CKR_OK);
		ck_assert_int_eq(F->C_EncryptInit(h, &(CK_MECHANISM){CKM_AES_ECB, NULL, 0}, dk),
				 CKR_OK);
		ck_assert_int_eq(F->C_Encrypt(h, block, 16, ct, &len), CKR_OK);
		ossl_aes("AES-256-ECB", 1, kdf, NULL, 0, NULL, 0, 0, block, 16, expect);
		ck_assert_mem_eq(ct, expect, 16);
	}

	/* Bad parameters. */
	p.kdf = CKD_NULL; /* shared data needs a KDF */
	ck_assert_int_eq(F->C_DeriveKey(h, &m, priv, t, N(t) - 1, &dk),
			 CKR_MECHANISM_PARAM_INVALID);
	p.pSharedData = NULL;
	p.ulSharedDataLen = 0;
	p.ulPublicDataLen = 5;
	ck_assert_int_eq(F->C_DeriveKey(h, &m, priv, t, N(t) - 1, &dk),
			 CKR_MECHANISM_PARAM_INVALID);
	ck_assert_int_eq(
	    F->C_DeriveKey(h, &(CK_MECHANISM){CKM_ECDH1_DERIVE, NULL, 0}, priv, t, N(t) - 1, &dk),
	    CKR_MECHANISM_PARAM_INVALID);
	OPENSSL_free(pt);
	EVP_PKEY_free(peer);
	EVP_PKEY_free(mine);
}

START_TEST(test_ecdh)
{
	CK_SESSION_HANDLE h = setup("ecdh");
	CK_OBJECT_HANDLE pub, priv, dk;
	CK_BYTE point[65] = {0x04};
	CK_ECDH1_DERIVE_PARAMS p = {CKD_NULL, 0, NULL, sizeof(point), point};
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE gen = CKK_GENERIC_SECRET;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &gen, sizeof(gen)}};

	ecdh_check(h, env_p256, sizeof(env_p256), "P-256");
	ecdh_check(h, env_p384, sizeof(env_p384), "P-384");
	/* An Edwards key is no ECDH key. */
	gen_ec(h, CKM_EC_EDWARDS_KEY_PAIR_GEN, env_ed25519, sizeof(env_ed25519), &pub, &priv);
	ck_assert_int_eq(
	    F->C_DeriveKey(h, &(CK_MECHANISM){CKM_ECDH1_DERIVE, &p, sizeof(p)}, priv, t, 2, &dk),
	    CKR_KEY_TYPE_INCONSISTENT);
}
END_TEST

/* OpenSSL's RFC 3394 / RFC 5649 wrap with AES-256. */
static size_t
ossl_wrap(const char *name, int enc, const CK_BYTE *kek, const CK_BYTE *in, size_t inlen,
	  CK_BYTE *out)
{
	EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, name, NULL);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int l1 = 0, l2 = 0;

	ck_assert_ptr_nonnull(c);
	EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	ck_assert_int_eq(EVP_CipherInit_ex2(ctx, c, kek, NULL, enc, NULL), 1);
	ck_assert_int_eq(EVP_CipherUpdate(ctx, out, &l1, in, (int)inlen), 1);
	ck_assert_int_eq(EVP_CipherFinal_ex(ctx, out + l1, &l2), 1);
	EVP_CIPHER_CTX_free(ctx);
	EVP_CIPHER_free(c);
	return (size_t)(l1 + l2);
}

/* Unwrap an AES key; check it encrypts as OpenSSL does with the known value. */
static CK_OBJECT_HANDLE
unwrap_aes_and_use(CK_SESSION_HANDLE h, CK_MECHANISM *m, CK_OBJECT_HANDLE kek,
		   const CK_BYTE *wrapped, CK_ULONG wlen, const CK_BYTE *val, CK_ULONG vlen)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_ENCRYPT, &yes, sizeof(yes)},
	};
	CK_OBJECT_HANDLE k;
	CK_BYTE block[32], ct[32], expect[32];
	CK_ULONG len = sizeof(ct);
	char name[24];

	memset(block, 0x5a, sizeof(block));
	ck_assert_int_eq(F->C_UnwrapKey(h, m, kek, (CK_BYTE *)wrapped, wlen, t, N(t), &k), CKR_OK);
	ck_assert_int_eq(F->C_EncryptInit(h, &(CK_MECHANISM){CKM_AES_ECB, NULL, 0}, k), CKR_OK);
	ck_assert_int_eq(F->C_Encrypt(h, block, 32, ct, &len), CKR_OK);
	snprintf(name, sizeof(name), "AES-%lu-ECB", vlen * 8);
	ossl_aes(name, 1, val, NULL, 0, NULL, 0, 0, block, 32, expect);
	ck_assert_mem_eq(ct, expect, 32);
	return k;
}

/* Boolean and length attributes a key got from how it was made. */
static void
check_origin_attrs(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_BBOOL local, CK_BBOOL asens,
		   CK_BBOOL nextr, CK_ULONG vlen)
{
	CK_BBOOL l = 9, as = 9, ne = 9;
	CK_ULONG vl = 0;
	CK_ATTRIBUTE t[] = {
	    {CKA_LOCAL, &l, sizeof(l)},
	    {CKA_ALWAYS_SENSITIVE, &as, sizeof(as)},
	    {CKA_NEVER_EXTRACTABLE, &ne, sizeof(ne)},
	    {CKA_VALUE_LEN, &vl, sizeof(vl)},
	};

	ck_assert_int_eq(F->C_GetAttributeValue(h, o, t, vlen != 0 ? 4 : 3), CKR_OK);
	ck_assert_int_eq(l, local);
	ck_assert_int_eq(as, asens);
	ck_assert_int_eq(ne, nextr);
	if (vlen != 0)
		ck_assert_uint_eq(vl, vlen);
}

START_TEST(test_wrap_aes)
{
	CK_SESSION_HANDLE h = setup("wrap");
	CK_OBJECT_HANDLE kek, k24, k32, gen20, fixed, pub, priv;
	CK_BYTE v24[24], v20[20], wrapped[600], expect[600];
	CK_MECHANISM kw = {CKM_AES_KEY_WRAP, NULL, 0};
	CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_KWP, NULL, 0};
	CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0};
	CK_MECHANISM moaep = {CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep)};
	CK_ULONG len, i;
	size_t elen;

	for (i = 0; i < sizeof(v24); i++)
		v24[i] = (CK_BYTE)(0x11 * i + 1);
	for (i = 0; i < sizeof(v20); i++)
		v20[i] = (CK_BYTE)(0x33 + i);
	kek = secret_key(h, CKK_AES, key256, 32, CK_FALSE);
	k24 = aes_key(h, v24, 24);
	k32 = aes_key(h, key256, 32);
	gen20 = secret_key(h, CKK_GENERIC_SECRET, v20, 20, CK_TRUE);
	fixed = secret_key(h, CKK_AES, v24, 16, CK_FALSE);

	/* RFC 3394: equal to OpenSSL's AES-256-WRAP; length query and too small first. */
	elen = ossl_wrap("AES-256-WRAP", 1, key256, v24, 24, expect);
	ck_assert_uint_eq(elen, 32);
	len = 0;
	ck_assert_int_eq(F->C_WrapKey(h, &kw, kek, k24, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, elen);
	len = elen - 1;
	ck_assert_int_eq(F->C_WrapKey(h, &kw, kek, k24, wrapped, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, elen);
	len = sizeof(wrapped);
	ck_assert_int_eq(F->C_WrapKey(h, &kw, kek, k24, wrapped, &len), CKR_OK);
	ck_assert_uint_eq(len, elen);
	ck_assert_mem_eq(wrapped, expect, elen);
	{
		CK_OBJECT_HANDLE u = unwrap_aes_and_use(h, &kw, kek, wrapped, len, v24, 24);

		/* Unwrapped: not local, never "always sensitive" nor "never extractable". */
		check_origin_attrs(h, u, CK_FALSE, CK_FALSE, CK_FALSE, 24);
	}
	/* A changed wrapping does not unwrap; a length not of semiblocks is out of range. */
	{
		CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
		CK_KEY_TYPE kt = CKK_AES;
		CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
				    {CKA_KEY_TYPE, &kt, sizeof(kt)}};
		CK_OBJECT_HANDLE k;

		wrapped[3] ^= 1;
		ck_assert_int_eq(F->C_UnwrapKey(h, &kw, kek, wrapped, len, t, 2, &k),
				 CKR_WRAPPED_KEY_INVALID);
		ck_assert_int_eq(F->C_UnwrapKey(h, &kw, kek, wrapped, len - 1, t, 2, &k),
				 CKR_WRAPPED_KEY_LEN_RANGE);
		ck_assert_int_eq(F->C_UnwrapKey(h, &kwp, kek, wrapped, len, t, 2, &k),
				 CKR_WRAPPED_KEY_INVALID);
	}

	/* RFC 5649 (KWP) of a 32-byte key and of a 20-byte generic secret. */
	elen = ossl_wrap("AES-256-WRAP-PAD", 1, key256, key256, 32, expect);
	len = 0;
	ck_assert_int_eq(F->C_WrapKey(h, &kwp, kek, k32, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, elen);
	len = sizeof(wrapped);
	ck_assert_int_eq(F->C_WrapKey(h, &kwp, kek, k32, wrapped, &len), CKR_OK);
	ck_assert_uint_eq(len, elen);
	ck_assert_mem_eq(wrapped, expect, elen);
	unwrap_aes_and_use(h, &kwp, kek, wrapped, len, key256, 32);
	elen = ossl_wrap("AES-256-WRAP-PAD", 1, key256, v20, 20, expect);
	ck_assert_uint_eq(elen, 32);
	len = sizeof(wrapped);
	ck_assert_int_eq(F->C_WrapKey(h, &kwp, kek, gen20, wrapped, &len), CKR_OK);
	ck_assert_uint_eq(len, elen);
	ck_assert_mem_eq(wrapped, expect, elen);
	/* OpenSSL's wrapping unwraps in the module. */
	elen = ossl_wrap("AES-256-WRAP-PAD", 1, key256, v24, 24, expect);
	unwrap_aes_and_use(h, &kwp, kek, expect, elen, v24, 24);
	elen = ossl_wrap("AES-256-WRAP", 1, key256, key256, 32, expect);
	unwrap_aes_and_use(h, &kw, kek, expect, elen, key256, 32);

	/* A key that is not extractable does not leave. */
	len = sizeof(wrapped);
	ck_assert_int_eq(F->C_WrapKey(h, &kw, kek, fixed, wrapped, &len), CKR_KEY_UNEXTRACTABLE);

	/* RSA OAEP wraps an AES key; the module unwraps it, and so would OpenSSL's wrapping. */
	gen_rsa(h, &pub, &priv);
	len = 0;
	ck_assert_int_eq(F->C_WrapKey(h, &moaep, pub, k24, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, 256);
	len = 10;
	ck_assert_int_eq(F->C_WrapKey(h, &moaep, pub, k24, wrapped, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, 256);
	ck_assert_int_eq(F->C_WrapKey(h, &moaep, pub, k24, wrapped, &len), CKR_OK);
	ck_assert_uint_eq(len, 256);
	unwrap_aes_and_use(h, &moaep, priv, wrapped, len, v24, 24);
	{
		EVP_PKEY *k = env_spki(h, pub);
		EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k, NULL);
		size_t olen = sizeof(wrapped);

		ck_assert_int_eq(EVP_PKEY_encrypt_init(ctx), 1);
		ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING), 0);
		ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()), 0);
		ck_assert_int_eq(EVP_PKEY_encrypt(ctx, wrapped, &olen, key256, 32), 1);
		EVP_PKEY_CTX_free(ctx);
		EVP_PKEY_free(k);
		unwrap_aes_and_use(h, &moaep, priv, wrapped, olen, key256, 32);
	}
}
END_TEST

/* An extractable EC private key wrapped with KWP, unwrapped, and signing. */
START_TEST(test_wrap_ec_private)
{
	CK_SESSION_HANDLE h = setup("wrapec");
	CK_OBJECT_HANDLE kek, pub, priv, upriv;
	CK_MECHANISM gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_ATTRIBUTE pubt[] = {{CKA_EC_PARAMS, (void *)env_p256, sizeof(env_p256)}};
	CK_ATTRIBUTE privt[] = {
	    {CKA_SIGN, &yes, sizeof(yes)},
	    {CKA_EXTRACTABLE, &yes, sizeof(yes)},
	};
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_KEY_TYPE kt = CKK_EC;
	CK_ATTRIBUTE ut[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_SIGN, &yes, sizeof(yes)},
	};
	CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_KWP, NULL, 0};
	CK_MECHANISM sha = {CKM_ECDSA_SHA256, NULL, 0};
	CK_BYTE wrapped[512], plain[512], sig[64];
	CK_ULONG len = 0, slen = sizeof(sig);
	size_t plen;
	EVP_PKEY *k, *inner;
	const unsigned char *pp;

	kek = secret_key(h, CKK_AES, key256, 32, CK_FALSE);
	ck_assert_int_eq(F->C_GenerateKeyPair(h, &gen, pubt, 1, privt, 2, &pub, &priv), CKR_OK);
	ck_assert_int_eq(F->C_WrapKey(h, &kwp, kek, priv, NULL, &len), CKR_OK);
	ck_assert_uint_gt(len, 0);
	ck_assert_uint_le(len, sizeof(wrapped));
	ck_assert_int_eq(F->C_WrapKey(h, &kwp, kek, priv, wrapped, &len), CKR_OK);

	/* OpenSSL unwraps it to a PKCS#8 key whose public half is the module's. */
	plen = ossl_wrap("AES-256-WRAP-PAD", 0, key256, wrapped, len, plain);
	pp = plain;
	inner = d2i_AutoPrivateKey(NULL, &pp, (long)plen);
	ck_assert_ptr_nonnull(inner);
	k = env_spki(h, pub);
	ck_assert_int_eq(EVP_PKEY_eq(inner, k), 1);
	EVP_PKEY_free(inner);

	ck_assert_int_eq(F->C_UnwrapKey(h, &kwp, kek, wrapped, len, ut, N(ut), &upriv), CKR_OK);
	ck_assert_int_eq(F->C_SignInit(h, &sha, upriv), CKR_OK);
	ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)msg, sizeof(msg), sig, &slen), CKR_OK);
	ck_assert_uint_eq(slen, 64);
	ck_assert_int_eq(ossl_verify(k, EVP_sha256(), 1, 0, 0, 0, msg, sizeof(msg), sig, slen), 1);
	EVP_PKEY_free(k);

	/* Unwrapped as the wrong key type: the bytes are no such key. */
	kt = CKK_RSA;
	ck_assert_int_eq(F->C_UnwrapKey(h, &kwp, kek, wrapped, len, ut, N(ut), &upriv),
			 CKR_WRAPPED_KEY_INVALID);
}
END_TEST

/* C_WrapKey with the other wrapping mechanisms, each compared with OpenSSL. */
START_TEST(test_wrap_other_mechanisms)
{
	CK_SESSION_HANDLE h = setup("wrap2");
	CK_OBJECT_HANDLE kek, k24, pub, priv;
	CK_BYTE v24[24], padded[32], w[512], expect[512];
	CK_BYTE iv[16] = {7, 6, 5, 4, 3, 2, 1};
	CK_GCM_PARAMS gcm = {iv, 12, 96, NULL, 0, 128};
	CK_MECHANISM kwpad = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
	CK_MECHANISM cbcpad = {CKM_AES_CBC_PAD, iv, 16};
	CK_MECHANISM mgcm = {CKM_AES_GCM, &gcm, sizeof(gcm)};
	CK_MECHANISM rsa = {CKM_RSA_PKCS, NULL, 0};
	CK_ULONG len, i;
	size_t elen;

	for (i = 0; i < sizeof(v24); i++)
		v24[i] = (CK_BYTE)(0xc0 ^ i);
	kek = secret_key(h, CKK_AES, key256, 32, CK_FALSE);
	k24 = aes_key(h, v24, 24);

	/* CKM_AES_KEY_WRAP_PAD (PKCS#11 3.0): PKCS#7 padding to the semiblock, then RFC 3394. */
	memcpy(padded, v24, 24);
	memset(padded + 24, 8, 8);
	elen = ossl_wrap("AES-256-WRAP", 1, key256, padded, 32, expect);
	len = 0;
	ck_assert_int_eq(F->C_WrapKey(h, &kwpad, kek, k24, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, elen);
	len = sizeof(w);
	ck_assert_int_eq(F->C_WrapKey(h, &kwpad, kek, k24, w, &len), CKR_OK);
	ck_assert_uint_eq(len, elen);
	ck_assert_mem_eq(w, expect, elen);
	unwrap_aes_and_use(h, &kwpad, kek, w, len, v24, 24);

	/* CBC_PAD and GCM wrap the key bytes as they encrypt data. */
	elen = ossl_aes("AES-256-CBC", 1, key256, iv, 16, NULL, 0, 1, v24, 24, expect);
	len = sizeof(w);
	ck_assert_int_eq(F->C_WrapKey(h, &cbcpad, kek, k24, w, &len), CKR_OK);
	ck_assert_uint_eq(len, elen);
	ck_assert_mem_eq(w, expect, elen);
	unwrap_aes_and_use(h, &cbcpad, kek, w, len, v24, 24);
	elen = ossl_aes("AES-256-GCM", 1, key256, iv, 12, NULL, 0, 0, v24, 24, expect);
	len = sizeof(w);
	ck_assert_int_eq(F->C_WrapKey(h, &mgcm, kek, k24, w, &len), CKR_OK);
	ck_assert_uint_eq(len, elen);
	ck_assert_mem_eq(w, expect, elen);
	unwrap_aes_and_use(h, &mgcm, kek, w, len, v24, 24);

	/* RSA PKCS#1 v1.5 wrapping, from OpenSSL's encryption too. */
	gen_rsa(h, &pub, &priv);
	len = sizeof(w);
	ck_assert_int_eq(F->C_WrapKey(h, &rsa, pub, k24, w, &len), CKR_OK);
	ck_assert_uint_eq(len, 256);
	unwrap_aes_and_use(h, &rsa, priv, w, len, v24, 24);
	{
		EVP_PKEY *k = env_spki(h, pub);
		EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k, NULL);
		size_t olen = sizeof(w);

		ck_assert_int_eq(EVP_PKEY_encrypt_init(ctx), 1);
		ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 0);
		ck_assert_int_eq(EVP_PKEY_encrypt(ctx, w, &olen, key256, 16), 1);
		EVP_PKEY_CTX_free(ctx);
		EVP_PKEY_free(k);
		unwrap_aes_and_use(h, &rsa, priv, w, olen, key256, 16);
	}
}
END_TEST

/*
 * Private keys made by OpenSSL, wrapped by OpenSSL (RFC 5649 over PKCS#8),
 * unwrapped in the module: each signs, and OpenSSL verifies with its key.
 */
START_TEST(test_unwrap_openssl_private_keys)
{
	CK_SESSION_HANDLE h = setup("unwrapossl");
	CK_OBJECT_HANDLE kek;
	CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_KWP, NULL, 0};
	struct {
		const char *alg;
		const char *arg;
		CK_KEY_TYPE kt;
		CK_MECHANISM_TYPE m;
		const EVP_MD *(*md)(void);
		int ec;
		int pad;
	} keys[] = {
	    {"EC", "P-256", CKK_EC, CKM_ECDSA_SHA256, EVP_sha256, 1, 0},
	    {"EC", "P-384", CKK_EC, CKM_ECDSA_SHA384, EVP_sha384, 1, 0},
	    {"ED25519", NULL, CKK_EC_EDWARDS, CKM_EDDSA, NULL, 0, 0},
	    {"RSA", NULL, CKK_RSA, CKM_SHA256_RSA_PKCS, EVP_sha256, 0, RSA_PKCS1_PADDING},
	};
	size_t i;

	kek = secret_key(h, CKK_AES, key256, 32, CK_FALSE);
	for (i = 0; i < N(keys); i++) {
		EVP_PKEY *k;
		PKCS8_PRIV_KEY_INFO *p8;
		unsigned char *der = NULL;
		int derlen;
		CK_BYTE w[4096], sig[512];
		size_t wlen;
		CK_ULONG slen = sizeof(sig);
		CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
		CK_ATTRIBUTE t[] = {
		    {CKA_CLASS, &cls, sizeof(cls)},
		    {CKA_KEY_TYPE, &keys[i].kt, sizeof(keys[i].kt)},
		    {CKA_SIGN, &yes, sizeof(yes)},
		};
		CK_OBJECT_HANDLE o;

		if (keys[i].arg != NULL)
			k = EVP_PKEY_Q_keygen(NULL, NULL, keys[i].alg, keys[i].arg);
		else if (strcmp(keys[i].alg, "RSA") == 0)
			k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
		else
			k = EVP_PKEY_Q_keygen(NULL, NULL, keys[i].alg);
		ck_assert_ptr_nonnull(k);
		p8 = EVP_PKEY2PKCS8(k);
		ck_assert_ptr_nonnull(p8);
		derlen = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
		ck_assert_int_gt(derlen, 0);
		PKCS8_PRIV_KEY_INFO_free(p8);
		wlen = ossl_wrap("AES-256-WRAP-PAD", 1, key256, der, (size_t)derlen, w);
		OPENSSL_clear_free(der, (size_t)derlen);

		ck_assert_int_eq(F->C_UnwrapKey(h, &kwp, kek, w, wlen, t, N(t), &o), CKR_OK);
		ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){keys[i].m, NULL, 0}, o), CKR_OK);
		ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)msg, sizeof(msg), sig, &slen), CKR_OK);
		ck_assert_int_eq(ossl_verify(k, keys[i].md != NULL ? keys[i].md() : NULL,
					     keys[i].ec, 0, keys[i].pad, 0, msg, sizeof(msg), sig,
					     slen),
				 1);
		EVP_PKEY_free(k);
	}
}
END_TEST

/* Results computed for a buffer below a decryption's bound are kept and handed out. */
START_TEST(test_decrypt_bounds)
{
	CK_SESSION_HANDLE h = setup("bounds");
	CK_OBJECT_HANDLE pub, priv, k = aes_key(h, key256, 32);
	CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0};
	CK_MECHANISM moaep = {CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep)};
	CK_BYTE iv[16] = {3};
	CK_MECHANISM pad = {CKM_AES_CBC_PAD, iv, 16};
	CK_BYTE pt[47], ct[256], out[256];
	CK_ULONG ctlen, len;

	memset(pt, 'b', sizeof(pt));
	gen_rsa(h, &pub, &priv);
	ck_assert_int_eq(F->C_EncryptInit(h, &moaep, pub), CKR_OK);
	ctlen = sizeof(ct);
	ck_assert_int_eq(F->C_Encrypt(h, pt, sizeof(pt), ct, &ctlen), CKR_OK);

	ck_assert_int_eq(F->C_DecryptInit(h, &moaep, priv), CKR_OK);
	len = 0;
	ck_assert_int_eq(F->C_Decrypt(h, ct, ctlen, NULL, &len), CKR_OK);
	ck_assert_uint_ge(len, sizeof(pt));
	len = 10;
	ck_assert_int_eq(F->C_Decrypt(h, ct, ctlen, out, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, sizeof(pt));
	/* A length query now gives the exact length. */
	len = 0;
	ck_assert_int_eq(F->C_Decrypt(h, ct, ctlen, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, sizeof(pt));
	len = sizeof(pt);
	ck_assert_int_eq(F->C_Decrypt(h, ct, ctlen, out, &len), CKR_OK);
	ck_assert_uint_eq(len, sizeof(pt));
	ck_assert_mem_eq(out, pt, sizeof(pt));
	ck_assert_int_eq(F->C_Decrypt(h, ct, ctlen, out, &len), CKR_OPERATION_NOT_INITIALIZED);

	/* CBC_PAD in parts: the final call's bound is a block, the rest is 15 bytes. */
	ck_assert_int_eq(F->C_EncryptInit(h, &pad, k), CKR_OK);
	ctlen = sizeof(ct);
	ck_assert_int_eq(F->C_Encrypt(h, pt, sizeof(pt), ct, &ctlen), CKR_OK);
	ck_assert_uint_eq(ctlen, 48);
	ck_assert_int_eq(F->C_DecryptInit(h, &pad, k), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(F->C_DecryptUpdate(h, ct, 48, out, &len), CKR_OK);
	ck_assert_uint_eq(len, 32);
	len = 0;
	ck_assert_int_eq(F->C_DecryptFinal(h, NULL, &len), CKR_OK);
	ck_assert_uint_ge(len, 15);
	len = 14;
	ck_assert_int_eq(F->C_DecryptFinal(h, out + 32, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, 15);
	ck_assert_int_eq(F->C_DecryptFinal(h, out + 32, &len), CKR_OK);
	ck_assert_uint_eq(len, 15);
	ck_assert_mem_eq(out, pt, sizeof(pt));
	ck_assert_int_eq(F->C_DecryptFinal(h, out, &len), CKR_OPERATION_NOT_INITIALIZED);
}
END_TEST

/* PKCS#11 2.40's CK_GCM_PARAMS, without ulIvBits, as older clients send it. */
struct gcm_params_240 {
	CK_BYTE_PTR pIv;
	CK_ULONG ulIvLen;
	CK_BYTE_PTR pAAD;
	CK_ULONG ulAADLen;
	CK_ULONG ulTagBits;
};

/* GCM with a 16-byte IV and a 96-bit tag, against OpenSSL. */
START_TEST(test_gcm_variants)
{
	CK_SESSION_HANDLE h = setup("gcm");
	CK_OBJECT_HANDLE k = aes_key(h, key256, 16);
	CK_BYTE iv[16] = {0xca, 0xfe, 0xba, 0xbe, 0xfa, 0xce, 0xdb, 0xad,
			  0xde, 0xca, 0xf8, 0x88, 1,	2,    3,    4};
	CK_BYTE aad[20] = {0xfe, 0xed, 0xfa, 0xce};
	CK_GCM_PARAMS p = {iv, 16, 128, aad, sizeof(aad), 96};
	CK_MECHANISM m = {CKM_AES_GCM, &p, sizeof(p)};
	CK_BYTE pt[61], ct[100], out[100];
	CK_ULONG len, n;
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	unsigned char expect[100];
	int l1, l2;

	memset(pt, 0x42, sizeof(pt));
	ck_assert_int_eq(EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), NULL, NULL, NULL), 1);
	ck_assert_int_eq(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 16, NULL), 1);
	ck_assert_int_eq(EVP_EncryptInit_ex(ctx, NULL, NULL, key256, iv), 1);
	ck_assert_int_eq(EVP_EncryptUpdate(ctx, NULL, &l1, aad, sizeof(aad)), 1);
	ck_assert_int_eq(EVP_EncryptUpdate(ctx, expect, &l1, pt, sizeof(pt)), 1);
	ck_assert_int_eq(EVP_EncryptFinal_ex(ctx, expect + l1, &l2), 1);
	ck_assert_int_eq(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 12, expect + l1 + l2), 1);
	EVP_CIPHER_CTX_free(ctx);

	ck_assert_int_eq(F->C_EncryptInit(h, &m, k), CKR_OK);
	len = sizeof(ct);
	ck_assert_int_eq(F->C_Encrypt(h, pt, sizeof(pt), ct, &len), CKR_OK);
	ck_assert_uint_eq(len, sizeof(pt) + 12);
	ck_assert_mem_eq(ct, expect, len);
	n = crypt_parts(h, 1, &m, k, pt, sizeof(pt), out, sizeof(out));
	ck_assert_uint_eq(n, sizeof(pt) + 12);
	ck_assert_mem_eq(out, expect, n);
	n = crypt_parts(h, 0, &m, k, expect, sizeof(pt) + 12, out, sizeof(out));
	ck_assert_uint_eq(n, sizeof(pt));
	ck_assert_mem_eq(out, pt, n);
	/* The same parameters in the 2.40 layout. */
	{
		struct gcm_params_240 old = {iv, 16, aad, sizeof(aad), 96};
		CK_MECHANISM mo = {CKM_AES_GCM, &old, sizeof(old)};

		ck_assert_int_eq(F->C_EncryptInit(h, &mo, k), CKR_OK);
		len = sizeof(ct);
		ck_assert_int_eq(F->C_Encrypt(h, pt, sizeof(pt), ct, &len), CKR_OK);
		ck_assert_uint_eq(len, sizeof(pt) + 12);
		ck_assert_mem_eq(ct, expect, len);
	}
}
END_TEST

/* Smaller cases: empty input, HMAC key types, labels, limits, two operations at once. */
START_TEST(test_edges)
{
	CK_SESSION_HANDLE h = setup("edges");
	CK_OBJECT_HANDLE k256h, aes, pub, priv, epub, epriv;
	CK_BYTE out[512], expect[64], ct[256];
	CK_ULONG len;
	unsigned int elen;

	/* Digest, HMAC and signature of nothing. */
	ck_assert_int_eq(F->C_DigestInit(h, &(CK_MECHANISM){CKM_SHA256, NULL, 0}), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(F->C_Digest(h, NULL, 0, out, &len), CKR_OK);
	ck_assert_int_eq(EVP_Digest("", 0, expect, &elen, EVP_sha256(), NULL), 1);
	ck_assert_uint_eq(len, 32);
	ck_assert_mem_eq(out, expect, 32);
	k256h = secret_key(h, CKK_SHA256_HMAC, key256, 32, CK_FALSE);
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){CKM_SHA256_HMAC, NULL, 0}, k256h),
			 CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(F->C_SignFinal(h, out, &len), CKR_OK);
	ck_assert_ptr_nonnull(
	    HMAC(EVP_sha256(), key256, 32, (const unsigned char *)"", 0, expect, &elen));
	ck_assert_uint_eq(len, 32);
	ck_assert_mem_eq(out, expect, 32);
	/* A CKK_SHA256_HMAC key serves SHA-256 HMAC only. */
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){CKM_SHA384_HMAC, NULL, 0}, k256h),
			 CKR_KEY_TYPE_INCONSISTENT);
	gen_ec(h, CKM_EC_EDWARDS_KEY_PAIR_GEN, env_ed25519, sizeof(env_ed25519), &epub, &epriv);
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){CKM_EDDSA, NULL, 0}, epriv), CKR_OK);
	len = sizeof(out);
	ck_assert_int_eq(F->C_Sign(h, NULL, 0, out, &len), CKR_OK);
	ck_assert_uint_eq(len, 64);
	{
		EVP_PKEY *k = env_spki(h, epub);

		ck_assert_int_eq(ossl_verify(k, NULL, 0, 0, 0, 0, (const CK_BYTE *)"", 0, out, 64),
				 1);
		EVP_PKEY_free(k);
	}

	/* An OAEP label must match; PKCS#1 v1.5 has a size limit. */
	gen_rsa(h, &pub, &priv);
	{
		CK_RSA_PKCS_OAEP_PARAMS p = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED,
					     (CK_BYTE *)"one", 3};
		CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &p, sizeof(p)};
		CK_BYTE big[246];

		ck_assert_int_eq(F->C_EncryptInit(h, &m, pub), CKR_OK);
		len = sizeof(ct);
		ck_assert_int_eq(F->C_Encrypt(h, (CK_BYTE *)"data", 4, ct, &len), CKR_OK);
		p.pSourceData = (CK_BYTE *)"two";
		ck_assert_int_eq(F->C_DecryptInit(h, &m, priv), CKR_OK);
		len = sizeof(out);
		ck_assert_int_eq(F->C_Decrypt(h, ct, 256, out, &len), CKR_ENCRYPTED_DATA_INVALID);
		/* OAEP-SHA256 carries at most 256 - 2 * 32 - 2 = 190 bytes. */
		memset(big, 1, sizeof(big));
		ck_assert_int_eq(F->C_EncryptInit(h, &m, pub), CKR_OK);
		len = sizeof(ct);
		ck_assert_int_eq(F->C_Encrypt(h, big, 191, ct, &len), CKR_DATA_LEN_RANGE);
		ck_assert_int_eq(F->C_EncryptInit(h, &m, pub), CKR_OK);
		len = sizeof(ct);
		ck_assert_int_eq(F->C_Encrypt(h, big, 190, ct, &len), CKR_OK);
		/* CKM_RSA_PKCS signs at most k - 11 bytes. */
		ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){CKM_RSA_PKCS, NULL, 0}, priv),
				 CKR_OK);
		len = sizeof(out);
		ck_assert_int_eq(F->C_Sign(h, big, 246, out, &len), CKR_DATA_LEN_RANGE);
		ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){CKM_RSA_PKCS, NULL, 0}, priv),
				 CKR_OK);
		len = sizeof(out);
		ck_assert_int_eq(F->C_Sign(h, big, 245, out, &len), CKR_OK);
	}
	/* SHA-1 with RSA, too. */
	{
		CK_MECHANISM m = {CKM_SHA1_RSA_PKCS, NULL, 0};

		sign_check(h, priv, pub, &m, msg, sizeof(msg), 256, 1, EVP_sha1(), 0, 0,
			   RSA_PKCS1_PADDING, 0);
	}

	/* Encryption and decryption at the same time in one session. */
	aes = aes_key(h, key256, 32);
	{
		CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
		CK_BYTE a[32], b[32], c[32];
		CK_ULONG la, lc;

		memset(a, 0x61, sizeof(a));
		ck_assert_int_eq(F->C_EncryptInit(h, &ecb, aes), CKR_OK);
		ck_assert_int_eq(F->C_DecryptInit(h, &ecb, aes), CKR_OK);
		la = sizeof(b);
		ck_assert_int_eq(F->C_EncryptUpdate(h, a, 16, b, &la), CKR_OK);
		lc = sizeof(c);
		ck_assert_int_eq(F->C_DecryptUpdate(h, b, 16, c, &lc), CKR_OK);
		la = sizeof(b) - 16;
		ck_assert_int_eq(F->C_EncryptUpdate(h, a + 16, 16, b + 16, &la), CKR_OK);
		lc = sizeof(c) - 16;
		ck_assert_int_eq(F->C_DecryptUpdate(h, b + 16, 16, c + 16, &lc), CKR_OK);
		la = 0;
		ck_assert_int_eq(F->C_EncryptFinal(h, b, &la), CKR_OK);
		ck_assert_uint_eq(la, 0);
		lc = 0;
		ck_assert_int_eq(F->C_DecryptFinal(h, c, &lc), CKR_OK);
		ck_assert_uint_eq(lc, 0);
		ck_assert_mem_eq(c, a, 32);
	}

	/* ECDSA verification of signatures that are no points: all zeros, all ones. */
	gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), &pub, &priv);
	memset(out, 0, 64);
	ck_assert_int_eq(F->C_VerifyInit(h, &(CK_MECHANISM){CKM_ECDSA_SHA256, NULL, 0}, pub),
			 CKR_OK);
	ck_assert_int_eq(F->C_Verify(h, (CK_BYTE *)msg, sizeof(msg), out, 64),
			 CKR_SIGNATURE_INVALID);
	memset(out, 0xff, 64);
	ck_assert_int_eq(F->C_VerifyInit(h, &(CK_MECHANISM){CKM_ECDSA, NULL, 0}, pub), CKR_OK);
	ck_assert_int_eq(F->C_Verify(h, (CK_BYTE *)msg, 32, out, 64), CKR_SIGNATURE_INVALID);

	/* AES-128 key wrap (RFC 3394) against OpenSSL. */
	{
		CK_OBJECT_HANDLE kek = secret_key(h, CKK_AES, key256 + 8, 16, CK_FALSE);
		CK_BYTE w[64];
		size_t wl;
		CK_ULONG l = sizeof(out);
		EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
		int l1 = 0, l2 = 0;

		EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
		ck_assert_int_eq(
		    EVP_EncryptInit_ex(ctx, EVP_aes_128_wrap(), NULL, key256 + 8, NULL), 1);
		ck_assert_int_eq(EVP_EncryptUpdate(ctx, w, &l1, key256, 32), 1);
		ck_assert_int_eq(EVP_EncryptFinal_ex(ctx, w + l1, &l2), 1);
		EVP_CIPHER_CTX_free(ctx);
		wl = (size_t)(l1 + l2);
		ck_assert_int_eq(
		    F->C_WrapKey(h, &(CK_MECHANISM){CKM_AES_KEY_WRAP, NULL, 0}, kek, aes, out, &l),
		    CKR_OK);
		ck_assert_uint_eq(l, wl);
		ck_assert_mem_eq(out, w, wl);
	}
}
END_TEST

/* Extractable RSA and Ed25519 private keys made in the module: wrapped, unwrapped, signing. */
START_TEST(test_wrap_rsa_ed_private)
{
	CK_SESSION_HANDLE h = setup("wraprsa");
	CK_OBJECT_HANDLE kek, pub, priv, u;
	CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_KWP, NULL, 0};
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_KEY_TYPE kt;
	CK_ATTRIBUTE ut[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_SIGN, &yes, sizeof(yes)},
	};
	CK_BYTE w[4096], sig[256];
	CK_ULONG wl, sl;
	EVP_PKEY *k;

	kek = secret_key(h, CKK_AES, key256, 32, CK_FALSE);
	{
		CK_MECHANISM gen = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
		CK_ULONG bits = 2048;
		CK_ATTRIBUTE pt[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)}};
		CK_ATTRIBUTE st[] = {{CKA_EXTRACTABLE, &yes, sizeof(yes)}};

		ck_assert_int_eq(F->C_GenerateKeyPair(h, &gen, pt, 1, st, 1, &pub, &priv), CKR_OK);
	}
	wl = sizeof(w);
	ck_assert_int_eq(F->C_WrapKey(h, &kwp, kek, priv, w, &wl), CKR_OK);
	kt = CKK_RSA;
	ck_assert_int_eq(F->C_UnwrapKey(h, &kwp, kek, w, wl, ut, N(ut), &u), CKR_OK);
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){CKM_SHA256_RSA_PKCS, NULL, 0}, u),
			 CKR_OK);
	sl = sizeof(sig);
	ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)msg, sizeof(msg), sig, &sl), CKR_OK);
	k = env_spki(h, pub);
	ck_assert_int_eq(
	    ossl_verify(k, EVP_sha256(), 0, 0, RSA_PKCS1_PADDING, 0, msg, sizeof(msg), sig, sl), 1);
	EVP_PKEY_free(k);

	{
		CK_MECHANISM gen = {CKM_EC_EDWARDS_KEY_PAIR_GEN, NULL, 0};
		CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, (void *)env_ed25519, sizeof(env_ed25519)}};
		CK_ATTRIBUTE st[] = {{CKA_EXTRACTABLE, &yes, sizeof(yes)}};

		ck_assert_int_eq(F->C_GenerateKeyPair(h, &gen, pt, 1, st, 1, &pub, &priv), CKR_OK);
	}
	wl = sizeof(w);
	ck_assert_int_eq(F->C_WrapKey(h, &kwp, kek, priv, w, &wl), CKR_OK);
	kt = CKK_EC_EDWARDS;
	ck_assert_int_eq(F->C_UnwrapKey(h, &kwp, kek, w, wl, ut, N(ut), &u), CKR_OK);
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){CKM_EDDSA, NULL, 0}, u), CKR_OK);
	sl = sizeof(sig);
	ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)msg, sizeof(msg), sig, &sl), CKR_OK);
	k = env_spki(h, pub);
	ck_assert_int_eq(ossl_verify(k, NULL, 0, 0, 0, 0, msg, sizeof(msg), sig, sl), 1);
	EVP_PKEY_free(k);
	/* Ed25519 bytes unwrapped as an EC key: not such a key. */
	kt = CKK_EC;
	ck_assert_int_eq(F->C_UnwrapKey(h, &kwp, kek, w, wl, ut, N(ut), &u),
			 CKR_WRAPPED_KEY_INVALID);
}
END_TEST

/* A big-endian BIGNUM parameter of an OpenSSL key; minimal length (0 pads to that many bytes). */
static CK_ULONG
bn_param(EVP_PKEY *k, const char *name, CK_BYTE *out, int pad)
{
	BIGNUM *bn = NULL;
	int n;

	ck_assert_int_eq(EVP_PKEY_get_bn_param(k, name, &bn), 1);
	n = pad > 0 ? BN_bn2binpad(bn, out, pad) : BN_bn2bin(bn, out);
	BN_clear_free(bn);
	ck_assert_int_gt(n, 0);
	return (CK_ULONG)n;
}

static CK_OBJECT_HANDLE
create(CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, CK_ATTRIBUTE *extra, CK_ULONG n)
{
	CK_ATTRIBUTE t[16] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &kt, sizeof(kt)},
	};
	CK_OBJECT_HANDLE o;

	ck_assert_uint_le(n, 14);
	memcpy(t + 2, extra, n * sizeof(*extra));
	ck_assert_int_eq(F->C_CreateObject(h, t, n + 2, &o), CKR_OK);
	return o;
}

/*
 * Keys made by OpenSSL, imported with C_CreateObject: the module verifies
 * OpenSSL's signatures (many, so that short r or s occur) and signs with
 * the private halves for OpenSSL to verify.
 */
START_TEST(test_imported_keys)
{
	CK_SESSION_HANDLE h = setup("import");
	const struct {
		const char *curve;
		const CK_BYTE *oid;
		CK_ULONG oidlen;
		int size;
		CK_MECHANISM_TYPE m;
		const EVP_MD *(*md)(void);
	} ecs[] = {
	    {"P-256", env_p256, sizeof(env_p256), 32, CKM_ECDSA_SHA256, EVP_sha256},
	    {"P-384", env_p384, sizeof(env_p384), 48, CKM_ECDSA_SHA384, EVP_sha384},
	};
	size_t i;
	int j;

	for (i = 0; i < N(ecs); i++) {
		EVP_PKEY *k = EVP_EC_gen(ecs[i].curve), *kk;
		unsigned char *pt = NULL;
		size_t ptlen = EVP_PKEY_get1_encoded_public_key(k, &pt);
		CK_BYTE d[64], der[128], sig[200], raw[96];
		CK_ULONG dlen = bn_param(k, "priv", d, 0), siglen;
		CK_ATTRIBUTE pubt[] = {
		    {CKA_EC_PARAMS, (void *)ecs[i].oid, ecs[i].oidlen},
		    {CKA_EC_POINT, der, ptlen + 2},
		};
		CK_ATTRIBUTE rawt[] = {
		    {CKA_EC_PARAMS, (void *)ecs[i].oid, ecs[i].oidlen},
		    {CKA_EC_POINT, pt, ptlen},
		};
		CK_ATTRIBUTE privt[] = {
		    {CKA_EC_PARAMS, (void *)ecs[i].oid, ecs[i].oidlen},
		    {CKA_VALUE, d, dlen},
		    {CKA_SIGN, &yes, sizeof(yes)},
		};
		CK_OBJECT_HANDLE pub, pubraw, priv;
		CK_MECHANISM m = {ecs[i].m, NULL, 0};

		der[0] = 0x04;
		der[1] = (CK_BYTE)ptlen;
		memcpy(der + 2, pt, ptlen);
		pub = create(h, CKO_PUBLIC_KEY, CKK_EC, pubt, N(pubt));
		pubraw = create(h, CKO_PUBLIC_KEY, CKK_EC, rawt, N(rawt));
		priv = create(h, CKO_PRIVATE_KEY, CKK_EC, privt, N(privt));

		for (j = 0; j < 200; j++) {
			EVP_MD_CTX *ctx = EVP_MD_CTX_new();
			size_t sl = sizeof(sig);
			const unsigned char *p = sig;
			ECDSA_SIG *es;
			const BIGNUM *r, *ss;
			CK_BYTE data[8];

			memcpy(data, &j, sizeof(j));
			memset(data + sizeof(j), 0, sizeof(data) - sizeof(j));
			ck_assert_int_eq(EVP_DigestSignInit(ctx, NULL, ecs[i].md(), NULL, k), 1);
			ck_assert_int_eq(EVP_DigestSign(ctx, sig, &sl, data, sizeof(data)), 1);
			EVP_MD_CTX_free(ctx);
			es = d2i_ECDSA_SIG(NULL, &p, (long)sl);
			ck_assert_ptr_nonnull(es);
			ECDSA_SIG_get0(es, &r, &ss);
			BN_bn2binpad(r, raw, ecs[i].size);
			BN_bn2binpad(ss, raw + ecs[i].size, ecs[i].size);
			ECDSA_SIG_free(es);
			ck_assert_int_eq(F->C_VerifyInit(h, &m, j % 2 ? pub : pubraw), CKR_OK);
			ck_assert_int_eq(F->C_Verify(h, data, sizeof(data), raw, 2 * ecs[i].size),
					 CKR_OK);
		}
		siglen = sizeof(sig);
		ck_assert_int_eq(F->C_SignInit(h, &m, priv), CKR_OK);
		ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)msg, sizeof(msg), sig, &siglen), CKR_OK);
		ck_assert_int_eq(
		    ossl_verify(k, ecs[i].md(), 1, 0, 0, 0, msg, sizeof(msg), sig, siglen), 1);

		/* A small scalar, given short and given padded: the same key. */
		memset(d, 0, sizeof(d));
		d[ecs[i].size - 2] = 0x01;
		d[ecs[i].size - 1] = 0x02;
		privt[1].pValue = d + ecs[i].size - 2;
		privt[1].ulValueLen = 2;
		priv = create(h, CKO_PRIVATE_KEY, CKK_EC, privt, N(privt));
		kk = env_spki(h, priv);
		siglen = sizeof(sig);
		ck_assert_int_eq(F->C_SignInit(h, &m, priv), CKR_OK);
		ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)msg, sizeof(msg), sig, &siglen), CKR_OK);
		ck_assert_int_eq(
		    ossl_verify(kk, ecs[i].md(), 1, 0, 0, 0, msg, sizeof(msg), sig, siglen), 1);
		privt[1].pValue = d;
		privt[1].ulValueLen = (CK_ULONG)ecs[i].size;
		priv = create(h, CKO_PRIVATE_KEY, CKK_EC, privt, N(privt));
		siglen = sizeof(sig);
		ck_assert_int_eq(F->C_SignInit(h, &m, priv), CKR_OK);
		ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)msg, sizeof(msg), sig, &siglen), CKR_OK);
		ck_assert_int_eq(
		    ossl_verify(kk, ecs[i].md(), 1, 0, 0, 0, msg, sizeof(msg), sig, siglen), 1);
		EVP_PKEY_free(kk);
		OPENSSL_free(pt);
		EVP_PKEY_free(k);
	}

	/* Ed25519: public point raw, private seed. */
	{
		EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		CK_BYTE pk[32], sk[32], sig[64];
		size_t pl = sizeof(pk), sl = sizeof(sk);
		CK_ULONG siglen = sizeof(sig);
		CK_ATTRIBUTE pubt[] = {
		    {CKA_EC_PARAMS, (void *)env_ed25519, sizeof(env_ed25519)},
		    {CKA_EC_POINT, pk, 32},
		};
		CK_ATTRIBUTE privt[] = {
		    {CKA_EC_PARAMS, (void *)env_ed25519, sizeof(env_ed25519)},
		    {CKA_VALUE, sk, 32},
		    {CKA_SIGN, &yes, sizeof(yes)},
		};
		CK_OBJECT_HANDLE pub, priv;
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		size_t osl = sizeof(sig);

		ck_assert_int_eq(EVP_PKEY_get_raw_public_key(k, pk, &pl), 1);
		ck_assert_int_eq(EVP_PKEY_get_raw_private_key(k, sk, &sl), 1);
		pub = create(h, CKO_PUBLIC_KEY, CKK_EC_EDWARDS, pubt, N(pubt));
		priv = create(h, CKO_PRIVATE_KEY, CKK_EC_EDWARDS, privt, N(privt));
		ck_assert_int_eq(EVP_DigestSignInit(ctx, NULL, NULL, NULL, k), 1);
		ck_assert_int_eq(EVP_DigestSign(ctx, sig, &osl, msg, sizeof(msg)), 1);
		EVP_MD_CTX_free(ctx);
		ck_assert_int_eq(F->C_VerifyInit(h, &(CK_MECHANISM){CKM_EDDSA, NULL, 0}, pub),
				 CKR_OK);
		ck_assert_int_eq(F->C_Verify(h, (CK_BYTE *)msg, sizeof(msg), sig, 64), CKR_OK);
		ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){CKM_EDDSA, NULL, 0}, priv),
				 CKR_OK);
		ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)msg, sizeof(msg), sig, &siglen), CKR_OK);
		ck_assert_int_eq(ossl_verify(k, NULL, 0, 0, 0, 0, msg, sizeof(msg), sig, siglen),
				 1);
		EVP_PKEY_free(k);
	}

	/* RSA with and without the CRT values; OpenSSL encrypts to the imported key. */
	{
		EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
		CK_BYTE nb[256], eb[8], db[256], p1[128], p2[128], e1[128], e2[128], co[128];
		CK_BYTE sig[256], ct[256], out[256];
		CK_ATTRIBUTE pubt[] = {
		    {CKA_MODULUS, nb, bn_param(k, "n", nb, 0)},
		    {CKA_PUBLIC_EXPONENT, eb, bn_param(k, "e", eb, 0)},
		    {CKA_VERIFY, &yes, sizeof(yes)},
		};
		CK_ATTRIBUTE privt[] = {
		    {CKA_MODULUS, nb, sizeof(nb)},
		    {CKA_PUBLIC_EXPONENT, eb, pubt[1].ulValueLen},
		    {CKA_PRIVATE_EXPONENT, db, bn_param(k, "d", db, 0)},
		    {CKA_SIGN, &yes, sizeof(yes)},
		    {CKA_DECRYPT, &yes, sizeof(yes)},
		    {CKA_PRIME_1, p1, bn_param(k, "rsa-factor1", p1, 0)},
		    {CKA_PRIME_2, p2, bn_param(k, "rsa-factor2", p2, 0)},
		    {CKA_EXPONENT_1, e1, bn_param(k, "rsa-exponent1", e1, 0)},
		    {CKA_EXPONENT_2, e2, bn_param(k, "rsa-exponent2", e2, 0)},
		    {CKA_COEFFICIENT, co, bn_param(k, "rsa-coefficient1", co, 0)},
		};
		CK_OBJECT_HANDLE pub, priv[2];
		CK_ULONG siglen, len, n;
		CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
		CK_MECHANISM dm = {CKM_RSA_PKCS, NULL, 0};
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		EVP_PKEY_CTX *pctx;
		size_t osl = sizeof(sig), ctl = sizeof(ct);

		pub = create(h, CKO_PUBLIC_KEY, CKK_RSA, pubt, N(pubt));
		priv[0] = create(h, CKO_PRIVATE_KEY, CKK_RSA, privt, N(privt));
		priv[1] = create(h, CKO_PRIVATE_KEY, CKK_RSA, privt, 5); /* n, e, d only */
		ck_assert_int_eq(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k), 1);
		ck_assert_int_eq(EVP_DigestSign(ctx, sig, &osl, msg, sizeof(msg)), 1);
		EVP_MD_CTX_free(ctx);
		ck_assert_int_eq(F->C_VerifyInit(h, &m, pub), CKR_OK);
		ck_assert_int_eq(F->C_Verify(h, (CK_BYTE *)msg, sizeof(msg), sig, 256), CKR_OK);
		pctx = EVP_PKEY_CTX_new(k, NULL);
		ck_assert_int_eq(EVP_PKEY_encrypt_init(pctx), 1);
		ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING), 0);
		ck_assert_int_eq(
		    EVP_PKEY_encrypt(pctx, ct, &ctl, (const unsigned char *)"hello", 5), 1);
		EVP_PKEY_CTX_free(pctx);
		for (n = 0; n < 2; n++) {
			siglen = sizeof(sig);
			ck_assert_int_eq(F->C_SignInit(h, &m, priv[n]), CKR_OK);
			ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)msg, sizeof(msg), sig, &siglen),
					 CKR_OK);
			ck_assert_int_eq(ossl_verify(k, EVP_sha256(), 0, 0, RSA_PKCS1_PADDING, 0,
						     msg, sizeof(msg), sig, siglen),
					 1);
			ck_assert_int_eq(F->C_DecryptInit(h, &dm, priv[n]), CKR_OK);
			len = sizeof(out);
			ck_assert_int_eq(F->C_Decrypt(h, ct, ctl, out, &len), CKR_OK);
			ck_assert_uint_eq(len, 5);
			ck_assert_mem_eq(out, "hello", 5);
		}
		EVP_PKEY_free(k);
	}
}
END_TEST

/* PKCS#11 3.0 section 5.2 and the operation life cycle, across operation kinds. */
START_TEST(test_conventions)
{
	CK_SESSION_HANDLE h = setup("conv");
	CK_OBJECT_HANDLE k = aes_key(h, key256, 32), pub, priv;
	CK_BYTE iv[16] = {1};
	CK_MECHANISM pad = {CKM_AES_CBC_PAD, iv, 16};
	CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
	CK_MECHANISM ecdsa = {CKM_ECDSA_SHA256, NULL, 0};
	CK_BYTE pt[40], ct[64], out[64], sig[64];
	CK_ULONG len, ctlen;

	memset(pt, 'c', sizeof(pt));
	/* Encrypt: NULL output gives the length and keeps the operation. */
	ck_assert_int_eq(F->C_EncryptInit(h, &pad, k), CKR_OK);
	ck_assert_int_eq(F->C_EncryptInit(h, &pad, k), CKR_OPERATION_ACTIVE);
	len = 0;
	ck_assert_int_eq(F->C_Encrypt(h, pt, sizeof(pt), NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, 48);
	len = 47;
	ck_assert_int_eq(F->C_Encrypt(h, pt, sizeof(pt), ct, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, 48);
	len = 48;
	ck_assert_int_eq(F->C_Encrypt(h, pt, sizeof(pt), ct, &len), CKR_OK);
	ck_assert_uint_eq(len, 48);
	ctlen = len;
	ck_assert_int_eq(F->C_Encrypt(h, pt, sizeof(pt), ct, &len), CKR_OPERATION_NOT_INITIALIZED);

	/*
	 * Decrypt: the length may be a bound (48 here); a buffer below the
	 * bound but large enough for the plaintext works, a buffer below the
	 * plaintext gets CKR_BUFFER_TOO_SMALL with the exact length.
	 */
	ck_assert_int_eq(F->C_DecryptInit(h, &pad, k), CKR_OK);
	len = 0;
	ck_assert_int_eq(F->C_Decrypt(h, ct, ctlen, NULL, &len), CKR_OK);
	ck_assert_uint_ge(len, sizeof(pt));
	len = 20;
	ck_assert_int_eq(F->C_Decrypt(h, ct, ctlen, out, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, sizeof(pt));
	len = sizeof(pt);
	ck_assert_int_eq(F->C_Decrypt(h, ct, ctlen, out, &len), CKR_OK);
	ck_assert_uint_eq(len, sizeof(pt));
	ck_assert_mem_eq(out, pt, sizeof(pt));
	ck_assert_int_eq(F->C_Decrypt(h, ct, ctlen, out, &len), CKR_OPERATION_NOT_INITIALIZED);

	/* Multi-part: update and final follow the same rules. */
	ck_assert_int_eq(F->C_EncryptInit(h, &pad, k), CKR_OK);
	len = 0;
	ck_assert_int_eq(F->C_EncryptUpdate(h, pt, 20, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, 16);
	len = 15;
	ck_assert_int_eq(F->C_EncryptUpdate(h, pt, 20, ct, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, 16);
	len = 16;
	ck_assert_int_eq(F->C_EncryptUpdate(h, pt, 20, ct, &len), CKR_OK);
	ck_assert_uint_eq(len, 16);
	len = sizeof(ct) - 16;
	ck_assert_int_eq(F->C_EncryptUpdate(h, pt + 20, 20, ct + 16, &len), CKR_OK);
	ck_assert_uint_eq(len, 16);
	len = 0;
	ck_assert_int_eq(F->C_EncryptFinal(h, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, 16);
	len = 3;
	ck_assert_int_eq(F->C_EncryptFinal(h, ct + 32, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, 16);
	ck_assert_int_eq(F->C_EncryptFinal(h, ct + 32, &len), CKR_OK);
	ck_assert_uint_eq(len, 16);
	ck_assert_int_eq(F->C_EncryptFinal(h, ct + 32, &len), CKR_OPERATION_NOT_INITIALIZED);

	/* An update error ends the operation. */
	ck_assert_int_eq(F->C_DecryptInit(h, &ecb, k), CKR_OK);
	ck_assert_int_eq(F->C_DecryptUpdate(h, NULL, 16, out, &len), CKR_ARGUMENTS_BAD);
	len = sizeof(out);
	ck_assert_int_eq(F->C_DecryptUpdate(h, ct, 16, out, &len), CKR_OPERATION_NOT_INITIALIZED);
	ck_assert_int_eq(F->C_DecryptFinal(h, out, &len), CKR_OPERATION_NOT_INITIALIZED);

	/* Sign: length query, too small, then the signature; then over. */
	gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), &pub, &priv);
	ck_assert_int_eq(F->C_SignInit(h, &ecdsa, priv), CKR_OK);
	ck_assert_int_eq(F->C_SignInit(h, &ecdsa, priv), CKR_OPERATION_ACTIVE);
	ck_assert_int_eq(F->C_SignUpdate(h, pt, 10), CKR_OK);
	len = 0;
	ck_assert_int_eq(F->C_SignFinal(h, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, 64);
	len = 63;
	ck_assert_int_eq(F->C_SignFinal(h, sig, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, 64);
	ck_assert_int_eq(F->C_SignFinal(h, sig, &len), CKR_OK);
	ck_assert_int_eq(F->C_VerifyInit(h, &ecdsa, pub), CKR_OK);
	ck_assert_int_eq(F->C_Verify(h, pt, 10, sig, 64), CKR_OK);
	ck_assert_int_eq(F->C_SignInit(h, &ecdsa, priv), CKR_OK);
	ck_assert_int_eq(F->C_Sign(h, pt, 10, sig, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_SignUpdate(h, pt, 10), CKR_OPERATION_NOT_INITIALIZED);
	/* Verify and sign operations are independent. */
	ck_assert_int_eq(F->C_SignFinal(h, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
	ck_assert_int_eq(F->C_VerifyFinal(h, sig, 64), CKR_OPERATION_NOT_INITIALIZED);
}
END_TEST

/*
 * A single-part call after an update is refused (C_Encrypt "must be called
 * after C_EncryptInit without intervening C_EncryptUpdate calls"), and, as
 * the base specification says of C_Encrypt, C_Sign and C_Digest, a call
 * that returns anything but CKR_BUFFER_TOO_SMALL or a length query's
 * CKR_OK terminates the active operation.
 */
START_TEST(test_single_part_after_update)
{
	CK_SESSION_HANDLE h = setup("after");
	CK_OBJECT_HANDLE k = aes_key(h, key256, 32), pub, priv;
	CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
	CK_MECHANISM ecdsa = {CKM_ECDSA_SHA256, NULL, 0};
	CK_MECHANISM sha = {CKM_SHA256, NULL, 0};
	CK_BYTE pt[16] = {0}, ct[64], sig[64];
	CK_ULONG len;

	gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), &pub, &priv);
	ck_assert_int_eq(F->C_EncryptInit(h, &ecb, k), CKR_OK);
	len = sizeof(ct);
	ck_assert_int_eq(F->C_EncryptUpdate(h, pt, 16, ct, &len), CKR_OK);
	len = sizeof(ct);
	ck_assert_int_eq(F->C_Encrypt(h, pt, 16, ct, &len), CKR_OPERATION_ACTIVE);
	ck_assert_int_eq(F->C_SignInit(h, &ecdsa, priv), CKR_OK);
	ck_assert_int_eq(F->C_SignUpdate(h, pt, 10), CKR_OK);
	len = sizeof(sig);
	ck_assert_int_eq(F->C_Sign(h, pt, 10, sig, &len), CKR_OPERATION_ACTIVE);
	ck_assert_int_eq(F->C_DigestInit(h, &sha), CKR_OK);
	ck_assert_int_eq(F->C_DigestUpdate(h, pt, 10), CKR_OK);
	len = sizeof(sig);
	ck_assert_int_eq(F->C_Digest(h, pt, 10, sig, &len), CKR_OPERATION_ACTIVE);

	/* The refused single-part call ended each operation. */
	len = sizeof(ct);
	ck_assert_int_eq(F->C_EncryptUpdate(h, pt, 16, ct, &len), CKR_OPERATION_NOT_INITIALIZED);
	ck_assert_int_eq(F->C_SignUpdate(h, pt, 10), CKR_OPERATION_NOT_INITIALIZED);
	ck_assert_int_eq(F->C_DigestUpdate(h, pt, 10), CKR_OPERATION_NOT_INITIALIZED);
}
END_TEST

/* Bad mechanism parameters and keys of the wrong type. */
START_TEST(test_params_and_key_types)
{
	CK_SESSION_HANDLE h = setup("params");
	CK_OBJECT_HANDLE aes = aes_key(h, key256, 32), hmac, ecpub, ecpriv, edpub, edpriv, rpub,
			 rpriv;
	CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA384, CKG_MGF1_SHA384, 32};
	CK_RSA_PKCS_PSS_PARAMS pssbig = {CKM_SHA256, CKG_MGF1_SHA256, 250};
	CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA256, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, NULL, 0};
	CK_RSA_PKCS_OAEP_PARAMS oaep2 = {CKM_SHA256, 0x777, CKZ_DATA_SPECIFIED, NULL, 0};
	CK_RSA_PKCS_OAEP_PARAMS oaep3 = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 5};
	CK_BYTE iv[16] = {0};

	hmac = secret_key(h, CKK_GENERIC_SECRET, key256, 32, CK_FALSE);
	gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), &ecpub, &ecpriv);
	gen_ec(h, CKM_EC_EDWARDS_KEY_PAIR_GEN, env_ed25519, sizeof(env_ed25519), &edpub, &edpriv);
	gen_rsa(h, &rpub, &rpriv);

	/* PSS: the hash must match the mechanism's, the salt must fit. */
	ck_assert_int_eq(
	    F->C_SignInit(h, &(CK_MECHANISM){CKM_SHA256_RSA_PKCS_PSS, &pss, sizeof(pss)}, rpriv),
	    CKR_MECHANISM_PARAM_INVALID);
	ck_assert_int_eq(
	    F->C_VerifyInit(h, &(CK_MECHANISM){CKM_SHA256_RSA_PKCS_PSS, &pss, sizeof(pss)}, rpub),
	    CKR_MECHANISM_PARAM_INVALID);
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){CKM_SHA256_RSA_PKCS_PSS, NULL, 0}, rpriv),
			 CKR_MECHANISM_PARAM_INVALID);
	ck_assert_int_eq(
	    F->C_SignInit(h, &(CK_MECHANISM){CKM_RSA_PKCS_PSS, &pssbig, sizeof(pssbig)}, rpriv),
	    CKR_MECHANISM_PARAM_INVALID);
	/* A failed init leaves the session free for a good one. */
	pss.hashAlg = CKM_SHA256;
	pss.mgf = CKG_MGF1_SHA256;
	ck_assert_int_eq(
	    F->C_SignInit(h, &(CK_MECHANISM){CKM_SHA256_RSA_PKCS_PSS, &pss, sizeof(pss)}, rpriv),
	    CKR_OK);
	{
		CK_BYTE sig[256];
		CK_ULONG len = sizeof(sig);

		ck_assert_int_eq(F->C_Sign(h, (CK_BYTE *)msg, sizeof(msg), sig, &len), CKR_OK);
	}

	/* OAEP: an MGF that is not offered, an unknown MGF, a NULL label with a length. */
	ck_assert_int_eq(
	    F->C_EncryptInit(h, &(CK_MECHANISM){CKM_RSA_PKCS_OAEP, &oaep2, sizeof(oaep2)}, rpub),
	    CKR_MECHANISM_PARAM_INVALID);
	ck_assert_int_eq(
	    F->C_EncryptInit(h, &(CK_MECHANISM){CKM_RSA_PKCS_OAEP, &oaep3, sizeof(oaep3)}, rpub),
	    CKR_MECHANISM_PARAM_INVALID);
	ck_assert_int_eq(F->C_EncryptInit(h, &(CK_MECHANISM){CKM_RSA_PKCS_OAEP, NULL, 0}, rpub),
			 CKR_MECHANISM_PARAM_INVALID);
	ck_assert_int_eq(F->C_EncryptInit(h, &(CK_MECHANISM){CKM_RSA_PKCS, iv, 16}, rpub),
			 CKR_MECHANISM_PARAM_INVALID);
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){CKM_ECDSA_SHA256, iv, 16}, ecpriv),
			 CKR_MECHANISM_PARAM_INVALID);
	/* A different MGF hash is allowed by PKCS#1; refused here as the mechanism's
	 * documented restriction (SHA-1/2 with the matching MGF1). */
	ck_assert_int_eq(
	    F->C_EncryptInit(h, &(CK_MECHANISM){CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep)}, rpub),
	    CKR_MECHANISM_PARAM_INVALID);

	/* Keys of the wrong type. */
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){CKM_ECDSA_SHA256, NULL, 0}, rpriv),
			 CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){CKM_ECDSA, NULL, 0}, edpriv),
			 CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){CKM_EDDSA, NULL, 0}, ecpriv),
			 CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){CKM_SHA256_RSA_PKCS, NULL, 0}, ecpriv),
			 CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){CKM_SHA256_HMAC, NULL, 0}, aes),
			 CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_int_eq(F->C_EncryptInit(h, &(CK_MECHANISM){CKM_AES_CBC, iv, 16}, hmac),
			 CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_int_eq(F->C_EncryptInit(h, &(CK_MECHANISM){CKM_AES_ECB, NULL, 0}, rpub),
			 CKR_KEY_TYPE_INCONSISTENT);
	ck_assert_int_eq(F->C_EncryptInit(h, &(CK_MECHANISM){CKM_RSA_PKCS, NULL, 0}, aes),
			 CKR_KEY_TYPE_INCONSISTENT);
	/* A key outside the mechanism's size range (RSA-1024 here). */
	{
		EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
		CK_BYTE nb[128], eb[8];
		CK_ATTRIBUTE t[] = {
		    {CKA_MODULUS, nb, bn_param(k, "n", nb, 0)},
		    {CKA_PUBLIC_EXPONENT, eb, bn_param(k, "e", eb, 0)},
		    {CKA_VERIFY, &yes, sizeof(yes)},
		};
		CK_OBJECT_HANDLE small = create(h, CKO_PUBLIC_KEY, CKK_RSA, t, N(t));

		ck_assert_int_eq(
		    F->C_VerifyInit(h, &(CK_MECHANISM){CKM_SHA256_RSA_PKCS, NULL, 0}, small),
		    CKR_KEY_SIZE_RANGE);
		EVP_PKEY_free(k);
	}
	/* Mechanisms used for what they do not offer. */
	ck_assert_int_eq(F->C_EncryptInit(h, &(CK_MECHANISM){CKM_SHA256_RSA_PKCS, NULL, 0}, rpub),
			 CKR_MECHANISM_INVALID);
	ck_assert_int_eq(F->C_DigestInit(h, &(CK_MECHANISM){CKM_SHA256_HMAC, NULL, 0}),
			 CKR_MECHANISM_INVALID);
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){CKM_AES_ECB, NULL, 0}, aes),
			 CKR_MECHANISM_INVALID);
	ck_assert_int_eq(
	    F->C_SignInit(h, &(CK_MECHANISM){CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep)}, rpriv),
	    CKR_MECHANISM_INVALID);
	/* Wrapping with a wrapping key of the wrong type. */
	{
		CK_BYTE w[512];
		CK_ULONG len = sizeof(w);

		ck_assert_int_eq(F->C_WrapKey(h, &(CK_MECHANISM){CKM_AES_KEY_WRAP_KWP, NULL, 0},
					      rpub, aes, w, &len),
				 CKR_WRAPPING_KEY_TYPE_INCONSISTENT);
	}
}
END_TEST

/* What C_GetMechanismInfo reports for every mechanism: the module's table. */
static const struct {
	CK_MECHANISM_TYPE type;
	CK_ULONG min, max;
	CK_FLAGS flags;
} mech_table[] = {
#define ECF (CKF_EC_F_P | CKF_EC_OID | CKF_EC_UNCOMPRESS)
#define SV (CKF_SIGN | CKF_VERIFY)
#define ED (CKF_ENCRYPT | CKF_DECRYPT)
#define WU (CKF_WRAP | CKF_UNWRAP)
    {CKM_EC_KEY_PAIR_GEN, 256, 384, CKF_GENERATE_KEY_PAIR | ECF},
    {CKM_ECDSA, 256, 384, SV | ECF},
    {CKM_ECDSA_SHA256, 256, 384, SV | ECF},
    {CKM_ECDSA_SHA384, 256, 384, SV | ECF},
    {CKM_ECDH1_DERIVE, 256, 384, CKF_DERIVE | ECF},
    {CKM_EC_EDWARDS_KEY_PAIR_GEN, 256, 256, CKF_GENERATE_KEY_PAIR | CKF_EC_OID | CKF_EC_CURVENAME},
    {CKM_EDDSA, 256, 256, SV},
    {CKM_RSA_PKCS_KEY_PAIR_GEN, 2048, 4096, CKF_GENERATE_KEY_PAIR},
    {CKM_RSA_PKCS, 2048, 8192, SV | ED | WU},
    {CKM_RSA_PKCS_PSS, 2048, 8192, SV},
    {CKM_RSA_PKCS_OAEP, 2048, 8192, ED | WU},
    {CKM_SHA1_RSA_PKCS, 2048, 8192, SV},
    {CKM_SHA256_RSA_PKCS, 2048, 8192, SV},
    {CKM_SHA384_RSA_PKCS, 2048, 8192, SV},
    {CKM_SHA512_RSA_PKCS, 2048, 8192, SV},
    {CKM_SHA256_RSA_PKCS_PSS, 2048, 8192, SV},
    {CKM_SHA384_RSA_PKCS_PSS, 2048, 8192, SV},
    {CKM_SHA512_RSA_PKCS_PSS, 2048, 8192, SV},
    {CKM_AES_KEY_GEN, 16, 32, CKF_GENERATE},
    {CKM_AES_ECB, 16, 32, ED},
    {CKM_AES_CBC, 16, 32, ED},
    {CKM_AES_CBC_PAD, 16, 32, ED | WU},
    {CKM_AES_CTR, 16, 32, ED},
    {CKM_AES_GCM, 16, 32, ED | WU},
    {CKM_AES_KEY_WRAP, 16, 32, ED | WU},
    {CKM_AES_KEY_WRAP_PAD, 16, 32, ED | WU},
    {CKM_AES_KEY_WRAP_KWP, 16, 32, ED | WU},
    {CKM_GENERIC_SECRET_KEY_GEN, 1, 512, CKF_GENERATE},
    {CKM_SHA256_HMAC, 1, 4096, SV},
    {CKM_SHA384_HMAC, 1, 4096, SV},
    {CKM_SHA512_HMAC, 1, 4096, SV},
    {CKM_SHA_1, 0, 0, CKF_DIGEST},
    {CKM_SHA256, 0, 0, CKF_DIGEST},
    {CKM_SHA384, 0, 0, CKF_DIGEST},
    {CKM_SHA512, 0, 0, CKF_DIGEST},
#undef ECF
#undef SV
#undef ED
#undef WU
};

START_TEST(test_mechanism_list_and_info)
{
	CK_SLOT_ID slot, slots[8];
	CK_MECHANISM_TYPE list[64];
	CK_MECHANISM_INFO info;
	CK_ULONG n = 0, want, i, j, count = 8;

	env_init();
	slot = env_new_zone("mechs");
	ck_assert_int_eq(F->C_GetMechanismList(slot, NULL, &n), CKR_OK);
	want = n;
	ck_assert_uint_eq(want, N(mech_table));
	n = want - 1;
	ck_assert_int_eq(F->C_GetMechanismList(slot, list, &n), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(n, want);
	n = 0;
	ck_assert_int_eq(F->C_GetMechanismList(slot, list, &n), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(n, want);
	n = N(list);
	ck_assert_int_eq(F->C_GetMechanismList(slot, list, &n), CKR_OK);
	ck_assert_uint_eq(n, want);
	ck_assert_int_eq(F->C_GetMechanismList(slot, list, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GetMechanismList(9999, list, &n), CKR_SLOT_ID_INVALID);

	for (i = 0; i < N(mech_table); i++) {
		for (j = 0; j < n; j++)
			if (list[j] == mech_table[i].type)
				break;
		ck_assert_msg(j < n, "mechanism 0x%lx not listed", mech_table[i].type);
		ck_assert_int_eq(F->C_GetMechanismInfo(slot, mech_table[i].type, &info), CKR_OK);
		ck_assert_msg(info.ulMinKeySize == mech_table[i].min &&
				  info.ulMaxKeySize == mech_table[i].max,
			      "mechanism 0x%lx sizes %lu..%lu", mech_table[i].type,
			      info.ulMinKeySize, info.ulMaxKeySize);
		ck_assert_msg(info.flags == mech_table[i].flags, "mechanism 0x%lx flags 0x%lx",
			      mech_table[i].type, info.flags);
		ck_assert(!(info.flags & CKF_HW));
	}
	ck_assert_int_eq(F->C_GetMechanismInfo(slot, CKM_MD5, &info), CKR_MECHANISM_INVALID);
	ck_assert_int_eq(F->C_GetMechanismInfo(slot, CKM_SHA256, NULL), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_GetMechanismInfo(9999, CKM_SHA256, &info), CKR_SLOT_ID_INVALID);
	/* The free slot (no token yet) lists the same. */
	ck_assert_int_eq(F->C_GetSlotList(CK_FALSE, slots, &count), CKR_OK);
	n = N(list);
	ck_assert_int_eq(F->C_GetMechanismList(slots[count - 1], list, &n), CKR_OK);
	ck_assert_uint_eq(n, want);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("mech");
	TCase *tc = tcase_create(env_root()); /* the root the suite runs on (EV_ROOT) */

	tcase_add_checked_fixture(tc, env_setup, env_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_ecdsa);
	tcase_add_test(tc, test_eddsa);
	tcase_add_test(tc, test_rsa_sign);
	tcase_add_test(tc, test_rsa_encrypt);
	tcase_add_test(tc, test_aes_modes);
	tcase_add_test(tc, test_aes_errors);
	tcase_add_test(tc, test_hmac);
	tcase_add_test(tc, test_digest);
	tcase_add_test(tc, test_ecdh);
	tcase_add_test(tc, test_wrap_aes);
	tcase_add_test(tc, test_wrap_ec_private);
	tcase_add_test(tc, test_wrap_other_mechanisms);
	tcase_add_test(tc, test_unwrap_openssl_private_keys);
	tcase_add_test(tc, test_decrypt_bounds);
	tcase_add_test(tc, test_gcm_variants);
	tcase_add_test(tc, test_edges);
	tcase_add_test(tc, test_wrap_rsa_ed_private);
	tcase_add_test(tc, test_imported_keys);
	tcase_add_test(tc, test_conventions);
	tcase_add_test(tc, test_single_part_after_update);
	tcase_add_test(tc, test_params_and_key_types);
	tcase_add_test(tc, test_mechanism_list_and_info);
	suite_add_tcase(s, tc);
	return env_run(s);
}
