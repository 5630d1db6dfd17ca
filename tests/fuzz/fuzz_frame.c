/* libFuzzer target for ws_frame: the push parser fed whole and in chunks, ws_mask against a
 * byte-wise reference, and ws_frame_header / ws_close_payload round trips through the parser.
 *
 * Input: 4 option bytes, then the byte stream the parser sees.
 *   b0 bit0   server (frames must be masked)       b0 bit1  opts.rsv1
 *   b0 bit2   max_frame = b1 + 1                   b0 bit3  max_message = b2 * 4 + 1
 *   b0 bit4-6 largest chunk size (1, 2, 3, 7, 16, 61, 256, 4096)
 *   b3        seed of the chunk sizes
 * Every call gets a heap buffer of exactly the bytes it may read, so ASan sees over-reads. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"
#include "ws_utf8.h"

#define CHECK(c) \
    do {         \
        if (!(c))  \
            abort(); \
    } while (0)

#define TRACE_CAP (64 * 1024) /* larger traces are not compared */

/* What one run reports, flattened: control events with their payloads, each completed
 * message with its payload, and the final error. Partial messages cut short by an error are
 * left out: a chunked feed legitimately delivers more of them before the fault shows. */
typedef struct trace {
    uint8_t *buf;
    size_t len;
    bool over;
    uint8_t *msg; /* the open message */
    size_t msg_len;
    bool in_msg;
    uint8_t msg_opcode;
    bool msg_compressed;
    bool dead;
    uint16_t err;
} trace;

static void trace_put(trace *t, const void *p, size_t n)
{
    if (t->over || n > TRACE_CAP - t->len) {
        t->over = true;
        return;
    }
    memcpy(t->buf + t->len, p, n);
    t->len += n;
}

static void trace_u64(trace *t, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    trace_put(t, b, 8);
}

static void trace_init(trace *t)
{
    memset(t, 0, sizeof *t);
    t->buf = malloc(TRACE_CAP);
    t->msg = malloc(TRACE_CAP);
    CHECK(t->buf && t->msg);
}

static void trace_free(trace *t)
{
    free(t->buf);
    free(t->msg);
}

/* Checks one event against the buffer it came from and records it. */
static void on_event(trace *t, const ws_parser *p, const uint8_t *buf, size_t len, size_t used,
                     const ws_event *ev)
{
    CHECK(used <= len);
    switch (ev->type) {
    case WS_EV_NONE:
        CHECK(used == len);
        return;
    case WS_EV_DATA:
        CHECK(used > 0);
        CHECK(ev->len <= used);
        CHECK(ev->len == 0 || (ev->data >= buf && ev->data + ev->len <= buf + used));
        CHECK(ev->opcode == WS_OP_TEXT || ev->opcode == WS_OP_BINARY);
        CHECK(ev->first == !t->in_msg);
        if (ev->first) {
            t->in_msg = true;
            t->msg_len = 0;
            t->msg_opcode = ev->opcode;
            t->msg_compressed = ev->compressed;
        }
        CHECK(ev->opcode == t->msg_opcode && ev->compressed == t->msg_compressed);
        CHECK(!ev->compressed || p->opts.rsv1);
        if (t->msg_len + ev->len <= TRACE_CAP) {
            if (ev->len)
                memcpy(t->msg + t->msg_len, ev->data, ev->len);
        } else {
            t->over = true;
        }
        t->msg_len += ev->len;
        if (p->opts.max_message)
            CHECK(t->msg_len <= p->opts.max_message);
        if (p->opts.max_frame)
            CHECK(ev->len <= p->opts.max_frame);
        if (ev->fin) {
            t->in_msg = false;
            if (!t->over && ev->opcode == WS_OP_TEXT && !ev->compressed)
                CHECK(ws_utf8_valid(t->msg, t->msg_len));
            uint8_t hdr[3] = {'M', ev->opcode, ev->compressed};
            trace_put(t, hdr, sizeof hdr);
            trace_u64(t, t->msg_len);
            if (!t->over)
                trace_put(t, t->msg, t->msg_len);
        }
        CHECK(ws_parser_in_message(p) == t->in_msg);
        return;
    case WS_EV_PING:
    case WS_EV_PONG:
    case WS_EV_CLOSE: {
        CHECK(used > 0);
        CHECK(ev->len <= WS_MAX_CONTROL);
        CHECK(ev->len == 0 || ev->data != NULL);
        if (ev->type == WS_EV_CLOSE) {
            CHECK(ev->len <= WS_MAX_CONTROL - 2);
            if (ev->code == WS_CLOSE_NO_STATUS)
                CHECK(ev->len == 0);
            else
                CHECK(ws_close_code_valid(ev->code));
            CHECK(ws_utf8_valid(ev->data, ev->len));
        }
        /* Data messages may be interrupted by control frames, never the reverse. */
        CHECK(ws_parser_in_message(p) == t->in_msg);
        uint8_t hdr[4] = {(uint8_t)ev->type, (uint8_t)ev->len, (uint8_t)(ev->code >> 8),
                          (uint8_t)ev->code};
        trace_put(t, hdr, sizeof hdr);
        trace_put(t, ev->data, ev->len);
        return;
    }
    case WS_EV_ERROR: {
        CHECK(ev->code == WS_CLOSE_PROTOCOL || ev->code == WS_CLOSE_INVALID_DATA ||
              ev->code == WS_CLOSE_TOO_BIG);
        CHECK(ev->reason != NULL);
        t->dead = true;
        t->err = ev->code;
        uint8_t hdr[3] = {'E', (uint8_t)(ev->code >> 8), (uint8_t)ev->code};
        trace_put(t, hdr, sizeof hdr);
        return;
    }
    }
    CHECK(0); /* unknown event type */
}

/* After an error the parser must repeat it, whatever it is fed. */
static void check_dead(ws_parser *p, uint16_t code, const uint8_t *rest, size_t n)
{
    ws_event ev;
    uint8_t *b = malloc(n ? n : 1);
    CHECK(b);
    if (n)
        memcpy(b, rest, n);
    size_t used = ws_parser_feed(p, b, n, &ev);
    CHECK(ev.type == WS_EV_ERROR && ev.code == code && used == 0);
    used = ws_parser_feed(p, b, 0, &ev);
    CHECK(ev.type == WS_EV_ERROR && ev.code == code && used == 0);
    free(b);
}

/* Feeds one chunk (a fresh heap buffer of exactly n bytes) until it is used up or the parser
 * fails. Returns false once dead. */
static bool feed_chunk(ws_parser *p, trace *t, const uint8_t *src, size_t n)
{
    uint8_t *b = malloc(n ? n : 1);
    CHECK(b);
    if (n)
        memcpy(b, src, n);
    size_t at = 0;
    for (;;) {
        ws_event ev;
        size_t used = ws_parser_feed(p, b + at, n - at, &ev);
        on_event(t, p, b + at, n - at, used, &ev);
        at += used;
        if (ev.type == WS_EV_ERROR) {
            check_dead(p, ev.code, src + at, n - at);
            free(b);
            return false;
        }
        if (ev.type == WS_EV_NONE)
            break;
    }
    CHECK(at == n);
    free(b);
    return true;
}

static uint32_t rng(uint32_t *s)
{
    /* xorshift32; the seed comes from the input, so runs are reproducible */
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static void fuzz_parser(const ws_parser_opts *o, uint8_t b0, uint8_t seed, const uint8_t *s,
                        size_t n)
{
    static const size_t max_chunk[8] = {1, 2, 3, 7, 16, 61, 256, 4096};
    size_t cmax = max_chunk[(b0 >> 4) & 7];
    trace whole, chunked;
    trace_init(&whole);
    trace_init(&chunked);

    ws_parser p;
    ws_parser_init(&p, o);
    feed_chunk(&p, &whole, s, n);

    ws_parser_init(&p, o);
    uint32_t st = 0x9E3779B9u ^ ((uint32_t)seed * 0x01000193u);
    if (st == 0)
        st = 1;
    size_t at = 0;
    bool alive = true;
    while (alive && at < n) {
        size_t c = cmax == 1 ? 1 : 1 + rng(&st) % cmax;
        if (c > n - at)
            c = n - at;
        alive = feed_chunk(&p, &chunked, s + at, c);
        at += c;
    }
    /* Empty feeds change nothing. */
    if (alive)
        feed_chunk(&p, &chunked, s, 0);

    CHECK(whole.dead == chunked.dead);
    CHECK(whole.err == chunked.err);
    if (!whole.over && !chunked.over) {
        CHECK(whole.len == chunked.len);
        CHECK(memcmp(whole.buf, chunked.buf, whole.len) == 0);
    }
    trace_free(&whole);
    trace_free(&chunked);
}

/* ws_mask against the obvious byte loop, at an input-chosen alignment, whole and split in two.
 * The key is the stream's first 4 bytes, the key offset its next 8. */
static void fuzz_mask(uint8_t split, uint8_t b1, const uint8_t *s, size_t n)
{
    uint8_t key[4] = {0};
    uint64_t off = 0;
    for (size_t i = 0; i < 4 && i < n; i++)
        key[i] = s[i];
    for (size_t i = 4; i < 12 && i < n; i++)
        off = off << 8 | s[i];
    if (b1 & 0x80)
        off = UINT64_MAX - (off & 0xFF); /* near the wrap */
    size_t align = b1 & 7;
    uint8_t *ref = malloc(n + 1);
    CHECK(ref);
    for (size_t i = 0; i < n; i++)
        ref[i] = s[i] ^ key[(off + i) & 3];

    /* An exactly sized heap copy, so reads past n are caught. */
    uint8_t *d = malloc(n ? n : 1);
    CHECK(d);
    memcpy(d, s, n);
    ws_mask(d, n, key, off);
    CHECK(n == 0 || memcmp(d, ref, n) == 0);

    /* Misaligned start inside an exactly sized object. */
    uint8_t *m = malloc(align + n ? align + n : 1);
    CHECK(m);
    memcpy(m + align, s, n);
    ws_mask(m + align, n, key, off);
    CHECK(n == 0 || memcmp(m + align, ref, n) == 0);

    /* Split at an input-chosen point: continuing with offset + k gives the same bytes. */
    size_t k = n ? (size_t)split % (n + 1) : 0;
    memcpy(m + align, s, n);
    ws_mask(m + align, k, key, off);
    ws_mask(m + align + k, n - k, key, off + k);
    CHECK(n == 0 || memcmp(m + align, ref, n) == 0);

    /* Masking twice is the identity. */
    ws_mask(m + align, n, key, off);
    CHECK(n == 0 || memcmp(m + align, s, n) == 0);

    free(m);
    free(d);
    free(ref);
}

/* ws_frame_header written, then read back by a parser; ws_close_payload likewise. */
static void fuzz_header(const uint8_t *s, size_t n)
{
    uint8_t in[16] = {0};
    memcpy(in, s, n < sizeof in ? n : sizeof in);
    static const uint8_t ops[6] = {WS_OP_CONT, WS_OP_TEXT, WS_OP_BINARY,
                                   WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG};
    uint8_t op = ops[in[0] % 6];
    bool fin = in[0] & 0x10;
    bool rsv1 = in[0] & 0x20;
    bool masked = in[0] & 0x40;
    uint64_t len = 0;
    for (int i = 0; i < 8; i++)
        len = len << 8 | in[1 + i];
    switch (in[0] >> 7 | (in[9] & 1) << 1) {
    case 0: len &= 0x7F; break;    /* 7-bit, 126 and 127 included */
    case 1: len &= 0xFFFF; break;  /* 16-bit */
    case 2: len &= 0x1FFFF; break; /* around the 16/64-bit edge */
    default: len &= INT64_MAX; break;
    }
    const uint8_t *key = in + 10;

    uint8_t *h = malloc(WS_MAX_HEADER);
    CHECK(h);
    size_t hl = ws_frame_header(h, op, fin, rsv1, len, masked ? key : NULL);
    size_t want = (len < 126 ? 2 : len <= 0xFFFF ? 4 : 10) + (masked ? 4 : 0);
    CHECK(hl == want);

    /* Only headers a peer may send: a control frame is final, short and plain, and a
     * continuation needs an open message, so open one first. */
    bool control = op & 0x8;
    if (control && (!fin || rsv1 || len > WS_MAX_CONTROL))
        goto out;
    if (op == WS_OP_CONT && rsv1)
        goto out;
    ws_parser_opts o = {.server = masked, .rsv1 = true};
    ws_parser p;
    ws_parser_init(&p, &o);
    ws_event ev;
    if (op == WS_OP_CONT) {
        uint8_t open[WS_MAX_HEADER];
        size_t ol = ws_frame_header(open, WS_OP_BINARY, false, false, 0, masked ? key : NULL);
        CHECK(ws_parser_feed(&p, open, ol, &ev) == ol);
        CHECK(ev.type == WS_EV_DATA && ev.first && !ev.fin && ev.len == 0);
    }
    uint8_t *hh = malloc(hl);
    CHECK(hh);
    memcpy(hh, h, hl);
    size_t used = ws_parser_feed(&p, hh, hl, &ev);
    CHECK(used == hl);
    if (len == 0) {
        if (op == WS_OP_PING)
            CHECK(ev.type == WS_EV_PING && ev.len == 0);
        else if (op == WS_OP_PONG)
            CHECK(ev.type == WS_EV_PONG && ev.len == 0);
        else if (op == WS_OP_CLOSE)
            CHECK(ev.type == WS_EV_CLOSE && ev.code == WS_CLOSE_NO_STATUS && ev.len == 0);
        else
            CHECK(ev.type == WS_EV_DATA && ev.len == 0 && ev.fin == fin &&
                  ev.compressed == (op == WS_OP_CONT ? false : rsv1));
    } else {
        CHECK(ev.type == WS_EV_NONE);
        CHECK(p.remaining == len && p.opcode == op && p.fin == fin && p.masked == masked);
        CHECK(!masked || memcmp(p.mask, key, 4) == 0);
    }
    free(hh);

    /* A close frame from ws_close_payload with an input-derived code and reason. */
    char reason[256];
    size_t rn = n > 16 ? n - 16 : 0;
    if (rn > sizeof reason - 1)
        rn = sizeof reason - 1;
    memcpy(reason, s + (n - rn), rn);
    reason[rn] = '\0';
    size_t zl = strlen(reason);
    uint16_t code = (uint16_t)(in[1] << 8 | in[2]);
    uint8_t *cp = malloc(WS_MAX_CONTROL);
    CHECK(cp);
    size_t cl = ws_close_payload(cp, code, (in[3] & 1) ? NULL : reason);
    CHECK(cl >= 2 && cl <= WS_MAX_CONTROL);
    CHECK(cp[0] == code >> 8 && cp[1] == (code & 0xFF));
    if (!(in[3] & 1)) {
        CHECK(cl - 2 <= zl && memcmp(cp + 2, reason, cl - 2) == 0);
        if (zl <= WS_MAX_CONTROL - 2)
            CHECK(cl - 2 == zl);
        if (ws_utf8_valid((const uint8_t *)reason, zl))
            CHECK(ws_utf8_valid(cp + 2, cl - 2));
    } else {
        CHECK(cl == 2);
    }
    uint8_t *fr = malloc(WS_MAX_HEADER + cl);
    CHECK(fr);
    size_t fl = ws_frame_header(fr, WS_OP_CLOSE, true, false, cl, masked ? key : NULL);
    memcpy(fr + fl, cp, cl);
    if (masked)
        ws_mask(fr + fl, cl, key, 0);
    fl += cl;
    ws_parser_init(&p, &o);
    used = ws_parser_feed(&p, fr, fl, &ev);
    CHECK(used == fl);
    if (ws_close_code_valid(code) && ws_utf8_valid(cp + 2, cl - 2)) {
        CHECK(ev.type == WS_EV_CLOSE && ev.code == code && ev.len == cl - 2);
        CHECK(memcmp(ev.data, cp + 2, cl - 2) == 0);
    } else {
        CHECK(ev.type == WS_EV_ERROR);
    }
    free(fr);
    free(cp);
out:
    free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint8_t b0 = data[0], b1 = data[1], b2 = data[2], b3 = data[3];
    const uint8_t *s = data + 4;
    size_t n = size - 4;

    ws_parser_opts o = {
        .server = b0 & 1,
        .rsv1 = b0 & 2,
        .max_frame = (b0 & 4) ? (uint64_t)b1 + 1 : 0,
        .max_message = (b0 & 8) ? (uint64_t)b2 * 4 + 1 : 0,
    };
    fuzz_parser(&o, b0, b3, s, n);
    fuzz_mask(b2, b3, s, n);
    fuzz_header(s, n);
    return 0;
}
