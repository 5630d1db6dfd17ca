#include "rcluster.h"

#include <hiredis/hiredis.h>
#include <string.h>

/* The value after field name in a list of field/value pairs, or NULL. */
static const redisReply *field(const redisReply *pairs, const char *name)
{
    if (!pairs || pairs->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < pairs->elements; i += 2) {
        const redisReply *k = pairs->element[i];
        if (k->type == REDIS_REPLY_STRING && strcmp(k->str, name) == 0)
            return pairs->element[i + 1];
    }
    return NULL;
}

static bool is_str(const redisReply *r, const char *s)
{
    return r && r->type == REDIS_REPLY_STRING && strcmp(r->str, s) == 0;
}

/* The shard's online master, added to m; its index, or RCLUSTER_NONE. */
static uint8_t shard_master(rcluster_map *m, const redisReply *nodes)
{
    for (size_t i = 0; nodes && nodes->type == REDIS_REPLY_ARRAY && i < nodes->elements; i++) {
        const redisReply *n = nodes->element[i], *port = field(n, "port"), *id = field(n, "id");
        const redisReply *host = field(n, "endpoint"), *ip = field(n, "ip");
        if (!is_str(field(n, "role"), "master") || !is_str(field(n, "health"), "online") ||
            !port || port->type != REDIS_REPLY_INTEGER || port->integer <= 0 || port->integer > 65535)
            continue;
        if (!host || host->type != REDIS_REPLY_STRING || !host->len || strcmp(host->str, "?") == 0)
            host = ip;
        if (!host || host->type != REDIS_REPLY_STRING || !host->len || host->len >= 256 ||
            m->nmasters == RCLUSTER_MASTERS_MAX)
            return RCLUSTER_NONE;
        rcluster_master *mm = &m->masters[m->nmasters];
        memcpy(mm->host, host->str, host->len + 1);
        mm->port = (int)port->integer;
        mm->id[0] = '\0';
        if (id && id->type == REDIS_REPLY_STRING && id->len < sizeof mm->id)
            memcpy(mm->id, id->str, id->len + 1);
        return (uint8_t)m->nmasters++;
    }
    return RCLUSTER_NONE;
}

int rcluster_from_shards(rcluster_map *m, const redisReply *r)
{
    m->nmasters = 0;
    memset(m->slot, RCLUSTER_NONE, sizeof m->slot);
    if (!r || r->type != REDIS_REPLY_ARRAY)
        return -1;
    int served = 0;
    for (size_t s = 0; s < r->elements; s++) {
        const redisReply *slots = field(r->element[s], "slots");
        if (!slots || slots->type != REDIS_REPLY_ARRAY || slots->elements % 2) {
            memset(m->slot, RCLUSTER_NONE, sizeof m->slot);
            m->nmasters = 0;
            return -1;
        }
        uint8_t master = shard_master(m, field(r->element[s], "nodes"));
        for (size_t i = 0; i < slots->elements; i += 2) {
            const redisReply *a = slots->element[i], *b = slots->element[i + 1];
            if (a->type != REDIS_REPLY_INTEGER || b->type != REDIS_REPLY_INTEGER ||
                a->integer < 0 || b->integer < a->integer || b->integer >= CLUSTER_SLOTS) {
                memset(m->slot, RCLUSTER_NONE, sizeof m->slot);
                m->nmasters = 0;
                return -1;
            }
            for (long long k = a->integer; k <= b->integer; k++) {
                served += master != RCLUSTER_NONE && m->slot[k] == RCLUSTER_NONE;
                m->slot[k] = master;
            }
        }
    }
    return served;
}

const rcluster_master *rcluster_master_of(const rcluster_map *m, uint16_t slot)
{
    uint8_t i = slot < CLUSTER_SLOTS ? m->slot[slot] : RCLUSTER_NONE;
    return i == RCLUSTER_NONE || i >= m->nmasters ? NULL : &m->masters[i];
}
