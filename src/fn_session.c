/* Session management. */
#include <stdlib.h>
#include <string.h>

#include "module.h"
#include "rotate.h"
#include "session.h"

CK_RV
C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify,
    CK_SESSION_HANDLE_PTR phSession)
{
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	if (phSession == NULL)
		return CKR_ARGUMENTS_BAD;
	/* Notify callbacks are optional for a module; none are made. */
	return ev_session_open(slotID, flags, phSession);
}

CK_RV
C_CloseSession(CK_SESSION_HANDLE hSession)
{
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	return ev_session_close(hSession);
}

CK_RV
C_CloseAllSessions(CK_SLOT_ID slotID)
{
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	return ev_session_close_all(slotID, 0);
}

CK_RV
C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo)
{
	ev_session *s;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	if (pInfo == NULL)
		return CKR_ARGUMENTS_BAD;
	rv = ev_session_acquire(hSession, &s);
	if (rv != CKR_OK)
		return rv;
	memset(pInfo, 0, sizeof(*pInfo));
	pInfo->slotID = (CK_SLOT_ID)s->token->id;
	pInfo->state = ev_session_state(s);
	pInfo->flags = s->flags;
	ev_session_release(s);
	return CKR_OK;
}

CK_RV
C_GetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState,
    CK_ULONG_PTR pulOperationStateLen)
{
	CK_RV rv = ev_check_init();

	return rv != CKR_OK ? rv : CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV
C_SetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState,
    CK_ULONG ulOperationStateLen, CK_OBJECT_HANDLE hEncryptionKey,
    CK_OBJECT_HANDLE hAuthenticationKey)
{
	CK_RV rv = ev_check_init();

	return rv != CKR_OK ? rv : CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV
C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
    CK_ULONG ulPinLen)
{
	ev_session *s;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	rv = ev_session_acquire(hSession, &s);
	if (rv != CKR_OK)
		return rv;
	/* No protected authentication path: the PIN comes from the caller. */
	if (pPin == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else
		rv = ev_session_login(s, userType, pPin, ulPinLen);
	/* An attested login opens the zone: keys due rotate now when its policy says so. */
	if (rv == CKR_OK && userType == CKU_USER)
		ev_rotate_due_at_login(s);
	ev_session_release(s);
	return rv;
}

CK_RV
C_LoginUser(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
    CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pUsername, CK_ULONG ulUsernameLen)
{
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	/* Zones have one user; a named user is not something a zone knows. */
	if (pUsername != NULL && ulUsernameLen > 0)
		return CKR_USER_TYPE_INVALID;
	return C_Login(hSession, userType, pPin, ulPinLen);
}

CK_RV
C_Logout(CK_SESSION_HANDLE hSession)
{
	ev_session *s;
	ev_token *t;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	rv = ev_session_acquire(hSession, &s);
	if (rv != CKR_OK)
		return rv;
	t = s->token; /* tokens live until C_Finalize */
	/* Released first: the logout locks every session of the token in turn. */
	ev_session_release(s);
	return ev_session_logout(t);
}

CK_RV
C_SessionCancel(CK_SESSION_HANDLE hSession, CK_FLAGS flags)
{
	ev_session *s;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	rv = ev_session_acquire(hSession, &s);
	if (rv != CKR_OK)
		return rv;
	if (flags & CKF_ENCRYPT)
		ev_active_end(&s->enc);
	if (flags & CKF_DECRYPT)
		ev_active_end(&s->dec);
	if (flags & CKF_SIGN)
		ev_active_end(&s->sign);
	if (flags & CKF_VERIFY)
		ev_active_end(&s->verify);
	if (flags & CKF_DIGEST)
		ev_active_end(&s->digest);
	if (flags & CKF_FIND_OBJECTS) {
		free(s->found);
		s->found = NULL;
		s->nfound = s->pos = 0;
		s->finding = 0;
	}
	ev_session_release(s);
	return CKR_OK;
}
