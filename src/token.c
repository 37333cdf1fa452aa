#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "audit_event.h"
#include "keyring.h"
#include "log.h"
#include "module.h"
#include "object.h"
#include "pin.h"
#include "pkcs11/edgevault.h"
#include "rotate.h"
#include "session.h"
#include "token.h"

void
ev_token_free(ev_token *t)
{
	if (t == NULL)
		return;
	ev_secret_free(t->zone_key);
	ev_secret_free(t->so_auth);
	ev_pin_memo_free(t->user_memo);
	ev_mutex_free(t->lock);
	free(t);
}

/* Forget the user PIN's memo (wiped). Caller holds ev_mod->store_lock. */
static void
memo_drop_locked(ev_token *t)
{
	ev_pin_memo_free(t->user_memo);
	t->user_memo = NULL;
}

/* The same, taking ev_mod->store_lock. */
static void
memo_drop(ev_token *t)
{
	if (ev_mutex_lock(ev_mod->store_lock) != CKR_OK) {
		/* Never left behind: without the lock it goes all the same (a
		 * failed lock means a broken mutex, not a concurrent user). */
		ev_error("zone %lld: PIN memo dropped without the store lock", (long long)t->id);
		memo_drop_locked(t);
		return;
	}
	memo_drop_locked(t);
	ev_mutex_unlock(ev_mod->store_lock);
}

/* Zone ids and the free slot's id, read under the store lock. */
static CK_RV
read_slots(int64_t **ids, size_t *n, int64_t *free_id)
{
	CK_RV rv;

	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		return rv;
	rv = ev_store_zone_list(ev_mod->store, ids, n);
	if (rv == CKR_OK)
		rv = ev_store_zone_next_id(ev_mod->store, free_id);
	ev_mutex_unlock(ev_mod->store_lock);
	if (rv != CKR_OK) {
		free(*ids);
		*ids = NULL;
	}
	return rv;
}

/*
 * Whether a token is in a slot: a zone's until it is revoked, the free
 * slot's until the device is. Reads the store (not the hot path).
 */
static CK_RV
slot_has_token(CK_SLOT_ID slot, int is_free, int *present)
{
	ev_zone_rec z = { 0 };
	int64_t when = 0;
	CK_RV rv;

	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		return rv;
	if (is_free) {
		rv = ev_store_meta_get_int(ev_mod->store, EV_META_DEVICE_REVOKED, &when);
		if (rv == EVR_NOT_FOUND) {
			when = 0;
			rv = CKR_OK;
		}
	} else {
		rv = ev_store_zone_get(ev_mod->store, (int64_t)slot, &z);
		when = z.revoked;
		ev_zone_rec_clear(&z);
	}
	ev_mutex_unlock(ev_mod->store_lock);
	if (rv == EVR_NOT_FOUND)
		return CKR_SLOT_ID_INVALID;
	*present = when == 0;
	return rv;
}

CK_RV
ev_slot_list(CK_BBOOL token_present, CK_SLOT_ID *list, CK_ULONG *count)
{
	int64_t *ids = NULL, *all, free_id;
	size_t n = 0, i;
	CK_ULONG need;
	CK_RV rv;

	/* What the store says and what this process has acted on agree. */
	rv = ev_sync();
	if (rv != CKR_OK)
		return rv;
	rv = read_slots(&ids, &n, &free_id);
	if (rv != CKR_OK)
		return rv;
	/* With token_present, revoked zones (and after a device revocation the free slot) drop out. */
	all = realloc(ids, (n + 1) * sizeof(*ids));
	if (all == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	ids = all;
	ids[n++] = free_id;
	for (i = 0, need = 0; i < n; i++) {
		int present = 1;

		if (token_present) {
			rv = slot_has_token((CK_SLOT_ID)ids[i], i == n - 1, &present);
			if (rv != CKR_OK)
				goto out;
		}
		if (present)
			ids[need++] = ids[i];
	}
	if (list == NULL) {
		*count = need;
		goto out;
	}
	if (*count < need) {
		*count = need;
		rv = CKR_BUFFER_TOO_SMALL;
		goto out;
	}
	for (i = 0; i < need; i++)
		list[i] = (CK_SLOT_ID)ids[i];
	*count = need;
out:
	free(ids);
	return rv;
}

static CK_RV
slot_exists(CK_SLOT_ID slot, int *is_free, int *present)
{
	int64_t *ids = NULL, free_id;
	size_t n = 0, i;
	CK_RV rv;

	rv = read_slots(&ids, &n, &free_id);
	if (rv != CKR_OK)
		return rv;
	rv = CKR_SLOT_ID_INVALID;
	if ((int64_t)slot == free_id) {
		*is_free = 1;
		rv = CKR_OK;
	}
	for (i = 0; i < n && rv != CKR_OK; i++) {
		if ((int64_t)slot == ids[i]) {
			*is_free = 0;
			rv = CKR_OK;
		}
	}
	free(ids);
	if (rv == CKR_OK && present != NULL)
		rv = slot_has_token(slot, *is_free, present);
	return rv;
}

CK_RV
ev_slot_is_free(CK_SLOT_ID slot, int *is_free)
{
	int present;
	CK_RV rv;

	rv = slot_exists(slot, is_free, &present);
	if (rv == CKR_OK && !present)
		rv = CKR_TOKEN_NOT_PRESENT;
	return rv;
}

CK_RV
ev_slot_info(CK_SLOT_ID slot, CK_SLOT_INFO *info)
{
	int is_free, present;
	char desc[64];
	CK_RV rv;

	/* What the store says and what this process has acted on agree. */
	rv = ev_sync();
	if (rv != CKR_OK)
		return rv;
	rv = slot_exists(slot, &is_free, &present);
	if (rv != CKR_OK)
		return rv;
	memset(info, 0, sizeof(*info));
	if (is_free)
		snprintf(desc, sizeof(desc), "edgevault free slot");
	else
		snprintf(desc, sizeof(desc), "edgevault zone %lu", (unsigned long)slot);
	ev_padded_copy(info->slotDescription, sizeof(info->slotDescription), desc);
	ev_padded_copy(info->manufacturerID, sizeof(info->manufacturerID), EDGEVAULT_MANUFACTURER);
	/* A zone's token leaves its slot when the zone is revoked. */
	info->flags = CKF_REMOVABLE_DEVICE | (present ? CKF_TOKEN_PRESENT : 0);
	info->hardwareVersion.major = 0;
	info->hardwareVersion.minor = 1;
	info->firmwareVersion.major = 0;
	info->firmwareVersion.minor = 1;
	return CKR_OK;
}

CK_RV
ev_token_get(CK_SLOT_ID slot, ev_token **out)
{
	ev_token *t;
	int is_free, present;
	CK_RV rv;

	rv = ev_rwlock_rdlock(ev_mod->lock);
	if (rv != CKR_OK)
		return rv;
	t = ev_map_get(&ev_mod->tokens, slot);
	ev_rwlock_unlock(ev_mod->lock);
	if (t != NULL) {
		if (atomic_load(&t->revoked))
			return CKR_TOKEN_NOT_PRESENT;
		*out = t;
		return CKR_OK;
	}
	rv = slot_exists(slot, &is_free, &present);
	if (rv != CKR_OK)
		return rv;
	if (!present)
		return CKR_TOKEN_NOT_PRESENT;
	if (is_free)
		return CKR_TOKEN_NOT_RECOGNIZED;

	rv = ev_rwlock_wrlock(ev_mod->lock);
	if (rv != CKR_OK)
		return rv;
	/* Another thread may have loaded it meanwhile. */
	t = ev_map_get(&ev_mod->tokens, slot);
	if (t == NULL) {
		t = calloc(1, sizeof(*t));
		if (t == NULL) {
			rv = CKR_HOST_MEMORY;
			goto out;
		}
		t->id = (int64_t)slot;
		t->login = EV_NOBODY;
		t->gated = ev_config_policy(ev_mod->cfg, t->id)->require_attestation;
		atomic_init(&t->attested_until, 0);
		t->lock = ev_mutex_new();
		if (t->lock == NULL) {
			free(t);
			rv = CKR_CANT_LOCK;
			goto out;
		}
		rv = ev_map_put(&ev_mod->tokens, slot, t);
		if (rv != CKR_OK) {
			ev_token_free(t);
			goto out;
		}
	}
	*out = t;
out:
	ev_rwlock_unlock(ev_mod->lock);
	return rv;
}

/* The PIN flags PKCS#11 reports for a failure count. */
static CK_FLAGS
pin_flags(unsigned fails, unsigned max, CK_FLAGS low, CK_FLAGS final, CK_FLAGS locked)
{
	if (fails >= max)
		return locked;
	if (fails + 1 == max)
		return final | low;
	if (fails > 0)
		return low;
	return 0;
}

CK_RV
ev_token_info(CK_SLOT_ID slot, CK_TOKEN_INFO *info)
{
	ev_zone_rec z = { 0 };
	unsigned max = ev_mod->cfg->pin_max_fails;
	CK_ULONG count = 0;
	ev_token *t = NULL;
	int is_free, present;
	CK_RV rv;

	/* What the store says and what this process has acted on agree. */
	rv = ev_sync();
	if (rv != CKR_OK)
		return rv;
	rv = slot_exists(slot, &is_free, &present);
	if (rv != CKR_OK)
		return rv;
	if (!present)
		return CKR_TOKEN_NOT_PRESENT;
	memset(info, 0, sizeof(*info));
	ev_padded_copy(info->manufacturerID, sizeof(info->manufacturerID), EDGEVAULT_MANUFACTURER);
	ev_padded_copy(info->model, sizeof(info->model), "zone");
	info->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
	info->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
	info->ulMaxPinLen = EV_PIN_MAX_LEN;
	info->ulMinPinLen = EV_PIN_MIN_LEN;
	info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
	info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
	info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
	info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
	info->hardwareVersion.minor = 1;
	info->firmwareVersion.minor = 1;
	memset(info->utcTime, ' ', sizeof(info->utcTime));
	info->flags = CKF_RNG | CKF_LOGIN_REQUIRED;
	if (is_free) {
		ev_padded_copy(info->label, sizeof(info->label), "");
		ev_padded_copy(info->serialNumber, sizeof(info->serialNumber), "");
		return CKR_OK;
	}
	rv = ev_token_get(slot, &t);
	if (rv != CKR_OK)
		return rv;
	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		return rv;
	rv = ev_store_zone_get(ev_mod->store, t->id, &z);
	if (rv == CKR_OK)
		rv = ev_store_obj_count(ev_mod->store, t->id, 1, &count);
	ev_mutex_unlock(ev_mod->store_lock);
	if (rv == EVR_NOT_FOUND)
		rv = CKR_TOKEN_NOT_PRESENT;
	if (rv != CKR_OK)
		goto out;
	memcpy(info->label, z.label, sizeof(info->label));
	ev_padded_copy(info->serialNumber, sizeof(info->serialNumber), z.serial);
	info->flags |= CKF_TOKEN_INITIALIZED;
	if (z.user_pin != NULL)
		info->flags |= CKF_USER_PIN_INITIALIZED;
	info->flags |= pin_flags(z.user_fails, max, CKF_USER_PIN_COUNT_LOW, CKF_USER_PIN_FINAL_TRY,
	    CKF_USER_PIN_LOCKED);
	info->flags |= pin_flags(z.so_fails, max, CKF_SO_PIN_COUNT_LOW, CKF_SO_PIN_FINAL_TRY,
	    CKF_SO_PIN_LOCKED);
	if (ev_rwlock_rdlock(ev_mod->lock) == CKR_OK) {
		info->ulSessionCount = t->sessions;
		info->ulRwSessionCount = t->rw_sessions;
		ev_rwlock_unlock(ev_mod->lock);
	}
out:
	ev_zone_rec_clear(&z);
	return rv;
}

CK_RV
ev_token_seal_key(int64_t zone, const ev_secret *key, const ev_secret *so_auth,
		  unsigned char **sealed, size_t *len, unsigned char **so_sealed, size_t *so_len)
{
	ev_seal_opts bound = {0}, copy = {0};
	ev_root *root;
	CK_RV rv;

	*sealed = NULL;
	*so_sealed = NULL;
	*len = 0;
	*so_len = 0;
	bound.pcrs = ev_config_policy(ev_mod->cfg, zone)->pcrs;
	copy.auth = so_auth;
	/* Bound to PCRs, the key needs a way back for when they change: the SO's copy. */
	if (bound.pcrs != 0 && so_auth == NULL)
		return CKR_USER_NOT_LOGGED_IN;
	rv = ev_module_root(&root);
	if (rv == CKR_OK)
		rv = ev_zone_key_seal(root, ev_mod->cfg->device_id, zone, key, &bound, sealed, len);
	if (rv == CKR_OK && bound.pcrs != 0)
		rv = ev_zone_key_seal(root, ev_mod->cfg->device_id, zone, key, &copy, so_sealed,
				      so_len);
	if (rv == CKR_OK)
		ev_module_root_record(root);
	if (rv != CKR_OK) {
		free(*sealed);
		*sealed = NULL;
		*len = 0;
	}
	return rv;
}

/*
 * A new zone's record: SO PIN hash, serial, and a fresh zone key sealed by
 * the root (as the zone's policy says: see ev_token_seal_key(); the SO's
 * copy under the auth value of pin). Slow (Argon2, an upstream call), so
 * it is made before the store's write transaction begins. Labels are the
 * 32 blank-padded bytes. Caller holds ev_mod->store_lock (the root is
 * used under it).
 */
static CK_RV
make_zone(int64_t id, char *so_hash, const CK_UTF8CHAR *pin, CK_ULONG pinlen,
	  const CK_UTF8CHAR *label, ev_zone_rec *z)
{
	ev_secret *zk = NULL, *auth = NULL;
	unsigned char serial[8];
	CK_RV rv;

	z->id = id;
	memcpy(z->label, label, sizeof(z->label));
	randombytes_buf(serial, sizeof(serial));
	sodium_bin2hex(z->serial, sizeof(z->serial), serial, sizeof(serial));
	z->created = (int64_t)time(NULL);
	z->so_pin = so_hash;
	rv = ev_zone_key_new(&zk);
	if (rv == CKR_OK)
		rv = ev_so_auth_derive(pin, pinlen, id, z->serial, &auth);
	if (rv == CKR_OK)
		rv = ev_token_seal_key(id, zk, auth, &z->sealed, &z->sealed_len, &z->so_sealed,
				       &z->so_sealed_len);
	ev_secret_free(auth);
	ev_secret_free(zk);
	return rv;
}

/*
 * Re-initialising a zone: no session of this process may be open, none
 * may open until it is done, and no other C_InitToken may run on it.
 */
static CK_RV
reinit_begin(ev_token *t)
{
	CK_RV rv;

	rv = ev_rwlock_wrlock(ev_mod->lock);
	if (rv != CKR_OK)
		return rv;
	if (t->sessions > 0)
		rv = CKR_SESSION_EXISTS;
	else if (t->reinit)
		rv = CKR_FUNCTION_FAILED; /* another thread is re-initialising it */
	else
		t->reinit = 1;
	ev_rwlock_unlock(ev_mod->lock);
	return rv;
}

/* Nothing of the old zone may survive in this process: key, login, objects. */
static void
reinit_end(ev_token *t, int done)
{
	if (done && ev_mutex_lock(t->lock) == CKR_OK) {
		ev_token_forget_key(t);
		ev_token_forget_so(t);
		t->login = EV_NOBODY;
		ev_object_forget_token(t);
		ev_mutex_unlock(t->lock);
		memo_drop(t);
	}
	if (ev_rwlock_wrlock(ev_mod->lock) == CKR_OK) {
		t->reinit = 0;
		ev_rwlock_unlock(ev_mod->lock);
	}
}

/*
 * Inside the write transaction: CKR_TOKEN_NOT_PRESENT when the zone (or,
 * for the free slot, the device) has been revoked.
 */
static CK_RV
still_present(CK_SLOT_ID slot, int is_free)
{
	ev_zone_rec z = { 0 };
	int64_t when = 0;
	CK_RV rv;

	if (is_free) {
		rv = ev_store_meta_get_int(ev_mod->store, EV_META_DEVICE_REVOKED, &when);
		if (rv == EVR_NOT_FOUND)
			return CKR_OK;
	} else {
		rv = ev_store_zone_get(ev_mod->store, (int64_t)slot, &z);
		when = z.revoked;
		ev_zone_rec_clear(&z);
	}
	if (rv == CKR_OK && when != 0)
		rv = CKR_TOKEN_NOT_PRESENT;
	return rv;
}

/*
 * Replace (or, on the free slot, create) the zone in one transaction. The
 * slow work comes first, so other processes' writers never wait on it.
 */
static CK_RV
store_zone(CK_SLOT_ID slot, int replace, const CK_UTF8CHAR *pin, CK_ULONG pinlen,
    const CK_UTF8CHAR *label)
{
	ev_zone_rec z = { 0 };
	char *so_hash = NULL;
	CK_RV rv;

	rv = ev_pin_hash(pin, pinlen, ev_mod->cfg->argon2_ops, ev_mod->cfg->argon2_mem, &so_hash);
	if (rv != CKR_OK)
		return rv;
	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK) {
		free(so_hash);
		return rv;
	}
	rv = make_zone((int64_t)slot, so_hash, pin, pinlen, label, &z);
	so_hash = NULL; /* transferred to z */
	if (rv != CKR_OK)
		goto out;
	rv = ev_store_begin(ev_mod->store);
	if (rv != CKR_OK)
		goto out;
	/* Revoked while the PIN was being hashed: no new zone in its place. */
	if (rv == CKR_OK)
		rv = still_present(slot, !replace);
	if (rv == CKR_OK && replace)
		rv = ev_store_zone_delete(ev_mod->store, (int64_t)slot);
	if (rv == CKR_OK)
		rv = ev_store_zone_insert(ev_mod->store, &z);
	if (rv == CKR_OK)
		rv = ev_store_change_add(ev_mod->store,
		    replace ? EV_CHANGE_ZONE_REINIT : EV_CHANGE_ZONE_CREATED, (int64_t)slot, 0);
	if (rv == CKR_OK)
		rv = ev_store_commit(ev_mod->store);
	if (rv != CKR_OK)
		(void)ev_store_rollback(ev_mod->store);
out:
	ev_mutex_unlock(ev_mod->store_lock);
	if (rv == CKR_OK)
		ev_events_announce();
	ev_zone_rec_clear(&z);
	if (rv == EVR_NOT_FOUND)
		rv = CKR_TOKEN_NOT_PRESENT; /* removed by another process meanwhile */
	return rv;
}

/* A token label for the audit: blanks cut off the end; "hex:..." unless printable UTF-8. */
static const char *
label_text(const CK_UTF8CHAR label[32], char out[2 * 32 + 5])
{
	size_t n = 32;

	while (n > 0 && label[n - 1] == ' ')
		n--;
	if (ev_utf8_valid(label, n, EV_UTF8_PRINTABLE)) {
		memcpy(out, label, n);
		out[n] = '\0';
	} else {
		memcpy(out, "hex:", 4);
		sodium_bin2hex(out + 4, 2 * 32 + 1, label, n);
	}
	return out;
}

/*
 * The audit of a C_InitToken that got as far as the SO PIN or the store:
 * the zone created or re-initialised and its SO PIN set, or the refusal.
 */
static void
audit_init(CK_SLOT_ID slot, int replace, const CK_UTF8CHAR *label, CK_RV rv)
{
	const char *kind = replace ? EV_AUDIT_ZONE_REINITIALISED : EV_AUDIT_ZONE_CREATED;
	char text[2 * 32 + 5];
	ev_audit_detail zd[] = { { "label", label_text(label, text), 0 } };
	ev_audit_detail pd[] = { { "pin", "so", 0 }, { "method", "init_token", 0 } };

	if (rv != CKR_OK) {
		ev_audit_note(kind, ev_audit_outcome_of(rv), (int64_t)slot, CKU_SO, NULL,
			      ev_audit_reason(rv), zd, EV_ARRAY_SIZE(zd));
		return;
	}
	ev_audit_hold();
	ev_audit_note(kind, EV_AUDIT_OK, (int64_t)slot, CKU_SO, NULL, NULL, zd, EV_ARRAY_SIZE(zd));
	ev_audit_note(EV_AUDIT_PIN_SET, EV_AUDIT_OK, (int64_t)slot, CKU_SO, NULL, NULL, pd,
		      EV_ARRAY_SIZE(pd));
	ev_audit_release();
}

CK_RV
ev_token_init(CK_SLOT_ID slot, const CK_UTF8CHAR *pin, CK_ULONG pinlen, const CK_UTF8CHAR *label)
{
	ev_token *t = NULL;
	int is_free, present;
	CK_RV rv;

	rv = slot_exists(slot, &is_free, &present);
	if (rv != CKR_OK)
		return rv;
	if (!present)
		return CKR_TOKEN_NOT_PRESENT;
	if (pinlen < EV_PIN_MIN_LEN || pinlen > EV_PIN_MAX_LEN)
		return CKR_PIN_LEN_RANGE;
	if (is_free) {
		rv = store_zone(slot, 0, pin, pinlen, label);
		audit_init(slot, 0, label, rv);
		return rv;
	}
	/*
	 * Re-initialising a zone: the SO proves who they are, the zone's
	 * objects go, and the zone starts again with a new key.
	 */
	rv = ev_token_get(slot, &t);
	if (rv != CKR_OK)
		return rv;
	rv = reinit_begin(t);
	if (rv != CKR_OK)
		return rv;
	rv = ev_token_check_pin(t, CKU_SO, pin, pinlen);
	if (rv == CKR_OK)
		rv = store_zone(slot, 1, pin, pinlen, label);
	reinit_end(t, rv == CKR_OK);
	audit_init(slot, 1, label, rv);
	return rv;
}

/* A zone's record, read under the store lock (taken here). */
static CK_RV
zone_read(int64_t id, ev_zone_rec *z)
{
	CK_RV rv;

	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		return rv;
	rv = ev_store_zone_get(ev_mod->store, id, z);
	ev_mutex_unlock(ev_mod->store_lock);
	return rv;
}

/* What identifies an SO PIN hash: BLAKE2b-256 of its string (all zero for none). */
static void
pin_hash_digest(const char *hash, unsigned char digest[32])
{
	memset(digest, 0, 32);
	if (hash != NULL)
		crypto_generichash(digest, 32, (const unsigned char *)hash, strlen(hash), NULL, 0);
}

static void
audit_locked(int64_t zone, CK_USER_TYPE who, unsigned fails)
{
	ev_audit_detail d[] = { { "fails", NULL, (int64_t)fails } };

	ev_audit_note(EV_AUDIT_PIN_LOCKED, EV_AUDIT_REFUSED, zone, who, NULL, "too many failed logins", d,
		      EV_ARRAY_SIZE(d));
}

/*
 * ev_token_check_pin(); *digest (may be NULL) identifies the hash checked against.
 *
 * The user PIN's memo (issue 8: C_Login after the first in a process in
 * well under 1 ms). Argon2id is what makes a guessed PIN expensive for
 * whoever holds a copy of the store; once this process has checked a PIN
 * with it, checking the same PIN again proves nothing new, so the memo
 * (src/pin.h: a random key and the keyed BLAKE2b of the stored hash string
 * and the PIN) answers instead, in about a microsecond. The rules:
 *
 * - The zone row is read at every check, as before: the lockout and the
 *   failure counter are the store's (shared by every process, persistent),
 *   and the memo is bound to the hash string read now. A PIN set by
 *   another process (new salt, new string) matches no memo here; the
 *   next login goes through Argon2id against the new hash. Locked out:
 *   refused before the memo is looked at, and the memo is dropped.
 * - The memo only accepts. A PIN it does not match (wrong, or right for a
 *   hash the memo was not made for) goes through Argon2id exactly as
 *   before and counts as before when wrong. Refusing on a mismatch would
 *   answer a guess in microseconds instead of a fifth of a second and
 *   would make the memo, not the stored hash, the judge of what is wrong;
 *   a memo gone stale for whatever reason could then only cost a slow
 *   check, never a false failure counted against the user.
 * - The user's PIN only: the SO logs in rarely, derives its recovery auth
 *   value from the PIN anyway, and a memo of the PIN that can re-initialise
 *   the zone is one more thing to find in memory for little gain.
 * - A success by the memo resets the failure counter like any success.
 */
static CK_RV
check_pin(ev_token *t, CK_USER_TYPE who, const CK_UTF8CHAR *pin, CK_ULONG len,
	  unsigned char *digest)
{
	unsigned max = ev_mod->cfg->pin_max_fails, fails = 0;
	ev_pin_memo *memo = NULL;
	ev_zone_rec z = { 0 }, z2 = { 0 };
	const char *hash = NULL;
	int ok = 0, by_memo = 0;
	CK_RV rv;

	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		return rv;
	rv = ev_store_zone_get(ev_mod->store, t->id, &z);
	if (rv == CKR_OK) {
		hash = who == CKU_SO ? z.so_pin : z.user_pin;
		if (hash == NULL)
			rv = CKR_USER_PIN_NOT_INITIALIZED;
		else if ((who == CKU_SO ? z.so_fails : z.user_fails) >= max)
			rv = CKR_PIN_LOCKED;
	}
	if (rv == CKR_PIN_LOCKED && who == CKU_USER)
		memo_drop_locked(t);
	if (rv == CKR_OK && who == CKU_USER)
		ok = by_memo = ev_pin_memo_match(t->user_memo, hash, pin, len);
	ev_mutex_unlock(ev_mod->store_lock);
	if (digest != NULL)
		pin_hash_digest(hash, digest);
	if (rv != CKR_OK)
		goto out;
	/* The slow hash runs without the store lock, so the store stays usable meanwhile. */
	/* Said in the debug log, so tests can tell which check answered. */
	if (by_memo)
		ev_debug("zone %lld: user PIN accepted by this process's memo", (long long)t->id);
	else {
		ev_debug("zone %lld: %s PIN checked with Argon2id", (long long)t->id,
			 who == CKU_SO ? "SO" : "user");
		ok = len >= EV_PIN_MIN_LEN && len <= EV_PIN_MAX_LEN && ev_pin_verify(hash, pin, len);
		/*
		 * Made before the lock; without locked secure memory to spare,
		 * no memo: the next login is slow.
		 */
		if (ok && who == CKU_USER && ev_pin_memo_new(hash, pin, len, &memo) != CKR_OK)
			memo = NULL;
	}
	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		goto out;
	if (ok) {
		/*
		 * Read again: the first read is stale by the length of the check,
		 * and another process may have reached the maximum meanwhile; a
		 * success must not clear that lockout.
		 */
		rv = ev_store_zone_get(ev_mod->store, t->id, &z2);
		fails = rv == CKR_OK ? (who == CKU_SO ? z2.so_fails : z2.user_fails) : 0;
		if (rv == CKR_OK && fails >= max) {
			rv = CKR_PIN_LOCKED;
			if (who == CKU_USER)
				memo_drop_locked(t);
		} else if (rv == CKR_OK && fails != 0)
			rv = ev_store_zone_set_fails(ev_mod->store, t->id, who, 0);
		/* Bound to the hash checked: harmless if another thread set a PIN meanwhile. */
		if (rv == CKR_OK && memo != NULL) {
			memo_drop_locked(t);
			t->user_memo = memo;
			memo = NULL; /* transferred */
		}
	} else {
		/*
		 * Counted atomically in the store, so no failure of a parallel
		 * guesser (thread or process) is lost; the counter is
		 * persistent, so restarting buys no guesses. Guessers can
		 * overshoot the maximum only by the attempts they had in flight
		 * when it was reached: counting before verifying would bound
		 * that too, but would also refuse correct PINs whenever more
		 * than the maximum of logins overlap (workers starting at once).
		 */
		rv = ev_store_zone_add_fail(ev_mod->store, t->id, who, &fails);
		if (rv == CKR_OK)
			rv = fails >= max ? CKR_PIN_LOCKED : CKR_PIN_INCORRECT;
		if (rv == CKR_PIN_LOCKED && who == CKU_USER)
			memo_drop_locked(t);
		/* The failure that reached the maximum; those in flight beyond it are refusals. */
		if (rv == CKR_PIN_LOCKED && fails == max)
			audit_locked(t->id, who, fails);
		ev_warn("zone %lld: %s PIN rejected (%u of %u)", (long long)t->id,
		    who == CKU_SO ? "SO" : "user", fails, max);
	}
	ev_mutex_unlock(ev_mod->store_lock);
out:
	ev_pin_memo_free(memo);
	ev_zone_rec_clear(&z);
	ev_zone_rec_clear(&z2);
	if (rv == EVR_NOT_FOUND)
		rv = CKR_TOKEN_NOT_PRESENT; /* removed by another process meanwhile */
	return rv;
}

CK_RV
ev_token_check_pin(ev_token *t, CK_USER_TYPE who, const CK_UTF8CHAR *pin, CK_ULONG len)
{
	return check_pin(t, who, pin, len, NULL);
}

CK_RV
ev_token_check_so_pin(ev_token *t, const CK_UTF8CHAR *pin, CK_ULONG len, unsigned char digest[32])
{
	return check_pin(t, CKU_SO, pin, len, digest);
}

CK_RV
ev_token_so_current(ev_token *t, const char *so_hash)
{
	unsigned char digest[32];

	if (t->login != CKU_SO || t->so_auth == NULL)
		return CKR_USER_NOT_LOGGED_IN;
	pin_hash_digest(so_hash, digest);
	if (sodium_memcmp(digest, t->so_pin_digest, sizeof(digest)) == 0)
		return CKR_OK;
	ev_warn("zone %lld: the SO PIN was changed (by another process) since this SO logged "
		"in; log out and in again with the new PIN",
		(long long)t->id);
	ev_token_forget_so(t);
	return CKR_USER_NOT_LOGGED_IN;
}

CK_RV
ev_token_set_pin(ev_token *t, CK_USER_TYPE who, const CK_UTF8CHAR *pin, CK_ULONG len)
{
	char *hash = NULL;
	CK_RV rv;

	rv = ev_pin_hash(pin, len, ev_mod->cfg->argon2_ops, ev_mod->cfg->argon2_mem, &hash);
	if (rv != CKR_OK)
		return rv;
	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv == CKR_OK) {
		rv = ev_store_zone_set_pin(ev_mod->store, t->id, who, hash);
		/* The new hash would match no memo anyway; the old PIN's goes now. */
		if (who == CKU_USER)
			memo_drop_locked(t);
		ev_mutex_unlock(ev_mod->store_lock);
	}
	free(hash);
	if (rv == EVR_NOT_FOUND)
		rv = CKR_TOKEN_NOT_PRESENT;
	return rv;
}

CK_RV
ev_token_so_auth(ev_token *t, const CK_UTF8CHAR *pin, CK_ULONG len, ev_secret **auth)
{
	ev_zone_rec z = {0};
	CK_RV rv;

	*auth = NULL;
	rv = zone_read(t->id, &z);
	if (rv == CKR_OK)
		rv = ev_so_auth_derive(pin, len, t->id, z.serial, auth);
	ev_zone_rec_clear(&z);
	if (rv == EVR_NOT_FOUND)
		rv = CKR_TOKEN_NOT_PRESENT;
	return rv;
}

CK_RV
ev_token_lock_both(ev_token *t)
{
	CK_RV rv;

	rv = ev_mutex_lock(t->lock);
	if (rv != CKR_OK)
		return rv;
	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		ev_mutex_unlock(t->lock);
	return rv;
}

void
ev_token_unlock_both(ev_token *t)
{
	ev_mutex_unlock(ev_mod->store_lock);
	ev_mutex_unlock(t->lock);
}

void
ev_token_forget_so(ev_token *t)
{
	ev_secret_free(t->so_auth);
	t->so_auth = NULL;
	sodium_memzero(t->so_pin_digest, sizeof(t->so_pin_digest));
}

void
ev_token_keep_so(ev_token *t, ev_secret *auth, const unsigned char digest[32])
{
	ev_token_forget_so(t);
	t->so_auth = auth;
	memcpy(t->so_pin_digest, digest, sizeof(t->so_pin_digest));
}

/*
 * The zone's SO recovery copy, sealed again under the auth value of the
 * new PIN (*blob NULL when the zone has none). Store lock held, in the
 * transaction that stores the new PIN.
 */
static CK_RV
reseal_so_copy(const ev_zone_rec *z, const ev_secret *old_auth, const ev_secret *new_auth,
	       unsigned char **blob, size_t *len)
{
	ev_unseal_opts open = {0};
	ev_seal_opts copy = {0};
	ev_secret *zk = NULL;
	ev_root *root;
	CK_RV rv;

	*blob = NULL;
	*len = 0;
	if (z->so_sealed == NULL)
		return CKR_OK;
	open.auth = old_auth;
	copy.auth = new_auth;
	rv = ev_module_root(&root);
	if (rv == CKR_OK)
		rv = ev_zone_key_unseal(root, ev_mod->cfg->device_id, z->id, z->so_sealed,
					z->so_sealed_len, &open, &zk);
	if (rv == CKR_OK)
		rv = ev_zone_key_seal(root, ev_mod->cfg->device_id, z->id, zk, &copy, blob, len);
	else
		ev_error("zone %lld: the SO recovery copy of the zone key does not open with the "
			 "old SO PIN (%s); SO PIN not changed",
			 (long long)z->id,
			 rv == CKR_FUNCTION_FAILED ? "wrong auth value" : "root error");
	ev_secret_free(zk);
	return rv;
}

CK_RV
ev_token_set_so_pin(ev_token *t, const unsigned char checked[32], const CK_UTF8CHAR *old,
		    CK_ULONG oldlen, const CK_UTF8CHAR *pin, CK_ULONG len)
{
	unsigned char stored[32], fresh[32];
	ev_secret *old_auth = NULL, *new_auth = NULL;
	ev_zone_rec z = {0};
	unsigned char *blob = NULL;
	size_t bloblen = 0;
	char *hash = NULL;
	int in_tx = 0;
	CK_RV rv;

	rv = ev_pin_hash(pin, len, ev_mod->cfg->argon2_ops, ev_mod->cfg->argon2_mem, &hash);
	if (rv != CKR_OK)
		return rv;
	rv = ev_token_lock_both(t);
	if (rv != CKR_OK)
		goto out;
	/*
	 * One transaction, the root's work inside it (a rare call): the copy
	 * that opens with the old PIN is the one stored now, and the new
	 * hash never goes without the copy that opens with it.
	 */
	rv = ev_store_begin(ev_mod->store);
	in_tx = rv == CKR_OK;
	if (rv == CKR_OK)
		rv = ev_store_zone_get(ev_mod->store, t->id, &z);
	if (rv == CKR_OK && z.revoked != 0)
		rv = CKR_TOKEN_NOT_PRESENT;
	/*
	 * The old PIN was checked before this transaction: against the hash
	 * stored now? If another process changed it since, its auth value
	 * would not open the copy, and the TPM would count the try.
	 */
	if (rv == CKR_OK) {
		pin_hash_digest(z.so_pin, stored);
		if (sodium_memcmp(stored, checked, sizeof(stored)) != 0) {
			ev_warn("zone %lld: the SO PIN was changed by another process meanwhile; "
				"SO PIN not changed",
				(long long)t->id);
			ev_token_forget_so(t);
			rv = CKR_USER_NOT_LOGGED_IN;
		}
	}
	if (rv == CKR_OK)
		rv = ev_so_auth_derive(old, oldlen, t->id, z.serial, &old_auth);
	if (rv == CKR_OK)
		rv = ev_so_auth_derive(pin, len, t->id, z.serial, &new_auth);
	if (rv == CKR_OK)
		rv = reseal_so_copy(&z, old_auth, new_auth, &blob, &bloblen);
	if (rv == CKR_OK && blob != NULL)
		rv = ev_store_zone_set_so_sealed(ev_mod->store, t->id, blob, bloblen);
	if (rv == CKR_OK)
		rv = ev_store_zone_set_pin(ev_mod->store, t->id, CKU_SO, hash);
	if (rv == CKR_OK)
		rv = ev_store_commit(ev_mod->store);
	if (rv == CKR_OK)
		in_tx = 0;
	if (in_tx)
		(void)ev_store_rollback(ev_mod->store);
	if (rv == CKR_OK) {
		/* Nothing of the old PIN's copy left in the -wal file. */
		(void)ev_store_checkpoint(ev_mod->store);
		pin_hash_digest(hash, fresh);
	}
	if (rv == CKR_OK && t->login == CKU_SO) {
		ev_token_keep_so(t, new_auth, fresh);
		new_auth = NULL; /* transferred */
	}
	ev_token_unlock_both(t);
out:
	ev_secret_free(old_auth);
	ev_secret_free(new_auth);
	ev_zone_rec_clear(&z);
	free(blob);
	free(hash);
	if (rv == EVR_NOT_FOUND)
		rv = CKR_TOKEN_NOT_PRESENT;
	return rv;
}

/*
 * The zone key does not unseal because PCRs it is bound to changed: said
 * in words, recorded in the attestation history (the same refusal at
 * most once a minute), CKR_FUNCTION_REJECTED. Store lock held.
 */
static CK_RV
pcr_refused(ev_token *t, const unsigned char digest[32], uint32_t pcrs, uint32_t changed)
{
	uint32_t which = changed != 0 ? changed : pcrs;
	char list[96] = "", reason[160];
	size_t n = 0;
	int i, count = 0;

	for (i = 0; i <= EV_PCR_MAX && n < sizeof(list); i++) {
		if (!(which & (1u << i)))
			continue;
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%d", count ? ", " : "", i);
		count++;
	}
	if (changed != 0)
		snprintf(reason, sizeof(reason),
			 "PCR%s %s no longer match%s the values the zone key is sealed to",
			 count > 1 ? "s" : "", list, count > 1 ? "" : "es");
	else
		snprintf(reason, sizeof(reason),
			 "the PCRs the zone key is sealed to (%s) no longer hold the values it "
			 "is sealed to",
			 list);
	ev_error("zone %lld: %s; the SO can re-bind it with `edgevault zone rebind --zone %lld`",
		 (long long)t->id, reason, (long long)t->id);
	if (ev_attest_record_refusal(t, "unseal", "tpm2-pcr", digest, reason) != CKR_OK)
		ev_error("zone %lld: the refusal could not be recorded in the attestation history",
			 (long long)t->id);
	return CKR_FUNCTION_REJECTED;
}

/*
 * Unseal the zone key from the zone's row as it is now in the store, unless
 * the key cached came from that very sealed blob. Store lock held.
 */
static CK_RV
zone_key_from_store(ev_token *t)
{
	unsigned char digest[32];
	ev_unseal_opts uo = {0};
	ev_zone_rec z = { 0 };
	ev_secret *key = NULL;
	ev_root *root;
	CK_RV rv;

	rv = ev_store_zone_get(ev_mod->store, t->id, &z);
	if (rv == EVR_NOT_FOUND || (rv == CKR_OK && z.revoked != 0))
		rv = CKR_TOKEN_NOT_PRESENT;
	if (rv != CKR_OK)
		goto out;
	crypto_generichash(digest, sizeof(digest), z.sealed, z.sealed_len, NULL, 0);
	if (t->zone_key != NULL && sodium_memcmp(digest, t->sealed_digest, sizeof(digest)) == 0)
		goto out; /* the key cached is the zone's current one */
	rv = ev_module_root(&root);
	if (rv == CKR_OK)
		rv = ev_zone_key_unseal(root, ev_mod->cfg->device_id, t->id, z.sealed, z.sealed_len,
					&uo, &key);
	if (rv == EVR_PCR_MISMATCH)
		rv = pcr_refused(t, digest, uo.pcrs, uo.changed);
	if (rv == CKR_ENCRYPTED_DATA_INVALID) {
		/* The store and the root disagree: not something the caller can fix. */
		ev_error("zone %lld: the zone key does not unseal under this root",
		    (long long)t->id);
		rv = CKR_DEVICE_ERROR;
	}
	if (rv != CKR_OK)
		goto out;
	/* A store sealed before names were recorded: the TPM that unseals its key. */
	ev_module_root_record(root);
	ev_token_forget_key(t);
	t->zone_key = key;
	memcpy(t->sealed_digest, digest, sizeof(digest));
out:
	ev_zone_rec_clear(&z);
	return rv;
}

CK_RV
ev_token_zone_key(ev_token *t, const ev_secret **key)
{
	CK_RV rv;

	if (t->zone_key != NULL) {
		*key = t->zone_key;
		return CKR_OK;
	}
	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		return rv;
	rv = zone_key_from_store(t);
	ev_mutex_unlock(ev_mod->store_lock);
	if (rv == CKR_OK)
		*key = t->zone_key;
	return rv;
}

CK_RV
ev_token_zone_key_current(ev_token *t, const ev_secret **key)
{
	CK_RV rv = zone_key_from_store(t);

	if (rv == CKR_OK)
		*key = t->zone_key;
	return rv;
}

CK_RV
ev_token_zone_key_refresh(ev_token *t, const ev_secret **key)
{
	CK_RV rv;

	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		return rv;
	rv = ev_token_zone_key_current(t, key);
	ev_mutex_unlock(ev_mod->store_lock);
	return rv;
}

void
ev_token_forget_key(ev_token *t)
{
	ev_secret_free(t->zone_key);
	t->zone_key = NULL;
}

ev_token *
ev_token_loaded(CK_SLOT_ID slot)
{
	ev_token *t;

	if (ev_rwlock_rdlock(ev_mod->lock) != CKR_OK)
		return NULL;
	t = ev_map_get(&ev_mod->tokens, slot);
	ev_rwlock_unlock(ev_mod->lock);
	return t;
}

void
ev_token_removed(CK_SLOT_ID slot, int revoked)
{
	ev_token *t = ev_token_loaded(slot);

	if (t == NULL)
		return; /* never used here: the store says it all at first use */
	if (revoked)
		atomic_store(&t->revoked, 1);
	ev_session_removed(t);
	if (ev_mutex_lock(t->lock) != CKR_OK)
		return;
	if (ev_rwlock_wrlock(ev_mod->lock) == CKR_OK) {
		t->login = EV_NOBODY;
		ev_rwlock_unlock(ev_mod->lock);
	}
	ev_token_forget_key(t);
	ev_token_forget_so(t);
	ev_object_forget_token(t);
	ev_mutex_unlock(t->lock);
	memo_drop(t);
}

void
ev_token_rekeyed(CK_SLOT_ID slot)
{
	ev_token *t = ev_token_loaded(slot);

	if (t == NULL || ev_mutex_lock(t->lock) != CKR_OK)
		return;
	ev_token_forget_key(t);
	ev_object_rewrapped(t);
	ev_mutex_unlock(t->lock);
}

void
ev_token_resealed(CK_SLOT_ID slot)
{
	ev_token *t = ev_token_loaded(slot);

	if (t == NULL || ev_mutex_lock(t->lock) != CKR_OK)
		return;
	ev_token_forget_key(t);
	ev_mutex_unlock(t->lock);
}
