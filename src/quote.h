/*
 * The "tpm2-quote" attestation provider (doc/attestation.md): at each
 * appraisal the TPM root quotes the configured PCRs ([attestation] pcrs,
 * SHA-256 bank) with a fresh random nonce, signed by an attestation key
 * (AK) the TPM makes for it (root.h, ev_root_quote()); the quote is
 * checked here, and its PCR digest compared with the one a signed
 * reference policy expects.
 *
 * The reference policy is a signed envelope (signed.h) of type
 * EV_SIGNED_TPM_REFERENCE, signed by the verifier whose key is pinned in
 * [attestation] verifier_key, kept at [attestation] reference_path:
 *
 *   {"version": 1,
 *    "device": "edge-0042",     the device it is for ([device] id)
 *    "pcrs": [0, 1, 7],         the PCRs (SHA-256 bank), ascending, none twice:
 *                               exactly the configured pcrs
 *    "digest": "3d4589...",     hex SHA-256 of the selected PCR values
 *                               concatenated in index order: the TPM's pcrDigest
 *    "ak": "000b8f3a...",       the attestation key's TPM name, hex (34 bytes:
 *                               nameAlg SHA-256 0x000b, then SHA-256 of its
 *                               marshalled TPMT_PUBLIC), as the verifier
 *                               pinned it (`edgevault attest check` names
 *                               the one found)
 *    "seq": 7,                  1..2^53: the reference's place in the
 *                               verifier's sequence; the highest accepted is
 *                               kept, a lower one refused (rollback)
 *    "zones": [1, 2],           optional: the zones it admits (absent: every zone)
 *    "issued_at": 1795430400,   unix time
 *    "expires_at": 1826966400}  unix time, > issued_at
 *
 * Unknown, missing or repeated members, wrong types and out-of-range
 * numbers make it malformed (refused).
 *
 * The rules (ev_quote_check()), at a time `now`, once the quote verifies:
 *   - the reference's scope: this device, the zone admitted, issued at
 *     most clock_skew ahead of now, now < expires_at (attest.h);
 *   - its pcrs are the configured ones;
 *   - its seq is not below the highest seq of a reference that got this
 *     far before (kept in the store, EV_META_TPM_REFERENCE_SEQ; the
 *     provider checks and raises it before it asks for a quote);
 *   - the quote was signed by the AK it names: the AK's name equals its
 *     "ak" (constant time);
 *   - the quote's PCR digest equals its digest (constant time).
 * Accepted: valid until min(expires_at, now + the zone's
 * max_evidence_age), exclusive: the quote is fresh now, the reference
 * bounds how long its state is trusted. The verdict's digest is
 * BLAKE2b-256 of the reference envelope and the PCR digest, the same
 * while neither changes, so the attestation history records one
 * acceptance per reference and state, not one per quote.
 */
#ifndef EV_QUOTE_H
#define EV_QUOTE_H

#include "attest.h"
#include "store.h"

/* The envelope type of TPM reference policies. */
#define EV_SIGNED_TPM_REFERENCE "edgevault-tpm-reference"

#define EV_QUOTE_DIGEST_LEN 32u /* SHA-256 */
#define EV_QUOTE_AK_NAME_LEN 34u /* a TPM name: nameAlg (0x000b, SHA-256), SHA-256 digest */

/* The store's meta row keeping the highest reference seq accepted. */
#define EV_META_TPM_REFERENCE_SEQ "tpm_reference_seq"

/* A parsed reference policy. */
typedef struct ev_tpm_reference {
	ev_attest_scope scope;
	uint32_t pcrs;                               /* bit i: PCR i */
	unsigned char pcr_digest[EV_QUOTE_DIGEST_LEN];
	unsigned char ak_name[EV_QUOTE_AK_NAME_LEN];  /* the AK pinned */
	int64_t seq;                                 /* 1..2^53 */
	unsigned char digest[32];                    /* BLAKE2b-256 of the envelope's bytes */
} ev_tpm_reference;

/*
 * Parse a document alone (for `edgevault attest reference`) / open an
 * envelope with the verifier's key pk and parse its document.
 * CKR_DATA_INVALID (malformed; err says where), CKR_SIGNATURE_INVALID,
 * CKR_DATA_LEN_RANGE, CKR_FUNCTION_FAILED (load: the envelope's digest
 * could not be computed), CKR_ARGUMENTS_BAD, CKR_HOST_MEMORY.
 */
CK_RV ev_tpm_reference_parse(const unsigned char *doc, size_t len, ev_tpm_reference **out,
    char *err, size_t errlen) EV_MUST_CHECK;
CK_RV ev_tpm_reference_load(const unsigned char *buf, size_t len, const unsigned char pk[32],
    ev_tpm_reference **out, char *err, size_t errlen) EV_MUST_CHECK;

/* Free. NULL is a no-op. */
void ev_tpm_reference_free(ev_tpm_reference *r);

/*
 * Check a quote from the TPM root: the AK is a restricted ECDSA-SHA256
 * P-256 signing key (as tpm2.c makes it), its signature over the attest
 * bytes verifies, the attest structure is all of its bytes, made by the
 * TPM (TPM2_GENERATED_VALUE), a quote, signed by a primary key of the
 * owner hierarchy with that public area (qualifiedSigner, see
 * ev_quote_ak_name()), over exactly the PCRs pcrs of the SHA-256 bank,
 * qualified by nonce (constant time). CKR_OK with pcr_digest and ak_name
 * (the AK's name, computed here from its public area: nothing in the
 * quote pins it, ev_quote_check() compares it with the reference's);
 * CKR_SIGNATURE_INVALID or CKR_DATA_INVALID with why; CKR_ARGUMENTS_BAD;
 * CKR_HOST_MEMORY.
 */
CK_RV ev_quote_verify(const struct ev_quote *q, uint32_t pcrs, const unsigned char *nonce,
    size_t nonce_len, unsigned char pcr_digest[EV_QUOTE_DIGEST_LEN],
    unsigned char ak_name[EV_QUOTE_AK_NAME_LEN], char *why, size_t whylen) EV_MUST_CHECK;

/*
 * The TPM name of a key whose TPMT_PUBLIC (nameAlg SHA-256) is pub
 * (len bytes, its TPM marshalling), as the TPM computes it: 0x000b and
 * SHA-256 of the public area marshalled; and, when qn is not NULL, its
 * qualified name as a primary of the owner hierarchy: 0x000b and SHA-256
 * of TPM2_RH_OWNER (4 bytes, big-endian) and the name. 0, or -1 when pub
 * is not one whole TPMT_PUBLIC with nameAlg SHA-256.
 */
int ev_quote_ak_name(const unsigned char *pub, size_t len,
    unsigned char name[EV_QUOTE_AK_NAME_LEN], unsigned char qn[EV_QUOTE_AK_NAME_LEN])
    EV_MUST_CHECK;

/*
 * Apply the rules above (but seq's) to a reference and what a verified
 * quote carries: its PCR digest and its AK's name. Always fills v;
 * never fails.
 */
void ev_quote_check(const ev_tpm_reference *r, const unsigned char pcr_digest[EV_QUOTE_DIGEST_LEN],
    const unsigned char ak_name[EV_QUOTE_AK_NAME_LEN], const ev_attest_ctx *ctx, ev_verdict *v);

/*
 * The rollback rule: seq (the reference's) is refused when below the
 * highest accepted before (EV_META_TPM_REFERENCE_SEQ in store s), else
 * kept as the highest, in one transaction (BEGIN IMMEDIATE: processes
 * sharing the store cannot lower it between read and write). The caller
 * holds the store's lock. CKR_OK; CKR_DATA_INVALID with why ("reference
 * policy seq N is older than the M already accepted"); CKR_ARGUMENTS_BAD;
 * the store's errors (why says so).
 */
CK_RV ev_quote_seq_admit(ev_store *s, int64_t seq, char *why, size_t whylen) EV_MUST_CHECK;

/*
 * The provider (ev_attest_provider_of()). Refusals: no verifier key or
 * reference path configured, a root that cannot quote, a missing,
 * unreadable or badly signed reference, a quote that does not verify,
 * the rules. CKR_DEVICE_ERROR when the TPM cannot be reached or answers
 * with an error (the machinery failed: no evidence either way);
 * CKR_HOST_MEMORY.
 */
extern const ev_attest_provider ev_tpm2_quote_provider;

#endif
