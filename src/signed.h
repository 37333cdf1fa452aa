/*
 * Signed policy documents: revocation lists now, attestation results and
 * reference policies later. A document is any bytes (JSON for ours); it
 * travels in an envelope, itself a small JSON object:
 *
 *   {"type": "<what it is>", "payload": "<base64 of the document>",
 *    "signature": "<base64 of Ed25519 over the payload's exact bytes>"}
 *
 * so the signed bytes are carried exactly, whatever a transport does to
 * whitespace around them. Signing keys are libsodium Ed25519 keys; a key
 * file holds the 32-byte seed in base64 (one line) and is created 0600.
 * Public keys are written in base64 (32 bytes) wherever they are pinned.
 */
#ifndef EV_SIGNED_H
#define EV_SIGNED_H

#include "common.h"
#include "secmem.h"

/* Envelope types. */
#define EV_SIGNED_REVOCATION "edgevault-revocation-list"

/* Largest envelope accepted: a list naming 20,000 keys fits; json-c needs about 20 times this while parsing. */
#define EV_SIGNED_MAX (4u * 1024u * 1024u)

/*
 * Open an envelope: parse it (json-c), check its type, decode and verify
 * the payload against pk. *payload is malloc'ed with a NUL after
 * *plen bytes. Errors, with err naming the problem:
 * CKR_DATA_LEN_RANGE (over EV_SIGNED_MAX), CKR_DATA_INVALID (not an
 * envelope, wrong type, bad base64, unknown member),
 * CKR_SIGNATURE_INVALID (does not verify), CKR_HOST_MEMORY.
 */
CK_RV ev_signed_open(const unsigned char *buf, size_t len, const char *type,
    const unsigned char pk[32], unsigned char **payload, size_t *plen, char *err, size_t errlen)
    EV_MUST_CHECK;

/*
 * Make an envelope of a payload, signed with a seed (32 bytes). *out is a
 * malloc'ed NUL-terminated JSON text ending with a newline.
 */
CK_RV ev_signed_make(const unsigned char *payload, size_t plen, const char *type,
    const ev_secret *seed, char **out, size_t *outlen) EV_MUST_CHECK;

/* A new seed (secure memory) and its public key. */
CK_RV ev_signkey_generate(ev_secret **seed, unsigned char pk[32]) EV_MUST_CHECK;

/* The public key of a seed. */
void ev_signkey_public(const ev_secret *seed, unsigned char pk[32]);

/*
 * Read a key file (CKR_GENERAL_ERROR with err for unreadable, malformed,
 * or readable by group or others) / write one (created 0600, never
 * replacing an existing file).
 */
CK_RV ev_signkey_read(const char *path, ev_secret **seed, char *err, size_t errlen) EV_MUST_CHECK;
CK_RV ev_signkey_write(const char *path, const ev_secret *seed, char *err, size_t errlen)
    EV_MUST_CHECK;

/* A base64 public key (32 bytes). 0 on success, -1 when malformed. */
int ev_pubkey_decode(const char *b64, unsigned char pk[32]) EV_MUST_CHECK;

/* Its base64 text (44 characters and a NUL). */
void ev_pubkey_encode(const unsigned char pk[32], char out[45]);

#endif
