/*
 * LD_PRELOAD for tests/bench/scale.sh's store set-up only: fsync,
 * fdatasync and syncfs return at once, so that making 100,000 keys through
 * the API takes seconds, not minutes. The script syncs once after the
 * set-up (sync(1)); the product's durability is untouched (measurements
 * never run with this).
 */
#include <unistd.h>

int fsync(int fd);
int fdatasync(int fd);
int syncfs(int fd);

int
fsync(int fd)
{
	(void)fd;
	return 0;
}

int
fdatasync(int fd)
{
	(void)fd;
	return 0;
}

int
syncfs(int fd)
{
	(void)fd;
	return 0;
}
