#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "bus.h"
#include "envelope.h"
#include "files.h"
#include "gcra.h"
#include "log.h"
#include "metrics.h"
#include "ws_handshake.h"
#include "ws_json.h"
#include "ws_sse.h"
#include "ws_utf8.h"

#define PROTO_JSON "ws.json.v1"
#define METRICS_BODY_MAX 16384

/* An answer that ends the connection (errors, /healthz). */
static void respond(conn *c, int status, const char *extra, const char *body)
{
    char out[1024];
    conn_respond_copy(c, out, ws_http_response(out, sizeof out, status, extra, NULL, body, strlen(body)));
}

/* ---- POST /publish/<channel>: backends publish without a WebSocket ------------------------ */

static void http_published(conn *c, uint64_t seq)
{
    if (!seq) {
        respond(c, 503, "Retry-After: 1\r\n", "the Redis bus is unavailable; try again\n");
        return;
    }
    char body[48], out[256];
    int bn = snprintf(body, sizeof body, "{\"seq\":%llu}\n", (unsigned long long)seq);
    conn_respond_copy(c, out, ws_http_response(out, sizeof out, 202, NULL, "application/json", body, (size_t)bn));
}

/* Redis answered the publish of connection arg. */
static void published(void *arg, uint64_t seq)
{
    conn *c = arg;
    conn_release(c);
    if (conn_alive(c))
        http_published(c, seq);
}

/* The body is complete (buf: the channel name, then the body): check it is JSON, publish it. */
static void publish_body(conn *c, uint8_t *buf, size_t len)
{
    worker *w = conn_worker(c);
    size_t ch_len = strnlen((const char *)buf, len); /* the name is followed by its NUL */
    ws_span ch = {(const char *)buf, ch_len};
    ws_span data = {(const char *)buf + ch_len + 1, len - ch_len - 1};
    if (!ws_utf8_valid((const uint8_t *)data.p, data.n) || !ws_json_valid(data.p, data.n)) {
        log_info("client %llx: POST /publish body is not JSON", conn_id(c));
        respond(c, 400, NULL, "the body must be one JSON value (UTF-8)\n");
        return;
    }
    if (worker_overloaded(w)) {
        w->st->publish_overloaded++;
        respond(c, 503, "Retry-After: 1\r\n", "overloaded: the node cannot deliver faster now; retry later\n");
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
    if (bus_publish(w->bus, ch, data, published, c) < 0) {
        http_published(c, 0);
        return;
    }
    conn_hold(c);
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

/* POST /publish (what: AUTH_PUB) and GET /history (AUTH_SUB) may go on with this
 * Authorization: 1 (the publish key), 2 (a JWT allowing what on ch), 0 (no or a bad
 * credential), -1 (a valid JWT that does not allow it). */
static int backend_allowed(conn *c, const ws_span *authz, ws_span ch, enum auth_what what)
{
    worker *w = conn_worker(c);
    if (!authz)
        return 0;
    if (w->cfg->publish_key && key_matches(*authz, w->cfg->publish_key))
        return 1;
    if (!w->auth || authz->n < 7 || strncasecmp(authz->p, "Bearer ", 7) != 0)
        return 0;
    char user[CLUSTER_USER_MAX + 1];
    auth_grant *g;
    const char *why;
    if (auth_check(w->auth, authz->p + 7, authz->n - 7, ev_now(w->loop), user, &g, &why) < 0) {
        log_info("client %llx: backend request: token refused: %s", conn_id(c), why);
        return 0;
    }
    bool ok = auth_may(g, what, ch);
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

/* Answers a backend request that may not go on (method, credentials, rate) and returns true;
 * false when it may. */
static bool backend_refused(conn *c, const ws_http_req *req, ws_span ch, enum auth_what what,
                            const char *method)
{
    worker *w = conn_worker(c);
    int allowed = backend_allowed(c, ws_http_get(req, "Authorization"), ch, what);
    if (!ws_span_eq(req->method, method)) {
        respond(c, 405, what == AUTH_PUB ? "Allow: POST\r\n" : "Allow: GET\r\n", "method not allowed\n");
    } else if (!w->cfg->publish_key && !w->auth) {
        respond(c, 403, NULL, "backend requests are off: start wsnode with --publish-key or --auth\n");
    } else if (allowed == 0) {
        w->st->auth_failures++;
        log_info("client %llx: backend request with a wrong or missing key", conn_id(c));
        respond(c, 401, "WWW-Authenticate: Bearer\r\n", "a valid Authorization: Bearer key is required\n");
    } else if (allowed < 0) {
        w->st->forbidden++;
        respond(c, 403, NULL, "the token does not allow this on this channel\n");
    } else if (!within_publish_rate(w, allowed == 1)) {
        w->st->publish_limited++;
        respond(c, 429, "Retry-After: 1\r\n", "over --publish-rate; try again\n");
    } else {
        return false;
    }
    return true;
}

static void publish_request(conn *c, const ws_http_req *req, ws_span ch)
{
    worker *w = conn_worker(c);
    const config *cfg = w->cfg;
    if (backend_refused(c, req, ch, AUTH_PUB, "POST"))
        return;
    if (!env_channel_valid(ch)) {
        respond(c, 400, NULL, "channel names are 1-200 bytes of [A-Za-z0-9._:-]\n");
    } else if (req->chunked || req->content_length < 0) {
        respond(c, 411, NULL, "Content-Length is required\n");
    } else if ((uint64_t)req->content_length > cfg->max_data) {
        respond(c, 413, NULL, "the body is larger than --max-data\n");
    } else if (req->content_length == 0) {
        respond(c, 400, NULL, "the body must be one JSON value\n");
    } else {
        char prefix[ENV_CHANNEL_MAX + 1]; /* the channel name and its NUL, ahead of the body */
        memcpy(prefix, ch.p, ch.n);
        prefix[ch.n] = '\0';
        conn_read_body(c, req->head_len, (ws_span){prefix, ch.n + 1}, (size_t)req->content_length, publish_body);
    }
}

/* ---- GET /history/<channel>?limit=N: a channel's position and last messages ------------- */

typedef struct history_wait {
    conn *c;
    uint8_t ch_len;
    char ch[ENV_CHANNEL_MAX];
} history_wait;

static void respond_json(conn *c, const char *body, size_t n)
{
    wbuf *b = wbuf_new(n + 512);
    size_t len = b ? ws_http_response((char *)b->data, n + 512, 200, NULL, "application/json",
                                      body, n)
                   : 0;
    if (len) {
        b->len = (uint32_t)len;
        conn_respond(c, b);
    } else {
        respond(c, 503, NULL, "out of memory\n");
    }
    if (b)
        wbuf_unref(b);
}

static void history_answered(void *arg, const bus_position *pos, const bus_stored *msgs, size_t n)
{
    history_wait *h = arg;
    conn *c = h->c;
    conn_release(c);
    size_t len;
    char *text = pos ? session_history_text(false, (ws_span){NULL, 0},
                                            (ws_span){h->ch, h->ch_len}, pos, msgs, n, &len)
                     : NULL;
    if (conn_alive(c) && !pos)
        respond(c, 503, "Retry-After: 1\r\n", "the Redis bus is unavailable; try again\n");
    else if (conn_alive(c) && !text)
        respond(c, 503, NULL, "out of memory\n");
    else if (conn_alive(c))
        respond_json(c, text, len);
    free(text);
    free(h);
}

static void history_request(conn *c, const ws_http_req *req, ws_span ch)
{
    worker *w = conn_worker(c);
    env_req q = {.op = ENV_OP_HISTORY, .ch = ch};
    ws_span v;
    if (backend_refused(c, req, ch, AUTH_SUB, "GET"))
        return;
    if (!env_channel_valid(ch)) {
        respond(c, 400, NULL, "channel names are 1-200 bytes of [A-Za-z0-9._:-]\n");
        return;
    }
    if (ws_http_query_get(req->query, "limit", &v)) {
        uint64_t l = v.n ? 0 : UINT64_MAX;
        for (size_t i = 0; i < v.n && l <= UINT32_MAX; i++)
            l = v.p[i] >= '0' && v.p[i] <= '9' ? l * 10 + (uint64_t)(v.p[i] - '0') : UINT64_MAX;
        if (l > UINT32_MAX) {
            respond(c, 400, NULL, "limit must be an integer from 0 to 2^32-1\n");
            return;
        }
        q.has_limit = true;
        q.limit = (uint32_t)l;
    }
    history_wait *h = malloc(sizeof *h);
    if (!h) {
        respond(c, 503, NULL, "out of memory\n");
        return;
    }
    *h = (history_wait){c, (uint8_t)ch.n, {0}};
    uint32_t limit = session_history_limit(w, &q);
    char *text;
    size_t len;
    if (session_history_memory(w, ch, limit, false, (ws_span){NULL, 0}, &text, &len)) {
        if (text)
            respond_json(c, text, len);
        else
            respond(c, 503, NULL, "out of memory\n");
        free(text);
        free(h);
        return;
    }
    memcpy(h->ch, ch.p, ch.n);
    if (bus_read(w->bus, ch, false, 0, limit, history_answered, h) < 0) {
        free(h);
        respond(c, 503, "Retry-After: 1\r\n", "the Redis bus is unavailable; try again\n");
        return;
    }
    conn_hold(c);
}

/* ---- GET: /healthz, /metrics, --static files ---------------------------------------------- */

static void metrics(conn *c)
{
    worker *w = conn_worker(c);
    char *body = malloc(METRICS_BODY_MAX);
    wbuf *b = wbuf_new(METRICS_BODY_MAX + 1024);
    if (!body || !b) {
        free(body);
        if (b)
            wbuf_unref(b);
        respond(c, 503, NULL, "out of memory\n");
        return;
    }
    size_t bn = metrics_render(w->all, w->cfg->workers, body, METRICS_BODY_MAX);
    size_t n = ws_http_response((char *)b->data, METRICS_BODY_MAX + 1024, 200, NULL,
                                "text/plain; version=0.0.4", body, bn);
    free(body);
    b->len = (uint32_t)n;
    if (n)
        conn_respond(c, b);
    else
        conn_respond_copy(c, NULL, 0); /* did not fit: a programming error */
    wbuf_unref(b);
}

/* --static: a file from memory, or 404. */
static void static_file(conn *c, const ws_http_req *req)
{
    worker *w = conn_worker(c);
    size_t head_len;
    wbuf *b = w->files ? files_get(w->files, req->path, &head_len) : NULL;
    bool get = ws_span_eq(req->method, "GET"), head = ws_span_eq(req->method, "HEAD");
    if (!b)
        respond(c, 404, NULL, "not found\n");
    else if (!get && !head)
        respond(c, 405, "Allow: GET, HEAD\r\n", "method not allowed\n");
    else if (head)
        conn_respond_copy(c, b->data, head_len);
    else
        conn_respond(c, b); /* the shared prebuilt response: no copy */
}

/* ---- the upgrade -------------------------------------------------------------------------- */

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
    worker *w = conn_worker(c);
    w->st->handshakes_failed++;
    w->st->auth_failures++;
    log_info("client %llx: 401: %s", conn_id(c), why); /* never the token */
    respond(c, 401, "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n", "a valid token is required\n");
}

/* Who the client of a /ws upgrade is: with --auth, the token's sub claim and its permissions
 * (or anonymous); without, the ?user= it names (ENV_USER_MAX, a policy). Sets *user (malloc'd
 * or NULL) and *grant. -1: refused (answered). */
static int identify(conn *c, const ws_http_req *req, char **user_out, auth_grant **grant)
{
    worker *w = conn_worker(c);
    ws_span token, user = {"anonymous", 9};
    char sub[CLUSTER_USER_MAX + 1];
    *user_out = NULL;
    *grant = NULL;
    if (w->auth) {
        const char *why;
        if (!bearer_token(req, &token)) {
            if (w->cfg->auth == AUTH_REQUIRED) {
                refuse_token(c, "no token");
                return -1;
            }
            *grant = (auth_grant *)auth_anonymous(w->auth);
            return 0;
        }
        if (auth_check(w->auth, token.p, token.n, ev_now(w->loop), sub, grant, &why) < 0) {
            refuse_token(c, why);
            return -1;
        }
        user = (ws_span){sub, strlen(sub)};
    } else if (ws_http_query_get(req->query, "user", &user)) {
        if (!env_user_valid(user)) {
            w->st->handshakes_failed++;
            log_info("client %llx: bad user id in the upgrade", conn_id(c));
            respond(c, 400, NULL, "user must be 1-64 bytes of [A-Za-z0-9._:@-]\n");
            return -1;
        }
    } else {
        return 0;
    }
    if (!(*user_out = strndup(user.p, user.n))) {
        auth_grant_free(*grant);
        *grant = NULL;
        respond(c, 503, NULL, "out of memory\n");
        return -1;
    }
    return 0;
}

/* /ws or /echo: the handshake checks, who the client is, then the 101. */
static void upgrade(conn *c, const ws_http_req *req, bool echo)
{
    worker *w = conn_worker(c);
    static const char *const json_only[] = {PROTO_JSON};
    ws_hs_opts o = {
        .protocols = echo ? NULL : json_only,
        .nprotocols = echo ? 0 : 1,
        .origins = w->cfg->origins,
        .norigins = (size_t)w->cfg->norigins,
    };
    ws_hs_result r;
    if (ws_handshake_check(req, &o, &r) != 101) {
        w->st->handshakes_failed++;
        log_info("client %llx: handshake refused %d: %s", conn_id(c), r.status, r.reason);
        char out[1024];
        conn_respond_copy(c, out, ws_handshake_error(out, sizeof out, &r));
        return;
    }
    char *user = NULL;
    auth_grant *grant = NULL;
    if (!echo && identify(c, req, &user, &grant) < 0)
        return;
    char out[256];
    size_t n = ws_handshake_response(out, sizeof out, r.accept, r.protocol >= 0 ? o.protocols[r.protocol] : NULL);
    conn_upgrade(c, echo, out, n, req->head_len, user, grant);
}

/* ---- GET /sse and /poll: Server-Sent Events and long-poll ------------------------------------------------- */

/* CORS for a GET a browser makes across origins (no preflight: a simple request): the
 * Access-Control-Allow-Origin lines for req into out, or false (answered 403) when --origin
 * lists origins and this is not one of them. */
static bool cors_allowed(conn *c, const ws_http_req *req, char *out, size_t cap)
{
    const config *cfg = conn_worker(c)->cfg;
    const ws_span *origin = ws_http_get(req, "Origin");
    out[0] = '\0';
    if (!origin)
        return true;
    bool listed = cfg->norigins == 0;
    for (int i = 0; !listed && i < cfg->norigins; i++)
        listed = ws_span_ieq(*origin, cfg->origins[i]);
    if (!listed || origin->n > 200) {
        log_info("client %llx: origin not allowed", conn_id(c));
        respond(c, 403, NULL, "origin not allowed\n");
        return false;
    }
    snprintf(out, cap, "Access-Control-Allow-Origin: %.*s\r\nVary: Origin\r\n", (int)origin->n,
             origin->p);
    return true;
}

/* The channels of /sse?ch=a&ch=b or /sse/<ch>, decoded into names; -1 (answered 400). */
static int stream_channels(conn *c, const ws_http_req *req, ws_span one, char (*names)[ENV_CHANNEL_MAX],
                        ws_span *chans)
{
    size_t at = 0, n = 0;
    ws_span v = one;
    while (one.n ? n == 0 : ws_http_query_next(req->query, "ch", &at, &v)) {
        size_t len = n < CONN_STREAM_MAX ? ws_http_pct_decode(names[n], ENV_CHANNEL_MAX, v) : SIZE_MAX;
        if (len == SIZE_MAX || !env_channel_valid((ws_span){names[n], len})) {
            respond(c, 400, NULL, "channels are 1-200 bytes of [A-Za-z0-9._:-], at most 32 a stream\n");
            return -1;
        }
        chans[n] = (ws_span){names[n], len};
        n++;
    }
    if (n == 0 || n > (size_t)conn_worker(c)->cfg->max_subs)
        respond(c, 400, NULL, n ? "more channels than --max-subs\n" : "name a channel: ?ch=NAME\n");
    return n == 0 || n > (size_t)conn_worker(c)->cfg->max_subs ? -1 : (int)n;
}

/* GET /sse (poll false) or /poll: checks the request as an upgrade to /ws is checked (CORS,
 * channels, token, permissions) and opens the stream, resuming from the token if any. */
static void stream_request(conn *c, const ws_http_req *req, ws_span one, bool poll)
{
    char names[CONN_STREAM_MAX][ENV_CHANNEL_MAX], cors[300], head[512];
    ws_span chans[CONN_STREAM_MAX], token, v;
    env_pos since[CONN_STREAM_MAX];
    char *user;
    auth_grant *grant;
    if (!ws_span_eq(req->method, "GET")) {
        respond(c, 405, "Allow: GET\r\n", "method not allowed\n");
        return;
    }
    int n = cors_allowed(c, req, cors, sizeof cors) ? stream_channels(c, req, one, names, chans) : -1;
    if (n < 0 || identify(c, req, &user, &grant) < 0)
        return;
    for (int i = 0; i < n; i++) {
        if (!auth_may(grant, AUTH_SUB, chans[i])) {
            conn_worker(c)->st->forbidden++;
            free(user);
            auth_grant_free(grant);
            respond(c, 403, NULL, "the token does not allow subscribing to every channel named\n");
            return;
        }
    }
    const ws_span *lei = poll ? NULL : ws_http_get(req, "Last-Event-ID");
    bool resume = lei ? (token = *lei, true) : ws_http_query_get(req->query, "since", &token);
    if (resume && ws_sse_token_parse(token, since, CONN_STREAM_MAX) != n)
        for (int i = 0; i < n; i++) /* not this stream's token: nothing can be recovered */
            since[i] = (env_pos){0, {"lost", 4}}; /* an epoch no channel has (no dot) */
    bool events = ws_http_query_get(req->query, "events", &v) && ws_span_eq(v, "1");
    bool nowait = poll && ws_http_query_get(req->query, "wait", &v) && ws_span_eq(v, "0");
    int hn = poll ? snprintf(head, sizeof head, "%s", cors)
                  : snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; "
                             "charset=utf-8\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
                             "%s\r\n", cors);
    conn_stream_open(c, &(conn_stream_req){poll ? CONN_STREAM_POLL : CONN_STREAM_SSE,
                                           {head, (size_t)hn}, user, grant, chans, (size_t)n,
                                           resume ? since : NULL, events, nowait});
}

/* ---- routing ------------------------------------------------------------------------------ */

/* A head that did not parse, or not HTTP/1.x: answered and true; else false. */
static bool refuse_head(conn *c, int parsed, const ws_http_req *req)
{
    worker *w = conn_worker(c);
    if (parsed == WS_HTTP_BAD || parsed == WS_HTTP_TOO_LARGE) {
        w->st->handshakes_failed++;
        int status = parsed == WS_HTTP_BAD ? 400 : 431;
        if (status == 431)
            w->st->too_large_heads++;
        log_info("client %llx: bad HTTP request: %d", conn_id(c), status);
        respond(c, status, NULL, status == 400 ? "malformed request\n" : "request head too large\n");
        return true;
    }
    if (req->http_major != 1) { /* HTTP/2.0 or 0.9 in a request line: RFC 9110 15.6.6 */
        w->st->handshakes_failed++;
        w->st->bad_requests++;
        log_info("client %llx: request line says HTTP/%d.%d: 505", conn_id(c), req->http_major,
                 req->http_minor);
        respond(c, 505, NULL, "HTTP/1.1 is spoken here\n");
        return true;
    }
    return false;
}

void http_request(conn *c, int parsed, const ws_http_req *req)
{
    const config *cfg = conn_worker(c)->cfg;
    if (refuse_head(c, parsed, req))
        return;
    ws_span path = req->path;
    bool get = ws_span_eq(req->method, "GET");
    if (ws_span_eq(path, "/healthz")) {
        if (!get)
            respond(c, 405, "Allow: GET\r\n", "method not allowed\n");
        else
            respond(c, 200, NULL, "ok\n");
    } else if (ws_span_eq(path, "/metrics")) {
        if (!get)
            respond(c, 405, "Allow: GET\r\n", "method not allowed\n");
        else
            metrics(c);
    } else if (path.n > 9 && memcmp(path.p, "/publish/", 9) == 0) {
        publish_request(c, req, (ws_span){path.p + 9, path.n - 9});
    } else if (path.n > 9 && memcmp(path.p, "/history/", 9) == 0) {
        history_request(c, req, (ws_span){path.p + 9, path.n - 9});
    } else if (ws_span_eq(path, "/sse") || (path.n > 5 && memcmp(path.p, "/sse/", 5) == 0)) {
        stream_request(c, req, (ws_span){path.p + 5, path.n > 5 ? path.n - 5 : 0}, false);
    } else if (ws_span_eq(path, "/poll")) {
        stream_request(c, req, (ws_span){NULL, 0}, true);
    } else if (ws_span_eq(path, "/ws")) {
        upgrade(c, req, false);
    } else if (cfg->echo && ws_span_eq(path, "/echo")) {
        upgrade(c, req, true);
    } else {
        static_file(c, req);
    }
}
