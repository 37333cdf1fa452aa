/*
 * CKM_EDDSA: pure Ed25519. OpenSSL signs Ed25519 in one call only, so a
 * multi-part operation is buffered by mech.c (op->buffered) and signed at
 * the end. Ed25519ph and Ed25519ctx (phFlag, context data) are refused:
 * OpenSSL 3.0 does not offer them.
 */
#include "mech_int.h"

#define EV_ED25519_SIG_LEN 64

static CK_RV
eddsa_params_ok(const CK_MECHANISM *mech)
{
	const CK_EDDSA_PARAMS *p;

	if (mech->pParameter == NULL && mech->ulParameterLen == 0)
		return CKR_OK;
	if (mech->pParameter == NULL || mech->ulParameterLen != sizeof(CK_EDDSA_PARAMS))
		return CKR_MECHANISM_PARAM_INVALID;
	p = mech->pParameter;
	if (p->phFlag != CK_FALSE || p->ulContextDataLen != 0)
		return CKR_MECHANISM_PARAM_INVALID;
	return CKR_OK;
}

static CK_RV
eddsa_init(ev_op *op, const CK_MECHANISM *mech)
{
	CK_RV rv;

	rv = eddsa_params_ok(mech);
	if (rv != CKR_OK)
		return rv;
	if (EVP_PKEY_get_id(op->key->pkey) != EVP_PKEY_ED25519)
		return CKR_KEY_TYPE_INCONSISTENT;
	op->outsize = EV_ED25519_SIG_LEN;
	op->buffered = 1;
	op->mdctx = EVP_MD_CTX_new();
	if (op->mdctx == NULL)
		return CKR_HOST_MEMORY;
	return ev_op_digest_sign_init(op, NULL, op->key->pkey, NULL);
}

/* The same key again: OpenSSL re-initialises the context it has (NULL key). */
static CK_RV
eddsa_reinit(ev_op *op, const CK_MECHANISM *mech)
{
	CK_RV rv = eddsa_params_ok(mech);

	return rv != CKR_OK ? rv : ev_op_digest_sign_init(op, NULL, NULL, NULL);
}

static CK_RV
eddsa_oneshot(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	size_t len = *outlen;

	if (EVP_DigestSign(op->mdctx, out, &len, in, inlen) <= 0)
		return CKR_FUNCTION_FAILED;
	*outlen = len;
	return CKR_OK;
}

static CK_RV
eddsa_verify(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, const CK_BYTE *sig, CK_ULONG siglen)
{
	if (siglen != EV_ED25519_SIG_LEN)
		return CKR_SIGNATURE_LEN_RANGE;
	if (EVP_DigestVerify(op->mdctx, sig, siglen, in, inlen) != 1)
		return CKR_SIGNATURE_INVALID;
	return CKR_OK;
}

const ev_mech_ops ev_eddsa_ops = {
    .init = eddsa_init,
    .reinit = eddsa_reinit,
    .oneshot = eddsa_oneshot,
    .verify = eddsa_verify,
};
