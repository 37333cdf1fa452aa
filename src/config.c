/*
 * The configuration file (config.h). Parsing is libinih's; this file only
 * knows which sections and keys exist, and checks their values.
 *
 * Strictness is deliberate: an unknown section or key, a key given twice,
 * an empty value or a number with trailing junk is an error naming the
 * file and line, because a typo that passes silently leaves a setting at
 * its default without anyone noticing.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* secure_getenv, strdup, gethostname */
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>
#include <sodium.h>

#include "config.h"
#include "log.h"
#include "signed.h"

#define MAX_FAILS_MIN 1u
#define MAX_FAILS_MAX 1000u
#define MAX_FAILS_DEFAULT 10u
#define ROOT_KEY_LABEL_DEFAULT "edgevault-root"
#define ROOT_BACKEND_DEFAULT "pkcs11"

/* TPM 2.0 persistent object handles (TPM2_HT_PERSISTENT), the owner's range. */
#define TPM2_PERSISTENT_FIRST 0x81000000ULL
#define TPM2_PERSISTENT_LAST 0x817FFFFFULL

/* Longest upstream PIN read from a file; PKCS#11 PINs are short. */
#define ROOT_PIN_MAX 1024

/* Seconds. A year of evidence age at most; periods up to a hundred years. */
#define CLOCK_SKEW_DEFAULT 60
#define CLOCK_SKEW_MAX 3600
#define MAX_EVIDENCE_AGE_DEFAULT 3600
#define MAX_EVIDENCE_AGE_MAX 31536000ULL
#define ROTATION_PERIOD_DEFAULT 0 /* never due */
#define GRACE_PERIOD_DEFAULT 86400
#define PERIOD_MAX 3153600000ULL
#define CHECKPOINT_LINES_DEFAULT 100
#define CHECKPOINT_LINES_MAX 1000000
#define CHECKPOINT_INTERVAL_DEFAULT 3600
#define COUNTERS_FLUSH_DEFAULT 60
#define COUNTERS_FLUSH_MAX 86400

/* Zone ids are JSON numbers in attestation results: exact up to 2^53. */
#define ZONE_ID_MAX 9007199254740992ULL

/*
 * K_PUBKEY: an Ed25519 public key in base64, with an int flag (at
 * flag) set when given. K_SECS: seconds, an int64_t. K_BOOL: "true" or
 * "false", an int. K_PROVIDER: [attestation] provider, an ev_attest_kind.
 * K_HANDLE: a TPM handle in hexadecimal ("0x" and up to 8 digits), a
 * uint32_t within [min, max]. K_PCRS: PCR indexes ("0,1,7"), a uint32_t
 * mask (ev_pcr_list_parse()).
 */
enum kind {
	K_STR,
	K_UINT,
	K_ULL,
	K_MEM_KIB,
	K_PUBKEY,
	K_SECS,
	K_BOOL,
	K_PROVIDER,
	K_HANDLE,
	K_PCRS,
	K_FSYNC,
};

/*
 * One known key: where it lives (in ev_config, or in ev_policy for
 * policy_keys[]) and how its value reads.
 */
struct key_def {
	const char *section;
	const char *name;
	enum kind kind;
	size_t off;
	unsigned long long min, max; /* numbers only */
	size_t flag;		     /* K_PUBKEY only: offset of its "given" flag */
};

#define STR(sec, key, field)                                                                       \
	{                                                                                          \
		sec, key, K_STR, offsetof(ev_config, field), 0, 0, 0                               \
	}

static const struct key_def keys[] = {
    STR("store", "dir", store_dir),
    STR("device", "id", device_id),
    STR("root", "backend", root_backend),
    STR("root", "module", root_module),
    STR("root", "token_label", root_token_label),
    STR("root", "pin_file", root_pin_file),
    STR("root", "pin_env", root_pin_env),
    STR("root", "key_label", root_key_label),
    STR("root", "tcti", root_tcti),
    STR("root", "helper", root_helper),
    {"root", "primary_handle", K_HANDLE, offsetof(ev_config, root_primary_handle),
     TPM2_PERSISTENT_FIRST, TPM2_PERSISTENT_LAST, 0},
    {"pin", "max_fails", K_UINT, offsetof(ev_config, pin_max_fails), MAX_FAILS_MIN, MAX_FAILS_MAX,
     0},
    {"pin", "argon2_ops", K_ULL, offsetof(ev_config, argon2_ops),
     crypto_pwhash_argon2id_OPSLIMIT_MIN, crypto_pwhash_argon2id_OPSLIMIT_MAX, 0},
    /* Given in KiB, stored in bytes; bounds checked on the byte value. */
    {"pin", "argon2_mem_kib", K_MEM_KIB, offsetof(ev_config, argon2_mem),
     crypto_pwhash_argon2id_MEMLIMIT_MIN, crypto_pwhash_argon2id_MEMLIMIT_MAX, 0},
    {"revocation", "public_key", K_PUBKEY, offsetof(ev_config, revocation_key), 0, 0,
     offsetof(ev_config, has_revocation_key)},
    STR("revocation", "watch_dir", revocation_dir),
    {"attestation", "provider", K_PROVIDER, offsetof(ev_config, attest), 0, 0, 0},
    {"attestation", "verifier_key", K_PUBKEY, offsetof(ev_config, verifier_key), 0, 0,
     offsetof(ev_config, has_verifier_key)},
    STR("attestation", "result_path", attest_result_path),
    STR("attestation", "reference_path", attest_reference_path),
    {"attestation", "pcrs", K_PCRS, offsetof(ev_config, attest_pcrs), 0, 0, 0},
    {"attestation", "clock_skew", K_SECS, offsetof(ev_config, clock_skew), 0, CLOCK_SKEW_MAX, 0},
    {"audit", "enabled", K_BOOL, offsetof(ev_config, audit_enabled), 0, 1, 0},
    STR("audit", "file", audit_file),
    {"audit", "syslog", K_BOOL, offsetof(ev_config, audit_syslog), 0, 1, 0},
    {"audit", "fsync", K_FSYNC, offsetof(ev_config, audit_fsync), 0, 0, 0},
    {"audit", "checkpoint_lines", K_UINT, offsetof(ev_config, audit_checkpoint_lines), 1,
     CHECKPOINT_LINES_MAX, 0},
    {"audit", "checkpoint_interval", K_SECS, offsetof(ev_config, audit_checkpoint_interval), 0,
     PERIOD_MAX, 0},
    {"audit", "counters_flush", K_SECS, offsetof(ev_config, audit_counters_flush), 1,
     COUNTERS_FLUSH_MAX, 0},
};

#undef STR

/*
 * The keys of [policy] and of every [zone N], by offset in ev_policy.
 * (section is only for the table's shape: messages name the section the
 * key was found in.)
 */
#define POL(key, kind, field, min, max)                                                            \
	{                                                                                          \
		"policy", key, kind, offsetof(ev_policy, field), min, max, 0                       \
	}

static const struct key_def policy_keys[] = {
    POL("require_attestation", K_BOOL, require_attestation, 0, 1),
    POL("require_nonce", K_BOOL, require_nonce, 0, 1),
    POL("auto_rotate", K_BOOL, auto_rotate, 0, 1),
    POL("max_evidence_age", K_SECS, max_evidence_age, 1, MAX_EVIDENCE_AGE_MAX),
    POL("rotation_period", K_SECS, rotation_period, 0, PERIOD_MAX),
    POL("grace_period", K_SECS, grace_period, 0, PERIOD_MAX),
    POL("pcrs", K_PCRS, pcrs, 0, EV_PCR_COUNT - 1),
};

#undef POL

/* A [zone N] section while the file is read: which keys it set itself. */
struct zone_sec {
	int64_t zone;
	ev_policy policy;
	unsigned char seen[EV_ARRAY_SIZE(policy_keys)];
};

struct parse_ctx {
	ev_config *c;
	FILE *fp;
	int lineno;	   /* line being parsed, counted by our reader */
	int at_line_start; /* the next read starts a new line */
	int errline;	   /* line of the first error we found, 0 if none */
	int pcrs_line;	   /* first line binding a zone to PCRs, 0 if none */
	char pcrs_section[32]; /* its section */
	char msg[256];	   /* that error, without file and line */
	unsigned char seen[EV_ARRAY_SIZE(keys)];
	unsigned char policy_seen[EV_ARRAY_SIZE(policy_keys)];
	struct zone_sec *zones; /* [zone N] sections in file order */
	size_t nzones, capzones;
	int oom;
};

static void
ctx_fail(struct parse_ctx *p, const char *fmt, ...)
{
	va_list ap;

	if (p->errline != 0)
		return; /* keep the first error: later ones are often its echoes */
	p->errline = p->lineno;
	va_start(ap, fmt);
	vsnprintf(p->msg, sizeof(p->msg), fmt, ap);
	va_end(ap);
}

/*
 * An unsigned decimal number, all of the string, within [min, max].
 * strtoull alone accepts a sign, leading blanks and trailing junk, and
 * wraps negative numbers: each is refused here.
 */
static int
parse_number(const char *s, unsigned long long min, unsigned long long max, unsigned long long *out)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/*
 * A TPM handle: "0x" or "0X", then 1 to 8 hexadecimal digits and nothing
 * else, within [min, max]. Hexadecimal only: handles are always written so.
 */
static int
parse_handle(const char *s, unsigned long long min, unsigned long long max,
	     unsigned long long *out)
{
	unsigned long long v;
	size_t n;
	char *end;

	if (s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
		return -1;
	n = strspn(s + 2, "0123456789abcdefABCDEF");
	if (n == 0 || n > 8 || s[2 + n] != '\0')
		return -1;
	errno = 0;
	v = strtoull(s + 2, &end, 16);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/*
 * Set a key of obj (the ev_config, or an ev_policy for policy_keys[])
 * from its value; section is the section as it is named in messages.
 */
static int
set_value(struct parse_ctx *p, const struct key_def *k, const char *section, void *obj,
	  const char *value)
{
	char *base = (char *)obj + k->off;
	unsigned long long v;
	uint32_t m;
	char **sp;

	switch (k->kind) {
	case K_STR:
		sp = (char **)(void *)base;
		free(*sp); /* the default set before parsing */
		*sp = strdup(value);
		if (*sp == NULL) {
			p->oom = 1;
			return 0;
		}
		return 1;
	case K_UINT:
		if (parse_number(value, k->min, k->max, &v) != 0)
			break;
		*(unsigned *)(void *)base = (unsigned)v;
		return 1;
	case K_ULL:
		if (parse_number(value, k->min, k->max, &v) != 0)
			break;
		*(unsigned long long *)(void *)base = v;
		return 1;
	case K_MEM_KIB:
		if (parse_number(value, 0, ULLONG_MAX / 1024, &v) != 0)
			break;
		v *= 1024;
		if (v < k->min || v > k->max || v > SIZE_MAX)
			break;
		*(size_t *)(void *)base = (size_t)v;
		return 1;
	case K_PUBKEY:
		if (ev_pubkey_decode(value, (unsigned char *)base) != 0) {
			ctx_fail(p,
				 "[%s] %s = \"%s\": expected an Ed25519 public key in base64 "
				 "(44 characters)",
				 section, k->name, value);
			return 0;
		}
		*(int *)(void *)((char *)obj + k->flag) = 1;
		return 1;
	case K_SECS:
		if (parse_number(value, k->min, k->max, &v) != 0) {
			ctx_fail(p,
				 "[%s] %s = \"%s\": expected a whole number of seconds from %llu "
				 "to %llu",
				 section, k->name, value, k->min, k->max);
			return 0;
		}
		*(int64_t *)(void *)base = (int64_t)v;
		return 1;
	case K_BOOL:
		/* Exactly these words: "yes", "1" or "True" may mean something else to someone. */
		if (strcmp(value, "true") == 0) {
			*(int *)(void *)base = 1;
			return 1;
		}
		if (strcmp(value, "false") == 0) {
			*(int *)(void *)base = 0;
			return 1;
		}
		ctx_fail(p, "[%s] %s = \"%s\": expected true or false", section, k->name, value);
		return 0;
	case K_HANDLE:
		if (parse_handle(value, k->min, k->max, &v) != 0) {
			ctx_fail(p,
				 "[%s] %s = \"%s\": expected a persistent TPM handle in hexadecimal "
				 "from 0x%08llx to 0x%08llx",
				 section, k->name, value, k->min, k->max);
			return 0;
		}
		*(uint32_t *)(void *)base = (uint32_t)v;
		return 1;
	case K_PCRS:
		if (strcmp(value, "none") == 0)
			m = 0;
		else if (ev_pcr_list_parse(value, &m) != 0)
			break;
		*(uint32_t *)(void *)base = m;
		/* Zone keys bound to PCRs ([policy], [zone N]) need the TPM root. */
		if (m != 0 && p->pcrs_line == 0 && strcmp(section, "attestation") != 0) {
			p->pcrs_line = p->lineno;
			snprintf(p->pcrs_section, sizeof(p->pcrs_section), "%s", section);
		}
		return 1;
	case K_FSYNC:
		if (strcmp(value, "always") == 0) {
			*(ev_audit_fsync *)(void *)base = EV_AUDIT_FSYNC_ALWAYS;
			return 1;
		}
		if (strcmp(value, "checkpoint") == 0) {
			*(ev_audit_fsync *)(void *)base = EV_AUDIT_FSYNC_CHECKPOINT;
			return 1;
		}
		if (strcmp(value, "never") == 0) {
			*(ev_audit_fsync *)(void *)base = EV_AUDIT_FSYNC_NEVER;
			return 1;
		}
		ctx_fail(p, "[%s] %s = \"%s\": expected always, checkpoint or never", section,
			 k->name, value);
		return 0;
	case K_PROVIDER:
		if (strcmp(value, "result") == 0) {
			*(ev_attest_kind *)(void *)base = EV_ATTEST_RESULT;
			return 1;
		}
		if (strcmp(value, "tpm2-quote") == 0) {
			*(ev_attest_kind *)(void *)base = EV_ATTEST_TPM2_QUOTE;
			return 1;
		}
		ctx_fail(p, "[%s] %s = \"%s\": unknown provider (expected result or tpm2-quote)",
			 section, k->name, value);
		return 0;
	}
	if (k->kind == K_PCRS)
		ctx_fail(p,
			 "[%s] %s = \"%s\": expected PCR indexes from 0 to %d separated "
			 "by commas, each once (\"0,7\"), or none",
			 section, k->name, value, EV_PCR_COUNT - 1);
	else if (k->kind == K_MEM_KIB)
		ctx_fail(p, "[%s] %s = \"%s\": expected a whole number of KiB from %llu to %llu",
			 section, k->name, value, (k->min + 1023) / 1024, k->max / 1024);
	else
		ctx_fail(p, "[%s] %s = \"%s\": expected a whole number from %llu to %llu", section,
			 k->name, value, k->min, k->max);
	return 0;
}

/*
 * The zone id of a [zone N] section name: "zone", one blank, and N in
 * plain decimal from 1 to ZONE_ID_MAX (no sign, no leading zero, nothing
 * after). len is the name's length (it need not be NUL-terminated).
 * 0 when it is not one.
 */
static int64_t
zone_of_section(const char *name, size_t len)
{
	uint64_t v = 0;
	size_t i;

	if (len < 6 || memcmp(name, "zone ", 5) != 0 || name[5] < '1' || name[5] > '9')
		return 0;
	for (i = 5; i < len; i++) {
		if (name[i] < '0' || name[i] > '9')
			return 0;
		v = v * 10 + (uint64_t)(name[i] - '0');
		if (v > ZONE_ID_MAX)
			return 0;
	}
	return (int64_t)v;
}

static struct zone_sec *
zone_find(struct parse_ctx *p, int64_t zone)
{
	size_t i;

	for (i = 0; i < p->nzones; i++)
		if (p->zones[i].zone == zone)
			return &p->zones[i];
	return NULL;
}

/*
 * A section header line, seen by read_line() before libinih parses it:
 * libinih does not report sections, only keys under them, so a [zone N]
 * given twice (or an empty one) would otherwise go unnoticed. The name is
 * taken as libinih takes it: from after "[" to the first "]", after
 * leading blanks (and a UTF-8 BOM on line 1); a line without "]" is left
 * to libinih's syntax error.
 */
static void
note_section(struct parse_ctx *p, const char *line)
{
	const char *name, *end;
	struct zone_sec *z, *nz;
	size_t len, ncap;
	int64_t zone;

	if (p->lineno == 1 && strncmp(line, "\xEF\xBB\xBF", 3) == 0)
		line += 3;
	while (*line == ' ' || *line == '\t' || *line == '\r' || *line == '\f' || *line == '\v')
		line++;
	if (*line != '[')
		return;
	name = line + 1;
	end = strchr(name, ']');
	if (end == NULL)
		return;
	len = (size_t)(end - name);
	if (len < 4 || memcmp(name, "zone", 4) != 0)
		return; /* other sections are checked with their keys */
	zone = zone_of_section(name, len);
	if (zone == 0) {
		ctx_fail(p,
			 "invalid section [%.*s]: expected [zone N], N a zone id from 1 to "
			 "%llu in plain decimal",
			 (int)(len < 64 ? len : 64), name, ZONE_ID_MAX);
		return;
	}
	if (zone_find(p, zone) != NULL) {
		ctx_fail(p, "[zone %lld] given twice", (long long)zone);
		return;
	}
	if (p->nzones == p->capzones) {
		ncap = p->capzones ? p->capzones * 2 : 8;
		if (ncap > SIZE_MAX / sizeof(*p->zones)) {
			p->oom = 1;
			return;
		}
		nz = realloc(p->zones, ncap * sizeof(*p->zones));
		if (nz == NULL) {
			p->oom = 1;
			return;
		}
		p->zones = nz;
		p->capzones = ncap;
	}
	z = &p->zones[p->nzones++];
	memset(z, 0, sizeof(*z));
	z->zone = zone;
}

/* A key of [policy] (z NULL) or of a [zone N] section. */
static int
on_policy_entry(struct parse_ctx *p, struct zone_sec *z, const char *section, const char *name,
		const char *value)
{
	unsigned char *seen = z != NULL ? z->seen : p->policy_seen;
	ev_policy *pol = z != NULL ? &z->policy : &p->c->policy;
	size_t i;

	for (i = 0; i < EV_ARRAY_SIZE(policy_keys); i++) {
		if (strcmp(policy_keys[i].name, name) != 0)
			continue;
		if (seen[i]) {
			ctx_fail(p, "[%s] %s given twice (or a line is indented)", section, name);
			return 0;
		}
		seen[i] = 1;
		if (value == NULL || value[0] == '\0') {
			ctx_fail(p, "[%s] %s has an empty value", section, name);
			return 0;
		}
		return set_value(p, &policy_keys[i], section, pol, value);
	}
	ctx_fail(p, "unknown key \"%s\" in section [%s]", name, section);
	return 0;
}

static int
on_entry(void *user, const char *section, const char *name, const char *value)
{
	struct parse_ctx *p = user;
	struct zone_sec *z = NULL;
	int known_section = 0;
	int64_t zone;
	size_t i;

	if (strcmp(section, "policy") == 0) {
		known_section = 1;
	} else if ((zone = zone_of_section(section, strlen(section))) != 0) {
		/* note_section() made it when it saw the header. */
		z = zone_find(p, zone);
		known_section = z != NULL;
	}
	for (i = 0; i < EV_ARRAY_SIZE(keys); i++)
		if (strcmp(keys[i].section, section) == 0)
			known_section = 1;
	if (!known_section) {
		if (section[0] == '\0')
			ctx_fail(p, "\"%s\" outside any section", name ? name : "");
		else
			ctx_fail(p, "unknown section [%s] (key \"%s\")", section, name ? name : "");
		return 0;
	}
	if (name == NULL)
		return 1; /* a new section, from libinih built to report those */
	if (z != NULL || strcmp(section, "policy") == 0)
		return on_policy_entry(p, z, section, name, value);
	for (i = 0; i < EV_ARRAY_SIZE(keys); i++) {
		if (strcmp(keys[i].section, section) != 0 || strcmp(keys[i].name, name) != 0)
			continue;
		/*
		 * A second value is refused rather than letting the last one
		 * win; this also catches an indented line, which libinih
		 * treats as a continuation of the key above.
		 */
		if (p->seen[i]) {
			ctx_fail(p, "[%s] %s given twice (or a line is indented)", section, name);
			return 0;
		}
		p->seen[i] = 1;
		if (value == NULL || value[0] == '\0') {
			ctx_fail(p, "[%s] %s has an empty value", section, name);
			return 0;
		}
		return set_value(p, &keys[i], keys[i].section, p->c, value);
	}
	ctx_fail(p, "unknown key \"%s\" in section [%s]", name, section);
	return 0;
}

/*
 * fgets for libinih that counts lines, so an error found by on_entry can
 * name its line. A line too long for libinih's buffer would be split and
 * its tail parsed as a line of its own: refuse it instead.
 */
static char *
read_line(char *str, int num, void *stream)
{
	struct parse_ctx *p = stream;
	char *r;

	if (p->oom)
		return NULL;
	r = fgets(str, num, p->fp);
	if (r == NULL)
		return NULL;
	if (p->at_line_start)
		p->lineno++;
	if (p->at_line_start)
		note_section(p, str);
	p->at_line_start = strchr(str, '\n') != NULL;
	if (!p->at_line_start && !feof(p->fp)) {
		ctx_fail(p, "line longer than %d characters", num - 3);
		return NULL;
	}
	return r;
}

static int
set_default(char **field, const char *v)
{
	if (*field != NULL)
		return 0;
	*field = strdup(v);
	return *field == NULL ? -1 : 0;
}

static int
zone_cmp(const void *a, const void *b)
{
	const ev_zone_policy *x = a, *y = b;

	return (x->zone > y->zone) - (x->zone < y->zone);
}

/* The size of a policy value of this kind. */
static size_t
policy_value_size(enum kind kind)
{
	if (kind == K_PCRS)
		return sizeof(uint32_t);
	return kind == K_SECS ? sizeof(int64_t) : sizeof(int);
}

/*
 * The [zone N] sections into c->zones, ascending: each key a section did
 * not set comes from [policy], which may come later in the file, so this
 * runs once the whole file is read. -1 when memory runs out.
 */
static int
merge_zones(ev_config *c, const struct parse_ctx *p)
{
	const struct key_def *k;
	ev_zone_policy *zp;
	size_t i, j;

	if (p->nzones == 0)
		return 0;
	c->zones = calloc(p->nzones, sizeof(*c->zones));
	if (c->zones == NULL)
		return -1;
	for (i = 0; i < p->nzones; i++) {
		zp = &c->zones[i];
		zp->zone = p->zones[i].zone;
		zp->policy = p->zones[i].policy;
		for (j = 0; j < EV_ARRAY_SIZE(policy_keys); j++) {
			if (p->zones[i].seen[j])
				continue;
			k = &policy_keys[j];
			memcpy((char *)&zp->policy + k->off, (const char *)&c->policy + k->off,
			       policy_value_size(k->kind));
		}
	}
	c->nzones = p->nzones;
	qsort(c->zones, c->nzones, sizeof(*c->zones), zone_cmp);
	return 0;
}

/* The [attestation] key a policy needs, or NULL when it needs none. */
static const char *
policy_needs_provider(const ev_policy *pol)
{
	if (pol->require_attestation)
		return "require_attestation";
	if (pol->require_nonce)
		return "require_nonce";
	if (pol->auto_rotate)
		return "auto_rotate";
	return NULL;
}

/*
 * The [attestation] keys that belong to one provider only: a key of the
 * other is refused, not ignored (result_path under tpm2-quote says that
 * someone believes evidence comes from where it does not).
 */
static const struct {
	const char *name;
	ev_attest_kind provider;
	const char *provider_name;
	const char *what; /* why it is needed */
} provider_keys[] = {
    {"result_path", EV_ATTEST_RESULT, "result", "the file the agent keeps the attestation result in"},
    {"reference_path", EV_ATTEST_TPM2_QUOTE, "tpm2-quote",
     "the file holding the signed reference policy"},
    {"pcrs", EV_ATTEST_TPM2_QUOTE, "tpm2-quote", "the PCRs to quote, e.g. 0,1,7"},
};

/* Whether key k of [attestation] was given. */
static int
attest_key_seen(const struct parse_ctx *p, const char *name)
{
	size_t i;

	for (i = 0; i < EV_ARRAY_SIZE(keys); i++)
		if (strcmp(keys[i].section, "attestation") == 0 && strcmp(keys[i].name, name) == 0)
			return p->seen[i];
	return 0;
}

/* A provider: what it needs, nothing of the other provider's. */
static CK_RV
check_provider(const ev_config *c, const struct parse_ctx *p, char *err, size_t errlen)
{
	const char *name = c->attest == EV_ATTEST_RESULT ? "result" : "tpm2-quote";
	size_t i;

	if (c->attest == EV_ATTEST_TPM2_QUOTE && strcmp(c->root_backend, "tpm2") != 0) {
		ev_errf(err, errlen,
			"%s: [attestation] provider tpm2-quote needs the TPM root ([root] backend "
			"= tpm2), not backend %s",
			c->path, c->root_backend);
		return CKR_GENERAL_ERROR;
	}
	if (!c->has_verifier_key) {
		ev_errf(err, errlen,
			"%s: [attestation] provider %s needs verifier_key "
			"(the verifier's public key, from `edgevault attest keygen`)",
			c->path, name);
		return CKR_GENERAL_ERROR;
	}
	for (i = 0; i < EV_ARRAY_SIZE(provider_keys); i++) {
		int seen = attest_key_seen(p, provider_keys[i].name);

		if (provider_keys[i].provider == c->attest && !seen) {
			ev_errf(err, errlen, "%s: [attestation] provider %s needs %s (%s)", c->path,
				name, provider_keys[i].name, provider_keys[i].what);
			return CKR_GENERAL_ERROR;
		}
		if (provider_keys[i].provider != c->attest && seen) {
			ev_errf(err, errlen,
				"%s: [attestation] %s is a setting of provider %s, not %s", c->path,
				provider_keys[i].name, provider_keys[i].provider_name, name);
			return CKR_GENERAL_ERROR;
		}
	}
	if (c->attest == EV_ATTEST_TPM2_QUOTE && c->attest_pcrs == 0) {
		ev_errf(err, errlen,
			"%s: [attestation] pcrs = none: provider tpm2-quote needs at least one PCR "
			"to quote",
			c->path);
		return CKR_GENERAL_ERROR;
	}
	return CKR_OK;
}

/*
 * [attestation] and the policies together: a provider with what it
 * needs, no provider settings without a provider, and no policy that
 * asks for evidence nothing can give (every login to such a zone, or
 * every rotation, would be refused).
 */
static CK_RV
check_attestation(const ev_config *c, const struct parse_ctx *p, char *err, size_t errlen)
{
	const char *what;
	size_t i;

	if (c->attest != EV_ATTEST_NONE)
		return check_provider(c, p, err, errlen);
	for (i = 0; i < EV_ARRAY_SIZE(keys); i++) {
		if (!p->seen[i] || strcmp(keys[i].section, "attestation") != 0)
			continue;
		ev_errf(err, errlen, "%s: [attestation] %s is set but there is no provider",
			c->path, keys[i].name);
		return CKR_GENERAL_ERROR;
	}
	what = policy_needs_provider(&c->policy);
	if (what != NULL) {
		ev_errf(err, errlen, "%s: [policy] %s needs an [attestation] provider", c->path,
			what);
		return CKR_GENERAL_ERROR;
	}
	for (i = 0; i < c->nzones; i++) {
		what = policy_needs_provider(&c->zones[i].policy);
		if (what != NULL) {
			ev_errf(err, errlen, "%s: [zone %lld] %s needs an [attestation] provider",
				c->path, (long long)c->zones[i].zone, what);
			return CKR_GENERAL_ERROR;
		}
	}
	return CKR_OK;
}

/*
 * The keys of [root] that belong to one backend only. A key of the other
 * backend is refused, not ignored: "module = ..." under backend tpm2 says
 * that someone believes the root is somewhere it is not.
 */
static const struct {
	const char *name;
	const char *backend;
} root_keys[] = {
    {"module", "pkcs11"},  {"token_label", "pkcs11"}, {"pin_file", "pkcs11"},
    {"pin_env", "pkcs11"}, {"key_label", "pkcs11"},   {"tcti", "tpm2"},
    {"primary_handle", "tpm2"}, {"helper", "tpm2"},
};

/* [root]: a known backend, its required keys, no key of another backend. */
static CK_RV
check_root(const ev_config *c, const struct parse_ctx *p, char *err, size_t errlen)
{
	size_t i, j;

	if (strcmp(c->root_backend, "pkcs11") != 0 && strcmp(c->root_backend, "tpm2") != 0) {
		ev_errf(err, errlen, "%s: [root] backend = \"%s\": unknown backend (expected "
			"pkcs11 or tpm2)", c->path, c->root_backend);
		return CKR_GENERAL_ERROR;
	}
	for (i = 0; i < EV_ARRAY_SIZE(keys); i++) {
		if (!p->seen[i] || strcmp(keys[i].section, "root") != 0)
			continue;
		for (j = 0; j < EV_ARRAY_SIZE(root_keys); j++) {
			if (strcmp(root_keys[j].name, keys[i].name) != 0 ||
			    strcmp(root_keys[j].backend, c->root_backend) == 0)
				continue;
			ev_errf(err, errlen, "%s: [root] %s is a setting of backend %s, not %s",
				c->path, keys[i].name, root_keys[j].backend, c->root_backend);
			return CKR_GENERAL_ERROR;
		}
	}
	/* Only a TPM has PCRs: a zone bound to them under another root could never be sealed. */
	if (p->pcrs_line != 0 && strcmp(c->root_backend, "tpm2") != 0) {
		ev_errf(err, errlen,
			"%s:%d: [%s] pcrs binds zone keys to TPM PCRs, which needs [root] backend "
			"tpm2 (the backend is %s)",
			c->path, p->pcrs_line, p->pcrs_section, c->root_backend);
		return CKR_GENERAL_ERROR;
	}
	if (strcmp(c->root_backend, "tpm2") == 0) {
		if (c->root_tcti == NULL) {
			ev_errf(err, errlen,
				"%s: [root] tcti is required with backend tpm2 (how to reach "
				"the TPM, e.g. device:/dev/tpmrm0)",
				c->path);
			return CKR_GENERAL_ERROR;
		}
		/* Started by the module with posix_spawn: never looked up in $PATH or the cwd. */
		if (c->root_helper != NULL && c->root_helper[0] != '/') {
			ev_errf(err, errlen,
				"%s: [root] helper = \"%s\": an absolute path is required",
				c->path, c->root_helper);
			return CKR_GENERAL_ERROR;
		}
		return CKR_OK;
	}
	if (c->root_module == NULL) {
		ev_errf(err, errlen,
			"%s: [root] module is required with backend pkcs11 "
			"(path of the upstream PKCS#11 module)",
			c->path);
		return CKR_GENERAL_ERROR;
	}
	if (c->root_token_label == NULL) {
		ev_errf(err, errlen, "%s: [root] token_label is required with backend pkcs11",
			c->path);
		return CKR_GENERAL_ERROR;
	}
	if (strlen(c->root_token_label) > 32) {
		ev_errf(err, errlen,
			"%s: [root] token_label \"%s\" is longer than the 32 bytes "
			"of a PKCS#11 token label",
			c->path, c->root_token_label);
		return CKR_GENERAL_ERROR;
	}
	if (c->root_pin_file == NULL && c->root_pin_env == NULL) {
		ev_errf(err, errlen,
			"%s: [root] needs pin_file or pin_env with backend pkcs11 "
			"(where the upstream user PIN comes from)",
			c->path);
		return CKR_GENERAL_ERROR;
	}
	if (c->root_pin_file != NULL && c->root_pin_env != NULL) {
		ev_errf(err, errlen, "%s: [root] pin_file and pin_env are both set; keep one",
			c->path);
		return CKR_GENERAL_ERROR;
	}
	return CKR_OK;
}

/* The checks that need the whole file: required keys and combinations. */
static CK_RV
check_config(const ev_config *c, const struct parse_ctx *p, char *err, size_t errlen)
{
	CK_RV rv;

	if (c->store_dir == NULL) {
		ev_errf(err, errlen, "%s: [store] dir is required", c->path);
		return CKR_GENERAL_ERROR;
	}
	/*
	 * Lists dropped in a directory with no key to check them against
	 * could never be applied: say so now, not at the first list.
	 */
	if (c->revocation_dir != NULL && !c->has_revocation_key) {
		ev_errf(err, errlen,
			"%s: [revocation] watch_dir needs public_key "
			"(the revocation authority's key that signs the lists)",
			c->path);
		return CKR_GENERAL_ERROR;
	}
	/*
	 * The id is sealed keys' associated data, every audit line's "device"
	 * and what checkpoints sign: bounded so all of them hold it whole.
	 */
	if (strlen(c->device_id) < 1 || strlen(c->device_id) > EV_DEVICE_ID_MAX ||
	    !ev_utf8_valid((const unsigned char *)c->device_id, strlen(c->device_id),
			   EV_UTF8_PRINTABLE)) {
		ev_errf(err, errlen,
			"%s: [device] id must be 1 to %d bytes of printable UTF-8 (no control "
			"characters)",
			c->path, EV_DEVICE_ID_MAX);
		return CKR_GENERAL_ERROR;
	}
	rv = check_attestation(c, p, err, errlen);
	if (rv != CKR_OK)
		return rv;
	return check_root(c, p, err, errlen);
}

const char *
ev_config_path(void)
{
	/*
	 * secure_getenv: a setuid host must not let its caller choose the
	 * configuration, and with it the upstream module to load.
	 */
	const char *p = secure_getenv("EDGEVAULT_CONF");

	return (p != NULL && *p != '\0') ? p : EV_CONFIG_DEFAULT_PATH;
}

CK_RV
ev_config_load(const char *path, ev_config **out, char *err, size_t errlen)
{
	struct parse_ctx p;
	char host[256];
	ev_config *c = NULL;
	CK_RV rv = CKR_HOST_MEMORY;
	int r;

	memset(&p, 0, sizeof(p));
	if (out == NULL || path == NULL) {
		ev_errf(err, errlen, "no configuration path");
		return CKR_GENERAL_ERROR;
	}
	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		goto oom;
	c->path = strdup(path);
	if (c->path == NULL)
		goto oom;
	c->pin_max_fails = MAX_FAILS_DEFAULT;
	c->argon2_ops = crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE;
	c->argon2_mem = crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE;
	c->clock_skew = CLOCK_SKEW_DEFAULT;
	c->audit_enabled = 1;
	c->audit_syslog = 1;
	c->audit_fsync = EV_AUDIT_FSYNC_ALWAYS;
	c->audit_checkpoint_lines = CHECKPOINT_LINES_DEFAULT;
	c->audit_checkpoint_interval = CHECKPOINT_INTERVAL_DEFAULT;
	c->audit_counters_flush = COUNTERS_FLUSH_DEFAULT;
	c->policy.max_evidence_age = MAX_EVIDENCE_AGE_DEFAULT;
	c->policy.rotation_period = ROTATION_PERIOD_DEFAULT;
	c->policy.grace_period = GRACE_PERIOD_DEFAULT;

	p.c = c;
	p.at_line_start = 1;
	p.fp = fopen(path, "re");
	if (p.fp == NULL) {
		ev_errf(err, errlen, "cannot read configuration %s: %s", path, strerror(errno));
		rv = CKR_GENERAL_ERROR;
		goto out;
	}
	r = ini_parse_stream(read_line, &p, on_entry, &p);
	if (p.oom)
		goto oom;
	/* Whichever came first: our error, or a line libinih could not parse. */
	if (p.errline != 0 && (r <= 0 || p.errline <= r)) {
		ev_errf(err, errlen, "%s:%d: %s", path, p.errline, p.msg);
		rv = CKR_GENERAL_ERROR;
		goto out;
	}
	if (r > 0) {
		ev_errf(err, errlen, "%s:%d: syntax error (expected [section] or key = value)",
			path, r);
		rv = CKR_GENERAL_ERROR;
		goto out;
	}
	if (r < 0 || ferror(p.fp)) {
		ev_errf(err, errlen, "cannot read configuration %s", path);
		rv = r == -2 ? CKR_HOST_MEMORY : CKR_GENERAL_ERROR;
		goto out;
	}

	if (set_default(&c->root_backend, ROOT_BACKEND_DEFAULT) != 0 ||
	    set_default(&c->root_key_label, ROOT_KEY_LABEL_DEFAULT) != 0)
		goto oom;
	if (c->device_id == NULL) {
		if (gethostname(host, sizeof(host)) != 0) {
			ev_errf(err, errlen,
				"%s: [device] id is not set and the host name "
				"cannot be read: %s",
				path, strerror(errno));
			rv = CKR_GENERAL_ERROR;
			goto out;
		}
		host[sizeof(host) - 1] = '\0';
		if (set_default(&c->device_id, host) != 0)
			goto oom;
	}
	if (merge_zones(c, &p) != 0)
		goto oom;
	rv = check_config(c, &p, err, errlen);
	if (rv != CKR_OK)
		goto out;
	*out = c;
	c = NULL; /* transferred */
	rv = CKR_OK;
	goto out;
oom:
	ev_errf(err, errlen, "%s: out of memory", path);
	rv = CKR_HOST_MEMORY;
out:
	if (p.fp != NULL)
		fclose(p.fp);
	free(p.zones);
	ev_config_free(c);
	return rv;
}

void
ev_config_free(ev_config *c)
{
	if (c == NULL)
		return;
	free(c->path);
	free(c->store_dir);
	free(c->device_id);
	free(c->root_backend);
	free(c->root_module);
	free(c->root_token_label);
	free(c->root_pin_file);
	free(c->root_pin_env);
	free(c->root_key_label);
	free(c->root_tcti);
	free(c->root_helper);
	free(c->revocation_dir);
	free(c->attest_result_path);
	free(c->attest_reference_path);
	free(c->audit_file);
	free(c->zones);
	free(c);
}

const ev_policy *
ev_config_policy(const ev_config *c, int64_t zone)
{
	static const ev_policy defaults = {
	    .max_evidence_age = MAX_EVIDENCE_AGE_DEFAULT,
	    .rotation_period = ROTATION_PERIOD_DEFAULT,
	    .grace_period = GRACE_PERIOD_DEFAULT,
	};
	size_t lo, hi, mid;

	/* Never NULL, as promised: without a configuration, the defaults. */
	if (c == NULL)
		return &defaults;
	lo = 0;
	hi = c->nzones;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (c->zones[mid].zone == zone)
			return &c->zones[mid].policy;
		if (c->zones[mid].zone < zone)
			lo = mid + 1;
		else
			hi = mid;
	}
	return &c->policy;
}

/*
 * Read the PIN file with read(2) straight into secure memory: stdio would
 * leave a copy of the PIN in its own heap buffer.
 */
static CK_RV
read_pin_file(const char *path, ev_secret **pin, char *err, size_t errlen)
{
	ev_secret *buf = NULL;
	struct stat st;
	size_t n = 0;
	ssize_t r;
	CK_RV rv = CKR_GENERAL_ERROR;
	int fd;

	/*
	 * O_NONBLOCK: a FIFO (or a device) in place of the file must not
	 * hang the host in open(); it is refused just below. Reads from a
	 * regular file ignore the flag.
	 */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		ev_errf(err, errlen, "cannot read upstream PIN file %s: %s", path, strerror(errno));
		return CKR_GENERAL_ERROR;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		ev_errf(err, errlen, "upstream PIN file %s is not a regular file", path);
		goto out;
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		ev_warn("upstream PIN file %s is accessible to group or others (mode %03o); "
			"chmod 600 it",
			path, (unsigned)(st.st_mode & 0777));
	/* One byte more than allowed, to tell "too long" from "exactly full". */
	buf = ev_secret_new(ROOT_PIN_MAX + 1);
	if (buf == NULL) {
		rv = CKR_HOST_MEMORY;
		ev_errf(err, errlen, "out of secure memory reading %s", path);
		goto out;
	}
	while (n < buf->len) {
		r = read(fd, buf->data + n, buf->len - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ev_errf(err, errlen, "cannot read upstream PIN file %s: %s", path,
				strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > ROOT_PIN_MAX) {
		ev_errf(err, errlen, "upstream PIN file %s is longer than %d bytes", path,
			ROOT_PIN_MAX);
		goto out;
	}
	if (n > 0 && buf->data[n - 1] == '\n') {
		n--;
		if (n > 0 && buf->data[n - 1] == '\r')
			n--;
	}
	if (n == 0) {
		ev_errf(err, errlen, "upstream PIN file %s is empty", path);
		goto out;
	}
	*pin = ev_secret_dup(buf->data, n);
	if (*pin == NULL) {
		rv = CKR_HOST_MEMORY;
		ev_errf(err, errlen, "out of secure memory reading %s", path);
		goto out;
	}
	rv = CKR_OK;
out:
	ev_secret_free(buf);
	close(fd);
	return rv;
}

CK_RV
ev_config_root_pin(const ev_config *c, ev_secret **pin, char *err, size_t errlen)
{
	const char *v;

	if (pin == NULL || c == NULL) {
		ev_errf(err, errlen, "no configuration");
		return CKR_GENERAL_ERROR;
	}
	*pin = NULL;
	if (ev_secmem_init() != 0) {
		ev_errf(err, errlen, "cannot initialise libsodium");
		return CKR_GENERAL_ERROR;
	}
	if (c->root_pin_file != NULL)
		return read_pin_file(c->root_pin_file, pin, err, errlen);
	if (c->root_pin_env != NULL) {
		/*
		 * secure_getenv, as for $EDGEVAULT_CONF: in a setuid or setgid
		 * host the environment is the caller's, who could feed wrong
		 * PINs to the upstream token until it locks.
		 */
		v = secure_getenv(c->root_pin_env);
		if (v == NULL || *v == '\0') {
			ev_errf(err, errlen,
				"environment variable %s (the upstream PIN, [root] "
				"pin_env) is not set",
				c->root_pin_env);
			return CKR_GENERAL_ERROR;
		}
		*pin = ev_secret_dup(v, strlen(v));
		if (*pin == NULL) {
			ev_errf(err, errlen, "out of secure memory");
			return CKR_HOST_MEMORY;
		}
		return CKR_OK;
	}
	ev_errf(err, errlen, "%s: no upstream PIN configured ([root] pin_file or pin_env)",
		c->path ? c->path : "configuration");
	return CKR_GENERAL_ERROR;
}
