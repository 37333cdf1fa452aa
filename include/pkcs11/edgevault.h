/*
 * edgevault's extensions to PKCS#11: vendor attributes, and return codes
 * and interfaces that later releases add. Include after pkcs11.h.
 */
#ifndef EDGEVAULT_H
#define EDGEVAULT_H

#include "pkcs11.h"

/* Vendor-defined values carry 'EV' (0x4556) in their high bits. */
#define CKA_EV_BASE (CKA_VENDOR_DEFINED | 0x45560000UL)

/*
 * CKA_EV_GENERATION (CK_ULONG, read-only): the generation of an
 * operational key; 1 for a new key, one more at each rotation.
 */
#define CKA_EV_GENERATION (CKA_EV_BASE + 1)

/* The manufacturer ID in CK_INFO and CK_TOKEN_INFO. */
#define EDGEVAULT_MANUFACTURER "edgevault"

#endif
