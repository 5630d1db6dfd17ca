/* conn: the transport of one client connection: the state machine handshake -> (body) ->
 * open -> closing/linger -> dead, reading and parsing frames in place, the outbound queue
 * with its limits, the timeout lists. Plain and TLS sockets share every line of it but the
 * two transport calls. A complete request head goes to w->on_request (HTTP); an open /ws
 * connection carries a session (session.h), which it feeds whole messages. */
#ifndef CONN_H
#define CONN_H

#include "session.h"
#include "worker.h"

struct ip_entry;

/* How a connection ends: the one state change behind every close (conn_close). */
enum conn_how {
    CONN_DROP,         /* close the socket now; nothing more is sent */
    CONN_GOODBYE,      /* open only: send close (code, reason), wait --close-timeout for the reply */
    CONN_GOODBYE_DEAF, /* the same, but read nothing more: shut down TCP once the frame is out */
    CONN_ANSWER,       /* the client sent close: echo its code (if open), then close TCP */
    CONN_FAIL,         /* protocol error: close frame (if open), shut down writing, discard input
                        * until the client's FIN or the close timeout (RFC 6455 section 7.1.7) */
    CONN_HTTP_DONE,    /* the HTTP response is queued: write it, shut down, linger for the FIN */
};

/* Takes ownership of an accepted non-blocking socket (and of its admission ip, which may be
 * NULL) and starts its handshake. */
void conn_accept(worker *w, int fd, struct ip_entry *ip);

/* Moves c toward dead as `how` says; code and reason go in the close frame (reason alone is
 * logged for CONN_DROP and CONN_FAIL). Nothing happens to a connection already dead, nor a
 * CONN_GOODBYE to one that is not open. */
void conn_close(conn *c, enum conn_how how, uint16_t code, const char *reason);

/* HTTP: queues response b (takes a reference; a prebuilt buffer is shared, not copied) and
 * ends the connection after it (CONN_HTTP_DONE). */
void conn_respond(conn *c, wbuf *b);

/* The same with a copy of p[0..n). n == 0 (a response that did not fit its buffer) drops c. */
void conn_respond_copy(conn *c, const void *p, size_t n);

/* The request body is complete: buf holds the prefix given to conn_read_body, then the body
 * (len bytes in all, valid during the call). The connection waits on its handshake clock
 * for the handler's conn_respond, its further input discarded. */
typedef void (*conn_body_fn)(conn *c, uint8_t *buf, size_t len);

/* After a request head of head_len bytes: reads a body of len bytes (those read with the head
 * first) behind a copy of prefix[0..prefix_len), then calls done. -1 when out of memory (c is
 * dropped). */
int conn_read_body(conn *c, size_t head_len, ws_span prefix, size_t len, conn_body_fn done);

/* The upgrade was accepted: queues resp[0..n) (the 101), opens the WebSocket and, for /ws
 * (echo false), starts its session with user and grant (owned from here on; freed if c is
 * already dead). Bytes read after the head (head_len) are the first frames. */
void conn_upgrade(conn *c, bool echo, const char *resp, size_t n, size_t head_len, char *user,
                  auth_grant *grant);

/* An SSE stream or a long-poll, as http.c accepted it (docs/protocol.md). */
#define CONN_STREAM_MAX 32 /* channels of one stream */
enum { CONN_STREAM_SSE = 1, CONN_STREAM_POLL };
typedef struct conn_stream_req {
    uint8_t kind;          /* CONN_STREAM_SSE or CONN_STREAM_POLL */
    ws_span head;          /* SSE: the response head (status line, headers, blank line);
                            * poll: header lines for the answer (CORS), each ending in CRLF */
    char *user;            /* owned from here (NULL: anonymous) */
    auth_grant *grant;     /* owned from here (NULL: everything allowed) */
    const ws_span *chans;  /* n valid channel names, 1..CONN_STREAM_MAX */
    size_t n;
    const env_pos *since;  /* the position of each channel to resume from, or NULL */
    bool events;           /* SSE: join/leave events too */
    bool nowait;           /* poll: answer with what history holds, without waiting */
} conn_stream_req;

/* Opens stream c (conn_stream.c) and subscribes each channel as a client's sub would (with
 * since and epoch when resuming). SSE: writes the head, retry and the hello event; every
 * channel message is then an event whose id is the stream's position token. Poll: answers
 * once with the messages after since (at once when there are some, else at the first one or
 * at --poll-timeout) and the token to poll with next. */
void conn_stream_open(conn *c, const conn_stream_req *r);

/* The worker c belongs to, and the number its logs name it by. */
worker *conn_worker(const conn *c);
unsigned long long conn_id(const conn *c);

/* False once c is dead. A holder (conn_hold) keeps the struct from being freed meanwhile. */
bool conn_alive(const conn *c);
void conn_hold(conn *c);
void conn_release(conn *c);

/* Hub delivery callbacks for w->hub and w->evhub: queue a shared frame on a subscriber, or
 * drop it (counted) when it is closing or, under --slow-policy drop, over its soft limit. */
void conn_hub_deliver(hub_member *m, wbuf *frame, void *ctx);
void conn_evhub_deliver(hub_member *m, wbuf *frame, void *ctx);

/* Writes out every connection with queued output (called before the loop sleeps), closes slow
 * consumers, and frees connections closed since the last call. */
void conn_flush_pending(worker *w);

/* Expires handshakes, pings idle connections, drops those that never answered and those that
 * never finished closing. Called from the worker's one periodic timer. */
void conn_tick(worker *w);

/* Decides every OVERLOAD_CHECK seconds whether the worker is overloaded (see conn.c). */
#define OVERLOAD_CHECK 0.1
void conn_overload_check(worker *w);

/* Drain in steps (the ramp): conn_drain_start drops the connections still in handshake and
 * returns how many are open; each conn_drain_some then sends close 1001 to at most n open
 * connections, those silent the longest first, and returns how many it closed (fewer than n:
 * none is left). Neither accepts nor refuses anything; process.c stops accepting. */
size_t conn_drain_start(worker *w);
size_t conn_drain_some(worker *w, size_t n);

#endif
