/* gcra: the rate limiter behind --max-msg-rate, --ip-connect-rate and --publish-rate: exact
 * bursts, the steady rate, and a wall clock that steps back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <cmocka.h>

#include "gcra.h"

static int admitted(double *tat, double now, double rate, double burst, int tries)
{
    int n = 0;
    for (int i = 0; i < tries; i++)
        n += gcra_admit(tat, now, rate, burst);
    return n;
}

static void test_burst_is_exact(void **state)
{
    (void)state;
    double tat = 0;
    assert_int_equal(admitted(&tat, 1000.0, 50, 100, 500), 100);
    tat = 0;
    assert_int_equal(admitted(&tat, 1000.0, 1000, 1000, 5000), 1000);
    tat = 0;
    assert_int_equal(admitted(&tat, 1000.0, 5, 50, 500), 50);
}

static void test_steady_rate_after_the_burst(void **state)
{
    (void)state;
    double tat = 0, now = 1000.0;
    admitted(&tat, now, 100, 100, 1000);
    int n = 0;
    for (int ms = 1; ms <= 10000; ms++) /* 10 s, one try a millisecond */
        n += gcra_admit(&tat, now + ms / 1000.0, 100, 100);
    assert_in_range(n, 995, 1001); /* 100 a second */
}

static void test_refusal_changes_nothing(void **state)
{
    (void)state;
    double tat = 0;
    admitted(&tat, 50.0, 10, 10, 10);
    double before = tat;
    assert_false(gcra_admit(&tat, 50.0, 10, 10));
    assert_true(tat == before);
}

static void test_a_clock_step_back_does_not_lock_out(void **state)
{
    (void)state;
    double tat = 0, now = 1e9;
    admitted(&tat, now, 100, 200, 1000); /* full */
    now -= 3600; /* NTP steps the wall clock back an hour */
    assert_true(gcra_admit(&tat, now, 100, 200));
    assert_int_equal(admitted(&tat, now, 100, 200, 1000), 199);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_is_exact),
        cmocka_unit_test(test_steady_rate_after_the_burst),
        cmocka_unit_test(test_refusal_changes_nothing),
        cmocka_unit_test(test_a_clock_step_back_does_not_lock_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
