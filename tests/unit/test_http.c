/* ws_http: request head parsing (RFC 9112) and small responses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ws_http.h"

static const ws_http_limits LIM = {.max_head = 8192, .max_headers = 64};

static const char UPGRADE_HEAD[] = "GET /chat?room=1&x=y HTTP/1.1\r\n"
                                   "Host: server.example.com\r\n"
                                   "Upgrade: websocket\r\n"
                                   "Connection: Upgrade\r\n"
                                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                   "Sec-WebSocket-Version: 13\r\n"
                                   "\r\n";

static int parse(const char *s, const ws_http_limits *lim, ws_http_req *req)
{
    return ws_http_parse(s, strlen(s), 0, lim, req);
}

static void assert_span(ws_span sp, const char *want)
{
    assert_int_equal(sp.n, strlen(want));
    assert_memory_equal(sp.p, want, sp.n);
}

static void assert_header(const ws_http_req *req, size_t i, const char *name, const char *value)
{
    assert_true(i < req->nheaders);
    assert_span(req->headers[i].name, name);
    assert_span(req->headers[i].value, value);
}

/* The value of the only header of a one-header request. */
static void assert_sole_value(const char *head, const char *value)
{
    ws_http_req req;
    assert_int_equal(parse(head, &LIM, &req), (int)strlen(head));
    assert_int_equal(req.nheaders, 1);
    assert_span(req.headers[0].value, value);
}

static void assert_parse_result(const char *head, const ws_http_limits *lim, int want)
{
    ws_http_req req;
    int rc = parse(head, lim, &req);
    if (rc != want)
        fail_msg("%d, want %d for: %s", rc, want, head);
}

/* A request head with k headers "X-<i>: v" (caller frees). */
static char *head_with_headers(size_t k)
{
    size_t cap = 64 + k * 32;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t n = (size_t)snprintf(s, cap, "GET / HTTP/1.1\r\n");
    for (size_t i = 0; i < k; i++)
        n += (size_t)snprintf(s + n, cap - n, "X-%zu: v\r\n", i);
    snprintf(s + n, cap - n, "\r\n");
    return s;
}

/* ---- valid requests ------------------------------------------------------------------- */

static void test_parses_upgrade_request(void **state)
{
    (void)state;
    ws_http_req req;
    int rc = parse(UPGRADE_HEAD, &LIM, &req);
    assert_int_equal(rc, (int)strlen(UPGRADE_HEAD));
    assert_int_equal(req.head_len, strlen(UPGRADE_HEAD));
    assert_span(req.method, "GET");
    assert_span(req.path, "/chat");
    assert_span(req.query, "room=1&x=y");
    assert_int_equal(req.http_major, 1);
    assert_int_equal(req.http_minor, 1);
    assert_int_equal(req.content_length, -1);
    assert_false(req.chunked);
    assert_int_equal(req.nheaders, 5);
    assert_header(&req, 0, "Host", "server.example.com");
    assert_header(&req, 1, "Upgrade", "websocket");
    assert_header(&req, 2, "Connection", "Upgrade");
    assert_header(&req, 3, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    assert_header(&req, 4, "Sec-WebSocket-Version", "13");
}

static void test_parses_other_methods_and_versions(void **state)
{
    (void)state;
    ws_http_req req;
    assert_true(parse("POST /publish HTTP/1.0\r\nContent-Length: 0\r\n\r\n", &LIM, &req) > 0);
    assert_span(req.method, "POST");
    assert_span(req.path, "/publish");
    assert_int_equal(req.http_major, 1);
    assert_int_equal(req.http_minor, 0);
}

static void test_request_without_headers(void **state)
{
    (void)state;
    ws_http_req req;
    assert_int_equal(parse("GET /health HTTP/1.1\r\n\r\n", &LIM, &req), 24);
    assert_int_equal(req.nheaders, 0);
    assert_span(req.path, "/health");
}

static void test_query_is_split_at_first_question_mark(void **state)
{
    (void)state;
    ws_http_req req;
    assert_true(parse("GET /a/b?x=1?y=2 HTTP/1.1\r\n\r\n", &LIM, &req) > 0);
    assert_span(req.path, "/a/b");
    assert_span(req.query, "x=1?y=2");
}

static void test_no_query_or_empty_query(void **state)
{
    (void)state;
    ws_http_req req;
    assert_true(parse("GET /plain HTTP/1.1\r\n\r\n", &LIM, &req) > 0);
    assert_span(req.path, "/plain");
    assert_int_equal(req.query.n, 0);
    assert_true(parse("GET /p? HTTP/1.1\r\n\r\n", &LIM, &req) > 0);
    assert_span(req.path, "/p");
    assert_int_equal(req.query.n, 0);
}

static void test_header_value_whitespace_is_trimmed(void **state)
{
    (void)state;
    assert_sole_value("GET / HTTP/1.1\r\nX:   a b \t \r\n\r\n", "a b");
    assert_sole_value("GET / HTTP/1.1\r\nX:\tv\t\r\n\r\n", "v");
    assert_sole_value("GET / HTTP/1.1\r\nX:v\r\n\r\n", "v");
    assert_sole_value("GET / HTTP/1.1\r\nX: \r\n\r\n", "");
}

static void test_content_length_is_read(void **state)
{
    (void)state;
    ws_http_req req;
    assert_true(parse("POST / HTTP/1.1\r\nContent-Length: 42\r\n\r\n", &LIM, &req) > 0);
    assert_int_equal(req.content_length, 42);
    assert_true(parse("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &LIM, &req) > 0);
    assert_int_equal(req.content_length, 0);
    assert_true(parse("POST / HTTP/1.1\r\nHost: h\r\n\r\n", &LIM, &req) > 0);
    assert_int_equal(req.content_length, -1);
}

static void test_chunked_is_flagged(void **state)
{
    (void)state;
    ws_http_req req;
    assert_true(parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &LIM, &req) > 0);
    assert_true(req.chunked);
    assert_int_equal(req.content_length, -1);
}

/* A head fed one byte more at a time: PARTIAL until its last byte, then the same result as
 * the whole head. Each prefix is a fresh exact-size heap copy so an over-read is caught. */
static void test_byte_at_a_time_partial_until_complete(void **state)
{
    (void)state;
    const size_t total = strlen(UPGRADE_HEAD);
    ws_http_req whole, req;
    assert_int_equal(parse(UPGRADE_HEAD, &LIM, &whole), (int)total);
    size_t last = 0;
    for (size_t len = 1; len <= total; len++) {
        char *buf = malloc(len);
        assert_non_null(buf);
        memcpy(buf, UPGRADE_HEAD, len);
        int rc = ws_http_parse(buf, len, last, &LIM, &req);
        last = len;
        if (len < total) {
            free(buf);
            if (rc != WS_HTTP_PARTIAL)
                fail_msg("prefix of %zu bytes: %d", len, rc);
            continue;
        }
        assert_int_equal(rc, (int)total);
        assert_int_equal(req.nheaders, whole.nheaders);
        for (size_t i = 0; i < req.nheaders; i++) {
            assert_int_equal(req.headers[i].name.p - buf, whole.headers[i].name.p - UPGRADE_HEAD);
            assert_int_equal(req.headers[i].value.p - buf, whole.headers[i].value.p - UPGRADE_HEAD);
            assert_int_equal(req.headers[i].name.n, whole.headers[i].name.n);
            assert_int_equal(req.headers[i].value.n, whole.headers[i].value.n);
        }
        assert_int_equal(req.path.p - buf, whole.path.p - UPGRADE_HEAD);
        assert_int_equal(req.path.n, whole.path.n);
        assert_int_equal(req.query.n, whole.query.n);
        free(buf);
    }
}

/* Bytes after the blank line (a WebSocket frame, another request) are not part of the head. */
static void test_bytes_after_head_are_left_alone(void **state)
{
    (void)state;
    const char *tails[] = {"\x81\x85\x37\xfa\x21\x3d\x7f", "GET /next HTTP/1.1\r\nA: b\r\n\r\n",
                           "\r\n\r\n"};
    for (size_t t = 0; t < 3; t++) {
        size_t hn = strlen(UPGRADE_HEAD), tn = strlen(tails[t]);
        char *buf = malloc(hn + tn);
        assert_non_null(buf);
        memcpy(buf, UPGRADE_HEAD, hn);
        memcpy(buf + hn, tails[t], tn);
        ws_http_req req;
        assert_int_equal(ws_http_parse(buf, hn + tn, 0, &LIM, &req), (int)hn);
        assert_int_equal(req.head_len, hn);
        assert_int_equal(req.nheaders, 5);
        for (size_t i = 0; i < req.nheaders; i++)
            assert_true(req.headers[i].value.p + req.headers[i].value.n <= buf + hn);
        assert_memory_equal(buf + hn, tails[t], tn);
        free(buf);
    }
}

/* ---- limits ----------------------------------------------------------------------------- */

static void test_complete_head_over_max_head_is_too_large(void **state)
{
    (void)state;
    size_t n = strlen(UPGRADE_HEAD);
    ws_http_limits lim = {.max_head = n - 1, .max_headers = 64};
    assert_parse_result(UPGRADE_HEAD, &lim, WS_HTTP_TOO_LARGE);
    lim.max_head = n;
    assert_parse_result(UPGRADE_HEAD, &lim, (int)n);
}

static void test_incomplete_head_over_max_head_is_too_large(void **state)
{
    (void)state;
    const ws_http_limits lim = {.max_head = 32, .max_headers = 64};
    ws_http_req req;
    const char *s = "GET / HTTP/1.1\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    assert_int_equal(ws_http_parse(s, 32, 0, &lim, &req), WS_HTTP_PARTIAL);
    assert_int_equal(ws_http_parse(s, 33, 32, &lim, &req), WS_HTTP_TOO_LARGE);
}

static void test_too_many_headers_is_too_large(void **state)
{
    (void)state;
    const ws_http_limits lim = {.max_head = 8192, .max_headers = 8};
    char *ok = head_with_headers(8), *over = head_with_headers(9);
    assert_parse_result(ok, &lim, (int)strlen(ok));
    assert_parse_result(over, &lim, WS_HTTP_TOO_LARGE);
    free(ok);
    free(over);
}

/* max_headers above the array size is clamped to it. */
static void test_max_headers_is_capped(void **state)
{
    (void)state;
    const ws_http_limits lim = {.max_head = 1 << 16, .max_headers = 10 * WS_HTTP_HEADERS_CAP};
    char *ok = head_with_headers(WS_HTTP_HEADERS_CAP), *over = head_with_headers(WS_HTTP_HEADERS_CAP + 1);
    ws_http_req req;
    assert_int_equal(parse(ok, &lim, &req), (int)strlen(ok));
    assert_int_equal(req.nheaders, WS_HTTP_HEADERS_CAP);
    assert_parse_result(over, &lim, WS_HTTP_TOO_LARGE);
    free(ok);
    free(over);
}

/* ---- malformed heads -------------------------------------------------------------------- */

static void test_malformed_request_line_is_bad(void **state)
{
    (void)state;
    const char *heads[] = {
        "GET HTTP/1.1\r\n\r\n",
        "GET / FOO/1.1\r\n\r\n",
        "GET / HTTP/x.1\r\n\r\n",
        "GET / HTTP/1.1 extra\r\n\r\n",
        "G@T / HTTP/1.1\r\n\r\n",
        "/ HTTP/1.1\r\n\r\n",
        "GET /a b HTTP/1.1\r\n\r\n",
        "\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++)
        assert_parse_result(heads[i], &LIM, WS_HTTP_BAD);
}

static void test_malformed_header_is_bad(void **state)
{
    (void)state;
    const char *heads[] = {
        "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET / HTTP/1.1\r\n: no name\r\n\r\n",
        "GET / HTTP/1.1\r\nX\x01: ctl in name\r\n\r\n",
        "GET / HTTP/1.1\r\nX: ctl in value \x7f\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++)
        assert_parse_result(heads[i], &LIM, WS_HTTP_BAD);
}

/* RFC 9112 section 5.1: whitespace between a field name and the colon MUST be rejected. */
static void test_whitespace_before_colon_is_bad(void **state)
{
    (void)state;
    assert_parse_result("GET / HTTP/1.1\r\nHost : a\r\n\r\n", &LIM, WS_HTTP_BAD);
    assert_parse_result("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", &LIM, WS_HTTP_BAD);
    assert_parse_result("GET / HTTP/1.1\r\nSec WebSocket-Key: a\r\n\r\n", &LIM, WS_HTTP_BAD);
}

/* RFC 9112 sections 5.2 and 2.2: obs-fold and whitespace-led lines are refused. */
static void test_obs_fold_is_bad(void **state)
{
    (void)state;
    assert_parse_result("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", &LIM, WS_HTTP_BAD);
    assert_parse_result("GET / HTTP/1.1\r\nX: a\r\n\tb\r\nY: c\r\n\r\n", &LIM, WS_HTTP_BAD);
    assert_parse_result("GET / HTTP/1.1\r\nX:\r\n b\r\n\r\n", &LIM, WS_HTTP_BAD);
    assert_parse_result("GET / HTTP/1.1\r\n Host: a\r\n\r\n", &LIM, WS_HTTP_BAD);
}

/* ---- header lookup helpers -------------------------------------------------------------- */

static void test_get_and_count_ignore_case(void **state)
{
    (void)state;
    ws_http_req req;
    assert_true(parse("GET / HTTP/1.1\r\nX-A: 1\r\nx-a: 2\r\nX-B: 3\r\n\r\n", &LIM, &req) > 0);
    const ws_span *v = ws_http_get(&req, "X-A");
    assert_non_null(v);
    assert_span(*v, "1");
    assert_int_equal(ws_http_count(&req, "X-A"), 2);
    assert_int_equal(ws_http_count(&req, "x-b"), 1);
    assert_null(ws_http_get(&req, "X-C"));
    assert_null(ws_http_get(&req, "X-"));
    assert_int_equal(ws_http_count(&req, "X-C"), 0);
}

static bool has_token(const char *list, const char *tok)
{
    return ws_http_has_token((ws_span){list, strlen(list)}, tok);
}

static void test_has_token(void **state)
{
    (void)state;
    assert_true(has_token("Upgrade", "upgrade"));
    assert_true(has_token("keep-alive, Upgrade", "Upgrade"));
    assert_true(has_token("keep-alive,UPGRADE ,x", "upgrade"));
    assert_true(has_token(" \t,, upgrade\t", "Upgrade"));
    assert_false(has_token("keep-alive", "Upgrade"));
    assert_false(has_token("Upgraded, up", "Upgrade"));
    assert_false(has_token("", "Upgrade"));
    assert_false(has_token("keep-alive Upgrade", "Upgrade"));
}

static void test_span_comparisons(void **state)
{
    (void)state;
    ws_span s = {"GETX", 3};
    assert_true(ws_span_eq(s, "GET"));
    assert_false(ws_span_eq(s, "get"));
    assert_false(ws_span_eq(s, "GETX"));
    assert_false(ws_span_eq(s, "GE"));
    assert_true(ws_span_ieq(s, "get"));
    assert_false(ws_span_ieq(s, "gets"));
}

/* ---- responses -------------------------------------------------------------------------- */

static void assert_contains(const char *hay, size_t n, const char *needle)
{
    if (!memmem(hay, n, needle, strlen(needle)))
        fail_msg("\"%s\" not in response", needle);
}

static void test_response_has_status_headers_and_body(void **state)
{
    (void)state;
    char out[512];
    size_t n = ws_http_response(out, sizeof out, 404, "X-A: 1\r\n", NULL, "nope", 4);
    assert_true(n > 0);
    assert_memory_equal(out, "HTTP/1.1 404 Not Found\r\n", 24);
    assert_contains(out, n, "\r\nX-A: 1\r\n");
    assert_contains(out, n, "\r\nContent-Type: text/plain; charset=utf-8\r\n");
    assert_contains(out, n, "\r\nContent-Length: 4\r\n");
    assert_contains(out, n, "\r\nConnection: close\r\n");
    assert_memory_equal(out + n - 8, "\r\n\r\nnope", 8);
    assert_true(memmem(out, n, "\r\n\r\n", 4) == out + n - 8); /* one blank line */
}

static void test_response_content_type(void **state)
{
    (void)state;
    char out[512];
    size_t n = ws_http_response(out, sizeof out, 200, NULL, "application/json", "{}", 2);
    assert_contains(out, n, "\r\nContent-Type: application/json\r\n");
    assert_memory_equal(out, "HTTP/1.1 200 OK\r\n", 17);
}

/* Whatever the capacity, the result is the whole response or 0, never a damaged one. */
static void check_every_capacity(int status, const char *body)
{
    char full[512];
    size_t bl = strlen(body);
    size_t fn = ws_http_response(full, sizeof full, status, NULL, NULL, body, bl);
    assert_true(fn > 0);
    for (size_t cap = 0; cap <= fn + 1; cap++) {
        char *out = malloc(cap ? cap : 1);
        assert_non_null(out);
        size_t n = ws_http_response(out, cap, status, NULL, NULL, body, bl);
        bool damaged = n != 0 && (n != fn || memcmp(out, full, fn) != 0);
        free(out);
        if (damaged)
            fail_msg("status %d cap %zu: damaged response of %zu bytes", status, cap, n);
        if (cap > fn && n != fn)
            fail_msg("status %d cap %zu: refused", status, cap);
    }
}

static void test_response_never_truncated_with_body(void **state)
{
    (void)state;
    check_every_capacity(400, "bad request\n");
}

static void test_response_never_truncated_without_body(void **state)
{
    (void)state;
    check_every_capacity(204, "");
}

static void test_reason_phrases(void **state)
{
    (void)state;
    assert_string_equal(ws_http_reason(400), "Bad Request");
    assert_string_equal(ws_http_reason(426), "Upgrade Required");
    assert_string_equal(ws_http_reason(431), "Request Header Fields Too Large");
    assert_non_null(ws_http_reason(299));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parses_upgrade_request),
        cmocka_unit_test(test_parses_other_methods_and_versions),
        cmocka_unit_test(test_request_without_headers),
        cmocka_unit_test(test_query_is_split_at_first_question_mark),
        cmocka_unit_test(test_no_query_or_empty_query),
        cmocka_unit_test(test_header_value_whitespace_is_trimmed),
        cmocka_unit_test(test_content_length_is_read),
        cmocka_unit_test(test_chunked_is_flagged),
        cmocka_unit_test(test_byte_at_a_time_partial_until_complete),
        cmocka_unit_test(test_bytes_after_head_are_left_alone),
        cmocka_unit_test(test_complete_head_over_max_head_is_too_large),
        cmocka_unit_test(test_incomplete_head_over_max_head_is_too_large),
        cmocka_unit_test(test_too_many_headers_is_too_large),
        cmocka_unit_test(test_max_headers_is_capped),
        cmocka_unit_test(test_malformed_request_line_is_bad),
        cmocka_unit_test(test_malformed_header_is_bad),
        cmocka_unit_test(test_whitespace_before_colon_is_bad),
        cmocka_unit_test(test_obs_fold_is_bad),
        cmocka_unit_test(test_get_and_count_ignore_case),
        cmocka_unit_test(test_has_token),
        cmocka_unit_test(test_span_comparisons),
        cmocka_unit_test(test_response_has_status_headers_and_body),
        cmocka_unit_test(test_response_content_type),
        cmocka_unit_test(test_response_never_truncated_with_body),
        cmocka_unit_test(test_response_never_truncated_without_body),
        cmocka_unit_test(test_reason_phrases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
