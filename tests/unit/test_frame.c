/* ws_frame: RFC 6455 section 5 push parser, masking, header and close payload writers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ws_frame.h"

#define S(lit) (lit), sizeof(lit) - 1

#define FIN 0x80
#define RSV1 0x40
#define RSV2 0x20
#define RSV3 0x10

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d}; /* the key of the RFC 5.7 examples */

static const ws_parser_opts CLIENT = {.server = false}; /* reads server frames: unmasked */
static const ws_parser_opts SERVER = {.server = true};  /* reads client frames: masked */

/* ---- test-side input builder ---------------------------------------------------------- */

typedef struct bytes {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n)
        memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void put_byte(bytes *b, uint8_t x) { put(b, &x, 1); }

/* Appends a frame with first byte b0 (FIN, RSV bits, opcode), the shortest length encoding
 * and, with a key, the payload masked byte by byte as section 5.3 describes. */
static void put_frame(bytes *b, uint8_t b0, const void *payload, size_t len, const uint8_t *key)
{
    uint8_t m = key ? 0x80 : 0;
    put_byte(b, b0);
    if (len < 126) {
        put_byte(b, (uint8_t)(m | len));
    } else if (len <= 0xFFFF) {
        put_byte(b, m | 126);
        put_byte(b, (uint8_t)(len >> 8));
        put_byte(b, (uint8_t)len);
    } else {
        put_byte(b, m | 127);
        for (int i = 7; i >= 0; i--)
            put_byte(b, (uint8_t)((uint64_t)len >> (8 * i)));
    }
    if (key)
        put(b, key, 4);
    const uint8_t *src = payload;
    for (size_t i = 0; i < len; i++)
        put_byte(b, (uint8_t)(key ? src[i] ^ key[i % 4] : src[i]));
}

static void put_close(bytes *b, uint16_t code, const char *reason, const uint8_t *key)
{
    uint8_t pl[WS_MAX_CONTROL];
    size_t r = strlen(reason);
    pl[0] = (uint8_t)(code >> 8);
    pl[1] = (uint8_t)code;
    memcpy(pl + 2, reason, r);
    put_frame(b, FIN | WS_OP_CLOSE, pl, 2 + r, key);
}

/* ---- event trace: what a receiver sees, independent of how input was chunked ---------- */

typedef struct rec {
    ws_event_type type; /* WS_EV_DATA here means one whole reassembled message */
    uint8_t opcode;
    bool compressed;
    uint16_t code;
    size_t off, len; /* payload in trace.bytes */
} rec;

typedef struct trace {
    rec recs[64];
    size_t nrecs;
    bytes bytes;   /* payloads of recs */
    bool in_msg;
    rec msg;       /* message being reassembled ... */
    bytes msg_buf; /* ... from these pieces */
} trace;

static void trace_free(trace *t)
{
    free(t->bytes.p);
    free(t->msg_buf.p);
    memset(t, 0, sizeof *t);
}

static void push(trace *t, rec r)
{
    assert_true(t->nrecs < sizeof t->recs / sizeof t->recs[0]);
    t->recs[t->nrecs++] = r;
}

static void record(trace *t, const ws_event *ev)
{
    if (ev->type == WS_EV_DATA) {
        assert_true(ev->opcode == WS_OP_TEXT || ev->opcode == WS_OP_BINARY);
        assert_int_equal(ev->first, !t->in_msg);
        if (!t->in_msg) {
            t->in_msg = true;
            t->msg = (rec){.type = WS_EV_DATA, .opcode = ev->opcode, .compressed = ev->compressed};
            t->msg_buf.n = 0;
        }
        assert_int_equal(ev->opcode, t->msg.opcode);
        put(&t->msg_buf, ev->data, ev->len);
        if (ev->fin) {
            t->msg.off = t->bytes.n;
            t->msg.len = t->msg_buf.n;
            put(&t->bytes, t->msg_buf.p, t->msg_buf.n);
            push(t, t->msg);
            t->in_msg = false;
        }
        return;
    }
    rec r = {.type = ev->type, .code = ev->code, .off = t->bytes.n, .len = ev->len};
    if (ev->type == WS_EV_ERROR)
        r.len = 0;
    else
        put(&t->bytes, ev->data, ev->len);
    push(t, r);
}

/* Feeds one chunk (the caller's heap copy) and records every event; false after an error. */
static bool feed_chunk(ws_parser *p, uint8_t *chunk, size_t len, trace *t)
{
    size_t off = 0;
    for (size_t guard = 0; guard <= len + 1; guard++) {
        ws_event ev;
        size_t used = ws_parser_feed(p, chunk + off, len - off, &ev);
        assert_true(used <= len - off);
        if (ev.type == WS_EV_DATA) { /* DATA spans lie in the bytes consumed by this call */
            assert_true(ev.data >= chunk + off);
            assert_true(ev.data + ev.len <= chunk + off + used);
        }
        off += used;
        if (ev.type == WS_EV_NONE) {
            assert_int_equal(off, len);
            return true;
        }
        record(t, &ev);
        if (ev.type == WS_EV_ERROR)
            return false;
    }
    fail_msg("parser made no progress");
    return false;
}

/* Feeds in[0..n) cut at the ascending positions cuts[0..ncuts), each piece a fresh exact-size
 * heap copy (the parser unmasks in place, and reads past a piece are caught). */
static void feed_cut(const ws_parser_opts *o, const bytes *in, const size_t *cuts, size_t ncuts,
                     trace *t)
{
    ws_parser p;
    ws_parser_init(&p, o);
    memset(t, 0, sizeof *t);
    size_t from = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t to = k < ncuts ? cuts[k] : in->n;
        uint8_t *chunk = malloc(to - from + 1);
        assert_non_null(chunk);
        if (to > from)
            memcpy(chunk, in->p + from, to - from);
        bool alive = feed_chunk(&p, chunk, to - from, t);
        free(chunk);
        if (!alive)
            return;
        from = to;
    }
}

static void feed_whole(const ws_parser_opts *o, const bytes *in, trace *t)
{
    feed_cut(o, in, NULL, 0, t);
}

static void feed_bytewise(const ws_parser_opts *o, const bytes *in, trace *t)
{
    size_t *cuts = malloc((in->n + 1) * sizeof *cuts);
    assert_non_null(cuts);
    for (size_t i = 1; i < in->n; i++)
        cuts[i - 1] = i;
    feed_cut(o, in, cuts, in->n ? in->n - 1 : 0, t);
    free(cuts);
}

static bool traces_equal(const trace *a, const trace *b)
{
    if (a->nrecs != b->nrecs || a->in_msg != b->in_msg)
        return false;
    for (size_t i = 0; i < a->nrecs; i++) {
        const rec *x = &a->recs[i], *y = &b->recs[i];
        if (x->type != y->type || x->opcode != y->opcode || x->code != y->code ||
            x->compressed != y->compressed || x->len != y->len ||
            (x->len && memcmp(a->bytes.p + x->off, b->bytes.p + y->off, x->len) != 0))
            return false;
    }
    return true;
}

static const uint8_t *rec_data(const trace *t, size_t i)
{
    return t->recs[i].len ? t->bytes.p + t->recs[i].off : (const uint8_t *)"";
}

static void assert_message(const trace *t, size_t i, uint8_t opcode, const void *data, size_t len)
{
    assert_true(i < t->nrecs);
    assert_int_equal(t->recs[i].type, WS_EV_DATA);
    assert_int_equal(t->recs[i].opcode, opcode);
    assert_int_equal(t->recs[i].len, len);
    assert_memory_equal(rec_data(t, i), data, len);
}

static void assert_control(const trace *t, size_t i, ws_event_type type, const void *data,
                           size_t len)
{
    assert_true(i < t->nrecs);
    assert_int_equal(t->recs[i].type, type);
    assert_int_equal(t->recs[i].len, len);
    assert_memory_equal(rec_data(t, i), data, len);
}

/* The whole input ends in exactly one error with this close code. */
static void assert_fails(const ws_parser_opts *o, const bytes *in, uint16_t code)
{
    trace t;
    feed_whole(o, in, &t);
    assert_true(t.nrecs > 0);
    assert_int_equal(t.recs[t.nrecs - 1].type, WS_EV_ERROR);
    assert_int_equal(t.recs[t.nrecs - 1].code, code);
    for (size_t i = 0; i + 1 < t.nrecs; i++)
        assert_int_not_equal(t.recs[i].type, WS_EV_ERROR);
    trace_free(&t);
}

/* One frame built with put_frame fails with this code. */
static void assert_frame_fails(const ws_parser_opts *o, uint8_t b0, const void *payload,
                               size_t len, const uint8_t *key, uint16_t code)
{
    bytes in = {0};
    put_frame(&in, b0, payload, len, key);
    assert_fails(o, &in, code);
    free(in.p);
}

/* Feeds whole frames and returns the single event of the last one. */
static ws_event single_event(const ws_parser_opts *o, bytes *in)
{
    ws_parser p;
    ws_parser_init(&p, o);
    ws_event ev;
    size_t used = ws_parser_feed(&p, in->p, in->n, &ev);
    assert_int_equal(used, in->n);
    return ev;
}

static void fill_pattern(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7 + 3);
}

/* ---- RFC 6455 section 5.7 examples ---------------------------------------------------- */

static void feed_literal(const ws_parser_opts *o, const uint8_t *lit, size_t n, trace *t)
{
    bytes in = {0};
    put(&in, lit, n);
    feed_whole(o, &in, t);
    free(in.p);
}

static void test_rfc_unmasked_text(void **state)
{
    (void)state;
    static const uint8_t f[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    trace t;
    feed_literal(&CLIENT, f, sizeof f, &t);
    assert_int_equal(t.nrecs, 1);
    assert_message(&t, 0, WS_OP_TEXT, "Hello", 5);
    trace_free(&t);
}

static void test_rfc_masked_text(void **state)
{
    (void)state;
    static const uint8_t f[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    trace t;
    feed_literal(&SERVER, f, sizeof f, &t);
    assert_int_equal(t.nrecs, 1);
    assert_message(&t, 0, WS_OP_TEXT, "Hello", 5);
    trace_free(&t);
}

static void test_rfc_fragmented_text(void **state)
{
    (void)state;
    static uint8_t f[] = {0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f};
    ws_parser p;
    ws_parser_init(&p, &CLIENT);
    ws_event ev;

    size_t used = ws_parser_feed(&p, f, sizeof f, &ev);
    assert_int_equal(used, 5);
    assert_int_equal(ev.type, WS_EV_DATA);
    assert_int_equal(ev.opcode, WS_OP_TEXT);
    assert_true(ev.first);
    assert_false(ev.fin);
    assert_memory_equal(ev.data, "Hel", 3);
    assert_true(ws_parser_in_message(&p));

    used = ws_parser_feed(&p, f + 5, sizeof f - 5, &ev);
    assert_int_equal(used, 4);
    assert_int_equal(ev.type, WS_EV_DATA);
    assert_int_equal(ev.opcode, WS_OP_TEXT); /* the message's type, not WS_OP_CONT */
    assert_false(ev.first);
    assert_true(ev.fin);
    assert_memory_equal(ev.data, "lo", 2);
    assert_false(ws_parser_in_message(&p));
}

static void test_rfc_unmasked_ping(void **state)
{
    (void)state;
    static const uint8_t f[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    trace t;
    feed_literal(&CLIENT, f, sizeof f, &t);
    assert_int_equal(t.nrecs, 1);
    assert_control(&t, 0, WS_EV_PING, "Hello", 5);
    trace_free(&t);
}

static void test_rfc_masked_pong(void **state)
{
    (void)state;
    static const uint8_t f[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    trace t;
    feed_literal(&SERVER, f, sizeof f, &t);
    assert_int_equal(t.nrecs, 1);
    assert_control(&t, 0, WS_EV_PONG, "Hello", 5);
    trace_free(&t);
}

/* Binary message of n bytes whose header is given literally. */
static void check_rfc_binary(const uint8_t *hdr, size_t hlen, size_t n)
{
    bytes in = {0};
    put(&in, hdr, hlen);
    uint8_t *payload = malloc(n);
    assert_non_null(payload);
    fill_pattern(payload, n);
    put(&in, payload, n);
    trace t;
    feed_whole(&CLIENT, &in, &t);
    assert_int_equal(t.nrecs, 1);
    assert_message(&t, 0, WS_OP_BINARY, payload, n);
    trace_free(&t);
    feed_bytewise(&CLIENT, &in, &t);
    assert_int_equal(t.nrecs, 1);
    assert_message(&t, 0, WS_OP_BINARY, payload, n);
    trace_free(&t);
    free(payload);
    free(in.p);
}

static void test_rfc_256_byte_binary_16_bit_length(void **state)
{
    (void)state;
    static const uint8_t hdr[] = {0x82, 0x7E, 0x01, 0x00};
    check_rfc_binary(hdr, sizeof hdr, 256);
}

static void test_rfc_64k_binary_64_bit_length(void **state)
{
    (void)state;
    static const uint8_t hdr[] = {0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00};
    check_rfc_binary(hdr, sizeof hdr, 65536);
}

static void test_rfc_unmasked_examples_rejected_by_server(void **state)
{
    (void)state;
    static const uint8_t f[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    bytes in = {0};
    put(&in, f, sizeof f);
    assert_fails(&SERVER, &in, WS_CLOSE_PROTOCOL);
    free(in.p);
}

static void test_rfc_masked_examples_rejected_by_client(void **state)
{
    (void)state;
    static const uint8_t f[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    bytes in = {0};
    put(&in, f, sizeof f);
    assert_fails(&CLIENT, &in, WS_CLOSE_PROTOCOL);
    free(in.p);
}

/* ---- any chunking gives the same events ----------------------------------------------- */

/* Fragmented text with multi-byte characters cut between fragments, interleaved ping and
 * pong, an empty fragment, a 16-bit-length binary, then a close. */
static void build_sequence(bytes *in, const uint8_t *key)
{
    uint8_t bin[300];
    fill_pattern(bin, sizeof bin);
    put_frame(in, WS_OP_TEXT, S("Hel"), key);
    put_frame(in, FIN | WS_OP_PING, S("ping!"), key);
    put_frame(in, WS_OP_CONT, S("lo w\xC3"), key); /* U+00E9 split across fragments */
    put_frame(in, WS_OP_CONT, "", 0, key);
    put_frame(in, FIN | WS_OP_PONG, "", 0, key);
    put_frame(in, FIN | WS_OP_CONT, S("\xA9rld \xE2\x82\xAC"), key);
    put_frame(in, FIN | WS_OP_TEXT, "", 0, key);
    put_frame(in, FIN | WS_OP_BINARY, bin, sizeof bin, key);
    put_frame(in, WS_OP_BINARY, bin, 10, key);
    put_frame(in, FIN | WS_OP_CONT, bin + 10, 5, key);
    put_close(in, 1000, "bye", key);
}

static void check_sequence_events(const trace *t)
{
    uint8_t bin[300];
    fill_pattern(bin, sizeof bin);
    assert_int_equal(t->nrecs, 7);
    assert_control(t, 0, WS_EV_PING, "ping!", 5);
    assert_control(t, 1, WS_EV_PONG, "", 0);
    assert_message(t, 2, WS_OP_TEXT, S("Hello w\xC3\xA9rld \xE2\x82\xAC"));
    assert_message(t, 3, WS_OP_TEXT, "", 0);
    assert_message(t, 4, WS_OP_BINARY, bin, sizeof bin);
    assert_message(t, 5, WS_OP_BINARY, bin, 15);
    assert_control(t, 6, WS_EV_CLOSE, "bye", 3);
    assert_int_equal(t->recs[6].code, 1000);
}

static void check_every_split(const ws_parser_opts *o, const uint8_t *key)
{
    bytes in = {0};
    build_sequence(&in, key);
    trace whole, split;
    feed_whole(o, &in, &whole);
    check_sequence_events(&whole);

    for (size_t cut = 0; cut <= in.n; cut++) {
        feed_cut(o, &in, &cut, 1, &split);
        if (!traces_equal(&whole, &split))
            fail_msg("split at %zu of %zu differs", cut, in.n);
        trace_free(&split);
    }
    feed_bytewise(o, &in, &split);
    assert_true(traces_equal(&whole, &split));
    trace_free(&split);
    trace_free(&whole);
    free(in.p);
}

static void test_every_split_unmasked(void **state)
{
    (void)state;
    check_every_split(&CLIENT, NULL);
}

static void test_every_split_masked(void **state)
{
    (void)state;
    check_every_split(&SERVER, KEY);
}

/* Every prefix is a valid start: the events seen are a prefix of the whole input's. */
static void test_every_prefix_is_not_an_error(void **state)
{
    (void)state;
    bytes in = {0};
    build_sequence(&in, KEY);
    for (size_t n = 0; n <= in.n; n++) {
        bytes pre = {0};
        put(&pre, in.p, n);
        trace t;
        feed_whole(&SERVER, &pre, &t);
        for (size_t i = 0; i < t.nrecs; i++)
            if (t.recs[i].type == WS_EV_ERROR)
                fail_msg("prefix of %zu bytes: error %u", n, t.recs[i].code);
        trace_free(&t);
        free(pre.p);
    }
    free(in.p);
}

/* ---- invalid input: one close code per class of fault --------------------------------- */

static void test_unmasked_client_frame_is_1002(void **state)
{
    (void)state;
    assert_frame_fails(&SERVER, FIN | WS_OP_TEXT, S("hi"), NULL, WS_CLOSE_PROTOCOL);
    assert_frame_fails(&SERVER, FIN | WS_OP_PING, S("hi"), NULL, WS_CLOSE_PROTOCOL);
}

static void test_masked_frame_to_client_is_1002(void **state)
{
    (void)state;
    assert_frame_fails(&CLIENT, FIN | WS_OP_TEXT, S("hi"), KEY, WS_CLOSE_PROTOCOL);
    assert_frame_fails(&CLIENT, FIN | WS_OP_CLOSE, "", 0, KEY, WS_CLOSE_PROTOCOL);
}

static void test_rsv_bits_without_extension_are_1002(void **state)
{
    (void)state;
    const uint8_t rsv[] = {RSV1, RSV2, RSV3};
    for (size_t i = 0; i < 3; i++) {
        assert_frame_fails(&CLIENT, FIN | rsv[i] | WS_OP_TEXT, S("hi"), NULL, WS_CLOSE_PROTOCOL);
        assert_frame_fails(&CLIENT, FIN | rsv[i] | WS_OP_BINARY, S("hi"), NULL, WS_CLOSE_PROTOCOL);
        assert_frame_fails(&CLIENT, FIN | rsv[i] | WS_OP_PING, S("hi"), NULL, WS_CLOSE_PROTOCOL);
    }
}

static void test_rsv1_with_extension_marks_message_compressed(void **state)
{
    (void)state;
    const ws_parser_opts o = {.server = false, .rsv1 = true};
    bytes in = {0};
    put_frame(&in, FIN | RSV1 | WS_OP_TEXT, S("\xFF\x00"), NULL); /* compressed: not UTF-8 */
    put_frame(&in, FIN | WS_OP_TEXT, S("plain"), NULL);
    trace t;
    feed_whole(&o, &in, &t);
    assert_int_equal(t.nrecs, 2);
    assert_message(&t, 0, WS_OP_TEXT, "\xFF\x00", 2);
    assert_true(t.recs[0].compressed);
    assert_message(&t, 1, WS_OP_TEXT, "plain", 5);
    assert_false(t.recs[1].compressed);
    trace_free(&t);
    free(in.p);
}

static void test_rsv2_rsv3_with_extension_are_still_1002(void **state)
{
    (void)state;
    const ws_parser_opts o = {.server = false, .rsv1 = true};
    assert_frame_fails(&o, FIN | RSV2 | WS_OP_TEXT, S("hi"), NULL, WS_CLOSE_PROTOCOL);
    assert_frame_fails(&o, FIN | RSV3 | WS_OP_TEXT, S("hi"), NULL, WS_CLOSE_PROTOCOL);
}

/* RFC 7692 section 6: RSV1 only on the first frame of a message, never on control frames. */
static void test_rsv1_on_continuation_or_control_is_1002(void **state)
{
    (void)state;
    const ws_parser_opts o = {.server = false, .rsv1 = true};
    bytes in = {0};
    put_frame(&in, RSV1 | WS_OP_TEXT, S("a"), NULL);
    put_frame(&in, FIN | RSV1 | WS_OP_CONT, S("b"), NULL);
    assert_fails(&o, &in, WS_CLOSE_PROTOCOL);
    free(in.p);
    assert_frame_fails(&o, FIN | RSV1 | WS_OP_PING, "", 0, NULL, WS_CLOSE_PROTOCOL);
}

static void test_reserved_opcodes_are_1002(void **state)
{
    (void)state;
    const uint8_t ops[] = {0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF};
    for (size_t i = 0; i < sizeof ops; i++) {
        assert_frame_fails(&CLIENT, FIN | ops[i], "", 0, NULL, WS_CLOSE_PROTOCOL);
        assert_frame_fails(&SERVER, FIN | ops[i], S("x"), KEY, WS_CLOSE_PROTOCOL);
    }
}

static void test_control_frame_longer_than_125_is_1002(void **state)
{
    (void)state;
    uint8_t pl[126] = {0};
    const uint8_t ops[] = {WS_OP_PING, WS_OP_PONG, WS_OP_CLOSE};
    for (size_t i = 0; i < sizeof ops; i++)
        assert_frame_fails(&CLIENT, FIN | ops[i], pl, 126, NULL, WS_CLOSE_PROTOCOL);
}

static void test_control_frame_of_125_is_accepted(void **state)
{
    (void)state;
    uint8_t pl[125];
    fill_pattern(pl, sizeof pl);
    bytes in = {0};
    put_frame(&in, FIN | WS_OP_PING, pl, sizeof pl, KEY);
    trace t;
    feed_bytewise(&SERVER, &in, &t);
    assert_int_equal(t.nrecs, 1);
    assert_control(&t, 0, WS_EV_PING, pl, sizeof pl);
    trace_free(&t);
    free(in.p);
}

static void test_fragmented_control_frame_is_1002(void **state)
{
    (void)state;
    assert_frame_fails(&CLIENT, WS_OP_PING, S("a"), NULL, WS_CLOSE_PROTOCOL);
    assert_frame_fails(&CLIENT, WS_OP_PONG, S("a"), NULL, WS_CLOSE_PROTOCOL);
    assert_frame_fails(&CLIENT, WS_OP_CLOSE, "", 0, NULL, WS_CLOSE_PROTOCOL);
}

static void test_continuation_without_message_is_1002(void **state)
{
    (void)state;
    assert_frame_fails(&CLIENT, FIN | WS_OP_CONT, S("x"), NULL, WS_CLOSE_PROTOCOL);
    assert_frame_fails(&CLIENT, WS_OP_CONT, S("x"), NULL, WS_CLOSE_PROTOCOL);
}

static void test_continuation_after_finished_message_is_1002(void **state)
{
    (void)state;
    bytes in = {0};
    put_frame(&in, WS_OP_TEXT, S("a"), NULL);
    put_frame(&in, FIN | WS_OP_CONT, S("b"), NULL);
    put_frame(&in, FIN | WS_OP_CONT, S("c"), NULL);
    assert_fails(&CLIENT, &in, WS_CLOSE_PROTOCOL);
    free(in.p);
}

static void test_new_message_inside_fragmented_one_is_1002(void **state)
{
    (void)state;
    const uint8_t ops[] = {WS_OP_TEXT, WS_OP_BINARY};
    for (size_t i = 0; i < 2; i++) {
        for (size_t j = 0; j < 2; j++) {
            bytes in = {0};
            put_frame(&in, ops[i], S("a"), NULL);
            put_frame(&in, FIN | ops[j], S("b"), NULL);
            assert_fails(&CLIENT, &in, WS_CLOSE_PROTOCOL);
            free(in.p);
        }
    }
}

static void test_64_bit_length_with_top_bit_is_1002(void **state)
{
    (void)state;
    static const uint8_t f[] = {0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0x01};
    bytes in = {0};
    put(&in, f, sizeof f);
    assert_fails(&CLIENT, &in, WS_CLOSE_PROTOCOL);
    free(in.p);
}

/* RFC 6455 section 5.2: "the minimal number of bytes MUST be used to encode the length". Each
 * length just under a wider encoding's range, in that wider encoding, is refused; the first
 * length that needs it is accepted. */
static void test_length_not_minimally_encoded_is_1002(void **state)
{
    (void)state;
    static const uint8_t bad16[] = {0x82, 0x7E, 0x00, 0x7D};             /* 125 in 16 bits */
    static const uint8_t bad16_zero[] = {0x82, 0x7E, 0x00, 0x00};        /* 0 in 16 bits */
    static const uint8_t bad64[] = {0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF}; /* 65535 */
    static const uint8_t bad64_small[] = {0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 0x05};
    const uint8_t *cases[] = {bad16, bad16_zero, bad64, bad64_small};
    const size_t sizes[] = {sizeof bad16, sizeof bad16_zero, sizeof bad64, sizeof bad64_small};
    for (size_t i = 0; i < 4; i++) {
        bytes in = {0};
        put(&in, cases[i], sizes[i]);
        assert_fails(&CLIENT, &in, WS_CLOSE_PROTOCOL);
        free(in.p);
    }
    /* The smallest lengths of each encoding parse (the payload is still to come). */
    uint8_t ok16[] = {0x82, 0x7E, 0x00, 0x7E};
    uint8_t ok64[] = {0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00};
    const ws_parser_opts o = {.max_frame = 1 << 20, .max_message = 1 << 20};
    ws_parser p;
    ws_event ev;
    ws_parser_init(&p, &o);
    assert_int_equal(ws_parser_feed(&p, ok16, sizeof ok16, &ev), sizeof ok16);
    assert_int_equal(ev.type, WS_EV_NONE);
    ws_parser_init(&p, &o);
    assert_int_equal(ws_parser_feed(&p, ok64, sizeof ok64, &ev), sizeof ok64);
    assert_int_equal(ev.type, WS_EV_NONE);
}

static void test_frame_over_max_frame_is_1009_at_header(void **state)
{
    (void)state;
    const ws_parser_opts o = {.server = true, .max_frame = 100};
    uint8_t pl[101] = {0};
    bytes ok = {0}, big = {0};
    put_frame(&ok, FIN | WS_OP_BINARY, pl, 100, KEY);
    put_frame(&big, FIN | WS_OP_BINARY, pl, 101, KEY);
    trace t;
    feed_whole(&o, &ok, &t);
    assert_message(&t, 0, WS_OP_BINARY, pl, 100);
    trace_free(&t);

    big.n = 2 + 4; /* header only: the limit is known before any payload arrives */
    assert_fails(&o, &big, WS_CLOSE_TOO_BIG);
    free(ok.p);
    free(big.p);
}

static void test_message_over_max_message_summed_over_fragments_is_1009(void **state)
{
    (void)state;
    const ws_parser_opts o = {.server = false, .max_message = 10};
    bytes ok = {0}, big = {0};
    put_frame(&ok, WS_OP_TEXT, S("1234"), NULL);
    put_frame(&ok, WS_OP_CONT, S("5678"), NULL);
    put_frame(&ok, FIN | WS_OP_CONT, S("90"), NULL);
    put_frame(&ok, FIN | WS_OP_TEXT, S("0123456789"), NULL); /* the count restarts */
    trace t;
    feed_whole(&o, &ok, &t);
    assert_int_equal(t.nrecs, 2);
    assert_message(&t, 0, WS_OP_TEXT, "1234567890", 10);
    assert_message(&t, 1, WS_OP_TEXT, "0123456789", 10);
    trace_free(&t);

    put_frame(&big, WS_OP_TEXT, S("1234"), NULL);
    put_frame(&big, WS_OP_CONT, S("5678"), NULL);
    put_frame(&big, FIN | WS_OP_CONT, S("901"), NULL);
    assert_fails(&o, &big, WS_CLOSE_TOO_BIG);
    free(ok.p);
    free(big.p);
}

static void test_control_frames_do_not_count_toward_max_message(void **state)
{
    (void)state;
    const ws_parser_opts o = {.server = false, .max_message = 10};
    uint8_t ping[100] = {0};
    bytes in = {0};
    put_frame(&in, WS_OP_BINARY, S("12345"), NULL);
    put_frame(&in, FIN | WS_OP_PING, ping, sizeof ping, NULL);
    put_frame(&in, FIN | WS_OP_CONT, S("67890"), NULL);
    trace t;
    feed_whole(&o, &in, &t);
    assert_int_equal(t.nrecs, 2);
    assert_int_equal(t.recs[0].type, WS_EV_PING);
    assert_message(&t, 1, WS_OP_BINARY, "1234567890", 10);
    trace_free(&t);
    free(in.p);
}

static void test_invalid_utf8_text_is_1007(void **state)
{
    (void)state;
    assert_frame_fails(&CLIENT, FIN | WS_OP_TEXT, S("bad \xC0\xAF"), NULL, WS_CLOSE_INVALID_DATA);
    assert_frame_fails(&SERVER, FIN | WS_OP_TEXT, S("\xED\xA0\x80"), KEY, WS_CLOSE_INVALID_DATA);
}

static void test_binary_is_not_utf8_checked(void **state)
{
    (void)state;
    bytes in = {0};
    put_frame(&in, FIN | WS_OP_BINARY, S("\xFF\xC0"), NULL);
    trace t;
    feed_whole(&CLIENT, &in, &t);
    assert_int_equal(t.nrecs, 1);
    assert_message(&t, 0, WS_OP_BINARY, "\xFF\xC0", 2);
    trace_free(&t);
    free(in.p);
}

/* The fault surfaces on the fragment holding the first bad byte; later ones never come. */
static void test_invalid_utf8_fails_on_its_fragment(void **state)
{
    (void)state;
    bytes in = {0};
    put_frame(&in, WS_OP_TEXT, S("fine"), NULL);
    put_frame(&in, WS_OP_CONT, S("ok \xF4\x90 rest"), NULL); /* above U+10FFFF */
    assert_fails(&CLIENT, &in, WS_CLOSE_INVALID_DATA);
    free(in.p);
}

/* Fed a byte at a time, the error comes with the first bad byte, not at the frame's end. */
static void test_invalid_utf8_fails_on_the_byte_itself(void **state)
{
    (void)state;
    static const char text[] = "0123456789\xE0\x80" "abcdefghij"; /* overlong: bad at 11 */
    bytes in = {0};
    put_frame(&in, FIN | WS_OP_TEXT, text, sizeof text - 1, KEY);
    size_t bad = 2 + 4 + 11;
    ws_parser p;
    ws_parser_init(&p, &SERVER);
    for (size_t i = 0; i < in.n; i++) {
        ws_event ev;
        ws_parser_feed(&p, in.p + i, 1, &ev);
        if (ev.type == WS_EV_ERROR) {
            assert_int_equal(ev.code, WS_CLOSE_INVALID_DATA);
            assert_int_equal(i, bad);
            free(in.p);
            return;
        }
        assert_true(i < bad);
    }
    free(in.p);
    fail_msg("no error");
}

static void test_text_ending_mid_character_is_1007(void **state)
{
    (void)state;
    assert_frame_fails(&CLIENT, FIN | WS_OP_TEXT, S("\xE2\x82"), NULL, WS_CLOSE_INVALID_DATA);

    bytes in = {0};
    put_frame(&in, WS_OP_TEXT, S("\xE2\x82"), NULL);
    put_frame(&in, FIN | WS_OP_CONT, "", 0, NULL);
    assert_fails(&CLIENT, &in, WS_CLOSE_INVALID_DATA);
    free(in.p);
}

static void test_character_completed_by_next_fragment_is_valid(void **state)
{
    (void)state;
    bytes in = {0};
    put_frame(&in, WS_OP_TEXT, S("\xE2"), NULL);
    put_frame(&in, FIN | WS_OP_PING, "", 0, NULL);
    put_frame(&in, WS_OP_CONT, S("\x82"), NULL);
    put_frame(&in, FIN | WS_OP_CONT, S("\xAC"), NULL);
    trace t;
    feed_whole(&CLIENT, &in, &t);
    assert_int_equal(t.nrecs, 2);
    assert_message(&t, 1, WS_OP_TEXT, "\xE2\x82\xAC", 3);
    trace_free(&t);
    free(in.p);
}

static void test_close_payload_of_one_byte_is_1002(void **state)
{
    (void)state;
    assert_frame_fails(&CLIENT, FIN | WS_OP_CLOSE, "\x03", 1, NULL, WS_CLOSE_PROTOCOL);

    /* After a ping whose second byte is 0xE8, a byte 0x03 plus stale data would read as 1000. */
    bytes in = {0};
    put_frame(&in, FIN | WS_OP_PING, "\x00\xE8", 2, NULL);
    put_frame(&in, FIN | WS_OP_CLOSE, "\x03", 1, NULL);
    assert_fails(&CLIENT, &in, WS_CLOSE_PROTOCOL);
    free(in.p);
}

static void test_invalid_close_codes_are_1002(void **state)
{
    (void)state;
    const uint16_t codes[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        bytes in = {0};
        put_close(&in, codes[i], "", NULL);
        assert_fails(&CLIENT, &in, WS_CLOSE_PROTOCOL);
        free(in.p);
        assert_false(ws_close_code_valid(codes[i]));
    }
}

static void test_valid_close_codes_are_accepted(void **state)
{
    (void)state;
    const uint16_t codes[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                              1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        bytes in = {0};
        put_close(&in, codes[i], "why \xE2\x82\xAC", KEY);
        trace t;
        feed_whole(&SERVER, &in, &t);
        assert_int_equal(t.nrecs, 1);
        assert_control(&t, 0, WS_EV_CLOSE, S("why \xE2\x82\xAC"));
        assert_int_equal(t.recs[0].code, codes[i]);
        assert_true(ws_close_code_valid(codes[i]));
        trace_free(&t);
        free(in.p);
    }
}

static void test_close_reason_invalid_utf8_is_1007(void **state)
{
    (void)state;
    bytes in = {0};
    put_close(&in, 1000, "bad \xC3(", NULL);
    assert_fails(&CLIENT, &in, WS_CLOSE_INVALID_DATA);
    free(in.p);

    bytes cut = {0};
    put_close(&cut, 1000, "cut \xC3", NULL); /* a reason may not end mid-character either */
    assert_fails(&CLIENT, &cut, WS_CLOSE_INVALID_DATA);
    free(cut.p);
}

static void test_empty_close_reports_1005(void **state)
{
    (void)state;
    bytes in = {0};
    put_frame(&in, FIN | WS_OP_CLOSE, "", 0, KEY);
    ws_event ev = single_event(&SERVER, &in);
    assert_int_equal(ev.type, WS_EV_CLOSE);
    assert_int_equal(ev.code, WS_CLOSE_NO_STATUS);
    assert_int_equal(ev.len, 0);
    free(in.p);
}

static void test_close_inside_fragmented_message_is_reported(void **state)
{
    (void)state;
    bytes in = {0};
    put_frame(&in, WS_OP_TEXT, S("part"), NULL);
    put_close(&in, 1001, "", NULL);
    trace t;
    feed_whole(&CLIENT, &in, &t);
    assert_int_equal(t.nrecs, 1);
    assert_int_equal(t.recs[0].type, WS_EV_CLOSE);
    assert_int_equal(t.recs[0].code, 1001);
    assert_true(t.in_msg);
    trace_free(&t);
    free(in.p);
}

static void test_error_repeats_on_later_feeds(void **state)
{
    (void)state;
    bytes bad = {0}, good = {0};
    put_frame(&bad, FIN | 0x3, "", 0, NULL);
    put_frame(&good, FIN | WS_OP_TEXT, S("fine"), NULL);
    ws_parser p;
    ws_parser_init(&p, &CLIENT);
    ws_event ev;
    ws_parser_feed(&p, bad.p, bad.n, &ev);
    assert_int_equal(ev.type, WS_EV_ERROR);
    assert_int_equal(ev.code, WS_CLOSE_PROTOCOL);
    for (int i = 0; i < 3; i++) {
        size_t used = ws_parser_feed(&p, good.p, i == 2 ? 0 : good.n, &ev);
        assert_int_equal(used, 0);
        assert_int_equal(ev.type, WS_EV_ERROR);
        assert_int_equal(ev.code, WS_CLOSE_PROTOCOL);
        assert_non_null(ev.reason);
    }
    free(bad.p);
    free(good.p);
}

/* ---- ws_mask ---------------------------------------------------------------------------- */

static void test_mask_matches_bytewise_reference(void **state)
{
    (void)state;
    static const uint8_t key[4] = {0xA1, 0x5C, 0x07, 0xE3};
    enum { GUARD = 8, MAXLEN = 100 };
    uint8_t *orig = malloc(GUARD + 8 + MAXLEN + GUARD);
    uint8_t *buf = malloc(GUARD + 8 + MAXLEN + GUARD);
    assert_non_null(orig);
    assert_non_null(buf);
    fill_pattern(orig, GUARD + 8 + MAXLEN + GUARD);
    const uint64_t offsets[] = {0, 1, 2, 3, 4, 7, ((uint64_t)1 << 32) + 2};
    for (size_t start = GUARD; start < GUARD + 8; start++) {
        for (size_t oi = 0; oi < sizeof offsets / sizeof offsets[0]; oi++) {
            for (size_t n = 0; n <= MAXLEN; n++) {
                memcpy(buf, orig, GUARD + 8 + MAXLEN + GUARD);
                ws_mask(buf + start, n, key, offsets[oi]);
                for (size_t i = 0; i < GUARD + 8 + MAXLEN + GUARD; i++) {
                    uint8_t want = orig[i];
                    if (i >= start && i < start + n)
                        want ^= key[(offsets[oi] + (i - start)) % 4];
                    if (buf[i] != want)
                        fail_msg("start %zu offset %zu len %zu: byte %zu", start, oi, n, i);
                }
            }
        }
    }
    free(orig);
    free(buf);
}

static void test_mask_continues_across_pieces(void **state)
{
    (void)state;
    uint8_t whole[37], pieces[37];
    fill_pattern(whole, sizeof whole);
    memcpy(pieces, whole, sizeof whole);
    ws_mask(whole, sizeof whole, KEY, 0);
    ws_mask(pieces, 5, KEY, 0);
    ws_mask(pieces + 5, 13, KEY, 5);
    ws_mask(pieces + 18, 19, KEY, 18);
    assert_memory_equal(whole, pieces, sizeof whole);
}

static void test_mask_rfc_example(void **state)
{
    (void)state;
    uint8_t b[5] = {'H', 'e', 'l', 'l', 'o'};
    static const uint8_t want[5] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};
    ws_mask(b, 5, KEY, 0);
    assert_memory_equal(b, want, 5);
}

/* ---- ws_frame_header -------------------------------------------------------------------- */

static void check_header(uint8_t opcode, bool fin, bool rsv1, uint64_t len, const uint8_t *key,
                         const uint8_t *want, size_t want_n)
{
    uint8_t out[WS_MAX_HEADER + 2];
    memset(out, 0xEE, sizeof out);
    size_t n = ws_frame_header(out, opcode, fin, rsv1, len, key);
    assert_int_equal(n, want_n);
    assert_memory_equal(out, want, n);
    assert_int_equal(out[n], 0xEE);
}

static void test_header_7_bit_lengths(void **state)
{
    (void)state;
    check_header(WS_OP_TEXT, true, false, 0, NULL, (const uint8_t[]){0x81, 0x00}, 2);
    check_header(WS_OP_TEXT, true, false, 5, NULL, (const uint8_t[]){0x81, 0x05}, 2);
    check_header(WS_OP_BINARY, true, false, 125, NULL, (const uint8_t[]){0x82, 0x7D}, 2);
    check_header(WS_OP_TEXT, true, false, 5, KEY,
                 (const uint8_t[]){0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d}, 6);
}

static void test_header_16_bit_lengths(void **state)
{
    (void)state;
    check_header(WS_OP_BINARY, true, false, 126, NULL, (const uint8_t[]){0x82, 0x7E, 0x00, 0x7E},
                 4);
    check_header(WS_OP_BINARY, true, false, 256, NULL, (const uint8_t[]){0x82, 0x7E, 0x01, 0x00},
                 4);
    check_header(WS_OP_BINARY, true, false, 65535, NULL,
                 (const uint8_t[]){0x82, 0x7E, 0xFF, 0xFF}, 4);
    check_header(WS_OP_BINARY, false, false, 126, KEY,
                 (const uint8_t[]){0x02, 0xFE, 0x00, 0x7E, 0x37, 0xfa, 0x21, 0x3d}, 8);
}

static void test_header_64_bit_lengths(void **state)
{
    (void)state;
    check_header(WS_OP_BINARY, true, false, 65536, NULL,
                 (const uint8_t[]){0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00}, 10);
    check_header(WS_OP_BINARY, true, false, 0x0123456789ABCDEFull, NULL,
                 (const uint8_t[]){0x82, 0x7F, 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF}, 10);
    check_header(WS_OP_BINARY, true, false, 65536, KEY,
                 (const uint8_t[]){0x82, 0xFF, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00, 0x37, 0xfa, 0x21,
                                   0x3d},
                 14);
}

static void test_header_flags_and_opcodes(void **state)
{
    (void)state;
    check_header(WS_OP_CONT, false, false, 0, NULL, (const uint8_t[]){0x00, 0x00}, 2);
    check_header(WS_OP_PING, true, false, 0, NULL, (const uint8_t[]){0x89, 0x00}, 2);
    check_header(WS_OP_PONG, true, false, 0, NULL, (const uint8_t[]){0x8A, 0x00}, 2);
    check_header(WS_OP_CLOSE, true, false, 2, NULL, (const uint8_t[]){0x88, 0x02}, 2);
    check_header(WS_OP_TEXT, true, true, 0, NULL, (const uint8_t[]){0xC1, 0x00}, 2);
}

/* A header from ws_frame_header and a payload parse back to that payload. */
static void round_trip(size_t len, bool masked)
{
    bytes in = {0};
    uint8_t hdr[WS_MAX_HEADER];
    size_t hn = ws_frame_header(hdr, WS_OP_BINARY, true, false, len, masked ? KEY : NULL);
    put(&in, hdr, hn);
    uint8_t *payload = malloc(len + 1);
    assert_non_null(payload);
    fill_pattern(payload, len);
    put(&in, payload, len);
    if (masked)
        ws_mask(in.p + hn, len, KEY, 0);
    trace t;
    feed_whole(masked ? &SERVER : &CLIENT, &in, &t);
    assert_int_equal(t.nrecs, 1);
    assert_message(&t, 0, WS_OP_BINARY, payload, len);
    trace_free(&t);
    free(payload);
    free(in.p);
}

static void test_header_round_trip_at_length_boundaries(void **state)
{
    (void)state;
    const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 65537};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        round_trip(lens[i], false);
        round_trip(lens[i], true);
    }
}

/* A huge declared length is accepted at the header: the payload simply has not come yet. */
static void test_header_of_huge_frame_waits_for_payload(void **state)
{
    (void)state;
    uint8_t hdr[WS_MAX_HEADER];
    size_t hn = ws_frame_header(hdr, WS_OP_BINARY, true, false, (uint64_t)1 << 40, NULL);
    ws_parser p;
    ws_parser_init(&p, &CLIENT);
    ws_event ev;
    assert_int_equal(ws_parser_feed(&p, hdr, hn, &ev), hn);
    assert_int_equal(ev.type, WS_EV_NONE);
    uint8_t chunk[3] = {1, 2, 3};
    assert_int_equal(ws_parser_feed(&p, chunk, 3, &ev), 3);
    assert_int_equal(ev.type, WS_EV_DATA);
    assert_true(ev.first);
    assert_false(ev.fin);
    assert_int_equal(ev.len, 3);
}

/* ---- ws_frame_client --------------------------------------------------------------------- */

/* The RFC 6455 section 5.7 masked "Hello", byte for byte. */
static void test_client_frame_rfc_example(void **state)
{
    (void)state;
    static const uint8_t want[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    uint8_t out[WS_MAX_HEADER + 5];
    assert_int_equal(ws_frame_client(out, WS_OP_TEXT, "Hello", 5, KEY), sizeof want);
    assert_memory_equal(out, want, sizeof want);
}

/* At every length encoding a client frame is what a server's parser reads back, and it leaves
 * the caller's payload as it was. */
static void test_client_frame_round_trip(void **state)
{
    (void)state;
    const size_t lens[] = {0, 1, 125, 126, 65535, 65536, 70001};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        size_t len = lens[i];
        uint8_t *payload = malloc(len + 1), *copy = malloc(len + 1);
        uint8_t *out = malloc(WS_MAX_HEADER + len);
        assert_true(payload && copy && out);
        fill_pattern(payload, len);
        memcpy(copy, payload, len);
        size_t n = ws_frame_client(out, WS_OP_BINARY, payload, len, KEY);
        assert_int_equal(n, (len < 126 ? 6 : len < 65536 ? 8 : 14) + len);
        assert_memory_equal(payload, copy, len);
        bytes in = {0};
        put(&in, out, n);
        trace t;
        feed_bytewise(&SERVER, &in, &t);
        assert_int_equal(t.nrecs, 1);
        assert_message(&t, 0, WS_OP_BINARY, payload, len);
        trace_free(&t);
        free(in.p);
        free(out);
        free(copy);
        free(payload);
    }
}

/* A client's close and pong frames are final control frames a server accepts. */
static void test_client_frame_control(void **state)
{
    (void)state;
    uint8_t pl[WS_MAX_CONTROL], out[WS_MAX_HEADER + WS_MAX_CONTROL];
    size_t pn = ws_close_payload(pl, WS_CLOSE_NORMAL, "bye");
    bytes in = {0};
    put(&in, out, ws_frame_client(out, WS_OP_PONG, "p", 1, KEY));
    put(&in, out, ws_frame_client(out, WS_OP_CLOSE, pl, pn, KEY));
    trace t;
    feed_whole(&SERVER, &in, &t);
    assert_int_equal(t.nrecs, 2);
    assert_control(&t, 0, WS_EV_PONG, "p", 1);
    assert_int_equal(t.recs[1].type, WS_EV_CLOSE);
    assert_int_equal(t.recs[1].code, WS_CLOSE_NORMAL);
    trace_free(&t);
    free(in.p);
}

/* ---- ws_close_payload ------------------------------------------------------------------- */

static void test_close_payload_code_and_reason(void **state)
{
    (void)state;
    uint8_t out[WS_MAX_CONTROL];
    assert_int_equal(ws_close_payload(out, 1001, "going away"), 12);
    assert_memory_equal(out, "\x03\xE9going away", 12);
    assert_int_equal(ws_close_payload(out, 4000, NULL), 2);
    assert_memory_equal(out, "\x0F\xA0", 2);
    assert_int_equal(ws_close_payload(out, 1000, ""), 2);
}

/* Longest prefix of s that ends on a character boundary and has at most max bytes;
 * s is valid UTF-8, so a boundary is any byte that is not 10xxxxxx. */
static size_t boundary_prefix(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return n;
    size_t best = 0;
    for (size_t i = 0; i <= max; i++)
        if (((uint8_t)s[i] & 0xC0) != 0x80)
            best = i;
    return best;
}

static void test_close_payload_truncates_ascii_to_125(void **state)
{
    (void)state;
    char reason[201];
    memset(reason, 'r', 200);
    reason[200] = '\0';
    uint8_t out[WS_MAX_CONTROL];
    assert_int_equal(ws_close_payload(out, 1000, reason), WS_MAX_CONTROL);
    assert_memory_equal(out + 2, reason, WS_MAX_CONTROL - 2);
}

static void test_close_payload_never_cuts_a_character(void **state)
{
    (void)state;
    static const char *chars[] = {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"};
    for (size_t c = 0; c < 3; c++) {
        for (size_t lead = 115; lead <= 124; lead++) {
            char reason[200];
            memset(reason, 'x', lead);
            reason[lead] = '\0';
            while (strlen(reason) < 150)
                strcat(reason, chars[c]);
            uint8_t out[WS_MAX_CONTROL + 8];
            memset(out, 0xEE, sizeof out);
            size_t n = ws_close_payload(out, 1000, reason);
            size_t want = boundary_prefix(reason, WS_MAX_CONTROL - 2);
            if (n != 2 + want)
                fail_msg("char %zu lead %zu: %zu bytes, want %zu", c, lead, n, 2 + want);
            assert_memory_equal(out + 2, reason, want);
            assert_true(ws_utf8_valid(out + 2, n - 2));
            assert_int_equal(out[WS_MAX_CONTROL], 0xEE);
        }
    }
}

static void test_close_payload_parses_back(void **state)
{
    (void)state;
    uint8_t pl[WS_MAX_CONTROL];
    size_t n = ws_close_payload(pl, 3001, "r\xC3\xA9sum\xC3\xA9");
    bytes in = {0};
    put_frame(&in, FIN | WS_OP_CLOSE, pl, n, KEY);
    trace t;
    feed_whole(&SERVER, &in, &t);
    assert_int_equal(t.nrecs, 1);
    assert_control(&t, 0, WS_EV_CLOSE, S("r\xC3\xA9sum\xC3\xA9"));
    assert_int_equal(t.recs[0].code, 3001);
    trace_free(&t);
    free(in.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_unmasked_text),
        cmocka_unit_test(test_rfc_masked_text),
        cmocka_unit_test(test_rfc_fragmented_text),
        cmocka_unit_test(test_rfc_unmasked_ping),
        cmocka_unit_test(test_rfc_masked_pong),
        cmocka_unit_test(test_rfc_256_byte_binary_16_bit_length),
        cmocka_unit_test(test_rfc_64k_binary_64_bit_length),
        cmocka_unit_test(test_rfc_unmasked_examples_rejected_by_server),
        cmocka_unit_test(test_rfc_masked_examples_rejected_by_client),
        cmocka_unit_test(test_every_split_unmasked),
        cmocka_unit_test(test_every_split_masked),
        cmocka_unit_test(test_every_prefix_is_not_an_error),
        cmocka_unit_test(test_unmasked_client_frame_is_1002),
        cmocka_unit_test(test_masked_frame_to_client_is_1002),
        cmocka_unit_test(test_rsv_bits_without_extension_are_1002),
        cmocka_unit_test(test_rsv1_with_extension_marks_message_compressed),
        cmocka_unit_test(test_rsv2_rsv3_with_extension_are_still_1002),
        cmocka_unit_test(test_rsv1_on_continuation_or_control_is_1002),
        cmocka_unit_test(test_reserved_opcodes_are_1002),
        cmocka_unit_test(test_control_frame_longer_than_125_is_1002),
        cmocka_unit_test(test_control_frame_of_125_is_accepted),
        cmocka_unit_test(test_fragmented_control_frame_is_1002),
        cmocka_unit_test(test_continuation_without_message_is_1002),
        cmocka_unit_test(test_continuation_after_finished_message_is_1002),
        cmocka_unit_test(test_new_message_inside_fragmented_one_is_1002),
        cmocka_unit_test(test_64_bit_length_with_top_bit_is_1002),
        cmocka_unit_test(test_length_not_minimally_encoded_is_1002),
        cmocka_unit_test(test_frame_over_max_frame_is_1009_at_header),
        cmocka_unit_test(test_message_over_max_message_summed_over_fragments_is_1009),
        cmocka_unit_test(test_control_frames_do_not_count_toward_max_message),
        cmocka_unit_test(test_invalid_utf8_text_is_1007),
        cmocka_unit_test(test_binary_is_not_utf8_checked),
        cmocka_unit_test(test_invalid_utf8_fails_on_its_fragment),
        cmocka_unit_test(test_invalid_utf8_fails_on_the_byte_itself),
        cmocka_unit_test(test_text_ending_mid_character_is_1007),
        cmocka_unit_test(test_character_completed_by_next_fragment_is_valid),
        cmocka_unit_test(test_close_payload_of_one_byte_is_1002),
        cmocka_unit_test(test_invalid_close_codes_are_1002),
        cmocka_unit_test(test_valid_close_codes_are_accepted),
        cmocka_unit_test(test_close_reason_invalid_utf8_is_1007),
        cmocka_unit_test(test_empty_close_reports_1005),
        cmocka_unit_test(test_close_inside_fragmented_message_is_reported),
        cmocka_unit_test(test_error_repeats_on_later_feeds),
        cmocka_unit_test(test_mask_matches_bytewise_reference),
        cmocka_unit_test(test_mask_continues_across_pieces),
        cmocka_unit_test(test_mask_rfc_example),
        cmocka_unit_test(test_header_7_bit_lengths),
        cmocka_unit_test(test_header_16_bit_lengths),
        cmocka_unit_test(test_header_64_bit_lengths),
        cmocka_unit_test(test_header_flags_and_opcodes),
        cmocka_unit_test(test_header_round_trip_at_length_boundaries),
        cmocka_unit_test(test_header_of_huge_frame_waits_for_payload),
        cmocka_unit_test(test_client_frame_rfc_example),
        cmocka_unit_test(test_client_frame_round_trip),
        cmocka_unit_test(test_client_frame_control),
        cmocka_unit_test(test_close_payload_code_and_reason),
        cmocka_unit_test(test_close_payload_truncates_ascii_to_125),
        cmocka_unit_test(test_close_payload_never_cuts_a_character),
        cmocka_unit_test(test_close_payload_parses_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
