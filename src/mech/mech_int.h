/*
 * Inside the mechanism layer: the table entry, the operation state and
 * what each family (ecdsa.c, eddsa.c, rsa.c, aes.c, hmac.c, digest.c)
 * provides to the dispatcher in mech.c.
 *
 * mech.c owns the PKCS#11 length and buffer conventions; a family only
 * ever writes into a buffer it was told is large enough.
 */
#ifndef EV_MECH_INT_H
#define EV_MECH_INT_H

#include <stdint.h>

#include <openssl/evp.h>

#include "mech.h"

/* Which output size out_len() is asked for. */
typedef enum ev_stage {
	EV_STAGE_ONESHOT = 1,
	EV_STAGE_UPDATE,
	EV_STAGE_FINAL,
} ev_stage;

typedef struct ev_mech_ops {
	/*
	 * Check the mechanism parameter and set the operation up: fetch
	 * algorithms, create and key the contexts, fix op->outsize. Errors:
	 * CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_INVALID (kind not
	 * offered), CKR_KEY_TYPE_INCONSISTENT, CKR_HOST_MEMORY,
	 * CKR_DEVICE_ERROR.
	 */
	CK_RV (*init)(ev_op *op, const CK_MECHANISM *mech);

	/*
	 * Start a new operation on the contexts of an ended one of the same
	 * kind, mechanism type and key (ev_op_reuse()): check the new
	 * parameter and re-initialise the contexts without the key, so no
	 * key schedule, fetch or allocation is repeated. Any error (the
	 * parameter's included) leaves the op to be freed: the caller then
	 * starts afresh with init, which answers for the parameter. NULL: the
	 * family never reuses.
	 */
	CK_RV (*reinit)(ev_op *op, const CK_MECHANISM *mech);

	/*
	 * 0 when reinit would refuse this op whatever the parameter (a
	 * variant that always starts afresh): ev_op_park() then keeps
	 * nothing, so no context holds material it can never serve. NULL:
	 * every op of the family with reinit can be reused.
	 */
	int (*reusable)(const ev_op *op);

	/*
	 * The output size of a stage given inlen more input bytes. *exact 0
	 * means an upper bound (decryption). May answer an input length
	 * error (CKR_DATA_LEN_RANGE, CKR_ENCRYPTED_DATA_LEN_RANGE). NULL:
	 * op->outsize, exact, for single-part and final, 0 for updates.
	 */
	CK_RV (*out_len)
	(const ev_op *op, ev_stage stage, CK_ULONG inlen, CK_ULONG *len, int *exact);

	/* The single-part call. out is not NULL and *outlen >= out_len(). */
	CK_RV (*oneshot)
	(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen);

	/*
	 * Streaming update and final (out as for oneshot; NULL for sign,
	 * verify and digest updates). When update is NULL, mech.c buffers
	 * the input and finishes with oneshot or verify.
	 */
	CK_RV (*update)
	(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen);
	CK_RV (*final)(ev_op *op, CK_BYTE *out, CK_ULONG *outlen);

	/* Verification, single-part and final of a streaming update. */
	CK_RV (*verify)
	(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, const CK_BYTE *sig, CK_ULONG siglen);
	CK_RV (*verify_final)(ev_op *op, const CK_BYTE *sig, CK_ULONG siglen);
} ev_mech_ops;

/* AES modes and RSA paddings, in ev_mech.variant. */
enum {
	EV_AES_ECB = 1,
	EV_AES_CBC,
	EV_AES_CBC_PAD,
	EV_AES_CTR,
	EV_AES_GCM,
	EV_AES_KW,
	EV_AES_KW_PAD, /* PKCS#11 3.0 CKM_AES_KEY_WRAP_PAD: PKCS#7 padding, then RFC 3394 */
	EV_AES_KWP,    /* RFC 5649 */
};

enum {
	EV_RSA_PKCS = 1,
	EV_RSA_PSS,
	EV_RSA_OAEP,
};

#define EV_MECH_MAX_KTYPES 4

struct ev_mech {
	CK_MECHANISM_TYPE type;
	CK_KEY_TYPE ktypes[EV_MECH_MAX_KTYPES];
	unsigned nktypes;
	CK_ULONG min_size; /* as CK_MECHANISM_INFO counts them */
	CK_ULONG max_size;
	CK_FLAGS flags;
	const ev_mech_ops *ops; /* NULL for key generation and derivation */
	CK_MECHANISM_TYPE hash; /* digest of hash-and-sign, HMAC and digest mechanisms */
	int variant;		/* family-specific: EV_AES_*, EV_RSA_* */
};

struct ev_op {
	ev_op_kind kind;
	const ev_mech *mech;
	const ev_key *key;
	int active;
	int multipart;
	int buffered; /* the algorithm is one-shot: mech.c keeps the input until the end */

	CK_ULONG outsize; /* signature, MAC or digest size; RSA modulus bytes */
	uint64_t total;	  /* input bytes taken by updates so far */

	const EVP_MD *md; /* borrowed from the fetched set (ev_md_get) */
	EVP_MD_CTX *mdctx;
	EVP_PKEY_CTX *pctx;
	EVP_CIPHER_CTX *cctx;
	EVP_MAC_CTX *macctx;

	/* Input kept by mech.c for one-shot-only algorithms, and by GCM
	 * decryption until the tag is checked. Wiped on free. */
	unsigned char *buf;
	size_t buflen;
	size_t bufcap;

	/* A result computed for a buffer that proved too small. */
	ev_secret *held;
	CK_ULONG heldlen;

	union {
		struct {
			CK_ULONG taglen;
			size_t ivlen; /* the context's IV length */
		} gcm;
		struct {
			uint64_t blocks_left; /* before the counter bits wrap */
		} ctr;
		struct {
			CK_ULONG hlen; /* PSS: the hash size expected as input */
		} rsa;
	} u;
};

/* The families' operation tables. */
extern const ev_mech_ops ev_ecdsa_ops;
extern const ev_mech_ops ev_eddsa_ops;
extern const ev_mech_ops ev_rsa_ops;
extern const ev_mech_ops ev_aes_ops;
extern const ev_mech_ops ev_hmac_ops;
extern const ev_mech_ops ev_digest_ops;

/*
 * Algorithms fetched once per process and shared read-only by all
 * operations (the fetch is what costs; see mech.c). NULL when the
 * running OpenSSL does not offer it.
 */
const EVP_MD *ev_md_get(CK_MECHANISM_TYPE hash);	     /* CKM_SHA_1, CKM_SHA256, ... */
const EVP_MD *ev_md_for_mgf(CK_RSA_PKCS_MGF_TYPE mgf);	     /* CKG_MGF1_SHA1, ... */
const EVP_CIPHER *ev_cipher_get(int variant, size_t keylen); /* EV_AES_* */
EVP_MAC *ev_hmac_get(void);

/*
 * EVP_DigestSignInit() or EVP_DigestVerifyInit() on op->mdctx, by op's
 * kind; pkey NULL re-initialises the context for the key it has. *pctx
 * (may be NULL) gets the context's EVP_PKEY_CTX. CKR_FUNCTION_FAILED.
 */
CK_RV ev_op_digest_sign_init(ev_op *op, const EVP_MD *md, EVP_PKEY *pkey, EVP_PKEY_CTX **pctx);

/* Append inlen bytes from in to op->buf. CKR_DATA_LEN_RANGE past the
 * buffering limit, CKR_HOST_MEMORY. */
CK_RV ev_op_buffer(ev_op *op, const CK_BYTE *in, CK_ULONG inlen);

/*
 * ev_op_new() with the capability asked for given explicitly: wrap.c
 * runs CKF_WRAP / CKF_UNWRAP mechanisms as encryption / decryption.
 */
CK_RV ev_op_start(ev_op_kind kind, CK_FLAGS need, const CK_MECHANISM *mech, const ev_key *key,
		  ev_op **out);

#endif
