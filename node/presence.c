#include "presence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "envelope.h"
#include "log.h"
#include "rnd.h"
#include "wbuf.h"
#include "ws_frame.h"
#include "ws_hash.h"
#include "ws_json.h"
#include "ws_utf8.h"

#define BATCH_MAX 1000      /* members in one JOIN, LEAVE or SNAPSHOT envelope */
#define PENDING_MAX 65536   /* questions in flight per worker */
#define EVENTS_MAX 4096     /* members of one EVENTS envelope a node frames */
/* A client id, a user id and a channel, each NUL-terminated. */
#define SNAP_STR (CLUSTER_CLIENT_ID_MAX + CLUSTER_USER_MAX + ENV_CHANNEL_MAX + 3)
#define FLUSH_DELAY 0.01    /* joins and leaves wait at most this long to be sent */

/* Joins and leaves for one router shard, in the order they happened (Member.left marks a
 * leave), sent as one MEMBERS envelope at most every FLUSH_DELAY: however fast clients
 * subscribe and unsubscribe, a worker sends a shard at most 1/FLUSH_DELAY envelopes a second
 * of them. */
typedef struct batch {
    size_t n, cap;
    Wsfan__Envelope__Member *m;
} batch;

/* A question waiting for its answer. Answers come back in any order; deadlines are all
 * --router-timeout after asking, so the oldest question always expires first and the ring
 * of them, indexed by request id, is swept from its start. */
typedef struct pend {
    presence_done_fn done; /* NULL once answered */
    void *arg;
    double deadline;
} pend;

struct presence {
    presence_cfg cfg;
    presence_hooks hooks;
    void *ctx;   /* the hooks' */
    bus *bus;
    rlink *link; /* bus_link(bus) */
    uint32_t shards;
    batch *batches; /* one per shard */
    pend *ring;
    uint64_t base, next; /* request ids in flight: base..next-1 */
    size_t cap;
    uint64_t snap_id;
    ev_timer heartbeat;
    ev_timer flush;   /* armed while joins or leaves wait */
    ev_timer *resync; /* per shard: a snapshot due after a broadcast RESYNC */
    uint64_t *resync_id; /* per shard: the broadcast that snapshot answers */
    presence_stats st;
};

/* ---- sending ------------------------------------------------------------------------------ */

static void on_event_sent(void *arg, long long receivers, const char *err)
{
    if (err)
        receivers = -1; /* refused, or no answer */
    presence *p = arg;
    if (receivers == 0)
        p->st.unrouted++;
}

/* Packs e and publishes it on <prefix><name>; done(arg, receivers) follows unless this
 * returns false (Redis down). */
static bool send_env_then(presence *p, const char *name, Wsfan__Envelope *e, rlink_int_fn done,
                          void *arg)
{
    size_t n = wsfan__envelope__get_packed_size(e);
    uint8_t stackbuf[1024], *buf = n <= sizeof stackbuf ? stackbuf : malloc(n);
    if (!buf)
        return false;
    wsfan__envelope__pack(e, buf);
    int rc = rlink_send(p->link, name, buf, n, done, arg);
    if (buf != stackbuf)
        free(buf);
    return rc == 0;
}

static bool send_env(presence *p, const char *name, Wsfan__Envelope *e)
{
    return send_env_then(p, name, e, on_event_sent, p);
}

static bool send_to_shard_then(presence *p, uint32_t shard, Wsfan__Envelope *e, rlink_int_fn done,
                               void *arg)
{
    char name[32];
    cluster_router_channel(name, sizeof name, shard);
    e->origin = (char *)p->cfg.node_id;
    e->heartbeat_ms = (uint32_t)(p->cfg.heartbeat * 1000); /* every envelope says when the
                                                             next heartbeat is due */
    return send_env_then(p, name, e, done, arg);
}

/* True if router shard's Redis channel is on a server that is up (on a Redis Cluster, one
 * master down silences only the shards whose channels it holds). */
static bool reaches(presence *p, uint32_t shard)
{
    char name[32];
    cluster_router_channel(name, sizeof name, shard);
    return rlink_reaches(p->link, name);
}

static void send_to_shard(presence *p, uint32_t shard, Wsfan__Envelope *e)
{
    send_to_shard_then(p, shard, e, on_event_sent, p);
}

/* ---- joins and leaves no router heard ------------------------------------------------------
 * A MEMBERS envelope that Redis delivered to nobody found no router of its shard running (it
 * is restarting, or none was started). Its joins and leaves are then announced by the node
 * itself, as EVENTS on each channel, the way the router would have: event subscribers hear of
 * them at once, and the restarted router, which rebuilds from snapshots without events, need
 * not. Listed up to NODE_EVENTS_MAX per channel, the rest counted, as the router's default
 * --event-max does. */
#define NODE_EVENTS_MAX 20

typedef struct sent_batch {
    presence *p;
    size_t n;
    Wsfan__Envelope__Member *m; /* owned: the batch's array and its strings */
} sent_batch;

static int by_channel(const void *a, const void *b)
{
    const Wsfan__Envelope__Member *x = *(Wsfan__Envelope__Member *const *)a;
    const Wsfan__Envelope__Member *y = *(Wsfan__Envelope__Member *const *)b;
    int c = strcmp(x->channel, y->channel);
    return c ? c : (x < y ? -1 : x > y); /* stable: their order within a channel is kept */
}

static void announce(presence *p, Wsfan__Envelope__Member *m, size_t n)
{
    Wsfan__Envelope__Member **mp = malloc(n * sizeof *mp);
    if (!mp)
        return;
    for (size_t i = 0; i < n; i++)
        mp[i] = &m[i];
    qsort(mp, n, sizeof *mp, by_channel);
    for (size_t i = 0, j; i < n; i = j) {
        Wsfan__Envelope e = WSFAN__ENVELOPE__INIT;
        e.kind = WSFAN__ENVELOPE__KIND__EVENTS;
        e.origin = (char *)p->cfg.node_id;
        e.channel = mp[i]->channel;
        for (j = i; j < n && strcmp(mp[j]->channel, e.channel) == 0; j++)
            if (j - i >= NODE_EVENTS_MAX)
                mp[j]->left ? e.more_leaves++ : e.more_joins++;
        e.members = mp + i;
        e.n_members = j - i < NODE_EVENTS_MAX ? j - i : NODE_EVENTS_MAX;
        char name[CLUSTER_NAME_MAX + 1];
        cluster_channel_name(name, sizeof name, CLUSTER_CHANNEL,
                             (ws_span){e.channel, strlen(e.channel)});
        if (send_env_then(p, name, &e, NULL, NULL))
            p->st.events_announced += j - i;
    }
    free(mp);
}

static void on_members_sent(void *arg, long long receivers, const char *err)
{
    if (err)
        receivers = -1; /* refused, or no answer */
    sent_batch *sb = arg;
    if (receivers == 0) {
        sb->p->st.unrouted++;
        announce(sb->p, sb->m, sb->n);
    }
    for (size_t i = 0; i < sb->n; i++)
        free(sb->m[i].client_id); /* one allocation holds the member's three strings */
    free(sb->m);
    free(sb);
}

static void batch_clear(batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->m[i].client_id); /* one allocation holds the member's three strings */
    b->n = 0;
}

static void flush_shard(presence *p, uint32_t shard)
{
    batch *b = &p->batches[shard];
    if (!b->n)
        return;
    Wsfan__Envelope__Member **mp = malloc(b->n * sizeof *mp);
    sent_batch *sb = malloc(sizeof *sb);
    if (mp && sb) {
        for (size_t i = 0; i < b->n; i++)
            mp[i] = &b->m[i];
        Wsfan__Envelope e = WSFAN__ENVELOPE__INIT;
        e.kind = WSFAN__ENVELOPE__KIND__MEMBERS;
        e.n_members = b->n;
        e.members = mp;
        *sb = (sent_batch){p, b->n, b->m}; /* the batch's members go with the envelope */
        if (send_to_shard_then(p, shard, &e, on_members_sent, sb)) {
            p->st.events_sent += b->n;
            *b = (batch){0};
            sb = NULL;
        }
    }
    free(mp);
    free(sb);
    batch_clear(b);
}

void presence_member(presence *p, const char *client, const char *user, ws_span ch, bool joined)
{
    if (!p->shards)
        return;
    uint32_t shard = ws_shard(ch.p, ch.n, p->shards);
    if (!reaches(p, shard)) {
        p->st.events_lost++; /* the snapshot sent when Redis is back carries this change */
        return;
    }
    batch *b = &p->batches[shard];
    if (b->n == BATCH_MAX)
        flush_shard(p, shard);
    if (!ev_is_active(&p->flush))
        ev_timer_start(p->cfg.loop, &p->flush);
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        Wsfan__Envelope__Member *m = realloc(b->m, cap * sizeof *m);
        if (!m)
            return;
        b->m = m;
        b->cap = cap;
    }
    size_t lc = strlen(client), lu = strlen(user);
    char *s = malloc(lc + lu + ch.n + 3);
    if (!s)
        return;
    Wsfan__Envelope__Member *m = &b->m[b->n++];
    wsfan__envelope__member__init(m);
    m->client_id = memcpy(s, client, lc + 1);
    m->user_id = memcpy(s + lc + 1, user, lu + 1);
    m->channel = s + lc + lu + 2;
    memcpy(m->channel, ch.p, ch.n);
    m->channel[ch.n] = '\0';
    m->left = !joined;
}

void presence_flush(presence *p)
{
    ev_timer_stop(p->cfg.loop, &p->flush);
    for (uint32_t i = 0; i < p->shards; i++)
        flush_shard(p, i);
}

static void on_flush(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    presence_flush(t->data);
}

static void heartbeat(presence *p)
{
    for (uint32_t i = 0; i < p->shards; i++) {
        Wsfan__Envelope e = WSFAN__ENVELOPE__INIT;
        e.kind = WSFAN__ENVELOPE__KIND__HEARTBEAT;
        if (reaches(p, i))
            send_to_shard(p, i, &e);
    }
}

static void on_heartbeat(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    heartbeat(t->data);
}

/* ---- snapshots ---------------------------------------------------------------------------- */

typedef struct snap {
    presence *p;
    uint32_t shard;
    Wsfan__Envelope e;
    size_t fill;
    Wsfan__Envelope__Member m[BATCH_MAX], *mp[BATCH_MAX];
    char strs[BATCH_MAX][SNAP_STR]; /* client id, user id and channel, NUL after each */
} snap;

static void snap_chunk(snap *s, size_t n, bool last)
{
    for (size_t i = 0; i < n; i++)
        s->mp[i] = &s->m[i];
    s->e.members = s->mp;
    s->e.n_members = n;
    s->e.last = last;
    send_to_shard(s->p, s->shard, &s->e);
}

static void snap_one(void *ctx, const char *client, const char *user, ws_span ch)
{
    snap *s = ctx;
    if (ws_shard(ch.p, ch.n, s->p->shards) != s->shard)
        return;
    if (s->fill == BATCH_MAX) {
        snap_chunk(s, s->fill, false);
        s->fill = 0;
    }
    Wsfan__Envelope__Member *m = &s->m[s->fill];
    wsfan__envelope__member__init(m);
    char *o = s->strs[s->fill++];
    size_t a = strlen(client) + 1, b = strlen(user) + 1;
    if (a + b + ch.n + 1 > SNAP_STR) {
        s->fill--; /* cannot happen with ids this node makes; never overflow for it */
        return;
    }
    memcpy(o, client, a);
    memcpy(o + a, user, b);
    memcpy(o + a + b, ch.p, ch.n);
    o[a + b + ch.n] = '\0';
    m->client_id = o;
    m->user_id = o + a;
    m->channel = o + a + b;
}

/* Sends shard its part of this worker's members, as one snapshot in chunks: the router
 * replaces what it knew of this node with it. */
static void snapshot(presence *p, uint32_t shard, uint64_t answers)
{
    if (shard >= p->shards || !reaches(p, shard))
        return;
    flush_shard(p, shard); /* older changes first: the snapshot comes after them */
    snap *s = malloc(sizeof *s);
    if (!s) {
        log_error("out of memory for a presence snapshot");
        return;
    }
    s->p = p;
    s->shard = shard;
    wsfan__envelope__init(&s->e);
    s->e.kind = WSFAN__ENVELOPE__KIND__SNAPSHOT;
    s->e.seq = ++p->snap_id;
    s->e.request_id = answers;
    s->fill = 0;
    p->hooks.each_member(p->ctx, snap_one, s);
    snap_chunk(s, s->fill, true);
    p->st.snapshots++;
    free(s);
}

/* A broadcast RESYNC reaches every worker at once. Answering at once would land every
 * snapshot on the router (and on Redis's output buffer for it) in the same instant, so each
 * worker waits a random part of a quarter heartbeat: presence is still whole well within one
 * heartbeat interval. */
static void on_resync_wait(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    presence *p = t->data;
    uint32_t shard = (uint32_t)(t - p->resync);
    snapshot(p, shard, p->resync_id[shard]);
}

static void resync_later(presence *p, uint32_t shard, uint64_t id)
{
    if (shard >= p->shards)
        return;
    p->resync_id[shard] = id;
    if (ev_is_active(&p->resync[shard]))
        return; /* a snapshot for that shard is about to go anyway, and now answers id */
    ev_timer_set(&p->resync[shard], p->cfg.heartbeat / 4 * rnd_unit(), 0);
    ev_timer_start(p->cfg.loop, &p->resync[shard]);
}

/* ---- questions in flight ------------------------------------------------------------------ */

static uint64_t pend_add(presence *p, presence_done_fn done, void *arg)
{
    if (p->next - p->base == p->cap) {
        if (p->cap == PENDING_MAX)
            return 0;
        size_t cap = p->cap ? p->cap * 2 : 64;
        pend *r = calloc(cap, sizeof *r);
        if (!r)
            return 0;
        for (uint64_t id = p->base; id < p->next; id++)
            r[id & (cap - 1)] = p->ring[id & (p->cap - 1)];
        free(p->ring);
        p->ring = r;
        p->cap = cap;
    }
    uint64_t id = p->next++;
    p->ring[id & (p->cap - 1)] = (pend){done, arg, ev_now(p->cfg.loop) + p->cfg.router_timeout};
    return id;
}

/* Takes the question with this request id off the ring: false if it is not (or no longer)
 * waiting. */
static bool pend_take(presence *p, uint64_t id, pend *out)
{
    if (id < p->base || id >= p->next)
        return false;
    pend *e = &p->ring[id & (p->cap - 1)];
    if (!e->done)
        return false;
    *out = *e;
    e->done = NULL;
    while (p->base < p->next && !p->ring[p->base & (p->cap - 1)].done)
        p->base++; /* answered questions at the front free their slots at once */
    return true;
}

void presence_tick(presence *p)
{
    double now = ev_now(p->cfg.loop);
    while (p->base < p->next) {
        pend *e = &p->ring[p->base & (p->cap - 1)];
        if (e->done && e->deadline > now)
            break;
        p->base++;
        if (e->done) {
            pend q = *e;
            e->done = NULL;
            p->st.timeouts++;
            q.done(q.arg, "unavailable", NULL);
        }
    }
}

/* ---- questions ---------------------------------------------------------------------------- */

typedef struct sent_ctx {
    presence *p;
    uint64_t id;
} sent_ctx;

/* A direct message reached no node (PUBLISH counted no subscriber): the node is gone. */
static void on_direct_sent(void *arg, long long receivers, const char *err)
{
    if (err)
        receivers = -1; /* refused, or no answer */
    sent_ctx *s = arg;
    pend q;
    if (receivers <= 0 && pend_take(s->p, s->id, &q))
        q.done(q.arg, receivers == 0 ? "not_found" : "unavailable", NULL);
    free(s);
}

/* A query no router shard was subscribed to receive. */
static void on_query_sent(void *arg, long long receivers, const char *err)
{
    if (err)
        receivers = -1; /* refused, or no answer */
    sent_ctx *s = arg;
    pend q;
    if (receivers <= 0 && pend_take(s->p, s->id, &q))
        q.done(q.arg, "unavailable", NULL);
    free(s);
}

static int ask(presence *p, const char *name, Wsfan__Envelope *e, rlink_int_fn sent,
               presence_done_fn done, void *arg)
{
    if (!rlink_reaches(p->link, name))
        return -1;
    sent_ctx *s = malloc(sizeof *s);
    uint64_t id = s ? pend_add(p, done, arg) : 0;
    if (!id) {
        free(s);
        return -1;
    }
    s->p = p;
    s->id = id;
    e->request_id = id;
    e->origin = (char *)p->cfg.node_id;
    size_t n = wsfan__envelope__get_packed_size(e);
    uint8_t *buf = malloc(n);
    int rc = buf ? (wsfan__envelope__pack(e, buf), rlink_send(p->link, name, buf, n, sent, s)) : -1;
    free(buf);
    if (rc < 0) {
        pend q;
        pend_take(p, id, &q);
        free(s);
        return -1;
    }
    return 0;
}

int presence_query(presence *p, ws_span ch, bool count_only, presence_done_fn done, void *arg)
{
    if (!p->shards)
        return -1;
    char chan[ENV_CHANNEL_MAX + 1], name[32];
    snprintf(chan, sizeof chan, "%.*s", (int)ch.n, ch.p);
    cluster_router_channel(name, sizeof name, ws_shard(ch.p, ch.n, p->shards));
    Wsfan__Envelope e = WSFAN__ENVELOPE__INIT;
    e.kind = WSFAN__ENVELOPE__KIND__PRESENCE_QUERY;
    e.channel = chan;
    e.count_only = count_only;
    flush_shard(p, ws_shard(ch.p, ch.n, p->shards)); /* joins asked before come before */
    p->st.queries++;
    return ask(p, name, &e, on_query_sent, done, arg);
}

int presence_send(presence *p, const char *from, ws_span to, ws_span data, presence_done_fn done,
                  void *arg)
{
    ws_span node;
    uint64_t local;
    if (!cluster_client_split(to, &node, &local))
        return -1;
    char target[CLUSTER_CLIENT_ID_MAX + 1], name[CLUSTER_NAME_MAX + 1];
    snprintf(target, sizeof target, "%.*s", (int)to.n, to.p);
    if (!cluster_node_channel(name, sizeof name, node))
        return -1;
    Wsfan__Envelope e = WSFAN__ENVELOPE__INIT;
    e.kind = WSFAN__ENVELOPE__KIND__DIRECT;
    e.client_id = target;
    e.from = (char *)from;
    e.payload.data = (uint8_t *)data.p;
    e.payload.len = data.n;
    p->st.directs_out++;
    return ask(p, name, &e, on_direct_sent, done, arg);
}

/* ---- what arrives on node:<id> and nodes -------------------------------------------------- */

static bool str_ok(const char *s) { return s && ws_utf8_valid((const uint8_t *)s, strlen(s)); }

static void reply_direct(presence *p, const Wsfan__Envelope *in, const char *error)
{
    char name[CLUSTER_NAME_MAX + 1];
    if (!cluster_node_channel(name, sizeof name, (ws_span){in->origin, strlen(in->origin)}))
        return;
    Wsfan__Envelope e = WSFAN__ENVELOPE__INIT;
    e.kind = WSFAN__ENVELOPE__KIND__DIRECT_RESULT;
    e.origin = (char *)p->cfg.node_id;
    e.request_id = in->request_id;
    e.error = (char *)(error ? error : "");
    send_env(p, name, &e);
}

static void direct_in(presence *p, const Wsfan__Envelope *e)
{
    ws_span node;
    uint64_t local;
    if (!str_ok(e->from) || !str_ok(e->origin) || !env_channel_valid((ws_span){e->origin, strlen(e->origin)}) ||
        !ws_json_valid((const char *)e->payload.data, e->payload.len) ||
        !ws_utf8_valid(e->payload.data, e->payload.len)) {
        p->st.malformed++;
        log_warn("presence: dropped a malformed direct message");
        return;
    }
    p->st.directs_in++;
    const char *error = "not_found";
    if (e->client_id && cluster_client_split((ws_span){e->client_id, strlen(e->client_id)}, &node, &local) &&
        ws_span_eq(node, p->cfg.node_id))
        error = p->hooks.direct(p->ctx, local, e->from,
                                (ws_span){(const char *)e->payload.data, e->payload.len});
    reply_direct(p, e, error);
}

static void answer(presence *p, const Wsfan__Envelope *e)
{
    pend q;
    if (!pend_take(p, e->request_id, &q))
        return; /* answered late: the client already got unavailable */
    const char *err = e->error && e->error[0] ? e->error : NULL;
    if (err && strcmp(err, "not_found") != 0 && strcmp(err, "busy") != 0 && strcmp(err, "rebuilding") != 0)
        err = "unavailable";
    q.done(q.arg, err, e->kind == WSFAN__ENVELOPE__KIND__PRESENCE_REPLY ? e : NULL);
}

/* A message on node:<id> (broadcast false) or on nodes (true: only RESYNC belongs there). */
static void node_message(presence *p, const uint8_t *data, size_t n, bool broadcast)
{
    if (!data)
        return; /* the subscription is confirmed */
    Wsfan__Envelope *e = wsfan__envelope__unpack(NULL, n, data);
    if (!e) {
        p->st.malformed++;
        log_warn("presence: dropped a message that is not an Envelope");
        return;
    }
    if (broadcast && e->kind != WSFAN__ENVELOPE__KIND__RESYNC) {
        p->st.malformed++;
        log_warn("presence: dropped an Envelope of kind %d broadcast to every node", (int)e->kind);
        wsfan__envelope__free_unpacked(e, NULL);
        return;
    }
    switch (e->kind) {
    case WSFAN__ENVELOPE__KIND__DIRECT:
        direct_in(p, e);
        break;
    case WSFAN__ENVELOPE__KIND__DIRECT_RESULT:
    case WSFAN__ENVELOPE__KIND__PRESENCE_REPLY:
        answer(p, e);
        break;
    case WSFAN__ENVELOPE__KIND__RESYNC:
        if (e->shards != p->shards)
            log_warn("presence: router shard %u/%u asks for a snapshot, but this node has "
                     "--router-shards %u: presence is split wrong", e->shard, e->shards, p->shards);
        if (broadcast)
            resync_later(p, e->shard, e->request_id); /* every node answers: spread them out */
        else
            snapshot(p, e->shard, 0);
        break;
    default:
        p->st.malformed++;
        log_warn("presence: dropped an Envelope of kind %d on a node channel", (int)e->kind);
    }
    wsfan__envelope__free_unpacked(e, NULL);
}

static void on_node_message(void *ctx, const uint8_t *data, size_t n)
{
    node_message(ctx, data, n, false);
}

static void on_nodes_message(void *ctx, const uint8_t *data, size_t n)
{
    node_message(ctx, data, n, true);
}

/* An EVENTS batch from the router, on a channel this worker subscribes: each join and leave is
 * framed once and handed to every local subscriber that asked for events. */
static void on_events(void *ctx, const Wsfan__Envelope *e)
{
    presence *p = ctx;
    ws_span ch = {e->channel, strlen(e->channel)};
    char out[1024];
    size_t listed = e->n_members < EVENTS_MAX ? e->n_members : EVENTS_MAX;
    for (size_t i = 0; i < listed; i++) {
        const Wsfan__Envelope__Member *m = e->members[i];
        if (!str_ok(m->client_id) || !str_ok(m->user_id)) {
            p->st.malformed++;
            continue;
        }
        size_t n = env_write_event(out, sizeof out, m->left, ch, m->client_id, m->user_id);
        wbuf *f = n ? wbuf_frame_copy(WS_OP_TEXT, out, n) : NULL;
        if (f) {
            p->st.event_frames++;
            p->hooks.event(p->ctx, ch, f);
            wbuf_unref(f);
        }
    }
    uint64_t joins = e->more_joins, leaves = e->more_leaves;
    for (size_t i = listed; i < e->n_members; i++)
        e->members[i]->left ? leaves++ : joins++;
    if (joins || leaves) {
        size_t n = env_write_overflow(out, sizeof out, ch, joins, leaves);
        wbuf *f = n ? wbuf_frame_copy(WS_OP_TEXT, out, n) : NULL;
        if (f) {
            p->st.event_frames++;
            p->hooks.event(p->ctx, ch, f);
            wbuf_unref(f);
        }
    }
}

/* Redis is back (or there for the first time): what changed meanwhile was not reported, so
 * every shard gets a fresh snapshot. */
static void on_bus_up(void *ctx)
{
    presence *p = ctx;
    for (uint32_t i = 0; i < p->shards; i++)
        snapshot(p, i, 0);
    heartbeat(p);
}

static void presence_free(presence *p)
{
    free(p->batches);
    free(p->resync);
    free(p->resync_id);
    free(p);
}

presence *presence_new(const presence_cfg *cfg, bus *b, const presence_hooks *hooks, void *ctx)
{
    presence *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->cfg = *cfg;
    p->hooks = *hooks;
    p->ctx = ctx;
    p->bus = b;
    p->link = bus_link(b);
    p->shards = cfg->shards;
    p->base = p->next = 1;
    if (p->shards && (!(p->batches = calloc(p->shards, sizeof *p->batches)) ||
                      !(p->resync = calloc(p->shards, sizeof *p->resync)) ||
                      !(p->resync_id = calloc(p->shards, sizeof *p->resync_id))))
        return presence_free(p), NULL;
    for (uint32_t i = 0; i < p->shards; i++) {
        ev_init(&p->resync[i], on_resync_wait);
        p->resync[i].data = p;
    }
    char name[CLUSTER_NAME_MAX + 1];
    /* Only nodes with router shards listen for RESYNC broadcasts: a router counts the
     * listeners as the snapshots it must wait for. */
    if (!cluster_node_channel(name, sizeof name, (ws_span){cfg->node_id, strlen(cfg->node_id)}) ||
        rlink_listen(p->link, name, on_node_message, p) < 0 ||
        (p->shards && rlink_listen(p->link, CLUSTER_NODES, on_nodes_message, p) < 0))
        return presence_free(p), NULL;
    bus_on_up(b, on_bus_up, on_events, p);
    ev_timer_init(&p->flush, on_flush, FLUSH_DELAY, 0);
    p->flush.data = p;
    if (p->shards) {
        ev_timer_init(&p->heartbeat, on_heartbeat, cfg->heartbeat, cfg->heartbeat);
        p->heartbeat.data = p;
        ev_timer_start(cfg->loop, &p->heartbeat);
    }
    return p;
}

const presence_stats *presence_get_stats(const presence *p) { return &p->st; }
