/* ws_handshake: RFC 6455 section 4.2 server-side opening handshake. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ws_handshake.h"

#define REQ_LINE "GET /chat HTTP/1.1\r\n"
#define HOST "Host: server.example.com\r\n"
#define UPGRADE "Upgrade: websocket\r\n"
#define CONNECTION "Connection: Upgrade\r\n"
#define KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define VERSION "Sec-WebSocket-Version: 13\r\n"
#define END "\r\n"

#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" /* RFC 6455 section 1.3 */

static const ws_hs_opts NO_OPTS = {0};

/* Parses head (which must be a well-formed request head) and runs the check on it. */
static int check_with(const char *head, const ws_hs_opts *o, ws_hs_result *r)
{
    static ws_http_req req;
    const ws_http_limits lim = {.max_head = 8192, .max_headers = 64};
    int rc = ws_http_parse(head, strlen(head), 0, &lim, &req);
    if (rc <= 0)
        fail_msg("head did not parse (%d): %s", rc, head);
    return ws_handshake_check(&req, o, r);
}

static void assert_status(const char *head, int want)
{
    ws_hs_result r;
    int got = check_with(head, &NO_OPTS, &r);
    if (got != want || r.status != want)
        fail_msg("status %d (%s), want %d for:\n%s", got, r.reason ? r.reason : "", want, head);
    assert_non_null(r.reason);
}

static void assert_contains(const char *hay, size_t n, const char *needle)
{
    if (!memmem(hay, n, needle, strlen(needle)))
        fail_msg("\"%s\" not in:\n%.*s", needle, (int)n, hay);
}

/* The subprotocol the check picks from `offers` (header lines) among the server's list. */
static int chosen_protocol(const char *offers, const char *const *protocols, size_t nprotocols)
{
    char head[1024];
    snprintf(head, sizeof head, "%s%s", REQ_LINE HOST UPGRADE CONNECTION KEY VERSION, offers);
    strcat(head, END);
    const ws_hs_opts o = {.protocols = protocols, .nprotocols = nprotocols};
    ws_hs_result r;
    assert_int_equal(check_with(head, &o, &r), 101);
    return r.protocol;
}

/* The status for an Origin header line (or "" for none) against an allowlist. */
static int origin_status(const char *origin_line)
{
    static const char *const allowed[] = {"https://app.example.com", "http://localhost:8080"};
    const ws_hs_opts o = {.origins = allowed, .norigins = 2};
    char head[1024];
    snprintf(head, sizeof head, "%s%s%s", REQ_LINE HOST UPGRADE CONNECTION KEY VERSION,
             origin_line, END);
    ws_hs_result r;
    return check_with(head, &o, &r);
}

/* ---- accept key -------------------------------------------------------------------------- */

static void test_accept_rfc_example(void **state)
{
    (void)state;
    char out[WS_ACCEPT_LEN + 1];
    ws_handshake_accept("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
    assert_string_equal(out, RFC_ACCEPT);
}

static void test_accept_other_keys(void **state)
{
    (void)state;
    char out[WS_ACCEPT_LEN + 1];
    ws_handshake_accept("x3JJHMbDL1EzLkh9GBhXDw==", 24, out);
    assert_string_equal(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
    ws_handshake_accept("AAAAAAAAAAAAAAAAAAA+/w==", 24, out);
    assert_string_equal(out, "Bx3W8HyqehoAICTa8obrF6wyjhg=");
}

/* ---- base64 and the client side ---------------------------------------------------------- */

static void test_base64_rfc4648_vectors(void **state)
{
    (void)state;
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        char b[16];
        assert_int_equal(ws_base64_encode(b, in[i], strlen(in[i])), strlen(out[i]));
        assert_int_equal(WS_BASE64_LEN(strlen(in[i])), strlen(out[i]));
        assert_string_equal(b, out[i]);
    }
}

/* A client key is 24 characters the server side accepts as a key. */
static void test_base64_client_key(void **state)
{
    (void)state;
    static const unsigned char nonce[16] = "the sample nonce";
    char key[WS_KEY_LEN + 1];
    assert_int_equal(ws_base64_encode(key, nonce, 16), WS_KEY_LEN);
    assert_string_equal(key, "dGhlIHNhbXBsZSBub25jZQ==");
}

static ws_http_resp response(const char *head)
{
    ws_http_resp r;
    static const ws_http_limits lim = {.max_head = 4096, .max_headers = 16};
    assert_int_equal(ws_http_parse_response(head, strlen(head), 0, &lim, &r), (int)strlen(head));
    return r;
}

static void test_client_checks_accept(void **state)
{
    (void)state;
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    ws_http_resp r = response("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "sec-websocket-accept: " RFC_ACCEPT "\r\n\r\n");
    assert_true(ws_handshake_accept_ok(&r, key, 24));
    assert_false(ws_handshake_accept_ok(&r, "x3JJHMbDL1EzLkh9GBhXDw==", 24));
    r = response("HTTP/1.1 101 Switching Protocols\r\n\r\n");
    assert_false(ws_handshake_accept_ok(&r, key, 24));
    r = response("HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: " RFC_ACCEPT "x\r\n\r\n");
    assert_false(ws_handshake_accept_ok(&r, key, 24));
}

/* ---- success ----------------------------------------------------------------------------- */

static void test_valid_request_is_accepted(void **state)
{
    (void)state;
    ws_hs_result r;
    int st = check_with(REQ_LINE HOST UPGRADE CONNECTION KEY VERSION END, &NO_OPTS, &r);
    assert_int_equal(st, 101);
    assert_int_equal(r.status, 101);
    assert_string_equal(r.accept, RFC_ACCEPT);
    assert_int_equal(r.protocol, -1);
}

static void test_key_with_plus_and_slash_is_accepted(void **state)
{
    (void)state;
    ws_hs_result r;
    int st = check_with(REQ_LINE HOST UPGRADE CONNECTION
                        "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAA+/w==\r\n" VERSION END,
                        &NO_OPTS, &r);
    assert_int_equal(st, 101);
    assert_string_equal(r.accept, "Bx3W8HyqehoAICTa8obrF6wyjhg=");
}

static void test_header_names_and_upgrade_value_ignore_case(void **state)
{
    (void)state;
    assert_status(REQ_LINE "host: h\r\n"
                           "upgrade: WebSocket\r\n"
                           "connection: upgrade\r\n"
                           "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "sec-websocket-version: 13\r\n" END,
                  101);
}

static void test_101_response_headers(void **state)
{
    (void)state;
    char out[512];
    size_t n = ws_handshake_response(out, sizeof out, RFC_ACCEPT, NULL);
    assert_true(n > 0);
    assert_memory_equal(out, "HTTP/1.1 101 Switching Protocols\r\n", 34);
    assert_contains(out, n, "\r\nUpgrade: websocket\r\n");
    assert_contains(out, n, "\r\nConnection: Upgrade\r\n");
    assert_contains(out, n, "\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\n");
    assert_memory_equal(out + n - 4, "\r\n\r\n", 4);
    assert_true(memmem(out, n, "\r\n\r\n", 4) == out + n - 4);
    assert_null(memmem(out, n, "Sec-WebSocket-Protocol", 22));
}

static void test_101_response_names_chosen_protocol(void **state)
{
    (void)state;
    char out[512];
    size_t n = ws_handshake_response(out, sizeof out, RFC_ACCEPT, "chat.v2");
    assert_true(n > 0);
    assert_contains(out, n, "\r\nSec-WebSocket-Protocol: chat.v2\r\n");
    assert_contains(out, n, "\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\n");
    assert_memory_equal(out + n - 4, "\r\n\r\n", 4);
    assert_true(memmem(out, n, "\r\n\r\n", 4) == out + n - 4);
}

static void test_101_response_too_small_is_refused(void **state)
{
    (void)state;
    char full[512];
    size_t fn = ws_handshake_response(full, sizeof full, RFC_ACCEPT, "chat");
    for (size_t cap = 0; cap < fn; cap++) {
        char *out = malloc(cap ? cap : 1);
        assert_non_null(out);
        size_t n = ws_handshake_response(out, cap, RFC_ACCEPT, "chat");
        free(out);
        if (n != 0)
            fail_msg("cap %zu < %zu gave %zu bytes", cap, fn, n);
    }
}

/* ---- request faults ---------------------------------------------------------------------- */

static void test_missing_host_is_400(void **state)
{
    (void)state;
    assert_status(REQ_LINE UPGRADE CONNECTION KEY VERSION END, 400);
}

static void test_two_hosts_is_400(void **state)
{
    (void)state;
    assert_status(REQ_LINE HOST "Host: other.example.com\r\n" UPGRADE CONNECTION KEY VERSION END,
                  400);
}

static void test_non_get_is_400(void **state)
{
    (void)state;
    assert_status("POST /chat HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION END, 400);
    assert_status("HEAD /chat HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION END, 400);
}

static void test_http_1_0_is_400(void **state)
{
    (void)state;
    assert_status("GET /chat HTTP/1.0\r\n" HOST UPGRADE CONNECTION KEY VERSION END, 400);
    assert_status("GET /chat HTTP/2.0\r\n" HOST UPGRADE CONNECTION KEY VERSION END, 505);
    assert_status("GET /chat HTTP/9.9\r\n" HOST UPGRADE CONNECTION KEY VERSION END, 505);
    assert_status("GET /chat HTTP/1.2\r\n" HOST UPGRADE CONNECTION KEY VERSION END, 101);
}

static void test_missing_upgrade_is_400(void **state)
{
    (void)state;
    assert_status(REQ_LINE HOST CONNECTION KEY VERSION END, 400);
    assert_status(REQ_LINE HOST "Upgrade: h2c\r\n" CONNECTION KEY VERSION END, 400);
}

static void test_connection_token_list_is_accepted(void **state)
{
    (void)state;
    assert_status(REQ_LINE HOST UPGRADE "Connection: keep-alive, Upgrade\r\n" KEY VERSION END, 101);
    assert_status(REQ_LINE HOST UPGRADE "Connection: keep-alive, UPGRADE\r\n" KEY VERSION END, 101);
    assert_status(REQ_LINE HOST UPGRADE "Connection: upgrade,keep-alive\r\n" KEY VERSION END, 101);
    assert_status(REQ_LINE HOST UPGRADE "Connection: keep-alive\r\nConnection: Upgrade\r\n" KEY
                      VERSION END,
                  101);
}

static void test_connection_without_upgrade_token_is_400(void **state)
{
    (void)state;
    assert_status(REQ_LINE HOST UPGRADE KEY VERSION END, 400);
    assert_status(REQ_LINE HOST UPGRADE "Connection: keep-alive\r\n" KEY VERSION END, 400);
    assert_status(REQ_LINE HOST UPGRADE "Connection: Upgraded, close\r\n" KEY VERSION END, 400);
}

static void test_version_8_is_426_naming_13(void **state)
{
    (void)state;
    ws_hs_result r;
    int st = check_with(REQ_LINE HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version: 8\r\n" END,
                        &NO_OPTS, &r);
    assert_int_equal(st, 426);
    char out[512];
    size_t n = ws_handshake_error(out, sizeof out, &r);
    assert_true(n > 0);
    assert_memory_equal(out, "HTTP/1.1 426 ", 13);
    assert_contains(out, n, "\r\nSec-WebSocket-Version: 13\r\n");
}

static void test_missing_version_is_426(void **state)
{
    (void)state;
    ws_hs_result r;
    assert_int_equal(check_with(REQ_LINE HOST UPGRADE CONNECTION KEY END, &NO_OPTS, &r), 426);
    char out[512];
    size_t n = ws_handshake_error(out, sizeof out, &r);
    assert_contains(out, n, "\r\nSec-WebSocket-Version: 13\r\n");
}

static void test_other_versions_are_426(void **state)
{
    (void)state;
    assert_status(REQ_LINE HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version: 14\r\n" END, 426);
    assert_status(REQ_LINE HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version: 013\r\n" END, 426);
    assert_status(REQ_LINE HOST UPGRADE CONNECTION KEY VERSION "Sec-WebSocket-Version: 8\r\n" END,
                  426);
}

static void test_400_error_response(void **state)
{
    (void)state;
    ws_hs_result r;
    assert_int_equal(check_with(REQ_LINE UPGRADE CONNECTION KEY VERSION END, &NO_OPTS, &r), 400);
    char out[512];
    size_t n = ws_handshake_error(out, sizeof out, &r);
    assert_true(n > 0);
    assert_memory_equal(out, "HTTP/1.1 400 Bad Request\r\n", 26);
    assert_contains(out, n, r.reason);
    assert_contains(out, n, "\r\nConnection: close\r\n");
}

static void key_status(const char *key, int want)
{
    char head[512];
    snprintf(head, sizeof head, "%sSec-WebSocket-Key: %s\r\n%s",
             REQ_LINE HOST UPGRADE CONNECTION, key, VERSION END);
    assert_status(head, want);
}

static void test_key_of_wrong_length_is_400(void **state)
{
    (void)state;
    key_status("dGhlIHNhbXBsZSBub25j", 400);             /* 15 bytes, no padding */
    key_status("dGhlIHNhbXBsZSBub25jZQ==dGhl", 400);     /* 24 + 4 */
    key_status("dGhlIHNhbXBsZSBub25jZSE=", 400);         /* 17 bytes */
    key_status("dGhlIHNhbXBsZSBub25jZSEh", 400);         /* 18 bytes */
    key_status("dGhlIHNhbXBsZSBub25jZSEhIQ==", 400);     /* 19 bytes */
    key_status("", 400);
}

static void test_key_with_bad_chars_is_400(void **state)
{
    (void)state;
    key_status("dGhlIHNhbXBsZSBub25jZ*==", 400);
    key_status("dGhlIHNhbXBs-SBub25jZQ==", 400);
    key_status("dGhlIHNhbXBs ZSBub25jZQ==", 400);
}

static void test_key_with_bad_padding_is_400(void **state)
{
    (void)state;
    key_status("dGhlIHNhbXBsZSBub25jZQ=A", 400);
    key_status("dGhlIHNhbXBsZSBub25jZQ", 400);
    key_status("dGhlIHNhbXBsZSBub25jZ===", 400);
    key_status("dGhlIHNhbXBsZSBub25jZQ=", 400);
    key_status("=GhlIHNhbXBsZSBub25jZQ==", 400);
}

static void test_missing_or_two_keys_is_400(void **state)
{
    (void)state;
    assert_status(REQ_LINE HOST UPGRADE CONNECTION KEY KEY VERSION END, 400);
    assert_status(REQ_LINE HOST UPGRADE CONNECTION VERSION END, 400);
}

/* ---- Origin allowlist --------------------------------------------------------------------- */

static void test_unlisted_origin_is_403(void **state)
{
    (void)state;
    assert_int_equal(origin_status("Origin: https://evil.example.com\r\n"), 403);
    assert_int_equal(origin_status("Origin: https://app.example.com.evil\r\n"), 403);
    assert_int_equal(origin_status("Origin: null\r\n"), 403);
}

static void test_listed_origin_is_accepted(void **state)
{
    (void)state;
    assert_int_equal(origin_status("Origin: https://app.example.com\r\n"), 101);
    assert_int_equal(origin_status("Origin: http://localhost:8080\r\n"), 101);
    assert_int_equal(origin_status("Origin: HTTPS://APP.EXAMPLE.COM\r\n"), 101);
}

static void test_absent_origin_is_accepted(void **state)
{
    (void)state;
    assert_int_equal(origin_status(""), 101);
}

static void test_no_allowlist_accepts_any_origin(void **state)
{
    (void)state;
    assert_status(REQ_LINE HOST UPGRADE CONNECTION KEY VERSION "Origin: https://x.example\r\n" END,
                  101);
}

/* ---- subprotocols -------------------------------------------------------------------------- */

static const char *const SERVER_PROTOS[] = {"chat", "superchat", "v2.json"};

static void test_client_first_offered_protocol_wins(void **state)
{
    (void)state;
    assert_int_equal(chosen_protocol("Sec-WebSocket-Protocol: superchat, chat\r\n", SERVER_PROTOS, 3),
                     1);
    assert_int_equal(chosen_protocol("Sec-WebSocket-Protocol: v2.json,chat\r\n", SERVER_PROTOS, 3), 2);
}

static void test_unknown_offers_are_skipped(void **state)
{
    (void)state;
    assert_int_equal(chosen_protocol("Sec-WebSocket-Protocol: mqtt, chat\r\n", SERVER_PROTOS, 3), 0);
}

static void test_protocol_offers_span_several_lines(void **state)
{
    (void)state;
    assert_int_equal(chosen_protocol("Sec-WebSocket-Protocol: mqtt\r\n"
                                     "Sec-WebSocket-Protocol: superchat, chat\r\n",
                                     SERVER_PROTOS, 3),
                     1);
    assert_int_equal(chosen_protocol("Sec-WebSocket-Protocol: v2.json\r\n"
                                     "Sec-WebSocket-Protocol: chat\r\n",
                                     SERVER_PROTOS, 3),
                     2);
}

static void test_no_matching_protocol_chooses_none(void **state)
{
    (void)state;
    assert_int_equal(chosen_protocol("Sec-WebSocket-Protocol: mqtt, wamp\r\n", SERVER_PROTOS, 3), -1);
    assert_int_equal(chosen_protocol("", SERVER_PROTOS, 3), -1);
    assert_int_equal(chosen_protocol("Sec-WebSocket-Protocol: chat\r\n", NULL, 0), -1);
}

/* Near misses of a server protocol are different tokens, never a match. */
static void test_protocol_not_offered_is_never_chosen(void **state)
{
    (void)state;
    assert_int_equal(chosen_protocol("Sec-WebSocket-Protocol: chatty, cha, xchat, superchat2\r\n",
                                     SERVER_PROTOS, 3),
                     -1);
    assert_int_equal(chosen_protocol("Sec-WebSocket-Protocol: ,, \r\n", SERVER_PROTOS, 3), -1);
}

/* ---- upgrade detection ------------------------------------------------------------------------ */

static void test_is_upgrade(void **state)
{
    (void)state;
    static ws_http_req req;
    const ws_http_limits lim = {.max_head = 8192, .max_headers = 64};
    const char *plain = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    const char *up = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\n\r\n";
    assert_true(ws_http_parse(plain, strlen(plain), 0, &lim, &req) > 0);
    assert_false(ws_handshake_is_upgrade(&req));
    assert_true(ws_http_parse(up, strlen(up), 0, &lim, &req) > 0);
    assert_true(ws_handshake_is_upgrade(&req));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_rfc_example),
        cmocka_unit_test(test_accept_other_keys),
        cmocka_unit_test(test_valid_request_is_accepted),
        cmocka_unit_test(test_key_with_plus_and_slash_is_accepted),
        cmocka_unit_test(test_header_names_and_upgrade_value_ignore_case),
        cmocka_unit_test(test_101_response_headers),
        cmocka_unit_test(test_101_response_names_chosen_protocol),
        cmocka_unit_test(test_101_response_too_small_is_refused),
        cmocka_unit_test(test_missing_host_is_400),
        cmocka_unit_test(test_two_hosts_is_400),
        cmocka_unit_test(test_non_get_is_400),
        cmocka_unit_test(test_http_1_0_is_400),
        cmocka_unit_test(test_missing_upgrade_is_400),
        cmocka_unit_test(test_connection_token_list_is_accepted),
        cmocka_unit_test(test_connection_without_upgrade_token_is_400),
        cmocka_unit_test(test_version_8_is_426_naming_13),
        cmocka_unit_test(test_missing_version_is_426),
        cmocka_unit_test(test_other_versions_are_426),
        cmocka_unit_test(test_400_error_response),
        cmocka_unit_test(test_key_of_wrong_length_is_400),
        cmocka_unit_test(test_key_with_bad_chars_is_400),
        cmocka_unit_test(test_key_with_bad_padding_is_400),
        cmocka_unit_test(test_missing_or_two_keys_is_400),
        cmocka_unit_test(test_unlisted_origin_is_403),
        cmocka_unit_test(test_listed_origin_is_accepted),
        cmocka_unit_test(test_absent_origin_is_accepted),
        cmocka_unit_test(test_no_allowlist_accepts_any_origin),
        cmocka_unit_test(test_client_first_offered_protocol_wins),
        cmocka_unit_test(test_unknown_offers_are_skipped),
        cmocka_unit_test(test_protocol_offers_span_several_lines),
        cmocka_unit_test(test_no_matching_protocol_chooses_none),
        cmocka_unit_test(test_protocol_not_offered_is_never_chosen),
        cmocka_unit_test(test_is_upgrade),
        cmocka_unit_test(test_base64_rfc4648_vectors),
        cmocka_unit_test(test_base64_client_key),
        cmocka_unit_test(test_client_checks_accept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
