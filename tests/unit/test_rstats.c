/* rstats: wsrouter's exposition from its one table: every row once under a valid name, with
 * its field's value, as /metrics has always shown them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "prom.h"
#include "rstats.h"

static size_t count(const char *out, const char *needle)
{
    size_t n = 0;
    for (const char *p = out; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

static void test_every_row_once_with_its_value(void **state)
{
    (void)state;
    rstats s;
    uint64_t v = 1;
#define SET(field, kind, name, help) s.field = v++ * 7;
    RSTATS(SET)
#undef SET
    static char out[16384];
    char line[256];
    assert_true(rstats_render(&s, out, sizeof out) > 0);
    size_t rows = 0;
#define CHECK(field, kind, name, help) \
    assert_true(prom_name_valid(name)); \
    snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, \
             PROM_##kind == PROM_GAUGE ? "gauge" : "counter", name, \
             (unsigned long long)s.field); \
    assert_int_equal(count(out, line), 1); \
    snprintf(line, sizeof line, "# TYPE %s ", name); \
    assert_int_equal(count(out, line), 1); \
    rows++;
    RSTATS(CHECK)
#undef CHECK
    assert_int_equal(count(out, "# TYPE "), rows);
    const char head[] = "# HELP wsfan_router_up 1 while Redis is reachable and the shard's "
                        "channel subscribed.\n"
                        "# TYPE wsfan_router_up gauge\n"
                        "wsfan_router_up 7\n";
    assert_memory_equal(out, head, sizeof head - 1);
}

static void test_too_small_is_zero(void **state)
{
    (void)state;
    rstats s;
    memset(&s, 0, sizeof s);
    static char out[16384];
    size_t whole = rstats_render(&s, out, sizeof out);
    assert_true(whole > 0);
    assert_int_equal(rstats_render(&s, out, whole), 0);
    assert_int_equal(rstats_render(&s, out, whole + 1), whole);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_row_once_with_its_value),
        cmocka_unit_test(test_too_small_is_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
