/* worker: one wsnode worker process: a libev loop, its listening socket, its connections and
 * its channels. Everything here belongs to one process; nothing is shared between workers. */
#ifndef WORKER_H
#define WORKER_H

#include <ev.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "config.h"
#include "hub.h"
#include "presence.h"
#include "stats.h"
#include "ws_frame.h"

typedef struct conn conn;

/* The timeout lists: each holds connections in the order their clock started, so the one
 * that expires first is always at the head (libev's "be smart about timeouts", one list per
 * duration instead of a timer per socket). */
enum { TL_NONE, TL_HANDSHAKE, TL_OPEN, TL_PINGED, TL_CLOSING, TL_COUNT };

typedef struct tlist {
    conn *head, *tail;
    double timeout;
} tlist;

/* A worker's counters (stats.h declares them): one slot per worker in memory the master
 * shares with every worker. */
typedef stats_slot worker_stats;

typedef struct worker {
    struct ev_loop *loop;
    const config *cfg;
    int index;
    char node_id[128];
    int lfd;
    ev_io accept_w;
    ev_timer accept_pause; /* out of descriptors: stop accepting for a moment */
    ev_timer tick;         /* walks the timeout lists */
    ev_timer overload_w;   /* conn_overload_check, every OVERLOAD_CHECK seconds */
    ev_prepare flush_w;    /* before the loop sleeps: write every pending connection */
    ev_signal sigterm_w, sigint_w, sighup_w; /* drain; drain; reload the TLS certificate */
    ev_timer drain_w;
    SSL_CTX *tls;
    uint8_t *rbuf; /* one read buffer for all connections; frames are parsed in place */
    size_t rbuf_size;
    uint8_t *tlsbuf; /* TLS writes coalesce queued frames here */
    conn *pending;   /* connections with queued output, linked by conn.pnext */
    conn *dead;      /* closed connections, freed once no callback can still see them */
    tlist lists[TL_COUNT];
    tlist soft; /* connections over --outbuf-soft, linked by conn.snext (timeout unused) */
    hub hub;
    bus *bus; /* NULL without --redis: this worker is the whole pub/sub system */
    struct presence *pres; /* with the bus: wsrouter traffic and direct messages */
    hub evhub;             /* subscribers that asked for join/leave events, per channel */
    struct files *files;   /* --static, in memory */
    struct auth *auth;     /* --auth: the JWT verifier; NULL when off */
    struct ip_table *ips;  /* connections and connect rate per client address */
    double publish_tat, publish_jwt_tat; /* --publish-rate (GCRA): the key's, the JWTs' */
    conn **clients;        /* /ws connections by local number (conn.cnext chains) */
    size_t nclients, clients_cap;
    ws_parser_opts ws_opts, echo_opts;
    uint64_t next_client;
    size_t nconns;
    size_t nbehind; /* open connections with a quarter of --outbuf-soft queued (overload) */
    size_t max_conns;
    bool draining;
    worker_stats *st;  /* this worker's slot of the shared array */
    worker_stats *all; /* every worker's slot, for /metrics */
} worker;

/* Runs worker `index` until it is drained or fails; returns the process exit code
 * (0 after a drain, 2 when the listening socket cannot be set up). shared holds cfg->workers
 * stat slots in memory shared with the other workers. */
int worker_run(const config *cfg, int index, worker_stats *shared);

/* True (logged) when cfg's address and port cannot be taken without sharing them with whoever
 * listens there already: the master checks it once before forking, unless --share-port. */
bool worker_port_in_use(const config *cfg);

/* Upper bounds (seconds) of the publish-to-delivery latency buckets, LAT_BUCKETS of them. */
const double *worker_lat_bounds(void);

#endif
