/* libFuzzer target for ws_sse: a position token parsed from any bytes writes back to a token
 * that parses to the same positions; any data framed as an event reads back, by the event
 * stream rules (lines split at CR, LF or CRLF, "data: " stripped, joined by LF), as the data
 * with its line ends made LF. Input: the token or the data, as is. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_sse.h"

#define CHECK(c) \
    do {         \
        if (!(c))  \
            abort(); \
    } while (0)

#define MAXP 8

static void tokens(const uint8_t *data, size_t size)
{
    env_pos a[MAXP], b[MAXP];
    int n = ws_sse_token_parse((ws_span){(const char *)data, size}, a, MAXP);
    if (n < 0)
        return;
    char out[WS_SSE_TOKEN_MAX(MAXP)];
    size_t len = ws_sse_token(out, sizeof out, a, (size_t)n);
    CHECK(len > 0);
    CHECK(ws_sse_token_parse((ws_span){out, len}, b, MAXP) == n);
    for (int i = 0; i < n; i++)
        CHECK(a[i].seq == b[i].seq && a[i].epoch.n == b[i].epoch.n &&
              memcmp(a[i].epoch.p, b[i].epoch.p, a[i].epoch.n) == 0);
}

static void events(const uint8_t *data, size_t size)
{
    ws_span d = {(const char *)data, size}, id = {"1-e", 3};
    size_t len = ws_sse_event_len(id, d);
    char *ev = malloc(len), *want = malloc(size + 1), *got = malloc(size + 1);
    CHECK(ev && want && got && ws_sse_event(ev, len, id, d) == len);
    size_t wn = 0, gn = 0;
    for (size_t i = 0; i < size; i++) { /* the data with CR, LF and CRLF made LF */
        if (data[i] == '\r' && i + 1 < size && data[i + 1] == '\n')
            continue;
        want[wn++] = data[i] == '\r' ? '\n' : (char)data[i];
    }
    CHECK(len > 8 && memcmp(ev, "id: 1-e\n", 8) == 0 && ev[len - 1] == '\n' && ev[len - 2] == '\n');
    bool first = true;
    for (size_t at = 8; at < len - 1;) { /* every line is "data: ...", ended by LF alone */
        char *nl = memchr(ev + at, '\n', len - 1 - at);
        CHECK(nl && nl - (ev + at) >= 6 && memcmp(ev + at, "data: ", 6) == 0);
        CHECK(!memchr(ev + at, '\r', (size_t)(nl - (ev + at))));
        if (!first)
            got[gn++] = '\n';
        first = false;
        memcpy(got + gn, ev + at + 6, (size_t)(nl - (ev + at) - 6));
        gn += (size_t)(nl - (ev + at) - 6);
        at = (size_t)(nl - ev) + 1;
    }
    CHECK(gn == wn && memcmp(got, want, wn) == 0);
    free(ev);
    free(want);
    free(got);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tokens(data, size);
    events(data, size);
    return 0;
}
