/* Encryption and decryption, and the dual-function calls (not offered). */
#include "module.h"
#include "session.h"

CK_RV
C_EncryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	return ev_session_init_call(hSession, EV_OP_ENCRYPT, pMechanism, hKey);
}

CK_RV
C_Encrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
    CK_BYTE_PTR pEncryptedData, CK_ULONG_PTR pulEncryptedDataLen)
{
	return ev_session_data_call(hSession, EV_OP_ENCRYPT, EV_STEP_ONESHOT, pData, ulDataLen,
	    pEncryptedData, pulEncryptedDataLen);
}

CK_RV
C_EncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen,
    CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen)
{
	return ev_session_data_call(hSession, EV_OP_ENCRYPT, EV_STEP_UPDATE, pPart, ulPartLen,
	    pEncryptedPart, pulEncryptedPartLen);
}

CK_RV
C_EncryptFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastEncryptedPart,
    CK_ULONG_PTR pulLastEncryptedPartLen)
{
	return ev_session_data_call(hSession, EV_OP_ENCRYPT, EV_STEP_FINAL, NULL, 0,
	    pLastEncryptedPart, pulLastEncryptedPartLen);
}

CK_RV
C_DecryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	return ev_session_init_call(hSession, EV_OP_DECRYPT, pMechanism, hKey);
}

CK_RV
C_Decrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedData, CK_ULONG ulEncryptedDataLen,
    CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen)
{
	return ev_session_data_call(hSession, EV_OP_DECRYPT, EV_STEP_ONESHOT, pEncryptedData,
	    ulEncryptedDataLen, pData, pulDataLen);
}

CK_RV
C_DecryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen,
    CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)
{
	return ev_session_data_call(hSession, EV_OP_DECRYPT, EV_STEP_UPDATE, pEncryptedPart,
	    ulEncryptedPartLen, pPart, pulPartLen);
}

CK_RV
C_DecryptFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastPart, CK_ULONG_PTR pulLastPartLen)
{
	return ev_session_data_call(hSession, EV_OP_DECRYPT, EV_STEP_FINAL, NULL, 0, pLastPart,
	    pulLastPartLen);
}

/* Dual-function calls: not offered (CKF_DUAL_CRYPTO_OPERATIONS is not set). */
CK_RV
C_DigestEncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen,
    CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen)
{
	CK_RV rv = ev_check_init();

	return rv != CKR_OK ? rv : CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV
C_DecryptDigestUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart,
    CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)
{
	CK_RV rv = ev_check_init();

	return rv != CKR_OK ? rv : CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV
C_SignEncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen,
    CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen)
{
	CK_RV rv = ev_check_init();

	return rv != CKR_OK ? rv : CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV
C_DecryptVerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart,
    CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)
{
	CK_RV rv = ev_check_init();

	return rv != CKR_OK ? rv : CKR_FUNCTION_NOT_SUPPORTED;
}
