/*
 * Strict JSON reading for documents from outside (json.h): json-c parses,
 * this file only refuses what json-c's strict mode still lets through.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>

#include "json.h"

static void
set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

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
			set_err(err, errlen, "NUL byte at offset %zu", i);
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
				set_err(err, errlen, "control character in a string at offset %zu",
					i);
				return -1;
			}
			continue;
		}
		if (c == '"')
			in_str = 1;
		else if (c == '\'') {
			set_err(err, errlen, "single-quoted string at offset %zu", i);
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
		set_err(err, errlen, "too large");
		return CKR_DATA_LEN_RANGE;
	}
	if (scan_text(buf, len, &colons, why, sizeof(why)) != 0) {
		set_err(err, errlen, "not valid JSON: %s", why);
		return CKR_DATA_INVALID;
	}
	tok = json_tokener_new();
	if (tok == NULL) {
		set_err(err, errlen, "out of memory");
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
			set_err(err, errlen, "not valid JSON: the text ends early (%zu bytes)",
				len);
		else
			set_err(err, errlen, "not valid JSON: %s at offset %zu",
				json_tokener_error_desc(je), end);
		return CKR_DATA_INVALID;
	}
	while (end < len &&
	       (buf[end] == ' ' || buf[end] == '\t' || buf[end] == '\n' || buf[end] == '\r'))
		end++;
	if (end != len) {
		json_object_put(o);
		set_err(err, errlen, "not valid JSON: trailing data at offset %zu", end);
		return CKR_DATA_INVALID;
	}
	if (count_members(o) != colons) {
		json_object_put(o);
		set_err(err, errlen, "not valid JSON: a member is given twice in an object");
		return CKR_DATA_INVALID;
	}
	*out = o;
	return CKR_OK;
}
