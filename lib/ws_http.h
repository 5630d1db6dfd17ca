/* ws_http: HTTP/1.x request heads (RFC 9112), response heads, and small responses. Pure: no
 * I/O, no allocation. Request heads are checked by http-parser, response heads by a small
 * parser of its own (for clients: wsload, tests); results are spans into the caller's buffer. */
#ifndef WS_HTTP_H
#define WS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_HTTP_HEADERS_CAP 128 /* hard ceiling on ws_http_limits.max_headers */

enum {
    WS_HTTP_PARTIAL = -2,   /* the head is not complete yet: feed more */
    WS_HTTP_BAD = -1,       /* malformed: answer 400 */
    WS_HTTP_TOO_LARGE = -3, /* head longer than max_head, or more than max_headers: answer 431 */
};

typedef struct ws_http_limits {
    size_t max_head;    /* longest request head in bytes (request line + headers + CRLFCRLF) */
    size_t max_headers; /* most header lines, at most WS_HTTP_HEADERS_CAP */
} ws_http_limits;

typedef struct ws_span {
    const char *p;
    size_t n;
} ws_span;

typedef struct ws_http_header {
    ws_span name;
    ws_span value; /* without leading or trailing whitespace */
} ws_http_header;

typedef struct ws_http_req {
    ws_span method; /* "GET" */
    ws_span path;   /* request target before '?' */
    ws_span query;  /* after '?', without it; n == 0 if none */
    int http_major, http_minor;
    size_t head_len;       /* bytes of the head; what follows is body or another protocol */
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding: chunked */
    size_t nheaders;
    ws_http_header headers[WS_HTTP_HEADERS_CAP];
} ws_http_req;

typedef struct ws_http_resp {
    int http_major, http_minor;
    int status;             /* 100-999 */
    ws_span reason;         /* reason phrase; n == 0 if none */
    size_t head_len;        /* bytes of the head; what follows is body or another protocol */
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding ends in chunked */
    size_t nheaders;
    ws_http_header headers[WS_HTTP_HEADERS_CAP];
} ws_http_resp;

/* Parses the response head at the start of buf[0..len) (status line, header lines, blank line;
 * CRLF or LF line ends). last_len as for ws_http_parse: only bytes from there on are scanned
 * again until the head is complete. A byte no head may hold (a control character, a status
 * line not starting "HTTP/d.d ddd") is WS_HTTP_BAD at once; the rest of the grammar is checked
 * when the head is complete. Returns the head length (> 0), WS_HTTP_PARTIAL, WS_HTTP_BAD or
 * WS_HTTP_TOO_LARGE (head over max_head, more than max_headers lines). *resp is only
 * meaningful after a head length. */
int ws_http_parse_response(const char *buf, size_t len, size_t last_len,
                           const ws_http_limits *lim, ws_http_resp *resp);

/* The first header of a response called name (case-insensitive), or NULL. */
const ws_span *ws_http_resp_get(const ws_http_resp *resp, const char *name);

/* Parses the request head at the start of buf[0..len). last_len is the length of buf at the
 * previous call for the same request (0 at first), so a head fed one byte at a time costs O(n).
 * Returns the head length (> 0), WS_HTTP_PARTIAL, WS_HTTP_BAD or WS_HTTP_TOO_LARGE. */
int ws_http_parse(const char *buf, size_t len, size_t last_len, const ws_http_limits *lim,
                  ws_http_req *req);

/* The first header called name (case-insensitive), or NULL. */
const ws_span *ws_http_get(const ws_http_req *req, const char *name);

/* The raw (still percent-encoded) value of parameter name in a query string "a=1&b=2";
 * true if present. */
bool ws_http_query_get(ws_span query, const char *name, ws_span *value);

/* The same for every parameter called name in turn: *at starts at 0 and moves past each one
 * found. False when there is no more. */
bool ws_http_query_next(ws_span query, const char *name, size_t *at, ws_span *value);

/* Percent-decodes in into out[0..cap) ('+' stays '+'); returns the length, or SIZE_MAX when
 * in is not valid percent-encoding or does not fit. */
size_t ws_http_pct_decode(char *out, size_t cap, ws_span in);

/* Number of headers called name. */
size_t ws_http_count(const ws_http_req *req, const char *name);

/* True if the comma-separated list v contains token tok (case-insensitive, whitespace trimmed). */
bool ws_http_has_token(ws_span v, const char *tok);

/* True if span s equals the C string z exactly / case-insensitively. */
bool ws_span_eq(ws_span s, const char *z);
bool ws_span_ieq(ws_span s, const char *z);

/* Reason phrase of an HTTP status code ("Bad Request"). */
const char *ws_http_reason(int status);

/* Writes a complete response with Connection: close into out[0..cap): status line, `extra`
 * header lines (each ending in CRLF, may be NULL), Content-Type and Content-Length for body.
 * Returns its length, or 0 if it does not fit. */
size_t ws_http_response(char *out, size_t cap, int status, const char *extra,
                        const char *content_type, const char *body, size_t body_len);

#endif
