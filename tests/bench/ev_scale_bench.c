/*
 * Scale figures of edgevault (issue 8): start-up with many keys stored,
 * memory, rotation of many keys, zone key rotation. Driven by
 * tests/bench/scale.sh, which sets up the store; each command is one fresh
 * process that loads the module with dlopen() as applications do
 * (EDGEVAULT_CONF names the configuration).
 *
 *   ev_scale_bench make MODULE TOKEN PIN KIND PREFIX FROM COUNT THREADS
 *	token keys PREFIX<FROM> .. PREFIX<FROM+COUNT-1> (KIND aes: AES-256
 *	secret keys; ec: P-256 key pairs), made by THREADS threads with
 *	C_CreateObject / C_GenerateKeyPair. Set-up only: prints keys/s.
 *   ev_scale_bench startup MODULE TOKEN PIN LABEL
 *	C_Initialize, C_OpenSession, C_Login (timed apart: it holds the
 *	Argon2id PIN check), then the first signature: find the private key
 *	LABEL, C_SignInit + C_Sign (CKM_ECDSA). Prints each step's ms, the
 *	total without C_Login, and VmRSS / VmHWM (kB) after the signature.
 *   ev_scale_bench rotate MODULE TOKEN PIN [one]
 *	EV_RotationCandidates(EV_ROTATE_ALL), then one EV_RotateKeys call
 *	for them all (admin interface 1.4; `edgevault rotate zone` makes
 *	one per 1024 keys), or with "one" (or an older module) EV_RotateKey
 *	on each. Prints keys, seconds and which way ("batch").
 *   ev_scale_bench zonekey MODULE TOKEN SO_PIN
 *	EV_RotateZoneKey. Prints keys wrapped again and seconds.
 *
 * Every command prints one JSON line last. Exit status: 0 done, 1 failed,
 * 2 usage.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_p11.h"
#include "pkcs11/pkcs11.h"
#include "pkcs11/edgevault.h"

static CK_FUNCTION_LIST_3_0 *f;
static EV_ADMIN_FUNCTION_LIST *admin;

static int
load(const char *path)
{
	CK_RV (*get_interface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS);
	CK_INTERFACE_PTR iface = NULL;
	void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);

	if (dl == NULL) {
		fprintf(stderr, "ev_scale_bench: %s\n", dlerror());
		return -1;
	}
	*(void **)&get_interface = dlsym(dl, "C_GetInterface");
	if (get_interface == NULL ||
	    get_interface((CK_UTF8CHAR_PTR) "PKCS 11", NULL, &iface, 0) != CKR_OK) {
		fprintf(stderr, "ev_scale_bench: no PKCS 11 interface\n");
		return -1;
	}
	f = iface->pFunctionList;
	if (get_interface((CK_UTF8CHAR_PTR)EV_ADMIN_INTERFACE_NAME, NULL, &iface, 0) == CKR_OK)
		admin = iface->pFunctionList;
	return 0;
}

static void
mem_kb(long *rss, long *hwm)
{
	char line[256];
	FILE *fp = fopen("/proc/self/status", "r");

	*rss = *hwm = -1;
	if (fp == NULL)
		return;
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (strncmp(line, "VmRSS:", 6) == 0)
			*rss = strtol(line + 6, NULL, 10);
		else if (strncmp(line, "VmHWM:", 6) == 0)
			*hwm = strtol(line + 6, NULL, 10);
	}
	fclose(fp);
}

/* ---- make ---- */

struct maker {
	CK_SLOT_ID slot;
	const char *kind, *prefix;
	unsigned long from, count, step, first;
	CK_RV rv;
};

static CK_RV
make_one(CK_SESSION_HANDLE h, const char *kind, const char *label, unsigned long i)
{
	CK_BBOOL yes = CK_TRUE;
	CK_ULONG vlen = 32;
	unsigned char id[8];
	CK_OBJECT_HANDLE a, b;
	int k;

	for (k = 0; k < 8; k++)
		id[k] = (unsigned char)(i >> (8 * (7 - k)));
	if (strcmp(kind, "aes") == 0) {
		CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
		CK_ATTRIBUTE t[] = {
			{ CKA_TOKEN, &yes, sizeof(yes) },
			{ CKA_LABEL, (void *)label, strlen(label) },
			{ CKA_ID, id, sizeof(id) },
			{ CKA_VALUE_LEN, &vlen, sizeof(vlen) },
			{ CKA_ENCRYPT, &yes, sizeof(yes) },
			{ CKA_DECRYPT, &yes, sizeof(yes) },
		};

		return f->C_GenerateKey(h, &m, t, 6, &a);
	} else {
		static CK_BYTE p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01,
			0x07 };
		CK_MECHANISM m = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
		CK_ATTRIBUTE pub[] = {
			{ CKA_TOKEN, &yes, sizeof(yes) },
			{ CKA_LABEL, (void *)label, strlen(label) },
			{ CKA_ID, id, sizeof(id) },
			{ CKA_EC_PARAMS, p256, sizeof(p256) },
			{ CKA_VERIFY, &yes, sizeof(yes) },
		};
		CK_ATTRIBUTE priv[] = {
			{ CKA_TOKEN, &yes, sizeof(yes) },
			{ CKA_LABEL, (void *)label, strlen(label) },
			{ CKA_ID, id, sizeof(id) },
			{ CKA_SIGN, &yes, sizeof(yes) },
			{ CKA_PRIVATE, &yes, sizeof(yes) },
			{ CKA_SENSITIVE, &yes, sizeof(yes) },
		};

		return f->C_GenerateKeyPair(h, &m, pub, 5, priv, 6, &a, &b);
	}
}

static void *
maker_run(void *arg)
{
	struct maker *m = arg;
	CK_SESSION_HANDLE h;
	char label[128];
	unsigned long i;

	m->rv = f->C_OpenSession(m->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h);
	for (i = m->first; m->rv == CKR_OK && i < m->from + m->count; i += m->step) {
		snprintf(label, sizeof(label), "%s%lu", m->prefix, i);
		m->rv = make_one(h, m->kind, label, i);
	}
	if (m->rv != CKR_OK)
		fprintf(stderr, "ev_scale_bench: make %s%lu: 0x%lx\n", m->prefix, i, m->rv);
	(void)f->C_CloseSession(h);
	return NULL;
}

static int
cmd_make(char **av)
{
	unsigned long from = strtoul(av[5], NULL, 10), count = strtoul(av[6], NULL, 10);
	unsigned long nt = strtoul(av[7], NULL, 10), i;
	struct maker *m;
	pthread_t *th;
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
	double t0;
	int rc = 0;
	CK_RV rv;

	if (nt == 0 || nt > 64 || (strcmp(av[3], "aes") != 0 && strcmp(av[3], "ec") != 0))
		return 2;
	rv = bench_init((CK_FUNCTION_LIST *)f);
	if (rv == CKR_OK)
		rv = bench_find_token((CK_FUNCTION_LIST *)f, av[1], &slot);
	if (rv == CKR_OK)
		rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h);
	if (rv == CKR_OK)
		rv = f->C_Login(h, CKU_USER, (CK_UTF8CHAR *)av[2], strlen(av[2]));
	if (rv != CKR_OK) {
		fprintf(stderr, "ev_scale_bench: make: set-up: 0x%lx\n", rv);
		return 1;
	}
	m = calloc(nt, sizeof(*m));
	th = calloc(nt, sizeof(*th));
	if (m == NULL || th == NULL)
		return 1;
	t0 = bench_now_s();
	for (i = 0; i < nt; i++) {
		m[i] = (struct maker){ slot, av[3], av[4], from, count, nt, from + i, CKR_OK };
		if (pthread_create(&th[i], NULL, maker_run, &m[i]) != 0)
			return 1;
	}
	for (i = 0; i < nt; i++) {
		pthread_join(th[i], NULL);
		if (m[i].rv != CKR_OK)
			rc = 1;
	}
	t0 = bench_now_s() - t0;
	printf("{\"bench\":\"make\",\"kind\":\"%s\",\"keys\":%lu,\"s\":%.3f,\"keys_per_s\":%.1f}\n",
	    av[3], count, t0, (double)count / t0);
	free(m);
	free(th);
	(void)f->C_Finalize(NULL);
	return rc;
}

/* ---- startup ---- */

static int
cmd_startup(char **av)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, av[3], strlen(av[3]) } };
	CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
	CK_BYTE hash[32] = { 1, 2, 3 }, sig[256];
	CK_ULONG n = 0, slen = sizeof(sig);
	CK_OBJECT_HANDLE key;
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
	double t0, t_init, t_open, t_login, t_sign;
	long rss, hwm;
	CK_RV rv;

	t0 = bench_now_s();
	rv = bench_init((CK_FUNCTION_LIST *)f);
	t_init = bench_now_s();
	if (rv == CKR_OK)
		rv = bench_find_token((CK_FUNCTION_LIST *)f, av[1], &slot);
	if (rv == CKR_OK)
		rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h);
	t_open = bench_now_s();
	if (rv == CKR_OK)
		rv = f->C_Login(h, CKU_USER, (CK_UTF8CHAR *)av[2], strlen(av[2]));
	t_login = bench_now_s();
	if (rv == CKR_OK)
		rv = f->C_FindObjectsInit(h, t, 2);
	if (rv == CKR_OK)
		rv = f->C_FindObjects(h, &key, 1, &n);
	if (rv == CKR_OK)
		rv = f->C_FindObjectsFinal(h);
	if (rv == CKR_OK && n != 1)
		rv = CKR_KEY_HANDLE_INVALID;
	if (rv == CKR_OK)
		rv = f->C_SignInit(h, &mech, key);
	if (rv == CKR_OK)
		rv = f->C_Sign(h, hash, sizeof(hash), sig, &slen);
	t_sign = bench_now_s();
	if (rv != CKR_OK) {
		fprintf(stderr, "ev_scale_bench: startup: 0x%lx\n", rv);
		return 1;
	}
	mem_kb(&rss, &hwm);
	printf("{\"bench\":\"startup\",\"init_ms\":%.3f,\"open_ms\":%.3f,\"login_ms\":%.3f,"
	       "\"first_sign_ms\":%.3f,\"total_ms\":%.3f,\"total_minus_login_ms\":%.3f,"
	       "\"rss_kb\":%ld,\"hwm_kb\":%ld}\n",
	    (t_init - t0) * 1e3, (t_open - t_init) * 1e3, (t_login - t_open) * 1e3,
	    (t_sign - t_login) * 1e3, (t_sign - t0) * 1e3,
	    ((t_sign - t0) - (t_login - t_open)) * 1e3, rss, hwm);
	(void)f->C_Finalize(NULL);
	return 0;
}

/* ---- rotate, zonekey ---- */

static CK_RV
login_session(const char *token, CK_USER_TYPE who, const char *pin, CK_SESSION_HANDLE *h)
{
	CK_SLOT_ID slot;
	CK_RV rv = bench_init((CK_FUNCTION_LIST *)f);

	if (rv == CKR_OK)
		rv = bench_find_token((CK_FUNCTION_LIST *)f, token, &slot);
	if (rv == CKR_OK)
		rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, h);
	if (rv == CKR_OK)
		rv = f->C_Login(*h, who, (CK_UTF8CHAR *)pin, strlen(pin));
	if (rv == CKR_OK && admin == NULL)
		rv = CKR_FUNCTION_NOT_SUPPORTED;
	return rv;
}

static int
cmd_rotate(char **av)
{
	CK_OBJECT_HANDLE *keys = NULL;
	CK_SESSION_HANDLE h;
	CK_ULONG n = 0, i, failed = 0, done = 0;
	int batch = av[3] == NULL && admin != NULL && admin->version.minor >= 4;
	double t0, t1;
	CK_RV rv;

	rv = login_session(av[1], CKU_USER, av[2], &h);
	t0 = bench_now_s();
	if (rv == CKR_OK)
		rv = admin->EV_RotationCandidates(h, EV_ROTATE_ALL, NULL, &n);
	if (rv == CKR_OK && (keys = calloc(n + 1, sizeof(*keys))) == NULL)
		rv = CKR_HOST_MEMORY;
	if (rv == CKR_OK)
		rv = admin->EV_RotationCandidates(h, EV_ROTATE_ALL, keys, &n);
	if (rv == CKR_OK && batch) {
		rv = admin->EV_RotateKeys(h, keys, n, NULL, &done);
		failed = n - done;
	}
	for (i = 0; rv == CKR_OK && !batch && i < n; i++)
		if (admin->EV_RotateKey(h, keys[i], NULL) != CKR_OK)
			failed++;
	t1 = bench_now_s();
	free(keys);
	if (rv != CKR_OK || failed > 0) {
		fprintf(stderr, "ev_scale_bench: rotate: 0x%lx, %lu failed\n", rv, failed);
		return 1;
	}
	printf("{\"bench\":\"rotate\",\"batch\":%s,\"keys\":%lu,\"s\":%.3f,"
	       "\"keys_per_s\":%.1f}\n",
	    batch ? "true" : "false", n, t1 - t0, (double)n / (t1 - t0));
	(void)f->C_Finalize(NULL);
	return 0;
}

static int
cmd_zonekey(char **av)
{
	CK_SESSION_HANDLE h;
	CK_ULONG n = 0;
	double t0, t1;
	CK_RV rv;

	rv = login_session(av[1], CKU_SO, av[2], &h);
	t0 = bench_now_s();
	if (rv == CKR_OK)
		rv = admin->EV_RotateZoneKey(h, &n);
	t1 = bench_now_s();
	if (rv != CKR_OK) {
		fprintf(stderr, "ev_scale_bench: zonekey: 0x%lx\n", rv);
		return 1;
	}
	printf("{\"bench\":\"zonekey\",\"keys\":%lu,\"s\":%.3f}\n", n, t1 - t0);
	(void)f->C_Finalize(NULL);
	return 0;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: ev_scale_bench make MODULE TOKEN PIN aes|ec PREFIX FROM COUNT THREADS\n"
	    "       ev_scale_bench startup MODULE TOKEN PIN LABEL\n"
	    "       ev_scale_bench rotate MODULE TOKEN PIN [one]\n"
	    "       ev_scale_bench zonekey MODULE TOKEN SO_PIN\n");
}

int
main(int argc, char **argv)
{
	int rc = 2;

	if (argc < 5) {
		usage();
		return 2;
	}
	if (load(argv[2]) != 0)
		return 1;
	if (strcmp(argv[1], "make") == 0 && argc == 10)
		rc = cmd_make(argv + 2);
	else if (strcmp(argv[1], "startup") == 0 && argc == 6)
		rc = cmd_startup(argv + 2);
	else if (strcmp(argv[1], "rotate") == 0 &&
	    (argc == 5 || (argc == 6 && strcmp(argv[5], "one") == 0)))
		rc = cmd_rotate(argv + 2);
	else if (strcmp(argv[1], "zonekey") == 0 && argc == 5)
		rc = cmd_zonekey(argv + 2);
	if (rc == 2)
		usage();
	return rc;
}
