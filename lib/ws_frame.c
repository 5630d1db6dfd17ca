#include "ws_frame.h"

#include <string.h>

enum { ST_HEADER, ST_PAYLOAD, ST_DEAD };

void ws_parser_init(ws_parser *p, const ws_parser_opts *opts)
{
    memset(p, 0, sizeof *p);
    p->opts = *opts;
    p->state = ST_HEADER;
    ws_utf8_reset(&p->utf8);
}

static size_t fail(ws_parser *p, ws_event *ev, size_t consumed, uint16_t code, const char *why)
{
    p->state = ST_DEAD;
    p->err_code = code;
    p->err_reason = why;
    ev->type = WS_EV_ERROR;
    ev->code = code;
    ev->reason = why;
    return consumed;
}

/* Bytes the header needs once its first two are known. */
static size_t header_size(const uint8_t *h)
{
    size_t n = 2;
    uint8_t l7 = h[1] & 0x7F;
    if (l7 == 126)
        n += 2;
    else if (l7 == 127)
        n += 8;
    if (h[1] & 0x80)
        n += 4;
    return n;
}

static bool is_control(uint8_t op) { return op & 0x8; }

/* Decodes the gathered header's payload length and mask key into *len and p->mask, and checks
 * the length is minimally encoded and the masking matches the side. Returns 0 or fails via ev. */
static int frame_length(ws_parser *p, ws_event *ev, uint64_t *len)
{
    const uint8_t *h = p->hdr;
    uint64_t n = h[1] & 0x7F;
    size_t at = 2;
    if (n == 126) {
        n = (uint64_t)h[2] << 8 | h[3];
        at = 4;
        if (n < 126) { /* RFC 6455 section 5.2: the minimal number of bytes MUST be used */
            fail(p, ev, 0, WS_CLOSE_PROTOCOL, "16-bit length for a payload under 126 bytes");
            return -1;
        }
    } else if (n == 127) {
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | h[2 + i];
        at = 10;
        if (n >> 63) {
            fail(p, ev, 0, WS_CLOSE_PROTOCOL, "64-bit length with the top bit set");
            return -1;
        }
        if (n < 65536) {
            fail(p, ev, 0, WS_CLOSE_PROTOCOL, "64-bit length for a payload under 64 KiB");
            return -1;
        }
    }
    p->masked = h[1] & 0x80;
    if (p->masked)
        memcpy(p->mask, h + at, 4);
    if (p->masked != p->opts.server) {
        fail(p, ev, 0, WS_CLOSE_PROTOCOL, p->opts.server ? "unmasked client frame" : "masked server frame");
        return -1;
    }
    *len = n;
    return 0;
}

/* Checks opcode op against the message state and opens a new data message. Returns 0 or fails
 * via ev. */
static int frame_opcode(ws_parser *p, ws_event *ev, uint8_t op, bool fin, bool rsv1, uint64_t len)
{
    switch (op) {
    case WS_OP_CONT:
        if (!p->in_message) {
            fail(p, ev, 0, WS_CLOSE_PROTOCOL, "continuation without a message");
            return -1;
        }
        if (rsv1) {
            fail(p, ev, 0, WS_CLOSE_PROTOCOL, "RSV1 on a continuation frame");
            return -1;
        }
        return 0;
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        if (p->in_message) {
            fail(p, ev, 0, WS_CLOSE_PROTOCOL, "new message inside a fragmented one");
            return -1;
        }
        if (rsv1 && !p->opts.rsv1) {
            fail(p, ev, 0, WS_CLOSE_PROTOCOL, "RSV1 set without an extension");
            return -1;
        }
        p->in_message = true;
        p->msg_first = true;
        p->msg_opcode = op;
        p->msg_compressed = rsv1;
        p->msg_len = 0;
        ws_utf8_reset(&p->utf8);
        return 0;
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        if (!fin) {
            fail(p, ev, 0, WS_CLOSE_PROTOCOL, "fragmented control frame");
            return -1;
        }
        if (len > WS_MAX_CONTROL) {
            fail(p, ev, 0, WS_CLOSE_PROTOCOL, "control frame longer than 125 bytes");
            return -1;
        }
        if (rsv1) {
            fail(p, ev, 0, WS_CLOSE_PROTOCOL, "RSV1 on a control frame");
            return -1;
        }
        return 0;
    default:
        fail(p, ev, 0, WS_CLOSE_PROTOCOL, "reserved opcode");
        return -1;
    }
}

/* Validates the gathered header and sets up the frame; returns 0 or fails via ev. */
static int start_frame(ws_parser *p, ws_event *ev)
{
    const uint8_t *h = p->hdr;
    uint8_t op = h[0] & 0x0F;
    bool fin = h[0] & 0x80;
    bool rsv1 = h[0] & 0x40;
    uint64_t len;

    if (h[0] & 0x30) {
        fail(p, ev, 0, WS_CLOSE_PROTOCOL, "RSV2/RSV3 set");
        return -1;
    }
    if (frame_length(p, ev, &len) < 0 || frame_opcode(p, ev, op, fin, rsv1, len) < 0)
        return -1;
    if (!is_control(op)) {
        if (p->opts.max_frame && len > p->opts.max_frame) {
            fail(p, ev, 0, WS_CLOSE_TOO_BIG, "frame larger than the limit");
            return -1;
        }
        if (p->opts.max_message && len > p->opts.max_message - p->msg_len) {
            fail(p, ev, 0, WS_CLOSE_TOO_BIG, "message larger than the limit");
            return -1;
        }
        p->msg_len += len;
    }
    p->opcode = op;
    p->fin = fin;
    p->remaining = len;
    p->offset = 0;
    p->ctl_len = 0;
    p->state = ST_PAYLOAD;
    return 0;
}

/* The current control frame is complete: report it. Returns 0 or fails via ev. */
static int finish_control(ws_parser *p, ws_event *ev)
{
    ev->data = p->ctl;
    ev->len = p->ctl_len;
    if (p->opcode == WS_OP_PING) {
        ev->type = WS_EV_PING;
        return 0;
    }
    if (p->opcode == WS_OP_PONG) {
        ev->type = WS_EV_PONG;
        return 0;
    }
    if (p->ctl_len == 0) {
        ev->type = WS_EV_CLOSE;
        ev->code = WS_CLOSE_NO_STATUS;
        return 0;
    }
    if (p->ctl_len == 1) {
        fail(p, ev, 0, WS_CLOSE_PROTOCOL, "close payload of one byte");
        return -1;
    }
    uint16_t code = (uint16_t)(p->ctl[0] << 8 | p->ctl[1]);
    if (!ws_close_code_valid(code)) {
        fail(p, ev, 0, WS_CLOSE_PROTOCOL, "invalid close code");
        return -1;
    }
    if (!ws_utf8_valid(p->ctl + 2, p->ctl_len - 2u)) {
        fail(p, ev, 0, WS_CLOSE_INVALID_DATA, "close reason is not UTF-8");
        return -1;
    }
    ev->type = WS_EV_CLOSE;
    ev->code = code;
    ev->data = p->ctl + 2;
    ev->len = p->ctl_len - 2u;
    return 0;
}

/* Reports n payload bytes at d (already unmasked) of the current data frame. */
static int data_piece(ws_parser *p, ws_event *ev, const uint8_t *d, size_t n)
{
    bool last = p->remaining == 0 && p->fin;
    if (p->msg_opcode == WS_OP_TEXT && !p->msg_compressed) {
        int r = ws_utf8_feed(&p->utf8, d, n);
        if (r == WS_UTF8_INVALID || (last && r != WS_UTF8_OK)) {
            fail(p, ev, 0, WS_CLOSE_INVALID_DATA, "text is not UTF-8");
            return -1;
        }
    }
    ev->type = WS_EV_DATA;
    ev->opcode = p->msg_opcode;
    ev->first = p->msg_first;
    ev->fin = last;
    ev->compressed = p->msg_compressed;
    ev->data = d;
    ev->len = n;
    p->msg_first = false;
    if (p->remaining == 0) {
        p->state = ST_HEADER;
        if (p->fin)
            p->in_message = false;
    }
    return 0;
}

size_t ws_parser_feed(ws_parser *p, uint8_t *buf, size_t len, ws_event *ev)
{
    size_t i = 0;
    memset(ev, 0, sizeof *ev);
    if (p->state == ST_DEAD)
        return fail(p, ev, 0, p->err_code, p->err_reason);

    for (;;) {
        if (p->state == ST_HEADER) {
            if (i == len)
                return i;
            size_t need = p->hdr_len < 2 ? 2 : header_size(p->hdr);
            while (p->hdr_len < need && i < len) {
                p->hdr[p->hdr_len++] = buf[i++];
                if (p->hdr_len == 2)
                    need = header_size(p->hdr);
            }
            if (p->hdr_len < need)
                return i; /* WS_EV_NONE: all consumed */
            p->hdr_len = 0;
            if (start_frame(p, ev) < 0)
                return i;
            if (p->remaining == 0) {
                if (is_control(p->opcode)) {
                    p->state = ST_HEADER;
                    finish_control(p, ev);
                    return i;
                }
                data_piece(p, ev, buf + i, 0);
                return i;
            }
        }

        /* ST_PAYLOAD */
        if (i == len)
            return i;
        size_t n = len - i;
        if (n > p->remaining)
            n = (size_t)p->remaining;
        uint8_t *d = buf + i;
        if (p->masked)
            ws_mask(d, n, p->mask, p->offset);
        p->offset += n;
        p->remaining -= n;
        i += n;
        if (is_control(p->opcode)) {
            memcpy(p->ctl + p->ctl_len, d, n);
            p->ctl_len = (uint8_t)(p->ctl_len + n);
            if (p->remaining == 0) {
                p->state = ST_HEADER;
                finish_control(p, ev);
                return i;
            }
            continue;
        }
        data_piece(p, ev, d, n);
        return i;
    }
}

void ws_mask(uint8_t *buf, size_t n, const uint8_t key[4], uint64_t offset)
{
    uint8_t k[4];
    for (int j = 0; j < 4; j++)
        k[j] = key[(offset + (uint64_t)j) & 3];
    size_t i = 0;
    /* Bytes until 8-byte alignment, rotating the key as we go. */
    while (i < n && ((uintptr_t)(buf + i) & 7)) {
        buf[i] ^= k[i & 3];
        i++;
    }
    if (n - i >= 8) {
        uint8_t kk[8];
        for (int j = 0; j < 8; j++)
            kk[j] = k[(i + (size_t)j) & 3];
        uint64_t w64;
        memcpy(&w64, kk, 8);
        for (; i + 8 <= n; i += 8) {
            uint64_t w;
            memcpy(&w, buf + i, 8);
            w ^= w64;
            memcpy(buf + i, &w, 8);
        }
    }
    for (; i < n; i++)
        buf[i] ^= k[i & 3];
}

size_t ws_frame_header(uint8_t *out, uint8_t opcode, bool fin, bool rsv1, uint64_t len,
                       const uint8_t *mask)
{
    size_t n = 2;
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0F));
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        out[1] = (uint8_t)(m | len);
    } else if (len <= 0xFFFF) {
        out[1] = m | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] = m | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

size_t ws_frame_client(uint8_t *out, uint8_t opcode, const void *payload, size_t len,
                       const uint8_t mask[4])
{
    size_t h = ws_frame_header(out, opcode, true, false, len, mask);
    if (len)
        memcpy(out + h, payload, len);
    ws_mask(out + h, len, mask, 0);
    return h + len;
}

size_t ws_close_payload(uint8_t *out, uint16_t code, const char *reason)
{
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    size_t r = reason ? strlen(reason) : 0;
    if (r > WS_MAX_CONTROL - 2)
        r = WS_MAX_CONTROL - 2;
    /* Never cut a UTF-8 character in half. */
    while (r > 0 && r < (reason ? strlen(reason) : 0) && ((uint8_t)reason[r] & 0xC0) == 0x80)
        r--;
    if (r)
        memcpy(out + 2, reason, r);
    return 2 + r;
}

bool ws_close_code_valid(uint16_t code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}
