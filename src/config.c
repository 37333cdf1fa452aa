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

/* Longest upstream PIN read from a file; PKCS#11 PINs are short. */
#define ROOT_PIN_MAX 1024

/* K_PUBKEY: an Ed25519 public key in base64 (only [revocation] public_key). */
enum kind { K_STR, K_UINT, K_ULL, K_MEM_KIB, K_PUBKEY };

/* One known key: where it lives in ev_config and how its value reads. */
struct key_def {
	const char *section;
	const char *name;
	enum kind kind;
	size_t off;
	unsigned long long min, max; /* numbers only */
};

#define STR(sec, key, field)                                                                       \
	{                                                                                          \
		sec, key, K_STR, offsetof(ev_config, field), 0, 0                                  \
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
    {"pin", "max_fails", K_UINT, offsetof(ev_config, pin_max_fails), MAX_FAILS_MIN, MAX_FAILS_MAX},
    {"pin", "argon2_ops", K_ULL, offsetof(ev_config, argon2_ops),
     crypto_pwhash_argon2id_OPSLIMIT_MIN, crypto_pwhash_argon2id_OPSLIMIT_MAX},
    /* Given in KiB, stored in bytes; bounds checked on the byte value. */
    {"pin", "argon2_mem_kib", K_MEM_KIB, offsetof(ev_config, argon2_mem),
     crypto_pwhash_argon2id_MEMLIMIT_MIN, crypto_pwhash_argon2id_MEMLIMIT_MAX},
    {"revocation", "public_key", K_PUBKEY, offsetof(ev_config, revocation_key), 0, 0},
    STR("revocation", "watch_dir", revocation_dir),
};

#undef STR

struct parse_ctx {
	ev_config *c;
	FILE *fp;
	int lineno;	   /* line being parsed, counted by our reader */
	int at_line_start; /* the next read starts a new line */
	int errline;	   /* line of the first error we found, 0 if none */
	char msg[256];	   /* that error, without file and line */
	unsigned char seen[EV_ARRAY_SIZE(keys)];
	int oom;
};

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

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

static int
set_value(struct parse_ctx *p, const struct key_def *k, const char *value)
{
	char *base = (char *)p->c + k->off;
	unsigned long long v;
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
				 k->section, k->name, value);
			return 0;
		}
		p->c->has_revocation_key = 1;
		return 1;
	}
	if (k->kind == K_MEM_KIB)
		ctx_fail(p, "[%s] %s = \"%s\": expected a whole number of KiB from %llu to %llu",
			 k->section, k->name, value, (k->min + 1023) / 1024, k->max / 1024);
	else
		ctx_fail(p, "[%s] %s = \"%s\": expected a whole number from %llu to %llu",
			 k->section, k->name, value, k->min, k->max);
	return 0;
}

static int
on_entry(void *user, const char *section, const char *name, const char *value)
{
	struct parse_ctx *p = user;
	int known_section = 0;
	size_t i;

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
		return set_value(p, &keys[i], value);
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

/* The checks that need the whole file: required keys and combinations. */
static CK_RV
check_config(const ev_config *c, char *err, size_t errlen)
{
	if (c->store_dir == NULL) {
		set_err(err, errlen, "%s: [store] dir is required", c->path);
		return CKR_GENERAL_ERROR;
	}
	/*
	 * Lists dropped in a directory with no key to check them against
	 * could never be applied: say so now, not at the first list.
	 */
	if (c->revocation_dir != NULL && !c->has_revocation_key) {
		set_err(err, errlen,
			"%s: [revocation] watch_dir needs public_key "
			"(the revocation authority's key that signs the lists)",
			c->path);
		return CKR_GENERAL_ERROR;
	}
	if (strcmp(c->root_backend, "pkcs11") != 0)
		return CKR_OK; /* other backends check their own settings */
	if (c->root_module == NULL) {
		set_err(err, errlen,
			"%s: [root] module is required with backend pkcs11 "
			"(path of the upstream PKCS#11 module)",
			c->path);
		return CKR_GENERAL_ERROR;
	}
	if (c->root_token_label == NULL) {
		set_err(err, errlen, "%s: [root] token_label is required with backend pkcs11",
			c->path);
		return CKR_GENERAL_ERROR;
	}
	if (strlen(c->root_token_label) > 32) {
		set_err(err, errlen,
			"%s: [root] token_label \"%s\" is longer than the 32 bytes "
			"of a PKCS#11 token label",
			c->path, c->root_token_label);
		return CKR_GENERAL_ERROR;
	}
	if (c->root_pin_file == NULL && c->root_pin_env == NULL) {
		set_err(err, errlen,
			"%s: [root] needs pin_file or pin_env with backend pkcs11 "
			"(where the upstream user PIN comes from)",
			c->path);
		return CKR_GENERAL_ERROR;
	}
	if (c->root_pin_file != NULL && c->root_pin_env != NULL) {
		set_err(err, errlen, "%s: [root] pin_file and pin_env are both set; keep one",
			c->path);
		return CKR_GENERAL_ERROR;
	}
	return CKR_OK;
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
		set_err(err, errlen, "no configuration path");
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

	p.c = c;
	p.at_line_start = 1;
	p.fp = fopen(path, "re");
	if (p.fp == NULL) {
		set_err(err, errlen, "cannot read configuration %s: %s", path, strerror(errno));
		rv = CKR_GENERAL_ERROR;
		goto out;
	}
	r = ini_parse_stream(read_line, &p, on_entry, &p);
	if (p.oom)
		goto oom;
	/* Whichever came first: our error, or a line libinih could not parse. */
	if (p.errline != 0 && (r <= 0 || p.errline <= r)) {
		set_err(err, errlen, "%s:%d: %s", path, p.errline, p.msg);
		rv = CKR_GENERAL_ERROR;
		goto out;
	}
	if (r > 0) {
		set_err(err, errlen, "%s:%d: syntax error (expected [section] or key = value)",
			path, r);
		rv = CKR_GENERAL_ERROR;
		goto out;
	}
	if (r < 0 || ferror(p.fp)) {
		set_err(err, errlen, "cannot read configuration %s", path);
		rv = r == -2 ? CKR_HOST_MEMORY : CKR_GENERAL_ERROR;
		goto out;
	}

	if (set_default(&c->root_backend, ROOT_BACKEND_DEFAULT) != 0 ||
	    set_default(&c->root_key_label, ROOT_KEY_LABEL_DEFAULT) != 0)
		goto oom;
	if (c->device_id == NULL) {
		if (gethostname(host, sizeof(host)) != 0) {
			set_err(err, errlen,
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
	rv = check_config(c, err, errlen);
	if (rv != CKR_OK)
		goto out;
	*out = c;
	c = NULL; /* transferred */
	rv = CKR_OK;
	goto out;
oom:
	set_err(err, errlen, "%s: out of memory", path);
	rv = CKR_HOST_MEMORY;
out:
	if (p.fp != NULL)
		fclose(p.fp);
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
	free(c->revocation_dir);
	free(c);
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
		set_err(err, errlen, "cannot read upstream PIN file %s: %s", path, strerror(errno));
		return CKR_GENERAL_ERROR;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		set_err(err, errlen, "upstream PIN file %s is not a regular file", path);
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
		set_err(err, errlen, "out of secure memory reading %s", path);
		goto out;
	}
	while (n < buf->len) {
		r = read(fd, buf->data + n, buf->len - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			set_err(err, errlen, "cannot read upstream PIN file %s: %s", path,
				strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > ROOT_PIN_MAX) {
		set_err(err, errlen, "upstream PIN file %s is longer than %d bytes", path,
			ROOT_PIN_MAX);
		goto out;
	}
	if (n > 0 && buf->data[n - 1] == '\n') {
		n--;
		if (n > 0 && buf->data[n - 1] == '\r')
			n--;
	}
	if (n == 0) {
		set_err(err, errlen, "upstream PIN file %s is empty", path);
		goto out;
	}
	*pin = ev_secret_dup(buf->data, n);
	if (*pin == NULL) {
		rv = CKR_HOST_MEMORY;
		set_err(err, errlen, "out of secure memory reading %s", path);
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
		set_err(err, errlen, "no configuration");
		return CKR_GENERAL_ERROR;
	}
	*pin = NULL;
	if (ev_secmem_init() != 0) {
		set_err(err, errlen, "cannot initialise libsodium");
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
			set_err(err, errlen,
				"environment variable %s (the upstream PIN, [root] "
				"pin_env) is not set",
				c->root_pin_env);
			return CKR_GENERAL_ERROR;
		}
		*pin = ev_secret_dup(v, strlen(v));
		if (*pin == NULL) {
			set_err(err, errlen, "out of secure memory");
			return CKR_HOST_MEMORY;
		}
		return CKR_OK;
	}
	set_err(err, errlen, "%s: no upstream PIN configured ([root] pin_file or pin_env)",
		c->path ? c->path : "configuration");
	return CKR_GENERAL_ERROR;
}
