/*
 * edgevault: the administration tool.
 *
 *   edgevault [--config FILE] [--module FILE] init
 *   edgevault [--config FILE] [--module FILE] status [--json]
 *   edgevault [--config FILE] [--module FILE] zone list [--json]
 *
 * `init` prepares what the module stands on (checks the configuration,
 * creates the store, reaches the root and creates the root key if the
 * store has no zone yet); everything about
 * zones goes through the module itself, loaded as applications load it, so
 * the tool passes the same gates they do.
 *
 * Exit codes: 0 success, 1 the operation failed, 2 usage error.
 */
#include <dlfcn.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "pkcs11/edgevault.h"
#include "root/root.h"
#include "secmem.h"
#include "store.h"

#ifndef EV_PKCS11DIR
#define EV_PKCS11DIR "/usr/lib/pkcs11"
#endif

static const char *module_path;
static int json;

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: edgevault [--config FILE] [--module FILE] COMMAND\n"
	    "\n"
	    "commands:\n"
	    "  init            check the configuration, reach the root, create the root key\n"
	    "                  and the store\n"
	    "  status [--json] configuration, root and store health, zones\n"
	    "  zone list [--json]\n"
	    "                  the zones (tokens) and their state\n"
	    "\n"
	    "The configuration is --config, else $EDGEVAULT_CONF, else %s.\n"
	    "The module is --module, else $EDGEVAULT_MODULE, else %s/edgevault-pkcs11.so.\n",
	    EV_CONFIG_DEFAULT_PATH, EV_PKCS11DIR);
}

static int
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
static CK_FUNCTION_LIST_3_0 *
open_module(void **dl)
{
	CK_RV (*get_interface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS);
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

static void
close_module(CK_FUNCTION_LIST_3_0 *f, void *dl)
{
	(void)f->C_Finalize(NULL);
	dlclose(dl);
}

/*
 * A string as a JSON string literal. Token labels are chosen by whoever
 * initialises a token and paths by the configuration: either may hold a
 * quote, a backslash or a control character.
 */
static void
json_str(const char *s)
{
	const unsigned char *p;

	putchar('"');
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

/* A blank-padded PKCS#11 text field as a C string. */
static void
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

static int
cmd_status(void)
{
	ev_config *cfg = NULL;
	ev_root *root = NULL;
	ev_store *store = NULL;
	CK_FUNCTION_LIST_3_0 *f = NULL;
	char root_err[512] = "", store_err[512] = "";
	int root_ok, store_ok, zones = -1;
	void *dl = NULL;

	if (load_config(&cfg) != 0)
		return 1;
	root_ok = ev_root_open(cfg, 0, &root, root_err, sizeof(root_err)) == CKR_OK;
	store_ok = ev_store_open(cfg->store_dir, EV_STORE_READONLY, &store, store_err,
		       sizeof(store_err)) == CKR_OK;
	ev_store_close(store);
	ev_root_free(root);
	if (store_ok) {
		f = open_module(&dl);
		if (f != NULL) {
			zones = list_zones(f, 0);
			close_module(f, dl);
		}
	}
	if (json) {
		printf("{\"config\":");
		json_str(cfg->path);
		printf(",\"device\":");
		json_str(cfg->device_id);
		printf(",\"root\":{\"backend\":");
		json_str(cfg->root_backend);
		printf(",\"reachable\":%s},\"store\":{\"dir\":", root_ok ? "true" : "false");
		json_str(cfg->store_dir);
		printf(",\"ok\":%s},\"zones\":%d}\n", store_ok ? "true" : "false", zones);
	} else {
		printf("configuration: %s\n", cfg->path);
		printf("device:        %s\n", cfg->device_id);
		printf("root:          %s: %s\n", cfg->root_backend,
		    root_ok ? "reachable" : root_err);
		printf("store:         %s: %s\n", cfg->store_dir, store_ok ? "ok" : store_err);
		if (zones >= 0)
			printf("zones:         %d\n", zones);
	}
	ev_config_free(cfg);
	return root_ok && store_ok && zones >= 0 ? 0 : 1;
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
		return cmd_status();
	if (strcmp(cmd, "zone") == 0 && sub != NULL && strcmp(sub, "list") == 0)
		return cmd_zone_list();
	fprintf(stderr, "edgevault: unknown command: %s%s%s\n", cmd, sub ? " " : "",
	    sub ? sub : "");
	usage(stderr);
	return 2;
}
