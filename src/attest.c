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
#include "json.h"
#include "signed.h"

#define DEVICE_MAX 255u

/* What messages name the document. */
#define DOC "attestation result"

/* How much of a foreign device id a reason quotes. */
#define DEVICE_SHOWN 48u

static void refuse(ev_verdict *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A refusal: the verdict says why. */
static void
refuse(ev_verdict *v, const char *fmt, ...)
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
read_zones(json_object *v, ev_attest_result *r, char *err, size_t errlen)
{
	char what[32];
	size_t n, i, j;
	CK_RV rv;

	if (!json_object_is_type(v, json_type_array)) {
		ev_errf(err, errlen, "attestation result: \"zones\": expected an array, not %s",
			json_type_to_name(json_object_get_type(v)));
		return CKR_DATA_INVALID;
	}
	n = json_object_array_length(v);
	if (n == 0 || n > EV_ATTEST_MAX_ZONES) {
		ev_errf(err, errlen, "attestation result: \"zones\": %zu zones, expected 1 to %u",
			n, EV_ATTEST_MAX_ZONES);
		return CKR_DATA_INVALID;
	}
	r->zones = calloc(n, sizeof(*r->zones));
	if (r->zones == NULL) {
		ev_errf(err, errlen, "out of memory");
		return CKR_HOST_MEMORY;
	}
	for (i = 0; i < n; i++) {
		snprintf(what, sizeof(what), "\"zones\"[%zu]", i);
		rv = ev_json_int(json_object_array_get_idx(v, i), 1, EV_JSON_SAFE_MAX, &r->zones[i],
				 DOC, what, err, errlen);
		if (rv != CKR_OK)
			return rv;
		/* At most 1024 zones: the quadratic search costs nothing worth sorting for. */
		for (j = 0; j < i; j++)
			if (r->zones[j] == r->zones[i]) {
				ev_errf(err, errlen,
					"attestation result: %s: zone %lld is given twice", what,
					(long long)r->zones[i]);
				return CKR_DATA_INVALID;
			}
		r->nzones = i + 1;
	}
	return CKR_OK;
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
static const struct {
	const char *name;
	int required;
} doc_members[] = {
    {"version", 1}, {"device", 1}, {"zones", 1}, {"issued_at", 1}, {"expires_at", 1}, {"nonce", 0},
};

CK_RV
ev_attest_result_parse(const unsigned char *doc, size_t len, ev_attest_result **out, char *err,
		       size_t errlen)
{
	json_object *root = NULL, *v;
	ev_attest_result *r = NULL;
	int64_t version = 0;
	char name[33], why[160] = "";
	size_t i;
	CK_RV rv;

	if (out != NULL)
		*out = NULL;
	if ((doc == NULL && len > 0) || out == NULL) {
		ev_errf(err, errlen, "bad arguments");
		return CKR_ARGUMENTS_BAD;
	}
	if (len > EV_ATTEST_MAX_FILE) {
		ev_errf(err, errlen,
			"attestation result of %zu bytes is over the limit of %u bytes", len,
			EV_ATTEST_MAX_FILE);
		return CKR_DATA_LEN_RANGE;
	}
	rv = ev_json_parse_strict(doc, len, &root, why, sizeof(why));
	if (rv != CKR_OK) {
		ev_errf(err, errlen, "attestation result: %s", why);
		return rv;
	}
	rv = CKR_DATA_INVALID;
	if (!json_object_is_type(root, json_type_object)) {
		ev_errf(err, errlen, "attestation result: expected a JSON object");
		goto out;
	}
	json_object_object_foreach(root, key, val)
	{
		for (i = 0; i < EV_ARRAY_SIZE(doc_members); i++)
			if (strcmp(key, doc_members[i].name) == 0)
				break;
		if (i == EV_ARRAY_SIZE(doc_members)) {
			ev_errf(err, errlen, "attestation result: unknown member \"%s\"",
				ev_json_printable(key, name));
			goto out;
		}
		/* json-c holds null as no object: it must not read as an absent nonce. */
		if (val == NULL) {
			ev_errf(err, errlen, "attestation result: \"%s\": null is not a value here",
				doc_members[i].name);
			goto out;
		}
	}
	for (i = 0; i < EV_ARRAY_SIZE(doc_members); i++)
		if (doc_members[i].required && ev_json_member(root, doc_members[i].name) == NULL) {
			ev_errf(err, errlen, "attestation result: \"%s\": missing",
				doc_members[i].name);
			goto out;
		}
	if (ev_json_int(ev_json_member(root, "version"), INT64_MIN, INT64_MAX, &version, DOC,
			"\"version\"", err, errlen) != CKR_OK)
		goto out;
	if (version != 1) {
		ev_errf(err, errlen,
			"attestation result: \"version\": %lld is not supported (1 is)",
			(long long)version);
		goto out;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		ev_errf(err, errlen, "out of memory");
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	rv = ev_json_str(ev_json_member(root, "device"), 1, DEVICE_MAX,
			 EV_JSON_PRINTABLE | EV_JSON_EMPTY_AS_LENGTH, &r->device, NULL, DOC,
			 "\"device\"", err, errlen);
	if (rv == CKR_OK)
		rv = read_zones(ev_json_member(root, "zones"), r, err, errlen);
	if (rv == CKR_OK)
		rv = ev_json_int(ev_json_member(root, "issued_at"), 0, EV_JSON_SAFE_MAX,
				 &r->issued_at, DOC, "\"issued_at\"", err, errlen);
	if (rv == CKR_OK)
		rv = ev_json_int(ev_json_member(root, "expires_at"), 0, EV_JSON_SAFE_MAX,
				 &r->expires_at, DOC, "\"expires_at\"", err, errlen);
	if (rv == CKR_OK && (v = ev_json_member(root, "nonce")) != NULL)
		rv = read_nonce(v, r, err, errlen);
	if (rv != CKR_OK)
		goto out;
	if (r->expires_at <= r->issued_at) {
		ev_errf(err, errlen,
			"attestation result: \"expires_at\": %lld is not after \"issued_at\" %lld",
			(long long)r->expires_at, (long long)r->issued_at);
		rv = CKR_DATA_INVALID;
		goto out;
	}
	*out = r;
	r = NULL; /* transferred */
	rv = CKR_OK;
out:
	ev_attest_result_free(r);
	json_object_put(root);
	return rv;
}

CK_RV
ev_attest_result_load(const unsigned char *buf, size_t len, const unsigned char pk[32],
		      ev_attest_result **out, char *err, size_t errlen)
{
	unsigned char *payload = NULL;
	ev_attest_result *r = NULL;
	size_t plen = 0;
	CK_RV rv;

	if (out != NULL)
		*out = NULL;
	if (out == NULL || pk == NULL) {
		ev_errf(err, errlen, "bad arguments");
		return CKR_ARGUMENTS_BAD;
	}
	if (len > EV_ATTEST_MAX_FILE) {
		ev_errf(err, errlen,
			"attestation result of %zu bytes is over the limit of %u bytes", len,
			EV_ATTEST_MAX_FILE);
		return CKR_DATA_LEN_RANGE;
	}
	rv = ev_signed_open(buf, len, EV_SIGNED_ATTESTATION, pk, &payload, &plen, err, errlen);
	if (rv != CKR_OK)
		return rv;
	rv = ev_attest_result_parse(payload, plen, &r, err, errlen);
	free(payload);
	if (rv != CKR_OK)
		return rv;
	crypto_generichash(r->digest, sizeof(r->digest), buf, len, NULL, 0);
	*out = r;
	return CKR_OK;
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

static int
admits_zone(const ev_attest_result *r, int64_t zone)
{
	size_t i;

	for (i = 0; i < r->nzones; i++)
		if (r->zones[i] == zone)
			return 1;
	return 0;
}

/* A duration from the configuration, kept where sums of it cannot overflow. */
static int64_t
clamp_duration(int64_t d)
{
	if (d < 0)
		return 0;
	return d > EV_JSON_SAFE_MAX ? EV_JSON_SAFE_MAX : d;
}

void
ev_attest_check(const ev_attest_result *r, const ev_attest_ctx *ctx, ev_verdict *v)
{
	int64_t skew, max_age, stale_at;
	char t[32], t2[32];

	if (v == NULL)
		return;
	memset(v, 0, sizeof(*v));
	if (r == NULL || r->device == NULL || ctx == NULL) {
		refuse(v, "no evidence");
		return;
	}
	memcpy(v->digest, r->digest, sizeof(v->digest));
	if (ctx->cfg == NULL || ctx->policy == NULL || ctx->device == NULL) {
		refuse(v, "no configuration to appraise evidence against");
		return;
	}
	if (strcmp(r->device, ctx->device) != 0) {
		refuse(v, "for device \"%.*s%s\", not this one", shown_len(r->device), r->device,
		       strlen(r->device) > DEVICE_SHOWN ? "..." : "");
		return;
	}
	if (!admits_zone(r, ctx->zone)) {
		refuse(v, "does not admit zone %lld", (long long)ctx->zone);
		return;
	}
	/* The fields are at most 2^53 and the durations clamped: no sum below overflows. */
	skew = clamp_duration(ctx->cfg->clock_skew);
	max_age = clamp_duration(ctx->policy->max_evidence_age);
	if (r->issued_at - skew > ctx->now) {
		refuse(v, "issued in the future (at %s), more than %llds ahead of this clock",
		       ev_iso_time(r->issued_at, t), (long long)skew);
		return;
	}
	if (ctx->now >= r->expires_at) {
		refuse(v, "expired at %s", ev_iso_time(r->expires_at, t));
		return;
	}
	stale_at = r->issued_at + max_age;
	if (ctx->now >= stale_at) {
		refuse(v, "stale: issued at %s, older than the zone's max_evidence_age of %llds",
		       ev_iso_time(r->issued_at, t), (long long)max_age);
		return;
	}
	if (r->nonce_len > 0) {
		if (ctx->nonce == NULL || ctx->nonce_len == 0) {
			refuse(v, "carries a nonce, but this device has issued none");
			return;
		}
		if (r->nonce_len != ctx->nonce_len ||
		    sodium_memcmp(r->nonce, ctx->nonce, r->nonce_len) != 0) {
			refuse(v, "nonce does not match the device's current nonce");
			return;
		}
	} else if (ctx->policy->require_nonce) {
		refuse(v, "no nonce, and zone %lld requires one", (long long)ctx->zone);
		return;
	}
	v->accepted = 1;
	v->valid_until = r->expires_at < stale_at ? r->expires_at : stale_at;
	snprintf(v->reason, sizeof(v->reason), "accepted for zone %lld, issued at %s, until %s%s",
		 (long long)ctx->zone, ev_iso_time(r->issued_at, t), ev_iso_time(v->valid_until, t2),
		 r->nonce_len > 0 ? ", with the current nonce" : "");
}

/*
 * Read the result file: a regular file of at most EV_ATTEST_MAX_FILE
 * bytes. Symbolic links are followed: an agent may publish by swapping a
 * link, and where the bytes come from does not matter, only the
 * verifier's signature over them. 0 with *buf malloc'ed; -1 with v
 * refused; -2 out of memory.
 */
static int
read_result(const char *path, unsigned char **buf, size_t *len, ev_verdict *v)
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
			refuse(v, "no evidence at %s", path);
		else
			refuse(v, "cannot read evidence at %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		refuse(v, "evidence at %s is not a regular file", path);
		goto out;
	}
	if (st.st_size > (off_t)EV_ATTEST_MAX_FILE) {
		refuse(v, "evidence at %s is %lld bytes, over the limit of %u", path,
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
			refuse(v, "cannot read evidence at %s: %s", path, strerror(errno));
			goto out;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	if (n > EV_ATTEST_MAX_FILE) {
		refuse(v, "evidence at %s is over the limit of %u bytes", path, EV_ATTEST_MAX_FILE);
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
		refuse(v, "no configuration to appraise evidence against");
		return CKR_ARGUMENTS_BAD;
	}
	if (!ctx->cfg->has_verifier_key) {
		refuse(v, "no [attestation] verifier_key is configured");
		return CKR_OK;
	}
	if (ctx->cfg->attest_result_path == NULL || ctx->cfg->attest_result_path[0] == '\0') {
		refuse(v, "no [attestation] result_path is configured");
		return CKR_OK;
	}
	rc = read_result(ctx->cfg->attest_result_path, &buf, &len, v);
	if (rc == -2)
		return CKR_HOST_MEMORY;
	if (rc != 0)
		return CKR_OK;
	rv = ev_attest_result_load(buf, len, ctx->cfg->verifier_key, &r, err, sizeof(err));
	if (rv == CKR_HOST_MEMORY)
		goto out;
	if (rv != CKR_OK) {
		refuse(v, "%s", err);
		/* The audit trail can still tell which file was refused. */
		crypto_generichash(v->digest, sizeof(v->digest), buf, len, NULL, 0);
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
	case EV_ATTEST_NONE:
		break;
	}
	return NULL;
}
