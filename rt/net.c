#include "net.h"

#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

/* A socket for address a, bound (and listening with o->backlog); -1 with errno set. */
static int bind_one(const struct addrinfo *a, const net_opts *o)
{
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (o->share)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && (!o->backlog || listen(fd, o->backlog) == 0))
        return fd;
    int err = errno;
    close(fd);
    errno = err;
    return -1;
}

int net_listen(const char *host, int port, const net_opts *o)
{
    const char *who = o->who ? o->who : "";
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    char ps[8];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc != 0) {
        log_error("%scannot resolve --bind %s: %s", who, host, gai_strerror(rc));
        errno = EINVAL;
        return -1;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = bind_one(a, o);
        if (fd >= 0)
            break;
        err = errno;
        if (!o->quiet)
            log_error("%scannot listen on %s:%d: %s", who, host, port, strerror(err));
    }
    freeaddrinfo(res);
    if (fd < 0)
        errno = err;
    return fd;
}

/* Takes the lock of host:port for this process's life: true, or false with errno EADDRINUSE
 * when another process holds it. No lock to be had at all counts as taken (the probe alone
 * decides). */
static bool lock_port(const char *tag, const char *host, int port)
{
    static int lock_fd = -1; /* held for the process's whole life, never closed */
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int n = snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "%s.port.%s.%d", tag, host, port);
    if (n < 0 || (size_t)n > sizeof a.sun_path - 1)
        n = (int)sizeof a.sun_path - 1;
    lock_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (lock_fd < 0)
        return true;
    if (bind(lock_fd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)) == 0)
        return true;
    int err = errno;
    close(lock_fd);
    lock_fd = -1;
    errno = err;
    return err != EADDRINUSE;
}

bool net_port_free(const char *tag, const char *host, int port)
{
    if (!lock_port(tag, host, port)) {
        errno = EADDRINUSE;
        return false;
    }
    int fd = net_listen(host, port, &(net_opts){.quiet = true});
    if (fd < 0)
        return false;
    close(fd);
    return true;
}
