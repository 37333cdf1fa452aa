#include <string.h>

#include <openssl/err.h>

#include "common.h"

void
ev_padded_copy(CK_UTF8CHAR *dst, size_t dstlen, const char *src)
{
	size_t n = src ? strlen(src) : 0;

	if (n > dstlen)
		n = dstlen;
	memset(dst, ' ', dstlen);
	if (n > 0)
		memcpy(dst, src, n);
}

void
ev_errq_mark(void)
{
	ERR_set_mark();
}

void
ev_errq_restore(void)
{
	ERR_pop_to_mark();
}
