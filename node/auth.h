/* auth: who a client is and what it may do. JWTs (libjwt) from the upgrade are checked against
 * one configured key: HS256/384/512 with a secret, or RS/ES 256/384/512 with a public key; the
 * token's alg must belong to that family ("none" never does), and exp/nbf hold within a
 * leeway. The `sub` claim is the user id; the `perm` claim, {"sub":[..],"pub":[..],"send":bool},
 * lists channel patterns (a name, or a prefix ending in '*'). Pure once made: auth_new reads
 * the key file, nothing else does I/O. */
#ifndef AUTH_H
#define AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "cluster.h"
#include "config.h"
#include "ws_http.h"

#define AUTH_USER_MAX CLUSTER_USER_MAX /* longest user id (sub claim): the cluster's one limit */
#define AUTH_PATTERNS_MAX 64 /* patterns per list in a perm claim */
#define AUTH_TOKEN_MAX 4096 /* longest token looked at */

typedef struct auth auth;
typedef struct auth_grant auth_grant;

enum auth_what { AUTH_SUB, AUTH_PUB, AUTH_SEND };

/* A verifier for cfg's --auth settings; NULL with a reason in err (unreadable key file, empty
 * secret). The caller frees it with auth_free. */
auth *auth_new(const config *cfg, char *err, size_t errlen);
void auth_free(auth *a);

/* Checks token[0..len) at time now (seconds since the epoch). On success returns 0, writes the
 * user id (NUL-terminated, at most AUTH_USER_MAX bytes) to user and sets *grant (the caller
 * frees it with auth_grant_free). Otherwise returns -1 and sets *why to a short static reason
 * ("expired", "bad signature", ...) that never contains the token. */
int auth_check(const auth *a, const char *token, size_t len, double now, char *user,
               auth_grant **grant, const char **why);

/* What a client without a token may do (--anonymous-sub/--anonymous-pub): owned by a. */
const auth_grant *auth_anonymous(const auth *a);

/* True if grant allows what on channel ch (ch unused for AUTH_SEND). A NULL grant allows
 * everything (no --auth). */
bool auth_may(const auth_grant *g, enum auth_what what, ws_span ch);

/* True if pattern (a channel name, or a prefix ending in '*') matches ch. */
bool auth_match(ws_span pattern, ws_span ch);

/* True if a prefix pattern's '*' follows a character other than '.', ':' or '-': "a*" matches
 * "admin.secret" too, which is rarely what was meant (wsnode warns at startup). */
bool auth_pattern_wide(ws_span pattern);

/* Frees a grant from auth_check; the anonymous grant and NULL are left alone. */
void auth_grant_free(auth_grant *g);

#endif
