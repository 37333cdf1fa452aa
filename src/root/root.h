/*
 * The upstream root of trust, behind one small interface. The root key
 * never leaves the root: sealing and unsealing zone keys happen inside it.
 *
 * Backends: "pkcs11" (another PKCS#11 module, loaded with p11-kit; the root
 * key is an AES-256 key in its token, sensitive and not extractable, used
 * with CKM_AES_GCM). "tpm2" (a TPM 2.0 reached through a TCTI: each sealed
 * secret is a sealed-data object under a storage primary key).
 *
 * Each backend serialises its upstream access with its own lock, so an
 * ev_root may be shared by threads; the module also calls it only under
 * its store lock.
 */
#ifndef EV_ROOT_H
#define EV_ROOT_H

#include "common.h"
/* Not "config.h": from src/root/ that finds autoconf's config.h (-I.) first. */
#include "../config.h"
#include "secmem.h"

typedef struct ev_root ev_root;
struct ev_quote; /* ev_root_quote() */

/* The PCRs a sealed secret can be bound to: 0 .. EV_PCR_MAX of the SHA-256 bank. */
#define EV_PCR_MAX 23
#define EV_PCR_ALL 0x00ffffffu /* bit i: PCR i */
#define EV_SEAL_AUTH_MAX 32    /* longest auth value (the TPM's SHA-256 digest size) */
#define EV_ROOT_NAME_MAX 68    /* longest TPM name (a TPMU_NAME) */

/*
 * What a seal binds the secret to, beyond the associated data. NULL, or
 * a zeroed one: nothing (the blob opens whenever the root is reachable).
 * At most one of the two (CKR_ARGUMENTS_BAD for both); the pkcs11 backend
 * supports neither (CKR_ARGUMENTS_BAD).
 *   pcrs: bit i set = PCR i (SHA-256 bank, 0 .. 23): the blob opens only
 *         while those PCRs hold the values they hold at sealing.
 *   auth: an auth value (1 .. EV_SEAL_AUTH_MAX bytes) the unsealer must
 *         give; the TPM counts wrong ones towards its dictionary-attack
 *         lockout.
 */
typedef struct ev_seal_opts {
	uint32_t pcrs;
	const ev_secret *auth;
} ev_seal_opts;

/*
 * What an unseal needs (auth: the value the blob was sealed with; NULL:
 * none), and what it found out (pcrs: the PCR selection the blob is bound
 * to; changed: with EVR_PCR_MISMATCH, those PCRs of the selection whose
 * values differ from the sealed ones now, 0 when that could not be told).
 */
typedef struct ev_unseal_opts {
	const ev_secret *auth;
	uint32_t pcrs;
	uint32_t changed;
} ev_unseal_opts;

/*
 * Internal answer of ev_root_unseal(): the blob is bound to PCRs whose
 * values have changed since it was sealed. Never returned to an
 * application (the token layer turns it into CKR_FUNCTION_REJECTED).
 */
#define EVR_PCR_MISMATCH (CKR_VENDOR_DEFINED | 0x45560010UL)

struct ev_root_ops {
	const char *name;
	CK_RV (*seal)
	(ev_root *r, const unsigned char *aad, size_t aadlen, const ev_secret *plain,
	 const ev_seal_opts *opts, unsigned char **blob, size_t *bloblen);
	CK_RV (*unseal)
	(ev_root *r, const unsigned char *aad, size_t aadlen, const unsigned char *blob,
	 size_t bloblen, ev_unseal_opts *opts, ev_secret **plain);
	void (*forked)(ev_root *r);
	void (*free)(ev_root *r);
	/* tpm2 only; NULL where the root cannot quote (ev_root_quote()). */
	CK_RV (*quote)(ev_root *r, uint32_t pcrs, const unsigned char *nonce, size_t nonce_len,
	    struct ev_quote *q);
};

struct ev_root {
	const struct ev_root_ops *ops;
};

#define EV_ROOT_CREATE_KEY 0x1u /* create the root key if it is absent */
/* tpm2: never through edgevault-tpm-helper (the helper's own root: tpm2_helper.h) */
#define EV_ROOT_IN_PROCESS 0x2u

/*
 * Reach the root named by the configuration: load the upstream module,
 * find the token by label, log in with the configured PIN, find the root
 * key (creating it with EV_ROOT_CREATE_KEY). On failure *out is NULL and
 * err says what is wrong in words an operator can act on ("cannot load
 * upstream module X: ...", "no upstream token labelled X", "upstream PIN
 * rejected", "root key X not found"). Errors: CKR_DEVICE_ERROR (root
 * unreachable), CKR_PIN_INCORRECT (upstream PIN rejected),
 * CKR_GENERAL_ERROR (configuration), CKR_HOST_MEMORY.
 */
CK_RV ev_root_open(const ev_config *cfg, unsigned flags, ev_root **out, char *err, size_t errlen);

/*
 * Seal a secret: *blob (malloc'ed; NULL on failure) can only be opened by
 * this root with the same associated data, and under opts (may be NULL:
 * see ev_seal_opts). The blob starts with a format version byte.
 * CKR_ARGUMENTS_BAD (also: options the backend does not support, a PCR
 * outside 0 .. 23), CKR_DATA_LEN_RANGE, CKR_HOST_MEMORY, CKR_DEVICE_ERROR
 * (root unreachable), CKR_PIN_INCORRECT (upstream PIN rejected on
 * reconnection), CKR_FUNCTION_FAILED (the PCRs kept changing while the
 * TPM sealed).
 */
CK_RV ev_root_seal(ev_root *r, const unsigned char *aad, size_t aadlen, const ev_secret *plain,
		   const ev_seal_opts *opts, unsigned char **blob, size_t *bloblen);

/*
 * Open a sealed blob; opts may be NULL (no auth value given, nothing to
 * report back). CKR_ENCRYPTED_DATA_INVALID when the blob or its
 * associated data do not authenticate; EVR_PCR_MISMATCH (see above) when
 * the blob is bound to PCRs that have changed; CKR_FUNCTION_FAILED when
 * the blob needs an auth value and the one given is wrong (counted by the
 * TPM's dictionary-attack protection; logged); CKR_PIN_INCORRECT when the
 * upstream PIN is rejected on reconnection; CKR_FUNCTION_REJECTED when
 * the TPM is in dictionary-attack lockout (logged); CKR_ARGUMENTS_BAD when an auth value is
 * given for a blob that has none or missing for one that has;
 * CKR_DEVICE_ERROR when the root cannot be reached. *plain is in secure
 * memory, owned by the caller, NULL on failure.
 */
CK_RV ev_root_unseal(ev_root *r, const unsigned char *aad, size_t aadlen, const unsigned char *blob,
		     size_t bloblen, ev_unseal_opts *opts, ev_secret **plain) EV_MUST_CHECK;

/* In a child after fork(): drop the parent's upstream sessions and state
 * without disturbing the parent; the next call reconnects. */
void ev_root_forked(ev_root *r);

/* Log out, close and unload. NULL is a no-op. */
void ev_root_free(ev_root *r);

/* Backend constructors (used by ev_root_open). */
CK_RV ev_root_pkcs11_open(const ev_config *cfg, unsigned flags, ev_root **out, char *err,
    size_t errlen);

/*
 * The TPM root: connect through [root] tcti, start the TPM if nobody has,
 * and find the persistent primary at [root] primary_handle (a transient
 * one is made, and its name checked, at the first operation). Of flags only EV_ROOT_IN_PROCESS counts: the transient
 * primary is the same key each time, and a persistent one is never made
 * here. Where edgevault-tpm-helper is needed (tpm2_helper.h), the root
 * is reached through it, now and at every operation. Errors as
 * ev_root_open: CKR_DEVICE_ERROR when the TPM cannot be reached or
 * answers with an error (err has the TPM's answer decoded),
 * CKR_GENERAL_ERROR (configuration), CKR_HOST_MEMORY.
 */
/*
 * The TPM name of the tpm2 root's storage primary key (connecting first
 * when needed), into name (*len: its size in, the name's length out).
 * For a root of another backend: CKR_FUNCTION_NOT_SUPPORTED. The root's
 * errors, CKR_BUFFER_TOO_SMALL.
 */
CK_RV ev_root_primary_name(ev_root *r, unsigned char *name, size_t *len) EV_MUST_CHECK;

/*
 * The primary's name every connection of the tpm2 root must show from now
 * on (recorded at the first seal): a connection that finds another primary
 * is refused (CKR_DEVICE_ERROR, logged), since the salted sessions would
 * encrypt their salt to a key that is not the TPM's. A no-op for another
 * backend. CKR_ARGUMENTS_BAD for an empty or too long name.
 */
CK_RV ev_root_pin_primary_name(ev_root *r, const unsigned char *name, size_t len);

/* The tpm2 backend's: the same, for a root known to be one. */
CK_RV ev_root_tpm2_name(ev_root *r, unsigned char *name, size_t *len);
CK_RV ev_root_tpm2_pin_name(ev_root *r, const unsigned char *name, size_t len);

CK_RV ev_root_tpm2_open(const ev_config *cfg, unsigned flags, ev_root **out, char *err,
    size_t errlen);

/*
 * Load a PKCS#11 module with p11-kit (unmanaged, so the module sees its own
 * C_Initialize). Kept in its own file because p11-kit's headers carry their
 * own PKCS#11 definitions. Returns the module's function list (a
 * CK_FUNCTION_LIST *, passed as void * because p11kit_load.c cannot see
 * our CK_FUNCTION_LIST type; the structures are ABI-identical), or NULL
 * with a message in err. Release with ev_p11kit_release(); NULL is a no-op.
 */
void *ev_p11kit_load(const char *path, char *err, size_t errlen);
void ev_p11kit_release(void *module);

/*
 * A TPM quote, as the TPM answered it, for the tpm2-quote attestation
 * provider (src/quote.h) to check: nothing here is trusted yet. All three
 * are in the TPM's own marshalling.
 */
#define EV_QUOTE_NONCE_LEN 32u   /* the qualifying data the provider sends */
#define EV_QUOTE_PART_MAX 1024u  /* a quote's parts are about 150 bytes each */
struct ev_quote {
	unsigned char attest[EV_QUOTE_PART_MAX]; /* the TPMS_ATTEST the TPM signed */
	size_t attest_len;
	unsigned char sig[EV_QUOTE_PART_MAX];    /* TPMT_SIGNATURE over attest */
	size_t sig_len;
	unsigned char ak[EV_QUOTE_PART_MAX];     /* TPMT_PUBLIC of the attestation key */
	size_t ak_len;
};

/*
 * Quote the PCRs of the SHA-256 bank whose bits are set in pcrs (bit i:
 * PCR i, 0..23) with qualifying data nonce (1..EV_QUOTE_NONCE_LEN bytes,
 * the caller's fresh random bytes), signed by an attestation key the
 * root makes for it and forgets afterwards (tpm2: a transient primary of
 * the owner hierarchy, doc/attestation.md gives its template). May be
 * called without the module's store lock: the backend serialises its own
 * access. *q is filled on CKR_OK. CKR_FUNCTION_NOT_SUPPORTED (a root that
 * cannot quote: pkcs11), CKR_ARGUMENTS_BAD, CKR_DEVICE_ERROR (the TPM
 * unreachable or answering with an error; logged in the TSS's words).
 */
CK_RV ev_root_quote(ev_root *r, uint32_t pcrs, const unsigned char *nonce, size_t nonce_len,
    struct ev_quote *q) EV_MUST_CHECK;

#endif
