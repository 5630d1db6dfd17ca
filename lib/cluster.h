/* cluster: the names and ids the cluster agrees on, in one place (docs/cluster.md). Redis
 * names are a configured prefix (at most CLUSTER_PREFIX_MAX bytes) and one of the suffixes
 * below; node ids, client ids and user ids have one limit each. Pure: no I/O, no allocation. */
#ifndef CLUSTER_H
#define CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ws_http.h"

#define CLUSTER_PREFIX_MAX 64      /* --redis-prefix */
#define CLUSTER_NODE_PREFIX_MAX 64 /* --node-id */
/* A node id: "<prefix>.w<worker>.<6 hex>" (worker < 1000). */
#define CLUSTER_NODE_ID_MAX (CLUSTER_NODE_PREFIX_MAX + 14)
/* A client id: "<node id>.<16 hex>", 64 random bits naming the client on its node. */
#define CLUSTER_CLIENT_ID_MAX (CLUSTER_NODE_ID_MAX + 17)
/* A user id anywhere in the cluster (a token's sub claim, what routers store). */
#define CLUSTER_USER_MAX 128
/* The longest Redis name a prefix and a suffix make: a channel's, whose suffix is longest. */
#define CLUSTER_NAME_MAX (CLUSTER_PREFIX_MAX + 8 + 200) /* "meta:{" 200 "}" */

/* Redis name kinds (after the prefix). A channel's names are "<kind>{<channel>}": the hash tag
 * puts all of them on one Redis Cluster slot, so one script can touch them together. */
#define CLUSTER_CHANNEL "ch:"  /* pub/sub: the channel's messages (and its join/leave events) */
#define CLUSTER_META "meta:"   /* hash: seq (the last one published) and epoch */
#define CLUSTER_HIST "hist:"   /* stream: the last messages, entry id "<seq>-0" */
#define CLUSTER_NODES "nodes"  /* RESYNC broadcasts to every node with router shards */
/* An epoch: a channel's history era, "<hex seconds>.<hex microseconds>" of Redis's clock when
 * the era began (or the node's start, without Redis). */
#define CLUSTER_EPOCH_MAX 32

/* Redis Cluster's hash slots, and the slot of a key or channel name (its hash tag's, when it
 * has one: what lies between its first '{' and the next '}', if that is not empty). */
#define CLUSTER_SLOTS 16384
uint16_t cluster_slot(const char *key, size_t n);

/* True if p may prefix Redis names: 0..CLUSTER_PREFIX_MAX bytes of printable ASCII, no space. */
bool cluster_prefix_valid(const char *p);

/* "<kind>{<channel>}" into out (at least CLUSTER_NAME_MAX + 1 bytes); its length, 0 if it
 * does not fit. kind is one of CLUSTER_CHANNEL, CLUSTER_META, CLUSTER_HIST. */
size_t cluster_channel_name(char *out, size_t cap, const char *kind, ws_span ch);

/* "router:<shard>" into out (at least 24 bytes); returns its length. */
size_t cluster_router_channel(char *out, size_t cap, uint32_t shard);

/* "node:<node id>" into out (at least CLUSTER_NODE_ID_MAX + 6 bytes); returns its length, 0 if
 * it does not fit. */
size_t cluster_node_channel(char *out, size_t cap, ws_span node_id);

/* "<node id>.<local as hex>" into out (at least CLUSTER_CLIENT_ID_MAX + 1); returns its length,
 * 0 if it does not fit. */
size_t cluster_client_id(char *out, size_t cap, const char *node_id, uint64_t local);

/* Splits a client id into its node id and local number; false if it is not one (the node id
 * must be a valid channel-style name, the local part 1..16 lower-case hex digits). */
bool cluster_client_split(ws_span id, ws_span *node, uint64_t *local);

#endif
