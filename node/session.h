/* session: one client of protocol v1 (ws.json.v1): its requests (sub, unsub, pub, presence,
 * send), subscriptions, rate limits and the answers it waits for, and the worker's table of
 * sessions by number (direct messages). A session knows its transport only through
 * session_transport; the transport embeds the session, feeds it whole messages and calls
 * session_stop / session_free as the connection ends. */
#ifndef SESSION_H
#define SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "cluster.h"
#include "envelope.h"
#include "hub.h"
#include "wbuf.h"
#include "worker.h"
#include "ws_list.h"
#include "ws_table.h"

typedef struct session session;

/* How a session asks its transport to end the connection. */
enum session_close {
    SESSION_CLOSE,      /* send a close frame (code, reason), wait for the client's */
    SESSION_CLOSE_DEAF, /* the same, but read nothing more: shut down once the frame is out */
    SESSION_DROP,       /* close at once, nothing more is sent (reason is logged) */
};

/* What a transport does for its session. Replies, hellos and direct messages go through send;
 * channel messages go from the hub to the transport's own delivery function (conn.h), so a
 * fan-out costs one indirect call per subscriber and no copy. */
typedef struct session_transport {
    /* Queues frame after what is queued (takes its own reference). A NULL frame (out of memory
     * framing it) drops the connection. */
    void (*send)(session *s, wbuf *frame);
    /* Ends the connection (see enum session_close); the transport then calls session_stop. */
    void (*close)(session *s, enum session_close how, uint16_t code, const char *reason);
    /* Bytes queued and not yet written. */
    size_t (*queued)(const session *s);
} session_transport;

/* Embedded in its transport's connection struct; zeroed until session_start, but for id. */
struct session {
    worker *w;
    const session_transport *tx;
    uint64_t id;       /* random: the public part of its client id, never guessable */
    tab_entry entry;   /* in w->clients, keyed by id */
    hub_member subs;   /* channels (w->hub) */
    hub_member evsubs; /* channels whose join/leave events it asked for (w->evhub) */
    char *user;        /* user id for presence; NULL: anonymous */
    auth_grant *grant; /* what it may do; NULL: everything (no --auth) */
    double rl_tat;     /* --max-msg-rate: GCRA's theoretical arrival time of the next message */
    double abuse_tat;  /* the same for its refused messages: over a tenth of the rate, closed */
    double send_tat;   /* --direct-rate for the direct messages it sends */
    double direct_tat; /* --direct-rate for the direct messages it receives */
    uint32_t refs;     /* answers (Redis, wsrouter) still to come: the struct must outlive them */
    uint8_t asks;      /* presence queries and direct messages in flight (at most SESSION_ASKS_MAX) */
    bool live : 1;     /* between session_start and session_stop: requests are answered */
    bool listed : 1;   /* in w->clients */
    uint16_t nrecover; /* recoveries holding its channel frames back (at most --max-subs) */
};

#define SESSION_ASKS_MAX 8

/* A random id for a new connection that no session of w has (64 bits from OpenSSL's DRBG: a
 * client id names no neighbour). */
uint64_t session_new_id(worker *w);

/* Starts s (its id set) on w over transport tx: takes ownership of user (malloc'd, NULL for
 * anonymous) and grant (auth_grant_free; NULL allows everything), lists it in w->clients and
 * sends the hello. */
void session_start(session *s, worker *w, const session_transport *tx, char *user, auth_grant *grant);

/* One whole message from the client (text or binary; data valid during the call). Counts
 * toward --max-msg-rate, then is answered (or the session is closed). */
void session_message(session *s, uint8_t opcode, const uint8_t *data, size_t len);

/* A ping or pong from the client: counts toward --max-msg-rate. False when over the rate (a
 * ping is then left unanswered). */
bool session_control(session *s);

/* The connection left the open state: leaves every channel (presence hears the leaves); no
 * request is answered any more. Idempotent. */
void session_stop(session *s);

/* The connection is gone: stops s, takes it out of w->clients, frees user and grant. The
 * transport frees the struct once s->refs is 0. Idempotent. */
void session_free(session *s);

/* The session subscribed with member m of w->hub (subs) or w->evhub (evsubs). */
static inline session *session_of_sub(hub_member *m) { return ws_container_of(m, session, subs); }
static inline session *session_of_event(hub_member *m) { return ws_container_of(m, session, evsubs); }

/* "<node id>.<id as hex>" into out; returns its length. */
size_t session_client_id(const session *s, char out[CLUSTER_CLIENT_ID_MAX + 1]);

/* The user id, "anonymous" without one. */
const char *session_user(const session *s);

/* w->hub's member callback (ctx: the worker): reports joins and leaves to presence. */
void session_member_changed(void *ctx, hub_member *m, ws_span ch, bool joined);

/* Delivers a direct message {"op":"msg","from":..,"data":..} to the live session with this
 * local number. Returns NULL when queued, "not_found" when there is no such session, "busy"
 * when it is over --direct-rate or has half its soft limit queued (the message is dropped). */
const char *session_direct(worker *w, uint64_t local, const char *from, ws_span data);

/* Calls fn for every channel every live session of w subscribes (the presence snapshot). */
void session_each_member(worker *w,
                         void (*fn)(void *ctx, const char *client, const char *user, ws_span ch),
                         void *ctx);

/* ---- between session.c and session_presence.c ---- */

/* A request waiting for an answer from elsewhere (Redis, wsrouter): who asked, the request id
 * to answer with and the channel it named (ch_len 0: none). The caller holds a reference on
 * the session (s->refs) while it waits. */
typedef struct session_wait {
    session *s;
    uint8_t id_len, ch_len;
    char id[ENV_ID_MAX];
    char ch[ENV_CHANNEL_MAX];
} session_wait;

/* A wait for request r of s (r's id and channel copied); NULL when out of memory. */
session_wait *session_wait_new(session *s, const env_req *r);

/* Queues a text frame with a copy of p[0..n). */
void session_send_text(session *s, const char *p, size_t n);

/* err and ack replies to request id. */
void session_reply_err(session *s, ws_span id, const char *code, const char *why);
void session_reply_ack(session *s, ws_span id, bool has_seq, uint64_t seq);

/* The presence and send ops (session_presence.c). */
void session_op_presence(session *s, const env_req *r);
void session_op_send(session *s, const env_req *r);

/* ---- recovery (session_recovery.c): a sub with "since" catching up (docs/protocol.md) ----
 * From the moment the subscription is made, the live messages of that channel for that
 * session are held back; the channel's position and the messages after `since` are read in
 * one atomic step; the ack says whether everything the client missed is there
 * ("recovered"), the missed messages follow in order, then the held ones newer than the
 * position read, and later duplicates of what was replayed are dropped. Never "recovered"
 * for a partial replay. */

/* Answers sub r (r->has_since) of s, whose subscription to r->ch is made: the ack and the
 * replay follow once Redis confirmed the subscription and answered the read, or at once
 * without a bus. False when out of memory (the caller then acks as for a plain sub). */
bool session_recover(session *s, const env_req *r);

/* A held subscription's frame for s: true when it is taken (held back, or dropped as already
 * replayed), false to queue it. session_held_frame is the same as the hub's on_held. */
bool session_recovery_hold(session *s, wbuf *frame);
bool session_held_frame(hub_member *m, wbuf *frame, void *ctx);

/* s ends: what its recoveries hold is released (a read still under way answers the others). */
void session_recovery_stop(session *s);

/* {"op":"history",...}: the channel's position and last messages (docs/protocol.md). */
void session_op_history(session *s, const env_req *r);

/* How many messages request r may have: its limit (50 without), at most --history-size and
 * 1000. */
uint32_t session_history_limit(const worker *w, const env_req *r);

/* The history answer from w's memory, when it holds the last `limit` messages of ch (always
 * without a bus): true, with *text malloc'd (NULL when out of memory) and *len. False when
 * Redis must be asked. */
bool session_history_memory(worker *w, ws_span ch, uint32_t limit, bool op, ws_span id,
                            char **text, size_t *len);

/* A history answer as one malloc'd text (op: as the WebSocket op, with id; else the body of
 * GET /history); *len its length. NULL when out of memory. */
char *session_history_text(bool op, ws_span id, ws_span ch, const bus_position *pos,
                           const bus_stored *msgs, size_t n, size_t *len);

#endif
