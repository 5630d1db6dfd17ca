/* worker: the state of one wsnode worker process, as data: its loop, connection lists,
 * channels, bus and counters. No functions of its own beyond two inline reads (no worker.c),
 * so every room of the node may include it without a cycle; process.c runs a worker. */
#ifndef WORKER_H
#define WORKER_H

#include <ev.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "cluster.h"
#include "config.h"
#include "hub.h"
#include "presence.h"
#include "stats.h"
#include "ws_frame.h"
#include "ws_http.h"
#include "ws_list.h"
#include "ws_table.h"

typedef struct conn conn;

/* The timeout lists: each holds connections in the order their clock started, so the one
 * that expires first is always at the head (libev's "be smart about timeouts", one list per
 * duration instead of a timer per socket): handshakes; open WebSockets (pinged when idle);
 * SSE streams (a comment every --sse-ping); pinged WebSockets; closing connections. The drain
 * takes the open ones from TL_PINGED down to TL_OPEN. */
enum { TL_NONE, TL_HANDSHAKE, TL_OPEN, TL_STREAM, TL_PINGED, TL_CLOSING, TL_COUNT };

typedef struct tlist {
    ws_list head; /* of conn, by their timeout link */
    double timeout;
} tlist;

/* A worker's counters (stats.h declares them): one slot per worker in memory the master
 * shares with every worker. */
typedef stats_slot worker_stats;

typedef struct worker {
    struct ev_loop *loop;
    const config *cfg;
    int index;
    char node_id[CLUSTER_NODE_ID_MAX + 1];
    int lfd;
    ev_io accept_w;
    ev_timer accept_pause; /* out of descriptors: stop accepting for a moment */
    ev_timer tick;         /* walks the timeout lists */
    ev_timer overload_w;   /* conn_overload_check, every OVERLOAD_CHECK seconds */
    ev_prepare flush_w;    /* before the loop sleeps: write every pending connection */
    ev_signal sigterm_w, sigint_w, sighup_w; /* drain; drain; reload the TLS certificate */
    ev_timer drain_w;    /* --drain-timeout: exit with whatever is still open */
    ev_timer drain_step; /* the ramp: sends the next batch of closes 1001 */
    double drain_since;  /* when the drain began */
    size_t drain_total;  /* open connections when it began */
    size_t drain_sent;   /* of them, those sent their close 1001 so far */
    SSL_CTX *tls;
    uint8_t *rbuf; /* one read buffer for all connections; frames are parsed in place */
    size_t rbuf_size;
    uint8_t *tlsbuf;  /* TLS writes coalesce queued frames here */
    ws_http_req *req; /* the request head being looked at (one at a time; too large for a stack frame) */
    /* HTTP: a connection's request head was parsed (parsed: ws_http_parse's result, never
     * WS_HTTP_PARTIAL); set by whoever runs the worker. */
    void (*on_request)(conn *c, int parsed, const ws_http_req *req);
    ws_list pending; /* connections with queued output */
    ws_list dead;    /* closed connections, freed once no callback can still see them */
    tlist lists[TL_COUNT];
    ws_list soft; /* connections over --outbuf-soft, oldest first (policy close only) */
    hub hub;
    bus *bus; /* NULL without --redis: this worker is the whole pub/sub system */
    struct presence *pres; /* with the bus: wsrouter traffic and direct messages */
    hub evhub;             /* subscribers that asked for join/leave events, per channel */
    struct files *files;   /* --static, in memory */
    struct auth *auth;     /* --auth: the JWT verifier; NULL when off */
    struct ip_table *ips;  /* connections and connect rate per client address */
    double publish_tat, publish_jwt_tat; /* --publish-rate (GCRA): the key's, the JWTs' */
    table clients;         /* open /ws sessions by local number (session.entry) */
    table recoveries;      /* subs with since catching up, by (session, channel): session_recovery.c */
    table reads;           /* Redis reads shared by the recoveries of one channel, by name */
    table heals;           /* channels being mended after the subscriber link came back: heal.c */
    uint32_t nheal;        /* entries of heals */
    ws_parser_opts ws_opts, echo_opts;
    uint64_t next_client;
    size_t nconns;
    size_t nstreams[3]; /* by CONN_STREAM_SSE and _POLL: open streams, waiting polls */
    size_t nbehind; /* open connections with a quarter of --outbuf-soft queued (overload) */
    size_t max_conns;
    bool draining;
    worker_stats *st;  /* this worker's slot of the shared array */
    worker_stats *all; /* every worker's slot, for /metrics */
} worker;

/* Upper bounds (seconds) of the publish-to-delivery latency buckets, LAT_BUCKETS of them. */
static inline const double *worker_lat_bounds(void)
{
    static const double bounds[LAT_BUCKETS] = STATS_LAT_BOUNDS;
    return bounds;
}

/* True while any worker of this node is overloaded (conn_overload_check sets the flags). */
static inline bool worker_overloaded(const worker *w)
{
    for (int i = 0; i < w->cfg->workers; i++)
        if (w->all[i].overloaded)
            return true;
    return false;
}

#endif
