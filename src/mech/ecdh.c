/*
 * CKM_ECDH1_DERIVE: cofactor-less ECDH (the same as the cofactor variant
 * on the prime curves we offer), then CKD_NULL (the shared secret,
 * truncated from the leading end as the specification says) or an
 * ANSI X9.63 KDF (OpenSSL's X963KDF) with SHA-1/2.
 */
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "mech_int.h"

static const char *
kdf_digest(CK_EC_KDF_TYPE kdf)
{
	switch (kdf) {
	case CKD_SHA1_KDF:
		return "SHA1";
	case CKD_SHA256_KDF:
		return "SHA2-256";
	case CKD_SHA384_KDF:
		return "SHA2-384";
	case CKD_SHA512_KDF:
		return "SHA2-512";
	}
	return NULL;
}

/*
 * The peer's public key on the base key's curve, from a raw point or a
 * DER OCTET STRING around one (clients send either). A raw uncompressed
 * point is recognised by its exact size first: its leading 0x04 is also
 * the OCTET STRING tag.
 */
static CK_RV
peer_key(const ev_key *base, const CK_BYTE *data, CK_ULONG len, EVP_PKEY **out)
{
	ASN1_OCTET_STRING *os = NULL;
	const unsigned char *p = data, *pt = data;
	size_t ptlen = len, n;
	EVP_PKEY *peer = NULL;
	CK_RV rv = CKR_MECHANISM_PARAM_INVALID;
	int bits;

	bits = EVP_PKEY_get_bits(base->pkey);
	if (bits <= 0)
		return CKR_KEY_TYPE_INCONSISTENT;
	n = ((size_t)bits + 7) / 8;
	if (!((len == 2 * n + 1 && data[0] == 0x04) ||
	      (len == n + 1 && (data[0] == 0x02 || data[0] == 0x03)))) {
		os = d2i_ASN1_OCTET_STRING(NULL, &p, (long)len);
		if (os == NULL || p != data + len)
			goto out;
		pt = ASN1_STRING_get0_data(os);
		ptlen = (size_t)ASN1_STRING_length(os);
	}
	peer = EVP_PKEY_new();
	if (peer == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	/* Copies the curve, then checks the point lies on it. */
	if (!EVP_PKEY_copy_parameters(peer, base->pkey) ||
	    !EVP_PKEY_set1_encoded_public_key(peer, pt, ptlen))
		goto out;
	*out = peer;
	peer = NULL; /* transferred */
	rv = CKR_OK;
out:
	EVP_PKEY_free(peer);
	ASN1_OCTET_STRING_free(os);
	return rv;
}

static CK_RV
shared_secret(const ev_key *base, EVP_PKEY *peer, ev_secret **z)
{
	EVP_PKEY_CTX *ctx;
	size_t len = 0;
	CK_RV rv = CKR_FUNCTION_FAILED;

	*z = NULL;
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, base->pkey, NULL);
	if (ctx == NULL)
		return CKR_HOST_MEMORY;
	if (EVP_PKEY_derive_init(ctx) <= 0)
		goto out;
	if (EVP_PKEY_derive_set_peer(ctx, peer) <= 0) {
		rv = CKR_MECHANISM_PARAM_INVALID;
		goto out;
	}
	if (EVP_PKEY_derive(ctx, NULL, &len) <= 0)
		goto out;
	*z = ev_secret_new(len);
	if (*z == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	if (EVP_PKEY_derive(ctx, (*z)->data, &len) <= 0) {
		ev_secret_free(*z);
		*z = NULL;
		goto out;
	}
	(*z)->len = len;
	rv = CKR_OK;
out:
	EVP_PKEY_CTX_free(ctx);
	return rv;
}

static CK_RV
x963(const char *digest, const ev_secret *z, const CK_ECDH1_DERIVE_PARAMS *p, CK_ULONG len,
     ev_secret **out)
{
	OSSL_PARAM params[4], *q = params;
	EVP_KDF_CTX *kctx = NULL;
	EVP_KDF *kdf;
	ev_secret *s = NULL;
	CK_RV rv = CKR_FUNCTION_FAILED;

	kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_X963KDF, NULL);
	if (kdf == NULL)
		return CKR_MECHANISM_INVALID;
	kctx = EVP_KDF_CTX_new(kdf);
	s = ev_secret_new(len);
	if (kctx == NULL || s == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	*q++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)digest, 0);
	*q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, z->data, z->len);
	if (p->ulSharedDataLen > 0)
		*q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, p->pSharedData,
							 p->ulSharedDataLen);
	*q = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(kctx, s->data, len, params) <= 0)
		goto out;
	*out = s;
	s = NULL; /* transferred */
	rv = CKR_OK;
out:
	ev_secret_free(s);
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	return rv;
}

CK_RV
ev_mech_derive(const CK_MECHANISM *mech, const ev_key *base, CK_ULONG len, ev_secret **secret)
{
	const CK_ECDH1_DERIVE_PARAMS *p;
	const char *digest = NULL;
	EVP_PKEY *peer = NULL;
	ev_secret *z = NULL;
	CK_RV rv;

	if (mech == NULL || base == NULL || secret == NULL)
		return CKR_ARGUMENTS_BAD;
	*secret = NULL;
	if (mech->mechanism != CKM_ECDH1_DERIVE)
		return CKR_MECHANISM_INVALID;
	if (mech->pParameter == NULL || mech->ulParameterLen != sizeof(*p))
		return CKR_MECHANISM_PARAM_INVALID;
	p = mech->pParameter;
	if (p->pPublicData == NULL || p->ulPublicDataLen == 0)
		return CKR_MECHANISM_PARAM_INVALID;
	if (p->pSharedData == NULL && p->ulSharedDataLen != 0)
		return CKR_MECHANISM_PARAM_INVALID;
	if (p->kdf == CKD_NULL) {
		if (p->ulSharedDataLen != 0)
			return CKR_MECHANISM_PARAM_INVALID;
	} else {
		digest = kdf_digest(p->kdf);
		if (digest == NULL)
			return CKR_MECHANISM_PARAM_INVALID;
	}
	rv = ev_mech_key_ok(ev_mech_find(CKM_ECDH1_DERIVE), base);
	if (rv != CKR_OK)
		return rv;
	if (base->cls != CKO_PRIVATE_KEY || base->pkey == NULL)
		return CKR_KEY_TYPE_INCONSISTENT;

	rv = peer_key(base, p->pPublicData, p->ulPublicDataLen, &peer);
	if (rv != CKR_OK)
		goto out;
	rv = shared_secret(base, peer, &z);
	if (rv != CKR_OK)
		goto out;
	if (digest == NULL) {
		if (len > z->len) {
			rv = CKR_TEMPLATE_INCONSISTENT;
			goto out;
		}
		if (len == 0 || len == z->len) {
			*secret = z;
			z = NULL; /* transferred */
		} else {
			/* "The truncation removes bytes from the leading end." */
			*secret = ev_secret_dup(z->data + z->len - len, len);
			if (*secret == NULL)
				rv = CKR_HOST_MEMORY;
		}
		goto out;
	}
	/* The KDF makes as much as asked; by default one hash's worth. */
	if (len == 0) {
		EVP_MD *md = EVP_MD_fetch(NULL, digest, NULL);

		len = md != NULL ? (CK_ULONG)EVP_MD_get_size(md) : 0;
		EVP_MD_free(md);
		if (len == 0) {
			rv = CKR_MECHANISM_INVALID;
			goto out;
		}
	}
	rv = x963(digest, z, p, len, secret);
out:
	ev_secret_free(z);
	EVP_PKEY_free(peer);
	return rv;
}
