/*
 * The messages between the module and edgevault-tpm-helper (tpm2_helper.h):
 * one request, one reply, on a socket private to the two processes. Each
 * message is a u32 length and a body of that many bytes (at most
 * EV_WIRE_MAX); a body is a fixed sequence of fields, each a u8, a u32,
 * a u64 (big-endian) or a byte string (a u32 length, then the bytes), with
 * a bound per field. A reader that finds a field out of bounds, a short
 * body or bytes left over refuses the whole message.
 *
 * Request: u8 EV_WIRE_VERSION, u8 op, bytes tcti, u32 primary_handle,
 *   bytes pinned primary name (empty: none), then by op:
 *     SEAL    bytes aad, bytes secret, u32 pcrs, bytes auth (empty: none)
 *     UNSEAL  bytes aad, bytes blob, bytes auth (empty: none)
 *     QUOTE   u32 pcrs, bytes nonce
 *     NAME    nothing
 * Reply: u8 EV_WIRE_VERSION, u64 CK_RV, u32 n, n times (u8 priority,
 *   bytes log line), then by op (empty or 0 unless the CK_RV says so):
 *     SEAL    bytes blob
 *     UNSEAL  u32 the blob's PCR selection, u32 changed PCRs, bytes secret
 *     QUOTE   bytes attest, bytes signature, bytes AK public area
 *     NAME    bytes primary name
 *
 * Bodies live in secure memory (ev_secret): requests carry the secret to
 * seal and auth values, replies the unsealed secret.
 */
#ifndef EV_TPM2_WIRE_H
#define EV_TPM2_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "secmem.h"

#define EV_WIRE_VERSION 1
#define EV_WIRE_MAX 32768      /* a body: the largest either side sends (tpm2_wire.c asserts it) */
#define EV_WIRE_TCTI_MAX 1024  /* a TCTI string */
#define EV_WIRE_AAD_MAX 4096   /* associated data */
#define EV_WIRE_BLOB_MAX 4096  /* a sealed blob (about 1 KiB with 24 PCRs) */
#define EV_WIRE_SECRET_MAX 256 /* a secret to seal (the TPM takes at most 128) */
#define EV_WIRE_LOG_LINES 32   /* log lines carried back */
#define EV_WIRE_LOG_LEN 512    /* one log line */

enum ev_wire_op { EV_WIRE_SEAL = 1, EV_WIRE_UNSEAL, EV_WIRE_QUOTE, EV_WIRE_NAME };

/* A body being written, in secure memory. Any failure is sticky: err. */
struct ev_wbuf {
	ev_secret *buf; /* EV_WIRE_MAX bytes */
	size_t len;
	int err;
};

/* 0, or -1 when secure memory is exhausted. Release with ev_wbuf_free (wipes). */
int ev_wbuf_init(struct ev_wbuf *w);
void ev_wbuf_free(struct ev_wbuf *w);
void ev_wbuf_u8(struct ev_wbuf *w, unsigned v);
void ev_wbuf_u32(struct ev_wbuf *w, uint32_t v);
void ev_wbuf_u64(struct ev_wbuf *w, uint64_t v);
/* A byte string (p may be NULL when len is 0). */
void ev_wbuf_bytes(struct ev_wbuf *w, const void *p, size_t len);
/* len bytes as they are: fields written elsewhere. */
void ev_wbuf_raw(struct ev_wbuf *w, const void *p, size_t len);

/* A body being read: fields in order; any failure is sticky: err. */
struct ev_rbuf {
	const unsigned char *p;
	size_t len, off;
	int err;
};

void ev_rbuf_init(struct ev_rbuf *r, const unsigned char *p, size_t len);
unsigned ev_rbuf_u8(struct ev_rbuf *r);
uint32_t ev_rbuf_u32(struct ev_rbuf *r);
uint64_t ev_rbuf_u64(struct ev_rbuf *r);
/* A byte string of at most max bytes: *p points into the body (NULL when empty). */
void ev_rbuf_bytes(struct ev_rbuf *r, size_t max, const unsigned char **p, size_t *len);
/* 0 when every field read was well formed and the whole body consumed, else -1. */
int ev_rbuf_done(const struct ev_rbuf *r) __attribute__((warn_unused_result));

/*
 * Send a message (length and body) on fd, or receive one into *body
 * (secure memory, the caller's to free; its len the body's), within
 * deadline (CLOCK_MONOTONIC milliseconds, ev_wire_deadline()). fd may be
 * non-blocking. 0, or -1 with errno: ETIMEDOUT past the deadline,
 * EPROTO a length out of bounds, EPIPE/ECONNRESET the peer gone, 0 (a
 * receive) the peer closed before a whole message.
 */
int ev_wire_send(int fd, const struct ev_wbuf *w, int64_t deadline);
int ev_wire_recv(int fd, ev_secret **body, int64_t deadline);

/* Now plus ms, on CLOCK_MONOTONIC, in milliseconds. */
int64_t ev_wire_deadline(int64_t ms);

#endif
