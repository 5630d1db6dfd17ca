/* ws_utf8: incremental UTF-8 validation (RFC 3629) for text frames split anywhere.
 * Pure: no I/O, no allocation. Fails at the first byte that cannot begin or continue a valid
 * sequence, so a bad fragment is rejected before the rest of the message arrives. */
#ifndef WS_UTF8_H
#define WS_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Validator state; zero-initialise (or ws_utf8_reset) before the first byte of a message. */
typedef struct ws_utf8 {
    uint8_t need; /* continuation bytes still expected */
    uint8_t lo;   /* allowed range of the next continuation byte */
    uint8_t hi;
} ws_utf8;

enum {
    WS_UTF8_OK = 0,       /* valid, and ends on a character boundary */
    WS_UTF8_PARTIAL = 1,  /* valid so far, but ends inside a multi-byte character */
    WS_UTF8_INVALID = -1, /* a byte that no continuation can make valid */
};

static inline void ws_utf8_reset(ws_utf8 *u) { u->need = 0; u->lo = 0x80; u->hi = 0xBF; }

/* Validates n more bytes continuing from state u; returns WS_UTF8_OK, _PARTIAL or _INVALID.
 * After _INVALID the state is meaningless until reset. */
int ws_utf8_feed(ws_utf8 *u, const uint8_t *s, size_t n);

/* Validates one complete string: 1 if valid UTF-8, 0 if not. */
int ws_utf8_valid(const uint8_t *s, size_t n);

#endif
