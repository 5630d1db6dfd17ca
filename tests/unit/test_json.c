/* ws_json: strict RFC 8259 validation and the object member walker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ws_json.h"

/* Validates s[0..n) from an exact-size heap copy, so any read past the end is caught. */
static bool valid_n(const char *s, size_t n)
{
    char *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, s, n);
    bool v = ws_json_valid(copy, n);
    free(copy);
    return v;
}

static bool valid(const char *s) { return valid_n(s, strlen(s)); }

static void assert_all_valid(const char *const *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!valid(cases[i]))
            fail_msg("rejected: %s", cases[i]);
}

static void assert_all_invalid(const char *const *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (valid(cases[i]))
            fail_msg("accepted: %s", cases[i]);
}

#define ALL_VALID(...)                                                                         \
    do {                                                                                       \
        static const char *const c_[] = {__VA_ARGS__};                                         \
        assert_all_valid(c_, sizeof c_ / sizeof c_[0]);                                        \
    } while (0)

#define ALL_INVALID(...)                                                                       \
    do {                                                                                       \
        static const char *const c_[] = {__VA_ARGS__};                                         \
        assert_all_invalid(c_, sizeof c_ / sizeof c_[0]);                                      \
    } while (0)

/* n arrays nested in each other: "[[...]]" (caller frees). */
static char *nested_arrays(size_t n)
{
    char *s = malloc(2 * n + 1);
    assert_non_null(s);
    memset(s, '[', n);
    memset(s + n, ']', n);
    s[2 * n] = '\0';
    return s;
}

/* n objects nested as {"a":{"a":...{}}} (caller frees). */
static char *nested_objects(size_t n)
{
    char *s = malloc(6 * n + 1);
    assert_non_null(s);
    size_t at = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        memcpy(s + at, "{\"a\":", 5);
        at += 5;
    }
    memcpy(s + at, "{}", 2);
    at += 2;
    memset(s + at, '}', n - 1);
    at += n - 1;
    s[at] = '\0';
    return s;
}

/* ---- scalars ----------------------------------------------------------------------------- */

static void test_valid_numbers(void **state)
{
    (void)state;
    ALL_VALID("0", "-0", "7", "-7", "1234567890", "0.5", "-0.0", "3.14159", "1e5", "1E5", "1e+5",
              "1e-5", "-1.5e-10", "0e0", "10.01E+02", "123456789012345678901234567890");
}

static void test_invalid_numbers(void **state)
{
    (void)state;
    ALL_INVALID("01", "-01", "00", "1.", "-1.", ".5", "-.5", "-", "+1", "1e", "1e+", "1E-", "1.e5",
                "0x1F", "1_000", "Infinity", "-Infinity", "NaN", "1 .5", "- 1", "1e5.5", "--1");
}

static void test_literals(void **state)
{
    (void)state;
    ALL_VALID("true", "false", "null");
    ALL_INVALID("tru", "nul", "fals", "t", "True", "NULL", "nulll", "truefalse", "undefined");
}

static void test_valid_strings(void **state)
{
    (void)state;
    ALL_VALID("\"\"", "\"plain\"", "\"\\\"\"", "\"\\\\\"", "\"\\/\"", "\"\\b\\f\\n\\r\\t\"",
              "\"\\u00e9\\u00E9\"", "\"\\uD834\\uDD1E\"", "\"caf\xC3\xA9\"", "\"\x7F\"",
              "\"a'b\"");
}

static void test_unescaped_control_chars_in_strings_are_invalid(void **state)
{
    (void)state;
    for (unsigned c = 0; c < 0x20; c++) {
        char s[4] = {'"', (char)c, '"', 0};
        if (valid_n(s, 3))
            fail_msg("raw control 0x%02X accepted in a string", c);
    }
}

static void test_bad_escapes_are_invalid(void **state)
{
    (void)state;
    ALL_INVALID("\"\\a\"", "\"\\x41\"", "\"\\'\"", "\"\\0\"", "\"\\U0041\"", "\"\\ \"", "\"\\",
                "\"\\\"");
}

static void test_unicode_escape_with_bad_hex_is_invalid(void **state)
{
    (void)state;
    ALL_INVALID("\"\\u12G4\"", "\"\\u123\"", "\"\\u\"", "\"\\u 123\"", "\"\\u-123\"", "\"\\u00",
                "\"\\u", "\"\\u12\"", "\"\\uzzzz\"");
}

static void test_unterminated_string_is_invalid(void **state)
{
    (void)state;
    ALL_INVALID("\"abc", "\"", "[\"a]", "{\"a\":\"b}");
}

/* ---- containers --------------------------------------------------------------------------- */

static void test_valid_containers(void **state)
{
    (void)state;
    ALL_VALID("[]", "{}", "[1]", "[1,2,3]", "[[],{}]", "{\"a\":1}", "{\"a\":{\"b\":[null,true]}}",
              "{\"\":0}", "{\"a\":1,\"a\":2}", "[ 1 , \"x\" , { } , [ ] ]",
              "{ \"k\" : \"v\" , \"n\" : -1.5e3 }");
}

static void test_trailing_commas_are_invalid(void **state)
{
    (void)state;
    ALL_INVALID("[1,]", "[1, ]", "{\"a\":1,}", "{\"a\":1 , }", "[,1]", "[1,,2]", "{,}", "[,]",
                "{,\"a\":1}");
}

static void test_bad_members_are_invalid(void **state)
{
    (void)state;
    ALL_INVALID("{\"a\" 1}", "{\"a\"::1}", "{a:1}", "{1:1}", "{\"a\"}", "{\"a\":}",
                "{\"a\":1 \"b\":2}", "{'a':1}", "{\"a\";1}", "[1 2]", "{null:1}");
}

static void test_unclosed_containers_are_invalid(void **state)
{
    (void)state;
    ALL_INVALID("[", "{", "[1", "[1,", "{\"a\"", "{\"a\":", "{\"a\":1", "[[]", "{\"a\":[1}", "[{]",
                "[}", "{]", "]", "}");
}

static void test_depth_at_limit_is_valid(void **state)
{
    (void)state;
    char *a = nested_arrays(WS_JSON_MAX_DEPTH), *o = nested_objects(WS_JSON_MAX_DEPTH);
    assert_true(valid(a));
    assert_true(valid(o));
    free(a);
    free(o);
}

static void test_depth_over_limit_is_invalid(void **state)
{
    (void)state;
    char *a = nested_arrays(WS_JSON_MAX_DEPTH + 1), *o = nested_objects(WS_JSON_MAX_DEPTH + 1);
    assert_false(valid(a));
    assert_false(valid(o));
    free(a);
    free(o);
}

static void test_very_deep_nesting_is_rejected_safely(void **state)
{
    (void)state;
    char *a = nested_arrays(200000);
    assert_false(valid(a));
    a[200000] = '\0'; /* only the opening half */
    assert_false(valid(a));
    free(a);
}

/* ---- whole-text rules ---------------------------------------------------------------------- */

static void test_trailing_garbage_is_invalid(void **state)
{
    (void)state;
    ALL_INVALID("1 2", "{}x", "[]]", "{}}", "nullx", "\"a\"\"b\"", "{} {}", "0 0", "true,",
                "[1] //");
}

static void test_surrounding_whitespace_is_allowed(void **state)
{
    (void)state;
    ALL_VALID(" 1", "1 ", " \t\r\n{} \n", "\n[\n1\n]\n", "\r\"x\"\t");
}

static void test_non_json_whitespace_is_invalid(void **state)
{
    (void)state;
    ALL_INVALID("\f1", "1\v", "\xC2\xA0" "1", "[1,\f2]");
}

static void test_empty_text_is_invalid(void **state)
{
    (void)state;
    ALL_INVALID("", " ", "\n\t");
}

static void test_nul_byte_is_invalid(void **state)
{
    (void)state;
    assert_false(valid_n("[1]\0", 4));
    assert_false(valid_n("[1,\0 2]", 7));
    assert_true(valid_n("[1]\0", 3));
}

/* ---- ws_json_skip and ws_json_type_of ------------------------------------------------------ */

static void test_skip_returns_end_of_value(void **state)
{
    (void)state;
    const char *s = "[1, {\"a\": \"]\"}] tail";
    assert_int_equal(ws_json_skip(s, strlen(s), 0), 15);
    const char *t = "{\"k\":\"a\\\"b\",\"n\":12.5e1}";
    assert_int_equal(ws_json_skip(t, strlen(t), 5), 11); /* the string value alone */
    assert_int_equal(ws_json_skip(t, strlen(t), 16), 22); /* the number value alone */
    assert_int_equal(ws_json_skip("[1,", 3, 0), 0);
}

static void test_type_of(void **state)
{
    (void)state;
    assert_int_equal(ws_json_type_of("{}", 2), WS_JSON_OBJECT);
    assert_int_equal(ws_json_type_of("[]", 2), WS_JSON_ARRAY);
    assert_int_equal(ws_json_type_of("\"\"", 2), WS_JSON_STRING);
    assert_int_equal(ws_json_type_of("-1", 2), WS_JSON_NUMBER);
    assert_int_equal(ws_json_type_of("0", 1), WS_JSON_NUMBER);
    assert_int_equal(ws_json_type_of("true", 4), WS_JSON_TRUE);
    assert_int_equal(ws_json_type_of("false", 5), WS_JSON_FALSE);
    assert_int_equal(ws_json_type_of("null", 4), WS_JSON_NULL);
    assert_int_equal(ws_json_type_of("x", 1), WS_JSON_INVALID);
    assert_int_equal(ws_json_type_of("", 0), WS_JSON_INVALID);
}

/* ---- ws_json_object ---------------------------------------------------------------------------- */

typedef struct members {
    size_t n;
    char key[8][32];
    char val[8][64];
    int stop_at; /* 1-based member index at which to return stop_value; 0: never */
    int stop_value;
} members;

static int collect(void *ctx, const char *key, size_t key_len, const char *val, size_t val_len)
{
    members *m = ctx;
    assert_true(m->n < 8 && key_len < 32 && val_len < 64);
    memcpy(m->key[m->n], key, key_len);
    m->key[m->n][key_len] = '\0';
    memcpy(m->val[m->n], val, val_len);
    m->val[m->n][val_len] = '\0';
    m->n++;
    return (int)m->n == m->stop_at ? m->stop_value : 0;
}

static int walk(const char *s, members *m)
{
    memset(m, 0, sizeof *m);
    return ws_json_object(s, strlen(s), collect, m);
}

static void assert_member(const members *m, size_t i, const char *key, const char *val)
{
    assert_true(i < m->n);
    assert_string_equal(m->key[i], key);
    assert_string_equal(m->val[i], val);
}

static void test_object_walk_gives_key_and_value_spans(void **state)
{
    (void)state;
    members m;
    assert_int_equal(walk("{\"op\":\"pub\",\"n\":-1.5e3,\"data\":{\"x\":[1,2]},\"t\":true,"
                          "\"z\":null,\"a\":[]}",
                          &m),
                     0);
    assert_int_equal(m.n, 6);
    assert_member(&m, 0, "op", "\"pub\"");
    assert_member(&m, 1, "n", "-1.5e3");
    assert_member(&m, 2, "data", "{\"x\":[1,2]}");
    assert_member(&m, 3, "t", "true");
    assert_member(&m, 4, "z", "null");
    assert_member(&m, 5, "a", "[]");
}

static void test_object_walk_excludes_surrounding_whitespace(void **state)
{
    (void)state;
    members m;
    assert_int_equal(walk(" \n{ \"a\" :\t[ 1 , 2 ] ,\r\n\"b\":\"x y\" } \n", &m), 0);
    assert_int_equal(m.n, 2);
    assert_member(&m, 0, "a", "[ 1 , 2 ]");
    assert_member(&m, 1, "b", "\"x y\"");
}

static void test_object_walk_keeps_key_escapes_raw(void **state)
{
    (void)state;
    members m;
    assert_int_equal(walk("{\"a\\\"b\":1,\"\\u0041\":2,\"\":3}", &m), 0);
    assert_int_equal(m.n, 3);
    assert_member(&m, 0, "a\\\"b", "1");
    assert_member(&m, 1, "\\u0041", "2");
    assert_member(&m, 2, "", "3");
}

static void test_object_walk_of_empty_object(void **state)
{
    (void)state;
    members m;
    assert_int_equal(walk(" { } ", &m), 0);
    assert_int_equal(m.n, 0);
}

static void test_object_walk_stops_on_nonzero(void **state)
{
    (void)state;
    members m = {.stop_at = 2, .stop_value = 7};
    assert_int_equal(ws_json_object("{\"a\":1,\"b\":2,\"c\":3}", 19, collect, &m), 7);
    assert_int_equal(m.n, 2);
}

static void test_object_walk_rejects_non_objects(void **state)
{
    (void)state;
    const char *cases[] = {"[1]", "\"{}\"", "1", "null", "{\"a\":}", "{\"a\":1,}", "{} x", ""};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        members m;
        if (walk(cases[i], &m) != -1)
            fail_msg("walked: %s", cases[i]);
        assert_int_equal(m.n, 0); /* nothing reported before the verdict */
    }
}

/* The scans over wsfan's own frames: the number or string right after a key, and nothing
 * when the key is missing or followed by something else. */
static void test_scans_after_a_key(void **state)
{
    (void)state;
    const char *ack = "{\"op\":\"ack\",\"id\":3,\"seq\":18446744073709551615,\"epoch\":\"6b.1\"}";
    uint64_t v = 0;
    const char *e;
    size_t n;
    assert_true(ws_json_u64_after(ack, strlen(ack), "\"seq\":", &v));
    assert_true(v == UINT64_MAX);
    assert_true(ws_json_u64_after(ack, strlen(ack), "\"id\":", &v) && v == 3);
    assert_false(ws_json_u64_after(ack, strlen(ack), "\"op\":", &v)); /* a string follows */
    assert_false(ws_json_u64_after(ack, strlen(ack), "\"none\":", &v));
    assert_true(ws_json_str_after(ack, strlen(ack), "\"epoch\":\"", &e, &n));
    assert_int_equal(n, 4);
    assert_memory_equal(e, "6b.1", 4);
    assert_false(ws_json_str_after(ack, strlen(ack) - 3, "\"epoch\":\"", &e, &n)); /* cut */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_numbers),
        cmocka_unit_test(test_invalid_numbers),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_valid_strings),
        cmocka_unit_test(test_unescaped_control_chars_in_strings_are_invalid),
        cmocka_unit_test(test_bad_escapes_are_invalid),
        cmocka_unit_test(test_unicode_escape_with_bad_hex_is_invalid),
        cmocka_unit_test(test_unterminated_string_is_invalid),
        cmocka_unit_test(test_valid_containers),
        cmocka_unit_test(test_trailing_commas_are_invalid),
        cmocka_unit_test(test_bad_members_are_invalid),
        cmocka_unit_test(test_unclosed_containers_are_invalid),
        cmocka_unit_test(test_depth_at_limit_is_valid),
        cmocka_unit_test(test_depth_over_limit_is_invalid),
        cmocka_unit_test(test_very_deep_nesting_is_rejected_safely),
        cmocka_unit_test(test_trailing_garbage_is_invalid),
        cmocka_unit_test(test_surrounding_whitespace_is_allowed),
        cmocka_unit_test(test_non_json_whitespace_is_invalid),
        cmocka_unit_test(test_empty_text_is_invalid),
        cmocka_unit_test(test_nul_byte_is_invalid),
        cmocka_unit_test(test_skip_returns_end_of_value),
        cmocka_unit_test(test_type_of),
        cmocka_unit_test(test_object_walk_gives_key_and_value_spans),
        cmocka_unit_test(test_object_walk_excludes_surrounding_whitespace),
        cmocka_unit_test(test_object_walk_keeps_key_escapes_raw),
        cmocka_unit_test(test_object_walk_of_empty_object),
        cmocka_unit_test(test_object_walk_stops_on_nonzero),
        cmocka_unit_test(test_object_walk_rejects_non_objects),
        cmocka_unit_test(test_scans_after_a_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
