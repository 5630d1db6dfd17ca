/* hub: a worker's channels and their local subscribers, and fan-out of one shared frame to
 * all of them. No I/O: delivery goes through a callback that queues the frame. */
#ifndef HUB_H
#define HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.h"
#include "envelope.h"
#include "wbuf.h"
#include "ws_http.h"
#include "ws_list.h"
#include "ws_table.h"

typedef struct hub_channel hub_channel;

/* One subscription as the member sees it; idx is its place in the channel's array. */
typedef struct hub_sub {
    hub_channel *ch;
    uint32_t idx;
} hub_sub;

/* Embed in whatever subscribes (a connection). Zero-initialise; owns its array while non-empty. */
typedef struct hub_member {
    hub_sub *subs;
    uint32_t n, cap;
} hub_member;

/* Queues frame (the callee takes its own reference if it keeps it) for one subscriber. */
typedef void (*hub_deliver_fn)(hub_member *m, wbuf *frame, void *ctx);

/* A channel got its first local subscriber (active true) or lost its last (false). */
typedef void (*hub_active_fn)(void *ctx, ws_span name, bool active);

/* m joined (true) or left (false) channel name: presence reports it to wsrouter. */
typedef void (*hub_member_fn)(void *ctx, hub_member *m, ws_span name, bool joined);

typedef struct hub {
    table channels; /* by name, SipHash-keyed: channel names are chosen by clients */
    ws_list idle;   /* channels without subscribers, oldest first */
    size_t nidle, max_idle;
    hub_deliver_fn deliver;
    hub_active_fn on_active; /* optional: set after hub_init */
    hub_member_fn on_member; /* optional: set after hub_init */
    /* Optional: a held subscription's frames come here first (hub_hold); true when taken. */
    bool (*on_held)(hub_member *m, wbuf *frame, void *ctx);
    void *ctx;
    bool remote;        /* positions come from a bus (hub_deliver, hub_learn), not hub_publish */
    uint32_t keep;      /* messages each channel keeps in memory (its last ones); 0: none */
    char epoch_base[20]; /* without a bus: the start of every local epoch */
    uint64_t epochs;     /* without a bus: channels made so far */
} hub;

/* max_idle: channels without subscribers kept (with their seq) before the oldest is forgotten.
 * key: 16 random bytes for the channel hash, so clients cannot aim names at one bucket. */
void hub_init(hub *h, hub_deliver_fn deliver, void *ctx, size_t max_idle, const uint8_t key[16]);
/* Frees every channel; every member must have left. */
void hub_free(hub *h);

/* Subscribes m to channel name: 1 newly subscribed, 0 already was, -1 out of memory. */
int hub_subscribe(hub *h, hub_member *m, ws_span name);

/* Unsubscribes m: 1 if it was subscribed, 0 if not. */
int hub_unsubscribe(hub *h, hub_member *m, ws_span name);

/* True if m is subscribed to name. */
bool hub_is_member(const hub *h, const hub_member *m, ws_span name);

/* Removes every subscription of m and frees its array. */
void hub_leave_all(hub *h, hub_member *m);

/* Publishes data (valid JSON) on channel name: assigns the next seq, frames one msg frame (only
 * if someone subscribes) and delivers it to every subscriber. Returns the seq, 0 when out of
 * memory. A channel's seq survives while it has subscribers and, after the last leaves, while
 * it is among the max_idle most recently emptied channels. */
uint64_t hub_publish(hub *h, ws_span name, ws_span data, size_t *delivered);

/* Frames one msg with a seq and epoch assigned elsewhere (the Redis bus) and delivers it to
 * every local subscriber of name; when the epoch is not the one known, a reset frame goes to
 * them first; a seq at or before the known one in the same epoch is dropped (delivered
 * already). Returns how many it reached. */
size_t hub_deliver(hub *h, ws_span name, uint64_t seq, ws_span epoch, ws_span data);

/* The position of channel name (its epoch points into the hub: use it at once); false when
 * it is not known (no such channel, or with a bus: not followed, or not read yet). */
bool hub_position(const hub *h, ws_span name, env_pos *pos);

/* Sets the position of a followed channel read from the bus, unless one is known already
 * (what hub_deliver brought is newer than any read); true when it did. */
bool hub_learn(hub *h, ws_span name, uint64_t seq, ws_span epoch);

/* ---- the memory: each channel keeps its last h->keep messages (docs/cluster.md) ----
 * As frames: a recovery from memory queues the very frames the fan-out sent. Kept messages
 * run without a gap up to the channel's position; with a bus, only while it is followed. */

/* A kept message; the frame is the hub's (take a reference to hold it), data lies inside. */
typedef struct hub_kept {
    wbuf *frame;
    uint64_t seq;
    ws_span data;
} hub_kept;

/* A msg frame of channel name (as its fan-out frames it: it can be kept), one reference for
 * the caller; NULL when out of memory or there is no such channel. */
wbuf *hub_frame(const hub *h, ws_span name, uint64_t seq, ws_span data);

/* Fills an empty memory from a read: msgs (frames from hub_frame) must run without a gap up
 * to the channel's position; the last h->keep of them are kept. Otherwise nothing happens. */
void hub_seed(hub *h, ws_span name, const hub_kept *msgs, size_t n);

/* The seq of the oldest message name keeps; 0 when it keeps none. */
uint64_t hub_kept_first(const hub *h, ws_span name);

/* Copies the kept messages with seq > after into out, oldest first (the newest max of them
 * when there are more); returns how many. */
size_t hub_kept_after(const hub *h, ws_span name, uint64_t after, hub_kept *out, size_t max);

/* Hands one prebuilt frame (the callee takes its own reference) to every subscriber of name;
 * returns how many. */
size_t hub_send(hub *h, ws_span name, wbuf *frame);

/* Calls fn(m, ctx) for every subscriber m of name; fn must not subscribe or unsubscribe. */
void hub_each_member(const hub *h, ws_span name, void (*fn)(hub_member *m, void *ctx), void *ctx);

/* Holds (on) or releases m's subscription to name: while held, its frames go to on_held first
 * (needs on_held set). */
void hub_hold(hub *h, hub_member *m, ws_span name, bool on);

/* The identity of channel name (what wbuf.chan says of its frames), or NULL if it has none. */
const void *hub_channel_id(const hub *h, ws_span name);

/* The name of a channel a member is subscribed to (m->subs[i].ch). */
ws_span hub_channel_name(const hub_channel *c);

/* Number of subscribers of name on this hub. */
size_t hub_count(const hub *h, ws_span name);

#endif
