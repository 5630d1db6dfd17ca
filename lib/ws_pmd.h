/* ws_pmd: the negotiation of permessage-deflate (RFC 7692) on the server side, over a parsed
 * request head. The server always answers server_no_context_takeover and
 * client_no_context_takeover: every message is compressed and inflated on its own, so one
 * compressed broadcast serves every subscriber and one inflater serves every connection of a
 * worker. Pure: no I/O, no allocation, no compression (that is the node's). */
#ifndef WS_PMD_H
#define WS_PMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ws_http.h"

#define WS_PMD_WINDOW_MIN 9  /* server_max_window_bits the server accepts (zlib: raw 8 is 9) */
#define WS_PMD_WINDOW_MAX 15 /* the RFC's largest window, its default */

/* What was agreed for one connection. */
typedef struct ws_pmd {
    uint8_t server_window; /* server_max_window_bits the server compresses with (9..15) */
    bool server_window_said; /* the client offered server_max_window_bits: the answer names it */
} ws_pmd;

/* Reads every Sec-WebSocket-Extensions header of req and accepts the first permessage-deflate
 * offer the server can honour (RFC 7692 section 7.1: an offer with an unknown, repeated or
 * invalid parameter, or a window the server cannot use, is declined and the next one tried).
 * Returns 1 with *p filled, 0 when nothing acceptable was offered (the connection goes
 * uncompressed). Other extensions are ignored. */
int ws_pmd_negotiate(const ws_http_req *req, ws_pmd *p);

/* Writes the response header line "Sec-WebSocket-Extensions: permessage-deflate; ...\r\n"
 * for p into out[0..cap); returns its length, 0 if it does not fit (WS_PMD_RESPONSE_MAX
 * bytes always do). */
#define WS_PMD_RESPONSE_MAX 160
size_t ws_pmd_response(char *out, size_t cap, const ws_pmd *p);

#endif
