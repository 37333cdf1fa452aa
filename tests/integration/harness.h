/*
 * Integration test harness: each test gets its own temporary directory
 * with a fresh root of trust (a SoftHSMv2 token, or a swtpm: $EV_ROOT, see
 * env_root), an edgevault configuration and store, and the built module
 * loaded with dlopen() as applications load it.
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

/*
 * Make the directory (in the run's directory that env_run() made, else in
 * $TMPDIR), the root token, the config; load the module (not initialised).
 */
void env_setup(void);

/*
 * Kill the test's recorded children (env_kill_children), finalize (if
 * needed), unload, remove the directory.
 */
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

/*
 * Run a suite; the process's exit status (0 when every test passed). The
 * tests' directories are made in one directory for the run, in $TMPDIR
 * (/tmp when unset), removed at the end whatever the outcome ($EV_KEEP
 * set: kept, and named on stderr).
 */
int env_run(Suite *s);

/* Run a shell command; fail the test when it fails. */
void env_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * The module's log (EDGEVAULT_DEBUG) from env_log_start() to
 * env_log_stop(): this process's stderr goes to a file meanwhile.
 * env_log_stop() gives it back, malloc'ed (the caller frees it).
 */
void env_log_start(void);
char *env_log_stop(void);

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

/* Deadlines (seconds) for what another process or thread must do. */
#define DEADLINE 10
#define CHILD_DEADLINE 60

/* What a child reports when its own deadline passed. */
#define KID_TIMEOUT 0xdead0001UL

/* A malloc'ed printf; the test fails when it cannot be made. */
char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

/* Seconds on the monotonic clock. */
double now_s(void);

/* Sleep for ms milliseconds. */
void nap_ms(long ms);

/* One whole search (Init, FindObjects up to cap handles into out, Final), each asserted CKR_OK: how many. */
CK_ULONG env_find(CK_SESSION_HANDLE h, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *out,
    CK_ULONG cap);

/* C_GetAttributeValue of CKA_LABEL (up to 64 bytes): its return code, not asserted. */
CK_RV get_label(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o);

/*
 * Children that talk to the test through two pipes: a forked process
 * (env_fork) runs fn(rd, wr, arg) and then _exit(0). In the child, put,
 * put_bytes and take send and receive CK_ULONG values (put_bytes: a length
 * then the bytes) and _exit() when the test has gone; in the test, kid_put,
 * kid_get and kid_get_bytes do the same within CHILD_DEADLINE and fail the
 * test when the child has gone or is late.
 */
struct kid {
	pid_t pid;
	int rd; /* from the child */
	int wr; /* to the child */
};

typedef void kid_fn(int rd, int wr, void *arg);

/* Fork a child running fn; fails the test when the pipes or the fork cannot be made. */
void kid_start(struct kid *k, kid_fn *fn, void *arg);

/* Write all of buf (retrying on EINTR): 0, or -1 when the other end has gone. */
int write_all(int fd, const void *buf, size_t len);

/* Read len bytes within timeout_ms (-1: no limit); 0, or -1 on end of file or timeout. */
int read_all(int fd, void *buf, size_t len, int timeout_ms);

/* In a child: send a value / bytes (exit status 4 when the test has gone). */
void put(int fd, CK_ULONG v);
void put_bytes(int fd, const void *buf, CK_ULONG len);

/* In a child: receive a value (exit status 3 when the test has gone). */
CK_ULONG take(int fd);

/* In the test: send to / receive from a child, within CHILD_DEADLINE. */
void kid_put(struct kid *k, CK_ULONG v);
CK_ULONG kid_get(struct kid *k);

/* Receive a length and that many bytes (at most cap) from a child: the length. */
CK_ULONG kid_get_bytes(struct kid *k, CK_BYTE *buf, CK_ULONG cap);

/* The child's next value, checked against want and reported with its name. */
#define kid_expect(k, want, what)                                                          \
	do {                                                                                \
		CK_ULONG got_ = kid_get(k);                                                 \
		ck_assert_msg(got_ == (CK_ULONG)(want), "%s: 0x%lx, expected 0x%lx", (what), \
		    got_, (CK_ULONG)(want));                                                \
	} while (0)

/* Wait (CHILD_DEADLINE) for the child to exit with status 0; close its pipes. */
void kid_done(struct kid *k);

/*
 * Poll C_WaitForSlotEvent(CKF_DONT_BLOCK) every 10 ms until it answers
 * other than CKR_NO_EVENT or DEADLINE has passed: its last answer (*slot
 * is the event's slot on CKR_OK). Asserts nothing: usable in children.
 */
CK_RV env_poll_slot_event(CK_SLOT_ID *slot);

/* In a child: C_Initialize with OS locking; its return code. */
CK_RV kid_init(void);

/*
 * In a child: open a session on slot (rw or not) and log the user in
 * (already logged in counts as done); the first failure.
 */
CK_RV kid_session(CK_SLOT_ID slot, int rw, CK_SESSION_HANDLE *h);

/*
 * In a child: sign msg with CKM_ECDSA_SHA256 by the one private key
 * labelled label (*len: sig's size in, the signature's out); the first
 * failure (CKR_KEY_HANDLE_INVALID when there is no such key).
 */
CK_RV kid_sign_label(CK_SESSION_HANDLE h, const char *label, const char *msg, CK_BYTE *sig,
    CK_ULONG *len);

/*
 * swtpm, the TPM simulator behind the tpm2 root in tests. env_swtpm_start
 * runs `swtpm socket` (TPM 2.0, started, state in state_dir, made if
 * needed) on a free loopback port pair (port: the TPM; port + 1: its
 * control channel), as a recorded child (env_fork): it dies with the test
 * process whatever happens. It returns when the TPM port accepts
 * connections. env_swtpm_stop shuts it down through its control channel
 * (state saved) and reaps it, killing it if it is late; a stopped or
 * never-started one is a no-op.
 */
struct ev_swtpm {
	pid_t pid;
	int port;
	char state[300];
};

void env_swtpm_start(struct ev_swtpm *t, const char *state_dir);

/* The same on a given port pair (port, port + 1), tried a few times while it is busy. */
void env_swtpm_start_on(struct ev_swtpm *t, const char *state_dir, int port);
void env_swtpm_stop(struct ev_swtpm *t);

/*
 * Write the config with [root] backend tpm2 reaching t; root_extra lines
 * added to [root], extra lines appended (either may be NULL).
 */
void env_write_tpm_config(const struct ev_swtpm *t, const char *root_extra, const char *extra);

/*
 * The same, with any TCTI string (tabrmd:..., swtpm:...): [root] backend
 * tpm2, tcti = tcti; root_extra and extra as above. [root] helper is the
 * built edgevault-tpm-helper ($EV_TPM_HELPER, set by make check), unless
 * root_extra has a "helper =" line of its own.
 */
void env_write_tcti_config(const char *tcti, const char *root_extra, const char *extra);

/*
 * tpm2-abrmd, the TPM resource manager, in front of a running swtpm t: a
 * private D-Bus session bus (dbus-daemon; its config, socket and log in
 * dir) and tpm2-abrmd on it (log in dir) under a name of its own, both
 * children made by env_fork, so they die with the test process. It
 * returns when the TPM answers through tpm2-abrmd, and sets
 * DBUS_SESSION_BUS_ADDRESS to the bus for this process and its children
 * (the tabrmd TCTI finds a session bus there); tcti is the TCTI string
 * that reaches it. env_abrmd_stop stops both by PID (SIGTERM, SIGKILL when
 * late) and unsets DBUS_SESSION_BUS_ADDRESS; a stopped or never-started
 * one is a no-op.
 */
struct ev_abrmd {
	pid_t bus_pid;	   /* dbus-daemon */
	pid_t pid;	   /* tpm2-abrmd */
	char address[300]; /* the bus's address */
	char name[64];	   /* tpm2-abrmd's name on it */
	char tcti[128];	   /* tabrmd:bus_name=<name>,bus_type=session */
};

void env_abrmd_start(struct ev_abrmd *a, const struct ev_swtpm *t, const char *dir);
void env_abrmd_stop(struct ev_abrmd *a);

/*
 * The root of trust env_setup makes, chosen by $EV_ROOT:
 *   pkcs11 (default)  a SoftHSMv2 token "root";
 *   tpm2              swtpm (state in <dir>/root-tpm), reached directly;
 *   tpm2-abrmd        the same swtpm behind tpm2-abrmd (env_abrmd_start).
 * env_write_config writes the [root] section for it; env_teardown stops
 * what env_setup started, and a failing test's processes die with it.
 * env_run refuses any other value.
 */
const char *env_root(void);

/*
 * Whether the root is of backend "pkcs11" or "tpm2" (tpm2-abrmd is
 * tpm2; the full name matches too). Suites add the tests that are about
 * one root only under that root: `if (env_root_is("pkcs11"))`.
 */
int env_root_is(const char *backend);

/*
 * After a process was killed: what it left loaded in the root's TPM when
 * that is reached directly (EV_ROOT=tpm2), flushed, as its operator would
 * (tpm2_flushcontext): without a resource manager nobody else does. Does
 * nothing under the other roots.
 */
void env_root_flush_leaks(void);

#endif
