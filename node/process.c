#include "process.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "conn.h"
#include "files.h"
#include "heal.h"
#include "http.h"
#include "iplimit.h"
#include "log.h"
#include "net.h"
#include "session.h"
#include "sock.h"
#include "tls.h"
#include "ws_hash.h"

#define READ_BUFFER (64 * 1024)
#define ACCEPTS_PER_WAKEUP 64
#define HUB_MAX_IDLE 65536 /* channels without subscribers whose seq is remembered */
#define DRAIN_STEP 0.05    /* seconds between two batches of closes 1001 in a drain */

/* Binds cfg->bind:port with SO_REUSEPORT; returns a non-blocking listening socket or -1. */
static int listen_on(const config *cfg)
{
    return net_listen(cfg->bind, cfg->port, &(net_opts){.backlog = 4096, .share = true});
}

bool process_port_in_use(const config *cfg)
{
    if (net_port_free("wsnode", cfg->bind, cfg->port))
        return false;
    if (errno == EADDRINUSE)
        log_error("%s:%d is already served by another process (another wsnode, or anything "
                  "listening there): refusing to share it by accident. For a deliberate "
                  "hand-over (an upgrade: start the new node, then drain the old one), give "
                  "--share-port; see docs/deploy.md", cfg->bind, cfg->port);
    else
        log_error("cannot listen on %s:%d: %s", cfg->bind, cfg->port, strerror(errno));
    return true;
}

/* Answers a connection refused at accept with status and closes it: no struct, no buffers, no
 * timer, so refusing costs next to nothing however many come. */
static void refuse(int fd, const char *status)
{
    char out[160];
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 %s\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                     status);
    if (send(fd, out, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) { /* best effort */
    }
    shutdown(fd, SHUT_WR);
    close(fd);
}

static void on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    worker *w = io->data;
    for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        int fd = accept4(w->lfd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_warn("accept: %s: pausing accepts for 100 ms", strerror(errno));
                ev_io_stop(loop, &w->accept_w);
                ev_timer_set(&w->accept_pause, 0.1, 0);
                ev_timer_start(loop, &w->accept_pause);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                log_warn("accept: %s", strerror(errno));
            }
            return;
        }
        if (w->nconns >= w->max_conns) {
            w->st->rejected++;
            log_warn("connection limit %zu reached: refusing a connection (503)", w->max_conns);
            refuse(fd, "503 Service Unavailable");
            continue;
        }
        ip_entry *ip = NULL;
        if (w->ips && (w->cfg->limit_loopback || !ipl_loopback(&peer))) {
            const char *why;
            if (!(ip = ipl_admit(w->ips, &peer, ev_now(loop), &why))) {
                w->st->ip_refused++;
                log_info("refusing a connection (429): %s", why);
                refuse(fd, "429 Too Many Requests");
                continue;
            }
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        w->st->accepted++;
        conn_accept(w, fd, ip);
    }
}

static void on_accept_pause(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    worker *w = t->data;
    if (!w->draining)
        ev_io_start(loop, &w->accept_w);
}

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    worker *w = t->data;
    conn_tick(w);
    if (w->ips)
        ipl_sweep(w->ips, ev_now(loop));
    w->st->conns_open = w->nconns;
    w->st->sse_open = w->nstreams[CONN_STREAM_SSE];
    w->st->polls_waiting = w->nstreams[CONN_STREAM_POLL];
    if (w->bus) {
        const bus_stats *b = bus_get_stats(w->bus);
        w->st->bus_up = b->up;
        w->st->bus_reconnects = b->reconnects;
        w->st->bus_silent = b->silent;
        w->st->bus_servers = b->servers;
        w->st->bus_servers_up = b->servers_up;
        w->st->bus_redirects = b->redirects;
        w->st->bus_moved = b->moved;
        w->st->bus_refreshes = b->refreshes;
        w->st->bus_published = b->published;
        w->st->bus_publish_failures = b->publish_failures;
        w->st->bus_received = b->received;
        w->st->bus_malformed = b->malformed;
        w->st->bus_pending = b->pending;
    }
    if (w->pres) {
        presence_tick(w->pres);
        const presence_stats *p = presence_get_stats(w->pres);
        w->st->pres_events_sent = p->events_sent;
        w->st->pres_events_lost = p->events_lost;
        w->st->pres_unrouted = p->unrouted;
        w->st->pres_snapshots = p->snapshots;
        w->st->pres_queries = p->queries;
        w->st->pres_directs_in = p->directs_in;
        w->st->pres_directs_out = p->directs_out;
        w->st->pres_timeouts = p->timeouts;
        w->st->pres_event_frames = p->event_frames;
        w->st->pres_malformed = p->malformed;
        w->st->pres_events_announced = p->events_announced;
    }
}

static void on_overload_check(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    conn_overload_check(t->data);
}

static void on_prepare(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)loop;
    (void)revents;
    conn_flush_pending(p->data);
}

static void on_last_words(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)t;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void on_drain_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)t;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

/* The part of --drain-timeout over which the closes 1001 are spread (docs/deploy.md): it ends
 * --close-timeout before the deadline, so the last clients closed have that long to answer,
 * but takes at least half of the drain timeout (a long close timeout does not cancel the ramp)
 * and at most 80% of it (a short one still leaves the last clients a moment). Below five steps
 * (0.25 s): 0, every close at once. */
static double drain_window(const config *c)
{
    double win = c->drain_timeout - c->close_timeout;
    if (win < c->drain_timeout * 0.5)
        win = c->drain_timeout * 0.5;
    if (win > c->drain_timeout * 0.8)
        win = c->drain_timeout * 0.8;
    return win < 5 * DRAIN_STEP ? 0 : win;
}

/* One step of the ramp: by the end of the step that starts at time t of the window win, a
 * share (t + step) / win of the connections open at the start has been sent its close; the
 * step that comes at the window's end or after sends all the rest. Counting from the start
 * catches up a step that came late and never closes faster than planned when clients leave
 * by themselves (the ramp then simply ends sooner). */
static void on_drain_step(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    worker *w = t->data;
    double win = drain_window(w->cfg);
    double part = win > 0 ? (ev_now(loop) - w->drain_since + DRAIN_STEP) / win : 1;
    size_t due = part >= 1 ? w->drain_total : (size_t)((double)w->drain_total * part);
    size_t n = due > w->drain_sent ? due - w->drain_sent : 0;
    size_t sent = conn_drain_some(w, n);
    w->drain_sent += sent;
    if (sent < n || w->drain_sent == w->drain_total)
        ev_timer_stop(loop, t);
}

static void on_stop_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)revents;
    worker *w = s->data;
    if (w->draining)
        return;
    w->draining = true;
    w->drain_since = ev_now(loop);
    ev_io_stop(loop, &w->accept_w);
    ev_timer_stop(loop, &w->accept_pause);
    close(w->lfd);
    w->lfd = -1;
    w->drain_total = conn_drain_start(w);
    w->drain_sent = 0;
    double win = drain_window(w->cfg);
    log_info("draining %zu connections over %.1f s (close 1001), at most %.1f s", w->drain_total,
             win, w->cfg->drain_timeout);
    ev_timer_init(&w->drain_step, on_drain_step, 0, win > 0 ? DRAIN_STEP : 0);
    w->drain_step.data = w;
    if (win > 0)
        ev_timer_start(loop, &w->drain_step);
    else
        on_drain_step(loop, &w->drain_step, 0); /* everyone at once, now */
    if (w->nconns == 0) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    ev_timer_init(&w->drain_w, on_drain_timeout, w->cfg->drain_timeout, 0);
    w->drain_w.data = w;
    ev_timer_start(loop, &w->drain_w);
}

/* The loop stopped during a drain: every connection closed, or the drain timeout came (those
 * still open are dropped when the worker exits). */
static void drain_done(worker *w)
{
    ev_timer_stop(w->loop, &w->drain_step);
    ev_timer_stop(w->loop, &w->drain_w);
    double took = ev_now(w->loop) - w->drain_since;
    if (w->nconns == 0)
        log_info("drained: every connection closed after %.2f s", took);
    else
        log_info("drain timeout after %.2f s: %zu connections still open, dropped", took,
                 w->nconns);
}

/* SIGHUP (the master forwards its own): reload the certificate and key from the same paths.
 * Only new connections use the new context; every open one keeps its SSL object, which holds
 * a reference to the context it was made from, so none is dropped. A reload that fails keeps
 * the old context. */
static void on_reload_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    worker *w = s->data;
    if (!w->tls) {
        log_info("SIGHUP: no TLS certificate to reload; ignored");
        return;
    }
    char err[512];
    SSL_CTX *ctx = tls_server_ctx(w->cfg->tls_cert, w->cfg->tls_key, err, sizeof err);
    if (!ctx) {
        log_error("TLS: reload failed, keeping the old certificate: %s", err);
        return;
    }
    SSL_CTX_free(w->tls);
    w->tls = ctx;
    log_info("TLS: certificate reloaded from %s", w->cfg->tls_cert);
}

/* ---- the Redis bus ---- */

static void on_bus_message(void *ctx, ws_span ch, uint64_t seq, ws_span epoch, ws_span data,
                           uint64_t sent_us)
{
    worker *w = ctx;
    if (w->nheal && heal_hold(w, ch, seq, epoch, data))
        return; /* its channel is being mended: delivered after what it missed */
    w->st->deliveries += hub_deliver(&w->hub, ch, seq, epoch, data);
    if (sent_us) { /* publish to delivery, on the publisher's and this host's wall clocks */
        const double *bounds = worker_lat_bounds();
        double lat = ev_time() - (double)sent_us / 1e6;
        if (lat < 0)
            lat = 0;
        w->st->lat_count++;
        w->st->lat_sum_us += (uint64_t)(lat * 1e6);
        for (int i = 0; i < LAT_BUCKETS; i++)
            if (lat <= bounds[i])
                w->st->lat_bucket[i]++; /* cumulative, as Prometheus wants */
    }
}

/* ch was subscribed again (a reconnect, a slot that moved): mend what it missed. */
static void on_bus_resubscribe(void *ctx, ws_span ch) { heal_channel(ctx, ch); }

static void on_channel_active(void *ctx, ws_span ch, bool active)
{
    worker *w = ctx;
    if (active)
        bus_subscribe(w->bus, ch);
    else
        bus_unsubscribe(w->bus, ch);
}

/* <prefix>.w<index>.<6 random hex>: the prefix is --node-id or the master's random one. */
static void make_node_id(worker *w)
{
    unsigned char rnd[3] = {0};
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        memcpy(rnd, &(int){getpid()}, sizeof rnd);
    snprintf(w->node_id, sizeof w->node_id, "%s.w%d.%02x%02x%02x", w->cfg->node_id, w->index,
             rnd[0], rnd[1], rnd[2]);
}

static double tick_interval(const config *c)
{
    double t = c->handshake_timeout;
    if (c->ping_interval < t)
        t = c->ping_interval;
    if (c->idle_timeout < t)
        t = c->idle_timeout;
    if (c->close_timeout < t)
        t = c->close_timeout;
    if (c->sse_ping < t)
        t = c->sse_ping;
    t /= 4;
    return t < 0.01 ? 0.01 : t > 1 ? 1 : t;
}


/* Loads what the worker needs from disk and binds its socket: TLS context, --auth key,
 * --static files, the listener. False (logged) when one fails. */
static bool open_resources(worker *w)
{
    const config *cfg = w->cfg;
    char err[512];
    if (cfg->tls_cert && !(w->tls = tls_server_ctx(cfg->tls_cert, cfg->tls_key, err, sizeof err))) {
        log_error("TLS: %s", err);
        return false;
    }
    if (cfg->auth != AUTH_OFF && !(w->auth = auth_new(cfg, err, sizeof err))) {
        log_error("--auth: %s", err);
        return false;
    }
    if (cfg->static_dir && !(w->files = files_load(cfg->static_dir, err, sizeof err))) {
        log_error("--static: %s", err);
        return false;
    }
    w->lfd = listen_on(cfg);
    return w->lfd >= 0;
}

/* Buffers, lists and tables: false (logged) when out of memory or randomness. */
static bool make_state(worker *w)
{
    const config *cfg = w->cfg;
    struct rlimit rl;
    size_t fd_cap = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 64 ? (size_t)rl.rlim_cur - 32 : 1024;
    w->max_conns = cfg->max_connections ? (size_t)cfg->max_connections : fd_cap;
    w->rbuf_size = READ_BUFFER;
    w->rbuf = malloc(w->rbuf_size);
    w->tlsbuf = malloc(SOCK_TLS_CHUNK);
    w->req = malloc(sizeof *w->req);
    w->on_request = http_request;
    w->ws_opts = (ws_parser_opts){.max_frame = cfg->max_message, .max_message = cfg->max_message, .server = true};
    w->echo_opts = (ws_parser_opts){.max_frame = cfg->echo_max_message,
                                    .max_message = cfg->echo_max_message, .server = true};
    ws_list_init(&w->pending);
    ws_list_init(&w->dead);
    ws_list_init(&w->soft);
    for (int i = 0; i < TL_COUNT; i++)
        ws_list_init(&w->lists[i].head);
    w->lists[TL_HANDSHAKE].timeout = cfg->handshake_timeout;
    w->lists[TL_OPEN].timeout = cfg->ping_interval;
    w->lists[TL_STREAM].timeout = cfg->sse_ping;
    w->lists[TL_PINGED].timeout = cfg->idle_timeout;
    w->lists[TL_CLOSING].timeout = cfg->close_timeout;
    uint8_t key[16];
    if (RAND_bytes(key, sizeof key) != 1) {
        log_error("no randomness for the hash keys");
        return false;
    }
    uint64_t k[2];
    ws_siphash_key(k, key);
    tab_init(&w->clients, k);
    tab_init(&w->recoveries, k);
    tab_init(&w->heals, k);
    tab_init(&w->reads, k);
    hub_init(&w->hub, conn_hub_deliver, w, HUB_MAX_IDLE, key);
    w->hub.on_held = session_held_frame;
    w->hub.remote = rlink_opts_enabled(&cfg->redis);
    /* Without a bus the memory is the whole history; with one, a window in front of Redis. */
    w->hub.keep = (uint32_t)(w->hub.remote ? cfg->history_memory : cfg->history_size);
    snprintf(w->hub.epoch_base, sizeof w->hub.epoch_base, "%llx", /* this start, in us */
             (unsigned long long)(ev_time() * 1e6));
    hub_init(&w->evhub, conn_evhub_deliver, w, 1, key);
    if (!w->rbuf || !w->tlsbuf || !w->req ||
        ((cfg->max_conns_per_ip || cfg->ip_connect_rate) &&
         !(w->ips = ipl_new(cfg->max_conns_per_ip, cfg->ip_connect_rate, key)))) {
        log_error("out of memory");
        return false;
    }
    return true;
}

/* ---- what presence asks of the worker ---- */

static void pres_each_member(void *ctx, presence_member_fn emit, void *arg)
{
    session_each_member(ctx, emit, arg);
}

static const char *pres_direct(void *ctx, uint64_t local, const char *from, ws_span data)
{
    return session_direct(ctx, local, from, data);
}

static void pres_event(void *ctx, ws_span ch, wbuf *frame) { hub_send(&((worker *)ctx)->evhub, ch, frame); }

static presence *start_presence(worker *w)
{
    static const presence_hooks hooks = {pres_each_member, pres_direct, pres_event};
    const presence_cfg pc = {w->loop, w->node_id, (uint32_t)w->cfg->router_shards,
                             w->cfg->heartbeat, w->cfg->router_timeout};
    return presence_new(&pc, w->bus, &hooks, w);
}

/* With --redis: the bus and presence. The exit code when that fails (2: a bad address), else 0. */
static int start_bus(worker *w)
{
    const config *cfg = w->cfg;
    if (!rlink_opts_enabled(&cfg->redis))
        return 0;
    const bus_history history = {(uint32_t)cfg->history_size, (uint32_t)cfg->history_ttl};
    w->bus = bus_new(w->loop, &cfg->redis, &history, w->node_id, on_bus_message,
                     on_bus_resubscribe, w);
    if (!w->bus)
        return 2;
    w->hub.on_active = on_channel_active;
    if (!(w->pres = start_presence(w))) {
        log_error("out of memory");
        return 1;
    }
    w->hub.on_member = session_member_changed;
    return 0;
}

static void start_watchers(worker *w)
{
    struct ev_loop *loop = w->loop;
    ev_io_init(&w->accept_w, on_accept, w->lfd, EV_READ);
    w->accept_w.data = w;
    ev_io_start(loop, &w->accept_w);
    ev_init(&w->accept_pause, on_accept_pause);
    w->accept_pause.data = w;
    double iv = tick_interval(w->cfg);
    ev_timer_init(&w->tick, on_tick, iv, iv);
    w->tick.data = w;
    ev_timer_start(loop, &w->tick);
    ev_timer_init(&w->overload_w, on_overload_check, OVERLOAD_CHECK, OVERLOAD_CHECK);
    w->overload_w.data = w;
    ev_timer_start(loop, &w->overload_w);
    ev_prepare_init(&w->flush_w, on_prepare);
    w->flush_w.data = w;
    ev_prepare_start(loop, &w->flush_w);
    ev_signal_init(&w->sigterm_w, on_stop_signal, SIGTERM);
    w->sigterm_w.data = w;
    ev_signal_start(loop, &w->sigterm_w);
    ev_signal_init(&w->sigint_w, on_stop_signal, SIGINT);
    w->sigint_w.data = w;
    ev_signal_start(loop, &w->sigint_w);
}

/* The loop stopped: free the connections closed last, let presence's last leaves go out. */
static void finish(worker *w)
{
    conn_flush_pending(w); /* frees connections closed in the last iteration */
    if (w->pres) { /* the last leaves: give Redis a moment to take them, so the router need not
                    * wait for the heartbeat timeout */
        presence_flush(w->pres);
        ev_timer last;
        ev_timer_init(&last, on_last_words, 0.2, 0);
        ev_timer_start(w->loop, &last);
        ev_run(w->loop, 0); /* connections still closing are served meanwhile */
        conn_flush_pending(w);
    }
    /* Only now: connections still open use the anonymous grant, the address table and the
     * files until the loop stops for the last time. */
    files_free(w->files);
    auth_free(w->auth);
    ipl_free(w->ips);
    log_info("worker exiting: %llu accepted, %llu messages in, %llu out",
             (unsigned long long)w->st->accepted, (unsigned long long)w->st->messages_in,
             (unsigned long long)w->st->messages_out);
}

int process_run(worker *w, const config *cfg, int index, worker_stats *shared)
{
    memset(w, 0, sizeof *w);
    w->cfg = cfg;
    w->index = index;
    w->all = shared;
    w->st = &shared[index];
    w->st->overloaded = 0; /* a restarted worker starts with none of its predecessor's clients */
    char who[16];
    snprintf(who, sizeof who, "w%d", index);
    log_setup(cfg->log_level, who);
    signal(SIGPIPE, SIG_IGN);

    w->loop = ev_default_loop(EVFLAG_AUTO);
    /* SIGHUP's default action kills; the master sets it to SIG_IGN in the child before
     * unblocking it, and this watcher takes over before the certificate is first loaded, so a
     * SIGHUP arriving from here on is a reload once the loop runs, never a death. */
    ev_signal_init(&w->sighup_w, on_reload_signal, SIGHUP);
    w->sighup_w.data = w;
    ev_signal_start(w->loop, &w->sighup_w);
    make_node_id(w);
    if (!open_resources(w))
        return 2;
    if (!make_state(w))
        return 1;
    int rc = start_bus(w);
    if (rc)
        return rc;
    start_watchers(w);
    log_info("listening on %s:%d%s as node %s%s", cfg->bind, cfg->port, w->tls ? " (TLS)" : "",
             w->node_id, cfg->echo ? ", /echo on" : "");
    ev_run(w->loop, 0);
    if (w->draining)
        drain_done(w);
    finish(w);
    return 0;
}
