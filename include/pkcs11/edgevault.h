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

#endif
