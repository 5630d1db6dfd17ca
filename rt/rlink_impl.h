/* rlink's insides, shared by rlink.c (options, shards, the slot map, commands) and
 * rlink_sub.c (subscriptions and the subscriber connections). Nothing outside rt/rlink*.c
 * includes this; they include rlink.h first. */
#ifndef RLINK_IMPL_H
#define RLINK_IMPL_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include "cluster.h"
#include "rcluster.h"
#include "rconn.h"
#include "ws_list.h"
#include "ws_table.h"

#define RLINK_SHARDS_MAX RCLUSTER_MASTERS_MAX

/* One Redis server: with --redis the only one, with --redis-cluster a master of the slot map
 * (or a seed, which only answers CLUSTER SHARDS until the map says what it serves). Two
 * connections: commands (hiredis async) and subscriptions (an rconn), each AUTHed first and
 * reconnected with backoff. */
typedef struct rshard {
    rlink *l;
    char host[256];
    int port; /* 0: a unix socket at host */
    bool in_map;          /* serves slots in the current map (always, without a cluster) */
    redisAsyncContext *cmd;
    bool cmd_up, loading; /* the command connection is up once the scripts are loaded */
    int loaded;
    rconn *sub;
    bool sub_open, sub_up; /* connected; AUTHed (its first answer came) */
    bool was_up;           /* both were up: a later up is a return */
    ws_list sent;          /* sub_sent: what the subscriber connection awaits, oldest first */
    double sub_seen, probe_sent;
    ev_timer retry;
    double backoff;
} rshard;

/* A subscription: rlink_listen's (fn set, for the link's life) or rlink_subscribe's (fn
 * NULL: hooks.message), in rlink.subs by its full name. */
typedef struct rsub {
    tab_entry e;
    rshard *on;     /* the shard it was sent to (NULL: waiting for one) */
    bool confirmed; /* Redis answered it on `on` (confirmed it, or refused it for good) */
    rlink_raw_fn fn;
    void *ctx;
    uint16_t slot;
    uint16_t len;
    char name[];
} rsub;

struct rlink {
    struct ev_loop *loop;
    bool cluster;
    char *user, *password, *prefix;
    char *scripts[RLINK_SCRIPTS_MAX];
    char sha[RLINK_SCRIPTS_MAX][2 * SHA_DIGEST_LENGTH + 1];
    int nscripts;
    rshard *shards[RLINK_SHARDS_MAX];
    int nshards;
    rcluster_map *map; /* NULL without a cluster; nmasters 0 until first read */
    uint16_t route[CLUSTER_SLOTS]; /* slot -> index in shards, or RLINK_NOWHERE */
    bool map_known, refreshing, stale; /* stale: a read is due as soon as the rate allows */
    double refreshed;  /* when the last read was sent */
    ws_list again;     /* cmd_req waiting to be sent again (TRYAGAIN) */
    ev_timer again_timer;
    ev_timer tick;     /* probes and due map reads */
    table subs;
    rlink_hooks hooks;
    void *ctx;
    rlink_stats st;
};

#define RLINK_NOWHERE 0xffff

/* rlink.c */
rshard *rlink_shard_of(rlink *l, uint16_t slot); /* NULL: no master serves it (yet) */
void rlink_map_stale(rlink *l);                  /* the map is wrong: read it again, rate-limited */
void rlink_shard_lost(rshard *s);                /* a connection of s is gone: retry with backoff */
void rlink_update_up(rlink *l, rshard *s);       /* s's state changed: recompute l's */
const char *rlink_where(const rshard *s);        /* "host:port", for logs */

/* rlink_sub.c */
void rsub_connect(rshard *s);        /* opens s's subscriber connection if it has none */
void rsub_down(rshard *s);           /* s's subscriber connection is gone */
void rsub_place_all(rlink *l);       /* sends every subscription not on its owner to it */
void rsub_drop_shard(rshard *s);     /* s leaves: its subscriptions wait for a new owner */
void rsub_probe(rlink *l, double now); /* probes silent subscriber connections */
void rsub_free_all(rlink *l);

#endif
