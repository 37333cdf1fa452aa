/* Helpers for the places that write audit events (audit_event.h). */
#include <stdlib.h>
#include <string.h>

#include "audit_event.h"
#include "log.h"
#include "object.h"
#include "token.h"

/* One event of a batch, with its own copies of what it points to. */
struct ev_audit_pending {
	ev_audit_event e;
	ev_audit_ident ident;
	ev_audit_detail detail[EV_AUDIT_BATCH_DETAIL];
	char *reason;
	char *str[EV_AUDIT_BATCH_DETAIL]; /* the detail strings' copies */
};

/* A copy of len bytes (NULL for none, or when out of memory). */
static unsigned char *
dup_bytes(const void *p, size_t len)
{
	unsigned char *c;

	if (p == NULL || len == 0)
		return NULL;
	c = malloc(len);
	if (c != NULL)
		memcpy(c, p, len);
	return c;
}

/* Copy label and CKA_ID into id, pointing id->obj at the copies. */
static void
ident_bytes(ev_audit_ident *id, const void *label, size_t label_len, const void *ckid,
	    size_t ckid_len)
{
	id->label = dup_bytes(label, label_len);
	id->ckid = dup_bytes(ckid, ckid_len);
	id->obj.label = id->label;
	id->obj.label_len = id->label != NULL ? label_len : 0;
	id->obj.ckid = id->ckid;
	id->obj.ckid_len = id->ckid != NULL ? ckid_len : 0;
}

void
ev_audit_ident_attrs(ev_audit_ident *id, int64_t handle, CK_OBJECT_CLASS cls, const ev_attrs *attrs,
		     int64_t generation)
{
	const CK_ATTRIBUTE *label = NULL, *ckid = NULL;
	CK_ULONG kt = CK_UNAVAILABLE_INFORMATION;

	memset(id, 0, sizeof(*id));
	id->obj.handle = handle;
	id->obj.cls = cls;
	id->obj.generation = generation;
	if (attrs != NULL) {
		if (ev_attrs_ulong(attrs, CKA_KEY_TYPE, &kt) != CKR_OK)
			kt = CK_UNAVAILABLE_INFORMATION;
		label = ev_attrs_get(attrs, CKA_LABEL);
		ckid = ev_attrs_get(attrs, CKA_ID);
	}
	id->obj.key_type = kt;
	ident_bytes(id, label != NULL ? label->pValue : NULL, label != NULL ? label->ulValueLen : 0,
		    ckid != NULL ? ckid->pValue : NULL, ckid != NULL ? ckid->ulValueLen : 0);
}

void
ev_audit_ident_object(ev_audit_ident *id, ev_object *o)
{
	const ev_attrs *attrs = NULL;
	int locked = ev_rwlock_rdlock(o->lock) == CKR_OK;

	/* Without the lock, the attributes may be replaced under us: name the handle only. */
	if (locked)
		attrs = o->attrs;
	ev_audit_ident_attrs(id, (int64_t)o->handle, o->cls, attrs, o->generation);
	if (locked)
		ev_rwlock_unlock(o->lock);
}

void
ev_audit_ident_rec(ev_audit_ident *id, const ev_obj_rec *r)
{
	ev_audit_ident_attrs(id, r->id, r->cls, r->attrs, r->generation);
}

void
ev_audit_ident_clear(ev_audit_ident *id)
{
	if (id == NULL)
		return;
	free(id->label);
	free(id->ckid);
	memset(id, 0, sizeof(*id));
}

CK_USER_TYPE
ev_audit_user(const ev_token *t)
{
	CK_USER_TYPE who = atomic_load(&t->login);

	return who == EV_NOBODY ? CK_UNAVAILABLE_INFORMATION : who;
}

const char *
ev_audit_reason(CK_RV rv)
{
	switch (rv) {
	case CKR_PIN_INCORRECT:
		return "wrong PIN";
	case CKR_PIN_LOCKED:
		return "PIN locked";
	case CKR_FUNCTION_REJECTED:
		return "evidence refused";
	case CKR_USER_PIN_NOT_INITIALIZED:
		return "PIN not initialised";
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_DEVICE_REMOVED:
		return "zone gone";
	case CKR_DEVICE_ERROR:
		return "device error";
	case CKR_SESSION_READ_ONLY_EXISTS:
		return "a read-only session exists";
	case CKR_HOST_MEMORY:
		return "out of memory";
	default:
		return "error";
	}
}

ev_audit_outcome
ev_audit_outcome_of(CK_RV rv)
{
	switch (rv) {
	case CKR_PIN_INCORRECT:
	case CKR_PIN_LOCKED:
	case CKR_FUNCTION_REJECTED:
	case CKR_USER_PIN_NOT_INITIALIZED:
		return EV_AUDIT_REFUSED;
	default:
		return EV_AUDIT_FAILED;
	}
}

void
ev_audit_note(const char *kind, ev_audit_outcome outcome, int64_t zone, CK_USER_TYPE user,
	      const ev_audit_object *object, const char *reason, const ev_audit_detail *detail,
	      size_t ndetail)
{
	ev_audit_event e = EV_AUDIT_EVENT_INIT(kind, outcome);

	e.zone = zone;
	e.user = user;
	e.object = object;
	e.reason = reason;
	e.detail = detail;
	e.ndetail = ndetail;
	ev_audit_emit(&e);
}

static void
pending_clear(struct ev_audit_pending *p)
{
	size_t i;

	ev_audit_ident_clear(&p->ident);
	free(p->reason);
	for (i = 0; i < EV_AUDIT_BATCH_DETAIL; i++)
		free(p->str[i]);
}

/* Copy e into p (zeroed); 0, or -1 when out of memory (p cleared). */
static int
pending_fill(struct ev_audit_pending *p, const ev_audit_event *e, size_t ndetail)
{
	size_t i;

	p->e = *e;
	if (e->reason != NULL && (p->reason = strdup(e->reason)) == NULL)
		goto fail;
	p->e.reason = p->reason;
	if (e->object != NULL) {
		p->ident.obj = *e->object;
		ident_bytes(&p->ident, e->object->label, e->object->label_len, e->object->ckid,
			    e->object->ckid_len);
		if ((e->object->label_len > 0 && p->ident.label == NULL) ||
		    (e->object->ckid_len > 0 && p->ident.ckid == NULL))
			goto fail;
		p->e.object = &p->ident.obj;
	}
	for (i = 0; i < ndetail; i++) {
		p->detail[i] = e->detail[i];
		if (e->detail[i].str != NULL && (p->str[i] = strdup(e->detail[i].str)) == NULL)
			goto fail;
		p->detail[i].str = p->str[i];
	}
	p->e.ndetail = ndetail;
	p->e.detail = ndetail > 0 ? p->detail : NULL;
	return 0;
fail:
	pending_clear(p);
	return -1;
}

void
ev_audit_batch_add(ev_audit_batch *b, const ev_audit_event *e)
{
	size_t ndetail = e->ndetail;

	if (ndetail > EV_AUDIT_BATCH_DETAIL) {
		ev_error("audit: a %s event has %zu detail members; the first %d are kept",
			 e->event, ndetail, EV_AUDIT_BATCH_DETAIL);
		ndetail = EV_AUDIT_BATCH_DETAIL;
	}
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16;
		struct ev_audit_pending *v = realloc(b->v, cap * sizeof(*v));

		size_t i;

		if (v == NULL)
			goto lost;
		/* The pending events point into their own slots: follow the move. */
		for (i = 0; i < b->n; i++) {
			if (v[i].e.object != NULL)
				v[i].e.object = &v[i].ident.obj;
			if (v[i].e.detail != NULL)
				v[i].e.detail = v[i].detail;
		}
		b->v = v;
		b->cap = cap;
	}
	memset(&b->v[b->n], 0, sizeof(b->v[b->n]));
	if (pending_fill(&b->v[b->n], e, ndetail) != 0)
		goto lost;
	b->n++;
	return;
lost:
	ev_error("audit: out of memory; a %s line (zone %lld) is lost", e->event,
		 (long long)e->zone);
	if (b->lost++ == 0) {
		b->lost_kind = e->event;
		b->lost_zone = e->zone;
	} else if (b->lost_zone != e->zone) {
		b->lost_zone = 0;
	}
}

void
ev_audit_batch_emit(ev_audit_batch *b)
{
	ev_audit_event e = EV_AUDIT_EVENT_INIT(NULL, EV_AUDIT_FAILED);
	ev_audit_detail d[] = { { "lost", NULL, 0 } };
	size_t i;

	if (b == NULL || (b->n == 0 && b->lost == 0)) {
		ev_audit_batch_clear(b);
		return;
	}
	ev_audit_hold();
	for (i = 0; i < b->n; i++)
		ev_audit_emit(&b->v[i].e);
	if (b->lost > 0) {
		/* Nothing allocated here: the line that says lines are missing. */
		e.event = b->lost_kind;
		e.zone = b->lost_zone;
		e.reason = EV_AUDIT_LOST_REASON;
		d[0].num = (int64_t)b->lost;
		e.detail = d;
		e.ndetail = EV_ARRAY_SIZE(d);
		ev_audit_emit(&e);
	}
	ev_audit_release();
	ev_audit_batch_clear(b);
}

void
ev_audit_batch_clear(ev_audit_batch *b)
{
	size_t i;

	if (b == NULL)
		return;
	for (i = 0; i < b->n; i++)
		pending_clear(&b->v[i]);
	free(b->v);
	memset(b, 0, sizeof(*b));
}
