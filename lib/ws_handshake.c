#include "ws_handshake.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

static const char GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void ws_handshake_accept(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1])
{
    unsigned char md[SHA_DIGEST_LENGTH];
    unsigned char in[WS_KEY_MAX + sizeof GUID];
    if (key_len > WS_KEY_MAX)
        key_len = WS_KEY_MAX;
    memcpy(in, key, key_len);
    memcpy(in + key_len, GUID, sizeof GUID - 1);
    SHA1(in, key_len + sizeof GUID - 1, md);
    ws_base64_encode(out, md, SHA_DIGEST_LENGTH);
}

size_t ws_base64_encode(char *out, const void *in, size_t n)
{
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

bool ws_handshake_accept_ok(const ws_http_resp *resp, const char *key, size_t key_len)
{
    char want[WS_ACCEPT_LEN + 1];
    ws_handshake_accept(key, key_len, want);
    const ws_span *v = ws_http_resp_get(resp, "Sec-WebSocket-Accept");
    return v && ws_span_eq(*v, want);
}

/* A valid key is base64 of exactly 16 bytes: 22 alphabet chars then "==", and the last
 * alphabet char must carry no bits beyond the 128 (one of AQgw). */
static bool key_valid(ws_span k)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (k.n != 24 || k.p[22] != '=' || k.p[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (k.p[i] == '\0' || !strchr(alpha, k.p[i]))
            return false;
    return strchr("AQgw", k.p[21]) != NULL;
}

static int fail(ws_hs_result *r, int status, const char *why)
{
    r->status = status;
    r->reason = why;
    return status;
}

bool ws_handshake_is_upgrade(const ws_http_req *req)
{
    const ws_span *u = ws_http_get(req, "Upgrade");
    return u && ws_http_has_token(*u, "websocket");
}

/* Picks the client's first offered subprotocol that the server speaks, over every
 * Sec-WebSocket-Protocol header line. */
static int choose_protocol(const ws_http_req *req, const ws_hs_opts *o)
{
    for (size_t h = 0; h < req->nheaders; h++) {
        if (!ws_span_ieq(req->headers[h].name, "Sec-WebSocket-Protocol"))
            continue;
        ws_span v = req->headers[h].value;
        size_t i = 0;
        while (i < v.n) {
            while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ','))
                i++;
            size_t s = i;
            while (i < v.n && v.p[i] != ',' && v.p[i] != ' ' && v.p[i] != '\t')
                i++;
            ws_span tok = {v.p + s, i - s};
            for (size_t k = 0; tok.n && k < o->nprotocols; k++)
                if (ws_span_eq(tok, o->protocols[k])) /* subprotocol names are case-sensitive */
                    return (int)k;
        }
    }
    return -1;
}

int ws_handshake_check(const ws_http_req *req, const ws_hs_opts *o, ws_hs_result *r)
{
    memset(r, 0, sizeof *r);
    r->protocol = -1;
    if (!ws_span_eq(req->method, "GET"))
        return fail(r, 400, "WebSocket handshake must be a GET");
    if (req->http_major != 1) /* RFC 9110 section 15.6.6 */
        return fail(r, 505, "HTTP/1.1 is spoken here");
    if (req->http_minor < 1) /* a later 1.x reads as 1.1 (RFC 9112 section 2.3) */
        return fail(r, 400, "WebSocket handshake needs HTTP/1.1");
    if (ws_http_count(req, "Host") != 1)
        return fail(r, 400, "exactly one Host header is required");
    if (!ws_handshake_is_upgrade(req))
        return fail(r, 400, "missing Upgrade: websocket");
    const ws_span *conn = ws_http_get(req, "Connection");
    bool upgrade_token = false;
    for (size_t i = 0; i < req->nheaders; i++)
        if (ws_span_ieq(req->headers[i].name, "Connection") &&
            ws_http_has_token(req->headers[i].value, "Upgrade"))
            upgrade_token = true;
    if (!conn || !upgrade_token)
        return fail(r, 400, "Connection header lacks the Upgrade token");
    const ws_span *ver = ws_http_get(req, "Sec-WebSocket-Version");
    if (!ver || ws_http_count(req, "Sec-WebSocket-Version") != 1)
        return fail(r, 426, "Sec-WebSocket-Version 13 is required");
    if (!ws_span_eq(*ver, "13"))
        return fail(r, 426, "unsupported Sec-WebSocket-Version; 13 is spoken here");
    const ws_span *key = ws_http_get(req, "Sec-WebSocket-Key");
    if (!key || ws_http_count(req, "Sec-WebSocket-Key") != 1 || !key_valid(*key))
        return fail(r, 400, "Sec-WebSocket-Key must be base64 of 16 bytes");
    if (o->norigins) {
        const ws_span *origin = ws_http_get(req, "Origin");
        bool ok = origin == NULL; /* non-browser clients send none */
        for (size_t i = 0; origin && i < o->norigins; i++)
            ok = ok || ws_span_ieq(*origin, o->origins[i]);
        if (!ok)
            return fail(r, 403, "Origin not allowed");
    }
    r->protocol = choose_protocol(req, o);
    ws_handshake_accept(key->p, key->n, r->accept);
    r->status = 101;
    r->reason = "ok";
    return 101;
}

size_t ws_handshake_response(char *out, size_t cap, const char *accept, const char *protocol)
{
    int n = snprintf(out, cap,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                     accept, protocol ? "Sec-WebSocket-Protocol: " : "", protocol ? protocol : "",
                     protocol ? "\r\n" : "");
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

size_t ws_handshake_error(char *out, size_t cap, const ws_hs_result *r)
{
    char body[160];
    int bn = snprintf(body, sizeof body, "%s\n", r->reason ? r->reason : "bad request");
    if (bn < 0)
        bn = 0;
    if ((size_t)bn >= sizeof body)
        bn = sizeof body - 1;
    const char *extra = r->status == 426 ? "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n" : NULL;
    return ws_http_response(out, cap, r->status, extra, NULL, body, (size_t)bn);
}
