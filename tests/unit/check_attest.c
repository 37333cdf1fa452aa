/*
 * Unit tests of attestation (src/attest.c): the result document read
 * strictly, the envelope's signature, the rules and their boundaries, and
 * the "result" provider reading its file. Each test makes its own keys,
 * and its own temporary directory for files.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "attest.h"
#include "secmem.h"
#include "signed.h"
#include "testutil.h"

#define ISSUED 1795430400LL /* 2026-11-23T10:40:00Z */
#define SAFE_MAX "9007199254740992"

static void
setup(void)
{
	tmpdir_make("ev_attest");
}

static ev_secret *
new_key(unsigned char pk[32])
{
	ev_secret *seed = NULL;

	ck_assert_uint_eq(ev_signkey_generate(&seed, pk), CKR_OK);
	ck_assert_ptr_nonnull(seed);
	return seed;
}

/* An envelope of a NUL-terminated document. */
static char *
envelope(const char *doc, const char *type, const ev_secret *seed, size_t *len)
{
	char *env = NULL;
	size_t n = 0;

	ck_assert_uint_eq(
	    ev_signed_make((const unsigned char *)doc, strlen(doc), type, seed, &env, &n), CKR_OK);
	ck_assert_ptr_nonnull(env);
	*len = n;
	return env;
}

/* A document; nonce NULL for none. In a static buffer. */
static const char *
make_doc(const char *device, const char *zones, long long issued, long long expires,
	 const char *nonce)
{
	static char doc[4096];
	char nm[200] = "";

	if (nonce != NULL)
		snprintf(nm, sizeof(nm), ", \"nonce\": \"%s\"", nonce);
	snprintf(doc, sizeof(doc),
		 "{\"version\": 1, \"device\": \"%s\", \"zones\": [%s], \"issued_at\": %lld, "
		 "\"expires_at\": %lld%s}\n",
		 device, zones, issued, expires, nm);
	return doc;
}

static ev_attest_result *
parse_ok(const char *doc)
{
	ev_attest_result *r = NULL;
	char err[256] = "";

	ck_assert_msg(ev_attest_result_parse((const unsigned char *)doc, strlen(doc), &r, err,
					     sizeof(err)) == CKR_OK,
		      "%s: %s", doc, err);
	ck_assert_ptr_nonnull(r);
	return r;
}

/* The document text must be refused as malformed, the error holding must1 and must2. */
static void
doc_fails(const char *doc, const char *must1, const char *must2)
{
	ev_attest_result *r = (ev_attest_result *)1;
	char err[512] = "";
	CK_RV rv;

	rv = ev_attest_result_parse((const unsigned char *)doc, strlen(doc), &r, err, sizeof(err));
	ck_assert_msg(rv == CKR_DATA_INVALID, "0x%lx for %s", (unsigned long)rv, doc);
	ck_assert_ptr_null(r);
	ck_assert_msg(strstr(err, must1) != NULL, "\"%s\" not in \"%s\" for %s", must1, err, doc);
	if (must2 != NULL)
		ck_assert_msg(strstr(err, must2) != NULL, "\"%s\" not in \"%s\" for %s", must2, err,
			      doc);
}

#define REST "\"device\": \"d\", \"zones\": [1], \"issued_at\": 10, \"expires_at\": 20"

/* ---- the document ---- */

START_TEST(test_parse_full)
{
	static const unsigned char zero[32];
	static const char doc[] =
	    "{\"version\": 1,\n \"device\": \"edge-0042\",\n \"zones\": [1, 2, 9007199254740992],\n"
	    " \"issued_at\": 1795430400,\n \"expires_at\": 1795434000,\n"
	    " \"nonce\": \"9F86d081884C7D659A2FEAA0C55AD015\"}\n";
	static const unsigned char nonce[16] = {0x9f, 0x86, 0xd0, 0x81, 0x88, 0x4c, 0x7d, 0x65,
						0x9a, 0x2f, 0xea, 0xa0, 0xc5, 0x5a, 0xd0, 0x15};
	ev_attest_result *r = parse_ok(doc);

	ck_assert_str_eq(r->device, "edge-0042");
	ck_assert_uint_eq(r->nzones, 3);
	ck_assert_int_eq(r->zones[0], 1);
	ck_assert_int_eq(r->zones[1], 2);
	ck_assert_int_eq(r->zones[2], 9007199254740992LL);
	ck_assert_int_eq(r->issued_at, 1795430400LL);
	ck_assert_int_eq(r->expires_at, 1795434000LL);
	ck_assert_uint_eq(r->nonce_len, 16);
	ck_assert_mem_eq(r->nonce, nonce, 16);
	/* No envelope: no digest. */
	ck_assert_mem_eq(r->digest, zero, 32);
	ev_attest_result_free(r);

	/* Without a nonce; member order is free. */
	r = parse_ok("{\"zones\": [7], \"expires_at\": 1, \"version\": 1, \"issued_at\": 0, "
		     "\"device\": \"x\"}");
	ck_assert_uint_eq(r->nonce_len, 0);
	ck_assert_uint_eq(r->nzones, 1);
	ck_assert_int_eq(r->zones[0], 7);
	ck_assert_int_eq(r->issued_at, 0);
	ck_assert_int_eq(r->expires_at, 1);
	ev_attest_result_free(r);
	ev_attest_result_free(NULL);
}
END_TEST

START_TEST(test_parse_limits_accepted)
{
	char device[256], nonce[129], *zones, *doc;
	ev_attest_result *r;
	size_t i, n;

	/* 255 bytes of device, 64 bytes of nonce, the largest times. */
	memset(device, 'd', 255);
	device[255] = '\0';
	memset(nonce, 'a', 128);
	nonce[128] = '\0';
	r = parse_ok(make_doc(device, "1", 0, 9007199254740992LL, nonce));
	ck_assert_uint_eq(strlen(r->device), 255);
	ck_assert_uint_eq(r->nonce_len, 64);
	ck_assert_int_eq(r->expires_at, 9007199254740992LL);
	ev_attest_result_free(r);

	/* 16 bytes of nonce; a UTF-8 device id. */
	nonce[32] = '\0';
	r = parse_ok(make_doc("caf\xc3\xa9-\xe2\x82\xac", "1", 1, 2, nonce));
	ck_assert_str_eq(r->device, "caf\xc3\xa9-\xe2\x82\xac");
	ck_assert_uint_eq(r->nonce_len, 16);
	ev_attest_result_free(r);

	/* EV_ATTEST_MAX_ZONES zones. */
	zones = malloc(EV_ATTEST_MAX_ZONES * 8 + 8);
	ck_assert_ptr_nonnull(zones);
	for (i = 0, n = 0; i < EV_ATTEST_MAX_ZONES; i++)
		n += (size_t)sprintf(zones + n, "%s%zu", i ? "," : "", i + 1);
	doc = malloc(n + 200);
	ck_assert_ptr_nonnull(doc);
	sprintf(doc,
		"{\"version\":1,\"device\":\"d\",\"zones\":[%s],\"issued_at\":1,\"expires_at\":2}",
		zones);
	r = parse_ok(doc);
	ck_assert_uint_eq(r->nzones, EV_ATTEST_MAX_ZONES);
	ck_assert_int_eq(r->zones[EV_ATTEST_MAX_ZONES - 1], EV_ATTEST_MAX_ZONES);
	ev_attest_result_free(r);

	/* One more is malformed. */
	sprintf(doc,
		"{\"version\":1,\"device\":\"d\",\"zones\":[%s,%u],\"issued_at\":1,\"expires_at\":"
		"2}",
		zones, EV_ATTEST_MAX_ZONES + 1);
	doc_fails(doc, "\"zones\"", "1025");
	free(doc);
	free(zones);
}
END_TEST

START_TEST(test_doc_version)
{
	doc_fails("{" REST "}", "\"version\"", "missing");
	doc_fails("{\"version\": 2, " REST "}", "\"version\"", "not supported");
	doc_fails("{\"version\": 0, " REST "}", "\"version\"", NULL);
	doc_fails("{\"version\": \"1\", " REST "}", "\"version\"", "integer");
	doc_fails("{\"version\": 1.0, " REST "}", "\"version\"", "integer");
	doc_fails("{\"version\": true, " REST "}", "\"version\"", "integer");
	doc_fails("{\"version\": null, " REST "}", "\"version\"", "null");
}
END_TEST

START_TEST(test_doc_members)
{
	doc_fails("{\"version\": 1, \"zone\": 1, " REST "}", "\"zone\"", "unknown");
	doc_fails("{\"version\": 1, \"Nonce\": \"00\", " REST "}", "\"Nonce\"", "unknown");
	doc_fails("{\"version\": 1, " REST ", \"device\": \"e\"}", "twice", NULL);
	doc_fails("{\"version\": 1, \"issued_at\": 11, " REST "}", "twice", NULL);
	doc_fails("not json", "JSON", NULL);
	doc_fails("[1, 2]", "object", NULL);
	doc_fails("{\"version\": 1, " REST "} x", "trailing", NULL);
	doc_fails("{\"version\": 1, " REST ",}", "JSON", NULL);
	doc_fails("", "JSON", NULL);
}
END_TEST

START_TEST(test_doc_device)
{
	char doc[1024], device[257];

	doc_fails("{\"version\": 1, \"zones\": [1], \"issued_at\": 1, \"expires_at\": 2}",
		  "\"device\"", "missing");
	doc_fails(make_doc("", "1", 1, 2, NULL), "\"device\"", "0 bytes");
	memset(device, 'd', 256);
	device[256] = '\0';
	doc_fails(make_doc(device, "1", 1, 2, NULL), "\"device\"", "256 bytes");
	doc_fails(make_doc("a\\u0000b", "1", 1, 2, NULL), "\"device\"", "printable");
	doc_fails(make_doc("a\\nb", "1", 1, 2, NULL), "\"device\"", "printable");
	doc_fails(make_doc("a\\u001bb", "1", 1, 2, NULL), "\"device\"", "printable");
	doc_fails(make_doc("a\\u007fb", "1", 1, 2, NULL), "\"device\"", "printable");
	doc_fails(make_doc("a\\u0085b", "1", 1, 2, NULL), "\"device\"", "printable");
	snprintf(doc, sizeof(doc),
		 "{\"version\": 1, \"device\": 42, \"zones\": [1], \"issued_at\": 1, "
		 "\"expires_at\": 2}");
	doc_fails(doc, "\"device\"", "string");
	snprintf(doc, sizeof(doc),
		 "{\"version\": 1, \"device\": [\"d\"], \"zones\": [1], \"issued_at\": 1, "
		 "\"expires_at\": 2}");
	doc_fails(doc, "\"device\"", "string");
	snprintf(doc, sizeof(doc),
		 "{\"version\": 1, \"device\": null, \"zones\": [1], \"issued_at\": 1, "
		 "\"expires_at\": 2}");
	doc_fails(doc, "\"device\"", "null");
}
END_TEST

START_TEST(test_doc_zones)
{
	doc_fails("{\"version\": 1, \"device\": \"d\", \"issued_at\": 1, \"expires_at\": 2}",
		  "\"zones\"", "missing");
	doc_fails(make_doc("d", "", 1, 2, NULL), "\"zones\"", "0 zones");
	doc_fails(make_doc("d", "0", 1, 2, NULL), "\"zones\"[0]", "range");
	doc_fails(make_doc("d", "1, -1", 1, 2, NULL), "\"zones\"[1]", "range");
	doc_fails(make_doc("d", "9007199254740993", 1, 2, NULL), "\"zones\"[0]", "range");
	doc_fails(make_doc("d", "99999999999999999999999", 1, 2, NULL), "\"zones\"[0]", "range");
	doc_fails(make_doc("d", "\"1\"", 1, 2, NULL), "\"zones\"[0]", "integer");
	doc_fails(make_doc("d", "1.5", 1, 2, NULL), "\"zones\"[0]", "integer");
	doc_fails(make_doc("d", "2e0", 1, 2, NULL), "\"zones\"[0]", "integer");
	doc_fails(make_doc("d", "null", 1, 2, NULL), "\"zones\"[0]", "integer");
	doc_fails(make_doc("d", "[1]", 1, 2, NULL), "\"zones\"[0]", "integer");
	doc_fails(make_doc("d", "1, 2, 3, 2", 1, 2, NULL), "\"zones\"[3]", "twice");
	doc_fails("{\"version\": 1, \"device\": \"d\", \"zones\": 1, \"issued_at\": 1, "
		  "\"expires_at\": 2}",
		  "\"zones\"", "array");
	doc_fails("{\"version\": 1, \"device\": \"d\", \"zones\": {\"1\": 1}, \"issued_at\": 1, "
		  "\"expires_at\": 2}",
		  "\"zones\"", "array");
}
END_TEST

START_TEST(test_doc_times)
{
	doc_fails("{\"version\": 1, \"device\": \"d\", \"zones\": [1], \"expires_at\": 2}",
		  "\"issued_at\"", "missing");
	doc_fails("{\"version\": 1, \"device\": \"d\", \"zones\": [1], \"issued_at\": 2}",
		  "\"expires_at\"", "missing");
	doc_fails(make_doc("d", "1", -1, 2, NULL), "\"issued_at\"", "range");
	doc_fails(make_doc("d", "1", 9007199254740993LL, 9007199254740993LL, NULL), "\"issued_at\"",
		  "range");
	doc_fails(make_doc("d", "1", 1, 9007199254740993LL, NULL), "\"expires_at\"", "range");
	/* expires_at must be after issued_at. */
	doc_fails(make_doc("d", "1", 5, 5, NULL), "\"expires_at\"", "not after");
	doc_fails(make_doc("d", "1", 5, 4, NULL), "\"expires_at\"", "not after");
	doc_fails(make_doc("d", "1", 1, 0, NULL), "\"expires_at\"", NULL);
	doc_fails("{\"version\": 1, \"device\": \"d\", \"zones\": [1], "
		  "\"issued_at\": \"2026-11-23T10:40:00Z\", \"expires_at\": 2}",
		  "\"issued_at\"", "integer");
	doc_fails("{\"version\": 1, \"device\": \"d\", \"zones\": [1], \"issued_at\": 1, "
		  "\"expires_at\": 2.0}",
		  "\"expires_at\"", "integer");
	doc_fails("{\"version\": 1, \"device\": \"d\", \"zones\": [1], \"issued_at\": 1, "
		  "\"expires_at\": null}",
		  "\"expires_at\"", "null");
}
END_TEST

START_TEST(test_doc_nonce)
{
	char hex[140];

	doc_fails(make_doc("d", "1", 1, 2, ""), "\"nonce\"", "hex");
	/* 15 and 65 bytes. */
	memset(hex, 'a', 130);
	hex[30] = '\0';
	doc_fails(make_doc("d", "1", 1, 2, hex), "\"nonce\"", "16 to 64 bytes");
	hex[30] = 'a';
	hex[130] = '\0';
	doc_fails(make_doc("d", "1", 1, 2, hex), "\"nonce\"", "16 to 64 bytes");
	/* Odd, not hex, decorated. */
	hex[33] = '\0';
	doc_fails(make_doc("d", "1", 1, 2, hex), "\"nonce\"", NULL);
	memcpy(hex, "0x", 2);
	hex[32] = '\0';
	doc_fails(make_doc("d", "1", 1, 2, hex), "\"nonce\"", NULL);
	memcpy(hex, "zz", 2);
	doc_fails(make_doc("d", "1", 1, 2, hex), "\"nonce\"", NULL);
	memcpy(hex, "a ", 2);
	doc_fails(make_doc("d", "1", 1, 2, hex), "\"nonce\"", NULL);
	memcpy(hex, "aa", 2);
	hex[31] = ':';
	doc_fails(make_doc("d", "1", 1, 2, hex), "\"nonce\"", NULL);
	doc_fails("{\"version\": 1, " REST ", \"nonce\": 12345678901234567890}", "\"nonce\"",
		  "string");
	doc_fails("{\"version\": 1, " REST ", \"nonce\": null}", "\"nonce\"", "null");
}
END_TEST

START_TEST(test_parse_arguments)
{
	ev_attest_result *r = (ev_attest_result *)1;
	unsigned char *big;
	char err[256] = "";

	ck_assert_uint_eq(
	    ev_attest_result_parse((const unsigned char *)"{}", 2, NULL, err, sizeof(err)),
	    CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(ev_attest_result_parse(NULL, 1, &r, err, sizeof(err)), CKR_ARGUMENTS_BAD);
	ck_assert_ptr_null(r);
	/* Over the limit, whatever the bytes. */
	big = calloc(1, EV_ATTEST_MAX_FILE + 1);
	ck_assert_ptr_nonnull(big);
	r = (ev_attest_result *)1;
	ck_assert_uint_eq(ev_attest_result_parse(big, EV_ATTEST_MAX_FILE + 1, &r, err, sizeof(err)),
			  CKR_DATA_LEN_RANGE);
	ck_assert_ptr_null(r);
	ck_assert_err_has(err, "limit");
	free(big);
}
END_TEST

/* ---- the envelope ---- */

START_TEST(test_load)
{
	unsigned char pk[32], want[32];
	ev_secret *seed = new_key(pk);
	ev_attest_result *r = NULL;
	char err[256] = "", *env;
	size_t len;

	env = envelope(make_doc("edge-0042", "1, 2", ISSUED, ISSUED + 3600, NULL),
		       EV_SIGNED_ATTESTATION, seed, &len);
	ck_assert_msg(ev_attest_result_load((unsigned char *)env, len, pk, &r, err, sizeof(err)) ==
			  CKR_OK,
		      "%s", err);
	ck_assert_str_eq(r->device, "edge-0042");
	ck_assert_uint_eq(r->nzones, 2);
	/* The digest is of the envelope's bytes. */
	crypto_generichash(want, 32, (unsigned char *)env, len, NULL, 0);
	ck_assert_mem_eq(r->digest, want, 32);
	ev_attest_result_free(r);
	free(env);
	ev_secret_free(seed);
}
END_TEST

START_TEST(test_load_refused)
{
	unsigned char pk[32], pk2[32];
	ev_secret *seed = new_key(pk), *seed2 = new_key(pk2);
	ev_attest_result *r = (ev_attest_result *)1;
	char err[256] = "", *env, *env2, *p, *q;
	const char *doc = make_doc("edge-0042", "1", ISSUED, ISSUED + 3600, NULL);
	size_t len, len2;

	env = envelope(doc, EV_SIGNED_ATTESTATION, seed, &len);

	/* Another verifier's key. */
	ck_assert_uint_eq(
	    ev_attest_result_load((unsigned char *)env, len, pk2, &r, err, sizeof(err)),
	    CKR_SIGNATURE_INVALID);
	ck_assert_ptr_null(r);
	ck_assert_err_has(err, "signature");

	/* Tampered: another document's payload under this signature (zone 1 made 2). */
	env2 = envelope(make_doc("edge-0042", "2", ISSUED, ISSUED + 3600, NULL),
			EV_SIGNED_ATTESTATION, seed2, &len2);
	p = strstr(env, "\"payload\": \"");
	q = strstr(env2, "\"payload\": \"");
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_nonnull(q);
	p += 12;
	q += 12;
	ck_assert_uint_eq(strcspn(p, "\""), strcspn(q, "\""));
	memcpy(p, q, strcspn(q, "\""));
	r = (ev_attest_result *)1;
	ck_assert_uint_eq(
	    ev_attest_result_load((unsigned char *)env, len, pk, &r, err, sizeof(err)),
	    CKR_SIGNATURE_INVALID);
	ck_assert_ptr_null(r);
	free(env);
	free(env2);

	/* A revocation list's envelope is not a result. */
	env = envelope(doc, EV_SIGNED_REVOCATION, seed, &len);
	r = (ev_attest_result *)1;
	ck_assert_uint_eq(
	    ev_attest_result_load((unsigned char *)env, len, pk, &r, err, sizeof(err)),
	    CKR_DATA_INVALID);
	ck_assert_ptr_null(r);
	ck_assert_err_has(err, "type");
	free(env);

	/* Signed, but malformed: refused, naming the member. */
	env = envelope("{\"version\": 1, \"device\": \"edge-0042\", \"zones\": [1], "
		       "\"issued_at\": 10, \"expires_at\": 10}",
		       EV_SIGNED_ATTESTATION, seed, &len);
	r = (ev_attest_result *)1;
	ck_assert_uint_eq(
	    ev_attest_result_load((unsigned char *)env, len, pk, &r, err, sizeof(err)),
	    CKR_DATA_INVALID);
	ck_assert_ptr_null(r);
	ck_assert_err_has(err, "\"expires_at\"");
	free(env);

	/* Not an envelope at all. */
	r = (ev_attest_result *)1;
	ck_assert_uint_eq(ev_attest_result_load((const unsigned char *)doc, strlen(doc), pk, &r,
						err, sizeof(err)),
			  CKR_DATA_INVALID);
	ck_assert_ptr_null(r);
	ck_assert_uint_eq(ev_attest_result_load((const unsigned char *)doc, strlen(doc), pk, NULL,
						err, sizeof(err)),
			  CKR_ARGUMENTS_BAD);
	ev_secret_free(seed);
	ev_secret_free(seed2);
}
END_TEST

/* ---- the rules ---- */

struct fixture {
	ev_config cfg;
	ev_policy policy;
	ev_attest_ctx ctx;
	unsigned char nonce[32];
};

/* Device "edge-0042", zone 1, skew 60, max age 3600, no nonce required or issued, now ISSUED. */
static void
fixture_init(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->cfg.attest = EV_ATTEST_RESULT;
	f->cfg.clock_skew = 60;
	f->policy.require_attestation = 1;
	f->policy.max_evidence_age = 3600;
	f->ctx.cfg = &f->cfg;
	f->ctx.device = "edge-0042";
	f->ctx.zone = 1;
	f->ctx.now = ISSUED;
	f->ctx.policy = &f->policy;
	randombytes_buf(f->nonce, sizeof(f->nonce));
}

/* Appraise a document at now; the verdict's reason must hold must (refused) or be accepted. */
static void
check_doc(const char *doc, const ev_attest_ctx *ctx, ev_verdict *v)
{
	ev_attest_result *r = parse_ok(doc);

	memset(r->digest, 0xd1, sizeof(r->digest));
	memset(v, 0xee, sizeof(*v));
	ev_attest_check(r, ctx, v);
	ev_attest_result_free(r);
	/* Whatever the outcome, the verdict names the evidence. */
	for (size_t i = 0; i < sizeof(v->digest); i++)
		ck_assert_uint_eq(v->digest[i], 0xd1);
	ck_assert_msg(memchr(v->reason, '\0', sizeof(v->reason)) != NULL, "reason not terminated");
	ck_assert_msg(v->reason[0] != '\0', "no reason");
}

static void
accepted(const char *doc, const ev_attest_ctx *ctx, int64_t valid_until)
{
	ev_verdict v;

	check_doc(doc, ctx, &v);
	ck_assert_msg(v.accepted == 1, "refused at %lld: %s", (long long)ctx->now, v.reason);
	ck_assert_int_eq(v.valid_until, valid_until);
}

static void
refused(const char *doc, const ev_attest_ctx *ctx, const char *why)
{
	ev_verdict v;

	check_doc(doc, ctx, &v);
	ck_assert_msg(v.accepted == 0, "accepted at %lld: %s", (long long)ctx->now, v.reason);
	ck_assert_int_eq(v.valid_until, 0);
	ck_assert_err_has(v.reason, why);
}

START_TEST(test_check_accepted)
{
	struct fixture f;
	ev_verdict v;

	fixture_init(&f);
	/* Good until issued_at + max_evidence_age when that comes first... */
	accepted(make_doc("edge-0042", "1, 2", ISSUED, ISSUED + 7200, NULL), &f.ctx, ISSUED + 3600);
	check_doc(make_doc("edge-0042", "1, 2", ISSUED, ISSUED + 7200, NULL), &f.ctx, &v);
	ck_assert_err_has(v.reason, "2026-11-23T11:40:00Z");
	/* ... else until it expires. */
	accepted(make_doc("edge-0042", "2, 1", ISSUED, ISSUED + 1800, NULL), &f.ctx, ISSUED + 1800);
	/* Another zone of the same evidence. */
	f.ctx.zone = 2;
	accepted(make_doc("edge-0042", "1, 2", ISSUED - 100, ISSUED + 1800, NULL), &f.ctx,
		 ISSUED + 1800);
}
END_TEST

START_TEST(test_check_device)
{
	struct fixture f;
	char device[256], want[80];

	fixture_init(&f);
	refused(make_doc("edge-0043", "1", ISSUED, ISSUED + 60, NULL), &f.ctx,
		"for device \"edge-0043\", not this one");
	/* Exactly: neither a prefix nor an extension. */
	refused(make_doc("edge-004", "1", ISSUED, ISSUED + 60, NULL), &f.ctx, "not this one");
	refused(make_doc("edge-00420", "1", ISSUED, ISSUED + 60, NULL), &f.ctx, "not this one");
	refused(make_doc("EDGE-0042", "1", ISSUED, ISSUED + 60, NULL), &f.ctx, "not this one");
	/* A long id is shortened in the reason. */
	memset(device, 'x', 255);
	device[255] = '\0';
	snprintf(want, sizeof(want), "\"%.48s...\"", device);
	refused(make_doc(device, "1", ISSUED, ISSUED + 60, NULL), &f.ctx, want);
}
END_TEST

START_TEST(test_check_zone)
{
	struct fixture f;

	fixture_init(&f);
	f.ctx.zone = 3;
	refused(make_doc("edge-0042", "1, 2", ISSUED, ISSUED + 60, NULL), &f.ctx,
		"does not admit zone 3");
	f.ctx.zone = 9007199254740992LL;
	accepted(make_doc("edge-0042", SAFE_MAX, ISSUED, ISSUED + 60, NULL), &f.ctx, ISSUED + 60);
}
END_TEST

START_TEST(test_check_future)
{
	struct fixture f;
	const char *doc;

	fixture_init(&f);
	/* Issued clock_skew ahead of now: accepted; one second more: not. */
	doc = make_doc("edge-0042", "1", ISSUED, ISSUED + 600, NULL);
	f.ctx.now = ISSUED - 60;
	accepted(doc, &f.ctx, ISSUED + 600);
	f.ctx.now = ISSUED - 61;
	refused(doc, &f.ctx, "issued in the future");
	/* No skew allowed. */
	f.cfg.clock_skew = 0;
	f.ctx.now = ISSUED;
	accepted(doc, &f.ctx, ISSUED + 600);
	f.ctx.now = ISSUED - 1;
	refused(doc, &f.ctx, "issued in the future");
}
END_TEST

START_TEST(test_check_expired)
{
	struct fixture f;
	const char *doc;

	fixture_init(&f);
	doc = make_doc("edge-0042", "1", ISSUED, ISSUED + 600, NULL);
	f.ctx.now = ISSUED + 599;
	accepted(doc, &f.ctx, ISSUED + 600);
	/* At its exact expiry, it is expired. */
	f.ctx.now = ISSUED + 600;
	refused(doc, &f.ctx, "expired at 2026-11-23T10:50:00Z");
	f.ctx.now = ISSUED + 100000;
	refused(doc, &f.ctx, "expired at");
}
END_TEST

START_TEST(test_check_stale)
{
	struct fixture f;
	const char *doc;

	fixture_init(&f);
	doc = make_doc("edge-0042", "1", ISSUED, ISSUED + 86400, NULL);
	f.ctx.now = ISSUED + 3599;
	accepted(doc, &f.ctx, ISSUED + 3600);
	/* At issued_at + max_evidence_age, it is stale. */
	f.ctx.now = ISSUED + 3600;
	refused(doc, &f.ctx, "stale");
	/* The zone's own policy decides. */
	f.policy.max_evidence_age = 60;
	f.ctx.now = ISSUED + 59;
	accepted(doc, &f.ctx, ISSUED + 60);
	f.ctx.now = ISSUED + 60;
	refused(doc, &f.ctx, "stale");
	/* Issued just ahead (within the skew): its age counts from issued_at. */
	f.ctx.now = ISSUED - 30;
	accepted(doc, &f.ctx, ISSUED + 60);
}
END_TEST

START_TEST(test_check_nonce)
{
	struct fixture f;
	char hex[65], hex16[33], other[65];

	fixture_init(&f);
	sodium_bin2hex(hex, sizeof(hex), f.nonce, 32);
	sodium_bin2hex(hex16, sizeof(hex16), f.nonce, 16);

	/* The device's current nonce: accepted, required or not, in either case of hex. */
	f.ctx.nonce = f.nonce;
	f.ctx.nonce_len = 32;
	accepted(make_doc("edge-0042", "1", ISSUED, ISSUED + 60, hex), &f.ctx, ISSUED + 60);
	f.policy.require_nonce = 1;
	accepted(make_doc("edge-0042", "1", ISSUED, ISSUED + 60, hex), &f.ctx, ISSUED + 60);
	for (size_t i = 0; hex[i] != '\0'; i++)
		if (hex[i] >= 'a' && hex[i] <= 'f')
			hex[i] = (char)(hex[i] - 'a' + 'A');
	accepted(make_doc("edge-0042", "1", ISSUED, ISSUED + 60, hex), &f.ctx, ISSUED + 60);

	/* Another nonce (one byte off), or a prefix of the right one. */
	memcpy(other, hex, sizeof(other));
	other[63] = other[63] == '0' ? '1' : '0';
	refused(make_doc("edge-0042", "1", ISSUED, ISSUED + 60, other), &f.ctx,
		"nonce does not match the device's current nonce");
	refused(make_doc("edge-0042", "1", ISSUED, ISSUED + 60, hex16), &f.ctx,
		"nonce does not match");
	f.policy.require_nonce = 0;
	refused(make_doc("edge-0042", "1", ISSUED, ISSUED + 60, other), &f.ctx,
		"nonce does not match");

	/* Required but absent. */
	f.policy.require_nonce = 1;
	refused(make_doc("edge-0042", "1", ISSUED, ISSUED + 60, NULL), &f.ctx,
		"no nonce, and zone 1 requires one");
	/* Not required, absent: accepted though the device has a nonce. */
	f.policy.require_nonce = 0;
	accepted(make_doc("edge-0042", "1", ISSUED, ISSUED + 60, NULL), &f.ctx, ISSUED + 60);

	/* Present, but the device never issued one. */
	f.ctx.nonce = NULL;
	f.ctx.nonce_len = 0;
	refused(make_doc("edge-0042", "1", ISSUED, ISSUED + 60, hex), &f.ctx, "issued none");
	f.policy.require_nonce = 1;
	refused(make_doc("edge-0042", "1", ISSUED, ISSUED + 60, NULL), &f.ctx, "requires one");
}
END_TEST

START_TEST(test_check_order_and_nulls)
{
	struct fixture f;
	ev_verdict v;

	fixture_init(&f);
	/* The device is checked first: a foreign result says so, whatever else is wrong. */
	f.ctx.now = ISSUED + 100000;
	refused(make_doc("other", "5", ISSUED, ISSUED + 60, NULL), &f.ctx, "not this one");

	/* No evidence, no context: refused, never a crash. */
	memset(&v, 0xee, sizeof(v));
	ev_attest_check(NULL, &f.ctx, &v);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_int_eq(v.valid_until, 0);
	ck_assert_err_has(v.reason, "no evidence");
	fixture_init(&f);
	f.ctx.policy = NULL;
	memset(&v, 0xee, sizeof(v));
	{
		ev_attest_result *r =
		    parse_ok(make_doc("edge-0042", "1", ISSUED, ISSUED + 60, NULL));

		ev_attest_check(r, &f.ctx, &v);
		ck_assert_int_eq(v.accepted, 0);
		ev_attest_check(r, NULL, &v);
		ck_assert_int_eq(v.accepted, 0);
		ev_attest_check(r, &f.ctx, NULL);
		ev_attest_result_free(r);
	}
}
END_TEST

/* ---- the "result" provider ---- */

START_TEST(test_provider_of)
{
	ev_config cfg;
	const ev_attest_provider *p;

	memset(&cfg, 0, sizeof(cfg));
	cfg.attest = EV_ATTEST_NONE;
	ck_assert_ptr_null(ev_attest_provider_of(&cfg));
	ck_assert_ptr_null(ev_attest_provider_of(NULL));
	cfg.attest = EV_ATTEST_RESULT;
	p = ev_attest_provider_of(&cfg);
	ck_assert_ptr_nonnull(p);
	ck_assert_str_eq(p->name, "result");
	ck_assert_ptr_nonnull(p->appraise);
}
END_TEST

/* The provider's fixture: the verifier's key pinned, the result file in tmpdir. */
struct pfixture {
	struct fixture f;
	ev_secret *seed;
	char path[400];
};

static void
pfixture_init(struct pfixture *p)
{
	fixture_init(&p->f);
	p->seed = new_key(p->f.cfg.verifier_key);
	p->f.cfg.has_verifier_key = 1;
	snprintf(p->path, sizeof(p->path), "%s", path_of("result.json"));
	p->f.cfg.attest_result_path = p->path;
}

/* Sign a document with the fixture's key and write it as the result file; its digest. */
static void
publish(struct pfixture *p, const char *doc, const ev_secret *seed, unsigned char digest[32])
{
	char *env;
	size_t len;

	env = envelope(doc, EV_SIGNED_ATTESTATION, seed != NULL ? seed : p->seed, &len);
	write_file("result.json", env, len);
	if (digest != NULL)
		crypto_generichash(digest, 32, (unsigned char *)env, len, NULL, 0);
	free(env);
}

/* Appraise with the result provider: CKR_OK always here. */
static void
appraise(const struct pfixture *p, ev_verdict *v)
{
	const ev_attest_provider *prov = ev_attest_provider_of(&p->f.cfg);

	ck_assert_ptr_nonnull(prov);
	memset(v, 0xee, sizeof(*v));
	ck_assert_uint_eq(prov->appraise(&p->f.ctx, v), CKR_OK);
	ck_assert_msg(memchr(v->reason, '\0', sizeof(v->reason)) != NULL, "reason not terminated");
	if (!v->accepted)
		ck_assert_int_eq(v->valid_until, 0);
}

START_TEST(test_provider_good)
{
	struct pfixture p;
	unsigned char digest[32];
	ev_verdict v;

	pfixture_init(&p);
	publish(&p, make_doc("edge-0042", "1", ISSUED, ISSUED + 600, NULL), NULL, digest);
	appraise(&p, &v);
	ck_assert_msg(v.accepted == 1, "%s", v.reason);
	ck_assert_int_eq(v.valid_until, ISSUED + 600);
	ck_assert_mem_eq(v.digest, digest, 32);

	/* The rules apply to what the file says: another zone is refused. */
	p.f.ctx.zone = 2;
	appraise(&p, &v);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_err_has(v.reason, "does not admit zone 2");
	ck_assert_mem_eq(v.digest, digest, 32);

	/* With the device's nonce. */
	{
		char hex[65];

		sodium_bin2hex(hex, sizeof(hex), p.f.nonce, 32);
		p.f.ctx.zone = 1;
		p.f.ctx.nonce = p.f.nonce;
		p.f.ctx.nonce_len = 32;
		p.f.policy.require_nonce = 1;
		appraise(&p, &v);
		ck_assert_int_eq(v.accepted, 0);
		ck_assert_err_has(v.reason, "requires one");
		publish(&p, make_doc("edge-0042", "1", ISSUED, ISSUED + 600, hex), NULL, NULL);
		appraise(&p, &v);
		ck_assert_msg(v.accepted == 1, "%s", v.reason);
	}
	ev_secret_free(p.seed);
}
END_TEST

START_TEST(test_provider_missing)
{
	struct pfixture p;
	char want[500];
	ev_verdict v;
	static const unsigned char zero[32];

	pfixture_init(&p);
	appraise(&p, &v);
	ck_assert_int_eq(v.accepted, 0);
	snprintf(want, sizeof(want), "no evidence at %s", p.path);
	ck_assert_str_eq(v.reason, want);
	ck_assert_mem_eq(v.digest, zero, 32);

	/* A directory on the way that does not exist either. */
	snprintf(p.path, sizeof(p.path), "%s", path_of("nodir/result.json"));
	appraise(&p, &v);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_err_has(v.reason, "no evidence at");
	ev_secret_free(p.seed);
}
END_TEST

START_TEST(test_provider_not_configured)
{
	struct pfixture p;
	ev_verdict v;

	pfixture_init(&p);
	publish(&p, make_doc("edge-0042", "1", ISSUED, ISSUED + 600, NULL), NULL, NULL);
	p.f.cfg.has_verifier_key = 0;
	appraise(&p, &v);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_err_has(v.reason, "verifier_key");
	p.f.cfg.has_verifier_key = 1;
	p.f.cfg.attest_result_path = NULL;
	appraise(&p, &v);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_err_has(v.reason, "result_path");
	/* Bad calls are the machinery's failure, not a refusal. */
	ck_assert_uint_eq(ev_attest_provider_of(&p.f.cfg)->appraise(&p.f.ctx, NULL),
			  CKR_ARGUMENTS_BAD);
	ck_assert_uint_eq(ev_attest_provider_of(&p.f.cfg)->appraise(NULL, &v), CKR_ARGUMENTS_BAD);
	ck_assert_int_eq(v.accepted, 0);
	ev_secret_free(p.seed);
}
END_TEST

START_TEST(test_provider_size)
{
	struct pfixture p;
	unsigned char *big;
	ev_verdict v;

	pfixture_init(&p);
	big = malloc(EV_ATTEST_MAX_FILE + 1);
	ck_assert_ptr_nonnull(big);
	memset(big, ' ', EV_ATTEST_MAX_FILE + 1);
	write_file("result.json", big, EV_ATTEST_MAX_FILE + 1);
	appraise(&p, &v);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_err_has(v.reason, "over the limit");
	/* At the limit it is read (and refused for what it is, not for its size). */
	write_file("result.json", big, EV_ATTEST_MAX_FILE);
	appraise(&p, &v);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_msg(strstr(v.reason, "over the limit") == NULL, "%s", v.reason);
	ck_assert_err_has(v.reason, "JSON");
	/* Empty. */
	write_file("result.json", "", 0);
	appraise(&p, &v);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_err_has(v.reason, "JSON");
	free(big);
	ev_secret_free(p.seed);
}
END_TEST

START_TEST(test_provider_bad_signature)
{
	struct pfixture p;
	unsigned char pk2[32], digest[32];
	ev_secret *other = new_key(pk2);
	ev_verdict v;

	pfixture_init(&p);
	/* Signed by someone else. */
	publish(&p, make_doc("edge-0042", "1", ISSUED, ISSUED + 600, NULL), other, digest);
	appraise(&p, &v);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_err_has(v.reason, "signature does not verify");
	/* The refused file is still named by its digest. */
	ck_assert_mem_eq(v.digest, digest, 32);

	/* Well signed, but malformed. */
	publish(&p,
		"{\"version\": 1, \"device\": \"edge-0042\", \"zones\": [0], "
		"\"issued_at\": 1, \"expires_at\": 2}",
		NULL, NULL);
	appraise(&p, &v);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_err_has(v.reason, "\"zones\"[0]");

	/* Not an envelope. */
	write_file("result.json", "{\"version\": 1}", 14);
	appraise(&p, &v);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_err_has(v.reason, "envelope");
	ev_secret_free(other);
	ev_secret_free(p.seed);
}
END_TEST

START_TEST(test_provider_file_kinds)
{
	struct pfixture p;
	char link[400];
	ev_verdict v;

	pfixture_init(&p);
	/* A directory, a FIFO (must not hang): not regular files. */
	ck_assert_int_eq(mkdir(p.path, 0700), 0);
	appraise(&p, &v);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_err_has(v.reason, "not a regular file");
	ck_assert_int_eq(rmdir(p.path), 0);
	ck_assert_int_eq(mkfifo(p.path, 0600), 0);
	appraise(&p, &v);
	ck_assert_int_eq(v.accepted, 0);
	ck_assert_err_has(v.reason, "not a regular file");
	ck_assert_int_eq(unlink(p.path), 0);

	/* A symbolic link to good evidence is followed (the signature is what counts). */
	publish(&p, make_doc("edge-0042", "1", ISSUED, ISSUED + 600, NULL), NULL, NULL);
	snprintf(link, sizeof(link), "%s", path_of("link.json"));
	ck_assert_int_eq(symlink(p.path, link), 0);
	snprintf(p.path, sizeof(p.path), "%s", link);
	appraise(&p, &v);
	ck_assert_msg(v.accepted == 1, "%s", v.reason);

	/* Unreadable (root reads anything: skipped there). */
	if (geteuid() != 0) {
		snprintf(p.path, sizeof(p.path), "%s", path_of("result.json"));
		ck_assert_int_eq(chmod(p.path, 0), 0);
		appraise(&p, &v);
		ck_assert_int_eq(v.accepted, 0);
		ck_assert_err_has(v.reason, "cannot read evidence at");
	}
	ev_secret_free(p.seed);
}
END_TEST

static Suite *
attest_suite(void)
{
	Suite *s = suite_create("attest");
	TCase *td = tcase_create("document");
	TCase *tr = tcase_create("rules");
	TCase *tp = tcase_create("provider");

	tcase_add_checked_fixture(td, setup, tmpdir_remove);
	tcase_add_test(td, test_parse_full);
	tcase_add_test(td, test_parse_limits_accepted);
	tcase_add_test(td, test_doc_version);
	tcase_add_test(td, test_doc_members);
	tcase_add_test(td, test_doc_device);
	tcase_add_test(td, test_doc_zones);
	tcase_add_test(td, test_doc_times);
	tcase_add_test(td, test_doc_nonce);
	tcase_add_test(td, test_parse_arguments);
	tcase_add_test(td, test_load);
	tcase_add_test(td, test_load_refused);
	suite_add_tcase(s, td);

	tcase_add_checked_fixture(tr, setup, tmpdir_remove);
	tcase_add_test(tr, test_check_accepted);
	tcase_add_test(tr, test_check_device);
	tcase_add_test(tr, test_check_zone);
	tcase_add_test(tr, test_check_future);
	tcase_add_test(tr, test_check_expired);
	tcase_add_test(tr, test_check_stale);
	tcase_add_test(tr, test_check_nonce);
	tcase_add_test(tr, test_check_order_and_nulls);
	suite_add_tcase(s, tr);

	tcase_add_checked_fixture(tp, setup, tmpdir_remove);
	tcase_add_test(tp, test_provider_of);
	tcase_add_test(tp, test_provider_good);
	tcase_add_test(tp, test_provider_missing);
	tcase_add_test(tp, test_provider_not_configured);
	tcase_add_test(tp, test_provider_size);
	tcase_add_test(tp, test_provider_bad_signature);
	tcase_add_test(tp, test_provider_file_kinds);
	suite_add_tcase(s, tp);
	return s;
}

int
main(void)
{
	return run_suite(attest_suite());
}
