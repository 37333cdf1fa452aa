/* The admin interface's functions: check arguments and state, call the core. */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "admin.h"
#include "audit.h"
#include "attest.h"
#include "event.h"
#include "log.h"
#include "module.h"
#include "revoke.h"
#include "rotate.h"
#include "session.h"

static CK_RV
EV_ApplyRevocationList(CK_BYTE_PTR pList, CK_ULONG ulListLen, CK_ULONG_PTR pulSequence)
{
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	if (pList == NULL && ulListLen > 0)
		return CKR_ARGUMENTS_BAD;
	rv = ev_revoke_apply(pList, ulListLen, "admin", 0, pulSequence);
	/*
	 * This process acts on it before the call returns, like every other
	 * will at its next. The list is committed whatever this says: a
	 * failure here fails this process's next call closed, not this one.
	 */
	if (rv == CKR_OK && ev_sync() != CKR_OK)
		ev_warn("revocation applied; this process will act on it at its next call");
	return rv;
}

static CK_RV
EV_Revoke(CK_SESSION_HANDLE hSession, const EV_REVOCATION_ENTRY *pEntry, CK_ULONG_PTR pulCount)
{
	ev_session *s;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	rv = ev_session_acquire(hSession, &s);
	if (rv != CKR_OK)
		return rv;
	if (pEntry == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else
		rv = ev_revoke_local(s, pEntry, pulCount);
	/* Released first: acting on a zone revocation ends this very session. */
	ev_session_release(s);
	if (rv == CKR_OK) {
		ev_events_announce();
		if (ev_sync() != CKR_OK)
			ev_warn("revocation applied; this process will act on it at its next call");
	}
	return rv;
}

static CK_RV
EV_GetZonePolicy(CK_SLOT_ID slotID, EV_ZONE_POLICY *pPolicy)
{
	const ev_policy *p;
	const ev_attest_provider *prov;
	ev_token *t;
	size_t n;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	if (pPolicy == NULL)
		return CKR_ARGUMENTS_BAD;
	rv = ev_sync();
	if (rv != CKR_OK)
		return rv;
	rv = ev_token_get(slotID, &t);
	if (rv == CKR_TOKEN_NOT_RECOGNIZED)
		return CKR_TOKEN_NOT_PRESENT; /* the free slot: no zone, no policy */
	if (rv != CKR_OK)
		return rv;
	if (atomic_load(&t->revoked))
		return CKR_TOKEN_NOT_PRESENT;
	p = ev_config_policy(ev_mod->cfg, t->id);
	memset(pPolicy, 0, sizeof(*pPolicy));
	pPolicy->requireAttestation = p->require_attestation ? CK_TRUE : CK_FALSE;
	pPolicy->requireNonce = p->require_nonce ? CK_TRUE : CK_FALSE;
	pPolicy->autoRotate = p->auto_rotate ? CK_TRUE : CK_FALSE;
	pPolicy->ulMaxEvidenceAge = (CK_ULONG)p->max_evidence_age;
	pPolicy->ulRotationPeriod = (CK_ULONG)p->rotation_period;
	pPolicy->ulGracePeriod = (CK_ULONG)p->grace_period;
	memset(pPolicy->provider, ' ', sizeof(pPolicy->provider));
	prov = ev_attest_provider_of(ev_mod->cfg);
	if (prov != NULL) {
		n = strlen(prov->name);
		memcpy(pPolicy->provider, prov->name,
		    n < sizeof(pPolicy->provider) ? n : sizeof(pPolicy->provider));
	}
	return CKR_OK;
}

static CK_RV
EV_Attest(CK_SESSION_HANDLE hSession, EV_ATTESTATION *pInfo)
{
	ev_session *s;
	ev_verdict v;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	if (pInfo == NULL)
		return CKR_ARGUMENTS_BAD;
	rv = ev_session_acquire(hSession, &s);
	if (rv != CKR_OK)
		return rv;
	rv = ev_attest_session(s, &v);
	if (rv == CKR_OK || rv == CKR_FUNCTION_REJECTED) {
		memset(pInfo, 0, sizeof(*pInfo));
		pInfo->ulState = v.accepted ? EV_ATTEST_ACCEPTED : EV_ATTEST_REFUSED;
		pInfo->ulValidUntil = v.accepted ? (CK_ULONG)v.valid_until : 0;
		snprintf((char *)pInfo->szReason, sizeof(pInfo->szReason), "%s", v.reason);
	}
	ev_session_release(s);
	return rv;
}

static CK_RV
EV_NewNonce(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pNonce, CK_ULONG_PTR pulNonceLen)
{
	unsigned char nonce[EV_NONCE_LEN];
	ev_session *s;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	if (pulNonceLen == NULL)
		return CKR_ARGUMENTS_BAD;
	rv = ev_session_acquire(hSession, &s);
	if (rv != CKR_OK)
		return rv;
	if (pNonce == NULL) {
		*pulNonceLen = EV_NONCE_LEN;
		goto out;
	}
	if (*pulNonceLen < EV_NONCE_LEN) {
		*pulNonceLen = EV_NONCE_LEN;
		rv = CKR_BUFFER_TOO_SMALL;
		goto out;
	}
	rv = ev_attest_new_nonce(nonce);
	if (rv == CKR_OK) {
		memcpy(pNonce, nonce, sizeof(nonce));
		*pulNonceLen = EV_NONCE_LEN;
	}
out:
	ev_session_release(s);
	return rv;
}

static CK_RV
EV_RotationCandidates(CK_SESSION_HANDLE hSession, CK_ULONG ulWhich, CK_OBJECT_HANDLE_PTR phKeys,
    CK_ULONG_PTR pulCount)
{
	ev_session *s;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	if (pulCount == NULL)
		return CKR_ARGUMENTS_BAD;
	rv = ev_session_acquire(hSession, &s);
	if (rv != CKR_OK)
		return rv;
	rv = ev_rotate_candidates(s, ulWhich, phKeys, pulCount);
	ev_session_release(s);
	return rv;
}

static CK_RV
EV_RotateKey(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey, CK_OBJECT_HANDLE_PTR phNewKey)
{
	ev_session *s;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	rv = ev_session_acquire(hSession, &s);
	if (rv != CKR_OK)
		return rv;
	rv = ev_rotate_key(s, hKey, phNewKey);
	ev_session_release(s);
	/* This process sees the old generation retired before the call returns. */
	if (rv == CKR_OK && ev_sync() != CKR_OK)
		ev_warn("key rotated; this process will act on it at its next call");
	return rv;
}

static CK_RV
EV_RotateKeys(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phKeys, CK_ULONG ulCount,
    CK_OBJECT_HANDLE_PTR phNewKeys, CK_ULONG_PTR pulDone)
{
	ev_session *s;
	size_t done = 0;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	if (pulDone != NULL)
		*pulDone = 0;
	if (phKeys == NULL && ulCount > 0)
		return CKR_ARGUMENTS_BAD;
	rv = ev_session_acquire(hSession, &s);
	if (rv != CKR_OK)
		return rv;
	rv = ev_rotate_keys(s, phKeys, ulCount, phNewKeys, &done);
	ev_session_release(s);
	if (pulDone != NULL)
		*pulDone = (CK_ULONG)done;
	/* This process sees the old generations retired before the call returns. */
	if (done > 0 && ev_sync() != CKR_OK)
		ev_warn("keys rotated; this process will act on it at its next call");
	return rv;
}

static CK_RV
EV_RotateZoneKey(CK_SESSION_HANDLE hSession, CK_ULONG_PTR pulCount)
{
	ev_session *s;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	rv = ev_session_acquire(hSession, &s);
	if (rv != CKR_OK)
		return rv;
	rv = ev_rotate_zone_key(s, pulCount);
	ev_session_release(s);
	return rv;
}

static CK_RV
EV_RebindZone(CK_SESSION_HANDLE hSession, CK_ULONG_PTR pulPcrs)
{
	ev_session *s;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	rv = ev_session_acquire(hSession, &s);
	if (rv != CKR_OK)
		return rv;
	rv = ev_rebind_zone(s, pulPcrs);
	ev_session_release(s);
	return rv;
}

/* The root, reached under the store lock (the checkpoint key is set up at its first use). */
static CK_RV
admin_root(ev_root **root)
{
	CK_RV rv = ev_mutex_lock(ev_mod->store_lock);

	if (rv != CKR_OK)
		return rv;
	rv = ev_module_root(root);
	ev_mutex_unlock(ev_mod->store_lock);
	return rv != CKR_OK ? CKR_DEVICE_ERROR : CKR_OK;
}

static CK_RV
EV_AuditCheckpoint(void)
{
	ev_root *root;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	if (!ev_mod->cfg->audit_enabled)
		return CKR_FUNCTION_REJECTED;
	if (!ev_audit_has_key(ev_mod->audit)) {
		rv = admin_root(&root);
		if (rv != CKR_OK)
			return rv;
	}
	rv = ev_audit_checkpoint(ev_mod->audit);
	/* Still no key after reaching the root: it cannot be used (logged). */
	return rv == CKR_FUNCTION_REJECTED ? CKR_DEVICE_ERROR : rv;
}

static CK_RV
EV_AuditPublicKey(CK_BYTE_PTR pKey, CK_ULONG_PTR pulKeyLen)
{
	unsigned char pk[crypto_sign_PUBLICKEYBYTES];
	ev_secret *sk = NULL;
	ev_root *root;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	if (pulKeyLen == NULL)
		return CKR_ARGUMENTS_BAD;
	/* Off, no key is made or opened. */
	if (!ev_mod->cfg->audit_enabled)
		return CKR_FUNCTION_REJECTED;
	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		return rv;
	rv = ev_module_root(&root);
	if (rv == CKR_OK)
		rv = ev_audit_key_open(ev_mod->audit, root, ev_mod->store, &sk, pk);
	ev_mutex_unlock(ev_mod->store_lock);
	ev_secret_free(sk);
	if (rv == CKR_HOST_MEMORY)
		return rv;
	if (rv != CKR_OK)
		return CKR_DEVICE_ERROR;
	if (pKey != NULL && *pulKeyLen < sizeof(pk)) {
		*pulKeyLen = sizeof(pk);
		return CKR_BUFFER_TOO_SMALL;
	}
	*pulKeyLen = sizeof(pk);
	if (pKey != NULL)
		memcpy(pKey, pk, sizeof(pk));
	return CKR_OK;
}

/* One list per version asked for: the functions are the same, the version says what was asked. */
#define ADMIN_FUNCTIONS(minor)                                                                     \
	{                                                                                          \
		.version = {1, minor}, .EV_ApplyRevocationList = EV_ApplyRevocationList,           \
		.EV_Revoke = EV_Revoke, .EV_GetZonePolicy = EV_GetZonePolicy,                      \
		.EV_Attest = EV_Attest, .EV_NewNonce = EV_NewNonce,                                \
		.EV_RotationCandidates = EV_RotationCandidates, .EV_RotateKey = EV_RotateKey,      \
		.EV_RotateZoneKey = EV_RotateZoneKey, .EV_RebindZone = EV_RebindZone,              \
		.EV_AuditCheckpoint = EV_AuditCheckpoint, .EV_AuditPublicKey = EV_AuditPublicKey,  \
		.EV_RotateKeys = EV_RotateKeys,                                                    \
	}

EV_ADMIN_FUNCTION_LIST ev_admin_functions = ADMIN_FUNCTIONS(4);
EV_ADMIN_FUNCTION_LIST ev_admin_functions_13 = ADMIN_FUNCTIONS(3);
EV_ADMIN_FUNCTION_LIST ev_admin_functions_12 = ADMIN_FUNCTIONS(2);
EV_ADMIN_FUNCTION_LIST ev_admin_functions_11 = ADMIN_FUNCTIONS(1);
EV_ADMIN_FUNCTION_LIST ev_admin_functions_10 = ADMIN_FUNCTIONS(0);
