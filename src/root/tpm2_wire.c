/* The module's and the TPM helper's messages (tpm2_wire.h). */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "root.h"
#include "tpm2_wire.h"

/* A byte string on the wire: its length and at most max bytes. */
#define BYTES(max) (4 + (size_t)(max))

/* The largest request: its head, then a seal's fields (the largest op's). */
#define REQUEST_MAX                                                                                \
	(1 + 1 + BYTES(EV_WIRE_TCTI_MAX) + 4 + BYTES(EV_ROOT_NAME_MAX) +                           \
	 BYTES(EV_WIRE_AAD_MAX) + BYTES(EV_WIRE_BLOB_MAX) + BYTES(EV_WIRE_SECRET_MAX) + 4 +        \
	 BYTES(EV_SEAL_AUTH_MAX))
/* The largest reply: its head, every log line, then the largest op's tail. */
#define TAIL_MAX                                                                                   \
	(3 * BYTES(EV_QUOTE_PART_MAX) > BYTES(EV_WIRE_BLOB_MAX) ? 3 * BYTES(EV_QUOTE_PART_MAX)   \
								 : BYTES(EV_WIRE_BLOB_MAX))
#define REPLY_MAX (1 + 8 + 4 + EV_WIRE_LOG_LINES * (1 + BYTES(EV_WIRE_LOG_LEN)) + TAIL_MAX)

_Static_assert(REQUEST_MAX <= EV_WIRE_MAX, "EV_WIRE_MAX: a request may not fit");
_Static_assert(REPLY_MAX <= EV_WIRE_MAX, "EV_WIRE_MAX: a reply may not fit");

int
ev_wbuf_init(struct ev_wbuf *w)
{
	memset(w, 0, sizeof(*w));
	w->buf = ev_secret_new(EV_WIRE_MAX);
	return w->buf != NULL ? 0 : -1;
}

void
ev_wbuf_free(struct ev_wbuf *w)
{
	ev_secret_free(w->buf);
	memset(w, 0, sizeof(*w));
}

static void
put(struct ev_wbuf *w, const void *p, size_t len)
{
	if (w->err || w->buf == NULL || len > EV_WIRE_MAX - w->len) {
		w->err = 1;
		return;
	}
	if (len > 0)
		memcpy(w->buf->data + w->len, p, len);
	w->len += len;
}

void
ev_wbuf_u8(struct ev_wbuf *w, unsigned v)
{
	unsigned char b = (unsigned char)v;

	put(w, &b, 1);
}

void
ev_wbuf_u32(struct ev_wbuf *w, uint32_t v)
{
	unsigned char b[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
			       (unsigned char)(v >> 8), (unsigned char)v };

	put(w, b, sizeof(b));
}

void
ev_wbuf_u64(struct ev_wbuf *w, uint64_t v)
{
	ev_wbuf_u32(w, (uint32_t)(v >> 32));
	ev_wbuf_u32(w, (uint32_t)v);
}

void
ev_wbuf_bytes(struct ev_wbuf *w, const void *p, size_t len)
{
	if (len > EV_WIRE_MAX) {
		w->err = 1;
		return;
	}
	ev_wbuf_u32(w, (uint32_t)len);
	put(w, p, len);
}

void
ev_wbuf_raw(struct ev_wbuf *w, const void *p, size_t len)
{
	put(w, p, len);
}

void
ev_rbuf_init(struct ev_rbuf *r, const unsigned char *p, size_t len)
{
	r->p = p;
	r->len = len;
	r->off = 0;
	r->err = 0;
}

/* The next n bytes, or NULL (sticky) when fewer are left. */
static const unsigned char *
take(struct ev_rbuf *r, size_t n)
{
	const unsigned char *p;

	if (r->err || n > r->len - r->off) {
		r->err = 1;
		return NULL;
	}
	p = r->p + r->off;
	r->off += n;
	return p;
}

unsigned
ev_rbuf_u8(struct ev_rbuf *r)
{
	const unsigned char *p = take(r, 1);

	return p != NULL ? p[0] : 0;
}

uint32_t
ev_rbuf_u32(struct ev_rbuf *r)
{
	const unsigned char *p = take(r, 4);

	if (p == NULL)
		return 0;
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

uint64_t
ev_rbuf_u64(struct ev_rbuf *r)
{
	uint64_t hi = ev_rbuf_u32(r);

	return (hi << 32) | ev_rbuf_u32(r);
}

void
ev_rbuf_bytes(struct ev_rbuf *r, size_t max, const unsigned char **p, size_t *len)
{
	uint32_t n = ev_rbuf_u32(r);

	*p = NULL;
	*len = 0;
	if (r->err)
		return;
	if (n > max) {
		r->err = 1;
		return;
	}
	*p = take(r, n);
	if (*p != NULL && n > 0)
		*len = n;
	else
		*p = NULL;
}

int
ev_rbuf_done(const struct ev_rbuf *r)
{
	return r->err == 0 && r->off == r->len ? 0 : -1;
}

int64_t
ev_wire_deadline(int64_t ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + ms;
}

/* Wait until fd is ready for events, or the deadline: 0, or -1 with errno. */
static int
wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd;
	int64_t left;
	int n;

	for (;;) {
		left = deadline - ev_wire_deadline(0);
		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		pfd.fd = fd;
		pfd.events = events;
		pfd.revents = 0;
		n = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		if (n < 0 && errno != EINTR)
			return -1;
		if (n > 0)
			return 0; /* ready, or an error/hangup the next call reports */
	}
}

static int
send_all(int fd, const unsigned char *p, size_t len, int64_t deadline)
{
	ssize_t n;

	while (len > 0) {
		/* MSG_NOSIGNAL: a peer gone is EPIPE, never a SIGPIPE in the host. */
		n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		if (wait_fd(fd, POLLOUT, deadline) != 0)
			return -1;
	}
	return 0;
}

static int
recv_all(int fd, unsigned char *p, size_t len, int64_t deadline)
{
	ssize_t n;

	while (len > 0) {
		n = recv(fd, p, len, MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == 0) {
			errno = 0; /* the peer closed first */
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		if (wait_fd(fd, POLLIN, deadline) != 0)
			return -1;
	}
	return 0;
}

int
ev_wire_send(int fd, const struct ev_wbuf *w, int64_t deadline)
{
	unsigned char head[4];

	if (w->err || w->buf == NULL || w->len > EV_WIRE_MAX) {
		errno = EPROTO;
		return -1;
	}
	head[0] = (unsigned char)(w->len >> 24);
	head[1] = (unsigned char)(w->len >> 16);
	head[2] = (unsigned char)(w->len >> 8);
	head[3] = (unsigned char)w->len;
	if (send_all(fd, head, sizeof(head), deadline) != 0)
		return -1;
	return send_all(fd, w->buf->data, w->len, deadline);
}

int
ev_wire_recv(int fd, ev_secret **body, int64_t deadline)
{
	unsigned char head[4];
	uint32_t n;
	ev_secret *b;

	*body = NULL;
	if (recv_all(fd, head, sizeof(head), deadline) != 0)
		return -1;
	n = ((uint32_t)head[0] << 24) | ((uint32_t)head[1] << 16) | ((uint32_t)head[2] << 8) |
	    head[3];
	if (n > EV_WIRE_MAX) {
		errno = EPROTO;
		return -1;
	}
	b = ev_secret_new(n);
	if (b == NULL) {
		errno = ENOMEM;
		return -1;
	}
	if (recv_all(fd, b->data, n, deadline) != 0) {
		int e = errno;

		ev_secret_free(b);
		errno = e;
		return -1;
	}
	*body = b;
	return 0;
}
