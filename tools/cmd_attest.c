/*
 * edgevault attest: attestation evidence (doc/attestation.md).
 *
 *   edgevault attest keygen --out KEYFILE
 *   edgevault attest sign --key KEYFILE [--in DOC] [--out FILE]
 *   edgevault attest sign --key KEYFILE --device ID --zone N [--zone N ...]
 *       [--ttl SECONDS | --expires-at UNIX] [--issued-at UNIX] [--nonce HEX] [--out FILE]
 *   edgevault attest reference --key KEYFILE [--in DOC] [--out FILE]
 *   edgevault attest reference --key KEYFILE --device ID --pcrs N[,N...] --digest HEX
 *       --ak HEX --seq N [--zone N[,N...]] (--ttl SECONDS | --expires-at UNIX)
 *       [--issued-at UNIX] [--out FILE]
 *   edgevault [--config FILE] [--module FILE] attest nonce --zone N
 *   edgevault [--config FILE] [--module FILE] attest check --zone N [--json]
 *   edgevault [--config FILE] attest show [--json]
 *
 * `keygen`, `sign` and `reference` are for the verifier (or an operator, or a test),
 * off the device: they need neither configuration nor module. `nonce`
 * and `check` go through the module's admin interface, as applications
 * would; `show` reads the store read-only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attest.h"
#include "json.h"
#include "quote.h"
#include "store.h"
#include "tool.h"

/* JSON's interoperable integers: what a result's numbers may be. */
#define SAFE_MAX 9007199254740992UL

/* --ttl's default: one hour, the default max_evidence_age. */
#define DEFAULT_TTL 3600UL

static void
attest_usage(void)
{
	fprintf(stderr,
	    "usage: edgevault attest keygen --out KEYFILE\n"
	    "       edgevault attest sign --key KEYFILE [--in DOC] [--out FILE]\n"
	    "       edgevault attest sign --key KEYFILE --device ID --zone N [--zone N ...]\n"
	    "           [--ttl SECONDS | --expires-at UNIX] [--issued-at UNIX] [--nonce HEX]\n"
	    "           [--out FILE]\n"
	    "       edgevault attest reference --key KEYFILE [--in DOC] [--out FILE]\n"
	    "       edgevault attest reference --key KEYFILE --device ID --pcrs N[,N...]\n"
	    "           --digest HEX --ak HEX --seq N [--zone N[,N...]]\n"
	    "           (--ttl SECONDS | --expires-at UNIX) [--issued-at UNIX] [--out FILE]\n"
	    "       edgevault attest nonce --zone N\n"
	    "       edgevault attest check --zone N [--json]\n"
	    "       edgevault attest show [--json]\n");
}

static CK_RV
check_result(const unsigned char *doc, size_t len, void **parsed, char *err, size_t errlen)
{
	ev_attest_result *r = NULL;
	CK_RV rv;

	rv = ev_attest_result_parse(doc, len, &r, err, errlen);
	*parsed = r;
	return rv;
}

static const struct signed_kind attestation_results = {
	.keygen_cmd = "attest keygen",
	.config_key = "verifier_key",
	.key_name = "verifier signing key",
	.section = "attestation",
	.type = EV_SIGNED_ATTESTATION,
	.noun = "result",
	.max = EV_ATTEST_MAX_FILE,
	.check = check_result,
};

static CK_RV
check_reference(const unsigned char *doc, size_t len, void **parsed, char *err, size_t errlen)
{
	ev_tpm_reference *r = NULL;
	CK_RV rv;

	rv = ev_tpm_reference_parse(doc, len, &r, err, errlen);
	*parsed = r;
	return rv;
}

static const struct signed_kind reference_policies = {
	.keygen_cmd = "attest keygen",
	.config_key = "verifier_key",
	.key_name = "verifier signing key",
	.section = "attestation",
	.type = EV_SIGNED_TPM_REFERENCE,
	.noun = "reference policy",
	.max = EV_ATTEST_MAX_FILE,
	.check = check_reference,
};

/* Zones from one --zone value: "N" or "N,M,...", appended to *zones. 0, or -1 after saying why. */
static int
add_zones(const char *arg, int64_t **zones, size_t *n)
{
	unsigned long z;
	int64_t *nz;
	char *copy, *tok, *save = NULL;
	int rc = -1;

	copy = strdup(arg);
	if (copy == NULL) {
		fprintf(stderr, "edgevault: out of memory\n");
		return -1;
	}
	if (arg[0] == '\0' || arg[strlen(arg) - 1] == ',' || strstr(arg, ",,") != NULL) {
		fprintf(stderr, "edgevault: --zone %s: expected zone numbers, comma separated\n",
		    arg);
		goto out;
	}
	for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		if (parse_ulong(tok, 1, SAFE_MAX, &z) != 0) {
			fprintf(stderr, "edgevault: --zone %s: expected zone numbers (1 to %lu)\n",
			    arg, SAFE_MAX);
			goto out;
		}
		if (*n >= EV_ATTEST_MAX_ZONES) {
			fprintf(stderr, "edgevault: --zone: at most %u zones\n",
			    EV_ATTEST_MAX_ZONES);
			goto out;
		}
		nz = realloc(*zones, (*n + 1) * sizeof(**zones));
		if (nz == NULL) {
			fprintf(stderr, "edgevault: out of memory\n");
			goto out;
		}
		*zones = nz;
		(*zones)[(*n)++] = (int64_t)z;
	}
	rc = 0;
out:
	free(copy);
	return rc;
}

/* A document's start: {"version": 1, "device": "<device, escaped for JSON as it is>" */
static void
put_device(FILE *m, const char *device)
{
	const unsigned char *p;

	fprintf(m, "{\"version\": 1, \"device\": \"");
	for (p = (const unsigned char *)device; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(m, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(m, "\\u%04x", *p);
		else
			fputc(*p, m);
	}
	fputc('"', m);
}

/*
 * The end of a document built from fields in m, an open_memstream on *doc
 * and *n (set by fclose): the document and *len, or NULL (out of memory).
 */
static char *
close_doc(FILE *m, char **doc, size_t *n, size_t *len)
{
	fprintf(m, "}\n");
	if (fclose(m) != 0) {
		free(*doc);
		return NULL;
	}
	*len = *n;
	return *doc;
}

/*
 * The document the fields describe, malloc'ed. The device id is escaped
 * for JSON as it is; what a device would refuse in it (a control
 * character) is then refused by the parser, with its reason.
 */
static char *
fields_doc(const char *device, const int64_t *zones, size_t nzones, int64_t issued,
    int64_t expires, const char *nonce, size_t *len)
{
	char *doc = NULL;
	size_t n = 0, i;
	FILE *m;

	m = open_memstream(&doc, &n);
	if (m == NULL)
		return NULL;
	put_device(m, device);
	fprintf(m, ", \"zones\": [");
	for (i = 0; i < nzones; i++)
		fprintf(m, "%s%lld", i > 0 ? ", " : "", (long long)zones[i]);
	fprintf(m, "], \"issued_at\": %lld, \"expires_at\": %lld", (long long)issued,
	    (long long)expires);
	if (nonce != NULL)
		fprintf(m, ", \"nonce\": \"%s\"", nonce);
	return close_doc(m, &doc, &n, len);
}

/*
 * --issued-at (default: now), --ttl (default: ttl) or --expires-at: a
 * document's times. 0, or -1 after saying why.
 */
static int
doc_times(const char *issued_s, const char *ttl_s, const char *expires_s, unsigned long ttl,
    unsigned long *issued, unsigned long *expires)
{
	*issued = (unsigned long)time(NULL);
	if (issued_s != NULL && parse_ulong(issued_s, 0, SAFE_MAX, issued) != 0) {
		fprintf(stderr, "edgevault: --issued-at %s: expected unix time (seconds)\n",
		    issued_s);
		return -1;
	}
	if (ttl_s != NULL && parse_ulong(ttl_s, 1, SAFE_MAX, &ttl) != 0) {
		fprintf(stderr, "edgevault: --ttl %s: expected seconds (1 or more)\n", ttl_s);
		return -1;
	}
	*expires = *issued + ttl;
	if (expires_s != NULL && parse_ulong(expires_s, 0, SAFE_MAX, expires) != 0) {
		fprintf(stderr, "edgevault: --expires-at %s: expected unix time (seconds)\n",
		    expires_s);
		return -1;
	}
	return 0;
}

static void
sign_usage(void)
{
	fprintf(stderr,
	    "usage: edgevault attest sign --key KEYFILE [--in DOC] [--out FILE]\n"
	    "       edgevault attest sign --key KEYFILE --device ID --zone N [--zone N ...]\n"
	    "           [--ttl SECONDS | --expires-at UNIX] [--issued-at UNIX] [--nonce HEX]\n"
	    "           [--out FILE]\n");
}

static int
cmd_attest_sign(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "in", required_argument, NULL, 'i' },
		{ "out", required_argument, NULL, 'o' },
		{ "device", required_argument, NULL, 'd' },
		{ "zone", required_argument, NULL, 'z' },
		{ "ttl", required_argument, NULL, 't' },
		{ "expires-at", required_argument, NULL, 'e' },
		{ "issued-at", required_argument, NULL, 'a' },
		{ "nonce", required_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	const char *key = NULL, *in = NULL, *out = NULL, *device = NULL, *ttl_s = NULL;
	const char *expires_s = NULL, *issued_s = NULL, *nonce = NULL;
	unsigned char *doc = NULL;
	char t[32];
	int64_t *zones = NULL;
	void *parsed = NULL;
	ev_attest_result *r;
	unsigned long issued, expires;
	size_t nzones = 0, doclen = 0, i;
	int c, fields, rc = 1;

	sub_begin();
	while ((c = sub_option("attest sign", argc, argv, opts)) != -1) {
		switch (c) {
		case 'k':
			key = optarg;
			break;
		case 'i':
			in = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 'd':
			device = optarg;
			break;
		case 'z':
			if (add_zones(optarg, &zones, &nzones) != 0) {
				rc = 2;
				goto out;
			}
			break;
		case 't':
			ttl_s = optarg;
			break;
		case 'e':
			expires_s = optarg;
			break;
		case 'a':
			issued_s = optarg;
			break;
		case 'n':
			nonce = optarg;
			break;
		default:
			sign_usage();
			rc = 2;
			goto out;
		}
	}
	fields = device != NULL || nzones > 0 || ttl_s != NULL || expires_s != NULL ||
	    issued_s != NULL || nonce != NULL;
	if (key == NULL || optind != argc || (fields && in != NULL) ||
	    (fields && (device == NULL || nzones == 0)) || (ttl_s != NULL && expires_s != NULL)) {
		sign_usage();
		rc = 2;
		goto out;
	}
	if (fields) {
		if (doc_times(issued_s, ttl_s, expires_s, DEFAULT_TTL, &issued, &expires) != 0) {
			rc = 2;
			goto out;
		}
		if (nonce != NULL && (nonce[0] == '\0' ||
		    strspn(nonce, "0123456789abcdefABCDEF") != strlen(nonce))) {
			fprintf(stderr, "edgevault: --nonce: expected hex, two digits per byte\n");
			rc = 2;
			goto out;
		}
		doc = (unsigned char *)fields_doc(device, zones, nzones, (int64_t)issued,
		    (int64_t)expires, nonce, &doclen);
		if (doc == NULL) {
			fprintf(stderr, "edgevault: out of memory\n");
			goto out;
		}
	}
	if (sign_document(&attestation_results, key, in != NULL ? in : "-", doc, doclen, out,
	    &parsed) != 0)
		goto out;
	r = parsed;
	fprintf(stderr, "edgevault: signed attestation result for device \"");
	fputs(r->device, stderr);
	fprintf(stderr, "\", zone%s ", r->nzones == 1 ? "" : "s");
	for (i = 0; i < r->nzones && i < 8; i++)
		fprintf(stderr, "%s%lld", i > 0 ? "," : "", (long long)r->zones[i]);
	if (r->nzones > 8)
		fprintf(stderr, ",... (%zu)", r->nzones);
	fprintf(stderr, ", expires %s%s%s%s\n", iso_time(r->expires_at, t),
	    r->nonce_len > 0 ? ", with a nonce" : "", out ? ": " : "", out ? out : "");
	rc = 0;
out:
	ev_attest_result_free(parsed);
	free(doc);
	free(zones);
	return rc;
}

static void
reference_usage(void)
{
	fprintf(stderr,
	    "usage: edgevault attest reference --key KEYFILE [--in DOC] [--out FILE]\n"
	    "       edgevault attest reference --key KEYFILE --device ID --pcrs N[,N...]\n"
	    "           --digest HEX --ak HEX --seq N [--zone N[,N...]]\n"
	    "           (--ttl SECONDS | --expires-at UNIX) [--issued-at UNIX] [--out FILE]\n");
}

/* The reference policy the fields describe, malloc'ed (NULL: out of memory). */
static char *
reference_doc(const char *device, uint32_t pcrs, const char *digest, const char *ak,
    unsigned long long seq, const int64_t *zones, size_t nzones, int64_t issued, int64_t expires,
    size_t *len)
{
	char list[EV_PCR_LIST_MAX], *doc = NULL;
	size_t n = 0, i;
	FILE *m;

	m = open_memstream(&doc, &n);
	if (m == NULL)
		return NULL;
	put_device(m, device);
	fprintf(m, ", \"pcrs\": [%s], \"digest\": \"%s\", \"ak\": \"%s\", \"seq\": %llu",
	    ev_pcr_list_format(pcrs, list), digest, ak, seq);
	if (nzones > 0) {
		fprintf(m, ", \"zones\": [");
		for (i = 0; i < nzones; i++)
			fprintf(m, "%s%lld", i > 0 ? ", " : "", (long long)zones[i]);
		fputc(']', m);
	}
	fprintf(m, ", \"issued_at\": %lld, \"expires_at\": %lld", (long long)issued,
	    (long long)expires);
	return close_doc(m, &doc, &n, len);
}

static int
cmd_attest_reference(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "in", required_argument, NULL, 'i' },
		{ "out", required_argument, NULL, 'o' },
		{ "device", required_argument, NULL, 'd' },
		{ "pcrs", required_argument, NULL, 'p' },
		{ "digest", required_argument, NULL, 'g' },
		{ "ak", required_argument, NULL, 'n' },
		{ "seq", required_argument, NULL, 's' },
		{ "zone", required_argument, NULL, 'z' },
		{ "zones", required_argument, NULL, 'z' },
		{ "ttl", required_argument, NULL, 't' },
		{ "expires-at", required_argument, NULL, 'e' },
		{ "issued-at", required_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 },
	};
	const char *key = NULL, *in = NULL, *out = NULL, *device = NULL, *pcrs_s = NULL;
	const char *digest = NULL, *ttl_s = NULL, *expires_s = NULL, *issued_s = NULL;
	const char *ak = NULL, *seq_s = NULL;
	char t[32], list[EV_PCR_LIST_MAX], *end;
	unsigned long long seq = 0;
	unsigned char *doc = NULL;
	int64_t *zones = NULL;
	void *parsed = NULL;
	ev_tpm_reference *r;
	unsigned long issued, expires;
	uint32_t pcrs = 0;
	size_t nzones = 0, doclen = 0;
	int c, fields, rc = 1;

	sub_begin();
	while ((c = sub_option("attest reference", argc, argv, opts)) != -1) {
		switch (c) {
		case 'k':
			key = optarg;
			break;
		case 'i':
			in = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 'd':
			device = optarg;
			break;
		case 'p':
			pcrs_s = optarg;
			break;
		case 'g':
			digest = optarg;
			break;
		case 'n':
			ak = optarg;
			break;
		case 's':
			seq_s = optarg;
			break;
		case 'z':
			if (add_zones(optarg, &zones, &nzones) != 0) {
				rc = 2;
				goto out;
			}
			break;
		case 't':
			ttl_s = optarg;
			break;
		case 'e':
			expires_s = optarg;
			break;
		case 'a':
			issued_s = optarg;
			break;
		default:
			reference_usage();
			rc = 2;
			goto out;
		}
	}
	fields = device != NULL || pcrs_s != NULL || digest != NULL || ak != NULL ||
	    seq_s != NULL || nzones > 0 || ttl_s != NULL || expires_s != NULL || issued_s != NULL;
	if (key == NULL || optind != argc || (fields && in != NULL) ||
	    (fields && (device == NULL || pcrs_s == NULL || digest == NULL || ak == NULL ||
	    seq_s == NULL)) ||
	    (fields && (ttl_s == NULL) == (expires_s == NULL))) {
		reference_usage();
		rc = 2;
		goto out;
	}
	if (fields) {
		if (ev_pcr_list_parse(pcrs_s, &pcrs) != 0) {
			fprintf(stderr, "edgevault: --pcrs %s: expected PCR indexes from 0 to %d, "
			    "comma separated, none twice\n", pcrs_s, EV_PCR_COUNT - 1);
			rc = 2;
			goto out;
		}
		if (strlen(digest) != 2 * EV_QUOTE_DIGEST_LEN ||
		    strspn(digest, "0123456789abcdefABCDEF") != strlen(digest)) {
			fprintf(stderr, "edgevault: --digest: expected the hex of a SHA-256 digest "
			    "(64 digits)\n");
			rc = 2;
			goto out;
		}
		if (strlen(ak) != 2 * EV_QUOTE_AK_NAME_LEN || strncmp(ak, "000b", 4) != 0 ||
		    strspn(ak, "0123456789abcdefABCDEF") != strlen(ak)) {
			fprintf(stderr, "edgevault: --ak: expected the hex of the attestation key's "
			    "TPM name (68 digits, 000b...: `edgevault attest check` names it)\n");
			rc = 2;
			goto out;
		}
		errno = 0;
		seq = strtoull(seq_s, &end, 10);
		if (seq_s[0] < '1' || seq_s[0] > '9' || *end != '\0' || errno != 0 ||
		    seq > (unsigned long long)EV_JSON_SAFE_MAX) {
			fprintf(stderr, "edgevault: --seq %s: expected 1 to %lld, above the last "
			    "reference's\n", seq_s, (long long)EV_JSON_SAFE_MAX);
			rc = 2;
			goto out;
		}
		if (doc_times(issued_s, ttl_s, expires_s, 1, &issued, &expires) != 0) {
			rc = 2;
			goto out;
		}
		doc = (unsigned char *)reference_doc(device, pcrs, digest, ak, seq, zones, nzones,
		    (int64_t)issued, (int64_t)expires, &doclen);
		if (doc == NULL) {
			fprintf(stderr, "edgevault: out of memory\n");
			goto out;
		}
	}
	if (sign_document(&reference_policies, key, in != NULL ? in : "-", doc, doclen, out,
	    &parsed) != 0)
		goto out;
	r = parsed;
	fprintf(stderr, "edgevault: signed TPM reference policy for device \"");
	fputs(r->scope.device, stderr);
	fprintf(stderr, "\", PCRs %s, seq %lld, %s, expires %s%s%s\n",
	    ev_pcr_list_format(r->pcrs, list), (long long)r->seq, r->scope.nzones > 0 ? "some zones" : "every zone",
	    iso_time(r->scope.expires_at, t), out ? ": " : "", out ? out : "");
	rc = 0;
out:
	ev_tpm_reference_free(parsed);
	free(doc);
	free(zones);
	return rc;
}

/* --zone N of nonce and check. 0, or 2 after saying why. */
static int
zone_only(const char *cmd, int argc, char **argv, int allow_json, unsigned long *zone)
{
	static const struct option opts[] = {
		{ "zone", required_argument, NULL, 'z' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	const char *zone_s = NULL;
	int c;

	sub_begin();
	while ((c = sub_option(cmd, argc, argv, opts)) != -1) {
		if (c == 'z')
			zone_s = optarg;
		else if (c == 'j' && allow_json)
			json = 1;
		else {
			if (c == 'j')
				fprintf(stderr, "edgevault %s: --json: unknown option\n", cmd);
			return 2;
		}
	}
	if (zone_s == NULL || optind != argc) {
		fprintf(stderr, "usage: edgevault %s --zone N%s\n", cmd,
		    allow_json ? " [--json]" : "");
		return 2;
	}
	return parse_zone(zone_s, zone);
}

/*
 * The module, its admin interface with the 1.1 functions, and a
 * read-only session on the zone. 0, or 1 after saying why (whatever was
 * opened is in *f and *h for the caller to close).
 */
static int
open_zone(unsigned long zone, CK_FUNCTION_LIST_3_0 **f, void **dl, EV_ADMIN_FUNCTION_LIST **admin,
    CK_SESSION_HANDLE *h)
{
	*f = open_module(dl);
	if (*f == NULL)
		return 1;
	*admin = admin_interface();
	if (*admin == NULL)
		return 1;
	if ((*admin)->version.minor < 1 || (*admin)->EV_Attest == NULL ||
	    (*admin)->EV_NewNonce == NULL) {
		fprintf(stderr, "edgevault: the module's admin interface (%u.%u) has no "
		    "attestation functions (1.1 has)\n", (*admin)->version.major,
		    (*admin)->version.minor);
		return 1;
	}
	return open_zone_session(*f, zone, 0, CKU_USER, NULL, h) == CKR_OK ? 0 : 1;
}

static void
close_zone(CK_FUNCTION_LIST_3_0 *f, void *dl, CK_SESSION_HANDLE h)
{
	if (f == NULL)
		return;
	/* Nobody logged in: closed only. */
	if (h != CK_INVALID_HANDLE) {
		CK_RV rv = f->C_CloseSession(h);

		if (rv != CKR_OK)
			fprintf(stderr, "edgevault: warning: C_CloseSession: %s\n", ckr_name(rv));
	}
	close_module(f, dl);
}

static int
cmd_attest_nonce(int argc, char **argv)
{
	EV_ADMIN_FUNCTION_LIST *admin = NULL;
	CK_FUNCTION_LIST_3_0 *f = NULL;
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	CK_BYTE *nonce = NULL;
	CK_ULONG len = 0;
	unsigned long zone = 0;
	void *dl = NULL;
	int rc;
	CK_RV rv;

	rc = zone_only("attest nonce", argc, argv, 0, &zone);
	if (rc != 0)
		return rc;
	rc = 1;
	if (open_zone(zone, &f, &dl, &admin, &h) != 0)
		goto out;
	rv = admin->EV_NewNonce(h, NULL, &len);
	if (rv == CKR_OK && (len == 0 || len > EV_ATTEST_NONCE_MAX))
		rv = CKR_GENERAL_ERROR;
	if (rv == CKR_OK) {
		nonce = malloc(len);
		rv = nonce == NULL ? CKR_HOST_MEMORY : admin->EV_NewNonce(h, nonce, &len);
	}
	if (rv != CKR_OK) {
		fprintf(stderr, "edgevault: no new nonce for zone %lu: %s\n", zone, ckr_name(rv));
		goto out;
	}
	print_hex(nonce, len);
	putchar('\n');
	if (flush_stdout() != 0)
		goto out;
	rc = 0;
out:
	close_zone(f, dl, h);
	free(nonce);
	return rc;
}

static int
cmd_attest_check(int argc, char **argv)
{
	EV_ADMIN_FUNCTION_LIST *admin = NULL;
	CK_FUNCTION_LIST_3_0 *f = NULL;
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	EV_ATTESTATION info;
	unsigned long zone = 0;
	size_t rlen;
	char t[32];
	void *dl = NULL;
	int rc, ok;
	CK_RV rv;

	rc = zone_only("attest check", argc, argv, 1, &zone);
	if (rc != 0)
		return rc;
	rc = 1;
	if (open_zone(zone, &f, &dl, &admin, &h) != 0)
		goto out;
	memset(&info, 0, sizeof(info));
	rv = admin->EV_Attest(h, &info);
	if (rv == CKR_FUNCTION_REJECTED) {
		fprintf(stderr, "edgevault: no evidence provider is configured "
		    "([attestation] provider)\n");
		goto out;
	}
	if (rv != CKR_OK) {
		fprintf(stderr, "edgevault: cannot appraise evidence for zone %lu: %s\n", zone,
		    ckr_name(rv));
		goto out;
	}
	ok = info.ulState == EV_ATTEST_ACCEPTED;
	rlen = strnlen((const char *)info.szReason, sizeof(info.szReason));
	if (json) {
		printf("{\"zone\":%lu,\"accepted\":%s,\"valid_until\":", zone,
		    ok ? "true" : "false");
		if (ok)
			printf("\"%s\"", iso_time((int64_t)info.ulValidUntil, t));
		else
			printf("null");
		printf(",\"reason\":");
		json_mem(info.szReason, rlen);
		printf("}\n");
	} else if (ok) {
		printf("accepted: valid until %s\n", iso_time((int64_t)info.ulValidUntil, t));
	} else {
		printf("refused: ");
		print_text(info.szReason, rlen, 0);
		putchar('\n');
	}
	if (flush_stdout() != 0)
		goto out;
	rc = ok ? 0 : 1;
out:
	close_zone(f, dl, h);
	return rc;
}

static int
is_zero(const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != 0)
			return 0;
	return 1;
}

static void
show_attestlog_text(const ev_attestlog_rec *g)
{
	const char *reason = g->reason != NULL ? g->reason : "";
	char t[32];

	printf("%s zone %lld %s (%s): ", iso_time(g->time, t), (long long)g->zone,
	    g->purpose != NULL ? g->purpose : "?", g->provider != NULL ? g->provider : "?");
	if (g->accepted)
		printf("accepted, valid until %s", iso_time(g->valid_until, t));
	else
		printf("refused");
	if (reason[0] != '\0') {
		printf(": ");
		print_text((const unsigned char *)reason, strlen(reason), 0);
	}
	if (!is_zero(g->digest, sizeof(g->digest))) {
		printf(" [");
		print_hex(g->digest, sizeof(g->digest));
		putchar(']');
	}
	putchar('\n');
}

static void
show_attestlog_json(const ev_attestlog_rec *g)
{
	char t[32];

	printf("{\"id\":%lld,\"time\":\"%s\",\"zone\":%lld,\"purpose\":", (long long)g->id,
	    iso_time(g->time, t), (long long)g->zone);
	json_str(g->purpose != NULL ? g->purpose : "");
	printf(",\"provider\":");
	json_str(g->provider != NULL ? g->provider : "");
	printf(",\"accepted\":%s,\"valid_until\":", g->accepted ? "true" : "false");
	if (g->accepted)
		printf("\"%s\"", iso_time(g->valid_until, t));
	else
		printf("null");
	printf(",\"reason\":");
	json_str(g->reason != NULL ? g->reason : "");
	if (!is_zero(g->digest, sizeof(g->digest))) {
		printf(",\"digest\":\"");
		print_hex(g->digest, sizeof(g->digest));
		putchar('"');
	}
	putchar('}');
}

static int
cmd_attest_show(int argc, char **argv)
{
	ev_store *store = NULL;
	ev_attestlog_rec *logs = NULL;
	size_t n = 0, i;
	int rc;

	rc = show_store_open("attest show", argc, argv, &store);
	if (rc != 0)
		return rc;
	rc = 1;
	if (ev_store_attestlog_list(store, &logs, &n) != CKR_OK) {
		fprintf(stderr, "edgevault: store: cannot read the attestation history\n");
		goto out;
	}
	if (json)
		putchar('[');
	else if (n == 0)
		printf("no attestation history\n");
	for (i = 0; i < n; i++) {
		if (json) {
			if (i > 0)
				putchar(',');
			show_attestlog_json(&logs[i]);
		} else
			show_attestlog_text(&logs[i]);
	}
	if (json)
		printf("]\n");
	if (flush_stdout() != 0)
		goto out;
	rc = 0;
out:
	for (i = 0; i < n; i++)
		ev_attestlog_rec_clear(&logs[i]);
	free(logs);
	ev_store_close(store);
	return rc;
}

int
cmd_attest(int argc, char **argv)
{
	const char *sub = argc > 0 ? argv[0] : NULL;

	if (sub != NULL && strcmp(sub, "keygen") == 0)
		return signkey_keygen(&attestation_results, argc, argv);
	if (sub != NULL && strcmp(sub, "sign") == 0)
		return cmd_attest_sign(argc, argv);
	if (sub != NULL && strcmp(sub, "reference") == 0)
		return cmd_attest_reference(argc, argv);
	if (sub != NULL && strcmp(sub, "nonce") == 0)
		return cmd_attest_nonce(argc, argv);
	if (sub != NULL && strcmp(sub, "check") == 0)
		return cmd_attest_check(argc, argv);
	if (sub != NULL && strcmp(sub, "show") == 0)
		return cmd_attest_show(argc, argv);
	fprintf(stderr, "edgevault: unknown command: attest%s%s\n", sub ? " " : "",
	    sub ? sub : "");
	attest_usage();
	return 2;
}
