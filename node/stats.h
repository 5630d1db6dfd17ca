/* stats: a wsnode worker's counters, declared once. Each row of STATS_METRICS is a field of
 * stats_slot (counted in place: w->st->accepted++), summed over the workers and rendered by
 * metrics.c; STATS_HISTOGRAMS likewise. Rows are in the order /metrics shows them. */
#ifndef STATS_H
#define STATS_H

#include <stdint.h>

/* X(field, kind, name, help): one counter or gauge (kind COUNTER or GAUGE, as prom_kind). */
#define STATS_METRICS(X) \
    /* connections and traffic */ \
    X(conns_open, GAUGE, "wsfan_connections", "Open client connections.") \
    X(accepted, COUNTER, "wsfan_connections_accepted_total", "Connections accepted.") \
    X(rejected, COUNTER, "wsfan_connections_rejected_total", \
      "Connections refused at --max-connections.") \
    X(handshakes_failed, COUNTER, "wsfan_handshakes_failed_total", \
      "Upgrades and HTTP requests refused.") \
    X(protocol_errors, COUNTER, "wsfan_protocol_errors_total", \
      "Connections failed for a protocol error.") \
    X(messages_in, COUNTER, "wsfan_messages_in_total", "WebSocket messages received.") \
    X(messages_out, COUNTER, "wsfan_messages_out_total", "Frames queued to clients.") \
    X(bytes_in, COUNTER, "wsfan_bytes_in_total", "Bytes read from clients.") \
    X(bytes_out, COUNTER, "wsfan_bytes_out_total", "Bytes written to clients.") \
    X(publishes, COUNTER, "wsfan_publishes_total", "Publishes accepted (WebSocket and HTTP).") \
    X(deliveries, COUNTER, "wsfan_deliveries_total", "Channel messages queued to subscribers.") \
    X(drops, COUNTER, "wsfan_drops_total", \
      "Channel messages dropped for slow or closing subscribers.") \
    X(conflated, COUNTER, "wsfan_conflated_total", \
      "Channel messages replaced by a newer one on the same channel for a slow subscriber " \
      "(--slow-policy conflate).") \
    X(slow_closes, COUNTER, "wsfan_slow_consumer_closes_total", \
      "Connections closed 1008 as slow consumers.") \
    X(timeouts, COUNTER, "wsfan_timeouts_total", \
      "Connections dropped by a handshake, idle or close timeout.") \
    /* the Redis link, copied from the bus by the tick */ \
    X(bus_up, GAUGE, "wsfan_redis_up", "Workers whose Redis links are both up.") \
    X(bus_reconnects, COUNTER, "wsfan_redis_reconnects_total", "Redis reconnection attempts.") \
    X(bus_silent, COUNTER, "wsfan_redis_silent_links_total", \
      "Redis subscriber links dropped because they went silent (a probe went unanswered).") \
    X(bus_servers, GAUGE, "wsfan_redis_servers", \
      "Redis servers the workers use: 1 each, or the masters of a Redis Cluster.") \
    X(bus_servers_up, GAUGE, "wsfan_redis_servers_up", "Of them, those whose links are up.") \
    X(bus_redirects, COUNTER, "wsfan_redis_redirects_total", \
      "Redis Cluster commands sent again after MOVED, ASK or TRYAGAIN.") \
    X(bus_moved, COUNTER, "wsfan_redis_moved_total", \
      "Channel subscriptions sent again because their slot moved to another master.") \
    X(bus_refreshes, COUNTER, "wsfan_redis_slot_map_reads_total", \
      "Reads of the Redis Cluster's slot map (CLUSTER SHARDS).") \
    X(bus_published, COUNTER, "wsfan_redis_published_total", "Publishes Redis accepted.") \
    X(bus_publish_failures, COUNTER, "wsfan_redis_publish_failures_total", \
      "Publishes Redis refused or lost, or not sent because Redis was down.") \
    X(bus_pending, GAUGE, "wsfan_redis_pending_publishes", \
      "Publishes sent to Redis, not yet answered.") \
    X(bus_received, COUNTER, "wsfan_redis_received_total", \
      "Channel messages received from Redis.") \
    X(bus_malformed, COUNTER, "wsfan_redis_malformed_total", \
      "Messages from Redis dropped as malformed.") \
    X(healed, COUNTER, "wsfan_redis_healed_total", \
      "Channel messages read back from history after the Redis subscriber link came back.") \
    X(sse_streams, COUNTER, "wsfan_sse_streams_total", "Server-Sent Events streams opened.") \
    X(polls, COUNTER, "wsfan_polls_total", "Long-poll requests answered.") \
    X(sse_open, GAUGE, "wsfan_sse_streams", \
      "Open Server-Sent Events streams (counted in wsfan_connections too).") \
    X(polls_waiting, GAUGE, "wsfan_polls_waiting", "Long-polls waiting for their answer.") \
    X(recovered_memory, COUNTER, "wsfan_recoveries_from_memory_total", \
      "Subscriptions with since answered from the worker's memory, without Redis.") \
    X(recovery_reads, COUNTER, "wsfan_recovery_reads_total", \
      "Reads of a channel's history in Redis for recoveries (each shared by every recovery of " \
      "that channel it can answer).") \
    /* limits and refusals */ \
    X(auth_failures, COUNTER, "wsfan_auth_failures_total", \
      "Upgrades and POST /publish requests refused 401 for a missing, bad or expired token or " \
      "key.") \
    X(forbidden, COUNTER, "wsfan_forbidden_total", \
      "Requests refused for the token's permissions (err forbidden).") \
    X(rate_limited, COUNTER, "wsfan_rate_limited_total", \
      "Messages dropped over --max-msg-rate (err rate_limited).") \
    X(abuse_closes, COUNTER, "wsfan_abuse_closes_total", \
      "Connections closed 1008 for staying over --max-msg-rate.") \
    X(too_many_subs, COUNTER, "wsfan_too_many_subscriptions_total", \
      "Subscriptions refused over --max-subs.") \
    X(ip_refused, COUNTER, "wsfan_ip_refused_total", \
      "Connections refused 429 over --max-conns-per-ip or --ip-connect-rate.") \
    X(too_large_heads, COUNTER, "wsfan_too_large_heads_total", \
      "HTTP request heads refused 431 over --max-header-size or --max-headers.") \
    X(too_large_messages, COUNTER, "wsfan_too_large_messages_total", \
      "Connections closed 1009 for a message over --max-message.") \
    X(too_large_data, COUNTER, "wsfan_too_large_data_total", \
      "Requests refused err too_large for data over --max-data.") \
    X(bad_requests, COUNTER, "wsfan_bad_requests_total", \
      "Requests answered err bad_json, bad_op, bad_channel (a name over 200 bytes included), " \
      "bad_request or too_large.") \
    X(publish_limited, COUNTER, "wsfan_publish_limited_total", \
      "POST /publish refused 429 over --publish-rate.") \
    X(directs_refused, COUNTER, "wsfan_directs_refused_total", \
      "Direct messages dropped for a recipient over --direct-rate or not reading (err busy).") \
    X(publish_overloaded, COUNTER, "wsfan_publish_overloaded_total", \
      "Publishes refused while the node was overloaded (err overloaded, 503).") \
    X(inputs_paused, COUNTER, "wsfan_inputs_paused_total", \
      "Times a connection's requests waited until its queued output drained.") \
    X(overloaded, GAUGE, "wsfan_overloaded", \
      "Workers whose clients are behind at large: publishes are refused meanwhile.") \
    /* presence and direct messages, copied from presence by the tick */ \
    X(pres_events_sent, COUNTER, "wsfan_presence_events_sent_total", \
      "Joins and leaves reported to wsrouter.") \
    X(pres_events_lost, COUNTER, "wsfan_presence_events_lost_total", \
      "Joins and leaves not reported while Redis was down (snapshots repair them).") \
    X(pres_events_announced, COUNTER, "wsfan_presence_events_announced_total", \
      "Joins and leaves no router heard (none was running), announced to event subscribers by " \
      "the node itself.") \
    X(pres_unrouted, COUNTER, "wsfan_presence_unrouted_total", \
      "Envelopes for a router shard nobody listened to.") \
    X(pres_snapshots, COUNTER, "wsfan_presence_snapshots_total", \
      "Snapshots sent to router shards.") \
    X(pres_queries, COUNTER, "wsfan_presence_queries_total", \
      "Presence queries asked of wsrouter.") \
    X(pres_directs_in, COUNTER, "wsfan_direct_in_total", \
      "Direct messages received from other nodes.") \
    X(pres_directs_out, COUNTER, "wsfan_direct_out_total", "Direct messages sent to other nodes.") \
    X(pres_timeouts, COUNTER, "wsfan_router_timeouts_total", \
      "Presence answers and direct deliveries that did not come in --router-timeout.") \
    X(pres_event_frames, COUNTER, "wsfan_presence_event_frames_total", \
      "Join/leave frames framed for event subscribers.") \
    X(pres_malformed, COUNTER, "wsfan_presence_malformed_total", \
      "Messages on node channels dropped as malformed.") \

#define LAT_BUCKETS 14 /* publish-to-delivery latency, Prometheus buckets (seconds) */
/* The buckets' upper bounds (seconds): an initializer for a double[LAT_BUCKETS]. */
#define STATS_LAT_BOUNDS \
    {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

/* H(field, name, help, buckets, bounds): a histogram kept as field_count, field_sum_us (the sum
 * of observations in microseconds) and field_bucket[buckets] (cumulative: bucket i counts every
 * observation up to bounds[i]). */
#define STATS_HISTOGRAMS(H) \
    H(lat, "wsfan_publish_delivery_seconds", \
      "Publish (publisher's clock) to fan-out on this node.", LAT_BUCKETS, STATS_LAT_BOUNDS)

#define STATS_FIELD_(field, kind, name, help) uint64_t field;
#define STATS_HFIELDS_(f, name, help, buckets, bounds) \
    uint64_t f##_count, f##_sum_us, f##_bucket[buckets];
#define STATS_NSLOTS_(field, kind, name, help) +1
#define STATS_HNSLOTS_(f, name, help, buckets, bounds) +2 + (buckets)

/* One worker's counters: uint64_t slots and nothing else, so the slots of every worker are
 * summed alike. They live in memory the master shares with every worker, one slot per
 * worker, so whichever worker answers GET /metrics reports the whole node, and a restarted
 * worker continues its predecessor's counters. */
typedef struct stats_slot {
    STATS_METRICS(STATS_FIELD_)
    STATS_HISTOGRAMS(STATS_HFIELDS_)
} stats_slot;

/* How many uint64_t a stats_slot holds. */
enum { STATS_NSLOTS = 0 STATS_METRICS(STATS_NSLOTS_) STATS_HISTOGRAMS(STATS_HNSLOTS_) };
_Static_assert(sizeof(stats_slot) == STATS_NSLOTS * sizeof(uint64_t),
               "stats_slot must be uint64_t slots only");

#endif
