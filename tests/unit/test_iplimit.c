/* iplimit: connections per client address and the connect rate (GCRA, ten seconds' burst),
 * IPv6 counted per /64, loopback recognised, and the sweep forgetting idle addresses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "iplimit.h"

static const uint8_t KEY[16] = {9, 8, 7, 6, 5, 4, 3, 2, 1};

static struct sockaddr_storage v4(const char *s)
{
    struct sockaddr_storage a;
    memset(&a, 0, sizeof a);
    struct sockaddr_in *in = (struct sockaddr_in *)&a;
    in->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, s, &in->sin_addr), 1);
    return a;
}

static struct sockaddr_storage v6(const char *s)
{
    struct sockaddr_storage a;
    memset(&a, 0, sizeof a);
    struct sockaddr_in6 *in = (struct sockaddr_in6 *)&a;
    in->sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, s, &in->sin6_addr), 1);
    return a;
}

static void test_connections_per_address(void **state)
{
    (void)state;
    ip_table *t = ipl_new(3, 0, KEY);
    struct sockaddr_storage a = v4("192.0.2.1"), b = v4("192.0.2.2");
    const char *why = NULL;
    ip_entry *e[3];
    for (int i = 0; i < 3; i++)
        assert_non_null(e[i] = ipl_admit(t, &a, 100.0, &why));
    assert_null(ipl_admit(t, &a, 100.0, &why));
    assert_string_equal(why, "too many connections from this address");
    assert_non_null(ipl_admit(t, &b, 100.0, &why)); /* another address has its own count */
    ipl_release(t, e[0], 100.0);
    assert_non_null(ipl_admit(t, &a, 100.0, &why)); /* a released connection makes room */
    assert_null(ipl_admit(t, &a, 100.0, &why));
    ipl_free(t);
}

static void test_connect_rate(void **state)
{
    (void)state;
    ip_table *t = ipl_new(0, 2, KEY); /* 2 a second, bursts of 20 */
    struct sockaddr_storage a = v4("198.51.100.7");
    const char *why = NULL;
    int n = 0;
    for (int i = 0; i < 100; i++) {
        ip_entry *e = ipl_admit(t, &a, 1000.0, &why);
        if (e) {
            n++;
            ipl_release(t, e, 1000.0);
        }
    }
    assert_int_equal(n, 20);
    assert_string_equal(why, "connecting too fast");
    assert_null(ipl_admit(t, &a, 1000.1, &why));
    assert_non_null(ipl_admit(t, &a, 1000.5, &why)); /* half a second: one more is due */
    ipl_free(t);
}

static void test_ipv6_counts_per_64(void **state)
{
    (void)state;
    ip_table *t = ipl_new(1, 0, KEY);
    struct sockaddr_storage a = v6("2001:db8:1:2::1"), b = v6("2001:db8:1:2:ffff::9"),
                            c = v6("2001:db8:1:3::1");
    const char *why;
    assert_non_null(ipl_admit(t, &a, 1.0, &why));
    assert_null(ipl_admit(t, &b, 1.0, &why)); /* the same /64 */
    assert_non_null(ipl_admit(t, &c, 1.0, &why));
    ipl_free(t);
}

static void test_loopback(void **state)
{
    (void)state;
    struct sockaddr_storage a = v4("127.0.0.1"), b = v4("127.9.9.9"), c = v6("::1"),
                            d = v6("::ffff:127.0.0.1"), e = v4("10.0.0.1"), f = v6("::2");
    assert_true(ipl_loopback(&a));
    assert_true(ipl_loopback(&b));
    assert_true(ipl_loopback(&c));
    assert_true(ipl_loopback(&d));
    assert_false(ipl_loopback(&e));
    assert_false(ipl_loopback(&f));
}

static void test_sweep_forgets_only_what_ran_out(void **state)
{
    (void)state;
    ip_table *t = ipl_new(1, 1, KEY); /* one connection; 1 a second, bursts of 10 */
    struct sockaddr_storage a = v4("203.0.113.1"), b = v4("203.0.113.2");
    const char *why;
    for (int i = 0; i < 10; i++)
        ipl_release(t, ipl_admit(t, &a, 50.0, &why), 50.0);
    assert_null(ipl_admit(t, &a, 50.0, &why));
    ip_entry *held = ipl_admit(t, &b, 50.0, &why);
    assert_non_null(held);
    ipl_sweep(t, 50.5); /* a's rate state still matters: it stays refused */
    assert_null(ipl_admit(t, &a, 50.5, &why));
    assert_string_equal(why, "connecting too fast");
    ipl_sweep(t, 1000.0); /* a is forgotten; b still holds its connection */
    assert_null(ipl_admit(t, &b, 1000.0, &why));
    assert_string_equal(why, "too many connections from this address");
    assert_non_null(ipl_admit(t, &a, 1000.0, &why));
    ipl_release(t, held, 1000.0);
    assert_non_null(ipl_admit(t, &b, 1000.0, &why));
    ipl_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connections_per_address),
        cmocka_unit_test(test_connect_rate),
        cmocka_unit_test(test_ipv6_counts_per_64),
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_sweep_forgets_only_what_ran_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
