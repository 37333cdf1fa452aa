#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "audit_event.h"
#include "keyring.h"
#include "log.h"
#include "module.h"
#include "object.h"
#include "pkcs11/edgevault.h"
#include "rotate.h"

/*
 * What each class of object may carry. An attribute outside its class's
 * list is CKR_ATTRIBUTE_TYPE_INVALID in any template.
 */
static const CK_ATTRIBUTE_TYPE common_attrs[] = {
	CKA_CLASS, CKA_TOKEN, CKA_PRIVATE, CKA_MODIFIABLE, CKA_LABEL, CKA_COPYABLE,
	CKA_DESTROYABLE, CKA_UNIQUE_ID,
};
static const CK_ATTRIBUTE_TYPE data_attrs[] = {
	CKA_APPLICATION, CKA_OBJECT_ID, CKA_VALUE,
};
static const CK_ATTRIBUTE_TYPE cert_attrs[] = {
	CKA_CERTIFICATE_TYPE, CKA_TRUSTED, CKA_CERTIFICATE_CATEGORY, CKA_CHECK_VALUE,
	CKA_START_DATE, CKA_END_DATE, CKA_PUBLIC_KEY_INFO, CKA_SUBJECT, CKA_ID, CKA_ISSUER,
	CKA_SERIAL_NUMBER, CKA_VALUE, CKA_URL, CKA_HASH_OF_SUBJECT_PUBLIC_KEY,
	CKA_HASH_OF_ISSUER_PUBLIC_KEY, CKA_JAVA_MIDP_SECURITY_DOMAIN, CKA_NAME_HASH_ALGORITHM,
};
static const CK_ATTRIBUTE_TYPE key_attrs[] = {
	CKA_KEY_TYPE, CKA_ID, CKA_START_DATE, CKA_END_DATE, CKA_DERIVE, CKA_LOCAL,
	CKA_KEY_GEN_MECHANISM, CKA_ALLOWED_MECHANISMS, CKA_EV_GENERATION, CKA_DERIVE_TEMPLATE,
	CKA_EV_RETIRED, CKA_EV_DESTROY_AT,
};
static const CK_ATTRIBUTE_TYPE public_attrs[] = {
	CKA_SUBJECT, CKA_ENCRYPT, CKA_VERIFY, CKA_VERIFY_RECOVER, CKA_WRAP, CKA_TRUSTED,
	CKA_PUBLIC_KEY_INFO, CKA_MODULUS, CKA_MODULUS_BITS, CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS,
	CKA_EC_POINT, CKA_WRAP_TEMPLATE,
};
static const CK_ATTRIBUTE_TYPE private_attrs[] = {
	CKA_SUBJECT, CKA_SENSITIVE, CKA_DECRYPT, CKA_SIGN, CKA_SIGN_RECOVER, CKA_UNWRAP,
	CKA_EXTRACTABLE, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE, CKA_WRAP_WITH_TRUSTED,
	CKA_ALWAYS_AUTHENTICATE, CKA_PUBLIC_KEY_INFO, CKA_MODULUS, CKA_PUBLIC_EXPONENT,
	CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2, CKA_EXPONENT_1, CKA_EXPONENT_2,
	CKA_COEFFICIENT, CKA_EC_PARAMS, CKA_VALUE, CKA_UNWRAP_TEMPLATE,
};
static const CK_ATTRIBUTE_TYPE secret_attrs[] = {
	CKA_SENSITIVE, CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN, CKA_VERIFY, CKA_WRAP, CKA_UNWRAP,
	CKA_EXTRACTABLE, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE, CKA_CHECK_VALUE,
	CKA_WRAP_WITH_TRUSTED, CKA_TRUSTED, CKA_VALUE, CKA_VALUE_LEN, CKA_WRAP_TEMPLATE,
	CKA_UNWRAP_TEMPLATE,
};

/* Set by the module alone: never in a caller's template for a new object. */
static const CK_ATTRIBUTE_TYPE module_set_attrs[] = {
	CKA_LOCAL, CKA_KEY_GEN_MECHANISM, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE,
	CKA_UNIQUE_ID, CKA_EV_GENERATION, CKA_EV_RETIRED, CKA_EV_DESTROY_AT,
};

/* What C_SetAttributeValue may change (when CKA_MODIFIABLE is true). */
static const CK_ATTRIBUTE_TYPE modifiable_attrs[] = {
	CKA_LABEL, CKA_ID, CKA_START_DATE, CKA_END_DATE, CKA_SUBJECT, CKA_DERIVE, CKA_ENCRYPT,
	CKA_DECRYPT, CKA_SIGN, CKA_VERIFY, CKA_WRAP, CKA_UNWRAP, CKA_SIGN_RECOVER,
	CKA_VERIFY_RECOVER, CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_WRAP_WITH_TRUSTED, CKA_TRUSTED,
	CKA_APPLICATION, CKA_OBJECT_ID, CKA_ISSUER, CKA_SERIAL_NUMBER, CKA_COPYABLE,
	CKA_DESTROYABLE, CKA_ALLOWED_MECHANISMS, CKA_CERTIFICATE_CATEGORY, CKA_URL,
};

/* What C_CopyObject's template may change besides the modifiable ones. */
static const CK_ATTRIBUTE_TYPE copy_attrs[] = {
	CKA_TOKEN, CKA_PRIVATE, CKA_MODIFIABLE,
};

static int
in_list(const CK_ATTRIBUTE_TYPE *list, size_t n, CK_ATTRIBUTE_TYPE t)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (list[i] == t)
			return 1;
	return 0;
}

#define IN(list, t) in_list(list, EV_ARRAY_SIZE(list), t)

static int
valid_for_class(CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE t)
{
	if (IN(common_attrs, t))
		return 1;
	switch (cls) {
	case CKO_DATA:
		return IN(data_attrs, t);
	case CKO_CERTIFICATE:
		return IN(cert_attrs, t);
	case CKO_PUBLIC_KEY:
		return IN(key_attrs, t) || IN(public_attrs, t);
	case CKO_PRIVATE_KEY:
		return IN(key_attrs, t) || IN(private_attrs, t);
	case CKO_SECRET_KEY:
		return IN(key_attrs, t) || IN(secret_attrs, t);
	default:
		return 0;
	}
}

static int
is_key_class(CK_OBJECT_CLASS cls)
{
	return cls == CKO_PRIVATE_KEY || cls == CKO_PUBLIC_KEY || cls == CKO_SECRET_KEY;
}

static int
key_type_ok(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt)
{
	if (cls == CKO_SECRET_KEY)
		return kt == CKK_AES || kt == CKK_GENERIC_SECRET || kt == CKK_SHA256_HMAC ||
		    kt == CKK_SHA384_HMAC || kt == CKK_SHA512_HMAC;
	return kt == CKK_EC || kt == CKK_EC_EDWARDS || kt == CKK_RSA;
}

/* Material attributes that generation, unwrapping and derivation produce themselves. */
static int
is_material(CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE t)
{
	if (ev_attr_is_secret(cls, t))
		return 1;
	return t == CKA_MODULUS || t == CKA_EC_POINT ||
	    (t == CKA_PUBLIC_EXPONENT && cls == CKO_PRIVATE_KEY) ||
	    (t == CKA_VALUE_LEN && cls != CKO_SECRET_KEY) || t == CKA_PUBLIC_KEY_INFO;
}

void
ev_object_free(ev_object *o)
{
	if (o == NULL)
		return;
	ev_use_keep(o);
	ev_key_free(atomic_load(&o->key));
	ev_attrs_free(o->attrs);
	free(o->wrapped);
	ev_rwlock_free(o->lock);
	free(o);
}

void
ev_object_put(ev_object *o)
{
	if (o != NULL && atomic_fetch_sub(&o->refs, 1) == 1)
		ev_object_free(o);
}

static ev_object *
object_alloc(void)
{
	ev_object *o = calloc(1, sizeof(*o));
	int i;

	if (o == NULL)
		return NULL;
	o->lock = ev_rwlock_new();
	if (o->lock == NULL) {
		free(o);
		return NULL;
	}
	atomic_init(&o->refs, 1);
	atomic_init(&o->destroyed, 0);
	atomic_init(&o->key, NULL);
	for (i = 0; i < EV_USE_OPS; i++) {
		atomic_init(&o->uses[i], 0);
		atomic_init(&o->last_use[i], 0);
	}
	return o;
}

/*
 * Whether an object keeps its material wrapped in the store (token private
 * and secret keys), decided by fields that never change: o->wrapped
 * itself may be replaced under the object's lock.
 */
static int
has_wrapped(const ev_object *o)
{
	return o->on_token && (o->cls == CKO_PRIVATE_KEY || o->cls == CKO_SECRET_KEY);
}

/* Whether a session may see an object at all. */
static int
visible(const ev_session *s, const ev_object *o)
{
	if (o->destroyed || o->token != s->token)
		return 0;
	return !o->private || ev_session_user(s);
}

/*
 * Put an object in the module's map (ev_mod->lock held for writing); a
 * session object also in the index searches walk, so that a search never
 * walks the loaded token objects. CKR_HOST_MEMORY leaves it in neither.
 */
static CK_RV
map_object(ev_object *o)
{
	CK_RV rv = ev_map_put(&ev_mod->objects, o->handle, o);

	if (rv != CKR_OK || o->on_token)
		return rv;
	rv = ev_map_put(&ev_mod->session_objects, o->handle, o);
	if (rv != CKR_OK)
		(void)ev_map_del(&ev_mod->objects, o->handle);
	return rv;
}

/* Take an object out of the module's map and index (ev_mod->lock held for writing). */
static void
unmap_object(ev_object *o)
{
	(void)ev_map_del(&ev_mod->objects, o->handle);
	if (!o->on_token)
		(void)ev_map_del(&ev_mod->session_objects, o->handle);
}

/*
 * A key's lifecycle as attributes: the store keeps it in columns (a
 * rotation changes them without rewriting attributes), the attributes
 * show it to callers and to template matching.
 */
static CK_RV
set_lifecycle(ev_attrs *a, int64_t retired, int64_t destroy_at)
{
	CK_RV rv = ev_attrs_set_bool(a, CKA_EV_RETIRED, retired != 0);

	if (rv == CKR_OK)
		rv = ev_attrs_set_ulong(a, CKA_EV_DESTROY_AT, (CK_ULONG)destroy_at);
	return rv;
}

/* Build an in-memory object from its store record (consumed). */
static CK_RV
from_record(ev_token *t, ev_obj_rec *rec, ev_object **out)
{
	ev_object *o;

	if (is_key_class(rec->cls) && set_lifecycle(rec->attrs, rec->retired, rec->destroy_at) !=
	    CKR_OK)
		return CKR_HOST_MEMORY;
	o = object_alloc();
	if (o == NULL)
		return CKR_HOST_MEMORY;
	o->handle = (CK_OBJECT_HANDLE)rec->id;
	o->token = t;
	o->cls = rec->cls;
	o->on_token = 1;
	o->private = rec->private;
	o->generation = rec->generation;
	o->origin = (CK_OBJECT_HANDLE)rec->origin;
	o->retired = rec->retired;
	o->destroy_at = rec->destroy_at;
	o->attrs = rec->attrs;
	rec->attrs = NULL; /* transferred */
	o->wrapped = rec->wrapped;
	o->wrapped_len = rec->wrapped_len;
	rec->wrapped = NULL; /* transferred */
	*out = o;
	return CKR_OK;
}

/* Look up or load an object (no visibility check); returns a reference. */
static CK_RV
lookup(ev_token *t, CK_OBJECT_HANDLE h, ev_object **out)
{
	ev_obj_rec rec = { 0 };
	ev_object *o, *other;
	CK_ULONG drops;
	CK_RV rv;

	if (h == CK_INVALID_HANDLE)
		return CKR_OBJECT_HANDLE_INVALID;
again:
	rv = ev_rwlock_rdlock(ev_mod->lock);
	if (rv != CKR_OK)
		return rv;
	o = ev_map_get(&ev_mod->objects, h);
	if (o != NULL)
		atomic_fetch_add(&o->refs, 1);
	drops = ev_mod->drops;
	ev_rwlock_unlock(ev_mod->lock);
	if (o != NULL) {
		*out = o;
		return CKR_OK;
	}
	if (h & EV_SESSION_OBJECT_BIT)
		return CKR_OBJECT_HANDLE_INVALID;

	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		return rv;
	rv = ev_store_obj_get(ev_mod->store, (int64_t)h, &rec);
	ev_mutex_unlock(ev_mod->store_lock);
	if (rv == EVR_NOT_FOUND)
		return CKR_OBJECT_HANDLE_INVALID;
	if (rv != CKR_OK)
		return rv;
	if (rec.zone != t->id) {
		ev_obj_rec_clear(&rec);
		return CKR_OBJECT_HANDLE_INVALID;
	}
	rv = from_record(t, &rec, &o);
	ev_obj_rec_clear(&rec);
	if (rv != CKR_OK)
		return rv;

	rv = ev_rwlock_wrlock(ev_mod->lock);
	if (rv != CKR_OK) {
		ev_object_free(o);
		return rv;
	}
	if (ev_mod->drops != drops) {
		/* Objects were forgotten meanwhile (revoked?): what we read may be stale. */
		ev_rwlock_unlock(ev_mod->lock);
		ev_object_free(o);
		goto again;
	}
	other = ev_map_get(&ev_mod->objects, h);
	if (other != NULL) {
		/* Another thread loaded it first: use theirs. */
		ev_object_free(o);
		o = other;
	} else {
		rv = ev_map_put(&ev_mod->objects, h, o);
		if (rv != CKR_OK) {
			ev_rwlock_unlock(ev_mod->lock);
			ev_object_free(o);
			return rv;
		}
	}
	atomic_fetch_add(&o->refs, 1); /* the caller's; the map holds the first */
	ev_rwlock_unlock(ev_mod->lock);
	*out = o;
	return CKR_OK;
}

CK_RV
ev_object_get(ev_session *s, CK_OBJECT_HANDLE h, ev_object **out)
{
	ev_object *o;
	CK_RV rv;

	rv = lookup(s->token, h, &o);
	if (rv != CKR_OK)
		return rv;
	if (!visible(s, o)) {
		ev_object_put(o);
		return CKR_OBJECT_HANDLE_INVALID;
	}
	*out = o;
	return CKR_OK;
}

static CK_KEY_TYPE
key_type_of(const ev_object *o)
{
	CK_ULONG kt = CK_UNAVAILABLE_INFORMATION;

	(void)ev_attrs_ulong(o->attrs, CKA_KEY_TYPE, &kt);
	return kt;
}

static void
binding_of(const ev_object *o, const ev_attrs *attrs, ev_wrap_binding *b)
{
	b->zone_id = o->token->id;
	b->object_id = (int64_t)o->handle;
	b->generation = o->generation;
	ev_attr_digest(attrs, b->attr_digest);
}

/*
 * The zone key and the object's blob, read again: another process may
 * have rotated the zone key between this process's last look at the
 * change log and now, leaving it one old and one new. Caller holds the
 * token's lock and the object's (write).
 */
static CK_RV
fresh_wrapping(ev_object *o, const ev_secret **zk)
{
	ev_obj_rec rec = { 0 };
	CK_RV rv;

	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		return rv;
	rv = ev_store_obj_get(ev_mod->store, (int64_t)o->handle, &rec);
	ev_mutex_unlock(ev_mod->store_lock);
	if (rv != CKR_OK)
		return rv;
	if (rec.wrapped != NULL) {
		unsigned char *blob = o->wrapped;
		size_t len = o->wrapped_len;

		o->wrapped = rec.wrapped;
		o->wrapped_len = rec.wrapped_len;
		rec.wrapped = blob; /* freed with the record */
		rec.wrapped_len = len;
	}
	ev_obj_rec_clear(&rec);
	/* Unsealed again only when the sealed key changed: one bad blob costs no root trip. */
	return ev_token_zone_key_refresh(o->token, zk);
}

/*
 * An event about an object whose attributes the caller may read (it holds
 * the object's lock, or the object is not shared yet): zone, the token's
 * user, the object's identity.
 */
static void
audit_object(const char *kind, const ev_object *o, const char *reason, const ev_audit_detail *d,
	     size_t nd)
{
	ev_audit_ident id;

	ev_audit_ident_attrs(&id, (int64_t)o->handle, o->cls, o->attrs, o->generation);
	ev_audit_note(kind, EV_AUDIT_OK, o->token->id, ev_audit_user(o->token), &id.obj, reason, d,
		      nd);
	ev_audit_ident_clear(&id);
}

CK_RV
ev_object_key(ev_object *o, ev_key **out)
{
	const ev_secret *zk;
	ev_secret *plain = NULL;
	ev_wrap_binding b;
	ev_key *k;
	CK_RV rv;

	*out = NULL;
	if (!is_key_class(o->cls))
		return CKR_KEY_HANDLE_INVALID;
	/* The hot path: the material is cached; one read lock, no store, no token lock. */
	rv = ev_rwlock_rdlock(o->lock);
	if (rv != CKR_OK)
		return rv;
	/* Past its grace period a retired generation is gone, whatever asks for it. */
	if (o->retired != 0 && (int64_t)time(NULL) >= o->destroy_at) {
		ev_rwlock_unlock(o->lock);
		return CKR_KEY_HANDLE_INVALID;
	}
	k = ev_key_ref(atomic_load(&o->key));
	ev_rwlock_unlock(o->lock);
	if (k != NULL) {
		*out = k;
		return CKR_OK;
	}
	/* Lock order: the token (zone key), then the object. */
	rv = ev_mutex_lock(o->token->lock);
	if (rv != CKR_OK)
		return rv;
	rv = ev_rwlock_wrlock(o->lock);
	if (rv != CKR_OK)
		goto unlock_token;
	k = atomic_load(&o->key);
	if (k != NULL)
		goto done; /* another thread unwrapped it meanwhile */
	if (o->wrapped != NULL) {
		rv = ev_token_zone_key(o->token, &zk);
		if (rv == CKR_OK) {
			binding_of(o, o->attrs, &b);
			rv = ev_unwrap(zk, &b, o->wrapped, o->wrapped_len, &plain);
			if (rv == CKR_ENCRYPTED_DATA_INVALID && fresh_wrapping(o, &zk) == CKR_OK)
				rv = ev_unwrap(zk, &b, o->wrapped, o->wrapped_len, &plain);
			if (rv == CKR_ENCRYPTED_DATA_INVALID) {
				ev_error("object %lu: wrapped key does not authenticate",
				    (unsigned long)o->handle);
				rv = CKR_DEVICE_ERROR;
			}
		}
		if (rv == CKR_OK) {
			rv = ev_key_import_secret(o->cls, key_type_of(o), plain, &k);
			if (rv != CKR_OK)
				rv = CKR_DEVICE_ERROR;
		}
	} else if (o->cls == CKO_PUBLIC_KEY) {
		rv = ev_key_from_template(o->cls, key_type_of(o), o->attrs->v, o->attrs->n, &k);
	} else {
		rv = CKR_DEVICE_ERROR;
	}
	if (rv != CKR_OK)
		goto unlock;
	atomic_store(&o->key, k); /* the object's reference */
	if (o->wrapped != NULL && !o->unwrap_noted) {
		audit_object(EV_AUDIT_KEY_UNWRAPPED, o, NULL, NULL, 0);
		o->unwrap_noted = 1;
	}
done:
	*out = ev_key_ref(k);
unlock:
	ev_secret_free(plain);
	ev_rwlock_unlock(o->lock);
unlock_token:
	ev_mutex_unlock(o->token->lock);
	return rv;
}

/* CKA_ALLOWED_MECHANISMS, when present and not empty, lists what a key may do. */
static int
mech_allowed(const ev_attrs *a, CK_MECHANISM_TYPE m)
{
	const CK_ATTRIBUTE *at = ev_attrs_get(a, CKA_ALLOWED_MECHANISMS);
	CK_ULONG i, n;

	if (at == NULL || at->ulValueLen == 0)
		return 1;
	n = at->ulValueLen / sizeof(CK_MECHANISM_TYPE);
	for (i = 0; i < n; i++) {
		CK_MECHANISM_TYPE t;

		memcpy(&t, (const unsigned char *)at->pValue + i * sizeof(t), sizeof(t));
		if (t == m)
			return 1;
	}
	return 0;
}

/* Today as CK_DATE text (YYYYMMDD), for CKA_START_DATE / CKA_END_DATE. */
static void
today(char out[8])
{
	char buf[9];
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(buf, sizeof(buf), "%Y%m%d", &tm);
	memcpy(out, buf, 8);
}

static int
date_ok(const ev_attrs *a)
{
	const CK_ATTRIBUTE *start = ev_attrs_get(a, CKA_START_DATE);
	const CK_ATTRIBUTE *end = ev_attrs_get(a, CKA_END_DATE);
	char now[8];

	/* An empty date means no limit (the default): no clock read on the hot path. */
	if (start != NULL && start->ulValueLen != 8)
		start = NULL;
	if (end != NULL && end->ulValueLen != 8)
		end = NULL;
	if (start == NULL && end == NULL)
		return 1;
	today(now);
	if (start != NULL && memcmp(now, start->pValue, 8) < 0)
		return 0;
	if (end != NULL && memcmp(now, end->pValue, 8) > 0)
		return 0;
	return 1;
}

/*
 * What a retired generation may still do until its grace period ends:
 * check what was made under it, never make anything new.
 */
static int
retired_ok(const ev_object *o, CK_ATTRIBUTE_TYPE usage)
{
	if (o->retired == 0)
		return 1;
	if (usage != CKA_VERIFY && usage != CKA_VERIFY_RECOVER && usage != CKA_DECRYPT &&
	    usage != CKA_UNWRAP)
		return 0;
	return (int64_t)time(NULL) < o->destroy_at;
}

CK_RV
ev_object_usable(ev_object *o, CK_ATTRIBUTE_TYPE usage, CK_MECHANISM_TYPE mech)
{
	CK_RV rv;

	rv = ev_rwlock_rdlock(o->lock);
	if (rv != CKR_OK)
		return rv;
	if (!ev_attrs_is_true(o->attrs, usage, 0) || !date_ok(o->attrs) || !retired_ok(o, usage))
		rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
	else if (!mech_allowed(o->attrs, mech))
		rv = CKR_MECHANISM_INVALID;
	ev_rwlock_unlock(o->lock);
	return rv;
}

/* Defaults PKCS#11 leaves to the token: chosen to be safe. */
enum dflt_kind {
	DFL_EMPTY,    /* an empty value */
	DFL_BOOL,     /* v */
	DFL_ULONG,    /* v */
	DFL_BOOL_RSA, /* true for RSA keys only (encryption and wrapping) */
};

#define DFL_ANY ((CK_OBJECT_CLASS)-1)  /* every class */
#define DFL_KEYS ((CK_OBJECT_CLASS)-2) /* the three key classes */

/* In order: the first row for a type that applies to the class wins. */
static const struct dflt {
	CK_OBJECT_CLASS cls;
	CK_ATTRIBUTE_TYPE type;
	enum dflt_kind kind;
	CK_ULONG v;
} defaults[] = {
	{ DFL_ANY, CKA_TOKEN, DFL_BOOL, CK_FALSE },
	{ CKO_PRIVATE_KEY, CKA_PRIVATE, DFL_BOOL, CK_TRUE },
	{ CKO_SECRET_KEY, CKA_PRIVATE, DFL_BOOL, CK_TRUE },
	{ DFL_ANY, CKA_PRIVATE, DFL_BOOL, CK_FALSE },
	{ DFL_ANY, CKA_MODIFIABLE, DFL_BOOL, CK_TRUE },
	{ DFL_ANY, CKA_COPYABLE, DFL_BOOL, CK_TRUE },
	{ DFL_ANY, CKA_DESTROYABLE, DFL_BOOL, CK_TRUE },
	{ DFL_ANY, CKA_LABEL, DFL_EMPTY, 0 },

	{ CKO_DATA, CKA_APPLICATION, DFL_EMPTY, 0 },
	{ CKO_DATA, CKA_VALUE, DFL_EMPTY, 0 },

	{ CKO_CERTIFICATE, CKA_TRUSTED, DFL_BOOL, CK_FALSE },
	{ CKO_CERTIFICATE, CKA_CERTIFICATE_CATEGORY, DFL_ULONG, 0 },
	{ CKO_CERTIFICATE, CKA_ID, DFL_EMPTY, 0 },
	{ CKO_CERTIFICATE, CKA_ISSUER, DFL_EMPTY, 0 },
	{ CKO_CERTIFICATE, CKA_SERIAL_NUMBER, DFL_EMPTY, 0 },
	{ CKO_CERTIFICATE, CKA_START_DATE, DFL_EMPTY, 0 },
	{ CKO_CERTIFICATE, CKA_END_DATE, DFL_EMPTY, 0 },

	{ DFL_KEYS, CKA_ID, DFL_EMPTY, 0 },
	{ DFL_KEYS, CKA_START_DATE, DFL_EMPTY, 0 },
	{ DFL_KEYS, CKA_END_DATE, DFL_EMPTY, 0 },
	{ DFL_KEYS, CKA_DERIVE, DFL_BOOL, CK_FALSE },
	{ DFL_KEYS, CKA_ALLOWED_MECHANISMS, DFL_EMPTY, 0 },

	{ CKO_PUBLIC_KEY, CKA_SUBJECT, DFL_EMPTY, 0 },
	{ CKO_PUBLIC_KEY, CKA_ENCRYPT, DFL_BOOL_RSA, 0 },
	{ CKO_PUBLIC_KEY, CKA_VERIFY, DFL_BOOL, CK_TRUE },
	{ CKO_PUBLIC_KEY, CKA_VERIFY_RECOVER, DFL_BOOL, CK_FALSE },
	{ CKO_PUBLIC_KEY, CKA_WRAP, DFL_BOOL_RSA, 0 },
	{ CKO_PUBLIC_KEY, CKA_TRUSTED, DFL_BOOL, CK_FALSE },

	{ CKO_PRIVATE_KEY, CKA_SUBJECT, DFL_EMPTY, 0 },
	{ CKO_PRIVATE_KEY, CKA_SENSITIVE, DFL_BOOL, CK_TRUE },
	{ CKO_PRIVATE_KEY, CKA_DECRYPT, DFL_BOOL_RSA, 0 },
	{ CKO_PRIVATE_KEY, CKA_SIGN, DFL_BOOL, CK_TRUE },
	{ CKO_PRIVATE_KEY, CKA_SIGN_RECOVER, DFL_BOOL, CK_FALSE },
	{ CKO_PRIVATE_KEY, CKA_UNWRAP, DFL_BOOL_RSA, 0 },
	{ CKO_PRIVATE_KEY, CKA_EXTRACTABLE, DFL_BOOL, CK_FALSE },
	{ CKO_PRIVATE_KEY, CKA_WRAP_WITH_TRUSTED, DFL_BOOL, CK_FALSE },
	{ CKO_PRIVATE_KEY, CKA_ALWAYS_AUTHENTICATE, DFL_BOOL, CK_FALSE },

	{ CKO_SECRET_KEY, CKA_SENSITIVE, DFL_BOOL, CK_TRUE },
	{ CKO_SECRET_KEY, CKA_ENCRYPT, DFL_BOOL, CK_TRUE },
	{ CKO_SECRET_KEY, CKA_DECRYPT, DFL_BOOL, CK_TRUE },
	{ CKO_SECRET_KEY, CKA_SIGN, DFL_BOOL, CK_TRUE },
	{ CKO_SECRET_KEY, CKA_VERIFY, DFL_BOOL, CK_TRUE },
	{ CKO_SECRET_KEY, CKA_WRAP, DFL_BOOL, CK_TRUE },
	{ CKO_SECRET_KEY, CKA_UNWRAP, DFL_BOOL, CK_TRUE },
	{ CKO_SECRET_KEY, CKA_EXTRACTABLE, DFL_BOOL, CK_FALSE },
	{ CKO_SECRET_KEY, CKA_WRAP_WITH_TRUSTED, DFL_BOOL, CK_FALSE },
	{ CKO_SECRET_KEY, CKA_TRUSTED, DFL_BOOL, CK_FALSE },
};

static CK_RV
apply_defaults(ev_attrs *a, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt)
{
	const struct dflt *d;
	CK_RV rv = CKR_OK;
	size_t i;

	for (i = 0; i < EV_ARRAY_SIZE(defaults) && rv == CKR_OK; i++) {
		d = &defaults[i];
		if (d->cls != cls && d->cls != DFL_ANY && !(d->cls == DFL_KEYS && is_key_class(cls)))
			continue;
		switch (d->kind) {
		case DFL_EMPTY:
			rv = ev_attrs_default(a, d->type, NULL, 0);
			break;
		case DFL_BOOL:
			rv = ev_attrs_default_bool(a, d->type, (CK_BBOOL)d->v);
			break;
		case DFL_ULONG:
			rv = ev_attrs_default_ulong(a, d->type, d->v);
			break;
		case DFL_BOOL_RSA:
			rv = ev_attrs_default_bool(a, d->type, kt == CKK_RSA);
			break;
		}
	}
	return rv;
}

/* Fill a certificate's subject, issuer and serial from its DER when absent. */
static CK_RV
cert_fields(ev_attrs *a)
{
	const CK_ATTRIBUTE *v = ev_attrs_get(a, CKA_VALUE);
	const unsigned char *p;
	unsigned char *der = NULL;
	CK_ULONG type;
	X509 *x = NULL;
	int len;
	CK_RV rv = CKR_OK;

	if (ev_attrs_ulong(a, CKA_CERTIFICATE_TYPE, &type) != CKR_OK)
		return CKR_TEMPLATE_INCOMPLETE;
	if (type != CKC_X_509)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	if (v == NULL || v->ulValueLen == 0)
		return CKR_TEMPLATE_INCOMPLETE;
	p = v->pValue;
	x = d2i_X509(NULL, &p, (long)v->ulValueLen);
	if (x == NULL)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	if (ev_attrs_get(a, CKA_SUBJECT) == NULL) {
		len = i2d_X509_NAME(X509_get_subject_name(x), &der);
		rv = len > 0 ? ev_attrs_set(a, CKA_SUBJECT, der, (CK_ULONG)len) : CKR_GENERAL_ERROR;
		OPENSSL_free(der);
		der = NULL;
	}
	if (rv == CKR_OK && ev_attrs_get(a, CKA_ISSUER) == NULL) {
		len = i2d_X509_NAME(X509_get_issuer_name(x), &der);
		rv = len > 0 ? ev_attrs_set(a, CKA_ISSUER, der, (CK_ULONG)len) : CKR_GENERAL_ERROR;
		OPENSSL_free(der);
		der = NULL;
	}
	if (rv == CKR_OK && ev_attrs_get(a, CKA_SERIAL_NUMBER) == NULL) {
		len = i2d_ASN1_INTEGER(X509_get_serialNumber(x), &der);
		rv = len > 0 ? ev_attrs_set(a, CKA_SERIAL_NUMBER, der, (CK_ULONG)len) :
			       CKR_GENERAL_ERROR;
		OPENSSL_free(der);
	}
	X509_free(x);
	return rv;
}

/*
 * CKA_UNIQUE_ID (PKCS#11 3.0 4.4): the token's, never a caller's. Random,
 * so unique across zones and processes without asking the store.
 */
static CK_RV
unique_id(ev_attrs *a)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[16];
	char id[2 * sizeof(raw)];
	size_t i;

	randombytes_buf(raw, sizeof(raw));
	for (i = 0; i < sizeof(raw); i++) {
		id[2 * i] = hex[raw[i] >> 4];
		id[2 * i + 1] = hex[raw[i] & 0xf];
	}
	return ev_attrs_set(a, CKA_UNIQUE_ID, id, sizeof(id));
}

/*
 * Insert token objects and their wrapped material in one transaction: a
 * key pair (or a rotation's chunk of new generations) is stored whole or
 * not at all. within (may be NULL) does more in the same transaction,
 * with the store lock held.
 */
static CK_RV
store_objects(ev_token *t, ev_object **objs, size_t n, CK_RV (*within)(void *), void *arg)
{
	ev_secret *few[2] = { NULL, NULL }, **plain = few;
	const ev_secret *zk = NULL;
	ev_wrap_binding b;
	int in_tx = 0, any = 0;
	size_t i;
	CK_RV rv;

	/* A pair needs no allocation; a rotation's chunk does. */
	if (n > EV_ARRAY_SIZE(few) && (plain = calloc(n, sizeof(*plain))) == NULL)
		return CKR_HOST_MEMORY;
	/* Lock order: token before store. */
	rv = ev_mutex_lock(t->lock);
	if (rv != CKR_OK)
		goto out_free;
	for (i = 0; i < n; i++) {
		ev_key *k = atomic_load(&objs[i]->key);

		if (k == NULL || (objs[i]->cls != CKO_PRIVATE_KEY && objs[i]->cls != CKO_SECRET_KEY))
			continue;
		rv = ev_key_export_secret(k, &plain[i]);
		if (rv != CKR_OK)
			goto out_token;
		any = 1;
	}
	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		goto out_token;
	rv = ev_store_begin(ev_mod->store);
	if (rv != CKR_OK)
		goto out;
	in_tx = 1;
	/*
	 * The zone key as committed now, under the write lock: a zone key
	 * rotated by another process since this one cached its key must not
	 * leave a blob wrapped under a key no longer stored anywhere.
	 */
	if (any) {
		rv = ev_token_zone_key_current(t, &zk);
		if (rv != CKR_OK)
			goto out;
	}
	for (i = 0; i < n; i++) {
		ev_object *o = objs[i];
		ev_obj_rec rec = { 0 };

		rec.zone = t->id;
		rec.cls = o->cls;
		rec.private = o->private;
		rec.generation = o->generation;
		rec.attrs = o->attrs;
		rec.origin = (int64_t)o->origin;
		rec.previous = (int64_t)o->previous;
		rv = ev_store_obj_insert(ev_mod->store, &rec);
		if (rv != CKR_OK)
			goto out;
		o->handle = (CK_OBJECT_HANDLE)rec.id;
		if (plain[i] == NULL)
			continue;
		/* The id is known only now, and the wrapping is bound to it. */
		binding_of(o, o->attrs, &b);
		rv = ev_wrap(zk, &b, plain[i], &o->wrapped, &o->wrapped_len);
		if (rv != CKR_OK)
			goto out;
		rv = ev_store_obj_set_wrapped(ev_mod->store, rec.id, o->wrapped, o->wrapped_len);
		if (rv != CKR_OK)
			goto out;
	}
	if (within != NULL) {
		rv = within(arg);
		if (rv != CKR_OK)
			goto out;
	}
	rv = ev_store_commit(ev_mod->store);
	in_tx = rv != CKR_OK;
out:
	if (in_tx)
		(void)ev_store_rollback(ev_mod->store);
	ev_mutex_unlock(ev_mod->store_lock);
out_token:
	ev_mutex_unlock(t->lock);
	for (i = 0; i < n; i++)
		ev_secret_free(plain[i]);
out_free:
	if (plain != few)
		free(plain);
	return rv;
}

/* Check a caller's template for a new object of a class. */
static CK_RV
check_template(const ev_session *s, ev_origin origin, CK_OBJECT_CLASS cls,
    const CK_ATTRIBUTE *tmpl, CK_ULONG count)
{
	CK_ULONG i;

	for (i = 0; i < count; i++) {
		CK_ATTRIBUTE_TYPE t = tmpl[i].type;

		if (!valid_for_class(cls, t))
			return CKR_ATTRIBUTE_TYPE_INVALID;
		if (IN(module_set_attrs, t))
			return CKR_ATTRIBUTE_READ_ONLY;
		if (origin != EV_ORIGIN_CREATE && origin != EV_ORIGIN_COPY && is_material(cls, t))
			return CKR_TEMPLATE_INCONSISTENT;
		if (origin == EV_ORIGIN_COPY && !IN(copy_attrs, t) && !IN(modifiable_attrs, t))
			return CKR_ATTRIBUTE_READ_ONLY;
		if (t == CKA_TRUSTED && tmpl[i].ulValueLen == sizeof(CK_BBOOL) &&
		    tmpl[i].pValue != NULL && *(CK_BBOOL *)tmpl[i].pValue && !ev_session_so(s))
			return CKR_ATTRIBUTE_READ_ONLY;
	}
	return CKR_OK;
}

/* The module-derived attributes of a new key. */
static CK_RV
key_provenance(ev_attrs *a, ev_origin origin, CK_OBJECT_CLASS cls, CK_MECHANISM_TYPE mech,
    const ev_attrs *base)
{
	int sensitive = ev_attrs_is_true(a, CKA_SENSITIVE, 0);
	int extractable = ev_attrs_is_true(a, CKA_EXTRACTABLE, 0);
	int local = origin == EV_ORIGIN_GENERATE || origin == EV_ORIGIN_ROTATE;
	CK_RV rv;

	if (origin == EV_ORIGIN_COPY)
		return CKR_OK; /* a copy keeps its source's history */
	rv = ev_attrs_set_bool(a, CKA_LOCAL, local);
	if (rv == CKR_OK)
		rv = ev_attrs_set_ulong(a, CKA_KEY_GEN_MECHANISM,
		    local ? mech : CK_UNAVAILABLE_INFORMATION);
	/* A rotation's base carries the new generation. */
	if (rv == CKR_OK && origin != EV_ORIGIN_ROTATE)
		rv = ev_attrs_set_ulong(a, CKA_EV_GENERATION, 1);
	if (rv == CKR_OK)
		rv = set_lifecycle(a, 0, 0);
	if (rv != CKR_OK || cls == CKO_PUBLIC_KEY)
		return rv;
	/* Imported material was seen outside: it was never "always" anything. */
	if (origin == EV_ORIGIN_CREATE || origin == EV_ORIGIN_UNWRAP) {
		sensitive = 0;
		extractable = 1;
	}
	if (origin == EV_ORIGIN_DERIVE && base != NULL) {
		sensitive = sensitive && ev_attrs_is_true(base, CKA_ALWAYS_SENSITIVE, 0);
		extractable = extractable || !ev_attrs_is_true(base, CKA_NEVER_EXTRACTABLE, 0);
	}
	rv = ev_attrs_set_bool(a, CKA_ALWAYS_SENSITIVE, sensitive);
	if (rv == CKR_OK)
		rv = ev_attrs_set_bool(a, CKA_NEVER_EXTRACTABLE, !extractable);
	return rv;
}

/* Whether every type a template gives twice has the same value both times. */
static int
self_consistent(const CK_ATTRIBUTE *tmpl, CK_ULONG count)
{
	CK_ULONG i, j;

	for (i = 0; i < count; i++) {
		for (j = 0; j < i; j++) {
			if (tmpl[j].type != tmpl[i].type)
				continue;
			if (tmpl[j].ulValueLen != tmpl[i].ulValueLen)
				return 0;
			/* A NULL value with a length is refused later, as invalid. */
			if (tmpl[i].ulValueLen > 0 && tmpl[i].pValue != NULL &&
			    tmpl[j].pValue != NULL &&
			    memcmp(tmpl[i].pValue, tmpl[j].pValue, tmpl[i].ulValueLen) != 0)
				return 0;
		}
	}
	return 1;
}

/*
 * Everything ev_object_new() does before storing: the object is checked and
 * built, with key (consumed) as its material, but not stored or mapped.
 */
static CK_RV
prepare(ev_session *s, ev_origin origin, const CK_ATTRIBUTE *tmpl, CK_ULONG count,
    const ev_attrs *base, ev_key *key, CK_MECHANISM_TYPE gen_mech, ev_object **out)
{
	CK_OBJECT_CLASS cls = (CK_OBJECT_CLASS)-1;
	CK_KEY_TYPE kt = CK_UNAVAILABLE_INFORMATION;
	ev_attrs *a = NULL;
	ev_object *o = NULL;
	CK_ULONG i;
	CK_RV rv;

	if (tmpl == NULL && count > 0) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	if (!self_consistent(tmpl, count)) {
		rv = CKR_TEMPLATE_INCONSISTENT;
		goto out;
	}
	/* The class decides what is secret, so find it before copying anything. */
	if (base != NULL)
		(void)ev_attrs_ulong(base, CKA_CLASS, &cls);
	for (i = 0; i < count; i++) {
		if (tmpl[i].type != CKA_CLASS)
			continue;
		if (tmpl[i].pValue == NULL || tmpl[i].ulValueLen != sizeof(CK_OBJECT_CLASS)) {
			rv = CKR_ATTRIBUTE_VALUE_INVALID;
			goto out;
		}
		if (origin == EV_ORIGIN_COPY) {
			/* A copy's class is its source's: not an attribute a copy may set. */
			rv = CKR_ATTRIBUTE_READ_ONLY;
			goto out;
		}
		if (base != NULL && ev_attrs_get(base, CKA_CLASS) != NULL &&
		    *(CK_OBJECT_CLASS *)tmpl[i].pValue != cls) {
			rv = CKR_TEMPLATE_INCONSISTENT;
			goto out;
		}
		cls = *(CK_OBJECT_CLASS *)tmpl[i].pValue;
	}
	if (cls == (CK_OBJECT_CLASS)-1) {
		rv = CKR_TEMPLATE_INCOMPLETE;
		goto out;
	}
	if (cls != CKO_DATA && cls != CKO_CERTIFICATE && !is_key_class(cls)) {
		rv = CKR_ATTRIBUTE_VALUE_INVALID;
		goto out;
	}
	rv = check_template(s, origin, cls, tmpl, count);
	if (rv != CKR_OK)
		goto out;

	a = base != NULL ? ev_attrs_dup(base) : ev_attrs_new();
	if (a == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	for (i = 0; i < count; i++) {
		const CK_ATTRIBUTE *t = &tmpl[i];
		const CK_ATTRIBUTE *prev;

		if (ev_attr_is_secret(cls, t->type))
			continue; /* material stays in the key, never in attributes */
		if (t->pValue == NULL && t->ulValueLen > 0) {
			rv = CKR_ATTRIBUTE_VALUE_INVALID;
			goto out;
		}
		if (!ev_attr_len_ok(t->type, t->ulValueLen)) {
			rv = CKR_ATTRIBUTE_VALUE_INVALID;
			goto out;
		}
		if (ev_attr_type_is_template(t->type)) {
			unsigned char *packed = NULL;
			CK_ULONG plen = 0;

			rv = t->ulValueLen % sizeof(CK_ATTRIBUTE) != 0 ?
				   CKR_ATTRIBUTE_VALUE_INVALID :
				   ev_attrs_pack(t->pValue, t->ulValueLen / sizeof(CK_ATTRIBUTE),
				       &packed, &plen);
			if (rv == CKR_OK)
				rv = ev_attrs_set(a, t->type, packed, plen);
			free(packed);
			if (rv != CKR_OK)
				goto out;
			continue;
		}
		prev = ev_attrs_get(a, t->type);
		if (prev != NULL && origin != EV_ORIGIN_COPY && base != NULL &&
		    ev_attrs_get(base, t->type) != NULL &&
		    (prev->ulValueLen != t->ulValueLen ||
			memcmp(prev->pValue, t->pValue, t->ulValueLen) != 0)) {
			/* The template contradicts what the mechanism decides. */
			rv = CKR_TEMPLATE_INCONSISTENT;
			goto out;
		}
		rv = ev_attrs_set(a, t->type, t->pValue, t->ulValueLen);
		if (rv != CKR_OK)
			goto out;
	}
	if (origin == EV_ORIGIN_COPY && base != NULL) {
		/* One-way attributes move only their way in a copy too. */
		if (ev_attrs_is_true(base, CKA_SENSITIVE, 0) && !ev_attrs_is_true(a, CKA_SENSITIVE, 0))
			rv = CKR_ATTRIBUTE_READ_ONLY;
		if (!ev_attrs_is_true(base, CKA_EXTRACTABLE, 1) &&
		    ev_attrs_is_true(a, CKA_EXTRACTABLE, 0))
			rv = CKR_ATTRIBUTE_READ_ONLY;
		/* Else a copy would escape the trusted wrapping its source insists on. */
		if (ev_attrs_is_true(base, CKA_WRAP_WITH_TRUSTED, 0) &&
		    !ev_attrs_is_true(a, CKA_WRAP_WITH_TRUSTED, 0))
			rv = CKR_ATTRIBUTE_READ_ONLY;
		if (rv != CKR_OK)
			goto out;
	}
	if (is_key_class(cls)) {
		if (ev_attrs_ulong(a, CKA_KEY_TYPE, &kt) != CKR_OK) {
			rv = key != NULL ? ev_attrs_set_ulong(a, CKA_KEY_TYPE, key->type) :
					   CKR_TEMPLATE_INCOMPLETE;
			if (rv != CKR_OK)
				goto out;
			kt = key->type;
		}
		if (!key_type_ok(cls, kt)) {
			rv = CKR_ATTRIBUTE_VALUE_INVALID;
			goto out;
		}
		if (key == NULL) {
			if (origin != EV_ORIGIN_CREATE) {
				rv = CKR_GENERAL_ERROR;
				goto out;
			}
			rv = ev_key_from_template(cls, kt, tmpl, count, &key);
			if (rv != CKR_OK)
				goto out;
		} else if (key->cls != cls ||
		    (key->type != kt && cls != CKO_SECRET_KEY)) {
			rv = CKR_TEMPLATE_INCONSISTENT;
			goto out;
		}
		if (origin != EV_ORIGIN_COPY) {
			rv = ev_key_public_attrs(key, a);
			if (rv != CKR_OK)
				goto out;
			/* The caller's key type stands for secret keys (HMAC types). */
			rv = ev_attrs_set_ulong(a, CKA_KEY_TYPE, kt);
			if (rv != CKR_OK)
				goto out;
		}
	} else if (key != NULL) {
		rv = CKR_GENERAL_ERROR;
		goto out;
	}
	/* Before the defaults, which would give the DER's fields empty values. */
	if (cls == CKO_CERTIFICATE)
		rv = cert_fields(a);
	if (rv == CKR_OK)
		rv = apply_defaults(a, cls, kt);
	if (rv == CKR_OK)
		rv = unique_id(a);
	if (rv == CKR_OK && is_key_class(cls))
		rv = key_provenance(a, origin, cls, gen_mech, base);
	if (rv != CKR_OK)
		goto out;

	o = object_alloc();
	if (o == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	o->token = s->token;
	o->cls = cls;
	o->on_token = ev_attrs_is_true(a, CKA_TOKEN, 0);
	o->private = ev_attrs_is_true(a, CKA_PRIVATE, 1);
	o->generation = 1;
	if ((origin == EV_ORIGIN_COPY || origin == EV_ORIGIN_ROTATE) && base != NULL) {
		CK_ULONG g;

		if (ev_attrs_ulong(base, CKA_EV_GENERATION, &g) == CKR_OK)
			o->generation = (int64_t)g;
	}
	o->attrs = a;
	a = NULL; /* transferred */

	/*
	 * Session rights, from the PKCS#11 access table. A rotation's caller
	 * checked its own: an automatic one may run in a read-only session.
	 */
	if (origin != EV_ORIGIN_ROTATE && o->on_token && !ev_session_rw(s)) {
		rv = CKR_SESSION_READ_ONLY;
		goto out;
	}
	if (origin != EV_ORIGIN_ROTATE && o->private && !ev_session_user(s)) {
		rv = CKR_USER_NOT_LOGGED_IN;
		goto out;
	}
	if (!o->on_token)
		o->owner = s->handle;
	atomic_store(&o->key, key);
	key = NULL; /* transferred */
	*out = o;
	o = NULL; /* transferred */
out:
	ev_object_free(o);
	ev_attrs_free(a);
	ev_key_free(key);
	return rv;
}

/*
 * A session copy's source revoked or retired while the copy was made (the
 * watcher acts in parallel): the copy must not outlive it. Called under
 * the module lock (write), which dropping and retiring take too.
 */
static CK_RV
source_current(ev_object *src)
{
	CK_RV rv;

	if (atomic_load(&src->destroyed))
		return CKR_OBJECT_HANDLE_INVALID;
	rv = ev_rwlock_rdlock(src->lock);
	if (rv != CKR_OK)
		return rv;
	if (src->retired != 0)
		rv = CKR_ACTION_PROHIBITED;
	ev_rwlock_unlock(src->lock);
	return rv;
}

/*
 * The audit of a token key just stored (not shared yet, so its attributes
 * are read without its lock): generated, imported, or a rotation's new
 * generation. Session objects and token objects that are not keys are
 * not recorded.
 */
static void
audit_made(ev_object *o, ev_origin origin)
{
	static const char *const method[] = {
		[EV_ORIGIN_CREATE] = "create",
		[EV_ORIGIN_GENERATE] = "generate",
		[EV_ORIGIN_UNWRAP] = "unwrap",
		[EV_ORIGIN_DERIVE] = "derive",
		[EV_ORIGIN_COPY] = "copy",
		[EV_ORIGIN_ROTATE] = "rotate",
	};
	CK_ULONG mech = CK_UNAVAILABLE_INFORMATION;
	const char *kind = EV_AUDIT_KEY_IMPORTED;
	ev_audit_detail d[3] = { { "method", method[origin], 0 } };
	size_t nd = 1;

	if (!o->on_token || !is_key_class(o->cls))
		return;
	if (origin == EV_ORIGIN_GENERATE || origin == EV_ORIGIN_ROTATE) {
		kind = origin == EV_ORIGIN_GENERATE ? EV_AUDIT_KEY_GENERATED : EV_AUDIT_KEY_ROTATED;
		if (ev_attrs_ulong(o->attrs, CKA_KEY_GEN_MECHANISM, &mech) == CKR_OK &&
		    mech != CK_UNAVAILABLE_INFORMATION)
			d[nd++] = (ev_audit_detail){ "mechanism", NULL, (int64_t)mech };
	}
	if (origin == EV_ORIGIN_ROTATE) {
		d[nd++] = (ev_audit_detail){ "previous", NULL, (int64_t)o->previous };
	} else if (origin == EV_ORIGIN_COPY && o->origin != 0) {
		d[nd++] = (ev_audit_detail){ "origin", NULL, (int64_t)o->origin };
	}
	audit_object(kind, o, NULL, d, nd);
}

/*
 * Store prepared objects (token objects in one transaction) and map them.
 * The objects are consumed, also on failure; handles[i] gets each handle.
 * origin says where they come from (for the audit). src: a copy's
 * source, or NULL. *committed (committed may be NULL): 1 when token
 * objects were stored, even should the mapping fail after, else 0.
 */
static CK_RV
publish(ev_session *s, ev_object **objs, size_t n, CK_OBJECT_HANDLE *handles, ev_origin origin,
    CK_RV (*within)(void *), void *arg, ev_object *src, int *committed)
{
	ev_object *few[2], **on_token = few;
	size_t i, nt = 0;
	CK_RV rv = CKR_OK;

	if (committed != NULL)
		*committed = 0;
	/* A pair needs no allocation; a rotation's chunk does. */
	if (n > EV_ARRAY_SIZE(few) && (on_token = calloc(n, sizeof(*on_token))) == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	for (i = 0; i < n; i++)
		if (objs[i]->on_token)
			on_token[nt++] = objs[i];
	if (nt > 0)
		rv = store_objects(s->token, on_token, nt, within, arg);
	if (committed != NULL)
		*committed = nt > 0 && rv == CKR_OK;
	/* Committed: recorded, even should mapping fail (the object is found on next use). */
	for (i = 0; i < nt && rv == CKR_OK; i++)
		audit_made(on_token[i], origin);
	/* A stored object's handle is its row: valid even should mapping fail. */
	for (i = 0; i < n && rv == CKR_OK; i++)
		if (objs[i]->on_token)
			handles[i] = objs[i]->handle;
	if (rv == CKR_OK)
		rv = ev_rwlock_wrlock(ev_mod->lock);
	if (rv != CKR_OK)
		goto out;
	/* A token copy's source was checked in its transaction (origin_current()). */
	if (src != NULL && nt == 0)
		rv = source_current(src);
	for (i = 0; i < n && rv == CKR_OK; i++) {
		if (!objs[i]->on_token)
			objs[i]->handle = EV_SESSION_OBJECT_BIT | ev_mod->next_object++;
		rv = map_object(objs[i]);
		if (rv == CKR_OK) {
			handles[i] = objs[i]->handle;
			objs[i] = NULL; /* transferred to the map */
		}
	}
	ev_rwlock_unlock(ev_mod->lock);
out:
	/* A token object stored but not mapped is found again on next use. */
	for (i = 0; i < n; i++)
		ev_object_free(objs[i]);
	if (on_token != few)
		free(on_token);
	return rv;
}

CK_RV
ev_object_new(ev_session *s, ev_origin origin, const CK_ATTRIBUTE *tmpl, CK_ULONG count,
    const ev_attrs *base, ev_key *key, CK_MECHANISM_TYPE gen_mech, CK_OBJECT_HANDLE *out)
{
	ev_object *o = NULL;
	CK_RV rv;

	rv = prepare(s, origin, tmpl, count, base, key, gen_mech, &o);
	if (rv != CKR_OK)
		return rv;
	return publish(s, &o, 1, out, origin, NULL, NULL, NULL, NULL);
}

CK_RV
ev_object_new_pair(ev_session *s, const CK_ATTRIBUTE *pub_tmpl, CK_ULONG pub_count,
    const ev_attrs *pub_base, ev_key *pub, const CK_ATTRIBUTE *priv_tmpl, CK_ULONG priv_count,
    const ev_attrs *priv_base, ev_key *priv, CK_MECHANISM_TYPE mech, CK_OBJECT_HANDLE *hpub,
    CK_OBJECT_HANDLE *hpriv)
{
	ev_object *objs[2] = { NULL, NULL };
	CK_OBJECT_HANDLE h[2];
	CK_RV rv;

	rv = prepare(s, EV_ORIGIN_GENERATE, pub_tmpl, pub_count, pub_base, pub, mech, &objs[0]);
	pub = NULL; /* consumed */
	if (rv == CKR_OK)
		rv = prepare(s, EV_ORIGIN_GENERATE, priv_tmpl, priv_count, priv_base, priv, mech,
		    &objs[1]);
	else
		ev_key_free(priv); /* consumed here, as the contract says */
	priv = NULL; /* consumed */
	if (rv != CKR_OK) {
		ev_object_free(objs[0]);
		return rv;
	}
	rv = publish(s, objs, 2, h, EV_ORIGIN_GENERATE, NULL, NULL, NULL, NULL);
	if (rv == CKR_OK) {
		*hpub = h[0];
		*hpriv = h[1];
	}
	return rv;
}

/* May this session change this object (the PKCS#11 access table)? */
static CK_RV
may_write(const ev_session *s, const ev_object *o)
{
	if (o->on_token && !ev_session_rw(s))
		return CKR_SESSION_READ_ONLY;
	return CKR_OK;
}

/*
 * Delete (attrs NULL) or rewrite a token object in the store, with the
 * change log row that tells the other processes, in one transaction.
 * Called with the store lock free; announces after committing.
 */
static CK_RV
store_change(ev_object *o, ev_change_kind kind, const ev_attrs *attrs)
{
	int64_t id = (int64_t)o->handle;
	CK_RV rv;

	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		return rv;
	rv = ev_store_begin(ev_mod->store);
	if (rv == CKR_OK) {
		if (attrs == NULL)
			rv = ev_store_obj_delete(ev_mod->store, id);
		else
			rv = ev_store_obj_set_attrs(ev_mod->store, id, attrs);
		if (rv == CKR_OK)
			rv = ev_store_change_add(ev_mod->store, kind, o->token->id, id);
		if (rv == CKR_OK)
			rv = ev_store_commit(ev_mod->store);
		if (rv != CKR_OK)
			(void)ev_store_rollback(ev_mod->store);
	}
	ev_mutex_unlock(ev_mod->store_lock);
	if (rv == CKR_OK)
		ev_events_announce();
	return rv;
}

CK_RV
ev_object_destroy(ev_session *s, CK_OBJECT_HANDLE h, int *held)
{
	ev_audit_detail d[] = { { "method", "destroy", 0 } };
	ev_audit_ident id = { 0 };
	ev_object *o;
	CK_RV rv;

	*held = 0;
	rv = ev_object_get(s, h, &o);
	if (rv != CKR_OK)
		return rv;
	rv = may_write(s, o);
	if (rv == CKR_OK && !ev_object_is_true(o, CKA_DESTROYABLE, 1))
		rv = CKR_ACTION_PROHIBITED;
	if (rv != CKR_OK)
		goto out;
	if (o->on_token) {
		/* Named before it goes; recorded once the store has let it go. */
		if (is_key_class(o->cls))
			ev_audit_ident_object(&id, o);
		rv = store_change(o, EV_CHANGE_OBJECT_DESTROYED, NULL);
		if (rv == CKR_OK && is_key_class(o->cls))
			ev_audit_note(EV_AUDIT_KEY_DESTROYED, EV_AUDIT_OK, s->token->id,
			    ev_audit_user(s->token), &id.obj, "C_DestroyObject", d,
			    EV_ARRAY_SIZE(d));
		if (rv == EVR_NOT_FOUND)
			rv = CKR_OK; /* already gone, by another process */
		if (rv != CKR_OK)
			goto out;
	}
	rv = ev_rwlock_wrlock(ev_mod->lock);
	if (rv != CKR_OK)
		goto out;
	if (ev_map_get(&ev_mod->objects, h) == o) {
		unmap_object(o);
		o->destroyed = 1;
		atomic_fetch_sub(&o->refs, 1); /* the map's; ours keeps it alive */
	}
	ev_rwlock_unlock(ev_mod->lock);
	/*
	 * Unmapped, it can gain no reference: one besides ours is held by a
	 * session's operation or kept context (or a call under way).
	 */
	*held = is_key_class(o->cls) && atomic_load(&o->refs) > 1;
out:
	ev_audit_ident_clear(&id);
	ev_object_put(o);
	return rv;
}

/*
 * One attribute's value for C_GetAttributeValue, under the object's read
 * lock: *secret (the caller's, to free) for key material, taken from k
 * (NULL when the caller did not fetch the material), else *plain
 * (borrowed from the object's attributes).
 */
static CK_RV
attr_value(ev_object *o, const ev_key *k, CK_ATTRIBUTE_TYPE type, ev_secret **secret,
    const CK_ATTRIBUTE **plain)
{
	*secret = NULL;
	*plain = NULL;
	if (ev_attr_is_secret(o->cls, type)) {
		if (!valid_for_class(o->cls, type))
			return CKR_ATTRIBUTE_TYPE_INVALID;
		/*
		 * Checked again here: the attributes may have changed since k
		 * was fetched. A retired generation's material never leaves.
		 */
		if (k == NULL || ev_attrs_is_true(o->attrs, CKA_SENSITIVE, 1) ||
		    !ev_attrs_is_true(o->attrs, CKA_EXTRACTABLE, 0) || o->retired != 0)
			return CKR_ATTRIBUTE_SENSITIVE;
		return ev_key_secret_attr(k, type, secret);
	}
	*plain = ev_attrs_get(o->attrs, type);
	return *plain != NULL ? CKR_OK : CKR_ATTRIBUTE_TYPE_INVALID;
}

/*
 * An array attribute (PKCS#11 3.0 section 5.7): its length is the nested
 * template's size in CK_ATTRIBUTEs; given an array, each element gets its
 * type and, like a top-level attribute, its length or its value.
 */
static CK_RV
get_array(ev_object *o, CK_ATTRIBUTE *t)
{
	const CK_ATTRIBUTE *packed = ev_attrs_get(o->attrs, t->type);
	CK_ATTRIBUTE *arr = t->pValue;
	ev_attrs *nested = NULL;
	CK_RV rv = CKR_OK;
	size_t i;

	if (packed == NULL) {
		t->ulValueLen = CK_UNAVAILABLE_INFORMATION;
		return CKR_ATTRIBUTE_TYPE_INVALID;
	}
	rv = ev_attrs_unpack(packed->pValue, packed->ulValueLen, &nested);
	if (rv != CKR_OK) {
		t->ulValueLen = CK_UNAVAILABLE_INFORMATION;
		return CKR_GENERAL_ERROR;
	}
	if (arr == NULL) {
		t->ulValueLen = nested->n * sizeof(CK_ATTRIBUTE);
		goto out;
	}
	if (t->ulValueLen < nested->n * sizeof(CK_ATTRIBUTE)) {
		t->ulValueLen = CK_UNAVAILABLE_INFORMATION;
		rv = CKR_BUFFER_TOO_SMALL;
		goto out;
	}
	for (i = 0; i < nested->n; i++) {
		const CK_ATTRIBUTE *v = &nested->v[i];

		arr[i].type = v->type;
		if (arr[i].pValue == NULL) {
			arr[i].ulValueLen = v->ulValueLen;
		} else if (arr[i].ulValueLen >= v->ulValueLen) {
			if (v->ulValueLen > 0)
				memcpy(arr[i].pValue, v->pValue, v->ulValueLen);
			arr[i].ulValueLen = v->ulValueLen;
		} else {
			arr[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
			rv = CKR_BUFFER_TOO_SMALL;
		}
	}
	t->ulValueLen = nested->n * sizeof(CK_ATTRIBUTE);
out:
	ev_attrs_free(nested);
	return rv;
}

CK_RV
ev_object_template(ev_object *o, CK_ATTRIBUTE_TYPE type, ev_attrs **out)
{
	const CK_ATTRIBUTE *packed;
	CK_RV rv;

	*out = NULL;
	rv = ev_rwlock_rdlock(o->lock);
	if (rv != CKR_OK)
		return rv;
	packed = ev_attrs_get(o->attrs, type);
	if (packed != NULL && packed->ulValueLen > 0)
		rv = ev_attrs_unpack(packed->pValue, packed->ulValueLen, out);
	ev_rwlock_unlock(o->lock);
	return rv;
}

int
ev_object_is_true(ev_object *o, CK_ATTRIBUTE_TYPE type, int dflt)
{
	int v = dflt;

	if (ev_rwlock_rdlock(o->lock) == CKR_OK) {
		v = ev_attrs_is_true(o->attrs, type, dflt);
		ev_rwlock_unlock(o->lock);
	}
	return v;
}

int
ev_object_matches(ev_object *o, const ev_attrs *tmpl)
{
	int m = 0;

	if (ev_rwlock_rdlock(o->lock) == CKR_OK) {
		m = ev_attrs_match(o->attrs, tmpl->v, tmpl->n);
		ev_rwlock_unlock(o->lock);
	}
	return m;
}

/* Whether a template asks for secret key material. */
static int
wants_secret(const ev_object *o, const CK_ATTRIBUTE *tmpl, CK_ULONG count)
{
	CK_ULONG i;

	for (i = 0; i < count; i++)
		if (ev_attr_is_secret(o->cls, tmpl[i].type))
			return 1;
	return 0;
}

CK_RV
ev_object_get_attrs(ev_session *s, ev_object *o, CK_ATTRIBUTE *tmpl, CK_ULONG count)
{
	CK_RV rv = CKR_OK, r;
	ev_key *k = NULL;
	CK_ULONG i;

	if (tmpl == NULL && count > 0)
		return CKR_ARGUMENTS_BAD;
	/*
	 * Material is fetched before the object's lock is taken:
	 * ev_object_key() takes the token's lock and this object's, which
	 * must not nest inside it (with application mutexes, a second lock
	 * of the same object by one thread never returns).
	 */
	if (wants_secret(o, tmpl, count) && !ev_object_is_true(o, CKA_SENSITIVE, 1) &&
	    ev_object_is_true(o, CKA_EXTRACTABLE, 0) && !ev_object_is_true(o, CKA_EV_RETIRED, 0)) {
		/* Reading a secret out is a use of it: gated like any other. */
		r = ev_gate_use(s->token);
		if (r == CKR_OK)
			r = ev_object_key(o, &k);
		if (r != CKR_OK)
			return r;
	}
	r = ev_rwlock_rdlock(o->lock);
	if (r != CKR_OK) {
		ev_key_free(k);
		return r;
	}
	for (i = 0; i < count; i++) {
		CK_ATTRIBUTE *t = &tmpl[i];
		const CK_ATTRIBUTE *plain;
		ev_secret *secret;
		const void *val;
		CK_ULONG len;

		if (ev_attr_type_is_template(t->type)) {
			r = get_array(o, t);
			if (r != CKR_OK && (rv == CKR_OK || r != CKR_BUFFER_TOO_SMALL))
				rv = r;
			continue;
		}
		r = attr_value(o, k, t->type, &secret, &plain);
		if (r != CKR_OK) {
			t->ulValueLen = CK_UNAVAILABLE_INFORMATION;
			/* Keep going: every attribute gets its answer (PKCS#11 5.7). */
			if (r != CKR_ATTRIBUTE_SENSITIVE && r != CKR_ATTRIBUTE_TYPE_INVALID) {
				rv = r;
				break;
			}
			rv = r;
			continue;
		}
		val = secret != NULL ? (const void *)secret->data : plain->pValue;
		len = secret != NULL ? (CK_ULONG)secret->len : plain->ulValueLen;
		if (t->pValue == NULL) {
			t->ulValueLen = len;
		} else if (t->ulValueLen >= len) {
			if (len > 0)
				memcpy(t->pValue, val, len);
			t->ulValueLen = len;
		} else {
			t->ulValueLen = CK_UNAVAILABLE_INFORMATION;
			if (rv == CKR_OK)
				rv = CKR_BUFFER_TOO_SMALL;
		}
		ev_secret_free(secret);
	}
	ev_rwlock_unlock(o->lock);
	ev_key_free(k);
	return rv;
}

CK_RV
ev_object_set_attrs(ev_session *s, ev_object *o, const CK_ATTRIBUTE *tmpl, CK_ULONG count)
{
	ev_attrs *n = NULL;
	CK_ULONG i;
	CK_RV rv;

	if (tmpl == NULL && count > 0)
		return CKR_ARGUMENTS_BAD;
	rv = may_write(s, o);
	if (rv != CKR_OK)
		return rv;
	rv = ev_rwlock_wrlock(o->lock);
	if (rv != CKR_OK)
		return rv;
	if (!ev_attrs_is_true(o->attrs, CKA_MODIFIABLE, 1)) {
		rv = CKR_ACTION_PROHIBITED;
		goto out;
	}
	n = ev_attrs_dup(o->attrs);
	if (n == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	for (i = 0; i < count; i++) {
		const CK_ATTRIBUTE *t = &tmpl[i];

		if (!valid_for_class(o->cls, t->type)) {
			rv = CKR_ATTRIBUTE_TYPE_INVALID;
			goto out;
		}
		if (!IN(modifiable_attrs, t->type)) {
			rv = CKR_ATTRIBUTE_READ_ONLY;
			goto out;
		}
		if (t->pValue == NULL && t->ulValueLen > 0) {
			rv = CKR_ATTRIBUTE_VALUE_INVALID;
			goto out;
		}
		if (ev_attr_type_is_bool(t->type)) {
			CK_BBOOL v;

			if (t->ulValueLen != sizeof(CK_BBOOL)) {
				rv = CKR_ATTRIBUTE_VALUE_INVALID;
				goto out;
			}
			v = *(const CK_BBOOL *)t->pValue;
			/* One-way attributes: they only ever move towards safety. */
			if ((t->type == CKA_SENSITIVE && !v && ev_attrs_is_true(n, t->type, 0)) ||
			    (t->type == CKA_EXTRACTABLE && v && !ev_attrs_is_true(n, t->type, 1)) ||
			    (t->type == CKA_WRAP_WITH_TRUSTED && !v &&
				ev_attrs_is_true(n, t->type, 0)) ||
			    (t->type == CKA_COPYABLE && v && !ev_attrs_is_true(n, t->type, 1)) ||
			    (t->type == CKA_TRUSTED && v && !ev_session_so(s))) {
				rv = CKR_ATTRIBUTE_READ_ONLY;
				goto out;
			}
		}
		if (!ev_attr_len_ok(t->type, t->ulValueLen)) {
			rv = CKR_ATTRIBUTE_VALUE_INVALID;
			goto out;
		}
		rv = ev_attrs_set(n, t->type, t->pValue, t->ulValueLen);
		if (rv != CKR_OK)
			goto out;
	}
	if (o->on_token) {
		rv = store_change(o, EV_CHANGE_OBJECT_UPDATED, n);
		if (rv == EVR_NOT_FOUND)
			rv = CKR_OBJECT_HANDLE_INVALID;
		if (rv != CKR_OK)
			goto out;
	}
	ev_attrs_free(o->attrs);
	o->attrs = n;
	n = NULL; /* transferred */
out:
	ev_rwlock_unlock(o->lock);
	ev_attrs_free(n);
	return rv;
}

/*
 * Inside a token copy's transaction: its origin is still there and
 * current. A copy committed after the origin's revocation or rotation (by
 * a process that had not heard of it yet) would escape both.
 */
static CK_RV
origin_current(void *arg)
{
	ev_obj_rec rec = { 0 };
	CK_RV rv;

	rv = ev_store_obj_get(ev_mod->store, *(const int64_t *)arg, &rec);
	if (rv == EVR_NOT_FOUND)
		rv = CKR_OBJECT_HANDLE_INVALID;
	else if (rv == CKR_OK && rec.retired != 0)
		rv = CKR_ACTION_PROHIBITED;
	ev_obj_rec_clear(&rec);
	return rv;
}

CK_RV
ev_object_copy(ev_session *s, ev_object *o, const CK_ATTRIBUTE *tmpl, CK_ULONG count,
    CK_OBJECT_HANDLE *out)
{
	int64_t origin;
	ev_attrs *base = NULL;
	ev_object *c = NULL;
	ev_key *key = NULL;
	CK_RV rv;

	/* A retired generation has no future: no copy to outlive its grace period. */
	if (!ev_object_is_true(o, CKA_COPYABLE, 1) || ev_object_is_true(o, CKA_EV_RETIRED, 0))
		return CKR_ACTION_PROHIBITED;
	if (o->cls == CKO_PRIVATE_KEY || o->cls == CKO_SECRET_KEY) {
		rv = ev_gate_use(s->token);
		if (rv != CKR_OK)
			return rv;
	}
	if (is_key_class(o->cls)) {
		/*
		 * The copy shares the (immutable, reference-counted) material;
		 * a token copy is wrapped under its own identity when stored.
		 */
		rv = ev_object_key(o, &key);
		if (rv != CKR_OK)
			return rv;
	}
	rv = ev_rwlock_rdlock(o->lock);
	if (rv != CKR_OK) {
		ev_key_free(key);
		return rv;
	}
	base = ev_attrs_dup(o->attrs);
	ev_rwlock_unlock(o->lock);
	if (base == NULL) {
		ev_key_free(key);
		return CKR_HOST_MEMORY;
	}
	ev_attrs_del(base, CKA_UNIQUE_ID);
	rv = prepare(s, EV_ORIGIN_COPY, tmpl, count, base, key, CK_UNAVAILABLE_INFORMATION, &c);
	ev_attrs_free(base);
	if (rv != CKR_OK)
		return rv;
	/*
	 * A copy of a token object (or of a copy of one) is revoked, retired
	 * and destroyed with it: the same material must not outlive it under
	 * another name.
	 */
	if (o->origin != 0)
		c->origin = o->origin;
	else if (o->on_token)
		c->origin = o->handle;
	origin = (int64_t)c->origin;
	return publish(s, &c, 1, out, EV_ORIGIN_COPY,
	    c->on_token && origin != 0 ? origin_current : NULL, &origin, o, NULL);
}

CK_ULONG
ev_object_size(ev_object *o)
{
	CK_ULONG size;
	size_t i;

	if (ev_rwlock_rdlock(o->lock) != CKR_OK)
		return CK_UNAVAILABLE_INFORMATION;
	size = o->wrapped_len;
	for (i = 0; i < o->attrs->n; i++)
		size += sizeof(CK_ATTRIBUTE) + o->attrs->v[i].ulValueLen;
	ev_rwlock_unlock(o->lock);
	return size;
}

struct find_ctx {
	ev_session *s;
	const CK_ATTRIBUTE *tmpl;
	CK_ULONG count;
	int retired;             /* the template names CKA_EV_GENERATION: retired ones too */
	CK_OBJECT_HANDLE *v;
	size_t n, cap;
	CK_RV rv;
};

static void
push(struct find_ctx *f, CK_OBJECT_HANDLE h)
{
	if (f->rv != CKR_OK)
		return;
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 16;
		CK_OBJECT_HANDLE *v = realloc(f->v, cap * sizeof(*v));

		if (v == NULL) {
			f->rv = CKR_HOST_MEMORY;
			return;
		}
		f->v = v;
		f->cap = cap;
	}
	f->v[f->n++] = h;
}

/* Whether a search takes an object (its lock held). */
static int
finds(const struct find_ctx *f, const ev_object *o)
{
	if (o->retired != 0 && !f->retired)
		return 0;
	return ev_attrs_match(o->attrs, f->tmpl, f->count);
}

/*
 * Whether the store's search decides a template alone for token objects,
 * so that what it returns needs no loading and no matching here: every
 * attribute is one the store keeps in an indexed column, exactly as the
 * object has it (CKA_CLASS, CKA_KEY_TYPE, CKA_LABEL, CKA_ID), or
 * CKA_TOKEN as CK_TRUE or CK_FALSE (the search already chose token
 * objects or none), each once. CKA_EV_GENERATION is not: the column is
 * there for every class, the attribute only for keys.
 */
static int
store_decides(const CK_ATTRIBUTE *tmpl, CK_ULONG count)
{
	unsigned seen = 0, bit;
	CK_ULONG i;

	for (i = 0; i < count; i++) {
		const CK_ATTRIBUTE *t = &tmpl[i];

		switch (t->type) {
		case CKA_TOKEN:
			if (t->ulValueLen != sizeof(CK_BBOOL) ||
			    (*(CK_BBOOL *)t->pValue != CK_TRUE && *(CK_BBOOL *)t->pValue != CK_FALSE))
				return 0;
			bit = 0x1;
			break;
		case CKA_CLASS:
			if (t->ulValueLen != sizeof(CK_ULONG))
				return 0;
			bit = 0x2;
			break;
		case CKA_KEY_TYPE:
			if (t->ulValueLen != sizeof(CK_ULONG))
				return 0;
			bit = 0x4;
			break;
		case CKA_LABEL:
			bit = 0x8;
			break;
		case CKA_ID:
			bit = 0x10;
			break;
		default:
			return 0;
		}
		if (seen & bit)
			return 0; /* twice: both values must match, the query binds one */
		seen |= bit;
	}
	return 1;
}

static void
find_session_cb(CK_ULONG key, void *val, void *arg)
{
	struct find_ctx *f = arg;
	ev_object *o = val;

	if (!(key & EV_SESSION_OBJECT_BIT) || !visible(f->s, o))
		return;
	if (ev_rwlock_rdlock(o->lock) != CKR_OK)
		return;
	if (finds(f, o))
		push(f, key);
	ev_rwlock_unlock(o->lock);
}

CK_RV
ev_object_find(ev_session *s, const CK_ATTRIBUTE *tmpl, CK_ULONG count)
{
	struct find_ctx f = { s, tmpl, count, 0, NULL, 0, 0, CKR_OK };
	ev_obj_query q = { 0 };
	int64_t *ids = NULL;
	size_t nids = 0, i;
	CK_BBOOL token = CK_FALSE;
	int want_token = 1, want_session = 1;
	CK_RV rv;

	if (tmpl == NULL && count > 0)
		return CKR_ARGUMENTS_BAD;
	for (i = 0; i < count; i++) {
		const CK_ATTRIBUTE *t = &tmpl[i];

		if (t->pValue == NULL && t->ulValueLen > 0)
			return CKR_ARGUMENTS_BAD;
		switch (t->type) {
		case CKA_TOKEN:
			if (t->ulValueLen == sizeof(CK_BBOOL)) {
				token = *(CK_BBOOL *)t->pValue;
				want_token = token != CK_FALSE;
				want_session = token == CK_FALSE;
			}
			break;
		case CKA_CLASS:
			if (t->ulValueLen == sizeof(CK_ULONG)) {
				q.has_class = 1;
				q.cls = *(CK_ULONG *)t->pValue;
			}
			break;
		case CKA_KEY_TYPE:
			if (t->ulValueLen == sizeof(CK_ULONG)) {
				q.has_key_type = 1;
				q.key_type = *(CK_ULONG *)t->pValue;
			}
			break;
		case CKA_LABEL:
			q.has_label = 1;
			q.label = t->pValue;
			q.label_len = t->ulValueLen;
			break;
		case CKA_ID:
			q.has_ckid = 1;
			q.ckid = t->pValue;
			q.ckid_len = t->ulValueLen;
			break;
		case CKA_EV_GENERATION:
			/* Retired generations are found only by asking for one. */
			if (t->ulValueLen != sizeof(CK_ULONG))
				return CKR_ATTRIBUTE_VALUE_INVALID;
			f.retired = 1;
			q.has_generation = 1;
			q.generation = (int64_t)*(CK_ULONG *)t->pValue;
			break;
		}
	}
	if (want_token) {
		q.zone = s->token->id;
		q.include_private = ev_session_user(s);
		/* The store's own readers: no module lock, another process's commits seen at once. */
		rv = ev_store_obj_find_shared(ev_mod->store, &q, &ids, &nids);
		if (rv != CKR_OK)
			return rv;
		if (store_decides(tmpl, count)) {
			/* The query matched the whole template: nothing to load. */
			for (i = 0; i < nids && f.rv == CKR_OK; i++)
				push(&f, (CK_OBJECT_HANDLE)ids[i]);
			nids = 0;
		}
		for (i = 0; i < nids && f.rv == CKR_OK; i++) {
			ev_object *o;

			if (lookup(s->token, (CK_OBJECT_HANDLE)ids[i], &o) != CKR_OK)
				continue; /* gone meanwhile */
			if (visible(s, o) && ev_rwlock_rdlock(o->lock) == CKR_OK) {
				if (finds(&f, o))
					push(&f, o->handle);
				ev_rwlock_unlock(o->lock);
			}
			ev_object_put(o);
		}
		free(ids);
	}
	if (want_session && f.rv == CKR_OK) {
		rv = ev_rwlock_rdlock(ev_mod->lock);
		if (rv != CKR_OK) {
			free(f.v);
			return rv;
		}
		ev_map_each(&ev_mod->session_objects, find_session_cb, &f);
		ev_rwlock_unlock(ev_mod->lock);
	}
	if (f.rv != CKR_OK) {
		free(f.v);
		return f.rv;
	}
	free(s->found);
	s->found = f.v;
	s->nfound = f.n;
	s->pos = 0;
	s->finding = 1;
	return CKR_OK;
}

/* Which objects a drop takes out of the process. */
enum drop_kind {
	DROP_HANDLE,  /* a token object and its session copies (revoked, destroyed) */
	DROP_SESSION, /* the session objects one session created */
	DROP_PRIVATE, /* a token's private session objects (logout) */
	DROP_TOKEN,   /* every object of a token (re-initialisation) */
};

struct drop_ctx {
	enum drop_kind kind;
	CK_SESSION_HANDLE owner;
	ev_token *token;
	int private_only;
	ev_object **v;
	size_t n;
};

/* Whether a drop takes this object. */
static int
selects(const struct drop_ctx *d, CK_ULONG key, const ev_object *o)
{
	int session_object = (key & EV_SESSION_OBJECT_BIT) != 0;

	switch (d->kind) {
	case DROP_HANDLE:
		return key == d->owner || (d->private_only && session_object && o->origin == d->owner);
	case DROP_SESSION:
		return session_object && o->owner == d->owner;
	case DROP_PRIVATE:
		return session_object && o->token == d->token && o->private;
	case DROP_TOKEN:
		return o->token == d->token;
	}
	return 0;
}

static void
drop_cb(CK_ULONG key, void *val, void *arg)
{
	struct drop_ctx *d = arg;
	ev_object *o = val;

	if (!selects(d, key, o))
		return;
	if (d->v != NULL)
		d->v[d->n++] = o;
	else
		atomic_store(&o->destroyed, 1); /* no memory to unmap it: unusable all the same */
}

/* Drop an object's cached material: wiped now, or when the last call using it lets go. */
static void
wipe_key(ev_object *o)
{
	ev_key *k;

	if (ev_rwlock_wrlock(o->lock) != CKR_OK)
		return;
	k = atomic_exchange(&o->key, NULL);
	ev_rwlock_unlock(o->lock);
	ev_key_free(k);
}

/* Unmap the objects a drop selects, mark them destroyed, drop the map's references. */
static size_t
drop(struct drop_ctx *d)
{
	size_t i;

	if (ev_rwlock_wrlock(ev_mod->lock) != CKR_OK)
		return 0;
	ev_mod->drops++; /* a load under way must read the store again (lookup()) */
	d->v = calloc(ev_mod->objects.live + 1, sizeof(*d->v));
	ev_map_each(&ev_mod->objects, drop_cb, d);
	if (d->v != NULL) {
		for (i = 0; i < d->n; i++) {
			unmap_object(d->v[i]);
			atomic_store(&d->v[i]->destroyed, 1);
		}
	}
	ev_rwlock_unlock(ev_mod->lock);
	/* An operation still holding one keeps it until it ends. */
	for (i = 0; i < d->n; i++) {
		if (d->kind == DROP_HANDLE)
			wipe_key(d->v[i]);
		ev_object_put(d->v[i]);
	}
	free(d->v);
	d->v = NULL;
	return d->n;
}

void
ev_object_drop_session(CK_SESSION_HANDLE h)
{
	struct drop_ctx d = { DROP_SESSION, h, NULL, 0, NULL, 0 };

	(void)drop(&d);
}

int
ev_object_forget(CK_OBJECT_HANDLE h, int with_copies)
{
	/* private_only here means: and the session copies. */
	struct drop_ctx d = { DROP_HANDLE, h, NULL, with_copies, NULL, 0 };

	return drop(&d) > 0;
}

struct retire_ctx {
	CK_OBJECT_HANDLE origin;
	int64_t retired, destroy_at;
};

static void
retire_cb(CK_ULONG key, void *val, void *arg)
{
	const struct retire_ctx *r = arg;
	ev_object *o = val;

	(void)key;
	if (o->origin != r->origin)
		return;
	if (ev_rwlock_wrlock(o->lock) != CKR_OK)
		return;
	if (set_lifecycle(o->attrs, r->retired, r->destroy_at) == CKR_OK) {
		o->retired = r->retired;
		o->destroy_at = r->destroy_at;
	} else {
		atomic_store(&o->destroyed, 1); /* cannot show it retired: unusable instead */
	}
	ev_rwlock_unlock(o->lock);
}

/*
 * Session copies of a token key are retired with it (and destroyed with
 * it). Only session objects are walked: a rotation of many keys retires
 * each here, and the loaded token objects may be many more.
 */
static void
retire_copies(CK_OBJECT_HANDLE origin, int64_t retired, int64_t destroy_at)
{
	struct retire_ctx r = { origin, retired, destroy_at };

	if (ev_rwlock_rdlock(ev_mod->lock) != CKR_OK)
		return;
	ev_map_each(&ev_mod->session_objects, retire_cb, &r);
	ev_rwlock_unlock(ev_mod->lock);
}

/*
 * Read a token object's record again and, when it is loaded here, put it
 * in place. An object not loaded is read only when the caller needs its
 * lifecycle (always_read): *retired and *destroy_at (may be NULL) get it.
 */
static void
reload(CK_OBJECT_HANDLE h, int always_read, int64_t *retired, int64_t *destroy_at)
{
	ev_obj_rec rec = { 0 };
	ev_object *o;
	CK_RV rv;

	if (ev_rwlock_rdlock(ev_mod->lock) != CKR_OK)
		return;
	o = ev_map_get(&ev_mod->objects, h);
	if (o != NULL)
		atomic_fetch_add(&o->refs, 1);
	ev_rwlock_unlock(ev_mod->lock);
	if (o == NULL && !always_read)
		return; /* not loaded here: read fresh at first use */
	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv == CKR_OK) {
		rv = ev_store_obj_get(ev_mod->store, (int64_t)h, &rec);
		ev_mutex_unlock(ev_mod->store_lock);
	}
	if (rv == EVR_NOT_FOUND) {
		ev_object_put(o);
		if (o != NULL)
			(void)ev_object_forget(h, 0); /* gone since */
		return;
	}
	if (rv == CKR_OK && retired != NULL) {
		*retired = rec.retired;
		*destroy_at = rec.destroy_at;
	}
	if (o == NULL) {
		ev_obj_rec_clear(&rec);
		return;
	}
	if (rv == CKR_OK && is_key_class(rec.cls))
		rv = set_lifecycle(rec.attrs, rec.retired, rec.destroy_at);
	/*
	 * In place, so the object stays the one every operation holds: a
	 * later revocation finds and ends them all. The material cached
	 * stays: it is the same (a new zone key wraps it differently).
	 */
	if (rv == CKR_OK && ev_rwlock_wrlock(o->lock) == CKR_OK) {
		ev_attrs *old = o->attrs;
		unsigned char *blob = o->wrapped;
		size_t blob_len = o->wrapped_len;

		o->attrs = rec.attrs;
		rec.attrs = old; /* freed with the record */
		o->wrapped = rec.wrapped;
		o->wrapped_len = rec.wrapped_len;
		rec.wrapped = blob; /* freed with the record */
		rec.wrapped_len = blob_len;
		o->private = rec.private;
		o->retired = rec.retired;
		o->destroy_at = rec.destroy_at;
		ev_rwlock_unlock(o->lock);
	} else {
		ev_error("object %lu: changed by another process, but could not be read again",
		    (unsigned long)h);
	}
	ev_obj_rec_clear(&rec);
	ev_object_put(o);
}

void
ev_object_reload(CK_OBJECT_HANDLE h)
{
	reload(h, 0, NULL, NULL);
}

void
ev_object_drop_private(ev_token *t)
{
	struct drop_ctx d = { DROP_PRIVATE, 0, t, 1, NULL, 0 };

	(void)drop(&d);
}

void
ev_object_forget_token(ev_token *t)
{
	struct drop_ctx d = { DROP_TOKEN, 0, t, 0, NULL, 0 };

	(void)drop(&d);
}

static void
wipe_cb(CK_ULONG key, void *val, void *arg)
{
	struct drop_ctx *d = arg;
	ev_object *o = val;

	/* Only material that can be unwrapped again is dropped: session keys are their object. */
	if (o->token != d->token || !has_wrapped(o) || (d->private_only && !o->private))
		return;
	wipe_key(o);
}

void
ev_object_wipe_token(ev_token *t, int private_only)
{
	struct drop_ctx d = { DROP_TOKEN, 0, t, private_only, NULL, 0 };

	ev_map_each(&ev_mod->objects, wipe_cb, &d);
}

/*
 * A rotated key pair's CKA_ID: the SHA-1 of the SubjectPublicKeyInfo its
 * attributes hold already (made once, by prepare()).
 */
static CK_RV
id_of_spki(ev_attrs *a)
{
	const CK_ATTRIBUTE *spki = ev_attrs_get(a, CKA_PUBLIC_KEY_INFO);
	unsigned char id[20];
	unsigned int len = 0;

	if (spki == NULL || spki->ulValueLen == 0 ||
	    EVP_Digest(spki->pValue, spki->ulValueLen, id, &len, EVP_sha1(), NULL) != 1 ||
	    len != sizeof(id))
		return CKR_GENERAL_ERROR;
	return ev_attrs_set(a, CKA_ID, id, sizeof(id));
}

CK_RV
ev_object_next_generation(ev_session *s, ev_object *old, ev_key *key, CK_MECHANISM_TYPE mech,
    const void *id, size_t id_len, ev_object **out)
{
	ev_attrs *base = NULL;
	size_t i;
	CK_RV rv;

	rv = ev_rwlock_rdlock(old->lock);
	if (rv != CKR_OK) {
		ev_key_free(key);
		return rv;
	}
	base = ev_attrs_dup(old->attrs);
	ev_rwlock_unlock(old->lock);
	if (base == NULL) {
		ev_key_free(key);
		return CKR_HOST_MEMORY;
	}
	/* What the new material and the module decide afresh. */
	for (i = 0; i < base->n;) {
		CK_ATTRIBUTE_TYPE t = base->v[i].type;

		if (is_material(old->cls, t) || IN(module_set_attrs, t))
			ev_attrs_del(base, t);
		else
			i++;
	}
	rv = id != NULL ? ev_attrs_set(base, CKA_ID, id, id_len) : CKR_OK;
	if (rv == CKR_OK)
		rv = ev_attrs_set_ulong(base, CKA_EV_GENERATION, (CK_ULONG)(old->generation + 1));
	if (rv != CKR_OK) {
		ev_attrs_free(base);
		ev_key_free(key);
		return rv;
	}
	rv = prepare(s, EV_ORIGIN_ROTATE, NULL, 0, base, key, mech, out);
	ev_attrs_free(base);
	if (rv != CKR_OK)
		return rv;
	/* Not shared yet: its attributes are read and set without its lock. */
	if (id == NULL && (rv = id_of_spki((*out)->attrs)) != CKR_OK) {
		ev_object_free(*out);
		*out = NULL;
		return rv;
	}
	(*out)->previous = old->handle;
	return CKR_OK;
}

CK_RV
ev_object_publish_rotation(ev_session *s, ev_object **fresh, size_t n,
    CK_OBJECT_HANDLE *handles, CK_RV (*within)(void *), void *arg, int *committed)
{
	return publish(s, fresh, n, handles, EV_ORIGIN_ROTATE, within, arg, NULL, committed);
}

struct rewrap_ctx {
	ev_token *token;
	CK_OBJECT_HANDLE *v;
	size_t n, cap;
};

static void
rewrap_cb(CK_ULONG key, void *val, void *arg)
{
	struct rewrap_ctx *r = arg;
	ev_object *o = val;

	if (o->token == r->token && has_wrapped(o) && r->n < r->cap)
		r->v[r->n++] = (CK_OBJECT_HANDLE)key;
}

void
ev_object_rewrapped(ev_token *t)
{
	struct rewrap_ctx r = { t, NULL, 0, 0 };
	size_t i;

	if (ev_rwlock_rdlock(ev_mod->lock) != CKR_OK)
		return;
	r.cap = ev_mod->objects.live;
	r.v = calloc(r.cap + 1, sizeof(*r.v));
	if (r.v != NULL)
		ev_map_each(&ev_mod->objects, rewrap_cb, &r);
	ev_rwlock_unlock(ev_mod->lock);
	if (r.v == NULL) {
		/* Without memory to list them, forget them: each is read afresh at its next use. */
		ev_object_forget_token(t);
		return;
	}
	for (i = 0; i < r.n; i++)
		ev_object_reload(r.v[i]);
	free(r.v);
}

void
ev_object_rotated(CK_OBJECT_HANDLE h)
{
	int64_t retired = 0, destroy_at = 0;

	/* One read: the object if loaded, and its session copies, loaded here or not. */
	reload(h, 1, &retired, &destroy_at);
	if (retired != 0)
		retire_copies(h, retired, destroy_at);
}

CK_RV
ev_object_use(ev_session *s, ev_object *o, CK_ATTRIBUTE_TYPE usage, CK_MECHANISM_TYPE mech,
    const ev_key *have, ev_key **key, int *cached, int *always_auth)
{
	ev_key *k;
	CK_RV rv;

	*key = NULL;
	*cached = 0;
	*always_auth = 0;
	/* What ev_object_get(), ev_object_usable() and ev_object_key() check, in one lock. */
	rv = ev_rwlock_rdlock(o->lock);
	if (rv != CKR_OK)
		return rv;
	if (!visible(s, o))
		rv = CKR_OBJECT_HANDLE_INVALID;
	else if (!is_key_class(o->cls))
		rv = CKR_KEY_HANDLE_INVALID;
	else if (!ev_attrs_is_true(o->attrs, usage, 0) || !date_ok(o->attrs) ||
	    !retired_ok(o, usage))
		rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
	else if (!mech_allowed(o->attrs, mech))
		rv = CKR_MECHANISM_INVALID;
	else if (o->retired != 0 && (int64_t)time(NULL) >= o->destroy_at)
		rv = CKR_KEY_HANDLE_INVALID;
	if (rv == CKR_OK) {
		k = atomic_load(&o->key);
		*cached = k != NULL;
		if (k != NULL && k != have)
			*key = ev_key_ref(k);
		*always_auth = ev_attrs_is_true(o->attrs, CKA_ALWAYS_AUTHENTICATE, 0);
	}
	ev_rwlock_unlock(o->lock);
	return rv;
}
