#include "conn.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "conn_impl.h"
#include "iplimit.h"
#include "log.h"

#define IOV_BATCH 64

static void destroy(conn *c, const char *why);
static void process(conn *c, uint8_t *buf, size_t n);

worker *conn_worker(const conn *c) { return c->sess.w; }

unsigned long long conn_id(const conn *c) { return (unsigned long long)c->sess.id; }

bool conn_alive(const conn *c) { return c->state != ST_DEAD; }

void conn_hold(conn *c) { c->sess.refs++; }

void conn_release(conn *c) { c->sess.refs--; }

/* ---- transport: the only two places plain and TLS differ --------------------------------- */

/* Starts or stops the write watcher; libev's own flag says which it is (the flush asks for
 * every connection, so an unchanged watcher costs a load, not a call). */
static void want_write(conn *c, bool on)
{
    if (on == (bool)ev_is_active(&c->wio))
        return;
    if (on)
        ev_io_start(c->sess.w->loop, &c->wio);
    else
        ev_io_stop(c->sess.w->loop, &c->wio);
}

/* sock_read on c: >0 bytes read, 0 end of stream, -1 would block, -2 error. A TLS read that
 * must first write starts the write watcher. */
static ssize_t tx_read(conn *c, void *buf, size_t len)
{
    return sock_read_ev(&c->io, buf, len, c->sess.w->loop, &c->wio);
}

/* sock_writev on c: bytes written (> 0), -1 would block, -2 error. TLS coalesces the iovecs
 * into one record in the worker's scratch buffer. */
static ssize_t tx_writev(conn *c, const struct iovec *iov, int n)
{
    return sock_writev(&c->io, iov, n, c->sess.w->tlsbuf, SOCK_TLS_CHUNK);
}

/* ---- closing ------------------------------------------------------------------------------ */

static void free_buffers(conn *c)
{
    if (c->stream)
        conn_impl_stream_free(c);
    c->paused = false;
    free(c->hs); /* or held: they share their place */
    c->hs = NULL;
    c->hs_len = 0;
    free(c->msg);
    c->msg = NULL;
    c->msg_len = c->msg_cap = 0;
}

/* Closes the socket now. The struct lives until conn_flush_pending frees it, so a caller up
 * the stack that still holds c sees ST_DEAD instead of freed memory. */
static void destroy(conn *c, const char *why)
{
    if (c->state == ST_DEAD)
        return;
    worker *w = c->sess.w;
    log_debug("client %llx: closed: %s", conn_id(c), why);
    conn_impl_tl_remove(c);
    ev_io_stop(w->loop, &c->rio);
    ev_io_stop(w->loop, &c->wio);
    if (c->io.ssl) {
        SSL_free(c->io.ssl);
        c->io.ssl = NULL;
    }
    /* Unread input makes close() send a reset, and a reset throws away what the kernel still
     * holds for the peer: the close frame of a slow consumer, the end of a response. Read it
     * out first (a bounded amount: a flood simply gets its reset). */
    char scratch[4096]; /* not w->rbuf: a caller up the stack may be parsing it */
    for (int i = 0; i < 16 && read(c->io.fd, scratch, sizeof scratch) > 0; i++) {
    }
    close(c->io.fd);
    c->io.fd = -1;
    session_free(&c->sess);
    if (c->ip)
        ipl_release(w->ips, c->ip, ev_now(w->loop));
    c->ip = NULL;
    conn_impl_release_queue(c, 0);
    conn_impl_soft_remove(c);
    free_buffers(c);
    c->state = ST_DEAD;
    ws_list_push(&w->dead, &c->tlink);
    w->nconns--;
    if (w->draining && w->nconns == 0)
        ev_break(w->loop, EVBREAK_ALL);
}

/* What each way of closing does: the state it leaves c in, what the flush that empties the
 * queue does next, whether reading goes on (1), stops (-1) or stays as it is (0), and whether
 * it applies to a connection that is not open (else only its after_flush does). */
static const struct close_rule {
    uint8_t state, after_flush;
    int8_t read;
    bool any_state;
} close_rules[] = {
    [CONN_GOODBYE] = {ST_CLOSING, AF_NONE, 1, false},
    [CONN_GOODBYE_DEAF] = {ST_CLOSING, AF_SHUTDOWN, -1, false},
    [CONN_ANSWER] = {ST_CLOSING, AF_DESTROY, 0, false},
    [CONN_FAIL] = {ST_LINGER, AF_SHUTDOWN, 1, true},
    [CONN_HTTP_DONE] = {ST_LINGER, AF_SHUTDOWN, 0, true},
};

void conn_close(conn *c, enum conn_how how, uint16_t code, const char *reason)
{
    worker *w = c->sess.w;
    bool open = c->state == ST_OPEN;
    if (c->state == ST_DEAD || how == CONN_DROP) {
        destroy(c, reason);
        return;
    }
    if (c->stream == CONN_STREAM_POLL && open && (how == CONN_GOODBYE || how == CONN_GOODBYE_DEAF)) {
        conn_impl_poll_now(c); /* answered with what it has, and closed */
        return;
    }
    if (c->stream) /* no close frame: the response ends, the client reconnects */
        how = CONN_HTTP_DONE;
    if (!open && (how == CONN_GOODBYE || how == CONN_GOODBYE_DEAF))
        return;
    if (how == CONN_FAIL) {
        w->st->protocol_errors++;
        if (code == WS_CLOSE_TOO_BIG)
            w->st->too_large_messages++;
        log_info("client %llx: protocol error: %s: closing %u", conn_id(c), reason, code);
    }
    const struct close_rule *r = &close_rules[how];
    if (open || r->any_state) {
        session_stop(&c->sess);
        free_buffers(c);
        c->state = r->state;
        conn_impl_soft_remove(c);
        conn_impl_tl_move(c, TL_CLOSING);
        if (r->read > 0)
            ev_io_start(w->loop, &c->rio); /* held input is dropped; the client's close is read */
        else if (r->read < 0)
            ev_io_stop(w->loop, &c->rio);
        if (open && !c->stream) {
            uint8_t p[WS_MAX_CONTROL];
            size_t n = ws_close_payload(p, code, how == CONN_ANSWER ? NULL : reason);
            conn_impl_send_owned(c, wbuf_frame_copy(WS_OP_CLOSE, p, n));
        }
    }
    if (c->state == ST_DEAD)
        return;
    c->after_flush = r->after_flush;
    conn_impl_mark_pending(c);
}

/* ---- writing ------------------------------------------------------------------------------ */

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
        ev_io_start(c->sess.w->loop, &c->rio);
        if (c->io.ssl && SSL_pending(c->io.ssl)) /* decrypted bytes waiting inside OpenSSL */
            ev_feed_event(c->sess.w->loop, &c->rio, EV_READ);
    }
}

/* The queue is empty: do what the close asked for once it was out. */
static void after_flush(conn *c)
{
    if (c->after_flush == AF_DESTROY) {
        destroy(c, "closed");
    } else if (c->after_flush == AF_SHUTDOWN) {
        c->after_flush = AF_NONE;
        if (c->io.ssl)
            SSL_shutdown(c->io.ssl); /* close_notify; the peer's is not awaited */
        shutdown(c->io.fd, SHUT_WR);
    } else if (c->paused && c->state == ST_OPEN) {
        resume_input(c); /* what it queues is written on the next pass */
    }
}

/* Takes r written bytes off the head of the queue. */
static void consume(conn *c, size_t r)
{
    c->sess.w->st->bytes_out += (uint64_t)r;
    c->drained = c->drained > UINT32_MAX - (uint32_t)r ? UINT32_MAX : c->drained + (uint32_t)r;
    while (r) {
        wbuf *b = c->q[c->qhead];
        size_t avail = b->len - c->qoff;
        if (r < avail) {
            c->qoff += (uint32_t)r;
            c->qbytes -= r;
            break;
        }
        r -= avail;
        c->qbytes -= avail;
        wbuf_unref(b);
        c->qhead = (c->qhead + 1) & (c->qcap - 1);
        c->qlen--;
        c->qoff = 0;
    }
    /* A pinged client that still takes what it is sent is alive, however long its ping
     * waits behind the frames queued before it: its clock restarts (see conn_tick). */
    if (c->tl == TL_PINGED) {
        conn_impl_tl_move(c, TL_PINGED);
        c->ping_kib = PING_KIB_UNKNOWN;
    }
    conn_impl_soft_update(c);
}

static void flush(conn *c)
{
    worker *w = c->sess.w;
    if (c->state == ST_DEAD)
        return;
    if (c->state == ST_OPEN && c->slow) {
        conn_impl_slow_close(c);
        if (c->state == ST_DEAD)
            return;
    }
    if (c->io.ssl && !c->tls_done)
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
            want_write(c, !c->io.write_wants_read);
            if (c->io.write_wants_read && c->paused)
                ev_io_start(w->loop, &c->rio);
            return;
        }
        if (r < 0) {
            destroy(c, "write failed");
            return;
        }
        consume(c, (size_t)r);
        if ((c->state == ST_CLOSING || c->state == ST_LINGER) && ev_now(w->loop) - c->close_since < CLOSE_MAX)
            conn_impl_tl_move(c, TL_CLOSING); /* the close is on its way: its clock runs from here */
        if (c->paused && c->state == ST_OPEN && c->qbytes <= w->cfg->outbuf_soft / 2)
            resume_input(c);
        if (c->state == ST_DEAD)
            return;
        if ((size_t)r < total && !c->io.ssl) {
            want_write(c, true); /* the socket buffer is full */
            return;
        }
    }
    conn_impl_release_queue(c, 0); /* frees the ring: an idle connection owns no buffer */
    want_write(c, false);
    after_flush(c);
}

/* ---- frames ------------------------------------------------------------------------------- */

static void deliver_message(conn *c, uint8_t opcode, const uint8_t *data, size_t len)
{
    c->sess.w->st->messages_in++;
    if (c->echo)
        conn_impl_send_owned(c, wbuf_frame_copy(opcode, data, len));
    else
        session_message(&c->sess, opcode, data, len);
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
            conn_close(c, CONN_FAIL, WS_CLOSE_INTERNAL, "out of memory assembling a message");
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

/* A client whose output is backed up gets no more of its requests processed (the answers
 * would only pile up): the rest of what was read waits in c->held and reading stops until
 * the queue is down to half the soft limit. Whatever it asks, a client cannot make the
 * worker produce more than about its soft limit ahead of what it reads. */
static bool hold_input(conn *c, const uint8_t *rest, size_t n)
{
    worker *w = c->sess.w;
    if (c->state != ST_OPEN || c->qbytes <= w->cfg->outbuf_soft)
        return false;
    if (n) {
        uint8_t *h = malloc(n);
        if (!h) {
            conn_close(c, CONN_FAIL, WS_CLOSE_INTERNAL, "out of memory holding input");
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

/* Acts on one parser event; false when processing must stop. */
static bool on_event(conn *c, ws_event *ev)
{
    bool open = c->state == ST_OPEN;
    switch (ev->type) {
    case WS_EV_NONE:
        return false;
    case WS_EV_DATA:
        if (open)
            on_data(c, ev);
        return true;
    case WS_EV_PING: /* control frames count toward --max-msg-rate on /ws */
        if (open && (c->echo || session_control(&c->sess)))
            conn_impl_answer_ping(c, ev->data, ev->len);
        return true;
    case WS_EV_PONG:
        if (open && !c->echo)
            session_control(&c->sess);
        return true;
    case WS_EV_CLOSE: /* echo the code (RFC 6455 section 5.5.1), then close TCP: the server closes first */
        conn_close(c, CONN_ANSWER, ev->code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL : ev->code, NULL);
        return false;
    case WS_EV_ERROR:
        conn_close(c, open ? CONN_FAIL : CONN_DROP, ev->code, ev->reason);
        return false;
    }
    return false;
}

/* Runs the frame parser over n bytes (unmasked in place) and acts on each event. */
static void process(conn *c, uint8_t *buf, size_t n)
{
    size_t off = 0;
    while (off < n && (c->state == ST_OPEN || c->state == ST_CLOSING)) {
        if (c->state == ST_OPEN && c->qbytes > c->sess.w->cfg->outbuf_soft && hold_input(c, buf + off, n - off))
            return;
        ws_event ev;
        off += ws_parser_feed(&c->parser, buf + off, n - off, &ev);
        if (!on_event(c, &ev))
            return;
    }
}

/* ---- the session's transport ---------------------------------------------------------------- */

static conn *of_session(const session *s) { return ws_container_of(s, conn, sess); }

static void sess_send(session *s, wbuf *frame)
{
    if (frame)
        conn_impl_enqueue(of_session(s), frame);
    else
        destroy(of_session(s), "out of memory");
}

static void sess_close(session *s, enum session_close how, uint16_t code, const char *reason)
{
    conn_close(of_session(s), how == SESSION_CLOSE ? CONN_GOODBYE : how == SESSION_CLOSE_DEAF ? CONN_GOODBYE_DEAF : CONN_DROP,
               code, reason);
}

static size_t sess_queued(const session *s) { return of_session(s)->qbytes; }

static const session_transport ws_transport = {sess_send, sess_close, sess_queued};

/* ---- what HTTP asks of the transport ------------------------------------------------------- */

/* Queues a copy of p[0..n) as one buffer; false when c was dropped. */
static bool send_bytes(conn *c, const void *p, size_t n)
{
    if (n == 0) { /* the response did not fit its buffer: a programming error, not the client's */
        log_error("client %llx: response did not fit its buffer", conn_id(c));
        destroy(c, "response too large");
        return false;
    }
    wbuf *b = wbuf_new(n);
    if (b) {
        memcpy(b->data, p, n);
        b->len = (uint32_t)n;
    }
    conn_impl_send_owned(c, b);
    return c->state != ST_DEAD;
}

void conn_respond(conn *c, wbuf *b)
{
    conn_impl_enqueue(c, b);
    conn_close(c, CONN_HTTP_DONE, 0, NULL);
}

void conn_respond_copy(conn *c, const void *p, size_t n)
{
    if (send_bytes(c, p, n))
        conn_close(c, CONN_HTTP_DONE, 0, NULL);
}

/* The body is complete: hand it over; input after it is discarded. */
static void body_complete(conn *c)
{
    uint8_t *m = c->msg;
    size_t n = c->msg_len;
    c->msg = NULL;
    c->msg_len = c->msg_cap = 0;
    c->body_done(c, m, n);
    free(m);
}

int conn_read_body(conn *c, size_t head_len, ws_span prefix, size_t len, conn_body_fn done)
{
    uint8_t *m = malloc(prefix.n + len);
    if (!m) {
        destroy(c, "out of memory");
        return -1;
    }
    memcpy(m, prefix.p, prefix.n);
    size_t have = c->hs_len - head_len;
    if (have > len)
        have = len;
    memcpy(m + prefix.n, c->hs + head_len, have);
    free(c->hs);
    c->hs = NULL;
    c->hs_len = 0;
    c->msg = m;
    c->msg_len = prefix.n + have;
    c->msg_cap = prefix.n + len;
    c->body_done = done;
    c->state = ST_BODY; /* still on the handshake clock: a slow body is dropped in time */
    if (c->msg_len == c->msg_cap)
        body_complete(c);
    return 0;
}

static void body_read(conn *c)
{
    worker *w = c->sess.w;
    if (!c->msg) { /* handed over: nothing more is expected, drain and drop */
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
        body_complete(c);
}

void conn_upgrade(conn *c, bool echo, const char *resp, size_t n, size_t head_len, char *user,
                  auth_grant *grant)
{
    worker *w = c->sess.w;
    if (!send_bytes(c, resp, n)) {
        free(user);
        auth_grant_free(grant);
        return;
    }
    c->echo = echo;
    c->state = ST_OPEN;
    ws_parser_init(&c->parser, echo ? &w->echo_opts : &w->ws_opts);
    conn_impl_tl_move(c, TL_OPEN);
    if (!echo)
        session_start(&c->sess, w, &ws_transport, user, grant);
    /* Bytes after the head are the first frames. */
    char *hsbuf = c->hs;
    size_t rest = c->hs_len - head_len;
    c->hs = NULL;
    c->hs_len = 0;
    if (rest)
        process(c, (uint8_t *)hsbuf + head_len, rest);
    free(hsbuf);
}

void conn_impl_http_again(conn *c)
{
    worker *w = c->sess.w;
    session_stop(&c->sess);
    session_free(&c->sess); /* refs is 0: nothing will look at the old session again */
    free_buffers(c);
    c->stream = 0;
    memset(&c->sess, 0, sizeof c->sess);
    c->sess.w = w;
    c->sess.id = session_new_id(w);
    c->state = ST_HANDSHAKE;
    conn_impl_tl_move(c, TL_HANDSHAKE);
}

/* ---- handshake ---------------------------------------------------------------------------- */

/* TLS handshake step: 1 finished, 0 waiting for the socket, -1 failed (c destroyed). */
static int tls_step(conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->io.ssl);
    if (r == 1) {
        c->tls_done = true;
        want_write(c, false);
        return 1;
    }
    int e = SSL_get_error(c->io.ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        want_write(c, e == SSL_ERROR_WANT_WRITE);
        return 0;
    }
    char err[160] = "connection closed";
    unsigned long code = ERR_get_error();
    if (code)
        ERR_error_string_n(code, err, sizeof err);
    c->sess.w->st->handshakes_failed++;
    log_info("client %llx: TLS handshake failed: %s", conn_id(c), err);
    destroy(c, "TLS handshake failed");
    return -1;
}

static void handshake_read(conn *c)
{
    worker *w = c->sess.w;
    if (c->io.ssl && !c->tls_done && tls_step(c) <= 0)
        return;
    if (!c->hs) {
        c->hs = malloc(w->cfg->max_header_size + 1);
        if (!c->hs) {
            destroy(c, "out of memory");
            return;
        }
    }
    int r = WS_HTTP_PARTIAL;
    while (r == WS_HTTP_PARTIAL) {
        ssize_t n = tx_read(c, c->hs + c->hs_len, w->cfg->max_header_size + 1 - c->hs_len);
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
        r = ws_http_parse(c->hs, c->hs_len, last, &lim, w->req);
    }
    w->on_request(c, r, w->req);
    /* Frames that came in the same TLS record as the head wait inside OpenSSL, where the
     * socket's readiness will not announce them. */
    if (c->io.ssl && c->state == ST_OPEN && SSL_pending(c->io.ssl))
        ev_feed_event(w->loop, &c->rio, EV_READ);
}

/* ---- reading ------------------------------------------------------------------------------ */

/* A paused connection is only read when a TLS write needs the peer's bytes: what that reads is
 * kept behind what it held already. */
static void paused_read(conn *c)
{
    worker *w = c->sess.w;
    ev_io_stop(w->loop, &c->rio);
    if (!c->io.write_wants_read)
        return;
    c->io.write_wants_read = false;
    conn_impl_mark_pending(c);
    ssize_t n = tx_read(c, w->rbuf, w->rbuf_size);
    if (n <= 0) {
        if (n != -1)
            destroy(c, n == 0 ? "client closed TCP" : "read failed");
        return;
    }
    uint8_t *h = realloc(c->held, c->held_len + (size_t)n);
    if (!h) {
        conn_close(c, CONN_FAIL, WS_CLOSE_INTERNAL, "out of memory holding input");
        return;
    }
    memcpy(h + c->held_len, w->rbuf, (size_t)n);
    c->held = h;
    c->held_len += (size_t)n;
}

static void ws_read(conn *c)
{
    worker *w = c->sess.w;
    if (c->paused) {
        paused_read(c);
        return;
    }
    if (!ev_is_active(&c->rio)) /* fed by hand after its reading stopped */
        return;
    /* Plain sockets: one read per readiness (level-triggered, fair to the others). TLS: drain
     * what OpenSSL has decrypted, as the socket will not signal it again. */
    for (int round = 0; round < (c->io.ssl ? 16 : 1); round++) {
        ssize_t n = tx_read(c, w->rbuf, w->rbuf_size);
        if (n == -1)
            return;
        if (n <= 0) {
            destroy(c, n == 0 ? "client closed TCP" : "read failed");
            return;
        }
        w->st->bytes_in += (uint64_t)n;
        if (c->io.write_wants_read) {
            c->io.write_wants_read = false;
            conn_impl_mark_pending(c);
        }
        if (c->state == ST_OPEN && (c->tl != TL_OPEN || c->tstamp != ev_now(w->loop)))
            conn_impl_tl_move(c, TL_OPEN); /* activity: restart its ping clock */
        process(c, w->rbuf, (size_t)n);
        if ((c->state != ST_OPEN && c->state != ST_CLOSING) || c->paused || !ev_is_active(&c->rio))
            return;
    }
    if (c->io.ssl && SSL_pending(c->io.ssl))
        ev_feed_event(w->loop, &c->rio, EV_READ);
}

static void linger_read(conn *c)
{
    worker *w = c->sess.w;
    ssize_t n = tx_read(c, w->rbuf, w->rbuf_size);
    if (n == 0 || n == -2)
        destroy(c, "closed after error");
}

static void on_read(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    conn *c = ws_container_of(io, conn, rio);
    switch (c->state) {
    case ST_HANDSHAKE:
        handshake_read(c);
        break;
    case ST_BODY:
        body_read(c);
        break;
    case ST_OPEN:
    case ST_CLOSING:
        if (c->stream)
            conn_impl_stream_read(c);
        else
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
    conn *c = ws_container_of(io, conn, wio);
    if (c->io.ssl && !c->tls_done) {
        if (tls_step(c) == 1)
            handshake_read(c); /* the request may already be decrypted and waiting */
        return;
    }
    if (c->io.ssl && c->state == ST_OPEN && c->qlen == 0) {
        want_write(c, false); /* SSL_read wanted to write; reading resumes it */
        if (c->stream)
            conn_impl_stream_read(c);
        else
            ws_read(c);
        return;
    }
    flush(c);
}

/* ---- worker-facing ------------------------------------------------------------------------ */

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
    c->sess.w = w;
    c->io.fd = fd;
    c->ip = ip;
    c->sess.id = session_new_id(w);
    c->state = ST_HANDSHAKE;
    w->nconns++;
    ev_io_init(&c->rio, on_read, fd, EV_READ);
    ev_io_init(&c->wio, on_write, fd, EV_WRITE);
    ev_io_start(w->loop, &c->rio);
    conn_impl_tl_move(c, TL_HANDSHAKE);
    if (w->tls) {
        c->io.ssl = SSL_new(w->tls);
        if (!c->io.ssl || !SSL_set_fd(c->io.ssl, fd)) {
            log_error("SSL_new failed");
            destroy(c, "TLS setup failed");
            return;
        }
        SSL_set_accept_state(c->io.ssl);
    }
}

void conn_flush_pending(worker *w)
{
    ws_list *n;
    while ((n = ws_list_first(&w->pending))) {
        ws_list_remove(n);
        flush(ws_container_of(n, conn, plink));
    }
    ws_list_each(it, &w->dead) {
        conn *c = ws_container_of(it, conn, tlink);
        if (!c->sess.refs) { /* else an answer (Redis, wsrouter) will still look at it */
            ws_list_remove(it);
            free(c);
        }
    }
}
