/*
 * The audit trail's checkpoint key against a real root (SoftHSMv2): made
 * once even when processes race, EV_AuditPublicKey names the key that
 * signs checkpoints, EV_AuditCheckpoint writes one, a store under
 * another root key cannot use it; root.unreachable and root.reachable.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sodium.h>

#include "harness.h"
#include "pkcs11/edgevault.h"

#define RACERS 4

static EV_ADMIN_FUNCTION_LIST *
admin13(void)
{
	CK_INTERFACE *iface = NULL;
	CK_VERSION v = {1, 3};
	EV_ADMIN_FUNCTION_LIST *a;

	if (env.f->C_GetInterface((CK_UTF8CHAR *)EV_ADMIN_INTERFACE_NAME, &v, &iface, 0) != CKR_OK)
		return NULL;
	a = iface->pFunctionList;
	return a->version.major == 1 && a->version.minor == 3 ? a : NULL;
}

static void
public_key(unsigned char pk[32])
{
	CK_ULONG len = 0;

	ck_assert_ptr_nonnull(admin13());
	ck_assert_int_eq(admin13()->EV_AuditPublicKey(NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, 32);
	len = 31;
	ck_assert_int_eq(admin13()->EV_AuditPublicKey(pk, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, 32);
	ck_assert_int_eq(admin13()->EV_AuditPublicKey(pk, &len), CKR_OK);
	ck_assert_uint_eq(len, 32);
}

/* The audit file's lines: a malloc'ed copy of the file, lines split at '\n' (n of them). */
static char *
audit_lines(char **v, size_t max, size_t *n)
{
	char *text = NULL, *p, *nl;
	size_t len = 0;
	FILE *f = fopen(fmt("%s/store/audit.log", env.dir), "re");

	*n = 0;
	ck_assert_ptr_nonnull(f);
	ck_assert_int_ne(getdelim(&text, &len, '\0', f), -1);
	fclose(f);
	for (p = text; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
		ck_assert_uint_lt(*n, max);
		*nl = '\0';
		v[(*n)++] = p;
	}
	ck_assert_msg(*p == '\0', "a line does not end in a newline");
	return text;
}

static const char *
member(json_object *o, const char *name)
{
	json_object *v;

	ck_assert_msg(json_object_object_get_ex(o, name, &v), "no %s", name);
	return json_object_get_string(v);
}

/* line is a checkpoint after prevline whose signature verifies with pk (doc/audit.md). */
static void
checkpoint_verifies(const char *line, const char *prevline, const unsigned char pk[32])
{
	json_object *o = json_tokener_parse(line);
	unsigned char sig[64], prev[32], want[32], msg[256];
	size_t n, m;
	const char *device;
	int64_t seq;

	ck_assert_ptr_nonnull(o);
	ck_assert_str_eq(member(o, "event"), "audit.checkpoint");
	crypto_generichash(want, 32, (const unsigned char *)prevline, strlen(prevline), NULL, 0);
	ck_assert_int_eq(sodium_hex2bin(prev, 32, member(o, "prev"), 64, NULL, &n, NULL), 0);
	ck_assert_int_eq(memcmp(prev, want, 32), 0);
	ck_assert_int_eq(sodium_base642bin(sig, 64, member(o, "sig"), 88, NULL, &n, NULL,
					   sodium_base64_VARIANT_ORIGINAL),
			 0);
	seq = json_object_get_int64(json_object_object_get(o, "seq"));
	device = member(o, "device");
	m = strlen("edgevault-audit-checkpoint-v1");
	memcpy(msg, "edgevault-audit-checkpoint-v1", m);
	for (int i = 7; i >= 0; i--)
		msg[m++] = (unsigned char)((uint64_t)seq >> (8 * i));
	memcpy(msg + m, prev, 32);
	m += 32;
	memcpy(msg + m, device, strlen(device));
	m += strlen(device);
	ck_assert_int_eq(crypto_sign_verify_detached(sig, msg, m, pk), 0);
	json_object_put(o);
}

static void
racer(int rd, int wr, void *arg)
{
	unsigned char pk[32];
	CK_ULONG len = sizeof(pk);
	CK_RV rv;

	(void)arg;
	rv = kid_init();
	put(wr, rv);
	(void)take(rd); /* all at once */
	/*
	 * SoftHSMv2 sometimes lists no token to a process that opens it while
	 * another writes its token files (logged: "no upstream token
	 * labelled"): the root unreachable for a moment, tried again. Every
	 * try still races the others for the key.
	 */
	for (int i = 0; i < 3; i++) {
		len = sizeof(pk);
		rv = admin13() != NULL ? admin13()->EV_AuditPublicKey(pk, &len) : CKR_GENERAL_ERROR;
		if (rv != CKR_DEVICE_ERROR)
			break;
	}
	put(wr, rv);
	put_bytes(wr, pk, sizeof(pk));
	(void)env.f->C_Finalize(NULL);
}

/* Processes reaching the root at once for the first time: one key for all. */
START_TEST(test_key_made_once)
{
	struct kid k[RACERS];
	unsigned char pk[RACERS][32], mine[32];
	int i;

	/*
	 * The root key made first (by a zone), audit off: processes racing to
	 * make the root key itself on an empty store is another matter.
	 */
	env_write_config("[audit]\nenabled = false\n");
	env_init();
	(void)env_new_zone("z");
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	env_write_config(NULL);
	for (i = 0; i < RACERS; i++) {
		kid_start(&k[i], racer, NULL);
		kid_expect(&k[i], CKR_OK, "C_Initialize");
	}
	for (i = 0; i < RACERS; i++)
		kid_put(&k[i], 1);
	for (i = 0; i < RACERS; i++) {
		kid_expect(&k[i], CKR_OK, "EV_AuditPublicKey");
		ck_assert_uint_eq(kid_get_bytes(&k[i], pk[i], 32), 32);
		kid_done(&k[i]);
	}
	for (i = 1; i < RACERS; i++)
		ck_assert_int_eq(memcmp(pk[0], pk[i], 32), 0);
	env_init();
	public_key(mine);
	ck_assert_int_eq(memcmp(pk[0], mine, 32), 0);
	ck_assert_int_eq(env_sql_long("SELECT count(*) FROM meta WHERE key = 'audit_key_sealed'"),
			 1);
}
END_TEST

/*
 * The root unreachable (its PIN file gone): root.unreachable, once; reached
 * again: root.reachable; EV_AuditCheckpoint signs with the key
 * EV_AuditPublicKey names; C_Finalize adds one over later lines.
 */
START_TEST(test_checkpoint_and_root_lines)
{
	char *v[64], *text;
	unsigned char pk[32];
	json_object *o;
	size_t n;

	ck_assert_int_eq(rename(fmt("%s/root.pin", env.dir), fmt("%s/root.pin.away", env.dir)), 0);
	env_init();
	ck_assert_int_eq(admin13()->EV_AuditCheckpoint(), CKR_DEVICE_ERROR);
	ck_assert_int_eq(admin13()->EV_AuditCheckpoint(), CKR_DEVICE_ERROR);
	text = audit_lines(v, 64, &n);
	ck_assert_uint_eq(n, 1); /* once per transition */
	o = json_tokener_parse(v[0]);
	ck_assert_str_eq(member(o, "event"), "root.unreachable");
	ck_assert_str_eq(member(o, "outcome"), "failed");
	ck_assert_ptr_nonnull(strstr(member(o, "reason"), "root.pin"));
	json_object_put(o);
	free(text);

	ck_assert_int_eq(rename(fmt("%s/root.pin.away", env.dir), fmt("%s/root.pin", env.dir)), 0);
	ck_assert_int_eq(admin13()->EV_AuditCheckpoint(), CKR_OK);
	public_key(pk);
	text = audit_lines(v, 64, &n);
	ck_assert_uint_eq(n, 3);
	o = json_tokener_parse(v[1]);
	ck_assert_str_eq(member(o, "event"), "root.reachable");
	ck_assert_str_eq(member(o, "outcome"), "ok");
	json_object_put(o);
	checkpoint_verifies(v[2], v[1], pk);
	free(text);

	/* Nothing since: none added. */
	ck_assert_int_eq(admin13()->EV_AuditCheckpoint(), CKR_OK);
	text = audit_lines(v, 64, &n);
	ck_assert_uint_eq(n, 3);
	free(text);

	/* A line after it (the root lost and found again), then C_Finalize: a checkpoint. */
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	ck_assert_int_eq(rename(fmt("%s/root.pin", env.dir), fmt("%s/root.pin.away", env.dir)), 0);
	env_init();
	ck_assert_int_eq(admin13()->EV_AuditCheckpoint(), CKR_DEVICE_ERROR);
	ck_assert_int_eq(rename(fmt("%s/root.pin.away", env.dir), fmt("%s/root.pin", env.dir)), 0);
	public_key(pk); /* reaches the root: root.reachable, the key unsealed */
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	text = audit_lines(v, 64, &n);
	ck_assert_uint_eq(n, 6);
	checkpoint_verifies(v[5], v[4], pk);
	free(text);
}
END_TEST

/* The store's key sealed under one root key; the configuration names another: refused. */
START_TEST(test_other_root_key)
{
	unsigned char pk[32];
	CK_ULONG len = sizeof(pk);
	char *log, *p;
	int n = 0;

	env_init();
	public_key(pk);
	ck_assert_int_eq(env.f->C_Finalize(NULL), CKR_OK);
	/* No zone in the store: the module makes the new root key, which opens nothing old. */
	env_write_config("");
	env_sh(
	    "sed -i 's/^key_label = edgevault-root$/key_label = another-root/' %s/edgevault.conf",
	    env.dir);
	env_log_start();
	env_init();
	ck_assert_int_eq(admin13()->EV_AuditPublicKey(pk, &len), CKR_DEVICE_ERROR);
	ck_assert_int_eq(admin13()->EV_AuditCheckpoint(), CKR_DEVICE_ERROR);
	ck_assert_int_eq(admin13()->EV_AuditCheckpoint(), CKR_DEVICE_ERROR);
	ck_assert_int_eq(admin13()->EV_AuditPublicKey(pk, &len), CKR_DEVICE_ERROR);
	log = env_log_stop();
	/* A blob that will not open under this root is given up once: not unsealed again at every call. */
	for (p = log; (p = strstr(p, "the checkpoint key cannot be used")) != NULL; p++)
		n++;
	ck_assert_msg(n == 1, "%d times:\n%s", n, log);
	free(log);
}
END_TEST

/* Audit off: EV_AuditCheckpoint and EV_AuditPublicKey are rejected; versions 1.2 and before still
 * answer. */
START_TEST(test_disabled_and_versions)
{
	CK_INTERFACE *iface = NULL;
	CK_VERSION v12 = {1, 2};
	EV_ADMIN_FUNCTION_LIST *a;
	CK_ULONG len = 0;

	env_write_config("[audit]\nenabled = false\n");
	env_init();
	ck_assert_int_eq(admin13()->EV_AuditCheckpoint(), CKR_FUNCTION_REJECTED);
	ck_assert_int_eq(admin13()->EV_AuditPublicKey(NULL, &len), CKR_FUNCTION_REJECTED);
	ck_assert_int_eq(access(fmt("%s/store/audit.log", env.dir), F_OK), -1);
	ck_assert_int_eq(
	    env.f->C_GetInterface((CK_UTF8CHAR *)EV_ADMIN_INTERFACE_NAME, &v12, &iface, 0), CKR_OK);
	a = iface->pFunctionList;
	ck_assert_int_eq(a->version.minor, 2);
	ck_assert_ptr_nonnull(a->EV_RebindZone);
	ck_assert_int_eq(
	    env.f->C_GetInterface((CK_UTF8CHAR *)EV_ADMIN_INTERFACE_NAME, NULL, &iface, 0), CKR_OK);
	a = iface->pFunctionList;
	/* The default is the latest version (1.4 added EV_RotateKeys); it has the audit functions. */
	ck_assert_int_eq(a->version.minor, 4);
	ck_assert_ptr_nonnull(a->EV_AuditCheckpoint);
	ck_assert_ptr_nonnull(a->EV_AuditPublicKey);
	ck_assert_ptr_nonnull(a->EV_RotateKeys);
	ck_assert_ptr_nonnull(admin13());
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("audit_key");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, env_setup, env_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_key_made_once);
	tcase_add_test(tc, test_checkpoint_and_root_lines);
	tcase_add_test(tc, test_other_root_key);
	tcase_add_test(tc, test_disabled_and_versions);
	suite_add_tcase(s, tc);
	return env_run(s);
}
