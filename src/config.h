/*
 * The configuration file: INI, parsed with libinih.
 * Path: $EDGEVAULT_CONF, else /etc/edgevault/edgevault.conf.
 * conf/edgevault.conf documents every setting.
 */
#ifndef EV_CONFIG_H
#define EV_CONFIG_H

#include "common.h"
#include "secmem.h"

#define EV_CONFIG_DEFAULT_PATH "/etc/edgevault/edgevault.conf"
#define EV_DEVICE_ID_MAX 255 /* [device] id bytes at most (audit lines carry it whole) */

/*
 * A zone's policy: [policy] gives the defaults for every zone, [zone N]
 * (N >= 1, the zone id) overrides any of its keys for one zone.
 * Durations are whole seconds.
 */
typedef struct ev_policy {
	int require_attestation;  /* require_attestation (default false) */
	int require_nonce;        /* require_nonce (default false) */
	int auto_rotate;          /* auto_rotate (default false) */
	int64_t max_evidence_age; /* max_evidence_age (default 3600; 1 .. 31536000) */
	int64_t rotation_period;  /* rotation_period (default 0 = never due; 0 .. 3153600000) */
	int64_t grace_period;     /* grace_period (default 86400; 0 .. 3153600000) */
	/* pcrs: PCRs (bit i = PCR i, SHA-256 bank, 0 .. 23) the zone key is sealed to; 0: none.
	 * "pcrs = 0,7"; "none" for none. Backend tpm2 only. */
	uint32_t pcrs;
} ev_policy;

/* The evidence provider ([attestation] provider). */
typedef enum ev_attest_kind {
	EV_ATTEST_NONE = 0,   /* no provider (default): gated zones are refused at load */
	EV_ATTEST_RESULT,     /* "result": a signed attestation result file */
	EV_ATTEST_TPM2_QUOTE, /* "tpm2-quote": a TPM quote against a signed reference policy */
} ev_attest_kind;

/* When the audit file is flushed to disk ([audit] fsync). */
typedef enum ev_audit_fsync {
	EV_AUDIT_FSYNC_ALWAYS = 0,     /* "always" (default): after every line */
	EV_AUDIT_FSYNC_CHECKPOINT = 1, /* "checkpoint": after each checkpoint and at C_Finalize */
	EV_AUDIT_FSYNC_NEVER = 2,      /* "never": left to the kernel */
} ev_audit_fsync;

typedef struct ev_zone_policy {
	int64_t zone;
	ev_policy policy;
} ev_zone_policy;

typedef struct ev_config {
	char *path;             /* the file it was read from */
	char *store_dir;        /* [store] dir (required) */
	char *device_id;        /* [device] id (default: the host name), 1..EV_DEVICE_ID_MAX bytes, printable UTF-8 */
	char *root_backend;     /* [root] backend: "pkcs11" (default) or "tpm2" */
	char *root_module;      /* [root] module: upstream PKCS#11 module path */
	char *root_token_label; /* [root] token_label */
	char *root_pin_file;    /* [root] pin_file: file holding the upstream user PIN */
	char *root_pin_env;     /* [root] pin_env: environment variable holding it */
	char *root_key_label;   /* [root] key_label (default "edgevault-root") */
	char *root_tcti;        /* [root] tcti: TCTI configuration string (tpm2; required) */
	/* [root] helper: edgevault-tpm-helper's absolute path (tpm2; NULL: the installed one) */
	char *root_helper;
	/* [root] primary_handle: persistent storage primary (tpm2; 0: create a transient one) */
	uint32_t root_primary_handle;
	unsigned pin_max_fails; /* [pin] max_fails: failed logins before lockout (default 10) */
	unsigned long long argon2_ops;  /* [pin] argon2_ops (default: libsodium's INTERACTIVE) */
	size_t argon2_mem;      /* [pin] argon2_mem_kib * 1024 (default: INTERACTIVE) */
	/* [revocation] public_key: the revocation authority's Ed25519 key (base64) */
	unsigned char revocation_key[32];
	int has_revocation_key;
	char *revocation_dir;   /* [revocation] watch_dir: where lists are dropped (NULL: none) */
	ev_attest_kind attest;  /* [attestation] provider */
	/* [attestation] verifier_key: the verifier's Ed25519 key (base64); required by both providers */
	unsigned char verifier_key[32];
	int has_verifier_key;
	char *attest_result_path; /* [attestation] result_path; required for "result" */
	char *attest_reference_path; /* [attestation] reference_path; required for "tpm2-quote" */
	uint32_t attest_pcrs;   /* [attestation] pcrs: SHA-256 PCRs quoted (bit i: PCR i); "tpm2-quote" */
	int64_t clock_skew;     /* [attestation] clock_skew: seconds evidence may be dated ahead (default 60; 0 .. 3600) */
	int audit_enabled;      /* [audit] enabled (default true) */
	char *audit_file;       /* [audit] file (NULL: <store dir>/audit.log) */
	int audit_syslog;       /* [audit] syslog: each line also to syslog (default true) */
	ev_audit_fsync audit_fsync; /* [audit] fsync (default always) */
	unsigned audit_checkpoint_lines; /* [audit] checkpoint_lines (default 100; 1 .. 1000000) */
	/* [audit] checkpoint_interval: seconds after which the next line also brings a
	 * checkpoint (default 3600; 0: by lines only) */
	int64_t audit_checkpoint_interval;
	/* [audit] counters_flush: seconds between flushes of per-key use counts (default 60; 1 .. 86400) */
	int64_t audit_counters_flush;
	ev_policy policy;       /* [policy]: every zone's defaults */
	ev_zone_policy *zones;  /* [zone N] sections, merged over [policy], ascending by zone */
	size_t nzones;
} ev_config;

/*
 * The policy of a zone: its [zone N] section merged over [policy], or
 * [policy] alone. Never NULL; points into c.
 */
const ev_policy *ev_config_policy(const ev_config *c, int64_t zone);

/* The path to read: $EDGEVAULT_CONF if set and non-empty, else the default. */
const char *ev_config_path(void);

/*
 * Read and check a configuration file. On failure *out is NULL, err names
 * the file, line and problem, and the result is CKR_GENERAL_ERROR (file
 * unreadable or invalid) or CKR_HOST_MEMORY.
 */
CK_RV ev_config_load(const char *path, ev_config **out, char *err, size_t errlen);

/* Free. NULL is a no-op. */
void ev_config_free(ev_config *c);

/*
 * The upstream token's user PIN, from pin_file (trailing newline removed)
 * or pin_env. CKR_GENERAL_ERROR with a message when neither gives one.
 */
CK_RV ev_config_root_pin(const ev_config *c, ev_secret **pin, char *err, size_t errlen);

#endif
