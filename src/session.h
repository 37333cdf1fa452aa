/*
 * Sessions: their state, their active operations and searches.
 *
 * A session is reference counted: ev_session_acquire() finds it in the
 * session index under the read lock of the index's shard that holds its
 * handle (no module-wide lock), takes a reference and then its own lock,
 * so a concurrent C_CloseSession can never free it under a caller.
 *
 * Lock order, outermost first: a session's lock (one at a time: nothing
 * here holds two), its token's lock, ev_mod->lock (held briefly; only
 * object locks and index shard locks are taken inside it), an object's
 * lock, ev_mod->store_lock. An index shard's lock is held only for a
 * lookup, insertion or removal, and nothing is taken inside it: taken
 * alone by ev_session_acquire(), inside ev_mod->lock (write) by open
 * and close.
 */
#ifndef EV_SESSION_H
#define EV_SESSION_H

#include <stdatomic.h>

#include "common.h"
#include "lock.h"
#include "mech/mech.h"
#include "token.h"

struct ev_object;

/*
 * One active cryptographic operation and the key object it holds.
 *
 * The last ended operation of the kind is kept (spare, ev_op_park()) with
 * a reference to its material, so the next C_*Init with the same key
 * material and mechanism re-initialises its OpenSSL contexts instead of
 * making and keying new ones (ev_op_reuse()). Every check of an init is
 * made again first; only the set-up is saved. The last ended operation's
 * key object is kept too (spare_key), so the next C_*Init with the same
 * handle finds it without the module's object map (ev_mod->lock) and
 * takes no reference: an object leaves the map only marked destroyed,
 * and a destroyed one is looked up again. ev_object_use() makes every
 * check of ev_object_get() again (visibility) with the usage checks, under
 * one read lock of the object. The spares go with ev_active_end():
 * C_CloseSession, C_Logout, revocation and destruction
 * (ev_session_end_dead_ops()), so no material outlives what ends its use.
 * A key's spare is always kept with spare_key, its object's reference:
 * C_DestroyObject of a key no one else references skips that walk.
 */
typedef struct ev_active {
	ev_op *op;
	struct ev_object *key; /* a reference; NULL for digests */
	ev_key *mat;           /* a reference to the key's material, which op borrows */
	int need_login;        /* CKA_ALWAYS_AUTHENTICATE: no data call before C_Login(CKU_CONTEXT_SPECIFIC) */
	CK_RV dead;            /* ended because its key was revoked, destroyed or retired: the next call's answer */
	ev_op *spare;          /* a parked op, or NULL */
	ev_key *spare_mat;     /* the reference spare borrows its key from */
	struct ev_object *spare_key; /* the last ended operation's key (a reference), or NULL */
} ev_active;

typedef struct ev_session {
	CK_SESSION_HANDLE handle;
	ev_token *token;
	CK_FLAGS flags;          /* CKF_RW_SESSION | CKF_SERIAL_SESSION */
	atomic_int refs;
	int closed;              /* under lock */
	int removed;             /* closed because its token left the slot (under lock) */
	ev_mutex *lock;
	ev_active enc, dec, sign, verify, digest;
	CK_OBJECT_HANDLE *found; /* search results */
	size_t nfound, pos;
	int finding;
} ev_session;

/*
 * The session index's shard locks, made at C_Initialize after
 * ev_lock_setup() (CKR_CANT_LOCK), freed (with the index's entries: the
 * sessions themselves are ev_mod->sessions') when the module's state is.
 * _free is a no-op on what was never made.
 */
CK_RV ev_session_index_new(void);
void ev_session_index_free(void);

/* C_OpenSession. */
CK_RV ev_session_open(CK_SLOT_ID slot, CK_FLAGS flags, CK_SESSION_HANDLE *out);

/* C_CloseSession: ends its operations, destroys its session objects. */
CK_RV ev_session_close(CK_SESSION_HANDLE h);

/* C_CloseAllSessions (slot) and C_Finalize (every slot: all = 1). */
CK_RV ev_session_close_all(CK_SLOT_ID slot, int all);

/*
 * Find a session, take a reference and lock it, after acting on other
 * processes' changes (ev_sync()). CKR_SESSION_HANDLE_INVALID,
 * CKR_DEVICE_REMOVED (closed by its token leaving while we waited). Call with no lock
 * held. Release with ev_session_release().
 */
CK_RV ev_session_acquire(CK_SESSION_HANDLE h, ev_session **out) EV_MUST_CHECK;
void ev_session_release(ev_session *s);

/* The PKCS#11 session state (CKS_RO_PUBLIC_SESSION ... CKS_RW_SO_FUNCTIONS). */
CK_STATE ev_session_state(const ev_session *s);

/* State predicates, one line each where they are used. */
int ev_session_rw(const ev_session *s);
int ev_session_user(const ev_session *s); /* the normal user is logged in */
int ev_session_so(const ev_session *s);

/* End one operation (frees op and the spare, drops the key references). */
void ev_active_end(ev_active *a);

/*
 * End every operation and search of every session of a token, locking
 * one session at a time: call without any session lock held.
 */
void ev_session_end_token_ops(ev_token *t);

/*
 * The token of these sessions has left its slot (revoked, or
 * re-initialised by another process): they are closed, as PKCS#11 says
 * (later calls answer CKR_SESSION_HANDLE_INVALID; one that was waiting
 * for the session, CKR_DEVICE_REMOVED), and the token is logged out.
 * Call with no session lock held.
 */
void ev_session_removed(ev_token *t);

/*
 * Operations whose key object was revoked or destroyed end now, so the
 * material they hold is wiped; their next call answers
 * CKR_KEY_HANDLE_INVALID. Signing and encryption with a retired
 * generation end too (CKR_KEY_FUNCTION_NOT_PERMITTED). Call with no
 * session lock held.
 */
void ev_session_end_dead_ops(void);

/*
 * C_Login, with s acquired. CKU_CONTEXT_SPECIFIC re-authenticates the
 * user for the operation just started with a CKA_ALWAYS_AUTHENTICATE key
 * (CKR_OPERATION_NOT_INITIALIZED when there is none). CKR_USER_TYPE_INVALID,
 * CKR_USER_ALREADY_LOGGED_IN, CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
 * CKR_SESSION_READ_ONLY_EXISTS, and the errors of ev_token_check_pin().
 */
CK_RV ev_session_login(ev_session *s, CK_USER_TYPE who, const CK_UTF8CHAR *pin, CK_ULONG len);

/*
 * C_Logout of a token, called with no session lock held: forgets the zone
 * key and the private keys' material, destroys the private session
 * objects, ends every operation of the token's sessions.
 * CKR_USER_NOT_LOGGED_IN.
 */
CK_RV ev_session_logout(ev_token *t);

/*
 * Start an operation of a kind in a session with a key handle (0 for
 * digests): checks the key's usage attribute for the operation
 * (CKR_KEY_FUNCTION_NOT_PERMITTED), the mechanism against the key, and
 * that no operation of that kind is active (CKR_OPERATION_ACTIVE).
 */
CK_RV ev_session_op_init(ev_session *s, ev_op_kind kind, const CK_MECHANISM *mech,
    CK_OBJECT_HANDLE key);

/* The active operation of a kind, or NULL. */
ev_active *ev_session_active(ev_session *s, ev_op_kind kind);

/* Which call of an operation: single-part, update, or final. */
typedef enum ev_step {
	EV_STEP_ONESHOT,
	EV_STEP_UPDATE,
	EV_STEP_FINAL,
} ev_step;

/*
 * The body of C_EncryptInit, C_DecryptInit, C_SignInit, C_VerifyInit,
 * C_DigestInit: find the session, check the arguments, start.
 */
CK_RV ev_session_init_call(CK_SESSION_HANDLE h, ev_op_kind kind, const CK_MECHANISM *mech,
    CK_OBJECT_HANDLE key);

/*
 * The body of every data call of encryption, decryption, signing and
 * digesting (C_Encrypt, C_EncryptUpdate, C_EncryptFinal, C_Sign, ...):
 * ends the operation as PKCS#11 says (any error but CKR_BUFFER_TOO_SMALL,
 * and success with an output buffer, of a final or single-part call).
 */
CK_RV ev_session_data_call(CK_SESSION_HANDLE h, ev_op_kind kind, ev_step step,
    const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen);

/* The body of C_Verify, C_VerifyUpdate, C_VerifyFinal. */
CK_RV ev_session_verify_call(CK_SESSION_HANDLE h, ev_step step, const CK_BYTE *data,
    CK_ULONG len, const CK_BYTE *sig, CK_ULONG siglen);

#endif
