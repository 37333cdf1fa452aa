/*
 * Integration tests of C_Login after the first in a process (issue 8): the
 * user PIN, once checked with Argon2id, is accepted again by this
 * process's memo (src/pin.h, check_pin() in src/token.c), and by nothing
 * else once the PIN changed, the zone was re-initialised or the PIN locked
 * out. Which check answered is read from the module's debug log
 * ("accepted by this process's memo" / "checked with Argon2id"); no test
 * measures time.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define F env.f

#define BY_MEMO "user PIN accepted by this process's memo"
#define BY_ARGON "user PIN checked with Argon2id"

static CK_RV
login(CK_SESSION_HANDLE h, const char *pin)
{
	return F->C_Login(h, CKU_USER, (CK_UTF8CHAR *)pin, strlen(pin));
}

/* C_Login of the user with pin, its answer in *rv; the debug log it wrote (freed by the caller). */
static char *
logged_login(CK_SESSION_HANDLE h, const char *pin, CK_RV *rv)
{
	env_log_start();
	*rv = login(h, pin);
	return env_log_stop();
}

/* A user login with pin must answer want, and be decided by the check named (BY_MEMO or BY_ARGON). */
static void
login_by(CK_SESSION_HANDLE h, const char *pin, CK_RV want, const char *by)
{
	const char *other = strcmp(by, BY_MEMO) == 0 ? BY_ARGON : BY_MEMO;
	CK_RV rv;
	char *log = logged_login(h, pin, &rv);

	ck_assert_msg(rv == want, "C_Login(%s): 0x%lx, expected 0x%lx", pin, (unsigned long)rv,
	    (unsigned long)want);
	ck_assert_msg(strstr(log, by) != NULL, "C_Login(%s): \"%s\" not logged:\n%s", pin, by, log);
	ck_assert_msg(strstr(log, other) == NULL, "C_Login(%s): \"%s\" logged:\n%s", pin, other,
	    log);
	free(log);
}

/* A user login with pin must answer want (a refusal), the memo not being what answered. */
static void
refused_not_by_memo(CK_SESSION_HANDLE h, const char *pin, CK_RV want)
{
	CK_RV rv;
	char *log = logged_login(h, pin, &rv);

	ck_assert_msg(rv == want, "C_Login(%s): 0x%lx, expected 0x%lx", pin, (unsigned long)rv,
	    (unsigned long)want);
	ck_assert_msg(strstr(log, BY_MEMO) == NULL, "C_Login(%s): the memo answered:\n%s", pin, log);
	free(log);
}

/*
 * C_Initialize, a new zone labelled label (*slot), a public session in
 * which the user logged in once (by Argon2id) and out: this process has
 * the memo. The session.
 */
static CK_SESSION_HANDLE
memo_made(const char *label, CK_SLOT_ID *slot)
{
	CK_SESSION_HANDLE h;

	env_init();
	*slot = env_new_zone(label);
	h = env_session(*slot, 0, 0);
	login_by(h, USER_PIN, CKR_OK, BY_ARGON);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	return h;
}

static CK_FLAGS
token_flags(CK_SLOT_ID slot)
{
	CK_TOKEN_INFO ti;

	ck_assert_int_eq(F->C_GetTokenInfo(slot, &ti), CKR_OK);
	return ti.flags;
}

/* The first login checks with Argon2id; every later one with the same PIN by the memo. */
START_TEST(test_repeat_login)
{
	CK_OBJECT_HANDLE pub, priv;
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
	int i;

	h = memo_made("repeat", &slot);
	for (i = 0; i < 3; i++) {
		login_by(h, USER_PIN, CKR_OK, BY_MEMO);
		ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	}
	/* The memo logs the user in for real: a token object can be made. */
	ck_assert_int_eq(F->C_CloseSession(h), CKR_OK);
	h = env_session(slot, 1, 0);
	login_by(h, USER_PIN, CKR_OK, BY_MEMO);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "after-memo", CK_TRUE, &pub,
	    &priv);
}
END_TEST

/*
 * After the memo exists, a wrong PIN still goes through Argon2id, counts
 * in the store, and locks the PIN out at max_fails (3 in the test
 * config); locked out, the right PIN is refused too, memo or not.
 */
START_TEST(test_wrong_pin_after_memo)
{
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;

	h = memo_made("wrong", &slot);
	login_by(h, "wrong-pin", CKR_PIN_INCORRECT, BY_ARGON);
	ck_assert(token_flags(slot) & CKF_USER_PIN_COUNT_LOW);
	ck_assert_int_eq(env_sql_long("SELECT user_fails FROM zones"), 1);
	/* A success by the memo resets the counter, as any success does. */
	login_by(h, USER_PIN, CKR_OK, BY_MEMO);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	ck_assert(!(token_flags(slot) & CKF_USER_PIN_COUNT_LOW));
	ck_assert_int_eq(env_sql_long("SELECT user_fails FROM zones"), 0);
	/* A prefix and an extension of the right PIN are wrong PINs. */
	login_by(h, "user-secre", CKR_PIN_INCORRECT, BY_ARGON);
	login_by(h, "user-secret!", CKR_PIN_INCORRECT, BY_ARGON);
	ck_assert(token_flags(slot) & CKF_USER_PIN_FINAL_TRY);
	login_by(h, "wrong-pin", CKR_PIN_LOCKED, BY_ARGON);
	ck_assert(token_flags(slot) & CKF_USER_PIN_LOCKED);
	ck_assert_int_eq(env_sql_long("SELECT user_fails FROM zones"), 3);
	/* Locked out: refused before any check, memo included. */
	refused_not_by_memo(h, USER_PIN, CKR_PIN_LOCKED);
	/* The SO unlocks it with a new PIN; the old one's memo is gone. */
	ck_assert_int_eq(F->C_CloseSession(h), CKR_OK);
	h = env_session(slot, 1, 0);
	ck_assert_int_eq(F->C_Login(h, CKU_SO, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN)), CKR_OK);
	ck_assert_int_eq(F->C_InitPIN(h, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN)), CKR_OK);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	login_by(h, USER_PIN, CKR_OK, BY_ARGON);
}
END_TEST

/* A child: C_Initialize, then wrong user PINs until the PIN locks out: the last answer. */
static void
kid_lock_out(int rd, int wr, void *arg)
{
	const CK_SLOT_ID *slot = arg;
	CK_SESSION_HANDLE h;
	CK_RV rv;
	int i;

	(void)rd;
	rv = kid_init();
	if (rv == CKR_OK)
		rv = F->C_OpenSession(*slot, CKF_SERIAL_SESSION, NULL, NULL, &h);
	for (i = 0; rv == CKR_OK || rv == CKR_PIN_INCORRECT; i++)
		rv = F->C_Login(h, CKU_USER, (CK_UTF8CHAR *)"wrong-pin", 9);
	put(wr, rv);
	put(wr, (CK_ULONG)i);
}

/*
 * Locked out by another process: this process's memo, still there (it
 * was told nothing), accepts nothing: the lockout is read from the store
 * before the memo is looked at.
 */
START_TEST(test_locked_by_another_process)
{
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
	struct kid k;

	h = memo_made("locked", &slot);
	kid_start(&k, kid_lock_out, &slot);
	kid_expect(&k, CKR_PIN_LOCKED, "wrong PINs in another process");
	kid_expect(&k, 3, "wrong PINs until the lockout");
	kid_done(&k);
	refused_not_by_memo(h, USER_PIN, CKR_PIN_LOCKED);
	ck_assert_int_eq(env_sql_long("SELECT user_fails FROM zones"), 3);
}
END_TEST

/* A child: C_Initialize, C_SetPIN of the user from USER_PIN to "pin-of-child" in a public session. */
static void
kid_set_pin(int rd, int wr, void *arg)
{
	const CK_SLOT_ID *slot = arg;
	CK_SESSION_HANDLE h;
	CK_RV rv;

	(void)rd;
	rv = kid_init();
	if (rv == CKR_OK)
		rv = F->C_OpenSession(*slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h);
	if (rv == CKR_OK)
		rv = F->C_SetPIN(h, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN),
		    (CK_UTF8CHAR *)"pin-of-child", 12);
	if (rv == CKR_OK)
		rv = F->C_Finalize(NULL);
	put(wr, rv);
}

/* The PIN changed by another process: the old PIN is refused here, the new one accepted. */
START_TEST(test_pin_changed_by_another_process)
{
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
	struct kid k;

	h = memo_made("elsewhere", &slot);
	login_by(h, USER_PIN, CKR_OK, BY_MEMO);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	kid_start(&k, kid_set_pin, &slot);
	kid_expect(&k, CKR_OK, "C_SetPIN in another process");
	kid_done(&k);
	/* This process was told nothing: the memo no longer matches the stored hash. */
	login_by(h, USER_PIN, CKR_PIN_INCORRECT, BY_ARGON);
	login_by(h, "pin-of-child", CKR_OK, BY_ARGON);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	login_by(h, "pin-of-child", CKR_OK, BY_MEMO);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	login_by(h, USER_PIN, CKR_PIN_INCORRECT, BY_ARGON);
}
END_TEST

/* C_SetPIN in this process: the old PIN's memo goes, the new PIN is checked once. */
START_TEST(test_set_pin_here)
{
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;

	env_init();
	slot = env_new_zone("here");
	h = env_session(slot, 1, 1);
	ck_assert_int_eq(F->C_SetPIN(h, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN),
	    (CK_UTF8CHAR *)"second-pin", 10), CKR_OK);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	login_by(h, USER_PIN, CKR_PIN_INCORRECT, BY_ARGON);
	login_by(h, "second-pin", CKR_OK, BY_ARGON);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	login_by(h, "second-pin", CKR_OK, BY_MEMO);
}
END_TEST

/* After C_InitToken on the zone, the same user PIN set again is checked with Argon2id. */
START_TEST(test_init_token_drops_memo)
{
	CK_UTF8CHAR label[32];
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;

	h = memo_made("reinit", &slot);
	login_by(h, USER_PIN, CKR_OK, BY_MEMO);
	ck_assert_int_eq(F->C_CloseSession(h), CKR_OK);
	env_label(label, "reinit");
	ck_assert_int_eq(F->C_InitToken(slot, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN), label),
	    CKR_OK);
	h = env_session(slot, 1, 0);
	refused_not_by_memo(h, USER_PIN, CKR_USER_PIN_NOT_INITIALIZED);
	ck_assert_int_eq(F->C_Login(h, CKU_SO, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN)), CKR_OK);
	ck_assert_int_eq(F->C_InitPIN(h, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN)), CKR_OK);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	login_by(h, USER_PIN, CKR_OK, BY_ARGON);
}
END_TEST

/* Every session closed (which logs the user out): the next login still uses the memo. */
START_TEST(test_memo_after_all_sessions_closed)
{
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;

	env_init();
	slot = env_new_zone("closed");
	(void)env_session(slot, 0, 1);
	(void)env_session(slot, 1, 0);
	ck_assert_int_eq(F->C_CloseAllSessions(slot), CKR_OK);
	h = env_session(slot, 0, 0);
	login_by(h, USER_PIN, CKR_OK, BY_MEMO);
	/* And after C_Logout and C_CloseSession of the last session. */
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	ck_assert_int_eq(F->C_CloseSession(h), CKR_OK);
	h = env_session(slot, 0, 0);
	login_by(h, USER_PIN, CKR_OK, BY_MEMO);
}
END_TEST

/*
 * A child: C_Initialize again, log in; then whether its debug log says the
 * memo answered, and whether Argon2id did. Its stderr goes to a file of
 * its own (no ck_assert in a child).
 */
static void
kid_login_by(int rd, int wr, void *arg)
{
	const CK_SLOT_ID *slot = arg;
	char path[512], log[8192] = "";
	CK_SESSION_HANDLE h;
	ssize_t n;
	CK_RV rv;
	int fd;

	(void)rd;
	snprintf(path, sizeof(path), "%s/kid-stderr.log", env.dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || dup2(fd, STDERR_FILENO) != STDERR_FILENO ||
	    setenv("EDGEVAULT_DEBUG", "1", 1) != 0)
		_exit(5);
	rv = kid_init();
	if (rv == CKR_OK)
		rv = kid_session(*slot, 0, &h);
	n = pread(fd, log, sizeof(log) - 1, 0);
	if (n < 0)
		_exit(6);
	log[n] = '\0';
	put(wr, rv);
	put(wr, strstr(log, BY_MEMO) != NULL);
	put(wr, strstr(log, BY_ARGON) != NULL);
}

/* A child after fork starts without the parent's memo (C_Initialize again). */
START_TEST(test_fork_child_has_no_memo)
{
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
	struct kid k;

	h = memo_made("fork", &slot);
	kid_start(&k, kid_login_by, &slot);
	kid_expect(&k, CKR_OK, "login in the child");
	kid_expect(&k, 0, "the child's login by the memo");
	kid_expect(&k, 1, "the child's login by Argon2id");
	kid_done(&k);
	login_by(h, USER_PIN, CKR_OK, BY_MEMO);
}
END_TEST

/* C_Finalize drops the memo: after C_Initialize again, the first login is Argon2id's. */
START_TEST(test_finalize_drops_memo)
{
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;

	env_init();
	slot = env_new_zone("final");
	(void)env_session(slot, 0, 1);
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_init();
	h = env_session(slot, 0, 0);
	login_by(h, USER_PIN, CKR_OK, BY_ARGON);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("login");
	TCase *tc = tcase_create(env_root()); /* the root the suite runs on (EV_ROOT) */

	tcase_add_checked_fixture(tc, env_setup, env_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_repeat_login);
	tcase_add_test(tc, test_wrong_pin_after_memo);
	tcase_add_test(tc, test_pin_changed_by_another_process);
	tcase_add_test(tc, test_locked_by_another_process);
	tcase_add_test(tc, test_set_pin_here);
	tcase_add_test(tc, test_init_token_drops_memo);
	tcase_add_test(tc, test_memo_after_all_sessions_closed);
	tcase_add_test(tc, test_fork_child_has_no_memo);
	tcase_add_test(tc, test_finalize_drops_memo);
	suite_add_tcase(s, tc);
	return env_run(s);
}
