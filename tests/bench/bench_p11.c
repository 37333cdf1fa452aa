/* Helpers shared by the bench programs (bench_p11.h). */
#include <string.h>
#include <time.h>

#include "bench_p11.h"

CK_RV
bench_init(CK_FUNCTION_LIST *f)
{
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };

	return f->C_Initialize(&args);
}

CK_RV
bench_find_token(CK_FUNCTION_LIST *f, const char *label, CK_SLOT_ID *slot)
{
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64, i;
	CK_TOKEN_INFO ti;
	char lab[32];
	size_t len = strlen(label);
	CK_RV rv;

	memset(lab, ' ', sizeof(lab));
	memcpy(lab, label, len > 32 ? 32 : len);
	rv = f->C_GetSlotList(CK_TRUE, slots, &n);
	if (rv != CKR_OK)
		return rv;
	for (i = 0; i < n; i++)
		if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
		    memcmp(ti.label, lab, sizeof(lab)) == 0) {
			*slot = slots[i];
			return CKR_OK;
		}
	return CKR_TOKEN_NOT_PRESENT;
}

double
bench_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
