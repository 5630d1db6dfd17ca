#include "rconn.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

/* A subscriber connection carries every message of every channel the process follows, and a
 * worker busy fanning out wakes up rarely: Redis would buffer the rest and cut the connection
 * at its pub/sub output-buffer limit, losing what was in it. So a wakeup reads on until the
 * socket is empty (up to READ_MAX), the backlog lives in the process's own queues, whose
 * limits it controls, and the watchers run first in each loop iteration. */
#define READ_MAX (4 << 20)

struct rconn {
    struct ev_loop *loop;
    redisContext *c;
    ev_io rev, wev;
    bool connected;
    bool *alive; /* set while hooks run: cleared if the owner frees us under them */
    rconn_hooks hooks;
    void *ctx;
};

static void stop(rconn *c)
{
    ev_io_stop(c->loop, &c->rev);
    ev_io_stop(c->loop, &c->wev);
}

static void fail(rconn *c, const char *why)
{
    char copy[128];
    snprintf(copy, sizeof copy, "%s", why && why[0] ? why : "closed");
    stop(c);
    redisFree(c->c);
    c->c = NULL;
    rconn_hooks h = c->hooks;
    void *ctx = c->ctx;
    if (c->alive)
        *c->alive = false;
    free(c);
    h.down(ctx, copy);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    rconn *c = w->data;
    if (!c->connected) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            fail(c, strerror(err));
            return;
        }
        c->connected = true;
        ev_io_start(loop, &c->rev);
        bool alive = true;
        c->alive = &alive;
        c->hooks.up(c->ctx);
        if (!alive)
            return;
        c->alive = NULL;
    }
    int done = 0;
    if (redisBufferWrite(c->c, &done) == REDIS_ERR)
        fail(c, c->c->errstr);
    else if (done)
        ev_io_stop(loop, &c->wev);
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    rconn *c = w->data;
    bool alive = true;
    c->alive = &alive;
    for (size_t n = 0; n < READ_MAX; n += 16384) { /* hiredis reads 16 KiB at a time */
        if (redisBufferRead(c->c) == REDIS_ERR) {
            fail(c, c->c->errstr);
            return;
        }
        void *r = NULL;
        while (alive && redisGetReplyFromReader(c->c, &r) == REDIS_OK && r) {
            c->hooks.reply(c->ctx, r);
            freeReplyObject(r);
            r = NULL;
        }
        if (!alive)
            return;
        if (c->c->err) {
            fail(c, c->c->errstr); /* a protocol error */
            return;
        }
        int pending = 0;
        if (ioctl(c->c->fd, FIONREAD, &pending) < 0 || pending <= 0)
            break;
    }
    c->alive = NULL;
}

rconn *rconn_new(struct ev_loop *loop, const char *host, int port, const rconn_hooks *hooks,
                 void *ctx, char *why, size_t why_cap)
{
    rconn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(why, why_cap, "out of memory");
        return NULL;
    }
    c->c = port ? redisConnectNonBlock(host, port) : redisConnectUnixNonBlock(host);
    if (!c->c || c->c->err) {
        snprintf(why, why_cap, "%s", c->c ? c->c->errstr : "out of memory");
        redisFree(c->c);
        free(c);
        return NULL;
    }
    c->loop = loop;
    c->hooks = *hooks;
    c->ctx = ctx;
    ev_io_init(&c->rev, on_read, c->c->fd, EV_READ);
    ev_io_init(&c->wev, on_write, c->c->fd, EV_WRITE); /* writable: the connect is done */
    ev_set_priority(&c->rev, EV_MAXPRI);
    ev_set_priority(&c->wev, EV_MAXPRI);
    c->rev.data = c->wev.data = c;
    ev_io_start(loop, &c->wev);
    return c;
}

int rconn_send(rconn *c, int argc, const char **argv, const size_t *lens)
{
    if (redisAppendCommandArgv(c->c, argc, argv, lens) != REDIS_OK)
        return -1;
    ev_io_start(c->loop, &c->wev);
    return 0;
}

void rconn_free(rconn *c)
{
    if (!c)
        return;
    stop(c);
    redisFree(c->c);
    if (c->alive)
        *c->alive = false;
    free(c);
}

void rconn_cut(rconn *c) { shutdown(c->c->fd, SHUT_RDWR); }
