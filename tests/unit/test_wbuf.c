/* wbuf: reference counts, and wbuf_ring_conflatable (--slow-policy conflate): which queued
 * frame a newer one of the same channel replaces, on rings that wrap, with frames that must
 * stay (the one being written), a seq that starts again, and frames that are not a channel's;
 * then a model of a connection's queue under random appends, conflations and partial writes,
 * checking what its reader ends up with. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "wbuf.h"

/* Channel identities: wbuf.chan is never dereferenced. */
static const char CH[4];
#define A (&CH[0])
#define B (&CH[1])
#define C (&CH[2])

static wbuf *msg(const void *chan, uint64_t seq)
{
    wbuf *b = wbuf_new(8);
    assert_non_null(b);
    b->len = 8;
    b->chan = chan;
    b->seq = seq;
    return b;
}

/* A ring of cap 8 whose oldest frame sits at head, holding the n frames given. */
static void fill(wbuf **q, uint32_t head, wbuf **frames, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        q[(head + i) & 7] = frames[i];
}

static void unref_all(wbuf **frames, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        wbuf_unref(frames[i]);
}

static void test_refs(void **state)
{
    (void)state;
    wbuf *b = wbuf_new(4);
    assert_non_null(b);
    assert_int_equal(b->refs, 1);
    assert_null(b->chan);
    assert_int_equal(b->seq, 0);
    assert_ptr_equal(wbuf_ref(b), b);
    assert_int_equal(b->refs, 2);
    wbuf_unref(b);
    assert_int_equal(b->refs, 1);
    wbuf_unref(b); /* freed: ASan says if it was not */
}

static void test_finds_the_last_of_the_channel_across_the_wrap(void **state)
{
    (void)state;
    wbuf *f[6] = {msg(A, 1), msg(B, 1), msg(A, 2), msg(C, 1), msg(B, 2), msg(C, 2)};
    wbuf *q[8] = {0};
    for (uint32_t head = 0; head < 8; head++) { /* every place the wrap can fall */
        fill(q, head, f, 6);
        wbuf *a3 = msg(A, 3), *b3 = msg(B, 3);
        assert_ptr_equal(wbuf_ring_conflatable(q, 8, head, 0, 6, a3), &q[(head + 2) & 7]);
        assert_ptr_equal(wbuf_ring_conflatable(q, 8, head, 0, 6, b3), &q[(head + 4) & 7]);
        unref_all((wbuf *[]){a3, b3}, 2);
    }
    unref_all(f, 6);
}

static void test_frames_before_from_stay(void **state)
{
    (void)state;
    wbuf *f[3] = {msg(A, 1), msg(B, 1), msg(B, 2)};
    wbuf *q[8] = {0};
    fill(q, 6, f, 3);
    wbuf *a2 = msg(A, 2), *b3 = msg(B, 3);
    /* A's only frame is being written: the new one must go after it. */
    assert_null(wbuf_ring_conflatable(q, 8, 6, 1, 3, a2));
    assert_ptr_equal(wbuf_ring_conflatable(q, 8, 6, 0, 3, a2), &q[6]);
    /* Looking at the last frame only still finds B's last. */
    assert_ptr_equal(wbuf_ring_conflatable(q, 8, 6, 2, 3, b3), &q[0]);
    /* Not looking at B's last: nothing, never an older frame of B. */
    assert_null(wbuf_ring_conflatable(q, 8, 6, 3, 3, b3));
    unref_all((wbuf *[]){a2, b3, f[0], f[1], f[2]}, 5);
}

static void test_only_an_older_msg_of_a_channel_is_replaced(void **state)
{
    (void)state;
    wbuf *f[3] = {msg(A, 5), msg(A, 9), msg(NULL, 0)};
    wbuf *q[8] = {0};
    fill(q, 0, f, 3);
    wbuf *restart = msg(A, 1);  /* the channel's seq started again */
    wbuf *same = msg(A, 9);     /* delivered twice */
    wbuf *reply = msg(NULL, 0); /* not a channel's msg */
    wbuf *noseq = msg(A, 0);
    assert_null(wbuf_ring_conflatable(q, 8, 0, 0, 3, restart)); /* not A 5 behind A 9 */
    assert_null(wbuf_ring_conflatable(q, 8, 0, 0, 3, same));
    assert_null(wbuf_ring_conflatable(q, 8, 0, 0, 3, reply));
    assert_null(wbuf_ring_conflatable(q, 8, 0, 0, 3, noseq));
    assert_null(wbuf_ring_conflatable(NULL, 0, 0, 0, 0, same)); /* an empty queue */
    unref_all((wbuf *[]){restart, same, reply, noseq}, 4);
    unref_all(f, 3);
}

/* ---- a model of a connection's queue --------------------------------------------------- */

#define RING 64
#define NCH 3
#define STEPS 20000

/* A fixed sequence (Knuth's MMIX LCG), so a failure repeats. */
static uint32_t rnd(uint32_t n)
{
    static uint64_t x = 1;
    x = x * 6364136223846793005u + 1442695040888963407u;
    return (uint32_t)(x >> 33) % n;
}

typedef struct model {
    wbuf *q[RING];
    uint32_t head, len;
    wbuf *writing; /* the head frame, partly written (our own reference) */
    uint64_t published[NCH], sent_last[NCH];
    uint64_t msgs_sent, replaced, replies, replies_sent;
} model;

/* The reader takes the head frame: per channel, seqs must go up. */
static void take(model *m)
{
    wbuf *b = m->q[m->head];
    if (m->writing) { /* the frame being written left whole */
        assert_ptr_equal(b, m->writing);
        wbuf_unref(m->writing);
        m->writing = NULL;
    }
    for (int ch = 0; ch < NCH; ch++) {
        if (b->chan == &CH[ch]) {
            assert_true(b->seq > m->sent_last[ch]);
            m->sent_last[ch] = b->seq;
            m->msgs_sent++;
        }
    }
    m->replies_sent += b->chan == NULL;
    wbuf_unref(b);
    m->head = (m->head + 1) & (RING - 1);
    m->len--;
}

/* A publish on channel ch reaches the connection; over the limit (half the ring here) it
 * conflates, looking back over `look` frames, as conn_queue.c does. */
static void publish(model *m, int ch, uint32_t look)
{
    wbuf *b = msg(&CH[ch], ++m->published[ch]);
    uint32_t first = m->writing ? 1 : 0;
    wbuf **slot = NULL;
    if (m->len >= RING / 2) {
        uint32_t from = m->len - first > look ? m->len - look : first;
        slot = wbuf_ring_conflatable(m->q, RING, m->head, from, m->len, b);
    }
    if (slot) {
        wbuf_unref(*slot);
        *slot = b;
        m->replaced++;
    } else {
        assert_true(m->len < RING);
        m->q[(m->head + m->len++) & (RING - 1)] = b;
    }
    if (!rnd(4)) { /* now and then something that never conflates: a reply */
        assert_true(m->len < RING);
        m->q[(m->head + m->len++) & (RING - 1)] = msg(NULL, 0);
        m->replies++;
    }
}

static void run_model(uint32_t look)
{
    model m = {0};
    for (int step = 0; step < STEPS; step++) {
        /* Bursts of publishes, and a reader that stalls for a while, then reads. */
        if (rnd(3) && m.len < RING - 2)
            publish(&m, (int)rnd(NCH), look);
        else if (m.len && rnd(2))
            take(&m);
        else if (m.len && !m.writing)
            m.writing = wbuf_ref(m.q[m.head]);
    }
    while (m.len)
        take(&m);
    uint64_t msgs = 0;
    for (int ch = 0; ch < NCH; ch++) {
        assert_int_equal(m.sent_last[ch], m.published[ch]); /* the newest value arrived */
        msgs += m.published[ch];
    }
    assert_true(m.replaced > 0); /* the ring was over the limit: conflation happened */
    assert_int_equal(m.msgs_sent + m.replaced, msgs); /* each one sent or replaced, once */
    assert_int_equal(m.replies_sent, m.replies);      /* replies are never replaced */
}

static void test_model_reader_ends_with_the_newest_in_order(void **state)
{
    (void)state;
    run_model(RING);   /* looking over the whole queue */
    run_model(NCH + 4); /* one per channel and some slack, as conn_queue.c bounds it */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refs),
        cmocka_unit_test(test_finds_the_last_of_the_channel_across_the_wrap),
        cmocka_unit_test(test_frames_before_from_stay),
        cmocka_unit_test(test_only_an_older_msg_of_a_channel_is_replaced),
        cmocka_unit_test(test_model_reader_ends_with_the_newest_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
