/* rlink's subscriptions: the names it keeps subscribed, each on the server that serves it,
 * and the subscriber connections that carry them (rconn: every reply to one callback, the
 * ones nobody asked for included). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rlink.h"
#include "rlink_impl.h"

/* A subscriber connection can die without a word (a middlebox dropped it, a host went away):
 * after PROBE_IDLE seconds without traffic it is sent a PING, and it is dropped as if cut
 * when PROBE_BOUND more seconds bring nothing. A busy connection is never probed: its
 * traffic shows it alive. */
#define PROBE_IDLE 1.0
#define PROBE_BOUND 2.0

/* What a subscriber connection awaits, in the order it was sent: an answer of the kind
 * below (for SUB and UNSUB, naming name). */
enum { SENT_AUTH, SENT_SUB, SENT_UNSUB, SENT_PING };
typedef struct sub_sent {
    ws_list link; /* rshard.sent */
    uint8_t kind;
    uint16_t len;
    char name[];
} sub_sent;

static bool expect(rshard *s, int kind, const char *name, size_t len)
{
    sub_sent *x = malloc(sizeof *x + len);
    if (!x)
        return false;
    x->kind = (uint8_t)kind;
    x->len = (uint16_t)len;
    memcpy(x->name, name, len);
    ws_list_push(&s->sent, &x->link);
    return true;
}

static void forget_sent(rshard *s)
{
    while (!ws_list_empty(&s->sent)) {
        ws_list *it = ws_list_first(&s->sent);
        ws_list_remove(it);
        free(ws_container_of(it, sub_sent, link));
    }
}

/* Sends (S)SUBSCRIBE or (S)UNSUBSCRIBE of name on s. */
static bool send_sub(rshard *s, bool sub, const char *name, size_t len)
{
    bool c = s->l->cluster;
    const char *argv[2] = {sub ? (c ? "SSUBSCRIBE" : "SUBSCRIBE") : (c ? "SUNSUBSCRIBE" : "UNSUBSCRIBE"),
                           name};
    size_t lens[2] = {strlen(argv[0]), len};
    return s->sub && expect(s, sub ? SENT_SUB : SENT_UNSUB, name, len) &&
           rconn_send(s->sub, 2, argv, lens) == 0;
}

static void confirmed(rlink *l, rsub *x, bool ok)
{
    if (x->fn) {
        if (ok)
            x->fn(x->ctx, NULL, 0);
    } else if (l->hooks.subscribed) {
        l->hooks.subscribed(l->ctx, x->name, x->len, ok);
    }
}

/* Sends x to the server of its slot, if that one is up (else x waits for it). again: it was
 * subscribed before, so the owner hears it missed something. Returns true if sent. */
static bool place(rlink *l, rsub *x, bool again)
{
    rshard *to = rlink_shard_of(l, x->slot);
    if (x->on == to && x->on)
        return false;
    if (x->on && x->on->sub_up)
        send_sub(x->on, false, x->name, x->len); /* the old owner, if it still listens */
    if (x->on && !x->confirmed)
        confirmed(l, x, false); /* the answer awaited there confirms nothing now */
    x->on = NULL;
    x->confirmed = false;
    if (!to || !to->sub_up || !send_sub(to, true, x->name, x->len))
        return false;
    x->on = to;
    if (again && !x->fn && l->hooks.resubscribed)
        l->hooks.resubscribed(l->ctx, x->name, x->len);
    return true;
}

static void place_one(tab_entry *e, void *ctx) { place(ctx, ws_container_of(e, rsub, e), true); }

void rsub_place_all(rlink *l) { tab_each(&l->subs, place_one, l); }

/* ---- a subscriber connection's answers -------------------------------------------------- */

static rsub *find(rlink *l, const redisReply *name)
{
    if (!name || name->type != REDIS_REPLY_STRING)
        return NULL;
    tab_entry *e = tab_get(&l->subs, name->str, name->len);
    return e ? ws_container_of(e, rsub, e) : NULL;
}

static bool is(const redisReply *r, const char *s)
{
    return r->type == REDIS_REPLY_STRING && strcasecmp(r->str, s) == 0;
}

/* Redis took a subscription of x away (its slot moved): it waits for the new map. */
static void moved_away(rshard *s, rsub *x)
{
    if (!x || x->on != s)
        return;
    if (!x->confirmed)
        confirmed(s->l, x, false);
    x->on = NULL;
    x->confirmed = false;
    s->l->st.moved++;
    rlink_map_stale(s->l);
}

static void on_push(rshard *s, const redisReply *r)
{
    rlink *l = s->l;
    const redisReply *kind = r->element[0];
    if ((is(kind, "message") || is(kind, "smessage")) && r->elements == 3 &&
        r->element[2]->type == REDIS_REPLY_STRING) {
        rsub *x = find(l, r->element[1]);
        const redisReply *m = r->element[2];
        if (x && x->fn)
            x->fn(x->ctx, (const uint8_t *)m->str, m->len);
        else if (x && l->hooks.message)
            l->hooks.message(l->ctx, x->name, x->len, (const uint8_t *)m->str, m->len);
    } else if (is(kind, "sunsubscribe") && r->elements == 3) {
        moved_away(s, find(l, r->element[1])); /* one nobody asked for */
    }
}

/* s's subscriber connection can take subscriptions: the ones its server serves go there. */
static void sub_ready(rshard *s)
{
    s->sub_up = true;
    rsub_place_all(s->l);
    rlink_update_up(s->l, s);
}

/* The answer to the oldest command sent, x. */
static void on_answer(rshard *s, sub_sent *x, const redisReply *r)
{
    rlink *l = s->l;
    tab_entry *e = x->kind == SENT_SUB ? tab_get(&l->subs, x->name, x->len) : NULL;
    rsub *sub = e ? ws_container_of(e, rsub, e) : NULL;
    if (sub && sub->on != s)
        sub = NULL; /* unsubscribed, or sent elsewhere since */
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn("redis %s: %s%s%.*s: %s", rlink_where(s), x->kind == SENT_AUTH ? "AUTH" : "",
                 x->kind == SENT_SUB ? "SUBSCRIBE " : "", (int)x->len, x->name, r->str);
        if (x->kind == SENT_AUTH) {
            rconn_cut(s->sub); /* retried with backoff, as a lost connection */
        } else if (sub && (strncmp(r->str, "MOVED", 5) == 0 || strncmp(r->str, "CLUSTERDOWN", 11) == 0)) {
            moved_away(s, sub); /* answered (not ok) there */
        } else if (sub) {
            sub->confirmed = true; /* answered: refused (NOPERM...), not retried until a
                                      reconnect */
            confirmed(l, sub, false);
        }
        return;
    }
    if (x->kind == SENT_AUTH && !s->sub_up)
        sub_ready(s);
    if (sub && !sub->confirmed) {
        sub->confirmed = true;
        confirmed(l, sub, true);
    }
}

static void on_reply(void *ctx, const redisReply *r)
{
    rshard *s = ctx;
    s->sub_seen = ev_now(s->l->loop);
    ws_list *head = ws_list_first(&s->sent);
    sub_sent *x = head ? ws_container_of(head, sub_sent, link) : NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 && r->element[0]->type == REDIS_REPLY_STRING) {
        const redisReply *kind = r->element[0];
        bool sub = is(kind, "subscribe") || is(kind, "ssubscribe");
        bool unsub = is(kind, "unsubscribe") || is(kind, "sunsubscribe");
        bool answers = x && ((sub && x->kind == SENT_SUB) || (unsub && x->kind == SENT_UNSUB) ||
                             (is(kind, "pong") && x->kind == SENT_PING));
        if ((sub || unsub) && answers) /* and naming what was sent */
            answers = r->element[1]->type == REDIS_REPLY_STRING && r->element[1]->len == x->len &&
                      memcmp(r->element[1]->str, x->name, x->len) == 0;
        if (!answers) {
            on_push(s, r);
            return;
        }
    } else if (!x) {
        return; /* nothing awaited: not ours */
    }
    ws_list_remove(&x->link);
    on_answer(s, x, r);
    free(x);
}

static void on_up(void *ctx)
{
    rshard *s = ctx;
    s->sub_seen = ev_now(s->l->loop);
    s->probe_sent = 0;
    if (!s->l->user && !s->l->password) /* no AUTH answer to wait for */
        sub_ready(s);
}

static void rsub_unplace(tab_entry *e, void *ctx)
{
    rsub *x = ws_container_of(e, rsub, e);
    rshard *s = ctx;
    if (x->on != s)
        return;
    x->on = NULL;
    if (!x->confirmed)
        confirmed(s->l, x, false);
    x->confirmed = false;
}

/* s's subscriptions wait for a new connection (or a new owner). */
static void unplace(rshard *s) { tab_each(&s->l->subs, rsub_unplace, s); }

static void on_down(void *ctx, const char *why)
{
    rshard *s = ctx;
    log_warn("redis %s: subscribe link lost: %s; reconnecting", rlink_where(s), why);
    s->sub = NULL;
    rsub_down(s);
    rlink_shard_lost(s);
}

void rsub_down(rshard *s)
{
    s->sub_up = false;
    forget_sent(s);
    unplace(s);
    rlink_update_up(s->l, s);
    if (s->l->cluster && s->in_map)
        rlink_map_stale(s->l);
}

void rsub_connect(rshard *s)
{
    rlink *l = s->l;
    if (s->sub || !s->in_map)
        return;
    static const rconn_hooks hooks = {on_up, on_reply, on_down};
    char why[128];
    if (!(s->sub = rconn_new(l->loop, s->host, s->port, &hooks, s, why, sizeof why))) {
        log_warn("redis %s: subscribe link: %s", rlink_where(s), why);
        rlink_shard_lost(s);
        return;
    }
    /* AUTH goes first, so every later command runs authenticated; until its answer the
     * connection is not up (and a refused one is cut and retried). */
    const char *argv[3] = {"AUTH", l->user ? l->user : l->password, l->password ? l->password : ""};
    if ((l->user || l->password) &&
        (!expect(s, SENT_AUTH, "", 0) || rconn_send(s->sub, l->user ? 3 : 2, argv, NULL) < 0))
        rconn_cut(s->sub);
}

void rsub_drop_shard(rshard *s)
{
    if (s->sub) {
        rconn_free(s->sub);
        s->sub = NULL;
    }
    rsub_down(s);
}

/* ---- the probe ---------------------------------------------------------------------------- */

void rsub_probe(rlink *l, double now)
{
    for (int i = 0; i < l->nshards; i++) {
        rshard *s = l->shards[i];
        if (!s->sub || !s->sub_up) {
            s->probe_sent = 0;
            continue;
        }
        if (s->probe_sent > s->sub_seen && now - s->probe_sent >= PROBE_BOUND) {
            log_warn("redis %s: subscribe link silent for %.1f s and its PING unanswered; "
                     "dropping it", rlink_where(s), now - s->sub_seen);
            l->st.silent++;
            s->probe_sent = 0;
            rconn_cut(s->sub); /* lost as if cut, and reconnected */
            continue;
        }
        const char *argv[1] = {"PING"};
        if (now - s->sub_seen >= PROBE_IDLE && s->probe_sent <= s->sub_seen &&
            expect(s, SENT_PING, "", 0) && rconn_send(s->sub, 1, argv, NULL) == 0)
            s->probe_sent = now;
    }
}

/* ---- the API -------------------------------------------------------------------------------- */

/* Adds a subscription of <prefix><name> (fn NULL: a dynamic one) and sends it if it can.
 * Returns 0 if sent, 1 if it waits for its server, -1 out of memory. */
static int add(rlink *l, const char *name, size_t n, rlink_raw_fn fn, void *ctx)
{
    size_t plen = strlen(l->prefix);
    if (plen + n > CLUSTER_NAME_MAX)
        return -1;
    char full[CLUSTER_NAME_MAX + 1];
    memcpy(full, l->prefix, plen);
    memcpy(full + plen, name, n);
    tab_entry *e = tab_get(&l->subs, full, plen + n);
    rsub *x = e ? ws_container_of(e, rsub, e) : calloc(1, sizeof *x + plen + n);
    if (!x)
        return -1;
    if (!e) {
        memcpy(x->name, full, plen + n);
        x->len = (uint16_t)(plen + n);
        x->e.key = x->name;
        x->e.klen = x->len;
        x->slot = l->cluster ? cluster_slot(x->name, x->len) : 0;
        if (tab_put(&l->subs, &x->e) < 0)
            return free(x), -1;
    } else if (x->on) { /* asked again: sent again, so an answer comes for this ask too */
        if (!x->confirmed)
            confirmed(l, x, false);
        x->on = NULL;
    }
    x->fn = fn;
    x->ctx = ctx;
    return place(l, x, false) ? 0 : 1;
}

int rlink_listen(rlink *l, const char *name, rlink_raw_fn fn, void *ctx)
{
    return add(l, name, strlen(name), fn, ctx) < 0 ? -1 : 0;
}

int rlink_subscribe(rlink *l, const char *name, size_t len)
{
    return add(l, name, len, NULL, NULL);
}

void rlink_unsubscribe(rlink *l, const char *name, size_t len)
{
    char full[CLUSTER_NAME_MAX + 1];
    int n = snprintf(full, sizeof full, "%s%.*s", l->prefix, (int)len, name);
    tab_entry *e = n > 0 && (size_t)n < sizeof full ? tab_get(&l->subs, full, (size_t)n) : NULL;
    if (!e)
        return;
    rsub *x = ws_container_of(e, rsub, e);
    if (x->on && x->on->sub_up)
        send_sub(x->on, false, x->name, x->len);
    if (x->on && !x->confirmed)
        confirmed(l, x, false); /* its answer now finds no subscription to confirm */
    tab_del(&l->subs, e);
    free(x);
}
