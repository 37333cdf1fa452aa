#include <string.h>

#include <sodium.h>

#include "secmem.h"

int
ev_secmem_init(void)
{
	/* sodium_init() is thread-safe and answers 1 when already done. */
	return sodium_init() < 0 ? -1 : 0;
}

ev_secret *
ev_secret_new(size_t len)
{
	ev_secret *s;

	if (len > SIZE_MAX - sizeof(*s) - 1)
		return NULL;
	/* One guarded allocation holds the header and the bytes. */
	s = sodium_malloc(sizeof(*s) + len + 1);
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
