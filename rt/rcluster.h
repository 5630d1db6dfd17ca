/* rcluster: a Redis Cluster's slot map as CLUSTER SHARDS gives it: which master serves each of
 * the 16384 hash slots (lib/cluster.h's cluster_slot says which slot a name is on). Parsing
 * only, no I/O: the links to the masters are the caller's. */
#ifndef RCLUSTER_H
#define RCLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "cluster.h"

struct redisReply;

#define RCLUSTER_MASTERS_MAX 128
#define RCLUSTER_NONE 0xff /* a slot no online master serves */

typedef struct rcluster_master {
    char host[256]; /* the endpoint it announces (its ip when the endpoint is unknown) */
    int port;
    char id[41];
} rcluster_master;

typedef struct rcluster_map {
    uint32_t nmasters;
    rcluster_master masters[RCLUSTER_MASTERS_MAX];
    uint8_t slot[CLUSTER_SLOTS]; /* index into masters, or RCLUSTER_NONE */
} rcluster_map;

/* Fills m from a CLUSTER SHARDS reply (Redis 7: per shard, "slots" as start/end pairs and
 * "nodes", each a list of field/value pairs). A shard's online master serves its slots;
 * slots of a shard without one, and slots no shard names, are RCLUSTER_NONE. Returns the
 * number of slots served, -1 when the reply is not one (m then serves nothing). */
int rcluster_from_shards(rcluster_map *m, const struct redisReply *r);

/* The master that serves slot, or NULL. */
const rcluster_master *rcluster_master_of(const rcluster_map *m, uint16_t slot);

#endif
