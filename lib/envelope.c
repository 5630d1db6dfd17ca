#include "envelope.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ws_json.h"

bool env_channel_valid(ws_span c)
{
    if (c.n == 0 || c.n > ENV_CHANNEL_MAX)
        return false;
    for (size_t i = 0; i < c.n; i++) {
        char x = c.p[i];
        if (!((x >= 'a' && x <= 'z') || (x >= 'A' && x <= 'Z') || (x >= '0' && x <= '9') ||
              x == '.' || x == '_' || x == ':' || x == '-'))
            return false;
    }
    return true;
}

typedef struct walk {
    env_req *r;
    ws_span op;
    bool has_op, has_ch, ch_string, has_data, has_to, to_string;
    const char *err, *why;
} walk;

static bool key_is(const char *k, size_t kn, const char *z)
{
    return strlen(z) == kn && memcmp(k, z, kn) == 0;
}

/* Records the first fault and keeps walking, so an id after a bad member still names the
 * request in the error reply. */
static void fault(walk *w, const char *err, const char *why)
{
    if (!w->err) {
        w->err = err;
        w->why = why;
    }
}

static int member(void *ctx, const char *k, size_t kn, const char *v, size_t vn)
{
    walk *w = ctx;
    env_req *r = w->r;
    ws_json_type t = ws_json_type_of(v, vn);
    ws_span inner = {v + 1, vn >= 2 ? vn - 2 : 0}; /* string contents, escapes kept */
    if (key_is(k, kn, "op")) {
        w->has_op = true;
        if (t != WS_JSON_STRING)
            fault(w, ENV_ERR_BAD_OP, "op must be a string");
        w->op = inner;
    } else if (key_is(k, kn, "ch")) {
        w->has_ch = true;
        w->ch_string = t == WS_JSON_STRING;
        r->ch = inner;
    } else if (key_is(k, kn, "id")) {
        if ((t != WS_JSON_NUMBER && t != WS_JSON_STRING) || vn > ENV_ID_MAX)
            fault(w, ENV_ERR_BAD_REQUEST, "id must be a number or a string of at most 64 bytes");
        else
            r->id = (ws_span){v, vn};
    } else if (key_is(k, kn, "data")) {
        w->has_data = true;
        r->data = (ws_span){v, vn};
    } else if (key_is(k, kn, "to")) {
        w->has_to = true;
        w->to_string = t == WS_JSON_STRING;
        r->to = inner;
    } else if (key_is(k, kn, "since")) {
        uint64_t s = 0;
        for (size_t i = 0; i < vn; i++) {
            uint64_t d = (uint64_t)(v[i] - '0');
            if (v[i] < '0' || v[i] > '9' || s > (UINT64_MAX - d) / 10) {
                fault(w, ENV_ERR_BAD_REQUEST, "since must be an integer from 0 to 2^64-1");
                return 0;
            }
            s = s * 10 + d;
        }
        r->has_since = true;
        r->since = s;
    } else if (key_is(k, kn, "epoch")) {
        if (t != WS_JSON_STRING || inner.n > 32)
            fault(w, ENV_ERR_BAD_REQUEST, "epoch must be a string of at most 32 bytes");
        else
            r->epoch = inner;
    } else if (key_is(k, kn, "limit")) {
        uint64_t l = 0;
        for (size_t i = 0; i < vn && l <= UINT32_MAX; i++)
            l = v[i] >= '0' && v[i] <= '9' ? l * 10 + (uint64_t)(v[i] - '0') : UINT64_MAX;
        if (t != WS_JSON_NUMBER || l > UINT32_MAX)
            fault(w, ENV_ERR_BAD_REQUEST, "limit must be an integer from 0 to 2^32-1");
        r->has_limit = true;
        r->limit = (uint32_t)l;
    } else if (key_is(k, kn, "events")) {
        if (t != WS_JSON_TRUE && t != WS_JSON_FALSE)
            fault(w, ENV_ERR_BAD_REQUEST, "events must be true or false");
        r->events = t == WS_JSON_TRUE;
    } else if (key_is(k, kn, "count")) {
        if (t != WS_JSON_TRUE && t != WS_JSON_FALSE)
            fault(w, ENV_ERR_BAD_REQUEST, "count must be true or false");
        r->count_only = t == WS_JSON_TRUE;
    }
    /* Unknown members are ignored, so newer clients can talk to older servers. */
    return 0;
}

static int bad(const char **err, const char **why, const char *e, const char *y)
{
    *err = e;
    *why = y;
    return -1;
}

int env_parse(const char *s, size_t n, size_t max_data, env_req *r, const char **err,
              const char **why)
{
    memset(r, 0, sizeof *r);
    walk w = {.r = r};
    int rc = ws_json_object(s, n, member, &w);
    if (rc < 0)
        return bad(err, why, ENV_ERR_BAD_JSON, "not a JSON object");
    if (w.err)
        return bad(err, why, w.err, w.why);
    if (!w.has_op)
        return bad(err, why, ENV_ERR_BAD_OP, "op is missing");
    if (ws_span_eq(w.op, "sub"))
        r->op = ENV_OP_SUB;
    else if (ws_span_eq(w.op, "unsub"))
        r->op = ENV_OP_UNSUB;
    else if (ws_span_eq(w.op, "pub"))
        r->op = ENV_OP_PUB;
    else if (ws_span_eq(w.op, "presence"))
        r->op = ENV_OP_PRESENCE;
    else if (ws_span_eq(w.op, "send"))
        r->op = ENV_OP_SEND;
    else if (ws_span_eq(w.op, "history"))
        r->op = ENV_OP_HISTORY;
    else
        return bad(err, why, ENV_ERR_BAD_OP, "unknown op");

    if (r->op != ENV_OP_SEND) {
        if (!w.has_ch)
            return bad(err, why, ENV_ERR_BAD_CHANNEL, "ch is missing");
        if (!w.ch_string || !env_channel_valid(r->ch))
            return bad(err, why, ENV_ERR_BAD_CHANNEL, "ch must be 1-200 bytes of [A-Za-z0-9._:-]");
    } else {
        r->ch = (ws_span){NULL, 0}; /* send takes no channel: never hand on an unchecked one */
        if (!w.has_to || !w.to_string || r->to.n == 0)
            return bad(err, why, ENV_ERR_BAD_REQUEST, "to must be a client id");
    }
    if (r->op == ENV_OP_PUB || r->op == ENV_OP_SEND) {
        if (!w.has_data)
            return bad(err, why, ENV_ERR_BAD_REQUEST, "data is missing");
        if (max_data && r->data.n > max_data)
            return bad(err, why, ENV_ERR_TOO_LARGE, "data is larger than the limit");
    }
    return 0;
}

size_t env_msg_size(size_t ch_len, size_t data_len)
{
    return sizeof "{\"op\":\"msg\",\"ch\":\"\",\"seq\":,\"data\":}" + ch_len + 20 + data_len;
}

size_t env_msg_len(size_t ch_len, uint64_t seq, size_t data_len)
{
    size_t digits = 1;
    while (seq >= 10) {
        seq /= 10;
        digits++;
    }
    return sizeof "{\"op\":\"msg\",\"ch\":\"\",\"seq\":,\"data\":}" - 1 + ch_len + digits + data_len;
}

static char *put(char *o, const char *s, size_t n)
{
    memcpy(o, s, n);
    return o + n;
}

#define PUTS(o, lit) put((o), (lit), sizeof(lit) - 1)

static char *put_u64(char *o, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *o++ = tmp[--n];
    return o;
}

size_t env_write_msg(char *out, ws_span ch, uint64_t seq, ws_span data)
{
    char *o = out;
    o = PUTS(o, "{\"op\":\"msg\",\"ch\":\"");
    o = put(o, ch.p, ch.n);
    o = PUTS(o, "\",\"seq\":");
    o = put_u64(o, seq);
    o = PUTS(o, ",\"data\":");
    o = put(o, data.p, data.n);
    *o++ = '}';
    return (size_t)(o - out);
}

/* Appends s as a JSON string body (no quotes) to out[*at..cap); false if it does not fit. */
static bool put_escaped_n(char *out, size_t cap, size_t *at, const char *s, size_t n)
{
    for (const char *end = s + n; s < end; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[7];
        size_t k;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            k = 2;
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            k = 6;
        } else {
            esc[0] = (char)c;
            k = 1;
        }
        if (*at + k > cap)
            return false;
        memcpy(out + *at, esc, k);
        *at += k;
    }
    return true;
}

static bool put_escaped(char *out, size_t cap, size_t *at, const char *s)
{
    return put_escaped_n(out, cap, at, s, strlen(s));
}

static bool put_raw(char *out, size_t cap, size_t *at, const char *s, size_t n)
{
    if (*at + n > cap)
        return false;
    memcpy(out + *at, s, n);
    *at += n;
    return true;
}

#define RAW(lit) put_raw(out, cap, &at, (lit), sizeof(lit) - 1)

size_t env_write_hello(char *out, size_t cap, const char *client, const char *node)
{
    size_t at = 0;
    bool ok = RAW("{\"op\":\"hello\",\"client\":\"") && put_escaped(out, cap, &at, client) &&
              RAW("\",\"node\":\"") && put_escaped(out, cap, &at, node) && RAW("\"}");
    return ok ? at : 0;
}

size_t env_write_ack(char *out, size_t cap, ws_span id, bool has_seq, uint64_t seq)
{
    size_t at = 0;
    bool ok = RAW("{\"op\":\"ack\"");
    if (ok && id.n)
        ok = RAW(",\"id\":") && put_raw(out, cap, &at, id.p, id.n);
    if (ok && has_seq) {
        char num[20];
        size_t k = (size_t)(put_u64(num, seq) - num);
        ok = RAW(",\"seq\":") && put_raw(out, cap, &at, num, k);
    }
    ok = ok && RAW("}");
    return ok ? at : 0;
}

/* ,"seq":S,"epoch":"E" (the epoch is made of [0-9a-f.], nothing to escape) */
static bool put_pos(char *out, size_t cap, size_t *at_, env_pos pos)
{
    size_t at = *at_;
    char num[20];
    size_t k = (size_t)(put_u64(num, pos.seq) - num);
    bool ok = RAW(",\"seq\":") && put_raw(out, cap, &at, num, k) && RAW(",\"epoch\":\"") &&
              put_raw(out, cap, &at, pos.epoch.p, pos.epoch.n) && RAW("\"");
    *at_ = at;
    return ok;
}

size_t env_write_sub_ack(char *out, size_t cap, ws_span id, env_pos pos, int recovered)
{
    size_t at = 0;
    bool ok = RAW("{\"op\":\"ack\"");
    if (ok && id.n)
        ok = RAW(",\"id\":") && put_raw(out, cap, &at, id.p, id.n);
    ok = ok && put_pos(out, cap, &at, pos);
    if (ok && recovered >= 0)
        ok = recovered ? RAW(",\"recovered\":true") : RAW(",\"recovered\":false");
    ok = ok && RAW("}");
    return ok ? at : 0;
}

size_t env_write_history_head(char *out, size_t cap, bool op, ws_span id, ws_span ch, env_pos pos)
{
    size_t at = 0;
    bool ok = op ? RAW("{\"op\":\"history\",") : RAW("{");
    if (ok && id.n)
        ok = RAW("\"id\":") && put_raw(out, cap, &at, id.p, id.n) && RAW(",");
    ok = ok && RAW("\"ch\":\"") && put_raw(out, cap, &at, ch.p, ch.n) && RAW("\"") &&
         put_pos(out, cap, &at, pos) && RAW(",\"messages\":[");
    return ok ? at : 0;
}

size_t env_write_history_item(char *out, size_t cap, bool first, uint64_t seq, ws_span data)
{
    size_t at = 0;
    char num[20];
    size_t k = (size_t)(put_u64(num, seq) - num);
    bool ok = (first || RAW(",")) && RAW("{\"seq\":") && put_raw(out, cap, &at, num, k) &&
              RAW(",\"data\":") && put_raw(out, cap, &at, data.p, data.n) && RAW("}");
    return ok ? at : 0;
}

size_t env_write_reset(char *out, size_t cap, ws_span ch, env_pos pos)
{
    size_t at = 0;
    bool ok = RAW("{\"op\":\"reset\",\"ch\":\"") && put_raw(out, cap, &at, ch.p, ch.n) &&
              RAW("\"") && put_pos(out, cap, &at, pos) && RAW("}");
    return ok ? at : 0;
}

size_t env_write_err(char *out, size_t cap, ws_span id, const char *code, const char *reason)
{
    size_t at = 0;
    bool ok = RAW("{\"op\":\"err\"");
    if (ok && id.n)
        ok = RAW(",\"id\":") && put_raw(out, cap, &at, id.p, id.n);
    ok = ok && RAW(",\"code\":\"") && put_escaped(out, cap, &at, code) && RAW("\",\"reason\":\"") &&
         put_escaped(out, cap, &at, reason) && RAW("\"}");
    return ok ? at : 0;
}

static bool put_u64_at(char *out, size_t cap, size_t *at, uint64_t v)
{
    char num[20];
    return put_raw(out, cap, at, num, (size_t)(put_u64(num, v) - num));
}

size_t env_write_direct(char *out, size_t cap, const char *from, ws_span data)
{
    size_t at = 0;
    bool ok = RAW("{\"op\":\"msg\",\"from\":\"") && put_escaped(out, cap, &at, from) &&
              RAW("\",\"data\":") && put_raw(out, cap, &at, data.p, data.n) && RAW("}");
    return ok ? at : 0;
}

size_t env_write_event(char *out, size_t cap, bool left, ws_span ch, const char *client,
                       const char *user)
{
    size_t at = 0;
    bool ok = (left ? RAW("{\"op\":\"leave\",\"ch\":\"") : RAW("{\"op\":\"join\",\"ch\":\"")) &&
              put_escaped_n(out, cap, &at, ch.p, ch.n) && RAW("\",\"client\":\"") &&
              put_escaped(out, cap, &at, client) && RAW("\",\"user\":\"") &&
              put_escaped(out, cap, &at, user) && RAW("\"}");
    return ok ? at : 0;
}

size_t env_write_overflow(char *out, size_t cap, ws_span ch, uint64_t joins, uint64_t leaves)
{
    size_t at = 0;
    bool ok = RAW("{\"op\":\"presence_overflow\",\"ch\":\"") &&
              put_escaped_n(out, cap, &at, ch.p, ch.n) && RAW("\",\"joins\":") &&
              put_u64_at(out, cap, &at, joins) && RAW(",\"leaves\":") &&
              put_u64_at(out, cap, &at, leaves) && RAW("}");
    return ok ? at : 0;
}

size_t env_write_presence_head(char *out, size_t cap, ws_span id, ws_span ch, uint64_t count,
                               bool members)
{
    size_t at = 0;
    bool ok = RAW("{\"op\":\"presence\"");
    if (ok && id.n)
        ok = RAW(",\"id\":") && put_raw(out, cap, &at, id.p, id.n);
    ok = ok && RAW(",\"ch\":\"") && put_escaped_n(out, cap, &at, ch.p, ch.n) &&
         RAW("\",\"count\":") && put_u64_at(out, cap, &at, count);
    if (ok && members)
        ok = RAW(",\"members\":[");
    return ok ? at : 0;
}

size_t env_write_member(char *out, size_t cap, bool first, const char *client, const char *user,
                        const char *node)
{
    size_t at = 0;
    bool ok = (first || RAW(",")) && RAW("{\"client\":\"") && put_escaped(out, cap, &at, client) &&
              RAW("\",\"user\":\"") && put_escaped(out, cap, &at, user) &&
              RAW("\",\"node\":\"") && put_escaped(out, cap, &at, node) && RAW("\"}");
    return ok ? at : 0;
}

bool env_user_valid(ws_span u)
{
    if (u.n == 0 || u.n > ENV_USER_MAX)
        return false;
    for (size_t i = 0; i < u.n; i++) {
        char x = u.p[i];
        if (!((x >= 'a' && x <= 'z') || (x >= 'A' && x <= 'Z') || (x >= '0' && x <= '9') ||
              x == '.' || x == '_' || x == ':' || x == '-' || x == '@'))
            return false;
    }
    return true;
}
