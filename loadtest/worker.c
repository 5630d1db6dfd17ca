/* wsload worker: one process, one libev loop, its share of the connections. It opens them
 * (lconn), runs the scenario once the parent says go (scenario), and reports a tick a second
 * and a final tally over its pipe. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "lconn.h"
#include "resume.h"
#include "scenario.h"
#include "wk.h"
#include "wsload.h"

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

/* Writes one report (and, for a fanout's FINAL, the channel tallies) to the parent. */
static void send_report(wk *w, int kind)
{
    const opts *o = w->o;
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
    if (kind == R_FINAL && o->scenario == SC_RECONNECT) {
        resume_count_pending(w);
        r.c = w->c;
        r.rec = w->rec;
    }
    uint32_t nchan = 0;
    if (kind == R_FINAL && SC_HAS_CHANNELS(o->scenario))
        for (int i = 0; i < o->channels; i++)
            nchan += w->published[i] || w->subs_on[i];
    r.nchan = nchan;
    write_all(w->report_fd, &r, sizeof r);
    if (nchan) {
        for (int i = 0; i < o->channels; i++) {
            if (!w->published[i] && !w->subs_on[i])
                continue;
            chan_tally t = {(uint32_t)i, w->subs_on[i], w->published[i]};
            write_all(w->report_fd, &t, sizeof t);
        }
    }
}

/* Every second: handshake deadlines, READY once every connection settled, a TICK report. */
static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    wk *w = t->data;
    const opts *o = w->o;
    uint64_t now = now_ns();
    /* Handshake deadlines. */
    for (size_t i = 0; i < w->launched_upto; i++) {
        lconn *c = &w->conns[i];
        if ((c->state == LC_CONNECTING || c->state == LC_TLS || c->state == LC_HANDSHAKE) &&
            now - c->t_start > (uint64_t)(o->handshake_timeout * 1e9))
            lconn_close(c, c->state == LC_CONNECTING ? F_CONNECT_TIMEOUT : F_HANDSHAKE_TIMEOUT);
        else if (c->state == LC_OPEN && c->role == ROLE_SUB && !c->ready &&
                 now - c->t_start > (uint64_t)(o->handshake_timeout * 1e9))
            lconn_close(c, F_PROTOCOL); /* subscribed but never acked: do not hold up the start */
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
    const opts *o = w->o;
    uint64_t now = now_ns();
    if (w->c.received != w->drain_seen) {
        w->drain_seen = w->c.received;
        w->drain_quiet_since = now;
    }
    if (now - w->drain_start >= (uint64_t)(o->drain * 1e9) || now - w->drain_quiet_since >= 500000000ull)
        on_final(loop, t, revents);
}

static void on_poll_due(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    lconn_poll_due(t->data);
}

/* The run's time is up: stop sending, then drain (fanout, echo) or finish. */
static void on_stop_sending(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    wk *w = t->data;
    const opts *o = w->o;
    w->sending = false;
    ev_timer_stop(loop, &w->storm_w);
    if (o->scenario == SC_CONNECT || o->scenario == SC_CHURN) {
        on_final(loop, t, revents);
        return;
    }
    w->drain_start = w->drain_quiet_since = now_ns();
    w->drain_seen = w->c.received;
    ev_timer_init(&w->final_w, on_drain_check, 0.25, 0.25);
    w->final_w.data = w;
    ev_timer_start(loop, &w->final_w);
}

/* The parent said go: the run starts, with its timers. */
static void go(wk *w)
{
    const opts *o = w->o;
    struct ev_loop *loop = w->loop;
    w->going = true;
    w->sending = true;
    w->t_go = now_ns();
    /* Ticks count whole seconds from go, so interval k is exactly second k of the run. */
    ev_timer_stop(loop, &w->tick_w);
    ev_timer_set(&w->tick_w, 1.0, 1.0);
    ev_timer_start(loop, &w->tick_w);
    if (o->scenario == SC_CONNECT)
        ev_timer_stop(loop, &w->pace_w); /* every connection is open: nothing to pace */
    hist_reset(&w->lat);
    hist_reset(&w->lat_tick);
    double run = o->scenario == SC_CONNECT ? o->hold : o->duration;
    ev_timer_init(&w->stop_w, on_stop_sending, run, 0);
    w->stop_w.data = w;
    ev_timer_start(loop, &w->stop_w);
    if (o->rate > 0 && o->scenario != SC_CONNECT) {
        ev_timer_init(&w->pace_w, scenario_on_pace, 0.001, 0.001);
        w->pace_w.data = w;
        ev_timer_start(loop, &w->pace_w);
    }
    if (o->transport == TR_INTERVAL) { /* runs through the drain: the last polls count too */
        ev_timer_init(&w->poll_w, on_poll_due, 0.01, 0.01);
        w->poll_w.data = w;
        ev_timer_start(loop, &w->poll_w);
    }
    if (o->scenario == SC_CHURN && o->storm) {
        ev_timer_init(&w->storm_w, scenario_on_storm, o->storm_every, o->storm_every);
        w->storm_w.data = w;
        ev_timer_start(loop, &w->storm_w);
    }
    if (o->scenario == SC_RECONNECT) { /* stopped with the sending; a delayed resume goes on */
        double every = o->reconnect_every > 0 ? o->reconnect_every : 0.05; /* 0: watch for drops */
        ev_timer_init(&w->storm_w, resume_on_timer, every, every);
        w->storm_w.data = w;
        ev_timer_start(loop, &w->storm_w);
    }
}

/* The parent's one-byte commands: 'g' go, 'q' (or the pipe closing) stop now. */
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
    if (cmd == 'g' && !w->going)
        go(w);
}

/* ---- the loop ----------------------------------------------------------------------------- */

/* Before the loop sleeps: top senders up (max rate), write every pending connection, and
 * launch more connections (paced for connect at a rate). */
static void on_flush(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)loop;
    (void)revents;
    wk *w = p->data;
    const opts *o = w->o;
    if (w->sending && o->rate == 0 && o->scenario != SC_CHURN && o->scenario != SC_CONNECT)
        scenario_top_up(w);
    for (ws_list *n; (n = ws_list_first(&w->pending)) != NULL;) {
        ws_list_remove(n);
        lconn_flush(ws_container_of(n, lconn, pending));
    }
    size_t upto = w->nconns;
    if (o->scenario == SC_CONNECT && o->rate > 0) {
        double elapsed = (double)(now_ns() - w->t_begin) / 1e9;
        upto = (size_t)(elapsed * o->rate / o->workers) + 1;
    }
    lconn_launch(w, upto);
}

/* ---- setup -------------------------------------------------------------------------------- */

/* This worker's share of the connections: global numbers g with g % workers == index,
 * subscribers first (so they are subscribed before publishers count as ready). */
static void setup_conns(wk *w)
{
    const opts *o = w->o;
    int W = o->workers, index = w->index;
    bool fanout = SC_HAS_CHANNELS(o->scenario);
    size_t n = 0;
    for (int g = index; fanout && g < o->subscribers; g += W)
        n++;
    for (int g = index; fanout && g < o->publishers; g += W)
        n++;
    for (int g = index; !fanout && g < o->connections; g += W)
        n++;
    w->nconns = n;
    w->conns = calloc(n ? n : 1, sizeof *w->conns);
    if (fanout) {
        w->published = calloc((size_t)o->channels, sizeof *w->published);
        w->subs_on = calloc((size_t)o->channels, sizeof *w->subs_on);
    }
    size_t k = 0;
    for (int g = index; fanout && g < o->subscribers; g += W) {
        lconn *c = &w->conns[k++];
        c->role = ROLE_SUB;
        c->gid = (uint32_t)g;
        c->channel = (uint32_t)(g % o->channels);
        c->tr = calloc((size_t)o->publishers, sizeof *c->tr);
        for (int p = 0; p < o->publishers; p++)
            c->tr[p].next = 1;
    }
    w->first_sender = k;
    for (int g = index; fanout && g < o->publishers; g += W) {
        lconn *c = &w->conns[k++];
        c->role = ROLE_PUB;
        c->gid = (uint32_t)g;
        c->use_pub_url = o->has_pub_url;
        c->http = o->has_pub_url && o->pub_url.http;
        c->next_ch = (uint32_t)(g % o->channels);
        c->pubseq = calloc((size_t)o->channels, sizeof *c->pubseq);
    }
    for (int g = index; !fanout && g < o->connections; g += W) {
        lconn *c = &w->conns[k++];
        c->role = o->scenario == SC_ECHO ? ROLE_ECHO : ROLE_HOLD;
        c->gid = (uint32_t)g;
        c->tr = calloc(1, sizeof *c->tr);
        c->tr[0].next = 1;
    }
    for (size_t i = 0; i < w->nconns; i++) {
        w->conns[i].io.fd = -1;
        w->conns[i].w = w;
    }
    w->rate_per_conn = fanout ? o->rate / o->publishers : o->rate;
}

/* The worker's watchers: the parent's commands, the tick, the flush before sleeping. */
static void setup_watchers(wk *w)
{
    const opts *o = w->o;
    ev_io_init(&w->control_w, on_control, w->control_fd, EV_READ);
    w->control_w.data = w;
    ev_io_start(w->loop, &w->control_w);
    ev_timer_init(&w->tick_w, on_tick, 1.0, 1.0);
    w->tick_w.data = w;
    ev_timer_start(w->loop, &w->tick_w);
    ev_prepare_init(&w->flush_w, on_flush);
    w->flush_w.data = w;
    ev_prepare_start(w->loop, &w->flush_w);
    ev_init(&w->storm_w, scenario_on_storm);
    w->storm_w.data = w;
    /* The connect scenario at a rate: on_flush paces lconn_launch(), woken by this timer. */
    if (o->scenario == SC_CONNECT && o->rate > 0) {
        ev_timer_init(&w->pace_w, scenario_on_pace, 0.001, 0.001);
        w->pace_w.data = w;
        ev_timer_start(w->loop, &w->pace_w);
    }
}

int worker_main(const opts *o, int index, int report_fd, int control_fd)
{
    static wk w;
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
    ws_list_init(&w.pending);
    w.rbuf = malloc(65536);
    w.tlsbuf = malloc(SOCK_TLS_CHUNK);
    if (!w.rbuf || !w.tlsbuf) {
        fprintf(stderr, "wsload: out of memory\n");
        return 1;
    }
    if (o->target.tls || (o->has_pub_url && o->pub_url.tls)) {
        w.tls = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(w.tls, SSL_VERIFY_NONE, NULL); /* load tests: self-signed is the norm */
        SSL_CTX_set_mode(w.tls, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
    scenario_init(&w);
    setup_conns(&w);
    setup_watchers(&w);
    w.t_begin = now_ns();
    lconn_launch(&w, o->scenario == SC_CONNECT && o->rate > 0 ? 1 : w.nconns);
    if (w.nconns == 0) {
        w.ready_sent = true;
        send_report(&w, R_READY);
    }
    ev_run(w.loop, 0);
    return 0;
}
