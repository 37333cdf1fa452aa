/*
 * The "tpm2" root backend: a TPM 2.0 reached through a TCTI (the kernel's
 * resource manager, tpm2-abrmd, swtpm). Each secret is sealed as a TPM
 * sealed-data object (TPM2_ALG_KEYEDHASH, no scheme) under a storage
 * primary key of the owner hierarchy; only this TPM, under this primary,
 * can load it again. doc/key-protection.md ("The root (backend tpm2)")
 * gives the object's template, the blob layout and the reasons.
 *
 * Sealed blob: version (0x02) || u16 n || TPM2B_PUBLIC (n bytes, TPM
 * marshalling) || u16 m || TPM2B_PRIVATE (m bytes). The object's data is
 * BLAKE2b-256(0x02 || associated data) || the secret: the TPM protects
 * the data's secrecy and integrity, and the digest, checked after
 * TPM2_Unseal, binds the associated data (and the version) to it.
 *
 * A seal with options (ev_seal_opts) makes version 0x03: a binding byte
 * (1: a PCR policy, 2: an auth value), the PCR selection (u32) and the
 * PCR values it was sealed to (32 bytes each, ascending PCR order) come
 * before the two halves, and the digest covers version, binding and
 * selection. A PCR-bound object has authPolicy = PolicyPCR(selection,
 * values) and no userWithAuth: it is unsealed in a policy session that
 * runs TPM2_PolicyPCR first, and a PCR that changed since makes
 * TPM2_Unseal fail (EVR_PCR_MISMATCH, with the PCRs that differ). An
 * auth-bound object has the auth value and, unlike the others, no noDA:
 * a wrong value counts towards the TPM's dictionary-attack lockout.
 *
 * Every command that carries the secret runs in a salted HMAC session
 * (salted with the primary key, AES-128-CFB parameter encryption), so the
 * secret never crosses the bus to the TPM in clear: TPM2_Create's
 * sensitive data is encrypted on its way in, TPM2_Unseal's answer on its
 * way out.
 *
 * The primary is transient by default: made with TPM2_CreatePrimary from a
 * fixed template at the first operation, its name checked, then saved
 * (TPM2_ContextSave) and flushed. A TPM derives a primary from the
 * hierarchy's seed and the template, so it is the same key every time (and
 * another TPM's is a different one). Each operation loads it from the
 * saved context and flushes it after: between operations the root holds
 * no TPM object or session. [root] primary_handle names a persistent one
 * instead, made beforehand by the operator.
 *
 * One lock serialises all use of the TPM connection. Through a resource
 * manager the connection stays open; without one (direct_tcti) it is made
 * for each operation, and an operation that finds no room for its objects
 * or sessions (other processes' operations hold them) waits and is tried
 * again, for WAIT_MS in all. A connection that fails (swtpm or
 * tpm2-abrmd restarted), or a TPM that has forgotten our primary (reset,
 * restarted), is made again, once, and the operation retried. After
 * fork() the child forgets the parent's ESAPI and TCTI contexts without
 * finalising them (see tpm_forked) and connects afresh at first use.
 *
 * Two kinds of process cannot run ESAPI themselves: one whose OpenSSL
 * has a default ENGINE (ESAPI's salted sessions would go to it), and a
 * fork child of a process that started a tabrmd TCTI (GLib's D-Bus does
 * not survive fork). There seal, unseal, quote, the primary's name and
 * the connection at open run in edgevault-tpm-helper, a process started
 * for the one operation that runs this same code (use_helper(),
 * tpm2_helper.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* strdup */
#endif

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "log.h"
#include "root.h"
#include "tpm2_helper.h"

#define SEAL_VERSION 2
#define SEAL_VERSION_BOUND 3 /* with ev_seal_opts */
#define BIND_NONE 0
#define BIND_PCR 1
#define BIND_AUTH 2
#define AAD_DIGEST_LEN 32 /* BLAKE2b-256 */
#define PCR_LEN 32	  /* a SHA-256 PCR value */
#define PCR_SELECT_BYTES 3 /* PCRs 0 .. 23 */
/*
 * A sealed object's data is at most MAX_SYM_DATA bytes, 128 on the TPMs
 * of the PC Client profile (the TSS headers allow 256; TPMs do not).
 */
#define SEALED_DATA_MAX 128
#define PLAIN_MAX (SEALED_DATA_MAX - AAD_DIGEST_LEN)
/*
 * How long an operation waits, in all, for a TPM reached without a
 * resource manager to have room for its objects and sessions (or for
 * /dev/tpm0 to open), while other processes use it (ms): one deadline
 * for the whole operation, counted from when it has the lock.
 */
#define WAIT_MS 5000

/* The sealed object's attributes (doc/key-protection.md says why). */
#define SEAL_ATTRS                                                                                 \
	(TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_USERWITHAUTH |               \
	 TPMA_OBJECT_NODA)
/* Bound to PCRs: only the policy authorises it (no userWithAuth). */
#define PCR_ATTRS (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_NODA)
/* Bound to an auth value: no noDA, so guessing it meets the TPM's lockout. */
#define AUTH_ATTRS (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_USERWITHAUTH)

/* The storage primary's: the TCG's storage root key template. */
#define PRIMARY_ATTRS                                                                              \
	(TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |        \
	 TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED |                    \
	 TPMA_OBJECT_DECRYPT)

struct tpm_root {
	ev_root base; /* first: an ev_root * is a struct tpm_root * */
	pthread_mutex_t lock;
	int lock_ok;
	char *tcti;
	uint32_t persistent; /* [root] primary_handle; 0: a transient primary */
	int direct;	     /* no resource manager: connected for one operation at a time */
	TSS2_TCTI_CONTEXT *tctx;
	ESYS_CONTEXT *esys;
	ESYS_TR primary;     /* loaded (or persistent) during an operation, else ESYS_TR_NONE */
	TPMS_CONTEXT *saved; /* the transient primary, saved (Esys_Free); NULL: not made yet */
	pid_t pid;	     /* the process that made the connection */
	int no_retry;	     /* set by an op: a retry could repeat what the TPM counted */
	int logged;	     /* set by an op: its failure is logged already */
	uint64_t deadline;   /* the running operation's end of waiting (now_ms) */
	TPM2B_NAME name;     /* the primary's name, as checked (size 0: not known yet) */
	TPM2B_NAME pinned;   /* the name the primary must have (size 0: any) */
	char *helper;	     /* [root] helper: edgevault-tpm-helper (tpm2_helper.h) */
	int in_process;	     /* EV_ROOT_IN_PROCESS: the helper's own root, never the helper */
};

/*
 * Whether this operation runs in edgevault-tpm-helper instead
 * (tpm2_helper.h: a default ENGINE, or a fork child of a tabrmd user),
 * and what the helper needs for it into t: 1, 0, or -1 (logged) when the
 * pinned name cannot be read, so that the helper never runs without it.
 */
static int
use_helper(struct tpm_root *r, struct ev_tpm_target *t)
{
	if (r->in_process || !ev_tpm_helper_wanted(r->tcti))
		return 0;
	memset(t, 0, sizeof(*t));
	t->helper = r->helper;
	t->tcti = r->tcti;
	t->primary_handle = r->persistent;
	t->lock = &r->lock; /* not held here: the helper's call holds it */
	if (pthread_mutex_lock(&r->lock) != 0) {
		ev_error("TPM root: cannot take its lock");
		return -1;
	}
	if (r->pinned.size > sizeof(t->pinned)) {
		pthread_mutex_unlock(&r->lock);
		ev_error("TPM root: the pinned primary name is too long");
		return -1;
	}
	t->pinned_len = r->pinned.size;
	memcpy(t->pinned, r->pinned.name, t->pinned_len);
	pthread_mutex_unlock(&r->lock);
	return 1;
}

/* The TSS's own words for a response code ("tpm:parameter(1):integrity check failed"). */
static const char *
rc_text(TSS2_RC rc)
{
	const char *s = Tss2_RC_Decode(rc);

	return s != NULL ? s : "unknown response code";
}

/*
 * A failure of the link to the TPM rather than an answer from it: the
 * TCTI's own errors, and ESAPI's or the resource manager's reports that
 * the layer below is gone. A new connection may cure them.
 */
static int
link_error(TSS2_RC rc)
{
	TSS2_RC layer = rc & TSS2_RC_LAYER_MASK, base = rc & ~TSS2_RC_LAYER_MASK;

	if (layer == TSS2_TCTI_RC_LAYER)
		return 1;
	if (layer == TSS2_TPM_RC_LAYER)
		return 0;
	return base == TSS2_BASE_RC_IO_ERROR || base == TSS2_BASE_RC_NO_CONNECTION;
}

/*
 * The TPM has forgotten our state: it was reset or restarted (swtpm, a
 * reboot of a separate TPM, a resource manager that flushed our objects),
 * so the primary we hold (handle 1 of every command we send) is not
 * loaded, or the TPM wants TPM2_Startup again. A new connection makes
 * the primary again.
 */
static int
stale_error(TSS2_RC rc)
{
	TSS2_RC layer = rc & TSS2_RC_LAYER_MASK, code = rc & ~TSS2_RC_LAYER_MASK;

	if (layer != TSS2_TPM_RC_LAYER && layer != TSS2_RESMGR_TPM_RC_LAYER)
		return 0;
	return code == TPM2_RC_REFERENCE_H0 || code == TPM2_RC_INITIALIZE ||
	       code == (TPM2_RC_HANDLE | TPM2_RC_1);
}

/*
 * The TPM's answer is about a parameter we sent (format 1 with the P bit:
 * a bad size, an integrity or binding failure, wrong attributes): for
 * TPM2_Load, the sealed object is not one this TPM and primary can load.
 */
static int
parameter_error(TSS2_RC rc)
{
	if ((rc & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER &&
	    (rc & TSS2_RC_LAYER_MASK) != TSS2_RESMGR_TPM_RC_LAYER)
		return 0;
	return (rc & TPM2_RC_FMT1) != 0 && (rc & TPM2_RC_P) != 0;
}

/*
 * The TPM's answer without the layer and the handle, session or
 * parameter number: TPM2_RC_POLICY_FAIL for a policy check failed in
 * session 1. 0 for an answer that is not the TPM's.
 */
static TSS2_RC
tpm_rc(TSS2_RC rc)
{
	TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;

	if (layer != TSS2_TPM_RC_LAYER && layer != TSS2_RESMGR_TPM_RC_LAYER)
		return 0;
	rc &= ~TSS2_RC_LAYER_MASK;
	if (rc & TPM2_RC_FMT1)
		return rc & (TPM2_RC_FMT1 | 0x3f);
	return rc & 0xfff;
}

/*
 * The TPM has no room for one more loaded object or session: another
 * process sharing a TPM without a resource manager holds some for the
 * moment, or one that died holding them left them there.
 */
static int
memory_full(TSS2_RC rc)
{
	TSS2_RC code = tpm_rc(rc);

	return code == TPM2_RC_OBJECT_MEMORY || code == TPM2_RC_SESSION_MEMORY ||
	       code == TPM2_RC_MEMORY || code == TPM2_RC_SESSION_HANDLES ||
	       code == TPM2_RC_CONTEXT_GAP;
}

/*
 * ESAPI's own state is broken: after a failure that is not the TPM's
 * answer, tss 3.2.1 refuses every later call on that context
 * (BAD_SEQUENCE). Only a new connection cures it.
 */
static int
esys_broken(TSS2_RC rc)
{
	return rc == TSS2_ESYS_RC_BAD_SEQUENCE;
}

/* An answer of the TPM (or of the resource manager in its place), not of the TSS. */
static int
tpm_answer(TSS2_RC rc)
{
	TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;

	return layer == TSS2_TPM_RC_LAYER || layer == TSS2_RESMGR_TPM_RC_LAYER;
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Wait a little before trying again: *step ms, give or take half (so
 * processes that collided do not try again in step), doubled up to
 * 160 ms each time, never past the operation's deadline. 0, or -1 when
 * the time is up.
 */
static int
wait_turn(struct tpm_root *r, unsigned *step)
{
	uint64_t now = now_ms(), ms;
	struct timespec ts;

	if (now >= r->deadline)
		return -1;
	ms = *step / 2 + randombytes_uniform(*step + 1);
	if (ms > r->deadline - now)
		ms = r->deadline - now;
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	if (*step < 160)
		*step *= 2;
	return 0;
}

/*
 * The character device a device TCTI opens: its configuration, or with
 * none the one tss 3.2.1 tries first that is there (/dev/tpmrm0, then
 * /dev/tpm0). NULL for the other TCTIs.
 */
static const char *
device_node(const char *tcti)
{
	const char *conf = strchr(tcti, ':');
	size_t n = conf != NULL ? (size_t)(conf - tcti) : strlen(tcti);

	if (memmem(tcti, n, "device", 6) == NULL)
		return NULL;
	if (conf != NULL && conf[1] != '\0')
		return conf + 1;
	return access("/dev/tpmrm0", F_OK) == 0 ? "/dev/tpmrm0" : "/dev/tpm0";
}

/*
 * Whether the TCTI reaches the TPM without a resource manager: the
 * device TCTI on anything but a /dev/tpmrm node, swtpm, mssim. Those
 * connect for one operation at a time.
 */
static int
direct_tcti(const char *tcti)
{
	const char *dev = device_node(tcti);

	if (ev_tcti_is_tabrmd(tcti))
		return 0;
	if (dev != NULL)
		return strstr(dev, "tpmrm") == NULL;
	return 1;
}

/* The transient primary flushed after an operation (the persistent one stays). */
static void
unload_primary(struct tpm_root *r)
{
	if (r->persistent != 0 || r->primary == ESYS_TR_NONE || r->esys == NULL ||
	    r->pid != getpid())
		return;
	(void)Esys_FlushContext(r->esys, r->primary);
	r->primary = ESYS_TR_NONE;
}

/* The saved primary and its name forgotten: the next operation makes it again. */
static void
forget_primary(struct tpm_root *r)
{
	Esys_Free(r->saved);
	r->saved = NULL;
	memset(&r->name, 0, sizeof(r->name));
}

static void
drop_connection(struct tpm_root *r)
{
	if (r->esys != NULL && r->pid == getpid()) {
		unload_primary(r);
		if (r->persistent != 0 && r->primary != ESYS_TR_NONE)
			(void)Esys_TR_Close(r->esys, &r->primary);
		Esys_Finalize(&r->esys);
	}
	if (r->tctx != NULL && r->pid == getpid())
		Tss2_TctiLdr_Finalize(&r->tctx);
	r->esys = NULL;
	r->tctx = NULL;
	r->primary = ESYS_TR_NONE;
}

/* A TPM name in hex, for the log (truncated to fit). */
static const char *
name_hex(const TPM2B_NAME *n, char *buf, size_t len)
{
	size_t k = n->size;

	if (2 * k + 1 > len)
		k = (len - 1) / 2;
	sodium_bin2hex(buf, len, n->name, k);
	return buf;
}

/*
 * The primary's name on this connection, kept, and compared with the one
 * recorded (ev_root_tpm2_pin_name()): another key there means another
 * TPM, a cleared owner hierarchy, or something answering in the TPM's
 * place, whose key a salted session would encrypt its salt to.
 */
static CK_RV
check_primary(struct tpm_root *r, char *err, size_t errlen)
{
	TPM2B_NAME *n = NULL;
	char got[2 * sizeof(r->name.name) + 1], want[2 * sizeof(r->name.name) + 1];
	TSS2_RC rc;

	rc = Esys_TR_GetName(r->esys, r->primary, &n);
	if (rc != TSS2_RC_SUCCESS) {
		ev_errf(err, errlen, "cannot read the name of the TPM's storage primary key: %s",
			rc_text(rc));
		return CKR_DEVICE_ERROR;
	}
	r->name = *n;
	Esys_Free(n);
	if (r->pinned.size == 0 ||
	    (r->pinned.size == r->name.size &&
	     memcmp(r->pinned.name, r->name.name, r->name.size) == 0))
		return CKR_OK;
	ev_errf(err, errlen,
		"the TPM's storage primary key is not the one this store's zone keys were sealed "
		"under (name %s, recorded %s): another TPM, a cleared owner hierarchy, or "
		"something answering in the TPM's place; refused",
		name_hex(&r->name, got, sizeof(got)), name_hex(&r->pinned, want, sizeof(want)));
	return CKR_DEVICE_ERROR;
}

/* Make the transient storage primary: ECC P-256, restricted decrypt. */
static TSS2_RC
create_primary(struct tpm_root *r)
{
	TPM2B_SENSITIVE_CREATE sens;
	TPM2B_PUBLIC pub;
	TPM2B_DATA outside;
	TPML_PCR_SELECTION pcrs;

	memset(&sens, 0, sizeof(sens));
	memset(&pub, 0, sizeof(pub));
	memset(&outside, 0, sizeof(outside));
	memset(&pcrs, 0, sizeof(pcrs));
	pub.publicArea.type = TPM2_ALG_ECC;
	pub.publicArea.nameAlg = TPM2_ALG_SHA256;
	pub.publicArea.objectAttributes = PRIMARY_ATTRS;
	pub.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
	pub.publicArea.parameters.eccDetail.symmetric.keyBits.aes = 128;
	pub.publicArea.parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
	pub.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
	pub.publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
	pub.publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
	/* unique left empty: the key is a function of seed and template alone. */
	return Esys_CreatePrimary(r->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
				  ESYS_TR_NONE, &sens, &pub, &outside, &pcrs, &r->primary, NULL,
				  NULL, NULL, NULL);
}

/* The persistent primary: there, and a storage key (restricted decrypt). */
static CK_RV
find_primary(struct tpm_root *r, char *err, size_t errlen)
{
	TPM2B_PUBLIC *pub = NULL;
	TPMA_OBJECT a;
	TSS2_RC rc;

	rc = Esys_TR_FromTPMPublic(r->esys, r->persistent, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
				   &r->primary);
	if (rc != TSS2_RC_SUCCESS) {
		r->primary = ESYS_TR_NONE;
		ev_errf(err, errlen,
			"no usable persistent primary key at TPM handle 0x%08x ([root] "
			"primary_handle): "
			"%s",
			r->persistent, rc_text(rc));
		return CKR_DEVICE_ERROR;
	}
	rc = Esys_ReadPublic(r->esys, r->primary, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub,
			     NULL, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		ev_errf(err, errlen, "cannot read the public area of TPM handle 0x%08x: %s",
			r->persistent, rc_text(rc));
		return CKR_DEVICE_ERROR;
	}
	a = pub->publicArea.objectAttributes;
	Esys_Free(pub);
	if (!(a & TPMA_OBJECT_RESTRICTED) || !(a & TPMA_OBJECT_DECRYPT) ||
	    (a & TPMA_OBJECT_SIGN_ENCRYPT)) {
		ev_errf(err, errlen,
			"TPM handle 0x%08x ([root] primary_handle) is not a storage key "
			"(restricted, decrypt, not sign)",
			r->persistent);
		return CKR_DEVICE_ERROR;
	}
	if (!(a & TPMA_OBJECT_FIXEDTPM))
		ev_warn("TPM primary key 0x%08x is not fixedTPM: it may be duplicated to "
			"another TPM",
			r->persistent);
	return CKR_OK;
}

/*
 * The TCTI: for a TPM character device that is there but will not open,
 * again for a while. The kernel lets one process at a time open
 * /dev/tpm0; the others wait their turn here.
 */
static TSS2_RC
open_tcti(struct tpm_root *r)
{
	const char *dev = device_node(r->tcti);
	unsigned step = 5;
	TSS2_RC rc;

	for (;;) {
		rc = Tss2_TctiLdr_Initialize(r->tcti, &r->tctx);
		if (rc == TSS2_RC_SUCCESS)
			return rc;
		r->tctx = NULL;
		/* Busy, not missing nor forbidden: wait for its turn. */
		if (!r->direct || dev == NULL || access(dev, R_OK | W_OK) != 0 ||
		    wait_turn(r, &step) != 0)
			return rc;
	}
}

/*
 * TCTI, ESAPI, TPM2_Startup, and a persistent primary found and checked
 * (a transient one is made at its first use: load_primary). On failure
 * nothing is left open.
 */
static CK_RV
connect_tpm(struct tpm_root *r, char *err, size_t errlen)
{
	TSS2_RC rc;
	CK_RV rv;

	rc = open_tcti(r);
	if (rc != TSS2_RC_SUCCESS) {
		r->tctx = NULL;
		ev_errf(err, errlen, "cannot reach the TPM through TCTI \"%s\" ([root] tcti): %s",
			r->tcti, rc_text(rc));
		return CKR_DEVICE_ERROR;
	}
	r->pid = getpid();
	rc = Esys_Initialize(&r->esys, r->tctx, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		r->esys = NULL;
		ev_errf(err, errlen, "cannot start ESAPI on TCTI \"%s\": %s", r->tcti, rc_text(rc));
		rv = (rc & ~TSS2_RC_LAYER_MASK) == TSS2_BASE_RC_MEMORY ? CKR_HOST_MEMORY
								       : CKR_DEVICE_ERROR;
		goto fail;
	}
	/* Started already (by firmware, swtpm's startup-clear, a resource manager): fine. */
	rc = Esys_Startup(r->esys, TPM2_SU_CLEAR);
	if (rc != TSS2_RC_SUCCESS && (rc & ~TSS2_RC_LAYER_MASK) != TPM2_RC_INITIALIZE) {
		ev_errf(err, errlen, "TPM2_Startup through TCTI \"%s\" failed: %s", r->tcti,
			rc_text(rc));
		rv = CKR_DEVICE_ERROR;
		goto fail;
	}
	if (r->persistent != 0) {
		rv = find_primary(r, err, errlen);
		if (rv == CKR_OK)
			rv = check_primary(r, err, errlen);
		if (rv != CKR_OK)
			goto fail;
	}
	return CKR_OK;
fail:
	drop_connection(r);
	return rv;
}

/*
 * The transient primary loaded for one operation: from its saved
 * context, or made from the template (at first use, or when the TPM no
 * longer loads the context: it was reset or restarted), its name checked
 * against the one recorded, and saved. Between operations it holds no
 * TPM object slot. The persistent primary was found at connection.
 */
static TSS2_RC
load_primary(struct tpm_root *r, CK_RV *rv)
{
	char err[256];
	TSS2_RC rc;

	if (r->persistent != 0)
		return TSS2_RC_SUCCESS;
	if (r->saved != NULL) {
		rc = Esys_ContextLoad(r->esys, r->saved, &r->primary);
		if (rc == TSS2_RC_SUCCESS)
			return rc;
		r->primary = ESYS_TR_NONE;
		if (link_error(rc) || memory_full(rc) || stale_error(rc) || esys_broken(rc))
			return rc;
		ev_warn("TPM root: the TPM no longer loads the saved storage primary key (%s: "
			"it was reset or restarted); making it again",
			rc_text(rc));
		forget_primary(r);
	}
	rc = create_primary(r);
	if (rc != TSS2_RC_SUCCESS) {
		r->primary = ESYS_TR_NONE;
		if (tpm_answer(rc) && !memory_full(rc) && !stale_error(rc)) {
			ev_error("TPM root: cannot create the storage primary key under the TPM's "
				 "owner hierarchy (TCTI \"%s\"): %s",
				 r->tcti, rc_text(rc));
			r->logged = 1;
		}
		return rc;
	}
	if (check_primary(r, err, sizeof(err)) != CKR_OK) {
		ev_error("TPM root: %s", err);
		unload_primary(r);
		forget_primary(r);
		*rv = CKR_DEVICE_ERROR;
		r->logged = 1;
		return TSS2_ESYS_RC_BAD_VALUE;
	}
	rc = Esys_ContextSave(r->esys, r->primary, &r->saved);
	if (rc != TSS2_RC_SUCCESS) {
		r->saved = NULL;
		unload_primary(r);
	}
	return rc;
}

/*
 * A salted HMAC session (salt encrypted to the primary), for authorising
 * with the empty auth values and for parameter encryption: attrs says
 * which (TPMA_SESSION_DECRYPT: the command's first parameter,
 * TPMA_SESSION_ENCRYPT: the response's).
 */
static TSS2_RC
start_salted(struct tpm_root *r, TPM2_SE type, TPMA_SESSION attrs, ESYS_TR *sess)
{
	TPMT_SYM_DEF sym;
	TSS2_RC rc;

	memset(&sym, 0, sizeof(sym));
	sym.algorithm = TPM2_ALG_AES;
	sym.keyBits.aes = 128;
	sym.mode.aes = TPM2_ALG_CFB;
	*sess = ESYS_TR_NONE;
	rc = Esys_StartAuthSession(r->esys, r->primary, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
				   ESYS_TR_NONE, NULL, type, &sym, TPM2_ALG_SHA256, sess);
	if (rc != TSS2_RC_SUCCESS) {
		*sess = ESYS_TR_NONE;
		return rc;
	}
	/* Not continued: the session ends with the command it authorises. */
	rc = Esys_TRSess_SetAttributes(r->esys, *sess, attrs, 0xff);
	if (rc != TSS2_RC_SUCCESS) {
		(void)Esys_FlushContext(r->esys, *sess);
		*sess = ESYS_TR_NONE;
	}
	return rc;
}

static TSS2_RC
start_session(struct tpm_root *r, TPMA_SESSION attrs, ESYS_TR *sess)
{
	return start_salted(r, TPM2_SE_HMAC, attrs, sess);
}

/*
 * A session the command did not end (the command failed): flush it. A
 * command that succeeded ended it (continueSession is clear), and ESAPI
 * forgot its handle then.
 */
static void
end_session(struct tpm_root *r, ESYS_TR *sess)
{
	if (*sess != ESYS_TR_NONE)
		(void)Esys_FlushContext(r->esys, *sess);
	*sess = ESYS_TR_NONE;
}

/*
 * What binds the associated data: BLAKE2b-256(version || aad), and for
 * version 0x03 BLAKE2b-256(version || binding || u32 PCR selection || aad).
 */
static int
aad_digest(unsigned version, unsigned binding, uint32_t pcrs, const unsigned char *aad,
	   size_t aadlen, unsigned char out[AAD_DIGEST_LEN])
{
	crypto_generichash_state st;
	unsigned char head[6];
	size_t n = 1;

	head[0] = (unsigned char)version;
	if (version == SEAL_VERSION_BOUND) {
		head[1] = (unsigned char)binding;
		head[2] = (unsigned char)(pcrs >> 24);
		head[3] = (unsigned char)(pcrs >> 16);
		head[4] = (unsigned char)(pcrs >> 8);
		head[5] = (unsigned char)pcrs;
		n = sizeof(head);
	}
	if (crypto_generichash_init(&st, NULL, 0, AAD_DIGEST_LEN) != 0 ||
	    crypto_generichash_update(&st, head, n) != 0 ||
	    (aadlen > 0 && crypto_generichash_update(&st, aad, aadlen) != 0) ||
	    crypto_generichash_final(&st, out, AAD_DIGEST_LEN) != 0)
		return -1;
	return 0;
}

static unsigned
pcr_count(uint32_t pcrs)
{
	return (unsigned)__builtin_popcount(pcrs);
}

/* The SHA-256 bank's selection of the PCRs in mask. */
static void
pcr_selection(uint32_t mask, TPML_PCR_SELECTION *sel)
{
	unsigned i;

	memset(sel, 0, sizeof(*sel));
	sel->count = 1;
	sel->pcrSelections[0].hash = TPM2_ALG_SHA256;
	sel->pcrSelections[0].sizeofSelect = PCR_SELECT_BYTES;
	for (i = 0; i < PCR_SELECT_BYTES; i++)
		sel->pcrSelections[0].pcrSelect[i] = (BYTE)(mask >> (8 * i));
}

/* The PCRs of the SHA-256 bank a selection names. */
static uint32_t
pcr_mask_of(const TPML_PCR_SELECTION *sel)
{
	uint32_t mask = 0;
	unsigned i, j;

	for (i = 0; i < sel->count && i < TPM2_NUM_PCR_BANKS; i++) {
		if (sel->pcrSelections[i].hash != TPM2_ALG_SHA256)
			continue;
		for (j = 0; j < sel->pcrSelections[i].sizeofSelect && j < PCR_SELECT_BYTES; j++)
			mask |= (uint32_t)sel->pcrSelections[i].pcrSelect[j] << (8 * j);
	}
	return mask;
}

/*
 * The values of the PCRs in mask (SHA-256 bank), ascending, into values
 * (PCR_LEN bytes each). TPM2_PCR_Read answers at most 8 at a time: the
 * rest are asked for again, and the whole read starts over (a few times)
 * when a PCR changed in between (the update counter moved). A bank
 * without these PCRs is TPM2_RC_VALUE.
 */
static TSS2_RC
read_pcrs(struct tpm_root *r, uint32_t mask, unsigned char *values)
{
	TPML_PCR_SELECTION sel, *got = NULL;
	TPML_DIGEST *dig = NULL;
	uint32_t left, done, counter = 0, first = 0;
	unsigned i, k, at, tries;
	TSS2_RC rc = TSS2_RC_SUCCESS;

	for (tries = 0; tries < 4; tries++) {
		left = mask;
		for (k = 0; left != 0; k++) {
			pcr_selection(left, &sel);
			rc = Esys_PCR_Read(r->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel,
					   &counter, &got, &dig);
			if (rc != TSS2_RC_SUCCESS)
				return rc;
			if (k == 0)
				first = counter;
			done = pcr_mask_of(got) & left;
			rc = TPM2_RC_VALUE; /* nothing read, or not what was asked for */
			if (done == 0 || dig->count != pcr_count(done) || counter != first)
				goto next;
			for (i = 0, at = 0; i <= EV_PCR_MAX; i++) {
				if (!(done & (1u << i)))
					continue;
				if (dig->digests[at].size != PCR_LEN)
					goto next;
				memcpy(values + PCR_LEN * pcr_count(mask & ((1u << i) - 1)),
				       dig->digests[at].buffer, PCR_LEN);
				at++;
			}
			rc = TSS2_RC_SUCCESS;
			left &= ~done;
		next:
			Esys_Free(got);
			Esys_Free(dig);
			got = NULL;
			dig = NULL;
			if (rc != TSS2_RC_SUCCESS)
				break;
		}
		if (rc == TSS2_RC_SUCCESS || counter == first)
			return rc;
	}
	return rc;
}

/*
 * The policy digest of TPM2_PolicyPCR over the PCRs in mask holding
 * values, computed by the TPM in a trial session (flushed on every path).
 */
static TSS2_RC
pcr_policy(struct tpm_root *r, uint32_t mask, const unsigned char *values, TPM2B_DIGEST *policy)
{
	TPML_PCR_SELECTION sel;
	TPM2B_DIGEST pcr_digest, *out = NULL;
	TPMT_SYM_DEF sym;
	ESYS_TR trial = ESYS_TR_NONE;
	TSS2_RC rc;

	memset(&sym, 0, sizeof(sym));
	sym.algorithm = TPM2_ALG_NULL;
	memset(&pcr_digest, 0, sizeof(pcr_digest));
	pcr_digest.size = crypto_hash_sha256_BYTES;
	crypto_hash_sha256(pcr_digest.buffer, values,
			   (unsigned long long)PCR_LEN * pcr_count(mask));
	pcr_selection(mask, &sel);
	rc =
	    Esys_StartAuthSession(r->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
				  ESYS_TR_NONE, NULL, TPM2_SE_TRIAL, &sym, TPM2_ALG_SHA256, &trial);
	if (rc != TSS2_RC_SUCCESS)
		return rc;
	rc = Esys_PolicyPCR(r->esys, trial, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pcr_digest,
			    &sel);
	if (rc == TSS2_RC_SUCCESS)
		rc = Esys_PolicyGetDigest(r->esys, trial, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
					  &out);
	(void)Esys_FlushContext(r->esys, trial);
	if (rc != TSS2_RC_SUCCESS)
		return rc;
	*policy = *out;
	Esys_Free(out);
	return TSS2_RC_SUCCESS;
}

/* A TPM2B_AUTH from a secret; wipe it after use. */
static void
auth_value(const ev_secret *s, TPM2B_AUTH *a)
{
	memset(a, 0, sizeof(*a));
	if (s == NULL)
		return;
	a->size = (UINT16)s->len;
	memcpy(a->buffer, s->data, s->len);
}

struct seal_args {
	const unsigned char *digest;
	const ev_secret *plain;
	unsigned binding;
	uint32_t pcrs;
	const ev_secret *auth;
	unsigned char *values; /* PCR_LEN per PCR of pcrs: out */
	int raced;	       /* out: a PCR changed while the object was made */
	TPM2B_PUBLIC *pub;     /* out, Esys_Free */
	TPM2B_PRIVATE *priv;   /* out, Esys_Free */
};

struct unseal_args {
	const unsigned char *digest;
	unsigned binding;
	uint32_t pcrs;
	const unsigned char *values; /* the PCR values it was sealed to */
	const ev_secret *auth;
	const TPM2B_PUBLIC *pub;
	const TPM2B_PRIVATE *priv;
	uint32_t changed; /* out, with EVR_PCR_MISMATCH */
	ev_secret *plain; /* out */
};

/* The object's template: its attributes and policy say how it is opened. */
static TSS2_RC
seal_template(struct tpm_root *r, struct seal_args *a, TPM2B_PUBLIC *tmpl)
{
	TSS2_RC rc;

	memset(tmpl, 0, sizeof(*tmpl));
	tmpl->publicArea.type = TPM2_ALG_KEYEDHASH;
	tmpl->publicArea.nameAlg = TPM2_ALG_SHA256;
	tmpl->publicArea.objectAttributes = SEAL_ATTRS;
	tmpl->publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
	if (a->binding == BIND_AUTH)
		tmpl->publicArea.objectAttributes = AUTH_ATTRS;
	if (a->binding != BIND_PCR)
		return TSS2_RC_SUCCESS;
	tmpl->publicArea.objectAttributes = PCR_ATTRS;
	rc = read_pcrs(r, a->pcrs, a->values);
	if (rc == TSS2_RC_SUCCESS)
		rc = pcr_policy(r, a->pcrs, a->values, &tmpl->publicArea.authPolicy);
	if (rc != TSS2_RC_SUCCESS)
		ev_error(
		    "TPM root: cannot read PCRs 0x%06x of the SHA-256 bank or make their policy: "
		    "%s",
		    (unsigned)a->pcrs, rc_text(rc));
	return rc;
}

static TSS2_RC
op_seal(struct tpm_root *r, void *arg, CK_RV *rv)
{
	struct seal_args *a = arg;
	TPM2B_SENSITIVE_CREATE sens;
	TPM2B_PUBLIC tmpl;
	TPM2B_DATA outside;
	TPML_PCR_SELECTION pcrs;
	ESYS_TR sess;
	unsigned char now[PCR_LEN * (EV_PCR_MAX + 1)];
	TSS2_RC rc;

	*rv = CKR_DEVICE_ERROR;
	rc = seal_template(r, a, &tmpl);
	if (rc != TSS2_RC_SUCCESS)
		return rc;
	rc = start_session(r, TPMA_SESSION_DECRYPT, &sess);
	if (rc != TSS2_RC_SUCCESS)
		return rc;
	memset(&sens, 0, sizeof(sens));
	memset(&outside, 0, sizeof(outside));
	memset(&pcrs, 0, sizeof(pcrs));
	sens.sensitive.data.size = (UINT16)(AAD_DIGEST_LEN + a->plain->len);
	memcpy(sens.sensitive.data.buffer, a->digest, AAD_DIGEST_LEN);
	memcpy(sens.sensitive.data.buffer + AAD_DIGEST_LEN, a->plain->data, a->plain->len);
	auth_value(a->auth, &sens.sensitive.userAuth);
	rc = Esys_Create(r->esys, r->primary, sess, ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl,
			 &outside, &pcrs, &a->priv, &a->pub, NULL, NULL, NULL);
	sodium_memzero(&sens, sizeof(sens));
	if (rc != TSS2_RC_SUCCESS) {
		end_session(r, &sess);
		a->priv = NULL;
		a->pub = NULL;
		return rc;
	}
	/*
	 * Sealed to the values read before: still the values now? A failed
	 * read is run()'s to handle (a new connection, a retry), not a race.
	 */
	if (a->binding == BIND_PCR) {
		rc = read_pcrs(r, a->pcrs, now);
		if (rc != TSS2_RC_SUCCESS) {
			Esys_Free(a->pub);
			Esys_Free(a->priv);
			a->pub = NULL;
			a->priv = NULL;
			return rc;
		}
		if (memcmp(now, a->values, PCR_LEN * pcr_count(a->pcrs)) != 0)
			a->raced = 1;
	}
	*rv = CKR_OK;
	return rc;
}

/* The PCRs of the selection whose values are not the sealed ones now (0: cannot tell). */
static uint32_t
pcrs_changed(struct tpm_root *r, uint32_t mask, const unsigned char *sealed)
{
	unsigned char now[PCR_LEN * (EV_PCR_MAX + 1)];
	uint32_t changed = 0;
	unsigned i, at = 0;

	if (read_pcrs(r, mask, now) != TSS2_RC_SUCCESS)
		return 0;
	for (i = 0; i <= EV_PCR_MAX; i++) {
		if (!(mask & (1u << i)))
			continue;
		if (memcmp(now + PCR_LEN * at, sealed + PCR_LEN * at, PCR_LEN) != 0)
			changed |= 1u << i;
		at++;
	}
	return changed;
}

/*
 * The session that authorises TPM2_Unseal and encrypts its answer: a
 * salted HMAC session (with the auth value set on the object when it has
 * one), or for a PCR-bound object a salted policy session that has run
 * TPM2_PolicyPCR over the object's selection with the values the PCRs
 * hold now (the TPM then refuses the unseal when they are not the ones
 * the object's policy was made with).
 */
static TSS2_RC
unseal_session(struct tpm_root *r, struct unseal_args *a, ESYS_TR obj, ESYS_TR *sess)
{
	TPML_PCR_SELECTION sel;
	TPM2B_DIGEST none;
	TPM2B_AUTH auth;
	TSS2_RC rc;

	if (a->binding != BIND_PCR) {
		if (a->binding == BIND_AUTH) {
			auth_value(a->auth, &auth);
			rc = Esys_TR_SetAuth(r->esys, obj, &auth);
			sodium_memzero(&auth, sizeof(auth));
			if (rc != TSS2_RC_SUCCESS)
				return rc;
		}
		return start_session(r, TPMA_SESSION_ENCRYPT, sess);
	}
	rc = start_salted(r, TPM2_SE_POLICY, TPMA_SESSION_ENCRYPT, sess);
	if (rc != TSS2_RC_SUCCESS)
		return rc;
	memset(&none, 0, sizeof(none));
	pcr_selection(a->pcrs, &sel);
	rc = Esys_PolicyPCR(r->esys, *sess, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &none, &sel);
	if (rc != TSS2_RC_SUCCESS)
		end_session(r, sess);
	return rc;
}

/* What a refused TPM2_Unseal means here, when it is not a device error. */
static CK_RV
unseal_refusal(struct tpm_root *r, struct unseal_args *a, TSS2_RC rc)
{
	TSS2_RC code = tpm_rc(rc);

	if (a->binding == BIND_PCR &&
	    (code == TPM2_RC_POLICY_FAIL || code == TPM2_RC_PCR_CHANGED)) {
		a->changed = pcrs_changed(r, a->pcrs, a->values);
		return EVR_PCR_MISMATCH;
	}
	/*
	 * Not a PIN's answer: the PIN was checked against its hash before,
	 * so the object and the hash disagree, or the TPM is locked out.
	 */
	if (a->binding == BIND_AUTH && (code == TPM2_RC_AUTH_FAIL || code == TPM2_RC_BAD_AUTH)) {
		ev_error("TPM root: the auth value given does not open the sealed object (it was "
			 "sealed under another; the TPM counted the failure towards its "
			 "dictionary-attack lockout)");
		return CKR_FUNCTION_FAILED;
	}
	if (code == TPM2_RC_LOCKOUT) {
		ev_error("TPM root: the TPM is in dictionary-attack lockout; objects with an auth "
			 "value cannot be used until its lockout recovery time has passed or its "
			 "owner clears the lockout (tpm2_dictionarylockout -c)");
		return CKR_FUNCTION_REJECTED;
	}
	return CKR_DEVICE_ERROR;
}

static TSS2_RC
op_unseal(struct tpm_root *r, void *arg, CK_RV *rv)
{
	struct unseal_args *a = arg;
	TPM2B_SENSITIVE_DATA *out = NULL;
	TPM2B_AUTH empty;
	ESYS_TR sess = ESYS_TR_NONE, obj = ESYS_TR_NONE;
	TSS2_RC rc, src;

	*rv = CKR_DEVICE_ERROR;
	rc = start_session(r, 0, &sess);
	if (rc != TSS2_RC_SUCCESS)
		return rc;
	rc =
	    Esys_Load(r->esys, r->primary, sess, ESYS_TR_NONE, ESYS_TR_NONE, a->priv, a->pub, &obj);
	if (rc != TSS2_RC_SUCCESS) {
		end_session(r, &sess);
		if (parameter_error(rc)) {
			ev_error("the TPM refused to load the sealed object: %s (sealed by another "
				 "TPM or under another primary key, or altered)",
				 rc_text(rc));
			*rv = CKR_ENCRYPTED_DATA_INVALID;
		}
		return rc;
	}
	sess = ESYS_TR_NONE; /* ended with TPM2_Load */
	rc = unseal_session(r, a, obj, &sess);
	if (rc == TSS2_RC_SUCCESS) {
		/*
		 * Once sent, an authorisation with a wrong auth value may have
		 * been counted by the TPM even when its answer is lost: no retry.
		 */
		if (a->binding == BIND_AUTH)
			r->no_retry = 1;
		rc = Esys_Unseal(r->esys, obj, sess, ESYS_TR_NONE, ESYS_TR_NONE, &out);
		if (rc != TSS2_RC_SUCCESS)
			end_session(r, &sess);
	}
	/* ESAPI keeps the auth value with the object's handle: overwritten, then flushed. */
	memset(&empty, 0, sizeof(empty));
	if (a->binding == BIND_AUTH && (src = Esys_TR_SetAuth(r->esys, obj, &empty)) !=
					   TSS2_RC_SUCCESS)
		ev_error("TPM root: cannot clear the auth value ESAPI keeps for the sealed "
			 "object: %s",
			 rc_text(src));
	/* Always: no TPM object slot left in use, whatever happened. */
	(void)Esys_FlushContext(r->esys, obj);
	if (rc != TSS2_RC_SUCCESS) {
		*rv = unseal_refusal(r, a, rc);
		return rc;
	}
	if (out->size <= AAD_DIGEST_LEN ||
	    sodium_memcmp(out->buffer, a->digest, AAD_DIGEST_LEN) != 0) {
		ev_error("the TPM unsealed the object, but it was sealed for other associated "
			 "data (another device id or zone)");
		*rv = CKR_ENCRYPTED_DATA_INVALID;
	} else {
		a->plain = ev_secret_dup(out->buffer + AAD_DIGEST_LEN, out->size - AAD_DIGEST_LEN);
		*rv = a->plain != NULL ? CKR_OK : CKR_HOST_MEMORY;
	}
	sodium_memzero(out, sizeof(*out));
	Esys_Free(out);
	return TSS2_RC_SUCCESS;
}

/*
 * Run op under the lock: connect first when needed (first use, in a
 * child after fork, and for every operation when there is no resource
 * manager), with the primary loaded for it and flushed after it. Connect
 * again and retry once when the link to the TPM failed or the TPM forgot
 * our state; wait and retry (WAIT_MS in all) when a TPM reached directly
 * has no room for our objects or sessions. op sets *rv; a TSS2 failure
 * it returns without setting *rv to something else is a device error,
 * logged here with the TSS's words.
 */
static CK_RV
run(struct tpm_root *r, const char *what, TSS2_RC (*op)(struct tpm_root *, void *, CK_RV *),
    void *arg)
{
	char err[256] = "";
	unsigned reconnects = 0, step = 5;
	uint64_t start;
	TSS2_RC rc;
	CK_RV rv;

	if (pthread_mutex_lock(&r->lock) != 0) {
		ev_error("TPM root: %s: cannot take the TPM connection's lock", what);
		return CKR_GENERAL_ERROR;
	}
	start = now_ms();
	r->deadline = start + WAIT_MS;
	if (r->esys != NULL && r->pid != getpid()) {
		/* The caller forgot ev_root_forked(): the connection is the parent's. */
		r->esys = NULL;
		r->tctx = NULL;
		r->primary = ESYS_TR_NONE;
	}
	for (;;) {
		if (r->esys == NULL) {
			rv = connect_tpm(r, err, sizeof(err));
			if (rv != CKR_OK) {
				ev_error("TPM root: %s", err);
				goto out;
			}
		}
		rv = CKR_DEVICE_ERROR;
		r->no_retry = 0;
		r->logged = 0;
		rc = load_primary(r, &rv);
		if (rc == TSS2_RC_SUCCESS) {
			rc = op(r, arg, &rv);
			unload_primary(r);
		}
		if (rc == TSS2_RC_SUCCESS)
			break;
		if (r->no_retry) {
			if (link_error(rc) || stale_error(rc))
				ev_warn("TPM root: %s: %s; not retried (the TPM may have counted the "
					"authorisation)",
					what, rc_text(rc));
			break;
		}
		if (r->direct && memory_full(rc) && wait_turn(r, &step) == 0) {
			/* Room is made as the others finish: let them in meanwhile. */
			drop_connection(r);
			continue;
		}
		if ((link_error(rc) || stale_error(rc) || esys_broken(rc)) && reconnects++ == 0) {
			ev_warn("TPM root: %s: %s; connecting again", what, rc_text(rc));
			drop_connection(r);
			continue;
		}
		break;
	}
	if (rc != TSS2_RC_SUCCESS && rv == CKR_DEVICE_ERROR && !r->logged) {
		if (r->direct && memory_full(rc))
			ev_error("TPM root: %s failed: %s, still after %u ms: without a resource "
				 "manager the TPM's few slots are shared, and objects or sessions "
				 "left loaded by a process that died, or by another program, stay "
				 "until the TPM restarts or they are flushed (tpm2_flushcontext "
				 "-t -l -s); reach the TPM through /dev/tpmrm0 or tpm2-abrmd",
				 what, rc_text(rc), (unsigned)(now_ms() - start));
		else
			ev_error("TPM root: %s failed: %s", what, rc_text(rc));
	}
	/*
	 * Without a resource manager, nothing is held between operations; a
	 * failure that is not the TPM's answer may have left ESAPI unusable.
	 */
	if (r->direct || (rc != TSS2_RC_SUCCESS && !tpm_answer(rc)))
		drop_connection(r);
out:
	pthread_mutex_unlock(&r->lock);
	return rv;
}

/* Nothing but the connection run() makes: the primary's name is read then. */
static TSS2_RC
op_connect(struct tpm_root *r, void *arg, CK_RV *rv)
{
	(void)r;
	(void)arg;
	*rv = CKR_OK;
	return TSS2_RC_SUCCESS;
}

CK_RV
ev_root_tpm2_name(ev_root *base, unsigned char *name, size_t *len)
{
	struct tpm_root *r = (struct tpm_root *)base;
	struct ev_tpm_target t;
	CK_RV rv;
	int h;

	h = use_helper(r, &t);
	if (h != 0)
		return h < 0 ? CKR_GENERAL_ERROR : ev_tpm_helper_name(&t, name, len);
	rv = run(r, "reading the primary's name", op_connect, NULL);
	if (rv != CKR_OK)
		return rv;
	if (pthread_mutex_lock(&r->lock) != 0)
		return CKR_GENERAL_ERROR;
	if (r->name.size == 0 || r->name.size > *len)
		rv = r->name.size == 0 ? CKR_DEVICE_ERROR : CKR_BUFFER_TOO_SMALL;
	else
		memcpy(name, r->name.name, r->name.size);
	*len = r->name.size;
	pthread_mutex_unlock(&r->lock);
	return rv;
}

CK_RV
ev_root_tpm2_pin_name(ev_root *base, const unsigned char *name, size_t len)
{
	struct tpm_root *r = (struct tpm_root *)base;

	if (len == 0 || len > sizeof(r->pinned.name))
		return CKR_ARGUMENTS_BAD;
	if (pthread_mutex_lock(&r->lock) != 0)
		return CKR_GENERAL_ERROR;
	r->pinned.size = (UINT16)len;
	memcpy(r->pinned.name, name, len);
	/* Made before the name was known: made and checked again at the next operation. */
	if (r->name.size != 0 && (r->name.size != len || memcmp(r->name.name, name, len) != 0)) {
		drop_connection(r);
		forget_primary(r);
	}
	pthread_mutex_unlock(&r->lock);
	return CKR_OK;
}

static void
put_u16(unsigned char *p, size_t v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

static size_t
get_u16(const unsigned char *p)
{
	return ((size_t)p[0] << 8) | p[1];
}

/* How a seal's options bind the object. */
static unsigned
binding_of(const ev_seal_opts *opts)
{
	if (opts != NULL && opts->pcrs != 0)
		return BIND_PCR;
	if (opts != NULL && opts->auth != NULL)
		return BIND_AUTH;
	return BIND_NONE;
}

/* The blob's header: version, and for version 0x03 binding, selection and PCR values. */
static size_t
header_len(unsigned binding, uint32_t pcrs)
{
	return binding == BIND_NONE ? 1 : 6 + (size_t)PCR_LEN * pcr_count(pcrs);
}

/* Seal once; *raced when a PCR changed while it was sealed (the blob is not made then). */
static CK_RV
seal_once(struct tpm_root *r, struct seal_args *a, unsigned char **blob, size_t *bloblen)
{
	unsigned char pubbuf[sizeof(TPM2B_PUBLIC)], privbuf[sizeof(TPM2B_PRIVATE)];
	size_t publen = 0, privlen = 0, n, h = header_len(a->binding, a->pcrs);
	unsigned char *p;
	CK_RV rv;

	a->raced = 0;
	a->pub = NULL;
	a->priv = NULL;
	rv = run(r, "sealing", op_seal, a);
	if (rv != CKR_OK || a->raced)
		goto out;
	if (Tss2_MU_TPM2B_PUBLIC_Marshal(a->pub, pubbuf, sizeof(pubbuf), &publen) !=
		TSS2_RC_SUCCESS ||
	    Tss2_MU_TPM2B_PRIVATE_Marshal(a->priv, privbuf, sizeof(privbuf), &privlen) !=
		TSS2_RC_SUCCESS ||
	    publen > 0xffff || privlen > 0xffff) {
		ev_error("TPM root: cannot marshal the sealed object");
		rv = CKR_DEVICE_ERROR;
		goto out;
	}
	n = h + 2 + publen + 2 + privlen;
	p = malloc(n);
	if (p == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	p[0] = a->binding == BIND_NONE ? SEAL_VERSION : SEAL_VERSION_BOUND;
	if (a->binding != BIND_NONE) {
		p[1] = (unsigned char)a->binding;
		p[2] = (unsigned char)(a->pcrs >> 24);
		p[3] = (unsigned char)(a->pcrs >> 16);
		p[4] = (unsigned char)(a->pcrs >> 8);
		p[5] = (unsigned char)a->pcrs;
		memcpy(p + 6, a->values, h - 6);
	}
	put_u16(p + h, publen);
	memcpy(p + h + 2, pubbuf, publen);
	put_u16(p + h + 2 + publen, privlen);
	memcpy(p + h + 4 + publen, privbuf, privlen);
	*blob = p;
	*bloblen = n;
out:
	Esys_Free(a->pub);
	Esys_Free(a->priv);
	a->pub = NULL;
	a->priv = NULL;
	return rv;
}

static CK_RV
tpm_seal(ev_root *base, const unsigned char *aad, size_t aadlen, const ev_secret *plain,
	 const ev_seal_opts *opts, unsigned char **blob, size_t *bloblen)
{
	struct tpm_root *r = (struct tpm_root *)base;
	unsigned char digest[AAD_DIGEST_LEN], values[PCR_LEN * (EV_PCR_MAX + 1)];
	struct seal_args a;
	struct ev_tpm_target t;
	int tries, h;
	CK_RV rv = CKR_OK;

	if (plain->len == 0 || plain->len > PLAIN_MAX)
		return CKR_DATA_LEN_RANGE;
	if (aadlen > EV_TPM_AAD_MAX) /* the helper's bound, kept in process too */
		return CKR_ARGUMENTS_BAD;
	h = use_helper(r, &t);
	if (h != 0)
		return h < 0 ? CKR_GENERAL_ERROR
			     : ev_tpm_helper_seal(&t, aad, aadlen, plain, opts, blob, bloblen);
	memset(&a, 0, sizeof(a));
	a.binding = binding_of(opts);
	a.pcrs = a.binding == BIND_PCR ? opts->pcrs : 0;
	a.auth = a.binding == BIND_AUTH ? opts->auth : NULL;
	a.values = values;
	if (aad_digest(a.binding == BIND_NONE ? SEAL_VERSION : SEAL_VERSION_BOUND, a.binding,
		       a.pcrs, aad, aadlen, digest) != 0)
		return CKR_GENERAL_ERROR;
	a.digest = digest;
	a.plain = plain;
	/* A PCR extended while sealing would leave a blob that opens for nobody: again. */
	for (tries = 0; tries < 3; tries++) {
		rv = seal_once(r, &a, blob, bloblen);
		if (rv != CKR_OK || !a.raced)
			return rv;
		ev_warn("TPM root: PCRs 0x%06x changed while sealing; sealing again",
			(unsigned)a.pcrs);
	}
	ev_error("TPM root: PCRs 0x%06x keep changing; nothing sealed", (unsigned)a.pcrs);
	return CKR_FUNCTION_FAILED;
}

/* A parsed blob: its header, and its halves. */
struct blob {
	unsigned version, binding;
	uint32_t pcrs;
	const unsigned char *values;
	TPM2B_PUBLIC pub;
	TPM2B_PRIVATE priv;
};

/* The public area a blob's binding calls for: our template, its attributes and policy. */
static int
template_ok(const struct blob *b)
{
	const TPMT_PUBLIC *pa = &b->pub.publicArea;
	TPMA_OBJECT attrs = b->binding == BIND_PCR    ? PCR_ATTRS
			    : b->binding == BIND_AUTH ? AUTH_ATTRS
						      : SEAL_ATTRS;
	UINT16 policy = b->binding == BIND_PCR ? crypto_hash_sha256_BYTES : 0;

	return pa->type == TPM2_ALG_KEYEDHASH && pa->nameAlg == TPM2_ALG_SHA256 &&
	       pa->objectAttributes == attrs &&
	       pa->parameters.keyedHashDetail.scheme.scheme == TPM2_ALG_NULL &&
	       pa->authPolicy.size == policy;
}

/*
 * The blob's header and two halves, all of it and nothing more, and a
 * public area that is ours: a sealed-data object with the attributes
 * (and policy size) of its binding. 0 or -1.
 */
static int
parse_blob(const unsigned char *blob, size_t len, struct blob *b)
{
	size_t n, off = 0, at;

	memset(b, 0, sizeof(*b));
	if (len < 1)
		return -1;
	b->version = blob[0];
	if (b->version == SEAL_VERSION_BOUND) {
		if (len < 6)
			return -1;
		b->binding = blob[1];
		b->pcrs = ((uint32_t)blob[2] << 24) | ((uint32_t)blob[3] << 16) |
			  ((uint32_t)blob[4] << 8) | blob[5];
		if ((b->binding != BIND_PCR && b->binding != BIND_AUTH) ||
		    (b->pcrs & ~EV_PCR_ALL) != 0 || (b->binding == BIND_PCR) != (b->pcrs != 0))
			return -1;
		b->values = blob + 6;
	} else if (b->version != SEAL_VERSION) {
		return -1;
	}
	at = header_len(b->binding, b->pcrs);
	if (len < at + 4)
		return -1;
	n = get_u16(blob + at);
	if (n > len - at - 4)
		return -1;
	if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(blob + at + 2, n, &off, &b->pub) != TSS2_RC_SUCCESS ||
	    off != n)
		return -1;
	at += 2 + n;
	n = get_u16(blob + at);
	at += 2;
	if (n != len - at)
		return -1;
	off = 0;
	if (Tss2_MU_TPM2B_PRIVATE_Unmarshal(blob + at, n, &off, &b->priv) != TSS2_RC_SUCCESS ||
	    off != n)
		return -1;
	return template_ok(b) ? 0 : -1;
}

static CK_RV
tpm_unseal(ev_root *base, const unsigned char *aad, size_t aadlen, const unsigned char *blob,
	   size_t bloblen, ev_unseal_opts *opts, ev_secret **plain)
{
	struct tpm_root *r = (struct tpm_root *)base;
	unsigned char digest[AAD_DIGEST_LEN];
	const ev_secret *auth = opts != NULL ? opts->auth : NULL;
	struct unseal_args a;
	struct ev_tpm_target t;
	struct blob b;
	CK_RV rv;
	int h;

	/* Before the TPM (or the helper) sees anything. */
	if (parse_blob(blob, bloblen, &b) != 0)
		return CKR_ENCRYPTED_DATA_INVALID;
	if (opts != NULL)
		opts->pcrs = b.pcrs;
	/* An auth value for an object without one, or none for one that has: a caller's slip. */
	if ((b.binding == BIND_AUTH) != (auth != NULL))
		return CKR_ARGUMENTS_BAD;
	if (aadlen > EV_TPM_AAD_MAX) /* the helper's bound, kept in process too */
		return CKR_ARGUMENTS_BAD;
	h = use_helper(r, &t);
	if (h != 0)
		return h < 0 ? CKR_GENERAL_ERROR
			     : ev_tpm_helper_unseal(&t, aad, aadlen, blob, bloblen, opts, plain);
	if (aad_digest(b.version, b.binding, b.pcrs, aad, aadlen, digest) != 0)
		return CKR_GENERAL_ERROR;
	memset(&a, 0, sizeof(a));
	a.digest = digest;
	a.binding = b.binding;
	a.pcrs = b.pcrs;
	a.values = b.values;
	a.auth = auth;
	a.pub = &b.pub;
	a.priv = &b.priv;
	rv = run(r, "unsealing", op_unseal, &a);
	if (rv == EVR_PCR_MISMATCH && opts != NULL)
		opts->changed = a.changed;
	if (rv != CKR_OK) {
		ev_secret_free(a.plain);
		return rv;
	}
	*plain = a.plain; /* transferred */
	return CKR_OK;
}

static void
tpm_forked(ev_root *base)
{
	struct tpm_root *r = (struct tpm_root *)base;

	if (r->lock_ok && pthread_mutex_init(&r->lock, NULL) != 0)
		ev_warn("cannot reset the TPM root lock after fork");
	/*
	 * The connection is the parent's. Finalising it here would not be
	 * harmless: the swtpm and mssim TCTIs send a session-end command on
	 * the shared socket, and flushing the primary would flush the
	 * parent's. So the child forgets both contexts (their memory and the
	 * inherited descriptor are left as they are, once per fork) and
	 * connects on its own at first use.
	 */
	r->esys = NULL;
	r->tctx = NULL;
	r->primary = ESYS_TR_NONE;
}

static void
tpm_free(ev_root *base)
{
	struct tpm_root *r = (struct tpm_root *)base;

	drop_connection(r); /* does nothing with a parent's connection */
	forget_primary(r);
	if (r->lock_ok)
		pthread_mutex_destroy(&r->lock);
	free(r->tcti);
	free(r->helper);
	free(r);
}

/*
 * Quotes, for the tpm2-quote attestation provider (root.h,
 * doc/attestation.md). The attestation key (AK) is a transient primary of
 * the owner hierarchy made from a fixed template for each quote and
 * flushed after it: the TPM derives it from the owner seed, so it is the
 * same key every time on this TPM (and changes only with TPM2_Clear,
 * which loses the sealed zone keys too), and nothing of it stays loaded.
 * The owner hierarchy, not the endorsement one: its empty authorisation
 * is what the storage primary already relies on; an AK under the
 * endorsement hierarchy would add a dependency on endorsementAuth for no
 * gain on a quote checked on the device itself.
 */

/* The AK: restricted signing, ECDSA-SHA256 on P-256, never leaves this TPM. */
#define AK_ATTRS                                                                                   \
	(TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |        \
	 TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED |                    \
	 TPMA_OBJECT_SIGN_ENCRYPT)

struct quote_args {
	uint32_t pcrs;
	const unsigned char *nonce;
	size_t nonce_len;
	struct ev_quote *q;
};

static void
ak_template(TPM2B_PUBLIC *pub)
{
	memset(pub, 0, sizeof(*pub));
	pub->publicArea.type = TPM2_ALG_ECC;
	pub->publicArea.nameAlg = TPM2_ALG_SHA256;
	pub->publicArea.objectAttributes = AK_ATTRS;
	pub->publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
	pub->publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
	pub->publicArea.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
	pub->publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
	pub->publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
}

/* The TPM's answer into q, in its own marshalling. 0, or -1 when it does not fit. */
static int
quote_out(const TPM2B_PUBLIC *ak, const TPM2B_ATTEST *quoted, const TPMT_SIGNATURE *sig,
	  struct ev_quote *q)
{
	q->ak_len = 0;
	q->sig_len = 0;
	if (quoted->size > sizeof(q->attest) ||
	    Tss2_MU_TPMT_PUBLIC_Marshal(&ak->publicArea, q->ak, sizeof(q->ak), &q->ak_len) !=
		TSS2_RC_SUCCESS ||
	    Tss2_MU_TPMT_SIGNATURE_Marshal(sig, q->sig, sizeof(q->sig), &q->sig_len) !=
		TSS2_RC_SUCCESS)
		return -1;
	memcpy(q->attest, quoted->attestationData, quoted->size);
	q->attest_len = quoted->size;
	return 0;
}

static TSS2_RC
op_quote(struct tpm_root *r, void *arg, CK_RV *rv)
{
	struct quote_args *a = arg;
	TPM2B_SENSITIVE_CREATE sens;
	TPM2B_PUBLIC tmpl, *akpub = NULL;
	TPM2B_DATA outside, qualifying;
	TPML_PCR_SELECTION none, sel;
	TPMT_SIG_SCHEME scheme;
	TPM2B_ATTEST *quoted = NULL;
	TPMT_SIGNATURE *sig = NULL;
	ESYS_TR ak = ESYS_TR_NONE;
	TSS2_RC rc;
	unsigned i;

	*rv = CKR_DEVICE_ERROR;
	memset(&sens, 0, sizeof(sens));
	memset(&outside, 0, sizeof(outside));
	memset(&none, 0, sizeof(none));
	ak_template(&tmpl);
	rc = Esys_CreatePrimary(r->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
				ESYS_TR_NONE, &sens, &tmpl, &outside, &none, &ak, &akpub, NULL,
				NULL, NULL);
	if (rc != TSS2_RC_SUCCESS)
		return rc;
	memset(&qualifying, 0, sizeof(qualifying));
	qualifying.size = (UINT16)a->nonce_len;
	memcpy(qualifying.buffer, a->nonce, a->nonce_len);
	memset(&sel, 0, sizeof(sel));
	sel.count = 1;
	sel.pcrSelections[0].hash = TPM2_ALG_SHA256;
	sel.pcrSelections[0].sizeofSelect = 3;
	for (i = 0; i < 24; i++)
		if (a->pcrs & (1u << i))
			sel.pcrSelections[0].pcrSelect[i / 8] |= (BYTE)(1u << (i % 8));
	/* TPM2_ALG_NULL: the key's own scheme, ECDSA-SHA256. */
	memset(&scheme, 0, sizeof(scheme));
	scheme.scheme = TPM2_ALG_NULL;
	rc = Esys_Quote(r->esys, ak, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &qualifying,
			&scheme, &sel, &quoted, &sig);
	/* Always: no TPM object slot left in use, whatever happened. */
	(void)Esys_FlushContext(r->esys, ak);
	if (rc == TSS2_RC_SUCCESS) {
		if (quote_out(akpub, quoted, sig, a->q) == 0) {
			*rv = CKR_OK;
		} else {
			ev_error("TPM root: the TPM's quote does not fit (%u bytes signed)",
				 (unsigned)quoted->size);
		}
	}
	Esys_Free(akpub);
	Esys_Free(quoted);
	Esys_Free(sig);
	return rc;
}

static CK_RV
tpm_quote(ev_root *base, uint32_t pcrs, const unsigned char *nonce, size_t nonce_len,
	  struct ev_quote *q)
{
	struct tpm_root *r = (struct tpm_root *)base;
	struct ev_tpm_target t;
	struct quote_args a;
	int h;

	h = use_helper(r, &t);
	if (h != 0)
		return h < 0 ? CKR_GENERAL_ERROR : ev_tpm_helper_quote(&t, pcrs, nonce, nonce_len, q);
	a.pcrs = pcrs;
	a.nonce = nonce;
	a.nonce_len = nonce_len;
	a.q = q;
	return run(r, "quoting", op_quote, &a);
}

static const struct ev_root_ops tpm_ops = {
    .name = "tpm2",
    .seal = tpm_seal,
    .unseal = tpm_unseal,
    .forked = tpm_forked,
    .free = tpm_free,
    .quote = tpm_quote,
};

CK_RV
ev_root_tpm2_open(const ev_config *cfg, unsigned flags, ev_root **out, char *err, size_t errlen)
{
	struct tpm_root *r = NULL;
	struct ev_tpm_target t;
	CK_RV rv;
	int h;

	if (out == NULL || cfg == NULL)
		return CKR_ARGUMENTS_BAD;
	*out = NULL;
	if (cfg->root_tcti == NULL || *cfg->root_tcti == '\0') {
		ev_errf(err, errlen, "[root] tcti is required for the tpm2 root");
		return CKR_GENERAL_ERROR;
	}
	rv = CKR_HOST_MEMORY;
	ev_errf(err, errlen, "out of memory");
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		goto out;
	r->base.ops = &tpm_ops;
	r->primary = ESYS_TR_NONE;
	r->persistent = cfg->root_primary_handle;
	r->direct = direct_tcti(cfg->root_tcti);
	if (pthread_mutex_init(&r->lock, NULL) != 0)
		goto out;
	r->lock_ok = 1;
	r->tcti = strdup(cfg->root_tcti);
	r->helper = strdup(cfg->root_helper != NULL ? cfg->root_helper : EV_TPM_HELPER_PATH);
	r->in_process = (flags & EV_ROOT_IN_PROCESS) != 0;
	if (r->tcti == NULL || r->helper == NULL)
		goto out;
	/* Reachable now, or refused now. */
	h = use_helper(r, &t);
	if (h < 0) {
		rv = CKR_GENERAL_ERROR;
		ev_errf(err, errlen, "the TPM root's state could not be read (logged)");
	} else if (h > 0) {
		/* Through the helper: it reads the primary's name. */
		unsigned char name[EV_ROOT_NAME_MAX];
		size_t len = sizeof(name);

		rv = ev_tpm_helper_name(&t, name, &len);
		if (rv != CKR_OK)
			ev_errf(err, errlen,
				"the TPM helper %s could not run, or did not reach the TPM "
				"through TCTI \"%s\" (the log says which)",
				r->helper, r->tcti);
	} else {
		rv = connect_tpm(r, err, errlen);
	}
	if (rv != CKR_OK)
		goto out;
	if (r->direct)
		drop_connection(r);
	*out = &r->base;
	r = NULL; /* transferred */
	if (err != NULL && errlen > 0)
		err[0] = '\0';
out:
	if (r != NULL)
		tpm_free(&r->base);
	return rv;
}
