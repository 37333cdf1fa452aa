/*
 * What other processes did, and slot events.
 *
 * Every change another process must learn about (a revocation, a zone
 * created or re-initialised, an object destroyed or changed) is a row of
 * the store's change log, written in the transaction that makes the
 * change. After committing, the writer announces it: it adds one to a
 * counter in a small file shared by every process of the store (mapped
 * into memory) and touches the file, which wakes every process's watcher
 * through inotify.
 *
 * Enforcement does not wait for the watcher: every entry point that
 * starts work (C_OpenSession, C_*Init, single-part calls, and every call
 * that takes a session) calls ev_sync() first, which compares the shared
 * counter with the one this process last acted on (one memory read) and,
 * when they differ, reads the new rows and acts on them at once: revoked
 * and destroyed objects are forgotten and their material wiped, sessions
 * of a revoked zone are marked removed, a slot event is queued.
 *
 * The watcher is one thread per process (none when the application says
 * CKF_LIBRARY_CANT_CREATE_OS_THREADS: then C_WaitForSlotEvent polls in
 * the caller's thread). It also watches the revocation directory and
 * applies each list file dropped there.
 *
 * Lock order: ev_events' refresh lock is outermost: ev_sync() is called
 * with no lock held, and what it does takes session, token, module,
 * object and store locks in their usual order.
 */
#ifndef EV_EVENT_H
#define EV_EVENT_H

#include "common.h"

struct ev_module;
typedef struct ev_events ev_events;

/* The file next to the database that carries the shared counter. */
#define EV_EVENTS_FILE "edgevault.events"

/*
 * Start for an initialised module (the store is open): map the counter,
 * read where the change log stands, watch the counter file and the
 * revocation directory, start the watcher thread unless may_thread is 0.
 * A directory that cannot be watched is logged, not fatal.
 */
CK_RV ev_events_start(struct ev_module *m, int may_thread);

/*
 * C_Finalize, first of all: blocked C_WaitForSlotEvent calls return
 * CKR_CRYPTOKI_NOT_INITIALIZED (waited for until they have), the watcher
 * thread stops. Then ev_events_free().
 */
void ev_events_stop(ev_events *e);
void ev_events_free(ev_events *e);

/* In a child after fork(): the watcher thread is not there; forget it without joining. */
void ev_events_abandon(ev_events *e);

/*
 * Act on changes made since this process last looked. Call with no lock
 * held. CKR_OK, or the store's error (the caller fails closed with it).
 */
CK_RV ev_sync(void) EV_MUST_CHECK;

/* After committing change log rows: tell every process (this one too). */
void ev_events_announce(void);

/*
 * A retired generation is due to be destroyed at `when` (unix time; 1:
 * look at the store now): the watcher sweeps then (rotate.h), if no
 * earlier sweep is already due.
 */
void ev_events_sweep_at(int64_t when);

/* C_WaitForSlotEvent. */
CK_RV ev_events_wait(CK_FLAGS flags, CK_SLOT_ID *slot);

#endif
