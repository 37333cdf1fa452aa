/*
 * What the edgevault tool's command files share (tools/edgevault.c):
 * the loaded module, output helpers, argument parsing, PINs. Messages go
 * to stderr prefixed "edgevault: "; commands return the exit code (0
 * success, 1 failure, 2 usage).
 */
#ifndef EV_TOOL_H
#define EV_TOOL_H

#include <getopt.h>
#include <stdint.h>

#include "config.h"
#include "pkcs11/edgevault.h"
#include "secmem.h"
#include "store.h"

/* The module's path (--module, $EDGEVAULT_MODULE, or the default). */
extern const char *module_path;
/* --json was given. */
extern int json;

/* The configuration ($EDGEVAULT_CONF or the default); 0, or 1 after saying why. */
int load_config(ev_config **cfg);

/*
 * The module, loaded and initialised as an application would (NULL after
 * saying why); close_module() finalises and unloads it (a warning on
 * stderr when C_Finalize fails).
 */
CK_FUNCTION_LIST_3_0 *open_module(void **dl);
void close_module(CK_FUNCTION_LIST_3_0 *f, void *dl);

/* The admin interface of the module open_module() loaded; NULL after saying why. */
EV_ADMIN_FUNCTION_LIST *admin_interface(void);

/* A CKR as its name (static buffer for unknown codes). */
const char *ckr_name(CK_RV rv);

/* Output: JSON string literals, blank-padded fields, times, bytes. */
void json_mem(const void *s, size_t n);
void json_str(const char *s);
void unpad(char *out, const CK_UTF8CHAR *in, size_t len);
const char *iso_time(int64_t t, char buf[32]);
int is_utf8(const unsigned char *p, size_t n);
void print_hex(const unsigned char *p, size_t n);
void print_text(const unsigned char *p, size_t n, int quoted);

/*
 * Subcommand options: sub_begin(), then sub_option() until -1 ('?' after
 * saying what is wrong). Options must be spelt in full.
 */
void sub_begin(void);
int sub_option(const char *cmd, int argc, char **argv, const struct option *opts);
void print_option_name(const char *arg);

/* A whole decimal number in [min, max]: 0, or -1. */
int parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out);
/* Hex, two digits per byte, at least one byte; *out malloc'ed. 0, or -1. */
int parse_hex(const char *s, unsigned char **out, size_t *outlen);

/* Files: read whole (at most max; -2 when larger), write whole, atomically. */
int read_all(int fd, size_t max, unsigned char **out, size_t *outlen);
int read_path(const char *path, size_t max, unsigned char **out, size_t *outlen);
int write_all(int fd, const void *p, size_t n);
int write_file_atomic(const char *path, const void *data, size_t len);

/*
 * Signed documents for the devices (revocation lists, attestation
 * results): what `revocation keygen|sign` and `attest keygen|sign` differ
 * in. Both make an Ed25519 signing key whose public half goes in the
 * devices' configuration, and sign only what the devices would read.
 */
struct signed_kind {
	const char *keygen_cmd; /* "revocation keygen": for option errors and usage */
	const char *config_key; /* "public_key": the configuration line keygen prints */
	const char *key_name;   /* "signing key": what keygen says it wrote */
	const char *section;    /* "revocation": where the line goes in the configuration */
	const char *type;       /* EV_SIGNED_REVOCATION: the envelope's type */
	const char *noun;       /* "list": in "cannot sign the list" */
	size_t max;             /* the devices' limit on a document and on its envelope */
	/* The devices' parser: CKR_OK with *parsed (the caller's), else a CKR and err. */
	CK_RV (*check)(const unsigned char *doc, size_t len, void **parsed, char *err,
	    size_t errlen);
};

/* `<keygen_cmd> --out KEYFILE`: the key written 0600, its public key printed. Exit code. */
int signkey_keygen(const struct signed_kind *k, int argc, char **argv);

/*
 * Sign doc (when NULL: read from in, "-" for stdin) with the key in
 * key_path, once k->check accepts it, and write the envelope to out
 * atomically, or to stdout when out is NULL. 0, or 1 after saying why.
 * Either way *parsed is what k->check made of the document (NULL when it
 * did not accept it), the caller's to free.
 */
int sign_document(const struct signed_kind *k, const char *key_path, const char *in,
    const unsigned char *doc, size_t doclen, const char *out, void **parsed);

/*
 * A PIN of a zone (who: CKU_SO or CKU_USER): from file when not NULL
 * (mode 0600 required), else $EDGEVAULT_SO_PIN / $EDGEVAULT_PIN (wiped and
 * unset after reading), else a no-echo prompt. NULL after saying why;
 * *usage_err set when there was no source at all.
 */
ev_secret *get_pin(CK_USER_TYPE who, const char *file, unsigned long zone, int *usage_err);

/* fflush(stdout): 0, or 1 after saying that the output could not be written. */
int flush_stdout(void);

/* --zone's value, a zone number (1 or more): 0, or 2 (usage) after saying why. */
int parse_zone(const char *s, unsigned long *zone);

/*
 * Why a zone refused, when the code alone does not say it: words that
 * complete a message on stderr (no line end), or nothing.
 */
void explain_zone_refusal(CK_RV rv, unsigned long zone);

/* open_zone_session() flags. */
#define ZS_RW 0x1          /* a read/write session (else read-only) */
#define ZS_SAY_NO_ZONE 0x2 /* a zone that is not there is "no zone N (CKR_...)" */

/*
 * A session on zone and, unless pin is NULL, who (CKU_SO or CKU_USER)
 * logged in with pin. CKR_OK with *h; else the failure after saying why
 * ("cannot open a session on zone N: CKR_...", "SO login to zone N
 * failed: CKR_...", with explain_zone_refusal() for CKR_FUNCTION_REJECTED),
 * nothing left open and *h CK_INVALID_HANDLE.
 */
CK_RV open_zone_session(CK_FUNCTION_LIST_3_0 *f, unsigned long zone, int flags, CK_USER_TYPE who,
    const ev_secret *pin, CK_SESSION_HANDLE *h);

/*
 * Log out and close a session of open_zone_session(); CK_INVALID_HANDLE:
 * nothing to do. A failure is a warning on stderr (the command's outcome
 * stands); none for C_Logout's CKR_USER_NOT_LOGGED_IN (opened without a PIN).
 */
void close_zone_session(CK_FUNCTION_LIST_3_0 *f, CK_SESSION_HANDLE h);

/*
 * The start of a `<cmd> [--json]` that reads the store (cmd: "attest
 * show"): its options (--json sets json), the configuration, and the
 * store opened read-only. 0 with *store, the caller's to close; else 1,
 * or 2 for usage, after saying why (*store NULL).
 */
int show_store_open(const char *cmd, int argc, char **argv, ev_store **store);

/* Commands in their own files: argv[0] is the command's first word. */
int cmd_attest(int argc, char **argv);   /* tools/cmd_attest.c */
int cmd_rotate(int argc, char **argv);   /* tools/cmd_rotate.c */
int cmd_policy(int argc, char **argv);   /* tools/cmd_rotate.c */
int cmd_zone_rebind(int argc, char **argv); /* tools/cmd_rotate.c: argv[0] is "rebind" */
int cmd_status(int argc, char **argv);   /* tools/cmd_status.c: `status [--json]` */
int cmd_metrics(int argc, char **argv);  /* tools/cmd_status.c: `metrics [--out FILE]` */
int cmd_audit(int argc, char **argv);    /* tools/cmd_audit.c */

#endif
