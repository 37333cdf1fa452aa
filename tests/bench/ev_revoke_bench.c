/*
 * Revocation latency: how long after a signed list lands in the watched
 * directory (i) a process blocked in C_WaitForSlotEvent returns the zone's
 * slot, (ii) a process signing in a loop gets CKR_KEY_HANDLE_INVALID.
 *
 *   ev_revoke_bench keygen KEYFILE
 *	a new authority key: KEYFILE gets the seed (base64, 0600); the
 *	public key (base64) is printed for [revocation] public_key.
 *   ev_revoke_bench [-n TRIALS] [-p PREFIX] [-d DEVICE] [-s FIRST_SEQ] [-P PIN]
 *       MODULE KEYFILE WATCH_DIR ZONE_LABEL
 *	the zone ZONE_LABEL holds EC private keys labelled PREFIX0 ..
 *	PREFIX<TRIALS-1>. A waiter child blocks in C_WaitForSlotEvent in a
 *	loop; a signer child signs with key i until it is refused, reports,
 *	and moves on to key i + 1. For each trial the parent writes a list
 *	naming key i (sequence FIRST_SEQ + i) beside WATCH_DIR and renames it
 *	in, noting CLOCK_MONOTONIC just before the rename; the children note
 *	it when they see the revocation and report through pipes.
 *   ev_revoke_bench -b [-n KEYS] [-p PREFIX] [-d DEVICE] [-s SEQ] [-P PIN]
 *       MODULE KEYFILE WATCH_DIR ZONE_LABEL
 *	bulk (tests/bench/scale.sh): one list naming the KEYS keys PREFIX0 ..
 *	PREFIX<KEYS-1>; the signer signs with the last of them. One trial,
 *	timed from the rename to the waiter's slot event and to the signer's
 *	refusal (one of the two children applies the list: the parent has
 *	finalized the module).
 *
 * Lists are made here with libsodium, the module is loaded with dlopen()
 * as applications load it. EDGEVAULT_CONF must name the configuration
 * whose [revocation] section pins KEYFILE's public key and watches
 * WATCH_DIR. Exit status: 0 when every trial completed.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "bench_p11.h"
#include "pkcs11/pkcs11.h"

#define B64 sodium_base64_VARIANT_ORIGINAL
#define TRIAL_DEADLINE 10.0 /* seconds for both children to see one list */
#define TARGET_P99_MS 20.0
#define BULK_DEADLINE 600.0 /* seconds for a list naming many keys (-b) */

enum { MSG_READY = 1, MSG_EVENT, MSG_REFUSED, MSG_FAILED };

/* What a child reports (one write, below PIPE_BUF: never interleaved). */
struct report {
	int type;
	unsigned long key;  /* MSG_REFUSED: the key index */
	unsigned long slot; /* MSG_EVENT */
	unsigned long rv;
	double t;           /* CLOCK_MONOTONIC, seconds */
};

static CK_FUNCTION_LIST *f;

static void
send_report(int fd, int type, unsigned long key, unsigned long slot, CK_RV rv)
{
	struct report r = { type, key, slot, rv, bench_now_s() };

	if (write(fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
		_exit(4);
}

static int
keygen(const char *path)
{
	unsigned char seed[crypto_sign_SEEDBYTES], pk[crypto_sign_PUBLICKEYBYTES];
	unsigned char sk[crypto_sign_SECRETKEYBYTES];
	char s64[sodium_base64_ENCODED_LEN(crypto_sign_SEEDBYTES, B64)];
	char p64[sodium_base64_ENCODED_LEN(crypto_sign_PUBLICKEYBYTES, B64)];
	int fd;
	FILE *out;

	randombytes_buf(seed, sizeof(seed));
	crypto_sign_seed_keypair(pk, sk, seed);
	sodium_bin2base64(s64, sizeof(s64), seed, sizeof(seed), B64);
	sodium_bin2base64(p64, sizeof(p64), pk, sizeof(pk), B64);
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(sk, sizeof(sk));
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || (out = fdopen(fd, "w")) == NULL) {
		fprintf(stderr, "ev_revoke_bench: %s: %s\n", path, strerror(errno));
		return 1;
	}
	fprintf(out, "%s\n", s64);
	sodium_memzero(s64, sizeof(s64));
	if (fclose(out) != 0) {
		fprintf(stderr, "ev_revoke_bench: %s: %s\n", path, strerror(errno));
		return 1;
	}
	printf("%s\n", p64);
	return 0;
}

static int
read_key(const char *path, unsigned char sk[crypto_sign_SECRETKEYBYTES])
{
	unsigned char seed[crypto_sign_SEEDBYTES], pk[crypto_sign_PUBLICKEYBYTES];
	char line[128];
	size_t n = 0;
	FILE *in = fopen(path, "r");
	int rc = -1;

	if (in == NULL) {
		fprintf(stderr, "ev_revoke_bench: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fgets(line, sizeof(line), in) != NULL &&
	    sodium_base642bin(seed, sizeof(seed), line, strcspn(line, "\r\n"), NULL, &n, NULL,
		B64) == 0 &&
	    n == sizeof(seed)) {
		crypto_sign_seed_keypair(pk, sk, seed);
		rc = 0;
	} else {
		fprintf(stderr, "ev_revoke_bench: %s: not a base64 seed\n", path);
	}
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(line, sizeof(line));
	fclose(in);
	return rc;
}

/*
 * The signed list naming the keys PREFIX0 .. PREFIX<count-1>, or the one
 * key label when prefix is NULL; malloc'ed.
 */
static char *
make_list(const unsigned char *sk, const char *device, long seq, CK_SLOT_ID zone,
    const char *label, const char *prefix, unsigned long count, size_t *len)
{
	char *doc, *payload, *out;
	unsigned char sig[crypto_sign_BYTES];
	char sig64[sodium_base64_ENCODED_LEN(crypto_sign_BYTES, B64)];
	size_t dlen, plen, olen, cap = 256 + (count + 1) * (128 + strlen(label) +
	    (prefix != NULL ? strlen(prefix) : 0));
	unsigned long i;
	int n, m;

	doc = malloc(cap);
	if (doc == NULL)
		return NULL;
	n = snprintf(doc, cap,
	    "{\"version\":1,\"device\":\"%s\",\"sequence\":%ld,\"issued_at\":%lld,"
	    "\"entries\":[",
	    device, seq, (long long)time(NULL));
	for (i = 0; n > 0 && (size_t)n < cap && i < (prefix != NULL ? count : 1); i++) {
		if (prefix != NULL)
			m = snprintf(doc + n, cap - (size_t)n,
			    "%s{\"kind\":\"key\",\"zone\":%lu,\"label\":\"%s%lu\","
			    "\"reason\":\"benchmark\"}",
			    i > 0 ? "," : "", (unsigned long)zone, prefix, i);
		else
			m = snprintf(doc + n, cap - (size_t)n,
			    "{\"kind\":\"key\",\"zone\":%lu,\"label\":\"%s\","
			    "\"reason\":\"benchmark\"}",
			    (unsigned long)zone, label);
		n = m < 0 ? -1 : n + m;
	}
	if (n > 0 && (size_t)n < cap) {
		m = snprintf(doc + n, cap - (size_t)n, "]}");
		n = m < 0 ? -1 : n + m;
	}
	if (n < 0 || (size_t)n >= cap) {
		free(doc);
		return NULL;
	}
	dlen = (size_t)n;
	crypto_sign_detached(sig, NULL, (const unsigned char *)doc, dlen, sk);
	sodium_bin2base64(sig64, sizeof(sig64), sig, sizeof(sig), B64);
	plen = sodium_base64_ENCODED_LEN(dlen, B64);
	payload = malloc(plen);
	if (payload == NULL) {
		free(doc);
		return NULL;
	}
	sodium_bin2base64(payload, plen, (const unsigned char *)doc, dlen, B64);
	free(doc);
	olen = plen + sizeof(sig64) + 128;
	out = malloc(olen);
	if (out != NULL) {
		n = snprintf(out, olen,
		    "{\"type\":\"edgevault-revocation-list\",\"payload\":\"%s\","
		    "\"signature\":\"%s\"}\n",
		    payload, sig64);
		*len = (size_t)n;
	}
	free(payload);
	return out;
}

static CK_RV
user_session(CK_SLOT_ID slot, const char *pin, CK_SESSION_HANDLE *h)
{
	CK_RV rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, h);

	if (rv != CKR_OK)
		return rv;
	rv = f->C_Login(*h, CKU_USER, (CK_UTF8CHAR *)pin, strlen(pin));
	return rv == CKR_USER_ALREADY_LOGGED_IN ? CKR_OK : rv;
}

static CK_RV
find_key(CK_SESSION_HANDLE h, const char *label, CK_OBJECT_HANDLE *o)
{
	CK_OBJECT_CLASS c = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = { { CKA_CLASS, &c, sizeof(c) },
		{ CKA_LABEL, (void *)label, strlen(label) } };
	CK_ULONG n = 0;
	CK_RV rv = f->C_FindObjectsInit(h, t, 2);

	if (rv != CKR_OK)
		return rv;
	rv = f->C_FindObjects(h, o, 1, &n);
	(void)f->C_FindObjectsFinal(h);
	if (rv == CKR_OK && n != 1)
		rv = CKR_KEY_HANDLE_INVALID;
	return rv;
}

static CK_RV
sign_once(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key)
{
	CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
	CK_BYTE digest[32] = { 1, 2, 3 }, sig[132];
	CK_ULONG len = sizeof(sig);
	CK_RV rv = f->C_SignInit(h, &m, key);

	if (rv != CKR_OK)
		return rv;
	return f->C_Sign(h, digest, sizeof(digest), sig, &len);
}

/*
 * Fork a child that dies with the parent, with a pipe: *fd is the
 * parent's reading end in the parent, the child's writing end in the child.
 */
static pid_t
spawn(int *fd)
{
	pid_t parent = getpid(), pid;
	int p[2];

	if (pipe(p) != 0)
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(99);
		*fd = p[1];
		return 0;
	}
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		return -1;
	}
	*fd = p[0];
	return pid;
}

static void
waiter(int wr)
{
	CK_SLOT_ID slot;
	CK_RV rv = bench_init(f);

	send_report(wr, rv == CKR_OK ? MSG_READY : MSG_FAILED, 0, 0, rv);
	if (rv != CKR_OK)
		_exit(1);
	for (;;) {
		slot = 0;
		rv = f->C_WaitForSlotEvent(0, &slot, NULL);
		send_report(wr, rv == CKR_OK ? MSG_EVENT : MSG_FAILED, 0, slot, rv);
		if (rv != CKR_OK)
			_exit(1);
	}
}

static void
signer(int wr, CK_SLOT_ID zone, const char *pin, const CK_OBJECT_HANDLE *keys, unsigned long n)
{
	CK_SESSION_HANDLE h;
	unsigned long i;
	CK_RV rv = bench_init(f);

	if (rv == CKR_OK)
		rv = user_session(zone, pin, &h);
	if (rv == CKR_OK)
		rv = sign_once(h, keys[0]);
	send_report(wr, rv == CKR_OK ? MSG_READY : MSG_FAILED, 0, 0, rv);
	if (rv != CKR_OK)
		_exit(1);
	for (i = 0; i < n; i++) {
		while ((rv = sign_once(h, keys[i])) == CKR_OK)
			;
		send_report(wr, rv == CKR_KEY_HANDLE_INVALID ? MSG_REFUSED : MSG_FAILED, i, 0, rv);
		if (rv != CKR_KEY_HANDLE_INVALID)
			_exit(1);
	}
	_exit(0);
}

/* Read one report from a child within the deadline; 0, or -1. */
static int
get_report(int fd, struct report *r, double end)
{
	struct pollfd p = { fd, POLLIN, 0 };
	double left = end - bench_now_s();
	ssize_t n;

	if (left <= 0)
		return -1;
	if (poll(&p, 1, (int)(left * 1000) + 1) <= 0)
		return -1;
	n = read(fd, r, sizeof(*r));
	return n == (ssize_t)sizeof(*r) ? 0 : -1;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v. */
static double
pct(const double *v, size_t n, double p)
{
	size_t k = (size_t)(p * (double)n + 0.999999);

	if (k == 0)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: ev_revoke_bench keygen KEYFILE\n"
	    "       ev_revoke_bench [-b] [-n TRIALS] [-p PREFIX] [-d DEVICE] [-s FIRST_SEQ] [-P PIN]\n"
	    "                       MODULE KEYFILE WATCH_DIR ZONE_LABEL\n");
}

static void
stop(pid_t pid)
{
	if (pid > 0) {
		(void)kill(pid, SIGKILL);
		(void)waitpid(pid, NULL, 0);
	}
}

int
main(int argc, char **argv)
{
	unsigned long trials = 200, i, done = 0;
	const char *prefix = "bench-", *device = "test-device", *pin = "user-secret";
	long first_seq = 1;
	unsigned char sk[crypto_sign_SECRETKEYBYTES];
	CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR);
	CK_OBJECT_HANDLE *keys = NULL;
	CK_SESSION_HANDLE h = 0;
	CK_SLOT_ID zone = 0;
	double *ev_ms = NULL, *rf_ms = NULL, end, t0;
	pid_t wpid = -1, spid = -1;
	int wfd = -1, sfd = -1, c, rc = 1, bulk = 0;
	char tmp[4096], dst[4096], label[256];
	void *dl;
	CK_RV rv;

	if (sodium_init() < 0)
		return 1;
	if (argc == 3 && strcmp(argv[1], "keygen") == 0)
		return keygen(argv[2]);
	while ((c = getopt(argc, argv, "bn:p:d:s:P:")) != -1) {
		switch (c) {
		case 'b':
			bulk = 1;
			break;
		case 'n':
			trials = strtoul(optarg, NULL, 10);
			break;
		case 'p':
			prefix = optarg;
			break;
		case 'd':
			device = optarg;
			break;
		case 's':
			first_seq = strtol(optarg, NULL, 10);
			break;
		case 'P':
			pin = optarg;
			break;
		default:
			usage();
			return 2;
		}
	}
	if (argc - optind != 4 || trials == 0 || first_seq < 1) {
		usage();
		return 2;
	}
	if (read_key(argv[optind + 1], sk) != 0)
		return 1;
	dl = dlopen(argv[optind], RTLD_NOW | RTLD_LOCAL);
	if (dl == NULL) {
		fprintf(stderr, "ev_revoke_bench: %s\n", dlerror());
		return 1;
	}
	*(void **)&get_list = dlsym(dl, "C_GetFunctionList");
	if (get_list == NULL || get_list(&f) != CKR_OK) {
		fprintf(stderr, "ev_revoke_bench: no C_GetFunctionList\n");
		return 1;
	}
	keys = calloc(trials, sizeof(*keys));
	ev_ms = calloc(trials, sizeof(*ev_ms));
	rf_ms = calloc(trials, sizeof(*rf_ms));
	if (keys == NULL || ev_ms == NULL || rf_ms == NULL)
		goto out;

	/* The keys, found once here (handles are the same in every process). */
	rv = bench_init(f);
	if (rv == CKR_OK)
		rv = bench_find_token(f, argv[optind + 3], &zone);
	if (rv == CKR_OK)
		rv = user_session(zone, pin, &h);
	for (i = 0; rv == CKR_OK && i < trials; i++) {
		snprintf(label, sizeof(label), "%s%lu", prefix, i);
		rv = find_key(h, label, &keys[i]);
		if (rv != CKR_OK)
			fprintf(stderr, "ev_revoke_bench: key %s: 0x%lx\n", label, rv);
	}
	(void)f->C_Finalize(NULL); /* the children apply the lists */
	if (rv != CKR_OK) {
		fprintf(stderr, "ev_revoke_bench: set-up: 0x%lx\n", rv);
		goto out;
	}

	wpid = spawn(&wfd);
	if (wpid == 0)
		waiter(wfd);
	spid = spawn(&sfd);
	if (spid == 0)
		signer(sfd, zone, pin, bulk ? keys + trials - 1 : keys, bulk ? 1 : trials);
	if (wpid < 0 || spid < 0) {
		fprintf(stderr, "ev_revoke_bench: fork: %s\n", strerror(errno));
		goto out;
	}
	{
		struct report r;

		end = bench_now_s() + 30;
		if (get_report(wfd, &r, end) != 0 || r.type != MSG_READY ||
		    get_report(sfd, &r, end) != 0 || r.type != MSG_READY) {
			fprintf(stderr, "ev_revoke_bench: a child did not start\n");
			goto out;
		}
	}

	for (i = 0; i < (bulk ? 1 : trials); i++) {
		struct report r;
		size_t len;
		char *list;
		FILE *fp;
		int got_ev = 0, got_rf = 0;

		snprintf(label, sizeof(label), "%s%lu", prefix, i);
		list = bulk ? make_list(sk, device, first_seq, zone, "", prefix, trials, &len) :
			      make_list(sk, device, first_seq + (long)i, zone, label, NULL, 1, &len);
		if (list == NULL)
			goto out;
		snprintf(tmp, sizeof(tmp), "%s/../.bench-list.tmp", argv[optind + 2]);
		snprintf(dst, sizeof(dst), "%s/list-%08ld.json", argv[optind + 2],
		    first_seq + (long)i);
		fp = fopen(tmp, "w");
		if (fp == NULL || fwrite(list, 1, len, fp) != len || fclose(fp) != 0) {
			fprintf(stderr, "ev_revoke_bench: %s: %s\n", tmp, strerror(errno));
			free(list);
			goto out;
		}
		free(list);
		t0 = bench_now_s();
		if (rename(tmp, dst) != 0) {
			fprintf(stderr, "ev_revoke_bench: rename %s: %s\n", dst, strerror(errno));
			goto out;
		}
		end = t0 + (bulk ? BULK_DEADLINE : TRIAL_DEADLINE);
		while (!got_ev || !got_rf) {
			/* A child that has reported for this trial is not listened to. */
			struct pollfd p[2] = { { got_ev ? -1 : wfd, POLLIN, 0 },
				{ got_rf ? -1 : sfd, POLLIN, 0 } };
			double left = end - bench_now_s();

			if (left <= 0 || poll(p, 2, (int)(left * 1000) + 1) <= 0) {
				fprintf(stderr, "ev_revoke_bench: trial %lu: no %s in %.0f s\n",
				    i, !got_ev ? "slot event" : "refusal",
				    bulk ? BULK_DEADLINE : TRIAL_DEADLINE);
				goto out;
			}
			if ((p[0].revents & (POLLIN | POLLHUP)) && get_report(wfd, &r, end) == 0) {
				if (r.type != MSG_EVENT) {
					fprintf(stderr, "ev_revoke_bench: waiter: 0x%lx\n", r.rv);
					goto out;
				}
				/* Late duplicates of an earlier trial come before t0. */
				if (r.slot == zone && r.t >= t0 && !got_ev) {
					ev_ms[i] = (r.t - t0) * 1000;
					got_ev = 1;
				}
			} else if (p[0].revents & (POLLHUP | POLLERR)) {
				fprintf(stderr, "ev_revoke_bench: the waiter has gone\n");
				goto out;
			}
			if ((p[1].revents & (POLLIN | POLLHUP)) && get_report(sfd, &r, end) == 0) {
				if (r.type != MSG_REFUSED || r.key != i) {
					fprintf(stderr,
					    "ev_revoke_bench: signer: key %lu: 0x%lx (trial %lu)\n",
					    r.key, r.rv, i);
					goto out;
				}
				rf_ms[i] = (r.t - t0) * 1000;
				got_rf = 1;
			} else if (p[1].revents & (POLLHUP | POLLERR)) {
				fprintf(stderr, "ev_revoke_bench: the signer has gone\n");
				goto out;
			}
		}
		done++;
	}
	rc = 0;
out:
	stop(wpid);
	stop(spid);
	if (bulk && done > 0) {
		printf("{\"bench\":\"revoke-bulk\",\"keys\":%lu,\"event_s\":%.3f,"
		       "\"refused_s\":%.3f}\n",
		    trials, ev_ms[0] / 1e3, rf_ms[0] / 1e3);
	} else if (done > 0) {
		qsort(ev_ms, done, sizeof(*ev_ms), cmp_double);
		qsort(rf_ms, done, sizeof(*rf_ms), cmp_double);
		printf("revocation latency, %lu trials (ms):\n", done);
		printf("  landing -> slot event         p50 %7.3f  p99 %7.3f  max %7.3f  %s\n",
		    pct(ev_ms, done, 0.5), pct(ev_ms, done, 0.99), ev_ms[done - 1],
		    pct(ev_ms, done, 0.99) < TARGET_P99_MS ? "(p99 < 20 ms)" : "(p99 OVER 20 ms)");
		printf("  landing -> first refused sign p50 %7.3f  p99 %7.3f  max %7.3f  %s\n",
		    pct(rf_ms, done, 0.5), pct(rf_ms, done, 0.99), rf_ms[done - 1],
		    pct(rf_ms, done, 0.99) < TARGET_P99_MS ? "(p99 < 20 ms)" : "(p99 OVER 20 ms)");
		printf("{\"bench\":\"revoke-latency\",\"trials\":%lu,"
		       "\"event_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f},"
		       "\"refused_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f},"
		       "\"target_p99_ms\":%.0f}\n",
		    done, pct(ev_ms, done, 0.5), pct(ev_ms, done, 0.99), ev_ms[done - 1],
		    pct(rf_ms, done, 0.5), pct(rf_ms, done, 0.99), rf_ms[done - 1], TARGET_P99_MS);
	}
	sodium_memzero(sk, sizeof(sk));
	free(keys);
	free(ev_ms);
	free(rf_ms);
	return rc;
}
