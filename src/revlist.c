/*
 * Revocation lists (revlist.h): the JSON document inside a signed
 * envelope, read strictly. A list the authority signed with a typo (a
 * member misspelt, a number quoted, a zone 0) is refused whole rather than
 * read as something that revokes less than the authority meant; every
 * refusal says which entry and which member.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "json.h"
#include "revlist.h"
#include "signed.h"

#define DEVICE_MAX 255u
#define LABEL_MAX 255u
#define REASON_MAX 256u

/* What messages name the document. */
#define DOC "revocation list"
#define ID_EXPECT "expected hex digits, two per byte, at least one byte"

/* The strict reading every signed document gets (json.c), named as a list's. */
static CK_RV
parse_strict(const unsigned char *buf, size_t len, json_object **out, char *err, size_t errlen)
{
	char why[160] = "";
	CK_RV rv;

	rv = ev_json_parse_strict(buf, len, out, why, sizeof(why));
	if (rv != CKR_OK)
		ev_errf(err, errlen, "revocation list: %s", why);
	return rv;
}

/* Where a problem is: "sequence", "entries[3].label". */
struct where {
	char buf[64];
};

static const char *
where_doc(struct where *w, const char *member)
{
	snprintf(w->buf, sizeof(w->buf), "\"%s\"", member);
	return w->buf;
}

static const char *
where_entry(struct where *w, size_t i, const char *member)
{
	snprintf(w->buf, sizeof(w->buf), "entries[%zu].%s", i, member);
	return w->buf;
}

/* Members of an entry, and which each kind allows and requires. */
enum {
	M_KIND = 1u << 0,
	M_ZONE = 1u << 1,
	M_LABEL = 1u << 2,
	M_ID = 1u << 3,
	M_GENERATION = 1u << 4,
	M_REASON = 1u << 5,
};

static const struct {
	const char *name;
	unsigned bit;
} entry_members[] = {
    {"kind", M_KIND},
    {"zone", M_ZONE},
    {"label", M_LABEL},
    {"id", M_ID},
    {"generation", M_GENERATION},
    {"reason", M_REASON},
};

static const struct {
	const char *name;
	CK_ULONG kind;
	unsigned allowed, required;
} kinds[] = {
    {"key", EV_REVOKE_KEY, M_KIND | M_ZONE | M_LABEL | M_ID | M_GENERATION | M_REASON,
     M_KIND | M_ZONE | M_LABEL | M_REASON},
    {"zone", EV_REVOKE_ZONE, M_KIND | M_ZONE | M_REASON, M_KIND | M_ZONE | M_REASON},
    {"device", EV_REVOKE_DEVICE, M_KIND | M_REASON, M_KIND | M_REASON},
};

static CK_RV
parse_entry(json_object *o, size_t idx, ev_revoke_entry *e, char *err, size_t errlen)
{
	struct where w;
	json_object *v;
	const char *ks;
	char *label = NULL;
	unsigned present = 0;
	size_t i, k, kslen;
	char name[33];
	CK_RV rv;

	if (!json_object_is_type(o, json_type_object)) {
		ev_errf(err, errlen, "revocation list: entries[%zu]: expected an object, not %s",
			idx, json_type_to_name(json_object_get_type(o)));
		return CKR_DATA_INVALID;
	}
	v = ev_json_member(o, "kind");
	if (v == NULL) {
		ev_errf(err, errlen, "revocation list: %s: missing", where_entry(&w, idx, "kind"));
		return CKR_DATA_INVALID;
	}
	rv = ev_json_string(v, &ks, &kslen, DOC, where_entry(&w, idx, "kind"), err, errlen);
	if (rv != CKR_OK)
		return rv;
	for (k = 0; k < EV_ARRAY_SIZE(kinds); k++)
		if (kslen == strlen(kinds[k].name) && strcmp(ks, kinds[k].name) == 0)
			break;
	if (k == EV_ARRAY_SIZE(kinds)) {
		ev_errf(err, errlen,
			"revocation list: %s: \"%s\" is not a kind (key, zone or device)",
			where_entry(&w, idx, "kind"), ev_json_printable(ks, name));
		return CKR_DATA_INVALID;
	}
	e->kind = kinds[k].kind;

	json_object_object_foreach(o, key, val)
	{
		for (i = 0; i < EV_ARRAY_SIZE(entry_members); i++)
			if (strcmp(key, entry_members[i].name) == 0)
				break;
		if (i == EV_ARRAY_SIZE(entry_members)) {
			ev_errf(err, errlen, "revocation list: entries[%zu]: unknown member \"%s\"",
				idx, ev_json_printable(key, name));
			return CKR_DATA_INVALID;
		}
		if (!(kinds[k].allowed & entry_members[i].bit)) {
			ev_errf(err, errlen, "revocation list: %s: not allowed in a \"%s\" entry",
				where_entry(&w, idx, entry_members[i].name), kinds[k].name);
			return CKR_DATA_INVALID;
		}
		/* json-c holds null as no object: it must not read as an absent member. */
		if (val == NULL) {
			ev_errf(err, errlen, "revocation list: %s: null is not a value here",
				where_entry(&w, idx, entry_members[i].name));
			return CKR_DATA_INVALID;
		}
		present |= entry_members[i].bit;
	}
	for (i = 0; i < EV_ARRAY_SIZE(entry_members); i++)
		if ((kinds[k].required & entry_members[i].bit) &&
		    !(present & entry_members[i].bit)) {
			ev_errf(err, errlen,
				"revocation list: %s: missing (required in a \"%s\" entry)",
				where_entry(&w, idx, entry_members[i].name), kinds[k].name);
			return CKR_DATA_INVALID;
		}

	if ((v = ev_json_member(o, "zone")) != NULL) {
		rv = ev_json_int(v, 1, EV_JSON_SAFE_MAX, &e->zone, DOC,
				 where_entry(&w, idx, "zone"), err, errlen);
		if (rv != CKR_OK)
			return rv;
	}
	if ((v = ev_json_member(o, "label")) != NULL) {
		rv = ev_json_str(v, 1, LABEL_MAX, 0, &label, &e->label_len, DOC,
				 where_entry(&w, idx, "label"), err, errlen);
		if (rv != CKR_OK)
			return rv;
		e->label = (unsigned char *)label;
	}
	if ((v = ev_json_member(o, "id")) != NULL) {
		rv = ev_json_hex(v, 1, SIZE_MAX, ID_EXPECT, &e->ckid, &e->ckid_len, DOC,
				 where_entry(&w, idx, "id"), err, errlen);
		if (rv != CKR_OK)
			return rv;
	}
	if ((v = ev_json_member(o, "generation")) != NULL) {
		rv = ev_json_int(v, 1, EV_JSON_SAFE_MAX, &e->generation, DOC,
				 where_entry(&w, idx, "generation"), err, errlen);
		if (rv != CKR_OK)
			return rv;
	}
	v = ev_json_member(o, "reason");
	return ev_json_str(v, 1, REASON_MAX, 0, &e->reason, NULL, DOC,
			   where_entry(&w, idx, "reason"), err, errlen);
}

static const char *const doc_members[] = {"version", "device", "sequence", "issued_at", "entries"};

CK_RV
ev_revlist_parse(const unsigned char *doc, size_t len, ev_revlist **out, char *err, size_t errlen)
{
	json_object *root = NULL, *v, *entries;
	ev_revlist *l = NULL;
	struct where w;
	int64_t version = 0;
	size_t i, n;
	char name[33];
	CK_RV rv;

	if (out != NULL)
		*out = NULL;
	if ((doc == NULL && len > 0) || out == NULL) {
		ev_errf(err, errlen, "bad arguments");
		return CKR_ARGUMENTS_BAD;
	}
	if (len > EV_SIGNED_MAX) {
		ev_errf(err, errlen, "revocation list of %zu bytes is over the limit of %u bytes",
			len, EV_SIGNED_MAX);
		return CKR_DATA_LEN_RANGE;
	}
	rv = parse_strict(doc, len, &root, err, errlen);
	if (rv != CKR_OK)
		return rv;
	rv = CKR_DATA_INVALID;
	if (!json_object_is_type(root, json_type_object)) {
		ev_errf(err, errlen, "revocation list: expected a JSON object");
		goto out;
	}
	json_object_object_foreach(root, key, val)
	{
		for (i = 0; i < EV_ARRAY_SIZE(doc_members); i++)
			if (strcmp(key, doc_members[i]) == 0)
				break;
		if (i == EV_ARRAY_SIZE(doc_members)) {
			ev_errf(err, errlen, "revocation list: unknown member \"%s\"",
				ev_json_printable(key, name));
			goto out;
		}
		if (val == NULL) {
			ev_errf(err, errlen, "revocation list: %s: null is not a value here",
				where_doc(&w, doc_members[i]));
			goto out;
		}
	}
	for (i = 0; i < EV_ARRAY_SIZE(doc_members); i++)
		if (ev_json_member(root, doc_members[i]) == NULL) {
			ev_errf(err, errlen, "revocation list: %s: missing",
				where_doc(&w, doc_members[i]));
			goto out;
		}
	if (ev_json_int(ev_json_member(root, "version"), INT64_MIN, INT64_MAX, &version, DOC,
			where_doc(&w, "version"), err, errlen) != CKR_OK)
		goto out;
	if (version != 1) {
		ev_errf(err, errlen, "revocation list: \"version\": %lld is not supported (1 is)",
			(long long)version);
		goto out;
	}
	l = calloc(1, sizeof(*l));
	if (l == NULL)
		goto oom;
	rv = ev_json_str(ev_json_member(root, "device"), 1, DEVICE_MAX, 0, &l->device, NULL, DOC,
			 where_doc(&w, "device"), err, errlen);
	if (rv != CKR_OK)
		goto out;
	rv = CKR_DATA_INVALID;
	if (ev_json_int(ev_json_member(root, "sequence"), 1, EV_JSON_SAFE_MAX, &l->sequence, DOC,
			where_doc(&w, "sequence"), err, errlen) != CKR_OK ||
	    ev_json_int(ev_json_member(root, "issued_at"), 0, EV_JSON_SAFE_MAX, &l->issued_at, DOC,
			where_doc(&w, "issued_at"), err, errlen) != CKR_OK)
		goto out;
	entries = ev_json_member(root, "entries");
	if (!json_object_is_type(entries, json_type_array)) {
		ev_errf(err, errlen, "revocation list: \"entries\": expected an array, not %s",
			json_type_to_name(json_object_get_type(entries)));
		goto out;
	}
	n = json_object_array_length(entries);
	if (n > EV_REVLIST_MAX_ENTRIES) {
		ev_errf(err, errlen, "revocation list: \"entries\": %zu entries, at most %u", n,
			EV_REVLIST_MAX_ENTRIES);
		goto out;
	}
	l->entries = calloc(n > 0 ? n : 1, sizeof(*l->entries));
	if (l->entries == NULL)
		goto oom;
	for (i = 0; i < n; i++) {
		/* Counted as it goes, so that _free() frees what one entry got before failing. */
		l->n = i + 1;
		v = json_object_array_get_idx(entries, i);
		rv = parse_entry(v, i, &l->entries[i], err, errlen);
		if (rv != CKR_OK)
			goto out;
	}
	l->n = n;
	*out = l;
	l = NULL; /* transferred */
	rv = CKR_OK;
	goto out;
oom:
	ev_errf(err, errlen, "out of memory");
	rv = CKR_HOST_MEMORY;
out:
	ev_revlist_free(l);
	json_object_put(root);
	return rv;
}

CK_RV
ev_revlist_load(const unsigned char *buf, size_t len, const unsigned char pk[32], ev_revlist **out,
		char *err, size_t errlen)
{
	unsigned char *payload = NULL;
	size_t plen = 0;
	ev_revlist *l = NULL;
	CK_RV rv;

	if (out != NULL)
		*out = NULL;
	if (out == NULL) {
		ev_errf(err, errlen, "bad arguments");
		return CKR_ARGUMENTS_BAD;
	}
	rv = ev_signed_open(buf, len, EV_SIGNED_REVOCATION, pk, &payload, &plen, err, errlen);
	if (rv != CKR_OK)
		return rv;
	rv = ev_revlist_parse(payload, plen, &l, err, errlen);
	free(payload);
	if (rv != CKR_OK)
		return rv;
	ev_revlist_digest(buf, len, l->digest);
	*out = l;
	return CKR_OK;
}

void
ev_revlist_digest(const unsigned char *buf, size_t len, unsigned char out[32])
{
	crypto_generichash(out, 32, buf, len, NULL, 0);
}

void
ev_revlist_free(ev_revlist *l)
{
	size_t i;

	if (l == NULL)
		return;
	for (i = 0; i < l->n; i++) {
		free(l->entries[i].label);
		free(l->entries[i].ckid);
		free(l->entries[i].reason);
	}
	free(l->entries);
	free(l->device);
	free(l);
}
