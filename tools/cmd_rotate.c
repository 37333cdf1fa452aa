/* Placeholder until the rotation commands land (replaced in this issue). */
#include <stdio.h>

#include "tool.h"

int
cmd_rotate(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "edgevault: rotate: not built yet\n");
	return 2;
}

int
cmd_policy(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "edgevault: policy: not built yet\n");
	return 2;
}
