/* The transport's bookkeeping: the timeout lists and the tick that walks them, the outbound
 * queue of shared frames with its soft and hard limits, the overload check, the pong, and hub
 * delivery. conn.c reads, writes the queue out (flush) and closes. */
#include <linux/sockios.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "conn.h"
#include "conn_impl.h"
#include "log.h"

void conn_impl_mark_pending(conn *c)
{
    if (!ws_list_linked(&c->plink))
        ws_list_push(&c->sess.w->pending, &c->plink);
}

/* ---- timeout lists ---------------------------------------------------------------------- */

void conn_impl_tl_remove(conn *c)
{
    if (c->tl == TL_NONE)
        return;
    ws_list_remove(&c->tlink);
    c->tl = TL_NONE;
}

void conn_impl_tl_move(conn *c, uint8_t which)
{
    if (which == TL_CLOSING && c->tl != TL_CLOSING) {
        int outq = 0;
        c->close_since = ev_now(c->sess.w->loop);
        c->close_outq = c->io.fd >= 0 && ioctl(c->io.fd, SIOCOUTQ, &outq) == 0 && outq > 0 ? (uint32_t)outq : 0;
    }
    conn_impl_tl_remove(c);
    c->tl = which;
    c->tstamp = ev_now(c->sess.w->loop);
    ws_list_push(&c->sess.w->lists[which].head, &c->tlink);
}

/* The connection whose clock started first on l, or NULL. */
static conn *tl_head(tlist *l)
{
    ws_list *n = ws_list_first(&l->head);
    return n ? ws_container_of(n, conn, tlink) : NULL;
}

/* Overload: when a quarter of a worker's clients (and at least OVERLOAD_MIN) are behind at
 * once, each with a quarter of its soft limit queued and each either still reading (it took
 * at least OVERLOAD_TOOK bytes since the last check) or getting more than it takes (its queue
 * grew), it is not they who are slow: the publishers produce more than the worker can deliver.
 * Until fewer than half that many are, the node refuses publishes (err overloaded, 503), so
 * those who read catch up instead of being closed as slow consumers. A reader that stalls
 * counts only while its queue grows: it cannot hold the node in overload, since refusing
 * publishes stops that, and it meets the soft limit and its clock while publishing goes on.
 * Checked every OVERLOAD_CHECK seconds while anyone is behind. The flag lives in the worker's
 * shared stats slot, so every worker of the node refuses: a publish on any of them reaches
 * all of them. */
#define OVERLOAD_MIN 16
#define OVERLOAD_TOOK 1024

/* How many of list l's connections are behind and took at least OVERLOAD_TOOK bytes since the
 * last check, or got more queued (their takings add up in soft_took). Taken means left the
 * kernel for the peer: bytes written minus the growth of the socket's send queue, which a
 * peer that does not read fills without taking anything. A connection must have been behind
 * at two checks in a row to count. */
static size_t count_draining(tlist *l)
{
    size_t n = 0;
    ws_list_each(it, &l->head) {
        conn *c = ws_container_of(it, conn, tlink);
        int outq = 0;
        if (!c->behind || ioctl(c->io.fd, SIOCOUTQ, &outq) < 0 || outq < 0) {
            c->last_outq = UINT32_MAX; /* not known: it does not count next time either */
        } else {
            uint64_t in = c->last_outq == UINT32_MAX ? 0 : (uint64_t)c->drained + c->last_outq;
            uint64_t took = in > (uint64_t)outq ? in - (uint64_t)outq : 0;
            n += took >= OVERLOAD_TOOK || c->qbytes > c->check_q;
            c->soft_took = c->soft_took + took > UINT32_MAX ? UINT32_MAX : c->soft_took + (uint32_t)took;
            c->last_outq = (uint32_t)outq;
        }
        c->drained = 0;
        c->check_q = c->qbytes > UINT32_MAX ? UINT32_MAX : (uint32_t)c->qbytes;
    }
    return n;
}

void conn_overload_check(worker *w)
{
    if (!w->nbehind && !w->st->overloaded)
        return;
    size_t n = count_draining(&w->lists[TL_OPEN]) + count_draining(&w->lists[TL_PINGED]);
    size_t on = w->nconns / 4 > OVERLOAD_MIN ? w->nconns / 4 : OVERLOAD_MIN;
    if (!w->st->overloaded && n >= on) {
        w->st->overloaded = 1;
        log_warn("overloaded: %zu of %zu clients are behind; refusing publishes until they catch up",
                 n, w->nconns);
    } else if (w->st->overloaded && n < on / 2) {
        w->st->overloaded = 0;
        log_info("no longer overloaded: %zu clients behind and draining", n);
    }
}

/* The soft list holds connections over --outbuf-soft in the order they went over, so the
 * tick closes those that stayed there --outbuf-soft-seconds by looking at its head only. */
void conn_impl_soft_remove(conn *c) { ws_list_remove(&c->slink); }

/* Only an open connection with more than one frame queued can be over the limit: one frame
 * larger than the limit on its own (a 16 MiB echo) is not a slow consumer. */
void conn_impl_soft_update(conn *c)
{
    worker *w = c->sess.w;
    bool in_soft = ws_list_linked(&c->slink);
    /* The hot path (every frame queued or written): a short queue with nothing to undo. */
    if (c->qbytes < w->cfg->outbuf_soft / 4 && !c->behind && !in_soft)
        return;
    bool behind = c->state == ST_OPEN && c->qlen > 1 && c->qbytes >= w->cfg->outbuf_soft / 4;
    if (behind != c->behind) {
        c->behind = behind;
        w->nbehind += behind ? 1 : (size_t)-1;
        if (behind && c->state == ST_OPEN)
            c->last_outq = UINT32_MAX; /* what it takes is measured from the next check on */
    }
    bool over = c->qlen > 1 && c->qbytes > w->cfg->outbuf_soft && c->state == ST_OPEN;
    if (in_soft && !over) {
        conn_impl_soft_remove(c);
    } else if (!in_soft && over && w->cfg->slow_policy == SLOW_CLOSE) {
        c->soft_since = ev_now(w->loop);
        c->soft_took = 0;
        ws_list_push(&w->soft, &c->slink);
    }
}

/* A frame larger than --outbuf-hard on its own can still be sent (a 16 MiB echo); what is
 * queued behind it counts against the limits. */
void conn_impl_enqueue(conn *c, wbuf *b)
{
    if (c->state == ST_DEAD || b->len == 0) /* an empty buffer would never leave the queue */
        return;
    if (c->qlen == c->qcap) {
        uint32_t cap = c->qcap ? c->qcap * 2 : 8;
        wbuf **q = malloc(cap * sizeof *q);
        if (!q) {
            c->slow = true; /* cannot queue: treat like a consumer over its limit */
            conn_impl_mark_pending(c);
            return;
        }
        for (uint32_t i = 0; i < c->qlen; i++)
            q[i] = c->q[(c->qhead + i) & (c->qcap - 1)];
        free(c->q);
        c->q = q;
        c->qcap = cap;
        c->qhead = 0;
    }
    if (c->qbytes > c->sess.w->cfg->outbuf_hard)
        c->slow = true;
    c->q[(c->qhead + c->qlen) & (c->qcap - 1)] = wbuf_ref(b);
    c->qlen++;
    c->qbytes += b->len;
    c->sess.w->st->messages_out++;
    conn_impl_soft_update(c);
    conn_impl_mark_pending(c);
}

void conn_impl_send_owned(conn *c, wbuf *b)
{
    if (!b) {
        log_error("out of memory framing a reply");
        conn_close(c, CONN_DROP, 0, "out of memory");
        return;
    }
    conn_impl_enqueue(c, b);
    wbuf_unref(b);
}

void conn_impl_release_queue(conn *c, uint32_t keep)
{
    while (c->qlen > keep) {
        uint32_t i = (c->qhead + c->qlen - 1) & (c->qcap - 1);
        wbuf *b = c->q[i];
        c->qbytes -= b->len - (c->qlen == 1 ? c->qoff : 0);
        wbuf_unref(b);
        c->qlen--;
    }
    if (c->qlen == 0) {
        free(c->q);
        c->q = NULL;
        c->qcap = c->qhead = c->qoff = 0;
        c->qbytes = 0;
        if (c->pong) { /* sent or dropped: an idle connection owns no buffer */
            wbuf_unref(c->pong);
            c->pong = NULL;
        }
    }
    conn_impl_soft_update(c);
}

/* RFC 6455 section 5.5.3 lets a pong answer only the latest of several pings. A connection
 * keeps at most one pong waiting: a ping that finds the last one still queued and not started
 * (nor held by a TLS write that must be retried with the same bytes) rewrites it in place, so
 * a client that pings without reading costs one small buffer, not one per ping. */
void conn_impl_answer_ping(conn *c, const uint8_t *p, size_t n)
{
    wbuf *b = c->pong;
    if (b && b->refs > 1 && !c->io.tls_retry && !(c->qoff && c->q[c->qhead] == b)) {
        uint32_t before = b->len;
        b->len = (uint32_t)ws_frame_header(b->data, WS_OP_PONG, true, false, n, NULL);
        memcpy(b->data + b->len, p, n);
        b->len += (uint32_t)n;
        c->qbytes = c->qbytes - before + b->len;
        return;
    }
    if (b) {
        wbuf_unref(b);
        c->pong = NULL;
    }
    uint8_t *payload; /* room for the largest pong, so a later ping can rewrite it in place */
    b = wbuf_frame(WS_OP_PONG, WS_MAX_CONTROL, &payload);
    if (!b) {
        log_error("out of memory framing a pong");
        conn_close(c, CONN_DROP, 0, "out of memory");
        return;
    }
    b->len = (uint32_t)ws_frame_header(b->data, WS_OP_PONG, true, false, n, NULL);
    memcpy(b->data + b->len, p, n);
    b->len += (uint32_t)n;
    conn_impl_enqueue(c, b); /* takes its own reference; ours stays in c->pong */
    c->pong = b;
}

/* How many frames at the head of the queue must leave it as they are: the one being written,
 * and those whose bytes a waiting TLS write must be retried with. */
static uint32_t started_frames(const conn *c)
{
    uint32_t n = 0;
    size_t have = 0, need = c->io.tls_retry ? c->io.tls_retry : (c->qoff ? 1 : 0);
    while (n < c->qlen && have < need) {
        have += c->q[(c->qhead + n) & (c->qcap - 1)]->len - (n == 0 ? c->qoff : 0);
        n++;
    }
    return n;
}

void conn_impl_slow_close(conn *c)
{
    worker *w = c->sess.w;
    conn_impl_soft_remove(c);
    if (c->state != ST_OPEN) /* already closing: its close frame must not be dropped */
        return;
    w->st->slow_closes++;
    log_info("client %llx: slow consumer (%zu bytes queued): closing 1008", conn_id(c), c->qbytes);
    conn_impl_release_queue(c, started_frames(c));
    conn_impl_soft_remove(c);
    c->slow = false;
    conn_close(c, CONN_GOODBYE, WS_CLOSE_POLICY, "slow consumer");
}

/* A closing connection whose last bytes (its close frame among them) are still in the
 * kernel, and that took at least 1 KiB of them since the last look (or the close began), is
 * still being read: closing the socket now would leave them to an orphaned socket, which the
 * kernel drops under pressure, so the client would see EOF without its close frame. It is
 * given up to CLOSE_MAX seconds in all. */
static bool still_delivering(conn *c, double now)
{
    int outq = 0;
    if (c->io.fd < 0 || now - c->close_since >= CLOSE_MAX || ioctl(c->io.fd, SIOCOUTQ, &outq) < 0 ||
        outq <= 0)
        return false;
    bool moved = (uint32_t)outq + 1024 <= c->close_outq;
    c->close_outq = (uint32_t)outq;
    return moved;
}

/* KiB the kernel holds for c's peer (sent, not yet acknowledged), or -1. */
static int kernel_kib(const conn *c)
{
    int outq = 0;
    if (c->io.fd < 0 || ioctl(c->io.fd, SIOCOUTQ, &outq) < 0 || outq < 0)
        return -1;
    return outq / 1024 < PING_KIB_UNKNOWN ? outq / 1024 : PING_KIB_UNKNOWN - 1;
}

/* A pinged connection whose clock ran out is silent unless its peer is still taking the
 * frames queued before the ping (a subscriber seconds behind a burst cannot answer sooner).
 * Writes restart the clock (conn.c consume); a backlog that sits in the kernel shows as its
 * size going down since the last look. After a write the size is not known: one more
 * period. A dead peer takes nothing, so it is dropped a period or two after its last byte. */
static bool still_taking(conn *c)
{
    int kib = kernel_kib(c);
    bool took = kib > 0 && (c->ping_kib == PING_KIB_UNKNOWN || kib < c->ping_kib);
    c->ping_kib = kib < 0 ? 0 : (uint16_t)kib;
    return took;
}

/* ---- the tick ----------------------------------------------------------------------------- */

/* Over the soft limit for its time: a slow consumer, unless it took its fair pace meanwhile
 * (a quarter of the soft limit: a reader behind only because the worker is overloaded),
 * which starts a new period instead. */
static void tick_soft(worker *w, double now)
{
    ws_list *n;
    while ((n = ws_list_first(&w->soft))) {
        conn *c = ws_container_of(n, conn, slink);
        if (now - c->soft_since < w->cfg->outbuf_soft_seconds)
            break;
        if (c->soft_took >= w->cfg->outbuf_soft / 4) {
            conn_impl_soft_remove(c);
            conn_impl_soft_update(c);
        } else {
            conn_impl_slow_close(c);
        }
    }
}

void conn_tick(worker *w)
{
    double now = ev_now(w->loop);
    tlist *l;
    conn *c;

    l = &w->lists[TL_HANDSHAKE];
    while ((c = tl_head(l)) && now - c->tstamp >= l->timeout) {
        w->st->timeouts++;
        log_info("client %llx: handshake timeout", conn_id(c));
        conn_close(c, CONN_DROP, 0, "handshake timeout");
    }
    l = &w->lists[TL_CLOSING];
    while ((c = tl_head(l)) && now - c->tstamp >= l->timeout) {
        if (still_delivering(c, now)) {
            conn_impl_tl_move(c, TL_CLOSING);
            continue;
        }
        w->st->timeouts++;
        conn_close(c, CONN_DROP, 0, "close timeout");
    }
    l = &w->lists[TL_PINGED];
    while ((c = tl_head(l)) && now - c->tstamp >= l->timeout) {
        if (still_taking(c)) {
            conn_impl_tl_move(c, TL_PINGED);
            continue;
        }
        w->st->timeouts++;
        log_info("client %llx: no answer to ping: dropped", conn_id(c));
        conn_close(c, CONN_DROP, 0, "idle timeout");
    }
    tick_soft(w, now);
    l = &w->lists[TL_STREAM];
    while ((c = tl_head(l)) && now - c->tstamp >= l->timeout)
        conn_impl_stream_ping(c);
    l = &w->lists[TL_OPEN];
    while ((c = tl_head(l)) && now - c->tstamp >= l->timeout) {
        conn_impl_send_owned(c, wbuf_frame_copy(WS_OP_PING, NULL, 0));
        if (c->state == ST_OPEN) {
            conn_impl_tl_move(c, TL_PINGED);
            int kib = kernel_kib(c);
            c->ping_kib = kib < 0 ? 0 : (uint16_t)kib;
        }
    }
}

/* ---- hub delivery: the fan-out's one indirect call lands here ---------------------------- */

/* Frames a conflating connection looks back over for the last one of a channel, beyond one
 * per subscription: room for what never conflates (events, a pong, a late reply). */
#define CONFLATE_SLACK 32

/* --slow-policy conflate, over the soft limit: frame, a channel's msg, takes the place of the
 * last frame of its channel that c has not started to receive; true if it did. In place, not
 * removed and appended: the channel's order holds (no frame of it is queued behind that one),
 * and its newest value goes out as soon as the older one would have, where one moved to the
 * back could be pushed back again by every tick for as long as the reader lags. While over the
 * limit the queue's tail holds at most one frame per channel, so the last of a channel is
 * among the last nsubs + CONFLATE_SLACK frames: looking no further bounds the cost per
 * delivery. One not found there (its last frame is older and deeper) is appended, which keeps
 * the order too, and the next one finds it. */
static bool conflate(conn *c, wbuf *frame, uint32_t nsubs)
{
    worker *w = c->sess.w;
    uint32_t first = started_frames(c), look = nsubs + CONFLATE_SLACK;
    uint32_t from = c->qlen - first > look ? c->qlen - look : first;
    wbuf **slot = wbuf_ring_conflatable(c->q, c->qcap, c->qhead, from, c->qlen, frame);
    if (!slot)
        return false;
    /* Not growth for the overload check (count_draining): a stalled reader whose messages
     * vary in size would otherwise count as getting more than it takes, for ever. */
    int64_t grew = (int64_t)frame->len - (int64_t)(*slot)->len, check = (int64_t)c->check_q + grew;
    c->check_q = check < 0 ? 0 : check > UINT32_MAX ? UINT32_MAX : (uint32_t)check;
    c->qbytes = (size_t)((int64_t)c->qbytes + grew);
    wbuf_unref(*slot);
    *slot = wbuf_ref(frame);
    w->st->conflated++;
    if (c->qbytes > w->cfg->outbuf_hard) { /* as for a frame queued: closed at the next flush */
        c->slow = true;
        conn_impl_mark_pending(c);
    }
    conn_impl_soft_update(c);
    return true;
}

/* A delivery to a connection over its soft limit: its policy decides. Out of line, so the
 * fan-out's common path (deliver_to) is as short as it was. */
__attribute__((noinline)) static void deliver_over_soft(conn *c, wbuf *frame, const hub_member *m)
{
    worker *w = c->sess.w;
    if (w->cfg->slow_policy == SLOW_DROP)
        w->st->drops++;
    else if (w->cfg->slow_policy != SLOW_CONFLATE || !conflate(c, frame, m->n))
        conn_impl_enqueue(c, frame);
}

/* A delivery to an SSE stream: the frame becomes an event of its own (its id is the stream's
 * token), under the same policies. Conflation replaces an event in place, which keeps the
 * tokens right only when they name one channel: a stream of several drops instead. */
__attribute__((noinline)) static void deliver_event(conn *c, wbuf *frame, const hub_member *m)
{
    worker *w = c->sess.w;
    bool over = c->qbytes >= w->cfg->outbuf_soft;
    if (over && (w->cfg->slow_policy == SLOW_DROP ||
                 (w->cfg->slow_policy == SLOW_CONFLATE && m->n > 1))) {
        w->st->drops++; /* before the event is made: the stream's position stays put */
        return;
    }
    wbuf *e = conn_impl_stream_frame(c, frame);
    if (!e)
        return;
    if (over)
        deliver_over_soft(c, e, m);
    else
        conn_impl_enqueue(c, e);
    wbuf_unref(e);
}

static void deliver_to(conn *c, wbuf *frame, const hub_member *m)
{
    worker *w = c->sess.w;
    if (c->state != ST_OPEN || c->slow)
        w->st->drops++;
    else if (c->stream)
        deliver_event(c, frame, m);
    else if (c->qbytes >= w->cfg->outbuf_soft)
        deliver_over_soft(c, frame, m);
    else
        conn_impl_enqueue(c, frame);
}

void conn_hub_deliver(hub_member *m, wbuf *frame, void *ctx)
{
    (void)ctx;
    deliver_to(ws_container_of(session_of_sub(m), conn, sess), frame, m);
}

void conn_evhub_deliver(hub_member *m, wbuf *frame, void *ctx)
{
    (void)ctx;
    deliver_to(ws_container_of(session_of_event(m), conn, sess), frame, m);
}

/* ---- drain in steps ----------------------------------------------------------------------- */

/* The open connection silent the longest: the head of the pinged list (it did not even answer
 * a ping), else of the open list (ordered by last activity). NULL when none is open. */
static conn *longest_silent(worker *w)
{
    for (int l = TL_PINGED; l >= TL_OPEN; l--) {
        ws_list *n = ws_list_first(&w->lists[l].head);
        if (n)
            return ws_container_of(n, conn, tlink);
    }
    return NULL;
}

size_t conn_drain_start(worker *w)
{
    ws_list *n;
    while ((n = ws_list_first(&w->lists[TL_HANDSHAKE].head)))
        conn_close(ws_container_of(n, conn, tlink), CONN_DROP, 0, "draining");
    size_t open = 0;
    for (int l = TL_OPEN; l <= TL_PINGED; l++)
        ws_list_each(it, &w->lists[l].head)
            open++;
    return open;
}

size_t conn_drain_some(worker *w, size_t n)
{
    size_t done = 0;
    conn *c;
    while (done < n && (c = longest_silent(w))) {
        uint8_t tl = c->tl;
        conn_close(c, CONN_GOODBYE, WS_CLOSE_GOING_AWAY, "server shutting down");
        if (c->tl == tl) /* not open after all: it must leave the list all the same */
            conn_close(c, CONN_DROP, 0, "draining");
        done++;
    }
    return done;
}
