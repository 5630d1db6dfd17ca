#include "session.h"

#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "gcra.h"
#include "log.h"
#include "presence.h"
#include "ws_frame.h"

/* ---- the sessions of this worker by number, for direct messages ------------------------- */

static session *clients_get(worker *w, uint64_t id)
{
    tab_entry *e = tab_get(&w->clients, (const char *)&id, sizeof id);
    return e ? ws_container_of(e, session, entry) : NULL;
}

uint64_t session_new_id(worker *w)
{
    uint64_t id = 0;
    while (id == 0 || clients_get(w, id))
        if (RAND_bytes((unsigned char *)&id, sizeof id) != 1)
            id = ++w->next_client ^ 0x9E3779B97F4A7C15ULL; /* the DRBG failed: unique, not secret */
    return id;
}

size_t session_client_id(const session *s, char out[CLUSTER_CLIENT_ID_MAX + 1])
{
    return cluster_client_id(out, CLUSTER_CLIENT_ID_MAX + 1, s->w->node_id, s->id);
}

const char *session_user(const session *s) { return s->user ? s->user : "anonymous"; }

/* ---- replies ------------------------------------------------------------------------------ */

/* Queues b and drops our reference; b == NULL (out of memory) drops the connection. */
static void send_owned(session *s, wbuf *b)
{
    if (!b)
        log_error("out of memory framing a reply");
    s->tx->send(s, b);
    if (b)
        wbuf_unref(b);
}

void session_send_text(session *s, const char *p, size_t n)
{
    send_owned(s, wbuf_frame_copy(WS_OP_TEXT, p, n));
}

void session_reply_err(session *s, ws_span id, const char *code, const char *why)
{
    char out[512];
    size_t n = env_write_err(out, sizeof out, id, code, why);
    session_send_text(s, out, n);
}

void session_reply_ack(session *s, ws_span id, bool has_seq, uint64_t seq)
{
    char out[128];
    size_t n = env_write_ack(out, sizeof out, id, has_seq, seq);
    session_send_text(s, out, n);
}

/* ---- answers from Redis ------------------------------------------------------------------- */

session_wait *session_wait_new(session *s, const env_req *r)
{
    session_wait *p = malloc(sizeof *p);
    if (!p)
        return NULL;
    /* The id is at most ENV_ID_MAX bytes (env_parse); a channel only where the op names one,
     * and validated, so at most ENV_CHANNEL_MAX: anything else is not kept. */
    size_t ch = r->ch.n <= ENV_CHANNEL_MAX ? r->ch.n : 0;
    *p = (session_wait){s, (uint8_t)r->id.n, (uint8_t)ch, {0}, {0}};
    if (r->id.n)
        memcpy(p->id, r->id.p, r->id.n);
    if (ch)
        memcpy(p->ch, r->ch.p, ch);
    return p;
}

static void published(void *arg, uint64_t seq)
{
    session_wait *p = arg;
    session *s = p->s;
    s->refs--;
    if (s->live) {
        ws_span id = {p->id, p->id_len};
        if (seq)
            session_reply_ack(s, id, true, seq);
        else
            session_reply_err(s, id, "unavailable", "the Redis bus did not take the message");
    }
    free(p);
}

/* Acks a sub with the channel's position; the plain ack when it cannot be had. */
static void ack_at(session *s, ws_span id, const env_pos *pos)
{
    char out[ENV_ID_MAX + CLUSTER_EPOCH_MAX + 96];
    size_t n = pos ? env_write_sub_ack(out, sizeof out, id, *pos, -1) : 0;
    if (n)
        session_send_text(s, out, n);
    else
        session_reply_ack(s, id, false, 0);
}

static void position_read(void *arg, const bus_position *pos, const bus_stored *msgs, size_t n)
{
    session_wait *p = arg;
    session *s = p->s;
    ws_span ch = {p->ch, p->ch_len};
    env_pos known;
    s->refs--;
    if (pos)
        hub_learn(&s->w->hub, ch, pos->seq, (ws_span){pos->epoch, pos->epoch_len});
    if (s->live) {
        bool have = hub_position(&s->w->hub, ch, &known); /* newer than the read, if any */
        if (!have && pos)
            known = (env_pos){pos->seq, {pos->epoch, pos->epoch_len}};
        ack_at(s, (ws_span){p->id, p->id_len}, have || pos ? &known : NULL);
    }
    free(p);
}

/* The subscription is in place: ack with the channel's position, known here or read from
 * Redis (what arrives meanwhile is newer than what the read finds). */
static void ack_position(session_wait *p)
{
    session *s = p->s;
    env_pos pos;
    ws_span ch = {p->ch, p->ch_len};
    if (hub_position(&s->w->hub, ch, &pos)) {
        ack_at(s, (ws_span){p->id, p->id_len}, &pos);
    } else if (!s->w->bus) {
        ack_at(s, (ws_span){p->id, p->id_len}, NULL);
    } else if (bus_read(s->w->bus, ch, true, 0, 0, position_read, p) == 0) {
        s->refs++;
        return;
    } else {
        ack_at(s, (ws_span){p->id, p->id_len}, NULL);
    }
    free(p);
}

static void subscribed(void *arg, uint64_t ok)
{
    (void)ok;
    session_wait *p = arg;
    session *s = p->s;
    s->refs--;
    if (s->live) {
        ack_position(p);
        return;
    }
    free(p);
}

/* A sub is acked once Redis has confirmed the subscription, so a client never misses a
 * message published after its ack, and with the channel's position. */
static void ack_sub(session *s, const env_req *r)
{
    session_wait *p = session_wait_new(s, r);
    if (!p) {
        session_reply_ack(s, r->id, false, 0);
        return;
    }
    if (s->w->bus && bus_when_subscribed(s->w->bus, r->ch, subscribed, p)) {
        s->refs++;
        return;
    }
    ack_position(p);
}

/* Cluster mode: Redis assigns the seq and brings the message back to every node, this one
 * included, so all subscribers everywhere see one order. */
static void publish_via_bus(session *s, const env_req *r)
{
    worker *w = s->w;
    session_wait *p = session_wait_new(s, r);
    if (!p) {
        session_reply_err(s, r->id, "internal", "out of memory");
        return;
    }
    if (bus_publish(w->bus, r->ch, r->data, published, p) < 0) {
        free(p);
        session_reply_err(s, r->id, "unavailable", "the Redis bus is down; try again");
        return;
    }
    s->refs++;
    w->st->publishes++;
}

/* ---- requests ----------------------------------------------------------------------------- */

/* The session's grant allows r (presence needs the right to subscribe); else err forbidden. */
static bool permitted(session *s, const env_req *r)
{
    enum auth_what what = r->op == ENV_OP_PUB ? AUTH_PUB : r->op == ENV_OP_SEND ? AUTH_SEND : AUTH_SUB;
    if (r->op == ENV_OP_UNSUB || auth_may(s->grant, what, r->ch))
        return true;
    s->w->st->forbidden++;
    log_info("client %llx: forbidden: %s %.*s", (unsigned long long)s->id,
             r->op == ENV_OP_PUB ? "pub" : r->op == ENV_OP_SEND ? "send" : r->op == ENV_OP_PRESENCE ? "presence" : r->op == ENV_OP_HISTORY ? "history" : "sub",
             (int)r->ch.n, r->ch.p);
    session_reply_err(s, r->id, "forbidden", "the token does not allow this");
    return false;
}

/* --max-msg-rate, as GCRA: one timestamp per session. A message beyond the rate (and its
 * burst of twice the rate) gets err rate_limited and is dropped. The refusals have a budget of
 * their own, a tenth of the rate with a burst of the rate: a client that keeps sending clearly
 * faster than allowed (at twice the rate, within about a second) is closed 1008, while one
 * that overshoots a little only loses those messages. */
static bool within_msg_rate(session *s, bool control)
{
    worker *w = s->w;
    int rate = w->cfg->max_msg_rate;
    if (!rate)
        return true;
    double now = ev_now(w->loop);
    if (gcra_admit(&s->rl_tat, now, rate, 2.0 * rate))
        return true;
    w->st->rate_limited++;
    if (!gcra_admit(&s->abuse_tat, now, rate / 10.0, rate)) {
        w->st->abuse_closes++;
        log_info("client %llx: keeps sending over --max-msg-rate: closing 1008", (unsigned long long)s->id);
        /* Its close reply is not awaited: reading on would cost as much as the flood did.
         * Once the close frame is out, TCP is shut down; the close timeout ends it. */
        s->tx->close(s, SESSION_CLOSE_DEAF, WS_CLOSE_POLICY, "message rate limit");
        return false;
    }
    if (!control) /* a ping over the rate goes unanswered: answering would amplify */
        session_reply_err(s, (ws_span){NULL, 0}, "rate_limited", "over --max-msg-rate: message dropped");
    return false;
}

static void op_sub(session *s, const env_req *r)
{
    worker *w = s->w;
    if (s->subs.n >= (uint32_t)w->cfg->max_subs && !hub_is_member(&w->hub, &s->subs, r->ch)) {
        w->st->too_many_subs++;
        session_reply_err(s, r->id, "too_many_subscriptions", "--max-subs reached");
        return;
    }
    if (hub_subscribe(&w->hub, &s->subs, r->ch) < 0 ||
        (r->events ? hub_subscribe(&w->evhub, &s->evsubs, r->ch) < 0
                   : hub_unsubscribe(&w->evhub, &s->evsubs, r->ch) < 0)) {
        session_reply_err(s, r->id, "internal", "out of memory");
        return;
    }
    if (!r->has_since || !session_recover(s, r))
        ack_sub(s, r);
}

static void op_pub(session *s, const env_req *r)
{
    worker *w = s->w;
    if (worker_overloaded(w)) {
        w->st->publish_overloaded++;
        session_reply_err(s, r->id, "overloaded", "the node cannot deliver faster now; retry later");
        return;
    }
    if (w->bus) {
        publish_via_bus(s, r);
        return;
    }
    size_t delivered;
    uint64_t seq = hub_publish(&w->hub, r->ch, r->data, &delivered);
    w->st->publishes++;
    w->st->deliveries += delivered;
    if (s->live)
        session_reply_ack(s, r->id, seq != 0, seq);
}

static void request(session *s, uint8_t opcode, const uint8_t *data, size_t len)
{
    worker *w = s->w;
    if (opcode == WS_OP_BINARY) {
        log_info("client %llx: binary frame on ws.json.v1", (unsigned long long)s->id);
        s->tx->close(s, SESSION_CLOSE, WS_CLOSE_UNSUPPORTED, "ws.json.v1 takes text frames");
        return;
    }
    env_req r;
    const char *err, *why;
    if (env_parse((const char *)data, len, w->cfg->max_data, &r, &err, &why) < 0) {
        log_info("client %llx: rejected request: %s (%s)", (unsigned long long)s->id, err, why);
        w->st->bad_requests++;
        if (strcmp(err, ENV_ERR_TOO_LARGE) == 0)
            w->st->too_large_data++;
        session_reply_err(s, r.id, err, why);
        return;
    }
    if (!permitted(s, &r))
        return;
    switch (r.op) {
    case ENV_OP_SUB:
        op_sub(s, &r);
        return;
    case ENV_OP_UNSUB:
        hub_unsubscribe(&w->evhub, &s->evsubs, r.ch);
        hub_unsubscribe(&w->hub, &s->subs, r.ch);
        session_reply_ack(s, r.id, false, 0);
        return;
    case ENV_OP_PUB:
        op_pub(s, &r);
        return;
    case ENV_OP_PRESENCE:
        session_op_presence(s, &r);
        return;
    case ENV_OP_SEND:
        session_op_send(s, &r);
        return;
    case ENV_OP_HISTORY:
        session_op_history(s, &r);
        return;
    case ENV_OP_NONE:
        break;
    }
}

void session_message(session *s, uint8_t opcode, const uint8_t *data, size_t len)
{
    if (within_msg_rate(s, false))
        request(s, opcode, data, len);
}

bool session_control(session *s) { return within_msg_rate(s, true); }

/* ---- life --------------------------------------------------------------------------------- */

void session_start(session *s, worker *w, const session_transport *tx, char *user, auth_grant *grant)
{
    s->w = w;
    s->tx = tx;
    s->user = user;
    s->grant = grant;
    s->live = true;
    s->entry.key = (const char *)&s->id;
    s->entry.klen = sizeof s->id;
    s->listed = tab_put(&w->clients, &s->entry) == 0; /* else direct messages get not_found */
    char id[CLUSTER_CLIENT_ID_MAX + 1], hello[512];
    session_client_id(s, id);
    size_t n = env_write_hello(hello, sizeof hello, id, w->node_id);
    session_send_text(s, hello, n);
}

void session_stop(session *s)
{
    s->live = false;
    if (!s->tx)
        return; /* never started */
    session_recovery_stop(s);
    hub_leave_all(&s->w->evhub, &s->evsubs);
    hub_leave_all(&s->w->hub, &s->subs);
}

void session_free(session *s)
{
    session_stop(s);
    if (s->listed)
        tab_del(&s->w->clients, &s->entry);
    s->listed = false;
    free(s->user);
    s->user = NULL;
    auth_grant_free(s->grant);
    s->grant = NULL;
}

/* ---- what presence asks of the sessions --------------------------------------------------- */

void session_member_changed(void *ctx, hub_member *m, ws_span ch, bool joined)
{
    worker *w = ctx;
    session *s = session_of_sub(m);
    char id[CLUSTER_CLIENT_ID_MAX + 1];
    session_client_id(s, id);
    presence_member(w->pres, id, session_user(s), ch, joined);
}

const char *session_direct(worker *w, uint64_t local, const char *from, ws_span data)
{
    session *s = clients_get(w, local);
    if (!s || !s->live)
        return "not_found";
    /* A recipient is never closed for what others send it: it takes --direct-rate a second,
     * and none while it has half its soft limit queued (it is not reading). */
    int rate = w->cfg->direct_rate;
    if (s->tx->queued(s) >= w->cfg->outbuf_soft / 2 ||
        (rate && !gcra_admit(&s->direct_tat, ev_now(w->loop), rate, 2.0 * rate))) {
        w->st->directs_refused++;
        return "busy";
    }
    size_t cap = data.n + strlen(from) * 6 + 64;
    char stackbuf[4096], *out = cap <= sizeof stackbuf ? stackbuf : malloc(cap);
    if (!out)
        return "busy";
    size_t n = env_write_direct(out, cap, from, data);
    if (n)
        session_send_text(s, out, n);
    if (out != stackbuf)
        free(out);
    return n ? NULL : "not_found";
}

typedef struct member_walk {
    void (*fn)(void *ctx, const char *client, const char *user, ws_span ch);
    void *ctx;
} member_walk;

static void each_member(tab_entry *e, void *ctx)
{
    member_walk *mw = ctx;
    session *s = ws_container_of(e, session, entry);
    if (!s->live || !s->subs.n)
        return;
    char id[CLUSTER_CLIENT_ID_MAX + 1];
    session_client_id(s, id);
    for (uint32_t k = 0; k < s->subs.n; k++)
        mw->fn(mw->ctx, id, session_user(s), hub_channel_name(s->subs.subs[k].ch));
}

void session_each_member(worker *w,
                         void (*fn)(void *ctx, const char *client, const char *user, ws_span ch),
                         void *ctx)
{
    member_walk mw = {fn, ctx};
    tab_each(&w->clients, each_member, &mw);
}
