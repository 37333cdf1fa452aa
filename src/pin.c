/*
 * PIN hashing with Argon2id (libsodium's crypto_pwhash_str family). The
 * stored string carries the algorithm, its limits and the salt, so a hash
 * made with other limits still verifies after the configuration changes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* strdup */
#endif

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "pin.h"
#include "secmem.h"

/*
 * The caller's PIN buffer is not ours and need not be NUL-terminated:
 * libsodium gets a NUL-terminated copy in secure memory, wiped on free,
 * so no stray copy of the PIN is left in ordinary memory.
 */
static ev_secret *
pin_copy(const CK_UTF8CHAR *pin, CK_ULONG len)
{
	ev_secret *s = ev_secret_new((size_t)len + 1);

	if (s == NULL)
		return NULL;
	memcpy(s->data, pin, len);
	s->data[len] = '\0';
	s->len = len; /* the terminator stays inside the allocation */
	return s;
}

CK_RV
ev_pin_hash(const CK_UTF8CHAR *pin, CK_ULONG len, unsigned long long ops, size_t mem, char **out)
{
	char hash[crypto_pwhash_STRBYTES];
	ev_secret *s = NULL;
	CK_RV rv = CKR_HOST_MEMORY;

	if (out == NULL)
		return CKR_ARGUMENTS_BAD;
	*out = NULL;
	if (len < EV_PIN_MIN_LEN || len > EV_PIN_MAX_LEN)
		return CKR_PIN_LEN_RANGE;
	if (pin == NULL)
		return CKR_ARGUMENTS_BAD;
	if (ev_secmem_init() != 0)
		return CKR_GENERAL_ERROR;
	s = pin_copy(pin, len);
	if (s == NULL)
		goto out;
	/* Fails only when the memory limit cannot be allocated (or limits are
	 * out of range, which the configuration loader already refuses). */
	if (crypto_pwhash_str_alg(hash, (const char *)s->data, s->len, ops, mem,
				  crypto_pwhash_ALG_ARGON2ID13) != 0)
		goto out;
	*out = strdup(hash);
	if (*out == NULL)
		goto out;
	rv = CKR_OK;
out:
	ev_secret_free(s);
	return rv;
}

int
ev_pin_verify(const char *hash, const CK_UTF8CHAR *pin, CK_ULONG len)
{
	ev_secret *s;
	int ok;

	if (hash == NULL || pin == NULL || len < EV_PIN_MIN_LEN || len > EV_PIN_MAX_LEN)
		return 0;
	if (ev_secmem_init() != 0)
		return 0;
	s = pin_copy(pin, len);
	if (s == NULL)
		return 0;
	/* crypto_pwhash_str_verify compares in constant time. */
	ok = crypto_pwhash_str_verify(hash, (const char *)s->data, s->len) == 0;
	ev_secret_free(s);
	return ok;
}
