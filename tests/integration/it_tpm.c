/*
 * Integration tests of the TPM root (backend tpm2) against swtpm: zones
 * sealed by the TPM, keys that still sign after the TPM restarts, a store
 * that another TPM cannot open, a malformed sealed blob, a TPM that cannot
 * be reached. Each test runs its own swtpm in its own directory.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "harness.h"

static struct ev_swtpm tpm;
static const char *root_lines; /* extra [root] lines for the config (a test's choice) */

static void
setup(void)
{
	char state[300];

	env_setup();
	snprintf(state, sizeof(state), "%s/tpm", env.dir);
	root_lines = NULL;
	env_swtpm_start(&tpm, state);
	env_write_tpm_config(&tpm, root_lines, NULL);
}

static void
teardown(void)
{
	if (env.f != NULL)
		(void)env.f->C_Finalize(NULL);
	env_swtpm_stop(&tpm);
	env_teardown();
}

/*
 * The module's log (EDGEVAULT_DEBUG) while fn runs: stderr goes to a file
 * meanwhile. Returns fn's answer; *log is malloc'ed, freed by the caller.
 */
static CK_RV
logged(CK_RV (*fn)(void *), void *arg, char **log)
{
	char path[512];
	int fd, saved;
	long n;
	FILE *f;
	CK_RV rv;

	snprintf(path, sizeof(path), "%s/stderr.log", env.dir);
	fflush(stderr);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	saved = dup(2);
	ck_assert_int_ge(saved, 0);
	ck_assert_int_ge(dup2(fd, 2), 0);
	close(fd);
	setenv("EDGEVAULT_DEBUG", "1", 1);
	rv = fn(arg);
	unsetenv("EDGEVAULT_DEBUG");
	fflush(stderr);
	ck_assert_int_ge(dup2(saved, 2), 0);
	close(saved);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	rewind(f);
	*log = calloc(1, (size_t)n + 1);
	ck_assert_ptr_nonnull(*log);
	ck_assert_uint_eq(fread(*log, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return rv;
}

/* The first object of class cls labelled label, which must exist. */
static CK_OBJECT_HANDLE
find_one(CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls, const char *label)
{
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, (void *)label, strlen(label) },
	};
	CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
	CK_ULONG n = 0;

	ck_assert_int_eq(env.f->C_FindObjectsInit(h, t, 2), CKR_OK);
	ck_assert_int_eq(env.f->C_FindObjects(h, &o, 1, &n), CKR_OK);
	ck_assert_int_eq(env.f->C_FindObjectsFinal(h), CKR_OK);
	ck_assert_uint_eq(n, 1);
	return o;
}

/* Sign with CKM_ECDSA_SHA256 and check the signature with OpenSSL. */
static void
sign_and_verify(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE pub, CK_OBJECT_HANDLE priv)
{
	static const CK_BYTE data[] = "sealed by the TPM";
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_BYTE sig[128];
	CK_ULONG len = sizeof(sig);
	unsigned char *der = NULL;
	EVP_PKEY *k = env_spki(h, pub);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int derlen;

	ck_assert_ptr_nonnull(k);
	ck_assert_ptr_nonnull(ctx);
	ck_assert_int_eq(env.f->C_SignInit(h, &m, priv), CKR_OK);
	ck_assert_int_eq(env.f->C_Sign(h, (CK_BYTE_PTR)data, sizeof(data), sig, &len), CKR_OK);
	derlen = env_ecdsa_der(sig, len, &der);
	ck_assert_int_gt(derlen, 0);
	ck_assert_int_eq(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k), 1);
	ck_assert_int_eq(EVP_DigestVerify(ctx, der, (size_t)derlen, data, sizeof(data)), 1);
	OPENSSL_free(der);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(k);
}

/*
 * How many handles of a kind (tpm2_getcap: handles-transient,
 * handles-loaded-session) the TPM holds: nothing left behind.
 */
static int
tpm_handles(const char *kind)
{
	char cmd[256], line[256];
	FILE *p;
	int n = 0;

	snprintf(cmd, sizeof(cmd), "tpm2_getcap -T swtpm:host=127.0.0.1,port=%d %s", tpm.port,
	    kind);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	while (fgets(line, sizeof(line), p) != NULL)
		if (strstr(line, "0x") != NULL)
			n++;
	ck_assert_int_eq(pclose(p), 0);
	return n;
}

/* Stop the TPM and start one on state_dir (the same: a restart), config following. */
static void
tpm_restart(const char *state_dir)
{
	env_swtpm_stop(&tpm);
	env_swtpm_start(&tpm, state_dir);
	env_write_tpm_config(&tpm, root_lines, NULL);
}

/* A zone with a key pair "k" in it; the module finalized afterwards. */
static CK_SLOT_ID
zone_with_key(void)
{
	CK_OBJECT_HANDLE pub, priv;
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;

	env_init();
	slot = env_new_zone("tpm zone");
	h = env_session(slot, 1, 1);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "k", CK_TRUE, &pub, &priv);
	sign_and_verify(h, pub, priv);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	return slot;
}

struct login_args {
	CK_SLOT_ID slot;
};

static CK_RV
do_login(void *arg)
{
	struct login_args *a = arg;
	CK_C_INITIALIZE_ARGS init = { .flags = CKF_OS_LOCKING_OK };
	CK_SESSION_HANDLE h;
	CK_RV rv;

	rv = env.f->C_Initialize(&init);
	if (rv != CKR_OK)
		return rv;
	rv = env.f->C_OpenSession(a->slot, CKF_SERIAL_SESSION, NULL, NULL, &h);
	if (rv != CKR_OK)
		return rv;
	return env.f->C_Login(h, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN));
}

START_TEST(test_seal_sign_restart)
{
	CK_OBJECT_HANDLE pub, priv;
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
	char *hex, state[300];

	slot = zone_with_key();
	/* The zone key is sealed in the tpm2 format: version 0x02. */
	hex = env_sql_text("SELECT hex(substr(sealed_key, 1, 1)) FROM zones");
	ck_assert_str_eq(hex, "02\n");
	free(hex);

	/* Same TPM state, new TPM process: the store opens, the key signs. */
	snprintf(state, sizeof(state), "%s", tpm.state);
	tpm_restart(state);
	env_init();
	h = env_session(slot, 0, 1);
	pub = find_one(h, CKO_PUBLIC_KEY, "k");
	priv = find_one(h, CKO_PRIVATE_KEY, "k");
	sign_and_verify(h, pub, priv);
	/* While the module runs: its primary, and neither sealed objects nor sessions. */
	ck_assert_int_eq(tpm_handles("handles-transient"), 1);
	ck_assert_int_eq(tpm_handles("handles-loaded-session"), 0);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	ck_assert_int_eq(tpm_handles("handles-transient"), 0);
}
END_TEST

START_TEST(test_other_tpm_cannot_unseal)
{
	struct login_args a;
	char state[300], *log = NULL;
	CK_RV rv;

	a.slot = zone_with_key();
	/* The store, as it is, in front of another TPM (fresh state: other seeds). */
	snprintf(state, sizeof(state), "%s/other-tpm", env.dir);
	tpm_restart(state);
	rv = logged(do_login, &a, &log);
	ck_assert_msg(rv == CKR_DEVICE_ERROR, "C_Login: 0x%lx\n%s", (unsigned long)rv, log);
	ck_assert_msg(strstr(log, "does not unseal under this root") != NULL, "log: %s", log);
	ck_assert_msg(strstr(log, "refused to load the sealed object") != NULL, "log: %s", log);
	free(log);
}
END_TEST

START_TEST(test_malformed_blob)
{
	static const char *edits[] = {
		/* another version */
		"UPDATE zones SET sealed_key = x'01' || substr(sealed_key, 2)",
		/* cut short */
		"UPDATE zones SET sealed_key = substr(sealed_key, 1, length(sealed_key) - 1)",
		/* a byte too many */
		"UPDATE zones SET sealed_key = sealed_key || x'00'",
		/* nothing but the version */
		"UPDATE zones SET sealed_key = x'02'",
	};
	struct login_args a;
	char *log = NULL, *saved;
	size_t i;
	CK_RV rv;

	a.slot = zone_with_key();
	saved = env_sql_text("SELECT hex(sealed_key) FROM zones");
	saved[strcspn(saved, "\n")] = '\0';
	for (i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		env_sh("sqlite3 '%s/store/edgevault.db' \"%s\"", env.dir, edits[i]);
		rv = logged(do_login, &a, &log);
		ck_assert_msg(rv == CKR_DEVICE_ERROR, "%s: C_Login 0x%lx\n%s", edits[i],
		    (unsigned long)rv, log);
		ck_assert_msg(strstr(log, "does not unseal under this root") != NULL, "log: %s",
		    log);
		/* Refused before the TPM was asked. */
		ck_assert_msg(strstr(log, "refused to load") == NULL, "log: %s", log);
		free(log);
		ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
		env_sh("sqlite3 '%s/store/edgevault.db' \"UPDATE zones SET sealed_key = x'%s'\"",
		    env.dir, saved);
	}
	/* Put back, it opens again. */
	rv = logged(do_login, &a, &log);
	ck_assert_msg(rv == CKR_OK, "C_Login 0x%lx\n%s", (unsigned long)rv, log);
	free(log);
	free(saved);
}
END_TEST

START_TEST(test_other_device_id)
{
	struct login_args a;
	char *log = NULL;
	CK_RV rv;

	/*
	 * The same TPM, another [device] id: the TPM loads and unseals the
	 * object, and the associated data's digest inside it refuses it.
	 */
	a.slot = zone_with_key();
	env_sh("sed -i 's/^id = test-device$/id = other-device/' '%s/edgevault.conf'", env.dir);
	rv = logged(do_login, &a, &log);
	ck_assert_msg(rv == CKR_DEVICE_ERROR, "C_Login: 0x%lx\n%s", (unsigned long)rv, log);
	ck_assert_msg(strstr(log, "sealed for other associated data") != NULL, "log: %s", log);
	ck_assert_msg(strstr(log, "refused to load") == NULL, "log: %s", log);
	free(log);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	env_sh("sed -i 's/^id = other-device$/id = test-device/' '%s/edgevault.conf'", env.dir);
	rv = logged(do_login, &a, &log);
	ck_assert_msg(rv == CKR_OK, "C_Login: 0x%lx\n%s", (unsigned long)rv, log);
	free(log);
}
END_TEST

/* In a child: its own C_Initialize, a login (the zone key unsealed anew), C_Finalize. */
static void
kid_use_tpm(int rd, int wr, void *arg)
{
	CK_SLOT_ID slot = *(CK_SLOT_ID *)arg;
	CK_SESSION_HANDLE h;
	CK_RV rv;

	(void)rd;
	rv = kid_init();
	if (rv == CKR_OK)
		rv = kid_session(slot, 0, &h);
	put(wr, rv);
	put(wr, env.f->C_Finalize(NULL));
}

START_TEST(test_fork)
{
	CK_OBJECT_HANDLE pub, priv;
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
	struct kid k;

	env_init();
	slot = env_new_zone("tpm zone");
	h = env_session(slot, 1, 1);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "k", CK_TRUE, &pub, &priv);
	kid_start(&k, kid_use_tpm, &slot);
	kid_expect(&k, CKR_OK, "child's login");
	kid_expect(&k, CKR_OK, "child's C_Finalize");
	kid_done(&k);
	/* The parent's connection and primary are untouched: it signs and seals. */
	sign_and_verify(h, pub, priv);
	(void)env_new_zone("second zone");
	ck_assert_int_eq(tpm_handles("handles-transient"), 1);
}
END_TEST

static CK_RV
do_init_token(void *arg)
{
	CK_C_INITIALIZE_ARGS init = { .flags = CKF_OS_LOCKING_OK };
	CK_SLOT_ID slots[8];
	CK_ULONG n = 8;
	CK_UTF8CHAR lab[32];
	CK_RV rv;

	(void)arg;
	rv = env.f->C_Initialize(&init);
	if (rv != CKR_OK)
		return rv;
	rv = env.f->C_GetSlotList(CK_FALSE, slots, &n);
	if (rv != CKR_OK || n == 0)
		return CKR_GENERAL_ERROR;
	env_label(lab, "no tpm");
	return env.f->C_InitToken(slots[n - 1], (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN), lab);
}

START_TEST(test_unreachable)
{
	char *log = NULL;
	CK_RV rv;

	env_swtpm_stop(&tpm); /* the config still names its port */
	rv = logged(do_init_token, NULL, &log);
	ck_assert_msg(rv == CKR_DEVICE_ERROR, "C_InitToken 0x%lx\n%s", (unsigned long)rv, log);
	ck_assert_msg(strstr(log, "cannot reach the TPM through TCTI") != NULL, "log: %s", log);
	free(log);
}
END_TEST

/* tpm2-tools against the test's swtpm: fails the test when the command fails. */
#define TOOLS_TCTI "-T swtpm:host=127.0.0.1,port=%d"

START_TEST(test_persistent_primary)
{
	CK_OBJECT_HANDLE pub, priv;
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
	char state[300];

	/*
	 * The operator's storage primary, made persistent at 0x81000001; the
	 * tools' transient copies flushed (swtpm has no resource manager and
	 * three object slots).
	 */
	env_sh("cd '%s' && tpm2_createprimary " TOOLS_TCTI " -C o -g sha256 -G ecc256 "
	       "-c primary.ctx >/dev/null && tpm2_evictcontrol " TOOLS_TCTI
	       " -C o -c primary.ctx 0x81000001 >/dev/null && tpm2_flushcontext " TOOLS_TCTI
	       " -t",
	    env.dir, tpm.port, tpm.port, tpm.port);
	root_lines = "primary_handle = 0x81000001\n";
	env_write_tpm_config(&tpm, root_lines, NULL);
	slot = zone_with_key();
	/* Nothing transient left behind: the primary is the persistent one. */
	ck_assert_int_eq(tpm_handles("handles-transient"), 0);

	snprintf(state, sizeof(state), "%s", tpm.state);
	tpm_restart(state);
	env_init();
	h = env_session(slot, 0, 1);
	pub = find_one(h, CKO_PUBLIC_KEY, "k");
	priv = find_one(h, CKO_PRIVATE_KEY, "k");
	sign_and_verify(h, pub, priv);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
}
END_TEST

START_TEST(test_persistent_primary_refused)
{
	char *log = NULL;
	CK_RV rv;

	/* Nothing at the handle. */
	root_lines = "primary_handle = 0x81000002\n";
	env_write_tpm_config(&tpm, root_lines, NULL);
	rv = logged(do_init_token, NULL, &log);
	ck_assert_msg(rv == CKR_DEVICE_ERROR, "C_InitToken 0x%lx\n%s", (unsigned long)rv, log);
	ck_assert_msg(strstr(log, "no usable persistent primary key at TPM handle 0x81000002") !=
		NULL,
	    "log: %s", log);
	free(log);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);

	/* A signing key there: not a storage key. */
	env_sh("cd '%s' && tpm2_createprimary " TOOLS_TCTI " -C o -G ecc256:ecdsa "
	       "-a 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign' -c sign.ctx "
	       ">/dev/null && tpm2_evictcontrol " TOOLS_TCTI
	       " -C o -c sign.ctx 0x81000002 >/dev/null && tpm2_flushcontext " TOOLS_TCTI " -t",
	    env.dir, tpm.port, tpm.port, tpm.port);
	rv = logged(do_init_token, NULL, &log);
	ck_assert_msg(rv == CKR_DEVICE_ERROR, "C_InitToken 0x%lx\n%s", (unsigned long)rv, log);
	ck_assert_msg(strstr(log, "is not a storage key") != NULL, "log: %s", log);
	free(log);
}
END_TEST

START_TEST(test_tpm_restarted_under_module)
{
	CK_OBJECT_HANDLE pub, priv;
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
	char state[300];
	int port;

	env_init();
	slot = env_new_zone("tpm zone");
	h = env_session(slot, 1, 1);
	env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "k", CK_TRUE, &pub, &priv);
	/* The TPM goes away and comes back on the same port while the module runs. */
	port = tpm.port;
	snprintf(state, sizeof(state), "%s", tpm.state);
	env_swtpm_stop(&tpm);
	env_swtpm_start_on(&tpm, state, port);
	/* Sealing a new zone key connects again; the unlocked zone still signs. */
	(void)env_new_zone("after restart");
	sign_and_verify(h, pub, priv);
	ck_assert_int_eq(tpm_handles("handles-transient"), 1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("tpm");
	TCase *tc = tcase_create("tpm");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_seal_sign_restart);
	tcase_add_test(tc, test_other_tpm_cannot_unseal);
	tcase_add_test(tc, test_malformed_blob);
	tcase_add_test(tc, test_unreachable);
	tcase_add_test(tc, test_other_device_id);
	tcase_add_test(tc, test_fork);
	tcase_add_test(tc, test_persistent_primary);
	tcase_add_test(tc, test_persistent_primary_refused);
	tcase_add_test(tc, test_tpm_restarted_under_module);
	suite_add_tcase(s, tc);
	return env_run(s);
}
