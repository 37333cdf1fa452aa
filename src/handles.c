#include <stdlib.h>

#include "handles.h"

#define EV_MAP_TOMB ((CK_ULONG)-1)

static size_t
slot_of(CK_ULONG key, size_t cap)
{
	/* Fibonacci hashing spreads sequential handles over the table. */
	unsigned long long h = (unsigned long long)key * 0x9E3779B97F4A7C15ULL;

	return (size_t)(h >> 17) & (cap - 1);
}

void
ev_map_clear(ev_map *m)
{
	free(m->keys);
	free(m->vals);
	m->keys = NULL;
	m->vals = NULL;
	m->cap = m->used = m->live = 0;
}

static CK_RV
grow(ev_map *m)
{
	size_t cap = 16, i;
	ev_map n = { 0 };

	/* Rehashing drops the tombstones; size for at most half full. */
	while ((m->live + 1) * 2 > cap)
		cap *= 2;
	n.keys = calloc(cap, sizeof(*n.keys));
	n.vals = calloc(cap, sizeof(*n.vals));
	if (n.keys == NULL || n.vals == NULL) {
		free(n.keys);
		free(n.vals);
		return CKR_HOST_MEMORY;
	}
	n.cap = cap;
	for (i = 0; i < m->cap; i++) {
		CK_ULONG k = m->keys[i];
		size_t s;

		if (k == 0 || k == EV_MAP_TOMB)
			continue;
		for (s = slot_of(k, cap); n.keys[s] != 0; s = (s + 1) & (cap - 1))
			;
		n.keys[s] = k;
		n.vals[s] = m->vals[i];
		n.used++;
		n.live++;
	}
	ev_map_clear(m);
	*m = n;
	return CKR_OK;
}

CK_RV
ev_map_put(ev_map *m, CK_ULONG key, void *val)
{
	size_t s, tomb = (size_t)-1;
	CK_RV rv;

	if (key == 0 || key == EV_MAP_TOMB)
		return CKR_ARGUMENTS_BAD;
	/* Keep at most three quarters of the slots used, tombstones included. */
	if ((m->used + 1) * 4 > m->cap * 3) {
		rv = grow(m);
		if (rv != CKR_OK)
			return rv;
	}
	for (s = slot_of(key, m->cap);; s = (s + 1) & (m->cap - 1)) {
		if (m->keys[s] == key) {
			m->vals[s] = val;
			return CKR_OK;
		}
		if (m->keys[s] == EV_MAP_TOMB && tomb == (size_t)-1)
			tomb = s;
		if (m->keys[s] == 0)
			break;
	}
	if (tomb != (size_t)-1)
		s = tomb;
	else
		m->used++;
	m->keys[s] = key;
	m->vals[s] = val;
	m->live++;
	return CKR_OK;
}

static size_t
find(const ev_map *m, CK_ULONG key)
{
	size_t s;

	if (m->cap == 0 || key == 0 || key == EV_MAP_TOMB)
		return (size_t)-1;
	for (s = slot_of(key, m->cap); m->keys[s] != 0; s = (s + 1) & (m->cap - 1))
		if (m->keys[s] == key)
			return s;
	return (size_t)-1;
}

void *
ev_map_get(const ev_map *m, CK_ULONG key)
{
	size_t s = find(m, key);

	return s == (size_t)-1 ? NULL : m->vals[s];
}

void *
ev_map_del(ev_map *m, CK_ULONG key)
{
	size_t s = find(m, key);
	void *v;

	if (s == (size_t)-1)
		return NULL;
	v = m->vals[s];
	m->keys[s] = EV_MAP_TOMB;
	m->vals[s] = NULL;
	m->live--;
	return v;
}

void
ev_map_each(const ev_map *m, void (*fn)(CK_ULONG key, void *val, void *arg), void *arg)
{
	size_t i;

	for (i = 0; i < m->cap; i++)
		if (m->keys[i] != 0 && m->keys[i] != EV_MAP_TOMB)
			fn(m->keys[i], m->vals[i], arg);
}
