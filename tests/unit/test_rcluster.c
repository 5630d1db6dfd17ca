/* rcluster: the slot map from a CLUSTER SHARDS reply a real 3-master redis-server 7.0 cluster
 * gave (redis-cli --cluster create, ports 17101-17103), read by hiredis's own reader; a shard
 * without an online master leaves its slots unserved; replies of another shape are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "rcluster.h"

static const char SHARDS[] =
    "*3\r\n"
    "*4\r\n"
    "$5\r\n"
    "slots\r\n"
    "*2\r\n"
    ":10923\r\n"
    ":16383\r\n"
    "$5\r\n"
    "nodes\r\n"
    "*1\r\n"
    "*14\r\n"
    "$2\r\n"
    "id\r\n"
    "$40\r\n"
    "ad37b6818161505a43b69ddf0f23347ca9c75305\r\n"
    "$4\r\n"
    "port\r\n"
    ":17103\r\n"
    "$2\r\n"
    "ip\r\n"
    "$9\r\n"
    "127.0.0.1\r\n"
    "$8\r\n"
    "endpoint\r\n"
    "$9\r\n"
    "127.0.0.1\r\n"
    "$4\r\n"
    "role\r\n"
    "$6\r\n"
    "master\r\n"
    "$18\r\n"
    "replication-offset\r\n"
    ":0\r\n"
    "$6\r\n"
    "health\r\n"
    "$6\r\n"
    "online\r\n"
    "*4\r\n"
    "$5\r\n"
    "slots\r\n"
    "*2\r\n"
    ":5461\r\n"
    ":10922\r\n"
    "$5\r\n"
    "nodes\r\n"
    "*1\r\n"
    "*14\r\n"
    "$2\r\n"
    "id\r\n"
    "$40\r\n"
    "2e0b55aed52441c0da7c7f046a6fda51f32d18f1\r\n"
    "$4\r\n"
    "port\r\n"
    ":17102\r\n"
    "$2\r\n"
    "ip\r\n"
    "$9\r\n"
    "127.0.0.1\r\n"
    "$8\r\n"
    "endpoint\r\n"
    "$9\r\n"
    "127.0.0.1\r\n"
    "$4\r\n"
    "role\r\n"
    "$6\r\n"
    "master\r\n"
    "$18\r\n"
    "replication-offset\r\n"
    ":0\r\n"
    "$6\r\n"
    "health\r\n"
    "$6\r\n"
    "online\r\n"
    "*4\r\n"
    "$5\r\n"
    "slots\r\n"
    "*2\r\n"
    ":0\r\n"
    ":5460\r\n"
    "$5\r\n"
    "nodes\r\n"
    "*1\r\n"
    "*14\r\n"
    "$2\r\n"
    "id\r\n"
    "$40\r\n"
    "bbf6996c5861dede653a491e32971227f742abd1\r\n"
    "$4\r\n"
    "port\r\n"
    ":17101\r\n"
    "$2\r\n"
    "ip\r\n"
    "$9\r\n"
    "127.0.0.1\r\n"
    "$8\r\n"
    "endpoint\r\n"
    "$9\r\n"
    "127.0.0.1\r\n"
    "$4\r\n"
    "role\r\n"
    "$6\r\n"
    "master\r\n"
    "$18\r\n"
    "replication-offset\r\n"
    ":0\r\n"
    "$6\r\n"
    "health\r\n"
    "$6\r\n"
    "online\r\n";

static redisReply *parse(const char *resp)
{
    redisReader *rd = redisReaderCreate();
    void *reply = NULL;
    assert_int_equal(redisReaderFeed(rd, resp, strlen(resp)), REDIS_OK);
    assert_int_equal(redisReaderGetReply(rd, &reply), REDIS_OK);
    assert_non_null(reply);
    redisReaderFree(rd);
    return reply;
}

static void test_three_masters(void **state)
{
    (void)state;
    static rcluster_map m;
    redisReply *r = parse(SHARDS);
    assert_int_equal(rcluster_from_shards(&m, r), CLUSTER_SLOTS);
    assert_int_equal(m.nmasters, 3);
    static const struct { uint16_t slot; int port; } want[] = {
        {0, 17101}, {5460, 17101}, {5461, 17102}, {10922, 17102}, {10923, 17103}, {16383, 17103}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        const rcluster_master *mm = rcluster_master_of(&m, want[i].slot);
        assert_non_null(mm);
        assert_int_equal(mm->port, want[i].port);
        assert_string_equal(mm->host, "127.0.0.1");
        assert_int_equal(strlen(mm->id), 40);
    }
    const rcluster_master *mm = rcluster_master_of(&m, cluster_slot("ticks.EURUSD", 12));
    assert_int_equal(mm->port, 17102); /* slot 7928 */
    freeReplyObject(r);
}

static void test_a_shard_without_an_online_master_is_unserved(void **state)
{
    (void)state;
    static rcluster_map m;
    redisReply *r = parse(
        "*2\r\n"
        "*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:99\r\n$5\r\nnodes\r\n*2\r\n"
        "*10\r\n$2\r\nid\r\n$1\r\na\r\n$4\r\nport\r\n:7000\r\n$2\r\nip\r\n$8\r\n10.0.0.1\r\n"
        "$4\r\nrole\r\n$6\r\nmaster\r\n$6\r\nhealth\r\n$4\r\nfail\r\n"
        "*10\r\n$2\r\nid\r\n$1\r\nb\r\n$4\r\nport\r\n:7001\r\n$2\r\nip\r\n$8\r\n10.0.0.2\r\n"
        "$4\r\nrole\r\n$7\r\nreplica\r\n$6\r\nhealth\r\n$6\r\nonline\r\n"
        "*4\r\n$5\r\nslots\r\n*4\r\n:100\r\n:199\r\n:300\r\n:300\r\n$5\r\nnodes\r\n*1\r\n"
        "*12\r\n$2\r\nid\r\n$1\r\nc\r\n$4\r\nport\r\n:7002\r\n$2\r\nip\r\n$8\r\n10.0.0.3\r\n"
        "$8\r\nendpoint\r\n$1\r\n?\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$6\r\nhealth\r\n$6\r\nonline\r\n");
    assert_int_equal(rcluster_from_shards(&m, r), 101);
    assert_null(rcluster_master_of(&m, 0));   /* its master failed: a replica does not serve */
    assert_null(rcluster_master_of(&m, 200)); /* no shard names it */
    const rcluster_master *mm = rcluster_master_of(&m, 300);
    assert_non_null(mm);
    assert_string_equal(mm->host, "10.0.0.3"); /* endpoint "?": the ip */
    assert_int_equal(mm->port, 7002);
    freeReplyObject(r);
}

static void test_other_replies_are_refused(void **state)
{
    (void)state;
    static rcluster_map m;
    const char *bad[] = {
        "-ERR unknown subcommand 'SHARDS'\r\n",
        ":1\r\n",
        "*1\r\n*2\r\n$5\r\nslots\r\n*1\r\n:5\r\n",                  /* an odd slot list */
        "*1\r\n*2\r\n$5\r\nslots\r\n*2\r\n:9\r\n:5\r\n",            /* end before start */
        "*1\r\n*2\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16384\r\n",        /* past the last slot */
        "*1\r\n*2\r\n$5\r\nnodes\r\n*0\r\n",                        /* no slots at all */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        redisReply *r = parse(bad[i]);
        assert_int_equal(rcluster_from_shards(&m, r), -1);
        assert_int_equal(m.nmasters, 0);
        assert_null(rcluster_master_of(&m, 5));
        freeReplyObject(r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_masters),
        cmocka_unit_test(test_a_shard_without_an_online_master_is_unserved),
        cmocka_unit_test(test_other_replies_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
