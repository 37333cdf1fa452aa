/*
 * The mechanism table, the algorithms fetched once per process, and the
 * dispatcher that applies the PKCS#11 length and buffer conventions
 * (section 5.2 of the base specification) for every family.
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "../log.h"
#include "mech_int.h"

/* CKF_EC_OID is the PKCS#11 3.0 name of the bit 2.40 called CKF_EC_NAMEDCURVE. */
#ifdef CKF_EC_OID
#define EV_CKF_EC_OID CKF_EC_OID
#else
#define EV_CKF_EC_OID CKF_EC_NAMEDCURVE
#endif
#ifdef CKF_EC_CURVENAME
#define EV_CKF_EC_CURVENAME CKF_EC_CURVENAME
#else
#define EV_CKF_EC_CURVENAME 0
#endif

#define EV_EC_FLAGS (CKF_EC_F_P | EV_CKF_EC_OID | CKF_EC_UNCOMPRESS)
#define EV_CRYPT_FLAGS (CKF_ENCRYPT | CKF_DECRYPT)
#define EV_WRAP_FLAGS (CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP)
#define EV_SIGN_FLAGS (CKF_SIGN | CKF_VERIFY)

/* Key sizes as CK_MECHANISM_INFO counts them. */
#define EV_EC_MIN 256
#define EV_EC_MAX 384
#define EV_ED_BITS 256 /* what OpenSSL reports for Ed25519 keys */
#define EV_RSA_GEN_MIN 2048
#define EV_RSA_GEN_MAX 4096
#define EV_RSA_MIN 2048
#define EV_RSA_MAX 8192
#define EV_AES_MIN 16
#define EV_AES_MAX 32
#define EV_GENERIC_MIN 1
#define EV_GENERIC_GEN_MAX 512
#define EV_HMAC_MAX 4096

/* The most input kept for a one-shot-only algorithm driven in parts. */
#define EV_OP_BUFFER_MAX (64UL * 1024 * 1024)

/* Handed to OpenSSL for empty input instead of NULL, which some
 * algorithms read as "no input at all". */
static const CK_BYTE empty[1];

#define EC_KEY_T .ktypes = {CKK_EC}, .nktypes = 1, .min_size = EV_EC_MIN, .max_size = EV_EC_MAX
#define ED_KEY_T                                                                                   \
	.ktypes = {CKK_EC_EDWARDS}, .nktypes = 1, .min_size = EV_ED_BITS, .max_size = EV_ED_BITS
#define RSA_KEY_T .ktypes = {CKK_RSA}, .nktypes = 1, .min_size = EV_RSA_MIN, .max_size = EV_RSA_MAX
#define AES_KEY_T .ktypes = {CKK_AES}, .nktypes = 1, .min_size = EV_AES_MIN, .max_size = EV_AES_MAX
#define RSA_GEN_KEY_T                                                                              \
	.ktypes = {CKK_RSA}, .nktypes = 1, .min_size = EV_RSA_GEN_MIN, .max_size = EV_RSA_GEN_MAX
#define GENERIC_GEN_KEY_T                                                                          \
	.ktypes = {CKK_GENERIC_SECRET}, .nktypes = 1, .min_size = EV_GENERIC_MIN,                  \
	.max_size = EV_GENERIC_GEN_MAX
#define NO_KEY_T .nktypes = 0
#define HMAC_KEY_T(hmac_type)                                                                      \
	.ktypes = {CKK_GENERIC_SECRET, hmac_type}, .nktypes = 2, .min_size = EV_GENERIC_MIN,       \
	.max_size = EV_HMAC_MAX

/* One row per mechanism: type, key types and sizes, flags, family, hash, variant. */
#define ROW(ckm, keys, fl, o, h, v)                                                                \
	{                                                                                          \
		.type = (ckm), keys, .flags = (fl), .ops = (o), .hash = (h), .variant = (v)        \
	}

static const ev_mech mechs[] = {
    /* EC */
    ROW(CKM_EC_KEY_PAIR_GEN, EC_KEY_T, CKF_GENERATE_KEY_PAIR | EV_EC_FLAGS, NULL, 0, 0),
    ROW(CKM_ECDSA, EC_KEY_T, EV_SIGN_FLAGS | EV_EC_FLAGS, &ev_ecdsa_ops, 0, 0),
    ROW(CKM_ECDSA_SHA256, EC_KEY_T, EV_SIGN_FLAGS | EV_EC_FLAGS, &ev_ecdsa_ops, CKM_SHA256, 0),
    ROW(CKM_ECDSA_SHA384, EC_KEY_T, EV_SIGN_FLAGS | EV_EC_FLAGS, &ev_ecdsa_ops, CKM_SHA384, 0),
    ROW(CKM_ECDH1_DERIVE, EC_KEY_T, CKF_DERIVE | EV_EC_FLAGS, NULL, 0, 0),

    /* Edwards */
    ROW(CKM_EC_EDWARDS_KEY_PAIR_GEN, ED_KEY_T,
	CKF_GENERATE_KEY_PAIR | EV_CKF_EC_OID | EV_CKF_EC_CURVENAME, NULL, 0, 0),
    ROW(CKM_EDDSA, ED_KEY_T, EV_SIGN_FLAGS, &ev_eddsa_ops, 0, 0),

    /* RSA */
    ROW(CKM_RSA_PKCS_KEY_PAIR_GEN, RSA_GEN_KEY_T, CKF_GENERATE_KEY_PAIR, NULL, 0, 0),
    ROW(CKM_RSA_PKCS, RSA_KEY_T, EV_WRAP_FLAGS | EV_SIGN_FLAGS, &ev_rsa_ops, 0, EV_RSA_PKCS),
    ROW(CKM_RSA_PKCS_PSS, RSA_KEY_T, EV_SIGN_FLAGS, &ev_rsa_ops, 0, EV_RSA_PSS),
    ROW(CKM_RSA_PKCS_OAEP, RSA_KEY_T, EV_WRAP_FLAGS, &ev_rsa_ops, 0, EV_RSA_OAEP),
    ROW(CKM_SHA1_RSA_PKCS, RSA_KEY_T, EV_SIGN_FLAGS, &ev_rsa_ops, CKM_SHA_1, EV_RSA_PKCS),
    ROW(CKM_SHA256_RSA_PKCS, RSA_KEY_T, EV_SIGN_FLAGS, &ev_rsa_ops, CKM_SHA256, EV_RSA_PKCS),
    ROW(CKM_SHA384_RSA_PKCS, RSA_KEY_T, EV_SIGN_FLAGS, &ev_rsa_ops, CKM_SHA384, EV_RSA_PKCS),
    ROW(CKM_SHA512_RSA_PKCS, RSA_KEY_T, EV_SIGN_FLAGS, &ev_rsa_ops, CKM_SHA512, EV_RSA_PKCS),
    ROW(CKM_SHA256_RSA_PKCS_PSS, RSA_KEY_T, EV_SIGN_FLAGS, &ev_rsa_ops, CKM_SHA256, EV_RSA_PSS),
    ROW(CKM_SHA384_RSA_PKCS_PSS, RSA_KEY_T, EV_SIGN_FLAGS, &ev_rsa_ops, CKM_SHA384, EV_RSA_PSS),
    ROW(CKM_SHA512_RSA_PKCS_PSS, RSA_KEY_T, EV_SIGN_FLAGS, &ev_rsa_ops, CKM_SHA512, EV_RSA_PSS),

    /* AES */
    ROW(CKM_AES_KEY_GEN, AES_KEY_T, CKF_GENERATE, NULL, 0, 0),
    ROW(CKM_AES_ECB, AES_KEY_T, EV_CRYPT_FLAGS, &ev_aes_ops, 0, EV_AES_ECB),
    ROW(CKM_AES_CBC, AES_KEY_T, EV_CRYPT_FLAGS, &ev_aes_ops, 0, EV_AES_CBC),
    ROW(CKM_AES_CBC_PAD, AES_KEY_T, EV_WRAP_FLAGS, &ev_aes_ops, 0, EV_AES_CBC_PAD),
    ROW(CKM_AES_CTR, AES_KEY_T, EV_CRYPT_FLAGS, &ev_aes_ops, 0, EV_AES_CTR),
    ROW(CKM_AES_GCM, AES_KEY_T, EV_WRAP_FLAGS, &ev_aes_ops, 0, EV_AES_GCM),
    ROW(CKM_AES_KEY_WRAP, AES_KEY_T, EV_WRAP_FLAGS, &ev_aes_ops, 0, EV_AES_KW),
    ROW(CKM_AES_KEY_WRAP_PAD, AES_KEY_T, EV_WRAP_FLAGS, &ev_aes_ops, 0, EV_AES_KW_PAD),
    ROW(CKM_AES_KEY_WRAP_KWP, AES_KEY_T, EV_WRAP_FLAGS, &ev_aes_ops, 0, EV_AES_KWP),

    /* Generic secrets and HMAC */
    ROW(CKM_GENERIC_SECRET_KEY_GEN, GENERIC_GEN_KEY_T, CKF_GENERATE, NULL, 0, 0),
    ROW(CKM_SHA256_HMAC, HMAC_KEY_T(CKK_SHA256_HMAC), EV_SIGN_FLAGS, &ev_hmac_ops, CKM_SHA256, 0),
    ROW(CKM_SHA384_HMAC, HMAC_KEY_T(CKK_SHA384_HMAC), EV_SIGN_FLAGS, &ev_hmac_ops, CKM_SHA384, 0),
    ROW(CKM_SHA512_HMAC, HMAC_KEY_T(CKK_SHA512_HMAC), EV_SIGN_FLAGS, &ev_hmac_ops, CKM_SHA512, 0),

    /* Digests */
    ROW(CKM_SHA_1, NO_KEY_T, CKF_DIGEST, &ev_digest_ops, CKM_SHA_1, 0),
    ROW(CKM_SHA256, NO_KEY_T, CKF_DIGEST, &ev_digest_ops, CKM_SHA256, 0),
    ROW(CKM_SHA384, NO_KEY_T, CKF_DIGEST, &ev_digest_ops, CKM_SHA384, 0),
    ROW(CKM_SHA512, NO_KEY_T, CKF_DIGEST, &ev_digest_ops, CKM_SHA512, 0),
};

/*
 * ev_mech_find()'s index: open addressing over the table's rows (row + 1;
 * 0 is empty), at most half full, built once per process. Every C_*Init
 * looks its mechanism up, so this is one multiplication and a probe or
 * two instead of a scan of the table.
 */
#define MECH_SLOTS 128
static uint8_t mech_index[MECH_SLOTS];
static pthread_once_t mech_index_once = PTHREAD_ONCE_INIT;

static size_t
mech_slot(CK_MECHANISM_TYPE type)
{
	return (size_t)(((unsigned long long)type * 0x9E3779B97F4A7C15ULL) >> 57) & (MECH_SLOTS - 1);
}

static void
mech_index_build(void)
{
	size_t i, s;

	_Static_assert(EV_ARRAY_SIZE(mechs) * 2 <= MECH_SLOTS, "mechanism index too small");
	for (i = 0; i < EV_ARRAY_SIZE(mechs); i++) {
		for (s = mech_slot(mechs[i].type); mech_index[s] != 0; s = (s + 1) & (MECH_SLOTS - 1))
			;
		mech_index[s] = (uint8_t)(i + 1);
	}
}

const ev_mech *
ev_mech_find(CK_MECHANISM_TYPE type)
{
	size_t s;

	(void)pthread_once(&mech_index_once, mech_index_build);
	for (s = mech_slot(type); mech_index[s] != 0; s = (s + 1) & (MECH_SLOTS - 1))
		if (mechs[mech_index[s] - 1].type == type)
			return &mechs[mech_index[s] - 1];
	return NULL;
}

CK_RV
ev_mech_list(CK_MECHANISM_TYPE *list, CK_ULONG *count)
{
	CK_ULONG n = EV_ARRAY_SIZE(mechs), i;

	if (count == NULL)
		return CKR_ARGUMENTS_BAD;
	if (list == NULL) {
		*count = n;
		return CKR_OK;
	}
	if (*count < n) {
		*count = n;
		return CKR_BUFFER_TOO_SMALL;
	}
	for (i = 0; i < n; i++)
		list[i] = mechs[i].type;
	*count = n;
	return CKR_OK;
}

void
ev_mech_info(const ev_mech *m, CK_MECHANISM_INFO *info)
{
	info->ulMinKeySize = m->min_size;
	info->ulMaxKeySize = m->max_size;
	info->flags = m->flags;
}

int
ev_mech_can(const ev_mech *m, CK_FLAGS ckf_flag)
{
	return (m->flags & ckf_flag) != 0;
}

CK_RV
ev_mech_key_ok(const ev_mech *m, const ev_key *key)
{
	CK_ULONG size;
	unsigned i;

	for (i = 0; i < m->nktypes; i++)
		if (m->ktypes[i] == key->type)
			break;
	if (i == m->nktypes)
		return CKR_KEY_TYPE_INCONSISTENT;
	size = ev_key_size(key);
	if (size < m->min_size || size > m->max_size)
		return CKR_KEY_SIZE_RANGE;
	return CKR_OK;
}

/*
 * Algorithms fetched once. EVP_MD_fetch() and friends look the name up in
 * the provider store under a lock; doing that per operation is what makes
 * naive EVP code slow next to `openssl speed`.
 */
static struct {
	CK_MECHANISM_TYPE ckm;
	CK_RSA_PKCS_MGF_TYPE mgf;
	const char *name;
	EVP_MD *md;
} mds[] = {
    {CKM_SHA_1, CKG_MGF1_SHA1, "SHA1", NULL},
    {CKM_SHA256, CKG_MGF1_SHA256, "SHA2-256", NULL},
    {CKM_SHA384, CKG_MGF1_SHA384, "SHA2-384", NULL},
    {CKM_SHA512, CKG_MGF1_SHA512, "SHA2-512", NULL},
};

static struct {
	int variant;
	size_t keylen;
	const char *name;
	EVP_CIPHER *cipher;
} ciphers[] = {
    {EV_AES_ECB, 16, "AES-128-ECB", NULL},	{EV_AES_ECB, 24, "AES-192-ECB", NULL},
    {EV_AES_ECB, 32, "AES-256-ECB", NULL},	{EV_AES_CBC, 16, "AES-128-CBC", NULL},
    {EV_AES_CBC, 24, "AES-192-CBC", NULL},	{EV_AES_CBC, 32, "AES-256-CBC", NULL},
    {EV_AES_CTR, 16, "AES-128-CTR", NULL},	{EV_AES_CTR, 24, "AES-192-CTR", NULL},
    {EV_AES_CTR, 32, "AES-256-CTR", NULL},	{EV_AES_GCM, 16, "AES-128-GCM", NULL},
    {EV_AES_GCM, 24, "AES-192-GCM", NULL},	{EV_AES_GCM, 32, "AES-256-GCM", NULL},
    {EV_AES_KW, 16, "AES-128-WRAP", NULL},	{EV_AES_KW, 24, "AES-192-WRAP", NULL},
    {EV_AES_KW, 32, "AES-256-WRAP", NULL},	{EV_AES_KWP, 16, "AES-128-WRAP-PAD", NULL},
    {EV_AES_KWP, 24, "AES-192-WRAP-PAD", NULL}, {EV_AES_KWP, 32, "AES-256-WRAP-PAD", NULL},
};

static EVP_MAC *hmac;

/*
 * Fetched on first use and released by ev_mech_fini() (C_Finalize), so a
 * module that is unloaded after C_Finalize leaves nothing of OpenSSL's
 * behind. The flag is read without the lock on the hot path.
 */
static atomic_int fetched;
static pthread_mutex_t fetch_lock = PTHREAD_MUTEX_INITIALIZER;

static void
fetch_all(void)
{
	size_t i;

	for (i = 0; i < EV_ARRAY_SIZE(mds); i++) {
		mds[i].md = EVP_MD_fetch(NULL, mds[i].name, NULL);
		if (mds[i].md == NULL)
			ev_debug("digest %s not available", mds[i].name);
	}
	for (i = 0; i < EV_ARRAY_SIZE(ciphers); i++) {
		ciphers[i].cipher = EVP_CIPHER_fetch(NULL, ciphers[i].name, NULL);
		if (ciphers[i].cipher == NULL)
			ev_debug("cipher %s not available", ciphers[i].name);
	}
	hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

static void
fetch(void)
{
	if (atomic_load_explicit(&fetched, memory_order_acquire))
		return;
	pthread_mutex_lock(&fetch_lock);
	if (!atomic_load(&fetched)) {
		fetch_all();
		atomic_store_explicit(&fetched, 1, memory_order_release);
	}
	pthread_mutex_unlock(&fetch_lock);
}

void
ev_mech_fini(void)
{
	size_t i;

	pthread_mutex_lock(&fetch_lock);
	if (atomic_load(&fetched)) {
		for (i = 0; i < EV_ARRAY_SIZE(mds); i++) {
			EVP_MD_free(mds[i].md);
			mds[i].md = NULL;
		}
		for (i = 0; i < EV_ARRAY_SIZE(ciphers); i++) {
			EVP_CIPHER_free(ciphers[i].cipher);
			ciphers[i].cipher = NULL;
		}
		EVP_MAC_free(hmac);
		hmac = NULL;
		atomic_store(&fetched, 0);
	}
	pthread_mutex_unlock(&fetch_lock);
}

const EVP_MD *
ev_md_get(CK_MECHANISM_TYPE hash)
{
	size_t i;

	fetch();
	for (i = 0; i < EV_ARRAY_SIZE(mds); i++)
		if (mds[i].ckm == hash)
			return mds[i].md;
	return NULL;
}

const EVP_MD *
ev_md_for_mgf(CK_RSA_PKCS_MGF_TYPE mgf)
{
	size_t i;

	fetch();
	for (i = 0; i < EV_ARRAY_SIZE(mds); i++)
		if (mds[i].mgf == mgf)
			return mds[i].md;
	return NULL;
}

const EVP_CIPHER *
ev_cipher_get(int variant, size_t keylen)
{
	size_t i;

	/* CBC with padding is the same cipher; KEY_WRAP_PAD pads, then wraps. */
	if (variant == EV_AES_CBC_PAD)
		variant = EV_AES_CBC;
	else if (variant == EV_AES_KW_PAD)
		variant = EV_AES_KW;
	fetch();
	for (i = 0; i < EV_ARRAY_SIZE(ciphers); i++)
		if (ciphers[i].variant == variant && ciphers[i].keylen == keylen)
			return ciphers[i].cipher;
	return NULL;
}

EVP_MAC *
ev_hmac_get(void)
{
	fetch();
	return hmac;
}

/* Operations */

static CK_FLAGS
kind_flag(ev_op_kind kind)
{
	switch (kind) {
	case EV_OP_ENCRYPT:
		return CKF_ENCRYPT;
	case EV_OP_DECRYPT:
		return CKF_DECRYPT;
	case EV_OP_SIGN:
		return CKF_SIGN;
	case EV_OP_VERIFY:
		return CKF_VERIFY;
	case EV_OP_DIGEST:
		return CKF_DIGEST;
	}
	return 0;
}

static int
kind_has_output(ev_op_kind kind)
{
	return kind == EV_OP_ENCRYPT || kind == EV_OP_DECRYPT;
}

/* Whether the key's class fits the kind: private halves sign and decrypt. */
static CK_RV
class_ok(ev_op_kind kind, const ev_key *key)
{
	if (key->cls == CKO_SECRET_KEY)
		return key->secret != NULL ? CKR_OK : CKR_KEY_TYPE_INCONSISTENT;
	if (key->pkey == NULL)
		return CKR_KEY_TYPE_INCONSISTENT;
	if ((kind == EV_OP_SIGN || kind == EV_OP_DECRYPT) && key->cls != CKO_PRIVATE_KEY)
		return CKR_KEY_TYPE_INCONSISTENT;
	return CKR_OK;
}

CK_RV
ev_op_start(ev_op_kind kind, CK_FLAGS need, const CK_MECHANISM *mech, const ev_key *key,
	    ev_op **out)
{
	const ev_mech *m;
	ev_op *op = NULL;
	CK_RV rv;

	*out = NULL;
	if (mech == NULL)
		return CKR_ARGUMENTS_BAD;
	m = ev_mech_find(mech->mechanism);
	if (m == NULL || m->ops == NULL || !ev_mech_can(m, need))
		return CKR_MECHANISM_INVALID;
	if (kind == EV_OP_DIGEST) {
		key = NULL;
	} else {
		if (key == NULL)
			return CKR_ARGUMENTS_BAD;
		rv = ev_mech_key_ok(m, key);
		if (rv != CKR_OK)
			return rv;
		rv = class_ok(kind, key);
		if (rv != CKR_OK)
			return rv;
	}
	op = calloc(1, sizeof(*op));
	if (op == NULL)
		return CKR_HOST_MEMORY;
	op->kind = kind;
	op->mech = m;
	op->key = key;
	rv = m->ops->init(op, mech);
	if (rv != CKR_OK)
		goto out;
	op->active = 1;
	*out = op;
	op = NULL; /* transferred */
out:
	ev_op_free(op);
	return rv;
}

CK_RV
ev_op_new(ev_op_kind kind, const CK_MECHANISM *mech, const ev_key *key, ev_op **out)
{
	if (out == NULL)
		return CKR_ARGUMENTS_BAD;
	return ev_op_start(kind, kind_flag(kind), mech, key, out);
}

int
ev_op_active(const ev_op *op)
{
	return op != NULL && op->active;
}

int
ev_op_in_multipart(const ev_op *op)
{
	return op != NULL && op->multipart;
}

CK_RV
ev_op_buffer(ev_op *op, const CK_BYTE *in, CK_ULONG inlen)
{
	unsigned char *nbuf;
	size_t ncap;

	if (inlen == 0)
		return CKR_OK;
	if (inlen > EV_OP_BUFFER_MAX - op->buflen)
		return CKR_DATA_LEN_RANGE;
	if (op->buflen + inlen > op->bufcap) {
		ncap = op->bufcap ? op->bufcap : 256;
		while (ncap < op->buflen + inlen)
			ncap *= 2;
		/* Not realloc: the old copy may be plaintext and must be wiped. */
		nbuf = malloc(ncap);
		if (nbuf == NULL)
			return CKR_HOST_MEMORY;
		if (op->buflen > 0)
			memcpy(nbuf, op->buf, op->buflen);
		if (op->buf != NULL) {
			OPENSSL_cleanse(op->buf, op->bufcap);
			free(op->buf);
		}
		op->buf = nbuf;
		op->bufcap = ncap;
	}
	memcpy(op->buf + op->buflen, in, inlen);
	op->buflen += inlen;
	return CKR_OK;
}

CK_RV
ev_op_digest_sign_init(ev_op *op, const EVP_MD *md, EVP_PKEY *pkey, EVP_PKEY_CTX **pctx)
{
	int ok;

	if (op->kind == EV_OP_SIGN)
		ok = EVP_DigestSignInit(op->mdctx, pctx, md, NULL, pkey);
	else
		ok = EVP_DigestVerifyInit(op->mdctx, pctx, md, NULL, pkey);
	return ok > 0 ? CKR_OK : CKR_FUNCTION_FAILED;
}

static void
op_end(ev_op *op)
{
	op->active = 0;
}

/* Hand out a result computed earlier for a too-small buffer. */
static CK_RV
deliver_held(ev_op *op, CK_BYTE *out, CK_ULONG *outlen)
{
	if (out == NULL) {
		*outlen = op->heldlen;
		return CKR_OK;
	}
	if (*outlen < op->heldlen) {
		*outlen = op->heldlen;
		return CKR_BUFFER_TOO_SMALL;
	}
	if (op->heldlen > 0)
		memcpy(out, op->held->data, op->heldlen);
	*outlen = op->heldlen;
	ev_secret_free(op->held);
	op->held = NULL;
	op_end(op);
	return CKR_OK;
}

static CK_RV
out_len(const ev_op *op, ev_stage stage, CK_ULONG inlen, CK_ULONG *len, int *exact)
{
	*exact = 1;
	if (op->mech->ops->out_len != NULL)
		return op->mech->ops->out_len(op, stage, inlen, len, exact);
	*len = stage == EV_STAGE_UPDATE ? 0 : op->outsize;
	return CKR_OK;
}

/*
 * The ending call (single-part or final) under the conventions: a length
 * query, a too-small buffer with an exact size, or a result computed into
 * the operation when only an upper bound was known.
 */
static CK_RV
finish(ev_op *op, int oneshot, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	const ev_mech_ops *ops = op->mech->ops;
	CK_ULONG need, n;
	int exact;
	CK_RV rv;

	if (op->held != NULL)
		return deliver_held(op, out, outlen);
	if (in == NULL)
		in = empty;
	rv = out_len(op, oneshot ? EV_STAGE_ONESHOT : EV_STAGE_FINAL, inlen, &need, &exact);
	if (rv != CKR_OK)
		goto out;
	if (out == NULL) {
		*outlen = need;
		return CKR_OK;
	}
	if (*outlen < need && exact) {
		*outlen = need;
		return CKR_BUFFER_TOO_SMALL;
	}
	if (*outlen >= need) {
		rv = oneshot ? ops->oneshot(op, in, inlen, out, outlen)
			     : ops->final(op, out, outlen);
		goto out;
	}
	/* Only a bound is known and the buffer is below it: compute, then see. */
	op->held = ev_secret_new(need);
	if (op->held == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	n = need;
	rv = oneshot ? ops->oneshot(op, in, inlen, op->held->data, &n)
		     : ops->final(op, op->held->data, &n);
	if (rv != CKR_OK)
		goto out;
	op->heldlen = n;
	return deliver_held(op, out, outlen);
out:
	op_end(op);
	return rv;
}

CK_RV
ev_op_oneshot(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	if (op == NULL || !op->active)
		return CKR_OPERATION_NOT_INITIALIZED;
	if (op->kind == EV_OP_VERIFY)
		return CKR_OPERATION_NOT_INITIALIZED;
	if (outlen == NULL || (in == NULL && inlen != 0)) {
		op_end(op);
		return CKR_ARGUMENTS_BAD;
	}
	return finish(op, 1, in, inlen, out, outlen);
}

CK_RV
ev_op_update(ev_op *op, const CK_BYTE *in, CK_ULONG inlen, CK_BYTE *out, CK_ULONG *outlen)
{
	const ev_mech_ops *ops;
	CK_ULONG need;
	int exact;
	CK_RV rv;

	if (op == NULL || !op->active)
		return CKR_OPERATION_NOT_INITIALIZED;
	ops = op->mech->ops;
	if ((in == NULL && inlen != 0) || (kind_has_output(op->kind) && outlen == NULL)) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	if (op->buffered || ops->update == NULL) {
		/* Nothing comes out before the end; a length query takes no input. */
		if (kind_has_output(op->kind) && out == NULL) {
			*outlen = 0;
			return CKR_OK;
		}
		rv = ev_op_buffer(op, in, inlen);
		if (rv != CKR_OK)
			goto out;
		if (outlen != NULL)
			*outlen = 0;
		op->multipart = 1;
		return CKR_OK;
	}
	if (!kind_has_output(op->kind)) {
		rv = ops->update(op, in, inlen, NULL, NULL);
		if (rv != CKR_OK)
			goto out;
		op->multipart = 1;
		op->total += inlen;
		return CKR_OK;
	}
	/* Update sizes are exact: OpenSSL's buffering is known to the family. */
	rv = out_len(op, EV_STAGE_UPDATE, inlen, &need, &exact);
	if (rv != CKR_OK)
		goto out;
	if (out == NULL) {
		*outlen = need;
		return CKR_OK;
	}
	if (*outlen < need) {
		*outlen = need;
		return CKR_BUFFER_TOO_SMALL;
	}
	rv = ops->update(op, in, inlen, out, outlen);
	if (rv != CKR_OK)
		goto out;
	op->multipart = 1;
	op->total += inlen;
	return CKR_OK;
out:
	op_end(op);
	return rv;
}

CK_RV
ev_op_digest_key(ev_op *op, const ev_key *key)
{
	if (op == NULL || !op->active || op->kind != EV_OP_DIGEST)
		return CKR_OPERATION_NOT_INITIALIZED;
	if (key == NULL || key->cls != CKO_SECRET_KEY || key->secret == NULL) {
		op_end(op);
		return CKR_KEY_INDIGESTIBLE;
	}
	return ev_op_update(op, key->secret->data, key->secret->len, NULL, NULL);
}

CK_RV
ev_op_final(ev_op *op, CK_BYTE *out, CK_ULONG *outlen)
{
	if (op == NULL || !op->active || op->kind == EV_OP_VERIFY)
		return CKR_OPERATION_NOT_INITIALIZED;
	if (outlen == NULL) {
		op_end(op);
		return CKR_ARGUMENTS_BAD;
	}
	if (op->buffered || op->mech->ops->update == NULL)
		return finish(op, 1, op->buf, op->buflen, out, outlen);
	return finish(op, 0, NULL, 0, out, outlen);
}

CK_RV
ev_op_verify(ev_op *op, const CK_BYTE *data, CK_ULONG len, const CK_BYTE *sig, CK_ULONG siglen)
{
	CK_RV rv;

	if (op == NULL || !op->active || op->kind != EV_OP_VERIFY)
		return CKR_OPERATION_NOT_INITIALIZED;
	if ((data == NULL && len != 0) || (sig == NULL && siglen != 0))
		rv = CKR_ARGUMENTS_BAD;
	else
		rv = op->mech->ops->verify(op, data != NULL ? data : empty, len,
					   sig != NULL ? sig : empty, siglen);
	op_end(op);
	return rv;
}

CK_RV
ev_op_verify_final(ev_op *op, const CK_BYTE *sig, CK_ULONG siglen)
{
	CK_RV rv;

	if (op == NULL || !op->active || op->kind != EV_OP_VERIFY)
		return CKR_OPERATION_NOT_INITIALIZED;
	if (sig == NULL && siglen != 0)
		rv = CKR_ARGUMENTS_BAD;
	else if (op->buffered || op->mech->ops->update == NULL)
		rv = op->mech->ops->verify(op, op->buf != NULL ? op->buf : empty, op->buflen,
					   sig != NULL ? sig : empty, siglen);
	else
		rv = op->mech->ops->verify_final(op, sig != NULL ? sig : empty, siglen);
	op_end(op);
	return rv;
}

int
ev_op_park(ev_op *op)
{
	if (op == NULL || op->active || op->key == NULL || op->mech->ops->reinit == NULL)
		return 0;
	if (op->mech->ops->reusable != NULL && !op->mech->ops->reusable(op))
		return 0;
	if (op->buf != NULL)
		OPENSSL_cleanse(op->buf, op->buflen);
	op->buflen = 0;
	ev_secret_free(op->held);
	op->held = NULL;
	op->heldlen = 0;
	return 1;
}

CK_RV
ev_op_reuse(ev_op *op, ev_op_kind kind, const CK_MECHANISM *mech, const ev_key *key)
{
	CK_RV rv;

	if (op == NULL || mech == NULL || op->active || op->kind != kind || op->key != key ||
	    key == NULL || op->mech->type != mech->mechanism || op->mech->ops->reinit == NULL)
		return CKR_OPERATION_NOT_INITIALIZED;
	/* ev_op_park() emptied buf and held; the rest is per operation. */
	op->multipart = 0;
	op->total = 0;
	rv = op->mech->ops->reinit(op, mech);
	if (rv != CKR_OK)
		return rv;
	op->active = 1;
	return CKR_OK;
}

void
ev_op_free(ev_op *op)
{
	if (op == NULL)
		return;
	EVP_MD_CTX_free(op->mdctx);
	EVP_PKEY_CTX_free(op->pctx);
	EVP_CIPHER_CTX_free(op->cctx);
	EVP_MAC_CTX_free(op->macctx);
	if (op->buf != NULL) {
		OPENSSL_cleanse(op->buf, op->bufcap);
		free(op->buf);
	}
	ev_secret_free(op->held);
	free(op);
}
