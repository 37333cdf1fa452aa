#include <stdlib.h>
#include <string.h>

#include "audit_event.h"
#include "log.h"
#include "module.h"
#include "object.h"
#include "pkcs11/edgevault.h"
#include "rotate.h"
#include "session.h"

CK_STATE
ev_session_state(const ev_session *s)
{
	int rw = (s->flags & CKF_RW_SESSION) != 0;

	switch (s->token->login) {
	case CKU_SO:
		return CKS_RW_SO_FUNCTIONS;
	case CKU_USER:
		return rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
	default:
		return rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
	}
}

int
ev_session_rw(const ev_session *s)
{
	return (s->flags & CKF_RW_SESSION) != 0;
}

int
ev_session_user(const ev_session *s)
{
	return s->token->login == CKU_USER;
}

int
ev_session_so(const ev_session *s)
{
	return s->token->login == CKU_SO;
}

/*
 * The session index: ev_session_acquire()'s lookup, spread over shards by
 * handle (handles are consecutive, so sessions opened one after the other
 * fall in different shards), each with its own lock on its own cache
 * lines. Two threads working in their own sessions take different locks:
 * a read lock writes its lock's line, and one lock shared by every call
 * (ev_mod->lock) would make the second thread's calls wait for the
 * first's cache. A shard's map changes only under ev_mod->lock (write)
 * and then the shard's lock (write), at open and close; the locks are
 * made at C_Initialize and freed at C_Finalize.
 */
#define SHARDS 64

static struct shard {
	ev_rwlock *lock;
	ev_map map; /* CK_SESSION_HANDLE -> ev_session, as in ev_mod->sessions */
} shards[SHARDS];

static struct shard *
shard_of(CK_SESSION_HANDLE h)
{
	return &shards[h % SHARDS];
}

CK_RV
ev_session_index_new(void)
{
	size_t i;

	for (i = 0; i < SHARDS; i++) {
		shards[i].lock = ev_rwlock_new();
		if (shards[i].lock == NULL) {
			ev_session_index_free();
			return CKR_CANT_LOCK;
		}
	}
	return CKR_OK;
}

void
ev_session_index_free(void)
{
	size_t i;

	for (i = 0; i < SHARDS; i++) {
		ev_rwlock_free(shards[i].lock);
		shards[i].lock = NULL;
		ev_map_clear(&shards[i].map);
	}
}

/* Add a session to the table and the index; the caller holds ev_mod->lock (write). */
static CK_RV
link_locked(ev_session *s)
{
	struct shard *sh = shard_of(s->handle);
	CK_RV rv;

	rv = ev_rwlock_wrlock(sh->lock);
	if (rv != CKR_OK)
		return rv;
	rv = ev_map_put(&sh->map, s->handle, s);
	ev_rwlock_unlock(sh->lock);
	if (rv != CKR_OK)
		return rv;
	rv = ev_map_put(&ev_mod->sessions, s->handle, s);
	if (rv != CKR_OK && ev_rwlock_wrlock(sh->lock) == CKR_OK) {
		ev_map_del(&sh->map, s->handle);
		ev_rwlock_unlock(sh->lock);
	}
	return rv;
}

static void
drop_spare(ev_active *a)
{
	ev_op_free(a->spare);
	a->spare = NULL;
	ev_key_free(a->spare_mat);
	a->spare_mat = NULL;
	ev_object_put(a->spare_key);
	a->spare_key = NULL;
}

/*
 * End the operation. keep: its contexts become the spare when they can
 * serve again; else the spare goes too.
 */
static void
active_close(ev_active *a, int keep)
{
	if (!keep) {
		drop_spare(a);
	} else if (a->op != NULL && a->mat != NULL && ev_op_park(a->op)) {
		drop_spare(a);
		a->spare = a->op;
		a->op = NULL; /* transferred */
		a->spare_mat = a->mat;
		a->mat = NULL; /* transferred */
	}
	if (keep && a->key != NULL) {
		ev_object_put(a->spare_key);
		a->spare_key = a->key;
		a->key = NULL; /* transferred */
	}
	ev_op_free(a->op);
	a->op = NULL;
	ev_key_free(a->mat);
	a->mat = NULL;
	ev_object_put(a->key);
	a->key = NULL;
	a->need_login = 0;
	a->dead = CKR_OK;
}

void
ev_active_end(ev_active *a)
{
	active_close(a, 0);
}

static void
end_all(ev_session *s)
{
	ev_active_end(&s->enc);
	ev_active_end(&s->dec);
	ev_active_end(&s->sign);
	ev_active_end(&s->verify);
	ev_active_end(&s->digest);
	free(s->found);
	s->found = NULL;
	s->nfound = s->pos = 0;
	s->finding = 0;
}

static void
session_free(ev_session *s)
{
	end_all(s);
	ev_mutex_free(s->lock);
	free(s);
}

CK_RV
ev_session_open(CK_SLOT_ID slot, CK_FLAGS flags, CK_SESSION_HANDLE *out)
{
	ev_session *s = NULL;
	ev_token *t;
	CK_RV rv;

	if (!(flags & CKF_SERIAL_SESSION))
		return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
	rv = ev_sync();
	if (rv != CKR_OK)
		return rv;
	rv = ev_token_get(slot, &t);
	if (rv != CKR_OK)
		return rv;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return CKR_HOST_MEMORY;
	s->token = t;
	s->flags = flags & (CKF_RW_SESSION | CKF_SERIAL_SESSION);
	atomic_init(&s->refs, 1);
	s->lock = ev_mutex_new();
	if (s->lock == NULL) {
		free(s);
		return CKR_CANT_LOCK;
	}
	rv = ev_rwlock_wrlock(ev_mod->lock);
	if (rv != CKR_OK)
		goto out;
	/*
	 * Revoked since ev_token_get(): refused here, under the lock that
	 * ev_session_removed() takes after setting the flag, so no session
	 * escapes being marked removed.
	 */
	if (atomic_load(&t->revoked)) {
		rv = CKR_TOKEN_NOT_PRESENT;
		goto unlock;
	}
	/* A zone being re-initialised takes no session until it is new. */
	if (t->reinit) {
		rv = CKR_TOKEN_NOT_RECOGNIZED;
		goto unlock;
	}
	/* An SO session is read-write; no read-only session may join it. */
	if (t->login == CKU_SO && !(flags & CKF_RW_SESSION)) {
		rv = CKR_SESSION_READ_WRITE_SO_EXISTS;
		goto unlock;
	}
	s->handle = ev_mod->next_session++;
	rv = link_locked(s);
	if (rv != CKR_OK)
		goto unlock;
	t->sessions++;
	if (flags & CKF_RW_SESSION)
		t->rw_sessions++;
	*out = s->handle;
	s = NULL; /* transferred */
unlock:
	ev_rwlock_unlock(ev_mod->lock);
out:
	if (s != NULL)
		session_free(s);
	return rv;
}

CK_RV
ev_session_acquire(CK_SESSION_HANDLE h, ev_session **out)
{
	struct shard *sh;
	ev_session *s;
	CK_RV rv;

	rv = ev_sync();
	if (rv != CKR_OK)
		return rv;
	sh = shard_of(h);
	rv = ev_rwlock_rdlock(sh->lock);
	if (rv != CKR_OK)
		return rv;
	s = ev_map_get(&sh->map, h);
	if (s != NULL)
		atomic_fetch_add(&s->refs, 1);
	ev_rwlock_unlock(sh->lock);
	if (s == NULL)
		return CKR_SESSION_HANDLE_INVALID;
	rv = ev_mutex_lock(s->lock);
	if (rv != CKR_OK) {
		if (atomic_fetch_sub(&s->refs, 1) == 1)
			session_free(s);
		return rv;
	}
	if (s->closed) {
		/* Closed while we waited for it: by its token leaving, or by the application. */
		rv = s->removed ? CKR_DEVICE_REMOVED : CKR_SESSION_HANDLE_INVALID;
		ev_session_release(s);
		return rv;
	}
	*out = s;
	return CKR_OK;
}

void
ev_session_release(ev_session *s)
{
	ev_mutex_unlock(s->lock);
	if (atomic_fetch_sub(&s->refs, 1) == 1)
		session_free(s);
}

/*
 * The last session of a token has closed: PKCS#11 logs the user out, and
 * no key of the zone stays in memory. Unless a session was opened since:
 * the read lock keeps any from opening while this is decided and done.
 */
static void
token_idle(ev_token *t)
{
	if (ev_mutex_lock(t->lock) != CKR_OK)
		return;
	if (ev_rwlock_rdlock(ev_mod->lock) == CKR_OK) {
		if (t->sessions == 0) {
			t->login = EV_NOBODY;
			ev_token_forget_key(t);
			ev_token_forget_so(t);
			ev_object_wipe_token(t, 0);
		}
		ev_rwlock_unlock(ev_mod->lock);
	}
	ev_mutex_unlock(t->lock);
}

/*
 * Unlink a session from the table and the index; the caller holds
 * ev_mod->lock (write). Whether it was its token's last.
 */
static int
unlink_locked(ev_session *s)
{
	struct shard *sh = shard_of(s->handle);

	ev_map_del(&ev_mod->sessions, s->handle);
	if (ev_rwlock_wrlock(sh->lock) == CKR_OK) {
		ev_map_del(&sh->map, s->handle);
		ev_rwlock_unlock(sh->lock);
	} else {
		/*
		 * Only the application's lock can fail. The index keeps the
		 * session, closed (finish_close()), so it must never be
		 * freed: a lookup answers CKR_SESSION_HANDLE_INVALID.
		 */
		atomic_fetch_add(&s->refs, 1);
	}
	s->token->sessions--;
	if (s->flags & CKF_RW_SESSION)
		s->token->rw_sessions--;
	return s->token->sessions == 0;
}

/* Close an unlinked session: end its work, drop its objects, drop the table's reference. */
static void
finish_close(ev_session *s, int removed)
{
	if (ev_mutex_lock(s->lock) == CKR_OK) {
		s->closed = 1;
		s->removed = removed;
		end_all(s);
		ev_mutex_unlock(s->lock);
	}
	ev_object_drop_session(s->handle);
	if (atomic_fetch_sub(&s->refs, 1) == 1)
		session_free(s);
}

CK_RV
ev_session_close(CK_SESSION_HANDLE h)
{
	ev_session *s;
	ev_token *t;
	int idle;
	CK_RV rv;

	rv = ev_rwlock_wrlock(ev_mod->lock);
	if (rv != CKR_OK)
		return rv;
	s = ev_map_get(&ev_mod->sessions, h);
	if (s == NULL) {
		ev_rwlock_unlock(ev_mod->lock);
		return CKR_SESSION_HANDLE_INVALID;
	}
	t = s->token;
	idle = unlink_locked(s);
	ev_rwlock_unlock(ev_mod->lock);
	finish_close(s, 0);
	if (idle)
		token_idle(t);
	return CKR_OK;
}

struct collect {
	ev_session **v;
	size_t n;
	ev_token *token; /* NULL: every token */
	ev_session *skip;
};

static void
collect_cb(CK_ULONG key, void *val, void *arg)
{
	struct collect *c = arg;
	ev_session *s = val;

	if ((c->token == NULL || s->token == c->token) && s != c->skip)
		c->v[c->n++] = s;
}

/* The sessions of a token (or all), each with a reference taken. */
static CK_RV
collect_sessions(ev_token *t, ev_session *skip, struct collect *c, int write)
{
	size_t i;
	CK_RV rv;

	memset(c, 0, sizeof(*c));
	c->token = t;
	c->skip = skip;
	rv = write ? ev_rwlock_wrlock(ev_mod->lock) : ev_rwlock_rdlock(ev_mod->lock);
	if (rv != CKR_OK)
		return rv;
	c->v = calloc(ev_mod->sessions.live + 1, sizeof(*c->v));
	if (c->v == NULL) {
		ev_rwlock_unlock(ev_mod->lock);
		return CKR_HOST_MEMORY;
	}
	ev_map_each(&ev_mod->sessions, collect_cb, c);
	for (i = 0; i < c->n; i++)
		atomic_fetch_add(&c->v[i]->refs, 1);
	if (!write)
		ev_rwlock_unlock(ev_mod->lock);
	return CKR_OK;
}

/* Close the sessions of a token (or all: NULL); removed: its token left the slot. */
static CK_RV
close_sessions(ev_token *t, int removed)
{
	struct collect c;
	int *idle;
	size_t i;
	CK_RV rv;

	rv = collect_sessions(t, NULL, &c, 1);
	if (rv != CKR_OK)
		return rv;
	/* Remember, under the lock, which sessions were their token's last. */
	idle = calloc(c.n + 1, sizeof(*idle));
	if (idle == NULL) {
		ev_rwlock_unlock(ev_mod->lock);
		for (i = 0; i < c.n; i++)
			atomic_fetch_sub(&c.v[i]->refs, 1);
		free(c.v);
		return CKR_HOST_MEMORY;
	}
	for (i = 0; i < c.n; i++)
		idle[i] = unlink_locked(c.v[i]);
	ev_rwlock_unlock(ev_mod->lock);
	for (i = 0; i < c.n; i++) {
		ev_session *s = c.v[i];
		ev_token *st = s->token;

		finish_close(s, removed); /* the table's reference */
		if (atomic_fetch_sub(&s->refs, 1) == 1)
			session_free(s); /* ours */
		if (idle[i])
			token_idle(st);
	}
	free(idle);
	free(c.v);
	return CKR_OK;
}

CK_RV
ev_session_close_all(CK_SLOT_ID slot, int all)
{
	ev_token *t = NULL;
	CK_RV rv;

	if (!all) {
		rv = ev_token_get(slot, &t);
		if (rv == CKR_TOKEN_NOT_RECOGNIZED)
			return CKR_OK; /* the free slot has no sessions */
		/* A token that left its slot took its sessions with it. */
		if (rv == CKR_TOKEN_NOT_PRESENT && ev_token_loaded(slot) != NULL)
			return CKR_OK;
		if (rv != CKR_OK)
			return rv;
	}
	return close_sessions(t, 0);
}

/* Run fn on every session of a token (or all: NULL), each locked in turn. */
static void
each_session(ev_token *t, void (*fn)(ev_session *s))
{
	struct collect c;
	size_t i;

	if (collect_sessions(t, NULL, &c, 0) != CKR_OK)
		return;
	for (i = 0; i < c.n; i++) {
		ev_session *s = c.v[i];

		if (ev_mutex_lock(s->lock) == CKR_OK) {
			fn(s);
			ev_mutex_unlock(s->lock);
		}
		if (atomic_fetch_sub(&s->refs, 1) == 1)
			session_free(s);
	}
	free(c.v);
}

void
ev_session_removed(ev_token *t)
{
	if (close_sessions(t, 1) != CKR_OK)
		ev_error("zone %lld left its slot, but its sessions could not be closed",
		    (long long)t->id);
}

static void
end_dead(ev_session *s)
{
	ev_active *all[] = { &s->enc, &s->dec, &s->sign, &s->verify, &s->digest };
	size_t i;

	for (i = 0; i < EV_ARRAY_SIZE(all); i++) {
		/* Kept contexts go whatever their key: they hold material, and this is rare. */
		drop_spare(all[i]);
		if (all[i]->key != NULL && atomic_load(&all[i]->key->destroyed)) {
			ev_active_end(all[i]);
			all[i]->dead = CKR_KEY_HANDLE_INVALID;
		} else if (all[i]->key != NULL && (all[i] == &s->sign || all[i] == &s->enc) &&
		    ev_object_is_true(all[i]->key, CKA_EV_RETIRED, 0)) {
			/* A retired generation never signs or encrypts, not even to finish. */
			ev_active_end(all[i]);
			all[i]->dead = CKR_KEY_FUNCTION_NOT_PERMITTED;
		}
	}
}

void
ev_session_end_dead_ops(void)
{
	each_session(NULL, end_dead);
}

void
ev_session_end_token_ops(ev_token *t)
{
	each_session(t, end_all);
}

/* C_Login(CKU_CONTEXT_SPECIFIC): t->lock held. *checked once the PIN was checked. */
static CK_RV
login_context(ev_session *s, const CK_UTF8CHAR *pin, CK_ULONG len, int *checked)
{
	ev_token *t = s->token;
	CK_RV rv;

	/* Only right after C_SignInit or C_DecryptInit with a key that asks for it. */
	if (!s->sign.need_login && !s->dec.need_login)
		return CKR_OPERATION_NOT_INITIALIZED;
	if (t->login != CKU_USER)
		return CKR_USER_NOT_LOGGED_IN;
	*checked = 1;
	rv = ev_token_check_pin(t, CKU_USER, pin, len);
	if (rv == CKR_OK)
		s->sign.need_login = s->dec.need_login = 0;
	return rv;
}

CK_RV
ev_session_login(ev_session *s, CK_USER_TYPE who, const CK_UTF8CHAR *pin, CK_ULONG len)
{
	ev_token *t = s->token;
	const ev_secret *zk;
	ev_secret *so_auth = NULL;
	unsigned char so_digest[32];
	int64_t until = 0;
	int checked = 0;
	CK_RV rv;

	if (who != CKU_SO && who != CKU_USER && who != CKU_CONTEXT_SPECIFIC)
		return CKR_USER_TYPE_INVALID;
	rv = ev_mutex_lock(t->lock);
	if (rv != CKR_OK)
		return rv;
	if (who == CKU_CONTEXT_SPECIFIC) {
		rv = login_context(s, pin, len, &checked);
		goto out;
	}
	if (t->login == who) {
		rv = CKR_USER_ALREADY_LOGGED_IN;
		goto out;
	}
	if (t->login != EV_NOBODY) {
		rv = CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
		goto out;
	}
	if (who == CKU_SO) {
		/* Checked before the PIN too, so that the answer costs no attempt. */
		rv = ev_rwlock_rdlock(ev_mod->lock);
		if (rv != CKR_OK)
			goto out;
		if (t->sessions != t->rw_sessions)
			rv = CKR_SESSION_READ_ONLY_EXISTS;
		ev_rwlock_unlock(ev_mod->lock);
		if (rv != CKR_OK)
			goto out;
	}
	/* From here on the login is decided on its merits, and recorded. */
	checked = 1;
	/* Evidence before the PIN: a refused device spends no PIN attempt. */
	if (who == CKU_USER) {
		rv = ev_gate_login(t, &until);
		if (rv != CKR_OK)
			goto out;
	}
	if (who == CKU_SO)
		rv = ev_token_check_so_pin(t, pin, len, so_digest);
	else
		rv = ev_token_check_pin(t, who, pin, len);
	if (rv != CKR_OK)
		goto out;
	if (who == CKU_USER) {
		/* Unlock the zone now, so an unreachable root shows at login. */
		rv = ev_token_zone_key(t, &zk);
		if (rv == CKR_OK) {
			ev_gate_renew(t, until);
			t->login = who;
		}
		goto out;
	}
	/* What opens the zone's SO recovery copy, kept while the SO is logged in. */
	rv = ev_token_so_auth(t, pin, len, &so_auth);
	if (rv != CKR_OK)
		goto out;
	/*
	 * The SO, once no read-only session exists, decided under the lock
	 * C_OpenSession takes: none can open between the check and the login.
	 */
	rv = ev_rwlock_wrlock(ev_mod->lock);
	if (rv != CKR_OK)
		goto out;
	if (t->sessions != t->rw_sessions)
		rv = CKR_SESSION_READ_ONLY_EXISTS;
	else {
		t->login = who;
		ev_token_keep_so(t, so_auth, so_digest);
		so_auth = NULL; /* transferred */
	}
	ev_rwlock_unlock(ev_mod->lock);
out:
	ev_mutex_unlock(t->lock);
	ev_secret_free(so_auth);
	if (checked) {
		ev_audit_event e = EV_AUDIT_EVENT_INIT(EV_AUDIT_LOGIN, rv == CKR_OK
									   ? EV_AUDIT_OK
									   : ev_audit_outcome_of(rv));

		e.zone = t->id;
		e.user = who;
		e.reason = rv == CKR_OK ? NULL : ev_audit_reason(rv);
		/* A refusal, or the SO's, is synced at once; a user's success within the watcher's
		 * tick (audit.h). */
		e.sync_later = rv == CKR_OK && who != CKU_SO;
		ev_audit_emit(&e);
	}
	return rv;
}

CK_RV
ev_session_logout(ev_token *t)
{
	CK_RV rv;

	rv = ev_mutex_lock(t->lock);
	if (rv != CKR_OK)
		return rv;
	if (t->login == EV_NOBODY) {
		ev_mutex_unlock(t->lock);
		return CKR_USER_NOT_LOGGED_IN;
	}
	t->login = EV_NOBODY;
	atomic_store(&t->attested_until, 0); /* the next login brings its own evidence */
	ev_token_forget_key(t);
	ev_token_forget_so(t);
	if (ev_rwlock_rdlock(ev_mod->lock) == CKR_OK) {
		ev_object_wipe_token(t, 1);
		ev_rwlock_unlock(ev_mod->lock);
	}
	/* PKCS#11: the private session objects do not survive a logout. */
	ev_object_drop_private(t);
	ev_mutex_unlock(t->lock);

	/* No operation or search goes on with what only the user could use or see. */
	ev_session_end_token_ops(t);
	return CKR_OK;
}

ev_active *
ev_session_active(ev_session *s, ev_op_kind kind)
{
	switch (kind) {
	case EV_OP_ENCRYPT:
		return &s->enc;
	case EV_OP_DECRYPT:
		return &s->dec;
	case EV_OP_SIGN:
		return &s->sign;
	case EV_OP_VERIFY:
		return &s->verify;
	case EV_OP_DIGEST:
		return &s->digest;
	}
	return NULL;
}

/* The attribute that must be true for a key to serve an operation. */
static CK_ATTRIBUTE_TYPE
usage_attr(ev_op_kind kind)
{
	switch (kind) {
	case EV_OP_ENCRYPT:
		return CKA_ENCRYPT;
	case EV_OP_DECRYPT:
		return CKA_DECRYPT;
	case EV_OP_SIGN:
		return CKA_SIGN;
	case EV_OP_VERIFY:
		return CKA_VERIFY;
	default:
		return 0;
	}
}

/*
 * The spare re-initialised for the same material (ev_op_reuse() compares
 * it) and mechanism, or NULL; either way no spare is kept after.
 */
static ev_op *
take_spare(ev_active *a, ev_op_kind kind, const CK_MECHANISM *mech, const ev_key *key)
{
	ev_op *op = a->spare;

	a->spare = NULL; /* ours */
	if (op != NULL && (key == NULL || ev_op_reuse(op, kind, mech, key) != CKR_OK)) {
		ev_op_free(op);
		op = NULL;
	}
	/* After op, which borrows it; key, the caller's reference, backs op now. */
	ev_key_free(a->spare_mat);
	a->spare_mat = NULL;
	return op;
}

/*
 * The key object of a C_*Init: the one the last operation of the kind
 * used when it has the handle and was not destroyed since (no lookup, no
 * reference taken), else ev_object_get()'s. A reference, the caller's.
 */
static CK_RV
init_key(ev_session *s, ev_active *a, CK_OBJECT_HANDLE h, ev_object **out)
{
	ev_object *o = a->spare_key;
	CK_RV rv;

	a->spare_key = NULL; /* ours */
	if (o != NULL && o->handle == h && !atomic_load(&o->destroyed)) {
		*out = o;
		return CKR_OK;
	}
	ev_object_put(o);
	rv = ev_object_get(s, h, out);
	return rv == CKR_OBJECT_HANDLE_INVALID ? CKR_KEY_HANDLE_INVALID : rv;
}

CK_RV
ev_session_op_init(ev_session *s, ev_op_kind kind, const CK_MECHANISM *mech, CK_OBJECT_HANDLE hkey)
{
	ev_active *a = ev_session_active(s, kind);
	ev_key *key = NULL;
	ev_object *o = NULL;
	ev_op *op = NULL;
	int need_login = 0, cached = 0, always_auth = 0;
	CK_RV rv;

	if (a == NULL)
		return CKR_GENERAL_ERROR;
	if (a->op != NULL)
		return CKR_OPERATION_ACTIVE;
	a->dead = CKR_OK;
	if (ev_mech_find(mech->mechanism) == NULL)
		return CKR_MECHANISM_INVALID;
	if (kind != EV_OP_DIGEST) {
		rv = init_key(s, a, hkey, &o);
		if (rv != CKR_OK)
			goto out;
		/* The parked operation's material, when it is the key's, needs no new reference. */
		rv = ev_object_use(s, o, usage_attr(kind), mech->mechanism,
		    a->spare != NULL ? a->spare_mat : NULL, &key, &cached, &always_auth);
		if (rv == CKR_OBJECT_HANDLE_INVALID)
			rv = CKR_KEY_HANDLE_INVALID;
		if (rv == CKR_OK && o->cls != CKO_PUBLIC_KEY)
			rv = ev_gate_use(s->token);
		if (rv == CKR_OK && !cached)
			rv = ev_object_key(o, &key);
		if (rv != CKR_OK)
			goto out;
		if (key == NULL) {
			/* The material is the spare's: its reference becomes ours. */
			key = a->spare_mat;
			a->spare_mat = NULL; /* transferred; the spare still borrows it */
		}
		/* CKA_ALWAYS_AUTHENTICATE: each signature or decryption asks for the PIN. */
		need_login = (kind == EV_OP_SIGN || kind == EV_OP_DECRYPT) &&
		    o->cls == CKO_PRIVATE_KEY && always_auth;
	}
	op = take_spare(a, kind, mech, key);
	if (op == NULL) {
		rv = ev_op_new(kind, mech, key, &op);
		if (rv != CKR_OK)
			goto out;
	}
	a->op = op;
	a->key = o;
	o = NULL; /* transferred */
	a->mat = key;
	key = NULL; /* transferred */
	a->need_login = need_login;
out:
	/*
	 * A failed init took the spare's key reference: the spare goes too,
	 * for a kept context is always held through its key object, which is
	 * how C_DestroyObject knows whether any session holds a key.
	 */
	if (rv != CKR_OK && a->spare_key == NULL)
		drop_spare(a);
	ev_key_free(key);
	ev_object_put(o);
	return rv;
}

static CK_RV
init_call_body(CK_SESSION_HANDLE h, ev_op_kind kind, const CK_MECHANISM *mech,
    CK_OBJECT_HANDLE key)
{
	ev_session *s;
	CK_RV rv;

	rv = ev_check_init();
	if (rv != CKR_OK)
		return rv;
	rv = ev_session_acquire(h, &s);
	if (rv != CKR_OK)
		return rv;
	if (mech == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else
		rv = ev_session_op_init(s, kind, mech, key);
	ev_session_release(s);
	return rv;
}

CK_RV
ev_session_init_call(CK_SESSION_HANDLE h, ev_op_kind kind, const CK_MECHANISM *mech,
    CK_OBJECT_HANDLE key)
{
	CK_RV rv;

	ev_errq_mark();
	rv = init_call_body(h, kind, mech, key);
	ev_errq_restore();
	return rv;
}

/*
 * May a data call go on with this operation: there is one
 * (CKR_OPERATION_NOT_INITIALIZED), and its key was not revoked or
 * destroyed meanwhile (CKR_KEY_HANDLE_INVALID, once; the operation ends).
 */
static CK_RV
op_alive(ev_active *a)
{
	CK_RV rv;

	if (a->op == NULL) {
		rv = a->dead != CKR_OK ? a->dead : CKR_OPERATION_NOT_INITIALIZED;
		a->dead = CKR_OK;
		return rv;
	}
	if (a->key != NULL && atomic_load(&a->key->destroyed)) {
		ev_active_end(a);
		return CKR_KEY_HANDLE_INVALID;
	}
	return CKR_OK;
}

/* The use counter of a data call's operation (digests have no key, so none). */
static ev_use_op
use_of(ev_op_kind kind)
{
	switch (kind) {
	case EV_OP_ENCRYPT:
		return EV_USE_ENCRYPT;
	case EV_OP_DECRYPT:
		return EV_USE_DECRYPT;
	case EV_OP_VERIFY:
		return EV_USE_VERIFY;
	default:
		return EV_USE_SIGN;
	}
}

static CK_RV
data_call_body(CK_SESSION_HANDLE h, ev_op_kind kind, ev_step step, const CK_BYTE *in,
    CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	/* Encryption and decryption updates produce output; the others only absorb. */
	int update_out = kind == EV_OP_ENCRYPT || kind == EV_OP_DECRYPT;
	ev_active *a;
	ev_session *s;
	CK_RV rv;

	rv = ev_check_init();
	if (rv != CKR_OK)
		return rv;
	rv = ev_session_acquire(h, &s);
	if (rv != CKR_OK)
		return rv;
	a = ev_session_active(s, kind);
	rv = op_alive(a);
	if (rv != CKR_OK)
		goto out;
	if (a->need_login) {
		/* The operation waits for C_Login(CKU_CONTEXT_SPECIFIC). */
		rv = CKR_USER_NOT_LOGGED_IN;
		goto out;
	}
	if ((step != EV_STEP_FINAL && in == NULL && inlen > 0) ||
	    ((step != EV_STEP_UPDATE || update_out) && outlen == NULL)) {
		rv = CKR_ARGUMENTS_BAD;
		ev_active_end(a);
		goto out;
	}
	switch (step) {
	case EV_STEP_ONESHOT:
		if (ev_op_in_multipart(a->op)) {
			/* A single-part call cannot finish a multi-part operation; it ends it. */
			rv = CKR_OPERATION_ACTIVE;
			ev_active_end(a);
			goto out;
		}
		rv = ev_op_oneshot(a->op, in, inlen, out, outlen);
		break;
	case EV_STEP_UPDATE:
		rv = ev_op_update(a->op, in, inlen, update_out ? out : NULL,
		    update_out ? outlen : NULL);
		break;
	case EV_STEP_FINAL:
		rv = ev_op_final(a->op, out, outlen);
		break;
	}
	/* A completed operation (not an update, nor a size query, which leaves it active). */
	if (rv == CKR_OK && step != EV_STEP_UPDATE && !ev_op_active(a->op) && a->key != NULL)
		ev_object_count(a->key, use_of(kind));
	if (!ev_op_active(a->op))
		active_close(a, 1);
out:
	ev_session_release(s);
	return rv;
}

CK_RV
ev_session_data_call(CK_SESSION_HANDLE h, ev_op_kind kind, ev_step step, const CK_BYTE *in,
    CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	CK_RV rv;

	ev_errq_mark();
	rv = data_call_body(h, kind, step, in, inlen, out, outlen);
	ev_errq_restore();
	return rv;
}

static CK_RV
verify_call_body(CK_SESSION_HANDLE h, ev_step step, const CK_BYTE *data, CK_ULONG len,
    const CK_BYTE *sig, CK_ULONG siglen)
{
	ev_session *s;
	CK_RV rv;

	rv = ev_check_init();
	if (rv != CKR_OK)
		return rv;
	rv = ev_session_acquire(h, &s);
	if (rv != CKR_OK)
		return rv;
	rv = op_alive(&s->verify);
	if (rv != CKR_OK)
		goto out;
	if ((step != EV_STEP_FINAL && data == NULL && len > 0) ||
	    (step != EV_STEP_UPDATE && sig == NULL)) {
		rv = CKR_ARGUMENTS_BAD;
		ev_active_end(&s->verify);
		goto out;
	}
	switch (step) {
	case EV_STEP_ONESHOT:
		if (ev_op_in_multipart(s->verify.op)) {
			rv = CKR_OPERATION_ACTIVE;
			ev_active_end(&s->verify);
			goto out;
		}
		rv = ev_op_verify(s->verify.op, data, len, sig, siglen);
		break;
	case EV_STEP_UPDATE:
		rv = ev_op_update(s->verify.op, data, len, NULL, NULL);
		break;
	case EV_STEP_FINAL:
		rv = ev_op_verify_final(s->verify.op, sig, siglen);
		break;
	}
	/* A verification is a use of the key whatever its verdict. */
	if ((rv == CKR_OK || rv == CKR_SIGNATURE_INVALID) && step != EV_STEP_UPDATE &&
	    s->verify.key != NULL)
		ev_object_count(s->verify.key, EV_USE_VERIFY);
	if (!ev_op_active(s->verify.op))
		active_close(&s->verify, 1);
out:
	ev_session_release(s);
	return rv;
}

CK_RV
ev_session_verify_call(CK_SESSION_HANDLE h, ev_step step, const CK_BYTE *data, CK_ULONG len,
    const CK_BYTE *sig, CK_ULONG siglen)
{
	CK_RV rv;

	ev_errq_mark();
	rv = verify_call_body(h, step, data, len, sig, siglen);
	ev_errq_restore();
	return rv;
}
