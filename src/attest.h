/*
 * Attestation: evidence that this device is in a trustworthy state,
 * appraised before a login to a gated zone and before every rotation.
 *
 * Evidence comes from a provider, behind one small interface
 * (ev_attest_provider):
 *
 *   tpm2-quote  a TPM quote of the configured PCRs, made at each
 *            appraisal and checked against a signed reference policy
 *            (quote.h);
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

#include <json-c/json.h>

#include "common.h"
#include "config.h"
#include "root/root.h"

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
 * CKR_DATA_LEN_RANGE, CKR_FUNCTION_FAILED (its digest could not be
 * computed), CKR_HOST_MEMORY.
 */
CK_RV ev_attest_result_load(const unsigned char *buf, size_t len, const unsigned char pk[32],
    ev_attest_result **out, char *err, size_t errlen) EV_MUST_CHECK;

/*
 * A document's parser for ev_attest_load(): CKR_OK with *out (the
 * caller's), which keeps digest; else a CKR and err, *out NULL.
 */
typedef CK_RV ev_attest_parse_fn(const unsigned char *doc, size_t len,
    const unsigned char digest[32], void **out, char *err, size_t errlen);

/*
 * A provider's signed document (doc names it in err): an envelope of at
 * most EV_ATTEST_MAX_FILE bytes, of type, signed with pk, its document
 * parsed by parse into *out (NULL on failure) with digest, the
 * BLAKE2b-256 of the envelope's bytes. Errors as ev_attest_result_load().
 */
CK_RV ev_attest_load(const unsigned char *buf, size_t len, const char *type, const char *doc,
    const unsigned char pk[32], ev_attest_parse_fn *parse, void **out, char *err, size_t errlen)
    EV_MUST_CHECK;

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
	ev_root *root;               /* the root of trust, for providers that need it (NULL: none) */
} ev_attest_ctx;

/*
 * Apply the rules above to a parsed result. Always fills v (accepted or
 * refused with the reason); never fails.
 */
void ev_attest_check(const ev_attest_result *r, const ev_attest_ctx *ctx, ev_verdict *v);

/*
 * What attestation results and TPM reference policies share: whom they
 * are for, which zones, from when until when.
 */
typedef struct ev_attest_scope {
	char *device;
	int64_t *zones;    /* NULL (nzones 0): the document names none, so every zone */
	size_t nzones;
	int64_t issued_at;
	int64_t expires_at;
} ev_attest_scope;

/*
 * Read "device", "zones" (when present: 1..EV_ATTEST_MAX_ZONES ids, none
 * twice), "issued_at" and "expires_at" (> issued_at) of a document
 * (root, an object whose members the caller has checked); doc names it
 * in err. On failure *sc is left empty. CKR_DATA_INVALID, CKR_HOST_MEMORY.
 */
CK_RV ev_attest_scope_read(json_object *root, const char *doc, ev_attest_scope *sc, char *err,
    size_t errlen) EV_MUST_CHECK;

/* Free what a scope holds and empty it. NULL is a no-op. */
void ev_attest_scope_clear(ev_attest_scope *sc);

/*
 * The rules a scope must meet, the first four of ev_attest_check()'s:
 * this device, the zone admitted, not issued beyond clock_skew ahead,
 * not expired. 0 when they hold; -1 with v refused (its reason set).
 */
int ev_attest_scope_check(const ev_attest_scope *sc, const ev_attest_ctx *ctx, ev_verdict *v)
    EV_MUST_CHECK;

/* A duration from the configuration, within 0 .. 2^53 so sums of it cannot overflow. */
int64_t ev_attest_clamp(int64_t d);

/* Refuse: accepted and valid_until cleared, reason formatted. */
void ev_verdict_refuse(ev_verdict *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Read a provider's file (what names it in refusals: "evidence"): a
 * regular file of at most EV_ATTEST_MAX_FILE bytes. Symbolic links are
 * followed: an agent may publish by swapping a link, and where the bytes
 * come from does not matter, only the signature over them. 0 with *buf
 * malloc'ed; -1 with v refused; -2 out of memory.
 */
int ev_attest_read_file(const char *path, const char *what, unsigned char **buf, size_t *len,
    ev_verdict *v) EV_MUST_CHECK;

/*
 * An evidence provider. appraise gathers evidence and applies the rules:
 * CKR_OK with v filled, whether accepted or refused (missing, unreadable,
 * badly signed, malformed evidence are refusals, with the reason);
 * another CKR only when the machinery itself fails (CKR_HOST_MEMORY).
 */
typedef struct ev_attest_provider {
	const char *name;
	int needs_root;  /* appraise uses ctx->root */
	CK_RV (*appraise)(const ev_attest_ctx *ctx, ev_verdict *v);
} ev_attest_provider;

/* The provider the configuration names, or NULL for EV_ATTEST_NONE. */
const ev_attest_provider *ev_attest_provider_of(const ev_config *cfg);

#endif
