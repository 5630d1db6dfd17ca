#include "ws_http.h"

#include <http_parser.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct parse_ctx {
    ws_http_req *req;
    const ws_http_limits *lim;
    bool too_many;
    bool in_value; /* the last callback was a header value: a second one means obs-fold */
} parse_ctx;

static int on_url(http_parser *hp, const char *at, size_t n)
{
    parse_ctx *c = hp->data;
    const char *q = memchr(at, '?', n);
    c->req->path = (ws_span){at, q ? (size_t)(q - at) : n};
    c->req->query = q ? (ws_span){q + 1, n - (size_t)(q - at) - 1} : (ws_span){q, 0};
    return 0;
}

/* RFC 9110 section 5.6.2 tchar: a field name is a token. */
static bool tchar(unsigned char x)
{
    return (x >= 'a' && x <= 'z') || (x >= 'A' && x <= 'Z') || (x >= '0' && x <= '9') ||
           (x && strchr("!#$%&'*+-.^_`|~", x));
}

static int on_field(http_parser *hp, const char *at, size_t n)
{
    parse_ctx *c = hp->data;
    ws_http_req *r = c->req;
    for (size_t i = 0; i < n; i++)
        if (!tchar((unsigned char)at[i]))
            return 1; /* e.g. "Host : x": whitespace before the colon (RFC 9112 section 5.1) */
    if (r->nheaders >= c->lim->max_headers) {
        c->too_many = true;
        return 1;
    }
    r->headers[r->nheaders].name = (ws_span){at, n};
    r->headers[r->nheaders].value = (ws_span){at + n, 0};
    r->nheaders++;
    c->in_value = false;
    return 0;
}

static int on_value(http_parser *hp, const char *at, size_t n)
{
    parse_ctx *c = hp->data;
    ws_http_req *r = c->req;
    if (c->in_value || r->nheaders == 0)
        return 1; /* obsolete line folding: refused (RFC 9112 section 5.2) */
    c->in_value = true;
    while (n && (at[n - 1] == ' ' || at[n - 1] == '\t'))
        n--;
    r->headers[r->nheaders - 1].value = (ws_span){at, n};
    return 0;
}

/* Finds the blank line ending the head; returns the head length or 0. */
static size_t head_end(const char *buf, size_t len, size_t from)
{
    for (size_t i = from; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (i + 1 < len && buf[i + 1] == '\n')
            return i + 2;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

int ws_http_parse(const char *buf, size_t len, size_t last_len, const ws_http_limits *lim,
                  ws_http_req *req)
{
    size_t from = last_len > 3 ? last_len - 3 : 0;
    size_t end = head_end(buf, len, from);
    if (end == 0)
        return len > lim->max_head ? WS_HTTP_TOO_LARGE : WS_HTTP_PARTIAL;
    if (end > lim->max_head)
        return WS_HTTP_TOO_LARGE;
    /* A line starting with whitespace is obs-fold, or junk before the first header; refused
     * (RFC 9112 sections 5.2, 2.2). http-parser skips the callback for an empty value, so the
     * in_value check alone misses "X:\r\n y". */
    for (size_t i = 0; i + 1 < end; i++)
        if (buf[i] == '\n' && (buf[i + 1] == ' ' || buf[i + 1] == '\t'))
            return WS_HTTP_BAD;

    memset(req, 0, offsetof(ws_http_req, headers));
    static const http_parser_settings settings = {
        .on_url = on_url,
        .on_header_field = on_field,
        .on_header_value = on_value,
    };
    ws_http_limits l = *lim;
    if (l.max_headers > WS_HTTP_HEADERS_CAP)
        l.max_headers = WS_HTTP_HEADERS_CAP;
    parse_ctx c = {.req = req, .lim = &l};
    http_parser hp;
    http_parser_init(&hp, HTTP_REQUEST);
    hp.data = &c;
    size_t used = http_parser_execute(&hp, &settings, buf, end);
    if (c.too_many)
        return WS_HTTP_TOO_LARGE;
    enum http_errno e = HTTP_PARSER_ERRNO(&hp);
    /* A head fed alone either completes (upgrade requests stop there) or waits for a body. */
    if (e != HPE_OK || used != end || req->path.p == NULL)
        return WS_HTTP_BAD;
    const char *m = http_method_str((enum http_method)hp.method);
    req->method = (ws_span){m, strlen(m)};
    req->http_major = hp.http_major;
    req->http_minor = hp.http_minor;
    req->head_len = end;
    req->content_length = (hp.flags & F_CONTENTLENGTH) ? (int64_t)hp.content_length : -1;
    req->chunked = hp.flags & F_CHUNKED;
    return (int)end;
}

/* ---- response heads --------------------------------------------------------------------
 * Written by hand rather than on http-parser: a client wants bad bytes refused as soon as they
 * arrive (a peer speaking something else, a TLS record on a plain socket), not once 16 KiB or a
 * timeout have passed, and http-parser, fed a head alone, takes over the body's framing (a
 * response without Content-Length is a body until EOF). A status line and header lines are a
 * small grammar; the checks follow RFC 9112 sections 2, 4 and 5. */

/* True for a byte a head may hold: VCHAR, obs-text, SP, HTAB and the line ends. */
static bool head_byte(unsigned char x)
{
    return x >= 0x20 ? x != 0x7F : x == '\t' || x == '\r' || x == '\n';
}

/* Index of the first byte in buf[from..to) no head may hold (a CR must precede an LF), or to. */
static size_t bad_byte(const char *buf, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (!head_byte((unsigned char)buf[i]) || (buf[i] == '\r' && i + 1 < to && buf[i + 1] != '\n'))
            return i;
    return to;
}

/* True if buf[0..len) can begin "HTTP/d.d ddd" (status 100-999) then SP or a line end. */
static bool status_prefix(const char *buf, size_t len)
{
    static const char pat[] = "HTTP/d.d Ddd"; /* d: a digit; D: a digit but 0 */
    for (size_t i = 0; i < len && i <= 12; i++) {
        char c = buf[i];
        bool ok = i == 12 ? c == ' ' || c == '\r' || c == '\n'
                : pat[i] == 'd' ? c >= '0' && c <= '9'
                : pat[i] == 'D' ? c >= '1' && c <= '9'
                : c == pat[i];
        if (!ok)
            return false;
    }
    return true;
}

/* The line at p before stop: returns its length without CR LF and sets *next past it. */
static size_t line_at(const char *p, const char *stop, const char **next)
{
    const char *eol = memchr(p, '\n', (size_t)(stop - p));
    if (!eol)
        eol = stop;
    *next = eol < stop ? eol + 1 : stop;
    return (size_t)(eol - p) - (eol > p && eol[-1] == '\r');
}

/* Content-Length: 1*DIGIT, the same value if repeated. Returns 0 or WS_HTTP_BAD. */
static int content_length(ws_span v, ws_http_resp *r)
{
    int64_t x = 0;
    if (v.n == 0 || v.n > 18)
        return WS_HTTP_BAD;
    for (size_t i = 0; i < v.n; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            return WS_HTTP_BAD;
        x = x * 10 + (v.p[i] - '0');
    }
    if (r->content_length >= 0 && r->content_length != x)
        return WS_HTTP_BAD;
    r->content_length = x;
    return 0;
}

/* One header line p[0..n): name ':' OWS value OWS. Returns 0 or an error. */
static int resp_header(const char *p, size_t n, size_t max_headers, ws_http_resp *r)
{
    size_t k = 0;
    while (k < n && tchar((unsigned char)p[k]))
        k++;
    if (k == 0 || k == n || p[k] != ':') /* also a folded line, which starts with SP or HTAB */
        return WS_HTTP_BAD;
    if (r->nheaders >= max_headers)
        return WS_HTTP_TOO_LARGE;
    size_t v = k + 1, e = n;
    while (v < e && (p[v] == ' ' || p[v] == '\t'))
        v++;
    while (e > v && (p[e - 1] == ' ' || p[e - 1] == '\t'))
        e--;
    ws_http_header *h = &r->headers[r->nheaders++];
    h->name = (ws_span){p, k};
    h->value = (ws_span){p + v, e - v};
    if (ws_span_ieq(h->name, "Content-Length"))
        return content_length(h->value, r);
    if (ws_span_ieq(h->name, "Transfer-Encoding"))
        r->chunked = ws_http_has_token(h->value, "chunked");
    return 0;
}

/* Parses the complete head buf[0..end). Returns end or an error. */
static int resp_head(const char *buf, size_t end, const ws_http_limits *lim, ws_http_resp *r)
{
    memset(r, 0, offsetof(ws_http_resp, headers));
    r->content_length = -1;
    if (bad_byte(buf, 0, end) != end)
        return WS_HTTP_BAD;
    const char *p = buf, *stop = buf + end, *next;
    size_t n = line_at(p, stop, &next);
    if (n < 12 || !status_prefix(p, n) || (n > 12 && p[12] != ' '))
        return WS_HTTP_BAD;
    r->http_major = p[5] - '0';
    r->http_minor = p[7] - '0';
    r->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    r->reason = n > 12 ? (ws_span){p + 13, n - 13} : (ws_span){p + n, 0};
    size_t max = lim->max_headers < WS_HTTP_HEADERS_CAP ? lim->max_headers : WS_HTTP_HEADERS_CAP;
    for (p = next; (n = line_at(p, stop, &next)) > 0; p = next) {
        int rc = resp_header(p, n, max, r);
        if (rc < 0)
            return rc;
    }
    r->head_len = end;
    return (int)end;
}

int ws_http_parse_response(const char *buf, size_t len, size_t last_len,
                           const ws_http_limits *lim, ws_http_resp *resp)
{
    if (last_len > len)
        last_len = 0;
    size_t end = head_end(buf, len, last_len > 3 ? last_len - 3 : 0);
    size_t upto = end ? end : len;
    /* Only new bytes are scanned: one before them, for a CR whose LF had not come. */
    if (!status_prefix(buf, upto) || bad_byte(buf, last_len ? last_len - 1 : 0, upto) != upto)
        return WS_HTTP_BAD;
    if (end == 0)
        return len > lim->max_head ? WS_HTTP_TOO_LARGE : WS_HTTP_PARTIAL;
    if (end > lim->max_head)
        return WS_HTTP_TOO_LARGE;
    return resp_head(buf, end, lim, resp);
}

static const ws_span *find_header(const ws_http_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (ws_span_ieq(h[i].name, name))
            return &h[i].value;
    return NULL;
}

const ws_span *ws_http_resp_get(const ws_http_resp *resp, const char *name)
{
    return find_header(resp->headers, resp->nheaders, name);
}

bool ws_span_eq(ws_span s, const char *z)
{
    return strlen(z) == s.n && memcmp(s.p, z, s.n) == 0;
}

bool ws_span_ieq(ws_span s, const char *z)
{
    return strlen(z) == s.n && strncasecmp(s.p, z, s.n) == 0;
}

const ws_span *ws_http_get(const ws_http_req *req, const char *name)
{
    return find_header(req->headers, req->nheaders, name);
}

size_t ws_http_count(const ws_http_req *req, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < req->nheaders; i++)
        n += ws_span_ieq(req->headers[i].name, name);
    return n;
}

bool ws_http_has_token(ws_span v, const char *tok)
{
    size_t i = 0;
    while (i < v.n) {
        while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ','))
            i++;
        size_t s = i;
        while (i < v.n && v.p[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t'))
            e--;
        if (e > s && ws_span_ieq((ws_span){v.p + s, e - s}, tok))
            return true;
    }
    return false;
}

const char *ws_http_reason(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

size_t ws_http_response(char *out, size_t cap, int status, const char *extra,
                        const char *content_type, const char *body, size_t body_len)
{
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\n%sContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, ws_http_reason(status), extra ? extra : "",
                     content_type ? content_type : "text/plain; charset=utf-8", body_len);
    /* n >= cap: snprintf cut the head short (its NUL took the last byte). */
    if (n < 0 || (size_t)n >= cap || (size_t)n + body_len > cap)
        return 0;
    if (body_len)
        memcpy(out + n, body, body_len);
    return (size_t)n + body_len;
}

bool ws_http_query_next(ws_span query, const char *name, size_t *at, ws_span *value)
{
    if (query.n == 0 || *at >= query.n)
        return false; /* query.p may be NULL: no arithmetic on it */
    size_t nl = strlen(name);
    const char *p = query.p + *at, *end = query.p + query.n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) >= nl && memcmp(p, name, nl) == 0 &&
            (p + nl == stop || p[nl] == '=')) {
            const char *v = p + nl == stop ? stop : p + nl + 1;
            *value = (ws_span){v, (size_t)(stop - v)};
            *at = (size_t)(stop - query.p) + 1;
            return true;
        }
        p = stop + 1;
    }
    *at = query.n;
    return false;
}

bool ws_http_query_get(ws_span query, const char *name, ws_span *value)
{
    size_t at = 0;
    return ws_http_query_next(query, name, &at, value);
}

static int hex_value(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

size_t ws_http_pct_decode(char *out, size_t cap, ws_span in)
{
    size_t n = 0;
    for (size_t i = 0; i < in.n; i++, n++) {
        if (n == cap)
            return SIZE_MAX;
        if (in.p[i] != '%') {
            out[n] = in.p[i];
            continue;
        }
        int hi = i + 2 < in.n ? hex_value(in.p[i + 1]) : -1, lo = hi >= 0 ? hex_value(in.p[i + 2]) : -1;
        if (lo < 0)
            return SIZE_MAX;
        out[n] = (char)(hi * 16 + lo);
        i += 2;
    }
    return n;
}
