/* rstats: wsrouter's metrics, declared once. Each row of RSTATS is a field of rstats (counted
 * in place, or for the gauges copied from the roster when /metrics is asked) and a metric of
 * rstats_render. Rows are in the order /metrics shows them. */
#ifndef RSTATS_H
#define RSTATS_H

#include <stddef.h>
#include <stdint.h>

/* X(field, kind, name, help): one counter or gauge (kind COUNTER or GAUGE, as prom_kind). */
#define RSTATS(X) \
    /* now: the Redis link and the roster's size, set when /metrics is asked */ \
    X(up, GAUGE, "wsfan_router_up", \
      "1 while Redis is reachable and the shard's channel subscribed.") \
    X(nodes, GAUGE, "wsfan_router_nodes", "Nodes this shard knows.") \
    X(clients, GAUGE, "wsfan_router_clients", \
      "Clients on at least one of this shard's channels.") \
    X(users, GAUGE, "wsfan_router_users", "Distinct user ids among those clients.") \
    X(channels, GAUGE, "wsfan_router_channels", "Channels with members.") \
    X(members, GAUGE, "wsfan_router_members", "Channel memberships.") \
    /* counted by the router as it goes */ \
    X(envelopes, COUNTER, "wsfan_router_envelopes_total", "Envelopes received.") \
    X(malformed, COUNTER, "wsfan_router_malformed_total", \
      "Envelopes or members dropped as malformed.") \
    X(misrouted, COUNTER, "wsfan_router_misrouted_total", \
      "Members or queries for channels of another shard.") \
    X(flood_dropped, COUNTER, "wsfan_router_flood_dropped_total", \
      "Envelopes dropped over --node-rate.") \
    X(queries, COUNTER, "wsfan_router_queries_total", "Presence queries answered.") \
    X(count_only_answers, COUNTER, "wsfan_router_count_only_total", \
      "Presence queries answered with a count only.") \
    X(incomplete, COUNTER, "wsfan_router_rebuilding_total", \
      "Presence queries answered unavailable while snapshots were still coming in after a " \
      "restart or a Redis outage.") \
    X(snapshots, COUNTER, "wsfan_router_snapshots_total", "Complete node snapshots received.") \
    X(resyncs, COUNTER, "wsfan_router_resyncs_total", \
      "Broadcasts asking every node for a snapshot.") \
    X(events, COUNTER, "wsfan_router_events_total", \
      "Joins and leaves queued for subscribers.") /* the roster's */ \
    X(events_capped, COUNTER, "wsfan_router_events_capped_total", \
      "Joins and leaves only counted, beyond --event-max.") /* the roster's */ \
    X(event_envelopes, COUNTER, "wsfan_router_event_batches_total", "Event batches published.") \
    X(events_lost, COUNTER, "wsfan_router_events_lost_total", \
      "Event batches not published (Redis down).") \
    X(nodes_expired, COUNTER, "wsfan_router_nodes_expired_total", \
      "Nodes dropped after --node-timeout.") /* the roster's */

#define RSTATS_FIELD_(field, kind, name, help) uint64_t field;

typedef struct rstats {
    RSTATS(RSTATS_FIELD_)
} rstats;

/* Writes the exposition of s into out[0..cap); returns its length, 0 if it does not fit. */
size_t rstats_render(const rstats *s, char *out, size_t cap);

#endif
