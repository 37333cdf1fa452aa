/*
 * Objects: token objects (in the store, handle = store id, loaded into the
 * process on first use) and session objects (in memory only).
 *
 * Objects are reference counted: ev_object_get() returns a reference,
 * ev_object_put() drops it; a destroyed object is freed when the last
 * operation using it lets go.
 *
 * An object's lock guards its attributes and its cached key. It is taken
 * after the token's lock and ev_mod->lock, before ev_mod->store_lock, and
 * never twice by one thread (with the application's mutexes it is a plain
 * mutex): no function here that takes it is called with it held.
 */
#ifndef EV_OBJECT_H
#define EV_OBJECT_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "attr.h"
#include "common.h"
#include "key.h"
#include "lock.h"
#include "session.h"
#include "token.h"
#include "uses.h"

typedef struct ev_object {
	CK_OBJECT_HANDLE handle;
	ev_token *token;
	atomic_int refs;
	atomic_int destroyed;    /* set under ev_mod->lock (write), read without it */
	CK_OBJECT_CLASS cls;
	int on_token;            /* CKA_TOKEN */
	int private;             /* CKA_PRIVATE */
	CK_SESSION_HANDLE owner; /* session objects: the creating session */
	/* copies of a token key: the token object copied (transitively); revoked and retired with it */
	CK_OBJECT_HANDLE origin;
	CK_OBJECT_HANDLE previous; /* a new generation: the one it replaces (until stored) */
	int64_t generation;
	int64_t retired;         /* unix time it was rotated out, 0 while current (under lock) */
	int64_t destroy_at;      /* retired: when its grace period ends (under lock) */
	ev_rwlock *lock;         /* guards attrs and key: read by every operation's init */
	ev_attrs *attrs;         /* every non-secret attribute */
	/* token objects with secret material; replaced in place (under lock) when another
	 * process rotates the zone key */
	unsigned char *wrapped;
	size_t wrapped_len;
	_Atomic(ev_key *) key;   /* material (one reference), or NULL until unwrapped */
	int unwrap_noted;        /* key.unwrapped was written for it in this process (under lock) */
	/* token objects: operations since the last flush, and the last one's time (uses.h) */
	_Atomic uint64_t uses[EV_USE_OPS];
	_Atomic int64_t last_use[EV_USE_OPS];
} ev_object;

/*
 * One completed operation with a key (uses.h): a relaxed load of the
 * process's switch, time(NULL) (a vDSO read on Linux, no system call), a
 * relaxed atomic add, and a relaxed store of the time only when the
 * second changed; no lock. Nothing for session objects, nor with
 * [audit] enabled = false.
 */
static inline void
ev_object_count(ev_object *o, ev_use_op op)
{
	int64_t now;

	if (!o->on_token || !atomic_load_explicit(&ev_uses_on, memory_order_relaxed))
		return;
	now = (int64_t)time(NULL);
	if (atomic_load_explicit(&o->last_use[op], memory_order_relaxed) != now)
		atomic_store_explicit(&o->last_use[op], now, memory_order_relaxed);
	atomic_fetch_add_explicit(&o->uses[op], 1, memory_order_relaxed);
}

/* Where a new object comes from: decides CKA_LOCAL and friends. */
typedef enum ev_origin {
	EV_ORIGIN_CREATE,   /* C_CreateObject */
	EV_ORIGIN_GENERATE, /* C_GenerateKey(Pair) */
	EV_ORIGIN_UNWRAP,   /* C_UnwrapKey */
	EV_ORIGIN_DERIVE,   /* C_DeriveKey */
	EV_ORIGIN_COPY,     /* C_CopyObject */
	EV_ORIGIN_ROTATE,   /* the next generation of a key (rotate.c) */
} ev_origin;

/*
 * A visible object of the session's token: CKR_OBJECT_HANDLE_INVALID when
 * absent, destroyed, of another token, or private while the user is not
 * logged in. Returns a reference.
 */
CK_RV ev_object_get(ev_session *s, CK_OBJECT_HANDLE h, ev_object **out) EV_MUST_CHECK;

/* Drop a reference. NULL is a no-op. */
void ev_object_put(ev_object *o);

/*
 * The object's key material, unwrapped on first use and then cached.
 * *key is a new reference: the caller drops it with ev_key_free(), and
 * it stays valid until then even if the cache is wiped meanwhile. Call
 * without o->lock. CKR_KEY_HANDLE_INVALID for objects that are not keys,
 * CKR_DEVICE_ERROR when the wrapped material does not open.
 */
CK_RV ev_object_key(ev_object *o, ev_key **key) EV_MUST_CHECK;

/*
 * May this key serve an operation: its usage attribute (CKA_SIGN, ...)
 * is true (else CKR_KEY_FUNCTION_NOT_PERMITTED), the mechanism is in its
 * CKA_ALLOWED_MECHANISMS when that is not empty (else
 * CKR_MECHANISM_INVALID), today is within CKA_START_DATE and
 * CKA_END_DATE, and a retired generation is asked only to verify,
 * decrypt or unwrap before its grace period ends (else
 * CKR_KEY_FUNCTION_NOT_PERMITTED).
 */
CK_RV ev_object_usable(ev_object *o, CK_ATTRIBUTE_TYPE usage, CK_MECHANISM_TYPE mech)
    EV_MUST_CHECK;

/*
 * Make a new object from a caller's template and, for keys, material:
 * applies defaults, refuses attributes the origin may not set
 * (CKR_ATTRIBUTE_READ_ONLY, CKR_ATTRIBUTE_TYPE_INVALID,
 * CKR_TEMPLATE_INCONSISTENT, CKR_TEMPLATE_INCOMPLETE), checks session
 * rights (CKR_SESSION_READ_ONLY, CKR_USER_NOT_LOGGED_IN), wraps the
 * material and stores token objects in one transaction. key is consumed
 * (owned by the object or freed). gen_mech is the generating mechanism or
 * CK_UNAVAILABLE_INFORMATION. extra (may be NULL) are attributes the
 * module sets on top of the template (e.g. inherited by C_CopyObject).
 */
CK_RV ev_object_new(ev_session *s, ev_origin origin, const CK_ATTRIBUTE *tmpl, CK_ULONG count,
    const ev_attrs *base, ev_key *key, CK_MECHANISM_TYPE gen_mech, CK_OBJECT_HANDLE *out);

/*
 * C_GenerateKeyPair's objects: both are made and, for token objects,
 * stored in one transaction, or neither is. pub and priv are consumed.
 */
CK_RV ev_object_new_pair(ev_session *s, const CK_ATTRIBUTE *pub_tmpl, CK_ULONG pub_count,
    const ev_attrs *pub_base, ev_key *pub, const CK_ATTRIBUTE *priv_tmpl, CK_ULONG priv_count,
    const ev_attrs *priv_base, ev_key *priv, CK_MECHANISM_TYPE mech, CK_OBJECT_HANDLE *hpub,
    CK_OBJECT_HANDLE *hpriv);

/*
 * C_DestroyObject, with s acquired. *held is set when the object
 * destroyed was a key that something besides this call still holds (a
 * session's operation or kept context): the caller, once it released s,
 * ends what every session holds of it (ev_session_end_dead_ops()), for
 * the change log's pass finds nothing left to forget in this process. A
 * key nobody holds is gone with this call, and no session is disturbed.
 */
CK_RV ev_object_destroy(ev_session *s, CK_OBJECT_HANDLE h, int *held);

/* C_GetAttributeValue / C_SetAttributeValue on an object. */
CK_RV ev_object_get_attrs(ev_session *s, ev_object *o, CK_ATTRIBUTE *tmpl, CK_ULONG count);
CK_RV ev_object_set_attrs(ev_session *s, ev_object *o, const CK_ATTRIBUTE *tmpl,
    CK_ULONG count);

/* C_CopyObject. */
CK_RV ev_object_copy(ev_session *s, ev_object *o, const CK_ATTRIBUTE *tmpl, CK_ULONG count,
    CK_OBJECT_HANDLE *out);

/*
 * A key's nested template (CKA_WRAP_TEMPLATE, CKA_UNWRAP_TEMPLATE,
 * CKA_DERIVE_TEMPLATE) unpacked into *out, or *out = NULL when it has none
 * or an empty one.
 */
CK_RV ev_object_template(ev_object *o, CK_ATTRIBUTE_TYPE type, ev_attrs **out);

/* A boolean attribute's value (dflt when absent), read under the object's lock. */
int ev_object_is_true(ev_object *o, CK_ATTRIBUTE_TYPE type, int dflt);

/* Whether every attribute of tmpl is the object's, with the same value. */
int ev_object_matches(ev_object *o, const ev_attrs *tmpl) EV_MUST_CHECK;

/* C_GetObjectSize: an estimate of the stored size. */
CK_ULONG ev_object_size(ev_object *o);

/* Search: C_FindObjectsInit collects matching handles into the session. */
CK_RV ev_object_find(ev_session *s, const CK_ATTRIBUTE *tmpl, CK_ULONG count);

/* Destroy the session objects a session created (C_CloseSession). */
void ev_object_drop_session(CK_SESSION_HANDLE h);

/*
 * Drop the cached key material of a token's objects that can be
 * unwrapped again (private ones only, or all). Caller holds t->lock, so
 * no unwrap races the wipe, and ev_mod->lock (read or write); material
 * still in use by a call is wiped when that call drops its reference.
 */
void ev_object_wipe_token(ev_token *t, int private_only);

/*
 * C_Logout: destroy the private session objects of a token's sessions
 * (PKCS#11: they do not survive a logout). Caller holds t->lock.
 */
void ev_object_drop_private(ev_token *t);

/*
 * C_InitToken on an existing zone: every object of the token this process
 * holds (loaded token objects, session objects) is forgotten, so no
 * handle of the old zone stays usable. Caller holds t->lock.
 */
void ev_object_forget_token(ev_token *t);

/*
 * A process revoked or destroyed a token object: forget it here (with
 * the session copies made of it, when revoked), and wipe the cached
 * material (an operation still holding it sees the object destroyed at
 * its next call). Call with no lock held. Whether anything was forgotten.
 */
int ev_object_forget(CK_OBJECT_HANDLE h, int with_copies);

/*
 * A process changed a token object: read its attributes again, in place
 * (operations holding it keep holding the same object). Call with no lock held.
 */
void ev_object_reload(CK_OBJECT_HANDLE h);

/*
 * A process retired a token object (rotation): read it again as
 * ev_object_reload() does, and retire the session copies made of it here.
 * Call with no lock held.
 */
void ev_object_rotated(CK_OBJECT_HANDLE h);

/*
 * Rotation's building blocks (rotate.c).
 *
 * The next generation of a token key: every attribute of old but its
 * material, CKA_ID (id, id_len; id NULL: the SHA-1 of the new
 * CKA_PUBLIC_KEY_INFO, for a key pair's half) and CKA_UNIQUE_ID (new),
 * with key (new material, consumed) and the provenance of a key
 * generated with mech; CKA_EV_GENERATION one more than old's. Not stored
 * yet (*out not shared: its attributes may be read without its lock).
 */
CK_RV ev_object_next_generation(ev_session *s, ev_object *old, ev_key *key,
    CK_MECHANISM_TYPE mech, const void *id, size_t id_len, ev_object **out);

/*
 * Store new generations (consumed, also on failure; a rotation's chunk of
 * any size) and, in the same transaction, run within(arg) (which retires
 * the old ones), then map them; handles[i] gets each handle (set once
 * committed, also when the mapping fails after). *committed: 1 once the
 * transaction has committed, also when the mapping fails after it (the
 * error is returned, but the rotation stands: record it), else 0.
 */
CK_RV ev_object_publish_rotation(ev_session *s, ev_object **fresh, size_t n,
    CK_OBJECT_HANDLE *handles, CK_RV (*within)(void *), void *arg, int *committed);

/*
 * Another process replaced the zone key: the wrapped blobs of this
 * token's loaded objects are read again (ev_object_reload(), which takes
 * the module, store and object locks one at a time, never nested). Caller
 * holds t->lock and no other lock.
 */
void ev_object_rewrapped(ev_token *t);

/*
 * Free an object outright (C_Finalize, the last ev_object_put()); a
 * token object's pending use counts go to ev_use_keep() first.
 */
void ev_object_free(ev_object *o);

/*
 * C_*Init's one look at a key object: under one read lock of o (no
 * reference taken or dropped), whether s may still see it (else
 * CKR_OBJECT_HANDLE_INVALID, as ev_object_get() answers: destroyed, of
 * another token, private without the user), that it is a key
 * (CKR_KEY_HANDLE_INVALID), ev_object_usable()'s checks with its answers,
 * then ev_object_key()'s (CKR_KEY_HANDLE_INVALID past a retired
 * generation's grace period). Then the cached material: *cached = 0 when
 * it is not unwrapped yet (call ev_object_key()); else *key is a new
 * reference (the caller's), or NULL when the material is have, to which
 * the caller already holds a reference (a parked operation's), so no
 * reference count changes. *always_auth: CKA_ALWAYS_AUTHENTICATE (false
 * when absent). On error *key is NULL. Call without o->lock.
 */
CK_RV ev_object_use(ev_session *s, ev_object *o, CK_ATTRIBUTE_TYPE usage, CK_MECHANISM_TYPE mech,
    const ev_key *have, ev_key **key, int *cached, int *always_auth) EV_MUST_CHECK;

#endif
