#include "ws_pmd.h"

#include <stdio.h>
#include <string.h>

/* A cursor over a header value: extensions separated by ',', parameters by ';', values
 * tokens or quoted strings (a separator inside quotes separates nothing). */
typedef struct cur {
    const char *p, *end;
} cur;

static void skip_ws(cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

/* The text up to the next unquoted separator (one of seps) or the end, trimmed; the cursor is
 * left on the separator. */
static ws_span until(cur *c, const char *seps)
{
    skip_ws(c);
    const char *start = c->p;
    bool quoted = false;
    for (; c->p < c->end && (quoted || !strchr(seps, *c->p)); c->p++) {
        if (*c->p == '"')
            quoted = !quoted;
        else if (quoted && *c->p == '\\' && c->p + 1 < c->end)
            c->p++;
    }
    const char *e = c->p;
    while (e > start && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    return (ws_span){start, (size_t)(e - start)};
}

/* A window size: "8".."15" (quotes allowed, RFC 7692 section 7.1), else 0. */
static int window_bits(ws_span v)
{
    if (v.n >= 2 && v.p[0] == '"' && v.p[v.n - 1] == '"')
        v = (ws_span){v.p + 1, v.n - 2};
    if (v.n == 1 && v.p[0] >= '8' && v.p[0] <= '9')
        return v.p[0] - '0';
    if (v.n == 2 && v.p[0] == '1' && v.p[1] >= '0' && v.p[1] <= '5')
        return 10 + v.p[1] - '0';
    return 0;
}

enum { P_SNCT = 1, P_CNCT = 2, P_SMWB = 4, P_CMWB = 8 };

/* One parameter "name[=value]" of a permessage-deflate offer into *p; false if it makes the
 * offer one to decline (unknown, repeated, a value where none belongs or a bad one, a window
 * the server cannot compress with). */
static bool take_param(ws_span param, unsigned *seen, ws_pmd *p)
{
    const char *eq = memchr(param.p, '=', param.n);
    ws_span name = {param.p, eq ? (size_t)(eq - param.p) : param.n};
    while (name.n && (name.p[name.n - 1] == ' ' || name.p[name.n - 1] == '\t'))
        name.n--;
    cur vc = {eq ? eq + 1 : param.p + param.n, param.p + param.n};
    ws_span value = until(&vc, "");
    unsigned bit = ws_span_ieq(name, "server_no_context_takeover")   ? P_SNCT
                   : ws_span_ieq(name, "client_no_context_takeover") ? P_CNCT
                   : ws_span_ieq(name, "server_max_window_bits")     ? P_SMWB
                   : ws_span_ieq(name, "client_max_window_bits")     ? P_CMWB
                                                                     : 0;
    if (!bit || (*seen & bit))
        return false;
    *seen |= bit;
    if (bit & (P_SNCT | P_CNCT))
        return !eq;
    int bits = eq ? window_bits(value) : 0;
    if (bit == P_CMWB)
        return !eq || bits; /* any window: one inflater of 15 bits reads them all */
    if (bits < WS_PMD_WINDOW_MIN)
        return false; /* absent, bad, or 8 (zlib's raw deflate cannot keep to 256 bytes) */
    p->server_window = (uint8_t)bits;
    p->server_window_said = true;
    return true;
}

/* The offer at the cursor (an extension up to the next ','): true if it is permessage-deflate
 * and acceptable, *p then filled. */
static bool take_offer(cur *c, ws_pmd *p)
{
    ws_span ext = until(c, ",");
    cur ec = {ext.p, ext.p + ext.n};
    ws_span name = until(&ec, ";");
    if (!ws_span_ieq(name, "permessage-deflate"))
        return false;
    *p = (ws_pmd){WS_PMD_WINDOW_MAX, false};
    unsigned seen = 0;
    while (ec.p < ec.end) {
        ec.p++; /* the ';' */
        ws_span param = until(&ec, ";");
        if (!param.n || !take_param(param, &seen, p))
            return false;
    }
    return true;
}

int ws_pmd_negotiate(const ws_http_req *req, ws_pmd *p)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        if (!ws_span_ieq(req->headers[i].name, "Sec-WebSocket-Extensions"))
            continue;
        cur c = {req->headers[i].value.p, req->headers[i].value.p + req->headers[i].value.n};
        while (c.p < c.end) {
            if (take_offer(&c, p))
                return 1;
            if (c.p < c.end)
                c.p++; /* the ',' */
        }
    }
    return 0;
}

size_t ws_pmd_response(char *out, size_t cap, const ws_pmd *p)
{
    char window[32] = "";
    if (p->server_window_said)
        snprintf(window, sizeof window, "; server_max_window_bits=%u", p->server_window);
    int n = snprintf(out, cap,
                     "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
                     "client_no_context_takeover%s\r\n", window);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}
