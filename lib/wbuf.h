/* wbuf: a reference-counted byte buffer holding one outbound frame (or HTTP response). A
 * broadcast is framed once into a wbuf and queued by pointer on every subscriber. */
#ifndef WBUF_H
#define WBUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct wbuf {
    uint32_t refs;
    uint32_t len;     /* bytes of data in use */
    uint64_t seq;     /* a channel's msg frame: its seq; 0 for every other frame */
    const void *chan; /* a channel's msg frame: its channel (an identity, never dereferenced
                         here); NULL for every other frame */
    struct wbuf *alt; /* the same message for another transport (an SSE event), made once by
                         the first connection that needs it and shared; freed with this one */
    uint8_t data[];
} wbuf;

/* A buffer of cap bytes with one reference and len 0; NULL when out of memory. */
wbuf *wbuf_new(size_t cap);

/* A server frame (unmasked, FIN set) with room for payload_len bytes: writes the header, sets
 * len to the whole frame and *payload to where the caller writes the payload. */
wbuf *wbuf_frame(uint8_t opcode, size_t payload_len, uint8_t **payload);

/* A complete frame with a copy of payload. */
wbuf *wbuf_frame_copy(uint8_t opcode, const void *payload, size_t len);

static inline wbuf *wbuf_ref(wbuf *b)
{
    b->refs++;
    return b;
}

/* Drops one reference; frees the buffer with the last one. */
void wbuf_unref(wbuf *b);

/* Conflation in a queue of frames kept as a ring: frame i (0 the oldest) is
 * q[(head + i) & (cap - 1)] for i < len, cap a power of two. Returns the slot of the last
 * frame of frame's channel among frames from..len-1, provided it is older (a lower seq) than
 * frame: storing frame there keeps every channel's seqs increasing along the queue, since no
 * frame of that channel is queued after it. NULL when frame is not a channel's msg (chan NULL
 * or seq 0), when none of from..len-1 is on its channel, or when the last one is not older (a
 * seq that started again: frame must then go after it). The caller chooses from: frames
 * before it (one being written) stay as they are. */
wbuf **wbuf_ring_conflatable(wbuf **q, uint32_t cap, uint32_t head, uint32_t from, uint32_t len,
                             const wbuf *frame);

#endif
