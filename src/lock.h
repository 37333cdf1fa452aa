/*
 * Locks that follow the application's choice in C_Initialize: the
 * operating system's primitives (CKF_OS_LOCKING_OK, or no threads at all),
 * or the application's own mutex callbacks when it gives them without
 * CKF_OS_LOCKING_OK. With callbacks, a read-write lock is a plain mutex.
 */
#ifndef EV_LOCK_H
#define EV_LOCK_H

#include "common.h"

typedef struct ev_mutex ev_mutex;
typedef struct ev_rwlock ev_rwlock;

/*
 * Choose the locking model from C_Initialize's arguments (NULL: none).
 * CKR_ARGUMENTS_BAD when only some of the four callbacks are given. Called
 * before any lock is made, while none is alive.
 */
CK_RV ev_lock_setup(const CK_C_INITIALIZE_ARGS *args);

/*
 * A new lock, or NULL (out of memory, or the application's CreateMutex
 * failed). _free: the lock must not be held; NULL is a no-op. Locking
 * answers CKR_OK, CKR_CANT_LOCK, or whatever the application's LockMutex
 * answers; a caller that gets anything else must not unlock.
 */
ev_mutex *ev_mutex_new(void);
void ev_mutex_free(ev_mutex *m);
CK_RV ev_mutex_lock(ev_mutex *m) EV_MUST_CHECK;
void ev_mutex_unlock(ev_mutex *m);

ev_rwlock *ev_rwlock_new(void);
void ev_rwlock_free(ev_rwlock *l);
CK_RV ev_rwlock_rdlock(ev_rwlock *l) EV_MUST_CHECK;
CK_RV ev_rwlock_wrlock(ev_rwlock *l) EV_MUST_CHECK;
void ev_rwlock_unlock(ev_rwlock *l);

#endif
