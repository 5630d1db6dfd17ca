#include "tls.h"

#include <openssl/err.h>
#include <stdio.h>

/* TLS 1.2: forward secrecy (ECDHE) and AEAD only, as Mozilla's "intermediate" profile without
 * the DHE suites (no DH parameters to manage). TLS 1.3 keeps OpenSSL's default suites, which
 * are all ECDHE + AEAD. */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                  \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                  \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

static SSL_CTX *fail(SSL_CTX *ctx, const char *what, char *err, size_t errlen)
{
    char detail[256] = "";
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, detail, sizeof detail);
    ERR_clear_error(); /* nothing stale for the next SSL call on this thread to trip over */
    snprintf(err, errlen, "%s: %s", what, detail);
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *tls_server_ctx(const char *cert, const char *key, char *err, size_t errlen)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return fail(NULL, "SSL_CTX_new", err, errlen);
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
        return fail(ctx, "TLS 1.2 minimum", err, errlen);
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1)
        return fail(ctx, "TLS 1.2 cipher list", err, errlen);
    /* RELEASE_BUFFERS: an idle TLS connection gives its record buffers back. PARTIAL_WRITE and
     * ACCEPT_MOVING_WRITE_BUFFER: queued frames are coalesced anew for each write. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* No compression (CRIME), no renegotiation (client-initiated renegotiation is a cheap way
     * to make the server do handshakes). Server preference picks among equally strong suites. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        return fail(ctx, cert, err, errlen);
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        return fail(ctx, key, err, errlen);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return fail(ctx, "key does not match certificate", err, errlen);
    return ctx;
}
