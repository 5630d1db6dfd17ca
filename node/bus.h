/* bus: the channel semantics of a worker's Redis link (rt/rlink): a channel is subscribed
 * while it has local subscribers, a publish is one EVALSHA of a script that INCRs the
 * channel's seq and PUBLISHes the Envelope with that seq appended (so every node sees every
 * channel's messages in one order with one numbering), a client's subscribe is acked once
 * Redis confirmed it, and what arrives is checked before it is delivered. */
#ifndef BUS_H
#define BUS_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "cluster.h"
#include "cluster.pb-c.h"
#include "rlink.h"
#include "ws_http.h"

typedef struct bus bus;

/* A channel message arrived from Redis (already checked: valid name, valid JSON data);
 * sent_us is the publisher's wall clock at publish (0 if unknown). */
typedef void (*bus_message_fn)(void *ctx, ws_span ch, uint64_t seq, ws_span epoch, ws_span data,
                               uint64_t sent_us);

/* The subscription of ch was sent again (its Redis connection came back, or its slot moved
 * to another master of a cluster): what was published meanwhile was not heard. */
typedef void (*bus_resubscribe_fn)(void *ctx, ws_span ch);

/* A publish finished: seq > 0, or 0 when Redis was unavailable or refused it. */
typedef void (*bus_published_fn)(void *arg, uint64_t seq);

typedef struct bus_stats {
    uint64_t reconnects, silent, published, publish_failures, received, malformed;
    uint64_t redirects, moved, refreshes; /* a Redis Cluster's (rlink_stats) */
    uint32_t servers, servers_up;
    uint64_t pending; /* publishes sent, not yet answered */
    bool up;
} bus_stats;

/* What Redis keeps of every channel: the last `size` messages (0: none, the seq and epoch
 * only), for `ttl` seconds after its last publish. */
typedef struct bus_history {
    uint32_t size, ttl;
} bus_history;

/* Connects to Redis as rlink_new does. Names: docs/cluster.md. Returns NULL (logged)
 * for a bad address or prefix. The link comes up asynchronously. */
bus *bus_new(struct ev_loop *loop, const rlink_opts *redis, const bus_history *history,
             const char *node_id, bus_message_fn on_message, bus_resubscribe_fn resubscribe,
             void *ctx);

/* True while the link is up (both connections, script loaded). */
bool bus_up(const bus *b);

/* The Redis link under the bus, for the raw channels presence travels on. */
rlink *bus_link(bus *b);

/* Starts or stops the Redis subscription of a channel (call on its first subscriber / after
 * its last leaves). While its server is down this only updates what is subscribed when it
 * is back (resubscribe is called then). */
void bus_subscribe(bus *b, ws_span ch);
void bus_unsubscribe(bus *b, ws_span ch);

/* After a subscribe: calls done(arg, 1) once Redis has answered the SUBSCRIBE of ch that is
 * under way, so a client acked after it misses nothing published later. Returns 1 if it will,
 * 0 if there is nothing to wait for (already confirmed, or the link is down and ch will be
 * subscribed again on reconnect): then done is never called. */
int bus_when_subscribed(bus *b, ws_span ch, bus_published_fn done, void *arg);

/* Publishes data on ch; done(arg, seq) is called exactly once, later, from the loop, unless
 * this returns -1 (Redis unavailable), in which case done is never called. */
int bus_publish(bus *b, ws_span ch, ws_span data, bus_published_fn done, void *arg);

/* A channel's position: the last seq published and its epoch ("" and 0: nothing known). */
typedef struct bus_position {
    uint64_t seq;
    char epoch[CLUSTER_EPOCH_MAX + 1];
    uint8_t epoch_len;
} bus_position;

/* One stored message (valid JSON data), valid during the callback. */
typedef struct bus_stored {
    uint64_t seq;
    ws_span data;
    void *own; /* the bus's */
} bus_stored;

/* A read answered: pos NULL when Redis could not answer, else the channel's position and the
 * messages asked for, oldest first (entries that did not check out are left out). */
typedef void (*bus_read_fn)(void *arg, const bus_position *pos, const bus_stored *msgs, size_t n);

/* Reads ch's position and, in one atomic step, its stored messages: with after (a subscriber's
 * read), those with seq > `seq` (at most count), and a channel nothing is known of begins its
 * epoch now, so the position a subscriber gets always names the epoch of what follows; without
 * (history), the last count, and nothing is written. count 0: the position only. done is
 * called exactly once, later, unless this returns -1 (Redis unavailable). */
int bus_read(bus *b, ws_span ch, bool after, uint64_t seq, uint32_t count, bus_read_fn done,
             void *arg);

/* The bus's counters, the link's (reconnects, up) included. */
const bus_stats *bus_get_stats(bus *b);

/* Optional hooks, for presence: up(ctx) each time the link is up again; events(ctx, env) for
 * an EVENTS Envelope on a subscribed channel (already checked to name that channel). */
typedef void (*bus_up_fn)(void *ctx);
typedef void (*bus_events_fn)(void *ctx, const Wsfan__Envelope *e);
void bus_on_up(bus *b, bus_up_fn up, bus_events_fn events, void *ctx);

#endif
