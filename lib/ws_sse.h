/* ws_sse: Server-Sent Events (WHATWG HTML, "Server-sent events") as wsfan writes them, and the
 * position token a stream's event ids carry. Pure: no I/O. */
#ifndef WS_SSE_H
#define WS_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.h"
#include "envelope.h"

/* The size of one event: "id: <id>\n" when id.n, then data as "data: <line>\n" per line (a
 * CR, LF or CRLF ends a line, as the spec's parser reads them), then the blank line. */
size_t ws_sse_event_len(ws_span id, ws_span data);

/* Writes that event into out[0..cap); returns its length, 0 when it does not fit. */
size_t ws_sse_event(char *out, size_t cap, ws_span id, ws_span data);

/* The longest token (ws_sse_token) for n positions. */
#define WS_SSE_TOKEN_MAX(n) ((n) * (20 + 1 + CLUSTER_EPOCH_MAX + 1))

/* A stream's position token: "<seq>-<epoch>" for each of its channels in order, joined by
 * "_" (epochs are [0-9A-Za-z.], so the token needs no escaping in a URL or a header).
 * Returns its length, 0 when it does not fit. */
size_t ws_sse_token(char *out, size_t cap, const env_pos *pos, size_t n);

/* Parses a token into pos[0..max) (epochs point into the token). Returns how many positions
 * it holds, -1 when it is not a token or holds more than max. */
int ws_sse_token_parse(ws_span token, env_pos *pos, size_t max);

#endif
