/* hub: a worker's channels on ws_table: subscribe and unsubscribe with their return values and
 * counts, fan-out of one shared frame to exactly the members, the member and active
 * callbacks, the seq kept by idle channels, and many channels (table growth). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hub.h"
#include "ws_list.h"

typedef struct fake {
    hub_member m;
    int got;            /* frames delivered */
    const wbuf *last;   /* the last frame (compared, never read: the hub may free it) */
    char text[96];      /* the start of its payload */
} fake;

static void deliver(hub_member *m, wbuf *frame, void *ctx)
{
    (void)ctx;
    fake *f = ws_container_of(m, fake, m);
    f->got++;
    f->last = frame;
    size_t n = frame->len - 2 < sizeof f->text - 1 ? frame->len - 2 : sizeof f->text - 1;
    memcpy(f->text, frame->data + 2, n); /* a short frame: a two-byte header */
    f->text[n] = '\0';
}

static int joins, leaves, actives, inactives;

static void on_member(void *ctx, hub_member *m, ws_span name, bool joined)
{
    (void)ctx;
    (void)m;
    (void)name;
    if (joined)
        joins++;
    else
        leaves++;
}

static void on_active(void *ctx, ws_span name, bool active)
{
    (void)ctx;
    (void)name;
    if (active)
        actives++;
    else
        inactives++;
}

static const uint8_t KEY[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static ws_span S(const char *s) { return (ws_span){s, strlen(s)}; }

static void test_subscribe_counts(void **state)
{
    (void)state;
    hub h;
    hub_init(&h, deliver, NULL, 16, KEY);
    fake a = {0}, b = {0};
    assert_int_equal(hub_subscribe(&h, &a.m, S("room")), 1);
    assert_int_equal(hub_subscribe(&h, &a.m, S("room")), 0); /* twice is no error */
    assert_int_equal(hub_subscribe(&h, &b.m, S("room")), 1);
    assert_int_equal(hub_count(&h, S("room")), 2);
    assert_true(hub_is_member(&h, &a.m, S("room")));
    assert_false(hub_is_member(&h, &a.m, S("other")));
    assert_int_equal(hub_unsubscribe(&h, &a.m, S("room")), 1);
    assert_int_equal(hub_unsubscribe(&h, &a.m, S("room")), 0);
    assert_int_equal(hub_count(&h, S("room")), 1);
    assert_false(hub_is_member(&h, &a.m, S("room")));
    assert_null(a.m.subs); /* no subscription, no array */
    hub_leave_all(&h, &b.m);
    assert_int_equal(hub_count(&h, S("room")), 0);
    hub_free(&h);
}

static void test_publish_reaches_exactly_the_members(void **state)
{
    (void)state;
    hub h;
    hub_init(&h, deliver, NULL, 16, KEY);
    fake f[5];
    memset(f, 0, sizeof f);
    for (int i = 0; i < 3; i++)
        hub_subscribe(&h, &f[i].m, S("a"));
    hub_subscribe(&h, &f[3].m, S("b"));
    size_t delivered;
    assert_int_equal(hub_publish(&h, S("a"), S("{\"x\":1}"), &delivered), 1);
    assert_int_equal(delivered, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(f[i].got, 1);
    assert_int_equal(f[3].got, 0);
    assert_int_equal(f[4].got, 0);
    /* One frame shared by all, framed once: the same buffer, with the message in it. */
    assert_ptr_equal(f[0].last, f[1].last);
    assert_ptr_equal(f[1].last, f[2].last);
    assert_non_null(strstr(f[0].text, "\"data\":{\"x\":1}"));
    assert_int_equal(hub_publish(&h, S("a"), S("2"), &delivered), 2);
    hub_unsubscribe(&h, &f[1].m, S("a"));
    assert_int_equal(hub_publish(&h, S("a"), S("3"), &delivered), 3);
    assert_int_equal(delivered, 2);
    assert_int_equal(f[1].got, 2);
    assert_int_equal(f[0].got, 3);
    assert_int_equal(hub_deliver(&h, S("b"), 77, S("e1"), S("true")), 1);
    assert_int_equal(f[3].got, 1);
    assert_non_null(strstr(f[3].text, "\"seq\":77"));
    for (int i = 0; i < 4; i++)
        hub_leave_all(&h, &f[i].m);
    hub_free(&h);
}

/* Positions from a bus: unknown until a message or a read; never a seq twice; a new epoch
 * resets the subscribers before its first message; a channel nobody follows any more forgets
 * what it knew. */
static void test_bus_positions_and_reset(void **state)
{
    (void)state;
    hub h;
    fake f = {0};
    env_pos pos;
    hub_init(&h, deliver, NULL, 16, KEY);
    h.remote = true;
    assert_int_equal(hub_subscribe(&h, &f.m, S("c")), 1);
    assert_false(hub_position(&h, S("c"), &pos));
    hub_learn(&h, S("c"), 41, S("E1"));
    assert_true(hub_position(&h, S("c"), &pos));
    assert_int_equal(pos.seq, 41);
    assert_int_equal(pos.epoch.n, 2);
    assert_memory_equal(pos.epoch.p, "E1", 2);
    hub_learn(&h, S("c"), 5, S("E0")); /* a read older than what is known changes nothing */
    assert_true(hub_position(&h, S("c"), &pos) && pos.seq == 41);
    assert_int_equal(hub_deliver(&h, S("c"), 42, S("E1"), S("1")), 1);
    assert_int_equal(f.got, 1);
    assert_non_null(strstr(f.text, "\"seq\":42"));
    /* What reached the channel already, read by a heal and brought by pub/sub too: dropped. */
    assert_int_equal(hub_deliver(&h, S("c"), 42, S("E1"), S("1")), 0);
    assert_int_equal(hub_deliver(&h, S("c"), 40, S("E1"), S("0")), 0);
    assert_int_equal(f.got, 1);
    assert_int_equal(hub_deliver(&h, S("c"), 1, S("E2"), S("2")), 1);
    assert_int_equal(f.got, 3); /* the reset, then the message */
    assert_non_null(strstr(f.text, "\"seq\":1"));
    assert_true(hub_position(&h, S("c"), &pos) && pos.seq == 1 && pos.epoch.n == 2 &&
                memcmp(pos.epoch.p, "E2", 2) == 0);
    hub_unsubscribe(&h, &f.m, S("c"));
    assert_false(hub_position(&h, S("c"), &pos));
    hub_free(&h);
}

/* Without a bus, every channel made gets an epoch of its own, so a forgotten channel that
 * starts again at seq 1 is never in the epoch it had. */
static void test_local_epochs(void **state)
{
    (void)state;
    hub h;
    fake f = {0};
    size_t delivered;
    env_pos pos;
    char first[CLUSTER_EPOCH_MAX + 1];
    hub_init(&h, deliver, NULL, 1, KEY);
    snprintf(h.epoch_base, sizeof h.epoch_base, "abc");
    assert_int_equal(hub_publish(&h, S("x"), S("1"), &delivered), 1);
    assert_true(hub_position(&h, S("x"), &pos) && pos.seq == 1);
    snprintf(first, sizeof first, "%.*s", (int)pos.epoch.n, pos.epoch.p);
    assert_int_equal(strncmp(first, "abc.", 4), 0);
    assert_int_equal(hub_publish(&h, S("y"), S("1"), &delivered), 1); /* x is forgotten */
    assert_int_equal(hub_publish(&h, S("x"), S("1"), &delivered), 1);
    assert_true(hub_position(&h, S("x"), &pos) && pos.seq == 1);
    assert_false(pos.epoch.n == strlen(first) && memcmp(pos.epoch.p, first, pos.epoch.n) == 0);
    hub_subscribe(&h, &f.m, S("x"));
    assert_int_equal(hub_publish(&h, S("x"), S("2"), &delivered), 2);
    assert_int_equal(f.got, 1);
    hub_leave_all(&h, &f.m);
    hub_free(&h);
}

static void test_member_and_active_callbacks(void **state)
{
    (void)state;
    hub h;
    hub_init(&h, deliver, NULL, 16, KEY);
    h.on_member = on_member;
    h.on_active = on_active;
    joins = leaves = actives = inactives = 0;
    fake a = {0}, b = {0};
    hub_subscribe(&h, &a.m, S("c"));
    hub_subscribe(&h, &a.m, S("c"));
    hub_subscribe(&h, &b.m, S("c"));
    hub_subscribe(&h, &b.m, S("d"));
    assert_int_equal(joins, 3);
    assert_int_equal(actives, 2); /* c and d got their first subscriber */
    hub_unsubscribe(&h, &a.m, S("c"));
    assert_int_equal(leaves, 1);
    assert_int_equal(inactives, 0);
    hub_leave_all(&h, &b.m);
    assert_int_equal(leaves, 3);
    assert_int_equal(inactives, 2);
    hub_free(&h);
}

static void test_idle_channels_keep_their_seq_up_to_max_idle(void **state)
{
    (void)state;
    hub h;
    hub_init(&h, deliver, NULL, 2, KEY);
    size_t d;
    assert_int_equal(hub_publish(&h, S("x"), S("1"), &d), 1);
    assert_int_equal(hub_publish(&h, S("x"), S("1"), &d), 2);
    assert_int_equal(d, 0);
    hub_publish(&h, S("y"), S("1"), &d); /* x and y idle: both remembered */
    assert_int_equal(hub_publish(&h, S("x"), S("1"), &d), 3);
    hub_publish(&h, S("z"), S("1"), &d); /* a third idle channel: the oldest (x) is forgotten */
    assert_int_equal(hub_publish(&h, S("y"), S("1"), &d), 2);
    assert_int_equal(hub_publish(&h, S("x"), S("1"), &d), 1); /* new again: y is forgotten */
    assert_int_equal(hub_publish(&h, S("y"), S("1"), &d), 1);
    /* A channel with subscribers is never forgotten. */
    fake a = {0};
    hub_subscribe(&h, &a.m, S("kept"));
    assert_int_equal(hub_publish(&h, S("kept"), S("1"), &d), 1);
    for (int i = 0; i < 10; i++) {
        char n[8];
        snprintf(n, sizeof n, "i%d", i);
        hub_publish(&h, S(n), S("1"), &d);
    }
    assert_int_equal(hub_publish(&h, S("kept"), S("1"), &d), 2);
    hub_leave_all(&h, &a.m);
    hub_free(&h);
}

/* The memory: the last `keep` messages as the very frames the fan-out sent, without a gap up
 * to the position; without a bus also for a channel nobody subscribes; with one, forgotten
 * on a gap, a new epoch, or when the channel is no longer followed; a read seeds it. */
static void test_memory_keeps_the_last_frames(void **state)
{
    (void)state;
    hub h;
    fake f = {0};
    hub_kept k[8];
    size_t delivered;
    hub_init(&h, deliver, NULL, 16, KEY);
    h.keep = 3;
    for (int i = 0; i < 5; i++) /* nobody subscribes: kept all the same */
        hub_publish(&h, S("m"), S("7"), &delivered);
    assert_int_equal(hub_kept_first(&h, S("m")), 3);
    assert_int_equal(hub_kept_after(&h, S("m"), 0, k, 8), 3);
    assert_int_equal(k[0].seq, 3);
    assert_int_equal(k[2].seq, 5);
    assert_int_equal(k[2].data.n, 1);
    assert_memory_equal(k[2].data.p, "7", 1);
    assert_int_equal(hub_kept_after(&h, S("m"), 4, k, 8), 1);
    assert_int_equal(k[0].seq, 5);
    assert_int_equal(hub_kept_after(&h, S("m"), 5, k, 8), 0);
    assert_int_equal(hub_kept_after(&h, S("m"), 0, k, 2), 2); /* the newest two */
    assert_int_equal(k[0].seq, 4);
    assert_int_equal(hub_subscribe(&h, &f.m, S("m")), 1);
    hub_publish(&h, S("m"), S("[1]"), &delivered);
    assert_int_equal(hub_kept_after(&h, S("m"), 5, k, 8), 1);
    assert_ptr_equal(k[0].frame, f.last); /* the frame the subscriber got */
    assert_memory_equal(k[0].data.p, "[1]", 3);
    hub_leave_all(&h, &f.m);
    hub_free(&h);

    hub_init(&h, deliver, NULL, 16, KEY);
    h.remote = true;
    h.keep = 4;
    assert_int_equal(hub_subscribe(&h, &f.m, S("r")), 1);
    assert_true(hub_learn(&h, S("r"), 10, S("E")));
    hub_kept seed[6];
    for (int i = 0; i < 6; i++) {
        seed[i].frame = hub_frame(&h, S("r"), 5 + (uint64_t)i, S("1"));
        seed[i].seq = 5 + (uint64_t)i;
        seed[i].data = S("1");
    }
    hub_seed(&h, S("r"), seed, 6); /* 5..10 ends at the position: the last 4 are kept */
    for (int i = 0; i < 6; i++)
        wbuf_unref(seed[i].frame);
    assert_int_equal(hub_kept_first(&h, S("r")), 7);
    hub_deliver(&h, S("r"), 11, S("E"), S("2"));
    assert_int_equal(hub_kept_first(&h, S("r")), 8);
    hub_deliver(&h, S("r"), 13, S("E"), S("3")); /* a gap: only what follows it */
    assert_int_equal(hub_kept_first(&h, S("r")), 13);
    hub_deliver(&h, S("r"), 1, S("E2"), S("4")); /* a new epoch */
    assert_int_equal(hub_kept_first(&h, S("r")), 1);
    hub_unsubscribe(&h, &f.m, S("r"));
    assert_int_equal(hub_kept_first(&h, S("r")), 0);
    hub_free(&h);
}

static void test_many_channels(void **state)
{
    (void)state;
    enum { N = 5000 };
    hub h;
    hub_init(&h, deliver, NULL, N, KEY);
    static fake f[N];
    memset(f, 0, sizeof f);
    char name[16];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "ch.%d", i);
        assert_int_equal(hub_subscribe(&h, &f[i].m, S(name)), 1);
        if (i % 2)
            assert_int_equal(hub_subscribe(&h, &f[i - 1].m, S(name)), 1);
    }
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "ch.%d", i);
        assert_int_equal(hub_count(&h, S(name)), i % 2 ? 2 : 1);
        size_t d;
        hub_publish(&h, S(name), S("0"), &d);
        assert_int_equal(d, i % 2 ? 2 : 1);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(f[i].got, i % 2 ? 1 : 2);
    for (int i = 0; i < N; i++)
        hub_leave_all(&h, &f[i].m);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "ch.%d", i);
        assert_int_equal(hub_count(&h, S(name)), 0);
    }
    hub_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subscribe_counts),
        cmocka_unit_test(test_publish_reaches_exactly_the_members),
        cmocka_unit_test(test_member_and_active_callbacks),
        cmocka_unit_test(test_bus_positions_and_reset),
        cmocka_unit_test(test_local_epochs),
        cmocka_unit_test(test_idle_channels_keep_their_seq_up_to_max_idle),
        cmocka_unit_test(test_memory_keeps_the_last_frames),
        cmocka_unit_test(test_many_channels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
