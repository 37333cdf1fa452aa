/*
 * Shared definitions for the edgevault module's internals.
 */
#ifndef EV_COMMON_H
#define EV_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "pkcs11/pkcs11.h"

#define EV_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* For verify, unwrap and check functions: ignoring the answer is a bug. */
#define EV_MUST_CHECK __attribute__((warn_unused_result))

/*
 * Internal "not found" answer of lookups in the store and the caches.
 * Never returned to a PKCS#11 caller: every caller maps it to the CKR its
 * function defines (CKR_OBJECT_HANDLE_INVALID, CKR_SLOT_ID_INVALID, ...).
 */
#define EVR_NOT_FOUND (CKR_VENDOR_DEFINED | 0x45560001UL)

/*
 * OpenSSL's per-thread error queue belongs to the host: a failed
 * verification or import must not leave entries that the host reads as the
 * failure of its own next call (nginx fails a TLS handshake on a stale
 * entry). Calls that may reach OpenSSL mark the queue on entry and pop back
 * to the mark on return.
 */
void ev_errq_mark(void);
void ev_errq_restore(void);

/*
 * Format a message into err (at most errlen bytes, always terminated, cut
 * short if longer), as snprintf does. NULL err or errlen 0: nothing is
 * written, so callers pass their caller's buffer on without checking it.
 */
void ev_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Unix time t as ISO 8601 UTC ("2026-11-23T10:40:00Z"), "@t" when it has no calendar date; buf. */
const char *ev_iso_time(int64_t t, char buf[32]);

/* What ev_utf8_valid accepts besides well-formed UTF-8. */
#define EV_UTF8_ANY 0       /* any character, controls and NUL included */
#define EV_UTF8_PRINTABLE 1 /* no control character (C0, DEL, C1), so no NUL */

/*
 * Whether n bytes are well-formed UTF-8 (shortest forms, no surrogates,
 * nothing above U+10FFFF), with what rule says of control characters:
 * 1 or 0.
 */
int ev_utf8_valid(const unsigned char *p, size_t n, int rule);

/*
 * All of a file descriptor, at most max bytes: 0 with *out (malloc'ed,
 * with a NUL after its *outlen bytes, the caller's); -1 with errno when
 * reading or allocating fails; -2 when there are more than max bytes.
 */
int ev_read_all(int fd, size_t max, unsigned char **out, size_t *outlen) EV_MUST_CHECK;

/* Copy a C string into a blank-padded, unterminated PKCS#11 text field. */
void ev_padded_copy(CK_UTF8CHAR *dst, size_t dstlen, const char *src);

/*
 * A set of PCRs (TPM platform configuration registers 0..23, the PC
 * Client profile's) as a mask: bit i is PCR i.
 */
#define EV_PCR_COUNT 24
#define EV_PCR_LIST_MAX 64 /* "0,1,...,23" and a NUL */

/*
 * Read "0,1,7": PCR indexes in decimal (no sign, no leading zero),
 * separated by commas, blanks allowed around each, any order, none
 * twice, at least one. 0 with *mask, or -1.
 */
int ev_pcr_list_parse(const char *s, uint32_t *mask) EV_MUST_CHECK;

/* The set as "0,1,7" (ascending), into buf; "" for none. */
const char *ev_pcr_list_format(uint32_t mask, char buf[EV_PCR_LIST_MAX]);

#endif
