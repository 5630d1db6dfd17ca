/* libFuzzer target for ws_deflate: any bytes inflated as a compressed message under a small
 * bound come out within it (or are refused); what comes out compresses and inflates back to
 * itself. Input: 1 byte choosing the bound (x 64 bytes, +1), then the compressed payload. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_deflate.h"

#define CHECK(c) \
    do {         \
        if (!(c))  \
            abort(); \
    } while (0)

#define OUT_MAX (256 * 64 + 1)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ws_deflater d;
    static ws_inflater z;
    static uint8_t out[OUT_MAX], c[2 * OUT_MAX + 64], back[OUT_MAX];
    static int ready;
    if (!ready) {
        CHECK(ws_deflater_init(&d, 6, 15) == 0 && ws_inflater_init(&z) == 0);
        ready = 1;
    }
    if (size < 1)
        return 0;
    size_t max = (size_t)data[0] * 64 + 1;
    long n = ws_inflate(&z, data + 1, size - 1, out, max);
    CHECK(n == WS_INFLATE_TOO_BIG || n == WS_INFLATE_BAD || (n >= 0 && (size_t)n <= max));
    if (n < 0)
        return 0;
    size_t cn = ws_deflate(&d, out, (size_t)n, c, sizeof c);
    CHECK(cn > 0);
    CHECK(ws_inflate(&z, c, cn, back, max) == n);
    CHECK(memcmp(back, out, (size_t)n) == 0);
    return 0;
}
