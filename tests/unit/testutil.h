/*
 * What the unit tests share (tests/unit/testutil.c): a temporary
 * directory per test, files written into it, and the runner. Failures
 * are Check assertions, so a helper that cannot do its job fails the
 * test that called it.
 */
#ifndef EV_TESTUTIL_H
#define EV_TESTUTIL_H

#include <stddef.h>
#include <string.h>
#include <sys/types.h>

#include <check.h>

/* Fail unless the message err holds s. */
#define ck_assert_err_has(err, s)                                                                  \
	ck_assert_msg(strstr((err), (s)) != NULL, "\"%s\" not in error: %s", (s), (err))

/* The running test's temporary directory (tmpdir_make). */
extern char tmpdir[256];

/*
 * Make tmpdir as <run>/<prefix>_XXXXXX, in the run's directory that
 * run_suite() made (else in $TMPDIR, /tmp when unset): call it from a
 * checked fixture's setup.
 */
void tmpdir_make(const char *prefix);

/* Remove tmpdir and all below it: a checked fixture's teardown. */
void tmpdir_remove(void);

/* tmpdir/name, in a static buffer (one of four, rotating). */
const char *path_of(const char *name);

/*
 * Write len bytes of data to tmpdir/name (created or truncated, mode as
 * the umask leaves it); its path (path_of).
 */
const char *write_file(const char *name, const void *data, size_t len);

/* write_file(), then the file's mode set to mode. */
const char *write_file_mode(const char *name, const void *data, size_t len, mode_t mode);

/* write_file_mode() of a C string, without its NUL. */
const char *write_text(const char *name, const char *text, mode_t mode);

/*
 * Run suite s, libsodium's allocator set up first (ev_secmem_init, needed
 * before the first ev_secret): EXIT_SUCCESS when every test passed, else
 * EXIT_FAILURE. The runner frees s. The tests' directories are made in one
 * directory for the run, in $TMPDIR, removed at the end whatever the
 * outcome (a failed test's teardown does not run in fork mode).
 */
int run_suite(Suite *s);

#endif
