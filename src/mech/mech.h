/*
 * Mechanisms: one constant table (mech.c) of what each mechanism is, and
 * one file per family (ecdsa.c, eddsa.c, rsa.c, aes.c, hmac.c, digest.c,
 * ecdh.c, wrap.c) doing the work over OpenSSL 3 EVP.
 *
 * Length and buffer conventions follow PKCS#11 section 5.2 exactly, so the
 * C_* functions only pass arguments through:
 *  - out == NULL: *outlen = the size needed (may be an upper bound for
 *    decryption), CKR_OK, and the operation stays active;
 *  - *outlen too small: *outlen = the exact size, CKR_BUFFER_TOO_SMALL,
 *    and the operation stays active (a result already computed is kept in
 *    the operation and handed out by the next call);
 *  - any other answer but CKR_OK from an update, and any answer from a
 *    final or single-part call that is not one of the two above, ends the
 *    operation: ev_op_active() turns false and the caller frees it.
 */
#ifndef EV_MECH_H
#define EV_MECH_H

#include "../common.h"
#include "../key.h"
#include "../secmem.h"

typedef enum ev_op_kind {
	EV_OP_ENCRYPT = 1,
	EV_OP_DECRYPT,
	EV_OP_SIGN,
	EV_OP_VERIFY,
	EV_OP_DIGEST,
} ev_op_kind;

typedef struct ev_mech ev_mech;

/* The table entry for a mechanism, or NULL (→ CKR_MECHANISM_INVALID). */
const ev_mech *ev_mech_find(CK_MECHANISM_TYPE type);

/* PKCS#11 C_GetMechanismList convention over the whole table. */
CK_RV ev_mech_list(CK_MECHANISM_TYPE *list, CK_ULONG *count);

/* C_GetMechanismInfo for an entry: true key sizes and CKF_* flags. */
void ev_mech_info(const ev_mech *m, CK_MECHANISM_INFO *info);

/* Whether the mechanism offers an operation kind (per its flags). */
int ev_mech_can(const ev_mech *m, CK_FLAGS ckf_flag);

/*
 * Whether a key may be used with a mechanism: CKR_OK,
 * CKR_KEY_TYPE_INCONSISTENT, CKR_KEY_SIZE_RANGE.
 */
CK_RV ev_mech_key_ok(const ev_mech *m, const ev_key *key) EV_MUST_CHECK;

/*
 * Release the algorithms fetched from OpenSSL on first use (C_Finalize).
 * No operation may be alive; the next use fetches them again.
 */
void ev_mech_fini(void);

typedef struct ev_op ev_op;

/*
 * Start an operation. key is borrowed and must outlive the op (NULL for
 * digests). Errors: CKR_MECHANISM_INVALID (not for this kind),
 * CKR_MECHANISM_PARAM_INVALID, CKR_KEY_TYPE_INCONSISTENT,
 * CKR_KEY_SIZE_RANGE, CKR_HOST_MEMORY.
 */
CK_RV ev_op_new(ev_op_kind kind, const CK_MECHANISM *mech, const ev_key *key, ev_op **out);

/* Whether the operation is still active (see the conventions above). */
int ev_op_active(const ev_op *op);

/* Whether an update was already done (a single-part call is then refused
 * by the caller with CKR_OPERATION_ACTIVE). */
int ev_op_in_multipart(const ev_op *op);

/* C_Encrypt, C_Decrypt, C_Sign, C_Digest. */
CK_RV ev_op_oneshot(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out,
    CK_ULONG *outlen);

/* C_EncryptUpdate, C_DecryptUpdate (out/outlen used), C_SignUpdate,
 * C_VerifyUpdate, C_DigestUpdate (out and outlen NULL). */
CK_RV ev_op_update(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out,
    CK_ULONG *outlen);

/* C_DigestKey: feed a secret key's value into a digest. */
CK_RV ev_op_digest_key(ev_op *op, const ev_key *key);

/* C_EncryptFinal, C_DecryptFinal, C_SignFinal, C_DigestFinal. */
CK_RV ev_op_final(ev_op *op, CK_BYTE *out, CK_ULONG *outlen);

/* C_Verify: CKR_OK, CKR_SIGNATURE_INVALID, CKR_SIGNATURE_LEN_RANGE, ... Ends the op. */
CK_RV ev_op_verify(ev_op *op, const CK_BYTE *data, CK_ULONG len, const CK_BYTE *sig,
    CK_ULONG siglen) EV_MUST_CHECK;

/* C_VerifyFinal. Ends the op. */
CK_RV ev_op_verify_final(ev_op *op, const CK_BYTE *sig, CK_ULONG siglen) EV_MUST_CHECK;

/* Free (wipes any held result). NULL is a no-op. */
void ev_op_free(ev_op *op);

/*
 * Keep an ended operation for ev_op_reuse(): wipes what it buffered or
 * held, keeps its keyed OpenSSL contexts. 1 when it can be reused, 0 when
 * not (still active, or a family that never reuses): the caller frees it.
 * A kept op still borrows its key, which must outlive it.
 */
int ev_op_park(ev_op *op);

/*
 * ev_op_new() on the contexts of a parked op: the same kind, mechanism
 * type and key (the same ev_key, held by the caller since ev_op_park(),
 * so no other key can have its address) start a new operation without
 * the key set-up. CKR_OK and op is active again; any other answer (a
 * different kind, mechanism or key, a bad parameter, an OpenSSL failure)
 * means op must be freed, and ev_op_new() answers for the parameter.
 */
CK_RV ev_op_reuse(ev_op *op, ev_op_kind kind, const CK_MECHANISM *mech, const ev_key *key)
    EV_MUST_CHECK;

/*
 * C_WrapKey: encrypt key's serialized secret (ev_key_export_secret for
 * private keys, the bytes for secret keys) with wrapping key, by
 * CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_PAD, CKM_AES_KEY_WRAP_KWP,
 * CKM_AES_GCM, CKM_AES_CBC_PAD, CKM_RSA_PKCS_OAEP, CKM_RSA_PKCS.
 * Output conventions as above (NULL out = length query).
 */
CK_RV ev_mech_wrap(const CK_MECHANISM *mech, const ev_key *wrapping, const ev_key *key,
    CK_BYTE *out, CK_ULONG *outlen);

/*
 * C_UnwrapKey: decrypt into *plain (secure memory); the caller builds
 * the key from it. CKR_WRAPPED_KEY_INVALID, CKR_WRAPPED_KEY_LEN_RANGE.
 */
CK_RV ev_mech_unwrap(const CK_MECHANISM *mech, const ev_key *unwrapping, const CK_BYTE *in,
    CK_ULONG inlen, ev_secret **plain) EV_MUST_CHECK;

/*
 * C_DeriveKey with CKM_ECDH1_DERIVE (CK_ECDH1_DERIVE_PARAMS, kdf CKD_NULL
 * or CKD_SHA*_KDF, public data raw or DER OCTET STRING). *secret in secure
 * memory; len is CKA_VALUE_LEN of the template or 0 for the whole secret.
 */
CK_RV ev_mech_derive(const CK_MECHANISM *mech, const ev_key *base, CK_ULONG len,
    ev_secret **secret);

#endif
