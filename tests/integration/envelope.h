/*
 * Signed envelopes for integration tests (src/signed.h's format), made
 * with libsodium alone, as a verifier off the device would make them.
 */
#ifndef EV_IT_ENVELOPE_H
#define EV_IT_ENVELOPE_H

/*
 * {"type": type, "payload": base64 of doc, "signature": base64 of
 * Ed25519 by sk (64 bytes) over doc's exact bytes}, malloc'ed (the test
 * fails when it cannot be made).
 */
char *env_envelope(const char *type, const char *doc, const unsigned char *sk);

#endif
