/*
 * The "pkcs11" root backend: the root key is an AES-256 key inside another
 * PKCS#11 token (SoftHSMv2, a network HSM, ...), sensitive and not
 * extractable; sealing and unsealing are CKM_AES_GCM inside that token.
 *
 * Sealed blob: version (1 byte) || IV (12 bytes) || ciphertext || tag (16).
 * The IV is random per seal. GCM's associated data is the version byte
 * followed by the caller's associated data, so the version is
 * authenticated too: a blob cannot be re-labelled as another format.
 *
 * Upstream sessions fail in ordinary ways (token removed, network HSM
 * restarted, session closed by someone else): a call that answers as if
 * the session were gone reconnects once and retries once. After fork() the
 * child never touches the parent's sessions; it re-initialises the module.
 *
 * Connecting (the module's C_Initialize, the login, finding or creating
 * the root key) runs under an exclusive lock on <store dir>/root.lock
 * (connect_lock()), shared by every process of the device: SoftHSMv2 rewrites its token
 * file at each login, and a process that initialises the module meanwhile
 * does not see the token at all; two processes that found no root key
 * would each create one, and then neither could choose.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* strdup */
#endif

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "root.h"

#define SEAL_VERSION 1
#define GCM_IV_LEN 12
#define GCM_TAG_LEN 16
#define SEAL_OVERHEAD (1 + GCM_IV_LEN + GCM_TAG_LEN)
#define ROOT_KEY_LEN 32
#define TOKEN_LABEL_LEN 32
#define CONNECT_LOCK_WAIT_MS 10000 /* then connect without the lock, and say so */

/*
 * Upstream modules this process initialised, shared by every ev_root on
 * the same module: a module is initialised once per process, and only the
 * last user may finalize it, and only if our C_Initialize was the one that
 * succeeded (another library in the host may have initialised it first).
 */
struct upstream {
	struct upstream *next;
	CK_FUNCTION_LIST *f;
	unsigned refs;
	int owned; /* our C_Initialize succeeded: finalize with the last ref */
	pid_t pid; /* the process in which it was initialised */
};

static pthread_mutex_t up_lock = PTHREAD_MUTEX_INITIALIZER;
static struct upstream *up_list;
static pthread_once_t up_once = PTHREAD_ONCE_INIT;

struct p11_root {
	ev_root base; /* first: an ev_root * is a struct p11_root * */
	pthread_mutex_t lock;
	int lock_ok;
	CK_FUNCTION_LIST *f;
	struct upstream *up;
	char *module;
	char *token_label;
	char *key_label;
	char *pin_file;
	char *pin_env;
	char *lock_path; /* <store dir>/root.lock; NULL: no store dir configured */
	CK_SESSION_HANDLE sess;
	int have_sess;
	CK_OBJECT_HANDLE key;
	pid_t pid;  /* the process that opened sess */
	int forked; /* in a child: re-initialise the module before use */
	/*
	 * The last PIN the token rejected, as a keyed BLAKE2b tag under a
	 * random key (both in secure memory): reconnections do not offer
	 * the same wrong PIN again, which would count against the token's
	 * retry limit at every operation and lock its user PIN. A new PIN
	 * in the file or variable is tried.
	 */
	ev_secret *pin_memo; /* PIN_MEMO_KEY bytes of key, then PIN_MEMO_TAG of tag */
	int pin_rejected;
};

#define PIN_MEMO_KEY crypto_generichash_KEYBYTES
#define PIN_MEMO_TAG 32

/* Names for the answers an operator is likely to see; the rest in hex. */
static const char *
rv_name(CK_RV rv, char *buf, size_t len)
{
	static const struct {
		CK_RV rv;
		const char *name;
	} names[] = {
	    {CKR_OK, "CKR_OK"},
	    {CKR_HOST_MEMORY, "CKR_HOST_MEMORY"},
	    {CKR_SLOT_ID_INVALID, "CKR_SLOT_ID_INVALID"},
	    {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
	    {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED"},
	    {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"},
	    {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"},
	    {CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY"},
	    {CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED"},
	    {CKR_DATA_INVALID, "CKR_DATA_INVALID"},
	    {CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE"},
	    {CKR_ENCRYPTED_DATA_INVALID, "CKR_ENCRYPTED_DATA_INVALID"},
	    {CKR_ENCRYPTED_DATA_LEN_RANGE, "CKR_ENCRYPTED_DATA_LEN_RANGE"},
	    {CKR_AEAD_DECRYPT_FAILED, "CKR_AEAD_DECRYPT_FAILED"},
	    {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID"},
	    {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED"},
	    {CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID"},
	    {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID"},
	    {CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID"},
	    {CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE"},
	    {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"},
	    {CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE"},
	    {CKR_PIN_EXPIRED, "CKR_PIN_EXPIRED"},
	    {CKR_PIN_LOCKED, "CKR_PIN_LOCKED"},
	    {CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED"},
	    {CKR_SESSION_COUNT, "CKR_SESSION_COUNT"},
	    {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID"},
	    {CKR_TEMPLATE_INCOMPLETE, "CKR_TEMPLATE_INCOMPLETE"},
	    {CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT"},
	    {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT"},
	    {CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED"},
	    {CKR_TOKEN_WRITE_PROTECTED, "CKR_TOKEN_WRITE_PROTECTED"},
	    {CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN"},
	    {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"},
	    {CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED"},
	    {CKR_USER_TYPE_INVALID, "CKR_USER_TYPE_INVALID"},
	    {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED"},
	    {CKR_CRYPTOKI_ALREADY_INITIALIZED, "CKR_CRYPTOKI_ALREADY_INITIALIZED"},
	    {CKR_FUNCTION_NOT_SUPPORTED, "CKR_FUNCTION_NOT_SUPPORTED"},
	    {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL"},
	};
	size_t i;

	for (i = 0; i < EV_ARRAY_SIZE(names); i++)
		if (names[i].rv == rv)
			return names[i].name;
	snprintf(buf, len, "CKR 0x%08lx", (unsigned long)rv);
	return buf;
}

#define RVNAME(rv) rv_name((rv), (char[32]){0}, 32)

/*
 * Answers that mean our session (or the module's state) is gone rather
 * than that the request was wrong. Besides the usual four, a key handle
 * that went invalid (token re-inserted) and an operation left active on
 * the session (an earlier call interrupted) are both cured by a new session.
 */
static int
needs_reconnect(CK_RV rv)
{
	switch (rv) {
	case CKR_SESSION_HANDLE_INVALID:
	case CKR_SESSION_CLOSED:
	case CKR_DEVICE_REMOVED:
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_USER_NOT_LOGGED_IN:
	case CKR_KEY_HANDLE_INVALID:
	case CKR_OBJECT_HANDLE_INVALID:
	case CKR_OPERATION_ACTIVE:
	case CKR_CRYPTOKI_NOT_INITIALIZED:
		return 1;
	default:
		return 0;
	}
}

/* Map an upstream answer to the few codes root.h promises. */
static CK_RV
map_rv(CK_RV rv)
{
	switch (rv) {
	case CKR_OK:
	case CKR_HOST_MEMORY:
	case CKR_ENCRYPTED_DATA_INVALID:
	case CKR_PIN_INCORRECT:
		return rv;
	case CKR_ENCRYPTED_DATA_LEN_RANGE:
		return CKR_ENCRYPTED_DATA_INVALID;
	default:
		return CKR_DEVICE_ERROR;
	}
}

/*
 * Keep the module-wide lock consistent across fork(): taken before, so
 * the child never inherits it held by a thread that does not exist there.
 */
static void
up_prepare(void)
{
	pthread_mutex_lock(&up_lock);
}

static void
up_after(void)
{
	pthread_mutex_unlock(&up_lock);
}

static void
up_register_atfork(void)
{
	if (pthread_atfork(up_prepare, up_after, up_after) != 0)
		ev_warn("cannot register fork handlers for the root backend");
}

static CK_RV
up_initialize(struct upstream *e)
{
	CK_C_INITIALIZE_ARGS args;
	CK_RV rv;

	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	rv = e->f->C_Initialize(&args);
	if (rv == CKR_OK) {
		e->owned = 1;
	} else if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		/* Someone else in this process uses it: theirs to finalize. */
		e->owned = 0;
		rv = CKR_OK;
	}
	if (rv == CKR_OK)
		e->pid = getpid();
	return rv;
}

/*
 * In a child after fork the module's state is the parent's, unusable here:
 * finalize what the child inherited (the answer does not matter) and start
 * again. Called with up_lock held.
 */
static CK_RV
up_make_current(struct upstream *e)
{
	if (e->pid == getpid())
		return CKR_OK;
	ev_debug("re-initialising the upstream module in a child after fork");
	(void)e->f->C_Finalize(NULL);
	return up_initialize(e);
}

static CK_RV
up_acquire(CK_FUNCTION_LIST *f, struct upstream **out)
{
	struct upstream *e;
	CK_RV rv;

	*out = NULL;
	(void)pthread_once(&up_once, up_register_atfork);
	pthread_mutex_lock(&up_lock);
	for (e = up_list; e != NULL; e = e->next)
		if (e->f == f)
			break;
	if (e != NULL) {
		rv = up_make_current(e);
		if (rv == CKR_OK) {
			e->refs++;
			*out = e;
		}
		goto out;
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	e->f = f;
	rv = up_initialize(e);
	if (rv != CKR_OK) {
		free(e);
		goto out;
	}
	e->refs = 1;
	e->next = up_list;
	up_list = e;
	*out = e;
out:
	pthread_mutex_unlock(&up_lock);
	return rv;
}

static void
up_release(struct upstream *e)
{
	struct upstream **pp;

	pthread_mutex_lock(&up_lock);
	if (--e->refs == 0) {
		/* Not in a child that never re-initialised: the state is the parent's. */
		if (e->owned && e->pid == getpid())
			(void)e->f->C_Finalize(NULL);
		for (pp = &up_list; *pp != NULL; pp = &(*pp)->next) {
			if (*pp == e) {
				*pp = e->next;
				break;
			}
		}
		free(e);
	}
	pthread_mutex_unlock(&up_lock);
}

static CK_RV
find_slot_once(struct p11_root *r, CK_SLOT_ID *slot, int *missing, char *err, size_t errlen)
{
	CK_UTF8CHAR want[TOKEN_LABEL_LEN];
	CK_SLOT_ID *slots = NULL;
	CK_TOKEN_INFO ti;
	CK_ULONG n = 0, i, found = 0;
	CK_RV rv;
	int tries;

	ev_padded_copy(want, sizeof(want), r->token_label);
	/* The list can grow between the two calls: retry a few times. */
	for (tries = 0; tries < 4; tries++) {
		rv = r->f->C_GetSlotList(CK_TRUE, NULL, &n);
		if (rv != CKR_OK)
			break;
		free(slots);
		slots = calloc(n ? n : 1, sizeof(*slots));
		if (slots == NULL) {
			rv = CKR_HOST_MEMORY;
			break;
		}
		rv = r->f->C_GetSlotList(CK_TRUE, slots, &n);
		if (rv != CKR_BUFFER_TOO_SMALL)
			break;
	}
	if (rv != CKR_OK) {
		ev_errf(err, errlen, "upstream module %s: C_GetSlotList failed: %s", r->module,
			RVNAME(rv));
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (r->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		if (memcmp(ti.label, want, sizeof(want)) != 0)
			continue;
		if (found++ == 0)
			*slot = slots[i];
	}
	*missing = found == 0;
	if (found == 0) {
		ev_errf(err, errlen,
			"no upstream token labelled \"%s\" in module %s "
			"(%lu tokens present)",
			r->token_label, r->module, (unsigned long)n);
		rv = CKR_DEVICE_ERROR;
	} else if (found > 1) {
		/* Picking one could create a root key on the wrong token. */
		ev_errf(err, errlen,
			"%lu upstream tokens labelled \"%s\" in module %s; "
			"token labels must be unique",
			(unsigned long)found, r->token_label, r->module);
		rv = CKR_DEVICE_ERROR;
	}
out:
	free(slots);
	return rv;
}

/*
 * The upstream token, looked for again for a moment when it is missing:
 * SoftHSMv2's file store rewrites a token's file in place at each login,
 * and a process reading it meanwhile sees no token (or one without its
 * label). Our own processes do not (connect_lock()), but softhsm2-util or
 * another program may. SoftHSMv2 reads its tokens at C_Initialize only:
 * when this root is the module's only user here, it is initialised again.
 */
static CK_RV
find_slot(struct p11_root *r, CK_SLOT_ID *slot, char *err, size_t errlen)
{
	const struct timespec pause = { 0, 20 * 1000 * 1000 };
	CK_RV rv;
	int tries, missing;

	for (tries = 0;; tries++) {
		missing = 0;
		rv = find_slot_once(r, slot, &missing, err, errlen);
		if (rv == CKR_OK || !missing || tries == 9)
			return rv;
		nanosleep(&pause, NULL);
		pthread_mutex_lock(&up_lock);
		if (r->up->owned && r->up->refs == 1 && r->up->pid == getpid()) {
			(void)r->f->C_Finalize(NULL);
			rv = up_initialize(r->up);
			if (rv != CKR_OK) {
				/* Finalized: calling it again would only answer NOT_INITIALIZED. */
				r->up->pid = 0; /* the next use tries again */
				pthread_mutex_unlock(&up_lock);
				ev_errf(err, errlen, "upstream module %s: C_Initialize failed: %s",
					r->module, RVNAME(rv));
				return rv;
			}
		}
		pthread_mutex_unlock(&up_lock);
	}
}

static CK_RV
login(struct p11_root *r, char *err, size_t errlen)
{
	unsigned char tag[PIN_MEMO_TAG];
	ev_config pc;
	ev_secret *pin = NULL;
	CK_RV rv;

	/* Only the PIN source is needed; read afresh on each login, never kept. */
	memset(&pc, 0, sizeof(pc));
	pc.path = (char *)"configuration";
	pc.root_pin_file = r->pin_file;
	pc.root_pin_env = r->pin_env;
	rv = ev_config_root_pin(&pc, &pin, err, errlen);
	if (rv != CKR_OK)
		return rv;
	memset(tag, 0, sizeof(tag));
	if (crypto_generichash(tag, sizeof(tag), pin->data, pin->len, r->pin_memo->data,
			       PIN_MEMO_KEY) != 0) {
		ev_secret_free(pin);
		sodium_memzero(tag, sizeof(tag));
		ev_errf(err, errlen, "cannot hash the upstream PIN");
		return CKR_GENERAL_ERROR;
	}
	if (r->pin_rejected &&
	    sodium_memcmp(tag, r->pin_memo->data + PIN_MEMO_KEY, sizeof(tag)) == 0) {
		ev_secret_free(pin);
		sodium_memzero(tag, sizeof(tag));
		ev_errf(err, errlen,
			"upstream PIN rejected by token \"%s\" before and unchanged since; not "
			"offered again; check [root] %s",
			r->token_label, r->pin_file ? "pin_file" : "pin_env");
		return CKR_PIN_INCORRECT;
	}
	rv = r->f->C_Login(r->sess, CKU_USER, pin->data, pin->len);
	ev_secret_free(pin);
	if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE) {
		memcpy(r->pin_memo->data + PIN_MEMO_KEY, tag, sizeof(tag));
		r->pin_rejected = 1;
	} else if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) {
		r->pin_rejected = 0;
	}
	sodium_memzero(tag, sizeof(tag));
	switch (rv) {
	case CKR_OK:
	case CKR_USER_ALREADY_LOGGED_IN: /* login state is per token, shared */
		return CKR_OK;
	case CKR_PIN_INCORRECT:
	case CKR_PIN_LEN_RANGE:
		ev_errf(err, errlen, "upstream PIN rejected by token \"%s\" (%s); check [root] %s",
			r->token_label, RVNAME(rv), r->pin_file ? "pin_file" : "pin_env");
		return CKR_PIN_INCORRECT;
	case CKR_PIN_LOCKED:
		ev_errf(err, errlen,
			"upstream user PIN of token \"%s\" is locked; unlock it "
			"with the token's SO PIN",
			r->token_label);
		return CKR_PIN_INCORRECT;
	case CKR_PIN_EXPIRED:
		ev_errf(err, errlen,
			"upstream user PIN of token \"%s\" has expired; set a new "
			"one",
			r->token_label);
		return CKR_PIN_INCORRECT;
	case CKR_USER_PIN_NOT_INITIALIZED:
		ev_errf(err, errlen, "upstream token \"%s\" has no user PIN yet; initialise it",
			r->token_label);
		return CKR_DEVICE_ERROR;
	default:
		ev_errf(err, errlen, "upstream login to token \"%s\" failed: %s", r->token_label,
			RVNAME(rv));
		return map_rv(rv);
	}
}

static CK_RV
create_key(struct p11_root *r, char *err, size_t errlen)
{
	CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ULONG vlen = ROOT_KEY_LEN;
	CK_BBOOL t = CK_TRUE, f = CK_FALSE;
	CK_ULONG llen = strlen(r->key_label);
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},	  {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_VALUE_LEN, &vlen, sizeof(vlen)}, {CKA_TOKEN, &t, sizeof(t)},
	    {CKA_PRIVATE, &t, sizeof(t)},	  {CKA_SENSITIVE, &t, sizeof(t)},
	    {CKA_EXTRACTABLE, &f, sizeof(f)},	  {CKA_ENCRYPT, &t, sizeof(t)},
	    {CKA_DECRYPT, &t, sizeof(t)},	  {CKA_WRAP, &f, sizeof(f)},
	    {CKA_UNWRAP, &f, sizeof(f)},	  {CKA_MODIFIABLE, &f, sizeof(f)},
	    {CKA_LABEL, r->key_label, llen},	  {CKA_ID, r->key_label, llen},
	};
	CK_RV rv;

	rv = r->f->C_GenerateKey(r->sess, &mech, tmpl, EV_ARRAY_SIZE(tmpl), &r->key);
	if (rv != CKR_OK) {
		ev_errf(err, errlen, "cannot create root key \"%s\" on upstream token \"%s\": %s",
			r->key_label, r->token_label, RVNAME(rv));
		return map_rv(rv);
	}
	ev_log(LOG_NOTICE, "created root key \"%s\" on upstream token \"%s\"", r->key_label,
	       r->token_label);
	return CKR_OK;
}

/* A root key anyone could read out is not a root key: say so. */
static void
check_key(struct p11_root *r)
{
	CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE;
	CK_ATTRIBUTE a[] = {
	    {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
	    {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
	};

	if (r->f->C_GetAttributeValue(r->sess, r->key, a, EV_ARRAY_SIZE(a)) != CKR_OK)
		return;
	if (sensitive != CK_TRUE || extractable != CK_FALSE)
		ev_warn("root key \"%s\" on token \"%s\" is %s; its value can "
			"leave the token",
			r->key_label, r->token_label,
			sensitive != CK_TRUE ? "not sensitive" : "extractable");
}

static CK_RV
find_key(struct p11_root *r, unsigned flags, char *err, size_t errlen)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_LABEL, r->key_label, strlen(r->key_label)},
	};
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;
	CK_RV rv, rv2;

	rv = r->f->C_FindObjectsInit(r->sess, tmpl, EV_ARRAY_SIZE(tmpl));
	if (rv != CKR_OK) {
		ev_errf(err, errlen, "cannot search upstream token \"%s\": %s", r->token_label,
			RVNAME(rv));
		return map_rv(rv);
	}
	rv = r->f->C_FindObjects(r->sess, h, EV_ARRAY_SIZE(h), &n);
	rv2 = r->f->C_FindObjectsFinal(r->sess);
	if (rv == CKR_OK)
		rv = rv2;
	if (rv != CKR_OK) {
		ev_errf(err, errlen, "cannot search upstream token \"%s\": %s", r->token_label,
			RVNAME(rv));
		return map_rv(rv);
	}
	if (n > 1) {
		ev_errf(err, errlen,
			"more than one AES key labelled \"%s\" on upstream token "
			"\"%s\"; the root key must be unique",
			r->key_label, r->token_label);
		return CKR_DEVICE_ERROR;
	}
	if (n == 0) {
		if (flags & EV_ROOT_CREATE_KEY)
			return create_key(r, err, errlen);
		ev_errf(err, errlen, "root key \"%s\" not found on upstream token \"%s\"",
			r->key_label, r->token_label);
		return CKR_DEVICE_ERROR;
	}
	r->key = h[0];
	check_key(r);
	return CKR_OK;
}

static void
drop_session(struct p11_root *r)
{
	/*
	 * No C_Logout: login state is shared by every session of the process
	 * on that token, and may belong to others too. It ends with the last
	 * session closed, or with C_Finalize.
	 */
	if (r->have_sess && !r->forked && r->pid == getpid())
		(void)r->f->C_CloseSession(r->sess);
	r->have_sess = 0;
	r->key = CK_INVALID_HANDLE;
}

/*
 * The device's connect lock, across processes and across threads.
 *
 * Across processes: a POSIX record lock (fcntl F_SETLK, F_WRLCK) on the
 * whole of lock_path. Not flock(): an flock belongs to the open file
 * description, which fork() shares with the child, so a child forked by
 * another thread of the host while we connect would hold the lock for
 * its whole life. A record lock belongs to the process and is not
 * inherited. Two of its rules shape the rest: it does not exclude the
 * threads of one process, and closing any descriptor of the file in this
 * process drops it. Hence the in-process lock below, which also makes
 * sure only one descriptor of the file is open here at a time (only the
 * holder opens it).
 *
 * Across threads: connect_owner holds the pid of the process whose thread
 * holds the lock, 0 when free. Not a mutex: a mutex held by another thread
 * at fork() stays held forever in the child, where a pid that is not ours
 * is known to be stale and is taken over.
 *
 * Both are polled with a short sleep, for at most CONNECT_LOCK_WAIT_MS in
 * all (F_SETLKW would wait without bound); then connecting goes on
 * without the lock, as before the lock existed, and says so.
 */
static atomic_long connect_owner;

/* The in-process part, taken by polling until *waited reaches the bound. */
static int
connect_lock_local(int *waited)
{
	const struct timespec pause = {0, 5 * 1000 * 1000};
	long me = (long)getpid(), cur;

	for (;; *waited += 5) {
		cur = 0;
		if (atomic_compare_exchange_strong(&connect_owner, &cur, me))
			return 0;
		/* Held by a thread of the parent we were forked from: gone here. */
		if (cur != me && atomic_compare_exchange_strong(&connect_owner, &cur, me))
			return 0;
		if (*waited >= CONNECT_LOCK_WAIT_MS)
			return -1;
		nanosleep(&pause, NULL);
	}
}

static void
connect_unlock_local(void)
{
	atomic_store(&connect_owner, 0);
}

/*
 * Take the device's connect lock, waited for at most CONNECT_LOCK_WAIT_MS.
 * Returns the descriptor to give connect_unlock(): >= 0 with both locks
 * held; -2 with only the in-process lock (no file lock could be had: no
 * store dir, a read-only one, an error, or held too long elsewhere); -1
 * with neither (held too long in this process). Connecting goes on in
 * every case.
 */
static int
connect_lock(struct p11_root *r)
{
	const struct timespec pause = {0, 5 * 1000 * 1000};
	struct flock fl;
	int fd, waited = 0;

	if (connect_lock_local(&waited) != 0) {
		ev_warn("connect lock held too long in this process; connecting to the root "
			"without it");
		return -1;
	}
	if (r->lock_path == NULL)
		return -2;
	/* 0660: the store dir's group shares it, as it shares the audit file. */
	fd = open(r->lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0660);
	if (fd < 0 && (errno == EACCES || errno == EROFS || errno == EPERM)) {
		/* A read-only store dir: no write lock to be had there, every reconnect. */
		ev_debug("cannot open %s for writing (%m); connecting to the root without "
			 "the lock",
			 r->lock_path);
		return -2;
	}
	if (fd < 0) {
		ev_warn("cannot open %s (%m); connecting to the root without it", r->lock_path);
		return -2;
	}
	for (;; waited += 5) {
		memset(&fl, 0, sizeof(fl));
		fl.l_type = F_WRLCK;
		fl.l_whence = SEEK_SET; /* l_start 0, l_len 0: the whole file */
		if (fcntl(fd, F_SETLK, &fl) == 0)
			return fd;
		if ((errno != EACCES && errno != EAGAIN && errno != EINTR) ||
		    waited >= CONNECT_LOCK_WAIT_MS) {
			ev_warn(
			    "cannot lock %s (%s); connecting to the root without it", r->lock_path,
			    errno == EACCES || errno == EAGAIN ? "held too long" : strerror(errno));
			(void)close(fd);
			return -2;
		}
		nanosleep(&pause, NULL);
	}
}

static void
connect_unlock(int fd)
{
	if (fd >= 0)
		(void)close(fd); /* drops the record lock: the only descriptor of it here */
	if (fd != -1)
		connect_unlock_local();
}

/* Find the token, open a session, log in, find (or create) the key. */
static CK_RV
connect_token(struct p11_root *r, unsigned flags, char *err, size_t errlen)
{
	CK_SLOT_ID slot = 0;
	CK_RV rv;

	rv = find_slot(r, &slot, err, errlen);
	if (rv != CKR_OK)
		return map_rv(rv) == CKR_HOST_MEMORY ? rv : CKR_DEVICE_ERROR;
	rv = r->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &r->sess);
	/* A read-only token still serves an existing key. */
	if (rv == CKR_TOKEN_WRITE_PROTECTED && !(flags & EV_ROOT_CREATE_KEY))
		rv = r->f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &r->sess);
	if (rv != CKR_OK) {
		ev_errf(err, errlen, "cannot open a session on upstream token \"%s\": %s",
			r->token_label, RVNAME(rv));
		return map_rv(rv) == CKR_HOST_MEMORY ? rv : CKR_DEVICE_ERROR;
	}
	r->have_sess = 1;
	r->pid = getpid();
	rv = login(r, err, errlen);
	if (rv == CKR_OK)
		rv = find_key(r, flags, err, errlen);
	if (rv != CKR_OK)
		drop_session(r);
	return rv;
}

/*
 * Start again with a fresh session. why: the answer that made us
 * reconnect; CKR_OK when there was none (first use after fork).
 * Never creates the root key: one that disappeared while we were
 * running must be reported, not silently replaced by a new one that
 * cannot open anything sealed before.
 */
static CK_RV
reconnect(struct p11_root *r, CK_RV why)
{
	char err[256] = "";
	CK_RV rv = CKR_OK;

	int lock;

	drop_session(r);
	lock = connect_lock(r);
	pthread_mutex_lock(&up_lock);
	if (r->forked || r->up->pid != getpid())
		rv = up_make_current(r->up);
	else if (why == CKR_CRYPTOKI_NOT_INITIALIZED)
		rv = up_initialize(r->up); /* finalized under us by someone else */
	pthread_mutex_unlock(&up_lock);
	if (rv != CKR_OK) {
		connect_unlock(lock);
		ev_error("cannot re-initialise upstream module %s: %s", r->module, RVNAME(rv));
		return map_rv(rv);
	}
	r->forked = 0;
	rv = connect_token(r, 0, err, sizeof(err));
	connect_unlock(lock);
	if (rv != CKR_OK)
		ev_error("reconnecting to the root failed: %s", err);
	return rv;
}

struct seal_args {
	const unsigned char *aad;
	size_t aadlen;
	const ev_secret *plain;
	unsigned char *blob; /* SEAL_OVERHEAD + plain->len bytes */
};

static CK_RV
op_seal(struct p11_root *r, void *arg)
{
	struct seal_args *a = arg;
	unsigned char *iv = a->blob + 1;
	CK_GCM_PARAMS gcm;
	CK_MECHANISM mech = {CKM_AES_GCM, &gcm, sizeof(gcm)};
	CK_ULONG want = a->plain->len + GCM_TAG_LEN, outlen = want;
	CK_RV rv;

	/* A fresh IV on every attempt, the retry included. */
	randombytes_buf(iv, GCM_IV_LEN);
	memset(&gcm, 0, sizeof(gcm));
	gcm.pIv = iv;
	gcm.ulIvLen = GCM_IV_LEN;
	gcm.ulIvBits = GCM_IV_LEN * 8;
	gcm.pAAD = (CK_BYTE_PTR)a->aad;
	gcm.ulAADLen = a->aadlen;
	gcm.ulTagBits = GCM_TAG_LEN * 8;
	rv = r->f->C_EncryptInit(r->sess, &mech, r->key);
	if (rv != CKR_OK)
		return rv;
	rv = r->f->C_Encrypt(r->sess, a->plain->data, a->plain->len, iv + GCM_IV_LEN, &outlen);
	if (rv == CKR_OK && outlen != want) {
		ev_error("upstream AES-GCM gave %lu bytes for %lu", (unsigned long)outlen,
			 (unsigned long)want);
		rv = CKR_DEVICE_ERROR;
	}
	return rv;
}

struct unseal_args {
	const unsigned char *aad;
	size_t aadlen;
	const unsigned char *blob;
	size_t bloblen;
	ev_secret *plain; /* out */
};

/*
 * C_Decrypt into secure memory. The buffer is the size of ciphertext and
 * tag, since some tokens (SoftHSMv2) want room for both before they check
 * the tag; the length they give back is the plaintext's.
 */
static CK_RV
decrypt_into(struct p11_root *r, CK_BYTE_PTR ct, CK_ULONG ctlen, ev_secret **out)
{
	ev_secret *buf;
	CK_ULONG n = ctlen;
	CK_RV rv;

	*out = NULL;
	buf = ev_secret_new(n);
	if (buf == NULL)
		return CKR_HOST_MEMORY;
	rv = r->f->C_Decrypt(r->sess, ct, ctlen, buf->data, &n);
	if (rv == CKR_BUFFER_TOO_SMALL && n > ctlen && n - ctlen <= 1024) {
		/* The operation is still active: give it what it asks for. */
		ev_secret_free(buf);
		buf = ev_secret_new(n);
		if (buf == NULL)
			return CKR_HOST_MEMORY; /* left active; the next call reconnects */
		rv = r->f->C_Decrypt(r->sess, ct, ctlen, buf->data, &n);
	}
	if (rv == CKR_OK && n > buf->len)
		rv = CKR_DEVICE_ERROR; /* claims to have written past our buffer */
	if (rv != CKR_OK) {
		ev_secret_free(buf);
		return rv;
	}
	buf->len = n; /* the whole allocation is still wiped on free */
	*out = buf;
	return CKR_OK;
}

static CK_RV
op_unseal(struct p11_root *r, void *arg)
{
	struct unseal_args *a = arg;
	CK_BYTE_PTR iv = (CK_BYTE_PTR)a->blob + 1;
	CK_BYTE_PTR ct = iv + GCM_IV_LEN;
	CK_ULONG ctlen = a->bloblen - 1 - GCM_IV_LEN;
	ev_secret *buf = NULL;
	CK_GCM_PARAMS gcm;
	CK_MECHANISM mech = {CKM_AES_GCM, &gcm, sizeof(gcm)};
	CK_RV rv;

	memset(&gcm, 0, sizeof(gcm));
	gcm.pIv = iv;
	gcm.ulIvLen = GCM_IV_LEN;
	gcm.ulIvBits = GCM_IV_LEN * 8;
	gcm.pAAD = (CK_BYTE_PTR)a->aad;
	gcm.ulAADLen = a->aadlen;
	gcm.ulTagBits = GCM_TAG_LEN * 8;
	rv = r->f->C_DecryptInit(r->sess, &mech, r->key);
	if (rv != CKR_OK)
		return rv;
	rv = decrypt_into(r, ct, ctlen, &buf);
	if (rv != CKR_OK)
		ev_debug("upstream C_Decrypt answered %s", RVNAME(rv));
	switch (rv) {
	case CKR_OK:
		break;
	case CKR_ENCRYPTED_DATA_INVALID:
	case CKR_ENCRYPTED_DATA_LEN_RANGE:
	case CKR_AEAD_DECRYPT_FAILED:
	/*
	 * SoftHSMv2 answers a GCM tag mismatch with CKR_GENERAL_ERROR (its
	 * final decrypt step fails). The session and key were good a moment
	 * ago, at C_DecryptInit, so at this step it is the data that is bad.
	 */
	case CKR_GENERAL_ERROR:
	case CKR_FUNCTION_FAILED:
		return CKR_ENCRYPTED_DATA_INVALID;
	default:
		return rv;
	}
	if (buf->len != ctlen - GCM_TAG_LEN) {
		ev_error("upstream AES-GCM gave %lu bytes for %lu", (unsigned long)buf->len,
			 (unsigned long)(ctlen - GCM_TAG_LEN));
		ev_secret_free(buf);
		return CKR_DEVICE_ERROR;
	}
	/* An exact-size copy, so the caller's len is the secret's size. */
	a->plain = ev_secret_dup(buf->data, buf->len);
	ev_secret_free(buf);
	return a->plain != NULL ? CKR_OK : CKR_HOST_MEMORY;
}

/*
 * Run op under the backend's lock: connect first when needed (first use
 * in a child after fork), and reconnect and retry once when the answer
 * says the session is gone.
 */
static CK_RV
run(struct p11_root *r, CK_RV (*op)(struct p11_root *, void *), void *arg)
{
	CK_RV rv;

	pthread_mutex_lock(&r->lock);
	if (r->forked || !r->have_sess || r->pid != getpid()) {
		if (r->pid != getpid())
			r->forked = 1; /* the caller forgot ev_root_forked() */
		rv = reconnect(r, CKR_OK);
		if (rv != CKR_OK)
			goto out;
	}
	rv = op(r, arg);
	if (needs_reconnect(rv)) {
		ev_warn("upstream token \"%s\" answered %s; reconnecting", r->token_label,
			RVNAME(rv));
		rv = reconnect(r, rv);
		if (rv == CKR_OK)
			rv = op(r, arg);
	}
	if (rv != CKR_OK && rv != CKR_ENCRYPTED_DATA_INVALID && rv != CKR_HOST_MEMORY)
		ev_error("root operation on upstream token \"%s\" failed: %s", r->token_label,
			 RVNAME(rv));
out:
	pthread_mutex_unlock(&r->lock);
	return map_rv(rv);
}

/* GCM's associated data: SEAL_VERSION || aad. *out malloc'ed. */
static CK_RV
versioned_aad(const unsigned char *aad, size_t aadlen, unsigned char **out)
{
	unsigned char *p;

	*out = NULL;
	if (aadlen > (size_t)1 << 30)
		return CKR_ARGUMENTS_BAD;
	p = malloc(1 + aadlen);
	if (p == NULL)
		return CKR_HOST_MEMORY;
	p[0] = SEAL_VERSION;
	if (aadlen > 0)
		memcpy(p + 1, aad, aadlen);
	*out = p;
	return CKR_OK;
}

static CK_RV
p11_seal(ev_root *base, const unsigned char *aad, size_t aadlen, const ev_secret *plain,
	 const ev_seal_opts *opts, unsigned char **blob, size_t *bloblen)
{
	struct p11_root *r = (struct p11_root *)base;
	unsigned char *gcm_aad = NULL;
	struct seal_args a;
	size_t n;
	CK_RV rv;

	/* No PCRs here, and the upstream token's PIN is its only auth value. */
	if (opts != NULL && (opts->pcrs != 0 || opts->auth != NULL))
		return CKR_ARGUMENTS_BAD;
	if (plain->len > (size_t)1 << 30)
		return CKR_DATA_LEN_RANGE;
	n = SEAL_OVERHEAD + plain->len;
	memset(&a, 0, sizeof(a));
	rv = versioned_aad(aad, aadlen, &gcm_aad);
	if (rv != CKR_OK)
		goto out;
	a.aad = gcm_aad;
	a.aadlen = 1 + aadlen;
	a.plain = plain;
	a.blob = malloc(n);
	if (a.blob == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	a.blob[0] = SEAL_VERSION;
	rv = run(r, op_seal, &a);
	if (rv != CKR_OK)
		goto out;
	*blob = a.blob;
	a.blob = NULL; /* transferred */
	*bloblen = n;
out:
	free(a.blob);
	free(gcm_aad);
	return rv;
}

static CK_RV
p11_unseal(ev_root *base, const unsigned char *aad, size_t aadlen, const unsigned char *blob,
	   size_t bloblen, ev_unseal_opts *opts, ev_secret **plain)
{
	struct p11_root *r = (struct p11_root *)base;
	unsigned char *gcm_aad = NULL;
	struct unseal_args a;
	CK_RV rv;

	if (opts != NULL && opts->auth != NULL)
		return CKR_ARGUMENTS_BAD;
	if (bloblen < SEAL_OVERHEAD || blob[0] != SEAL_VERSION)
		return CKR_ENCRYPTED_DATA_INVALID;
	memset(&a, 0, sizeof(a));
	rv = versioned_aad(aad, aadlen, &gcm_aad);
	if (rv != CKR_OK)
		return rv;
	a.aad = gcm_aad;
	a.aadlen = 1 + aadlen;
	a.blob = blob;
	a.bloblen = bloblen;
	rv = run(r, op_unseal, &a);
	free(gcm_aad);
	if (rv != CKR_OK) {
		ev_secret_free(a.plain);
		return rv;
	}
	*plain = a.plain; /* transferred */
	return CKR_OK;
}

static void
p11_forked(ev_root *base)
{
	struct p11_root *r = (struct p11_root *)base;

	/*
	 * The child has one thread; a lock some other parent thread held at
	 * fork() would stay held forever, so start from a fresh one.
	 */
	if (r->lock_ok && pthread_mutex_init(&r->lock, NULL) != 0)
		ev_warn("cannot reset the root lock after fork");
	/* The parent's sessions are not ours to close: just forget them. */
	r->forked = 1;
	r->have_sess = 0;
	r->key = CK_INVALID_HANDLE;
}

static void
p11_free(ev_root *base)
{
	struct p11_root *r = (struct p11_root *)base;

	if (r->f != NULL)
		drop_session(r);
	if (r->up != NULL)
		up_release(r->up);
	ev_p11kit_release(r->f);
	if (r->lock_ok)
		pthread_mutex_destroy(&r->lock);
	free(r->module);
	free(r->token_label);
	free(r->key_label);
	free(r->pin_file);
	free(r->pin_env);
	free(r->lock_path);
	ev_secret_free(r->pin_memo);
	free(r);
}

static const struct ev_root_ops p11_ops = {
    .name = "pkcs11",
    .seal = p11_seal,
    .unseal = p11_unseal,
    .forked = p11_forked,
    .free = p11_free,
};

static int
dup_opt(char **dst, const char *src)
{
	if (src == NULL)
		return 0;
	*dst = strdup(src);
	return *dst == NULL ? -1 : 0;
}

CK_RV
ev_root_pkcs11_open(const ev_config *cfg, unsigned flags, ev_root **out, char *err, size_t errlen)
{
	struct p11_root *r = NULL;
	const char *key_label;
	CK_RV rv;
	int lock;

	if (out == NULL || cfg == NULL)
		return CKR_ARGUMENTS_BAD;
	*out = NULL;
	if (cfg->root_module == NULL || cfg->root_token_label == NULL) {
		ev_errf(err, errlen,
			"[root] module and token_label are required for the "
			"pkcs11 root");
		return CKR_GENERAL_ERROR;
	}
	if (strlen(cfg->root_token_label) > TOKEN_LABEL_LEN) {
		ev_errf(err, errlen, "[root] token_label \"%s\" is longer than 32 bytes",
			cfg->root_token_label);
		return CKR_GENERAL_ERROR;
	}
	if (cfg->root_pin_file == NULL && cfg->root_pin_env == NULL) {
		ev_errf(err, errlen, "[root] pin_file or pin_env is required for the pkcs11 root");
		return CKR_GENERAL_ERROR;
	}
	key_label = cfg->root_key_label != NULL ? cfg->root_key_label : "edgevault-root";
	if (*key_label == '\0') {
		ev_errf(err, errlen, "[root] key_label is empty");
		return CKR_GENERAL_ERROR;
	}

	rv = CKR_HOST_MEMORY;
	ev_errf(err, errlen, "out of memory");
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		goto out;
	r->base.ops = &p11_ops;
	r->key = CK_INVALID_HANDLE;
	if (pthread_mutex_init(&r->lock, NULL) != 0)
		goto out;
	r->lock_ok = 1;
	r->pin_memo = ev_secret_new(PIN_MEMO_KEY + PIN_MEMO_TAG);
	if (r->pin_memo == NULL)
		goto out;
	crypto_generichash_keygen(r->pin_memo->data);
	if (dup_opt(&r->module, cfg->root_module) != 0 ||
	    dup_opt(&r->token_label, cfg->root_token_label) != 0 ||
	    dup_opt(&r->key_label, key_label) != 0 ||
	    dup_opt(&r->pin_file, cfg->root_pin_file) != 0 ||
	    dup_opt(&r->pin_env, cfg->root_pin_env) != 0)
		goto out;
	if (cfg->store_dir != NULL && asprintf(&r->lock_path, "%s/root.lock", cfg->store_dir) < 0) {
		r->lock_path = NULL;
		goto out;
	}

	r->f = ev_p11kit_load(r->module, err, errlen);
	if (r->f == NULL) {
		rv = CKR_DEVICE_ERROR;
		goto out;
	}
	lock = connect_lock(r);
	rv = up_acquire(r->f, &r->up);
	if (rv != CKR_OK) {
		connect_unlock(lock);
		ev_errf(err, errlen, "upstream module %s: C_Initialize failed: %s", r->module,
			RVNAME(rv));
		rv = map_rv(rv) == CKR_HOST_MEMORY ? rv : CKR_DEVICE_ERROR;
		goto out;
	}
	r->pid = getpid();
	rv = connect_token(r, flags, err, errlen);
	connect_unlock(lock);
	if (rv != CKR_OK)
		goto out;
	*out = &r->base;
	r = NULL; /* transferred */
	if (err != NULL && errlen > 0)
		err[0] = '\0';
out:
	if (r != NULL)
		p11_free(&r->base);
	return rv;
}
