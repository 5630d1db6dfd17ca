/* envelope: client protocol v1 requests and server replies in JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "envelope.h"
#include "ws_json.h"

/* ---- helpers ------------------------------------------------------------------------------ */

typedef struct parsed {
    int rc;
    env_req r;
    const char *err, *why;
} parsed;

static parsed parse_max(const char *s, size_t max_data)
{
    parsed p = {0};
    p.rc = env_parse(s, strlen(s), max_data, &p.r, &p.err, &p.why);
    return p;
}

static parsed parse_ok(const char *s)
{
    parsed p = parse_max(s, 0);
    if (p.rc != 0)
        fail_msg("rejected (%s: %s): %s", p.err, p.why, s);
    return p;
}

static parsed assert_error_max(const char *s, size_t max_data, const char *want)
{
    parsed p = parse_max(s, max_data);
    if (p.rc != -1)
        fail_msg("accepted, want %s: %s", want, s);
    assert_non_null(p.err);
    assert_non_null(p.why);
    if (strcmp(p.err, want) != 0)
        fail_msg("%s (%s), want %s: %s", p.err, p.why, want, s);
    return p;
}

static parsed assert_error(const char *s, const char *want) { return assert_error_max(s, 0, want); }

static void assert_span(ws_span sp, const char *want)
{
    if (sp.n != strlen(want) || (sp.n && memcmp(sp.p, want, sp.n) != 0))
        fail_msg("span \"%.*s\", want \"%s\"", (int)sp.n, sp.n ? sp.p : "", want);
}

/* A channel name of n bytes. */
static void channel_of(char *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = "abcXYZ019._:-"[i % 13];
    out[n] = '\0';
}

/* The value span of member `key` in the JSON object s[0..n); asserts that it exists. */
typedef struct lookup {
    const char *key;
    ws_span val;
    int found;
} lookup;

static int find_cb(void *ctx, const char *k, size_t kn, const char *v, size_t vn)
{
    lookup *l = ctx;
    if (strlen(l->key) == kn && memcmp(k, l->key, kn) == 0) {
        l->val = (ws_span){v, vn};
        l->found++;
    }
    return 0;
}

static ws_span member(const char *s, size_t n, const char *key)
{
    lookup l = {.key = key};
    assert_int_equal(ws_json_object(s, n, find_cb, &l), 0);
    if (l.found != 1)
        fail_msg("member \"%s\" found %d times in %.*s", key, l.found, (int)n, s);
    return l.val;
}

static bool has_member(const char *s, size_t n, const char *key)
{
    lookup l = {.key = key};
    assert_int_equal(ws_json_object(s, n, find_cb, &l), 0);
    return l.found > 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    o[0] = (char)(0xE0 | cp >> 12);
    o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

/* Decodes a JSON string token (with its quotes) into out, NUL-terminated (BMP escapes only:
 * enough for what the writers produce). */
static void decode_string(ws_span tok, char *out, size_t cap)
{
    assert_true(tok.n >= 2 && tok.p[0] == '"' && tok.p[tok.n - 1] == '"');
    size_t o = 0;
    for (size_t i = 1; i + 1 < tok.n; i++) {
        assert_true(o + 4 < cap);
        char c = tok.p[i];
        if (c != '\\') {
            out[o++] = c;
            continue;
        }
        c = tok.p[++i];
        switch (c) {
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            char hex[5] = {tok.p[i + 1], tok.p[i + 2], tok.p[i + 3], tok.p[i + 4], 0};
            o += put_utf8(out + o, (unsigned)strtoul(hex, NULL, 16));
            i += 4;
            break;
        }
        default: out[o++] = c; break; /* \" \\ \/ */
        }
    }
    out[o] = '\0';
}

static void assert_string_member(const char *s, size_t n, const char *key, const char *want)
{
    char buf[512];
    decode_string(member(s, n, key), buf, sizeof buf);
    assert_string_equal(buf, want);
}

/* ---- parsing each op ---------------------------------------------------------------------- */

static void test_parse_sub(void **state)
{
    (void)state;
    parsed p = parse_ok("{\"op\":\"sub\",\"ch\":\"room.1\",\"id\":5}");
    assert_int_equal(p.r.op, ENV_OP_SUB);
    assert_span(p.r.ch, "room.1");
    assert_span(p.r.id, "5");
    assert_false(p.r.has_since);
    assert_false(p.r.events);
}

static void test_parse_sub_with_since_and_events(void **state)
{
    (void)state;
    parsed p = parse_ok("{\"op\":\"sub\",\"ch\":\"c\",\"since\":42,\"events\":true}");
    assert_true(p.r.has_since);
    assert_int_equal(p.r.since, 42);
    assert_true(p.r.events);
    p = parse_ok("{\"op\":\"sub\",\"ch\":\"c\",\"since\":0,\"events\":false}");
    assert_true(p.r.has_since);
    assert_int_equal(p.r.since, 0);
    assert_false(p.r.events);
    p = parse_ok("{\"op\":\"sub\",\"ch\":\"c\",\"since\":18446744073709551609}");
    assert_int_equal(p.r.since, 18446744073709551609ull);
}

static void test_parse_unsub(void **state)
{
    (void)state;
    parsed p = parse_ok("{\"op\":\"unsub\",\"ch\":\"a:b\"}");
    assert_int_equal(p.r.op, ENV_OP_UNSUB);
    assert_span(p.r.ch, "a:b");
    assert_int_equal(p.r.id.n, 0);
}

static void test_parse_pub(void **state)
{
    (void)state;
    parsed p = parse_ok("{\"op\":\"pub\",\"ch\":\"news\",\"data\":{\"t\":\"hi\"},\"id\":\"r1\"}");
    assert_int_equal(p.r.op, ENV_OP_PUB);
    assert_span(p.r.ch, "news");
    assert_span(p.r.data, "{\"t\":\"hi\"}");
    assert_span(p.r.id, "\"r1\"");
}

static void test_parse_presence(void **state)
{
    (void)state;
    parsed p = parse_ok("{\"op\":\"presence\",\"ch\":\"lobby\"}");
    assert_int_equal(p.r.op, ENV_OP_PRESENCE);
    assert_span(p.r.ch, "lobby");
}

static void test_parse_send(void **state)
{
    (void)state;
    parsed p = parse_ok("{\"op\":\"send\",\"to\":\"c-17\",\"data\":[1,2]}");
    assert_int_equal(p.r.op, ENV_OP_SEND);
    assert_span(p.r.to, "c-17");
    assert_span(p.r.data, "[1,2]");
}

/* ---- data, id and unknown members ----------------------------------------------------------- */

static void test_data_is_kept_verbatim(void **state)
{
    (void)state;
    const char *datas[] = {
        "{ \"a\" : [1, 2.50, \"x\\\"y\\u00e9\"] ,\n\t\"b\":null }",
        "\"  spaced string  \"",
        "-0.0e+00",
        "null",
        "[ ]",
        "\"caf\xC3\xA9 \\ud83d\\ude00\"",
    };
    for (size_t i = 0; i < sizeof datas / sizeof datas[0]; i++) {
        char msg[256];
        snprintf(msg, sizeof msg, "{\"op\":\"pub\",\"ch\":\"c\",\"data\": %s }", datas[i]);
        parsed p = parse_ok(msg);
        assert_span(p.r.data, datas[i]);
        assert_true(p.r.data.p >= msg && p.r.data.p + p.r.data.n <= msg + strlen(msg));
    }
}

static void test_unknown_members_are_ignored(void **state)
{
    (void)state;
    parsed p = parse_ok("{\"v\":2,\"op\":\"sub\",\"future\":{\"op\":\"x\",\"ch\":5},\"ch\":\"c\","
                        "\"Op\":\"nope\",\"list\":[true]}");
    assert_int_equal(p.r.op, ENV_OP_SUB);
    assert_span(p.r.ch, "c");
}

static void test_id_is_kept_verbatim(void **state)
{
    (void)state;
    assert_span(parse_ok("{\"op\":\"sub\",\"ch\":\"c\",\"id\":1.50}").r.id, "1.50");
    assert_span(parse_ok("{\"op\":\"sub\",\"ch\":\"c\",\"id\":-0}").r.id, "-0");
    assert_span(parse_ok("{\"op\":\"sub\",\"ch\":\"c\",\"id\":\"a\\\"b\"}").r.id, "\"a\\\"b\"");
    assert_span(parse_ok("{\"op\":\"sub\",\"ch\":\"c\",\"id\": 7 }").r.id, "7");
}

static void test_id_of_64_bytes_is_accepted(void **state)
{
    (void)state;
    char msg[256], id[65];
    memset(id, '9', 64);
    id[64] = '\0';
    snprintf(msg, sizeof msg, "{\"op\":\"sub\",\"ch\":\"c\",\"id\":%s}", id);
    assert_span(parse_ok(msg).r.id, id);
}

/* Errors found after the whole object was read still name the request. */
static void test_id_is_filled_on_later_errors(void **state)
{
    (void)state;
    assert_span(assert_error("{\"id\":9,\"op\":\"nope\"}", ENV_ERR_BAD_OP).r.id, "9");
    assert_span(assert_error("{\"op\":\"sub\",\"ch\":\"a b\",\"id\":\"x\"}", ENV_ERR_BAD_CHANNEL).r.id,
                "\"x\"");
    assert_span(assert_error("{\"op\":\"pub\",\"ch\":\"c\",\"id\":3}", ENV_ERR_BAD_REQUEST).r.id, "3");
    assert_span(assert_error_max("{\"op\":\"pub\",\"ch\":\"c\",\"data\":\"12345\",\"id\":4}", 3,
                                 ENV_ERR_TOO_LARGE)
                    .r.id,
                "4");
    /* A bad member before the id must not hide it. */
    assert_span(assert_error("{\"op\":5,\"id\":6}", ENV_ERR_BAD_OP).r.id, "6");
    assert_span(assert_error("{\"op\":\"sub\",\"ch\":\"c\",\"events\":1,\"id\":7}",
                             ENV_ERR_BAD_REQUEST).r.id,
                "7");
}

static void test_since_spans_all_of_uint64(void **state)
{
    (void)state;
    parsed p = parse_ok("{\"op\":\"sub\",\"ch\":\"c\",\"since\":18446744073709551615}");
    assert_true(p.r.has_since);
    assert_true(p.r.since == UINT64_MAX);
    p = parse_ok("{\"op\":\"sub\",\"ch\":\"c\",\"since\":0}");
    assert_true(p.r.has_since && p.r.since == 0);
}

/* ---- errors ------------------------------------------------------------------------------------ */

static void test_bad_json(void **state)
{
    (void)state;
    const char *cases[] = {"", "not json", "[\"op\",\"sub\"]", "\"sub\"", "null",
                           "{\"op\":\"sub\",\"ch\":\"c\",}", "{\"op\":\"sub\"} {}",
                           "{\"op\":\"sub\",\"ch\":\"c\""};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_error(cases[i], ENV_ERR_BAD_JSON);
}

static void test_bad_op(void **state)
{
    (void)state;
    assert_error("{\"ch\":\"c\"}", ENV_ERR_BAD_OP);
    assert_error("{}", ENV_ERR_BAD_OP);
    assert_error("{\"op\":\"subscribe\",\"ch\":\"c\"}", ENV_ERR_BAD_OP);
    assert_error("{\"op\":\"SUB\",\"ch\":\"c\"}", ENV_ERR_BAD_OP);
    assert_error("{\"op\":\"\",\"ch\":\"c\"}", ENV_ERR_BAD_OP);
    assert_error("{\"op\":\"msg\",\"ch\":\"c\"}", ENV_ERR_BAD_OP);
    assert_error("{\"op\":5,\"ch\":\"c\"}", ENV_ERR_BAD_OP);
    assert_error("{\"op\":null,\"ch\":\"c\"}", ENV_ERR_BAD_OP);
    assert_error("{\"op\":[\"sub\"],\"ch\":\"c\"}", ENV_ERR_BAD_OP);
}

static void assert_channel_error_for_every_op(const char *ch_member)
{
    static const char *const ops[] = {"sub", "unsub", "pub", "presence"};
    for (size_t i = 0; i < 4; i++) {
        char msg[512];
        snprintf(msg, sizeof msg, "{\"op\":\"%s\"%s,\"data\":1}", ops[i], ch_member);
        assert_error(msg, ENV_ERR_BAD_CHANNEL);
    }
}

static void test_bad_channel(void **state)
{
    (void)state;
    assert_channel_error_for_every_op("");
    assert_channel_error_for_every_op(",\"ch\":\"\"");
    assert_channel_error_for_every_op(",\"ch\":\"a b\"");
    assert_channel_error_for_every_op(",\"ch\":\"a/b\"");
    assert_channel_error_for_every_op(",\"ch\":\"caf\xC3\xA9\"");
    assert_channel_error_for_every_op(",\"ch\":\"\\u0041\"");
    assert_channel_error_for_every_op(",\"ch\":5");
    assert_channel_error_for_every_op(",\"ch\":null");
    assert_channel_error_for_every_op(",\"ch\":[\"a\"]");
}

static void test_channel_length_limit(void **state)
{
    (void)state;
    char ch[ENV_CHANNEL_MAX + 2], msg[512];
    channel_of(ch, ENV_CHANNEL_MAX);
    snprintf(msg, sizeof msg, "{\"op\":\"sub\",\"ch\":\"%s\"}", ch);
    assert_span(parse_ok(msg).r.ch, ch);
    channel_of(ch, ENV_CHANNEL_MAX + 1);
    snprintf(msg, sizeof msg, "{\"op\":\"sub\",\"ch\":\"%s\"}", ch);
    assert_error(msg, ENV_ERR_BAD_CHANNEL);
}

static void test_channel_alphabet(void **state)
{
    (void)state;
    assert_true(env_channel_valid((ws_span){"AZaz09._:-", 10}));
    for (int c = 1; c < 256; c++) {
        bool want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == ':' || c == '-';
        char s[3] = {'a', (char)c, 'b'};
        if (env_channel_valid((ws_span){s, 3}) != want)
            fail_msg("channel char 0x%02X: wrong verdict", c);
    }
}

static void test_bad_request_missing_fields(void **state)
{
    (void)state;
    assert_error("{\"op\":\"pub\",\"ch\":\"c\"}", ENV_ERR_BAD_REQUEST);
    assert_error("{\"op\":\"send\",\"to\":\"c-1\"}", ENV_ERR_BAD_REQUEST);
    assert_error("{\"op\":\"send\",\"data\":1}", ENV_ERR_BAD_REQUEST);
    assert_error("{\"op\":\"send\",\"to\":\"\",\"data\":1}", ENV_ERR_BAD_REQUEST);
    assert_error("{\"op\":\"send\",\"to\":17,\"data\":1}", ENV_ERR_BAD_REQUEST);
}

static void test_bad_request_id_type(void **state)
{
    (void)state;
    const char *ids[] = {"true", "false", "null", "{}", "[1]",
                         "\"0123456789012345678901234567890123456789012345678901234567890123\""};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        char msg[256];
        snprintf(msg, sizeof msg, "{\"op\":\"sub\",\"ch\":\"c\",\"id\":%s}", ids[i]);
        assert_error(msg, ENV_ERR_BAD_REQUEST);
    }
}

static void test_bad_request_since(void **state)
{
    (void)state;
    const char *values[] = {"-1", "1.5", "1.0", "1e3", "\"5\"", "null", "true", "[1]",
                            "18446744073709551616", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char msg[256];
        snprintf(msg, sizeof msg, "{\"op\":\"sub\",\"ch\":\"c\",\"since\":%s}", values[i]);
        assert_error(msg, ENV_ERR_BAD_REQUEST);
    }
}

static void test_bad_request_events(void **state)
{
    (void)state;
    assert_error("{\"op\":\"sub\",\"ch\":\"c\",\"events\":1}", ENV_ERR_BAD_REQUEST);
    assert_error("{\"op\":\"sub\",\"ch\":\"c\",\"events\":\"true\"}", ENV_ERR_BAD_REQUEST);
}

static void test_data_over_max_is_too_large(void **state)
{
    (void)state;
    const char *pub = "{\"op\":\"pub\",\"ch\":\"c\",\"data\":\"12345678\"}"; /* data: 10 bytes */
    assert_error_max(pub, 9, ENV_ERR_TOO_LARGE);
    assert_int_equal(parse_max(pub, 10).rc, 0);
    assert_int_equal(parse_max(pub, 0).rc, 0);
    assert_error_max("{\"op\":\"send\",\"to\":\"x\",\"data\":[1,2,3,4,5]}", 10, ENV_ERR_TOO_LARGE);
}

/* ---- writers ------------------------------------------------------------------------------------ */

static void test_write_msg_exact_text(void **state)
{
    (void)state;
    const char *data = "{\"x\": [1, 2.50], \"s\": \"a\\\"b\"}";
    char out[256];
    size_t n = env_write_msg(out, (ws_span){"room.1", 6}, 42, (ws_span){data, strlen(data)});
    const char *want = "{\"op\":\"msg\",\"ch\":\"room.1\",\"seq\":42,"
                       "\"data\":{\"x\": [1, 2.50], \"s\": \"a\\\"b\"}}";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    assert_true(ws_json_valid(out, n));
}

static void test_msg_len_is_exact(void **state)
{
    (void)state;
    const uint64_t seqs[] = {0, 1, 9, 10, 99, 100, 12345, UINT64_MAX};
    char out[128];
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        size_t n = env_write_msg(out, (ws_span){"c", 1}, seqs[i], (ws_span){"null", 4});
        assert_int_equal(n, env_msg_len(1, seqs[i], 4));
        assert_true(n <= env_msg_size(1, 4));
    }
}

static void check_msg_in_exact_buffer(uint64_t seq, const char *seq_text)
{
    const char *ch = "c";
    const char *data = "null";
    size_t cap = env_msg_size(strlen(ch), strlen(data));
    char *out = malloc(cap);
    assert_non_null(out);
    size_t n = env_write_msg(out, (ws_span){ch, 1}, seq, (ws_span){data, 4});
    assert_true(n <= cap);
    assert_true(ws_json_valid(out, n));
    assert_span(member(out, n, "seq"), seq_text);
    assert_span(member(out, n, "data"), "null");
    free(out);
}

static void test_write_msg_seq_extremes_fit_env_msg_size(void **state)
{
    (void)state;
    check_msg_in_exact_buffer(0, "0");
    check_msg_in_exact_buffer(UINT64_MAX, "18446744073709551615");
}

/* What a publisher sent reaches subscribers byte for byte. */
static void test_pub_data_round_trips_into_msg(void **state)
{
    (void)state;
    const char *req = "{\"op\":\"pub\",\"ch\":\"news.eu\",\"data\":{ \"k\" :\t[\"\\u00e9\", -1e2 ] }}";
    parsed p = parse_ok(req);
    char *out = malloc(env_msg_size(p.r.ch.n, p.r.data.n));
    assert_non_null(out);
    size_t n = env_write_msg(out, p.r.ch, 7, p.r.data);
    assert_true(ws_json_valid(out, n));
    assert_span(member(out, n, "data"), "{ \"k\" :\t[\"\\u00e9\", -1e2 ] }");
    assert_string_member(out, n, "ch", "news.eu");
    assert_string_member(out, n, "op", "msg");
    free(out);
}

static void test_write_ack(void **state)
{
    (void)state;
    char out[128];
    size_t n = env_write_ack(out, sizeof out, (ws_span){0}, false, 0);
    assert_true(ws_json_valid(out, n));
    assert_string_member(out, n, "op", "ack");
    assert_false(has_member(out, n, "id"));
    assert_false(has_member(out, n, "seq"));

    n = env_write_ack(out, sizeof out, (ws_span){"\"r\\\"1\"", 6}, true, UINT64_MAX);
    assert_true(ws_json_valid(out, n));
    assert_span(member(out, n, "id"), "\"r\\\"1\"");
    assert_span(member(out, n, "seq"), "18446744073709551615");

    n = env_write_ack(out, sizeof out, (ws_span){"12", 2}, false, 0);
    assert_true(ws_json_valid(out, n));
    assert_span(member(out, n, "id"), "12");
}

static const char NASTY[] = "say \"hi\"\\ \n\r\t\b\f\x01\x1f end \xC3\xA9";

static void test_write_err_escapes_code_and_reason(void **state)
{
    (void)state;
    char out[512];
    size_t n = env_write_err(out, sizeof out, (ws_span){"5", 1}, ENV_ERR_BAD_CHANNEL, NASTY);
    assert_true(n > 0);
    assert_true(ws_json_valid(out, n));
    assert_string_member(out, n, "op", "err");
    assert_span(member(out, n, "id"), "5");
    assert_string_member(out, n, "code", ENV_ERR_BAD_CHANNEL);
    assert_string_member(out, n, "reason", NASTY);
    for (size_t i = 0; i < n; i++)
        assert_true((unsigned char)out[i] >= 0x20);

    n = env_write_err(out, sizeof out, (ws_span){0}, "q\"uote", "");
    assert_true(ws_json_valid(out, n));
    assert_false(has_member(out, n, "id"));
    assert_string_member(out, n, "code", "q\"uote");
    assert_string_member(out, n, "reason", "");
}

static void test_write_hello_escapes(void **state)
{
    (void)state;
    char out[512];
    size_t n = env_write_hello(out, sizeof out, "c\"1\\", NASTY);
    assert_true(n > 0);
    assert_true(ws_json_valid(out, n));
    assert_string_member(out, n, "op", "hello");
    assert_string_member(out, n, "client", "c\"1\\");
    assert_string_member(out, n, "node", NASTY);
}

/* Every capacity below the full length gives 0, and nothing is written past cap. */
typedef size_t (*writer)(char *out, size_t cap);

static size_t w_hello(char *out, size_t cap) { return env_write_hello(out, cap, "c\"1", NASTY); }
static size_t w_ack(char *out, size_t cap)
{
    return env_write_ack(out, cap, (ws_span){"\"id\"", 4}, true, 123);
}
static size_t w_err(char *out, size_t cap)
{
    return env_write_err(out, cap, (ws_span){"1", 1}, ENV_ERR_BAD_OP, NASTY);
}

static void check_capacities(writer w)
{
    char full[512];
    size_t fn = w(full, sizeof full);
    assert_true(fn > 0);
    for (size_t cap = 0; cap <= fn; cap++) {
        char *out = malloc(cap ? cap : 1);
        assert_non_null(out);
        size_t n = w(out, cap);
        bool same = n == fn && memcmp(out, full, fn) == 0;
        free(out);
        if (cap < fn && n != 0)
            fail_msg("cap %zu < %zu gave %zu", cap, fn, n);
        if (cap == fn && !same)
            fail_msg("cap %zu: not the full reply", cap);
    }
}

static void test_writers_refuse_small_buffers(void **state)
{
    (void)state;
    check_capacities(w_hello);
    check_capacities(w_ack);
    check_capacities(w_err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_sub),
        cmocka_unit_test(test_parse_sub_with_since_and_events),
        cmocka_unit_test(test_parse_unsub),
        cmocka_unit_test(test_parse_pub),
        cmocka_unit_test(test_parse_presence),
        cmocka_unit_test(test_parse_send),
        cmocka_unit_test(test_data_is_kept_verbatim),
        cmocka_unit_test(test_unknown_members_are_ignored),
        cmocka_unit_test(test_id_is_kept_verbatim),
        cmocka_unit_test(test_id_of_64_bytes_is_accepted),
        cmocka_unit_test(test_id_is_filled_on_later_errors),
        cmocka_unit_test(test_since_spans_all_of_uint64),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_bad_op),
        cmocka_unit_test(test_bad_channel),
        cmocka_unit_test(test_channel_length_limit),
        cmocka_unit_test(test_channel_alphabet),
        cmocka_unit_test(test_bad_request_missing_fields),
        cmocka_unit_test(test_bad_request_id_type),
        cmocka_unit_test(test_bad_request_since),
        cmocka_unit_test(test_bad_request_events),
        cmocka_unit_test(test_data_over_max_is_too_large),
        cmocka_unit_test(test_write_msg_exact_text),
        cmocka_unit_test(test_msg_len_is_exact),
        cmocka_unit_test(test_write_msg_seq_extremes_fit_env_msg_size),
        cmocka_unit_test(test_pub_data_round_trips_into_msg),
        cmocka_unit_test(test_write_ack),
        cmocka_unit_test(test_write_err_escapes_code_and_reason),
        cmocka_unit_test(test_write_hello_escapes),
        cmocka_unit_test(test_writers_refuse_small_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
