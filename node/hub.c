#include "hub.h"

#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "ws_frame.h"
#include "ws_hash.h"

typedef struct hub_ref {
    hub_member *m;
    uint32_t slot; /* index in m->subs */
} hub_ref;

struct hub_channel {
    hub_channel *next;               /* hash chain */
    hub_channel *iprev, *inext;      /* idle list, while n == 0 */
    uint64_t hash;
    uint64_t seq;
    hub_ref *refs;
    uint32_t n, cap;
    uint16_t name_len;
    char name[];
};

/* Channel names come from clients: the hash is SipHash keyed per process, so nobody can fill
 * one bucket with colliding names and stall the worker on every lookup. */
static uint64_t hash_key(const hub *h, ws_span s) { return ws_siphash(h->key, s.p, s.n); }

void hub_init(hub *h, hub_deliver_fn deliver, void *ctx, size_t max_idle, const uint8_t key[16])
{
    memset(h, 0, sizeof *h);
    h->deliver = deliver;
    h->ctx = ctx;
    h->max_idle = max_idle;
    ws_siphash_key(h->key, key);
}

void hub_free(hub *h)
{
    for (size_t i = 0; i < h->nbuckets; i++) {
        hub_channel *c = h->buckets[i];
        while (c) {
            hub_channel *next = c->next;
            free(c->refs);
            free(c);
            c = next;
        }
    }
    free(h->buckets);
    memset(h, 0, sizeof *h);
}

static hub_channel *lookup(const hub *h, ws_span name, uint64_t hash)
{
    if (!h->nbuckets)
        return NULL;
    for (hub_channel *c = h->buckets[hash & (h->nbuckets - 1)]; c; c = c->next)
        if (c->hash == hash && c->name_len == name.n && memcmp(c->name, name.p, name.n) == 0)
            return c;
    return NULL;
}

static int grow_table(hub *h)
{
    size_t nb = h->nbuckets ? h->nbuckets * 2 : 64;
    hub_channel **b = calloc(nb, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < h->nbuckets; i++) {
        hub_channel *c = h->buckets[i];
        while (c) {
            hub_channel *next = c->next;
            c->next = b[c->hash & (nb - 1)];
            b[c->hash & (nb - 1)] = c;
            c = next;
        }
    }
    free(h->buckets);
    h->buckets = b;
    h->nbuckets = nb;
    return 0;
}

static void idle_remove(hub *h, hub_channel *c)
{
    if (c->iprev)
        c->iprev->inext = c->inext;
    else
        h->idle_head = c->inext;
    if (c->inext)
        c->inext->iprev = c->iprev;
    else
        h->idle_tail = c->iprev;
    c->iprev = c->inext = NULL;
    h->nidle--;
}

static void drop_channel(hub *h, hub_channel *c)
{
    idle_remove(h, c);
    hub_channel **pp = &h->buckets[c->hash & (h->nbuckets - 1)];
    while (*pp != c)
        pp = &(*pp)->next;
    *pp = c->next;
    free(c->refs);
    free(c);
    h->nchannels--;
}

/* c has just lost its last subscriber (or was created without one): keep it, newest last,
 * and forget the oldest idle channel beyond max_idle. */
static void idle_push(hub *h, hub_channel *c)
{
    free(c->refs);
    c->refs = NULL;
    c->cap = 0;
    c->iprev = h->idle_tail;
    c->inext = NULL;
    if (h->idle_tail)
        h->idle_tail->inext = c;
    else
        h->idle_head = c;
    h->idle_tail = c;
    h->nidle++;
    if (h->nidle > h->max_idle)
        drop_channel(h, h->idle_head);
}

/* The channel called name, created idle if it does not exist; NULL when out of memory. */
static hub_channel *get(hub *h, ws_span name)
{
    uint64_t hash = hash_key(h, name);
    hub_channel *c = lookup(h, name, hash);
    if (c)
        return c;
    if (h->nchannels >= h->nbuckets && grow_table(h) < 0)
        return NULL;
    c = calloc(1, sizeof *c + name.n);
    if (!c)
        return NULL;
    memcpy(c->name, name.p, name.n);
    c->name_len = (uint16_t)name.n;
    c->hash = hash;
    hub_channel **pp = &h->buckets[hash & (h->nbuckets - 1)];
    c->next = *pp;
    *pp = c;
    h->nchannels++;
    idle_push(h, c);
    return c;
}

int hub_subscribe(hub *h, hub_member *m, ws_span name)
{
    hub_channel *c = lookup(h, name, hash_key(h, name));
    for (uint32_t i = 0; c && i < m->n; i++)
        if (m->subs[i].ch == c)
            return 0;
    if (m->n == m->cap) {
        uint32_t cap = m->cap ? m->cap * 2 : 4;
        hub_sub *s = realloc(m->subs, cap * sizeof *s);
        if (!s)
            return -1;
        m->subs = s;
        m->cap = cap;
    }
    if (!c && !(c = get(h, name)))
        return -1;
    if (c->n == c->cap) {
        uint32_t cap = c->cap ? c->cap * 2 : 4;
        hub_ref *r = realloc(c->refs, cap * sizeof *r);
        if (!r)
            return -1;
        c->refs = r;
        c->cap = cap;
    }
    if (c->n == 0) {
        idle_remove(h, c);
        if (h->on_active)
            h->on_active(h->ctx, (ws_span){c->name, c->name_len}, true);
    }
    c->refs[c->n] = (hub_ref){m, m->n};
    m->subs[m->n] = (hub_sub){c, c->n};
    c->n++;
    m->n++;
    if (h->on_member)
        h->on_member(h->ctx, m, name, true);
    return 1;
}

/* Removes subscription `slot` of m by swapping the last one of each array into its place. */
static void remove_sub(hub *h, hub_member *m, uint32_t slot)
{
    hub_channel *c = m->subs[slot].ch;
    uint32_t idx = m->subs[slot].idx;
    if (h->on_member)
        h->on_member(h->ctx, m, (ws_span){c->name, c->name_len}, false);

    hub_ref last = c->refs[--c->n];
    if (idx != c->n) {
        c->refs[idx] = last;
        last.m->subs[last.slot].idx = idx;
    }
    hub_sub mlast = m->subs[--m->n];
    if (slot != m->n) {
        m->subs[slot] = mlast;
        mlast.ch->refs[mlast.idx].slot = slot;
    }
    if (c->n == 0) {
        if (h->on_active)
            h->on_active(h->ctx, (ws_span){c->name, c->name_len}, false);
        idle_push(h, c);
    }
}

int hub_unsubscribe(hub *h, hub_member *m, ws_span name)
{
    hub_channel *c = lookup(h, name, hash_key(h, name));
    for (uint32_t i = 0; c && i < m->n; i++) {
        if (m->subs[i].ch == c) {
            remove_sub(h, m, i);
            if (m->n == 0) {
                free(m->subs);
                m->subs = NULL;
                m->cap = 0;
            }
            return 1;
        }
    }
    return 0;
}

void hub_leave_all(hub *h, hub_member *m)
{
    while (m->n)
        remove_sub(h, m, m->n - 1);
    free(m->subs);
    m->subs = NULL;
    m->cap = 0;
}

bool hub_is_member(const hub *h, const hub_member *m, ws_span name)
{
    hub_channel *c = lookup(h, name, hash_key(h, name));
    for (uint32_t i = 0; c && i < m->n; i++)
        if (m->subs[i].ch == c)
            return true;
    return false;
}

/* Frames one msg for c at its exact size and hands the same buffer to every subscriber. */
static size_t fan_out(hub *h, hub_channel *c, uint64_t seq, ws_span data)
{
    ws_span name = {c->name, c->name_len};
    size_t plen = env_msg_len(name.n, seq, data.n);
    uint8_t *payload;
    wbuf *b = wbuf_frame(WS_OP_TEXT, plen, &payload);
    if (!b)
        return 0;
    if (env_write_msg((char *)payload, name, seq, data) != plen)
        abort(); /* env_msg_len and env_write_msg disagree: a programming error */
    /* The callback never subscribes or unsubscribes, so the array holds still. */
    for (uint32_t i = 0; i < c->n; i++)
        h->deliver(c->refs[i].m, b, h->ctx);
    wbuf_unref(b);
    return c->n;
}

uint64_t hub_publish(hub *h, ws_span name, ws_span data, size_t *delivered)
{
    *delivered = 0;
    hub_channel *c = get(h, name);
    if (!c)
        return 0;
    uint64_t seq = ++c->seq;
    if (c->n)
        *delivered = fan_out(h, c, seq, data);
    return seq;
}

size_t hub_deliver(hub *h, ws_span name, uint64_t seq, ws_span data)
{
    hub_channel *c = lookup(h, name, hash_key(h, name));
    return c && c->n ? fan_out(h, c, seq, data) : 0;
}

void hub_each_active(const hub *h, void (*fn)(void *ctx, ws_span name), void *ctx)
{
    for (size_t i = 0; i < h->nbuckets; i++)
        for (hub_channel *c = h->buckets[i]; c; c = c->next)
            if (c->n)
                fn(ctx, (ws_span){c->name, c->name_len});
}

size_t hub_count(const hub *h, ws_span name)
{
    hub_channel *c = lookup(h, name, hash_key(h, name));
    return c ? c->n : 0;
}

size_t hub_send(hub *h, ws_span name, wbuf *frame)
{
    hub_channel *c = lookup(h, name, hash_key(h, name));
    if (!c)
        return 0;
    for (uint32_t i = 0; i < c->n; i++)
        h->deliver(c->refs[i].m, frame, h->ctx);
    return c->n;
}

ws_span hub_channel_name(const hub_channel *c) { return (ws_span){c->name, c->name_len}; }

void hub_each_member(const hub *h, ws_span name, void (*fn)(hub_member *m, void *ctx), void *ctx)
{
    hub_channel *c = lookup(h, name, hash_key(h, name));
    for (uint32_t i = 0; c && i < c->n; i++)
        fn(c->refs[i].m, ctx);
}
