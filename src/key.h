/*
 * Key material as the mechanisms use it: an OpenSSL EVP_PKEY for
 * asymmetric keys, secure memory for secret keys. Built from templates
 * (C_CreateObject, C_UnwrapKey), by generation, or from the serialized
 * secret kept wrapped in the store.
 */
#ifndef EV_KEY_H
#define EV_KEY_H

#include <stdatomic.h>

#include <openssl/evp.h>

#include "attr.h"
#include "common.h"
#include "secmem.h"

/*
 * A key is reference counted: every constructor below returns it with one
 * reference, the caller's. An object caching its material holds one, and
 * hands a new one to each user (ev_object_key()), so wiping the cache
 * (logout, last session closed) never frees material a concurrent call
 * is still reading: the last reference wipes it.
 */
typedef struct ev_key {
	CK_OBJECT_CLASS cls; /* CKO_PRIVATE_KEY, CKO_PUBLIC_KEY or CKO_SECRET_KEY */
	CK_KEY_TYPE type;    /* CKK_EC, CKK_EC_EDWARDS, CKK_RSA, CKK_AES, CKK_GENERIC_SECRET */
	EVP_PKEY *pkey;      /* asymmetric keys */
	ev_secret *secret;   /* secret keys: the key bytes */
	atomic_int refs;
} ev_key;

/* Take one more reference; returns k. NULL is a no-op. */
ev_key *ev_key_ref(ev_key *k);

/*
 * Drop a reference; the last one frees (EVP_PKEY_free, ev_secret_free,
 * which wipes). NULL is a no-op.
 */
void ev_key_free(ev_key *k);

/*
 * Free what the key code keeps between calls (the curves' domain
 * parameters). From ev_module_fini(), once no session is left; the next
 * use makes them again.
 */
void ev_key_fini(void);

/*
 * Generate a key pair for CKM_EC_KEY_PAIR_GEN (CKA_EC_PARAMS in pub: P-256
 * or P-384, as OID or printable name), CKM_EC_EDWARDS_KEY_PAIR_GEN
 * (CKA_EC_PARAMS Ed25519, OID or the printable "edwards25519"), or
 * CKM_RSA_PKCS_KEY_PAIR_GEN (CKA_MODULUS_BITS 2048..4096,
 * CKA_PUBLIC_EXPONENT default 65537). Errors: CKR_TEMPLATE_INCOMPLETE,
 * CKR_CURVE_NOT_SUPPORTED, CKR_ATTRIBUTE_VALUE_INVALID,
 * CKR_KEY_SIZE_RANGE, CKR_MECHANISM_INVALID, CKR_HOST_MEMORY.
 */
CK_RV ev_key_generate_pair(CK_MECHANISM_TYPE mech, const ev_attrs *pub_tmpl,
    ev_key **priv, ev_key **pub);

/*
 * Generate a secret key: CKM_AES_KEY_GEN (CKA_VALUE_LEN 16, 24 or 32) or
 * CKM_GENERIC_SECRET_KEY_GEN (CKA_VALUE_LEN 1..512). Key type from the
 * mechanism. Errors: CKR_TEMPLATE_INCOMPLETE, CKR_ATTRIBUTE_VALUE_INVALID.
 */
CK_RV ev_key_generate_secret(CK_MECHANISM_TYPE mech, const ev_attrs *tmpl, ev_key **key);

/*
 * Add to attrs the public attributes that follow from the key material,
 * replacing any present: private and public keys: CKA_KEY_TYPE,
 * CKA_PUBLIC_KEY_INFO (SubjectPublicKeyInfo DER); EC and Edwards:
 * CKA_EC_PARAMS (named-curve OID DER), public key objects CKA_EC_POINT (DER
 * OCTET STRING of the point / the 32 raw bytes); RSA: CKA_MODULUS,
 * CKA_PUBLIC_EXPONENT, and on public keys CKA_MODULUS_BITS; secret keys:
 * CKA_VALUE_LEN.
 */
CK_RV ev_key_public_attrs(const ev_key *k, ev_attrs *attrs);

/*
 * Build a key from a template's material (C_CreateObject, C_UnwrapKey):
 * CKO_PUBLIC_KEY: CKA_EC_PARAMS + CKA_EC_POINT (raw or DER OCTET STRING
 * accepted), CKA_MODULUS + CKA_PUBLIC_EXPONENT. CKO_PRIVATE_KEY:
 * CKA_EC_PARAMS + CKA_VALUE; RSA CKA_MODULUS, CKA_PUBLIC_EXPONENT,
 * CKA_PRIVATE_EXPONENT (+ primes and CRT values when given).
 * CKO_SECRET_KEY: CKA_VALUE (AES: 16/24/32 bytes). Secret values are read
 * from the caller's template and never stored in an ev_attrs.
 * Errors: CKR_TEMPLATE_INCOMPLETE, CKR_ATTRIBUTE_VALUE_INVALID,
 * CKR_CURVE_NOT_SUPPORTED, CKR_KEY_TYPE_INCONSISTENT, CKR_HOST_MEMORY.
 */
CK_RV ev_key_from_template(CK_OBJECT_CLASS cls, CK_KEY_TYPE type, const CK_ATTRIBUTE *tmpl,
    CK_ULONG count, ev_key **out);

/* Public key of a private key (a new ev_key of class CKO_PUBLIC_KEY). */
CK_RV ev_key_public_of(const ev_key *priv, ev_key **pub);

/*
 * The secret material in serialized form, for wrapping: private keys as
 * PKCS#8 DER, secret keys as their bytes. *out in secure memory.
 */
CK_RV ev_key_export_secret(const ev_key *k, ev_secret **out);

/* The inverse of ev_key_export_secret(). CKR_ENCRYPTED_DATA_INVALID when
 * the bytes do not parse as a key of that class and type. */
CK_RV ev_key_import_secret(CK_OBJECT_CLASS cls, CK_KEY_TYPE type, const ev_secret *in,
    ev_key **out) EV_MUST_CHECK;

/*
 * A secret attribute's value (CKA_VALUE, CKA_PRIVATE_EXPONENT, CKA_PRIME_1,
 * ...) for an extractable, non-sensitive key. *out in secure memory.
 * CKR_ATTRIBUTE_TYPE_INVALID when the key has no such component.
 */
CK_RV ev_key_secret_attr(const ev_key *k, CK_ATTRIBUTE_TYPE type, ev_secret **out);

/* Key size as CK_MECHANISM_INFO counts it: bits for RSA and EC, bytes for secret keys. */
CK_ULONG ev_key_size(const ev_key *k);

#endif
