/*
 * Unit tests: secure memory (src/secmem.c). Many secrets held at once
 * (the module caches one per key it has used), zero-filled new secrets,
 * wiping, threads, fork, large secrets and a process that may lock no
 * memory.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "secmem.h"
#include "testutil.h"

/* More than vm.max_map_count (65530) mappings' worth. */
#define MANY 200000

/* The byte at offset j of secret i: a pattern that differs between secrets. */
static unsigned char
pattern(size_t i, size_t j)
{
	return (unsigned char)((i * 131 + j * 7 + 1) & 0xff);
}

START_TEST(test_many_secrets_held)
{
	ev_secret **s = calloc(MANY, sizeof(*s));
	size_t i, j, len, bad = 0;

	/* Few ck_asserts in the loops: each one talks to the runner. */
	ck_assert_ptr_nonnull(s);
	for (i = 0; i < MANY; i++) {
		len = 32 + (i * 37) % 481; /* 32..512 bytes */
		s[i] = ev_secret_new(len);
		if (s[i] == NULL || s[i]->len != len)
			ck_abort_msg("secret %zu of %d (%zu bytes) failed", i, MANY, len);
		for (j = 0; j < len; j++)
			s[i]->data[j] = pattern(i, j);
	}
	/* Every secret kept its own bytes: no two chunks overlap. */
	for (i = 0; i < MANY; i++)
		for (j = 0; j < s[i]->len; j++)
			bad += s[i]->data[j] != pattern(i, j);
	ck_assert_uint_eq(bad, 0);
	for (i = 0; i < MANY; i++)
		ev_secret_free(s[i]);
	free(s);
}
END_TEST

/* Whether n bytes at p are all zero. */
static int
all_zero(const unsigned char *p, size_t n)
{
	unsigned char acc = 0;
	size_t i;

	for (i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

START_TEST(test_new_is_zeroed_after_reuse)
{
	ev_secret *keep, *a, *b;
	size_t len;

	/* Every class, and a large secret: a reused chunk comes back all zero. */
	for (len = 0; len <= 5000; len += len < 64 ? 1 : 61) {
		keep = ev_secret_new(len); /* keeps the arena mapped */
		a = ev_secret_new(len);
		ck_assert_ptr_nonnull(keep);
		ck_assert_ptr_nonnull(a);
		memset(a->data, 0xa5, len + 1);
		ev_secret_free(a);
		b = ev_secret_new(len);
		ck_assert_ptr_nonnull(b);
		ck_assert_uint_eq(b->len, len);
		ck_assert_msg(all_zero(b->data, len + 1), "len %zu not zeroed", len);
		ev_secret_free(b);
		ev_secret_free(keep);
	}
}
END_TEST

START_TEST(test_free_wipes)
{
	ev_secret *keep = ev_secret_new(40), *a = ev_secret_new(40);
	unsigned char *data;
	size_t len;

	ck_assert_ptr_nonnull(keep);
	ck_assert_ptr_nonnull(a);
	memset(a->data, 0x5a, a->len);
	data = a->data;
	len = a->len;
	ev_secret_free(a);
	/*
	 * The arena stays mapped while keep lives in it, so the freed bytes
	 * can be read back: they must be gone (the free list's link is in
	 * the header, before the bytes).
	 */
	ck_assert(all_zero(data, len + 1));
	ev_secret_free(keep);
}
END_TEST

START_TEST(test_large)
{
	ev_secret *s = ev_secret_new(100000), *d;
	ev_secmem_stats st;

	ck_assert_ptr_nonnull(s);
	ck_assert(all_zero(s->data, s->len + 1));
	memset(s->data, 0x33, s->len);
	ev_secmem_get_stats(&st);
	ck_assert_uint_eq(st.large, 1);
	d = ev_secret_dup(s->data, s->len);
	ck_assert_ptr_nonnull(d);
	ck_assert(ev_secret_equal(s, d));
	ev_secret_free(s);
	ev_secret_free(d);
	ev_secmem_get_stats(&st);
	ck_assert_uint_eq(st.large, 0);
}
END_TEST

START_TEST(test_arenas_given_back)
{
	enum { N = 20000 };
	ev_secret **s = calloc(N, sizeof(*s));
	ev_secmem_stats before, full, after;
	size_t i;

	ck_assert_ptr_nonnull(s);
	ev_secmem_get_stats(&before);
	for (i = 0; i < N; i++) {
		s[i] = ev_secret_new(32 + i % 200);
		if (s[i] == NULL)
			ck_abort_msg("secret %zu failed", i);
	}
	ev_secmem_get_stats(&full);
	ck_assert_uint_eq(full.in_use, before.in_use + N);
	ck_assert_uint_gt(full.arenas, before.arenas + 8);
	for (i = 0; i < N; i++)
		ev_secret_free(s[i]);
	ev_secmem_get_stats(&after);
	ck_assert_uint_eq(after.in_use, before.in_use);
	/* At most one empty arena kept per size class. */
	ck_assert_uint_le(after.arenas, before.arenas + 16);
	free(s);
}
END_TEST

static atomic_int stop_churn;

/* Allocate, fill, check and free until told to stop; the count of bad secrets. */
static void *
churn(void *arg)
{
	size_t seed = (size_t)(uintptr_t)arg, i, k, bad = 0, rounds = 0;
	ev_secret *s[64] = {NULL};

	while (!atomic_load(&stop_churn) || rounds < 200) {
		for (i = 0; i < 64; i++) {
			k = (seed + i * 13 + rounds) % 700;
			s[i] = ev_secret_new(k);
			if (s[i] == NULL) {
				bad++;
				continue;
			}
			if (!all_zero(s[i]->data, k + 1))
				bad++;
			memset(s[i]->data, (int)(seed & 0xff), k);
		}
		for (i = 0; i < 64; i++) {
			if (s[i] != NULL) {
				for (k = 0; k < s[i]->len; k++)
					bad += s[i]->data[k] != (unsigned char)(seed & 0xff);
				ev_secret_free(s[i]);
			}
			s[i] = NULL;
		}
		rounds++;
	}
	return (void *)(uintptr_t)bad;
}

START_TEST(test_threads)
{
	pthread_t t[4];
	void *bad;
	size_t i;

	atomic_store(&stop_churn, 1); /* 200 rounds each */
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1)), 0);
	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(pthread_join(t[i], &bad), 0);
		ck_assert_uint_eq((uintptr_t)bad, 0);
	}
}
END_TEST

/*
 * Fork while other threads allocate: the child must find no lock held,
 * keep the secrets it inherited, and allocate and free on its own.
 */
START_TEST(test_fork)
{
	ev_secret *inherited = ev_secret_dup("inherited secret", 16);
	int parent_locked = ev_secret_is_locked(inherited);
	pthread_t t[2];
	int i, status;
	pid_t pid;
	void *bad;

	ck_assert_ptr_nonnull(inherited);
	atomic_store(&stop_churn, 0);
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 7)), 0);
	for (i = 0; i < 20; i++) {
		pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			ev_secret *mine = ev_secret_new(100);
			int ok =
			    mine != NULL && memcmp(inherited->data, "inherited secret", 16) == 0;

			/* Locks are not inherited: the child's arenas are locked again. */
			ok = ok && ev_secret_is_locked(inherited) == parent_locked &&
			     ev_secret_is_locked(mine) == parent_locked;

			ev_secret_free(mine);
			ev_secret_free(inherited);
			atomic_store(&stop_churn, 1); /* 200 rounds */
			ok = ok && churn((void *)(uintptr_t)3) == NULL;
			_exit(ok ? 0 : 1);
		}
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	atomic_store(&stop_churn, 1);
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(pthread_join(t[i], &bad), 0);
		ck_assert_uint_eq((uintptr_t)bad, 0);
	}
	ck_assert_mem_eq(inherited->data, "inherited secret", 16);
	ev_secret_free(inherited);
}
END_TEST

static atomic_int lock_warnings;

static void
count_lock_warnings(int priority, const char *msg)
{
	if (priority == LOG_WARNING && strstr(msg, "RLIMIT_MEMLOCK") != NULL)
		atomic_fetch_add(&lock_warnings, 1);
}

/* A process that may lock nothing still gets its secrets, and hears of it once. */
START_TEST(test_no_memlock)
{
	struct rlimit rl = {0, 0};
	ev_secmem_stats st;
	ev_secret *s[3000];
	size_t i;

	/* The limit and the user change would outlive this test in a shared process. */
	if (getenv("CK_FORK") != NULL && strcmp(getenv("CK_FORK"), "no") == 0)
		return;
	ev_log_set_sink(count_lock_warnings);
	ck_assert_int_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0);
	/* root's CAP_IPC_LOCK ignores the limit: become nobody (this test's process only). */
	if (geteuid() == 0) {
		ck_assert_int_eq(setresgid(65534, 65534, 65534), 0);
		ck_assert_int_eq(setresuid(65534, 65534, 65534), 0);
	}
	for (i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
		s[i] = ev_secret_new(16 + i % 1000);
		if (s[i] == NULL)
			ck_abort_msg("secret %zu failed", i);
	}
	ev_secmem_get_stats(&st);
	ck_assert_uint_gt(st.arenas, 2);
	ck_assert_uint_gt(st.lock_failures, 2);
	ck_assert_uint_eq(st.locked_bytes, 0);
	ck_assert_int_eq(atomic_load(&lock_warnings), 1);
	ck_assert_int_eq(ev_secret_is_locked(s[0]), 0);
	ck_assert_int_eq(ev_secret_is_locked(s[2999]), 0);
	for (i = 0; i < sizeof(s) / sizeof(s[0]); i++)
		ev_secret_free(s[i]);
	ev_log_set_sink(NULL);
}
END_TEST

/* Arenas are locked when the limit allows it. */
START_TEST(test_locked)
{
	struct rlimit rl;
	ev_secmem_stats st;
	ev_secret *s;

	ck_assert_int_eq(getrlimit(RLIMIT_MEMLOCK, &rl), 0);
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 64 * 1024)
		return; /* nothing to show on this machine */
	s = ev_secret_new(32);
	ck_assert_ptr_nonnull(s);
	ev_secmem_get_stats(&st);
	ck_assert_uint_gt(st.locked_bytes, 0);
	ck_assert_int_eq(ev_secret_is_locked(s), 1);
	ev_secret_free(s);
	ck_assert_int_eq(ev_secret_is_locked(NULL), 0);
	/* Too large for the pool: its own allocation, whose lock is not known. */
	s = ev_secret_new(8192);
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(ev_secret_is_locked(s), 0);
	ev_secret_free(s);
}
END_TEST

/* After trim, no secret held means no arena mapped; the pool still works. */
START_TEST(test_trim)
{
	ev_secret *s[200], *keep;
	ev_secmem_stats st;
	size_t i, base;

	ev_secmem_get_stats(&st);
	base = st.in_use;
	for (i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
		s[i] = ev_secret_new(16 + i * 20);
		ck_assert_ptr_nonnull(s[i]);
	}
	keep = ev_secret_new(32);
	ck_assert_ptr_nonnull(keep);
	for (i = 0; i < sizeof(s) / sizeof(s[0]); i++)
		ev_secret_free(s[i]);
	ev_secmem_get_stats(&st);
	ck_assert_uint_gt(st.arenas, 1); /* one empty arena kept per class */
	ev_secmem_trim();
	ev_secmem_get_stats(&st);
	ck_assert_uint_eq(st.in_use, base + 1);
	if (base == 0)
		ck_assert_uint_eq(st.arenas, 1); /* keep's */
	ck_assert_mem_eq(keep->data, (unsigned char[32]){0}, 32);
	ev_secret_free(keep);
	ev_secmem_trim();
	ev_secmem_get_stats(&st);
	if (base == 0) {
		ck_assert_uint_eq(st.arenas, 0);
		ck_assert_uint_eq(st.arena_bytes, 0);
	}
	/* Usable again. */
	keep = ev_secret_dup("again", 5);
	ck_assert_ptr_nonnull(keep);
	ck_assert_mem_eq(keep->data, "again", 5);
	ev_secret_free(keep);
}
END_TEST

/* Freeing what is not a live secret is reported, never fatal. */
START_TEST(test_bad_free_survives)
{
	ev_secret *s = ev_secret_new(24);
	unsigned char fake[128] = {0};

	ck_assert_ptr_nonnull(s);
	ev_secret_free(s);
	ev_secret_free(s); /* twice: the header was wiped */
	ev_secret_free((ev_secret *)(fake + 64));
	s = ev_secret_new(24);
	ck_assert_ptr_nonnull(s);
	ev_secret_free(s);
}
END_TEST

static Suite *
secmem_suite(void)
{
	Suite *s = suite_create("secmem");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_many_secrets_held);
	tcase_add_test(tc, test_new_is_zeroed_after_reuse);
	tcase_add_test(tc, test_free_wipes);
	tcase_add_test(tc, test_large);
	tcase_add_test(tc, test_arenas_given_back);
	tcase_add_test(tc, test_threads);
	tcase_add_test(tc, test_fork);
	tcase_add_test(tc, test_no_memlock);
	tcase_add_test(tc, test_locked);
	tcase_add_test(tc, test_bad_free_survives);
	tcase_add_test(tc, test_trim);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(secmem_suite());
}
