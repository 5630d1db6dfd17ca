/* ws_utf8: RFC 3629 validation, incremental over arbitrary splits. Invalid cases follow
 * Markus Kuhn's UTF-8 decoder stress test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ws_utf8.h"

#define S(lit) (lit), sizeof(lit) - 1

enum { VALID = -1, PARTIAL = -2 }; /* bad_at values that are not byte positions */

typedef struct u8case {
    const char *s;
    size_t n;
    int bad_at; /* index of the first byte no continuation can make valid, or VALID/PARTIAL */
} u8case;

static const u8case CASES[] = {
    /* Valid: boundaries of each sequence length (Kuhn 1, 2.1-2.3). */
    {S(""), VALID},
    {S("plain ASCII text, longer than eight bytes"), VALID},
    {S("\x00\x7F"), VALID},
    {S("\xC2\x80"), VALID},             /* U+0080 */
    {S("\xDF\xBF"), VALID},             /* U+07FF */
    {S("\xE0\xA0\x80"), VALID},         /* U+0800 */
    {S("\xED\x9F\xBF"), VALID},         /* U+D7FF */
    {S("\xEE\x80\x80"), VALID},         /* U+E000 */
    {S("\xEF\xBF\xBD"), VALID},         /* U+FFFD */
    {S("\xEF\xBF\xBF"), VALID},         /* U+FFFF (noncharacter, still valid UTF-8) */
    {S("\xF0\x90\x80\x80"), VALID},     /* U+10000 */
    {S("\xF4\x8F\xBF\xBF"), VALID},     /* U+10FFFF */
    {S("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5"), VALID}, /* "kosme" in Greek */
    {S("a\xF0\x9F\x98\x80" "bcdefghijk\xE2\x82\xAC"), VALID},

    /* Ends inside a character. */
    {S("\xC3"), PARTIAL},
    {S("\xE2\x82"), PARTIAL},
    {S("\xF0\x9F\x98"), PARTIAL},
    {S("abcdefghij\xF4\x8F"), PARTIAL},

    /* Lone continuation bytes (Kuhn 3.1). */
    {S("\x80"), 0},
    {S("\xBF"), 0},
    {S("a\x80\xBF"), 1},
    {S("\xC2\x80\x80"), 2},

    /* Lone start bytes followed by a space (Kuhn 3.2). */
    {S("\xC2 "), 1},
    {S("\xDF "), 1},
    {S("\xE0 "), 1},
    {S("\xEF "), 1},
    {S("\xF0 "), 1},
    {S("\xF4 "), 1},

    /* Sequences with their last byte missing, then more text (Kuhn 3.3, 3.4). */
    {S("\xC2" "A"), 1},
    {S("\xE0\xA0" "A"), 2},
    {S("\xF0\x90\x80" "A"), 3},
    {S("\xE0\x80\xF0\x90"), 1},

    /* Bytes that never appear in UTF-8 (Kuhn 3.5). */
    {S("\xFE"), 0},
    {S("\xFF"), 0},
    {S("\xFE\xFE\xFF\xFF"), 0},
    {S("abc\xFF"), 3},

    /* Overlong forms (Kuhn 4.1-4.3). */
    {S("\xC0\xAF"), 0},                 /* '/' in two bytes */
    {S("\xE0\x80\xAF"), 1},             /* '/' in three bytes */
    {S("\xF0\x80\x80\xAF"), 1},         /* '/' in four bytes */
    {S("\xF8\x80\x80\x80\xAF"), 0},     /* five-byte form */
    {S("\xFC\x80\x80\x80\x80\xAF"), 0}, /* six-byte form */
    {S("\xC1\xBF"), 0},                 /* largest overlong two-byte */
    {S("\xE0\x9F\xBF"), 1},             /* largest overlong three-byte */
    {S("\xF0\x8F\xBF\xBF"), 1},         /* largest overlong four-byte */
    {S("\xC0\x80"), 0},                 /* overlong NUL */
    {S("\xE0\x80\x80"), 1},
    {S("\xF0\x80\x80\x80"), 1},

    /* UTF-16 surrogates (Kuhn 5.1, 5.2). */
    {S("\xED\xA0\x80"), 1},             /* U+D800 */
    {S("\xED\xAD\xBF"), 1},             /* U+DB7F */
    {S("\xED\xAF\xBF"), 1},             /* U+DBFF */
    {S("\xED\xB0\x80"), 1},             /* U+DC00 */
    {S("\xED\xBF\xBF"), 1},             /* U+DFFF */
    {S("\xED\xA0\x80\xED\xB0\x80"), 1}, /* a surrogate pair */
    {S("abcdefgh\xED\xA0\x80"), 9},

    /* Above U+10FFFF. */
    {S("\xF4\x90\x80\x80"), 1},         /* U+110000 */
    {S("\xF5\x80\x80\x80"), 0},
    {S("\xF7\xBF\xBF\xBF"), 0},
};

#define NCASES (sizeof CASES / sizeof CASES[0])

static int expected_verdict(const u8case *c)
{
    if (c->bad_at == VALID)
        return WS_UTF8_OK;
    if (c->bad_at == PARTIAL)
        return WS_UTF8_PARTIAL;
    return WS_UTF8_INVALID;
}

/* Feeds s in pieces cut at cuts[0..ncuts) (ascending), as a fresh heap copy each so that
 * any read outside a piece is caught; stops at the first INVALID. */
static int feed_pieces(const char *s, size_t n, const size_t *cuts, size_t ncuts)
{
    ws_utf8 u;
    ws_utf8_reset(&u);
    size_t from = 0;
    int r = WS_UTF8_OK;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t to = k < ncuts ? cuts[k] : n;
        uint8_t *piece = malloc(to - from + 1);
        assert_non_null(piece);
        memcpy(piece, s + from, to - from);
        r = ws_utf8_feed(&u, piece, to - from);
        free(piece);
        if (r == WS_UTF8_INVALID)
            return r;
        from = to;
    }
    return r;
}

static int feed_whole(const char *s, size_t n)
{
    return feed_pieces(s, n, NULL, 0);
}

/* Test-side encoder, written from RFC 3629 section 3; does not refuse surrogates. */
static size_t encode(uint32_t cp, uint8_t out[4])
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

static void test_whole_input_verdicts(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        const u8case *c = &CASES[i];
        int want = expected_verdict(c);
        int got = feed_whole(c->s, c->n);
        if (got != want)
            fail_msg("case %zu: feed gave %d, want %d", i, got, want);
        if (ws_utf8_valid((const uint8_t *)c->s, c->n) != (want == WS_UTF8_OK))
            fail_msg("case %zu: ws_utf8_valid disagrees", i);
    }
}

static void test_every_scalar_value_is_valid(void **state)
{
    (void)state;
    uint8_t b[4];
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp == 0xD800)
            cp = 0xE000;
        size_t n = encode(cp, b);
        if (!ws_utf8_valid(b, n))
            fail_msg("U+%04X rejected", (unsigned)cp);
    }
}

static void test_every_surrogate_is_invalid(void **state)
{
    (void)state;
    uint8_t b[4];
    for (uint32_t cp = 0xD800; cp <= 0xDFFF; cp++) {
        size_t n = encode(cp, b);
        ws_utf8 u;
        ws_utf8_reset(&u);
        if (ws_utf8_feed(&u, b, n) != WS_UTF8_INVALID)
            fail_msg("surrogate U+%04X accepted", (unsigned)cp);
    }
}

static void test_every_lone_continuation_byte_is_invalid(void **state)
{
    (void)state;
    for (unsigned b = 0x80; b <= 0xBF; b++) {
        char s[3] = {'x', (char)b, 'y'};
        if (ws_utf8_valid((const uint8_t *)s, sizeof s))
            fail_msg("lone continuation 0x%02X accepted", b);
    }
}

/* RFC 3629 section 1: C0, C1 and F5..FF never appear; other lead bytes need continuations. */
static void test_every_lead_byte_followed_by_space_is_invalid(void **state)
{
    (void)state;
    for (unsigned b = 0xC0; b <= 0xFF; b++) {
        const uint8_t s[2] = {(uint8_t)b, ' '};
        bool never = b <= 0xC1 || b >= 0xF5;
        ws_utf8 u;
        ws_utf8_reset(&u);
        if (ws_utf8_feed(&u, s, 1) != (never ? WS_UTF8_INVALID : WS_UTF8_PARTIAL))
            fail_msg("lead byte 0x%02X alone: wrong verdict", b);
        if (ws_utf8_valid(s, 2))
            fail_msg("lead byte 0x%02X followed by a space accepted", b);
    }
}

static void test_partial_then_rest_is_ok(void **state)
{
    (void)state;
    static const uint8_t euro[] = {0xE2, 0x82, 0xAC};
    ws_utf8 u;
    ws_utf8_reset(&u);
    assert_int_equal(ws_utf8_feed(&u, euro, 1), WS_UTF8_PARTIAL);
    assert_int_equal(ws_utf8_feed(&u, euro + 1, 1), WS_UTF8_PARTIAL);
    assert_int_equal(ws_utf8_feed(&u, euro + 2, 1), WS_UTF8_OK);
}

static void test_empty_feed_keeps_state(void **state)
{
    (void)state;
    static const uint8_t s[] = {0xF0, 0x9F, 0x98, 0x80};
    ws_utf8 u;
    ws_utf8_reset(&u);
    assert_int_equal(ws_utf8_feed(&u, s, 2), WS_UTF8_PARTIAL);
    assert_int_equal(ws_utf8_feed(&u, s + 2, 0), WS_UTF8_PARTIAL);
    assert_int_equal(ws_utf8_feed(&u, s + 2, 2), WS_UTF8_OK);
}

static void test_invalid_is_reported_at_first_bad_byte(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        const u8case *c = &CASES[i];
        if (c->bad_at < 0)
            continue;
        size_t at = (size_t)c->bad_at;
        if (feed_whole(c->s, at) == WS_UTF8_INVALID)
            fail_msg("case %zu: rejected before byte %zu", i, at);
        if (feed_whole(c->s, at + 1) != WS_UTF8_INVALID)
            fail_msg("case %zu: not rejected at byte %zu", i, at);
    }
}

static void test_every_two_piece_split_gives_same_verdict(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        const u8case *c = &CASES[i];
        int want = expected_verdict(c);
        for (size_t cut = 0; cut <= c->n; cut++) {
            int got = feed_pieces(c->s, c->n, &cut, 1);
            if (got != want)
                fail_msg("case %zu split at %zu: %d, want %d", i, cut, got, want);
        }
    }
}

static void test_byte_at_a_time_gives_same_verdict(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        const u8case *c = &CASES[i];
        size_t cuts[64];
        assert_true(c->n <= 64);
        for (size_t k = 1; k < c->n; k++)
            cuts[k - 1] = k;
        int got = feed_pieces(c->s, c->n, cuts, c->n ? c->n - 1 : 0);
        if (got != expected_verdict(c))
            fail_msg("case %zu byte at a time: %d", i, got);
    }
}

/* A bad or multi-byte character at any position of an ASCII run, from any buffer alignment:
 * the word-at-a-time ASCII path must not skip over it. */
static void test_non_ascii_at_every_position_of_ascii_run(void **state)
{
    (void)state;
    char buf[64 + 8];
    for (size_t align = 0; align < 8; align++) {
        for (size_t pos = 0; pos < 40; pos++) {
            char *s = buf + align;
            memset(s, 'a', 48);
            s[pos] = (char)0xFF;
            if (ws_utf8_valid((const uint8_t *)s, 48))
                fail_msg("0xFF at %zu (align %zu) accepted", pos, align);
            memcpy(s + pos, "\xC3\xA9", 2);
            if (!ws_utf8_valid((const uint8_t *)s, 48))
                fail_msg("U+00E9 at %zu (align %zu) rejected", pos, align);
            s[pos + 1] = 'a';
            if (ws_utf8_valid((const uint8_t *)s, 48))
                fail_msg("truncated U+00E9 at %zu (align %zu) accepted", pos, align);
        }
    }
}

static void test_reset_after_invalid_starts_over(void **state)
{
    (void)state;
    ws_utf8 u;
    ws_utf8_reset(&u);
    assert_int_equal(ws_utf8_feed(&u, (const uint8_t *)"\xE2\x28", 2), WS_UTF8_INVALID);
    ws_utf8_reset(&u);
    assert_int_equal(ws_utf8_feed(&u, (const uint8_t *)"ok", 2), WS_UTF8_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_input_verdicts),
        cmocka_unit_test(test_every_scalar_value_is_valid),
        cmocka_unit_test(test_every_surrogate_is_invalid),
        cmocka_unit_test(test_every_lone_continuation_byte_is_invalid),
        cmocka_unit_test(test_every_lead_byte_followed_by_space_is_invalid),
        cmocka_unit_test(test_partial_then_rest_is_ok),
        cmocka_unit_test(test_empty_feed_keeps_state),
        cmocka_unit_test(test_invalid_is_reported_at_first_bad_byte),
        cmocka_unit_test(test_every_two_piece_split_gives_same_verdict),
        cmocka_unit_test(test_byte_at_a_time_gives_same_verdict),
        cmocka_unit_test(test_non_ascii_at_every_position_of_ascii_run),
        cmocka_unit_test(test_reset_after_invalid_starts_over),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
