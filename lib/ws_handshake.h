/* ws_handshake: the server side of the RFC 6455 section 4.2 opening handshake over a parsed
 * request head, and the client side's accept-key check. Pure: no I/O, no allocation. */
#ifndef WS_HANDSHAKE_H
#define WS_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

#include "ws_http.h"

#define WS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */
#define WS_KEY_MAX 64     /* ws_handshake_accept reads at most this much of a key */
#define WS_KEY_LEN 24     /* a client's Sec-WebSocket-Key: base64 of 16 random bytes */
#define WS_BASE64_LEN(n) (((n) + 2) / 3 * 4) /* base64 of n bytes, without the NUL */

typedef struct ws_hs_opts {
    const char *const *protocols; /* subprotocols the server speaks, in its order of preference */
    size_t nprotocols;
    const char *const *origins;   /* allowed Origin values (exact, case-insensitive); none: any */
    size_t norigins;
} ws_hs_opts;

typedef struct ws_hs_result {
    int status;         /* 101 on success, else the HTTP status to answer with */
    const char *reason; /* static text naming the fault, for logs and the response body */
    int protocol;       /* index into opts.protocols of the chosen subprotocol, -1 for none */
    char accept[WS_ACCEPT_LEN + 1]; /* Sec-WebSocket-Accept value, NUL-terminated */
} ws_hs_result;

/* True if the request asks for a WebSocket upgrade at all (an Upgrade: websocket header). */
bool ws_handshake_is_upgrade(const ws_http_req *req);

/* Checks an upgrade request and picks a subprotocol: the client's first offered one that the
 * server speaks; none if none matches (the connection then uses the server's default).
 * Fills *r; returns r->status (101, 400, 403 or 426). */
int ws_handshake_check(const ws_http_req *req, const ws_hs_opts *o, ws_hs_result *r);

/* Computes Sec-WebSocket-Accept for a key (section 4.2.2 step 5.4) into out (29 bytes, NUL).
 * Keys longer than WS_KEY_MAX are cut there (a valid key has 24 bytes). */
void ws_handshake_accept(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1]);

/* Writes base64 (RFC 4648, padded) of in[0..n) and a NUL to out (WS_BASE64_LEN(n) + 1 bytes).
 * Returns the length without the NUL. A client's key: ws_base64_encode(key, nonce, 16). */
size_t ws_base64_encode(char *out, const void *in, size_t n);

/* Client side: true if the response carries the Sec-WebSocket-Accept that key[0..key_len)
 * asks for (its first such header). The caller checks the status (101) itself. */
bool ws_handshake_accept_ok(const ws_http_resp *resp, const char *key, size_t key_len);

/* Writes the 101 response into out[0..cap); protocol NULL for none. Returns length or 0. */
size_t ws_handshake_response(char *out, size_t cap, const char *accept, const char *protocol);

/* Writes an error response for a failed check (426 carries Sec-WebSocket-Version: 13).
 * Returns length or 0. */
size_t ws_handshake_error(char *out, size_t cap, const ws_hs_result *r);

#endif
