/*
 * A map from handles (CK_ULONG, never 0) to pointers: open addressing with
 * linear probing, so lookups on the hot path touch one or two cache lines
 * and allocate nothing. Not thread-safe: the owner locks.
 */
#ifndef EV_HANDLES_H
#define EV_HANDLES_H

#include "common.h"

typedef struct ev_map {
	CK_ULONG *keys; /* 0 = empty, EV_MAP_TOMB = deleted */
	void **vals;
	size_t cap;     /* a power of two, or 0 */
	size_t used;    /* live + tombstones */
	size_t live;
} ev_map;

/* An empty map needs no set-up: ev_map m = {0}. */
void ev_map_clear(ev_map *m);

/* Insert or replace. CKR_HOST_MEMORY. key must not be 0. */
CK_RV ev_map_put(ev_map *m, CK_ULONG key, void *val);

/* The value, or NULL. */
void *ev_map_get(const ev_map *m, CK_ULONG key);

/* Remove and return the value (NULL if absent). */
void *ev_map_del(ev_map *m, CK_ULONG key);

/* Visit every entry; fn may not change the map. */
void ev_map_each(const ev_map *m, void (*fn)(CK_ULONG key, void *val, void *arg), void *arg);

#endif
