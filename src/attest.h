/*
 * Attestation: evidence that this device is in a trustworthy state,
 * appraised before a login to a gated zone and before every rotation.
 *
 * Evidence comes from a provider, behind one small interface
 * (ev_attest_provider), so the TPM quote provider slots in beside the
 * first one:
 *
 *   result   a signed attestation result: a verifier (off the device)
 *            appraised the device and issued a small JSON document,
 *            signed with Ed25519 over its exact bytes and carried in a
 *            signed envelope (signed.h, type EV_SIGNED_ATTESTATION). An
 *            agent on the device keeps the file at [attestation]
 *            result_path fresh. The document:
 *
 *              {"version": 1,
 *               "device": "edge-0042",        the device it is for ([device] id)
 *               "zones": [1, 2],              the zones it admits (1 .. 2^53 each, 1 .. 1024 of them)
 *               "issued_at": 1795430400,      unix time
 *               "expires_at": 1795434000,     unix time, > issued_at
 *               "nonce": "9f86d0..."}         optional: hex, 16 .. 64 bytes
 *
 *            Unknown, missing or repeated members, wrong types and
 *            out-of-range numbers make it malformed (refused).
 *
 * The rules (ev_attest_check()), at a time `now`:
 *   - the device must be this device's id, exactly;
 *   - the zone must be one of "zones";
 *   - issued_at may be at most clock_skew seconds ahead of now
 *     (else: "issued in the future");
 *   - now < expires_at (evidence at its exact expiry is expired);
 *   - now < issued_at + max_evidence_age (the zone's policy; else stale);
 *   - a nonce, when present, must equal the device's current nonce
 *     (EV_NewNonce; compared in constant time); with the zone's
 *     require_nonce, it must be present.
 * Accepted evidence is good until min(expires_at, issued_at +
 * max_evidence_age): valid_until, exclusive.
 */
#ifndef EV_ATTEST_H
#define EV_ATTEST_H

#include "common.h"
#include "config.h"

/* The envelope type of attestation results. */
#define EV_SIGNED_ATTESTATION "edgevault-attestation-result"

/* Largest result file read: results are small. */
#define EV_ATTEST_MAX_FILE (64u * 1024u)

#define EV_ATTEST_MAX_ZONES 1024u
#define EV_ATTEST_NONCE_MIN 16u
#define EV_ATTEST_NONCE_MAX 64u

/* A parsed attestation result. */
typedef struct ev_attest_result {
	char *device;
	int64_t *zones;
	size_t nzones;
	int64_t issued_at;
	int64_t expires_at;
	unsigned char nonce[EV_ATTEST_NONCE_MAX];
	size_t nonce_len;            /* 0: no nonce */
	unsigned char digest[32];    /* BLAKE2b-256 of the envelope's bytes */
} ev_attest_result;

/*
 * Open an envelope with the verifier's key pk and parse the document.
 * CKR_DATA_INVALID (malformed; err says where), CKR_SIGNATURE_INVALID,
 * CKR_DATA_LEN_RANGE, CKR_HOST_MEMORY.
 */
CK_RV ev_attest_result_load(const unsigned char *buf, size_t len, const unsigned char pk[32],
    ev_attest_result **out, char *err, size_t errlen) EV_MUST_CHECK;

/* Parse a document alone (no envelope): for `edgevault attest sign`. */
CK_RV ev_attest_result_parse(const unsigned char *doc, size_t len, ev_attest_result **out,
    char *err, size_t errlen) EV_MUST_CHECK;

/* Free. NULL is a no-op. */
void ev_attest_result_free(ev_attest_result *r);

/* The outcome of an appraisal. */
typedef struct ev_verdict {
	int accepted;
	int64_t valid_until;       /* accepted: unix time it goes stale (exclusive) */
	unsigned char digest[32];  /* of the evidence appraised; zeros when there was none */
	char reason[160];          /* refused: why; accepted: what (never a secret) */
} ev_verdict;

/* What an appraisal is for. */
typedef struct ev_attest_ctx {
	const ev_config *cfg;
	const char *device;          /* this device's id */
	int64_t zone;
	int64_t now;                 /* unix time */
	const ev_policy *policy;     /* the zone's */
	const unsigned char *nonce;  /* the device's current nonce, or NULL when none was issued */
	size_t nonce_len;
} ev_attest_ctx;

/*
 * Apply the rules above to a parsed result. Always fills v (accepted or
 * refused with the reason); never fails.
 */
void ev_attest_check(const ev_attest_result *r, const ev_attest_ctx *ctx, ev_verdict *v);

/*
 * An evidence provider. appraise gathers evidence and applies the rules:
 * CKR_OK with v filled, whether accepted or refused (missing, unreadable,
 * badly signed, malformed evidence are refusals, with the reason);
 * another CKR only when the machinery itself fails (CKR_HOST_MEMORY).
 */
typedef struct ev_attest_provider {
	const char *name;
	CK_RV (*appraise)(const ev_attest_ctx *ctx, ev_verdict *v);
} ev_attest_provider;

/* The provider the configuration names, or NULL for EV_ATTEST_NONE. */
const ev_attest_provider *ev_attest_provider_of(const ev_config *cfg);

#endif
