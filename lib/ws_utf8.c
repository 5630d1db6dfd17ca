#include "ws_utf8.h"

#include <string.h>

/* Lead byte -> number of continuation bytes and the allowed range of the first one.
 * The narrowed ranges reject overlong forms (E0, F0), UTF-16 surrogates (ED) and code points
 * above U+10FFFF (F4). */
static int lead(ws_utf8 *u, uint8_t b)
{
    if (b >= 0xC2 && b <= 0xDF) { u->need = 1; u->lo = 0x80; u->hi = 0xBF; return 1; }
    if (b == 0xE0)               { u->need = 2; u->lo = 0xA0; u->hi = 0xBF; return 1; }
    if (b == 0xED)               { u->need = 2; u->lo = 0x80; u->hi = 0x9F; return 1; }
    if (b >= 0xE1 && b <= 0xEF)  { u->need = 2; u->lo = 0x80; u->hi = 0xBF; return 1; }
    if (b == 0xF0)               { u->need = 3; u->lo = 0x90; u->hi = 0xBF; return 1; }
    if (b >= 0xF1 && b <= 0xF3)  { u->need = 3; u->lo = 0x80; u->hi = 0xBF; return 1; }
    if (b == 0xF4)               { u->need = 3; u->lo = 0x80; u->hi = 0x8F; return 1; }
    return 0;
}

int ws_utf8_feed(ws_utf8 *u, const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (u->need == 0) {
            /* ASCII fast path: eight bytes at a time while no high bit is set. */
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & 0x8080808080808080ULL)
                    break;
                i += 8;
            }
            if (i == n)
                break;
            uint8_t b = s[i++];
            if (b < 0x80)
                continue;
            if (!lead(u, b))
                return WS_UTF8_INVALID;
        } else {
            uint8_t b = s[i++];
            if (b < u->lo || b > u->hi)
                return WS_UTF8_INVALID;
            u->need--;
            u->lo = 0x80;
            u->hi = 0xBF;
        }
    }
    return u->need ? WS_UTF8_PARTIAL : WS_UTF8_OK;
}

int ws_utf8_valid(const uint8_t *s, size_t n)
{
    ws_utf8 u;
    ws_utf8_reset(&u);
    return ws_utf8_feed(&u, s, n) == WS_UTF8_OK;
}
