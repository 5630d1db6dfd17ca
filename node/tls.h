/* tls: the server-side OpenSSL context for wss://. Connections use it through conn's
 * transport calls; this module only builds and checks the context. */
#ifndef TLS_H
#define TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

/* Loads cert (PEM chain) and key into a TLS 1.2+ server context with partial writes, moving
 * write buffers and released idle buffers. NULL on failure, with the reason in err. The caller
 * owns the context (SSL_CTX_free). */
SSL_CTX *tls_server_ctx(const char *cert, const char *key, char *err, size_t errlen);

#endif
