/*
 * Secure memory for secrets: key material, PINs, zone keys.
 *
 * Secrets come from a pool of locked arenas (src/secmem.c: mlock'ed when
 * the process may lock memory, left out of core dumps, guard pages around
 * each arena), carved into size classes; secrets too large for the pool
 * get libsodium's guarded allocation of their own. The owner of an
 * ev_secret frees it with ev_secret_free(), which wipes; nobody else
 * wipes it.
 */
#ifndef EV_SECMEM_H
#define EV_SECMEM_H

#include <stddef.h>

typedef struct ev_secret {
	size_t len;
	unsigned char *data; /* points into the same allocation, followed by a NUL */
} ev_secret;

/* Initialise libsodium and the pool. Safe to call many times and from many
 * threads. Returns 0 on success, -1 if libsodium cannot be initialised. */
int ev_secmem_init(void);

/*
 * A new secret of len bytes (len may be 0), zero-filled, with one more
 * zero byte after them. Returns NULL when secure memory is exhausted
 * (callers answer CKR_HOST_MEMORY). Thread-safe; usable in a child after
 * fork(). May shrink len afterwards (the whole allocation is still wiped
 * on free), never grow it.
 */
ev_secret *ev_secret_new(size_t len);

/* A new secret holding a copy of len bytes at p. NULL on failure. */
ev_secret *ev_secret_dup(const void *p, size_t len);

/* Wipe and free. NULL is a no-op. */
void ev_secret_free(ev_secret *s);

/*
 * 1 when s lies in memory locked with mlock() (an arena of the pool that
 * could be locked), 0 otherwise: NULL, a pool arena that RLIMIT_MEMLOCK
 * left unlocked, or a secret too large for the pool (its own allocation,
 * whose lock is not known). In a fork child, locks the arenas again first.
 * Secrets that must never reach swap (the PIN memo) are kept only when 1.
 */
int ev_secret_is_locked(const ev_secret *s);

/*
 * Unmap every arena that holds no secret (the pool keeps one per class
 * otherwise). Called from ev_module_fini(), not from a destructor, so a
 * module unloaded after C_Finalize leaves no mapping behind. Secrets still
 * held are untouched; the pool stays usable and maps arenas again as needed.
 */
void ev_secmem_trim(void);

/* Constant-time equality of two secrets (1 equal, 0 different). */
int ev_secret_equal(const ev_secret *a, const ev_secret *b);

/* What the pool holds, for tests and diagnostics (ev_secmem_stats). */
typedef struct ev_secmem_stats {
	size_t arenas;	      /* arenas mapped */
	size_t arena_bytes;   /* their size, guard pages aside */
	size_t locked_bytes;  /* of which mlock'ed */
	size_t in_use;	      /* secrets allocated from arenas */
	size_t large;	      /* secrets too large for the pool (own allocation) */
	size_t lock_failures; /* arenas that could not be locked (RLIMIT_MEMLOCK) */
} ev_secmem_stats;

/* Fill *st with the pool's current figures. */
void ev_secmem_get_stats(ev_secmem_stats *st);

#endif
