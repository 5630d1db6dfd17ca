#include "resume.h"

#include <stdio.h>
#include <string.h>

#include "lconn.h"
#include "ws_json.h"

/* The number after key (e.g. "seq":) in m[0..n); false if there is none. */
static bool field_u64(const uint8_t *m, size_t n, const char *key, uint64_t *v)
{
    return ws_json_u64_after((const char *)m, n, key, v);
}

/* Keeps the "epoch":"..." of m[0..n) as c's epoch, when there is one that fits. */
static void take_epoch(lconn *c, const uint8_t *m, size_t n)
{
    const char *e;
    size_t len;
    if (!ws_json_str_after((const char *)m, n, "\"epoch\":\"", &e, &len) || len > sizeof c->epoch)
        return;
    c->epoch_len = (uint8_t)len;
    memcpy(c->epoch, e, len);
}

/* c's channel stream starts over after seq s: everything up to s counts as seen. */
static void chan_restart(lconn *c, uint64_t s)
{
    c->chan.next = s + 1;
    c->chan.window = ~0ull;
}

void resume_send_sub(lconn *c)
{
    char msg[256];
    int n;
    if (!c->t_resume)
        n = snprintf(msg, sizeof msg, "{\"op\":\"sub\",\"ch\":\"ch.%u\",\"id\":1}", c->channel);
    else if (c->epoch_len) /* an epoch of "" is no epoch: since then counts in the current one */
        n = snprintf(msg, sizeof msg, "{\"op\":\"sub\",\"ch\":\"ch.%u\",\"since\":%llu,\"epoch\":\"%.*s\",\"id\":2}",
                     c->channel, (unsigned long long)(c->chan.next - 1), (int)c->epoch_len, c->epoch);
    else
        n = snprintf(msg, sizeof msg, "{\"op\":\"sub\",\"ch\":\"ch.%u\",\"since\":%llu,\"id\":2}",
                     c->channel, (unsigned long long)(c->chan.next - 1));
    lconn_send_frame(c, WS_OP_TEXT, msg, (size_t)n);
}

/* The ack of a resume: timed, counted recovered or not; when not, what was gone is counted
 * and the stream starts over after the ack's seq (nothing is replayed). */
static void resumed(lconn *c, const uint8_t *m, size_t n)
{
    wk *w = c->w;
    uint64_t now = now_ns(), seq = 0;
    hist_add(&w->rec, now - c->t_resume);
    c->t_resume = 0;
    w->c.resumes++;
    bool have_seq = field_u64(m, n, "\"seq\":", &seq);
    if (memmem(m, n, "\"recovered\":true", 16)) {
        w->c.recovered++;
    } else {
        w->c.not_recovered++;
        uint64_t since = c->chan.next - 1;
        if (have_seq && seq > since)
            w->c.skipped += seq - since;
        if (have_seq)
            chan_restart(c, seq);
    }
    take_epoch(c, m, n);
}

bool resume_on_frame(lconn *c, const uint8_t *m, size_t n)
{
    wk *w = c->w;
    uint64_t seq = 0;
    if (memmem(m, n, "\"op\":\"reset\"", 12)) {
        w->c.resets++;
        if (field_u64(m, n, "\"seq\":", &seq))
            chan_restart(c, seq);
        take_epoch(c, m, n);
        return true;
    }
    if (!memmem(m, n, "\"op\":\"ack\"", 10))
        return false;
    if (!c->ready) { /* the first sub: the stream starts after the channel's position */
        field_u64(m, n, "\"seq\":", &seq);
        chan_restart(c, seq);
        take_epoch(c, m, n);
        w->subs_on[c->channel]++;
        lconn_settle(c);
    } else if (c->t_resume) {
        resumed(c, m, n);
    }
    return true;
}

void resume_on_msg(lconn *c, const uint8_t *m, size_t n)
{
    counters *k = &c->w->c;
    track *t = &c->chan;
    uint64_t s;
    if (!field_u64(m, n, "\"seq\":", &s))
        return;
    if (s >= t->next) {
        uint64_t shift = s - t->next + 1;
        k->ch_gaps += s - t->next;
        t->window = shift >= 64 ? 0 : t->window << shift;
        t->window |= 1;
        t->next = s + 1;
        return;
    }
    uint64_t j = t->next - 1 - s;
    if (j < 64 && !(t->window >> j & 1)) { /* a gap counted before, filled late */
        t->window |= 1ull << j;
        k->ch_reordered++;
        k->ch_gaps--;
    } else {
        k->ch_duplicates++;
    }
}

/* Restarts the idle connections, LAUNCH_INFLIGHT handshakes at a time (on_flush goes on);
 * the recovery time of a resume counts from here, not from its close (--reconnect-delay). */
static void relaunch(wk *w)
{
    uint64_t now = now_ns();
    for (size_t i = 0; i < w->first_sender; i++)
        if (w->conns[i].state == LC_IDLE && w->conns[i].t_resume)
            w->conns[i].t_resume = now;
    w->launched_upto = 0;
    lconn_launch(w, w->nconns);
}

static void on_delay(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    relaunch(t->data);
}

void resume_on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    wk *w = t->data;
    const opts *o = w->o;
    uint64_t now = now_ns();
    size_t going = 0;
    for (size_t i = 0; i < w->first_sender; i++) {
        lconn *c = &w->conns[i];
        if (o->reconnect_every > 0 && c->state == LC_OPEN && c->ready && !c->t_resume) {
            uint8_t p[2] = {0x03, 0xE8}; /* 1000 */
            lconn_send_frame(c, WS_OP_CLOSE, p, 2);
            lconn_flush(c);
            lconn_close(c, -1);
            c->t_resume = now;
        } else if (c->state == LC_DEAD && c->chan.next && !c->t_resume) {
            c->t_resume = now; /* closed by the server (or failed): resumes now */
            c->failed_over = o->has_failover;
        }
        if (c->state == LC_DEAD && c->chan.next) { /* subscribed once (set by its first ack) */
            c->state = LC_IDLE;
            going++;
        }
    }
    if (!going && o->reconnect_every <= 0)
        return; /* watching for drops: none this time */
    if (w->o->reconnect_delay <= 0) {
        relaunch(w);
        return;
    }
    ev_timer_stop(loop, &w->resume_w);
    ev_timer_init(&w->resume_w, on_delay, w->o->reconnect_delay, 0);
    w->resume_w.data = w;
    ev_timer_start(loop, &w->resume_w);
}

void resume_count_pending(wk *w)
{
    w->c.resume_pending = 0;
    for (size_t i = 0; i < w->first_sender; i++)
        w->c.resume_pending += w->conns[i].t_resume != 0;
}
