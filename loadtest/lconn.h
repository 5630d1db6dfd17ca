/* lconn: one load connection's transport: connect, TLS, the client handshake, reading and
 * parsing frames (or HTTP publish responses), the output queue, and close. What to send and
 * what a message means is the scenario's (the worker's on_ready and on_message hooks). */
#ifndef LCONN_H
#define LCONN_H

#include <stddef.h>
#include <stdint.h>

#include "wk.h"

/* Opens c (idle, or dead for a reconnect): socket, connect, then TLS and the handshake as
 * the socket allows. Failures close it with their reason. */
void lconn_start(wk *w, lconn *c);

/* --transport interval: sends the polls that are due. */
void lconn_poll_due(wk *w);

/* Starts idle connections up to index upto while fewer than LAUNCH_INFLIGHT are opening. */
void lconn_launch(wk *w, size_t upto);

/* Closes c and frees its buffers (not the struct: the worker owns it). reason >= 0 counts
 * a failure (F_*) or, for an open connection, a close; -1 counts nothing (a planned close). */
void lconn_close(lconn *c, int reason);

/* Marks c ready (or given up) for the start of the run: once, however often called. */
void lconn_settle(lconn *c);

/* Writes what c has queued until the socket would block (then its write watcher waits). */
void lconn_flush(lconn *c);

/* Queues bytes as they are (an HTTP request). Flushed before the loop sleeps. */
void lconn_send_raw(lconn *c, const void *p, size_t n);

/* Queues one final masked frame with a fresh key. */
void lconn_send_frame(lconn *c, uint8_t opcode, const void *payload, size_t n);

#endif
