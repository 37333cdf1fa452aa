/*
 * edgevault rotate, edgevault policy: key and zone key rotation, and the
 * zones' policies, through the module's admin interface (1.1).
 *
 *   rotate key --zone N --label LABEL [--id HEX] [--user-pin-file FILE]
 *   rotate zone --zone N [--user-pin-file FILE]
 *   rotate due [--zone N] [--user-pin-file FILE]
 *   rotate zone-key --zone N [--so-pin-file FILE]
 *   zone rebind --zone N [--so-pin-file FILE] [--json]
 *   policy show [--zone N] [--json]
 *
 * Keys rotate as the zone's user, zone keys as its SO, in read/write
 * sessions; the module appraises attestation evidence afresh at every
 * rotation, so a rotation may be refused (CKR_FUNCTION_REJECTED) even in a
 * zone whose logins need no evidence. `rotate due` without --zone logs in
 * to every zone with a rotation period using the same user PIN, and stops
 * at the first zone that refuses the PIN (each refusal counts towards
 * locking a zone's user).
 *
 * Progress goes to stdout, a line per key, flushed at once (a rotation of
 * many keys takes a while, and an operator watching it, or a log, sees each
 * key as it is done); failures to stderr, each naming the key and the CKR.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

/* Keys read per C_FindObjects call. */
#define FIND_BATCH 64

/* What a message says about a key: class, type, label, generation. */
struct key_desc {
	CK_OBJECT_CLASS cls;
	CK_KEY_TYPE type;
	CK_ULONG generation;
	char *label; /* as shown: escaped, without the quotes */
};

/* A batch of rotations and its counts. */
struct batch {
	CK_FUNCTION_LIST_3_0 *f;
	EV_ADMIN_FUNCTION_LIST *admin;
	unsigned long zone;
	int progress; /* "[i/n]" before each line */
	unsigned long rotated, failed;
};

static void
rotate_usage(void)
{
	fprintf(stderr,
	    "usage: edgevault rotate key --zone N --label LABEL [--id HEX] [--user-pin-file FILE]\n"
	    "       edgevault rotate zone --zone N [--user-pin-file FILE]\n"
	    "       edgevault rotate due [--zone N] [--user-pin-file FILE]\n"
	    "       edgevault rotate zone-key --zone N [--so-pin-file FILE]\n");
}

static void
policy_usage(void)
{
	fprintf(stderr, "usage: edgevault policy show [--zone N] [--json]\n");
}

/*
 * Errors that are the zone's or the session's, not the key's: the next
 * key would meet them too, so a batch stops at the first.
 */
static int
zone_wide(CK_RV rv)
{
	switch (rv) {
	case CKR_FUNCTION_REJECTED:
	case CKR_USER_NOT_LOGGED_IN:
	case CKR_SESSION_HANDLE_INVALID:
	case CKR_SESSION_CLOSED:
	case CKR_SESSION_READ_ONLY:
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_DEVICE_REMOVED:
	case CKR_CRYPTOKI_NOT_INITIALIZED:
		return 1;
	}
	return 0;
}

/* The admin interface, version 1.1 or later (1.0 lacks these functions). */
static EV_ADMIN_FUNCTION_LIST *
admin_11(void)
{
	EV_ADMIN_FUNCTION_LIST *a = admin_interface();

	if (a != NULL && a->version.minor < 1) {
		fprintf(stderr, "edgevault: the module's admin interface is version %u.%u: "
		    "it has no rotation (1.1 needed)\n", a->version.major, a->version.minor);
		return NULL;
	}
	return a;
}

/*
 * The zones: slots whose token is present and initialised (not the free
 * slot). *out malloc'ed. 0, or 1 after saying why.
 */
static int
zone_list(CK_FUNCTION_LIST_3_0 *f, CK_SLOT_ID **out, CK_ULONG *nout)
{
	CK_SLOT_ID *slots = NULL;
	CK_ULONG n = 0, i, k = 0;
	CK_RV rv = CKR_BUFFER_TOO_SMALL;
	int tries;

	/* A zone may be made between the two calls: ask again. */
	for (tries = 0; tries < 4 && rv == CKR_BUFFER_TOO_SMALL; tries++) {
		free(slots);
		slots = NULL;
		rv = f->C_GetSlotList(CK_TRUE, NULL, &n);
		if (rv != CKR_OK)
			break;
		slots = calloc(n + 1, sizeof(*slots));
		if (slots == NULL) {
			rv = CKR_HOST_MEMORY;
			break;
		}
		rv = f->C_GetSlotList(CK_TRUE, slots, &n);
	}
	if (rv != CKR_OK) {
		fprintf(stderr, "edgevault: cannot list the zones: %s\n", ckr_name(rv));
		free(slots);
		return 1;
	}
	for (i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;

		if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
		    (ti.flags & CKF_TOKEN_INITIALIZED))
			slots[k++] = slots[i];
	}
	*out = slots;
	*nout = k;
	return 0;
}

/* An attribute's bytes, any length; *out malloc'ed (NUL after them). */
static CK_RV
get_bytes(CK_FUNCTION_LIST_3_0 *f, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj,
    CK_ATTRIBUTE_TYPE type, unsigned char **out, CK_ULONG *len)
{
	CK_ATTRIBUTE a = { type, NULL, 0 };
	CK_RV rv;

	*out = NULL;
	*len = 0;
	rv = f->C_GetAttributeValue(h, obj, &a, 1);
	if (rv != CKR_OK)
		return rv;
	if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
		return CKR_ATTRIBUTE_TYPE_INVALID;
	a.pValue = malloc(a.ulValueLen + 1);
	if (a.pValue == NULL)
		return CKR_HOST_MEMORY;
	rv = f->C_GetAttributeValue(h, obj, &a, 1);
	if (rv != CKR_OK) {
		free(a.pValue);
		return rv;
	}
	((unsigned char *)a.pValue)[a.ulValueLen] = '\0';
	*out = a.pValue;
	*len = a.ulValueLen;
	return CKR_OK;
}

/*
 * Bytes as print_text(quoted) shows them, in a string a message to
 * either stream can hold; NULL when out of memory.
 */
static char *
escaped(const unsigned char *p, size_t n)
{
	int utf8 = is_utf8(p, n);
	char *s = malloc(4 * n + 1), *o = s;
	size_t i;

	if (s == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		if (p[i] == '"' || p[i] == '\\') {
			*o++ = '\\';
			*o++ = (char)p[i];
		} else if (p[i] < 0x20 || p[i] == 0x7f || (p[i] >= 0x80 && !utf8))
			o += sprintf(o, "\\x%02x", p[i]);
		else
			*o++ = (char)p[i];
	}
	*o = '\0';
	return s;
}

static void
key_desc_clear(struct key_desc *k)
{
	free(k->label);
	k->label = NULL;
}

/* What to call a key in messages. */
static CK_RV
key_desc_read(CK_FUNCTION_LIST_3_0 *f, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj,
    struct key_desc *k)
{
	CK_ATTRIBUTE a[] = {
		{ CKA_CLASS, &k->cls, sizeof(k->cls) },
		{ CKA_KEY_TYPE, &k->type, sizeof(k->type) },
		{ CKA_EV_GENERATION, &k->generation, sizeof(k->generation) },
	};
	unsigned char *label = NULL;
	CK_ULONG len = 0;
	CK_RV rv;

	memset(k, 0, sizeof(*k));
	rv = f->C_GetAttributeValue(h, obj, a, sizeof(a) / sizeof(a[0]));
	if (rv == CKR_OK)
		rv = get_bytes(f, h, obj, CKA_LABEL, &label, &len);
	if (rv == CKR_OK) {
		k->label = escaped(label, len);
		if (k->label == NULL)
			rv = CKR_HOST_MEMORY;
	}
	free(label);
	return rv;
}

static const char *
class_name(CK_OBJECT_CLASS c)
{
	switch (c) {
	case CKO_PRIVATE_KEY:
		return "private key";
	case CKO_PUBLIC_KEY:
		return "public key";
	case CKO_SECRET_KEY:
		return "secret key";
	}
	return "object";
}

static const char *
type_name(CK_KEY_TYPE t)
{
	static char buf[32];

	switch (t) {
	case CKK_RSA:
		return "RSA";
	case CKK_EC:
		return "EC";
	case CKK_EC_EDWARDS:
		return "EdDSA";
	case CKK_EC_MONTGOMERY:
		return "Montgomery EC";
	case CKK_AES:
		return "AES";
	case CKK_GENERIC_SECRET:
		return "generic secret";
	}
	snprintf(buf, sizeof(buf), "key type 0x%lx", (unsigned long)t);
	return buf;
}

/* "[i/n] " when the batch shows progress. */
static void
prefix(FILE *fp, const struct batch *b, size_t i, size_t n)
{
	if (b->progress)
		fprintf(fp, "[%zu/%zu] ", i + 1, n);
}

/* Say that key i of n (k: its old generation) rotated to nk. */
static void
said_rotated(struct batch *b, CK_SESSION_HANDLE h, const struct key_desc *k, CK_OBJECT_HANDLE nk,
    size_t i, size_t n)
{
	CK_ULONG gen, idlen = 0;
	unsigned char *id = NULL;
	CK_ATTRIBUTE a = { CKA_EV_GENERATION, &gen, sizeof(gen) };

	b->rotated++;
	/* Rotated: what is read back now only completes the line. */
	if (b->f->C_GetAttributeValue(h, nk, &a, 1) != CKR_OK)
		gen = k->generation + 1;
	(void)get_bytes(b->f, h, nk, CKA_ID, &id, &idlen);
	prefix(stdout, b, i, n);
	printf("rotated \"%s\" (%s, %s): generation %lu -> %lu, new id ",
	    k->label != NULL ? k->label : "?", class_name(k->cls), type_name(k->type),
	    (unsigned long)k->generation, (unsigned long)gen);
	if (id != NULL && idlen > 0)
		print_hex(id, idlen);
	else
		printf("(unknown)");
	putchar('\n');
	fflush(stdout);
	free(id);
}

/*
 * Rotate key i of n and say so. 0 rotated, 1 failed, 2 failed for a
 * reason the next key would meet too (the batch stops).
 */
static int
rotate_one(struct batch *b, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, size_t i, size_t n)
{
	struct key_desc k;
	CK_OBJECT_HANDLE nk = CK_INVALID_HANDLE;
	CK_RV rv;

	rv = key_desc_read(b->f, h, key, &k);
	if (rv != CKR_OK) {
		fprintf(stderr, "edgevault: ");
		prefix(stderr, b, i, n);
		fprintf(stderr, "zone %lu, object %lu: cannot read its attributes: %s", b->zone,
		    (unsigned long)key, ckr_name(rv));
		explain_zone_refusal(rv, b->zone);
		fputc('\n', stderr);
		key_desc_clear(&k);
		b->failed++;
		return zone_wide(rv) ? 2 : 1;
	}
	rv = b->admin->EV_RotateKey(h, key, &nk);
	if (rv != CKR_OK) {
		fprintf(stderr, "edgevault: ");
		prefix(stderr, b, i, n);
		fprintf(stderr, "\"%s\" (%s, %s) generation %lu: not rotated: %s", k.label,
		    class_name(k.cls), type_name(k.type), (unsigned long)k.generation,
		    ckr_name(rv));
		explain_zone_refusal(rv, b->zone);
		fputc('\n', stderr);
		key_desc_clear(&k);
		b->failed++;
		return zone_wide(rv) ? 2 : 1;
	}
	said_rotated(b, h, &k, nk, i, n);
	key_desc_clear(&k);
	return 0;
}

/* Rotate keys i..n one by one; a zone-wide refusal stops the batch (the rest count as failed). */
static void
rotate_each(struct batch *b, CK_SESSION_HANDLE h, const CK_OBJECT_HANDLE *keys, size_t i,
    size_t n)
{
	for (; i < n; i++) {
		if (rotate_one(b, h, keys[i], i, n) != 2)
			continue;
		if (i + 1 < n) {
			fprintf(stderr, "edgevault: zone %lu: stopped; %zu key(s) not tried\n",
			    b->zone, n - i - 1);
			b->failed += n - i - 1;
		}
		break;
	}
}

/* Keys per EV_RotateKeys call: the progress lines come between calls. */
#define ROTATE_BATCH 1024

/*
 * Rotate keys, by EV_RotateKeys (admin interface 1.4) in batches: one
 * appraisal of the evidence per batch, and one sync per few hundred
 * keys. A batch the module refuses for a key's sake is tried again
 * key by key from where it stopped, so that each key's fate is told.
 */
static void
rotate_keys(struct batch *b, CK_SESSION_HANDLE h, const CK_OBJECT_HANDLE *keys, size_t n)
{
	CK_OBJECT_HANDLE nk[ROTATE_BATCH];
	CK_ULONG done, j;
	size_t off, len;
	struct key_desc k;
	CK_RV rv;

	if (b->admin->version.minor < 4 || b->admin->EV_RotateKeys == NULL) {
		rotate_each(b, h, keys, 0, n);
		return;
	}
	for (off = 0; off < n; off += len) {
		len = n - off < ROTATE_BATCH ? n - off : ROTATE_BATCH;
		done = 0;
		rv = b->admin->EV_RotateKeys(h, (CK_OBJECT_HANDLE_PTR)&keys[off], (CK_ULONG)len, nk,
		    &done);
		for (j = 0; j < done; j++) {
			/* The old generation stays readable: it names the key. */
			if (key_desc_read(b->f, h, keys[off + j], &k) != CKR_OK)
				key_desc_clear(&k); /* said without its label */
			said_rotated(b, h, &k, nk[j], off + j, n);
			key_desc_clear(&k);
		}
		if (rv == CKR_OK)
			continue;
		if (zone_wide(rv)) {
			fprintf(stderr, "edgevault: zone %lu: not rotated: %s", b->zone,
			    ckr_name(rv));
			explain_zone_refusal(rv, b->zone);
			fprintf(stderr, "; %zu key(s) not tried\n", n - off - done);
			b->failed += n - off - done;
			return;
		}
		/* Which key, and whether the others of the batch rotate: one by one. */
		rotate_each(b, h, keys, off + done, off + len);
	}
}

/* "N rotated, M failed", on stdout after the progress lines. */
static void
summary(const struct batch *b, unsigned long zones_failed)
{
	printf("%lu rotated, %lu failed", b->rotated, b->failed);
	if (zones_failed > 0)
		printf(", %lu zone(s) not reached", zones_failed);
	putchar('\n');
}

/* EV_RotationCandidates, whole; *out malloc'ed. */
static CK_RV
candidates(EV_ADMIN_FUNCTION_LIST *admin, CK_SESSION_HANDLE h, CK_ULONG which,
    CK_OBJECT_HANDLE **out, CK_ULONG *nout)
{
	CK_OBJECT_HANDLE *keys = NULL;
	CK_ULONG n = 0;
	CK_RV rv = CKR_BUFFER_TOO_SMALL;
	int tries;

	/* Keys may be made between the two calls: ask again. */
	for (tries = 0; tries < 4 && rv == CKR_BUFFER_TOO_SMALL; tries++) {
		free(keys);
		keys = NULL;
		rv = admin->EV_RotationCandidates(h, which, NULL, &n);
		if (rv != CKR_OK)
			break;
		keys = calloc(n + 1, sizeof(*keys));
		if (keys == NULL) {
			rv = CKR_HOST_MEMORY;
			break;
		}
		rv = admin->EV_RotationCandidates(h, which, keys, &n);
	}
	if (rv != CKR_OK) {
		free(keys);
		return rv;
	}
	*out = keys;
	*nout = n;
	return CKR_OK;
}

/* Current keys of class cls with this label (and CKA_ID), appended to *keys. */
static CK_RV
find_keys(CK_FUNCTION_LIST_3_0 *f, CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls, const char *label,
    unsigned char *id, size_t idlen, CK_OBJECT_HANDLE **keys, size_t *n)
{
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, (void *)label, (CK_ULONG)strlen(label) },
		{ CKA_ID, id, (CK_ULONG)idlen },
	};
	CK_OBJECT_HANDLE batch[FIND_BATCH], *nk;
	CK_ULONG got = 0;
	CK_RV rv, frv;

	rv = f->C_FindObjectsInit(h, t, id != NULL ? 3 : 2);
	if (rv != CKR_OK)
		return rv;
	do {
		rv = f->C_FindObjects(h, batch, FIND_BATCH, &got);
		if (rv != CKR_OK || got == 0)
			break;
		nk = realloc(*keys, (*n + got) * sizeof(**keys));
		if (nk == NULL) {
			rv = CKR_HOST_MEMORY;
			break;
		}
		*keys = nk;
		memcpy(*keys + *n, batch, got * sizeof(batch[0]));
		*n += got;
	} while (got == FIND_BATCH);
	frv = f->C_FindObjectsFinal(h);
	return rv != CKR_OK ? rv : frv;
}

static int
is_candidate(CK_OBJECT_HANDLE k, const CK_OBJECT_HANDLE *c, CK_ULONG n)
{
	CK_ULONG i;

	for (i = 0; i < n; i++)
		if (c[i] == k)
			return 1;
	return 0;
}

/* rotate key: the keys with a label (and CKA_ID), as found by C_FindObjects. */
static int
rotate_by_label(struct batch *b, CK_SESSION_HANDLE h, const char *label, unsigned char *id,
    size_t idlen)
{
	CK_OBJECT_HANDLE *found = NULL, *cand = NULL;
	CK_ULONG ncand = 0;
	size_t nfound = 0, i, k;
	char *shown = NULL;
	CK_RV rv;

	/* Public keys rotate with their private key. */
	rv = find_keys(b->f, h, CKO_PRIVATE_KEY, label, id, idlen, &found, &nfound);
	if (rv == CKR_OK)
		rv = find_keys(b->f, h, CKO_SECRET_KEY, label, id, idlen, &found, &nfound);
	if (rv != CKR_OK) {
		fprintf(stderr, "edgevault: cannot search zone %lu: %s\n", b->zone, ckr_name(rv));
		goto out;
	}
	shown = escaped((const unsigned char *)label, strlen(label));
	if (shown == NULL) {
		fprintf(stderr, "edgevault: out of memory\n");
		goto out;
	}
	if (nfound == 0) {
		fprintf(stderr, "edgevault: zone %lu has no private or secret key labelled \"%s\"",
		    b->zone, shown);
		if (id != NULL) {
			fprintf(stderr, " with id ");
			for (i = 0; i < idlen; i++)
				fprintf(stderr, "%02x", id[i]);
		}
		fputc('\n', stderr);
		goto out;
	}
	/*
	 * Token copies and session objects carry labels too, but only the
	 * keys the zone made rotate (a copy retires with its original).
	 */
	rv = candidates(b->admin, h, EV_ROTATE_ALL, &cand, &ncand);
	if (rv != CKR_OK) {
		fprintf(stderr, "edgevault: cannot list the rotatable keys of zone %lu: %s\n",
		    b->zone, ckr_name(rv));
		goto out;
	}
	for (i = 0, k = 0; i < nfound; i++) {
		if (is_candidate(found[i], cand, ncand))
			found[k++] = found[i];
	}
	if (k < nfound)
		fprintf(stderr, "edgevault: %zu key(s) labelled \"%s\" are copies or session "
		    "objects: they do not rotate by themselves\n", nfound - k, shown);
	if (k == 0) {
		fprintf(stderr, "edgevault: zone %lu has no rotatable key labelled \"%s\"\n",
		    b->zone, shown);
		goto out;
	}
	rotate_keys(b, h, found, k);
out:
	free(shown);
	free(found);
	free(cand);
	return rv == CKR_OK && b->rotated > 0 && b->failed == 0 ? 0 : 1;
}

/*
 * A login refused for the PIN itself: the same PIN would be refused by
 * every zone, and each refusal counts towards locking that zone's user.
 */
static int
pin_refused(CK_RV rv)
{
	return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE || rv == CKR_PIN_LOCKED;
}

/*
 * rotate due: one zone. 0 done (or nothing due); 1 after saying why the
 * zone was not reached; 2 the same, and no other zone is to be tried: there
 * is no PIN, or the zone refused it. The PIN is read at the first zone
 * that needs it.
 */
static int
rotate_due_zone(struct batch *b, const char *pin_file, ev_secret **pin, int all, int *usage)
{
	EV_ZONE_POLICY pol;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE *keys = NULL;
	CK_ULONG n = 0;
	CK_RV rv;
	int usage_err = 0;

	rv = b->admin->EV_GetZonePolicy(b->zone, &pol);
	if (rv == CKR_SLOT_ID_INVALID || rv == CKR_TOKEN_NOT_PRESENT) {
		if (all)
			return 0; /* revoked since the list was read */
		fprintf(stderr, "edgevault: no zone %lu (%s)\n", b->zone, ckr_name(rv));
		return 1;
	}
	if (rv != CKR_OK) {
		fprintf(stderr, "edgevault: cannot read the policy of zone %lu: %s\n", b->zone,
		    ckr_name(rv));
		return 1;
	}
	if (pol.ulRotationPeriod == 0) {
		/* Never due: no need to log in to know. */
		if (!all)
			printf("zone %lu: no rotation period; no key is due\n", b->zone);
		return 0;
	}
	if (*pin == NULL) {
		*pin = get_pin(CKU_USER, pin_file, b->zone, &usage_err);
		if (*pin == NULL) {
			*usage = usage_err;
			return 2;
		}
	}
	rv = open_zone_session(b->f, b->zone, ZS_RW | ZS_SAY_NO_ZONE, CKU_USER, *pin, &h);
	if (rv != CKR_OK)
		return pin_refused(rv) ? 2 : 1;
	rv = candidates(b->admin, h, EV_ROTATE_DUE, &keys, &n);
	if (rv != CKR_OK) {
		fprintf(stderr, "edgevault: cannot list the keys due in zone %lu: %s\n", b->zone,
		    ckr_name(rv));
		close_zone_session(b->f, h);
		return 1;
	}
	if (n > 0) {
		printf("zone %lu: %lu key(s) due\n", b->zone, (unsigned long)n);
		fflush(stdout);
		rotate_keys(b, h, keys, n);
	} else if (!all)
		printf("zone %lu: no key due\n", b->zone);
	free(keys);
	close_zone_session(b->f, h);
	return 0;
}

static int
rotate_due(struct batch *b, const char *pin_file, int have_zone, int *usage)
{
	CK_SLOT_ID *zones = NULL;
	CK_ULONG nzones = 0, i;
	unsigned long not_reached = 0;
	ev_secret *pin = NULL;
	int r;

	if (have_zone) {
		if (rotate_due_zone(b, pin_file, &pin, 0, usage) != 0)
			not_reached++;
	} else {
		if (zone_list(b->f, &zones, &nzones) != 0)
			return 1;
		for (i = 0; i < nzones; i++) {
			b->zone = zones[i];
			r = rotate_due_zone(b, pin_file, &pin, 1, usage);
			if (r == 0)
				continue;
			not_reached++;
			if (r != 2)
				continue;
			/* Without a PIN, or with one refused, no zone gets another try. */
			if (i + 1 < nzones)
				fprintf(stderr, "edgevault: stopped at zone %lu: %lu zone(s) after it "
				    "not tried (the same user PIN is used for every zone)\n", b->zone,
				    (unsigned long)(nzones - i - 1));
			break;
		}
		free(zones);
	}
	ev_secret_free(pin);
	if (*usage)
		return 2;
	if (b->rotated + b->failed > 0)
		summary(b, not_reached);
	else if (!have_zone && not_reached == 0)
		printf("no key due\n");
	return b->failed == 0 && not_reached == 0 ? 0 : 1;
}

/* rotate zone-key; *pin (the SO's) is wiped and freed once the SO is logged in, or not. */
static int
rotate_zone_key(struct batch *b, ev_secret **pin)
{
	CK_SESSION_HANDLE h;
	CK_ULONG count = 0;
	CK_RV rv;

	rv = open_zone_session(b->f, b->zone, ZS_RW | ZS_SAY_NO_ZONE, CKU_SO, *pin, &h);
	ev_secret_free(*pin);
	*pin = NULL;
	if (rv != CKR_OK)
		return 1;
	rv = b->admin->EV_RotateZoneKey(h, &count);
	close_zone_session(b->f, h);
	if (rv != CKR_OK) {
		fprintf(stderr, "edgevault: zone %lu: zone key not rotated: %s", b->zone,
		    ckr_name(rv));
		explain_zone_refusal(rv, b->zone);
		fputc('\n', stderr);
		return 1;
	}
	printf("zone %lu: zone key rotated, %lu keys wrapped again\n", b->zone,
	    (unsigned long)count);
	return 0;
}

int
cmd_rotate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "zone", required_argument, NULL, 'z' },
		{ "label", required_argument, NULL, 'l' },
		{ "id", required_argument, NULL, 'i' },
		{ "user-pin-file", required_argument, NULL, 'u' },
		{ "so-pin-file", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	enum { KEY, ZONE, DUE, ZONE_KEY } what;
	const char *sub = argc > 0 ? argv[0] : NULL;
	const char *zone_s = NULL, *label = NULL, *id_s = NULL, *user_pin = NULL, *so_pin = NULL;
	struct batch b = { 0 };
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE *keys = NULL;
	CK_ULONG n = 0;
	unsigned char *id = NULL;
	size_t idlen = 0;
	ev_secret *pin = NULL;
	char cmd[32];
	void *dl = NULL;
	int c, usage_err = 0, rc = 1;
	CK_RV rv;

	if (sub != NULL && strcmp(sub, "key") == 0)
		what = KEY;
	else if (sub != NULL && strcmp(sub, "zone") == 0)
		what = ZONE;
	else if (sub != NULL && strcmp(sub, "due") == 0)
		what = DUE;
	else if (sub != NULL && strcmp(sub, "zone-key") == 0)
		what = ZONE_KEY;
	else {
		fprintf(stderr, "edgevault: unknown command: rotate%s%s\n", sub ? " " : "",
		    sub ? sub : "");
		rotate_usage();
		return 2;
	}
	snprintf(cmd, sizeof(cmd), "rotate %s", sub);
	sub_begin();
	while ((c = sub_option(cmd, argc, argv, opts)) != -1) {
		switch (c) {
		case 'z':
			zone_s = optarg;
			break;
		case 'l':
			label = optarg;
			break;
		case 'i':
			id_s = optarg;
			break;
		case 'u':
			user_pin = optarg;
			break;
		case 's':
			so_pin = optarg;
			break;
		default:
			rotate_usage();
			return 2;
		}
	}
	/* Each subcommand takes its own options only. */
	if (optind != argc || (zone_s == NULL && what != DUE) ||
	    ((label == NULL) != (what != KEY)) || (id_s != NULL && what != KEY) ||
	    (user_pin != NULL && what == ZONE_KEY) || (so_pin != NULL && what != ZONE_KEY)) {
		rotate_usage();
		return 2;
	}
	if (zone_s != NULL && parse_zone(zone_s, &b.zone) != 0)
		return 2;
	if (label != NULL && (strlen(label) == 0 || strlen(label) > 255)) {
		fprintf(stderr, "edgevault: --label: 1 to 255 bytes\n");
		return 2;
	}
	if (id_s != NULL && parse_hex(id_s, &id, &idlen) != 0) {
		fprintf(stderr, "edgevault: --id %s: expected hex, two digits per byte\n", id_s);
		return 2;
	}

	/* rotate due reads the PIN only once a zone has a rotation period. */
	if (what != DUE) {
		pin = get_pin(what == ZONE_KEY ? CKU_SO : CKU_USER,
		    what == ZONE_KEY ? so_pin : user_pin, b.zone, &usage_err);
		if (pin == NULL) {
			rc = usage_err ? 2 : 1;
			goto out;
		}
	}
	b.f = open_module(&dl);
	if (b.f == NULL)
		goto out;
	b.admin = admin_11();
	if (b.admin == NULL)
		goto out;
	b.progress = what != KEY;
	switch (what) {
	case ZONE_KEY:
		rc = rotate_zone_key(&b, &pin);
		break;
	case DUE:
		rc = rotate_due(&b, user_pin, zone_s != NULL, &usage_err);
		break;
	case KEY:
	case ZONE:
		rv = open_zone_session(b.f, b.zone, ZS_RW | ZS_SAY_NO_ZONE, CKU_USER, pin, &h);
		ev_secret_free(pin);
		pin = NULL;
		if (rv != CKR_OK)
			break;
		if (what == KEY) {
			rc = rotate_by_label(&b, h, label, id, idlen);
			break;
		}
		rv = candidates(b.admin, h, EV_ROTATE_ALL, &keys, &n);
		if (rv != CKR_OK) {
			fprintf(stderr, "edgevault: cannot list the keys of zone %lu: %s\n",
			    b.zone, ckr_name(rv));
			break;
		}
		if (n == 0) {
			printf("zone %lu: no key to rotate\n", b.zone);
			rc = 0;
			break;
		}
		printf("zone %lu: %lu key(s) to rotate\n", b.zone, (unsigned long)n);
		fflush(stdout);
		rotate_keys(&b, h, keys, n);
		summary(&b, 0);
		rc = b.failed == 0 ? 0 : 1;
		break;
	}
	if (flush_stdout() != 0 && rc == 0)
		rc = 1;
out:
	close_zone_session(b.f, h);
	if (b.f != NULL)
		close_module(b.f, dl);
	ev_secret_free(pin);
	free(keys);
	free(id);
	return rc;
}

static void
show_policy_text(unsigned long zone, const char *label, const EV_ZONE_POLICY *p,
    const char *provider, int first)
{
	if (!first)
		putchar('\n');
	printf("zone %lu \"", zone);
	print_text((const unsigned char *)label, strlen(label), 1);
	printf("\"\n");
	printf("  require_attestation  %s\n", p->requireAttestation ? "yes" : "no");
	printf("  require_nonce        %s\n", p->requireNonce ? "yes" : "no");
	printf("  auto_rotate          %s\n", p->autoRotate ? "yes" : "no");
	printf("  max_evidence_age     %lu s\n", (unsigned long)p->ulMaxEvidenceAge);
	if (p->ulRotationPeriod == 0)
		printf("  rotation_period      0 (never due)\n");
	else
		printf("  rotation_period      %lu s\n", (unsigned long)p->ulRotationPeriod);
	printf("  grace_period         %lu s\n", (unsigned long)p->ulGracePeriod);
	printf("  provider             %s\n", *provider ? provider : "none");
}

static void
show_policy_json(unsigned long zone, const char *label, const EV_ZONE_POLICY *p,
    const char *provider, int first)
{
	printf("%s{\"zone\":%lu,\"label\":", first ? "" : ",", zone);
	json_str(label);
	printf(",\"require_attestation\":%s,\"require_nonce\":%s,\"auto_rotate\":%s",
	    p->requireAttestation ? "true" : "false", p->requireNonce ? "true" : "false",
	    p->autoRotate ? "true" : "false");
	printf(",\"max_evidence_age\":%lu,\"rotation_period\":%lu,\"grace_period\":%lu",
	    (unsigned long)p->ulMaxEvidenceAge, (unsigned long)p->ulRotationPeriod,
	    (unsigned long)p->ulGracePeriod);
	printf(",\"provider\":");
	if (*provider)
		json_str(provider);
	else
		printf("null");
	putchar('}');
}

int
cmd_policy(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "zone", required_argument, NULL, 'z' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sub = argc > 0 ? argv[0] : NULL, *zone_s = NULL;
	EV_ADMIN_FUNCTION_LIST *admin;
	CK_FUNCTION_LIST_3_0 *f = NULL;
	CK_SLOT_ID *zones = NULL, one;
	CK_ULONG nzones = 0, i;
	unsigned long zone = 0;
	size_t shown = 0;
	void *dl = NULL;
	int c, rc = 1;
	CK_RV rv;

	if (sub == NULL || strcmp(sub, "show") != 0) {
		fprintf(stderr, "edgevault: unknown command: policy%s%s\n", sub ? " " : "",
		    sub ? sub : "");
		policy_usage();
		return 2;
	}
	sub_begin();
	while ((c = sub_option("policy show", argc, argv, opts)) != -1) {
		if (c == 'z')
			zone_s = optarg;
		else if (c == 'j')
			json = 1;
		else {
			policy_usage();
			return 2;
		}
	}
	if (optind != argc) {
		policy_usage();
		return 2;
	}
	if (zone_s != NULL && parse_zone(zone_s, &zone) != 0)
		return 2;
	f = open_module(&dl);
	if (f == NULL)
		return 1;
	admin = admin_11();
	if (admin == NULL)
		goto out;
	if (zone_s != NULL) {
		one = zone;
		zones = &one;
		nzones = 1;
	} else if (zone_list(f, &zones, &nzones) != 0)
		goto out;
	if (json)
		putchar('[');
	else if (nzones == 0)
		printf("no zone\n");
	for (i = 0; i < nzones; i++) {
		EV_ZONE_POLICY p;
		CK_TOKEN_INFO ti;
		char label[33] = "", provider[33];

		memset(&p, 0, sizeof(p));
		rv = admin->EV_GetZonePolicy(zones[i], &p);
		if (rv == CKR_OK && f->C_GetTokenInfo(zones[i], &ti) == CKR_OK)
			unpad(label, ti.label, sizeof(ti.label));
		if (rv == CKR_TOKEN_NOT_PRESENT && zone_s == NULL)
			continue; /* revoked since the list was read */
		if (rv != CKR_OK) {
			if (json)
				printf("]\n");
			fflush(stdout);
			if (rv == CKR_SLOT_ID_INVALID || rv == CKR_TOKEN_NOT_PRESENT)
				fprintf(stderr, "edgevault: no zone %lu (%s)\n",
				    (unsigned long)zones[i], ckr_name(rv));
			else
				fprintf(stderr, "edgevault: cannot read the policy of zone %lu: %s\n",
				    (unsigned long)zones[i], ckr_name(rv));
			goto out;
		}
		unpad(provider, p.provider, sizeof(p.provider));
		if (json)
			show_policy_json(zones[i], label, &p, provider, shown == 0);
		else
			show_policy_text(zones[i], label, &p, provider, shown == 0);
		shown++;
	}
	if (json)
		printf("]\n");
	if (flush_stdout() != 0)
		goto out;
	rc = 0;
out:
	if (zones != &one)
		free(zones);
	close_module(f, dl);
	return rc;
}

static void
rebind_usage(void)
{
	fprintf(stderr, "usage: edgevault zone rebind --zone N [--so-pin-file FILE] [--json]\n");
}

/* "0, 7, 16" (or "none") for a PCR mask; as a JSON array with json. */
static void
print_pcrs(CK_ULONG pcrs, int as_json)
{
	int i, n = 0;

	if (as_json)
		putchar('[');
	else if (pcrs == 0)
		printf("none");
	for (i = 0; i < 24; i++) {
		if (!(pcrs & (1UL << i)))
			continue;
		printf("%s%d", n > 0 ? (as_json ? "," : ", ") : "", i);
		n++;
	}
	if (as_json)
		putchar(']');
}

/*
 * zone rebind: the zone's SO gives the zone a new zone key sealed to the
 * PCRs the zone's policy names, at the values they hold now, every key of
 * the zone wrapped again under it (admin interface 1.2).
 */
int
cmd_zone_rebind(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"zone", required_argument, NULL, 'z'},
	    {"so-pin-file", required_argument, NULL, 's'},
	    {"json", no_argument, NULL, 'j'},
	    {NULL, 0, NULL, 0},
	};
	const char *zone_s = NULL, *pin_file = NULL;
	EV_ADMIN_FUNCTION_LIST *admin;
	CK_FUNCTION_LIST_3_0 *f = NULL;
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	CK_ULONG pcrs = 0;
	unsigned long zone = 0;
	ev_secret *pin = NULL;
	void *dl = NULL;
	int c, usage_err = 0, rc = 1;
	CK_RV rv;

	sub_begin();
	while ((c = sub_option("zone rebind", argc, argv, opts)) != -1) {
		if (c == 'z')
			zone_s = optarg;
		else if (c == 's')
			pin_file = optarg;
		else if (c == 'j')
			json = 1;
		else {
			rebind_usage();
			return 2;
		}
	}
	if (optind != argc || zone_s == NULL) {
		rebind_usage();
		return 2;
	}
	if (parse_zone(zone_s, &zone) != 0)
		return 2;
	pin = get_pin(CKU_SO, pin_file, zone, &usage_err);
	if (pin == NULL)
		return usage_err ? 2 : 1;
	f = open_module(&dl);
	if (f == NULL)
		goto out;
	admin = admin_interface();
	if (admin == NULL)
		goto out;
	if (admin->version.minor < 2) {
		fprintf(stderr,
			"edgevault: the module's admin interface is version %u.%u: it has no "
			"PCR re-binding (1.2 needed)\n",
			admin->version.major, admin->version.minor);
		goto out;
	}
	rv = open_zone_session(f, zone, ZS_RW | ZS_SAY_NO_ZONE, CKU_SO, pin, &h);
	ev_secret_free(pin);
	pin = NULL;
	if (rv != CKR_OK)
		goto out;
	rv = admin->EV_RebindZone(h, &pcrs);
	if (rv != CKR_OK) {
		fprintf(stderr, "edgevault: zone %lu: not re-bound: %s", zone, ckr_name(rv));
		if (rv == CKR_FUNCTION_FAILED)
			fprintf(stderr, " (the SO recovery copy does not open with this SO PIN's "
					"auth value, or the zone key kept changing: see the module's "
					"log)");
		else if (rv == CKR_FUNCTION_REJECTED)
			fprintf(stderr, " (no fresh attestation evidence, no SO recovery copy, or the "
					"TPM is in dictionary-attack lockout: see the module's log)");
		else if (rv == CKR_USER_NOT_LOGGED_IN)
			fprintf(stderr, " (the SO PIN was changed meanwhile: try again)");
		fputc('\n', stderr);
		goto out;
	}
	if (json) {
		printf("{\"zone\":%lu,\"pcrs\":", zone);
		print_pcrs(pcrs, 1);
		printf("}\n");
	} else {
		printf("zone %lu: new zone key sealed, bound to PCRs: ", zone);
		print_pcrs(pcrs, 0);
		printf("%s\n", pcrs != 0 ? " (their values now)" : "");
	}
	rc = flush_stdout() != 0 ? 1 : 0;
out:
	if (f != NULL) {
		close_zone_session(f, h);
		close_module(f, dl);
	}
	ev_secret_free(pin);
	return rc;
}
