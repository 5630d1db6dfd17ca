#include "lconn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ws_http.h"
#include "xport.h"

/* What an HTTP publisher is reading after a response head. */
enum { BODY_NONE, BODY_LENGTH, BODY_CHUNK_SIZE, BODY_CHUNK_DATA, BODY_TRAILER };

#define HS_BUF (HS_CAP + 16) /* one byte over HS_CAP tells a head too large */
#define CHUNK_LINE_MAX 1024

static const ws_http_limits HS_LIMITS = {HS_CAP, WS_HTTP_HEADERS_CAP};

static void on_io(struct ev_loop *loop, ev_io *io, int revents);
static void handshake_done(lconn *c);

/* ---- output ------------------------------------------------------------------------------- */

/* c has bytes to write before the loop sleeps (the worker's on_flush). */
static void mark_pending(lconn *c)
{
    if (!ws_list_linked(&c->pending))
        ws_list_push(&c->w->pending, &c->pending);
}

/* n bytes at the end of c's queue, to be filled by the caller (who may give some back). */
static uint8_t *out_reserve(lconn *c, size_t n)
{
    if (c->out_off && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + n > c->out_cap) {
        if (c->out_off) { /* unsent bytes keep their content: a TLS retry stays valid */
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + n)
            cap *= 2;
        uint8_t *p = realloc(c->out, cap);
        if (!p) {
            fprintf(stderr, "wsload: out of memory\n");
            exit(1);
        }
        c->out = p;
        c->out_cap = cap;
    }
    uint8_t *p = c->out + c->out_len;
    c->out_len += n;
    mark_pending(c);
    return p;
}

void lconn_send_raw(lconn *c, const void *p, size_t n)
{
    memcpy(out_reserve(c, n), p, n);
}

void lconn_send_frame(lconn *c, uint8_t opcode, const void *payload, size_t n)
{
    uint64_t r = wk_rnd(c->w);
    uint8_t mask[4];
    memcpy(mask, &r, 4);
    uint8_t *p = out_reserve(c, WS_MAX_HEADER + n);
    size_t len = ws_frame_client(p, opcode, payload, n, mask);
    c->out_len -= WS_MAX_HEADER + n - len;
}

/* Starts or stops c's write watcher (libev ignores a start or stop that changes nothing). */
static void want_write(lconn *c, bool on)
{
    if (on)
        ev_io_start(c->w->loop, &c->wio);
    else
        ev_io_stop(c->w->loop, &c->wio);
}

void lconn_flush(lconn *c)
{
    while (c->state != LC_DEAD && c->out_off < c->out_len) {
        struct iovec iov = {c->out + c->out_off, c->out_len - c->out_off};
        ssize_t r = sock_writev(&c->io, &iov, 1, c->w->tlsbuf, SOCK_TLS_CHUNK);
        if (r == SOCK_AGAIN) {
            want_write(c, true);
            return;
        }
        if (r < 0) {
            lconn_close(c, F_CLOSED_BY_SERVER);
            return;
        }
        c->w->c.bytes_out += (uint64_t)r;
        c->out_off += (size_t)r;
    }
    if (c->state != LC_DEAD) {
        c->out_off = c->out_len = 0;
        if (c->state == LC_OPEN || c->state == LC_HANDSHAKE)
            want_write(c, false);
    }
}

/* sock_read, and the write watcher started when TLS needs the socket writable to read on. */
static ssize_t read_some(lconn *c, void *buf, size_t n)
{
    return sock_read_ev(&c->io, buf, n, c->w->loop, &c->wio);
}

/* ---- connection life ---------------------------------------------------------------------- */

void lconn_settle(lconn *c)
{
    wk *w = c->w;
    if (!c->ready) {
        c->ready = true;
        w->settled++;
        w->t_last_settle = now_ns();
    }
}

/* Counts the end of c: a failure while opening, a close (and its reason) once open. */
static void count_close(lconn *c, int reason)
{
    wk *w = c->w;
    if (reason >= 0) {
        if (c->state == LC_OPEN) {
            w->c.closed++;
            if (reason == F_CLOSED_BY_SERVER || reason == F_PROTOCOL)
                w->c.fail[reason]++;
        } else {
            w->c.failed++;
            w->c.fail[reason]++;
        }
    }
    if (c->state == LC_CONNECTING || c->state == LC_TLS || c->state == LC_HANDSHAKE)
        w->inflight--;
    if (c->state == LC_OPEN)
        w->c.open_now--;
}

void lconn_close(lconn *c, int reason)
{
    wk *w = c->w;
    if (c->state == LC_DEAD || c->state == LC_IDLE)
        return;
    count_close(c, reason);
    ev_io_stop(w->loop, &c->rio);
    ev_io_stop(w->loop, &c->wio);
    ws_list_remove(&c->pending);
    if (c->io.ssl)
        SSL_free(c->io.ssl);
    if (c->io.fd >= 0)
        close(c->io.fd);
    c->io = (sock_io){.fd = -1};
    free(c->hs);
    c->hs = NULL;
    c->hs_len = 0;
    c->body = BODY_NONE;
    c->body_left = 0;
    free(c->msg);
    c->msg = NULL;
    c->msg_len = c->msg_cap = 0;
    c->out_len = c->out_off = 0;
    c->state = LC_DEAD;
    lconn_settle(c);
}

static int fail_of_errno(int e)
{
    return e == ECONNREFUSED ? F_CONNECT_REFUSED
         : e == ETIMEDOUT ? F_CONNECT_TIMEOUT
         : e == EADDRNOTAVAIL || e == EADDRINUSE ? F_ADDR_UNAVAILABLE
         : F_CONNECT_OTHER;
}

/* Where c connects: the publishers' URL, the failover after the server dropped it, or the
 * target. */
static const url *url_of(const lconn *c, const opts *o)
{
    return c->use_pub_url ? &o->pub_url : c->failed_over ? &o->failover : &o->target;
}

/* A subscriber or held connection of --transport sse or poll. */
static bool streams(const lconn *c)
{
    return c->w->o->transport != TR_WS && (c->role == ROLE_SUB || c->role == ROLE_HOLD);
}

/* Sends the GET of c's stream or next poll. */
static void send_get(lconn *c)
{
    char req[1600];
    size_t n = xport_request(c, url_of(c, c->w->o), req, sizeof req);
    if (!n) {
        lconn_close(c, F_PROTOCOL);
        return;
    }
    lconn_send_raw(c, req, n);
    lconn_flush(c);
}

static void send_handshake(lconn *c)
{
    const opts *o = c->w->o;
    const url *u = url_of(c, o);
    uint64_t nonce[2] = {wk_rnd(c->w), wk_rnd(c->w)};
    ws_base64_encode(c->key, nonce, sizeof nonce);
    char path[1100], req[1600];
    opts_expand_ch(path, sizeof path, u->path, c->channel);
    const char *proto = o->proto == PR_WSFAN ? "Sec-WebSocket-Protocol: ws.json.v1\r\n" : "";
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                     path, u->host, u->port, c->key, proto);
    lconn_send_raw(c, req, (size_t)n);
    c->state = LC_HANDSHAKE;
    lconn_flush(c);
}

/* c is open: counted, and handed to the scenario. */
static void opened(lconn *c)
{
    c->state = LC_OPEN;
    c->w->inflight--;
    c->w->c.opened++;
    c->w->c.open_now++;
}

/* TCP is connected (or TLS wants more): go on with TLS, then the handshake. */
static void connected(lconn *c)
{
    if (c->io.ssl && c->state == LC_CONNECTING)
        c->state = LC_TLS;
    if (c->state == LC_TLS) {
        int r = SSL_connect(c->io.ssl);
        if (r != 1) {
            int e = SSL_get_error(c->io.ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                want_write(c, e == SSL_ERROR_WANT_WRITE);
                return;
            }
            lconn_close(c, F_TLS);
            return;
        }
        want_write(c, false);
    }
    if (c->http) {
        opened(c);
        want_write(c, false);
        c->w->on_ready(c);
        return;
    }
    if (streams(c)) {
        want_write(c, false);
        c->state = LC_HANDSHAKE; /* until the stream's head or the first answer */
        send_get(c);
        if (c->w->o->transport == TR_ETAG_POLL && c->state == LC_HANDSHAKE) {
            handshake_done(c); /* its first answer is the next message: subscribed once asked */
            c->w->on_ready(c);
        }
        return;
    }
    send_handshake(c);
}

/* ---- reading ------------------------------------------------------------------------------ */

/* Parses frames in buf (unmasking in place) and hands whole messages to the scenario. */
static void process(lconn *c, uint8_t *buf, size_t n)
{
    size_t off = 0;
    while (off < n && c->state == LC_OPEN) {
        ws_event ev;
        off += ws_parser_feed(&c->parser, buf + off, n - off, &ev);
        switch (ev.type) {
        case WS_EV_NONE:
            return;
        case WS_EV_DATA:
            if (ev.first && ev.fin) {
                c->w->on_message(c, ev.data, ev.len);
                break;
            }
            if (c->msg_len + ev.len > c->msg_cap) {
                size_t cap = c->msg_cap ? c->msg_cap * 2 : 4096;
                while (cap < c->msg_len + ev.len)
                    cap *= 2;
                uint8_t *p = realloc(c->msg, cap);
                if (!p) {
                    lconn_close(c, F_PROTOCOL);
                    return;
                }
                c->msg = p;
                c->msg_cap = cap;
            }
            memcpy(c->msg + c->msg_len, ev.data, ev.len);
            c->msg_len += ev.len;
            if (ev.fin) {
                c->w->on_message(c, c->msg, c->msg_len);
                c->msg_len = 0;
            }
            break;
        case WS_EV_PING:
            lconn_send_frame(c, WS_OP_PONG, ev.data, ev.len);
            break;
        case WS_EV_PONG:
            break;
        case WS_EV_CLOSE:
            lconn_close(c, F_CLOSED_BY_SERVER);
            return;
        case WS_EV_ERROR:
            lconn_close(c, F_PROTOCOL);
            return;
        }
    }
}

/* The handshake (or a stream's head) is done: counted and timed. */
static void handshake_done(lconn *c)
{
    wk *w = c->w;
    uint64_t now = now_ns();
    opened(c);
    hist_add(&w->hs, now - c->t_start);
    if (c->t_closed) { /* churn: a reconnect */
        hist_add(&w->lat, now - c->t_closed);
        hist_add(&w->lat_tick, now - c->t_closed);
        w->c.reconnects++;
        c->t_closed = 0;
    }
}

/* Bytes of a --transport sse or poll connection. */
static void stream_read(lconn *c, const uint8_t *buf, size_t n)
{
    bool was_open = c->state == LC_OPEN;
    int r = xport_read(c, buf, n);
    if (r & XP_ERROR) {
        lconn_close(c, was_open ? F_PROTOCOL : F_HANDSHAKE_STATUS);
        return;
    }
    if ((r & XP_OPENED) && c->state == LC_HANDSHAKE) {
        handshake_done(c);
        c->w->on_ready(c);
    }
    if ((r & XP_ANSWERED) && c->state == LC_OPEN && c->w->o->transport == TR_INTERVAL)
        c->t_next_poll = now_ns() + (uint64_t)(c->w->o->poll_every * 1e9);
    else if ((r & XP_ANSWERED) && c->state == LC_OPEN)
        send_get(c); /* the next poll, from the position the answer gave */
}

/* The 101 is complete at hs[0..head): the connection is open; the bytes after the head are
 * its first frames. */
static void upgraded(lconn *c, size_t head)
{
    wk *w = c->w;
    handshake_done(c);
    ws_parser_opts po = {.server = false};
    ws_parser_init(&c->parser, &po);
    char *hs = c->hs;
    size_t rest = c->hs_len - head;
    c->hs = NULL;
    c->hs_len = 0;
    w->on_ready(c);
    if (rest && c->state == LC_OPEN)
        process(c, (uint8_t *)hs + head, rest);
    free(hs);
}

/* Reads the response to the upgrade: a 101 with the accept key for c's key, or a failure. */
static void handshake_read(lconn *c)
{
    if (!c->hs && !(c->hs = malloc(HS_BUF))) {
        lconn_close(c, F_CONNECT_OTHER);
        return;
    }
    size_t last = c->hs_len;
    ssize_t r = read_some(c, c->hs + c->hs_len, HS_BUF - c->hs_len);
    if (r == SOCK_AGAIN)
        return;
    if (r <= 0) {
        lconn_close(c, F_HANDSHAKE_STATUS);
        return;
    }
    c->hs_len += (size_t)r;
    c->w->c.bytes_in += (uint64_t)r;
    ws_http_resp resp;
    int head = ws_http_parse_response(c->hs, c->hs_len, last, &HS_LIMITS, &resp);
    if (head == WS_HTTP_PARTIAL)
        return;
    if (head < 0 || resp.status != 101 || resp.http_major != 1 || resp.http_minor != 1)
        lconn_close(c, F_HANDSHAKE_STATUS);
    else if (!ws_handshake_accept_ok(&resp, c->key, WS_KEY_LEN))
        lconn_close(c, F_HANDSHAKE_ACCEPT);
    else
        upgraded(c, (size_t)head);
}

/* One publish response is complete: counted, an error unless 2xx. */
static void http_done(lconn *c)
{
    c->inflight--;
    if (c->status / 100 != 2)
        c->w->c.send_errors++;
    c->body = BODY_NONE;
}

/* A response head at buf: what its body will be. Returns bytes used, 0 if incomplete, -1. */
static ssize_t http_head(lconn *c, const char *buf, size_t n)
{
    ws_http_resp resp;
    int rc = ws_http_parse_response(buf, n, 0, &HS_LIMITS, &resp);
    if (rc == WS_HTTP_PARTIAL)
        return 0;
    if (rc < 0)
        return -1;
    c->status = resp.status;
    if (resp.chunked) {
        c->body = BODY_CHUNK_SIZE;
    } else if (resp.content_length > 0) {
        c->body = BODY_LENGTH;
        c->body_left = (uint64_t)resp.content_length;
    } else if (resp.status / 100 != 1) { /* an interim 1xx is not the answer */
        http_done(c);
    }
    return rc;
}

/* Consumes the start of buf[0..n) for the publish response being read: a head, body bytes,
 * or one line of a chunked body. Returns bytes used, 0 if a head or line is incomplete, -1
 * for a protocol error. */
static ssize_t http_step(lconn *c, const char *buf, size_t n)
{
    if (c->body == BODY_LENGTH || c->body == BODY_CHUNK_DATA) {
        size_t k = n < c->body_left ? n : (size_t)c->body_left;
        c->body_left -= k;
        if (c->body_left == 0 && c->body == BODY_LENGTH)
            http_done(c);
        else if (c->body_left == 0)
            c->body = BODY_CHUNK_SIZE;
        return (ssize_t)k;
    }
    if (c->body == BODY_NONE)
        return http_head(c, buf, n);
    const char *nl = memchr(buf, '\n', n);
    if (!nl)
        return n > CHUNK_LINE_MAX ? -1 : 0;
    size_t len = (size_t)(nl - buf) + 1;
    if (c->body == BODY_TRAILER) {
        if (len <= 2) /* the blank line after the last chunk */
            http_done(c);
        return (ssize_t)len;
    }
    char *end;
    unsigned long long size = strtoull(buf, &end, 16); /* stops at the LF at the latest */
    if (end == buf || size > (1ull << 40))
        return -1;
    c->body = size ? BODY_CHUNK_DATA : BODY_TRAILER;
    c->body_left = size ? size + 2 : 0; /* the chunk and its CRLF */
    return (ssize_t)len;
}

/* Pipelined publish responses in data[0..n). What does not complete a head or a chunk line
 * waits in c->hs for the next read. */
static void http_read(lconn *c, const uint8_t *data, size_t n)
{
    size_t off = 0;
    ssize_t used = 0;
    while (off < n && used >= 0) {
        if (c->hs_len == 0) {
            used = http_step(c, (const char *)data + off, n - off);
            if (used > 0)
                off += (size_t)used;
            if (used != 0)
                continue;
            if (!c->hs && !(c->hs = malloc(HS_BUF)))
                break;
        }
        size_t k = n - off < HS_BUF - c->hs_len ? n - off : HS_BUF - c->hs_len;
        memcpy(c->hs + c->hs_len, data + off, k);
        c->hs_len += k;
        off += k;
        while (c->hs_len && (used = http_step(c, c->hs, c->hs_len)) > 0) {
            c->hs_len -= (size_t)used;
            memmove(c->hs, c->hs + used, c->hs_len);
        }
        if (c->hs_len == HS_BUF) /* a head or line longer than any allowed */
            used = -1;
    }
    if (off < n || used < 0)
        lconn_close(c, F_PROTOCOL);
}

static void on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    lconn *c = io->data;
    wk *w = c->w;
    if (c->state == LC_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            lconn_close(c, fail_of_errno(err));
            return;
        }
        connected(c);
        return;
    }
    if (c->state == LC_TLS) {
        connected(c);
        return;
    }
    if (revents & EV_WRITE) {
        lconn_flush(c);
        if (c->state == LC_DEAD)
            return;
    }
    if (!(revents & EV_READ))
        return;
    if (c->state == LC_HANDSHAKE && !streams(c)) {
        handshake_read(c);
        return;
    }
    bool stream = streams(c);
    for (int round = 0; round < (c->io.ssl ? 8 : 1) && (c->state == LC_OPEN || stream); round++) {
        ssize_t r = read_some(c, w->rbuf, 65536);
        if (r == SOCK_AGAIN)
            return;
        if (r <= 0) {
            lconn_close(c, F_CLOSED_BY_SERVER);
            return;
        }
        w->c.bytes_in += (uint64_t)r;
        if (c->http)
            http_read(c, w->rbuf, (size_t)r);
        else if (stream)
            stream_read(c, w->rbuf, (size_t)r);
        else
            process(c, w->rbuf, (size_t)r);
        if (c->state != LC_OPEN && c->state != LC_HANDSHAKE)
            return;
    }
}

/* ---- opening ------------------------------------------------------------------------------ */

/* A non-blocking socket for u, bound to the next source address if there are any, connect
 * under way. Returns the fd, or -1 with c closed for its reason. */
static int open_socket(wk *w, lconn *c, const url *u)
{
    const opts *o = w->o;
    int fd = socket(u->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->io.fd = fd;
    if (fd < 0) {
        lconn_close(c, errno == EMFILE || errno == ENFILE ? F_ADDR_UNAVAILABLE : F_CONNECT_OTHER);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (o->nsources && u->addr.ss_family == AF_INET) {
        const struct sockaddr_in *src = &o->sources[w->src_next++ % (uint32_t)o->nsources];
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (const struct sockaddr *)src, sizeof *src) < 0) {
            lconn_close(c, F_ADDR_UNAVAILABLE);
            return -1;
        }
    }
    if (connect(fd, (const struct sockaddr *)&u->addr, u->addrlen) < 0 && errno != EINPROGRESS) {
        lconn_close(c, fail_of_errno(errno));
        return -1;
    }
    return fd;
}

void lconn_start(wk *w, lconn *c)
{
    const url *u = url_of(c, w->o);
    c->w = w;
    c->t_start = now_ns();
    c->io = (sock_io){.fd = -1};
    c->state = LC_CONNECTING;
    w->inflight++;
    int fd = open_socket(w, c, u);
    if (fd < 0)
        return;
    if (u->tls) {
        c->io.ssl = SSL_new(w->tls);
        SSL_set_fd(c->io.ssl, fd);
        SSL_set_tlsext_host_name(c->io.ssl, u->host);
        SSL_set_connect_state(c->io.ssl);
    }
    if (c->http) {
        c->inflight = 0;
        c->body = BODY_NONE;
    }
    ev_io_init(&c->rio, on_io, fd, EV_READ);
    ev_io_init(&c->wio, on_io, fd, EV_WRITE);
    c->rio.data = c->wio.data = c;
    ev_io_start(w->loop, &c->rio);
    want_write(c, true); /* connect completes when writable */
}

void lconn_poll_due(wk *w)
{
    uint64_t now = now_ns();
    for (size_t i = 0; i < w->nconns; i++) {
        lconn *c = &w->conns[i];
        if (c->state == LC_OPEN && c->t_next_poll && c->t_next_poll <= now) {
            c->t_next_poll = 0;
            send_get(c);
        }
    }
}

void lconn_launch(wk *w, size_t upto)
{
    if (upto > w->nconns)
        upto = w->nconns;
    while (w->launched_upto < upto && w->inflight < LAUNCH_INFLIGHT) {
        lconn *c = &w->conns[w->launched_upto++];
        if (c->state == LC_IDLE)
            lconn_start(w, c);
    }
}
