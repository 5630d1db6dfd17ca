/* session: protocol v1 driven through a fake transport that records the frames it is given
 * and the closes it is asked for, on a worker without Redis (local pub/sub, a real mode of the
 * node): hello, sub/unsub/pub acks and the messages they bring, err replies for bad requests,
 * --max-subs, --max-msg-rate and its close, binary frames, permissions from an auth grant,
 * direct messages and local presence, and leaving every channel when stopped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "session.h"
#include "ws_hash.h"

#define FRAMES 64

typedef struct fake {
    session s; /* the fake transport embeds its session, as conn does */
    int n;     /* frames recorded */
    char *frames[FRAMES];
    int closes;
    enum session_close how;
    uint16_t code;
    size_t queued;
} fake;

static fake *of(session *s) { return ws_container_of(s, fake, s); }

/* Records the payload of a server frame (FIN, unmasked, short header) as a string. */
static void record(fake *f, const wbuf *b)
{
    size_t len = b->data[1] & 0x7f, off = 2;
    if (len == 126) {
        len = (size_t)b->data[2] << 8 | b->data[3];
        off = 4;
    }
    assert_true(off + len == b->len);
    assert_true(f->n < FRAMES);
    f->frames[f->n] = strndup((const char *)b->data + off, len);
    f->n++;
}

static void fake_send(session *s, wbuf *frame)
{
    assert_non_null(frame);
    record(of(s), frame);
}

static void fake_close(session *s, enum session_close how, uint16_t code, const char *reason)
{
    (void)reason;
    fake *f = of(s);
    f->closes++;
    f->how = how;
    f->code = code;
    session_stop(s); /* as a transport does once the connection leaves open */
}

static size_t fake_queued(const session *s) { return ((const fake *)(const void *)s)->queued; }

static const session_transport FAKE = {fake_send, fake_close, fake_queued};

static void fake_deliver(hub_member *m, wbuf *frame, void *ctx)
{
    (void)ctx;
    record(of(session_of_sub(m)), frame);
}

static void fake_deliver_event(hub_member *m, wbuf *frame, void *ctx)
{
    (void)ctx;
    record(of(session_of_event(m)), frame);
}

/* One worker without Redis, as tests leave it. */
static config cfg;
static worker_stats stats[1];
static worker w;

static int setup(void **state)
{
    (void)state;
    memset(&cfg, 0, sizeof cfg);
    cfg.workers = 1;
    cfg.max_subs = 3;
    cfg.max_data = 65536;
    cfg.outbuf_soft = 1 << 20;
    cfg.presence_max_members = 100;
    memset(stats, 0, sizeof stats);
    memset(&w, 0, sizeof w);
    w.cfg = &cfg;
    w.loop = ev_default_loop(0);
    w.st = &stats[0];
    w.all = stats;
    strcpy(w.node_id, "n1.w0.abcdef");
    static const uint8_t key[16] = {7};
    uint64_t k[2];
    ws_siphash_key(k, key);
    tab_init(&w.clients, k);
    hub_init(&w.hub, fake_deliver, &w, 16, key);
    hub_init(&w.evhub, fake_deliver_event, &w, 1, key);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hub_free(&w.hub);
    hub_free(&w.evhub);
    tab_free(&w.clients);
    return 0;
}

static fake *client(uint64_t id, const char *user, auth_grant *grant)
{
    fake *f = calloc(1, sizeof *f);
    f->s.id = id;
    session_start(&f->s, &w, &FAKE, user ? strdup(user) : NULL, grant);
    return f;
}

static void done(fake *f)
{
    session_free(&f->s);
    for (int i = 0; i < f->n; i++)
        free(f->frames[i]);
    free(f);
}

static void say(fake *f, const char *json) { session_message(&f->s, 1, (const uint8_t *)json, strlen(json)); }

/* The last frame f was given, which must contain every one of the NULL-ended strings. */
static void assert_last_has(fake *f, ...)
{
    assert_true(f->n > 0);
    const char *last = f->frames[f->n - 1];
    va_list ap;
    va_start(ap, f);
    for (const char *s; (s = va_arg(ap, const char *));)
        if (!strstr(last, s))
            fail_msg("'%s' lacks '%s'", last, s);
    va_end(ap);
}

static void test_hello_names_the_client(void **state)
{
    (void)state;
    fake *a = client(0xabc, NULL, NULL);
    assert_int_equal(a->n, 1);
    assert_last_has(a, "\"op\":\"hello\"", "\"client\":\"n1.w0.abcdef.abc\"", "\"node\":\"n1.w0.abcdef\"", NULL);
    done(a);
}

static void test_sub_pub_unsub(void **state)
{
    (void)state;
    fake *a = client(1, NULL, NULL), *b = client(2, NULL, NULL);
    say(a, "{\"op\":\"sub\",\"ch\":\"room.1\",\"id\":1}");
    assert_last_has(a, "\"op\":\"ack\"", "\"id\":1", NULL);
    say(b, "{\"op\":\"pub\",\"ch\":\"room.1\",\"data\":{\"x\":[1,2]},\"id\":7}");
    assert_last_has(b, "\"op\":\"ack\"", "\"id\":7", "\"seq\":1", NULL);
    assert_last_has(a, "\"op\":\"msg\"", "\"ch\":\"room.1\"", "\"seq\":1", "\"data\":{\"x\":[1,2]}", NULL);
    assert_int_equal(stats[0].publishes, 1);
    assert_int_equal(stats[0].deliveries, 1);
    say(a, "{\"op\":\"unsub\",\"ch\":\"room.1\",\"id\":2}");
    assert_last_has(a, "\"op\":\"ack\"", "\"id\":2", NULL);
    int before = a->n;
    say(b, "{\"op\":\"pub\",\"ch\":\"room.1\",\"data\":1}");
    assert_int_equal(a->n, before); /* no longer subscribed: nothing */
    assert_last_has(b, "\"seq\":2", NULL);
    done(a);
    done(b);
}

static void test_bad_requests_get_err(void **state)
{
    (void)state;
    fake *a = client(3, NULL, NULL);
    say(a, "{\"op\":\"sub\",\"ch\":");
    assert_last_has(a, "\"op\":\"err\"", "\"code\":\"bad_json\"", NULL);
    say(a, "{\"op\":\"dance\",\"id\":4}");
    assert_last_has(a, "\"code\":\"bad_op\"", "\"id\":4", NULL);
    say(a, "{\"op\":\"sub\",\"ch\":\"no spaces\",\"id\":5}");
    assert_last_has(a, "\"code\":\"bad_channel\"", "\"id\":5", NULL);
    assert_int_equal(stats[0].bad_requests, 3);
    assert_int_equal(a->closes, 0);
    done(a);
}

static void test_max_subs(void **state)
{
    (void)state;
    fake *a = client(4, NULL, NULL);
    say(a, "{\"op\":\"sub\",\"ch\":\"a\",\"id\":1}");
    say(a, "{\"op\":\"sub\",\"ch\":\"b\",\"id\":2}");
    say(a, "{\"op\":\"sub\",\"ch\":\"c\",\"id\":3}");
    assert_last_has(a, "\"op\":\"ack\"", NULL);
    say(a, "{\"op\":\"sub\",\"ch\":\"d\",\"id\":4}");
    assert_last_has(a, "\"code\":\"too_many_subscriptions\"", "\"id\":4", NULL);
    say(a, "{\"op\":\"sub\",\"ch\":\"a\",\"id\":5}"); /* already a member: not a new one */
    assert_last_has(a, "\"op\":\"ack\"", "\"id\":5", NULL);
    assert_int_equal(hub_count(&w.hub, (ws_span){"d", 1}), 0);
    done(a);
}

static void test_binary_closes_1003(void **state)
{
    (void)state;
    fake *a = client(5, NULL, NULL);
    session_message(&a->s, 2, (const uint8_t *)"{}", 2);
    assert_int_equal(a->closes, 1);
    assert_int_equal(a->how, SESSION_CLOSE);
    assert_int_equal(a->code, 1003);
    done(a);
}

static void test_rate_limit_refuses_then_closes(void **state)
{
    (void)state;
    cfg.max_msg_rate = 10; /* bursts of 20; refusals: a tenth of the rate, bursts of 10 */
    fake *a = client(6, NULL, NULL);
    for (int i = 0; i < 200 && !a->closes; i++)
        say(a, "{\"op\":\"unsub\",\"ch\":\"a\"}");
    int acks = 0, limited = 0;
    for (int i = 1; i < a->n; i++) { /* after the hello */
        acks += strstr(a->frames[i], "\"op\":\"ack\"") != NULL;
        limited += strstr(a->frames[i], "\"code\":\"rate_limited\"") != NULL;
    }
    assert_int_equal(acks, 20);
    assert_int_equal(limited, 10);
    assert_int_equal(a->n, 31);
    assert_int_equal(a->closes, 1);
    assert_int_equal(a->how, SESSION_CLOSE_DEAF);
    assert_int_equal(a->code, 1008);
    assert_int_equal(stats[0].abuse_closes, 1);
    done(a);
}

static void test_pings_count_toward_the_rate(void **state)
{
    (void)state;
    cfg.max_msg_rate = 10;
    fake *a = client(8, NULL, NULL);
    for (int i = 0; i < 20; i++)
        assert_true(session_control(&a->s));
    assert_false(session_control(&a->s)); /* over: left unanswered, and no err either */
    assert_int_equal(a->n, 1);
    say(a, "{\"op\":\"unsub\",\"ch\":\"a\"}");
    assert_last_has(a, "\"code\":\"rate_limited\"", NULL);
    done(a);
}

static void test_grant_refuses_what_it_does_not_allow(void **state)
{
    (void)state;
    config ac = cfg;
    ac.auth = AUTH_OPTIONAL;
    ac.jwt_secret = "0123456789abcdef0123456789abcdef";
    ac.anon_sub[0] = "public.*";
    ac.nanon_sub = 1;
    char err[256];
    auth *au = auth_new(&ac, err, sizeof err);
    assert_non_null(au);
    fake *a = client(7, NULL, (auth_grant *)auth_anonymous(au));
    say(a, "{\"op\":\"sub\",\"ch\":\"public.news\",\"id\":1}");
    assert_last_has(a, "\"op\":\"ack\"", NULL);
    say(a, "{\"op\":\"sub\",\"ch\":\"private.x\",\"id\":2}");
    assert_last_has(a, "\"code\":\"forbidden\"", "\"id\":2", NULL);
    say(a, "{\"op\":\"pub\",\"ch\":\"public.news\",\"data\":1,\"id\":3}");
    assert_last_has(a, "\"code\":\"forbidden\"", "\"id\":3", NULL);
    assert_int_equal(stats[0].forbidden, 2);
    assert_int_equal(hub_count(&w.hub, (ws_span){"private.x", 9}), 0);
    done(a);
    auth_free(au);
}

static void test_direct_message(void **state)
{
    (void)state;
    fake *a = client(0x10, NULL, NULL), *b = client(0x20, NULL, NULL);
    say(a, "{\"op\":\"send\",\"to\":\"n1.w0.abcdef.20\",\"data\":\"hi\",\"id\":9}");
    assert_last_has(b, "\"op\":\"msg\"", "\"from\":\"n1.w0.abcdef.10\"", "\"data\":\"hi\"", NULL);
    assert_last_has(a, "\"op\":\"ack\"", "\"id\":9", NULL);
    say(a, "{\"op\":\"send\",\"to\":\"n1.w0.abcdef.30\",\"data\":1,\"id\":10}");
    assert_last_has(a, "\"code\":\"not_found\"", NULL);
    b->queued = cfg.outbuf_soft / 2; /* not reading: dropped, the sender hears busy */
    int before = b->n;
    say(a, "{\"op\":\"send\",\"to\":\"n1.w0.abcdef.20\",\"data\":1,\"id\":11}");
    assert_last_has(a, "\"code\":\"busy\"", NULL);
    assert_int_equal(b->n, before);
    session_stop(&b->s); /* closing: no longer found */
    say(a, "{\"op\":\"send\",\"to\":\"n1.w0.abcdef.20\",\"data\":1,\"id\":12}");
    assert_last_has(a, "\"code\":\"not_found\"", NULL);
    done(a);
    done(b);
}

static void test_local_presence_and_stop(void **state)
{
    (void)state;
    fake *a = client(0x31, "alice", NULL), *b = client(0x32, NULL, NULL);
    say(a, "{\"op\":\"sub\",\"ch\":\"lobby\"}");
    say(b, "{\"op\":\"sub\",\"ch\":\"lobby\"}");
    say(b, "{\"op\":\"presence\",\"ch\":\"lobby\",\"id\":3}");
    assert_last_has(b, "\"op\":\"presence\"", "\"count\":2", "n1.w0.abcdef.31", "alice",
                    "n1.w0.abcdef.32", "anonymous", NULL);
    session_stop(&a->s);
    assert_int_equal(hub_count(&w.hub, (ws_span){"lobby", 5}), 1);
    say(b, "{\"op\":\"presence\",\"ch\":\"lobby\",\"id\":4}");
    assert_last_has(b, "\"count\":1", NULL);
    assert_null(strstr(b->frames[b->n - 1], "alice"));
    int before = a->n;
    say(b, "{\"op\":\"pub\",\"ch\":\"lobby\",\"data\":0}");
    assert_int_equal(a->n, before);
    done(a);
    done(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hello_names_the_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sub_pub_unsub, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests_get_err, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_subs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_closes_1003, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_refuses_then_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pings_count_toward_the_rate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grant_refuses_what_it_does_not_allow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direct_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_local_presence_and_stop, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
