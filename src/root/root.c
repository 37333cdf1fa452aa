/*
 * The root of trust: dispatch to the configured backend (root.h).
 *
 * An upstream module runs inside the host process and may leave entries in
 * OpenSSL's per-thread error queue (SoftHSMv2 does, whenever it starts: it
 * looks for the "rdrand" engine). A host such as nginx reads a stale entry
 * as the failure of its next TLS call, so every call into the root leaves
 * the queue as it found it.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

#include "root.h"

CK_RV
ev_root_open(const ev_config *cfg, unsigned flags, ev_root **out, char *err, size_t errlen)
{
	const char *backend;

	if (out == NULL)
		return CKR_ARGUMENTS_BAD;
	*out = NULL;
	if (cfg == NULL) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "no configuration");
		return CKR_GENERAL_ERROR;
	}
	if (ev_secmem_init() != 0) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "cannot initialise libsodium");
		return CKR_GENERAL_ERROR;
	}
	backend = cfg->root_backend != NULL ? cfg->root_backend : "pkcs11";
	if (strcmp(backend, "pkcs11") == 0) {
		CK_RV rv;

		ERR_set_mark();
		rv = ev_root_pkcs11_open(cfg, flags, out, err, errlen);
		ERR_pop_to_mark();
		return rv;
	}
	if (strcmp(backend, "tpm2") == 0) {
		CK_RV rv;

		ERR_set_mark();
		rv = ev_root_tpm2_open(cfg, flags, out, err, errlen);
		ERR_pop_to_mark();
		return rv;
	}
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "unknown root backend %s", backend);
	return CKR_GENERAL_ERROR;
}

static int
is_tpm2(const ev_root *r)
{
	return r != NULL && r->ops != NULL && strcmp(r->ops->name, "tpm2") == 0;
}

CK_RV
ev_root_primary_name(ev_root *r, unsigned char *name, size_t *len)
{
	if (!is_tpm2(r))
		return CKR_FUNCTION_NOT_SUPPORTED;
	if (name == NULL || len == NULL)
		return CKR_ARGUMENTS_BAD;
	return ev_root_tpm2_name(r, name, len);
}

CK_RV
ev_root_pin_primary_name(ev_root *r, const unsigned char *name, size_t len)
{
	if (!is_tpm2(r))
		return CKR_OK;
	if (name == NULL)
		return CKR_ARGUMENTS_BAD;
	return ev_root_tpm2_pin_name(r, name, len);
}

CK_RV
ev_root_seal(ev_root *r, const unsigned char *aad, size_t aadlen, const ev_secret *plain,
	     const ev_seal_opts *opts, unsigned char **blob, size_t *bloblen)
{
	CK_RV rv;

	if (blob != NULL)
		*blob = NULL;
	if (bloblen != NULL)
		*bloblen = 0;
	if (r == NULL || r->ops == NULL || plain == NULL || blob == NULL || bloblen == NULL ||
	    (aad == NULL && aadlen > 0))
		return CKR_ARGUMENTS_BAD;
	if (opts != NULL &&
	    ((opts->pcrs & ~EV_PCR_ALL) != 0 || (opts->pcrs != 0 && opts->auth != NULL) ||
	     (opts->auth != NULL && (opts->auth->len == 0 || opts->auth->len > EV_SEAL_AUTH_MAX))))
		return CKR_ARGUMENTS_BAD;
	ERR_set_mark();
	rv = r->ops->seal(r, aad, aadlen, plain, opts, blob, bloblen);
	ERR_pop_to_mark();
	return rv;
}

CK_RV
ev_root_unseal(ev_root *r, const unsigned char *aad, size_t aadlen, const unsigned char *blob,
	       size_t bloblen, ev_unseal_opts *opts, ev_secret **plain)
{
	CK_RV rv;

	if (plain == NULL)
		return CKR_ARGUMENTS_BAD;
	*plain = NULL;
	if (opts != NULL) {
		opts->pcrs = 0;
		opts->changed = 0;
	}
	if (r == NULL || r->ops == NULL || (blob == NULL && bloblen > 0) ||
	    (aad == NULL && aadlen > 0))
		return CKR_ARGUMENTS_BAD;
	if (opts != NULL && opts->auth != NULL &&
	    (opts->auth->len == 0 || opts->auth->len > EV_SEAL_AUTH_MAX))
		return CKR_ARGUMENTS_BAD;
	ERR_set_mark();
	rv = r->ops->unseal(r, aad, aadlen, blob, bloblen, opts, plain);
	ERR_pop_to_mark();
	return rv;
}

void
ev_root_forked(ev_root *r)
{
	if (r != NULL && r->ops != NULL) {
		ERR_set_mark();
		r->ops->forked(r);
		ERR_pop_to_mark();
	}
}

void
ev_root_free(ev_root *r)
{
	if (r != NULL && r->ops != NULL) {
		ERR_set_mark();
		r->ops->free(r);
		ERR_pop_to_mark();
	}
}

CK_RV
ev_root_quote(ev_root *r, uint32_t pcrs, const unsigned char *nonce, size_t nonce_len,
	      struct ev_quote *q)
{
	CK_RV rv;

	if (r == NULL || r->ops == NULL || q == NULL || nonce == NULL || nonce_len == 0 ||
	    nonce_len > EV_QUOTE_NONCE_LEN || pcrs == 0 || (pcrs >> 24) != 0)
		return CKR_ARGUMENTS_BAD;
	if (r->ops->quote == NULL)
		return CKR_FUNCTION_NOT_SUPPORTED;
	memset(q, 0, sizeof(*q));
	ERR_set_mark();
	rv = r->ops->quote(r, pcrs, nonce, nonce_len, q);
	ERR_pop_to_mark();
	return rv;
}
