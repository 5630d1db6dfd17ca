#include "scenario.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lconn.h"
#include "resume.h"

#define MARK "wsl:" /* a measured message carries MARK<publisher>:<seq>:<send time ns>: */

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
    const opts *o = w->o;
    const char *s = (const char *)m, *end = s + n;
    if (o->proto != PR_TEMPLATE || !w->tpl_prefix[0]) {
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
        *pub = v[1] % (uint64_t)o->publishers;
        *seq = v[1] / (uint64_t)o->publishers;
    }
    return true;
}

void scenario_on_message(lconn *c, const uint8_t *m, size_t n)
{
    wk *w = c->w;
    const opts *o = w->o;
    uint64_t pub, seq, ts;
    bool resuming = o->scenario == SC_RECONNECT && c->role == ROLE_SUB;
    if (!find_marker(w, m, n, &pub, &seq, &ts)) {
        w->c.other_frames++;
        if (resuming && resume_on_frame(c, m, n))
            return;
        if (o->proto == PR_WSFAN && n > 12 && memmem(m, n, "\"op\":\"err\"", 10))
            w->c.errs++;
        if (c->role == ROLE_SUB && !c->ready && memmem(m, n, "\"op\":\"ack\"", 10)) {
            w->subs_on[c->channel]++;
            lconn_settle(c);
        }
        return;
    }
    uint64_t now = now_ns();
    w->c.received++;
    if (w->going && ts <= now) {
        hist_add(&w->lat, now - ts);
        hist_add(&w->lat_tick, now - ts);
    }
    if (resuming)
        resume_on_msg(c, m, n);
    if (c->role == ROLE_ECHO)
        track_seq(&w->c, &c->tr[0], seq);
    else if (c->role == ROLE_SUB && pub < (uint64_t)o->publishers)
        track_seq(&w->c, &c->tr[pub], seq);
}

/* ---- sending ------------------------------------------------------------------------------ */

static void send_sub(lconn *c)
{
    const opts *o = c->w->o;
    char msg[512];
    if (o->scenario == SC_RECONNECT) {
        resume_send_sub(c);
    } else if (o->proto == PR_WSFAN) {
        int n = snprintf(msg, sizeof msg, "{\"op\":\"sub\",\"ch\":\"ch.%u\",\"id\":1}", c->channel);
        lconn_send_frame(c, WS_OP_TEXT, msg, (size_t)n);
    } else if (o->sub_template) {
        size_t n = opts_expand_ch(msg, sizeof msg, o->sub_template, c->channel);
        lconn_send_frame(c, WS_OP_TEXT, msg, n);
    }
}

void scenario_on_ready(lconn *c)
{
    wk *w = c->w;
    const opts *o = w->o;
    if (c->role == ROLE_SUB) {
        if (o->transport == TR_WS)
            send_sub(c); /* a stream or poll names its channel in its URL */
        if (o->proto != PR_WSFAN || o->transport != TR_WS) { /* no ack to wait for */
            w->subs_on[c->channel]++;
            lconn_settle(c);
        }
        return;
    }
    lconn_settle(c);
}

/* Writes the template's publish text for c into buf: placeholders filled in, {pad} up to
 * --size. Returns its length. */
static size_t build_template(const lconn *c, char *buf, size_t cap, uint32_t ch, uint64_t seq,
                             uint64_t ts, const char *marker, size_t pad)
{
    const opts *o = c->w->o;
    size_t n = 0;
    uint64_t gseq = c->w->tpl_prefix[2] ? seq : seq * (uint64_t)o->publishers + c->gid;
    for (const char *p = o->pub_template; *p && n + 128 < cap; p++) { /* room for a marker */
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

/* Builds one measured message for publisher/echo connection c into buf; returns its length. */
static size_t build_message(const lconn *c, char *buf, size_t cap, uint32_t ch, uint64_t seq)
{
    const opts *o = c->w->o;
    uint64_t ts = now_ns();
    char marker[96];
    int mn = snprintf(marker, sizeof marker, MARK "%u:%llu:%llu:", c->gid, (unsigned long long)seq,
                      (unsigned long long)ts);
    size_t pad = (size_t)o->size > (size_t)mn ? (size_t)o->size - (size_t)mn : 0;
    if (o->proto == PR_TEMPLATE)
        return build_template(c, buf, cap, ch, seq, ts, marker, pad);
    size_t n = 0;
    bool wrap = o->proto == PR_WSFAN && c->role == ROLE_PUB;
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

static void publish_one(lconn *c)
{
    wk *w = c->w;
    const opts *o = w->o;
    static char buf[1 << 20];
    uint32_t ch;
    uint64_t seq;
    if (c->role == ROLE_ECHO) {
        ch = 0;
        seq = ++c->sent;
    } else {
        ch = c->next_ch;
        c->next_ch = (c->next_ch + 1) % (uint32_t)o->channels;
        seq = ++c->pubseq[ch];
        c->sent++;
        w->published[ch]++;
    }
    size_t n = build_message(c, buf, sizeof buf, ch, seq);
    if (c->http) {
        char path[1100], head[1600];
        opts_expand_ch(path, sizeof path, o->pub_url.path, ch);
        int hn = snprintf(head, sizeof head,
                          "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\n\r\n",
                          path, o->pub_url.host, o->pub_url.port, n);
        if (hn < 0 || (size_t)hn >= sizeof head)
            hn = (int)sizeof head - 1;
        lconn_send_raw(c, head, (size_t)hn);
        lconn_send_raw(c, buf, n);
        c->inflight++;
    } else {
        lconn_send_frame(c, WS_OP_TEXT, buf, n);
    }
    w->c.sent++;
}

static bool is_sender(const lconn *c)
{
    return c->state == LC_OPEN && (c->role == ROLE_PUB || c->role == ROLE_ECHO);
}

/* Churn at a rate: closes (and reopens) connections picked at random until the due number
 * of reconnects is reached; a failed reconnect is tried again. */
static void churn(wk *w, double elapsed)
{
    const opts *o = w->o;
    if (w->nconns == 0)
        return;
    uint64_t due = (uint64_t)(elapsed * o->rate / o->workers);
    for (int k = 0; w->done_churn < due && k < 10000; k++) {
        lconn *c = &w->conns[wk_rnd(w) % w->nconns];
        w->done_churn++;
        if (c->state == LC_DEAD) { /* a reconnect that failed: try it again */
            c->t_closed = now_ns();
            lconn_start(w, c);
            continue;
        }
        if (c->state != LC_OPEN)
            continue;
        uint8_t p[2] = {0x03, 0xE8};
        lconn_send_frame(c, WS_OP_CLOSE, p, 2);
        lconn_flush(c);
        lconn_close(c, -1);
        c->t_closed = now_ns();
        lconn_start(w, c);
    }
}

void scenario_on_pace(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    wk *w = t->data;
    const opts *o = w->o;
    if (!w->sending)
        return;
    double elapsed = (double)(now_ns() - w->t_go) / 1e9;
    if (o->scenario == SC_CHURN) {
        churn(w, elapsed);
        return;
    }
    uint64_t due = (uint64_t)(elapsed * w->rate_per_conn);
    for (size_t i = w->first_sender; i < w->nconns; i++) {
        lconn *c = &w->conns[i];
        if (!is_sender(c))
            continue;
        for (int k = 0; c->sent < due && k < 1000; k++) {
            if (c->http && c->inflight >= o->pipeline)
                break;
            publish_one(c);
        }
    }
}

/* Max rate: keep every sender's queue topped up (called before the loop sleeps). */
void scenario_top_up(wk *w)
{
    const opts *o = w->o;
    for (size_t i = w->first_sender; i < w->nconns; i++) {
        lconn *c = &w->conns[i];
        if (!is_sender(c))
            continue;
        while (c->out_len - c->out_off < OUT_HIGH / 2 && !(c->http && c->inflight >= o->pipeline))
            publish_one(c);
    }
}

void scenario_on_storm(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    wk *w = t->data;
    uint64_t now = now_ns();
    for (size_t i = 0; i < w->nconns; i++) {
        lconn *c = &w->conns[i];
        if (c->state != LC_OPEN)
            continue;
        lconn_close(c, -1);
        c->t_closed = now;
        c->state = LC_IDLE;
    }
    w->launched_upto = 0; /* relaunch them, LAUNCH_INFLIGHT at a time */
    lconn_launch(w, w->nconns);
}

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


void scenario_init(wk *w)
{
    const opts *o = w->o;
    if (o->proto == PR_TEMPLATE && o->pub_template && !strstr(o->pub_template, "{msg}")) {
        w->tpl_prefix[0] = prefix_of(o->pub_template, "{ts}");
        w->tpl_prefix[1] = prefix_of(o->pub_template, "{seq}");
        w->tpl_prefix[2] = prefix_of(o->pub_template, "{pub}");
    }
    w->on_ready = scenario_on_ready;
    w->on_message = scenario_on_message;
}
