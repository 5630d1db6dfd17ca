/* ws_http: response heads (ws_http_parse_response), as a client such as wsload reads them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "ws_http.h"

static const ws_http_limits LIM = {.max_head = 8192, .max_headers = 64};

static const char UPGRADED[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                               "Sec-WebSocket-Protocol: ws.json.v1\r\n"
                               "\r\n";

static const char *const VALID[] = {
    UPGRADED,
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
    "HTTP/1.0 404 Not Found\nContent-Type: text/plain\n\n",
    "HTTP/1.1 204\r\n\r\n",
    "HTTP/1.1 202 \r\nX-Empty:\r\nX-Tabs:\t a b \t\r\n\r\n",
    "HTTP/1.1 500 Server \xc3\xa9rror\r\nX-Obs: \x80\xff\r\n\r\n",
};
#define NVALID (sizeof VALID / sizeof VALID[0])

/* Input placed just before a PROT_NONE page: any read past its end crashes the test. */
typedef struct guarded {
    char *map;
    size_t page;
} guarded;

static char *guard(guarded *g, const char *s, size_t n)
{
    g->page = (size_t)sysconf(_SC_PAGESIZE);
    assert_true(n <= g->page);
    g->map = mmap(NULL, 2 * g->page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g->map != MAP_FAILED);
    assert_int_equal(mprotect(g->map + g->page, g->page, PROT_NONE), 0);
    char *p = g->map + g->page - n;
    memcpy(p, s, n);
    return p;
}

static void unguard(guarded *g) { munmap(g->map, 2 * g->page); }

/* Parses s[0..n) placed before a guard page; the spans in *r stay valid until the next call. */
static int parse_n(const char *s, size_t n, const ws_http_limits *lim, ws_http_resp *r)
{
    static guarded last;
    if (last.map)
        unguard(&last);
    char *p = guard(&last, s, n);
    return ws_http_parse_response(p, n, 0, lim, r);
}

static int parse(const char *s, ws_http_resp *r) { return parse_n(s, strlen(s), &LIM, r); }

static void assert_span(ws_span sp, const char *want)
{
    assert_int_equal(sp.n, strlen(want));
    assert_memory_equal(sp.p, want, sp.n);
}

static void assert_result(const char *s, const ws_http_limits *lim, int want)
{
    ws_http_resp r;
    int rc = parse_n(s, strlen(s), lim, &r);
    if (rc != want)
        fail_msg("%d, want %d for: %s", rc, want, s);
}

/* ---- valid heads ---------------------------------------------------------------------- */

static void test_parses_upgrade_response(void **state)
{
    (void)state;
    ws_http_resp r;
    assert_int_equal(parse(UPGRADED, &r), (int)strlen(UPGRADED));
    assert_int_equal(r.head_len, strlen(UPGRADED));
    assert_int_equal(r.http_major, 1);
    assert_int_equal(r.http_minor, 1);
    assert_int_equal(r.status, 101);
    assert_span(r.reason, "Switching Protocols");
    assert_int_equal(r.nheaders, 4);
    assert_span(r.headers[0].name, "Upgrade");
    assert_span(r.headers[0].value, "websocket");
    assert_span(r.headers[2].value, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_span(*ws_http_resp_get(&r, "sec-websocket-protocol"), "ws.json.v1");
    assert_null(ws_http_resp_get(&r, "Content-Length"));
    assert_int_equal(r.content_length, -1);
    assert_false(r.chunked);
}

static void test_status_lines(void **state)
{
    (void)state;
    ws_http_resp r;
    assert_true(parse("HTTP/1.1 204\r\n\r\n", &r) > 0);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.reason.n, 0);
    assert_true(parse("HTTP/1.1 202 \r\n\r\n", &r) > 0);
    assert_int_equal(r.reason.n, 0);
    assert_true(parse("HTTP/1.0 999 Whatever it is\n\n", &r) > 0);
    assert_int_equal(r.status, 999);
    assert_int_equal(r.http_minor, 0);
    assert_span(r.reason, "Whatever it is");
}

static void test_values_are_trimmed(void **state)
{
    (void)state;
    ws_http_resp r;
    assert_true(parse("HTTP/1.1 200 OK\r\nA:x\r\nB: \t y z \t\r\nC:\r\n\r\n", &r) > 0);
    assert_int_equal(r.nheaders, 3);
    assert_span(r.headers[0].value, "x");
    assert_span(r.headers[1].value, "y z");
    assert_span(r.headers[2].value, "");
}

static void test_body_framing(void **state)
{
    (void)state;
    ws_http_resp r;
    assert_true(parse("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", &r) > 0);
    assert_int_equal(r.content_length, 1234);
    assert_true(parse("HTTP/1.1 200 OK\r\ncontent-length: 7\r\nContent-Length: 7\r\n\r\n", &r) > 0);
    assert_int_equal(r.content_length, 7);
    assert_true(parse("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &r) > 0);
    assert_int_equal(r.content_length, 0);
    assert_true(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &r) > 0);
    assert_true(r.chunked);
    assert_result("HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n", &LIM, WS_HTTP_BAD);
    assert_result("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", &LIM, WS_HTTP_BAD);
    assert_result("HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n", &LIM, WS_HTTP_BAD);
    assert_result("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", &LIM, WS_HTTP_BAD);
    assert_result("HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\n", &LIM, WS_HTTP_BAD);
}

/* What follows the head (frames after a 101, a body) is not looked at. */
static void test_bytes_after_head_are_left_alone(void **state)
{
    (void)state;
    char buf[512];
    size_t n = strlen(UPGRADED);
    memcpy(buf, UPGRADED, n);
    static const uint8_t frame[] = {0x81, 0x02, 0x00, 0x7f, 0x88, 0x00};
    memcpy(buf + n, frame, sizeof frame);
    ws_http_resp r;
    assert_int_equal(parse_n(buf, n + sizeof frame, &LIM, &r), (int)n);
}

/* ---- every prefix, every feed --------------------------------------------------------- */

static void test_every_prefix_is_partial(void **state)
{
    (void)state;
    for (size_t v = 0; v < NVALID; v++) {
        size_t n = strlen(VALID[v]);
        ws_http_resp r;
        for (size_t k = 0; k < n; k++)
            if (parse_n(VALID[v], k, &LIM, &r) != WS_HTTP_PARTIAL)
                fail_msg("prefix %zu of response %zu is not partial", k, v);
        assert_int_equal(parse_n(VALID[v], n, &LIM, &r), (int)n);
    }
}

/* Fed one byte at a time with last_len, the answer is the same as fed whole. */
static void test_byte_at_a_time_with_last_len(void **state)
{
    (void)state;
    for (size_t v = 0; v < NVALID; v++) {
        size_t n = strlen(VALID[v]);
        guarded g;
        char *p = guard(&g, VALID[v], n);
        ws_http_resp r, whole;
        for (size_t k = 1; k < n; k++)
            assert_int_equal(ws_http_parse_response(p, k, k - 1, &LIM, &r), WS_HTTP_PARTIAL);
        assert_int_equal(ws_http_parse_response(p, n, n - 1, &LIM, &r), (int)n);
        assert_int_equal(ws_http_parse_response(p, n, 0, &LIM, &whole), (int)n);
        assert_int_equal(r.status, whole.status);
        assert_int_equal(r.nheaders, whole.nheaders);
        unguard(&g);
    }
}

/* ---- bad bytes ------------------------------------------------------------------------ */

static void test_bad_status_lines(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "HTTP/1.1 20 OK\r\n\r\n",   "HTTP/1.1 099 X\r\n\r\n",   "HTTP/1.1 2000 X\r\n\r\n",
        "HTTP/1.1 2x0 X\r\n\r\n",   "HTTP/1.1  200 X\r\n\r\n",  "HTTP/11 200 X\r\n\r\n",
        "HTTPS/1.1 200 X\r\n\r\n",  "http/1.1 200 X\r\n\r\n",   "HTTP/1.1\t200 X\r\n\r\n",
        "HTTP/1.1 200\tX\r\n\r\n", "\r\nHTTP/1.1 200 OK\r\n\r\n", "GET / HTTP/1.1\r\n\r\n",
        "HTTP/1.1 200 OK\r \r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_result(bad[i], &LIM, WS_HTTP_BAD);
}

static void test_bad_header_lines(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
        "HTTP/1.1 200 OK\r\nName : v\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: v\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: v\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\n\tA: v\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA(b): v\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: v\rw\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: v\x7f\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_result(bad[i], &LIM, WS_HTTP_BAD);
}

/* Every control byte but HTAB, CR and LF is refused, anywhere in the head. */
static void test_control_bytes_are_bad(void **state)
{
    (void)state;
    for (int c = 0; c < 0x20; c++) {
        if (c == '\t' || c == '\r' || c == '\n')
            continue;
        char s[] = "HTTP/1.1 200 OK\r\nA: x?y\r\n\r\n";
        *strchr(s, '?') = (char)c;
        ws_http_resp r;
        assert_int_equal(parse_n(s, sizeof s - 1, &LIM, &r), WS_HTTP_BAD);
    }
}

/* A bad byte is refused as soon as it arrives, before the head could be complete. */
static void test_bad_bytes_are_refused_before_the_end(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\x15\x03\x03\x00\x02", /* a TLS alert on a plain socket */
        "HTTP/1.1 0", "HTTP/1.1 200x", "HTTP/2 200", "<html>", "HTTP/1.1 200 OK\r\nA: \x01",
        "HTTP/1.1 200 OK\r\nA: b\rc", "SSH-2.0-OpenSSH",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_result(bad[i], &LIM, WS_HTTP_BAD);
    /* With last_len too: the new bytes are checked. */
    const char *s = "HTTP/1.1 200 OK\r\nA: \x02";
    ws_http_resp r;
    assert_int_equal(ws_http_parse_response(s, strlen(s), strlen(s) - 1, &LIM, &r), WS_HTTP_BAD);
}

/* ---- limits --------------------------------------------------------------------------- */

static char *head_with_headers(size_t k)
{
    size_t cap = 64 + k * 32;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t n = (size_t)snprintf(s, cap, "HTTP/1.1 200 OK\r\n");
    for (size_t i = 0; i < k; i++)
        n += (size_t)snprintf(s + n, cap - n, "X-%zu: v\r\n", i);
    snprintf(s + n, cap - n, "\r\n");
    return s;
}

static void test_header_count_limit(void **state)
{
    (void)state;
    ws_http_limits lim = {.max_head = 65536, .max_headers = 8};
    char *s = head_with_headers(8);
    assert_result(s, &lim, (int)strlen(s));
    free(s);
    s = head_with_headers(9);
    assert_result(s, &lim, WS_HTTP_TOO_LARGE);
    free(s);
    lim.max_headers = 100000; /* capped at WS_HTTP_HEADERS_CAP */
    s = head_with_headers(WS_HTTP_HEADERS_CAP);
    ws_http_resp r;
    assert_int_equal(ws_http_parse_response(s, strlen(s), 0, &lim, &r), (int)strlen(s));
    free(s);
    s = head_with_headers(WS_HTTP_HEADERS_CAP + 1);
    assert_int_equal(ws_http_parse_response(s, strlen(s), 0, &lim, &r), WS_HTTP_TOO_LARGE);
    free(s);
}

static void test_head_size_limit(void **state)
{
    (void)state;
    size_t n = strlen(UPGRADED);
    ws_http_limits lim = {.max_head = n, .max_headers = 64};
    assert_result(UPGRADED, &lim, (int)n);
    lim.max_head = n - 1;
    assert_result(UPGRADED, &lim, WS_HTTP_TOO_LARGE);
    /* Incomplete and already over the limit: no need to wait for the rest. */
    lim.max_head = 20;
    ws_http_resp r;
    assert_int_equal(parse_n(UPGRADED, 21, &lim, &r), WS_HTTP_TOO_LARGE);
    assert_int_equal(parse_n(UPGRADED, 20, &lim, &r), WS_HTTP_PARTIAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parses_upgrade_response),
        cmocka_unit_test(test_status_lines),
        cmocka_unit_test(test_values_are_trimmed),
        cmocka_unit_test(test_body_framing),
        cmocka_unit_test(test_bytes_after_head_are_left_alone),
        cmocka_unit_test(test_every_prefix_is_partial),
        cmocka_unit_test(test_byte_at_a_time_with_last_len),
        cmocka_unit_test(test_bad_status_lines),
        cmocka_unit_test(test_bad_header_lines),
        cmocka_unit_test(test_control_bytes_are_bad),
        cmocka_unit_test(test_bad_bytes_are_refused_before_the_end),
        cmocka_unit_test(test_header_count_limit),
        cmocka_unit_test(test_head_size_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
