/* Placeholder: replaced in this issue by the attestation and rotation tests. */
#include "harness.h"

int
main(void)
{
	return 77;
}
