/* roster: the router's state: nodes, client id validation, channel membership and counts,
 * stats, batched and capped join/leave events, snapshot generations, node drop and expiry,
 * and a randomized run against a reference model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "roster.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static const uint8_t KEY[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static roster *new_roster(size_t event_max)
{
    roster *r = roster_new(KEY, event_max);
    assert_non_null(r);
    return r;
}

static rnode *node_at(roster *r, const char *id, double now)
{
    bool created;
    rnode *n = roster_node(r, id, now, &created);
    assert_non_null(n);
    return n;
}

static rnode *new_node(roster *r, const char *id)
{
    bool created = false;
    rnode *n = roster_node(r, id, 0, &created);
    assert_non_null(n);
    assert_true(created);
    return n;
}

static void assert_stats(const roster *r, uint64_t nodes, uint64_t clients, uint64_t users,
                         uint64_t channels, uint64_t members)
{
    roster_stats s = roster_get_stats(r);
    if (s.nodes != nodes || s.clients != clients || s.users != users || s.channels != channels ||
        s.members != members)
        fail_msg("stats nodes=%llu clients=%llu users=%llu channels=%llu members=%llu, "
                 "want %llu %llu %llu %llu %llu",
                 (unsigned long long)s.nodes, (unsigned long long)s.clients,
                 (unsigned long long)s.users, (unsigned long long)s.channels,
                 (unsigned long long)s.members, (unsigned long long)nodes,
                 (unsigned long long)clients, (unsigned long long)users,
                 (unsigned long long)channels, (unsigned long long)members);
}

/* Members of a channel as roster_each_member reports them. */
#define MAX_MEMBERS 64

typedef struct member {
    char client[40], user[40], node[40];
} member;

typedef struct members {
    member m[MAX_MEMBERS];
    size_t n;
} member_list;

static void on_member(void *ctx, const char *client, const char *user, const char *node)
{
    member_list *ms = ctx;
    assert_true(ms->n < MAX_MEMBERS);
    member *m = &ms->m[ms->n++];
    snprintf(m->client, sizeof m->client, "%s", client);
    snprintf(m->user, sizeof m->user, "%s", user);
    snprintf(m->node, sizeof m->node, "%s", node);
}

static member_list list_members(const roster *r, const char *channel)
{
    member_list ms = {0};
    roster_each_member(r, channel, on_member, &ms);
    assert_int_equal(ms.n, roster_count(r, channel));
    return ms;
}

/* Fails unless (client, user, node) is listed exactly once. */
static void assert_member(const member_list *ms, const char *client, const char *user,
                          const char *node)
{
    size_t seen = 0;
    for (size_t i = 0; i < ms->n; i++)
        if (strcmp(ms->m[i].client, client) == 0) {
            seen++;
            assert_string_equal(ms->m[i].user, user);
            assert_string_equal(ms->m[i].node, node);
        }
    if (seen != 1)
        fail_msg("%s listed %zu times", client, seen);
}

/* Event batches as roster_flush_events hands them out, copied. */
#define MAX_BATCHES 64
#define MAX_EVENTS 16

typedef struct batch {
    char channel[40];
    struct {
        char client[40], user[40];
        bool left;
    } ev[MAX_EVENTS];
    size_t n;
    uint32_t more_joins, more_leaves;
} batch;

typedef struct batches {
    batch b[MAX_BATCHES];
    size_t n;
} batches;

static void on_events(void *ctx, const char *channel, const roster_event *ev, size_t n,
                      uint32_t more_joins, uint32_t more_leaves)
{
    batches *bs = ctx;
    assert_true(bs->n < MAX_BATCHES);
    assert_true(n <= MAX_EVENTS);
    batch *b = &bs->b[bs->n++];
    snprintf(b->channel, sizeof b->channel, "%s", channel);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(ev[i].client);
        assert_non_null(ev[i].user);
        snprintf(b->ev[i].client, sizeof b->ev[i].client, "%s", ev[i].client);
        snprintf(b->ev[i].user, sizeof b->ev[i].user, "%s", ev[i].user);
        b->ev[i].left = ev[i].left;
    }
    b->n = n;
    b->more_joins = more_joins;
    b->more_leaves = more_leaves;
}

/* Flushes into a fresh (heap) batches; the caller frees it. */
static batches *flush(roster *r)
{
    batches *bs = calloc(1, sizeof *bs);
    assert_non_null(bs);
    roster_flush_events(r, on_events, bs);
    assert_int_equal(roster_pending_events(r), 0);
    return bs;
}

/* The batch of channel, which must come exactly once. */
static const batch *batch_of(const batches *bs, const char *channel)
{
    const batch *found = NULL;
    for (size_t i = 0; i < bs->n; i++)
        if (strcmp(bs->b[i].channel, channel) == 0) {
            if (found)
                fail_msg("channel %s flushed twice", channel);
            found = &bs->b[i];
        }
    if (!found)
        fail_msg("channel %s not flushed", channel);
    return found;
}

static void assert_event(const batch *b, size_t i, const char *client, const char *user,
                         bool left)
{
    assert_true(i < b->n);
    assert_string_equal(b->ev[i].client, client);
    assert_string_equal(b->ev[i].user, user);
    if (b->ev[i].left != left)
        fail_msg("%s event %zu (%s): left=%d, want %d", b->channel, i, client, b->ev[i].left,
                 left);
}

static void assert_flush_empty(roster *r)
{
    batches *bs = flush(r);
    assert_int_equal(bs->n, 0);
    free(bs);
}

/* ---- nodes -------------------------------------------------------------------------------- */

static void test_node_created_once(void **state)
{
    roster *r = new_roster(8);
    char id[8] = "n1";
    bool created = false;
    rnode *a = roster_node(r, id, 10.0, &created);
    assert_non_null(a);
    assert_true(created);
    assert_string_equal(a->id, "n1");
    assert_true(a->last_seen == 10.0);
    assert_false(a->synced);
    assert_int_equal(a->nclients, 0);
    id[1] = '9'; /* the roster keeps its own copy */
    assert_string_equal(a->id, "n1");

    created = true;
    rnode *b = roster_node(r, "n1", 12.5, &created);
    assert_ptr_equal(a, b);
    assert_false(created);
    assert_true(b->last_seen == 12.5);
    assert_stats(r, 1, 0, 0, 0, 0);

    rnode *c = roster_node(r, "n2", 13.0, &created);
    assert_true(created);
    assert_ptr_not_equal(a, c);
    assert_true(a->last_seen == 12.5);
    assert_stats(r, 2, 0, 0, 0, 0);
    roster_free(r);
}

static void count_node(rnode *n, void *ctx)
{
    size_t *clients = ctx;
    clients[0]++;
    clients[1] += n->nclients;
}

static void test_each_node_and_nclients(void **state)
{
    roster *r = new_roster(8);
    rnode *n1 = new_node(r, "n1"), *n2 = new_node(r, "n2");
    assert_int_equal(roster_join(r, n1, "n1.1", "u", "a", false), 1);
    assert_int_equal(roster_join(r, n1, "n1.1", "u", "b", false), 1);
    assert_int_equal(roster_join(r, n1, "n1.2", "u", "a", false), 1);
    assert_int_equal(roster_join(r, n2, "n2.1", "v", "a", false), 1);
    assert_int_equal(n1->nclients, 2);
    assert_int_equal(n2->nclients, 1);
    size_t seen[2] = {0, 0};
    roster_each_node(r, count_node, seen);
    assert_int_equal(seen[0], 2);
    assert_int_equal(seen[1], 3);
    assert_int_equal(roster_leave(r, n1, "n1.1", "a", false), 1);
    assert_int_equal(n1->nclients, 2); /* still on b */
    assert_int_equal(roster_leave(r, n1, "n1.1", "b", false), 1);
    assert_int_equal(n1->nclients, 1);
    roster_free(r);
}

/* ---- client ids --------------------------------------------------------------------------- */

static void test_join_client_id_must_be_of_the_node(void **state)
{
    roster *r = new_roster(8);
    rnode *n1 = new_node(r, "n1"), *w0 = new_node(r, "n1.w0");
    new_node(r, "n2");

    static const char *bad[] = {
        "n2.1",    /* another node's */
        "n1.xyz",  /* not hex */
        "n1.",     /* no digits */
        "n1",      /* no dot */
        "n1.w0.1", /* n1.w0's */
        "n1.1F",   /* uppercase */
        "n1.A",
        "n1.0123456789abcdef0", /* 17 digits */
        "n1x.1",
        "n1a1", /* n1's prefix and hex, but no dot */
        "n1x1f",
        "n11.1",
        "n1.1 ",
        "n1.-1",
        ".1",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (roster_join(r, n1, bad[i], "u", "ch", true) != -1)
            fail_msg("join of \"%s\" on n1 not refused", bad[i]);
        if (roster_leave(r, n1, bad[i], "ch", true) != -1)
            fail_msg("leave of \"%s\" on n1 not refused", bad[i]);
    }
    assert_stats(r, 3, 0, 0, 0, 0);
    assert_int_equal(roster_pending_events(r), 0);

    assert_int_equal(roster_join(r, n1, "n1.1f", "u", "ch", false), 1);
    assert_int_equal(roster_join(r, n1, "n1.1f", "u", "ch", false), 0);
    assert_int_equal(roster_join(r, n1, "n1.0", "u", "ch", false), 1);
    assert_int_equal(roster_join(r, n1, "n1.0123456789abcdef", "u", "ch", false), 1);
    assert_int_equal(roster_join(r, w0, "n1.w0.1", "u", "ch", false), 1);
    assert_int_equal(roster_join(r, w0, "n1.1f", "u", "ch", false), -1); /* n1's, not w0's */
    assert_int_equal(roster_leave(r, w0, "n1.1f", "ch", false), -1);
    assert_int_equal(roster_count(r, "ch"), 4);
    member_list ms = list_members(r, "ch");
    assert_member(&ms, "n1.1f", "u", "n1");
    assert_member(&ms, "n1.w0.1", "u", "n1.w0");
    assert_int_equal(n1->nclients, 3);
    assert_int_equal(w0->nclients, 1);
    roster_free(r);
}

/* ---- counts and stats --------------------------------------------------------------------- */

static void test_count_and_each_member(void **state)
{
    roster *r = new_roster(8);
    rnode *n1 = new_node(r, "n1"), *n2 = new_node(r, "n2");
    assert_int_equal(roster_count(r, "a"), 0);
    member_list none = list_members(r, "a");
    assert_int_equal(none.n, 0);

    assert_int_equal(roster_join(r, n1, "n1.1", "alice", "a", false), 1);
    assert_int_equal(roster_join(r, n1, "n1.2", "bob", "a", false), 1);
    assert_int_equal(roster_join(r, n2, "n2.1", "alice", "a", false), 1);
    assert_int_equal(roster_join(r, n2, "n2.1", "alice", "b", false), 1);
    assert_int_equal(roster_join(r, n1, "n1.2", "bob", "a", false), 0);

    assert_int_equal(roster_count(r, "a"), 3);
    assert_int_equal(roster_count(r, "b"), 1);
    assert_int_equal(roster_count(r, "c"), 0);
    member_list a = list_members(r, "a");
    assert_int_equal(a.n, 3);
    assert_member(&a, "n1.1", "alice", "n1");
    assert_member(&a, "n1.2", "bob", "n1");
    assert_member(&a, "n2.1", "alice", "n2");
    member_list b = list_members(r, "b");
    assert_int_equal(b.n, 1);
    assert_member(&b, "n2.1", "alice", "n2");

    /* Leaving from the middle of the array keeps the rest listed once each. */
    assert_int_equal(roster_leave(r, n1, "n1.1", "a", false), 1);
    assert_int_equal(roster_leave(r, n1, "n1.1", "a", false), 0);
    assert_int_equal(roster_leave(r, n1, "n1.1", "zzz", false), 0);
    assert_int_equal(roster_leave(r, n1, "n1.7", "a", false), 0);
    a = list_members(r, "a");
    assert_int_equal(a.n, 2);
    assert_member(&a, "n1.2", "bob", "n1");
    assert_member(&a, "n2.1", "alice", "n2");
    roster_free(r);
}

static void test_channel_grows_and_shrinks(void **state)
{
    roster *r = new_roster(4);
    rnode *n = new_node(r, "n1");
    char id[16];
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof id, "n1.%x", i);
        assert_int_equal(roster_join(r, n, id, "u", "big", false), 1);
    }
    assert_int_equal(roster_count(r, "big"), 40);
    /* Leave every third one, then check what is listed. */
    for (int i = 0; i < 40; i += 3) {
        snprintf(id, sizeof id, "n1.%x", i);
        assert_int_equal(roster_leave(r, n, id, "big", false), 1);
    }
    member_list ms = list_members(r, "big");
    assert_int_equal(ms.n, 40 - 14);
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof id, "n1.%x", i);
        size_t seen = 0;
        for (size_t j = 0; j < ms.n; j++)
            seen += strcmp(ms.m[j].client, id) == 0;
        assert_int_equal(seen, i % 3 ? 1 : 0);
    }
    assert_stats(r, 1, 26, 1, 1, 26);
    roster_free(r);
}

static void test_stats_through_joins_and_leaves(void **state)
{
    roster *r = new_roster(8);
    rnode *n1 = new_node(r, "n1"), *n2 = new_node(r, "n2");
    assert_stats(r, 2, 0, 0, 0, 0);

    assert_int_equal(roster_join(r, n1, "n1.1", "alice", "a", false), 1);
    assert_stats(r, 2, 1, 1, 1, 1);
    /* The same client in a second and third channel. */
    assert_int_equal(roster_join(r, n1, "n1.1", "alice", "b", false), 1);
    assert_int_equal(roster_join(r, n1, "n1.1", "alice", "c", false), 1);
    assert_stats(r, 2, 1, 1, 3, 3);
    /* A second client of the same user, on another node: users counts distinct ids. */
    assert_int_equal(roster_join(r, n2, "n2.1", "alice", "a", false), 1);
    assert_stats(r, 2, 2, 1, 3, 4);
    assert_int_equal(roster_join(r, n1, "n1.2", "bob", "a", false), 1);
    assert_stats(r, 2, 3, 2, 3, 5);
    /* A repeated join changes nothing. */
    assert_int_equal(roster_join(r, n1, "n1.2", "bob", "a", false), 0);
    assert_stats(r, 2, 3, 2, 3, 5);

    /* n1.1 leaves b: channel b goes, the client stays (still on a and c). */
    assert_int_equal(roster_leave(r, n1, "n1.1", "b", false), 1);
    assert_stats(r, 2, 3, 2, 2, 4);
    assert_int_equal(roster_count(r, "b"), 0);
    /* n1.1 leaves c: its last channel but a; c goes. */
    assert_int_equal(roster_leave(r, n1, "n1.1", "c", false), 1);
    assert_stats(r, 2, 3, 2, 1, 3);
    /* n1.1 leaves a: the client goes, alice stays through n2.1. */
    assert_int_equal(roster_leave(r, n1, "n1.1", "a", false), 1);
    assert_stats(r, 2, 2, 2, 1, 2);
    /* n2.1 leaves: alice goes too. */
    assert_int_equal(roster_leave(r, n2, "n2.1", "a", false), 1);
    assert_stats(r, 2, 1, 1, 1, 1);
    assert_int_equal(roster_leave(r, n1, "n1.2", "a", false), 1);
    assert_stats(r, 2, 0, 0, 0, 0);
    assert_int_equal(n1->nclients, 0);
    assert_int_equal(n2->nclients, 0);

    /* Everything can come back after being freed. */
    assert_int_equal(roster_join(r, n1, "n1.1", "alice", "a", false), 1);
    assert_stats(r, 2, 1, 1, 1, 1);
    member_list ms = list_members(r, "a");
    assert_member(&ms, "n1.1", "alice", "n1");
    roster_free(r);
}

/* ---- events ------------------------------------------------------------------------------- */

static void test_events_in_order_per_channel(void **state)
{
    roster *r = new_roster(8);
    rnode *n1 = new_node(r, "n1"), *n2 = new_node(r, "n2");
    assert_int_equal(roster_join(r, n1, "n1.1", "alice", "a", true), 1);
    assert_int_equal(roster_join(r, n2, "n2.a", "bob", "a", true), 1);
    assert_int_equal(roster_join(r, n1, "n1.1", "alice", "b", true), 1);
    assert_int_equal(roster_join(r, n1, "n1.1", "alice", "a", true), 0); /* no event */
    assert_int_equal(roster_leave(r, n1, "n1.1", "a", true), 1);
    assert_int_equal(roster_leave(r, n1, "n1.1", "a", true), 0); /* no event */
    assert_int_equal(roster_join(r, n1, "n1.2", "carol", "a", true), 1);
    assert_int_equal(roster_pending_events(r), 2);
    roster_stats s = roster_get_stats(r);
    assert_int_equal(s.events, 5);
    assert_int_equal(s.events_capped, 0);

    batches *bs = flush(r);
    assert_int_equal(bs->n, 2);
    const batch *a = batch_of(bs, "a");
    assert_int_equal(a->n, 4);
    assert_event(a, 0, "n1.1", "alice", false);
    assert_event(a, 1, "n2.a", "bob", false);
    assert_event(a, 2, "n1.1", "alice", true);
    assert_event(a, 3, "n1.2", "carol", false);
    assert_int_equal(a->more_joins, 0);
    assert_int_equal(a->more_leaves, 0);
    const batch *b = batch_of(bs, "b");
    assert_int_equal(b->n, 1);
    assert_event(b, 0, "n1.1", "alice", false);
    free(bs);

    /* Flushed means forgotten. */
    assert_int_equal(roster_pending_events(r), 0);
    assert_flush_empty(r);

    /* New events after a flush start a fresh batch. */
    assert_int_equal(roster_leave(r, n2, "n2.a", "a", true), 1);
    assert_int_equal(roster_pending_events(r), 1);
    bs = flush(r);
    assert_int_equal(bs->n, 1);
    a = batch_of(bs, "a");
    assert_int_equal(a->n, 1);
    assert_event(a, 0, "n2.a", "bob", true);
    free(bs);
    assert_flush_empty(r);
    roster_free(r);
}

static void test_events_capped(void **state)
{
    roster *r = new_roster(3);
    rnode *n = new_node(r, "n1");
    char id[16], user[16];
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof id, "n1.%x", i);
        snprintf(user, sizeof user, "u%d", i);
        assert_int_equal(roster_join(r, n, id, user, "ch", true), 1);
    }
    assert_int_equal(roster_join(r, n, "n1.0", "u0", "other", true), 1);
    assert_int_equal(roster_pending_events(r), 2);
    roster_stats s = roster_get_stats(r);
    assert_int_equal(s.events, 11);
    assert_int_equal(s.events_capped, 7);

    batches *bs = flush(r);
    assert_int_equal(bs->n, 2);
    const batch *b = batch_of(bs, "ch");
    assert_int_equal(b->n, 3);
    assert_event(b, 0, "n1.0", "u0", false);
    assert_event(b, 1, "n1.1", "u1", false);
    assert_event(b, 2, "n1.2", "u2", false);
    assert_int_equal(b->more_joins, 7);
    assert_int_equal(b->more_leaves, 0);
    const batch *o = batch_of(bs, "other");
    assert_int_equal(o->n, 1);
    assert_int_equal(o->more_joins, 0);
    free(bs);
    assert_flush_empty(r);

    /* Mixed: one leave listed, then joins and leaves beyond the cap counted apart. */
    assert_int_equal(roster_leave(r, n, "n1.9", "ch", true), 1);
    assert_int_equal(roster_join(r, n, "n1.a", "u10", "ch", true), 1);
    assert_int_equal(roster_leave(r, n, "n1.8", "ch", true), 1);
    assert_int_equal(roster_leave(r, n, "n1.7", "ch", true), 1);
    assert_int_equal(roster_join(r, n, "n1.b", "u11", "ch", true), 1);
    assert_int_equal(roster_leave(r, n, "n1.6", "ch", true), 1);
    assert_int_equal(roster_join(r, n, "n1.c", "u12", "ch", true), 1);
    bs = flush(r);
    assert_int_equal(bs->n, 1);
    b = batch_of(bs, "ch");
    assert_int_equal(b->n, 3);
    assert_event(b, 0, "n1.9", "u9", true);
    assert_event(b, 1, "n1.a", "u10", false);
    assert_event(b, 2, "n1.8", "u8", true);
    assert_int_equal(b->more_joins, 2);
    assert_int_equal(b->more_leaves, 2);
    free(bs);
    s = roster_get_stats(r);
    assert_int_equal(s.events, 18);
    assert_int_equal(s.events_capped, 11);

    /* After a flush the cap starts over. */
    assert_int_equal(roster_leave(r, n, "n1.5", "ch", true), 1);
    bs = flush(r);
    b = batch_of(bs, "ch");
    assert_int_equal(b->n, 1);
    assert_event(b, 0, "n1.5", "u5", true);
    assert_int_equal(b->more_joins, 0);
    assert_int_equal(b->more_leaves, 0);
    free(bs);
    assert_flush_empty(r);
    roster_free(r);
}

static void test_event_max_zero_counts_only(void **state)
{
    roster *r = new_roster(0);
    rnode *n = new_node(r, "n1");
    assert_int_equal(roster_join(r, n, "n1.1", "u", "ch", true), 1);
    assert_int_equal(roster_join(r, n, "n1.2", "u", "ch", true), 1);
    assert_int_equal(roster_leave(r, n, "n1.1", "ch", true), 1);
    batches *bs = flush(r);
    assert_int_equal(bs->n, 1);
    const batch *b = batch_of(bs, "ch");
    assert_int_equal(b->n, 0);
    assert_int_equal(b->more_joins, 2);
    assert_int_equal(b->more_leaves, 1);
    free(bs);
    roster_free(r);
}

static void test_emit_false_queues_nothing(void **state)
{
    roster *r = new_roster(8);
    rnode *n = new_node(r, "n1");
    assert_int_equal(roster_join(r, n, "n1.1", "u", "a", false), 1);
    assert_int_equal(roster_join(r, n, "n1.2", "u", "a", false), 1);
    assert_int_equal(roster_leave(r, n, "n1.1", "a", false), 1);
    assert_int_equal(roster_pending_events(r), 0);
    roster_stats s = roster_get_stats(r);
    assert_int_equal(s.events, 0);
    assert_flush_empty(r);
    /* The last member leaving silently frees the channel at once. */
    assert_int_equal(roster_leave(r, n, "n1.2", "a", false), 1);
    assert_stats(r, 1, 0, 0, 0, 0);
    assert_flush_empty(r);
    roster_free(r);
}

static void test_emptied_channel_with_events_is_flushed_then_freed(void **state)
{
    roster *r = new_roster(8);
    rnode *n = new_node(r, "n1");
    assert_int_equal(roster_join(r, n, "n1.1", "alice", "gone-channel", true), 1);
    assert_int_equal(roster_join(r, n, "n1.2", "bob", "gone-channel", true), 1);
    assert_int_equal(roster_leave(r, n, "n1.1", "gone-channel", true), 1);
    assert_int_equal(roster_leave(r, n, "n1.2", "gone-channel", true), 1);
    assert_int_equal(roster_count(r, "gone-channel"), 0);
    roster_stats s = roster_get_stats(r);
    assert_int_equal(s.members, 0);
    assert_int_equal(s.clients, 0);
    assert_int_equal(s.users, 0);
    assert_int_equal(roster_pending_events(r), 1);

    batches *bs = flush(r);
    assert_int_equal(bs->n, 1);
    const batch *b = batch_of(bs, "gone-channel");
    assert_int_equal(b->n, 4);
    assert_event(b, 0, "n1.1", "alice", false);
    assert_event(b, 1, "n1.2", "bob", false);
    assert_event(b, 2, "n1.1", "alice", true);
    assert_event(b, 3, "n1.2", "bob", true);
    free(bs);
    assert_stats(r, 1, 0, 0, 0, 0);
    assert_flush_empty(r);

    /* Emptied, then joined again before the flush: the channel lives on. */
    assert_int_equal(roster_join(r, n, "n1.3", "carol", "again", true), 1);
    assert_int_equal(roster_leave(r, n, "n1.3", "again", true), 1);
    assert_int_equal(roster_join(r, n, "n1.4", "dave", "again", true), 1);
    bs = flush(r);
    b = batch_of(bs, "again");
    assert_int_equal(b->n, 3);
    assert_event(b, 2, "n1.4", "dave", false);
    free(bs);
    assert_stats(r, 1, 1, 1, 1, 1);
    assert_int_equal(roster_count(r, "again"), 1);
    roster_free(r);
}

static void test_free_with_pending_events(void **state)
{
    /* roster_free must release queued events and emptied channels (the leak check sees). */
    roster *r = new_roster(2);
    rnode *n = new_node(r, "n1");
    assert_int_equal(roster_join(r, n, "n1.1", "u", "a", true), 1);
    assert_int_equal(roster_join(r, n, "n1.2", "u", "a", true), 1);
    assert_int_equal(roster_join(r, n, "n1.3", "u", "a", true), 1);
    assert_int_equal(roster_join(r, n, "n1.1", "u", "b", true), 1);
    assert_int_equal(roster_leave(r, n, "n1.1", "b", true), 1);
    assert_int_equal(roster_pending_events(r), 2);
    roster_free(r);
}

/* ---- snapshots ---------------------------------------------------------------------------- */

static void join3(roster *r, rnode *n, bool emit)
{
    assert_int_equal(roster_join(r, n, "n1.a", "ua", "ch", emit), 1);
    assert_int_equal(roster_join(r, n, "n1.b", "ub", "ch", emit), 1);
    assert_int_equal(roster_join(r, n, "n1.c", "uc", "ch", emit), 1);
}

static void test_snapshot_end_removes_unnamed_with_leaves(void **state)
{
    roster *r = new_roster(8);
    rnode *n = new_node(r, "n1"), *other = new_node(r, "n2");
    join3(r, n, false);
    assert_int_equal(roster_join(r, other, "n2.1", "ux", "ch", false), 1);
    assert_false(n->synced);

    roster_snapshot_begin(r, n, 1);
    assert_int_equal(n->snap_id, 1);
    assert_false(n->synced);
    assert_int_equal(roster_join(r, n, "n1.a", "ua", "ch", true), 0);
    assert_int_equal(roster_join(r, n, "n1.c", "uc", "ch", true), 0);
    assert_int_equal(roster_pending_events(r), 0);
    assert_int_equal(roster_snapshot_end(r, n, true), 1);
    assert_true(n->synced);
    assert_false(other->synced);

    assert_int_equal(roster_count(r, "ch"), 3);
    member_list ms = list_members(r, "ch");
    assert_member(&ms, "n1.a", "ua", "n1");
    assert_member(&ms, "n1.c", "uc", "n1");
    assert_member(&ms, "n2.1", "ux", "n2"); /* another node's members are not touched */
    assert_stats(r, 2, 3, 3, 1, 3);

    batches *bs = flush(r);
    assert_int_equal(bs->n, 1);
    const batch *b = batch_of(bs, "ch");
    assert_int_equal(b->n, 1);
    assert_event(b, 0, "n1.b", "ub", true);
    free(bs);
    roster_free(r);
}

static void test_snapshot_end_without_emit(void **state)
{
    roster *r = new_roster(8);
    rnode *n = new_node(r, "n1");
    join3(r, n, false);
    roster_snapshot_begin(r, n, 42);
    assert_int_equal(roster_join(r, n, "n1.b", "ub", "ch", false), 0);
    assert_int_equal(roster_snapshot_end(r, n, false), 2);
    assert_true(n->synced);
    assert_int_equal(roster_pending_events(r), 0);
    assert_flush_empty(r);
    member_list ms = list_members(r, "ch");
    assert_int_equal(ms.n, 1);
    assert_member(&ms, "n1.b", "ub", "n1");
    assert_stats(r, 1, 1, 1, 1, 1);

    /* An empty snapshot removes everything. */
    roster_snapshot_begin(r, n, 43);
    assert_int_equal(roster_snapshot_end(r, n, false), 1);
    assert_stats(r, 1, 0, 0, 0, 0);
    assert_int_equal(n->nclients, 0);
    roster_free(r);
}

static void test_snapshot_chunks_share_a_generation(void **state)
{
    roster *r = new_roster(8);
    rnode *n = new_node(r, "n1");
    join3(r, n, false);

    roster_snapshot_begin(r, n, 7); /* chunk 1 */
    uint32_t gen = n->gen;
    assert_int_equal(roster_join(r, n, "n1.a", "ua", "ch", false), 0);
    roster_snapshot_begin(r, n, 7); /* chunk 2: same snapshot */
    assert_int_equal(n->gen, gen);
    assert_int_equal(roster_join(r, n, "n1.b", "ub", "ch", false), 0);
    assert_int_equal(roster_join(r, n, "n1.d", "ud", "ch", false), 1);
    assert_int_equal(roster_snapshot_end(r, n, true), 1);

    member_list ms = list_members(r, "ch");
    assert_int_equal(ms.n, 3);
    assert_member(&ms, "n1.a", "ua", "n1"); /* named in chunk 1 */
    assert_member(&ms, "n1.b", "ub", "n1");
    assert_member(&ms, "n1.d", "ud", "n1");
    batches *bs = flush(r);
    const batch *b = batch_of(bs, "ch");
    assert_int_equal(b->n, 1);
    assert_event(b, 0, "n1.c", "uc", true);
    free(bs);
    roster_free(r);
}

static void test_snapshot_new_id_new_generation(void **state)
{
    roster *r = new_roster(8);
    rnode *n = new_node(r, "n1");
    join3(r, n, false);

    roster_snapshot_begin(r, n, 1);
    uint32_t gen = n->gen;
    assert_int_equal(roster_join(r, n, "n1.a", "ua", "ch", false), 0);
    assert_int_equal(roster_join(r, n, "n1.b", "ub", "ch", false), 0);
    assert_int_equal(roster_join(r, n, "n1.c", "uc", "ch", false), 0);
    assert_int_equal(roster_snapshot_end(r, n, true), 0);
    assert_int_equal(roster_count(r, "ch"), 3);

    /* Snapshot 2 names only a: b and c (refreshed by snapshot 1) go. */
    roster_snapshot_begin(r, n, 2);
    assert_int_not_equal(n->gen, gen);
    assert_int_equal(n->snap_id, 2);
    assert_int_equal(roster_join(r, n, "n1.a", "ua", "ch", false), 0);
    assert_int_equal(roster_snapshot_end(r, n, true), 2);
    member_list ms = list_members(r, "ch");
    assert_int_equal(ms.n, 1);
    assert_member(&ms, "n1.a", "ua", "n1");

    /* A chunk of snapshot 1 arriving again is yet another generation. */
    roster_snapshot_begin(r, n, 1);
    assert_int_equal(roster_snapshot_end(r, n, false), 1);
    assert_int_equal(roster_count(r, "ch"), 0);

    batches *bs = flush(r);
    const batch *b = batch_of(bs, "ch");
    assert_int_equal(b->n, 2);
    assert_true(b->ev[0].left && b->ev[1].left);
    free(bs);
    assert_stats(r, 1, 0, 0, 0, 0);
    roster_free(r);
}

static void test_snapshot_id_zero_is_always_new(void **state)
{
    /* A fresh node's snap_id is 0; a snapshot numbered 0 must still start a generation. */
    roster *r = new_roster(8);
    rnode *n = new_node(r, "n1");
    join3(r, n, false);
    roster_snapshot_begin(r, n, 0);
    assert_int_equal(roster_join(r, n, "n1.a", "ua", "ch", false), 0);
    assert_int_equal(roster_snapshot_end(r, n, false), 2);
    assert_int_equal(roster_count(r, "ch"), 1);
    roster_snapshot_begin(r, n, 0);
    assert_int_equal(roster_snapshot_end(r, n, false), 1);
    assert_stats(r, 1, 0, 0, 0, 0);
    roster_free(r);
}

static void test_join_between_begin_and_end_is_kept(void **state)
{
    roster *r = new_roster(8);
    rnode *n = new_node(r, "n1");
    join3(r, n, false);
    roster_snapshot_begin(r, n, 5);
    /* A live JOIN (new member) and a repeated JOIN (existing one) during the snapshot. */
    assert_int_equal(roster_join(r, n, "n1.e", "ue", "ch", true), 1);
    assert_int_equal(roster_join(r, n, "n1.a", "ua", "ch", true), 0);
    assert_int_equal(roster_snapshot_end(r, n, true), 2);
    member_list ms = list_members(r, "ch");
    assert_int_equal(ms.n, 2);
    assert_member(&ms, "n1.e", "ue", "n1");
    assert_member(&ms, "n1.a", "ua", "n1");
    batches *bs = flush(r);
    const batch *b = batch_of(bs, "ch");
    assert_int_equal(b->n, 3);
    assert_event(b, 0, "n1.e", "ue", false);
    assert_true(b->ev[1].left && b->ev[2].left);
    free(bs);
    roster_free(r);
}

static void test_snapshot_partial_client(void **state)
{
    /* One client on several channels, only some named: the rest of its list survives. */
    roster *r = new_roster(8);
    rnode *n = new_node(r, "n1");
    const char *chans[] = {"c1", "c2", "c3", "c4", "c5"};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(roster_join(r, n, "n1.1", "u", chans[i], false), 1);
        assert_int_equal(roster_join(r, n, "n1.2", "v", chans[i], false), 1);
    }
    roster_snapshot_begin(r, n, 9);
    assert_int_equal(roster_join(r, n, "n1.1", "u", "c2", false), 0);
    assert_int_equal(roster_join(r, n, "n1.1", "u", "c4", false), 0);
    assert_int_equal(roster_join(r, n, "n1.2", "v", "c1", false), 0);
    assert_int_equal(roster_join(r, n, "n1.2", "v", "c5", false), 0);
    assert_int_equal(roster_snapshot_end(r, n, false), 6);
    assert_stats(r, 1, 2, 2, 4, 4);
    assert_int_equal(roster_count(r, "c1"), 1);
    assert_int_equal(roster_count(r, "c2"), 1);
    assert_int_equal(roster_count(r, "c3"), 0);
    assert_int_equal(roster_count(r, "c4"), 1);
    assert_int_equal(roster_count(r, "c5"), 1);
    member_list ms = list_members(r, "c2");
    assert_member(&ms, "n1.1", "u", "n1");
    ms = list_members(r, "c5");
    assert_member(&ms, "n1.2", "v", "n1");
    /* Its membership list is still sound: leaving everything frees everything. */
    assert_int_equal(roster_leave(r, n, "n1.1", "c4", false), 1);
    assert_int_equal(roster_leave(r, n, "n1.1", "c2", false), 1);
    assert_int_equal(roster_leave(r, n, "n1.2", "c1", false), 1);
    assert_int_equal(roster_leave(r, n, "n1.2", "c5", false), 1);
    assert_stats(r, 1, 0, 0, 0, 0);
    roster_free(r);
}

/* ---- dropping and expiry ------------------------------------------------------------------ */

static void test_drop_node(void **state)
{
    roster *r = new_roster(8);
    rnode *n1 = new_node(r, "n1"), *n2 = new_node(r, "n2");
    assert_int_equal(roster_join(r, n1, "n1.1", "alice", "a", false), 1);
    assert_int_equal(roster_join(r, n1, "n1.1", "alice", "b", false), 1);
    assert_int_equal(roster_join(r, n1, "n1.2", "bob", "a", false), 1);
    assert_int_equal(roster_join(r, n2, "n2.1", "alice", "a", false), 1);
    assert_int_equal(roster_join(r, n2, "n2.2", "carol", "c", false), 1);
    assert_stats(r, 2, 4, 3, 3, 5);

    roster_drop_node(r, n1, true);
    assert_stats(r, 1, 2, 2, 3, 2); /* b, emptied, is kept until its events are flushed */
    assert_int_equal(roster_count(r, "a"), 1);
    assert_int_equal(roster_count(r, "b"), 0);
    assert_int_equal(roster_count(r, "c"), 1);
    member_list ms = list_members(r, "a");
    assert_member(&ms, "n2.1", "alice", "n2");

    batches *bs = flush(r);
    assert_int_equal(bs->n, 2);
    const batch *a = batch_of(bs, "a");
    assert_int_equal(a->n, 2);
    for (size_t i = 0; i < 2; i++)
        assert_true(a->ev[i].left);
    bool saw1 = false, saw2 = false;
    for (size_t i = 0; i < 2; i++) {
        if (strcmp(a->ev[i].client, "n1.1") == 0) {
            saw1 = true;
            assert_string_equal(a->ev[i].user, "alice");
        } else if (strcmp(a->ev[i].client, "n1.2") == 0) {
            saw2 = true;
            assert_string_equal(a->ev[i].user, "bob");
        }
    }
    assert_true(saw1 && saw2);
    const batch *b = batch_of(bs, "b");
    assert_int_equal(b->n, 1);
    assert_event(b, 0, "n1.1", "alice", true);
    free(bs);
    assert_stats(r, 1, 2, 2, 2, 2);

    /* The dropped node can come back, fresh. */
    bool created = false;
    rnode *again = roster_node(r, "n1", 5, &created);
    assert_true(created);
    assert_false(again->synced);
    assert_int_equal(again->nclients, 0);

    /* Without emit nothing is queued. */
    roster_drop_node(r, n2, false);
    assert_int_equal(roster_pending_events(r), 0);
    assert_stats(r, 1, 0, 0, 0, 0);
    roster_free(r);
}

static void test_expire(void **state)
{
    roster *r = new_roster(8);
    rnode *a = node_at(r, "na", 10), *b = node_at(r, "nb", 10), *c = node_at(r, "nc", 12);
    a->timeout = 5;
    b->timeout = 20;
    c->timeout = 5;
    assert_int_equal(roster_join(r, a, "na.1", "u", "ch", false), 1);
    assert_int_equal(roster_join(r, b, "nb.1", "u", "ch", false), 1);
    assert_int_equal(roster_join(r, c, "nc.1", "v", "ch", false), 1);

    /* Silent for exactly the timeout is not yet too long. */
    assert_int_equal(roster_expire(r, 15, NULL, NULL), 0);
    assert_stats(r, 3, 3, 2, 1, 3);
    assert_int_equal(roster_get_stats(r).nodes_expired, 0);

    /* Hearing from a node again keeps it. */
    node_at(r, "na", 14);
    assert_int_equal(roster_expire(r, 17.5, NULL, NULL), 1); /* nc only: 5.5 > 5 */
    assert_stats(r, 2, 2, 1, 1, 2);
    assert_int_equal(roster_get_stats(r).nodes_expired, 1);
    assert_int_equal(roster_count(r, "ch"), 2);
    member_list ms = list_members(r, "ch");
    assert_member(&ms, "na.1", "u", "na");
    assert_member(&ms, "nb.1", "u", "nb");

    /* Expiry queues the leaves. */
    batches *bs = flush(r);
    const batch *bt = batch_of(bs, "ch");
    assert_int_equal(bt->n, 1);
    assert_event(bt, 0, "nc.1", "v", true);
    free(bs);

    assert_int_equal(roster_expire(r, 25, NULL, NULL), 1); /* na: 11 > 5; nb: 15 <= 20 */
    assert_stats(r, 1, 1, 1, 1, 1);
    assert_int_equal(roster_expire(r, 31, NULL, NULL), 1); /* nb: 21 > 20 */
    assert_stats(r, 0, 0, 0, 1, 0);            /* ch waits for its leave events */
    assert_int_equal(roster_get_stats(r).nodes_expired, 3);
    assert_int_equal(roster_expire(r, 1000, NULL, NULL), 0);
    bs = flush(r);
    bt = batch_of(bs, "ch");
    assert_int_equal(bt->n, 2);
    free(bs);
    assert_stats(r, 0, 0, 0, 0, 0);
    roster_free(r);
}

typedef struct expired_seen {
    char ids[4][16];
    size_t clients[4];
    double at;
    size_t n;
} expired_seen;

static void note_expired(void *ctx, const rnode *n, double now)
{
    expired_seen *e = ctx;
    assert_true(e->n < 4);
    snprintf(e->ids[e->n], sizeof e->ids[0], "%s", n->id);
    e->clients[e->n++] = n->nclients; /* the node is whole still */
    e->at = now;
}

/* wsrouter logs each node it expires: the callback sees exactly the nodes dropped, each once,
 * before its clients go. */
static void test_expire_tells_each_node_before_it_goes(void **state)
{
    roster *r = new_roster(8);
    rnode *a = node_at(r, "na", 10), *b = node_at(r, "nb", 10);
    a->timeout = b->timeout = 5;
    assert_int_equal(roster_join(r, a, "na.1", "u", "ch", false), 1);
    assert_int_equal(roster_join(r, a, "na.2", "u", "ch", false), 1);
    assert_int_equal(roster_join(r, b, "nb.1", "v", "ch", false), 1);
    node_at(r, "nb", 14);
    expired_seen e = {0};
    assert_int_equal(roster_expire(r, 15, note_expired, &e), 0);
    assert_int_equal(e.n, 0);
    assert_int_equal(roster_expire(r, 16, note_expired, &e), 1);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.ids[0], "na");
    assert_int_equal(e.clients[0], 2);
    assert_true(e.at == 16);
    assert_int_equal(roster_count(r, "ch"), 1);
    assert_int_equal(roster_expire(r, 20, note_expired, &e), 1);
    assert_int_equal(e.n, 2);
    assert_string_equal(e.ids[1], "nb");
    assert_int_equal(e.clients[1], 1);
    assert_int_equal(roster_get_stats(r).nodes_expired, 2);
    assert_int_equal(roster_get_stats(r).nodes, 0);
    roster_free(r);
}

static void test_expire_many_nodes(void **state)
{
    /* Enough nodes to spread over buckets: expiry deletes while the table is walked. */
    roster *r = new_roster(4);
    char id[16], client[24];
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof id, "n%d", i);
        rnode *n = node_at(r, id, i % 2 ? 100 : 0);
        n->timeout = 10;
        snprintf(client, sizeof client, "n%d.%x", i, i);
        assert_int_equal(roster_join(r, n, client, "u", i % 3 ? "x" : "y", true), 1);
    }
    free(flush(r));
    assert_int_equal(roster_expire(r, 50, NULL, NULL), 100);
    roster_stats s = roster_get_stats(r);
    assert_int_equal(s.nodes, 100);
    assert_int_equal(s.members, 100);
    assert_int_equal(roster_count(r, "x") + roster_count(r, "y"), 100);
    /* The survivors are exactly the odd nodes, heard from at 100. */
    member_list ms = list_members(r, "y");
    for (size_t i = 0; i < ms.n; i++) {
        int k = atoi(ms.m[i].node + 1);
        assert_true(k % 2 == 1 && k % 3 == 0);
    }
    assert_int_equal(ms.n, 33); /* odd multiples of 3 below 200 */
    batches *bs = flush(r);
    size_t leaves = 0;
    for (size_t i = 0; i < bs->n; i++) {
        leaves += bs->b[i].n + bs->b[i].more_leaves;
        assert_int_equal(bs->b[i].more_joins, 0);
    }
    free(bs);
    assert_int_equal(leaves, 100);
    roster_free(r);
}

/* ---- randomized against a model ---------------------------------------------------------- */

#define RN_NODES 3
#define RN_CLIENTS 50
#define RN_CHANNELS 20
#define RN_OPS 2000

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

typedef struct model {
    bool m[RN_CLIENTS][RN_CHANNELS];
} model;

static void check_model(const roster *r, const model *md, bool flushed)
{
    uint64_t members = 0, clients = 0, channels = 0, users = 0;
    bool user_seen[7] = {false};
    for (int ch = 0; ch < RN_CHANNELS; ch++) {
        char name[16];
        snprintf(name, sizeof name, "ch%d", ch);
        size_t want = 0;
        for (int c = 0; c < RN_CLIENTS; c++)
            want += md->m[c][ch];
        if (roster_count(r, name) != want)
            fail_msg("%s: count %zu, model %zu", name, roster_count(r, name), want);
        members += want;
        channels += want > 0;
    }
    for (int c = 0; c < RN_CLIENTS; c++) {
        bool any = false;
        for (int ch = 0; ch < RN_CHANNELS; ch++)
            any |= md->m[c][ch];
        clients += any;
        if (any && !user_seen[c % 7]) {
            user_seen[c % 7] = true;
            users++;
        }
    }
    roster_stats s = roster_get_stats(r);
    if (s.members != members)
        fail_msg("members %llu, model %llu", (unsigned long long)s.members,
                 (unsigned long long)members);
    assert_int_equal(s.clients, clients);
    assert_int_equal(s.users, users);
    assert_int_equal(s.nodes, RN_NODES);
    if (flushed)
        assert_int_equal(s.channels, channels);
    else
        assert_true(s.channels >= channels);
}

typedef struct tally {
    uint64_t joins, leaves;
} tally;

static void on_tally(void *ctx, const char *channel, const roster_event *ev, size_t n,
                     uint32_t more_joins, uint32_t more_leaves)
{
    tally *t = ctx;
    assert_true(n <= 4);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(strncmp(channel, "ch", 2), 0);
        if (ev[i].left)
            t->leaves++;
        else
            t->joins++;
    }
    t->joins += more_joins;
    t->leaves += more_leaves;
}

static void test_randomized_against_model(void **state)
{
    roster *r = new_roster(4);
    rnode *nodes[RN_NODES];
    char nid[RN_NODES][8];
    for (int i = 0; i < RN_NODES; i++) {
        snprintf(nid[i], sizeof nid[i], "n%d", i);
        nodes[i] = new_node(r, nid[i]);
    }
    model md;
    memset(&md, 0, sizeof md);
    tally want = {0}, got = {0};

    for (int op = 0; op < RN_OPS; op++) {
        int c = (int)rnd(RN_CLIENTS), ch = (int)rnd(RN_CHANNELS);
        bool join = rnd(100) < 55, emit = rnd(2);
        char client[24], user[8], chan[16];
        snprintf(client, sizeof client, "n%d.%x", c % RN_NODES, c);
        snprintf(user, sizeof user, "u%d", c % 7);
        snprintf(chan, sizeof chan, "ch%d", ch);
        rnode *n = nodes[c % RN_NODES];
        if (join) {
            int rc = roster_join(r, n, client, user, chan, emit);
            assert_int_equal(rc, md.m[c][ch] ? 0 : 1);
            if (rc == 1 && emit)
                want.joins++;
            md.m[c][ch] = true;
        } else {
            int rc = roster_leave(r, n, client, chan, emit);
            assert_int_equal(rc, md.m[c][ch] ? 1 : 0);
            if (rc == 1 && emit)
                want.leaves++;
            md.m[c][ch] = false;
        }
        /* The wrong node refuses, and changes nothing. */
        if (op % 17 == 0)
            assert_int_equal(roster_join(r, nodes[(c + 1) % RN_NODES], client, user, chan, true),
                             -1);
        bool flushed = op % 10 == 9;
        if (flushed) {
            roster_flush_events(r, on_tally, &got);
            assert_int_equal(roster_pending_events(r), 0);
        }
        check_model(r, &md, flushed);
        if (op % 97 == 0) {
            member_list ms = list_members(r, chan);
            for (int k = 0; k < RN_CLIENTS; k++) {
                char id[24];
                snprintf(id, sizeof id, "n%d.%x", k % RN_NODES, k);
                size_t seen = 0;
                for (size_t j = 0; j < ms.n; j++)
                    seen += strcmp(ms.m[j].client, id) == 0;
                assert_int_equal(seen, md.m[k][ch]);
            }
        }
    }
    roster_flush_events(r, on_tally, &got);
    assert_int_equal(got.joins, want.joins);
    assert_int_equal(got.leaves, want.leaves);
    check_model(r, &md, true);

    /* A snapshot of node 0 naming only its clients on even channels. */
    roster_snapshot_begin(r, nodes[0], 77);
    size_t stale = 0;
    for (int c = 0; c < RN_CLIENTS; c += RN_NODES)
        for (int ch = 0; ch < RN_CHANNELS; ch++) {
            if (!md.m[c][ch])
                continue;
            if (ch % 2) {
                stale++;
                md.m[c][ch] = false;
                continue;
            }
            char client[24], user[8], chan[16];
            snprintf(client, sizeof client, "n0.%x", c);
            snprintf(user, sizeof user, "u%d", c % 7);
            snprintf(chan, sizeof chan, "ch%d", ch);
            assert_int_equal(roster_join(r, nodes[0], client, user, chan, false), 0);
        }
    assert_int_equal(roster_snapshot_end(r, nodes[0], false), stale);
    check_model(r, &md, true);

    /* Drop everything. */
    for (int i = 0; i < RN_NODES; i++)
        roster_drop_node(r, nodes[i], true);
    roster_flush_events(r, on_tally, &got);
    roster_stats s = roster_get_stats(r);
    assert_int_equal(s.nodes, 0);
    assert_int_equal(s.clients, 0);
    assert_int_equal(s.users, 0);
    assert_int_equal(s.channels, 0);
    assert_int_equal(s.members, 0);
    assert_int_equal(roster_pending_events(r), 0);
    for (int ch = 0; ch < RN_CHANNELS; ch++) {
        char chan[16];
        snprintf(chan, sizeof chan, "ch%d", ch);
        assert_int_equal(roster_count(r, chan), 0);
    }
    roster_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_created_once),
        cmocka_unit_test(test_each_node_and_nclients),
        cmocka_unit_test(test_join_client_id_must_be_of_the_node),
        cmocka_unit_test(test_count_and_each_member),
        cmocka_unit_test(test_channel_grows_and_shrinks),
        cmocka_unit_test(test_stats_through_joins_and_leaves),
        cmocka_unit_test(test_events_in_order_per_channel),
        cmocka_unit_test(test_events_capped),
        cmocka_unit_test(test_event_max_zero_counts_only),
        cmocka_unit_test(test_emit_false_queues_nothing),
        cmocka_unit_test(test_emptied_channel_with_events_is_flushed_then_freed),
        cmocka_unit_test(test_free_with_pending_events),
        cmocka_unit_test(test_snapshot_end_removes_unnamed_with_leaves),
        cmocka_unit_test(test_snapshot_end_without_emit),
        cmocka_unit_test(test_snapshot_chunks_share_a_generation),
        cmocka_unit_test(test_snapshot_new_id_new_generation),
        cmocka_unit_test(test_snapshot_id_zero_is_always_new),
        cmocka_unit_test(test_join_between_begin_and_end_is_kept),
        cmocka_unit_test(test_snapshot_partial_client),
        cmocka_unit_test(test_drop_node),
        cmocka_unit_test(test_expire),
        cmocka_unit_test(test_expire_many_nodes),
        cmocka_unit_test(test_expire_tells_each_node_before_it_goes),
        cmocka_unit_test(test_randomized_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
