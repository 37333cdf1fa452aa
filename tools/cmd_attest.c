/* Placeholder until the attestation commands land (replaced in this issue). */
#include <stdio.h>

#include "tool.h"

int
cmd_attest(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "edgevault: attest: not built yet\n");
	return 2;
}
