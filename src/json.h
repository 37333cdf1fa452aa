/*
 * Strict JSON for signed documents (envelopes, revocation lists, and the
 * attestation documents to come), read with json-c.
 */
#ifndef EV_JSON_H
#define EV_JSON_H

#include <json-c/json.h>

#include "common.h"

/*
 * One JSON text, all of len (blanks after it allowed): json-c's strict
 * mode, plus what it lets through refused: a NUL byte, a single-quoted
 * string, a raw control character in a string, trailing data, and a
 * member given twice in one object (json-c keeps the last, so a signer
 * who reviewed the first value would sign the second). *out is the
 * caller's (json_object_put). CKR_DATA_INVALID or CKR_DATA_LEN_RANGE with
 * err saying what and where, CKR_HOST_MEMORY.
 */
CK_RV ev_json_parse_strict(const unsigned char *buf, size_t len, json_object **out, char *err,
    size_t errlen) EV_MUST_CHECK;

/* A member name from the input, made safe to print: at most 32 bytes, no controls. */
const char *ev_json_printable(const char *s, char out[33]);

/*
 * Readers of one member's value, for the documents' parsers (revlist.c,
 * attest.c). A refusal is written to err as "<doc>: <where>: <why>": doc
 * names the document ("revocation list"), where the value in it
 * ("\"device\"", "entries[3].label"). All answer CKR_OK, CKR_DATA_INVALID
 * (err says why) or, where they allocate, CKR_HOST_MEMORY ("out of
 * memory"); on failure *out is left as it was.
 */

/* JSON's interoperable integers: up to 2^53, exact in every reader. */
#define EV_JSON_SAFE_MAX 9007199254740992LL

/* The member name of object o; NULL when o has none or holds null there (json-c's null). */
json_object *ev_json_member(json_object *o, const char *name);

/*
 * An integer in [min, max] (json-c saturates what does not fit an
 * int64, so such values are refused as out of range).
 */
CK_RV ev_json_int(json_object *v, int64_t min, int64_t max, int64_t *out, const char *doc,
    const char *where, char *err, size_t errlen) EV_MUST_CHECK;

/* A string as it is, not copied: *s (NUL-terminated, valid while v is) and *len. */
CK_RV ev_json_string(json_object *v, const char **s, size_t *len, const char *doc,
    const char *where, char *err, size_t errlen) EV_MUST_CHECK;

/* What ev_json_str requires of the bytes, and how it says a length is wrong. */
#define EV_JSON_PRINTABLE 0x1u       /* printable UTF-8 (EV_UTF8_PRINTABLE), not only no NUL */
#define EV_JSON_EMPTY_AS_LENGTH 0x2u /* "0 bytes, expected ...", not "empty" */

/*
 * A string of minlen..maxlen bytes without NUL (and the rules of flags),
 * copied: *out malloc'ed and NUL-terminated, the caller's; *outlen (when
 * not NULL) its length.
 */
CK_RV ev_json_str(json_object *v, size_t minlen, size_t maxlen, unsigned flags, char **out,
    size_t *outlen, const char *doc, const char *where, char *err, size_t errlen) EV_MUST_CHECK;

/*
 * Hex digits, two per byte, of minlen..maxlen bytes (never none), decoded: *out
 * malloc'ed, the caller's, *outlen bytes. Not a string: "expected a hex
 * string, not <type>"; anything else wrong: expect, the caller's words
 * for the rule ("expected hex digits, two per byte, at least one byte").
 */
CK_RV ev_json_hex(json_object *v, size_t minlen, size_t maxlen, const char *expect,
    unsigned char **out, size_t *outlen, const char *doc, const char *where, char *err,
    size_t errlen) EV_MUST_CHECK;

/*
 * An array of min..max elements (noun names them: "zones"): CKR_OK with
 * *n, or CKR_DATA_INVALID ("<doc>: <where>: 0 zones, expected 1 to 8").
 */
CK_RV ev_json_array(json_object *v, size_t min, size_t max, const char *noun, size_t *n,
    const char *doc, const char *where, char *err, size_t errlen) EV_MUST_CHECK;

/* A member a document may have (ev_json_document()). */
typedef struct ev_json_member_def {
	const char *name;
	int required;
} ev_json_member_def;

/*
 * The start of reading a document of version 1 (attestation results,
 * TPM reference policies): at most max bytes, strict JSON
 * (ev_json_parse_strict), an object, no member but those of defs, none
 * null, every required one present, and "version" (which defs must
 * name) equal to 1. *root is the caller's (json_object_put). Errors as
 * "<doc>: <why>": CKR_DATA_LEN_RANGE, CKR_DATA_INVALID, CKR_HOST_MEMORY.
 */
CK_RV ev_json_document(const unsigned char *buf, size_t len, size_t max,
    const ev_json_member_def *defs, size_t ndefs, const char *doc, json_object **root, char *err,
    size_t errlen) EV_MUST_CHECK;

#endif
