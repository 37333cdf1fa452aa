/*
 * Per-key use counters (uses.h).
 *
 * Pending counts travel in ev_use_pending nodes: a snapshot of one object
 * (its identity and its deltas). A flush makes one per object with
 * counts, takes the nodes freed objects left (a Treiber stack: pushes
 * race only with one another and with a flush taking the whole stack at
 * once, so there is no ABA), and writes them all in one transaction.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "module.h"
#include "object.h"
#include "uses.h"

typedef struct ev_use_pending {
	struct ev_use_pending *next;
	ev_use_rec id;              /* the key's identity; count and last_use unused */
	int64_t count[EV_USE_OPS];
	int64_t last[EV_USE_OPS];
} ev_use_pending;

atomic_int ev_uses_on;

/* Counts of objects freed since the last flush, and of a flush that failed. */
static _Atomic(ev_use_pending *) kept;

static const char *const op_names[EV_USE_OPS] = {
    [EV_USE_SIGN] = "sign",
    [EV_USE_VERIFY] = "verify",
    [EV_USE_ENCRYPT] = "encrypt",
    [EV_USE_DECRYPT] = "decrypt",
    [EV_USE_WRAP] = "wrap",
    [EV_USE_UNWRAP] = "unwrap",
    [EV_USE_DERIVE] = "derive",
};

void
ev_use_enable(int on)
{
	atomic_store_explicit(&ev_uses_on, on != 0, memory_order_relaxed);
}

const char *
ev_use_op_name(ev_use_op op)
{
	return op < EV_USE_OPS ? op_names[op] : "unknown";
}

static void
pending_free(ev_use_pending *p)
{
	if (p == NULL)
		return;
	ev_use_rec_clear(&p->id);
	free(p);
}

static void
push(ev_use_pending *p)
{
	p->next = atomic_load(&kept);
	while (!atomic_compare_exchange_weak(&kept, &p->next, p))
		;
}

/* Whether an object has counts waiting. */
static int
has_counts(ev_object *o)
{
	int i;

	for (i = 0; i < EV_USE_OPS; i++)
		if (atomic_load_explicit(&o->uses[i], memory_order_relaxed) != 0)
			return 1;
	return 0;
}

/* A copy of an attribute's bytes, or NULL (absent, or out of memory: *bad set). */
static unsigned char *
attr_copy(const ev_attrs *a, CK_ATTRIBUTE_TYPE type, size_t *len, int *bad)
{
	const CK_ATTRIBUTE *at = ev_attrs_get(a, type);
	unsigned char *p;

	*len = 0;
	if (at == NULL)
		return NULL;
	p = malloc(at->ulValueLen > 0 ? at->ulValueLen : 1);
	if (p == NULL) {
		*bad = 1;
		return NULL;
	}
	if (at->ulValueLen > 0)
		memcpy(p, at->pValue, at->ulValueLen);
	*len = at->ulValueLen;
	return p;
}

/*
 * Take an object's counts (they restart from zero) into a new node, with
 * its identity read from attrs (the caller holds what keeps them stable).
 * NULL when it has none, or when out of memory (the counts stay put).
 */
static ev_use_pending *
take(ev_object *o, const ev_attrs *attrs)
{
	ev_use_pending *p;
	int64_t total = 0;
	int i, bad = 0;

	if (!o->on_token || !has_counts(o))
		return NULL;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->id.object = (int64_t)o->handle;
	p->id.zone = o->token->id;
	p->id.cls = o->cls;
	p->id.generation = o->generation;
	p->id.label = attr_copy(attrs, CKA_LABEL, &p->id.label_len, &bad);
	p->id.ckid = attr_copy(attrs, CKA_ID, &p->id.ckid_len, &bad);
	if (bad) {
		pending_free(p);
		return NULL;
	}
	for (i = 0; i < EV_USE_OPS; i++) {
		p->count[i] = (int64_t)atomic_exchange_explicit(&o->uses[i], 0,
		    memory_order_relaxed);
		p->last[i] = atomic_load_explicit(&o->last_use[i], memory_order_relaxed);
		total += p->count[i];
	}
	if (total == 0) {
		pending_free(p);
		return NULL;
	}
	return p;
}

void
ev_use_keep(ev_object *o)
{
	ev_use_pending *p;

	if (ev_mod == NULL || ev_mod->pid != getpid() || !o->on_token || !has_counts(o))
		return;
	/* The last reference is ours: nobody else reads or changes the attributes now. */
	p = take(o, o->attrs);
	if (p == NULL) {
		if (has_counts(o))
			ev_error("use counts of object %lu lost: out of memory",
			    (unsigned long)o->handle);
		return;
	}
	push(p);
}

struct collect {
	ev_object **v;
	size_t n;
};

static void
collect_cb(CK_ULONG key, void *val, void *arg)
{
	struct collect *c = arg;
	ev_object *o = val;

	if (o->on_token && has_counts(o)) {
		atomic_fetch_add(&o->refs, 1);
		c->v[c->n++] = o;
	}
}

/* Nodes for the loaded objects with counts, pushed onto *list. */
static CK_RV
take_loaded(ev_use_pending **list)
{
	struct collect c = { NULL, 0 };
	ev_use_pending *p;
	size_t i;
	CK_RV rv;

	rv = ev_rwlock_rdlock(ev_mod->lock);
	if (rv != CKR_OK)
		return rv;
	c.v = calloc(ev_mod->objects.live + 1, sizeof(*c.v));
	if (c.v != NULL)
		ev_map_each(&ev_mod->objects, collect_cb, &c);
	ev_rwlock_unlock(ev_mod->lock);
	if (c.v == NULL)
		return CKR_HOST_MEMORY;
	for (i = 0; i < c.n; i++) {
		if (ev_rwlock_rdlock(c.v[i]->lock) == CKR_OK) {
			p = take(c.v[i], c.v[i]->attrs);
			ev_rwlock_unlock(c.v[i]->lock);
			if (p != NULL) {
				p->next = *list;
				*list = p;
			}
		}
		ev_object_put(c.v[i]);
	}
	free(c.v);
	return CKR_OK;
}

/* Add the nodes' counts to the store, in one transaction. */
static CK_RV
write_all(ev_use_pending *list)
{
	ev_use_pending *p;
	ev_use_rec r;
	int i;
	CK_RV rv;

	rv = ev_mutex_lock(ev_mod->store_lock);
	if (rv != CKR_OK)
		return rv;
	rv = ev_store_begin(ev_mod->store);
	for (p = list; rv == CKR_OK && p != NULL; p = p->next) {
		r = p->id;
		for (i = 0; rv == CKR_OK && i < EV_USE_OPS; i++) {
			if (p->count[i] == 0)
				continue;
			snprintf(r.op, sizeof(r.op), "%s", op_names[i]);
			r.count = p->count[i];
			r.last_use = p->last[i];
			rv = ev_store_use_add(ev_mod->store, &r);
		}
	}
	if (rv == CKR_OK)
		rv = ev_store_commit(ev_mod->store);
	if (rv != CKR_OK)
		(void)ev_store_rollback(ev_mod->store);
	ev_mutex_unlock(ev_mod->store_lock);
	return rv;
}

static int
by_object(const void *a, const void *b)
{
	const ev_use_pending *x = *(ev_use_pending *const *)a, *y = *(ev_use_pending *const *)b;

	return (x->id.object > y->id.object) - (x->id.object < y->id.object);
}

/*
 * Put a list that could not be written back for the next flush, one node
 * per object: the counts of nodes of one object (a failed flush's, with
 * the new ones taken since) added up, so a store that keeps failing
 * holds one node per key, not one per key and failed flush. Out of
 * memory to sort: put back as it is (nothing is lost; merged next time).
 * The number of nodes put back.
 */
static size_t
put_back(ev_use_pending *list)
{
	ev_use_pending **v, *p, *next;
	size_t n = 0, i, kept_n = 0;
	int op;

	for (p = list; p != NULL; p = p->next)
		n++;
	v = calloc(n, sizeof(*v));
	if (v == NULL) {
		for (p = list; p != NULL; p = next) {
			next = p->next;
			push(p);
		}
		return n;
	}
	for (p = list, i = 0; p != NULL; p = p->next)
		v[i++] = p;
	qsort(v, n, sizeof(*v), by_object);
	for (i = 0; i < n; i++) {
		p = v[i];
		/* The later nodes of the same object fold into the first. */
		while (i + 1 < n && v[i + 1]->id.object == p->id.object) {
			i++;
			for (op = 0; op < EV_USE_OPS; op++) {
				p->count[op] += v[i]->count[op];
				if (v[i]->last[op] > p->last[op])
					p->last[op] = v[i]->last[op];
			}
			pending_free(v[i]);
		}
		push(p);
		kept_n++;
	}
	free(v);
	return kept_n;
}

CK_RV
ev_use_flush(void)
{
	ev_use_pending *list, *p, *next;
	CK_RV rv, rv2;

	list = atomic_exchange(&kept, NULL);
	rv = take_loaded(&list);
	if (list == NULL)
		return rv;
	rv2 = write_all(list);
	if (rv2 != CKR_OK) {
		ev_warn("use counts of %zu keys could not be written to the store; kept for the "
			"next flush",
		    put_back(list));
		return rv2;
	}
	for (p = list; p != NULL; p = next) {
		next = p->next;
		pending_free(p);
	}
	return rv;
}

void
ev_use_discard(void)
{
	ev_use_pending *p = atomic_exchange(&kept, NULL), *next;
	size_t n = 0;

	for (; p != NULL; p = next) {
		next = p->next;
		pending_free(p);
		n++;
	}
	if (n > 0 && ev_mod != NULL && ev_mod->pid == getpid())
		ev_warn("use counts of %zu keys were not written", n);
}
