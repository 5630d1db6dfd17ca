/* roster: what one wsrouter shard knows: channel -> members, node -> clients, client -> node,
 * user -> clients, and the join/leave events waiting to go out, batched per channel and capped.
 * Pure: no I/O; time comes in as arguments, events go out through a callback. Strings given to
 * it are copied. */
#ifndef ROSTER_H
#define ROSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct roster roster;
typedef struct rnode rnode;

/* A node as the router sees it. Read-only outside roster.c, but for the fields marked. */
struct rnode {
    const char *id;
    double last_seen;
    double timeout;      /* silence after which the node is dropped; set by the caller */
    uint64_t snap_id;    /* the snapshot being received or last received */
    uint32_t gen;        /* members not refreshed by snapshot snap_id have an older gen */
    bool synced;         /* a complete snapshot has arrived since the node was created */
    double resync_asked; /* caller's: when a RESYNC was last sent to it */
    double flood_tat;    /* caller's: --node-rate, as GCRA (bursts of a second's worth) */
    bool flooded;        /* caller's: envelopes were dropped; ask for a snapshot */
    double last_drop;    /* caller's: when the last one was dropped */
    double snap_began;   /* caller's: when the snapshot being received began */
    uint64_t answered;   /* caller's: the broadcast RESYNC its last whole snapshot answered */
    size_t nclients;
};

/* One join or leave as it goes out. */
typedef struct roster_event {
    char *client, *user;
    bool left;
} roster_event;

/* A channel's batch: up to event_max events in order, and the counts of those beyond. */
typedef void (*roster_events_fn)(void *ctx, const char *channel, const roster_event *ev, size_t n,
                                 uint32_t more_joins, uint32_t more_leaves);

/* A member as a query sees it. */
typedef void (*roster_member_fn)(void *ctx, const char *client, const char *user, const char *node);

typedef struct roster_stats {
    uint64_t nodes, clients, users, channels, members; /* now */
    uint64_t events, events_capped;                    /* queued, and counted beyond the cap */
    uint64_t nodes_expired;
} roster_stats;

/* A roster hashing with SipHash key (16 random bytes); event_max events per channel and
 * batch are listed, the rest counted. NULL when out of memory. */
roster *roster_new(const uint8_t key[16], size_t event_max);
void roster_free(roster *r);

/* The node called id, created (with *created set) if unknown; last_seen becomes now. NULL when
 * out of memory. */
rnode *roster_node(roster *r, const char *id, double now, bool *created);

/* Client (of user) joined channel on node n. Returns 1 if new, 0 if it was a member already,
 * -1 if the client id is not "<n's id>.<hex>" or belongs to another node, -2 out of memory.
 * A new member queues a join event when emit. */
int roster_join(roster *r, rnode *n, const char *client, const char *user, const char *channel,
                bool emit);

/* Client left channel on node n: 1 if it was a member, 0 if not, -1 as roster_join. */
int roster_leave(roster *r, rnode *n, const char *client, const char *channel, bool emit);

/* A snapshot chunk of node n begins: a new snap_id starts a new generation, and the joins that
 * follow (roster_join) refresh members into it. */
void roster_snapshot_begin(roster *r, rnode *n, uint64_t snap_id);

/* The last chunk came: members of n the snapshot did not name are removed (leave events when
 * emit). Returns how many. */
size_t roster_snapshot_end(roster *r, rnode *n, bool emit);

/* Removes node n and all its members, queueing their leave events when emit. */
void roster_drop_node(roster *r, rnode *n, bool emit);

/* Called with each node roster_expire drops, just before it goes. */
typedef void (*roster_expired_fn)(void *ctx, const rnode *n, double now);

/* Drops every node silent for longer than its timeout at now (last_seen + timeout < now),
 * with its members (leave events queued), telling fn (if not NULL) first. Returns how many;
 * roster_stats counts them in nodes_expired. */
size_t roster_expire(roster *r, double now, roster_expired_fn fn, void *ctx);

/* Members on channel (0 if none), and each of them in turn. */
size_t roster_count(const roster *r, const char *channel);
void roster_each_member(const roster *r, const char *channel, roster_member_fn fn, void *ctx);

/* Hands every channel's waiting events to fn (one call per channel) and forgets them. */
void roster_flush_events(roster *r, roster_events_fn fn, void *ctx);

/* Number of channels with events waiting. */
size_t roster_pending_events(const roster *r);

/* Calls fn(n, ctx) for every node. */
void roster_each_node(roster *r, void (*fn)(rnode *n, void *ctx), void *ctx);

roster_stats roster_get_stats(const roster *r);

#endif
