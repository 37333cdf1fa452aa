/*
 * Integration tests of revocation and slot events: signed revocation lists
 * (through the admin interface and dropped into the watched directory),
 * local revocation by a zone's SO, what every process sees afterwards,
 * persistence, and C_WaitForSlotEvent. Lists are made here with libsodium,
 * independently of the module's own code for the format.
 *
 * Other processes are forked children that call C_Initialize themselves
 * and talk to the test through pipes; they never assert (the test does, on
 * what they report) and are killed by PID when the test ends, pass or fail.
 * Nothing depends on timing but generous deadlines for what another
 * process or thread must do.
 */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "harness.h"
#include "pkcs11/edgevault.h"

#define F env.f
#define B64 sodium_base64_VARIANT_ORIGINAL

#define DEVICE "test-device"
#define MSG "edgevault revocation test"

static unsigned char auth_pk[crypto_sign_PUBLICKEYBYTES];
static unsigned char auth_sk[crypto_sign_SECRETKEYBYTES];
static CK_BBOOL yes = CK_TRUE;

static void
setup(void)
{
	char pk64[sodium_base64_ENCODED_LEN(crypto_sign_PUBLICKEYBYTES, B64)];

	signal(SIGPIPE, SIG_IGN);
	env_setup();
	ck_assert_int_ge(sodium_init(), 0);
	ck_assert_int_eq(crypto_sign_keypair(auth_pk, auth_sk), 0);
	sodium_bin2base64(pk64, sizeof(pk64), auth_pk, sizeof(auth_pk), B64);
	env_revocation_config(pk64, NULL);
}

/* Lists and envelopes. */

/* A list document (entries: the JSON members of the array, comma-separated). */
static char *
list_doc(const char *device, long seq, const char *entries)
{
	return fmt("{\"version\":1,\"device\":\"%s\",\"sequence\":%ld,\"issued_at\":%lld,"
		   "\"entries\":[%s]}",
	    device, seq, (long long)time(NULL), entries);
}

enum spoil { AS_IS, FLIP_PAYLOAD, FLIP_SIGNATURE };

/*
 * The envelope of a document signed with sk. FLIP_PAYLOAD changes one
 * byte of the document after signing (it stays valid JSON: the case of
 * the device's first letter), FLIP_SIGNATURE one bit of the signature.
 */
static char *
envelope(const char *doc, const unsigned char *sk, enum spoil how)
{
	size_t dlen = strlen(doc);
	unsigned char sig[crypto_sign_BYTES];
	char sig64[sodium_base64_ENCODED_LEN(crypto_sign_BYTES, B64)];
	char *payload = malloc(sodium_base64_ENCODED_LEN(dlen, B64));
	char *copy = strdup(doc);
	char *out;

	ck_assert_ptr_nonnull(payload);
	ck_assert_ptr_nonnull(copy);
	ck_assert_int_eq(crypto_sign_detached(sig, NULL, (const unsigned char *)doc, dlen, sk), 0);
	if (how == FLIP_PAYLOAD) {
		char *d = strstr(copy, "\"device\":\"");

		ck_assert_ptr_nonnull(d);
		d[10] ^= 0x20;
	} else if (how == FLIP_SIGNATURE) {
		sig[17] ^= 0x01;
	}
	sodium_bin2base64(payload, sodium_base64_ENCODED_LEN(dlen, B64),
	    (const unsigned char *)copy, dlen, B64);
	sodium_bin2base64(sig64, sizeof(sig64), sig, sizeof(sig), B64);
	out = fmt("{\"type\":\"edgevault-revocation-list\",\"payload\":\"%s\","
		  "\"signature\":\"%s\"}\n",
	    payload, sig64);
	free(payload);
	free(copy);
	return out;
}

/* A list for this device signed by the authority. */
static char *
signed_list(long seq, const char *entries)
{
	char *doc = list_doc(DEVICE, seq, entries);
	char *e = envelope(doc, auth_sk, AS_IS);

	free(doc);
	return e;
}

static char *
key_entry(CK_SLOT_ID zone, const char *label)
{
	return fmt("{\"kind\":\"key\",\"zone\":%lu,\"label\":\"%s\",\"reason\":\"compromised\"}",
	    (unsigned long)zone, label);
}

/* A list naming one key. */
static char *
key_list(long seq, CK_SLOT_ID zone, const char *label)
{
	char *e = key_entry(zone, label);
	char *l = signed_list(seq, e);

	free(e);
	return l;
}

static EV_ADMIN_FUNCTION_LIST *
admin(void)
{
	CK_INTERFACE *iface = NULL;
	CK_VERSION v = { 1, 0 };
	EV_ADMIN_FUNCTION_LIST *a;

	ck_assert_int_eq(F->C_GetInterface((CK_UTF8CHAR *)EV_ADMIN_INTERFACE_NAME, &v, &iface, 0),
	    CKR_OK);
	ck_assert_ptr_nonnull(iface);
	a = iface->pFunctionList;
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(a->version.major, 1);
	ck_assert_int_eq(a->version.minor, 0);
	return a;
}

/* EV_ApplyRevocationList on a list's text (no assertion: usable in children). */
static CK_RV
apply_with(EV_ADMIN_FUNCTION_LIST *a, const char *list, size_t len, CK_ULONG *seq)
{
	return a->EV_ApplyRevocationList((CK_BYTE_PTR)list, (CK_ULONG)len, seq);
}

static CK_RV
apply(const char *list, CK_ULONG *seq)
{
	return apply_with(admin(), list, strlen(list), seq);
}

/* Keys, signatures, objects. */

/* An EC P-256 token key pair with label and CKA_ID id on both halves. */
static void
gen_key(CK_SESSION_HANDLE h, const char *label, const char *id, CK_OBJECT_HANDLE *pub,
    CK_OBJECT_HANDLE *priv)
{
	CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_ATTRIBUTE pubt[] = {
		{ CKA_EC_PARAMS, (void *)env_p256, sizeof(env_p256) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, (void *)id, strlen(id) },
		{ CKA_VERIFY, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE privt[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, (void *)id, strlen(id) },
		{ CKA_SIGN, &yes, sizeof(yes) },
	};

	ck_assert_int_eq(F->C_GenerateKeyPair(h, &mech, pubt, 5, privt, 4, pub, priv), CKR_OK);
}

/* Hex of a string's bytes (for "id"). */
static char *
hex(const char *s)
{
	size_t n = strlen(s);
	char *out = malloc(2 * n + 1);

	ck_assert_ptr_nonnull(out);
	sodium_bin2hex(out, 2 * n + 1, (const unsigned char *)s, n);
	return out;
}

/* C_SignInit and C_Sign of MSG with ECDSA-SHA256 (sig: 64 bytes); the first failure. */
static CK_RV
try_sign(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE priv, CK_BYTE sig[64], CK_ULONG *len)
{
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_RV rv;

	*len = 64;
	rv = F->C_SignInit(h, &m, priv);
	if (rv != CKR_OK)
		return rv;
	return F->C_Sign(h, (CK_BYTE *)MSG, strlen(MSG), sig, len);
}

/* OpenSSL verifies a raw ECDSA-SHA256 signature of MSG by pub. */
static void
verify_sig(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE pub, const CK_BYTE *sig, CK_ULONG len)
{
	EVP_PKEY *k = env_spki(h, pub);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *der = NULL;
	int n;

	ck_assert_uint_eq(len, 64);
	n = env_ecdsa_der(sig, len, &der);
	ck_assert_ptr_nonnull(ctx);
	ck_assert_int_eq(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k), 1);
	ck_assert_int_eq(EVP_DigestVerify(ctx, der, (size_t)n, (const unsigned char *)MSG,
			     strlen(MSG)),
	    1);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(k);
	OPENSSL_free(der);
}

/* The key signs, and OpenSSL verifies the signature. */
static void
signs(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub)
{
	CK_BYTE sig[64];
	CK_ULONG len;

	ck_assert_int_eq(try_sign(h, priv, sig, &len), CKR_OK);
	verify_sig(h, pub, sig, len);
}

/* How many objects C_FindObjects finds with this label (*n), or the first failure. */
static CK_RV
find_label(CK_SESSION_HANDLE h, const char *label, CK_ULONG *n)
{
	CK_ATTRIBUTE t = { CKA_LABEL, (void *)label, strlen(label) };
	CK_OBJECT_HANDLE found[16];
	CK_RV rv;

	*n = 0;
	rv = F->C_FindObjectsInit(h, &t, 1);
	if (rv != CKR_OK)
		return rv;
	rv = F->C_FindObjects(h, found, 16, n);
	(void)F->C_FindObjectsFinal(h);
	return rv;
}

static CK_ULONG
count_label(CK_SESSION_HANDLE h, const char *label)
{
	CK_ULONG n;

	ck_assert_int_eq(find_label(h, label, &n), CKR_OK);
	return n;
}

static int
slot_listed(CK_BBOOL present, CK_SLOT_ID slot)
{
	CK_SLOT_ID slots[32];
	CK_ULONG n = 32, i;

	ck_assert_int_eq(F->C_GetSlotList(present, slots, &n), CKR_OK);
	for (i = 0; i < n; i++)
		if (slots[i] == slot)
			return 1;
	return 0;
}

/* The free slot (it comes last). */
static CK_SLOT_ID
free_slot(void)
{
	CK_SLOT_ID slots[32];
	CK_ULONG n = 32;

	ck_assert_int_eq(F->C_GetSlotList(CK_FALSE, slots, &n), CKR_OK);
	ck_assert_uint_ge(n, 1);
	return slots[n - 1];
}

/* Revocation history rows: refused (applied = 0) or applied. */
static long
revlog_count(int applied)
{
	char *q = fmt("SELECT count(*) FROM revlog WHERE applied = %d", applied);
	long n = env_sql_long(q);

	free(q);
	return n;
}

/* Wait (DEADLINE) until the history has want rows of this kind. */
static void
wait_revlog(int applied, long want)
{
	double end = now_s() + DEADLINE;
	long n;

	while ((n = revlog_count(applied)) < want && now_s() < end)
		nap_ms(10);
	ck_assert_msg(n == want, "revlog rows with applied = %d: %ld, expected %ld", applied, n,
	    want);
}

/* Key revocation. */

struct view_arg {
	CK_SLOT_ID slot;
	CK_OBJECT_HANDLE victim, other;
	const char *label;
};

/*
 * What a process sees of a revoked key: h a session, pre one where a
 * signature with the key was initialised before the revocation. Then a
 * signature by the other key.
 */
static void
view_of_revoked(CK_SESSION_HANDLE h, CK_SESSION_HANDLE pre, const struct view_arg *a,
    CK_RV rv[5], CK_RV *other_rv, CK_BYTE sig[64], CK_ULONG *siglen)
{
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_BYTE buf[64];
	CK_ULONG len = sizeof(buf), n = 99;

	rv[0] = F->C_SignInit(h, &m, a->victim);
	rv[1] = get_label(h, a->victim);
	rv[2] = find_label(h, a->label, &n);
	if (rv[2] == CKR_OK)
		rv[2] = n; /* 0 expected */
	else
		rv[2] = 1000 + rv[2];
	rv[3] = F->C_Sign(pre, (CK_BYTE *)MSG, strlen(MSG), buf, &len);
	len = sizeof(buf);
	rv[4] = F->C_Sign(pre, (CK_BYTE *)MSG, strlen(MSG), buf, &len);
	*other_rv = try_sign(h, a->other, sig, siglen);
}

static void
check_view(const char *who, const CK_RV rv[5])
{
	ck_assert_msg(rv[0] == CKR_KEY_HANDLE_INVALID, "%s: C_SignInit on the revoked key: 0x%lx",
	    who, rv[0]);
	ck_assert_msg(rv[1] == CKR_OBJECT_HANDLE_INVALID,
	    "%s: C_GetAttributeValue on the revoked key: 0x%lx", who, rv[1]);
	ck_assert_msg(rv[2] == 0, "%s: C_FindObjects by the revoked label: %lu (>= 1000: error)",
	    who, rv[2]);
	ck_assert_msg(rv[3] == CKR_KEY_HANDLE_INVALID,
	    "%s: C_Sign of an operation started before: 0x%lx", who, rv[3]);
	ck_assert_msg(rv[4] == CKR_OPERATION_NOT_INITIALIZED,
	    "%s: C_Sign again after the refused one: 0x%lx", who, rv[4]);
}

static void
kid_view(int rd, int wr, void *arg)
{
	const struct view_arg *a = arg;
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_SESSION_HANDLE h, pre;
	CK_RV rv[5], orv;
	CK_BYTE sig[64];
	CK_ULONG siglen = 0, i;
	CK_RV r;

	r = kid_init();
	if (r == CKR_OK)
		r = kid_session(a->slot, 0, &h);
	if (r == CKR_OK)
		r = kid_session(a->slot, 0, &pre);
	if (r == CKR_OK)
		r = F->C_SignInit(pre, &m, a->victim);
	put(wr, r);
	if (r != CKR_OK)
		_exit(1);
	(void)take(rd); /* the list is applied */
	view_of_revoked(h, pre, a, rv, &orv, sig, &siglen);
	for (i = 0; i < 5; i++)
		put(wr, rv[i]);
	put(wr, orv);
	put_bytes(wr, sig, orv == CKR_OK ? siglen : 0);
	(void)F->C_Finalize(NULL);
	_exit(0);
}

/*
 * A list naming (zone, label): in this process and in another, the key is
 * gone (handle, search, an operation already started), the other key of
 * the zone still signs.
 */
START_TEST(test_key_list_revokes_in_every_process)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h, pre;
	CK_OBJECT_HANDLE vpub, vpriv, opub, opriv;
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	struct view_arg a;
	struct kid k;
	CK_RV rv[5], orv;
	CK_BYTE sig[64];
	CK_ULONG siglen, seq = 0, i;
	char *list;

	env_init();
	slot = env_new_zone("keys");
	h = env_session(slot, 1, 1);
	gen_key(h, "victim", "v", &vpub, &vpriv);
	gen_key(h, "other", "o", &opub, &opriv);
	signs(h, vpriv, vpub);
	pre = env_session(slot, 0, 1);
	ck_assert_int_eq(F->C_SignInit(pre, &m, vpriv), CKR_OK);

	a = (struct view_arg){ slot, vpriv, opriv, "victim" };
	kid_start(&k, kid_view, &a);
	kid_expect(&k, CKR_OK, "child: set-up and C_SignInit before the list");

	list = key_list(1, slot, "victim");
	ck_assert_int_eq(apply(list, &seq), CKR_OK);
	ck_assert_uint_eq(seq, 1);
	free(list);

	view_of_revoked(h, pre, &a, rv, &orv, sig, &siglen);
	check_view("this process", rv);
	ck_assert_int_eq(orv, CKR_OK);
	verify_sig(h, opub, sig, siglen);
	ck_assert_int_eq(get_label(h, vpub), CKR_OBJECT_HANDLE_INVALID);

	kid_put(&k, 1);
	for (i = 0; i < 5; i++)
		rv[i] = kid_get(&k);
	check_view("another process", rv);
	kid_expect(&k, CKR_OK, "another process: the other key signs");
	siglen = kid_get_bytes(&k, sig, sizeof(sig));
	verify_sig(h, opub, sig, siglen);
	kid_done(&k);
	signs(h, opriv, opub);
}
END_TEST

/* "id" and "generation" narrow a key entry to the keys that match both. */
START_TEST(test_key_list_narrowed_by_id_and_generation)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE p1, s1, p2, s2;
	CK_ULONG gen = 0, seq = 0;
	CK_ATTRIBUTE ga = { CKA_EV_GENERATION, &gen, sizeof(gen) };
	char *id1 = hex("k1"), *id2 = hex("k2"), *e, *list;

	env_init();
	slot = env_new_zone("narrow");
	h = env_session(slot, 1, 1);
	gen_key(h, "dup", "k1", &p1, &s1);
	gen_key(h, "dup", "k2", &p2, &s2);
	ck_assert_int_eq(F->C_GetAttributeValue(h, s1, &ga, 1), CKR_OK);
	ck_assert_uint_eq(gen, 1);
	ck_assert_uint_eq(count_label(h, "dup"), 4);

	/* By id: only the first pair. */
	e = fmt("{\"kind\":\"key\",\"zone\":%lu,\"label\":\"dup\",\"id\":\"%s\","
		"\"reason\":\"superseded\"}",
	    (unsigned long)slot, id1);
	list = signed_list(1, e);
	ck_assert_int_eq(apply(list, &seq), CKR_OK);
	ck_assert_uint_eq(seq, 1);
	free(e);
	free(list);
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){ CKM_ECDSA_SHA256, NULL, 0 }, s1),
	    CKR_KEY_HANDLE_INVALID);
	ck_assert_int_eq(get_label(h, p1), CKR_OBJECT_HANDLE_INVALID);
	ck_assert_uint_eq(count_label(h, "dup"), 2);
	signs(h, s2, p2);

	/* The second pair's id but another generation: nothing. */
	e = fmt("{\"kind\":\"key\",\"zone\":%lu,\"label\":\"dup\",\"id\":\"%s\","
		"\"generation\":2,\"reason\":\"superseded\"}",
	    (unsigned long)slot, id2);
	list = signed_list(2, e);
	ck_assert_int_eq(apply(list, &seq), CKR_OK);
	ck_assert_uint_eq(seq, 2);
	free(e);
	free(list);
	ck_assert_uint_eq(count_label(h, "dup"), 2);
	signs(h, s2, p2);

	/* Generation 1, any id: the second pair. */
	e = fmt("{\"kind\":\"key\",\"zone\":%lu,\"label\":\"dup\",\"generation\":1,"
		"\"reason\":\"superseded\"}",
	    (unsigned long)slot);
	list = signed_list(3, e);
	ck_assert_int_eq(apply(list, &seq), CKR_OK);
	free(e);
	free(list);
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){ CKM_ECDSA_SHA256, NULL, 0 }, s2),
	    CKR_KEY_HANDLE_INVALID);
	ck_assert_uint_eq(count_label(h, "dup"), 0);
	free(id1);
	free(id2);
}
END_TEST

/*
 * Lists are cumulative: an entry acts once, on what exists when it is
 * first applied. A later list repeating it leaves the replacement key made
 * under the same label alone, and an entry naming a zone not made yet does
 * not revoke that zone when it comes.
 */
START_TEST(test_cumulative_list_acts_once)
{
	CK_SLOT_ID slot, next;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE p1, s1, p2, s2, p3, s3;
	CK_ULONG seq = 0;
	char *e1, *e2, *e3, *both, *list;

	env_init();
	slot = env_new_zone("cumul");
	next = free_slot();
	h = env_session(slot, 1, 1);
	gen_key(h, "web", "w1", &p1, &s1);
	gen_key(h, "api", "a1", &p2, &s2);

	e1 = key_entry(slot, "web");
	e3 = fmt("{\"kind\":\"zone\",\"zone\":%lu,\"reason\":\"not yet\"}",
	    (unsigned long)next);
	both = fmt("%s,%s", e1, e3);
	list = signed_list(1, both);
	ck_assert_int_eq(apply(list, &seq), CKR_OK);
	free(list);
	free(both);
	ck_assert_uint_eq(count_label(h, "web"), 0);

	/* The operator replaces the key; the next list repeats the entry and adds one. */
	gen_key(h, "web", "w2", &p3, &s3);
	e2 = key_entry(slot, "api");
	both = fmt("%s,%s,%s", e1, e3, e2);
	list = signed_list(2, both);
	ck_assert_int_eq(apply(list, &seq), CKR_OK);
	ck_assert_uint_eq(seq, 2);
	free(list);
	free(both);
	ck_assert_uint_eq(count_label(h, "web"), 2);
	signs(h, s3, p3);
	ck_assert_uint_eq(count_label(h, "api"), 0);

	/* The zone the list named before it existed is made, and stays. */
	ck_assert_uint_eq(env_new_zone("later"), next);
	ck_assert_uint_eq(slot_listed(CK_TRUE, next), 1);
	free(e1);
	free(e2);
	free(e3);
}
END_TEST

/*
 * An operation under way keeps no way around a revocation, even when its
 * key's attributes were changed meanwhile (the object is read again in
 * place, not replaced).
 */
START_TEST(test_operation_after_attribute_change_revoked)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h1, h2;
	CK_OBJECT_HANDLE pub, priv;
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_BYTE data[] = "data", sig[64];
	CK_ULONG len = sizeof(sig), seq = 0;
	CK_ATTRIBUTE id = { CKA_ID, "new-id", 6 };
	char *list;

	env_init();
	slot = env_new_zone("inplace");
	h1 = env_session(slot, 1, 1);
	h2 = env_session(slot, 1, 0);
	gen_key(h1, "moved", "m1", &pub, &priv);
	ck_assert_int_eq(F->C_SignInit(h1, &m, priv), CKR_OK);
	ck_assert_int_eq(F->C_SignUpdate(h1, data, 4), CKR_OK);
	ck_assert_int_eq(F->C_SetAttributeValue(h2, priv, &id, 1), CKR_OK);
	ck_assert_int_eq(F->C_SignUpdate(h1, data, 4), CKR_OK);
	list = key_list(1, slot, "moved");
	ck_assert_int_eq(apply(list, &seq), CKR_OK);
	free(list);
	ck_assert_int_eq(F->C_SignUpdate(h1, data, 4), CKR_KEY_HANDLE_INVALID);
	ck_assert_int_eq(F->C_SignFinal(h1, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
	/* Closing a revoked zone's sessions in bulk still works. */
	ck_assert_int_eq(F->C_CloseAllSessions(slot), CKR_OK);
}
END_TEST

/* Zone and device revocation. */

/*
 * A session of a revoked zone: closed with its token, as PKCS#11 says of a
 * removed token (CKR_DEVICE_REMOVED is for a call the removal overtook).
 */
static void
session_removed(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key)
{
	CK_SESSION_INFO si;
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_ATTRIBUTE t = { CKA_SIGN, &yes, sizeof(yes) };

	ck_assert_int_eq(F->C_GetSessionInfo(h, &si), CKR_SESSION_HANDLE_INVALID);
	ck_assert_int_eq(F->C_SignInit(h, &m, key), CKR_SESSION_HANDLE_INVALID);
	ck_assert_int_eq(F->C_FindObjectsInit(h, &t, 1), CKR_SESSION_HANDLE_INVALID);
	ck_assert_int_eq(F->C_CloseSession(h), CKR_SESSION_HANDLE_INVALID);
}

/* The slot of a revoked zone: still there, without a token. */
static void
zone_gone(CK_SLOT_ID slot)
{
	CK_SESSION_HANDLE h;
	CK_TOKEN_INFO ti;
	CK_SLOT_INFO si;

	ck_assert_int_eq(F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h),
	    CKR_TOKEN_NOT_PRESENT);
	ck_assert_int_eq(F->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
			     &h),
	    CKR_TOKEN_NOT_PRESENT);
	ck_assert_int_eq(F->C_GetTokenInfo(slot, &ti), CKR_TOKEN_NOT_PRESENT);
	ck_assert_int_eq(F->C_GetSlotInfo(slot, &si), CKR_OK);
	ck_assert(!(si.flags & CKF_TOKEN_PRESENT));
	ck_assert(!slot_listed(CK_TRUE, slot));
	ck_assert(slot_listed(CK_FALSE, slot));
}

struct apply_arg {
	const char *list;
};

/* A child that applies a list through the admin interface and reports the code. */
static void
kid_apply(int rd, int wr, void *arg)
{
	const struct apply_arg *a = arg;
	CK_ULONG seq = 0;
	CK_RV rv = kid_init();

	if (rv == CKR_OK)
		rv = apply_with(admin(), a->list, strlen(a->list), &seq);
	put(wr, rv);
	put(wr, seq);
	(void)F->C_Finalize(NULL);
	_exit(0);
}

/* Apply a list in another process. */
static void
apply_elsewhere(const char *list, CK_ULONG want_seq)
{
	struct apply_arg a = { list };
	struct kid k;

	kid_start(&k, kid_apply, &a);
	kid_expect(&k, CKR_OK, "another process: EV_ApplyRevocationList");
	kid_expect(&k, want_seq, "another process: the sequence applied");
	kid_done(&k);
}

START_TEST(test_zone_list)
{
	CK_SLOT_ID za, zb;
	CK_SESSION_HANDLE ra, wa, hb;
	CK_OBJECT_HANDLE apub, apriv, bpub, bpriv;
	char *e, *list;

	env_init();
	za = env_new_zone("zone-a");
	zb = env_new_zone("zone-b");
	wa = env_session(za, 1, 1);
	ra = env_session(za, 0, 1);
	gen_key(wa, "a", "a", &apub, &apriv);
	hb = env_session(zb, 1, 1);
	gen_key(hb, "b", "b", &bpub, &bpriv);
	ck_assert(slot_listed(CK_TRUE, za));

	e = fmt("{\"kind\":\"zone\",\"zone\":%lu,\"reason\":\"decommissioned\"}",
	    (unsigned long)za);
	list = signed_list(1, e);
	apply_elsewhere(list, 1);
	free(e);
	free(list);

	session_removed(ra, apriv);
	session_removed(wa, apriv);
	zone_gone(za);
	/* The other zone keeps working. */
	ck_assert(slot_listed(CK_TRUE, zb));
	signs(hb, bpriv, bpub);
	hb = env_session(zb, 0, 1);
	signs(hb, bpriv, bpub);
}
END_TEST

/* Take every slot event waiting (this process's own zone creations). */
static void
drain_events(void)
{
	CK_SLOT_ID slot;
	int i;

	for (i = 0; i < 64; i++)
		if (F->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL) == CKR_NO_EVENT)
			return;
	ck_abort_msg("slot events without end");
}

START_TEST(test_device_list)
{
	CK_SLOT_ID za, zb, fr, slot;
	CK_SESSION_HANDLE ha, hb;
	CK_OBJECT_HANDLE apub, apriv, bpub, bpriv;
	CK_UTF8CHAR lab[32];
	int seen_a = 0, seen_b = 0;
	double end;
	CK_RV rv;
	char *list;

	env_init();
	za = env_new_zone("zone-a");
	zb = env_new_zone("zone-b");
	fr = free_slot();
	ha = env_session(za, 1, 1);
	gen_key(ha, "a", "a", &apub, &apriv);
	hb = env_session(zb, 1, 1);
	gen_key(hb, "b", "b", &bpub, &bpriv);
	drain_events();

	/*
	 * Through the watched directory, applied by this process's watcher;
	 * the slot events say when this process has acted on it.
	 */
	list = signed_list(1, "{\"kind\":\"device\",\"reason\":\"stolen\"}");
	env_drop("device.json", list, strlen(list));
	free(list);
	end = now_s() + DEADLINE;
	while (!(seen_a && seen_b) && now_s() < end) {
		rv = F->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL);
		if (rv == CKR_NO_EVENT) {
			nap_ms(10);
			continue;
		}
		ck_assert_int_eq(rv, CKR_OK);
		seen_a |= slot == za;
		seen_b |= slot == zb;
	}
	ck_assert_msg(seen_a && seen_b, "no slot events for both zones in %d s", DEADLINE);

	session_removed(ha, apriv);
	session_removed(hb, bpriv);
	zone_gone(za);
	zone_gone(zb);
	env_label(lab, "new-zone");
	ck_assert_int_eq(F->C_InitToken(fr, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN), lab),
	    CKR_TOKEN_NOT_PRESENT);
}
END_TEST

/* Refusals. */

struct bad_list {
	const char *what;
	char *bytes;
	size_t len;
	CK_RV rv;
};

/*
 * Lists to refuse, each naming the key "victim" of zone with a sequence
 * above base unless it is a rollback (base is the last applied sequence).
 */
static size_t
bad_lists(CK_SLOT_ID zone, long base, struct bad_list *v)
{
	unsigned char opk[crypto_sign_PUBLICKEYBYTES], osk[crypto_sign_SECRETKEYBYTES];
	char *e = key_entry(zone, "victim");
	char *doc, *s;
	size_t n = 0, i;

	v[n++] = (struct bad_list){ "rollback: same sequence", key_list(base, zone, "victim"), 0,
		CKR_FUNCTION_REJECTED };
	v[n++] = (struct bad_list){ "rollback: older sequence",
		key_list(base - 1, zone, "victim"), 0, CKR_FUNCTION_REJECTED };

	doc = list_doc(DEVICE, base + 1, e);
	v[n++] = (struct bad_list){ "payload byte changed", envelope(doc, auth_sk, FLIP_PAYLOAD), 0,
		CKR_SIGNATURE_INVALID };
	v[n++] = (struct bad_list){ "signature bit changed",
		envelope(doc, auth_sk, FLIP_SIGNATURE), 0, CKR_SIGNATURE_INVALID };
	ck_assert_int_eq(crypto_sign_keypair(opk, osk), 0);
	v[n++] = (struct bad_list){ "signed by another key", envelope(doc, osk, AS_IS), 0,
		CKR_SIGNATURE_INVALID };
	s = envelope(doc, auth_sk, AS_IS);
	s[strlen(s) / 2] = '\0';
	v[n++] = (struct bad_list){ "truncated", s, 0, CKR_DATA_INVALID };
	free(doc);

	v[n++] = (struct bad_list){ "garbage",
		fmt("\x01\x02garbage\xff not a list at all %ld", base), 0, CKR_DATA_INVALID };
	doc = fmt("{\"version\":1,\"device\":\"%s\",\"sequence\":%ld,\"entries\":[%s", DEVICE,
	    base + 2, e);
	v[n++] = (struct bad_list){ "document not JSON", envelope(doc, auth_sk, AS_IS), 0,
		CKR_DATA_INVALID };
	free(doc);
	doc = fmt("{\"version\":1,\"device\":\"%s\",\"sequence\":%ld,\"issued_at\":1,"
		  "\"entries\":[{\"kind\":\"key\",\"zone\":%lu,\"lable\":\"victim\","
		  "\"reason\":\"typo\"}]}",
	    DEVICE, base + 3, (unsigned long)zone);
	v[n++] = (struct bad_list){ "unknown member in an entry", envelope(doc, auth_sk, AS_IS), 0,
		CKR_DATA_INVALID };
	free(doc);
	doc = fmt("{\"version\":1,\"device\":\"%s\",\"sequence\":%ld,\"issued_at\":1,"
		  "\"entries\":[{\"kind\":\"key\",\"zone\":%lu,\"label\":\"victim\"}]}",
	    DEVICE, base + 4, (unsigned long)zone);
	v[n++] = (struct bad_list){ "entry without a reason", envelope(doc, auth_sk, AS_IS), 0,
		CKR_DATA_INVALID };
	free(doc);
	doc = list_doc("another-device", base + 5, e);
	v[n++] = (struct bad_list){ "another device", envelope(doc, auth_sk, AS_IS), 0,
		CKR_DATA_INVALID };
	free(doc);
	free(e);
	for (i = 0; i < n; i++)
		v[i].len = strlen(v[i].bytes);
	return n;
}

START_TEST(test_admin_apply_rules)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE vpub, vpriv, opub, opriv;
	struct bad_list bad[16];
	CK_ULONG seq = 0;
	CK_RV rv;
	long refused;
	size_t n, i;
	char *first, *list;

	first = signed_list(5, "");
	ck_assert_int_eq(apply(first, &seq), CKR_CRYPTOKI_NOT_INITIALIZED);
	env_init();
	slot = env_new_zone("admin");
	h = env_session(slot, 1, 1);
	gen_key(h, "victim", "v", &vpub, &vpriv);
	gen_key(h, "other", "o", &opub, &opriv);

	ck_assert_int_eq(apply(first, &seq), CKR_OK);
	ck_assert_uint_eq(seq, 5);
	/* The same bytes again: nothing to do. */
	seq = 0;
	ck_assert_int_eq(apply(first, NULL), CKR_OK);
	ck_assert_int_eq(apply(first, &seq), CKR_OK);
	refused = revlog_count(0);

	n = bad_lists(slot, 5, bad);
	for (i = 0; i < n; i++) {
		rv = apply_with(admin(), bad[i].bytes, bad[i].len, &seq);
		ck_assert_msg(rv == bad[i].rv, "%s: 0x%lx, expected 0x%lx", bad[i].what, rv,
		    bad[i].rv);
		/* Nothing changed, and the refusal is in the history. */
		signs(h, vpriv, vpub);
		ck_assert_uint_eq(count_label(h, "victim"), 2);
		ck_assert_msg(revlog_count(0) > refused, "%s: refusal not recorded", bad[i].what);
		refused = revlog_count(0);
		free(bad[i].bytes);
	}

	/* A good list after all that still applies. */
	list = key_list(6, slot, "victim");
	ck_assert_int_eq(apply(list, &seq), CKR_OK);
	ck_assert_uint_eq(seq, 6);
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){ CKM_ECDSA_SHA256, NULL, 0 }, vpriv),
	    CKR_KEY_HANDLE_INVALID);
	signs(h, opriv, opub);
	free(list);
	free(first);
}
END_TEST

/*
 * The same refusals through the watched directory: nothing changes, each
 * refused file is one row of the history, and a file is read once only
 * (under another name, and after a restart).
 */
START_TEST(test_dropped_refusals_recorded_once)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE vpub, vpriv;
	struct bad_list bad[16];
	size_t n, i;
	char *list, name[64];

	env_init();
	slot = env_new_zone("dropped");
	h = env_session(slot, 1, 1);
	gen_key(h, "victim", "v", &vpub, &vpriv);
	ck_assert_int_eq(revlog_count(0), 0);
	ck_assert_int_eq(revlog_count(1), 0);

	list = signed_list(5, "");
	env_drop("list-5.json", list, strlen(list));
	free(list);
	wait_revlog(1, 1);

	n = bad_lists(slot, 5, bad);
	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "bad-%zu.json", i);
		env_drop(name, bad[i].bytes, bad[i].len);
		wait_revlog(0, (long)i + 1);
		signs(h, vpriv, vpub);
		ck_assert_uint_eq(count_label(h, "victim"), 2);
	}
	/* The same bytes under other names, and a dotfile: not read again. */
	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "again-%zu.json", i);
		env_drop(name, bad[i].bytes, bad[i].len);
	}
	list = key_list(6, slot, "victim");
	env_drop(".in-transit.json", list, strlen(list));
	free(list);
	/* A good list after them: once it is applied, they have been seen. */
	list = signed_list(7, "");
	env_drop("list-7.json", list, strlen(list));
	free(list);
	wait_revlog(1, 2);
	ck_assert_int_eq(revlog_count(0), (long)n);
	signs(h, vpriv, vpub);

	/* A restart reads the directory again: nothing new. */
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_init();
	ck_assert_int_eq(revlog_count(0), (long)n);
	ck_assert_int_eq(revlog_count(1), 2);
	h = env_session(slot, 1, 1);
	signs(h, vpriv, vpub);
	for (i = 0; i < n; i++)
		free(bad[i].bytes);
}
END_TEST

/* Local revocation by the zone's SO. */

static CK_RV
revoke_local(CK_SESSION_HANDLE h, CK_ULONG kind, const char *label, const char *reason,
    CK_ULONG *count)
{
	EV_REVOCATION_ENTRY e = {
		.kind = kind,
		.pLabel = (CK_UTF8CHAR_PTR)label,
		.ulLabelLen = label != NULL ? strlen(label) : 0,
		.pReason = (CK_UTF8CHAR_PTR)reason,
		.ulReasonLen = reason != NULL ? strlen(reason) : 0,
	};

	return admin()->EV_Revoke(h, &e, count);
}

START_TEST(test_local_revoke)
{
	CK_SLOT_ID slot, other;
	CK_SESSION_HANDLE h, ho;
	CK_OBJECT_HANDLE lpub, lpriv, kpub, kpriv, opub, opriv;
	CK_ULONG count = 99;
	CK_SESSION_INFO si;

	env_init();
	slot = env_new_zone("local");
	other = env_new_zone("bystander");
	h = env_session(slot, 1, 1);
	gen_key(h, "loc", "l", &lpub, &lpriv);
	gen_key(h, "keep", "k", &kpub, &kpriv);
	ho = env_session(other, 1, 1);
	gen_key(ho, "loc", "l", &opub, &opriv);

	/* The user may not; nor a public session. */
	ck_assert_int_eq(revoke_local(h, EV_REVOKE_KEY, "loc", "compromised", &count),
	    CKR_USER_NOT_LOGGED_IN);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	ck_assert_int_eq(revoke_local(h, EV_REVOKE_KEY, "loc", "compromised", &count),
	    CKR_USER_NOT_LOGGED_IN);

	/* The SO, read-write. */
	ck_assert_int_eq(F->C_Login(h, CKU_SO, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN)), CKR_OK);
	ck_assert_int_eq(revoke_local(h, EV_REVOKE_KEY, NULL, "compromised", &count),
	    CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(revoke_local(h, EV_REVOKE_KEY, "loc", "", &count), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(revoke_local(h, 99, "loc", "compromised", &count), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(admin()->EV_Revoke(h, NULL, &count), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(revoke_local(h, EV_REVOKE_KEY, "nothing-here", "compromised", &count),
	    CKR_KEY_HANDLE_INVALID);
	ck_assert_int_eq(revoke_local(h, EV_REVOKE_KEY, "loc", "compromised", &count), CKR_OK);
	ck_assert_uint_eq(count, 2);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);

	/* Gone here; "keep" signs; the same label in another zone is untouched. */
	ck_assert_int_eq(F->C_Login(h, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN)),
	    CKR_OK);
	ck_assert_uint_eq(count_label(h, "loc"), 0);
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){ CKM_ECDSA_SHA256, NULL, 0 }, lpriv),
	    CKR_KEY_HANDLE_INVALID);
	signs(h, kpriv, kpub);
	signs(ho, opriv, opub);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);

	/* The whole zone. */
	ck_assert_int_eq(F->C_Login(h, CKU_SO, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN)), CKR_OK);
	ck_assert_int_eq(revoke_local(h, EV_REVOKE_ZONE, NULL, "decommissioned", &count), CKR_OK);
	ck_assert_int_ne(F->C_GetSessionInfo(h, &si), CKR_OK);
	zone_gone(slot);
	signs(ho, opriv, opub);
}
END_TEST

/* Persistence. */

START_TEST(test_revocation_persists_and_applies_at_initialize)
{
	CK_SLOT_ID za, zb;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE p, s, lpub, lpriv, kpub, kpriv;
	char *e, *list;

	env_init();
	za = env_new_zone("zone-a");
	zb = env_new_zone("zone-b");
	h = env_session(za, 1, 1);
	gen_key(h, "gone", "g", &p, &s);
	gen_key(h, "later", "l", &lpub, &lpriv);
	gen_key(h, "stays", "s", &kpub, &kpriv);

	e = fmt("{\"kind\":\"key\",\"zone\":%lu,\"label\":\"gone\",\"reason\":\"r\"},"
		"{\"kind\":\"zone\",\"zone\":%lu,\"reason\":\"r\"}",
	    (unsigned long)za, (unsigned long)zb);
	list = signed_list(1, e);
	ck_assert_int_eq(apply(list, NULL), CKR_OK);
	free(e);
	free(list);

	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_init();
	h = env_session(za, 1, 1);
	ck_assert_uint_eq(count_label(h, "gone"), 0);
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){ CKM_ECDSA_SHA256, NULL, 0 }, s),
	    CKR_KEY_HANDLE_INVALID);
	zone_gone(zb);
	ck_assert_uint_eq(count_label(h, "later"), 2);
	signs(h, lpriv, lpub);

	/* Dropped while no process has the module: applied by the next C_Initialize. */
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	list = key_list(2, za, "later");
	env_drop("list-2.json", list, strlen(list));
	free(list);
	env_init();
	h = env_session(za, 1, 1);
	ck_assert_uint_eq(count_label(h, "later"), 0);
	ck_assert_int_eq(F->C_SignInit(h, &(CK_MECHANISM){ CKM_ECDSA_SHA256, NULL, 0 }, lpriv),
	    CKR_KEY_HANDLE_INVALID);
	ck_assert_uint_eq(count_label(h, "stays"), 2);
	signs(h, kpriv, kpub);
	zone_gone(zb);
}
END_TEST

/* Cross-process destroy. */

struct destroy_arg {
	CK_SLOT_ID slot;
	CK_OBJECT_HANDLE obj;
};

static void
kid_destroy(int rd, int wr, void *arg)
{
	const struct destroy_arg *a = arg;
	CK_SESSION_HANDLE h;
	CK_RV rv = kid_init();

	if (rv == CKR_OK)
		rv = kid_session(a->slot, 1, &h);
	if (rv == CKR_OK)
		rv = F->C_DestroyObject(h, a->obj);
	put(wr, rv);
	(void)F->C_Finalize(NULL);
	_exit(0);
}

START_TEST(test_destroy_seen_by_other_process)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE pub, priv;
	struct destroy_arg a;
	struct kid k;

	env_init();
	slot = env_new_zone("destroy");
	h = env_session(slot, 1, 1);
	gen_key(h, "doomed", "d", &pub, &priv);
	ck_assert_int_eq(get_label(h, priv), CKR_OK);
	signs(h, priv, pub);

	a = (struct destroy_arg){ slot, priv };
	kid_start(&k, kid_destroy, &a);
	kid_expect(&k, CKR_OK, "another process: C_DestroyObject");
	kid_done(&k);
	ck_assert_int_eq(get_label(h, priv), CKR_OBJECT_HANDLE_INVALID);
	ck_assert_int_eq(get_label(h, pub), CKR_OK);
}
END_TEST

/* Slot events. */

/* Poll C_WaitForSlotEvent(CKF_DONT_BLOCK) until an event (DEADLINE); its slot. */
static CK_SLOT_ID
poll_event(void)
{
	CK_SLOT_ID slot = 0;
	CK_RV rv = env_poll_slot_event(&slot);

	ck_assert_msg(rv == CKR_OK, "C_WaitForSlotEvent(CKF_DONT_BLOCK): 0x%lx", rv);
	return slot;
}

/* A zone with one key pair; then a restart, so that nothing happened since C_Initialize. */
static CK_SLOT_ID
zone_with_key(const char *zlabel, const char *klabel, CK_OBJECT_HANDLE *pub,
    CK_OBJECT_HANDLE *priv)
{
	CK_SLOT_ID slot = env_new_zone(zlabel);
	CK_SESSION_HANDLE h = env_session(slot, 1, 1);

	gen_key(h, klabel, klabel, pub, priv);
	ck_assert_int_eq(F->C_CloseSession(h), CKR_OK);
	return slot;
}

static void
restart(void)
{
	CK_SLOT_ID slot;

	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_init();
	ck_assert_int_eq(F->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), CKR_NO_EVENT);
}

START_TEST(test_event_arguments_and_none)
{
	CK_SLOT_ID slot;
	CK_OBJECT_HANDLE pub, priv;
	int reserved;

	ck_assert_int_eq(F->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL),
	    CKR_CRYPTOKI_NOT_INITIALIZED);
	env_init();
	ck_assert_int_eq(F->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), CKR_NO_EVENT);
	(void)zone_with_key("quiet", "k", &pub, &priv);
	restart();
	ck_assert_int_eq(F->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), CKR_NO_EVENT);
	ck_assert_int_eq(F->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, &reserved),
	    CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(F->C_WaitForSlotEvent(CKF_DONT_BLOCK, NULL, NULL), CKR_ARGUMENTS_BAD);
}
END_TEST

START_TEST(test_event_for_revocation_elsewhere)
{
	CK_SLOT_ID slot, got;
	CK_OBJECT_HANDLE pub, priv;
	char *list;

	env_init();
	slot = zone_with_key("evzone", "k", &pub, &priv);
	restart();
	list = key_list(1, slot, "k");
	apply_elsewhere(list, 1);
	free(list);
	got = poll_event();
	ck_assert_uint_eq(got, slot);
}
END_TEST

struct waiter {
	pthread_t t;
	CK_FLAGS flags;
	CK_SLOT_ID slot;
	CK_RV rv;
};

static void *
wait_thread(void *arg)
{
	struct waiter *w = arg;

	w->rv = F->C_WaitForSlotEvent(w->flags, &w->slot, NULL);
	return NULL;
}

/* Join a waiter within DEADLINE. */
static void
waiter_join(struct waiter *w, const char *what)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += DEADLINE;
	ck_assert_msg(pthread_timedjoin_np(w->t, NULL, &ts) == 0,
	    "%s: C_WaitForSlotEvent(0) still blocked after %d s", what, DEADLINE);
}

START_TEST(test_event_blocking_wait)
{
	CK_SLOT_ID slot;
	CK_OBJECT_HANDLE pub, priv;
	struct waiter w = { .flags = 0, .rv = 0xffff };
	char *list;

	env_init();
	slot = zone_with_key("blocking", "k", &pub, &priv);
	restart();
	ck_assert_int_eq(pthread_create(&w.t, NULL, wait_thread, &w), 0);
	nap_ms(100); /* likely blocked by now; the result is the same if not */
	list = key_list(1, slot, "k");
	apply_elsewhere(list, 1);
	free(list);
	waiter_join(&w, "a list applied by another process");
	ck_assert_int_eq(w.rv, CKR_OK);
	ck_assert_uint_eq(w.slot, slot);
}
END_TEST

static void
kid_init_token(int rd, int wr, void *arg)
{
	CK_SLOT_ID slots[32];
	CK_ULONG n = 32;
	CK_UTF8CHAR lab[32];
	CK_RV rv = kid_init();

	if (rv == CKR_OK)
		rv = F->C_GetSlotList(CK_FALSE, slots, &n);
	if (rv == CKR_OK && n == 0)
		rv = CKR_GENERAL_ERROR;
	memset(lab, ' ', sizeof(lab));
	memcpy(lab, "from-afar", 9);
	if (rv == CKR_OK)
		rv = F->C_InitToken(slots[n - 1], (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN), lab);
	put(wr, rv);
	put(wr, rv == CKR_OK ? slots[n - 1] : 0);
	(void)F->C_Finalize(NULL);
	_exit(0);
}

START_TEST(test_event_for_zone_created_elsewhere)
{
	CK_SLOT_ID slot, fr;
	CK_TOKEN_INFO ti;
	struct kid k;

	env_init();
	fr = free_slot();
	kid_start(&k, kid_init_token, NULL);
	kid_expect(&k, CKR_OK, "another process: C_InitToken");
	slot = kid_get(&k);
	kid_done(&k);
	ck_assert_uint_eq(slot, fr);
	ck_assert_uint_eq(poll_event(), slot);
	ck_assert_int_eq(F->C_GetTokenInfo(slot, &ti), CKR_OK);
	ck_assert(ti.flags & CKF_TOKEN_INITIALIZED);
}
END_TEST

START_TEST(test_event_two_slots_both_delivered)
{
	CK_SLOT_ID za, zb, s1 = 0, s2 = 0;
	CK_OBJECT_HANDLE pub, priv;
	char *list;

	env_init();
	za = zone_with_key("two-a", "ka", &pub, &priv);
	zb = zone_with_key("two-b", "kb", &pub, &priv);
	restart();
	list = key_list(1, za, "ka");
	apply_elsewhere(list, 1);
	free(list);
	list = key_list(2, zb, "kb");
	apply_elsewhere(list, 2);
	free(list);
	/* Both happened before this process asks. */
	ck_assert_int_eq(F->C_WaitForSlotEvent(CKF_DONT_BLOCK, &s1, NULL), CKR_OK);
	ck_assert_int_eq(F->C_WaitForSlotEvent(CKF_DONT_BLOCK, &s2, NULL), CKR_OK);
	ck_assert_msg((s1 == za && s2 == zb) || (s1 == zb && s2 == za),
	    "events for slots %lu and %lu, expected %lu and %lu", s1, s2, za, zb);
}
END_TEST

START_TEST(test_event_finalize_wakes_waiter)
{
	struct waiter w = { .flags = 0, .rv = 0xffff };

	env_init();
	ck_assert_int_eq(pthread_create(&w.t, NULL, wait_thread, &w), 0);
	nap_ms(100); /* likely blocked by now; the result is the same if not */
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	waiter_join(&w, "C_Finalize in another thread");
	ck_assert_int_eq(w.rv, CKR_CRYPTOKI_NOT_INITIALIZED);
}
END_TEST

/* The headline: a signer and a waiter in two processes; the test drops a list. */

struct scene {
	CK_SLOT_ID slot;
	CK_OBJECT_HANDLE hot, spare;
};

static void
kid_signer(int rd, int wr, void *arg)
{
	const struct scene *sc = arg;
	CK_SESSION_HANDLE h;
	CK_BYTE sig[64];
	CK_ULONG len, signed_ok = 0;
	double end;
	CK_RV rv = kid_init();

	if (rv == CKR_OK)
		rv = kid_session(sc->slot, 0, &h);
	if (rv == CKR_OK)
		rv = try_sign(h, sc->hot, sig, &len);
	put(wr, rv); /* signing */
	if (rv != CKR_OK)
		_exit(1);
	end = now_s() + CHILD_DEADLINE;
	while ((rv = try_sign(h, sc->hot, sig, &len)) == CKR_OK) {
		signed_ok++;
		if (now_s() > end) {
			rv = KID_TIMEOUT;
			break;
		}
	}
	put(wr, rv);
	put(wr, signed_ok);
	rv = try_sign(h, sc->spare, sig, &len);
	put(wr, rv);
	put_bytes(wr, sig, rv == CKR_OK ? len : 0);
	_exit(0);
}

static void
kid_waiter(int rd, int wr, void *arg)
{
	CK_SLOT_ID slot = 0;
	CK_RV rv = kid_init();

	put(wr, rv); /* about to wait */
	if (rv != CKR_OK)
		_exit(1);
	rv = F->C_WaitForSlotEvent(0, &slot, NULL);
	put(wr, rv);
	put(wr, slot);
	_exit(0);
}

START_TEST(test_headline_signer_waiter_dropped_list)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE hpub, hpriv, spub, spriv;
	struct scene sc;
	struct kid signer, waiter;
	CK_BYTE sig[64];
	CK_ULONG len;
	char *list;

	env_init();
	slot = env_new_zone("scene");
	h = env_session(slot, 1, 1);
	gen_key(h, "hot", "h", &hpub, &hpriv);
	gen_key(h, "spare", "s", &spub, &spriv);
	sc = (struct scene){ slot, hpriv, spriv };

	kid_start(&waiter, kid_waiter, NULL);
	kid_start(&signer, kid_signer, &sc);
	kid_expect(&waiter, CKR_OK, "waiter: C_Initialize");
	kid_expect(&signer, CKR_OK, "signer: set-up and first signature");

	list = key_list(1, slot, "hot");
	env_drop("list-1.json", list, strlen(list));
	free(list);

	kid_expect(&signer, CKR_KEY_HANDLE_INVALID, "signer: the loop's end");
	(void)kid_get(&signer); /* signatures made before */
	kid_expect(&signer, CKR_OK, "signer: the spare key signs afterwards");
	len = kid_get_bytes(&signer, sig, sizeof(sig));
	verify_sig(h, spub, sig, len);
	kid_expect(&waiter, CKR_OK, "waiter: C_WaitForSlotEvent(0)");
	kid_expect(&waiter, slot, "waiter: the slot");
	kid_done(&signer);
	kid_done(&waiter);
	ck_assert_int_eq(get_label(h, hpriv), CKR_OBJECT_HANDLE_INVALID);
	signs(h, spriv, spub);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("revoke");
	TCase *tc = tcase_create("revocation");
	TCase *te = tcase_create("events");

	tcase_add_checked_fixture(tc, setup, env_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_key_list_revokes_in_every_process);
	tcase_add_test(tc, test_key_list_narrowed_by_id_and_generation);
	tcase_add_test(tc, test_cumulative_list_acts_once);
	tcase_add_test(tc, test_operation_after_attribute_change_revoked);
	tcase_add_test(tc, test_zone_list);
	tcase_add_test(tc, test_device_list);
	tcase_add_test(tc, test_admin_apply_rules);
	tcase_add_test(tc, test_dropped_refusals_recorded_once);
	tcase_add_test(tc, test_local_revoke);
	tcase_add_test(tc, test_revocation_persists_and_applies_at_initialize);
	tcase_add_test(tc, test_destroy_seen_by_other_process);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(te, setup, env_teardown);
	tcase_set_timeout(te, 120);
	tcase_add_test(te, test_event_arguments_and_none);
	tcase_add_test(te, test_event_for_revocation_elsewhere);
	tcase_add_test(te, test_event_blocking_wait);
	tcase_add_test(te, test_event_for_zone_created_elsewhere);
	tcase_add_test(te, test_event_two_slots_both_delivered);
	tcase_add_test(te, test_event_finalize_wakes_waiter);
	tcase_add_test(te, test_headline_signer_waiter_dropped_list);
	suite_add_tcase(s, te);
	return env_run(s);
}
