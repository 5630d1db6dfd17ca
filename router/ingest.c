#include "ingest.h"

#include <string.h>

#include "cluster.h"
#include "envelope.h"
#include "ws_hash.h"
#include "ws_utf8.h"

static bool str_ok(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    return n && n <= max && ws_utf8_valid((const uint8_t *)s, n);
}

const char *ingest_check(const Wsfan__Envelope *e)
{
    if (!e->origin || strlen(e->origin) > CLUSTER_NODE_ID_MAX ||
        !env_channel_valid((ws_span){e->origin, strlen(e->origin)}))
        return "bad origin";
    if (e->n_members > INGEST_MEMBERS_MAX)
        return "too many members";
    return NULL;
}

static void fault(ingest_result *res, const char *why)
{
    if (!res->malformed++)
        res->why = why;
}

void ingest_members(roster *ro, rnode *n, const Wsfan__Envelope *e, bool join, bool emit,
                    uint32_t shard, uint32_t shards, ingest_result *res)
{
    memset(res, 0, sizeof *res);
    bool mixed = e->kind == WSFAN__ENVELOPE__KIND__MEMBERS;
    for (size_t i = 0; i < e->n_members; i++) {
        const Wsfan__Envelope__Member *m = e->members[i];
        if (mixed)
            join = !m->left;
        if (!m->channel || !env_channel_valid((ws_span){m->channel, strlen(m->channel)})) {
            fault(res, "bad channel name");
            continue;
        }
        if (ws_shard(m->channel, strlen(m->channel), shards) != shard) {
            if (!res->misrouted++)
                res->misrouted_channel = m->channel;
            continue;
        }
        if (!str_ok(m->client_id, CLUSTER_CLIENT_ID_MAX) ||
            (join && !str_ok(m->user_id, CLUSTER_USER_MAX))) {
            fault(res, "bad client or user id");
            continue;
        }
        int rc = join ? roster_join(ro, n, m->client_id, m->user_id, m->channel, emit)
                      : roster_leave(ro, n, m->client_id, m->channel, emit);
        if (rc == -1)
            fault(res, "a client id that is not of this node");
        else if (rc == -2)
            res->out_of_memory = true;
        else
            res->applied++;
    }
}
