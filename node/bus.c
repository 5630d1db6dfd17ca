#include "bus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "cluster.h"
#include "envelope.h"
#include "log.h"
#include "ws_json.h"
#include "ws_list.h"
#include "ws_utf8.h"

/* The scripts, from node/lua (lua_scripts.h is generated from them at build time):
 * LUA_PUBLISH: KEYS[1] the channel's meta hash (seq, epoch), KEYS[2] its history stream;
 *   ARGV[1] the Envelope without seq and epoch, ARGV[2] the Redis channel, ARGV[3] the
 *   history size (0: none), ARGV[4] the TTL in seconds of both keys, ARGV[5] PUBLISH or
 *   SPUBLISH (a Redis Cluster; absent: PUBLISH). A missing meta (the first
 *   publish, or seq and epoch lost) begins a new epoch from Redis's clock and drops any stream
 *   left from the old one, so stream ids (the seq) never go backwards. Appends field 4 (seq)
 *   and field 21 (epoch) to the Envelope, keeps it in the stream, publishes it; answers seq.
 * LUA_READ: KEYS[1] meta, KEYS[2] stream; ARGV[1] "after" (the Envelopes with seq > ARGV[2],
 *   oldest first, at most ARGV[3]) or "last" (the last ARGV[3], oldest first), ARGV[4] the
 *   TTL. Answers {seq, epoch, Envelope...}. For a channel nothing is known of, "after" (a
 *   subscriber's read) begins a new epoch at seq 0 (the meta written with the TTL, any stream
 *   left dropped) and "last" answers seq "0" and epoch "". */
#include "lua_scripts.h"

enum { SCRIPT_PUB, SCRIPT_RD };

/* A subscription sent and not yet answered, with the clients waiting for it, by its Redis
 * name (the prefixed ch:{<channel>}); answers name what they answer. */
typedef struct sub_waiter {
    struct sub_waiter *next;
    bus_published_fn done;
    void *arg;
} sub_waiter;

typedef struct sub_pending {
    ws_list link; /* bus.pending, oldest first */
    sub_waiter *waiters;
    size_t len;
    char name[];
} sub_pending;

struct bus {
    rlink *link;
    char *node_id;
    char history_size[24], history_ttl[24]; /* the publish script's ARGV[3] and ARGV[4] */
    bus_message_fn on_message;
    bus_resubscribe_fn resubscribe;
    bus_up_fn on_up;
    bus_events_fn on_events;
    void *ctx;       /* on_message's and resubscribe's */
    void *hooks_ctx; /* on_up's and on_events' */
    ws_list pending; /* sub_pending: SUBSCRIBEs under way */
    bus_stats st;
};

typedef struct pub_req {
    bus *b;
    bus_published_fn done;
    void *arg;
} pub_req;

/* Why e (a PUBLISH stored or published) is not a message of channel ch, or NULL if it is. */
static const char *publish_fault(const Wsfan__Envelope *e)
{
    if (e->seq == 0)
        return "no seq";
    if (!e->epoch || !e->epoch[0] || strlen(e->epoch) > CLUSTER_EPOCH_MAX)
        return "no epoch";
    if (!ws_utf8_valid(e->payload.data, e->payload.len) ||
        !ws_json_valid((const char *)e->payload.data, e->payload.len))
        return "payload is not valid JSON";
    return NULL;
}

/* <prefix>ch:{<ch>}, the full Redis name of ch, into out (CLUSTER_NAME_MAX + 1 bytes); its
 * length, 0 if it does not fit. */
static size_t redis_channel(bus *b, ws_span ch, char *out)
{
    size_t plen = strlen(rlink_prefix(b->link));
    memcpy(out, rlink_prefix(b->link), plen);
    size_t n = cluster_channel_name(out + plen, CLUSTER_NAME_MAX + 1 - plen, CLUSTER_CHANNEL, ch);
    return n ? plen + n : 0;
}

/* True if rch (a full Redis channel name) is <prefix>ch:{<ch>}. */
static bool names_channel(bus *b, const char *rch, size_t rch_len, const char *ch)
{
    char want[CLUSTER_NAME_MAX + 1];
    size_t n = redis_channel(b, (ws_span){ch, strlen(ch)}, want);
    return n && rch_len == n && memcmp(rch, want, n) == 0;
}

/* Checks and delivers one PUBLISH envelope that arrived on Redis channel rch. */
static void deliver(bus *b, const char *rch, size_t rch_len, const uint8_t *p, size_t n)
{
    Wsfan__Envelope *e = wsfan__envelope__unpack(NULL, n, p);
    const char *why = NULL;
    if (!e)
        why = "not an Envelope";
    else if (e->kind != WSFAN__ENVELOPE__KIND__PUBLISH && e->kind != WSFAN__ENVELOPE__KIND__EVENTS)
        why = "not a PUBLISH or EVENTS";
    else if (!e->channel || !env_channel_valid((ws_span){e->channel, strlen(e->channel)}))
        why = "bad channel name";
    else if (!names_channel(b, rch, rch_len, e->channel))
        why = "channel does not match the Redis channel";
    else if (e->kind == WSFAN__ENVELOPE__KIND__PUBLISH)
        why = publish_fault(e); /* EVENTS: the presence module checks the members it uses */
    if (why) {
        b->st.malformed++;
        log_warn("redis: dropped a malformed message on %.*s: %s", (int)rch_len, rch, why);
    } else if (e->kind == WSFAN__ENVELOPE__KIND__EVENTS) {
        if (b->on_events)
            b->on_events(b->hooks_ctx, e);
    } else {
        b->st.received++;
        b->on_message(b->ctx, (ws_span){e->channel, strlen(e->channel)}, e->seq,
                      (ws_span){e->epoch, strlen(e->epoch)},
                      (ws_span){(const char *)e->payload.data, e->payload.len}, e->sent_us);
    }
    if (e)
        wsfan__envelope__free_unpacked(e, NULL);
}

static void on_link_message(void *ctx, const char *name, size_t name_len, const uint8_t *p, size_t n)
{
    deliver(ctx, name, name_len, p, n);
}

/* The pending subscription of Redis name n, the oldest if several; NULL if none. */
static sub_pending *pending_of(bus *b, const char *n, size_t len, bool latest)
{
    sub_pending *found = NULL;
    ws_list_each(it, &b->pending) {
        sub_pending *p = ws_container_of(it, sub_pending, link);
        if (p->len == len && memcmp(p->name, n, len) == 0) {
            found = p;
            if (!latest)
                break;
        }
    }
    return found;
}

/* A subscription is sent: its waiters are let go when it is answered. */
static void pending_add(bus *b, const char *n, size_t len)
{
    sub_pending *p = calloc(1, sizeof *p + len);
    if (!p)
        return; /* out of memory: clients are acked without waiting for Redis */
    memcpy(p->name, n, len);
    p->len = len;
    ws_list_push(&b->pending, &p->link);
}

/* A subscription is answered (or the link is gone): let its waiters go. A refused one acks
 * its waiters too, rather than leaving them hanging. */
static void on_link_subscribed(void *ctx, const char *name, size_t len, bool ok)
{
    bus *b = ctx;
    sub_pending *p = pending_of(b, name, len, false);
    if (!p)
        return;
    ws_list_remove(&p->link);
    for (sub_waiter *w = p->waiters, *next; w; w = next) {
        next = w->next;
        w->done(w->arg, 1);
        free(w);
    }
    free(p);
}

/* The channel a Redis name <prefix>ch:{<channel>} names; false if it names none. */
static bool channel_of(bus *b, const char *name, size_t len, ws_span *ch)
{
    size_t plen = strlen(rlink_prefix(b->link)), klen = strlen(CLUSTER_CHANNEL);
    if (len < plen + klen + 2 || memcmp(name + plen, CLUSTER_CHANNEL "{", klen + 1) != 0 ||
        name[len - 1] != '}')
        return false;
    *ch = (ws_span){name + plen + klen + 1, len - plen - klen - 2};
    return true;
}

/* A channel's subscription was sent again (a reconnect, or its slot moved): the worker mends
 * what it missed once this one is answered. */
static void on_link_resubscribed(void *ctx, const char *name, size_t len)
{
    bus *b = ctx;
    ws_span ch;
    pending_add(b, name, len);
    if (b->resubscribe && channel_of(b, name, len, &ch))
        b->resubscribe(b->ctx, ch);
}

static void on_link_up(void *ctx)
{
    bus *b = ctx;
    if (b->on_up)
        b->on_up(b->hooks_ctx);
}

bus *bus_new(struct ev_loop *loop, const rlink_opts *redis, const bus_history *history,
             const char *node_id, bus_message_fn on_message, bus_resubscribe_fn resubscribe,
             void *ctx)
{
    static const char *const scripts[] = {LUA_PUBLISH, LUA_READ, NULL};
    bus *b = calloc(1, sizeof *b);
    if (!b || !(b->node_id = strdup(node_id)))
        return free(b), NULL;
    snprintf(b->history_size, sizeof b->history_size, "%u", history->size);
    snprintf(b->history_ttl, sizeof b->history_ttl, "%u", history->ttl);
    b->on_message = on_message;
    b->resubscribe = resubscribe;
    b->ctx = ctx;
    ws_list_init(&b->pending);
    const rlink_hooks hooks = {.up = on_link_up,
                               .resubscribed = on_link_resubscribed,
                               .message = on_link_message,
                               .subscribed = on_link_subscribed};
    if (!(b->link = rlink_new(loop, redis, scripts, &hooks, b))) {
        free(b->node_id);
        free(b);
        return NULL;
    }
    return b;
}

bool bus_up(const bus *b) { return rlink_up(b->link); }

rlink *bus_link(bus *b) { return b->link; }

const bus_stats *bus_get_stats(bus *b)
{
    const rlink_stats *s = rlink_get_stats(b->link);
    b->st.reconnects = s->reconnects;
    b->st.silent = s->silent;
    b->st.redirects = s->redirects;
    b->st.moved = s->moved;
    b->st.refreshes = s->refreshes;
    b->st.servers = s->servers;
    b->st.servers_up = s->servers_up;
    b->st.up = s->up;
    return &b->st;
}

void bus_subscribe(bus *b, ws_span ch)
{
    char full[CLUSTER_NAME_MAX + 1];
    size_t n = redis_channel(b, ch, full), plen = strlen(rlink_prefix(b->link));
    if (n && rlink_subscribe(b->link, full + plen, n - plen) == 0)
        pending_add(b, full, n);
    /* else sent when its server is back (on_link_resubscribed), or out of memory */
}

int bus_when_subscribed(bus *b, ws_span ch, bus_published_fn done, void *arg)
{
    char full[CLUSTER_NAME_MAX + 1];
    size_t n = redis_channel(b, ch, full);
    sub_pending *found = n ? pending_of(b, full, n, true) : NULL;
    sub_waiter *w = found ? malloc(sizeof *w) : NULL;
    if (!w)
        return 0;
    w->done = done;
    w->arg = arg;
    w->next = found->waiters;
    found->waiters = w;
    return 1;
}

void bus_unsubscribe(bus *b, ws_span ch)
{
    char name[CLUSTER_NAME_MAX + 1];
    size_t n = cluster_channel_name(name, sizeof name, CLUSTER_CHANNEL, ch);
    if (n)
        rlink_unsubscribe(b->link, name, n);
}

static void on_published(void *arg, long long v, const char *err)
{
    pub_req *q = arg;
    bus *b = q->b;
    b->st.pending--;
    uint64_t seq = 0;
    if (!err && v > 0) {
        seq = (uint64_t)v;
        b->st.published++;
    } else {
        b->st.publish_failures++;
    }
    q->done(q->arg, seq);
    free(q);
}

/* The meta and stream names of ch into keys[0] and keys[1]; false if they do not fit. */
static bool channel_keys(ws_span ch, char keys[2][CLUSTER_NAME_MAX + 1])
{
    return cluster_channel_name(keys[0], sizeof keys[0], CLUSTER_META, ch) &&
           cluster_channel_name(keys[1], sizeof keys[1], CLUSTER_HIST, ch);
}

int bus_publish(bus *b, ws_span ch, ws_span data, bus_published_fn done, void *arg)
{
    Wsfan__Envelope e = WSFAN__ENVELOPE__INIT;
    char chan[ENV_CHANNEL_MAX + 1], keys[2][CLUSTER_NAME_MAX + 1], rch[CLUSTER_NAME_MAX + 1];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    snprintf(chan, sizeof chan, "%.*s", (int)ch.n, ch.p);
    e.kind = WSFAN__ENVELOPE__KIND__PUBLISH;
    e.origin = b->node_id;
    e.channel = chan;
    e.payload.data = (uint8_t *)data.p;
    e.payload.len = data.n;
    e.sent_us = (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec;
    size_t rlen = redis_channel(b, ch, rch);
    bool named = channel_keys(ch, keys) && rlen;
    size_t n = wsfan__envelope__get_packed_size(&e);
    uint8_t *buf = named ? malloc(n) : NULL;
    pub_req *q = buf ? malloc(sizeof *q) : NULL;
    if (q) {
        *q = (pub_req){b, done, arg};
        wsfan__envelope__pack(&e, buf);
    }
    const char *k[2] = {keys[0], keys[1]};
    const char *pub = rlink_is_cluster(b->link) ? "SPUBLISH" : "PUBLISH";
    const char *args[5] = {(const char *)buf, rch, b->history_size, b->history_ttl, pub};
    const size_t lens[5] = {n, rlen, strlen(b->history_size), strlen(b->history_ttl), strlen(pub)};
    const rlink_eval_args ea = {SCRIPT_PUB, 2, k, 5, args, lens};
    if (!q || rlink_eval(b->link, &ea, on_published, q) < 0) {
        free(buf);
        free(q);
        b->st.publish_failures++; /* refused here is as failed as refused by Redis */
        return -1;
    }
    free(buf); /* hiredis copied it into its output buffer */
    b->st.pending++;
    return 0;
}

/* ---- reading a channel's position and history ---- */

typedef struct read_req {
    bus *b;
    bus_read_fn done;
    void *arg;
    char ch[ENV_CHANNEL_MAX + 1];
} read_req;

/* Unpacks and checks one stored Envelope of channel ch into *m; false (counted, logged) if it
 * is not one. *e must be freed by the caller when true. */
static bool stored_message(bus *b, const char *ch, const struct redisReply *r,
                           Wsfan__Envelope **e)
{
    const char *why = NULL;
    *e = r->type == REDIS_REPLY_STRING ? wsfan__envelope__unpack(NULL, r->len, (const uint8_t *)r->str)
                                       : NULL;
    if (!*e)
        why = "not an Envelope";
    else if ((*e)->kind != WSFAN__ENVELOPE__KIND__PUBLISH || !(*e)->channel ||
             strcmp((*e)->channel, ch) != 0)
        why = "not a PUBLISH of this channel";
    else
        why = publish_fault(*e);
    if (!why)
        return true;
    b->st.malformed++;
    log_warn("redis: dropped a malformed history entry of %s: %s", ch, why);
    if (*e)
        wsfan__envelope__free_unpacked(*e, NULL);
    *e = NULL;
    return false;
}

static void on_read(void *arg, const struct redisReply *r, const char *err)
{
    read_req *q = arg;
    bus_position pos = {0};
    size_t n = 0;
    bus_stored *msgs = NULL;
    if (!err && (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
                 r->element[0]->type != REDIS_REPLY_STRING ||
                 r->element[1]->type != REDIS_REPLY_STRING || r->element[1]->len > CLUSTER_EPOCH_MAX))
        err = "unexpected answer";
    if (!err && r->elements > 2 && !(msgs = calloc(r->elements - 2, sizeof *msgs)))
        err = "out of memory";
    if (!err) {
        pos.seq = strtoull(r->element[0]->str, NULL, 10);
        memcpy(pos.epoch, r->element[1]->str, r->element[1]->len);
        pos.epoch_len = (uint8_t)r->element[1]->len;
        for (size_t i = 2; i < r->elements; i++) {
            Wsfan__Envelope *e;
            if (!stored_message(q->b, q->ch, r->element[i], &e))
                continue;
            msgs[n++] = (bus_stored){e->seq, {(const char *)e->payload.data, e->payload.len}, e};
        }
    }
    q->done(q->arg, err ? NULL : &pos, msgs, n);
    for (size_t i = 0; i < n; i++)
        wsfan__envelope__free_unpacked(msgs[i].own, NULL);
    free(msgs);
    free(q);
}

int bus_read(bus *b, ws_span ch, bool after, uint64_t seq, uint32_t count, bus_read_fn done,
             void *arg)
{
    char keys[2][CLUSTER_NAME_MAX + 1], since[24], max[16];
    read_req *q = channel_keys(ch, keys) ? malloc(sizeof *q) : NULL;
    if (!q)
        return -1;
    *q = (read_req){b, done, arg, {0}};
    memcpy(q->ch, ch.p, ch.n);
    snprintf(since, sizeof since, "%llu", (unsigned long long)seq);
    snprintf(max, sizeof max, "%u", count);
    const char *k[2] = {keys[0], keys[1]};
    const char *args[4] = {after ? "after" : "last", since, max, b->history_ttl};
    const rlink_eval_args ea = {SCRIPT_RD, 2, k, 4, args, NULL};
    if (rlink_eval_reply(b->link, &ea, on_read, q) < 0) {
        free(q);
        return -1;
    }
    return 0;
}

void bus_on_up(bus *b, bus_up_fn up, bus_events_fn events, void *ctx)
{
    b->hooks_ctx = ctx;
    b->on_up = up;
    b->on_events = events;
}
