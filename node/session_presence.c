/* The presence and send ops of a session: answered by this worker alone without the Redis
 * bus, else asked of wsrouter and the other nodes through presence, at most SESSION_ASKS_MAX
 * in flight per session. */
#include <stdlib.h>
#include <string.h>

#include "gcra.h"
#include "log.h"
#include "presence.h"
#include "session.h"
#include "ws_frame.h"
#include "ws_utf8.h"

/* A presence query or a direct message waiting for the cluster: who asked, with what id. */
typedef session_wait ask_wait;

/* A presence or send request in flight: the session is held and counts it. */
static ask_wait *ask_new(session *s, const env_req *r)
{
    ask_wait *a = session_wait_new(s, r);
    if (!a)
        return NULL;
    if (r->op != ENV_OP_PRESENCE)
        a->ch_len = 0;
    s->refs++;
    s->asks++;
    return a;
}

/* The answer came (or never will): the session may be freed again. */
static void ask_free(ask_wait *a)
{
    if (!a)
        return;
    a->s->refs--;
    a->s->asks--;
    free(a);
}

/* Builds a presence answer in a growing buffer and sends it as one frame. */
typedef struct pres_out {
    char *p;
    size_t len, cap;
    bool failed;
} pres_out;

static void pres_put(pres_out *o, size_t (*write)(char *, size_t, void *), void *arg)
{
    for (;;) {
        if (o->failed)
            return;
        size_t n = write(o->p + o->len, o->cap - o->len, arg);
        if (n) {
            o->len += n;
            return;
        }
        size_t cap = o->cap ? o->cap * 2 : 4096;
        char *p = realloc(o->p, cap);
        if (!p) {
            o->failed = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
}

typedef struct pres_member {
    bool first;
    const char *client, *user, *node;
} pres_member;

static size_t put_member(char *out, size_t cap, void *arg)
{
    pres_member *m = arg;
    return env_write_member(out, cap, m->first, m->client, m->user, m->node);
}

typedef struct pres_head {
    ws_span id, ch;
    uint64_t count;
    bool members;
} pres_head;

static size_t put_head(char *out, size_t cap, void *arg)
{
    pres_head *h = arg;
    return env_write_presence_head(out, cap, h->id, h->ch, h->count, h->members);
}

static size_t put_tail(char *out, size_t cap, void *arg)
{
    const char *t = arg;
    size_t n = strlen(t);
    if (n > cap)
        return 0;
    memcpy(out, t, n);
    return n;
}

static void send_presence(session *s, pres_out *o)
{
    if (o->failed)
        session_reply_err(s, (ws_span){NULL, 0}, "internal", "out of memory");
    else
        session_send_text(s, o->p, o->len);
    free(o->p);
}

static void presence_answered(void *arg, const char *error, const Wsfan__Envelope *e)
{
    ask_wait *a = arg;
    session *s = a->s;
    ws_span id = {a->id, a->id_len}, ch = {a->ch, a->ch_len};
    if (!s->live) {
        ask_free(a);
        return;
    }
    if (error || !e) {
        if (error && strcmp(error, "rebuilding") == 0) /* never a partial list as if whole */
            session_reply_err(s, id, "unavailable", "wsrouter is rebuilding presence after a restart; try again");
        else
            session_reply_err(s, id, error ? error : "unavailable", "wsrouter did not answer");
        ask_free(a);
        return;
    }
    bool members = !e->count_only;
    pres_out o = {0};
    pres_head h = {id, ch, e->count, members};
    pres_put(&o, put_head, &h);
    for (size_t i = 0; members && i < e->n_members; i++) {
        const Wsfan__Envelope__Member *m = e->members[i];
        if (!ws_utf8_valid((const uint8_t *)m->client_id, strlen(m->client_id)) ||
            !ws_utf8_valid((const uint8_t *)m->user_id, strlen(m->user_id)) ||
            !ws_utf8_valid((const uint8_t *)m->node_id, strlen(m->node_id)))
            continue;
        pres_member pm = {o.len && o.p[o.len - 1] == '[', m->client_id, m->user_id, m->node_id};
        pres_put(&o, put_member, &pm);
    }
    pres_put(&o, put_tail, members ? "]}" : "}");
    send_presence(s, &o);
    ask_free(a);
}

typedef struct local_walk {
    pres_out *o;
    const worker *w;
    char id[CLUSTER_CLIENT_ID_MAX + 1];
} local_walk;

static void local_member(hub_member *m, void *ctx)
{
    local_walk *lw = ctx;
    if (lw->o->failed)
        return;
    session *x = session_of_sub(m);
    session_client_id(x, lw->id);
    pres_member pm = {lw->o->p[lw->o->len - 1] == '[', lw->id, session_user(x), lw->w->node_id};
    pres_put(lw->o, put_member, &pm);
}

/* Without the Redis bus this worker is the whole cluster: it answers presence itself. */
static void presence_local(session *s, const env_req *r)
{
    worker *w = s->w;
    size_t count = hub_count(&w->hub, r->ch);
    bool members = !r->count_only && count <= (size_t)w->cfg->presence_max_members;
    pres_out o = {0};
    pres_head h = {r->id, r->ch, count, members};
    pres_put(&o, put_head, &h);
    if (members && !o.failed) {
        local_walk lw = {&o, w, {0}};
        hub_each_member(&w->hub, r->ch, local_member, &lw);
    }
    pres_put(&o, put_tail, members ? "]}" : "}");
    send_presence(s, &o);
}

/* Room for one more question to the cluster; else err too_many_requests and false. */
static bool may_ask(session *s, const env_req *r)
{
    if (s->asks < SESSION_ASKS_MAX)
        return true;
    session_reply_err(s, r->id, "too_many_requests", "at most 8 presence or send requests in flight");
    return false;
}

void session_op_presence(session *s, const env_req *r)
{
    worker *w = s->w;
    if (!w->pres) {
        presence_local(s, r);
        return;
    }
    if (!may_ask(s, r))
        return;
    ask_wait *a = ask_new(s, r);
    if (!a || presence_query(w->pres, r->ch, r->count_only, presence_answered, a) < 0) {
        ask_free(a);
        session_reply_err(s, r->id, "unavailable", "no wsrouter can be asked now; try again");
    }
}

/* The sender learns what became of its direct message: ack, or why not. */
static void direct_answered_now(session *s, ws_span id, const char *error)
{
    if (!s->live)
        return;
    if (!error)
        session_reply_ack(s, id, false, 0);
    else if (strcmp(error, "not_found") == 0)
        session_reply_err(s, id, "not_found", "no such client");
    else if (strcmp(error, "busy") == 0)
        session_reply_err(s, id, "busy", "the client is not reading, or receives too many direct messages: dropped");
    else
        session_reply_err(s, id, error, "the client's node did not answer");
}

static void direct_answered(void *arg, const char *error, const Wsfan__Envelope *e)
{
    (void)e;
    ask_wait *a = arg;
    direct_answered_now(a->s, (ws_span){a->id, a->id_len}, error);
    ask_free(a);
}

void session_op_send(session *s, const env_req *r)
{
    worker *w = s->w;
    char from[CLUSTER_CLIENT_ID_MAX + 1];
    session_client_id(s, from);
    ws_span node;
    uint64_t local;
    if (!cluster_client_split(r->to, &node, &local)) {
        session_reply_err(s, r->id, "not_found", "no such client");
        return;
    }
    int rate = w->cfg->direct_rate;
    if (rate && !gcra_admit(&s->send_tat, ev_now(w->loop), rate, 2.0 * rate)) {
        w->st->rate_limited++;
        session_reply_err(s, r->id, "rate_limited", "over --direct-rate: message dropped");
        return;
    }
    if (ws_span_eq(node, w->node_id) || !w->pres) {
        const char *error = ws_span_eq(node, w->node_id) ? session_direct(w, local, from, r->data) : "not_found";
        direct_answered_now(s, r->id, error);
        return;
    }
    if (!may_ask(s, r))
        return;
    ask_wait *a = ask_new(s, r);
    if (!a || presence_send(w->pres, from, r->to, r->data, direct_answered, a) < 0) {
        ask_free(a);
        session_reply_err(s, r->id, "unavailable", "the Redis bus is down; try again");
    }
}
