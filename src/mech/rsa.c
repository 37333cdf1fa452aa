/*
 * RSA: CKM_RSA_PKCS (raw DigestInfo signing, PKCS#1 v1.5 encryption),
 * CKM_RSA_PKCS_PSS (a hash as input), CKM_SHA*_RSA_PKCS[_PSS] (hash and
 * sign, streamed), CKM_RSA_PKCS_OAEP. The raw and encryption forms are
 * one-shot in OpenSSL: mech.c buffers them when driven in parts.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rsa.h>

#include "mech_int.h"

/* PKCS#1 v1.5 padding takes at least 11 bytes of the modulus. */
#define EV_PKCS1_OVERHEAD 11

static CK_RV
ossl_rv(int ok)
{
	return ok > 0 ? CKR_OK : CKR_FUNCTION_FAILED;
}

/* CK_RSA_PKCS_PSS_PARAMS: supported hash and MGF, a salt that fits. */
static CK_RV
pss_params(ev_op *op, const CK_MECHANISM *mech, const EVP_MD **md, const EVP_MD **mgf_md, int *slen)
{
	const CK_RSA_PKCS_PSS_PARAMS *p;
	int bits, emlen, hlen;

	if (mech->pParameter == NULL || mech->ulParameterLen != sizeof(*p))
		return CKR_MECHANISM_PARAM_INVALID;
	p = mech->pParameter;
	if (op->mech->hash != 0 && p->hashAlg != op->mech->hash)
		return CKR_MECHANISM_PARAM_INVALID;
	*md = ev_md_get(p->hashAlg);
	*mgf_md = ev_md_for_mgf(p->mgf);
	if (*md == NULL || *mgf_md == NULL)
		return CKR_MECHANISM_PARAM_INVALID;
	/* RFC 8017 9.1.1: emLen >= hLen + sLen + 2, emLen = ceil((modBits - 1) / 8). */
	bits = EVP_PKEY_get_bits(op->key->pkey);
	hlen = EVP_MD_get_size(*md);
	emlen = (bits - 1 + 7) / 8;
	if (p->sLen > (CK_ULONG)emlen || (CK_ULONG)emlen < (CK_ULONG)hlen + p->sLen + 2)
		return CKR_MECHANISM_PARAM_INVALID;
	*slen = (int)p->sLen;
	op->u.rsa.hlen = (CK_ULONG)hlen;
	return CKR_OK;
}

static CK_RV
set_pss(EVP_PKEY_CTX *pctx, const EVP_MD *mgf_md, int slen)
{
	if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, mgf_md) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, slen) <= 0)
		return CKR_FUNCTION_FAILED;
	return CKR_OK;
}

/* CK_RSA_PKCS_OAEP_PARAMS: SHA-1/2 with the matching MGF1, optional label. */
static CK_RV
oaep_setup(ev_op *op, const CK_MECHANISM *mech)
{
	const CK_RSA_PKCS_OAEP_PARAMS *p;
	const EVP_MD *md, *mgf_md;
	unsigned char *label = NULL;
	int hlen;

	if (mech->pParameter == NULL || mech->ulParameterLen != sizeof(*p))
		return CKR_MECHANISM_PARAM_INVALID;
	p = mech->pParameter;
	md = ev_md_get(p->hashAlg);
	mgf_md = ev_md_for_mgf(p->mgf);
	if (md == NULL || mgf_md != md)
		return CKR_MECHANISM_PARAM_INVALID;
	/* Some clients leave source 0 when they pass no label. */
	if (p->source != CKZ_DATA_SPECIFIED && !(p->source == 0 && p->ulSourceDataLen == 0))
		return CKR_MECHANISM_PARAM_INVALID;
	if (p->pSourceData == NULL && p->ulSourceDataLen != 0)
		return CKR_MECHANISM_PARAM_INVALID;
	hlen = EVP_MD_get_size(md);
	if (op->outsize < 2 * (CK_ULONG)hlen + 2)
		return CKR_KEY_SIZE_RANGE;
	op->u.rsa.hlen = (CK_ULONG)hlen;
	if (EVP_PKEY_CTX_set_rsa_padding(op->pctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(op->pctx, md) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(op->pctx, mgf_md) <= 0)
		return CKR_FUNCTION_FAILED;
	if (p->ulSourceDataLen > 0) {
		label = OPENSSL_memdup(p->pSourceData, p->ulSourceDataLen);
		if (label == NULL)
			return CKR_HOST_MEMORY;
		if (EVP_PKEY_CTX_set0_rsa_oaep_label(op->pctx, label, (int)p->ulSourceDataLen) <=
		    0) {
			OPENSSL_free(label);
			return CKR_FUNCTION_FAILED;
		}
		/* label transferred */
	}
	return CKR_OK;
}

/*
 * Hash-and-sign: streamed through an EVP_MD_CTX. fresh: a new context
 * for the key; else the one kept, re-initialised by OpenSSL (NULL key).
 */
static CK_RV
init_hashed(ev_op *op, const CK_MECHANISM *mech, int fresh)
{
	EVP_PKEY *pkey = fresh ? op->key->pkey : NULL;
	const EVP_MD *mgf_md = NULL;
	EVP_PKEY_CTX *pctx = NULL; /* owned by mdctx */
	int slen = 0;
	CK_RV rv;

	if (op->mech->variant == EV_RSA_PSS) {
		rv = pss_params(op, mech, &op->md, &mgf_md, &slen);
		if (rv != CKR_OK)
			return rv;
	} else {
		if (mech->ulParameterLen != 0)
			return CKR_MECHANISM_PARAM_INVALID;
		op->md = ev_md_get(op->mech->hash);
	}
	if (op->md == NULL)
		return CKR_MECHANISM_INVALID;
	if (fresh) {
		op->mdctx = EVP_MD_CTX_new();
		if (op->mdctx == NULL)
			return CKR_HOST_MEMORY;
	}
	rv = ev_op_digest_sign_init(op, op->md, pkey, &pctx);
	if (rv != CKR_OK)
		return rv;
	if (op->mech->variant == EV_RSA_PSS)
		return set_pss(pctx, mgf_md, slen);
	return ossl_rv(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING));
}

/* The padding of the one-shot forms, on an initialised op->pctx. */
static CK_RV
raw_padding(ev_op *op, const CK_MECHANISM *mech)
{
	const EVP_MD *md = NULL, *mgf_md = NULL;
	int slen = 0;
	CK_RV rv;

	switch (op->mech->variant) {
	case EV_RSA_PKCS:
		if (mech->ulParameterLen != 0)
			return CKR_MECHANISM_PARAM_INVALID;
		return ossl_rv(EVP_PKEY_CTX_set_rsa_padding(op->pctx, RSA_PKCS1_PADDING));
	case EV_RSA_PSS:
		rv = pss_params(op, mech, &md, &mgf_md, &slen);
		if (rv != CKR_OK)
			return rv;
		rv = set_pss(op->pctx, mgf_md, slen);
		if (rv != CKR_OK)
			return rv;
		return ossl_rv(EVP_PKEY_CTX_set_signature_md(op->pctx, md));
	case EV_RSA_OAEP:
		return oaep_setup(op, mech);
	}
	return CKR_MECHANISM_INVALID;
}

static CK_RV
rsa_init(ev_op *op, const CK_MECHANISM *mech)
{
	int size, ok = 0;

	size = EVP_PKEY_get_size(op->key->pkey);
	if (size <= 0)
		return CKR_KEY_SIZE_RANGE;
	op->outsize = (CK_ULONG)size;
	if (op->mech->hash != 0)
		return init_hashed(op, mech, 1);

	op->buffered = 1;
	op->pctx = EVP_PKEY_CTX_new_from_pkey(NULL, op->key->pkey, NULL);
	if (op->pctx == NULL)
		return CKR_HOST_MEMORY;
	switch (op->kind) {
	case EV_OP_SIGN:
		ok = EVP_PKEY_sign_init(op->pctx);
		break;
	case EV_OP_VERIFY:
		ok = EVP_PKEY_verify_init(op->pctx);
		break;
	case EV_OP_ENCRYPT:
		ok = EVP_PKEY_encrypt_init(op->pctx);
		break;
	case EV_OP_DECRYPT:
		ok = EVP_PKEY_decrypt_init(op->pctx);
		break;
	case EV_OP_DIGEST:
		return CKR_MECHANISM_INVALID;
	}
	if (ok <= 0)
		return CKR_FUNCTION_FAILED;
	return raw_padding(op, mech);
}

/*
 * The same key again: the key's context stays initialised, only the
 * padding is set anew. OAEP (a label handed to the context) starts afresh.
 */
static CK_RV
rsa_reinit(ev_op *op, const CK_MECHANISM *mech)
{
	if (op->mech->hash != 0)
		return init_hashed(op, mech, 0);
	if (op->mech->variant == EV_RSA_OAEP || op->pctx == NULL)
		return CKR_FUNCTION_NOT_SUPPORTED;
	return raw_padding(op, mech);
}

static int
rsa_reusable(const ev_op *op)
{
	return op->mech->hash != 0 || (op->mech->variant != EV_RSA_OAEP && op->pctx != NULL);
}

/* At most room bytes fit in a modulus of k bytes (written so that no sum can wrap). */
static CK_RV
fits(CK_ULONG inlen, CK_ULONG k, CK_ULONG overhead)
{
	return k >= overhead && inlen <= k - overhead ? CKR_OK : CKR_DATA_LEN_RANGE;
}

/* Input limits of the one-shot forms, checked before OpenSSL sees them. */
static CK_RV
input_ok(const ev_op *op, CK_ULONG inlen)
{
	CK_ULONG k = op->outsize;

	if (op->mech->hash != 0)
		return CKR_OK;
	switch (op->kind) {
	case EV_OP_SIGN:
	case EV_OP_VERIFY:
		if (op->mech->variant == EV_RSA_PSS)
			return inlen == op->u.rsa.hlen ? CKR_OK : CKR_DATA_LEN_RANGE;
		return fits(inlen, k, EV_PKCS1_OVERHEAD);
	case EV_OP_ENCRYPT:
		if (op->mech->variant == EV_RSA_OAEP)
			return fits(inlen, k, 2 * op->u.rsa.hlen + 2);
		return fits(inlen, k, EV_PKCS1_OVERHEAD);
	case EV_OP_DECRYPT:
		return inlen == k ? CKR_OK : CKR_ENCRYPTED_DATA_LEN_RANGE;
	case EV_OP_DIGEST:
		break;
	}
	return CKR_OK;
}

static CK_RV
rsa_out_len(const ev_op *op, ev_stage stage, CK_ULONG inlen, CK_ULONG *len, int *exact)
{
	*len = stage == EV_STAGE_UPDATE ? 0 : op->outsize;
	*exact = op->kind != EV_OP_DECRYPT;
	if (stage != EV_STAGE_ONESHOT)
		return CKR_OK;
	return input_ok(op, inlen);
}

static CK_RV
rsa_oneshot(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	size_t len = *outlen;
	int ok;

	switch (op->kind) {
	case EV_OP_SIGN:
		if (op->mdctx != NULL)
			ok = EVP_DigestSign(op->mdctx, out, &len, in, inlen);
		else
			ok = EVP_PKEY_sign(op->pctx, out, &len, in, inlen);
		break;
	case EV_OP_ENCRYPT:
		ok = EVP_PKEY_encrypt(op->pctx, out, &len, in, inlen);
		break;
	case EV_OP_DECRYPT:
		ok = EVP_PKEY_decrypt(op->pctx, out, &len, in, inlen);
		if (ok <= 0) {
			OPENSSL_cleanse(out, *outlen);
			return CKR_ENCRYPTED_DATA_INVALID;
		}
		break;
	default:
		return CKR_OPERATION_NOT_INITIALIZED;
	}
	if (ok <= 0)
		return CKR_FUNCTION_FAILED;
	*outlen = len;
	return CKR_OK;
}

static CK_RV
rsa_update(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	if (op->kind == EV_OP_SIGN)
		return ossl_rv(EVP_DigestSignUpdate(op->mdctx, in, inlen));
	return ossl_rv(EVP_DigestVerifyUpdate(op->mdctx, in, inlen));
}

static CK_RV
rsa_final(ev_op *op, CK_BYTE *out, CK_ULONG *outlen)
{
	size_t len = *outlen;

	if (EVP_DigestSignFinal(op->mdctx, out, &len) <= 0)
		return CKR_FUNCTION_FAILED;
	*outlen = len;
	return CKR_OK;
}

static CK_RV
rsa_verify(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, const CK_BYTE *sig, CK_ULONG siglen)
{
	CK_RV rv;
	int ok;

	if (siglen != op->outsize)
		return CKR_SIGNATURE_LEN_RANGE;
	rv = input_ok(op, inlen);
	if (rv != CKR_OK)
		return rv;
	if (op->mdctx != NULL)
		ok = EVP_DigestVerify(op->mdctx, sig, siglen, in, inlen);
	else
		ok = EVP_PKEY_verify(op->pctx, sig, siglen, in, inlen);
	return ok == 1 ? CKR_OK : CKR_SIGNATURE_INVALID;
}

static CK_RV
rsa_verify_final(ev_op *op, const CK_BYTE *sig, CK_ULONG siglen)
{
	if (siglen != op->outsize)
		return CKR_SIGNATURE_LEN_RANGE;
	return EVP_DigestVerifyFinal(op->mdctx, sig, siglen) == 1 ? CKR_OK : CKR_SIGNATURE_INVALID;
}

const ev_mech_ops ev_rsa_ops = {
    .init = rsa_init,
    .reinit = rsa_reinit,
    .reusable = rsa_reusable,
    .out_len = rsa_out_len,
    .oneshot = rsa_oneshot,
    .update = rsa_update,
    .final = rsa_final,
    .verify = rsa_verify,
    .verify_final = rsa_verify_final,
};
