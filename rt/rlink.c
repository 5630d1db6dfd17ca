#include "rlink.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "cluster.h"
#include "log.h"
#include "rnd.h"
#include "ws_list.h"

#define BACKOFF_MIN 0.1 /* seconds before the first retry; doubled up to BACKOFF_MAX */
#define BACKOFF_MAX 5.0
#define KEYS_MAX 4 /* keys rlink_eval takes */
#define ARGS_MAX 8 /* arguments rlink_eval takes */
/* A subscriber link can die without a word (a middlebox dropped the connection, a host went
 * away): it is probed after PROBE_IDLE seconds without traffic, by a PUBLISH on the command
 * link to a channel only it subscribes, and dropped as if cut when PROBE_BOUND more seconds
 * bring nothing. A busy link is never probed: its traffic shows it alive. */
#define PROBE_IDLE 1.0
#define PROBE_BOUND 2.0
#define PROBE_TICK 0.25

/* A name taken with rlink_listen. */
typedef struct listener {
    ws_list link; /* rlink.listeners */
    rlink *l;
    rlink_raw_fn fn;
    void *ctx;
    char name[];
} listener;

struct rlink {
    struct ev_loop *loop;
    char host[256];
    int port; /* 0: unix socket at host */
    char *user, *password, *prefix; /* NULL if not given (prefix: never) */
    char *scripts[RLINK_SCRIPTS_MAX];
    char sha[RLINK_SCRIPTS_MAX][2 * SHA_DIGEST_LENGTH + 1];
    int nscripts, loaded; /* scripts given; of them, loaded on this command connection */
    redisAsyncContext *sub, *cmd;
    bool sub_up, cmd_up, loading;
    size_t unanswered; /* rlink_subscribe calls not yet answered (hooks.subscribed) */
    ev_timer retry;
    double backoff;
    ev_timer probe;
    double sub_seen;   /* when the subscriber link last brought anything */
    double probe_sent; /* when the last probe went out (0: none pending) */
    char probe_name[32];
    rlink_hooks hooks;
    void *ctx;
    ws_list listeners;
    rlink_stats st;
};

static void connect_links(rlink *l);
static void on_probe(void *ctx, const uint8_t *p, size_t n);
static void probe_tick(struct ev_loop *loop, ev_timer *t, int revents);

/* ---- hiredis on libev -----------------------------------------------------------------------
 * hiredis's own libev adapter reads 16 KiB per wakeup. A subscriber link carries every message
 * of every channel the process follows, and a worker that is busy fanning out wakes up rarely:
 * Redis would buffer the rest and cut the link at its pub/sub output-buffer limit, losing what
 * was in it. This adapter reads on until the socket is empty (up to LINK_READ_MAX a wakeup),
 * so the backlog lives in the process's own queues, whose limits it controls, and its watchers
 * run first in each loop iteration. */
#define LINK_READ_MAX (4 << 20)

typedef struct link_ev {
    redisAsyncContext *ac;
    struct ev_loop *loop;
    ev_io rev, wev;
    bool *alive; /* set while a read callback runs: cleared if hiredis frees us under it */
} link_ev;

static void link_read(struct ev_loop *loop, ev_io *w, int revents)
{
    link_ev *e = w->data;
    rlink *l = e->ac->data;
    if (l->sub == e->ac)
        l->sub_seen = ev_now(loop);
    bool alive = true;
    e->alive = &alive;
    for (size_t done = 0; done < LINK_READ_MAX; done += 16384) {
        int pending = 0;
        redisAsyncHandleRead(e->ac); /* one read of up to 16 KiB, then the callbacks */
        if (!alive || e->ac->c.fd < 0 || ioctl(e->ac->c.fd, FIONREAD, &pending) < 0 || pending <= 0)
            break;
    }
    if (alive)
        e->alive = NULL;
}

static void link_write(struct ev_loop *loop, ev_io *w, int revents)
{
    redisAsyncHandleWrite(((link_ev *)w->data)->ac);
}

static void link_add_read(void *p) { ev_io_start(((link_ev *)p)->loop, &((link_ev *)p)->rev); }
static void link_del_read(void *p) { ev_io_stop(((link_ev *)p)->loop, &((link_ev *)p)->rev); }
static void link_add_write(void *p) { ev_io_start(((link_ev *)p)->loop, &((link_ev *)p)->wev); }
static void link_del_write(void *p) { ev_io_stop(((link_ev *)p)->loop, &((link_ev *)p)->wev); }

static void link_cleanup(void *p)
{
    link_ev *e = p;
    link_del_read(e);
    link_del_write(e);
    if (e->alive)
        *e->alive = false;
    free(e);
}

static int link_attach(struct ev_loop *loop, redisAsyncContext *ac)
{
    link_ev *e = calloc(1, sizeof *e);
    if (!e || ac->ev.data)
        return free(e), -1;
    e->ac = ac;
    e->loop = loop;
    ev_io_init(&e->rev, link_read, ac->c.fd, EV_READ);
    ev_io_init(&e->wev, link_write, ac->c.fd, EV_WRITE);
    ev_set_priority(&e->rev, EV_MAXPRI);
    ev_set_priority(&e->wev, EV_MAXPRI);
    e->rev.data = e->wev.data = e;
    ac->ev.addRead = link_add_read;
    ac->ev.delRead = link_del_read;
    ac->ev.addWrite = link_add_write;
    ac->ev.delWrite = link_del_write;
    ac->ev.cleanup = link_cleanup;
    ac->ev.data = e;
    return 0;
}

/* ---- connecting ------------------------------------------------------------------------------ */

static void schedule_retry(rlink *l)
{
    if (ev_is_active(&l->retry))
        return;
    ev_timer_set(&l->retry, l->backoff * (0.5 + rnd_unit() / 2), 0);
    ev_timer_start(l->loop, &l->retry);
    l->backoff = l->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : l->backoff * 2;
}

static void on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    rlink *l = t->data;
    l->st.reconnects++;
    connect_links(l);
}

static void update_up(rlink *l)
{
    bool up = l->sub_up && l->cmd_up;
    if (up && !l->st.up) {
        log_info("redis %s:%d: connected", l->host, l->port);
        l->backoff = BACKOFF_MIN;
        l->st.up = true;
        if (l->hooks.up)
            l->hooks.up(l->ctx);
    }
    l->st.up = up;
}

/* Commands flow only once every script is cached in Redis: a NOSCRIPT retried with EVAL would
 * run after commands sent later, and one client's messages must keep the order it sent them. */
static void on_script_loaded(redisAsyncContext *ac, void *r, void *privdata)
{
    rlink *l = ac->data;
    redisReply *reply = r;
    int i = (int)(intptr_t)privdata;
    if (!l->loading)
        return; /* an answer from a load given up (the connection was lost meanwhile) */
    if (!reply || reply->type != REDIS_REPLY_STRING || strcmp(reply->str, l->sha[i]) != 0) {
        log_warn("redis %s:%d: SCRIPT LOAD failed: %s", l->host, l->port,
                 reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "no answer");
        l->loading = false;
        return; /* the link stays down; a reconnect tries again */
    }
    if (++l->loaded < l->nscripts)
        return;
    l->loading = false;
    l->cmd_up = true;
    update_up(l);
}

static void load_scripts(rlink *l)
{
    if (!l->nscripts) {
        l->cmd_up = true;
        update_up(l);
        return;
    }
    if (l->loading || !l->cmd)
        return;
    l->loading = true;
    l->loaded = 0;
    for (int i = 0; i < l->nscripts; i++)
        redisAsyncCommand(l->cmd, on_script_loaded, (void *)(intptr_t)i, "SCRIPT LOAD %s",
                          l->scripts[i]);
}

static void on_listen_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    listener *s = privdata;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        log_warn("redis %s:%d: SUBSCRIBE %s: %s", s->l->host, s->l->port, s->name, reply->str);
        return;
    }
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    redisReply *msg = reply->element[2];
    if (strcmp(kind, "subscribe") == 0)
        s->fn(s->ctx, NULL, 0);
    else if (strcmp(kind, "message") == 0 && msg->type == REDIS_REPLY_STRING)
        s->fn(s->ctx, (const uint8_t *)msg->str, msg->len);
}

static void listen_one(rlink *l, listener *s)
{
    redisAsyncCommand(l->sub, on_listen_reply, s, "SUBSCRIBE %s%s", l->prefix, s->name);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    rlink *l = ac->data;
    bool is_sub = ac == l->sub;
    if (status != REDIS_OK) {
        log_warn("redis %s:%d: %s link: %s", l->host, l->port, is_sub ? "subscribe" : "command",
                 ac->errstr);
        if (is_sub)
            l->sub = NULL;
        else
            l->cmd = NULL;
        schedule_retry(l); /* hiredis frees the context */
        return;
    }
    if (!is_sub) {
        load_scripts(l); /* the command link counts as up once the scripts are there */
        return;
    }
    l->sub_up = true;
    l->sub_seen = ev_now(l->loop);
    l->probe_sent = 0;
    ws_list_each(it, &l->listeners)
        listen_one(l, ws_container_of(it, listener, link));
    if (l->hooks.resubscribe)
        l->hooks.resubscribe(l->ctx);
    update_up(l);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    rlink *l = ac->data;
    bool is_sub = ac == l->sub;
    log_warn("redis %s:%d: %s link lost: %s; reconnecting", l->host, l->port,
             is_sub ? "subscribe" : "command", ac->errstr[0] ? ac->errstr : "closed");
    if (is_sub) {
        l->sub = NULL;
        l->sub_up = false;
        for (; l->unanswered; l->unanswered--) /* subscribed again on reconnect */
            if (l->hooks.subscribed)
                l->hooks.subscribed(l->ctx, false);
    } else {
        l->cmd = NULL;
        l->cmd_up = false;
        l->loading = false;
    }
    l->st.up = false;
    schedule_retry(l);
}

/* A refused AUTH (wrong password, unknown or disabled user) leaves a link that can do
 * nothing: it is closed (once the replies already on their way are in) and retried with
 * backoff like a lost one, so a login fixed on the Redis side is picked up. */
static void on_auth(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        rlink *l = ac->data;
        log_warn("redis %s:%d: AUTH refused: %s", l->host, l->port, reply->str);
        redisAsyncDisconnect(ac);
    }
}

static redisAsyncContext *open_link(rlink *l)
{
    redisAsyncContext *ac = l->port ? redisAsyncConnect(l->host, l->port) : redisAsyncConnectUnix(l->host);
    if (!ac)
        return NULL;
    if (ac->err) {
        log_warn("redis %s:%d: %s", l->host, l->port, ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = l;
    if (link_attach(l->loop, ac) < 0) {
        redisAsyncFree(ac);
        return NULL;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* Queued before anything else on the link, so every later command runs authenticated.
     * While AUTH is refused the link is never up. */
    if (l->user)
        redisAsyncCommand(ac, on_auth, NULL, "AUTH %s %s", l->user, l->password ? l->password : "");
    else if (l->password)
        redisAsyncCommand(ac, on_auth, NULL, "AUTH %s", l->password);
    return ac;
}

static void connect_links(rlink *l)
{
    if (!l->sub && !(l->sub = open_link(l)))
        schedule_retry(l);
    if (!l->cmd && !(l->cmd = open_link(l)))
        schedule_retry(l);
}

/* Splits addr into l->host and l->port; false (logged) if it is not an address. */
static bool parse_addr(rlink *l, const char *addr)
{
    if (addr[0] == '/') {
        snprintf(l->host, sizeof l->host, "%s", addr);
        return true;
    }
    const char *colon = strrchr(addr, ':');
    snprintf(l->host, sizeof l->host, "%.*s", colon ? (int)(colon - addr) : (int)strlen(addr), addr);
    l->port = colon ? atoi(colon + 1) : 6379;
    if (l->port <= 0 || l->port > 65535 || !l->host[0]) {
        log_error("bad --redis address '%s' (host:port or /path/to/socket)", addr);
        return false;
    }
    return true;
}

static void rlink_free(rlink *l)
{
    free(l->user);
    free(l->password);
    free(l->prefix);
    for (int i = 0; i < l->nscripts; i++)
        free(l->scripts[i]);
    free(l);
}

int rlink_opts_check(const rlink_opts *o, const char *prog)
{
    if (cluster_prefix_valid(o->prefix))
        return 0;
    fprintf(stderr, "%s: --redis-prefix must be at most %d bytes of printable ASCII without "
                    "spaces: it begins every Redis key and channel name, which must never be "
                    "cut short\n", prog, CLUSTER_PREFIX_MAX);
    return -1;
}

/* Copies the NULL-terminated scripts and their SHA1s into l; false out of memory or if
 * there are more than RLINK_SCRIPTS_MAX. */
static bool take_scripts(rlink *l, const char *const *scripts)
{
    for (; scripts && *scripts; scripts++) {
        if (l->nscripts == RLINK_SCRIPTS_MAX || !(l->scripts[l->nscripts] = strdup(*scripts)))
            return false;
        unsigned char md[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)*scripts, strlen(*scripts), md);
        for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
            snprintf(l->sha[l->nscripts] + 2 * i, 3, "%02x", md[i]);
        l->nscripts++;
    }
    return true;
}

rlink *rlink_new(struct ev_loop *loop, const rlink_opts *o, const char *const *scripts,
                 const rlink_hooks *hooks, void *ctx)
{
    const char *addr = o->addr, *user = o->user, *password = o->password, *prefix = o->prefix;
    rlink *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    if (!parse_addr(l, addr))
        return rlink_free(l), NULL;
    if (!cluster_prefix_valid(prefix)) { /* the configuration checks it; never build cut names */
        log_error("bad --redis-prefix (at most %d printable bytes, no space)", CLUSTER_PREFIX_MAX);
        return rlink_free(l), NULL;
    }
    l->loop = loop;
    l->user = user && user[0] ? strdup(user) : NULL;
    l->password = password ? strdup(password) : NULL;
    l->prefix = strdup(prefix);
    if (!l->prefix || (user && user[0] && !l->user) || (password && !l->password) ||
        !take_scripts(l, scripts))
        return rlink_free(l), NULL;
    if (l->user && !l->password)
        log_warn("--redis-user %s without --redis-password: sending an empty password", l->user);
    if (hooks)
        l->hooks = *hooks;
    l->ctx = ctx;
    l->backoff = BACKOFF_MIN;
    ws_list_init(&l->listeners);
    ev_init(&l->retry, on_retry);
    l->retry.data = l;
    snprintf(l->probe_name, sizeof l->probe_name, "probe:%016llx", (unsigned long long)rnd_u64());
    if (rlink_listen(l, l->probe_name, on_probe, l) < 0)
        return rlink_free(l), NULL;
    ev_timer_init(&l->probe, probe_tick, PROBE_TICK, PROBE_TICK);
    l->probe.data = l;
    ev_timer_start(loop, &l->probe);
    ev_unref(loop); /* the probe alone keeps no loop running */
    connect_links(l);
    return l;
}

bool rlink_up(const rlink *l) { return l->st.up; }

const rlink_stats *rlink_get_stats(const rlink *l) { return &l->st; }

const char *rlink_prefix(const rlink *l) { return l->prefix; }

int rlink_listen(rlink *l, const char *name, rlink_raw_fn fn, void *ctx)
{
    size_t n = strlen(name);
    listener *s = malloc(sizeof *s + n + 1);
    if (!s)
        return -1;
    memcpy(s->name, name, n + 1);
    s->l = l;
    s->fn = fn;
    s->ctx = ctx;
    s->link.next = NULL;
    ws_list_push(&l->listeners, &s->link);
    if (l->sub_up)
        listen_one(l, s);
    return 0;
}

/* ---- the silent link probe ------------------------------------------------------------------ */

static void on_probe(void *ctx, const uint8_t *p, size_t n) {} /* any traffic is proof of life */

static void probe_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    rlink *l = t->data;
    double now = ev_now(loop);
    if (!l->sub_up || !l->cmd_up) {
        l->probe_sent = 0;
        return;
    }
    if (l->probe_sent > l->sub_seen && now - l->probe_sent >= PROBE_BOUND) {
        log_warn("redis %s:%d: subscribe link silent for %.1f s and its probe unanswered; "
                 "dropping it", l->host, l->port, now - l->sub_seen);
        l->st.silent++;
        l->probe_sent = 0;
        shutdown(l->sub->c.fd, SHUT_RDWR);
        redisAsyncHandleRead(l->sub); /* reads the end: lost as if cut, and reconnected */
        return;
    }
    if (now - l->sub_seen >= PROBE_IDLE && l->probe_sent <= l->sub_seen &&
        redisAsyncCommand(l->cmd, NULL, NULL, "PUBLISH %s%s 1", l->prefix, l->probe_name) ==
            REDIS_OK)
        l->probe_sent = now;
}

/* ---- dynamic subscriptions ------------------------------------------------------------------- */

static void on_sub_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    rlink *l = ac->data;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR) { /* a refused SUBSCRIBE (NOAUTH, ...) */
        log_warn("redis %s:%d: %s", l->host, l->port, reply->str);
        if (l->unanswered) {
            l->unanswered--;
            if (l->hooks.subscribed)
                l->hooks.subscribed(l->ctx, false);
        }
        return;
    }
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
        return;
    redisReply *kind = reply->element[0], *ch = reply->element[1], *msg = reply->element[2];
    if (kind->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(kind->str, "subscribe") == 0) {
        if (l->unanswered) {
            l->unanswered--;
            if (l->hooks.subscribed)
                l->hooks.subscribed(l->ctx, true);
        }
    } else if (strcmp(kind->str, "message") == 0 && ch->type == REDIS_REPLY_STRING &&
               msg->type == REDIS_REPLY_STRING && l->hooks.message) {
        l->hooks.message(l->ctx, ch->str, ch->len, (const uint8_t *)msg->str, msg->len);
    }
}

int rlink_subscribe(rlink *l, const char *name, size_t len)
{
    if (!l->sub_up ||
        redisAsyncCommand(l->sub, on_sub_reply, NULL, "SUBSCRIBE %s%b", l->prefix, name, len) !=
            REDIS_OK)
        return -1;
    l->unanswered++;
    return 0;
}

void rlink_unsubscribe(rlink *l, const char *name, size_t len)
{
    if (l->sub_up)
        redisAsyncCommand(l->sub, on_sub_reply, NULL, "UNSUBSCRIBE %s%b", l->prefix, name, len);
}

/* ---- commands -------------------------------------------------------------------------------- */

/* A command's answer goes to one of two kinds of callback. */
typedef struct cmd_req {
    rlink_int_fn on_int;     /* an integer answer */
    rlink_reply_fn on_reply; /* any answer */
    void *arg;
} cmd_req;

static void on_answer(redisAsyncContext *ac, void *r, void *privdata)
{
    rlink *l = ac->data;
    cmd_req *q = privdata;
    redisReply *reply = r;
    const char *err = !reply ? "no answer" : reply->type == REDIS_REPLY_ERROR ? reply->str : NULL;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        if (strncmp(reply->str, "NOSCRIPT", 8) == 0 && l->nscripts) {
            /* Redis lost its script cache (SCRIPT FLUSH): this command fails out loud rather
             * than being retried out of order, and the link is down until the scripts are
             * back. */
            l->cmd_up = false;
            l->st.up = false;
            load_scripts(l);
        }
        log_warn("redis %s:%d: %s", l->host, l->port, reply->str);
    }
    if (q && q->on_reply)
        q->on_reply(q->arg, err ? NULL : reply, err);
    else if (q && !err && reply->type == REDIS_REPLY_INTEGER)
        q->on_int(q->arg, reply->integer, NULL);
    else if (q)
        q->on_int(q->arg, 0, err ? err : "unexpected answer");
    free(q);
}

/* Sends argv on the command connection; its answer goes to q's callback (q may be NULL: no
 * one waits). -1 if it cannot be sent (q is then freed and its callback never called). */
static int send_argv(rlink *l, int argc, const char **argv, const size_t *len, cmd_req *q)
{
    if (redisAsyncCommandArgv(l->cmd, on_answer, q, argc, argv, len) != REDIS_OK) {
        free(q); /* the link is going away */
        return -1;
    }
    return 0;
}

/* A request for done or reply (one of them NULL), or NULL (*ok false) out of memory. */
static cmd_req *req_new(rlink_int_fn done, rlink_reply_fn reply, void *arg, bool *ok)
{
    cmd_req *q = NULL;
    *ok = true;
    if ((done || reply) && !(q = malloc(sizeof *q)))
        *ok = false;
    else if (q)
        *q = (cmd_req){done, reply, arg};
    return q;
}

int rlink_send(rlink *l, const char *name, const void *p, size_t n, rlink_int_fn done, void *arg)
{
    char full[CLUSTER_NAME_MAX + 1];
    bool ok;
    if (!l->cmd_up || (size_t)snprintf(full, sizeof full, "%s%s", l->prefix, name) >= sizeof full)
        return -1;
    const char *argv[3] = {"PUBLISH", full, p};
    size_t len[3] = {7, strlen(full), n};
    cmd_req *q = req_new(done, NULL, arg, &ok);
    return ok ? send_argv(l, 3, argv, len, q) : -1;
}

/* EVALSHA of script `script` with the prefixed keys and the arguments, answered to q. */
static int eval(rlink *l, const rlink_eval_args *e, cmd_req *q)
{
    char full[KEYS_MAX][CLUSTER_NAME_MAX + 1], count[8];
    const char *argv[3 + KEYS_MAX + ARGS_MAX] = {"EVALSHA", NULL, count};
    size_t len[3 + KEYS_MAX + ARGS_MAX];
    int argc = 3;
    if (!l->st.up || e->script < 0 || e->script >= l->nscripts || e->nkeys < 0 ||
        e->nkeys > KEYS_MAX || e->nargs < 0 || e->nargs > ARGS_MAX)
        return free(q), -1;
    argv[1] = l->sha[e->script];
    snprintf(count, sizeof count, "%d", e->nkeys);
    for (int i = 0; i < 3; i++)
        len[i] = strlen(argv[i]);
    for (int i = 0; i < e->nkeys; i++, argc++) {
        int n = snprintf(full[i], sizeof full[i], "%s%s", l->prefix, e->keys[i]);
        if (n < 0 || (size_t)n >= sizeof full[i])
            return free(q), -1;
        argv[argc] = full[i];
        len[argc] = (size_t)n;
    }
    for (int i = 0; i < e->nargs; i++, argc++) {
        argv[argc] = e->args[i];
        len[argc] = e->lens ? e->lens[i] : strlen(e->args[i]);
    }
    return send_argv(l, argc, argv, len, q);
}

int rlink_eval(rlink *l, const rlink_eval_args *e, rlink_int_fn done, void *arg)
{
    bool ok;
    cmd_req *q = req_new(done, NULL, arg, &ok);
    return ok ? eval(l, e, q) : -1;
}

int rlink_eval_reply(rlink *l, const rlink_eval_args *e, rlink_reply_fn done, void *arg)
{
    bool ok;
    cmd_req *q = req_new(NULL, done, arg, &ok);
    return ok ? eval(l, e, q) : -1;
}
