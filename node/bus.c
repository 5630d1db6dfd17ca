#include "bus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cluster.h"
#include "envelope.h"
#include "log.h"
#include "ws_json.h"
#include "ws_list.h"
#include "ws_utf8.h"

/* KEYS[1] seq key, KEYS[2] Redis channel, ARGV[1] the Envelope without seq. Appends field 4
 * (seq, varint) to the Envelope: protobuf lets a field follow the others. Loaded when the
 * command link connects, then run by EVALSHA. */
static const char SCRIPT[] =
    "local seq = redis.call('INCR', KEYS[1])\n"
    "local v, t = seq, {}\n"
    "while v >= 128 do t[#t + 1] = string.char(v % 128 + 128); v = math.floor(v / 128) end\n"
    "t[#t + 1] = string.char(v)\n"
    "redis.call('PUBLISH', KEYS[2], ARGV[1] .. '\\32' .. table.concat(t))\n"
    "return seq\n";

/* A SUBSCRIBE sent and not yet answered, with the clients waiting for it. Answers come in the
 * order the commands were sent, so a FIFO matches them. */
typedef struct sub_waiter {
    struct sub_waiter *next;
    bus_published_fn done;
    void *arg;
} sub_waiter;

typedef struct sub_pending {
    ws_list link; /* bus.pending, oldest first */
    sub_waiter *waiters;
    size_t len;
    char ch[];
} sub_pending;

struct bus {
    rlink *link;
    char *node_id;
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

/* Checks and delivers one PUBLISH envelope that arrived on Redis channel rch. */
static void deliver(bus *b, const char *rch, size_t rch_len, const uint8_t *p, size_t n)
{
    Wsfan__Envelope *e = wsfan__envelope__unpack(NULL, n, p);
    size_t plen = strlen(rlink_prefix(b->link)) + strlen(CLUSTER_CHANNEL);
    const char *why = NULL;
    if (!e)
        why = "not an Envelope";
    else if (e->kind != WSFAN__ENVELOPE__KIND__PUBLISH && e->kind != WSFAN__ENVELOPE__KIND__EVENTS)
        why = "not a PUBLISH or EVENTS";
    else if (!e->channel || rch_len <= plen || strlen(e->channel) != rch_len - plen ||
             memcmp(e->channel, rch + plen, rch_len - plen) != 0)
        why = "channel does not match the Redis channel";
    else if (!env_channel_valid((ws_span){e->channel, strlen(e->channel)}))
        why = "bad channel name";
    else if (e->kind == WSFAN__ENVELOPE__KIND__EVENTS)
        why = NULL; /* the presence module checks the members it uses */
    else if (e->seq == 0)
        why = "no seq";
    else if (!ws_utf8_valid(e->payload.data, e->payload.len) ||
             !ws_json_valid((const char *)e->payload.data, e->payload.len))
        why = "payload is not valid JSON";
    if (why) {
        b->st.malformed++;
        log_warn("redis: dropped a malformed message on %.*s: %s", (int)rch_len, rch, why);
    } else if (e->kind == WSFAN__ENVELOPE__KIND__EVENTS) {
        if (b->on_events)
            b->on_events(b->hooks_ctx, e);
    } else {
        b->st.received++;
        b->on_message(b->ctx, (ws_span){e->channel, strlen(e->channel)}, e->seq,
                      (ws_span){(const char *)e->payload.data, e->payload.len}, e->sent_us);
    }
    if (e)
        wsfan__envelope__free_unpacked(e, NULL);
}

static void on_link_message(void *ctx, const char *name, size_t name_len, const uint8_t *p, size_t n)
{
    deliver(ctx, name, name_len, p, n);
}

/* The oldest SUBSCRIBE is answered (or the link is gone): let its waiters go. A refused one
 * acks its waiters too, rather than leaving them hanging. */
static void on_link_subscribed(void *ctx, bool ok)
{
    bus *b = ctx;
    ws_list *head = ws_list_first(&b->pending);
    if (!head)
        return;
    ws_list_remove(head);
    sub_pending *p = ws_container_of(head, sub_pending, link);
    for (sub_waiter *w = p->waiters, *next; w; w = next) {
        next = w->next;
        w->done(w->arg, 1);
        free(w);
    }
    free(p);
}

static void on_link_resubscribe(void *ctx)
{
    bus *b = ctx;
    if (b->resubscribe)
        b->resubscribe(b->ctx);
}

static void on_link_up(void *ctx)
{
    bus *b = ctx;
    if (b->on_up)
        b->on_up(b->hooks_ctx);
}

bus *bus_new(struct ev_loop *loop, const rlink_opts *redis, const char *node_id,
             bus_message_fn on_message, bus_resubscribe_fn resubscribe, void *ctx)
{
    bus *b = calloc(1, sizeof *b);
    if (!b || !(b->node_id = strdup(node_id)))
        return free(b), NULL;
    b->on_message = on_message;
    b->resubscribe = resubscribe;
    b->ctx = ctx;
    ws_list_init(&b->pending);
    const rlink_hooks hooks = {.up = on_link_up,
                               .resubscribe = on_link_resubscribe,
                               .message = on_link_message,
                               .subscribed = on_link_subscribed};
    if (!(b->link = rlink_new(loop, redis, SCRIPT, &hooks, b))) {
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
    b->st.up = s->up;
    return &b->st;
}

void bus_subscribe(bus *b, ws_span ch)
{
    sub_pending *p = calloc(1, sizeof *p + ch.n);
    if (!p)
        return; /* out of memory: the channel stays unsubscribed until a resubscribe */
    memcpy(p->ch, ch.p, ch.n);
    p->len = ch.n;
    if (rlink_subscribe(b->link, CLUSTER_CHANNEL, ch.p, ch.n) < 0) {
        free(p); /* the link is down: subscribed again when it is back */
        return;
    }
    ws_list_push(&b->pending, &p->link);
}

int bus_when_subscribed(bus *b, ws_span ch, bus_published_fn done, void *arg)
{
    sub_pending *found = NULL;
    ws_list_each(it, &b->pending) {
        sub_pending *p = ws_container_of(it, sub_pending, link);
        if (p->len == ch.n && memcmp(p->ch, ch.p, ch.n) == 0)
            found = p; /* the latest SUBSCRIBE of ch under way */
    }
    if (!found)
        return 0;
    sub_waiter *w = malloc(sizeof *w);
    if (!w)
        return 0;
    w->done = done;
    w->arg = arg;
    w->next = found->waiters;
    found->waiters = w;
    return 1;
}

void bus_unsubscribe(bus *b, ws_span ch) { rlink_unsubscribe(b->link, CLUSTER_CHANNEL, ch.p, ch.n); }

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

int bus_publish(bus *b, ws_span ch, ws_span data, bus_published_fn done, void *arg)
{
    Wsfan__Envelope e = WSFAN__ENVELOPE__INIT;
    char chan[ENV_CHANNEL_MAX + 1], keys[2][ENV_CHANNEL_MAX + 8];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    snprintf(chan, sizeof chan, "%.*s", (int)ch.n, ch.p);
    e.kind = WSFAN__ENVELOPE__KIND__PUBLISH;
    e.origin = b->node_id;
    e.channel = chan;
    e.payload.data = (uint8_t *)data.p;
    e.payload.len = data.n;
    e.sent_us = (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec;
    snprintf(keys[0], sizeof keys[0], CLUSTER_SEQ "%s", chan);
    snprintf(keys[1], sizeof keys[1], CLUSTER_CHANNEL "%s", chan);
    const char *k[2] = {keys[0], keys[1]};
    size_t n = wsfan__envelope__get_packed_size(&e);
    uint8_t *buf = rlink_up(b->link) ? malloc(n) : NULL;
    pub_req *q = buf ? malloc(sizeof *q) : NULL;
    if (q) {
        *q = (pub_req){b, done, arg};
        wsfan__envelope__pack(&e, buf);
    }
    if (!q || rlink_eval(b->link, 2, k, buf, n, on_published, q) < 0) {
        free(buf);
        free(q);
        b->st.publish_failures++; /* refused here is as failed as refused by Redis */
        return -1;
    }
    free(buf); /* hiredis copied it into its output buffer */
    b->st.pending++;
    return 0;
}

void bus_on_up(bus *b, bus_up_fn up, bus_events_fn events, void *ctx)
{
    b->hooks_ctx = ctx;
    b->on_up = up;
    b->on_events = events;
}
