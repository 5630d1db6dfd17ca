#include "rlink.h"
#include "rlink_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "log.h"
#include "rnd.h"

#define BACKOFF_MIN 0.1 /* seconds before the first retry; doubled up to BACKOFF_MAX */
#define BACKOFF_MAX 5.0
#define KEYS_MAX 4 /* keys rlink_eval takes */
#define ARGS_MAX 8 /* arguments rlink_eval takes */
#define REDIRECTS_MAX 5      /* MOVED and ASK one command follows */
#define TRYAGAIN_MAX 40      /* TRYAGAIN answers one command waits out (a slot mid-move) */
#define TRYAGAIN_DELAY 0.025 /* seconds between them */
#define PROBE_TICK 0.25

static void connect_shard(rshard *s);
static void on_again(struct ev_loop *loop, ev_timer *t, int revents);

/* ---- hiredis async on libev ---------------------------------------------------------------
 * hiredis's own libev adapter reads 16 KiB per wakeup; this one reads on until the socket is
 * empty (up to LINK_READ_MAX), so a busy worker does not leave its answers in the kernel
 * (rconn.c says why at length), and its watchers run first in each loop iteration. */
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

/* ---- a server's command connection --------------------------------------------------------- */

const char *rlink_where(const rshard *s)
{
    static char buf[300];
    snprintf(buf, sizeof buf, s->port ? "%s:%d" : "%s", s->host, s->port);
    return buf;
}

static void on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    rshard *s = t->data;
    s->l->st.reconnects++;
    connect_shard(s);
}

void rlink_shard_lost(rshard *s)
{
    if (ev_is_active(&s->retry))
        return;
    ev_timer_set(&s->retry, s->backoff * (0.5 + rnd_unit() / 2), 0);
    ev_timer_start(s->l->loop, &s->retry);
    s->backoff = s->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : s->backoff * 2;
}

static bool shard_up(const rshard *s) { return s->cmd_up && (!s->in_map || s->sub_up); }

void rlink_update_up(rlink *l, rshard *changed)
{
    uint32_t n = 0, up = 0;
    for (int i = 0; i < l->nshards; i++) {
        rshard *s = l->shards[i];
        n += s->in_map;
        up += s->in_map && shard_up(s);
    }
    l->st.servers = n;
    l->st.servers_up = up;
    if (changed && shard_up(changed) && !changed->was_up) {
        changed->was_up = true;
        changed->backoff = BACKOFF_MIN;
        log_info("redis %s: connected", rlink_where(changed));
    } else if (changed && !shard_up(changed)) {
        changed->was_up = false;
    }
    bool all = n > 0 && up == n && (!l->cluster || l->map_known);
    bool back = all && !l->st.up;
    l->st.up = all;
    if (back && l->hooks.up)
        l->hooks.up(l->ctx);
}

/* Commands flow only once every script is cached in Redis: a NOSCRIPT retried with EVAL would
 * run after commands sent later, and one client's messages must keep the order it sent them. */
static void on_script_loaded(redisAsyncContext *ac, void *r, void *privdata)
{
    rshard *s = ac->data;
    redisReply *reply = r;
    int i = (int)(intptr_t)privdata;
    if (!s->loading)
        return; /* an answer from a load given up (the connection was lost meanwhile) */
    if (!reply || reply->type != REDIS_REPLY_STRING || strcmp(reply->str, s->l->sha[i]) != 0) {
        log_warn("redis %s: SCRIPT LOAD failed: %s", rlink_where(s),
                 reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "no answer");
        s->loading = false;
        return; /* the connection stays down; a reconnect tries again */
    }
    if (++s->loaded < s->l->nscripts)
        return;
    s->loading = false;
    s->cmd_up = true;
    rlink_update_up(s->l, s);
    if (s->l->stale)
        rlink_map_stale(s->l); /* the first map waited for a server to be up */
}

static void load_scripts(rshard *s)
{
    rlink *l = s->l;
    if (!l->nscripts) {
        s->cmd_up = true;
        rlink_update_up(l, s);
        return;
    }
    if (s->loading || !s->cmd)
        return;
    s->loading = true;
    s->loaded = 0;
    for (int i = 0; i < l->nscripts; i++)
        redisAsyncCommand(s->cmd, on_script_loaded, (void *)(intptr_t)i, "SCRIPT LOAD %s",
                          l->scripts[i]);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    rshard *s = ac->data;
    if (status != REDIS_OK) {
        if (s->l->cluster && !s->l->map_known)
            log_error("redis cluster: seed %s: %s; no seed answers yet, so no channel is served",
                      rlink_where(s), ac->errstr);
        else if (s->in_map)
            log_warn("redis %s: command link: %s", rlink_where(s), ac->errstr);
        else /* a seed or a failed master the map no longer names: tried on, quietly */
            log_debug("redis %s: command link: %s", rlink_where(s), ac->errstr);
        s->cmd = NULL;
        rlink_shard_lost(s); /* hiredis frees the context */
        return;
    }
    load_scripts(s); /* the command link counts as up once the scripts are there */
    if (s->l->cluster)
        rlink_map_stale(s->l); /* a new server: the first map, or news since */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    rshard *s = ac->data;
    log_warn("redis %s: command link lost: %s; reconnecting", rlink_where(s),
             ac->errstr[0] ? ac->errstr : "closed");
    s->cmd = NULL;
    s->cmd_up = false;
    s->loading = false;
    rlink_update_up(s->l, s);
    rlink_shard_lost(s);
    if (s->l->cluster && s->in_map)
        rlink_map_stale(s->l); /* a failover may have moved its slots */
}

/* A refused AUTH (wrong password, unknown or disabled user) leaves a connection that can do
 * nothing: it is closed (once the replies already on their way are in) and retried with
 * backoff like a lost one, so a login fixed on the Redis side is picked up. */
static void on_auth(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        log_warn("redis %s: AUTH refused: %s", rlink_where(ac->data), reply->str);
        redisAsyncDisconnect(ac);
    }
}

static redisAsyncContext *open_cmd(rshard *s)
{
    rlink *l = s->l;
    redisAsyncContext *ac = s->port ? redisAsyncConnect(s->host, s->port) : redisAsyncConnectUnix(s->host);
    if (!ac)
        return NULL;
    if (ac->err) {
        log_warn("redis %s: %s", rlink_where(s), ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = s;
    if (link_attach(l->loop, ac) < 0) {
        redisAsyncFree(ac);
        return NULL;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* Queued before anything else, so every later command runs authenticated. */
    if (l->user)
        redisAsyncCommand(ac, on_auth, NULL, "AUTH %s %s", l->user, l->password ? l->password : "");
    else if (l->password)
        redisAsyncCommand(ac, on_auth, NULL, "AUTH %s", l->password);
    return ac;
}

static void connect_shard(rshard *s)
{
    if (!s->cmd && !(s->cmd = open_cmd(s)))
        rlink_shard_lost(s);
    rsub_connect(s);
}

/* The server at host:port, added (and connecting) if new; NULL when there are too many. */
static rshard *shard_get(rlink *l, const char *host, int port)
{
    for (int i = 0; i < l->nshards; i++)
        if (l->shards[i]->port == port && strcmp(l->shards[i]->host, host) == 0)
            return l->shards[i];
    rshard *s = l->nshards < RLINK_SHARDS_MAX ? calloc(1, sizeof *s) : NULL;
    if (!s)
        return NULL;
    s->l = l;
    snprintf(s->host, sizeof s->host, "%s", host);
    s->port = port;
    s->in_map = !l->cluster;
    s->backoff = BACKOFF_MIN;
    ws_list_init(&s->sent);
    ev_init(&s->retry, on_retry);
    s->retry.data = s;
    l->shards[l->nshards++] = s;
    connect_shard(s);
    return s;
}

/* ---- the slot map ---------------------------------------------------------------------------- */

rshard *rlink_shard_of(rlink *l, uint16_t slot)
{
    if (!l->cluster)
        return l->shards[0];
    uint16_t i = l->route[slot];
    return i == RLINK_NOWHERE ? NULL : l->shards[i];
}

static uint16_t name_slot(const rlink *l, const char *full, size_t n)
{
    return l->cluster ? cluster_slot(full, n) : 0;
}

/* Routes every slot to the server the new map names, connects new ones, and moves the
 * subscriptions whose slot changed hands. */
static void apply_map(rlink *l)
{
    bool used[RLINK_SHARDS_MAX] = {false};
    uint16_t idx[RCLUSTER_MASTERS_MAX];
    for (uint32_t m = 0; m < l->map->nmasters; m++) {
        rshard *s = shard_get(l, l->map->masters[m].host, l->map->masters[m].port);
        idx[m] = RLINK_NOWHERE;
        for (int i = 0; s && i < l->nshards; i++)
            if (l->shards[i] == s)
                idx[m] = (uint16_t)i, used[i] = true;
    }
    for (int i = 0; i < CLUSTER_SLOTS; i++)
        l->route[i] = l->map->slot[i] == RCLUSTER_NONE ? RLINK_NOWHERE : idx[l->map->slot[i]];
    for (int i = 0; i < l->nshards; i++) {
        rshard *s = l->shards[i];
        bool was = s->in_map;
        s->in_map = used[i];
        if (was && !s->in_map)
            rsub_drop_shard(s); /* no slots left: its subscriptions go where theirs went */
        else if (!was && s->in_map)
            rsub_connect(s);
    }
    l->map_known = true;
    rsub_place_all(l);
    rlink_update_up(l, NULL);
}

static void on_map(redisAsyncContext *ac, void *r, void *privdata)
{
    rlink *l = ((rshard *)ac->data)->l;
    l->refreshing = false;
    int served = r ? rcluster_from_shards(l->map, r) : -1;
    const redisReply *reply = r;
    if (!r) {
        l->stale = true; /* the connection went: ask another one at the next tick */
    } else if (served < 0) {
        log_error("redis %s: no slot map (%s): not a Redis Cluster node? (--redis is for a "
                  "single Redis)", rlink_where(ac->data),
                  reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "not a CLUSTER SHARDS answer");
    } else {
        if (served < CLUSTER_SLOTS)
            log_warn("redis cluster: %d of %d slots have no master online: their channels are "
                     "unavailable", CLUSTER_SLOTS - served, CLUSTER_SLOTS);
        apply_map(l);
    }
    if (l->stale)
        rlink_map_stale(l);
}

static void send_refresh(rlink *l)
{
    for (int k = 0; k < l->nshards; k++) {
        rshard *s = l->shards[(k + (int)(rnd_u64() % (uint64_t)l->nshards)) % l->nshards];
        if (s->cmd && s->cmd_up &&
            redisAsyncCommand(s->cmd, on_map, NULL, "CLUSTER SHARDS") == REDIS_OK) {
            l->refreshing = true;
            l->stale = false;
            l->refreshed = ev_now(l->loop);
            l->st.refreshes++;
            return;
        }
    }
    /* No server answers: the next connection that comes up asks (on_connect). */
}

void rlink_map_stale(rlink *l)
{
    if (!l->cluster)
        return;
    l->stale = true; /* sent now if the rate allows, else by the tick */
    if (!l->refreshing && ev_now(l->loop) - l->refreshed >= RLINK_REFRESH_MIN)
        send_refresh(l);
}

/* Every PROBE_TICK: the subscriber connections' probes, and the map read when it is due. */
static void tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    rlink *l = t->data;
    double now = ev_now(loop), since = now - l->refreshed;
    rsub_probe(l, now);
    if (l->cluster && !l->refreshing &&
        ((l->stale && since >= RLINK_REFRESH_MIN) || since >= RLINK_REFRESH_EVERY))
        send_refresh(l);
}

/* ---- options and life ------------------------------------------------------------------------ */

/* Splits addr ("host:port", default port 6379, or a unix socket path) into host and port;
 * false if it is not one. */
static bool parse_addr(const char *addr, size_t n, char host[256], int *port)
{
    if (n && addr[0] == '/') {
        snprintf(host, 256, "%.*s", (int)n, addr);
        *port = 0;
        return n < 256;
    }
    const char *colon = memrchr(addr, ':', n);
    size_t hl = colon ? (size_t)(colon - addr) : n;
    snprintf(host, 256, "%.*s", (int)hl, addr);
    *port = colon ? atoi(colon + 1) : 6379;
    return hl > 0 && hl < 256 && *port > 0 && *port <= 65535;
}

bool rlink_opts_enabled(const rlink_opts *o) { return (o->cluster && o->cluster[0]) || o->addr; }

int rlink_opts_check(const rlink_opts *o, const char *prog)
{
    if (!cluster_prefix_valid(o->prefix)) {
        fprintf(stderr, "%s: --redis-prefix must be at most %d bytes of printable ASCII without "
                        "spaces: it begins every Redis key and channel name, which must never "
                        "be cut short\n", prog, CLUSTER_PREFIX_MAX);
        return -1;
    }
    if (!o->cluster)
        return 0;
    if (strpbrk(o->prefix, "{}")) {
        fprintf(stderr, "%s: with --redis-cluster, --redis-prefix may not contain '{' or '}': "
                        "it would be every name's hash tag and put all channels on one slot\n", prog);
        return -1;
    }
    char host[256];
    int port;
    for (const char *p = o->cluster, *end; *p; p = *end ? end + 1 : end) {
        end = p + strcspn(p, ",");
        if (!parse_addr(p, (size_t)(end - p), host, &port) || !port) {
            fprintf(stderr, "%s: bad --redis-cluster seed '%.*s' (host:port[,host:port...])\n",
                    prog, (int)(end - p), p);
            return -1;
        }
    }
    return 0;
}

static void rlink_free(rlink *l)
{
    free(l->user);
    free(l->password);
    free(l->prefix);
    free(l->map);
    for (int i = 0; i < l->nscripts; i++)
        free(l->scripts[i]);
    free(l);
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

/* The servers to start from: the one of --redis, or the seeds of --redis-cluster. */
static bool add_servers(rlink *l, const rlink_opts *o)
{
    const char *list = l->cluster ? o->cluster : o->addr;
    char host[256];
    int port;
    for (const char *p = list, *end; *p; p = *end ? end + 1 : end) {
        end = l->cluster ? p + strcspn(p, ",") : p + strlen(p);
        if (!parse_addr(p, (size_t)(end - p), host, &port)) {
            log_error("bad --redis%s address '%.*s' (host:port%s)", l->cluster ? "-cluster" : "",
                      (int)(end - p), p, l->cluster ? "" : " or /path/to/socket");
            return false;
        }
        if (!shard_get(l, host, port))
            return false;
    }
    return l->nshards > 0;
}

rlink *rlink_new(struct ev_loop *loop, const rlink_opts *o, const char *const *scripts,
                 const rlink_hooks *hooks, void *ctx)
{
    rlink *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->cluster = o->cluster && o->cluster[0];
    if (!cluster_prefix_valid(o->prefix) || (l->cluster && strpbrk(o->prefix, "{}"))) {
        log_error("bad --redis-prefix (the configuration checks it)");
        return rlink_free(l), NULL;
    }
    l->loop = loop;
    l->user = o->user && o->user[0] ? strdup(o->user) : NULL;
    l->password = o->password ? strdup(o->password) : NULL;
    l->prefix = strdup(o->prefix);
    if (!l->prefix || (o->user && o->user[0] && !l->user) || (o->password && !l->password) ||
        !take_scripts(l, scripts) || (l->cluster && !(l->map = calloc(1, sizeof *l->map))))
        return rlink_free(l), NULL;
    if (l->user && !l->password)
        log_warn("--redis-user %s without --redis-password: sending an empty password", l->user);
    if (hooks)
        l->hooks = *hooks;
    l->ctx = ctx;
    for (int i = 0; i < CLUSTER_SLOTS; i++)
        l->route[i] = RLINK_NOWHERE;
    uint64_t k[2] = {rnd_u64(), rnd_u64()};
    tab_init(&l->subs, k);
    ws_list_init(&l->again);
    ev_timer_init(&l->again_timer, on_again, TRYAGAIN_DELAY, 0);
    l->again_timer.data = l;
    ev_timer_init(&l->tick, tick, PROBE_TICK, PROBE_TICK);
    l->tick.data = l;
    ev_timer_start(loop, &l->tick);
    ev_unref(loop); /* the tick alone keeps no loop running */
    if (!add_servers(l, o))
        return NULL; /* logged; a process that cannot start exits, so nothing is freed */
    return l;
}

bool rlink_up(const rlink *l) { return l->st.up; }

bool rlink_is_cluster(const rlink *l) { return l->cluster; }

const rlink_stats *rlink_get_stats(const rlink *l) { return &l->st; }

const char *rlink_prefix(const rlink *l) { return l->prefix; }

bool rlink_reaches(const rlink *l, const char *name)
{
    char full[CLUSTER_NAME_MAX + 1];
    int n = snprintf(full, sizeof full, "%s%s", l->prefix, name);
    if (n < 0 || (size_t)n >= sizeof full)
        return false;
    rshard *s = rlink_shard_of((rlink *)l, name_slot(l, full, (size_t)n));
    return s && shard_up(s);
}

/* ---- commands -------------------------------------------------------------------------------- */

/* A command under way: its text, kept for as long as a redirect may send it again. */
typedef struct cmd_req {
    ws_list link; /* rlink.again while it waits out a TRYAGAIN */
    rlink *l;
    rlink_int_fn on_int;     /* an integer answer */
    rlink_reply_fn on_reply; /* any answer */
    void *arg;
    uint16_t slot;
    uint8_t redirects, tries;
    char *cmd;
    size_t len;
} cmd_req;

static void on_answer(redisAsyncContext *ac, void *r, void *privdata);

static void answer(cmd_req *q, const redisReply *reply, const char *err)
{
    if (q->on_reply)
        q->on_reply(q->arg, err ? NULL : reply, err);
    else if (q->on_int && !err && reply->type == REDIS_REPLY_INTEGER)
        q->on_int(q->arg, reply->integer, NULL);
    else if (q->on_int)
        q->on_int(q->arg, 0, err ? err : "unexpected answer");
    free(q->cmd);
    free(q);
}

/* Sends q on s (after ASKING when asking); false if s cannot take it now. */
static bool send_on(rshard *s, cmd_req *q, bool asking)
{
    if (!s || !s->cmd || !s->cmd_up)
        return false;
    if (asking && redisAsyncCommand(s->cmd, NULL, NULL, "ASKING") != REDIS_OK)
        return false;
    return redisAsyncFormattedCommand(s->cmd, on_answer, q, q->cmd, q->len) == REDIS_OK;
}

static void on_again(struct ev_loop *loop, ev_timer *t, int revents)
{
    rlink *l = t->data;
    while (!ws_list_empty(&l->again)) { /* what is sent now is answered later, not here */
        cmd_req *q = ws_container_of(ws_list_first(&l->again), cmd_req, link);
        ws_list_remove(&q->link);
        if (!send_on(rlink_shard_of(l, q->slot), q, false))
            answer(q, NULL, "unavailable");
    }
}

/* A cluster's redirection (MOVED, ASK, TRYAGAIN): true if q was sent again or waits to be. */
static bool redirect(rlink *l, cmd_req *q, const char *err)
{
    bool moved = strncmp(err, "MOVED ", 6) == 0, ask = strncmp(err, "ASK ", 4) == 0;
    if (strncmp(err, "TRYAGAIN", 8) == 0 && q->tries++ < TRYAGAIN_MAX) {
        ws_list_push(&l->again, &q->link);
        if (!ev_is_active(&l->again_timer))
            ev_timer_start(l->loop, &l->again_timer);
        l->st.redirects++;
        return true;
    }
    if ((!moved && !ask) || q->redirects++ >= REDIRECTS_MAX)
        return false;
    const char *addr = strchr(err + (moved ? 6 : 4), ' ');
    char host[256];
    int port;
    if (moved)
        rlink_map_stale(l); /* ASK is for one command; MOVED says the map is old */
    if (!addr || !parse_addr(addr + 1, strlen(addr + 1), host, &port))
        return false;
    rshard *s = shard_get(l, host, port);
    l->st.redirects++;
    return send_on(s, q, ask);
}

static void on_answer(redisAsyncContext *ac, void *r, void *privdata)
{
    rshard *s = ac->data;
    rlink *l = s->l;
    cmd_req *q = privdata;
    redisReply *reply = r;
    const char *err = !reply ? "no answer" : reply->type == REDIS_REPLY_ERROR ? reply->str : NULL;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        if (l->cluster && q && redirect(l, q, reply->str))
            return;
        if (strncmp(reply->str, "NOSCRIPT", 8) == 0 && l->nscripts) {
            /* Redis lost its script cache (SCRIPT FLUSH, a failover to a replica that never
             * loaded them): this command fails out loud rather than being retried out of
             * order, and the connection is down until the scripts are back. */
            s->cmd_up = false;
            rlink_update_up(l, s);
            load_scripts(s);
        } else if (strncmp(reply->str, "CLUSTERDOWN", 11) == 0) {
            rlink_map_stale(l);
        }
        log_warn("redis %s: %s", rlink_where(s), reply->str);
    }
    if (q)
        answer(q, reply, err);
}

/* Formats argv (argv[key] the name that chooses the server, -1: none) and sends it; its
 * answer goes to done or reply (both NULL: no one waits). -1 if it cannot be sent now (no
 * callback is then called). */
static int command(rlink *l, int argc, const char **argv, const size_t *lens, int key,
                   rlink_int_fn done, rlink_reply_fn reply, void *arg)
{
    uint16_t slot = key < 0 ? 0 : name_slot(l, argv[key], lens[key]);
    rshard *s = rlink_shard_of(l, slot);
    cmd_req *q = s && s->cmd_up ? calloc(1, sizeof *q) : NULL;
    if (!q)
        return -1;
    *q = (cmd_req){.l = l, .on_int = done, .on_reply = reply, .arg = arg, .slot = slot};
    int n = redisFormatCommandArgv(&q->cmd, argc, argv, lens);
    q->len = n < 0 ? 0 : (size_t)n;
    if (n < 0 || !send_on(s, q, false)) {
        free(q->cmd);
        free(q);
        return -1;
    }
    return 0;
}

int rlink_send(rlink *l, const char *name, const void *p, size_t n, rlink_int_fn done, void *arg)
{
    char full[CLUSTER_NAME_MAX + 1];
    int len = snprintf(full, sizeof full, "%s%s", l->prefix, name);
    if (len < 0 || (size_t)len >= sizeof full)
        return -1;
    const char *argv[3] = {l->cluster ? "SPUBLISH" : "PUBLISH", full, p};
    size_t lens[3] = {strlen(argv[0]), (size_t)len, n};
    return command(l, 3, argv, lens, 1, done, NULL, arg);
}

/* EVALSHA of script `script` with the prefixed keys and the arguments. */
static int eval(rlink *l, const rlink_eval_args *e, rlink_int_fn done, rlink_reply_fn reply,
                void *arg)
{
    char full[KEYS_MAX][CLUSTER_NAME_MAX + 1], count[8];
    const char *argv[3 + KEYS_MAX + ARGS_MAX] = {"EVALSHA", NULL, count};
    size_t len[3 + KEYS_MAX + ARGS_MAX];
    int argc = 3;
    if (e->script < 0 || e->script >= l->nscripts || e->nkeys < 1 || e->nkeys > KEYS_MAX ||
        e->nargs < 0 || e->nargs > ARGS_MAX)
        return -1;
    argv[1] = l->sha[e->script];
    snprintf(count, sizeof count, "%d", e->nkeys);
    for (int i = 0; i < 3; i++)
        len[i] = strlen(argv[i]);
    for (int i = 0; i < e->nkeys; i++, argc++) {
        int n = snprintf(full[i], sizeof full[i], "%s%s", l->prefix, e->keys[i]);
        if (n < 0 || (size_t)n >= sizeof full[i])
            return -1;
        argv[argc] = full[i];
        len[argc] = (size_t)n;
    }
    for (int i = 0; i < e->nargs; i++, argc++) {
        argv[argc] = e->args[i];
        len[argc] = e->lens ? e->lens[i] : strlen(e->args[i]);
    }
    return command(l, argc, argv, len, 3, done, reply, arg);
}

int rlink_eval(rlink *l, const rlink_eval_args *e, rlink_int_fn done, void *arg)
{
    return eval(l, e, done, NULL, arg);
}

int rlink_eval_reply(rlink *l, const rlink_eval_args *e, rlink_reply_fn done, void *arg)
{
    return eval(l, e, NULL, done, arg);
}
