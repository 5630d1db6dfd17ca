#include "wbuf.h"

#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"

wbuf *wbuf_new(size_t cap)
{
    if (cap > UINT32_MAX)
        return NULL;
    wbuf *b = malloc(sizeof *b + cap);
    if (b) {
        b->refs = 1;
        b->len = 0;
        b->seq = 0;
        b->chan = NULL;
        b->alt = NULL;
    }
    return b;
}

wbuf *wbuf_frame(uint8_t opcode, size_t payload_len, uint8_t **payload)
{
    wbuf *b = wbuf_new(WS_MAX_HEADER + payload_len);
    if (!b)
        return NULL;
    size_t h = ws_frame_header(b->data, opcode, true, false, payload_len, NULL);
    b->len = (uint32_t)(h + payload_len);
    *payload = b->data + h;
    return b;
}

wbuf *wbuf_frame_copy(uint8_t opcode, const void *payload, size_t len)
{
    uint8_t *p;
    wbuf *b = wbuf_frame(opcode, len, &p);
    if (b && len)
        memcpy(p, payload, len);
    return b;
}

void wbuf_unref(wbuf *b)
{
    if (--b->refs == 0) {
        if (b->alt)
            wbuf_unref(b->alt);
        free(b);
    }
}

wbuf **wbuf_ring_conflatable(wbuf **q, uint32_t cap, uint32_t head, uint32_t from, uint32_t len,
                             const wbuf *frame)
{
    if (!frame->chan || !frame->seq)
        return NULL;
    for (uint32_t i = len; i > from; i--) {
        wbuf **slot = &q[(head + i - 1) & (cap - 1)];
        if ((*slot)->chan == frame->chan)
            return (*slot)->seq < frame->seq ? slot : NULL;
    }
    return NULL;
}
