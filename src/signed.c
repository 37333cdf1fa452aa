/*
 * Signed envelopes and signing keys (signed.h).
 *
 * The envelope is read strictly: exactly the three members, each a
 * string, nothing before or after the object but blanks. json-c alone is
 * not strict enough (see ev_json_parse_strict() in json.c), so the text is also scanned.
 *
 * Seeds and secret keys live only in secure memory; a key file is read
 * with read(2) straight into it, never through stdio's buffers.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "json.h"
#include "signed.h"

#define B64 sodium_base64_VARIANT_ORIGINAL

/* Base64 of 32 bytes, padded: the length of a key file's line. */
#define KEY_B64_LEN 44u
/* A key file may hold its line, "\r\n", and nothing more. */
#define KEY_FILE_MAX (KEY_B64_LEN + 2u)

/* Longest envelope type accepted by ev_signed_make. */
#define TYPE_MAX 128u

/* The key pair of a seed: *sk (64 bytes) in secure memory. */
static CK_RV
keypair(const ev_secret *seed, unsigned char pk[32], ev_secret **sk)
{
	ev_secret *k;

	*sk = NULL;
	if (seed == NULL || seed->len != crypto_sign_SEEDBYTES)
		return CKR_ARGUMENTS_BAD;
	k = ev_secret_new(crypto_sign_SECRETKEYBYTES);
	if (k == NULL)
		return CKR_HOST_MEMORY;
	if (crypto_sign_seed_keypair(pk, k->data, seed->data) != 0) {
		ev_secret_free(k);
		return CKR_GENERAL_ERROR;
	}
	*sk = k;
	return CKR_OK;
}

CK_RV
ev_signed_open(const unsigned char *buf, size_t len, const char *type, const unsigned char pk[32],
	       unsigned char **payload, size_t *plen, char *err, size_t errlen)
{
	static const char *const names[] = {"type", "payload", "signature"};
	json_object *env = NULL, *m[3] = {NULL, NULL, NULL};
	unsigned char sig[crypto_sign_BYTES];
	unsigned char *pl = NULL;
	const char *s64, *p64;
	size_t s64len, p64len, siglen = 0, cap, n = 0, i;
	char name[33];
	CK_RV rv;

	if (payload != NULL)
		*payload = NULL;
	if (plen != NULL)
		*plen = 0;
	if ((buf == NULL && len > 0) || type == NULL || pk == NULL || payload == NULL ||
	    plen == NULL) {
		ev_errf(err, errlen, "bad arguments");
		return CKR_ARGUMENTS_BAD;
	}
	if (len > EV_SIGNED_MAX) {
		ev_errf(err, errlen, "envelope of %zu bytes is over the limit of %u bytes", len,
			EV_SIGNED_MAX);
		return CKR_DATA_LEN_RANGE;
	}
	if (ev_secmem_init() != 0) {
		ev_errf(err, errlen, "cannot initialise libsodium");
		return CKR_GENERAL_ERROR;
	}
	rv = ev_json_parse_strict(buf, len, &env, err, errlen);
	if (rv != CKR_OK)
		return rv;
	rv = CKR_DATA_INVALID;
	if (!json_object_is_type(env, json_type_object)) {
		ev_errf(err, errlen, "not an envelope: expected a JSON object");
		goto out;
	}
	json_object_object_foreach(env, key, val)
	{
		for (i = 0; i < EV_ARRAY_SIZE(names); i++)
			if (strcmp(key, names[i]) == 0)
				break;
		if (i == EV_ARRAY_SIZE(names)) {
			ev_errf(err, errlen, "not an envelope: unknown member \"%s\"",
				ev_json_printable(key, name));
			goto out;
		}
		if (!json_object_is_type(val, json_type_string)) {
			ev_errf(err, errlen, "envelope: \"%s\" is not a string", names[i]);
			goto out;
		}
		m[i] = val;
	}
	for (i = 0; i < EV_ARRAY_SIZE(names); i++)
		if (m[i] == NULL) {
			ev_errf(err, errlen, "not an envelope: \"%s\" is missing", names[i]);
			goto out;
		}
	if ((size_t)json_object_get_string_len(m[0]) != strlen(type) ||
	    memcmp(json_object_get_string(m[0]), type, strlen(type)) != 0) {
		ev_errf(err, errlen, "envelope of type \"%s\", expected \"%s\"",
			ev_json_printable(json_object_get_string(m[0]), name), type);
		goto out;
	}
	s64 = json_object_get_string(m[2]);
	s64len = (size_t)json_object_get_string_len(m[2]);
	if (sodium_base642bin(sig, sizeof(sig), s64, s64len, NULL, &siglen, NULL, B64) != 0 ||
	    siglen != sizeof(sig)) {
		ev_errf(err, errlen, "envelope: \"signature\" is not base64 of %zu bytes",
			sizeof(sig));
		goto out;
	}
	p64 = json_object_get_string(m[1]);
	p64len = (size_t)json_object_get_string_len(m[1]);
	cap = p64len / 4 * 3 + 3;
	pl = malloc(cap + 1);
	if (pl == NULL) {
		ev_errf(err, errlen, "out of memory");
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	if (sodium_base642bin(pl, cap, p64, p64len, NULL, &n, NULL, B64) != 0) {
		ev_errf(err, errlen, "envelope: \"payload\" is not base64");
		goto out;
	}
	if (crypto_sign_verify_detached(sig, pl, n, pk) != 0) {
		ev_errf(err, errlen, "signature does not verify with the pinned public key");
		rv = CKR_SIGNATURE_INVALID;
		goto out;
	}
	pl[n] = '\0';
	*payload = pl;
	pl = NULL; /* transferred */
	*plen = n;
	rv = CKR_OK;
out:
	free(pl);
	json_object_put(env);
	return rv;
}

CK_RV
ev_signed_make(const unsigned char *payload, size_t plen, const char *type, const ev_secret *seed,
	       char **out, size_t *outlen)
{
	static const char f0[] = "{\"type\": \"", f1[] = "\", \"payload\": \"",
			  f2[] = "\", \"signature\": \"", f3[] = "\"}\n";
	unsigned char sig[crypto_sign_BYTES], pk[32];
	char sig64[sodium_base64_ENCODED_LEN(crypto_sign_BYTES, B64)];
	ev_secret *sk = NULL;
	size_t tlen, p64size, total, i;
	char *env = NULL, *p;
	CK_RV rv;

	if (out != NULL)
		*out = NULL;
	if (outlen != NULL)
		*outlen = 0;
	if ((payload == NULL && plen > 0) || type == NULL || out == NULL)
		return CKR_ARGUMENTS_BAD;
	/* The type is written as it is: keep it to printable ASCII a JSON string holds as is. */
	tlen = strlen(type);
	if (tlen == 0 || tlen > TYPE_MAX)
		return CKR_ARGUMENTS_BAD;
	for (i = 0; i < tlen; i++)
		if (type[i] < 0x20 || type[i] >= 0x7f || type[i] == '"' || type[i] == '\\')
			return CKR_ARGUMENTS_BAD;
	/* Never make what ev_signed_open would refuse as too large. */
	if (plen > EV_SIGNED_MAX / 4 * 3)
		return CKR_DATA_LEN_RANGE;
	p64size = sodium_base64_ENCODED_LEN(plen, B64);
	total = sizeof(f0) + tlen + sizeof(f1) + p64size + sizeof(f2) + sizeof(sig64) + sizeof(f3);
	if (total - 1 > EV_SIGNED_MAX)
		return CKR_DATA_LEN_RANGE;
	rv = keypair(seed, pk, &sk);
	if (rv != CKR_OK)
		return rv;
	if (crypto_sign_detached(sig, NULL, payload, plen, sk->data) != 0) {
		rv = CKR_GENERAL_ERROR;
		goto out;
	}
	sodium_bin2base64(sig64, sizeof(sig64), sig, sizeof(sig), B64);
	env = malloc(total);
	if (env == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	p = env;
	memcpy(p, f0, sizeof(f0) - 1);
	p += sizeof(f0) - 1;
	memcpy(p, type, tlen);
	p += tlen;
	memcpy(p, f1, sizeof(f1) - 1);
	p += sizeof(f1) - 1;
	sodium_bin2base64(p, p64size, payload == NULL ? (const unsigned char *)"" : payload, plen,
			  B64);
	p += strlen(p);
	memcpy(p, f2, sizeof(f2) - 1);
	p += sizeof(f2) - 1;
	memcpy(p, sig64, strlen(sig64));
	p += strlen(sig64);
	memcpy(p, f3, sizeof(f3)); /* with its NUL */
	if (outlen != NULL)
		*outlen = (size_t)(p - env) + sizeof(f3) - 1;
	*out = env;
	env = NULL; /* transferred */
	rv = CKR_OK;
out:
	ev_secret_free(sk);
	free(env);
	return rv;
}

CK_RV
ev_signkey_generate(ev_secret **seed, unsigned char pk[32])
{
	ev_secret *s, *sk = NULL;
	CK_RV rv;

	if (seed == NULL || pk == NULL)
		return CKR_ARGUMENTS_BAD;
	*seed = NULL;
	if (ev_secmem_init() != 0)
		return CKR_GENERAL_ERROR;
	s = ev_secret_new(crypto_sign_SEEDBYTES);
	if (s == NULL)
		return CKR_HOST_MEMORY;
	randombytes_buf(s->data, s->len);
	rv = keypair(s, pk, &sk);
	ev_secret_free(sk);
	if (rv != CKR_OK) {
		ev_secret_free(s);
		return rv;
	}
	*seed = s;
	return CKR_OK;
}

void
ev_signkey_public(const ev_secret *seed, unsigned char pk[32])
{
	ev_secret *sk = NULL;

	/* No error to return: a bad seed or no secure memory gives zeros, a key nothing verifies.
	 */
	if (keypair(seed, pk, &sk) != CKR_OK)
		memset(pk, 0, 32);
	ev_secret_free(sk);
}

CK_RV
ev_signkey_read(const char *path, ev_secret **seed, char *err, size_t errlen)
{
	ev_secret *buf = NULL, *s = NULL;
	struct stat st;
	size_t n = 0, blen = 0;
	ssize_t r;
	CK_RV rv = CKR_GENERAL_ERROR;
	int fd;

	if (seed == NULL || path == NULL) {
		ev_errf(err, errlen, "bad arguments");
		return CKR_GENERAL_ERROR;
	}
	*seed = NULL;
	if (ev_secmem_init() != 0) {
		ev_errf(err, errlen, "cannot initialise libsodium");
		return CKR_GENERAL_ERROR;
	}
	/* O_NONBLOCK: a FIFO in place of the file must not hang open(); refused below. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		ev_errf(err, errlen, "cannot read signing key %s: %s", path, strerror(errno));
		return CKR_GENERAL_ERROR;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		ev_errf(err, errlen, "signing key %s is not a regular file", path);
		goto out;
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		ev_errf(err, errlen,
			"signing key %s is accessible to group or others (mode %03o); chmod 600 it",
			path, (unsigned)(st.st_mode & 0777));
		goto out;
	}
	/* One byte more than allowed, to tell "too long" from "exactly full". */
	buf = ev_secret_new(KEY_FILE_MAX + 1);
	if (buf == NULL) {
		ev_errf(err, errlen, "out of secure memory reading %s", path);
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	while (n < buf->len) {
		r = read(fd, buf->data + n, buf->len - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ev_errf(err, errlen, "cannot read signing key %s: %s", path,
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
	s = ev_secret_new(crypto_sign_SEEDBYTES);
	if (s == NULL) {
		ev_errf(err, errlen, "out of secure memory reading %s", path);
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	if (n != KEY_B64_LEN ||
	    sodium_base642bin(s->data, s->len, (const char *)buf->data, n, NULL, &blen, NULL,
			      B64) != 0 ||
	    blen != crypto_sign_SEEDBYTES) {
		ev_errf(err, errlen,
			"signing key %s is malformed (expected one line: base64 of 32 bytes)",
			path);
		goto out;
	}
	*seed = s;
	s = NULL; /* transferred */
	rv = CKR_OK;
out:
	ev_secret_free(s);
	ev_secret_free(buf);
	close(fd);
	return rv;
}

/* Make a new directory entry durable: fsync the directory holding path. */
static void
sync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int fd;

	if (slash == NULL)
		dir = strdup(".");
	else if (slash == path)
		dir = strdup("/");
	else
		dir = strndup(path, (size_t)(slash - path));
	if (dir == NULL)
		return;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	free(dir);
}

CK_RV
ev_signkey_write(const char *path, const ev_secret *seed, char *err, size_t errlen)
{
	ev_secret *line = NULL;
	size_t done = 0;
	ssize_t r;
	CK_RV rv = CKR_GENERAL_ERROR;
	int fd, created = 0;

	if (path == NULL || seed == NULL || seed->len != crypto_sign_SEEDBYTES) {
		ev_errf(err, errlen, "bad arguments");
		return CKR_GENERAL_ERROR;
	}
	line = ev_secret_new(KEY_B64_LEN + 1);
	if (line == NULL) {
		ev_errf(err, errlen, "out of secure memory");
		return CKR_HOST_MEMORY;
	}
	sodium_bin2base64((char *)line->data, line->len, seed->data, seed->len, B64);
	line->data[KEY_B64_LEN] = '\n';
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0) {
		if (errno == EEXIST)
			ev_errf(err, errlen, "%s already exists; not replacing a signing key",
				path);
		else
			ev_errf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		goto out;
	}
	created = 1;
	/* Exactly 0600, whatever the umask took away. */
	if (fchmod(fd, 0600) != 0) {
		ev_errf(err, errlen, "cannot chmod %s: %s", path, strerror(errno));
		goto out;
	}
	while (done < line->len) {
		r = write(fd, line->data + done, line->len - done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			ev_errf(err, errlen, "cannot write %s: %s", path,
				r < 0 ? strerror(errno) : "short write");
			goto out;
		}
		done += (size_t)r;
	}
	if (fsync(fd) != 0) {
		ev_errf(err, errlen, "cannot write %s: fsync: %s", path, strerror(errno));
		goto out;
	}
	r = close(fd);
	fd = -1;
	if (r != 0) {
		ev_errf(err, errlen, "cannot write %s: close: %s", path, strerror(errno));
		goto out;
	}
	sync_parent(path);
	rv = CKR_OK;
out:
	if (fd >= 0)
		close(fd);
	if (rv != CKR_OK && created)
		(void)unlink(path); /* no half-written key left behind */
	ev_secret_free(line);
	return rv;
}

int
ev_pubkey_decode(const char *b64, unsigned char pk[32])
{
	unsigned char tmp[crypto_sign_PUBLICKEYBYTES];
	size_t n = 0;

	if (b64 == NULL || pk == NULL || strlen(b64) != KEY_B64_LEN)
		return -1;
	if (sodium_base642bin(tmp, sizeof(tmp), b64, KEY_B64_LEN, NULL, &n, NULL, B64) != 0 ||
	    n != sizeof(tmp))
		return -1;
	memcpy(pk, tmp, sizeof(tmp));
	return 0;
}

void
ev_pubkey_encode(const unsigned char pk[32], char out[45])
{
	sodium_bin2base64(out, 45, pk, 32, B64);
}
