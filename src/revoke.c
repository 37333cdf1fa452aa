/*
 * Applying revocations (revoke.h): the store transaction behind a signed
 * list or a local revocation, and the watched directory.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "audit_event.h"
#include "event.h"
#include "log.h"
#include "module.h"
#include "revlist.h"
#include "revoke.h"
#include "signed.h"
#include "token.h"

#define META_SEQUENCE "revocation_sequence"
#define META_DIGEST "revocation_digest"
#define LABEL_MAX 255
#define REASON_MAX 256

/* After a revocation is announced: no old page of what it deleted stays in the -wal file. */
static void
checkpoint(void)
{
	if (ev_mutex_lock(ev_mod->store_lock) != CKR_OK)
		return;
	if (ev_store_checkpoint(ev_mod->store) != CKR_OK)
		ev_warn("revocation: the store's write-ahead log could not be emptied");
	ev_mutex_unlock(ev_mod->store_lock);
}

/*
 * One revocation's transaction: its history row, what it revoked, and
 * the audit lines, written once it has committed.
 */
struct apply {
	int64_t log;          /* the history row (0 until added) */
	int64_t now;
	CK_ULONG count;       /* things revoked */
	const char *source;   /* the list's name, "admin", or "local" */
	int64_t sequence;     /* the list's; 0 for a local revocation */
	CK_USER_TYPE user;    /* the SO of a local revocation, else none */
	ev_audit_batch audit;
};

/* The detail members of a revocation's audit lines. */
static size_t
audit_detail(const char *source, int64_t sequence, ev_audit_detail d[2])
{
	d[0] = (ev_audit_detail){ "source", source, 0 };
	d[1] = (ev_audit_detail){ "sequence", NULL, sequence };
	return sequence != 0 ? 2 : 1;
}

/* Record a refused list (its own statement: the refusal must stay when nothing else does). */
static void
refuse(const char *source, int64_t seq, const unsigned char digest[32], const char *why)
{
	ev_revlog_rec r = { 0 };
	ev_audit_detail d[2];
	size_t nd = audit_detail(source, seq, d);
	CK_RV rv;

	ev_error("revocation list %s refused: %s", source, why);
	ev_audit_note(EV_AUDIT_REVOCATION_LIST, EV_AUDIT_REFUSED, 0, CK_UNAVAILABLE_INFORMATION, NULL,
		      why, d, nd);
	r.time = (int64_t)time(NULL);
	r.source = (char *)source;
	r.sequence = seq;
	memcpy(r.digest, digest, sizeof(r.digest));
	r.applied = 0;
	r.detail = (char *)why;
	if (ev_mutex_lock(ev_mod->store_lock) != CKR_OK)
		return;
	rv = ev_store_revlog_add(ev_mod->store, &r);
	ev_mutex_unlock(ev_mod->store_lock);
	if (rv != CKR_OK)
		ev_error("revocation list %s: the refusal could not be recorded", source);
}

/* The audit line of a key or zone revoked, kept until the transaction commits. */
static void
audit_revoked(struct apply *a, const ev_revoke_entry *e, int64_t zone, const ev_obj_rec *rec)
{
	ev_audit_event ev = EV_AUDIT_EVENT_INIT(rec != NULL ? EV_AUDIT_KEY_REVOKED :
							      EV_AUDIT_ZONE_REVOKED,
						EV_AUDIT_OK);
	ev_audit_detail d[3];
	ev_audit_ident ident = { 0 };

	ev.ndetail = audit_detail(a->source, a->sequence, d);
	if (rec == NULL)
		d[ev.ndetail++] = (ev_audit_detail){ "scope",
						    e->kind == EV_REVOKE_DEVICE ? "device" : "zone",
						    0 };
	else
		ev_audit_ident_rec(&ident, rec);
	ev.zone = zone;
	ev.user = a->user;
	ev.object = rec != NULL ? &ident.obj : NULL;
	ev.reason = e->reason;
	ev.detail = d;
	ev_audit_batch_add(&a->audit, &ev);
	ev_audit_ident_clear(&ident);
}

/* A history row for one thing revoked. */
static CK_RV
note_revoked(struct apply *a, const ev_revoke_entry *e, int64_t zone, int64_t object)
{
	ev_revoked_rec r = { 0 };

	r.time = a->now;
	r.log = a->log;
	r.kind = (int)e->kind;
	r.zone = zone;
	r.object = object;
	r.label = e->label;
	r.label_len = e->label_len;
	r.ckid = e->ckid;
	r.ckid_len = e->ckid_len;
	r.generation = e->generation;
	r.reason = e->reason;
	return ev_store_revoked_add(ev_mod->store, &r);
}

static CK_RV
revoke_zone(struct apply *a, const ev_revoke_entry *e, int64_t zone)
{
	ev_zone_rec z = { 0 };
	CK_RV rv;

	rv = ev_store_zone_get(ev_mod->store, zone, &z);
	if (rv == EVR_NOT_FOUND)
		return CKR_OK; /* no such zone (any more): nothing to do */
	if (rv != CKR_OK)
		return rv;
	if (z.revoked == 0) {
		rv = ev_store_zone_revoke(ev_mod->store, zone, a->now);
		if (rv == CKR_OK)
			rv = ev_store_change_add(ev_mod->store, EV_CHANGE_ZONE_REVOKED, zone, 0);
		if (rv == CKR_OK)
			rv = note_revoked(a, e, zone, 0);
		if (rv == CKR_OK) {
			audit_revoked(a, e, zone, NULL);
			a->count++;
		}
	}
	ev_zone_rec_clear(&z);
	return rv;
}

static void
hash_int(crypto_generichash_state *h, int64_t v)
{
	unsigned char b[8];
	int i;

	for (i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)v >> (56 - 8 * i));
	crypto_generichash_update(h, b, sizeof(b));
}

/* What an entry names, as a digest (the reason is not part of it). */
static void
entry_digest(const ev_revoke_entry *e, unsigned char out[32])
{
	crypto_generichash_state h;

	crypto_generichash_init(&h, NULL, 0, 32);
	hash_int(&h, (int64_t)e->kind);
	hash_int(&h, e->zone);
	hash_int(&h, (int64_t)e->label_len);
	if (e->label_len > 0)
		crypto_generichash_update(&h, e->label, e->label_len);
	hash_int(&h, e->ckid != NULL);
	hash_int(&h, (int64_t)e->ckid_len);
	if (e->ckid_len > 0)
		crypto_generichash_update(&h, e->ckid, e->ckid_len);
	hash_int(&h, e->generation);
	crypto_generichash_final(&h, out, 32);
}

static CK_RV apply_entry_once(struct apply *a, const ev_revoke_entry *e);

/*
 * One entry, inside the caller's transaction; a->count grows by what it
 * revoked. An entry acts once: lists are cumulative, and a later list
 * repeating it must not revoke what was made since under the same name.
 */
static CK_RV
apply_entry(struct apply *a, const ev_revoke_entry *e)
{
	unsigned char digest[32];
	int applied = 0;
	CK_RV rv;

	entry_digest(e, digest);
	rv = ev_store_entry_applied(ev_mod->store, digest, &applied);
	if (rv != CKR_OK || applied)
		return rv;
	rv = apply_entry_once(a, e);
	if (rv == CKR_OK)
		rv = ev_store_entry_add(ev_mod->store, digest, a->log);
	return rv;
}


/*
 * Revoke one key object and the token copies made of it (the same
 * material under another name or label). One already gone (found twice,
 * as a copy and by its own label) is no error. Store lock held.
 */
static CK_RV
revoke_key(struct apply *a, const ev_revoke_entry *e, int64_t id)
{
	ev_obj_rec rec = { 0 };
	int64_t *copies = NULL;
	size_t n = 0, i;
	CK_RV rv;

	/* Named for the audit before it goes. */
	rv = ev_store_obj_get(ev_mod->store, id, &rec);
	if (rv == CKR_OK)
		rv = ev_store_obj_copies(ev_mod->store, id, &copies, &n);
	if (rv == CKR_OK)
		rv = ev_store_obj_delete(ev_mod->store, id);
	if (rv == EVR_NOT_FOUND) {
		ev_obj_rec_clear(&rec);
		free(copies);
		return CKR_OK;
	}
	if (rv == CKR_OK)
		rv = ev_store_change_add(ev_mod->store, EV_CHANGE_OBJECT_REVOKED, e->zone, id);
	if (rv == CKR_OK)
		rv = note_revoked(a, e, e->zone, id);
	if (rv == CKR_OK) {
		audit_revoked(a, e, e->zone, &rec);
		a->count++;
	}
	ev_obj_rec_clear(&rec);
	for (i = 0; i < n && rv == CKR_OK; i++)
		rv = revoke_key(a, e, copies[i]);
	free(copies);
	return rv;
}

/*
 * A local revocation: the SO means what exists now, even under a name
 * revoked before; a list repeating the entry later does nothing more.
 */
static CK_RV
apply_local_entry(struct apply *a, const ev_revoke_entry *e)
{
	unsigned char digest[32];
	int applied = 0;
	CK_RV rv;

	entry_digest(e, digest);
	rv = apply_entry_once(a, e);
	if (rv == CKR_OK)
		rv = ev_store_entry_applied(ev_mod->store, digest, &applied);
	if (rv == CKR_OK && !applied)
		rv = ev_store_entry_add(ev_mod->store, digest, a->log);
	return rv;
}

static CK_RV
apply_entry_once(struct apply *a, const ev_revoke_entry *e)
{
	int64_t *ids = NULL;
	size_t n = 0, i;
	CK_RV rv = CKR_OK;

	switch (e->kind) {
	case EV_REVOKE_KEY:
		rv = ev_store_obj_find_keys(ev_mod->store, e->zone, e->label, e->label_len, e->ckid,
		    e->ckid_len, e->generation, &ids, &n);
		for (i = 0; i < n && rv == CKR_OK; i++)
			rv = revoke_key(a, e, ids[i]);
		free(ids);
		return rv;
	case EV_REVOKE_ZONE:
		return revoke_zone(a, e, e->zone);
	case EV_REVOKE_DEVICE:
		rv = ev_store_zone_list(ev_mod->store, &ids, &n);
		for (i = 0; i < n && rv == CKR_OK; i++)
			rv = revoke_zone(a, e, ids[i]);
		free(ids);
		if (rv == CKR_OK)
			rv = ev_store_meta_set_int(ev_mod->store, EV_META_DEVICE_REVOKED, a->now);
		if (rv == CKR_OK)
			rv = note_revoked(a, e, 0, 0);
		return rv;
	}
	return CKR_GENERAL_ERROR;
}

/*
 * The transaction of a list that passed its checks, with a's source and
 * sequence set: a->log is set when the list was applied (else it was
 * read before, or is in effect already). *verdict gets a refusal's code
 * and why (rollback), else CKR_OK. Store lock held.
 */
static CK_RV
apply_list(const ev_revlist *l, int from_dir, struct apply *a, CK_RV *verdict, char *why,
    size_t whylen)
{
	unsigned char *last_digest = NULL;
	size_t last_len = 0;
	int64_t last = 0;
	ev_revlog_rec r = { 0 };
	int seen = 0;
	size_t i;
	CK_RV rv;

	*verdict = CKR_OK;
	a->now = (int64_t)time(NULL);
	rv = ev_store_begin(ev_mod->store);
	if (rv != CKR_OK)
		return rv;
	/* Another process may have read the same file meanwhile. */
	if (from_dir)
		rv = ev_store_revlog_seen(ev_mod->store, l->digest, &seen);
	if (rv != CKR_OK || seen)
		goto rollback;
	rv = ev_store_meta_get_int(ev_mod->store, META_SEQUENCE, &last);
	if (rv == EVR_NOT_FOUND) {
		last = 0;
		rv = CKR_OK;
	}
	if (rv == CKR_OK)
		rv = ev_store_meta_get(ev_mod->store, META_DIGEST, &last_digest, &last_len);
	if (rv == EVR_NOT_FOUND)
		rv = CKR_OK;
	if (rv != CKR_OK)
		goto rollback;
	if (l->sequence == last && last_len == sizeof(l->digest) &&
	    sodium_memcmp(last_digest, l->digest, sizeof(l->digest)) == 0)
		goto rollback; /* this very list is in effect already */
	if (l->sequence <= last) {
		*verdict = CKR_FUNCTION_REJECTED;
		snprintf(why, whylen, "rollback: sequence %lld is not above the last applied %lld",
		    (long long)l->sequence, (long long)last);
		goto rollback;
	}
	r.time = a->now;
	r.source = (char *)a->source;
	r.sequence = l->sequence;
	memcpy(r.digest, l->digest, sizeof(r.digest));
	r.applied = 1;
	r.detail = why;
	snprintf(why, whylen, "%zu entries", l->n);
	rv = ev_store_revlog_add(ev_mod->store, &r);
	a->log = r.id;
	for (i = 0; i < l->n && rv == CKR_OK; i++)
		rv = apply_entry(a, &l->entries[i]);
	if (rv == CKR_OK)
		rv = ev_store_meta_set_int(ev_mod->store, META_SEQUENCE, l->sequence);
	if (rv == CKR_OK)
		rv = ev_store_meta_set(ev_mod->store, META_DIGEST, l->digest, sizeof(l->digest));
	if (rv == CKR_OK)
		rv = ev_store_commit(ev_mod->store);
	if (rv != CKR_OK)
		goto rollback;
	free(last_digest);
	ev_notice("revocation list %s (sequence %lld) applied: %lu revoked", a->source,
	    (long long)l->sequence, (unsigned long)a->count);
	return CKR_OK;
rollback:
	(void)ev_store_rollback(ev_mod->store);
	a->log = 0;
	ev_audit_batch_clear(&a->audit);
	free(last_digest);
	return rv;
}

/* The audit of an applied list: the list's line, then what it revoked. */
static void
audit_applied(struct apply *a, const ev_revlist *l)
{
	ev_audit_detail d[4];
	size_t nd = audit_detail(a->source, l->sequence, d);

	d[nd++] = (ev_audit_detail){ "entries", NULL, (int64_t)l->n };
	d[nd++] = (ev_audit_detail){ "revoked", NULL, (int64_t)a->count };
	ev_audit_hold();
	ev_audit_note(EV_AUDIT_REVOCATION_LIST, EV_AUDIT_OK, 0, CK_UNAVAILABLE_INFORMATION, NULL,
		      NULL, d, nd);
	ev_audit_batch_emit(&a->audit);
	ev_audit_release();
}

CK_RV
ev_revoke_apply(const unsigned char *buf, size_t len, const char *source, int from_dir,
    CK_ULONG *seq)
{
	const ev_config *cfg = ev_mod->cfg;
	unsigned char digest[32];
	struct apply a = { 0 };
	ev_revlist *l = NULL;
	char why[512] = "";
	int seen = 0;
	CK_RV rv, verdict;

	ev_revlist_digest(buf, len, digest);
	if (from_dir) {
		rv = ev_mutex_lock(ev_mod->store_lock);
		if (rv != CKR_OK)
			return rv;
		rv = ev_store_revlog_seen(ev_mod->store, digest, &seen);
		ev_mutex_unlock(ev_mod->store_lock);
		if (rv != CKR_OK || seen)
			return rv;
	}
	if (!cfg->has_revocation_key) {
		refuse(source, 0, digest, "no [revocation] public_key is configured");
		return CKR_SIGNATURE_INVALID;
	}
	rv = ev_revlist_load(buf, len, cfg->revocation_key, &l, why, sizeof(why));
	if (rv != CKR_OK) {
		refuse(source, 0, digest, why);
		return rv;
	}
	if (strcmp(l->device, cfg->device_id) != 0) {
		snprintf(why, sizeof(why), "the list is for device \"%s\", this is \"%s\"", l->device,
		    cfg->device_id);
		refuse(source, l->sequence, digest, why);
		ev_revlist_free(l);
		return CKR_DATA_INVALID;
	}
	a.source = source;
	a.sequence = l->sequence;
	a.user = CK_UNAVAILABLE_INFORMATION;
	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv == CKR_OK) {
		rv = apply_list(l, from_dir, &a, &verdict, why, sizeof(why));
		ev_mutex_unlock(ev_mod->store_lock);
	}
	if (rv == CKR_OK && verdict != CKR_OK) {
		refuse(source, l->sequence, digest, why);
		rv = verdict;
	}
	if (rv == CKR_OK && a.log != 0)
		audit_applied(&a, l);
	ev_audit_batch_clear(&a.audit);
	if (rv == CKR_OK) {
		if (seq != NULL)
			*seq = (CK_ULONG)l->sequence;
		ev_events_announce();
		checkpoint();
	}
	ev_revlist_free(l);
	return rv;
}

/* A file of the watched directory, whole; NULL (logged) when it cannot be read. */
static unsigned char *
read_list_file(const char *dir, const char *name, size_t *len)
{
	char path[PATH_MAX];
	unsigned char *buf = NULL;
	struct stat st;
	size_t got = 0;
	int fd;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		if (errno != ENOENT)
			ev_error("revocation: %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		goto out;
	/* One byte over the limit is enough for the parser to say it is too large. */
	if ((unsigned long long)st.st_size > EV_SIGNED_MAX)
		st.st_size = EV_SIGNED_MAX + 1;
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL)
		goto out;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	*len = got;
out:
	close(fd);
	return buf;
}

void
ev_revoke_file(const char *name)
{
	const char *dir = ev_mod->cfg->revocation_dir;
	unsigned char *buf;
	size_t len = 0;

	if (dir == NULL || name[0] == '.')
		return;
	buf = read_list_file(dir, name, &len);
	if (buf == NULL)
		return;
	(void)ev_revoke_apply(buf, len, name, 1, NULL);
	free(buf);
}

/* Whether a file with these bytes was read before (applied or refused). */
static int
already_read(const unsigned char *buf, size_t len)
{
	unsigned char digest[32];
	int seen = 0;

	ev_revlist_digest(buf, len, digest);
	if (ev_mutex_lock(ev_mod->store_lock) != CKR_OK)
		return 0;
	if (ev_store_revlog_seen(ev_mod->store, digest, &seen) != CKR_OK)
		seen = 0;
	ev_mutex_unlock(ev_mod->store_lock);
	return seen;
}

/* A file found at start: its bytes are read once, sorted by, and applied. */
struct pending {
	char *name;
	unsigned char *buf;
	size_t len;
	int64_t seq; /* 0 when it does not parse: refused in its turn */
};

static int
by_sequence(const void *a, const void *b)
{
	const struct pending *x = a, *y = b;

	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return strcmp(x->name, y->name);
}

void
ev_revoke_scan(void)
{
	const ev_config *cfg = ev_mod->cfg;
	struct pending *v = NULL;
	size_t n = 0, cap = 0, i;
	struct dirent *d;
	DIR *dir;

	if (cfg->revocation_dir == NULL)
		return;
	dir = opendir(cfg->revocation_dir);
	if (dir == NULL) {
		if (errno != ENOENT)
			ev_error("revocation: %s: %s", cfg->revocation_dir, strerror(errno));
		return;
	}
	while ((d = readdir(dir)) != NULL) {
		ev_revlist *l = NULL;
		unsigned char *buf;
		char err[8];
		size_t len = 0;

		if (d->d_name[0] == '.')
			continue;
		if (n == cap) {
			struct pending *nv = realloc(v, (cap ? cap * 2 : 16) * sizeof(*v));

			if (nv == NULL)
				break;
			v = nv;
			cap = cap ? cap * 2 : 16;
		}
		buf = read_list_file(cfg->revocation_dir, d->d_name, &len);
		if (buf == NULL)
			continue;
		/* Files read before are skipped before the costly part. */
		if (already_read(buf, len)) {
			free(buf);
			continue;
		}
		v[n].seq = 0;
		if (cfg->has_revocation_key &&
		    ev_revlist_load(buf, len, cfg->revocation_key, &l, err, sizeof(err)) == CKR_OK)
			v[n].seq = l->sequence;
		ev_revlist_free(l);
		v[n].buf = buf;
		v[n].len = len;
		v[n].name = strdup(d->d_name);
		if (v[n].name == NULL) {
			free(buf);
			continue;
		}
		n++;
	}
	closedir(dir);
	/* Oldest first: a list that only adds to the one before still lands whole. */
	if (n > 0)
		qsort(v, n, sizeof(*v), by_sequence);
	for (i = 0; i < n; i++) {
		(void)ev_revoke_apply(v[i].buf, v[i].len, v[i].name, 1, NULL);
		free(v[i].buf);
		free(v[i].name);
	}
	free(v);
}

/* The entry of a local revocation, checked and in the store's terms. */
static CK_RV
local_entry(ev_session *s, const EV_REVOCATION_ENTRY *in, ev_revoke_entry *e, char **reason)
{
	memset(e, 0, sizeof(*e));
	if (in->pReason == NULL || in->ulReasonLen == 0 || in->ulReasonLen > REASON_MAX)
		return CKR_ARGUMENTS_BAD;
	*reason = strndup((const char *)in->pReason, in->ulReasonLen);
	if (*reason == NULL)
		return CKR_HOST_MEMORY;
	if (strlen(*reason) != in->ulReasonLen)
		return CKR_ARGUMENTS_BAD; /* a NUL inside */
	e->kind = in->kind;
	e->zone = s->token->id;
	e->reason = *reason;
	switch (in->kind) {
	case EV_REVOKE_KEY:
		if (in->pLabel == NULL || in->ulLabelLen == 0 || in->ulLabelLen > LABEL_MAX)
			return CKR_ARGUMENTS_BAD;
		if ((in->pId == NULL) != (in->ulIdLen == 0))
			return CKR_ARGUMENTS_BAD;
		e->label = in->pLabel;
		e->label_len = in->ulLabelLen;
		e->ckid = in->pId;
		e->ckid_len = in->ulIdLen;
		e->generation = (int64_t)in->ulGeneration;
		if (e->generation < 0)
			return CKR_ARGUMENTS_BAD;
		return CKR_OK;
	case EV_REVOKE_ZONE:
		return CKR_OK;
	}
	return CKR_ARGUMENTS_BAD;
}

CK_RV
ev_revoke_local(ev_session *s, const EV_REVOCATION_ENTRY *in, CK_ULONG *count)
{
	ev_revlog_rec r = { 0 };
	struct apply a = { 0 };
	ev_revoke_entry e;
	char *reason = NULL;
	char detail[64];
	CK_RV rv;

	if (!ev_session_rw(s))
		return CKR_SESSION_READ_ONLY;
	if (!ev_session_so(s))
		return CKR_USER_NOT_LOGGED_IN;
	rv = local_entry(s, in, &e, &reason);
	if (rv != CKR_OK)
		goto out;
	r.time = (int64_t)time(NULL);
	r.source = "local";
	r.applied = 1;
	snprintf(detail, sizeof(detail), "by the SO of zone %lld", (long long)e.zone);
	r.detail = detail;
	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		goto out;
	rv = ev_store_begin(ev_mod->store);
	if (rv == CKR_OK) {
		rv = ev_store_revlog_add(ev_mod->store, &r);
		a.log = r.id;
		a.now = r.time;
		a.source = r.source;
		a.user = CKU_SO;
		if (rv == CKR_OK)
			rv = apply_local_entry(&a, &e);
		if (rv == CKR_OK && a.count == 0 && e.kind == EV_REVOKE_KEY)
			rv = CKR_KEY_HANDLE_INVALID; /* names nothing: say so, record nothing */
		if (rv == CKR_OK)
			rv = ev_store_commit(ev_mod->store);
		if (rv != CKR_OK)
			(void)ev_store_rollback(ev_mod->store);
	}
	ev_mutex_unlock(ev_mod->store_lock);
	if (rv == CKR_OK) {
		ev_audit_batch_emit(&a.audit);
		ev_notice("zone %lld: %lu object(s) revoked locally by the SO", (long long)e.zone,
		    (unsigned long)a.count);
		if (count != NULL)
			*count = a.count;
		checkpoint();
	}
out:
	ev_audit_batch_clear(&a.audit);
	free(reason);
	return rv;
}
