/*
 * Per-key use counters (doc/audit.md, "Use counters, status and
 * metrics"): how many signatures, decryptions, ... each token key made,
 * counted in the process and added to the store's uses table now and then,
 * so the hot path neither logs nor writes.
 *
 * Counting: ev_object_count() (object.h), once per completed operation
 * (C_Sign, C_SignFinal, C_Verify of any verdict, C_WrapKey with an output
 * buffer, ...; never per update or size query). It adds one to a relaxed
 * atomic in the object: no lock, no allocation, no store access. Session
 * objects, session copies of token keys among them, are not counted.
 *
 * Flushing: ev_use_flush() moves every pending count into the store,
 * where the processes' deltas add up. The watcher thread calls it every
 * [audit] counters_flush seconds, and C_Finalize once more, after the
 * sessions are closed. Without a watcher thread
 * (CKF_LIBRARY_CANT_CREATE_OS_THREADS) only C_Finalize flushes. Counts
 * of a process that ends without C_Finalize since the last flush are
 * lost; they are use statistics, not the audit trail.
 *
 * An object freed with counts pending (destroyed, revoked, forgotten, or
 * let go by its last operation) hands them to ev_use_keep() first: they
 * wait, with the key's identity, on a lock-free list of the process for
 * the next flush. A flush that fails puts everything back there, the
 * counts of one key added up into one entry (so a store that keeps
 * failing holds one entry per key, however many flushes fail), to be
 * written by the next flush.
 *
 * Off: with [audit] enabled = false nothing is counted. C_Initialize sets
 * the process-wide ev_uses_on from the configuration (ev_use_enable());
 * ev_object_count() reads it with a relaxed load and returns when it is
 * 0, and the watcher does not flush.
 *
 * Lock order: ev_use_flush() takes ev_mod->lock (read), then object locks
 * one at a time, then ev_mod->store_lock, never nested: call it with no
 * lock held. ev_use_keep() takes no lock at all.
 */
#ifndef EV_USES_H
#define EV_USES_H

#include <stdatomic.h>

#include "common.h"

struct ev_object;

typedef enum ev_use_op {
	EV_USE_SIGN,
	EV_USE_VERIFY,
	EV_USE_ENCRYPT,
	EV_USE_DECRYPT,
	EV_USE_WRAP,   /* the wrapping key of C_WrapKey */
	EV_USE_UNWRAP, /* the unwrapping key of C_UnwrapKey */
	EV_USE_DERIVE, /* the base key of C_DeriveKey */
	EV_USE_OPS,
} ev_use_op;

/*
 * Whether operations are counted in this process: 1 after ev_use_enable(1),
 * 0 before and after ev_use_enable(0). Read with a relaxed load.
 */
extern atomic_int ev_uses_on;

/*
 * Turn counting on or off for the process: C_Initialize, from [audit]
 * enabled, before any object exists; C_Finalize turns it off after the
 * last flush.
 */
void ev_use_enable(int on);

/* The operation's name in the store, `edgevault status` and the metrics ("sign", ...). */
const char *ev_use_op_name(ev_use_op op);

/*
 * ev_object_free(): keep the pending counts of a token object about to be
 * freed for the next flush. Nothing for a session object, an object with
 * none, or when the module is not initialised in this process (C_Finalize
 * flushed already; a child after fork() holds its parent's counts). An
 * allocation failure loses them (logged).
 */
void ev_use_keep(struct ev_object *o);

/*
 * Write every pending count to the store in one transaction. CKR_OK
 * (also when there was nothing to write), or the store's error: the
 * counts are kept for the next flush.
 */
CK_RV ev_use_flush(void) EV_MUST_CHECK;

/*
 * Forget the kept counts without writing them: in a child after fork()
 * (they are its parent's), and at the end of C_Finalize (what a failed
 * last flush left: logged).
 */
void ev_use_discard(void);

#endif
