/*
 * PINs are stored only as Argon2id hashes (libsodium crypto_pwhash_str).
 */
#ifndef EV_PIN_H
#define EV_PIN_H

#include "common.h"

#define EV_PIN_MIN_LEN 4
#define EV_PIN_MAX_LEN 255

/*
 * Hash a PIN with the given Argon2id limits into *out (malloc'ed,
 * NUL-terminated). CKR_PIN_LEN_RANGE outside [EV_PIN_MIN_LEN, EV_PIN_MAX_LEN],
 * CKR_HOST_MEMORY when the hash cannot be computed.
 */
CK_RV ev_pin_hash(const CK_UTF8CHAR *pin, CK_ULONG len, unsigned long long ops, size_t mem,
    char **out);

/* 1 when pin matches hash (constant time), else 0. */
int ev_pin_verify(const char *hash, const CK_UTF8CHAR *pin, CK_ULONG len) EV_MUST_CHECK;

#endif
