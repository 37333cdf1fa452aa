#include <stdatomic.h>
#include <string.h>

#include <sodium.h>

#include "secmem.h"

static atomic_int ready;

int
ev_secmem_init(void)
{
	/* sodium_init() is thread-safe and answers 1 when already done. */
	if (sodium_init() < 0)
		return -1;
	atomic_store(&ready, 1);
	return 0;
}

ev_secret *
ev_secret_new(size_t len)
{
	ev_secret *s;

	if (len > SIZE_MAX - sizeof(*s) - 32)
		return NULL;
	/* libsodium's allocator must be set up before use, or it aborts. */
	if (!atomic_load(&ready) && ev_secmem_init() != 0)
		return NULL;
	/*
	 * One guarded allocation holds the header and the bytes. sodium_malloc()
	 * puts the block against its guard page, so only a size that is a
	 * multiple of 16 gives an aligned header.
	 */
	s = sodium_malloc((sizeof(*s) + len + 1 + 15) & ~(size_t)15);
	if (s == NULL)
		return NULL;
	s->len = len;
	s->data = (unsigned char *)(s + 1);
	memset(s->data, 0, len + 1);
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
	/* sodium_free() wipes the whole allocation before releasing it. */
	if (s != NULL)
		sodium_free(s);
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
