/*
 * Integration tests of attestation-gated sessions and key rotation: the
 * login gate and its refusals (recorded once a minute when repeated),
 * device nonces, evidence going stale while a session is open, key
 * rotation (EC, RSA, Ed25519, AES), retired material that never leaves,
 * grace periods (also ended with nothing swept), rotation candidates and
 * automatic rotation, what another process sees, zone key rotation (while
 * in use, racing key creation, killed halfway), CKA_START_DATE and
 * CKA_END_DATE, zone policies, token and session copies following
 * their origin, and rotation in batches (EV_RotateKeys: the same result,
 * bad handles, more than one transaction, a process killed halfway).
 *
 * Evidence (signed attestation results) is made here with libsodium,
 * independently of the module's and the tool's code for the format, and
 * written to the configured result file as an agent does: beside it
 * first, then renamed over it.
 *
 * Other processes are forked children that call C_Initialize themselves
 * and talk to the test through pipes; they never assert (the test does, on
 * what they report) and are killed by PID when the test ends, pass or fail.
 * Sleeps are short and only wait for wall-clock deadlines the test itself
 * set (evidence expiry, grace and rotation periods); nothing asserts on
 * speed.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "envelope.h"
#include "harness.h"
#include "pkcs11/edgevault.h"

#define F env.f
#define B64 sodium_base64_VARIANT_ORIGINAL

#define DEVICE "test-device"
#define MSG "edgevault rotation test"
#define ATTEST_TYPE "edgevault-attestation-result"

/* What a child reports on a mismatch (KID_TIMEOUT: harness.h). */
#define KID_MISMATCH 0xdead0002UL

/* The default grace period (seconds). */
#define GRACE_DEFAULT 86400L

static unsigned char ver_pk[crypto_sign_PUBLICKEYBYTES];
static unsigned char ver_sk[crypto_sign_SECRETKEYBYTES];
static char evidence_path[512];
static CK_BBOOL yes = CK_TRUE;
static CK_BBOOL no = CK_FALSE;

/* Utilities. */

static long long
now_unix(void)
{
	return (long long)time(NULL);
}

/* Sleep until the unix time is at least t. */
static void
sleep_until(long long t)
{
	while (now_unix() < t)
		nap_ms(50);
}

#define EV_STR_(x) #x
#define EV_STR(x) EV_STR_(x)

/*
 * Windows the test must act within (evidence lifetimes, grace and
 * rotation periods), in seconds: long enough for a slow machine.
 */
#define WINDOW 5

/*
 * Wait for the next second to begin, and return it: a window of WINDOW
 * seconds anchored on it (deadlines are whole unix seconds) lasts WINDOW
 * seconds, not WINDOW - 1 and a fraction.
 */
static long long
second_start(void)
{
	long long t = now_unix() + 1;

	sleep_until(t);
	return t;
}

/*
 * A counter shared with the children forked after it is made (an
 * anonymous shared mapping): a child counts what it has done, the test
 * reads it while the child goes on. The test unmaps it.
 */
static CK_ULONG *
shared_counter(void)
{
	void *p = mmap(NULL, sizeof(CK_ULONG), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	    -1, 0);

	ck_assert_msg(p != MAP_FAILED, "mmap: %s", strerror(errno));
	*(CK_ULONG *)p = 0;
	return p;
}

static CK_ULONG
counter_get(const CK_ULONG *c)
{
	return __atomic_load_n(c, __ATOMIC_SEQ_CST);
}

static void
counter_add(CK_ULONG *c)
{
	(void)__atomic_add_fetch(c, 1, __ATOMIC_SEQ_CST);
}

/* env_sql_long with a formatted query. */
static long
sql(const char *f, ...) __attribute__((format(printf, 1, 2)));

static long
sql(const char *f, ...)
{
	va_list ap;
	char *q = NULL;
	long v;

	va_start(ap, f);
	ck_assert_int_ge(vasprintf(&q, f, ap), 0);
	va_end(ap);
	v = env_sql_long(q);
	free(q);
	return v;
}

static long
refusals(void)
{
	return env_sql_long("SELECT count(*) FROM attestlog WHERE accepted = 0");
}

static long
refusals_for(const char *purpose)
{
	return sql("SELECT count(*) FROM attestlog WHERE accepted = 0 AND purpose = '%s'", purpose);
}

/* C_Login of the user with USER_PIN; its return code (usable in children). */
static CK_RV
login_user(CK_SESSION_HANDLE h)
{
	return F->C_Login(h, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN));
}

/* Configuration. */

/* The config with the result provider and the test's verifier key; extra lines after it. */
static void
conf(const char *extra)
{
	char pk64[sodium_base64_ENCODED_LEN(crypto_sign_PUBLICKEYBYTES, B64)];
	char *s;

	sodium_bin2base64(pk64, sizeof(pk64), ver_pk, sizeof(ver_pk), B64);
	s = fmt("[attestation]\nprovider = result\nverifier_key = %s\nresult_path = %s\n%s", pk64,
	    evidence_path, extra != NULL ? extra : "");
	env_write_config(s);
	free(s);
}

/* Read the configuration again: C_Finalize, C_Initialize. */
static void
restart(void)
{
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_init();
}

/* conf() with formatted extra lines, then restart() to read it. */
static void
reconf(const char *f, ...) __attribute__((format(printf, 1, 2)));

static void
reconf(const char *f, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, f);
	ck_assert_int_ge(vasprintf(&s, f, ap), 0);
	va_end(ap);
	conf(s);
	free(s);
	restart();
}

static void
setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	env_setup();
	ck_assert_int_ge(sodium_init(), 0);
	ck_assert_int_eq(crypto_sign_keypair(ver_pk, ver_sk), 0);
	snprintf(evidence_path, sizeof(evidence_path), "%s/evidence.json", env.dir);
	conf(NULL);
}

/* Evidence. */

/* An attestation result document; zones: the members of the array ("1" or "1,2"). */
static char *
evidence_doc(const char *device, const char *zones, long long issued, long long expires,
    const char *nonce)
{
	if (nonce != NULL)
		return fmt("{\"version\":1,\"device\":\"%s\",\"zones\":[%s],\"issued_at\":%lld,"
			   "\"expires_at\":%lld,\"nonce\":\"%s\"}",
		    device, zones, issued, expires, nonce);
	return fmt("{\"version\":1,\"device\":\"%s\",\"zones\":[%s],\"issued_at\":%lld,"
		   "\"expires_at\":%lld}",
	    device, zones, issued, expires);
}

/* Replace the result file as an agent does: written beside it, then renamed over it. */
static void
put_file(const char *bytes)
{
	char tmp[600];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", evidence_path);
	f = fopen(tmp, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(bytes, 1, strlen(bytes), f), strlen(bytes));
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_msg(rename(tmp, evidence_path) == 0, "rename %s: %s", evidence_path,
	    strerror(errno));
}

/* Evidence for this device and zones, signed by the verifier. */
static void
put_evidence(const char *zones, long long issued, long long expires, const char *nonce)
{
	char *doc = evidence_doc(DEVICE, zones, issued, expires, nonce);
	char *e = env_envelope(ATTEST_TYPE, doc, ver_sk);

	put_file(e);
	free(e);
	free(doc);
}

/* Good evidence for a list of zones, for ten minutes. */
static void
good_evidence_for(const char *zones)
{
	long long now = now_unix();

	put_evidence(zones, now - 5, now + 600, NULL);
}

static void
good_evidence(CK_SLOT_ID zone)
{
	char z[32];

	snprintf(z, sizeof(z), "%lu", (unsigned long)zone);
	good_evidence_for(z);
}

/* A new zone with good evidence, and an R/W session on it with the user logged in. */
static CK_SESSION_HANDLE
attested_zone(const char *label, CK_SLOT_ID *zone)
{
	*zone = env_new_zone(label);
	good_evidence(*zone);
	return env_session(*zone, 1, 1);
}

static void
no_evidence(void)
{
	ck_assert(unlink(evidence_path) == 0 || errno == ENOENT);
}

/* The admin interface, version 1.minor; NULL when it is not there (usable in children). */
static EV_ADMIN_FUNCTION_LIST *
admin_v_or_null(CK_BYTE minor)
{
	CK_INTERFACE *iface = NULL;
	CK_VERSION v = { 1, minor };

	if (F->C_GetInterface((CK_UTF8CHAR *)EV_ADMIN_INTERFACE_NAME, &v, &iface, 0) != CKR_OK ||
	    iface == NULL)
		return NULL;
	return iface->pFunctionList;
}

static EV_ADMIN_FUNCTION_LIST *
admin_v(CK_BYTE minor)
{
	EV_ADMIN_FUNCTION_LIST *a = admin_v_or_null(minor);

	ck_assert_msg(a != NULL, "C_GetInterface(\"%s\", 1.%u)", EV_ADMIN_INTERFACE_NAME, minor);
	ck_assert_int_eq(a->version.major, 1);
	ck_assert_int_eq(a->version.minor, minor);
	return a;
}

/* Version 1.1: the rotation functions. */
static EV_ADMIN_FUNCTION_LIST *
admin_or_null(void)
{
	return admin_v_or_null(1);
}

static EV_ADMIN_FUNCTION_LIST *
admin(void)
{
	return admin_v(1);
}

/* Keys. */

enum kt { KT_EC, KT_ED, KT_RSA };

/*
 * A key pair with CKA_LABEL and CKA_ID = label on both halves (the
 * public key of a pair is the one with the same label, CKA_ID and key
 * type); extra attributes for the private half.
 */
static void
gen_pair_x(CK_SESSION_HANDLE h, enum kt k, const char *label, CK_BBOOL token,
    const CK_ATTRIBUTE *extra, CK_ULONG nextra, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	CK_MECHANISM mech = { k == KT_EC ? CKM_EC_KEY_PAIR_GEN :
			      k == KT_ED ? CKM_EC_EDWARDS_KEY_PAIR_GEN :
					   CKM_RSA_PKCS_KEY_PAIR_GEN,
		NULL, 0 };
	CK_ULONG bits = 2048;
	CK_BYTE e[] = { 1, 0, 1 };
	CK_ATTRIBUTE pubt[6] = {
		{ CKA_TOKEN, &token, sizeof(token) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, (void *)label, strlen(label) },
		{ CKA_VERIFY, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE privt[12] = {
		{ CKA_TOKEN, &token, sizeof(token) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, (void *)label, strlen(label) },
		{ CKA_SIGN, &yes, sizeof(yes) },
	};
	CK_ULONG npub = 4, npriv = 4, i;

	if (k == KT_EC) {
		pubt[npub++] = (CK_ATTRIBUTE){ CKA_EC_PARAMS, (void *)env_p256, sizeof(env_p256) };
	} else if (k == KT_ED) {
		pubt[npub++] = (CK_ATTRIBUTE){ CKA_EC_PARAMS, (void *)env_ed25519,
			sizeof(env_ed25519) };
	} else {
		pubt[npub++] = (CK_ATTRIBUTE){ CKA_MODULUS_BITS, &bits, sizeof(bits) };
		pubt[npub++] = (CK_ATTRIBUTE){ CKA_PUBLIC_EXPONENT, e, sizeof(e) };
	}
	ck_assert_uint_le(nextra, 8);
	for (i = 0; i < nextra; i++)
		privt[npriv++] = extra[i];
	ck_assert_int_eq(F->C_GenerateKeyPair(h, &mech, pubt, npub, privt, npriv, pub, priv),
	    CKR_OK);
}

static void
gen_pair(CK_SESSION_HANDLE h, enum kt k, const char *label, CK_OBJECT_HANDLE *pub,
    CK_OBJECT_HANDLE *priv)
{
	gen_pair_x(h, k, label, CK_TRUE, NULL, 0, pub, priv);
}

/* An AES-256 key, CKA_ID = label; extra attributes added. */
static CK_OBJECT_HANDLE
gen_aes_x(CK_SESSION_HANDLE h, const char *label, CK_BBOOL token, const CK_ATTRIBUTE *extra,
    CK_ULONG nextra)
{
	CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_ULONG len = 32, n = 6, i;
	CK_ATTRIBUTE t[12] = {
		{ CKA_TOKEN, &token, sizeof(token) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, (void *)label, strlen(label) },
		{ CKA_VALUE_LEN, &len, sizeof(len) },
		{ CKA_ENCRYPT, &yes, sizeof(yes) },
		{ CKA_DECRYPT, &yes, sizeof(yes) },
	};
	CK_OBJECT_HANDLE k;

	ck_assert_uint_le(nextra, 6);
	for (i = 0; i < nextra; i++)
		t[n++] = extra[i];
	ck_assert_int_eq(F->C_GenerateKey(h, &m, t, n, &k), CKR_OK);
	return k;
}

static CK_OBJECT_HANDLE
gen_aes(CK_SESSION_HANDLE h, const char *label)
{
	return gen_aes_x(h, label, CK_TRUE, NULL, 0);
}

static CK_MECHANISM_TYPE
sign_mech(enum kt k)
{
	return k == KT_EC ? CKM_ECDSA_SHA256 : k == KT_ED ? CKM_EDDSA : CKM_SHA256_RSA_PKCS;
}

/* C_SignInit and C_Sign of MSG (*len: buffer size in, signature size out); the first failure. */
static CK_RV
try_sign(CK_SESSION_HANDLE h, enum kt k, CK_OBJECT_HANDLE priv, CK_BYTE *sig, CK_ULONG *len)
{
	CK_MECHANISM m = { sign_mech(k), NULL, 0 };
	CK_RV rv;

	rv = F->C_SignInit(h, &m, priv);
	if (rv != CKR_OK)
		return rv;
	return F->C_Sign(h, (CK_BYTE *)MSG, strlen(MSG), sig, len);
}

/* C_VerifyInit and C_Verify of a signature of MSG; the first failure. */
static CK_RV
try_verify(CK_SESSION_HANDLE h, enum kt k, CK_OBJECT_HANDLE pub, const CK_BYTE *sig,
    CK_ULONG len)
{
	CK_MECHANISM m = { sign_mech(k), NULL, 0 };
	CK_RV rv;

	rv = F->C_VerifyInit(h, &m, pub);
	if (rv != CKR_OK)
		return rv;
	return F->C_Verify(h, (CK_BYTE *)MSG, strlen(MSG), (CK_BYTE *)sig, len);
}

/* Whether OpenSSL verifies a signature of MSG with the public key of object pub. */
static int
ossl_verifies(CK_SESSION_HANDLE h, enum kt k, CK_OBJECT_HANDLE pub, const CK_BYTE *sig,
    CK_ULONG len)
{
	EVP_PKEY *key = env_spki(h, pub);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *der = NULL;
	const unsigned char *s = sig;
	size_t slen = len;
	int ok;

	ck_assert_ptr_nonnull(ctx);
	if (k == KT_EC) {
		ck_assert_uint_eq(len, 64);
		slen = (size_t)env_ecdsa_der(sig, len, &der);
		s = der;
	}
	ok = EVP_DigestVerifyInit(ctx, NULL, k == KT_ED ? NULL : EVP_sha256(), NULL, key) == 1 &&
	    EVP_DigestVerify(ctx, s, slen, (const unsigned char *)MSG, strlen(MSG)) == 1;
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(key);
	OPENSSL_free(der);
	return ok;
}

/* The key signs, and OpenSSL verifies the signature with pub. */
static void
signs(CK_SESSION_HANDLE h, enum kt k, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub)
{
	CK_BYTE sig[512];
	CK_ULONG len = sizeof(sig);
	CK_RV rv = try_sign(h, k, priv, sig, &len);

	ck_assert_msg(rv == CKR_OK, "signature by object %lu: 0x%lx", priv, rv);
	ck_assert_msg(ossl_verifies(h, k, pub, sig, len), "OpenSSL: bad signature by object %lu",
	    priv);
}

/* AES-GCM of in (a fixed IV: test data only); the first failure. */
static CK_RV
aes_gcm(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, int enc, const CK_BYTE *in, CK_ULONG inlen,
    CK_BYTE *out, CK_ULONG *outlen)
{
	static CK_BYTE iv[12] = { 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4 };
	CK_GCM_PARAMS p = { iv, sizeof(iv), 96, NULL, 0, 128 };
	CK_MECHANISM m = { CKM_AES_GCM, &p, sizeof(p) };
	CK_RV rv;

	rv = enc ? F->C_EncryptInit(h, &m, key) : F->C_DecryptInit(h, &m, key);
	if (rv != CKR_OK)
		return rv;
	return enc ? F->C_Encrypt(h, (CK_BYTE *)in, inlen, out, outlen) :
		     F->C_Decrypt(h, (CK_BYTE *)in, inlen, out, outlen);
}

/* Encrypt MSG; ct of at least 64 bytes. */
static CK_RV
aes_seal(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, CK_BYTE *ct, CK_ULONG *ctlen)
{
	*ctlen = 64;
	return aes_gcm(h, key, 1, (const CK_BYTE *)MSG, strlen(MSG), ct, ctlen);
}

/* Decrypt ct and compare with MSG: CKR_OK, the failure, or KID_MISMATCH. */
static CK_RV
aes_open(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, const CK_BYTE *ct, CK_ULONG ctlen)
{
	CK_BYTE pt[64];
	CK_ULONG len = sizeof(pt);
	CK_RV rv = aes_gcm(h, key, 0, ct, ctlen, pt, &len);

	if (rv == CKR_OK && (len != strlen(MSG) || memcmp(pt, MSG, len) != 0))
		rv = KID_MISMATCH;
	return rv;
}

/* Encrypt and decrypt MSG with one key: CKR_OK or the first failure. */
static CK_RV
aes_roundtrip(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key)
{
	CK_BYTE ct[64];
	CK_ULONG ctlen;
	CK_RV rv = aes_seal(h, key, ct, &ctlen);

	return rv != CKR_OK ? rv : aes_open(h, key, ct, ctlen);
}

/* Attributes. */

/* An attribute's value into buf (cap bytes): its length; fails the test on an error. */
static CK_ULONG
attr_bytes(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, void *buf,
    CK_ULONG cap)
{
	CK_ATTRIBUTE a = { type, buf, cap };
	CK_RV rv = F->C_GetAttributeValue(h, o, &a, 1);

	ck_assert_msg(rv == CKR_OK, "C_GetAttributeValue(%lu, 0x%lx): 0x%lx", o, type, rv);
	return a.ulValueLen;
}

static CK_ULONG
attr_ulong(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
	CK_ULONG v = 0xdeadbeef;

	ck_assert_uint_eq(attr_bytes(h, o, type, &v, sizeof(v)), sizeof(v));
	return v;
}

static CK_BBOOL
attr_bool(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
	CK_BBOOL v = 0x55;

	ck_assert_uint_eq(attr_bytes(h, o, type, &v, sizeof(v)), sizeof(v));
	ck_assert(v == CK_TRUE || v == CK_FALSE);
	return v;
}

/* Searches. */

static CK_ULONG
find(CK_SESSION_HANDLE h, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *out, CK_ULONG cap)
{
	return env_find(h, t, n, out, cap);
}

/* Objects with a label (and, with gen != 0, CKA_EV_GENERATION gen in the template). */
static CK_ULONG
find_label(CK_SESSION_HANDLE h, const char *label, CK_ULONG gen, CK_OBJECT_HANDLE *out,
    CK_ULONG cap)
{
	CK_ATTRIBUTE t[] = {
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_EV_GENERATION, &gen, sizeof(gen) },
	};

	return find(h, t, gen != 0 ? 2 : 1, out, cap);
}

/* The one object with a label and class (and generation, when not 0). */
static CK_OBJECT_HANDLE
find_one(CK_SESSION_HANDLE h, const char *label, CK_OBJECT_CLASS cls, CK_ULONG gen)
{
	CK_ATTRIBUTE t[] = {
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_EV_GENERATION, &gen, sizeof(gen) },
	};
	CK_OBJECT_HANDLE out[8];
	CK_ULONG n = find(h, t, gen != 0 ? 3 : 2, out, 8);

	ck_assert_msg(n == 1, "objects labelled %s of class %lu (generation %lu): %lu", label, cls,
	    gen, n);
	return out[0];
}

static int
listed(const CK_OBJECT_HANDLE *v, CK_ULONG n, CK_OBJECT_HANDLE x)
{
	CK_ULONG i;

	for (i = 0; i < n; i++)
		if (v[i] == x)
			return 1;
	return 0;
}

/* How many objects with this store id are left. */
static long
stored(CK_OBJECT_HANDLE o)
{
	return sql("SELECT count(*) FROM objects WHERE id = %lu", (unsigned long)o);
}

/* 1. The login gate. */

struct bad_evidence {
	const char *what;
	char *bytes; /* NULL: no file at all */
};

/* Evidence a zone must refuse, made at now; other: another zone of the device. */
static size_t
bad_evidence(CK_SLOT_ID zone, CK_SLOT_ID other, struct bad_evidence *v)
{
	unsigned char opk[crypto_sign_PUBLICKEYBYTES], osk[crypto_sign_SECRETKEYBYTES];
	long long now = now_unix();
	char z[32], o[32], *doc, *e, *other_env, *sig_of_e, *sig_of_other;
	size_t n = 0;

	snprintf(z, sizeof(z), "%lu", (unsigned long)zone);
	snprintf(o, sizeof(o), "%lu", (unsigned long)other);
	ck_assert_int_eq(crypto_sign_keypair(opk, osk), 0);

	v[n++] = (struct bad_evidence){ "no evidence file", NULL };
#define BAD(what_, doc_, sk_, type_)                                      \
	do {                                                              \
		doc = (doc_);                                             \
		v[n++] = (struct bad_evidence){ (what_), env_envelope((type_), doc, (sk_)) }; \
		free(doc);                                                \
	} while (0)
	BAD("expired", evidence_doc(DEVICE, z, now - 120, now - 60, NULL), ver_sk, ATTEST_TYPE);
	BAD("expired at this very second", evidence_doc(DEVICE, z, now - 120, now, NULL), ver_sk,
	    ATTEST_TYPE);
	BAD("issued an hour ahead", evidence_doc(DEVICE, z, now + 3600, now + 7200, NULL), ver_sk,
	    ATTEST_TYPE);
	BAD("another device", evidence_doc("other-device", z, now - 5, now + 600, NULL), ver_sk,
	    ATTEST_TYPE);
	BAD("another zone", evidence_doc(DEVICE, o, now - 5, now + 600, NULL), ver_sk,
	    ATTEST_TYPE);
	BAD("no zone at all", evidence_doc(DEVICE, "", now - 5, now + 600, NULL), ver_sk,
	    ATTEST_TYPE);
	BAD("signed by another key", evidence_doc(DEVICE, z, now - 5, now + 600, NULL), osk,
	    ATTEST_TYPE);
	BAD("an envelope of another type", evidence_doc(DEVICE, z, now - 5, now + 600, NULL),
	    ver_sk, "edgevault-revocation-list");
	BAD("document not JSON", fmt("this is not JSON {\"device\":\"%s\"", DEVICE), ver_sk,
	    ATTEST_TYPE);
	BAD("document without expires_at",
	    fmt("{\"version\":1,\"device\":\"%s\",\"zones\":[%s],\"issued_at\":%lld}", DEVICE, z,
		now - 5),
	    ver_sk, ATTEST_TYPE);
	BAD("document with an unknown member",
	    fmt("{\"version\":1,\"device\":\"%s\",\"zones\":[%s],\"issued_at\":%lld,"
		"\"expires_at\":%lld,\"trusted\":true}",
		DEVICE, z, now - 5, now + 600),
	    ver_sk, ATTEST_TYPE);
	BAD("issued 30 s ahead, clock_skew 10",
	    evidence_doc(DEVICE, z, now + 30, now + 600, NULL), ver_sk, ATTEST_TYPE);
	BAD("stale: issued longer ago than the zone's max_evidence_age (1000)",
	    evidence_doc(DEVICE, z, now - 1500, now + 600, NULL), ver_sk, ATTEST_TYPE);
#undef BAD
	/* One document's bytes with the signature of another (both by the verifier). */
	doc = evidence_doc(DEVICE, z, now - 5, now + 600, NULL);
	e = env_envelope(ATTEST_TYPE, doc, ver_sk);
	free(doc);
	doc = evidence_doc(DEVICE, z, now - 5, now + 6000, NULL);
	other_env = env_envelope(ATTEST_TYPE, doc, ver_sk);
	free(doc);
	sig_of_e = strstr(e, "\"signature\":\"");
	sig_of_other = strstr(other_env, "\"signature\":\"");
	ck_assert_ptr_nonnull(sig_of_e);
	ck_assert_ptr_nonnull(sig_of_other);
	*sig_of_e = '\0';
	v[n++] = (struct bad_evidence){ "payload and signature of two documents",
		fmt("%s%s", e, sig_of_other) };
	free(other_env);
	free(e);
	v[n++] = (struct bad_evidence){ "not an envelope", fmt("garbage \x01\x02 %lld", now) };
	return n;
}

START_TEST(test_login_gate)
{
	CK_SLOT_ID za, zb;
	CK_SESSION_HANDLE h, hb;
	CK_TOKEN_INFO ti;
	struct bad_evidence bad[32];
	long refused;
	size_t n, i;
	CK_RV rv;

	env_init();
	za = env_new_zone("gated");
	zb = env_new_zone("open");
	reconf("clock_skew = 10\n"
	       "[zone %lu]\nrequire_attestation = true\nmax_evidence_age = 1000\n",
	    (unsigned long)za);

	h = env_session(za, 1, 0);
	ck_assert_int_eq(refusals(), 0);
	n = bad_evidence(za, zb, bad);
	refused = 0;
	for (i = 0; i < n; i++) {
		if (bad[i].bytes == NULL)
			no_evidence();
		else
			put_file(bad[i].bytes);
		rv = login_user(h);
		ck_assert_msg(rv == CKR_FUNCTION_REJECTED, "%s: C_Login: 0x%lx", bad[i].what, rv);
		refused++;
		ck_assert_msg(refusals() == refused, "%s: %ld refusals recorded, expected %ld",
		    bad[i].what, refusals(), refused);
		free(bad[i].bytes);
	}

	/* Refused before the PIN is looked at: a wrong one is not counted either. */
	no_evidence();
	ck_assert_int_eq(F->C_Login(h, CKU_USER, (CK_UTF8CHAR *)"wrong", 5),
	    CKR_FUNCTION_REJECTED);
	ck_assert_int_eq(refusals(), ++refused);

	/* Not one PIN failure counted (max_fails is 3). */
	ck_assert_int_eq(F->C_GetTokenInfo(za, &ti), CKR_OK);
	ck_assert_msg((ti.flags & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY |
				      CKF_USER_PIN_LOCKED)) == 0,
	    "PIN flags after refused logins: 0x%lx", ti.flags);

	/* Good evidence, dated a little ahead (within clock_skew): the user is in. */
	{
		long long now = now_unix();
		char zs[32];

		snprintf(zs, sizeof(zs), "%lu", (unsigned long)za);
		put_evidence(zs, now + 5, now + 600, NULL);
	}
	ck_assert_int_eq(login_user(h), CKR_OK);
	ck_assert_int_eq(refusals(), refused);
	ck_assert_int_eq(env_sql_long("SELECT count(*) FROM attestlog WHERE accepted = 1 AND "
				      "purpose = 'login'"),
	    1);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);

	/* The SO is not gated. */
	no_evidence();
	ck_assert_int_eq(F->C_Login(h, CKU_SO, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN)), CKR_OK);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);

	/* A zone without require_attestation: no evidence needed. */
	hb = env_session(zb, 1, 0);
	ck_assert_int_eq(login_user(hb), CKR_OK);

	/* And a wrong PIN with good evidence does count (the flags above could tell). */
	good_evidence(za);
	ck_assert_int_eq(F->C_Login(h, CKU_USER, (CK_UTF8CHAR *)"wrong", 5), CKR_PIN_INCORRECT);
	ck_assert_int_eq(F->C_GetTokenInfo(za, &ti), CKR_OK);
	ck_assert(ti.flags & CKF_USER_PIN_COUNT_LOW);
	ck_assert_int_eq(refusals(), refused);
}
END_TEST

/*
 * A caller looping on C_Login with the same refused evidence does not grow
 * the history: the same refusal (evidence and reason) is recorded once a
 * minute; another reason is news.
 */
START_TEST(test_refusal_rate_limit)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h;
	char zs[32], *doc, *expired, *other;
	long long now = now_unix();
	long r0;
	int i;

	env_init();
	z = env_new_zone("repeat");
	reconf("[zone %lu]\nrequire_attestation = true\n", (unsigned long)z);
	snprintf(zs, sizeof(zs), "%lu", (unsigned long)z);
	doc = evidence_doc(DEVICE, zs, now - 120, now - 60, NULL);
	expired = env_envelope(ATTEST_TYPE, doc, ver_sk);
	free(doc);
	doc = evidence_doc("other-device", zs, now - 5, now + 600, NULL);
	other = env_envelope(ATTEST_TYPE, doc, ver_sk);
	free(doc);

	h = env_session(z, 1, 0);
	r0 = refusals_for("login");
	put_file(expired);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(login_user(h), CKR_FUNCTION_REJECTED);
		ck_assert_msg(refusals_for("login") == r0 + 1,
		    "the same expired evidence refused %d times: %ld rows, expected %ld", i + 1,
		    refusals_for("login"), r0 + 1);
	}
	/* Another reason: recorded, once. */
	put_file(other);
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(login_user(h), CKR_FUNCTION_REJECTED);
		ck_assert_int_eq(refusals_for("login"), r0 + 2);
	}
	/* No evidence at all: another reason again. */
	no_evidence();
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(login_user(h), CKR_FUNCTION_REJECTED);
		ck_assert_int_eq(refusals_for("login"), r0 + 3);
	}
	ck_assert_int_eq(sql("SELECT count(DISTINCT reason) FROM attestlog WHERE accepted = 0 AND "
			     "purpose = 'login' AND zone = %lu",
			     (unsigned long)z),
	    3);
	free(expired);
	free(other);
}
END_TEST

/* 2. Nonces. */

static void
hexof(char *out, size_t cap, const CK_BYTE *b, size_t n)
{
	ck_assert_uint_ge(cap, 2 * n + 1);
	sodium_bin2hex(out, cap, b, n);
}

START_TEST(test_nonce)
{
	CK_SLOT_ID za, zn;
	CK_SESSION_HANDLE h, hn;
	CK_BYTE n1[64], n2[64], other[EV_NONCE_LEN], zero[EV_NONCE_LEN] = { 0 };
	CK_ULONG len;
	char x1[2 * 64 + 1], x2[2 * 64 + 1], xo[2 * EV_NONCE_LEN + 1], za_s[32], zn_s[32];
	long long now;
	CK_RV rv;

	env_init();
	za = env_new_zone("nonce");
	zn = env_new_zone("strict");
	reconf("[policy]\nrequire_attestation = true\n[zone %lu]\nrequire_nonce = true\n",
	    (unsigned long)zn);
	snprintf(za_s, sizeof(za_s), "%lu", (unsigned long)za);
	snprintf(zn_s, sizeof(zn_s), "%lu", (unsigned long)zn);

	/* Any session, none logged in. Two calls: the length, then the nonce. */
	h = env_session(za, 0, 0);
	len = 0;
	ck_assert_int_eq(admin()->EV_NewNonce(h, NULL, &len), CKR_OK);
	ck_assert_uint_eq(len, EV_NONCE_LEN);
	len = 16;
	ck_assert_int_eq(admin()->EV_NewNonce(h, n1, &len), CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(len, EV_NONCE_LEN);
	ck_assert_int_eq(admin()->EV_NewNonce(h, n1, NULL), CKR_ARGUMENTS_BAD);
	len = sizeof(n1);
	ck_assert_int_eq(admin()->EV_NewNonce(h, n1, &len), CKR_OK);
	ck_assert_uint_eq(len, EV_NONCE_LEN);
	ck_assert(memcmp(n1, zero, EV_NONCE_LEN) != 0);
	hexof(x1, sizeof(x1), n1, EV_NONCE_LEN);

	/* Evidence carrying it: accepted. */
	now = now_unix();
	put_evidence(za_s, now - 5, now + 600, x1);
	ck_assert_int_eq(login_user(h), CKR_OK);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);

	/* Another nonce: refused. */
	randombytes_buf(other, sizeof(other));
	hexof(xo, sizeof(xo), other, sizeof(other));
	put_evidence(za_s, now - 5, now + 600, xo);
	rv = login_user(h);
	ck_assert_msg(rv == CKR_FUNCTION_REJECTED, "evidence with another nonce: 0x%lx", rv);

	/* No nonce, in a zone that does not require one: accepted. */
	put_evidence(za_s, now - 5, now + 600, NULL);
	ck_assert_int_eq(login_user(h), CKR_OK);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);

	/* A new nonce replaces the old one. */
	len = sizeof(n2);
	ck_assert_int_eq(admin()->EV_NewNonce(h, n2, &len), CKR_OK);
	ck_assert_uint_eq(len, EV_NONCE_LEN);
	ck_assert(memcmp(n1, n2, EV_NONCE_LEN) != 0);
	hexof(x2, sizeof(x2), n2, EV_NONCE_LEN);
	put_evidence(za_s, now - 5, now + 600, x1);
	rv = login_user(h);
	ck_assert_msg(rv == CKR_FUNCTION_REJECTED, "evidence with the previous nonce: 0x%lx", rv);
	put_evidence(za_s, now - 5, now + 600, x2);
	ck_assert_int_eq(login_user(h), CKR_OK);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);

	/* require_nonce: evidence without one is refused, with the current one accepted. */
	hn = env_session(zn, 0, 0);
	put_evidence(zn_s, now - 5, now + 600, NULL);
	rv = login_user(hn);
	ck_assert_msg(rv == CKR_FUNCTION_REJECTED, "require_nonce, evidence without: 0x%lx", rv);
	put_evidence(zn_s, now - 5, now + 600, x1);
	rv = login_user(hn);
	ck_assert_msg(rv == CKR_FUNCTION_REJECTED, "require_nonce, an old nonce: 0x%lx", rv);
	put_evidence(zn_s, now - 5, now + 600, x2);
	ck_assert_int_eq(login_user(hn), CKR_OK);
}
END_TEST

/* 3. Evidence going stale during a session; EV_Attest. */

START_TEST(test_expiry_during_session)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h, h2;
	CK_OBJECT_HANDLE pub, priv, k, xk, nk;
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_MECHANISM kg = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_MECHANISM sha = { CKM_SHA256, NULL, 0 };
	CK_BYTE iv[12] = { 0 };
	CK_GCM_PARAMS gp = { iv, sizeof(iv), 96, NULL, 0, 128 };
	CK_MECHANISM gcm = { CKM_AES_GCM, &gp, sizeof(gp) };
	CK_ULONG klen = 32;
	CK_ATTRIBUTE kt[] = { { CKA_VALUE_LEN, &klen, sizeof(klen) } };
	CK_ATTRIBUTE readable[] = {
		{ CKA_SENSITIVE, &no, sizeof(no) },
		{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE copy_t[] = { { CKA_LABEL, "exp-copy", 8 } };
	CK_BYTE sig[64], ct[64], sig2[64], val[64], dg[32];
	CK_ATTRIBUTE va = { CKA_VALUE, val, sizeof(val) };
	CK_ULONG len = sizeof(sig), ctlen, len2, dlen;
	EV_ATTESTATION info;
	char zs[32];
	long long t, exp;
	long use0;

	env_init();
	z = env_new_zone("expiry");
	conf("[policy]\nrequire_attestation = true\n");
	restart();
	snprintf(zs, sizeof(zs), "%lu", (unsigned long)z);
	good_evidence(z);
	h = env_session(z, 1, 1);
	gen_pair(h, KT_EC, "exp", &pub, &priv);
	k = gen_aes(h, "exp-aes");
	/* A secret key whose value may be read out and digested. */
	xk = gen_aes_x(h, "exp-readable", CK_TRUE, readable, 2);
	ck_assert_int_eq(try_sign(h, KT_EC, priv, sig, &len), CKR_OK);
	ck_assert(ossl_verifies(h, KT_EC, pub, sig, len));
	ck_assert_int_eq(aes_seal(h, k, ct, &ctlen), CKR_OK);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);

	/* A login with evidence good for WINDOW seconds. */
	t = second_start();
	exp = t + WINDOW;
	put_evidence(zs, t, exp, NULL);
	ck_assert_int_eq(login_user(h), CKR_OK);
	signs(h, KT_EC, priv, pub);
	/* While fresh, what is refused below works: the refusals are the gate's. */
	va.ulValueLen = sizeof(val);
	ck_assert_int_eq(F->C_GetAttributeValue(h, xk, &va, 1), CKR_OK);
	ck_assert_uint_eq(va.ulValueLen, 32);
	ck_assert_int_eq(F->C_DigestInit(h, &sha), CKR_OK);
	ck_assert_int_eq(F->C_DigestKey(h, xk), CKR_OK);
	dlen = sizeof(dg);
	ck_assert_int_eq(F->C_DigestFinal(h, dg, &dlen), CKR_OK);
	ck_assert_int_eq(F->C_CopyObject(h, priv, copy_t, 1, &nk), CKR_OK);
	ck_assert_int_eq(F->C_DestroyObject(h, nk), CKR_OK);
	use0 = refusals_for("use");
	/* A signature started while the evidence is fresh. */
	h2 = env_session(z, 0, 1);
	ck_assert_int_eq(F->C_SignInit(h2, &m, priv), CKR_OK);
	ck_assert_msg(now_unix() < exp, "the set-up took longer than the evidence's %d s",
	    WINDOW);

	/* Stale: private and secret keys, and key management, are refused. */
	sleep_until(exp);
	ck_assert_int_eq(F->C_SignInit(h, &m, priv), CKR_FUNCTION_REJECTED);
	ck_assert_int_eq(F->C_SignInit(h, &m, priv), CKR_FUNCTION_REJECTED);
	ck_assert_int_eq(F->C_EncryptInit(h, &gcm, k), CKR_FUNCTION_REJECTED);
	ck_assert_int_eq(F->C_DecryptInit(h, &gcm, k), CKR_FUNCTION_REJECTED);
	ck_assert_int_eq(F->C_GenerateKey(h, &kg, kt, 1, &nk), CKR_FUNCTION_REJECTED);
	ck_assert_int_eq(F->C_CopyObject(h, priv, kt, 0, &nk), CKR_FUNCTION_REJECTED);
	ck_assert_int_eq(F->C_CopyObject(h, priv, copy_t, 1, &nk), CKR_FUNCTION_REJECTED);
	/* Digesting a secret key, and reading its value out, are uses too. */
	ck_assert_int_eq(F->C_DigestInit(h, &sha), CKR_OK);
	ck_assert_int_eq(F->C_DigestKey(h, xk), CKR_FUNCTION_REJECTED);
	va.ulValueLen = sizeof(val);
	ck_assert_int_eq(F->C_GetAttributeValue(h, xk, &va, 1), CKR_FUNCTION_REJECTED);
	/* An operation started before finishes. */
	len2 = sizeof(sig2);
	ck_assert_int_eq(F->C_Sign(h2, (CK_BYTE *)MSG, strlen(MSG), sig2, &len2), CKR_OK);
	ck_assert(ossl_verifies(h, KT_EC, pub, sig2, len2));
	/* Recorded once when the zone went stale, not at every refused call. */
	ck_assert_int_eq(refusals_for("use"), use0 + 1);
	/* Public keys are not gated. */
	ck_assert_int_eq(try_verify(h, KT_EC, pub, sig, len), CKR_OK);

	memset(&info, 0xa5, sizeof(info));
	ck_assert_int_eq(admin()->EV_Attest(h, &info), CKR_OK);
	ck_assert_uint_eq(info.ulState, EV_ATTEST_REFUSED);
	ck_assert_ptr_nonnull(memchr(info.szReason, '\0', sizeof(info.szReason)));
	ck_assert_uint_gt(strlen((char *)info.szReason), 0);
	ck_assert_int_eq(F->C_SignInit(h, &m, priv), CKR_FUNCTION_REJECTED);

	/* The agent refreshes the file: keys work again without a new login (read again). */
	t = second_start();
	exp = t + WINDOW;
	put_evidence(zs, t, exp, NULL);
	signs(h, KT_EC, priv, pub);
	ck_assert_int_eq(aes_open(h, k, ct, ctlen), CKR_OK);
	ck_assert_msg(now_unix() < exp, "the checks took longer than the evidence's %d s", WINDOW);

	/* Stale again: refused again, and recorded again. */
	sleep_until(exp);
	ck_assert_int_eq(F->C_SignInit(h, &m, priv), CKR_FUNCTION_REJECTED);
	ck_assert_int_eq(refusals_for("use"), use0 + 2);

	/* EV_Attest with fresh evidence renews the session's zone: the file may go. */
	t = now_unix();
	put_evidence(zs, t - 1, t + 600, NULL);
	memset(&info, 0xa5, sizeof(info));
	ck_assert_int_eq(admin()->EV_Attest(h, &info), CKR_OK);
	ck_assert_uint_eq(info.ulState, EV_ATTEST_ACCEPTED);
	/* Good until min(expires_at, issued_at + max_evidence_age). */
	ck_assert_uint_eq(info.ulValidUntil, (CK_ULONG)(t + 600));
	ck_assert_ptr_nonnull(memchr(info.szReason, '\0', sizeof(info.szReason)));
	ck_assert_uint_gt(strlen((char *)info.szReason), 0);
	no_evidence();
	signs(h, KT_EC, priv, pub);
	ck_assert_int_eq(aes_roundtrip(h, k), CKR_OK);

	put_evidence(zs, t - 3500, t + 600, NULL);
	ck_assert_int_eq(admin()->EV_Attest(h, &info), CKR_OK);
	ck_assert_uint_eq(info.ulState, EV_ATTEST_ACCEPTED);
	ck_assert_uint_eq(info.ulValidUntil, (CK_ULONG)(t - 3500 + 3600));
	ck_assert_int_eq(admin()->EV_Attest(h, NULL), CKR_ARGUMENTS_BAD);

	/* Without a provider: EV_Attest is refused. */
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_write_config(NULL);
	env_init();
	h = env_session(z, 0, 0);
	ck_assert_int_eq(admin()->EV_Attest(h, &info), CKR_FUNCTION_REJECTED);
}
END_TEST

/* 4. Rotation. */

/* SHA-1 of the DER SubjectPublicKeyInfo OpenSSL makes of an object's public key. */
static void
spki_sha1(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, unsigned char out[20])
{
	EVP_PKEY *k = env_spki(h, o);
	unsigned char *der = NULL;
	unsigned int len = 0;
	int n = i2d_PUBKEY(k, &der);

	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(EVP_Digest(der, (size_t)n, out, &len, EVP_sha1(), NULL), 1);
	ck_assert_uint_eq(len, 20);
	OPENSSL_free(der);
	EVP_PKEY_free(k);
}

/*
 * What a rotation of a key pair left, from the old halves (opub, opriv)
 * and the time around the rotation; the new halves in *npub, *npriv.
 */
static void
check_rotated_pair(CK_SESSION_HANDLE h, enum kt k, const char *label, CK_OBJECT_HANDLE opub,
    CK_OBJECT_HANDLE opriv, long long t0, long long t1, long grace, CK_OBJECT_HANDLE *npub,
    CK_OBJECT_HANDLE *npriv)
{
	CK_OBJECT_HANDLE found[16];
	CK_BYTE id[64], lab[64], sha[20];
	CK_ULONG n, idlen, i;
	CK_ULONG at;

	*npriv = find_one(h, label, CKO_PRIVATE_KEY, 0);
	*npub = find_one(h, label, CKO_PUBLIC_KEY, 0);
	ck_assert_uint_ne(*npriv, opriv);
	ck_assert_uint_ne(*npub, opub);

	/* Only the new generation without CKA_EV_GENERATION in the template. */
	n = find_label(h, label, 0, found, 16);
	ck_assert_uint_eq(n, 2);
	ck_assert(listed(found, n, *npriv) && listed(found, n, *npub));
	n = find_label(h, label, 2, found, 16);
	ck_assert_uint_eq(n, 2);
	ck_assert(listed(found, n, *npriv) && listed(found, n, *npub));
	n = find_label(h, label, 1, found, 16);
	ck_assert_uint_eq(n, 2);
	ck_assert(listed(found, n, opriv) && listed(found, n, opub));

	/* The new generation: same label, new CKA_ID = SHA-1 of its SubjectPublicKeyInfo. */
	spki_sha1(h, *npub, sha);
	for (i = 0; i < 2; i++) {
		CK_OBJECT_HANDLE o = i == 0 ? *npriv : *npub;

		ck_assert_uint_eq(attr_bytes(h, o, CKA_LABEL, lab, sizeof(lab)), strlen(label));
		ck_assert_mem_eq(lab, label, strlen(label));
		idlen = attr_bytes(h, o, CKA_ID, id, sizeof(id));
		ck_assert_uint_eq(idlen, 20);
		ck_assert_mem_eq(id, sha, 20);
		ck_assert_uint_eq(attr_ulong(h, o, CKA_EV_GENERATION), 2);
		ck_assert_int_eq(attr_bool(h, o, CKA_EV_RETIRED), CK_FALSE);
		ck_assert_uint_eq(attr_ulong(h, o, CKA_EV_DESTROY_AT), 0);
		ck_assert_uint_eq(attr_ulong(h, o, CKA_KEY_TYPE),
		    k == KT_EC ? CKK_EC : k == KT_ED ? CKK_EC_EDWARDS : CKK_RSA);
	}
	/* The old one: retired for the grace period. */
	for (i = 0; i < 2; i++) {
		CK_OBJECT_HANDLE o = i == 0 ? opriv : opub;

		ck_assert_uint_eq(attr_ulong(h, o, CKA_EV_GENERATION), 1);
		ck_assert_int_eq(attr_bool(h, o, CKA_EV_RETIRED), CK_TRUE);
		at = attr_ulong(h, o, CKA_EV_DESTROY_AT);
		ck_assert_msg(at >= (CK_ULONG)(t0 + grace) && at <= (CK_ULONG)(t1 + grace),
		    "CKA_EV_DESTROY_AT %lu, expected %lld .. %lld", at, t0 + grace, t1 + grace);
		idlen = attr_bytes(h, o, CKA_ID, id, sizeof(id));
		ck_assert_uint_eq(idlen, strlen(label));
		ck_assert_mem_eq(id, label, idlen);
	}
}

START_TEST(test_rotate_ec_pair)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h, h2;
	CK_OBJECT_HANDLE pub, priv, npub, npriv, got = 0, copy, found[16];
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_MECHANISM raw = { CKM_ECDSA, NULL, 0 };
	CK_MECHANISM_TYPE allowed[] = { CKM_ECDSA_SHA256 };
	CK_BYTE subject[] = "CN=web.example";
	CK_ATTRIBUTE extra[] = {
		{ CKA_ALLOWED_MECHANISMS, allowed, sizeof(allowed) },
		{ CKA_SUBJECT, subject, sizeof(subject) - 1 },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
	};
	CK_ATTRIBUTE retired_t[] = {
		{ CKA_LABEL, "web", 3 },
		{ CKA_EV_RETIRED, &yes, sizeof(yes) },
	};
	CK_BYTE sig[64], nsig[64], buf[128], uid[128], nuid[128];
	CK_ULONG len = sizeof(sig), nlen = sizeof(nsig), gen = 7, ul, nul;
	CK_ATTRIBUTE setgen = { CKA_EV_GENERATION, &gen, sizeof(gen) };
	CK_ATTRIBUTE ct[] = { { CKA_LABEL, "copy", 4 }, { CKA_TOKEN, &yes, sizeof(yes) } };
	long long t0, t1;

	env_init();
	h = attested_zone("rotate", &z);
	h2 = env_session(z, 0, 1);
	gen_pair_x(h, KT_EC, "web", CK_TRUE, extra, 3, &pub, &priv);
	ck_assert_uint_eq(attr_ulong(h, priv, CKA_EV_GENERATION), 1);
	ck_assert_int_eq(attr_bool(h, priv, CKA_EV_RETIRED), CK_FALSE);
	ck_assert_uint_eq(attr_ulong(h, priv, CKA_EV_DESTROY_AT), 0);
	ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &setgen, 1), CKR_ATTRIBUTE_READ_ONLY);
	ck_assert_int_eq(try_sign(h, KT_EC, priv, sig, &len), CKR_OK);
	ul = attr_bytes(h, priv, CKA_UNIQUE_ID, uid, sizeof(uid));

	t0 = now_unix();
	ck_assert_int_eq(admin()->EV_RotateKey(h, priv, &got), CKR_OK);
	t1 = now_unix();
	check_rotated_pair(h, KT_EC, "web", pub, priv, t0, t1, GRACE_DEFAULT, &npub, &npriv);
	ck_assert_uint_eq(got, npriv);
	ck_assert_int_eq(env_sql_long("SELECT count(*) FROM attestlog WHERE accepted = 1 AND "
				      "purpose = 'rotate'"),
	    1);

	/* The new generation keeps the old one's attributes, with a new CKA_UNIQUE_ID. */
	ck_assert_uint_eq(attr_bytes(h, npriv, CKA_ALLOWED_MECHANISMS, buf, sizeof(buf)),
	    sizeof(allowed));
	ck_assert_mem_eq(buf, allowed, sizeof(allowed));
	ck_assert_uint_eq(attr_bytes(h, npriv, CKA_SUBJECT, buf, sizeof(buf)),
	    sizeof(subject) - 1);
	ck_assert_mem_eq(buf, subject, sizeof(subject) - 1);
	ck_assert_int_eq(attr_bool(h, npriv, CKA_EXTRACTABLE), CK_FALSE);
	ck_assert_int_eq(attr_bool(h, npriv, CKA_SIGN), CK_TRUE);
	ck_assert_int_eq(attr_bool(h, npriv, CKA_TOKEN), CK_TRUE);
	ck_assert_int_eq(attr_bool(h, npub, CKA_VERIFY), CK_TRUE);
	nul = attr_bytes(h, npriv, CKA_UNIQUE_ID, nuid, sizeof(nuid));
	ck_assert(ul != nul || memcmp(uid, nuid, ul) != 0);
	ck_assert_int_eq(F->C_SignInit(h, &raw, npriv), CKR_MECHANISM_INVALID);

	/* The old private key never signs again; its public key still verifies what it signed. */
	ck_assert_int_eq(F->C_SignInit(h, &m, priv), CKR_KEY_FUNCTION_NOT_PERMITTED);
	ck_assert_int_eq(F->C_SignInit(h2, &m, priv), CKR_KEY_FUNCTION_NOT_PERMITTED);
	ck_assert_int_eq(try_verify(h, KT_EC, pub, sig, 64), CKR_OK);
	/* The new one signs, and OpenSSL verifies with the new public key (not the old one). */
	ck_assert_int_eq(try_sign(h, KT_EC, npriv, nsig, &nlen), CKR_OK);
	ck_assert(ossl_verifies(h, KT_EC, npub, nsig, nlen));
	ck_assert(!ossl_verifies(h, KT_EC, pub, nsig, nlen));
	ck_assert_int_eq(try_verify(h, KT_EC, npub, nsig, nlen), CKR_OK);

	/* Retired generations are found only by naming CKA_EV_GENERATION. */
	ck_assert_uint_eq(find(h, retired_t, 2, found, 16), 0);

	/* A retired generation is not rotated again, nor copied. */
	ck_assert_int_eq(admin()->EV_RotateKey(h, priv, &got), CKR_KEY_FUNCTION_NOT_PERMITTED);
	ck_assert_int_eq(admin()->EV_RotateKey(h, pub, &got), CKR_KEY_FUNCTION_NOT_PERMITTED);
	ck_assert_int_eq(F->C_CopyObject(h, priv, ct, 2, &copy), CKR_ACTION_PROHIBITED);
	ck_assert_int_eq(F->C_CopyObject(h, pub, ct, 2, &copy), CKR_ACTION_PROHIBITED);
	ck_assert_uint_eq(find_label(h, "web", 2, found, 16), 2);
	ck_assert_uint_eq(find_label(h, "copy", 0, found, 16), 0);

	/* The next rotation makes generation 3 of the new one. */
	ck_assert_int_eq(admin()->EV_RotateKey(h, npriv, &got), CKR_OK);
	ck_assert_uint_eq(attr_ulong(h, got, CKA_EV_GENERATION), 3);
	ck_assert_int_eq(attr_bool(h, npriv, CKA_EV_RETIRED), CK_TRUE);
	signs(h, KT_EC, got, find_one(h, "web", CKO_PUBLIC_KEY, 0));
	ck_assert_uint_eq(find_label(h, "web", 1, found, 16), 2);
	ck_assert_uint_eq(find_label(h, "web", 2, found, 16), 2);
	ck_assert_uint_eq(find_label(h, "web", 3, found, 16), 2);
	ck_assert_uint_eq(find_label(h, "web", 0, found, 16), 2);
}
END_TEST

/*
 * Operations begun before a rotation: a retired key never signs or
 * encrypts, so one under way is refused at its next call; verification
 * and decryption may finish.
 */
START_TEST(test_rotate_operation_under_way)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h, hs, he, hv, hd;
	CK_OBJECT_HANDLE pub, priv, k;
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_BYTE iv[12] = { 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4 };
	CK_GCM_PARAMS gp = { iv, sizeof(iv), 96, NULL, 0, 128 };
	CK_MECHANISM gcm = { CKM_AES_GCM, &gp, sizeof(gp) };
	CK_BYTE sig[64], buf[128], ct[64];
	CK_ULONG len = sizeof(sig), blen, ctlen;
	CK_RV rs, re;

	env_init();
	h = attested_zone("underway", &z);
	hs = env_session(z, 0, 1);
	he = env_session(z, 0, 1);
	hv = env_session(z, 0, 1);
	hd = env_session(z, 0, 1);
	gen_pair(h, KT_EC, "busy", &pub, &priv);
	k = gen_aes(h, "busy-aes");
	ck_assert_int_eq(try_sign(h, KT_EC, priv, sig, &len), CKR_OK);
	ck_assert_int_eq(aes_seal(h, k, ct, &ctlen), CKR_OK);

	ck_assert_int_eq(F->C_SignInit(hs, &m, priv), CKR_OK);
	ck_assert_int_eq(F->C_EncryptInit(he, &gcm, k), CKR_OK);
	ck_assert_int_eq(F->C_VerifyInit(hv, &m, pub), CKR_OK);
	ck_assert_int_eq(F->C_DecryptInit(hd, &gcm, k), CKR_OK);
	ck_assert_int_eq(admin()->EV_RotateKey(h, priv, NULL), CKR_OK);
	ck_assert_int_eq(admin()->EV_RotateKey(h, k, NULL), CKR_OK);

	ck_assert_int_eq(F->C_Verify(hv, (CK_BYTE *)MSG, strlen(MSG), sig, len), CKR_OK);
	blen = sizeof(buf);
	ck_assert_int_eq(F->C_Decrypt(hd, ct, ctlen, buf, &blen), CKR_OK);
	ck_assert_uint_eq(blen, strlen(MSG));
	ck_assert_mem_eq(buf, MSG, blen);
	blen = sizeof(buf);
	rs = F->C_Sign(hs, (CK_BYTE *)MSG, strlen(MSG), buf, &blen);
	blen = sizeof(buf);
	re = F->C_Encrypt(he, (CK_BYTE *)MSG, strlen(MSG), buf, &blen);
	ck_assert_msg(rs == CKR_KEY_FUNCTION_NOT_PERMITTED && re == CKR_KEY_FUNCTION_NOT_PERMITTED,
	    "begun before the rotation: C_Sign 0x%lx, C_Encrypt 0x%lx; expected 0x%lx for both",
	    rs, re, CKR_KEY_FUNCTION_NOT_PERMITTED);
	blen = sizeof(buf);
	ck_assert_int_eq(F->C_Sign(hs, (CK_BYTE *)MSG, strlen(MSG), buf, &blen),
	    CKR_OPERATION_NOT_INITIALIZED);
}
END_TEST

START_TEST(test_rotate_rsa_pair)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv, npub, npriv, got = 0;
	CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	CK_BYTE sig[512], mod[512], nmod[512];
	CK_ULONG len = sizeof(sig), ml, nml;
	long long t0, t1;

	env_init();
	h = attested_zone("rsa", &z);
	gen_pair(h, KT_RSA, "rsa", &pub, &priv);
	ck_assert_int_eq(try_sign(h, KT_RSA, priv, sig, &len), CKR_OK);
	ml = attr_bytes(h, pub, CKA_MODULUS, mod, sizeof(mod));

	t0 = now_unix();
	ck_assert_int_eq(admin()->EV_RotateKey(h, priv, &got), CKR_OK);
	t1 = now_unix();
	check_rotated_pair(h, KT_RSA, "rsa", pub, priv, t0, t1, GRACE_DEFAULT, &npub, &npriv);
	ck_assert_uint_eq(got, npriv);
	nml = attr_bytes(h, npub, CKA_MODULUS, nmod, sizeof(nmod));
	ck_assert_uint_eq(ml, 256);
	ck_assert_uint_eq(nml, 256);
	ck_assert(memcmp(mod, nmod, 256) != 0);

	ck_assert_int_eq(F->C_SignInit(h, &m, priv), CKR_KEY_FUNCTION_NOT_PERMITTED);
	ck_assert_int_eq(try_verify(h, KT_RSA, pub, sig, len), CKR_OK);
	signs(h, KT_RSA, npriv, npub);
}
END_TEST

/* Rotating through the public key handle rotates the pair (Ed25519 here). */
START_TEST(test_rotate_ed25519_by_public_key)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv, npub, npriv, got = 0;
	CK_MECHANISM m = { CKM_EDDSA, NULL, 0 };
	CK_BYTE sig[64];
	CK_ULONG len = sizeof(sig);
	long long t0, t1;

	env_init();
	h = attested_zone("ed", &z);
	gen_pair(h, KT_ED, "edkey", &pub, &priv);
	ck_assert_int_eq(try_sign(h, KT_ED, priv, sig, &len), CKR_OK);
	ck_assert(ossl_verifies(h, KT_ED, pub, sig, len));

	t0 = now_unix();
	ck_assert_int_eq(admin()->EV_RotateKey(h, pub, &got), CKR_OK);
	t1 = now_unix();
	check_rotated_pair(h, KT_ED, "edkey", pub, priv, t0, t1, GRACE_DEFAULT, &npub, &npriv);
	ck_assert_uint_eq(got, npub);
	ck_assert_uint_eq(attr_ulong(h, got, CKA_CLASS), CKO_PUBLIC_KEY);

	ck_assert_int_eq(F->C_SignInit(h, &m, priv), CKR_KEY_FUNCTION_NOT_PERMITTED);
	ck_assert_int_eq(try_verify(h, KT_ED, pub, sig, len), CKR_OK);
	signs(h, KT_ED, npriv, npub);
}
END_TEST

START_TEST(test_rotate_aes)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE k, nk = 0, found[16];
	CK_BYTE ct[64], nct[64], id[64], lab[64];
	CK_ULONG ctlen, nctlen, n;
	CK_BYTE iv[12] = { 0 };
	CK_GCM_PARAMS p = { iv, sizeof(iv), 96, NULL, 0, 128 };
	CK_MECHANISM m = { CKM_AES_GCM, &p, sizeof(p) };
	long long t0, t1;
	CK_ULONG at;

	env_init();
	h = attested_zone("aes", &z);
	k = gen_aes(h, "vault");
	ck_assert_int_eq(aes_seal(h, k, ct, &ctlen), CKR_OK);

	t0 = now_unix();
	ck_assert_int_eq(admin()->EV_RotateKey(h, k, &nk), CKR_OK);
	t1 = now_unix();
	ck_assert_uint_ne(nk, k);
	n = find_label(h, "vault", 0, found, 16);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(found[0], nk);
	n = find_label(h, "vault", 1, found, 16);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(found[0], k);

	/* The new generation: a new random CKA_ID of 20 bytes, same label and length. */
	ck_assert_uint_eq(attr_bytes(h, nk, CKA_LABEL, lab, sizeof(lab)), 5);
	ck_assert_mem_eq(lab, "vault", 5);
	ck_assert_uint_eq(attr_bytes(h, nk, CKA_ID, id, sizeof(id)), 20);
	ck_assert(memcmp(id, "vault", 5) != 0);
	ck_assert_uint_eq(attr_ulong(h, nk, CKA_VALUE_LEN), 32);
	ck_assert_uint_eq(attr_ulong(h, nk, CKA_KEY_TYPE), CKK_AES);
	ck_assert_uint_eq(attr_ulong(h, nk, CKA_EV_GENERATION), 2);
	ck_assert_int_eq(attr_bool(h, nk, CKA_EV_RETIRED), CK_FALSE);
	ck_assert_int_eq(attr_bool(h, k, CKA_EV_RETIRED), CK_TRUE);
	at = attr_ulong(h, k, CKA_EV_DESTROY_AT);
	ck_assert(at >= (CK_ULONG)(t0 + GRACE_DEFAULT) && at <= (CK_ULONG)(t1 + GRACE_DEFAULT));

	/* The old key decrypts during its grace period, never encrypts. */
	ck_assert_int_eq(F->C_EncryptInit(h, &m, k), CKR_KEY_FUNCTION_NOT_PERMITTED);
	ck_assert_int_eq(aes_open(h, k, ct, ctlen), CKR_OK);
	/* The new key has new material. */
	ck_assert_int_eq(aes_seal(h, nk, nct, &nctlen), CKR_OK);
	ck_assert_int_eq(aes_open(h, nk, nct, nctlen), CKR_OK);
	/* Each key's ciphertext does not authenticate under the other. */
	ck_assert_int_eq(aes_open(h, k, nct, nctlen), CKR_ENCRYPTED_DATA_INVALID);
	ck_assert_int_eq(aes_open(h, nk, ct, ctlen), CKR_ENCRYPTED_DATA_INVALID);
}
END_TEST

/*
 * A retired generation's material never leaves, during its grace period
 * either: not wrapped, not read out, not digested. Each worked before the
 * rotation, and works with the new generation.
 */
START_TEST(test_retired_material_stays)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE k, nk = 0, w;
	CK_ATTRIBUTE readable[] = {
		{ CKA_SENSITIVE, &no, sizeof(no) },
		{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE wrapper[] = { { CKA_WRAP, &yes, sizeof(yes) } };
	CK_MECHANISM kw = { CKM_AES_KEY_WRAP, NULL, 0 };
	CK_MECHANISM sha = { CKM_SHA256, NULL, 0 };
	CK_BYTE val[64], nval[64], wrapped[64], dg[32];
	CK_ATTRIBUTE va = { CKA_VALUE, val, sizeof(val) };
	CK_ULONG wlen, dlen;

	env_init();
	h = attested_zone("material", &z);
	k = gen_aes_x(h, "readable", CK_TRUE, readable, 2);
	w = gen_aes_x(h, "wrapper", CK_TRUE, wrapper, 1);

	/* The current generation: wrapped, read out, digested. */
	wlen = sizeof(wrapped);
	ck_assert_int_eq(F->C_WrapKey(h, &kw, w, k, wrapped, &wlen), CKR_OK);
	ck_assert_uint_eq(wlen, 40);
	ck_assert_int_eq(F->C_GetAttributeValue(h, k, &va, 1), CKR_OK);
	ck_assert_uint_eq(va.ulValueLen, 32);
	ck_assert_int_eq(F->C_DigestInit(h, &sha), CKR_OK);
	ck_assert_int_eq(F->C_DigestKey(h, k), CKR_OK);
	dlen = sizeof(dg);
	ck_assert_int_eq(F->C_DigestFinal(h, dg, &dlen), CKR_OK);

	ck_assert_int_eq(admin()->EV_RotateKey(h, k, &nk), CKR_OK);
	ck_assert_int_eq(attr_bool(h, k, CKA_EV_RETIRED), CK_TRUE);
	ck_assert_uint_gt(attr_ulong(h, k, CKA_EV_DESTROY_AT), (CK_ULONG)now_unix());

	/* Retired, within its grace period: none of it. */
	wlen = sizeof(wrapped);
	ck_assert_int_eq(F->C_WrapKey(h, &kw, w, k, wrapped, &wlen), CKR_KEY_NOT_WRAPPABLE);
	wlen = 0;
	ck_assert_int_eq(F->C_WrapKey(h, &kw, w, k, NULL, &wlen), CKR_KEY_NOT_WRAPPABLE);
	va.pValue = nval;
	va.ulValueLen = sizeof(nval);
	ck_assert_int_eq(F->C_GetAttributeValue(h, k, &va, 1), CKR_ATTRIBUTE_SENSITIVE);
	ck_assert_uint_eq(va.ulValueLen, CK_UNAVAILABLE_INFORMATION);
	va.pValue = NULL;
	va.ulValueLen = 0;
	ck_assert_int_eq(F->C_GetAttributeValue(h, k, &va, 1), CKR_ATTRIBUTE_SENSITIVE);
	ck_assert_uint_eq(va.ulValueLen, CK_UNAVAILABLE_INFORMATION);
	ck_assert_int_eq(F->C_DigestInit(h, &sha), CKR_OK);
	ck_assert_int_eq(F->C_DigestKey(h, k), CKR_KEY_INDIGESTIBLE);

	/* The new generation keeps the attributes that allow it, with new material. */
	wlen = sizeof(wrapped);
	ck_assert_int_eq(F->C_WrapKey(h, &kw, w, nk, wrapped, &wlen), CKR_OK);
	va.pValue = nval;
	va.ulValueLen = sizeof(nval);
	ck_assert_int_eq(F->C_GetAttributeValue(h, nk, &va, 1), CKR_OK);
	ck_assert_uint_eq(va.ulValueLen, 32);
	ck_assert(memcmp(val, nval, 32) != 0);
	ck_assert_int_eq(F->C_DigestInit(h, &sha), CKR_OK);
	ck_assert_int_eq(F->C_DigestKey(h, nk), CKR_OK);
	dlen = sizeof(dg);
	ck_assert_int_eq(F->C_DigestFinal(h, dg, &dlen), CKR_OK);
}
END_TEST

/* Objects that do not rotate: a session pair, a public key alone, a data object, a copy of priv. */
struct unrotatable {
	CK_OBJECT_HANDLE spub, spriv, lpub, data, copy;
};

static void
make_unrotatable(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE priv, struct unrotatable *u)
{
	CK_OBJECT_CLASS dc = CKO_DATA;
	CK_ATTRIBUTE dt[] = {
		{ CKA_CLASS, &dc, sizeof(dc) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_LABEL, "data", 4 },
		{ CKA_VALUE, "some data", 9 },
	};
	CK_ATTRIBUTE ct[] = { { CKA_LABEL, "copy", 4 }, { CKA_TOKEN, &yes, sizeof(yes) } };
	CK_OBJECT_HANDLE lpriv;

	gen_pair_x(h, KT_EC, "session", CK_FALSE, NULL, 0, &u->spub, &u->spriv);
	gen_pair(h, KT_EC, "lonely", &u->lpub, &lpriv);
	ck_assert_int_eq(F->C_DestroyObject(h, lpriv), CKR_OK);
	ck_assert_int_eq(F->C_CreateObject(h, dt, 4, &u->data), CKR_OK);
	ck_assert_int_eq(F->C_CopyObject(h, priv, ct, 2, &u->copy), CKR_OK);
}

START_TEST(test_rotate_errors)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h, ro, pub_s;
	CK_OBJECT_HANDLE pub, priv, spriv, lpub, copy, data, got = 0;
	struct unrotatable u;
	CK_ULONG five = 5;
	CK_ATTRIBUTE with_gen[] = { { CKA_EV_GENERATION, &five, sizeof(five) } };
	CK_ATTRIBUTE with_retired[] = { { CKA_EV_RETIRED, &yes, sizeof(yes) } };
	CK_ATTRIBUTE with_destroy[] = { { CKA_EV_DESTROY_AT, &five, sizeof(five) } };
	CK_OBJECT_HANDLE opub, opriv, x, found[16];
	long rot0;

	env_init();
	z = env_new_zone("errors");
	good_evidence(z);

	/* Not logged in (read/write session). */
	pub_s = env_session(z, 1, 0);
	h = env_session(z, 1, 1);
	gen_pair(h, KT_EC, "key", &pub, &priv);
	make_unrotatable(h, priv, &u);
	spriv = u.spriv;
	lpub = u.lpub;
	data = u.data;
	copy = u.copy;

	/* The generation attributes are the module's to set. */
	ck_assert_int_eq(F->C_CopyObject(h, priv, with_gen, 1, &x), CKR_ATTRIBUTE_READ_ONLY);
	ck_assert_int_eq(F->C_CopyObject(h, priv, with_retired, 1, &x), CKR_ATTRIBUTE_READ_ONLY);
	ck_assert_int_eq(F->C_SetAttributeValue(h, priv, with_retired, 1), CKR_ATTRIBUTE_READ_ONLY);
	ck_assert_int_eq(F->C_SetAttributeValue(h, priv, with_destroy, 1),
	    CKR_ATTRIBUTE_READ_ONLY);
	{
		CK_MECHANISM kg = { CKM_AES_KEY_GEN, NULL, 0 };
		CK_ULONG klen = 32;
		CK_ATTRIBUTE t[] = {
			{ CKA_VALUE_LEN, &klen, sizeof(klen) },
			{ CKA_EV_GENERATION, &five, sizeof(five) },
		};

		ck_assert_int_eq(F->C_GenerateKey(h, &kg, t, 2, &x), CKR_ATTRIBUTE_READ_ONLY);
	}

	/* A read-only session of the logged-in user. */
	ro = env_session(z, 0, 0);
	ck_assert_int_eq(admin()->EV_RotateKey(ro, priv, &got), CKR_SESSION_READ_ONLY);
	ck_assert_int_eq(admin()->EV_RotateKey(h, spriv, &got), CKR_KEY_FUNCTION_NOT_PERMITTED);
	ck_assert_int_eq(admin()->EV_RotateKey(h, copy, &got), CKR_KEY_FUNCTION_NOT_PERMITTED);
	ck_assert_int_eq(admin()->EV_RotateKey(h, lpub, &got), CKR_KEY_FUNCTION_NOT_PERMITTED);
	ck_assert_int_eq(admin()->EV_RotateKey(h, data, &got), CKR_KEY_HANDLE_INVALID);
	ck_assert_int_eq(admin()->EV_RotateKey(h, 0x7fff0000UL, &got), CKR_KEY_HANDLE_INVALID);

	/* No evidence: refused and recorded, in a zone whose login is not gated. */
	rot0 = refusals_for("rotate");
	no_evidence();
	ck_assert_int_eq(admin()->EV_RotateKey(h, priv, &got), CKR_FUNCTION_REJECTED);
	ck_assert_int_eq(refusals_for("rotate"), rot0 + 1);
	{
		long long now = now_unix();
		char zs[32];

		snprintf(zs, sizeof(zs), "%lu", (unsigned long)z);
		put_evidence(zs, now - 120, now - 60, NULL);
	}
	ck_assert_int_eq(admin()->EV_RotateKey(h, priv, &got), CKR_FUNCTION_REJECTED);
	ck_assert_int_eq(refusals_for("rotate"), rot0 + 2);
	/* Nothing rotated. */
	ck_assert_uint_eq(attr_ulong(h, priv, CKA_EV_GENERATION), 1);
	ck_assert_int_eq(attr_bool(h, priv, CKA_EV_RETIRED), CK_FALSE);
	ck_assert_uint_eq(find_label(h, "key", 0, (CK_OBJECT_HANDLE[16]){ 0 }, 16), 2);
	signs(h, KT_EC, priv, pub);

	/* Logged out: the user is needed. */
	good_evidence(z);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	ck_assert_int_eq(admin()->EV_RotateKey(pub_s, priv, &got), CKR_USER_NOT_LOGGED_IN);
	ck_assert_int_eq(admin()->EV_RotateKey(pub_s, pub, &got), CKR_USER_NOT_LOGGED_IN);

	/* With all that put right, it rotates. */
	ck_assert_int_eq(login_user(h), CKR_OK);
	ck_assert_int_eq(admin()->EV_RotateKey(h, priv, NULL), CKR_OK);
	ck_assert_int_eq(attr_bool(h, priv, CKA_EV_RETIRED), CK_TRUE);

	/* A private key whose public key is gone rotates alone. */
	gen_pair(h, KT_EC, "orphan", &opub, &opriv);
	ck_assert_int_eq(F->C_DestroyObject(h, opub), CKR_OK);
	ck_assert_int_eq(admin()->EV_RotateKey(h, opriv, &got), CKR_OK);
	ck_assert_uint_eq(find_label(h, "orphan", 0, found, 16), 1);
	ck_assert_uint_eq(found[0], got);
	ck_assert_uint_eq(attr_ulong(h, got, CKA_CLASS), CKO_PRIVATE_KEY);
	ck_assert_uint_eq(attr_ulong(h, got, CKA_EV_GENERATION), 2);
	{
		CK_BYTE sig[64];
		CK_ULONG len = sizeof(sig);

		ck_assert_int_eq(try_sign(h, KT_EC, got, sig, &len), CKR_OK);
	}
}
END_TEST

/* 5. Grace periods. */

START_TEST(test_grace_period_ends)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv, npub, npriv, got = 0, found[16];
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_BYTE sig[64];
	CK_ULONG len = sizeof(sig);
	CK_ULONG at;
	long long t0, t1;
	double end;

	conf("[policy]\ngrace_period = " EV_STR(WINDOW) "\n");
	env_init();
	h = attested_zone("grace", &z);
	gen_pair(h, KT_EC, "short", &pub, &priv);
	ck_assert_int_eq(try_sign(h, KT_EC, priv, sig, &len), CKR_OK);
	t0 = second_start();
	ck_assert_int_eq(admin()->EV_RotateKey(h, priv, &got), CKR_OK);
	t1 = now_unix();
	check_rotated_pair(h, KT_EC, "short", pub, priv, t0, t1, WINDOW, &npub, &npriv);
	ck_assert_int_eq(try_verify(h, KT_EC, pub, sig, len), CKR_OK);
	at = attr_ulong(h, pub, CKA_EV_DESTROY_AT);
	ck_assert_msg(now_unix() < (long long)at, "the checks took longer than the grace period");

	/* Past the grace period the watcher destroys them, with no call to the module. */
	sleep_until((long long)at + 1);
	end = now_s() + DEADLINE;
	while ((stored(priv) != 0 || stored(pub) != 0) && now_s() < end)
		nap_ms(100);
	ck_assert_msg(stored(priv) == 0 && stored(pub) == 0,
	    "retired objects still in the store %d s after their grace period ended", DEADLINE);
	/* This process learns of it from its watcher, soon. */
	end = now_s() + DEADLINE;
	while (get_label(h, priv) == CKR_OK && now_s() < end)
		nap_ms(50);

	ck_assert_int_eq(get_label(h, priv), CKR_OBJECT_HANDLE_INVALID);
	ck_assert_int_eq(get_label(h, pub), CKR_OBJECT_HANDLE_INVALID);
	ck_assert_int_eq(F->C_SignInit(h, &m, priv), CKR_KEY_HANDLE_INVALID);
	ck_assert_int_eq(try_verify(h, KT_EC, pub, sig, len), CKR_KEY_HANDLE_INVALID);
	ck_assert_uint_eq(find_label(h, "short", 1, found, 16), 0);
	ck_assert_uint_eq(find_label(h, "short", 0, found, 16), 2);
	signs(h, KT_EC, npriv, npub);
}
END_TEST

START_TEST(test_grace_period_zero)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv, k, nk = 0, got = 0, found[16];
	CK_BYTE sig[64], ct[64];
	CK_ULONG len = sizeof(sig), ctlen;
	CK_RV rv[3];
	int i;

	conf("[policy]\ngrace_period = 0\n");
	env_init();
	h = attested_zone("nograce", &z);
	gen_pair(h, KT_EC, "now", &pub, &priv);
	k = gen_aes(h, "now-aes");
	ck_assert_int_eq(try_sign(h, KT_EC, priv, sig, &len), CKR_OK);
	ck_assert_int_eq(aes_seal(h, k, ct, &ctlen), CKR_OK);
	ck_assert_int_eq(admin()->EV_RotateKey(h, priv, &got), CKR_OK);
	ck_assert_int_eq(admin()->EV_RotateKey(h, k, &nk), CKR_OK);

	/* Unusable at once: destroyed by the rotation itself, before it returned. */
	ck_assert_int_eq(stored(priv), 0);
	ck_assert_int_eq(stored(pub), 0);
	ck_assert_int_eq(stored(k), 0);
	rv[0] = try_verify(h, KT_EC, pub, sig, len);
	rv[1] = aes_open(h, k, ct, ctlen);
	rv[2] = get_label(h, priv);
	ck_assert_msg(rv[0] == CKR_KEY_HANDLE_INVALID && rv[1] == CKR_KEY_HANDLE_INVALID &&
		rv[2] == CKR_OBJECT_HANDLE_INVALID,
	    "old generation destroyed by EV_RotateKey (grace 0), but this process still has it: "
	    "C_VerifyInit 0x%lx, C_DecryptInit 0x%lx (expected 0x%lx), C_GetAttributeValue 0x%lx "
	    "(expected 0x%lx)",
	    rv[0], rv[1], CKR_KEY_HANDLE_INVALID, rv[2], CKR_OBJECT_HANDLE_INVALID);
	ck_assert_uint_eq(find_label(h, "now", 1, found, 16), 0);
	signs(h, KT_EC, got, find_one(h, "now", CKO_PUBLIC_KEY, 0));
	ck_assert_int_eq(aes_roundtrip(h, nk), CKR_OK);

	/* Every time: the rotation's own sweep and the watcher's must not leave a gap. */
	for (i = 0; i < 40; i++) {
		k = nk;
		ck_assert_int_eq(aes_seal(h, k, ct, &ctlen), CKR_OK);
		ck_assert_int_eq(admin()->EV_RotateKey(h, k, &nk), CKR_OK);
		rv[0] = aes_open(h, k, ct, ctlen);
		rv[1] = get_label(h, k);
		ck_assert_int_eq(stored(k), 0);
		ck_assert_msg(rv[0] == CKR_KEY_HANDLE_INVALID && rv[1] == CKR_OBJECT_HANDLE_INVALID,
		    "rotation %d with grace 0: the old key is out of the store, yet C_DecryptInit "
		    "0x%lx (expected 0x%lx), C_GetAttributeValue 0x%lx (expected 0x%lx)",
		    i, rv[0], CKR_KEY_HANDLE_INVALID, rv[1], CKR_OBJECT_HANDLE_INVALID);
	}
}
END_TEST

/*
 * Past its grace period a retired generation is unusable at once, before
 * anything destroys it: here no watcher runs (the application forbids
 * threads) and no rotation or C_Initialize sweeps after the rotations.
 */
START_TEST(test_past_grace_no_sweep)
{
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK |
		CKF_LIBRARY_CANT_CREATE_OS_THREADS };
	CK_ATTRIBUTE readable[] = {
		{ CKA_SENSITIVE, &no, sizeof(no) },
		{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
	};
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv, k, npriv = 0, nk = 0;
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_BYTE iv[12] = { 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4 };
	CK_GCM_PARAMS gp = { iv, sizeof(iv), 96, NULL, 0, 128 };
	CK_MECHANISM gcm = { CKM_AES_GCM, &gp, sizeof(gp) };
	CK_BYTE sig[64], ct[64], val[64];
	CK_ATTRIBUTE va = { CKA_VALUE, val, sizeof(val) };
	CK_ULONG len = sizeof(sig), ctlen, at, kat;
	long long t;

	conf("[policy]\ngrace_period = 2\n");
	ck_assert_int_eq(F->C_Initialize(&args), CKR_OK);
	h = attested_zone("late", &z);
	gen_pair(h, KT_EC, "late", &pub, &priv);
	k = gen_aes_x(h, "late-aes", CK_TRUE, readable, 2);
	ck_assert_int_eq(try_sign(h, KT_EC, priv, sig, &len), CKR_OK);
	ck_assert_int_eq(aes_seal(h, k, ct, &ctlen), CKR_OK);

	/* Both rotations within the grace period: the second's sweep finds nothing due. */
	t = second_start();
	ck_assert_int_eq(admin()->EV_RotateKey(h, priv, &npriv), CKR_OK);
	ck_assert_int_eq(admin()->EV_RotateKey(h, k, &nk), CKR_OK);
	ck_assert_msg(now_unix() <= t + 1, "two rotations took over a second");
	at = attr_ulong(h, pub, CKA_EV_DESTROY_AT);
	ck_assert_uint_eq(at, (CK_ULONG)(t + 2));
	kat = attr_ulong(h, k, CKA_EV_DESTROY_AT);
	ck_assert(kat == at || kat == at + 1);

	/* Past both grace periods. */
	sleep_until((long long)kat + 1);
	/* Not swept: still in the store, and this process still has the objects. */
	ck_assert_int_eq(stored(pub), 1);
	ck_assert_int_eq(stored(k), 1);
	ck_assert_int_eq(get_label(h, pub), CKR_OK);
	ck_assert_int_eq(get_label(h, k), CKR_OK);

	/* Yet unusable: what a retired key may do in its grace period, it may not now. */
	ck_assert_int_eq(F->C_VerifyInit(h, &m, pub), CKR_KEY_FUNCTION_NOT_PERMITTED);
	ck_assert_int_eq(F->C_DecryptInit(h, &gcm, k), CKR_KEY_FUNCTION_NOT_PERMITTED);
	ck_assert_int_eq(F->C_SignInit(h, &m, priv), CKR_KEY_FUNCTION_NOT_PERMITTED);
	ck_assert_int_eq(F->C_EncryptInit(h, &gcm, k), CKR_KEY_FUNCTION_NOT_PERMITTED);
	ck_assert_int_eq(F->C_GetAttributeValue(h, k, &va, 1), CKR_ATTRIBUTE_SENSITIVE);
	ck_assert_uint_eq(va.ulValueLen, CK_UNAVAILABLE_INFORMATION);
	/* The new generations work. */
	signs(h, KT_EC, npriv, find_one(h, "late", CKO_PUBLIC_KEY, 0));
	ck_assert_int_eq(aes_roundtrip(h, nk), CKR_OK);

	/* The next C_Initialize sweeps them. */
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	ck_assert_int_eq(F->C_Initialize(&args), CKR_OK);
	ck_assert_int_eq(stored(pub), 0);
	ck_assert_int_eq(stored(priv), 0);
	ck_assert_int_eq(stored(k), 0);
}
END_TEST

/* 6. Rotation candidates. */

/* The candidates, asserted CKR_OK by the two-call convention; their number. */
static CK_ULONG
candidates(CK_SESSION_HANDLE h, CK_ULONG which, CK_OBJECT_HANDLE *out, CK_ULONG cap)
{
	CK_ULONG n = 12345, m;

	ck_assert_int_eq(admin()->EV_RotationCandidates(h, which, NULL, &n), CKR_OK);
	ck_assert_uint_le(n, cap);
	m = n;
	ck_assert_int_eq(admin()->EV_RotationCandidates(h, which, out, &m), CKR_OK);
	ck_assert_uint_eq(m, n);
	return n;
}

START_TEST(test_rotation_candidates)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE apub, apriv, rpub, rpriv, spub, spriv, s, ss, copy, nr = 0, v[16];
	CK_ATTRIBUTE ct[] = { { CKA_LABEL, "copy", 4 }, { CKA_TOKEN, &yes, sizeof(yes) } };
	CK_ULONG n, m;
	long long t, t_made;

	conf("[policy]\nrotation_period = " EV_STR(WINDOW) "\n");
	env_init();
	h = attested_zone("candidates", &z);
	t = second_start();
	gen_pair(h, KT_EC, "a", &apub, &apriv);
	gen_pair(h, KT_EC, "r", &rpub, &rpriv);
	gen_pair_x(h, KT_EC, "session", CK_FALSE, NULL, 0, &spub, &spriv);
	s = gen_aes(h, "s");
	ss = gen_aes_x(h, "session-aes", CK_FALSE, NULL, 0);
	ck_assert_int_eq(F->C_CopyObject(h, apriv, ct, 2, &copy), CKR_OK);
	ck_assert_int_eq(admin()->EV_RotateKey(h, rpriv, &nr), CKR_OK);
	t_made = now_unix();

	/* Nothing is due yet. */
	ck_assert_uint_eq(candidates(h, EV_ROTATE_DUE, v, 16), 0);
	ck_assert_msg(now_unix() < t + WINDOW, "the set-up took longer than the rotation period");

	/* Every rotatable key: current private and secret token keys, no copies. */
	n = candidates(h, EV_ROTATE_ALL, v, 16);
	ck_assert_uint_eq(n, 3);
	ck_assert(listed(v, n, apriv) && listed(v, n, s) && listed(v, n, nr));
	m = 2;
	ck_assert_int_eq(admin()->EV_RotationCandidates(h, EV_ROTATE_ALL, v, &m),
	    CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(m, 3);
	ck_assert_int_eq(admin()->EV_RotationCandidates(h, 0, v, &m), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(admin()->EV_RotationCandidates(h, 3, v, &m), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(admin()->EV_RotationCandidates(h, EV_ROTATE_ALL, v, NULL),
	    CKR_ARGUMENTS_BAD);

	/* A rotation period after the last key was made, the same keys are due. */
	sleep_until(t_made + WINDOW);
	n = candidates(h, EV_ROTATE_DUE, v, 16);
	ck_assert_uint_eq(n, 3);
	ck_assert(listed(v, n, apriv) && listed(v, n, s) && listed(v, n, nr));
	(void)ss;
	(void)spriv;

	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	m = 16;
	ck_assert_int_eq(admin()->EV_RotationCandidates(h, EV_ROTATE_DUE, v, &m),
	    CKR_USER_NOT_LOGGED_IN);
	m = 16;
	ck_assert_int_eq(admin()->EV_RotationCandidates(h, EV_ROTATE_ALL, NULL, &m),
	    CKR_USER_NOT_LOGGED_IN);
}
END_TEST

/* 7. Automatic rotation at an attested login. */

START_TEST(test_auto_rotation_at_login)
{
	CK_SLOT_ID za, zb;
	CK_SESSION_HANDLE ha, hb;
	CK_OBJECT_HANDLE pub, priv, k, mpub, mpriv, found[16];
	CK_ULONG n, i;
	long long t;
	char *s;

	env_init();
	za = env_new_zone("auto");
	zb = env_new_zone("manual");
	reconf("[policy]\nrequire_attestation = true\nauto_rotate = true\nrotation_period = 1\n"
	       "[zone %lu]\nauto_rotate = false\n",
	    (unsigned long)zb);
	s = fmt("%lu,%lu", (unsigned long)za, (unsigned long)zb);
	good_evidence_for(s);
	free(s);

	ha = env_session(za, 1, 1);
	hb = env_session(zb, 1, 1);
	gen_pair(ha, KT_EC, "auto", &pub, &priv);
	k = gen_aes(ha, "auto-aes");
	gen_pair(hb, KT_EC, "manual", &mpub, &mpriv);
	t = now_unix(); /* every key made by now: due a rotation period later */
	ck_assert_int_eq(F->C_Logout(ha), CKR_OK);
	ck_assert_int_eq(F->C_Logout(hb), CKR_OK);
	sleep_until(t + 2);

	ck_assert_int_eq(login_user(ha), CKR_OK);
	n = find_label(ha, "auto", 0, found, 16);
	ck_assert_uint_eq(n, 2);
	for (i = 0; i < n; i++)
		ck_assert_uint_eq(attr_ulong(ha, found[i], CKA_EV_GENERATION), 2);
	ck_assert(!listed(found, n, priv) && !listed(found, n, pub));
	ck_assert_int_eq(attr_bool(ha, priv, CKA_EV_RETIRED), CK_TRUE);
	ck_assert_int_eq(attr_bool(ha, pub, CKA_EV_RETIRED), CK_TRUE);
	n = find_label(ha, "auto-aes", 0, found, 16);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(attr_ulong(ha, found[0], CKA_EV_GENERATION), 2);
	ck_assert_int_eq(attr_bool(ha, k, CKA_EV_RETIRED), CK_TRUE);
	signs(ha, KT_EC, find_one(ha, "auto", CKO_PRIVATE_KEY, 2),
	    find_one(ha, "auto", CKO_PUBLIC_KEY, 2));

	/* The zone without auto_rotate keeps its keys as they were. */
	ck_assert_int_eq(login_user(hb), CKR_OK);
	n = find_label(hb, "manual", 0, found, 16);
	ck_assert_uint_eq(n, 2);
	ck_assert(listed(found, n, mpriv) && listed(found, n, mpub));
	ck_assert_uint_eq(attr_ulong(hb, mpriv, CKA_EV_GENERATION), 1);
}
END_TEST

/* 8. Two processes. */

struct signer_arg {
	CK_SLOT_ID slot;
	CK_OBJECT_HANDLE priv;
	const char *label;
};

/*
 * Signs with a handle in a loop until refused; then reports: the loop's
 * end, signatures made, what a new search finds, a signature by the new
 * generation, and the first slot event.
 */
static void
kid_rotation_view(int rd, int wr, void *arg)
{
	const struct signer_arg *a = arg;
	CK_SESSION_HANDLE h;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = {
		{ CKA_LABEL, (void *)a->label, strlen(a->label) },
		{ CKA_CLASS, &cls, sizeof(cls) },
	};
	CK_OBJECT_HANDLE found[16], npriv = 0;
	CK_ULONG gen, n = 0, i, gen2 = 0, nsigned = 0, len;
	CK_ATTRIBUTE ga = { CKA_EV_GENERATION, &gen, sizeof(gen) };
	CK_SLOT_ID slot = 0;
	CK_BYTE sig[64];
	double end;
	CK_RV rv = kid_init();

	(void)rd;
	if (rv == CKR_OK)
		rv = kid_session(a->slot, 0, &h);
	len = sizeof(sig);
	if (rv == CKR_OK)
		rv = try_sign(h, KT_EC, a->priv, sig, &len);
	put(wr, rv); /* signing */
	if (rv != CKR_OK)
		_exit(1);
	end = now_s() + CHILD_DEADLINE;
	for (;;) {
		len = sizeof(sig);
		rv = try_sign(h, KT_EC, a->priv, sig, &len);
		if (rv != CKR_OK)
			break;
		nsigned++;
		if (now_s() > end) {
			rv = KID_TIMEOUT;
			break;
		}
	}
	put(wr, rv);
	put(wr, nsigned);

	/* A new search. */
	rv = F->C_FindObjectsInit(h, t, 1);
	if (rv == CKR_OK)
		rv = F->C_FindObjects(h, found, 16, &n);
	(void)F->C_FindObjectsFinal(h);
	for (i = 0; rv == CKR_OK && i < n; i++) {
		rv = F->C_GetAttributeValue(h, found[i], &ga, 1);
		if (rv == CKR_OK && gen == 2)
			gen2++;
	}
	put(wr, rv);
	put(wr, n);
	put(wr, gen2);

	/* The new private key signs. */
	n = 0;
	rv = F->C_FindObjectsInit(h, t, 2);
	if (rv == CKR_OK)
		rv = F->C_FindObjects(h, found, 16, &n);
	(void)F->C_FindObjectsFinal(h);
	if (rv == CKR_OK && n != 1)
		rv = KID_MISMATCH;
	if (rv == CKR_OK) {
		npriv = found[0];
		len = sizeof(sig);
		rv = try_sign(h, KT_EC, npriv, sig, &len);
	}
	put(wr, rv);
	put(wr, npriv);
	put_bytes(wr, sig, rv == CKR_OK ? len : 0);

	/* The slot event. */
	rv = env_poll_slot_event(&slot);
	put(wr, rv);
	put(wr, slot);
	(void)F->C_Finalize(NULL);
	_exit(0);
}

/*
 * What kid_rotation_view reports once its key rotated to npriv (npub):
 * refused at its next use, the new generation found at its next search,
 * and a slot event. Ends the child.
 */
static void
rotation_viewed(struct kid *k, CK_SESSION_HANDLE h, CK_SLOT_ID z, CK_OBJECT_HANDLE npriv,
    CK_OBJECT_HANDLE npub)
{
	CK_BYTE sig[64];
	CK_ULONG len;

	kid_expect(k, CKR_KEY_FUNCTION_NOT_PERMITTED, "child: the signing loop's end");
	(void)kid_get(k); /* signatures made before */
	kid_expect(k, CKR_OK, "child: a new search");
	kid_expect(k, 2, "child: objects found by label");
	kid_expect(k, 2, "child: of generation 2");
	kid_expect(k, CKR_OK, "child: a signature by the new generation");
	kid_expect(k, npriv, "child: the new generation's handle");
	len = kid_get_bytes(k, sig, sizeof(sig));
	ck_assert(ossl_verifies(h, KT_EC, npub, sig, len));
	kid_expect(k, CKR_OK, "child: C_WaitForSlotEvent(CKF_DONT_BLOCK)");
	kid_expect(k, z, "child: the slot of the event");
	kid_done(k);
}

START_TEST(test_rotation_seen_by_other_process)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv, npriv = 0, npub;
	struct signer_arg a;
	struct kid k;

	env_init();
	h = attested_zone("shared", &z);
	gen_pair(h, KT_EC, "shared", &pub, &priv);

	a = (struct signer_arg){ z, priv, "shared" };
	kid_start(&k, kid_rotation_view, &a);
	kid_expect(&k, CKR_OK, "child: set-up and first signature");
	ck_assert_int_eq(admin()->EV_RotateKey(h, priv, &npriv), CKR_OK);
	npub = find_one(h, "shared", CKO_PUBLIC_KEY, 0);

	rotation_viewed(&k, h, z, npriv, npub);
}
END_TEST

/* Several processes rotate one key at once: exactly one succeeds. */

#define RACERS 3

struct race_arg {
	CK_SLOT_ID slot;
	CK_OBJECT_HANDLE priv;
};

static void
kid_rotate_race(int rd, int wr, void *arg)
{
	const struct race_arg *a = arg;
	EV_ADMIN_FUNCTION_LIST *adm;
	CK_SESSION_HANDLE h;
	CK_RV rv = kid_init();

	put(wr, rv);
	if (rv == CKR_OK)
		rv = kid_session(a->slot, 1, &h);
	adm = admin_or_null();
	if (rv == CKR_OK && adm == NULL)
		rv = CKR_FUNCTION_NOT_SUPPORTED;
	put(wr, rv); /* ready */
	if (rv != CKR_OK)
		_exit(1);
	(void)take(rd); /* go */
	rv = adm->EV_RotateKey(h, a->priv, NULL);
	put(wr, rv);
	(void)F->C_Finalize(NULL);
	_exit(0);
}

START_TEST(test_concurrent_rotation)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv, found[16];
	struct race_arg a;
	struct kid k[RACERS];
	CK_RV rv[RACERS + 1];
	int i, ok = 0, refused = 0;
	CK_ULONG n;

	env_init();
	h = attested_zone("race", &z);
	gen_pair(h, KT_EC, "contested", &pub, &priv);
	a = (struct race_arg){ z, priv };
	/* Set up one after the other (only the rotations race). */
	for (i = 0; i < RACERS; i++) {
		kid_start(&k[i], kid_rotate_race, &a);
		kid_expect(&k[i], CKR_OK, "racer: C_Initialize");
		kid_expect(&k[i], CKR_OK, "racer: C_OpenSession and C_Login");
	}
	for (i = 0; i < RACERS; i++)
		kid_put(&k[i], 1);
	rv[RACERS] = admin()->EV_RotateKey(h, priv, NULL);
	for (i = 0; i < RACERS; i++) {
		rv[i] = kid_get(&k[i]);
		kid_done(&k[i]);
	}
	for (i = 0; i <= RACERS; i++) {
		ok += rv[i] == CKR_OK;
		refused += rv[i] == CKR_KEY_FUNCTION_NOT_PERMITTED;
	}
	ck_assert_msg(ok == 1 && refused == RACERS,
	    "EV_RotateKey of one key by %d processes at once: 0x%lx 0x%lx 0x%lx 0x%lx", RACERS + 1,
	    rv[0], rv[1], rv[2], rv[3]);
	n = find_label(h, "contested", 0, found, 16);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(attr_ulong(h, found[0], CKA_EV_GENERATION), 2);
	ck_assert_uint_eq(attr_ulong(h, found[1], CKA_EV_GENERATION), 2);
	ck_assert_uint_eq(find_label(h, "contested", 1, found, 16), 2);
	ck_assert_uint_eq(find_label(h, "contested", 3, found, 16), 0);
	ck_assert_int_eq(sql("SELECT count(*) FROM objects WHERE zone = %lu", (unsigned long)z), 4);
}
END_TEST

/* 9. Zone key rotation. */

struct zone_keys {
	CK_SLOT_ID slot;
	CK_OBJECT_HANDLE p1, k1;    /* an EC pair */
	CK_OBJECT_HANDLE s1;        /* an AES key */
	CK_OBJECT_HANDLE s2, s2new; /* an AES key rotated: the retired one and the new one */
	CK_BYTE sig1[64];           /* by k1 before anything */
	CK_ULONG sig1len;
	CK_BYTE ct2[64];            /* by s2 before its rotation */
	CK_ULONG ct2len;
};

/* Every key works (no assertion: usable in children); the first failure, or CKR_OK. */
static CK_RV
zone_keys_work(CK_SESSION_HANDLE h, const struct zone_keys *zk, CK_BYTE *sig, CK_ULONG *siglen)
{
	CK_RV rv;

	*siglen = 64;
	rv = try_sign(h, KT_EC, zk->k1, sig, siglen);
	if (rv == CKR_OK)
		rv = try_verify(h, KT_EC, zk->p1, zk->sig1, zk->sig1len);
	if (rv == CKR_OK)
		rv = aes_roundtrip(h, zk->s1);
	if (rv == CKR_OK)
		rv = aes_roundtrip(h, zk->s2new);
	if (rv == CKR_OK)
		rv = aes_open(h, zk->s2, zk->ct2, zk->ct2len);
	return rv;
}

/*
 * A new zone (with good evidence) holding the keys of zk, made and used
 * once, s2 rotated; an R/W user session on it.
 */
static CK_SESSION_HANDLE
make_zone_keys(struct zone_keys *zk, const char *zone_label)
{
	CK_SESSION_HANDLE h = attested_zone(zone_label, &zk->slot);

	gen_pair(h, KT_EC, "k1", &zk->p1, &zk->k1);
	zk->s1 = gen_aes(h, "s1");
	zk->s2 = gen_aes(h, "s2");
	zk->sig1len = sizeof(zk->sig1);
	ck_assert_int_eq(try_sign(h, KT_EC, zk->k1, zk->sig1, &zk->sig1len), CKR_OK);
	ck_assert_int_eq(aes_seal(h, zk->s2, zk->ct2, &zk->ct2len), CKR_OK);
	ck_assert_int_eq(admin()->EV_RotateKey(h, zk->s2, &zk->s2new), CKR_OK);
	return h;
}

static void
check_zone_keys(CK_SESSION_HANDLE h, const struct zone_keys *zk, const char *where)
{
	CK_BYTE sig[64];
	CK_ULONG len;
	CK_RV rv = zone_keys_work(h, zk, sig, &len);

	ck_assert_msg(rv == CKR_OK, "%s: a key failed: 0x%lx", where, rv);
	ck_assert(ossl_verifies(h, KT_EC, zk->p1, sig, len));
}

/*
 * In a child, after rv (what came before): every key when rv is CKR_OK;
 * the first failure and k1's new signature to the test, then leave.
 */
static void
kid_zone_keys_report(int wr, CK_SESSION_HANDLE h, const struct zone_keys *zk, CK_RV rv)
{
	CK_BYTE sig[64];
	CK_ULONG len = 0;

	if (rv == CKR_OK)
		rv = zone_keys_work(h, zk, sig, &len);
	put(wr, rv);
	put_bytes(wr, sig, rv == CKR_OK ? len : 0);
	(void)F->C_Finalize(NULL);
	_exit(0);
}

static void
kid_zone_keys(int rd, int wr, void *arg)
{
	const struct zone_keys *zk = arg;
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	CK_RV rv = kid_init();

	(void)rd;
	if (rv == CKR_OK)
		rv = kid_session(zk->slot, 0, &h);
	kid_zone_keys_report(wr, h, zk, rv);
}

/*
 * A process that was using the zone before its key was rotated: k1 signed
 * (its material and the zone key cached), the other keys' objects loaded
 * (their old blobs read) but not opened. After the rotation, every key.
 */
static void
kid_zone_keys_before(int rd, int wr, void *arg)
{
	const struct zone_keys *zk = arg;
	CK_SESSION_HANDLE h;
	CK_BYTE sig[64];
	CK_ULONG len = sizeof(sig);
	CK_RV rv = kid_init();

	if (rv == CKR_OK)
		rv = kid_session(zk->slot, 0, &h);
	if (rv == CKR_OK)
		rv = try_sign(h, KT_EC, zk->k1, sig, &len);
	if (rv == CKR_OK)
		rv = get_label(h, zk->s1);
	if (rv == CKR_OK)
		rv = get_label(h, zk->s2);
	if (rv == CKR_OK)
		rv = get_label(h, zk->s2new);
	put(wr, rv);
	if (rv != CKR_OK)
		_exit(1);
	(void)take(rd); /* the zone key was rotated */
	kid_zone_keys_report(wr, h, zk, CKR_OK);
}

/* Whether no line of before (rows "id:hex") is found in after. */
static int
all_lines_changed(const char *before, const char *after)
{
	char *b = fmt("\n%s", before), *a = fmt("\n%s", after), *line, *save = NULL;
	int ok = 1;

	for (line = strtok_r(b + 1, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *needle = fmt("\n%s\n", line);

		if (strstr(a, needle) != NULL)
			ok = 0;
		free(needle);
	}
	free(a);
	free(b);
	return ok;
}

START_TEST(test_zone_key_rotation)
{
	struct zone_keys zk = { 0 };
	CK_SESSION_HANDLE h, ro;
	CK_ULONG count = 999;
	struct kid k, early;
	CK_BYTE sig[64];
	CK_ULONG len;
	char *q_sealed, *q_blobs, *sealed0, *blobs0, *sealed1, *blobs1, *sealed2;

	env_init();
	h = make_zone_keys(&zk, "rekey");
	check_zone_keys(h, &zk, "before");

	kid_start(&early, kid_zone_keys_before, &zk);
	kid_expect(&early, CKR_OK, "a process started before: set-up");

	q_sealed = fmt("SELECT hex(sealed_key) FROM zones WHERE id = %lu", (unsigned long)zk.slot);
	q_blobs = fmt("SELECT id || ':' || hex(wrapped) FROM objects WHERE zone = %lu AND "
		      "wrapped IS NOT NULL ORDER BY id",
	    (unsigned long)zk.slot);
	sealed0 = env_sql_text(q_sealed);
	blobs0 = env_sql_text(q_blobs);
	ck_assert_uint_gt(strlen(sealed0), 1);

	/* The user may not; a read-only session may not. */
	ck_assert_int_eq(admin()->EV_RotateZoneKey(h, &count), CKR_USER_NOT_LOGGED_IN);
	ro = env_session(zk.slot, 0, 0);
	ck_assert_int_eq(admin()->EV_RotateZoneKey(ro, &count), CKR_SESSION_READ_ONLY);
	ck_assert_int_eq(F->C_CloseSession(ro), CKR_OK);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	ck_assert_int_eq(F->C_Login(h, CKU_SO, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN)), CKR_OK);

	/* The SO without evidence: refused, nothing changed. */
	no_evidence();
	ck_assert_int_eq(admin()->EV_RotateZoneKey(h, &count), CKR_FUNCTION_REJECTED);
	sealed1 = env_sql_text(q_sealed);
	ck_assert_str_eq(sealed1, sealed0);
	free(sealed1);

	/* With evidence: every key wrapped again (k1, s1, s2 retired, s2 new). */
	good_evidence(zk.slot);
	ck_assert_int_eq(admin()->EV_RotateZoneKey(h, &count), CKR_OK);
	ck_assert_uint_eq(count, 4);
	sealed1 = env_sql_text(q_sealed);
	blobs1 = env_sql_text(q_blobs);
	ck_assert_str_ne(sealed1, sealed0);
	ck_assert_uint_gt(strlen(sealed1), 1);
	ck_assert_msg(all_lines_changed(blobs0, blobs1), "a wrapped key did not change:\n%s\n%s",
	    blobs0, blobs1);
	ck_assert_int_eq(admin()->EV_RotateZoneKey(h, NULL), CKR_OK);
	sealed2 = env_sql_text(q_sealed);
	ck_assert_str_ne(sealed2, sealed1);

	/*
	 * Every key still works: in the process that was there before, here,
	 * after a restart, and in a new process.
	 */
	kid_put(&early, 1);
	kid_expect(&early, CKR_OK, "a process started before: every key");
	len = kid_get_bytes(&early, sig, sizeof(sig));
	ck_assert(ossl_verifies(h, KT_EC, zk.p1, sig, len));
	kid_done(&early);

	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	ck_assert_int_eq(login_user(h), CKR_OK);
	check_zone_keys(h, &zk, "this process");
	restart();
	h = env_session(zk.slot, 0, 1);
	check_zone_keys(h, &zk, "after C_Finalize and C_Initialize");
	kid_start(&k, kid_zone_keys, &zk);
	kid_expect(&k, CKR_OK, "another process: every key");
	len = kid_get_bytes(&k, sig, sizeof(sig));
	ck_assert(ossl_verifies(h, KT_EC, zk.p1, sig, len));
	kid_done(&k);

	free(q_sealed);
	free(q_blobs);
	free(sealed0);
	free(blobs0);
	free(sealed1);
	free(blobs1);
	free(sealed2);
}
END_TEST

/*
 * Another process keeps starting afresh (C_Initialize, login, every key,
 * C_Finalize) while the zone key is rotated again and again: no failure.
 */
struct keys_loop_arg {
	const struct zone_keys *zk;
	CK_ULONG *rounds; /* shared: rounds completed */
};

static void
kid_keys_loop(int rd, int wr, void *arg)
{
	const struct keys_loop_arg *a = arg;
	struct pollfd pfd = { rd, POLLIN, 0 };
	CK_SESSION_HANDLE h;
	CK_BYTE sig[64];
	CK_ULONG len;
	double end = now_s() + CHILD_DEADLINE;
	CK_RV rv = CKR_OK;

	put(wr, CKR_OK); /* started */
	while (poll(&pfd, 1, 0) == 0) {
		rv = kid_init();
		if (rv == CKR_OK)
			rv = kid_session(a->zk->slot, 0, &h);
		if (rv == CKR_OK)
			rv = zone_keys_work(h, a->zk, sig, &len);
		(void)F->C_Finalize(NULL);
		if (rv != CKR_OK)
			break;
		counter_add(a->rounds);
		if (now_s() > end) {
			rv = KID_TIMEOUT;
			break;
		}
	}
	put(wr, rv);
	put(wr, counter_get(a->rounds));
	_exit(0);
}

#define BUSY_ROTATIONS 20

START_TEST(test_zone_key_rotation_while_in_use)
{
	struct zone_keys zk = { 0 };
	struct keys_loop_arg a = { &zk, shared_counter() };
	CK_SESSION_HANDLE h, so;
	CK_ULONG count, rounds, after_first, before_last = 0;
	double end;
	struct kid k;
	int i;

	env_init();
	h = make_zone_keys(&zk, "busy");
	ck_assert_int_eq(F->C_CloseSession(h), CKR_OK);

	kid_start(&k, kid_keys_loop, &a);
	kid_expect(&k, CKR_OK, "child: started");
	so = env_session(zk.slot, 1, 0);
	ck_assert_int_eq(F->C_Login(so, CKU_SO, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN)), CKR_OK);
	ck_assert_int_eq(admin()->EV_RotateZoneKey(so, &count), CKR_OK);
	ck_assert_uint_eq(count, 4);
	after_first = counter_get(a.rounds);
	/*
	 * Until the child has completed two rounds after the first rotation
	 * (so one whole round lies between the first and the last), at least
	 * BUSY_ROTATIONS rotations.
	 */
	end = now_s() + CHILD_DEADLINE / 2;
	for (i = 1; i < BUSY_ROTATIONS || before_last < after_first + 2; i++) {
		ck_assert_msg(now_s() < end, "the child completed %lu rounds in %d s of rotations",
		    counter_get(a.rounds) - after_first, CHILD_DEADLINE / 2);
		nap_ms(20);
		before_last = counter_get(a.rounds);
		ck_assert_int_eq(admin()->EV_RotateZoneKey(so, &count), CKR_OK);
		ck_assert_uint_eq(count, 4);
	}
	/* Stop (a child that failed has gone already: its report says why). */
	(void)write_all(k.wr, &(CK_ULONG){ 1 }, sizeof(CK_ULONG));
	kid_expect(&k, CKR_OK, "child: every key, in a loop, while the zone key was rotated");
	rounds = kid_get(&k);
	kid_done(&k);
	fprintf(stderr, "it_rotate: %lu rounds of the child over %d zone key rotations, %lu between "
	    "the first and the start of the last\n", rounds, i, before_last - after_first);
	ck_assert_uint_ge(before_last, after_first + 2);
	munmap(a.rounds, sizeof(CK_ULONG));
}
END_TEST

/*
 * Zone key rotation racing key creation: another process makes token keys
 * while the zone key is rotated again and again; every key it made works
 * afterwards (each blob wrapped under the zone key that was committed).
 */
#define RACE_KEYS 50
#define RACE_ROTATIONS 10

struct maker_arg {
	CK_SLOT_ID slot;
	CK_ULONG *made; /* shared: keys made */
};

/* Makes AES token keys "race-N" until told to stop and RACE_KEYS are made; reports. */
static void
kid_make_keys(int rd, int wr, void *arg)
{
	const struct maker_arg *a = arg;
	struct pollfd pfd = { rd, POLLIN, 0 };
	CK_MECHANISM mech = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_ULONG len = 32, n = 0;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE o;
	char label[32];
	CK_ATTRIBUTE t[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_LABEL, label, 0 },
		{ CKA_VALUE_LEN, &len, sizeof(len) },
		{ CKA_ENCRYPT, &yes, sizeof(yes) },
		{ CKA_DECRYPT, &yes, sizeof(yes) },
	};
	double end = now_s() + CHILD_DEADLINE;
	int stop = 0;
	CK_RV rv = kid_init();

	if (rv == CKR_OK)
		rv = kid_session(a->slot, 1, &h);
	put(wr, rv);
	if (rv != CKR_OK)
		_exit(1);
	while (!stop || n < RACE_KEYS) {
		if (!stop && poll(&pfd, 1, 0) != 0)
			stop = 1;
		snprintf(label, sizeof(label), "race-%03lu", n);
		t[1].ulValueLen = strlen(label);
		rv = F->C_GenerateKey(h, &mech, t, 5, &o);
		if (rv != CKR_OK)
			break;
		n++;
		counter_add(a->made);
		if (now_s() > end) {
			rv = KID_TIMEOUT;
			break;
		}
	}
	put(wr, rv);
	put(wr, n);
	(void)F->C_Finalize(NULL);
	_exit(0);
}

START_TEST(test_zone_key_rotation_racing_creation)
{
	CK_OBJECT_CLASS sk = CKO_SECRET_KEY;
	CK_ATTRIBUTE secret_t[] = { { CKA_CLASS, &sk, sizeof(sk) } };
	CK_OBJECT_HANDLE found[64];
	struct maker_arg a;
	CK_SESSION_HANDLE h, hs, so;
	CK_ULONG count, made, before, during, n, i, mine = 0;
	CK_BYTE label[64];
	CK_ATTRIBUTE la = { CKA_LABEL, label, sizeof(label) };
	struct kid k;
	double end;
	CK_RV rv;
	int r;

	env_init();
	h = attested_zone("racing", &a.slot);
	ck_assert_int_eq(F->C_CloseSession(h), CKR_OK);
	a.made = shared_counter();

	kid_start(&k, kid_make_keys, &a);
	kid_expect(&k, CKR_OK, "child: C_Initialize, C_OpenSession, C_Login");
	so = env_session(a.slot, 1, 0);
	ck_assert_int_eq(F->C_Login(so, CKU_SO, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN)), CKR_OK);
	/*
	 * At least RACE_ROTATIONS rotations, and on until half of RACE_KEYS
	 * were made since the first began; a short pause between two lets the
	 * child's transactions in (SQLite's busy wait backs off).
	 */
	before = counter_get(a.made);
	end = now_s() + CHILD_DEADLINE / 2;
	for (r = 0; r < RACE_ROTATIONS || counter_get(a.made) - before < RACE_KEYS / 2; r++) {
		ck_assert_msg(now_s() < end, "%lu keys made in %d s of zone key rotations",
		    counter_get(a.made) - before, CHILD_DEADLINE / 2);
		rv = admin()->EV_RotateZoneKey(so, &count);
		ck_assert_msg(rv == CKR_OK, "zone key rotation %d, %lu keys made: 0x%lx", r,
		    counter_get(a.made), rv);
		nap_ms(2);
	}
	during = counter_get(a.made) - before;
	/* Stop (a child that failed has gone already: its report says why). */
	(void)write_all(k.wr, &(CK_ULONG){ 1 }, sizeof(CK_ULONG));
	rv = kid_get(&k);
	made = kid_get(&k);
	kid_done(&k);
	ck_assert_msg(rv == CKR_OK, "child: C_GenerateKey of key %lu while the zone key was "
	    "rotated: 0x%lx", made, rv);
	ck_assert_uint_ge(made, RACE_KEYS);
	fprintf(stderr, "it_rotate: %lu keys made, %lu of them during %d zone key rotations\n",
	    made, during, r);

	/* Every key, in a fresh start. */
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_init();
	h = env_session(a.slot, 0, 1);
	/* A search in one session, its keys used in another. */
	hs = env_session(a.slot, 0, 1);
	ck_assert_int_eq(F->C_FindObjectsInit(hs, secret_t, 1), CKR_OK);
	do {
		ck_assert_int_eq(F->C_FindObjects(hs, found, 64, &n), CKR_OK);
		for (i = 0; i < n; i++) {
			la.ulValueLen = sizeof(label);
			ck_assert_int_eq(F->C_GetAttributeValue(h, found[i], &la, 1), CKR_OK);
			if (la.ulValueLen < 5 || memcmp(label, "race-", 5) != 0)
				continue;
			mine++;
			rv = aes_roundtrip(h, found[i]);
			ck_assert_msg(rv == CKR_OK,
			    "key %.*s made while the zone key was rotated: 0x%lx",
			    (int)la.ulValueLen, label, rv);
		}
	} while (n > 0);
	ck_assert_int_eq(F->C_FindObjectsFinal(hs), CKR_OK);
	ck_assert_uint_eq(mine, made);
	munmap(a.made, sizeof(CK_ULONG));
}
END_TEST

/* 10. Zone key rotation killed halfway. */

#define CRASH_EC 60
#define CRASH_AES 40
#define CRASH_ROUNDS 5

/* Rotates the zone key in a loop as the SO; reports the login, then each rotation's code. */
static void
kid_rekey_loop(int rd, int wr, void *arg)
{
	CK_SLOT_ID slot = *(const CK_SLOT_ID *)arg;
	EV_ADMIN_FUNCTION_LIST *a;
	CK_SESSION_HANDLE h;
	CK_ULONG n;
	CK_RV rv = kid_init();

	(void)rd;
	if (rv == CKR_OK)
		rv = F->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h);
	if (rv == CKR_OK)
		rv = F->C_Login(h, CKU_SO, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN));
	a = admin_or_null();
	if (rv == CKR_OK && a == NULL)
		rv = CKR_FUNCTION_NOT_SUPPORTED;
	put(wr, rv);
	if (rv != CKR_OK)
		_exit(1);
	for (;;) {
		rv = a->EV_RotateZoneKey(h, &n);
		put(wr, rv);
		if (rv != CKR_OK)
			_exit(2);
	}
}

/*
 * Each round: a child rotates the zone key again and again; its first two
 * rotations are timed, and the child is killed at a random moment within
 * the shorter of the two after the second, so during the third (begun at
 * once), at any point of it up to its commit. Then every key works, in a
 * fresh start.
 */
START_TEST(test_zone_key_rotation_killed)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub[CRASH_EC], priv[CRASH_EC], aes[CRASH_AES];
	CK_BYTE ct[CRASH_AES][64], sig[64];
	CK_ULONG ctlen[CRASH_AES], len, v, done = 0, later;
	struct kid k;
	char label[32];
	int round, i, st, interrupted = 0;
	double t0, t1, t2, took;
	struct timespec nap;
	long us;
	CK_RV rv;

	env_init();
	h = attested_zone("crash", &z);
	for (i = 0; i < CRASH_EC; i++) {
		snprintf(label, sizeof(label), "ec-%d", i);
		gen_pair(h, KT_EC, label, &pub[i], &priv[i]);
	}
	for (i = 0; i < CRASH_AES; i++) {
		snprintf(label, sizeof(label), "aes-%d", i);
		aes[i] = gen_aes(h, label);
		ck_assert_int_eq(aes_seal(h, aes[i], ct[i], &ctlen[i]), CKR_OK);
	}

	for (round = 0; round < CRASH_ROUNDS; round++) {
		ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
		kid_start(&k, kid_rekey_loop, &z);
		kid_expect(&k, CKR_OK, "child: SO login");
		t0 = now_s();
		kid_expect(&k, CKR_OK, "child: the first zone key rotation");
		t1 = now_s();
		kid_expect(&k, CKR_OK, "child: the second zone key rotation");
		/* The shorter of the two: the first also warms caches up. */
		t2 = now_s();
		took = t2 - t1 < t1 - t0 ? t2 - t1 : t1 - t0;
		us = (long)randombytes_uniform((uint32_t)(took * 1e6) + 1);
		nap = (struct timespec){ us / 1000000, (us % 1000000) * 1000 };
		nanosleep(&nap, NULL);
		ck_assert_int_eq(kill(k.pid, SIGKILL), 0);
		/*
		 * What the child reported before it died, read before its end is
		 * looked at: every rotation it finished after the first was
		 * CKR_OK. Its pipe reads up to the end, then end of file.
		 */
		later = 0;
		while (read_all(k.rd, &v, sizeof(v), DEADLINE * 1000) == 0) {
			ck_assert_msg(v == CKR_OK,
			    "round %d: EV_RotateZoneKey %lu in the child: 0x%lx", round, later + 3,
			    v);
			later++;
		}
		st = env_wait_child(k.pid, DEADLINE);
		ck_assert_msg(st == -1, "round %d: the child ended by itself (status %d)", round,
		    st);
		close(k.rd);
		close(k.wr);
		done += 2 + later;
		/* None finished after the second: the kill landed in the third one. */
		if (later == 0)
			interrupted++;
		env_root_flush_leaks();

		env_init();
		rv = F->C_OpenSession(z, CKF_SERIAL_SESSION, NULL, NULL, &h);
		if (rv == CKR_OK)
			rv = login_user(h);
		ck_assert_msg(rv == CKR_OK,
		    "round %d (killed %ld us after a rotation of %.0f us): C_OpenSession, "
		    "C_Login: 0x%lx", round, us, took * 1e6, rv);
		for (i = 0; i < CRASH_EC; i++) {
			len = sizeof(sig);
			rv = try_sign(h, KT_EC, priv[i], sig, &len);
			ck_assert_msg(rv == CKR_OK,
			    "round %d (killed %ld us after a rotation of %.0f us): key ec-%d signs: "
			    "0x%lx", round, us, took * 1e6, i, rv);
			ck_assert(ossl_verifies(h, KT_EC, pub[i], sig, len));
		}
		for (i = 0; i < CRASH_AES; i++) {
			rv = aes_open(h, aes[i], ct[i], ctlen[i]);
			if (rv == CKR_OK)
				rv = aes_roundtrip(h, aes[i]);
			ck_assert_msg(rv == CKR_OK,
			    "round %d (killed %ld us after a rotation of %.0f us): key aes-%d: 0x%lx",
			    round, us, took * 1e6, i, rv);
		}
	}
	fprintf(stderr, "it_rotate: %lu zone key rotations finished; %d of %d kills interrupted "
	    "the third\n", done, interrupted, CRASH_ROUNDS);
	ck_assert_int_ge(interrupted, 1);
}
END_TEST

/* 11. CKA_START_DATE and CKA_END_DATE at use. */

/* A CK_DATE as text, days from today (UTC). */
static void
date_from_today(CK_DATE *d, int days)
{
	time_t t = time(NULL) + (time_t)days * 86400;
	struct tm tm;
	char buf[9];

	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y%m%d", &tm);
	memcpy(d->year, buf, 4);
	memcpy(d->month, buf + 4, 2);
	memcpy(d->day, buf + 6, 2);
}

START_TEST(test_start_end_dates)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv, a_old, a_new, a_now;
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_DATE past, future, yesterday, tomorrow;
	CK_ATTRIBUTE ended[] = { { CKA_END_DATE, &past, sizeof(past) } };
	CK_ATTRIBUTE not_yet[] = { { CKA_START_DATE, &future, sizeof(future) } };
	CK_ATTRIBUTE within[] = {
		{ CKA_START_DATE, &yesterday, sizeof(yesterday) },
		{ CKA_END_DATE, &tomorrow, sizeof(tomorrow) },
	};
	CK_ATTRIBUTE set_end = { CKA_END_DATE, &past, sizeof(past) };
	CK_BYTE iv[12] = { 0 };
	CK_GCM_PARAMS p = { iv, sizeof(iv), 96, NULL, 0, 128 };
	CK_MECHANISM gcm = { CKM_AES_GCM, &p, sizeof(p) };
	CK_ATTRIBUTE blank = { CKA_END_DATE, NULL, 0 };

	memcpy(&past, "20000101", 8);
	memcpy(&future, "20991231", 8);
	date_from_today(&yesterday, -1);
	date_from_today(&tomorrow, 1);

	env_init();
	z = env_new_zone("dates");
	h = env_session(z, 1, 1);
	gen_pair_x(h, KT_EC, "ended", CK_TRUE, ended, 1, &pub, &priv);
	ck_assert_int_eq(F->C_SignInit(h, &m, priv), CKR_KEY_FUNCTION_NOT_PERMITTED);
	gen_pair_x(h, KT_EC, "not-yet", CK_TRUE, not_yet, 1, &pub, &priv);
	ck_assert_int_eq(F->C_SignInit(h, &m, priv), CKR_KEY_FUNCTION_NOT_PERMITTED);
	gen_pair_x(h, KT_EC, "within", CK_TRUE, within, 2, &pub, &priv);
	signs(h, KT_EC, priv, pub);

	/* Secret keys too. */
	a_old = gen_aes_x(h, "aes-ended", CK_TRUE, ended, 1);
	ck_assert_int_eq(F->C_EncryptInit(h, &gcm, a_old), CKR_KEY_FUNCTION_NOT_PERMITTED);
	a_new = gen_aes_x(h, "aes-not-yet", CK_TRUE, not_yet, 1);
	ck_assert_int_eq(F->C_EncryptInit(h, &gcm, a_new), CKR_KEY_FUNCTION_NOT_PERMITTED);
	a_now = gen_aes_x(h, "aes-within", CK_TRUE, within, 2);
	ck_assert_int_eq(aes_roundtrip(h, a_now), CKR_OK);

	/* A date set later is enforced from then on; cleared, the key works again. */
	ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &set_end, 1), CKR_OK);
	ck_assert_int_eq(F->C_SignInit(h, &m, priv), CKR_KEY_FUNCTION_NOT_PERMITTED);
	ck_assert_int_eq(F->C_SetAttributeValue(h, priv, &blank, 1), CKR_OK);
	signs(h, KT_EC, priv, pub);
}
END_TEST

/* 12. Zone policies. */

static void
blank_padded(const CK_UTF8CHAR *got, const char *want)
{
	CK_UTF8CHAR exp[32];

	env_label(exp, want);
	ck_assert_mem_eq(got, exp, 32);
}

/* The zone's policy is want (its provider not looked at), with the provider "result". */
static void
check_policy(CK_SLOT_ID zone, const EV_ZONE_POLICY *want)
{
	EV_ZONE_POLICY p;

	memset(&p, 0xa5, sizeof(p));
	ck_assert_int_eq(admin()->EV_GetZonePolicy(zone, &p), CKR_OK);
	ck_assert_int_eq(p.requireAttestation, want->requireAttestation);
	ck_assert_int_eq(p.requireNonce, want->requireNonce);
	ck_assert_int_eq(p.autoRotate, want->autoRotate);
	ck_assert_uint_eq(p.ulMaxEvidenceAge, want->ulMaxEvidenceAge);
	ck_assert_uint_eq(p.ulRotationPeriod, want->ulRotationPeriod);
	ck_assert_uint_eq(p.ulGracePeriod, want->ulGracePeriod);
	blank_padded(p.provider, "result");
}

START_TEST(test_zone_policy)
{
	CK_SLOT_ID za, zb, slots[32];
	CK_ULONG n = 32, len;
	CK_OBJECT_HANDLE keys[4];
	CK_BYTE nonce[EV_NONCE_LEN];
	EV_ATTESTATION info;
	EV_ZONE_POLICY p;

	ck_assert_int_eq(admin()->EV_GetZonePolicy(1, &p), CKR_CRYPTOKI_NOT_INITIALIZED);
	ck_assert_int_eq(admin()->EV_Attest(1, &info), CKR_CRYPTOKI_NOT_INITIALIZED);
	len = sizeof(nonce);
	ck_assert_int_eq(admin()->EV_NewNonce(1, nonce, &len), CKR_CRYPTOKI_NOT_INITIALIZED);
	len = 4;
	ck_assert_int_eq(admin()->EV_RotationCandidates(1, EV_ROTATE_ALL, keys, &len),
	    CKR_CRYPTOKI_NOT_INITIALIZED);
	ck_assert_int_eq(admin()->EV_RotateKey(1, 1, keys), CKR_CRYPTOKI_NOT_INITIALIZED);
	ck_assert_int_eq(admin()->EV_RotateZoneKey(1, &len), CKR_CRYPTOKI_NOT_INITIALIZED);

	/* Defaults (the provider is configured, nothing else). */
	env_init();
	za = env_new_zone("defaults");
	zb = env_new_zone("override");
	check_policy(za, &(EV_ZONE_POLICY){ .requireAttestation = CK_FALSE, .requireNonce = CK_FALSE,
	    .autoRotate = CK_FALSE, .ulMaxEvidenceAge = 3600, .ulRotationPeriod = 0,
	    .ulGracePeriod = 86400 });

	reconf("[policy]\nrequire_nonce = true\nauto_rotate = true\nmax_evidence_age = 1200\n"
	       "rotation_period = 7200\ngrace_period = 600\n"
	       "[zone %lu]\nrequire_attestation = true\ngrace_period = 30\nrotation_period = 0\n",
	    (unsigned long)zb);

	check_policy(za, &(EV_ZONE_POLICY){ .requireAttestation = CK_FALSE, .requireNonce = CK_TRUE,
	    .autoRotate = CK_TRUE, .ulMaxEvidenceAge = 1200, .ulRotationPeriod = 7200,
	    .ulGracePeriod = 600 });
	check_policy(zb, &(EV_ZONE_POLICY){ .requireAttestation = CK_TRUE, .requireNonce = CK_TRUE,
	    .autoRotate = CK_TRUE, .ulMaxEvidenceAge = 1200, .ulRotationPeriod = 0,
	    .ulGracePeriod = 30 });

	/* The free slot, a slot that does not exist, no output. */
	ck_assert_int_eq(F->C_GetSlotList(CK_FALSE, slots, &n), CKR_OK);
	ck_assert_uint_ge(n, 3);
	ck_assert_int_eq(admin()->EV_GetZonePolicy(slots[n - 1], &p), CKR_TOKEN_NOT_PRESENT);
	ck_assert_int_eq(admin()->EV_GetZonePolicy(999999, &p), CKR_SLOT_ID_INVALID);
	ck_assert_int_eq(admin()->EV_GetZonePolicy(za, NULL), CKR_ARGUMENTS_BAD);

	/* Without a provider: blank. */
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_write_config(NULL);
	env_init();
	ck_assert_int_eq(admin()->EV_GetZonePolicy(za, &p), CKR_OK);
	blank_padded(p.provider, "");
}
END_TEST

/* 13. Token copies follow their origin. */

START_TEST(test_copies_follow_origin)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv, copy, pub2, priv2, copy2, found[16];
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_ATTRIBUTE ct[] = { { CKA_LABEL, "copy", 4 }, { CKA_TOKEN, &yes, sizeof(yes) } };
	CK_ATTRIBUTE ct2[] = { { CKA_LABEL, "copy2", 5 }, { CKA_TOKEN, &yes, sizeof(yes) } };
	EV_REVOCATION_ENTRY e = {
		.kind = EV_REVOKE_KEY,
		.pLabel = (CK_UTF8CHAR_PTR) "orig2",
		.ulLabelLen = 5,
		.pReason = (CK_UTF8CHAR_PTR) "compromised",
		.ulReasonLen = 11,
	};
	CK_ULONG count = 0;

	env_init();
	h = attested_zone("copies", &z);

	/* Rotation retires the copy with its origin. */
	gen_pair(h, KT_EC, "orig", &pub, &priv);
	ck_assert_int_eq(F->C_CopyObject(h, priv, ct, 2, &copy), CKR_OK);
	signs(h, KT_EC, copy, pub);
	ck_assert_int_eq(attr_bool(h, copy, CKA_EV_RETIRED), CK_FALSE);
	ck_assert_int_eq(admin()->EV_RotateKey(h, priv, NULL), CKR_OK);
	ck_assert_int_eq(attr_bool(h, copy, CKA_EV_RETIRED), CK_TRUE);
	ck_assert_uint_eq(attr_ulong(h, copy, CKA_EV_DESTROY_AT),
	    attr_ulong(h, priv, CKA_EV_DESTROY_AT));
	ck_assert_int_eq(F->C_SignInit(h, &m, copy), CKR_KEY_FUNCTION_NOT_PERMITTED);
	ck_assert_uint_eq(find_label(h, "copy", 0, found, 16), 0);
	ck_assert_uint_eq(find_label(h, "copy", 1, found, 16), 1);
	ck_assert_uint_eq(found[0], copy);

	/* A local revocation of the origin destroys its copy. */
	gen_pair(h, KT_EC, "orig2", &pub2, &priv2);
	ck_assert_int_eq(F->C_CopyObject(h, priv2, ct2, 2, &copy2), CKR_OK);
	ck_assert_int_eq(stored(copy2), 1);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	ck_assert_int_eq(F->C_Login(h, CKU_SO, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN)), CKR_OK);
	ck_assert_int_eq(admin()->EV_Revoke(h, &e, &count), CKR_OK);
	ck_assert_uint_eq(count, 3); /* orig2's two halves and the copy under another label */
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	ck_assert_int_eq(login_user(h), CKR_OK);
	ck_assert_int_eq(get_label(h, copy2), CKR_OBJECT_HANDLE_INVALID);
	ck_assert_int_eq(F->C_SignInit(h, &m, copy2), CKR_KEY_HANDLE_INVALID);
	ck_assert_uint_eq(find_label(h, "copy2", 0, found, 16), 0);
	ck_assert_int_eq(stored(copy2), 0);
	ck_assert_int_eq(stored(priv2), 0);
	/* The other copy's story is unchanged. */
	ck_assert_int_eq(attr_bool(h, copy, CKA_EV_RETIRED), CK_TRUE);
}
END_TEST

/*
 * Session copies (CKA_TOKEN false) of a token key retire with it, whether
 * this process rotates it or another one does.
 */
START_TEST(test_session_copies_retire)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv, copy, pub2, priv2, copy2, nk = 0;
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_ATTRIBUTE ct[] = { { CKA_LABEL, "scopy", 5 }, { CKA_TOKEN, &no, sizeof(no) } };
	CK_ATTRIBUTE ct2[] = { { CKA_LABEL, "scopy2", 6 }, { CKA_TOKEN, &no, sizeof(no) } };
	struct race_arg a;
	struct kid k;

	env_init();
	h = attested_zone("scopies", &z);

	/* Rotated here. */
	gen_pair(h, KT_EC, "sorig", &pub, &priv);
	ck_assert_int_eq(F->C_CopyObject(h, priv, ct, 2, &copy), CKR_OK);
	ck_assert_int_eq(attr_bool(h, copy, CKA_TOKEN), CK_FALSE);
	signs(h, KT_EC, copy, pub);
	ck_assert_int_eq(attr_bool(h, copy, CKA_EV_RETIRED), CK_FALSE);
	ck_assert_int_eq(admin()->EV_RotateKey(h, priv, &nk), CKR_OK);
	ck_assert_int_eq(attr_bool(h, copy, CKA_EV_RETIRED), CK_TRUE);
	ck_assert_uint_eq(attr_ulong(h, copy, CKA_EV_DESTROY_AT),
	    attr_ulong(h, priv, CKA_EV_DESTROY_AT));
	ck_assert_int_eq(F->C_SignInit(h, &m, copy), CKR_KEY_FUNCTION_NOT_PERMITTED);
	signs(h, KT_EC, nk, find_one(h, "sorig", CKO_PUBLIC_KEY, 0));

	/* Rotated by another process: seen at this process's next call. */
	gen_pair(h, KT_EC, "sorig2", &pub2, &priv2);
	ck_assert_int_eq(F->C_CopyObject(h, priv2, ct2, 2, &copy2), CKR_OK);
	signs(h, KT_EC, copy2, pub2);
	a = (struct race_arg){ z, priv2 };
	kid_start(&k, kid_rotate_race, &a);
	kid_expect(&k, CKR_OK, "child: C_Initialize");
	kid_expect(&k, CKR_OK, "child: C_OpenSession and C_Login");
	kid_put(&k, 1);
	kid_expect(&k, CKR_OK, "child: EV_RotateKey");
	kid_done(&k);
	ck_assert_int_eq(attr_bool(h, copy2, CKA_EV_RETIRED), CK_TRUE);
	ck_assert_int_eq(attr_bool(h, priv2, CKA_EV_RETIRED), CK_TRUE);
	ck_assert_uint_eq(attr_ulong(h, copy2, CKA_EV_DESTROY_AT),
	    attr_ulong(h, priv2, CKA_EV_DESTROY_AT));
	ck_assert_int_eq(F->C_SignInit(h, &m, copy2), CKR_KEY_FUNCTION_NOT_PERMITTED);
	/* The new generation signs. */
	signs(h, KT_EC, find_one(h, "sorig2", CKO_PRIVATE_KEY, 0),
	    find_one(h, "sorig2", CKO_PUBLIC_KEY, 0));
}
END_TEST

/* 12. Rotation in batches (EV_RotateKeys, admin interface 1.4). */

/* Version 1.4: EV_RotateKeys. */
static EV_ADMIN_FUNCTION_LIST *
admin14(void)
{
	EV_ADMIN_FUNCTION_LIST *a = admin_v(4);

	ck_assert_ptr_nonnull(a->EV_RotateKeys);
	return a;
}

/* Whether a key is as it was made: generation 1, current, still found by its label. */
static void
untouched(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k, const char *label, CK_ULONG nobjs)
{
	CK_OBJECT_HANDLE found[16];

	ck_assert_uint_eq(attr_ulong(h, k, CKA_EV_GENERATION), 1);
	ck_assert_int_eq(attr_bool(h, k, CKA_EV_RETIRED), CK_FALSE);
	ck_assert_uint_eq(find_label(h, label, 0, found, 16), nobjs);
	ck_assert(listed(found, nobjs, k));
	ck_assert_uint_eq(find_label(h, label, 2, found, 16), 0);
}

/*
 * A batch of keys of every kind (EC pairs by their private key, an
 * Ed25519 pair by its public key, an AES key) rotates as EV_RotateKey
 * rotates each, and another process sees it as it sees one rotation.
 */
START_TEST(test_rotate_batch)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub0, priv0, pub1, priv1, edpub, edpriv, aes, npub, npriv, keys[4],
	    out[4];
	CK_INTERFACE *iface = NULL;
	CK_VERSION v13 = { 1, 3 };
	CK_ULONG done = 99;
	CK_BYTE id[64];
	struct signer_arg a;
	struct kid k;
	long long t0, t1;

	env_init();
	/* 1.4 by default; 1.3 asked for is the same list, labelled 1.3. */
	ck_assert_int_eq(F->C_GetInterface((CK_UTF8CHAR *)EV_ADMIN_INTERFACE_NAME, NULL, &iface,
	    0), CKR_OK);
	ck_assert_int_eq(((EV_ADMIN_FUNCTION_LIST *)iface->pFunctionList)->version.minor, 4);
	ck_assert_int_eq(F->C_GetInterface((CK_UTF8CHAR *)EV_ADMIN_INTERFACE_NAME, &v13, &iface,
	    0), CKR_OK);
	ck_assert_int_eq(((EV_ADMIN_FUNCTION_LIST *)iface->pFunctionList)->version.minor, 3);

	h = attested_zone("batch", &z);
	gen_pair(h, KT_EC, "b-ec0", &pub0, &priv0);
	gen_pair(h, KT_EC, "b-ec1", &pub1, &priv1);
	gen_pair(h, KT_ED, "b-ed", &edpub, &edpriv);
	aes = gen_aes(h, "b-aes");

	a = (struct signer_arg){ z, priv1, "b-ec1" };
	kid_start(&k, kid_rotation_view, &a);
	kid_expect(&k, CKR_OK, "child: set-up and first signature");

	keys[0] = priv0;
	keys[1] = aes;
	keys[2] = edpub;
	keys[3] = priv1;
	t0 = now_unix();
	ck_assert_int_eq(admin14()->EV_RotateKeys(h, keys, 4, out, &done), CKR_OK);
	t1 = now_unix();
	ck_assert_uint_eq(done, 4);

	check_rotated_pair(h, KT_EC, "b-ec0", pub0, priv0, t0, t1, GRACE_DEFAULT, &npub, &npriv);
	ck_assert_uint_eq(out[0], npriv);
	signs(h, KT_EC, npriv, npub);
	check_rotated_pair(h, KT_ED, "b-ed", edpub, edpriv, t0, t1, GRACE_DEFAULT, &npub, &npriv);
	ck_assert_uint_eq(out[2], npub); /* the named half's new generation */
	signs(h, KT_ED, npriv, npub);
	check_rotated_pair(h, KT_EC, "b-ec1", pub1, priv1, t0, t1, GRACE_DEFAULT, &npub, &npriv);
	ck_assert_uint_eq(out[3], npriv);
	/* The AES key: a new generation with a random 20-byte CKA_ID; the old one retired. */
	ck_assert_uint_eq(find_one(h, "b-aes", CKO_SECRET_KEY, 0), out[1]);
	ck_assert_uint_eq(attr_ulong(h, out[1], CKA_EV_GENERATION), 2);
	ck_assert_uint_eq(attr_bytes(h, out[1], CKA_ID, id, sizeof(id)), 20);
	ck_assert_int_eq(attr_bool(h, aes, CKA_EV_RETIRED), CK_TRUE);
	ck_assert_int_eq(aes_roundtrip(h, out[1]), CKR_OK);
	/* One appraisal for the batch. */
	ck_assert_int_eq(env_sql_long("SELECT count(*) FROM attestlog WHERE purpose = 'rotate'"),
	    1);

	/* The other process: its key retired at its next use, the new one at its next search. */
	rotation_viewed(&k, h, z, out[3], npub);
}
END_TEST

/* n AES keys labelled <prefix><i>. */
static void
gen_aes_n(CK_SESSION_HANDLE h, const char *prefix, CK_ULONG n, CK_OBJECT_HANDLE *keys)
{
	char label[32];
	CK_ULONG i;

	for (i = 0; i < n; i++) {
		snprintf(label, sizeof(label), "%s%lu", prefix, i);
		keys[i] = gen_aes(h, label);
	}
}

/* Three keys refused with want, none rotated: ka (of the pair "a") and kc ("c") as made. */
static void
batch_refused(EV_ADMIN_FUNCTION_LIST *ad, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE *keys, CK_RV want,
    CK_OBJECT_HANDLE ka, CK_OBJECT_HANDLE kc)
{
	CK_OBJECT_HANDLE out[3];
	CK_ULONG done = 7;

	ck_assert_int_eq(ad->EV_RotateKeys(h, keys, 3, out, &done), want);
	ck_assert_uint_eq(done, 0);
	untouched(h, ka, "a", 2);
	untouched(h, kc, "c", 1);
}

/*
 * Bad arguments: every handle is checked before anything rotates, so one
 * bad handle among good ones rotates none of them.
 */
START_TEST(test_rotate_batch_errors)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h, ro;
	CK_OBJECT_HANDLE pa, ka, pb, kb, kc, rpub, rpriv;
	CK_OBJECT_HANDLE keys[3], out[3], bad[6];
	CK_RV want[6];
	struct unrotatable u;
	EV_ADMIN_FUNCTION_LIST *ad;
	CK_ULONG done;
	long rot0;
	int i;

	env_init();
	z = env_new_zone("berrors");
	good_evidence(z);
	h = env_session(z, 1, 1);
	ad = admin14();
	gen_pair(h, KT_EC, "a", &pa, &ka);
	gen_pair(h, KT_EC, "b", &pb, &kb);
	kc = gen_aes(h, "c");
	make_unrotatable(h, ka, &u);
	gen_pair(h, KT_EC, "r", &rpub, &rpriv);
	ck_assert_int_eq(admin()->EV_RotateKey(h, rpriv, NULL), CKR_OK);

	/* NULL keys with a count (refused); no keys at all (nothing to do). */
	for (i = 0; i < 2; i++) {
		done = 7;
		ck_assert_int_eq(ad->EV_RotateKeys(h, NULL, i == 0 ? 2 : 0, out, &done),
		    i == 0 ? CKR_ARGUMENTS_BAD : CKR_OK);
		ck_assert_uint_eq(done, 0);
	}

	/* One bad handle between two good ones: refused as EV_RotateKey refuses it, none rotated. */
	bad[0] = rpriv;        want[0] = CKR_KEY_FUNCTION_NOT_PERMITTED; /* retired */
	bad[1] = u.copy;       want[1] = CKR_KEY_FUNCTION_NOT_PERMITTED;
	bad[2] = u.spriv;      want[2] = CKR_KEY_FUNCTION_NOT_PERMITTED; /* a session object */
	bad[3] = u.lpub;       want[3] = CKR_KEY_FUNCTION_NOT_PERMITTED; /* a public key alone */
	bad[4] = u.data;       want[4] = CKR_KEY_HANDLE_INVALID;
	bad[5] = 0x7fff0000UL; want[5] = CKR_KEY_HANDLE_INVALID;
	for (i = 0; i < 6; i++)
		batch_refused(ad, h, (CK_OBJECT_HANDLE[3]){ ka, bad[i], kc }, want[i], ka, kc);
	/* An object named twice, or both halves of a pair. */
	batch_refused(ad, h, (CK_OBJECT_HANDLE[3]){ ka, kc, ka }, CKR_ARGUMENTS_BAD, ka, kc);
	batch_refused(ad, h, (CK_OBJECT_HANDLE[3]){ ka, kc, pa }, CKR_ARGUMENTS_BAD, ka, kc);

	/* A read-only session; no evidence (refused once, recorded). */
	keys[0] = ka;
	keys[1] = kb;
	keys[2] = kc;
	ro = env_session(z, 0, 0);
	ck_assert_int_eq(ad->EV_RotateKeys(ro, keys, 3, out, &done), CKR_SESSION_READ_ONLY);
	rot0 = refusals_for("rotate");
	no_evidence();
	ck_assert_int_eq(ad->EV_RotateKeys(h, keys, 3, out, &done), CKR_FUNCTION_REJECTED);
	ck_assert_uint_eq(done, 0);
	ck_assert_int_eq(refusals_for("rotate"), rot0 + 1);
	untouched(h, ka, "a", 2);
	untouched(h, kb, "b", 2);
	untouched(h, kc, "c", 1);

	/* Put right, all three rotate; phNewKeys and pulDone may be NULL. */
	good_evidence(z);
	ck_assert_int_eq(ad->EV_RotateKeys(h, keys, 2, NULL, NULL), CKR_OK);
	ck_assert_int_eq(ad->EV_RotateKeys(h, &keys[2], 1, out, &done), CKR_OK);
	ck_assert_uint_eq(done, 1);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(attr_bool(h, keys[i], CKA_EV_RETIRED), CK_TRUE);
	/* The token copy retired with its origin. */
	ck_assert_int_eq(attr_bool(h, u.copy, CKA_EV_RETIRED), CK_TRUE);
	ck_assert_uint_eq(attr_ulong(h, out[0], CKA_EV_GENERATION), 2);
}
END_TEST

/* More keys than one transaction takes (256). */
#define BATCH_KEYS 300

START_TEST(test_rotate_batch_chunks)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE keys[BATCH_KEYS], out[BATCH_KEYS], again[BATCH_KEYS];
	CK_BYTE lab[32];
	CK_ULONG done, i;
	char label[32];

	env_init();
	h = attested_zone("chunks", &z);
	gen_aes_n(h, "c-", BATCH_KEYS, keys);
	ck_assert_int_eq(admin14()->EV_RotateKeys(h, keys, BATCH_KEYS, out, &done), CKR_OK);
	ck_assert_uint_eq(done, BATCH_KEYS);
	for (i = 0; i < BATCH_KEYS; i++) {
		snprintf(label, sizeof(label), "c-%lu", i);
		ck_assert_int_eq(attr_bool(h, keys[i], CKA_EV_RETIRED), CK_TRUE);
		ck_assert_uint_eq(find_one(h, label, CKO_SECRET_KEY, 0), out[i]);
		ck_assert_uint_eq(attr_ulong(h, out[i], CKA_EV_GENERATION), 2);
		ck_assert_uint_eq(attr_bytes(h, out[i], CKA_LABEL, lab, sizeof(lab)),
		    strlen(label));
	}
	ck_assert_int_eq(env_sql_long("SELECT count(*) FROM objects WHERE retired != 0"),
	    BATCH_KEYS);
	ck_assert_int_eq(env_sql_long("SELECT count(*) FROM objects WHERE retired = 0 AND "
				      "generation = 2"),
	    BATCH_KEYS);

	/* A bad handle in the second chunk: checked before the first is rotated. */
	memcpy(again, out, sizeof(again));
	again[280] = keys[280]; /* retired */
	ck_assert_int_eq(admin14()->EV_RotateKeys(h, again, BATCH_KEYS, NULL, &done),
	    CKR_KEY_FUNCTION_NOT_PERMITTED);
	ck_assert_uint_eq(done, 0);
	ck_assert_int_eq(env_sql_long("SELECT count(*) FROM objects WHERE generation = 3"), 0);
	ck_assert_int_eq(attr_bool(h, out[0], CKA_EV_RETIRED), CK_FALSE);
}
END_TEST

/* Keys the killed batch rotates: three transactions. */
#define KILL_KEYS 600

struct batch_kid_arg {
	CK_SLOT_ID slot;
	const CK_OBJECT_HANDLE *keys;
};

static void
kid_rotate_batch(int rd, int wr, void *arg)
{
	const struct batch_kid_arg *a = arg;
	EV_ADMIN_FUNCTION_LIST *adm;
	CK_SESSION_HANDLE h;
	CK_ULONG done = 0;
	CK_RV rv = kid_init();

	(void)rd;
	if (rv == CKR_OK)
		rv = kid_session(a->slot, 1, &h);
	adm = admin_v_or_null(4);
	if (rv == CKR_OK && adm == NULL)
		rv = CKR_FUNCTION_NOT_SUPPORTED;
	put(wr, rv); /* ready */
	if (rv != CKR_OK)
		_exit(1);
	rv = adm->EV_RotateKeys(h, (CK_OBJECT_HANDLE_PTR)a->keys, KILL_KEYS, NULL, &done);
	put(wr, rv);
	put(wr, done);
	(void)F->C_Finalize(NULL);
	_exit(0);
}

/*
 * A process killed in the middle of a batch, once its first transaction
 * is seen committed (retired rows in the store): every key is fully old
 * (current, generation 1, no generation 2) or fully new (retired, one
 * current generation 2 that works), whole transactions of 256 at a time.
 */
START_TEST(test_rotate_batch_killed)
{
	CK_SLOT_ID z;
	CK_SESSION_HANDLE h;
	static CK_OBJECT_HANDLE keys[KILL_KEYS];
	CK_OBJECT_HANDLE found[4], nk;
	struct batch_kid_arg arg;
	struct kid k;
	CK_ULONG i, rotated = 0;
	long retired = 0;
	char label[32];
	double end;
	CK_RV rv;

	env_init();
	h = attested_zone("bkill", &z);
	gen_aes_n(h, "k-", KILL_KEYS, keys);
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	arg = (struct batch_kid_arg){ z, keys };
	kid_start(&k, kid_rotate_batch, &arg);
	kid_expect(&k, CKR_OK, "child: ready");
	end = now_s() + CHILD_DEADLINE;
	while ((retired = env_sql_long("SELECT count(*) FROM objects WHERE retired != 0")) == 0 &&
	    now_s() < end)
		nap_ms(1);
	ck_assert_int_eq(kill(k.pid, SIGKILL), 0);
	(void)env_wait_child(k.pid, DEADLINE);
	close(k.rd);
	close(k.wr);
	ck_assert_int_gt(retired, 0);
	env_root_flush_leaks();

	env_init();
	rv = F->C_OpenSession(z, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h);
	if (rv == CKR_OK)
		rv = login_user(h);
	ck_assert_int_eq(rv, CKR_OK);
	for (i = 0; i < KILL_KEYS; i++) {
		snprintf(label, sizeof(label), "k-%lu", i);
		ck_assert_uint_eq(find_label(h, label, 0, found, 4), 1);
		if (attr_bool(h, keys[i], CKA_EV_RETIRED) == CK_TRUE) {
			nk = found[0];
			ck_assert_uint_ne(nk, keys[i]);
			ck_assert_uint_eq(attr_ulong(h, nk, CKA_EV_GENERATION), 2);
			ck_assert_int_eq(aes_roundtrip(h, nk), CKR_OK);
			rotated++;
		} else {
			ck_assert_uint_eq(found[0], keys[i]);
			ck_assert_uint_eq(find_label(h, label, 2, found, 4), 0);
			ck_assert_int_eq(aes_roundtrip(h, keys[i]), CKR_OK);
		}
	}
	/* Whole transactions, in order. */
	ck_assert_msg(rotated % 256 == 0 || rotated == KILL_KEYS, "%lu keys rotated", rotated);
	for (i = 0; i < rotated; i++)
		ck_assert_int_eq(attr_bool(h, keys[i], CKA_EV_RETIRED), CK_TRUE);
	fprintf(stderr, "it_rotate: the killed batch had rotated %lu of %d keys\n", rotated,
	    KILL_KEYS);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("rotate");
	TCase *ta = tcase_create("attestation");
	TCase *tr = tcase_create("rotation");
	TCase *tz = tcase_create("zone key");
	TCase *to = tcase_create("policy and objects");
	TCase *tb = tcase_create("batches");

	tcase_add_checked_fixture(ta, setup, env_teardown);
	tcase_set_timeout(ta, 120);
	tcase_add_test(ta, test_login_gate);
	tcase_add_test(ta, test_refusal_rate_limit);
	tcase_add_test(ta, test_nonce);
	tcase_add_test(ta, test_expiry_during_session);
	suite_add_tcase(s, ta);

	tcase_add_checked_fixture(tr, setup, env_teardown);
	tcase_set_timeout(tr, 120);
	tcase_add_test(tr, test_rotate_ec_pair);
	tcase_add_test(tr, test_rotate_operation_under_way);
	tcase_add_test(tr, test_rotate_rsa_pair);
	tcase_add_test(tr, test_rotate_ed25519_by_public_key);
	tcase_add_test(tr, test_rotate_aes);
	tcase_add_test(tr, test_retired_material_stays);
	tcase_add_test(tr, test_rotate_errors);
	tcase_add_test(tr, test_grace_period_ends);
	tcase_add_test(tr, test_grace_period_zero);
	tcase_add_test(tr, test_past_grace_no_sweep);
	tcase_add_test(tr, test_rotation_candidates);
	tcase_add_test(tr, test_auto_rotation_at_login);
	tcase_add_test(tr, test_rotation_seen_by_other_process);
	tcase_add_test(tr, test_concurrent_rotation);
	suite_add_tcase(s, tr);

	tcase_add_checked_fixture(tz, setup, env_teardown);
	tcase_set_timeout(tz, 120);
	tcase_add_test(tz, test_zone_key_rotation);
	tcase_add_test(tz, test_zone_key_rotation_while_in_use);
	tcase_add_test(tz, test_zone_key_rotation_racing_creation);
	tcase_add_test(tz, test_zone_key_rotation_killed);
	suite_add_tcase(s, tz);

	tcase_add_checked_fixture(to, setup, env_teardown);
	tcase_set_timeout(to, 120);
	tcase_add_test(to, test_start_end_dates);
	tcase_add_test(to, test_zone_policy);
	tcase_add_test(to, test_copies_follow_origin);
	tcase_add_test(to, test_session_copies_retire);
	suite_add_tcase(s, to);

	tcase_add_checked_fixture(tb, setup, env_teardown);
	tcase_set_timeout(tb, 240);
	tcase_add_test(tb, test_rotate_batch);
	tcase_add_test(tb, test_rotate_batch_errors);
	tcase_add_test(tb, test_rotate_batch_chunks);
	tcase_add_test(tb, test_rotate_batch_killed);
	suite_add_tcase(s, tb);
	return env_run(s);
}
