/*
 * The key hierarchy (keyring.h, doc/key-protection.md): zone keys sealed
 * by the root, operational keys wrapped by zone keys.
 *
 * Every associated-data string starts with a fixed context naming its
 * purpose and format version, so a blob of one kind can never be taken
 * for another, and every variable-length field is length-prefixed so two
 * different bindings never encode to the same bytes.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "keyring.h"

#define ZONE_SEAL_CONTEXT "edgevault zone key v1"
#define WRAP_CONTEXT "edgevault wrap v1"
#define DIGEST_CONTEXT "edgevault attr digest v1"
#define SO_AUTH_CONTEXT "edgevault so recovery auth v1"

#define WRAP_NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define WRAP_TAG_LEN crypto_aead_xchacha20poly1305_ietf_ABYTES
#define WRAP_OVERHEAD (1 + WRAP_NONCE_LEN + WRAP_TAG_LEN)

/* context || version || zone id || object id || generation || attr digest */
#define WRAP_AAD_LEN (sizeof(WRAP_CONTEXT) - 1 + 1 + 3 * 8 + EV_ATTR_DIGEST_LEN)

/* Marks an absent attribute in the digest: no real length is this big. */
#define DIGEST_ABSENT UINT64_MAX

/*
 * The attributes bound into a wrapped blob (keyring.h), in ascending type
 * order, which is also the order they are hashed in.
 */
static const CK_ATTRIBUTE_TYPE immutable_types[] = {
    CKA_CLASS,
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_KEY_TYPE,
    CKA_MODULUS,
    CKA_PUBLIC_EXPONENT,
    CKA_VALUE_LEN,
    CKA_LOCAL,
    CKA_NEVER_EXTRACTABLE,
    CKA_ALWAYS_SENSITIVE,
    CKA_KEY_GEN_MECHANISM,
    CKA_EC_PARAMS,
};

static unsigned char *
put_u64(unsigned char *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
	return p + 8;
}

static unsigned char *
put_bytes(unsigned char *p, const void *v, size_t len)
{
	if (len > 0)
		memcpy(p, v, len);
	return p + len;
}

CK_RV
ev_zone_key_new(ev_secret **key)
{
	ev_secret *k;

	if (key == NULL)
		return CKR_ARGUMENTS_BAD;
	*key = NULL;
	if (ev_secmem_init() != 0)
		return CKR_GENERAL_ERROR;
	k = ev_secret_new(EV_ZONE_KEY_LEN);
	if (k == NULL)
		return CKR_HOST_MEMORY;
	randombytes_buf(k->data, k->len);
	*key = k;
	return CKR_OK;
}

/* context || len(device id) (8 bytes BE) || device id || zone id (8 bytes BE) */
static CK_RV
zone_aad(const char *device_id, int64_t zone_id, unsigned char **aad, size_t *len)
{
	size_t dlen = strlen(device_id);
	unsigned char *buf, *p;
	size_t n;

	if (dlen > SIZE_MAX - 64)
		return CKR_ARGUMENTS_BAD;
	n = sizeof(ZONE_SEAL_CONTEXT) - 1 + 8 + dlen + 8;
	buf = malloc(n);
	if (buf == NULL)
		return CKR_HOST_MEMORY;
	p = put_bytes(buf, ZONE_SEAL_CONTEXT, sizeof(ZONE_SEAL_CONTEXT) - 1);
	p = put_u64(p, dlen);
	p = put_bytes(p, device_id, dlen);
	put_u64(p, (uint64_t)zone_id);
	*aad = buf;
	*len = n;
	return CKR_OK;
}

CK_RV
ev_zone_key_seal(ev_root *root, const char *device_id, int64_t zone_id, const ev_secret *key,
		 const ev_seal_opts *opts, unsigned char **blob, size_t *len)
{
	unsigned char *aad = NULL;
	size_t aadlen = 0;
	CK_RV rv;

	if (root == NULL || device_id == NULL || key == NULL || blob == NULL || len == NULL)
		return CKR_ARGUMENTS_BAD;
	*blob = NULL;
	*len = 0;
	if (key->len != EV_ZONE_KEY_LEN)
		return CKR_ARGUMENTS_BAD;
	rv = zone_aad(device_id, zone_id, &aad, &aadlen);
	if (rv != CKR_OK)
		return rv;
	rv = ev_root_seal(root, aad, aadlen, key, opts, blob, len);
	free(aad);
	return rv;
}

CK_RV
ev_zone_key_unseal(ev_root *root, const char *device_id, int64_t zone_id, const unsigned char *blob,
		   size_t len, ev_unseal_opts *opts, ev_secret **key)
{
	unsigned char *aad = NULL;
	ev_secret *k = NULL;
	size_t aadlen = 0;
	CK_RV rv;

	if (key == NULL)
		return CKR_ARGUMENTS_BAD;
	*key = NULL;
	if (root == NULL || device_id == NULL || (blob == NULL && len > 0))
		return CKR_ARGUMENTS_BAD;
	rv = zone_aad(device_id, zone_id, &aad, &aadlen);
	if (rv != CKR_OK)
		return rv;
	rv = ev_root_unseal(root, aad, aadlen, blob, len, opts, &k);
	free(aad);
	if (rv != CKR_OK)
		return rv;
	/* Authentic, yet not a zone key: not something we sealed as one. */
	if (k->len != EV_ZONE_KEY_LEN) {
		ev_secret_free(k);
		return CKR_ENCRYPTED_DATA_INVALID;
	}
	*key = k;
	return CKR_OK;
}

CK_RV
ev_so_auth_derive(const CK_UTF8CHAR *pin, CK_ULONG pinlen, int64_t zone_id, const char *serial,
		  ev_secret **auth)
{
	unsigned char key[crypto_generichash_BYTES], num[8];
	crypto_generichash_state st;
	size_t slen;
	ev_secret *a;
	int r;

	if (auth == NULL)
		return CKR_ARGUMENTS_BAD;
	*auth = NULL;
	if (pin == NULL || serial == NULL || pinlen == 0)
		return CKR_ARGUMENTS_BAD;
	if (ev_secmem_init() != 0)
		return CKR_GENERAL_ERROR;
	a = ev_secret_new(EV_SO_AUTH_LEN);
	if (a == NULL)
		return CKR_HOST_MEMORY;
	slen = strlen(serial);
	/* The salt: this zone, this initialisation of it. */
	r = crypto_generichash_init(&st, NULL, 0, sizeof(key));
	if (r == 0)
		r = crypto_generichash_update(&st, (const unsigned char *)SO_AUTH_CONTEXT,
					      sizeof(SO_AUTH_CONTEXT) - 1);
	put_u64(num, (uint64_t)zone_id);
	if (r == 0)
		r = crypto_generichash_update(&st, num, sizeof(num));
	put_u64(num, slen);
	if (r == 0)
		r = crypto_generichash_update(&st, num, sizeof(num));
	if (r == 0 && slen > 0)
		r = crypto_generichash_update(&st, (const unsigned char *)serial, slen);
	if (r == 0)
		r = crypto_generichash_final(&st, key, sizeof(key));
	if (r == 0)
		r = crypto_generichash(a->data, a->len, pin, pinlen, key, sizeof(key));
	sodium_memzero(&st, sizeof(st));
	sodium_memzero(key, sizeof(key));
	if (r != 0) {
		ev_secret_free(a);
		return CKR_GENERAL_ERROR;
	}
	*auth = a;
	return CKR_OK;
}

static void
wrap_aad(const ev_wrap_binding *b, unsigned char version, unsigned char aad[WRAP_AAD_LEN])
{
	unsigned char *p = aad;

	p = put_bytes(p, WRAP_CONTEXT, sizeof(WRAP_CONTEXT) - 1);
	*p++ = version;
	p = put_u64(p, (uint64_t)b->zone_id);
	p = put_u64(p, (uint64_t)b->object_id);
	p = put_u64(p, (uint64_t)b->generation);
	put_bytes(p, b->attr_digest, EV_ATTR_DIGEST_LEN);
}

/* Feed one attribute: type, then length and value, or the absent marker. */
static int
digest_attr(crypto_generichash_state *st, const ev_attrs *attrs, CK_ATTRIBUTE_TYPE type)
{
	const CK_ATTRIBUTE *a = attrs ? ev_attrs_get(attrs, type) : NULL;
	unsigned char hdr[16];
	unsigned char num[8];
	const void *val;
	uint64_t len;

	put_u64(hdr, type);
	if (a == NULL) {
		put_u64(hdr + 8, DIGEST_ABSENT);
		return crypto_generichash_update(st, hdr, sizeof(hdr));
	}
	val = a->pValue;
	len = a->ulValueLen;
	/*
	 * CK_ULONG values are kept in host order; hash them big-endian so the
	 * digest does not depend on the machine that computed it.
	 */
	if (ev_attr_type_is_ulong(type) && a->ulValueLen == sizeof(CK_ULONG) && a->pValue != NULL) {
		CK_ULONG v;

		memcpy(&v, a->pValue, sizeof(v));
		put_u64(num, (uint64_t)v);
		val = num;
		len = sizeof(num);
	}
	put_u64(hdr + 8, len);
	if (crypto_generichash_update(st, hdr, sizeof(hdr)) != 0)
		return -1;
	if (len == 0 || val == NULL)
		return 0;
	return crypto_generichash_update(st, val, len);
}

void
ev_attr_digest(const ev_attrs *attrs, unsigned char out[EV_ATTR_DIGEST_LEN])
{
	crypto_generichash_state st;
	size_t i;
	int r = 0;

	if (ev_secmem_init() != 0)
		r = -1;
	if (r == 0)
		r = crypto_generichash_init(&st, NULL, 0, EV_ATTR_DIGEST_LEN);
	if (r == 0)
		r = crypto_generichash_update(&st, (const unsigned char *)DIGEST_CONTEXT,
					      sizeof(DIGEST_CONTEXT) - 1);
	for (i = 0; r == 0 && i < EV_ARRAY_SIZE(immutable_types); i++)
		r = digest_attr(&st, attrs, immutable_types[i]);
	if (r == 0)
		r = crypto_generichash_final(&st, out, EV_ATTR_DIGEST_LEN);
	/*
	 * BLAKE2b cannot fail with these parameters. Should it ever, fail
	 * closed: a random digest binds to nothing, so nothing unwraps.
	 */
	if (r != 0)
		randombytes_buf(out, EV_ATTR_DIGEST_LEN);
	sodium_memzero(&st, sizeof(st));
}

CK_RV
ev_wrap(const ev_secret *zone_key, const ev_wrap_binding *b, const ev_secret *plain,
	unsigned char **blob, size_t *len)
{
	unsigned char aad[WRAP_AAD_LEN];
	unsigned char *out, *nonce;
	unsigned long long clen;
	size_t n;

	if (blob == NULL || len == NULL)
		return CKR_ARGUMENTS_BAD;
	*blob = NULL;
	*len = 0;
	if (zone_key == NULL || b == NULL || plain == NULL ||
	    zone_key->len != crypto_aead_xchacha20poly1305_ietf_KEYBYTES)
		return CKR_ARGUMENTS_BAD;
	if (plain->len > crypto_aead_xchacha20poly1305_ietf_MESSAGEBYTES_MAX ||
	    plain->len > SIZE_MAX - WRAP_OVERHEAD)
		return CKR_DATA_LEN_RANGE;
	if (ev_secmem_init() != 0)
		return CKR_GENERAL_ERROR;
	n = WRAP_OVERHEAD + plain->len;
	out = malloc(n);
	if (out == NULL)
		return CKR_HOST_MEMORY;
	out[0] = EV_WRAP_VERSION;
	nonce = out + 1;
	/* 24 random bytes: XChaCha20's nonce is long enough to pick at random. */
	randombytes_buf(nonce, WRAP_NONCE_LEN);
	wrap_aad(b, EV_WRAP_VERSION, aad);
	if (crypto_aead_xchacha20poly1305_ietf_encrypt(out + 1 + WRAP_NONCE_LEN, &clen, plain->data,
						       plain->len, aad, sizeof(aad), NULL, nonce,
						       zone_key->data) != 0 ||
	    clen != plain->len + WRAP_TAG_LEN) {
		free(out);
		return CKR_GENERAL_ERROR;
	}
	*blob = out;
	*len = n;
	return CKR_OK;
}

CK_RV
ev_unwrap(const ev_secret *zone_key, const ev_wrap_binding *b, const unsigned char *blob,
	  size_t len, ev_secret **plain)
{
	unsigned char aad[WRAP_AAD_LEN];
	unsigned long long plen;
	ev_secret *p;

	if (plain == NULL)
		return CKR_ARGUMENTS_BAD;
	*plain = NULL;
	if (zone_key == NULL || b == NULL || (blob == NULL && len > 0) ||
	    zone_key->len != crypto_aead_xchacha20poly1305_ietf_KEYBYTES)
		return CKR_ARGUMENTS_BAD;
	if (len < WRAP_OVERHEAD || blob[0] != EV_WRAP_VERSION)
		return CKR_ENCRYPTED_DATA_INVALID;
	if (ev_secmem_init() != 0)
		return CKR_GENERAL_ERROR;
	p = ev_secret_new(len - WRAP_OVERHEAD);
	if (p == NULL)
		return CKR_HOST_MEMORY;
	wrap_aad(b, blob[0], aad);
	/* Decrypts straight into secure memory; nothing is written on failure. */
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
		p->data, &plen, NULL, blob + 1 + WRAP_NONCE_LEN, len - 1 - WRAP_NONCE_LEN, aad,
		sizeof(aad), blob + 1, zone_key->data) != 0 ||
	    plen != p->len) {
		ev_secret_free(p);
		return CKR_ENCRYPTED_DATA_INVALID;
	}
	*plain = p;
	return CKR_OK;
}
