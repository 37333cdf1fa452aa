/*
 * The one place that asks OpenSSL's deprecated ENGINE API (tpm2_helper.h):
 * OpenSSL 3 still routes the legacy EVP and low-level calls ESAPI makes
 * to an ENGINE made the default for them.
 *
 * Asked before every TPM operation: about 13 table lookups, each under
 * OpenSSL's global ENGINE lock, so microseconds against the TPM's
 * milliseconds. All of them are kept, not only the EC key method that
 * broke ESAPI with libp11 (doc/key-protection.md): any default ENGINE for
 * what ESAPI uses (RSA and EC for salting, RAND for nonces, HMAC and the
 * digests for session HMACs and policies, AES-CFB for parameter
 * encryption) would see or make the session secrets in the host's engine.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include <stdio.h>

#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#ifndef OPENSSL_NO_ENGINE
#include <openssl/engine.h>
#endif

#include "tpm2_helper.h"

#ifndef OPENSSL_NO_ENGINE
/* e (a functional reference, released here): a default; its id noted. */
static int
found(ENGINE *e, char *id, size_t idlen)
{
	const char *name;

	if (e == NULL)
		return 0;
	name = ENGINE_get_id(e);
	if (id != NULL && idlen > 0)
		snprintf(id, idlen, "%s", name != NULL ? name : "?");
	ENGINE_finish(e);
	return 1;
}
#endif

int
ev_ossl_default_engine(char *id, size_t idlen)
{
#ifndef OPENSSL_NO_ENGINE
	static const int pkeys[] = { EVP_PKEY_EC, EVP_PKEY_RSA, EVP_PKEY_HMAC };
	static const int digests[] = { NID_sha1, NID_sha256, NID_sha384, NID_sha512 };
	static const int ciphers[] = { NID_aes_128_cfb128, NID_aes_192_cfb128,
				       NID_aes_256_cfb128 };
	size_t i;

	if (found(ENGINE_get_default_EC(), id, idlen) ||
	    found(ENGINE_get_default_RSA(), id, idlen) ||
	    found(ENGINE_get_default_RAND(), id, idlen))
		return 1;
	for (i = 0; i < sizeof(pkeys) / sizeof(pkeys[0]); i++)
		if (found(ENGINE_get_pkey_meth_engine(pkeys[i]), id, idlen))
			return 1;
	for (i = 0; i < sizeof(digests) / sizeof(digests[0]); i++)
		if (found(ENGINE_get_digest_engine(digests[i]), id, idlen))
			return 1;
	for (i = 0; i < sizeof(ciphers) / sizeof(ciphers[0]); i++)
		if (found(ENGINE_get_cipher_engine(ciphers[i]), id, idlen))
			return 1;
#else
	(void)id;
	(void)idlen;
#endif
	return 0;
}
