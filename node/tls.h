/* tls: the server-side OpenSSL context for wss://. Connections use it through conn's
 * transport calls; this module only builds and checks the context. */
#ifndef TLS_H
#define TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

/* Loads cert (PEM chain) and key into a TLS 1.2+ server context: TLS 1.2 limited to ECDHE
 * with AEAD ciphers (GCM, ChaCha20-Poly1305), TLS 1.3 with OpenSSL's default suites, no
 * compression, no renegotiation; partial writes, moving write buffers and released idle
 * buffers. NULL on failure, with the reason in err. The caller owns the context
 * (SSL_CTX_free); SSL objects made from it hold their own reference, so a worker can replace
 * its context (certificate reload) while connections made from the old one stay open. */
SSL_CTX *tls_server_ctx(const char *cert, const char *key, char *err, size_t errlen);

#endif
