#include "ws_deflate.h"

#include <limits.h>
#include <string.h>

/* The end of a sync flush: the compressor's, taken off; the inflater's, put back. */
static const uint8_t TAIL[4] = {0x00, 0x00, 0xff, 0xff};

int ws_deflater_init(ws_deflater *d, int level, int window_bits)
{
    memset(d, 0, sizeof *d);
    /* memLevel 8 (zlib's default): the hash table cleared on every reset is 64 KiB, paid once
     * per broadcast, not per subscriber. */
    return deflateInit2(&d->z, level, Z_DEFLATED, -window_bits, 8, Z_DEFAULT_STRATEGY) == Z_OK ? 0 : -1;
}

void ws_deflater_free(ws_deflater *d) { deflateEnd(&d->z); }

size_t ws_deflate(ws_deflater *d, const void *in, size_t n, uint8_t *out, size_t cap)
{
    z_stream *z = &d->z;
    if (deflateReset(z) != Z_OK || n > UINT32_MAX || cap > UINT32_MAX)
        return 0;
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)n;
    z->next_out = out;
    z->avail_out = (uInt)cap;
    int rc = deflate(z, Z_SYNC_FLUSH);
    /* Room left over is the proof that the flush is complete. */
    if ((rc != Z_OK && rc != Z_BUF_ERROR) || z->avail_in || !z->avail_out)
        return 0;
    size_t len = cap - z->avail_out;
    if (len < sizeof TAIL || memcmp(out + len - sizeof TAIL, TAIL, sizeof TAIL) != 0)
        return 0;
    return len - sizeof TAIL;
}

int ws_inflater_init(ws_inflater *z)
{
    memset(z, 0, sizeof *z);
    return inflateInit2(&z->z, -15) == Z_OK ? 0 : -1;
}

void ws_inflater_free(ws_inflater *z) { inflateEnd(&z->z); }

long ws_inflate(ws_inflater *zi, const void *in, size_t n, uint8_t *out, size_t max)
{
    z_stream *z = &zi->z;
    uint8_t extra; /* one byte past max: where a message too big shows itself */
    if (inflateReset(z) != Z_OK || n > UINT32_MAX || max > LONG_MAX || max > UINT32_MAX)
        return WS_INFLATE_BAD;
    z->next_out = out;
    z->avail_out = (uInt)max;
    for (int pass = 0; pass < 2; pass++) {
        z->next_in = (Bytef *)(pass ? TAIL : in);
        z->avail_in = pass ? (uInt)sizeof TAIL : (uInt)n;
        while (z->avail_in) {
            if (!z->avail_out) { /* max reached: is there more? */
                z->next_out = &extra;
                z->avail_out = 1;
            }
            int rc = inflate(z, Z_SYNC_FLUSH);
            if (z->next_out == &extra + 1)
                return WS_INFLATE_TOO_BIG;
            if (rc == Z_STREAM_END) /* a final block: what follows it is not the message's */
                return z->next_out == &extra ? (long)max : (long)(z->next_out - out);
            if (rc == Z_BUF_ERROR)
                break; /* no progress without more input */
            if (rc != Z_OK)
                return WS_INFLATE_BAD;
        }
    }
    return z->next_out == &extra ? (long)max : (long)(z->next_out - out);
}
