/* rconn: one Redis connection on a libev loop, parsed by hiredis's reader, that hands every
 * reply to one callback in the order it arrives: no callback per command. A subscriber
 * connection needs exactly that, since Redis also sends what nobody asked for (messages,
 * and the sunsubscribe of a slot that moved away). hiredis 0.14.1's async API knows the
 * replies of SUBSCRIBE but not those of SSUBSCRIBE, and stops the process on a reply it has no
 * callback for, so rlink's subscriber connections are rconns (docs/scaling.md). */
#ifndef RCONN_H
#define RCONN_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

struct redisReply;
typedef struct rconn rconn;

typedef struct rconn_hooks {
    /* The connection is established (commands sent before now go out first). */
    void (*up)(void *ctx);
    /* A reply, valid during the call. */
    void (*reply)(void *ctx, const struct redisReply *r);
    /* The connection failed or was lost (why says how); the rconn is freed right after this
     * returns, so forget it. Not called after rconn_free. */
    void (*down)(void *ctx, const char *why);
} rconn_hooks;

/* Starts connecting to host:port (port 0: the unix socket at host). Returns NULL (why filled)
 * when it cannot even start. */
rconn *rconn_new(struct ev_loop *loop, const char *host, int port, const rconn_hooks *hooks,
                 void *ctx, char *why, size_t why_cap);

/* Queues a command (argv as redisCommandArgv takes it; lens NULL: C strings). -1 out of
 * memory. */
int rconn_send(rconn *c, int argc, const char **argv, const size_t *lens);

/* Closes the connection at once; no hook is called after this. */
void rconn_free(rconn *c);

/* Shuts the socket down, as a cut would: down() follows from the loop. */
void rconn_cut(rconn *c);

#endif
