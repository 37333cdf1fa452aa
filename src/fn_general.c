/* General-purpose functions: C_Initialize, C_Finalize, C_GetInfo. */
#include <pthread.h>
#include <string.h>

#include "module.h"
#include "pkcs11/edgevault.h"
#include "session.h"

/* C_Initialize and C_Finalize may race from different threads: serialise them. */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

CK_RV
C_Initialize(CK_VOID_PTR pInitArgs)
{
	CK_C_INITIALIZE_ARGS *args = pInitArgs;
	CK_RV rv;

	/* A non-NULL pReserved is accepted: p11-kit passes one. */
	pthread_mutex_lock(&init_lock);
	rv = ev_module_init(args);
	pthread_mutex_unlock(&init_lock);
	return rv;
}

CK_RV
C_Finalize(CK_VOID_PTR pReserved)
{
	CK_RV rv;

	if (pReserved != NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&init_lock);
	rv = ev_check_init();
	if (rv == CKR_OK) {
		ev_module_stop_events();
		(void)ev_session_close_all(0, 1);
		ev_module_fini();
	}
	pthread_mutex_unlock(&init_lock);
	return rv;
}

CK_RV
C_GetInfo(CK_INFO_PTR pInfo)
{
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	if (pInfo == NULL)
		return CKR_ARGUMENTS_BAD;
	memset(pInfo, 0, sizeof(*pInfo));
	pInfo->cryptokiVersion.major = 3;
	pInfo->cryptokiVersion.minor = 0;
	ev_padded_copy(pInfo->manufacturerID, sizeof(pInfo->manufacturerID),
	    EDGEVAULT_MANUFACTURER);
	ev_padded_copy(pInfo->libraryDescription, sizeof(pInfo->libraryDescription),
	    "edgevault PKCS#11 module");
	pInfo->libraryVersion.major = 0;
	pInfo->libraryVersion.minor = 1;
	return CKR_OK;
}

CK_RV
C_GetFunctionStatus(CK_SESSION_HANDLE hSession)
{
	CK_RV rv = ev_check_init();

	return rv != CKR_OK ? rv : CKR_FUNCTION_NOT_PARALLEL;
}

CK_RV
C_CancelFunction(CK_SESSION_HANDLE hSession)
{
	CK_RV rv = ev_check_init();

	return rv != CKR_OK ? rv : CKR_FUNCTION_NOT_PARALLEL;
}
