/*
 * Operation throughput and latency of any PKCS#11 module.
 *
 *   ev_bench [-t THREADS] [-s SECONDS] [-o OPS] [-l TOKEN_LABEL] [-p PIN] [-j] MODULE
 *
 * The module is loaded with dlopen() as applications load it, and
 * initialised with OS locking. The token labelled TOKEN_LABEL (default:
 * the first with a token present) is logged into with PIN (default
 * $EV_BENCH_PIN). For each operation in OPS (comma-separated; default
 * all) a key is generated as a session object, then THREADS threads, each
 * with its own session, run the operation for SECONDS; each thread first
 * checks one result (C_Verify with the public or same key). Printed per
 * operation: ops/s over all threads, p50 and p99 latency of one call; with
 * -j, one JSON document instead.
 *
 * Operations: ecdsa-p256, ecdsa-p384, ed25519, rsa2048-pss,
 * rsa2048-pkcs, hmac-sha256 (sign 32 bytes), aes256-gcm-4k,
 * aes256-gcm-1m (encrypt). Exit status 0 when every operation ran and
 * every check passed.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pkcs11/pkcs11.h"

#define MAX_THREADS 64
#define MAX_SAMPLES (1u << 22)

static CK_FUNCTION_LIST *f;
static CK_SLOT_ID slot;
static double seconds = 3.0;

static const CK_BYTE p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static const CK_BYTE p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };
static const CK_BYTE ed25519[] = { 0x06, 0x03, 0x2b, 0x65, 0x70 };

enum kind { K_EC, K_RSA, K_AES, K_HMAC };

struct op {
	const char *name;
	enum kind kind;
	CK_MECHANISM_TYPE gen;   /* generation mechanism */
	CK_MECHANISM_TYPE mech;  /* the operation's */
	const CK_BYTE *params;   /* EC: curve OID */
	CK_ULONG plen;
	size_t datalen;          /* input size */
	int encrypt;             /* 1: C_Encrypt, 0: C_Sign */
};

static const struct op ops[] = {
	{ "ecdsa-p256", K_EC, CKM_EC_KEY_PAIR_GEN, CKM_ECDSA, p256, sizeof(p256), 32, 0 },
	{ "ecdsa-p384", K_EC, CKM_EC_KEY_PAIR_GEN, CKM_ECDSA, p384, sizeof(p384), 48, 0 },
	{ "ed25519", K_EC, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA, ed25519, sizeof(ed25519), 64,
	    0 },
	{ "rsa2048-pss", K_RSA, CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_SHA256_RSA_PKCS_PSS, NULL, 0, 64, 0 },
	{ "rsa2048-pkcs", K_RSA, CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_SHA256_RSA_PKCS, NULL, 0, 64, 0 },
	{ "hmac-sha256", K_HMAC, CKM_GENERIC_SECRET_KEY_GEN, CKM_SHA256_HMAC, NULL, 0, 32, 0 },
	{ "aes256-gcm-4k", K_AES, CKM_AES_KEY_GEN, CKM_AES_GCM, NULL, 0, 4096, 1 },
	{ "aes256-gcm-1m", K_AES, CKM_AES_KEY_GEN, CKM_AES_GCM, NULL, 0, 1u << 20, 1 },
};

/* One run of one operation. */
struct run {
	const struct op *op;
	CK_OBJECT_HANDLE key, pub; /* pub: the verifying key (the key itself for HMAC) */
	volatile int stop;
	pthread_barrier_t start;
};

struct worker {
	pthread_t tid;
	struct run *run;
	unsigned long count;
	double *lat;           /* seconds, one per call, up to MAX_SAMPLES / threads */
	size_t nlat, maxlat;
	CK_RV rv;              /* first failure */
	const char *what;
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static CK_RV
gen_key(CK_SESSION_HANDLE s, const struct op *op, CK_OBJECT_HANDLE *key, CK_OBJECT_HANDLE *pub)
{
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_MECHANISM m = { op->gen, NULL, 0 };
	CK_ULONG bits = 2048, len = 32;
	CK_BYTE e[] = { 1, 0, 1 };
	CK_RV rv;

	if (op->kind == K_AES || op->kind == K_HMAC) {
		CK_ATTRIBUTE t[] = {
			{ CKA_TOKEN, &no, sizeof(no) },
			{ CKA_VALUE_LEN, &len, sizeof(len) },
			{ op->encrypt ? CKA_ENCRYPT : CKA_SIGN, &yes, sizeof(yes) },
			{ op->encrypt ? CKA_DECRYPT : CKA_VERIFY, &yes, sizeof(yes) },
		};
		rv = f->C_GenerateKey(s, &m, t, 4, key);
		*pub = *key;
		return rv;
	}
	CK_ATTRIBUTE pubt[] = {
		{ CKA_TOKEN, &no, sizeof(no) },
		{ CKA_VERIFY, &yes, sizeof(yes) },
		{ op->kind == K_EC ? CKA_EC_PARAMS : CKA_MODULUS_BITS,
		    op->kind == K_EC ? (void *)op->params : (void *)&bits,
		    op->kind == K_EC ? op->plen : sizeof(bits) },
		{ CKA_PUBLIC_EXPONENT, e, sizeof(e) },
	};
	CK_ATTRIBUTE privt[] = {
		{ CKA_TOKEN, &no, sizeof(no) },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
	};
	return f->C_GenerateKeyPair(s, &m, pubt, op->kind == K_RSA ? 4 : 3, privt, 4, pub, key);
}

/* The operation's mechanism, its parameters in pss or gcm (IV iv). */
static void
mech_of(const struct op *op, CK_RSA_PKCS_PSS_PARAMS *pss, CK_GCM_PARAMS *gcm, CK_BYTE iv[12],
    CK_MECHANISM *m)
{
	static const CK_RSA_PKCS_PSS_PARAMS pss_sha256 = { CKM_SHA256, CKG_MGF1_SHA256, 32 };

	m->mechanism = op->mech;
	m->pParameter = NULL;
	m->ulParameterLen = 0;
	if (op->mech == CKM_SHA256_RSA_PKCS_PSS) {
		*pss = pss_sha256;
		m->pParameter = pss;
		m->ulParameterLen = sizeof(*pss);
	} else if (op->mech == CKM_AES_GCM) {
		memset(gcm, 0, sizeof(*gcm));
		gcm->pIv = iv;
		gcm->ulIvLen = 12;
		gcm->ulIvBits = 96;
		gcm->ulTagBits = 128;
		m->pParameter = gcm;
		m->ulParameterLen = sizeof(*gcm);
	}
}

/* One call of the operation; out receives the result (sized for the largest). */
static CK_RV
one(CK_SESSION_HANDLE s, const struct run *r, const CK_BYTE *in, CK_BYTE *out, CK_ULONG *outlen,
    CK_BYTE iv[12])
{
	const struct op *op = r->op;
	CK_RSA_PKCS_PSS_PARAMS pss;
	CK_GCM_PARAMS gcm;
	CK_MECHANISM m;
	CK_RV rv;

	if (op->mech == CKM_AES_GCM && ++iv[11] == 0) /* a new IV each call: GCM's rule */
		iv[10]++;
	mech_of(op, &pss, &gcm, iv, &m);
	if (op->encrypt) {
		rv = f->C_EncryptInit(s, &m, r->key);
		if (rv == CKR_OK)
			rv = f->C_Encrypt(s, (CK_BYTE_PTR)in, op->datalen, out, outlen);
	} else {
		rv = f->C_SignInit(s, &m, r->key);
		if (rv == CKR_OK)
			rv = f->C_Sign(s, (CK_BYTE_PTR)in, op->datalen, out, outlen);
	}
	return rv;
}

/* The result checked once: a signature verifies, a ciphertext decrypts to the input. */
static CK_RV
check(CK_SESSION_HANDLE s, const struct run *r, const CK_BYTE *in, CK_BYTE *out, CK_ULONG outlen,
    CK_BYTE iv[12])
{
	const struct op *op = r->op;
	CK_RSA_PKCS_PSS_PARAMS pss;
	CK_GCM_PARAMS gcm;
	CK_MECHANISM m;
	CK_BYTE *plain;
	CK_ULONG plen = outlen;
	CK_RV rv;

	mech_of(op, &pss, &gcm, iv, &m);
	if (!op->encrypt) {
		rv = f->C_VerifyInit(s, &m, r->pub);
		return rv != CKR_OK ? rv : f->C_Verify(s, (CK_BYTE_PTR)in, op->datalen, out, outlen);
	}
	plain = malloc(outlen);
	if (plain == NULL)
		return CKR_HOST_MEMORY;
	rv = f->C_DecryptInit(s, &m, r->key);
	if (rv == CKR_OK)
		rv = f->C_Decrypt(s, out, outlen, plain, &plen);
	if (rv == CKR_OK && (plen != op->datalen || memcmp(plain, in, plen) != 0))
		rv = CKR_GENERAL_ERROR;
	free(plain);
	return rv;
}

static void *
work(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->run;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_BYTE *in = NULL, *out = NULL, iv[12] = { 0 };
	CK_ULONG outlen;
	size_t outmax = r->op->datalen + 1024;
	double t0, t1;

	in = calloc(1, r->op->datalen);
	out = malloc(outmax);
	if (in == NULL || out == NULL) {
		w->rv = CKR_HOST_MEMORY;
		w->what = "malloc";
		goto wait;
	}
	w->rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
	if (w->rv != CKR_OK) {
		w->what = "C_OpenSession";
		goto wait;
	}
	outlen = outmax;
	w->rv = one(s, r, in, out, &outlen, iv);
	if (w->rv == CKR_OK)
		w->rv = check(s, r, in, out, outlen, iv);
	if (w->rv != CKR_OK)
		w->what = "first result checked";
wait:
	pthread_barrier_wait(&r->start);
	while (w->rv == CKR_OK && !r->stop) {
		outlen = outmax;
		t0 = now_s();
		w->rv = one(s, r, in, out, &outlen, iv);
		t1 = now_s();
		if (w->rv != CKR_OK) {
			w->what = r->op->encrypt ? "C_Encrypt" : "C_Sign";
			break;
		}
		w->count++;
		if (w->nlat < w->maxlat)
			w->lat[w->nlat++] = t1 - t0;
	}
	if (s != CK_INVALID_HANDLE)
		(void)f->C_CloseSession(s);
	free(in);
	free(out);
	return NULL;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct result {
	double ops_s, p50_us, p99_us;
	unsigned long count;
};

static int
bench(CK_SESSION_HANDLE s, const struct op *op, int threads, struct result *res)
{
	struct worker w[MAX_THREADS];
	struct run r;
	double *all, t0, t1;
	size_t n = 0;
	int i, ok = 1;
	CK_RV rv;

	memset(&r, 0, sizeof(r));
	memset(w, 0, sizeof(w));
	memset(res, 0, sizeof(*res));
	r.op = op;
	rv = gen_key(s, op, &r.key, &r.pub);
	if (rv != CKR_OK) {
		fprintf(stderr, "%s: key generation failed: 0x%lx\n", op->name, (unsigned long)rv);
		return 0;
	}
	pthread_barrier_init(&r.start, NULL, (unsigned)threads + 1);
	for (i = 0; i < threads; i++) {
		w[i].run = &r;
		w[i].maxlat = MAX_SAMPLES / (size_t)threads;
		w[i].lat = malloc(w[i].maxlat * sizeof(double));
		if (w[i].lat == NULL || pthread_create(&w[i].tid, NULL, work, &w[i]) != 0) {
			fprintf(stderr, "%s: cannot start thread %d\n", op->name, i);
			exit(2);
		}
	}
	pthread_barrier_wait(&r.start);
	t0 = now_s();
	while (now_s() - t0 < seconds)
		usleep(10000);
	r.stop = 1;
	for (i = 0; i < threads; i++)
		pthread_join(w[i].tid, NULL);
	t1 = now_s();
	all = malloc(MAX_SAMPLES * sizeof(double));
	if (all == NULL)
		exit(2);
	for (i = 0; i < threads; i++) {
		if (w[i].rv != CKR_OK) {
			fprintf(stderr, "%s: thread %d: %s: 0x%lx\n", op->name, i, w[i].what,
			    (unsigned long)w[i].rv);
			ok = 0;
		}
		res->count += w[i].count;
		memcpy(all + n, w[i].lat, w[i].nlat * sizeof(double));
		n += w[i].nlat;
		free(w[i].lat);
	}
	qsort(all, n, sizeof(double), cmp_double);
	res->ops_s = (double)res->count / (t1 - t0);
	if (n > 0) {
		res->p50_us = all[n / 2] * 1e6;
		res->p99_us = all[(n * 99) / 100] * 1e6;
	}
	free(all);
	pthread_barrier_destroy(&r.start);
	(void)f->C_DestroyObject(s, r.key);
	if (r.pub != r.key)
		(void)f->C_DestroyObject(s, r.pub);
	return ok && res->count > 0;
}

static int
find_slot(const char *label)
{
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64, i;
	CK_TOKEN_INFO ti;
	size_t l = label != NULL ? strlen(label) : 0;

	if (f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
		return 0;
	for (i = 0; i < n; i++) {
		if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		if (label == NULL || (l <= 32 && memcmp(ti.label, label, l) == 0 &&
					 (l == 32 || ti.label[l] == ' '))) {
			slot = slots[i];
			return 1;
		}
	}
	return 0;
}

static void
usage(void)
{
	fprintf(stderr, "usage: ev_bench [-t THREADS] [-s SECONDS] [-o OPS] [-l TOKEN_LABEL] "
			"[-p PIN] [-j] MODULE\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	CK_C_INITIALIZE_ARGS init = { NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL };
	CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
	const char *label = NULL, *pin = getenv("EV_BENCH_PIN"), *only = NULL;
	CK_SESSION_HANDLE s;
	struct result res;
	int threads = 1, json = 0, c, failed = 0, first = 1;
	size_t i;
	void *dl;
	CK_RV rv;

	while ((c = getopt(argc, argv, "t:s:o:l:p:j")) != -1) {
		switch (c) {
		case 't':
			threads = atoi(optarg);
			break;
		case 's':
			seconds = atof(optarg);
			break;
		case 'o':
			only = optarg;
			break;
		case 'l':
			label = optarg;
			break;
		case 'p':
			pin = optarg;
			break;
		case 'j':
			json = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1 || threads < 1 || threads > MAX_THREADS || seconds <= 0)
		usage();
	dl = dlopen(argv[optind], RTLD_NOW | RTLD_LOCAL);
	if (dl == NULL) {
		fprintf(stderr, "ev_bench: %s\n", dlerror());
		return 2;
	}
	*(void **)&get = dlsym(dl, "C_GetFunctionList");
	if (get == NULL || get(&f) != CKR_OK) {
		fprintf(stderr, "ev_bench: %s: no C_GetFunctionList\n", argv[optind]);
		return 2;
	}
	rv = f->C_Initialize(&init);
	if (rv != CKR_OK) {
		fprintf(stderr, "ev_bench: C_Initialize: 0x%lx\n", (unsigned long)rv);
		return 2;
	}
	if (!find_slot(label)) {
		fprintf(stderr, "ev_bench: no token%s%s\n", label ? " labelled " : "",
		    label ? label : "");
		return 2;
	}
	rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
	if (rv == CKR_OK && pin != NULL)
		rv = f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	if (rv != CKR_OK) {
		fprintf(stderr, "ev_bench: session or login: 0x%lx\n", (unsigned long)rv);
		return 2;
	}
	if (json)
		printf("{\"module\": \"%s\", \"threads\": %d, \"seconds\": %g, \"results\": [",
		    argv[optind], threads, seconds);
	else
		printf("%-16s %12s %10s %10s\n", "operation", "ops/s", "p50 us", "p99 us");
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (only != NULL) {
			size_t l = strlen(ops[i].name);
			const char *p = strstr(only, ops[i].name);

			if (p == NULL || (p != only && p[-1] != ',') || (p[l] != '\0' && p[l] != ','))
				continue;
		}
		if (!bench(s, &ops[i], threads, &res)) {
			failed++;
			continue;
		}
		if (json) {
			printf("%s\n  {\"op\": \"%s\", \"ops_per_s\": %.1f, \"p50_us\": %.1f, "
			       "\"p99_us\": %.1f, \"count\": %lu}",
			    first ? "" : ",", ops[i].name, res.ops_s, res.p50_us, res.p99_us,
			    res.count);
			first = 0;
		} else {
			printf("%-16s %12.1f %10.1f %10.1f\n", ops[i].name, res.ops_s, res.p50_us,
			    res.p99_us);
		}
		fflush(stdout);
	}
	if (json)
		printf("\n]}\n");
	(void)f->C_Logout(s);
	(void)f->C_CloseSession(s);
	(void)f->C_Finalize(NULL);
	return failed ? 1 : 0;
}
