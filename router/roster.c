#include "roster.h"

#include <stdlib.h>
#include <string.h>

#include "ws_table.h"
#include "ws_hash.h"

typedef struct rclient rclient;
typedef struct ruser ruser;
typedef struct rchannel rchannel;
typedef struct rmember rmember;
typedef struct xnode xnode;

struct xnode {
    rnode pub; /* first: an rnode * is an xnode * */
    tab_entry e;
    rclient *clients; /* doubly linked through nprev/nnext */
    char id[];
};

struct ruser {
    tab_entry e;
    rclient *clients; /* doubly linked through uprev/unext */
    char id[];
};

struct rclient {
    tab_entry e;
    xnode *node;
    ruser *user;
    rclient *nprev, *nnext, *uprev, *unext;
    rmember *members; /* this client's channels, linked through cnext */
    char id[];
};

/* One client on one channel: in the channel's array (at idx) and the client's list. */
struct rmember {
    rclient *c;
    rchannel *ch;
    rmember *cnext;
    uint32_t idx;
    uint32_t gen; /* the node's snapshot generation that last named it */
};

struct rchannel {
    tab_entry e;
    rmember **m;
    uint32_t n, cap;
    roster_event *ev; /* events waiting, at most event_max */
    uint32_t nev, more_joins, more_leaves;
    bool dirty;       /* on the dirty list */
    rchannel *dnext;
    char name[];
};

struct roster {
    table nodes, clients, users, channels;
    size_t event_max;
    rchannel *dirty;
    size_t ndirty;
    uint64_t members, events, events_capped, nodes_expired;
};

#define CONTAINER(p, type, field) ((type *)((char *)(p) - offsetof(type, field)))

roster *roster_new(const uint8_t key[16], size_t event_max)
{
    roster *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    uint64_t k[2];
    ws_siphash_key(k, key);
    tab_init(&r->nodes, k);
    tab_init(&r->clients, k);
    tab_init(&r->users, k);
    tab_init(&r->channels, k);
    r->event_max = event_max;
    return r;
}

/* Allocates a struct of size bytes followed by the string s, and sets up its table entry. */
static void *alloc_named(size_t size, size_t entry_off, size_t name_off, const char *s)
{
    size_t n = strlen(s);
    char *p = calloc(1, size + n + 1);
    if (!p)
        return NULL;
    memcpy(p + name_off, s, n + 1);
    tab_entry *e = (tab_entry *)(p + entry_off);
    e->key = p + name_off;
    e->klen = n;
    return p;
}

#define NEW_NAMED(type, s) ((type *)alloc_named(sizeof(type), offsetof(type, e), offsetof(type, id), (s)))

rnode *roster_node(roster *r, const char *id, double now, bool *created)
{
    *created = false;
    tab_entry *e = tab_get(&r->nodes, id, strlen(id));
    xnode *x = e ? CONTAINER(e, xnode, e) : NULL;
    if (!x) {
        if (!(x = NEW_NAMED(xnode, id)))
            return NULL;
        if (tab_put(&r->nodes, &x->e) < 0) {
            free(x);
            return NULL;
        }
        x->pub.id = x->id;
        *created = true;
    }
    x->pub.last_seen = now;
    return &x->pub;
}

/* ---- events ---- */

static void queue_event(roster *r, rchannel *ch, const rclient *c, bool left)
{
    r->events++;
    if (!ch->dirty) {
        ch->dirty = true;
        ch->dnext = r->dirty;
        r->dirty = ch;
        r->ndirty++;
    }
    if (ch->nev < r->event_max) {
        if (!ch->ev && !(ch->ev = malloc(r->event_max * sizeof *ch->ev)))
            goto capped;
        roster_event *ev = &ch->ev[ch->nev];
        ev->client = strdup(c->id);
        ev->user = strdup(c->user->id);
        if (!ev->client || !ev->user) {
            free(ev->client);
            free(ev->user);
            goto capped;
        }
        ev->left = left;
        ch->nev++;
        return;
    }
capped:
    r->events_capped++;
    if (left)
        ch->more_leaves++;
    else
        ch->more_joins++;
}

/* ---- channels ---- */

static rchannel *channel_get(const roster *r, const char *name)
{
    tab_entry *e = tab_get(&r->channels, name, strlen(name));
    return e ? CONTAINER(e, rchannel, e) : NULL;
}

static void channel_maybe_free(roster *r, rchannel *ch)
{
    if (ch->n || ch->dirty)
        return;
    tab_del(&r->channels, &ch->e);
    free(ch->m);
    free(ch->ev);
    free(ch);
}

/* ---- clients and users ---- */

/* True if client is "<node id>.<1 to 16 lowercase hex digits>". */
static bool client_of(const xnode *x, const char *client)
{
    size_t n = strlen(x->id), len = strlen(client);
    if (len < n + 2 || len > n + 17 || memcmp(client, x->id, n) != 0 || client[n] != '.')
        return false;
    for (size_t i = n + 1; i < len; i++)
        if (!((client[i] >= '0' && client[i] <= '9') || (client[i] >= 'a' && client[i] <= 'f')))
            return false;
    return true;
}

static void client_free(roster *r, rclient *c)
{
    xnode *x = c->node;
    if (c->nprev)
        c->nprev->nnext = c->nnext;
    else
        x->clients = c->nnext;
    if (c->nnext)
        c->nnext->nprev = c->nprev;
    x->pub.nclients--;
    ruser *u = c->user;
    if (c->uprev)
        c->uprev->unext = c->unext;
    else
        u->clients = c->unext;
    if (c->unext)
        c->unext->uprev = c->uprev;
    if (!u->clients) {
        tab_del(&r->users, &u->e);
        free(u);
    }
    tab_del(&r->clients, &c->e);
    free(c);
}

static rclient *client_make(roster *r, xnode *x, const char *id, const char *user)
{
    tab_entry *ue = tab_get(&r->users, user, strlen(user));
    ruser *u = ue ? CONTAINER(ue, ruser, e) : NULL;
    if (!u) {
        if (!(u = NEW_NAMED(ruser, user)))
            return NULL;
        if (tab_put(&r->users, &u->e) < 0) {
            free(u);
            return NULL;
        }
    }
    rclient *c = NEW_NAMED(rclient, id);
    if (!c || tab_put(&r->clients, &c->e) < 0) {
        free(c);
        if (!u->clients) {
            tab_del(&r->users, &u->e);
            free(u);
        }
        return NULL;
    }
    c->node = x;
    c->user = u;
    c->nnext = x->clients;
    if (x->clients)
        x->clients->nprev = c;
    x->clients = c;
    x->pub.nclients++;
    c->unext = u->clients;
    if (u->clients)
        u->clients->uprev = c;
    u->clients = c;
    return c;
}

/* ---- members ---- */

/* Removes member m (of prev in its client's list, NULL if first); frees the client after its
 * last channel and the channel after its last member (unless events wait on it). */
static void member_remove(roster *r, rmember *m, rmember *prev, bool emit)
{
    rclient *c = m->c;
    rchannel *ch = m->ch;
    if (emit)
        queue_event(r, ch, c, true);
    rmember *last = ch->m[--ch->n];
    ch->m[m->idx] = last;
    last->idx = m->idx;
    if (prev)
        prev->cnext = m->cnext;
    else
        c->members = m->cnext;
    free(m);
    r->members--;
    if (!c->members)
        client_free(r, c);
    channel_maybe_free(r, ch);
}

int roster_join(roster *r, rnode *n, const char *client, const char *user, const char *channel,
                bool emit)
{
    xnode *x = (xnode *)n;
    if (!client_of(x, client))
        return -1;
    tab_entry *ce = tab_get(&r->clients, client, strlen(client));
    rclient *c = ce ? CONTAINER(ce, rclient, e) : NULL;
    rchannel *ch = channel_get(r, channel);
    if (c && ch)
        for (rmember *m = c->members; m; m = m->cnext)
            if (m->ch == ch) {
                m->gen = x->pub.gen;
                return 0;
            }
    if (!ch) {
        ch = calloc(1, sizeof *ch + strlen(channel) + 1);
        if (!ch)
            return -2;
        strcpy(ch->name, channel);
        ch->e.key = ch->name;
        ch->e.klen = strlen(channel);
        if (tab_put(&r->channels, &ch->e) < 0) {
            free(ch);
            return -2;
        }
    }
    rmember *m = NULL;
    if (ch->n == ch->cap) {
        uint32_t cap = ch->cap ? ch->cap * 2 : 4;
        rmember **a = realloc(ch->m, cap * sizeof *a);
        if (!a)
            goto oom;
        ch->m = a;
        ch->cap = cap;
    }
    if (!c && !(c = client_make(r, x, client, user)))
        goto oom;
    if (!(m = malloc(sizeof *m))) {
        if (!c->members)
            client_free(r, c);
        goto oom;
    }
    *m = (rmember){.c = c, .ch = ch, .cnext = c->members, .idx = ch->n, .gen = x->pub.gen};
    c->members = m;
    ch->m[ch->n++] = m;
    r->members++;
    if (emit)
        queue_event(r, ch, c, false);
    return 1;
oom:
    channel_maybe_free(r, ch);
    return -2;
}

int roster_leave(roster *r, rnode *n, const char *client, const char *channel, bool emit)
{
    xnode *x = (xnode *)n;
    if (!client_of(x, client))
        return -1;
    tab_entry *ce = tab_get(&r->clients, client, strlen(client));
    rchannel *ch = channel_get(r, channel);
    if (!ce || !ch)
        return 0;
    rclient *c = CONTAINER(ce, rclient, e);
    for (rmember *m = c->members, *prev = NULL; m; prev = m, m = m->cnext)
        if (m->ch == ch) {
            member_remove(r, m, prev, emit);
            return 1;
        }
    return 0;
}

void roster_snapshot_begin(roster *r, rnode *n, uint64_t snap_id)
{
    (void)r;
    if (n->snap_id != snap_id || !snap_id) {
        n->snap_id = snap_id;
        n->gen++;
    }
}

size_t roster_snapshot_end(roster *r, rnode *n, bool emit)
{
    xnode *x = (xnode *)n;
    size_t removed = 0;
    for (rclient *c = x->clients, *cnext; c; c = cnext) {
        cnext = c->nnext; /* c may be freed with its last member */
        rmember *prev = NULL;
        for (rmember *m = c->members, *mnext; m; m = mnext) {
            mnext = m->cnext;
            if (m->gen != n->gen) {
                bool last = !c->members->cnext;
                member_remove(r, m, prev, emit);
                removed++;
                if (last)
                    break; /* c is gone */
            } else {
                prev = m;
            }
        }
    }
    n->synced = true;
    return removed;
}

void roster_drop_node(roster *r, rnode *n, bool emit)
{
    xnode *x = (xnode *)n;
    while (x->clients) {
        rclient *c = x->clients;
        while (c->members) {
            bool last = !c->members->cnext;
            member_remove(r, c->members, NULL, emit);
            if (last)
                break; /* c is gone */
        }
    }
    tab_del(&r->nodes, &x->e);
    free(x);
}

typedef struct expire_walk {
    roster *r;
    double now;
    size_t n;
    roster_expired_fn fn;
    void *ctx;
} expire_walk;

static void expire_one(tab_entry *e, void *ctx)
{
    expire_walk *w = ctx;
    xnode *x = CONTAINER(e, xnode, e);
    if (w->now - x->pub.last_seen > x->pub.timeout) {
        if (w->fn)
            w->fn(w->ctx, &x->pub, w->now);
        roster_drop_node(w->r, &x->pub, true);
        w->n++;
    }
}

size_t roster_expire(roster *r, double now, roster_expired_fn fn, void *ctx)
{
    expire_walk w = {r, now, 0, fn, ctx};
    tab_each(&r->nodes, expire_one, &w);
    r->nodes_expired += w.n;
    return w.n;
}

size_t roster_count(const roster *r, const char *channel)
{
    rchannel *ch = channel_get(r, channel);
    return ch ? ch->n : 0;
}

void roster_each_member(const roster *r, const char *channel, roster_member_fn fn, void *ctx)
{
    rchannel *ch = channel_get(r, channel);
    for (uint32_t i = 0; ch && i < ch->n; i++) {
        rclient *c = ch->m[i]->c;
        fn(ctx, c->id, c->user->id, c->node->id);
    }
}

void roster_flush_events(roster *r, roster_events_fn fn, void *ctx)
{
    rchannel *list = r->dirty;
    r->dirty = NULL;
    r->ndirty = 0;
    while (list) {
        rchannel *ch = list;
        list = ch->dnext;
        fn(ctx, ch->name, ch->ev, ch->nev, ch->more_joins, ch->more_leaves);
        for (uint32_t i = 0; i < ch->nev; i++) {
            free(ch->ev[i].client);
            free(ch->ev[i].user);
        }
        free(ch->ev);
        ch->ev = NULL;
        ch->nev = ch->more_joins = ch->more_leaves = 0;
        ch->dirty = false;
        ch->dnext = NULL;
        channel_maybe_free(r, ch);
    }
}

size_t roster_pending_events(const roster *r) { return r->ndirty; }

typedef struct node_walk {
    void (*fn)(rnode *n, void *ctx);
    void *ctx;
} node_walk;

static void node_one(tab_entry *e, void *ctx)
{
    node_walk *w = ctx;
    w->fn(&CONTAINER(e, xnode, e)->pub, w->ctx);
}

void roster_each_node(roster *r, void (*fn)(rnode *n, void *ctx), void *ctx)
{
    node_walk w = {fn, ctx};
    tab_each(&r->nodes, node_one, &w);
}

roster_stats roster_get_stats(const roster *r)
{
    return (roster_stats){
        .nodes = r->nodes.n,
        .clients = r->clients.n,
        .users = r->users.n,
        .channels = r->channels.n,
        .members = r->members,
        .events = r->events,
        .events_capped = r->events_capped,
        .nodes_expired = r->nodes_expired,
    };
}

static void free_node(tab_entry *e, void *ctx)
{
    roster_drop_node(ctx, &CONTAINER(e, xnode, e)->pub, false);
}

static void discard_events(void *ctx, const char *channel, const roster_event *ev, size_t n,
                           uint32_t more_joins, uint32_t more_leaves)
{
    (void)ctx, (void)channel, (void)ev, (void)n, (void)more_joins, (void)more_leaves;
}

void roster_free(roster *r)
{
    if (!r)
        return;
    tab_each(&r->nodes, free_node, r);
    roster_flush_events(r, discard_events, NULL);
    tab_free(&r->nodes);
    tab_free(&r->clients);
    tab_free(&r->users);
    tab_free(&r->channels);
    free(r);
}
