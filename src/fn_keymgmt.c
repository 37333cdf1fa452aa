/* Key management: generation, wrapping, unwrapping, derivation. */
#include "mech/mech.h"
#include "module.h"
#include "object.h"
#include "pkcs11/edgevault.h"
#include "rotate.h"
#include "session.h"

/* A template's CK_ULONG attribute, or dflt. */
static CK_ULONG
tmpl_ulong(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, CK_ULONG dflt)
{
	CK_ULONG i;

	for (i = 0; i < n; i++)
		if (t[i].type == type && t[i].pValue != NULL && t[i].ulValueLen == sizeof(CK_ULONG))
			return *(CK_ULONG *)t[i].pValue;
	return dflt;
}

/* Whether a template names an attribute type. */
static int
tmpl_has(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
	CK_ULONG i;

	for (i = 0; i < n; i++)
		if (t[i].type == type)
			return 1;
	return 0;
}

/* The attributes a mechanism decides for the objects it makes. */
static CK_RV
base_attrs(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, ev_attrs **out)
{
	ev_attrs *a = ev_attrs_new();
	CK_RV rv;

	if (a == NULL)
		return CKR_HOST_MEMORY;
	rv = ev_attrs_set_ulong(a, CKA_CLASS, cls);
	if (rv == CKR_OK && kt != CK_UNAVAILABLE_INFORMATION)
		rv = ev_attrs_set_ulong(a, CKA_KEY_TYPE, kt);
	if (rv != CKR_OK) {
		ev_attrs_free(a);
		return rv;
	}
	*out = a;
	return CKR_OK;
}

/*
 * Begin a key-management call: initialised, session found, mechanism
 * offered for flag, the zone's evidence fresh when it is gated.
 */
static CK_RV
begin(CK_SESSION_HANDLE h, const CK_MECHANISM *m, CK_FLAGS flag, ev_session **s)
{
	const ev_mech *mech;
	CK_RV rv = ev_check_init();

	if (rv != CKR_OK)
		return rv;
	rv = ev_session_acquire(h, s);
	if (rv != CKR_OK)
		return rv;
	if (m == NULL) {
		rv = CKR_ARGUMENTS_BAD;
	} else {
		mech = ev_mech_find(m->mechanism);
		if (mech == NULL || !ev_mech_can(mech, flag))
			rv = CKR_MECHANISM_INVALID;
	}
	/* Every key-management call makes or handles secrets of the zone: gated. */
	if (rv == CKR_OK)
		rv = ev_gate_use((*s)->token);
	if (rv != CKR_OK)
		ev_session_release(*s);
	return rv;
}

static CK_RV
generate_key(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pTemplate,
    CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phKey)
{
	ev_attrs *tmpl = NULL, *base = NULL;
	ev_key *key = NULL;
	ev_session *s;
	CK_RV rv;

	rv = begin(hSession, pMechanism, CKF_GENERATE, &s);
	if (rv != CKR_OK)
		return rv;
	if (phKey == NULL || (pTemplate == NULL && ulCount > 0)) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	/* A key value has no place here: refused before anything copies it out of secure hands. */
	if (tmpl_has(pTemplate, ulCount, CKA_VALUE)) {
		rv = CKR_TEMPLATE_INCONSISTENT;
		goto out;
	}
	rv = ev_attrs_from_template(pTemplate, ulCount, &tmpl);
	if (rv != CKR_OK)
		goto out;
	rv = ev_key_generate_secret(pMechanism->mechanism, tmpl, &key);
	if (rv != CKR_OK)
		goto out;
	/* Generic secrets may be typed by the caller (CKK_SHA256_HMAC, ...). */
	rv = base_attrs(CKO_SECRET_KEY,
	    pMechanism->mechanism == CKM_AES_KEY_GEN ? CKK_AES : CK_UNAVAILABLE_INFORMATION, &base);
	if (rv != CKR_OK)
		goto out;
	rv = ev_object_new(s, EV_ORIGIN_GENERATE, pTemplate, ulCount, base, key,
	    pMechanism->mechanism, phKey);
	key = NULL; /* consumed */
out:
	ev_key_free(key);
	ev_attrs_free(tmpl);
	ev_attrs_free(base);
	ev_session_release(s);
	return rv;
}

CK_RV
C_GenerateKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pTemplate,
    CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phKey)
{
	CK_RV rv;

	ev_errq_mark();
	rv = generate_key(hSession, pMechanism, pTemplate, ulCount, phKey);
	ev_errq_restore();
	return rv;
}

static CK_KEY_TYPE
pair_key_type(CK_MECHANISM_TYPE m)
{
	switch (m) {
	case CKM_EC_KEY_PAIR_GEN:
		return CKK_EC;
	case CKM_EC_EDWARDS_KEY_PAIR_GEN:
		return CKK_EC_EDWARDS;
	case CKM_RSA_PKCS_KEY_PAIR_GEN:
		return CKK_RSA;
	default:
		return CK_UNAVAILABLE_INFORMATION;
	}
}

static CK_RV
generate_key_pair(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
    CK_ATTRIBUTE_PTR pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount,
    CK_ATTRIBUTE_PTR pPrivateKeyTemplate, CK_ULONG ulPrivateKeyAttributeCount,
    CK_OBJECT_HANDLE_PTR phPublicKey, CK_OBJECT_HANDLE_PTR phPrivateKey)
{
	ev_attrs *pub_tmpl = NULL, *pub_base = NULL, *priv_base = NULL;
	ev_key *priv = NULL, *pub = NULL;
	CK_KEY_TYPE kt;
	ev_session *s;
	CK_RV rv;

	rv = begin(hSession, pMechanism, CKF_GENERATE_KEY_PAIR, &s);
	if (rv != CKR_OK)
		return rv;
	if (phPublicKey == NULL || phPrivateKey == NULL ||
	    (pPublicKeyTemplate == NULL && ulPublicKeyAttributeCount > 0) ||
	    (pPrivateKeyTemplate == NULL && ulPrivateKeyAttributeCount > 0)) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	kt = pair_key_type(pMechanism->mechanism);
	if (tmpl_ulong(pPublicKeyTemplate, ulPublicKeyAttributeCount, CKA_KEY_TYPE, kt) != kt ||
	    tmpl_ulong(pPrivateKeyTemplate, ulPrivateKeyAttributeCount, CKA_KEY_TYPE, kt) != kt) {
		rv = CKR_TEMPLATE_INCONSISTENT;
		goto out;
	}
	rv = ev_attrs_from_template(pPublicKeyTemplate, ulPublicKeyAttributeCount, &pub_tmpl);
	if (rv != CKR_OK)
		goto out;
	rv = ev_key_generate_pair(pMechanism->mechanism, pub_tmpl, &priv, &pub);
	if (rv != CKR_OK)
		goto out;
	rv = base_attrs(CKO_PUBLIC_KEY, kt, &pub_base);
	if (rv == CKR_OK)
		rv = base_attrs(CKO_PRIVATE_KEY, kt, &priv_base);
	if (rv != CKR_OK)
		goto out;
	rv = ev_object_new_pair(s, pPublicKeyTemplate, ulPublicKeyAttributeCount, pub_base, pub,
	    pPrivateKeyTemplate, ulPrivateKeyAttributeCount, priv_base, priv,
	    pMechanism->mechanism, phPublicKey, phPrivateKey);
	pub = priv = NULL; /* consumed */
out:
	ev_key_free(priv);
	ev_key_free(pub);
	ev_attrs_free(pub_tmpl);
	ev_attrs_free(pub_base);
	ev_attrs_free(priv_base);
	ev_session_release(s);
	return rv;
}

CK_RV
C_GenerateKeyPair(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
    CK_ATTRIBUTE_PTR pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount,
    CK_ATTRIBUTE_PTR pPrivateKeyTemplate, CK_ULONG ulPrivateKeyAttributeCount,
    CK_OBJECT_HANDLE_PTR phPublicKey, CK_OBJECT_HANDLE_PTR phPrivateKey)
{
	CK_RV rv;

	ev_errq_mark();
	rv = generate_key_pair(hSession, pMechanism, pPublicKeyTemplate, ulPublicKeyAttributeCount, pPrivateKeyTemplate, ulPrivateKeyAttributeCount, phPublicKey, phPrivateKey);
	ev_errq_restore();
	return rv;
}

static CK_RV
wrap_key(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hWrappingKey,
    CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pWrappedKey, CK_ULONG_PTR pulWrappedKeyLen)
{
	ev_object *wo = NULL, *ko = NULL;
	ev_attrs *wrap_tmpl = NULL;
	ev_key *wk = NULL, *k = NULL;
	ev_session *s;
	CK_RV rv;

	rv = begin(hSession, pMechanism, CKF_WRAP, &s);
	if (rv != CKR_OK)
		return rv;
	if (pulWrappedKeyLen == NULL) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	rv = ev_object_get(s, hWrappingKey, &wo);
	if (rv == CKR_OBJECT_HANDLE_INVALID)
		rv = CKR_WRAPPING_KEY_HANDLE_INVALID;
	if (rv != CKR_OK)
		goto out;
	rv = ev_object_get(s, hKey, &ko);
	if (rv == CKR_OBJECT_HANDLE_INVALID)
		rv = CKR_KEY_HANDLE_INVALID;
	if (rv != CKR_OK)
		goto out;
	/* A retired generation's material does not leave the token: it is on its way out. */
	if ((ko->cls != CKO_SECRET_KEY && ko->cls != CKO_PRIVATE_KEY) ||
	    ev_object_is_true(ko, CKA_EV_RETIRED, 0)) {
		rv = CKR_KEY_NOT_WRAPPABLE;
		goto out;
	}
	rv = ev_object_usable(wo, CKA_WRAP, pMechanism->mechanism);
	if (rv != CKR_OK)
		goto out;
	if (!ev_object_is_true(ko, CKA_EXTRACTABLE, 0)) {
		rv = CKR_KEY_UNEXTRACTABLE;
		goto out;
	}
	/* A key that insists on trusted wrapping goes only under a trusted key. */
	if (ev_object_is_true(ko, CKA_WRAP_WITH_TRUSTED, 0) &&
	    !ev_object_is_true(wo, CKA_TRUSTED, 0)) {
		rv = CKR_KEY_NOT_WRAPPABLE;
		goto out;
	}
	/* The wrapping key's CKA_WRAP_TEMPLATE says which keys it may wrap. */
	rv = ev_object_template(wo, CKA_WRAP_TEMPLATE, &wrap_tmpl);
	if (rv != CKR_OK)
		goto out;
	if (wrap_tmpl != NULL && !ev_object_matches(ko, wrap_tmpl)) {
		rv = CKR_KEY_NOT_WRAPPABLE;
		goto out;
	}
	rv = ev_object_key(wo, &wk);
	if (rv == CKR_OK)
		rv = ev_object_key(ko, &k);
	if (rv == CKR_OK)
		rv = ev_mech_wrap(pMechanism, wk, k, pWrappedKey, pulWrappedKeyLen);
	if (rv == CKR_OK && pWrappedKey != NULL)
		ev_object_count(wo, EV_USE_WRAP); /* not a size query */
out:
	ev_key_free(wk);
	ev_key_free(k);
	ev_attrs_free(wrap_tmpl);
	ev_object_put(wo);
	ev_object_put(ko);
	ev_session_release(s);
	return rv;
}

CK_RV
C_WrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hWrappingKey,
    CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pWrappedKey, CK_ULONG_PTR pulWrappedKeyLen)
{
	CK_RV rv;

	ev_errq_mark();
	rv = wrap_key(hSession, pMechanism, hWrappingKey, hKey, pWrappedKey, pulWrappedKeyLen);
	ev_errq_restore();
	return rv;
}

static CK_RV
unwrap_key(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
    CK_OBJECT_HANDLE hUnwrappingKey, CK_BYTE_PTR pWrappedKey, CK_ULONG ulWrappedKeyLen,
    CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey)
{
	CK_OBJECT_CLASS cls;
	CK_KEY_TYPE kt;
	ev_attrs *base = NULL;
	ev_secret *plain = NULL;
	ev_object *uo = NULL;
	ev_key *key = NULL, *uk = NULL;
	ev_session *s;
	CK_RV rv;

	rv = begin(hSession, pMechanism, CKF_UNWRAP, &s);
	if (rv != CKR_OK)
		return rv;
	if (pWrappedKey == NULL || phKey == NULL || (pTemplate == NULL && ulAttributeCount > 0)) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	cls = tmpl_ulong(pTemplate, ulAttributeCount, CKA_CLASS, CK_UNAVAILABLE_INFORMATION);
	kt = tmpl_ulong(pTemplate, ulAttributeCount, CKA_KEY_TYPE, CK_UNAVAILABLE_INFORMATION);
	if (cls == CK_UNAVAILABLE_INFORMATION || kt == CK_UNAVAILABLE_INFORMATION) {
		rv = CKR_TEMPLATE_INCOMPLETE;
		goto out;
	}
	if (cls != CKO_SECRET_KEY && cls != CKO_PRIVATE_KEY) {
		rv = CKR_TEMPLATE_INCONSISTENT;
		goto out;
	}
	rv = ev_object_get(s, hUnwrappingKey, &uo);
	if (rv == CKR_OBJECT_HANDLE_INVALID)
		rv = CKR_UNWRAPPING_KEY_HANDLE_INVALID;
	if (rv != CKR_OK)
		goto out;
	rv = ev_object_usable(uo, CKA_UNWRAP, pMechanism->mechanism);
	if (rv != CKR_OK)
		goto out;
	rv = ev_object_key(uo, &uk);
	if (rv != CKR_OK)
		goto out;
	rv = ev_mech_unwrap(pMechanism, uk, pWrappedKey, ulWrappedKeyLen, &plain);
	if (rv != CKR_OK)
		goto out;
	if (cls == CKO_SECRET_KEY) {
		/*
		 * CKM_AES_KEY_WRAP zero-pads a secret to a multiple of 8 bytes:
		 * CKA_VALUE_LEN says how much of it is the key.
		 */
		CK_ULONG vlen = tmpl_ulong(pTemplate, ulAttributeCount, CKA_VALUE_LEN, 0);

		if (vlen > plain->len || (vlen > 0 && vlen < plain->len &&
					     pMechanism->mechanism != CKM_AES_KEY_WRAP)) {
			rv = CKR_TEMPLATE_INCONSISTENT;
			goto out;
		}
		if (vlen > 0)
			plain->len = vlen;
	}
	rv = ev_key_import_secret(cls, kt, plain, &key);
	if (rv == CKR_ENCRYPTED_DATA_INVALID)
		rv = CKR_WRAPPED_KEY_INVALID;
	if (rv != CKR_OK)
		goto out;
	/* The unwrapping key's CKA_UNWRAP_TEMPLATE is imposed on what it unwraps. */
	rv = ev_object_template(uo, CKA_UNWRAP_TEMPLATE, &base);
	if (rv != CKR_OK)
		goto out;
	rv = ev_object_new(s, EV_ORIGIN_UNWRAP, pTemplate, ulAttributeCount, base, key,
	    CK_UNAVAILABLE_INFORMATION, phKey);
	key = NULL; /* consumed */
	if (rv == CKR_OK)
		ev_object_count(uo, EV_USE_UNWRAP);
out:
	ev_key_free(key);
	ev_key_free(uk);
	ev_attrs_free(base);
	ev_secret_free(plain);
	ev_object_put(uo);
	ev_session_release(s);
	return rv;
}

CK_RV
C_UnwrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
    CK_OBJECT_HANDLE hUnwrappingKey, CK_BYTE_PTR pWrappedKey, CK_ULONG ulWrappedKeyLen,
    CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey)
{
	CK_RV rv;

	ev_errq_mark();
	rv = unwrap_key(hSession, pMechanism, hUnwrappingKey, pWrappedKey, ulWrappedKeyLen, pTemplate, ulAttributeCount, phKey);
	ev_errq_restore();
	return rv;
}

static CK_RV
derive_key(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hBaseKey,
    CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey)
{
	ev_attrs *base = NULL;
	ev_secret *secret = NULL;
	ev_object *bo = NULL;
	ev_key *key = NULL, *bk = NULL;
	CK_KEY_TYPE kt;
	ev_session *s;
	CK_RV rv;

	rv = begin(hSession, pMechanism, CKF_DERIVE, &s);
	if (rv != CKR_OK)
		return rv;
	if (phKey == NULL || (pTemplate == NULL && ulAttributeCount > 0)) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	if (tmpl_ulong(pTemplate, ulAttributeCount, CKA_CLASS, CKO_SECRET_KEY) != CKO_SECRET_KEY) {
		rv = CKR_TEMPLATE_INCONSISTENT;
		goto out;
	}
	kt = tmpl_ulong(pTemplate, ulAttributeCount, CKA_KEY_TYPE, CKK_GENERIC_SECRET);
	rv = ev_object_get(s, hBaseKey, &bo);
	if (rv == CKR_OBJECT_HANDLE_INVALID)
		rv = CKR_KEY_HANDLE_INVALID;
	if (rv != CKR_OK)
		goto out;
	rv = ev_object_usable(bo, CKA_DERIVE, pMechanism->mechanism);
	if (rv == CKR_OK)
		rv = ev_object_key(bo, &bk);
	if (rv == CKR_OK)
		rv = ev_mech_derive(pMechanism, bk,
		    tmpl_ulong(pTemplate, ulAttributeCount, CKA_VALUE_LEN, 0), &secret);
	if (rv != CKR_OK)
		goto out;
	rv = ev_key_import_secret(CKO_SECRET_KEY, kt, secret, &key);
	if (rv == CKR_ENCRYPTED_DATA_INVALID)
		rv = CKR_TEMPLATE_INCONSISTENT; /* e.g. an AES key of a length AES has not */
	if (rv != CKR_OK)
		goto out;
	/* The base key's CKA_DERIVE_TEMPLATE is imposed on what it derives. */
	rv = ev_object_template(bo, CKA_DERIVE_TEMPLATE, &base);
	if (rv == CKR_OK && base == NULL)
		rv = (base = ev_attrs_new()) == NULL ? CKR_HOST_MEMORY : CKR_OK;
	if (rv == CKR_OK)
		rv = ev_attrs_set_ulong(base, CKA_CLASS, CKO_SECRET_KEY);
	if (rv == CKR_OK)
		rv = ev_attrs_set_ulong(base, CKA_KEY_TYPE, kt);
	if (rv != CKR_OK)
		goto out;
	/* Derived keys inherit "always sensitive" and "never extractable" from the base. */
	if (ev_rwlock_rdlock(bo->lock) == CKR_OK) {
		if (ev_attrs_set_bool(base, CKA_ALWAYS_SENSITIVE,
			ev_attrs_is_true(bo->attrs, CKA_ALWAYS_SENSITIVE, 0)) != CKR_OK ||
		    ev_attrs_set_bool(base, CKA_NEVER_EXTRACTABLE,
			ev_attrs_is_true(bo->attrs, CKA_NEVER_EXTRACTABLE, 0)) != CKR_OK)
			rv = CKR_HOST_MEMORY;
		ev_rwlock_unlock(bo->lock);
	}
	if (rv != CKR_OK)
		goto out;
	rv = ev_object_new(s, EV_ORIGIN_DERIVE, pTemplate, ulAttributeCount, base, key,
	    CK_UNAVAILABLE_INFORMATION, phKey);
	key = NULL; /* consumed */
	if (rv == CKR_OK)
		ev_object_count(bo, EV_USE_DERIVE);
out:
	ev_key_free(key);
	ev_key_free(bk);
	ev_secret_free(secret);
	ev_attrs_free(base);
	ev_object_put(bo);
	ev_session_release(s);
	return rv;
}

CK_RV
C_DeriveKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hBaseKey,
    CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey)
{
	CK_RV rv;

	ev_errq_mark();
	rv = derive_key(hSession, pMechanism, hBaseKey, pTemplate, ulAttributeCount, phKey);
	ev_errq_restore();
	return rv;
}
