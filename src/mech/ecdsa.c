/*
 * CKM_ECDSA (the caller's hash as input) and CKM_ECDSA_SHA256/384.
 * PKCS#11 signatures are r || s, each left-padded to the size of the
 * curve order; OpenSSL speaks DER ECDSA-Sig-Value. ECDSA_SIG converts.
 */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>

#include "mech_int.h"

/* Field size of the largest curve we would ever see (P-521). */
#define EV_EC_MAX_N 66
/* DER of two INTEGERs of up to n+1 bytes in a SEQUENCE. */
#define EV_ECDSA_DER_MAX (2 * (EV_EC_MAX_N + 1 + 3) + 4)

static CK_RV
ecdsa_init(ev_op *op, const CK_MECHANISM *mech)
{
	EVP_PKEY *pkey = op->key->pkey;
	int bits, ok;

	if (mech->ulParameterLen != 0)
		return CKR_MECHANISM_PARAM_INVALID;
	bits = EVP_PKEY_get_bits(pkey);
	if (bits <= 0 || (bits + 7) / 8 > EV_EC_MAX_N)
		return CKR_KEY_SIZE_RANGE;
	op->outsize = 2 * (CK_ULONG)((bits + 7) / 8);

	if (op->mech->hash == 0) {
		/* The input is a hash already: one EVP_PKEY_sign() at the end. */
		op->buffered = 1;
		op->pctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
		if (op->pctx == NULL)
			return CKR_HOST_MEMORY;
		if (op->kind == EV_OP_SIGN)
			ok = EVP_PKEY_sign_init(op->pctx);
		else
			ok = EVP_PKEY_verify_init(op->pctx);
		return ok > 0 ? CKR_OK : CKR_FUNCTION_FAILED;
	}

	op->md = ev_md_get(op->mech->hash);
	if (op->md == NULL)
		return CKR_MECHANISM_INVALID;
	op->mdctx = EVP_MD_CTX_new();
	if (op->mdctx == NULL)
		return CKR_HOST_MEMORY;
	return ev_op_digest_sign_init(op, op->md, pkey, NULL);
}

/*
 * The same key again. CKM_ECDSA: a context initialised for signing or
 * verifying signs or verifies any number of times; the hashing forms
 * re-initialise the digest context OpenSSL keeps (NULL key).
 */
static CK_RV
ecdsa_reinit(ev_op *op, const CK_MECHANISM *mech)
{
	if (mech->ulParameterLen != 0)
		return CKR_MECHANISM_PARAM_INVALID;
	if (op->mdctx == NULL)
		return op->pctx != NULL ? CKR_OK : CKR_FUNCTION_FAILED;
	return ev_op_digest_sign_init(op, op->md, NULL, NULL);
}

/* DER ECDSA-Sig-Value to r || s of op->outsize bytes. */
static CK_RV
der_to_raw(const ev_op *op, const unsigned char *der, size_t derlen, CK_BYTE *out, CK_ULONG *outlen)
{
	const unsigned char *p = der;
	const BIGNUM *r, *s;
	ECDSA_SIG *sig;
	int n = (int)(op->outsize / 2);
	CK_RV rv = CKR_FUNCTION_FAILED;

	sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
	if (sig == NULL)
		return CKR_FUNCTION_FAILED;
	ECDSA_SIG_get0(sig, &r, &s);
	if (BN_bn2binpad(r, out, n) != n || BN_bn2binpad(s, out + n, n) != n)
		goto out;
	*outlen = op->outsize;
	rv = CKR_OK;
out:
	ECDSA_SIG_free(sig);
	return rv;
}

/*
 * r || s to DER. A signature that does not encode (it cannot, for the
 * sizes checked by the caller, short of memory) is reported invalid.
 */
static CK_RV
raw_to_der(const ev_op *op, const CK_BYTE *raw, unsigned char *der, size_t *derlen)
{
	int n = (int)(op->outsize / 2);
	BIGNUM *r = NULL, *s = NULL;
	ECDSA_SIG *sig = NULL;
	unsigned char *p = der;
	CK_RV rv = CKR_HOST_MEMORY;
	int len;

	sig = ECDSA_SIG_new();
	r = BN_bin2bn(raw, n, NULL);
	s = BN_bin2bn(raw + n, n, NULL);
	if (sig == NULL || r == NULL || s == NULL)
		goto out;
	if (!ECDSA_SIG_set0(sig, r, s))
		goto out;
	r = s = NULL; /* transferred */
	len = i2d_ECDSA_SIG(sig, NULL);
	if (len <= 0 || (size_t)len > EV_ECDSA_DER_MAX) {
		rv = CKR_SIGNATURE_INVALID;
		goto out;
	}
	len = i2d_ECDSA_SIG(sig, &p);
	*derlen = (size_t)len;
	rv = CKR_OK;
out:
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(sig);
	return rv;
}

static CK_RV
ecdsa_oneshot(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	unsigned char der[EV_ECDSA_DER_MAX];
	size_t derlen = sizeof(der);
	int ok;

	if (op->mdctx != NULL)
		ok = EVP_DigestSign(op->mdctx, der, &derlen, in, inlen);
	else
		ok = EVP_PKEY_sign(op->pctx, der, &derlen, in, inlen);
	if (ok <= 0)
		return CKR_FUNCTION_FAILED;
	return der_to_raw(op, der, derlen, out, outlen);
}

static CK_RV
ecdsa_update(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	int ok;

	if (op->kind == EV_OP_SIGN)
		ok = EVP_DigestSignUpdate(op->mdctx, in, inlen);
	else
		ok = EVP_DigestVerifyUpdate(op->mdctx, in, inlen);
	return ok > 0 ? CKR_OK : CKR_FUNCTION_FAILED;
}

static CK_RV
ecdsa_final(ev_op *op, CK_BYTE *out, CK_ULONG *outlen)
{
	unsigned char der[EV_ECDSA_DER_MAX];
	size_t derlen = sizeof(der);

	if (EVP_DigestSignFinal(op->mdctx, der, &derlen) <= 0)
		return CKR_FUNCTION_FAILED;
	return der_to_raw(op, der, derlen, out, outlen);
}

static CK_RV
ecdsa_check(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, int final, const CK_BYTE *sig,
	    CK_ULONG siglen)
{
	unsigned char der[EV_ECDSA_DER_MAX];
	size_t derlen;
	CK_RV rv;
	int ok;

	if (siglen != op->outsize)
		return CKR_SIGNATURE_LEN_RANGE;
	rv = raw_to_der(op, sig, der, &derlen);
	if (rv != CKR_OK)
		return rv;
	if (final)
		ok = EVP_DigestVerifyFinal(op->mdctx, der, derlen);
	else if (op->mdctx != NULL)
		ok = EVP_DigestVerify(op->mdctx, der, derlen, in, inlen);
	else
		ok = EVP_PKEY_verify(op->pctx, der, derlen, in, inlen);
	/* Below 1 is a bad signature or one OpenSSL could not parse. */
	return ok == 1 ? CKR_OK : CKR_SIGNATURE_INVALID;
}

static CK_RV
ecdsa_verify(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, const CK_BYTE *sig, CK_ULONG siglen)
{
	return ecdsa_check(op, in, inlen, 0, sig, siglen);
}

static CK_RV
ecdsa_verify_final(ev_op *op, const CK_BYTE *sig, CK_ULONG siglen)
{
	return ecdsa_check(op, NULL, 0, 1, sig, siglen);
}

const ev_mech_ops ev_ecdsa_ops = {
    .init = ecdsa_init,
    .reinit = ecdsa_reinit,
    .oneshot = ecdsa_oneshot,
    .update = ecdsa_update,
    .final = ecdsa_final,
    .verify = ecdsa_verify,
    .verify_final = ecdsa_verify_final,
};
