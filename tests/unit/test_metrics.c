/* metrics: the node's exposition from the one table of stats.h: every row once, under a valid
 * name, with the sum of the workers' slots; the histogram cumulative, and the worker count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"
#include "prom.h"

#define OUT_MAX (64 * 1024)

/* Two workers whose every slot differs: worker 0 holds k + 1 in slot k, worker 1 1000 * (k + 1). */
static void two_workers(stats_slot w[2])
{
    uint64_t a[STATS_NSLOTS], b[STATS_NSLOTS];
    for (size_t k = 0; k < STATS_NSLOTS; k++) {
        a[k] = k + 1;
        b[k] = 1000 * (k + 1);
    }
    memcpy(&w[0], a, sizeof a);
    memcpy(&w[1], b, sizeof b);
}

/* The value on the sample line "name value" (or "name{...} value"), which must be there once. */
static const char *sample(const char *out, const char *name)
{
    size_t n = strlen(name);
    const char *found = NULL;
    for (const char *p = out; (p = strstr(p, name)); p += n) {
        if ((p == out || p[-1] == '\n') && (p[n] == ' ' || p[n] == '{')) {
            assert_null(found);
            found = p + n;
        }
    }
    assert_non_null(found);
    return found;
}

static uint64_t value_of(const char *out, const char *name)
{
    const char *v = sample(out, name);
    assert_int_equal(*v, ' ');
    return strtoull(v + 1, NULL, 10);
}

static size_t count(const char *out, const char *needle)
{
    size_t n = 0;
    for (const char *p = out; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

static void test_renders_the_sum_of_two_workers(void **state)
{
    (void)state;
    stats_slot w[2];
    two_workers(w);
    char *out = calloc(1, OUT_MAX);
    assert_true(metrics_render(w, 2, out, OUT_MAX - 1) > 0);
#define CHECK(field, kind, name, help) assert_int_equal(value_of(out, name), w[0].field + w[1].field);
    STATS_METRICS(CHECK)
#undef CHECK
    assert_int_equal(value_of(out, "wsfan_workers"), 2);
    /* One worker alone: its own values. */
    assert_true(metrics_render(&w[1], 1, out, OUT_MAX - 1) > 0);
    assert_int_equal(value_of(out, "wsfan_connections_accepted_total"), w[1].accepted);
    assert_int_equal(value_of(out, "wsfan_workers"), 1);
    free(out);
}

static void test_histogram_is_summed_and_cumulative(void **state)
{
    (void)state;
    stats_slot w[2];
    memset(w, 0, sizeof w);
    /* Worker 0 saw 0.2 ms and 30 ms; worker 1 saw 0.7 ms and 10 s (beyond the last bound). */
    static const double bounds[LAT_BUCKETS] = STATS_LAT_BOUNDS;
    const double seen[2][2] = {{0.0002, 0.03}, {0.0007, 10}};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            w[i].lat_count++;
            w[i].lat_sum_us += (uint64_t)(seen[i][j] * 1e6);
            for (int b = 0; b < LAT_BUCKETS; b++)
                w[i].lat_bucket[b] += seen[i][j] <= bounds[b];
        }
    char *out = calloc(1, OUT_MAX);
    assert_true(metrics_render(w, 2, out, OUT_MAX - 1) > 0);
    assert_non_null(strstr(out, "# HELP wsfan_publish_delivery_seconds Publish (publisher's "
                                "clock) to fan-out on this node.\n"
                                "# TYPE wsfan_publish_delivery_seconds histogram\n"
                                "wsfan_publish_delivery_seconds_bucket{le=\"0.0001\"} 0\n"
                                "wsfan_publish_delivery_seconds_bucket{le=\"0.00025\"} 1\n"
                                "wsfan_publish_delivery_seconds_bucket{le=\"0.0005\"} 1\n"
                                "wsfan_publish_delivery_seconds_bucket{le=\"0.001\"} 2\n"));
    assert_non_null(strstr(out, "wsfan_publish_delivery_seconds_bucket{le=\"0.025\"} 2\n"
                                "wsfan_publish_delivery_seconds_bucket{le=\"0.05\"} 3\n"));
    assert_non_null(strstr(out, "wsfan_publish_delivery_seconds_bucket{le=\"2.5\"} 3\n"
                                "wsfan_publish_delivery_seconds_bucket{le=\"+Inf\"} 4\n"
                                "wsfan_publish_delivery_seconds_sum 10.030900\n"
                                "wsfan_publish_delivery_seconds_count 4\n"));
    free(out);
}

static void test_every_row_once_with_a_valid_name(void **state)
{
    (void)state;
    stats_slot w[1];
    memset(w, 0, sizeof w);
    char *out = calloc(1, OUT_MAX), line[256];
    assert_true(metrics_render(w, 1, out, OUT_MAX - 1) > 0);
    size_t rows = 0;
#define ONCE(name, kind) \
    do { \
        assert_true(prom_name_valid(name)); \
        snprintf(line, sizeof line, "# TYPE %s %s\n", name, kind); \
        assert_int_equal(count(out, line), 1); \
        snprintf(line, sizeof line, "# HELP %s ", name); \
        assert_int_equal(count(out, line), 1); \
        rows++; \
    } while (0);
#define ROW(field, kind, name, help) ONCE(name, PROM_##kind == PROM_GAUGE ? "gauge" : "counter")
#define HIST(f, name, help, buckets, bounds) ONCE(name, "histogram")
    STATS_METRICS(ROW)
    STATS_HISTOGRAMS(HIST)
    ONCE("wsfan_workers", "gauge")
    assert_int_equal(count(out, "# TYPE "), rows);
    assert_int_equal(count(out, "# HELP "), rows);
    /* The first rows as /metrics has always shown them. */
    const char head[] = "# HELP wsfan_connections Open client connections.\n"
                        "# TYPE wsfan_connections gauge\n"
                        "wsfan_connections 0\n"
                        "# HELP wsfan_connections_accepted_total Connections accepted.\n"
                        "# TYPE wsfan_connections_accepted_total counter\n"
                        "wsfan_connections_accepted_total 0\n";
    assert_memory_equal(out, head, sizeof head - 1);
    free(out);
}

static void test_too_small_is_zero(void **state)
{
    (void)state;
    stats_slot w[2];
    two_workers(w);
    char *out = calloc(1, OUT_MAX);
    size_t whole = metrics_render(w, 2, out, OUT_MAX);
    assert_true(whole > 0);
    assert_int_equal(metrics_render(w, 2, out, whole), 0); /* no room for the NUL */
    assert_int_equal(metrics_render(w, 2, out, 100), 0);
    assert_int_equal(metrics_render(w, 2, out, whole + 1), whole);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_renders_the_sum_of_two_workers),
        cmocka_unit_test(test_histogram_is_summed_and_cumulative),
        cmocka_unit_test(test_every_row_once_with_a_valid_name),
        cmocka_unit_test(test_too_small_is_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
