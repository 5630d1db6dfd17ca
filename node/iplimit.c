#include "iplimit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "gcra.h"
#include "ws_hash.h"

struct ip_entry {
    ip_entry *next;
    uint64_t hash;
    uint8_t addr[16]; /* IPv4 as ::ffff:a.b.c.d */
    uint32_t conns;
    double tat; /* GCRA: when the next connection is due at the steady rate */
};

struct ip_table {
    ip_entry **b;
    size_t cap, n;
    int max_conns, rate;
    uint64_t key[2];
};

#define BURST_SECONDS 10.0

ip_table *ipl_new(int max_conns, int rate, const uint8_t key[16])
{
    ip_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->max_conns = max_conns;
    t->rate = rate;
    ws_siphash_key(t->key, key);
    return t;
}

void ipl_free(ip_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->cap; i++)
        for (ip_entry *e = t->b[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(t->b);
    free(t);
}

static void addr16(const struct sockaddr_storage *a, uint8_t out[16])
{
    memset(out, 0, 16);
    if (a->ss_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)a)->sin6_addr, 16);
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        static const uint8_t loop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        if (memcmp(out, v4mapped, 12) != 0 && memcmp(out, loop6, 16) != 0)
            memset(out + 8, 0, 8); /* one IPv6 host holds a /64: limit the /64, not each address */
    } else if (a->ss_family == AF_INET) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)a)->sin_addr, 4);
    }
}

bool ipl_loopback(const struct sockaddr_storage *a)
{
    uint8_t x[16];
    addr16(a, x);
    static const uint8_t v4[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return (memcmp(x, v4, 12) == 0 && x[12] == 127) || memcmp(x, one, 16) == 0;
}

static int grow(ip_table *t)
{
    size_t cap = t->cap ? t->cap * 2 : 256;
    ip_entry **b = calloc(cap, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < t->cap; i++)
        for (ip_entry *e = t->b[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (cap - 1)];
            b[e->hash & (cap - 1)] = e;
        }
    free(t->b);
    t->b = b;
    t->cap = cap;
    return 0;
}

ip_entry *ipl_admit(ip_table *t, const struct sockaddr_storage *addr, double now, const char **why)
{
    uint8_t x[16];
    addr16(addr, x);
    uint64_t h = ws_siphash(t->key, x, 16);
    ip_entry *e = NULL;
    if (t->cap)
        for (e = t->b[h & (t->cap - 1)]; e && (e->hash != h || memcmp(e->addr, x, 16)); e = e->next)
            ;
    if (!e) {
        if ((t->n >= t->cap && grow(t) < 0) || !(e = calloc(1, sizeof *e))) {
            *why = "out of memory";
            return NULL;
        }
        e->hash = h;
        memcpy(e->addr, x, 16);
        e->next = t->b[h & (t->cap - 1)];
        t->b[h & (t->cap - 1)] = e;
        t->n++;
    }
    if (t->max_conns && e->conns >= (uint32_t)t->max_conns) {
        *why = "too many connections from this address";
        return NULL;
    }
    if (t->rate && !gcra_admit(&e->tat, now, t->rate, BURST_SECONDS * t->rate)) {
        *why = "connecting too fast";
        return NULL;
    }
    e->conns++;
    return e;
}

void ipl_release(ip_table *t, ip_entry *e, double now)
{
    (void)t;
    (void)now;
    if (e && e->conns)
        e->conns--;
}

void ipl_sweep(ip_table *t, double now)
{
    for (size_t i = 0; i < t->cap; i++)
        for (ip_entry **pp = &t->b[i]; *pp;) {
            ip_entry *e = *pp;
            if (e->conns == 0 && e->tat <= now) {
                *pp = e->next;
                free(e);
                t->n--;
            } else {
                pp = &e->next;
            }
        }
}
