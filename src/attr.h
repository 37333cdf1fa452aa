/*
 * Attribute lists: an object's attributes, or a caller's template copied
 * in. Values are owned by the list. Lists stay sorted by type, so lookups
 * are a binary search.
 *
 * Secret attribute values (the CKA_VALUE of a private or secret key, the
 * RSA private components) never live in an ev_attrs: they stay in the
 * key's secure memory (see key.h).
 */
#ifndef EV_ATTR_H
#define EV_ATTR_H

#include "common.h"

typedef struct ev_attrs {
	CK_ATTRIBUTE *v; /* sorted by type; pValue malloc'ed, or NULL when ulValueLen == 0 */
	size_t n;
	size_t cap;
} ev_attrs;

/* An empty list, or NULL when out of memory. */
ev_attrs *ev_attrs_new(void);

/* Free the list and its values. NULL is a no-op. */
void ev_attrs_free(ev_attrs *a);

/* A deep copy, or NULL when out of memory. */
ev_attrs *ev_attrs_dup(const ev_attrs *a);

/*
 * Copy a caller's template in (array attributes packed, see
 * ev_attrs_pack). Returns CKR_ARGUMENTS_BAD for a NULL
 * template with a non-zero count, CKR_ATTRIBUTE_VALUE_INVALID for a NULL
 * value with a non-zero length, CKR_TEMPLATE_INCONSISTENT for a type given
 * twice with different values, CKR_HOST_MEMORY.
 */
CK_RV ev_attrs_from_template(const CK_ATTRIBUTE *tmpl, CK_ULONG count, ev_attrs **out);

/* Set (replace or add) an attribute; copies len bytes from val. */
CK_RV ev_attrs_set(ev_attrs *a, CK_ATTRIBUTE_TYPE type, const void *val, CK_ULONG len);
CK_RV ev_attrs_set_bool(ev_attrs *a, CK_ATTRIBUTE_TYPE type, CK_BBOOL v);
CK_RV ev_attrs_set_ulong(ev_attrs *a, CK_ATTRIBUTE_TYPE type, CK_ULONG v);

/* Set only if absent. */
CK_RV ev_attrs_default_bool(ev_attrs *a, CK_ATTRIBUTE_TYPE type, CK_BBOOL v);
CK_RV ev_attrs_default_ulong(ev_attrs *a, CK_ATTRIBUTE_TYPE type, CK_ULONG v);
CK_RV ev_attrs_default(ev_attrs *a, CK_ATTRIBUTE_TYPE type, const void *val, CK_ULONG len);

/* Remove an attribute if present. */
void ev_attrs_del(ev_attrs *a, CK_ATTRIBUTE_TYPE type);

/* The attribute, or NULL if absent. The pointer is valid until the next change. */
const CK_ATTRIBUTE *ev_attrs_get(const ev_attrs *a, CK_ATTRIBUTE_TYPE type);

/*
 * Typed reads. Return CKR_OK and store the value, EVR_NOT_FOUND when absent,
 * CKR_ATTRIBUTE_VALUE_INVALID when the stored length is wrong for the type.
 */
CK_RV ev_attrs_bool(const ev_attrs *a, CK_ATTRIBUTE_TYPE type, CK_BBOOL *out);
CK_RV ev_attrs_ulong(const ev_attrs *a, CK_ATTRIBUTE_TYPE type, CK_ULONG *out);

/* The boolean's value, or dflt when absent or malformed. */
int ev_attrs_is_true(const ev_attrs *a, CK_ATTRIBUTE_TYPE type, int dflt);

/* 1 if every attribute of tmpl is present in a with an equal value. */
int ev_attrs_match(const ev_attrs *a, const CK_ATTRIBUTE *tmpl, CK_ULONG count) EV_MUST_CHECK;

/*
 * Array attributes (CKA_WRAP_TEMPLATE, CKA_UNWRAP_TEMPLATE,
 * CKA_DERIVE_TEMPLATE) hold a nested template. A list keeps it packed:
 * for each nested attribute, its type and length as 8 bytes big-endian
 * each, then its value. ev_attrs_pack() checks the nested template
 * (CKR_ATTRIBUTE_VALUE_INVALID for a nested array, a NULL value with a
 * length, or a boolean or integer of the wrong size); ev_attrs_unpack()
 * refuses anything malformed with CKR_ATTRIBUTE_VALUE_INVALID.
 */
CK_RV ev_attrs_pack(const CK_ATTRIBUTE *tmpl, CK_ULONG count, unsigned char **out, CK_ULONG *len);
CK_RV ev_attrs_unpack(const void *buf, CK_ULONG len, ev_attrs **out) EV_MUST_CHECK;

/*
 * Whether an attribute type holds a nested template (CKA_WRAP_TEMPLATE,
 * CKA_UNWRAP_TEMPLATE, CKA_DERIVE_TEMPLATE). CKA_ALLOWED_MECHANISMS also
 * has CKF_ARRAY_ATTRIBUTE set, but holds CK_MECHANISM_TYPEs: not a template.
 */
int ev_attr_type_is_template(CK_ATTRIBUTE_TYPE type);

/* Whether an attribute type holds a CK_BBOOL / a CK_ULONG by the spec. */
int ev_attr_type_is_bool(CK_ATTRIBUTE_TYPE type);
int ev_attr_type_is_ulong(CK_ATTRIBUTE_TYPE type);

/*
 * Whether len fits an attribute type's value: a CK_BBOOL, a CK_ULONG, a
 * whole number of CK_MECHANISM_TYPEs (CKA_ALLOWED_MECHANISMS), a CK_DATE
 * or nothing (CKA_START_DATE, CKA_END_DATE). Other types: any length.
 * Callers answer CKR_ATTRIBUTE_VALUE_INVALID when it does not.
 */
int ev_attr_len_ok(CK_ATTRIBUTE_TYPE type, CK_ULONG len);

/*
 * Whether (class, type) is secret key material, kept only in secure memory:
 * CKA_VALUE of private and secret keys, the RSA private components.
 */
int ev_attr_is_secret(CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type);

#endif
