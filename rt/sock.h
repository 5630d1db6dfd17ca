/* sock: reading and writing one non-blocking socket, plain or TLS, with one set of return
 * codes, so connection code never asks which it has. The caller owns the fd, the SSL and the
 * watchers; sock only moves bytes and says what the socket waits for. */
#ifndef SOCK_H
#define SOCK_H

#include <ev.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define SOCK_TLS_CHUNK 16384 /* bytes of one TLS write: one full record */

enum { SOCK_AGAIN = -1, SOCK_ERROR = -2 };

/* 16 bytes: it is embedded in every connection of a server holding hundreds of thousands. */
typedef struct sock_io {
    SSL *ssl;               /* NULL: plain TCP */
    int fd;
    uint16_t tls_retry;     /* bytes a TLS write that would block must be retried with (0: none;
                               at most SOCK_TLS_CHUNK) */
    bool write_wants_read;  /* the last TLS write waits for bytes from the peer */
    bool read_wants_write;  /* the last TLS read waits for the socket to be writable */
} sock_io;

/* Reads at most len bytes into buf. Returns > 0 bytes read, 0 at the end of the stream,
 * SOCK_AGAIN (would block; EINTR too) or SOCK_ERROR. With TLS, SOCK_AGAIN may set
 * read_wants_write: the caller starts its write watcher and clears the flag. */
ssize_t sock_read(sock_io *s, void *buf, size_t len);

/* sock_read for a socket watched by libev: when TLS must write before it can read on, starts
 * wio (the caller's write watcher for this socket) on loop, and clears the flag. */
ssize_t sock_read_ev(sock_io *s, void *buf, size_t len, struct ev_loop *loop, ev_io *wio);

/* Writes the n iovecs. Returns bytes written (> 0), SOCK_AGAIN or SOCK_ERROR. Plain: one
 * writev. TLS: the iovecs are copied into scratch[0..cap) (cap >= SOCK_TLS_CHUNK) up to one
 * record and written with one SSL_write; after SOCK_AGAIN, OpenSSL needs the same bytes again,
 * so the next call must pass the same data first: it then copies exactly tls_retry bytes.
 * write_wants_read says whether that retry waits for readable rather than writable. */
ssize_t sock_writev(sock_io *s, const struct iovec *iov, int n, uint8_t *scratch, size_t cap);

#endif
