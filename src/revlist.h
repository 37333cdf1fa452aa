/*
 * Revocation lists: the document inside a signed envelope
 * (EV_SIGNED_REVOCATION). A list is JSON:
 *
 *   {"version": 1,
 *    "device": "edge-0042",            the device it is for ([device] id)
 *    "sequence": 7,                    > every list applied before (1 .. 2^53)
 *    "issued_at": 1795430400,          unix time
 *    "entries": [
 *      {"kind": "key", "zone": 1, "label": "web", "reason": "compromised"},
 *      {"kind": "key", "zone": 1, "label": "api", "id": "0a1b", "generation": 2,
 *       "reason": "superseded"},
 *      {"kind": "zone", "zone": 2, "reason": "decommissioned"},
 *      {"kind": "device", "reason": "stolen"}]}
 *
 * "zone" is the zone id (= slot ID); "id" is CKA_ID in hex; "generation"
 * is >= 1; "label" is 1..255 bytes of UTF-8; "reason" is required, 1..256
 * bytes. Unknown members, missing ones, wrong types and out-of-range
 * numbers make the list malformed: a typo must not revoke less than the
 * authority meant. An empty entries array is allowed (a list that only
 * moves the sequence on). At most EV_REVLIST_MAX_ENTRIES entries.
 *
 * A list is the authority's whole current set of revocations for the
 * device (like a CRL): entries already in effect are no-ops, so applying
 * only the newest list is enough.
 */
#ifndef EV_REVLIST_H
#define EV_REVLIST_H

#include "common.h"
#include "pkcs11/edgevault.h"

#define EV_REVLIST_MAX_ENTRIES 20000u

typedef struct ev_revoke_entry {
	CK_ULONG kind;           /* EV_REVOKE_KEY, EV_REVOKE_ZONE, EV_REVOKE_DEVICE */
	int64_t zone;            /* KEY, ZONE; 0 for DEVICE */
	unsigned char *label;    /* KEY: CKA_LABEL bytes, else NULL */
	size_t label_len;
	unsigned char *ckid;     /* KEY: CKA_ID, or NULL for any */
	size_t ckid_len;
	int64_t generation;      /* KEY: 0 for every generation */
	char *reason;            /* NUL-terminated */
} ev_revoke_entry;

typedef struct ev_revlist {
	char *device;
	int64_t sequence;
	int64_t issued_at;
	ev_revoke_entry *entries;
	size_t n;
	unsigned char digest[32]; /* BLAKE2b-256 of the envelope's bytes */
} ev_revlist;

/*
 * Open and parse a list file: ev_signed_open() with pk, then the document
 * as above. The device is not checked here (the caller knows its own).
 * CKR_DATA_INVALID (malformed; err says where), CKR_SIGNATURE_INVALID,
 * CKR_DATA_LEN_RANGE, CKR_HOST_MEMORY.
 */
CK_RV ev_revlist_load(const unsigned char *buf, size_t len, const unsigned char pk[32],
    ev_revlist **out, char *err, size_t errlen) EV_MUST_CHECK;

/* Parse a document alone (no envelope, no signature): for signing tools. */
CK_RV ev_revlist_parse(const unsigned char *doc, size_t len, ev_revlist **out, char *err,
    size_t errlen) EV_MUST_CHECK;

/* BLAKE2b-256 of a list file's bytes (what ev_revlist.digest holds). */
void ev_revlist_digest(const unsigned char *buf, size_t len, unsigned char out[32]);

/* Free. NULL is a no-op. */
void ev_revlist_free(ev_revlist *l);

#endif
