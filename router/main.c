/* wsrouter: one shard of the cluster's presence (docs/cluster.md). It listens on
 * <prefix>router:<shard> for what the nodes report, keeps the roster in memory, answers
 * presence queries on <prefix>node:<asker>, sends join/leave events in batches on the
 * channels themselves, and drops nodes that stop heartbeating. On every (re)subscription it
 * asks all nodes for snapshots, so a restart loses nothing. */
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "cluster.h"
#include "cluster.pb-c.h"
#include "config.h"
#include "envelope.h"
#include "gcra.h"
#include "ingest.h"
#include "log.h"
#include "rlink.h"
#include "roster.h"
#include "rstats.h"
#include "ws_hash.h"
#include "ws_utf8.h"

#define DEFAULT_HEARTBEAT 1.0
#define RECONNECT_GRACE 6.0 /* after Redis is back: nodes reconnect with backoff of up to 5 s */

typedef struct router {
    struct ev_loop *loop;
    rconfig cfg;
    rlink *link;
    roster *ro;
    char name[32];   /* origin of what it sends */
    char listen[32]; /* router:<shard> (cluster_router_channel) */
    bool subscribed, ever_subscribed, resync_wanted;
    double warm;       /* how long the first snapshots are applied without events */
    double warm_until; /* snapshots before this rebuild what a restart forgot: no events */
    double expire_from; /* no node expires before this: Redis was away, nodes are reconnecting */
    /* Completeness: after a RESYNC broadcast, presence is only answered once as many nodes as
     * Redis delivered the broadcast to have sent a whole snapshot (or warm seconds passed,
     * for a node that died meanwhile): never a partial list passed off as whole. */
    double resync_at;  /* when the last broadcast went out */
    uint64_t resync_id; /* its number, which the snapshots answering it carry */
    long long expect;  /* nodes it reached (-1: not known yet) */
    bool complete;
    ev_timer tick, events;
    ev_signal sigterm, sigint;
    rstats st; /* counted as it goes; the gauges are set by page() */
} router;

static void on_message(void *ctx, const uint8_t *p, size_t len);
static void on_link_up(void *ctx);

/* Connects to Redis and listens on r->listen; 0, or -1 (logged). */
static int link_start(router *r)
{
    const rlink_hooks hooks = {.up = on_link_up};
    r->link = rlink_new(r->loop, &r->cfg.redis, NULL, &hooks, r);
    return r->link && rlink_listen(r->link, r->listen, on_message, r) == 0 ? 0 : -1;
}

/* ---- sending ---- */

static void send_env(router *r, const char *name, Wsfan__Envelope *e)
{
    e->origin = r->name;
    size_t n = wsfan__envelope__get_packed_size(e);
    uint8_t *buf = malloc(n);
    if (!buf) {
        log_error("out of memory packing an envelope");
        return;
    }
    wsfan__envelope__pack(e, buf);
    if (rlink_send(r->link, name, buf, n, NULL, NULL) < 0 && e->kind == WSFAN__ENVELOPE__KIND__EVENTS)
        r->st.events_lost++;
    free(buf);
}

/* ---- asking nodes for snapshots ---- */

static void on_resync_sent(void *arg, long long receivers, const char *err)
{
    router *r = arg;
    r->expect = err ? -1 : receivers; /* -1 (refused): only the warm period ends the wait */
}

static void try_resync(router *r)
{
    if (!r->resync_wanted || !r->subscribed || !rlink_up(r->link))
        return;
    Wsfan__Envelope e = WSFAN__ENVELOPE__INIT;
    e.kind = WSFAN__ENVELOPE__KIND__RESYNC;
    e.shard = r->cfg.shard;
    e.shards = r->cfg.shards;
    e.origin = r->name;
    e.request_id = r->resync_id + 1;
    size_t n = wsfan__envelope__get_packed_size(&e);
    uint8_t buf[128];
    if (n > sizeof buf)
        return;
    wsfan__envelope__pack(&e, buf);
    if (rlink_send(r->link, CLUSTER_NODES, buf, n, on_resync_sent, r) < 0)
        return;
    r->resync_at = ev_now(r->loop);
    r->resync_id++;
    r->expect = -1;
    r->complete = false;
    r->resync_wanted = false;
    r->st.resyncs++;
    log_info("asked every node for a snapshot");
}

static void ask_node(router *r, rnode *n)
{
    char name[CLUSTER_NAME_MAX + 1];
    if (!cluster_node_channel(name, sizeof name, (ws_span){n->id, strlen(n->id)}))
        return; /* not a node id: ingest_check keeps those out */
    Wsfan__Envelope e = WSFAN__ENVELOPE__INIT;
    e.kind = WSFAN__ENVELOPE__KIND__RESYNC;
    e.shard = r->cfg.shard;
    e.shards = r->cfg.shards;
    send_env(r, name, &e);
    n->resync_asked = ev_now(r->loop);
}

/* ---- what the nodes send ---- */

static bool bad(router *r, const char *origin, const char *why)
{
    r->st.malformed++;
    log_warn("dropped an envelope from %s: %s", origin ? origin : "?", why);
    return false;
}

/* A channel a query names: valid and owned by this shard. */
static bool channel_ok(router *r, const char *origin, const char *ch)
{
    if (!ch || !env_channel_valid((ws_span){ch, strlen(ch)}))
        return bad(r, origin, "bad channel name");
    if (ws_shard(ch, strlen(ch), r->cfg.shards) != r->cfg.shard) {
        r->st.misrouted++;
        log_warn("%s asked about channel %s at shard %u/%u, which does not own it: are its "
                 "--router-shards and this --shard the same N?", origin, ch, r->cfg.shard, r->cfg.shards);
        return false;
    }
    return true;
}

/* Applies e's members (see ingest_members) and reports what did not fit. */
static void members_in(router *r, rnode *n, const Wsfan__Envelope *e, bool join, bool emit)
{
    ingest_result res;
    ingest_members(r->ro, n, e, join, emit, r->cfg.shard, r->cfg.shards, &res);
    r->st.malformed += res.malformed;
    r->st.misrouted += res.misrouted;
    if (res.malformed)
        log_warn("dropped %u members from %s: %s", res.malformed, n->id, res.why);
    if (res.misrouted)
        log_warn("%s sent %u members of channels this shard (%u/%u) does not own, such as %s: "
                 "are its --router-shards and this --shard the same N?", n->id, res.misrouted,
                 r->cfg.shard, r->cfg.shards, res.misrouted_channel);
    if (res.out_of_memory)
        log_error("out of memory adding members");
}

typedef struct collect {
    Wsfan__Envelope__Member *m, **mp;
    size_t n;
} collect;

static void collect_one(void *ctx, const char *client, const char *user, const char *node)
{
    collect *c = ctx;
    Wsfan__Envelope__Member *m = &c->m[c->n];
    wsfan__envelope__member__init(m);
    m->client_id = (char *)client;
    m->user_id = (char *)user;
    m->node_id = (char *)node;
    c->mp[c->n++] = m;
}

static void count_synced(rnode *n, void *ctx)
{
    router *r = ctx;
    if (n->answered == r->resync_id) /* not a snapshot sent for any other reason */
        r->expect--;
}

/* True once every node the last RESYNC reached has sent its whole snapshot in answer to it
 * (nodes that came later, or snapshots sent on a Redis reconnect, do not count). */
static bool is_complete(router *r)
{
    if (r->complete)
        return true;
    if (ev_now(r->loop) >= r->resync_at + r->warm) {
        r->complete = true; /* a node that never answered died meanwhile: it expires */
    } else if (r->expect >= 0) {
        long long want = r->expect;
        roster_each_node(r->ro, count_synced, r);
        r->complete = r->expect <= 0;
        r->expect = want;
    }
    if (r->complete)
        log_info("presence is whole again: every node's snapshot is in");
    return r->complete;
}

static void answer_query(router *r, const Wsfan__Envelope *q)
{
    r->st.queries++;
    char name[CLUSTER_NAME_MAX + 1];
    if (!cluster_node_channel(name, sizeof name, (ws_span){q->origin, strlen(q->origin)}))
        return; /* not a node id: ingest_check keeps those out */
    Wsfan__Envelope e = WSFAN__ENVELOPE__INIT;
    e.kind = WSFAN__ENVELOPE__KIND__PRESENCE_REPLY;
    e.request_id = q->request_id;
    e.channel = q->channel;
    if (!channel_ok(r, q->origin, q->channel)) {
        e.error = "wrong_shard";
        send_env(r, name, &e);
        return;
    }
    if (!is_complete(r)) {
        r->st.incomplete++;
        e.error = "rebuilding";
        send_env(r, name, &e);
        return;
    }
    size_t count = roster_count(r->ro, q->channel);
    e.count = count;
    collect c = {0};
    if (q->count_only || count > (size_t)r->cfg.presence_max_members) {
        e.count_only = true;
        r->st.count_only_answers++;
    } else if (count) {
        c.m = malloc(count * sizeof *c.m);
        c.mp = malloc(count * sizeof *c.mp);
        if (!c.m || !c.mp) {
            e.error = "internal";
        } else {
            roster_each_member(r->ro, q->channel, collect_one, &c);
            e.members = c.mp;
            e.n_members = c.n;
        }
    }
    send_env(r, name, &e);
    free(c.m);
    free(c.mp);
}

/* A node may send --node-rate membership envelopes a second; beyond that they are dropped,
 * and the node is asked for a snapshot (never dropped) that repairs what was lost, again until
 * one arrives that began after the last drop. */
static bool within_rate(router *r, rnode *n, double now)
{
    if (gcra_admit(&n->flood_tat, now, r->cfg.node_rate, r->cfg.node_rate))
        return true;
    if (!n->flooded)
        log_warn("node %s sends more than %d envelopes a second: dropping them, then resyncing it",
                 n->id, r->cfg.node_rate);
    n->flooded = true;
    n->last_drop = now;
    r->st.flood_dropped++;
    return false;
}

static void node_in(router *r, const Wsfan__Envelope *e)
{
    double now = ev_now(r->loop);
    bool created;
    rnode *n = roster_node(r->ro, e->origin, now, &created);
    if (!n) {
        log_error("out of memory adding node %s", e->origin);
        return;
    }
    if (created) {
        n->timeout = r->cfg.node_timeout ? r->cfg.node_timeout : 3 * DEFAULT_HEARTBEAT;
        n->resync_asked = now; /* its snapshot is on the way, or asked for soon */
        log_info("node %s joined the cluster", n->id);
    }
    if (e->heartbeat_ms && !r->cfg.node_timeout) /* every envelope says when the next beat is due */
        n->timeout = 3.0 * e->heartbeat_ms / 1000.0;
    bool emit = now >= r->warm_until;
    switch (e->kind) {
    case WSFAN__ENVELOPE__KIND__HEARTBEAT:
        break;
    case WSFAN__ENVELOPE__KIND__JOIN:
    case WSFAN__ENVELOPE__KIND__LEAVE:
    case WSFAN__ENVELOPE__KIND__MEMBERS:
        if (within_rate(r, n, now))
            members_in(r, n, e, e->kind == WSFAN__ENVELOPE__KIND__JOIN, true);
        break;
    case WSFAN__ENVELOPE__KIND__SNAPSHOT:
        if (e->seq != n->snap_id || !e->seq)
            n->snap_began = now;
        roster_snapshot_begin(r->ro, n, e->seq);
        members_in(r, n, e, true, emit);
        if (e->last) {
            size_t gone = roster_snapshot_end(r->ro, n, emit);
            if (e->request_id)
                n->answered = e->request_id;
            r->st.snapshots++;
            if (n->flooded && n->last_drop < n->snap_began)
                n->flooded = false; /* it holds everything that was dropped */
            log_debug("snapshot %llu of %s: %zu clients, %zu members gone",
                      (unsigned long long)e->seq, n->id, n->nclients, gone);
        }
        break;
    default:
        break;
    }
}

static void touch_node(rnode *n, void *ctx)
{
    n->last_seen = ev_now(((router *)ctx)->loop);
}

static void on_message(void *ctx, const uint8_t *p, size_t len)
{
    router *r = ctx;
    if (!p) {
        log_info("listening on %s%s", r->cfg.redis.prefix, r->listen);
        if (!r->ever_subscribed) /* the first snapshots rebuild what this process never knew */
            r->warm_until = ev_now(r->loop) + r->warm;
        else /* Redis was away: nobody could be heard, and nodes come back with backoff */
            r->expire_from = ev_now(r->loop) + RECONNECT_GRACE;
        r->ever_subscribed = r->subscribed = true;
        r->resync_wanted = true; /* whatever happened while we were away, snapshots repair */
        roster_each_node(r->ro, touch_node, r);
        try_resync(r);
        return;
    }
    r->st.envelopes++;
    Wsfan__Envelope *e = wsfan__envelope__unpack(NULL, len, p);
    if (!e) {
        bad(r, NULL, "not an Envelope");
        return;
    }
    const char *why = ingest_check(e);
    if (why)
        bad(r, e->origin && !strcmp(why, "too many members") ? e->origin : NULL, why);
    else if (e->kind == WSFAN__ENVELOPE__KIND__PRESENCE_QUERY)
        answer_query(r, e);
    else if (e->kind == WSFAN__ENVELOPE__KIND__HEARTBEAT || e->kind == WSFAN__ENVELOPE__KIND__JOIN ||
             e->kind == WSFAN__ENVELOPE__KIND__LEAVE || e->kind == WSFAN__ENVELOPE__KIND__MEMBERS ||
             e->kind == WSFAN__ENVELOPE__KIND__SNAPSHOT)
        node_in(r, e);
    else
        bad(r, e->origin, "a kind the router does not take");
    wsfan__envelope__free_unpacked(e, NULL);
}

/* ---- timers ---- */

static void send_events(void *ctx, const char *channel, const roster_event *ev, size_t n,
                        uint32_t more_joins, uint32_t more_leaves)
{
    router *r = ctx;
    Wsfan__Envelope__Member *m = n ? calloc(n, sizeof *m) : NULL;
    Wsfan__Envelope__Member **mp = n ? calloc(n, sizeof *mp) : NULL;
    if (n && (!m || !mp)) {
        free(m);
        free(mp);
        r->st.events_lost += n;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        wsfan__envelope__member__init(&m[i]);
        m[i].client_id = ev[i].client;
        m[i].user_id = ev[i].user;
        m[i].left = ev[i].left;
        mp[i] = &m[i];
    }
    char name[CLUSTER_NAME_MAX + 1];
    cluster_channel_name(name, sizeof name, CLUSTER_CHANNEL, (ws_span){channel, strlen(channel)});
    Wsfan__Envelope e = WSFAN__ENVELOPE__INIT;
    e.kind = WSFAN__ENVELOPE__KIND__EVENTS;
    e.channel = (char *)channel;
    e.members = mp;
    e.n_members = n;
    e.more_joins = more_joins;
    e.more_leaves = more_leaves;
    send_env(r, name, &e);
    r->st.event_envelopes++;
    free(m);
    free(mp);
}

static void on_events(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    router *r = t->data;
    roster_flush_events(r->ro, send_events, r);
}

static void on_expired(void *ctx, const rnode *n, double now)
{
    (void)ctx;
    log_warn("node %s silent for %.1f s: dropping its %zu clients", n->id, now - n->last_seen,
             n->nclients);
}

static void check_node(rnode *n, void *ctx)
{
    router *r = ctx;
    double now = ev_now(r->loop);
    /* A node whose snapshot never came (it missed the broadcast), or whose envelopes were
     * dropped (once it has been quiet for a second): ask it. */
    if ((!n->synced || (n->flooded && now - n->last_drop >= 1)) && now - n->resync_asked >= 2)
        ask_node(r, n);
}

static void on_link_up(void *ctx) { try_resync(ctx); }

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    router *r = t->data;
    if (!rlink_up(r->link)) {
        r->subscribed = false; /* until Redis confirms the subscription again */
        return; /* a silent node may only be unheard: nobody expires while Redis is away */
    }
    try_resync(r);
    if (!r->subscribed)
        return;
    if (ev_now(loop) >= r->expire_from) /* else nodes are still reconnecting after an outage */
        roster_expire(r->ro, ev_now(loop), on_expired, r);
    roster_each_node(r->ro, check_node, r);
}

static void on_stop(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)s;
    (void)revents;
    log_info("stopping");
    ev_break(loop, EVBREAK_ALL);
}

/* ---- /healthz and /metrics ---- */

/* True while the shard hears the nodes: Redis up and its channel subscribed. */
static bool live(const router *r) { return rlink_up(r->link) && r->subscribed; }

static size_t page(void *ctx, ws_span path, int *status, const char **ctype, char *body, size_t cap)
{
    router *r = ctx;
    if (ws_span_eq(path, "/healthz")) {
        bool ok = live(r);
        *status = ok ? 200 : 503;
        return (size_t)snprintf(body, cap, ok ? "ok\n" : "redis unavailable\n");
    }
    if (!ws_span_eq(path, "/metrics")) {
        *status = 404;
        return (size_t)snprintf(body, cap, "not found\n");
    }
    *status = 200;
    *ctype = "text/plain; version=0.0.4";
    roster_stats ro = roster_get_stats(r->ro);
    rstats s = r->st;
    s.up = live(r);
    s.nodes = ro.nodes;
    s.clients = ro.clients;
    s.users = ro.users;
    s.channels = ro.channels;
    s.members = ro.members;
    s.events = ro.events;
    s.events_capped = ro.events_capped;
    s.nodes_expired = ro.nodes_expired;
    return rstats_render(&s, body, cap);
}

int main(int argc, char **argv)
{
    static router r;
    int rc = rconfig_parse(&r.cfg, argc, argv);
    if (rc)
        return rc < 0 ? 2 : 0;
    char who[32];
    snprintf(who, sizeof who, "router%u", r.cfg.shard);
    log_setup(r.cfg.log_level, who);
    signal(SIGPIPE, SIG_IGN);
    r.loop = ev_default_loop(EVFLAG_AUTO);
    snprintf(r.name, sizeof r.name, "router-%u-of-%u", r.cfg.shard, r.cfg.shards);
    cluster_router_channel(r.listen, sizeof r.listen, r.cfg.shard);
    uint8_t key[16];
    if (RAND_bytes(key, sizeof key) != 1 || !(r.ro = roster_new(key, (size_t)r.cfg.event_max))) {
        log_error("cannot set up the roster");
        return 1;
    }
    r.warm = r.cfg.node_timeout ? r.cfg.node_timeout : 3 * DEFAULT_HEARTBEAT;
    r.warm_until = 1e300; /* until the first subscription: then warm seconds from it */
    r.resync_at = 1e300;  /* no presence answered before the first RESYNC went out */
    r.expect = -1;
    if (link_start(&r) < 0)
        return 2;
    if (r.cfg.port && admin_start(r.loop, r.cfg.bind, r.cfg.port, page, &r) < 0)
        return 2;
    ev_timer_init(&r.tick, on_tick, 0.25, 0.25);
    r.tick.data = &r;
    ev_timer_start(r.loop, &r.tick);
    ev_timer_init(&r.events, on_events, r.cfg.event_interval, r.cfg.event_interval);
    r.events.data = &r;
    ev_timer_start(r.loop, &r.events);
    ev_signal_init(&r.sigterm, on_stop, SIGTERM);
    ev_signal_start(r.loop, &r.sigterm);
    ev_signal_init(&r.sigint, on_stop, SIGINT);
    ev_signal_start(r.loop, &r.sigint);
    log_info("wsrouter shard %u/%u on redis %s%s (prefix %s), /healthz and /metrics on %s:%d",
             r.cfg.shard, r.cfg.shards, r.cfg.redis.cluster ? "cluster " : "",
             r.cfg.redis.cluster ? r.cfg.redis.cluster : r.cfg.redis.addr, r.cfg.redis.prefix,
             r.cfg.bind, r.cfg.port);
    ev_run(r.loop, 0);
    roster_free(r.ro);
    return 0;
}
