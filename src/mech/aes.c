/*
 * AES: ECB, CBC, CBC_PAD, CTR, GCM, and the key wrap modes
 * (CKM_AES_KEY_WRAP: RFC 3394; CKM_AES_KEY_WRAP_KWP: RFC 5649;
 * CKM_AES_KEY_WRAP_PAD: as PKCS#11 3.0 defines it, PKCS#7 padding to the
 * 8-byte semiblock and then RFC 3394 - not RFC 5649, which SoftHSMv2
 * implements under this name; the 3.0 text keeps the two apart).
 *
 * Update output sizes are exact: they follow the buffering OpenSSL does
 * (a partial block, and for CBC_PAD decryption the last full block). GCM
 * decryption releases nothing before the tag is verified: the ciphertext
 * is kept in the operation until the final call.
 */
#include <limits.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#include "mech_int.h"

#define AES_BLOCK 16
#define KW_SEMIBLOCK 8
#define KW_IV_LEN 8
#define KWP_IV_LEN 4

/* PKCS#11 2.40 CK_GCM_PARAMS, before 3.0 added ulIvBits; still sent by some clients. */
typedef struct {
	CK_BYTE_PTR pIv;
	CK_ULONG ulIvLen;
	CK_BYTE_PTR pAAD;
	CK_ULONG ulAADLen;
	CK_ULONG ulTagBits;
} gcm_params_240;

/* Larger inputs would overflow OpenSSL's int lengths. */
#define EV_AES_MAX_IN ((CK_ULONG)INT_MAX - 2 * AES_BLOCK)

static int
is_wrap(int variant)
{
	return variant == EV_AES_KW || variant == EV_AES_KW_PAD || variant == EV_AES_KWP;
}

static CK_RV
ctr_params(ev_op *op, const CK_MECHANISM *mech, const CK_BYTE **iv)
{
	const CK_AES_CTR_PARAMS *p;
	uint64_t ctr = 0;
	CK_ULONG bits, i;

	if (mech->pParameter == NULL || mech->ulParameterLen != sizeof(*p))
		return CKR_MECHANISM_PARAM_INVALID;
	p = mech->pParameter;
	bits = p->ulCounterBits;
	if (bits == 0 || bits > 128)
		return CKR_MECHANISM_PARAM_INVALID;
	*iv = p->cb;
	/*
	 * OpenSSL increments the whole 128-bit block; the caller asked for
	 * only the low ulCounterBits to count. Refuse, rather than carry
	 * into the nonce, any input that would wrap them. Past 2^64 blocks
	 * nothing can be refused: such inputs do not fit in memory.
	 */
	op->u.ctr.blocks_left = UINT64_MAX;
	if (bits == 128)
		return CKR_OK;
	if (bits > 64) {
		/* Wrapping within 2^64 blocks needs the counter bits above
		 * the low 64 all set. */
		for (i = bits - 64; i > 0; i--) {
			CK_ULONG bit = 63 + i, byte = AES_BLOCK - 1 - bit / 8;

			if (!(p->cb[byte] & (1u << (bit % 8))))
				return CKR_OK;
		}
		bits = 64;
	}
	for (i = AES_BLOCK - 8; i < AES_BLOCK; i++)
		ctr = (ctr << 8) | p->cb[i];
	if (bits < 64)
		ctr &= ((uint64_t)1 << bits) - 1;
	if (bits == 64) {
		if (ctr != 0)
			op->u.ctr.blocks_left = UINT64_MAX - ctr + 1; /* 2^64 - ctr */
		return CKR_OK;
	}
	op->u.ctr.blocks_left = ((uint64_t)1 << bits) - ctr;
	return CKR_OK;
}

static CK_RV
gcm_params(ev_op *op, const CK_MECHANISM *mech, const CK_BYTE **iv, size_t *ivlen,
	   const CK_BYTE **aad, size_t *aadlen)
{
	CK_ULONG tagbits;

	if (mech->pParameter == NULL)
		return CKR_MECHANISM_PARAM_INVALID;
	if (mech->ulParameterLen == sizeof(CK_GCM_PARAMS)) {
		const CK_GCM_PARAMS *p = mech->pParameter;

		*iv = p->pIv;
		*ivlen = p->ulIvLen;
		*aad = p->pAAD;
		*aadlen = p->ulAADLen;
		tagbits = p->ulTagBits;
	} else if (mech->ulParameterLen == sizeof(gcm_params_240)) {
		const gcm_params_240 *p = mech->pParameter;

		*iv = p->pIv;
		*ivlen = p->ulIvLen;
		*aad = p->pAAD;
		*aadlen = p->ulAADLen;
		tagbits = p->ulTagBits;
	} else {
		return CKR_MECHANISM_PARAM_INVALID;
	}
	if (*iv == NULL || *ivlen == 0 || *ivlen > INT_MAX)
		return CKR_MECHANISM_PARAM_INVALID;
	if ((*aad == NULL && *aadlen != 0) || *aadlen > INT_MAX)
		return CKR_MECHANISM_PARAM_INVALID;
	if (tagbits < 96 || tagbits > 128 || tagbits % 8 != 0)
		return CKR_MECHANISM_PARAM_INVALID;
	op->u.gcm.taglen = tagbits / 8;
	return CKR_OK;
}

/* The mechanism parameter of a mode: its IV and, for GCM, its AAD. */
static CK_RV
aes_params(ev_op *op, const CK_MECHANISM *mech, const CK_BYTE **iv, size_t *ivlen,
	   const CK_BYTE **aad, size_t *aadlen)
{
	int variant = op->mech->variant;

	switch (variant) {
	case EV_AES_ECB:
		if (mech->ulParameterLen != 0)
			return CKR_MECHANISM_PARAM_INVALID;
		return CKR_OK;
	case EV_AES_CBC:
	case EV_AES_CBC_PAD:
		if (mech->pParameter == NULL || mech->ulParameterLen != AES_BLOCK)
			return CKR_MECHANISM_PARAM_INVALID;
		*iv = mech->pParameter;
		return CKR_OK;
	case EV_AES_CTR:
		return ctr_params(op, mech, iv);
	case EV_AES_GCM:
		return gcm_params(op, mech, iv, ivlen, aad, aadlen);
	case EV_AES_KW:
	case EV_AES_KW_PAD:
	case EV_AES_KWP:
		/* An optional alternative initial value; NULL: the RFC's. */
		*ivlen = variant == EV_AES_KWP ? KWP_IV_LEN : KW_IV_LEN;
		if (mech->pParameter == NULL && mech->ulParameterLen == 0)
			return CKR_OK;
		if (mech->pParameter == NULL || mech->ulParameterLen != *ivlen)
			return CKR_MECHANISM_PARAM_INVALID;
		*iv = mech->pParameter;
		return CKR_OK;
	}
	return CKR_MECHANISM_INVALID;
}

/* GCM: the additional data goes in before any text. */
static CK_RV
gcm_aad(ev_op *op, const CK_BYTE *aad, size_t aadlen)
{
	int outl;

	if (aadlen > 0 && !EVP_CipherUpdate(op->cctx, NULL, &outl, aad, (int)aadlen))
		return CKR_FUNCTION_FAILED;
	return CKR_OK;
}

static CK_RV
aes_init(ev_op *op, const CK_MECHANISM *mech)
{
	const ev_secret *key = op->key->secret;
	int variant = op->mech->variant, enc = op->kind == EV_OP_ENCRYPT;
	const CK_BYTE *iv = NULL, *aad = NULL;
	size_t ivlen = 0, aadlen = 0;
	const EVP_CIPHER *cipher;
	OSSL_PARAM params[2] = {OSSL_PARAM_END, OSSL_PARAM_END};
	CK_RV rv;

	if (op->kind != EV_OP_ENCRYPT && op->kind != EV_OP_DECRYPT)
		return CKR_MECHANISM_INVALID;
	rv = aes_params(op, mech, &iv, &ivlen, &aad, &aadlen);
	if (rv != CKR_OK)
		return rv;
	if (is_wrap(variant))
		op->buffered = 1; /* the wrap ciphers are one-shot */

	cipher = ev_cipher_get(variant, key->len);
	if (cipher == NULL)
		return CKR_KEY_SIZE_RANGE;
	op->cctx = EVP_CIPHER_CTX_new();
	if (op->cctx == NULL)
		return CKR_HOST_MEMORY;
	if (is_wrap(variant))
		EVP_CIPHER_CTX_set_flags(op->cctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	if (variant == EV_AES_GCM) {
		params[0] = OSSL_PARAM_construct_size_t(OSSL_CIPHER_PARAM_AEAD_IVLEN, &ivlen);
		op->u.gcm.ivlen = ivlen;
	}
	if (!EVP_CipherInit_ex2(op->cctx, cipher, NULL, NULL, enc, params))
		return CKR_FUNCTION_FAILED;
	if (!EVP_CipherInit_ex2(op->cctx, NULL, key->data, iv, enc, NULL))
		return CKR_FUNCTION_FAILED;
	if (!EVP_CIPHER_CTX_set_padding(op->cctx, variant == EV_AES_CBC_PAD))
		return CKR_FUNCTION_FAILED;
	return variant == EV_AES_GCM ? gcm_aad(op, aad, aadlen) : CKR_OK;
}

/*
 * The same key again: the context keeps its key schedule and takes only
 * the new IV (ECB: none), which also empties OpenSSL's partial block. The
 * wrap modes, one call each and rare, start afresh.
 */
static CK_RV
aes_reinit(ev_op *op, const CK_MECHANISM *mech)
{
	int variant = op->mech->variant, enc = op->kind == EV_OP_ENCRYPT;
	const CK_BYTE *iv = NULL, *aad = NULL;
	size_t ivlen = 0, aadlen = 0;
	OSSL_PARAM params[2] = {OSSL_PARAM_END, OSSL_PARAM_END};
	CK_RV rv;

	if (is_wrap(variant))
		return CKR_FUNCTION_NOT_SUPPORTED;
	rv = aes_params(op, mech, &iv, &ivlen, &aad, &aadlen);
	if (rv != CKR_OK)
		return rv;
	if (variant == EV_AES_GCM && ivlen != op->u.gcm.ivlen) {
		params[0] = OSSL_PARAM_construct_size_t(OSSL_CIPHER_PARAM_AEAD_IVLEN, &ivlen);
		if (!EVP_CIPHER_CTX_set_params(op->cctx, params))
			return CKR_FUNCTION_FAILED;
		op->u.gcm.ivlen = ivlen;
	}
	if (!EVP_CipherInit_ex2(op->cctx, NULL, NULL, iv, enc, NULL))
		return CKR_FUNCTION_FAILED;
	return variant == EV_AES_GCM ? gcm_aad(op, aad, aadlen) : CKR_OK;
}

static int
aes_reusable(const ev_op *op)
{
	return !is_wrap(op->mech->variant);
}

/* Output of ECB/CBC/CBC_PAD updates after total input bytes: what OpenSSL releases. */
static uint64_t
block_released(const ev_op *op, uint64_t total)
{
	if (op->mech->variant == EV_AES_CBC_PAD && op->kind == EV_OP_DECRYPT)
		return total > 0 ? (total - 1) / AES_BLOCK * AES_BLOCK
				 : 0; /* keeps the last block */
	return total / AES_BLOCK * AES_BLOCK;
}

static CK_RV
ctr_room(const ev_op *op, uint64_t total)
{
	uint64_t blocks = total / AES_BLOCK + (total % AES_BLOCK != 0);

	return blocks <= op->u.ctr.blocks_left ? CKR_OK : CKR_DATA_LEN_RANGE;
}

static CK_RV
len_range(const ev_op *op)
{
	return op->kind == EV_OP_ENCRYPT ? CKR_DATA_LEN_RANGE : CKR_ENCRYPTED_DATA_LEN_RANGE;
}

/* Sizes of the key wrap modes (single-part only). */
static CK_RV
wrap_len(const ev_op *op, CK_ULONG inlen, CK_ULONG *len, int *exact)
{
	int enc = op->kind == EV_OP_ENCRYPT;

	switch (op->mech->variant) {
	case EV_AES_KW:
		/* RFC 3394 wraps at least two semiblocks. */
		if (inlen % KW_SEMIBLOCK != 0 || inlen < (enc ? 16U : 24U))
			return len_range(op);
		*len = enc ? inlen + KW_SEMIBLOCK : inlen - KW_SEMIBLOCK;
		return CKR_OK;
	case EV_AES_KWP:
		if (enc) {
			if (inlen == 0)
				return CKR_DATA_LEN_RANGE;
			*len =
			    (inlen + KW_SEMIBLOCK - 1) / KW_SEMIBLOCK * KW_SEMIBLOCK + KW_SEMIBLOCK;
			return CKR_OK;
		}
		if (inlen % KW_SEMIBLOCK != 0 || inlen < 16)
			return CKR_ENCRYPTED_DATA_LEN_RANGE;
		*len = inlen - KW_SEMIBLOCK;
		*exact = 0;
		return CKR_OK;
	case EV_AES_KW_PAD:
		if (enc) {
			/* Padded to at least two semiblocks, then one more for the IV. */
			if (inlen < KW_SEMIBLOCK)
				return CKR_DATA_LEN_RANGE;
			*len = (inlen / KW_SEMIBLOCK + 1) * KW_SEMIBLOCK + KW_SEMIBLOCK;
			return CKR_OK;
		}
		if (inlen % KW_SEMIBLOCK != 0 || inlen < 24)
			return CKR_ENCRYPTED_DATA_LEN_RANGE;
		*len = inlen - KW_SEMIBLOCK - 1;
		*exact = 0;
		return CKR_OK;
	}
	return CKR_MECHANISM_INVALID;
}

static CK_RV
aes_out_len(const ev_op *op, ev_stage stage, CK_ULONG inlen, CK_ULONG *len, int *exact)
{
	int variant = op->mech->variant, enc = op->kind == EV_OP_ENCRYPT;
	CK_ULONG taglen = op->u.gcm.taglen;
	uint64_t total = op->total;

	*exact = 1;
	*len = 0;
	if (inlen > EV_AES_MAX_IN)
		return len_range(op);
	if (is_wrap(variant))
		return wrap_len(op, inlen, len, exact);

	switch (variant) {
	case EV_AES_ECB:
	case EV_AES_CBC:
		if (stage == EV_STAGE_ONESHOT) {
			if (inlen % AES_BLOCK != 0)
				return len_range(op);
			*len = inlen;
		} else if (stage == EV_STAGE_UPDATE) {
			*len = block_released(op, total + inlen) - block_released(op, total);
		} else if (total % AES_BLOCK != 0) {
			return len_range(op);
		}
		return CKR_OK;
	case EV_AES_CBC_PAD:
		if (enc) {
			if (stage == EV_STAGE_ONESHOT)
				*len = (inlen / AES_BLOCK + 1) * AES_BLOCK;
			else if (stage == EV_STAGE_UPDATE)
				*len =
				    block_released(op, total + inlen) - block_released(op, total);
			else
				*len = AES_BLOCK;
			return CKR_OK;
		}
		if (stage == EV_STAGE_ONESHOT) {
			if (inlen == 0 || inlen % AES_BLOCK != 0)
				return CKR_ENCRYPTED_DATA_LEN_RANGE;
			*len = inlen;
			*exact = 0;
		} else if (stage == EV_STAGE_UPDATE) {
			*len = block_released(op, total + inlen) - block_released(op, total);
		} else {
			if (total == 0 || total % AES_BLOCK != 0)
				return CKR_ENCRYPTED_DATA_LEN_RANGE;
			*len = AES_BLOCK;
			*exact = 0;
		}
		return CKR_OK;
	case EV_AES_CTR:
		if (stage == EV_STAGE_FINAL)
			return CKR_OK;
		*len = inlen;
		return ctr_room(op, stage == EV_STAGE_UPDATE ? total + inlen : inlen);
	case EV_AES_GCM:
		if (enc) {
			if (stage == EV_STAGE_ONESHOT)
				*len = inlen + taglen;
			else if (stage == EV_STAGE_UPDATE)
				*len = inlen;
			else
				*len = taglen;
			return CKR_OK;
		}
		if (stage == EV_STAGE_UPDATE)
			return CKR_OK; /* kept until the tag is checked */
		if (stage == EV_STAGE_FINAL)
			inlen = (CK_ULONG)op->buflen;
		if (inlen < taglen)
			return CKR_ENCRYPTED_DATA_LEN_RANGE;
		*len = inlen - taglen;
		return CKR_OK;
	}
	return CKR_MECHANISM_INVALID;
}

/* ECB, CBC, CBC_PAD, CTR over a whole input. */
static CK_RV
block_oneshot(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	int l1 = 0, l2 = 0;

	if (inlen > 0 && !EVP_CipherUpdate(op->cctx, out, &l1, in, (int)inlen))
		goto fail;
	if (!EVP_CipherFinal_ex(op->cctx, out + l1, &l2))
		goto fail;
	*outlen = (CK_ULONG)l1 + (CK_ULONG)l2;
	return CKR_OK;
fail:
	OPENSSL_cleanse(out, *outlen);
	if (op->kind == EV_OP_DECRYPT)
		return CKR_ENCRYPTED_DATA_INVALID;
	return CKR_FUNCTION_FAILED;
}

static CK_RV
gcm_encrypt(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	size_t taglen = op->u.gcm.taglen;
	OSSL_PARAM params[2];
	int l1 = 0, l2 = 0;

	if (inlen > 0 && !EVP_EncryptUpdate(op->cctx, out, &l1, in, (int)inlen))
		return CKR_FUNCTION_FAILED;
	if (!EVP_EncryptFinal_ex(op->cctx, out + l1, &l2))
		return CKR_FUNCTION_FAILED;
	params[0] =
	    OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, out + l1 + l2, taglen);
	params[1] = OSSL_PARAM_construct_end();
	if (!EVP_CIPHER_CTX_get_params(op->cctx, params))
		return CKR_FUNCTION_FAILED;
	*outlen = (CK_ULONG)(l1 + l2) + taglen;
	return CKR_OK;
}

/* Ciphertext || tag to plaintext; out is wiped unless the tag verifies. */
static CK_RV
gcm_decrypt(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	size_t taglen = op->u.gcm.taglen, ctlen = inlen - taglen;
	OSSL_PARAM params[2];
	int l1 = 0, l2 = 0;

	params[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG,
						      (void *)(in + ctlen), taglen);
	params[1] = OSSL_PARAM_construct_end();
	if (!EVP_CIPHER_CTX_set_params(op->cctx, params))
		return CKR_FUNCTION_FAILED;
	if (ctlen > 0 && !EVP_DecryptUpdate(op->cctx, out, &l1, in, (int)ctlen))
		goto bad;
	if (EVP_DecryptFinal_ex(op->cctx, out + l1, &l2) <= 0)
		goto bad;
	*outlen = (CK_ULONG)(l1 + l2);
	return CKR_OK;
bad:
	OPENSSL_cleanse(out, ctlen);
	return CKR_ENCRYPTED_DATA_INVALID;
}

/* RFC 3394 / RFC 5649 through OpenSSL's wrap ciphers. */
static CK_RV
kw_raw(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	int l = 0;

	if (EVP_CipherUpdate(op->cctx, out, &l, in, (int)inlen) <= 0 || l < 0) {
		if (op->kind == EV_OP_DECRYPT)
			return CKR_ENCRYPTED_DATA_INVALID;
		return CKR_FUNCTION_FAILED;
	}
	*outlen = (CK_ULONG)l;
	return CKR_OK;
}

/*
 * OpenSSL's RFC 5649 unwrap writes (and on failure wipes) inlen bytes of
 * output, a semiblock more than it can return: give it room of its own.
 */
static CK_RV
kw_run(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	ev_secret *tmp;
	CK_ULONG n;
	CK_RV rv;

	if (op->kind == EV_OP_ENCRYPT || op->mech->variant != EV_AES_KWP)
		return kw_raw(op, in, inlen, out, outlen);
	tmp = ev_secret_new(inlen);
	if (tmp == NULL)
		return CKR_HOST_MEMORY;
	n = inlen;
	rv = kw_raw(op, in, inlen, tmp->data, &n);
	if (rv == CKR_OK && n > *outlen)
		rv = CKR_BUFFER_TOO_SMALL; /* cannot happen: out_len bounds it */
	if (rv == CKR_OK) {
		memcpy(out, tmp->data, n);
		*outlen = n;
	}
	ev_secret_free(tmp);
	return rv;
}

/* CKM_AES_KEY_WRAP_PAD: PKCS#7 padding to the semiblock around RFC 3394. */
static CK_RV
kw_pad_run(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	ev_secret *tmp;
	CK_ULONG n, i, pad;
	CK_RV rv;

	if (op->kind == EV_OP_ENCRYPT) {
		pad = KW_SEMIBLOCK - inlen % KW_SEMIBLOCK;
		tmp = ev_secret_new(inlen + pad);
		if (tmp == NULL)
			return CKR_HOST_MEMORY;
		memcpy(tmp->data, in, inlen);
		memset(tmp->data + inlen, (int)pad, pad);
		rv = kw_run(op, tmp->data, tmp->len, out, outlen);
		ev_secret_free(tmp);
		return rv;
	}
	tmp = ev_secret_new(inlen);
	if (tmp == NULL)
		return CKR_HOST_MEMORY;
	n = tmp->len;
	rv = kw_raw(op, in, inlen, tmp->data, &n);
	if (rv != CKR_OK)
		goto out;
	/* The unwrap checked integrity already: the padding is no oracle. */
	rv = CKR_ENCRYPTED_DATA_INVALID;
	pad = n > 0 ? tmp->data[n - 1] : 0;
	if (pad == 0 || pad > KW_SEMIBLOCK || pad > n)
		goto out;
	for (i = n - pad; i < n; i++)
		if (tmp->data[i] != pad)
			goto out;
	if (n - pad > *outlen) {
		rv = CKR_BUFFER_TOO_SMALL; /* cannot happen: out_len bounds it */
		goto out;
	}
	memcpy(out, tmp->data, n - pad);
	*outlen = n - pad;
	rv = CKR_OK;
out:
	ev_secret_free(tmp);
	return rv;
}

static CK_RV
aes_oneshot(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	switch (op->mech->variant) {
	case EV_AES_GCM:
		if (op->kind == EV_OP_ENCRYPT)
			return gcm_encrypt(op, in, inlen, out, outlen);
		return gcm_decrypt(op, in, inlen, out, outlen);
	case EV_AES_KW:
	case EV_AES_KWP:
		return kw_run(op, in, inlen, out, outlen);
	case EV_AES_KW_PAD:
		return kw_pad_run(op, in, inlen, out, outlen);
	default:
		return block_oneshot(op, in, inlen, out, outlen);
	}
}

static CK_RV
aes_update(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	int l = 0;

	if (op->mech->variant == EV_AES_GCM && op->kind == EV_OP_DECRYPT) {
		*outlen = 0;
		return ev_op_buffer(op, in, inlen);
	}
	if (inlen > 0 && !EVP_CipherUpdate(op->cctx, out, &l, in, (int)inlen))
		return CKR_FUNCTION_FAILED;
	*outlen = (CK_ULONG)l;
	return CKR_OK;
}

static CK_RV
aes_final(ev_op *op, CK_BYTE *out, CK_ULONG *outlen)
{
	int l = 0;

	if (op->mech->variant == EV_AES_GCM) {
		if (op->kind == EV_OP_ENCRYPT)
			return gcm_encrypt(op, NULL, 0, out, outlen);
		return gcm_decrypt(op, op->buf, (CK_ULONG)op->buflen, out, outlen);
	}
	if (!EVP_CipherFinal_ex(op->cctx, out, &l)) {
		OPENSSL_cleanse(out, *outlen);
		return op->kind == EV_OP_DECRYPT ? CKR_ENCRYPTED_DATA_INVALID : CKR_FUNCTION_FAILED;
	}
	*outlen = (CK_ULONG)l;
	return CKR_OK;
}

const ev_mech_ops ev_aes_ops = {
    .init = aes_init,
    .reinit = aes_reinit,
    .reusable = aes_reusable,
    .out_len = aes_out_len,
    .oneshot = aes_oneshot,
    .update = aes_update,
    .final = aes_final,
};
