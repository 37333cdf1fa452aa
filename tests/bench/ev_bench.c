/*
 * Operation throughput and latency of any PKCS#11 module.
 *
 *   ev_bench [-t THREADS] [-s SECONDS] [-o OPS] [-n OBJECTS] [-l TOKEN_LABEL]
 *            [-p PIN] [-j] MODULE
 *
 * The module is loaded with dlopen() as applications load it, and
 * initialised with OS locking. The token labelled TOKEN_LABEL (default:
 * the first with a token present) is logged into with PIN (default
 * $EV_BENCH_PIN) in a read-write session kept for the whole run. For each
 * operation in OPS (comma-separated, run in the order of the list below;
 * default all; an unknown name is a usage error) its keys are made as
 * session objects, then THREADS threads, each with its own session, run the
 * operation for SECONDS. Only the operation's own calls are timed. Results
 * are checked outside the timed calls: the first of each thread, then every
 * CHECK_EVERY-th (a signature verified with the public or same key, a
 * ciphertext decrypted, ...). Printed per operation: ops/s over all threads,
 * p50 and p99 latency of one timed call; with -j, one JSON document instead.
 *
 * Operations and what one timed call is:
 *   ecdsa-p256, ecdsa-p384   C_SignInit + C_Sign, CKM_ECDSA over a hash-sized input
 *   ed25519                  C_SignInit + C_Sign, CKM_EDDSA over 64 bytes
 *   rsa2048-pss              the same, CKM_SHA256_RSA_PKCS_PSS over 64 bytes
 *   rsa2048-pkcs             the same, CKM_SHA256_RSA_PKCS over 64 bytes
 *   hmac-sha256              the same, CKM_SHA256_HMAC over 32 bytes
 *   aes256-gcm-4k, -1m       C_EncryptInit + C_Encrypt, CKM_AES_GCM, a new IV each call
 *   find                     C_FindObjectsInit + C_FindObjects + C_FindObjectsFinal by
 *                            CKA_LABEL, a random one of OBJECTS (default 1000) token AES
 *                            keys labelled "ev-bench-find-<i>" (CKA_ID "ev-bench-find");
 *                            exactly one handle must come back. Those of the OBJECTS
 *                            keys the token lacks are made first (by at least 8
 *                            threads, not timed) and left there: the next run reuses them.
 *   keygen-p256              C_GenerateKeyPair, P-256, session objects (destroyed after
 *                            the call, not timed); checked by a signature
 *   wrap-unwrap              C_WrapKey of an AES-256 key + C_UnwrapKey of the result as a
 *                            session object (destroyed after, not timed), both with
 *                            CKM_AES_KEY_WRAP_PAD (edgevault and SoftHSMv2 both have it;
 *                            they pad differently, but each unwraps its own); checked by
 *                            comparing AES-GCM ciphertexts of both keys
 *   login                    C_OpenSession + C_Login + C_Logout + C_CloseSession, in ONE
 *                            thread whatever THREADS is: the login state belongs to the
 *                            application, not the session (a second C_Login answers
 *                            CKR_USER_ALREADY_LOGGED_IN), so the run's own session logs
 *                            out meanwhile. Includes the module's PIN check (Argon2id in
 *                            edgevault).
 *
 * JSON (-j), one document:
 *   {"module": PATH, "threads": THREADS, "seconds": SECONDS, "objects": OBJECTS,
 *    "results": [{"op": NAME, "threads": N, "ops_per_s": X, "p50_us": X, "p99_us": X,
 *                 "count": N, "checked": N}, ...]}
 * with, in find's result only, "created": the keys made for it in this run and
 * "create_s": the seconds that took. "threads" of a result is 1 for login.
 * An operation that failed is left out of "results" (and said on stderr).
 *
 * Exit status: 0 when every operation ran and every check passed, 1 when
 * one failed, 2 on a usage error or when the module or token cannot be used.
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
#define CHECK_EVERY 1000
#define FIND_ID "ev-bench-find"
#define FIND_LABEL FIND_ID "-%lu"
#define FILL_THREADS_MIN 8 /* making find's keys waits on fsync, not on the CPUs */

static CK_FUNCTION_LIST *f;
static CK_SLOT_ID slot;
static double seconds = 3.0;
static const char *pin;
static unsigned long objects = 1000;

static const CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const CK_BYTE p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const CK_BYTE ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};

enum kind { K_EC, K_RSA, K_AES, K_HMAC, K_FIND, K_KEYGEN, K_WRAP, K_LOGIN };

struct op {
	const char *name;
	enum kind kind;
	CK_MECHANISM_TYPE gen;	/* generation mechanism */
	CK_MECHANISM_TYPE mech; /* the operation's */
	const CK_BYTE *params;	/* EC: curve OID */
	CK_ULONG plen;
	size_t datalen; /* input size */
	int encrypt;	/* 1: C_Encrypt, 0: C_Sign */
};

static const struct op ops[] = {
    {"ecdsa-p256", K_EC, CKM_EC_KEY_PAIR_GEN, CKM_ECDSA, p256, sizeof(p256), 32, 0},
    {"ecdsa-p384", K_EC, CKM_EC_KEY_PAIR_GEN, CKM_ECDSA, p384, sizeof(p384), 48, 0},
    {"ed25519", K_EC, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA, ed25519, sizeof(ed25519), 64, 0},
    {"rsa2048-pss", K_RSA, CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_SHA256_RSA_PKCS_PSS, NULL, 0, 64, 0},
    {"rsa2048-pkcs", K_RSA, CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_SHA256_RSA_PKCS, NULL, 0, 64, 0},
    {"hmac-sha256", K_HMAC, CKM_GENERIC_SECRET_KEY_GEN, CKM_SHA256_HMAC, NULL, 0, 32, 0},
    {"aes256-gcm-4k", K_AES, CKM_AES_KEY_GEN, CKM_AES_GCM, NULL, 0, 4096, 1},
    {"aes256-gcm-1m", K_AES, CKM_AES_KEY_GEN, CKM_AES_GCM, NULL, 0, 1u << 20, 1},
    {"find", K_FIND, 0, 0, NULL, 0, 64, 0},
    {"keygen-p256", K_KEYGEN, CKM_EC_KEY_PAIR_GEN, CKM_ECDSA, p256, sizeof(p256), 32, 0},
    {"wrap-unwrap", K_WRAP, CKM_AES_KEY_GEN, CKM_AES_KEY_WRAP_PAD, NULL, 0, 16, 0},
    {"login", K_LOGIN, 0, 0, NULL, 0, 16, 0},
};
#define NOPS (sizeof(ops) / sizeof(ops[0]))

/* One run of one operation. */
struct run {
	const struct op *op;
	/*
	 * Signing, encryption: the key, and pub the verifying key (the key
	 * itself for secret keys). wrap-unwrap: key wraps, pub is wrapped.
	 */
	CK_OBJECT_HANDLE key, pub;
	volatile int stop;
	pthread_barrier_t start;
};

/* A thread's state for one call of the operation and its check. */
struct call {
	CK_SESSION_HANDLE s;
	const struct run *r;
	CK_BYTE *in, *out; /* input (datalen), output (outmax) */
	CK_ULONG outlen;
	size_t outmax;
	CK_BYTE iv[12];
	CK_OBJECT_HANDLE made[2]; /* objects the call made, destroyed after it */
	unsigned long idx;	  /* find: the label's number */
	CK_OBJECT_HANDLE found;
	unsigned int rnd; /* find: xorshift state */
};

struct worker {
	pthread_t tid;
	struct run *run;
	unsigned int seed;
	unsigned long count, checked;
	double *lat; /* seconds, one per call, up to MAX_SAMPLES / threads */
	size_t nlat, maxlat;
	CK_RV rv; /* first failure */
	const char *what;
};

static double
now_s(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
		perror("ev_bench: clock_gettime");
		exit(2);
	}
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A session AES key (32 bytes) or HMAC key, with the attribute pair a, b true. */
static CK_RV
gen_secret(CK_SESSION_HANDLE s, CK_MECHANISM_TYPE gen, CK_ATTRIBUTE_TYPE a, CK_ATTRIBUTE_TYPE b,
	   CK_BBOOL extractable, CK_OBJECT_HANDLE *key)
{
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_MECHANISM m = {gen, NULL, 0};
	CK_ULONG len = 32;
	CK_ATTRIBUTE t[] = {
	    {CKA_TOKEN, &no, sizeof(no)},
	    {CKA_VALUE_LEN, &len, sizeof(len)},
	    {a, &yes, sizeof(yes)},
	    {b, &yes, sizeof(yes)},
	    {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
	};

	return f->C_GenerateKey(s, &m, t, 5, key);
}

static CK_RV
gen_pair(CK_SESSION_HANDLE s, const struct op *op, CK_OBJECT_HANDLE *key, CK_OBJECT_HANDLE *pub)
{
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_MECHANISM m = {op->gen, NULL, 0};
	CK_ULONG bits = 2048;
	CK_BYTE e[] = {1, 0, 1};
	CK_ATTRIBUTE pubt[] = {
	    {CKA_TOKEN, &no, sizeof(no)},
	    {CKA_VERIFY, &yes, sizeof(yes)},
	    {op->kind == K_RSA ? CKA_MODULUS_BITS : CKA_EC_PARAMS,
	     op->kind == K_RSA ? (void *)&bits : (void *)op->params,
	     op->kind == K_RSA ? sizeof(bits) : op->plen},
	    {CKA_PUBLIC_EXPONENT, e, sizeof(e)},
	};
	CK_ATTRIBUTE privt[] = {
	    {CKA_TOKEN, &no, sizeof(no)},
	    {CKA_SIGN, &yes, sizeof(yes)},
	    {CKA_SENSITIVE, &yes, sizeof(yes)},
	    {CKA_PRIVATE, &yes, sizeof(yes)},
	};

	return f->C_GenerateKeyPair(s, &m, pubt, op->kind == K_RSA ? 4 : 3, privt, 4, pub, key);
}

/* The operation's mechanism, its parameters in pss or gcm (IV iv). */
static void
mech_of(CK_MECHANISM_TYPE type, CK_RSA_PKCS_PSS_PARAMS *pss, CK_GCM_PARAMS *gcm, CK_BYTE iv[12],
	CK_MECHANISM *m)
{
	static const CK_RSA_PKCS_PSS_PARAMS pss_sha256 = {CKM_SHA256, CKG_MGF1_SHA256, 32};

	m->mechanism = type;
	m->pParameter = NULL;
	m->ulParameterLen = 0;
	if (type == CKM_SHA256_RSA_PKCS_PSS) {
		*pss = pss_sha256;
		m->pParameter = pss;
		m->ulParameterLen = sizeof(*pss);
	} else if (type == CKM_AES_GCM) {
		memset(gcm, 0, sizeof(*gcm));
		gcm->pIv = iv;
		gcm->ulIvLen = 12;
		gcm->ulIvBits = 96;
		gcm->ulTagBits = 128;
		m->pParameter = gcm;
		m->ulParameterLen = sizeof(*gcm);
	}
}

/* in (inlen bytes) signed or encrypted by key with the mechanism type into out. */
static CK_RV
sign_or_encrypt(CK_SESSION_HANDLE s, CK_MECHANISM_TYPE type, int encrypt, CK_OBJECT_HANDLE key,
		CK_BYTE iv[12], const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	CK_RSA_PKCS_PSS_PARAMS pss;
	CK_GCM_PARAMS gcm;
	CK_MECHANISM m;
	CK_RV rv;

	mech_of(type, &pss, &gcm, iv, &m);
	if (encrypt) {
		rv = f->C_EncryptInit(s, &m, key);
		return rv != CKR_OK ? rv : f->C_Encrypt(s, (CK_BYTE_PTR)in, inlen, out, outlen);
	}
	rv = f->C_SignInit(s, &m, key);
	return rv != CKR_OK ? rv : f->C_Sign(s, (CK_BYTE_PTR)in, inlen, out, outlen);
}

/* A signature (or MAC) checked with C_Verify, or a ciphertext decrypted to the input. */
static CK_RV
verify_or_decrypt(CK_SESSION_HANDLE s, CK_MECHANISM_TYPE type, int encrypt, CK_OBJECT_HANDLE key,
		  CK_BYTE iv[12], const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG outlen)
{
	CK_RSA_PKCS_PSS_PARAMS pss;
	CK_GCM_PARAMS gcm;
	CK_MECHANISM m;
	CK_BYTE *plain;
	CK_ULONG plen = outlen;
	CK_RV rv;

	mech_of(type, &pss, &gcm, iv, &m);
	if (!encrypt) {
		rv = f->C_VerifyInit(s, &m, key);
		return rv != CKR_OK ? rv : f->C_Verify(s, (CK_BYTE_PTR)in, inlen, out, outlen);
	}
	plain = malloc(outlen);
	if (plain == NULL)
		return CKR_HOST_MEMORY;
	rv = f->C_DecryptInit(s, &m, key);
	if (rv == CKR_OK)
		rv = f->C_Decrypt(s, out, outlen, plain, &plen);
	if (rv == CKR_OK && (plen != inlen || memcmp(plain, in, plen) != 0))
		rv = CKR_GENERAL_ERROR;
	free(plain);
	return rv;
}

static unsigned int
xorshift(unsigned int *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

/* The handles of the objects matching t (n attributes), at most max; *count found. */
static CK_RV
find(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *h, CK_ULONG max,
     CK_ULONG *count)
{
	CK_RV rv, rv2;

	rv = f->C_FindObjectsInit(s, t, n);
	if (rv != CKR_OK)
		return rv;
	rv = f->C_FindObjects(s, h, max, count);
	rv2 = f->C_FindObjectsFinal(s);
	return rv != CKR_OK ? rv : rv2;
}

/* find: a random one of the labels, exactly one handle in c->found. */
static CK_RV
find_one(struct call *c)
{
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;
	char label[64];
	CK_ATTRIBUTE t[] = {{CKA_LABEL, label, 0}};
	CK_RV rv;

	c->idx = xorshift(&c->rnd) % objects;
	t[0].ulValueLen = (CK_ULONG)snprintf(label, sizeof(label), FIND_LABEL, c->idx);
	rv = find(c->s, t, 1, h, 2, &n);
	if (rv == CKR_OK && n != 1)
		return CKR_GENERAL_ERROR;
	c->found = h[0];
	return rv;
}

/* login: a whole session of a user, without anything in it. */
static CK_RV
login_cycle(CK_SESSION_HANDLE *s, CK_STATE *in, CK_STATE *after)
{
	CK_SESSION_INFO si;
	CK_RV rv, rv2;

	rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, s);
	if (rv != CKR_OK)
		return rv;
	rv = f->C_Login(*s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	if (rv == CKR_OK && in != NULL) {
		rv = f->C_GetSessionInfo(*s, &si);
		*in = si.state;
	}
	if (rv == CKR_OK)
		rv = f->C_Logout(*s);
	if (rv == CKR_OK && after != NULL) {
		rv = f->C_GetSessionInfo(*s, &si);
		*after = si.state;
	}
	rv2 = f->C_CloseSession(*s);
	return rv != CKR_OK ? rv : rv2;
}

/* One timed call of the operation; c->out receives its result. */
static CK_RV
one(struct call *c)
{
	const struct run *r = c->r;
	const struct op *op = r->op;
	CK_SESSION_HANDLE s;
	CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_TOKEN, &no, sizeof(no)},
	    {CKA_ENCRYPT, &yes, sizeof(yes)},
	};
	CK_MECHANISM m = {op->mech, NULL, 0};
	CK_RV rv;

	c->outlen = (CK_ULONG)c->outmax;
	switch (op->kind) {
	case K_FIND:
		return find_one(c);
	case K_KEYGEN:
		return gen_pair(c->s, op, &c->made[0], &c->made[1]);
	case K_WRAP:
		rv = f->C_WrapKey(c->s, &m, r->key, r->pub, c->out, &c->outlen);
		return rv != CKR_OK
			   ? rv
			   : f->C_UnwrapKey(c->s, &m, r->key, c->out, c->outlen, t, 4, &c->made[0]);
	case K_LOGIN:
		return login_cycle(&s, NULL, NULL);
	default:
		if (op->mech == CKM_AES_GCM &&
		    ++c->iv[11] == 0) /* a new IV each call: GCM's rule */
			c->iv[10]++;
		return sign_or_encrypt(c->s, op->mech, op->encrypt, r->key, c->iv, c->in,
				       op->datalen, c->out, &c->outlen);
	}
}

/* The result of the last call checked; the name of what failed in *what. */
static CK_RV
check(struct call *c, const char **what)
{
	const struct run *r = c->r;
	const struct op *op = r->op;
	CK_BYTE a[64], b[64], iv[12] = {0};
	CK_ULONG alen = sizeof(a), blen = sizeof(b);
	char label[64], want[64];
	CK_ATTRIBUTE t[] = {{CKA_LABEL, label, sizeof(label)}};
	CK_SESSION_HANDLE s;
	CK_STATE in = CKS_RW_SO_FUNCTIONS, after = CKS_RW_SO_FUNCTIONS;
	CK_RV rv;

	switch (op->kind) {
	case K_FIND:
		*what = "the label of the object found";
		rv = f->C_GetAttributeValue(c->s, c->found, t, 1);
		(void)snprintf(want, sizeof(want), FIND_LABEL, c->idx);
		if (rv == CKR_OK &&
		    (t[0].ulValueLen != strlen(want) || memcmp(label, want, strlen(want)) != 0))
			rv = CKR_GENERAL_ERROR;
		return rv;
	case K_KEYGEN:
		*what = "a signature by the new key pair";
		rv = sign_or_encrypt(c->s, op->mech, 0, c->made[0], iv, c->in, op->datalen, a,
				     &alen);
		return rv != CKR_OK ? rv
				    : verify_or_decrypt(c->s, op->mech, 0, c->made[1], iv, c->in,
							op->datalen, a, alen);
	case K_WRAP:
		*what = "the unwrapped key against the wrapped one (AES-GCM)";
		rv =
		    sign_or_encrypt(c->s, CKM_AES_GCM, 1, r->pub, iv, c->in, op->datalen, a, &alen);
		if (rv == CKR_OK)
			rv = sign_or_encrypt(c->s, CKM_AES_GCM, 1, c->made[0], iv, c->in,
					     op->datalen, b, &blen);
		if (rv == CKR_OK && (alen != blen || memcmp(a, b, alen) != 0))
			rv = CKR_GENERAL_ERROR;
		return rv;
	case K_LOGIN:
		*what = "the session state in and after a login";
		rv = login_cycle(&s, &in, &after);
		if (rv == CKR_OK && (in != CKS_RO_USER_FUNCTIONS || after != CKS_RO_PUBLIC_SESSION))
			rv = CKR_GENERAL_ERROR;
		return rv;
	default:
		*what = op->encrypt ? "a decryption of the result" : "a verification of the result";
		return verify_or_decrypt(c->s, op->mech, op->encrypt, r->pub, c->iv, c->in,
					 op->datalen, c->out, c->outlen);
	}
}

/* What the last call made destroyed (not timed). */
static CK_RV
tidy(struct call *c)
{
	CK_RV rv = CKR_OK;
	int i;

	for (i = 0; i < 2; i++) {
		if (c->made[i] != CK_INVALID_HANDLE && rv == CKR_OK)
			rv = f->C_DestroyObject(c->s, c->made[i]);
		c->made[i] = CK_INVALID_HANDLE;
	}
	return rv;
}

/* One call, its check when asked, then tidy; w->rv and w->what on failure. */
static void
step(struct worker *w, struct call *c, int checking, double *lat)
{
	const char *what = "";
	double t0;

	t0 = now_s();
	w->rv = one(c);
	*lat = now_s() - t0;
	if (w->rv != CKR_OK) {
		w->what = "the timed call";
		return;
	}
	if (checking) {
		w->rv = check(c, &what);
		if (w->rv != CKR_OK) {
			w->what = what;
			return;
		}
		w->checked++;
	}
	w->rv = tidy(c);
	if (w->rv != CKR_OK)
		w->what = "C_DestroyObject";
}

static void *
work(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->run;
	struct call c;
	double lat;

	memset(&c, 0, sizeof(c));
	c.r = r;
	c.s = CK_INVALID_HANDLE;
	c.made[0] = c.made[1] = CK_INVALID_HANDLE;
	c.rnd = w->seed | 1;
	c.outmax = r->op->datalen + 1024;
	c.in = calloc(1, r->op->datalen);
	c.out = malloc(c.outmax);
	if (c.in == NULL || c.out == NULL) {
		w->rv = CKR_HOST_MEMORY;
		w->what = "malloc";
		goto wait;
	}
	w->rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &c.s);
	if (w->rv != CKR_OK) {
		w->what = "C_OpenSession";
		goto wait;
	}
	step(w, &c, 1, &lat); /* the first result checked, before the clock starts */
wait:
	(void)pthread_barrier_wait(&r->start); /* 0 or PTHREAD_BARRIER_SERIAL_THREAD */
	while (w->rv == CKR_OK && !r->stop) {
		step(w, &c, (w->count + 1) % CHECK_EVERY == 0, &lat);
		if (w->rv != CKR_OK)
			break;
		w->count++;
		if (w->nlat < w->maxlat)
			w->lat[w->nlat++] = lat;
	}
	if (c.s != CK_INVALID_HANDLE) {
		(void)tidy(&c);
		(void)f->C_CloseSession(c.s);
	}
	free(c.in);
	free(c.out);
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
	unsigned long count, checked;
	int threads;
	unsigned long created; /* find: keys made for it */
	double create_s;
};

/* Populating find's keys: one thread's share, those numbered first + k * step. */
struct filler {
	pthread_t tid;
	const unsigned char *have;
	unsigned long first, step, made;
	CK_RV rv;
};

static void *
fill(void *arg)
{
	struct filler *fl = arg;
	CK_SESSION_HANDLE s;
	CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
	CK_BBOOL yes = CK_TRUE;
	CK_ULONG len = 32;
	CK_OBJECT_HANDLE h;
	char label[64];
	CK_ATTRIBUTE t[] = {
	    {CKA_TOKEN, &yes, sizeof(yes)},
	    {CKA_VALUE_LEN, &len, sizeof(len)},
	    {CKA_ENCRYPT, &yes, sizeof(yes)},
	    {CKA_ID, FIND_ID, sizeof(FIND_ID) - 1},
	    {CKA_LABEL, label, 0},
	};
	unsigned long i;

	fl->rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
	if (fl->rv != CKR_OK)
		return NULL;
	for (i = fl->first; i < objects && fl->rv == CKR_OK; i += fl->step) {
		if (fl->have[i])
			continue;
		t[4].ulValueLen = (CK_ULONG)snprintf(label, sizeof(label), FIND_LABEL, i);
		fl->rv = f->C_GenerateKey(s, &m, t, 5, &h);
		fl->made++;
	}
	(void)f->C_CloseSession(s);
	return NULL;
}

/*
 * The token's find keys numbered 0 to objects - 1 made where missing, by
 * threads threads; how many in *made. The keys there are found by their
 * CKA_ID and numbered by their labels.
 */
static CK_RV
populate(CK_SESSION_HANDLE s, int threads, unsigned long *made)
{
	struct filler fl[MAX_THREADS];
	unsigned char *have;
	CK_OBJECT_HANDLE h[1024];
	CK_ULONG n, j;
	char label[64], *end;
	CK_ATTRIBUTE id[] = {{CKA_ID, FIND_ID, sizeof(FIND_ID) - 1}};
	CK_ATTRIBUTE t[] = {{CKA_LABEL, label, 0}};
	unsigned long i;
	int k, started = 0;
	CK_RV rv;

	*made = 0;
	have = calloc(objects, 1);
	if (have == NULL)
		return CKR_HOST_MEMORY;
	rv = f->C_FindObjectsInit(s, id, 1);
	while (rv == CKR_OK) {
		rv = f->C_FindObjects(s, h, 1024, &n);
		if (rv != CKR_OK || n == 0)
			break;
		for (j = 0; j < n && rv == CKR_OK; j++) {
			t[0].ulValueLen = sizeof(label) - 1;
			rv = f->C_GetAttributeValue(s, h[j], t, 1);
			if (rv == CKR_BUFFER_TOO_SMALL) { /* not one of ours */
				rv = CKR_OK;
				continue;
			}
			if (rv != CKR_OK)
				break;
			label[t[0].ulValueLen] = '\0';
			if (strncmp(label, FIND_ID "-", sizeof(FIND_ID)) != 0)
				continue;
			i = strtoul(label + sizeof(FIND_ID), &end, 10);
			if (*end == '\0' && i < objects)
				have[i] = 1;
		}
	}
	if (rv == CKR_OK)
		rv = f->C_FindObjectsFinal(s);
	else
		(void)f->C_FindObjectsFinal(s);
	for (k = 0; k < threads && rv == CKR_OK; k++) {
		memset(&fl[k], 0, sizeof(fl[k]));
		fl[k].have = have;
		fl[k].first = (unsigned long)k;
		fl[k].step = (unsigned long)threads;
		if (pthread_create(&fl[k].tid, NULL, fill, &fl[k]) != 0)
			rv = CKR_HOST_MEMORY;
		else
			started++;
	}
	for (k = 0; k < started; k++) {
		if (pthread_join(fl[k].tid, NULL) != 0) {
			fprintf(stderr, "ev_bench: cannot join a thread\n");
			exit(2);
		}
		*made += fl[k].made;
		if (rv == CKR_OK)
			rv = fl[k].rv;
	}
	free(have);
	return rv;
}

/* What the operation needs before its threads start: keys, login state. */
static CK_RV
prepare(CK_SESSION_HANDLE s, struct run *r, int threads, struct result *res)
{
	const struct op *op = r->op;
	double t0;
	CK_RV rv;

	r->key = r->pub = CK_INVALID_HANDLE;
	switch (op->kind) {
	case K_FIND:
		t0 = now_s();
		rv = populate(s, threads > FILL_THREADS_MIN ? threads : FILL_THREADS_MIN,
			      &res->created);
		res->create_s = now_s() - t0;
		return rv;
	case K_KEYGEN:
		return CKR_OK;
	case K_WRAP:
		rv = gen_secret(s, op->gen, CKA_WRAP, CKA_UNWRAP, CK_FALSE, &r->key);
		return rv != CKR_OK
			   ? rv
			   : gen_secret(s, op->gen, CKA_ENCRYPT, CKA_DECRYPT, CK_TRUE, &r->pub);
	case K_LOGIN:
		return pin == NULL ? CKR_PIN_INCORRECT : f->C_Logout(s);
	case K_AES:
	case K_HMAC:
		rv = gen_secret(s, op->gen, op->encrypt ? CKA_ENCRYPT : CKA_SIGN,
				op->encrypt ? CKA_DECRYPT : CKA_VERIFY, CK_FALSE, &r->key);
		r->pub = r->key;
		return rv;
	default:
		return gen_pair(s, op, &r->key, &r->pub);
	}
}

/* prepare undone: the keys destroyed, the run's session logged in again. */
static CK_RV
unprepare(CK_SESSION_HANDLE s, struct run *r)
{
	CK_RV rv = CKR_OK;

	if (r->op->kind == K_LOGIN) /* no PIN: prepare refused before logging out */
		return pin == NULL ? CKR_OK
				   : f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	if (r->key != CK_INVALID_HANDLE)
		rv = f->C_DestroyObject(s, r->key);
	if (r->pub != CK_INVALID_HANDLE && r->pub != r->key && rv == CKR_OK)
		rv = f->C_DestroyObject(s, r->pub);
	return rv;
}

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
	if (op->kind == K_LOGIN)
		threads = 1;
	res->threads = threads;
	rv = prepare(s, &r, threads, res);
	if (rv != CKR_OK) {
		fprintf(stderr, "%s: preparation (keys, login state) failed: 0x%lx\n", op->name,
			(unsigned long)rv);
		(void)unprepare(s, &r);
		return 0;
	}
	if (pthread_barrier_init(&r.start, NULL, (unsigned)threads + 1) != 0) {
		fprintf(stderr, "%s: no barrier\n", op->name);
		exit(2);
	}
	for (i = 0; i < threads; i++) {
		w[i].run = &r;
		w[i].seed = (unsigned int)time(NULL) * 2654435761u + (unsigned int)i * 40503u;
		w[i].maxlat = MAX_SAMPLES / (size_t)threads;
		w[i].lat = malloc(w[i].maxlat * sizeof(double));
		if (w[i].lat == NULL || pthread_create(&w[i].tid, NULL, work, &w[i]) != 0) {
			fprintf(stderr, "%s: cannot start thread %d\n", op->name, i);
			exit(2);
		}
	}
	(void)pthread_barrier_wait(&r.start);
	t0 = now_s();
	while (now_s() - t0 < seconds)
		(void)usleep(10000); /* EINTR: the loop looks at the clock again */
	r.stop = 1;
	for (i = 0; i < threads; i++) {
		if (pthread_join(w[i].tid, NULL) != 0) {
			fprintf(stderr, "%s: cannot join thread %d\n", op->name, i);
			exit(2);
		}
	}
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
		res->checked += w[i].checked;
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
	(void)pthread_barrier_destroy(&r.start); /* no thread waits on it any more */
	rv = unprepare(s, &r);
	if (rv != CKR_OK) {
		fprintf(stderr, "%s: clean-up (keys destroyed, login again) failed: 0x%lx\n",
			op->name, (unsigned long)rv);
		ok = 0;
	}
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
	fprintf(stderr, "usage: ev_bench [-t THREADS] [-s SECONDS] [-o OPS] [-n OBJECTS] "
			"[-l TOKEN_LABEL] [-p PIN] [-j] MODULE\noperations:");
	for (size_t i = 0; i < NOPS; i++)
		fprintf(stderr, " %s", ops[i].name);
	fprintf(stderr, "\n");
	exit(2);
}

/* want[i] set for each operation named in list (comma-separated); 0 if one is unknown. */
static int
select_ops(const char *list, unsigned char want[NOPS])
{
	const char *p = list, *e;
	size_t i, l;

	while (*p != '\0') {
		e = strchr(p, ',');
		l = e != NULL ? (size_t)(e - p) : strlen(p);
		for (i = 0; i < NOPS; i++)
			if (strlen(ops[i].name) == l && memcmp(ops[i].name, p, l) == 0)
				break;
		if (i == NOPS) {
			fprintf(stderr, "ev_bench: unknown operation \"%.*s\"\n", (int)l, p);
			return 0;
		}
		want[i] = 1;
		p += l + (e != NULL);
	}
	return 1;
}

/* s as a JSON string. */
static void
json_str(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void
report(int json, int first, const struct op *op, const struct result *res)
{
	if (!json) {
		printf("%-16s %12.1f %10.1f %10.1f %8d", op->name, res->ops_s, res->p50_us,
		       res->p99_us, res->threads);
		if (op->kind == K_FIND)
			printf("   %lu objects (%lu made in %.1f s)", objects, res->created,
			       res->create_s);
		if (op->kind == K_LOGIN)
			printf("   one thread: the login state is the application's");
		printf("\n");
		return;
	}
	printf("%s\n  {\"op\": \"%s\", \"threads\": %d, \"ops_per_s\": %.1f, \"p50_us\": %.1f, "
	       "\"p99_us\": %.1f, \"count\": %lu, \"checked\": %lu",
	       first ? "" : ",", op->name, res->threads, res->ops_s, res->p50_us, res->p99_us,
	       res->count, res->checked);
	if (op->kind == K_FIND)
		printf(", \"created\": %lu, \"create_s\": %.3f", res->created, res->create_s);
	printf("}");
}

int
main(int argc, char **argv)
{
	CK_C_INITIALIZE_ARGS init = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL};
	CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
	const char *label = NULL;
	unsigned char want[NOPS];
	CK_SESSION_HANDLE s;
	struct result res;
	int threads = 1, json = 0, c, failed = 0, first = 1;
	char *end;
	size_t i;
	void *dl;
	CK_RV rv;

	pin = getenv("EV_BENCH_PIN");
	memset(want, 1, sizeof(want));
	while ((c = getopt(argc, argv, "t:s:o:n:l:p:j")) != -1) {
		switch (c) {
		case 't':
			threads = (int)strtol(optarg, &end, 10);
			if (*end != '\0')
				usage();
			break;
		case 's':
			seconds = strtod(optarg, &end);
			if (*end != '\0')
				usage();
			break;
		case 'o':
			memset(want, 0, sizeof(want));
			if (!select_ops(optarg, want))
				usage();
			break;
		case 'n':
			objects = strtoul(optarg, &end, 10);
			if (*end != '\0' || objects == 0 || objects > 100000000)
				usage();
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
	if (json) {
		printf("{\"module\": ");
		json_str(argv[optind]);
		printf(", \"threads\": %d, \"seconds\": %g, \"objects\": %lu, \"results\": [",
		       threads, seconds, objects);
	} else {
		printf("%-16s %12s %10s %10s %8s\n", "operation", "ops/s", "p50 us", "p99 us",
		       "threads");
	}
	for (i = 0; i < NOPS; i++) {
		if (!want[i])
			continue;
		if (!bench(s, &ops[i], threads, &res)) {
			failed++;
			continue;
		}
		report(json, first, &ops[i], &res);
		first = 0;
		(void)fflush(stdout); /* a failure shows in ferror at the end */
	}
	if (json)
		printf("\n]}\n");
	/* Only the figures count from here: the process ends either way. */
	(void)f->C_Logout(s);
	(void)f->C_CloseSession(s);
	(void)f->C_Finalize(NULL);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		perror("ev_bench: standard output");
		return 2;
	}
	return failed ? 1 : 0;
}
