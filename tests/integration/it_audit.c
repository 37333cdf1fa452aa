/*
 * Integration tests of the audit trail's events (doc/audit.md): every
 * event kind is written by the action that should write it, with the
 * zone, user, object (label, CKA_ID, generation), outcome and reason it
 * should carry, and an action that should write nothing (signing,
 * searching, a session object) writes nothing. Several processes logging
 * in and making keys at once leave every line, numbered without a gap,
 * on one unbroken chain. No PIN and no key value ever reaches the file,
 * raw, in hex or in base64.
 *
 * The file is read here with json-c and the chain checked with
 * libsodium's BLAKE2b, independently of the module's code; the
 * many-processes trail is also verified with the tool's reader
 * (src/audit_read.h), checkpoints and .head included. Lists and
 * evidence are signed here with libsodium.
 *
 * Other processes are forked children that call C_Initialize themselves
 * and talk to the test through pipes; they never assert and are killed
 * by PID when the test ends, pass or fail.
 */
#include <check.h>
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sodium.h>

#include "audit.h"
#include "audit_read.h"
#include "config.h"
#include "envelope.h"
#include "harness.h"
#include "pkcs11/edgevault.h"
#include "root/root.h"
#include "secmem.h"
#include "store.h"

#define F env.f
#define B64 sodium_base64_VARIANT_ORIGINAL
#define DEVICE "test-device"

static unsigned char auth_pk[crypto_sign_PUBLICKEYBYTES], auth_sk[crypto_sign_SECRETKEYBYTES];
static unsigned char ver_pk[crypto_sign_PUBLICKEYBYTES], ver_sk[crypto_sign_SECRETKEYBYTES];
static CK_BBOOL yes = CK_TRUE;

/* Lines of the file already looked at by expect() (checkpoints included). */
static size_t seen;

/* The configuration: revocation and attestation keys, no syslog copy; extra after it. */
static void
conf(const char *extra)
{
	char pk[sodium_base64_ENCODED_LEN(crypto_sign_PUBLICKEYBYTES, B64)];
	char vk[sodium_base64_ENCODED_LEN(crypto_sign_PUBLICKEYBYTES, B64)];
	char *s;

	sodium_bin2base64(pk, sizeof(pk), auth_pk, sizeof(auth_pk), B64);
	sodium_bin2base64(vk, sizeof(vk), ver_pk, sizeof(ver_pk), B64);
	s = fmt("[attestation]\nprovider = result\nverifier_key = %s\nresult_path = %s/evidence.json\n"
		"[audit]\nsyslog = false\n%s",
	    vk, env.dir, extra != NULL ? extra : "");
	env_revocation_config(pk, s);
	free(s);
}

static void
setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	env_setup();
	ck_assert_int_ge(sodium_init(), 0);
	ck_assert_int_eq(crypto_sign_keypair(auth_pk, auth_sk), 0);
	ck_assert_int_eq(crypto_sign_keypair(ver_pk, ver_sk), 0);
	conf(NULL);
	seen = 0;
}

/* Reading the file. */

struct lines {
	char **raw;     /* each line without its newline */
	json_object **o;
	size_t n;
};

static char *
audit_path(void)
{
	return fmt("%s/store/audit.log", env.dir);
}

/* The whole file (NUL-terminated; "" when absent); *len its length. */
static char *
slurp(size_t *len)
{
	char *path = audit_path(), *buf;
	FILE *f = fopen(path, "rb");
	long n;

	free(path);
	*len = 0;
	if (f == NULL)
		return fmt("%s", "");
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	ck_assert_int_ge(n, 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Every line, parsed; the test fails on a line that is not a JSON object or not ended. */
static void
lines_read(struct lines *l)
{
	size_t len, cap = 0;
	char *buf = slurp(&len), *p = buf, *nl;

	memset(l, 0, sizeof(*l));
	while (p < buf + len) {
		nl = memchr(p, '\n', (size_t)(buf + len - p));
		ck_assert_msg(nl != NULL, "the last line of the audit file has no newline");
		*nl = '\0';
		if (l->n == cap) {
			cap = cap ? 2 * cap : 64;
			l->raw = realloc(l->raw, cap * sizeof(*l->raw));
			l->o = realloc(l->o, cap * sizeof(*l->o));
			ck_assert(l->raw != NULL && l->o != NULL);
		}
		l->raw[l->n] = strdup(p);
		ck_assert_ptr_nonnull(l->raw[l->n]);
		l->o[l->n] = json_tokener_parse(p);
		ck_assert_msg(l->o[l->n] != NULL &&
			json_object_is_type(l->o[l->n], json_type_object),
		    "line %zu is not a JSON object: %s", l->n + 1, p);
		l->n++;
		p = nl + 1;
	}
	free(buf);
}

static void
lines_free(struct lines *l)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		free(l->raw[i]);
		json_object_put(l->o[i]);
	}
	free(l->raw);
	free(l->o);
}

/* A member as a string; NULL when absent. */
static const char *
str(json_object *o, const char *name)
{
	json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, name, &v))
		return NULL;
	ck_assert_msg(json_object_is_type(v, json_type_string), "\"%s\" is not a string", name);
	return json_object_get_string(v);
}

/* A member as an integer; -1 when absent. */
static long long
num(json_object *o, const char *name)
{
	json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, name, &v))
		return -1;
	ck_assert_msg(json_object_is_type(v, json_type_int), "\"%s\" is not an integer", name);
	return (long long)json_object_get_int64(v);
}

static json_object *
member(json_object *o, const char *name)
{
	json_object *v = NULL;

	if (o == NULL || !json_object_object_get_ex(o, name, &v))
		return NULL;
	return v;
}

/* Lines the writer adds on its own, not the events of an action. */
static int
writer_line(json_object *o)
{
	const char *e = str(o, "event");

	/* Not root.reachable: written only after a root.unreachable, which a test expects. */
	return strcmp(e, "audit.checkpoint") == 0;
}

/* What a line must say; NULL / -1 members are not checked, "" / -2 must be absent. */
struct want {
	const char *event;
	const char *outcome;
	long long zone;
	const char *user;
	const char *label;
	const char *id;      /* CKA_ID in hex */
	long long generation;
	const char *reason;
};

static void
check_str(size_t line, const char *what, const char *got, const char *want, const char *raw)
{
	if (want == NULL)
		return;
	if (want[0] == '\0')
		ck_assert_msg(got == NULL, "line %zu: \"%s\" should be absent: %s", line, what, raw);
	else
		ck_assert_msg(got != NULL && strcmp(got, want) == 0,
		    "line %zu: \"%s\" is \"%s\", expected \"%s\": %s", line, what,
		    got ? got : "(absent)", want, raw);
}

static void
check_num(size_t line, const char *what, long long got, long long want, const char *raw)
{
	if (want == -1)
		return;
	ck_assert_msg(got == (want == -2 ? -1 : want), "line %zu: \"%s\" is %lld, expected %lld: %s",
	    line, what, got, want, raw);
}

/*
 * The lines written since the last call, the writer's own left out,
 * must be exactly want[0..n-1], in order. Returns the last one's index
 * in *l (read by the caller, freed with lines_free), or the first's.
 */
static void
expect_in(struct lines *l, const struct want *want, size_t n, size_t *first)
{
	size_t i, k = 0;

	lines_read(l);
	*first = l->n;
	for (i = seen; i < l->n; i++) {
		json_object *o = l->o[i], *obj = member(o, "object");
		const char *raw = l->raw[i];

		if (writer_line(o))
			continue;
		ck_assert_msg(k < n, "line %zu: unexpected: %s", i + 1, raw);
		if (k == 0)
			*first = i;
		check_str(i + 1, "event", str(o, "event"), want[k].event, raw);
		check_str(i + 1, "outcome", str(o, "outcome"), want[k].outcome, raw);
		check_num(i + 1, "zone", num(o, "zone"), want[k].zone, raw);
		check_str(i + 1, "user", str(o, "user"), want[k].user, raw);
		check_str(i + 1, "label", str(obj, "label"), want[k].label, raw);
		check_str(i + 1, "id", str(obj, "id"), want[k].id, raw);
		check_num(i + 1, "generation", num(obj, "generation"), want[k].generation, raw);
		check_str(i + 1, "reason", str(o, "reason"), want[k].reason, raw);
		k++;
	}
	ck_assert_msg(k == n, "%zu line(s) written, expected %zu (next: %s)", k, n,
	    want[k < n ? k : 0].event);
	seen = l->n;
}

static void
expect(const struct want *want, size_t n)
{
	struct lines l;
	size_t first;

	expect_in(&l, want, n, &first);
	lines_free(&l);
}

#define EXPECT(...)                                                                        \
	do {                                                                               \
		const struct want w_[] = { __VA_ARGS__ };                                  \
		expect(w_, EV_ARRAY_SIZE_T(w_));                                           \
	} while (0)
#define EV_ARRAY_SIZE_T(a) (sizeof(a) / sizeof((a)[0]))

/* Nothing written since the last look. */
static void
expect_none(void)
{
	expect(NULL, 0);
}

/* Forget what is in the file now. */
static void
skip(void)
{
	struct lines l;

	lines_read(&l);
	seen = l.n;
	lines_free(&l);
}

/* Detail member of the line at index i (read with expect_in). */
static json_object *
detail(struct lines *l, size_t i, const char *name)
{
	return member(member(l->o[i], "detail"), name);
}

/* The chain: seq 1.. without a gap, each prev the BLAKE2b-256 of the line before. */
static void
check_chain(const struct lines *l)
{
	unsigned char h[32];
	char hex[65];
	size_t i;

	memset(hex, '0', 64);
	hex[64] = '\0';
	for (i = 0; i < l->n; i++) {
		ck_assert_msg(num(l->o[i], "seq") == (long long)i + 1, "line %zu: seq %lld", i + 1,
		    num(l->o[i], "seq"));
		ck_assert_msg(str(l->o[i], "prev") != NULL && strcmp(str(l->o[i], "prev"), hex) == 0,
		    "line %zu: prev does not name the line before", i + 1);
		crypto_generichash(h, sizeof(h), (const unsigned char *)l->raw[i], strlen(l->raw[i]),
		    NULL, 0);
		sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	}
}

/* Helpers for actions. */

static char *
hexs(const void *p, size_t n)
{
	char *out = malloc(2 * n + 1);

	ck_assert_ptr_nonnull(out);
	sodium_bin2hex(out, 2 * n + 1, p, n);
	return out;
}

static EV_ADMIN_FUNCTION_LIST *
admin(void)
{
	CK_INTERFACE *iface = NULL;
	CK_VERSION v = { 1, 1 };

	ck_assert_int_eq(F->C_GetInterface((CK_UTF8CHAR *)EV_ADMIN_INTERFACE_NAME, &v, &iface, 0),
	    CKR_OK);
	ck_assert_ptr_nonnull(iface);
	return iface->pFunctionList;
}

/* Evidence for zones ("1,2") written where the result provider reads it. */
static void
good_evidence(CK_SLOT_ID zone)
{
	long long now = (long long)time(NULL);
	char *doc = fmt("{\"version\":1,\"device\":\"%s\",\"zones\":[%lu],\"issued_at\":%lld,"
			"\"expires_at\":%lld}",
	    DEVICE, (unsigned long)zone, now - 5, now + 600);
	char *e = env_envelope("edgevault-attestation-result", doc, ver_sk);
	char *tmp = fmt("%s/evidence.json.tmp", env.dir), *path = fmt("%s/evidence.json", env.dir);
	FILE *f = fopen(tmp, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(e, 1, strlen(e), f), strlen(e));
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(rename(tmp, path), 0);
	free(tmp);
	free(path);
	free(e);
	free(doc);
}

/* A signed revocation list for this device. */
static char *
rev_list(long seq, const char *entries)
{
	char *doc = fmt("{\"version\":1,\"device\":\"%s\",\"sequence\":%ld,\"issued_at\":%lld,"
			"\"entries\":[%s]}",
	    DEVICE, seq, (long long)time(NULL), entries);
	char *e = env_envelope("edgevault-revocation-list", doc, auth_sk);

	free(doc);
	return e;
}

static CK_RV
apply(const char *list)
{
	CK_ULONG seq = 0;

	return admin()->EV_ApplyRevocationList((CK_BYTE_PTR)list, strlen(list), &seq);
}

/* A token EC P-256 pair, label and CKA_ID id on both halves. */
static void
gen_pair(CK_SESSION_HANDLE h, const char *label, const char *id, CK_BBOOL token,
    CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	CK_MECHANISM m = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_ATTRIBUTE pubt[] = {
		{ CKA_EC_PARAMS, (void *)env_p256, sizeof(env_p256) },
		{ CKA_TOKEN, &token, sizeof(token) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, (void *)id, strlen(id) },
		{ CKA_VERIFY, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE privt[] = {
		{ CKA_TOKEN, &token, sizeof(token) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, (void *)id, strlen(id) },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_DERIVE, &yes, sizeof(yes) },
	};

	ck_assert_int_eq(F->C_GenerateKeyPair(h, &m, pubt, 5, privt, 5, pub, priv), CKR_OK);
}

/* A token AES-256 key. */
static CK_OBJECT_HANDLE
gen_aes(CK_SESSION_HANDLE h, const char *label, CK_BBOOL token)
{
	CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_ULONG len = 32;
	CK_ATTRIBUTE t[] = {
		{ CKA_TOKEN, &token, sizeof(token) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_VALUE_LEN, &len, sizeof(len) },
		{ CKA_ENCRYPT, &yes, sizeof(yes) },
		{ CKA_WRAP, &yes, sizeof(yes) },
		{ CKA_UNWRAP, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
	};
	CK_OBJECT_HANDLE k;

	ck_assert_int_eq(F->C_GenerateKey(h, &m, t, EV_ARRAY_SIZE_T(t), &k), CKR_OK);
	return k;
}

static CK_RV
sign(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE priv)
{
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_BYTE sig[64];
	CK_ULONG len = sizeof(sig);
	CK_RV rv = F->C_SignInit(h, &m, priv);

	if (rv == CKR_OK)
		rv = F->C_Sign(h, (CK_BYTE *)"audit", 5, sig, &len);
	return rv;
}

static CK_RV
login(CK_SESSION_HANDLE h, CK_USER_TYPE who, const char *pin)
{
	return F->C_Login(h, who, (CK_UTF8CHAR *)pin, strlen(pin));
}

/* The tests. */

START_TEST(test_zone_and_pins)
{
	CK_UTF8CHAR lab[32];
	CK_SESSION_HANDLE h;
	CK_SLOT_ID z;

	env_init();
	z = env_new_zone("zone-a");
	EXPECT({ "zone.created", "ok", (long long)z, "so", NULL, NULL, -1, "" },
	    { "pin.set", "ok", (long long)z, "so", NULL, NULL, -1, "" },
	    { "login", "ok", (long long)z, "so", NULL, NULL, -1, "" },
	    { "pin.set", "ok", (long long)z, "so", NULL, NULL, -1, "" });

	/* C_SetPIN by the user: the old PIN checked, the new one set. */
	h = env_session(z, 1, 1);
	skip();
	ck_assert_int_eq(F->C_SetPIN(h, (CK_UTF8CHAR *)"bad-pin-000", 11, (CK_UTF8CHAR *)"pin-2-new",
			     9),
	    CKR_PIN_INCORRECT);
	EXPECT({ "pin.set", "refused", (long long)z, "user", NULL, NULL, -1, "wrong PIN" });
	ck_assert_int_eq(F->C_SetPIN(h, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN),
			     (CK_UTF8CHAR *)"pin-2-new", 9),
	    CKR_OK);
	EXPECT({ "pin.set", "ok", (long long)z, "user", NULL, NULL, -1, "" });
	/* Bad arguments change nothing and write nothing. */
	ck_assert_int_eq(F->C_SetPIN(h, (CK_UTF8CHAR *)"pin-2-new", 9, (CK_UTF8CHAR *)"x", 1),
	    CKR_PIN_LEN_RANGE);
	expect_none();
	ck_assert_int_eq(F->C_CloseSession(h), CKR_OK);

	/* In a public R/W session C_SetPIN changes the user's PIN: the line says so. */
	h = env_session(z, 1, 0);
	ck_assert_int_eq(F->C_SetPIN(h, (CK_UTF8CHAR *)"bad-pin-000", 11, (CK_UTF8CHAR *)USER_PIN,
			     strlen(USER_PIN)),
	    CKR_PIN_INCORRECT);
	EXPECT({ "pin.set", "refused", (long long)z, "user", NULL, NULL, -1, "wrong PIN" });
	ck_assert_int_eq(F->C_SetPIN(h, (CK_UTF8CHAR *)"pin-2-new", 9, (CK_UTF8CHAR *)USER_PIN,
			     strlen(USER_PIN)),
	    CKR_OK);
	EXPECT({ "pin.set", "ok", (long long)z, "user", NULL, NULL, -1, "" });
	ck_assert_int_eq(login(h, CKU_USER, USER_PIN), CKR_OK);
	skip();
	ck_assert_int_eq(F->C_CloseSession(h), CKR_OK);

	/* Re-initialising: refused with a wrong SO PIN, then done. */
	env_label(lab, "zone-a2");
	ck_assert_int_eq(F->C_InitToken(z, (CK_UTF8CHAR *)"not-the-so", 10, lab), CKR_PIN_INCORRECT);
	EXPECT({ "zone.reinitialised", "refused", (long long)z, "so", NULL, NULL, -1,
	    "wrong PIN" });
	ck_assert_int_eq(F->C_InitToken(z, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN), lab), CKR_OK);
	{
		struct lines l;
		size_t i;
		const struct want w[] = {
			{ "zone.reinitialised", "ok", (long long)z, "so", NULL, NULL, -1, "" },
			{ "pin.set", "ok", (long long)z, "so", NULL, NULL, -1, "" },
		};

		expect_in(&l, w, 2, &i);
		ck_assert_str_eq(json_object_get_string(detail(&l, i, "label")), "zone-a2");
		lines_free(&l);
	}
}
END_TEST

START_TEST(test_login_and_lock)
{
	CK_SESSION_HANDLE h;
	CK_SLOT_ID z;

	env_init();
	z = env_new_zone("locks");
	h = env_session(z, 0, 0);
	skip();
	ck_assert_int_eq(login(h, CKU_USER, USER_PIN), CKR_OK);
	EXPECT({ "login", "ok", (long long)z, "user", NULL, NULL, -1, "" });
	/* Answers that decide nothing write nothing. */
	ck_assert_int_eq(login(h, CKU_USER, USER_PIN), CKR_USER_ALREADY_LOGGED_IN);
	expect_none();
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	expect_none();
	ck_assert_int_eq(login(h, CKU_USER, "wrong-pin-1"), CKR_PIN_INCORRECT);
	ck_assert_int_eq(login(h, CKU_USER, "wrong-pin-2"), CKR_PIN_INCORRECT);
	EXPECT({ "login", "refused", (long long)z, "user", NULL, NULL, -1, "wrong PIN" },
	    { "login", "refused", (long long)z, "user", NULL, NULL, -1, "wrong PIN" });
	/* The failure that reaches the maximum locks, once. */
	ck_assert_int_eq(login(h, CKU_USER, "wrong-pin-3"), CKR_PIN_LOCKED);
	EXPECT({ "pin.locked", NULL, (long long)z, "user", NULL, NULL, -1, NULL },
	    { "login", "refused", (long long)z, "user", NULL, NULL, -1, "PIN locked" });
	ck_assert_int_eq(login(h, CKU_USER, USER_PIN), CKR_PIN_LOCKED);
	EXPECT({ "login", "refused", (long long)z, "user", NULL, NULL, -1, "PIN locked" });
}
END_TEST

START_TEST(test_keys_made_and_destroyed)
{
	CK_BYTE aes_value[32], wrapped[64], point[80];
	CK_OBJECT_CLASS secret = CKO_SECRET_KEY;
	CK_KEY_TYPE aes = CKK_AES;
	CK_ULONG wlen = sizeof(wrapped), len32 = 32;
	CK_OBJECT_HANDLE pub, priv, spub, spriv, k, copy, wk, unw, der;
	CK_ATTRIBUTE create[] = {
		{ CKA_CLASS, &secret, sizeof(secret) },
		{ CKA_KEY_TYPE, &aes, sizeof(aes) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_LABEL, "made", 4 },
		{ CKA_ID, "\x01\x02", 2 },
		{ CKA_VALUE, aes_value, sizeof(aes_value) },
		{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE copyt[] = { { CKA_LABEL, "copied", 6 } };
	CK_ATTRIBUTE unwt[] = {
		{ CKA_CLASS, &secret, sizeof(secret) },
		{ CKA_KEY_TYPE, &aes, sizeof(aes) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_LABEL, "unwrapped", 9 },
	};
	CK_ATTRIBUTE dert[] = {
		{ CKA_CLASS, &secret, sizeof(secret) },
		{ CKA_KEY_TYPE, &aes, sizeof(aes) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_LABEL, "derived", 7 },
		{ CKA_VALUE_LEN, &len32, sizeof(len32) },
	};
	CK_ATTRIBUTE pt = { CKA_EC_POINT, point, sizeof(point) };
	CK_ECDH1_DERIVE_PARAMS ecdh = { CKD_NULL, 0, NULL, 0, NULL };
	CK_MECHANISM kw = { CKM_AES_KEY_WRAP_KWP, NULL, 0 };
	CK_MECHANISM dm = { CKM_ECDH1_DERIVE, &ecdh, sizeof(ecdh) };
	CK_SESSION_HANDLE h;
	CK_SLOT_ID z;
	char *idhex;

	env_init();
	z = env_new_zone("keys");
	h = env_session(z, 1, 1);
	skip();

	gen_pair(h, "pair", "p1", CK_TRUE, &pub, &priv);
	idhex = hexs("p1", 2);
	EXPECT({ "key.generated", "ok", (long long)z, "user", "pair", idhex, 1, "" },
	    { "key.generated", "ok", (long long)z, "user", "pair", idhex, 1, "" });
	free(idhex);

	/* Session objects are not recorded; neither is their use, nor a token key's. */
	gen_pair(h, "sess", "s1", CK_FALSE, &spub, &spriv);
	(void)gen_aes(h, "sess-aes", CK_FALSE);
	ck_assert_int_eq(sign(h, priv), CKR_OK);
	ck_assert_int_eq(sign(h, spriv), CKR_OK);
	ck_assert_int_eq(get_label(h, priv), CKR_OK);
	expect_none();

	randombytes_buf(aes_value, sizeof(aes_value));
	ck_assert_int_eq(F->C_CreateObject(h, create, EV_ARRAY_SIZE_T(create), &k), CKR_OK);
	EXPECT({ "key.imported", "ok", (long long)z, "user", "made", "0102", 1, "" });
	ck_assert_int_eq(F->C_CopyObject(h, k, copyt, 1, &copy), CKR_OK);
	EXPECT({ "key.imported", "ok", (long long)z, "user", "copied", "0102", 1, "" });

	wk = gen_aes(h, "wrapper", CK_TRUE);
	EXPECT({ "key.generated", "ok", (long long)z, "user", "wrapper", "", 1, "" });
	ck_assert_int_eq(F->C_WrapKey(h, &kw, wk, k, wrapped, &wlen), CKR_OK);
	ck_assert_int_eq(F->C_UnwrapKey(h, &kw, wk, wrapped, wlen, unwt, EV_ARRAY_SIZE_T(unwt),
			     &unw),
	    CKR_OK);
	EXPECT({ "key.imported", "ok", (long long)z, "user", "unwrapped", "", 1, "" });

	/* ECDH of the token key with the session pair's public point. */
	ck_assert_int_eq(F->C_GetAttributeValue(h, spub, &pt, 1), CKR_OK);
	ecdh.pPublicData = point;
	ecdh.ulPublicDataLen = pt.ulValueLen;
	ck_assert_int_eq(F->C_DeriveKey(h, &dm, priv, dert, EV_ARRAY_SIZE_T(dert), &der), CKR_OK);
	{
		struct lines l;
		size_t i;
		const struct want w[] = {
			{ "key.imported", "ok", (long long)z, "user", "derived", "", 1, "" },
		};

		expect_in(&l, w, 1, &i);
		ck_assert_str_eq(json_object_get_string(detail(&l, i, "method")), "derive");
		lines_free(&l);
	}

	ck_assert_int_eq(F->C_DestroyObject(h, copy), CKR_OK);
	EXPECT({ "key.destroyed", "ok", (long long)z, "user", "copied", "0102", 1,
	    "C_DestroyObject" });
	ck_assert_int_eq(F->C_DestroyObject(h, spriv), CKR_OK);
	expect_none();
}
END_TEST

START_TEST(test_key_unwrapped_once_per_process)
{
	CK_OBJECT_HANDLE pub, priv;
	CK_SESSION_HANDLE h;
	CK_SLOT_ID z;

	env_init();
	z = env_new_zone("unwrap");
	h = env_session(z, 1, 1);
	gen_pair(h, "cached", "c1", CK_TRUE, &pub, &priv);
	/* Made here: the material is in the cache already. */
	ck_assert_int_eq(sign(h, priv), CKR_OK);
	skip();
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_init();
	h = env_session(z, 0, 1);
	skip();
	ck_assert_int_eq(sign(h, priv), CKR_OK);
	EXPECT({ "key.unwrapped", "ok", (long long)z, "user", "cached", "6331", 1, "" });
	ck_assert_int_eq(sign(h, priv), CKR_OK);
	/* Wiped at logout, opened again after: still once per process. */
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	ck_assert_int_eq(login(h, CKU_USER, USER_PIN), CKR_OK);
	skip();
	ck_assert_int_eq(sign(h, priv), CKR_OK);
	expect_none();
}
END_TEST

START_TEST(test_rotation_and_expiry)
{
	CK_OBJECT_HANDLE pub, priv, got = 0, again = 0;
	CK_SESSION_HANDLE h, so;
	CK_ULONG count = 0, pcrs = 0;
	CK_SLOT_ID z;
	struct lines l;
	size_t i;

	env_init();
	z = env_new_zone("rot");
	good_evidence(z);
	h = env_session(z, 1, 1);
	gen_pair(h, "rk", "r1", CK_TRUE, &pub, &priv);
	skip();
	ck_assert_int_eq(admin()->EV_RotateKey(h, priv, &got), CKR_OK);
	{
		const struct want w[] = {
			{ "attestation", "ok", (long long)z, "user", NULL, NULL, -1, "" },
			{ "key.rotated", "ok", (long long)z, "user", "rk", NULL, 2, "" },
			{ "key.rotated", "ok", (long long)z, "user", "rk", NULL, 2, "" },
			{ "key.retired", "ok", (long long)z, "user", "rk", "7231", 1, "" },
			{ "key.retired", "ok", (long long)z, "user", "rk", "7231", 1, "" },
		};

		expect_in(&l, w, EV_ARRAY_SIZE_T(w), &i);
		ck_assert_str_eq(json_object_get_string(detail(&l, i, "purpose")), "rotate");
		ck_assert_str_eq(json_object_get_string(detail(&l, i, "provider")), "result");
		ck_assert_int_eq(json_object_get_int64(detail(&l, i + 1, "previous")), (long long)priv);
		ck_assert_int_eq(num(member(l.o[i + 1], "object"), "handle"), (long long)got);
		lines_free(&l);
	}

	/* With no grace period, the retired generation goes at once. */
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	conf("[policy]\ngrace_period = 0\n");
	env_init();
	h = env_session(z, 1, 1);
	skip();
	ck_assert_int_eq(admin()->EV_RotateKey(h, got, &again), CKR_OK);
	{
		const struct want w[] = {
			{ "key.rotated", "ok", (long long)z, "user", "rk", NULL, 3, "" },
			{ "key.rotated", "ok", (long long)z, "user", "rk", NULL, 3, "" },
			{ "key.retired", "ok", (long long)z, "user", "rk", NULL, 2, "" },
			{ "key.retired", "ok", (long long)z, "user", "rk", NULL, 2, "" },
			{ "key.destroyed", "ok", (long long)z, "", "rk", NULL, 2,
			    "grace period ended" },
			{ "key.destroyed", "ok", (long long)z, "", "rk", NULL, 2,
			    "grace period ended" },
		};

		expect(w, EV_ARRAY_SIZE_T(w));
	}

	/* The zone key: rotated, then re-bound, by the SO. */
	ck_assert_int_eq(F->C_CloseSession(h), CKR_OK);
	so = env_session(z, 1, 0);
	ck_assert_int_eq(login(so, CKU_SO, SO_PIN), CKR_OK);
	skip();
	ck_assert_int_eq(admin()->EV_RotateZoneKey(so, &count), CKR_OK);
	EXPECT({ "zone.rekeyed", "ok", (long long)z, "so", NULL, NULL, -1, "" });
	ck_assert_int_eq(admin()->EV_RebindZone(so, &pcrs), CKR_OK);
	{
		const struct want w[] = {
			{ "zone.rekeyed", "ok", (long long)z, "so", NULL, NULL, -1, "" },
		};

		expect_in(&l, w, 1, &i);
		ck_assert_str_eq(json_object_get_string(detail(&l, i, "method")), "rebind");
		ck_assert_int_eq(json_object_get_int64(detail(&l, i, "objects")), (long long)count);
		lines_free(&l);
	}
}
END_TEST

START_TEST(test_attestation_gate)
{
	CK_SESSION_HANDLE h;
	CK_SLOT_ID z;

	conf("[policy]\nrequire_attestation = true\n");
	env_init();
	z = env_new_zone("gated");
	h = env_session(z, 0, 0);
	skip();
	ck_assert_int_eq(login(h, CKU_USER, USER_PIN), CKR_FUNCTION_REJECTED);
	EXPECT({ "attestation", "refused", (long long)z, "", NULL, NULL, -1, NULL },
	    { "login", "refused", (long long)z, "user", NULL, NULL, -1, "evidence refused" });
	good_evidence(z);
	ck_assert_int_eq(login(h, CKU_USER, USER_PIN), CKR_OK);
	EXPECT({ "attestation", "ok", (long long)z, "", NULL, NULL, -1, "" },
	    { "login", "ok", (long long)z, "user", NULL, NULL, -1, "" });
}
END_TEST

START_TEST(test_revocations)
{
	CK_OBJECT_HANDLE pub, priv, p2, k2, k3;
	CK_SESSION_HANDLE h, so;
	EV_REVOCATION_ENTRY e = { 0 };
	CK_ULONG n = 0;
	CK_SLOT_ID z, z2;
	struct lines l;
	size_t i;
	char *entry, *list;

	env_init();
	z = env_new_zone("rev");
	z2 = env_new_zone("rev2");
	h = env_session(z, 1, 1);
	gen_pair(h, "doomed", "d1", CK_TRUE, &pub, &priv);
	gen_pair(h, "kept", "k1", CK_TRUE, &p2, &k2);
	k3 = gen_aes(h, "local", CK_TRUE);
	(void)k3;
	skip();

	entry = fmt("{\"kind\":\"key\",\"zone\":%lu,\"label\":\"doomed\",\"reason\":\"stolen\"}",
	    (unsigned long)z);
	list = rev_list(5, entry);
	ck_assert_int_eq(apply(list), CKR_OK);
	{
		const struct want w[] = {
			{ "revocation.list", "ok", -2, "", NULL, NULL, -1, "" },
			{ "key.revoked", "ok", (long long)z, "", "doomed", "6431", 1, "stolen" },
			{ "key.revoked", "ok", (long long)z, "", "doomed", "6431", 1, "stolen" },
		};

		expect_in(&l, w, EV_ARRAY_SIZE_T(w), &i);
		ck_assert_str_eq(json_object_get_string(detail(&l, i, "source")), "admin");
		ck_assert_int_eq(json_object_get_int64(detail(&l, i, "sequence")), 5);
		ck_assert_int_eq(json_object_get_int64(detail(&l, i, "revoked")), 2);
		ck_assert_int_eq(json_object_get_int64(detail(&l, i + 1, "sequence")), 5);
		lines_free(&l);
	}
	free(list);
	/* An older list: refused, nothing revoked. */
	list = rev_list(4, entry);
	ck_assert_int_eq(apply(list), CKR_FUNCTION_REJECTED);
	free(list);
	free(entry);
	EXPECT({ "revocation.list", "refused", -2, "", NULL, NULL, -1, NULL });
	/* A list with a bad signature. */
	list = rev_list(6, "");
	list[strlen(list) - 6] ^= 1;
	ck_assert_int_ne(apply(list), CKR_OK);
	free(list);
	EXPECT({ "revocation.list", "refused", -2, "", NULL, NULL, -1, NULL });

	/* Locally, by the SO. */
	ck_assert_int_eq(F->C_CloseSession(h), CKR_OK);
	so = env_session(z, 1, 0);
	ck_assert_int_eq(login(so, CKU_SO, SO_PIN), CKR_OK);
	skip();
	e.kind = EV_REVOKE_KEY;
	e.pLabel = (CK_UTF8CHAR *)"local";
	e.ulLabelLen = 5;
	e.pReason = (CK_UTF8CHAR *)"retired by hand";
	e.ulReasonLen = 15;
	ck_assert_int_eq(admin()->EV_Revoke(so, &e, &n), CKR_OK);
	ck_assert_uint_eq(n, 1);
	EXPECT({ "key.revoked", "ok", (long long)z, "so", "local", "", 1, "retired by hand" });

	/* A zone, by a list. */
	entry = fmt("{\"kind\":\"zone\",\"zone\":%lu,\"reason\":\"decommissioned\"}",
	    (unsigned long)z2);
	list = rev_list(7, entry);
	ck_assert_int_eq(apply(list), CKR_OK);
	free(list);
	free(entry);
	EXPECT({ "revocation.list", "ok", -2, "", NULL, NULL, -1, "" },
	    { "zone.revoked", "ok", (long long)z2, "", NULL, NULL, -1, "decommissioned" });
}
END_TEST

/*
 * A child: reach the root and log in (one child at a time: SoftHSMv2's
 * file store can fail an upstream login made by several processes at
 * the very same moment), then, with the others, log in again and make
 * keys; it reports the first failure (0 when all went well).
 */
#define KID_KEYS 5

static void
kid_busy(int rd, int wr, void *arg)
{
	CK_SLOT_ID z = *(CK_SLOT_ID *)arg;
	CK_SESSION_HANDLE h = 0;
	CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_ULONG len = 32;
	CK_ATTRIBUTE t[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_LABEL, "busy", 4 },
		{ CKA_VALUE_LEN, &len, sizeof(len) },
	};
	CK_OBJECT_HANDLE k;
	CK_RV rv;
	int i;

	rv = kid_init();
	if (rv == CKR_OK)
		rv = kid_session(z, 1, &h);
	put(wr, rv);
	(void)take(rd); /* all go on together */
	if (rv == CKR_OK)
		rv = F->C_Logout(h);
	if (rv == CKR_OK)
		rv = login(h, CKU_USER, USER_PIN);
	for (i = 0; i < KID_KEYS && rv == CKR_OK; i++)
		rv = F->C_GenerateKey(h, &m, t, EV_ARRAY_SIZE_T(t), &k);
	if (rv == CKR_OK)
		rv = F->C_Finalize(NULL);
	put(wr, rv);
}

/*
 * The trail as `edgevault audit verify` sees it (src/audit_read.h), with
 * the key the module confirms under the root (EV_AuditPublicKey, admin
 * 1.3): valid, signed by a checkpoint, and .head naming the last one.
 */
static void
verify_with_reader(void)
{
	CK_INTERFACE *iface = NULL;
	CK_VERSION ver = {1, 3};
	EV_ADMIN_FUNCTION_LIST *a;
	unsigned char pk[32];
	CK_ULONG len = sizeof(pk);
	ev_audit_reader *r = NULL;
	const ev_audit_head *h;
	ev_audit_verdict v;
	char err[512] = "", *path = audit_path();
	struct lines ls;

	env_init();
	ck_assert_int_eq(F->C_GetInterface((CK_UTF8CHAR *)EV_ADMIN_INTERFACE_NAME, &ver, &iface, 0),
			 CKR_OK);
	a = iface->pFunctionList;
	ck_assert_int_eq(a->EV_AuditPublicKey(pk, &len), CKR_OK);
	ck_assert_uint_eq(len, 32);
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	ck_assert_msg(ev_audit_reader_open(path, &r, err, sizeof(err)) == CKR_OK, "%s", err);
	ck_assert_msg(ev_audit_verify(r, pk, &v, err, sizeof(err)) == CKR_OK, "%s", err);
	ck_assert_msg(v.valid, "%s", v.why);
	lines_read(&ls);
	ck_assert_uint_eq(v.lines, ls.n);
	lines_free(&ls);
	ck_assert_uint_ge(v.checkpoints, 1);
	ck_assert_int_eq(v.head_missing, 0);
	h = ev_audit_reader_head(r);
	ck_assert(h->present);
	ck_assert_ptr_null(h->problem);
	ck_assert_int_eq(h->seq, v.last_checkpoint_seq);
	ev_audit_reader_free(r);
	free(path);
}

START_TEST(test_many_processes_one_chain)
{
	enum { KIDS = 4 };
	struct kid kids[KIDS];
	CK_SLOT_ID z;
	struct lines l;
	size_t i, logins = 0, keys = 0;

	env_init();
	z = env_new_zone("busy");
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	for (i = 0; i < KIDS; i++) {
		kid_start(&kids[i], kid_busy, &z);
		kid_expect(&kids[i], CKR_OK, "child: C_Initialize and login");
	}
	for (i = 0; i < KIDS; i++)
		kid_put(&kids[i], 1);
	for (i = 0; i < KIDS; i++) {
		kid_expect(&kids[i], CKR_OK, "child: login and keys");
		kid_done(&kids[i]);
	}
	lines_read(&l);
	check_chain(&l);
	for (i = 0; i < l.n; i++) {
		const char *ev = str(l.o[i], "event");

		if (strcmp(ev, "login") == 0 && strcmp(str(l.o[i], "user"), "user") == 0)
			logins++;
		if (strcmp(ev, "key.generated") == 0) {
			ck_assert_str_eq(str(member(l.o[i], "object"), "label"), "busy");
			keys++;
		}
	}
	ck_assert_uint_eq(logins, 2 * KIDS);
	ck_assert_uint_eq(keys, KIDS * KID_KEYS);
	lines_free(&l);
	verify_with_reader();
}
END_TEST

/* Whether the file holds these bytes raw, in hex (both cases) or base64 (padded or not). */
static void
absent(const char *file, size_t flen, const void *secret, size_t n, const char *what)
{
	char *h = hexs(secret, n), b64[256];
	size_t i;

	ck_assert_uint_le(sodium_base64_ENCODED_LEN(n, B64), sizeof(b64));
	ck_assert_msg(memmem(file, flen, secret, n) == NULL, "%s found raw", what);
	ck_assert_msg(strstr(file, h) == NULL, "%s found in hex", what);
	for (i = 0; h[i] != '\0'; i++)
		h[i] = (char)toupper((unsigned char)h[i]);
	ck_assert_msg(strstr(file, h) == NULL, "%s found in upper-case hex", what);
	sodium_bin2base64(b64, sizeof(b64), secret, n, B64);
	ck_assert_msg(strstr(file, b64) == NULL, "%s found in base64", what);
	sodium_bin2base64(b64, sizeof(b64), secret, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	ck_assert_msg(strstr(file, b64) == NULL, "%s found in base64url", what);
	free(h);
}

/* Nor the checkpoint key's private half: unsealed here as the module does. */
static void
checkpoint_key_absent(const char *file, size_t flen)
{
	unsigned char pk[crypto_sign_PUBLICKEYBYTES];
	char err[512] = "", *conf = fmt("%s/edgevault.conf", env.dir);
	ev_config *c = NULL;
	ev_root *root = NULL;
	ev_store *st = NULL;
	ev_audit *a = NULL;
	ev_secret *sk = NULL;

	ck_assert_msg(ev_config_load(conf, &c, err, sizeof(err)) == CKR_OK, "%s", err);
	ck_assert_msg(ev_root_open(c, 0, &root, err, sizeof(err)) == CKR_OK, "%s", err);
	ck_assert_msg(ev_store_open(c->store_dir, 0, &st, err, sizeof(err)) == CKR_OK, "%s", err);
	ck_assert_int_eq(ev_audit_open(c, &a), CKR_OK);
	ck_assert_int_eq(ev_audit_key_open(a, root, st, &sk, pk), CKR_OK);
	ck_assert_uint_eq(sk->len, crypto_sign_SECRETKEYBYTES);
	/* The test can fail: the public half is there. */
	ck_assert_ptr_nonnull(memmem(file, flen, "\"key\":\"", 7));
	absent(file, flen, sk->data, sk->len, "the checkpoint private key");
	absent(file, flen, sk->data, crypto_sign_SEEDBYTES, "the checkpoint key's seed");
	ev_secret_free(sk);
	ev_audit_close(a);
	ev_store_close(st);
	ev_root_free(root);
	ev_config_free(c);
	free(conf);
}

START_TEST(test_no_secret_in_audit)
{
	static const char *pins[] = { SO_PIN, USER_PIN, "scan-new-pin-77", "scan-wrong-pin-88" };
	CK_BYTE aes_value[32], hmac_value[40], ec_value[32];
	CK_OBJECT_CLASS secret = CKO_SECRET_KEY, private = CKO_PRIVATE_KEY;
	CK_KEY_TYPE aes = CKK_AES, gen = CKK_GENERIC_SECRET, ec = CKK_EC;
	CK_ATTRIBUTE aes_t[] = {
		{ CKA_CLASS, &secret, sizeof(secret) },
		{ CKA_KEY_TYPE, &aes, sizeof(aes) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_LABEL, "scan-aes", 8 },
		{ CKA_VALUE, aes_value, sizeof(aes_value) },
	};
	CK_ATTRIBUTE hmac_t[] = {
		{ CKA_CLASS, &secret, sizeof(secret) },
		{ CKA_KEY_TYPE, &gen, sizeof(gen) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_LABEL, "scan-hmac", 9 },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_VALUE, hmac_value, sizeof(hmac_value) },
	};
	CK_ATTRIBUTE ec_t[] = {
		{ CKA_CLASS, &private, sizeof(private) },
		{ CKA_KEY_TYPE, &ec, sizeof(ec) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_LABEL, "scan-ec", 7 },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_EC_PARAMS, (void *)env_p256, sizeof(env_p256) },
		{ CKA_VALUE, ec_value, sizeof(ec_value) },
	};
	CK_OBJECT_HANDLE k1, k2, k3;
	CK_SESSION_HANDLE h;
	CK_SLOT_ID z;
	char *file, *blobs, *line, *save = NULL;
	size_t flen, i;

	randombytes_buf(aes_value, sizeof(aes_value));
	randombytes_buf(hmac_value, sizeof(hmac_value));
	randombytes_buf(ec_value, sizeof(ec_value));
	ec_value[0] = 0x3f; /* below the order of P-256 */
	env_init();
	z = env_new_zone("scan");
	h = env_session(z, 1, 1);
	ck_assert_int_eq(F->C_CreateObject(h, aes_t, EV_ARRAY_SIZE_T(aes_t), &k1), CKR_OK);
	ck_assert_int_eq(F->C_CreateObject(h, hmac_t, EV_ARRAY_SIZE_T(hmac_t), &k2), CKR_OK);
	ck_assert_int_eq(F->C_CreateObject(h, ec_t, EV_ARRAY_SIZE_T(ec_t), &k3), CKR_OK);
	ck_assert_int_eq(F->C_SetPIN(h, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN),
			     (CK_UTF8CHAR *)pins[2], strlen(pins[2])),
	    CKR_OK);
	ck_assert_int_eq(F->C_Logout(h), CKR_OK);
	ck_assert_int_eq(login(h, CKU_USER, pins[3]), CKR_PIN_INCORRECT);
	ck_assert_int_eq(login(h, CKU_USER, pins[2]), CKR_OK);
	/* A new process opens the wrapped material: key.unwrapped lines. */
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);
	env_init();
	h = env_session(z, 1, 0);
	ck_assert_int_eq(login(h, CKU_USER, pins[2]), CKR_OK);
	ck_assert_int_eq(sign(h, k3), CKR_OK);
	ck_assert_int_eq(F->C_DestroyObject(h, k1), CKR_OK);
	ck_assert_int_eq(F->C_Finalize(NULL), CKR_OK);

	file = slurp(&flen);
	/* The test can fail: what is there is found. */
	ck_assert_ptr_nonnull(strstr(file, "\"scan-aes\""));
	ck_assert_ptr_nonnull(strstr(file, "\"scan-hmac\""));
	ck_assert_ptr_nonnull(strstr(file, "\"scan-ec\""));
	ck_assert_ptr_nonnull(strstr(file, "key.unwrapped"));
	for (i = 0; i < EV_ARRAY_SIZE_T(pins); i++)
		absent(file, flen, pins[i], strlen(pins[i]), pins[i]);
	absent(file, flen, aes_value, sizeof(aes_value), "the AES key's value");
	absent(file, flen, hmac_value, sizeof(hmac_value), "the HMAC key's value");
	absent(file, flen, ec_value, sizeof(ec_value), "the EC private key's value");
	/* Nor the wrapped blobs (their first 16 bytes are enough to find one). */
	blobs = env_sql_text("SELECT hex(wrapped) FROM objects WHERE wrapped IS NOT NULL");
	for (line = strtok_r(blobs, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		unsigned char bin[16];
		size_t bl = 0;

		ck_assert_int_eq(sodium_hex2bin(bin, sizeof(bin), line, 32, NULL, &bl, NULL), 0);
		absent(file, flen, bin, bl, "a wrapped blob");
	}
	free(blobs);
	checkpoint_key_absent(file, flen);
	free(file);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("audit");
	TCase *tc = tcase_create("events");

	tcase_add_checked_fixture(tc, setup, env_teardown);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, test_zone_and_pins);
	tcase_add_test(tc, test_login_and_lock);
	tcase_add_test(tc, test_keys_made_and_destroyed);
	tcase_add_test(tc, test_key_unwrapped_once_per_process);
	tcase_add_test(tc, test_rotation_and_expiry);
	tcase_add_test(tc, test_attestation_gate);
	tcase_add_test(tc, test_revocations);
	tcase_add_test(tc, test_many_processes_one_chain);
	tcase_add_test(tc, test_no_secret_in_audit);
	suite_add_tcase(s, tc);
	return env_run(s);
}
