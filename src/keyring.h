/*
 * The key hierarchy (doc/key-protection.md):
 *   root key (upstream) --seals--> zone key --wraps--> operational keys.
 *
 * A zone key is 32 random bytes in secure memory, sealed by the root with
 * associated data naming the device and the zone. Operational key material
 * is wrapped by its zone key with XChaCha20-Poly1305 (libsodium), with
 * associated data binding the zone id, object id, generation and a digest
 * of the object's immutable attributes. Every blob starts with a format
 * version byte.
 */
#ifndef EV_KEYRING_H
#define EV_KEYRING_H

#include "attr.h"
#include "common.h"
#include "root/root.h"
#include "secmem.h"

#define EV_ZONE_KEY_LEN 32
#define EV_ATTR_DIGEST_LEN 32
#define EV_WRAP_VERSION 1

/*
 * A fresh random zone key (EV_ZONE_KEY_LEN bytes) in *key, owned by the
 * caller (ev_secret_free()). CKR_ARGUMENTS_BAD, CKR_HOST_MEMORY,
 * CKR_GENERAL_ERROR (libsodium unusable).
 */
CK_RV ev_zone_key_new(ev_secret **key);

/*
 * Seal a zone key under the root, bound to the device id (a C string) and
 * the zone id, and to what opts names (may be NULL: see ev_seal_opts).
 * *blob is malloc'ed (NULL on failure). Errors: those of ev_root_seal(),
 * CKR_ARGUMENTS_BAD (a NULL argument, a key that is not EV_ZONE_KEY_LEN
 * bytes).
 */
CK_RV ev_zone_key_seal(ev_root *root, const char *device_id, int64_t zone_id, const ev_secret *key,
		       const ev_seal_opts *opts, unsigned char **blob, size_t *len);

/*
 * Open a sealed zone key; *key (secure memory, the caller's) is NULL on
 * failure; opts as for ev_root_unseal() (may be NULL).
 * CKR_ENCRYPTED_DATA_INVALID when the blob does not authenticate for this
 * device and zone or does not hold a zone key; the other errors of
 * ev_root_unseal() (EVR_PCR_MISMATCH among them).
 */
CK_RV ev_zone_key_unseal(ev_root *root, const char *device_id, int64_t zone_id,
			 const unsigned char *blob, size_t len, ev_unseal_opts *opts,
			 ev_secret **key) EV_MUST_CHECK;

#define EV_SO_AUTH_LEN 32

/*
 * The auth value of a zone's SO recovery copy (doc/key-protection.md,
 * "PCR binding"): BLAKE2b-256 over the SO PIN, keyed with
 * BLAKE2b-256("edgevault so recovery auth v1" || u64 zone id ||
 * u64 length || serial), so that each zone (and each initialisation of
 * it: a new serial) has its own. *auth is in secure memory, the
 * caller's; NULL on failure. CKR_ARGUMENTS_BAD, CKR_HOST_MEMORY,
 * CKR_GENERAL_ERROR (libsodium unusable).
 */
CK_RV ev_so_auth_derive(const CK_UTF8CHAR *pin, CK_ULONG pinlen, int64_t zone_id,
			const char *serial, ev_secret **auth);

/* What a wrapped blob is bound to. */
typedef struct ev_wrap_binding {
	int64_t zone_id;
	int64_t object_id;
	int64_t generation;
	unsigned char attr_digest[EV_ATTR_DIGEST_LEN];
} ev_wrap_binding;

/*
 * Digest (BLAKE2b-256) of the attributes that must never change for a
 * wrapped object: class, key type, and those that can only be set at
 * creation or only move one way (CKA_LOCAL, CKA_KEY_GEN_MECHANISM,
 * CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE, CKA_PRIVATE, CKA_TOKEN,
 * CKA_EC_PARAMS, CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_VALUE_LEN).
 * attrs may be NULL (no attributes). Never fails: should hashing ever
 * fail, out is random, so that nothing unwraps under it.
 */
void ev_attr_digest(const ev_attrs *attrs, unsigned char out[EV_ATTR_DIGEST_LEN]);

/*
 * Wrap secret material under a zone key (EV_ZONE_KEY_LEN bytes) for the
 * binding b. *blob malloc'ed, NULL on failure (it holds no secret).
 * CKR_ARGUMENTS_BAD, CKR_DATA_LEN_RANGE, CKR_HOST_MEMORY, CKR_GENERAL_ERROR.
 */
CK_RV ev_wrap(const ev_secret *zone_key, const ev_wrap_binding *b, const ev_secret *plain,
    unsigned char **blob, size_t *len);

/*
 * Unwrap into *plain (secure memory, the caller's; NULL on failure).
 * CKR_ENCRYPTED_DATA_INVALID when the blob is malformed, of an unknown
 * version, or does not authenticate under this key and binding (moved to
 * another zone or object, or an attribute changed); CKR_ARGUMENTS_BAD,
 * CKR_HOST_MEMORY, CKR_GENERAL_ERROR.
 */
CK_RV ev_unwrap(const ev_secret *zone_key, const ev_wrap_binding *b, const unsigned char *blob,
    size_t len, ev_secret **plain) EV_MUST_CHECK;

#endif
