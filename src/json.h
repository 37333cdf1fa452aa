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

#endif
