#include "cluster.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "envelope.h"

bool cluster_prefix_valid(const char *p)
{
    size_t n = strlen(p);
    for (size_t i = 0; i < n; i++)
        if (p[i] <= ' ' || p[i] > '~')
            return false;
    return n <= CLUSTER_PREFIX_MAX;
}

size_t cluster_channel_name(char *out, size_t cap, const char *kind, ws_span ch)
{
    if (ch.n > ENV_CHANNEL_MAX)
        return 0;
    int n = snprintf(out, cap, "%s{%.*s}", kind, (int)ch.n, ch.p);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

size_t cluster_router_channel(char *out, size_t cap, uint32_t shard)
{
    int n = snprintf(out, cap, "router:%" PRIu32, shard);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

size_t cluster_node_channel(char *out, size_t cap, ws_span node_id)
{
    if (node_id.n > CLUSTER_NODE_ID_MAX)
        return 0;
    int n = snprintf(out, cap, "node:%.*s", (int)node_id.n, node_id.p);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

size_t cluster_client_id(char *out, size_t cap, const char *node_id, uint64_t local)
{
    int n = snprintf(out, cap, "%s.%" PRIx64, node_id, local);
    return n > 0 && (size_t)n < cap && (size_t)n <= CLUSTER_CLIENT_ID_MAX ? (size_t)n : 0;
}

bool cluster_client_split(ws_span id, ws_span *node, uint64_t *local)
{
    if (id.n < 3 || id.n > CLUSTER_CLIENT_ID_MAX)
        return false;
    size_t dot = id.n;
    while (dot > 0 && id.p[dot - 1] != '.')
        dot--;
    if (dot < 2 || dot == id.n || id.n - dot > 16)
        return false;
    uint64_t v = 0;
    for (size_t i = dot; i < id.n; i++) {
        char c = id.p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *node = (ws_span){id.p, dot - 1};
    *local = v;
    /* The node id names a Redis channel: keep it to the characters node ids are made of. */
    return node->n <= CLUSTER_NODE_ID_MAX && env_channel_valid(*node);
}
