/* bus: a worker's two Redis links (hiredis async on the worker's libev loop): one SUBSCRIBEs
 * the channels that have local subscribers, one publishes. A publish is one EVALSHA of a script
 * that INCRs the channel's seq and PUBLISHes the Envelope with that seq appended, so every
 * node sees every channel's messages in one order with one numbering. Links that drop are
 * reconnected with backoff and jitter, and every active channel is subscribed again. */
#ifndef BUS_H
#define BUS_H

#include <ev.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdint.h>

#include "cluster.pb-c.h"
#include "ws_http.h"

typedef struct bus bus;

/* Longest --redis-prefix: every Redis name is the prefix, a short kind ("seq:", "ch:") and a
 * channel or node id, and each is built whole, never cut short. */
#define BUS_PREFIX_MAX 64

/* True if p may prefix Redis names: 0-BUS_PREFIX_MAX bytes of printable ASCII, no space. */
bool bus_prefix_valid(const char *p);

/* A uniform number in [0, 1) from the OS's randomness (OpenSSL's DRBG), for jitter: processes
 * forked from one master must not retry in step, as any seed they share would make them. */
static inline double bus_random_unit(void)
{
    uint32_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
        r = (uint32_t)(ev_time() * 1e9); /* the DRBG failed: fall back to the clock */
    return r / 4294967296.0;
}

/* A channel message arrived from Redis (already checked: valid name, valid JSON data);
 * sent_us is the publisher's wall clock at publish (0 if unknown). */
typedef void (*bus_message_fn)(void *ctx, ws_span ch, uint64_t seq, ws_span data, uint64_t sent_us);

/* The subscription link (re)connected: call bus_subscribe for every channel with local
 * subscribers. */
typedef void (*bus_resubscribe_fn)(void *ctx);

/* A publish finished: seq > 0, or 0 when Redis was unavailable or refused it. */
typedef void (*bus_published_fn)(void *arg, uint64_t seq);

typedef struct bus_stats {
    uint64_t reconnects, published, publish_failures, received, malformed;
    uint64_t pending; /* publishes sent, not yet answered */
    bool up;
} bus_stats;

/* Connects to addr ("host:port" or a unix socket path starting with '/'), on loop. Each link
 * first sends AUTH: "AUTH user password" with a user (a Redis 6+ ACL user; an empty password
 * if none is given, which only a nopass user accepts), "AUTH password" with only a password,
 * nothing with neither. Channels are named <prefix>ch:<name>, seq keys <prefix>seq:<name>.
 * Returns NULL (logged) for a bad address. The links come up asynchronously. */
bus *bus_new(struct ev_loop *loop, const char *addr, const char *user, const char *password,
             const char *prefix, const char *node_id, bus_message_fn on_message,
             bus_resubscribe_fn resubscribe, void *ctx);

/* True while both links are connected. */
bool bus_up(const bus *b);

/* Starts or stops the Redis subscription of a channel (call on its first subscriber / after
 * its last leaves). While the link is down this only updates what is resubscribed later. */
void bus_subscribe(bus *b, ws_span ch);
void bus_unsubscribe(bus *b, ws_span ch);

/* After a subscribe: calls done(arg, 1) once Redis has confirmed the SUBSCRIBE of ch that is
 * under way, so a client acked after it misses nothing published later. Returns 1 if it will,
 * 0 if there is nothing to wait for (already confirmed, or the link is down and ch will be
 * subscribed again on reconnect): then done is never called. */
int bus_when_subscribed(bus *b, ws_span ch, bus_published_fn done, void *arg);

/* Publishes data on ch; done(arg, seq) is called exactly once, later, from the loop — unless
 * this returns -1 (Redis unavailable), in which case done is never called. */
int bus_publish(bus *b, ws_span ch, ws_span data, bus_published_fn done, void *arg);

const bus_stats *bus_get_stats(const bus *b);

/* ---- raw Redis channels: what wsrouter and presence travel on ---- */

/* A message on a channel taken with bus_listen: p[0..n) is the raw payload. Called with
 * p == NULL when Redis has confirmed the subscription (again after every reconnect). */
typedef void (*bus_raw_fn)(void *ctx, const uint8_t *p, size_t n);

/* Subscribes <prefix><name> for as long as the bus lives, again after every reconnect. The
 * bus copies name. Returns 0, or -1 out of memory. */
int bus_listen(bus *b, const char *name, bus_raw_fn fn, void *ctx);

/* Publishes p[0..n) on <prefix><name>. done (optional) gets how many subscribers Redis
 * delivered it to, or -1 if Redis refused it. Returns -1 when the bus is down (done is then
 * never called), else 0. */
typedef void (*bus_sent_fn)(void *arg, long long receivers);
int bus_send(bus *b, const char *name, const void *p, size_t n, bus_sent_fn done, void *arg);

/* Optional hooks: up(ctx) each time both links are up again; events(ctx, env) for an EVENTS
 * Envelope on a subscribed channel (already checked to name that channel). */
typedef void (*bus_up_fn)(void *ctx);
typedef void (*bus_events_fn)(void *ctx, const Wsfan__Envelope *e);
void bus_on_up(bus *b, bus_up_fn up, bus_events_fn events);

#endif
