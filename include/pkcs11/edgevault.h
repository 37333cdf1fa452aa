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

/*
 * Generations. A search whose template does not name CKA_EV_GENERATION
 * finds current generations only; naming it (with the generation wanted)
 * finds retired ones too. A retired key still verifies, decrypts and
 * unwraps until its grace period ends, then it is destroyed; it never
 * signs, encrypts, wraps or derives (CKR_KEY_FUNCTION_NOT_PERMITTED), and
 * its material never leaves: not by C_WrapKey (CKR_KEY_NOT_WRAPPABLE),
 * C_GetAttributeValue (CKR_ATTRIBUTE_SENSITIVE), C_DigestKey
 * (CKR_KEY_INDIGESTIBLE) or C_CopyObject (CKR_ACTION_PROHIBITED).
 *
 * CKA_EV_RETIRED (CK_BBOOL, read-only): whether a key was rotated out.
 * CKA_EV_DESTROY_AT (CK_ULONG, read-only): for a retired key, the unix
 * time its grace period ends and it is destroyed; 0 for a current one.
 */
#define CKA_EV_RETIRED (CKA_EV_BASE + 2)
#define CKA_EV_DESTROY_AT (CKA_EV_BASE + 3)

/* The manufacturer ID in CK_INFO and CK_TOKEN_INFO. */
#define EDGEVAULT_MANUFACTURER "edgevault"

/*
 * The admin interface: a vendor interface offered by C_GetInterface
 * under the name below, version 1.4 (1.0 lacks the attestation and
 * rotation functions, 1.1 lacks EV_RebindZone, 1.2 the audit functions,
 * 1.3 EV_RotateKeys; asking for 1.0, 1.1, 1.2 or 1.3 gets the same list,
 * labelled with the version asked for). C_GetInterfaceList does not list
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

/*
 * A zone's policy, as the module enforces it (from the configuration's
 * [policy] and [zone N] sections). Times are seconds.
 */
typedef struct EV_ZONE_POLICY {
	CK_BBOOL requireAttestation; /* C_Login(CKU_USER) needs fresh evidence */
	CK_BBOOL requireNonce;       /* evidence must carry the device's current nonce */
	CK_BBOOL autoRotate;         /* keys due rotate when an attested login opens the zone */
	CK_ULONG ulMaxEvidenceAge;   /* evidence issued longer ago than this is stale */
	CK_ULONG ulRotationPeriod;   /* a generation is due this long after it was made; 0: never */
	CK_ULONG ulGracePeriod;      /* a retired generation lives this long */
	CK_UTF8CHAR provider[32];    /* evidence provider ("result"), blank padded; blank: none */
} EV_ZONE_POLICY;

/* Where EV_Attest found the zone (EV_ATTESTATION.ulState). */
#define EV_ATTEST_ACCEPTED 1UL
#define EV_ATTEST_REFUSED 2UL

/*
 * The outcome of appraising evidence. szReason is a NUL-terminated
 * sentence: why it was refused, or what was accepted.
 */
typedef struct EV_ATTESTATION {
	CK_ULONG ulState;      /* EV_ATTEST_ACCEPTED or EV_ATTEST_REFUSED */
	CK_ULONG ulValidUntil; /* accepted: unix time the evidence goes stale (exclusive) */
	CK_CHAR szReason[160];
} EV_ATTESTATION;

/* EV_RotationCandidates: which keys. */
#define EV_ROTATE_DUE 1UL /* those whose rotation period has passed */
#define EV_ROTATE_ALL 2UL /* every rotatable key */

/* The size of a device nonce (EV_NewNonce). */
#define EV_NONCE_LEN 32UL

typedef struct EV_ADMIN_FUNCTION_LIST EV_ADMIN_FUNCTION_LIST;

struct EV_ADMIN_FUNCTION_LIST {
	CK_VERSION version; /* 1.4 (or the 1.0, 1.1, 1.2 or 1.3 asked for) */
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

	/* Version 1.1: attestation and rotation (doc/rotation.md). */

	/*
	 * The policy of the zone in slotID. CKR_SLOT_ID_INVALID,
	 * CKR_TOKEN_NOT_PRESENT (the free slot, a revoked zone),
	 * CKR_ARGUMENTS_BAD.
	 */
	CK_RV (*EV_GetZonePolicy)(CK_SLOT_ID slotID, EV_ZONE_POLICY *pPolicy);
	/*
	 * Appraise the evidence the zone's provider has now, for the
	 * session's zone, and record the outcome. When the user is logged
	 * in, accepted evidence also renews this process's attested state of
	 * the zone (what a gated zone's keys need to stay usable). CKR_OK with
	 * *pInfo filled, whether accepted or refused;
	 * CKR_FUNCTION_REJECTED when no provider is configured;
	 * CKR_ARGUMENTS_BAD, CKR_DEVICE_ERROR.
	 */
	CK_RV (*EV_Attest)(CK_SESSION_HANDLE hSession, EV_ATTESTATION *pInfo);
	/*
	 * A fresh device nonce (EV_NONCE_LEN random bytes) for the verifier
	 * to put in its next attestation result; it replaces the previous
	 * one, so evidence carrying an older nonce is refused from now on.
	 * Two-call convention on pNonce / *pulNonceLen
	 * (CKR_BUFFER_TOO_SMALL). Any session.
	 */
	CK_RV (*EV_NewNonce)(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pNonce,
	    CK_ULONG_PTR pulNonceLen);
	/*
	 * Rotation candidates of the session's zone (EV_ROTATE_DUE or
	 * EV_ROTATE_ALL): handles of current-generation private and secret
	 * keys made on this token's behalf (not copies). Two-call convention
	 * (CKR_BUFFER_TOO_SMALL). Needs the user logged in
	 * (CKR_USER_NOT_LOGGED_IN).
	 */
	CK_RV (*EV_RotationCandidates)(CK_SESSION_HANDLE hSession, CK_ULONG ulWhich,
	    CK_OBJECT_HANDLE_PTR phKeys, CK_ULONG_PTR pulCount);
	/*
	 * Rotate a key: a new generation with the same label and attributes,
	 * new material and a new CKA_ID (for key pairs, the SHA-1 of the new
	 * public key's SubjectPublicKeyInfo; for secret keys, 20 random
	 * bytes); the old generation (and the token copies made of it) is
	 * retired for the zone's grace period. hKey is a current private or
	 * secret key (its public key, same label, CKA_ID and key type, rotates
	 * with it), or a public key whose private key is on the token.
	 * *phNewKey (may be NULL) gets the new generation of hKey's object.
	 * Needs a read/write session (CKR_SESSION_READ_ONLY), the user logged
	 * in (CKR_USER_NOT_LOGGED_IN), and fresh evidence accepted now for the
	 * zone, whatever its login policy (CKR_FUNCTION_REJECTED, recorded).
	 * CKR_KEY_HANDLE_INVALID (not a key), CKR_KEY_FUNCTION_NOT_PERMITTED
	 * (retired, a copy, a session object, or a public key alone).
	 */
	CK_RV (*EV_RotateKey)(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey,
	    CK_OBJECT_HANDLE_PTR phNewKey);
	/*
	 * Rotate the session's zone key: a new zone key sealed by the root,
	 * every key of the zone wrapped again under it, in one transaction
	 * (a crash leaves the old zone key and blobs, or the new ones). Needs
	 * a read/write session with the SO logged in (CKR_USER_NOT_LOGGED_IN:
	 * also when the SO logged out meanwhile, or another process changed
	 * the SO PIN since this SO logged in), and fresh evidence
	 * (CKR_FUNCTION_REJECTED). *pulCount (may be NULL) gets the number of
	 * keys wrapped again. CKR_DEVICE_REMOVED when the zone was revoked or
	 * re-initialised meanwhile; CKR_DEVICE_ERROR when a blob of the zone
	 * does not open under its key (nothing changes then).
	 */
	CK_RV (*EV_RotateZoneKey)(CK_SESSION_HANDLE hSession, CK_ULONG_PTR pulCount);

	/* Version 1.2: PCR binding (doc/key-protection.md, "PCR binding"). */

	/*
	 * Give the session's zone a new zone key sealed as the zone's policy
	 * says now: to the PCRs its pcrs setting names, at the values they
	 * hold now (with a new SO recovery copy), or to no PCR when it names
	 * none; every key of the zone is wrapped again under it, in one
	 * transaction, as by EV_RotateZoneKey. A new key, so that no older
	 * sealed blob of the zone key (unbound, or sealed to earlier PCR
	 * values) opens the zone any more. The old key is opened as usual
	 * or, when the PCRs it is bound to have changed, from the SO recovery
	 * copy with the logged-in SO's PIN. Needs a read/write session
	 * (CKR_SESSION_READ_ONLY) with the SO logged in
	 * (CKR_USER_NOT_LOGGED_IN: also when the SO logged out meanwhile, or
	 * another process changed the SO PIN since this SO logged in; log in
	 * again then), and for a zone whose logins need attestation, fresh
	 * evidence (CKR_FUNCTION_REJECTED, recorded). *pulPcrs (may be NULL)
	 * gets the PCRs it is bound to now (bit i: PCR i of the SHA-256 bank;
	 * 0: none). CKR_FUNCTION_REJECTED when its PCRs changed and it has no
	 * SO recovery copy, or when the TPM is in dictionary-attack lockout
	 * (logged: it ends after the TPM's recovery time, or when the TPM's
	 * owner clears it); CKR_FUNCTION_FAILED when the copy does not open
	 * with the auth value of the SO's PIN (the copy and the stored PIN
	 * hash disagree; logged; the TPM counts it towards its lockout);
	 * CKR_DEVICE_REMOVED when the zone was revoked or re-initialised
	 * meanwhile; CKR_DEVICE_ERROR when a blob of the zone does not open
	 * under its key (nothing changes then), or the root fails.
	 */
	CK_RV (*EV_RebindZone)(CK_SESSION_HANDLE hSession, CK_ULONG_PTR pulPcrs);

	/* Version 1.3: the audit trail (doc/audit.md). */

	/*
	 * Write a signed checkpoint line now, when lines were written since
	 * the last one (none is added otherwise), reaching the root first
	 * when this process has not (the checkpoint key is unsealed then).
	 * CKR_OK; CKR_FUNCTION_REJECTED when [audit] enabled is false;
	 * CKR_DEVICE_ERROR when the root cannot be reached, the checkpoint
	 * key cannot be used, the file cannot be locked, written or synced,
	 * or it no longer holds its last checkpoint (cut back, whether or not
	 * written again since); CKR_HOST_MEMORY.
	 */
	CK_RV (*EV_AuditCheckpoint)(void);
	/*
	 * The checkpoint public key (Ed25519, 32 bytes) the store records,
	 * confirmed now: its private half unsealed under the root and found
	 * to derive it. Two-call convention on pKey / *pulKeyLen
	 * (CKR_BUFFER_TOO_SMALL; pKey NULL: the length only, the key still
	 * confirmed). A store with no key yet gets one now (sealed under the
	 * root, recorded). CKR_DEVICE_ERROR when the root cannot be reached
	 * or does not open the sealed half (a store copied under another
	 * root), the halves disagree or one is missing, or the store fails;
	 * CKR_HOST_MEMORY; CKR_ARGUMENTS_BAD (pulKeyLen NULL);
	 * CKR_FUNCTION_REJECTED when [audit] enabled is false.
	 */
	CK_RV (*EV_AuditPublicKey)(CK_BYTE_PTR pKey, CK_ULONG_PTR pulKeyLen);

	/* Version 1.4: rotation in batches (doc/rotation.md, "Many keys"). */

	/*
	 * Rotate ulCount keys as EV_RotateKey rotates one (phKeys[i] as its
	 * hKey; every phKeys[i] is a current private or secret key, or a
	 * public key with its private key on the token), appraising the
	 * evidence once for the whole call, and committing in order, in
	 * transactions of up to 256 keys: each is durable when the next
	 * starts, and a crash leaves each fully rotated (both halves of every
	 * pair, every copy retired) or untouched. phNewKeys (may be NULL;
	 * else ulCount entries) gets phKeys[i]'s new generation for every key
	 * rotated; *pulDone (may be NULL) gets how many were rotated: always
	 * the first *pulDone of phKeys, also when an error is returned.
	 *
	 * Before anything changes, every handle is checked and then the
	 * evidence appraised: a bad one rotates none of them (*pulDone = 0):
	 * CKR_ARGUMENTS_BAD (phKeys NULL with ulCount > 0; the same key named
	 * twice, or both halves of a pair), CKR_SESSION_READ_ONLY,
	 * CKR_USER_NOT_LOGGED_IN, CKR_KEY_HANDLE_INVALID (not a key),
	 * CKR_KEY_FUNCTION_NOT_PERMITTED (retired, a copy, a session object,
	 * a public key alone), CKR_FUNCTION_REJECTED (no fresh evidence,
	 * recorded). A transaction that fails after that (a key rotated,
	 * revoked or destroyed by another process meanwhile:
	 * CKR_KEY_FUNCTION_NOT_PERMITTED or CKR_KEY_HANDLE_INVALID;
	 * CKR_DEVICE_ERROR; CKR_HOST_MEMORY) is rolled back and ends the
	 * call: the keys before it stay rotated, it and the keys after it are
	 * untouched. ulCount 0: CKR_OK, nothing done (the session is still
	 * checked).
	 */
	CK_RV (*EV_RotateKeys)(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phKeys,
	    CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phNewKeys, CK_ULONG_PTR pulDone);
};

#endif
