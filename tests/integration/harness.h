/*
 * Integration test harness: each test gets its own temporary directory
 * with a fresh SoftHSMv2 token as the root, an edgevault configuration and
 * store, and the built module loaded with dlopen() as applications load it.
 */
#ifndef EV_HARNESS_H
#define EV_HARNESS_H

#include <check.h>

#include <openssl/evp.h>

#include "pkcs11/pkcs11.h"

#define SO_PIN "so-secret"
#define USER_PIN "user-secret"
#define ROOT_PIN "root-pin-1234"

struct ev_env {
	char dir[256];
	void *dl;
	CK_FUNCTION_LIST_3_0 *f;
	CK_FUNCTION_LIST *f240;
};

/* The current test's environment (set up by env_setup). */
extern struct ev_env env;

/* Make the directory, the root token, the config; load the module (not initialised). */
void env_setup(void);

/* Finalize (if needed), unload, remove the directory. */
void env_teardown(void);

/* Write the config with extra lines appended (for tests that change it). */
void env_write_config(const char *extra);

/* C_Initialize with OS locking. */
void env_init(void);

/* Create a zone on the free slot with SO_PIN, set USER_PIN; return its slot. */
CK_SLOT_ID env_new_zone(const char *label);

/* Open a session on slot (rw or not) and, if user, log the user in. */
CK_SESSION_HANDLE env_session(CK_SLOT_ID slot, int rw, int user);

/* The 32-byte blank-padded form of a label. */
void env_label(CK_UTF8CHAR out[32], const char *label);

/* Curve parameters (DER of the named curve's OID) for CKA_EC_PARAMS. */
extern const CK_BYTE env_p256[10];
extern const CK_BYTE env_p384[7];
extern const CK_BYTE env_ed25519[5];

/*
 * Generate an EC or Edwards key pair (params: DER of the curve OID) with
 * CKA_LABEL = label on both halves and CKA_ID = label on the private one;
 * CKR_OK asserted.
 */
void env_gen_ec(CK_SESSION_HANDLE h, CK_MECHANISM_TYPE m, const CK_BYTE *params, CK_ULONG plen,
    const char *label, CK_BBOOL token, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv);

/* The public key of an object as OpenSSL sees it, from CKA_PUBLIC_KEY_INFO. */
EVP_PKEY *env_spki(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o);

/* A PKCS#11 ECDSA signature (raw r||s) as DER for OpenSSL; *der is OPENSSL_free'd by the caller. */
int env_ecdsa_der(const CK_BYTE *sig, CK_ULONG len, unsigned char **der);

/* Run a suite; the process's exit status (0 when every test passed). */
int env_run(Suite *s);

/* Run a shell command; fail the test when it fails. */
void env_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#include <sys/types.h>

/*
 * Revocation: write the config with a [revocation] section pinning pk64
 * (base64 of the authority's Ed25519 public key) and watching
 * env_watch_dir(), which is created; extra lines are appended after it.
 */
void env_revocation_config(const char *pk64, const char *extra);

/* <dir>/revocations: the watched directory. */
const char *env_watch_dir(void);

/*
 * Drop a file into the watched directory as a transport does: written
 * beside it first, then renamed into it under name.
 */
void env_drop(const char *name, const void *buf, size_t len);

/*
 * Run an SQL query with the sqlite3 program on the store's database; the
 * first column of the first row as a number (the test fails if there is
 * none).
 */
long env_sql_long(const char *sql);

/*
 * The same, the whole output (every row, one a line, columns separated
 * by "|") as a malloc'ed string the caller frees; "" when there is none.
 */
char *env_sql_text(const char *sql);

/*
 * Child processes. env_fork() forks and records the child's PID; the child
 * is killed when the test process dies (PR_SET_PDEATHSIG), so a failing
 * test never leaves one behind. A child must leave with _exit(), never by
 * returning or through a ck_assert.
 */
pid_t env_fork(void);

/*
 * Wait for a recorded child for up to seconds: its exit status; -1 when it
 * did not exit normally or did not end in time (then it is killed).
 */
int env_wait_child(pid_t pid, int seconds);

/* SIGKILL and reap every recorded child still there. */
void env_kill_children(void);

#endif
