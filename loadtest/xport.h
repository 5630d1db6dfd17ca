/* xport: the subscriber transports beside WebSocket (--transport sse|poll), for servers that
 * stream Server-Sent Events or answer long-polls: the GET each one sends, and its response
 * bytes turned into the messages the scenario counts. No I/O: lconn.c sends what this writes
 * and feeds it what it reads. */
#ifndef XPORT_H
#define XPORT_H

#include <stddef.h>
#include <stdint.h>

#include "wk.h"

/* The request c sends: its SSE stream, or its next poll (with the position it holds). */
size_t xport_request(const lconn *c, const url *u, char *out, size_t cap);

enum { XP_OPENED = 1, XP_ANSWERED = 2, XP_ERROR = 4 };

/* Bytes of c's response: each message (an SSE event's data, each object of a poll answer's
 * "messages") goes to the worker's on_message. Returns a mask: XP_OPENED when the stream's
 * head or the first poll answer came (c is subscribed), XP_ANSWERED when a poll answer is
 * complete (send the next poll), XP_ERROR for anything that is not the protocol. */
int xport_read(lconn *c, const uint8_t *buf, size_t n);

#endif
