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

/*
 * A PIN memo: what lets a process accept again, without the slow hash, a
 * PIN it has already checked with ev_pin_verify() against a stored hash.
 *
 * It holds, in secure memory, a random key made for this memo alone and
 * the keyed BLAKE2b-256 of (the stored hash string, the PIN) under it;
 * never the PIN. A later PIN matches only together with the very same
 * hash string: the string carries a fresh random salt each time a PIN is
 * set, so a PIN changed anywhere (another process too) leaves the memo
 * matching nothing, with no notice needed. What it costs: whoever can
 * read this process's secure memory can test PIN guesses against the
 * memo at BLAKE2b speed rather than Argon2id's; so it lives only in
 * memory that is mlock'ed (never swapped; ev_secret_is_locked()) and left
 * out of core dumps, in an arena of the secure pool (guard pages around
 * the arena, not around each secret), and only as long as its owner keeps
 * it.
 */
typedef struct ev_pin_memo ev_pin_memo;

/*
 * A memo of pin as the PIN that matches hash (the caller checked it).
 * CKR_HOST_MEMORY (secure memory exhausted), CKR_DEVICE_MEMORY (secure
 * memory cannot be locked: no memo is made), CKR_ARGUMENTS_BAD (NULL),
 * CKR_PIN_LEN_RANGE.
 */
CK_RV ev_pin_memo_new(const char *hash, const CK_UTF8CHAR *pin, CK_ULONG len, ev_pin_memo **out)
    EV_MUST_CHECK;

/*
 * 1 when pin, together with hash, is what m was made of (compared in
 * constant time); 0 otherwise, and for a NULL m, hash or pin. A 0 says
 * nothing about the PIN: only ev_pin_verify() can refuse one.
 */
int ev_pin_memo_match(const ev_pin_memo *m, const char *hash, const CK_UTF8CHAR *pin,
    CK_ULONG len) EV_MUST_CHECK;

/* Wipe and free. NULL is a no-op. */
void ev_pin_memo_free(ev_pin_memo *m);

#endif
