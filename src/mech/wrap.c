/*
 * C_WrapKey and C_UnwrapKey: the serialized secret of a key (PKCS#8 DER
 * for private keys, the bytes of secret keys) encrypted by one of the
 * wrap-capable mechanisms, run as a single-part encryption/decryption
 * under the PKCS#11 length conventions. Error codes are mapped to the
 * wrap-specific ones C_WrapKey and C_UnwrapKey define.
 */
#include <string.h>

#include "mech_int.h"

#define KW_SEMIBLOCK 8

static CK_RV
map_wrap_rv(CK_RV rv)
{
	switch (rv) {
	case CKR_KEY_TYPE_INCONSISTENT:
		return CKR_WRAPPING_KEY_TYPE_INCONSISTENT;
	case CKR_KEY_SIZE_RANGE:
		return CKR_WRAPPING_KEY_SIZE_RANGE;
	case CKR_DATA_LEN_RANGE:
		return CKR_KEY_SIZE_RANGE; /* the key to wrap does not fit */
	}
	return rv;
}

static CK_RV
map_unwrap_rv(CK_RV rv)
{
	switch (rv) {
	case CKR_KEY_TYPE_INCONSISTENT:
		return CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT;
	case CKR_KEY_SIZE_RANGE:
		return CKR_UNWRAPPING_KEY_SIZE_RANGE;
	case CKR_ENCRYPTED_DATA_LEN_RANGE:
		return CKR_WRAPPED_KEY_LEN_RANGE;
	case CKR_ENCRYPTED_DATA_INVALID:
		return CKR_WRAPPED_KEY_INVALID;
	}
	return rv;
}

CK_RV
ev_mech_wrap(const CK_MECHANISM *mech, const ev_key *wrapping, const ev_key *key, CK_BYTE *out,
	     CK_ULONG *outlen)
{
	ev_secret *plain = NULL, *padded;
	ev_op *op = NULL;
	size_t n;
	CK_RV rv;

	if (mech == NULL || wrapping == NULL || key == NULL || outlen == NULL)
		return CKR_ARGUMENTS_BAD;
	rv = ev_op_start(EV_OP_ENCRYPT, CKF_WRAP, mech, wrapping, &op);
	if (rv != CKR_OK)
		return map_wrap_rv(rv);
	rv = ev_key_export_secret(key, &plain);
	if (rv != CKR_OK)
		goto out;
	/*
	 * RFC 3394 takes whole semiblocks: PKCS#11 pads a secret key's value
	 * with zeros; the unwrapper truncates it by CKA_VALUE_LEN.
	 */
	if (op->mech->variant == EV_AES_KW && op->mech->ops == &ev_aes_ops &&
	    key->cls == CKO_SECRET_KEY && plain->len % KW_SEMIBLOCK != 0) {
		n = plain->len + KW_SEMIBLOCK - plain->len % KW_SEMIBLOCK;
		padded = ev_secret_new(n);
		if (padded == NULL) {
			rv = CKR_HOST_MEMORY;
			goto out;
		}
		memcpy(padded->data, plain->data, plain->len);
		ev_secret_free(plain);
		plain = padded;
	}
	rv = map_wrap_rv(ev_op_oneshot(op, plain->data, plain->len, out, outlen));
out:
	ev_secret_free(plain);
	ev_op_free(op);
	return rv;
}

CK_RV
ev_mech_unwrap(const CK_MECHANISM *mech, const ev_key *unwrapping, const CK_BYTE *in,
	       CK_ULONG inlen, ev_secret **plain)
{
	ev_secret *s = NULL;
	ev_op *op = NULL;
	CK_ULONG len = 0;
	CK_RV rv;

	if (mech == NULL || unwrapping == NULL || plain == NULL || (in == NULL && inlen != 0))
		return CKR_ARGUMENTS_BAD;
	*plain = NULL;
	rv = ev_op_start(EV_OP_DECRYPT, CKF_UNWRAP, mech, unwrapping, &op);
	if (rv != CKR_OK)
		return map_unwrap_rv(rv);
	/* The bound first, then the plaintext straight into secure memory. */
	rv = ev_op_oneshot(op, in, inlen, NULL, &len);
	if (rv != CKR_OK)
		goto out;
	s = ev_secret_new(len);
	if (s == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	rv = ev_op_oneshot(op, in, inlen, s->data, &len);
	if (rv != CKR_OK)
		goto out;
	s->len = len;
	*plain = s;
	s = NULL; /* transferred */
out:
	ev_secret_free(s);
	ev_op_free(op);
	return map_unwrap_rv(rv);
}
