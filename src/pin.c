/*
 * PIN hashing with Argon2id (libsodium's crypto_pwhash_str family). The
 * stored string carries the algorithm, its limits and the salt, so a hash
 * made with other limits still verifies after the configuration changes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* strdup */
#endif

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "log.h"
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

/*
 * The memo is one secret: the key, then the tag. The tag is BLAKE2b-256
 * keyed by the key over a context string, the length of the hash string,
 * the hash string and the PIN: the length keeps the boundary between hash
 * and PIN unambiguous.
 */
#define MEMO_CONTEXT "edgevault pin memo v1"
#define MEMO_KEY_LEN crypto_generichash_KEYBYTES
#define MEMO_TAG_LEN crypto_generichash_BYTES

struct ev_pin_memo {
	ev_secret *s; /* key (MEMO_KEY_LEN) || tag (MEMO_TAG_LEN) */
};

static int
memo_tag(const unsigned char *key, const char *hash, const CK_UTF8CHAR *pin, CK_ULONG len,
	 unsigned char tag[MEMO_TAG_LEN])
{
	crypto_generichash_state st;
	unsigned char num[8];
	size_t hlen = strlen(hash);
	int i, r;

	for (i = 0; i < 8; i++)
		num[i] = (unsigned char)((uint64_t)hlen >> (56 - 8 * i));
	r = crypto_generichash_init(&st, key, MEMO_KEY_LEN, MEMO_TAG_LEN);
	if (r == 0)
		r = crypto_generichash_update(&st, (const unsigned char *)MEMO_CONTEXT,
					      sizeof(MEMO_CONTEXT));
	if (r == 0)
		r = crypto_generichash_update(&st, num, sizeof(num));
	if (r == 0)
		r = crypto_generichash_update(&st, (const unsigned char *)hash, hlen);
	if (r == 0)
		r = crypto_generichash_update(&st, pin, len);
	if (r == 0)
		r = crypto_generichash_final(&st, tag, MEMO_TAG_LEN);
	/* The state has absorbed the PIN. */
	sodium_memzero(&st, sizeof(st));
	return r;
}

CK_RV
ev_pin_memo_new(const char *hash, const CK_UTF8CHAR *pin, CK_ULONG len, ev_pin_memo **out)
{
	ev_pin_memo *m = NULL;
	CK_RV rv = CKR_HOST_MEMORY;

	if (out == NULL)
		return CKR_ARGUMENTS_BAD;
	*out = NULL;
	if (hash == NULL || pin == NULL)
		return CKR_ARGUMENTS_BAD;
	if (len < EV_PIN_MIN_LEN || len > EV_PIN_MAX_LEN)
		return CKR_PIN_LEN_RANGE;
	if (ev_secmem_init() != 0)
		return CKR_GENERAL_ERROR;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		goto out;
	m->s = ev_secret_new(MEMO_KEY_LEN + MEMO_TAG_LEN);
	if (m->s == NULL)
		goto out;
	/* A memo that may be swapped out would put a fast PIN test on disk. */
	if (!ev_secret_is_locked(m->s)) {
		ev_debug("PIN memo: secure memory is not locked (RLIMIT_MEMLOCK); no memo, "
			 "each login checks the PIN with Argon2id");
		rv = CKR_DEVICE_MEMORY;
		goto out;
	}
	crypto_generichash_keygen(m->s->data);
	if (memo_tag(m->s->data, hash, pin, len, m->s->data + MEMO_KEY_LEN) != 0) {
		rv = CKR_GENERAL_ERROR;
		goto out;
	}
	*out = m;
	m = NULL; /* transferred */
	rv = CKR_OK;
out:
	ev_pin_memo_free(m);
	return rv;
}

int
ev_pin_memo_match(const ev_pin_memo *m, const char *hash, const CK_UTF8CHAR *pin, CK_ULONG len)
{
	unsigned char tag[MEMO_TAG_LEN];
	int ok;

	if (m == NULL || hash == NULL || pin == NULL || len < EV_PIN_MIN_LEN ||
	    len > EV_PIN_MAX_LEN)
		return 0;
	ok = memo_tag(m->s->data, hash, pin, len, tag) == 0 &&
	    sodium_memcmp(tag, m->s->data + MEMO_KEY_LEN, sizeof(tag)) == 0;
	sodium_memzero(tag, sizeof(tag));
	return ok;
}

void
ev_pin_memo_free(ev_pin_memo *m)
{
	if (m == NULL)
		return;
	ev_secret_free(m->s);
	free(m);
}
