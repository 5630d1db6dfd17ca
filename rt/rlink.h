/* rlink: a process's link to Redis on its libev loop, with no product rules: one Redis
 * (--redis), or a Redis Cluster (--redis-cluster) whose masters each get the same links and
 * are chosen per name by hash slot. Per server two connections: one subscribes (an rconn), one
 * sends commands (hiredis async). Both send AUTH first, are reconnected with exponential
 * backoff and jitter when they drop or AUTH is refused, and rlink subscribes again what it
 * was asked to, on whichever master serves it now. Optional Lua scripts are loaded on every
 * command connection (which counts as up only once they are) and run by EVALSHA; a NOSCRIPT
 * takes that connection down until they are loaded again. On a cluster: PUBLISH and SUBSCRIBE
 * become SPUBLISH and SSUBSCRIBE; MOVED, ASK, TRYAGAIN and CLUSTERDOWN are followed; the slot
 * map (CLUSTER SHARDS) is read again when it proved wrong, at most every RLINK_REFRESH_MIN s.
 * Every Redis name is the configured prefix followed by the name the caller gives. */
#ifndef RLINK_H
#define RLINK_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h"

typedef struct rlink rlink;
struct redisReply;

#define RLINK_SCRIPTS_MAX 4

/* A program's Redis link, as its command line gives it. */
typedef struct rlink_opts {
    const char *addr;     /* --redis: "host:port" (default port 6379) or a unix socket path */
    const char *cluster;  /* --redis-cluster: seeds "host:port[,host:port...]" (wins over addr) */
    const char *user;     /* --redis-user: an ACL user (NULL: none) */
    const char *password; /* --redis-password (NULL: none) */
    const char *prefix;   /* --redis-prefix: before every Redis name */
} rlink_opts;

/* The five --redis flags as rows of a cli table whose config struct holds an rlink_opts at
 * offset off; the address's default and help are the program's own. */
#define RLINK_CLI_DEFS(off, addr_def, addr_help)                                              \
    {"redis", CLI_STRING, (off) + offsetof(rlink_opts, addr), "HOST:PORT", addr_def, addr_help}, \
    {"redis-cluster", CLI_STRING, (off) + offsetof(rlink_opts, cluster), "HOST:PORT,...", NULL,  \
     "a Redis Cluster instead of --redis: some of its nodes (seeds), the slot map is read "    \
     "from them; channels use sharded pub/sub"},                                               \
    {"redis-user", CLI_STRING, (off) + offsetof(rlink_opts, user), "USER", NULL,              \
     "Redis ACL user (AUTH user password; Redis 6+)"},                                       \
    {"redis-password", CLI_STRING, (off) + offsetof(rlink_opts, password), "PASSWORD", NULL,  \
     "Redis AUTH password"},                                                                  \
    {"redis-prefix", CLI_STRING, (off) + offsetof(rlink_opts, prefix), "PREFIX", "wsfan:",    \
     "prefix of every Redis key and channel, so several clusters can share one Redis"}

/* 0 if o can be used, else -1 after saying why on stderr (prog: the program's name). The
 * prefix must satisfy cluster_prefix_valid: names are built whole, never cut short; on a
 * cluster it may not hold '{' or '}', which would make it every name's hash tag. */
int rlink_opts_check(const rlink_opts *o, const char *prog);

/* True if o names a Redis (either flag). */
bool rlink_opts_enabled(const rlink_opts *o);

typedef struct rlink_hooks {
    /* Both connections are up (again), the script loaded. Optional. */
    void (*up)(void *ctx);
    /* A subscription of rlink_subscribe was sent again (its connection came back, or its
     * slot moved to another master): what was published meanwhile was not heard. name is
     * the full Redis name (prefix included), as in every hook. subscribed() follows. */
    void (*resubscribed)(void *ctx, const char *name, size_t name_len);
    /* A message on a name taken with rlink_subscribe: p[0..n) the payload. Needed if
     * rlink_subscribe is used. */
    void (*message)(void *ctx, const char *name, size_t name_len, const uint8_t *p, size_t n);
    /* A sent subscription of name is answered: Redis confirmed it (ok), or refused it, or the
     * connection was lost (!ok). Exactly one call per rlink_subscribe that returned 0 and per
     * resubscribed(). Optional. */
    void (*subscribed)(void *ctx, const char *name, size_t name_len, bool ok);
} rlink_hooks;

typedef struct rlink_stats {
    uint64_t reconnects; /* connection attempts after the first */
    uint64_t silent;     /* subscriber links dropped for silence (a probe unanswered) */
    uint64_t redirects;  /* commands sent again after MOVED, ASK or TRYAGAIN */
    uint64_t moved;      /* subscriptions sent again because their slot moved */
    uint64_t refreshes;  /* slot map reads */
    uint32_t servers, servers_up; /* Redis servers in use (cluster masters), and those up */
    bool up;             /* every server's connections up and the scripts loaded */
} rlink_stats;

/* Slot map reads: at most one per RLINK_REFRESH_MIN s, and one every RLINK_REFRESH_EVERY s. */
#define RLINK_REFRESH_MIN 0.25
#define RLINK_REFRESH_EVERY 5.0

/* Connects to o->addr, or to the seeds of o->cluster and then every master. AUTH: "AUTH user password" with a user (an empty password if none: a
 * nopass ACL user), "AUTH password" with only a password, none with neither. o's strings and
 * the scripts (NULL-terminated, at most RLINK_SCRIPTS_MAX; NULL for none) are copied. Returns NULL (logged) for a bad address or prefix, or out
 * of memory; the connections come up asynchronously. */
rlink *rlink_new(struct ev_loop *loop, const rlink_opts *o, const char *const *scripts,
                 const rlink_hooks *hooks, void *ctx);

bool rlink_up(const rlink *l);
/* True if the server for <prefix><name> is up (on a cluster: its slot's master). */
bool rlink_reaches(const rlink *l, const char *name);
const rlink_stats *rlink_get_stats(const rlink *l);
/* The configured prefix (what rlink puts before every name). */
const char *rlink_prefix(const rlink *l);

/* Subscribes <prefix><name> for as long as the link lives, again after every reconnect; fn
 * gets each message, and (NULL, 0) each time Redis confirms the subscription. name is copied.
 * Returns 0, or -1 out of memory. */
typedef void (*rlink_raw_fn)(void *ctx, const uint8_t *p, size_t n);
int rlink_listen(rlink *l, const char *name, rlink_raw_fn fn, void *ctx);

/* (S)SUBSCRIBE / (S)UNSUBSCRIBE <prefix><name>, kept until unsubscribed: messages go to
 * hooks.message, the answer to hooks.subscribed. Returns 0 if sent, 1 if its server's
 * connection is down (sent with hooks.resubscribed when it is back), -1 out of memory. */
int rlink_subscribe(rlink *l, const char *name, size_t len);
void rlink_unsubscribe(rlink *l, const char *name, size_t len);

/* An integer answer: err is NULL and v the integer, or err says why there is none (Redis's
 * error text, or "no answer" when the connection went away). */
typedef void (*rlink_int_fn)(void *arg, long long v, const char *err);

/* (S)PUBLISH p[0..n) on <prefix><name>; done (optional) gets the number of receivers. Returns -1
 * when the command connection is down (done is then never called), else 0. */
int rlink_send(rlink *l, const char *name, const void *p, size_t n, rlink_int_fn done, void *arg);

/* Any answer: r (valid during the call) and err NULL, or r NULL and err saying why (Redis's
 * error text, or "no answer" when the connection went away). */
typedef void (*rlink_reply_fn)(void *arg, const struct redisReply *r, const char *err);

/* What EVALSHA runs: script (its index among rlink_new's), nkeys keys (at most 4; each gets
 * the prefix; on a cluster they must share a slot, keys[0]'s), nargs arguments (at most 8)
 * of lens[i] bytes (lens NULL: C strings). */
typedef struct rlink_eval_args {
    int script;
    int nkeys;
    const char *const *keys;
    int nargs;
    const char *const *args;
    const size_t *lens;
} rlink_eval_args;

/* Runs a script; done gets its integer answer (rlink_eval) or any answer (rlink_eval_reply).
 * Returns -1 when the server for keys[0] is not up or e is out of bounds (done is then never
 * called), else 0. */
int rlink_eval(rlink *l, const rlink_eval_args *e, rlink_int_fn done, void *arg);
int rlink_eval_reply(rlink *l, const rlink_eval_args *e, rlink_reply_fn done, void *arg);

/* True on a Redis Cluster (scripts then (S)PUBLISH with SPUBLISH). */
bool rlink_is_cluster(const rlink *l);

#endif
