/* ws_pmd: the permessage-deflate negotiation of RFC 7692 section 7, server side. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ws_pmd.h"

/* Negotiates over a request carrying the given extension header lines ("" for none). */
static int negotiate(const char *lines, ws_pmd *p)
{
    static ws_http_req req;
    static char head[2048];
    snprintf(head, sizeof head, "GET /ws HTTP/1.1\r\nHost: x\r\n%s\r\n", lines);
    const ws_http_limits lim = {.max_head = 8192, .max_headers = 64};
    if (ws_http_parse(head, strlen(head), 0, &lim, &req) <= 0)
        fail_msg("head did not parse: %s", head);
    memset(p, 0xee, sizeof *p);
    return ws_pmd_negotiate(&req, p);
}

#define EXT(v) "Sec-WebSocket-Extensions: " v "\r\n"

static void assert_accepts(const char *lines, unsigned window, bool said)
{
    ws_pmd p;
    if (negotiate(lines, &p) != 1)
        fail_msg("declined: %s", lines);
    assert_int_equal(p.server_window, window);
    assert_int_equal(p.server_window_said, said);
}

static void assert_declines(const char *lines)
{
    ws_pmd p;
    if (negotiate(lines, &p) != 0)
        fail_msg("accepted: %s", lines);
}

static void test_plain_offers_and_what_browsers_send(void **state)
{
    (void)state;
    assert_accepts(EXT("permessage-deflate"), 15, false);
    assert_accepts(EXT("permessage-deflate; client_max_window_bits"), 15, false); /* Chrome */
    assert_accepts(EXT("PerMessage-Deflate ; Server_No_Context_Takeover"), 15, false);
    assert_accepts(EXT("permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
                       " client_max_window_bits=10"), 15, false);
    assert_declines("");
    assert_declines(EXT("x-webkit-deflate-frame"));
    assert_declines(EXT("permessage-deflate-x"));
}

static void test_server_window(void **state)
{
    (void)state;
    assert_accepts(EXT("permessage-deflate; server_max_window_bits=10"), 10, true);
    assert_accepts(EXT("permessage-deflate; server_max_window_bits=\"12\""), 12, true);
    assert_accepts(EXT("permessage-deflate; server_max_window_bits = 9"), 9, true);
    assert_declines(EXT("permessage-deflate; server_max_window_bits=8")); /* zlib cannot */
    assert_declines(EXT("permessage-deflate; server_max_window_bits"));   /* needs a value */
    assert_declines(EXT("permessage-deflate; server_max_window_bits=16"));
    assert_declines(EXT("permessage-deflate; server_max_window_bits=010"));
    assert_declines(EXT("permessage-deflate; client_max_window_bits=7"));
}

/* Section 7.1: unknown, repeated or valued-where-none-belongs parameters decline that offer,
 * and the next offer is tried (across header lines too). */
static void test_bad_offers_are_declined_and_the_next_is_tried(void **state)
{
    (void)state;
    assert_declines(EXT("permessage-deflate; foo"));
    assert_declines(EXT("permessage-deflate; server_no_context_takeover; server_no_context_takeover"));
    assert_declines(EXT("permessage-deflate; client_no_context_takeover=1"));
    assert_declines(EXT("permessage-deflate;"));
    assert_accepts(EXT("permessage-deflate; foo, permessage-deflate; server_max_window_bits=11"),
                   11, true);
    assert_accepts(EXT("x-other; a=\"1,2\", permessage-deflate"), 15, false);
    assert_accepts(EXT("permessage-deflate; server_max_window_bits=8") EXT("permessage-deflate"),
                   15, false);
}

static void test_response(void **state)
{
    (void)state;
    char out[256];
    ws_pmd p = {15, false};
    size_t n = ws_pmd_response(out, sizeof out, &p);
    assert_string_equal(out, "Sec-WebSocket-Extensions: permessage-deflate; "
                             "server_no_context_takeover; client_no_context_takeover\r\n");
    assert_int_equal(n, strlen(out));
    p = (ws_pmd){10, true};
    assert_in_range(ws_pmd_response(out, WS_PMD_RESPONSE_MAX, &p), 120, WS_PMD_RESPONSE_MAX - 1);
    assert_non_null(strstr(out, "client_no_context_takeover; server_max_window_bits=10\r\n"));
    assert_int_equal(ws_pmd_response(out, 20, &p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_offers_and_what_browsers_send),
        cmocka_unit_test(test_server_window),
        cmocka_unit_test(test_bad_offers_are_declined_and_the_next_is_tried),
        cmocka_unit_test(test_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
