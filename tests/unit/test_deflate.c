/* ws_deflate: one message compressed and inflated as permessage-deflate (RFC 7692 7.2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ws_deflate.h"

/* RFC 7692 section 7.2.3.1: "Hello" compressed with no context. */
static const uint8_t HELLO[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};

static void test_the_rfc_examples(void **state)
{
    (void)state;
    ws_deflater d;
    ws_inflater z;
    assert_int_equal(ws_deflater_init(&d, 6, 15), 0);
    assert_int_equal(ws_inflater_init(&z), 0);
    uint8_t out[64];
    size_t n = ws_deflate(&d, "Hello", 5, out, sizeof out);
    assert_int_equal(n, sizeof HELLO);
    assert_memory_equal(out, HELLO, sizeof HELLO);
    /* The same again: no context kept, so the same bytes (7.2.3.2 would differ with one). */
    assert_int_equal(ws_deflate(&d, "Hello", 5, out, sizeof out), sizeof HELLO);
    assert_memory_equal(out, HELLO, sizeof HELLO);
    assert_int_equal(ws_inflate(&z, HELLO, sizeof HELLO, out, sizeof out), 5);
    assert_memory_equal(out, "Hello", 5);
    /* 7.2.3.3: a stored block; 7.2.3.4 ends with a final block, after which nothing counts. */
    static const uint8_t stored[] = {0x00, 0x05, 0x00, 0xfa, 0xff, 'H', 'e', 'l', 'l', 'o', 0x00};
    assert_int_equal(ws_inflate(&z, stored, sizeof stored, out, sizeof out), 5);
    assert_memory_equal(out, "Hello", 5);
    static const uint8_t final[] = {0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00};
    assert_int_equal(ws_inflate(&z, final, sizeof final, out, sizeof out), 5);
    /* 7.2.3.6: the empty message is one byte. */
    assert_int_equal(ws_deflate(&d, "", 0, out, sizeof out), 1);
    assert_int_equal(out[0], 0x00);
    assert_int_equal(ws_inflate(&z, out, 1, out + 8, 8), 0);
    ws_deflater_free(&d);
    ws_inflater_free(&z);
}

/* Every size and window round-trips through one deflater and one inflater, many times. */
static void test_round_trips(void **state)
{
    (void)state;
    enum { MAX = 70000 };
    uint8_t *msg = malloc(MAX), *c = malloc(MAX + 1024), *back = malloc(MAX);
    assert_non_null(msg && c && back);
    for (size_t i = 0; i < MAX; i++) /* JSON-ish, compressible, not trivially */
        msg[i] = (uint8_t)("{\"price\":101.5,\"sym\":\"EURUSD\"}"[i % 30] + (i / 977) % 3);
    ws_inflater z;
    assert_int_equal(ws_inflater_init(&z), 0);
    for (int bits = 9; bits <= 15; bits += 3) {
        ws_deflater d;
        assert_int_equal(ws_deflater_init(&d, 1, bits), 0);
        for (size_t n = 0; n < MAX; n = n * 3 + 1) {
            size_t cn = ws_deflate(&d, msg, n, c, MAX + 1024);
            assert_true(cn > 0);
            if (n > 200)
                assert_true(cn < n / 2);
            assert_int_equal(ws_inflate(&z, c, cn, back, MAX), (long)n);
            assert_memory_equal(back, msg, n);
        }
        ws_deflater_free(&d);
    }
    ws_inflater_free(&z);
    free(msg);
    free(c);
    free(back);
}

/* A message whose compressed form does not fit in cap is left uncompressed (0). */
static void test_no_gain_no_compression(void **state)
{
    (void)state;
    ws_deflater d;
    assert_int_equal(ws_deflater_init(&d, 6, 15), 0);
    uint8_t rnd[256], out[512];
    for (size_t i = 0; i < sizeof rnd; i++)
        rnd[i] = (uint8_t)(i * 7919 % 251 ^ i >> 3);
    assert_int_equal(ws_deflate(&d, rnd, sizeof rnd, out, sizeof rnd - 1), 0);
    size_t n = ws_deflate(&d, rnd, sizeof rnd, out, sizeof out); /* room: it is written */
    assert_true(n >= sizeof rnd - 1 && n < sizeof out);
    ws_deflater_free(&d);
}

/* A bomb (16 MiB of zeros in a few KiB) stops at the bound; exactly the bound fits; garbage is
 * refused. */
static void test_bombs_bounds_and_garbage(void **state)
{
    (void)state;
    enum { BIG = 16 << 20, LIMIT = 65536 };
    uint8_t *zeros = calloc(1, BIG), *c = malloc(BIG / 8), *out = malloc(LIMIT);
    assert_non_null(zeros && c && out);
    ws_deflater d;
    ws_inflater z;
    assert_int_equal(ws_deflater_init(&d, 9, 15), 0);
    assert_int_equal(ws_inflater_init(&z), 0);
    size_t cn = ws_deflate(&d, zeros, BIG, c, BIG / 8);
    assert_true(cn > 0 && cn < 65536);
    assert_int_equal(ws_inflate(&z, c, cn, out, LIMIT), WS_INFLATE_TOO_BIG);
    cn = ws_deflate(&d, zeros, LIMIT, c, BIG / 8);
    assert_int_equal(ws_inflate(&z, c, cn, out, LIMIT), LIMIT);
    cn = ws_deflate(&d, zeros, LIMIT + 1, c, BIG / 8);
    assert_int_equal(ws_inflate(&z, c, cn, out, LIMIT), WS_INFLATE_TOO_BIG);
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x00, 0x13};
    assert_int_equal(ws_inflate(&z, junk, sizeof junk, out, LIMIT), WS_INFLATE_BAD);
    /* The inflater is fine after a refusal. */
    assert_int_equal(ws_inflate(&z, HELLO, sizeof HELLO, out, LIMIT), 5);
    ws_deflater_free(&d);
    ws_inflater_free(&z);
    free(zeros);
    free(c);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_rfc_examples),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_no_gain_no_compression),
        cmocka_unit_test(test_bombs_bounds_and_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
