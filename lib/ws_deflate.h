/* ws_deflate: one WebSocket message compressed or inflated as permessage-deflate (RFC 7692
 * section 7.2) with no context kept between messages (both no_context_takeover parameters,
 * which ws_pmd always agrees): a broadcast is compressed once and the same bytes suit every
 * subscriber, and one inflater serves every connection of a worker. zlib, not libdeflate: its
 * inflate stops at an output bound (a decompression bomb costs no more than the message
 * limit) and reads the sync-flush ending every client sends. No I/O. */
#ifndef WS_DEFLATE_H
#define WS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

typedef struct ws_deflater {
    z_stream z;
} ws_deflater;

typedef struct ws_inflater {
    z_stream z;
} ws_inflater;

/* A compressor at zlib level (1..9) with a window of 2^window_bits (9..15, the agreed
 * server_max_window_bits). 0, or -1 out of memory. */
int ws_deflater_init(ws_deflater *d, int level, int window_bits);
void ws_deflater_free(ws_deflater *d);

/* Compresses in[0..n) as one message into out[0..cap): the payload of a frame with RSV1 set
 * (the trailing 00 00 ff ff left out, as the RFC asks). Returns its length, or 0 if it does
 * not fit in cap (send the message uncompressed then: choose cap below n to compress only
 * what gains). */
size_t ws_deflate(ws_deflater *d, const void *in, size_t n, uint8_t *out, size_t cap);

/* An inflater for messages compressed with any window up to 2^15. 0, or -1 out of memory. */
int ws_inflater_init(ws_inflater *z);
void ws_inflater_free(ws_inflater *z);

#define WS_INFLATE_TOO_BIG (-1) /* more than max bytes: close 1009 */
#define WS_INFLATE_BAD (-2)     /* not a deflate stream: close 1007 */

/* Inflates the payload in[0..n) of one compressed message into out[0..max). Returns the
 * message's length, WS_INFLATE_TOO_BIG as soon as it would pass max (the rest is never
 * inflated), or WS_INFLATE_BAD. */
long ws_inflate(ws_inflater *z, const void *in, size_t n, uint8_t *out, size_t max);

#endif
