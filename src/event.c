/*
 * Changes from other processes, and slot events (event.h).
 *
 * The shared counter lives in a file next to the database, mapped
 * MAP_SHARED: reading it is one load, so every call can afford to look.
 * Writes to a mapping raise no inotify event, so the announcer also sets
 * the file's times (IN_ATTRIB), which wakes the watchers.
 *
 * The slot event queue uses the operating system's mutex and condition
 * variable even when the application gave its own mutex callbacks:
 * PKCS#11's callbacks have no way to wait for a condition.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "event.h"
#include "log.h"
#include "module.h"
#include "object.h"
#include "revoke.h"
#include "rotate.h"
#include "session.h"
#include "token.h"
#include "uses.h"

#define EPOCH_MAP_SIZE 4096

/* Processes share the counter through memory: its atomics must not hide a lock. */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
#define CHANGE_BATCH 4096
/* How often the watcher looks at the change log even when nobody announced. */
#define WATCH_PERIOD_MS 1000
/* How often a waiter with no watcher thread polls. */
#define WAIT_POLL_MS 20

struct ev_events {
	int epoch_fd;
	_Atomic uint64_t *epoch;  /* the shared counter, or &local */
	_Atomic uint64_t local;   /* when the file could not be mapped */
	int mapped;
	int writable;             /* this process may add to the shared counter */
	atomic_uint_fast64_t seen; /* the counter value this process has acted on */
	atomic_int force;         /* look at the change log whatever the counter says */
	int64_t last_change;      /* the last change log row acted on (under refresh) */
	ev_mutex *refresh;
	int ino_fd;               /* -1 when inotify is unavailable */
	int wd_epoch, wd_dir;
	int stop_fd;              /* eventfd: tells the watcher to stop */
	ev_audit *audit;          /* the module's writer: told whether the watcher runs */
	pthread_t thread;
	int has_thread;
	char *dir;                /* the revocation directory, or NULL */
	_Atomic int64_t next_sweep; /* when a retired generation is due to go (0: none known) */
	int64_t next_flush;       /* when the watcher next writes the use counts (uses.h) */
};

/*
 * Held by the watcher thread while it works, and taken around fork(): a
 * child must not inherit SQLite's or OpenSSL's internal locks held by a
 * thread that does not exist there (it would hang in C_Initialize).
 * glibc drops the handlers when the module is unloaded.
 */
static pthread_mutex_t watch_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void
fork_prepare(void)
{
	pthread_mutex_lock(&watch_mu);
}

static void
fork_after(void)
{
	pthread_mutex_unlock(&watch_mu);
}

static void
register_atfork(void)
{
	if (pthread_atfork(fork_prepare, fork_after, fork_after) != 0)
		ev_warn("events: cannot register fork handlers");
}

/* The slot event queue: distinct slots, oldest first. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;      /* an event, or the end */
	pthread_cond_t gone;    /* the last waiter left (C_Finalize waits for it) */
	pid_t pid;              /* the process the queue belongs to */
	int active;             /* between C_Initialize and C_Finalize */
	int waiters;
	int polling;            /* a waiter is polling for the others (no watcher thread) */
	CK_SLOT_ID *slots;
	size_t n, cap;
} q = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.cv = PTHREAD_COND_INITIALIZER,
	.gone = PTHREAD_COND_INITIALIZER,
};

static void
queue_reset(void)
{
	if (q.pid != getpid()) {
		/* A child after fork(): the parent's waiters are not ours. */
		pthread_mutex_init(&q.mu, NULL);
		pthread_cond_init(&q.cv, NULL);
		pthread_cond_init(&q.gone, NULL);
		q.pid = getpid();
		q.waiters = 0;
		q.polling = 0;
	}
	pthread_mutex_lock(&q.mu);
	free(q.slots);
	q.slots = NULL;
	q.n = q.cap = 0;
	q.active = 1;
	pthread_mutex_unlock(&q.mu);
}

/* Queue an event for a slot (once: a slot already waiting is not added again). */
static void
queue_push(CK_SLOT_ID slot)
{
	size_t i;

	pthread_mutex_lock(&q.mu);
	for (i = 0; i < q.n; i++)
		if (q.slots[i] == slot)
			goto out;
	if (q.n == q.cap) {
		size_t cap = q.cap ? q.cap * 2 : 16;
		CK_SLOT_ID *v = realloc(q.slots, cap * sizeof(*v));

		if (v == NULL) {
			ev_error("slot event for slot %lu lost: out of memory", (unsigned long)slot);
			goto out;
		}
		q.slots = v;
		q.cap = cap;
	}
	q.slots[q.n++] = slot;
	pthread_cond_broadcast(&q.cv);
out:
	pthread_mutex_unlock(&q.mu);
}

/*
 * Give a file or directory edgevault creates the owner and group of the
 * database, so a tool run as root does not lock the services out of it.
 * Only root can; for anyone else the database is theirs already.
 */
static void
like_database(int fd, const char *store_dir, mode_t mode_mask)
{
	char path[PATH_MAX];
	struct stat db;

	if (snprintf(path, sizeof(path), "%s/%s", store_dir, EV_STORE_FILE) >= (int)sizeof(path) ||
	    stat(path, &db) != 0)
		return;
	if (geteuid() == 0 && fchown(fd, db.st_uid, db.st_gid) != 0)
		ev_warn("events: cannot give %s's owner to a new file: %s", path, strerror(errno));
	if (fchmod(fd, (db.st_mode & mode_mask) | (mode_mask & 0700)) != 0)
		ev_warn("events: chmod: %s", strerror(errno));
}

/* Map the counter file; on any failure the process keeps a counter of its own. */
static void
epoch_open(ev_events *e, const char *store_dir)
{
	char path[PATH_MAX];
	struct stat st;
	void *p;

	e->epoch = &e->local;
	if (snprintf(path, sizeof(path), "%s/%s", store_dir, EV_EVENTS_FILE) >= (int)sizeof(path))
		return;
	e->writable = 1;
	e->epoch_fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (e->epoch_fd >= 0)
		like_database(e->epoch_fd, store_dir, 0666);
	else if (errno == EEXIST)
		e->epoch_fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (e->epoch_fd < 0 && errno == EACCES) {
		e->writable = 0;
		e->epoch_fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	}
	if (e->epoch_fd < 0) {
		ev_error("events: %s: %s; changes by other processes are noticed within %d ms",
		    path, strerror(errno), WATCH_PERIOD_MS);
		e->writable = 0;
		return;
	}
	if (fstat(e->epoch_fd, &st) != 0 || !S_ISREG(st.st_mode))
		goto unmapped;
	if (st.st_size < EPOCH_MAP_SIZE &&
	    (!e->writable || ftruncate(e->epoch_fd, EPOCH_MAP_SIZE) != 0)) {
		ev_error("events: %s is too short and cannot be extended", path);
		goto unmapped;
	}
	p = mmap(NULL, EPOCH_MAP_SIZE, e->writable ? PROT_READ | PROT_WRITE : PROT_READ,
	    MAP_SHARED, e->epoch_fd, 0);
	if (p == MAP_FAILED) {
		ev_error("events: cannot map %s: %s", path, strerror(errno));
		goto unmapped;
	}
	e->epoch = p;
	e->mapped = 1;
	if (!e->writable)
		ev_warn("events: %s is read-only here: other processes learn of this one's "
			"changes within %d ms", path, WATCH_PERIOD_MS);
	return;
unmapped:
	/* Never written through a mapping that is not there or not writable. */
	e->writable = 0;
}

static void
watch_setup(ev_events *e, const ev_config *cfg)
{
	e->wd_epoch = e->wd_dir = -1;
	e->ino_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (e->ino_fd < 0) {
		ev_error("events: inotify: %s", strerror(errno));
		return;
	}
	if (e->epoch_fd >= 0) {
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s/%s", cfg->store_dir, EV_EVENTS_FILE);
		e->wd_epoch = inotify_add_watch(e->ino_fd, path, IN_ATTRIB | IN_MODIFY);
		if (e->wd_epoch < 0)
			ev_error("events: cannot watch %s: %s", path, strerror(errno));
	}
	if (e->dir != NULL) {
		if (mkdir(e->dir, 0700) == 0) {
			int fd = open(e->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

			if (fd >= 0) {
				like_database(fd, cfg->store_dir, 0770);
				close(fd);
			}
		} else if (errno != EEXIST) {
			ev_error("revocation: cannot create %s: %s", e->dir, strerror(errno));
		}
		e->wd_dir = inotify_add_watch(e->ino_fd, e->dir,
		    IN_CLOSE_WRITE | IN_MOVED_TO | IN_ONLYDIR);
		if (e->wd_dir < 0)
			ev_error("revocation: cannot watch %s: %s; lists are applied only at start "
				 "and through the admin tool", e->dir, strerror(errno));
	}
}

/*
 * What one change means for this process. Objects revoked or destroyed
 * are forgotten with their material; a revoked or re-initialised zone
 * takes its sessions, login and keys with it.
 */
static void
act_on(const ev_change *c, int *dead_keys)
{
	switch (c->kind) {
	case EV_CHANGE_OBJECT_REVOKED:
	case EV_CHANGE_OBJECT_DESTROYED:
		if (ev_object_forget((CK_OBJECT_HANDLE)c->object,
			c->kind == EV_CHANGE_OBJECT_REVOKED))
			*dead_keys = 1;
		if (c->kind == EV_CHANGE_OBJECT_REVOKED)
			queue_push((CK_SLOT_ID)c->zone);
		break;
	case EV_CHANGE_OBJECT_UPDATED:
		ev_object_reload((CK_OBJECT_HANDLE)c->object);
		break;
	case EV_CHANGE_OBJECT_ROTATED:
		ev_object_rotated((CK_OBJECT_HANDLE)c->object);
		*dead_keys = 1; /* signing and encryption with it end */
		queue_push((CK_SLOT_ID)c->zone);
		ev_events_sweep_at(1); /* its grace period ends some day: look when */
		break;
	case EV_CHANGE_OBJECT_EXPIRED:
		/* Its copies go with it: they carry the same material. */
		if (ev_object_forget((CK_OBJECT_HANDLE)c->object, 1))
			*dead_keys = 1;
		queue_push((CK_SLOT_ID)c->zone);
		break;
	case EV_CHANGE_ZONE_REKEYED:
		ev_token_rekeyed((CK_SLOT_ID)c->zone);
		break;
	case EV_CHANGE_ZONE_RESEALED:
		ev_token_resealed((CK_SLOT_ID)c->zone);
		break;
	case EV_CHANGE_ZONE_REVOKED:
	case EV_CHANGE_ZONE_REINIT:
		ev_token_removed((CK_SLOT_ID)c->zone, c->kind == EV_CHANGE_ZONE_REVOKED);
		queue_push((CK_SLOT_ID)c->zone);
		break;
	case EV_CHANGE_ZONE_CREATED:
		queue_push((CK_SLOT_ID)c->zone);
		break;
	}
}

/* Read and act on the change log rows after the last one acted on. */
static CK_RV
refresh(ev_events *e)
{
	ev_change *v = NULL;
	size_t n, i;
	int dead_keys = 0;
	uint64_t now;
	CK_RV rv;

	rv = ev_mutex_lock(e->refresh);
	if (rv != CKR_OK)
		return rv;
	/* The counter first: a change announced after this read makes us look again. */
	atomic_store(&e->force, 0);
	now = atomic_load(e->epoch);
	do {
		rv = ev_mutex_lock(ev_mod->store_lock);
		if (rv != CKR_OK)
			break;
		rv = ev_store_change_since(ev_mod->store, e->last_change, CHANGE_BATCH, &v, &n);
		ev_mutex_unlock(ev_mod->store_lock);
		if (rv != CKR_OK)
			break;
		for (i = 0; i < n; i++)
			act_on(&v[i], &dead_keys);
		if (n > 0)
			e->last_change = v[n - 1].seq;
		free(v);
		v = NULL;
	} while (n == CHANGE_BATCH);
	if (dead_keys)
		ev_session_end_dead_ops();
	if (rv == CKR_OK)
		atomic_store(&e->seen, now);
	else
		atomic_store(&e->force, 1); /* fail closed now, look again next call */
	ev_mutex_unlock(e->refresh);
	return rv;
}

CK_RV
ev_sync(void)
{
	ev_events *e = ev_mod->events;

	if (atomic_load_explicit(e->epoch, memory_order_acquire) ==
		atomic_load_explicit(&e->seen, memory_order_relaxed) &&
	    !atomic_load_explicit(&e->force, memory_order_relaxed))
		return CKR_OK;
	return refresh(e);
}

void
ev_events_announce(void)
{
	ev_events *e = ev_mod->events;

	if (!e->writable) {
		/* This process still acts at once; the others at their watcher's next look. */
		atomic_store(&e->force, 1);
		return;
	}
	atomic_fetch_add(e->epoch, 1);
	/* Wakes the watchers: a write through the mapping raises no inotify event. */
	if (futimens(e->epoch_fd, NULL) != 0)
		ev_debug("events: futimens: %s", strerror(errno));
}

/*
 * Read what inotify has, apply list files that arrived, act on changes.
 * periodic: also look at the change log whoever announced (a writer that
 * died between its commit and its announcement).
 */
static void
watch_once(ev_events *e, int periodic)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int lost = 0;
	ssize_t len;

	if (e->ino_fd >= 0) {
		while ((len = read(e->ino_fd, buf, sizeof(buf))) > 0) {
			char *p = buf;

			while (p < buf + len) {
				const struct inotify_event *ev = (const struct inotify_event *)p;

				if (ev->mask & IN_Q_OVERFLOW)
					lost = 1;
				else if (ev->wd == e->wd_dir && ev->len > 0 && ev->name[0] != '.')
					ev_revoke_file(ev->name);
				p += sizeof(*ev) + ev->len;
			}
		}
	}
	if (lost)
		ev_revoke_scan();
	if (periodic) {
		int64_t last = 0;

		if (ev_mutex_lock(ev_mod->store_lock) == CKR_OK) {
			if (ev_store_change_last(ev_mod->store, &last) != CKR_OK)
				last = 0;
			ev_mutex_unlock(ev_mod->store_lock);
		}
		if (last > e->last_change)
			atomic_store(&e->force, 1);
	}
	if (ev_sync() != CKR_OK)
		ev_debug("events: the change log could not be read; trying again");
}

/* Destroy retired generations whose grace period is over, when one is due. */
static void
sweep_if_due(ev_events *e)
{
	int64_t when = atomic_load(&e->next_sweep), next = 0;

	if (when == 0 || (int64_t)time(NULL) < when)
		return;
	/* Cleared first: a rotation announced meanwhile sets it again (ev_events_sweep_at()). */
	atomic_compare_exchange_strong(&e->next_sweep, &when, 0);
	if (ev_rotate_sweep(&next) == CKR_OK) {
		if (next != 0)
			ev_events_sweep_at(next);
	} else {
		ev_debug("events: retired generations could not be swept; trying again");
		ev_events_sweep_at(when);
	}
}

void
ev_events_sweep_at(int64_t when)
{
	ev_events *e = ev_mod->events;
	int64_t cur = atomic_load(&e->next_sweep);

	while ((cur == 0 || when < cur) &&
	    !atomic_compare_exchange_weak(&e->next_sweep, &cur, when))
		;
}

/* Write the use counts every [audit] counters_flush seconds (uses.h). */
static void
flush_if_due(ev_events *e)
{
	int64_t now = (int64_t)time(NULL);

	/* [audit] enabled = false: nothing is counted, nothing to write. */
	if (!atomic_load_explicit(&ev_uses_on, memory_order_relaxed) || now < e->next_flush)
		return;
	e->next_flush = now + ev_mod->cfg->audit_counters_flush;
	if (ev_use_flush() != CKR_OK)
		ev_debug("events: use counts not written; trying again at the next flush");
}

static void *
watcher(void *arg)
{
	ev_events *e = arg;
	struct pollfd pfd[2];
	sigset_t all;

	/* The host's signals are for the host's threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pfd[0].fd = e->stop_fd;
	pfd[0].events = POLLIN;
	pfd[1].fd = e->ino_fd;
	pfd[1].events = POLLIN;
	for (;;) {
		int r = poll(pfd, e->ino_fd >= 0 ? 2 : 1, WATCH_PERIOD_MS);

		if (r < 0 && errno != EINTR) {
			ev_error("events: poll: %s", strerror(errno));
			break;
		}
		if (r > 0 && (pfd[0].revents & POLLIN))
			break;
		pthread_mutex_lock(&watch_mu);
		watch_once(e, r == 0);
		sweep_if_due(e);
		flush_if_due(e);
		/* [audit] checkpoint_interval also seals the lines of an idle device. */
		ev_audit_checkpoint_if_due(ev_mod->audit);
		pthread_mutex_unlock(&watch_mu);
		/* Not under watch_mu: a host's fork() (fork_prepare) must not wait for a disk sync. */
		ev_audit_sync_later(e->audit);
	}
	return NULL;
}

CK_RV
ev_events_start(ev_module *m, int may_thread)
{
	ev_events *e;
	CK_RV rv;

	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return CKR_HOST_MEMORY;
	e->epoch_fd = e->ino_fd = e->stop_fd = -1;
	e->epoch = &e->local;
	e->refresh = ev_mutex_new();
	if (e->refresh == NULL) {
		free(e);
		return CKR_CANT_LOCK;
	}
	if (m->cfg->revocation_dir != NULL) {
		e->dir = strdup(m->cfg->revocation_dir);
		if (e->dir == NULL) {
			ev_events_free(e);
			return CKR_HOST_MEMORY;
		}
	}
	epoch_open(e, m->cfg->store_dir);
	/* The counter before the log (see refresh()). */
	atomic_store(&e->seen, atomic_load(e->epoch));
	rv = ev_store_change_last(m->store, &e->last_change);
	if (rv != CKR_OK) {
		ev_events_free(e);
		return rv;
	}
	watch_setup(e, m->cfg);
	queue_reset();
	e->next_flush = (int64_t)time(NULL) + m->cfg->audit_counters_flush;
	m->events = e;
	e->audit = m->audit; /* before the watcher starts: it reads it */
	if (may_thread) {
		int err;

		(void)pthread_once(&atfork_once, register_atfork);
		e->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		err = e->stop_fd < 0 ? errno : pthread_create(&e->thread, NULL, watcher, e);
		if (err != 0) {
			ev_error("events: cannot start the watcher thread: %s", strerror(err));
			m->events = NULL;
			ev_events_free(e);
			return CKR_GENERAL_ERROR;
		}
		e->has_thread = 1;
		ev_audit_watched(e->audit, 1);
	}
	return CKR_OK;
}

void
ev_events_stop(ev_events *e)
{
	uint64_t one = 1;

	pthread_mutex_lock(&q.mu);
	q.active = 0;
	pthread_cond_broadcast(&q.cv);
	while (q.waiters > 0)
		pthread_cond_wait(&q.gone, &q.mu);
	free(q.slots);
	q.slots = NULL;
	q.n = q.cap = 0;
	pthread_mutex_unlock(&q.mu);
	if (e == NULL || !e->has_thread)
		return;
	/* From here on, lines sync at once (and C_Finalize syncs the rest). */
	ev_audit_watched(e->audit, 0);
	if (write(e->stop_fd, &one, sizeof(one)) != sizeof(one))
		ev_error("events: cannot stop the watcher: %s", strerror(errno));
	else
		pthread_join(e->thread, NULL);
	e->has_thread = 0;
}

void
ev_events_free(ev_events *e)
{
	if (e == NULL)
		return;
	if (e->mapped)
		munmap((void *)e->epoch, EPOCH_MAP_SIZE);
	if (e->epoch_fd >= 0)
		close(e->epoch_fd);
	if (e->ino_fd >= 0)
		close(e->ino_fd);
	if (e->stop_fd >= 0)
		close(e->stop_fd);
	ev_mutex_free(e->refresh);
	free(e->dir);
	free(e);
}

void
ev_events_abandon(ev_events *e)
{
	if (e == NULL)
		return;
	e->has_thread = 0; /* it did not follow us through fork() */
	ev_events_free(e);
}

CK_RV
ev_events_wait(CK_FLAGS flags, CK_SLOT_ID *slot)
{
	ev_events *e;
	int poller;
	CK_RV rv;

	/* Registered first: C_Finalize frees nothing while a waiter is counted. */
	pthread_mutex_lock(&q.mu);
	if (!q.active) {
		pthread_mutex_unlock(&q.mu);
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	q.waiters++;
	pthread_mutex_unlock(&q.mu);

	e = ev_mod->events;
	poller = !e->has_thread;
	/* What is already committed is an event now, whether or not the watcher has run. */
	rv = ev_sync();
	if (rv == CKR_OK && poller && (flags & CKF_DONT_BLOCK))
		watch_once(e, 1);

	pthread_mutex_lock(&q.mu);
	while (rv == CKR_OK && q.active && q.n == 0 && !(flags & CKF_DONT_BLOCK)) {
		if (poller && !q.polling) {
			/* No watcher thread: this waiter looks, the others sleep. */
			q.polling = 1;
			pthread_mutex_unlock(&q.mu);
			watch_once(e, 1);
			usleep(WAIT_POLL_MS * 1000);
			pthread_mutex_lock(&q.mu);
			q.polling = 0;
		} else if (poller) {
			/* Wake now and then: the one polling may leave with its event. */
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 2 * WAIT_POLL_MS * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&q.cv, &q.mu, &ts);
		} else {
			pthread_cond_wait(&q.cv, &q.mu);
		}
	}
	if (rv != CKR_OK) {
		/* the store's error */
	} else if (!q.active) {
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	} else if (q.n == 0) {
		rv = CKR_NO_EVENT;
	} else {
		*slot = q.slots[0];
		memmove(q.slots, q.slots + 1, (q.n - 1) * sizeof(*q.slots));
		q.n--;
	}
	q.waiters--;
	if (q.waiters == 0 && !q.active)
		pthread_cond_broadcast(&q.gone);
	pthread_mutex_unlock(&q.mu);
	return rv;
}
