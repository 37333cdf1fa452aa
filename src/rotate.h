/*
 * Attestation gates and rotation in the module (doc/rotation.md).
 *
 * The gate: a zone whose policy requires attestation admits C_Login
 * (CKU_USER) only with evidence its provider accepts now; the login
 * records how long the evidence stays fresh (the token's attested_until),
 * and every use of a key of the zone after that time first asks the
 * provider again (an agent may have refreshed the evidence): still
 * nothing fresh, and the use is refused with CKR_FUNCTION_REJECTED.
 * Every rotation appraises evidence afresh, whatever the zone's policy.
 * Refusals are recorded in the store's attestation history (at a use:
 * once when the zone goes stale, not at every refused call).
 *
 * Rotation: a key's new generation is made and the old one retired in
 * one transaction (a batch: up to 256 keys to a transaction), with a
 * change-log row for each retired object, so
 * every process sees the new generation at its next search and its
 * handles to the old one behave as retired at their next use.
 */
#ifndef EV_ROTATE_H
#define EV_ROTATE_H

#include "attest.h"
#include "common.h"
#include "pkcs11/edgevault.h"
#include "session.h"

/*
 * Appraise evidence for a zone now with the configured provider, and
 * record it in the attestation history (purpose: "login", "use",
 * "rotate", "check"): accepted evidence once per document and zone, a
 * refusal when record_refusal (the same evidence refused for the same
 * reason at most once a minute). CKR_OK with *v filled, accepted or not;
 * CKR_FUNCTION_REJECTED when no provider is configured (v says so);
 * CKR_HOST_MEMORY, CKR_DEVICE_ERROR (the history could not be written:
 * nothing is accepted unrecorded).
 */
CK_RV ev_attest_zone(ev_token *t, const char *purpose, int record_refusal, ev_verdict *v)
    EV_MUST_CHECK;

/*
 * EV_Attest's body: appraise for the session's zone (purpose "check");
 * accepted evidence renews the zone's attested state in this process when
 * the user is logged in. Codes as ev_attest_zone().
 */
CK_RV ev_attest_session(ev_session *s, ev_verdict *v) EV_MUST_CHECK;

/* EV_NewNonce's body: a fresh device nonce, stored as the current one. */
CK_RV ev_attest_new_nonce(unsigned char nonce[EV_NONCE_LEN]) EV_MUST_CHECK;

/*
 * The login gate (C_Login CKU_USER, before the PIN is checked): CKR_OK
 * when the zone's policy needs no attestation (*until = 0) or the
 * evidence is accepted (*until = when it goes stale), else
 * CKR_FUNCTION_REJECTED.
 */
CK_RV ev_gate_login(ev_token *t, int64_t *until) EV_MUST_CHECK;

/* The zone's evidence is fresh until `until` (an accepted appraisal). Caller holds t->lock. */
void ev_gate_renew(ev_token *t, int64_t until);

/*
 * The use gate, at every start of an operation with a private or secret
 * key of the zone and every key management call: CKR_OK when the zone
 * needs no attestation or its evidence is fresh (one clock read), else
 * the provider is asked again; CKR_FUNCTION_REJECTED when it still has
 * nothing fresh. Public keys are not gated: checking a signature needs
 * no trust in the device. Call without t->lock.
 */
CK_RV ev_gate_use(ev_token *t) EV_MUST_CHECK;

/*
 * After an accepted login: rotate the zone's keys that are due, when the
 * zone's policy says auto_rotate. Failures are logged, never fail the
 * login. Call without t->lock.
 */
void ev_rotate_due_at_login(ev_session *s);

/* EV_RotationCandidates' body (s acquired). */
CK_RV ev_rotate_candidates(ev_session *s, CK_ULONG which, CK_OBJECT_HANDLE *keys,
    CK_ULONG *count);

/* EV_RotateKey's body (s acquired); see include/pkcs11/edgevault.h. */
CK_RV ev_rotate_key(ev_session *s, CK_OBJECT_HANDLE h, CK_OBJECT_HANDLE *out);

/*
 * EV_RotateKeys' body (s acquired; see include/pkcs11/edgevault.h): n
 * keys in order, in transactions of up to 256 keys each (new generations
 * stored, old ones retired with their change-log rows, one sync of the
 * store and one of the audit trail per transaction). Every handle is
 * checked and the evidence appraised once before anything changes. out
 * (may be NULL) gets keys[i]'s new generation for i < *done; *done (a
 * prefix of keys) is how many rotated, also on failure.
 */
CK_RV ev_rotate_keys(ev_session *s, const CK_OBJECT_HANDLE *keys, size_t n,
    CK_OBJECT_HANDLE *out, size_t *done);

/* EV_RotateZoneKey's body (s acquired). */
CK_RV ev_rotate_zone_key(ev_session *s, CK_ULONG *count);

/*
 * EV_RebindZone's body (s acquired; see include/pkcs11/edgevault.h):
 * the zone key, unsealed as usual or from the SO's recovery copy, sealed
 * again as the zone's policy says now; both blobs written in one
 * transaction if the zone's row still holds the ones read (tried again
 * when another process changed them), and a change-log row. *pcrs (may
 * be NULL) gets the PCRs it is bound to now.
 */
CK_RV ev_rebind_zone(ev_session *s, CK_ULONG *pcrs);

/*
 * Record a refusal that is not an appraisal (purpose "unseal", provider
 * "tpm2-pcr"): what was refused (digest) and why, at most once a minute
 * for the same (see ev_attest_zone()). Caller holds the store lock.
 * CKR_OK, the store's errors.
 */
CK_RV ev_attest_record_refusal(ev_token *t, const char *purpose, const char *provider,
			       const unsigned char digest[32], const char *reason);

/*
 * Destroy retired generations whose grace period has ended (any zone),
 * with their change-log rows, and announce. Called at C_Initialize, by
 * every rotation, and by the watcher when the earliest one is due.
 * *next (may be NULL) gets the next destroy_at still ahead (0: none).
 */
CK_RV ev_rotate_sweep(int64_t *next);

#endif
