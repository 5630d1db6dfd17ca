/* libFuzzer target for the cluster Envelope as it arrives from Redis: protobuf-c's unpack of
 * any bytes, a pack/unpack round trip that must keep every field, the router's intake
 * (ingest_check, then ingest_members into a roster that persists across inputs, as in a
 * long-running router) and the node's framing of EVENTS batches, whose frames must be valid
 * JSON whenever the ids are UTF-8. Input: one packed Envelope. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.pb-c.h"
#include "envelope.h"
#include "ingest.h"
#include "roster.h"
#include "ws_json.h"
#include "ws_utf8.h"

#define CHECK(c) \
    do {         \
        if (!(c))  \
            abort(); \
    } while (0)

static bool same_str(const char *a, const char *b) { return strcmp(a ? a : "", b ? b : "") == 0; }

static void round_trip(const Wsfan__Envelope *e)
{
    size_t n = wsfan__envelope__get_packed_size(e);
    uint8_t *buf = malloc(n ? n : 1);
    CHECK(buf && wsfan__envelope__pack(e, buf) == n);
    Wsfan__Envelope *f = wsfan__envelope__unpack(NULL, n, buf);
    CHECK(f);
    CHECK(f->kind == e->kind && f->seq == e->seq && f->request_id == e->request_id &&
          f->last == e->last && f->count == e->count && f->n_members == e->n_members &&
          f->payload.len == e->payload.len && same_str(f->origin, e->origin) &&
          same_str(f->channel, e->channel) && same_str(f->client_id, e->client_id));
    CHECK(!e->payload.len || memcmp(f->payload.data, e->payload.data, e->payload.len) == 0);
    for (size_t i = 0; i < e->n_members; i++)
        CHECK(same_str(f->members[i]->client_id, e->members[i]->client_id) &&
              same_str(f->members[i]->channel, e->members[i]->channel) &&
              f->members[i]->left == e->members[i]->left);
    wsfan__envelope__free_unpacked(f, NULL);
    free(buf);
}

static bool unknown_fields(const Wsfan__Envelope *e)
{
    if (e->base.n_unknown_fields)
        return true;
    for (size_t i = 0; i < e->n_members; i++)
        if (e->members[i]->base.n_unknown_fields)
            return true;
    return false;
}

static bool utf8(const char *s) { return s && ws_utf8_valid((const uint8_t *)s, strlen(s)); }

/* What presence.c does with an EVENTS batch on a node: one frame per member, then overflow. */
static void frame_events(const Wsfan__Envelope *e)
{
    if (!e->channel || !env_channel_valid((ws_span){e->channel, strlen(e->channel)}))
        return;
    ws_span ch = {e->channel, strlen(e->channel)};
    char out[1024];
    for (size_t i = 0; i < e->n_members && i < 64; i++) {
        const Wsfan__Envelope__Member *m = e->members[i];
        if (!utf8(m->client_id) || !utf8(m->user_id))
            continue;
        size_t n = env_write_event(out, sizeof out, m->left, ch, m->client_id, m->user_id);
        CHECK(n == 0 || (ws_utf8_valid((const uint8_t *)out, n) && ws_json_valid(out, n)));
    }
    size_t n = env_write_overflow(out, sizeof out, ch, e->more_joins, e->more_leaves);
    CHECK(n && ws_json_valid(out, n));
}

static void on_events(void *ctx, const char *channel, const roster_event *ev, size_t n,
                      uint32_t more_joins, uint32_t more_leaves)
{
    (void)ctx, (void)more_joins, (void)more_leaves;
    CHECK(env_channel_valid((ws_span){channel, strlen(channel)}));
    for (size_t i = 0; i < n; i++)
        CHECK(utf8(ev[i].client) && utf8(ev[i].user));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static roster *ro;
    static double now;
    if (!ro) {
        static const uint8_t key[16] = {9};
        ro = roster_new(key, 4);
        CHECK(ro);
    }
    Wsfan__Envelope *e = wsfan__envelope__unpack(NULL, size, data);
    if (!e)
        return 0;
    if (!unknown_fields(e)) /* protobuf-c keeps unknown fields verbatim, even a field 0 its own
                              * unpack refuses: wsfan never re-packs what it received */
        round_trip(e);
    if (e->kind == WSFAN__ENVELOPE__KIND__EVENTS)
        frame_events(e);
    now += 1;
    if (!ingest_check(e)) {
        bool created;
        rnode *n = roster_node(ro, e->origin, now, &created);
        CHECK(n);
        n->timeout = 50;
        bool join = e->kind != WSFAN__ENVELOPE__KIND__LEAVE;
        if (e->kind == WSFAN__ENVELOPE__KIND__SNAPSHOT)
            roster_snapshot_begin(ro, n, e->seq);
        ingest_result res;
        uint32_t shards = (uint32_t)(e->request_id % 4) + 1;
        ingest_members(ro, n, e, join, true, (uint32_t)(e->seq % shards), shards, &res);
        CHECK(res.applied + res.malformed + res.misrouted <= e->n_members);
        CHECK(!res.malformed == !res.why && !res.misrouted == !res.misrouted_channel);
        if (e->kind == WSFAN__ENVELOPE__KIND__SNAPSHOT && e->last)
            roster_snapshot_end(ro, n, true);
        roster_stats s = roster_get_stats(ro);
        CHECK(s.members >= s.clients && s.channels <= s.members + roster_pending_events(ro));
    }
    roster_flush_events(ro, on_events, NULL);
    roster_expire(ro, now, NULL, NULL); /* nodes silent for 50 inputs go, with their members */
    wsfan__envelope__free_unpacked(e, NULL);
    return 0;
}
