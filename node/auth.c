#include "auth.h"

#include <errno.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "ws_json.h"
#include "ws_utf8.h"

#define KEY_MAX (64 * 1024)

struct auth_grant {
    bool shared; /* the anonymous grant: not freed per connection */
    bool all;    /* no perm claim: every channel */
    bool send;
    uint16_t nsub, npub;
    ws_span pats[]; /* nsub sub patterns, then npub pub patterns, into the same allocation */
};

struct auth {
    unsigned char *key;
    int key_len;
    bool hmac; /* HS* tokens only; else RS* and ES* only */
    double leeway;
    auth_grant *anon;
};

static int read_file(const char *path, unsigned char **out, int *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    unsigned char *buf = malloc(KEY_MAX + 1);
    size_t n = buf ? fread(buf, 1, KEY_MAX + 1, f) : 0;
    fclose(f);
    if (!buf || n == 0 || n > KEY_MAX) {
        snprintf(err, errlen, "%s: %s", path, !buf ? "out of memory" : n ? "larger than 64 KiB" : "empty");
        free(buf);
        return -1;
    }
    *out = buf;
    *len = (int)n;
    return 0;
}

/* A grant with the given pattern lists, copied into one allocation. */
static auth_grant *grant_make(const ws_span *sub, size_t nsub, const ws_span *pub, size_t npub,
                              bool all, bool send)
{
    size_t bytes = 0;
    for (size_t i = 0; i < nsub; i++)
        bytes += sub[i].n;
    for (size_t i = 0; i < npub; i++)
        bytes += pub[i].n;
    size_t n = nsub + npub;
    auth_grant *g = malloc(sizeof *g + n * sizeof(ws_span) + bytes);
    if (!g)
        return NULL;
    *g = (auth_grant){.all = all, .send = send, .nsub = (uint16_t)nsub, .npub = (uint16_t)npub};
    char *text = (char *)(g->pats + n);
    for (size_t i = 0; i < n; i++) {
        ws_span s = i < nsub ? sub[i] : pub[i - nsub];
        memcpy(text, s.p, s.n);
        g->pats[i] = (ws_span){text, s.n};
        text += s.n;
    }
    return g;
}

bool auth_pattern_wide(ws_span p)
{
    if (p.n < 2 || p.p[p.n - 1] != '*')
        return false;
    char before = p.p[p.n - 2];
    return before != '.' && before != ':' && before != '-';
}

static bool pattern_valid(ws_span p)
{
    if (p.n == 1 && p.p[0] == '*')
        return true;
    ws_span name = p.n && p.p[p.n - 1] == '*' ? (ws_span){p.p, p.n - 1} : p;
    return env_channel_valid(name);
}

auth *auth_new(const config *cfg, char *err, size_t errlen)
{
    auth *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->leeway = cfg->jwt_leeway;
    a->hmac = !cfg->jwt_public_key;
    int rc = 0;
    if (cfg->jwt_secret) {
        a->key_len = (int)strlen(cfg->jwt_secret);
        a->key = (unsigned char *)strdup(cfg->jwt_secret);
    } else {
        const char *path = cfg->jwt_secret_file ? cfg->jwt_secret_file : cfg->jwt_public_key;
        rc = read_file(path, &a->key, &a->key_len, err, errlen);
        /* A secret file usually ends in a newline nobody meant as part of the secret. */
        while (rc == 0 && a->hmac && a->key_len && (a->key[a->key_len - 1] == '\n' || a->key[a->key_len - 1] == '\r'))
            a->key_len--;
    }
    if (rc == 0 && (!a->key || a->key_len == 0)) {
        snprintf(err, errlen, "the JWT key is empty");
        rc = -1;
    }
    ws_span sub[CONFIG_MAX_PATTERNS], pub[CONFIG_MAX_PATTERNS];
    for (int i = 0; rc == 0 && i < cfg->nanon_sub + cfg->nanon_pub; i++) {
        const char *p = i < cfg->nanon_sub ? cfg->anon_sub[i] : cfg->anon_pub[i - cfg->nanon_sub];
        ws_span s = {p, strlen(p)};
        if (!pattern_valid(s)) {
            snprintf(err, errlen, "bad channel pattern '%s' (a channel name, or a prefix and *)", p);
            rc = -1;
        }
        if (i < cfg->nanon_sub)
            sub[i] = s;
        else
            pub[i - cfg->nanon_sub] = s;
    }
    if (rc == 0 && !(a->anon = grant_make(sub, (size_t)cfg->nanon_sub, pub, (size_t)cfg->nanon_pub,
                                          false, false))) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    if (rc < 0) {
        auth_free(a);
        return NULL;
    }
    a->anon->shared = true;
    return a;
}

void auth_free(auth *a)
{
    if (!a)
        return;
    if (a->key)
        memset(a->key, 0, (size_t)a->key_len);
    free(a->key);
    free(a->anon);
    free(a);
}

const auth_grant *auth_anonymous(const auth *a) { return a->anon; }

/* Reads a JSON array of channel patterns (strings without escapes) into out[0..max). Returns
 * how many, or -1 if it is not one. */
static int patterns(const char *s, size_t n, ws_span *out, size_t max)
{
    size_t i = 0, k = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    if (i == n || s[i] != '[')
        return -1;
    i++;
    for (;;) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == ','))
            i++;
        if (i < n && s[i] == ']')
            return (int)k;
        size_t end = i < n ? ws_json_skip(s, n, i) : 0;
        if (!end || s[i] != '"' || k == max)
            return -1;
        ws_span p = {s + i + 1, end - i - 2};
        if (memchr(p.p, '\\', p.n) || !pattern_valid(p))
            return -1;
        out[k++] = p;
        i = end;
    }
}

typedef struct perm_walk {
    ws_span sub[AUTH_PATTERNS_MAX], pub[AUTH_PATTERNS_MAX];
    int nsub, npub;
    bool send, bad;
} perm_walk;

static int perm_member(void *ctx, const char *k, size_t kn, const char *v, size_t vn)
{
    perm_walk *w = ctx;
    if (kn == 3 && memcmp(k, "sub", 3) == 0)
        w->bad |= (w->nsub = patterns(v, vn, w->sub, AUTH_PATTERNS_MAX)) < 0;
    else if (kn == 3 && memcmp(k, "pub", 3) == 0)
        w->bad |= (w->npub = patterns(v, vn, w->pub, AUTH_PATTERNS_MAX)) < 0;
    else if (kn == 4 && memcmp(k, "send", 4) == 0)
        w->send = ws_json_type_of(v, vn) == WS_JSON_TRUE;
    return 0;
}

/* A NumericDate claim (RFC 7519: seconds, fractions allowed): 1 and *out when present, 0 when
 * absent, -1 when present but not a finite number (libjwt's integer getter would read such a
 * value as 0, and a future nbf of 1.8e9 + 0.5 would pass). */
static int numeric_date(jwt_t *jwt, const char *name, double *out)
{
    char *v = jwt_get_grants_json(jwt, name);
    if (!v)
        return 0;
    char *end;
    errno = 0;
    *out = strtod(v, &end);
    int ok = ws_json_type_of(v, strlen(v)) == WS_JSON_NUMBER && end != v && *end == '\0' &&
             errno == 0 && *out == *out;
    free(v);
    return ok ? 1 : -1;
}

/* The token's alg, crit header and times allow it: NULL, else why not. */
static const char *check_header_and_times(const auth *a, jwt_t *jwt, double now)
{
    jwt_alg_t alg = jwt_get_alg(jwt);
    bool hmac = alg == JWT_ALG_HS256 || alg == JWT_ALG_HS384 || alg == JWT_ALG_HS512;
    bool pk = alg >= JWT_ALG_RS256 && alg <= JWT_ALG_ES512;
    /* libjwt accepts alg "none" whatever the key, and verifies with the token's own alg: an HS
     * token "signed" with the public key would pass. Only the configured family counts. */
    if (a->hmac ? !hmac : !pk)
        return "algorithm not allowed";
    /* RFC 7515 section 4.1.11: a token whose crit header names extensions the recipient does
     * not understand MUST be refused, and this server understands none (an empty list is
     * itself invalid). */
    char *crit = jwt_get_headers_json(jwt, "crit");
    if (crit) {
        free(crit);
        return "crit header (no critical extension is understood here)";
    }
    double exp, nbf;
    int has_exp = numeric_date(jwt, "exp", &exp), has_nbf = numeric_date(jwt, "nbf", &nbf);
    if (has_exp < 0 || has_nbf < 0)
        return "exp or nbf is not a number";
    if (has_exp && now > exp + a->leeway)
        return "expired";
    if (has_nbf && now + a->leeway < nbf)
        return "not valid yet (nbf)";
    return NULL;
}

/* The sub claim if usable as a user id (1..AUTH_USER_MAX bytes of UTF-8, no control
 * characters), else NULL. */
static const char *usable_sub(jwt_t *jwt)
{
    const char *sub = jwt_get_grant(jwt, "sub");
    size_t sn = sub ? strlen(sub) : 0;
    if (!sn || sn > AUTH_USER_MAX || !ws_utf8_valid((const uint8_t *)sub, sn))
        return NULL;
    for (size_t i = 0; i < sn; i++)
        if ((unsigned char)sub[i] < 0x20 || sub[i] == 0x7f)
            return NULL;
    return sub;
}

/* The grant the perm claim gives (everything without one), or NULL with *why set. */
static auth_grant *grant_of(jwt_t *jwt, const char **why)
{
    char *perm = jwt_get_grants_json(jwt, "perm");
    if (!perm)
        return grant_make(NULL, 0, NULL, 0, true, true);
    perm_walk w = {0};
    auth_grant *g = NULL;
    if (ws_json_object(perm, strlen(perm), perm_member, &w) < 0 || w.bad)
        *why = "bad perm claim";
    else
        g = grant_make(w.sub, (size_t)w.nsub, w.pub, (size_t)w.npub, false, w.send);
    free(perm);
    return g;
}

int auth_check(const auth *a, const char *token, size_t len, double now, char *user,
               auth_grant **grant, const char **why)
{
    *grant = NULL;
    if (len == 0 || len > AUTH_TOKEN_MAX) {
        *why = len ? "token too long" : "empty token";
        return -1;
    }
    char buf[AUTH_TOKEN_MAX + 1];
    memcpy(buf, token, len);
    buf[len] = '\0';
    if (strlen(buf) != len) {
        *why = "malformed token";
        return -1;
    }
    jwt_t *jwt = NULL;
    if (jwt_decode(&jwt, buf, a->key, a->key_len) != 0 || !jwt) {
        *why = "bad signature or malformed token";
        return -1;
    }
    int rc = -1;
    const char *sub = NULL;
    if ((*why = check_header_and_times(a, jwt, now)) != NULL)
        goto out;
    if (!(sub = usable_sub(jwt))) {
        *why = "no usable sub claim";
        goto out;
    }
    const char *bad = NULL;
    if (!(*grant = grant_of(jwt, &bad))) {
        *why = bad ? bad : "out of memory";
        goto out;
    }
    memcpy(user, sub, strlen(sub) + 1);
    rc = 0;
out:
    jwt_free(jwt);
    return rc;
}

bool auth_match(ws_span p, ws_span ch)
{
    if (p.n && p.p[p.n - 1] == '*')
        return ch.n >= p.n - 1 && memcmp(p.p, ch.p, p.n - 1) == 0;
    return p.n == ch.n && memcmp(p.p, ch.p, p.n) == 0;
}

bool auth_may(const auth_grant *g, enum auth_what what, ws_span ch)
{
    if (!g || g->all)
        return true;
    if (what == AUTH_SEND)
        return g->send;
    size_t from = what == AUTH_SUB ? 0 : g->nsub, to = what == AUTH_SUB ? g->nsub : g->nsub + g->npub;
    for (size_t i = from; i < to; i++)
        if (auth_match(g->pats[i], ch))
            return true;
    return false;
}

void auth_grant_free(auth_grant *g)
{
    if (g && !g->shared)
        free(g);
}
