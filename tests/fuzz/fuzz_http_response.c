/* libFuzzer target for ws_http_parse_response, the response-head parser clients use (wsload).
 * Parsed whole, a head must keep its contract: head_len within the input and the limits, every
 * span inside the head, names of token characters, values trimmed and free of line ends,
 * status 100-999. Fed again in random chunks with the right last_len (each chunk a heap copy
 * of exactly its length, so ASan sees any read past it), every chunk before the last is
 * partial and the verdict and every span match the whole parse; a bad input may meet its
 * size limit before its bad byte, so there only BAD or TOO_LARGE are allowed.
 *
 * Input: 1 option byte, then the response bytes.
 *   bits 0-1: max_head (8192, 256, 40, 65536)  bit 2: max_headers 4 (else 64)
 *   bits 3-7: seed of the chunk sizes */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_http.h"

#define CHECK(c) \
    do {         \
        if (!(c))  \
            abort(); \
    } while (0)

static bool inside(ws_span s, const char *buf, size_t n)
{
    return s.p >= buf && s.p + s.n <= buf + n;
}

static bool token(ws_span s)
{
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c <= ' ' || c >= 0x7F || strchr("\"(),/:;<=>?@[\\]{}", c))
            return false;
    }
    return s.n > 0;
}

static void check_resp(const ws_http_resp *r, int rc, const char *buf, size_t n,
                       const ws_http_limits *lim)
{
    CHECK((size_t)rc <= n && (size_t)rc <= lim->max_head && r->head_len == (size_t)rc);
    CHECK(r->status >= 100 && r->status <= 999);
    CHECK(r->http_major >= 0 && r->http_major <= 9 && r->http_minor >= 0 && r->http_minor <= 9);
    CHECK(r->nheaders <= lim->max_headers && r->nheaders <= WS_HTTP_HEADERS_CAP);
    CHECK(r->content_length >= -1);
    CHECK(r->reason.n == 0 || inside(r->reason, buf, (size_t)rc));
    for (size_t i = 0; i < r->nheaders; i++) {
        ws_span name = r->headers[i].name, v = r->headers[i].value;
        CHECK(inside(name, buf, (size_t)rc) && token(name));
        CHECK(inside(v, buf, (size_t)rc));
        CHECK(!memchr(v.p, '\r', v.n) && !memchr(v.p, '\n', v.n));
        CHECK(v.n == 0 || (v.p[0] != ' ' && v.p[0] != '\t' && v.p[v.n - 1] != ' ' &&
                           v.p[v.n - 1] != '\t'));
    }
}

static uint32_t next(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* The chunked parse's result, rebased onto buf, equals the whole one. */
static void check_same(const ws_http_resp *w, const ws_http_resp *p, const char *b, const char *buf)
{
#define SAME(x, y) ((x).n == (y).n && ((x).n == 0 || (x).p == buf + ((y).p - b)))
    CHECK(w->status == p->status && w->http_major == p->http_major && w->http_minor == p->http_minor);
    CHECK(w->content_length == p->content_length && w->chunked == p->chunked);
    CHECK(SAME(w->reason, p->reason) && w->nheaders == p->nheaders);
    for (size_t i = 0; i < w->nheaders; i++)
        CHECK(SAME(w->headers[i].name, p->headers[i].name) &&
              SAME(w->headers[i].value, p->headers[i].value));
#undef SAME
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const size_t heads[4] = {8192, 256, 40, 65536};
    ws_http_limits lim = {heads[data[0] & 3], data[0] & 4 ? 4 : 64};
    uint32_t seed = (uint32_t)(data[0] >> 3) * 2654435761u + (uint32_t)size + 1;
    size_t n = size - 1;
    char *buf = malloc(n ? n : 1);
    CHECK(buf);
    memcpy(buf, data + 1, n);
    ws_http_resp *whole = malloc(sizeof *whole), *part = malloc(sizeof *part);
    CHECK(whole && part);

    int rw = ws_http_parse_response(buf, n, 0, &lim, whole);
    CHECK(rw > 0 || rw == WS_HTTP_PARTIAL || rw == WS_HTTP_BAD || rw == WS_HTTP_TOO_LARGE);
    if (rw > 0)
        check_resp(whole, rw, buf, n, &lim);

    int rp = WS_HTTP_PARTIAL;
    size_t last = 0;
    while (last < n && rp == WS_HTTP_PARTIAL) {
        uint32_t x = next(&seed);
        size_t step = (x & 7) == 0 ? 1 + (x >> 8) % 512 : 1 + (x >> 8) % 16;
        size_t len = last + step > n ? n : last + step;
        char *b = malloc(len);
        CHECK(b);
        memcpy(b, buf, len);
        rp = ws_http_parse_response(b, len, last, &lim, part);
        if (rp > 0) {
            CHECK(rp == rw && last < (size_t)rp);
            check_resp(part, rp, b, len, &lim);
            check_same(whole, part, b, buf);
        }
        free(b);
        last = len;
    }
    if (rw > 0 || rw == WS_HTTP_PARTIAL || rw == WS_HTTP_TOO_LARGE)
        CHECK(rp == rw);
    else
        CHECK(rp == WS_HTTP_BAD || rp == WS_HTTP_TOO_LARGE);
    free(whole);
    free(part);
    free(buf);
    return 0;
}
