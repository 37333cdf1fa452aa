/*
 * The root of trust: dispatch to the configured backend (root.h).
 */
#include <stdio.h>
#include <string.h>

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
	if (strcmp(backend, "pkcs11") == 0)
		return ev_root_pkcs11_open(cfg, flags, out, err, errlen);
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "unknown root backend %s", backend);
	return CKR_GENERAL_ERROR;
}

CK_RV
ev_root_seal(ev_root *r, const unsigned char *aad, size_t aadlen, const ev_secret *plain,
	     unsigned char **blob, size_t *bloblen)
{
	if (blob != NULL)
		*blob = NULL;
	if (bloblen != NULL)
		*bloblen = 0;
	if (r == NULL || r->ops == NULL || plain == NULL || blob == NULL || bloblen == NULL ||
	    (aad == NULL && aadlen > 0))
		return CKR_ARGUMENTS_BAD;
	return r->ops->seal(r, aad, aadlen, plain, blob, bloblen);
}

CK_RV
ev_root_unseal(ev_root *r, const unsigned char *aad, size_t aadlen, const unsigned char *blob,
	       size_t bloblen, ev_secret **plain)
{
	if (plain == NULL)
		return CKR_ARGUMENTS_BAD;
	*plain = NULL;
	if (r == NULL || r->ops == NULL || (blob == NULL && bloblen > 0) ||
	    (aad == NULL && aadlen > 0))
		return CKR_ARGUMENTS_BAD;
	return r->ops->unseal(r, aad, aadlen, blob, bloblen, plain);
}

void
ev_root_forked(ev_root *r)
{
	if (r != NULL && r->ops != NULL)
		r->ops->forked(r);
}

void
ev_root_free(ev_root *r)
{
	if (r != NULL && r->ops != NULL)
		r->ops->free(r);
}
