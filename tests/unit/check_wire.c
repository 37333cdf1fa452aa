/*
 * Unit tests of the module's and the TPM helper's messages
 * (src/root/tpm2_wire.c): bodies read field by field, refused when short,
 * out of bounds or with bytes left over; messages over a socketpair.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "root/root.h"
#include "testutil.h"
#include "root/tpm2_wire.h"

#define SOON 5000 /* ms: everything here is local */

START_TEST(test_fields_round_trip)
{
	struct ev_wbuf w;
	struct ev_rbuf r;
	const unsigned char *p;
	size_t n;

	ck_assert_int_eq(ev_wbuf_init(&w), 0);
	ev_wbuf_u8(&w, 7);
	ev_wbuf_u32(&w, 0x01020304);
	ev_wbuf_u64(&w, UINT64_C(0x1122334455667788));
	ev_wbuf_bytes(&w, "abc", 3);
	ev_wbuf_bytes(&w, NULL, 0);
	ck_assert_int_eq(w.err, 0);
	ev_rbuf_init(&r, w.buf->data, w.len);
	ck_assert_uint_eq(ev_rbuf_u8(&r), 7);
	ck_assert_uint_eq(ev_rbuf_u32(&r), 0x01020304);
	ck_assert(ev_rbuf_u64(&r) == UINT64_C(0x1122334455667788));
	ev_rbuf_bytes(&r, 3, &p, &n);
	ck_assert_uint_eq(n, 3);
	ck_assert_mem_eq(p, "abc", 3);
	ev_rbuf_bytes(&r, 3, &p, &n);
	ck_assert_ptr_null(p);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(ev_rbuf_done(&r), 0);
	ev_wbuf_free(&w);
}
END_TEST

START_TEST(test_truncated_body)
{
	struct ev_wbuf w;
	struct ev_rbuf r;
	const unsigned char *p;
	size_t n;

	ck_assert_int_eq(ev_wbuf_init(&w), 0);
	ev_wbuf_bytes(&w, "abcdef", 6);
	/* Every proper prefix is refused. */
	for (size_t cut = 0; cut < w.len; cut++) {
		ev_rbuf_init(&r, w.buf->data, cut);
		ev_rbuf_bytes(&r, 16, &p, &n);
		ck_assert_ptr_null(p);
		ck_assert_uint_eq(n, 0);
		ck_assert_int_eq(ev_rbuf_done(&r), -1);
	}
	ev_wbuf_free(&w);
}
END_TEST

START_TEST(test_length_over_bound)
{
	static const unsigned char body[] = { 0, 0, 0, 5, 'a', 'b', 'c', 'd', 'e' };
	struct ev_rbuf r;
	const unsigned char *p;
	size_t n;

	ev_rbuf_init(&r, body, sizeof(body));
	ev_rbuf_bytes(&r, 4, &p, &n);
	ck_assert_ptr_null(p);
	ck_assert_int_eq(ev_rbuf_done(&r), -1);
	/* The error is sticky: later fields read nothing. */
	ck_assert_uint_eq(ev_rbuf_u8(&r), 0);
	ck_assert_int_eq(ev_rbuf_done(&r), -1);
}
END_TEST

START_TEST(test_uint32_max_length)
{
	static const unsigned char body[] = { 0xff, 0xff, 0xff, 0xff, 'a' };
	struct ev_rbuf r;
	const unsigned char *p;
	size_t n;

	ev_rbuf_init(&r, body, sizeof(body));
	ev_rbuf_bytes(&r, SIZE_MAX, &p, &n); /* no bound: the body's end still holds */
	ck_assert_ptr_null(p);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(ev_rbuf_done(&r), -1);
}
END_TEST

START_TEST(test_bytes_left_over)
{
	static const unsigned char body[] = { 1, 2 };
	struct ev_rbuf r;

	ev_rbuf_init(&r, body, sizeof(body));
	ck_assert_uint_eq(ev_rbuf_u8(&r), 1);
	ck_assert_int_eq(ev_rbuf_done(&r), -1);
	ck_assert_uint_eq(ev_rbuf_u8(&r), 2);
	ck_assert_int_eq(ev_rbuf_done(&r), 0);
}
END_TEST

START_TEST(test_wbuf_overflow_refused)
{
	static unsigned char big[EV_WIRE_MAX];
	struct ev_wbuf w;
	int sv[2];

	ck_assert_int_eq(ev_wbuf_init(&w), 0);
	ev_wbuf_u8(&w, 1);
	ev_wbuf_raw(&w, big, sizeof(big)); /* one byte too many */
	ck_assert_int_ne(w.err, 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	errno = 0;
	ck_assert_int_eq(ev_wire_send(sv[0], &w, ev_wire_deadline(SOON)), -1);
	ck_assert_int_eq(errno, EPROTO);
	close(sv[0]);
	close(sv[1]);
	ev_wbuf_free(&w);
}
END_TEST

/* The largest reply: every log line at its longest, and a quote's parts at theirs. */
START_TEST(test_full_reply_fits)
{
	static unsigned char part[EV_QUOTE_PART_MAX];
	char line[EV_WIRE_LOG_LEN];
	struct ev_wbuf w;
	struct ev_rbuf r;
	ev_secret *body = NULL;
	const unsigned char *p;
	size_t n;
	int sv[2], i;

	memset(line, 'x', sizeof(line));
	ck_assert_int_eq(ev_wbuf_init(&w), 0);
	ev_wbuf_u8(&w, EV_WIRE_VERSION);
	ev_wbuf_u64(&w, 0);
	ev_wbuf_u32(&w, EV_WIRE_LOG_LINES);
	for (i = 0; i < EV_WIRE_LOG_LINES; i++) {
		ev_wbuf_u8(&w, 7);
		ev_wbuf_bytes(&w, line, sizeof(line));
	}
	for (i = 0; i < 3; i++)
		ev_wbuf_bytes(&w, part, sizeof(part));
	ck_assert_int_eq(w.err, 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_int_eq(ev_wire_send(sv[0], &w, ev_wire_deadline(SOON)), 0);
	ck_assert_int_eq(ev_wire_recv(sv[1], &body, ev_wire_deadline(SOON)), 0);
	ck_assert_uint_eq(body->len, w.len);
	ev_rbuf_init(&r, body->data, body->len);
	ck_assert_uint_eq(ev_rbuf_u8(&r), EV_WIRE_VERSION);
	(void)ev_rbuf_u64(&r);
	ck_assert_uint_eq(ev_rbuf_u32(&r), EV_WIRE_LOG_LINES);
	for (i = 0; i < EV_WIRE_LOG_LINES; i++) {
		(void)ev_rbuf_u8(&r);
		ev_rbuf_bytes(&r, EV_WIRE_LOG_LEN, &p, &n);
	}
	for (i = 0; i < 3; i++)
		ev_rbuf_bytes(&r, EV_QUOTE_PART_MAX, &p, &n);
	ck_assert_int_eq(ev_rbuf_done(&r), 0);
	ev_secret_free(body);
	close(sv[0]);
	close(sv[1]);
	ev_wbuf_free(&w);
}
END_TEST

/* A length header past EV_WIRE_MAX, or UINT32_MAX, is refused before any allocation. */
START_TEST(test_recv_length_over_bound)
{
	static const uint32_t lens[] = { EV_WIRE_MAX + 1, UINT32_MAX };
	unsigned char head[4];
	ev_secret *body = (ev_secret *)1;
	int sv[2];
	size_t i;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		head[0] = (unsigned char)(lens[i] >> 24);
		head[1] = (unsigned char)(lens[i] >> 16);
		head[2] = (unsigned char)(lens[i] >> 8);
		head[3] = (unsigned char)lens[i];
		ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		ck_assert_int_eq(write(sv[0], head, sizeof(head)), 4);
		errno = 0;
		ck_assert_int_eq(ev_wire_recv(sv[1], &body, ev_wire_deadline(SOON)), -1);
		ck_assert_int_eq(errno, EPROTO);
		ck_assert_ptr_null(body);
		close(sv[0]);
		close(sv[1]);
	}
}
END_TEST

/* The peer closing mid-body: -1, errno 0; a peer silent past the deadline: ETIMEDOUT. */
START_TEST(test_recv_short_and_silent)
{
	static const unsigned char msg[] = { 0, 0, 0, 8, 1, 2, 3 };
	ev_secret *body = NULL;
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_int_eq(write(sv[0], msg, sizeof(msg)), (ssize_t)sizeof(msg));
	close(sv[0]);
	errno = EINVAL;
	ck_assert_int_eq(ev_wire_recv(sv[1], &body, ev_wire_deadline(SOON)), -1);
	ck_assert_int_eq(errno, 0);
	ck_assert_ptr_null(body);
	close(sv[1]);

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_int_eq(ev_wire_recv(sv[1], &body, ev_wire_deadline(50)), -1);
	ck_assert_int_eq(errno, ETIMEDOUT);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

static Suite *
wire_suite(void)
{
	Suite *s = suite_create("tpm2_wire");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_fields_round_trip);
	tcase_add_test(tc, test_truncated_body);
	tcase_add_test(tc, test_length_over_bound);
	tcase_add_test(tc, test_uint32_max_length);
	tcase_add_test(tc, test_bytes_left_over);
	tcase_add_test(tc, test_wbuf_overflow_refused);
	tcase_add_test(tc, test_full_reply_fits);
	tcase_add_test(tc, test_recv_length_over_bound);
	tcase_add_test(tc, test_recv_short_and_silent);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(wire_suite());
}
