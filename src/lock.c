#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lock.h"

/* The application's callbacks, when it asked us to use them. */
static struct {
	int use_app;
	CK_CREATEMUTEX create;
	CK_DESTROYMUTEX destroy;
	CK_LOCKMUTEX lock;
	CK_UNLOCKMUTEX unlock;
} app;

/*
 * Every lock has cache lines of its own: taking one (a read lock too)
 * writes it, so two locks sharing a line would make threads that take
 * different locks wait for each other's cache.
 */
#define EV_LINE 64

struct ev_mutex {
	pthread_mutex_t os;
	void *app;
};

struct ev_rwlock {
	pthread_rwlock_t os;
	void *app;
};

/* Zeroed memory for a lock, alone on its cache lines, or NULL. */
static void *
line_alloc(size_t size)
{
	size_t n = (size + EV_LINE - 1) / EV_LINE * EV_LINE;
	void *p = aligned_alloc(EV_LINE, n);

	if (p != NULL)
		memset(p, 0, n);
	return p;
}

CK_RV
ev_lock_setup(const CK_C_INITIALIZE_ARGS *args)
{
	int given;

	app.use_app = 0;
	if (args == NULL)
		return CKR_OK;
	given = (args->CreateMutex != NULL) + (args->DestroyMutex != NULL) +
	    (args->LockMutex != NULL) + (args->UnlockMutex != NULL);
	if (given != 0 && given != 4)
		return CKR_ARGUMENTS_BAD;
	/* With CKF_OS_LOCKING_OK we may choose, and the OS's locks are faster. */
	if (given == 4 && !(args->flags & CKF_OS_LOCKING_OK)) {
		app.use_app = 1;
		app.create = args->CreateMutex;
		app.destroy = args->DestroyMutex;
		app.lock = args->LockMutex;
		app.unlock = args->UnlockMutex;
	}
	return CKR_OK;
}

static void *
app_new(void)
{
	void *m = NULL;

	if (app.create(&m) != CKR_OK)
		return NULL;
	return m;
}

ev_mutex *
ev_mutex_new(void)
{
	ev_mutex *m = line_alloc(sizeof(*m));

	if (m == NULL)
		return NULL;
	if (app.use_app) {
		m->app = app_new();
		if (m->app == NULL) {
			free(m);
			return NULL;
		}
	} else if (pthread_mutex_init(&m->os, NULL) != 0) {
		free(m);
		return NULL;
	}
	return m;
}

void
ev_mutex_free(ev_mutex *m)
{
	if (m == NULL)
		return;
	if (m->app != NULL)
		app.destroy(m->app);
	else
		pthread_mutex_destroy(&m->os);
	free(m);
}

CK_RV
ev_mutex_lock(ev_mutex *m)
{
	if (m->app != NULL)
		return app.lock(m->app);
	return pthread_mutex_lock(&m->os) == 0 ? CKR_OK : CKR_CANT_LOCK;
}

void
ev_mutex_unlock(ev_mutex *m)
{
	if (m->app != NULL)
		(void)app.unlock(m->app); /* nothing useful to do if it fails */
	else
		pthread_mutex_unlock(&m->os);
}

ev_rwlock *
ev_rwlock_new(void)
{
	ev_rwlock *l = line_alloc(sizeof(*l));

	if (l == NULL)
		return NULL;
	if (app.use_app) {
		l->app = app_new();
		if (l->app == NULL) {
			free(l);
			return NULL;
		}
	} else if (pthread_rwlock_init(&l->os, NULL) != 0) {
		free(l);
		return NULL;
	}
	return l;
}

void
ev_rwlock_free(ev_rwlock *l)
{
	if (l == NULL)
		return;
	if (l->app != NULL)
		app.destroy(l->app);
	else
		pthread_rwlock_destroy(&l->os);
	free(l);
}

CK_RV
ev_rwlock_rdlock(ev_rwlock *l)
{
	if (l->app != NULL)
		return app.lock(l->app);
	return pthread_rwlock_rdlock(&l->os) == 0 ? CKR_OK : CKR_CANT_LOCK;
}

CK_RV
ev_rwlock_wrlock(ev_rwlock *l)
{
	if (l->app != NULL)
		return app.lock(l->app);
	return pthread_rwlock_wrlock(&l->os) == 0 ? CKR_OK : CKR_CANT_LOCK;
}

void
ev_rwlock_unlock(ev_rwlock *l)
{
	if (l->app != NULL)
		(void)app.unlock(l->app);
	else
		pthread_rwlock_unlock(&l->os);
}
