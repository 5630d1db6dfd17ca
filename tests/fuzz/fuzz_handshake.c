/* libFuzzer target for ws_http + ws_handshake + ws_pmd: a request head parsed whole and grown
 * one byte at a time (the verdicts must agree), then the upgrade checked under two option sets,
 * the 101 / error responses written, and its permessage-deflate offers negotiated.
 *
 * Input: 1 option byte, then the request bytes.
 *   bit0-1 max_head (8192, 512, 64, 65536)   bit2-3 max_headers (32, 3, 128, 1000: above the cap)
 *   bit4-7 capacity of a second, small response buffer (x 16) */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_handshake.h"
#include "ws_http.h"
#include "ws_pmd.h"

#define CHECK(c) \
    do {         \
        if (!(c))  \
            abort(); \
    } while (0)

static bool inside(ws_span s, const char *buf, size_t len)
{
    if (s.n == 0)
        return s.p == NULL || (s.p >= buf && s.p <= buf + len);
    return s.p >= buf && s.p <= buf + len && s.n <= (size_t)(buf + len - s.p);
}

static bool same_span(ws_span a, ws_span b) { return a.p == b.p && a.n == b.n; }

static void check_req(const ws_http_req *r, int rc, const char *buf, size_t len,
                      const ws_http_limits *lim)
{
    CHECK(rc > 0 && (size_t)rc <= len && r->head_len == (size_t)rc);
    CHECK(rc <= (int)lim->max_head);
    CHECK(r->method.p != NULL && r->method.n > 0);
    CHECK(r->path.p != NULL && inside(r->path, buf, r->head_len));
    CHECK(inside(r->query, buf, r->head_len));
    CHECK(r->nheaders <= WS_HTTP_HEADERS_CAP && r->nheaders <= lim->max_headers);
    CHECK(r->content_length >= -1);
    for (size_t i = 0; i < r->nheaders; i++) {
        const ws_http_header *h = &r->headers[i];
        CHECK(h->name.p != NULL && inside(h->name, buf, r->head_len));
        CHECK(h->value.p != NULL && inside(h->value, buf, r->head_len));
        CHECK(h->name.n > 0 && h->value.p >= h->name.p + h->name.n);
        CHECK(!memchr(h->name.p, ':', h->name.n) && !memchr(h->name.p, '\n', h->name.n));
        CHECK(!memchr(h->value.p, '\r', h->value.n) && !memchr(h->value.p, '\n', h->value.n));
        if (i > 0) /* in order, no overlap */
            CHECK(h->name.p >= r->headers[i - 1].value.p + r->headers[i - 1].value.n);
        if (h->value.n) {
            char first = h->value.p[0], last = h->value.p[h->value.n - 1];
            CHECK(first != ' ' && first != '\t' && last != ' ' && last != '\t');
        }
    }
    /* The head ends with an empty line. */
    CHECK(r->head_len >= 2 && buf[r->head_len - 1] == '\n');
}

static bool b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

static bool has_protocol_token(const ws_http_req *req, const char *proto)
{
    size_t pl = strlen(proto);
    for (size_t h = 0; h < req->nheaders; h++) {
        if (!ws_span_ieq(req->headers[h].name, "Sec-WebSocket-Protocol"))
            continue;
        ws_span v = req->headers[h].value;
        for (size_t i = 0; i + pl <= v.n; i++) {
            bool start = i == 0 || v.p[i - 1] == ',' || v.p[i - 1] == ' ' || v.p[i - 1] == '\t';
            bool end = i + pl == v.n || v.p[i + pl] == ',' || v.p[i + pl] == ' ' ||
                       v.p[i + pl] == '\t';
            if (start && end && memcmp(v.p + i, proto, pl) == 0)
                return true;
        }
    }
    return false;
}

static bool starts(const char *s, size_t n, const char *z)
{
    size_t zl = strlen(z);
    return n >= zl && memcmp(s, z, zl) == 0;
}

/* An agreement only where an offer was made, with a window the server can use, written whole
 * or not at all. */
static void check_pmd(const ws_http_req *req, size_t small_cap)
{
    ws_pmd p;
    int rc = ws_pmd_negotiate(req, &p);
    CHECK(rc == 0 || rc == 1);
    if (!rc)
        return;
    CHECK(ws_http_count(req, "Sec-WebSocket-Extensions") > 0);
    CHECK(p.server_window >= WS_PMD_WINDOW_MIN && p.server_window <= WS_PMD_WINDOW_MAX);
    CHECK(p.server_window_said || p.server_window == WS_PMD_WINDOW_MAX);
    char out[WS_PMD_RESPONSE_MAX], small[256];
    size_t n = ws_pmd_response(out, sizeof out, &p);
    CHECK(n > 0 && strlen(out) == n && starts(out, n, "Sec-WebSocket-Extensions: permessage-deflate;"));
    CHECK(memcmp(out + n - 2, "\r\n", 2) == 0);
    size_t cap = small_cap < sizeof small ? small_cap : sizeof small;
    size_t m = ws_pmd_response(small, cap, &p);
    CHECK(m == 0 || (m == n && memcmp(small, out, n) == 0));
}

static void check_handshake(const ws_http_req *req, const ws_hs_opts *o, size_t small_cap)
{
    ws_hs_result r;
    int st = ws_handshake_check(req, o, &r);
    CHECK(st == r.status);
    CHECK(st == 101 || st == 400 || st == 403 || st == 426 || st == 505);
    CHECK((st == 505) == (req->http_major != 1 && st != 400)); /* 505: only a major version other than 1 */
    CHECK(r.reason != NULL);
    CHECK(r.protocol >= -1 && r.protocol < (int)o->nprotocols);

    char *out = malloc(1024);
    char *small = malloc(small_cap ? small_cap : 1);
    CHECK(out && small);
    if (st == 101) {
        CHECK(ws_handshake_is_upgrade(req));
        CHECK(ws_span_eq(req->method, "GET"));
        CHECK(strlen(r.accept) == WS_ACCEPT_LEN);
        for (size_t i = 0; i < WS_ACCEPT_LEN - 1; i++)
            CHECK(b64(r.accept[i]));
        CHECK(r.accept[WS_ACCEPT_LEN - 1] == '='); /* 20 bytes: one pad char */
        const ws_span *key = ws_http_get(req, "Sec-WebSocket-Key");
        CHECK(key && key->n == 24);
        char again[WS_ACCEPT_LEN + 1];
        ws_handshake_accept(key->p, key->n, again);
        CHECK(strcmp(again, r.accept) == 0);
        if (ws_span_eq(*key, "dGhlIHNhbXBsZSBub25jZQ==")) /* RFC 6455 section 1.3 */
            CHECK(strcmp(r.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
        CHECK(ws_http_count(req, "Host") == 1 && ws_http_count(req, "Sec-WebSocket-Key") == 1);
        CHECK(ws_http_count(req, "Sec-WebSocket-Version") == 1 &&
              ws_span_eq(*ws_http_get(req, "Sec-WebSocket-Version"), "13"));
        CHECK(req->http_major == 1 && req->http_minor >= 1);
        const char *proto = r.protocol >= 0 ? o->protocols[r.protocol] : NULL;
        if (proto)
            CHECK(has_protocol_token(req, proto));
        if (o->norigins) {
            const ws_span *origin = ws_http_get(req, "Origin");
            bool ok = origin == NULL;
            for (size_t i = 0; origin && i < o->norigins; i++)
                ok = ok || ws_span_ieq(*origin, o->origins[i]);
            CHECK(ok);
        }
        size_t n = ws_handshake_response(out, 1024, r.accept, proto);
        CHECK(n > 0 && n < 1024 && strlen(out) == n);
        CHECK(starts(out, n, "HTTP/1.1 101 Switching Protocols\r\n"));
        CHECK(memcmp(out + n - 4, "\r\n\r\n", 4) == 0);
        CHECK(strstr(out, r.accept) != NULL);
        size_t m = ws_handshake_response(small, small_cap, r.accept, proto);
        CHECK(m == 0 || (m == n && m < small_cap && memcmp(small, out, n) == 0));
    } else {
        CHECK(r.accept[0] == '\0');
        size_t n = ws_handshake_error(out, 1024, &r);
        CHECK(n > 0 && n <= 1024);
        char line[16];
        int ln = snprintf(line, sizeof line, "HTTP/1.1 %d ", st);
        CHECK(ln > 0 && starts(out, n, line));
        char *body = memmem(out, n, "\r\n\r\n", 4);
        CHECK(body != NULL);
        body += 4;
        CHECK((size_t)(out + n - body) == strlen(r.reason) + 1);
        CHECK(memcmp(body, r.reason, strlen(r.reason)) == 0 && out[n - 1] == '\n');
        if (st == 426)
            CHECK(memmem(out, n, "Sec-WebSocket-Version: 13\r\n", 27) != NULL);
        size_t m = ws_handshake_error(small, small_cap, &r);
        CHECK(m == 0 || (m == n && m <= small_cap && memcmp(small, out, n) == 0));
    }
    free(small);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const size_t heads[4] = {8192, 512, 64, 65536};
    static const size_t nhdrs[4] = {32, 3, 128, 1000};
    ws_http_limits lim = {heads[data[0] & 3], nhdrs[(data[0] >> 2) & 3]};
    size_t small_cap = (size_t)(data[0] >> 4) * 16;
    size_t n = size - 1;
    char *buf = malloc(n ? n : 1);
    CHECK(buf);
    memcpy(buf, data + 1, n);

    ws_http_req *whole = malloc(sizeof *whole);
    ws_http_req *grown = malloc(sizeof *grown);
    CHECK(whole && grown);
    int rw = ws_http_parse(buf, n, 0, &lim, whole);
    CHECK(rw > 0 || rw == WS_HTTP_PARTIAL || rw == WS_HTTP_BAD || rw == WS_HTTP_TOO_LARGE);
    if (rw > 0)
        check_req(whole, rw, buf, n, &lim);
    if (rw == WS_HTTP_PARTIAL)
        CHECK(n <= lim.max_head);

    /* One byte at a time. Small inputs get an exactly sized buffer per step. */
    int rg = WS_HTTP_PARTIAL;
    size_t last = 0;
    for (size_t len = 1; len <= n && rg == WS_HTTP_PARTIAL; len++) {
        char *b = buf;
        if (n <= 1024) {
            b = malloc(len);
            CHECK(b);
            memcpy(b, buf, len);
        }
        rg = ws_http_parse(b, len, last, &lim, grown);
        last = len;
        if (rg > 0) {
            CHECK((size_t)rg == len); /* found the moment the head's last byte arrives */
            check_req(grown, rg, b, len, &lim);
            /* Rebase onto buf to compare with the whole parse. */
            CHECK(rw == rg);
            CHECK(whole->nheaders == grown->nheaders);
            CHECK(whole->http_major == grown->http_major &&
                  whole->http_minor == grown->http_minor);
            CHECK(whole->content_length == grown->content_length &&
                  whole->chunked == grown->chunked);
            CHECK(same_span(whole->method, grown->method)); /* a static string */
#define REBASE(s) ((ws_span){(s).p ? buf + ((s).p - b) : NULL, (s).n})
            CHECK(same_span(whole->path, REBASE(grown->path)));
            CHECK(whole->query.n == grown->query.n);
            if (whole->query.n)
                CHECK(same_span(whole->query, REBASE(grown->query)));
            for (size_t i = 0; i < whole->nheaders; i++) {
                CHECK(same_span(whole->headers[i].name, REBASE(grown->headers[i].name)));
                CHECK(same_span(whole->headers[i].value, REBASE(grown->headers[i].value)));
            }
#undef REBASE
        }
        if (b != buf)
            free(b);
    }
    CHECK(rw == rg);

    if (rw > 0) {
        static const char *const protos[] = {"chat", "wsfan.v1", "superchat"};
        static const char *const origins[] = {"https://example.com", "http://localhost:8080"};
        ws_hs_opts plain = {0};
        ws_hs_opts strict = {protos, 3, origins, 2};
        check_handshake(whole, &plain, small_cap);
        check_handshake(whole, &strict, small_cap);
        check_pmd(whole, small_cap);
        size_t c = ws_http_count(whole, "Host");
        CHECK(c <= whole->nheaders && (c == 0) == (ws_http_get(whole, "Host") == NULL));
    }

    /* The accept computation on raw bytes of any length (it reads at most WS_KEY_MAX). */
    char acc[WS_ACCEPT_LEN + 1];
    ws_handshake_accept(buf, n, acc);
    CHECK(strlen(acc) == WS_ACCEPT_LEN);
    if (n > WS_KEY_MAX) {
        char acc2[WS_ACCEPT_LEN + 1];
        ws_handshake_accept(buf, WS_KEY_MAX, acc2);
        CHECK(strcmp(acc, acc2) == 0);
    }

    free(grown);
    free(whole);
    free(buf);
    return 0;
}
