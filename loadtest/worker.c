/* wsload worker: one process, one libev loop, its share of the connections. It opens them,
 * speaks the client side of RFC 6455 with the project's codecs, runs the scenario once the
 * parent says go, and reports a tick a second and a final tally over its pipe. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <http_parser.h>

#include "wsload.h"
#include "ws_frame.h"
#include "ws_handshake.h"

#define LAUNCH_INFLIGHT 256   /* handshakes under way at once per worker */
#define OUT_HIGH (64 * 1024)  /* max rate: keep at most this much queued per publisher */
#define MARK "wsl:"

enum { LC_IDLE, LC_CONNECTING, LC_TLS, LC_HANDSHAKE, LC_OPEN, LC_DEAD };
enum { ROLE_SUB, ROLE_PUB, ROLE_ECHO, ROLE_HOLD };

typedef struct track {
    uint64_t next;   /* highest seq seen + 1 */
    uint64_t window; /* bit i: seq next-1-i was seen */
} track;

typedef struct wk wk;
typedef struct lc lc;

struct lc {
    wk *w;
    int fd;
    uint8_t state, role;
    bool pending, writing, ready, http, use_pub_url;
    ev_io rio, wio;
    SSL *ssl;
    uint32_t gid;     /* publisher number, echo connection number, subscriber number */
    uint32_t channel; /* subscriber: its channel */
    uint64_t t_start, t_closed;
    char key[25];
    char *hs;
    size_t hs_len;
    uint8_t *out;
    size_t out_len, out_cap, out_off;
    uint8_t *msg;
    size_t msg_len, msg_cap;
    ws_parser parser;
    track *tr;        /* subscriber: one per publisher; echo: one */
    uint64_t *pubseq; /* publisher: last seq per channel */
    uint64_t sent;
    uint32_t next_ch;
    http_parser hp;
    int inflight;
    lc *pnext;
};

struct wk {
    const opts *o;
    struct ev_loop *loop;
    int index, report_fd, control_fd;
    ev_io control_w;
    ev_timer tick_w, pace_w, stop_w, final_w, storm_w;
    ev_prepare flush_w;
    SSL_CTX *tls;
    uint8_t *rbuf;
    lc *conns;
    size_t nconns, launched_upto, inflight;
    size_t first_sender; /* conns[first_sender..] are publishers or echo senders */
    bool final_sent;
    lc *pending;
    counters c;
    hist lat, lat_tick, hs;
    int interval;
    uint64_t t_go, t_begin, t_last_settle;
    uint64_t drain_start, drain_quiet_since, drain_seen;
    bool going, sending, ready_sent;
    size_t settled; /* connections ready or failed */
    uint32_t src_next;
    uint64_t *published; /* fanout: per channel, publishes this worker made */
    uint32_t *subs_on;   /* fanout: per channel, this worker's subscribed connections */
    double rate_per_conn;
    uint64_t done_churn;
    uint64_t rng;
    char *tpl_prefix[3]; /* template mode: literal before {ts}, {seq}, {pub} */
};

static const opts *O;

const char *const fail_names[F_COUNT] = {
    "connect_refused", "connect_timeout", "address_unavailable", "connect_error",
    "handshake_status", "handshake_accept", "handshake_timeout", "closed_by_server",
    "protocol_error", "tls_error"};

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(wk *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

/* ---- output ------------------------------------------------------------------------------- */

static void mark_pending(lc *c)
{
    if (!c->pending) {
        c->pending = true;
        c->pnext = c->w->pending;
        c->w->pending = c;
    }
}

static uint8_t *out_reserve(lc *c, size_t n)
{
    if (c->out_off && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + n > c->out_cap) {
        if (c->out_off) {
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

static void send_raw(lc *c, const void *p, size_t n)
{
    memcpy(out_reserve(c, n), p, n);
}

/* Queues one masked client frame. */
static void send_frame(lc *c, uint8_t opcode, const void *payload, size_t n)
{
    uint64_t r = rnd(c->w);
    uint8_t mask[4];
    memcpy(mask, &r, 4);
    uint8_t *p = out_reserve(c, WS_MAX_HEADER + n);
    size_t h = ws_frame_header(p, opcode, true, false, n, mask);
    memcpy(p + h, payload, n);
    ws_mask(p + h, n, mask, 0);
    c->out_len -= WS_MAX_HEADER - h;
}

/* ---- connection life ---------------------------------------------------------------------- */

static void lc_start(wk *w, lc *c);
static void on_io(struct ev_loop *loop, ev_io *io, int revents);

static void settle(lc *c)
{
    wk *w = c->w;
    if (!c->ready) {
        c->ready = true;
        w->settled++;
        w->t_last_settle = now_ns();
    }
}

static void lc_close(lc *c, int reason)
{
    wk *w = c->w;
    if (c->state == LC_DEAD || c->state == LC_IDLE)
        return;
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
    ev_io_stop(w->loop, &c->rio);
    ev_io_stop(w->loop, &c->wio);
    c->writing = false;
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->hs);
    c->hs = NULL;
    c->hs_len = 0;
    free(c->msg);
    c->msg = NULL;
    c->msg_len = c->msg_cap = 0;
    c->out_len = c->out_off = 0;
    c->state = LC_DEAD;
    settle(c);
}

static int fail_of_errno(int e)
{
    return e == ECONNREFUSED ? F_CONNECT_REFUSED
         : e == ETIMEDOUT ? F_CONNECT_TIMEOUT
         : e == EADDRNOTAVAIL || e == EADDRINUSE ? F_ADDR_UNAVAILABLE
         : F_CONNECT_OTHER;
}

static void want_write(lc *c, bool on)
{
    if (on && !c->writing)
        ev_io_start(c->w->loop, &c->wio);
    else if (!on && c->writing)
        ev_io_stop(c->w->loop, &c->wio);
    c->writing = on;
}

static ssize_t tx_read(lc *c, void *buf, size_t n)
{
    if (!c->ssl) {
        ssize_t r = read(c->fd, buf, n);
        if (r >= 0)
            return r;
        return errno == EAGAIN || errno == EINTR ? -1 : -2;
    }
    int r = SSL_read(c->ssl, buf, (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return -1;
    if (e == SSL_ERROR_WANT_WRITE) {
        want_write(c, true);
        return -1;
    }
    return e == SSL_ERROR_ZERO_RETURN ? 0 : -2;
}

static ssize_t tx_write(lc *c, const void *buf, size_t n)
{
    if (!c->ssl) {
        ssize_t r = send(c->fd, buf, n, MSG_NOSIGNAL);
        if (r >= 0)
            return r;
        return errno == EAGAIN || errno == EINTR ? -1 : -2;
    }
    int r = SSL_write(c->ssl, buf, (int)(n > 16384 ? 16384 : n));
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? -1 : -2;
}

static void flush(lc *c)
{
    while (c->state != LC_DEAD && c->out_off < c->out_len) {
        ssize_t r = tx_write(c, c->out + c->out_off, c->out_len - c->out_off);
        if (r == -1) {
            want_write(c, true);
            return;
        }
        if (r < 0) {
            lc_close(c, F_CLOSED_BY_SERVER);
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

/* Expands {ch} in a URL path or template into out. */
static size_t expand_ch(char *out, size_t cap, const char *tpl, uint32_t ch)
{
    size_t n = 0;
    for (const char *p = tpl; *p && n + 16 < cap; p++) {
        if (strncmp(p, "{ch}", 4) == 0) {
            n += (size_t)snprintf(out + n, cap - n, "ch.%u", ch);
            p += 3;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    return n;
}

static void send_handshake(lc *c)
{
    const url *u = c->use_pub_url ? &O->pub_url : &O->target;
    unsigned char raw[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = rnd(c->w);
        memcpy(raw + i, &r, 8);
    }
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    /* base64 of 16 bytes: 22 characters and "==" */
    int k = 0;
    for (int i = 0; i < 15; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        c->key[k++] = b64[v >> 18 & 63];
        c->key[k++] = b64[v >> 12 & 63];
        c->key[k++] = b64[v >> 6 & 63];
        c->key[k++] = b64[v & 63];
    }
    c->key[k++] = b64[raw[15] >> 2];
    c->key[k++] = b64[(raw[15] & 3) << 4];
    c->key[k++] = '=';
    c->key[k++] = '=';
    c->key[k] = '\0';
    char path[1100], req[1600];
    expand_ch(path, sizeof path, u->path, c->channel);
    const char *proto = O->proto == PR_WSFAN ? "Sec-WebSocket-Protocol: ws.json.v1\r\n" : "";
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                     path, u->host, u->port, c->key, proto);
    send_raw(c, req, (size_t)n);
    c->state = LC_HANDSHAKE;
    flush(c);
}

static void on_ready(lc *c);

static void connected(lc *c)
{
    if (c->ssl && c->state == LC_CONNECTING)
        c->state = LC_TLS;
    if (c->state == LC_TLS) {
        int r = SSL_connect(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                want_write(c, e == SSL_ERROR_WANT_WRITE);
                return;
            }
            lc_close(c, F_TLS);
            return;
        }
        want_write(c, false);
    }
    if (c->http) {
        c->state = LC_OPEN;
        c->w->inflight--;
        c->w->c.opened++;
        c->w->c.open_now++;
        want_write(c, false);
        on_ready(c);
        return;
    }
    send_handshake(c);
}

/* Checks the 101 response in c->hs; returns its length, 0 if incomplete, -1 if refused. */
static int check_101(lc *c, int *reason)
{
    char *end = memmem(c->hs, c->hs_len, "\r\n\r\n", 4);
    if (!end)
        return c->hs_len > 16384 ? (*reason = F_HANDSHAKE_STATUS, -1) : 0;
    size_t head = (size_t)(end - c->hs) + 4;
    if (c->hs_len < 12 || memcmp(c->hs, "HTTP/1.1 101", 12) != 0) {
        *reason = F_HANDSHAKE_STATUS;
        return -1;
    }
    char want[WS_ACCEPT_LEN + 1];
    ws_handshake_accept(c->key, 24, want);
    const char *p = c->hs;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > 21 && strncasecmp(p, "Sec-WebSocket-Accept:", 21) == 0) {
            const char *v = p + 21;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            if (eol - v >= WS_ACCEPT_LEN && memcmp(v, want, WS_ACCEPT_LEN) == 0)
                return (int)head;
            break;
        }
        p = eol + 1;
    }
    *reason = F_HANDSHAKE_ACCEPT;
    return -1;
}

static void process(lc *c, uint8_t *buf, size_t n);

static void handshake_read(lc *c)
{
    wk *w = c->w;
    if (!c->hs && !(c->hs = malloc(16400))) {
        lc_close(c, F_CONNECT_OTHER);
        return;
    }
    ssize_t r = tx_read(c, c->hs + c->hs_len, 16400 - c->hs_len);
    if (r == -1)
        return;
    if (r <= 0) {
        lc_close(c, F_HANDSHAKE_STATUS);
        return;
    }
    c->hs_len += (size_t)r;
    w->c.bytes_in += (uint64_t)r;
    int reason = 0;
    int head = check_101(c, &reason);
    if (head == 0)
        return;
    if (head < 0) {
        lc_close(c, reason);
        return;
    }
    uint64_t now = now_ns();
    c->state = LC_OPEN;
    w->inflight--;
    w->c.opened++;
    w->c.open_now++;
    hist_add(&w->hs, now - c->t_start);
    if (c->t_closed) { /* churn: a reconnect */
        hist_add(&w->lat, now - c->t_closed);
        hist_add(&w->lat_tick, now - c->t_closed);
        w->c.reconnects++;
        c->t_closed = 0;
    }
    ws_parser_opts po = {.server = false};
    ws_parser_init(&c->parser, &po);
    char *hs = c->hs;
    size_t rest = c->hs_len - (size_t)head;
    c->hs = NULL;
    c->hs_len = 0;
    on_ready(c);
    if (rest && c->state == LC_OPEN)
        process(c, (uint8_t *)hs + head, rest);
    free(hs);
}

/* ---- measuring ---------------------------------------------------------------------------- */

static void track_seq(counters *k, track *t, uint64_t s)
{
    if (s >= t->next) {
        uint64_t shift = s - t->next + 1;
        t->window = shift >= 64 ? 0 : t->window << shift;
        t->window |= 1;
        t->next = s + 1;
        k->unique++;
        return;
    }
    uint64_t j = t->next - 1 - s;
    if (j < 64 && !(t->window >> j & 1)) {
        t->window |= 1ull << j;
        k->unique++;
        k->reordered++;
    } else {
        k->duplicates++; /* seen, or too old to tell */
    }
}

static const char *parse_u64(const char *p, const char *end, uint64_t *v)
{
    uint64_t x = 0;
    const char *s = p;
    while (p < end && *p >= '0' && *p <= '9')
        x = x * 10 + (uint64_t)(*p++ - '0');
    *v = x;
    return p == s ? NULL : p;
}

/* Finds the publisher, seq and send time in a received message. */
static bool find_marker(const wk *w, const uint8_t *m, size_t n, uint64_t *pub, uint64_t *seq,
                        uint64_t *ts)
{
    const char *s = (const char *)m, *end = s + n;
    if (O->proto != PR_TEMPLATE || !w->tpl_prefix[0]) {
        const char *p = memmem(s, n, MARK, 4);
        if (!p)
            return false;
        p += 4;
        if (!(p = parse_u64(p, end, pub)) || p >= end || *p++ != ':')
            return false;
        if (!(p = parse_u64(p, end, seq)) || p >= end || *p++ != ':')
            return false;
        return parse_u64(p, end, ts) != NULL;
    }
    /* Template: each value follows the literal that precedes it in the template. Searched in
     * template order first (a server's envelope may hold the same key before the data, as
     * wsfan's "seq": does), then each from the start (a server that reorders keys). */
    uint64_t v[3] = {0, 0, 0};
    const char *p = s;
    for (int i = 0; i < 3; i++) {
        if (!w->tpl_prefix[i])
            continue;
        size_t l = strlen(w->tpl_prefix[i]);
        const char *q = memmem(p, (size_t)(end - p), w->tpl_prefix[i], l);
        if (!q)
            q = memmem(s, n, w->tpl_prefix[i], l);
        const char *after = q ? parse_u64(q + l, end, &v[i]) : NULL;
        if (!after)
            return false;
        if (after > p)
            p = after;
    }
    *ts = v[0];
    if (w->tpl_prefix[2]) {
        *pub = v[2];
        *seq = v[1];
    } else { /* no {pub}: seq numbers all publishers in turn */
        *pub = v[1] % (uint64_t)O->publishers;
        *seq = v[1] / (uint64_t)O->publishers;
    }
    return true;
}

static void on_message(lc *c, const uint8_t *m, size_t n)
{
    wk *w = c->w;
    uint64_t pub, seq, ts;
    if (!find_marker(w, m, n, &pub, &seq, &ts)) {
        w->c.other_frames++;
        if (O->proto == PR_WSFAN && n > 12 && memmem(m, n, "\"op\":\"err\"", 10))
            w->c.errs++;
        if (c->role == ROLE_SUB && !c->ready && memmem(m, n, "\"op\":\"ack\"", 10)) {
            w->subs_on[c->channel]++;
            settle(c);
        }
        return;
    }
    uint64_t now = now_ns();
    w->c.received++;
    if (w->going && ts <= now) {
        hist_add(&w->lat, now - ts);
        hist_add(&w->lat_tick, now - ts);
    }
    if (c->role == ROLE_ECHO)
        track_seq(&w->c, &c->tr[0], seq);
    else if (c->role == ROLE_SUB && pub < (uint64_t)O->publishers)
        track_seq(&w->c, &c->tr[pub], seq);
}

static void process(lc *c, uint8_t *buf, size_t n)
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
                on_message(c, ev.data, ev.len);
                break;
            }
            if (c->msg_len + ev.len > c->msg_cap) {
                size_t cap = c->msg_cap ? c->msg_cap * 2 : 4096;
                while (cap < c->msg_len + ev.len)
                    cap *= 2;
                uint8_t *p = realloc(c->msg, cap);
                if (!p) {
                    lc_close(c, F_PROTOCOL);
                    return;
                }
                c->msg = p;
                c->msg_cap = cap;
            }
            memcpy(c->msg + c->msg_len, ev.data, ev.len);
            c->msg_len += ev.len;
            if (ev.fin) {
                on_message(c, c->msg, c->msg_len);
                c->msg_len = 0;
            }
            break;
        case WS_EV_PING:
            send_frame(c, WS_OP_PONG, ev.data, ev.len);
            break;
        case WS_EV_PONG:
            break;
        case WS_EV_CLOSE:
            lc_close(c, F_CLOSED_BY_SERVER);
            return;
        case WS_EV_ERROR:
            lc_close(c, F_PROTOCOL);
            return;
        }
    }
}

/* ---- HTTP publish responses --------------------------------------------------------------- */

static int on_http_done(http_parser *hp)
{
    lc *c = hp->data;
    c->inflight--;
    if (hp->status_code / 100 != 2)
        c->w->c.send_errors++;
    return 0;
}

static void http_read(lc *c, uint8_t *buf, size_t n)
{
    static const http_parser_settings s = {.on_message_complete = on_http_done};
    size_t used = http_parser_execute(&c->hp, &s, (const char *)buf, n);
    if (used != n || HTTP_PARSER_ERRNO(&c->hp) != HPE_OK)
        lc_close(c, F_PROTOCOL);
}

static void on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    lc *c = io->data;
    wk *w = c->w;
    if (c->state == LC_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            lc_close(c, fail_of_errno(err));
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
        flush(c);
        if (c->state == LC_DEAD)
            return;
    }
    if (!(revents & EV_READ))
        return;
    if (c->state == LC_HANDSHAKE) {
        handshake_read(c);
        return;
    }
    for (int round = 0; round < (c->ssl ? 8 : 1) && c->state == LC_OPEN; round++) {
        ssize_t r = tx_read(c, w->rbuf, 65536);
        if (r == -1)
            return;
        if (r <= 0) {
            lc_close(c, F_CLOSED_BY_SERVER);
            return;
        }
        w->c.bytes_in += (uint64_t)r;
        if (c->http)
            http_read(c, w->rbuf, (size_t)r);
        else
            process(c, w->rbuf, (size_t)r);
    }
}

/* ---- opening ------------------------------------------------------------------------------ */

static void lc_start(wk *w, lc *c)
{
    const url *u = c->use_pub_url ? &O->pub_url : &O->target;
    c->w = w;
    c->t_start = now_ns();
    c->fd = socket(u->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->state = LC_CONNECTING;
    w->inflight++;
    if (c->fd < 0) {
        lc_close(c, errno == EMFILE || errno == ENFILE ? F_ADDR_UNAVAILABLE : F_CONNECT_OTHER);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (O->nsources && u->addr.ss_family == AF_INET) {
        const struct sockaddr_in *src = &O->sources[w->src_next++ % (uint32_t)O->nsources];
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(c->fd, (const struct sockaddr *)src, sizeof *src) < 0) {
            lc_close(c, F_ADDR_UNAVAILABLE);
            return;
        }
    }
    if (connect(c->fd, (const struct sockaddr *)&u->addr, u->addrlen) < 0 && errno != EINPROGRESS) {
        lc_close(c, fail_of_errno(errno));
        return;
    }
    if (u->tls) {
        c->ssl = SSL_new(w->tls);
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_tlsext_host_name(c->ssl, u->host);
        SSL_set_connect_state(c->ssl);
    }
    if (c->http) {
        http_parser_init(&c->hp, HTTP_RESPONSE);
        c->hp.data = c;
        c->inflight = 0;
    }
    ev_io_init(&c->rio, on_io, c->fd, EV_READ);
    ev_io_init(&c->wio, on_io, c->fd, EV_WRITE);
    c->rio.data = c->wio.data = c;
    ev_io_start(w->loop, &c->rio);
    c->writing = false;
    want_write(c, true); /* connect completes when writable */
}

/* Starts idle connections while fewer than LAUNCH_INFLIGHT handshakes are under way. */
static void launch(wk *w, size_t upto)
{
    if (upto > w->nconns)
        upto = w->nconns;
    while (w->launched_upto < upto && w->inflight < LAUNCH_INFLIGHT) {
        lc *c = &w->conns[w->launched_upto++];
        if (c->state == LC_IDLE)
            lc_start(w, c);
    }
}

/* ---- scenario ----------------------------------------------------------------------------- */

static void send_sub(lc *c)
{
    char msg[512];
    if (O->proto == PR_WSFAN) {
        int n = snprintf(msg, sizeof msg, "{\"op\":\"sub\",\"ch\":\"ch.%u\",\"id\":1}", c->channel);
        send_frame(c, WS_OP_TEXT, msg, (size_t)n);
    } else if (O->sub_template) {
        size_t n = expand_ch(msg, sizeof msg, O->sub_template, c->channel);
        send_frame(c, WS_OP_TEXT, msg, n);
    }
}

static void on_ready(lc *c)
{
    wk *w = c->w;
    if (c->role == ROLE_SUB) {
        send_sub(c);
        if (O->proto != PR_WSFAN) { /* no ack to wait for */
            w->subs_on[c->channel]++;
            settle(c);
        }
        return;
    }
    settle(c);
}

/* Builds one measured message for publisher/echo connection c into buf; returns its length. */
static size_t build_message(lc *c, char *buf, size_t cap, uint32_t ch, uint64_t seq)
{
    uint64_t ts = now_ns();
    char marker[96];
    int mn = snprintf(marker, sizeof marker, MARK "%u:%llu:%llu:", c->gid, (unsigned long long)seq,
                      (unsigned long long)ts);
    size_t pad = (size_t)O->size > (size_t)mn ? (size_t)O->size - (size_t)mn : 0;
    if (O->proto == PR_TEMPLATE) {
        size_t n = 0;
        uint64_t gseq = c->w->tpl_prefix[2] ? seq : seq * (uint64_t)O->publishers + c->gid;
        for (const char *p = O->pub_template; *p && n + 128 < cap; p++) { /* room for a marker */
            if (strncmp(p, "{ts}", 4) == 0) {
                n += (size_t)snprintf(buf + n, cap - n, "%llu", (unsigned long long)ts);
                p += 3;
            } else if (strncmp(p, "{seq}", 5) == 0) {
                n += (size_t)snprintf(buf + n, cap - n, "%llu", (unsigned long long)gseq);
                p += 4;
            } else if (strncmp(p, "{pub}", 5) == 0) {
                n += (size_t)snprintf(buf + n, cap - n, "%u", c->gid);
                p += 4;
            } else if (strncmp(p, "{ch}", 4) == 0) {
                n += (size_t)snprintf(buf + n, cap - n, "ch.%u", ch);
                p += 3;
            } else if (strncmp(p, "{msg}", 5) == 0) {
                n += (size_t)snprintf(buf + n, cap - n, "%s", marker);
                p += 4;
            } else if (strncmp(p, "{pad}", 5) == 0) {
                for (size_t i = 0; i < pad && n + 64 < cap; i++)
                    buf[n++] = 'x';
                p += 4;
            } else {
                buf[n++] = *p;
            }
        }
        return n;
    }
    size_t n = 0;
    bool wrap = O->proto == PR_WSFAN && c->role == ROLE_PUB;
    if (wrap)
        n = (size_t)snprintf(buf, cap, "{\"op\":\"pub\",\"ch\":\"ch.%u\",\"data\":\"", ch);
    memcpy(buf + n, marker, (size_t)mn);
    n += (size_t)mn;
    memset(buf + n, 'x', pad);
    n += pad;
    if (wrap) {
        memcpy(buf + n, "\"}", 2);
        n += 2;
    }
    return n;
}

static void publish_one(lc *c)
{
    wk *w = c->w;
    static char buf[1 << 20];
    uint32_t ch;
    uint64_t seq;
    if (c->role == ROLE_ECHO) {
        ch = 0;
        seq = ++c->sent;
    } else {
        ch = c->next_ch;
        c->next_ch = (c->next_ch + 1) % (uint32_t)O->channels;
        seq = ++c->pubseq[ch];
        c->sent++;
        w->published[ch]++;
    }
    size_t n = build_message(c, buf, sizeof buf, ch, seq);
    if (c->http) {
        char path[1100], head[1600];
        expand_ch(path, sizeof path, O->pub_url.path, ch);
        int hn = snprintf(head, sizeof head,
                          "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\n\r\n",
                          path, O->pub_url.host, O->pub_url.port, n);
        if (hn < 0 || (size_t)hn >= sizeof head)
            hn = (int)sizeof head - 1;
        send_raw(c, head, (size_t)hn);
        send_raw(c, buf, n);
        c->inflight++;
    } else {
        send_frame(c, WS_OP_TEXT, buf, n);
    }
    w->c.sent++;
}

static bool is_sender(const lc *c)
{
    return c->state == LC_OPEN && (c->role == ROLE_PUB || c->role == ROLE_ECHO);
}

/* Paced sending: each sender has sent floor(elapsed * rate) messages. */
static void on_pace(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    wk *w = t->data;
    if (!w->sending)
        return;
    double elapsed = (double)(now_ns() - w->t_go) / 1e9;
    if (O->scenario == SC_CHURN) {
        if (w->nconns == 0)
            return;
        uint64_t due = (uint64_t)(elapsed * O->rate / O->workers);
        for (int k = 0; w->done_churn < due && k < 10000; k++) {
            lc *c = &w->conns[rnd(w) % w->nconns];
            w->done_churn++;
            if (c->state == LC_DEAD) { /* a reconnect that failed: try it again */
                c->t_closed = now_ns();
                lc_start(w, c);
                continue;
            }
            if (c->state != LC_OPEN)
                continue;
            uint8_t p[2] = {0x03, 0xE8};
            send_frame(c, WS_OP_CLOSE, p, 2);
            flush(c);
            lc_close(c, -1);
            c->t_closed = now_ns();
            lc_start(w, c);
        }
        return;
    }
    uint64_t due = (uint64_t)(elapsed * w->rate_per_conn);
    for (size_t i = w->first_sender; i < w->nconns; i++) {
        lc *c = &w->conns[i];
        if (!is_sender(c))
            continue;
        for (int k = 0; c->sent < due && k < 1000; k++) {
            if (c->http && c->inflight >= O->pipeline)
                break;
            publish_one(c);
        }
    }
}

/* Max rate: keep every sender's queue topped up (called before the loop sleeps). */
static void top_up(wk *w)
{
    for (size_t i = w->first_sender; i < w->nconns; i++) {
        lc *c = &w->conns[i];
        if (!is_sender(c))
            continue;
        while (c->out_len - c->out_off < OUT_HIGH / 2 && !(c->http && c->inflight >= O->pipeline))
            publish_one(c);
    }
}

static void on_flush(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)loop;
    (void)revents;
    wk *w = p->data;
    if (w->sending && O->rate == 0 && O->scenario != SC_CHURN && O->scenario != SC_CONNECT)
        top_up(w);
    while (w->pending) {
        lc *list = w->pending;
        w->pending = NULL;
        for (lc *c = list, *next; c; c = next) {
            next = c->pnext;
            c->pending = false;
            flush(c);
        }
    }
    size_t upto = w->nconns;
    if (O->scenario == SC_CONNECT && O->rate > 0) {
        double elapsed = (double)(now_ns() - w->t_begin) / 1e9;
        upto = (size_t)(elapsed * O->rate / O->workers) + 1;
    }
    launch(w, upto);
}

static void on_storm(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    wk *w = t->data;
    uint64_t now = now_ns();
    for (size_t i = 0; i < w->nconns; i++) {
        lc *c = &w->conns[i];
        if (c->state != LC_OPEN)
            continue;
        lc_close(c, -1);
        c->t_closed = now;
        c->state = LC_IDLE;
    }
    w->launched_upto = 0; /* relaunch them, LAUNCH_INFLIGHT at a time */
    launch(w, w->nconns);
}

/* ---- reporting ---------------------------------------------------------------------------- */

static void cpu(counters *k)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    k->cpu_user_ns = (uint64_t)ru.ru_utime.tv_sec * 1000000000ull + (uint64_t)ru.ru_utime.tv_usec * 1000;
    k->cpu_sys_ns = (uint64_t)ru.ru_stime.tv_sec * 1000000000ull + (uint64_t)ru.ru_stime.tv_usec * 1000;
}

static void write_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t r = write(fd, s, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            exit(1); /* the parent is gone */
        s += r;
        n -= (size_t)r;
    }
}

static void send_report(wk *w, int kind)
{
    static report r;
    if (kind == R_FINAL) {
        if (w->final_sent)
            return; /* 'q' and the end of the drain in one iteration: the parent reads one */
        w->final_sent = true;
    }
    memset(&r, 0, sizeof r);
    r.kind = kind;
    r.worker = w->index;
    r.interval = w->interval;
    cpu(&w->c);
    r.c = w->c;
    r.lat = kind == R_FINAL ? w->lat : w->lat_tick;
    r.hs = w->hs;
    uint32_t nchan = 0;
    if (kind == R_FINAL && O->scenario == SC_FANOUT)
        for (int i = 0; i < O->channels; i++)
            nchan += w->published[i] || w->subs_on[i];
    r.nchan = nchan;
    write_all(w->report_fd, &r, sizeof r);
    if (nchan) {
        for (int i = 0; i < O->channels; i++) {
            if (!w->published[i] && !w->subs_on[i])
                continue;
            chan_tally t = {(uint32_t)i, w->subs_on[i], w->published[i]};
            write_all(w->report_fd, &t, sizeof t);
        }
    }
}

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    wk *w = t->data;
    uint64_t now = now_ns();
    /* Handshake deadlines. */
    for (size_t i = 0; i < w->launched_upto; i++) {
        lc *c = &w->conns[i];
        if ((c->state == LC_CONNECTING || c->state == LC_TLS || c->state == LC_HANDSHAKE) &&
            now - c->t_start > (uint64_t)(O->handshake_timeout * 1e9))
            lc_close(c, c->state == LC_CONNECTING ? F_CONNECT_TIMEOUT : F_HANDSHAKE_TIMEOUT);
        else if (c->state == LC_OPEN && c->role == ROLE_SUB && !c->ready &&
                 now - c->t_start > (uint64_t)(O->handshake_timeout * 1e9))
            lc_close(c, F_PROTOCOL); /* subscribed but never acked: do not hold up the start */
    }
    if (!w->ready_sent && w->settled >= w->nconns) {
        w->ready_sent = true;
        w->c.setup_ns = w->t_last_settle - w->t_begin;
        send_report(w, R_READY);
    }
    if (w->going) {
        send_report(w, R_TICK);
        hist_reset(&w->lat_tick);
        w->interval++;
    }
}

static void on_final(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    wk *w = t->data;
    send_report(w, R_FINAL);
    ev_break(loop, EVBREAK_ALL);
}

/* The drain: every 0.25 s, finish once --drain has passed or nothing arrived for 0.5 s. */
static void on_drain_check(struct ev_loop *loop, ev_timer *t, int revents)
{
    wk *w = t->data;
    uint64_t now = now_ns();
    if (w->c.received != w->drain_seen) {
        w->drain_seen = w->c.received;
        w->drain_quiet_since = now;
    }
    if (now - w->drain_start >= (uint64_t)(O->drain * 1e9) || now - w->drain_quiet_since >= 500000000ull)
        on_final(loop, t, revents);
}

static void on_stop_sending(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    wk *w = t->data;
    w->sending = false;
    ev_timer_stop(loop, &w->storm_w);
    if (O->scenario == SC_CONNECT || O->scenario == SC_CHURN) {
        on_final(loop, t, revents);
        return;
    }
    w->drain_start = w->drain_quiet_since = now_ns();
    w->drain_seen = w->c.received;
    ev_timer_init(&w->final_w, on_drain_check, 0.25, 0.25);
    w->final_w.data = w;
    ev_timer_start(loop, &w->final_w);
}

static void on_control(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    wk *w = io->data;
    char cmd;
    ssize_t r = read(w->control_fd, &cmd, 1);
    if (r <= 0 || cmd == 'q') { /* parent gone or asked to stop now */
        send_report(w, R_FINAL);
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    if (cmd == 'g' && !w->going) {
        w->going = true;
        w->sending = true;
        w->t_go = now_ns();
        /* Ticks count whole seconds from go, so interval k is exactly second k of the run. */
        ev_timer_stop(loop, &w->tick_w);
        ev_timer_set(&w->tick_w, 1.0, 1.0);
        ev_timer_start(loop, &w->tick_w);
        if (O->scenario == SC_CONNECT)
            ev_timer_stop(loop, &w->pace_w); /* every connection is open: nothing to pace */
        hist_reset(&w->lat);
        hist_reset(&w->lat_tick);
        double run = O->scenario == SC_CONNECT ? O->hold : O->duration;
        ev_timer_init(&w->stop_w, on_stop_sending, run, 0);
        w->stop_w.data = w;
        ev_timer_start(loop, &w->stop_w);
        if (O->rate > 0 && O->scenario != SC_CONNECT) {
            ev_timer_init(&w->pace_w, on_pace, 0.001, 0.001);
            w->pace_w.data = w;
            ev_timer_start(loop, &w->pace_w);
        }
        if (O->scenario == SC_CHURN && O->storm) {
            ev_timer_init(&w->storm_w, on_storm, O->storm_every, O->storm_every);
            w->storm_w.data = w;
            ev_timer_start(loop, &w->storm_w);
        }
    }
}

/* ---- setup -------------------------------------------------------------------------------- */

/* The literal just before placeholder ph in the template, back to the previous '{', ',' or
 * '}' (a JSON key such as "ts": or text such as ts=), so that the receiver can find the value
 * however the server wraps the data. NULL if there is none. */
static char *prefix_of(const char *tpl, const char *ph)
{
    const char *p = strstr(tpl, ph);
    if (!p || p == tpl)
        return NULL;
    const char *s = p;
    while (s > tpl && p - s < 32 && !strchr("{,}", s[-1]))
        s--;
    if (s == p) /* e.g. [{ts},{seq}]: the separator itself is all there is */
        s = p - 1;
    return strndup(s, (size_t)(p - s));
}

int worker_main(const opts *o, int index, int report_fd, int control_fd)
{
    static wk w;
    O = o;
    w.o = o;
    w.index = index;
    w.report_fd = report_fd;
    w.control_fd = control_fd;
    signal(SIGPIPE, SIG_IGN);
    /* Ctrl-C reaches the whole process group: the parent turns it into 'q' so every worker
     * still sends its final tally. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    w.rng = now_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ull;
    w.loop = ev_default_loop(EVFLAG_AUTO);
    w.rbuf = malloc(65536);
    if (o->target.tls || (o->has_pub_url && o->pub_url.tls)) {
        w.tls = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(w.tls, SSL_VERIFY_NONE, NULL); /* load tests: self-signed is the norm */
        SSL_CTX_set_mode(w.tls, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
    if (o->proto == PR_TEMPLATE && o->pub_template && !strstr(o->pub_template, "{msg}")) {
        w.tpl_prefix[0] = prefix_of(o->pub_template, "{ts}");
        w.tpl_prefix[1] = prefix_of(o->pub_template, "{seq}");
        w.tpl_prefix[2] = prefix_of(o->pub_template, "{pub}");
    }

    /* This worker's share: global numbers g with g % workers == index. */
    int W = o->workers;
    size_t nsub = 0, npub = 0, nother = 0;
    if (o->scenario == SC_FANOUT) {
        for (int g = index; g < o->subscribers; g += W)
            nsub++;
        for (int g = index; g < o->publishers; g += W)
            npub++;
    } else {
        for (int g = index; g < o->connections; g += W)
            nother++;
    }
    w.nconns = nsub + npub + nother;
    w.conns = calloc(w.nconns ? w.nconns : 1, sizeof *w.conns);
    if (o->scenario == SC_FANOUT) {
        w.published = calloc((size_t)o->channels, sizeof *w.published);
        w.subs_on = calloc((size_t)o->channels, sizeof *w.subs_on);
    }
    size_t k = 0;
    /* Subscribers first, so they are subscribed before publishers count as ready. */
    for (int g = index; o->scenario == SC_FANOUT && g < o->subscribers; g += W) {
        lc *c = &w.conns[k++];
        c->role = ROLE_SUB;
        c->gid = (uint32_t)g;
        c->channel = (uint32_t)(g % o->channels);
        c->tr = calloc((size_t)o->publishers, sizeof *c->tr);
        for (int p = 0; p < o->publishers; p++)
            c->tr[p].next = 1;
    }
    w.first_sender = k;
    for (int g = index; o->scenario == SC_FANOUT && g < o->publishers; g += W) {
        lc *c = &w.conns[k++];
        c->role = ROLE_PUB;
        c->gid = (uint32_t)g;
        c->use_pub_url = o->has_pub_url;
        c->http = o->has_pub_url && o->pub_url.http;
        c->next_ch = (uint32_t)(g % o->channels);
        c->pubseq = calloc((size_t)o->channels, sizeof *c->pubseq);
    }
    for (int g = index; o->scenario != SC_FANOUT && g < o->connections; g += W) {
        lc *c = &w.conns[k++];
        c->role = o->scenario == SC_ECHO ? ROLE_ECHO : ROLE_HOLD;
        c->gid = (uint32_t)g;
        c->tr = calloc(1, sizeof *c->tr);
        c->tr[0].next = 1;
    }
    for (size_t i = 0; i < w.nconns; i++) {
        w.conns[i].fd = -1;
        w.conns[i].w = &w;
    }
    w.rate_per_conn = o->scenario == SC_FANOUT ? o->rate / o->publishers : o->rate;

    ev_io_init(&w.control_w, on_control, control_fd, EV_READ);
    w.control_w.data = &w;
    ev_io_start(w.loop, &w.control_w);
    ev_timer_init(&w.tick_w, on_tick, 1.0, 1.0);
    w.tick_w.data = &w;
    ev_timer_start(w.loop, &w.tick_w);
    ev_prepare_init(&w.flush_w, on_flush);
    w.flush_w.data = &w;
    ev_prepare_start(w.loop, &w.flush_w);
    ev_init(&w.storm_w, on_storm);
    w.storm_w.data = &w;

    /* The connect scenario at a rate: on_flush paces launch(), woken by this timer. */
    w.t_begin = now_ns();
    if (o->scenario == SC_CONNECT && o->rate > 0) {
        ev_timer_init(&w.pace_w, on_pace, 0.001, 0.001);
        w.pace_w.data = &w;
        ev_timer_start(w.loop, &w.pace_w);
    }
    launch(&w, o->scenario == SC_CONNECT && o->rate > 0 ? 1 : w.nconns);
    if (w.nconns == 0) {
        w.ready_sent = true;
        send_report(&w, R_READY);
    }
    ev_run(w.loop, 0);
    return 0;
}
