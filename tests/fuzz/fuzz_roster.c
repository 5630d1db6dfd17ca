/* libFuzzer target for the router's roster: the input is a stream of operations (join, leave,
 * snapshot chunks and ends, node drops, expiry, event flushes) over a small universe of nodes,
 * clients, users and channels, some with client ids taken raw from the input. A shadow model
 * follows every operation; after each one the roster's counts must agree with it, and ASan
 * watches the frees. Input: bytes, 4 per operation. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roster.h"

#define CHECK(c) \
    do {         \
        if (!(c))  \
            abort(); \
    } while (0)

enum { NODES = 4, CLIENTS = 8, CHANNELS = 6, USERS = 3 };

typedef struct model {
    bool in[NODES][CLIENTS][CHANNELS];
    bool alive[NODES];
    bool named[NODES][CLIENTS][CHANNELS]; /* in the snapshot under way */
    bool snapping[NODES];
    int user[NODES][CLIENTS]; /* -1: no client record */
} model;

static const char *node_id(int n)
{
    static const char *ids[NODES] = {"n0", "n1", "n1.w0", "node-3.w1.abc"};
    return ids[n];
}

static void client_id(char *out, size_t cap, int n, int c)
{
    snprintf(out, cap, "%s.%x", node_id(n), c + 1);
}

static void channel(char *out, size_t cap, int ch) { snprintf(out, cap, "ch.%d", ch); }

static size_t model_count(const model *m, int ch)
{
    size_t k = 0;
    for (int n = 0; n < NODES; n++)
        for (int c = 0; c < CLIENTS; c++)
            k += m->in[n][c][ch];
    return k;
}

static bool client_in_any(const model *m, int n, int c)
{
    for (int ch = 0; ch < CHANNELS; ch++)
        if (m->in[n][c][ch])
            return true;
    return false;
}

static void on_events(void *ctx, const char *ch, const roster_event *ev, size_t n,
                      uint32_t more_joins, uint32_t more_leaves)
{
    (void)more_joins, (void)more_leaves;
    size_t *total = ctx;
    CHECK(ch && strlen(ch) > 0);
    for (size_t i = 0; i < n; i++)
        CHECK(ev[i].client && ev[i].user);
    *total += n;
}

static void on_member(void *ctx, const char *client, const char *user, const char *node)
{
    size_t *k = ctx;
    CHECK(client && user && node && strncmp(client, node, strlen(node)) == 0);
    (*k)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t key[16] = {7};
    roster *r = roster_new(key, 3);
    CHECK(r);
    model m;
    memset(&m, 0, sizeof m);
    memset(m.user, -1, sizeof m.user);
    rnode *nodes[NODES] = {0};
    double now = 0;
    size_t flushed = 0;
    char cid[64], ch[32], raw[32];

    for (size_t i = 0; i + 4 <= size; i += 4) {
        int op = data[i] % 9, n = data[i + 1] % NODES, c = data[i + 2] % CLIENTS,
            chn = data[i + 3] % CHANNELS;
        now += 0.25;
        bool created;
        client_id(cid, sizeof cid, n, c);
        channel(ch, sizeof ch, chn);
        const char *user = (const char *[]){"alice", "bob", "anonymous"}[data[i + 3] % USERS];
        switch (op) {
        case 0: /* join */
        case 1: {
            nodes[n] = roster_node(r, node_id(n), now, &created);
            CHECK(nodes[n] && created == !m.alive[n]);
            nodes[n]->timeout = 3;
            m.alive[n] = true;
            int rc = roster_join(r, nodes[n], cid, user, ch, op == 0);
            CHECK(rc == (m.in[n][c][chn] ? 0 : 1));
            if (!client_in_any(&m, n, c))
                m.user[n][c] = data[i + 3] % USERS;
            m.in[n][c][chn] = true;
            if (m.snapping[n])
                m.named[n][c][chn] = true;
            break;
        }
        case 2: /* leave */
            if (!m.alive[n])
                break;
            CHECK(roster_leave(r, nodes[n], cid, ch, true) == (m.in[n][c][chn] ? 1 : 0));
            m.in[n][c][chn] = false;
            m.named[n][c][chn] = false;
            break;
        case 3: /* a client id from the input: must be refused unless it is well formed */
            if (!m.alive[n])
                break;
            memcpy(raw, data + i, 4);
            raw[4] = '\0';
            CHECK(roster_join(r, nodes[n], raw, user, ch, true) == -1);
            CHECK(roster_leave(r, nodes[n], raw, ch, true) == -1);
            break;
        case 4: /* snapshot begin (a new id each time) */
            if (!m.alive[n])
                break;
            roster_snapshot_begin(r, nodes[n], (uint64_t)i + 1);
            m.snapping[n] = true;
            memset(m.named[n], 0, sizeof m.named[n]);
            break;
        case 5: /* snapshot end: what was not named since begin goes */
            if (!m.alive[n] || !m.snapping[n])
                break;
            roster_snapshot_end(r, nodes[n], data[i + 2] & 1);
            for (int x = 0; x < CLIENTS; x++)
                for (int y = 0; y < CHANNELS; y++)
                    m.in[n][x][y] = m.in[n][x][y] && m.named[n][x][y];
            m.snapping[n] = false;
            break;
        case 6: /* drop */
            if (!m.alive[n])
                break;
            roster_drop_node(r, nodes[n], true);
            memset(m.in[n], 0, sizeof m.in[n]);
            m.alive[n] = m.snapping[n] = false;
            nodes[n] = NULL;
            break;
        case 7: /* everyone but n goes silent for a long time */
            if (m.alive[n])
                roster_node(r, node_id(n), now + 10, &created);
            now += 10;
            roster_expire(r, now, NULL, NULL);
            for (int x = 0; x < NODES; x++)
                if (x != n && m.alive[x]) {
                    memset(m.in[x], 0, sizeof m.in[x]);
                    m.alive[x] = m.snapping[x] = false;
                    nodes[x] = NULL;
                }
            break;
        case 8:
            roster_flush_events(r, on_events, &flushed);
            CHECK(roster_pending_events(r) == 0);
            break;
        }
        for (int x = 0; x < NODES; x++)
            for (int y = 0; y < CLIENTS; y++)
                if (!client_in_any(&m, x, y))
                    m.user[x][y] = -1;
        size_t members = 0;
        for (int y = 0; y < CHANNELS; y++) {
            channel(ch, sizeof ch, y);
            size_t k = 0;
            roster_each_member(r, ch, on_member, &k);
            CHECK(k == model_count(&m, y) && roster_count(r, ch) == k);
            members += k;
        }
        roster_stats s = roster_get_stats(r);
        CHECK(s.members == members);
        size_t alive = 0, clients = 0;
        for (int x = 0; x < NODES; x++) {
            alive += m.alive[x];
            for (int y = 0; y < CLIENTS; y++)
                clients += m.user[x][y] >= 0;
        }
        CHECK(s.nodes == alive && s.clients == clients);
    }
    roster_free(r);
    return 0;
}
