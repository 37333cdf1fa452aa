/*
 * Unit tests of the key hierarchy (src/keyring.c) and of the pkcs11 root
 * (src/root/). Wrapping tests need nothing but libsodium; root tests run
 * against a real SoftHSMv2 ($EV_SOFTHSM, else the Debian path), each with
 * its own SOFTHSM2_CONF and token directory in its own temporary directory.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attr.h"
#include "config.h"
#include "keyring.h"
#include "root/root.h"
#include "testutil.h"

#define DEFAULT_SOFTHSM "/usr/lib/softhsm/libsofthsm2.so"
#define TOKEN_LABEL "ev test root"
#define USER_PIN "1234"
#define SO_PIN "56789"

static void
setup(void)
{
	tmpdir_make("ev_keyring");
}

/* ---- wrapping ---------------------------------------------------------- */

static ev_attrs *
ec_key_attrs(void)
{
	static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
					     0xce, 0x3d, 0x03, 0x01, 0x07};
	ev_attrs *a = ev_attrs_new();

	ck_assert_ptr_nonnull(a);
	ck_assert_uint_eq(ev_attrs_set_ulong(a, CKA_CLASS, CKO_PRIVATE_KEY), CKR_OK);
	ck_assert_uint_eq(ev_attrs_set_ulong(a, CKA_KEY_TYPE, CKK_EC), CKR_OK);
	ck_assert_uint_eq(ev_attrs_set_bool(a, CKA_TOKEN, CK_TRUE), CKR_OK);
	ck_assert_uint_eq(ev_attrs_set_bool(a, CKA_PRIVATE, CK_TRUE), CKR_OK);
	ck_assert_uint_eq(ev_attrs_set_bool(a, CKA_LOCAL, CK_TRUE), CKR_OK);
	ck_assert_uint_eq(ev_attrs_set_bool(a, CKA_ALWAYS_SENSITIVE, CK_TRUE), CKR_OK);
	ck_assert_uint_eq(ev_attrs_set_bool(a, CKA_NEVER_EXTRACTABLE, CK_TRUE), CKR_OK);
	ck_assert_uint_eq(ev_attrs_set_ulong(a, CKA_KEY_GEN_MECHANISM, CKM_EC_KEY_PAIR_GEN),
			  CKR_OK);
	ck_assert_uint_eq(ev_attrs_set(a, CKA_EC_PARAMS, p256, sizeof(p256)), CKR_OK);
	ck_assert_uint_eq(ev_attrs_set(a, CKA_LABEL, "k1", 2), CKR_OK);
	ck_assert_uint_eq(ev_attrs_set(a, CKA_ID, "\x01\x02", 2), CKR_OK);
	ck_assert_uint_eq(ev_attrs_set_bool(a, CKA_SIGN, CK_TRUE), CKR_OK);
	return a;
}

static void
binding(ev_wrap_binding *b)
{
	ev_attrs *a = ec_key_attrs();

	memset(b, 0, sizeof(*b));
	b->zone_id = 7;
	b->object_id = 42;
	b->generation = 3;
	ev_attr_digest(a, b->attr_digest);
	ev_attrs_free(a);
}

static const char material[] = "operational key material, 48 bytes of it......";

static ev_secret *
new_zone_key(void)
{
	ev_secret *k = NULL;

	ck_assert_uint_eq(ev_zone_key_new(&k), CKR_OK);
	ck_assert_ptr_nonnull(k);
	ck_assert_uint_eq(k->len, EV_ZONE_KEY_LEN);
	return k;
}

static unsigned char *
wrap_material(const ev_secret *zk, const ev_wrap_binding *b, size_t *len)
{
	ev_secret *plain = ev_secret_dup(material, sizeof(material));
	unsigned char *blob = NULL;

	ck_assert_ptr_nonnull(plain);
	ck_assert_uint_eq(ev_wrap(zk, b, plain, &blob, len), CKR_OK);
	ck_assert_ptr_nonnull(blob);
	ev_secret_free(plain);
	return blob;
}

/* Unwrapping must fail with CKR_ENCRYPTED_DATA_INVALID and give nothing. */
static void
unwrap_fails(const ev_secret *zk, const ev_wrap_binding *b, const unsigned char *blob, size_t len,
	     const char *what)
{
	ev_secret *out = (ev_secret *)1;
	CK_RV rv;

	rv = ev_unwrap(zk, b, blob, len, &out);
	ck_assert_msg(rv == CKR_ENCRYPTED_DATA_INVALID, "%s: 0x%lx", what, (unsigned long)rv);
	ck_assert_ptr_null(out);
}

START_TEST(test_zone_key_new)
{
	ev_secret *a = new_zone_key();
	ev_secret *b = new_zone_key();

	ck_assert_int_eq(ev_secret_equal(a, b), 0);
	ev_secret_free(a);
	ev_secret_free(b);
}
END_TEST

START_TEST(test_wrap_roundtrip)
{
	ev_secret *zk = new_zone_key();
	ev_secret *out = NULL, *empty;
	unsigned char *blob, *blob2;
	ev_wrap_binding b;
	size_t len, len2;

	binding(&b);
	blob = wrap_material(zk, &b, &len);
	ck_assert_uint_eq(len, 1 + 24 + sizeof(material) + 16);
	ck_assert_uint_eq(blob[0], EV_WRAP_VERSION);
	ck_assert_uint_eq(ev_unwrap(zk, &b, blob, len, &out), CKR_OK);
	ck_assert_uint_eq(out->len, sizeof(material));
	ck_assert_int_eq(memcmp(out->data, material, sizeof(material)), 0);
	ev_secret_free(out);

	/* Same input, fresh nonce: a different blob. */
	blob2 = wrap_material(zk, &b, &len2);
	ck_assert_uint_eq(len, len2);
	ck_assert_int_ne(memcmp(blob, blob2, len), 0);
	free(blob2);
	free(blob);

	/* Empty material round-trips too. */
	empty = ev_secret_new(0);
	ck_assert_uint_eq(ev_wrap(zk, &b, empty, &blob, &len), CKR_OK);
	ck_assert_uint_eq(len, 1 + 24 + 16);
	ck_assert_uint_eq(ev_unwrap(zk, &b, blob, len, &out), CKR_OK);
	ck_assert_uint_eq(out->len, 0);
	ev_secret_free(out);
	ev_secret_free(empty);
	free(blob);
	ev_secret_free(zk);
}
END_TEST

START_TEST(test_wrap_moved)
{
	ev_secret *zk = new_zone_key();
	ev_wrap_binding b, m;
	unsigned char *blob;
	ev_attrs *a;
	size_t len;

	binding(&b);
	blob = wrap_material(zk, &b, &len);

	m = b;
	m.zone_id = 8;
	unwrap_fails(zk, &m, blob, len, "other zone");
	m = b;
	m.object_id = 43;
	unwrap_fails(zk, &m, blob, len, "other object");
	m = b;
	m.generation = 4;
	unwrap_fails(zk, &m, blob, len, "other generation");
	m = b;
	m.zone_id = -7;
	unwrap_fails(zk, &m, blob, len, "negative zone");

	/* An immutable attribute changed: the digest, and so the binding, differ. */
	a = ec_key_attrs();
	ck_assert_uint_eq(ev_attrs_set_bool(a, CKA_PRIVATE, CK_FALSE), CKR_OK);
	m = b;
	ev_attr_digest(a, m.attr_digest);
	unwrap_fails(zk, &m, blob, len, "CKA_PRIVATE changed");
	ev_attrs_free(a);
	a = ec_key_attrs();
	ck_assert_uint_eq(ev_attrs_set_ulong(a, CKA_KEY_TYPE, CKK_EC_EDWARDS), CKR_OK);
	m = b;
	ev_attr_digest(a, m.attr_digest);
	unwrap_fails(zk, &m, blob, len, "CKA_KEY_TYPE changed");
	ev_attrs_free(a);

	m = b;
	m.attr_digest[31] ^= 1;
	unwrap_fails(zk, &m, blob, len, "digest bit");
	free(blob);
	ev_secret_free(zk);
}
END_TEST

START_TEST(test_wrap_tampered)
{
	ev_secret *zk = new_zone_key();
	unsigned char *blob;
	ev_wrap_binding b;
	char what[64];
	size_t len, i;

	binding(&b);
	blob = wrap_material(zk, &b, &len);
	/* Every byte: version, nonce (1..24), ciphertext, tag (last 16). */
	for (i = 0; i < len; i++) {
		blob[i] ^= 0x01;
		snprintf(what, sizeof(what), "bit flipped in byte %zu", i);
		unwrap_fails(zk, &b, blob, len, what);
		blob[i] ^= 0x01;
	}
	free(blob);
	ev_secret_free(zk);
}
END_TEST

START_TEST(test_wrap_truncated)
{
	ev_secret *zk = new_zone_key();
	unsigned char *blob, *longer;
	ev_wrap_binding b;
	char what[64];
	size_t len, i;

	binding(&b);
	blob = wrap_material(zk, &b, &len);
	for (i = 0; i < len; i++) {
		snprintf(what, sizeof(what), "truncated to %zu bytes", i);
		unwrap_fails(zk, &b, blob, i, what);
	}
	unwrap_fails(zk, &b, NULL, 0, "no blob");
	longer = malloc(len + 1);
	ck_assert_ptr_nonnull(longer);
	memcpy(longer, blob, len);
	longer[len] = 0;
	unwrap_fails(zk, &b, longer, len + 1, "a byte appended");
	free(longer);
	free(blob);
	ev_secret_free(zk);
}
END_TEST

START_TEST(test_wrap_version)
{
	static const unsigned char versions[] = {0, 2, 0x81, 0xff};
	ev_secret *zk = new_zone_key();
	unsigned char *blob;
	ev_wrap_binding b;
	size_t len, i;

	binding(&b);
	blob = wrap_material(zk, &b, &len);
	for (i = 0; i < sizeof(versions); i++) {
		blob[0] = versions[i];
		unwrap_fails(zk, &b, blob, len, "unknown version");
	}
	free(blob);
	ev_secret_free(zk);
}
END_TEST

START_TEST(test_wrap_wrong_key)
{
	ev_secret *zk = new_zone_key();
	ev_secret *other = new_zone_key();
	unsigned char *blob;
	ev_wrap_binding b;
	size_t len;

	binding(&b);
	blob = wrap_material(zk, &b, &len);
	unwrap_fails(other, &b, blob, len, "another zone's key");
	free(blob);
	ev_secret_free(zk);
	ev_secret_free(other);
}
END_TEST

START_TEST(test_wrap_bad_arguments)
{
	ev_secret *shortkey = ev_secret_new(16);
	ev_secret *plain = ev_secret_dup("x", 1);
	ev_secret *out = (ev_secret *)1;
	unsigned char *blob = (unsigned char *)1;
	ev_wrap_binding b;
	size_t len = 1;

	binding(&b);
	ck_assert_uint_eq(ev_wrap(shortkey, &b, plain, &blob, &len), CKR_ARGUMENTS_BAD);
	ck_assert_ptr_null(blob);
	ck_assert_uint_eq(len, 0);
	ck_assert_uint_eq(ev_wrap(NULL, &b, plain, &blob, &len), CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(ev_unwrap(shortkey, &b, (const unsigned char *)"x", 1, &out),
			  CKR_ARGUMENTS_BAD);
	ck_assert_ptr_null(out);
	ck_assert_uint_eq(ev_zone_key_new(NULL), CKR_ARGUMENTS_BAD);
	ev_secret_free(shortkey);
	ev_secret_free(plain);
}
END_TEST

static void
digest_of(const ev_attrs *a, unsigned char out[EV_ATTR_DIGEST_LEN])
{
	ev_attr_digest(a, out);
}

START_TEST(test_attr_digest)
{
	/* Each immutable attribute of ec_key_attrs(), with another value. */
	static const struct {
		CK_ATTRIBUTE_TYPE type;
		int is_bool;
		CK_ULONG v;
	} changes[] = {
	    {CKA_CLASS, 0, CKO_SECRET_KEY},
	    {CKA_KEY_TYPE, 0, CKK_RSA},
	    {CKA_TOKEN, 1, CK_FALSE},
	    {CKA_PRIVATE, 1, CK_FALSE},
	    {CKA_LOCAL, 1, CK_FALSE},
	    {CKA_ALWAYS_SENSITIVE, 1, CK_FALSE},
	    {CKA_NEVER_EXTRACTABLE, 1, CK_FALSE},
	    {CKA_KEY_GEN_MECHANISM, 0, CKM_EC_EDWARDS_KEY_PAIR_GEN},
	};
	/* Absent from ec_key_attrs(): adding any one changes the digest. */
	static const CK_ATTRIBUTE_TYPE added[] = {CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_VALUE_LEN};
	/* Present in ec_key_attrs(): removing any one changes the digest. */
	static const CK_ATTRIBUTE_TYPE removed[] = {CKA_CLASS,
						    CKA_KEY_TYPE,
						    CKA_TOKEN,
						    CKA_PRIVATE,
						    CKA_LOCAL,
						    CKA_ALWAYS_SENSITIVE,
						    CKA_NEVER_EXTRACTABLE,
						    CKA_KEY_GEN_MECHANISM,
						    CKA_EC_PARAMS};
	unsigned char base[EV_ATTR_DIGEST_LEN], d[EV_ATTR_DIGEST_LEN];
	ev_attrs *a;
	size_t i;

	a = ec_key_attrs();
	digest_of(a, base);
	digest_of(a, d);
	ck_assert_int_eq(memcmp(base, d, sizeof(d)), 0);
	ev_attrs_free(a);

	for (i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
		a = ec_key_attrs();
		if (changes[i].is_bool)
			ev_attrs_set_bool(a, changes[i].type, (CK_BBOOL)changes[i].v);
		else
			ev_attrs_set_ulong(a, changes[i].type, changes[i].v);
		digest_of(a, d);
		ck_assert_msg(memcmp(base, d, sizeof(d)) != 0, "type 0x%lx changed, digest same",
			      (unsigned long)changes[i].type);
		ev_attrs_free(a);
	}

	a = ec_key_attrs();
	ck_assert_uint_eq(ev_attrs_set(a, CKA_EC_PARAMS, "\x06\x05\x2b\x81\x04\x00\x22", 7),
			  CKR_OK);
	digest_of(a, d);
	ck_assert_int_ne(memcmp(base, d, sizeof(d)), 0);
	ev_attrs_free(a);

	for (i = 0; i < sizeof(added) / sizeof(added[0]); i++) {
		a = ec_key_attrs();
		ck_assert_uint_eq(ev_attrs_set(a, added[i], "", 0), CKR_OK);
		digest_of(a, d);
		ck_assert_msg(memcmp(base, d, sizeof(d)) != 0, "type 0x%lx added, digest same",
			      (unsigned long)added[i]);
		ev_attrs_free(a);
	}
	for (i = 0; i < sizeof(removed) / sizeof(removed[0]); i++) {
		a = ec_key_attrs();
		ev_attrs_del(a, removed[i]);
		digest_of(a, d);
		ck_assert_msg(memcmp(base, d, sizeof(d)) != 0, "type 0x%lx removed, digest same",
			      (unsigned long)removed[i]);
		ev_attrs_free(a);
	}

	/* Mutable attributes are not bound: label, id, usage flags. */
	a = ec_key_attrs();
	ck_assert_uint_eq(ev_attrs_set(a, CKA_LABEL, "renamed", 7), CKR_OK);
	ck_assert_uint_eq(ev_attrs_set(a, CKA_ID, "\x09", 1), CKR_OK);
	ck_assert_uint_eq(ev_attrs_set_bool(a, CKA_SIGN, CK_FALSE), CKR_OK);
	ck_assert_uint_eq(ev_attrs_set_bool(a, CKA_DERIVE, CK_TRUE), CKR_OK);
	ev_attrs_del(a, CKA_LABEL);
	digest_of(a, d);
	ck_assert_int_eq(memcmp(base, d, sizeof(d)), 0);
	ev_attrs_free(a);

	/* No attributes at all is a digest too, the same as an empty list. */
	a = ev_attrs_new();
	digest_of(a, base);
	digest_of(NULL, d);
	ck_assert_int_eq(memcmp(base, d, sizeof(d)), 0);
	ev_attrs_free(a);
}
END_TEST

/* ---- the pkcs11 root, against SoftHSMv2 --------------------------------- */

static const char *
softhsm_path(void)
{
	const char *p = getenv("EV_SOFTHSM");

	return (p != NULL && *p != '\0') ? p : DEFAULT_SOFTHSM;
}

static void
run_quiet(char *const argv[])
{
	pid_t pid;
	int status;

	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (freopen("/dev/null", "w", stdout) == NULL)
			_exit(126);
		execvp(argv[0], argv);
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s failed (status %d)",
		      argv[0], status);
}

/* A SoftHSMv2 configuration and one initialised token, all in tmpdir. */
static void
softhsm_setup(void)
{
	char text[600];
	char *init[] = {"softhsm2-util", "--init-token", "--free",   "--label", TOKEN_LABEL,
			"--pin",	 USER_PIN,	 "--so-pin", SO_PIN,	NULL};

	setup();
	ck_assert_int_eq(mkdir(path_of("tokens"), 0700), 0);
	snprintf(text, sizeof(text),
		 "directories.tokendir = %s\nobjectstore.backend = file\n"
		 "log.level = ERROR\n",
		 path_of("tokens"));
	write_text("softhsm2.conf", text, 0600);
	ck_assert_int_eq(setenv("SOFTHSM2_CONF", path_of("softhsm2.conf"), 1), 0);
	run_quiet(init);
	write_text("root.pin", USER_PIN "\n", 0600);
}

/* An edgevault configuration; root_lines replace the [root] section's body. */
static ev_config *
config_with(const char *root_lines)
{
	char text[1500];
	char err[512] = "";
	ev_config *c = NULL;
	CK_RV rv;

	snprintf(text, sizeof(text), "[store]\ndir = %s\n[device]\nid = dev-A\n[root]\n%s\n",
		 path_of("store"), root_lines);
	write_text("edgevault.conf", text, 0600);
	rv = ev_config_load(path_of("edgevault.conf"), &c, err, sizeof(err));
	ck_assert_msg(rv == CKR_OK, "config: %s", err);
	return c;
}

static ev_config *
default_config(void)
{
	char lines[800];

	snprintf(lines, sizeof(lines), "module = %s\ntoken_label = %s\npin_file = %s\n",
		 softhsm_path(), TOKEN_LABEL, path_of("root.pin"));
	return config_with(lines);
}

static ev_root *
open_root(const ev_config *c, unsigned flags)
{
	ev_root *r = NULL;
	char err[512] = "";
	CK_RV rv;

	rv = ev_root_open(c, flags, &r, err, sizeof(err));
	ck_assert_msg(rv == CKR_OK, "ev_root_open: 0x%lx %s", (unsigned long)rv, err);
	ck_assert_ptr_nonnull(r);
	return r;
}

/* ev_root_open fails with want; returns the message. */
static const char *
open_fails(const ev_config *c, unsigned flags, CK_RV want)
{
	static char err[512];
	ev_root *r = (ev_root *)1;
	CK_RV rv;

	err[0] = '\0';
	rv = ev_root_open(c, flags, &r, err, sizeof(err));
	ck_assert_msg(rv == want, "ev_root_open: 0x%lx, wanted 0x%lx (%s)", (unsigned long)rv,
		      (unsigned long)want, err);
	ck_assert_ptr_null(r);
	ck_assert_msg(err[0] != '\0', "no message");
	return err;
}

static void
seal_zone_key(ev_root *r, const ev_secret *zk, int64_t zone, unsigned char **blob, size_t *len)
{
	CK_RV rv;

	rv = ev_zone_key_seal(r, "dev-A", zone, zk, NULL, blob, len);
	ck_assert_msg(rv == CKR_OK, "seal: 0x%lx", (unsigned long)rv);
	ck_assert_uint_eq(*len, 1 + 12 + EV_ZONE_KEY_LEN + 16);
	ck_assert_uint_eq((*blob)[0], 1);
}

static void
unseal_ok(ev_root *r, const ev_secret *zk, int64_t zone, const unsigned char *blob, size_t len)
{
	ev_secret *k = NULL;
	CK_RV rv;

	rv = ev_zone_key_unseal(r, "dev-A", zone, blob, len, NULL, &k);
	ck_assert_msg(rv == CKR_OK, "unseal: 0x%lx", (unsigned long)rv);
	ck_assert_int_eq(ev_secret_equal(k, zk), 1);
	ev_secret_free(k);
}

static void
unseal_fails(ev_root *r, const char *dev, int64_t zone, const unsigned char *blob, size_t len,
	     const char *what)
{
	ev_secret *k = (ev_secret *)1;
	CK_RV rv;

	rv = ev_zone_key_unseal(r, dev, zone, blob, len, NULL, &k);
	ck_assert_msg(rv == CKR_ENCRYPTED_DATA_INVALID, "%s: 0x%lx", what, (unsigned long)rv);
	ck_assert_ptr_null(k);
}

START_TEST(test_seal_roundtrip)
{
	ev_config *c = default_config();
	ev_root *r = open_root(c, EV_ROOT_CREATE_KEY);
	ev_secret *zk = new_zone_key();
	unsigned char *blob, *blob2;
	size_t len, len2, i;

	seal_zone_key(r, zk, 1, &blob, &len);
	unseal_ok(r, zk, 1, blob, len);
	/* A fresh IV each time. */
	seal_zone_key(r, zk, 1, &blob2, &len2);
	ck_assert_int_ne(memcmp(blob, blob2, len), 0);
	unseal_ok(r, zk, 1, blob2, len2);
	free(blob2);

	unseal_fails(r, "dev-B", 1, blob, len, "other device");
	unseal_fails(r, "dev-", 1, blob, len, "device id prefix");
	unseal_fails(r, "dev-A", 2, blob, len, "other zone");
	unseal_fails(r, "dev-A", -1, blob, len, "negative zone");
	for (i = 0; i < len; i++) {
		blob[i] ^= 0x80;
		unseal_fails(r, "dev-A", 1, blob, len, "tampered");
		blob[i] ^= 0x80;
	}
	for (i = 0; i < len; i++)
		unseal_fails(r, "dev-A", 1, blob, i, "truncated");
	/* Still fine after all those failures. */
	unseal_ok(r, zk, 1, blob, len);
	free(blob);
	ev_secret_free(zk);
	ev_root_free(r);
	ev_config_free(c);
}
END_TEST

START_TEST(test_pkcs11_refuses_options)
{
	ev_config *c = default_config();
	ev_root *r = open_root(c, EV_ROOT_CREATE_KEY);
	ev_secret *zk = new_zone_key(), *auth = ev_secret_dup("0123456789abcdef", 16);
	ev_seal_opts pcrs = {.pcrs = 1u << 7}, with_auth = {.auth = auth}, both = {0};
	ev_seal_opts none = {0}, beyond = {.pcrs = 1u << 24};
	ev_unseal_opts uo = {.auth = auth};
	unsigned char *blob = (unsigned char *)1;
	ev_secret *k = (ev_secret *)1;
	size_t len = 1;

	ck_assert_ptr_nonnull(auth);
	/* The upstream token has no PCRs, and its PIN is the only auth value. */
	ck_assert_uint_eq(ev_zone_key_seal(r, "dev-A", 1, zk, &pcrs, &blob, &len),
			  CKR_ARGUMENTS_BAD);
	ck_assert_ptr_null(blob);
	ck_assert_uint_eq(len, 0);
	ck_assert_uint_eq(ev_zone_key_seal(r, "dev-A", 1, zk, &with_auth, &blob, &len),
			  CKR_ARGUMENTS_BAD);
	ck_assert_ptr_null(blob);
	/* Refused by any backend: both at once, a PCR beyond 23. */
	both.pcrs = 1;
	both.auth = auth;
	ck_assert_uint_eq(ev_zone_key_seal(r, "dev-A", 1, zk, &both, &blob, &len),
			  CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(ev_zone_key_seal(r, "dev-A", 1, zk, &beyond, &blob, &len),
			  CKR_ARGUMENTS_BAD);
	/* Zeroed options are no options. */
	ck_assert_uint_eq(ev_zone_key_seal(r, "dev-A", 1, zk, &none, &blob, &len), CKR_OK);
	ck_assert_uint_eq(ev_zone_key_unseal(r, "dev-A", 1, blob, len, &uo, &k), CKR_ARGUMENTS_BAD);
	ck_assert_ptr_null(k);
	uo.auth = NULL;
	uo.pcrs = uo.changed = 99;
	ck_assert_uint_eq(ev_zone_key_unseal(r, "dev-A", 1, blob, len, &uo, &k), CKR_OK);
	ck_assert_int_eq(ev_secret_equal(k, zk), 1);
	ck_assert_uint_eq(uo.pcrs, 0);
	ck_assert_uint_eq(uo.changed, 0);
	ev_secret_free(k);
	free(blob);
	ev_secret_free(auth);
	ev_secret_free(zk);
	ev_root_free(r);
	ev_config_free(c);
}
END_TEST

START_TEST(test_so_auth_derive)
{
	ev_secret *a = NULL, *b = NULL;
	const CK_UTF8CHAR pin[] = "so-secret";

	ck_assert_uint_eq(ev_so_auth_derive(pin, 9, 3, "00aa11bb22cc33dd", &a), CKR_OK);
	ck_assert_uint_eq(a->len, EV_SO_AUTH_LEN);
	/* The same inputs, the same value. */
	ck_assert_uint_eq(ev_so_auth_derive(pin, 9, 3, "00aa11bb22cc33dd", &b), CKR_OK);
	ck_assert_int_eq(ev_secret_equal(a, b), 1);
	ev_secret_free(b);
	/* Another PIN, zone or serial: another value. */
	ck_assert_uint_eq(ev_so_auth_derive(pin, 8, 3, "00aa11bb22cc33dd", &b), CKR_OK);
	ck_assert_int_eq(ev_secret_equal(a, b), 0);
	ev_secret_free(b);
	ck_assert_uint_eq(ev_so_auth_derive(pin, 9, 4, "00aa11bb22cc33dd", &b), CKR_OK);
	ck_assert_int_eq(ev_secret_equal(a, b), 0);
	ev_secret_free(b);
	ck_assert_uint_eq(ev_so_auth_derive(pin, 9, 3, "00aa11bb22cc33de", &b), CKR_OK);
	ck_assert_int_eq(ev_secret_equal(a, b), 0);
	ev_secret_free(b);
	b = (ev_secret *)1;
	ck_assert_uint_eq(ev_so_auth_derive(pin, 0, 3, "s", &b), CKR_ARGUMENTS_BAD);
	ck_assert_ptr_null(b);
	b = (ev_secret *)1;
	ck_assert_uint_eq(ev_so_auth_derive(pin, 9, 3, NULL, &b), CKR_ARGUMENTS_BAD);
	ck_assert_ptr_null(b);
	ev_secret_free(a);
}
END_TEST

START_TEST(test_root_key_reused)
{
	ev_config *c = default_config();
	ev_secret *zk = new_zone_key();
	unsigned char *blob;
	ev_root *r1, *r2;
	const char *e;
	size_t len;

	/* No key yet, and not allowed to create one. */
	e = open_fails(c, 0, CKR_DEVICE_ERROR);
	ck_assert_err_has(e, "root key \"edgevault-root\" not found");

	r1 = open_root(c, EV_ROOT_CREATE_KEY);
	seal_zone_key(r1, zk, 5, &blob, &len);
	ev_root_free(r1);

	/* Found again, without creating another. */
	r1 = open_root(c, 0);
	unseal_ok(r1, zk, 5, blob, len);
	ev_root_free(r1);
	r1 = open_root(c, EV_ROOT_CREATE_KEY);
	unseal_ok(r1, zk, 5, blob, len);

	/* Two roots on the same module at once; closing one leaves the other. */
	r2 = open_root(c, 0);
	unseal_ok(r2, zk, 5, blob, len);
	ev_root_free(r1);
	unseal_ok(r2, zk, 5, blob, len);
	ev_root_free(r2);

	free(blob);
	ev_secret_free(zk);
	ev_config_free(c);
}
END_TEST

START_TEST(test_wrong_pin)
{
	ev_config *c = default_config();
	const char *e;

	write_text("root.pin", "4321\n", 0600);
	e = open_fails(c, EV_ROOT_CREATE_KEY, CKR_PIN_INCORRECT);
	ck_assert_err_has(e, "PIN rejected");
	ck_assert_err_has(e, TOKEN_LABEL);
	ev_config_free(c);
}
END_TEST

START_TEST(test_missing_pin_file)
{
	ev_config *c = default_config();
	const char *e;

	ck_assert_int_eq(remove(path_of("root.pin")), 0);
	e = open_fails(c, EV_ROOT_CREATE_KEY, CKR_GENERAL_ERROR);
	ck_assert_err_has(e, path_of("root.pin"));
	ev_config_free(c);
}
END_TEST

START_TEST(test_pin_env)
{
	char lines[800];
	ev_config *c;
	ev_root *r;

	snprintf(lines, sizeof(lines), "module = %s\ntoken_label = %s\npin_env = EV_TEST_PIN\n",
		 softhsm_path(), TOKEN_LABEL);
	c = config_with(lines);
	ck_assert_int_eq(setenv("EV_TEST_PIN", USER_PIN, 1), 0);
	r = open_root(c, EV_ROOT_CREATE_KEY);
	ev_root_free(r);
	ck_assert_int_eq(unsetenv("EV_TEST_PIN"), 0);
	ck_assert_err_has(open_fails(c, EV_ROOT_CREATE_KEY, CKR_GENERAL_ERROR), "EV_TEST_PIN");
	ev_config_free(c);
}
END_TEST

START_TEST(test_unknown_token)
{
	char lines[800];
	ev_config *c;
	const char *e;

	snprintf(lines, sizeof(lines),
		 "module = %s\ntoken_label = no such token\n"
		 "pin_file = %s\n",
		 softhsm_path(), path_of("root.pin"));
	c = config_with(lines);
	e = open_fails(c, EV_ROOT_CREATE_KEY, CKR_DEVICE_ERROR);
	ck_assert_err_has(e, "no upstream token labelled \"no such token\"");
	ev_config_free(c);

	/* A label is compared whole, not as a prefix. */
	snprintf(lines, sizeof(lines), "module = %s\ntoken_label = ev test\npin_file = %s\n",
		 softhsm_path(), path_of("root.pin"));
	c = config_with(lines);
	open_fails(c, EV_ROOT_CREATE_KEY, CKR_DEVICE_ERROR);
	ev_config_free(c);
}
END_TEST

START_TEST(test_missing_module)
{
	char lines[800];
	ev_config *c;
	const char *e;

	snprintf(lines, sizeof(lines), "module = %s\ntoken_label = %s\npin_file = %s\n",
		 path_of("no-such-module.so"), TOKEN_LABEL, path_of("root.pin"));
	c = config_with(lines);
	e = open_fails(c, EV_ROOT_CREATE_KEY, CKR_DEVICE_ERROR);
	ck_assert_err_has(e, "cannot load upstream module");
	ck_assert_err_has(e, path_of("no-such-module.so"));
	ev_config_free(c);
}
END_TEST

START_TEST(test_unknown_backend)
{
	/* The loader refuses it; a configuration built otherwise meets the root's own check. */
	ev_config *c = default_config();
	const char *e;

	free(c->root_backend);
	c->root_backend = strdup("tpm3");
	ck_assert_ptr_nonnull(c->root_backend);
	e = open_fails(c, EV_ROOT_CREATE_KEY, CKR_GENERAL_ERROR);
	ck_assert_str_eq(e, "unknown root backend tpm3");
	ev_config_free(c);
}
END_TEST

START_TEST(test_tpm2_unreachable)
{
	/* Nothing listens on port 1 of the loopback: a clear device error. */
	ev_config *c = config_with("backend = tpm2\ntcti = swtpm:host=127.0.0.1,port=1\n");
	const char *e;

	e = open_fails(c, EV_ROOT_CREATE_KEY, CKR_DEVICE_ERROR);
	ck_assert_msg(strstr(e, "cannot reach the TPM through TCTI \"swtpm:host=127.0.0.1,port=1\"") !=
			  NULL,
		      "%s", e);
	ev_config_free(c);
}
END_TEST

/* The test's own handle on the upstream module: the same instance as ours. */
static void
close_all_upstream_sessions(void)
{
	CK_FUNCTION_LIST *f;
	CK_SLOT_ID slots[16];
	CK_ULONG n = 16, i;
	CK_TOKEN_INFO ti;
	CK_UTF8CHAR want[32];
	char err[256];
	int closed = 0;

	f = ev_p11kit_load(softhsm_path(), err, sizeof(err));
	ck_assert_msg(f != NULL, "%s", err);
	ck_assert_uint_eq(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	ev_padded_copy(want, sizeof(want), TOKEN_LABEL);
	for (i = 0; i < n; i++) {
		if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
		    memcmp(ti.label, want, sizeof(want)) != 0)
			continue;
		ck_assert_uint_eq(f->C_CloseAllSessions(slots[i]), CKR_OK);
		closed = 1;
	}
	ck_assert_int_eq(closed, 1);
	ev_p11kit_release(f);
}

/* Log the application out of the token behind our back. */
static void
logout_upstream(void)
{
	CK_FUNCTION_LIST *f;
	CK_SLOT_ID slots[16];
	CK_SESSION_HANDLE h;
	CK_ULONG n = 16, i;
	CK_TOKEN_INFO ti;
	CK_UTF8CHAR want[32];
	char err[256];
	int done = 0;

	f = ev_p11kit_load(softhsm_path(), err, sizeof(err));
	ck_assert_msg(f != NULL, "%s", err);
	ck_assert_uint_eq(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	ev_padded_copy(want, sizeof(want), TOKEN_LABEL);
	for (i = 0; i < n; i++) {
		if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
		    memcmp(ti.label, want, sizeof(want)) != 0)
			continue;
		ck_assert_uint_eq(f->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL, &h),
				  CKR_OK);
		ck_assert_uint_eq(f->C_Logout(h), CKR_OK);
		ck_assert_uint_eq(f->C_CloseSession(h), CKR_OK);
		done = 1;
	}
	ck_assert_int_eq(done, 1);
	ev_p11kit_release(f);
}

START_TEST(test_reconnect)
{
	ev_config *c = default_config();
	ev_root *r = open_root(c, EV_ROOT_CREATE_KEY);
	ev_secret *zk = new_zone_key();
	unsigned char *blob;
	size_t len;

	seal_zone_key(r, zk, 9, &blob, &len);
	/* Our session disappears under us: the next call reconnects. */
	close_all_upstream_sessions();
	unseal_ok(r, zk, 9, blob, len);
	close_all_upstream_sessions();
	free(blob);
	seal_zone_key(r, zk, 9, &blob, &len);
	unseal_ok(r, zk, 9, blob, len);
	/* Logged out under us: the key is out of reach until we log in again. */
	logout_upstream();
	unseal_ok(r, zk, 9, blob, len);
	free(blob);
	ev_secret_free(zk);
	ev_root_free(r);
	ev_config_free(c);
}
END_TEST

/* The upstream token's flags, through the test's own handle. */
static CK_FLAGS
upstream_flags(void)
{
	CK_FUNCTION_LIST *f;
	CK_SLOT_ID slots[16];
	CK_ULONG n = 16, i;
	CK_TOKEN_INFO ti;
	CK_UTF8CHAR want[32];
	CK_FLAGS flags = 0;
	char err[256];
	int found = 0;

	f = ev_p11kit_load(softhsm_path(), err, sizeof(err));
	ck_assert_msg(f != NULL, "%s", err);
	ck_assert_uint_eq(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	ev_padded_copy(want, sizeof(want), TOKEN_LABEL);
	for (i = 0; i < n; i++) {
		if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
		    memcmp(ti.label, want, sizeof(want)) != 0)
			continue;
		flags = ti.flags;
		found = 1;
	}
	ck_assert_int_eq(found, 1);
	ev_p11kit_release(f);
	return flags;
}

/* A good login and logout behind our back: clears the token's failure mark. */
static void
good_login_upstream(void)
{
	CK_FUNCTION_LIST *f;
	CK_SLOT_ID slots[16];
	CK_SESSION_HANDLE h;
	CK_ULONG n = 16, i;
	CK_TOKEN_INFO ti;
	CK_UTF8CHAR want[32];
	char err[256];
	CK_RV rv;

	f = ev_p11kit_load(softhsm_path(), err, sizeof(err));
	ck_assert_msg(f != NULL, "%s", err);
	ck_assert_uint_eq(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	ev_padded_copy(want, sizeof(want), TOKEN_LABEL);
	for (i = 0; i < n; i++) {
		if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
		    memcmp(ti.label, want, sizeof(want)) != 0)
			continue;
		ck_assert_uint_eq(f->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL, &h),
				  CKR_OK);
		rv = f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN));
		ck_assert_uint_eq(rv, CKR_OK);
		ck_assert_uint_eq(f->C_Logout(h), CKR_OK);
		ck_assert_uint_eq(f->C_CloseSession(h), CKR_OK);
	}
	ev_p11kit_release(f);
}

/*
 * A wrong PIN met on reconnection is not offered again at every later
 * operation (each would count against the token's retry limit); a changed
 * PIN is.
 */
START_TEST(test_reconnect_wrong_pin)
{
	ev_config *c = default_config();
	ev_root *r = open_root(c, EV_ROOT_CREATE_KEY);
	ev_secret *zk = new_zone_key();
	ev_secret *k = NULL;
	unsigned char *blob;
	size_t len;

	seal_zone_key(r, zk, 4, &blob, &len);
	write_text("root.pin", "4321\n", 0600);
	logout_upstream();
	ck_assert_uint_eq(ev_zone_key_unseal(r, "dev-A", 4, blob, len, NULL, &k),
			  CKR_PIN_INCORRECT);
	ck_assert_ptr_null(k);
	/* SoftHSMv2 marks a failed login with CKF_USER_PIN_COUNT_LOW; a good one clears it. */
	ck_assert(upstream_flags() & CKF_USER_PIN_COUNT_LOW);
	good_login_upstream();
	ck_assert(!(upstream_flags() & CKF_USER_PIN_COUNT_LOW));

	/* The same wrong PIN again: refused here, never shown to the token. */
	ck_assert_uint_eq(ev_zone_key_unseal(r, "dev-A", 4, blob, len, NULL, &k),
			  CKR_PIN_INCORRECT);
	ck_assert_uint_eq(ev_zone_key_unseal(r, "dev-A", 4, blob, len, NULL, &k),
			  CKR_PIN_INCORRECT);
	ck_assert(!(upstream_flags() & CKF_USER_PIN_COUNT_LOW));

	/* Another wrong PIN is tried (and fails); the right one works again. */
	write_text("root.pin", "9999\n", 0600);
	ck_assert_uint_eq(ev_zone_key_unseal(r, "dev-A", 4, blob, len, NULL, &k),
			  CKR_PIN_INCORRECT);
	ck_assert(upstream_flags() & CKF_USER_PIN_COUNT_LOW);
	write_text("root.pin", USER_PIN "\n", 0600);
	unseal_ok(r, zk, 4, blob, len);
	free(blob);
	ev_secret_free(zk);
	ev_root_free(r);
	ev_config_free(c);
}
END_TEST

START_TEST(test_fork)
{
	ev_config *c = default_config();
	ev_root *r = open_root(c, EV_ROOT_CREATE_KEY);
	ev_secret *zk = new_zone_key();
	unsigned char *blob;
	size_t len;
	pid_t pid;
	int status;

	seal_zone_key(r, zk, 3, &blob, &len);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* Check's assertions do not travel back from here: exit codes. */
		ev_secret *k = NULL;
		unsigned char *b2 = NULL;
		size_t l2 = 0;
		int code = 0;

		ev_root_forked(r);
		if (ev_zone_key_unseal(r, "dev-A", 3, blob, len, NULL, &k) != CKR_OK)
			code = 1;
		else if (!ev_secret_equal(k, zk))
			code = 2;
		else if (ev_zone_key_seal(r, "dev-A", 3, zk, NULL, &b2, &l2) != CKR_OK)
			code = 3;
		ev_secret_free(k);
		free(b2);
		ev_root_free(r);
		_exit(code);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: %d", status);
	/* The parent's session was left alone. */
	unseal_ok(r, zk, 3, blob, len);
	free(blob);
	seal_zone_key(r, zk, 3, &blob, &len);
	unseal_ok(r, zk, 3, blob, len);
	free(blob);
	ev_secret_free(zk);
	ev_root_free(r);
	ev_config_free(c);
}
END_TEST

struct thread_arg {
	ev_root *r;
	const ev_secret *zk;
	int64_t zone;
	int failures;
};

static void *
seal_loop(void *p)
{
	struct thread_arg *a = p;
	unsigned char *blob;
	ev_secret *k;
	size_t len;
	int i;

	for (i = 0; i < 25; i++) {
		blob = NULL;
		k = NULL;
		if (ev_zone_key_seal(a->r, "dev-A", a->zone, a->zk, NULL, &blob, &len) != CKR_OK ||
		    ev_zone_key_unseal(a->r, "dev-A", a->zone, blob, len, NULL, &k) != CKR_OK ||
		    !ev_secret_equal(k, a->zk))
			a->failures++;
		ev_secret_free(k);
		free(blob);
	}
	return NULL;
}

START_TEST(test_threads)
{
	ev_config *c = default_config();
	ev_root *r = open_root(c, EV_ROOT_CREATE_KEY);
	struct thread_arg args[4];
	pthread_t th[4];
	ev_secret *zk[4];
	int i;

	/* The backend serialises its upstream session itself. */
	for (i = 0; i < 4; i++) {
		zk[i] = new_zone_key();
		args[i].r = r;
		args[i].zk = zk[i];
		args[i].zone = i;
		args[i].failures = 0;
		ck_assert_int_eq(pthread_create(&th[i], NULL, seal_loop, &args[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
		ck_assert_int_eq(args[i].failures, 0);
		ev_secret_free(zk[i]);
	}
	ev_root_free(r);
	ev_config_free(c);
}
END_TEST

static Suite *
keyring_suite(void)
{
	Suite *s = suite_create("keyring");
	TCase *wrap = tcase_create("wrap");
	TCase *root = tcase_create("root");

	tcase_add_checked_fixture(wrap, setup, tmpdir_remove);
	tcase_add_test(wrap, test_zone_key_new);
	tcase_add_test(wrap, test_wrap_roundtrip);
	tcase_add_test(wrap, test_wrap_moved);
	tcase_add_test(wrap, test_wrap_tampered);
	tcase_add_test(wrap, test_wrap_truncated);
	tcase_add_test(wrap, test_wrap_version);
	tcase_add_test(wrap, test_wrap_wrong_key);
	tcase_add_test(wrap, test_wrap_bad_arguments);
	tcase_add_test(wrap, test_attr_digest);
	suite_add_tcase(s, wrap);

	tcase_add_checked_fixture(root, softhsm_setup, tmpdir_remove);
	tcase_set_timeout(root, 120);
	tcase_add_test(root, test_seal_roundtrip);
	tcase_add_test(root, test_root_key_reused);
	tcase_add_test(root, test_wrong_pin);
	tcase_add_test(root, test_missing_pin_file);
	tcase_add_test(root, test_pin_env);
	tcase_add_test(root, test_unknown_token);
	tcase_add_test(root, test_missing_module);
	tcase_add_test(root, test_unknown_backend);
	tcase_add_test(root, test_tpm2_unreachable);
	tcase_add_test(root, test_pkcs11_refuses_options);
	tcase_add_test(root, test_so_auth_derive);
	tcase_add_test(root, test_reconnect);
	tcase_add_test(root, test_reconnect_wrong_pin);
	tcase_add_test(root, test_fork);
	tcase_add_test(root, test_threads);
	suite_add_tcase(s, root);
	return s;
}

int
main(void)
{
	return run_suite(keyring_suite());
}
