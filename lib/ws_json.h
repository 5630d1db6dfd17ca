/* ws_json: a strict RFC 8259 validator and a walker over one object's members. Pure: no I/O,
 * no allocation, bounded nesting. Values stay verbatim spans of the input; nothing is decoded.
 * Written by hand rather than with jsmn: jsmn accepts malformed primitives (`tru`, `01`) and
 * needs a token array as large as the input, while pass-through data must be proven valid
 * JSON without allocating. */
#ifndef WS_JSON_H
#define WS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_JSON_MAX_DEPTH 64

typedef enum ws_json_type {
    WS_JSON_INVALID = 0,
    WS_JSON_OBJECT,
    WS_JSON_ARRAY,
    WS_JSON_STRING,
    WS_JSON_NUMBER,
    WS_JSON_TRUE,
    WS_JSON_FALSE,
    WS_JSON_NULL,
} ws_json_type;

/* Skips one value (no leading whitespace) starting at s[i] within s[0..n); returns the index
 * just past it, or 0 if it is not valid JSON (or nests deeper than WS_JSON_MAX_DEPTH). */
size_t ws_json_skip(const char *s, size_t n, size_t i);

/* Type of the value that starts at s[0] (by its first byte; not a validation). */
ws_json_type ws_json_type_of(const char *s, size_t n);

/* True if s[0..n) is exactly one valid JSON value with optional surrounding whitespace. */
bool ws_json_valid(const char *s, size_t n);

/* Walks the members of the object s[0..n) (one valid object with optional whitespace).
 * Calls fn(ctx, key, key_len, value, value_len) for each member in order; the key is the raw
 * text between the quotes (escapes not decoded). fn returning non-zero stops the walk and is
 * returned. Returns -1 if s is not a valid object, else 0 or fn's stop value. */
int ws_json_object(const char *s, size_t n,
                   int (*fn)(void *ctx, const char *key, size_t key_len, const char *val,
                             size_t val_len),
                   void *ctx);

/* In an object wsfan wrote itself, whose members before the one looked for are its own (an
 * ack, a reset, a msg's envelope before its data): the unsigned number right after key (e.g.
 * "\"seq\":"), or the body of the string right after key (e.g. "\"epoch\":\"", up to the
 * next quote). False when key is missing or not followed by one. A scan, not a parse (a key
 * cannot occur unescaped inside a string), for reading those frames without a walk. */
bool ws_json_u64_after(const char *s, size_t n, const char *key, uint64_t *v);
bool ws_json_str_after(const char *s, size_t n, const char *key, const char **v, size_t *len);

#endif
