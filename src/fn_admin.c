/* The admin interface's functions: check arguments and state, call the core. */
#include "admin.h"
#include "event.h"
#include "log.h"
#include "module.h"
#include "revoke.h"
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

EV_ADMIN_FUNCTION_LIST ev_admin_functions = {
	.version = { 1, 0 },
	.EV_ApplyRevocationList = EV_ApplyRevocationList,
	.EV_Revoke = EV_Revoke,
};
