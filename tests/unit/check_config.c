/*
 * Unit tests of the configuration loader (src/config.c). Each test writes
 * its files into its own temporary directory and removes it.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "config.h"
#include "testutil.h"

static void
setup(void)
{
	tmpdir_make("ev_config");
}

/* Load text as a configuration; expect failure; return the message. */
static const char *
load_fails(const char *text)
{
	static char err[512];
	const char *p = write_text("edgevault.conf", text, 0644);
	ev_config *c = (ev_config *)1;
	CK_RV rv;

	err[0] = '\0';
	rv = ev_config_load(p, &c, err, sizeof(err));
	ck_assert_msg(rv == CKR_GENERAL_ERROR, "loaded (0x%lx) what should fail:\n%s",
		      (unsigned long)rv, text);
	ck_assert_ptr_null(c);
	ck_assert_msg(strstr(err, p) != NULL, "error does not name the file: %s", err);
	return err;
}

static ev_config *
load_ok(const char *text)
{
	char err[512] = "";
	const char *p = write_text("edgevault.conf", text, 0644);
	ev_config *c = NULL;
	CK_RV rv;

	rv = ev_config_load(p, &c, err, sizeof(err));
	ck_assert_msg(rv == CKR_OK, "load failed (0x%lx): %s", (unsigned long)rv, err);
	ck_assert_ptr_nonnull(c);
	return c;
}

/* err mentions every one of the given strings. */
START_TEST(test_full_file)
{
	ev_config *c = load_ok("; every setting\n"
			       "[store]\n"
			       "dir = /var/lib/edgevault\n"
			       "\n"
			       "[device]\n"
			       "id = edge-0042\n"
			       "[root]\n"
			       "backend = pkcs11\n"
			       "module = /usr/lib/softhsm/libsofthsm2.so\n"
			       "token_label = edgevault root\n"
			       "pin_file = /etc/edgevault/root.pin\n"
			       "key_label = my-root\n"
			       "# comment\n"
			       "[pin]\n"
			       "max_fails = 5\n"
			       "argon2_ops = 4\n"
			       "argon2_mem_kib = 65536\n");

	ck_assert_str_eq(c->path, path_of("edgevault.conf"));
	ck_assert_str_eq(c->store_dir, "/var/lib/edgevault");
	ck_assert_str_eq(c->device_id, "edge-0042");
	ck_assert_str_eq(c->root_backend, "pkcs11");
	ck_assert_str_eq(c->root_module, "/usr/lib/softhsm/libsofthsm2.so");
	ck_assert_str_eq(c->root_token_label, "edgevault root");
	ck_assert_str_eq(c->root_pin_file, "/etc/edgevault/root.pin");
	ck_assert_ptr_null(c->root_pin_env);
	ck_assert_str_eq(c->root_key_label, "my-root");
	ck_assert_uint_eq(c->pin_max_fails, 5);
	ck_assert_uint_eq(c->argon2_ops, 4);
	ck_assert_uint_eq(c->argon2_mem, 65536u * 1024u);
	ev_config_free(c);
}
END_TEST

/* [device] id: 1..255 bytes of printable UTF-8; audit lines and checkpoints carry it whole. */
START_TEST(test_device_id_bounded)
{
	static const char *const bad[] = {"edge\x01x", "edge\x7fx", "edge\xff", "a\tb"};
	char text[1024], id[300];
	const char *e;
	ev_config *c;
	size_t i;

	/* As long as libinih's line (INI_MAX_LINE, 200 here) allows. */
	memset(id, 'd', sizeof(id));
	id[180] = '\0';
	snprintf(text, sizeof(text), "[store]\ndir = /s\n[device]\nid = %s\n"
		 "[root]\nmodule = /m.so\ntoken_label = t\npin_env = X\n", id);
	c = load_ok(text);
	ck_assert_uint_eq(strlen(c->device_id), 180);
	ev_config_free(c);
	c = load_ok("[store]\ndir = /s\n[device]\nid = \xc3\xa9\x64ge 1\n"
		    "[root]\nmodule = /m.so\ntoken_label = t\npin_env = X\n");
	ck_assert_str_eq(c->device_id, "\xc3\xa9\x64ge 1");
	ev_config_free(c);

	/* Refused by the bound, or before it by a libinih with a short line. */
	memset(id, 'd', sizeof(id));
	id[EV_DEVICE_ID_MAX + 1] = '\0';
	snprintf(text, sizeof(text), "[store]\ndir = /s\n[device]\nid = %s\n"
		 "[root]\nmodule = /m.so\ntoken_label = t\npin_env = X\n", id);
	e = load_fails(text);
	ck_assert_msg(strstr(e, "[device] id must be 1 to 255 bytes of printable UTF-8") != NULL ||
			  strstr(e, "line longer than") != NULL,
		      "%s", e);
	for (i = 0; i < EV_ARRAY_SIZE(bad); i++) {
		snprintf(text, sizeof(text), "[store]\ndir = /s\n[device]\nid = %s\n"
			 "[root]\nmodule = /m.so\ntoken_label = t\npin_env = X\n", bad[i]);
		e = load_fails(text);
		ck_assert_err_has(e, "[device] id must be");
	}
}
END_TEST

START_TEST(test_defaults)
{
	char host[256];
	ev_config *c = load_ok("[store]\ndir = /s\n"
			       "[root]\nmodule = /m.so\ntoken_label = t\npin_env = EV_TEST_PIN\n");

	ck_assert_int_eq(gethostname(host, sizeof(host)), 0);
	host[sizeof(host) - 1] = '\0';
	ck_assert_str_eq(c->device_id, host);
	ck_assert_str_eq(c->root_backend, "pkcs11");
	ck_assert_str_eq(c->root_key_label, "edgevault-root");
	ck_assert_str_eq(c->root_pin_env, "EV_TEST_PIN");
	ck_assert_uint_eq(c->pin_max_fails, 10);
	ck_assert_uint_eq(c->argon2_ops, crypto_pwhash_OPSLIMIT_INTERACTIVE);
	ck_assert_uint_eq(c->argon2_mem, crypto_pwhash_MEMLIMIT_INTERACTIVE);
	ev_config_free(c);
}
END_TEST

START_TEST(test_tpm2_backend)
{
	ev_config *c = load_ok("[store]\ndir = /s\n[root]\nbackend = tpm2\n"
			       "tcti = swtpm:host=127.0.0.1,port=2321\n");

	ck_assert_str_eq(c->root_backend, "tpm2");
	ck_assert_str_eq(c->root_tcti, "swtpm:host=127.0.0.1,port=2321");
	ck_assert_uint_eq(c->root_primary_handle, 0); /* a transient primary */
	ck_assert_ptr_null(c->root_module);
	ck_assert_ptr_null(c->root_helper); /* the installed one */
	ev_config_free(c);

	c = load_ok("[store]\ndir = /s\n[root]\nbackend = tpm2\ntcti = device\n"
		    "helper = /opt/ev/edgevault-tpm-helper\n");
	ck_assert_str_eq(c->root_helper, "/opt/ev/edgevault-tpm-helper");
	ev_config_free(c);

	c = load_ok("[store]\ndir = /s\n[root]\nbackend = tpm2\ntcti = device:/dev/tpmrm0\n"
		    "primary_handle = 0x81000001\n");
	ck_assert_uint_eq(c->root_primary_handle, 0x81000001u);
	ev_config_free(c);
	c = load_ok("[store]\ndir = /s\n[root]\nbackend = tpm2\ntcti = device\n"
		    "primary_handle = 0X817fffff\n");
	ck_assert_uint_eq(c->root_primary_handle, 0x817fffffu);
	ev_config_free(c);
}
END_TEST

START_TEST(test_tpm2_backend_refused)
{
	static const char *bad_handles[] = {
	    "0x01000001", "0x81800000", "81000001", "0x", "0x810000011", "0x8100000g",
	    "0x81000001 x", "-0x81000001", "0x+81000001", "2164260865",
	};
	const char *e;
	char text[256];
	size_t i;

	e = load_fails("[store]\ndir = /s\n[root]\nbackend = tpm2\n");
	ck_assert_err_has(e, "[root] tcti is required");
	e = load_fails("[store]\ndir = /s\n[root]\nbackend = tpm3\ntcti = device\n");
	ck_assert_err_has(e, "\"tpm3\"");
	ck_assert_err_has(e, "unknown backend");

	/* A setting of the other backend says the root is elsewhere: refused. */
	e = load_fails("[store]\ndir = /s\n[root]\nbackend = tpm2\ntcti = device\n"
		       "module = /m.so\n");
	ck_assert_err_has(e, "[root] module is a setting of backend pkcs11, not tpm2");
	e = load_fails("[store]\ndir = /s\n[root]\nbackend = tpm2\ntcti = device\n"
		       "key_label = k\n");
	ck_assert_err_has(e, "key_label");
	e = load_fails("[store]\ndir = /s\n[root]\nbackend = tpm2\ntcti = device\n"
		       "pin_env = X\n");
	ck_assert_err_has(e, "pin_env");
	e = load_fails("[store]\ndir = /s\n[root]\nmodule = /m.so\ntoken_label = t\n"
		       "pin_env = X\ntcti = device\n");
	ck_assert_err_has(e, "[root] tcti is a setting of backend tpm2, not pkcs11");
	e = load_fails("[store]\ndir = /s\n[root]\nmodule = /m.so\ntoken_label = t\n"
		       "pin_env = X\nprimary_handle = 0x81000001\n");
	ck_assert_err_has(e, "primary_handle");
	e = load_fails("[store]\ndir = /s\n[root]\nmodule = /m.so\ntoken_label = t\n"
		       "pin_env = X\nhelper = /h\n");
	ck_assert_err_has(e, "[root] helper is a setting of backend tpm2, not pkcs11");
	/* Started with posix_spawn: never found through $PATH or the current directory. */
	e = load_fails("[store]\ndir = /s\n[root]\nbackend = tpm2\ntcti = device\n"
		       "helper = edgevault-tpm-helper\n");
	ck_assert_err_has(e, "[root] helper = \"edgevault-tpm-helper\": an absolute path is required");

	for (i = 0; i < EV_ARRAY_SIZE(bad_handles); i++) {
		snprintf(text, sizeof(text),
			 "[store]\ndir = /s\n[root]\nbackend = tpm2\ntcti = device\n"
			 "primary_handle = %s\n",
			 bad_handles[i]);
		e = load_fails(text);
		ck_assert_err_has(e, "primary_handle");
		ck_assert_err_has(e, "persistent TPM handle");
	}
	/* Given twice: refused like any other key. */
	e = load_fails("[store]\ndir = /s\n[root]\nbackend = tpm2\ntcti = device\n"
		       "tcti = mssim\n");
	ck_assert_err_has(e, "tcti");
}
END_TEST

START_TEST(test_missing_required)
{
	const char *e;

	e = load_fails("[root]\nmodule = /m.so\ntoken_label = t\npin_env = X\n");
	ck_assert_err_has(e, "[store] dir");
	e = load_fails("[store]\ndir = /s\n");
	ck_assert_err_has(e, "[root] module");
	e = load_fails("[store]\ndir = /s\n[root]\nmodule = /m.so\npin_env = X\n");
	ck_assert_err_has(e, "token_label");
	e = load_fails("[store]\ndir = /s\n[root]\nmodule = /m.so\ntoken_label = t\n");
	ck_assert_err_has(e, "pin_file");
	ck_assert_err_has(e, "pin_env");
	e = load_fails("[store]\ndir = /s\n[root]\nmodule = /m.so\ntoken_label = t\n"
		       "pin_env = X\npin_file = /p\n");
	ck_assert_err_has(e, "both");
	e = load_fails("[store]\ndir = /s\n[root]\nmodule = /m.so\npin_env = X\n"
		       "token_label = 0123456789012345678901234567890123\n");
	ck_assert_err_has(e, "32 bytes");
}
END_TEST

START_TEST(test_unknown_key)
{
	const char *e;
	char want[450];

	e = load_fails("[store]\ndir = /s\n[root]\nmodule = /m.so\nmodul = /m.so\n");
	snprintf(want, sizeof(want), "%s:5:", path_of("edgevault.conf"));
	ck_assert_err_has(e, want);
	ck_assert_err_has(e, "\"modul\"");
	ck_assert_err_has(e, "[root]");

	/* A known key in the wrong section is unknown there. */
	e = load_fails("[store]\ndir = /s\nmodule = /m.so\n");
	snprintf(want, sizeof(want), "%s:3:", path_of("edgevault.conf"));
	ck_assert_err_has(e, want);
	ck_assert_err_has(e, "module");

	e = load_fails("dir = /s\n[store]\n");
	snprintf(want, sizeof(want), "%s:1:", path_of("edgevault.conf"));
	ck_assert_err_has(e, want);
	ck_assert_err_has(e, "outside any section");
}
END_TEST

START_TEST(test_unknown_section)
{
	const char *e;
	char want[450];

	e = load_fails("[store]\ndir = /s\n\n; roots, misspelt\n[roots]\nmodule = /m.so\n");
	snprintf(want, sizeof(want), "%s:6:", path_of("edgevault.conf"));
	ck_assert_err_has(e, want);
	ck_assert_err_has(e, "[roots]");
}
END_TEST

START_TEST(test_duplicate_and_empty)
{
	const char *e;
	char want[450];

	e = load_fails("[store]\ndir = /a\n[store]\ndir = /b\n");
	snprintf(want, sizeof(want), "%s:4:", path_of("edgevault.conf"));
	ck_assert_err_has(e, want);
	ck_assert_err_has(e, "twice");

	e = load_fails("[store]\ndir =\n");
	ck_assert_err_has(e, "empty");
}
END_TEST

START_TEST(test_syntax_and_long_line)
{
	const char *e;
	char text[600];
	char want[450];

	e = load_fails("[store]\ndir = /s\nthis line has no equals sign\n");
	snprintf(want, sizeof(want), "%s:3:", path_of("edgevault.conf"));
	ck_assert_err_has(e, want);

	snprintf(text, sizeof(text), "[store]\ndir = /%0400d\n", 0);
	e = load_fails(text);
	snprintf(want, sizeof(want), "%s:2:", path_of("edgevault.conf"));
	ck_assert_err_has(e, want);
	ck_assert_err_has(e, "longer");
}
END_TEST

static const char *
with_pin_line(const char *line)
{
	static char text[400];

	snprintf(text, sizeof(text),
		 "[store]\ndir = /s\n[root]\nmodule = /m.so\n"
		 "token_label = t\npin_env = X\n[pin]\n%s\n",
		 line);
	return text;
}

START_TEST(test_bad_numbers)
{
	static const char *bad[] = {
	    "max_fails = abc",	       "max_fails = 10x",
	    "max_fails = 10 x",	       "max_fails = -1",
	    "max_fails = +5",	       "max_fails = 0",
	    "max_fails = 1001",	       "max_fails = 99999999999999999999999",
	    "max_fails = 0x10",	       "argon2_ops = 0",
	    "argon2_ops = 4294967296", "argon2_ops = 1.5",
	    "argon2_mem_kib = 1",      "argon2_mem_kib = 18446744073709551615",
	    "argon2_mem_kib = 7",
	};
	char want[450];
	const char *e;
	size_t i;

	snprintf(want, sizeof(want), "%s:8:", path_of("edgevault.conf"));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		e = load_fails(with_pin_line(bad[i]));
		ck_assert_err_has(e, want);
		ck_assert_err_has(e, "whole number");
	}
}
END_TEST

START_TEST(test_good_numbers)
{
	ev_config *c = load_ok(with_pin_line("argon2_mem_kib = 8"));

	ck_assert_uint_eq(c->argon2_mem, crypto_pwhash_argon2id_MEMLIMIT_MIN);
	ev_config_free(c);
	c = load_ok(with_pin_line("max_fails = 1000"));
	ck_assert_uint_eq(c->pin_max_fails, 1000);
	ev_config_free(c);
	c = load_ok(with_pin_line("argon2_ops = 4294967295"));
	ck_assert_uint_eq(c->argon2_ops, 4294967295ULL);
	ev_config_free(c);
	c = load_ok(with_pin_line("max_fails = 0007 ; an inline comment"));
	ck_assert_uint_eq(c->pin_max_fails, 7);
	ev_config_free(c);
}
END_TEST

START_TEST(test_missing_file)
{
	char err[512] = "";
	ev_config *c = (ev_config *)1;

	ck_assert_uint_eq(ev_config_load(path_of("nope.conf"), &c, err, sizeof(err)),
			  CKR_GENERAL_ERROR);
	ck_assert_ptr_null(c);
	ck_assert_err_has(err, path_of("nope.conf"));
}
END_TEST

START_TEST(test_config_path)
{
	ck_assert_int_eq(setenv("EDGEVAULT_CONF", "/x/y.conf", 1), 0);
	ck_assert_str_eq(ev_config_path(), "/x/y.conf");
	ck_assert_int_eq(setenv("EDGEVAULT_CONF", "", 1), 0);
	ck_assert_str_eq(ev_config_path(), EV_CONFIG_DEFAULT_PATH);
	ck_assert_int_eq(unsetenv("EDGEVAULT_CONF"), 0);
	ck_assert_str_eq(ev_config_path(), EV_CONFIG_DEFAULT_PATH);
}
END_TEST

START_TEST(test_pin_env)
{
	ev_config *c = load_ok("[store]\ndir = /s\n[root]\nmodule = /m.so\ntoken_label = t\n"
			       "pin_env = EV_TEST_ROOT_PIN\n");
	ev_secret *pin = (ev_secret *)1;
	char err[512] = "";

	ck_assert_int_eq(setenv("EV_TEST_ROOT_PIN", "s3cret pin", 1), 0);
	ck_assert_uint_eq(ev_config_root_pin(c, &pin, err, sizeof(err)), CKR_OK);
	ck_assert_uint_eq(pin->len, 10);
	ck_assert_int_eq(memcmp(pin->data, "s3cret pin", 10), 0);
	ev_secret_free(pin);

	ck_assert_int_eq(unsetenv("EV_TEST_ROOT_PIN"), 0);
	pin = (ev_secret *)1;
	ck_assert_uint_eq(ev_config_root_pin(c, &pin, err, sizeof(err)), CKR_GENERAL_ERROR);
	ck_assert_ptr_null(pin);
	ck_assert_err_has(err, "EV_TEST_ROOT_PIN");
	ev_config_free(c);
}
END_TEST

static ev_config *
with_pin_file(const char *name)
{
	char text[600];

	snprintf(text, sizeof(text),
		 "[store]\ndir = /s\n[root]\nmodule = /m.so\n"
		 "token_label = t\npin_file = %s\n",
		 path_of(name));
	return load_ok(text);
}

static void
expect_pin(ev_config *c, const char *want)
{
	ev_secret *pin = NULL;
	char err[512] = "";
	CK_RV rv;

	rv = ev_config_root_pin(c, &pin, err, sizeof(err));
	ck_assert_msg(rv == CKR_OK, "0x%lx %s", (unsigned long)rv, err);
	ck_assert_uint_eq(pin->len, strlen(want));
	ck_assert_int_eq(memcmp(pin->data, want, pin->len), 0);
	ev_secret_free(pin);
}

START_TEST(test_pin_file)
{
	ev_config *c = with_pin_file("root.pin");

	write_text("root.pin", "1234\n", 0600);
	expect_pin(c, "1234");
	write_text("root.pin", "1234", 0600);
	expect_pin(c, "1234");
	write_text("root.pin", "1234\r\n", 0600);
	expect_pin(c, "1234");
	/* Only one newline is taken off; spaces are part of the PIN. */
	write_text("root.pin", " 12 34 \n\n", 0600);
	expect_pin(c, " 12 34 \n");
	/* Readable by others: a warning, not a failure. */
	write_text("root.pin", "5678\n", 0644);
	expect_pin(c, "5678");
	ev_config_free(c);
}
END_TEST

START_TEST(test_pin_file_bad)
{
	ev_config *c = with_pin_file("root.pin");
	ev_secret *pin = (ev_secret *)1;
	char err[512] = "";
	char big[2000];

	/* Missing. */
	ck_assert_uint_eq(ev_config_root_pin(c, &pin, err, sizeof(err)), CKR_GENERAL_ERROR);
	ck_assert_ptr_null(pin);
	ck_assert_err_has(err, path_of("root.pin"));
	ck_assert_err_has(err, "No such file");

	/* Empty, or only a newline. */
	write_text("root.pin", "\n", 0600);
	ck_assert_uint_eq(ev_config_root_pin(c, &pin, err, sizeof(err)), CKR_GENERAL_ERROR);
	ck_assert_err_has(err, "empty");

	/* Too long. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	write_text("root.pin", big, 0600);
	ck_assert_uint_eq(ev_config_root_pin(c, &pin, err, sizeof(err)), CKR_GENERAL_ERROR);
	ck_assert_err_has(err, "longer");

	/* A directory. */
	ck_assert_int_eq(remove(path_of("root.pin")), 0);
	ck_assert_int_eq(mkdir(path_of("root.pin"), 0700), 0);
	ck_assert_uint_eq(ev_config_root_pin(c, &pin, err, sizeof(err)), CKR_GENERAL_ERROR);
	ck_assert_err_has(err, "regular file");

	/* A FIFO with no writer: refused at once, not waited on in open(). */
	ck_assert_int_eq(rmdir(path_of("root.pin")), 0);
	ck_assert_int_eq(mkfifo(path_of("root.pin"), 0600), 0);
	ck_assert_uint_eq(ev_config_root_pin(c, &pin, err, sizeof(err)), CKR_GENERAL_ERROR);
	ck_assert_ptr_null(pin);
	ck_assert_err_has(err, "regular file");
	ev_config_free(c);
}
END_TEST

/* The base64 of the bytes 0, 1, ..., 31. */
#define KEY_B64 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

static const char *
with_revocation(const char *lines)
{
	static char text[600];

	snprintf(text, sizeof(text),
		 "[store]\ndir = /s\n[root]\nmodule = /m.so\n"
		 "token_label = t\npin_env = X\n[revocation]\n%s",
		 lines);
	return text;
}

START_TEST(test_revocation)
{
	unsigned char want[32];
	ev_config *c;
	size_t i;

	for (i = 0; i < sizeof(want); i++)
		want[i] = (unsigned char)i;
	c = load_ok(with_revocation("public_key = " KEY_B64 "\n"
				    "watch_dir = /var/lib/edgevault/revocation\n"));
	ck_assert_int_eq(c->has_revocation_key, 1);
	ck_assert_mem_eq(c->revocation_key, want, sizeof(want));
	ck_assert_str_eq(c->revocation_dir, "/var/lib/edgevault/revocation");
	ev_config_free(c);

	/* A key without a directory: lists come through the admin interface only. */
	c = load_ok(with_revocation("public_key = " KEY_B64 " ; the authority\n"));
	ck_assert_int_eq(c->has_revocation_key, 1);
	ck_assert_mem_eq(c->revocation_key, want, sizeof(want));
	ck_assert_ptr_null(c->revocation_dir);
	ev_config_free(c);

	/* No section: nothing pinned. */
	c = load_ok("[store]\ndir = /s\n[root]\nmodule = /m.so\ntoken_label = t\npin_env = X\n");
	ck_assert_int_eq(c->has_revocation_key, 0);
	ck_assert_ptr_null(c->revocation_dir);
	ev_config_free(c);
}
END_TEST

START_TEST(test_revocation_bad_key)
{
	static const char *bad[] = {
	    /* one character short */
	    "public_key = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
	    /* one character more */
	    "public_key = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8==",
	    /* 44 characters, 33 bytes */
	    "public_key = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g",
	    /* 31 bytes */
	    "public_key = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",
	    /* URL-safe alphabet */
	    "public_key = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh-_",
	    /* a character outside base64 */
	    "public_key = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdH*8=",
	    /* hex, not base64 */
	    "public_key = 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
	    "public_key = yes",
	};
	char want[450];
	const char *e;
	size_t i;

	snprintf(want, sizeof(want), "%s:8:", path_of("edgevault.conf"));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char line[200];

		snprintf(line, sizeof(line), "%s\n", bad[i]);
		e = load_fails(with_revocation(line));
		ck_assert_err_has(e, want);
		ck_assert_err_has(e, "[revocation] public_key");
		ck_assert_err_has(e, "base64");
	}
	e = load_fails(with_revocation("public_key =\n"));
	ck_assert_err_has(e, "empty");
	e = load_fails(with_revocation("public_key = " KEY_B64 "\npublic_key = " KEY_B64 "\n"));
	ck_assert_err_has(e, "twice");
}
END_TEST

START_TEST(test_revocation_bad_combination)
{
	const char *e;
	char want[450];

	e = load_fails(with_revocation("watch_dir = /var/lib/edgevault/revocation\n"));
	ck_assert_err_has(e, "[revocation] watch_dir needs public_key");

	e = load_fails(with_revocation("public_key = " KEY_B64 "\nwatchdir = /d\n"));
	snprintf(want, sizeof(want), "%s:9:", path_of("edgevault.conf"));
	ck_assert_err_has(e, want);
	ck_assert_err_has(e, "\"watchdir\"");

	e = load_fails(with_revocation("public_key = " KEY_B64 "\nwatch_dir =\n"));
	ck_assert_err_has(e, "empty");
	e = load_fails(
	    with_revocation("public_key = " KEY_B64 "\nwatch_dir = /a\nwatch_dir = /b\n"));
	ck_assert_err_has(e, "twice");
}
END_TEST

/* The minimal valid file, then lines (sections and keys) after it. */
static const char *
with_lines(const char *lines)
{
	static char text[2048];

	snprintf(text, sizeof(text),
		 "[store]\ndir = /s\n[root]\nmodule = /m.so\n"
		 "token_label = t\npin_env = X\n%s",
		 lines);
	return text;
}

/* A complete [attestation] section with provider result (4 lines, 7 to 10). */
#define ATTEST_OK                                                                                  \
	"[attestation]\nprovider = result\nverifier_key = " KEY_B64 "\n"                           \
	"result_path = /run/edgevault/result.json\n"

static void
expect_default_policy(const ev_policy *pol)
{
	ck_assert_int_eq(pol->require_attestation, 0);
	ck_assert_int_eq(pol->require_nonce, 0);
	ck_assert_int_eq(pol->auto_rotate, 0);
	ck_assert_int_eq(pol->max_evidence_age, 3600);
	ck_assert_int_eq(pol->rotation_period, 0);
	ck_assert_int_eq(pol->grace_period, 86400);
}

START_TEST(test_attestation_defaults)
{
	ev_config *c = load_ok(with_lines(""));

	ck_assert_int_eq(c->attest, EV_ATTEST_NONE);
	ck_assert_int_eq(c->has_verifier_key, 0);
	ck_assert_ptr_null(c->attest_result_path);
	ck_assert_int_eq(c->clock_skew, 60);
	expect_default_policy(&c->policy);
	ck_assert_uint_eq(c->nzones, 0);
	ck_assert_ptr_null(c->zones);
	/* Any zone: [policy]. */
	ck_assert_ptr_eq(ev_config_policy(c, 1), &c->policy);
	ck_assert_ptr_eq(ev_config_policy(c, 0), &c->policy);
	ev_config_free(c);
	/* Never NULL, even without a configuration. */
	ck_assert_ptr_nonnull(ev_config_policy(NULL, 1));
	expect_default_policy(ev_config_policy(NULL, 1));
}
END_TEST

START_TEST(test_attestation)
{
	unsigned char want[32];
	ev_config *c;
	size_t i;

	for (i = 0; i < sizeof(want); i++)
		want[i] = (unsigned char)i;
	c = load_ok(with_lines(ATTEST_OK "clock_skew = 0\n"));
	ck_assert_int_eq(c->attest, EV_ATTEST_RESULT);
	ck_assert_int_eq(c->has_verifier_key, 1);
	ck_assert_mem_eq(c->verifier_key, want, sizeof(want));
	ck_assert_str_eq(c->attest_result_path, "/run/edgevault/result.json");
	ck_assert_int_eq(c->clock_skew, 0);
	/* The revocation key is another key. */
	ck_assert_int_eq(c->has_revocation_key, 0);
	ev_config_free(c);

	c = load_ok(with_lines(ATTEST_OK "clock_skew = 3600 ; an hour\n"));
	ck_assert_int_eq(c->clock_skew, 3600);
	ev_config_free(c);
	c = load_ok(with_lines(ATTEST_OK));
	ck_assert_int_eq(c->clock_skew, 60);
	ev_config_free(c);

	/* Any order, [policy] gated by it. */
	c = load_ok(with_lines("[policy]\nrequire_attestation = true\n"
			       "[attestation]\nresult_path = /r\nverifier_key = " KEY_B64 "\n"
			       "provider = result\n"));
	ck_assert_int_eq(c->attest, EV_ATTEST_RESULT);
	ck_assert_int_eq(c->policy.require_attestation, 1);
	ev_config_free(c);
}
END_TEST

START_TEST(test_attestation_bad_provider)
{
	static const char *bad[] = {"none", "Result",	 "results", "result,tpm2-quote",
				    "tpm2", "\"result\"", "tpm2_quote", "TPM2-quote"};
	char want[450], line[200];
	const char *e;
	size_t i;

	snprintf(want, sizeof(want), "%s:8:", path_of("edgevault.conf"));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(line, sizeof(line), "[attestation]\nprovider = %s\n", bad[i]);
		e = load_fails(with_lines(line));
		ck_assert_err_has(e, want);
		ck_assert_err_has(e, "[attestation] provider");
		ck_assert_err_has(e, "expected result or tpm2-quote");
	}
	e = load_fails(with_lines("[attestation]\nprovider =\n"));
	ck_assert_err_has(e, "empty");
	e = load_fails(with_lines(ATTEST_OK "provider = result\n"));
	ck_assert_err_has(e, "twice");
	e = load_fails(with_lines(ATTEST_OK "verifier = x\n"));
	ck_assert_err_has(e, "unknown key \"verifier\" in section [attestation]");
}
END_TEST

START_TEST(test_attestation_bad_values)
{
	static const char *bad_skew[] = {"3601", "-1",	 "+5",	"1.5",
					 "60s",	 "0x10", "6 0", "99999999999999999999999"};
	char want[450], line[300];
	const char *e;
	size_t i;

	snprintf(want, sizeof(want), "%s:11:", path_of("edgevault.conf"));
	for (i = 0; i < sizeof(bad_skew) / sizeof(bad_skew[0]); i++) {
		snprintf(line, sizeof(line), ATTEST_OK "clock_skew = %s\n", bad_skew[i]);
		e = load_fails(with_lines(line));
		ck_assert_err_has(e, want);
		ck_assert_err_has(e, "[attestation] clock_skew");
		ck_assert_err_has(e, "whole number of seconds from 0 to 3600");
	}
	/* The verifier's key reads like the revocation authority's. */
	snprintf(want, sizeof(want), "%s:9:", path_of("edgevault.conf"));
	e = load_fails(with_lines("[attestation]\nprovider = result\n"
				  "verifier_key = AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n"
				  "result_path = /r\n"));
	ck_assert_err_has(e, want);
	ck_assert_err_has(e, "[attestation] verifier_key");
	ck_assert_err_has(e, "base64");
	e = load_fails(with_lines("[attestation]\nprovider = result\nverifier_key = yes\n"));
	ck_assert_err_has(e, "[attestation] verifier_key");
	e = load_fails(with_lines(ATTEST_OK "verifier_key = " KEY_B64 "\n"));
	ck_assert_err_has(e, "twice");
	e = load_fails(with_lines(ATTEST_OK "result_path = /b\n"));
	ck_assert_err_has(e, "twice");
	e = load_fails(with_lines("[attestation]\nprovider = result\nresult_path =\n"));
	ck_assert_err_has(e, "empty");
}
END_TEST

START_TEST(test_attestation_bad_combination)
{
	static const char *gates[] = {"require_attestation", "require_nonce", "auto_rotate"};
	char text[300], want[100];
	const char *e;
	size_t i;

	/* A provider without what it needs. */
	e = load_fails(with_lines("[attestation]\nprovider = result\nresult_path = /r\n"));
	ck_assert_err_has(e, "[attestation] provider result needs verifier_key");
	e = load_fails(with_lines("[attestation]\nprovider = result\n"
				  "verifier_key = " KEY_B64 "\n"));
	ck_assert_err_has(e, "[attestation] provider result needs result_path");

	/* Settings of a provider without one. */
	e = load_fails(with_lines("[attestation]\nverifier_key = " KEY_B64 "\n"));
	ck_assert_err_has(e, "[attestation] verifier_key");
	ck_assert_err_has(e, "no provider");
	e = load_fails(with_lines("[attestation]\nresult_path = /r\n"));
	ck_assert_err_has(e, "[attestation] result_path");
	ck_assert_err_has(e, "no provider");
	/* Even at its default value. */
	e = load_fails(with_lines("[attestation]\nclock_skew = 60\n"));
	ck_assert_err_has(e, "[attestation] clock_skew");
	ck_assert_err_has(e, "no provider");

	/* A policy asking for evidence nothing can give. */
	for (i = 0; i < sizeof(gates) / sizeof(gates[0]); i++) {
		snprintf(text, sizeof(text), "[policy]\n%s = true\n", gates[i]);
		e = load_fails(with_lines(text));
		snprintf(want, sizeof(want), "[policy] %s needs an [attestation] provider",
			 gates[i]);
		ck_assert_err_has(e, want);

		snprintf(text, sizeof(text), "[zone 7]\n%s = true\n[zone 2]\n", gates[i]);
		e = load_fails(with_lines(text));
		snprintf(want, sizeof(want), "[zone 7] %s needs an [attestation] provider",
			 gates[i]);
		ck_assert_err_has(e, want);

		/* Inherited by a zone: [policy] is named. */
		snprintf(text, sizeof(text), "[zone 7]\ngrace_period = 5\n[policy]\n%s = true\n",
			 gates[i]);
		e = load_fails(with_lines(text));
		snprintf(want, sizeof(want), "[policy] %s needs an [attestation] provider",
			 gates[i]);
		ck_assert_err_has(e, want);

		/* With a provider: fine. */
		snprintf(text, sizeof(text), ATTEST_OK "[zone 7]\n%s = true\n", gates[i]);
		ev_config_free(load_ok(with_lines(text)));
	}
	/* false asks for nothing. */
	ev_config_free(load_ok(with_lines("[policy]\nrequire_attestation = false\n"
					  "require_nonce = false\nauto_rotate = false\n"
					  "[zone 3]\nrequire_attestation = false\n")));
}
END_TEST

/* The minimal file with the TPM root, then lines after it. */
static const char *
with_tpm(const char *lines)
{
	static char text[2048];

	snprintf(text, sizeof(text),
		 "[store]\ndir = /s\n[root]\nbackend = tpm2\ntcti = device\n%s", lines);
	return text;
}

/* A complete [attestation] section with provider tpm2-quote (5 lines, 6 to 10). */
#define QUOTE_OK_NO_PCRS                                                                           \
	"[attestation]\nprovider = tpm2-quote\nverifier_key = " KEY_B64 "\n"                       \
	"reference_path = /etc/edgevault/reference.signed\n"
#define QUOTE_OK QUOTE_OK_NO_PCRS "pcrs = 0,1,7\n"

START_TEST(test_attestation_tpm2_quote)
{
	ev_config *c;

	c = load_ok(with_tpm(QUOTE_OK "[policy]\nrequire_attestation = true\n"));
	ck_assert_int_eq(c->attest, EV_ATTEST_TPM2_QUOTE);
	ck_assert_int_eq(c->has_verifier_key, 1);
	ck_assert_str_eq(c->attest_reference_path, "/etc/edgevault/reference.signed");
	ck_assert_uint_eq(c->attest_pcrs, 0x83u);
	ck_assert_ptr_null(c->attest_result_path);
	ck_assert_int_eq(c->policy.require_attestation, 1);
	ev_config_free(c);

	/* Any order, blanks around indexes, the ends of the range. */
	c = load_ok(with_tpm("[attestation]\npcrs = 23, 0 ,16\nprovider = tpm2-quote\n"
			     "reference_path = /r\nverifier_key = " KEY_B64 "\n"));
	ck_assert_uint_eq(c->attest_pcrs, (1u << 23) | (1u << 16) | 1u);
	ev_config_free(c);
	c = load_ok(with_tpm(QUOTE_OK "clock_skew = 0\n"));
	ck_assert_int_eq(c->clock_skew, 0);
	ev_config_free(c);
	c = load_ok(with_tpm("[attestation]\nprovider = tpm2-quote\nverifier_key = " KEY_B64
			     "\nreference_path = /r\n"
			     "pcrs = 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23\n"));
	ck_assert_uint_eq(c->attest_pcrs, 0xffffffu);
	ev_config_free(c);
}
END_TEST

START_TEST(test_attestation_tpm2_quote_refused)
{
	static const char *bad_pcrs[] = {
	    "24", "-1", "0,,1", "0,", ",0", "0,0", "7,1,7", "07", "1.5", "0x1", "a", "0 1", "100",
	    "+1", "0;1", "1,2,3,",
	};
	char text[400], want[450];
	const char *e;
	size_t i;

	/* The TPM root is needed. */
	e = load_fails(with_lines("[attestation]\nprovider = tpm2-quote\nverifier_key = " KEY_B64
				  "\nreference_path = /r\npcrs = 0\n"));
	ck_assert_err_has(e, "[attestation] provider tpm2-quote needs the TPM root ([root] "
			     "backend = tpm2), not backend pkcs11");

	/* What it needs. */
	e = load_fails(with_tpm("[attestation]\nprovider = tpm2-quote\nreference_path = /r\n"
				"pcrs = 0\n"));
	ck_assert_err_has(e, "[attestation] provider tpm2-quote needs verifier_key");
	e = load_fails(with_tpm("[attestation]\nprovider = tpm2-quote\nverifier_key = " KEY_B64
				"\npcrs = 0\n"));
	ck_assert_err_has(e, "[attestation] provider tpm2-quote needs reference_path");
	e = load_fails(with_tpm("[attestation]\nprovider = tpm2-quote\nverifier_key = " KEY_B64
				"\nreference_path = /r\n"));
	ck_assert_err_has(e, "[attestation] provider tpm2-quote needs pcrs");

	/* The other provider's settings. */
	e = load_fails(with_tpm(QUOTE_OK "result_path = /r\n"));
	ck_assert_err_has(e, "[attestation] result_path is a setting of provider result, not "
			     "tpm2-quote");
	e = load_fails(with_lines(ATTEST_OK "reference_path = /r\n"));
	ck_assert_err_has(e, "[attestation] reference_path is a setting of provider tpm2-quote, "
			     "not result");
	e = load_fails(with_lines(ATTEST_OK "pcrs = 7\n"));
	ck_assert_err_has(e, "[attestation] pcrs is a setting of provider tpm2-quote, not result");
	/* Or of none. */
	e = load_fails(with_tpm("[attestation]\npcrs = 7\n"));
	ck_assert_err_has(e, "[attestation] pcrs is set but there is no provider");
	e = load_fails(with_tpm("[attestation]\nreference_path = /r\n"));
	ck_assert_err_has(e, "[attestation] reference_path is set but there is no provider");

	/* Bad PCR lists, named with their line. */
	snprintf(want, sizeof(want), "%s:10:", path_of("edgevault.conf"));
	for (i = 0; i < sizeof(bad_pcrs) / sizeof(bad_pcrs[0]); i++) {
		snprintf(text, sizeof(text),
			 "[attestation]\nprovider = tpm2-quote\nverifier_key = " KEY_B64
			 "\nreference_path = /r\npcrs = %s\n",
			 bad_pcrs[i]);
		e = load_fails(with_tpm(text));
		ck_assert_err_has(e, want);
		ck_assert_err_has(e, "[attestation] pcrs");
		ck_assert_err_has(e, "expected PCR indexes from 0 to 23 separated by commas, each once");
	}
	e = load_fails(with_tpm(QUOTE_OK_NO_PCRS "pcrs = none\n"));
	ck_assert_err_has(e, "[attestation] pcrs = none: provider tpm2-quote needs at least one PCR");
	e = load_fails(with_tpm(QUOTE_OK "pcrs = 1\n"));
	ck_assert_err_has(e, "twice");
	e = load_fails(with_tpm("[attestation]\nprovider = tpm2-quote\nverifier_key = " KEY_B64
				"\nreference_path = /r\npcrs =\n"));
	ck_assert_err_has(e, "empty");
}
END_TEST

START_TEST(test_pcr_list)
{
	char buf[EV_PCR_LIST_MAX];
	uint32_t m = 0xdead;

	ck_assert_int_eq(ev_pcr_list_parse("0", &m), 0);
	ck_assert_uint_eq(m, 1);
	ck_assert_int_eq(ev_pcr_list_parse("\t7 ,1,0", &m), 0);
	ck_assert_uint_eq(m, 0x83);
	ck_assert_str_eq(ev_pcr_list_format(m, buf), "0,1,7");
	ck_assert_str_eq(ev_pcr_list_format(0, buf), "");
	ck_assert_str_eq(ev_pcr_list_format(0xffffff, buf),
			 "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23");
	m = 5;
	ck_assert_int_eq(ev_pcr_list_parse("", &m), -1);
	ck_assert_int_eq(ev_pcr_list_parse(" ", &m), -1);
	ck_assert_int_eq(ev_pcr_list_parse("23,24", &m), -1);
	ck_assert_int_eq(ev_pcr_list_parse(NULL, &m), -1);
	ck_assert_int_eq(ev_pcr_list_parse("1", NULL), -1);
	ck_assert_uint_eq(m, 5); /* left as it was */
}
END_TEST

START_TEST(test_policy)
{
	ev_config *c;

	c = load_ok(with_lines(ATTEST_OK "[policy]\nrequire_attestation = true\n"
					 "require_nonce = true\nauto_rotate = true\n"
					 "max_evidence_age = 600\nrotation_period = 2592000\n"
					 "grace_period = 0\n"));
	ck_assert_int_eq(c->policy.require_attestation, 1);
	ck_assert_int_eq(c->policy.require_nonce, 1);
	ck_assert_int_eq(c->policy.auto_rotate, 1);
	ck_assert_int_eq(c->policy.max_evidence_age, 600);
	ck_assert_int_eq(c->policy.rotation_period, 2592000);
	ck_assert_int_eq(c->policy.grace_period, 0);
	ck_assert_ptr_eq(ev_config_policy(c, 5), &c->policy);
	ev_config_free(c);

	/* The bounds themselves. */
	c = load_ok(with_lines("[policy]\nmax_evidence_age = 1\nrotation_period = 0\n"
			       "grace_period = 3153600000\n"));
	ck_assert_int_eq(c->policy.max_evidence_age, 1);
	ck_assert_int_eq(c->policy.rotation_period, 0);
	ck_assert_int_eq(c->policy.grace_period, 3153600000LL);
	ev_config_free(c);
	c = load_ok(with_lines("[policy]\nmax_evidence_age = 31536000\n"
			       "rotation_period = 3153600000 ; a hundred years\n"));
	ck_assert_int_eq(c->policy.max_evidence_age, 31536000);
	ck_assert_int_eq(c->policy.rotation_period, 3153600000LL);
	ck_assert_int_eq(c->policy.grace_period, 86400);
	ev_config_free(c);

	/* An empty [policy]: the defaults. */
	c = load_ok(with_lines("[policy]\n"));
	expect_default_policy(&c->policy);
	ev_config_free(c);
}
END_TEST

START_TEST(test_policy_bad)
{
	static const struct {
		const char *line;
		const char *says;
	} bad[] = {
	    {"require_attestation = yes", "expected true or false"},
	    {"require_attestation = 1", "expected true or false"},
	    {"require_nonce = True", "expected true or false"},
	    {"auto_rotate = FALSE", "expected true or false"},
	    {"auto_rotate = on", "expected true or false"},
	    {"auto_rotate = truee", "expected true or false"},
	    {"max_evidence_age = 0", "whole number of seconds from 1 to 31536000"},
	    {"max_evidence_age = 31536001", "whole number of seconds from 1 to 31536000"},
	    {"max_evidence_age = 1h", "whole number of seconds from 1 to 31536000"},
	    {"rotation_period = -1", "whole number of seconds from 0 to 3153600000"},
	    {"rotation_period = 3153600001", "whole number of seconds from 0 to 3153600000"},
	    {"rotation_period = 30d", "whole number of seconds from 0 to 3153600000"},
	    {"grace_period = 3153600001", "whole number of seconds from 0 to 3153600000"},
	    {"grace_period = +1", "whole number of seconds from 0 to 3153600000"},
	    {"grace_period = 1e3", "whole number of seconds from 0 to 3153600000"},
	};
	char text[300], want[450];
	const char *e;
	size_t i;

	snprintf(want, sizeof(want), "%s:8:", path_of("edgevault.conf"));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "[policy]\n%s\n", bad[i].line);
		e = load_fails(with_lines(text));
		ck_assert_err_has(e, want);
		ck_assert_err_has(e, "[policy]");
		ck_assert_err_has(e, bad[i].says);
	}
	e = load_fails(with_lines("[policy]\ngrace_period =\n"));
	ck_assert_err_has(e, "[policy] grace_period has an empty value");
	e = load_fails(with_lines("[policy]\ngrace_period = 1\n[store]\n[policy]\n"
				  "grace_period = 2\n"));
	ck_assert_err_has(e, "[policy] grace_period given twice");
	e = load_fails(with_lines("[policy]\ngrace = 1\n"));
	ck_assert_err_has(e, want);
	ck_assert_err_has(e, "unknown key \"grace\" in section [policy]");
	/* Keys of other sections are unknown here, and the other way round. */
	e = load_fails(with_lines("[policy]\nclock_skew = 1\n"));
	ck_assert_err_has(e, "unknown key \"clock_skew\" in section [policy]");
	e = load_fails(with_lines("[attestation]\ngrace_period = 1\n"));
	ck_assert_err_has(e, "unknown key \"grace_period\" in section [attestation]");
}
END_TEST

START_TEST(test_zones)
{
	const ev_policy *pol;
	ev_config *c;

	c = load_ok(with_lines(ATTEST_OK "[zone 12]\n"
					 "require_attestation = true\n"
					 "grace_period = 60\n"
					 "[zone 3]\n"
					 "rotation_period = 86400\n"
					 "require_nonce = false\n"
					 "[zone 9007199254740992]\n"
					 "[policy]\n"
					 "require_nonce = true\n"
					 "max_evidence_age = 900\n"
					 "grace_period = 7200\n"
					 "[zone 5]\n"
					 "auto_rotate = true\n"
					 "max_evidence_age = 31536000\n"
					 "require_attestation = true\n"
					 "require_nonce = true\n"
					 "rotation_period = 1\n"
					 "grace_period = 3153600000\n"));
	/* [policy], read after some zones. */
	ck_assert_int_eq(c->policy.require_attestation, 0);
	ck_assert_int_eq(c->policy.require_nonce, 1);
	ck_assert_int_eq(c->policy.auto_rotate, 0);
	ck_assert_int_eq(c->policy.max_evidence_age, 900);
	ck_assert_int_eq(c->policy.rotation_period, 0);
	ck_assert_int_eq(c->policy.grace_period, 7200);

	/* Ascending, whatever the file's order. */
	ck_assert_uint_eq(c->nzones, 4);
	ck_assert_int_eq(c->zones[0].zone, 3);
	ck_assert_int_eq(c->zones[1].zone, 5);
	ck_assert_int_eq(c->zones[2].zone, 12);
	ck_assert_int_eq(c->zones[3].zone, 9007199254740992LL);

	/* Zone 3: its own keys (false overriding [policy]'s true), the rest inherited. */
	pol = ev_config_policy(c, 3);
	ck_assert_ptr_eq(pol, &c->zones[0].policy);
	ck_assert_int_eq(pol->require_attestation, 0);
	ck_assert_int_eq(pol->require_nonce, 0);
	ck_assert_int_eq(pol->auto_rotate, 0);
	ck_assert_int_eq(pol->max_evidence_age, 900);
	ck_assert_int_eq(pol->rotation_period, 86400);
	ck_assert_int_eq(pol->grace_period, 7200);

	/* Zone 5: every key its own. */
	pol = ev_config_policy(c, 5);
	ck_assert_ptr_eq(pol, &c->zones[1].policy);
	ck_assert_int_eq(pol->require_attestation, 1);
	ck_assert_int_eq(pol->require_nonce, 1);
	ck_assert_int_eq(pol->auto_rotate, 1);
	ck_assert_int_eq(pol->max_evidence_age, 31536000);
	ck_assert_int_eq(pol->rotation_period, 1);
	ck_assert_int_eq(pol->grace_period, 3153600000LL);

	/* Zone 12, before [policy] in the file: still inherits from it. */
	pol = ev_config_policy(c, 12);
	ck_assert_int_eq(pol->require_attestation, 1);
	ck_assert_int_eq(pol->require_nonce, 1);
	ck_assert_int_eq(pol->auto_rotate, 0);
	ck_assert_int_eq(pol->max_evidence_age, 900);
	ck_assert_int_eq(pol->rotation_period, 0);
	ck_assert_int_eq(pol->grace_period, 60);

	/* An empty section: all of [policy]. */
	pol = ev_config_policy(c, 9007199254740992LL);
	ck_assert_ptr_eq(pol, &c->zones[3].policy);
	ck_assert_mem_eq(pol, &c->policy, sizeof(*pol));

	/* Zones without a section: [policy] itself. */
	ck_assert_ptr_eq(ev_config_policy(c, 1), &c->policy);
	ck_assert_ptr_eq(ev_config_policy(c, 4), &c->policy);
	ck_assert_ptr_eq(ev_config_policy(c, 13), &c->policy);
	ck_assert_ptr_eq(ev_config_policy(c, 0), &c->policy);
	ck_assert_ptr_eq(ev_config_policy(c, -3), &c->policy);
	ck_assert_ptr_eq(ev_config_policy(c, INT64_MAX), &c->policy);
	ev_config_free(c);

	/* Without [policy]: zones inherit the defaults. */
	c = load_ok(with_lines("[zone 2]\ngrace_period = 10\n"));
	ck_assert_uint_eq(c->nzones, 1);
	pol = ev_config_policy(c, 2);
	ck_assert_int_eq(pol->grace_period, 10);
	ck_assert_int_eq(pol->max_evidence_age, 3600);
	ck_assert_int_eq(pol->rotation_period, 0);
	ck_assert_int_eq(pol->require_attestation, 0);
	ck_assert_ptr_eq(ev_config_policy(c, 3), &c->policy);
	expect_default_policy(&c->policy);
	ev_config_free(c);

	/* On the first line, after a UTF-8 byte order mark (libinih skips it too). */
	c = load_ok("\xEF\xBB\xBF[zone 2]\ngrace_period = 3\n"
		    "[store]\ndir = /s\n[root]\nmodule = /m.so\ntoken_label = t\npin_env = X\n");
	ck_assert_uint_eq(c->nzones, 1);
	ck_assert_int_eq(ev_config_policy(c, 2)->grace_period, 3);
	ev_config_free(c);
}
END_TEST

START_TEST(test_zones_bad)
{
	static const char *bad_names[] = {
	    "[zone 0]",
	    "[zone 01]",
	    "[zone -1]",
	    "[zone +1]",
	    "[zone 1x]",
	    "[zone  1]",
	    "[zone 1 ]",
	    "[zone1]",
	    "[zone ]",
	    "[zone]",
	    "[zone 0x1]",
	    "[zone 9007199254740993]",
	    "[zone 99999999999999999999999]",
	    "[zones 1]",
	    "[zone\t1]",
	};
	char text[300], want[450];
	const char *e;
	size_t i;

	/* A bad zone id: refused at the header, even with no key under it. */
	snprintf(want, sizeof(want), "%s:7:", path_of("edgevault.conf"));
	for (i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		snprintf(text, sizeof(text), "%s\n", bad_names[i]);
		e = load_fails(with_lines(text));
		ck_assert_err_has(e, want);
		ck_assert_err_has(e, "[zone N]");
		snprintf(text, sizeof(text), "%s\ngrace_period = 1\n", bad_names[i]);
		e = load_fails(with_lines(text));
		ck_assert_err_has(e, want);
	}

	/* A zone given twice: at the second header, after keys or none, apart or not. */
	snprintf(want, sizeof(want), "%s:9:", path_of("edgevault.conf"));
	e = load_fails(with_lines("[zone 4]\ngrace_period = 1\n[zone 4]\nrotation_period = 2\n"));
	ck_assert_err_has(e, want);
	ck_assert_err_has(e, "[zone 4] given twice");
	e = load_fails(with_lines("[zone 4]\n[zone 5]\n[zone 4]\n"));
	ck_assert_err_has(e, want);
	ck_assert_err_has(e, "[zone 4] given twice");
	e = load_fails(with_lines("[zone 4]\n\n[zone 4]\n"));
	ck_assert_err_has(e, want);

	/* Keys: as strict as in [policy], and named by their zone. */
	snprintf(want, sizeof(want), "%s:8:", path_of("edgevault.conf"));
	e = load_fails(with_lines("[zone 3]\nrequire_nonce = maybe\n"));
	ck_assert_err_has(e, want);
	ck_assert_err_has(e, "[zone 3] require_nonce = \"maybe\": expected true or false");
	e = load_fails(with_lines("[zone 3]\nmax_evidence_age = 0\n"));
	ck_assert_err_has(e, "[zone 3] max_evidence_age");
	ck_assert_err_has(e, "from 1 to 31536000");
	e = load_fails(with_lines("[zone 3]\ngrace_period =\n"));
	ck_assert_err_has(e, "[zone 3] grace_period has an empty value");
	e = load_fails(with_lines("[zone 3]\nprovider = result\n"));
	ck_assert_err_has(e, want);
	ck_assert_err_has(e, "unknown key \"provider\" in section [zone 3]");
	snprintf(want, sizeof(want), "%s:9:", path_of("edgevault.conf"));
	e = load_fails(with_lines("[zone 3]\ngrace_period = 1\ngrace_period = 2\n"));
	ck_assert_err_has(e, want);
	ck_assert_err_has(e, "[zone 3] grace_period given twice");
	/* An indented line continues the key above: refused too. */
	e = load_fails(with_lines("[zone 3]\ngrace_period = 1\n  [zone 4]\n"));
	ck_assert_err_has(e, want);
	/* A key set in [policy] may be set again in a zone, and in another zone. */
	ev_config_free(load_ok(with_lines("[policy]\ngrace_period = 1\n[zone 3]\n"
					  "grace_period = 2\n[zone 4]\ngrace_period = 3\n")));
}
END_TEST

START_TEST(test_zones_many)
{
	char *text = calloc(1, 200000);
	const ev_policy *pol;
	ev_config *c;
	size_t len, i;

	/* Many zones, in descending order: sorted, and each found. */
	ck_assert_ptr_nonnull(text);
	len = (size_t)snprintf(text, 200000, "%s", with_lines("[policy]\ngrace_period = 5\n"));
	for (i = 1000; i >= 1; i--)
		len += (size_t)snprintf(text + len, 200000 - len,
					"[zone %zu]\nrotation_period = %zu\n", i * 2, i);
	c = load_ok(text);
	ck_assert_uint_eq(c->nzones, 1000);
	for (i = 1; i < c->nzones; i++)
		ck_assert_int_lt(c->zones[i - 1].zone, c->zones[i].zone);
	for (i = 1; i <= 1000; i++) {
		pol = ev_config_policy(c, (int64_t)i * 2);
		ck_assert_int_eq(pol->rotation_period, (int64_t)i);
		ck_assert_int_eq(pol->grace_period, 5);
		ck_assert_ptr_eq(ev_config_policy(c, (int64_t)i * 2 + 1), &c->policy);
	}
	ev_config_free(c);
	free(text);
}
END_TEST

/*
 * conf/edgevault.conf from the source tree: $srcdir (set by make check),
 * else found from this file's own path.
 */
static char *
read_example(void)
{
	const char *srcdir = getenv("srcdir");
	const char *slash = strrchr(__FILE__, '/');
	char path[1024];
	char *text;
	long n;
	FILE *f;

	if (srcdir != NULL && *srcdir != '\0')
		snprintf(path, sizeof(path), "%s/conf/edgevault.conf", srcdir);
	else if (slash != NULL)
		snprintf(path, sizeof(path), "%.*s/../../conf/edgevault.conf",
			 (int)(slash - __FILE__), __FILE__);
	else
		snprintf(path, sizeof(path), "../../conf/edgevault.conf");
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot read the example %s", path);
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	ck_assert_int_gt(n, 0);
	rewind(f);
	text = calloc(1, (size_t)n + 1);
	ck_assert_ptr_nonnull(text);
	ck_assert_uint_eq(fread(text, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return text;
}

/* Remove the ";" in front of every line starting with ";key =". */
static void
uncomment(char *text, const char *key)
{
	char pat[64];
	char *p;
	int found = 0;

	snprintf(pat, sizeof(pat), "\n;%s =", key);
	while ((p = strstr(text, pat)) != NULL) {
		memmove(p + 1, p + 2, strlen(p + 2) + 1);
		found = 1;
	}
	ck_assert_msg(found, "the example has no commented-out %s", key);
}

/* Remove the ";" in front of the line ";header" (a section header). */
static void
uncomment_section(char *text, const char *header)
{
	char pat[64];
	char *p;

	snprintf(pat, sizeof(pat), "\n;%s\n", header);
	p = strstr(text, pat);
	ck_assert_msg(p != NULL, "the example has no commented-out %s", header);
	memmove(p + 1, p + 2, strlen(p + 2) + 1);
}

START_TEST(test_example_file)
{
	char *text = read_example();
	ev_config *c = load_ok(text);

	/* As shipped: no revocation authority, no attestation, the default policy. */
	ck_assert_int_eq(c->has_revocation_key, 0);
	ck_assert_ptr_null(c->revocation_dir);
	ck_assert_int_eq(c->attest, EV_ATTEST_NONE);
	expect_default_policy(&c->policy);
	ck_assert_uint_eq(c->nzones, 0);
	ev_config_free(c);

	/* Its commented-out [revocation] settings are valid ones. */
	uncomment(text, "public_key");
	uncomment(text, "watch_dir");
	c = load_ok(text);
	ck_assert_int_eq(c->has_revocation_key, 1);
	ck_assert_ptr_nonnull(c->revocation_dir);
	ev_config_free(c);

	/* So are its [attestation] settings and its [zone N] example. */
	uncomment(text, "provider");
	uncomment(text, "verifier_key");
	uncomment(text, "result_path");
	uncomment(text, "clock_skew");
	uncomment_section(text, "[zone 1]");
	uncomment(text, "require_attestation");
	uncomment(text, "auto_rotate");
	uncomment(text, "rotation_period");
	c = load_ok(text);
	ck_assert_int_eq(c->attest, EV_ATTEST_RESULT);
	ck_assert_int_eq(c->has_verifier_key, 1);
	ck_assert_ptr_nonnull(c->attest_result_path);
	ck_assert_int_eq(c->clock_skew, 60);
	expect_default_policy(&c->policy);
	ck_assert_uint_eq(c->nzones, 1);
	ck_assert_int_eq(c->zones[0].zone, 1);
	ck_assert_int_eq(ev_config_policy(c, 1)->require_attestation, 1);
	ck_assert_int_eq(ev_config_policy(c, 1)->auto_rotate, 1);
	ck_assert_int_eq(ev_config_policy(c, 1)->rotation_period, 7776000);
	ck_assert_int_eq(ev_config_policy(c, 1)->grace_period, 86400);
	ev_config_free(c);
	free(text);
}
END_TEST

/* A [root] with backend tpm2, then lines after it. */
static const char *
tpm_with_lines(const char *lines)
{
	static char text[2048];

	snprintf(text, sizeof(text),
		 "[store]\ndir = /s\n[root]\nbackend = tpm2\ntcti = device:/dev/tpmrm0\n%s", lines);
	return text;
}

START_TEST(test_pcrs)
{
	ev_config *c;

	/* Not bound unless asked. */
	c = load_ok(tpm_with_lines(""));
	ck_assert_uint_eq(c->policy.pcrs, 0);
	ev_config_free(c);

	c = load_ok(tpm_with_lines("[policy]\npcrs = 0,7\n"));
	ck_assert_uint_eq(c->policy.pcrs, (1u << 0) | (1u << 7));
	ck_assert_uint_eq(ev_config_policy(c, 3)->pcrs, 0x81);
	ev_config_free(c);

	/* Blanks around the indexes, any order, the whole range. */
	c = load_ok(tpm_with_lines("[policy]\npcrs = 23 , 16,\t0\n"));
	ck_assert_uint_eq(c->policy.pcrs, (1u << 23) | (1u << 16) | 1u);
	ev_config_free(c);

	/* A zone overrides [policy], either way; others inherit it. */
	c = load_ok(tpm_with_lines("[zone 2]\npcrs = none\n[zone 3]\npcrs = 16\n"
				   "[zone 4]\ngrace_period = 5\n[policy]\npcrs = 7\n"));
	ck_assert_uint_eq(ev_config_policy(c, 1)->pcrs, 1u << 7);
	ck_assert_uint_eq(ev_config_policy(c, 2)->pcrs, 0);
	ck_assert_uint_eq(ev_config_policy(c, 3)->pcrs, 1u << 16);
	ck_assert_uint_eq(ev_config_policy(c, 4)->pcrs, 1u << 7);
	ck_assert_int_eq(ev_config_policy(c, 4)->grace_period, 5);
	ev_config_free(c);

	/* "none" is allowed with any backend. */
	c = load_ok(with_lines("[policy]\npcrs = none\n[zone 5]\npcrs = none\n"));
	ck_assert_uint_eq(c->policy.pcrs, 0);
	ck_assert_uint_eq(ev_config_policy(c, 5)->pcrs, 0);
	ev_config_free(c);
}
END_TEST

START_TEST(test_pcrs_bad)
{
	static const char *bad[] = {
	    "24",
	    "7,7",
	    "0,,7",
	    ",7",
	    "7,",
	    "-1",
	    "+7",
	    "07",
	    "x",
	    "7 8",
	    "0x7",
	    "none,7",
	    "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24",
	    "99999999999",
	};
	char text[256], want[128];
	const char *e;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "[zone 3]\npcrs = %s\n", bad[i]);
		e = load_fails(tpm_with_lines(text));
		snprintf(want, sizeof(want), ":7: [zone 3] pcrs = \"%s\": expected PCR indexes",
			 bad[i]);
		ck_assert_msg(strstr(e, want) != NULL, "%s: %s", bad[i], e);
	}
	/* An empty value says nothing: "none" says not bound. */
	e = load_fails(tpm_with_lines("[policy]\npcrs =\n"));
	ck_assert_msg(strstr(e, ":7: [policy] pcrs has an empty value") != NULL, "%s", e);
	e = load_fails(tpm_with_lines("[policy]\npcrs = 7\npcrs = 8\n"));
	ck_assert_msg(strstr(e, ":8: [policy] pcrs given twice") != NULL, "%s", e);

	/* Only a TPM has PCRs: the line that asks for them is named. */
	e = load_fails(with_lines("[policy]\ngrace_period = 5\npcrs = 7\n"));
	ck_assert_msg(strstr(e, ":9: [policy] pcrs binds zone keys to TPM PCRs, which needs "
				"[root] backend tpm2 (the backend is pkcs11)") != NULL,
		      "%s", e);
	e = load_fails(with_lines("[zone 9]\npcrs = none\n[zone 4]\npcrs = 0,7\n"));
	ck_assert_msg(strstr(e, ":10: [zone 4] pcrs binds zone keys to TPM PCRs") != NULL, "%s", e);
	/* Wherever [root] is. */
	e = load_fails("[policy]\npcrs = 16\n[store]\ndir = /s\n[root]\nmodule = /m.so\n"
		       "token_label = t\npin_env = X\n");
	ck_assert_msg(strstr(e, ":2: [policy] pcrs binds") != NULL, "%s", e);
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, tmpdir_remove);
	tcase_add_test(tc, test_full_file);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_device_id_bounded);
	tcase_add_test(tc, test_tpm2_backend);
	tcase_add_test(tc, test_tpm2_backend_refused);
	tcase_add_test(tc, test_missing_required);
	tcase_add_test(tc, test_unknown_key);
	tcase_add_test(tc, test_unknown_section);
	tcase_add_test(tc, test_duplicate_and_empty);
	tcase_add_test(tc, test_syntax_and_long_line);
	tcase_add_test(tc, test_bad_numbers);
	tcase_add_test(tc, test_good_numbers);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_config_path);
	tcase_add_test(tc, test_pin_env);
	tcase_add_test(tc, test_pin_file);
	tcase_add_test(tc, test_pin_file_bad);
	tcase_add_test(tc, test_revocation);
	tcase_add_test(tc, test_revocation_bad_key);
	tcase_add_test(tc, test_revocation_bad_combination);
	tcase_add_test(tc, test_attestation_defaults);
	tcase_add_test(tc, test_attestation_tpm2_quote);
	tcase_add_test(tc, test_attestation_tpm2_quote_refused);
	tcase_add_test(tc, test_pcr_list);
	tcase_add_test(tc, test_attestation);
	tcase_add_test(tc, test_attestation_bad_provider);
	tcase_add_test(tc, test_attestation_bad_values);
	tcase_add_test(tc, test_attestation_bad_combination);
	tcase_add_test(tc, test_policy);
	tcase_add_test(tc, test_policy_bad);
	tcase_add_test(tc, test_zones);
	tcase_add_test(tc, test_zones_bad);
	tcase_add_test(tc, test_zones_many);
	tcase_add_test(tc, test_example_file);
	tcase_add_test(tc, test_pcrs);
	tcase_add_test(tc, test_pcrs_bad);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(config_suite());
}
