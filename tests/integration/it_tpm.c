/*
 * Integration tests of the TPM root (backend tpm2) against swtpm: zones
 * sealed by the TPM, keys that still sign after the TPM restarts, a store
 * that another TPM cannot open, a malformed sealed blob, a TPM that cannot
 * be reached. Each test runs its own swtpm in its own directory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "engine_default.h"
#include "harness.h"
#include "pkcs11/edgevault.h"

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
	engine_default_off();
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
	CK_RV rv;

	env_log_start();
	rv = fn(arg);
	*log = env_log_stop();
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

/* sign_and_verify with the key pair "k". */
static void
sign_with_k(CK_SESSION_HANDLE h)
{
	sign_and_verify(h, find_one(h, CKO_PUBLIC_KEY, "k"), find_one(h, CKO_PRIVATE_KEY, "k"));
}

/* No object and no session left loaded in the TPM. */
static void
tpm_handles_none(void)
{
	ck_assert_int_eq(tpm_handles("handles-transient"), 0);
	ck_assert_int_eq(tpm_handles("handles-loaded-session"), 0);
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

/* A login (its own C_Initialize, finalized after) refused: another TPM primary answers. */
static void
primary_refused(struct login_args *a)
{
	char *log = NULL;
	CK_RV rv;

	rv = logged(do_login, a, &log);
	ck_assert_msg(rv == CKR_DEVICE_ERROR, "C_Login: 0x%lx\n%s", (unsigned long)rv, log);
	ck_assert_msg(strstr(log, "the TPM's storage primary key is not the one this store's "
				  "zone keys were sealed under") != NULL,
		      "log: %s", log);
	free(log);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
}

START_TEST(test_seal_sign_restart)
{
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
	sign_with_k(h);
	/*
	 * While the module runs, between operations: nothing loaded, neither
	 * its primary (a saved context then) nor sealed objects nor sessions.
	 */
	ck_assert_int_eq(tpm_handles("handles-transient"), 0);
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
	/* The first seal recorded the primary's name. */
	ck_assert_int_eq(
	    env_sql_long("SELECT count(*) FROM meta WHERE key = 'tpm_primary_name'"), 1);
	/* The store, as it is, in front of another TPM (fresh state: other seeds). */
	snprintf(state, sizeof(state), "%s/other-tpm", env.dir);
	tpm_restart(state);
	primary_refused(&a);
	/* Without the recorded name (a store from before): the TPM itself refuses. */
	env_sh("sqlite3 '%s/store/edgevault.db' \"DELETE FROM meta WHERE key = "
	       "'tpm_primary_name'\"",
	       env.dir);
	rv = logged(do_login, &a, &log);
	ck_assert_msg(rv == CKR_DEVICE_ERROR, "C_Login: 0x%lx\n%s", (unsigned long)rv, log);
	ck_assert_msg(strstr(log, "does not unseal under this root") != NULL, "log: %s", log);
	ck_assert_msg(strstr(log, "refused to load the sealed object") != NULL, "log: %s", log);
	free(log);
	/* Nothing was recorded for the TPM that did not unseal. */
	ck_assert_int_eq(
	    env_sql_long("SELECT count(*) FROM meta WHERE key = 'tpm_primary_name'"), 0);
}
END_TEST

START_TEST(test_primary_name_pinned)
{
	struct login_args a;
	char *log = NULL, *saved;
	CK_RV rv;

	a.slot = zone_with_key();
	saved = env_sql_text("SELECT hex(value) FROM meta WHERE key = 'tpm_primary_name'");
	saved[strcspn(saved, "\n")] = '\0';
	ck_assert_uint_eq(strlen(saved), 2 * 34); /* SHA-256 name: algorithm and digest */
	/* Another primary answers (as an interposer's key would): refused at connection. */
	env_sh("sqlite3 '%s/store/edgevault.db' \"UPDATE meta SET value = x'000b%064d' WHERE "
	       "key = 'tpm_primary_name'\"",
	       env.dir, 0);
	primary_refused(&a);
	env_sh("sqlite3 '%s/store/edgevault.db' \"UPDATE meta SET value = x'%s' WHERE key = "
	       "'tpm_primary_name'\"",
	       env.dir, saved);
	free(saved);
	rv = logged(do_login, &a, &log);
	ck_assert_msg(rv == CKR_OK, "C_Login: 0x%lx\n%s", (unsigned long)rv, log);
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
	/* The parent's saved primary is untouched: it signs and seals. */
	sign_and_verify(h, pub, priv);
	(void)env_new_zone("second zone");
	ck_assert_int_eq(tpm_handles("handles-transient"), 0);
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

/*
 * Without a resource manager (swtpm reached directly, three object slots
 * and three session slots), PROCS processes at once, each ROUNDS times
 * its own C_Initialize, a login (an unseal), a signature, C_Finalize,
 * while this process keeps its own zone unlocked: each holds TPM objects
 * only during an operation, and waits its turn when the others fill the
 * slots.
 */
#define PROCS 4
#define ROUNDS 3

static void
kid_rounds(int rd, int wr, void *arg)
{
	CK_SLOT_ID slot = *(CK_SLOT_ID *)arg;
	CK_SESSION_HANDLE h;
	CK_BYTE sig[128];
	CK_ULONG len;
	CK_RV rv = CKR_OK;
	int i;

	(void)take(rd); /* all together */
	for (i = 0; i < ROUNDS && rv == CKR_OK; i++) {
		rv = kid_init();
		if (rv == CKR_OK)
			rv = kid_session(slot, 0, &h);
		len = sizeof(sig);
		if (rv == CKR_OK)
			rv = kid_sign_label(h, "k", "signed while others use the TPM", sig, &len);
		if (rv == CKR_OK)
			rv = env.f->C_Finalize(NULL);
	}
	put(wr, rv);
}

START_TEST(test_processes_share_tpm)
{
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
	struct kid k[PROCS];
	int i;

	slot = zone_with_key();
	env_init();
	h = env_session(slot, 0, 1);
	for (i = 0; i < PROCS; i++)
		kid_start(&k[i], kid_rounds, &slot);
	for (i = 0; i < PROCS; i++)
		kid_put(&k[i], 1);
	for (i = 0; i < PROCS; i++)
		kid_expect(&k[i], CKR_OK, "a process: rounds of C_Initialize, C_Login, C_Sign");
	for (i = 0; i < PROCS; i++)
		kid_done(&k[i]);
	sign_with_k(h);
	(void)env_new_zone("after the others");
	tpm_handles_none();
}
END_TEST

/*
 * Objects left loaded by someone else (as by a process killed while it
 * held them) fill the TPM's three object slots: the login waits for room
 * for a while, then fails and says how to free them; once they are
 * flushed (as the log says), it works.
 */
START_TEST(test_slots_left_full)
{
	struct timespec t0, t1;
	double secs;
	char *log = NULL;
	struct login_args a;
	CK_RV rv;
	int i;

	a.slot = zone_with_key();
	for (i = 0; i < 3; i++)
		env_sh("cd '%s' && tpm2_createprimary " TOOLS_TCTI " -C o -G ecc256 -c left%d.ctx "
		       ">/dev/null",
		    env.dir, tpm.port, i);
	ck_assert_int_eq(tpm_handles("handles-transient"), 3);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rv = logged(do_login, &a, &log);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_msg(rv == CKR_DEVICE_ERROR, "C_Login: 0x%lx\n%s", (unsigned long)rv, log);
	ck_assert_msg(strstr(log, "tpm2_flushcontext") != NULL &&
			  strstr(log, "/dev/tpmrm0 or tpm2-abrmd") != NULL,
		      "log: %s", log);
	free(log);
	/* It waited for room (5 s), not for ever; and left nothing of its own. */
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	ck_assert_msg(secs >= 4.5 && secs < 30, "the login took %.1f s", secs);
	ck_assert_int_eq(tpm_handles("handles-transient"), 3);
	ck_assert_int_eq(tpm_handles("handles-loaded-session"), 0);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	env_sh("tpm2_flushcontext " TOOLS_TCTI " -t", tpm.port);
	ck_assert_int_eq(do_login(&a), CKR_OK);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	tpm_handles_none();
}
END_TEST

START_TEST(test_persistent_primary)
{
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
	sign_with_k(h);
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
	ck_assert_int_eq(tpm_handles("handles-transient"), 0);
}
END_TEST

/* PCR binding (doc/key-protection.md, "PCR binding"). PCR 16 is the debug PCR. */

#define NEW_SO_PIN "new-so-secret"
#define OTHER_SO_PIN "other-so-secret"

/* Extend a PCR of the SHA-256 bank with tpm2-tools: its value changes. */
static void
pcr_extend(int pcr)
{
	env_sh("tpm2_pcrextend " TOOLS_TCTI " %d:sha256=%064d", tpm.port, pcr, 1);
}

/* The config with extra lines (a [policy] or [zone N] pcrs, [attestation]) after [pin]. */
static void
tpm_config(const char *extra)
{
	env_write_tpm_config(&tpm, root_lines, extra);
}

/* A zone's sealed key (or its SO copy: column so_sealed_key) as hex; "" when NULL. */
static char *
sealed_hex(CK_SLOT_ID slot, const char *column)
{
	char sql[160], *hex;

	snprintf(sql, sizeof(sql), "SELECT coalesce(hex(%s), '') FROM zones WHERE id = %lu", column,
		 (unsigned long)slot);
	hex = env_sql_text(sql);
	hex[strcspn(hex, "\n")] = '\0';
	return hex;
}

/* The first bytes of a sealed blob: version, binding, PCR selection (hex). */
static void
expect_head(CK_SLOT_ID slot, const char *column, const char *head)
{
	char *hex = sealed_hex(slot, column);

	ck_assert_msg(strncmp(hex, head, strlen(head)) == 0, "%s of zone %lu: %.16s..., wanted %s",
		      column, (unsigned long)slot, hex, head);
	free(hex);
}

/* A zone bound to PCR 16: version 3, binding 1, selection 0x00010000, and an SO copy (binding 2).
 */
#define BOUND_16 "030100010000"
#define SO_COPY "030200000000"

/* C_Login(CKU_USER) on a new session of slot: its answer (the session closed after). */
static CK_RV
user_login(CK_SLOT_ID slot)
{
	CK_SESSION_HANDLE h;
	CK_RV rv;

	ck_assert_int_eq(env.f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_OK);
	rv = env.f->C_Login(h, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN));
	ck_assert_int_eq(env.f->C_CloseSession(h), CKR_OK);
	return rv;
}

/* A read/write session on slot and C_Login(CKU_SO) with pin: its answer. */
static CK_RV
so_login(CK_SLOT_ID slot, const char *pin, CK_SESSION_HANDLE *h)
{
	ck_assert_int_eq(
	    env.f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, h), CKR_OK);
	return env.f->C_Login(*h, CKU_SO, (CK_UTF8CHAR *)pin, strlen(pin));
}

/* The admin interface, version 1.2. */
static EV_ADMIN_FUNCTION_LIST *
admin12(void)
{
	CK_INTERFACE *iface = NULL;
	CK_VERSION v = {1, 2};
	EV_ADMIN_FUNCTION_LIST *a;

	ck_assert_int_eq(
	    env.f->C_GetInterface((CK_UTF8CHAR *)EV_ADMIN_INTERFACE_NAME, &v, &iface, 0), CKR_OK);
	a = iface->pFunctionList;
	ck_assert_int_eq(a->version.major, 1);
	ck_assert_int_eq(a->version.minor, 2);
	ck_assert_ptr_nonnull(a->EV_RebindZone);
	return a;
}

/* EV_RebindZone as the SO with pin, in a session closed afterwards: its answer; *pcrs set. */
static CK_RV
rebind(CK_SLOT_ID slot, const char *pin, CK_ULONG *pcrs)
{
	CK_SESSION_HANDLE h;
	CK_RV rv;

	ck_assert_int_eq(so_login(slot, pin, &h), CKR_OK);
	*pcrs = 0xdead;
	rv = admin12()->EV_RebindZone(h, pcrs);
	ck_assert_int_eq(env.f->C_CloseSession(h), CKR_OK);
	return rv;
}

/* Sign with the zone's key "k" in a new user session (the login asserted). */
static void
zone_signs(CK_SLOT_ID slot)
{
	CK_SESSION_HANDLE h = env_session(slot, 0, 1);

	sign_and_verify(h, find_one(h, CKO_PUBLIC_KEY, "k"), find_one(h, CKO_PRIVATE_KEY, "k"));
	ck_assert_int_eq(env.f->C_CloseSession(h), CKR_OK);
}

/* Log in to slot as the user in a new session and sign with "k": the first failure, or CKR_OK. */
static CK_RV
signs(CK_SLOT_ID slot)
{
	CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
	CK_SESSION_HANDLE h;
	CK_BYTE sig[128];
	CK_ULONG len = sizeof(sig);
	CK_RV rv;

	ck_assert_int_eq(env.f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_OK);
	rv = env.f->C_Login(h, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN));
	if (rv == CKR_OK)
		rv = env.f->C_SignInit(h, &m, find_one(h, CKO_PRIVATE_KEY, "k"));
	if (rv == CKR_OK)
		rv = env.f->C_Sign(h, (CK_BYTE_PTR) "x", 1, sig, &len);
	ck_assert_int_eq(env.f->C_CloseSession(h), CKR_OK);
	return rv;
}

static long
refusals(void)
{
	return env_sql_long("SELECT count(*) FROM attestlog WHERE purpose = 'unseal' AND "
			    "provider = 'tpm2-pcr' AND accepted = 0 AND reason = 'PCR 16 no "
			    "longer matches the values the zone key is sealed to'");
}

/* Nothing left loaded in the TPM, not even the module's primary. */
static void
tpm_clean(void)
{
	ck_assert_int_eq(tpm_handles("handles-transient"), 0);
	ck_assert_int_eq(tpm_handles("handles-loaded-session"), 0);
}

START_TEST(test_pcr_bound_refused)
{
	struct login_args a;
	CK_SLOT_ID unbound;
	char *log = NULL;
	CK_RV rv;

	/* Zone 1 bound to PCR 16, zone 2 not. */
	tpm_config("[zone 1]\npcrs = 16\n");
	a.slot = zone_with_key();
	ck_assert_int_eq(a.slot, 1);
	expect_head(1, "sealed_key", BOUND_16);
	expect_head(1, "so_sealed_key", SO_COPY);
	env_init();
	unbound = env_new_zone("unbound");
	ck_assert_int_eq(unbound, 2);
	expect_head(2, "sealed_key", "02");
	expect_head(2, "so_sealed_key", "");
	zone_signs(1);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);

	/* The platform's state changes. */
	pcr_extend(16);
	rv = logged(do_login, &a, &log);
	ck_assert_msg(rv == CKR_FUNCTION_REJECTED, "C_Login: 0x%lx\n%s", (unsigned long)rv, log);
	ck_assert_msg(strstr(log, "zone 1: PCR 16 no longer matches the values the zone key is "
				  "sealed to; the SO can re-bind it with `edgevault zone rebind "
				  "--zone 1`") != NULL,
		      "log: %s", log);
	free(log);
	ck_assert_int_eq(refusals(), 1);
	/* The PIN was right: no attempt spent. */
	ck_assert_int_eq(env_sql_long("SELECT user_fails FROM zones WHERE id = 1"), 0);
	/* No object or session of the refusal left in the TPM. */
	tpm_clean();
	/* Again within the minute: refused, not recorded twice. */
	ck_assert_int_eq(user_login(1), CKR_FUNCTION_REJECTED);
	ck_assert_int_eq(refusals(), 1);
	/* A wrong PIN is still a wrong PIN (and counted). */
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	env_init();
	{
		CK_SESSION_HANDLE h;

		ck_assert_int_eq(env.f->C_OpenSession(1, CKF_SERIAL_SESSION, NULL, NULL, &h),
				 CKR_OK);
		ck_assert_int_eq(env.f->C_Login(h, CKU_USER, (CK_UTF8CHAR *)"wrong-pin", 9),
				 CKR_PIN_INCORRECT);
	}
	ck_assert_int_eq(env_sql_long("SELECT user_fails FROM zones WHERE id = 1"), 1);
	/* The zone that is not bound still works. */
	{
		CK_OBJECT_HANDLE pub, priv;
		CK_SESSION_HANDLE h = env_session(2, 1, 1);

		env_gen_ec(h, CKM_EC_KEY_PAIR_GEN, env_p256, sizeof(env_p256), "k2", CK_TRUE, &pub,
			   &priv);
		sign_and_verify(h, pub, priv);
	}
	tpm_clean();
}
END_TEST

/* In a child: its own C_Initialize, a login to zone 1 and a signature; C_Finalize. */
static void
kid_sign(int rd, int wr, void *arg)
{
	CK_SESSION_HANDLE h;
	CK_BYTE sig[128];
	CK_ULONG len = sizeof(sig);
	CK_RV rv;

	(void)rd;
	(void)arg;
	rv = kid_init();
	if (rv == CKR_OK)
		rv = kid_session(1, 0, &h);
	if (rv == CKR_OK)
		rv = kid_sign_label(h, "k", "x", sig, &len);
	put(wr, rv);
	put(wr, env.f->C_Finalize(NULL));
}

START_TEST(test_pcr_rebind)
{
	CK_SESSION_HANDLE h;
	CK_ULONG pcrs;
	struct kid k;
	char *before, *copy_before, *after, *copy_after;

	tpm_config("[policy]\npcrs = 16\n");
	(void)zone_with_key();
	before = sealed_hex(1, "sealed_key");
	copy_before = sealed_hex(1, "so_sealed_key");
	pcr_extend(16);
	env_init();
	ck_assert_int_eq(user_login(1), CKR_FUNCTION_REJECTED);
	ck_assert_int_eq(env.f->C_CloseAllSessions(1), CKR_OK);

	/* Only the SO, with the right PIN, in a read/write session. */
	ck_assert_int_eq(so_login(1, "wrong-so-pin", &h), CKR_PIN_INCORRECT);
	ck_assert_int_eq(admin12()->EV_RebindZone(h, &pcrs), CKR_USER_NOT_LOGGED_IN);
	ck_assert_int_eq(env.f->C_CloseSession(h), CKR_OK);
	ck_assert_str_eq(sealed_hex(1, "sealed_key"), before);
	ck_assert_int_eq(admin12()->EV_RebindZone(CK_INVALID_HANDLE, &pcrs),
			 CKR_SESSION_HANDLE_INVALID);
	/* A 1.1 caller gets the same list, labelled 1.1; no 1.5 yet. */
	{
		CK_INTERFACE *iface = NULL;
		CK_VERSION v11 = {1, 1}, v15 = {1, 5};
		EV_ADMIN_FUNCTION_LIST *a11;

		ck_assert_int_eq(
		    env.f->C_GetInterface((CK_UTF8CHAR *)EV_ADMIN_INTERFACE_NAME, &v11, &iface, 0),
		    CKR_OK);
		a11 = iface->pFunctionList;
		ck_assert_int_eq(a11->version.minor, 1);
		ck_assert_ptr_eq(a11->EV_RebindZone, admin12()->EV_RebindZone);
		ck_assert_int_eq(
		    env.f->C_GetInterface((CK_UTF8CHAR *)EV_ADMIN_INTERFACE_NAME, &v15, &iface, 0),
		    CKR_ARGUMENTS_BAD);
	}

	ck_assert_int_eq(rebind(1, SO_PIN, &pcrs), CKR_OK);
	ck_assert_uint_eq(pcrs, 1UL << 16);
	after = sealed_hex(1, "sealed_key");
	copy_after = sealed_hex(1, "so_sealed_key");
	ck_assert_str_ne(after, before);
	ck_assert_str_ne(copy_after, copy_before);
	expect_head(1, "sealed_key", BOUND_16);
	expect_head(1, "so_sealed_key", SO_COPY);
	/* A new zone key: a change-log row tells the other processes to read it and the blobs. */
	ck_assert_int_eq(env_sql_long("SELECT count(*) FROM changes WHERE kind = 8 AND zone = 1"),
			 1);
	tpm_clean();

	/* Works again: in this process, in a fresh one, in a forked child. */
	zone_signs(1);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	env_init();
	zone_signs(1);
	kid_start(&k, kid_sign, NULL);
	kid_expect(&k, CKR_OK, "child's login and signature");
	kid_expect(&k, CKR_OK, "child's C_Finalize");
	kid_done(&k);

	/* Still bound: the next change refuses it again. */
	pcr_extend(16);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	env_init();
	ck_assert_int_eq(user_login(1), CKR_FUNCTION_REJECTED);
	free(before);
	free(copy_before);
	free(after);
	free(copy_after);
}
END_TEST

START_TEST(test_pcr_v2_blob_binds)
{
	CK_ULONG pcrs;
	char *v2, *bound;

	/* Made before the zone had PCRs: version 2, no copy. */
	(void)zone_with_key();
	expect_head(1, "sealed_key", "02");
	expect_head(1, "so_sealed_key", "");
	/* PCRs configured now: the version 2 blob still opens, unbound. */
	tpm_config("[zone 1]\npcrs = 16\n");
	pcr_extend(16);
	env_init();
	zone_signs(1);
	v2 = sealed_hex(1, "sealed_key");
	/* Re-bound by the SO: bound from now on. */
	ck_assert_int_eq(rebind(1, SO_PIN, &pcrs), CKR_OK);
	ck_assert_uint_eq(pcrs, 1UL << 16);
	expect_head(1, "sealed_key", BOUND_16);
	expect_head(1, "so_sealed_key", SO_COPY);
	zone_signs(1);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	env_init();
	zone_signs(1);
	/* A new key: the old unbound blob, put back, opens none of the zone's keys. */
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	bound = sealed_hex(1, "sealed_key");
	env_sh("sqlite3 '%s/store/edgevault.db' \"UPDATE zones SET sealed_key = x'%s' WHERE id = "
	       "1\"",
	       env.dir, v2);
	env_init();
	ck_assert_int_ne(signs(1), CKR_OK);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	env_sh("sqlite3 '%s/store/edgevault.db' \"UPDATE zones SET sealed_key = x'%s' WHERE id = "
	       "1\"",
	       env.dir, bound);
	free(v2);
	free(bound);
	env_init();
	zone_signs(1);
	pcr_extend(16);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	env_init();
	ck_assert_int_eq(user_login(1), CKR_FUNCTION_REJECTED);
	ck_assert_int_eq(env.f->C_CloseAllSessions(1), CKR_OK);

	/* And unbound again when the configuration drops the PCRs. */
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	tpm_config("[zone 1]\npcrs = none\n");
	env_init();
	ck_assert_int_eq(rebind(1, SO_PIN, &pcrs), CKR_OK);
	ck_assert_uint_eq(pcrs, 0);
	expect_head(1, "sealed_key", "02");
	expect_head(1, "so_sealed_key", "");
	pcr_extend(16);
	zone_signs(1);
}
END_TEST

/* Attestation that the rotation needs: a verifier key and a result for zone 1. */
static char *
attest_lines(void)
{
	char path[400], line[200];
	FILE *f;

	env_sh("'%s' attest keygen --out '%s/v.key' >'%s/v.line' 2>/dev/null", getenv("EV_TOOL"),
	       env.dir, env.dir);
	env_sh("'%s' attest sign --key '%s/v.key' --device test-device --zone 1 --ttl 3600 "
	       "--out '%s/result.json' 2>/dev/null",
	       getenv("EV_TOOL"), env.dir, env.dir);
	snprintf(path, sizeof(path), "%s/v.line", env.dir);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
	fclose(f);
	return fmt("[attestation]\nprovider = result\n%sresult_path = %s/result.json\n"
		   "[zone 1]\npcrs = 16\n",
		   line, env.dir);
}

START_TEST(test_pcr_rotation_keeps_binding)
{
	CK_SESSION_HANDLE h;
	CK_ULONG count = 0, pcrs;
	char *lines, *before, *copy_before;

	ck_assert_ptr_nonnull(getenv("EV_TOOL"));
	lines = attest_lines();
	tpm_config(lines);
	(void)zone_with_key();
	before = sealed_hex(1, "sealed_key");
	copy_before = sealed_hex(1, "so_sealed_key");
	env_init();
	ck_assert_int_eq(so_login(1, SO_PIN, &h), CKR_OK);
	ck_assert_int_eq(admin12()->EV_RotateZoneKey(h, &count), CKR_OK);
	ck_assert_uint_eq(count, 1);
	ck_assert_int_eq(env.f->C_CloseSession(h), CKR_OK);
	/* Both copies sealed anew, the new key still bound. */
	ck_assert_str_ne(sealed_hex(1, "sealed_key"), before);
	ck_assert_str_ne(sealed_hex(1, "so_sealed_key"), copy_before);
	expect_head(1, "sealed_key", BOUND_16);
	expect_head(1, "so_sealed_key", SO_COPY);
	zone_signs(1);
	tpm_clean();
	/* Refused once the PCR changes; the new copy re-binds it. */
	pcr_extend(16);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	env_init();
	ck_assert_int_eq(user_login(1), CKR_FUNCTION_REJECTED);
	ck_assert_int_eq(env.f->C_CloseAllSessions(1), CKR_OK);
	/* Rotation needs the key: refused until re-bound. */
	ck_assert_int_eq(so_login(1, SO_PIN, &h), CKR_OK);
	ck_assert_int_eq(admin12()->EV_RotateZoneKey(h, &count), CKR_FUNCTION_REJECTED);
	ck_assert_int_eq(env.f->C_CloseSession(h), CKR_OK);
	ck_assert_int_eq(rebind(1, SO_PIN, &pcrs), CKR_OK);
	zone_signs(1);
	free(lines);
	free(before);
	free(copy_before);
}
END_TEST

/* TPM2_PT_LOCKOUT_COUNTER: the TPM's count of failed authorisations. */
static long
da_failures(void)
{
	char cmd[256], line[256];
	long n = -1;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "tpm2_getcap " TOOLS_TCTI " properties-variable", tpm.port);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	while (fgets(line, sizeof(line), p) != NULL)
		if (strncmp(line, "TPM2_PT_LOCKOUT_COUNTER:", 24) == 0)
			n = strtol(line + 24, NULL, 16);
	ck_assert_int_eq(pclose(p), 0);
	return n;
}

START_TEST(test_pcr_copy_needs_so_auth)
{
	CK_UTF8CHAR lab[32];
	CK_ULONG pcrs;
	int i;

	tpm_config("[policy]\npcrs = 16\n");
	(void)zone_with_key();
	env_init();
	/* Zone 2 with another SO PIN, whose hash zone 1 is given below. */
	env_label(lab, "other");
	ck_assert_int_eq(
	    env.f->C_InitToken(2, (CK_UTF8CHAR *)OTHER_SO_PIN, strlen(OTHER_SO_PIN), lab), CKR_OK);
	pcr_extend(16);
	/* The TPM's dictionary-attack parameters, set here rather than taken from swtpm. */
	env_sh("tpm2_dictionarylockout " TOOLS_TCTI " -s -n 3 -t 1000 -l 1000 >/dev/null",
	       tpm.port);
	ck_assert_int_eq(da_failures(), 0);
	env_sh("sqlite3 '%s/store/edgevault.db' \"CREATE TABLE saved AS SELECT so_pin FROM zones "
	       "WHERE id = 1; UPDATE zones SET so_pin = (SELECT so_pin FROM zones WHERE id = 2) "
	       "WHERE id = 1\"",
	       env.dir);
	/*
	 * The module takes that PIN for zone 1's SO; the TPM does not: the
	 * copy's auth value comes from the PIN it was sealed with, and each
	 * wrong one counts towards the TPM's dictionary-attack lockout.
	 */
	/* Not a wrong PIN (it matched its hash): the copy and the hash disagree. */
	ck_assert_int_eq(rebind(1, OTHER_SO_PIN, &pcrs), CKR_FUNCTION_FAILED);
	ck_assert_int_eq(da_failures(), 1);
	tpm_clean();
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(rebind(1, OTHER_SO_PIN, &pcrs), CKR_FUNCTION_FAILED);
	tpm_clean();
	/* Locked out now (3 allowed, set above): even the right auth value waits. */
	ck_assert_int_eq(rebind(1, OTHER_SO_PIN, &pcrs), CKR_FUNCTION_REJECTED);
	tpm_clean();
	env_sh("sqlite3 '%s/store/edgevault.db' \"UPDATE zones SET so_pin = (SELECT so_pin FROM "
	       "saved) WHERE id = 1\"",
	       env.dir);
	ck_assert_int_eq(rebind(1, SO_PIN, &pcrs), CKR_FUNCTION_REJECTED);
	tpm_clean();
	/* No SO PIN attempt was counted: the PINs were right. */
	ck_assert_int_eq(env_sql_long("SELECT so_fails FROM zones WHERE id = 1"), 0);
	ck_assert_int_eq(user_login(1), CKR_FUNCTION_REJECTED);
	/* The TPM's owner clears the lockout; the right PIN re-binds. */
	env_sh("tpm2_dictionarylockout " TOOLS_TCTI " -c >/dev/null", tpm.port);
	ck_assert_int_eq(rebind(1, SO_PIN, &pcrs), CKR_OK);
	ck_assert_int_eq(env.f->C_CloseAllSessions(1), CKR_OK);
	zone_signs(1);
}
END_TEST

START_TEST(test_pcr_so_pin_change)
{
	CK_SESSION_HANDLE h;
	CK_ULONG pcrs;
	char *copy_before;

	tpm_config("[zone 1]\npcrs = 16\n");
	(void)zone_with_key();
	copy_before = sealed_hex(1, "so_sealed_key");
	env_init();
	env_sh("sqlite3 '%s/store/edgevault.db' \"CREATE TABLE saved AS SELECT so_pin FROM zones "
	       "WHERE id = 1\"",
	       env.dir);
	ck_assert_int_eq(so_login(1, SO_PIN, &h), CKR_OK);
	ck_assert_int_eq(env.f->C_SetPIN(h, (CK_UTF8CHAR *)"wrong-so-pin", 12,
					 (CK_UTF8CHAR *)NEW_SO_PIN, strlen(NEW_SO_PIN)),
			 CKR_PIN_INCORRECT);
	ck_assert_str_eq(sealed_hex(1, "so_sealed_key"), copy_before);
	ck_assert_int_eq(env.f->C_SetPIN(h, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN),
					 (CK_UTF8CHAR *)NEW_SO_PIN, strlen(NEW_SO_PIN)),
			 CKR_OK);
	/* The copy is sealed anew (under the new PIN's auth value). */
	ck_assert_str_ne(sealed_hex(1, "so_sealed_key"), copy_before);
	expect_head(1, "so_sealed_key", SO_COPY);
	tpm_clean();
	/* This SO login goes on with the new PIN's auth value. */
	pcr_extend(16);
	ck_assert_int_eq(admin12()->EV_RebindZone(h, &pcrs), CKR_OK);
	ck_assert_int_eq(env.f->C_CloseSession(h), CKR_OK);

	/* The old PIN no longer opens the copy, even if the store takes it again. */
	pcr_extend(16);
	ck_assert_int_eq(so_login(1, SO_PIN, &h), CKR_PIN_INCORRECT);
	ck_assert_int_eq(env.f->C_CloseSession(h), CKR_OK);
	env_sh("sqlite3 '%s/store/edgevault.db' \"CREATE TABLE saved_new AS SELECT so_pin FROM "
	       "zones WHERE id = 1; UPDATE zones SET so_pin = (SELECT so_pin FROM saved), "
	       "so_fails = 0 WHERE id = 1\"",
	       env.dir);
	ck_assert_int_eq(rebind(1, SO_PIN, &pcrs), CKR_FUNCTION_FAILED);
	tpm_clean();
	env_sh("sqlite3 '%s/store/edgevault.db' \"UPDATE zones SET so_pin = (SELECT so_pin FROM "
	       "saved_new) WHERE id = 1\"",
	       env.dir);
	ck_assert_int_eq(rebind(1, NEW_SO_PIN, &pcrs), CKR_OK);
	zone_signs(1);
	free(copy_before);
}
END_TEST

/* In a child: its own C_Initialize, the SO's login to zone 1 and C_SetPIN to NEW_SO_PIN. */
static void
kid_so_pin(int rd, int wr, void *arg)
{
	CK_SESSION_HANDLE h;
	CK_RV rv;

	(void)rd;
	(void)arg;
	rv = kid_init();
	if (rv == CKR_OK)
		rv = env.f->C_OpenSession(1, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h);
	if (rv == CKR_OK)
		rv = env.f->C_Login(h, CKU_SO, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN));
	if (rv == CKR_OK)
		rv = env.f->C_SetPIN(h, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN),
				     (CK_UTF8CHAR *)NEW_SO_PIN, strlen(NEW_SO_PIN));
	put(wr, rv);
	put(wr, env.f->C_Finalize(NULL));
}

START_TEST(test_pcr_so_pin_changed_elsewhere)
{
	CK_SESSION_HANDLE h;
	CK_ULONG count = 0, pcrs;
	char *lines, *sealed, *copy;
	struct kid k;

	ck_assert_ptr_nonnull(getenv("EV_TOOL"));
	lines = attest_lines();
	tpm_config(lines);
	(void)zone_with_key();
	env_init();
	ck_assert_int_eq(so_login(1, SO_PIN, &h), CKR_OK);
	/* Another process changes the SO PIN while this one's SO is logged in. */
	kid_start(&k, kid_so_pin, NULL);
	kid_expect(&k, CKR_OK, "child's SO PIN change");
	kid_expect(&k, CKR_OK, "child's C_Finalize");
	kid_done(&k);
	sealed = sealed_hex(1, "sealed_key");
	copy = sealed_hex(1, "so_sealed_key");
	/* This SO's auth value is of the old PIN: refused before the TPM sees it. */
	ck_assert_int_eq(admin12()->EV_RotateZoneKey(h, &count), CKR_USER_NOT_LOGGED_IN);
	ck_assert_int_eq(admin12()->EV_RebindZone(h, &pcrs), CKR_USER_NOT_LOGGED_IN);
	pcr_extend(16);
	ck_assert_int_eq(admin12()->EV_RebindZone(h, &pcrs), CKR_USER_NOT_LOGGED_IN);
	ck_assert_int_eq(env.f->C_SetPIN(h, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN),
					 (CK_UTF8CHAR *)OTHER_SO_PIN, strlen(OTHER_SO_PIN)),
			 CKR_PIN_INCORRECT);
	ck_assert_int_eq(env.f->C_CloseSession(h), CKR_OK);
	ck_assert_str_eq(sealed_hex(1, "sealed_key"), sealed);
	ck_assert_str_eq(sealed_hex(1, "so_sealed_key"), copy);
	/* Nothing was asked of the TPM. */
	ck_assert_int_eq(da_failures(), 0);
	/* The recovery copy opens with the new PIN. */
	ck_assert_int_eq(user_login(1), CKR_FUNCTION_REJECTED);
	ck_assert_int_eq(rebind(1, NEW_SO_PIN, &pcrs), CKR_OK);
	ck_assert_uint_eq(pcrs, 1UL << 16);
	zone_signs(1);
	tpm_clean();
	free(lines);
	free(sealed);
	free(copy);
}
END_TEST

/* EV_RebindZone and EV_RotateZoneKey after the SO logged out: refused before the TPM. */
START_TEST(test_pcr_so_logged_out)
{
	CK_SESSION_HANDLE h, h2;
	CK_ULONG pcrs;

	tpm_config("[zone 1]\npcrs = 16\n");
	(void)zone_with_key();
	env_init();
	ck_assert_int_eq(so_login(1, SO_PIN, &h), CKR_OK);
	ck_assert_int_eq(env.f->C_OpenSession(1, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
					      &h2),
			 CKR_OK);
	ck_assert_int_eq(env.f->C_Logout(h2), CKR_OK);
	ck_assert_int_eq(admin12()->EV_RebindZone(h, &pcrs), CKR_USER_NOT_LOGGED_IN);
	ck_assert_int_eq(env.f->C_CloseAllSessions(1), CKR_OK);
}
END_TEST

START_TEST(test_pcr_pkcs11_root_refused)
{
	char path[512], *log = NULL;
	CK_RV rv;

	/* The same configuration with the SoftHSM root: pcrs is refused at load, its line named. */
	env_write_config("[policy]\npcrs = 16\n");
	rv = logged(do_init_token, NULL, &log);
	ck_assert_msg(rv == CKR_GENERAL_ERROR, "C_Initialize: 0x%lx\n%s", (unsigned long)rv, log);
	snprintf(path, sizeof(path), "%s/edgevault.conf:", env.dir);
	ck_assert_msg(strstr(log, path) != NULL, "log: %s", log);
	ck_assert_msg(strstr(log, "[policy] pcrs binds zone keys to TPM PCRs, which needs [root] "
				  "backend tpm2 (the backend is pkcs11)") != NULL,
		      "log: %s", log);
	free(log);
}
END_TEST

/*
 * edgevault-tpm-helper (src/root/tpm2_helper.h): with libp11's engine the
 * default in this process, as `openssl -engine pkcs11` makes it, every TPM
 * operation runs in the helper (built here: [root] helper); without one,
 * none does.
 */

#define HELPER_RUNS "the operation runs in the TPM helper"

/* A log that shows the helper ran the operations (and the engine that made it). */
static void
helper_ran(const char *log)
{
	ck_assert_msg(strstr(log, "OpenSSL's default ENGINE \"pkcs11\" would take ESAPI's "
				  "cryptography: " HELPER_RUNS) != NULL,
		      "log: %s", log);
}

START_TEST(test_helper_engine_default)
{
	struct login_args a;
	CK_SLOT_ID second;
	char *log = NULL;
	CK_RV rv;

	/* Sealed in this process, with no default ENGINE. */
	a.slot = zone_with_key();
	engine_default_on();
	/* ESAPI's salted session would fail here (CKR_DEVICE_ERROR): the helper unseals. */
	rv = logged(do_login, &a, &log);
	ck_assert_msg(rv == CKR_OK, "C_Login: 0x%lx\n%s", (unsigned long)rv, log);
	helper_ran(log);
	free(log);
	/* The helper flushed its primary and ended: this process holds nothing in the TPM. */
	ck_assert_int_eq(tpm_handles("handles-transient"), 0);
	ck_assert_int_eq(tpm_handles("handles-loaded-session"), 0);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	/* The zone key came back right: the key it wraps signs. */
	env_init();
	ck_assert_int_eq(signs(a.slot), CKR_OK);
	/* Sealed by the helper (a new zone), opened by it. */
	second = env_new_zone("helper zone");
	ck_assert_int_eq(user_login(second), CKR_OK);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	/* No default ENGINE: in this process again, and what the helper sealed opens here. */
	engine_default_off();
	env_init();
	ck_assert_int_eq(user_login(second), CKR_OK);
	ck_assert_int_eq(signs(a.slot), CKR_OK);
	tpm_handles_none();
}
END_TEST

/* The config's [root] helper is path; a login with a default ENGINE fails, naming it and why. */
static void
helper_fails(const char *path, const char *why)
{
	static char lines[600];
	struct login_args a = { 1 };
	char *log = NULL, *want;
	double t0 = now_s();
	CK_RV rv;

	snprintf(lines, sizeof(lines), "helper = %s\n", path);
	root_lines = lines;
	tpm_config(NULL);
	rv = logged(do_login, &a, &log);
	ck_assert_msg(rv == CKR_DEVICE_ERROR, "C_Login: 0x%lx\n%s", (unsigned long)rv, log);
	want = fmt("TPM helper %s%s", path, why);
	ck_assert_msg(strstr(log, want) != NULL, "want \"%s\" in log: %s", want, log);
	/* At once: nothing waited for. */
	ck_assert_msg(now_s() - t0 < DEADLINE, "C_Login took %.1f s", now_s() - t0);
	free(want);
	free(log);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
}

START_TEST(test_helper_fails)
{
	struct login_args a;
	char *missing = fmt("%s/no-such-helper", env.dir), *noexec = fmt("%s/noexec", env.dir);
	char *dies = fmt("%s/dies", env.dir);
	char *log = NULL;
	CK_RV rv;

	a.slot = zone_with_key();
	ck_assert_int_eq(a.slot, 1);
	/* No default ENGINE: the helper is not started, so a missing one changes nothing. */
	root_lines = fmt("helper = %s\n", missing);
	tpm_config(NULL);
	rv = logged(do_login, &a, &log);
	ck_assert_msg(rv == CKR_OK, "C_Login: 0x%lx\n%s", (unsigned long)rv, log);
	ck_assert_msg(strstr(log, "TPM helper") == NULL, "log: %s", log);
	free(log);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	free((char *)root_lines);

	engine_default_on();
	helper_fails(missing, " cannot be started ([root] helper): No such file or directory");
	env_sh("printf '#!/bin/sh\\nexit 0\\n' >'%s' && chmod 644 '%s'", noexec, noexec);
	helper_fails(noexec, " cannot be started ([root] helper): Permission denied");
	/* One that dies before it answers. */
	env_sh("printf '#!/bin/sh\\nkill -9 $$\\n' >'%s' && chmod 755 '%s'", dies, dies);
	helper_fails(dies, " (pid ");
	a.slot = 1;
	rv = logged(do_login, &a, &log);
	ck_assert_msg(strstr(log, " ended without an answer") != NULL, "log: %s", log);
	ck_assert_msg(strstr(log, " was killed by signal 9") != NULL, "log: %s", log);
	ck_assert_int_eq(rv, CKR_DEVICE_ERROR);
	free(log);
	free(missing);
	free(noexec);
	free(dies);
}
END_TEST

START_TEST(test_helper_pcr_mismatch)
{
	struct login_args a;
	char *log = NULL;
	CK_RV rv;

	tpm_config("[zone 1]\npcrs = 16\n");
	a.slot = zone_with_key();
	ck_assert_int_eq(a.slot, 1);
	pcr_extend(16);
	engine_default_on();
	/* Refused by the TPM in the helper; which PCR changed comes back with the answer. */
	rv = logged(do_login, &a, &log);
	ck_assert_msg(rv == CKR_FUNCTION_REJECTED, "C_Login: 0x%lx\n%s", (unsigned long)rv, log);
	helper_ran(log);
	ck_assert_msg(strstr(log, "zone 1: PCR 16 no longer matches the values the zone key is "
				  "sealed to") != NULL,
		      "log: %s", log);
	free(log);
	ck_assert_int_eq(refusals(), 1);
	ck_assert_int_eq(env_sql_long("SELECT user_fails FROM zones WHERE id = 1"), 0);
	ck_assert_int_eq(tpm_handles("handles-transient"), 0);
	ck_assert_int_eq(tpm_handles("handles-loaded-session"), 0);
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
	tcase_add_test(tc, test_primary_name_pinned);
	tcase_add_test(tc, test_malformed_blob);
	tcase_add_test(tc, test_unreachable);
	tcase_add_test(tc, test_other_device_id);
	tcase_add_test(tc, test_fork);
	tcase_add_test(tc, test_processes_share_tpm);
	tcase_add_test(tc, test_slots_left_full);
	tcase_add_test(tc, test_persistent_primary);
	tcase_add_test(tc, test_persistent_primary_refused);
	tcase_add_test(tc, test_tpm_restarted_under_module);
	tcase_add_test(tc, test_pcr_bound_refused);
	tcase_add_test(tc, test_pcr_rebind);
	tcase_add_test(tc, test_pcr_v2_blob_binds);
	tcase_add_test(tc, test_pcr_rotation_keeps_binding);
	tcase_add_test(tc, test_pcr_copy_needs_so_auth);
	tcase_add_test(tc, test_pcr_so_pin_change);
	tcase_add_test(tc, test_pcr_so_pin_changed_elsewhere);
	tcase_add_test(tc, test_pcr_so_logged_out);
	tcase_add_test(tc, test_pcr_pkcs11_root_refused);
	tcase_add_test(tc, test_helper_engine_default);
	tcase_add_test(tc, test_helper_fails);
	tcase_add_test(tc, test_helper_pcr_mismatch);
	suite_add_tcase(s, tc);
	return env_run(s);
}
