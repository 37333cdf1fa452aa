/*
 * edgevault-tpm-helper: one operation of the tpm2 root, out of the host's
 * process (tpm2_helper.h says when and why). Started by the module with a
 * socket on stdin and stdout: it reads one request (tpm2_wire.h), runs the
 * operation with the tpm2 root's own code (src/root/tpm2.c) on a
 * connection of its own, writes one reply and exits. Its log lines go
 * back in the reply (the module prefixes them "TPM helper: ", so they do
 * not say so themselves); the TSS's own messages go to stderr (the host's).
 *
 * OpenSSL's configuration is never loaded here, so no openssl.cnf can
 * make an ENGINE the default for ESAPI's cryptography in this process.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "log.h"
#include "root.h"
#include "tpm2_wire.h"

#define REQUEST_TIMEOUT_MS 30000 /* the module sends at once */

/* The log lines collected for the reply. */
static struct {
	int prio;
	char text[EV_WIRE_LOG_LEN + 1];
} lines[EV_WIRE_LOG_LINES];
static size_t nlines, dropped;

/*
 * Keep a line; when full (one slot is kept for the count of lines
 * dropped), it replaces the least severe kept line (the latest of those)
 * if it is more severe, so that the errors that explain a failure come
 * back rather than the debug lines before them.
 */
static void
collect(int priority, const char *msg)
{
	size_t i, slot = nlines;

	if (nlines >= EV_WIRE_LOG_LINES - 1) {
		dropped++;
		slot = 0;
		for (i = 1; i < nlines; i++)
			if (lines[i].prio >= lines[slot].prio)
				slot = i;
		if (lines[slot].prio <= priority)
			return; /* nothing kept is less severe */
		/* Keep the order: close the gap, the new line goes last. */
		memmove(&lines[slot], &lines[slot + 1], (nlines - slot - 1) * sizeof(lines[0]));
		slot = nlines - 1;
	} else {
		nlines++;
	}
	lines[slot].prio = priority;
	snprintf(lines[slot].text, sizeof(lines[slot].text), "%s", msg);
}

/* A parsed request; pointers into the request's body (secure memory). */
struct request {
	unsigned op;
	char tcti[EV_WIRE_TCTI_MAX + 1];
	uint32_t primary_handle;
	const unsigned char *pinned, *aad, *blob, *nonce;
	size_t pinned_len, aadlen, bloblen, nonce_len;
	ev_secret plain, auth; /* views into the body: never freed */
	uint32_t pcrs;
};

/* 0, or -1 (logged) for a request that is not well formed. */
static int
parse(const ev_secret *body, struct request *q)
{
	struct ev_rbuf r;
	const unsigned char *p;
	size_t n;

	memset(q, 0, sizeof(*q));
	ev_rbuf_init(&r, body->data, body->len);
	if (ev_rbuf_u8(&r) != EV_WIRE_VERSION)
		r.err = 1;
	q->op = ev_rbuf_u8(&r);
	ev_rbuf_bytes(&r, EV_WIRE_TCTI_MAX, &p, &n);
	if (!r.err && n > 0 && memchr(p, '\0', n) == NULL)
		memcpy(q->tcti, p, n);
	else
		r.err = 1;
	q->primary_handle = ev_rbuf_u32(&r);
	ev_rbuf_bytes(&r, EV_ROOT_NAME_MAX, &q->pinned, &q->pinned_len);
	switch (q->op) {
	case EV_WIRE_SEAL:
		ev_rbuf_bytes(&r, EV_WIRE_AAD_MAX, &q->aad, &q->aadlen);
		ev_rbuf_bytes(&r, EV_WIRE_SECRET_MAX, &p, &q->plain.len);
		q->plain.data = (unsigned char *)p;
		q->pcrs = ev_rbuf_u32(&r);
		ev_rbuf_bytes(&r, EV_SEAL_AUTH_MAX, &p, &q->auth.len);
		q->auth.data = (unsigned char *)p;
		break;
	case EV_WIRE_UNSEAL:
		ev_rbuf_bytes(&r, EV_WIRE_AAD_MAX, &q->aad, &q->aadlen);
		ev_rbuf_bytes(&r, EV_WIRE_BLOB_MAX, &q->blob, &q->bloblen);
		ev_rbuf_bytes(&r, EV_SEAL_AUTH_MAX, &p, &q->auth.len);
		q->auth.data = (unsigned char *)p;
		break;
	case EV_WIRE_QUOTE:
		q->pcrs = ev_rbuf_u32(&r);
		ev_rbuf_bytes(&r, EV_QUOTE_NONCE_LEN, &q->nonce, &q->nonce_len);
		break;
	case EV_WIRE_NAME:
		break;
	default:
		r.err = 1;
	}
	if (ev_rbuf_done(&r) != 0) {
		ev_error("a malformed request");
		return -1;
	}
	return 0;
}

/* The operation, its results into the reply's tail t. */
static CK_RV
run_op(ev_root *root, struct request *q, struct ev_wbuf *t)
{
	unsigned char *blob = NULL, name[EV_ROOT_NAME_MAX];
	ev_seal_opts so = { 0, NULL };
	ev_unseal_opts uo = { NULL, 0, 0 };
	ev_secret *plain = NULL;
	struct ev_quote *quote;
	size_t n = 0;
	CK_RV rv;

	switch (q->op) {
	case EV_WIRE_SEAL:
		so.pcrs = q->pcrs;
		so.auth = q->auth.len > 0 ? &q->auth : NULL;
		rv = ev_root_seal(root, q->aad, q->aadlen, &q->plain, &so, &blob, &n);
		ev_wbuf_bytes(t, blob, rv == CKR_OK ? n : 0);
		free(blob);
		return rv;
	case EV_WIRE_UNSEAL:
		uo.auth = q->auth.len > 0 ? &q->auth : NULL;
		rv = ev_root_unseal(root, q->aad, q->aadlen, q->blob, q->bloblen, &uo, &plain);
		ev_wbuf_u32(t, uo.pcrs);
		ev_wbuf_u32(t, uo.changed);
		ev_wbuf_bytes(t, rv == CKR_OK ? plain->data : NULL, rv == CKR_OK ? plain->len : 0);
		ev_secret_free(plain);
		return rv;
	case EV_WIRE_QUOTE:
		quote = calloc(1, sizeof(*quote));
		if (quote == NULL)
			return CKR_HOST_MEMORY;
		rv = ev_root_quote(root, q->pcrs, q->nonce, q->nonce_len, quote);
		if (rv != CKR_OK)
			memset(quote, 0, sizeof(*quote));
		ev_wbuf_bytes(t, quote->attest, quote->attest_len);
		ev_wbuf_bytes(t, quote->sig, quote->sig_len);
		ev_wbuf_bytes(t, quote->ak, quote->ak_len);
		free(quote);
		return rv;
	default: /* EV_WIRE_NAME */
		n = sizeof(name);
		rv = ev_root_primary_name(root, name, &n);
		ev_wbuf_bytes(t, name, rv == CKR_OK ? n : 0);
		return rv;
	}
}

/* The reply's tail when nothing ran: the op's fields, empty. */
static void
empty_tail(unsigned op, struct ev_wbuf *t)
{
	switch (op) {
	case EV_WIRE_UNSEAL:
		ev_wbuf_u32(t, 0);
		ev_wbuf_u32(t, 0);
		ev_wbuf_bytes(t, NULL, 0);
		break;
	case EV_WIRE_QUOTE:
		ev_wbuf_bytes(t, NULL, 0);
		ev_wbuf_bytes(t, NULL, 0);
		ev_wbuf_bytes(t, NULL, 0);
		break;
	default:
		ev_wbuf_bytes(t, NULL, 0);
	}
}

/* Reach the TPM as the module's root would, and run the request. */
static CK_RV
serve(struct request *q, struct ev_wbuf *tail)
{
	char err[512] = "", backend[] = "tpm2";
	ev_config cfg;
	ev_root *root = NULL;
	CK_RV rv;

	memset(&cfg, 0, sizeof(cfg));
	cfg.root_backend = backend;
	cfg.root_tcti = q->tcti;
	cfg.root_primary_handle = q->primary_handle;
	rv = ev_root_tpm2_open(&cfg, EV_ROOT_IN_PROCESS, &root, err, sizeof(err));
	if (rv != CKR_OK) {
		ev_error("root of trust: %s", err);
		empty_tail(q->op, tail);
		return rv;
	}
	if (q->pinned_len > 0 &&
	    ev_root_pin_primary_name(root, q->pinned, q->pinned_len) != CKR_OK) {
		ev_error("a malformed primary name");
		empty_tail(q->op, tail);
		ev_root_free(root);
		return CKR_DEVICE_ERROR;
	}
	rv = run_op(root, q, tail);
	ev_root_free(root);
	return rv;
}

int
main(void)
{
	struct ev_wbuf reply, tail;
	struct request q;
	ev_secret *body = NULL;
	struct stat st;
	CK_RV rv = CKR_DEVICE_ERROR;
	size_t i;
	int ok;

	/*
	 * Never with privileges the starter lacks (setuid, setgid, file
	 * capabilities): it loads the TCTI library the request names.
	 */
	if (getauxval(AT_SECURE) != 0)
		return 2;
	/* A closed stderr would be the next descriptor opened: the TPM's. */
	if (fcntl(2, F_GETFD) < 0 && open("/dev/null", O_WRONLY) != 2)
		return 1;
	/* The module gone: a failed write, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	/* Before anything else touches OpenSSL: no openssl.cnf, so no default ENGINE. */
	if (OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG, NULL) != 1 || ev_secmem_init() != 0)
		return 1;
	if (fstat(0, &st) != 0 || !S_ISSOCK(st.st_mode)) {
		fprintf(stderr, "edgevault-tpm-helper: started by the edgevault PKCS#11 module "
				"only (a socket on stdin)\n");
		return 2;
	}
	ev_log_set_sink(collect);
	if (ev_wbuf_init(&reply) != 0 || ev_wbuf_init(&tail) != 0)
		return 1;
	memset(&q, 0, sizeof(q));
	if (ev_wire_recv(0, &body, ev_wire_deadline(REQUEST_TIMEOUT_MS)) != 0) {
		ev_error("no request: %s", errno != 0 ? strerror(errno) : "end of file");
		empty_tail(0, &tail);
	} else if (parse(body, &q) != 0) {
		empty_tail(q.op, &tail);
	} else {
		rv = serve(&q, &tail);
	}
	if (tail.err) {
		ev_error("the answer does not fit in a message");
		rv = CKR_DEVICE_ERROR;
	}
	if (dropped > 0) { /* collect() kept the last line for this */
		lines[nlines].prio = LOG_WARNING;
		snprintf(lines[nlines].text, sizeof(lines[nlines].text),
			 "%zu more log lines dropped", dropped);
		nlines++;
	}
	ev_wbuf_u8(&reply, EV_WIRE_VERSION);
	ev_wbuf_u64(&reply, rv);
	ev_wbuf_u32(&reply, (uint32_t)nlines);
	for (i = 0; i < nlines; i++) {
		ev_wbuf_u8(&reply, (unsigned)lines[i].prio);
		ev_wbuf_bytes(&reply, lines[i].text, strlen(lines[i].text));
	}
	/* A tail that did not fit is not sent: the module reads a malformed answer. */
	if (!tail.err)
		ev_wbuf_raw(&reply, tail.buf->data, tail.len);
	ok = ev_wire_send(1, &reply, ev_wire_deadline(REQUEST_TIMEOUT_MS)) == 0;
	ev_wbuf_free(&tail);
	ev_wbuf_free(&reply);
	ev_secret_free(body);
	return ok ? 0 : 1;
}
