/* Slot and token management. */
#include "audit_event.h"
#include "mech/mech.h"
#include "module.h"
#include "pin.h"
#include "session.h"
#include "token.h"

CK_RV
C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount)
{
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	if (pulCount == NULL)
		return CKR_ARGUMENTS_BAD;
	return ev_slot_list(tokenPresent, pSlotList, pulCount);
}

CK_RV
C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo)
{
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	if (pInfo == NULL)
		return CKR_ARGUMENTS_BAD;
	return ev_slot_info(slotID, pInfo);
}

CK_RV
C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo)
{
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	if (pInfo == NULL)
		return CKR_ARGUMENTS_BAD;
	return ev_token_info(slotID, pInfo);
}

CK_RV
C_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList,
    CK_ULONG_PTR pulCount)
{
	int is_free;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	if (pulCount == NULL)
		return CKR_ARGUMENTS_BAD;
	rv = ev_slot_is_free(slotID, &is_free);
	if (rv != CKR_OK)
		return rv;
	return ev_mech_list(pMechanismList, pulCount);
}

CK_RV
C_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo)
{
	const ev_mech *m;
	int is_free;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	if (pInfo == NULL)
		return CKR_ARGUMENTS_BAD;
	rv = ev_slot_is_free(slotID, &is_free);
	if (rv != CKR_OK)
		return rv;
	m = ev_mech_find(type);
	if (m == NULL)
		return CKR_MECHANISM_INVALID;
	ev_mech_info(m, pInfo);
	return CKR_OK;
}

CK_RV
C_InitToken(CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pLabel)
{
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	if (pPin == NULL || pLabel == NULL)
		return CKR_ARGUMENTS_BAD;
	return ev_token_init(slotID, pPin, ulPinLen, pLabel);
}

/*
 * The audit of C_InitPIN and C_SetPIN: the PIN of who set, or the
 * refusal of the old PIN, by actor (the line's "user"). Other answers
 * (bad arguments, read-only session) change nothing and are not recorded.
 */
static void
audit_pin_set(ev_session *s, CK_USER_TYPE who, CK_USER_TYPE actor, const char *method, CK_RV rv)
{
	ev_audit_detail d[] = { { "pin", who == CKU_SO ? "so" : "user", 0 }, { "method", method, 0 } };

	if (rv != CKR_OK && ev_audit_outcome_of(rv) != EV_AUDIT_REFUSED)
		return;
	ev_audit_note(EV_AUDIT_PIN_SET, rv == CKR_OK ? EV_AUDIT_OK : EV_AUDIT_REFUSED, s->token->id,
		      actor, NULL, rv == CKR_OK ? NULL : ev_audit_reason(rv), d, EV_ARRAY_SIZE(d));
}

CK_RV
C_InitPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
	ev_session *s;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	rv = ev_session_acquire(hSession, &s);
	if (rv != CKR_OK)
		return rv;
	if (ev_session_state(s) != CKS_RW_SO_FUNCTIONS)
		rv = CKR_USER_NOT_LOGGED_IN;
	else if (pPin == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else if (ulPinLen < EV_PIN_MIN_LEN || ulPinLen > EV_PIN_MAX_LEN)
		rv = CKR_PIN_LEN_RANGE;
	else {
		rv = ev_token_set_pin(s->token, CKU_USER, pPin, ulPinLen);
		audit_pin_set(s, CKU_USER, ev_audit_user(s->token), "init_pin", rv);
	}
	ev_session_release(s);
	return rv;
}

CK_RV
C_SetPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pOldPin, CK_ULONG ulOldLen,
    CK_UTF8CHAR_PTR pNewPin, CK_ULONG ulNewLen)
{
	CK_USER_TYPE who;
	unsigned char checked[32];
	ev_session *s;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	rv = ev_session_acquire(hSession, &s);
	if (rv != CKR_OK)
		return rv;
	/* The PIN of whoever is logged in; the user's in a public session. */
	who = ev_session_so(s) ? CKU_SO : CKU_USER;
	if (!ev_session_rw(s))
		rv = CKR_SESSION_READ_ONLY;
	else if (pOldPin == NULL || pNewPin == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else if (ulNewLen < EV_PIN_MIN_LEN || ulNewLen > EV_PIN_MAX_LEN)
		rv = CKR_PIN_LEN_RANGE;
	else {
		if (who == CKU_SO)
			rv = ev_token_check_so_pin(s->token, pOldPin, ulOldLen, checked);
		else
			rv = ev_token_check_pin(s->token, who, pOldPin, ulOldLen);
		/* The SO's also seals the zone's SO recovery copy again. */
		if (rv == CKR_OK && who == CKU_SO)
			rv = ev_token_set_so_pin(s->token, checked, pOldPin, ulOldLen, pNewPin,
						 ulNewLen);
		else if (rv == CKR_OK)
			rv = ev_token_set_pin(s->token, who, pNewPin, ulNewLen);
		/*
		 * Whose old PIN was given acts, logged in or not: in a public
		 * session, the user (PKCS#11: C_SetPIN there changes the user PIN).
		 */
		audit_pin_set(s, who, who, "set_pin", rv);
	}
	ev_session_release(s);
	return rv;
}
