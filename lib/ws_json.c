#include "ws_json.h"

#include <string.h>

static size_t ws(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

static bool digit(char c) { return c >= '0' && c <= '9'; }

static bool hex(char c)
{
    return digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* String starting at the opening quote; returns index past the closing quote, or 0.
 * Control characters must be escaped; UTF-8 validity is the caller's (text frames are checked). */
static size_t string(const char *s, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"')
            return i + 1;
        if (c < 0x20)
            return 0;
        if (c != '\\')
            continue;
        if (++i >= n)
            return 0;
        switch (s[i]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            break;
        case 'u':
            if (i + 4 >= n || !hex(s[i + 1]) || !hex(s[i + 2]) || !hex(s[i + 3]) || !hex(s[i + 4]))
                return 0;
            i += 4;
            break;
        default:
            return 0;
        }
    }
    return 0;
}

static size_t number(const char *s, size_t n, size_t i)
{
    if (i < n && s[i] == '-')
        i++;
    if (i >= n)
        return 0;
    if (s[i] == '0') {
        i++;
    } else if (digit(s[i])) {
        while (i < n && digit(s[i]))
            i++;
    } else {
        return 0;
    }
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !digit(s[i]))
            return 0;
        while (i < n && digit(s[i]))
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || !digit(s[i]))
            return 0;
        while (i < n && digit(s[i]))
            i++;
    }
    return i;
}

static size_t literal(const char *s, size_t n, size_t i, const char *lit)
{
    size_t l = strlen(lit);
    return n - i >= l && memcmp(s + i, lit, l) == 0 ? i + l : 0;
}

/* Iterative over containers: a stack of open brackets, one bit per level (object or array). */
size_t ws_json_skip(const char *s, size_t n, size_t i)
{
    unsigned char stack[WS_JSON_MAX_DEPTH];
    int depth = 0;
    for (;;) {
        /* Expect a value at s[i]. */
        if (i >= n)
            return 0;
        char c = s[i];
        if (c == '{' || c == '[') {
            if (depth == WS_JSON_MAX_DEPTH)
                return 0;
            stack[depth++] = (unsigned char)c;
            i = ws(s, n, i + 1);
            if (i < n && s[i] == (c == '{' ? '}' : ']')) {
                depth--;
                i++;
                goto after_value;
            }
            if (c == '{')
                goto member;
            continue;
        }
        if (c == '"')
            i = string(s, n, i);
        else if (c == '-' || digit(c))
            i = number(s, n, i);
        else if (c == 't')
            i = literal(s, n, i, "true");
        else if (c == 'f')
            i = literal(s, n, i, "false");
        else if (c == 'n')
            i = literal(s, n, i, "null");
        else
            return 0;
        if (i == 0)
            return 0;
    after_value:
        while (depth > 0) {
            i = ws(s, n, i);
            if (i >= n)
                return 0;
            char close = stack[depth - 1] == '{' ? '}' : ']';
            if (s[i] == close) {
                depth--;
                i++;
                continue;
            }
            if (s[i] != ',')
                return 0;
            i = ws(s, n, i + 1);
            if (stack[depth - 1] == '{')
                goto member;
            break; /* next array element */
        }
        if (depth == 0)
            return i;
        continue;
    member:
        /* s[i] must start "key" : */
        if (i >= n || s[i] != '"' || (i = string(s, n, i)) == 0)
            return 0;
        i = ws(s, n, i);
        if (i >= n || s[i] != ':')
            return 0;
        i = ws(s, n, i + 1);
    }
}

ws_json_type ws_json_type_of(const char *s, size_t n)
{
    if (n == 0)
        return WS_JSON_INVALID;
    switch (s[0]) {
    case '{': return WS_JSON_OBJECT;
    case '[': return WS_JSON_ARRAY;
    case '"': return WS_JSON_STRING;
    case 't': return WS_JSON_TRUE;
    case 'f': return WS_JSON_FALSE;
    case 'n': return WS_JSON_NULL;
    default: return s[0] == '-' || digit(s[0]) ? WS_JSON_NUMBER : WS_JSON_INVALID;
    }
}

bool ws_json_valid(const char *s, size_t n)
{
    size_t i = ws(s, n, 0);
    size_t e = ws_json_skip(s, n, i);
    return e != 0 && ws(s, n, e) == n;
}

int ws_json_object(const char *s, size_t n,
                   int (*fn)(void *ctx, const char *key, size_t key_len, const char *val,
                             size_t val_len),
                   void *ctx)
{
    if (!ws_json_valid(s, n))
        return -1;
    size_t i = ws(s, n, 0);
    if (s[i] != '{')
        return -1;
    /* Valid JSON from here on, so the walk only needs to find boundaries. */
    i = ws(s, n, i + 1);
    if (s[i] == '}')
        return 0;
    for (;;) {
        size_t k = i + 1;
        size_t ke = string(s, n, i);
        i = ws(s, n, ke);
        i = ws(s, n, i + 1); /* past ':' */
        size_t ve = ws_json_skip(s, n, i);
        int r = fn(ctx, s + k, ke - 1 - k, s + i, ve - i);
        if (r)
            return r;
        i = ws(s, n, ve);
        if (s[i] == '}')
            return 0;
        i = ws(s, n, i + 1); /* past ',' */
    }
}

bool ws_json_u64_after(const char *s, size_t n, const char *key, uint64_t *v)
{
    size_t kl = strlen(key);
    const char *p = memmem(s, n, key, kl), *end = s + n;
    if (!p || (p += kl) >= end || *p < '0' || *p > '9')
        return false;
    uint64_t x = 0;
    while (p < end && *p >= '0' && *p <= '9')
        x = x * 10 + (uint64_t)(*p++ - '0');
    *v = x;
    return true;
}

bool ws_json_str_after(const char *s, size_t n, const char *key, const char **v, size_t *len)
{
    size_t kl = strlen(key);
    const char *p = memmem(s, n, key, kl), *end = s + n;
    const char *q = p ? memchr(p + kl, '"', (size_t)(end - p - kl)) : NULL;
    if (!q)
        return false;
    *v = p + kl;
    *len = (size_t)(q - *v);
    return true;
}
