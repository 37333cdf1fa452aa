/*
 * The tpm2-quote attestation provider (quote.h): reference policies read
 * as strictly as attestation results are, quotes checked with tss2-mu
 * (unmarshalling) and OpenSSL (the AK's ECDSA signature), and the rules.
 *
 * Everything the TPM root hands back is checked here as if it came from
 * outside: a quote is evidence only once its signature verifies with a
 * restricted signing key, which a TPM uses only over data it made itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <sodium.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_tpm2_types.h>

#include "json.h"
#include "log.h"
#include "module.h"
#include "quote.h"
#include "signed.h"

/* What messages name the document. */
#define DOC "TPM reference policy"

/* What a quote's AK must be (tpm2.c makes it so; noDA and userWithAuth do not matter here). */
#define AK_NEED                                                                                    \
	(TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |        \
	 TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT)

#define P256_LEN 32

/* ---- the reference policy ---- */

/* "pcrs": 1..24 indexes 0..23, ascending, so none twice. */
static CK_RV
read_pcrs(json_object *v, uint32_t *mask, char *err, size_t errlen)
{
	char what[32];
	int64_t pcr, last = -1;
	size_t n = 0, i;
	uint32_t m = 0;
	CK_RV rv;

	rv = ev_json_array(v, 1, EV_PCR_COUNT, "PCRs", &n, DOC, "\"pcrs\"", err, errlen);
	if (rv != CKR_OK)
		return rv;
	for (i = 0; i < n; i++) {
		snprintf(what, sizeof(what), "\"pcrs\"[%zu]", i);
		rv = ev_json_int(json_object_array_get_idx(v, i), 0, EV_PCR_COUNT - 1, &pcr, DOC,
				 what, err, errlen);
		if (rv != CKR_OK)
			return rv;
		if (pcr <= last) {
			ev_errf(err, errlen,
				"%s: %s: PCR %lld after PCR %lld: expected ascending, "
				"none twice",
				DOC, what, (long long)pcr, (long long)last);
			return CKR_DATA_INVALID;
		}
		last = pcr;
		m |= 1u << pcr;
	}
	*mask = m;
	return CKR_OK;
}

static const ev_json_member_def ref_members[] = {
    {"version", 1}, {"device", 1}, {"pcrs", 1},	     {"digest", 1},	{"ak", 1},
    {"seq", 1},	    {"zones", 0},  {"issued_at", 1}, {"expires_at", 1},
};

CK_RV
ev_tpm_reference_parse(const unsigned char *doc, size_t len, ev_tpm_reference **out, char *err,
		       size_t errlen)
{
	json_object *root = NULL;
	ev_tpm_reference *r = NULL;
	unsigned char *digest = NULL, *ak = NULL;
	size_t n = 0, akn = 0;
	CK_RV rv;

	if (out != NULL)
		*out = NULL;
	if ((doc == NULL && len > 0) || out == NULL) {
		ev_errf(err, errlen, "bad arguments");
		return CKR_ARGUMENTS_BAD;
	}
	rv = ev_json_document(doc, len, EV_ATTEST_MAX_FILE, ref_members, EV_ARRAY_SIZE(ref_members),
			      DOC, &root, err, errlen);
	if (rv != CKR_OK)
		return rv;
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		ev_errf(err, errlen, "out of memory");
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	rv = ev_attest_scope_read(root, DOC, &r->scope, err, errlen);
	if (rv == CKR_OK)
		rv = read_pcrs(ev_json_member(root, "pcrs"), &r->pcrs, err, errlen);
	if (rv == CKR_OK)
		rv = ev_json_hex(ev_json_member(root, "digest"), EV_QUOTE_DIGEST_LEN,
				 EV_QUOTE_DIGEST_LEN,
				 "expected the hex of a SHA-256 digest (64 digits)", &digest, &n,
				 DOC, "\"digest\"", err, errlen);
	if (rv == CKR_OK)
		rv = ev_json_hex(ev_json_member(root, "ak"), EV_QUOTE_AK_NAME_LEN,
				 EV_QUOTE_AK_NAME_LEN,
				 "expected the hex of a TPM name (68 digits, 000b...)", &ak, &akn,
				 DOC, "\"ak\"", err, errlen);
	if (rv == CKR_OK && (ak[0] != (TPM2_ALG_SHA256 >> 8) || ak[1] != (TPM2_ALG_SHA256 & 0xff))) {
		ev_errf(err, errlen, "%s: \"ak\": expected a TPM name of nameAlg SHA-256 (000b...)",
			DOC);
		rv = CKR_DATA_INVALID;
	}
	if (rv == CKR_OK)
		rv = ev_json_int(ev_json_member(root, "seq"), 1, EV_JSON_SAFE_MAX, &r->seq, DOC,
				 "\"seq\"", err, errlen);
	if (rv != CKR_OK)
		goto out;
	memcpy(r->pcr_digest, digest, sizeof(r->pcr_digest));
	memcpy(r->ak_name, ak, sizeof(r->ak_name));
	*out = r;
	r = NULL; /* transferred */
out:
	free(digest);
	free(ak);
	ev_tpm_reference_free(r);
	json_object_put(root);
	return rv;
}

/* ev_attest_parse_fn of reference policies. */
static CK_RV
parse_reference(const unsigned char *doc, size_t len, const unsigned char digest[32], void **out,
		char *err, size_t errlen)
{
	ev_tpm_reference *r = NULL;
	CK_RV rv = ev_tpm_reference_parse(doc, len, &r, err, errlen);

	if (rv == CKR_OK)
		memcpy(r->digest, digest, sizeof(r->digest));
	*out = r;
	return rv;
}

CK_RV
ev_tpm_reference_load(const unsigned char *buf, size_t len, const unsigned char pk[32],
		      ev_tpm_reference **out, char *err, size_t errlen)
{
	void *r = NULL;
	CK_RV rv;

	if (out == NULL)
		return CKR_ARGUMENTS_BAD;
	rv = ev_attest_load(buf, len, EV_SIGNED_TPM_REFERENCE, DOC, pk, parse_reference, &r, err,
			    errlen);
	*out = r;
	return rv;
}

void
ev_tpm_reference_free(ev_tpm_reference *r)
{
	if (r == NULL)
		return;
	ev_attest_scope_clear(&r->scope);
	free(r);
}

/* ---- the quote ---- */

/* The AK as an OpenSSL key: ours only if it is a restricted P-256 ECDSA-SHA256 signing key. */
static CK_RV
ak_key(const struct ev_quote *q, EVP_PKEY **out, char *why, size_t whylen)
{
	unsigned char point[1 + 2 * P256_LEN];
	const TPMS_ECC_POINT *u;
	const TPMS_ECC_PARMS *e;
	TPMT_PUBLIC pub;
	EVP_PKEY_CTX *ctx = NULL;
	OSSL_PARAM params[3];
	size_t off = 0;
	CK_RV rv = CKR_DATA_INVALID;

	*out = NULL;
	memset(&pub, 0, sizeof(pub));
	if (q->ak_len > sizeof(q->ak) ||
	    Tss2_MU_TPMT_PUBLIC_Unmarshal(q->ak, q->ak_len, &off, &pub) != TSS2_RC_SUCCESS ||
	    off != q->ak_len) {
		ev_errf(why, whylen, "the attestation key's public area is malformed");
		return CKR_DATA_INVALID;
	}
	e = &pub.parameters.eccDetail;
	u = &pub.unique.ecc;
	if (pub.type != TPM2_ALG_ECC || pub.nameAlg != TPM2_ALG_SHA256 ||
	    (pub.objectAttributes & AK_NEED) != AK_NEED ||
	    (pub.objectAttributes & TPMA_OBJECT_DECRYPT) != 0 ||
	    e->scheme.scheme != TPM2_ALG_ECDSA ||
	    e->scheme.details.ecdsa.hashAlg != TPM2_ALG_SHA256 ||
	    e->curveID != TPM2_ECC_NIST_P256 || u->x.size == 0 || u->x.size > P256_LEN ||
	    u->y.size == 0 || u->y.size > P256_LEN) {
		ev_errf(why, whylen,
			"the attestation key is not a restricted ECDSA-SHA256 P-256 signing key "
			"fixed to the TPM");
		return CKR_DATA_INVALID;
	}
	/* The uncompressed point, each coordinate left-padded to the curve's size. */
	memset(point, 0, sizeof(point));
	point[0] = POINT_CONVERSION_UNCOMPRESSED;
	memcpy(point + 1 + P256_LEN - u->x.size, u->x.buffer, u->x.size);
	memcpy(point + 1 + 2 * P256_LEN - u->y.size, u->y.buffer, u->y.size);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
	params[1] =
	    OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point));
	params[2] = OSSL_PARAM_construct_end();
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (ctx == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	/* OpenSSL refuses a point that is not on the curve. */
	if (EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
		*out = NULL;
		ev_errf(why, whylen, "the attestation key's public point is not on P-256");
		goto out;
	}
	rv = CKR_OK;
out:
	EVP_PKEY_CTX_free(ctx);
	return rv;
}

/* The TPM's ECDSA-SHA256 signature as DER (*der OPENSSL_free'd by the caller). */
static CK_RV
sig_der(const struct ev_quote *q, unsigned char **der, int *derlen, char *why, size_t whylen)
{
	const TPMS_SIGNATURE_ECC *ecc;
	TPMT_SIGNATURE sig;
	ECDSA_SIG *es = NULL;
	BIGNUM *r = NULL, *s = NULL;
	size_t off = 0;
	CK_RV rv = CKR_HOST_MEMORY;

	*der = NULL;
	*derlen = 0;
	memset(&sig, 0, sizeof(sig));
	if (q->sig_len > sizeof(q->sig) ||
	    Tss2_MU_TPMT_SIGNATURE_Unmarshal(q->sig, q->sig_len, &off, &sig) != TSS2_RC_SUCCESS ||
	    off != q->sig_len) {
		ev_errf(why, whylen, "the quote's signature is malformed");
		return CKR_DATA_INVALID;
	}
	ecc = &sig.signature.ecdsa;
	if (sig.sigAlg != TPM2_ALG_ECDSA || ecc->hash != TPM2_ALG_SHA256 ||
	    ecc->signatureR.size == 0 || ecc->signatureR.size > P256_LEN ||
	    ecc->signatureS.size == 0 || ecc->signatureS.size > P256_LEN) {
		ev_errf(why, whylen, "the quote's signature is not ECDSA-SHA256 on P-256");
		return CKR_SIGNATURE_INVALID;
	}
	es = ECDSA_SIG_new();
	r = BN_bin2bn(ecc->signatureR.buffer, ecc->signatureR.size, NULL);
	s = BN_bin2bn(ecc->signatureS.buffer, ecc->signatureS.size, NULL);
	if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s))
		goto out;
	r = s = NULL; /* transferred */
	*derlen = i2d_ECDSA_SIG(es, der);
	if (*derlen <= 0) {
		*der = NULL;
		goto out;
	}
	rv = CKR_OK;
out:
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	return rv;
}

/* Whether the AK signed the attest bytes. */
static CK_RV
check_signature(const struct ev_quote *q, char *why, size_t whylen)
{
	EVP_PKEY *ak = NULL;
	EVP_MD_CTX *md = NULL;
	unsigned char *der = NULL;
	int derlen = 0, ok;
	CK_RV rv;

	rv = ak_key(q, &ak, why, whylen);
	if (rv == CKR_OK)
		rv = sig_der(q, &der, &derlen, why, whylen);
	if (rv != CKR_OK)
		goto out;
	md = EVP_MD_CTX_new();
	if (md == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, ak) == 1 &&
	     EVP_DigestVerify(md, der, (size_t)derlen, q->attest, q->attest_len) == 1;
	if (!ok) {
		ev_errf(why, whylen,
			"the quote's signature does not verify with its attestation key");
		rv = CKR_SIGNATURE_INVALID;
	}
out:
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	EVP_PKEY_free(ak);
	return rv;
}

int
ev_quote_ak_name(const unsigned char *pub, size_t len, unsigned char name[EV_QUOTE_AK_NAME_LEN],
		 unsigned char qn[EV_QUOTE_AK_NAME_LEN])
{
	unsigned char buf[EV_QUOTE_PART_MAX], owner[4 + EV_QUOTE_AK_NAME_LEN];
	TPMT_PUBLIC p;
	size_t off = 0, n = 0;

	memset(&p, 0, sizeof(p));
	if (pub == NULL || name == NULL || len > sizeof(buf) ||
	    Tss2_MU_TPMT_PUBLIC_Unmarshal(pub, len, &off, &p) != TSS2_RC_SUCCESS || off != len ||
	    p.nameAlg != TPM2_ALG_SHA256)
		return -1;
	/*
	 * Hash the public area as marshalled again from what was read, which
	 * is the key ak_key() uses: bytes that read the same cannot name
	 * another key.
	 */
	if (Tss2_MU_TPMT_PUBLIC_Marshal(&p, buf, sizeof(buf), &n) != TSS2_RC_SUCCESS)
		return -1;
	name[0] = TPM2_ALG_SHA256 >> 8;
	name[1] = TPM2_ALG_SHA256 & 0xff;
	if (crypto_hash_sha256(name + 2, buf, n) != 0)
		return -1;
	if (qn == NULL)
		return 0;
	/* A primary's parent is its hierarchy, whose qualified name is its handle. */
	owner[0] = (unsigned char)(TPM2_RH_OWNER >> 24);
	owner[1] = (unsigned char)(TPM2_RH_OWNER >> 16);
	owner[2] = (unsigned char)(TPM2_RH_OWNER >> 8);
	owner[3] = (unsigned char)TPM2_RH_OWNER;
	memcpy(owner + 4, name, EV_QUOTE_AK_NAME_LEN);
	qn[0] = name[0];
	qn[1] = name[1];
	return crypto_hash_sha256(qn + 2, owner, sizeof(owner)) == 0 ? 0 : -1;
}

/* The PCRs of a selection as a mask; -1 when it is not one SHA-256 bank of PCRs 0..23. */
static int
selection_mask(const TPML_PCR_SELECTION *sel, uint32_t *mask)
{
	const TPMS_PCR_SELECTION *s = &sel->pcrSelections[0];
	uint32_t m = 0;
	unsigned i;

	if (sel->count != 1 || s->hash != TPM2_ALG_SHA256 || s->sizeofSelect < 3 ||
	    s->sizeofSelect > sizeof(s->pcrSelect))
		return -1;
	for (i = 3; i < s->sizeofSelect; i++)
		if (s->pcrSelect[i] != 0)
			return -1;
	for (i = 0; i < EV_PCR_COUNT; i++)
		if (s->pcrSelect[i / 8] & (1u << (i % 8)))
			m |= 1u << i;
	*mask = m;
	return 0;
}

static CK_RV
verify(const struct ev_quote *q, uint32_t pcrs, const unsigned char *nonce, size_t nonce_len,
       unsigned char pcr_digest[EV_QUOTE_DIGEST_LEN], unsigned char ak_name[EV_QUOTE_AK_NAME_LEN],
       char *why, size_t whylen)
{
	char want[EV_PCR_LIST_MAX], got[EV_PCR_LIST_MAX];
	unsigned char qn[EV_QUOTE_AK_NAME_LEN];
	const TPMS_QUOTE_INFO *qi;
	TPMS_ATTEST a;
	uint32_t mask = 0;
	size_t off = 0;
	CK_RV rv;

	memset(&a, 0, sizeof(a));
	if (q->attest_len > sizeof(q->attest) ||
	    Tss2_MU_TPMS_ATTEST_Unmarshal(q->attest, q->attest_len, &off, &a) != TSS2_RC_SUCCESS ||
	    off != q->attest_len) {
		ev_errf(why, whylen, "the quote's attestation structure is malformed");
		return CKR_DATA_INVALID;
	}
	rv = check_signature(q, why, whylen);
	if (rv != CKR_OK)
		return rv;
	if (ev_quote_ak_name(q->ak, q->ak_len, ak_name, qn) != 0) {
		ev_errf(why, whylen, "the attestation key's public area is malformed");
		return CKR_DATA_INVALID;
	}
	/* Signed by a restricted key: what follows is what the TPM said. */
	if (a.magic != TPM2_GENERATED_VALUE) {
		ev_errf(why, whylen, "the quote was not made by the TPM (magic 0x%08x)",
			(unsigned)a.magic);
		return CKR_DATA_INVALID;
	}
	if (a.type != TPM2_ST_ATTEST_QUOTE) {
		ev_errf(why, whylen, "the TPM signed something other than a quote (type 0x%04x)",
			(unsigned)a.type);
		return CKR_DATA_INVALID;
	}
	if (a.extraData.size != nonce_len ||
	    sodium_memcmp(a.extraData.buffer, nonce, nonce_len) != 0) {
		ev_errf(why, whylen, "the quote does not carry this appraisal's nonce (replayed?)");
		return CKR_DATA_INVALID;
	}
	if (a.qualifiedSigner.size != sizeof(qn) ||
	    sodium_memcmp(a.qualifiedSigner.name, qn, sizeof(qn)) != 0) {
		ev_errf(why, whylen,
			"the quote's signer is not the attestation key as a primary of the "
			"owner hierarchy");
		return CKR_DATA_INVALID;
	}
	qi = &a.attested.quote;
	if (selection_mask(&qi->pcrSelect, &mask) != 0 || mask != pcrs) {
		ev_errf(why, whylen,
			"the quote covers PCRs %s, not the configured %s of the "
			"SHA-256 bank",
			mask != 0 ? ev_pcr_list_format(mask, got) : "of another selection",
			ev_pcr_list_format(pcrs, want));
		return CKR_DATA_INVALID;
	}
	if (qi->pcrDigest.size != EV_QUOTE_DIGEST_LEN) {
		ev_errf(why, whylen, "the quote's PCR digest is %u bytes, not SHA-256's %u",
			(unsigned)qi->pcrDigest.size, EV_QUOTE_DIGEST_LEN);
		return CKR_DATA_INVALID;
	}
	memcpy(pcr_digest, qi->pcrDigest.buffer, EV_QUOTE_DIGEST_LEN);
	return CKR_OK;
}

CK_RV
ev_quote_verify(const struct ev_quote *q, uint32_t pcrs, const unsigned char *nonce,
		size_t nonce_len, unsigned char pcr_digest[EV_QUOTE_DIGEST_LEN],
		unsigned char ak_name[EV_QUOTE_AK_NAME_LEN], char *why, size_t whylen)
{
	CK_RV rv;

	if (q == NULL || nonce == NULL || nonce_len == 0 || pcr_digest == NULL || ak_name == NULL) {
		ev_errf(why, whylen, "bad arguments");
		return CKR_ARGUMENTS_BAD;
	}
	ev_errq_mark();
	rv = verify(q, pcrs, nonce, nonce_len, pcr_digest, ak_name, why, whylen);
	ev_errq_restore();
	return rv;
}

/* ---- the rules ---- */

/* The rules that need no quote: the scope, and the PCRs the reference is about. */
static int
reference_check(const ev_tpm_reference *r, const ev_attest_ctx *ctx, ev_verdict *v)
{
	char want[EV_PCR_LIST_MAX], got[EV_PCR_LIST_MAX];

	if (ev_attest_scope_check(&r->scope, ctx, v) != 0)
		return -1;
	if (r->pcrs != ctx->cfg->attest_pcrs) {
		ev_verdict_refuse(v, "reference for PCRs %s, not the configured %s",
				  ev_pcr_list_format(r->pcrs, got),
				  ev_pcr_list_format(ctx->cfg->attest_pcrs, want));
		return -1;
	}
	return 0;
}

/* What the verdict is about: the reference envelope and the PCR state found. 0, or -1. */
static int
verdict_digest(const ev_tpm_reference *r, const unsigned char pcr_digest[EV_QUOTE_DIGEST_LEN],
	       unsigned char out[32])
{
	crypto_generichash_state h;
	int rc = -1;

	if (crypto_generichash_init(&h, NULL, 0, 32) == 0 &&
	    crypto_generichash_update(&h, r->digest, sizeof(r->digest)) == 0 &&
	    crypto_generichash_update(&h, pcr_digest, EV_QUOTE_DIGEST_LEN) == 0 &&
	    crypto_generichash_final(&h, out, 32) == 0)
		rc = 0;
	sodium_memzero(&h, sizeof(h));
	if (rc != 0)
		sodium_memzero(out, 32);
	return rc;
}

void
ev_quote_check(const ev_tpm_reference *r, const unsigned char pcr_digest[EV_QUOTE_DIGEST_LEN],
	       const unsigned char ak_name[EV_QUOTE_AK_NAME_LEN], const ev_attest_ctx *ctx,
	       ev_verdict *v)
{
	char hex[2 * EV_QUOTE_AK_NAME_LEN + 1], pcrs[EV_PCR_LIST_MAX], t[32], t2[32];
	int64_t fresh_until;

	if (v == NULL)
		return;
	memset(v, 0, sizeof(*v));
	if (r == NULL || r->scope.device == NULL || pcr_digest == NULL || ak_name == NULL ||
	    ctx == NULL) {
		ev_verdict_refuse(v, "no evidence");
		return;
	}
	/* A verdict the history cannot tell apart from others is no verdict. */
	if (verdict_digest(r, pcr_digest, v->digest) != 0) {
		ev_verdict_refuse(v, "the verdict's digest could not be computed");
		return;
	}
	if (reference_check(r, ctx, v) != 0)
		return;
	/* The AK first: a PCR digest means nothing from a key nobody pinned. */
	if (sodium_memcmp(ak_name, r->ak_name, EV_QUOTE_AK_NAME_LEN) != 0) {
		sodium_bin2hex(hex, sizeof(hex), ak_name, EV_QUOTE_AK_NAME_LEN);
		ev_verdict_refuse(v, "the quote's attestation key %s is not the reference's", hex);
		return;
	}
	if (sodium_memcmp(pcr_digest, r->pcr_digest, EV_QUOTE_DIGEST_LEN) != 0) {
		sodium_bin2hex(hex, sizeof(hex), pcr_digest, EV_QUOTE_DIGEST_LEN);
		ev_verdict_refuse(v, "PCR digest %s differs from the reference's (PCRs %s)", hex,
				  ev_pcr_list_format(r->pcrs, pcrs));
		return;
	}
	/* now and the durations are within 2^53 (clamped): no overflow. */
	fresh_until = ctx->now + ev_attest_clamp(ctx->policy->max_evidence_age);
	v->accepted = 1;
	v->valid_until = r->scope.expires_at < fresh_until ? r->scope.expires_at : fresh_until;
	snprintf(v->reason, sizeof(v->reason),
		 "accepted for zone %lld: PCRs %s as the reference issued at %s, until %s",
		 (long long)ctx->zone, ev_pcr_list_format(r->pcrs, pcrs),
		 ev_iso_time(r->scope.issued_at, t), ev_iso_time(v->valid_until, t2));
}

CK_RV
ev_quote_seq_admit(ev_store *s, int64_t seq, char *why, size_t whylen)
{
	int64_t last = 0;
	CK_RV rv;

	if (s == NULL || seq < 1 || seq > EV_JSON_SAFE_MAX) {
		ev_errf(why, whylen, "bad arguments");
		return CKR_ARGUMENTS_BAD;
	}
	rv = ev_store_begin(s);
	if (rv != CKR_OK) {
		ev_errf(why, whylen, "the store cannot keep the reference policy's seq");
		return rv;
	}
	rv = ev_store_meta_get_int(s, EV_META_TPM_REFERENCE_SEQ, &last);
	if (rv == EVR_NOT_FOUND) {
		last = 0;
		rv = CKR_OK;
	}
	if (rv == CKR_OK && seq < last) {
		ev_errf(why, whylen, "reference policy seq %lld is older than the %lld already accepted",
			(long long)seq, (long long)last);
		(void)ev_store_rollback(s);
		return CKR_DATA_INVALID;
	}
	if (rv == CKR_OK && seq > last)
		rv = ev_store_meta_set_int(s, EV_META_TPM_REFERENCE_SEQ, seq);
	if (rv == CKR_OK)
		rv = ev_store_commit(s);
	if (rv != CKR_OK) {
		(void)ev_store_rollback(s);
		ev_errf(why, whylen, "the store cannot keep the reference policy's seq");
	}
	return rv;
}

/* ---- the provider ---- */

/* The rollback rule with the module's store: 0, -1 with v refused, -2 (the store failed). */
static int
admit_seq(const ev_tpm_reference *r, ev_verdict *v)
{
	char why[160] = "";
	CK_RV rv;

	if (ev_mod == NULL || ev_mod->store == NULL || ev_mod->store_lock == NULL) {
		ev_verdict_refuse(v, "no store to keep the reference policy's seq in");
		return -1;
	}
	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		return -2;
	rv = ev_quote_seq_admit(ev_mod->store, r->seq, why, sizeof(why));
	ev_mutex_unlock(ev_mod->store_lock);
	if (rv == CKR_DATA_INVALID) {
		ev_verdict_refuse(v, "%s", why);
		return -1;
	}
	if (rv != CKR_OK) {
		ev_error("%s (CKR 0x%lx)", why, (unsigned long)rv);
		return -2;
	}
	return 0;
}

/* The reference policy from its file; 0, -1 with v refused, or -2 (out of memory). */
static int
read_reference(const ev_attest_ctx *ctx, ev_tpm_reference **r, ev_verdict *v)
{
	unsigned char *buf = NULL;
	char err[160] = "";
	size_t len = 0;
	CK_RV rv;
	int rc;

	*r = NULL;
	rc =
	    ev_attest_read_file(ctx->cfg->attest_reference_path, "reference policy", &buf, &len, v);
	if (rc != 0)
		return rc;
	rv = ev_tpm_reference_load(buf, len, ctx->cfg->verifier_key, r, err, sizeof(err));
	if (rv == CKR_HOST_MEMORY) {
		rc = -2;
	} else if (rv != CKR_OK) {
		ev_verdict_refuse(v, "%s", err);
		/* The audit trail can still tell which file was refused (zeros: it cannot). */
		if (crypto_generichash(v->digest, sizeof(v->digest), buf, len, NULL, 0) != 0)
			sodium_memzero(v->digest, sizeof(v->digest));
		rc = -1;
	}
	free(buf);
	return rc;
}

static CK_RV
quote_appraise(const ev_attest_ctx *ctx, ev_verdict *v)
{
	unsigned char nonce[EV_QUOTE_NONCE_LEN], pcr_digest[EV_QUOTE_DIGEST_LEN];
	unsigned char ak_name[EV_QUOTE_AK_NAME_LEN];
	char why[160] = "", pcrs[EV_PCR_LIST_MAX], hex[2 * EV_QUOTE_NONCE_LEN + 1];
	ev_tpm_reference *r = NULL;
	struct ev_quote q;
	CK_RV rv;
	int rc;

	if (v == NULL)
		return CKR_ARGUMENTS_BAD;
	memset(v, 0, sizeof(*v));
	if (ctx == NULL || ctx->cfg == NULL || ctx->policy == NULL) {
		ev_verdict_refuse(v, "no configuration to appraise evidence against");
		return CKR_ARGUMENTS_BAD;
	}
	if (!ctx->cfg->has_verifier_key) {
		ev_verdict_refuse(v, "no [attestation] verifier_key is configured");
		return CKR_OK;
	}
	if (ctx->cfg->attest_reference_path == NULL || ctx->cfg->attest_reference_path[0] == '\0') {
		ev_verdict_refuse(v, "no [attestation] reference_path is configured");
		return CKR_OK;
	}
	if (ctx->cfg->attest_pcrs == 0 || (ctx->cfg->attest_pcrs >> EV_PCR_COUNT) != 0) {
		ev_verdict_refuse(v, "no [attestation] pcrs are configured");
		return CKR_OK;
	}
	rc = read_reference(ctx, &r, v);
	if (rc == -2)
		return CKR_HOST_MEMORY;
	if (rc != 0)
		return CKR_OK;
	/* A reference the rules refuse anyway spares the TPM a quote. */
	memcpy(v->digest, r->digest, sizeof(v->digest));
	rv = CKR_OK;
	if (reference_check(r, ctx, v) != 0)
		goto out;
	/*
	 * Kept before the quote, whatever it shows: once the verifier's newer
	 * reference was here, putting an older one back is refused even if
	 * the device never matched the newer one.
	 */
	rc = admit_seq(r, v);
	if (rc == -2) {
		rv = CKR_DEVICE_ERROR;
		goto out;
	}
	if (rc != 0)
		goto out;
	if (ctx->root == NULL) {
		ev_verdict_refuse(v, "no root of trust to quote with");
		goto out;
	}
	/* Fresh for every quote: a recorded quote cannot answer it. */
	randombytes_buf(nonce, sizeof(nonce));
	sodium_bin2hex(hex, sizeof(hex), nonce, sizeof(nonce));
	ev_debug("zone %lld: TPM quote of PCRs %s with nonce %s", (long long)ctx->zone,
		 ev_pcr_list_format(ctx->cfg->attest_pcrs, pcrs), hex);
	rv = ev_root_quote(ctx->root, ctx->cfg->attest_pcrs, nonce, sizeof(nonce), &q);
	if (rv == CKR_FUNCTION_NOT_SUPPORTED) {
		ev_verdict_refuse(v,
				  "the root of trust (%s) cannot quote: provider tpm2-quote "
				  "needs [root] backend = tpm2",
				  ctx->root->ops != NULL && ctx->root->ops->name != NULL
				      ? ctx->root->ops->name
				      : "?");
		rv = CKR_OK;
		goto out;
	}
	if (rv != CKR_OK) {
		ev_error("zone %lld: no quote from the TPM (CKR 0x%lx)", (long long)ctx->zone,
			 (unsigned long)rv);
		goto out;
	}
	rv = ev_quote_verify(&q, ctx->cfg->attest_pcrs, nonce, sizeof(nonce), pcr_digest, ak_name,
			     why, sizeof(why));
	if (rv == CKR_HOST_MEMORY)
		goto out;
	if (rv != CKR_OK) {
		ev_verdict_refuse(v, "%s", why);
		rv = CKR_OK;
		goto out;
	}
	ev_quote_check(r, pcr_digest, ak_name, ctx, v);
out:
	ev_tpm_reference_free(r);
	return rv;
}

const ev_attest_provider ev_tpm2_quote_provider = {
    .name = "tpm2-quote",
    .needs_root = 1,
    .appraise = quote_appraise,
};
