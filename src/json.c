/*
 * Strict JSON reading for documents from outside (json.h): json-c parses,
 * this file only refuses what json-c's strict mode still lets through.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "json.h"

/* A member name from the input, made safe to print: at most 32 bytes, no controls. */
const char *
ev_json_printable(const char *s, char out[33])
{
	size_t i;

	for (i = 0; i < 32 && s[i] != '\0'; i++)
		out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	out[i] = '\0';
	return out;
}

/*
 * Scan the JSON text for what json-c's strict mode still lets through: a
 * NUL byte, a single-quoted string, a raw control character in a string.
 * *colons gets the number of ':' outside strings, which is the number of
 * object members written in the text (json-c refuses comments in strict
 * mode, so there is nowhere else a colon can be).
 */
static int
scan_text(const unsigned char *buf, size_t len, size_t *colons, char *err, size_t errlen)
{
	size_t i, n = 0;
	int in_str = 0, esc = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = buf[i];

		if (c == '\0') {
			ev_errf(err, errlen, "NUL byte at offset %zu", i);
			return -1;
		}
		if (in_str) {
			if (esc)
				esc = 0;
			else if (c == '\\')
				esc = 1;
			else if (c == '"')
				in_str = 0;
			else if (c < 0x20) {
				ev_errf(err, errlen, "control character in a string at offset %zu",
					i);
				return -1;
			}
			continue;
		}
		if (c == '"')
			in_str = 1;
		else if (c == '\'') {
			ev_errf(err, errlen, "single-quoted string at offset %zu", i);
			return -1;
		} else if (c == ':')
			n++;
	}
	*colons = n;
	return 0;
}

/* The members of every object in a parsed tree. */
static size_t
count_members(json_object *o)
{
	size_t n = 0, i;

	if (json_object_is_type(o, json_type_object)) {
		json_object_object_foreach(o, name, v)
		{
			(void)name;
			n += 1 + count_members(v);
		}
	} else if (json_object_is_type(o, json_type_array)) {
		for (i = 0; i < json_object_array_length(o); i++)
			n += count_members(json_object_array_get_idx(o, i));
	}
	return n;
}

/*
 * One JSON text, all of len (blanks after it allowed). json-c's strict
 * mode refuses comments, trailing commas and trailing garbage, but lets
 * a second member of the same name replace the first: a signer who
 * reviewed the first value would sign the second. Members written in
 * the text are counted by scan_text; any that did not make it into the
 * tree were duplicates.
 */
CK_RV
ev_json_parse_strict(const unsigned char *buf, size_t len, json_object **out, char *err, size_t errlen)
{
	struct json_tokener *tok;
	json_object *o;
	enum json_tokener_error je;
	size_t colons = 0, end;
	char why[96];

	*out = NULL;
	if (len > INT_MAX) {
		ev_errf(err, errlen, "too large");
		return CKR_DATA_LEN_RANGE;
	}
	if (scan_text(buf, len, &colons, why, sizeof(why)) != 0) {
		ev_errf(err, errlen, "not valid JSON: %s", why);
		return CKR_DATA_INVALID;
	}
	tok = json_tokener_new();
	if (tok == NULL) {
		ev_errf(err, errlen, "out of memory");
		return CKR_HOST_MEMORY;
	}
	/* Trailing characters are told apart below, with a clearer message. */
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
					JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, (const char *)buf, (int)len);
	je = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (o == NULL) {
		if (je == json_tokener_continue || je == json_tokener_success)
			ev_errf(err, errlen, "not valid JSON: the text ends early (%zu bytes)",
				len);
		else
			ev_errf(err, errlen, "not valid JSON: %s at offset %zu",
				json_tokener_error_desc(je), end);
		return CKR_DATA_INVALID;
	}
	while (end < len &&
	       (buf[end] == ' ' || buf[end] == '\t' || buf[end] == '\n' || buf[end] == '\r'))
		end++;
	if (end != len) {
		json_object_put(o);
		ev_errf(err, errlen, "not valid JSON: trailing data at offset %zu", end);
		return CKR_DATA_INVALID;
	}
	if (count_members(o) != colons) {
		json_object_put(o);
		ev_errf(err, errlen, "not valid JSON: a member is given twice in an object");
		return CKR_DATA_INVALID;
	}
	*out = o;
	return CKR_OK;
}

json_object *
ev_json_member(json_object *o, const char *name)
{
	json_object *v = NULL;

	return json_object_object_get_ex(o, name, &v) ? v : NULL;
}

CK_RV
ev_json_int(json_object *v, int64_t min, int64_t max, int64_t *out, const char *doc,
	    const char *where, char *err, size_t errlen)
{
	int64_t x;

	if (!json_object_is_type(v, json_type_int)) {
		ev_errf(err, errlen, "%s: %s: expected an integer, not %s", doc, where,
			json_type_to_name(json_object_get_type(v)));
		return CKR_DATA_INVALID;
	}
	x = json_object_get_int64(v);
	if (x < min || x > max) {
		ev_errf(err, errlen, "%s: %s: %lld is out of range (%lld to %lld)", doc, where,
			(long long)x, (long long)min, (long long)max);
		return CKR_DATA_INVALID;
	}
	*out = x;
	return CKR_OK;
}

CK_RV
ev_json_string(json_object *v, const char **s, size_t *len, const char *doc, const char *where,
	       char *err, size_t errlen)
{
	if (!json_object_is_type(v, json_type_string)) {
		ev_errf(err, errlen, "%s: %s: expected a string, not %s", doc, where,
			json_type_to_name(json_object_get_type(v)));
		return CKR_DATA_INVALID;
	}
	*s = json_object_get_string(v);
	*len = (size_t)json_object_get_string_len(v);
	return CKR_OK;
}

CK_RV
ev_json_str(json_object *v, size_t minlen, size_t maxlen, unsigned flags, char **out,
	    size_t *outlen, const char *doc, const char *where, char *err, size_t errlen)
{
	const char *s;
	char *copy;
	size_t n;
	CK_RV rv;

	rv = ev_json_string(v, &s, &n, doc, where, err, errlen);
	if (rv != CKR_OK)
		return rv;
	if (n < minlen || n > maxlen) {
		if (n == 0 && !(flags & EV_JSON_EMPTY_AS_LENGTH))
			ev_errf(err, errlen, "%s: %s: empty", doc, where);
		else
			ev_errf(err, errlen, "%s: %s: %zu bytes, expected %zu to %zu", doc, where,
				n, minlen, maxlen);
		return CKR_DATA_INVALID;
	}
	if (flags & EV_JSON_PRINTABLE) {
		if (!ev_utf8_valid((const unsigned char *)s, n, EV_UTF8_PRINTABLE)) {
			ev_errf(err, errlen,
				"%s: %s: not printable UTF-8 (control character, NUL or bad "
				"encoding)",
				doc, where);
			return CKR_DATA_INVALID;
		}
	} else if (memchr(s, '\0', n) != NULL) {
		ev_errf(err, errlen, "%s: %s: holds a NUL character", doc, where);
		return CKR_DATA_INVALID;
	}
	copy = malloc(n + 1);
	if (copy == NULL) {
		ev_errf(err, errlen, "out of memory");
		return CKR_HOST_MEMORY;
	}
	memcpy(copy, s, n + 1);
	*out = copy;
	if (outlen != NULL)
		*outlen = n;
	return CKR_OK;
}

CK_RV
ev_json_hex(json_object *v, size_t minlen, size_t maxlen, const char *expect, unsigned char **out,
	    size_t *outlen, const char *doc, const char *where, char *err, size_t errlen)
{
	unsigned char *bin;
	const char *s;
	size_t n, i, blen = 0;

	if (!json_object_is_type(v, json_type_string)) {
		ev_errf(err, errlen, "%s: %s: expected a hex string, not %s", doc, where,
			json_type_to_name(json_object_get_type(v)));
		return CKR_DATA_INVALID;
	}
	s = json_object_get_string(v);
	n = (size_t)json_object_get_string_len(v);
	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
		      (s[i] >= 'A' && s[i] <= 'F')))
			break;
	if (i != n || n % 2 != 0 || n / 2 < minlen || n / 2 > maxlen || n == 0) {
		ev_errf(err, errlen, "%s: %s: %s", doc, where, expect);
		return CKR_DATA_INVALID;
	}
	bin = malloc(n / 2);
	if (bin == NULL) {
		ev_errf(err, errlen, "out of memory");
		return CKR_HOST_MEMORY;
	}
	if (sodium_hex2bin(bin, n / 2, s, n, NULL, &blen, NULL) != 0 || blen != n / 2) {
		free(bin);
		ev_errf(err, errlen, "%s: %s: bad hex", doc, where);
		return CKR_DATA_INVALID;
	}
	*out = bin;
	*outlen = blen;
	return CKR_OK;
}

CK_RV
ev_json_document(const unsigned char *buf, size_t len, size_t max, const ev_json_member_def *defs,
		 size_t ndefs, const char *doc, json_object **root, char *err, size_t errlen)
{
	json_object *o = NULL;
	int64_t version = 0;
	char name[33], why[160] = "", where[40];
	size_t i;
	CK_RV rv;

	*root = NULL;
	if (len > max) {
		ev_errf(err, errlen, "%s of %zu bytes is over the limit of %zu bytes", doc, len,
			max);
		return CKR_DATA_LEN_RANGE;
	}
	rv = ev_json_parse_strict(buf, len, &o, why, sizeof(why));
	if (rv != CKR_OK) {
		ev_errf(err, errlen, "%s: %s", doc, why);
		return rv;
	}
	rv = CKR_DATA_INVALID;
	if (!json_object_is_type(o, json_type_object)) {
		ev_errf(err, errlen, "%s: expected a JSON object", doc);
		goto out;
	}
	json_object_object_foreach(o, key, val)
	{
		for (i = 0; i < ndefs; i++)
			if (strcmp(key, defs[i].name) == 0)
				break;
		if (i == ndefs) {
			ev_errf(err, errlen, "%s: unknown member \"%s\"", doc,
				ev_json_printable(key, name));
			goto out;
		}
		/* json-c holds null as no object: it must not read as an absent member. */
		if (val == NULL) {
			ev_errf(err, errlen, "%s: \"%s\": null is not a value here", doc,
				defs[i].name);
			goto out;
		}
	}
	for (i = 0; i < ndefs; i++)
		if (defs[i].required && ev_json_member(o, defs[i].name) == NULL) {
			ev_errf(err, errlen, "%s: \"%s\": missing", doc, defs[i].name);
			goto out;
		}
	snprintf(where, sizeof(where), "\"version\"");
	if (ev_json_int(ev_json_member(o, "version"), INT64_MIN, INT64_MAX, &version, doc, where,
			err, errlen) != CKR_OK)
		goto out;
	if (version != 1) {
		ev_errf(err, errlen, "%s: \"version\": %lld is not supported (1 is)", doc,
			(long long)version);
		goto out;
	}
	*root = o;
	o = NULL; /* transferred */
	rv = CKR_OK;
out:
	json_object_put(o);
	return rv;
}

CK_RV
ev_json_array(json_object *v, size_t min, size_t max, const char *noun, size_t *n,
	      const char *doc, const char *where, char *err, size_t errlen)
{
	size_t len;

	if (!json_object_is_type(v, json_type_array)) {
		ev_errf(err, errlen, "%s: %s: expected an array, not %s", doc, where,
			json_type_to_name(json_object_get_type(v)));
		return CKR_DATA_INVALID;
	}
	len = json_object_array_length(v);
	if (len < min || len > max) {
		ev_errf(err, errlen, "%s: %s: %zu %s, expected %zu to %zu", doc, where, len, noun,
			min, max);
		return CKR_DATA_INVALID;
	}
	*n = len;
	return CKR_OK;
}
