/* libFuzzer target for ws_json + envelope: the JSON validator and skipper against a small
 * recursive reference, the object walker, env_parse (no data limit and a small one), and the
 * writers, whose output must be valid JSON that carries its inputs through unchanged.
 * Input: the client's JSON text, as is. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "ws_json.h"

#define CHECK(c) \
    do {         \
        if (!(c))  \
            abort(); \
    } while (0)

/* ---- Reference JSON grammar (RFC 8259), written independently of ws_json.c: recursive,
 * pointer based. Same policy as the library: strings are not checked for UTF-8, and at most
 * WS_JSON_MAX_DEPTH containers nest. */

typedef struct ref {
    const char *p, *end;
} ref;

static bool r_more(const ref *r) { return r->p < r->end; }
static bool r_is(const ref *r, char c) { return r->p < r->end && *r->p == c; }
static bool r_isdigit(const ref *r) { return r->p < r->end && *r->p >= '0' && *r->p <= '9'; }

static void r_ws(ref *r)
{
    while (r_is(r, ' ') || r_is(r, '\t') || r_is(r, '\n') || r_is(r, '\r'))
        r->p++;
}

static bool r_string(ref *r)
{
    if (!r_is(r, '"'))
        return false;
    r->p++;
    while (r_more(r)) {
        unsigned char c = (unsigned char)*r->p++;
        if (c == '"')
            return true;
        if (c < 0x20)
            return false;
        if (c == '\\') {
            if (!r_more(r))
                return false;
            char e = *r->p++;
            if (e == 'u') {
                for (int k = 0; k < 4; k++) {
                    if (!r_more(r) || !strchr("0123456789abcdefABCDEF", *r->p) || *r->p == '\0')
                        return false;
                    r->p++;
                }
            } else if (!strchr("\"\\/bfnrt", e) || e == '\0') {
                return false;
            }
        }
    }
    return false;
}

static bool r_digits(ref *r)
{
    if (!r_isdigit(r))
        return false;
    while (r_isdigit(r))
        r->p++;
    return true;
}

static bool r_number(ref *r)
{
    if (r_is(r, '-'))
        r->p++;
    if (r_is(r, '0'))
        r->p++;
    else if (!r_digits(r))
        return false;
    if (r_is(r, '.')) {
        r->p++;
        if (!r_digits(r))
            return false;
    }
    if (r_is(r, 'e') || r_is(r, 'E')) {
        r->p++;
        if (r_is(r, '+') || r_is(r, '-'))
            r->p++;
        if (!r_digits(r))
            return false;
    }
    return true;
}

static bool r_word(ref *r, const char *w)
{
    size_t l = strlen(w);
    if ((size_t)(r->end - r->p) < l || memcmp(r->p, w, l) != 0)
        return false;
    r->p += l;
    return true;
}

static bool r_value(ref *r, int depth);

static bool r_container(ref *r, int depth, char close, bool object)
{
    if (depth == WS_JSON_MAX_DEPTH)
        return false;
    r->p++;
    r_ws(r);
    if (r_is(r, close)) {
        r->p++;
        return true;
    }
    for (;;) {
        if (object) {
            if (!r_string(r))
                return false;
            r_ws(r);
            if (!r_is(r, ':'))
                return false;
            r->p++;
            r_ws(r);
        }
        if (!r_value(r, depth + 1))
            return false;
        r_ws(r);
        if (r_is(r, close)) {
            r->p++;
            return true;
        }
        if (!r_is(r, ','))
            return false;
        r->p++;
        r_ws(r);
    }
}

static bool r_value(ref *r, int depth)
{
    if (!r_more(r))
        return false;
    switch (*r->p) {
    case '{': return r_container(r, depth, '}', true);
    case '[': return r_container(r, depth, ']', false);
    case '"': return r_string(r);
    case 't': return r_word(r, "true");
    case 'f': return r_word(r, "false");
    case 'n': return r_word(r, "null");
    default: return r_number(r);
    }
}

/* ws_json_skip's contract, by the reference: the end of the value at s[i], or 0. */
static size_t ref_skip(const char *s, size_t n, size_t i)
{
    if (i > n)
        return 0;
    ref r = {s + i, s + n};
    return r_value(&r, 0) ? (size_t)(r.p - s) : 0;
}

static bool ref_valid(const char *s, size_t n)
{
    ref r = {s, s + n};
    r_ws(&r);
    if (!r_value(&r, 0))
        return false;
    r_ws(&r);
    return r.p == r.end;
}

/* ---- helpers */

static bool inside(ws_span s, const char *buf, size_t len)
{
    if (s.n == 0)
        return true;
    return s.p >= buf && s.p <= buf + len && s.n <= (size_t)(buf + len - s.p);
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

typedef struct walk {
    const char *s;
    size_t n;
    size_t count;
    const char *last_end; /* members come in order */
} walk;

static int on_member(void *ctx, const char *k, size_t kn, const char *v, size_t vn)
{
    walk *w = ctx;
    CHECK(k > w->s && k + kn < w->s + w->n && k[-1] == '"' && k[kn] == '"');
    CHECK(v >= k + kn && vn > 0 && v + vn <= w->s + w->n);
    CHECK(k > w->last_end);
    CHECK(ws_json_valid(v, vn) && !is_ws(v[0]) && !is_ws(v[vn - 1]));
    CHECK(ws_json_skip(v, vn, 0) == vn);
    w->last_end = v + vn;
    w->count++;
    return 0;
}

/* Members of a valid object by the reference, for the walker's count. */
static size_t ref_members(const char *s, size_t n)
{
    ref r = {s, s + n};
    r_ws(&r);
    r.p++; /* '{' */
    r_ws(&r);
    if (r_is(&r, '}'))
        return 0;
    size_t c = 0;
    for (;;) {
        CHECK(r_string(&r));
        r_ws(&r);
        r.p++; /* ':' */
        r_ws(&r);
        CHECK(r_value(&r, 1));
        c++;
        r_ws(&r);
        if (r_is(&r, '}'))
            return c;
        r.p++; /* ',' */
        r_ws(&r);
    }
}

static void check_json(const char *s, size_t n, uint64_t h)
{
    bool valid = ws_json_valid(s, n);
    CHECK(valid == ref_valid(s, n));

    size_t i = 0;
    while (i < n && is_ws(s[i]))
        i++;
    size_t e = ws_json_skip(s, n, i);
    CHECK(e == ref_skip(s, n, i));
    if (valid) {
        CHECK(e > i);
        for (size_t k = e; k < n; k++)
            CHECK(is_ws(s[k]));
    } else if (e) {
        size_t k = e;
        while (k < n && is_ws(s[k]))
            k++;
        CHECK(k < n); /* something follows the value */
    }
    /* Skipping from elsewhere in the text, as the walker does for member values. */
    for (int t = 0; t < 3 && n; t++) {
        size_t at = (size_t)(h >> (16 * t)) % n;
        CHECK(ws_json_skip(s, n, at) == ref_skip(s, n, at));
    }
    CHECK(ws_json_skip(s, n, n) == 0);

    walk w = {s, n, 0, s};
    int rc = ws_json_object(s, n, on_member, &w);
    if (valid && s[i] == '{') {
        CHECK(rc == 0);
        CHECK(w.count == ref_members(s, n));
        CHECK(ws_json_type_of(s + i, n - i) == WS_JSON_OBJECT);
    } else {
        CHECK(rc == -1 && w.count == 0);
    }
}

/* Decodes the JSON string body written by put_escaped (\" \\ \u00XX, else verbatim) and
 * compares it with z. */
static bool unescapes_to(const char *p, size_t n, const char *z)
{
    size_t i = 0;
    for (; i < n; z++) {
        if (*z == '\0')
            return false;
        char c = p[i];
        if (c == '\\') {
            if (i + 1 >= n)
                return false;
            if (p[i + 1] == 'u') {
                if (i + 6 > n)
                    return false;
                char hx[5] = {p[i + 2], p[i + 3], p[i + 4], p[i + 5], 0};
                c = (char)strtol(hx, NULL, 16);
                i += 6;
            } else {
                c = p[i + 1];
                i += 2;
            }
        } else {
            i++;
        }
        if (c != *z)
            return false;
    }
    return *z == '\0';
}

typedef struct find {
    const char *key;
    ws_span val;
    int seen;
} find;

static int find_member(void *ctx, const char *k, size_t kn, const char *v, size_t vn)
{
    find *f = ctx;
    if (strlen(f->key) == kn && memcmp(k, f->key, kn) == 0) {
        f->val = (ws_span){v, vn};
        f->seen++;
    }
    return 0;
}

static ws_span member_of(const char *s, size_t n, const char *key)
{
    find f = {key, {NULL, 0}, 0};
    CHECK(ws_json_object(s, n, find_member, &f) == 0);
    CHECK(f.seen == 1);
    return f.val;
}

static bool span_is(ws_span s, const char *p, size_t n)
{
    return s.n == n && memcmp(s.p, p, n) == 0;
}

static void check_string_member(const char *out, size_t len, const char *key, const char *z)
{
    ws_span v = member_of(out, len, key);
    CHECK(v.n >= 2 && v.p[0] == '"' && v.p[v.n - 1] == '"');
    CHECK(unescapes_to(v.p + 1, v.n - 2, z));
}

static bool is_err_word(const char *e)
{
    return e && (!strcmp(e, ENV_ERR_BAD_JSON) || !strcmp(e, ENV_ERR_BAD_OP) ||
                 !strcmp(e, ENV_ERR_BAD_CHANNEL) || !strcmp(e, ENV_ERR_BAD_REQUEST) ||
                 !strcmp(e, ENV_ERR_TOO_LARGE));
}

static void check_err(ws_span id, const char *code, const char *reason, size_t small_cap)
{
    size_t cap = 64 + id.n + 6 * (strlen(code) + strlen(reason));
    char *out = malloc(cap);
    CHECK(out);
    size_t len = env_write_err(out, cap, id, code, reason);
    CHECK(len > 0 && len <= cap);
    CHECK(ws_json_valid(out, len));
    CHECK(span_is(member_of(out, len, "op"), "\"err\"", 5));
    check_string_member(out, len, "code", code);
    check_string_member(out, len, "reason", reason);
    if (id.n)
        CHECK(span_is(member_of(out, len, "id"), id.p, id.n));
    if (small_cap > cap)
        small_cap = cap;
    char *small = malloc(small_cap ? small_cap : 1);
    CHECK(small);
    size_t m = env_write_err(small, small_cap, id, code, reason);
    CHECK(m == 0 || (m == len && memcmp(small, out, len) == 0));
    CHECK(m == len || len > small_cap);
    free(small);
    free(out);
}

static void check_parsed(const char *s, size_t n, size_t max_data, const env_req *r, uint64_t seq)
{
    CHECK(r->op >= ENV_OP_SUB && r->op <= ENV_OP_SEND);
    CHECK(ws_json_valid(s, n));
    CHECK(inside(r->ch, s, n) && inside(r->id, s, n) && inside(r->data, s, n) &&
          inside(r->to, s, n));
    if (r->op != ENV_OP_SEND)
        CHECK(env_channel_valid(r->ch) && r->ch.p[-1] == '"' && r->ch.p[r->ch.n] == '"');
    if (r->id.n) {
        CHECK(r->id.n <= ENV_ID_MAX && ws_json_valid(r->id.p, r->id.n));
        ws_json_type t = ws_json_type_of(r->id.p, r->id.n);
        CHECK(t == WS_JSON_NUMBER || t == WS_JSON_STRING);
    }
    if (r->op == ENV_OP_SEND)
        CHECK(r->to.n > 0 && r->to.p[-1] == '"' && r->to.p[r->to.n] == '"');
    if (r->op == ENV_OP_PUB || r->op == ENV_OP_SEND) {
        CHECK(r->data.n > 0 && ws_json_valid(r->data.p, r->data.n));
        CHECK(max_data == 0 || r->data.n <= max_data);

        /* What subscribers receive. A direct message travels on a fixed channel here. */
        ws_span ch = r->op == ENV_OP_PUB ? r->ch : (ws_span){"direct", 6};
        /* Exactly env_msg_len bytes, as the node allocates them: ASan sees any overrun. */
        size_t cap = env_msg_len(ch.n, seq, r->data.n);
        CHECK(cap <= env_msg_size(ch.n, r->data.n));
        char *out = malloc(cap);
        CHECK(out);
        size_t len = env_write_msg(out, ch, seq, r->data);
        CHECK(len == cap);
        CHECK(ws_json_valid(out, len));
        CHECK(memmem(out, len, r->data.p, r->data.n) != NULL);
        CHECK(span_is(member_of(out, len, "op"), "\"msg\"", 5));
        ws_span c = member_of(out, len, "ch");
        CHECK(c.n == ch.n + 2 && memcmp(c.p + 1, ch.p, ch.n) == 0);
        CHECK(span_is(member_of(out, len, "data"), r->data.p, r->data.n));
        ws_span sq = member_of(out, len, "seq");
        uint64_t got = 0;
        for (size_t i = 0; i < sq.n; i++) {
            CHECK(sq.p[i] >= '0' && sq.p[i] <= '9');
            got = got * 10 + (uint64_t)(sq.p[i] - '0');
        }
        CHECK(got == seq && (sq.n == 1 || sq.p[0] != '0'));
        free(out);
    }

    char ack[128];
    size_t al = env_write_ack(ack, sizeof ack, r->id, r->has_since, r->since);
    CHECK(al > 0 && ws_json_valid(ack, al));
    if (r->id.n)
        CHECK(span_is(member_of(ack, al, "id"), r->id.p, r->id.n));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size ? size : 1);
    CHECK(s);
    memcpy(s, data, size);
    uint64_t h = 1469598103934665603ull; /* FNV-1a: input-derived numbers */
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 1099511628211ull;

    check_json(s, size, h);

    /* env_parse without a data limit and with a small one. */
    env_req r0, r16;
    const char *e0 = NULL, *w0 = NULL, *e16 = NULL, *w16 = NULL;
    int rc0 = env_parse(s, size, 0, &r0, &e0, &w0);
    int rc16 = env_parse(s, size, 16, &r16, &e16, &w16);
    CHECK(rc0 == 0 || rc0 == -1);
    CHECK(rc16 == 0 || rc16 == -1);
    /* 1 to 20 digits; powers of ten and their neighbours are the edges for env_msg_len. */
    uint64_t seq = h >> ((h >> 1) & 63);
    if ((h & 3) == 1)
        seq = UINT64_MAX - (h >> 8 & 0xF);
    if ((h & 3) == 2) {
        seq = 1;
        for (unsigned k = (unsigned)(h >> 8) % 20; k; k--)
            seq *= 10;
        seq -= (h >> 16) & 1;
    }
    if (rc0 == 0) {
        check_parsed(s, size, 0, &r0, seq);
        if (rc16 == 0) {
            CHECK(memcmp(&r0, &r16, sizeof r0) == 0);
            check_parsed(s, size, 16, &r16, seq);
        } else {
            CHECK(!strcmp(e16, ENV_ERR_TOO_LARGE) && r0.data.n > 16 && w16);
        }
    } else {
        CHECK(rc16 == -1 && e0 == e16 && w0 == w16);
        CHECK(is_err_word(e0) && w0 != NULL);
        CHECK(!strcmp(e0, ENV_ERR_BAD_JSON) ==
              (ws_json_object(s, size, find_member, &(find){"", {NULL, 0}, 0}) < 0));
        CHECK(strcmp(e0, ENV_ERR_TOO_LARGE) != 0);
        if (r0.id.n)
            CHECK(inside(r0.id, s, size) && ws_json_valid(r0.id.p, r0.id.n));
        check_err(r0.id, e0, w0, (size_t)(h >> 8) % 128);
    }

    /* Writers with arbitrary strings: split the input at its first NUL (or in half). */
    char *z = malloc(size + 2);
    CHECK(z);
    memcpy(z, data, size);
    z[size] = '\0';
    z[size + 1] = '\0';
    const char *a = z, *b;
    size_t al = strlen(z);
    if (al < size) {
        b = z + al + 1;
    } else {
        size_t half = size / 2;
        memmove(z + half + 1, z + half, size - half + 1);
        z[half] = '\0';
        b = z + half + 1;
    }
    size_t cap = 64 + 6 * (strlen(a) + strlen(b));
    char *out = malloc(cap);
    CHECK(out);
    size_t len = env_write_hello(out, cap, a, b);
    CHECK(len > 0 && len <= cap && ws_json_valid(out, len));
    CHECK(span_is(member_of(out, len, "op"), "\"hello\"", 7));
    check_string_member(out, len, "client", a);
    check_string_member(out, len, "node", b);
    size_t small_cap = (size_t)(h >> 24) % (len + 2);
    char *small = malloc(small_cap ? small_cap : 1);
    CHECK(small);
    size_t m = env_write_hello(small, small_cap, a, b);
    CHECK(m == (small_cap >= len ? len : 0));
    CHECK(m == 0 || memcmp(small, out, len) == 0);
    free(small);
    check_err((ws_span){NULL, 0}, a, b, (size_t)(h >> 32) % 96);

    free(out);
    free(z);
    free(s);
    return 0;
}
