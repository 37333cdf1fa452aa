/*
 * edgevault-tpm-helper: the tpm2 root's operations run in a process of
 * their own, started for one operation and gone after it, when they
 * cannot run in the host's process:
 *
 *  - the host's OpenSSL has a default ENGINE for something ESAPI's own
 *    cryptography uses (OpenSSL's `-engine pkcs11`, ENGINE_set_default,
 *    openssl.cnf default_algorithms): ESAPI's salted sessions would make
 *    their ephemeral key with the engine's EC key method, and libp11's
 *    cannot (doc/key-protection.md, "Hosts whose OpenSSL has a default
 *    ENGINE");
 *  - the TCTI is tabrmd and this process is a fork() child of one that
 *    started a tabrmd TCTI: GLib's D-Bus worker thread did not survive
 *    the fork (doc/key-protection.md, "Several processes").
 *
 * The helper (src/root/tpm2_helper.c) starts with OpenSSL's configuration
 * not loaded, runs the same tpm2 root code in its own process with its
 * own connection, and answers. Everything the operation needs travels in
 * the request (tpm2_wire.h), secrets in secure memory on both sides, over
 * a socketpair on the helper's stdin and stdout. Its log lines come back
 * in the reply and are logged here as the module's own; its stderr is the
 * host's, where the TSS writes its own messages (as it would in process).
 *
 * Every ev_tpm_helper_* call below answers as the tpm2 backend's own
 * function of the same operation would (root.h), and CKR_DEVICE_ERROR,
 * logged with the helper's path, when the helper cannot be started, dies,
 * answers something malformed or nothing within EV_TPM_HELPER_TIMEOUT_S
 * (it is killed then). The host never waits longer, and never gets a
 * SIGPIPE; the helper is reaped by its pid alone (through a pidfd where
 * the kernel has them, so a pid reaped and reused meanwhile is never
 * signalled). One helper at a time per root: each call holds t->lock
 * while its helper runs.
 */
#ifndef EV_TPM2_HELPER_H
#define EV_TPM2_HELPER_H

#include <pthread.h>

#include "root.h"

#define EV_TPM_HELPER_TIMEOUT_S 120

/* The longest associated data the tpm2 root takes, in process or through the helper. */
#define EV_TPM_AAD_MAX 4096

/* The installed helper: [root] helper's default. */
#ifndef EV_TPM_HELPER_PATH
#define EV_TPM_HELPER_PATH "/usr/local/libexec/edgevault/edgevault-tpm-helper"
#endif

/* What the helper needs to reach the same TPM and primary as this process's root would. */
struct ev_tpm_target {
	const char *helper; /* absolute path */
	const char *tcti;
	pthread_mutex_t *lock; /* the root's: not held by the caller, held while the helper runs */
	uint32_t primary_handle; /* 0: the transient primary */
	unsigned char pinned[EV_ROOT_NAME_MAX];
	size_t pinned_len; /* 0: none recorded */
};

/*
 * Whether this operation must run in the helper (the two cases above).
 * Cheap: a few table lookups in OpenSSL and getpid(). When it answers 0
 * for a tabrmd TCTI, the caller is about to use a tabrmd TCTI in this
 * process: this process's pid is recorded, so that its fork() children
 * answer 1.
 */
int ev_tpm_helper_wanted(const char *tcti);

/*
 * Whether the TCTI string names tpm2-abrmd's TCTI: "tabrmd" in its name
 * part (before any ':'), as "tabrmd:bus_type=session" or
 * "libtss2-tcti-tabrmd.so.0". tcti not NULL.
 */
int ev_tcti_is_tabrmd(const char *tcti);

/*
 * In all four: t, and every pointer the operation reads or writes, not
 * NULL (aad and nonce may be NULL with a length of 0). Besides the codes
 * listed: CKR_DEVICE_ERROR (logged) when the helper gives no well-formed
 * answer, CKR_GENERAL_ERROR when t->lock cannot be taken, CKR_HOST_MEMORY,
 * and any code the helper's own operation returned (root.h).
 */

/*
 * Seal plain (1..EV_WIRE_SECRET_MAX bytes, else CKR_DATA_LEN_RANGE) bound
 * to aad (at most EV_TPM_AAD_MAX bytes, else CKR_ARGUMENTS_BAD) and opts
 * (may be NULL). CKR_OK: *blob (malloc'ed, the caller's) and *bloblen.
 */
EV_MUST_CHECK CK_RV ev_tpm_helper_seal(const struct ev_tpm_target *t, const unsigned char *aad,
    size_t aadlen, const ev_secret *plain, const ev_seal_opts *opts, unsigned char **blob,
    size_t *bloblen);
/*
 * Unseal blob (at most EV_WIRE_BLOB_MAX bytes, else
 * CKR_ENCRYPTED_DATA_INVALID) with aad (as for seal). CKR_OK: *plain
 * (secure memory, the caller's). opts (may be NULL): pcrs set on any
 * answer from the helper, changed on EVR_PCR_MISMATCH.
 */
EV_MUST_CHECK CK_RV ev_tpm_helper_unseal(const struct ev_tpm_target *t, const unsigned char *aad,
    size_t aadlen, const unsigned char *blob, size_t bloblen, ev_unseal_opts *opts,
    ev_secret **plain);
/* A quote of pcrs over nonce into *q (its parts, each not empty on CKR_OK). */
EV_MUST_CHECK CK_RV ev_tpm_helper_quote(const struct ev_tpm_target *t, uint32_t pcrs,
    const unsigned char *nonce, size_t nonce_len, struct ev_quote *q);
/*
 * The primary's name into name, as ev_root_tpm2_name: *len in (name's
 * size) and out (the name's); CKR_BUFFER_TOO_SMALL when it does not fit.
 */
EV_MUST_CHECK CK_RV ev_tpm_helper_name(const struct ev_tpm_target *t, unsigned char *name,
    size_t *len);

/*
 * Whether OpenSSL in this process has a default ENGINE for anything
 * ESAPI's cryptography uses (RSA, EC, RAND, the EC, RSA and HMAC key
 * methods, SHA-1/256/384/512, AES-CFB); its id into id (NUL-terminated,
 * truncated) when so. Kept apart (src/root/ossl_engine.c): the ENGINE
 * API is deprecated in OpenSSL 3.
 */
int ev_ossl_default_engine(char *id, size_t idlen);

#endif
