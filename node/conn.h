/* conn: one client connection: the state machine handshake -> open -> closing, reading and
 * parsing in place, the outbound queue with its limits, and the timeouts. Plain and TLS
 * sockets share every line of it but the two transport calls. */
#ifndef CONN_H
#define CONN_H

#include "worker.h"

/* Takes ownership of an accepted non-blocking socket (and of its admission ip, which may be
 * NULL) and starts its handshake. */
struct ip_entry;
void conn_accept(worker *w, int fd, struct ip_entry *ip);

/* The hub's delivery callback: queues a shared frame on a subscriber, or drops it (counted)
 * when the subscriber is closing or, under --slow-policy drop, over its soft limit. */
hub_deliver_fn conn_hub_deliver(void);

/* The same for w->evhub, whose members are the connections' event subscriptions. */
hub_deliver_fn conn_evhub_deliver(void);

/* The hub's member callback: reports joins and leaves of /ws clients to presence. */
hub_member_fn conn_hub_member(void);

/* Delivers a direct message {"op":"msg","from":..,"data":..} to the open /ws client with this
 * local number. Returns NULL when queued, "not_found" when there is no such client, "busy" when
 * it is over --direct-rate or has half its soft limit queued (the message is dropped). */
const char *conn_direct(worker *w, uint64_t local, const char *from, ws_span data);

/* Calls fn for every channel every open /ws client of w subscribes (the presence snapshot). */
void conn_each_member(worker *w, void (*fn)(void *ctx, const char *client, const char *user, ws_span ch),
                      void *ctx);

/* Writes out every connection with queued output (called before the loop sleeps), closes slow
 * consumers, and frees connections closed since the last call. */
void conn_flush_pending(worker *w);

/* Expires handshakes, pings idle connections, drops those that never answered and those that
 * never finished closing. Called from the worker's one periodic timer. */
void conn_tick(worker *w);

/* Decides every OVERLOAD_CHECK seconds whether the worker is overloaded (see conn.c). */
#define OVERLOAD_CHECK 0.1
void conn_overload_check(worker *w);

/* Drain: drops connections still in handshake and sends close 1001 to every open one. */
void conn_drain_all(worker *w);

#endif
