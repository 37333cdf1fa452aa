/*
 * Secure memory: a pool of locked arenas carved into size classes.
 *
 * Why a pool. A guarded allocation per secret (sodium_malloc) costs a
 * mapping with a guard page on each side, three or four kernel mappings,
 * three system calls to make and two to undo, and at least three pages of
 * address space and a locked page for a 32-byte key. A process holding
 * some 16,000 secrets reaches vm.max_map_count (65530) and every further
 * secret fails (CKR_HOST_MEMORY after tens of thousands of keys), and the
 * system calls dominated key generation and unwrapping.
 *
 * The pool maps arenas (16 KiB growing to 1 MiB) once, each between two
 * PROT_NONE guard pages, locked with mlock() when RLIMIT_MEMLOCK allows
 * (else used unlocked, said once with ev_warn) and left out of core dumps
 * (MADV_DONTDUMP). Each arena serves one size class; a chunk holds a
 * header, the ev_secret and its bytes. A chunk is wiped when freed and
 * again when handed out anew. Each class has its own lock, held only to
 * take or give back a chunk (wiping happens outside it). An arena that
 * becomes empty is unmapped, except one kept per class so that a
 * make/free cycle does not map and unmap each time; ev_secmem_trim()
 * (from C_Finalize) gives those back too. Secrets larger than
 * the largest class keep a guarded sodium_malloc() allocation each.
 *
 * What the guard pages no longer protect, and why that is acceptable:
 * with one guard page per secret, a read or write running off the end of
 * a secret faulted at once; in the pool it reaches the neighbouring
 * secret of the same arena instead. Every access to a secret here is
 * bounded by its len, through OpenSSL and libsodium calls that take an
 * explicit length, so such an overrun is a bug we can test for, not an
 * input a caller controls; the guard pages around each arena still stop a
 * linear overrun from ordinary heap memory into secrets and out of them
 * into the heap; and a header tag checked on free detects a freed pointer
 * that was never a secret, a header overwritten by an underrun and a
 * double free while the arena is still mapped (logged, the chunk left
 * alone, the host not aborted). A double free after the arena was
 * unmapped (its last secret freed) reads unmapped memory: that is not
 * detected, it faults.
 * The per-secret guards could not be kept at the key counts the module
 * must hold, which is the stronger requirement.
 *
 * fork(): the pool's locks are taken around fork (pthread_atfork), so a
 * child never inherits one held by a thread that no longer exists. Memory
 * locks are not inherited by a child: it locks its arenas again on its
 * first allocation (a child that only execs never pays for it).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "secmem.h"

/* The header before every ev_secret, in the pool or not. */
struct chunk_hdr {
	_Alignas(16) struct arena *arena; /* NULL: a large secret on sodium_malloc */
	uint32_t cls;
	uint32_t tag; /* chunk_tag(): set while the chunk is allocated */
};

/* Header and ev_secret; the bytes follow, 16-byte aligned. */
#define HDR_LEN ((sizeof(struct chunk_hdr) + sizeof(ev_secret) + 15) & ~(size_t)15)

/* Chunk sizes, header included. Larger secrets go to sodium_malloc. */
static const size_t class_size[] = {64,	 96,  128, 160,	 192,  256,  320,  384,
				    512, 640, 768, 1024, 1536, 2048, 3072, 4096};
#define NCLASS (sizeof(class_size) / sizeof(class_size[0]))
#define LARGE_CLASS UINT32_MAX

#define ARENA_MIN ((size_t)16 * 1024)
#define ARENA_MAX ((size_t)1024 * 1024)

/* A link in one of a class's two lists of arenas. */
struct node {
	struct node *next, *prev;
	struct arena *arena;
};

struct arena {
	unsigned char *base; /* the first chunk; a guard page before it */
	size_t size;	     /* bytes between the two guard pages */
	size_t chunk;	     /* chunk size of its class */
	size_t nchunks;	     /* chunks it holds */
	size_t fresh;	     /* chunks handed out at least once */
	size_t used;	     /* chunks allocated now */
	void *free;	     /* freed chunks, linked through their first word */
	uint32_t cls;
	int locked;	  /* mlock'ed */
	int partial;	  /* on its class's partial list */
	struct node all;  /* in all arenas of the class */
	struct node part; /* in the arenas with a free chunk */
};

struct sclass {
	pthread_mutex_t lock;
	struct node *all;
	struct node *partial;
	size_t narenas;
	size_t nempty; /* arenas with no chunk allocated */
};

static struct sclass classes[NCLASS];
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static atomic_int ready;  /* 1: pool and libsodium usable; -1: init failed */
static atomic_int relock; /* set in a fork child: lock the arenas again */
static atomic_int warned; /* the mlock warning was given */
static atomic_size_t large_count, lock_failures;
static size_t page_size;
static uint64_t tag_key;

/* Binds a header's fields to its address, keyed per process. */
static uint32_t
chunk_tag(const struct chunk_hdr *h)
{
	uint64_t x = (uint64_t)(uintptr_t)h ^ ((uint64_t)(uintptr_t)h->arena << 17) ^
		     ((uint64_t)h->cls * 0x9e3779b97f4a7c15u) ^ tag_key;

	x ^= x >> 29;
	x *= 0xbf58476d1ce4e5b9u;
	x ^= x >> 32;
	return (uint32_t)x;
}

static void
prepare_fork(void)
{
	size_t i;

	for (i = 0; i < NCLASS; i++)
		(void)pthread_mutex_lock(&classes[i].lock);
}

static void
parent_fork(void)
{
	size_t i;

	for (i = NCLASS; i > 0; i--)
		(void)pthread_mutex_unlock(&classes[i - 1].lock);
}

static void
child_fork(void)
{
	parent_fork();
	atomic_store(&relock, 1);
}

static void
pool_init(void)
{
	long ps = sysconf(_SC_PAGESIZE);
	size_t i;

	if (sodium_init() < 0 || ps <= 0) {
		atomic_store(&ready, -1);
		return;
	}
	page_size = (size_t)ps;
	randombytes_buf(&tag_key, sizeof(tag_key));
	for (i = 0; i < NCLASS; i++) {
		if (pthread_mutex_init(&classes[i].lock, NULL) != 0) {
			atomic_store(&ready, -1);
			return;
		}
	}
	/* Without the handlers a fork during an allocation would hang the child. */
	if (pthread_atfork(prepare_fork, parent_fork, child_fork) != 0) {
		atomic_store(&ready, -1);
		return;
	}
	atomic_store(&ready, 1);
}

int
ev_secmem_init(void)
{
	if (pthread_once(&pool_once, pool_init) != 0)
		return -1;
	return atomic_load(&ready) == 1 ? 0 : -1;
}

static void
note_lock_failure(size_t len)
{
	atomic_fetch_add(&lock_failures, 1);
	if (atomic_exchange(&warned, 1) == 0)
		ev_warn("secure memory: cannot lock %zu bytes in memory (%m); secrets may be "
			"swapped out: raise RLIMIT_MEMLOCK (ulimit -l)",
			len);
}

static void
arena_lock_memory(struct arena *a)
{
	a->locked = mlock(a->base, a->size) == 0;
	if (!a->locked)
		note_lock_failure(a->size);
}

static struct arena *
arena_new(uint32_t cls, size_t narenas)
{
	size_t chunk = class_size[cls], size;
	struct arena *a;
	unsigned char *map;

	size = narenas < 7 ? ARENA_MIN << narenas : ARENA_MAX;
	if (size > ARENA_MAX)
		size = ARENA_MAX;
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return NULL;
	map = mmap(NULL, size + 2 * page_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED) {
		free(a);
		return NULL;
	}
	if (mprotect(map + page_size, size, PROT_READ | PROT_WRITE) != 0) {
		(void)munmap(map, size + 2 * page_size);
		free(a);
		return NULL;
	}
	a->base = map + page_size;
	a->size = size;
	a->chunk = chunk;
	a->nchunks = size / chunk;
	a->cls = cls;
	a->all.arena = a->part.arena = a;
#ifdef MADV_DONTDUMP
	(void)madvise(a->base, a->size, MADV_DONTDUMP); /* best effort: older kernels */
#endif
	arena_lock_memory(a);
	return a;
}

static void
arena_unmap(struct arena *a)
{
	/* Every chunk was wiped when freed; munmap also unlocks. */
	(void)munmap(a->base - page_size, a->size + 2 * page_size);
	free(a);
}

static void
node_add(struct node **head, struct node *n)
{
	n->prev = NULL;
	n->next = *head;
	if (*head != NULL)
		(*head)->prev = n;
	*head = n;
}

static void
node_remove(struct node **head, struct node *n)
{
	if (n->prev != NULL)
		n->prev->next = n->next;
	else
		*head = n->next;
	if (n->next != NULL)
		n->next->prev = n->prev;
	n->next = n->prev = NULL;
}

static void
partial_add(struct sclass *c, struct arena *a)
{
	node_add(&c->partial, &a->part);
	a->partial = 1;
}

static void
partial_remove(struct sclass *c, struct arena *a)
{
	node_remove(&c->partial, &a->part);
	a->partial = 0;
}

/* In a fork child: memory locks are not inherited, take them again. */
static void
relock_after_fork(void)
{
	struct node *n;
	size_t i;

	for (i = 0; i < NCLASS; i++) {
		(void)pthread_mutex_lock(&classes[i].lock);
		for (n = classes[i].all; n != NULL; n = n->next)
			arena_lock_memory(n->arena);
		(void)pthread_mutex_unlock(&classes[i].lock);
	}
}

/* A zeroed chunk of class cls, its header filled in; NULL when out of memory. */
static struct chunk_hdr *
chunk_alloc(uint32_t cls)
{
	struct sclass *c = &classes[cls];
	struct arena *a, *made = NULL;
	struct chunk_hdr *h;
	size_t n;
	int reused;

	(void)pthread_mutex_lock(&c->lock);
	while (c->partial == NULL) {
		if (made != NULL) {
			node_add(&c->all, &made->all);
			partial_add(c, made);
			c->narenas++;
			c->nempty++;
			made = NULL; /* transferred */
			continue;
		}
		/* Map outside the lock; another thread may add one meanwhile. */
		n = c->narenas;
		(void)pthread_mutex_unlock(&c->lock);
		made = arena_new(cls, n);
		if (made == NULL)
			return NULL;
		(void)pthread_mutex_lock(&c->lock);
	}
	a = c->partial->arena;
	if (a->used == 0)
		c->nempty--;
	if (a->free != NULL) {
		h = a->free;
		memcpy(&a->free, h, sizeof(void *));
		reused = 1;
	} else {
		h = (struct chunk_hdr *)(a->base + a->fresh++ * a->chunk);
		reused = 0;
	}
	a->used++;
	if (a->free == NULL && a->fresh == a->nchunks)
		partial_remove(c, a);
	(void)pthread_mutex_unlock(&c->lock);
	if (made != NULL)
		arena_unmap(made); /* another thread's arena came first */
	/* Fresh chunks are still the kernel's zero pages. */
	if (reused)
		sodium_memzero(h, a->chunk);
	h->arena = a;
	h->cls = cls;
	h->tag = chunk_tag(h);
	return h;
}

static void
chunk_free(struct chunk_hdr *h)
{
	struct arena *a = h->arena, *doomed = NULL;
	struct sclass *c = &classes[a->cls];

	sodium_memzero(h, a->chunk);
	(void)pthread_mutex_lock(&c->lock);
	memcpy(h, &a->free, sizeof(void *));
	a->free = h;
	if (!a->partial)
		partial_add(c, a);
	if (--a->used == 0) {
		if (c->nempty > 0) {
			/* One empty arena is kept per class: give this one back. */
			partial_remove(c, a);
			node_remove(&c->all, &a->all);
			c->narenas--;
			doomed = a;
		} else {
			c->nempty++;
		}
	}
	(void)pthread_mutex_unlock(&c->lock);
	if (doomed != NULL)
		arena_unmap(doomed);
}

ev_secret *
ev_secret_new(size_t len)
{
	struct chunk_hdr *h;
	ev_secret *s;
	size_t need;
	uint32_t cls;

	/* libsodium's allocator must be set up before use, or it aborts. */
	if (atomic_load_explicit(&ready, memory_order_acquire) != 1 && ev_secmem_init() != 0)
		return NULL;
	if (len > SIZE_MAX - HDR_LEN - 16)
		return NULL;
	if (atomic_load_explicit(&relock, memory_order_relaxed) && atomic_exchange(&relock, 0))
		relock_after_fork();
	need = HDR_LEN + len + 1; /* the NUL after the bytes */
	for (cls = 0; cls < NCLASS && class_size[cls] < need; cls++)
		;
	if (cls < NCLASS) {
		h = chunk_alloc(cls);
		if (h == NULL)
			return NULL;
	} else {
		/* sodium_malloc() wipes what it frees, not what it hands out. */
		need = (need + 15) & ~(size_t)15;
		h = sodium_malloc(need);
		if (h == NULL)
			return NULL;
		memset(h, 0, need);
		h->arena = NULL;
		h->cls = LARGE_CLASS;
		h->tag = chunk_tag(h);
		atomic_fetch_add(&large_count, 1);
	}
	s = (ev_secret *)((unsigned char *)h + sizeof(*h));
	s->len = len;
	s->data = (unsigned char *)h + HDR_LEN;
	return s;
}

ev_secret *
ev_secret_dup(const void *p, size_t len)
{
	ev_secret *s = ev_secret_new(len);

	if (s != NULL && len > 0)
		memcpy(s->data, p, len);
	return s;
}

void
ev_secret_free(ev_secret *s)
{
	struct chunk_hdr *h;

	if (s == NULL)
		return;
	h = (struct chunk_hdr *)((unsigned char *)s - sizeof(*h));
	if (h->tag != chunk_tag(h) || (h->arena == NULL) != (h->cls == LARGE_CLASS) ||
	    (h->arena != NULL && h->arena->cls != h->cls)) {
		/* Never abort the host: leave the memory alone, say so. */
		ev_error("secure memory: freeing %p, which is not an allocated secret", (void *)s);
		return;
	}
	if (h->arena == NULL) {
		h->tag = 0;
		atomic_fetch_sub(&large_count, 1);
		sodium_free(h); /* wipes the whole allocation */
		return;
	}
	chunk_free(h);
}

int
ev_secret_equal(const ev_secret *a, const ev_secret *b)
{
	if (a == NULL || b == NULL || a->len != b->len)
		return 0;
	if (a->len == 0)
		return 1;
	return sodium_memcmp(a->data, b->data, a->len) == 0;
}

int
ev_secret_is_locked(const ev_secret *s)
{
	const struct chunk_hdr *h;
	struct sclass *c;
	int locked;

	if (s == NULL)
		return 0;
	h = (const struct chunk_hdr *)((const unsigned char *)s - sizeof(*h));
	/* sodium_malloc() ignores an mlock failure: not known to be locked. */
	if (h->arena == NULL)
		return 0;
	/* In a fork child the flags are the parent's until the arenas are locked again. */
	if (atomic_load_explicit(&relock, memory_order_relaxed) && atomic_exchange(&relock, 0))
		relock_after_fork();
	c = &classes[h->arena->cls];
	(void)pthread_mutex_lock(&c->lock);
	locked = h->arena->locked;
	(void)pthread_mutex_unlock(&c->lock);
	return locked;
}

void
ev_secmem_trim(void)
{
	struct node *n, *next;
	struct arena *a, *doomed = NULL;
	struct sclass *c;
	size_t i;

	if (atomic_load(&ready) != 1)
		return;
	for (i = 0; i < NCLASS; i++) {
		c = &classes[i];
		(void)pthread_mutex_lock(&c->lock);
		for (n = c->all; n != NULL; n = next) {
			next = n->next;
			a = n->arena;
			if (a->used != 0)
				continue;
			if (a->partial)
				partial_remove(c, a);
			node_remove(&c->all, &a->all);
			c->narenas--;
			c->nempty--;
			/* Chained through the part node, unused once off the lists. */
			a->part.next = doomed != NULL ? &doomed->part : NULL;
			doomed = a;
		}
		(void)pthread_mutex_unlock(&c->lock);
		while (doomed != NULL) {
			a = doomed;
			doomed = a->part.next != NULL ? a->part.next->arena : NULL;
			arena_unmap(a);
		}
	}
}

void
ev_secmem_get_stats(ev_secmem_stats *st)
{
	struct arena *a;
	struct node *n;
	size_t i;

	memset(st, 0, sizeof(*st));
	if (ev_secmem_init() != 0)
		return;
	for (i = 0; i < NCLASS; i++) {
		(void)pthread_mutex_lock(&classes[i].lock);
		for (n = classes[i].all; n != NULL; n = n->next) {
			a = n->arena;
			st->arenas++;
			st->arena_bytes += a->size;
			st->locked_bytes += a->locked ? a->size : 0;
			st->in_use += a->used;
		}
		(void)pthread_mutex_unlock(&classes[i].lock);
	}
	st->large = atomic_load(&large_count);
	st->lock_failures = atomic_load(&lock_failures);
}
