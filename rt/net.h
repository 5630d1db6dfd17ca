/* net: listening sockets for every program of the tree (wsnode's workers, the admin port):
 * resolve, bind, listen, and the probe that finds a port someone serves already. Errors are
 * logged with the address. */
#ifndef NET_H
#define NET_H

#include <stdbool.h>

typedef struct net_opts {
    int backlog;     /* listen(2)'s; 0: bind only, to probe the port */
    bool share;      /* SO_REUSEPORT: several sockets take turns on the port */
    bool quiet;      /* no log line for an address that does not bind */
    const char *who; /* what the log lines begin with ("admin: "); NULL: nothing */
} net_opts;

/* Resolves host:port and binds the first address that binds: a non-blocking, close-on-exec
 * TCP socket with SO_REUSEADDR (TIME_WAIT is no owner). Returns it, listening unless
 * o->backlog is 0, or -1 with errno set (EINVAL when host does not resolve, which is always
 * logged); the caller owns and closes it. */
int net_listen(const char *host, int port, const net_opts *o);

/* True if nobody serves host:port: no socket binds there without SO_REUSEPORT, and this
 * process holds the port's lock, an abstract unix socket "<tag>.port.<host>.<port>" that the
 * kernel drops with the last process holding it (children inherit it), so two programs started
 * at once cannot both find the port free. False with errno set (EADDRINUSE: served); logs
 * only a host that does not resolve. */
bool net_port_free(const char *tag, const char *host, int port);

#endif
