/* Signed envelopes for integration tests (envelope.h). */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "envelope.h"
#include "harness.h"

#define B64 sodium_base64_VARIANT_ORIGINAL

char *
env_envelope(const char *type, const char *doc, const unsigned char *sk)
{
	size_t dlen = strlen(doc);
	unsigned char sig[crypto_sign_BYTES];
	char sig64[sodium_base64_ENCODED_LEN(crypto_sign_BYTES, B64)];
	char *payload = malloc(sodium_base64_ENCODED_LEN(dlen, B64));
	char *out;

	ck_assert_ptr_nonnull(payload);
	ck_assert_int_eq(crypto_sign_detached(sig, NULL, (const unsigned char *)doc, dlen, sk), 0);
	sodium_bin2base64(payload, sodium_base64_ENCODED_LEN(dlen, B64),
	    (const unsigned char *)doc, dlen, B64);
	sodium_bin2base64(sig64, sizeof(sig64), sig, sizeof(sig), B64);
	out = fmt("{\"type\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\"}\n", type, payload,
	    sig64);
	free(payload);
	return out;
}
