#include "metrics.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct out {
    char *p;
    size_t cap, len;
    int overflow;
} out;

static void put(out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len)
        o->overflow = 1;
    else
        o->len += (size_t)n;
}

/* The sum over workers of the uint64_t at byte offset off of worker_stats. */
static unsigned long long sum_at(const worker_stats *all, int n, size_t off)
{
    unsigned long long s = 0;
    for (int i = 0; i < n; i++) {
        uint64_t v;
        memcpy(&v, (const char *)&all[i] + off, sizeof v);
        s += v;
    }
    return s;
}

#define SUM(field) sum_at(all, n, offsetof(worker_stats, field))

static void metric(out *o, const char *name, const char *type, const char *help,
                   unsigned long long v)
{
    put(o, "# HELP wsfan_%s %s\n# TYPE wsfan_%s %s\nwsfan_%s %llu\n", name, help, name, type, name, v);
}

size_t metrics_render(const worker_stats *all, int n, char *buf, size_t cap)
{
    out o = {buf, cap, 0, 0};
    metric(&o, "connections", "gauge", "Open client connections.", SUM(conns_open));
    metric(&o, "connections_accepted_total", "counter", "Connections accepted.", SUM(accepted));
    metric(&o, "connections_rejected_total", "counter", "Connections refused at --max-connections.", SUM(rejected));
    metric(&o, "handshakes_failed_total", "counter", "Upgrades and HTTP requests refused.", SUM(handshakes_failed));
    metric(&o, "protocol_errors_total", "counter", "Connections failed for a protocol error.", SUM(protocol_errors));
    metric(&o, "messages_in_total", "counter", "WebSocket messages received.", SUM(messages_in));
    metric(&o, "messages_out_total", "counter", "Frames queued to clients.", SUM(messages_out));
    metric(&o, "bytes_in_total", "counter", "Bytes read from clients.", SUM(bytes_in));
    metric(&o, "bytes_out_total", "counter", "Bytes written to clients.", SUM(bytes_out));
    metric(&o, "publishes_total", "counter", "Publishes accepted (WebSocket and HTTP).", SUM(publishes));
    metric(&o, "deliveries_total", "counter", "Channel messages queued to subscribers.", SUM(deliveries));
    metric(&o, "drops_total", "counter", "Channel messages dropped for slow or closing subscribers.", SUM(drops));
    metric(&o, "slow_consumer_closes_total", "counter", "Connections closed 1008 as slow consumers.", SUM(slow_closes));
    metric(&o, "timeouts_total", "counter", "Connections dropped by a handshake, idle or close timeout.", SUM(timeouts));
    metric(&o, "redis_up", "gauge", "Workers whose Redis links are both up.", SUM(bus_up));
    metric(&o, "redis_reconnects_total", "counter", "Redis reconnection attempts.", SUM(bus_reconnects));
    metric(&o, "redis_published_total", "counter", "Publishes Redis accepted.", SUM(bus_published));
    metric(&o, "redis_publish_failures_total", "counter", "Publishes Redis refused or lost, or not sent because Redis was down.", SUM(bus_publish_failures));
    metric(&o, "redis_pending_publishes", "gauge", "Publishes sent to Redis, not yet answered.", SUM(bus_pending));
    metric(&o, "redis_received_total", "counter", "Channel messages received from Redis.", SUM(bus_received));
    metric(&o, "redis_malformed_total", "counter", "Messages from Redis dropped as malformed.", SUM(bus_malformed));
    metric(&o, "auth_failures_total", "counter", "Upgrades and POST /publish requests refused 401 for a missing, bad or expired token or key.", SUM(auth_failures));
    metric(&o, "forbidden_total", "counter", "Requests refused for the token's permissions (err forbidden).", SUM(forbidden));
    metric(&o, "rate_limited_total", "counter", "Messages dropped over --max-msg-rate (err rate_limited).", SUM(rate_limited));
    metric(&o, "abuse_closes_total", "counter", "Connections closed 1008 for staying over --max-msg-rate.", SUM(abuse_closes));
    metric(&o, "too_many_subscriptions_total", "counter", "Subscriptions refused over --max-subs.", SUM(too_many_subs));
    metric(&o, "ip_refused_total", "counter", "Connections refused 429 over --max-conns-per-ip or --ip-connect-rate.", SUM(ip_refused));
    metric(&o, "too_large_heads_total", "counter", "HTTP request heads refused 431 over --max-header-size or --max-headers.", SUM(too_large_heads));
    metric(&o, "too_large_messages_total", "counter", "Connections closed 1009 for a message over --max-message.", SUM(too_large_messages));
    metric(&o, "too_large_data_total", "counter", "Requests refused err too_large for data over --max-data.", SUM(too_large_data));
    metric(&o, "bad_requests_total", "counter", "Requests answered err bad_json, bad_op, bad_channel (a name over 200 bytes included), bad_request or too_large.", SUM(bad_requests));
    metric(&o, "publish_limited_total", "counter", "POST /publish refused 429 over --publish-rate.", SUM(publish_limited));
    metric(&o, "directs_refused_total", "counter", "Direct messages dropped for a recipient over --direct-rate or not reading (err busy).", SUM(directs_refused));
    metric(&o, "publish_overloaded_total", "counter", "Publishes refused while the node was overloaded (err overloaded, 503).", SUM(publish_overloaded));
    metric(&o, "inputs_paused_total", "counter", "Times a connection's requests waited until its queued output drained.", SUM(inputs_paused));
    metric(&o, "overloaded", "gauge", "Workers whose clients are behind at large: publishes are refused meanwhile.", SUM(overloaded));
    metric(&o, "presence_events_sent_total", "counter", "Joins and leaves reported to wsrouter.", SUM(pres_events_sent));
    metric(&o, "presence_events_lost_total", "counter", "Joins and leaves not reported while Redis was down (snapshots repair them).", SUM(pres_events_lost));
    metric(&o, "presence_events_announced_total", "counter", "Joins and leaves no router heard (none was running), announced to event subscribers by the node itself.", SUM(pres_events_announced));
    metric(&o, "presence_unrouted_total", "counter", "Envelopes for a router shard nobody listened to.", SUM(pres_unrouted));
    metric(&o, "presence_snapshots_total", "counter", "Snapshots sent to router shards.", SUM(pres_snapshots));
    metric(&o, "presence_queries_total", "counter", "Presence queries asked of wsrouter.", SUM(pres_queries));
    metric(&o, "direct_in_total", "counter", "Direct messages received from other nodes.", SUM(pres_directs_in));
    metric(&o, "direct_out_total", "counter", "Direct messages sent to other nodes.", SUM(pres_directs_out));
    metric(&o, "router_timeouts_total", "counter", "Presence answers and direct deliveries that did not come in --router-timeout.", SUM(pres_timeouts));
    metric(&o, "presence_event_frames_total", "counter", "Join/leave frames framed for event subscribers.", SUM(pres_event_frames));
    metric(&o, "presence_malformed_total", "counter", "Messages on node channels dropped as malformed.", SUM(pres_malformed));
    put(&o, "# HELP wsfan_publish_delivery_seconds Publish (publisher's clock) to fan-out on this node.\n"
            "# TYPE wsfan_publish_delivery_seconds histogram\n");
    const double *bounds = worker_lat_bounds();
    for (int b = 0; b < LAT_BUCKETS; b++)
        put(&o, "wsfan_publish_delivery_seconds_bucket{le=\"%g\"} %llu\n", bounds[b], SUM(lat_bucket[b]));
    put(&o, "wsfan_publish_delivery_seconds_bucket{le=\"+Inf\"} %llu\n", SUM(lat_count));
    put(&o, "wsfan_publish_delivery_seconds_sum %.6f\n", (double)SUM(lat_sum_us) / 1e6);
    put(&o, "wsfan_publish_delivery_seconds_count %llu\n", SUM(lat_count));
    put(&o, "# HELP wsfan_workers Worker processes.\n# TYPE wsfan_workers gauge\nwsfan_workers %d\n", n);
    return o.overflow ? 0 : o.len;
}
