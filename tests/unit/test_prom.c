/* prom: the exposition format, line by line: HELP and TYPE, counters, gauges, histograms with
 * cumulative buckets and +Inf, _sum and _count; a buffer too small for any of it gives 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "prom.h"

static void test_counter_and_gauge(void **state)
{
    (void)state;
    char buf[512];
    prom p;
    prom_init(&p, buf, sizeof buf);
    prom_metric(&p, PROM_COUNTER, "x_total", "Things counted.", 18446744073709551615u);
    prom_metric(&p, PROM_GAUGE, "y", "Things now.", 0);
    size_t n = prom_end(&p);
    const char want[] = "# HELP x_total Things counted.\n"
                        "# TYPE x_total counter\n"
                        "x_total 18446744073709551615\n"
                        "# HELP y Things now.\n"
                        "# TYPE y gauge\n"
                        "y 0\n";
    assert_int_equal(n, sizeof want - 1);
    assert_memory_equal(buf, want, n);
    assert_int_equal(buf[n], '\0');
}

static void test_histogram(void **state)
{
    (void)state;
    char buf[512];
    prom p;
    prom_init(&p, buf, sizeof buf);
    const double bounds[] = {0.0001, 0.5, 1, 2.5};
    const uint64_t cum[] = {1, 3, 3, 7};
    prom_histogram(&p, "lat_seconds", "Latency.", bounds, cum, 4, 9, 12.3456789);
    const char want[] = "# HELP lat_seconds Latency.\n"
                        "# TYPE lat_seconds histogram\n"
                        "lat_seconds_bucket{le=\"0.0001\"} 1\n"
                        "lat_seconds_bucket{le=\"0.5\"} 3\n"
                        "lat_seconds_bucket{le=\"1\"} 3\n"
                        "lat_seconds_bucket{le=\"2.5\"} 7\n"
                        "lat_seconds_bucket{le=\"+Inf\"} 9\n"
                        "lat_seconds_sum 12.345679\n"
                        "lat_seconds_count 9\n";
    size_t n = prom_end(&p);
    assert_int_equal(n, sizeof want - 1);
    assert_memory_equal(buf, want, n);
}

static void test_histogram_without_buckets(void **state)
{
    (void)state;
    char buf[256];
    prom p;
    prom_init(&p, buf, sizeof buf);
    prom_histogram(&p, "h", "H.", NULL, NULL, 0, 0, 0);
    const char want[] = "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 0\nh_sum 0.000000\n"
                        "h_count 0\n";
    assert_int_equal(prom_end(&p), sizeof want - 1);
    assert_memory_equal(buf, want, sizeof want - 1);
}

/* Every capacity short of the whole gives 0; the exact size (with the NUL) gives it all. */
static void test_too_small_is_zero(void **state)
{
    (void)state;
    char full[512];
    prom p;
    const double bounds[] = {1, 2};
    const uint64_t cum[] = {1, 2};
    prom_init(&p, full, sizeof full);
    prom_metric(&p, PROM_COUNTER, "a_total", "A.", 5);
    prom_histogram(&p, "b", "B.", bounds, cum, 2, 3, 1.5);
    size_t whole = prom_end(&p);
    assert_true(whole > 0);
    for (size_t cap = 0; cap <= whole; cap++) {
        char buf[512];
        prom_init(&p, buf, cap);
        prom_metric(&p, PROM_COUNTER, "a_total", "A.", 5);
        prom_histogram(&p, "b", "B.", bounds, cum, 2, 3, 1.5);
        assert_int_equal(prom_end(&p), 0);
        assert_true(p.len <= cap);
    }
    char buf[512];
    prom_init(&p, buf, whole + 1);
    prom_metric(&p, PROM_COUNTER, "a_total", "A.", 5);
    prom_histogram(&p, "b", "B.", bounds, cum, 2, 3, 1.5);
    assert_int_equal(prom_end(&p), whole);
    assert_memory_equal(buf, full, whole);
}

/* Once something did not fit, a shorter line after it is not written either. */
static void test_no_line_after_an_overflow(void **state)
{
    (void)state;
    char buf[40];
    prom p;
    prom_init(&p, buf, sizeof buf);
    prom_metric(&p, PROM_GAUGE, "long_name_that_does_not_fit", "Long help.", 1);
    size_t len = p.len;
    prom_metric(&p, PROM_GAUGE, "z", "Z.", 1);
    assert_int_equal(p.len, len);
    assert_int_equal(prom_end(&p), 0);
}

static void test_name_valid(void **state)
{
    (void)state;
    assert_true(prom_name_valid("wsfan_connections"));
    assert_true(prom_name_valid("_x:y_1"));
    assert_true(prom_name_valid(":a"));
    assert_true(prom_name_valid("A9"));
    assert_false(prom_name_valid(""));
    assert_false(prom_name_valid(NULL));
    assert_false(prom_name_valid("9a"));
    assert_false(prom_name_valid("a-b"));
    assert_false(prom_name_valid("a b"));
    assert_false(prom_name_valid("a.b"));
    assert_false(prom_name_valid("\xc3\xa9"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_gauge),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_histogram_without_buckets),
        cmocka_unit_test(test_too_small_is_zero),
        cmocka_unit_test(test_no_line_after_an_overflow),
        cmocka_unit_test(test_name_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
