/* conn_impl: the transport's private half, shared by its files: conn.c (states, reading,
 * closing, writing), conn_queue.c (timeouts, the outbound queue, its limits, overload) and
 * conn_stream.c (Server-Sent Events). Nothing outside those files includes it. */
#ifndef CONN_IMPL_H
#define CONN_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "session.h"
#include "sock.h"
#include "worker.h"
#include "ws_frame.h"

enum { ST_HANDSHAKE, ST_BODY, ST_OPEN, ST_CLOSING, ST_LINGER, ST_DEAD };
enum { AF_NONE, AF_SHUTDOWN, AF_DESTROY }; /* what the flush that empties the queue does next */

#define CLOSE_MAX 60.0 /* seconds a close may take while the client still reads (conn_tick) */
#define PING_KIB_UNKNOWN UINT16_MAX /* conn.ping_kib: written to since the last look */

/* The body a request head announced (conn_read_body): state ST_BODY. */
typedef void (*conn_impl_body_fn)(conn *c, uint8_t *buf, size_t len);

struct conn {
    sock_io io; /* the socket and its SSL (NULL: plain), for rt/sock */
    uint8_t state, tl, after_flush;
    bool echo;     /* the /echo route: messages come back as they came; no session */
    bool slow;     /* over the hard limit: close at the next flush */
    bool tls_done; /* TLS handshake finished */
    bool behind;   /* its queue is over a quarter of the soft limit: counted in w->nbehind */
    bool paused;   /* its input waits (held) for its output to drain; rio is stopped */
    uint8_t stream; /* CONN_STREAM_SSE or _POLL (conn_stream.c): no frames; nothing is read */
    uint16_t ping_kib; /* pinged: KiB the kernel held for the peer at the last look (see conn_tick) */
    uint32_t soft_took; /* bytes the peer took since it went over the soft limit */
    ev_io rio, wio;
    ws_list tlink; /* its timeout list (tl), then w->dead */
    double tstamp;
    ws_list plink; /* w->pending */
    ws_list slink; /* w->soft: over the soft limit, oldest first (policy close only) */
    /* Outbound queue: a ring of shared frames; qoff bytes of the head are already sent. */
    wbuf **q;
    uint32_t qhead, qlen, qcap, qoff;
    size_t qbytes;
    union {
        double soft_since;  /* open: when qbytes went over --outbuf-soft (on w->soft) */
        double close_since; /* closing: when the close began */
    };
    union {
        uint32_t close_outq; /* closing: bytes the kernel still held for the peer at last look */
        uint32_t last_outq;  /* open and behind: the same, at the last overload check */
    };
    uint32_t drained; /* bytes written since the last overload check */
    uint32_t check_q; /* qbytes at the last overload check */
    /* Lengths are 32 bits (messages are at most 2 GiB, heads and held input far less) and
     * packed beside the pointers they measure: the struct stays within one malloc size class. */
    uint32_t msg_len;
    union {
        char *hs;      /* the request head, during the handshake (room: --max-header-size + 1) */
        uint8_t *held; /* open: input read but not yet processed while its output is backed up */
    };
    union {
        uint32_t hs_len;
        uint32_t held_len;
    };
    uint32_t msg_cap;
    uint8_t *msg; /* message assembly; in ST_BODY the body (NULL once handed over) */
    struct ip_entry *ip; /* its address's entry in w->ips (NULL: not limited) */
    wbuf *pong; /* the last pong queued (our reference): the one a new ping may rewrite */
    union {
        ws_parser parser;            /* open and closing */
        conn_impl_body_fn body_done; /* ST_BODY: who takes the body (never opens after) */
        struct stream_state *strm;   /* a stream: its channels and what was sent of them */
    };
    /* Who the client is and what it asked (/ws); sess.w is the worker of every connection,
     * sess.id names it in logs, sess.refs counts who still holds it (conn_hold, answers). */
    session sess;
};

/* ---- conn_queue.c, for conn.c ---- */

/* Puts c on w->pending: it is written before the loop next sleeps. */
void conn_impl_mark_pending(conn *c);

/* Queues b (taking a reference) to be written before the loop next sleeps. */
void conn_impl_enqueue(conn *c, wbuf *b);

/* Queues b and drops the caller's reference; b == NULL (out of memory) drops c. */
void conn_impl_send_owned(conn *c, wbuf *b);

/* Unreferences all but the first keep frames of the queue; an empty queue is freed. */
void conn_impl_release_queue(conn *c, uint32_t keep);

/* Takes c off the soft list; puts it on or off after its queue changed. */
void conn_impl_soft_remove(conn *c);
void conn_impl_soft_update(conn *c);

/* Queues the pong for a ping with payload p[0..n) (at most one pong waits at a time). */
void conn_impl_answer_ping(conn *c, const uint8_t *p, size_t n);

/* Drops what a slow consumer has not started to receive and closes it with 1008. */
void conn_impl_slow_close(conn *c);

/* ---- conn_stream.c ---- */

/* The event that a frame for stream c becomes (one reference for the caller), the stream's
 * position moved on; NULL when it sends nothing (an ack it takes in, a message it has) or out
 * of memory. */
wbuf *conn_impl_stream_frame(conn *c, wbuf *frame);

/* A stream's input (a client sends nothing: read and dropped; EOF ends it), its keep-alive
 * comment (--sse-ping), and the freeing of its state when it closes. */
void conn_impl_stream_read(conn *c);
void conn_impl_stream_ping(conn *c);
void conn_impl_stream_free(conn *c);

/* A long-poll asked to close (drain, a slow policy) answers now with what it has. */
void conn_impl_poll_now(conn *c);

/* ---- conn.c, for conn_stream.c ---- */

/* A long-poll answered (queued): c reads its next request, with a new session. Only while
 * nothing still holds the old one (sess.refs == 0). */
void conn_impl_http_again(conn *c);

/* Takes c off its timeout list; moves it to the tail of list `which`, its clock starting now. */
void conn_impl_tl_remove(conn *c);
void conn_impl_tl_move(conn *c, uint8_t which);

#endif
