/*
 * The module's process-wide state between C_Initialize and C_Finalize.
 *
 * Locking, outermost first (take them only in this order):
 *   watcher's watch_mu      held by the watcher thread around each round
 *                           (event.c; and around fork()): the change log,
 *                           the sweep and the use counters' flush run under it
 *   events' refresh lock    acting on other processes' changes (event.h)
 *   session->lock           one operation at a time per session
 *   token->lock             login state, zone key, key materialisation
 *   ev_mod->lock (rwlock)   the session table, the token table, the object
 *                           map; held only for a lookup or an insertion,
 *                           never across other work
 *   session index shard     (session.c) a lookup, insertion or removal;
 *     (rwlock)              nothing taken inside: alone (ev_session_acquire())
 *                           or inside ev_mod->lock (write: open, close)
 *   object->lock (rwlock)   an object's attributes
 *   ev_mod->store_lock      the SQLite connection and the root (reached under
 *                           it; a quote, ev_root_quote(), runs outside it)
 *   audit writer's a->mu    innermost (audit.c): ev_audit_emit() may be
 *     then its file's flock called with any lock above held and takes no
 *                           other; the flock (another process's) is waited
 *                           for 5 s at most, once per process (callers in
 *                           the 5 s after a timeout try once), since
 *                           callers may hold the store lock; syslog() and
 *                           the per-line fdatasync() run after both are
 *                           released
 *
 * The use counters' flush (ev_use_flush(), uses.h) is called with none of
 * the locks from the refresh lock down held (by the watcher under watch_mu,
 * or by C_Finalize): it takes ev_mod->lock (read) for a lookup, then each
 * object->lock, then ev_mod->store_lock, one at a time, never nested.
 * ev_use_keep() (from ev_object_free(), under any lock) takes none; the
 * hot path's counting (ev_object_count()) is lock-free atomics.
 */
#ifndef EV_MODULE_H
#define EV_MODULE_H

#include <sys/types.h>

#include "common.h"
#include "config.h"
#include "event.h"
#include "handles.h"
#include "lock.h"
#include "root/root.h"
#include "store.h"

typedef struct ev_module {
	pid_t pid;               /* the process that called C_Initialize */
	ev_config *cfg;
	ev_rwlock *lock;
	ev_map sessions;         /* CK_SESSION_HANDLE -> ev_session */
	ev_map tokens;           /* slot ID -> ev_token */
	ev_map objects;          /* CK_OBJECT_HANDLE -> ev_object (loaded token objects and session objects) */
	ev_map session_objects;  /* the session objects of objects alone (borrowed), for searches */
	CK_ULONG next_session;
	CK_ULONG next_object;    /* for session objects */
	CK_ULONG drops;          /* objects forgotten so far (ev_object_forget() and friends) */
	ev_mutex *store_lock;
	ev_store *store;
	ev_root *root;           /* reached on first need */
	ev_events *events;       /* other processes' changes, slot events */
	struct ev_audit *audit;  /* the audit writer (audit.h); never NULL once initialised */
	/* Under store_lock: */
	int root_unreachable;    /* the last attempt to reach the root failed (root.unreachable written) */
	int audit_key_pending;   /* the checkpoint key is still to be set up (ev_audit_key_setup()) */
} ev_module;

/* The state, or NULL when not initialised (or in a child after fork). */
extern ev_module *ev_mod;

/*
 * CKR_OK when the module is initialised in this process, else
 * CKR_CRYPTOKI_NOT_INITIALIZED. Every entry point but C_Initialize,
 * C_GetFunctionList and the interface functions starts with it.
 */
CK_RV ev_check_init(void) EV_MUST_CHECK;

/*
 * Set up and tear down the state (C_Initialize, C_Finalize). Init also
 * applies revocation lists that arrived while no process watched.
 */
CK_RV ev_module_init(const CK_C_INITIALIZE_ARGS *args);
void ev_module_fini(void);

/* C_Finalize, before anything is closed: wake slot event waiters, stop the watcher. */
void ev_module_stop_events(void);

/*
 * The root, reached on first need with ev_mod->store_lock held by the
 * caller; *root stays owned by the module. The root key is created only
 * when the store has no zone yet (else a missing key is an error: a new
 * one could not open the existing zones). CKR_DEVICE_ERROR (unreachable,
 * or root key missing), CKR_PIN_INCORRECT (upstream PIN).
 * Audit: a failure writes root.unreachable, the next success after one
 * root.reachable (once per transition in this process); the first
 * success sets up the audit's checkpoint key (ev_audit_key_setup(), tried
 * again at later calls while it waits for the caller's transaction to
 * end or the root failed; its failure is logged, not returned).
 */
CK_RV ev_module_root(ev_root **root);

/*
 * After a seal or unseal by the root succeeded: the first time, with a
 * tpm2 root, record the TPM name of its storage primary in the store
 * (meta EV_META_PRIMARY_NAME) and pin it (ev_root_pin_primary_name()):
 * every later connection, of this process or another, must show the same
 * primary. Nothing for another backend, or once recorded; a failure is
 * logged, not returned. Caller holds ev_mod->store_lock.
 */
void ev_module_root_record(ev_root *root);

/* Meta key: the TPM name of the primary the store's keys are sealed under. */
#define EV_META_PRIMARY_NAME "tpm_primary_name"

/* Session object handles live above this bit so they never meet a store id. */
#define EV_SESSION_OBJECT_BIT ((CK_ULONG)1 << (sizeof(CK_ULONG) * 8 - 2))

#endif
