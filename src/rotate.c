/* Attestation gates and rotation (rotate.h, doc/rotation.md). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "audit_event.h"
#include "event.h"
#include "keyring.h"
#include "log.h"
#include "module.h"
#include "object.h"
#include "pkcs11/edgevault.h"
#include "rotate.h"
#include "token.h"

/* The CKA_ID of a new secret key generation: random, as long as a SHA-1 (a pair's). */
#define SECRET_ID_LEN 20

static int64_t
now_unix(void)
{
	return (int64_t)time(NULL);
}

static const ev_policy *
policy_of(const ev_token *t)
{
	return ev_config_policy(ev_mod->cfg, t->id);
}

/* The same refusal (evidence and reason) is recorded at most once in this many seconds. */
#define REFUSAL_REPEAT 60

/* What identifies a refusal: its purpose, evidence and reason. */
static void
refusal_id(const char *purpose, const ev_verdict *v, unsigned char id[32])
{
	crypto_generichash_state h;

	crypto_generichash_init(&h, NULL, 0, 32);
	crypto_generichash_update(&h, (const unsigned char *)purpose, strlen(purpose) + 1);
	crypto_generichash_update(&h, v->digest, sizeof(v->digest));
	crypto_generichash_update(&h, (const unsigned char *)v->reason, strlen(v->reason));
	crypto_generichash_final(&h, id, 32);
}

/*
 * Whether a refusal repeats the last one recorded for the zone in this
 * process within REFUSAL_REPEAT: a caller looping on C_Login (no PIN is
 * spent before the evidence check) must not grow the history without
 * bound. Store lock held.
 */
static int
refusal_repeats(const ev_token *t, const unsigned char id[32], int64_t now)
{
	return t->refused_at != 0 && now - t->refused_at < REFUSAL_REPEAT &&
	    memcmp(id, t->refused, 32) == 0;
}

/* The audit line of an appraisal, as its history row: accepted once per document, refusals. */
static void
audit_appraisal(const ev_token *t, const char *purpose, const char *provider, const ev_verdict *v)
{
	ev_audit_detail d[] = {
		{ "purpose", purpose, 0 },
		{ "provider", provider, 0 },
		{ "valid_until", NULL, v->valid_until },
	};

	ev_audit_note(EV_AUDIT_ATTESTATION, v->accepted ? EV_AUDIT_OK : EV_AUDIT_REFUSED, t->id,
		      ev_audit_user(t), NULL, v->accepted ? NULL : v->reason, d,
		      v->accepted ? EV_ARRAY_SIZE(d) : EV_ARRAY_SIZE(d) - 1);
}

/* The history row for an appraisal. Caller holds the store lock. */
static CK_RV
record(ev_token *t, const char *purpose, const char *provider, const ev_verdict *v)
{
	ev_attestlog_rec r = { 0 };
	unsigned char id[32];
	int found = 0;
	CK_RV rv;

	if (v->accepted) {
		t->refused_at = 0; /* a refusal after an acceptance is news */
		rv = ev_store_attestlog_accepted(ev_mod->store, t->id, v->digest, &found);
		if (rv != CKR_OK || found)
			return rv;
	} else {
		refusal_id(purpose, v, id);
		if (refusal_repeats(t, id, now_unix()))
			return CKR_OK;
	}
	r.time = now_unix();
	r.zone = t->id;
	r.purpose = (char *)purpose;
	r.provider = (char *)provider;
	r.accepted = v->accepted;
	memcpy(r.digest, v->digest, sizeof(r.digest));
	r.valid_until = v->accepted ? v->valid_until : 0;
	r.reason = (char *)v->reason;
	rv = ev_store_attestlog_add(ev_mod->store, &r);
	if (rv == CKR_OK && !v->accepted) {
		memcpy(t->refused, id, sizeof(id));
		t->refused_at = r.time;
	}
	if (rv == CKR_OK)
		audit_appraisal(t, purpose, provider, v);
	return rv;
}

CK_RV
ev_attest_record_refusal(ev_token *t, const char *purpose, const char *provider,
			 const unsigned char digest[32], const char *reason)
{
	ev_verdict v;

	memset(&v, 0, sizeof(v));
	memcpy(v.digest, digest, sizeof(v.digest));
	snprintf(v.reason, sizeof(v.reason), "%s", reason);
	return record(t, purpose, provider, &v);
}

CK_RV
ev_attest_zone(ev_token *t, const char *purpose, int record_refusal, ev_verdict *v)
{
	const ev_attest_provider *p = ev_attest_provider_of(ev_mod->cfg);
	ev_root *root = NULL;
	unsigned char *nonce = NULL;
	size_t nonce_len = 0;
	ev_attest_ctx ctx;
	CK_RV rv;

	memset(v, 0, sizeof(*v));
	if (p == NULL) {
		snprintf(v->reason, sizeof(v->reason), "no attestation provider is configured");
		return CKR_FUNCTION_REJECTED;
	}
	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		return rv;
	rv = ev_store_meta_get(ev_mod->store, EV_META_ATTEST_NONCE, &nonce, &nonce_len);
	if (rv == EVR_NOT_FOUND)
		rv = CKR_OK; /* no nonce issued: evidence carrying one is refused */
	/*
	 * Reached under the store lock, used outside it: the root serialises
	 * its own access, and a quote must not hold up the store.
	 */
	if (rv == CKR_OK && p->needs_root)
		rv = ev_module_root(&root);
	ev_mutex_unlock(ev_mod->store_lock);
	if (rv != CKR_OK) {
		free(nonce);
		return rv;
	}
	ctx.cfg = ev_mod->cfg;
	ctx.device = ev_mod->cfg->device_id;
	ctx.zone = t->id;
	ctx.now = now_unix();
	ctx.policy = policy_of(t);
	ctx.nonce = nonce;
	ctx.nonce_len = nonce_len;
	ctx.root = root;
	rv = p->appraise(&ctx, v);
	free(nonce);
	if (rv != CKR_OK)
		return rv;
	if (!v->accepted)
		ev_warn("zone %lld: %s: evidence refused: %s", (long long)t->id, purpose, v->reason);
	if (!v->accepted && !record_refusal)
		return CKR_OK;
	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		return rv;
	rv = record(t, purpose, p->name, v);
	ev_mutex_unlock(ev_mod->store_lock);
	if (rv != CKR_OK) {
		ev_error("zone %lld: the attestation history could not be written", (long long)t->id);
		return CKR_DEVICE_ERROR;
	}
	return CKR_OK;
}

CK_RV
ev_gate_login(ev_token *t, int64_t *until)
{
	ev_verdict v;
	CK_RV rv;

	*until = 0;
	if (!t->gated)
		return CKR_OK;
	rv = ev_attest_zone(t, "login", 1, &v);
	if (rv != CKR_OK)
		return rv;
	if (!v.accepted)
		return CKR_FUNCTION_REJECTED;
	*until = v.valid_until;
	return CKR_OK;
}

void
ev_gate_renew(ev_token *t, int64_t until)
{
	atomic_store(&t->attested_until, until);
	t->stale_noted = 0;
}

CK_RV
ev_gate_use(ev_token *t)
{
	ev_verdict v;
	CK_RV rv;

	/* The hot path: one load and, in a gated zone, one clock read. */
	if (!t->gated || now_unix() < atomic_load(&t->attested_until))
		return CKR_OK;
	rv = ev_mutex_lock(t->lock);
	if (rv != CKR_OK)
		return rv;
	if (now_unix() < atomic_load(&t->attested_until))
		goto out; /* another thread renewed it meanwhile */
	/* A stale zone is recorded once, not at every call it refuses. */
	rv = ev_attest_zone(t, "use", !t->stale_noted, &v);
	if (rv == CKR_OK && v.accepted) {
		ev_gate_renew(t, v.valid_until);
	} else if (rv == CKR_OK || rv == CKR_FUNCTION_REJECTED) {
		t->stale_noted = 1;
		rv = CKR_FUNCTION_REJECTED;
	}
out:
	ev_mutex_unlock(t->lock);
	return rv;
}

/* The next generation's material for a key object's type and size. */
static CK_RV
new_material(ev_object *o, ev_key **priv, ev_key **pub, CK_MECHANISM_TYPE *mech)
{
	CK_KEY_TYPE kt = CK_UNAVAILABLE_INFORMATION;
	const CK_ATTRIBUTE *a;
	ev_attrs *tmpl = ev_attrs_new();
	CK_RV rv;

	*priv = *pub = NULL;
	if (tmpl == NULL)
		return CKR_HOST_MEMORY;
	rv = ev_rwlock_rdlock(o->lock);
	if (rv != CKR_OK) {
		ev_attrs_free(tmpl);
		return rv;
	}
	(void)ev_attrs_ulong(o->attrs, CKA_KEY_TYPE, &kt);
	switch (kt) {
	case CKK_EC:
	case CKK_EC_EDWARDS:
		*mech = kt == CKK_EC ? CKM_EC_KEY_PAIR_GEN : CKM_EC_EDWARDS_KEY_PAIR_GEN;
		a = ev_attrs_get(o->attrs, CKA_EC_PARAMS);
		rv = a == NULL ? CKR_DEVICE_ERROR :
				 ev_attrs_set(tmpl, CKA_EC_PARAMS, a->pValue, a->ulValueLen);
		break;
	case CKK_RSA:
		*mech = CKM_RSA_PKCS_KEY_PAIR_GEN;
		a = ev_attrs_get(o->attrs, CKA_MODULUS);
		rv = a == NULL ? CKR_DEVICE_ERROR :
				 ev_attrs_set_ulong(tmpl, CKA_MODULUS_BITS, a->ulValueLen * 8);
		a = ev_attrs_get(o->attrs, CKA_PUBLIC_EXPONENT);
		if (rv == CKR_OK && a != NULL)
			rv = ev_attrs_set(tmpl, CKA_PUBLIC_EXPONENT, a->pValue, a->ulValueLen);
		break;
	default:
		/* Secret keys: the same length, and the caller's key type kept. */
		*mech = kt == CKK_AES ? CKM_AES_KEY_GEN : CKM_GENERIC_SECRET_KEY_GEN;
		a = ev_attrs_get(o->attrs, CKA_VALUE_LEN);
		rv = a == NULL ? CKR_DEVICE_ERROR :
				 ev_attrs_set(tmpl, CKA_VALUE_LEN, a->pValue, a->ulValueLen);
		break;
	}
	ev_rwlock_unlock(o->lock);
	if (rv == CKR_OK) {
		if (o->cls == CKO_SECRET_KEY)
			rv = ev_key_generate_secret(*mech, tmpl, priv);
		else
			rv = ev_key_generate_pair(*mech, tmpl, priv, pub);
	}
	ev_attrs_free(tmpl);
	if (rv != CKR_OK)
		ev_error("object %lu: new material for its next generation: CKR 0x%lx",
		    (unsigned long)o->handle, (unsigned long)rv);
	return rv;
}

/* The partner of a key pair half: same label, CKA_ID and key type, current, not a copy. */
static CK_RV
partner(ev_session *s, ev_object *o, CK_OBJECT_CLASS want, ev_object **out)
{
	ev_obj_query q = { 0 };
	const CK_ATTRIBUTE *label, *id;
	unsigned char *lv = NULL, *iv = NULL;
	int64_t *ids = NULL;
	size_t n = 0, i;
	CK_KEY_TYPE kt = CK_UNAVAILABLE_INFORMATION;
	CK_RV rv;

	*out = NULL;
	rv = ev_rwlock_rdlock(o->lock);
	if (rv != CKR_OK)
		return rv;
	label = ev_attrs_get(o->attrs, CKA_LABEL);
	id = ev_attrs_get(o->attrs, CKA_ID);
	(void)ev_attrs_ulong(o->attrs, CKA_KEY_TYPE, &kt);
	q.has_label = 1;
	q.label_len = label != NULL ? label->ulValueLen : 0;
	q.has_ckid = 1;
	q.ckid_len = id != NULL ? id->ulValueLen : 0;
	/* Copied out: the object's attributes may change once its lock is let go. */
	lv = malloc(q.label_len + 1);
	iv = malloc(q.ckid_len + 1);
	if (lv != NULL && iv != NULL) {
		if (q.label_len > 0)
			memcpy(lv, label->pValue, q.label_len);
		if (q.ckid_len > 0)
			memcpy(iv, id->pValue, q.ckid_len);
	}
	ev_rwlock_unlock(o->lock);
	if (lv == NULL || iv == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	q.label = lv;
	q.ckid = iv;
	q.zone = s->token->id;
	q.include_private = 1;
	q.has_class = 1;
	q.cls = want;
	q.has_key_type = 1;
	q.key_type = kt;
	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		goto out;
	rv = ev_store_obj_find(ev_mod->store, &q, &ids, &n);
	ev_mutex_unlock(ev_mod->store_lock);
	for (i = 0; rv == CKR_OK && i < n && *out == NULL; i++) {
		ev_object *c;

		if (ev_object_get(s, (CK_OBJECT_HANDLE)ids[i], &c) != CKR_OK)
			continue;
		if (c->origin == 0 && !ev_object_is_true(c, CKA_EV_RETIRED, 0))
			*out = c;
		else
			ev_object_put(c);
	}
out:
	free(ids);
	free(lv);
	free(iv);
	return rv;
}

/*
 * Whether a key object has a next generation of its own: a current token
 * key, not a copy (copies follow their origin).
 */
static int
rotatable(ev_object *o)
{
	return o->on_token && o->origin == 0 && !ev_object_is_true(o, CKA_EV_RETIRED, 0);
}

/*
 * At most this many keys per transaction of a batch: each chunk is
 * rotated whole or not at all (a crash leaves it old or new), with one
 * sync of the store and one of the audit trail for all of it.
 */
#define ROTATE_CHUNK 256

/* What a chunk's transaction retires: the old generations, in order. */
struct retire {
	ev_object **old;
	ev_audit_ident *ident; /* old[i]'s, for its audit line: read before the transaction */
	size_t n;
	int64_t now, destroy_at;
	CK_USER_TYPE user;      /* who rotates, for the audit */
	ev_audit_batch audit;   /* key.retired lines, written once committed */
};

/* The key.retired audit line of an object (ident) retired by the chunk. */
static void
note_retired(struct retire *r, int64_t zone, const ev_audit_ident *ident)
{
	ev_audit_event e = EV_AUDIT_EVENT_INIT(EV_AUDIT_KEY_RETIRED, EV_AUDIT_OK);
	ev_audit_detail d[] = { { "destroy_at", NULL, r->destroy_at } };

	e.zone = zone;
	e.user = r->user;
	e.object = &ident->obj;
	e.detail = d;
	e.ndetail = EV_ARRAY_SIZE(d);
	ev_audit_batch_add(&r->audit, &e);
}

/* Retire a token copy of a rotated key with its change row and its audit line. */
static CK_RV
retire_copy(struct retire *r, int64_t zone, int64_t id)
{
	ev_obj_rec rec = { 0 };
	ev_audit_ident ident;
	CK_RV rv;

	rv = ev_store_obj_retire(ev_mod->store, id, r->now, r->destroy_at);
	if (rv == CKR_OK)
		rv = ev_store_change_add(ev_mod->store, EV_CHANGE_OBJECT_ROTATED, zone, id);
	if (rv == CKR_OK)
		rv = ev_store_obj_get(ev_mod->store, id, &rec);
	if (rv != CKR_OK)
		return rv;
	ev_audit_ident_rec(&ident, &rec);
	note_retired(r, zone, &ident);
	ev_audit_ident_clear(&ident);
	ev_obj_rec_clear(&rec);
	return CKR_OK;
}

/*
 * Retire an old generation, still current (else nothing changes), with
 * its change row and its audit line (ident: named from the object, read
 * before the transaction, as object locks come before the store lock),
 * then its token copies. Store lock held.
 */
static CK_RV
retire_one(struct retire *r, ev_object *o, const ev_audit_ident *ident)
{
	int64_t zone = o->token->id, id = (int64_t)o->handle, was = 0, *copies = NULL;
	size_t n = 0, i;
	CK_RV rv;

	/* Under the write lock: two rotations of one key never both succeed. */
	rv = ev_store_obj_retire_current(ev_mod->store, id, r->now, r->destroy_at, &was);
	if (rv == EVR_NOT_FOUND)
		return CKR_KEY_HANDLE_INVALID; /* revoked or destroyed meanwhile */
	if (rv == CKR_OK && was != 0)
		return CKR_KEY_FUNCTION_NOT_PERMITTED; /* rotated meanwhile */
	if (rv == CKR_OK)
		rv = ev_store_change_add(ev_mod->store, EV_CHANGE_OBJECT_ROTATED, zone, id);
	if (rv != CKR_OK)
		return rv;
	note_retired(r, zone, ident);
	rv = ev_store_obj_copies(ev_mod->store, id, &copies, &n);
	for (i = 0; rv == CKR_OK && i < n; i++)
		rv = retire_copy(r, zone, copies[i]);
	free(copies);
	return rv;
}

/* Inside the chunk's transaction: each old generation is still current, and now retired. */
static CK_RV
retire_within(void *arg)
{
	struct retire *r = arg;
	size_t i;
	CK_RV rv = CKR_OK;

	for (i = 0; i < r->n && rv == CKR_OK; i++)
		rv = retire_one(r, r->old[i], &r->ident[i]);
	return rv;
}

/* One key of a rotation: the object named, and the halves that rotate with it. */
struct rot_key {
	ev_object *o;    /* a reference */
	ev_object *priv; /* o, or a reference to o's private half */
	ev_object *pub;  /* o, a reference to o's public half, or NULL */
};

static void
rot_key_clear(struct rot_key *k)
{
	if (k->priv != k->o)
		ev_object_put(k->priv);
	if (k->pub != k->o)
		ev_object_put(k->pub);
	ev_object_put(k->o);
	memset(k, 0, sizeof(*k));
}

/*
 * A handle named for rotation: a current token key of its own (k->o).
 * CKR_KEY_HANDLE_INVALID (no object, not a key),
 * CKR_KEY_FUNCTION_NOT_PERMITTED (retired, a copy, a session object).
 */
static CK_RV
named_key(ev_session *s, CK_OBJECT_HANDLE h, struct rot_key *k)
{
	CK_RV rv;

	memset(k, 0, sizeof(*k));
	rv = ev_object_get(s, h, &k->o);
	if (rv == CKR_OBJECT_HANDLE_INVALID)
		rv = CKR_KEY_HANDLE_INVALID;
	if (rv != CKR_OK)
		return rv;
	if (k->o->cls != CKO_PRIVATE_KEY && k->o->cls != CKO_PUBLIC_KEY &&
	    k->o->cls != CKO_SECRET_KEY)
		rv = CKR_KEY_HANDLE_INVALID;
	else if (!rotatable(k->o))
		rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
	if (rv != CKR_OK)
		rot_key_clear(k);
	return rv;
}

/* The halves that rotate with k->o. CKR_KEY_FUNCTION_NOT_PERMITTED: a public key alone. */
static CK_RV
halves(ev_session *s, struct rot_key *k)
{
	CK_RV rv = CKR_OK;

	switch (k->o->cls) {
	case CKO_PRIVATE_KEY:
		k->priv = k->o;
		rv = partner(s, k->o, CKO_PUBLIC_KEY, &k->pub);
		break;
	case CKO_PUBLIC_KEY:
		k->pub = k->o;
		rv = partner(s, k->o, CKO_PRIVATE_KEY, &k->priv);
		if (rv == CKR_OK && k->priv == NULL)
			rv = CKR_KEY_FUNCTION_NOT_PERMITTED; /* nothing to make a new pair of */
		break;
	default:
		k->priv = k->o;
		break;
	}
	return rv;
}

/*
 * The next generation of a key's halves, appended to fresh (*nfresh) and
 * their old ones to r->old; *mine gets the index in fresh of k->o's.
 */
static CK_RV
next_of(ev_session *s, struct rot_key *k, ev_object **fresh, size_t *nfresh, size_t *mine,
    struct retire *r)
{
	ev_key *kpriv = NULL, *kpub = NULL;
	CK_MECHANISM_TYPE mech = CK_UNAVAILABLE_INFORMATION;
	const CK_ATTRIBUTE *pid = NULL;
	unsigned char id[SECRET_ID_LEN];
	CK_RV rv;

	rv = new_material(k->priv, &kpriv, &kpub, &mech);
	if (rv != CKR_OK)
		return rv;
	/* A pair's: the SHA-1 of the public key's SubjectPublicKeyInfo, made with the object. */
	if (kpub == NULL)
		randombytes_buf(id, sizeof(id));
	rv = ev_object_next_generation(s, k->priv, kpriv, mech, kpub == NULL ? id : NULL,
	    sizeof(id), &fresh[*nfresh]);
	kpriv = NULL; /* consumed */
	if (rv != CKR_OK)
		goto out;
	if (kpub != NULL && (pid = ev_attrs_get(fresh[*nfresh]->attrs, CKA_ID)) == NULL) {
		ev_object_free(fresh[*nfresh]);
		fresh[*nfresh] = NULL;
		rv = CKR_GENERAL_ERROR;
		goto out;
	}
	if (k->o == k->priv)
		*mine = *nfresh;
	r->old[r->n++] = k->priv;
	(*nfresh)++;
	if (k->pub != NULL) {
		rv = ev_object_next_generation(s, k->pub, kpub, mech, pid->pValue, pid->ulValueLen,
		    &fresh[*nfresh]);
		kpub = NULL; /* consumed */
		if (rv != CKR_OK)
			goto out;
		if (k->o == k->pub)
			*mine = *nfresh;
		r->old[r->n++] = k->pub;
		(*nfresh)++;
	}
out:
	ev_key_free(kpriv);
	ev_key_free(kpub);
	return rv;
}

/*
 * Rotate a chunk of keys (halves resolved, evidence checked) in one
 * transaction: every new generation stored and every old one retired,
 * or nothing. out[i] (out may be NULL) gets keys[i].o's new generation.
 * *committed: whether the transaction committed (also when an error
 * follows it).
 */
static CK_RV
rotate_chunk(ev_session *s, struct rot_key *keys, size_t n, CK_OBJECT_HANDLE *out,
    int *committed)
{
	struct retire r = { .user = ev_audit_user(s->token) };
	ev_object **fresh = calloc(2 * n, sizeof(*fresh));
	CK_OBJECT_HANDLE *h = calloc(2 * n, sizeof(*h));
	size_t *mine = calloc(n, sizeof(*mine));
	size_t nfresh = 0, i;
	CK_RV rv = CKR_OK;

	*committed = 0;
	r.old = calloc(2 * n, sizeof(*r.old));
	r.ident = calloc(2 * n, sizeof(*r.ident));
	if (fresh == NULL || h == NULL || mine == NULL || r.old == NULL || r.ident == NULL)
		rv = CKR_HOST_MEMORY;
	for (i = 0; i < n && rv == CKR_OK; i++)
		rv = next_of(s, &keys[i], fresh, &nfresh, &mine[i], &r);
	if (rv != CKR_OK)
		goto out;
	for (i = 0; i < r.n; i++)
		ev_audit_ident_object(&r.ident[i], r.old[i]);
	r.now = now_unix();
	r.destroy_at = r.now + policy_of(s->token)->grace_period;
	/* One sync of the trail for the chunk's lines, after the store's commit. */
	ev_audit_hold();
	rv = ev_object_publish_rotation(s, fresh, nfresh, h, retire_within, &r, committed);
	for (i = 0; i < nfresh; i++)
		fresh[i] = NULL; /* consumed */
	/* The lines and the notice follow what committed, whatever failed after it. */
	if (*committed)
		ev_audit_batch_emit(&r.audit);
	ev_audit_release();
	if (!*committed)
		goto out;
	ev_events_announce();
	for (i = 0; i < n && out != NULL; i++)
		out[i] = h[mine[i]];
	if (n == 1)
		ev_notice("zone %lld: object %lu rotated to generation %lld (object %lu)",
		    (long long)s->token->id, (unsigned long)keys[0].o->handle,
		    (long long)(keys[0].o->generation + 1), (unsigned long)h[mine[0]]);
	else
		ev_notice("zone %lld: %zu keys rotated (objects %lu..%lu named)",
		    (long long)s->token->id, n, (unsigned long)keys[0].o->handle,
		    (unsigned long)keys[n - 1].o->handle);
out:
	ev_audit_batch_clear(&r.audit); /* emptied once emitted; else rolled back: nothing retired */
	for (i = 0; fresh != NULL && i < nfresh; i++)
		ev_object_free(fresh[i]);
	free(fresh);
	free(h);
	free(mine);
	free(r.old);
	for (i = 0; r.ident != NULL && i < r.n; i++)
		ev_audit_ident_clear(&r.ident[i]);
	free(r.ident);
	return rv;
}

/* Fresh evidence for a rotation, recorded: CKR_OK or CKR_FUNCTION_REJECTED. */
static CK_RV
rotation_evidence(ev_token *t)
{
	ev_verdict v;
	CK_RV rv;

	rv = ev_attest_zone(t, "rotate", 1, &v);
	if (rv == CKR_OK && !v.accepted)
		rv = CKR_FUNCTION_REJECTED;
	return rv;
}

static int
cmp_handle(const void *a, const void *b)
{
	CK_OBJECT_HANDLE x = *(const CK_OBJECT_HANDLE *)a, y = *(const CK_OBJECT_HANDLE *)b;

	return x < y ? -1 : x > y;
}

/* Whether an object would rotate twice: named twice, or with both halves of a pair named. */
static CK_RV
distinct(const struct rot_key *keys, size_t n)
{
	CK_OBJECT_HANDLE *v = calloc(2 * n + 1, sizeof(*v));
	size_t m = 0, i;
	CK_RV rv = CKR_OK;

	if (v == NULL)
		return CKR_HOST_MEMORY;
	for (i = 0; i < n; i++) {
		v[m++] = keys[i].priv->handle;
		if (keys[i].pub != NULL)
			v[m++] = keys[i].pub->handle;
	}
	qsort(v, m, sizeof(*v), cmp_handle);
	for (i = 1; i < m && rv == CKR_OK; i++)
		if (v[i] == v[i - 1])
			rv = CKR_ARGUMENTS_BAD;
	free(v);
	return rv;
}

/*
 * Rotate keys in order, ROTATE_CHUNK to a transaction. Strict (the admin
 * calls): every handle is checked first, then the evidence once, then the
 * halves; any failure there rotates nothing. Then chunk by chunk: a chunk
 * that fails (a key rotated, revoked or destroyed by another process
 * meanwhile, the store) is rolled back and ends the call, the chunks
 * before it stay rotated: *done (a prefix of hs) says how many.
 * Lenient (automatic rotation; the evidence checked by the caller): keys
 * that are gone or not rotatable any more are skipped, and a chunk that
 * fails is logged and the next one tried; *done counts what rotated.
 */
static CK_RV
rotate_keys(ev_session *s, const CK_OBJECT_HANDLE *hs, size_t n, CK_OBJECT_HANDLE *out,
    size_t *done, int lenient)
{
	struct rot_key *keys = calloc(n + 1, sizeof(*keys));
	size_t nk = 0, i, c, len;
	int committed;
	CK_RV rv = CKR_OK, crv;

	*done = 0;
	if (keys == NULL)
		return CKR_HOST_MEMORY;
	for (i = 0; i < n && rv == CKR_OK; i++) {
		rv = named_key(s, hs[i], &keys[nk]);
		if (rv == CKR_OK)
			nk++;
		else if (lenient && rv != CKR_HOST_MEMORY)
			rv = CKR_OK; /* gone, or rotated by another process meanwhile */
	}
	if (rv == CKR_OK && !lenient && nk > 0)
		rv = rotation_evidence(s->token);
	for (i = 0; i < nk && rv == CKR_OK; i++) {
		rv = halves(s, &keys[i]);
		if (rv != CKR_OK && lenient && rv != CKR_HOST_MEMORY) {
			ev_warn("zone %lld: object %lu: not rotated: CKR 0x%lx",
			    (long long)s->token->id, (unsigned long)keys[i].o->handle,
			    (unsigned long)rv);
			rot_key_clear(&keys[i]);
			memmove(&keys[i], &keys[i + 1], (nk - i - 1) * sizeof(*keys));
			nk--;
			i--;
			rv = CKR_OK;
		}
	}
	if (rv == CKR_OK)
		rv = distinct(keys, nk);
	for (c = 0; c < nk && rv == CKR_OK; c += len) {
		len = nk - c < ROTATE_CHUNK ? nk - c : ROTATE_CHUNK;
		crv = rotate_chunk(s, &keys[c], len, out != NULL ? &out[*done] : NULL, &committed);
		if (committed)
			*done += len;
		if (crv != CKR_OK && lenient && !committed)
			ev_warn("zone %lld: %zu key(s) not rotated: CKR 0x%lx",
			    (long long)s->token->id, len, (unsigned long)crv);
		else
			rv = crv;
	}
	for (i = 0; i < nk; i++)
		rot_key_clear(&keys[i]);
	free(keys);
	if (*done > 0 && ev_rotate_sweep(NULL) != CKR_OK)
		ev_warn("retired generations past their grace period: not destroyed yet");
	return rv;
}

CK_RV
ev_rotate_key(ev_session *s, CK_OBJECT_HANDLE h, CK_OBJECT_HANDLE *out)
{
	size_t done = 0;

	return ev_rotate_keys(s, &h, 1, out, &done);
}

CK_RV
ev_rotate_keys(ev_session *s, const CK_OBJECT_HANDLE *keys, size_t n, CK_OBJECT_HANDLE *out,
    size_t *done)
{
	*done = 0;
	if (!ev_session_rw(s))
		return CKR_SESSION_READ_ONLY;
	if (!ev_session_user(s))
		return CKR_USER_NOT_LOGGED_IN;
	if (n == 0)
		return CKR_OK;
	return rotate_keys(s, keys, n, out, done, 0);
}
/* The zone's rotation candidates; *ids malloc'ed. */
static CK_RV
candidates(ev_token *t, CK_ULONG which, int64_t **ids, size_t *n)
{
	const ev_policy *p = policy_of(t);
	int64_t before = INT64_MAX;
	CK_RV rv;

	*ids = NULL;
	*n = 0;
	if (which == EV_ROTATE_DUE) {
		if (p->rotation_period == 0)
			return CKR_OK; /* never due */
		/* Due once a whole period has passed: made at or before now - period. */
		before = now_unix() - p->rotation_period + 1;
	}
	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		return rv;
	rv = ev_store_obj_rotatable(ev_mod->store, t->id, before, ids, n);
	ev_mutex_unlock(ev_mod->store_lock);
	return rv;
}

CK_RV
ev_rotate_candidates(ev_session *s, CK_ULONG which, CK_OBJECT_HANDLE *keys, CK_ULONG *count)
{
	int64_t *ids = NULL;
	size_t n = 0, i;
	CK_RV rv;

	if (which != EV_ROTATE_DUE && which != EV_ROTATE_ALL)
		return CKR_ARGUMENTS_BAD;
	if (!ev_session_user(s))
		return CKR_USER_NOT_LOGGED_IN;
	rv = candidates(s->token, which, &ids, &n);
	if (rv != CKR_OK)
		return rv;
	if (keys != NULL && *count < n)
		rv = CKR_BUFFER_TOO_SMALL;
	else if (keys != NULL)
		for (i = 0; i < n; i++)
			keys[i] = (CK_OBJECT_HANDLE)ids[i];
	*count = (CK_ULONG)n;
	free(ids);
	return rv;
}

void
ev_rotate_due_at_login(ev_session *s)
{
	const ev_policy *p = policy_of(s->token);
	int64_t *ids = NULL;
	CK_OBJECT_HANDLE *hs = NULL;
	size_t n = 0, i, done = 0;
	CK_RV rv;

	/* Only a login the zone's evidence admitted opens an attested session. */
	if (!p->auto_rotate || p->rotation_period == 0 || !s->token->gated || !ev_session_user(s))
		return;
	rv = candidates(s->token, EV_ROTATE_DUE, &ids, &n);
	if (rv != CKR_OK || n == 0)
		goto out;
	if ((hs = calloc(n, sizeof(*hs))) == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	for (i = 0; i < n; i++)
		hs[i] = (CK_OBJECT_HANDLE)ids[i];
	/* Every rotation appraises evidence: once for the batch, just after the login's. */
	rv = rotation_evidence(s->token);
	if (rv == CKR_OK)
		rv = rotate_keys(s, hs, n, NULL, &done, 1);
out:
	if (rv != CKR_OK)
		ev_warn("zone %lld: automatic rotation: CKR 0x%lx", (long long)s->token->id,
		    (unsigned long)rv);
	if (done > 0)
		ev_notice("zone %lld: %zu key(s) rotated at login", (long long)s->token->id, done);
	free(hs);
	free(ids);
}
/* Wrap every blob of a zone again under a new key. Store lock held, in a transaction. */
static CK_RV
rewrap_all(int64_t zone, const ev_secret *old, const ev_secret *nk, CK_ULONG *count)
{
	int64_t *ids = NULL;
	size_t n = 0, i;
	CK_RV rv;

	rv = ev_store_obj_wrapped_ids(ev_mod->store, zone, &ids, &n);
	for (i = 0; rv == CKR_OK && i < n; i++) {
		ev_obj_rec rec = { 0 };
		ev_secret *plain = NULL;
		unsigned char *blob = NULL;
		size_t len = 0;
		ev_wrap_binding b;

		rv = ev_store_obj_get(ev_mod->store, ids[i], &rec);
		if (rv != CKR_OK)
			break;
		b.zone_id = zone;
		b.object_id = rec.id;
		b.generation = rec.generation;
		ev_attr_digest(rec.attrs, b.attr_digest);
		rv = ev_unwrap(old, &b, rec.wrapped, rec.wrapped_len, &plain);
		if (rv != CKR_OK) {
			/* Rotating would lose it for good: stop, change nothing. */
			ev_error("zone %lld: object %lld does not open under the zone key; "
				 "zone key not rotated",
			    (long long)zone, (long long)rec.id);
			rv = CKR_DEVICE_ERROR;
		}
		if (rv == CKR_OK)
			rv = ev_wrap(nk, &b, plain, &blob, &len);
		if (rv == CKR_OK)
			rv = ev_store_obj_set_wrapped(ev_mod->store, rec.id, blob, len);
		free(blob);
		ev_secret_free(plain);
		ev_obj_rec_clear(&rec);
	}
	if (rv == CKR_OK && count != NULL)
		*count = (CK_ULONG)n;
	free(ids);
	return rv;
}

/*
 * The zone key of a zone record, for replacing it: unsealed as usual or,
 * for a re-binding when the PCRs it is bound to have changed, from the
 * SO's recovery copy with the SO's auth value. *key the caller's. Token
 * lock and store lock held.
 */
static CK_RV
old_zone_key(ev_token *t, const ev_zone_rec *z, int rebind, ev_secret **key)
{
	ev_unseal_opts uo = {0};
	const ev_secret *cached;
	ev_root *root;
	CK_RV rv;

	*key = NULL;
	if (!rebind) {
		/* Refused as at login when its PCRs changed: a rotation is no re-binding. */
		rv = ev_token_zone_key_current(t, &cached);
		if (rv == CKR_OK) {
			*key = ev_secret_dup(cached->data, cached->len);
			if (*key == NULL)
				rv = CKR_HOST_MEMORY;
		}
		return rv;
	}
	rv = ev_module_root(&root);
	if (rv != CKR_OK)
		return rv;
	rv = ev_zone_key_unseal(root, ev_mod->cfg->device_id, t->id, z->sealed, z->sealed_len, NULL,
				key);
	if (rv != EVR_PCR_MISMATCH)
		return rv;
	if (z->so_sealed == NULL) {
		ev_error("zone %lld: its PCRs changed and it has no SO recovery copy of its key: "
			 "it cannot be re-bound",
			 (long long)t->id);
		return CKR_FUNCTION_REJECTED;
	}
	ev_notice("zone %lld: PCRs changed; opening the SO recovery copy of the zone key",
		  (long long)t->id);
	uo.auth = t->so_auth;
	rv = ev_zone_key_unseal(root, ev_mod->cfg->device_id, t->id, z->so_sealed, z->so_sealed_len,
				&uo, key);
	if (rv == CKR_FUNCTION_FAILED)
		ev_error("zone %lld: the SO recovery copy does not open with this SO's PIN",
			 (long long)t->id);
	return rv;
}

/* Whether a blob is stored as it was read (both NULL counts). */
static int
same_blob(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
	if (a == NULL || b == NULL)
		return a == b;
	return alen == blen && (alen == 0 || sodium_memcmp(a, b, alen) == 0);
}

/*
 * One attempt at replacing the zone key: read the zone, open its key,
 * seal the new one (no write lock held: the root's I/O), then in one
 * transaction, if the zone's row still has the blobs that were read and
 * the SO's PIN is still the one its auth value came from, wrap every blob
 * of the zone again under the new key and store both sealed blobs. A
 * crash leaves the old key with the old blobs or the new with the new,
 * never a mix. *stale when another process changed the zone key
 * meanwhile (nothing written). Token lock and store lock held.
 */
static CK_RV
rekey_once(ev_token *t, int rebind, const ev_secret *nk, CK_ULONG *count, int *stale)
{
	ev_zone_rec z = {0}, now = {0};
	ev_secret *old = NULL;
	unsigned char *sealed = NULL, *so_sealed = NULL;
	size_t sealed_len = 0, so_len = 0;
	int in_tx = 0;
	CK_RV rv;

	*stale = 0;
	rv = ev_store_zone_get(ev_mod->store, t->id, &z);
	if (rv == CKR_OK && z.revoked != 0)
		rv = CKR_TOKEN_NOT_PRESENT;
	/* Before any TPM call: a stale auth value would spend dictionary-attack tries. */
	if (rv == CKR_OK)
		rv = ev_token_so_current(t, z.so_pin);
	if (rv == CKR_OK)
		rv = old_zone_key(t, &z, rebind, &old);
	/* As the zone's policy says now: to its PCRs, with the SO's copy. */
	if (rv == CKR_OK)
		rv = ev_token_seal_key(t->id, nk, t->so_auth, &sealed, &sealed_len, &so_sealed,
				       &so_len);
	if (rv == CKR_OK)
		rv = ev_store_begin(ev_mod->store);
	in_tx = rv == CKR_OK;
	if (rv == CKR_OK)
		rv = ev_store_zone_get(ev_mod->store, t->id, &now);
	if (rv == CKR_OK && now.revoked != 0)
		rv = CKR_TOKEN_NOT_PRESENT;
	/* The SO PIN may have changed since the read above: the copy must open with it. */
	if (rv == CKR_OK)
		rv = ev_token_so_current(t, now.so_pin);
	if (rv == CKR_OK &&
	    (!same_blob(z.sealed, z.sealed_len, now.sealed, now.sealed_len) ||
	     !same_blob(z.so_sealed, z.so_sealed_len, now.so_sealed, now.so_sealed_len))) {
		*stale = 1;
		goto out;
	}
	if (rv == CKR_OK)
		rv = rewrap_all(t->id, old, nk, count);
	if (rv == CKR_OK)
		rv = ev_store_zone_set_sealed(ev_mod->store, t->id, sealed, sealed_len);
	if (rv == CKR_OK)
		rv = ev_store_zone_set_so_sealed(ev_mod->store, t->id, so_sealed, so_len);
	if (rv == CKR_OK)
		rv = ev_store_change_add(ev_mod->store, EV_CHANGE_ZONE_REKEYED, t->id, 0);
	if (rv == CKR_OK)
		rv = ev_store_commit(ev_mod->store);
	if (rv == CKR_OK) {
		in_tx = 0;
		/* No old blob, sealed key or copy left in the -wal file. */
		(void)ev_store_checkpoint(ev_mod->store);
	}
out:
	if (in_tx)
		(void)ev_store_rollback(ev_mod->store);
	ev_zone_rec_clear(&z);
	ev_zone_rec_clear(&now);
	ev_secret_free(old);
	free(sealed);
	free(so_sealed);
	return rv;
}

static void
audit_rekeyed(ev_token *t, int rebind, CK_ULONG rewrapped)
{
	ev_audit_detail d[] = {
		{ "method", rebind ? "rebind" : "rotate", 0 },
		{ "objects", NULL, (int64_t)rewrapped },
		{ "pcrs", NULL, (int64_t)ev_config_policy(ev_mod->cfg, t->id)->pcrs },
	};

	ev_audit_note(EV_AUDIT_ZONE_REKEYED, EV_AUDIT_OK, t->id, ev_audit_user(t), NULL, NULL, d,
		      EV_ARRAY_SIZE(d));
}

/*
 * A new zone key for the session's zone (rotation, or re-binding, which
 * is a rotation that may open the old key from the SO's recovery copy):
 * see rekey_once(). The caller checked the session and the evidence.
 */
static CK_RV
rekey_zone(ev_session *s, int rebind, CK_ULONG *count)
{
	ev_token *t = s->token;
	ev_secret *nk = NULL;
	CK_ULONG rewrapped = 0;
	int tries, stale = 0;
	CK_RV rv;

	rv = ev_zone_key_new(&nk);
	if (rv != CKR_OK)
		return rv;
	/* The token (the SO's auth value, the zone key), then the store. */
	rv = ev_token_lock_both(t);
	if (rv != CKR_OK)
		goto out;
	/* rekey_once() checks the SO's login again: the SO may have logged out meanwhile. */
	for (tries = 0; tries < 3; tries++) {
		rv = rekey_once(t, rebind, nk, &rewrapped, &stale);
		if (rv != CKR_OK || !stale)
			break;
	}
	if (rv == CKR_OK && stale) {
		ev_error("zone %lld: the zone key kept changing meanwhile; not %s",
			 (long long)t->id, rebind ? "re-bound" : "rotated");
		rv = CKR_FUNCTION_FAILED;
	}
	/* This process reads the new key and blobs at once; the others at their next call. */
	if (rv == CKR_OK)
		ev_token_forget_key(t);
	ev_mutex_unlock(ev_mod->store_lock);
	if (rv == CKR_OK)
		ev_object_rewrapped(t);
	ev_mutex_unlock(t->lock);
	/* The zone was revoked or re-initialised meanwhile: the session's token is gone. */
	if (rv == EVR_NOT_FOUND || rv == CKR_TOKEN_NOT_PRESENT)
		rv = CKR_DEVICE_REMOVED;
	if (rv == CKR_OK) {
		audit_rekeyed(t, rebind, rewrapped);
		ev_events_announce();
		if (count != NULL)
			*count = rewrapped;
	}
out:
	ev_secret_free(nk);
	return rv;
}

CK_RV
ev_rotate_zone_key(ev_session *s, CK_ULONG *count)
{
	CK_RV rv;

	if (!ev_session_rw(s))
		return CKR_SESSION_READ_ONLY;
	if (!ev_session_so(s))
		return CKR_USER_NOT_LOGGED_IN;
	rv = rotation_evidence(s->token);
	if (rv == CKR_OK)
		rv = rekey_zone(s, 0, count);
	if (rv == CKR_OK)
		ev_notice("zone %lld: zone key rotated", (long long)s->token->id);
	return rv;
}

CK_RV
ev_rebind_zone(ev_session *s, CK_ULONG *pcrs_out)
{
	ev_token *t = s->token;
	uint32_t pcrs;
	ev_verdict v;
	CK_RV rv;

	if (!ev_session_rw(s))
		return CKR_SESSION_READ_ONLY;
	if (!ev_session_so(s))
		return CKR_USER_NOT_LOGGED_IN;
	/* A zone whose logins need evidence is re-bound only on evidence. */
	if (t->gated) {
		rv = ev_attest_zone(t, "rebind", 1, &v);
		if (rv == CKR_OK && !v.accepted)
			rv = CKR_FUNCTION_REJECTED;
		if (rv != CKR_OK)
			return rv;
	}
	/*
	 * A new key, not the old one sealed again: every older blob of the
	 * old key (the unbound one from before the zone had PCRs, those sealed
	 * to earlier PCR values) then opens nothing of the zone.
	 */
	rv = rekey_zone(s, 1, NULL);
	if (rv != CKR_OK)
		return rv;
	pcrs = ev_config_policy(ev_mod->cfg, t->id)->pcrs;
	ev_notice("zone %lld: new zone key sealed (%s)", (long long)t->id,
		  pcrs != 0 ? "bound to its PCRs as they are now" : "bound to no PCR");
	if (pcrs_out != NULL)
		*pcrs_out = (CK_ULONG)pcrs;
	return CKR_OK;
}

/* The audit line of a retired generation destroyed at the end of its grace period. */
static void
note_expired(ev_audit_batch *audit, const ev_obj_rec *rec)
{
	ev_audit_event e = EV_AUDIT_EVENT_INIT(EV_AUDIT_KEY_DESTROYED, EV_AUDIT_OK);
	ev_audit_detail d[] = { { "method", "expiry", 0 }, { "retired", NULL, rec->retired } };
	ev_audit_ident ident;

	ev_audit_ident_rec(&ident, rec);
	e.zone = rec->zone;
	e.object = &ident.obj;
	e.reason = "grace period ended";
	e.detail = d;
	e.ndetail = EV_ARRAY_SIZE(d);
	ev_audit_batch_add(audit, &e);
	ev_audit_ident_clear(&ident);
}

CK_RV
ev_rotate_sweep(int64_t *next)
{
	int64_t now = now_unix(), *ids = NULL;
	ev_audit_batch audit = { 0 };
	size_t n = 0, i;
	int in_tx = 0;
	CK_RV rv;

	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		return rv;
	rv = ev_store_obj_expired(ev_mod->store, now, &ids, &n);
	if (rv == CKR_OK && n > 0) {
		rv = ev_store_begin(ev_mod->store);
		in_tx = rv == CKR_OK;
		free(ids);
		ids = NULL;
		/* Read again under the write lock: another process may have swept first. */
		if (rv == CKR_OK)
			rv = ev_store_obj_expired(ev_mod->store, now, &ids, &n);
		for (i = 0; rv == CKR_OK && i < n; i++) {
			ev_obj_rec rec = { 0 };

			rv = ev_store_obj_get(ev_mod->store, ids[i], &rec);
			if (rv == CKR_OK)
				rv = ev_store_obj_delete(ev_mod->store, ids[i]);
			if (rv == CKR_OK)
				rv = ev_store_change_add(ev_mod->store, EV_CHANGE_OBJECT_EXPIRED,
				    rec.zone, ids[i]);
			if (rv == CKR_OK)
				note_expired(&audit, &rec);
			ev_obj_rec_clear(&rec);
		}
		if (rv == CKR_OK)
			rv = ev_store_commit(ev_mod->store);
		if (rv == CKR_OK)
			in_tx = 0;
		if (in_tx)
			(void)ev_store_rollback(ev_mod->store);
		if (rv == CKR_OK && n > 0)
			(void)ev_store_checkpoint(ev_mod->store);
	}
	/* Written once committed (emptied by a rollback). */
	if (in_tx || rv != CKR_OK)
		ev_audit_batch_clear(&audit);
	else
		ev_audit_batch_emit(&audit);
	if (rv == CKR_OK && next != NULL)
		rv = ev_store_obj_next_destroy(ev_mod->store, next);
	ev_mutex_unlock(ev_mod->store_lock);
	free(ids);
	if (rv == CKR_OK && n > 0) {
		ev_notice("%zu retired generation(s) destroyed at the end of their grace period", n);
		ev_events_announce();
	}
	return rv;
}

CK_RV
ev_attest_session(ev_session *s, ev_verdict *v)
{
	ev_token *t = s->token;
	CK_RV rv;

	rv = ev_attest_zone(t, "check", 1, v);
	/* Fresh evidence renews a logged-in user's attested state, as the use gate would. */
	if (rv == CKR_OK && v->accepted && ev_session_user(s) &&
	    ev_mutex_lock(t->lock) == CKR_OK) {
		ev_gate_renew(t, v->valid_until);
		ev_mutex_unlock(t->lock);
	}
	return rv;
}

CK_RV
ev_attest_new_nonce(unsigned char nonce[EV_NONCE_LEN])
{
	unsigned char fresh[EV_NONCE_LEN];
	CK_RV rv;

	randombytes_buf(fresh, sizeof(fresh));
	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		return rv;
	rv = ev_store_meta_set(ev_mod->store, EV_META_ATTEST_NONCE, fresh, sizeof(fresh));
	ev_mutex_unlock(ev_mod->store_lock);
	if (rv == CKR_OK)
		memcpy(nonce, fresh, sizeof(fresh));
	return rv;
}
