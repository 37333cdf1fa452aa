#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/x509.h>

#include "harness.h"

struct ev_env env;

static int log_saved = -1; /* stderr while env_log_start() has it go to a file */

void
env_log_start(void)
{
	char *path = fmt("%s/stderr.log", env.dir);
	int fd;

	ck_assert_int_eq(log_saved, -1);
	fflush(stderr);
	log_saved = dup(STDERR_FILENO);
	ck_assert_int_ge(log_saved, 0);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	close(fd);
	free(path);
	setenv("EDGEVAULT_DEBUG", "1", 1);
}

char *
env_log_stop(void)
{
	char *path = fmt("%s/stderr.log", env.dir), *log = NULL;
	size_t cap = 0;
	FILE *f;

	unsetenv("EDGEVAULT_DEBUG");
	fflush(stderr);
	ck_assert_int_eq(dup2(log_saved, STDERR_FILENO), STDERR_FILENO);
	close(log_saved);
	log_saved = -1;
	f = fopen(path, "re");
	ck_assert_ptr_nonnull(f);
	if (getdelim(&log, &cap, '\0', f) == -1) {
		free(log);
		log = strdup("");
	}
	ck_assert_ptr_nonnull(log);
	fclose(f);
	free(path);
	return log;
}

void
env_sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	ck_assert_msg(rc == 0, "command failed (%d): %s", rc, cmd);
}

/*
 * The run's directory: every test's directory is made in it, and env_run()
 * removes it after the last test, also the directories of tests that failed
 * (Check skips a checked fixture's teardown when the test fails in fork mode).
 */
static char env_rundir[200];

/* The root of trust (env_root()): made by env_setup, stopped by env_teardown. */
static void env_root_token_make(void);
static void env_root_tpm_start(void);
static void env_root_tpm_stop(void);
static const char *env_root_tcti(void);
static void env_forget_child(pid_t pid);

/* Where temporary directories go: $TMPDIR, else /tmp. */
static const char *
env_tmp(void)
{
	const char *t = getenv("TMPDIR");

	return t != NULL && *t != '\0' ? t : "/tmp";
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	if (remove(path) != 0 && errno != ENOENT)
		fprintf(stderr, "could not remove %s: %s\n", path, strerror(errno));
	return 0; /* go on: remove what can be */
}

/* Remove a directory and everything below it (symbolic links not followed). */
static void
rm_tree(const char *dir)
{
	(void)nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *
softhsm_path(void)
{
	const char *p = getenv("EV_SOFTHSM");

	return p != NULL ? p : "/usr/lib/softhsm/libsofthsm2.so";
}

void
env_write_config(const char *extra)
{
	char path[512];
	FILE *f;

	if (env_root_is("tpm2")) {
		env_write_tcti_config(env_root_tcti(), NULL, extra);
		return;
	}

	snprintf(path, sizeof(path), "%s/edgevault.conf", env.dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
	    "[store]\ndir = %s/store\n"
	    "[device]\nid = test-device\n"
	    "[root]\nbackend = pkcs11\nmodule = %s\ntoken_label = root\n"
	    "pin_file = %s/root.pin\nkey_label = edgevault-root\n"
	    "[pin]\nmax_fails = 3\nargon2_ops = 1\nargon2_mem_kib = 64\n%s",
	    env.dir, softhsm_path(), env.dir, extra != NULL ? extra : "");
	ck_assert_int_eq(fclose(f), 0);
}

void
env_setup(void)
{
	const char *module = getenv("EV_MODULE");
	char path[512];
	CK_INTERFACE *iface = NULL;
	CK_RV (*get_interface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS);
	CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR);

	ck_assert_msg(module != NULL, "EV_MODULE is not set (run through make check)");
	memset(&env, 0, sizeof(env));
	/* Under the run's directory (env_run), else straight in $TMPDIR. */
	if (env_rundir[0] != '\0')
		snprintf(env.dir, sizeof(env.dir), "%s/test-XXXXXX", env_rundir);
	else
		snprintf(env.dir, sizeof(env.dir), "%s/ev-it-XXXXXX", env_tmp());
	ck_assert_ptr_nonnull(mkdtemp(env.dir));

	if (env_root_is("tpm2"))
		env_root_tpm_start();
	else
		env_root_token_make();
	env_write_config(NULL);
	snprintf(path, sizeof(path), "%s/edgevault.conf", env.dir);
	setenv("EDGEVAULT_CONF", path, 1);

	env.dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
	ck_assert_msg(env.dl != NULL, "dlopen %s: %s", module, dlerror());
	*(void **)&get_interface = dlsym(env.dl, "C_GetInterface");
	*(void **)&get_list = dlsym(env.dl, "C_GetFunctionList");
	ck_assert_ptr_nonnull(get_interface);
	ck_assert_ptr_nonnull(get_list);
	ck_assert_int_eq(get_interface(NULL, NULL, &iface, 0), CKR_OK);
	env.f = iface->pFunctionList;
	ck_assert_int_eq(get_list(&env.f240), CKR_OK);
}

void
env_teardown(void)
{
	env_kill_children();
	if (env.f != NULL)
		(void)env.f->C_Finalize(NULL);
	env_root_tpm_stop();
	if (env.dl != NULL)
		dlclose(env.dl);
	if (env.dir[0] != '\0' && getenv("EV_KEEP") == NULL)
		rm_tree(env.dir);
	memset(&env, 0, sizeof(env));
}

void
env_init(void)
{
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };

	ck_assert_int_eq(env.f->C_Initialize(&args), CKR_OK);
}

void
env_label(CK_UTF8CHAR out[32], const char *label)
{
	size_t n = strlen(label);

	memset(out, ' ', 32);
	memcpy(out, label, n > 32 ? 32 : n);
}

CK_SLOT_ID
env_new_zone(const char *label)
{
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64;
	CK_UTF8CHAR lab[32];
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;

	ck_assert_int_eq(env.f->C_GetSlotList(CK_FALSE, slots, &n), CKR_OK);
	ck_assert_uint_ge(n, 1);
	slot = slots[n - 1]; /* the free slot comes last */
	env_label(lab, label);
	ck_assert_int_eq(env.f->C_InitToken(slot, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN), lab),
	    CKR_OK);
	ck_assert_int_eq(env.f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
			     NULL, &h),
	    CKR_OK);
	ck_assert_int_eq(env.f->C_Login(h, CKU_SO, (CK_UTF8CHAR *)SO_PIN, strlen(SO_PIN)), CKR_OK);
	ck_assert_int_eq(env.f->C_InitPIN(h, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN)), CKR_OK);
	ck_assert_int_eq(env.f->C_Logout(h), CKR_OK);
	ck_assert_int_eq(env.f->C_CloseSession(h), CKR_OK);
	return slot;
}

CK_SESSION_HANDLE
env_session(CK_SLOT_ID slot, int rw, int user)
{
	CK_SESSION_HANDLE h;
	CK_RV rv;

	ck_assert_int_eq(env.f->C_OpenSession(slot,
			     CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0), NULL, NULL, &h),
	    CKR_OK);
	if (user) {
		rv = env.f->C_Login(h, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN));
		ck_assert_msg(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN, "C_Login: 0x%lx",
		    rv);
	}
	return h;
}

const CK_BYTE env_p256[10] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
const CK_BYTE env_p384[7] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };
const CK_BYTE env_ed25519[5] = { 0x06, 0x03, 0x2b, 0x65, 0x70 };

EVP_PKEY *
env_spki(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o)
{
	CK_BYTE buf[2048];
	CK_ATTRIBUTE a = { CKA_PUBLIC_KEY_INFO, buf, sizeof(buf) };
	const unsigned char *p = buf;
	EVP_PKEY *k;

	ck_assert_int_eq(env.f->C_GetAttributeValue(h, o, &a, 1), CKR_OK);
	k = d2i_PUBKEY(NULL, &p, (long)a.ulValueLen);
	ck_assert_ptr_nonnull(k);
	return k;
}

int
env_ecdsa_der(const CK_BYTE *sig, CK_ULONG len, unsigned char **der)
{
	ECDSA_SIG *s = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sig, (int)(len / 2), NULL);
	BIGNUM *ss = BN_bin2bn(sig + len / 2, (int)(len / 2), NULL);
	int n;

	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(ECDSA_SIG_set0(s, r, ss), 1);
	*der = NULL;
	n = i2d_ECDSA_SIG(s, der);
	ECDSA_SIG_free(s);
	ck_assert_int_gt(n, 0);
	return n;
}

int
env_run(Suite *s)
{
	SRunner *sr;
	int failed;

	if (strcmp(env_root(), "pkcs11") != 0 && strcmp(env_root(), "tpm2") != 0 &&
	    strcmp(env_root(), "tpm2-abrmd") != 0) {
		fprintf(stderr, "EV_ROOT=%s: not a root (pkcs11, tpm2, tpm2-abrmd)\n", env_root());
		return EXIT_FAILURE;
	}
	fprintf(stderr, "root of trust: %s (EV_ROOT)\n", env_root());
	snprintf(env_rundir, sizeof(env_rundir), "%s/ev-it-XXXXXX", env_tmp());
	if (mkdtemp(env_rundir) == NULL) {
		fprintf(stderr, "cannot make a directory in %s: %s\n", env_tmp(), strerror(errno));
		return EXIT_FAILURE;
	}
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	/* Children of a test that failed may still be dying: they die with it (env_fork). */
	if (getenv("EV_KEEP") != NULL)
		fprintf(stderr, "EV_KEEP: the tests' directories are kept in %s\n", env_rundir);
	else
		rm_tree(env_rundir);
	env_rundir[0] = '\0';
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

void
env_gen_ec(CK_SESSION_HANDLE h, CK_MECHANISM_TYPE m, const CK_BYTE *params, CK_ULONG plen,
    const char *label, CK_BBOOL token, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	CK_BBOOL yes = CK_TRUE;
	CK_MECHANISM mech = { m, NULL, 0 };
	CK_ATTRIBUTE pubt[] = {
		{ CKA_EC_PARAMS, (void *)params, plen },
		{ CKA_TOKEN, &token, sizeof(token) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_VERIFY, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE privt[] = {
		{ CKA_TOKEN, &token, sizeof(token) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_ID, (void *)label, strlen(label) },
	};

	ck_assert_int_eq(env.f->C_GenerateKeyPair(h, &mech, pubt, 4, privt, 4, pub, priv), CKR_OK);
}

/* Revocation and child processes (it_revoke). */

#define ENV_MAX_CHILDREN 16

static pid_t env_children[ENV_MAX_CHILDREN];
static char env_watch[300];

const char *
env_watch_dir(void)
{
	snprintf(env_watch, sizeof(env_watch), "%s/revocations", env.dir);
	return env_watch;
}

void
env_revocation_config(const char *pk64, const char *extra)
{
	char buf[2048];

	ck_assert_int_eq(mkdir(env_watch_dir(), 0700) == 0 || errno == EEXIST, 1);
	snprintf(buf, sizeof(buf), "[revocation]\npublic_key = %s\nwatch_dir = %s\n%s", pk64,
	    env_watch_dir(), extra != NULL ? extra : "");
	env_write_config(buf);
}

void
env_drop(const char *name, const void *buf, size_t len)
{
	char tmp[512], dst[512];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s/.drop-%s", env.dir, name);
	snprintf(dst, sizeof(dst), "%s/%s", env_watch_dir(), name);
	f = fopen(tmp, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_msg(rename(tmp, dst) == 0, "rename %s: %s", dst, strerror(errno));
}

long
env_sql_long(const char *sql)
{
	char cmd[1024], line[128];
	FILE *p;
	char *end;
	long v;

	snprintf(cmd, sizeof(cmd), "sqlite3 -cmd '.timeout 10000' '%s/store/edgevault.db' \"%s\"",
	    env.dir, sql);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	ck_assert_msg(fgets(line, sizeof(line), p) != NULL, "no answer from: %s", cmd);
	ck_assert_int_eq(pclose(p), 0);
	v = strtol(line, &end, 10);
	ck_assert_msg(end != line, "not a number from %s: %s", cmd, line);
	return v;
}

char *
env_sql_text(const char *sql)
{
	char cmd[1024];
	char *buf = NULL, *nbuf;
	size_t len = 0, cap = 0, n;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "sqlite3 -cmd '.timeout 10000' '%s/store/edgevault.db' \"%s\"",
	    env.dir, sql);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	do {
		if (cap - len < 4096) {
			cap = cap == 0 ? 8192 : cap * 2;
			nbuf = realloc(buf, cap);
			ck_assert_ptr_nonnull(nbuf);
			buf = nbuf;
		}
		n = fread(buf + len, 1, cap - len - 1, p);
		len += n;
	} while (n > 0);
	ck_assert_int_eq(pclose(p), 0);
	buf[len] = '\0';
	return buf;
}

pid_t
env_fork(void)
{
	pid_t parent = getpid(), pid;
	size_t i;

	for (i = 0; i < ENV_MAX_CHILDREN && env_children[i] != 0; i++)
		;
	ck_assert_msg(i < ENV_MAX_CHILDREN, "too many children");
	fflush(NULL);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		/* Die with the test process, also when it fails in a ck_assert. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(99);
		memset(env_children, 0, sizeof(env_children));
		return 0;
	}
	env_children[i] = pid;
	return pid;
}

static void
env_forget_child(pid_t pid)
{
	size_t i;

	for (i = 0; i < ENV_MAX_CHILDREN; i++)
		if (env_children[i] == pid)
			env_children[i] = 0;
}

int
env_wait_child(pid_t pid, int seconds)
{
	struct timespec nap = { 0, 10 * 1000 * 1000 };
	long i, n = (long)seconds * 100;
	int status;
	pid_t r;

	for (i = 0; i <= n; i++) {
		r = waitpid(pid, &status, WNOHANG);
		if (r == pid) {
			env_forget_child(pid);
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		}
		if (r == -1 && errno != EINTR)
			break;
		nanosleep(&nap, NULL);
	}
	(void)kill(pid, SIGKILL);
	(void)waitpid(pid, &status, 0);
	env_forget_child(pid);
	return -1;
}

void
env_kill_children(void)
{
	size_t i;

	for (i = 0; i < ENV_MAX_CHILDREN; i++) {
		if (env_children[i] == 0)
			continue;
		(void)kill(env_children[i], SIGKILL);
		(void)waitpid(env_children[i], NULL, 0);
		env_children[i] = 0;
	}
}

/* Utilities and children talking through pipes (it_revoke, it_rotate). */

char *
fmt(const char *f, ...)
{
	va_list ap;
	char *s = NULL;
	int n;

	va_start(ap, f);
	n = vasprintf(&s, f, ap);
	va_end(ap);
	ck_assert_int_ge(n, 0);
	return s;
}

double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void
nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

CK_ULONG
env_find(CK_SESSION_HANDLE h, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *out, CK_ULONG cap)
{
	CK_ULONG got = 0;

	ck_assert_int_eq(env.f->C_FindObjectsInit(h, t, n), CKR_OK);
	ck_assert_int_eq(env.f->C_FindObjects(h, out, cap, &got), CKR_OK);
	ck_assert_int_eq(env.f->C_FindObjectsFinal(h), CKR_OK);
	return got;
}

CK_RV
get_label(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o)
{
	CK_BYTE buf[64];
	CK_ATTRIBUTE a = { CKA_LABEL, buf, sizeof(buf) };

	return env.f->C_GetAttributeValue(h, o, &a, 1);
}

CK_RV
env_poll_slot_event(CK_SLOT_ID *slot)
{
	double end = now_s() + DEADLINE;
	CK_RV rv;

	do {
		rv = env.f->C_WaitForSlotEvent(CKF_DONT_BLOCK, slot, NULL);
		if (rv != CKR_NO_EVENT)
			break;
		nap_ms(10);
	} while (now_s() < end);
	return rv;
}

void
kid_start(struct kid *k, kid_fn *fn, void *arg)
{
	int up[2], down[2];

	ck_assert_int_eq(pipe(up), 0);
	ck_assert_int_eq(pipe(down), 0);
	k->pid = env_fork();
	if (k->pid == 0) {
		close(up[0]);
		close(down[1]);
		fn(down[0], up[1], arg);
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	k->rd = up[0];
	k->wr = down[1];
}

/*
 * read() or write() all of len bytes, waiting for fd within timeout_ms
 * (-1: no limit): 0, or -1 on end of file, an error or the timeout. buf
 * is only read from when writing.
 */
static int
transfer_all(int fd, void *buf, size_t len, int writing, int timeout_ms)
{
	char *p = buf;
	double end = now_s() + timeout_ms / 1000.0;
	struct pollfd pfd = { fd, writing ? POLLOUT : POLLIN, 0 };
	ssize_t n;
	int left;

	while (len > 0) {
		left = timeout_ms < 0 ? -1 : (int)((end - now_s()) * 1000);
		if (timeout_ms >= 0 && left < 0)
			return -1;
		if (poll(&pfd, 1, left) <= 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		n = writing ? write(fd, p, len) : read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
write_all(int fd, const void *buf, size_t len)
{
	return transfer_all(fd, (void *)buf, len, 1, -1);
}

int
read_all(int fd, void *buf, size_t len, int timeout_ms)
{
	return transfer_all(fd, buf, len, 0, timeout_ms);
}

void
put(int fd, CK_ULONG v)
{
	if (write_all(fd, &v, sizeof(v)) != 0)
		_exit(4);
}

void
put_bytes(int fd, const void *buf, CK_ULONG len)
{
	put(fd, len);
	if (write_all(fd, buf, len) != 0)
		_exit(4);
}

CK_ULONG
take(int fd)
{
	CK_ULONG v;

	if (read_all(fd, &v, sizeof(v), -1) != 0)
		_exit(3);
	return v;
}

void
kid_put(struct kid *k, CK_ULONG v)
{
	ck_assert_msg(write_all(k->wr, &v, sizeof(v)) == 0, "child %d has gone", (int)k->pid);
}

CK_ULONG
kid_get(struct kid *k)
{
	CK_ULONG v;

	ck_assert_msg(read_all(k->rd, &v, sizeof(v), CHILD_DEADLINE * 1000) == 0,
	    "child %d: no answer (gone, or over %d s)", (int)k->pid, CHILD_DEADLINE);
	return v;
}

CK_ULONG
kid_get_bytes(struct kid *k, CK_BYTE *buf, CK_ULONG cap)
{
	CK_ULONG len = kid_get(k);

	ck_assert_uint_le(len, cap);
	ck_assert_msg(read_all(k->rd, buf, len, CHILD_DEADLINE * 1000) == 0, "child %d: no data",
	    (int)k->pid);
	return len;
}

void
kid_done(struct kid *k)
{
	int st = env_wait_child(k->pid, CHILD_DEADLINE);

	ck_assert_msg(st == 0, "child %d ended with %d", (int)k->pid, st);
	close(k->rd);
	close(k->wr);
}

CK_RV
kid_init(void)
{
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };

	return env.f->C_Initialize(&args);
}

CK_RV
kid_session(CK_SLOT_ID slot, int rw, CK_SESSION_HANDLE *h)
{
	CK_RV rv = env.f->C_OpenSession(slot, CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0), NULL,
	    NULL, h);

	if (rv != CKR_OK)
		return rv;
	rv = env.f->C_Login(*h, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN));
	return rv == CKR_USER_ALREADY_LOGGED_IN ? CKR_OK : rv;
}

CK_RV
kid_sign_label(CK_SESSION_HANDLE h, const char *label, const char *msg, CK_BYTE *sig,
    CK_ULONG *len)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, (void *)label, strlen(label) },
	};
	CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
	CK_OBJECT_HANDLE o;
	CK_ULONG n = 0;
	CK_RV rv;

	rv = env.f->C_FindObjectsInit(h, t, 2);
	if (rv == CKR_OK)
		rv = env.f->C_FindObjects(h, &o, 1, &n);
	if (rv == CKR_OK)
		rv = env.f->C_FindObjectsFinal(h);
	if (rv == CKR_OK && n != 1)
		rv = CKR_KEY_HANDLE_INVALID;
	if (rv == CKR_OK)
		rv = env.f->C_SignInit(h, &m, o);
	if (rv == CKR_OK)
		rv = env.f->C_Sign(h, (CK_BYTE *)msg, strlen(msg), sig, len);
	return rv;
}

/* Bind (or, with do_connect, connect to) 127.0.0.1:port over TCP: 0 on success. */
static int
tcp_try(int port, int do_connect)
{
	struct sockaddr_in a;
	int fd, rc, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* As swtpm binds: a port left in TIME_WAIT by a stopped swtpm is free. */
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((unsigned short)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (do_connect)
		rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
	else
		rc = bind(fd, (struct sockaddr *)&a, sizeof(a));
	close(fd);
	return rc;
}

void
env_swtpm_start(struct ev_swtpm *t, const char *state_dir)
{
	env_swtpm_start_on(t, state_dir, 0);
}

void
env_swtpm_start_on(struct ev_swtpm *t, const char *state_dir, int port)
{
	int tries;

	memset(t, 0, sizeof(*t));
	snprintf(t->state, sizeof(t->state), "%s", state_dir);
	env_sh("mkdir -p '%s'", t->state);
	/*
	 * A free pair may be taken between our check and swtpm's bind: then
	 * swtpm exits at once and another pair is tried.
	 */
	for (tries = 0; tries < 8; tries++) {
		double deadline;
		int status;

		/* Spread by process, so parallel test programs seldom collide. */
		if (port != 0)
			t->port = port;
		else
			t->port = 20000 + (int)(((unsigned)getpid() * 2654435761u +
						    (unsigned)tries * 7919u) % 10000u) * 2;
		if (tcp_try(t->port, 0) != 0 || tcp_try(t->port + 1, 0) != 0) {
			if (port != 0)
				nap_ms(250); /* the same pair again, a moment later */
			continue;
		}
		t->pid = env_fork();
		if (t->pid == 0) {
			char server[64], ctrl[64], state[320], pid[320];

			snprintf(server, sizeof(server), "type=tcp,port=%d,bindaddr=127.0.0.1",
			    t->port);
			snprintf(ctrl, sizeof(ctrl), "type=tcp,port=%d,bindaddr=127.0.0.1",
			    t->port + 1);
			snprintf(state, sizeof(state), "dir=%s", t->state);
			snprintf(pid, sizeof(pid), "file=%s/swtpm.pid", t->state);
			execlp("swtpm", "swtpm", "socket", "--tpm2", "--tpmstate", state,
			    "--server", server, "--ctrl", ctrl, "--flags",
			    "not-need-init,startup-clear", "--pid", pid, (char *)NULL);
			_exit(127);
		}
		deadline = now_s() + DEADLINE;
		while (now_s() < deadline) {
			if (tcp_try(t->port, 1) == 0)
				return;
			if (waitpid(t->pid, &status, WNOHANG) == t->pid) {
				env_forget_child(t->pid);
				ck_assert_msg(!(WIFEXITED(status) && WEXITSTATUS(status) == 127),
				    "cannot run swtpm (is it installed?)");
				t->pid = 0;
				break;
			}
			nap_ms(20);
		}
		ck_assert_msg(t->pid == 0, "swtpm on port %d did not answer in time", t->port);
	}
	ck_abort_msg("cannot start swtpm on a free port pair");
}

void
env_swtpm_stop(struct ev_swtpm *t)
{
	char cmd[128];

	if (t->pid == 0)
		return;
	/* A graceful shutdown saves the TPM's volatile state; the answer does not matter. */
	snprintf(cmd, sizeof(cmd), "swtpm_ioctl --tcp 127.0.0.1:%d -s >/dev/null 2>&1",
	    t->port + 1);
	(void)system(cmd);
	(void)env_wait_child(t->pid, DEADLINE);
	t->pid = 0;
}

void
env_write_tpm_config(const struct ev_swtpm *t, const char *root_extra, const char *extra)
{
	char tcti[64];

	snprintf(tcti, sizeof(tcti), "swtpm:host=127.0.0.1,port=%d", t->port);
	env_write_tcti_config(tcti, root_extra, extra);
}

void
env_write_tcti_config(const char *tcti, const char *root_extra, const char *extra)
{
	/* The built helper, unless the test names its own. */
	const char *helper = getenv("EV_TPM_HELPER");
	char path[512];
	FILE *f;

	if (root_extra != NULL && strstr(root_extra, "helper =") != NULL)
		helper = NULL;

	snprintf(path, sizeof(path), "%s/edgevault.conf", env.dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
	    "[store]\ndir = %s/store\n"
	    "[device]\nid = test-device\n"
	    "[root]\nbackend = tpm2\ntcti = %s\n%s%s%s%s"
	    "[pin]\nmax_fails = 3\nargon2_ops = 1\nargon2_mem_kib = 64\n%s",
	    env.dir, tcti, root_extra != NULL ? root_extra : "", helper != NULL ? "helper = " : "",
	    helper != NULL ? helper : "", helper != NULL ? "\n" : "", extra != NULL ? extra : "");
	ck_assert_int_eq(fclose(f), 0);
}

/* The root of trust the tests run on: $EV_ROOT. */

static struct ev_swtpm env_root_swtpm;
static struct ev_abrmd env_root_rm;

/* The SoftHSMv2 token "root" in <dir>/tokens, and the PIN file for it. */
static void
env_root_token_make(void)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/softhsm2.conf", env.dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
	    env.dir);
	ck_assert_int_eq(fclose(f), 0);
	setenv("SOFTHSM2_CONF", path, 1);
	env_sh("mkdir -p %s/tokens && softhsm2-util --init-token --free --label root "
	       "--pin %s --so-pin %s >/dev/null",
	    env.dir, ROOT_PIN, "root-so-1234");

	snprintf(path, sizeof(path), "%s/root.pin", env.dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "%s\n", ROOT_PIN);
	ck_assert_int_eq(fclose(f), 0);
}

const char *
env_root(void)
{
	const char *r = getenv("EV_ROOT");

	return r != NULL && *r != '\0' ? r : "pkcs11";
}

int
env_root_is(const char *backend)
{
	const char *r = env_root();
	size_t n = strlen(backend);

	/* "tpm2-abrmd" is the backend tpm2, reached through tpm2-abrmd. */
	return strncmp(r, backend, n) == 0 && (r[n] == '\0' || r[n] == '-');
}

static const char *
env_root_tcti(void)
{
	static char tcti[64];

	if (env_root_rm.pid != 0)
		return env_root_rm.tcti;
	snprintf(tcti, sizeof(tcti), "swtpm:host=127.0.0.1,port=%d", env_root_swtpm.port);
	return tcti;
}

void
env_root_flush_leaks(void)
{
	if (strcmp(env_root(), "tpm2") != 0)
		return;
	env_sh("tpm2_flushcontext -T %s -t && tpm2_flushcontext -T %s -l && "
	       "tpm2_flushcontext -T %s -s",
	    env_root_tcti(), env_root_tcti(), env_root_tcti());
}

/*
 * The root's swtpm (state in <dir>/root-tpm, apart from a test's own
 * swtpm), and tpm2-abrmd in front of it when asked. They are not among the
 * children env_kill_children() kills: the module may still use them until
 * env_teardown() has finalized it. They die with the test process all the
 * same (env_fork).
 */
static void
env_root_tpm_start(void)
{
	char dir[300];

	snprintf(dir, sizeof(dir), "%s/root-tpm", env.dir);
	env_swtpm_start(&env_root_swtpm, dir);
	env_forget_child(env_root_swtpm.pid);
	if (strcmp(env_root(), "tpm2-abrmd") == 0) {
		env_abrmd_start(&env_root_rm, &env_root_swtpm, env.dir);
		env_forget_child(env_root_rm.pid);
		env_forget_child(env_root_rm.bus_pid);
	}
}

static void
env_root_tpm_stop(void)
{
	env_abrmd_stop(&env_root_rm);
	env_swtpm_stop(&env_root_swtpm);
}

/* tpm2-abrmd on a private D-Bus session bus. */

/* SIGTERM, then wait for it (SIGKILL when late); *pid set to 0. */
static void
env_stop_pid(pid_t *pid)
{
	if (*pid == 0)
		return;
	(void)kill(*pid, SIGTERM);
	(void)env_wait_child(*pid, DEADLINE);
	*pid = 0;
}

/* A child whose stdout and stderr go to log, running argv. */
static pid_t
env_spawn_logged(const char *log, char *const argv[])
{
	pid_t pid = env_fork();
	int fd;

	if (pid != 0)
		return pid;
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
		_exit(126);
	execvp(argv[0], argv);
	_exit(127);
}

/*
 * A session bus of our own: any connection of this user, any name. A
 * socket in dir (not an abstract one: the bus dies with the directory).
 */
static void
env_bus_config(const char *path, const char *dir)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fprintf(f,
	    "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
	    " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
	    "<busconfig>\n"
	    "  <type>session</type>\n"
	    "  <listen>unix:dir=%s</listen>\n"
	    "  <auth>EXTERNAL</auth>\n"
	    "  <policy context=\"default\">\n"
	    "    <allow send_destination=\"*\" eavesdrop=\"true\"/>\n"
	    "    <allow eavesdrop=\"true\"/>\n"
	    "    <allow own=\"*\"/>\n"
	    "  </policy>\n"
	    "</busconfig>\n",
	    dir);
	ck_assert_int_eq(fclose(f), 0);
}

/* Start dbus-daemon on dir's config; its address (--print-address) in a->address. */
static void
env_bus_start(struct ev_abrmd *a, const char *dir)
{
	char conf[400], log[400], cfgarg[420], fdarg[40];
	char *argv[] = { "dbus-daemon", cfgarg, "--nofork", "--nopidfile", fdarg, NULL };
	size_t n = 0;
	int p[2];

	snprintf(conf, sizeof(conf), "%s/dbus.conf", dir);
	snprintf(log, sizeof(log), "%s/dbus.log", dir);
	env_bus_config(conf, dir);
	ck_assert_int_eq(pipe(p), 0);
	snprintf(cfgarg, sizeof(cfgarg), "--config-file=%s", conf);
	snprintf(fdarg, sizeof(fdarg), "--print-address=%d", p[1]);
	a->bus_pid = env_spawn_logged(log, argv);
	close(p[1]);
	/* The address comes, one line, once the bus accepts connections. */
	while (n < sizeof(a->address) - 1) {
		ck_assert_msg(read_all(p[0], &a->address[n], 1, DEADLINE * 1000) == 0,
		    "dbus-daemon gave no address in %d s (see %s)", DEADLINE, log);
		if (a->address[n] == '\n')
			break;
		n++;
	}
	a->address[n] = '\0';
	close(p[0]);
	ck_assert_msg(n > 0 && n < sizeof(a->address) - 1, "dbus-daemon's address: \"%s\"",
	    a->address);
}

void
env_abrmd_start(struct ev_abrmd *a, const struct ev_swtpm *t, const char *dir)
{
	char log[400], name[120], tcti[80], probe[600];
	char *argv[] = { "tpm2-abrmd", "--session", name, tcti, "--allow-root", NULL };
	double deadline;
	int status;

	memset(a, 0, sizeof(*a));
	env_bus_start(a, dir);
	setenv("DBUS_SESSION_BUS_ADDRESS", a->address, 1);
	/* A name of our own on our own bus: tests running at once never meet. */
	snprintf(a->name, sizeof(a->name), "org.edgevault.test.Tabrmd.p%d", (int)getpid());
	snprintf(a->tcti, sizeof(a->tcti), "tabrmd:bus_name=%s,bus_type=session", a->name);
	snprintf(name, sizeof(name), "--dbus-name=%s", a->name);
	snprintf(tcti, sizeof(tcti), "--tcti=swtpm:host=127.0.0.1,port=%d", t->port);
	if (geteuid() != 0)
		argv[4] = NULL; /* it refuses root unless told; --allow-root is for root only */
	snprintf(log, sizeof(log), "%s/abrmd.log", dir);
	a->pid = env_spawn_logged(log, argv);
	/* Ready when the TPM answers through it. */
	snprintf(probe, sizeof(probe), "tpm2_getcap -T '%s' properties-fixed >/dev/null 2>&1",
	    a->tcti);
	deadline = now_s() + DEADLINE;
	for (;;) {
		if (system(probe) == 0)
			return;
		if (waitpid(a->pid, &status, WNOHANG) == a->pid) {
			env_forget_child(a->pid);
			a->pid = 0;
			ck_abort_msg("tpm2-abrmd exited (status 0x%x; see %s)", status, log);
		}
		ck_assert_msg(now_s() < deadline, "tpm2-abrmd did not answer in %d s (see %s)",
		    DEADLINE, log);
		nap_ms(50);
	}
}

void
env_abrmd_stop(struct ev_abrmd *a)
{
	env_stop_pid(&a->pid);
	env_stop_pid(&a->bus_pid);
	if (a->address[0] != '\0')
		unsetenv("DBUS_SESSION_BUS_ADDRESS");
	memset(a, 0, sizeof(*a));
}
