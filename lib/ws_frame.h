/* ws_frame: RFC 6455 section 5 frames. A push parser that takes bytes as they arrive (any split,
 * down to one byte) and a serializer for frame headers and close payloads.
 * Pure: no I/O and no allocation; the parser unmasks payload in the caller's buffer in place. */
#ifndef WS_FRAME_H
#define WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ws_utf8.h"

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* Close status codes (RFC 6455 section 7.4.1 and the IANA registry). */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005, /* never sent: "no code in the close frame" */
    WS_CLOSE_ABNORMAL = 1006,  /* never sent: "closed without a close frame" */
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_EXTENSION = 1010,
    WS_CLOSE_INTERNAL = 1011,
    WS_CLOSE_RESTART = 1012,
    WS_CLOSE_TRY_AGAIN = 1013,
};

#define WS_MAX_HEADER 14   /* longest frame header: 2 + 8 length + 4 mask */
#define WS_MAX_CONTROL 125 /* longest control frame payload */

typedef struct ws_parser_opts {
    uint64_t max_frame;   /* largest payload of one frame; larger: error 1009 (0: no limit) */
    uint64_t max_message; /* largest message summed over its fragments; larger: 1009 (0: none) */
    bool server;          /* true: frames must be masked (from a client); false: must not be */
    bool rsv1;            /* an extension (permessage-deflate) gave RSV1 a meaning */
} ws_parser_opts;

typedef enum ws_event_type {
    WS_EV_NONE = 0, /* all input consumed, nothing to report: feed more */
    WS_EV_DATA,     /* a piece of a text or binary message, unmasked and (text) UTF-8 checked */
    WS_EV_PING,     /* a complete ping; data/len is its payload */
    WS_EV_PONG,     /* a complete pong */
    WS_EV_CLOSE,    /* a valid close frame; code (1005 if none) and data/len the reason */
    WS_EV_ERROR,    /* protocol fault: fail the connection with close code `code` */
} ws_event_type;

typedef struct ws_event {
    ws_event_type type;
    uint8_t opcode;      /* DATA: WS_OP_TEXT or WS_OP_BINARY, the type of the whole message */
    bool first;          /* DATA: first piece of the message */
    bool fin;            /* DATA: last piece of the message */
    bool compressed;     /* DATA: the message had RSV1 set (only when opts.rsv1) */
    uint16_t code;       /* CLOSE: the peer's code; ERROR: the code to close with */
    const char *reason;  /* ERROR: static text naming the fault, for logs */
    const uint8_t *data; /* payload span: inside the fed buffer (DATA) or the parser (control) */
    size_t len;
} ws_event;

/* Parser state. Embed it anywhere; ws_parser_init before use. ~170 bytes, owns no memory. */
typedef struct ws_parser {
    ws_parser_opts opts;
    uint8_t state;      /* internal: header, payload, dead */
    uint8_t hdr_len;    /* header bytes gathered so far */
    uint8_t hdr[WS_MAX_HEADER];
    uint8_t opcode;     /* current frame */
    bool fin;
    bool in_message;    /* a fragmented message is open */
    bool msg_first;     /* the next DATA piece is the message's first */
    bool msg_compressed;
    uint8_t msg_opcode;
    uint8_t mask[4];
    bool masked;
    uint8_t ctl_len;
    uint16_t err_code;  /* the fault, once dead */
    const char *err_reason;
    uint64_t remaining; /* payload bytes of the current frame still to come */
    uint64_t offset;    /* payload bytes of the current frame seen so far (mask phase) */
    uint64_t msg_len;   /* message bytes so far */
    ws_utf8 utf8;
    uint8_t ctl[WS_MAX_CONTROL];
} ws_parser;

void ws_parser_init(ws_parser *p, const ws_parser_opts *opts);

/* Consumes bytes from buf[0..len) and stops at the first event; returns the bytes consumed and
 * fills *ev. Payload is unmasked in place in buf. DATA spans point into buf; control payloads
 * into the parser; both stay valid until the next call. WS_EV_NONE means all len bytes were
 * consumed. After WS_EV_ERROR the parser only returns that error again. */
size_t ws_parser_feed(ws_parser *p, uint8_t *buf, size_t len, ws_event *ev);

/* True between the first and last fragment of a message. */
static inline bool ws_parser_in_message(const ws_parser *p) { return p->in_message; }

/* XORs n bytes with the 4-byte key, starting at key position `offset` (mod 4). A word at a time. */
void ws_mask(uint8_t *buf, size_t n, const uint8_t key[4], uint64_t offset);

/* Writes a frame header to out (at least WS_MAX_HEADER bytes) and returns its length.
 * mask NULL: unmasked (server to client); otherwise the 4-byte key is written too. */
size_t ws_frame_header(uint8_t *out, uint8_t opcode, bool fin, bool rsv1, uint64_t len,
                       const uint8_t *mask);

/* Writes one complete, final client frame to out (at least WS_MAX_HEADER + len bytes): the
 * header with the 4-byte key, then payload[0..len) masked with it. payload must not overlap out.
 * Returns the frame's length. The caller picks the key (RFC 6455 section 5.3: unpredictable). */
size_t ws_frame_client(uint8_t *out, uint8_t opcode, const void *payload, size_t len,
                       const uint8_t mask[4]);

/* Writes a close payload (2-byte code + reason, at most WS_MAX_CONTROL bytes; the reason is
 * truncated to fit) and returns its length. */
size_t ws_close_payload(uint8_t *out, uint16_t code, const char *reason);

/* True if a peer may send this code in a close frame (1000-1003, 1007-1014, 3000-4999). */
bool ws_close_code_valid(uint16_t code);

#endif
