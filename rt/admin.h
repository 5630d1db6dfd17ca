/* admin: wsrouter's HTTP port for GET /healthz and GET /metrics. Small and separate from any
 * client traffic: one request per connection, answered from a callback, five seconds to send
 * the request before the connection is dropped. */
#ifndef ADMIN_H
#define ADMIN_H

#include <ev.h>
#include <stddef.h>

#include "ws_http.h"

/* Fills body[0..cap) for a GET of path; returns its length and sets *status (404 for an
 * unknown path) and *ctype. */
typedef size_t (*admin_page_fn)(void *ctx, ws_span path, int *status, const char **ctype,
                                char *body, size_t cap);

/* Listens on bind:port (non-blocking, on loop). Returns 0, or -1 after logging why. */
int admin_start(struct ev_loop *loop, const char *bind, int port, admin_page_fn page, void *ctx);

#endif
