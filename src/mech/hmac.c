/*
 * CKM_SHA256_HMAC, CKM_SHA384_HMAC, CKM_SHA512_HMAC over EVP_MAC. The MAC
 * is keyed once at init, and re-initialised without the key when a session
 * uses the same key again; verification compares in constant time.
 */
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#include "mech_int.h"

static CK_RV
hmac_init(ev_op *op, const CK_MECHANISM *mech)
{
	const ev_secret *key = op->key->secret;
	OSSL_PARAM params[2];
	EVP_MAC *mac;

	if (mech->ulParameterLen != 0)
		return CKR_MECHANISM_PARAM_INVALID;
	if (op->kind != EV_OP_SIGN && op->kind != EV_OP_VERIFY)
		return CKR_MECHANISM_INVALID;
	op->md = ev_md_get(op->mech->hash);
	mac = ev_hmac_get();
	if (op->md == NULL || mac == NULL)
		return CKR_MECHANISM_INVALID;
	op->outsize = (CK_ULONG)EVP_MD_get_size(op->md);
	op->macctx = EVP_MAC_CTX_new(mac);
	if (op->macctx == NULL)
		return CKR_HOST_MEMORY;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						     (char *)EVP_MD_get0_name(op->md), 0);
	params[1] = OSSL_PARAM_construct_end();
	if (!EVP_MAC_init(op->macctx, key->data, key->len, params))
		return CKR_FUNCTION_FAILED;
	return CKR_OK;
}

/* The same key again: the keyed pads are kept, only the state is reset. */
static CK_RV
hmac_reinit(ev_op *op, const CK_MECHANISM *mech)
{
	if (mech->ulParameterLen != 0)
		return CKR_MECHANISM_PARAM_INVALID;
	return EVP_MAC_init(op->macctx, NULL, 0, NULL) ? CKR_OK : CKR_FUNCTION_FAILED;
}

static CK_RV
hmac_update(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	return EVP_MAC_update(op->macctx, in, inlen) ? CKR_OK : CKR_FUNCTION_FAILED;
}

static CK_RV
hmac_final(ev_op *op, CK_BYTE *out, CK_ULONG *outlen)
{
	size_t len = 0;

	if (!EVP_MAC_final(op->macctx, out, &len, *outlen))
		return CKR_FUNCTION_FAILED;
	*outlen = len;
	return CKR_OK;
}

static CK_RV
hmac_oneshot(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	CK_RV rv = hmac_update(op, in, inlen, NULL, NULL);

	if (rv != CKR_OK)
		return rv;
	return hmac_final(op, out, outlen);
}

static CK_RV
hmac_compare(ev_op *op, const CK_BYTE *sig, CK_ULONG siglen)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	CK_ULONG len = sizeof(mac);
	CK_RV rv;

	rv = hmac_final(op, mac, &len);
	if (rv == CKR_OK && (len != siglen || CRYPTO_memcmp(mac, sig, len) != 0))
		rv = CKR_SIGNATURE_INVALID;
	OPENSSL_cleanse(mac, sizeof(mac));
	return rv;
}

static CK_RV
hmac_verify(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, const CK_BYTE *sig, CK_ULONG siglen)
{
	CK_RV rv;

	if (siglen != op->outsize)
		return CKR_SIGNATURE_LEN_RANGE;
	rv = hmac_update(op, in, inlen, NULL, NULL);
	if (rv != CKR_OK)
		return rv;
	return hmac_compare(op, sig, siglen);
}

static CK_RV
hmac_verify_final(ev_op *op, const CK_BYTE *sig, CK_ULONG siglen)
{
	if (siglen != op->outsize)
		return CKR_SIGNATURE_LEN_RANGE;
	return hmac_compare(op, sig, siglen);
}

const ev_mech_ops ev_hmac_ops = {
    .init = hmac_init,
    .reinit = hmac_reinit,
    .oneshot = hmac_oneshot,
    .update = hmac_update,
    .final = hmac_final,
    .verify = hmac_verify,
    .verify_final = hmac_verify_final,
};
