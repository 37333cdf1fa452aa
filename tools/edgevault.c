/*
 * edgevault: the administration tool.
 *
 *   edgevault [--config FILE] [--module FILE] init
 *   edgevault [--config FILE] [--module FILE] status [--json]
 *   edgevault [--config FILE] [--module FILE] zone list [--json]
 *   edgevault [--config FILE] [--module FILE] zone rebind --zone N [--so-pin-file FILE]
 *       [--json]
 *   edgevault revocation keygen --out KEYFILE
 *   edgevault revocation sign --key KEYFILE [--in DOC] [--out FILE]
 *   edgevault [--config FILE] [--module FILE] revocation apply FILE
 *   edgevault [--config FILE] revocation show [--json]
 *   edgevault [--config FILE] [--module FILE] revoke key --zone N --label LABEL
 *       [--id HEX] [--generation G] --reason TEXT [--so-pin-file FILE]
 *   edgevault [--config FILE] [--module FILE] revoke zone --zone N --reason TEXT
 *       [--so-pin-file FILE]
 *   edgevault [--config FILE] [--module FILE] audit verify|show|summary|checkpoint ...
 *       (tools/cmd_audit.c)
 *
 * `init` prepares what the module stands on (checks the configuration,
 * creates the store, reaches the root and creates the root key if the
 * store has no zone yet); everything about
 * zones goes through the module itself, loaded as applications load it, so
 * the tool passes the same gates they do. Revocations too go through the
 * module (its admin interface), so the store is only ever changed by the
 * module's own code; `revocation show` reads the store read-only.
 *
 * `revocation keygen` and `sign` are for the revocation authority, on its
 * own machine: they need neither configuration nor module.
 *
 * Exit codes: 0 success, 1 the operation failed, 2 usage error.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "config.h"
#include "pkcs11/edgevault.h"
#include "revlist.h"
#include "root/root.h"
#include "secmem.h"
#include "signed.h"
#include "store.h"
#include "tool.h"

#ifndef EV_PKCS11DIR
#define EV_PKCS11DIR "/usr/lib/pkcs11"
#endif

/* Longest PIN read from a file, the environment or the terminal. */
#define PIN_MAX 256

const char *module_path;
int json;
static CK_RV (*get_interface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS);

static void
usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: edgevault [--config FILE] [--module FILE] COMMAND\n"
	    "\n"
	    "commands:\n"
	    "  init            check the configuration, reach the root, create the root key\n"
	    "                  and the store\n"
	    "  status [--json] configuration, root and store health, zones, their keys and\n"
	    "                  how often each was used, the audit trail\n"
	    "  metrics [--out FILE]\n"
	    "                  the same numbers in Prometheus text format, to stdout or\n"
	    "                  written atomically to FILE (node_exporter's textfile collector)\n"
	    "  zone list [--json]\n"
	    "                  the zones (tokens) and their state\n"
	    "  zone rebind --zone N [--json]\n"
	    "                  seal zone N's key again to the PCRs its policy names (pcrs),\n"
	    "                  at the values they hold now (the zone's SO logs in)\n"
	    "  revocation keygen --out KEYFILE\n"
	    "                  a new signing key for revocation lists (0600); prints the\n"
	    "                  public_key line for the devices' [revocation] section\n"
	    "  revocation sign --key KEYFILE [--in DOC] [--out FILE]\n"
	    "                  check a revocation list (JSON, stdin by default) and sign it\n"
	    "                  (stdout by default)\n"
	    "  revocation apply FILE\n"
	    "                  apply a signed revocation list now\n"
	    "  revocation show [--json]\n"
	    "                  the revocation history: lists read, local revocations, and\n"
	    "                  what each revoked\n"
	    "  revoke key --zone N --label LABEL [--id HEX] [--generation G] --reason TEXT\n"
	    "                  revoke keys of zone N (the zone's SO logs in)\n"
	    "  revoke zone --zone N --reason TEXT\n"
	    "                  revoke zone N itself: its token leaves the slot\n"
	    "  attest keygen --out KEYFILE\n"
	    "                  a new verifier signing key for attestation results and TPM\n"
	    "                  reference policies (0600);\n"
	    "                  prints the verifier_key line for the [attestation] section\n"
	    "  attest sign --key KEYFILE [--in DOC] [--out FILE]\n"
	    "  attest sign --key KEYFILE --device ID --zone N[,N...] [--ttl SECONDS |\n"
	    "      --expires-at UNIX] [--issued-at UNIX] [--nonce HEX] [--out FILE]\n"
	    "                  check an attestation result (JSON, stdin by default, or built\n"
	    "                  from the fields) and sign it (stdout by default)\n"
	    "  attest reference --key KEYFILE [--in DOC] [--out FILE]\n"
	    "  attest reference --key KEYFILE --device ID --pcrs N[,N...] --digest HEX\n"
	    "      --ak HEX --seq N [--zone N[,N...]] (--ttl SECONDS | --expires-at UNIX)\n"
	    "      [--issued-at UNIX] [--out FILE]\n"
	    "                  check a TPM reference policy (provider tpm2-quote: the SHA-256\n"
	    "                  digest of the PCRs' expected values, the attestation key's TPM\n"
	    "                  name, a sequence number) and sign it\n"
	    "  attest nonce --zone N\n"
	    "                  a fresh device nonce for the verifier's next result (hex)\n"
	    "  attest check --zone N [--json]\n"
	    "                  appraise the evidence for zone N now: accepted or refused\n"
	    "  attest show [--json]\n"
	    "                  the attestation history\n"
	    "  rotate key --zone N --label LABEL [--id HEX]\n"
	    "                  rotate the private (with its public) and secret keys labelled\n"
	    "                  LABEL: a new generation, new id (the zone's user logs in)\n"
	    "  rotate zone --zone N\n"
	    "                  rotate every key of zone N\n"
	    "  rotate due [--zone N]\n"
	    "                  rotate the keys past their rotation period, in zone N or in\n"
	    "                  every zone (with the same user PIN for each)\n"
	    "  rotate zone-key --zone N\n"
	    "                  a new zone key, every key wrapped again (the zone's SO logs in)\n"
	    "  policy show [--zone N] [--json]\n"
	    "                  the zones' attestation and rotation policies\n"
	    "  audit verify [--key BASE64] [--file PATH] [--json]\n"
	    "                  check the audit trail's chain, checkpoints and head, with the\n"
	    "                  checkpoint key the module confirms under the root, or --key\n"
	    "  audit show [--zone N] [--label LABEL] [--id HEX] [--event KIND[,KIND...]]\n"
	    "      [--since T] [--until T] [--file PATH] [--json]\n"
	    "                  the audit trail's events, filtered (T: 2026-11-24T10:00:00Z or\n"
	    "                  2026-11-24, UTC; KIND: key.rotated, or a family: key)\n"
	    "  audit summary [--since T] [--until T] [--file PATH] [--json]\n"
	    "                  per zone: keys now, and what the trail records over the period\n"
	    "  audit checkpoint\n"
	    "                  have the module sign a checkpoint of the audit trail now\n"
	    "\n"
	    "revoke and zone rebind take the SO PIN from --so-pin-file FILE, else\n"
	    "$EDGEVAULT_SO_PIN, else ask on the terminal; never from the command line.\n"
	    "rotate takes the user PIN from --user-pin-file FILE, else $EDGEVAULT_PIN (and\n"
	    "rotate zone-key the SO PIN as revoke does), else asks on the terminal.\n"
	    "\n"
	    "The configuration is --config, else $EDGEVAULT_CONF, else %s.\n"
	    "The module is --module, else $EDGEVAULT_MODULE, else %s/edgevault-pkcs11.so.\n",
	    EV_CONFIG_DEFAULT_PATH, EV_PKCS11DIR);
}

int
load_config(ev_config **cfg)
{
	char err[512] = "";

	if (ev_config_load(ev_config_path(), cfg, err, sizeof(err)) != CKR_OK) {
		fprintf(stderr, "edgevault: configuration: %s\n", err);
		return 1;
	}
	return 0;
}

static int
cmd_init(void)
{
	ev_config *cfg = NULL;
	ev_root *root = NULL;
	ev_store *store = NULL;
	int64_t *ids = NULL;
	size_t nzones = 0;
	char err[512] = "";
	int rc = 1;

	if (load_config(&cfg) != 0)
		return 1;
	printf("configuration: %s: ok\n", cfg->path);
	if (ev_store_open(cfg->store_dir, EV_STORE_CREATE, &store, err, sizeof(err)) != CKR_OK) {
		fprintf(stderr, "edgevault: store: %s\n", err);
		goto out;
	}
	/*
	 * The root key is created only for a store without zones, as the
	 * module does: with zones, a missing key means a wrong token or key
	 * label, and a new key would open none of them.
	 */
	if (ev_store_zone_list(store, &ids, &nzones) != CKR_OK) {
		fprintf(stderr, "edgevault: store: cannot list the zones\n");
		goto out;
	}
	if (ev_root_open(cfg, nzones == 0 ? EV_ROOT_CREATE_KEY : 0, &root, err, sizeof(err)) !=
	    CKR_OK) {
		fprintf(stderr, "edgevault: root of trust: %s\n", err);
		if (nzones > 0)
			fprintf(stderr, "edgevault: the store has %zu zone(s) sealed by the root "
			    "key; not creating a new one\n", nzones);
		goto out;
	}
	/* A TPM has no token or key label (printing them printed "(null)"). */
	if (cfg->root_tcti != NULL && strcmp(cfg->root_backend, "tpm2") == 0)
		printf("root of trust: tpm2 TCTI \"%s\": ok\n", cfg->root_tcti);
	else
		printf("root of trust: %s token \"%s\", key \"%s\": ok\n", cfg->root_backend,
		    cfg->root_token_label, cfg->root_key_label);
	printf("store: %s/%s: ok\n", cfg->store_dir, EV_STORE_FILE);
	rc = 0;
out:
	free(ids);
	ev_store_close(store);
	ev_root_free(root);
	ev_config_free(cfg);
	return rc;
}

/* The module, loaded and initialised as an application would. */
CK_FUNCTION_LIST_3_0 *
open_module(void **dl)
{
	CK_INTERFACE *iface = NULL;
	CK_FUNCTION_LIST_3_0 *f;
	CK_RV rv;

	*dl = dlopen(module_path, RTLD_NOW | RTLD_LOCAL);
	if (*dl == NULL) {
		fprintf(stderr, "edgevault: cannot load the module %s: %s\n", module_path,
		    dlerror());
		return NULL;
	}
	*(void **)&get_interface = dlsym(*dl, "C_GetInterface");
	if (get_interface == NULL || get_interface(NULL, NULL, &iface, 0) != CKR_OK) {
		fprintf(stderr, "edgevault: %s is not a PKCS#11 3.0 module\n", module_path);
		dlclose(*dl);
		return NULL;
	}
	f = iface->pFunctionList;
	rv = f->C_Initialize(&(CK_C_INITIALIZE_ARGS){ .flags = CKF_OS_LOCKING_OK });
	if (rv != CKR_OK) {
		fprintf(stderr,
		    "edgevault: the module did not start (CKR 0x%lx); run with "
		    "EDGEVAULT_DEBUG=1 for its reason, or `edgevault init` to check the setup\n",
		    rv);
		dlclose(*dl);
		return NULL;
	}
	return f;
}

void
close_module(CK_FUNCTION_LIST_3_0 *f, void *dl)
{
	CK_RV rv = f->C_Finalize(NULL);

	/* The command's work is done; what the module did not finish is worth a word. */
	if (rv != CKR_OK)
		fprintf(stderr, "edgevault: warning: C_Finalize: %s\n", ckr_name(rv));
	dlclose(dl);
}

/*
 * A string as a JSON string literal. Token labels are chosen by whoever
 * initialises a token and paths by the configuration: either may hold a
 * quote, a backslash or a control character.
 */
void
json_mem(const void *s, size_t n)
{
	const unsigned char *p = s;
	size_t i;

	putchar('"');
	for (i = 0; i < n; i++) {
		if (p[i] == '"' || p[i] == '\\')
			printf("\\%c", p[i]);
		else if (p[i] < 0x20 || p[i] == 0x7f)
			printf("\\u%04x", p[i]);
		else
			putchar(p[i]);
	}
	putchar('"');
}

void
json_str(const char *s)
{
	json_mem(s, strlen(s));
}

/* A blank-padded PKCS#11 text field as a C string. */
void
unpad(char *out, const CK_UTF8CHAR *in, size_t len)
{
	while (len > 0 && in[len - 1] == ' ')
		len--;
	memcpy(out, in, len);
	out[len] = '\0';
}

/* One zone per line (or JSON array element). Returns the number of zones, -1 on error. */
static int
list_zones(CK_FUNCTION_LIST_3_0 *f, int print)
{
	CK_SLOT_ID *slots = NULL;
	CK_ULONG n = 0, i;
	CK_RV rv = CKR_BUFFER_TOO_SMALL;
	int zones = 0, tries;

	/* Another process may add a zone between the two calls: ask again. */
	for (tries = 0; tries < 4 && rv == CKR_BUFFER_TOO_SMALL; tries++) {
		free(slots);
		slots = NULL;
		if (f->C_GetSlotList(CK_FALSE, NULL, &n) != CKR_OK)
			return -1;
		slots = calloc(n + 1, sizeof(*slots));
		if (slots == NULL)
			return -1;
		rv = f->C_GetSlotList(CK_FALSE, slots, &n);
	}
	if (rv != CKR_OK) {
		free(slots);
		return -1;
	}
	if (print && json)
		printf("[");
	else if (print)
		printf("%-6s %-32s %-16s %s\n", "SLOT", "LABEL", "SERIAL", "STATE");
	for (i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;
		char label[33], serial[17];
		const char *state;

		if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
		    !(ti.flags & CKF_TOKEN_INITIALIZED))
			continue; /* the free slot */
		unpad(label, ti.label, sizeof(ti.label));
		unpad(serial, ti.serialNumber, sizeof(ti.serialNumber));
		if (ti.flags & CKF_USER_PIN_LOCKED)
			state = "user-pin-locked";
		else if (!(ti.flags & CKF_USER_PIN_INITIALIZED))
			state = "no-user-pin";
		else
			state = "ready";
		if (print && json) {
			printf("%s{\"slot\":%lu,\"label\":", zones ? "," : "", slots[i]);
			json_str(label);
			printf(",\"serial\":");
			json_str(serial);
			printf(",\"state\":\"%s\"}", state);
		} else if (print)
			printf("%-6lu %-32s %-16s %s\n", slots[i], label, serial, state);
		zones++;
	}
	if (print && json)
		printf("]\n");
	free(slots);
	return zones;
}

static int
cmd_zone_list(void)
{
	CK_FUNCTION_LIST_3_0 *f;
	void *dl;
	int n;

	f = open_module(&dl);
	if (f == NULL)
		return 1;
	n = list_zones(f, 1);
	close_module(f, dl);
	if (n < 0) {
		fprintf(stderr, "edgevault: cannot read the zones from the module\n");
		return 1;
	}
	return 0;
}

/* Names for the answers an operator meets here; the rest in hex. */
const char *
ckr_name(CK_RV rv)
{
	static const struct {
		CK_RV rv;
		const char *name;
	} names[] = {
		{ CKR_OK, "CKR_OK" },
		{ CKR_HOST_MEMORY, "CKR_HOST_MEMORY" },
		{ CKR_SLOT_ID_INVALID, "CKR_SLOT_ID_INVALID" },
		{ CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR" },
		{ CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED" },
		{ CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD" },
		{ CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR" },
		{ CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY" },
		{ CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED" },
		{ CKR_DATA_INVALID, "CKR_DATA_INVALID" },
		{ CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE" },
		{ CKR_FUNCTION_NOT_SUPPORTED, "CKR_FUNCTION_NOT_SUPPORTED" },
		{ CKR_FUNCTION_REJECTED, "CKR_FUNCTION_REJECTED" },
		{ CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID" },
		{ CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT" },
		{ CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE" },
		{ CKR_PIN_LOCKED, "CKR_PIN_LOCKED" },
		{ CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED" },
		{ CKR_SESSION_COUNT, "CKR_SESSION_COUNT" },
		{ CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID" },
		{ CKR_SESSION_READ_ONLY, "CKR_SESSION_READ_ONLY" },
		{ CKR_SESSION_READ_ONLY_EXISTS, "CKR_SESSION_READ_ONLY_EXISTS" },
		{ CKR_SIGNATURE_INVALID, "CKR_SIGNATURE_INVALID" },
		{ CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT" },
		{ CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED" },
		{ CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN" },
		{ CKR_USER_ANOTHER_ALREADY_LOGGED_IN, "CKR_USER_ANOTHER_ALREADY_LOGGED_IN" },
		{ CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN" },
		{ CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED" },
		{ CKR_USER_TYPE_INVALID, "CKR_USER_TYPE_INVALID" },
		{ CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED" },
		{ CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED" },
		{ CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID" },
		{ CKR_ATTRIBUTE_TYPE_INVALID, "CKR_ATTRIBUTE_TYPE_INVALID" },
		{ CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL" },
		{ CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID" },
		{ CKR_PIN_EXPIRED, "CKR_PIN_EXPIRED" },
		{ CKR_ACTION_PROHIBITED, "CKR_ACTION_PROHIBITED" },
	};
	static char buf[32];
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].rv == rv)
			return names[i].name;
	snprintf(buf, sizeof(buf), "CKR 0x%08lx", (unsigned long)rv);
	return buf;
}

/* An option as typed, without any "=value" (which may be a secret typed by mistake). */
void
print_option_name(const char *arg)
{
	fprintf(stderr, "%.*s", (int)strcspn(arg, "="), arg);
}

/*
 * Options of a subcommand: getopt_long over argv (argv[0] is the
 * subcommand), our own messages. Returns the option, -1 at the end, or
 * '?' after printing what is wrong. Options must be spelt in full:
 * getopt_long's abbreviations would take "--so-pin 1234" for
 * "--so-pin-file 1234".
 */
int
sub_option(const char *cmd, int argc, char **argv, const struct option *opts)
{
	const char *tok;
	size_t n;
	int idx = -1, c = getopt_long(argc, argv, ":", opts, &idx);

	if (c == -1)
		return c;
	if (c != '?' && c != ':' && idx >= 0) {
		tok = argv[optind - 1];
		if (opts[idx].has_arg == required_argument && optarg == argv[optind - 1])
			tok = argv[optind - 2];
		n = strlen(opts[idx].name);
		if (strncmp(tok, "--", 2) == 0 && strncmp(tok + 2, opts[idx].name, n) == 0 &&
		    (tok[2 + n] == '\0' || tok[2 + n] == '='))
			return c;
		c = '?';
	} else
		tok = argv[optind - 1];
	fprintf(stderr, "edgevault %s: ", cmd);
	print_option_name(tok);
	fprintf(stderr, c == ':' ? ": needs a value\n" : ": unknown option\n");
	return '?';
}

void
sub_begin(void)
{
	optind = 0; /* glibc: start afresh on a new argv */
	opterr = 0;
}

/* A whole decimal number in [min, max], all of s. */
int
parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	unsigned long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* All of a file descriptor: ev_read_all(). */
int
read_all(int fd, size_t max, unsigned char **out, size_t *outlen)
{
	return ev_read_all(fd, max, out, outlen);
}

/* A file's bytes (path "-": stdin), at most max; messages name the file. */
int
read_path(const char *path, size_t max, unsigned char **out, size_t *outlen)
{
	int fd = 0, r;

	if (strcmp(path, "-") != 0) {
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (fd < 0) {
			fprintf(stderr, "edgevault: cannot read %s: %s\n", path, strerror(errno));
			return -1;
		}
	}
	r = read_all(fd, max, out, outlen);
	if (r == -2)
		fprintf(stderr, "edgevault: %s is larger than %zu bytes\n",
		    fd == 0 ? "the input" : path, max);
	else if (r != 0)
		fprintf(stderr, "edgevault: cannot read %s: %s\n", fd == 0 ? "the input" : path,
		    strerror(errno));
	if (fd != 0)
		close(fd);
	return r == 0 ? 0 : -1;
}

int
write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	ssize_t r;

	while (n > 0) {
		r = write(fd, c, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

/*
 * Write a file whole or not at all: a hidden temporary file of a unique
 * name in the same directory (".NAME.XXXXXX" by mkstemp: a watched
 * directory skips names starting with '.', and two runs at once, as
 * overlapping timer runs, each write their own), fsync, then rename over
 * NAME: the last rename wins, whole.
 */
int
write_file_atomic(const char *path, const void *data, size_t len)
{
	const char *slash = strrchr(path, '/');
	size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
	char *tmp, *dir;
	mode_t mask;
	int fd, rc = -1;

	if (path[dirlen] == '\0') {
		fprintf(stderr, "edgevault: %s: not a file name\n", path);
		return -1;
	}
	tmp = malloc(strlen(path) + 9);
	if (tmp == NULL)
		return -1;
	sprintf(tmp, "%.*s.%s.XXXXXX", (int)dirlen, path, path + dirlen);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "edgevault: cannot create %s: %s\n", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	/* mkstemp() makes it 0600: readable as a file created 0644 would be. */
	mask = umask(0);
	umask(mask);
	if (fchmod(fd, 0644 & ~mask) != 0 || write_all(fd, data, len) != 0 || fsync(fd) != 0) {
		fprintf(stderr, "edgevault: cannot write %s: %s\n", tmp, strerror(errno));
		close(fd);
		goto out;
	}
	if (close(fd) != 0 || rename(tmp, path) != 0) {
		fprintf(stderr, "edgevault: cannot write %s: %s\n", path, strerror(errno));
		goto out;
	}
	/* The rename itself durable: fsync the directory. */
	dir = dirlen > 0 ? strndup(path, dirlen) : strdup(".");
	if (dir != NULL) {
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			(void)fsync(fd);
			close(fd);
		}
		free(dir);
	}
	rc = 0;
out:
	if (rc != 0)
		(void)unlink(tmp);
	free(tmp);
	return rc;
}

int
signkey_keygen(const struct signed_kind *k, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	const char *out = NULL;
	ev_secret *seed = NULL;
	unsigned char pk[32];
	char b64[45], err[512] = "";
	int c;

	sub_begin();
	while ((c = sub_option(k->keygen_cmd, argc, argv, opts)) != -1) {
		if (c == 'o')
			out = optarg;
		else
			return 2;
	}
	if (out == NULL || optind != argc) {
		fprintf(stderr, "usage: edgevault %s --out KEYFILE\n", k->keygen_cmd);
		return 2;
	}
	if (ev_signkey_generate(&seed, pk) != CKR_OK) {
		fprintf(stderr, "edgevault: cannot generate a signing key\n");
		return 1;
	}
	if (ev_signkey_write(out, seed, err, sizeof(err)) != CKR_OK) {
		fprintf(stderr, "edgevault: %s\n", err);
		ev_secret_free(seed);
		return 1;
	}
	ev_secret_free(seed);
	ev_pubkey_encode(pk, b64);
	printf("%s = %s\n", k->config_key, b64);
	fprintf(stderr,
	    "edgevault: %s written to %s (mode 0600); keep it off the devices.\n"
	    "edgevault: put the line above in the [%s] section of each device's "
	    "configuration.\n",
	    k->key_name, out, k->section);
	return 0;
}

int
sign_document(const struct signed_kind *k, const char *key_path, const char *in,
    const unsigned char *doc, size_t doclen, const char *out, void **parsed)
{
	unsigned char *buf = NULL;
	char *env = NULL, err[512] = "";
	ev_secret *seed = NULL;
	size_t envlen = 0;
	int rc = 1;
	CK_RV rv;

	*parsed = NULL;
	if (ev_signkey_read(key_path, &seed, err, sizeof(err)) != CKR_OK) {
		fprintf(stderr, "edgevault: %s\n", err);
		return 1;
	}
	if (doc == NULL) {
		if (read_path(in, k->max, &buf, &doclen) != 0)
			goto out;
		doc = buf;
	}
	/* What the devices would refuse is not signed. */
	rv = k->check(doc, doclen, parsed, err, sizeof(err));
	if (rv != CKR_OK) {
		fprintf(stderr, "edgevault: not signed: %s\n", err);
		goto out;
	}
	rv = ev_signed_make(doc, doclen, k->type, seed, &env, &envlen);
	if (rv != CKR_OK) {
		fprintf(stderr, "edgevault: cannot sign the %s: %s\n", k->noun, ckr_name(rv));
		goto out;
	}
	if (envlen > k->max) {
		fprintf(stderr, "edgevault: not signed: the signed %s would be %zu bytes, over "
		    "the devices' limit of %zu\n", k->noun, envlen, k->max);
		goto out;
	}
	if (out != NULL) {
		if (write_file_atomic(out, env, envlen) != 0)
			goto out;
	} else if (write_all(STDOUT_FILENO, env, envlen) != 0) {
		fprintf(stderr, "edgevault: cannot write the signed %s: %s\n", k->noun,
		    strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(env);
	free(buf);
	ev_secret_free(seed);
	return rc;
}

static CK_RV
check_revlist(const unsigned char *doc, size_t len, void **parsed, char *err, size_t errlen)
{
	ev_revlist *l = NULL;
	CK_RV rv;

	rv = ev_revlist_parse(doc, len, &l, err, errlen);
	*parsed = l;
	return rv;
}

static const struct signed_kind revocation_lists = {
	.keygen_cmd = "revocation keygen",
	.config_key = "public_key",
	.key_name = "signing key",
	.section = "revocation",
	.type = EV_SIGNED_REVOCATION,
	.noun = "list",
	.max = EV_SIGNED_MAX,
	.check = check_revlist,
};

static int
cmd_revocation_sign(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "in", required_argument, NULL, 'i' },
		{ "out", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	const char *key = NULL, *in = "-", *out = NULL;
	void *parsed = NULL;
	ev_revlist *l;
	int c, rc;

	sub_begin();
	while ((c = sub_option("revocation sign", argc, argv, opts)) != -1) {
		if (c == 'k')
			key = optarg;
		else if (c == 'i')
			in = optarg;
		else if (c == 'o')
			out = optarg;
		else
			return 2;
	}
	if (key == NULL || optind != argc) {
		fprintf(stderr,
		    "usage: edgevault revocation sign --key KEYFILE [--in DOC] [--out FILE]\n");
		return 2;
	}
	rc = sign_document(&revocation_lists, key, in, NULL, 0, out, &parsed);
	l = parsed;
	if (rc == 0)
		fprintf(stderr,
		    "edgevault: signed revocation list %lld for device %s (%zu entr%s)%s%s\n",
		    (long long)l->sequence, l->device, l->n, l->n == 1 ? "y" : "ies",
		    out ? ": " : "", out ? out : "");
	ev_revlist_free(l);
	return rc;
}

/* The module's admin interface (the module initialised by open_module). */
EV_ADMIN_FUNCTION_LIST *
admin_interface(void)
{
	CK_INTERFACE *iface = NULL;
	EV_ADMIN_FUNCTION_LIST *a;
	CK_RV rv;

	rv = get_interface((CK_UTF8CHAR_PTR)EV_ADMIN_INTERFACE_NAME, NULL, &iface, 0);
	if (rv != CKR_OK || iface == NULL || iface->pFunctionList == NULL) {
		fprintf(stderr, "edgevault: the module %s has no \"%s\" interface (%s)\n",
		    module_path, EV_ADMIN_INTERFACE_NAME, ckr_name(rv));
		return NULL;
	}
	a = iface->pFunctionList;
	if (a->version.major != 1) {
		fprintf(stderr, "edgevault: the module's admin interface is version %u.%u, not 1.x\n",
		    a->version.major, a->version.minor);
		return NULL;
	}
	return a;
}

/*
 * Why the module refused a list, as far as this side can tell: the
 * module answers with a code, and records its detail in the history.
 */
static void
explain_refusal(const unsigned char *buf, size_t len, CK_RV rv)
{
	ev_config *cfg = NULL;
	ev_revlist *l = NULL;
	char err[512] = "";

	if (ev_config_load(ev_config_path(), &cfg, err, sizeof(err)) != CKR_OK)
		return;
	if (!cfg->has_revocation_key) {
		fprintf(stderr, "edgevault: no [revocation] public_key in %s\n", cfg->path);
	} else if (ev_revlist_load(buf, len, cfg->revocation_key, &l, err, sizeof(err)) != CKR_OK) {
		fprintf(stderr, "edgevault: %s\n", err);
	} else if (strcmp(l->device, cfg->device_id) != 0) {
		fprintf(stderr, "edgevault: the list is for device \"%s\"; this is \"%s\"\n",
		    l->device, cfg->device_id);
	} else if (rv == CKR_FUNCTION_REJECTED) {
		fprintf(stderr,
		    "edgevault: sequence %lld is not above the last list applied "
		    "(see `edgevault revocation show`)\n",
		    (long long)l->sequence);
	}
	ev_revlist_free(l);
	ev_config_free(cfg);
}

static int
cmd_revocation_apply(int argc, char **argv)
{
	static const struct option opts[] = {
		{ NULL, 0, NULL, 0 },
	};
	EV_ADMIN_FUNCTION_LIST *admin;
	CK_FUNCTION_LIST_3_0 *f;
	unsigned char *buf = NULL;
	CK_ULONG seq = 0;
	size_t len = 0;
	void *dl = NULL;
	int c, rc = 1;
	CK_RV rv;

	sub_begin();
	while ((c = sub_option("revocation apply", argc, argv, opts)) != -1)
		return 2;
	if (optind != argc - 1) {
		fprintf(stderr, "usage: edgevault revocation apply FILE\n");
		return 2;
	}
	if (read_path(argv[optind], EV_SIGNED_MAX, &buf, &len) != 0)
		return 1;
	f = open_module(&dl);
	if (f == NULL)
		goto out;
	admin = admin_interface();
	if (admin == NULL)
		goto out;
	rv = admin->EV_ApplyRevocationList(buf, (CK_ULONG)len, &seq);
	if (rv != CKR_OK) {
		fprintf(stderr, "edgevault: revocation list %s refused: %s\n", argv[optind],
		    ckr_name(rv));
		explain_refusal(buf, len, rv);
		goto out;
	}
	printf("applied revocation list %lu\n", seq);
	rc = 0;
out:
	if (f != NULL)
		close_module(f, dl);
	free(buf);
	return rc;
}

/* Unix time as ISO 8601 UTC. */
const char *
iso_time(int64_t t, char buf[32])
{
	return ev_iso_time(t, buf);
}

static const char *
kind_name(int kind)
{
	switch (kind) {
	case EV_REVOKE_KEY:
		return "key";
	case EV_REVOKE_ZONE:
		return "zone";
	case EV_REVOKE_DEVICE:
		return "device";
	}
	return "unknown";
}

/* Whether bytes are UTF-8 a JSON string may hold as they are. */
int
is_utf8(const unsigned char *p, size_t n)
{
	return ev_utf8_valid(p, n, EV_UTF8_ANY);
}

void
print_hex(const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		printf("%02x", p[i]);
}

/*
 * Bytes for a terminal: printable ASCII and UTF-8 as they are, the rest
 * as \xNN; quoted: also '"' and '\\' escaped, for text shown in quotes.
 */
void
print_text(const unsigned char *p, size_t n, int quoted)
{
	int utf8 = is_utf8(p, n);
	size_t i;

	for (i = 0; i < n; i++) {
		if (quoted && (p[i] == '"' || p[i] == '\\'))
			printf("\\%c", p[i]);
		else if (p[i] < 0x20 || p[i] == 0x7f || (p[i] >= 0x80 && !utf8))
			printf("\\x%02x", p[i]);
		else
			putchar(p[i]);
	}
}

static void
show_revoked_text(const ev_revoked_rec *r)
{
	if (r->kind == EV_REVOKE_KEY)
		printf("    revoked key zone %lld", (long long)r->zone);
	else if (r->kind == EV_REVOKE_ZONE)
		printf("    revoked zone %lld", (long long)r->zone);
	else
		printf("    revoked %s", kind_name(r->kind));
	if (r->label != NULL) {
		printf(" label \"");
		print_text(r->label, r->label_len, 1);
		putchar('"');
	}
	if (r->ckid != NULL && r->ckid_len > 0) {
		printf(" id ");
		print_hex(r->ckid, r->ckid_len);
	}
	if (r->generation != 0)
		printf(" generation %lld", (long long)r->generation);
	if (r->object != 0)
		printf(" (object %lld)", (long long)r->object);
	printf(": ");
	if (r->reason != NULL)
		print_text((const unsigned char *)r->reason, strlen(r->reason), 0);
	putchar('\n');
}

static void
show_revoked_json(const ev_revoked_rec *r)
{
	char t[32];

	printf("{\"kind\":\"%s\",\"time\":\"%s\"", kind_name(r->kind), iso_time(r->time, t));
	if (r->kind != EV_REVOKE_DEVICE)
		printf(",\"zone\":%lld", (long long)r->zone);
	if (r->object != 0)
		printf(",\"object\":%lld", (long long)r->object);
	if (r->label != NULL) {
		/* A label that is not UTF-8 cannot be a JSON string: given in hex. */
		if (is_utf8(r->label, r->label_len)) {
			printf(",\"label\":");
			json_mem(r->label, r->label_len);
		} else {
			printf(",\"label_hex\":\"");
			print_hex(r->label, r->label_len);
			putchar('"');
		}
	}
	if (r->ckid != NULL && r->ckid_len > 0) {
		printf(",\"id\":\"");
		print_hex(r->ckid, r->ckid_len);
		putchar('"');
	}
	if (r->generation != 0)
		printf(",\"generation\":%lld", (long long)r->generation);
	printf(",\"reason\":");
	json_str(r->reason != NULL ? r->reason : "");
	putchar('}');
}

static void
show_log_text(const ev_revlog_rec *g)
{
	char t[32];

	printf("%s %s %s", iso_time(g->time, t), g->applied ? "applied" : "refused",
	    g->source != NULL ? g->source : "?");
	if (g->sequence != 0)
		printf(" sequence %lld", (long long)g->sequence);
	if (g->detail != NULL && g->detail[0] != '\0') {
		printf(": ");
		print_text((const unsigned char *)g->detail, strlen(g->detail), 0);
	}
	putchar('\n');
}

static void
show_log_json(const ev_revlog_rec *g)
{
	static const unsigned char zero[32];
	char t[32];

	printf("{\"id\":%lld,\"time\":\"%s\",\"source\":", (long long)g->id, iso_time(g->time, t));
	json_str(g->source != NULL ? g->source : "");
	printf(",\"sequence\":%lld,\"applied\":%s", (long long)g->sequence,
	    g->applied ? "true" : "false");
	if (memcmp(g->digest, zero, sizeof(zero)) != 0) {
		printf(",\"digest\":\"");
		print_hex(g->digest, sizeof(g->digest));
		putchar('"');
	}
	printf(",\"detail\":");
	json_str(g->detail != NULL ? g->detail : "");
	printf(",\"revoked\":[");
}

/* The prologue of `revocation show` and `attest show`. */
int
show_store_open(const char *cmd, int argc, char **argv, ev_store **store)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	ev_config *cfg = NULL;
	char err[512] = "";
	int c, rc = 1;

	*store = NULL;
	sub_begin();
	while ((c = sub_option(cmd, argc, argv, opts)) != -1) {
		if (c == 'j')
			json = 1;
		else
			return 2;
	}
	if (optind != argc) {
		fprintf(stderr, "usage: edgevault %s [--json]\n", cmd);
		return 2;
	}
	if (load_config(&cfg) != 0)
		return 1;
	if (ev_store_open(cfg->store_dir, EV_STORE_READONLY, store, err, sizeof(err)) != CKR_OK)
		fprintf(stderr, "edgevault: store: %s\n", err);
	else
		rc = 0;
	ev_config_free(cfg);
	return rc;
}

static int
cmd_revocation_show(int argc, char **argv)
{
	ev_store *store = NULL;
	ev_revlog_rec *logs = NULL;
	ev_revoked_rec *rev = NULL;
	unsigned char *shown = NULL;
	size_t nlogs = 0, nrev = 0, i, j, k;
	char t[32];
	int rc;

	rc = show_store_open("revocation show", argc, argv, &store);
	if (rc != 0)
		return rc;
	rc = 1;
	if (ev_store_revlog_list(store, &logs, &nlogs) != CKR_OK ||
	    ev_store_revoked_list(store, &rev, &nrev) != CKR_OK) {
		fprintf(stderr, "edgevault: store: cannot read the revocation history\n");
		goto out;
	}
	shown = calloc(nrev + 1, 1);
	if (shown == NULL)
		goto out;
	if (json)
		putchar('[');
	else if (nlogs == 0 && nrev == 0)
		printf("no revocation history\n");
	for (i = 0; i < nlogs; i++) {
		if (json) {
			if (i > 0)
				putchar(',');
			show_log_json(&logs[i]);
		} else
			show_log_text(&logs[i]);
		for (j = 0, k = 0; j < nrev; j++) {
			if (rev[j].log != logs[i].id)
				continue;
			shown[j] = 1;
			if (json) {
				if (k++ > 0)
					putchar(',');
				show_revoked_json(&rev[j]);
			} else
				show_revoked_text(&rev[j]);
		}
		if (json)
			printf("]}");
	}
	/* Revocations whose history entry is missing are shown all the same. */
	for (j = 0, k = 0; j < nrev; j++) {
		if (shown[j])
			continue;
		if (json && k == 0)
			printf("%s{\"id\":0,\"time\":\"%s\",\"source\":\"\",\"sequence\":0,"
			    "\"applied\":true,\"detail\":\"no history entry\",\"revoked\":[",
			    nlogs > 0 ? "," : "", iso_time(rev[j].time, t));
		else if (json)
			putchar(',');
		else if (k == 0)
			printf("(no history entry)\n");
		k++;
		if (json)
			show_revoked_json(&rev[j]);
		else
			show_revoked_text(&rev[j]);
	}
	if (json && k > 0)
		printf("]}");
	if (json)
		printf("]\n");
	if (flush_stdout() != 0)
		goto out;
	rc = 0;
out:
	for (i = 0; i < nlogs; i++)
		ev_revlog_rec_clear(&logs[i]);
	free(logs);
	for (j = 0; j < nrev; j++)
		ev_revoked_rec_clear(&rev[j]);
	free(rev);
	free(shown);
	ev_store_close(store);
	return rc;
}

static int
cmd_revocation(int argc, char **argv)
{
	const char *sub = argc > 0 ? argv[0] : NULL;

	if (sub != NULL && strcmp(sub, "keygen") == 0)
		return signkey_keygen(&revocation_lists, argc, argv);
	if (sub != NULL && strcmp(sub, "sign") == 0)
		return cmd_revocation_sign(argc, argv);
	if (sub != NULL && strcmp(sub, "apply") == 0)
		return cmd_revocation_apply(argc, argv);
	if (sub != NULL && strcmp(sub, "show") == 0)
		return cmd_revocation_show(argc, argv);
	fprintf(stderr, "edgevault: unknown command: revocation%s%s\n", sub ? " " : "",
	    sub ? sub : "");
	usage(stderr);
	return 2;
}

/* A PIN file: read(2) straight into secure memory, one line end removed. */
static ev_secret *
read_pin_file(const char *path, const char *who)
{
	ev_secret *buf = NULL, *pin = NULL;
	struct stat st;
	size_t n = 0;
	ssize_t r;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		fprintf(stderr, "edgevault: cannot read %s PIN file %s: %s\n", who, path,
		    strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "edgevault: %s PIN file %s is not a regular file\n", who, path);
		goto out;
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		fprintf(stderr, "edgevault: %s PIN file %s is accessible to group or others "
		    "(mode %03o); chmod 600 it\n", who, path, (unsigned)(st.st_mode & 0777));
		goto out;
	}
	buf = ev_secret_new(PIN_MAX + 2);
	if (buf == NULL)
		goto out;
	while (n < buf->len) {
		r = read(fd, buf->data + n, buf->len - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			fprintf(stderr, "edgevault: cannot read %s PIN file %s: %s\n", who, path,
			    strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > 0 && buf->data[n - 1] == '\n') {
		n--;
		if (n > 0 && buf->data[n - 1] == '\r')
			n--;
	}
	if (n == 0 || n > PIN_MAX) {
		fprintf(stderr, "edgevault: %s PIN file %s is %s\n", who, path,
		    n == 0 ? "empty" : "too long");
		goto out;
	}
	pin = ev_secret_dup(buf->data, n);
out:
	ev_secret_free(buf);
	close(fd);
	return pin;
}

/* The terminal's settings while echo is off, for the signal handler. */
static struct termios saved_tty;
static volatile sig_atomic_t tty_changed;

static void
restore_tty_and_die(int sig)
{
	if (tty_changed)
		(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Ask on the terminal, without echo. NULL if there is no terminal. */
static ev_secret *
prompt_pin(const char *who, unsigned long zone)
{
	/* Stopping (^Z) is ignored meanwhile: it would leave the terminal without echo. */
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP };
	struct sigaction sa, ign, old[5];
	struct termios t;
	ev_secret *buf, *pin = NULL;
	size_t n = 0, i;
	ssize_t r;
	char c;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tty) != 0)
		return NULL;
	buf = ev_secret_new(PIN_MAX + 1);
	if (buf == NULL)
		return NULL;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = restore_tty_and_die;
	sigemptyset(&sa.sa_mask);
	ign = sa;
	ign.sa_handler = SIG_IGN;
	for (i = 0; i < 5; i++)
		sigaction(sigs[i], sigs[i] == SIGTSTP ? &ign : &sa, &old[i]);
	t = saved_tty;
	t.c_lflag &= ~(tcflag_t)ECHO;
	t.c_lflag |= ECHONL;
	fprintf(stderr, "%s PIN of zone %lu: ", who, zone);
	fflush(stderr);
	tty_changed = 1;
	(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &t);
	/* One byte at a time: stdio would keep a copy of the PIN in its buffer. */
	for (;;) {
		r = read(STDIN_FILENO, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || c == '\n' || c == '\r')
			break;
		if (n < buf->len)
			buf->data[n] = (unsigned char)c;
		n++;
	}
	sodium_memzero(&c, sizeof(c));
	(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
	tty_changed = 0;
	for (i = 0; i < 5; i++)
		sigaction(sigs[i], &old[i], NULL);
	if (n == 0 || n > PIN_MAX)
		fprintf(stderr, "edgevault: %s %s PIN\n", n == 0 ? "empty" : "too long a", who);
	else
		pin = ev_secret_dup(buf->data, n);
	ev_secret_free(buf);
	return pin;
}

/*
 * A PIN of a zone (who: CKU_SO or CKU_USER): the file option's FILE, else
 * $EDGEVAULT_SO_PIN or $EDGEVAULT_PIN, else the terminal. Never an
 * argument: others on the host read command lines in ps. *usage_err is
 * set when no source could give one (no terminal).
 */
ev_secret *
get_pin(CK_USER_TYPE who, const char *file, unsigned long zone, int *usage_err)
{
	const char *name = who == CKU_SO ? "SO" : "user";
	const char *var = who == CKU_SO ? "EDGEVAULT_SO_PIN" : "EDGEVAULT_PIN";
	const char *v;
	ev_secret *pin;

	*usage_err = 0;
	if (file != NULL)
		return read_pin_file(file, name);
	v = secure_getenv(var);
	if (v != NULL && *v != '\0') {
		size_t len = strlen(v);

		pin = len <= PIN_MAX ? ev_secret_dup(v, len) : NULL;
		/*
		 * No copy left in this process's environment (children, core
		 * files), whether it was taken or not: an over-long value may be
		 * a PIN with something stuck to it.
		 */
		sodium_memzero((char *)v, len);
		unsetenv(var);
		if (len > PIN_MAX)
			fprintf(stderr, "edgevault: %s is too long (at most %d bytes)\n", var,
			    PIN_MAX);
		else if (pin == NULL)
			fprintf(stderr, "edgevault: out of secure memory\n");
		return pin;
	}
	if (!isatty(STDIN_FILENO)) {
		fprintf(stderr, "edgevault: no %s PIN: give --%s-pin-file FILE or %s, or run on "
		    "a terminal\n", name, who == CKU_SO ? "so" : "user", var);
		*usage_err = 1;
		return NULL;
	}
	return prompt_pin(name, zone);
}

/* The end of a command's output. */
int
flush_stdout(void)
{
	if (fflush(stdout) != 0) {
		fprintf(stderr, "edgevault: cannot write: %s\n", strerror(errno));
		return 1;
	}
	return 0;
}

/* --zone's value: 0, or 2 (usage) after saying why. */
int
parse_zone(const char *s, unsigned long *zone)
{
	if (parse_ulong(s, 1, (unsigned long)-1, zone) != 0) {
		fprintf(stderr, "edgevault: --zone %s: expected a zone number (1 or more)\n", s);
		return 2;
	}
	return 0;
}

/* Why a zone refused, when the code alone does not say it (the attestation gate, rotation). */
void
explain_zone_refusal(CK_RV rv, unsigned long zone)
{
	if (rv == CKR_FUNCTION_REJECTED)
		fprintf(
		    stderr,
		    ": no fresh attestation evidence for zone %lu "
		    "(see `edgevault attest check --zone %lu`), or the PCRs its key is sealed to "
		    "changed (see the module's log; `edgevault zone rebind --zone %lu`)",
		    zone, zone, zone);
	else if (rv == CKR_KEY_FUNCTION_NOT_PERMITTED)
		fprintf(stderr, " (retired meanwhile, a copy, or a session object)");
	else if (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID)
		fprintf(stderr, " (gone meanwhile)");
}

/* A zone's session, logged in when there is a PIN (revoke, rotate, attest). */
CK_RV
open_zone_session(CK_FUNCTION_LIST_3_0 *f, unsigned long zone, int flags, CK_USER_TYPE who,
    const ev_secret *pin, CK_SESSION_HANDLE *h)
{
	CK_FLAGS sf = CKF_SERIAL_SESSION | ((flags & ZS_RW) ? CKF_RW_SESSION : 0);
	CK_RV rv;

	rv = f->C_OpenSession(zone, sf, NULL, NULL, h);
	if (rv != CKR_OK) {
		if ((flags & ZS_SAY_NO_ZONE) &&
		    (rv == CKR_SLOT_ID_INVALID || rv == CKR_TOKEN_NOT_PRESENT))
			fprintf(stderr, "edgevault: no zone %lu (%s)\n", zone, ckr_name(rv));
		else
			fprintf(stderr, "edgevault: cannot open a session on zone %lu: %s\n", zone,
			    ckr_name(rv));
		*h = CK_INVALID_HANDLE;
		return rv;
	}
	if (pin == NULL)
		return CKR_OK;
	rv = f->C_Login(*h, who, pin->data, (CK_ULONG)pin->len);
	if (rv != CKR_OK) {
		fprintf(stderr, "edgevault: %s login to zone %lu failed: %s",
		    who == CKU_SO ? "SO" : "user", zone, ckr_name(rv));
		if (rv == CKR_FUNCTION_REJECTED)
			explain_zone_refusal(rv, zone);
		fputc('\n', stderr);
		(void)f->C_CloseSession(*h);
		*h = CK_INVALID_HANDLE;
	}
	return rv;
}

void
close_zone_session(CK_FUNCTION_LIST_3_0 *f, CK_SESSION_HANDLE h)
{
	CK_RV rv;

	if (h == CK_INVALID_HANDLE)
		return;
	/* CKR_USER_NOT_LOGGED_IN: a session opened without a PIN; nothing to undo. */
	rv = f->C_Logout(h);
	if (rv != CKR_OK && rv != CKR_USER_NOT_LOGGED_IN)
		fprintf(stderr, "edgevault: warning: C_Logout: %s\n", ckr_name(rv));
	rv = f->C_CloseSession(h);
	if (rv != CKR_OK)
		fprintf(stderr, "edgevault: warning: C_CloseSession: %s\n", ckr_name(rv));
}

/* A hex string: two digits per byte, at least one byte. */
int
parse_hex(const char *s, unsigned char **out, size_t *outlen)
{
	size_t n = strlen(s), blen = 0;
	const char *end = NULL;

	if (n == 0 || n % 2 != 0)
		return -1;
	*out = malloc(n / 2);
	if (*out == NULL)
		return -1;
	if (sodium_hex2bin(*out, n / 2, s, n, NULL, &blen, &end) != 0 || end != s + n ||
	    blen != n / 2) {
		free(*out);
		*out = NULL;
		return -1;
	}
	*outlen = blen;
	return 0;
}

static void
revoke_usage(void)
{
	fprintf(stderr,
	    "usage: edgevault revoke key --zone N --label LABEL [--id HEX] [--generation G]\n"
	    "           --reason TEXT [--so-pin-file FILE]\n"
	    "       edgevault revoke zone --zone N --reason TEXT [--so-pin-file FILE]\n");
}

static int
cmd_revoke(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "zone", required_argument, NULL, 'z' },
		{ "label", required_argument, NULL, 'l' },
		{ "id", required_argument, NULL, 'i' },
		{ "generation", required_argument, NULL, 'g' },
		{ "reason", required_argument, NULL, 'r' },
		{ "so-pin-file", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sub = argc > 0 ? argv[0] : NULL;
	const char *zone_s = NULL, *label = NULL, *id_s = NULL, *gen_s = NULL, *reason = NULL;
	const char *pin_file = NULL;
	EV_REVOCATION_ENTRY e;
	EV_ADMIN_FUNCTION_LIST *admin;
	CK_FUNCTION_LIST_3_0 *f = NULL;
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	CK_ULONG count = 0;
	unsigned long zone = 0, gen = 0;
	unsigned char *id = NULL;
	size_t idlen = 0;
	ev_secret *pin = NULL;
	void *dl = NULL;
	int c, is_key, usage_err, rc = 1;
	CK_RV rv;

	if (sub == NULL || (strcmp(sub, "key") != 0 && strcmp(sub, "zone") != 0)) {
		fprintf(stderr, "edgevault: unknown command: revoke%s%s\n", sub ? " " : "",
		    sub ? sub : "");
		revoke_usage();
		return 2;
	}
	is_key = strcmp(sub, "key") == 0;
	sub_begin();
	while ((c = sub_option(is_key ? "revoke key" : "revoke zone", argc, argv, opts)) != -1) {
		switch (c) {
		case 'z':
			zone_s = optarg;
			break;
		case 'l':
			label = optarg;
			break;
		case 'i':
			id_s = optarg;
			break;
		case 'g':
			gen_s = optarg;
			break;
		case 'r':
			reason = optarg;
			break;
		case 'p':
			pin_file = optarg;
			break;
		default:
			revoke_usage();
			return 2;
		}
	}
	if (optind != argc || zone_s == NULL || reason == NULL || (is_key && label == NULL) ||
	    (!is_key && (label != NULL || id_s != NULL || gen_s != NULL))) {
		revoke_usage();
		return 2;
	}
	if (parse_zone(zone_s, &zone) != 0)
		return 2;
	if (gen_s != NULL && parse_ulong(gen_s, 1, (unsigned long)-1, &gen) != 0) {
		fprintf(stderr, "edgevault: --generation %s: expected a number (1 or more)\n",
		    gen_s);
		return 2;
	}
	if (label != NULL && (strlen(label) == 0 || strlen(label) > 255)) {
		fprintf(stderr, "edgevault: --label: 1 to 255 bytes\n");
		return 2;
	}
	if (strlen(reason) == 0 || strlen(reason) > 256) {
		fprintf(stderr, "edgevault: --reason: 1 to 256 bytes\n");
		return 2;
	}
	if (id_s != NULL && parse_hex(id_s, &id, &idlen) != 0) {
		fprintf(stderr, "edgevault: --id %s: expected hex, two digits per byte\n", id_s);
		return 2;
	}

	pin = get_pin(CKU_SO, pin_file, zone, &usage_err);
	if (pin == NULL) {
		rc = usage_err ? 2 : 1;
		goto out;
	}
	f = open_module(&dl);
	if (f == NULL)
		goto out;
	admin = admin_interface();
	if (admin == NULL)
		goto out;
	rv = open_zone_session(f, zone, ZS_RW, CKU_SO, pin, &h);
	ev_secret_free(pin);
	pin = NULL;
	if (rv != CKR_OK)
		goto out;
	memset(&e, 0, sizeof(e));
	e.kind = is_key ? EV_REVOKE_KEY : EV_REVOKE_ZONE;
	e.pLabel = (CK_UTF8CHAR_PTR)label;
	e.ulLabelLen = label != NULL ? (CK_ULONG)strlen(label) : 0;
	e.pId = id;
	e.ulIdLen = (CK_ULONG)idlen;
	e.ulGeneration = gen;
	e.pReason = (CK_UTF8CHAR_PTR)reason;
	e.ulReasonLen = (CK_ULONG)strlen(reason);
	rv = admin->EV_Revoke(h, &e, &count);
	if (rv != CKR_OK) {
		fprintf(stderr, "edgevault: revocation refused: %s%s\n", ckr_name(rv),
		    rv == CKR_KEY_HANDLE_INVALID ? " (no key matches)" : "");
		goto out;
	}
	if (is_key)
		printf("revoked %lu object(s)\n", count);
	else {
		printf("revoked zone %lu\n", zone);
		h = CK_INVALID_HANDLE; /* ended with the zone */
	}
	rc = 0;
out:
	if (f != NULL) {
		close_zone_session(f, h);
		close_module(f, dl);
	}
	ev_secret_free(pin);
	free(id);
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "module", required_argument, NULL, 'm' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static char default_module[] = EV_PKCS11DIR "/edgevault-pkcs11.so";
	const char *cmd, *sub;
	int c;

	module_path = getenv("EDGEVAULT_MODULE");
	if (module_path == NULL || *module_path == '\0')
		module_path = default_module;
	while ((c = getopt_long(argc, argv, "+c:m:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			/* The module reads it too, when the tool loads it. */
			if (setenv("EDGEVAULT_CONF", optarg, 1) != 0) {
				perror("edgevault: setenv");
				return 1;
			}
			break;
		case 'm':
			module_path = optarg;
			break;
		case 'j':
			json = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (ev_secmem_init() != 0) {
		fprintf(stderr, "edgevault: cannot initialise libsodium\n");
		return 1;
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind++];
	sub = optind < argc ? argv[optind] : NULL;
	/* --json may also follow the command. */
	for (c = optind; c < argc; c++)
		if (strcmp(argv[c], "--json") == 0)
			json = 1;
	if (strcmp(cmd, "init") == 0)
		return cmd_init();
	if (strcmp(cmd, "status") == 0)
		return cmd_status(argc - optind + 1, argv + optind - 1);
	if (strcmp(cmd, "metrics") == 0)
		return cmd_metrics(argc - optind + 1, argv + optind - 1);
	if (strcmp(cmd, "zone") == 0 && sub != NULL && strcmp(sub, "list") == 0)
		return cmd_zone_list();
	if (strcmp(cmd, "zone") == 0 && sub != NULL && strcmp(sub, "rebind") == 0)
		return cmd_zone_rebind(argc - optind, argv + optind);
	if (strcmp(cmd, "revocation") == 0)
		return cmd_revocation(argc - optind, argv + optind);
	if (strcmp(cmd, "revoke") == 0)
		return cmd_revoke(argc - optind, argv + optind);
	if (strcmp(cmd, "attest") == 0)
		return cmd_attest(argc - optind, argv + optind);
	if (strcmp(cmd, "rotate") == 0)
		return cmd_rotate(argc - optind, argv + optind);
	if (strcmp(cmd, "policy") == 0)
		return cmd_policy(argc - optind, argv + optind);
	if (strcmp(cmd, "audit") == 0)
		return cmd_audit(argc - optind, argv + optind);
	fprintf(stderr, "edgevault: unknown command: %s%s%s\n", cmd, sub ? " " : "",
	    sub ? sub : "");
	usage(stderr);
	return 2;
}
