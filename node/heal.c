#include "heal.h"

#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "log.h"

#define HELD_MAX 65536 /* live messages held back for one channel; beyond, the rest pass */
#define RETRY 0.05      /* seconds between tries while the link is not up for reads yet */
#define RETRIES 100     /* tries before the gap is given up on (5 s) */

/* A live message held back while its channel is mended: a copy, as the bus's is transient. */
typedef struct held {
    uint64_t seq;
    uint8_t epoch_len;
    char epoch[CLUSTER_EPOCH_MAX];
    size_t len;
    char data[];
} held;

/* One channel being mended, in w->heals by name. */
typedef struct heal {
    tab_entry e;
    worker *w;
    uint64_t since;  /* the last seq its subscribers got */
    bool restarted;  /* the epoch changed: read again from its start */
    bool again;      /* the link dropped again while this read was under way: read once more */
    uint8_t tries;   /* reads refused because the link was not up yet (the subscriber
                        connection comes back before the scripts are loaded) */
    ev_timer retry;
    uint8_t epoch_len, ch_len;
    char epoch[CLUSTER_EPOCH_MAX];
    char ch[ENV_CHANNEL_MAX];
    held **held;
    uint32_t n, cap;
} heal;

static ws_span name_of(const heal *h) { return (ws_span){h->ch, h->ch_len}; }

static void deliver(worker *w, ws_span ch, uint64_t seq, ws_span epoch, ws_span data)
{
    w->st->deliveries += hub_deliver(&w->hub, ch, seq, epoch, data);
}

/* Delivers what was held (newer than `after` in epoch ep, or of another epoch) and ends. */
static void finish(heal *h, uint64_t after, ws_span ep)
{
    worker *w = h->w;
    tab_del(&w->heals, &h->e); /* first: what is delivered now must not be held again */
    w->nheal--;
    for (uint32_t i = 0; i < h->n; i++) {
        held *m = h->held[i];
        bool same = m->epoch_len == ep.n && memcmp(m->epoch, ep.p, ep.n) == 0;
        if (!same || m->seq > after)
            deliver(w, name_of(h), m->seq, (ws_span){m->epoch, m->epoch_len},
                    (ws_span){m->data, m->len});
        free(m);
    }
    free(h->held);
    free(h);
}

static void read_after(heal *h);
static void confirmed(void *arg, uint64_t ok);

static void answered(void *arg, const bus_position *pos, const bus_stored *msgs, size_t n)
{
    heal *h = arg;
    if (!pos) {
        log_warn("redis: could not read what %.*s missed; its subscribers may see a gap",
                 (int)h->ch_len, h->ch);
        finish(h, h->since, (ws_span){h->epoch, h->epoch_len});
        return;
    }
    ws_span ep = {pos->epoch, pos->epoch_len};
    if (!h->restarted && (ep.n != h->epoch_len || memcmp(ep.p, h->epoch, ep.n) != 0)) {
        h->restarted = true; /* history lost meanwhile: the new epoch from its start */
        h->since = 0;
        memcpy(h->epoch, ep.p, ep.n);
        h->epoch_len = (uint8_t)ep.n;
        read_after(h);
        return;
    }
    uint64_t last = h->since;
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].seq <= last)
            continue;
        if (msgs[i].seq != last + 1)
            log_warn("redis: %.*s missed seq %llu..%llu, older than its history", (int)h->ch_len,
                     h->ch, (unsigned long long)last + 1, (unsigned long long)msgs[i].seq - 1);
        deliver(h->w, name_of(h), msgs[i].seq, ep, msgs[i].data);
        last = msgs[i].seq;
    }
    h->w->st->healed += last - h->since;
    if (h->again) { /* what was read may end before the latest outage: read past it too */
        h->again = h->restarted = false;
        h->since = last;
        h->tries = 0;
        memcpy(h->epoch, ep.p, ep.n);
        h->epoch_len = (uint8_t)ep.n;
        if (!bus_when_subscribed(h->w->bus, name_of(h), confirmed, h))
            read_after(h);
        return;
    }
    finish(h, last, ep);
}

static void on_retry(struct ev_loop *loop, ev_timer *t, int revents);

static void read_after(heal *h)
{
    uint32_t count = (uint32_t)h->w->cfg->history_size + 128;
    if (bus_read(h->w->bus, name_of(h), true, h->since, count, answered, h) == 0)
        return;
    if (!bus_up(h->w->bus) && h->tries++ < RETRIES) {
        ev_timer_init(&h->retry, on_retry, RETRY, 0);
        h->retry.data = h;
        ev_timer_start(h->w->loop, &h->retry);
        return;
    }
    answered(h, NULL, NULL, 0);
}

static void on_retry(struct ev_loop *loop, ev_timer *t, int revents) { read_after(t->data); }

static void confirmed(void *arg, uint64_t ok) { read_after(arg); }

void heal_channel(worker *w, ws_span ch)
{
    env_pos pos;
    if (!w->cfg->history_size || !hub_position(&w->hub, ch, &pos))
        return;
    tab_entry *e = tab_get(&w->heals, ch.p, ch.n);
    if (e) { /* one read at a time per channel: the one under way reads again when it ends */
        ws_container_of(e, heal, e)->again = true;
        return;
    }
    heal *h = calloc(1, sizeof *h);
    if (!h)
        return;
    h->w = w;
    h->since = pos.seq;
    h->epoch_len = (uint8_t)pos.epoch.n;
    memcpy(h->epoch, pos.epoch.p, pos.epoch.n);
    h->ch_len = (uint8_t)ch.n;
    memcpy(h->ch, ch.p, ch.n);
    h->e.key = h->ch;
    h->e.klen = h->ch_len;
    if (tab_put(&w->heals, &h->e) < 0) {
        free(h);
        return;
    }
    w->nheal++;
    if (!bus_when_subscribed(w->bus, ch, confirmed, h))
        read_after(h);
}

bool heal_hold(worker *w, ws_span ch, uint64_t seq, ws_span epoch, ws_span data)
{
    tab_entry *e = tab_get(&w->heals, ch.p, ch.n);
    if (!e)
        return false;
    heal *h = ws_container_of(e, heal, e);
    held *m = h->n < HELD_MAX ? malloc(sizeof *m + data.n) : NULL;
    if (m && h->n == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 64;
        held **a = realloc(h->held, cap * sizeof *a);
        if (a) {
            h->held = a;
            h->cap = cap;
        }
    }
    if (!m || h->n == h->cap) {
        free(m);
        return false; /* cannot hold it: delivered now, ahead of what is being read */
    }
    *m = (held){seq, (uint8_t)epoch.n, {0}, data.n};
    memcpy(m->epoch, epoch.p, epoch.n);
    memcpy(m->data, data.p, data.n);
    h->held[h->n++] = m;
    return true;
}
