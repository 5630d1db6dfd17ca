/* conn_stream: the HTTP transports beside WebSocket (docs/protocol.md, "SSE" and
 * "Long-poll"), the third file of the connection beside conn.c and conn_queue.c. A stream is
 * an open connection whose session speaks protocol v1 as a WebSocket one does; only its output
 * differs. SSE: every frame the session or the hub hands it becomes one event, its data the
 * frame's JSON payload, and channel messages and resets carry an id, the stream's position
 * token (the position of each of its channels), which a reconnect gives back in
 * Last-Event-ID. Long-poll: the messages are gathered into one JSON answer with the token as
 * "since", sent as soon as there is one (or at --poll-timeout). Acks of the subscriptions the
 * stream made for itself are taken in, not sent. */
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
typedef struct stream_chan {
    const void *chan; /* the hub's identity of the channel (wbuf.chan of its frames) */
    uint64_t seq;
    uint8_t epoch_len, name_len;
    bool since; /* subscribed with since: its ack says whether it recovered */
    char epoch[CLUSTER_EPOCH_MAX];
    char name[ENV_CHANNEL_MAX];
} stream_chan;

typedef struct stream_state {
    uint32_t n;
    /* long-poll */
    bool resumed, recovered, full; /* asked with since; every channel recovered; batch full */
    bool ready;                    /* SSE: every sub answered: events go out as they come */
    bool nowait;                   /* ?wait=0: answered once every sub is, messages or not */
    /* SSE: until every sub is answered, the events wait here (the hello first), so that the
     * hello a client sees means what a sub's ack means: everything after it is delivered. */
    wbuf **early;
    uint32_t nearly, early_cap;
    uint32_t acks, count;          /* subs answered; messages gathered */
    ev_timer due;                  /* the answer: at --poll-timeout, or at once */
    char *items;                   /* the messages gathered, comma-separated */
    size_t items_len, items_cap;
    char cors[320];                /* header lines for the answer */
    stream_chan ch[];
} stream_state;

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
static void take_epoch(stream_chan *ch, ws_span p)
{
    const char *e;
    size_t n;
    if (ws_json_str_after(p.p, p.n, "\"epoch\":\"", &e, &n) && n <= CLUSTER_EPOCH_MAX) {
        memcpy(ch->epoch, e, n);
        ch->epoch_len = (uint8_t)n;
    }
}

/* The stream's position token into out (room for WS_SSE_TOKEN_MAX(CONN_STREAM_MAX)). */
static size_t token(const stream_state *st, char *out)
{
    env_pos pos[CONN_STREAM_MAX];
    for (uint32_t i = 0; i < st->n; i++)
        pos[i] = (env_pos){st->ch[i].seq, {st->ch[i].epoch, st->ch[i].epoch_len}};
    return ws_sse_token(out, WS_SSE_TOKEN_MAX(CONN_STREAM_MAX), pos, st->n);
}

/* One event (with the stream's token as id when `id`), as a buffer with one reference that
 * says the channel and seq of frame (so the slow policies see it as the frame). */
static wbuf *event(const stream_state *st, ws_span data, bool id, const wbuf *frame)
{
    char *t = id ? malloc(WS_SSE_TOKEN_MAX(CONN_STREAM_MAX)) : NULL;
    if (id && !t)
        return NULL;
    ws_span tid = {t, id ? token(st, t) : 0};
    size_t len = ws_sse_event_len(tid, data);
    wbuf *b = wbuf_new(len);
    if (b) {
        b->len = (uint32_t)ws_sse_event((char *)b->data, len, tid, data);
        b->seq = frame->seq;
        b->chan = frame->chan;
    }
    free(t);
    return b;
}

/* A single-channel stream's event for a message: its id is the channel's position alone, the
 * same for every such stream that knows the same epoch, so the event is made once per
 * broadcast and kept on the frame (wbuf.alt), as the frame itself is made once. A stream
 * whose id would differ (another epoch known) gets one of its own. */
static wbuf *shared_event(const stream_state *st, ws_span data, wbuf *frame)
{
    char id[4 + 20 + 1 + CLUSTER_EPOCH_MAX + 1];
    int n = snprintf(id, sizeof id, "id: %llu-%.*s\n", (unsigned long long)st->ch[0].seq,
                     st->ch[0].epoch_len, st->ch[0].epoch);
    wbuf *alt = frame->alt;
    if (alt && alt->len > (uint32_t)n && memcmp(alt->data, id, (size_t)n) == 0)
        return wbuf_ref(alt);
    wbuf *e = event(st, data, true, frame);
    if (e && !alt)
        frame->alt = wbuf_ref(e);
    return e;
}

/* The stream's channel whose frames say chan; one whose sub is still being made (a replay
 * from memory comes before the sub returns) is looked up by name. */
static stream_chan *chan_of(const conn *c, stream_state *st, const void *chan)
{
    for (uint32_t i = 0; chan && i < st->n; i++) {
        stream_chan *ch = &st->ch[i];
        if (!ch->chan)
            ch->chan = hub_channel_id(&c->sess.w->hub, (ws_span){ch->name, ch->name_len});
        if (ch->chan == chan)
            return ch;
    }
    return NULL;
}

/* The ack of the stream's own sub (id: the channel's index): the position it starts from.
 * A resumed channel that did not recover gets a reset, as a WebSocket client is told by
 * "recovered":false: its text is written into out (0: none). */
static size_t on_ack(stream_state *st, ws_span p, char *out, size_t cap)
{
    uint64_t i, seq;
    if (!number_after(p, "\"id\":", &i) || i >= st->n || !number_after(p, "\"seq\":", &seq))
        return 0;
    stream_chan *ch = &st->ch[i];
    bool recovered = memmem(p.p, p.n, "\"recovered\":true", 16) != NULL;
    st->acks++;
    take_epoch(ch, p);
    if (ch->since && recovered)
        return 0; /* the replay follows and moves the position on, message by message */
    if (!ch->since) { /* messages may have come before the ack: a position never goes back */
        ch->seq = seq > ch->seq ? seq : ch->seq;
        return 0;
    }
    ch->seq = seq;
    st->recovered = false;
    return env_write_reset(out, cap, (ws_span){ch->name, ch->name_len},
                           (env_pos){seq, {ch->epoch, ch->epoch_len}});
}

/* Moves the position of the frame's channel on: msg (true when it is news to the client)
 * and reset; *ch is NULL for a frame of no channel of the stream. */
static bool advance(const conn *c, stream_state *st, const wbuf *frame, ws_span p, stream_chan **ch)
{
    *ch = chan_of(c, st, frame->chan);
    if (*ch && frame->seq && op_is(p, "msg")) {
        if (frame->seq <= (*ch)->seq)
            return false; /* the client has it (a position never goes back) */
        (*ch)->seq = frame->seq;
    } else if (*ch && op_is(p, "reset")) {
        uint64_t seq = 0;
        number_after(p, "\"seq\":", &seq);
        (*ch)->seq = seq;
        take_epoch(*ch, p);
    } else {
        *ch = NULL; /* hello, err, direct messages, join and leave: no position */
    }
    return true;
}

static wbuf *poll_take(conn *c, wbuf *frame);

/* The event a frame becomes for an SSE stream (see conn_impl_stream_frame). */
static wbuf *sse_event(conn *c, stream_state *st, wbuf *frame, ws_span p)
{
    stream_chan *ch;
    if (op_is(p, "ack")) {
        char out[ENV_CHANNEL_MAX + CLUSTER_EPOCH_MAX + 80];
        size_t n = on_ack(st, p, out, sizeof out);
        return n ? event(st, (ws_span){out, n}, true, frame) : NULL;
    }
    if (!advance(c, st, frame, p, &ch))
        return NULL;
    if (st->n == 1 && ch && frame->seq)
        return shared_event(st, p, frame);
    return event(st, p, ch != NULL, frame);
}

/* Keeps e (its reference) until the stream is ready; false when out of memory. */
static bool hold_early(stream_state *st, wbuf *e)
{
    if (st->nearly == st->early_cap) {
        uint32_t cap = st->early_cap ? st->early_cap * 2 : 8;
        wbuf **a = realloc(st->early, cap * sizeof *a);
        if (!a)
            return false;
        st->early = a;
        st->early_cap = cap;
    }
    st->early[st->nearly++] = e;
    return true;
}

static void drop_early(stream_state *st)
{
    for (uint32_t i = 0; i < st->nearly; i++)
        wbuf_unref(st->early[i]);
    free(st->early);
    st->early = NULL;
    st->nearly = st->early_cap = 0;
}

wbuf *conn_impl_stream_frame(conn *c, wbuf *frame)
{
    stream_state *st = c->strm;
    ws_span p = payload_of(frame);
    uint64_t i;
    if (c->stream == CONN_STREAM_POLL)
        return poll_take(c, frame);
    if (op_is(p, "err") && number_after(p, "\"id\":", &i) && i < st->n)
        st->acks++; /* a sub of its own refused: answered all the same */
    wbuf *e = sse_event(c, st, frame, p);
    if (st->ready)
        return e;
    if (e && !hold_early(st, e)) {
        wbuf_unref(e);
        conn_close(c, CONN_DROP, 0, "out of memory");
        return NULL;
    }
    if (st->acks >= st->n) { /* every sub in effect: the hello, then what came meanwhile */
        st->ready = true;
        for (uint32_t k = 0; k < st->nearly; k++)
            conn_impl_enqueue(c, st->early[k]);
        drop_early(st);
    }
    return NULL;
}

/* ---- the session's transport ---------------------------------------------------------------- */

static void stream_send(session *s, wbuf *frame)
{
    conn *c = of_session(s);
    wbuf *e = frame ? conn_impl_stream_frame(c, frame) : NULL;
    if (e)
        conn_impl_send_owned(c, e);
    else if (!frame)
        conn_close(c, CONN_DROP, 0, "out of memory");
}

static void stream_close(session *s, enum session_close how, uint16_t code, const char *reason)
{
    conn_close(of_session(s), how == SESSION_DROP ? CONN_DROP : CONN_HTTP_DONE, code, reason);
}

static size_t stream_queued(const session *s) { return of_session(s)->qbytes; }

static const session_transport stream_transport = {stream_send, stream_close, stream_queued};

/* Subscribes the stream's channel i as a client's sub would: permissions, limits, presence,
 * and recovery from its position when the request carried one. */
static void subscribe(conn *c, uint32_t i, bool events)
{
    stream_chan *ch = &c->strm->ch[i];
    char req[ENV_CHANNEL_MAX + CLUSTER_EPOCH_MAX + 96];
    int n = snprintf(req, sizeof req, "{\"op\":\"sub\",\"ch\":\"%.*s\",\"id\":%u%s", ch->name_len,
                     ch->name, i, events ? ",\"events\":true" : "");
    if (ch->since)
        n += snprintf(req + n, sizeof req - (size_t)n, ",\"since\":%llu,\"epoch\":\"%.*s\"",
                      (unsigned long long)ch->seq, ch->epoch_len, ch->epoch);
    n += snprintf(req + n, sizeof req - (size_t)n, "}");
    session_message(&c->sess, WS_OP_TEXT, (const uint8_t *)req, (size_t)n);
}

/* ---- long-poll -------------------------------------------------------------------------------- */

/* Appends one JSON object to the answer being gathered; false when out of memory. */
static bool gather(stream_state *st, ws_span obj)
{
    if (st->items_len + obj.n + 1 > st->items_cap) {
        size_t cap = st->items_cap ? st->items_cap * 2 : 4096;
        while (cap < st->items_len + obj.n + 1)
            cap *= 2;
        char *p = realloc(st->items, cap);
        if (!p)
            return false;
        st->items = p;
        st->items_cap = cap;
    }
    if (st->items_len)
        st->items[st->items_len++] = ',';
    memcpy(st->items + st->items_len, obj.p, obj.n);
    st->items_len += obj.n;
    return true;
}

/* The answer is due once every sub is answered and there is something to say: at once
 * without since (the position), else as soon as a message came (at the end of this loop
 * round, so what came together goes together). */
static void poll_check(conn *c)
{
    stream_state *st = c->strm;
    if (st->acks < st->n ||
        (st->resumed && !st->count && !st->full && st->recovered && !st->nowait))
        return;
    ev_timer_stop(c->sess.w->loop, &st->due);
    ev_timer_set(&st->due, 0, 0);
    ev_timer_start(c->sess.w->loop, &st->due);
}

static wbuf *poll_take(conn *c, wbuf *frame)
{
    stream_state *st = c->strm;
    ws_span p = payload_of(frame);
    stream_chan *ch;
    uint64_t i;
    if (op_is(p, "err") && number_after(p, "\"id\":", &i) && i < st->n) {
        st->acks++; /* a sub of its own refused: answered all the same */
    } else if (op_is(p, "ack")) {
        char out[ENV_CHANNEL_MAX + CLUSTER_EPOCH_MAX + 80];
        size_t n = on_ack(st, p, out, sizeof out);
        if (n && !gather(st, (ws_span){out, n}))
            conn_close(c, CONN_DROP, 0, "out of memory");
    } else if (st->count >= (uint32_t)c->sess.w->cfg->poll_max_batch && op_is(p, "msg")) {
        st->full = true; /* not taken, the position stays: the next poll reads it back */
    } else if (advance(c, st, frame, p, &ch) && ch) {
        st->count += op_is(p, "msg");
        if (!gather(st, p))
            conn_close(c, CONN_DROP, 0, "out of memory");
    }
    if (c->state == ST_OPEN)
        poll_check(c);
    return NULL;
}

/* Sends the answer: the messages, the token to poll with next, whether everything since the
 * last one is there. Then the connection serves its next request, if nothing holds it. */
static void poll_answer(struct ev_loop *loop, ev_timer *t, int revents)
{
    conn *c = t->data;
    stream_state *st = c->strm;
    worker *w = c->sess.w;
    char tok[WS_SSE_TOKEN_MAX(CONN_STREAM_MAX)], head[512];
    size_t tn = token(st, tok);
    bool again = c->sess.refs == 0 && !w->draining;
    size_t body = st->items_len + tn + 48;
    int hn = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      "Cache-Control: no-store\r\n%s%sContent-Length: ", st->cors,
                      again ? "" : "Connection: close\r\n");
    wbuf *b = wbuf_new((size_t)hn + 32 + body);
    if (!b) {
        conn_close(c, CONN_DROP, 0, "out of memory");
        return;
    }
    char *o = (char *)b->data;
    int bn = snprintf(o + hn + 24, body, "{\"messages\":[%.*s],\"since\":\"%.*s\",\"recovered\":%s}",
                      (int)st->items_len, st->items ? st->items : "", (int)tn, tok,
                      st->recovered ? "true" : "false");
    int ln = snprintf(o, (size_t)hn + 24, "%s%d\r\n\r\n", head, bn);
    memmove(o + ln, o + hn + 24, (size_t)bn);
    b->len = (uint32_t)(ln + bn);
    w->st->polls++;
    if (again) {
        conn_impl_send_owned(c, b);
        conn_impl_http_again(c);
    } else {
        conn_respond(c, b);
        wbuf_unref(b);
    }
}

/* ---- opening ---------------------------------------------------------------------------------- */

/* The stream's state for r, its channels and positions set; NULL when out of memory. */
static stream_state *stream_new(const conn_stream_req *r)
{
    stream_state *st = calloc(1, sizeof *st + r->n * sizeof st->ch[0]);
    if (!st)
        return NULL;
    st->n = (uint32_t)r->n;
    st->resumed = r->since != NULL;
    st->nowait = r->nowait;
    st->recovered = true;
    for (size_t i = 0; i < r->n; i++) {
        stream_chan *ch = &st->ch[i];
        memcpy(ch->name, r->chans[i].p, r->chans[i].n);
        ch->name_len = (uint8_t)r->chans[i].n;
        if (r->since) { /* epochs were checked by the token's parser: at most CLUSTER_EPOCH_MAX */
            ch->since = true;
            ch->seq = r->since[i].seq;
            memcpy(ch->epoch, r->since[i].epoch.p, r->since[i].epoch.n);
            ch->epoch_len = (uint8_t)r->since[i].epoch.n;
        }
    }
    if (r->kind == CONN_STREAM_POLL && r->head.n < sizeof st->cors)
        memcpy(st->cors, r->head.p, r->head.n);
    return st;
}

void conn_stream_open(conn *c, const conn_stream_req *r)
{
    worker *w = c->sess.w;
    bool sse = r->kind == CONN_STREAM_SSE;
    stream_state *st = stream_new(r);
    wbuf *head = sse ? wbuf_new(r->head.n + sizeof SSE_RETRY) : NULL;
    if (!st || (sse && !head)) {
        free(st);
        if (head)
            wbuf_unref(head);
        free(r->user);
        auth_grant_free(r->grant);
        conn_close(c, CONN_DROP, 0, "out of memory");
        return;
    }
    free(c->hs); /* what the client sends from here on is read and dropped */
    c->hs = NULL;
    c->hs_len = 0;
    c->stream = r->kind;
    c->strm = st;
    w->nstreams[r->kind]++;
    c->state = ST_OPEN;
    if (sse) {
        memcpy(head->data, r->head.p, r->head.n);
        memcpy(head->data + r->head.n, SSE_RETRY, sizeof SSE_RETRY - 1);
        head->len = (uint32_t)(r->head.n + sizeof SSE_RETRY - 1);
        conn_impl_send_owned(c, head);
        conn_impl_tl_move(c, TL_STREAM);
        w->st->sse_streams++;
    } else {
        conn_impl_tl_move(c, TL_STREAM); /* for the drain; its answer has its own clock */
        ev_timer_init(&st->due, poll_answer, w->cfg->poll_timeout, 0);
        st->due.data = c;
        ev_timer_start(w->loop, &st->due);
    }
    session_start(&c->sess, w, &stream_transport, r->user, r->grant); /* the hello */
    for (uint32_t i = 0; i < st->n && c->state == ST_OPEN; i++)
        subscribe(c, i, sse && r->events);
}

void conn_impl_stream_free(conn *c)
{
    stream_state *st = c->strm;
    if (st)
        c->sess.w->nstreams[c->stream]--;
    if (st && c->stream == CONN_STREAM_POLL) {
        ev_timer_stop(c->sess.w->loop, &st->due);
        free(st->items);
    }
    if (st)
        drop_early(st);
    free(st);
    c->strm = NULL;
}

/* ---- reading and keeping alive -------------------------------------------------------------- */

void conn_impl_stream_read(conn *c)
{
    worker *w = c->sess.w;
    ssize_t n = sock_read_ev(&c->io, w->rbuf, w->rbuf_size, w->loop, &c->wio);
    if (n == 0 || n == -2)
        conn_close(c, CONN_DROP, 0, n == 0 ? "client closed the stream" : "read failed");
}

void conn_impl_poll_now(conn *c)
{
    stream_state *st = c->strm;
    ev_timer_stop(c->sess.w->loop, &st->due);
    poll_answer(c->sess.w->loop, &st->due, 0);
}

void conn_impl_stream_ping(conn *c)
{
    static const char comment[] = ":\n";
    if (c->stream == CONN_STREAM_POLL) { /* an answer is never interrupted */
        conn_impl_tl_move(c, TL_STREAM);
        return;
    }
    wbuf *b = wbuf_new(sizeof comment - 1);
    if (b) {
        memcpy(b->data, comment, sizeof comment - 1);
        b->len = sizeof comment - 1;
    }
    conn_impl_send_owned(c, b);
    if (c->state == ST_OPEN)
        conn_impl_tl_move(c, TL_STREAM);
}
