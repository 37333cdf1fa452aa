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
 * Every command that carries the secret runs in a salted HMAC session
 * (salted with the primary key, AES-128-CFB parameter encryption), so the
 * secret never crosses the bus to the TPM in clear: TPM2_Create's
 * sensitive data is encrypted on its way in, TPM2_Unseal's answer on its
 * way out.
 *
 * The primary is transient by default: made with TPM2_CreatePrimary from a
 * fixed template at each connection. A TPM derives a primary from the
 * hierarchy's seed and the template, so it is the same key every time (and
 * another TPM's is a different one). [root] primary_handle names a
 * persistent one instead, made beforehand by the operator.
 *
 * One lock serialises all use of the TPM connection. A connection that
 * fails (swtpm or tpm2-abrmd restarted), or a TPM that has forgotten our
 * primary (reset, restarted), is made again, once, and the operation
 * retried. After fork() the child forgets the parent's ESAPI and
 * TCTI contexts without finalising them (see tpm_forked) and connects
 * afresh at first use.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* strdup */
#endif

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "log.h"
#include "root.h"

#define SEAL_VERSION 2
#define AAD_DIGEST_LEN 32 /* BLAKE2b-256 */
/*
 * A sealed object's data is at most MAX_SYM_DATA bytes, 128 on the TPMs
 * of the PC Client profile (the TSS headers allow 256; TPMs do not).
 */
#define SEALED_DATA_MAX 128
#define PLAIN_MAX (SEALED_DATA_MAX - AAD_DIGEST_LEN)

/* The sealed object's attributes (doc/key-protection.md says why). */
#define SEAL_ATTRS                                                                                 \
	(TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_USERWITHAUTH |               \
	 TPMA_OBJECT_NODA)

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
	TSS2_TCTI_CONTEXT *tctx;
	ESYS_CONTEXT *esys;
	ESYS_TR primary; /* ESYS_TR_NONE while not connected */
	pid_t pid;	 /* the process that made the connection */
};

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

static void
drop_connection(struct tpm_root *r)
{
	if (r->esys != NULL && r->pid == getpid()) {
		if (r->primary != ESYS_TR_NONE) {
			/* A transient primary would hold a TPM object slot. */
			if (r->persistent == 0)
				(void)Esys_FlushContext(r->esys, r->primary);
			else
				(void)Esys_TR_Close(r->esys, &r->primary);
		}
		Esys_Finalize(&r->esys);
	}
	if (r->tctx != NULL && r->pid == getpid())
		Tss2_TctiLdr_Finalize(&r->tctx);
	r->esys = NULL;
	r->tctx = NULL;
	r->primary = ESYS_TR_NONE;
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

/* TCTI, ESAPI, TPM2_Startup, the primary. On failure nothing is left open. */
static CK_RV
connect_tpm(struct tpm_root *r, char *err, size_t errlen)
{
	TSS2_RC rc;
	CK_RV rv;

	rc = Tss2_TctiLdr_Initialize(r->tcti, &r->tctx);
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
		if (rv != CKR_OK)
			goto fail;
	} else {
		rc = create_primary(r);
		if (rc != TSS2_RC_SUCCESS) {
			r->primary = ESYS_TR_NONE;
			ev_errf(err, errlen,
				"cannot create the storage primary key under the TPM's owner "
				"hierarchy (TCTI \"%s\"): %s",
				r->tcti, rc_text(rc));
			rv = CKR_DEVICE_ERROR;
			goto fail;
		}
	}
	return CKR_OK;
fail:
	drop_connection(r);
	return rv;
}

/*
 * A salted HMAC session (salt encrypted to the primary), for authorising
 * with the empty auth values and for parameter encryption: attrs says
 * which (TPMA_SESSION_DECRYPT: the command's first parameter,
 * TPMA_SESSION_ENCRYPT: the response's).
 */
static TSS2_RC
start_session(struct tpm_root *r, TPMA_SESSION attrs, ESYS_TR *sess)
{
	TPMT_SYM_DEF sym;
	TSS2_RC rc;

	memset(&sym, 0, sizeof(sym));
	sym.algorithm = TPM2_ALG_AES;
	sym.keyBits.aes = 128;
	sym.mode.aes = TPM2_ALG_CFB;
	*sess = ESYS_TR_NONE;
	rc = Esys_StartAuthSession(r->esys, r->primary, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
				   ESYS_TR_NONE, NULL, TPM2_SE_HMAC, &sym, TPM2_ALG_SHA256, sess);
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

/* BLAKE2b-256(SEAL_VERSION || aad): what binds the associated data. */
static int
aad_digest(const unsigned char *aad, size_t aadlen, unsigned char out[AAD_DIGEST_LEN])
{
	crypto_generichash_state st;
	const unsigned char v = SEAL_VERSION;

	if (crypto_generichash_init(&st, NULL, 0, AAD_DIGEST_LEN) != 0 ||
	    crypto_generichash_update(&st, &v, 1) != 0 ||
	    (aadlen > 0 && crypto_generichash_update(&st, aad, aadlen) != 0) ||
	    crypto_generichash_final(&st, out, AAD_DIGEST_LEN) != 0)
		return -1;
	return 0;
}

struct seal_args {
	const unsigned char *digest;
	const ev_secret *plain;
	TPM2B_PUBLIC *pub;   /* out, Esys_Free */
	TPM2B_PRIVATE *priv; /* out, Esys_Free */
};

struct unseal_args {
	const unsigned char *digest;
	const TPM2B_PUBLIC *pub;
	const TPM2B_PRIVATE *priv;
	ev_secret *plain; /* out */
};

static TSS2_RC
op_seal(struct tpm_root *r, void *arg, CK_RV *rv)
{
	struct seal_args *a = arg;
	TPM2B_SENSITIVE_CREATE sens;
	TPM2B_PUBLIC tmpl;
	TPM2B_DATA outside;
	TPML_PCR_SELECTION pcrs;
	ESYS_TR sess;
	TSS2_RC rc;

	*rv = CKR_DEVICE_ERROR;
	rc = start_session(r, TPMA_SESSION_DECRYPT, &sess);
	if (rc != TSS2_RC_SUCCESS)
		return rc;
	memset(&sens, 0, sizeof(sens));
	memset(&tmpl, 0, sizeof(tmpl));
	memset(&outside, 0, sizeof(outside));
	memset(&pcrs, 0, sizeof(pcrs));
	sens.sensitive.data.size = (UINT16)(AAD_DIGEST_LEN + a->plain->len);
	memcpy(sens.sensitive.data.buffer, a->digest, AAD_DIGEST_LEN);
	memcpy(sens.sensitive.data.buffer + AAD_DIGEST_LEN, a->plain->data, a->plain->len);
	tmpl.publicArea.type = TPM2_ALG_KEYEDHASH;
	tmpl.publicArea.nameAlg = TPM2_ALG_SHA256;
	tmpl.publicArea.objectAttributes = SEAL_ATTRS;
	tmpl.publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
	rc = Esys_Create(r->esys, r->primary, sess, ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl,
			 &outside, &pcrs, &a->priv, &a->pub, NULL, NULL, NULL);
	sodium_memzero(&sens, sizeof(sens));
	if (rc != TSS2_RC_SUCCESS) {
		end_session(r, &sess);
		a->priv = NULL;
		a->pub = NULL;
		return rc;
	}
	*rv = CKR_OK;
	return rc;
}

static TSS2_RC
op_unseal(struct tpm_root *r, void *arg, CK_RV *rv)
{
	struct unseal_args *a = arg;
	TPM2B_SENSITIVE_DATA *out = NULL;
	ESYS_TR sess = ESYS_TR_NONE, obj = ESYS_TR_NONE;
	TSS2_RC rc;

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
	rc = start_session(r, TPMA_SESSION_ENCRYPT, &sess);
	if (rc == TSS2_RC_SUCCESS) {
		rc = Esys_Unseal(r->esys, obj, sess, ESYS_TR_NONE, ESYS_TR_NONE, &out);
		if (rc != TSS2_RC_SUCCESS)
			end_session(r, &sess);
	}
	/* Always: no TPM object slot left in use, whatever happened. */
	(void)Esys_FlushContext(r->esys, obj);
	if (rc != TSS2_RC_SUCCESS)
		return rc;
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
 * Run op under the lock: connect first when needed (first use, or in a
 * child after fork), and connect again and retry once when the link to
 * the TPM failed. op sets *rv; a TSS2 failure it returns without setting
 * *rv to something else is a device error, logged here with the TSS's
 * words.
 */
static CK_RV
run(struct tpm_root *r, const char *what, TSS2_RC (*op)(struct tpm_root *, void *, CK_RV *),
    void *arg)
{
	char err[256] = "";
	TSS2_RC rc;
	CK_RV rv;
	int tries;

	pthread_mutex_lock(&r->lock);
	if (r->esys != NULL && r->pid != getpid()) {
		/* The caller forgot ev_root_forked(): the connection is the parent's. */
		r->esys = NULL;
		r->tctx = NULL;
		r->primary = ESYS_TR_NONE;
	}
	for (tries = 0;; tries++) {
		if (r->esys == NULL) {
			rv = connect_tpm(r, err, sizeof(err));
			if (rv != CKR_OK) {
				ev_error("TPM root: %s", err);
				goto out;
			}
		}
		rv = CKR_DEVICE_ERROR;
		rc = op(r, arg, &rv);
		if (rc == TSS2_RC_SUCCESS || (!link_error(rc) && !stale_error(rc)) || tries == 1)
			break;
		ev_warn("TPM root: %s: %s; connecting again", what, rc_text(rc));
		drop_connection(r);
	}
	if (rc != TSS2_RC_SUCCESS && rv == CKR_DEVICE_ERROR) {
		ev_error("TPM root: %s failed: %s", what, rc_text(rc));
		if (link_error(rc))
			drop_connection(r); /* the next call connects again */
	}
out:
	pthread_mutex_unlock(&r->lock);
	return rv;
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

static CK_RV
tpm_seal(ev_root *base, const unsigned char *aad, size_t aadlen, const ev_secret *plain,
	 unsigned char **blob, size_t *bloblen)
{
	struct tpm_root *r = (struct tpm_root *)base;
	unsigned char digest[AAD_DIGEST_LEN];
	unsigned char pubbuf[sizeof(TPM2B_PUBLIC)], privbuf[sizeof(TPM2B_PRIVATE)];
	size_t publen = 0, privlen = 0, n;
	struct seal_args a;
	unsigned char *p;
	CK_RV rv;

	if (plain->len == 0 || plain->len > PLAIN_MAX)
		return CKR_DATA_LEN_RANGE;
	memset(&a, 0, sizeof(a));
	if (aad_digest(aad, aadlen, digest) != 0)
		return CKR_GENERAL_ERROR;
	a.digest = digest;
	a.plain = plain;
	rv = run(r, "sealing", op_seal, &a);
	if (rv != CKR_OK)
		goto out;
	if (Tss2_MU_TPM2B_PUBLIC_Marshal(a.pub, pubbuf, sizeof(pubbuf), &publen) !=
		TSS2_RC_SUCCESS ||
	    Tss2_MU_TPM2B_PRIVATE_Marshal(a.priv, privbuf, sizeof(privbuf), &privlen) !=
		TSS2_RC_SUCCESS ||
	    publen > 0xffff || privlen > 0xffff) {
		ev_error("TPM root: cannot marshal the sealed object");
		rv = CKR_DEVICE_ERROR;
		goto out;
	}
	n = 1 + 2 + publen + 2 + privlen;
	p = malloc(n);
	if (p == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	p[0] = SEAL_VERSION;
	put_u16(p + 1, publen);
	memcpy(p + 3, pubbuf, publen);
	put_u16(p + 3 + publen, privlen);
	memcpy(p + 5 + publen, privbuf, privlen);
	*blob = p;
	*bloblen = n;
out:
	Esys_Free(a.pub);
	Esys_Free(a.priv);
	return rv;
}

/*
 * The blob's two halves, all of it and nothing more, and a public area
 * that is ours: a sealed-data object with our attributes. 0 or -1.
 */
static int
parse_blob(const unsigned char *blob, size_t len, TPM2B_PUBLIC *pub, TPM2B_PRIVATE *priv)
{
	size_t n, off = 0, at;
	const TPMT_PUBLIC *pa = &pub->publicArea;

	memset(pub, 0, sizeof(*pub));
	memset(priv, 0, sizeof(*priv));
	if (len < 5 || blob[0] != SEAL_VERSION)
		return -1;
	n = get_u16(blob + 1);
	if (n > len - 5)
		return -1;
	if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(blob + 3, n, &off, pub) != TSS2_RC_SUCCESS || off != n)
		return -1;
	at = 3 + n;
	n = get_u16(blob + at);
	at += 2;
	if (n != len - at)
		return -1;
	off = 0;
	if (Tss2_MU_TPM2B_PRIVATE_Unmarshal(blob + at, n, &off, priv) != TSS2_RC_SUCCESS ||
	    off != n)
		return -1;
	if (pa->type != TPM2_ALG_KEYEDHASH || pa->nameAlg != TPM2_ALG_SHA256 ||
	    pa->objectAttributes != SEAL_ATTRS ||
	    pa->parameters.keyedHashDetail.scheme.scheme != TPM2_ALG_NULL ||
	    pa->authPolicy.size != 0)
		return -1;
	return 0;
}

static CK_RV
tpm_unseal(ev_root *base, const unsigned char *aad, size_t aadlen, const unsigned char *blob,
	   size_t bloblen, ev_secret **plain)
{
	struct tpm_root *r = (struct tpm_root *)base;
	unsigned char digest[AAD_DIGEST_LEN];
	struct unseal_args a;
	TPM2B_PUBLIC pub;
	TPM2B_PRIVATE priv;
	CK_RV rv;

	/* Before the TPM sees anything. */
	if (parse_blob(blob, bloblen, &pub, &priv) != 0)
		return CKR_ENCRYPTED_DATA_INVALID;
	if (aad_digest(aad, aadlen, digest) != 0)
		return CKR_GENERAL_ERROR;
	memset(&a, 0, sizeof(a));
	a.digest = digest;
	a.pub = &pub;
	a.priv = &priv;
	rv = run(r, "unsealing", op_unseal, &a);
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
	if (r->lock_ok)
		pthread_mutex_destroy(&r->lock);
	free(r->tcti);
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
	struct quote_args a;

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
	CK_RV rv;

	(void)flags;
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
	if (pthread_mutex_init(&r->lock, NULL) != 0)
		goto out;
	r->lock_ok = 1;
	r->tcti = strdup(cfg->root_tcti);
	if (r->tcti == NULL)
		goto out;
	rv = connect_tpm(r, err, errlen);
	if (rv != CKR_OK)
		goto out;
	*out = &r->base;
	r = NULL; /* transferred */
	if (err != NULL && errlen > 0)
		err[0] = '\0';
out:
	if (r != NULL)
		tpm_free(&r->base);
	return rv;
}
