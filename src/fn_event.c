/* Slot events: revocations, zones created, re-initialised or revoked, rotations (event.h). */
#include "event.h"
#include "module.h"

CK_RV
C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved)
{
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	if (pSlot == NULL || pReserved != NULL)
		return CKR_ARGUMENTS_BAD;
	return ev_events_wait(flags, pSlot);
}
