/*
 * edgevault's extensions to PKCS#11: vendor attributes, and return codes
 * and interfaces that later releases add. Include after pkcs11.h.
 */
#ifndef EDGEVAULT_H
#define EDGEVAULT_H

#include "pkcs11.h"

/*
 * Vendor-defined attributes carry 'EV' (0x4556) above their low byte; bit
 * 30 (CKF_ARRAY_ATTRIBUTE) stays clear, so they are plain attributes.
 */
#define CKA_EV_BASE (CKA_VENDOR_DEFINED | 0x00455600UL)

/*
 * CKA_EV_GENERATION (CK_ULONG, read-only): the generation of an
 * operational key; 1 for a new key, one more at each rotation.
 */
#define CKA_EV_GENERATION (CKA_EV_BASE + 1)

/* The manufacturer ID in CK_INFO and CK_TOKEN_INFO. */
#define EDGEVAULT_MANUFACTURER "edgevault"

/*
 * The admin interface: a vendor interface offered by C_GetInterface
 * under the name below, version 1.0. C_GetInterfaceList does not list
 * it: generic callers that walk that list take every entry for a PKCS#11
 * function list. Its functions work in the module initialised with
 * C_Initialize, like the standard ones, and answer
 * CKR_CRYPTOKI_NOT_INITIALIZED otherwise.
 */
#define EV_ADMIN_INTERFACE_NAME "Edgevault Admin"

/* What a revocation entry names (EV_REVOCATION_ENTRY.kind). */
#define EV_REVOKE_KEY 1UL    /* key objects of the session's zone with a label */
#define EV_REVOKE_ZONE 2UL   /* the session's zone: its token leaves the slot */
#define EV_REVOKE_DEVICE 3UL /* every zone (signed lists only) */

/*
 * One local revocation. For EV_REVOKE_KEY: every key object (private,
 * public, secret) of the zone whose CKA_LABEL is pLabel, narrowed to
 * CKA_ID pId when ulIdLen > 0 and to generation ulGeneration when it is
 * not 0. pReason (UTF-8, 1..256 bytes, required) is kept in the store's
 * revocation history.
 */
typedef struct EV_REVOCATION_ENTRY {
	CK_ULONG kind;
	CK_UTF8CHAR_PTR pLabel;
	CK_ULONG ulLabelLen;
	CK_BYTE_PTR pId;
	CK_ULONG ulIdLen;
	CK_ULONG ulGeneration;
	CK_UTF8CHAR_PTR pReason;
	CK_ULONG ulReasonLen;
} EV_REVOCATION_ENTRY;

typedef struct EV_ADMIN_FUNCTION_LIST EV_ADMIN_FUNCTION_LIST;

struct EV_ADMIN_FUNCTION_LIST {
	CK_VERSION version; /* 1.0 */
	/*
	 * Apply a signed revocation list (the bytes of a list file) as if it
	 * had been dropped in the watched directory: verified against the
	 * pinned key, refused when older than or equal to the last applied
	 * list, for another device, badly signed or malformed (nothing
	 * changes, the refusal is recorded). *pulSequence (may be NULL) gets
	 * the list's sequence number when it is applied.
	 * CKR_OK (applied, or this exact list was applied before),
	 * CKR_SIGNATURE_INVALID (bad signature, or no key pinned),
	 * CKR_DATA_INVALID (malformed, wrong device),
	 * CKR_DATA_LEN_RANGE (too large), CKR_FUNCTION_REJECTED (rollback:
	 * sequence not above the last applied one), CKR_DEVICE_ERROR.
	 */
	CK_RV (*EV_ApplyRevocationList)(CK_BYTE_PTR pList, CK_ULONG ulListLen,
	    CK_ULONG_PTR pulSequence);
	/*
	 * Revoke locally in a read/write session with the zone's SO logged
	 * in (CKR_USER_NOT_LOGGED_IN otherwise, CKR_SESSION_READ_ONLY for a
	 * read-only one). CKR_ARGUMENTS_BAD for a bad entry,
	 * CKR_KEY_HANDLE_INVALID when EV_REVOKE_KEY names no key. The SO's
	 * session itself ends with the zone for EV_REVOKE_ZONE.
	 * *pulCount (may be NULL) gets the number of key objects revoked
	 * (EV_REVOKE_KEY) or 1 (EV_REVOKE_ZONE).
	 */
	CK_RV (*EV_Revoke)(CK_SESSION_HANDLE hSession, const EV_REVOCATION_ENTRY *pEntry,
	    CK_ULONG_PTR pulCount);
};

#endif
