#include "bus.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <sys/ioctl.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cluster.pb-c.h"
#include "envelope.h"
#include "log.h"
#include "ws_json.h"
#include "ws_utf8.h"

/* KEYS[1] seq key, KEYS[2] Redis channel, ARGV[1] the Envelope without seq. Appends field 4
 * (seq, varint) to the Envelope: protobuf lets a field follow the others. Loaded with SCRIPT
 * LOAD when the command link connects, then run by EVALSHA. */
static const char SCRIPT[] =
    "local seq = redis.call('INCR', KEYS[1])\n"
    "local v, t = seq, {}\n"
    "while v >= 128 do t[#t + 1] = string.char(v % 128 + 128); v = math.floor(v / 128) end\n"
    "t[#t + 1] = string.char(v)\n"
    "redis.call('PUBLISH', KEYS[2], ARGV[1] .. '\\32' .. table.concat(t))\n"
    "return seq\n";

/* A SUBSCRIBE sent and not yet confirmed, with the clients waiting for it. Replies come in the
 * order the commands were sent, so a FIFO matches them. */
typedef struct sub_waiter {
    struct sub_waiter *next;
    bus_published_fn done;
    void *arg;
} sub_waiter;

typedef struct sub_pending {
    struct sub_pending *next;
    sub_waiter *waiters;
    size_t len;
    char ch[];
} sub_pending;

/* A channel taken with bus_listen. */
typedef struct listener {
    struct listener *next;
    bus_raw_fn fn;
    void *ctx;
    char name[];
} listener;

struct bus {
    struct ev_loop *loop;
    char host[256];
    int port; /* 0: unix socket at host */
    char *user, *password, *prefix, *node_id; /* user, password: NULL if not given */
    redisAsyncContext *sub, *cmd;
    bool sub_up, cmd_up, loading;
    ev_timer retry;
    double backoff;
    char sha[41];
    bus_message_fn on_message;
    bus_resubscribe_fn resubscribe;
    bus_up_fn on_up;
    bus_events_fn on_events;
    void *ctx;
    listener *listeners;
    bus_stats st;
    sub_pending *pending_head, *pending_tail;
};

typedef struct pub_req {
    bus *b;
    bus_published_fn done;
    void *arg;
    char *payload;
    size_t payload_len;
    char keys[2][BUS_PREFIX_MAX + 8 + ENV_CHANNEL_MAX];
} pub_req;

static void connect_links(bus *b);

/* ---- hiredis on libev -----------------------------------------------------------------------
 * hiredis's own libev adapter reads 16 KiB per wakeup. A subscriber link carries every message
 * of every channel the worker follows, and a worker that is busy fanning out wakes up rarely:
 * Redis would buffer the rest and cut the link at its pub/sub output-buffer limit, losing what
 * was in it. This adapter reads on until the socket is empty (up to LINK_READ_MAX a wakeup),
 * so the backlog lives in the worker's client queues, whose limits it controls, and its watchers
 * run first in each loop iteration. */
#define LINK_READ_MAX (4 << 20)

typedef struct link_ev {
    redisAsyncContext *ac;
    struct ev_loop *loop;
    ev_io rev, wev;
    bool *alive; /* set while a read callback runs: cleared if hiredis frees us under it */
} link_ev;

static void link_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    link_ev *e = w->data;
    bool alive = true;
    e->alive = &alive;
    for (size_t done = 0; done < LINK_READ_MAX; done += 16384) {
        int pending = 0;
        redisAsyncHandleRead(e->ac); /* one read of up to 16 KiB, then the callbacks */
        if (!alive || e->ac->c.fd < 0 || ioctl(e->ac->c.fd, FIONREAD, &pending) < 0 || pending <= 0)
            break;
    }
    if (alive)
        e->alive = NULL;
}

static void link_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    redisAsyncHandleWrite(((link_ev *)w->data)->ac);
}

static void link_add_read(void *p) { ev_io_start(((link_ev *)p)->loop, &((link_ev *)p)->rev); }
static void link_del_read(void *p) { ev_io_stop(((link_ev *)p)->loop, &((link_ev *)p)->rev); }
static void link_add_write(void *p) { ev_io_start(((link_ev *)p)->loop, &((link_ev *)p)->wev); }
static void link_del_write(void *p) { ev_io_stop(((link_ev *)p)->loop, &((link_ev *)p)->wev); }

static void link_cleanup(void *p)
{
    link_ev *e = p;
    link_del_read(e);
    link_del_write(e);
    if (e->alive)
        *e->alive = false;
    free(e);
}

static int link_attach(struct ev_loop *loop, redisAsyncContext *ac)
{
    link_ev *e = calloc(1, sizeof *e);
    if (!e || ac->ev.data)
        return free(e), -1;
    e->ac = ac;
    e->loop = loop;
    ev_io_init(&e->rev, link_read, ac->c.fd, EV_READ);
    ev_io_init(&e->wev, link_write, ac->c.fd, EV_WRITE);
    ev_set_priority(&e->rev, EV_MAXPRI);
    ev_set_priority(&e->wev, EV_MAXPRI);
    e->rev.data = e->wev.data = e;
    ac->ev.addRead = link_add_read;
    ac->ev.delRead = link_del_read;
    ac->ev.addWrite = link_add_write;
    ac->ev.delWrite = link_del_write;
    ac->ev.cleanup = link_cleanup;
    ac->ev.data = e;
    return 0;
}
static void listen_one(bus *b, listener *l);
static void release_head(bus *b);

static void schedule_retry(bus *b)
{
    if (ev_is_active(&b->retry))
        return;
    double jitter = b->backoff * (0.5 + bus_random_unit() / 2);
    ev_timer_set(&b->retry, jitter, 0);
    ev_timer_start(b->loop, &b->retry);
    b->backoff = b->backoff * 2 > 5 ? 5 : b->backoff * 2;
}

static void on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    bus *b = t->data;
    b->st.reconnects++;
    connect_links(b);
}

static void update_up(bus *b)
{
    bool up = b->sub_up && b->cmd_up;
    if (up && !b->st.up) {
        log_info("redis %s:%d: connected", b->host, b->port);
        b->backoff = 0.1;
        b->st.up = true;
        if (b->on_up)
            b->on_up(b->ctx);
    }
    b->st.up = up;
}

/* Publishes flow only once the script is cached in Redis: a NOSCRIPT retried with EVAL would
 * run after publishes sent later, and one client's messages must keep the order it sent them. */
static void on_script_loaded(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)privdata;
    bus *b = ac->data;
    redisReply *reply = r;
    b->loading = false;
    if (!reply || reply->type != REDIS_REPLY_STRING || strcmp(reply->str, b->sha) != 0) {
        log_warn("redis %s:%d: SCRIPT LOAD failed: %s", b->host, b->port,
                 reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "no answer");
        return; /* the link stays "down" for publishes; a reconnect tries again */
    }
    b->cmd_up = true;
    update_up(b);
}

static void load_script(bus *b)
{
    if (b->loading || !b->cmd)
        return;
    b->loading = true;
    redisAsyncCommand(b->cmd, on_script_loaded, NULL, "SCRIPT LOAD %s", SCRIPT);
}

static void on_listen_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    listener *l = privdata;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        bus *b = ac->data;
        log_warn("redis %s:%d: SUBSCRIBE %s: %s", b->host, b->port, l->name, reply->str);
        return;
    }
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    redisReply *msg = reply->element[2];
    if (strcmp(kind, "subscribe") == 0)
        l->fn(l->ctx, NULL, 0);
    else if (strcmp(kind, "message") == 0 && msg->type == REDIS_REPLY_STRING)
        l->fn(l->ctx, (const uint8_t *)msg->str, msg->len);
}

static void listen_one(bus *b, listener *l)
{
    redisAsyncCommand(b->sub, on_listen_reply, l, "SUBSCRIBE %s%s", b->prefix, l->name);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    bus *b = ac->data;
    bool is_sub = ac == b->sub;
    if (status != REDIS_OK) {
        log_warn("redis %s:%d: %s link: %s", b->host, b->port, is_sub ? "subscribe" : "command",
                 ac->errstr);
        if (is_sub)
            b->sub = NULL;
        else
            b->cmd = NULL;
        schedule_retry(b); /* hiredis frees the context */
        return;
    }
    if (is_sub) {
        b->sub_up = true;
        for (listener *l = b->listeners; l; l = l->next)
            listen_one(b, l);
        if (b->resubscribe)
            b->resubscribe(b->ctx);
        update_up(b);
    } else {
        load_script(b); /* the command link counts as up once the script is there */
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    bus *b = ac->data;
    bool is_sub = ac == b->sub;
    (void)status;
    log_warn("redis %s:%d: %s link lost: %s; reconnecting", b->host, b->port,
             is_sub ? "subscribe" : "command", ac->errstr[0] ? ac->errstr : "closed");
    if (is_sub) {
        b->sub = NULL;
        b->sub_up = false;
        while (b->pending_head) /* resubscribed on reconnect; nothing to wait for now */
            release_head(b);
    } else {
        b->cmd = NULL;
        b->cmd_up = false;
        b->loading = false;
    }
    b->st.up = false;
    schedule_retry(b);
}

/* Checks and delivers one PUBLISH envelope that arrived on Redis channel rch. */
static void deliver(bus *b, const char *rch, size_t rch_len, const uint8_t *p, size_t n)
{
    Wsfan__Envelope *e = wsfan__envelope__unpack(NULL, n, p);
    size_t plen = strlen(b->prefix) + 3;
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
            b->on_events(b->ctx, e);
    } else {
        b->st.received++;
        b->on_message(b->ctx, (ws_span){e->channel, strlen(e->channel)}, e->seq,
                      (ws_span){(const char *)e->payload.data, e->payload.len}, e->sent_us);
    }
    if (e)
        wsfan__envelope__free_unpacked(e, NULL);
}

/* The oldest SUBSCRIBE is confirmed (or the link is gone): let its waiters go. */
static void release_head(bus *b)
{
    sub_pending *p = b->pending_head;
    if (!p)
        return;
    b->pending_head = p->next;
    if (!b->pending_head)
        b->pending_tail = NULL;
    for (sub_waiter *w = p->waiters, *next; w; w = next) {
        next = w->next;
        w->done(w->arg, 1);
        free(w);
    }
    free(p);
}

static void on_sub_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)privdata;
    bus *b = ac->data;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR) { /* a refused SUBSCRIBE (NOAUTH, ...) */
        log_warn("redis %s:%d: %s", b->host, b->port, reply->str);
        release_head(b); /* its waiters are acked rather than left hanging */
        return;
    }
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
        return;
    redisReply *kind = reply->element[0], *ch = reply->element[1], *msg = reply->element[2];
    if (kind->type == REDIS_REPLY_STRING && strcmp(kind->str, "subscribe") == 0) {
        release_head(b);
        return;
    }
    if (kind->type == REDIS_REPLY_STRING && strcmp(kind->str, "message") == 0 &&
        ch->type == REDIS_REPLY_STRING && msg->type == REDIS_REPLY_STRING)
        deliver(b, ch->str, ch->len, (const uint8_t *)msg->str, msg->len);
}

static void on_ignore(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)privdata;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        bus *b = ac->data;
        log_warn("redis %s:%d: %s", b->host, b->port, reply->str);
    }
}

/* A refused AUTH (wrong password, unknown or disabled user) leaves a link that can do
 * nothing: it is closed (once the replies already on their way are in) and retried with
 * backoff like a lost one, so a login fixed on the Redis side is picked up. */
static void on_auth(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)privdata;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        bus *b = ac->data;
        log_warn("redis %s:%d: AUTH refused: %s", b->host, b->port, reply->str);
        redisAsyncDisconnect(ac);
    }
}

static redisAsyncContext *open_link(bus *b)
{
    redisAsyncContext *ac = b->port ? redisAsyncConnect(b->host, b->port) : redisAsyncConnectUnix(b->host);
    if (!ac)
        return NULL;
    if (ac->err) {
        log_warn("redis %s:%d: %s", b->host, b->port, ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = b;
    if (link_attach(b->loop, ac) < 0) {
        redisAsyncFree(ac);
        return NULL;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* Queued before anything else on the link, so every later command runs authenticated.
     * While AUTH is refused the bus is never up: publishes get err unavailable. */
    if (b->user)
        redisAsyncCommand(ac, on_auth, NULL, "AUTH %s %s", b->user, b->password ? b->password : "");
    else if (b->password)
        redisAsyncCommand(ac, on_auth, NULL, "AUTH %s", b->password);
    return ac;
}

static void connect_links(bus *b)
{
    if (!b->sub && !(b->sub = open_link(b)))
        schedule_retry(b);
    if (!b->cmd && !(b->cmd = open_link(b)))
        schedule_retry(b);
}

bus *bus_new(struct ev_loop *loop, const char *addr, const char *user, const char *password,
             const char *prefix, const char *node_id, bus_message_fn on_message,
             bus_resubscribe_fn resubscribe, void *ctx)
{
    bus *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    if (addr[0] == '/') {
        snprintf(b->host, sizeof b->host, "%s", addr);
    } else {
        const char *colon = strrchr(addr, ':');
        snprintf(b->host, sizeof b->host, "%.*s", colon ? (int)(colon - addr) : (int)strlen(addr), addr);
        b->port = colon ? atoi(colon + 1) : 6379;
        if (b->port <= 0 || b->port > 65535 || !b->host[0]) {
            log_error("bad --redis address '%s' (host:port or /path/to/socket)", addr);
            free(b);
            return NULL;
        }
    }
    b->loop = loop;
    b->user = user && user[0] ? strdup(user) : NULL;
    b->password = password ? strdup(password) : NULL;
    if (b->user && !b->password)
        log_warn("--redis-user %s without --redis-password: sending an empty password", b->user);
    if (!bus_prefix_valid(prefix)) { /* the configuration checks it; never build cut names */
        log_error("bad --redis-prefix (at most %d printable bytes, no space)", BUS_PREFIX_MAX);
        free(b);
        return NULL;
    }
    b->prefix = strdup(prefix);
    b->node_id = strdup(node_id);
    b->on_message = on_message;
    b->resubscribe = resubscribe;
    b->ctx = ctx;
    b->backoff = 0.1;
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)SCRIPT, sizeof SCRIPT - 1, md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(b->sha + 2 * i, 3, "%02x", md[i]);
    ev_init(&b->retry, on_retry);
    b->retry.data = b;
    connect_links(b);
    return b;
}

bool bus_prefix_valid(const char *p)
{
    size_t n = strlen(p);
    for (size_t i = 0; i < n; i++)
        if (p[i] <= ' ' || p[i] > '~')
            return false;
    return n <= BUS_PREFIX_MAX;
}

bool bus_up(const bus *b) { return b->st.up; }

const bus_stats *bus_get_stats(const bus *b) { return &b->st; }

void bus_subscribe(bus *b, ws_span ch)
{
    if (!b->sub_up)
        return;
    sub_pending *p = calloc(1, sizeof *p + ch.n);
    if (!p)
        return; /* subscribed all the same; only the early ack is lost */
    memcpy(p->ch, ch.p, ch.n);
    p->len = ch.n;
    if (b->pending_tail)
        b->pending_tail->next = p;
    else
        b->pending_head = p;
    b->pending_tail = p;
    redisAsyncCommand(b->sub, on_sub_reply, NULL, "SUBSCRIBE %sch:%b", b->prefix, ch.p, ch.n);
}

int bus_when_subscribed(bus *b, ws_span ch, bus_published_fn done, void *arg)
{
    sub_pending *found = NULL;
    for (sub_pending *p = b->pending_head; p; p = p->next)
        if (p->len == ch.n && memcmp(p->ch, ch.p, ch.n) == 0)
            found = p; /* the latest SUBSCRIBE of ch under way */
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

void bus_unsubscribe(bus *b, ws_span ch)
{
    if (b->sub_up)
        redisAsyncCommand(b->sub, on_sub_reply, NULL, "UNSUBSCRIBE %sch:%b", b->prefix, ch.p, ch.n);
}

static void on_published(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    pub_req *q = privdata;
    bus *b = q->b;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        /* Redis lost its script cache (SCRIPT FLUSH): this publish fails out loud rather than
         * being retried out of order, and publishing pauses until the script is back. */
        b->cmd_up = false;
        b->st.up = false;
        load_script(b);
    }
    b->st.pending--;
    uint64_t seq = 0;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0) {
        seq = (uint64_t)reply->integer;
        b->st.published++;
    } else {
        b->st.publish_failures++;
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_warn("redis: publish refused: %s", reply->str);
    }
    q->done(q->arg, seq);
    free(q->payload);
    free(q);
}

/* REDIS_OK, or REDIS_ERR when the link is going away (then on_published is never called). */
static int send_publish(pub_req *q)
{
    bus *b = q->b;
    const char *argv[6] = {"EVALSHA", b->sha, "2", q->keys[0], q->keys[1], q->payload};
    size_t argvlen[6];
    for (int i = 0; i < 5; i++)
        argvlen[i] = strlen(argv[i]);
    argvlen[5] = q->payload_len;
    return redisAsyncCommandArgv(b->cmd, on_published, q, 6, argv, argvlen);
}

int bus_publish(bus *b, ws_span ch, ws_span data, bus_published_fn done, void *arg)
{
    if (!b->st.up) {
        b->st.publish_failures++; /* refused here is as failed as refused by Redis */
        return -1;
    }
    Wsfan__Envelope e = WSFAN__ENVELOPE__INIT;
    char chan[ENV_CHANNEL_MAX + 1];
    snprintf(chan, sizeof chan, "%.*s", (int)ch.n, ch.p);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    e.kind = WSFAN__ENVELOPE__KIND__PUBLISH;
    e.origin = b->node_id;
    e.channel = chan;
    e.payload.data = (uint8_t *)data.p;
    e.payload.len = data.n;
    e.sent_us = (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec;
    pub_req *q = calloc(1, sizeof *q);
    size_t n = wsfan__envelope__get_packed_size(&e);
    if (!q || !(q->payload = malloc(n))) {
        free(q);
        b->st.publish_failures++;
        return -1;
    }
    q->payload_len = wsfan__envelope__pack(&e, (uint8_t *)q->payload);
    q->b = b;
    q->done = done;
    q->arg = arg;
    snprintf(q->keys[0], sizeof q->keys[0], "%sseq:%s", b->prefix, chan);
    snprintf(q->keys[1], sizeof q->keys[1], "%sch:%s", b->prefix, chan);
    if (send_publish(q) != REDIS_OK) {
        free(q->payload);
        free(q);
        b->st.publish_failures++;
        return -1;
    }
    b->st.pending++;
    return 0;
}

int bus_listen(bus *b, const char *name, bus_raw_fn fn, void *ctx)
{
    size_t n = strlen(name);
    listener *l = malloc(sizeof *l + n + 1);
    if (!l)
        return -1;
    memcpy(l->name, name, n + 1);
    l->fn = fn;
    l->ctx = ctx;
    l->next = b->listeners;
    b->listeners = l;
    if (b->sub_up)
        listen_one(b, l);
    return 0;
}

typedef struct send_req {
    bus_sent_fn done;
    void *arg;
} send_req;

static void on_sent(redisAsyncContext *ac, void *r, void *privdata)
{
    send_req *q = privdata;
    redisReply *reply = r;
    long long n = -1;
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        n = reply->integer;
    else if (reply && reply->type == REDIS_REPLY_ERROR)
        on_ignore(ac, r, NULL);
    if (q->done)
        q->done(q->arg, n);
    free(q);
}

int bus_send(bus *b, const char *name, const void *p, size_t n, bus_sent_fn done, void *arg)
{
    if (!b->cmd_up)
        return -1;
    if (!done)
        return redisAsyncCommand(b->cmd, on_ignore, NULL, "PUBLISH %s%s %b", b->prefix, name, p, n) ==
                       REDIS_OK ? 0 : -1;
    send_req *q = malloc(sizeof *q);
    if (!q)
        return -1;
    q->done = done;
    q->arg = arg;
    if (redisAsyncCommand(b->cmd, on_sent, q, "PUBLISH %s%s %b", b->prefix, name, p, n) != REDIS_OK) {
        free(q); /* the link is going away: done is never called */
        return -1;
    }
    return 0;
}

void bus_on_up(bus *b, bus_up_fn up, bus_events_fn events)
{
    b->on_up = up;
    b->on_events = events;
}
