/* libFuzzer target for node/auth under `--auth required --jwt-secret fuzz-secret`: auth_check on
 * raw tokens and on tokens this target signs itself (so the claims exp, nbf, sub and perm are
 * reached), the grants it returns asked about channels, and auth_match / auth_may on patterns
 * from the input, all against small references written here.
 *
 * Input: 1 mode byte, then
 *   mode & 3 == 0: the token, as is.
 *   mode & 3 == 1 or 2: header JSON, a 0 byte, payload JSON (a second 0 byte ends it; no 0 byte
 *     at all: payload {}), sent as base64url(header).base64url(payload).signature where
 *       bits 2-3: HMAC-SHA256, -SHA384, -SHA512 with the secret, or HMAC-SHA256 with another key
 *       bit 4: no signature at all ("h.p.")
 *       bit 5: standard base64 with '+', '/' and '=' padding for header and payload
 *   mode & 3 == 3: strings split at 0 bytes; with a = bits 2-4, b = bits 5-7 of the mode byte,
 *     the first a are --anonymous-sub patterns and the next b --anonymous-pub patterns of a
 *     fresh verifier, the rest are channel names. Every consecutive pair is (pattern, channel)
 *     for auth_match.
 *
 * Checked, whatever the token:
 *   - auth_check returns 0 with a NUL-terminated user of 1..AUTH_USER_MAX bytes (valid UTF-8,
 *     no control bytes) and a grant, or -1 with no grant and a short printable reason that does
 *     not contain the token;
 *   - an accepted token is <b64>.<b64>.<b64url HMAC of the first two with the secret>, with the
 *     digest its header's alg names: "none", RS256, a missing alg and other keys never pass;
 *   - when the header / payload JSON can be read without doubt (valid, no escaped or repeated
 *     keys): alg is HS256/384/512 (libjwt 1.10 also takes "hs256"), the user equals the sub
 *     claim, exp and nbf (numbers) hold within the leeway and a non-numeric exp or nbf is
 *     refused, and the grant agrees with a reference over the perm claim (none: everything;
 *     bad patterns, > AUTH_PATTERNS_MAX, not an object or array: refused) for a set of channels;
 *   - auth_match and the anonymous grants agree with the reference; auth_new refuses exactly
 *     the invalid patterns; auth_grant_free always (ASan watches).
 * tests/fuzz/crashes/crash-jwt-nbf-* were found here (a non-numeric or fractional nbf was
 * ignored; see tests/fuzz/crashes/README.md). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"
#include "config.h"
#include "envelope.h"
#include "ws_json.h"
#include "ws_utf8.h"

#define CHECK(c) \
    do {         \
        if (!(c))  \
            abort(); \
    } while (0)

#define SECRET "fuzz-secret"
#define NOW 1700000000.0
#define LEEWAY 30.0

static auth *verifier;
static const char *const anon_sub[] = {"public.*", "lobby"};
static const char *const anon_pub[] = {"chat.*"};

/* ---- References ----------------------------------------------------------------------------- */

static bool ref_name_char(char x)
{
    return (x >= 'a' && x <= 'z') || (x >= 'A' && x <= 'Z') || (x >= '0' && x <= '9') || x == '.' ||
           x == '_' || x == ':' || x == '-';
}

/* "*", or 1..200 channel bytes with an optional '*' after them. */
static bool ref_pattern_valid(const char *p, size_t n)
{
    if (n == 1 && p[0] == '*')
        return true;
    if (n && p[n - 1] == '*')
        n--;
    if (n == 0 || n > 200)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!ref_name_char(p[i]))
            return false;
    return true;
}

static bool ref_match(const char *p, size_t pn, const char *c, size_t cn)
{
    if (pn && p[pn - 1] == '*') {
        for (size_t i = 0; i + 1 < pn; i++)
            if (i >= cn || p[i] != c[i])
                return false;
        return true;
    }
    if (pn != cn)
        return false;
    for (size_t i = 0; i < pn; i++)
        if (p[i] != c[i])
            return false;
    return true;
}

typedef struct plist {
    size_t n;
    ws_span v[AUTH_PATTERNS_MAX + 1];
} plist;

static bool ref_any(const plist *l, ws_span ch)
{
    for (size_t i = 0; i < l->n; i++)
        if (ref_match(l->v[i].p, l->v[i].n, ch.p, ch.n))
            return true;
    return false;
}

/* ---- base64 and HMAC ----------------------------------------------------------------------- */

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char B64STD[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t b64(const uint8_t *s, size_t n, char *out, bool std)
{
    const char *a = std ? B64STD : B64URL;
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0) |
                     (i + 2 < n ? s[i + 2] : 0);
        out[k++] = a[v >> 18 & 63];
        out[k++] = a[v >> 12 & 63];
        if (i + 1 < n)
            out[k++] = a[v >> 6 & 63];
        else if (std)
            out[k++] = '=';
        if (i + 2 < n)
            out[k++] = a[v & 63];
        else if (std)
            out[k++] = '=';
    }
    return k;
}

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-' || c == '+')
        return 62;
    if (c == '_' || c == '/')
        return 63;
    return -1;
}

/* Strict decoder (either alphabet, optional '=' padding at the end); -1 if not base64. */
static long unb64(const char *s, size_t n, uint8_t *out)
{
    while (n && s[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return -1;
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val(s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6 | (uint32_t)v) & 0xFFFFFF;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[k++] = (uint8_t)(acc >> bits);
        }
    }
    return (long)k;
}

static const EVP_MD *digest(int i)
{
    return i == 0 ? EVP_sha256() : i == 1 ? EVP_sha384() : EVP_sha512();
}

/* The base64url (unpadded) HMAC of msg[0..n) with key under digest d. */
static size_t mac_b64(int d, const char *key, const char *msg, size_t n, char *out)
{
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    CHECK(HMAC(digest(d), key, (int)strlen(key), (const uint8_t *)msg, n, mac, &ml) != NULL);
    return b64(mac, ml, out, false);
}

/* Which HMAC (0: SHA-256, 1: -384, 2: -512) with the secret signs token, or -1. The signature
 * is everything after the second dot. */
static int signed_with(const char *tok, size_t len)
{
    const char *d1 = memchr(tok, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    if (!d2)
        return -1;
    size_t in = (size_t)(d2 - tok), sl = len - in - 1;
    for (int d = 0; d < 3; d++) {
        char want[2 * EVP_MAX_MD_SIZE];
        size_t wl = mac_b64(d, SECRET, tok, in, want);
        if (wl == sl && memcmp(want, d2 + 1, sl) == 0)
            return d;
    }
    return -1;
}

/* ---- What a careful reader makes of the header and payload ----------------------------------- */

typedef struct member {
    int count;
    ws_span v;
} member;

typedef struct reading {
    bool clear; /* one valid object, no escaped keys */
    member alg, sub, exp, nbf, perm, pub, send;
} reading;

static int on_member(void *ctx, const char *k, size_t kn, const char *v, size_t vn)
{
    reading *r = ctx;
    if (memchr(k, '\\', kn))
        r->clear = false;
    member *m = kn == 3 && !memcmp(k, "alg", 3)   ? &r->alg
              : kn == 3 && !memcmp(k, "sub", 3)   ? &r->sub
              : kn == 3 && !memcmp(k, "exp", 3)   ? &r->exp
              : kn == 3 && !memcmp(k, "nbf", 3)   ? &r->nbf
              : kn == 4 && !memcmp(k, "perm", 4)  ? &r->perm
              : kn == 3 && !memcmp(k, "pub", 3)   ? &r->pub
              : kn == 4 && !memcmp(k, "send", 4)  ? &r->send
              : NULL;
    if (m) {
        m->count++;
        m->v = (ws_span){v, vn};
    }
    return 0;
}

static reading read_object(const char *s, size_t n)
{
    reading r = {.clear = true};
    if (n == 0 || memchr(s, '\0', n) || ws_json_object(s, n, on_member, &r) != 0)
        r.clear = false;
    return r;
}

/* A JSON string value without escapes: its contents. */
static bool plain_string(ws_span v, ws_span *out)
{
    if (v.n < 2 || v.p[0] != '"' || memchr(v.p, '\\', v.n))
        return false;
    *out = (ws_span){v.p + 1, v.n - 2};
    return true;
}

/* A JSON number (any length: "2009...9.00" is one) and its value. */
static bool number(ws_span v, double *out)
{
    if (ws_json_type_of(v.p, v.n) != WS_JSON_NUMBER)
        return false;
    char *tmp = malloc(v.n + 1);
    CHECK(tmp);
    memcpy(tmp, v.p, v.n);
    tmp[v.n] = '\0';
    *out = strtod(tmp, NULL);
    free(tmp);
    return true;
}

enum { P_UNKNOWN, P_BAD, P_OK };

/* A JSON array of patterns: P_OK with the list, P_BAD if auth must refuse it, or P_UNKNOWN
 * (escapes: jansson decodes them first). */
static int read_patterns(ws_span v, plist *out)
{
    const char *s = v.p;
    size_t n = v.n, i = 0;
    out->n = 0;
    if (ws_json_type_of(s, n) != WS_JSON_ARRAY)
        return P_BAD;
    i = 1;
    int verdict = P_OK;
    for (;;) {
        while (i < n && strchr(" \t\n\r,", s[i]) && s[i])
            i++;
        if (i >= n || s[i] == ']')
            break;
        size_t end = ws_json_skip(s, n, i);
        CHECK(end > i); /* the payload was valid JSON */
        ws_span e = {s + i, end - i}, p;
        if (e.p[0] != '"')
            return P_BAD;
        if (!plain_string(e, &p))
            verdict = P_UNKNOWN;
        else if (!ref_pattern_valid(p.p, p.n))
            return P_BAD;
        else if (out->n < AUTH_PATTERNS_MAX + 1)
            out->v[out->n] = p;
        out->n++;
        i = end;
    }
    if (out->n > AUTH_PATTERNS_MAX)
        return P_BAD;
    return verdict;
}

/* ---- Checks -------------------------------------------------------------------------------- */

static bool printable(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 80)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return true;
}

static const char *const CHANNELS[] = {"a", "ab", "room.1", "room.12", "room", "room.", "x:y",
                                      "public.news", "public", "lobby", "lobby2", "chat.general",
                                      "chat", "*", "", "a*", "Z-_.:z"};

/* Asks grant g about each channel in CHANNELS and derived from the patterns; sub/pub are the
 * expected lists (NULL: everything allowed). */
static void check_grant(const auth_grant *g, const plist *sub, const plist *pub, bool send)
{
    ws_span chs[sizeof CHANNELS / sizeof CHANNELS[0] + 8 * (AUTH_PATTERNS_MAX + 1)];
    char extra[2 * (AUTH_PATTERNS_MAX + 1)][ENV_CHANNEL_MAX + 2];
    size_t n = 0, ne = 0;
    for (size_t i = 0; i < sizeof CHANNELS / sizeof CHANNELS[0]; i++)
        chs[n++] = (ws_span){CHANNELS[i], strlen(CHANNELS[i])};
    const plist *lists[2] = {sub, pub};
    for (int l = 0; l < 2; l++)
        for (size_t i = 0; lists[l] && i < lists[l]->n && i <= AUTH_PATTERNS_MAX; i++) {
            ws_span p = lists[l]->v[i];
            chs[n++] = p;
            if (p.n && p.p[p.n - 1] == '*') {
                chs[n++] = (ws_span){p.p, p.n - 1};
                if (p.n >= 2)
                    chs[n++] = (ws_span){p.p, p.n - 2};
                if (p.n - 1 <= ENV_CHANNEL_MAX) {
                    memcpy(extra[ne], p.p, p.n - 1);
                    extra[ne][p.n - 1] = 'z';
                    chs[n++] = (ws_span){extra[ne], p.n};
                    ne++;
                }
            }
        }
    for (size_t i = 0; i < n; i++) {
        bool s = auth_may(g, AUTH_SUB, chs[i]), p = auth_may(g, AUTH_PUB, chs[i]);
        CHECK(s == (sub ? ref_any(sub, chs[i]) : true));
        CHECK(p == (pub ? ref_any(pub, chs[i]) : true));
    }
    CHECK(auth_may(g, AUTH_SEND, (ws_span){NULL, 0}) == send);
    CHECK(auth_may(NULL, AUTH_SUB, chs[0]) && auth_may(NULL, AUTH_PUB, chs[0]) &&
          auth_may(NULL, AUTH_SEND, chs[0]));
}

static void check_anonymous(const auth *a, const char *const *sub, size_t nsub,
                            const char *const *pub, size_t npub)
{
    plist s = {0}, p = {0};
    for (size_t i = 0; i < nsub; i++)
        s.v[s.n++] = (ws_span){sub[i], strlen(sub[i])};
    for (size_t i = 0; i < npub; i++)
        p.v[p.n++] = (ws_span){pub[i], strlen(pub[i])};
    const auth_grant *g = auth_anonymous(a);
    CHECK(g != NULL);
    check_grant(g, &s, &p, false);
    auth_grant_free((auth_grant *)g); /* the shared grant: left alone */
    CHECK(auth_anonymous(a) == g);
}

/* What the target knows about a token it built: which key signed it (-1: none, 3: a wrong key). */
typedef struct built {
    bool known;
    int signer;
} built;

static void check_token(const char *tok, size_t len, const built *b)
{
    /* Exact-size copies: ASan sees any read past the token or write past the user buffer. */
    char *t = malloc(len ? len : 1);
    char *user = malloc(AUTH_USER_MAX + 1);
    CHECK(t && user);
    memcpy(t, tok, len);
    memset(user, 0x5a, AUTH_USER_MAX + 1);
    auth_grant *g = (auth_grant *)(uintptr_t)1;
    const char *why = NULL;
    int rc = auth_check(verifier, t, len, NOW, user, &g, &why);
    CHECK(rc == 0 || rc == -1);
    if (rc < 0) {
        CHECK(g == NULL && why != NULL && printable(why));
        if (len >= 8)
            CHECK(!memmem(why, strlen(why), tok, len));
        free(user);
        free(t);
        return;
    }

    /* Accepted. */
    CHECK(g != NULL);
    size_t un = strnlen(user, AUTH_USER_MAX + 1);
    CHECK(un >= 1 && un <= AUTH_USER_MAX);
    CHECK(ws_utf8_valid((const uint8_t *)user, un));
    for (size_t i = 0; i < un; i++)
        CHECK((unsigned char)user[i] >= 0x20 && user[i] != 0x7f);
    CHECK(len <= AUTH_TOKEN_MAX && !memchr(tok, '\0', len));

    int d = signed_with(tok, len);
    CHECK(d >= 0); /* the secret signed it */
    if (b->known)
        CHECK(b->signer == d);

    const char *d1 = memchr(tok, '.', len);
    const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok));
    uint8_t *head = malloc(len), *body = malloc(len);
    CHECK(head && body);
    long hn = unb64(tok, (size_t)(d1 - tok), head);
    long bn = unb64(d1 + 1, (size_t)(d2 - d1 - 1), body);

    if (hn > 0) {
        reading h = read_object((const char *)head, (size_t)hn);
        if (h.clear && h.alg.count <= 1) {
            static const char *const algs[3] = {"HS256", "HS384", "HS512"};
            ws_span alg;
            CHECK(h.alg.count == 1); /* no alg: "none" */
            CHECK(ws_json_type_of(h.alg.v.p, h.alg.v.n) == WS_JSON_STRING);
            /* So never none, RS256, ... libjwt 1.10 reads alg case-insensitively ("hs256"
             * passes; RFC 7515 says case-sensitive), harmless as the HMAC is still checked. */
            if (plain_string(h.alg.v, &alg))
                CHECK(ws_span_ieq(alg, algs[d]));
        }
    }

    if (bn > 0) {
        reading r = read_object((const char *)body, (size_t)bn);
        if (r.clear && r.sub.count <= 1) {
            ws_span sub;
            CHECK(r.sub.count == 1);
            CHECK(ws_json_type_of(r.sub.v.p, r.sub.v.n) == WS_JSON_STRING);
            if (plain_string(r.sub.v, &sub))
                CHECK(sub.n == un && memcmp(sub.p, user, un) == 0);
        }
        double v;
        if (r.clear && r.exp.count == 1) {
            CHECK(number(r.exp.v, &v)); /* a malformed exp is refused */
            CHECK(NOW <= v + LEEWAY);
        }
        if (r.clear && r.nbf.count == 1) {
            CHECK(number(r.nbf.v, &v)); /* a malformed nbf is refused */
            CHECK(NOW + LEEWAY >= v);
        }
        if (r.clear && r.perm.count == 0) {
            check_grant(g, NULL, NULL, true);
        } else if (r.clear && r.perm.count == 1) {
            CHECK(ws_json_type_of(r.perm.v.p, r.perm.v.n) == WS_JSON_OBJECT);
            reading p = read_object(r.perm.v.p, r.perm.v.n);
            if (p.clear && p.sub.count <= 1 && p.pub.count <= 1 && p.send.count <= 1) {
                plist *s = malloc(sizeof *s), *q = malloc(sizeof *q);
                CHECK(s && q);
                s->n = q->n = 0;
                int vs = p.sub.count ? read_patterns(p.sub.v, s) : P_OK;
                int vp = p.pub.count ? read_patterns(p.pub.v, q) : P_OK;
                CHECK(vs != P_BAD && vp != P_BAD);
                bool send = p.send.count && ws_json_type_of(p.send.v.p, p.send.v.n) == WS_JSON_TRUE;
                if (vs == P_OK && vp == P_OK)
                    check_grant(g, s, q, send);
                else
                    CHECK(auth_may(g, AUTH_SEND, (ws_span){NULL, 0}) == send);
                free(q);
                free(s);
            }
        }
    }
    free(body);
    free(head);
    auth_grant_free(g);
    free(user);
    free(t);
}

/* Mode 1/2: header \0 payload, encoded and signed here. */
static void signed_token(uint8_t mode, const uint8_t *data, size_t size)
{
    const uint8_t *zero = memchr(data, 0, size);
    const uint8_t *h = data, *p = (const uint8_t *)"{}";
    size_t hn = size, pn = 2;
    if (zero) {
        hn = (size_t)(zero - data);
        p = zero + 1;
        pn = size - hn - 1;
        const uint8_t *z2 = memchr(p, 0, pn);
        if (z2)
            pn = (size_t)(z2 - p);
    }
    int which = mode >> 2 & 3;
    bool nosig = mode & 0x10, std = mode & 0x20;
    char *tok = malloc(4 * (hn + pn) / 3 + 16 + 2 * EVP_MAX_MD_SIZE);
    CHECK(tok);
    size_t n = b64(h, hn, tok, std);
    tok[n++] = '.';
    n += b64(p, pn, tok + n, std);
    built b = {.known = true, .signer = nosig ? -1 : which};
    size_t in = n;
    tok[n++] = '.';
    if (!nosig)
        n += mac_b64(which == 3 ? 0 : which, which == 3 ? "fuzz-secreT" : SECRET, tok, in, tok + n);
    check_token(tok, n, &b);
    free(tok);
}

/* Mode 3: patterns and channels. */
static void patterns_mode(uint8_t mode, const uint8_t *data, size_t size)
{
    enum { MAXS = 48 };
    char *buf = malloc(size + 1);
    CHECK(buf);
    memcpy(buf, data, size);
    buf[size] = '\0';
    const char *str[MAXS];
    size_t len[MAXS], k = 0;
    for (size_t i = 0; k < MAXS;) {
        str[k] = buf + i;
        len[k] = strlen(buf + i);
        i += len[k] + 1;
        k++;
        if (i > size)
            break;
    }
    for (size_t i = 0; i + 1 < k; i++) {
        ws_span p = {str[i], len[i]}, c = {str[i + 1], len[i + 1]};
        CHECK(auth_match(p, c) == ref_match(p.p, p.n, c.p, c.n));
        CHECK(auth_match(p, p));
        if (p.n == 1 && p.p[0] == '*')
            CHECK(auth_match(p, c));
    }

    size_t na = mode >> 2 & 7, nb = mode >> 5 & 7;
    if (na > k)
        na = k;
    if (nb > k - na)
        nb = k - na;
    config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.auth = AUTH_OPTIONAL;
    cfg.jwt_secret = SECRET;
    cfg.jwt_leeway = LEEWAY;
    bool valid = true;
    for (size_t i = 0; i < na + nb; i++) {
        valid = valid && ref_pattern_valid(str[i], len[i]);
        if (i < na)
            cfg.anon_sub[cfg.nanon_sub++] = str[i];
        else
            cfg.anon_pub[cfg.nanon_pub++] = str[i];
    }
    char err[256];
    err[0] = '\0';
    auth *a = auth_new(&cfg, err, sizeof err);
    CHECK((a != NULL) == valid);
    if (a) {
        check_anonymous(a, str, na, str + na, nb);
        plist *s = malloc(sizeof *s), *q = malloc(sizeof *q);
        CHECK(s && q);
        s->n = q->n = 0;
        for (size_t i = 0; i < na; i++)
            s->v[s->n++] = (ws_span){str[i], len[i]};
        for (size_t i = na; i < na + nb; i++)
            q->v[q->n++] = (ws_span){str[i], len[i]};
        const auth_grant *g = auth_anonymous(a);
        for (size_t i = na + nb; i < k; i++) {
            ws_span c = {str[i], len[i]};
            CHECK(auth_may(g, AUTH_SUB, c) == ref_any(s, c));
            CHECK(auth_may(g, AUTH_PUB, c) == ref_any(q, c));
        }
        free(q);
        free(s);
        auth_free(a);
    } else {
        CHECK(err[0] != '\0' && strlen(err) < sizeof err);
    }

    /* The fixed verifier's anonymous grant on the input's channels. */
    plist s = {.n = 2, .v = {{anon_sub[0], 8}, {anon_sub[1], 5}}};
    plist q = {.n = 1, .v = {{anon_pub[0], 6}}};
    for (size_t i = 0; i < k; i++) {
        ws_span c = {str[i], len[i]};
        CHECK(auth_may(auth_anonymous(verifier), AUTH_SUB, c) == ref_any(&s, c));
        CHECK(auth_may(auth_anonymous(verifier), AUTH_PUB, c) == ref_any(&q, c));
    }
    free(buf);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    static config cfg;
    cfg.auth = AUTH_REQUIRED;
    cfg.jwt_secret = SECRET;
    cfg.jwt_leeway = LEEWAY;
    cfg.anon_sub[0] = anon_sub[0];
    cfg.anon_sub[1] = anon_sub[1];
    cfg.nanon_sub = 2;
    cfg.anon_pub[0] = anon_pub[0];
    cfg.nanon_pub = 1;
    char err[256];
    verifier = auth_new(&cfg, err, sizeof err);
    if (!verifier) {
        fprintf(stderr, "auth_new: %s\n", err);
        abort();
    }
    check_anonymous(verifier, anon_sub, 2, anon_pub, 1);

    /* Refused configurations: an empty secret, a bad pattern. */
    config bad = cfg;
    bad.jwt_secret = "";
    CHECK(auth_new(&bad, err, sizeof err) == NULL && err[0]);
    bad = cfg;
    bad.anon_pub[0] = "chat.**";
    CHECK(auth_new(&bad, err, sizeof err) == NULL && err[0]);
    auth_free(NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++, size--;
    switch (mode & 3) {
    case 0: {
        built b = {.known = false};
        check_token((const char *)data, size, &b);
        break;
    }
    case 1:
    case 2:
        signed_token(mode, data, size);
        break;
    case 3:
        patterns_mode(mode, data, size);
        break;
    }
    return 0;
}
