/* wsload: shared definitions of the load generator: options, the target URL, and the reports
 * workers send their parent over a pipe (same binary, same machine: plain structs). */
#ifndef WSLOAD_H
#define WSLOAD_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "hist.h"

#define MAX_WORKERS 64
#define MAX_SOURCES 256
#define MAX_PIDS 16
#define MAX_CHANNELS 100000
#define MAX_PUBLISHERS 1000

enum scenario { SC_FANOUT, SC_ECHO, SC_CONNECT, SC_CHURN, SC_RECONNECT };

/* Subscribers and publishers on channels: fanout, and reconnect (fanout whose subscribers
 * drop and resume with since every --reconnect-every seconds). */
#define SC_HAS_CHANNELS(s) ((s) == SC_FANOUT || (s) == SC_RECONNECT)
enum proto { PR_WSFAN, PR_ECHO, PR_TEMPLATE };
/* How subscribers and held connections listen: WebSocket, an SSE stream, long-polls, plain
 * polls every --poll-every seconds (answered at once: wsnode's /poll with wait=0), or the
 * long-poll of Nchan and nginx's push modules (one message an answer, resumed by
 * If-Modified-Since and If-None-Match from the last answer's Last-Modified and Etag). */
enum transport { TR_WS, TR_SSE, TR_POLL, TR_INTERVAL, TR_ETAG_POLL };

/* Why a connection failed; counted per reason. */
enum fail_reason {
    F_CONNECT_REFUSED, F_CONNECT_TIMEOUT, F_ADDR_UNAVAILABLE, F_CONNECT_OTHER, F_HANDSHAKE_STATUS,
    F_HANDSHAKE_ACCEPT, F_HANDSHAKE_TIMEOUT, F_CLOSED_BY_SERVER, F_PROTOCOL, F_TLS, F_COUNT
};
extern const char *const fail_names[F_COUNT];

typedef struct url {
    bool tls, http; /* wss:// or https://; http(s):// for a POST publish target */
    char host[256];
    int port;
    char path[1024]; /* may contain {ch} */
    struct sockaddr_storage addr;
    socklen_t addrlen;
} url;

typedef struct opts {
    enum scenario scenario;
    enum proto proto;
    enum transport transport;
    url target;
    const char *args[2]; /* SCENARIO and URL, as given */
    const char *pub_url_arg;
    bool has_pub_url;
    url pub_url;
    const char *failover_arg; /* reconnect: where subscribers the server dropped resume */
    bool has_failover;
    url failover;
    const char *sub_template, *pub_template;
    int subscribers, channels, publishers, connections;
    double rate; /* messages (or reconnects, or connects) per second in total; 0: max */
    int size;    /* payload bytes */
    double duration, drain, hold, handshake_timeout;
    bool storm;
    double storm_every;
    double reconnect_every, reconnect_delay; /* reconnect: how often, and how long offline */
    double poll_every;                       /* --transport interval: seconds between polls */
    int workers;
    int max_connections;
    struct sockaddr_in sources[MAX_SOURCES];
    int nsources;
    int server_pids[MAX_PIDS];
    int npids;
    const char *json_path, *plot_path;
    bool quiet;
    int pipeline; /* HTTP publish requests in flight per publisher connection */
} opts;

/* Parses argv (on rt/cli); returns 0, 1 after --help or --version, or -1 after printing an
 * error. o keeps pointers into argv. */
int opts_parse(opts *o, int argc, char **argv);

/* Parses and resolves a ws(s):// URL, or also http(s):// with http_ok; 0 or -1. */
int opts_url(url *u, const char *s, bool http_ok);

/* Writes tpl into out[0..cap) with every {ch} replaced by channel ch's name ("ch.<n>"), NUL
 * terminated; returns the length. */
size_t opts_expand_ch(char *out, size_t cap, const char *tpl, uint32_t ch);

/* Counters a worker keeps; summed by the parent. */
typedef struct counters {
    uint64_t opened, closed, failed;
    uint64_t fail[F_COUNT];
    uint64_t sent, send_errors;      /* publishes / echo requests / frames */
    uint64_t received;               /* measured messages received (with a marker) */
    uint64_t unique, duplicates, reordered;
    uint64_t other_frames;           /* hello, ack, err, ... */
    uint64_t errs;                   /* err replies */
    uint64_t bytes_in, bytes_out;
    uint64_t reconnects;
    uint64_t cpu_user_ns, cpu_sys_ns;
    uint64_t open_now;
    uint64_t setup_ns; /* from the first connect to the last connection ready or failed */
    /* reconnect: resume acks (recovered or not), the messages a recovered:false ack said were
     * gone (its seq - since), and what each subscriber's channel stream showed: seqs that
     * never came (gaps), came again or behind (duplicates), late (reordered); resets; and
     * resumes still waiting for their ack at the end. */
    uint64_t resumes, recovered, not_recovered, skipped;
    uint64_t ch_gaps, ch_duplicates, ch_reordered, resets, resume_pending;
} counters;

enum report_kind { R_READY, R_TICK, R_FINAL };

/* One report: a progress tick every second, READY when all connections are up and subscribed,
 * FINAL at the end. `lat` is the latency histogram of this interval only (TICK) or the whole
 * measured run (FINAL); `hs` the handshake latencies so far. */
typedef struct report {
    int kind, worker, interval;
    counters c;
    hist lat;
    hist hs;
    hist rec; /* reconnect, FINAL: close to resume ack */
    uint32_t nchan; /* FINAL of a fanout: this many chan_tally records follow on the pipe */
} report;

/* Per-channel tallies a fanout worker sends after its FINAL report. */
typedef struct chan_tally {
    uint32_t channel;
    uint32_t subscribers;
    uint64_t published;
} chan_tally;

int worker_main(const opts *o, int index, int report_fd, int control_fd);

uint64_t now_ns(void);

#endif
