/* wk: one wsload worker's state, shared by its modules: the connections (lconn.c moves their
 * bytes), the scenario that drives them (scenario.c) and the loop, reports and timers
 * (worker.c). One worker is one process: nothing here is shared between processes. */
#ifndef WK_H
#define WK_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>
#include <openssl/ssl.h>

#include "sock.h"
#include "ws_frame.h"
#include "ws_handshake.h"
#include "ws_list.h"
#include "wsload.h"

#define LAUNCH_INFLIGHT 256  /* handshakes under way at once per worker */
#define OUT_HIGH (64 * 1024) /* max rate: keep at most this much queued per publisher */
#define HS_CAP 16384         /* largest response head (101, or a publish response) */

enum { LC_IDLE, LC_CONNECTING, LC_TLS, LC_HANDSHAKE, LC_OPEN, LC_DEAD };
enum { ROLE_SUB, ROLE_PUB, ROLE_ECHO, ROLE_HOLD };

typedef struct track {
    uint64_t next;   /* highest seq seen + 1 */
    uint64_t window; /* bit i: seq next-1-i was seen */
} track;

typedef struct wk wk;
typedef struct lconn lconn;

/* One connection of the load. The worker owns the array of them; lconn.c owns the socket,
 * the TLS object and the buffers of each. */
struct lconn {
    wk *w;
    sock_io io;
    uint8_t state, role;
    bool ready, http, use_pub_url;
    bool failed_over; /* dropped by the server once: connects to --failover-url */
    bool xp_open;     /* --transport sse|poll: the stream's head or the first answer came */
    uint8_t since_len;
    char since[64];   /* --transport poll: the position to poll from next */
    uint64_t t_next_poll; /* --transport interval: when to send the next poll (0: none due) */
    char lm[48], etag[48]; /* --transport etag-poll: the last answer's Last-Modified, Etag */
    ev_io rio, wio;
    uint32_t gid;     /* publisher number, echo connection number, subscriber number */
    uint32_t channel; /* subscriber: its channel */
    uint64_t t_start, t_closed;
    char key[WS_KEY_LEN + 1];
    char *hs; /* the response head so far (and, for HTTP publishers, what follows it) */
    size_t hs_len;
    uint8_t *out;
    size_t out_len, out_cap, out_off;
    uint8_t *msg;
    size_t msg_len, msg_cap;
    ws_parser parser;
    track *tr;        /* subscriber: one per publisher; echo: one */
    track chan;       /* reconnect subscriber: its channel's seqs (next: last seen + 1) */
    uint64_t t_resume; /* reconnect subscriber: when it closed to resume; 0: not resuming */
    uint8_t epoch_len;
    char epoch[32];    /* reconnect subscriber: its channel's epoch as last told */
    uint64_t *pubseq; /* publisher: last seq per channel */
    uint64_t sent;
    uint32_t next_ch;
    int inflight;      /* HTTP publisher: requests without their response yet */
    uint64_t body_left; /* HTTP publisher: body bytes (or chunk bytes and CRLF) still to skip */
    uint8_t body;       /* HTTP publisher: BODY_* state of the response being read */
    int status;         /* HTTP publisher: status of the response being read */
    ws_list pending; /* on the worker's pending list: has bytes to write */
};

struct wk {
    const opts *o;
    struct ev_loop *loop;
    int index, report_fd, control_fd;
    ev_io control_w;
    ev_timer tick_w, pace_w, stop_w, final_w, storm_w, resume_w, poll_w;
    ev_prepare flush_w;
    SSL_CTX *tls;
    uint8_t *rbuf;   /* 64 KiB: every connection reads into it */
    uint8_t *tlsbuf; /* SOCK_TLS_CHUNK: TLS writes are coalesced here */
    lconn *conns;
    size_t nconns, launched_upto, inflight;
    size_t first_sender; /* conns[first_sender..] are publishers or echo senders */
    bool final_sent;
    ws_list pending; /* connections with bytes to write before the loop sleeps */
    counters c;
    hist lat, lat_tick, hs, rec; /* rec: reconnect, close to resume ack */
    int interval;
    uint64_t t_go, t_begin, t_last_settle;
    uint64_t drain_start, drain_quiet_since, drain_seen;
    bool going, sending, ready_sent;
    size_t settled; /* connections ready or failed */
    uint32_t src_next;
    uint64_t *published; /* fanout: per channel, publishes this worker made */
    uint32_t *subs_on;   /* fanout: per channel, this worker's subscribed connections */
    double rate_per_conn;
    uint64_t done_churn;
    uint64_t rng;
    char *tpl_prefix[3]; /* template mode: literal before {ts}, {seq}, {pub} */
    /* What the scenario does when a connection is open, and with each message it receives. */
    void (*on_ready)(lconn *c);
    void (*on_message)(lconn *c, const uint8_t *m, size_t n);
};

/* The worker's xorshift generator: masks, keys, churn picks (not for secrets). */
static inline uint64_t wk_rnd(wk *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

#endif
