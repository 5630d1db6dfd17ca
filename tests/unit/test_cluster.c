/* cluster: the Redis names and ids the cluster agrees on: the prefix rule, router and node
 * channel names, client ids made and split again, and every kind of id split refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cluster.h"

static ws_span span(const char *s) { return (ws_span){s, strlen(s)}; }

/* A string of n copies of c (n < sizeof buf). */
static const char *repeat(char *buf, char c, size_t n)
{
    memset(buf, c, n);
    buf[n] = '\0';
    return buf;
}

static void test_prefix_valid(void **state)
{
    (void)state;
    char buf[256];
    assert_true(cluster_prefix_valid(""));
    assert_true(cluster_prefix_valid("wsfan:"));
    assert_true(cluster_prefix_valid("a!~{}[]/\\\"'"));
    assert_true(cluster_prefix_valid(repeat(buf, 'p', CLUSTER_PREFIX_MAX)));
    assert_false(cluster_prefix_valid(repeat(buf, 'p', CLUSTER_PREFIX_MAX + 1)));
    assert_false(cluster_prefix_valid("ws fan:"));
    assert_false(cluster_prefix_valid("ws\tfan:"));
    assert_false(cluster_prefix_valid("wsfan:\n"));
    assert_false(cluster_prefix_valid("ws\x7f"));
    assert_false(cluster_prefix_valid("caf\xc3\xa9:"));
}

static void test_router_channel(void **state)
{
    (void)state;
    char out[24];
    assert_int_equal(cluster_router_channel(out, sizeof out, 0), 8);
    assert_string_equal(out, "router:0");
    assert_int_equal(cluster_router_channel(out, sizeof out, 4294967295u), 17);
    assert_string_equal(out, "router:4294967295");
    /* The NUL must fit too. */
    assert_int_equal(cluster_router_channel(out, 9, 12), 0);
    assert_int_equal(cluster_router_channel(out, 10, 12), 9);
    assert_string_equal(out, "router:12");
}

static void test_node_channel(void **state)
{
    (void)state;
    char out[CLUSTER_NODE_ID_MAX + 6], id[CLUSTER_NODE_ID_MAX + 2];
    assert_int_equal(cluster_node_channel(out, sizeof out, span("n1a2b3c4d.w0.0a1b2c")), 24);
    assert_string_equal(out, "node:n1a2b3c4d.w0.0a1b2c");
    /* Only the span's bytes are taken. */
    assert_int_equal(cluster_node_channel(out, sizeof out, (ws_span){"abcdef", 3}), 8);
    assert_string_equal(out, "node:abc");
    /* The longest node id fits the documented size; one byte more is no node id. */
    repeat(id, 'n', CLUSTER_NODE_ID_MAX);
    assert_int_equal(cluster_node_channel(out, sizeof out, span(id)), CLUSTER_NODE_ID_MAX + 5);
    assert_memory_equal(out, "node:nnn", 8);
    repeat(id, 'n', CLUSTER_NODE_ID_MAX + 1);
    assert_int_equal(cluster_node_channel(out, sizeof out, span(id)), 0);
    assert_int_equal(cluster_node_channel(out, 8, span("abc")), 0);
    assert_int_equal(cluster_node_channel(out, 9, span("abc")), 8);
}

static void test_client_id_round_trips(void **state)
{
    (void)state;
    char longest[CLUSTER_NODE_ID_MAX + 1];
    repeat(longest, 'x', CLUSTER_NODE_ID_MAX);
    const char *nodes[] = {"n1", "n1a2b3c4d.w0.0a1b2c", "edge-1.w999.ffffff", "a:b_c", longest};
    const uint64_t locals[] = {0, 1, 0xa, 0x123456789abcdef0u, UINT64_MAX};
    for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++)
        for (size_t k = 0; k < sizeof locals / sizeof locals[0]; k++) {
            char id[CLUSTER_CLIENT_ID_MAX + 1];
            size_t n = cluster_client_id(id, sizeof id, nodes[i], locals[k]);
            assert_true(n > strlen(nodes[i]) + 1);
            assert_int_equal(n, strlen(id));
            assert_true(n <= CLUSTER_CLIENT_ID_MAX);
            ws_span node;
            uint64_t local = 42;
            assert_true(cluster_client_split((ws_span){id, n}, &node, &local));
            assert_int_equal(node.n, strlen(nodes[i]));
            assert_memory_equal(node.p, nodes[i], node.n);
            assert_true(node.p == id);
            assert_true(local == locals[k]);
        }
}

static void test_client_id_make(void **state)
{
    (void)state;
    char id[CLUSTER_CLIENT_ID_MAX + 1];
    assert_int_equal(cluster_client_id(id, sizeof id, "n1.w0.abcdef", 0xff), 15);
    assert_string_equal(id, "n1.w0.abcdef.ff"); /* lower-case hex, no leading zeros */
    assert_int_equal(cluster_client_id(id, sizeof id, "n", 0), 3);
    assert_string_equal(id, "n.0");
    assert_int_equal(cluster_client_id(id, 3, "n", 0), 0); /* no room for the NUL */
    assert_int_equal(cluster_client_id(id, 4, "n", 0), 3);
    /* Longer than any client id can be: refused whatever the room. */
    char big[CLUSTER_CLIENT_ID_MAX + 32], node[CLUSTER_NODE_ID_MAX + 2];
    repeat(node, 'x', CLUSTER_NODE_ID_MAX + 1);
    assert_int_equal(cluster_client_id(big, sizeof big, node, UINT64_MAX), 0);
}

static void test_client_split_refuses(void **state)
{
    (void)state;
    char big[CLUSTER_CLIENT_ID_MAX + 8];
    const char *bad[] = {
        "",                   /* empty */
        "ab",                 /* too short */
        "nodot",              /* no local part */
        ".ff",                /* no node */
        "a.",                 /* empty local part */
        "abc.",               /* empty local part */
        "a.FF",               /* upper-case hex */
        "a.fg",               /* not hex */
        "a.-1",               /* not hex */
        "a.12345678901234567", /* 17 hex digits: more than 64 bits */
        "a b.ff",             /* a node id that is no channel name */
        "a/b.ff",
        "caf\xc3\xa9.ff",
    };
    ws_span node = {"unchanged", 9};
    uint64_t local = 7;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(cluster_client_split(span(bad[i]), &node, &local));
    /* A node id over CLUSTER_NODE_ID_MAX, and an id over CLUSTER_CLIENT_ID_MAX. */
    repeat(big, 'x', CLUSTER_NODE_ID_MAX + 1);
    strcpy(big + CLUSTER_NODE_ID_MAX + 1, ".f");
    assert_false(cluster_client_split(span(big), &node, &local));
    repeat(big, 'x', CLUSTER_CLIENT_ID_MAX + 1);
    big[5] = '.';
    assert_false(cluster_client_split(span(big), &node, &local));
    /* The shortest that is one, and 16 hex digits. */
    assert_true(cluster_client_split(span("a.0"), &node, &local));
    assert_int_equal(node.n, 1);
    assert_true(local == 0);
    assert_true(cluster_client_split(span("a.b.ffffffffffffffff"), &node, &local));
    assert_int_equal(node.n, 3); /* the last dot splits */
    assert_true(local == UINT64_MAX);
}

/* Slots as a cluster-enabled redis-server 7.0 answered CLUSTER KEYSLOT for the same names
 * (the specification's own vector is the first: CRC16 of "123456789" is 0x31C3), hash tags
 * included: only the first {...} counts, and only if it is not empty. */
static void test_slots_are_redis_clusters(void **state)
{
    (void)state;
    static const struct { const char *key; uint16_t slot; } v[] = {
        {"123456789", 12739}, {"foo", 12182}, {"bar", 5061}, {"hello", 866},
        {"{user1000}.following", 3443}, {"foo{}{bar}", 8363}, {"foo{{bar}}zap", 4015},
        {"foo{bar}{zap}", 5061}, {"ticks.EURUSD", 7928}, {"wsfan:ch:{ticks.EURUSD}", 7928},
        {"chat.lobby", 14675}, {"a", 15495},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        assert_int_equal(cluster_slot(v[i].key, strlen(v[i].key)), v[i].slot);
    /* A channel's three names share its slot: one script touches them all. */
    char name[CLUSTER_NAME_MAX + 1];
    ws_span ch = {"room.42", 7};
    uint16_t slot = cluster_slot("room.42", 7);
    static const char *const kinds[] = {CLUSTER_CHANNEL, CLUSTER_META, CLUSTER_HIST};
    for (size_t k = 0; k < 3; k++) {
        size_t n = cluster_channel_name(name, sizeof name, kinds[k], ch);
        assert_int_equal(cluster_slot(name, n), slot);
    }
}

/* Channel names as applications name them spread evenly over three masters holding the slot
 * ranges redis-cli --cluster create gives them: no master gets a third more or less than its
 * share of 3,000 names (binomial: 1,000 +- 26 for one standard deviation). */
static void test_real_channel_names_spread_over_three_masters(void **state)
{
    (void)state;
    static const char *const forms[] = {"ticks.%s%u", "chat.room.%u", "user.%u.inbox", "game:%u:state"};
    static const char *const syms[] = {"EUR", "USD", "BTC", "AAPL", "MSFT", "GBP", "JPY", "ETH"};
    unsigned per[3] = {0, 0, 0};
    char name[64];
    for (unsigned i = 0; i < 3000; i++) {
        int n = i % 4 == 0 ? snprintf(name, sizeof name, forms[0], syms[i % 8], i / 8)
                           : snprintf(name, sizeof name, forms[i % 4], i);
        uint16_t slot = cluster_slot(name, (size_t)n);
        per[slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2]++;
    }
    for (int m = 0; m < 3; m++)
        assert_true(per[m] > 880 && per[m] < 1120);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_valid),
        cmocka_unit_test(test_router_channel),
        cmocka_unit_test(test_node_channel),
        cmocka_unit_test(test_client_id_round_trips),
        cmocka_unit_test(test_client_id_make),
        cmocka_unit_test(test_client_split_refuses),
        cmocka_unit_test(test_slots_are_redis_clusters),
        cmocka_unit_test(test_real_channel_names_spread_over_three_masters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
