/* presence: a worker's side of wsrouter (docs/cluster.md). Joins and leaves of its clients go
 * to the router shard that owns each channel, batched for up to 10 ms; a heartbeat goes
 * to every shard; a RESYNC, and every reconnect to Redis, is answered with a snapshot that
 * replaces what the router knew of this node. Presence queries and direct messages to clients
 * on other nodes wait here for their answers, each at most --router-timeout. */
#ifndef PRESENCE_H
#define PRESENCE_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>

#include "bus.h"
#include "cluster.pb-c.h"
#include "wbuf.h"
#include "ws_http.h"

typedef struct presence presence;

/* What presence needs to know of its worker. */
typedef struct presence_cfg {
    struct ev_loop *loop;
    const char *node_id;   /* this worker's, at most CLUSTER_NODE_ID_MAX bytes; not copied */
    uint32_t shards;       /* --router-shards (0: no router) */
    double heartbeat;      /* --heartbeat, seconds */
    double router_timeout; /* --router-timeout, seconds */
} presence_cfg;

/* One member of this worker, for a snapshot: client id, user id ("" if anonymous), channel. */
typedef void (*presence_member_fn)(void *arg, const char *client, const char *user, ws_span ch);

/* What presence asks of its worker, each with the ctx given to presence_new. */
typedef struct presence_hooks {
    /* Calls emit(arg, ...) for every channel every client of the worker subscribes. */
    void (*each_member)(void *ctx, presence_member_fn emit, void *arg);
    /* Delivers a direct message {"op":"msg","from":..,"data":..} to the client with this
     * local number; returns NULL when queued, else the err code ("not_found", "busy"). */
    const char *(*direct)(void *ctx, uint64_t local, const char *from, ws_span data);
    /* A join/leave event frame for the event subscribers of ch (the callee takes its own
     * reference if it keeps the frame). */
    void (*event)(void *ctx, ws_span ch, wbuf *frame);
} presence_hooks;

/* An answer arrived: error is NULL on success, else an err code for the client ("not_found",
 * "unavailable"). reply is the router's PRESENCE_REPLY for a query (NULL otherwise), valid only
 * during the call. */
typedef void (*presence_done_fn)(void *arg, const char *error, const Wsfan__Envelope *reply);

typedef struct presence_stats {
    uint64_t events_sent;   /* joins and leaves reported to routers */
    uint64_t events_lost;   /* reported while Redis was down (the next snapshot repairs them) */
    uint64_t unrouted;      /* envelopes no router shard was subscribed to receive */
    uint64_t events_announced; /* joins and leaves no router heard, announced by the node */
    uint64_t snapshots;     /* snapshots sent */
    uint64_t queries, directs_in, directs_out, timeouts;
    uint64_t event_frames;  /* join/leave frames framed for event subscribers */
    uint64_t malformed;     /* envelopes on the node's channels that made no sense */
} presence_stats;

/* Starts presence on bus b (which it keeps using; the caller owns it): listens on
 * <prefix>node:<node id> and, with router shards, <prefix>nodes, and heartbeats every
 * cfg->heartbeat. NULL when out of memory. */
presence *presence_new(const presence_cfg *cfg, bus *b, const presence_hooks *hooks, void *ctx);

/* Client `client` (of user `user`) joined or left channel ch on this worker. */
void presence_member(presence *p, const char *client, const char *user, ws_span ch, bool joined);

/* Sends the joins and leaves waiting now; a timer does it 10 ms after the first of them. */
void presence_flush(presence *p);

/* Answers presence and direct messages that waited past --router-timeout with "unavailable". */
void presence_tick(presence *p);

/* Asks the router shard that owns ch who is on it. done is called exactly once, later, unless
 * this returns -1 (no router can be asked: Redis down or too many questions in flight). */
int presence_query(presence *p, ws_span ch, bool count_only, presence_done_fn done, void *arg);

/* Sends data (valid JSON) from client `from` to client `to` on another node. done is called
 * exactly once, later, unless this returns -1 (as presence_query). */
int presence_send(presence *p, const char *from, ws_span to, ws_span data, presence_done_fn done,
                  void *arg);

const presence_stats *presence_get_stats(const presence *p);

#endif
