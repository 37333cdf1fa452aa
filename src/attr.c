#include <stdlib.h>
#include <string.h>

#include "attr.h"

ev_attrs *
ev_attrs_new(void)
{
	return calloc(1, sizeof(ev_attrs));
}

void
ev_attrs_free(ev_attrs *a)
{
	size_t i;

	if (a == NULL)
		return;
	for (i = 0; i < a->n; i++)
		free(a->v[i].pValue);
	free(a->v);
	free(a);
}

/* Index of type, or of where it would be inserted (*found tells which). */
static size_t
find_index(const ev_attrs *a, CK_ATTRIBUTE_TYPE type, int *found)
{
	size_t lo = 0, hi = a->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (a->v[mid].type == type) {
			*found = 1;
			return mid;
		}
		if (a->v[mid].type < type)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = 0;
	return lo;
}

CK_RV
ev_attrs_set(ev_attrs *a, CK_ATTRIBUTE_TYPE type, const void *val, CK_ULONG len)
{
	void *copy = NULL;
	size_t i;
	int found;

	if (len > 0) {
		if (val == NULL)
			return CKR_ATTRIBUTE_VALUE_INVALID;
		copy = malloc(len);
		if (copy == NULL)
			return CKR_HOST_MEMORY;
		memcpy(copy, val, len);
	}
	i = find_index(a, type, &found);
	if (found) {
		free(a->v[i].pValue);
		a->v[i].pValue = copy;
		a->v[i].ulValueLen = len;
		return CKR_OK;
	}
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 16;
		CK_ATTRIBUTE *v = realloc(a->v, cap * sizeof(*v));

		if (v == NULL) {
			free(copy);
			return CKR_HOST_MEMORY;
		}
		a->v = v;
		a->cap = cap;
	}
	memmove(&a->v[i + 1], &a->v[i], (a->n - i) * sizeof(a->v[0]));
	a->v[i].type = type;
	a->v[i].pValue = copy;
	a->v[i].ulValueLen = len;
	a->n++;
	return CKR_OK;
}

CK_RV
ev_attrs_set_bool(ev_attrs *a, CK_ATTRIBUTE_TYPE type, CK_BBOOL v)
{
	return ev_attrs_set(a, type, &v, sizeof(v));
}

CK_RV
ev_attrs_set_ulong(ev_attrs *a, CK_ATTRIBUTE_TYPE type, CK_ULONG v)
{
	return ev_attrs_set(a, type, &v, sizeof(v));
}

CK_RV
ev_attrs_default(ev_attrs *a, CK_ATTRIBUTE_TYPE type, const void *val, CK_ULONG len)
{
	if (ev_attrs_get(a, type) != NULL)
		return CKR_OK;
	return ev_attrs_set(a, type, val, len);
}

CK_RV
ev_attrs_default_bool(ev_attrs *a, CK_ATTRIBUTE_TYPE type, CK_BBOOL v)
{
	return ev_attrs_default(a, type, &v, sizeof(v));
}

CK_RV
ev_attrs_default_ulong(ev_attrs *a, CK_ATTRIBUTE_TYPE type, CK_ULONG v)
{
	return ev_attrs_default(a, type, &v, sizeof(v));
}

void
ev_attrs_del(ev_attrs *a, CK_ATTRIBUTE_TYPE type)
{
	int found;
	size_t i = find_index(a, type, &found);

	if (!found)
		return;
	free(a->v[i].pValue);
	memmove(&a->v[i], &a->v[i + 1], (a->n - i - 1) * sizeof(a->v[0]));
	a->n--;
}

const CK_ATTRIBUTE *
ev_attrs_get(const ev_attrs *a, CK_ATTRIBUTE_TYPE type)
{
	int found;
	size_t i = find_index(a, type, &found);

	return found ? &a->v[i] : NULL;
}

ev_attrs *
ev_attrs_dup(const ev_attrs *a)
{
	ev_attrs *d = ev_attrs_new();
	size_t i;

	if (d == NULL)
		return NULL;
	for (i = 0; i < a->n; i++) {
		if (ev_attrs_set(d, a->v[i].type, a->v[i].pValue, a->v[i].ulValueLen) != CKR_OK) {
			ev_attrs_free(d);
			return NULL;
		}
	}
	return d;
}

CK_RV
ev_attrs_from_template(const CK_ATTRIBUTE *tmpl, CK_ULONG count, ev_attrs **out)
{
	ev_attrs *a;
	CK_ULONG i;
	CK_RV rv = CKR_OK;

	*out = NULL;
	if (tmpl == NULL && count > 0)
		return CKR_ARGUMENTS_BAD;
	a = ev_attrs_new();
	if (a == NULL)
		return CKR_HOST_MEMORY;
	for (i = 0; i < count; i++) {
		const CK_ATTRIBUTE *t = &tmpl[i];
		const CK_ATTRIBUTE *prev = ev_attrs_get(a, t->type);

		if (t->pValue == NULL && t->ulValueLen > 0) {
			rv = CKR_ATTRIBUTE_VALUE_INVALID;
			goto out;
		}
		if (t->ulValueLen == CK_UNAVAILABLE_INFORMATION) {
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

			if (t->ulValueLen % sizeof(CK_ATTRIBUTE) != 0) {
				rv = CKR_ATTRIBUTE_VALUE_INVALID;
				goto out;
			}
			rv = ev_attrs_pack(t->pValue, t->ulValueLen / sizeof(CK_ATTRIBUTE), &packed,
			    &plen);
			if (rv == CKR_OK)
				rv = ev_attrs_set(a, t->type, packed, plen);
			free(packed);
			if (rv != CKR_OK)
				goto out;
			continue;
		}
		if (prev != NULL) {
			/* The same type twice must agree, or the template contradicts itself. */
			if (prev->ulValueLen != t->ulValueLen ||
			    (t->ulValueLen > 0 && memcmp(prev->pValue, t->pValue, t->ulValueLen) != 0)) {
				rv = CKR_TEMPLATE_INCONSISTENT;
				goto out;
			}
			continue;
		}
		rv = ev_attrs_set(a, t->type, t->pValue, t->ulValueLen);
		if (rv != CKR_OK)
			goto out;
	}
	*out = a;
	a = NULL; /* transferred */
out:
	ev_attrs_free(a);
	return rv;
}

CK_RV
ev_attrs_bool(const ev_attrs *a, CK_ATTRIBUTE_TYPE type, CK_BBOOL *out)
{
	const CK_ATTRIBUTE *at = ev_attrs_get(a, type);

	if (at == NULL)
		return EVR_NOT_FOUND;
	if (at->ulValueLen != sizeof(CK_BBOOL))
		return CKR_ATTRIBUTE_VALUE_INVALID;
	*out = *(const CK_BBOOL *)at->pValue ? CK_TRUE : CK_FALSE;
	return CKR_OK;
}

CK_RV
ev_attrs_ulong(const ev_attrs *a, CK_ATTRIBUTE_TYPE type, CK_ULONG *out)
{
	const CK_ATTRIBUTE *at = ev_attrs_get(a, type);

	if (at == NULL)
		return EVR_NOT_FOUND;
	if (at->ulValueLen != sizeof(CK_ULONG))
		return CKR_ATTRIBUTE_VALUE_INVALID;
	memcpy(out, at->pValue, sizeof(CK_ULONG));
	return CKR_OK;
}

int
ev_attrs_is_true(const ev_attrs *a, CK_ATTRIBUTE_TYPE type, int dflt)
{
	CK_BBOOL b;

	if (ev_attrs_bool(a, type, &b) != CKR_OK)
		return dflt;
	return b == CK_TRUE;
}

int
ev_attrs_match(const ev_attrs *a, const CK_ATTRIBUTE *tmpl, CK_ULONG count)
{
	CK_ULONG i;

	for (i = 0; i < count; i++) {
		const CK_ATTRIBUTE *at = ev_attrs_get(a, tmpl[i].type);

		if (at == NULL || at->ulValueLen != tmpl[i].ulValueLen)
			return 0;
		if (at->ulValueLen > 0 &&
		    (tmpl[i].pValue == NULL || memcmp(at->pValue, tmpl[i].pValue, at->ulValueLen) != 0))
			return 0;
	}
	return 1;
}

int
ev_attr_type_is_template(CK_ATTRIBUTE_TYPE type)
{
	return type == CKA_WRAP_TEMPLATE || type == CKA_UNWRAP_TEMPLATE ||
	    type == CKA_DERIVE_TEMPLATE;
}

int
ev_attr_type_is_bool(CK_ATTRIBUTE_TYPE type)
{
	switch (type) {
	case CKA_TOKEN:
	case CKA_PRIVATE:
	case CKA_TRUSTED:
	case CKA_SENSITIVE:
	case CKA_ENCRYPT:
	case CKA_DECRYPT:
	case CKA_WRAP:
	case CKA_UNWRAP:
	case CKA_SIGN:
	case CKA_SIGN_RECOVER:
	case CKA_VERIFY:
	case CKA_VERIFY_RECOVER:
	case CKA_DERIVE:
	case CKA_EXTRACTABLE:
	case CKA_LOCAL:
	case CKA_NEVER_EXTRACTABLE:
	case CKA_ALWAYS_SENSITIVE:
	case CKA_MODIFIABLE:
	case CKA_COPYABLE:
	case CKA_DESTROYABLE:
	case CKA_ALWAYS_AUTHENTICATE:
	case CKA_WRAP_WITH_TRUSTED:
		return 1;
	default:
		return 0;
	}
}

int
ev_attr_type_is_ulong(CK_ATTRIBUTE_TYPE type)
{
	switch (type) {
	case CKA_CLASS:
	case CKA_KEY_TYPE:
	case CKA_CERTIFICATE_TYPE:
	case CKA_CERTIFICATE_CATEGORY:
	case CKA_JAVA_MIDP_SECURITY_DOMAIN:
	case CKA_NAME_HASH_ALGORITHM:
	case CKA_MODULUS_BITS:
	case CKA_VALUE_BITS:
	case CKA_VALUE_LEN:
	case CKA_KEY_GEN_MECHANISM:
		return 1;
	default:
		return 0;
	}
}

int
ev_attr_len_ok(CK_ATTRIBUTE_TYPE type, CK_ULONG len)
{
	if (ev_attr_type_is_bool(type))
		return len == sizeof(CK_BBOOL);
	if (ev_attr_type_is_ulong(type))
		return len == sizeof(CK_ULONG);
	switch (type) {
	case CKA_ALLOWED_MECHANISMS:
		return len % sizeof(CK_MECHANISM_TYPE) == 0;
	case CKA_START_DATE:
	case CKA_END_DATE:
		return len == 0 || len == sizeof(CK_DATE);
	default:
		return 1;
	}
}

int
ev_attr_is_secret(CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type)
{
	switch (type) {
	case CKA_VALUE:
		return cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY;
	case CKA_PRIVATE_EXPONENT:
	case CKA_PRIME_1:
	case CKA_PRIME_2:
	case CKA_EXPONENT_1:
	case CKA_EXPONENT_2:
	case CKA_COEFFICIENT:
		return cls == CKO_PRIVATE_KEY;
	default:
		return 0;
	}
}

static void
put_be64(unsigned char *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

static uint64_t
get_be64(const unsigned char *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

CK_RV
ev_attrs_pack(const CK_ATTRIBUTE *tmpl, CK_ULONG count, unsigned char **out, CK_ULONG *len)
{
	unsigned char *buf, *p;
	size_t total = 0;
	CK_ULONG i;

	*out = NULL;
	*len = 0;
	if (tmpl == NULL && count > 0)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	for (i = 0; i < count; i++) {
		const CK_ATTRIBUTE *t = &tmpl[i];

		if (ev_attr_type_is_template(t->type) || (t->pValue == NULL && t->ulValueLen > 0) ||
		    !ev_attr_len_ok(t->type, t->ulValueLen) || t->ulValueLen > (1UL << 20))
			return CKR_ATTRIBUTE_VALUE_INVALID;
		total += 16 + t->ulValueLen;
	}
	buf = malloc(total + 1);
	if (buf == NULL)
		return CKR_HOST_MEMORY;
	p = buf;
	for (i = 0; i < count; i++) {
		put_be64(p, tmpl[i].type);
		put_be64(p + 8, tmpl[i].ulValueLen);
		if (tmpl[i].ulValueLen > 0)
			memcpy(p + 16, tmpl[i].pValue, tmpl[i].ulValueLen);
		p += 16 + tmpl[i].ulValueLen;
	}
	*out = buf;
	*len = (CK_ULONG)total;
	return CKR_OK;
}

CK_RV
ev_attrs_unpack(const void *buf, CK_ULONG len, ev_attrs **out)
{
	const unsigned char *p = buf;
	ev_attrs *a;
	CK_RV rv = CKR_OK;

	*out = NULL;
	if (p == NULL && len > 0)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	a = ev_attrs_new();
	if (a == NULL)
		return CKR_HOST_MEMORY;
	while (len > 0) {
		uint64_t type, vlen;

		if (len < 16) {
			rv = CKR_ATTRIBUTE_VALUE_INVALID;
			break;
		}
		type = get_be64(p);
		vlen = get_be64(p + 8);
		if (vlen > len - 16 || ev_attr_type_is_template((CK_ATTRIBUTE_TYPE)type)) {
			rv = CKR_ATTRIBUTE_VALUE_INVALID;
			break;
		}
		rv = ev_attrs_set(a, (CK_ATTRIBUTE_TYPE)type, p + 16, (CK_ULONG)vlen);
		if (rv != CKR_OK)
			break;
		p += 16 + vlen;
		len -= 16 + (CK_ULONG)vlen;
	}
	if (rv != CKR_OK) {
		ev_attrs_free(a);
		return rv;
	}
	*out = a;
	return CKR_OK;
}
