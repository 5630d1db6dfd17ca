/* ws_sse: event framing (id, one data line per line of the data, CR, LF and CRLF all ending a
 * line, the blank line), the position token both ways and what it refuses; ws_http's query
 * walk over repeated parameters and percent-decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ws_http.h"
#include "ws_sse.h"

static ws_span S(const char *s) { return (ws_span){s, strlen(s)}; }

static void expect_event(ws_span id, ws_span data, const char *want)
{
    char out[256];
    size_t n = ws_sse_event(out, sizeof out, id, data);
    assert_int_equal(n, strlen(want));
    assert_int_equal(ws_sse_event_len(id, data), n);
    assert_memory_equal(out, want, n);
    assert_int_equal(ws_sse_event(out, n - 1, id, data), 0); /* one byte short: nothing */
}

static void test_events(void **state)
{
    (void)state;
    expect_event(S("7-e"), S("{\"a\":1}"), "id: 7-e\ndata: {\"a\":1}\n\n");
    expect_event(S(""), S("{\"op\":\"hello\"}"), "data: {\"op\":\"hello\"}\n\n");
    expect_event(S("1-x"), S("{\"a\":\n1,\r\n\"b\":\r2}"),
                 "id: 1-x\ndata: {\"a\":\ndata: 1,\ndata: \"b\":\ndata: 2}\n\n");
    expect_event(S(""), S("x\n"), "data: x\ndata: \n\n"); /* a last LF leaves an empty line */
    expect_event(S(""), S(""), "data: \n\n");
}

static void test_tokens(void **state)
{
    (void)state;
    env_pos in[3] = {{17, S("6b11a316.da4b4")}, {0, S("")}, {UINT64_MAX, S("E")}};
    char tok[WS_SSE_TOKEN_MAX(3)];
    size_t n = ws_sse_token(tok, sizeof tok, in, 3);
    assert_int_equal(n, strlen("17-6b11a316.da4b4_0-_18446744073709551615-E"));
    assert_memory_equal(tok, "17-6b11a316.da4b4_0-_18446744073709551615-E", n);
    env_pos out[3];
    assert_int_equal(ws_sse_token_parse((ws_span){tok, n}, out, 3), 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(out[i].seq, in[i].seq);
        assert_int_equal(out[i].epoch.n, in[i].epoch.n);
        assert_memory_equal(out[i].epoch.p, in[i].epoch.p, in[i].epoch.n);
    }
    assert_int_equal(ws_sse_token_parse((ws_span){tok, n}, out, 2), -1); /* more than max */
    assert_int_equal(ws_sse_token(tok, 10, in, 3), 0);
    const char *bad[] = {"", "-e", "5", "5-e_", "5-e__6-f", "x-e", "5-e f", "5-e-6",
                         "18446744073709551616-e", "1-0123456789012345678901234567890123"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(ws_sse_token_parse(S(bad[i]), out, 3), -1);
}

static void test_query_walk_and_decoding(void **state)
{
    (void)state;
    ws_span q = S("ch=a&x=1&ch=b%3Ac&chx=no&ch"), v;
    size_t at = 0;
    assert_true(ws_http_query_next(q, "ch", &at, &v));
    assert_int_equal(v.n, 1);
    assert_memory_equal(v.p, "a", 1);
    assert_true(ws_http_query_next(q, "ch", &at, &v));
    char out[16];
    size_t n = ws_http_pct_decode(out, sizeof out, v);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "b:c", 3);
    assert_true(ws_http_query_next(q, "ch", &at, &v));
    assert_int_equal(v.n, 0);
    assert_false(ws_http_query_next(q, "ch", &at, &v));
    assert_int_equal(ws_http_pct_decode(out, sizeof out, S("a%4")), SIZE_MAX);
    assert_int_equal(ws_http_pct_decode(out, sizeof out, S("a%zz")), SIZE_MAX);
    assert_int_equal(ws_http_pct_decode(out, 2, S("abc")), SIZE_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_query_walk_and_decoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
