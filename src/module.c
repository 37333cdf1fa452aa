#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sodium.h>

#include "audit.h"
#include "log.h"
#include "mech/mech.h"
#include "module.h"
#include "object.h"
#include "revoke.h"
#include "rotate.h"
#include "secmem.h"
#include "session.h"
#include "token.h"
#include "uses.h"

ev_module *ev_mod;

static void audit_key_try(ev_module *m);

/*
 * This process's id, cached: getpid() is a system call (glibc caches
 * nothing since 2.25), slow on some virtual machines (2.4 us measured),
 * and every entry point asks twice per operation. The cache lives in a
 * page of its own marked MADV_WIPEONFORK: the kernel zeroes it in every
 * child, whatever made the child (a fork handler registered before ours
 * that calls PKCS#11, or a raw clone or syscall(SYS_fork), which run no
 * handler), so a child never answers with its parent's id. 0 reads as
 * "ask getpid()", and the answer is kept for the next call. Without the
 * page (mmap or madvise failed: kernels before 4.14) getpid() is asked
 * every time. A child sharing our memory (CLONE_VM without
 * CLONE_THREAD, vfork) is not told apart: it may call nothing here.
 */
static atomic_int *self_pid;
static pthread_once_t self_once = PTHREAD_ONCE_INIT;

static void
self_setup(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	void *p;

	if (pg <= 0)
		return;
	p = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return;
	if (madvise(p, (size_t)pg, MADV_WIPEONFORK) != 0) {
		(void)munmap(p, (size_t)pg);
		return;
	}
	self_pid = p; /* never unmapped: the pthread_once is not run again */
}

static pid_t
self(void)
{
	int pid;

	if (self_pid == NULL)
		return getpid();
	pid = atomic_load_explicit(self_pid, memory_order_relaxed);
	if (pid == 0) {
		/* First call, or first in a child: the page was wiped. */
		pid = (int)getpid();
		atomic_store_explicit(self_pid, pid, memory_order_relaxed);
	}
	return (pid_t)pid;
}

CK_RV
ev_check_init(void)
{
	/* A child after fork() inherits the pointer but not the right to use it. */
	if (ev_mod == NULL || ev_mod->pid != self())
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	return CKR_OK;
}

static void
free_token_cb(CK_ULONG key, void *val, void *arg)
{
	ev_token_free(val);
}

static void
free_object_cb(CK_ULONG key, void *val, void *arg)
{
	ev_object_free(val);
}

static void
free_session_cb(CK_ULONG key, void *val, void *arg)
{
	ev_session *s = val;

	ev_active_end(&s->enc);
	ev_active_end(&s->dec);
	ev_active_end(&s->sign);
	ev_active_end(&s->verify);
	ev_active_end(&s->digest);
	free(s->found);
	ev_mutex_free(s->lock);
	free(s);
}

/*
 * Free everything but the store and the root, which the caller closes (in
 * C_Finalize) or abandons (in a child after fork, where closing them could
 * disturb the parent's database locks or upstream sessions).
 */
static void
free_state(ev_module *m)
{
	ev_map_each(&m->sessions, free_session_cb, NULL);
	ev_map_clear(&m->sessions);
	ev_session_index_free();
	ev_map_clear(&m->session_objects); /* borrowed from objects */
	ev_map_each(&m->objects, free_object_cb, NULL);
	ev_map_clear(&m->objects);
	ev_map_each(&m->tokens, free_token_cb, NULL);
	ev_map_clear(&m->tokens);
	ev_mutex_free(m->store_lock);
	ev_rwlock_free(m->lock);
	ev_config_free(m->cfg);
	free(m);
}

CK_RV
ev_module_init(const CK_C_INITIALIZE_ARGS *args)
{
	ev_root *inherited_root = NULL;
	ev_module *m = NULL;
	int64_t next = 0;
	char err[256] = "";
	CK_RV rv;

	if (ev_mod != NULL) {
		if (ev_mod->pid == getpid())
			return CKR_CRYPTOKI_ALREADY_INITIALIZED;
		/*
		 * A child after fork(): the parent's state is a copy we may
		 * free, but its database connection and upstream sessions are
		 * shared with the parent and must not be closed from here.
		 */
		ev_store_abandon(ev_mod->store);
		ev_events_abandon(ev_mod->events);
		ev_mod->events = NULL;
		ev_audit_abandon(ev_mod->audit);
		ev_mod->audit = NULL;
		inherited_root = ev_mod->root;
		if (inherited_root != NULL)
			ev_root_forked(inherited_root);
		free_state(ev_mod);
		ev_mod = NULL;
		ev_use_discard(); /* the parent's counts: the parent writes them */
	}
	(void)pthread_once(&self_once, self_setup);
	rv = ev_lock_setup(args);
	if (rv != CKR_OK)
		goto out;
	if (ev_secmem_init() != 0) {
		ev_error("cannot initialise libsodium");
		rv = CKR_GENERAL_ERROR;
		goto out;
	}
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	m->pid = getpid();
	m->next_session = 1;
	m->next_object = 1;
	m->root = inherited_root;
	inherited_root = NULL; /* transferred */
	m->lock = ev_rwlock_new();
	m->store_lock = ev_mutex_new();
	if (m->lock == NULL || m->store_lock == NULL || ev_session_index_new() != CKR_OK) {
		rv = CKR_CANT_LOCK;
		goto out;
	}
	rv = ev_config_load(ev_config_path(), &m->cfg, err, sizeof(err));
	if (rv != CKR_OK) {
		ev_error("%s", err);
		goto out;
	}
	rv = ev_store_open(m->cfg->store_dir, EV_STORE_CREATE, &m->store, err, sizeof(err));
	if (rv != CKR_OK) {
		ev_error("%s", err);
		goto out;
	}
	/* After the store, which makes its directory (the audit file's default home). */
	rv = ev_audit_open(m->cfg, &m->audit);
	if (rv != CKR_OK)
		goto out;
	m->audit_key_pending = 1;
	/* [audit] enabled = false turns use counting off too (uses.h). */
	ev_use_enable(m->cfg->audit_enabled);
	ev_mod = m;
	rv = ev_events_start(m, args == NULL || !(args->flags & CKF_LIBRARY_CANT_CREATE_OS_THREADS));
	if (rv != CKR_OK) {
		ev_mod = NULL;
		ev_use_enable(0);
		goto out;
	}
	m = NULL; /* transferred */
	/* Lists dropped while no process watched, before anything is used. */
	ev_revoke_scan();
	/* Retired generations whose grace period ended while no process ran. */
	if (ev_rotate_sweep(&next) != CKR_OK) {
		ev_warn("retired generations could not be swept; the watcher tries again");
		ev_events_sweep_at(1);
	} else if (next != 0) {
		ev_events_sweep_at(next);
	}
out:
	if (m != NULL) {
		ev_audit_close(m->audit);
		ev_store_close(m->store);
		ev_root_free(m->root);
		free_state(m);
	}
	ev_root_free(inherited_root);
	return rv;
}

void
ev_module_fini(void)
{
	ev_module *m = ev_mod;

	if (m == NULL)
		return;
	ev_events_stop(m->events);
	/* The sessions are closed: every count is final. */
	if (ev_use_flush() != CKR_OK)
		ev_warn("use counts could not be written to the store at C_Finalize");
	ev_use_discard();
	ev_use_enable(0);
	ev_mod = NULL;
	ev_events_free(m->events);
	/* A key that waited for a transaction to end: the closing checkpoint needs it. */
	if (m->audit_key_pending && m->root != NULL && ev_mutex_lock(m->store_lock) == CKR_OK) {
		audit_key_try(m);
		ev_mutex_unlock(m->store_lock);
	}
	ev_audit_close(m->audit);
	ev_store_close(m->store);
	ev_root_free(m->root);
	free_state(m);
	ev_mech_fini();
	ev_key_fini();
	ev_secmem_trim();
}

void
ev_module_stop_events(void)
{
	ev_events_stop(ev_mod->events);
}

/*
 * May the root key be created? Only while the store holds no zone: every
 * zone was sealed by an existing root key, and a new one would open none
 * of them. So a missing key (wrong token, wrong key_label, key deleted)
 * is reported when a zone is unlocked, instead of being replaced behind
 * the operator's back. Inside C_InitToken's transaction a zone being
 * re-initialised is already deleted, so a store whose only zone that was
 * may create one.
 */
static unsigned
root_open_flags(void)
{
	int64_t *ids = NULL;
	size_t n = 0;
	unsigned flags = 0;

	if (ev_store_zone_list(ev_mod->store, &ids, &n) == CKR_OK && n == 0)
		flags = EV_ROOT_CREATE_KEY;
	free(ids);
	return flags;
}

/* The root's state changed: root.unreachable (with why) or root.reachable. */
static void
audit_root(ev_module *m, int reachable, const char *why)
{
	ev_audit_event e = EV_AUDIT_EVENT_INIT(
	    reachable ? EV_AUDIT_ROOT_REACHABLE : EV_AUDIT_ROOT_UNREACHABLE,
	    reachable ? EV_AUDIT_OK : EV_AUDIT_FAILED);

	if (reachable == !m->root_unreachable)
		return;
	m->root_unreachable = !reachable;
	e.reason = why;
	ev_audit_emit_to(m->audit, &e);
}

/* Set up the audit's checkpoint key when it is still to be (store lock held, root open). */
static void
audit_key_try(ev_module *m)
{
	CK_RV rv;

	if (!m->audit_key_pending)
		return;
	/*
	 * Failed (logged) or waiting for the caller's transaction: tried again
	 * at the next call. A key that does not match its public half, or a
	 * sealed half that does not open under this root (sealed under
	 * another root key: CKR_ENCRYPTED_DATA_INVALID), will not at the next
	 * call either: given up (logged once, by the setup), not unsealed
	 * again under the store lock at every call.
	 */
	rv = ev_audit_key_setup(m->audit, m->root, m->store);
	m->audit_key_pending = rv != CKR_OK && rv != EVR_AUDIT_KEY_MISMATCH &&
			       rv != CKR_ENCRYPTED_DATA_INVALID;
}

CK_RV
ev_module_root(ev_root **root)
{
	char err[256] = "";
	CK_RV rv;

	if (ev_mod->root == NULL) {
		unsigned char *name = NULL;
		size_t len = 0;

		rv = ev_root_open(ev_mod->cfg, root_open_flags(), &ev_mod->root, err, sizeof(err));
		if (rv != CKR_OK) {
			ev_error("root of trust: %s", err);
			audit_root(ev_mod, 0, err);
			return rv;
		}
		audit_root(ev_mod, 1, NULL);
		/* The TPM primary the store's keys were sealed under: every connection must show it. */
		if (ev_store_meta_get(ev_mod->store, EV_META_PRIMARY_NAME, &name, &len) == CKR_OK &&
		    ev_root_pin_primary_name(ev_mod->root, name, len) != CKR_OK)
			ev_warn("root of trust: the recorded TPM primary name is malformed; not "
				"checked");
		free(name);
	}
	audit_key_try(ev_mod);
	*root = ev_mod->root;
	return CKR_OK;
}

void
ev_module_root_record(ev_root *root)
{
	unsigned char name[EV_ROOT_NAME_MAX], *stored = NULL;
	size_t len = sizeof(name), slen = 0;
	char hex[2 * sizeof(name) + 1];
	CK_RV rv;

	rv = ev_store_meta_get(ev_mod->store, EV_META_PRIMARY_NAME, &stored, &slen);
	free(stored);
	if (rv != EVR_NOT_FOUND)
		return; /* recorded already (and checked at every connection), or unreadable */
	rv = ev_root_primary_name(root, name, &len);
	if (rv != CKR_OK)
		return; /* not a TPM root, or not reachable now: recorded at the next seal */
	rv = ev_store_meta_set(ev_mod->store, EV_META_PRIMARY_NAME, name, len);
	if (rv == CKR_OK)
		rv = ev_root_pin_primary_name(root, name, len);
	if (rv != CKR_OK) {
		ev_warn("root of trust: the TPM primary's name could not be recorded");
		return;
	}
	sodium_bin2hex(hex, sizeof(hex), name, len);
	ev_notice("root of trust: TPM storage primary key recorded (name %s); every connection "
		  "must show it from now on",
		  hex);
}
