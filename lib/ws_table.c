#include "ws_table.h"

#include <stdlib.h>
#include <string.h>

#include "ws_hash.h"

void tab_init(table *t, const uint64_t key[2])
{
    memset(t, 0, sizeof *t);
    t->key[0] = key[0];
    t->key[1] = key[1];
}

void tab_free(table *t)
{
    free(t->b);
    t->b = NULL;
    t->cap = t->n = 0;
}

tab_entry *tab_get(const table *t, const char *k, size_t n)
{
    if (!t->cap)
        return NULL;
    uint32_t h = (uint32_t)ws_siphash(t->key, k, n);
    for (tab_entry *e = t->b[h & (t->cap - 1)]; e; e = e->next)
        if (e->hash == h && e->klen == n && memcmp(e->key, k, n) == 0)
            return e;
    return NULL;
}

static int grow(table *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    tab_entry **b = calloc(cap, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < t->cap; i++)
        for (tab_entry *e = t->b[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (cap - 1)];
            b[e->hash & (cap - 1)] = e;
        }
    free(t->b);
    t->b = b;
    t->cap = cap;
    return 0;
}

int tab_put(table *t, tab_entry *e)
{
    if (t->n >= t->cap && grow(t) < 0)
        return -1;
    e->hash = (uint32_t)ws_siphash(t->key, e->key, e->klen);
    tab_entry **slot = &t->b[e->hash & (t->cap - 1)];
    e->next = *slot;
    *slot = e;
    t->n++;
    return 0;
}

void tab_del(table *t, tab_entry *e)
{
    tab_entry **pp = &t->b[e->hash & (t->cap - 1)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    t->n--;
}

void tab_each(table *t, void (*fn)(tab_entry *e, void *ctx), void *ctx)
{
    for (size_t i = 0; i < t->cap; i++)
        for (tab_entry *e = t->b[i], *next; e; e = next) {
            next = e->next;
            fn(e, ctx);
        }
}
