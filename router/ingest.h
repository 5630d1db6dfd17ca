/* ingest: what the router accepts from a node, checked and applied to the roster. Pure (no
 * I/O, no logging): the router logs what it reports, the fuzzer feeds it raw Envelopes. */
#ifndef INGEST_H
#define INGEST_H

#include <stdbool.h>
#include <stdint.h>

#include "cluster.pb-c.h"
#include "roster.h"

#define INGEST_MEMBERS_MAX 100000 /* members one envelope may carry */

/* NULL if e can be looked at (its origin is a node id, its member count bounded), else why
 * not. */
const char *ingest_check(const Wsfan__Envelope *e);

typedef struct ingest_result {
    uint32_t applied;   /* members joined or left */
    uint32_t malformed; /* bad channel, client or user id, or a client of another node */
    uint32_t misrouted; /* channels this shard does not own */
    const char *why;    /* the first malformed member's fault */
    const char *misrouted_channel; /* the first misrouted one (points into e) */
    bool out_of_memory;
} ingest_result;

/* Applies e's members from node n: all joins (join true), all leaves (false), or each as its
 * left flag says when e is MEMBERS; join events are queued when emit. Only channels of shard
 * `shard` of `shards` are taken. Counts go to *res (zeroed first). */
void ingest_members(roster *ro, rnode *n, const Wsfan__Envelope *e, bool join, bool emit,
                    uint32_t shard, uint32_t shards, ingest_result *res);

#endif
