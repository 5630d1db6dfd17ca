/* conn_sse: the Server-Sent Events transport (docs/protocol.md, "SSE"), the third file of the
 * connection beside conn.c and conn_queue.c. An SSE stream is an open connection whose
 * session speaks protocol v1 as a WebSocket one does; only its frames go out differently:
 * every frame the session or the hub hands it becomes one event, its data the frame's JSON
 * payload, and channel messages and resets carry an id, the stream's position token (the
 * position of each of its channels), which a reconnect gives back in Last-Event-ID. Acks of
 * the subscriptions the stream made for itself are taken in, not sent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "conn_impl.h"
#include "envelope.h"
#include "log.h"
#include "ws_json.h"
#include "ws_sse.h"

#define SSE_RETRY "retry: 2000\n\n" /* reconnect after 2 s: the drain ramp spreads the rest */

/* One channel of a stream: what its client has been sent of it. */
typedef struct sse_chan {
    const void *chan; /* the hub's identity of the channel (wbuf.chan of its frames) */
    uint64_t seq;
    uint8_t epoch_len, name_len;
    bool since; /* subscribed with since: its ack says whether it recovered */
    char epoch[CLUSTER_EPOCH_MAX];
    char name[ENV_CHANNEL_MAX];
} sse_chan;

typedef struct sse_stream {
    uint32_t n;
    sse_chan ch[];
} sse_stream;

static conn *of_session(const session *s) { return ws_container_of(s, conn, sess); }

/* The payload of a server frame (unmasked, its length in the header). */
static ws_span payload_of(const wbuf *f)
{
    uint8_t len7 = f->len > 1 ? f->data[1] & 0x7f : 0;
    size_t head = len7 < 126 ? 2 : len7 == 126 ? 4 : 10;
    return f->len >= head ? (ws_span){(const char *)f->data + head, f->len - head}
                          : (ws_span){"", 0};
}

/* The op of a protocol v1 object: the name after a leading {"op":". */
static bool op_is(ws_span p, const char *op)
{
    size_t n = strlen(op);
    return p.n > 8 + n && memcmp(p.p, "{\"op\":\"", 7) == 0 && memcmp(p.p + 7, op, n) == 0 &&
           p.p[7 + n] == '"';
}

static bool number_after(ws_span p, const char *key, uint64_t *v)
{
    return ws_json_u64_after(p.p, p.n, key, v);
}

/* Sets ch's epoch from the "epoch":"..." of p (unchanged without one that fits). */
static void take_epoch(sse_chan *ch, ws_span p)
{
    const char *e;
    size_t n;
    if (ws_json_str_after(p.p, p.n, "\"epoch\":\"", &e, &n) && n <= CLUSTER_EPOCH_MAX) {
        memcpy(ch->epoch, e, n);
        ch->epoch_len = (uint8_t)n;
    }
}

/* One event (with the stream's token as id when `id`), as a buffer with one reference that
 * says the channel and seq of frame (so the slow policies see it as the frame). */
static wbuf *event(const sse_stream *st, ws_span data, bool id, const wbuf *frame)
{
    char tok[WS_SSE_TOKEN_MAX(1) * 4];
    char *big = NULL, *t = tok;
    size_t cap = sizeof tok, tn = 0;
    if (id && st->n > 4 && !(t = big = malloc(cap = WS_SSE_TOKEN_MAX(CONN_SSE_MAX))))
        return NULL;
    if (id) {
        env_pos pos[CONN_SSE_MAX];
        for (uint32_t i = 0; i < st->n; i++)
            pos[i] = (env_pos){st->ch[i].seq, {st->ch[i].epoch, st->ch[i].epoch_len}};
        tn = ws_sse_token(t, cap, pos, st->n);
    }
    ws_span tid = {t, tn};
    size_t len = ws_sse_event_len(tid, data);
    wbuf *b = wbuf_new(len);
    if (b) {
        b->len = (uint32_t)ws_sse_event((char *)b->data, len, tid, data);
        b->seq = frame->seq;
        b->chan = frame->chan;
    }
    free(big);
    return b;
}

/* The stream's channel whose frames say chan; one whose sub is still being made (a replay
 * from memory comes before the sub returns) is looked up by name. */
static sse_chan *chan_of(const conn *c, sse_stream *st, const void *chan)
{
    for (uint32_t i = 0; chan && i < st->n; i++) {
        sse_chan *ch = &st->ch[i];
        if (!ch->chan)
            ch->chan = hub_channel_id(&c->sess.w->hub, (ws_span){ch->name, ch->name_len});
        if (ch->chan == chan)
            return ch;
    }
    return NULL;
}

/* The ack of the stream's own sub (id: the channel's index): the position it starts from.
 * A resumed channel that did not recover is told with a reset event, as a WebSocket client
 * is told by "recovered":false. NULL, or that event. */
static wbuf *on_ack(sse_stream *st, ws_span p, const wbuf *frame)
{
    uint64_t i, seq;
    if (!number_after(p, "\"id\":", &i) || i >= st->n || !number_after(p, "\"seq\":", &seq))
        return NULL;
    sse_chan *ch = &st->ch[i];
    bool recovered = memmem(p.p, p.n, "\"recovered\":true", 16) != NULL;
    take_epoch(ch, p);
    if (ch->since && recovered)
        return NULL; /* the replay follows and moves the position on, message by message */
    ch->seq = seq;
    if (!ch->since)
        return NULL;
    char out[ENV_CHANNEL_MAX + CLUSTER_EPOCH_MAX + 80];
    size_t n = env_write_reset(out, sizeof out, (ws_span){ch->name, ch->name_len},
                               (env_pos){seq, {ch->epoch, ch->epoch_len}});
    return n ? event(st, (ws_span){out, n}, true, frame) : NULL;
}

wbuf *conn_impl_sse_event(conn *c, wbuf *frame)
{
    sse_stream *st = c->sse;
    ws_span p = payload_of(frame);
    sse_chan *ch = chan_of(c, st, frame->chan);
    if (op_is(p, "ack"))
        return on_ack(st, p, frame);
    if (ch && frame->seq && op_is(p, "msg")) {
        if (frame->seq <= ch->seq)
            return NULL; /* the client has it (a position never goes back) */
        ch->seq = frame->seq;
    } else if (ch && op_is(p, "reset")) {
        uint64_t seq = 0;
        number_after(p, "\"seq\":", &seq);
        ch->seq = seq;
        take_epoch(ch, p);
    } else {
        ch = NULL; /* hello, err, direct messages, join and leave: no position */
    }
    return event(st, p, ch != NULL, frame);
}

/* ---- the session's transport ---------------------------------------------------------------- */

static void sse_send(session *s, wbuf *frame)
{
    conn *c = of_session(s);
    wbuf *e = frame ? conn_impl_sse_event(c, frame) : NULL;
    if (e)
        conn_impl_send_owned(c, e);
    else if (!frame)
        conn_close(c, CONN_DROP, 0, "out of memory");
}

static void sse_close(session *s, enum session_close how, uint16_t code, const char *reason)
{
    conn_close(of_session(s), how == SESSION_DROP ? CONN_DROP : CONN_HTTP_DONE, code, reason);
}

static size_t sse_queued(const session *s) { return of_session(s)->qbytes; }

static const session_transport sse_transport = {sse_send, sse_close, sse_queued};

/* ---- opening ---------------------------------------------------------------------------------- */

/* Subscribes the stream's channel i as a client's sub would: permissions, limits, presence,
 * and recovery from its position when the request carried one. */
static void subscribe(conn *c, uint32_t i, bool events)
{
    sse_chan *ch = &c->sse->ch[i];
    char req[ENV_CHANNEL_MAX + CLUSTER_EPOCH_MAX + 96];
    int n = snprintf(req, sizeof req, "{\"op\":\"sub\",\"ch\":\"%.*s\",\"id\":%u%s", ch->name_len,
                     ch->name, i, events ? ",\"events\":true" : "");
    if (ch->since)
        n += snprintf(req + n, sizeof req - (size_t)n, ",\"since\":%llu,\"epoch\":\"%.*s\"",
                      (unsigned long long)ch->seq, ch->epoch_len, ch->epoch);
    n += snprintf(req + n, sizeof req - (size_t)n, "}");
    session_message(&c->sess, WS_OP_TEXT, (const uint8_t *)req, (size_t)n);
}

void conn_sse_open(conn *c, const conn_sse_req *r)
{
    worker *w = c->sess.w;
    sse_stream *st = calloc(1, sizeof *st + r->n * sizeof st->ch[0]);
    wbuf *head = wbuf_new(r->head.n + sizeof SSE_RETRY);
    if (!st || !head) {
        free(st);
        if (head)
            wbuf_unref(head);
        free(r->user);
        auth_grant_free(r->grant);
        conn_close(c, CONN_DROP, 0, "out of memory");
        return;
    }
    memcpy(head->data, r->head.p, r->head.n);
    memcpy(head->data + r->head.n, SSE_RETRY, sizeof SSE_RETRY - 1);
    head->len = (uint32_t)(r->head.n + sizeof SSE_RETRY - 1);
    st->n = (uint32_t)r->n;
    for (size_t i = 0; i < r->n; i++) {
        sse_chan *ch = &st->ch[i];
        memcpy(ch->name, r->chans[i].p, r->chans[i].n);
        ch->name_len = (uint8_t)r->chans[i].n;
        if (r->since) { /* epochs were checked by the token's parser: at most CLUSTER_EPOCH_MAX */
            ch->since = true;
            ch->seq = r->since[i].seq;
            memcpy(ch->epoch, r->since[i].epoch.p, r->since[i].epoch.n);
            ch->epoch_len = (uint8_t)r->since[i].epoch.n;
        }
    }
    free(c->hs); /* what the client sends from here on is read and dropped */
    c->hs = NULL;
    c->hs_len = 0;
    c->stream = true;
    c->sse = st;
    c->state = ST_OPEN;
    conn_impl_send_owned(c, head);
    conn_impl_tl_move(c, TL_STREAM);
    w->st->sse_streams++;
    session_start(&c->sess, w, &sse_transport, r->user, r->grant); /* the hello event */
    for (uint32_t i = 0; i < st->n && c->state == ST_OPEN; i++)
        subscribe(c, i, r->events);
}

void conn_impl_sse_free(conn *c)
{
    free(c->sse);
    c->sse = NULL;
}

/* ---- reading and keeping alive -------------------------------------------------------------- */

void conn_impl_sse_read(conn *c)
{
    worker *w = c->sess.w;
    ssize_t n = sock_read_ev(&c->io, w->rbuf, w->rbuf_size, w->loop, &c->wio);
    if (n == 0 || n == -2)
        conn_close(c, CONN_DROP, 0, n == 0 ? "client closed the stream" : "read failed");
}

void conn_impl_sse_ping(conn *c)
{
    static const char comment[] = ":\n";
    wbuf *b = wbuf_new(sizeof comment - 1);
    if (b) {
        memcpy(b->data, comment, sizeof comment - 1);
        b->len = sizeof comment - 1;
    }
    conn_impl_send_owned(c, b);
    if (c->state == ST_OPEN)
        conn_impl_tl_move(c, TL_STREAM);
}
