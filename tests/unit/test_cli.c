/* cli: table-driven command lines: defaults, every kind, ranges, positional arguments, errors,
 * and a CLI_CUSTOM flag its program's function does not know. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"

typedef struct cfg {
    bool flag;
    int n, ranged, level;
    size_t size;
    double sec, zero_ok;
    const char *str;
    int mode;
    const char *tags[4];
    int ntags;
    const char *args[2];
} cfg;

#define O(f) offsetof(cfg, f)

static const cli_def DEFS[] = {
    {"flag", CLI_FLAG, O(flag), NULL, NULL, "a flag"},
    {"n", CLI_INT, O(n), "N", "7", "an int"},
    {"ranged", CLI_INT, O(ranged), "N", "5", "an int in 1-64"},
    {"size", CLI_SIZE, O(size), "SIZE", "64k", "a size"},
    {"sec", CLI_SECONDS, O(sec), "SEC", "1.5", "seconds"},
    {"zero-ok", CLI_SECONDS, O(zero_ok), "SEC", "0", "seconds, 0 allowed by its range"},
    {"str", CLI_STRING, O(str), "S", "dflt", "a string"},
    {"level", CLI_LEVEL, O(level), "LEVEL", "info", "a log level"},
    {"mode", CLI_CUSTOM, O(mode), "a|b", "a", "custom, one value"},
    {"tag", CLI_CUSTOM, O(tags), "T", NULL, "custom, repeatable"},
    {"forgotten", CLI_CUSTOM, 0, "X", NULL, "custom, but the function does not know it"},
};

static const cli_range RANGES[] = {{"ranged", 1, 64}, {"zero-ok", 0, 10}};

static int calls;

static int custom(void *base, const cli_def *d, const char *v)
{
    cfg *c = base;
    calls++;
    if (strcmp(d->name, "mode") == 0) {
        if (strcmp(v, "a") && strcmp(v, "b"))
            return -1;
        c->mode = v[0];
        return 0;
    }
    if (strcmp(d->name, "tag") == 0) {
        if (c->ntags == 4)
            return -1;
        c->tags[c->ntags++] = v;
        return 0;
    }
    return CLI_UNKNOWN;
}

static const cli_prog PROG = {
    .name = "t", .version = "1", .about = "test", .defs = DEFS,
    .ndefs = sizeof DEFS / sizeof DEFS[0], .custom = custom,
    .ranges = RANGES, .nranges = sizeof RANGES / sizeof RANGES[0],
};

static const cli_prog PROG_ARGS = {
    .name = "t", .version = "1", .about = "test", .defs = DEFS,
    .ndefs = sizeof DEFS / sizeof DEFS[0], .custom = custom,
    .ranges = RANGES, .nranges = sizeof RANGES / sizeof RANGES[0],
    .args = "SCENARIO URL", .nargs = 2, .args_off = O(args),
};

/* Parses a NULL-terminated argument list (argv[0] added) into a zeroed *c. */
static int run(const cli_prog *p, cfg *c, ...)
{
    char *argv[32] = {"t"};
    int argc = 1;
    va_list ap;
    va_start(ap, c);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 31;)
        argv[argc++] = a;
    va_end(ap);
    memset(c, 0, sizeof *c);
    return cli_parse(p, c, argc, argv);
}

static void test_defaults(void **state)
{
    (void)state;
    cfg c;
    assert_int_equal(run(&PROG, &c, NULL), 0);
    assert_false(c.flag);
    assert_int_equal(c.n, 7);
    assert_int_equal(c.ranged, 5);
    assert_int_equal(c.size, 64 * 1024);
    assert_true(c.sec == 1.5);
    assert_true(c.zero_ok == 0);
    assert_string_equal(c.str, "dflt");
    assert_int_equal(c.mode, 'a');
    assert_int_equal(c.ntags, 0);
}

static void test_every_kind(void **state)
{
    (void)state;
    cfg c;
    assert_int_equal(run(&PROG, &c, "--flag", "--n", "42", "--size", "2m", "--sec=0.25", "--str",
                         "x", "--level", "debug", "--mode", "b", NULL), 0);
    assert_true(c.flag);
    assert_int_equal(c.n, 42);
    assert_int_equal(c.size, 2 * 1024 * 1024);
    assert_true(c.sec == 0.25);
    assert_string_equal(c.str, "x");
    assert_int_equal(c.level, 0); /* LOG_DEBUG */
    assert_int_equal(c.mode, 'b');
}

static void test_bad_values(void **state)
{
    (void)state;
    cfg c;
    const char *bad[][2] = {{"--n", "-1"}, {"--n", "1.5"}, {"--n", "x"}, {"--n", "99999999999"},
                            {"--size", "1x"}, {"--size", "-1"}, {"--sec", "0"}, {"--sec", "nan"},
                            {"--level", "loud"}, {"--mode", "c"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(run(&PROG, &c, bad[i][0], bad[i][1], NULL), -1);
    assert_int_equal(run(&PROG, &c, "--n", NULL), -1);        /* missing value */
    assert_int_equal(run(&PROG, &c, "--nope", NULL), -1);     /* unknown flag */
    assert_int_equal(run(&PROG, &c, "extra", NULL), -1);      /* no positional arguments */
}

static void test_ranges(void **state)
{
    (void)state;
    cfg c;
    assert_int_equal(run(&PROG, &c, "--ranged", "1", NULL), 0);
    assert_int_equal(c.ranged, 1);
    assert_int_equal(run(&PROG, &c, "--ranged", "64", NULL), 0);
    assert_int_equal(c.ranged, 64);
    assert_int_equal(run(&PROG, &c, "--ranged", "0", NULL), -1);
    assert_int_equal(run(&PROG, &c, "--ranged", "65", NULL), -1);
    assert_int_equal(run(&PROG, &c, "--zero-ok", "0", NULL), 0); /* its range allows 0 */
    assert_int_equal(run(&PROG, &c, "--zero-ok", "10", NULL), 0);
    assert_true(c.zero_ok == 10);
    assert_int_equal(run(&PROG, &c, "--zero-ok", "10.01", NULL), -1);
    assert_int_equal(run(&PROG, &c, "--sec", "0", NULL), -1); /* the kind's own: above 0 */
}

static void test_repeatable_custom(void **state)
{
    (void)state;
    cfg c;
    assert_int_equal(run(&PROG, &c, "--tag", "a", "--tag", "b", "--tag=c", NULL), 0);
    assert_int_equal(c.ntags, 3);
    assert_string_equal(c.tags[2], "c");
    assert_int_equal(run(&PROG, &c, "--tag", "1", "--tag", "2", "--tag", "3", "--tag", "4",
                         "--tag", "5", NULL), -1);
}

/* The bug this guards against: wsnode's function took every name it did not know for --origin.
 * A CLI_CUSTOM def the function does not know is an error, and nothing is stored for it. */
static void test_unknown_custom_flag_is_an_error(void **state)
{
    (void)state;
    cfg c;
    calls = 0;
    assert_int_equal(run(&PROG, &c, "--forgotten", "x", NULL), -1);
    assert_int_equal(calls, 2); /* --mode's default, then --forgotten */
    assert_int_equal(c.ntags, 0);
    assert_int_equal(c.mode, 'a');
}

/* Tables that disagree are refused before anything is parsed. */
static void test_inconsistent_tables(void **state)
{
    (void)state;
    cfg c;
    cli_prog p = PROG;
    p.custom = NULL; /* CLI_CUSTOM defs and no function */
    assert_int_equal(run(&p, &c, NULL), -1);
    static const cli_range str_range[] = {{"str", 0, 1}};
    p = PROG;
    p.ranges = str_range;
    p.nranges = 1;
    assert_int_equal(run(&p, &c, NULL), -1);
    static const cli_range no_such[] = {{"no-such", 0, 1}};
    p.ranges = no_such;
    assert_int_equal(run(&p, &c, NULL), -1);
}

static void test_positional_arguments(void **state)
{
    (void)state;
    cfg c;
    assert_int_equal(run(&PROG_ARGS, &c, "fanout", "--n", "3", "ws://x/", NULL), 0);
    assert_string_equal(c.args[0], "fanout");
    assert_string_equal(c.args[1], "ws://x/");
    assert_int_equal(c.n, 3);
    assert_int_equal(run(&PROG_ARGS, &c, "--flag", "a", "b", NULL), 0);
    assert_true(c.flag);
    assert_int_equal(run(&PROG_ARGS, &c, "fanout", NULL), -1);
    assert_int_equal(run(&PROG_ARGS, &c, "a", "b", "c", NULL), -1);
    assert_int_equal(run(&PROG_ARGS, &c, "--", "a", "--b", NULL), 0); /* -- ends the flags */
    assert_string_equal(c.args[1], "--b");
}

static void test_help_and_version(void **state)
{
    (void)state;
    cfg c;
    assert_int_equal(run(&PROG_ARGS, &c, "--help", NULL), 1);
    assert_int_equal(run(&PROG_ARGS, &c, "-h", NULL), 1);
    assert_int_equal(run(&PROG_ARGS, &c, "--version", NULL), 1);
    /* A parse stopped half-way leaves no state behind for the next one. */
    assert_int_equal(run(&PROG, &c, "--n", "bad", "--flag", NULL), -1);
    assert_int_equal(run(&PROG, &c, "--flag", NULL), 0);
    assert_true(c.flag);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_kind),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_repeatable_custom),
        cmocka_unit_test(test_unknown_custom_flag_is_an_error),
        cmocka_unit_test(test_inconsistent_tables),
        cmocka_unit_test(test_positional_arguments),
        cmocka_unit_test(test_help_and_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
