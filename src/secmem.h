/*
 * Secure memory for secrets: key material, PINs, zone keys.
 *
 * Backed by libsodium's guarded allocations (mlock'ed, guard pages,
 * wiped on free). The owner of an ev_secret frees it with
 * ev_secret_free(), which wipes; nobody else wipes it.
 */
#ifndef EV_SECMEM_H
#define EV_SECMEM_H

#include <stddef.h>

typedef struct ev_secret {
	size_t len;
	unsigned char *data; /* points into the same guarded allocation */
} ev_secret;

/* Initialise libsodium. Safe to call many times and from many threads.
 * Returns 0 on success, -1 if libsodium cannot be initialised. */
int ev_secmem_init(void);

/* A new secret of len bytes (len may be 0), zero-filled.
 * Returns NULL when secure memory is exhausted. */
ev_secret *ev_secret_new(size_t len);

/* A new secret holding a copy of len bytes at p. NULL on failure. */
ev_secret *ev_secret_dup(const void *p, size_t len);

/* Wipe and free. NULL is a no-op. */
void ev_secret_free(ev_secret *s);

/* Constant-time equality of two secrets (1 equal, 0 different). */
int ev_secret_equal(const ev_secret *a, const ev_secret *b);

#endif
