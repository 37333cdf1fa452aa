/* Slot events. Revocation and rotation will raise them; until then none happen. */
#include "module.h"

CK_RV
C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved)
{
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	if (pSlot == NULL || pReserved != NULL)
		return CKR_ARGUMENTS_BAD;
	if (flags & CKF_DONT_BLOCK)
		return CKR_NO_EVENT;
	/* Blocking waits need the event source (issue: revocation and slot events). */
	return CKR_FUNCTION_NOT_SUPPORTED;
}
