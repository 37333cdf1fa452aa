/*
 * What the unit tests share (testutil.h).
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "secmem.h"
#include "testutil.h"

char tmpdir[256];

/*
 * The run's directory (run_suite): each test's tmpdir is made in it, and
 * it is removed after the last test, with the directories of tests that
 * failed (Check skips a checked fixture's teardown when a test fails in
 * fork mode).
 */
static char rundir[160];

/* Where temporary directories go: $TMPDIR, else /tmp. */
static const char *
tmp_base(void)
{
	const char *t = getenv("TMPDIR");

	return t != NULL && *t != '\0' ? t : "/tmp";
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	(void)remove(path);
	return 0; /* go on: remove what can be */
}

static void
rm_tree(const char *dir)
{
	(void)nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void
tmpdir_make(const char *prefix)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/%s_XXXXXX", rundir[0] != '\0' ? rundir : tmp_base(),
	    prefix);
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

void
tmpdir_remove(void)
{
	rm_tree(tmpdir);
}

const char *
path_of(const char *name)
{
	static char bufs[4][400];
	static int i;
	char *p = bufs[i++ % 4];

	snprintf(p, 400, "%s/%s", tmpdir, name);
	return p;
}

const char *
write_file(const char *name, const void *data, size_t len)
{
	const char *p = path_of(name);
	FILE *f = fopen(p, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
	return p;
}

const char *
write_file_mode(const char *name, const void *data, size_t len, mode_t mode)
{
	const char *p = write_file(name, data, len);

	ck_assert_int_eq(chmod(p, mode), 0);
	return p;
}

const char *
write_text(const char *name, const char *text, mode_t mode)
{
	return write_file_mode(name, text, strlen(text), mode);
}

int
run_suite(Suite *s)
{
	SRunner *sr;
	int failed;

	if (ev_secmem_init() != 0)
		return EXIT_FAILURE;
	snprintf(rundir, sizeof(rundir), "%s/ev-unit-XXXXXX", tmp_base());
	if (mkdtemp(rundir) == NULL) {
		fprintf(stderr, "cannot make a directory in %s\n", tmp_base());
		return EXIT_FAILURE;
	}
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	rm_tree(rundir);
	rundir[0] = '\0';
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
