/* Helpers shared by the bench programs that load a PKCS#11 module. */
#ifndef EV_BENCH_P11_H
#define EV_BENCH_P11_H

#include "pkcs11/pkcs11.h"

/* C_Initialize with OS locking. */
CK_RV bench_init(CK_FUNCTION_LIST *f);

/* *slot: the slot whose token has this label; CKR_TOKEN_NOT_PRESENT when none. */
CK_RV bench_find_token(CK_FUNCTION_LIST *f, const char *label, CK_SLOT_ID *slot);

/* CLOCK_MONOTONIC, in seconds. */
double bench_now_s(void);

#endif
