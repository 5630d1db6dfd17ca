/* presence: a worker's side of wsrouter (docs/cluster.md). Joins and leaves of its clients go
 * to the router shard that owns each channel, batched for up to 10 ms; a heartbeat goes
 * to every shard; a RESYNC, and every reconnect to Redis, is answered with a snapshot that
 * replaces what the router knew of this node. Presence queries and direct messages to clients
 * on other nodes wait here for their answers, each at most --router-timeout. */
#ifndef PRESENCE_H
#define PRESENCE_H

#include <stdbool.h>
#include <stdint.h>

#include "cluster.pb-c.h"
#include "ws_http.h"

typedef struct presence presence;
struct worker;

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

/* Starts presence for worker w (which has a bus): listens on <prefix>node:<node id> and
 * <prefix>nodes, and heartbeats every cfg->heartbeat. NULL when out of memory. */
presence *presence_new(struct worker *w);

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

/* Splits a client id "<node id>.<hex>" into its node id and the worker's local number; false
 * if it is not one. */
bool presence_split_client(ws_span id, ws_span *node, uint64_t *local);

const presence_stats *presence_get_stats(const presence *p);

#endif
