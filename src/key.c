/*
 * Key material over OpenSSL 3: generation, the public attributes that
 * follow from a key, import from PKCS#11 templates, and the serialized
 * forms kept wrapped in the store (PKCS#8 DER, raw secret bytes).
 *
 * Every EVP_PKEY made here is a provider-native key, complete when it is
 * made: the mechanisms share it between threads and never change it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "key.h"

#define EV_RSA_GEN_MIN 2048
#define EV_RSA_GEN_MAX 4096
#define EV_RSA_EXP_MAX_BYTES 32
#define EV_GENERIC_GEN_MAX 512
#define EV_ED25519_LEN 32
/* The largest uncompressed point we handle (P-384: 1 + 2 * 48). */
#define EV_EC_POINT_MAX 133

/* Ed25519 as GnuPG and older OpenSC name it in CKA_EC_PARAMS. */
#define EV_OID_ED25519_GNU "1.3.6.1.4.1.11591.15.1"

struct curve {
	int nid;
	CK_KEY_TYPE type;
	const char *name; /* OpenSSL group name, or key type for Edwards */
	size_t size;	  /* field size in bytes */
};

static const struct curve curves[] = {
    {NID_X9_62_prime256v1, CKK_EC, "P-256", 32},
    {NID_secp384r1, CKK_EC, "P-384", 48},
    {NID_ED25519, CKK_EC_EDWARDS, "ED25519", EV_ED25519_LEN},
};

static const struct curve *
curve_by_nid(int nid)
{
	size_t i;

	for (i = 0; i < EV_ARRAY_SIZE(curves); i++)
		if (curves[i].nid == nid)
			return &curves[i];
	return NULL;
}

/* The curve of an EC or Ed25519 key, or NULL. */
static const struct curve *
curve_of(EVP_PKEY *pkey)
{
	char name[64];
	size_t len = 0;
	int nid;

	if (EVP_PKEY_get_id(pkey) == EVP_PKEY_ED25519)
		return curve_by_nid(NID_ED25519);
	if (!EVP_PKEY_is_a(pkey, "EC"))
		return NULL;
	if (!EVP_PKEY_get_group_name(pkey, name, sizeof(name), &len))
		return NULL;
	nid = OBJ_sn2nid(name);
	if (nid == NID_undef)
		nid = EC_curve_nist2nid(name);
	return curve_by_nid(nid);
}

/*
 * Domain parameters of each Weierstrass curve, made on first use: a key
 * generated or a public key built from one of them copies its group,
 * where naming the curve builds the group anew every time (a third of a
 * P-256 key pair's cost). Shared read-only between threads until
 * ev_key_fini() (C_Finalize) frees them; a later C_Initialize makes them
 * again, which is why a mutex guards the making and not pthread_once. NULL
 * where making one failed: the named path is used.
 */
static EVP_PKEY *curve_params[EV_ARRAY_SIZE(curves)];
static pthread_mutex_t curve_params_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_int curve_params_made;

/* Caller holds curve_params_mu. */
static void
make_curve_params(void)
{
	EVP_PKEY_CTX *ctx;
	size_t i;
	int failed = 0;

	for (i = 0; i < EV_ARRAY_SIZE(curves); i++) {
		if (curves[i].type != CKK_EC)
			continue;
		ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
		if (ctx == NULL || EVP_PKEY_paramgen_init(ctx) <= 0 ||
		    EVP_PKEY_CTX_set_group_name(ctx, curves[i].name) <= 0 ||
		    EVP_PKEY_paramgen(ctx, &curve_params[i]) <= 0) {
			curve_params[i] = NULL;
			failed = 1;
		}
		EVP_PKEY_CTX_free(ctx);
	}
	/* The named path is used instead: leave no stale error to the next caller. */
	if (failed)
		ERR_clear_error();
}

void
ev_key_fini(void)
{
	size_t i;

	(void)pthread_mutex_lock(&curve_params_mu);
	for (i = 0; i < EV_ARRAY_SIZE(curves); i++) {
		EVP_PKEY_free(curve_params[i]);
		curve_params[i] = NULL;
	}
	atomic_store_explicit(&curve_params_made, 0, memory_order_release);
	(void)pthread_mutex_unlock(&curve_params_mu);
}

/* The parameters of curve c (curve_params), or NULL. */
static EVP_PKEY *
params_of(const struct curve *c)
{
	if (!atomic_load_explicit(&curve_params_made, memory_order_acquire)) {
		(void)pthread_mutex_lock(&curve_params_mu);
		if (!atomic_load_explicit(&curve_params_made, memory_order_relaxed)) {
			make_curve_params();
			atomic_store_explicit(&curve_params_made, 1, memory_order_release);
		}
		(void)pthread_mutex_unlock(&curve_params_mu);
	}
	return curve_params[c - curves];
}

/* The public point: uncompressed for EC, the 32 raw bytes for Ed25519. */
static CK_RV
point_of(EVP_PKEY *pkey, const struct curve *c, unsigned char point[EV_EC_POINT_MAX], size_t *len)
{
	*len = EV_EC_POINT_MAX;
	if (c->type == CKK_EC_EDWARDS) {
		if (!EVP_PKEY_get_raw_public_key(pkey, point, len))
			return CKR_FUNCTION_FAILED;
	} else if (!EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
						    EV_EC_POINT_MAX, len)) {
		return CKR_FUNCTION_FAILED;
	}
	return CKR_OK;
}

ev_key *
ev_key_ref(ev_key *k)
{
	if (k != NULL)
		atomic_fetch_add(&k->refs, 1);
	return k;
}

void
ev_key_free(ev_key *k)
{
	if (k == NULL || atomic_fetch_sub(&k->refs, 1) != 1)
		return;
	EVP_PKEY_free(k->pkey);
	ev_secret_free(k->secret);
	free(k);
}

static ev_key *
key_new(CK_OBJECT_CLASS cls, CK_KEY_TYPE type)
{
	ev_key *k = calloc(1, sizeof(*k));

	if (k != NULL) {
		k->cls = cls;
		k->type = type;
		atomic_init(&k->refs, 1);
	}
	return k;
}

static const CK_ATTRIBUTE *
tmpl_find(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
	CK_ULONG i;

	if (t == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		if (t[i].type == type)
			return &t[i];
	return NULL;
}

/* A required, non-empty byte attribute. */
static CK_RV
tmpl_bytes(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, const CK_BYTE **val,
	   CK_ULONG *len)
{
	const CK_ATTRIBUTE *a = tmpl_find(t, n, type);

	if (a == NULL)
		return CKR_TEMPLATE_INCOMPLETE;
	if (a->pValue == NULL || a->ulValueLen == 0 || a->ulValueLen == CK_UNAVAILABLE_INFORMATION)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	*val = a->pValue;
	*len = a->ulValueLen;
	return CKR_OK;
}

/*
 * CKA_EC_PARAMS: a named-curve OID, or (PKCS#11 3.0, Edwards curves) a
 * PrintableString curve name. Anything else, explicit parameters
 * included, is a curve we do not support.
 */
static CK_RV
parse_ec_params(const CK_BYTE *der, CK_ULONG len, const struct curve **out)
{
	const unsigned char *p = der;
	ASN1_OBJECT *obj = NULL;
	ASN1_PRINTABLESTRING *str = NULL;
	const struct curve *c = NULL;
	char name[64], txt[64];
	int nid = NID_undef, n;
	CK_RV rv = CKR_ATTRIBUTE_VALUE_INVALID;

	if (len < 2)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	if (der[0] == V_ASN1_OBJECT) {
		obj = d2i_ASN1_OBJECT(NULL, &p, (long)len);
		if (obj == NULL || p != der + len)
			goto out;
		nid = OBJ_obj2nid(obj);
		if (nid == NID_undef) {
			n = OBJ_obj2txt(txt, sizeof(txt), obj, 1);
			if (n > 0 && (size_t)n < sizeof(txt) &&
			    strcmp(txt, EV_OID_ED25519_GNU) == 0)
				nid = NID_ED25519;
		}
	} else if (der[0] == V_ASN1_PRINTABLESTRING) {
		str = d2i_ASN1_PRINTABLESTRING(NULL, &p, (long)len);
		if (str == NULL || p != der + len)
			goto out;
		n = ASN1_STRING_length(str);
		if (n > 0 && (size_t)n < sizeof(name)) {
			memcpy(name, ASN1_STRING_get0_data(str), (size_t)n);
			name[n] = '\0';
			if (strcmp(name, "edwards25519") == 0)
				nid = NID_ED25519;
			else if ((nid = EC_curve_nist2nid(name)) == NID_undef)
				nid = OBJ_sn2nid(name);
		}
	}
	/* Anything else, explicit parameters included, stays NID_undef. */
	c = curve_by_nid(nid);
	rv = c != NULL ? CKR_OK : CKR_CURVE_NOT_SUPPORTED;
	*out = c;
out:
	ASN1_OBJECT_free(obj);
	ASN1_PRINTABLESTRING_free(str);
	return rv;
}

/* Generation */

static CK_RV
generate_ec(CK_MECHANISM_TYPE mech, const ev_attrs *tmpl, EVP_PKEY **pkey, CK_KEY_TYPE *type)
{
	const CK_ATTRIBUTE *a = ev_attrs_get(tmpl, CKA_EC_PARAMS);
	const struct curve *c;
	EVP_PKEY_CTX *ctx;
	EVP_PKEY *params;
	CK_RV rv;

	if (a == NULL)
		return CKR_TEMPLATE_INCOMPLETE;
	if (a->pValue == NULL)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	rv = parse_ec_params(a->pValue, a->ulValueLen, &c);
	if (rv != CKR_OK)
		return rv;
	*type = mech == CKM_EC_KEY_PAIR_GEN ? CKK_EC : CKK_EC_EDWARDS;
	if (c->type != *type)
		return CKR_CURVE_NOT_SUPPORTED;
	if (c->type == CKK_EC && (params = params_of(c)) != NULL) {
		ctx = EVP_PKEY_CTX_new_from_pkey(NULL, params, NULL);
		if (ctx == NULL || EVP_PKEY_keygen_init(ctx) <= 0 ||
		    EVP_PKEY_generate(ctx, pkey) <= 0)
			*pkey = NULL;
		EVP_PKEY_CTX_free(ctx);
	} else if (c->type == CKK_EC) {
		*pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", c->name);
	} else {
		*pkey = EVP_PKEY_Q_keygen(NULL, NULL, c->name);
	}
	return *pkey != NULL ? CKR_OK : CKR_FUNCTION_FAILED;
}

static CK_RV
generate_rsa(const ev_attrs *tmpl, EVP_PKEY **pkey)
{
	const CK_ATTRIBUTE *a;
	EVP_PKEY_CTX *ctx = NULL;
	BIGNUM *e = NULL;
	CK_ULONG bits;
	CK_RV rv;

	rv = ev_attrs_ulong(tmpl, CKA_MODULUS_BITS, &bits);
	if (rv == EVR_NOT_FOUND)
		return CKR_TEMPLATE_INCOMPLETE;
	if (rv != CKR_OK)
		return rv;
	if (bits < EV_RSA_GEN_MIN || bits > EV_RSA_GEN_MAX)
		return CKR_KEY_SIZE_RANGE;
	a = ev_attrs_get(tmpl, CKA_PUBLIC_EXPONENT);
	if (a != NULL) {
		if (a->pValue == NULL || a->ulValueLen == 0 || a->ulValueLen > EV_RSA_EXP_MAX_BYTES)
			return CKR_ATTRIBUTE_VALUE_INVALID;
		e = BN_bin2bn(a->pValue, (int)a->ulValueLen, NULL);
		if (e == NULL)
			return CKR_HOST_MEMORY;
		/* An odd exponent of at least 3 (FIPS 186 asks 65537 or more). */
		if (!BN_is_odd(e) || BN_cmp(e, BN_value_one()) <= 0) {
			rv = CKR_ATTRIBUTE_VALUE_INVALID;
			goto out;
		}
	}
	rv = CKR_FUNCTION_FAILED;
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	if (ctx == NULL || EVP_PKEY_keygen_init(ctx) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)bits) <= 0)
		goto out;
	if (e != NULL && EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx, e) <= 0)
		goto out;
	if (EVP_PKEY_generate(ctx, pkey) <= 0)
		goto out;
	rv = CKR_OK;
out:
	BN_free(e);
	EVP_PKEY_CTX_free(ctx);
	return rv;
}

CK_RV
ev_key_generate_pair(CK_MECHANISM_TYPE mech, const ev_attrs *pub_tmpl, ev_key **priv, ev_key **pub)
{
	EVP_PKEY *pkey = NULL;
	ev_key *k = NULL, *p = NULL;
	CK_KEY_TYPE type = CKK_RSA;
	CK_RV rv;

	if (pub_tmpl == NULL || priv == NULL || pub == NULL)
		return CKR_ARGUMENTS_BAD;
	*priv = *pub = NULL;
	switch (mech) {
	case CKM_EC_KEY_PAIR_GEN:
	case CKM_EC_EDWARDS_KEY_PAIR_GEN:
		rv = generate_ec(mech, pub_tmpl, &pkey, &type);
		break;
	case CKM_RSA_PKCS_KEY_PAIR_GEN:
		rv = generate_rsa(pub_tmpl, &pkey);
		break;
	default:
		return CKR_MECHANISM_INVALID;
	}
	if (rv != CKR_OK)
		goto out;
	k = key_new(CKO_PRIVATE_KEY, type);
	if (k == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	k->pkey = pkey;
	pkey = NULL; /* transferred */
	rv = ev_key_public_of(k, &p);
	if (rv != CKR_OK)
		goto out;
	*priv = k;
	*pub = p;
	k = p = NULL; /* transferred */
out:
	EVP_PKEY_free(pkey);
	ev_key_free(k);
	ev_key_free(p);
	return rv;
}

CK_RV
ev_key_generate_secret(CK_MECHANISM_TYPE mech, const ev_attrs *tmpl, ev_key **key)
{
	CK_KEY_TYPE type;
	ev_key *k;
	CK_ULONG len;
	CK_RV rv;

	if (tmpl == NULL || key == NULL)
		return CKR_ARGUMENTS_BAD;
	*key = NULL;
	switch (mech) {
	case CKM_AES_KEY_GEN:
		type = CKK_AES;
		break;
	case CKM_GENERIC_SECRET_KEY_GEN:
		type = CKK_GENERIC_SECRET;
		break;
	default:
		return CKR_MECHANISM_INVALID;
	}
	rv = ev_attrs_ulong(tmpl, CKA_VALUE_LEN, &len);
	if (rv == EVR_NOT_FOUND)
		return CKR_TEMPLATE_INCOMPLETE;
	if (rv != CKR_OK)
		return rv;
	if (type == CKK_AES && len != 16 && len != 24 && len != 32)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	if (type == CKK_GENERIC_SECRET && (len == 0 || len > EV_GENERIC_GEN_MAX))
		return CKR_ATTRIBUTE_VALUE_INVALID;
	k = key_new(CKO_SECRET_KEY, type);
	if (k == NULL)
		return CKR_HOST_MEMORY;
	k->secret = ev_secret_new(len);
	if (k->secret == NULL) {
		ev_key_free(k);
		return CKR_HOST_MEMORY;
	}
	if (RAND_priv_bytes(k->secret->data, (int)len) != 1) {
		ev_key_free(k);
		return CKR_FUNCTION_FAILED;
	}
	*key = k;
	return CKR_OK;
}

/* Public attributes */

/* Set a DER-encoded attribute produced by an i2d-style call, then free it. */
static CK_RV
set_der(ev_attrs *attrs, CK_ATTRIBUTE_TYPE type, unsigned char *der, int len)
{
	CK_RV rv;

	if (len <= 0 || der == NULL) {
		OPENSSL_free(der);
		return CKR_FUNCTION_FAILED;
	}
	rv = ev_attrs_set(attrs, type, der, (CK_ULONG)len);
	OPENSSL_free(der);
	return rv;
}

/* A DER OCTET STRING around bytes (CKA_EC_POINT). */
static CK_RV
set_octet_string(ev_attrs *attrs, CK_ATTRIBUTE_TYPE type, const unsigned char *p, size_t len)
{
	ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
	unsigned char *der = NULL;
	int n;

	if (os == NULL || !ASN1_OCTET_STRING_set(os, p, (int)len)) {
		ASN1_OCTET_STRING_free(os);
		return CKR_HOST_MEMORY;
	}
	n = i2d_ASN1_OCTET_STRING(os, &der);
	ASN1_OCTET_STRING_free(os);
	return set_der(attrs, type, der, n);
}

/* A big-endian integer without leading zeros (CKA_MODULUS, ...). */
static CK_RV
set_bn_param(ev_attrs *attrs, CK_ATTRIBUTE_TYPE type, EVP_PKEY *pkey, const char *param)
{
	BIGNUM *bn = NULL;
	unsigned char *buf;
	int n;
	CK_RV rv;

	if (!EVP_PKEY_get_bn_param(pkey, param, &bn))
		return CKR_FUNCTION_FAILED;
	n = BN_num_bytes(bn);
	buf = OPENSSL_malloc(n > 0 ? (size_t)n : 1);
	if (buf == NULL) {
		BN_free(bn);
		return CKR_HOST_MEMORY;
	}
	BN_bn2bin(bn, buf);
	rv = ev_attrs_set(attrs, type, buf, (CK_ULONG)n);
	OPENSSL_free(buf);
	BN_free(bn);
	return rv;
}

static CK_RV
ec_public_attrs(const ev_key *k, ev_attrs *attrs)
{
	const struct curve *c = curve_of(k->pkey);
	unsigned char point[EV_EC_POINT_MAX], *der = NULL;
	size_t len = 0;
	CK_RV rv;
	int n;

	if (c == NULL)
		return CKR_CURVE_NOT_SUPPORTED;
	n = i2d_ASN1_OBJECT(OBJ_nid2obj(c->nid), &der);
	rv = set_der(attrs, CKA_EC_PARAMS, der, n);
	if (rv != CKR_OK || k->cls != CKO_PUBLIC_KEY)
		return rv;
	rv = point_of(k->pkey, c, point, &len);
	if (rv != CKR_OK)
		return rv;
	return set_octet_string(attrs, CKA_EC_POINT, point, len);
}

/*
 * CKA_PUBLIC_KEY_INFO. EC and Ed25519 keys: the SubjectPublicKeyInfo is
 * put together from the algorithm, the curve and the point by OpenSSL's
 * ASN.1 code; i2d_PUBKEY() would look up an encoder among all the
 * providers' on every call (three quarters of a P-256 key pair's cost).
 * RSA keys, rarely made, go through i2d_PUBKEY().
 */
static CK_RV
set_spki(ev_attrs *attrs, EVP_PKEY *pkey)
{
	const struct curve *c = curve_of(pkey);
	unsigned char point[EV_EC_POINT_MAX], *copy, *der = NULL;
	X509_PUBKEY *xpk;
	size_t len;
	int ok, n;
	CK_RV rv;

	if (c == NULL) {
		n = i2d_PUBKEY(pkey, &der);
		return set_der(attrs, CKA_PUBLIC_KEY_INFO, der, n);
	}
	rv = point_of(pkey, c, point, &len);
	if (rv != CKR_OK)
		return rv;
	xpk = X509_PUBKEY_new();
	copy = OPENSSL_memdup(point, len);
	if (xpk == NULL || copy == NULL) {
		X509_PUBKEY_free(xpk);
		OPENSSL_free(copy);
		return CKR_HOST_MEMORY;
	}
	if (c->type == CKK_EC)
		ok = X509_PUBKEY_set0_param(xpk, OBJ_nid2obj(NID_X9_62_id_ecPublicKey),
					    V_ASN1_OBJECT, OBJ_nid2obj(c->nid), copy, (int)len);
	else
		ok = X509_PUBKEY_set0_param(xpk, OBJ_nid2obj(c->nid), V_ASN1_UNDEF, NULL, copy,
					    (int)len);
	if (!ok)
		OPENSSL_free(copy); /* not transferred */
	n = ok ? i2d_X509_PUBKEY(xpk, &der) : -1;
	X509_PUBKEY_free(xpk);
	return set_der(attrs, CKA_PUBLIC_KEY_INFO, der, n);
}

CK_RV
ev_key_public_attrs(const ev_key *k, ev_attrs *attrs)
{
	CK_RV rv;

	if (k == NULL || attrs == NULL)
		return CKR_ARGUMENTS_BAD;
	rv = ev_attrs_set_ulong(attrs, CKA_KEY_TYPE, k->type);
	if (rv != CKR_OK)
		return rv;
	if (k->cls == CKO_SECRET_KEY) {
		if (k->secret == NULL)
			return CKR_KEY_TYPE_INCONSISTENT;
		return ev_attrs_set_ulong(attrs, CKA_VALUE_LEN, (CK_ULONG)k->secret->len);
	}
	if (k->pkey == NULL)
		return CKR_KEY_TYPE_INCONSISTENT;
	rv = set_spki(attrs, k->pkey);
	if (rv != CKR_OK)
		return rv;
	switch (k->type) {
	case CKK_EC:
	case CKK_EC_EDWARDS:
		return ec_public_attrs(k, attrs);
	case CKK_RSA:
		rv = set_bn_param(attrs, CKA_MODULUS, k->pkey, OSSL_PKEY_PARAM_RSA_N);
		if (rv == CKR_OK)
			rv = set_bn_param(attrs, CKA_PUBLIC_EXPONENT, k->pkey,
					  OSSL_PKEY_PARAM_RSA_E);
		if (rv == CKR_OK && k->cls == CKO_PUBLIC_KEY)
			rv = ev_attrs_set_ulong(attrs, CKA_MODULUS_BITS,
						(CK_ULONG)EVP_PKEY_get_bits(k->pkey));
		return rv;
	}
	return CKR_KEY_TYPE_INCONSISTENT;
}

/* Import from templates */

/* EVP_PKEY_fromdata() under the key type's name. */
static CK_RV
from_params(const char *name, int selection, const OSSL_PARAM *params, EVP_PKEY **out)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, name, NULL);
	CK_RV rv = CKR_ATTRIBUTE_VALUE_INVALID;

	if (ctx == NULL)
		return CKR_HOST_MEMORY;
	if (EVP_PKEY_fromdata_init(ctx) > 0 &&
	    EVP_PKEY_fromdata(ctx, out, selection, (OSSL_PARAM *)params) > 0)
		rv = CKR_OK;
	EVP_PKEY_CTX_free(ctx);
	return rv;
}

/* Run a check (public, pairwise) on a freshly imported key. */
static CK_RV
check_key(EVP_PKEY *pkey, int pairwise)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	int ok;

	if (ctx == NULL)
		return CKR_HOST_MEMORY;
	ok = pairwise ? EVP_PKEY_pairwise_check(ctx) : EVP_PKEY_public_check(ctx);
	EVP_PKEY_CTX_free(ctx);
	return ok == 1 ? CKR_OK : CKR_ATTRIBUTE_VALUE_INVALID;
}

/*
 * CKA_EC_POINT as clients send it: the raw point, or a DER OCTET STRING
 * around it. The raw form is recognised by its exact size first (its
 * 0x04 prefix is also the OCTET STRING tag).
 */
static CK_RV
ec_point(const struct curve *c, const CK_BYTE *val, CK_ULONG len, unsigned char *pt, size_t *ptlen)
{
	const unsigned char *p = val;
	ASN1_OCTET_STRING *os;
	int raw, n;

	if (c->type == CKK_EC_EDWARDS)
		raw = len == c->size;
	else
		raw = (len == 2 * c->size + 1 && val[0] == 0x04) ||
		      (len == c->size + 1 && (val[0] == 0x02 || val[0] == 0x03));
	if (raw) {
		memcpy(pt, val, len);
		*ptlen = len;
		return CKR_OK;
	}
	os = d2i_ASN1_OCTET_STRING(NULL, &p, (long)len);
	if (os == NULL || p != val + len) {
		ASN1_OCTET_STRING_free(os);
		return CKR_ATTRIBUTE_VALUE_INVALID;
	}
	n = ASN1_STRING_length(os);
	if (n <= 0 || (size_t)n > EV_EC_POINT_MAX ||
	    (c->type == CKK_EC_EDWARDS && (size_t)n != c->size)) {
		ASN1_OCTET_STRING_free(os);
		return CKR_ATTRIBUTE_VALUE_INVALID;
	}
	memcpy(pt, ASN1_STRING_get0_data(os), (size_t)n);
	*ptlen = (size_t)n;
	ASN1_OCTET_STRING_free(os);
	return CKR_OK;
}

static CK_RV
ec_public_from_point(const struct curve *c, const unsigned char *pt, size_t ptlen, EVP_PKEY **out)
{
	OSSL_PARAM params[3];
	CK_RV rv;

	if (c->type == CKK_EC_EDWARDS) {
		*out = EVP_PKEY_new_raw_public_key_ex(NULL, c->name, NULL, pt, ptlen);
		return *out != NULL ? CKR_OK : CKR_ATTRIBUTE_VALUE_INVALID;
	}
	params[0] =
	    OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)c->name, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pt, ptlen);
	params[2] = OSSL_PARAM_construct_end();
	rv = from_params("EC", EVP_PKEY_PUBLIC_KEY, params, out);
	if (rv != CKR_OK)
		return rv;
	/* A point off the curve must never reach ECDH or ECDSA verification. */
	rv = check_key(*out, 0);
	if (rv != CKR_OK) {
		EVP_PKEY_free(*out);
		*out = NULL;
	}
	return rv;
}

/* The private scalar d, its public point d*G computed here. */
static CK_RV
ec_private(const struct curve *c, const CK_BYTE *d, CK_ULONG dlen, EVP_PKEY **out)
{
	unsigned char pub[EV_EC_POINT_MAX];
	EC_GROUP *group = NULL;
	EC_POINT *point = NULL;
	BN_CTX *bnctx = NULL;
	BIGNUM *priv = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	size_t publen;
	CK_RV rv = CKR_HOST_MEMORY;

	if (c->type == CKK_EC_EDWARDS) {
		if (dlen != c->size)
			return CKR_ATTRIBUTE_VALUE_INVALID;
		*out = EVP_PKEY_new_raw_private_key_ex(NULL, c->name, NULL, d, dlen);
		return *out != NULL ? CKR_OK : CKR_ATTRIBUTE_VALUE_INVALID;
	}
	if (dlen > 2 * c->size)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	group = EC_GROUP_new_by_curve_name(c->nid);
	bnctx = BN_CTX_secure_new();
	priv = BN_secure_new();
	if (group == NULL || bnctx == NULL || priv == NULL)
		goto out;
	point = EC_POINT_new(group);
	if (point == NULL || BN_bin2bn(d, (int)dlen, priv) == NULL)
		goto out;
	rv = CKR_ATTRIBUTE_VALUE_INVALID;
	if (BN_is_zero(priv) || BN_cmp(priv, EC_GROUP_get0_order(group)) >= 0)
		goto out;
	rv = CKR_FUNCTION_FAILED;
	if (!EC_POINT_mul(group, point, priv, NULL, NULL, bnctx))
		goto out;
	publen = EC_POINT_point2oct(group, point, POINT_CONVERSION_UNCOMPRESSED, pub, sizeof(pub),
				    bnctx);
	if (publen == 0)
		goto out;
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, c->name, 0) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, priv) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, publen))
		goto out;
	params = OSSL_PARAM_BLD_to_param(bld);
	if (params == NULL)
		goto out;
	rv = from_params("EC", EVP_PKEY_KEYPAIR, params, out);
out:
	OSSL_PARAM_free(params); /* the secure part is wiped */
	OSSL_PARAM_BLD_free(bld);
	BN_clear_free(priv);
	BN_CTX_free(bnctx);
	EC_POINT_free(point);
	EC_GROUP_free(group);
	return rv;
}

static CK_RV
ec_from_template(CK_OBJECT_CLASS cls, CK_KEY_TYPE type, const CK_ATTRIBUTE *t, CK_ULONG n,
		 EVP_PKEY **out)
{
	const struct curve *c;
	const CK_BYTE *val;
	unsigned char pt[EV_EC_POINT_MAX];
	size_t ptlen;
	CK_ULONG len;
	CK_RV rv;

	rv = tmpl_bytes(t, n, CKA_EC_PARAMS, &val, &len);
	if (rv != CKR_OK)
		return rv;
	rv = parse_ec_params(val, len, &c);
	if (rv != CKR_OK)
		return rv;
	if (c->type != type)
		return CKR_KEY_TYPE_INCONSISTENT;
	if (cls == CKO_PRIVATE_KEY) {
		rv = tmpl_bytes(t, n, CKA_VALUE, &val, &len);
		if (rv != CKR_OK)
			return rv;
		return ec_private(c, val, len, out);
	}
	rv = tmpl_bytes(t, n, CKA_EC_POINT, &val, &len);
	if (rv != CKR_OK)
		return rv;
	rv = ec_point(c, val, len, pt, &ptlen);
	if (rv != CKR_OK)
		return rv;
	return ec_public_from_point(c, pt, ptlen, out);
}

/* An RSA component onto the builder; secret ones in secure BIGNUMs. */
static CK_RV
push_rsa_bn(OSSL_PARAM_BLD *bld, const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type,
	    const char *param, BIGNUM **bns, size_t *nbn)
{
	const CK_BYTE *val;
	CK_ULONG len;
	BIGNUM *bn;
	CK_RV rv;

	rv = tmpl_bytes(t, n, type, &val, &len);
	if (rv != CKR_OK)
		return rv;
	if (len > INT32_MAX)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	bn = BN_secure_new();
	if (bn == NULL)
		return CKR_HOST_MEMORY;
	bns[(*nbn)++] = bn; /* freed by the caller */
	if (BN_bin2bn(val, (int)len, bn) == NULL || !OSSL_PARAM_BLD_push_BN(bld, param, bn))
		return CKR_HOST_MEMORY;
	return CKR_OK;
}

static CK_RV
rsa_from_template(CK_OBJECT_CLASS cls, const CK_ATTRIBUTE *t, CK_ULONG n, EVP_PKEY **out)
{
	static const struct {
		CK_ATTRIBUTE_TYPE type;
		const char *param;
	} crt[] = {
	    {CKA_PRIME_1, OSSL_PKEY_PARAM_RSA_FACTOR1},
	    {CKA_PRIME_2, OSSL_PKEY_PARAM_RSA_FACTOR2},
	    {CKA_EXPONENT_1, OSSL_PKEY_PARAM_RSA_EXPONENT1},
	    {CKA_EXPONENT_2, OSSL_PKEY_PARAM_RSA_EXPONENT2},
	    {CKA_COEFFICIENT, OSSL_PKEY_PARAM_RSA_COEFFICIENT1},
	};
	BIGNUM *bns[8] = {NULL};
	size_t nbn = 0, i, have = 0;
	OSSL_PARAM_BLD *bld;
	OSSL_PARAM *params = NULL;
	CK_RV rv;

	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL)
		return CKR_HOST_MEMORY;
	rv = push_rsa_bn(bld, t, n, CKA_MODULUS, OSSL_PKEY_PARAM_RSA_N, bns, &nbn);
	if (rv == CKR_OK)
		rv = push_rsa_bn(bld, t, n, CKA_PUBLIC_EXPONENT, OSSL_PKEY_PARAM_RSA_E, bns, &nbn);
	if (rv == CKR_OK && cls == CKO_PRIVATE_KEY)
		rv = push_rsa_bn(bld, t, n, CKA_PRIVATE_EXPONENT, OSSL_PKEY_PARAM_RSA_D, bns, &nbn);
	if (rv != CKR_OK)
		goto out;
	if (cls == CKO_PRIVATE_KEY) {
		/* The CRT values come all together or not at all. */
		for (i = 0; i < EV_ARRAY_SIZE(crt); i++)
			have += tmpl_find(t, n, crt[i].type) != NULL;
		if (have != 0 && have != EV_ARRAY_SIZE(crt)) {
			rv = CKR_TEMPLATE_INCOMPLETE;
			goto out;
		}
		for (i = 0; have != 0 && i < EV_ARRAY_SIZE(crt) && rv == CKR_OK; i++)
			rv = push_rsa_bn(bld, t, n, crt[i].type, crt[i].param, bns, &nbn);
		if (rv != CKR_OK)
			goto out;
	}
	params = OSSL_PARAM_BLD_to_param(bld);
	if (params == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	rv = from_params("RSA", cls == CKO_PRIVATE_KEY ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY,
			 params, out);
	if (rv != CKR_OK)
		goto out;
	/* Inconsistent components would sign garbage: check what can be checked. */
	rv = check_key(*out, cls == CKO_PRIVATE_KEY && have != 0);
	if (rv != CKR_OK) {
		EVP_PKEY_free(*out);
		*out = NULL;
	}
out:
	OSSL_PARAM_free(params); /* the secure part is wiped */
	OSSL_PARAM_BLD_free(bld);
	for (i = 0; i < nbn; i++)
		BN_clear_free(bns[i]);
	return rv;
}

static int
is_secret_type(CK_KEY_TYPE type)
{
	switch (type) {
	case CKK_AES:
	case CKK_GENERIC_SECRET:
	case CKK_SHA_1_HMAC:
	case CKK_SHA256_HMAC:
	case CKK_SHA384_HMAC:
	case CKK_SHA512_HMAC:
		return 1;
	}
	return 0;
}

static int
is_asym_type(CK_KEY_TYPE type)
{
	return type == CKK_EC || type == CKK_EC_EDWARDS || type == CKK_RSA;
}

/* Secret key bytes, checked against the key type. */
static CK_RV
secret_value_ok(CK_KEY_TYPE type, size_t len)
{
	if (type == CKK_AES)
		return len == 16 || len == 24 || len == 32 ? CKR_OK : CKR_ATTRIBUTE_VALUE_INVALID;
	return len > 0 ? CKR_OK : CKR_ATTRIBUTE_VALUE_INVALID;
}

CK_RV
ev_key_from_template(CK_OBJECT_CLASS cls, CK_KEY_TYPE type, const CK_ATTRIBUTE *tmpl,
		     CK_ULONG count, ev_key **out)
{
	EVP_PKEY *pkey = NULL;
	const CK_BYTE *val;
	CK_ULONG len;
	ev_key *k = NULL;
	CK_RV rv;

	if (out == NULL || (tmpl == NULL && count != 0))
		return CKR_ARGUMENTS_BAD;
	*out = NULL;
	switch (cls) {
	case CKO_SECRET_KEY:
		if (is_asym_type(type))
			return CKR_KEY_TYPE_INCONSISTENT;
		if (!is_secret_type(type))
			return CKR_ATTRIBUTE_VALUE_INVALID;
		rv = tmpl_bytes(tmpl, count, CKA_VALUE, &val, &len);
		if (rv != CKR_OK)
			return rv;
		rv = secret_value_ok(type, len);
		if (rv != CKR_OK)
			return rv;
		k = key_new(cls, type);
		if (k == NULL)
			return CKR_HOST_MEMORY;
		k->secret = ev_secret_dup(val, len);
		if (k->secret == NULL) {
			ev_key_free(k);
			return CKR_HOST_MEMORY;
		}
		*out = k;
		return CKR_OK;
	case CKO_PUBLIC_KEY:
	case CKO_PRIVATE_KEY:
		if (is_secret_type(type))
			return CKR_KEY_TYPE_INCONSISTENT;
		if (type == CKK_EC || type == CKK_EC_EDWARDS)
			rv = ec_from_template(cls, type, tmpl, count, &pkey);
		else if (type == CKK_RSA)
			rv = rsa_from_template(cls, tmpl, count, &pkey);
		else
			return CKR_ATTRIBUTE_VALUE_INVALID;
		break;
	default:
		return CKR_ATTRIBUTE_VALUE_INVALID;
	}
	if (rv != CKR_OK)
		goto out;
	k = key_new(cls, type);
	if (k == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	k->pkey = pkey;
	pkey = NULL; /* transferred */
	*out = k;
out:
	EVP_PKEY_free(pkey);
	return rv;
}

/*
 * The public key of an EC private key: its curve's parameters (copied
 * from curve_params, not built by name) and its point, nothing else.
 * NULL when that cannot be done: the caller takes the general path.
 */
static EVP_PKEY *
ec_public_of(EVP_PKEY *priv)
{
	const struct curve *c = curve_of(priv);
	unsigned char point[EV_EC_POINT_MAX];
	EVP_PKEY *params, *pub;
	size_t len;

	if (c == NULL || c->type != CKK_EC || (params = params_of(c)) == NULL ||
	    point_of(priv, c, point, &len) != CKR_OK)
		return NULL;
	pub = EVP_PKEY_new();
	if (pub == NULL || EVP_PKEY_copy_parameters(pub, params) != 1 ||
	    EVP_PKEY_set1_encoded_public_key(pub, point, len) != 1) {
		EVP_PKEY_free(pub);
		return NULL;
	}
	return pub;
}

CK_RV
ev_key_public_of(const ev_key *priv, ev_key **pub)
{
	EVP_PKEY_CTX *ctx = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY *pkey = NULL;
	ev_key *k = NULL;
	CK_RV rv = CKR_FUNCTION_FAILED;

	if (priv == NULL || pub == NULL)
		return CKR_ARGUMENTS_BAD;
	*pub = NULL;
	if (priv->pkey == NULL)
		return CKR_KEY_TYPE_INCONSISTENT;
	/* Only the public half crosses over: the new key cannot leak d. */
	pkey = ec_public_of(priv->pkey);
	if (pkey != NULL)
		goto made;
	if (EVP_PKEY_todata(priv->pkey, EVP_PKEY_PUBLIC_KEY, &params) <= 0)
		goto out;
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, priv->pkey, NULL);
	if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		goto out;
made:
	k = key_new(CKO_PUBLIC_KEY, priv->type);
	if (k == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	k->pkey = pkey;
	pkey = NULL; /* transferred */
	*pub = k;
	rv = CKR_OK;
out:
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return rv;
}

/* Serialized secrets */

CK_RV
ev_key_export_secret(const ev_key *k, ev_secret **out)
{
	OSSL_ENCODER_CTX *ectx;
	unsigned char *der = NULL;
	size_t len = 0;
	CK_RV rv = CKR_FUNCTION_FAILED;

	if (k == NULL || out == NULL)
		return CKR_ARGUMENTS_BAD;
	*out = NULL;
	if (k->cls == CKO_SECRET_KEY) {
		if (k->secret == NULL)
			return CKR_KEY_NOT_WRAPPABLE;
		*out = ev_secret_dup(k->secret->data, k->secret->len);
		return *out != NULL ? CKR_OK : CKR_HOST_MEMORY;
	}
	if (k->cls != CKO_PRIVATE_KEY || k->pkey == NULL)
		return CKR_KEY_NOT_WRAPPABLE;
	ectx =
	    OSSL_ENCODER_CTX_new_for_pkey(k->pkey, EVP_PKEY_KEYPAIR, "DER", "PrivateKeyInfo", NULL);
	if (ectx == NULL)
		return CKR_HOST_MEMORY;
	if (OSSL_ENCODER_CTX_get_num_encoders(ectx) == 0 || !OSSL_ENCODER_to_data(ectx, &der, &len))
		goto out;
	*out = ev_secret_dup(der, len);
	rv = *out != NULL ? CKR_OK : CKR_HOST_MEMORY;
out:
	OPENSSL_clear_free(der, len);
	OSSL_ENCODER_CTX_free(ectx);
	return rv;
}

static const char *
keytype_name(CK_KEY_TYPE type)
{
	switch (type) {
	case CKK_EC:
		return "EC";
	case CKK_EC_EDWARDS:
		return "ED25519";
	case CKK_RSA:
		return "RSA";
	}
	return NULL;
}

CK_RV
ev_key_import_secret(CK_OBJECT_CLASS cls, CK_KEY_TYPE type, const ev_secret *in, ev_key **out)
{
	OSSL_DECODER_CTX *dctx = NULL;
	const unsigned char *p;
	const struct curve *c;
	EVP_PKEY *pkey = NULL;
	const char *name;
	ev_key *k = NULL;
	size_t left;
	CK_RV rv = CKR_ENCRYPTED_DATA_INVALID;

	if (in == NULL || out == NULL)
		return CKR_ARGUMENTS_BAD;
	*out = NULL;
	if (cls == CKO_SECRET_KEY) {
		if (!is_secret_type(type) || secret_value_ok(type, in->len) != CKR_OK)
			return CKR_ENCRYPTED_DATA_INVALID;
		k = key_new(cls, type);
		if (k == NULL)
			return CKR_HOST_MEMORY;
		k->secret = ev_secret_dup(in->data, in->len);
		if (k->secret == NULL) {
			ev_key_free(k);
			return CKR_HOST_MEMORY;
		}
		*out = k;
		return CKR_OK;
	}
	name = keytype_name(type);
	if (cls != CKO_PRIVATE_KEY || name == NULL || in->len == 0)
		return CKR_ENCRYPTED_DATA_INVALID;
	dctx = OSSL_DECODER_CTX_new_for_pkey(&pkey, "DER", "PrivateKeyInfo", name, EVP_PKEY_KEYPAIR,
					     NULL, NULL);
	if (dctx == NULL)
		return CKR_HOST_MEMORY;
	p = in->data;
	left = in->len;
	if (!OSSL_DECODER_from_data(dctx, &p, &left) || pkey == NULL || left != 0)
		goto out;
	if (type != CKK_RSA) {
		c = curve_of(pkey);
		if (c == NULL || c->type != type)
			goto out;
	} else if (!EVP_PKEY_is_a(pkey, "RSA")) {
		goto out;
	}
	k = key_new(cls, type);
	if (k == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	k->pkey = pkey;
	pkey = NULL; /* transferred */
	*out = k;
	rv = CKR_OK;
out:
	EVP_PKEY_free(pkey);
	OSSL_DECODER_CTX_free(dctx);
	return rv;
}

/* A private BIGNUM parameter, big-endian, padded to pad bytes (0: minimal). */
static CK_RV
secret_bn(EVP_PKEY *pkey, const char *param, int pad, ev_secret **out)
{
	BIGNUM *bn = BN_secure_new();
	int n;
	CK_RV rv = CKR_ATTRIBUTE_TYPE_INVALID;

	if (bn == NULL)
		return CKR_HOST_MEMORY;
	if (!EVP_PKEY_get_bn_param(pkey, param, &bn))
		goto out;
	n = BN_num_bytes(bn);
	if (pad < n)
		pad = n;
	*out = ev_secret_new((size_t)pad);
	if (*out == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	if (BN_bn2binpad(bn, (*out)->data, pad) != pad) {
		ev_secret_free(*out);
		*out = NULL;
		rv = CKR_FUNCTION_FAILED;
		goto out;
	}
	rv = CKR_OK;
out:
	BN_clear_free(bn);
	return rv;
}

CK_RV
ev_key_secret_attr(const ev_key *k, CK_ATTRIBUTE_TYPE type, ev_secret **out)
{
	const struct curve *c;
	size_t len;
	const char *param = NULL;

	if (k == NULL || out == NULL)
		return CKR_ARGUMENTS_BAD;
	*out = NULL;
	if (k->cls == CKO_SECRET_KEY) {
		if (type != CKA_VALUE || k->secret == NULL)
			return CKR_ATTRIBUTE_TYPE_INVALID;
		*out = ev_secret_dup(k->secret->data, k->secret->len);
		return *out != NULL ? CKR_OK : CKR_HOST_MEMORY;
	}
	if (k->cls != CKO_PRIVATE_KEY || k->pkey == NULL)
		return CKR_ATTRIBUTE_TYPE_INVALID;
	switch (k->type) {
	case CKK_EC:
	case CKK_EC_EDWARDS:
		c = curve_of(k->pkey);
		if (type != CKA_VALUE || c == NULL)
			return CKR_ATTRIBUTE_TYPE_INVALID;
		if (c->type == CKK_EC)
			return secret_bn(k->pkey, OSSL_PKEY_PARAM_PRIV_KEY, (int)c->size, out);
		*out = ev_secret_new(c->size);
		if (*out == NULL)
			return CKR_HOST_MEMORY;
		len = c->size;
		if (!EVP_PKEY_get_raw_private_key(k->pkey, (*out)->data, &len) || len != c->size) {
			ev_secret_free(*out);
			*out = NULL;
			return CKR_FUNCTION_FAILED;
		}
		return CKR_OK;
	case CKK_RSA:
		switch (type) {
		case CKA_PRIVATE_EXPONENT:
			param = OSSL_PKEY_PARAM_RSA_D;
			break;
		case CKA_PRIME_1:
			param = OSSL_PKEY_PARAM_RSA_FACTOR1;
			break;
		case CKA_PRIME_2:
			param = OSSL_PKEY_PARAM_RSA_FACTOR2;
			break;
		case CKA_EXPONENT_1:
			param = OSSL_PKEY_PARAM_RSA_EXPONENT1;
			break;
		case CKA_EXPONENT_2:
			param = OSSL_PKEY_PARAM_RSA_EXPONENT2;
			break;
		case CKA_COEFFICIENT:
			param = OSSL_PKEY_PARAM_RSA_COEFFICIENT1;
			break;
		default:
			return CKR_ATTRIBUTE_TYPE_INVALID;
		}
		return secret_bn(k->pkey, param, 0, out);
	}
	return CKR_ATTRIBUTE_TYPE_INVALID;
}

CK_ULONG
ev_key_size(const ev_key *k)
{
	int bits;

	if (k == NULL)
		return 0;
	if (k->cls == CKO_SECRET_KEY)
		return k->secret != NULL ? (CK_ULONG)k->secret->len : 0;
	if (k->pkey == NULL)
		return 0;
	bits = EVP_PKEY_get_bits(k->pkey);
	return bits > 0 ? (CK_ULONG)bits : 0;
}
