/* Message digesting. */
#include "module.h"
#include "object.h"
#include "pkcs11/edgevault.h"
#include "rotate.h"
#include "session.h"

CK_RV
C_DigestInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism)
{
	return ev_session_init_call(hSession, EV_OP_DIGEST, pMechanism, CK_INVALID_HANDLE);
}

CK_RV
C_Digest(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pDigest,
    CK_ULONG_PTR pulDigestLen)
{
	return ev_session_data_call(hSession, EV_OP_DIGEST, EV_STEP_ONESHOT, pData, ulDataLen,
	    pDigest, pulDigestLen);
}

CK_RV
C_DigestUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
	return ev_session_data_call(hSession, EV_OP_DIGEST, EV_STEP_UPDATE, pPart, ulPartLen,
	    NULL, NULL);
}

static CK_RV
digest_key(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey)
{
	ev_key *k = NULL;
	ev_object *o = NULL;
	ev_session *s;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	rv = ev_session_acquire(hSession, &s);
	if (rv != CKR_OK)
		return rv;
	if (s->digest.op == NULL) {
		rv = CKR_OPERATION_NOT_INITIALIZED;
		goto out;
	}
	rv = ev_object_get(s, hKey, &o);
	if (rv == CKR_OBJECT_HANDLE_INVALID)
		rv = CKR_KEY_HANDLE_INVALID;
	/* A retired generation's value is not fed anywhere, not even to a digest. */
	if (rv == CKR_OK && (o->cls != CKO_SECRET_KEY || ev_object_is_true(o, CKA_EV_RETIRED, 0)))
		rv = CKR_KEY_INDIGESTIBLE;
	/* Digesting a secret key is a use of it: gated like any other. */
	if (rv == CKR_OK)
		rv = ev_gate_use(s->token);
	if (rv == CKR_OK)
		rv = ev_object_key(o, &k);
	if (rv == CKR_OK)
		rv = ev_op_digest_key(s->digest.op, k);
	if (rv != CKR_OK)
		ev_active_end(&s->digest);
out:
	ev_key_free(k);
	ev_object_put(o);
	ev_session_release(s);
	return rv;
}

CK_RV
C_DigestKey(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey)
{
	CK_RV rv;

	ev_errq_mark();
	rv = digest_key(hSession, hKey);
	ev_errq_restore();
	return rv;
}

CK_RV
C_DigestFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen)
{
	return ev_session_data_call(hSession, EV_OP_DIGEST, EV_STEP_FINAL, NULL, 0, pDigest,
	    pulDigestLen);
}
