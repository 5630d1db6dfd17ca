#include "ws_sse.h"

#include <string.h>

/* The length of the line starting at p (ending before CR, LF or end) and of its end. */
static size_t line_at(const char *p, const char *end, size_t *eol)
{
    const char *q = p;
    while (q < end && *q != '\r' && *q != '\n')
        q++;
    *eol = q == end ? 0 : (*q == '\r' && q + 1 < end && q[1] == '\n') ? 2 : 1;
    return (size_t)(q - p);
}

size_t ws_sse_event_len(ws_span id, ws_span data)
{
    size_t n = id.n ? 4 + id.n + 1 : 0;
    const char *p = data.p, *end = data.p + data.n;
    size_t eol = 1;
    while (eol) { /* a line end starts another line, empty if nothing follows */
        size_t len = line_at(p, end, &eol);
        n += 6 + len + 1;
        p += len + eol;
    }
    return n + 1;
}

size_t ws_sse_event(char *out, size_t cap, ws_span id, ws_span data)
{
    size_t need = ws_sse_event_len(id, data);
    if (need > cap)
        return 0;
    char *o = out;
    if (id.n) {
        memcpy(o, "id: ", 4);
        memcpy(o + 4, id.p, id.n);
        o += 4 + id.n;
        *o++ = '\n';
    }
    const char *p = data.p, *end = data.p + data.n;
    size_t eol = 1;
    while (eol) {
        size_t len = line_at(p, end, &eol);
        memcpy(o, "data: ", 6);
        memcpy(o + 6, p, len);
        o += 6 + len;
        *o++ = '\n';
        p += len + eol;
    }
    *o++ = '\n';
    return (size_t)(o - out);
}

size_t ws_sse_token(char *out, size_t cap, const env_pos *pos, size_t n)
{
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        char seq[21];
        size_t sl = 0;
        uint64_t v = pos[i].seq;
        do {
            seq[sl++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        if (at + (i ? 1 : 0) + sl + 1 + pos[i].epoch.n > cap)
            return 0;
        if (i)
            out[at++] = '_';
        while (sl)
            out[at++] = seq[--sl];
        out[at++] = '-';
        memcpy(out + at, pos[i].epoch.p, pos[i].epoch.n);
        at += pos[i].epoch.n;
    }
    return at;
}

static bool epoch_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.';
}

int ws_sse_token_parse(ws_span token, env_pos *pos, size_t max)
{
    const char *p = token.p, *end = token.p + token.n;
    size_t n = 0;
    if (token.n == 0)
        return -1;
    while (p <= end) {
        uint64_t seq = 0;
        const char *d = p;
        while (p < end && *p >= '0' && *p <= '9' && p - d < 20) {
            uint64_t next = seq * 10 + (uint64_t)(*p - '0');
            if (next / 10 != seq)
                return -1; /* beyond 64 bits */
            seq = next;
            p++;
        }
        if (p == d || p == end || *p != '-' || n == max)
            return -1;
        const char *e = ++p;
        while (p < end && epoch_char(*p))
            p++;
        if ((size_t)(p - e) > CLUSTER_EPOCH_MAX || (p < end && *p != '_'))
            return -1;
        pos[n++] = (env_pos){seq, {e, (size_t)(p - e)}};
        if (p == end)
            break;
        p++; /* the '_' */
    }
    return (int)n;
}
