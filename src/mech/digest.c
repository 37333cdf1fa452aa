/*
 * CKM_SHA_1, CKM_SHA256, CKM_SHA384, CKM_SHA512 digests (and C_DigestKey,
 * which mech.c feeds through the update).
 */
#include "mech_int.h"

static CK_RV
digest_init(ev_op *op, const CK_MECHANISM *mech)
{
	if (mech->ulParameterLen != 0)
		return CKR_MECHANISM_PARAM_INVALID;
	op->md = ev_md_get(op->mech->hash);
	if (op->md == NULL)
		return CKR_MECHANISM_INVALID;
	op->outsize = (CK_ULONG)EVP_MD_get_size(op->md);
	op->mdctx = EVP_MD_CTX_new();
	if (op->mdctx == NULL)
		return CKR_HOST_MEMORY;
	if (!EVP_DigestInit_ex2(op->mdctx, op->md, NULL))
		return CKR_FUNCTION_FAILED;
	return CKR_OK;
}

static CK_RV
digest_update(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	return EVP_DigestUpdate(op->mdctx, in, inlen) ? CKR_OK : CKR_FUNCTION_FAILED;
}

static CK_RV
digest_final(ev_op *op, CK_BYTE *out, CK_ULONG *outlen)
{
	unsigned int len = 0;

	if (!EVP_DigestFinal_ex(op->mdctx, out, &len))
		return CKR_FUNCTION_FAILED;
	*outlen = len;
	return CKR_OK;
}

static CK_RV
digest_oneshot(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	CK_RV rv = digest_update(op, in, inlen, NULL, NULL);

	if (rv != CKR_OK)
		return rv;
	return digest_final(op, out, outlen);
}

const ev_mech_ops ev_digest_ops = {
    .init = digest_init,
    .oneshot = digest_oneshot,
    .update = digest_update,
    .final = digest_final,
};
