/* Random number generation: libsodium's generator (the kernel's CSPRNG). */
#include <sodium.h>

#include "module.h"
#include "session.h"

CK_RV
C_SeedRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSeed, CK_ULONG ulSeedLen)
{
	ev_session *s;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	rv = ev_session_acquire(hSession, &s);
	if (rv != CKR_OK)
		return rv;
	ev_session_release(s);
	if (pSeed == NULL && ulSeedLen > 0)
		return CKR_ARGUMENTS_BAD;
	/* The kernel's generator needs no help, and takes none from callers. */
	return CKR_RANDOM_SEED_NOT_SUPPORTED;
}

CK_RV
C_GenerateRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pRandomData, CK_ULONG ulRandomLen)
{
	ev_session *s;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	rv = ev_session_acquire(hSession, &s);
	if (rv != CKR_OK)
		return rv;
	ev_session_release(s);
	if (pRandomData == NULL && ulRandomLen > 0)
		return CKR_ARGUMENTS_BAD;
	if (ulRandomLen > 0)
		randombytes_buf(pRandomData, ulRandomLen);
	return CKR_OK;
}
