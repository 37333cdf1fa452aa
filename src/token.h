/*
 * Zones as tokens. Each zone in the store is a slot whose ID is the zone
 * id; one more slot, the free slot, always follows them: its ID is the id
 * the next zone will get, and C_InitToken on it creates that zone.
 *
 * Login state is per token and per process (PKCS#11: per application), so
 * it lives here, with the zone key once it has been unsealed.
 */
#ifndef EV_TOKEN_H
#define EV_TOKEN_H

#include <stdatomic.h>

#include "common.h"
#include "lock.h"
#include "secmem.h"

#define EV_NOBODY ((CK_USER_TYPE)-1)

typedef struct ev_token {
	int64_t id;              /* = slot ID */
	ev_mutex *lock;          /* login state, zone key, key materialisation */
	/* EV_NOBODY, CKU_USER or CKU_SO: written under lock (the SO's also under
	 * ev_mod->lock), read without it by the state predicates. */
	_Atomic(CK_USER_TYPE) login;
	ev_secret *zone_key;     /* while unsealed (under lock) */
	/* the SO's recovery auth value (ev_so_auth_derive) while the SO is logged in (under lock)
	 */
	ev_secret *so_auth;
	/* what identifies the SO PIN hash so_auth's PIN was checked against (under lock) */
	unsigned char so_pin_digest[32];
	unsigned char sealed_digest[32]; /* BLAKE2b of the sealed blob zone_key came from */
	/*
	 * The user PIN this process last checked with Argon2id, as a keyed
	 * tag bound to the stored hash (src/pin.h): a later login with the
	 * same PIN against the same stored hash skips the slow hash. Under
	 * ev_mod->store_lock (taken by every PIN check anyway); dropped when
	 * a PIN is set, the zone is re-initialised, removed or locked out,
	 * and with the token (C_Finalize; a child's C_Initialize after fork).
	 */
	struct ev_pin_memo *user_memo;
	CK_ULONG sessions;       /* open sessions of this process (under ev_mod->lock) */
	CK_ULONG rw_sessions;
	int reinit;              /* C_InitToken is re-creating the zone (under ev_mod->lock) */
	atomic_int revoked;      /* the zone was revoked: its token has left the slot */
	int gated;               /* its policy requires attestation (fixed while initialised) */
	/* the user's evidence is fresh until then (unix time, exclusive); 0: none */
	_Atomic int64_t attested_until;
	int stale_noted;         /* the evidence went stale and that was recorded (under lock) */
	unsigned char refused[32]; /* the last refusal recorded: its evidence and reason (store lock) */
	int64_t refused_at;      /* when; 0: none */
} ev_token;

/* Free a token, wiping its zone key. NULL is a no-op. */
void ev_token_free(ev_token *t);

/* C_GetSlotList. */
CK_RV ev_slot_list(CK_BBOOL token_present, CK_SLOT_ID *list, CK_ULONG *count);

/* C_GetSlotInfo. CKR_SLOT_ID_INVALID. */
CK_RV ev_slot_info(CK_SLOT_ID slot, CK_SLOT_INFO *info);

/* Whether slot is the free slot now. */
CK_RV ev_slot_is_free(CK_SLOT_ID slot, int *is_free);

/*
 * The token of a zone slot, loaded on first use and kept until
 * C_Finalize. CKR_SLOT_ID_INVALID for no such slot,
 * CKR_TOKEN_NOT_RECOGNIZED for the free slot (no zone yet).
 * Takes ev_mod->lock itself: call without it.
 */
CK_RV ev_token_get(CK_SLOT_ID slot, ev_token **out);

/* The token of a slot if this process has loaded it (revoked or not), else NULL. */
ev_token *ev_token_loaded(CK_SLOT_ID slot);

/* C_GetTokenInfo for a slot (the free slot answers as an uninitialised token). */
CK_RV ev_token_info(CK_SLOT_ID slot, CK_TOKEN_INFO *info);

/*
 * C_InitToken. On the free slot, creates a zone; on a zone, checks the SO
 * PIN and starts the zone again with a new key and no objects (no session
 * may open meanwhile: C_OpenSession answers CKR_TOKEN_NOT_RECOGNIZED).
 * CKR_SLOT_ID_INVALID, CKR_PIN_LEN_RANGE, CKR_SESSION_EXISTS,
 * CKR_FUNCTION_FAILED (another C_InitToken of the zone is under way), the
 * errors of ev_token_check_pin(), of the store and of the root.
 */
CK_RV ev_token_init(CK_SLOT_ID slot, const CK_UTF8CHAR *pin, CK_ULONG pinlen,
    const CK_UTF8CHAR *label);

/*
 * Check a PIN of a zone against the store, counting failures (atomically
 * in the store: no failure of a parallel thread or process is lost) and
 * locking out at the configured maximum. Call without ev_mod->store_lock:
 * it is taken here, and not held while the slow hash runs. The user's
 * PIN, once checked with Argon2id in this process, is accepted again
 * against the same stored hash by its memo (t->user_memo) without the
 * slow hash; anything the memo does not match goes through Argon2id, so
 * only Argon2id refuses a PIN, and every refusal counts as before.
 * CKR_PIN_INCORRECT, CKR_PIN_LOCKED, CKR_USER_PIN_NOT_INITIALIZED,
 * CKR_TOKEN_NOT_PRESENT.
 */
CK_RV ev_token_check_pin(ev_token *t, CK_USER_TYPE who, const CK_UTF8CHAR *pin, CK_ULONG len)
    EV_MUST_CHECK;

/*
 * ev_token_check_pin() for the SO; *digest gets what identifies the PIN
 * hash the PIN was checked against (for ev_token_keep_so(),
 * ev_token_set_so_pin()).
 */
CK_RV ev_token_check_so_pin(ev_token *t, const CK_UTF8CHAR *pin, CK_ULONG len,
			    unsigned char digest[32]) EV_MUST_CHECK;

/*
 * Whether this process's SO login still holds for a zone whose stored SO
 * PIN hash is so_hash: the SO is logged in, its auth value is kept, and
 * so_hash is the hash its PIN was checked against. CKR_USER_NOT_LOGGED_IN
 * if not; when the PIN was changed meanwhile (by another process), the
 * auth value is forgotten too: the old PIN's auth value must never seal
 * a recovery copy next to the new PIN's hash, nor spend the TPM's
 * dictionary-attack tries. Call it inside the write transaction that
 * stores what the auth value seals. Caller holds t->lock.
 */
CK_RV ev_token_so_current(ev_token *t, const char *so_hash) EV_MUST_CHECK;

/* Set a PIN (hash and store it). CKR_PIN_LEN_RANGE. */
CK_RV ev_token_set_pin(ev_token *t, CK_USER_TYPE who, const CK_UTF8CHAR *pin, CK_ULONG len);

/*
 * Change the SO PIN from old (checked already by ev_token_check_so_pin(),
 * which gave checked) to pin: the new hash and, when the zone has an SO
 * recovery copy of its key, that copy sealed again under the new PIN's
 * auth value, in one transaction, then the WAL checkpointed; the SO's
 * auth value kept by this process (while the SO is logged in) follows.
 * CKR_USER_NOT_LOGGED_IN (nothing changed, nothing asked of the TPM, the
 * SO's auth value forgotten) when the stored hash is no longer the one
 * old was checked against: another process changed the PIN meanwhile.
 * The errors of ev_token_set_pin(), the root's (CKR_FUNCTION_FAILED: the
 * copy does not open with the old PIN's auth value; CKR_FUNCTION_REJECTED:
 * the TPM is in dictionary-attack lockout), the store's. Call without
 * t->lock.
 */
CK_RV ev_token_set_so_pin(ev_token *t, const unsigned char checked[32], const CK_UTF8CHAR *old,
			  CK_ULONG oldlen, const CK_UTF8CHAR *pin, CK_ULONG len);

/*
 * The recovery auth value of the zone's SO for a PIN (checked already):
 * *auth in secure memory, the caller's. CKR_TOKEN_NOT_PRESENT, the store's
 * and ev_so_auth_derive()'s errors. Call without ev_mod->store_lock.
 */
CK_RV ev_token_so_auth(ev_token *t, const CK_UTF8CHAR *pin, CK_ULONG len,
		       ev_secret **auth) EV_MUST_CHECK;

/*
 * Take t->lock, then ev_mod->store_lock (the order every writer of a
 * zone's key follows); on failure neither is held. Released together by
 * ev_token_unlock_both().
 */
CK_RV ev_token_lock_both(ev_token *t) EV_MUST_CHECK;
void ev_token_unlock_both(ev_token *t);

/* Forget the SO's auth value (wiped). Caller holds t->lock. */
void ev_token_forget_so(ev_token *t);

/*
 * Keep auth (transferred) as the SO's auth value, with digest (from
 * ev_token_check_so_pin()) naming the PIN hash it came from; the one kept
 * before is forgotten. Caller holds t->lock.
 */
void ev_token_keep_so(ev_token *t, ev_secret *auth, const unsigned char digest[32]);

/*
 * Seal a zone key of zone as the zone's policy says now: to its
 * configured PCRs ([policy] / [zone N] pcrs) with an SO recovery copy
 * sealed under so_auth, or, with no PCRs configured, unbound and with no
 * copy (*so_sealed NULL). Both malloc'ed, the caller's; NULL on failure.
 * CKR_USER_NOT_LOGGED_IN when a copy is needed and so_auth is NULL; the
 * root's errors. Caller holds ev_mod->store_lock (the root is used under
 * it).
 */
CK_RV ev_token_seal_key(int64_t zone, const ev_secret *key, const ev_secret *so_auth,
			unsigned char **sealed, size_t *len, unsigned char **so_sealed,
			size_t *so_len);

/*
 * The zone key, unsealed on first need. Caller holds t->lock; the pointer
 * is valid while it does.
 */
CK_RV ev_token_zone_key(ev_token *t, const ev_secret **key) EV_MUST_CHECK;

/*
 * The zone key as the store has it now: the one cached when it came from
 * the zone's current sealed blob, else unsealed again from it (another
 * process rotated the zone key). For writers inside a transaction, so
 * what they wrap is wrapped under the key they commit with. Caller holds
 * t->lock and ev_mod->store_lock. CKR_TOKEN_NOT_PRESENT (zone gone or
 * revoked), CKR_DEVICE_ERROR, the root's errors.
 */
CK_RV ev_token_zone_key_current(ev_token *t, const ev_secret **key) EV_MUST_CHECK;

/*
 * The same, taking ev_mod->store_lock itself: the caller holds t->lock,
 * and possibly an object's lock (the store lock comes after both).
 */
CK_RV ev_token_zone_key_refresh(ev_token *t, const ev_secret **key) EV_MUST_CHECK;

/* Forget the zone key (wiped). Caller holds t->lock. */
void ev_token_forget_key(ev_token *t);

/*
 * A zone was revoked (revoked = 1) or re-initialised by a process: this
 * process's sessions with it are marked removed (they answer
 * CKR_DEVICE_REMOVED until closed), its login, zone key and objects are
 * forgotten. Nothing when the token was never loaded here. Call with no
 * lock held.
 */
void ev_token_removed(CK_SLOT_ID slot, int revoked);

/*
 * Another process rotated the zone key: the zone key is forgotten (read
 * and unsealed again at next need) and the loaded objects' blobs read
 * again. Nothing when the token was never loaded here. Call with no lock
 * held.
 */
void ev_token_rekeyed(CK_SLOT_ID slot);

/*
 * Another process sealed the zone key again (EV_CHANGE_ZONE_RESEALED): the
 * same key, another blob; forgotten here, unsealed again at next need.
 * Nothing when the token was never loaded here. Call with no lock held.
 */
void ev_token_resealed(CK_SLOT_ID slot);

/* Meta key set when the whole device is revoked: no zone, no new zone. */
#define EV_META_DEVICE_REVOKED "device_revoked"

#endif
