#include "hub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "ws_frame.h"
#include "ws_hash.h"

typedef struct hub_ref {
    hub_member *m;
    uint32_t slot; /* index in m->subs */
    uint32_t held; /* hub_hold: frames go to h->on_held first (in what was padding) */
} hub_ref;

/* Hands frame to one subscriber: through on_held first while its subscription is held. The
 * flag lives in the array the fan-out walks anyway, so the common case costs no extra load. */
static inline void deliver_ref(hub *h, const hub_ref *r, wbuf *frame)
{
    if (r->held && h->on_held(r->m, frame, h->ctx))
        return;
    h->deliver(r->m, frame, h->ctx);
}

/* A kept message: its msg frame (one reference) and where the data lies in it. */
typedef struct kept_slot {
    wbuf *frame;
    uint32_t off, len;
} kept_slot;

struct hub_channel {
    tab_entry e;  /* in h->channels, keyed by name */
    ws_list idle; /* h->idle, while n == 0 */
    uint64_t seq;
    hub_ref *refs;
    uint32_t n, cap;
    kept_slot *kept; /* the last messages (h->keep at most), a ring without gaps ending at seq */
    uint32_t kept_cap, kept_head, kept_n;
    uint16_t name_len;
    uint8_t epoch_len; /* 0: the position is not known (with a bus: not read yet) */
    char epoch[CLUSTER_EPOCH_MAX];
    char name[];
};

void hub_init(hub *h, hub_deliver_fn deliver, void *ctx, size_t max_idle, const uint8_t key[16])
{
    memset(h, 0, sizeof *h);
    h->deliver = deliver;
    h->ctx = ctx;
    h->max_idle = max_idle;
    uint64_t k[2];
    ws_siphash_key(k, key);
    tab_init(&h->channels, k);
    ws_list_init(&h->idle);
}

/* ---- the memory of a channel: its last messages, each its shared msg frame ---- */

static kept_slot *kept_at(const hub_channel *c, uint32_t i)
{
    return &c->kept[(c->kept_head + i) & (c->kept_cap - 1)];
}

static void forget_kept(hub_channel *c)
{
    for (uint32_t i = 0; i < c->kept_n; i++)
        wbuf_unref(kept_at(c, i)->frame);
    free(c->kept);
    c->kept = NULL;
    c->kept_cap = c->kept_head = c->kept_n = 0;
}

/* Keeps frame (a msg frame of c whose data is its last data_len bytes but the closing brace)
 * as c's newest message; a seq that does not follow the newest kept starts the memory again. */
static void keep(hub *h, hub_channel *c, wbuf *frame, size_t data_len)
{
    if (!h->keep)
        return;
    if (c->kept_n && kept_at(c, c->kept_n - 1)->frame->seq + 1 != frame->seq)
        forget_kept(c);
    if (c->kept_n == c->kept_cap && c->kept_n < h->keep) { /* grows by doubling up to keep */
        uint32_t cap = c->kept_cap ? c->kept_cap * 2 : 4;
        kept_slot *k = malloc(cap * sizeof *k);
        if (!k)
            return;
        for (uint32_t i = 0; i < c->kept_n; i++)
            k[i] = *kept_at(c, i);
        free(c->kept);
        c->kept = k;
        c->kept_cap = cap;
        c->kept_head = 0;
    }
    if (c->kept_n == h->keep || c->kept_n == c->kept_cap) { /* full: the oldest goes */
        wbuf_unref(kept_at(c, 0)->frame);
        c->kept_head = (c->kept_head + 1) & (c->kept_cap - 1);
        c->kept_n--;
    }
    *kept_at(c, c->kept_n++) =
        (kept_slot){wbuf_ref(frame), (uint32_t)(frame->len - 1 - data_len), (uint32_t)data_len};
}

static void free_channel(tab_entry *e, void *ctx)
{
    hub_channel *c = ws_container_of(e, hub_channel, e);
    tab_del(ctx, e);
    forget_kept(c);
    free(c->refs);
    free(c);
}

void hub_free(hub *h)
{
    tab_each(&h->channels, free_channel, &h->channels);
    tab_free(&h->channels);
    memset(h, 0, sizeof *h);
}

static hub_channel *lookup(const hub *h, ws_span name)
{
    tab_entry *e = tab_get(&h->channels, name.p, name.n);
    return e ? ws_container_of(e, hub_channel, e) : NULL;
}

static void idle_remove(hub *h, hub_channel *c)
{
    ws_list_remove(&c->idle);
    h->nidle--;
}

static void drop_channel(hub *h, hub_channel *c)
{
    idle_remove(h, c);
    tab_del(&h->channels, &c->e);
    forget_kept(c);
    free(c->refs);
    free(c);
}

/* c has just lost its last subscriber (or was created without one): keep it, newest last,
 * and forget the oldest idle channel beyond max_idle. */
static void idle_push(hub *h, hub_channel *c)
{
    free(c->refs);
    c->refs = NULL;
    c->cap = 0;
    ws_list_push(&h->idle, &c->idle);
    h->nidle++;
    if (h->nidle > h->max_idle)
        drop_channel(h, ws_container_of(ws_list_first(&h->idle), hub_channel, idle));
}

/* Without a bus a channel's epoch is made here: "<hub's start>.<channels made before>", new
 * each time a channel is made, so a seq that starts again at 1 is always in a new epoch. */
static void local_epoch(hub *h, hub_channel *c)
{
    int n = snprintf(c->epoch, sizeof c->epoch, "%s.%llx", h->epoch_base,
                     (unsigned long long)h->epochs++);
    c->epoch_len = n > 0 && (size_t)n < sizeof c->epoch ? (uint8_t)n : 0;
}

/* The channel called name, created idle if it does not exist; NULL when out of memory. */
static hub_channel *get(hub *h, ws_span name)
{
    hub_channel *c = lookup(h, name);
    if (c)
        return c;
    c = calloc(1, sizeof *c + name.n);
    if (!c)
        return NULL;
    memcpy(c->name, name.p, name.n);
    c->name_len = (uint16_t)name.n;
    c->e.key = c->name;
    c->e.klen = name.n;
    if (tab_put(&h->channels, &c->e) < 0) {
        free(c);
        return NULL;
    }
    if (!h->remote)
        local_epoch(h, c);
    idle_push(h, c);
    return c;
}

int hub_subscribe(hub *h, hub_member *m, ws_span name)
{
    hub_channel *c = lookup(h, name);
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
    c->refs[c->n] = (hub_ref){m, m->n, 0};
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
        if (h->remote) { /* no longer followed: what is known goes stale */
            c->epoch_len = 0;
            forget_kept(c);
        }
        idle_push(h, c);
    }
}

int hub_unsubscribe(hub *h, hub_member *m, ws_span name)
{
    hub_channel *c = lookup(h, name);
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
    hub_channel *c = lookup(h, name);
    for (uint32_t i = 0; c && i < m->n; i++)
        if (m->subs[i].ch == c)
            return true;
    return false;
}

/* One msg frame for c at its exact size; NULL when out of memory. */
static wbuf *frame_msg(hub_channel *c, uint64_t seq, ws_span data)
{
    ws_span name = {c->name, c->name_len};
    size_t plen = env_msg_len(name.n, seq, data.n);
    uint8_t *payload;
    wbuf *b = wbuf_frame(WS_OP_TEXT, plen, &payload);
    if (!b)
        return NULL;
    if (env_write_msg((char *)payload, name, seq, data) != plen)
        abort(); /* env_msg_len and env_write_msg disagree: a programming error */
    b->seq = seq;
    b->chan = c;
    return b;
}

/* Frames one msg for c, hands the same buffer to every subscriber and keeps it. */
static size_t fan_out(hub *h, hub_channel *c, uint64_t seq, ws_span data)
{
    wbuf *b = frame_msg(c, seq, data);
    if (!b)
        return 0;
    /* The callback never subscribes or unsubscribes, so the array holds still. */
    for (uint32_t i = 0; i < c->n; i++)
        deliver_ref(h, &c->refs[i], b);
    keep(h, c, b, data.n);
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
    if (c->n || h->keep)
        *delivered = fan_out(h, c, seq, data);
    return seq;
}

/* Tells every subscriber of c that its history was lost: a new epoch at position pos. */
static void send_reset(hub *h, hub_channel *c, env_pos pos)
{
    char out[CLUSTER_EPOCH_MAX + ENV_CHANNEL_MAX + 80];
    size_t n = env_write_reset(out, sizeof out, (ws_span){c->name, c->name_len}, pos);
    wbuf *b = n ? wbuf_frame_copy(WS_OP_TEXT, out, n) : NULL;
    if (!b)
        return;
    b->chan = c; /* seq 0: not a message, but of this channel (recovery lets go of it) */
    for (uint32_t i = 0; i < c->n; i++)
        deliver_ref(h, &c->refs[i], b);
    wbuf_unref(b);
}

size_t hub_deliver(hub *h, ws_span name, uint64_t seq, ws_span epoch, ws_span data)
{
    hub_channel *c = lookup(h, name);
    if (!c || !c->n || epoch.n > CLUSTER_EPOCH_MAX)
        return 0;
    bool known = c->epoch_len > 0;
    if (!known || c->epoch_len != epoch.n || memcmp(c->epoch, epoch.p, epoch.n) != 0) {
        memcpy(c->epoch, epoch.p, epoch.n);
        c->epoch_len = (uint8_t)epoch.n;
        forget_kept(c);
        if (known && h->remote) /* (without a bus, a test's own epoch: nothing was lost) */
            send_reset(h, c, (env_pos){seq - 1, epoch});
    } else if (seq <= c->seq) {
        return 0; /* delivered already (a heal read it and pub/sub brought it too, or the
                     position read at a subscribe was ahead of the link): never twice */
    }
    c->seq = seq;
    return fan_out(h, c, seq, data);
}

const void *hub_channel_id(const hub *h, ws_span name) { return lookup(h, name); }

void hub_hold(hub *h, hub_member *m, ws_span name, bool on)
{
    hub_channel *c = lookup(h, name);
    for (uint32_t i = 0; c && h->on_held && i < m->n; i++)
        if (m->subs[i].ch == c)
            c->refs[m->subs[i].idx].held = on;
}

bool hub_position(const hub *h, ws_span name, env_pos *pos)
{
    hub_channel *c = lookup(h, name);
    if (!c || !c->epoch_len)
        return false;
    *pos = (env_pos){c->seq, {c->epoch, c->epoch_len}};
    return true;
}

bool hub_learn(hub *h, ws_span name, uint64_t seq, ws_span epoch)
{
    hub_channel *c = lookup(h, name);
    if (!c || !c->n || c->epoch_len || !epoch.n || epoch.n > CLUSTER_EPOCH_MAX)
        return false;
    memcpy(c->epoch, epoch.p, epoch.n);
    c->epoch_len = (uint8_t)epoch.n;
    c->seq = seq;
    return true;
}

wbuf *hub_frame(const hub *h, ws_span name, uint64_t seq, ws_span data)
{
    hub_channel *c = lookup(h, name);
    return c ? frame_msg(c, seq, data) : NULL;
}

void hub_seed(hub *h, ws_span name, const hub_kept *msgs, size_t n)
{
    hub_channel *c = lookup(h, name);
    if (!c || !c->epoch_len || c->kept_n || !n || msgs[n - 1].seq != c->seq)
        return;
    size_t from = n > h->keep ? n - h->keep : 0;
    for (size_t i = from; i < n; i++)
        if (msgs[i].frame->chan == c)
            keep(h, c, msgs[i].frame, msgs[i].data.n);
    if (c->kept_n && kept_at(c, c->kept_n - 1)->frame->seq != c->seq)
        forget_kept(c); /* not a run up to the position after all */
}

uint64_t hub_kept_first(const hub *h, ws_span name)
{
    hub_channel *c = lookup(h, name);
    return c && c->epoch_len && c->kept_n ? kept_at(c, 0)->frame->seq : 0;
}

size_t hub_kept_after(const hub *h, ws_span name, uint64_t after, hub_kept *out, size_t max)
{
    hub_channel *c = lookup(h, name);
    if (!c || !c->epoch_len || !c->kept_n)
        return 0;
    uint64_t first = kept_at(c, 0)->frame->seq;
    if (after >= c->seq)
        return 0;
    uint32_t i = after >= first ? (uint32_t)(after - first + 1) : 0, n = 0;
    if (c->kept_n - i > max)
        i = c->kept_n - (uint32_t)max;
    for (; i < c->kept_n; i++) {
        kept_slot *k = kept_at(c, i);
        out[n++] = (hub_kept){k->frame, k->frame->seq,
                              {(const char *)k->frame->data + k->off, k->len}};
    }
    return n;
}

size_t hub_count(const hub *h, ws_span name)
{
    hub_channel *c = lookup(h, name);
    return c ? c->n : 0;
}

size_t hub_send(hub *h, ws_span name, wbuf *frame)
{
    hub_channel *c = lookup(h, name);
    if (!c)
        return 0;
    for (uint32_t i = 0; i < c->n; i++)
        h->deliver(c->refs[i].m, frame, h->ctx);
    return c->n;
}

ws_span hub_channel_name(const hub_channel *c) { return (ws_span){c->name, c->name_len}; }

void hub_each_member(const hub *h, ws_span name, void (*fn)(hub_member *m, void *ctx), void *ctx)
{
    hub_channel *c = lookup(h, name);
    for (uint32_t i = 0; c && i < c->n; i++)
        fn(c->refs[i].m, ctx);
}
