/*
 * Unit tests of signed envelopes and signing keys (src/signed.c) and of
 * revocation lists (src/revlist.c). Each test makes its own keys, and its
 * own temporary directory for key files.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "revlist.h"
#include "secmem.h"
#include "signed.h"
#include "testutil.h"

static void
setup(void)
{
	tmpdir_make("ev_revlist");
}

static const char full_doc[] =
    "{\"version\": 1,\n"
    " \"device\": \"edge-0042\",\n"
    " \"sequence\": 7,\n"
    " \"issued_at\": 1795430400,\n"
    " \"entries\": [\n"
    "  {\"kind\": \"key\", \"zone\": 1, \"label\": \"web\", \"reason\": \"compromised\"},\n"
    "  {\"kind\": \"key\", \"zone\": 1, \"label\": \"api\", \"id\": \"0a1B\", \"generation\": 2,\n"
    "   \"reason\": \"superseded\"},\n"
    "  {\"kind\": \"zone\", \"zone\": 2, \"reason\": \"decommissioned\"},\n"
    "  {\"kind\": \"device\", \"reason\": \"stolen\"}]}\n";

static ev_secret *
new_key(unsigned char pk[32])
{
	ev_secret *seed = NULL;

	ck_assert_uint_eq(ev_signkey_generate(&seed, pk), CKR_OK);
	ck_assert_ptr_nonnull(seed);
	ck_assert_uint_eq(seed->len, 32);
	return seed;
}

/* An envelope of a NUL-terminated payload. */
static char *
envelope(const char *payload, const char *type, const ev_secret *seed, size_t *len)
{
	char *env = NULL;
	size_t n = 0;

	ck_assert_uint_eq(
	    ev_signed_make((const unsigned char *)payload, strlen(payload), type, seed, &env, &n),
	    CKR_OK);
	ck_assert_ptr_nonnull(env);
	ck_assert_uint_eq(n, strlen(env));
	if (len != NULL)
		*len = n;
	return env;
}

/* Open text (strlen) as an envelope of revocation type; return the answer, err filled. */
static CK_RV
open_text(const char *text, size_t len, const unsigned char pk[32], char *err, size_t errlen)
{
	unsigned char *payload = (unsigned char *)1;
	size_t plen = 99;
	CK_RV rv;

	err[0] = '\0';
	rv = ev_signed_open((const unsigned char *)text, len, EV_SIGNED_REVOCATION, pk, &payload,
			    &plen, err, errlen);
	if (rv == CKR_OK) {
		free(payload);
	} else {
		ck_assert_ptr_null(payload);
		ck_assert_uint_eq(plen, 0);
		ck_assert_msg(err[0] != '\0', "no error message for 0x%lx", (unsigned long)rv);
	}
	return rv;
}

/* The position of the first character of member's string value in env. */
static size_t
value_at(const char *env, const char *member)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\": \"", member);
	p = strstr(env, pat);
	ck_assert_ptr_nonnull(p);
	return (size_t)(p - env) + strlen(pat);
}

/* ---- envelopes ---- */

START_TEST(test_round_trip)
{
	static const char payload[] = "{\"x\": \"caf\xc3\xa9\"}\n\twith blanks  \n";
	unsigned char pk[32], *out = NULL;
	ev_secret *seed = new_key(pk);
	size_t len, plen = 0;
	char err[256] = "", *env = envelope(payload, EV_SIGNED_REVOCATION, seed, &len);

	ck_assert_msg(env[len - 1] == '\n', "envelope does not end with a newline");
	ck_assert_ptr_nonnull(strstr(env, "\"type\": \"" EV_SIGNED_REVOCATION "\""));
	ck_assert_uint_eq(ev_signed_open((unsigned char *)env, len, EV_SIGNED_REVOCATION, pk, &out,
					 &plen, err, sizeof(err)),
			  CKR_OK);
	ck_assert_uint_eq(plen, strlen(payload));
	ck_assert_mem_eq(out, payload, plen);
	ck_assert_int_eq(out[plen], '\0');
	free(out);

	/* Without its final newline, and with blanks around, it still opens. */
	ck_assert_uint_eq(open_text(env, len - 1, pk, err, sizeof(err)), CKR_OK);
	free(env);

	/* An empty payload travels too. */
	env = envelope("", EV_SIGNED_REVOCATION, seed, &len);
	ck_assert_uint_eq(ev_signed_open((unsigned char *)env, len, EV_SIGNED_REVOCATION, pk, &out,
					 &plen, err, sizeof(err)),
			  CKR_OK);
	ck_assert_uint_eq(plen, 0);
	ck_assert_int_eq(out[0], '\0');
	free(out);
	free(env);
	ev_secret_free(seed);
}
END_TEST

START_TEST(test_reordered_and_spaced)
{
	unsigned char pk[32];
	ev_secret *seed = new_key(pk);
	char *env = envelope("abc", EV_SIGNED_REVOCATION, seed, NULL);
	char text[1024], sig[200], pay[200], err[256];
	size_t s = value_at(env, "signature"), p = value_at(env, "payload");

	/* Member order and blanks are not part of what is signed. */
	snprintf(sig, sizeof(sig), "%.*s", (int)strcspn(env + s, "\""), env + s);
	snprintf(pay, sizeof(pay), "%.*s", (int)strcspn(env + p, "\""), env + p);
	snprintf(text, sizeof(text),
		 "\n  {\"signature\":\"%s\",\r\n\"payload\" : \"%s\" ,"
		 "\"type\":\"%s\"}  \n\n",
		 sig, pay, EV_SIGNED_REVOCATION);
	ck_assert_uint_eq(open_text(text, strlen(text), pk, err, sizeof(err)), CKR_OK);
	free(env);
	ev_secret_free(seed);
}
END_TEST

START_TEST(test_bad_signature)
{
	unsigned char pk[32], pk2[32];
	ev_secret *seed = new_key(pk), *seed2 = new_key(pk2);
	size_t len, at;
	char err[256], *env = envelope(full_doc, EV_SIGNED_REVOCATION, seed, &len);
	char *other, orig;

	ck_assert_uint_eq(open_text(env, len, pk, err, sizeof(err)), CKR_OK);

	/* Another key. */
	ck_assert_uint_eq(open_text(env, len, pk2, err, sizeof(err)), CKR_SIGNATURE_INVALID);
	ck_assert_err_has(err, "signature");

	/* One payload character changed: other bytes, same signature. */
	at = value_at(env, "payload") + 10;
	orig = env[at];
	env[at] = orig == 'A' ? 'B' : 'A';
	ck_assert_uint_eq(open_text(env, len, pk, err, sizeof(err)), CKR_SIGNATURE_INVALID);
	env[at] = orig;
	ck_assert_uint_eq(open_text(env, len, pk, err, sizeof(err)), CKR_OK);

	/* One signature character changed. */
	at = value_at(env, "signature");
	orig = env[at];
	env[at] = orig == 'A' ? 'B' : 'A';
	ck_assert_uint_eq(open_text(env, len, pk, err, sizeof(err)), CKR_SIGNATURE_INVALID);
	env[at] = orig;
	ck_assert_uint_eq(open_text(env, len, pk, err, sizeof(err)), CKR_OK);

	/* The same document signed by another key, opened with the first. */
	other = envelope(full_doc, EV_SIGNED_REVOCATION, seed2, &len);
	ck_assert_uint_eq(open_text(other, len, pk, err, sizeof(err)), CKR_SIGNATURE_INVALID);
	ck_assert_uint_eq(open_text(other, len, pk2, err, sizeof(err)), CKR_OK);
	free(other);
	free(env);
	ev_secret_free(seed);
	ev_secret_free(seed2);
}
END_TEST

START_TEST(test_wrong_type)
{
	unsigned char pk[32];
	ev_secret *seed = new_key(pk);
	size_t len;
	char err[256], *env = envelope(full_doc, "edgevault-attestation", seed, &len);

	ck_assert_uint_eq(open_text(env, len, pk, err, sizeof(err)), CKR_DATA_INVALID);
	ck_assert_err_has(err, "edgevault-attestation");
	ck_assert_err_has(err, EV_SIGNED_REVOCATION);
	free(env);

	/* A type that only starts like ours. */
	env = envelope(full_doc, EV_SIGNED_REVOCATION "-v2", seed, &len);
	ck_assert_uint_eq(open_text(env, len, pk, err, sizeof(err)), CKR_DATA_INVALID);
	free(env);
	ev_secret_free(seed);
}
END_TEST

START_TEST(test_truncated)
{
	unsigned char pk[32];
	ev_secret *seed = new_key(pk);
	size_t len, n;
	char err[256], *env = envelope(full_doc, EV_SIGNED_REVOCATION, seed, &len);

	/* Every cut before the closing brace; the final newline is optional. */
	for (n = 0; n < len - 1; n++) {
		CK_RV rv = open_text(env, n, pk, err, sizeof(err));

		ck_assert_msg(rv == CKR_DATA_INVALID, "cut at %zu of %zu: 0x%lx (%s)", n, len,
			      (unsigned long)rv, err);
	}
	ck_assert_uint_eq(open_text(env, len - 1, pk, err, sizeof(err)), CKR_OK);
	free(env);
	ev_secret_free(seed);
}
END_TEST

START_TEST(test_garbage)
{
	static const char *const bad[] = {
	    "",
	    "   \n",
	    "null",
	    "[]",
	    "{}",
	    "\"edgevault-revocation-list\"",
	    "7",
	    "{\"type\": \"edgevault-revocation-list\"}",
	    "{\"type\": \"edgevault-revocation-list\", \"payload\": \"\"}",
	    "{\"type\": 1, \"payload\": \"\", \"signature\": \"\"}",
	    "{\"type\": \"edgevault-revocation-list\", \"payload\": [], \"signature\": \"\"}",
	    "{\"type\": \"edgevault-revocation-list\", \"payload\": \"\", \"signature\": null}",
	    "{'type': 'edgevault-revocation-list', 'payload': '', 'signature': ''}",
	    "{\"type\": \"edgevault-revocation-list\", /* c */ \"payload\": \"\", "
	    "\"signature\": \"\"}",
	    "{\"type\": \"edgevault-revocation-list\", \"payload\": \"\", \"signature\": \"\",}",
	    "\xef\xbb\xbf{}",
	    "\x80\x81\x82",
	};
	static const unsigned char nul[] = "{\"type\"\0: \"x\"}";
	unsigned char pk[32], rnd[512];
	char err[256];
	size_t i;

	memset(pk, 7, sizeof(pk));
	for (i = 0; i < EV_ARRAY_SIZE(bad); i++) {
		CK_RV rv = open_text(bad[i], strlen(bad[i]), pk, err, sizeof(err));

		ck_assert_msg(rv == CKR_DATA_INVALID, "%s: 0x%lx", bad[i], (unsigned long)rv);
	}
	ck_assert_uint_eq(open_text((const char *)nul, sizeof(nul) - 1, pk, err, sizeof(err)),
			  CKR_DATA_INVALID);
	ck_assert_err_has(err, "NUL");
	for (i = 0; i < 64; i++) {
		randombytes_buf(rnd, sizeof(rnd));
		ck_assert_uint_eq(open_text((const char *)rnd, 1 + i * 7, pk, err, sizeof(err)),
				  CKR_DATA_INVALID);
	}
}
END_TEST

START_TEST(test_trailing_garbage)
{
	static const char *const tails[] = {"x", "{}", "\n{}", "0", "\n\"\"", " ,", "\x01"};
	unsigned char pk[32];
	ev_secret *seed = new_key(pk);
	size_t len, i;
	char err[256], text[4096], *env = envelope("payload", EV_SIGNED_REVOCATION, seed, &len);

	for (i = 0; i < EV_ARRAY_SIZE(tails); i++) {
		snprintf(text, sizeof(text), "%s%s", env, tails[i]);
		ck_assert_msg(open_text(text, strlen(text), pk, err, sizeof(err)) ==
				  CKR_DATA_INVALID,
			      "accepted trailing \"%s\"", tails[i]);
	}
	/* Blanks are not garbage. */
	snprintf(text, sizeof(text), "%s \t\r\n\n", env);
	ck_assert_uint_eq(open_text(text, strlen(text), pk, err, sizeof(err)), CKR_OK);
	free(env);
	ev_secret_free(seed);
}
END_TEST

START_TEST(test_unknown_and_duplicate_member)
{
	unsigned char pk[32];
	ev_secret *seed = new_key(pk);
	size_t len, p, s;
	char err[256], text[4096], *env = envelope("payload", EV_SIGNED_REVOCATION, seed, &len);

	/* A member added in front. */
	snprintf(text, sizeof(text), "{\"comment\": \"x\", %s", env + 1);
	ck_assert_uint_eq(open_text(text, strlen(text), pk, err, sizeof(err)), CKR_DATA_INVALID);
	ck_assert_err_has(err, "comment");
	ck_assert_err_has(err, "unknown member");

	/* A second type after the right one: json-c would keep the second. */
	snprintf(text, sizeof(text), "%.*s, \"type\": \"other\"}\n", (int)(len - 2), env);
	ck_assert_uint_eq(open_text(text, strlen(text), pk, err, sizeof(err)), CKR_DATA_INVALID);
	ck_assert_err_has(err, "twice");

	/* The same payload twice (both valid): still refused. */
	p = value_at(env, "payload");
	s = strcspn(env + p, "\"");
	snprintf(text, sizeof(text), "%.*s, \"payload\": \"%.*s\"}\n", (int)(len - 2), env, (int)s,
		 env + p);
	ck_assert_uint_eq(open_text(text, strlen(text), pk, err, sizeof(err)), CKR_DATA_INVALID);
	ck_assert_err_has(err, "twice");
	free(env);
	ev_secret_free(seed);
}
END_TEST

START_TEST(test_bad_base64)
{
	unsigned char pk[32];
	ev_secret *seed = new_key(pk);
	size_t len, at;
	char err[256], text[4096], *env = envelope("payload!", EV_SIGNED_REVOCATION, seed, &len);

	/* A character outside the alphabet in the payload. */
	strcpy(text, env);
	at = value_at(text, "payload");
	text[at + 1] = '*';
	ck_assert_uint_eq(open_text(text, len, pk, err, sizeof(err)), CKR_DATA_INVALID);
	ck_assert_err_has(err, "payload");
	ck_assert_err_has(err, "base64");

	/* Padding removed from the signature (86 characters without "=="). */
	at = value_at(env, "signature");
	snprintf(text, sizeof(text), "%.*s%.*s\"}\n", (int)at, env, 86, env + at);
	ck_assert_uint_eq(open_text(text, strlen(text), pk, err, sizeof(err)), CKR_DATA_INVALID);
	ck_assert_err_has(err, "signature");

	/* A signature of 63 bytes. */
	snprintf(text, sizeof(text), "%.*s%s\"}\n", (int)at, env,
		 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4"
		 "OTo7PD0+");
	ck_assert_uint_eq(open_text(text, strlen(text), pk, err, sizeof(err)), CKR_DATA_INVALID);
	ck_assert_err_has(err, "signature");
	free(env);
	ev_secret_free(seed);
}
END_TEST

START_TEST(test_too_large)
{
	unsigned char pk[32], *big;
	char err[256];

	memset(pk, 7, sizeof(pk));
	big = malloc(EV_SIGNED_MAX + 1);
	ck_assert_ptr_nonnull(big);
	memset(big, ' ', EV_SIGNED_MAX + 1);
	ck_assert_uint_eq(open_text((char *)big, EV_SIGNED_MAX + 1, pk, err, sizeof(err)),
			  CKR_DATA_LEN_RANGE);
	ck_assert_uint_eq(open_text((char *)big, EV_SIGNED_MAX, pk, err, sizeof(err)),
			  CKR_DATA_INVALID);
	free(big);
}
END_TEST

START_TEST(test_make_arguments)
{
	unsigned char pk[32];
	ev_secret *seed = new_key(pk), *shortseed = ev_secret_new(31);
	char *env = (char *)1;
	size_t n = 1;

	ck_assert_uint_eq(ev_signed_make((const unsigned char *)"x", 1, "a\"b", seed, &env, &n),
			  CKR_ARGUMENTS_BAD);
	ck_assert_ptr_null(env);
	ck_assert_uint_eq(ev_signed_make((const unsigned char *)"x", 1, "", seed, &env, &n),
			  CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(ev_signed_make((const unsigned char *)"x", 1, "t", NULL, &env, &n),
			  CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(ev_signed_make((const unsigned char *)"x", 1, "t", shortseed, &env, &n),
			  CKR_ARGUMENTS_BAD);
	ck_assert_ptr_null(env);
	ck_assert_uint_eq(
	    ev_signed_make((const unsigned char *)"x", EV_SIGNED_MAX, "t", seed, &env, &n),
	    CKR_DATA_LEN_RANGE);
	ev_secret_free(shortseed);
	ev_secret_free(seed);
}
END_TEST

/* ---- keys ---- */

START_TEST(test_key_round_trip)
{
	unsigned char pk[32], pk2[32];
	ev_secret *seed = new_key(pk), *back = NULL, *other = new_key(pk2);
	const char *path = path_of("sign.key");
	struct stat st;
	char err[256] = "", *env;
	size_t len;
	mode_t old;

	/* Created 0600 whatever the umask. */
	old = umask(0);
	ck_assert_msg(ev_signkey_write(path, seed, err, sizeof(err)) == CKR_OK, "%s", err);
	umask(old);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	ck_assert_uint_eq(st.st_size, 45);

	ck_assert_msg(ev_signkey_read(path, &back, err, sizeof(err)) == CKR_OK, "%s", err);
	ck_assert_int_eq(ev_secret_equal(seed, back), 1);
	ev_signkey_public(back, pk2);
	ck_assert_mem_eq(pk, pk2, 32);

	/* What the read key signs, the generated public key verifies. */
	env = envelope(full_doc, EV_SIGNED_REVOCATION, back, &len);
	ck_assert_uint_eq(open_text(env, len, pk, err, sizeof(err)), CKR_OK);
	free(env);

	/* Never replaced. */
	ck_assert_uint_eq(ev_signkey_write(path, other, err, sizeof(err)), CKR_GENERAL_ERROR);
	ck_assert_err_has(err, "exists");
	ev_secret_free(back);
	back = NULL;
	ck_assert_uint_eq(ev_signkey_read(path, &back, err, sizeof(err)), CKR_OK);
	ck_assert_int_eq(ev_secret_equal(seed, back), 1);

	/* Not through a dangling symlink either. */
	ck_assert_int_eq(symlink(path_of("elsewhere.key"), path_of("link.key")), 0);
	ck_assert_uint_eq(ev_signkey_write(path_of("link.key"), other, err, sizeof(err)),
			  CKR_GENERAL_ERROR);
	ck_assert_int_eq(access(path_of("elsewhere.key"), F_OK), -1);

	/* Two generated keys differ. */
	ck_assert_int_eq(ev_secret_equal(seed, other), 0);
	ev_secret_free(back);
	ev_secret_free(other);
	ev_secret_free(seed);
}
END_TEST

START_TEST(test_key_mode)
{
	static const mode_t bad[] = {0640, 0604, 0644, 0660, 0606, 0610, 0601};
	unsigned char pk[32];
	ev_secret *seed = new_key(pk), *back = NULL;
	const char *path = path_of("sign.key");
	char err[256];
	size_t i;

	ck_assert_uint_eq(ev_signkey_write(path, seed, err, sizeof(err)), CKR_OK);
	for (i = 0; i < EV_ARRAY_SIZE(bad); i++) {
		ck_assert_int_eq(chmod(path, bad[i]), 0);
		err[0] = '\0';
		back = (ev_secret *)1;
		ck_assert_msg(ev_signkey_read(path, &back, err, sizeof(err)) == CKR_GENERAL_ERROR,
			      "mode %03o accepted", (unsigned)bad[i]);
		ck_assert_ptr_null(back);
		ck_assert_err_has(err, path);
		ck_assert_err_has(err, "group or others");
	}
	ck_assert_int_eq(chmod(path, 0400), 0);
	ck_assert_uint_eq(ev_signkey_read(path, &back, err, sizeof(err)), CKR_OK);
	ck_assert_int_eq(ev_secret_equal(seed, back), 1);
	ev_secret_free(back);
	ev_secret_free(seed);
}
END_TEST

START_TEST(test_key_malformed)
{
	static const char *const bad[] = {
	    "",
	    "\n",
	    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n",	/* short */
	    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8==\n",	/* long */
	    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g\n",	/* 33 bytes */
	    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\n",	/* 31 bytes */
	    " AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",	/* a blank */
	    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n", /* two lines */
	    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	    "\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
	    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
	};
	ev_secret *back = NULL;
	const char *path;
	char err[256];
	size_t i;

	for (i = 0; i < EV_ARRAY_SIZE(bad); i++) {
		path = write_file_mode("bad.key", bad[i], strlen(bad[i]), 0600);
		err[0] = '\0';
		ck_assert_msg(ev_signkey_read(path, &back, err, sizeof(err)) == CKR_GENERAL_ERROR,
			      "accepted key file %zu", i);
		ck_assert_ptr_null(back);
		ck_assert_err_has(err, path);
		/* The message never shows the file's contents. */
		ck_assert_msg(strlen(bad[i]) < 8 || strstr(err, "AAECAwQF") == NULL, "%s", err);
		ck_assert_int_eq(remove(path), 0);
	}
	/* "\r\n" is one line end. */
	path = write_file_mode("crlf.key", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\r\n", 46, 0600);
	ck_assert_uint_eq(ev_signkey_read(path, &back, err, sizeof(err)), CKR_OK);
	ck_assert_uint_eq(back->len, 32);
	ck_assert_int_eq(back->data[31], 31);
	ev_secret_free(back);
	back = NULL;

	/* Missing, a directory. */
	ck_assert_uint_eq(ev_signkey_read(path_of("none.key"), &back, err, sizeof(err)),
			  CKR_GENERAL_ERROR);
	ck_assert_err_has(err, "none.key");
	ck_assert_int_eq(mkdir(path_of("dir.key"), 0700), 0);
	ck_assert_uint_eq(ev_signkey_read(path_of("dir.key"), &back, err, sizeof(err)),
			  CKR_GENERAL_ERROR);
	ck_assert_err_has(err, "regular file");
	ck_assert_ptr_null(back);
}
END_TEST

START_TEST(test_pubkey_decode)
{
	static const char *const bad[] = {
	    "",
	    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
	    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8==",
	    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g",
	    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",
	    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh-_",
	    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= ",
	    " AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
	    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=", /* bits left over */
	    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd\nh8=",
	};
	unsigned char pk[32], want[32];
	char text[45];
	size_t i;

	for (i = 0; i < 32; i++)
		want[i] = (unsigned char)i;
	for (i = 0; i < EV_ARRAY_SIZE(bad); i++) {
		memset(pk, 0xee, sizeof(pk));
		ck_assert_msg(ev_pubkey_decode(bad[i], pk) == -1, "accepted \"%s\"", bad[i]);
		ck_assert_uint_eq(pk[0], 0xee); /* untouched */
	}
	ck_assert_int_eq(ev_pubkey_decode(NULL, pk), -1);
	ck_assert_int_eq(ev_pubkey_decode("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", pk), 0);
	ck_assert_mem_eq(pk, want, 32);
	ev_pubkey_encode(pk, text);
	ck_assert_str_eq(text, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
}
END_TEST

/* ---- revocation lists ---- */

START_TEST(test_parse_full)
{
	ev_revlist *l = NULL;
	char err[256] = "";

	ck_assert_msg(ev_revlist_parse((const unsigned char *)full_doc, strlen(full_doc), &l, err,
				       sizeof(err)) == CKR_OK,
		      "%s", err);
	ck_assert_str_eq(l->device, "edge-0042");
	ck_assert_int_eq(l->sequence, 7);
	ck_assert_int_eq(l->issued_at, 1795430400);
	ck_assert_uint_eq(l->n, 4);

	ck_assert_uint_eq(l->entries[0].kind, EV_REVOKE_KEY);
	ck_assert_int_eq(l->entries[0].zone, 1);
	ck_assert_uint_eq(l->entries[0].label_len, 3);
	ck_assert_mem_eq(l->entries[0].label, "web", 3);
	ck_assert_ptr_null(l->entries[0].ckid);
	ck_assert_uint_eq(l->entries[0].ckid_len, 0);
	ck_assert_int_eq(l->entries[0].generation, 0);
	ck_assert_str_eq(l->entries[0].reason, "compromised");

	ck_assert_uint_eq(l->entries[1].kind, EV_REVOKE_KEY);
	ck_assert_mem_eq(l->entries[1].label, "api", 3);
	ck_assert_uint_eq(l->entries[1].ckid_len, 2);
	ck_assert_mem_eq(l->entries[1].ckid, "\x0a\x1b", 2);
	ck_assert_int_eq(l->entries[1].generation, 2);
	ck_assert_str_eq(l->entries[1].reason, "superseded");

	ck_assert_uint_eq(l->entries[2].kind, EV_REVOKE_ZONE);
	ck_assert_int_eq(l->entries[2].zone, 2);
	ck_assert_ptr_null(l->entries[2].label);
	ck_assert_str_eq(l->entries[2].reason, "decommissioned");

	ck_assert_uint_eq(l->entries[3].kind, EV_REVOKE_DEVICE);
	ck_assert_int_eq(l->entries[3].zone, 0);
	ck_assert_str_eq(l->entries[3].reason, "stolen");
	ev_revlist_free(l);
	ev_revlist_free(NULL);
}
END_TEST

START_TEST(test_parse_limits_accepted)
{
	char doc[2048], label[256], reason[257];
	ev_revlist *l = NULL;
	char err[256] = "";

	memset(label, 'l', 255);
	label[255] = '\0';
	memset(reason, 'r', 256);
	reason[256] = '\0';
	snprintf(doc, sizeof(doc),
		 "{\"version\":1,\"device\":\"d\",\"sequence\":9007199254740992,\"issued_at\":0,"
		 "\"entries\":[{\"kind\":\"key\",\"zone\":9007199254740992,\"label\":\"%s\","
		 "\"generation\":9007199254740992,\"reason\":\"%s\"}]}",
		 label, reason);
	ck_assert_msg(ev_revlist_parse((unsigned char *)doc, strlen(doc), &l, err, sizeof(err)) ==
			  CKR_OK,
		      "%s", err);
	ck_assert_int_eq(l->sequence, 9007199254740992LL);
	ck_assert_uint_eq(l->entries[0].label_len, 255);
	ck_assert_uint_eq(strlen(l->entries[0].reason), 256);
	ev_revlist_free(l);

	/* An empty list only moves the sequence on. */
	snprintf(doc, sizeof(doc),
		 "{\"entries\":[],\"issued_at\":5,\"sequence\":1,\"device\":\"d\",\"version\":1}");
	ck_assert_uint_eq(ev_revlist_parse((unsigned char *)doc, strlen(doc), &l, err, sizeof(err)),
			  CKR_OK);
	ck_assert_uint_eq(l->n, 0);
	ev_revlist_free(l);
}
END_TEST

/*
 * A document built from a template with one entry; expect CKR_DATA_INVALID
 * and an error naming each of the given strings.
 */
static void
doc_fails(const char *top, const char *entry, const char *must1, const char *must2)
{
	char doc[4096], err[512] = "";
	ev_revlist *l = (ev_revlist *)1;
	CK_RV rv;

	if (top != NULL)
		snprintf(doc, sizeof(doc), "%s", top);
	else
		snprintf(doc, sizeof(doc),
			 "{\"version\": 1, \"device\": \"d\", \"sequence\": 3, "
			 "\"issued_at\": 100, \"entries\": [%s]}",
			 entry);
	rv = ev_revlist_parse((unsigned char *)doc, strlen(doc), &l, err, sizeof(err));
	ck_assert_msg(rv == CKR_DATA_INVALID, "0x%lx for %s", (unsigned long)rv, doc);
	ck_assert_ptr_null(l);
	ck_assert_msg(strstr(err, must1) != NULL, "\"%s\" not in \"%s\" for %s", must1, err, doc);
	if (must2 != NULL)
		ck_assert_msg(strstr(err, must2) != NULL, "\"%s\" not in \"%s\" for %s", must2, err,
			      doc);
}

#define TOP(members) "{" members "}"
#define OK_TOP "\"device\": \"d\", \"sequence\": 3, \"issued_at\": 100, \"entries\": []"
#define KEY_ENTRY(extra)                                                                           \
	"{\"kind\": \"key\", \"zone\": 1, \"label\": \"web\", " extra "\"reason\": \"r\"}"

START_TEST(test_doc_version)
{
	doc_fails(TOP(OK_TOP), NULL, "\"version\"", "missing");
	doc_fails(TOP("\"version\": 2, " OK_TOP), NULL, "\"version\"", "2");
	doc_fails(TOP("\"version\": 0, " OK_TOP), NULL, "\"version\"", NULL);
	doc_fails(TOP("\"version\": \"1\", " OK_TOP), NULL, "\"version\"", "integer");
	doc_fails(TOP("\"version\": 1.0, " OK_TOP), NULL, "\"version\"", "integer");
	doc_fails(TOP("\"version\": true, " OK_TOP), NULL, "\"version\"", "integer");
	doc_fails(TOP("\"version\": null, " OK_TOP), NULL, "\"version\"", "null");
}
END_TEST

START_TEST(test_doc_unknown_member)
{
	doc_fails(TOP("\"version\": 1, \"devices\": \"d\", " OK_TOP), NULL, "\"devices\"",
		  "unknown");
	doc_fails(NULL, KEY_ENTRY("\"lable\": \"x\", "), "entries[0]", "\"lable\"");
	/* Members of another kind are unknown to this one. */
	doc_fails(NULL, "{\"kind\": \"zone\", \"zone\": 2, \"label\": \"x\", \"reason\": \"r\"}",
		  "entries[0].label", "zone");
	doc_fails(NULL, "{\"kind\": \"device\", \"zone\": 2, \"reason\": \"r\"}", "entries[0].zone",
		  "device");
	doc_fails(NULL, "{\"kind\": \"zone\", \"zone\": 2, \"id\": \"00\", \"reason\": \"r\"}",
		  "entries[0].id", NULL);
}
END_TEST

START_TEST(test_doc_duplicate_member)
{
	doc_fails(NULL, KEY_ENTRY("\"zone\": 2, "), "twice", NULL);
	doc_fails(TOP("\"version\": 1, \"sequence\": 9, " OK_TOP), NULL, "twice", NULL);
}
END_TEST

START_TEST(test_doc_device)
{
	doc_fails(TOP("\"version\": 1, \"sequence\": 3, \"issued_at\": 100, \"entries\": []"), NULL,
		  "\"device\"", "missing");
	doc_fails(TOP("\"version\": 1, \"device\": \"\", \"sequence\": 3, \"issued_at\": 100, "
		      "\"entries\": []"),
		  NULL, "\"device\"", "empty");
	doc_fails(TOP("\"version\": 1, \"device\": 42, \"sequence\": 3, \"issued_at\": 100, "
		      "\"entries\": []"),
		  NULL, "\"device\"", "string");
}
END_TEST

static void
sequence_fails(const char *value)
{
	char doc[512];

	snprintf(doc, sizeof(doc),
		 "{\"version\": 1, \"device\": \"d\", \"sequence\": %s, \"issued_at\": 100, "
		 "\"entries\": []}",
		 value);
	doc_fails(doc, NULL, "\"sequence\"", NULL);
}

START_TEST(test_doc_sequence)
{
	sequence_fails("0");
	sequence_fails("-1");
	sequence_fails("9007199254740993");
	sequence_fails("9223372036854775807");
	sequence_fails("9223372036854775808");
	sequence_fails("99999999999999999999999");
	sequence_fails("7.0");
	sequence_fails("7e0");
	sequence_fails("\"7\"");
	sequence_fails("null");
	sequence_fails("[7]");
	doc_fails(TOP("\"version\": 1, \"device\": \"d\", \"issued_at\": 1, \"entries\": []"), NULL,
		  "\"sequence\"", "missing");
}
END_TEST

START_TEST(test_doc_issued_at)
{
	doc_fails(TOP("\"version\": 1, \"device\": \"d\", \"sequence\": 3, \"issued_at\": -1, "
		      "\"entries\": []"),
		  NULL, "\"issued_at\"", "range");
	doc_fails(TOP("\"version\": 1, \"device\": \"d\", \"sequence\": 3, "
		      "\"issued_at\": \"2026-11-24\", \"entries\": []"),
		  NULL, "\"issued_at\"", "integer");
	doc_fails(TOP("\"version\": 1, \"device\": \"d\", \"sequence\": 3, \"entries\": []"), NULL,
		  "\"issued_at\"", "missing");
}
END_TEST

START_TEST(test_doc_entries)
{
	doc_fails(TOP("\"version\": 1, \"device\": \"d\", \"sequence\": 3, \"issued_at\": 1"), NULL,
		  "\"entries\"", "missing");
	doc_fails(TOP("\"version\": 1, \"device\": \"d\", \"sequence\": 3, \"issued_at\": 1, "
		      "\"entries\": {}"),
		  NULL, "\"entries\"", "array");
	doc_fails(NULL, "\"key\"", "entries[0]", "object");
	doc_fails(NULL, KEY_ENTRY("") ", []", "entries[1]", "object");
}
END_TEST

START_TEST(test_doc_kind)
{
	doc_fails(NULL, "{\"zone\": 1, \"reason\": \"r\"}", "entries[0].kind", "missing");
	doc_fails(NULL, "{\"kind\": \"keys\", \"zone\": 1, \"reason\": \"r\"}", "entries[0].kind",
		  "keys");
	doc_fails(NULL, "{\"kind\": \"Key\", \"zone\": 1, \"reason\": \"r\"}", "entries[0].kind",
		  NULL);
	doc_fails(NULL, "{\"kind\": 1, \"zone\": 1, \"reason\": \"r\"}", "entries[0].kind",
		  "string");
	doc_fails(NULL, "{\"kind\": \"key\\u0000\", \"zone\": 1, \"reason\": \"r\"}",
		  "entries[0].kind", NULL);
}
END_TEST

START_TEST(test_doc_zone)
{
	doc_fails(NULL, "{\"kind\": \"key\", \"zone\": 0, \"label\": \"w\", \"reason\": \"r\"}",
		  "entries[0].zone", "range");
	doc_fails(NULL, "{\"kind\": \"zone\", \"zone\": -3, \"reason\": \"r\"}", "entries[0].zone",
		  "range");
	doc_fails(NULL, "{\"kind\": \"zone\", \"zone\": \"2\", \"reason\": \"r\"}",
		  "entries[0].zone", "integer");
	doc_fails(NULL, "{\"kind\": \"zone\", \"zone\": 2.5, \"reason\": \"r\"}", "entries[0].zone",
		  "integer");
	doc_fails(NULL, "{\"kind\": \"zone\", \"reason\": \"r\"}", "entries[0].zone", "missing");
	doc_fails(NULL, "{\"kind\": \"key\", \"label\": \"w\", \"reason\": \"r\"}",
		  "entries[0].zone", "missing");
}
END_TEST

START_TEST(test_doc_label)
{
	char entry[600], label[257];

	doc_fails(NULL, "{\"kind\": \"key\", \"zone\": 1, \"reason\": \"r\"}", "entries[0].label",
		  "missing");
	doc_fails(NULL, "{\"kind\": \"key\", \"zone\": 1, \"label\": \"\", \"reason\": \"r\"}",
		  "entries[0].label", "empty");
	doc_fails(NULL, "{\"kind\": \"key\", \"zone\": 1, \"label\": 7, \"reason\": \"r\"}",
		  "entries[0].label", "string");
	doc_fails(NULL,
		  "{\"kind\": \"key\", \"zone\": 1, \"label\": \"a\\u0000b\", \"reason\": \"r\"}",
		  "entries[0].label", "NUL");
	memset(label, 'l', 256);
	label[256] = '\0';
	snprintf(entry, sizeof(entry),
		 "{\"kind\": \"key\", \"zone\": 1, \"label\": \"%s\", \"reason\": \"r\"}", label);
	doc_fails(NULL, entry, "entries[0].label", "256 bytes");
	/* 128 two-byte characters: 256 bytes, counted in bytes. */
	entry[0] = '\0';
	strcat(entry, "{\"kind\": \"key\", \"zone\": 1, \"label\": \"");
	for (int i = 0; i < 128; i++)
		strcat(entry, "\xc3\xa9");
	strcat(entry, "\", \"reason\": \"r\"}");
	doc_fails(NULL, entry, "entries[0].label", "256 bytes");
}
END_TEST

START_TEST(test_doc_id)
{
	doc_fails(NULL, KEY_ENTRY("\"id\": \"0g\", "), "entries[0].id", "hex");
	doc_fails(NULL, KEY_ENTRY("\"id\": \"abc\", "), "entries[0].id", "hex");
	doc_fails(NULL, KEY_ENTRY("\"id\": \"\", "), "entries[0].id", NULL);
	doc_fails(NULL, KEY_ENTRY("\"id\": \"0x0a\", "), "entries[0].id", NULL);
	doc_fails(NULL, KEY_ENTRY("\"id\": \"0a 1b\", "), "entries[0].id", NULL);
	doc_fails(NULL, KEY_ENTRY("\"id\": 10, "), "entries[0].id", "string");
	doc_fails(NULL, KEY_ENTRY("\"id\": null, "), "entries[0].id", "null");
}
END_TEST

START_TEST(test_doc_generation)
{
	doc_fails(NULL, KEY_ENTRY("\"generation\": 0, "), "entries[0].generation", "range");
	doc_fails(NULL, KEY_ENTRY("\"generation\": -1, "), "entries[0].generation", "range");
	doc_fails(NULL, KEY_ENTRY("\"generation\": \"2\", "), "entries[0].generation", "integer");
	doc_fails(NULL, KEY_ENTRY("\"generation\": null, "), "entries[0].generation", "null");
}
END_TEST

START_TEST(test_doc_reason)
{
	char entry[600], reason[258];

	doc_fails(NULL, "{\"kind\": \"device\"}", "entries[0].reason", "missing");
	doc_fails(NULL, "{\"kind\": \"device\", \"reason\": \"\"}", "entries[0].reason", "empty");
	doc_fails(NULL, "{\"kind\": \"device\", \"reason\": [\"x\"]}", "entries[0].reason",
		  "string");
	memset(reason, 'r', 257);
	reason[257] = '\0';
	snprintf(entry, sizeof(entry), "{\"kind\": \"device\", \"reason\": \"%s\"}", reason);
	doc_fails(NULL, entry, "entries[0].reason", "257 bytes");
}
END_TEST

START_TEST(test_doc_names_the_entry)
{
	/* The third entry is wrong: the error says entries[2]. */
	doc_fails(NULL,
		  KEY_ENTRY("") ", " KEY_ENTRY(
		      "") ", {\"kind\": \"zone\", \"zone\": 0, \"reason\": \"r\"}",
		  "entries[2].zone", NULL);
	doc_fails("not json", NULL, "JSON", NULL);
	doc_fails("[1, 2]", NULL, "object", NULL);
	doc_fails(TOP("\"version\": 1, " OK_TOP) " x", NULL, "trailing", NULL);
}
END_TEST

/* A document of n device entries. */
static char *
big_doc(size_t n, size_t *len)
{
	static const char head[] = "{\"version\":1,\"device\":\"d\",\"sequence\":1,"
				   "\"issued_at\":0,\"entries\":[";
	static const char one[] = "{\"kind\":\"device\",\"reason\":\"r\"},";
	char *doc = malloc(sizeof(head) + n * (sizeof(one) - 1) + 4), *p;
	size_t i;

	ck_assert_ptr_nonnull(doc);
	p = doc + sizeof(head) - 1;
	memcpy(doc, head, sizeof(head) - 1);
	for (i = 0; i < n; i++, p += sizeof(one) - 1)
		memcpy(p, one, sizeof(one) - 1);
	if (n > 0)
		p--; /* the last comma */
	memcpy(p, "]}", 3);
	*len = (size_t)(p - doc) + 2;
	return doc;
}

START_TEST(test_max_entries)
{
	ev_revlist *l = NULL;
	char err[256] = "", *doc;
	size_t len;

	doc = big_doc(EV_REVLIST_MAX_ENTRIES, &len);
	ck_assert_msg(ev_revlist_parse((unsigned char *)doc, len, &l, err, sizeof(err)) == CKR_OK,
		      "%s", err);
	ck_assert_uint_eq(l->n, EV_REVLIST_MAX_ENTRIES);
	ck_assert_uint_eq(l->entries[EV_REVLIST_MAX_ENTRIES - 1].kind, EV_REVOKE_DEVICE);
	ev_revlist_free(l);
	l = NULL;
	free(doc);

	doc = big_doc(EV_REVLIST_MAX_ENTRIES + 1, &len);
	ck_assert_uint_eq(ev_revlist_parse((unsigned char *)doc, len, &l, err, sizeof(err)),
			  CKR_DATA_INVALID);
	ck_assert_ptr_null(l);
	ck_assert_err_has(err, "\"entries\"");
	{
		char count[32];

		snprintf(count, sizeof(count), "%u", EV_REVLIST_MAX_ENTRIES + 1);
		ck_assert_err_has(err, count);
	}
	free(doc);
}
END_TEST

START_TEST(test_load)
{
	unsigned char pk[32], pk2[32], want[32];
	ev_secret *seed = new_key(pk), *seed2 = new_key(pk2);
	ev_revlist *l = NULL;
	char err[256] = "", *env;
	size_t len;

	env = envelope(full_doc, EV_SIGNED_REVOCATION, seed, &len);
	ck_assert_msg(ev_revlist_load((unsigned char *)env, len, pk, &l, err, sizeof(err)) ==
			  CKR_OK,
		      "%s", err);
	ck_assert_int_eq(l->sequence, 7);
	ck_assert_uint_eq(l->n, 4);
	/* The digest is BLAKE2b-256 of the whole envelope. */
	crypto_generichash(want, 32, (unsigned char *)env, len, NULL, 0);
	ck_assert_mem_eq(l->digest, want, 32);
	ev_revlist_free(l);
	l = NULL;

	ck_assert_uint_eq(ev_revlist_load((unsigned char *)env, len, pk2, &l, err, sizeof(err)),
			  CKR_SIGNATURE_INVALID);
	ck_assert_ptr_null(l);
	free(env);

	/* Well signed, malformed inside. */
	env = envelope("{\"version\": 1}", EV_SIGNED_REVOCATION, seed, &len);
	ck_assert_uint_eq(ev_revlist_load((unsigned char *)env, len, pk, &l, err, sizeof(err)),
			  CKR_DATA_INVALID);
	ck_assert_ptr_null(l);
	ck_assert_err_has(err, "missing");
	free(env);
	ev_secret_free(seed);
	ev_secret_free(seed2);
}
END_TEST

START_TEST(test_digest)
{
	unsigned char pk[32], d1[32], d2[32], d3[32];
	ev_secret *seed = new_key(pk);
	ev_revlist *a = NULL, *b = NULL;
	char err[256], *env, *env2;
	size_t len;

	env = envelope(full_doc, EV_SIGNED_REVOCATION, seed, &len);
	env2 = malloc(len + 2);
	ck_assert_ptr_nonnull(env2);
	memcpy(env2, env, len);
	memcpy(env2 + len, " ", 2);
	/* The same list with one more blank: other bytes, other digest. */
	ck_assert_uint_eq(ev_revlist_load((unsigned char *)env, len, pk, &a, err, sizeof(err)),
			  CKR_OK);
	ck_assert_uint_eq(ev_revlist_load((unsigned char *)env2, len + 1, pk, &b, err, sizeof(err)),
			  CKR_OK);
	ck_assert_mem_ne(a->digest, b->digest, 32);
	ev_revlist_digest((unsigned char *)env, len, d1);
	ev_revlist_digest((unsigned char *)env, len, d2);
	ev_revlist_digest((unsigned char *)env, len - 1, d3);
	ck_assert_mem_eq(d1, d2, 32);
	ck_assert_mem_eq(d1, a->digest, 32);
	ck_assert_mem_ne(d1, d3, 32);
	ev_revlist_free(a);
	ev_revlist_free(b);
	free(env);
	free(env2);
	ev_secret_free(seed);
}
END_TEST

static Suite *
revlist_suite(void)
{
	Suite *s = suite_create("revlist");
	TCase *tc = tcase_create("signed");
	TCase *tk = tcase_create("keys");
	TCase *tl = tcase_create("list");

	tcase_add_checked_fixture(tc, setup, tmpdir_remove);
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_reordered_and_spaced);
	tcase_add_test(tc, test_bad_signature);
	tcase_add_test(tc, test_wrong_type);
	tcase_add_test(tc, test_truncated);
	tcase_add_test(tc, test_garbage);
	tcase_add_test(tc, test_trailing_garbage);
	tcase_add_test(tc, test_unknown_and_duplicate_member);
	tcase_add_test(tc, test_bad_base64);
	tcase_add_test(tc, test_too_large);
	tcase_add_test(tc, test_make_arguments);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(tk, setup, tmpdir_remove);
	tcase_add_test(tk, test_key_round_trip);
	tcase_add_test(tk, test_key_mode);
	tcase_add_test(tk, test_key_malformed);
	tcase_add_test(tk, test_pubkey_decode);
	suite_add_tcase(s, tk);

	tcase_add_checked_fixture(tl, setup, tmpdir_remove);
	tcase_add_test(tl, test_parse_full);
	tcase_add_test(tl, test_parse_limits_accepted);
	tcase_add_test(tl, test_doc_version);
	tcase_add_test(tl, test_doc_unknown_member);
	tcase_add_test(tl, test_doc_duplicate_member);
	tcase_add_test(tl, test_doc_device);
	tcase_add_test(tl, test_doc_sequence);
	tcase_add_test(tl, test_doc_issued_at);
	tcase_add_test(tl, test_doc_entries);
	tcase_add_test(tl, test_doc_kind);
	tcase_add_test(tl, test_doc_zone);
	tcase_add_test(tl, test_doc_label);
	tcase_add_test(tl, test_doc_id);
	tcase_add_test(tl, test_doc_generation);
	tcase_add_test(tl, test_doc_reason);
	tcase_add_test(tl, test_doc_names_the_entry);
	tcase_add_test(tl, test_max_entries);
	tcase_add_test(tl, test_load);
	tcase_add_test(tl, test_digest);
	suite_add_tcase(s, tl);
	return s;
}

int
main(void)
{
	return run_suite(revlist_suite());
}
