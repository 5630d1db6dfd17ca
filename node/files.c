#include "files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_MAX_LEN 1024

typedef struct file {
    char *name; /* "/app.js" */
    wbuf *resp;
    size_t head_len;
} file;

struct files {
    file *v;
    size_t n, cap, bytes;
};

static const char *content_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"}, {".htm", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"}, {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"}, {".json", "application/json"},
        {".map", "application/json"}, {".svg", "image/svg+xml"}, {".png", "image/png"},
        {".jpg", "image/jpeg"}, {".jpeg", "image/jpeg"}, {".gif", "image/gif"},
        {".webp", "image/webp"}, {".ico", "image/x-icon"}, {".txt", "text/plain; charset=utf-8"},
        {".wasm", "application/wasm"}, {".woff2", "font/woff2"}, {".woff", "font/woff"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcasecmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* Reads path (size bytes) into a prebuilt response. */
static int add(files *f, const char *name, const char *path, size_t size, char *err, size_t errlen)
{
    if (f->n == FILES_MAX || size > FILES_MAX_BYTES - f->bytes) {
        snprintf(err, errlen, "more than %d files or %u bytes", FILES_MAX, FILES_MAX_BYTES);
        return -1;
    }
    char head[512];
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
                      "Connection: close\r\n\r\n",
                      content_type(name), size);
    wbuf *b = wbuf_new((size_t)hn + size);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (!b || fd < 0) {
        snprintf(err, errlen, "%s: %s", path, b ? strerror(errno) : "out of memory");
        if (b)
            wbuf_unref(b);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    memcpy(b->data, head, (size_t)hn);
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, b->data + hn + got, size - got);
        if (r <= 0) {
            snprintf(err, errlen, "%s: %s", path, r < 0 ? strerror(errno) : "changed while read");
            close(fd);
            wbuf_unref(b);
            return -1;
        }
        got += (size_t)r;
    }
    close(fd);
    b->len = (uint32_t)((size_t)hn + size);
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 32;
        file *v = realloc(f->v, cap * sizeof *v);
        if (!v) {
            wbuf_unref(b);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        f->v = v;
        f->cap = cap;
    }
    if (!(f->v[f->n].name = strdup(name))) {
        wbuf_unref(b);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    f->v[f->n].resp = b;
    f->v[f->n].head_len = (size_t)hn;
    f->n++;
    f->bytes += size;
    return 0;
}

static int walk(files *f, const char *dir, const char *prefix, int depth, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue; /* ".", "..", and dotfiles are never served */
        char path[PATH_MAX_LEN], name[PATH_MAX_LEN];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path ||
            snprintf(name, sizeof name, "%s/%s", prefix, e->d_name) >= (int)sizeof name)
            continue;
        struct stat st;
        if (lstat(path, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode) && depth < 8)
            rc = walk(f, path, name, depth + 1, err, errlen);
        else if (S_ISREG(st.st_mode))
            rc = add(f, name, path, (size_t)st.st_size, err, errlen);
    }
    closedir(d);
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const file *)a)->name, ((const file *)b)->name);
}

files *files_load(const char *dir, char *err, size_t errlen)
{
    files *f = calloc(1, sizeof *f);
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (walk(f, dir, "", 0, err, errlen) < 0) {
        files_free(f);
        return NULL;
    }
    qsort(f->v, f->n, sizeof *f->v, by_name);
    return f;
}

void files_free(files *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++) {
        free(f->v[i].name);
        wbuf_unref(f->v[i].resp);
    }
    free(f->v);
    free(f);
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

wbuf *files_get(const files *f, ws_span path, size_t *head_len)
{
    char name[PATH_MAX_LEN];
    size_t n = 0;
    for (size_t i = 0; i < path.n; i++) { /* percent-decoded */
        char c = path.p[i];
        if (c == '%') {
            int hi = i + 2 < path.n ? hexval(path.p[i + 1]) : -1;
            int lo = i + 2 < path.n ? hexval(path.p[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return NULL;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0' || n + 1 >= sizeof name - 16)
            return NULL; /* no name holds a NUL: "/index.html\0.txt" is not index.html */
        name[n++] = c;
    }
    if (n == 0 || name[0] != '/')
        return NULL;
    if (name[n - 1] == '/') {
        memcpy(name + n, "index.html", 10);
        n += 10;
    }
    name[n] = '\0';
    file key = {.name = name};
    const file *hit = bsearch(&key, f->v, f->n, sizeof *f->v, by_name);
    if (!hit)
        return NULL;
    *head_len = hit->head_len;
    return hit->resp;
}

size_t files_count(const files *f) { return f->n; }
