#include "iplimit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "gcra.h"
#include "ws_hash.h"
#include "ws_list.h"
#include "ws_table.h"

struct ip_entry {
    tab_entry e;      /* keyed by addr */
    uint8_t addr[16]; /* IPv4 as ::ffff:a.b.c.d, IPv6 as its /64 */
    uint32_t conns;
    double tat; /* GCRA: when the next connection is due at the steady rate */
};

struct ip_table {
    table t;
    int max_conns, rate;
};

#define BURST_SECONDS 10.0

ip_table *ipl_new(int max_conns, int rate, const uint8_t key[16])
{
    ip_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    uint64_t k[2];
    ws_siphash_key(k, key);
    tab_init(&t->t, k);
    t->max_conns = max_conns;
    t->rate = rate;
    return t;
}

static void free_entry(tab_entry *e, void *ctx)
{
    tab_del(ctx, e);
    free(ws_container_of(e, ip_entry, e));
}

void ipl_free(ip_table *t)
{
    if (!t)
        return;
    tab_each(&t->t, free_entry, &t->t);
    tab_free(&t->t);
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

ip_entry *ipl_admit(ip_table *t, const struct sockaddr_storage *addr, double now, const char **why)
{
    uint8_t x[16];
    addr16(addr, x);
    tab_entry *te = tab_get(&t->t, (const char *)x, sizeof x);
    ip_entry *e = te ? ws_container_of(te, ip_entry, e) : NULL;
    if (!e) {
        if (!(e = calloc(1, sizeof *e))) {
            *why = "out of memory";
            return NULL;
        }
        memcpy(e->addr, x, sizeof x);
        e->e.key = (const char *)e->addr;
        e->e.klen = sizeof e->addr;
        if (tab_put(&t->t, &e->e) < 0) {
            free(e);
            *why = "out of memory";
            return NULL;
        }
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

typedef struct sweep {
    table *t;
    double now;
} sweep;

static void sweep_one(tab_entry *te, void *ctx)
{
    sweep *s = ctx;
    ip_entry *e = ws_container_of(te, ip_entry, e);
    if (e->conns == 0 && e->tat <= s->now) {
        tab_del(s->t, te);
        free(e);
    }
}

void ipl_sweep(ip_table *t, double now)
{
    sweep s = {&t->t, now};
    tab_each(&t->t, sweep_one, &s);
}
