#include "xport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_http.h"
#include "ws_json.h"

#define XP_HEAD_MAX 16384
#define XP_BODY_MAX (64u << 20) /* a poll answer larger than this is not one wsnode sends */

size_t xport_request(const lconn *c, const url *u, char *out, size_t cap)
{
    char path[1100], query[128] = "";
    opts_expand_ch(path, sizeof path, u->path, c->channel);
    const char *sep = strchr(path, '?') ? "&" : "?";
    int n = 0;
    if (c->w->o->transport == TR_SSE)
        return (size_t)snprintf(out, cap, "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: "
                                "text/event-stream\r\n\r\n", path, u->host, u->port);
    if (c->w->o->transport == TR_ETAG_POLL) {
        n = c->lm[0] ? snprintf(out, cap, "GET %s HTTP/1.1\r\nHost: %s:%d\r\nIf-Modified-Since: %s"
                                "\r\nIf-None-Match: %s\r\n\r\n", path, u->host, u->port, c->lm, c->etag)
                     : snprintf(out, cap, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", path, u->host,
                                u->port);
        return n > 0 && (size_t)n < cap ? (size_t)n : 0;
    }
    if (c->since_len) { /* the position the last answer gave */
        n = snprintf(query, sizeof query, "%ssince=%.*s", sep, (int)c->since_len, c->since);
        sep = "&";
    }
    if (c->w->o->transport == TR_INTERVAL) /* a plain poll: answered at once */
        snprintf(query + n, sizeof query - (size_t)n, "%swait=0", sep);
    n = snprintf(out, cap, "GET %s%s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", path, query, u->host,
                 u->port);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* Keeps buf[0..n) after what c->msg holds; false when out of memory. */
static bool keep(lconn *c, const uint8_t *buf, size_t n)
{
    if (c->msg_len + n > c->msg_cap) {
        size_t cap = c->msg_cap ? c->msg_cap : 4096;
        while (cap < c->msg_len + n)
            cap *= 2;
        uint8_t *p = realloc(c->msg, cap);
        if (!p)
            return false;
        c->msg = p;
        c->msg_cap = cap;
    }
    memcpy(c->msg + c->msg_len, buf, n);
    c->msg_len += n;
    return true;
}

static void consume(lconn *c, size_t n)
{
    memmove(c->msg, c->msg + n, c->msg_len - n);
    c->msg_len -= n;
}

/* The head at c->msg, if whole: its length, 0 if not yet, -1 if not a 200. */
static long head(lconn *c, ws_http_resp *resp)
{
    static const ws_http_limits lim = {XP_HEAD_MAX, WS_HTTP_HEADERS_CAP};
    int h = ws_http_parse_response((const char *)c->msg, c->msg_len, 0, &lim, resp);
    if (h == WS_HTTP_PARTIAL)
        return 0;
    return h > 0 && resp->status == 200 ? h : -1;
}

/* Whole events in c->msg: each one's data lines (joined by LF) to on_message. */
static void sse_events(lconn *c)
{
    size_t at = 0;
    for (;;) {
        uint8_t *end = memmem(c->msg + at, c->msg_len - at, "\n\n", 2);
        if (!end)
            break;
        char data[65536];
        size_t dn = 0;
        for (uint8_t *line = c->msg + at; line <= end;) {
            uint8_t *nl = memchr(line, '\n', (size_t)(end + 1 - line));
            size_t len = (size_t)(nl - line);
            if (len >= 6 && memcmp(line, "data: ", 6) == 0 && dn + len < sizeof data) {
                if (dn)
                    data[dn++] = '\n';
                memcpy(data + dn, line + 6, len - 6);
                dn += len - 6;
            }
            line = nl + 1;
        }
        at = (size_t)(end + 2 - c->msg);
        if (dn && c->state != LC_DEAD)
            c->w->on_message(c, (const uint8_t *)data, dn);
    }
    consume(c, at);
}

typedef struct poll_answer {
    ws_span messages, since;
} poll_answer;

static int answer_member(void *ctx, const char *key, size_t kl, const char *v, size_t vl)
{
    poll_answer *a = ctx;
    if (kl == 8 && memcmp(key, "messages", 8) == 0)
        a->messages = (ws_span){v, vl};
    else if (kl == 5 && memcmp(key, "since", 5) == 0 && vl >= 2)
        a->since = (ws_span){v + 1, vl - 2};
    return 0;
}

/* One whole poll answer body: its messages to on_message, its token kept for the next. */
static bool poll_body(lconn *c, const char *b, size_t n)
{
    poll_answer a = {{NULL, 0}, {NULL, 0}};
    if (ws_json_object(b, n, answer_member, &a) < 0 || !a.messages.n || a.since.n > sizeof c->since)
        return false;
    memcpy(c->since, a.since.p, a.since.n);
    c->since_len = (uint8_t)a.since.n;
    const char *p = a.messages.p + 1, *end = a.messages.p + a.messages.n - 1;
    while (p < end && c->state != LC_DEAD) {
        while (p < end && (*p == ',' || *p == ' '))
            p++;
        size_t e = ws_json_skip(p, (size_t)(end - p), 0);
        if (!e)
            break;
        c->w->on_message(c, (const uint8_t *)p, e);
        p += e;
    }
    return true;
}

/* Keeps header name of resp (when it fits) as a C string in out. */
static void keep_header(const ws_http_resp *resp, const char *name, char *out, size_t cap)
{
    const ws_span *v = ws_http_resp_get(resp, name);
    if (v && v->n < cap) {
        memcpy(out, v->p, v->n);
        out[v->n] = '\0';
    }
}

/* One whole answer of an Etag long-poll at c->msg: 200 is a message, 304 and 408 none (the
 * poll timed out). Returns its length, 0 if incomplete, -1 for anything else. */
static long etag_answer(lconn *c)
{
    static const ws_http_limits lim = {XP_HEAD_MAX, WS_HTTP_HEADERS_CAP};
    ws_http_resp resp;
    int h = ws_http_parse_response((const char *)c->msg, c->msg_len, 0, &lim, &resp);
    if (h == WS_HTTP_PARTIAL)
        return c->msg_len > XP_HEAD_MAX ? -1 : 0;
    int64_t body = resp.content_length < 0 ? 0 : resp.content_length;
    if (h < 0 || resp.chunked || body > XP_BODY_MAX ||
        (resp.status != 200 && resp.status != 304 && resp.status != 408))
        return -1;
    if (c->msg_len < (size_t)h + (size_t)body)
        return 0;
    keep_header(&resp, "Last-Modified", c->lm, sizeof c->lm);
    keep_header(&resp, "Etag", c->etag, sizeof c->etag);
    if (resp.status == 200 && body)
        c->w->on_message(c, c->msg + h, (size_t)body);
    return h + (long)body;
}

int xport_read(lconn *c, const uint8_t *buf, size_t n)
{
    ws_http_resp resp;
    int out = 0;
    if (!keep(c, buf, n))
        return XP_ERROR;
    if (c->w->o->transport == TR_SSE) {
        if (!c->xp_open) {
            long h = head(c, &resp);
            if (h <= 0)
                return h < 0 || c->msg_len > XP_HEAD_MAX ? XP_ERROR : 0;
            consume(c, (size_t)h);
            c->xp_open = true;
            out = XP_OPENED;
        }
        sse_events(c);
        return out;
    }
    if (c->w->o->transport == TR_ETAG_POLL) { /* opened when the first poll was sent */
        long a = etag_answer(c);
        if (a > 0)
            consume(c, (size_t)a);
        return a < 0 ? XP_ERROR : a > 0 ? XP_ANSWERED : 0;
    }
    long h = head(c, &resp);
    if (h < 0 || (h == 0 && c->msg_len > XP_HEAD_MAX) ||
        (h > 0 && (resp.content_length < 0 || resp.content_length > XP_BODY_MAX)))
        return XP_ERROR;
    if (h == 0 || c->msg_len < (size_t)h + (size_t)resp.content_length)
        return 0;
    if (!poll_body(c, (const char *)c->msg + h, (size_t)resp.content_length))
        return XP_ERROR;
    consume(c, (size_t)h + (size_t)resp.content_length);
    out = XP_ANSWERED | (c->xp_open ? 0 : XP_OPENED);
    c->xp_open = true;
    return out;
}
