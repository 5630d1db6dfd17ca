/* libFuzzer target for the rest of wsnode's HTTP request path, beside fuzz_handshake:
 * ws_http_parse fed in random chunks with the right last_len (the verdict and every span must
 * match one whole parse), ws_http_query_get for "token", "user" and "nodes" against a reference
 * (the value lies inside the query and holds no '&'), env_user_valid on what it finds against a
 * reference, and node/files' files_get on the parsed path and on the raw input over a folder
 * made in LLVMFuzzerInitialize.
 *
 * The folder: index.html, js/app.js, sub/index.html, "a b.txt", "100%.txt" are served; .hidden,
 * .git/config, js/.env (dotfiles), link.html (a symlink to ../secret.txt, outside the folder) are
 * not. It is deleted as soon as it is loaded, so whatever files_get returns came from memory.
 * Every files_get result must be NULL or the response loaded for exactly the name the path
 * percent-decodes to ("/" and ".../" meaning index.html), with that file's bytes; a path whose
 * raw or decoded form holds "/." (so "/../", "/.hidden", "/%2e%2e/") never gets a file. A
 * parsed path or query never holds a NUL byte; a raw one in the input-as-path ends the name
 * (see check_path).
 *
 * Input: 1 option byte, then the request bytes.
 *   bits 0-1: max_head (8192, 512, 64, 65536)   bits 2-7: seed of the chunk sizes */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "envelope.h"
#include "files.h"
#include "wbuf.h"
#include "ws_http.h"

#define CHECK(c) \
    do {         \
        if (!(c))  \
            abort(); \
    } while (0)

static const struct {
    const char *name, *url, *path, *body, *type; /* url: name percent-encoded */
} SERVED[] = {
    {"/index.html", "/index.html", "index.html", "<!doctype html><title>wsfan</title>\n",
     "text/html; charset=utf-8"},
    {"/js/app.js", "/js/app.js", "js/app.js", "console.log('app');\n",
     "text/javascript; charset=utf-8"},
    {"/sub/index.html", "/sub/index.html", "sub/index.html", "sub\n", "text/html; charset=utf-8"},
    {"/a b.txt", "/a%20b.txt", "a b.txt", "space\n", "text/plain; charset=utf-8"},
    {"/100%.txt", "/100%25.txt", "100%.txt", "percent\n", "text/plain; charset=utf-8"},
};
#define NSERVED (sizeof SERVED / sizeof SERVED[0])

/* Not served: dotfiles, a dot folder, and a symlink out of the folder. */
static const char *const HIDDEN[] = {".hidden", ".git/config", "js/.env"};
static const char *const REFUSED[] = {"/.hidden", "/.git/config", "/js/.env", "/link.html",
                                      "/../secret.txt", "/secret.txt", "/js/", "/js", "/sub",
                                      "", "index.html", "/index.html/", "/%2e%2e/secret.txt",
                                      "/%2E%2e%2Fsecret.txt", "/..%2fsecret.txt", "/%00",
                                      "/index.html%00", "/%", "/%2", "/%zz", "/100%.txt"};

static files *site;
static wbuf *resp[NSERVED];
static size_t resp_head[NSERVED];

/* ---- References ---------------------------------------------------------------------------- */

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes path into out (cap bytes); -1 if a '%' is not followed by two hex digits. */
static long decode(ws_span path, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < path.n; i++) {
        char c = path.p[i];
        if (c == '%') {
            if (path.n - i < 3 || hex(path.p[i + 1]) < 0 || hex(path.p[i + 2]) < 0)
                return -1;
            c = (char)(hex(path.p[i + 1]) << 4 | hex(path.p[i + 2]));
            i += 2;
        }
        if (n == cap)
            return -1;
        out[n++] = c;
    }
    return (long)n;
}

/* Which SERVED entry path names, or -1. */
static int ref_lookup(ws_span path, char *name, size_t cap, long *nl)
{
    long n = decode(path, name, cap - 16);
    *nl = n;
    if (n <= 0 || name[0] != '/' || memchr(name, '\0', (size_t)n))
        return -1;
    if (name[n - 1] == '/') {
        memcpy(name + n, "index.html", 10);
        n += 10;
        *nl = n;
    }
    for (size_t i = 0; i < NSERVED; i++)
        if (strlen(SERVED[i].name) == (size_t)n && memcmp(SERVED[i].name, name, (size_t)n) == 0)
            return (int)i;
    return -1;
}

static bool ref_user_valid(ws_span u)
{
    if (u.n < 1 || u.n > 64)
        return false;
    for (size_t i = 0; i < u.n; i++) {
        char x = u.p[i];
        if (!((x >= 'a' && x <= 'z') || (x >= 'A' && x <= 'Z') || (x >= '0' && x <= '9') ||
              strchr("._:@-", x) != NULL) || x == '\0')
            return false;
    }
    return true;
}

/* The first "name" or "name=value" of q's '&'-separated parameters. */
static bool ref_query_get(ws_span q, const char *name, ws_span *v)
{
    size_t nl = strlen(name), i = 0;
    while (i < q.n) {
        size_t e = i;
        while (e < q.n && q.p[e] != '&')
            e++;
        size_t len = e - i;
        if (len >= nl && memcmp(q.p + i, name, nl) == 0) {
            if (len == nl) {
                *v = (ws_span){q.p + e, 0};
                return true;
            }
            if (q.p[i + nl] == '=') {
                *v = (ws_span){q.p + i + nl + 1, len - nl - 1};
                return true;
            }
        }
        i = e + 1;
    }
    return false;
}

/* ---- Checks -------------------------------------------------------------------------------- */

static bool contains(const char *s, size_t n, const char *z)
{
    return memmem(s, n, z, strlen(z)) != NULL;
}

static void check_response(int i, const wbuf *b, size_t head_len)
{
    size_t bl = strlen(SERVED[i].body);
    CHECK(b == resp[i] && head_len == resp_head[i]);
    CHECK(b->len == head_len + bl && b->refs >= 1);
    CHECK(memcmp(b->data + head_len, SERVED[i].body, bl) == 0);
}

static void check_path(ws_span path)
{
    char name[2048];
    long nl;
    int want = ref_lookup(path, name, sizeof name, &nl);
    size_t head_len = (size_t)-1;
    wbuf *b = files_get(site, path, &head_len);
    /* A raw NUL byte in a name (ws_http_parse never lets one into a path) finds nothing:
     * ref_lookup knows no name with one. */
    if (want < 0) {
        CHECK(b == NULL);
    } else {
        CHECK(b != NULL);
        check_response(want, b, head_len);
    }
    if (b) {
        /* Never a way out of the folder, nor to a dotfile. */
        CHECK(!contains(path.p, path.n, "/.") && !contains(path.p, path.n, ".."));
        CHECK(nl > 0 && !contains(name, (size_t)nl, "/.") && !contains(name, (size_t)nl, ".."));
    }
}

static bool inside(ws_span s, const char *buf, size_t len)
{
    if (s.n == 0)
        return s.p == NULL || (s.p >= buf && s.p <= buf + len);
    return s.p >= buf && s.p <= buf + len && s.n <= (size_t)(buf + len - s.p);
}

static void check_query(ws_span q)
{
    static const char *const names[] = {"token", "user", "nodes"};
    for (size_t i = 0; i < 3; i++) {
        ws_span v = {(const char *)1, 12345}, r;
        bool got = ws_http_query_get(q, names[i], &v), want = ref_query_get(q, names[i], &r);
        CHECK(got == want);
        if (!got)
            continue;
        CHECK(v.p == r.p && v.n == r.n);
        CHECK(inside(v, q.p, q.n) && v.p != NULL);
        CHECK(!memchr(v.p, '&', v.n));
        size_t nl = strlen(names[i]);
        /* Preceded by "name=" (or it is "name" alone), at the start or after '&'. */
        const char *k = v.n || (v.p > q.p && v.p[-1] == '=') ? v.p - nl - 1 : v.p - nl;
        CHECK(k >= q.p && memcmp(k, names[i], nl) == 0 && (k == q.p || k[-1] == '&'));
        CHECK(env_user_valid(v) == ref_user_valid(v));
    }
}

static void check_req(const ws_http_req *r, int rc, const char *buf, size_t len)
{
    CHECK(rc > 0 && (size_t)rc <= len && r->head_len == (size_t)rc);
    CHECK(r->path.p != NULL && inside(r->path, buf, r->head_len));
    CHECK(inside(r->query, buf, r->head_len));
    CHECK(!memchr(r->path.p, '?', r->path.n));
    CHECK(!memchr(r->path.p, '\0', r->path.n));
    CHECK(r->query.n == 0 || !memchr(r->query.p, '\0', r->query.n));
    if (r->query.n)
        CHECK(r->query.p == r->path.p + r->path.n + 1 && r->query.p[-1] == '?');
    for (size_t i = 0; i < r->nheaders; i++) {
        CHECK(inside(r->headers[i].name, buf, r->head_len));
        CHECK(inside(r->headers[i].value, buf, r->head_len));
    }
}

static bool same(ws_span a, ws_span b) { return a.p == b.p && a.n == b.n; }

static uint32_t next(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const size_t heads[4] = {8192, 512, 64, 65536};
    ws_http_limits lim = {heads[data[0] & 3], 32};
    uint32_t seed = (uint32_t)(data[0] >> 2) * 2654435761u + (uint32_t)size + 1;
    size_t n = size - 1;
    char *buf = malloc(n ? n : 1);
    CHECK(buf);
    memcpy(buf, data + 1, n);

    ws_http_req *whole = malloc(sizeof *whole), *part = malloc(sizeof *part);
    CHECK(whole && part);
    int rw = ws_http_parse(buf, n, 0, &lim, whole);
    CHECK(rw > 0 || rw == WS_HTTP_PARTIAL || rw == WS_HTTP_BAD || rw == WS_HTTP_TOO_LARGE);
    if (rw > 0)
        check_req(whole, rw, buf, n);

    /* The same bytes in random chunks: 1..16 bytes mostly, now and then up to 512. */
    int rp = WS_HTTP_PARTIAL;
    size_t last = 0;
    while (last < n && rp == WS_HTTP_PARTIAL) {
        uint32_t x = next(&seed);
        size_t step = (x & 7) == 0 ? 1 + (x >> 8) % 512 : 1 + (x >> 8) % 16;
        size_t len = last + step > n ? n : last + step;
        char *b = buf;
        if (n <= 4096) {
            b = malloc(len);
            CHECK(b);
            memcpy(b, buf, len);
        }
        rp = ws_http_parse(b, len, last, &lim, part);
        if (rp > 0) {
            CHECK(last < (size_t)rp); /* found in the chunk that completed the head */
            check_req(part, rp, b, len);
            CHECK(rp == rw);
#define REBASE(s) ((ws_span){(s).p ? buf + ((s).p - b) : NULL, (s).n})
            CHECK(same(whole->method, part->method));
            CHECK(same(whole->path, REBASE(part->path)));
            CHECK(whole->query.n == part->query.n);
            if (whole->query.n)
                CHECK(same(whole->query, REBASE(part->query)));
            CHECK(whole->http_major == part->http_major && whole->http_minor == part->http_minor);
            CHECK(whole->content_length == part->content_length && whole->chunked == part->chunked);
            CHECK(whole->nheaders == part->nheaders);
            for (size_t i = 0; i < whole->nheaders; i++) {
                CHECK(same(whole->headers[i].name, REBASE(part->headers[i].name)));
                CHECK(same(whole->headers[i].value, REBASE(part->headers[i].value)));
            }
#undef REBASE
        }
        if (b != buf)
            free(b);
        last = len;
    }
    CHECK(rp == rw || (n == 0 && rw == WS_HTTP_PARTIAL));

    if (rw > 0) {
        check_query(whole->query);
        check_path(whole->path);
    }
    /* The raw bytes as a query string and as a path, for the decoders' sake. */
    check_query((ws_span){buf, n});
    check_path((ws_span){buf, n});
    const char *q = memchr(buf, '?', n);
    if (q) {
        check_path((ws_span){buf, (size_t)(q - buf)});
        check_query((ws_span){q + 1, n - (size_t)(q - buf) - 1});
    }

    free(part);
    free(whole);
    free(buf);
    return 0;
}

static void put(const char *root, const char *rel, const char *body)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *s = path + strlen(root) + 1; (s = strchr(s, '/')); s++) {
        *s = '\0';
        CHECK(mkdir(path, 0700) == 0 || access(path, F_OK) == 0);
        *s = '/';
    }
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(body, 1, strlen(body), f) == strlen(body) && fclose(f) == 0);
}

static void rm(const char *root, const char *rel)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    CHECK(unlink(path) == 0);
}

static void rm_dir(const char *root, const char *rel)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    CHECK(rmdir(path) == 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    char tmp[] = "/tmp/fuzz_http.XXXXXX";
    CHECK(mkdtemp(tmp) != NULL);
    char www[64];
    snprintf(www, sizeof www, "%s/www", tmp);
    CHECK(mkdir(www, 0700) == 0);
    put(tmp, "secret.txt", "outside\n");
    for (size_t i = 0; i < NSERVED; i++)
        put(www, SERVED[i].path, SERVED[i].body);
    for (size_t i = 0; i < sizeof HIDDEN / sizeof HIDDEN[0]; i++)
        put(www, HIDDEN[i], "hidden\n");
    char link[128];
    snprintf(link, sizeof link, "%s/link.html", www);
    CHECK(symlink("../secret.txt", link) == 0);

    char err[256];
    site = files_load(www, err, sizeof err);
    if (!site) {
        fprintf(stderr, "files_load: %s\n", err);
        abort();
    }
    /* Gone from the disk: what files_get returns can only come from the load. */
    rm(www, "link.html");
    for (size_t i = 0; i < sizeof HIDDEN / sizeof HIDDEN[0]; i++)
        rm(www, HIDDEN[i]);
    for (size_t i = 0; i < NSERVED; i++)
        rm(www, SERVED[i].path);
    rm_dir(www, "js");
    rm_dir(www, "sub");
    rm_dir(www, ".git");
    rm_dir(tmp, "www");
    rm(tmp, "secret.txt");
    CHECK(rmdir(tmp) == 0);

    CHECK(files_count(site) == NSERVED);
    for (size_t i = 0; i < NSERVED; i++) {
        ws_span p = {SERVED[i].url, strlen(SERVED[i].url)};
        resp[i] = files_get(site, p, &resp_head[i]);
        CHECK(resp[i] != NULL);
        const char *h = (const char *)resp[i]->data;
        size_t hl = resp_head[i], bl = strlen(SERVED[i].body);
        CHECK(hl > 4 && resp[i]->len == hl + bl && memcmp(h + hl - 4, "\r\n\r\n", 4) == 0);
        CHECK(strncmp(h, "HTTP/1.1 200 OK\r\n", 17) == 0);
        char line[128];
        snprintf(line, sizeof line, "\r\nContent-Length: %zu\r\n", bl);
        CHECK(contains(h, hl, line));
        snprintf(line, sizeof line, "\r\nContent-Type: %s\r\n", SERVED[i].type);
        CHECK(contains(h, hl, line));
        CHECK(memcmp(h + hl, SERVED[i].body, bl) == 0);
    }
    for (size_t i = 0; i < sizeof REFUSED / sizeof REFUSED[0]; i++) {
        size_t hl;
        CHECK(files_get(site, (ws_span){REFUSED[i], strlen(REFUSED[i])}, &hl) == NULL);
    }
    /* "/" and "/sub/" are the index files; percent-encoding reaches the odd names. */
    static const struct {
        const char *path;
        int file;
    } alias[] = {{"/", 0}, {"/sub/", 2}, {"/a b.txt", 3}, {"/100%2525.txt", -1},
                 {"/%69ndex.html", 0}, {"%2Fjs%2Fapp.js", 1}, {"/sub%2F", 2}};
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++) {
        size_t hl;
        wbuf *b = files_get(site, (ws_span){alias[i].path, strlen(alias[i].path)}, &hl);
        if (alias[i].file < 0)
            CHECK(b == NULL);
        else
            CHECK(b == resp[alias[i].file] && hl == resp_head[alias[i].file]);
    }
    return 0;
}
