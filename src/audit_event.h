/*
 * Helpers for the places that write audit events (audit.h): an object's
 * identity copied out of its attributes, a refusal's words, and a batch
 * of events gathered inside a store transaction and written only once it
 * has committed (a rolled back change is never recorded).
 *
 * Nothing here reads or copies a secret: identities are class, key type,
 * label, CKA_ID, generation and handle, taken from attribute lists, which
 * never hold key material (attr.h).
 */
#ifndef EV_AUDIT_EVENT_H
#define EV_AUDIT_EVENT_H

#include "attr.h"
#include "audit.h"
#include "common.h"
#include "store.h"

struct ev_object;
struct ev_token;

/* An object's identity for an event, with its own copies of label and CKA_ID. */
typedef struct ev_audit_ident {
	ev_audit_object obj;  /* what an event points to; its label and ckid point below */
	unsigned char *label; /* malloc'ed, or NULL */
	unsigned char *ckid;  /* malloc'ed, or NULL */
} ev_audit_ident;

/*
 * Fill *id from an attribute list: class cls, CKA_KEY_TYPE, CKA_LABEL,
 * CKA_ID, the handle and generation given (0: none). The caller holds
 * whatever guards attrs; *id does not point into it. A copy that cannot
 * be made (out of memory) leaves that member absent. Clear with
 * ev_audit_ident_clear().
 */
void ev_audit_ident_attrs(ev_audit_ident *id, int64_t handle, CK_OBJECT_CLASS cls,
			  const ev_attrs *attrs, int64_t generation);

/* The same from an object, under its read lock (taken here: call without it). */
void ev_audit_ident_object(ev_audit_ident *id, struct ev_object *o);

/* The same from a store record. */
void ev_audit_ident_rec(ev_audit_ident *id, const ev_obj_rec *r);

/* Free the copies. NULL, or a zeroed *id, is a no-op. */
void ev_audit_ident_clear(ev_audit_ident *id);

/*
 * Who is logged in to a token in this process, as an event's "user":
 * CKU_SO, CKU_USER, or CK_UNAVAILABLE_INFORMATION for nobody.
 */
CK_USER_TYPE ev_audit_user(const struct ev_token *t);

/*
 * A failed check's words for "reason": "wrong PIN", "PIN locked",
 * "evidence refused", ... ; "error" for a code without words of its own.
 */
const char *ev_audit_reason(CK_RV rv);

/*
 * Refused (a check said no: wrong PIN, locked, evidence refused, PIN not
 * set) or failed (anything else) for a code other than CKR_OK.
 */
ev_audit_outcome ev_audit_outcome_of(CK_RV rv);

/* Write one event through ev_audit_emit(): a shorthand for the common members. */
void ev_audit_note(const char *kind, ev_audit_outcome outcome, int64_t zone, CK_USER_TYPE user,
		   const ev_audit_object *object, const char *reason, const ev_audit_detail *detail,
		   size_t ndetail);

/* The most detail members an event in a batch may have. */
#define EV_AUDIT_BATCH_DETAIL 4

/*
 * Events gathered inside a transaction. Zero-initialise; add while the
 * transaction runs; after the commit, ev_audit_batch_emit(); after a
 * rollback, ev_audit_batch_clear().
 *
 * Gathering never fails the transaction: an audit line must not undo the
 * key operation it records. An event that cannot be copied (out of
 * memory) is lost: logged (ev_error) at once, and counted; the emit then
 * writes, after the events gathered, one line in its place: the first
 * lost event's kind, outcome "failed", reason EV_AUDIT_LOST_REASON, its
 * zone (0 when the lost events were of several zones) and detail "lost":
 * how many. That line is made from the batch's counts alone (no copy to
 * fail), but writing it takes the writer's memory like any line: when
 * that fails too, the writer counts it in turn (audit.h, "Failure").
 */
typedef struct ev_audit_batch {
	struct ev_audit_pending *v;
	size_t n, cap;
	size_t lost;           /* events that could not be gathered */
	const char *lost_kind; /* the first one's kind (a string constant) */
	int64_t lost_zone;     /* their zone, 0 when several */
} ev_audit_batch;

/* The reason of the line written in place of lost ones. */
#define EV_AUDIT_LOST_REASON "audit lines lost: out of memory"

/*
 * Add a copy of e (its reason, object label and CKA_ID, detail strings
 * copied; e->event and detail names must be string constants). Out of
 * memory: e is lost, as said above. Detail members beyond
 * EV_AUDIT_BATCH_DETAIL are dropped (logged).
 */
void ev_audit_batch_add(ev_audit_batch *b, const ev_audit_event *e);

/*
 * Write every event in order, between ev_audit_hold() and
 * ev_audit_release() (one sync for the lot), then the line for lost
 * events if any, then clear the batch. NULL is a no-op.
 */
void ev_audit_batch_emit(ev_audit_batch *b);

/* Drop every event unwritten. NULL or empty is a no-op. */
void ev_audit_batch_clear(ev_audit_batch *b);

#endif
