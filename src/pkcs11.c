/*
 * The module's exported entry points and function lists, and nothing else.
 * Only C_GetFunctionList, C_GetInterfaceList and C_GetInterface leave the
 * shared object (see -export-symbols-regex in Makefile.am); every other
 * function is reached through the lists below.
 */
#include <string.h>

#include "admin.h"
#include "common.h"

#define EV_EXPORT __attribute__((visibility("default")))

#define EV_FUNCTIONS_240 \
	.C_Initialize = C_Initialize, \
	.C_Finalize = C_Finalize, \
	.C_GetInfo = C_GetInfo, \
	.C_GetFunctionList = C_GetFunctionList, \
	.C_GetSlotList = C_GetSlotList, \
	.C_GetSlotInfo = C_GetSlotInfo, \
	.C_GetTokenInfo = C_GetTokenInfo, \
	.C_GetMechanismList = C_GetMechanismList, \
	.C_GetMechanismInfo = C_GetMechanismInfo, \
	.C_InitToken = C_InitToken, \
	.C_InitPIN = C_InitPIN, \
	.C_SetPIN = C_SetPIN, \
	.C_OpenSession = C_OpenSession, \
	.C_CloseSession = C_CloseSession, \
	.C_CloseAllSessions = C_CloseAllSessions, \
	.C_GetSessionInfo = C_GetSessionInfo, \
	.C_GetOperationState = C_GetOperationState, \
	.C_SetOperationState = C_SetOperationState, \
	.C_Login = C_Login, \
	.C_Logout = C_Logout, \
	.C_CreateObject = C_CreateObject, \
	.C_CopyObject = C_CopyObject, \
	.C_DestroyObject = C_DestroyObject, \
	.C_GetObjectSize = C_GetObjectSize, \
	.C_GetAttributeValue = C_GetAttributeValue, \
	.C_SetAttributeValue = C_SetAttributeValue, \
	.C_FindObjectsInit = C_FindObjectsInit, \
	.C_FindObjects = C_FindObjects, \
	.C_FindObjectsFinal = C_FindObjectsFinal, \
	.C_EncryptInit = C_EncryptInit, \
	.C_Encrypt = C_Encrypt, \
	.C_EncryptUpdate = C_EncryptUpdate, \
	.C_EncryptFinal = C_EncryptFinal, \
	.C_DecryptInit = C_DecryptInit, \
	.C_Decrypt = C_Decrypt, \
	.C_DecryptUpdate = C_DecryptUpdate, \
	.C_DecryptFinal = C_DecryptFinal, \
	.C_DigestInit = C_DigestInit, \
	.C_Digest = C_Digest, \
	.C_DigestUpdate = C_DigestUpdate, \
	.C_DigestKey = C_DigestKey, \
	.C_DigestFinal = C_DigestFinal, \
	.C_SignInit = C_SignInit, \
	.C_Sign = C_Sign, \
	.C_SignUpdate = C_SignUpdate, \
	.C_SignFinal = C_SignFinal, \
	.C_SignRecoverInit = C_SignRecoverInit, \
	.C_SignRecover = C_SignRecover, \
	.C_VerifyInit = C_VerifyInit, \
	.C_Verify = C_Verify, \
	.C_VerifyUpdate = C_VerifyUpdate, \
	.C_VerifyFinal = C_VerifyFinal, \
	.C_VerifyRecoverInit = C_VerifyRecoverInit, \
	.C_VerifyRecover = C_VerifyRecover, \
	.C_DigestEncryptUpdate = C_DigestEncryptUpdate, \
	.C_DecryptDigestUpdate = C_DecryptDigestUpdate, \
	.C_SignEncryptUpdate = C_SignEncryptUpdate, \
	.C_DecryptVerifyUpdate = C_DecryptVerifyUpdate, \
	.C_GenerateKey = C_GenerateKey, \
	.C_GenerateKeyPair = C_GenerateKeyPair, \
	.C_WrapKey = C_WrapKey, \
	.C_UnwrapKey = C_UnwrapKey, \
	.C_DeriveKey = C_DeriveKey, \
	.C_SeedRandom = C_SeedRandom, \
	.C_GenerateRandom = C_GenerateRandom, \
	.C_GetFunctionStatus = C_GetFunctionStatus, \
	.C_CancelFunction = C_CancelFunction, \
	.C_WaitForSlotEvent = C_WaitForSlotEvent

static CK_FUNCTION_LIST functions_240 = {
	.version = { 2, 40 },
	EV_FUNCTIONS_240,
};

static CK_FUNCTION_LIST_3_0 functions_300 = {
	.version = { 3, 0 },
	EV_FUNCTIONS_240,
	.C_GetInterfaceList = C_GetInterfaceList,
	.C_GetInterface = C_GetInterface,
	.C_LoginUser = C_LoginUser,
	.C_SessionCancel = C_SessionCancel,
	.C_MessageEncryptInit = C_MessageEncryptInit,
	.C_EncryptMessage = C_EncryptMessage,
	.C_EncryptMessageBegin = C_EncryptMessageBegin,
	.C_EncryptMessageNext = C_EncryptMessageNext,
	.C_MessageEncryptFinal = C_MessageEncryptFinal,
	.C_MessageDecryptInit = C_MessageDecryptInit,
	.C_DecryptMessage = C_DecryptMessage,
	.C_DecryptMessageBegin = C_DecryptMessageBegin,
	.C_DecryptMessageNext = C_DecryptMessageNext,
	.C_MessageDecryptFinal = C_MessageDecryptFinal,
	.C_MessageSignInit = C_MessageSignInit,
	.C_SignMessage = C_SignMessage,
	.C_SignMessageBegin = C_SignMessageBegin,
	.C_SignMessageNext = C_SignMessageNext,
	.C_MessageSignFinal = C_MessageSignFinal,
	.C_MessageVerifyInit = C_MessageVerifyInit,
	.C_VerifyMessage = C_VerifyMessage,
	.C_VerifyMessageBegin = C_VerifyMessageBegin,
	.C_VerifyMessageNext = C_VerifyMessageNext,
	.C_MessageVerifyFinal = C_MessageVerifyFinal,
};

static CK_UTF8CHAR interface_name[] = "PKCS 11";

/* The 3.0 interface first: it is the default. */
static CK_INTERFACE interfaces[] = {
	{ interface_name, &functions_300, 0 },
	{ interface_name, &functions_240, 0 },
};

static CK_UTF8CHAR admin_name[] = EV_ADMIN_INTERFACE_NAME;

/* Offered by name only (see include/pkcs11/edgevault.h). */
static CK_INTERFACE admin_interface = { admin_name, &ev_admin_functions, 0 };
static CK_INTERFACE admin_interface_13 = {admin_name, &ev_admin_functions_13, 0};
static CK_INTERFACE admin_interface_12 = {admin_name, &ev_admin_functions_12, 0};
static CK_INTERFACE admin_interface_11 = {admin_name, &ev_admin_functions_11, 0};
static CK_INTERFACE admin_interface_10 = { admin_name, &ev_admin_functions_10, 0 };

EV_EXPORT CK_RV
C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList)
{
	if (ppFunctionList == NULL)
		return CKR_ARGUMENTS_BAD;
	*ppFunctionList = &functions_240;
	return CKR_OK;
}

EV_EXPORT CK_RV
C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount)
{
	CK_ULONG n = EV_ARRAY_SIZE(interfaces);

	if (pulCount == NULL)
		return CKR_ARGUMENTS_BAD;
	if (pInterfacesList == NULL) {
		*pulCount = n;
		return CKR_OK;
	}
	if (*pulCount < n) {
		*pulCount = n;
		return CKR_BUFFER_TOO_SMALL;
	}
	memcpy(pInterfacesList, interfaces, sizeof(interfaces));
	*pulCount = n;
	return CKR_OK;
}

EV_EXPORT CK_RV
C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
    CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags)
{
	size_t i;

	if (ppInterface == NULL)
		return CKR_ARGUMENTS_BAD;
	for (i = 0; i < EV_ARRAY_SIZE(interfaces); i++) {
		const CK_VERSION *v = interfaces[i].pFunctionList;

		if (pInterfaceName != NULL &&
		    strcmp((const char *)pInterfaceName, (const char *)interfaces[i].pInterfaceName) != 0)
			continue;
		if (pVersion != NULL &&
		    (pVersion->major != v->major || pVersion->minor != v->minor))
			continue;
		/* Every flag asked for must be one the interface has. */
		if ((interfaces[i].flags & flags) != flags)
			continue;
		*ppInterface = &interfaces[i];
		return CKR_OK;
	}
	if (pInterfaceName == NULL ||
	    strcmp((const char *)pInterfaceName, (const char *)admin_name) != 0 || flags != 0)
		return CKR_ARGUMENTS_BAD;
	/* Each version only adds functions at the end: an older caller gets them, labelled as
	 * asked. */
	if (pVersion == NULL || (pVersion->major == 1 && pVersion->minor == 4)) {
		*ppInterface = &admin_interface;
		return CKR_OK;
	}
	if (pVersion->major == 1 && pVersion->minor == 3) {
		*ppInterface = &admin_interface_13;
		return CKR_OK;
	}
	if (pVersion->major == 1 && pVersion->minor == 2) {
		*ppInterface = &admin_interface_12;
		return CKR_OK;
	}
	if (pVersion->major == 1 && pVersion->minor == 1) {
		*ppInterface = &admin_interface_11;
		return CKR_OK;
	}
	if (pVersion->major == 1 && pVersion->minor == 0) {
		*ppInterface = &admin_interface_10;
		return CKR_OK;
	}
	return CKR_ARGUMENTS_BAD;
}
