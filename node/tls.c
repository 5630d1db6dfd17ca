#include "tls.h"

#include <openssl/err.h>
#include <stdio.h>

static SSL_CTX *fail(SSL_CTX *ctx, const char *what, char *err, size_t errlen)
{
    char detail[256] = "";
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, detail, sizeof detail);
    snprintf(err, errlen, "%s: %s", what, detail);
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *tls_server_ctx(const char *cert, const char *key, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return fail(NULL, "SSL_CTX_new", err, errlen);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* RELEASE_BUFFERS: an idle TLS connection gives its record buffers back. PARTIAL_WRITE and
     * ACCEPT_MOVING_WRITE_BUFFER: queued frames are coalesced anew for each write. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        return fail(ctx, cert, err, errlen);
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        return fail(ctx, key, err, errlen);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return fail(ctx, "key does not match certificate", err, errlen);
    return ctx;
}
