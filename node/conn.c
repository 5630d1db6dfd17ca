#include "conn.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bus.h"
#include "cluster.h"
#include "auth.h"
#include "envelope.h"
#include "files.h"
#include "gcra.h"
#include "iplimit.h"
#include "log.h"
#include "metrics.h"
#include "presence.h"
#include "wbuf.h"
#include "ws_handshake.h"
#include "ws_http.h"
#include "ws_json.h"
#include "ws_utf8.h"

enum { ST_HANDSHAKE, ST_BODY, ST_OPEN, ST_CLOSING, ST_LINGER, ST_DEAD };
enum { R_NONE, R_WS, R_ECHO };
enum { AF_NONE, AF_SHUTDOWN, AF_DESTROY };

#define IOV_BATCH 64
#define TLS_CHUNK 16384
#define PROTO_JSON "ws.json.v1"
#define ASKS_MAX 8 /* presence and send requests one connection may have in flight */
#define CLOSE_MAX 60.0 /* seconds a close may take while the client still reads (below) */

struct conn {
    worker *w;
    int fd;
    uint8_t state, route, tl, after_flush;
    bool pending;  /* on w->pending */
    bool writing;  /* wio started */
    bool slow;     /* over the hard limit: close at the next flush */
    bool tls_done; /* TLS handshake finished */
    bool write_wants_read; /* a TLS write waits for bytes from the peer */
    bool in_soft;  /* on w->soft */
    bool behind;   /* its queue is over a quarter of the soft limit: counted in w->nbehind */
    bool paused;   /* its input waits (held) for its output to drain; rio is stopped */
    bool pub_waiting;   /* POST /publish: the body is complete, Redis has not answered yet */
    uint8_t pub_ch_len; /* POST /publish: bytes of msg that are the channel name */
    uint8_t asks;  /* presence queries and direct messages in flight (at most ASKS_MAX) */
    uint32_t soft_took; /* bytes the peer took since it went over the soft limit */
    ev_io rio, wio;
    conn *tprev, *tnext; /* timeout list (tnext also links w->dead) */
    double tstamp;
    conn *pnext;
    SSL *ssl;
    /* Outbound queue: a ring of shared frames; qoff bytes of the head are already sent. */
    wbuf **q;
    uint32_t qhead, qlen, qcap, qoff;
    size_t qbytes;
    union {
        double soft_since;  /* open: when qbytes went over --outbuf-soft (on w->soft) */
        double close_since; /* closing: when the close began */
    };
    union {
        uint32_t close_outq; /* closing: bytes the kernel still held for the peer at last look */
        uint32_t last_outq;  /* open and behind: the same, at the last overload check */
    };
    uint32_t drained;    /* bytes written since the last overload check */
    uint32_t check_q;    /* qbytes at the last overload check */
    conn *sprev, *snext; /* w->soft: over the soft limit, oldest first (policy close only) */
    union {
        struct { /* the request head, during the handshake */
            char *hs;
            size_t hs_len, hs_cap;
        };
        struct { /* open: input read but not yet processed while its output is backed up */
            uint8_t *held;
            size_t held_len;
        };
    };
    uint8_t *msg; /* message assembly; for POST /publish: channel name, then the body */
    size_t msg_len, msg_cap;
    uint32_t refs;      /* publishes awaiting Redis's answer: the struct outlives them */
    uint32_t tls_retry; /* bytes an SSL_write that wanted to wait must be retried with */
    hub_member subs;
    hub_member evsubs; /* channels whose join/leave events it asked for (w->evhub) */
    char *user;        /* user id for presence; NULL: anonymous */
    auth_grant *grant; /* what it may do; NULL: everything (no --auth) */
    double rl_tat;     /* --max-msg-rate: GCRA's theoretical arrival time of the next message */
    double abuse_tat;  /* the same for its refused messages: over a tenth of the rate, closed */
    double send_tat;   /* --direct-rate for the direct messages it sends */
    double direct_tat; /* --direct-rate for the direct messages it receives */
    conn *cnext;       /* w->clients chain */
    ip_entry *ip;      /* its address's entry in w->ips (NULL: not limited) */
    uint64_t id;       /* random: the public part of its client id, never guessable */
    wbuf *pong;        /* the last pong queued (our reference): the one a new ping may rewrite */
    ws_parser parser;
};

static void destroy(conn *c, const char *why);
static void flush(conn *c);
static void clients_remove(conn *c);

/* ---- timeout lists ---------------------------------------------------------------------- */

static void tl_remove(conn *c)
{
    if (c->tl == TL_NONE)
        return;
    tlist *l = &c->w->lists[c->tl];
    if (c->tprev)
        c->tprev->tnext = c->tnext;
    else
        l->head = c->tnext;
    if (c->tnext)
        c->tnext->tprev = c->tprev;
    else
        l->tail = c->tprev;
    c->tprev = c->tnext = NULL;
    c->tl = TL_NONE;
}

/* Moves c to the tail of list `which`, its clock starting now. */
static void tl_move(conn *c, uint8_t which)
{
    if (which == TL_CLOSING && c->tl != TL_CLOSING) {
        int outq = 0;
        c->close_since = ev_now(c->w->loop);
        c->close_outq = c->fd >= 0 && ioctl(c->fd, SIOCOUTQ, &outq) == 0 && outq > 0 ? (uint32_t)outq : 0;
    }
    tl_remove(c);
    tlist *l = &c->w->lists[which];
    c->tl = which;
    c->tstamp = ev_now(c->w->loop);
    c->tprev = l->tail;
    c->tnext = NULL;
    if (l->tail)
        l->tail->tnext = c;
    else
        l->head = c;
    l->tail = c;
}

/* ---- transport: the only two places plain and TLS differ --------------------------------- */

static void want_write(conn *c, bool on)
{
    if (on && !c->writing)
        ev_io_start(c->w->loop, &c->wio);
    else if (!on && c->writing)
        ev_io_stop(c->w->loop, &c->wio);
    c->writing = on;
}

/* >0 bytes read, 0 end of stream, -1 would block, -2 error. */
static ssize_t tx_read(conn *c, void *buf, size_t len)
{
    if (!c->ssl) {
        ssize_t n = read(c->fd, buf, len);
        if (n >= 0)
            return n;
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -1 : -2;
    }
    ERR_clear_error();
    int n = SSL_read(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    if (n > 0)
        return n;
    switch (SSL_get_error(c->ssl, n)) {
    case SSL_ERROR_WANT_READ:
        return -1;
    case SSL_ERROR_WANT_WRITE:
        want_write(c, true);
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        return -2;
    }
}

/* Bytes written (> 0), -1 would block, -2 error. TLS coalesces the iovecs into one record. */
static ssize_t tx_writev(conn *c, const struct iovec *iov, int n)
{
    if (!c->ssl) {
        ssize_t r = writev(c->fd, iov, n);
        if (r >= 0)
            return r;
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -1 : -2;
    }
    size_t want = c->tls_retry ? c->tls_retry : TLS_CHUNK, len = 0;
    for (int i = 0; i < n && len < want; i++) {
        size_t k = iov[i].iov_len < want - len ? iov[i].iov_len : want - len;
        memcpy(c->w->tlsbuf + len, iov[i].iov_base, k);
        len += k;
    }
    ERR_clear_error();
    int r = SSL_write(c->ssl, c->w->tlsbuf, (int)len);
    if (r > 0) {
        c->tls_retry = 0;
        return r;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        c->tls_retry = (uint32_t)len; /* OpenSSL wants the same bytes again (<= TLS_CHUNK) */
        c->write_wants_read = e == SSL_ERROR_WANT_READ;
        return -1;
    }
    return -2;
}

/* ---- outbound queue ----------------------------------------------------------------------- */

static void mark_pending(conn *c)
{
    if (!c->pending) {
        c->pending = true;
        c->pnext = c->w->pending;
        c->w->pending = c;
    }
}

/* Overload: when a quarter of a worker's clients (and at least OVERLOAD_MIN) are behind at
 * once, each with a quarter of its soft limit queued and each either still reading (it took
 * at least OVERLOAD_TOOK bytes since the last check) or getting more than it takes (its queue
 * grew), it is not they who are slow: the publishers produce more than the worker can deliver.
 * Until fewer than half that many are, the node refuses publishes (err overloaded, 503), so
 * those who read catch up instead of being closed as slow consumers. A reader that stalls
 * counts only while its queue grows: it cannot hold the node in overload, since refusing
 * publishes stops that, and it meets the soft limit and its clock while publishing goes on. Checked every OVERLOAD_CHECK seconds
 * while anyone is behind. The flag lives in the worker's shared stats slot, so every worker of
 * the node refuses: a publish on any of them reaches all of them. */
#define OVERLOAD_MIN 16
#define OVERLOAD_TOOK 1024

/* How many of list l's connections are behind and took at least OVERLOAD_TOOK bytes since the
 * last check, or got more queued (their takings add up in soft_took). Taken means left the kernel for the peer: bytes written minus the growth of the
 * socket's send queue, which a peer that does not read fills without taking anything. A
 * connection must have been behind at two checks in a row to count. */
static size_t count_draining(tlist *l)
{
    size_t n = 0;
    for (conn *c = l->head; c; c = c->tnext) {
        int outq = 0;
        if (!c->behind || ioctl(c->fd, SIOCOUTQ, &outq) < 0 || outq < 0) {
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

/* True while any worker of this node is overloaded. */
static bool node_overloaded(const worker *w)
{
    for (int i = 0; i < w->cfg->workers; i++)
        if (w->all[i].overloaded)
            return true;
    return false;
}

/* The soft list holds connections over --outbuf-soft in the order they went over, so the
 * tick closes those that stayed there --outbuf-soft-seconds by looking at its head only. */
static void soft_remove(conn *c)
{
    if (!c->in_soft)
        return;
    tlist *l = &c->w->soft;
    if (c->sprev)
        c->sprev->snext = c->snext;
    else
        l->head = c->snext;
    if (c->snext)
        c->snext->sprev = c->sprev;
    else
        l->tail = c->sprev;
    c->sprev = c->snext = NULL;
    c->in_soft = false;
}

/* Puts c on the soft list or takes it off after its queue changed. Only an open connection
 * with more than one frame queued can be over the limit: one frame larger than the limit on
 * its own (a 16 MiB echo) is not a slow consumer. */
static void soft_update(conn *c)
{
    worker *w = c->w;
    /* The hot path (every frame queued or written): a short queue with nothing to undo. */
    if (c->qbytes < w->cfg->outbuf_soft / 4 && !c->behind && !c->in_soft)
        return;
    bool behind = c->state == ST_OPEN && c->qlen > 1 && c->qbytes >= w->cfg->outbuf_soft / 4;
    if (behind != c->behind) {
        c->behind = behind;
        w->nbehind += behind ? 1 : (size_t)-1;
        if (behind && c->state == ST_OPEN)
            c->last_outq = UINT32_MAX; /* what it takes is measured from the next check on */
    }
    bool over = c->qlen > 1 && c->qbytes > w->cfg->outbuf_soft && c->state == ST_OPEN;
    if (c->in_soft && !over) {
        soft_remove(c);
    } else if (!c->in_soft && over && w->cfg->slow_policy == SLOW_CLOSE) {
        c->in_soft = true;
        c->soft_since = ev_now(w->loop);
        c->soft_took = 0;
        c->sprev = w->soft.tail;
        c->snext = NULL;
        if (w->soft.tail)
            w->soft.tail->snext = c;
        else
            w->soft.head = c;
        w->soft.tail = c;
    }
}

/* Queues b (taking a reference) to be written before the loop next sleeps. A frame larger
 * than --outbuf-hard on its own can still be sent (a 16 MiB echo); what is queued behind it
 * counts against the limits. */
static void enqueue(conn *c, wbuf *b)
{
    if (c->state == ST_DEAD || b->len == 0) /* an empty buffer would never leave the queue */
        return;
    if (c->qlen == c->qcap) {
        uint32_t cap = c->qcap ? c->qcap * 2 : 8;
        wbuf **q = malloc(cap * sizeof *q);
        if (!q) {
            c->slow = true; /* cannot queue: treat like a consumer over its limit */
            mark_pending(c);
            return;
        }
        for (uint32_t i = 0; i < c->qlen; i++)
            q[i] = c->q[(c->qhead + i) & (c->qcap - 1)];
        free(c->q);
        c->q = q;
        c->qcap = cap;
        c->qhead = 0;
    }
    if (c->qbytes > c->w->cfg->outbuf_hard)
        c->slow = true;
    c->q[(c->qhead + c->qlen) & (c->qcap - 1)] = wbuf_ref(b);
    c->qlen++;
    c->qbytes += b->len;
    c->w->st->messages_out++;
    soft_update(c);
    mark_pending(c);
}

static void send_owned(conn *c, wbuf *b)
{
    if (!b) {
        log_error("out of memory framing a reply");
        destroy(c, "out of memory");
        return;
    }
    enqueue(c, b);
    wbuf_unref(b);
}

static void send_text(conn *c, const char *s, size_t n)
{
    send_owned(c, wbuf_frame_copy(WS_OP_TEXT, s, n));
}

static void release_queue(conn *c, uint32_t keep)
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
    soft_update(c);
}

/* RFC 6455 section 5.5.3 lets a pong answer only the latest of several pings. A connection
 * keeps at most one pong waiting: a ping that finds the last one still queued and not started
 * (nor held by a TLS write that must be retried with the same bytes) rewrites it in place, so
 * a client that pings without reading costs one small buffer, not one per ping. */
static void answer_ping(conn *c, const uint8_t *p, size_t n)
{
    wbuf *b = c->pong;
    if (b && b->refs > 1 && !c->tls_retry && !(c->qoff && c->q[c->qhead] == b)) {
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
        destroy(c, "out of memory");
        return;
    }
    b->len = (uint32_t)ws_frame_header(b->data, WS_OP_PONG, true, false, n, NULL);
    memcpy(b->data + b->len, p, n);
    b->len += (uint32_t)n;
    enqueue(c, b); /* takes its own reference; ours stays in c->pong */
    c->pong = b;
}

/* ---- closing ------------------------------------------------------------------------------ */

static void free_buffers(conn *c)
{
    c->paused = false;
    free(c->hs); /* or held: they share their place */
    c->hs = NULL;
    c->hs_len = c->hs_cap = 0;
    free(c->msg);
    c->msg = NULL;
    c->msg_len = c->msg_cap = 0;
}

/* Leaves every channel and event subscription (presence reports the leaves). */
static void leave_channels(conn *c)
{
    hub_leave_all(&c->w->evhub, &c->evsubs);
    hub_leave_all(&c->w->hub, &c->subs);
}

/* Closes the socket now. The struct lives until conn_flush_pending frees it, so a caller up
 * the stack that still holds c sees ST_DEAD instead of freed memory. */
static void destroy(conn *c, const char *why)
{
    if (c->state == ST_DEAD)
        return;
    worker *w = c->w;
    log_debug("client %llx: closed: %s", (unsigned long long)c->id, why);
    tl_remove(c);
    ev_io_stop(w->loop, &c->rio);
    ev_io_stop(w->loop, &c->wio);
    c->writing = false;
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    /* Unread input makes close() send a reset, and a reset throws away what the kernel still
     * holds for the peer: the close frame of a slow consumer, the end of a response. Read it
     * out first (a bounded amount: a flood simply gets its reset). */
    char scratch[4096]; /* not w->rbuf: a caller up the stack may be parsing it */
    for (int i = 0; i < 16 && read(c->fd, scratch, sizeof scratch) > 0; i++) {
    }
    close(c->fd);
    c->fd = -1;
    leave_channels(c);
    if (c->route == R_WS)
        clients_remove(c);
    free(c->user);
    c->user = NULL;
    auth_grant_free(c->grant);
    c->grant = NULL;
    if (c->ip)
        ipl_release(w->ips, c->ip, ev_now(w->loop));
    c->ip = NULL;
    release_queue(c, 0);
    soft_remove(c);
    free_buffers(c);
    c->state = ST_DEAD;
    c->tnext = w->dead;
    w->dead = c;
    w->nconns--;
    if (w->draining && w->nconns == 0)
        ev_break(w->loop, EVBREAK_ALL);
}

static void queue_close_frame(conn *c, uint16_t code, const char *reason)
{
    uint8_t p[WS_MAX_CONTROL];
    size_t n = ws_close_payload(p, code, reason);
    send_owned(c, wbuf_frame_copy(WS_OP_CLOSE, p, n));
}

/* Server-initiated close handshake: send close, then wait (close-timeout) for the client's. */
static void close_with(conn *c, uint16_t code, const char *reason)
{
    if (c->state != ST_OPEN)
        return;
    leave_channels(c);
    free_buffers(c);
    c->state = ST_CLOSING;
    soft_remove(c);
    tl_move(c, TL_CLOSING);
    ev_io_start(c->w->loop, &c->rio); /* held input is dropped; the close reply is read */
    queue_close_frame(c, code, reason);
}

/* Fail the WebSocket connection (RFC 6455 section 7.1.7): close frame, then stop writing and
 * discard input until the client goes or close-timeout passes. */
static void fail(conn *c, uint16_t code, const char *reason)
{
    worker *w = c->w;
    w->st->protocol_errors++;
    if (code == WS_CLOSE_TOO_BIG)
        w->st->too_large_messages++;
    log_info("client %llx: protocol error: %s: closing %u", (unsigned long long)c->id, reason, code);
    bool was_open = c->state == ST_OPEN;
    leave_channels(c);
    free_buffers(c);
    c->state = ST_LINGER;
    soft_remove(c);
    c->after_flush = AF_SHUTDOWN;
    tl_move(c, TL_CLOSING);
    ev_io_start(w->loop, &c->rio);
    mark_pending(c);
    if (was_open)
        queue_close_frame(c, code, reason);
}

/* Queues n raw bytes (an HTTP response) as one buffer. */
static void send_bytes(conn *c, const void *p, size_t n)
{
    if (n == 0) { /* the response did not fit its buffer: a programming error, not the client's */
        log_error("client %llx: response did not fit its buffer", (unsigned long long)c->id);
        destroy(c, "response too large");
        return;
    }
    wbuf *b = wbuf_new(n);
    if (b) {
        memcpy(b->data, p, n);
        b->len = (uint32_t)n;
    }
    send_owned(c, b);
}

/* The HTTP answer is queued: write it, shut down, linger for the FIN. */
static void http_finish(conn *c)
{
    if (c->state == ST_DEAD)
        return;
    free_buffers(c);
    c->state = ST_LINGER;
    c->after_flush = AF_SHUTDOWN;
    tl_move(c, TL_CLOSING);
}

/* Sends an HTTP answer that ends the connection. */
static void http_end(conn *c, const char *out, size_t n)
{
    send_bytes(c, out, n);
    http_finish(c);
}

/* An HTTP answer that ends the connection (errors, /healthz). */
static void http_respond(conn *c, int status, const char *extra, const char *body)
{
    char out[1024];
    http_end(c, out, ws_http_response(out, sizeof out, status, extra, NULL, body, strlen(body)));
}

/* Drops what a slow consumer has not started to receive and closes it with 1008. */
static void slow_close(conn *c)
{
    worker *w = c->w;
    soft_remove(c);
    if (c->state != ST_OPEN) /* already closing: its close frame must not be dropped */
        return;
    w->st->slow_closes++;
    log_info("client %llx: slow consumer (%zu bytes queued): closing 1008",
             (unsigned long long)c->id, c->qbytes);
    /* Keep the frame being written, and whatever a waiting TLS write must be retried with. */
    uint32_t keep = 0;
    size_t kept = 0, need = c->tls_retry ? c->tls_retry : (c->qoff ? 1 : 0);
    while (keep < c->qlen && kept < need) {
        wbuf *b = c->q[(c->qhead + keep) & (c->qcap - 1)];
        kept += b->len - (keep == 0 ? c->qoff : 0);
        keep++;
    }
    release_queue(c, keep);
    soft_remove(c);
    c->slow = false;
    close_with(c, WS_CLOSE_POLICY, "slow consumer");
}

/* ---- writing ------------------------------------------------------------------------------ */

static void process(conn *c, uint8_t *buf, size_t n);

/* The output of a held connection drained: process what it had sent meanwhile, then read on
 * (unless that filled its queue again). */
static void resume_input(conn *c)
{
    uint8_t *h = c->held;
    size_t n = c->held_len;
    c->held = NULL;
    c->held_len = 0;
    c->paused = false;
    if (h) {
        process(c, h, n); /* may hold it again */
        free(h);
    }
    if (c->state == ST_OPEN && !c->paused) {
        ev_io_start(c->w->loop, &c->rio);
        if (c->ssl && SSL_pending(c->ssl)) /* decrypted bytes waiting inside OpenSSL */
            ev_feed_event(c->w->loop, &c->rio, EV_READ);
    }
}

static void flush(conn *c)
{
    worker *w = c->w;
    if (c->state == ST_DEAD)
        return;
    if (c->state == ST_OPEN && c->slow) {
        slow_close(c);
        if (c->state == ST_DEAD)
            return;
    }
    if (c->ssl && !c->tls_done)
        return;
    while (c->qlen) {
        struct iovec iov[IOV_BATCH];
        int n = 0;
        size_t total = 0;
        for (uint32_t i = 0; i < c->qlen && n < IOV_BATCH; i++, n++) {
            wbuf *b = c->q[(c->qhead + i) & (c->qcap - 1)];
            size_t off = i == 0 ? c->qoff : 0;
            iov[n].iov_base = b->data + off;
            iov[n].iov_len = b->len - off;
            total += iov[n].iov_len;
        }
        ssize_t r = tx_writev(c, iov, n);
        if (r == -1) {
            /* A TLS write that waits for the peer's bytes resumes from ws_read, not from
             * writability, which would spin; a paused connection reads for it too. */
            want_write(c, !c->write_wants_read);
            if (c->write_wants_read && c->paused)
                ev_io_start(w->loop, &c->rio);
            return;
        }
        if (r < 0) {
            destroy(c, "write failed");
            return;
        }
        w->st->bytes_out += (uint64_t)r;
        c->drained = c->drained > UINT32_MAX - (uint32_t)r ? UINT32_MAX : c->drained + (uint32_t)r;
        size_t left = (size_t)r;
        while (left) {
            wbuf *b = c->q[c->qhead];
            size_t avail = b->len - c->qoff;
            if (left < avail) {
                c->qoff += (uint32_t)left;
                c->qbytes -= left;
                break;
            }
            left -= avail;
            c->qbytes -= avail;
            wbuf_unref(b);
            c->qhead = (c->qhead + 1) & (c->qcap - 1);
            c->qlen--;
            c->qoff = 0;
        }
        soft_update(c);
        if ((c->state == ST_CLOSING || c->state == ST_LINGER) && ev_now(w->loop) - c->close_since < CLOSE_MAX)
            tl_move(c, TL_CLOSING); /* the close is on its way: its clock runs from here */
        if (c->paused && c->state == ST_OPEN && c->qbytes <= w->cfg->outbuf_soft / 2)
            resume_input(c);
        if (c->state == ST_DEAD)
            return;
        if ((size_t)r < total && !c->ssl) {
            want_write(c, true); /* the socket buffer is full */
            return;
        }
    }
    release_queue(c, 0); /* frees the ring: an idle connection owns no buffer */
    want_write(c, false);
    if (c->after_flush == AF_DESTROY) {
        destroy(c, "closed");
    } else if (c->after_flush == AF_SHUTDOWN) {
        c->after_flush = AF_NONE;
        if (c->ssl)
            SSL_shutdown(c->ssl); /* close_notify; the peer's is not awaited */
        shutdown(c->fd, SHUT_WR);
    } else if (c->paused && c->state == ST_OPEN) {
        resume_input(c); /* what it queues is written on the next pass */
    }
}

/* ---- protocol v1 on /ws ------------------------------------------------------------------- */

static void client_id(const conn *c, char *out, size_t cap)
{
    snprintf(out, cap, "%s.%llx", c->w->node_id, (unsigned long long)c->id);
}

static void reply_err(conn *c, ws_span id, const char *code, const char *why)
{
    char out[512];
    size_t n = env_write_err(out, sizeof out, id, code, why);
    send_text(c, out, n);
}

static void reply_ack(conn *c, ws_span id, bool has_seq, uint64_t seq)
{
    char out[128];
    size_t n = env_write_ack(out, sizeof out, id, has_seq, seq);
    send_text(c, out, n);
}


/* A publish waiting for Redis: who asked, and the request id to ack. */
typedef struct pub_wait {
    conn *c;
    bool http; /* POST /publish: answer 202 or 503 instead of ack or err */
    uint8_t id_len;
    char id[ENV_ID_MAX];
} pub_wait;

static void http_published(conn *c, uint64_t seq);

static void published(void *arg, uint64_t seq)
{
    pub_wait *p = arg;
    conn *c = p->c;
    c->refs--;
    if (p->http) {
        if (c->state == ST_BODY)
            http_published(c, seq);
    } else if (c->state == ST_OPEN) {
        ws_span id = {p->id, p->id_len};
        if (seq)
            reply_ack(c, id, true, seq);
        else
            reply_err(c, id, "unavailable", "the Redis bus did not take the message");
    }
    free(p);
}

static void subscribed(void *arg, uint64_t ok)
{
    (void)ok;
    pub_wait *p = arg;
    conn *c = p->c;
    c->refs--;
    if (c->state == ST_OPEN)
        reply_ack(c, (ws_span){p->id, p->id_len}, false, 0);
    free(p);
}

/* Cluster mode: a sub is acked once Redis has confirmed the subscription, so a client never
 * misses a message published after its ack. */
static void ack_when_subscribed(conn *c, const env_req *r)
{
    pub_wait *p = malloc(sizeof *p);
    if (p) {
        p->c = c;
        p->http = false;
        p->id_len = (uint8_t)r->id.n;
        if (r->id.n)
            memcpy(p->id, r->id.p, r->id.n);
        if (bus_when_subscribed(c->w->bus, r->ch, subscribed, p)) {
            c->refs++;
            return;
        }
        free(p);
    }
    reply_ack(c, r->id, false, 0);
}

/* Cluster mode: Redis assigns the seq and brings the message back to every node, this one
 * included, so all subscribers everywhere see one order. */
static void publish_via_bus(conn *c, const env_req *r)
{
    worker *w = c->w;
    pub_wait *p = malloc(sizeof *p);
    if (!p) {
        reply_err(c, r->id, "internal", "out of memory");
        return;
    }
    p->c = c;
    p->http = false;
    p->id_len = (uint8_t)r->id.n;
    if (r->id.n)
        memcpy(p->id, r->id.p, r->id.n);
    if (bus_publish(w->bus, r->ch, r->data, published, p) < 0) {
        free(p);
        reply_err(c, r->id, "unavailable", "the Redis bus is down; try again");
        return;
    }
    c->refs++;
    w->st->publishes++;
}

/* ---- the clients of this worker by number, for direct messages -------------------------- */

static size_t client_slot(const worker *w, uint64_t id)
{
    return (size_t)((id * 0x9E3779B97F4A7C15ULL) >> 32) & (w->clients_cap - 1);
}

static void clients_add(conn *c)
{
    worker *w = c->w;
    if (w->nclients >= w->clients_cap) {
        size_t cap = w->clients_cap ? w->clients_cap * 2 : 1024;
        conn **t = calloc(cap, sizeof *t);
        if (!t)
            return; /* direct messages to this client will get not_found */
        size_t old = w->clients_cap;
        conn **o = w->clients;
        w->clients = t;
        w->clients_cap = cap;
        for (size_t i = 0; i < old; i++)
            for (conn *x = o[i], *next; x; x = next) {
                next = x->cnext;
                size_t k = client_slot(w, x->id);
                x->cnext = t[k];
                t[k] = x;
            }
        free(o);
    }
    size_t k = client_slot(w, c->id);
    c->cnext = w->clients[k];
    w->clients[k] = c;
    w->nclients++;
}

static void clients_remove(conn *c)
{
    worker *w = c->w;
    if (!w->clients_cap)
        return;
    for (conn **pp = &w->clients[client_slot(w, c->id)]; *pp; pp = &(*pp)->cnext)
        if (*pp == c) {
            *pp = c->cnext;
            w->nclients--;
            return;
        }
}

static conn *clients_get(worker *w, uint64_t id)
{
    if (!w->clients_cap)
        return NULL;
    for (conn *c = w->clients[client_slot(w, id)]; c; c = c->cnext)
        if (c->id == id)
            return c;
    return NULL;
}

static const char *user_of(const conn *c) { return c->user ? c->user : "anonymous"; }

/* ---- presence and direct messages --------------------------------------------------------- */

/* A presence query or a direct message waiting for the cluster: who asked, with what id. */
typedef struct ask_wait {
    conn *c;
    uint8_t id_len;
    char id[ENV_ID_MAX];
    uint8_t ch_len;
    char ch[ENV_CHANNEL_MAX];
} ask_wait;

static ask_wait *ask_new(conn *c, const env_req *r)
{
    ask_wait *a = malloc(sizeof *a);
    if (!a)
        return NULL;
    a->c = c;
    a->id_len = (uint8_t)r->id.n;
    if (r->id.n)
        memcpy(a->id, r->id.p, r->id.n);
    a->ch_len = 0;
    if (r->op == ENV_OP_PRESENCE) { /* validated: at most ENV_CHANNEL_MAX bytes */
        a->ch_len = (uint8_t)r->ch.n;
        memcpy(a->ch, r->ch.p, r->ch.n);
    }
    c->refs++;
    c->asks++;
    return a;
}

/* The answer came (or never will): the connection may be freed again. */
static void ask_free(ask_wait *a)
{
    if (!a)
        return;
    a->c->refs--;
    a->c->asks--;
    free(a);
}

/* Builds a presence answer in a growing buffer and sends it as one frame. */
typedef struct pres_out {
    char *p;
    size_t len, cap;
    bool failed;
} pres_out;

static void pres_put(pres_out *o, size_t (*write)(char *, size_t, void *), void *arg)
{
    for (;;) {
        if (o->failed)
            return;
        size_t n = write(o->p + o->len, o->cap - o->len, arg);
        if (n) {
            o->len += n;
            return;
        }
        size_t cap = o->cap ? o->cap * 2 : 4096;
        char *p = realloc(o->p, cap);
        if (!p) {
            o->failed = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
}

typedef struct pres_member {
    bool first;
    const char *client, *user, *node;
} pres_member;

static size_t put_member(char *out, size_t cap, void *arg)
{
    pres_member *m = arg;
    return env_write_member(out, cap, m->first, m->client, m->user, m->node);
}

typedef struct pres_head {
    ws_span id, ch;
    uint64_t count;
    bool members;
} pres_head;

static size_t put_head(char *out, size_t cap, void *arg)
{
    pres_head *h = arg;
    return env_write_presence_head(out, cap, h->id, h->ch, h->count, h->members);
}

static size_t put_tail(char *out, size_t cap, void *arg)
{
    const char *t = arg;
    size_t n = strlen(t);
    if (n > cap)
        return 0;
    memcpy(out, t, n);
    return n;
}

static void send_presence(conn *c, pres_out *o)
{
    if (o->failed)
        reply_err(c, (ws_span){NULL, 0}, "internal", "out of memory");
    else
        send_owned(c, wbuf_frame_copy(WS_OP_TEXT, o->p, o->len));
    free(o->p);
}

static void presence_answered(void *arg, const char *error, const Wsfan__Envelope *e)
{
    ask_wait *a = arg;
    conn *c = a->c;
    ws_span id = {a->id, a->id_len}, ch = {a->ch, a->ch_len};
    if (c->state != ST_OPEN) {
        ask_free(a);
        return;
    }
    if (error || !e) {
        if (error && strcmp(error, "rebuilding") == 0) /* never a partial list as if whole */
            reply_err(c, id, "unavailable", "wsrouter is rebuilding presence after a restart; try again");
        else
            reply_err(c, id, error ? error : "unavailable", "wsrouter did not answer");
        ask_free(a);
        return;
    }
    bool members = !e->count_only;
    pres_out o = {0};
    pres_head h = {id, ch, e->count, members};
    pres_put(&o, put_head, &h);
    for (size_t i = 0; members && i < e->n_members; i++) {
        const Wsfan__Envelope__Member *m = e->members[i];
        if (!ws_utf8_valid((const uint8_t *)m->client_id, strlen(m->client_id)) ||
            !ws_utf8_valid((const uint8_t *)m->user_id, strlen(m->user_id)) ||
            !ws_utf8_valid((const uint8_t *)m->node_id, strlen(m->node_id)))
            continue;
        pres_member pm = {o.len && o.p[o.len - 1] == '[', m->client_id, m->user_id, m->node_id};
        pres_put(&o, put_member, &pm);
    }
    pres_put(&o, put_tail, members ? "]}" : "}");
    send_presence(c, &o);
    ask_free(a);
}

typedef struct local_walk {
    pres_out *o;
    const worker *w;
    char id[160];
} local_walk;

static void local_member(hub_member *m, void *ctx)
{
    local_walk *lw = ctx;
    if (lw->o->failed)
        return;
    conn *x = (conn *)((char *)m - offsetof(conn, subs));
    client_id(x, lw->id, sizeof lw->id);
    pres_member pm = {lw->o->p[lw->o->len - 1] == '[', lw->id, user_of(x), lw->w->node_id};
    pres_put(lw->o, put_member, &pm);
}

/* Without the Redis bus this worker is the whole cluster: it answers presence itself. */
static void presence_local(conn *c, const env_req *r)
{
    worker *w = c->w;
    size_t count = hub_count(&w->hub, r->ch);
    bool members = !r->count_only && count <= (size_t)w->cfg->presence_max_members;
    pres_out o = {0};
    pres_head h = {r->id, r->ch, count, members};
    pres_put(&o, put_head, &h);
    if (members && !o.failed) {
        local_walk lw = {&o, w, {0}};
        hub_each_member(&w->hub, r->ch, local_member, &lw);
    }
    pres_put(&o, put_tail, members ? "]}" : "}");
    send_presence(c, &o);
}

static void op_presence(conn *c, const env_req *r)
{
    worker *w = c->w;
    if (!w->pres) {
        presence_local(c, r);
        return;
    }
    if (c->asks >= ASKS_MAX) {
        reply_err(c, r->id, "too_many_requests", "at most 8 presence or send requests in flight");
        return;
    }
    ask_wait *a = ask_new(c, r);
    if (!a || presence_query(w->pres, r->ch, r->count_only, presence_answered, a) < 0) {
        ask_free(a);
        reply_err(c, r->id, "unavailable", "no wsrouter can be asked now; try again");
    }
}

/* The sender learns what became of its direct message: ack, or why not. */
static void direct_answered_now(conn *c, ws_span id, const char *error)
{
    if (c->state != ST_OPEN)
        return;
    if (!error)
        reply_ack(c, id, false, 0);
    else if (strcmp(error, "not_found") == 0)
        reply_err(c, id, "not_found", "no such client");
    else if (strcmp(error, "busy") == 0)
        reply_err(c, id, "busy", "the client is not reading, or receives too many direct messages: dropped");
    else
        reply_err(c, id, error, "the client's node did not answer");
}

static void direct_answered(void *arg, const char *error, const Wsfan__Envelope *e)
{
    (void)e;
    ask_wait *a = arg;
    direct_answered_now(a->c, (ws_span){a->id, a->id_len}, error);
    ask_free(a);
}

static void op_send(conn *c, const env_req *r)
{
    worker *w = c->w;
    char from[160];
    client_id(c, from, sizeof from);
    ws_span node;
    uint64_t local;
    if (!cluster_client_split(r->to, &node, &local)) {
        reply_err(c, r->id, "not_found", "no such client");
        return;
    }
    int rate = w->cfg->direct_rate;
    if (rate && !gcra_admit(&c->send_tat, ev_now(w->loop), rate, 2.0 * rate)) {
        w->st->rate_limited++;
        reply_err(c, r->id, "rate_limited", "over --direct-rate: message dropped");
        return;
    }
    if (ws_span_eq(node, w->node_id) || !w->pres) {
        const char *error = ws_span_eq(node, w->node_id) ? conn_direct(w, local, from, r->data) : "not_found";
        direct_answered_now(c, r->id, error);
        return;
    }
    if (c->asks >= ASKS_MAX) {
        reply_err(c, r->id, "too_many_requests", "at most 8 presence or send requests in flight");
        return;
    }
    ask_wait *a = ask_new(c, r);
    if (!a || presence_send(w->pres, from, r->to, r->data, direct_answered, a) < 0) {
        ask_free(a);
        reply_err(c, r->id, "unavailable", "the Redis bus is down; try again");
    }
}

/* The connection's grant allows r (presence needs the right to subscribe); else err forbidden. */
static bool permitted(conn *c, const env_req *r)
{
    enum auth_what what = r->op == ENV_OP_PUB ? AUTH_PUB : r->op == ENV_OP_SEND ? AUTH_SEND : AUTH_SUB;
    if (r->op == ENV_OP_UNSUB || auth_may(c->grant, what, r->ch))
        return true;
    c->w->st->forbidden++;
    log_info("client %llx: forbidden: %s %.*s", (unsigned long long)c->id,
             r->op == ENV_OP_PUB ? "pub" : r->op == ENV_OP_SEND ? "send" : r->op == ENV_OP_PRESENCE ? "presence" : "sub",
             (int)r->ch.n, r->ch.p);
    reply_err(c, r->id, "forbidden", "the token does not allow this");
    return false;
}

/* --max-msg-rate, as GCRA: one timestamp per connection. A message beyond the rate (and its
 * burst of twice the rate) gets err rate_limited and is dropped. The refusals have a budget of
 * their own, a tenth of the rate with a burst of the rate: a client that keeps sending clearly
 * faster than allowed (at twice the rate, within about a second) is closed 1008, while one
 * that overshoots a little only loses those messages. */
static bool within_msg_rate(conn *c, bool control)
{
    worker *w = c->w;
    int rate = w->cfg->max_msg_rate;
    if (!rate)
        return true;
    double now = ev_now(w->loop);
    if (gcra_admit(&c->rl_tat, now, rate, 2.0 * rate))
        return true;
    w->st->rate_limited++;
    if (!gcra_admit(&c->abuse_tat, now, rate / 10.0, rate)) {
        w->st->abuse_closes++;
        log_info("client %llx: keeps sending over --max-msg-rate: closing 1008", (unsigned long long)c->id);
        close_with(c, WS_CLOSE_POLICY, "message rate limit");
        /* Its close reply is not awaited: reading on would cost as much as the flood did.
         * Once the close frame is out, TCP is shut down; the close timeout ends it. */
        ev_io_stop(w->loop, &c->rio);
        c->after_flush = AF_SHUTDOWN;
        return false;
    }
    if (!control) /* a ping over the rate goes unanswered: answering would amplify */
        reply_err(c, (ws_span){NULL, 0}, "rate_limited", "over --max-msg-rate: message dropped");
    return false;
}

static void ws_request(conn *c, uint8_t opcode, const uint8_t *data, size_t len)
{
    worker *w = c->w;
    if (opcode == WS_OP_BINARY) {
        log_info("client %llx: binary frame on ws.json.v1", (unsigned long long)c->id);
        close_with(c, WS_CLOSE_UNSUPPORTED, "ws.json.v1 takes text frames");
        return;
    }
    env_req r;
    const char *err, *why;
    if (env_parse((const char *)data, len, w->cfg->max_data, &r, &err, &why) < 0) {
        log_info("client %llx: rejected request: %s (%s)", (unsigned long long)c->id, err, why);
        w->st->bad_requests++;
        if (strcmp(err, ENV_ERR_TOO_LARGE) == 0)
            w->st->too_large_data++;
        reply_err(c, r.id, err, why);
        return;
    }
    if (!permitted(c, &r))
        return;
    switch (r.op) {
    case ENV_OP_SUB:
        if (c->subs.n >= (uint32_t)w->cfg->max_subs && !hub_is_member(&w->hub, &c->subs, r.ch)) {
            w->st->too_many_subs++;
            reply_err(c, r.id, "too_many_subscriptions", "--max-subs reached");
            return;
        }
        if (hub_subscribe(&w->hub, &c->subs, r.ch) < 0 ||
            (r.events ? hub_subscribe(&w->evhub, &c->evsubs, r.ch) < 0
                      : hub_unsubscribe(&w->evhub, &c->evsubs, r.ch) < 0)) {
            reply_err(c, r.id, "internal", "out of memory");
            return;
        }
        if (w->bus)
            ack_when_subscribed(c, &r);
        else
            reply_ack(c, r.id, false, 0);
        return;
    case ENV_OP_UNSUB:
        hub_unsubscribe(&w->evhub, &c->evsubs, r.ch);
        hub_unsubscribe(&w->hub, &c->subs, r.ch);
        reply_ack(c, r.id, false, 0);
        return;
    case ENV_OP_PUB: {
        if (node_overloaded(w)) {
            w->st->publish_overloaded++;
            reply_err(c, r.id, "overloaded", "the node cannot deliver faster now; retry later");
            return;
        }
        if (w->bus) {
            publish_via_bus(c, &r);
            return;
        }
        size_t delivered;
        uint64_t seq = hub_publish(&w->hub, r.ch, r.data, &delivered);
        w->st->publishes++;
        w->st->deliveries += delivered;
        if (c->state == ST_OPEN)
            reply_ack(c, r.id, seq != 0, seq);
        return;
    }
    case ENV_OP_PRESENCE:
        op_presence(c, &r);
        return;
    case ENV_OP_SEND:
        op_send(c, &r);
        return;
    case ENV_OP_NONE:
        break;
    }
}

static void deliver_message(conn *c, uint8_t opcode, const uint8_t *data, size_t len)
{
    c->w->st->messages_in++;
    if (c->route == R_ECHO)
        send_owned(c, wbuf_frame_copy(opcode, data, len));
    else if (within_msg_rate(c, false))
        ws_request(c, opcode, data, len);
}

static void on_data(conn *c, const ws_event *ev)
{
    if (ev->first && ev->fin && !c->msg) {
        deliver_message(c, ev->opcode, ev->data, ev->len); /* whole message in this read: no copy */
        return;
    }
    if (c->msg_len + ev->len > c->msg_cap) {
        size_t cap = c->msg_cap ? c->msg_cap : 4096;
        while (cap < c->msg_len + ev->len)
            cap *= 2;
        uint8_t *m = realloc(c->msg, cap);
        if (!m) {
            fail(c, WS_CLOSE_INTERNAL, "out of memory assembling a message");
            return;
        }
        c->msg = m;
        c->msg_cap = cap;
    }
    if (ev->len)
        memcpy(c->msg + c->msg_len, ev->data, ev->len);
    c->msg_len += ev->len;
    if (ev->fin) {
        uint8_t *m = c->msg;
        size_t n = c->msg_len;
        c->msg = NULL;
        c->msg_len = c->msg_cap = 0;
        deliver_message(c, ev->opcode, m, n);
        free(m);
    }
}

static void on_close_frame(conn *c, const ws_event *ev)
{
    if (c->state == ST_OPEN) {
        /* Echo the code (RFC 6455 section 5.5.1), then close TCP: the server closes first. */
        uint16_t code = ev->code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL : ev->code;
        leave_channels(c);
        free_buffers(c);
        c->state = ST_CLOSING;
        soft_remove(c);
        tl_move(c, TL_CLOSING);
        queue_close_frame(c, code, NULL);
    }
    c->after_flush = AF_DESTROY;
    mark_pending(c);
}

/* A client whose output is backed up gets no more of its requests processed (the answers
 * would only pile up): the rest of what was read waits in c->held and reading stops until
 * the queue is down to half the soft limit. Whatever it asks, a client cannot make the
 * worker produce more than about its soft limit ahead of what it reads. */
static bool hold_input(conn *c, const uint8_t *rest, size_t n)
{
    worker *w = c->w;
    if (c->state != ST_OPEN || c->qbytes <= w->cfg->outbuf_soft)
        return false;
    if (n) {
        uint8_t *h = malloc(n);
        if (!h) {
            fail(c, WS_CLOSE_INTERNAL, "out of memory holding input");
            return true;
        }
        memcpy(h, rest, n);
        c->held = h;
        c->held_len = n;
    }
    c->paused = true;
    ev_io_stop(w->loop, &c->rio);
    w->st->inputs_paused++;
    return true;
}

/* Runs the frame parser over n bytes (unmasked in place) and acts on each event. */
static void process(conn *c, uint8_t *buf, size_t n)
{
    size_t off = 0;
    while (off < n && (c->state == ST_OPEN || c->state == ST_CLOSING)) {
        if (c->state == ST_OPEN && c->qbytes > c->w->cfg->outbuf_soft && hold_input(c, buf + off, n - off))
            return;
        ws_event ev;
        off += ws_parser_feed(&c->parser, buf + off, n - off, &ev);
        switch (ev.type) {
        case WS_EV_NONE:
            return;
        case WS_EV_DATA:
            if (c->state == ST_OPEN)
                on_data(c, &ev);
            break;
        case WS_EV_PING: /* control frames count toward --max-msg-rate on /ws */
            if (c->state == ST_OPEN && (c->route != R_WS || within_msg_rate(c, true)))
                answer_ping(c, ev.data, ev.len);
            break;
        case WS_EV_PONG:
            if (c->state == ST_OPEN && c->route == R_WS)
                within_msg_rate(c, true);
            break;
        case WS_EV_CLOSE:
            on_close_frame(c, &ev);
            return;
        case WS_EV_ERROR:
            if (c->state == ST_OPEN)
                fail(c, ev.code, ev.reason);
            else
                destroy(c, ev.reason);
            return;
        }
    }
}

/* ---- handshake ---------------------------------------------------------------------------- */

static void open_ws(conn *c, int route, const ws_hs_result *hs, const char *protocol,
                    size_t head_len)
{
    worker *w = c->w;
    char out[256];
    size_t n = ws_handshake_response(out, sizeof out, hs->accept, protocol);
    send_bytes(c, out, n);
    if (c->state == ST_DEAD)
        return;
    c->route = (uint8_t)route;
    c->state = ST_OPEN;
    ws_parser_init(&c->parser, route == R_ECHO ? &w->echo_opts : &w->ws_opts);
    tl_move(c, TL_OPEN);
    if (route == R_WS) {
        clients_add(c);
        char id[160], hello[512];
        client_id(c, id, sizeof id);
        n = env_write_hello(hello, sizeof hello, id, w->node_id);
        send_text(c, hello, n);
    }
    /* Bytes after the head are the first frames. */
    char *hsbuf = c->hs;
    size_t rest = c->hs_len - head_len;
    c->hs = NULL;
    c->hs_len = c->hs_cap = 0;
    if (rest)
        process(c, (uint8_t *)hsbuf + head_len, rest);
    free(hsbuf);
}

/* The bearer token of a request: ?token= (what browsers can send) or Authorization: Bearer. */
static bool bearer_token(const ws_http_req *req, ws_span *token)
{
    if (ws_http_query_get(req->query, "token", token))
        return true;
    const ws_span *h = ws_http_get(req, "Authorization");
    if (!h || h->n < 7 || strncasecmp(h->p, "Bearer ", 7) != 0)
        return false;
    *token = (ws_span){h->p + 7, h->n - 7};
    return true;
}

static void refuse_token(conn *c, const char *why)
{
    c->w->st->handshakes_failed++;
    c->w->st->auth_failures++;
    log_info("client %llx: 401: %s", (unsigned long long)c->id, why); /* never the token */
    http_respond(c, 401, "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n", "a valid token is required\n");
}

/* Who the client of a /ws upgrade is: with --auth, the token's sub claim and its permissions
 * (or anonymous); without, the ?user= it names. -1: refused (answered). */
static int identify(conn *c, const ws_http_req *req)
{
    worker *w = c->w;
    ws_span token, user = {"anonymous", 9};
    char sub[AUTH_USER_MAX + 1];
    if (w->auth) {
        const char *why;
        if (!bearer_token(req, &token)) {
            if (w->cfg->auth == AUTH_REQUIRED) {
                refuse_token(c, "no token");
                return -1;
            }
            c->grant = (auth_grant *)auth_anonymous(w->auth);
            return 0;
        }
        if (auth_check(w->auth, token.p, token.n, ev_now(w->loop), sub, &c->grant, &why) < 0) {
            refuse_token(c, why);
            return -1;
        }
        user = (ws_span){sub, strlen(sub)};
    } else if (ws_http_query_get(req->query, "user", &user)) {
        if (!env_user_valid(user)) {
            w->st->handshakes_failed++;
            log_info("client %llx: bad user id in the upgrade", (unsigned long long)c->id);
            http_respond(c, 400, NULL, "user must be 1-64 bytes of [A-Za-z0-9._:@-]\n");
            return -1;
        }
    } else {
        return 0;
    }
    if (!(c->user = strndup(user.p, user.n))) {
        http_respond(c, 503, NULL, "out of memory\n");
        return -1;
    }
    return 0;
}

/* ---- POST /publish/<channel>: backends publish without a WebSocket ------------------------ */

static void http_published(conn *c, uint64_t seq)
{
    if (!seq) {
        http_respond(c, 503, "Retry-After: 1\r\n", "the Redis bus is unavailable; try again\n");
        return;
    }
    char body[48], out[256];
    int bn = snprintf(body, sizeof body, "{\"seq\":%llu}\n", (unsigned long long)seq);
    http_end(c, out, ws_http_response(out, sizeof out, 202, NULL, "application/json", body, (size_t)bn));
}

/* The body is complete: check it is JSON and publish it. */
static void publish_body(conn *c)
{
    worker *w = c->w;
    ws_span ch = {(const char *)c->msg, c->pub_ch_len};
    ws_span data = {(const char *)c->msg + c->pub_ch_len, c->msg_len - c->pub_ch_len};
    if (!ws_utf8_valid((const uint8_t *)data.p, data.n) || !ws_json_valid(data.p, data.n)) {
        log_info("client %llx: POST /publish body is not JSON", (unsigned long long)c->id);
        http_respond(c, 400, NULL, "the body must be one JSON value (UTF-8)\n");
        return;
    }
    if (node_overloaded(w)) {
        w->st->publish_overloaded++;
        http_respond(c, 503, "Retry-After: 1\r\n", "overloaded: the node cannot deliver faster now; retry later\n");
        return;
    }
    w->st->publishes++;
    if (!w->bus) {
        size_t delivered;
        uint64_t seq = hub_publish(&w->hub, ch, data, &delivered);
        w->st->deliveries += delivered;
        http_published(c, seq);
        return;
    }
    pub_wait *p = malloc(sizeof *p);
    if (!p || bus_publish(w->bus, ch, data, published, p) < 0) {
        free(p);
        http_published(c, 0);
        return;
    }
    p->c = c;
    p->http = true;
    p->id_len = 0;
    c->refs++;
    c->pub_waiting = true;
}

static bool key_matches(ws_span got, const char *key)
{
    size_t n = strlen(key);
    if (got.n != n + 7 || strncasecmp(got.p, "Bearer ", 7) != 0)
        return false;
    unsigned char diff = 0; /* constant time over the key */
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(got.p[7 + i] ^ key[i]);
    return diff == 0;
}

/* POST /publish may go on with this Authorization: 1 (the publish key), 2 (a JWT allowing pub
 * on ch), 0 (no or a bad credential), -1 (a valid JWT that does not allow ch). */
static int publish_allowed(conn *c, const ws_span *authz, ws_span ch)
{
    worker *w = c->w;
    if (!authz)
        return 0;
    if (w->cfg->publish_key && key_matches(*authz, w->cfg->publish_key))
        return 1;
    if (!w->auth || authz->n < 7 || strncasecmp(authz->p, "Bearer ", 7) != 0)
        return 0;
    char user[AUTH_USER_MAX + 1];
    auth_grant *g;
    const char *why;
    if (auth_check(w->auth, authz->p + 7, authz->n - 7, ev_now(w->loop), user, &g, &why) < 0) {
        log_info("client %llx: POST /publish: token refused: %s", (unsigned long long)c->id, why);
        return 0;
    }
    bool ok = auth_may(g, AUTH_PUB, ch);
    auth_grant_free(g);
    return ok ? 2 : -1;
}

/* --publish-rate, as GCRA over the worker, bursts of one second's worth: one budget for the
 * publish key (the backends) and one for JWTs (clients), so clients cannot use up the
 * backends'. */
static bool within_publish_rate(worker *w, bool key)
{
    int rate = w->cfg->publish_rate;
    return !rate || gcra_admit(key ? &w->publish_tat : &w->publish_jwt_tat, ev_now(w->loop), rate, rate);
}

static void publish_request(conn *c, const ws_http_req *req, ws_span ch)
{
    worker *w = c->w;
    const config *cfg = w->cfg;
    const ws_span *authz = ws_http_get(req, "Authorization");
    int allowed = publish_allowed(c, authz, ch);
    if (!ws_span_eq(req->method, "POST")) {
        http_respond(c, 405, "Allow: POST\r\n", "POST the data\n");
    } else if (!cfg->publish_key && !w->auth) {
        http_respond(c, 403, NULL, "HTTP publish is off: start wsnode with --publish-key or --auth\n");
    } else if (allowed == 0) {
        w->st->auth_failures++;
        log_info("client %llx: POST /publish with a wrong or missing key", (unsigned long long)c->id);
        http_respond(c, 401, "WWW-Authenticate: Bearer\r\n", "a valid Authorization: Bearer key is required\n");
    } else if (allowed < 0) {
        w->st->forbidden++;
        http_respond(c, 403, NULL, "the token does not allow publishing on this channel\n");
    } else if (!within_publish_rate(w, allowed == 1)) {
        w->st->publish_limited++;
        http_respond(c, 429, "Retry-After: 1\r\n", "over --publish-rate; try again\n");
    } else if (!env_channel_valid(ch)) {
        http_respond(c, 400, NULL, "channel names are 1-200 bytes of [A-Za-z0-9._:-]\n");
    } else if (req->chunked || req->content_length < 0) {
        http_respond(c, 411, NULL, "Content-Length is required\n");
    } else if ((uint64_t)req->content_length > cfg->max_data) {
        http_respond(c, 413, NULL, "the body is larger than --max-data\n");
    } else if (req->content_length == 0) {
        http_respond(c, 400, NULL, "the body must be one JSON value\n");
    } else {
        size_t len = (size_t)req->content_length;
        uint8_t *m = malloc(ch.n + len);
        if (!m) {
            destroy(c, "out of memory");
            return;
        }
        memcpy(m, ch.p, ch.n);
        size_t have = c->hs_len - req->head_len;
        if (have > len)
            have = len;
        memcpy(m + ch.n, c->hs + req->head_len, have);
        free(c->hs);
        c->hs = NULL;
        c->hs_len = c->hs_cap = 0;
        c->msg = m;
        c->pub_ch_len = (uint8_t)ch.n;
        c->msg_len = ch.n + have;
        c->msg_cap = ch.n + len;
        c->state = ST_BODY; /* still on the handshake clock: a slow body is dropped in time */
        if (c->msg_len == c->msg_cap)
            publish_body(c);
    }
}

static void body_read(conn *c)
{
    worker *w = c->w;
    if (c->pub_waiting) { /* nothing more is expected: drain and drop */
        ssize_t n = tx_read(c, w->rbuf, w->rbuf_size);
        if (n == 0 || n == -2)
            destroy(c, "client went away");
        return;
    }
    ssize_t n = tx_read(c, c->msg + c->msg_len, c->msg_cap - c->msg_len);
    if (n == -1)
        return;
    if (n <= 0) {
        destroy(c, "client went away during the body");
        return;
    }
    w->st->bytes_in += (uint64_t)n;
    c->msg_len += (size_t)n;
    if (c->msg_len == c->msg_cap)
        publish_body(c);
}

/* --static: a file from memory, or 404. */
static void static_file(conn *c, const ws_http_req *req)
{
    size_t head_len;
    wbuf *b = c->w->files ? files_get(c->w->files, req->path, &head_len) : NULL;
    bool get = ws_span_eq(req->method, "GET"), head = ws_span_eq(req->method, "HEAD");
    if (!b) {
        http_respond(c, 404, NULL, "not found\n");
    } else if (!get && !head) {
        http_respond(c, 405, "Allow: GET, HEAD\r\n", "method not allowed\n");
    } else if (head) {
        http_end(c, (const char *)b->data, head_len);
    } else {
        enqueue(c, b); /* the shared prebuilt response: no copy */
        http_finish(c);
    }
}

static void route_request(conn *c, const ws_http_req *req)
{
    worker *w = c->w;
    const config *cfg = w->cfg;
    ws_span path = req->path;
    if (ws_span_eq(path, "/healthz")) {
        if (!ws_span_eq(req->method, "GET"))
            http_respond(c, 405, "Allow: GET\r\n", "method not allowed\n");
        else
            http_respond(c, 200, NULL, "ok\n");
        return;
    }
    if (ws_span_eq(path, "/metrics")) {
        if (!ws_span_eq(req->method, "GET")) {
            http_respond(c, 405, "Allow: GET\r\n", "method not allowed\n");
            return;
        }
        static char body[16384], out[17000];
        size_t bn = metrics_render(w->all, cfg->workers, body, sizeof body);
        http_end(c, out, ws_http_response(out, sizeof out, 200, NULL, "text/plain; version=0.0.4", body, bn));
        return;
    }
    if (path.n > 9 && memcmp(path.p, "/publish/", 9) == 0) {
        publish_request(c, req, (ws_span){path.p + 9, path.n - 9});
        return;
    }
    int route = ws_span_eq(path, "/ws") ? R_WS : cfg->echo && ws_span_eq(path, "/echo") ? R_ECHO : R_NONE;
    if (route == R_NONE) {
        static_file(c, req);
        return;
    }
    static const char *const json_only[] = {PROTO_JSON};
    ws_hs_opts o = {
        .protocols = route == R_WS ? json_only : NULL,
        .nprotocols = route == R_WS ? 1 : 0,
        .origins = cfg->origins,
        .norigins = (size_t)cfg->norigins,
    };
    ws_hs_result r;
    if (ws_handshake_check(req, &o, &r) != 101) {
        w->st->handshakes_failed++;
        log_info("client %llx: handshake refused %d: %s", (unsigned long long)c->id, r.status, r.reason);
        char out[1024];
        http_end(c, out, ws_handshake_error(out, sizeof out, &r));
        return;
    }
    if (route == R_WS && identify(c, req) < 0)
        return;
    open_ws(c, route, &r, r.protocol >= 0 ? o.protocols[r.protocol] : NULL, req->head_len);
}

/* TLS handshake step: 1 finished, 0 waiting for the socket, -1 failed (c destroyed). */
static int tls_step(conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->tls_done = true;
        want_write(c, false);
        return 1;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        want_write(c, e == SSL_ERROR_WANT_WRITE);
        return 0;
    }
    char err[160] = "connection closed";
    unsigned long code = ERR_get_error();
    if (code)
        ERR_error_string_n(code, err, sizeof err);
    c->w->st->handshakes_failed++;
    log_info("client %llx: TLS handshake failed: %s", (unsigned long long)c->id, err);
    destroy(c, "TLS handshake failed");
    return -1;
}

static void handshake_read(conn *c)
{
    worker *w = c->w;
    if (c->ssl && !c->tls_done && tls_step(c) <= 0)
        return;
    if (!c->hs) {
        c->hs_cap = w->cfg->max_header_size + 1;
        c->hs = malloc(c->hs_cap);
        if (!c->hs) {
            destroy(c, "out of memory");
            return;
        }
    }
    for (;;) {
        ssize_t n = tx_read(c, c->hs + c->hs_len, c->hs_cap - c->hs_len);
        if (n == -1)
            return;
        if (n <= 0) {
            destroy(c, n == 0 ? "client went away during handshake" : "read failed");
            return;
        }
        w->st->bytes_in += (uint64_t)n;
        size_t last = c->hs_len;
        c->hs_len += (size_t)n;
        ws_http_limits lim = {w->cfg->max_header_size, (size_t)w->cfg->max_headers};
        static ws_http_req req; /* one worker thread; too large for every stack frame */
        int r = ws_http_parse(c->hs, c->hs_len, last, &lim, &req);
        if (r == WS_HTTP_PARTIAL)
            continue;
        if (r == WS_HTTP_BAD || r == WS_HTTP_TOO_LARGE) {
            w->st->handshakes_failed++;
            int status = r == WS_HTTP_BAD ? 400 : 431;
            if (status == 431)
                w->st->too_large_heads++;
            log_info("client %llx: bad HTTP request: %d", (unsigned long long)c->id, status);
            http_respond(c, status, NULL, status == 400 ? "malformed request\n" : "request head too large\n");
            return;
        }
        if (req.http_major != 1) { /* HTTP/2.0 or 0.9 in a request line: RFC 9110 15.6.6 */
            w->st->handshakes_failed++;
            w->st->bad_requests++;
            log_info("client %llx: request line says HTTP/%d.%d: 505", (unsigned long long)c->id,
                     req.http_major, req.http_minor);
            http_respond(c, 505, NULL, "HTTP/1.1 is spoken here\n");
            return;
        }
        route_request(c, &req);
        /* Frames that came in the same TLS record as the head wait inside OpenSSL, where the
         * socket's readiness will not announce them. */
        if (c->ssl && c->state == ST_OPEN && SSL_pending(c->ssl))
            ev_feed_event(w->loop, &c->rio, EV_READ);
        return;
    }
}

/* ---- reading ------------------------------------------------------------------------------ */

/* A paused connection is only read when a TLS write needs the peer's bytes: what that reads is
 * kept behind what it held already. */
static void paused_read(conn *c)
{
    worker *w = c->w;
    ev_io_stop(w->loop, &c->rio);
    if (!c->write_wants_read)
        return;
    c->write_wants_read = false;
    mark_pending(c);
    ssize_t n = tx_read(c, w->rbuf, w->rbuf_size);
    if (n <= 0) {
        if (n != -1)
            destroy(c, n == 0 ? "client closed TCP" : "read failed");
        return;
    }
    uint8_t *h = realloc(c->held, c->held_len + (size_t)n);
    if (!h) {
        fail(c, WS_CLOSE_INTERNAL, "out of memory holding input");
        return;
    }
    memcpy(h + c->held_len, w->rbuf, (size_t)n);
    c->held = h;
    c->held_len += (size_t)n;
}

static void ws_read(conn *c)
{
    worker *w = c->w;
    if (c->paused) {
        paused_read(c);
        return;
    }
    if (!ev_is_active(&c->rio)) /* fed by hand after its reading stopped */
        return;
    /* Plain sockets: one read per readiness (level-triggered, fair to the others). TLS: drain
     * what OpenSSL has decrypted, as the socket will not signal it again. */
    for (int round = 0; round < (c->ssl ? 16 : 1); round++) {
        ssize_t n = tx_read(c, w->rbuf, w->rbuf_size);
        if (n == -1)
            return;
        if (n <= 0) {
            destroy(c, n == 0 ? "client closed TCP" : "read failed");
            return;
        }
        w->st->bytes_in += (uint64_t)n;
        if (c->write_wants_read) {
            c->write_wants_read = false;
            mark_pending(c);
        }
        if (c->state == ST_OPEN && (c->tl != TL_OPEN || c->tstamp != ev_now(w->loop)))
            tl_move(c, TL_OPEN); /* activity: restart its ping clock */
        process(c, w->rbuf, (size_t)n);
        if ((c->state != ST_OPEN && c->state != ST_CLOSING) || c->paused || !ev_is_active(&c->rio))
            return;
    }
    if (c->ssl && SSL_pending(c->ssl))
        ev_feed_event(w->loop, &c->rio, EV_READ);
}

static void linger_read(conn *c)
{
    worker *w = c->w;
    ssize_t n = tx_read(c, w->rbuf, w->rbuf_size);
    if (n == 0 || n == -2)
        destroy(c, "closed after error");
}

static void on_read(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    conn *c = (conn *)((char *)io - offsetof(conn, rio));
    switch (c->state) {
    case ST_HANDSHAKE:
        handshake_read(c);
        break;
    case ST_BODY:
        body_read(c);
        break;
    case ST_OPEN:
    case ST_CLOSING:
        ws_read(c);
        break;
    case ST_LINGER:
        linger_read(c);
        break;
    default:
        break;
    }
}

static void on_write(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    conn *c = (conn *)((char *)io - offsetof(conn, wio));
    if (c->ssl && !c->tls_done) {
        if (tls_step(c) == 1)
            handshake_read(c); /* the request may already be decrypted and waiting */
        return;
    }
    if (c->ssl && c->state == ST_OPEN && c->qlen == 0) {
        want_write(c, false); /* SSL_read wanted to write; reading resumes it */
        ws_read(c);
        return;
    }
    flush(c);
}

/* ---- worker-facing ------------------------------------------------------------------------ */

static void deliver_to(conn *c, wbuf *frame)
{
    worker *w = c->w;
    if (c->state != ST_OPEN || c->slow) {
        w->st->drops++;
        return;
    }
    if (w->cfg->slow_policy == SLOW_DROP && c->qbytes >= w->cfg->outbuf_soft) {
        w->st->drops++;
        return;
    }
    enqueue(c, frame);
}

static void deliver(hub_member *m, wbuf *frame, void *ctx)
{
    (void)ctx;
    deliver_to((conn *)((char *)m - offsetof(conn, subs)), frame);
}

static void deliver_event(hub_member *m, wbuf *frame, void *ctx)
{
    (void)ctx;
    deliver_to((conn *)((char *)m - offsetof(conn, evsubs)), frame);
}

hub_deliver_fn conn_hub_deliver(void) { return deliver; }

hub_deliver_fn conn_evhub_deliver(void) { return deliver_event; }

/* 64 random bits from OpenSSL's DRBG: a client id names no neighbour, so nobody can list who
 * is connected or aim direct messages at clients they were never told of. */
static uint64_t new_id(worker *w)
{
    uint64_t id = 0;
    while (id == 0 || clients_get(w, id))
        if (RAND_bytes((unsigned char *)&id, sizeof id) != 1)
            id = ++w->next_client ^ 0x9E3779B97F4A7C15ULL; /* the DRBG failed: unique, not secret */
    return id;
}

void conn_accept(worker *w, int fd, ip_entry *ip)
{
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        log_error("out of memory accepting a connection");
        close(fd);
        if (ip)
            ipl_release(w->ips, ip, ev_now(w->loop));
        return;
    }
    c->w = w;
    c->fd = fd;
    c->ip = ip;
    c->id = new_id(w);
    c->state = ST_HANDSHAKE;
    w->nconns++;
    ev_io_init(&c->rio, on_read, fd, EV_READ);
    ev_io_init(&c->wio, on_write, fd, EV_WRITE);
    ev_io_start(w->loop, &c->rio);
    tl_move(c, TL_HANDSHAKE);
    if (w->tls) {
        c->ssl = SSL_new(w->tls);
        if (!c->ssl || !SSL_set_fd(c->ssl, fd)) {
            log_error("SSL_new failed");
            destroy(c, "TLS setup failed");
            return;
        }
        SSL_set_accept_state(c->ssl);
    }
}

void conn_flush_pending(worker *w)
{
    while (w->pending) {
        conn *list = w->pending;
        w->pending = NULL;
        while (list) {
            conn *c = list;
            list = c->pnext;
            c->pending = false;
            c->pnext = NULL;
            flush(c);
        }
    }
    conn *keep = NULL;
    while (w->dead) {
        conn *c = w->dead;
        w->dead = c->tnext;
        if (c->refs) { /* a Redis reply will still look at it */
            c->tnext = keep;
            keep = c;
        } else {
            free(c);
        }
    }
    w->dead = keep;
}

/* A closing connection whose last bytes (its close frame among them) are still in the
 * kernel, and that took at least 1 KiB of them since the last look (or the close began), is
 * still being read:
 * closing the socket now would leave them to an orphaned socket, which the kernel drops under
 * pressure, so the client would see EOF without its close frame. It is given up to
 * CLOSE_MAX seconds in all. */
static bool still_delivering(conn *c, double now)
{
    int outq = 0;
    if (c->fd < 0 || now - c->close_since >= CLOSE_MAX || ioctl(c->fd, SIOCOUTQ, &outq) < 0 ||
        outq <= 0)
        return false;
    bool moved = (uint32_t)outq + 1024 <= c->close_outq;
    c->close_outq = (uint32_t)outq;
    return moved;
}

void conn_tick(worker *w)
{
    double now = ev_now(w->loop);
    tlist *l;
    conn *c;

    l = &w->lists[TL_HANDSHAKE];
    while ((c = l->head) && now - c->tstamp >= l->timeout) {
        w->st->timeouts++;
        log_info("client %llx: handshake timeout", (unsigned long long)c->id);
        destroy(c, "handshake timeout");
    }
    l = &w->lists[TL_CLOSING];
    while ((c = l->head) && now - c->tstamp >= l->timeout) {
        if (still_delivering(c, now)) {
            tl_move(c, TL_CLOSING);
            continue;
        }
        w->st->timeouts++;
        destroy(c, "close timeout");
    }
    l = &w->lists[TL_PINGED];
    while ((c = l->head) && now - c->tstamp >= l->timeout) {
        w->st->timeouts++;
        log_info("client %llx: no answer to ping: dropped", (unsigned long long)c->id);
        destroy(c, "idle timeout");
    }
    /* Over the soft limit for its time: a slow consumer, unless it took its fair pace meanwhile
     * (a quarter of the soft limit: a reader behind only because the worker is overloaded),
     * which starts a new period instead. */
    while ((c = w->soft.head) && now - c->soft_since >= w->cfg->outbuf_soft_seconds) {
        if (c->soft_took >= w->cfg->outbuf_soft / 4) {
            soft_remove(c);
            soft_update(c);
        } else {
            slow_close(c);
        }
    }
    l = &w->lists[TL_OPEN];
    while ((c = l->head) && now - c->tstamp >= l->timeout) {
        send_owned(c, wbuf_frame_copy(WS_OP_PING, NULL, 0));
        if (c->state == ST_OPEN)
            tl_move(c, TL_PINGED);
    }
}

void conn_drain_all(worker *w)
{
    conn *c;
    while ((c = w->lists[TL_HANDSHAKE].head))
        destroy(c, "draining");
    for (int l = TL_OPEN; l <= TL_PINGED; l++)
        while ((c = w->lists[l].head)) {
            close_with(c, WS_CLOSE_GOING_AWAY, "server shutting down");
            if (c->tl == l)
                destroy(c, "draining");
        }
}

const char *conn_direct(worker *w, uint64_t local, const char *from, ws_span data)
{
    conn *c = clients_get(w, local);
    if (!c || c->state != ST_OPEN)
        return "not_found";
    /* A recipient is never closed for what others send it: it takes --direct-rate a second,
     * and none while it has half its soft limit queued (it is not reading). */
    int rate = w->cfg->direct_rate;
    if (c->qbytes >= w->cfg->outbuf_soft / 2 ||
        (rate && !gcra_admit(&c->direct_tat, ev_now(w->loop), rate, 2.0 * rate))) {
        w->st->directs_refused++;
        return "busy";
    }
    size_t cap = data.n + strlen(from) * 6 + 64;
    char stackbuf[4096], *out = cap <= sizeof stackbuf ? stackbuf : malloc(cap);
    if (!out)
        return "busy";
    size_t n = env_write_direct(out, cap, from, data);
    if (n)
        send_owned(c, wbuf_frame_copy(WS_OP_TEXT, out, n));
    if (out != stackbuf)
        free(out);
    return n ? NULL : "not_found";
}

void conn_each_member(worker *w, void (*fn)(void *ctx, const char *client, const char *user, ws_span ch),
                      void *ctx)
{
    char id[160];
    for (size_t i = 0; i < w->clients_cap; i++)
        for (conn *c = w->clients[i]; c; c = c->cnext) {
            if (c->state != ST_OPEN || !c->subs.n)
                continue;
            client_id(c, id, sizeof id);
            for (uint32_t k = 0; k < c->subs.n; k++)
                fn(ctx, id, user_of(c), hub_channel_name(c->subs.subs[k].ch));
        }
}

static void member_changed(void *ctx, hub_member *m, ws_span ch, bool joined)
{
    worker *w = ctx;
    conn *c = (conn *)((char *)m - offsetof(conn, subs));
    char id[160];
    client_id(c, id, sizeof id);
    presence_member(w->pres, id, user_of(c), ch, joined);
}

hub_member_fn conn_hub_member(void) { return member_changed; }
