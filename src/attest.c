/*
 * Attestation (attest.h): signed attestation results, read as strictly as
 * revocation lists are, the rules that appraise them, and the "result"
 * provider that reads them from a file.
 *
 * A result a verifier signed with a mistake in it (a member misspelt, a
 * zone quoted, an expiry before its issue) is refused whole, with the
 * member named: a device must never read evidence as admitting more, or
 * for longer, than the verifier meant.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "attest.h"
#include "quote.h"
#include "json.h"
#include "signed.h"

#define DEVICE_MAX 255u

/* What messages name the document. */
#define DOC "attestation result"

/* How much of a foreign device id a reason quotes. */
#define DEVICE_SHOWN 48u

void
ev_verdict_refuse(ev_verdict *v, const char *fmt, ...)
{
	va_list ap;

	v->accepted = 0;
	v->valid_until = 0;
	va_start(ap, fmt);
	vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
	va_end(ap);
}

/* The first bytes of a (printable UTF-8) device id, cut on a character boundary. */
static int
shown_len(const char *s)
{
	size_t n = strlen(s);

	if (n <= DEVICE_SHOWN)
		return (int)n;
	n = DEVICE_SHOWN;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return (int)n;
}

static CK_RV
read_zones(json_object *v, const char *doc, ev_attest_scope *sc, char *err, size_t errlen)
{
	char what[32];
	size_t n, i, j;
	CK_RV rv;

	rv = ev_json_array(v, 1, EV_ATTEST_MAX_ZONES, "zones", &n, doc, "\"zones\"", err, errlen);
	if (rv != CKR_OK)
		return rv;
	sc->zones = calloc(n, sizeof(*sc->zones));
	if (sc->zones == NULL) {
		ev_errf(err, errlen, "out of memory");
		return CKR_HOST_MEMORY;
	}
	for (i = 0; i < n; i++) {
		snprintf(what, sizeof(what), "\"zones\"[%zu]", i);
		rv = ev_json_int(json_object_array_get_idx(v, i), 1, EV_JSON_SAFE_MAX,
				 &sc->zones[i], doc, what, err, errlen);
		if (rv != CKR_OK)
			return rv;
		/* At most 1024 zones: the quadratic search costs nothing worth sorting for. */
		for (j = 0; j < i; j++)
			if (sc->zones[j] == sc->zones[i]) {
				ev_errf(err, errlen, "%s: %s: zone %lld is given twice", doc, what,
					(long long)sc->zones[i]);
				return CKR_DATA_INVALID;
			}
		sc->nzones = i + 1;
	}
	return CKR_OK;
}

CK_RV
ev_attest_scope_read(json_object *root, const char *doc, ev_attest_scope *sc, char *err,
		     size_t errlen)
{
	json_object *v;
	CK_RV rv;

	memset(sc, 0, sizeof(*sc));
	rv = ev_json_str(ev_json_member(root, "device"), 1, DEVICE_MAX,
			 EV_JSON_PRINTABLE | EV_JSON_EMPTY_AS_LENGTH, &sc->device, NULL, doc,
			 "\"device\"", err, errlen);
	if (rv == CKR_OK && (v = ev_json_member(root, "zones")) != NULL)
		rv = read_zones(v, doc, sc, err, errlen);
	if (rv == CKR_OK)
		rv = ev_json_int(ev_json_member(root, "issued_at"), 0, EV_JSON_SAFE_MAX,
				 &sc->issued_at, doc, "\"issued_at\"", err, errlen);
	if (rv == CKR_OK)
		rv = ev_json_int(ev_json_member(root, "expires_at"), 0, EV_JSON_SAFE_MAX,
				 &sc->expires_at, doc, "\"expires_at\"", err, errlen);
	if (rv == CKR_OK && sc->expires_at <= sc->issued_at) {
		ev_errf(err, errlen, "%s: \"expires_at\": %lld is not after \"issued_at\" %lld",
			doc, (long long)sc->expires_at, (long long)sc->issued_at);
		rv = CKR_DATA_INVALID;
	}
	if (rv != CKR_OK)
		ev_attest_scope_clear(sc);
	return rv;
}

void
ev_attest_scope_clear(ev_attest_scope *sc)
{
	if (sc == NULL)
		return;
	free(sc->device);
	free(sc->zones);
	memset(sc, 0, sizeof(*sc));
}

static CK_RV
read_nonce(json_object *v, ev_attest_result *r, char *err, size_t errlen)
{
	unsigned char *nonce = NULL;
	char expect[64];
	size_t n = 0;
	CK_RV rv;

	snprintf(expect, sizeof(expect), "expected hex, two digits per byte, %u to %u bytes",
		 EV_ATTEST_NONCE_MIN, EV_ATTEST_NONCE_MAX);
	rv = ev_json_hex(v, EV_ATTEST_NONCE_MIN, EV_ATTEST_NONCE_MAX, expect, &nonce, &n, DOC,
			 "\"nonce\"", err, errlen);
	if (rv != CKR_OK)
		return rv;
	memcpy(r->nonce, nonce, n);
	r->nonce_len = n;
	free(nonce);
	return CKR_OK;
}

/* Every member a result may have; all but the nonce are required. */
static const ev_json_member_def doc_members[] = {
    {"version", 1}, {"device", 1}, {"zones", 1}, {"issued_at", 1}, {"expires_at", 1}, {"nonce", 0},
};

CK_RV
ev_attest_result_parse(const unsigned char *doc, size_t len, ev_attest_result **out, char *err,
		       size_t errlen)
{
	json_object *root = NULL, *v;
	ev_attest_result *r = NULL;
	ev_attest_scope sc;
	CK_RV rv;

	if (out != NULL)
		*out = NULL;
	if ((doc == NULL && len > 0) || out == NULL) {
		ev_errf(err, errlen, "bad arguments");
		return CKR_ARGUMENTS_BAD;
	}
	rv = ev_json_document(doc, len, EV_ATTEST_MAX_FILE, doc_members,
			      EV_ARRAY_SIZE(doc_members), DOC, &root, err, errlen);
	if (rv != CKR_OK)
		return rv;
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		ev_errf(err, errlen, "out of memory");
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	rv = ev_attest_scope_read(root, DOC, &sc, err, errlen);
	if (rv != CKR_OK)
		goto out;
	r->device = sc.device;
	r->zones = sc.zones;
	r->nzones = sc.nzones;
	r->issued_at = sc.issued_at;
	r->expires_at = sc.expires_at; /* transferred */
	if ((v = ev_json_member(root, "nonce")) != NULL)
		rv = read_nonce(v, r, err, errlen);
	if (rv != CKR_OK)
		goto out;
	*out = r;
	r = NULL; /* transferred */
	rv = CKR_OK;
out:
	ev_attest_result_free(r);
	json_object_put(root);
	return rv;
}

CK_RV
ev_attest_load(const unsigned char *buf, size_t len, const char *type, const char *doc,
	       const unsigned char pk[32], ev_attest_parse_fn *parse, void **out, char *err,
	       size_t errlen)
{
	unsigned char *payload = NULL, digest[32];
	size_t plen = 0;
	CK_RV rv;

	*out = NULL;
	if (pk == NULL || (buf == NULL && len > 0)) {
		ev_errf(err, errlen, "bad arguments");
		return CKR_ARGUMENTS_BAD;
	}
	if (len > EV_ATTEST_MAX_FILE) {
		ev_errf(err, errlen, "%s of %zu bytes is over the limit of %u bytes", doc, len,
			EV_ATTEST_MAX_FILE);
		return CKR_DATA_LEN_RANGE;
	}
	rv = ev_signed_open(buf, len, type, pk, &payload, &plen, err, errlen);
	if (rv != CKR_OK)
		return rv;
	/* The digest names the evidence in verdicts and the history: none, no document. */
	if (crypto_generichash(digest, sizeof(digest), buf, len, NULL, 0) != 0) {
		ev_errf(err, errlen, "%s: its digest could not be computed", doc);
		free(payload);
		return CKR_FUNCTION_FAILED;
	}
	rv = parse(payload, plen, digest, out, err, errlen);
	free(payload);
	return rv;
}

/* ev_attest_parse_fn of results. */
static CK_RV
parse_result(const unsigned char *doc, size_t len, const unsigned char digest[32], void **out,
	     char *err, size_t errlen)
{
	ev_attest_result *r = NULL;
	CK_RV rv;

	rv = ev_attest_result_parse(doc, len, &r, err, errlen);
	if (rv == CKR_OK)
		memcpy(r->digest, digest, sizeof(r->digest));
	*out = r;
	return rv;
}

CK_RV
ev_attest_result_load(const unsigned char *buf, size_t len, const unsigned char pk[32],
		      ev_attest_result **out, char *err, size_t errlen)
{
	void *r = NULL;
	CK_RV rv;

	if (out == NULL)
		return CKR_ARGUMENTS_BAD;
	rv = ev_attest_load(buf, len, EV_SIGNED_ATTESTATION, DOC, pk, parse_result, &r, err,
			    errlen);
	*out = r;
	return rv;
}

void
ev_attest_result_free(ev_attest_result *r)
{
	if (r == NULL)
		return;
	free(r->device);
	free(r->zones);
	free(r);
}

/* Zones absent (a reference policy without "zones"): every zone. */
static int
admits_zone(const ev_attest_scope *sc, int64_t zone)
{
	size_t i;

	if (sc->zones == NULL)
		return 1;
	for (i = 0; i < sc->nzones; i++)
		if (sc->zones[i] == zone)
			return 1;
	return 0;
}

/* A duration from the configuration, kept where sums of it cannot overflow. */
int64_t
ev_attest_clamp(int64_t d)
{
	if (d < 0)
		return 0;
	return d > EV_JSON_SAFE_MAX ? EV_JSON_SAFE_MAX : d;
}

int
ev_attest_scope_check(const ev_attest_scope *sc, const ev_attest_ctx *ctx, ev_verdict *v)
{
	int64_t skew;
	char t[32];

	if (ctx->cfg == NULL || ctx->policy == NULL || ctx->device == NULL) {
		ev_verdict_refuse(v, "no configuration to appraise evidence against");
		return -1;
	}
	if (strcmp(sc->device, ctx->device) != 0) {
		ev_verdict_refuse(v, "for device \"%.*s%s\", not this one", shown_len(sc->device),
				  sc->device, strlen(sc->device) > DEVICE_SHOWN ? "..." : "");
		return -1;
	}
	if (!admits_zone(sc, ctx->zone)) {
		ev_verdict_refuse(v, "does not admit zone %lld", (long long)ctx->zone);
		return -1;
	}
	/* The fields are at most 2^53 and the durations clamped: no sum below overflows. */
	skew = ev_attest_clamp(ctx->cfg->clock_skew);
	if (sc->issued_at - skew > ctx->now) {
		ev_verdict_refuse(v,
				  "issued in the future (at %s), more than %llds ahead of this clock",
				  ev_iso_time(sc->issued_at, t), (long long)skew);
		return -1;
	}
	if (ctx->now >= sc->expires_at) {
		ev_verdict_refuse(v, "expired at %s", ev_iso_time(sc->expires_at, t));
		return -1;
	}
	return 0;
}

void
ev_attest_check(const ev_attest_result *r, const ev_attest_ctx *ctx, ev_verdict *v)
{
	ev_attest_scope sc;
	int64_t max_age, stale_at;
	char t[32], t2[32];

	if (v == NULL)
		return;
	memset(v, 0, sizeof(*v));
	if (r == NULL || r->device == NULL || ctx == NULL) {
		ev_verdict_refuse(v, "no evidence");
		return;
	}
	memcpy(v->digest, r->digest, sizeof(v->digest));
	/* A view: the rules shared with reference policies read it, nothing is moved. */
	sc.device = r->device;
	sc.zones = r->zones;
	sc.nzones = r->nzones;
	sc.issued_at = r->issued_at;
	sc.expires_at = r->expires_at;
	if (ev_attest_scope_check(&sc, ctx, v) != 0)
		return;
	max_age = ev_attest_clamp(ctx->policy->max_evidence_age);
	stale_at = r->issued_at + max_age;
	if (ctx->now >= stale_at) {
		ev_verdict_refuse(
		    v, "stale: issued at %s, older than the zone's max_evidence_age of %llds",
		    ev_iso_time(r->issued_at, t), (long long)max_age);
		return;
	}
	if (r->nonce_len > 0) {
		if (ctx->nonce == NULL || ctx->nonce_len == 0) {
			ev_verdict_refuse(v, "carries a nonce, but this device has issued none");
			return;
		}
		if (r->nonce_len != ctx->nonce_len ||
		    sodium_memcmp(r->nonce, ctx->nonce, r->nonce_len) != 0) {
			ev_verdict_refuse(v, "nonce does not match the device's current nonce");
			return;
		}
	} else if (ctx->policy->require_nonce) {
		ev_verdict_refuse(v, "no nonce, and zone %lld requires one", (long long)ctx->zone);
		return;
	}
	v->accepted = 1;
	v->valid_until = r->expires_at < stale_at ? r->expires_at : stale_at;
	snprintf(v->reason, sizeof(v->reason), "accepted for zone %lld, issued at %s, until %s%s",
		 (long long)ctx->zone, ev_iso_time(r->issued_at, t), ev_iso_time(v->valid_until, t2),
		 r->nonce_len > 0 ? ", with the current nonce" : "");
}

int
ev_attest_read_file(const char *path, const char *what, unsigned char **buf, size_t *len,
		    ev_verdict *v)
{
	unsigned char *b = NULL;
	struct stat st;
	size_t n = 0;
	ssize_t got;
	int fd, rc = -1;

	*buf = NULL;
	*len = 0;
	/* O_NONBLOCK: a FIFO in the file's place must not hang the host; refused below. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT)
			ev_verdict_refuse(v, "no %s at %s", what, path);
		else
			ev_verdict_refuse(v, "cannot read %s at %s: %s", what, path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		ev_verdict_refuse(v, "%s at %s is not a regular file", what, path);
		goto out;
	}
	if (st.st_size > (off_t)EV_ATTEST_MAX_FILE) {
		ev_verdict_refuse(v, "%s at %s is %lld bytes, over the limit of %u", what, path,
				  (long long)st.st_size, EV_ATTEST_MAX_FILE);
		goto out;
	}
	/* One byte more than allowed: the file may grow between fstat and read. */
	b = malloc(EV_ATTEST_MAX_FILE + 1);
	if (b == NULL) {
		rc = -2;
		goto out;
	}
	while (n < EV_ATTEST_MAX_FILE + 1) {
		got = read(fd, b + n, EV_ATTEST_MAX_FILE + 1 - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			ev_verdict_refuse(v, "cannot read %s at %s: %s", what, path,
					  strerror(errno));
			goto out;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	if (n > EV_ATTEST_MAX_FILE) {
		ev_verdict_refuse(v, "%s at %s is over the limit of %u bytes", what, path,
				  EV_ATTEST_MAX_FILE);
		goto out;
	}
	*buf = b;
	b = NULL; /* transferred */
	*len = n;
	rc = 0;
out:
	free(b);
	close(fd);
	return rc;
}

static CK_RV
result_appraise(const ev_attest_ctx *ctx, ev_verdict *v)
{
	ev_attest_result *r = NULL;
	unsigned char *buf = NULL;
	char err[160] = "";
	size_t len = 0;
	CK_RV rv;
	int rc;

	if (v == NULL)
		return CKR_ARGUMENTS_BAD;
	memset(v, 0, sizeof(*v));
	if (ctx == NULL || ctx->cfg == NULL) {
		ev_verdict_refuse(v, "no configuration to appraise evidence against");
		return CKR_ARGUMENTS_BAD;
	}
	if (!ctx->cfg->has_verifier_key) {
		ev_verdict_refuse(v, "no [attestation] verifier_key is configured");
		return CKR_OK;
	}
	if (ctx->cfg->attest_result_path == NULL || ctx->cfg->attest_result_path[0] == '\0') {
		ev_verdict_refuse(v, "no [attestation] result_path is configured");
		return CKR_OK;
	}
	rc = ev_attest_read_file(ctx->cfg->attest_result_path, "evidence", &buf, &len, v);
	if (rc == -2)
		return CKR_HOST_MEMORY;
	if (rc != 0)
		return CKR_OK;
	rv = ev_attest_result_load(buf, len, ctx->cfg->verifier_key, &r, err, sizeof(err));
	if (rv == CKR_HOST_MEMORY)
		goto out;
	if (rv != CKR_OK) {
		ev_verdict_refuse(v, "%s", err);
		/* The audit trail can still tell which file was refused (zeros: it cannot). */
		if (crypto_generichash(v->digest, sizeof(v->digest), buf, len, NULL, 0) != 0)
			sodium_memzero(v->digest, sizeof(v->digest));
		rv = CKR_OK;
		goto out;
	}
	ev_attest_check(r, ctx, v);
out:
	ev_attest_result_free(r);
	free(buf);
	return rv;
}

static const ev_attest_provider result_provider = {
    .name = "result",
    .appraise = result_appraise,
};

const ev_attest_provider *
ev_attest_provider_of(const ev_config *cfg)
{
	if (cfg == NULL)
		return NULL;
	switch (cfg->attest) {
	case EV_ATTEST_RESULT:
		return &result_provider;
	case EV_ATTEST_TPM2_QUOTE:
		return &ev_tpm2_quote_provider;
	case EV_ATTEST_NONE:
		break;
	}
	return NULL;
}
