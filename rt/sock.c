#include "sock.h"

#include <errno.h>
#include <openssl/err.h>
#include <string.h>
#include <unistd.h>

static ssize_t errno_result(void)
{
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? SOCK_AGAIN : SOCK_ERROR;
}

ssize_t sock_read(sock_io *s, void *buf, size_t len)
{
    if (!s->ssl) {
        ssize_t n = read(s->fd, buf, len);
        return n >= 0 ? n : errno_result();
    }
    ERR_clear_error();
    int n = SSL_read(s->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    if (n > 0)
        return n;
    switch (SSL_get_error(s->ssl, n)) {
    case SSL_ERROR_WANT_READ:
        return SOCK_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        s->read_wants_write = true; /* e.g. a key update to answer before reading on */
        return SOCK_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        return SOCK_ERROR;
    }
}

ssize_t sock_read_ev(sock_io *s, void *buf, size_t len, struct ev_loop *loop, ev_io *wio)
{
    ssize_t n = sock_read(s, buf, len);
    if (n == SOCK_AGAIN && s->read_wants_write) {
        s->read_wants_write = false;
        ev_io_start(loop, wio);
    }
    return n;
}

ssize_t sock_writev(sock_io *s, const struct iovec *iov, int n, uint8_t *scratch, size_t cap)
{
    if (!s->ssl) {
        ssize_t r = writev(s->fd, iov, n);
        return r >= 0 ? r : errno_result();
    }
    size_t want = s->tls_retry ? s->tls_retry : SOCK_TLS_CHUNK, len = 0;
    if (want > cap)
        want = cap;
    for (int i = 0; i < n && len < want; i++) {
        size_t k = iov[i].iov_len < want - len ? iov[i].iov_len : want - len;
        memcpy(scratch + len, iov[i].iov_base, k);
        len += k;
    }
    ERR_clear_error();
    int r = SSL_write(s->ssl, scratch, (int)len);
    if (r > 0) {
        s->tls_retry = 0;
        return r;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        s->tls_retry = (uint16_t)len; /* OpenSSL wants the same bytes again (<= SOCK_TLS_CHUNK) */
        s->write_wants_read = e == SSL_ERROR_WANT_READ;
        return SOCK_AGAIN;
    }
    return SOCK_ERROR;
}
