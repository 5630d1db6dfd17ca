#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "net.h"

#define HEAD_MAX 4096
#define BODY_MAX 65536

typedef struct server {
    struct ev_loop *loop;
    ev_io accept_w;
    admin_page_fn page;
    void *ctx;
} server;

typedef struct client {
    server *s;
    int fd;
    ev_io io;
    ev_timer timeout;
    char in[HEAD_MAX];
    size_t in_len;
    char *out; /* the response, while it is being written */
    size_t out_len, out_off;
} client;

static void client_close(client *c)
{
    ev_io_stop(c->s->loop, &c->io);
    ev_timer_stop(c->s->loop, &c->timeout);
    close(c->fd);
    free(c->out);
    free(c);
}

static void on_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    client_close(t->data);
}

static void write_some(client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            client_close(c);
            return;
        }
        c->out_off += (size_t)n;
    }
    client_close(c);
}

static void respond(client *c, const ws_http_req *req)
{
    static char body[BODY_MAX];
    int status = 404;
    const char *ctype = "text/plain";
    size_t bn;
    if (!ws_span_eq(req->method, "GET")) {
        status = 405;
        bn = (size_t)snprintf(body, sizeof body, "method not allowed\n");
    } else {
        bn = c->s->page(c->s->ctx, req->path, &status, &ctype, body, sizeof body);
    }
    size_t cap = bn + 512;
    if (!(c->out = malloc(cap))) {
        client_close(c);
        return;
    }
    c->out_len = ws_http_response(c->out, cap, status, status == 405 ? "Allow: GET\r\n" : NULL,
                                  ctype, body, bn);
    ev_io_stop(c->s->loop, &c->io);
    ev_io_set(&c->io, c->fd, EV_WRITE);
    ev_io_start(c->s->loop, &c->io);
    write_some(c);
}

static void on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    client *c = io->data;
    if (c->out) {
        write_some(c);
        return;
    }
    ssize_t n = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        client_close(c);
        return;
    }
    size_t last = c->in_len;
    c->in_len += (size_t)n;
    static ws_http_req req;
    ws_http_limits lim = {.max_head = HEAD_MAX, .max_headers = 32};
    int rc = ws_http_parse(c->in, c->in_len, last, &lim, &req);
    if (rc == WS_HTTP_PARTIAL && c->in_len < sizeof c->in)
        return;
    if (rc < 0 || req.http_major != 1) {
        static const char bad[] = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        static const char version[] = "HTTP/1.1 505 HTTP Version Not Supported\r\n"
                                      "Connection: close\r\nContent-Length: 0\r\n\r\n";
        bool v = rc >= 0;
        if (write(c->fd, v ? version : bad, v ? sizeof version - 1 : sizeof bad - 1) < 0) {
            /* best effort: the peer sent garbage */
        }
        client_close(c);
        return;
    }
    respond(c, &req);
}

static void on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    server *s = io->data;
    for (int i = 0; i < 16; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                log_warn("admin: accept: %s", strerror(errno));
            return;
        }
        client *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->s = s;
        c->fd = fd;
        ev_io_init(&c->io, on_io, fd, EV_READ);
        c->io.data = c;
        ev_io_start(loop, &c->io);
        ev_timer_init(&c->timeout, on_timeout, 5, 0);
        c->timeout.data = c;
        ev_timer_start(loop, &c->timeout);
    }
}

int admin_start(struct ev_loop *loop, const char *addr, int port, admin_page_fn page, void *ctx)
{
    int fd = net_listen(addr, port, &(net_opts){.backlog = 64, .who = "admin: "});
    if (fd < 0)
        return -1;
    server *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        return -1;
    }
    s->loop = loop;
    s->page = page;
    s->ctx = ctx;
    ev_io_init(&s->accept_w, on_accept, fd, EV_READ);
    s->accept_w.data = s;
    ev_io_start(loop, &s->accept_w);
    return 0;
}
