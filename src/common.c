#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

void
ev_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int
ev_utf8_valid(const unsigned char *p, size_t n, int rule)
{
	int printable = rule == EV_UTF8_PRINTABLE;
	size_t i = 0, k, more;
	uint32_t cp;

	while (i < n) {
		if (p[i] < 0x80) {
			if (printable && (p[i] < 0x20 || p[i] == 0x7f))
				return 0;
			i++;
			continue;
		}
		if (p[i] >= 0xc2 && p[i] <= 0xdf) {
			more = 1;
			cp = p[i] & 0x1fu;
		} else if (p[i] >= 0xe0 && p[i] <= 0xef) {
			more = 2;
			cp = p[i] & 0x0fu;
		} else if (p[i] >= 0xf0 && p[i] <= 0xf4) {
			more = 3;
			cp = p[i] & 0x07u;
		} else {
			return 0;
		}
		if (n - i <= more)
			return 0;
		for (k = 1; k <= more; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (p[i + k] & 0x3fu);
		}
		/* U+0080..U+009F are the C1 controls. */
		if ((more == 1 && printable && cp <= 0x9f) ||
		    (more == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (more == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return 0;
		i += more + 1;
	}
	return 1;
}

const char *
ev_iso_time(int64_t t, char buf[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, 32, "@%lld", (long long)t);
	return buf;
}

int
ev_pcr_list_parse(const char *s, uint32_t *mask)
{
	uint32_t m = 0;
	unsigned v;

	if (s == NULL || mask == NULL)
		return -1;
	for (;;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s < '0' || *s > '9')
			return -1;
		v = (unsigned)(*s++ - '0');
		if (v != 0 && *s >= '0' && *s <= '9')
			v = v * 10 + (unsigned)(*s++ - '0');
		if (v >= EV_PCR_COUNT || (m & (1u << v)) != 0)
			return -1;
		m |= 1u << v;
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0')
			break;
		if (*s++ != ',')
			return -1;
	}
	*mask = m;
	return 0;
}

const char *
ev_pcr_list_format(uint32_t mask, char buf[EV_PCR_LIST_MAX])
{
	size_t n = 0;
	unsigned i;

	buf[0] = '\0';
	for (i = 0; i < EV_PCR_COUNT; i++)
		if (mask & (1u << i))
			n += (size_t)snprintf(buf + n, EV_PCR_LIST_MAX - n, "%s%u", n > 0 ? "," : "",
					      i);
	return buf;
}

int
ev_read_all(int fd, size_t max, unsigned char **out, size_t *outlen)
{
	unsigned char *buf = NULL, *nb;
	size_t len = 0, cap = 0, ncap;
	ssize_t r;

	for (;;) {
		/* Room for one byte more and the NUL; more than max is never read. */
		if (cap - len < 2) {
			ncap = cap == 0 ? 65536 : cap * 2;
			if (ncap > max + 2)
				ncap = max + 2;
			nb = realloc(buf, ncap);
			if (nb == NULL) {
				free(buf);
				return -1;
			}
			buf = nb;
			cap = ncap;
		}
		r = read(fd, buf + len, cap - len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			return -1;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > max) {
			free(buf);
			return -2;
		}
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
}
