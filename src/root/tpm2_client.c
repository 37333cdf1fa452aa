/*
 * The module's side of edgevault-tpm-helper (tpm2_helper.h): when to use
 * it, starting it, one request, one reply.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* posix_spawn_file_actions_addclosefrom_np */
#endif

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "tpm2_helper.h"
#include "tpm2_wire.h"

_Static_assert(EV_TPM_AAD_MAX <= EV_WIRE_AAD_MAX, "the root's associated data must fit a request");

#ifndef P_PIDFD
#define P_PIDFD 3 /* Linux 5.4; glibc 2.36's <sys/wait.h> has no name for it */
#endif

/*
 * The process that started a tabrmd TCTI (0: none did). Inherited by a
 * fork() child, which sees another pid than its own; reset by exec.
 */
static pid_t tabrmd_pid;

int
ev_tcti_is_tabrmd(const char *tcti)
{
	const char *conf = strchr(tcti, ':');
	size_t n = conf != NULL ? (size_t)(conf - tcti) : strlen(tcti);

	return memmem(tcti, n, "tabrmd", 6) != NULL;
}

int
ev_tpm_helper_wanted(const char *tcti)
{
	pid_t self = getpid(), rec;
	char id[64];

	if (ev_tcti_is_tabrmd(tcti)) {
		rec = __atomic_load_n(&tabrmd_pid, __ATOMIC_ACQUIRE);
		if (rec != 0 && rec != self) {
			ev_debug("TPM root: a child of process %ld, which reached tpm2-abrmd: "
				 "the operation runs in the TPM helper",
				 (long)rec);
			return 1;
		}
	}
	if (ev_ossl_default_engine(id, sizeof(id))) {
		ev_debug("TPM root: OpenSSL's default ENGINE \"%s\" would take ESAPI's "
			 "cryptography: the operation runs in the TPM helper",
			 id);
		return 1;
	}
	if (ev_tcti_is_tabrmd(tcti))
		__atomic_store_n(&tabrmd_pid, self, __ATOMIC_RELEASE);
	return 0;
}

/* The environment the helper gets: these, when set; nothing else (no OPENSSL_*, no LD_*). */
static const char *const pass_env[] = {
	"TSS2_LOG",		   /* the TSS's own logging */
	"DBUS_SESSION_BUS_ADDRESS", /* the tabrmd TCTI's bus */
	"DBUS_SYSTEM_BUS_ADDRESS",
	"XDG_RUNTIME_DIR", /* where GLib looks for the session bus without an address */
};

#define ENV_MAX (sizeof(pass_env) / sizeof(pass_env[0]))

/* The helper being run: its pid, and a pidfd for it (-1: the kernel has none). */
struct child {
	pid_t pid;
	int pidfd;
};

/* SIGKILL the child: through its pidfd, which never reaches a reused pid. */
static void
kill_child(const struct child *c)
{
#ifdef SYS_pidfd_send_signal
	if (c->pidfd >= 0) {
		(void)syscall(SYS_pidfd_send_signal, c->pidfd, SIGKILL, NULL, 0);
		return;
	}
#endif
	/* Not reaped by us, so the pid is still ours unless the host reaps with waitpid(-1). */
	(void)kill(c->pid, SIGKILL);
}

/* Collect the ended child's status: 0, or -1 when it is gone already (the host reaped it). */
static int
collect_child(const struct child *c, int *status, int options)
{
	siginfo_t si;
	pid_t w;

	if (c->pidfd >= 0) {
		memset(&si, 0, sizeof(si));
		while (waitid((idtype_t)P_PIDFD, (id_t)c->pidfd, &si, WEXITED | options) != 0) {
			if (errno == EINTR)
				continue;
			if (errno != EINVAL) /* EINVAL: Linux 5.3 has pidfds, not P_PIDFD */
				return -1;
			goto by_pid;
		}
		if (si.si_pid == 0)
			return 1; /* WNOHANG: still running */
		*status = si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8 : si.si_status & 0x7f;
		return 0;
	}
by_pid:
	while ((w = waitpid(c->pid, status, options)) < 0 && errno == EINTR)
		;
	if (w < 0) /* ECHILD: SIGCHLD is ignored here, the kernel reaped it */
		return -1;
	return w == c->pid ? 0 : 1;
}

/* Wait for the child up to ms; then SIGKILL it. Never another child; ECHILD is fine. */
static void
reap(const struct child *c, const char *path, int ms)
{
	struct timespec nap = { 0, 2000000 };
	struct pollfd pfd;
	int64_t end = ev_wire_deadline(ms), left;
	int status = 0, waited = 0, got;

	if (c->pidfd >= 0) {
		/* The pidfd is readable once the child has ended. */
		for (;;) {
			left = end - ev_wire_deadline(0);
			pfd.fd = c->pidfd;
			pfd.events = POLLIN;
			pfd.revents = 0;
			if (poll(&pfd, 1, left > 0 ? (int)left : 0) >= 0 || errno != EINTR)
				break;
		}
		got = collect_child(c, &status, WNOHANG);
	} else {
		while ((got = collect_child(c, &status, WNOHANG)) == 1 && waited < ms) {
			nanosleep(&nap, NULL);
			waited += 2;
		}
	}
	if (got < 0)
		return;
	if (got == 1) {
		/* Still running: stop it. */
		ev_error("TPM helper %s (pid %ld) did not end: killed", path, (long)c->pid);
		kill_child(c);
		(void)collect_child(c, &status, 0);
		return;
	}
	if (WIFSIGNALED(status))
		ev_error("TPM helper %s (pid %ld) was killed by signal %d", path, (long)c->pid,
			 WTERMSIG(status));
	else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
		ev_warn("TPM helper %s (pid %ld) exited with status %d", path, (long)c->pid,
			WEXITSTATUS(status));
}

/*
 * Start the helper on one end of a socketpair; *fd is ours, c the child
 * (its pidfd -1 when the kernel has none). -1 (logged) or 0.
 */
static int
start(const char *path, struct child *c, int *fd)
{
	char *envp[ENV_MAX + 1], *argv[] = { (char *)"edgevault-tpm-helper", NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	size_t i, n = 0;
	int sv[2] = { -1, -1 }, err = 0, fa_ok = 0, attr_ok = 0;

	c->pid = -1;
	c->pidfd = -1;
	for (i = 0; i < ENV_MAX; i++) {
		const char *v = getenv(pass_env[i]);

		if (v != NULL && asprintf(&envp[n], "%s=%s", pass_env[i], v) >= 0)
			n++;
	}
	envp[n] = NULL;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		err = errno;
		ev_error("TPM helper %s: cannot make a socket pair: %s", path, strerror(err));
		goto out;
	}
	err = posix_spawn_file_actions_init(&fa);
	fa_ok = err == 0;
	if (err == 0) {
		err = posix_spawnattr_init(&attr);
		attr_ok = err == 0;
	}
	sigemptyset(&none);
	sigfillset(&all);
	/* The host's signal mask and ignored signals are not the helper's. */
	if (err == 0)
		err = posix_spawnattr_setsigmask(&attr, &none);
	if (err == 0)
		err = posix_spawnattr_setsigdefault(&attr, &all);
	if (err == 0)
		err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	/* stdin and stdout: the socket; stderr: the host's; no other descriptor of the host. */
	if (err == 0)
		err = posix_spawn_file_actions_adddup2(&fa, sv[1], 0);
	if (err == 0)
		err = posix_spawn_file_actions_adddup2(&fa, sv[1], 1);
	if (err == 0)
		err = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	if (err != 0) {
		ev_error("TPM helper %s: cannot prepare its start: %s", path, strerror(err));
		goto out;
	}
	err = posix_spawn(&c->pid, path, &fa, &attr, argv, envp);
	if (err != 0) {
		ev_error("TPM helper %s cannot be started ([root] helper): %s", path,
			 strerror(err));
		goto out;
	}
#ifdef SYS_pidfd_open
	/* Ours and not yet reaped: the pid is the helper's. ENOSYS before Linux 5.3. */
	c->pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0); /* close-on-exec */
	if (c->pidfd < 0)
		c->pidfd = -1;
#endif
	*fd = sv[0];
	sv[0] = -1; /* transferred */
out:
	if (attr_ok)
		posix_spawnattr_destroy(&attr);
	if (fa_ok)
		posix_spawn_file_actions_destroy(&fa);
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	for (i = 0; i < n; i++)
		free(envp[i]);
	return err != 0 ? -1 : 0;
}

/* What the helper's failure to answer looks like in the log. */
static void
no_answer(const char *path, pid_t pid, const char *when, int err)
{
	if (err == ETIMEDOUT)
		ev_error("TPM helper %s (pid %ld) did not answer in %d s", path, (long)pid,
			 EV_TPM_HELPER_TIMEOUT_S);
	else if (err == EPROTO)
		ev_error("TPM helper %s (pid %ld): a malformed answer", path, (long)pid);
	else if (err == 0 || err == ECONNRESET || err == EPIPE) /* it closed or died */
		ev_error("TPM helper %s (pid %ld) ended without an answer", path, (long)pid);
	else
		ev_error("TPM helper %s (pid %ld): %s: %s", path, (long)pid, when, strerror(err));
}

/* A request begun: its common head; for seal and unseal the associated data. */
static CK_RV
request(struct ev_wbuf *w, const struct ev_tpm_target *t, unsigned op, const unsigned char *aad,
	size_t aadlen)
{
	if (aadlen > EV_WIRE_AAD_MAX)
		return CKR_ARGUMENTS_BAD;
	if (ev_wbuf_init(w) != 0)
		return CKR_HOST_MEMORY;
	ev_wbuf_u8(w, EV_WIRE_VERSION);
	ev_wbuf_u8(w, op);
	ev_wbuf_bytes(w, t->tcti, strlen(t->tcti));
	ev_wbuf_u32(w, t->primary_handle);
	ev_wbuf_bytes(w, t->pinned, t->pinned_len);
	if (op == EV_WIRE_SEAL || op == EV_WIRE_UNSEAL)
		ev_wbuf_bytes(w, aad, aadlen);
	return CKR_OK;
}

/* An auth value, or none (empty). */
static void
put_auth(struct ev_wbuf *w, const ev_secret *auth)
{
	ev_wbuf_bytes(w, auth != NULL ? auth->data : NULL, auth != NULL ? auth->len : 0);
}

/*
 * Log the helper's lines as the module's own, marked as the helper's, no
 * more severe than LOG_ERR, bytes outside printable ASCII shown as '?'.
 */
static void
relay_logs(struct ev_rbuf *r)
{
	uint32_t i, n = ev_rbuf_u32(r);
	const unsigned char *p;
	char line[EV_WIRE_LOG_LEN + 1];
	unsigned prio;
	size_t len, k;

	if (n > EV_WIRE_LOG_LINES) {
		r->err = 1;
		return;
	}
	for (i = 0; i < n && !r->err; i++) {
		prio = ev_rbuf_u8(r);
		ev_rbuf_bytes(r, EV_WIRE_LOG_LEN, &p, &len);
		if (r->err || prio > LOG_DEBUG) {
			r->err = 1;
			return;
		}
		for (k = 0; k < len; k++)
			line[k] = p[k] < 0x20 || p[k] >= 0x7f ? '?' : (char)p[k];
		line[len] = '\0';
		ev_log(prio < LOG_ERR ? LOG_ERR : (int)prio, "TPM helper: %s", line);
	}
}

/*
 * Run the helper with the request in w (freed here), holding t->lock: its
 * answer's CK_RV, and its body in *body (secure memory, freed by the
 * caller) with r positioned after the log lines. CKR_DEVICE_ERROR
 * (logged) and *body NULL when there is no well-formed answer,
 * CKR_GENERAL_ERROR when the lock cannot be taken.
 */
static CK_RV
exchange(const struct ev_tpm_target *t, struct ev_wbuf *w, ev_secret **body, struct ev_rbuf *r)
{
	int64_t deadline;
	CK_RV rv = CKR_DEVICE_ERROR;
	struct child c;
	int fd, ok, e, grace = 10000;

	*body = NULL;
	if (w->err) {
		ev_error("TPM helper: the request does not fit in a message");
		ev_wbuf_free(w);
		return CKR_DEVICE_ERROR;
	}
	/* One helper at a time per root: a direct TPM takes one connection at a time. */
	if (pthread_mutex_lock(t->lock) != 0) {
		ev_error("TPM helper: cannot take the TPM root's lock");
		ev_wbuf_free(w);
		return CKR_GENERAL_ERROR;
	}
	deadline = ev_wire_deadline((int64_t)EV_TPM_HELPER_TIMEOUT_S * 1000);
	if (start(t->helper, &c, &fd) != 0) {
		pthread_mutex_unlock(t->lock);
		ev_wbuf_free(w);
		return CKR_DEVICE_ERROR;
	}
	ok = ev_wire_send(fd, w, deadline) == 0;
	ev_wbuf_free(w);
	if (ok && ev_wire_recv(fd, body, deadline) != 0)
		ok = 0;
	if (!ok) {
		e = errno;
		no_answer(t->helper, c.pid, "the request or its answer", e);
		if (e == ETIMEDOUT)
			grace = 0; /* it has had its time */
	}
	close(fd);
	/* It is ending now: answered, or it closed its end (or it is killed). */
	reap(&c, t->helper, grace);
	if (c.pidfd >= 0)
		close(c.pidfd);
	pthread_mutex_unlock(t->lock);
	if (!ok)
		return CKR_DEVICE_ERROR;
	ev_rbuf_init(r, (*body)->data, (*body)->len);
	if (ev_rbuf_u8(r) == EV_WIRE_VERSION) {
		rv = (CK_RV)ev_rbuf_u64(r);
		relay_logs(r);
	} else {
		r->err = 1;
	}
	if (r->err) {
		ev_error("TPM helper %s: a malformed answer", t->helper);
		ev_secret_free(*body);
		*body = NULL;
		rv = CKR_DEVICE_ERROR;
	}
	return rv;
}

/* The answer's end: nothing malformed, nothing left. Else CKR_DEVICE_ERROR (logged). */
static CK_RV
finish(const struct ev_tpm_target *t, const struct ev_rbuf *r, CK_RV rv)
{
	if (ev_rbuf_done(r) == 0)
		return rv;
	ev_error("TPM helper %s: a malformed answer", t->helper);
	return CKR_DEVICE_ERROR;
}

/* The answer's last field, bytes (at most max; not empty when the operation succeeded). */
static CK_RV
last_bytes(const struct ev_tpm_target *t, struct ev_rbuf *r, CK_RV rv, size_t max,
	   const unsigned char **p, size_t *n, const char *what)
{
	ev_rbuf_bytes(r, max, p, n);
	rv = finish(t, r, rv);
	if (rv == CKR_OK && *n == 0) {
		ev_error("TPM helper %s: no %s in its answer", t->helper, what);
		rv = CKR_DEVICE_ERROR;
	}
	return rv;
}

CK_RV
ev_tpm_helper_seal(const struct ev_tpm_target *t, const unsigned char *aad, size_t aadlen,
		   const ev_secret *plain, const ev_seal_opts *opts, unsigned char **blob,
		   size_t *bloblen)
{
	const ev_secret *auth = opts != NULL ? opts->auth : NULL;
	const unsigned char *p;
	ev_secret *body = NULL;
	struct ev_wbuf w;
	struct ev_rbuf r;
	size_t n;
	CK_RV rv;

	if (plain->len == 0 || plain->len > EV_WIRE_SECRET_MAX)
		return CKR_DATA_LEN_RANGE;
	rv = request(&w, t, EV_WIRE_SEAL, aad, aadlen);
	if (rv != CKR_OK)
		return rv;
	ev_wbuf_bytes(&w, plain->data, plain->len);
	ev_wbuf_u32(&w, opts != NULL ? opts->pcrs : 0);
	put_auth(&w, auth);
	rv = exchange(t, &w, &body, &r);
	if (body == NULL)
		return rv;
	rv = last_bytes(t, &r, rv, EV_WIRE_BLOB_MAX, &p, &n, "sealed blob");
	if (rv == CKR_OK) {
		*blob = malloc(n);
		if (*blob == NULL) {
			rv = CKR_HOST_MEMORY;
		} else {
			memcpy(*blob, p, n);
			*bloblen = n;
		}
	}
	ev_secret_free(body);
	return rv;
}

CK_RV
ev_tpm_helper_unseal(const struct ev_tpm_target *t, const unsigned char *aad, size_t aadlen,
		     const unsigned char *blob, size_t bloblen, ev_unseal_opts *opts,
		     ev_secret **plain)
{
	const ev_secret *auth = opts != NULL ? opts->auth : NULL;
	const unsigned char *p;
	ev_secret *body = NULL;
	struct ev_wbuf w;
	struct ev_rbuf r;
	uint32_t pcrs, changed;
	size_t n;
	CK_RV rv;

	/* What parse_blob would refuse too, before anything is started. */
	if (bloblen > EV_WIRE_BLOB_MAX)
		return CKR_ENCRYPTED_DATA_INVALID;
	rv = request(&w, t, EV_WIRE_UNSEAL, aad, aadlen);
	if (rv != CKR_OK)
		return rv;
	ev_wbuf_bytes(&w, blob, bloblen);
	put_auth(&w, auth);
	rv = exchange(t, &w, &body, &r);
	if (body == NULL)
		return rv;
	pcrs = ev_rbuf_u32(&r);
	changed = ev_rbuf_u32(&r);
	rv = last_bytes(t, &r, rv, EV_WIRE_SECRET_MAX, &p, &n, "unsealed secret");
	if (rv != CKR_DEVICE_ERROR && ((pcrs | changed) & ~EV_PCR_ALL) != 0) {
		ev_error("TPM helper %s: a malformed answer", t->helper);
		rv = CKR_DEVICE_ERROR;
	}
	if (opts != NULL && rv != CKR_DEVICE_ERROR) {
		opts->pcrs = pcrs;
		if (rv == EVR_PCR_MISMATCH)
			opts->changed = changed;
	}
	if (rv == CKR_OK) {
		*plain = ev_secret_dup(p, n);
		if (*plain == NULL)
			rv = CKR_HOST_MEMORY;
	}
	ev_secret_free(body); /* wipes the secret's copy */
	return rv;
}

/* A part of the quote into its buffer; nothing (r->err set) when it does not fit. */
static void
quote_part(struct ev_rbuf *r, unsigned char *dst, size_t *len)
{
	const unsigned char *p;
	size_t n;

	*len = 0;
	ev_rbuf_bytes(r, EV_QUOTE_PART_MAX, &p, &n);
	if (r->err)
		return;
	if (n > 0)
		memcpy(dst, p, n);
	*len = n;
}

CK_RV
ev_tpm_helper_quote(const struct ev_tpm_target *t, uint32_t pcrs, const unsigned char *nonce,
		    size_t nonce_len, struct ev_quote *q)
{
	ev_secret *body = NULL;
	struct ev_wbuf w;
	struct ev_rbuf r;
	CK_RV rv;

	rv = request(&w, t, EV_WIRE_QUOTE, NULL, 0);
	if (rv != CKR_OK)
		return rv;
	ev_wbuf_u32(&w, pcrs);
	ev_wbuf_bytes(&w, nonce, nonce_len);
	rv = exchange(t, &w, &body, &r);
	if (body == NULL)
		return rv;
	/* A part that does not fit leaves r->err set: finish() refuses the answer. */
	quote_part(&r, q->attest, &q->attest_len);
	quote_part(&r, q->sig, &q->sig_len);
	quote_part(&r, q->ak, &q->ak_len);
	rv = finish(t, &r, rv);
	if (rv == CKR_OK && (q->attest_len == 0 || q->sig_len == 0 || q->ak_len == 0)) {
		ev_error("TPM helper %s: quoted, but the quote is incomplete", t->helper);
		rv = CKR_DEVICE_ERROR;
	}
	ev_secret_free(body);
	return rv;
}

CK_RV
ev_tpm_helper_name(const struct ev_tpm_target *t, unsigned char *name, size_t *len)
{
	const unsigned char *p;
	ev_secret *body = NULL;
	struct ev_wbuf w;
	struct ev_rbuf r;
	size_t n;
	CK_RV rv;

	rv = request(&w, t, EV_WIRE_NAME, NULL, 0);
	if (rv != CKR_OK)
		return rv;
	rv = exchange(t, &w, &body, &r);
	if (body == NULL)
		return rv;
	rv = last_bytes(t, &r, rv, EV_ROOT_NAME_MAX, &p, &n, "primary's name");
	if (rv == CKR_OK) {
		if (n > *len)
			rv = CKR_BUFFER_TOO_SMALL;
		else
			memcpy(name, p, n);
		*len = n;
	}
	ev_secret_free(body);
	return rv;
}
