/* routerbench: what one wsrouter shard sustains, fed the way wsnode feeds it: packed Envelopes
 * PUBLISHed on <prefix>router:0 (JOIN/LEAVE batches of B members from fake nodes), presence
 * questions answered on <prefix>node:<asker>. Every phase ends with a count-only
 * PRESENCE_QUERY sent after the last envelope on the same Redis channel: the router handles its
 * channel in order, so the answer means everything before it was applied (then /metrics is
 * checked to agree). CPU of the router, of redis-server (its pid from INFO) and of this
 * program is read from /proc before and after every phase.
 *
 *   routerbench [options] rate     joins then leaves of --members, once per batch size
 *   routerbench [options] query    round trips at --members in one channel, and at --small
 *   routerbench [options] memory   router RSS before and at each --checkpoints of a fill
 *
 * The router needs --node-timeout long enough for the run (the fake nodes do not heartbeat),
 * --node-rate above what the fake nodes send, and for full 100k-member answers
 * --presence-max-members above that. bench/routerbench.sh starts Redis and wsrouter so. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "cluster.pb-c.h"

/* Client id, user id and channel of one member, a NUL after each. */
#define STR_SLOT (CLUSTER_CLIENT_ID_MAX + 1 + CLUSTER_USER_MAX + 1 + 64)
#define FLUSH_BYTES (256 << 10) /* a pipeline step: this many bytes of PUBLISH, or */
#define FLUSH_CMDS 4096         /* this many commands */
#define ASKER "routerbench"     /* origin of the questions: answers come on node:routerbench */

/* ---- options ---------------------------------------------------------------------------- */

typedef struct opts {
    char host[128];
    int port;
    const char *prefix, *tag;
    int admin;
    long router_pid;
    uint64_t members, clients, per_client, channels, nodes, small;
    uint64_t batches[16];
    size_t nbatches;
    uint64_t batch; /* query and memory fills */
    uint64_t checkpoints[16];
    size_t ncheckpoints;
    uint64_t queries, full_queries, rounds;
    bool drain;
} opts;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "routerbench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the process side: /proc and /metrics ------------------------------------------------- */

/* CPU seconds (user + system) of pid so far, from /proc/<pid>/stat, in clock ticks (10 ms);
 * -1 if unreadable. */
static double proc_cpu_ticks(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return -1;
    unsigned long long ut, st;
    /* after ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds of pid so far: the sum over its threads of /proc/<pid>/task/<tid>/schedstat's
 * first field (time on a CPU, in ns), which a short phase needs; /proc/<pid>/stat's ticks if
 * the kernel has no schedstat. -1 if pid is gone. */
static double proc_cpu(long pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/task", pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    unsigned long long sum = 0;
    bool any = false;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char sp[320];
        snprintf(sp, sizeof sp, "/proc/%ld/task/%s/schedstat", pid, de->d_name);
        FILE *f = fopen(sp, "r");
        unsigned long long ns;
        if (f && fscanf(f, "%llu", &ns) == 1) {
            sum += ns;
            any = true;
        }
        if (f)
            fclose(f);
    }
    closedir(d);
    return any ? (double)sum / 1e9 : proc_cpu_ticks(pid);
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* VmRSS of pid in KiB, from /proc/<pid>/status; 0 if unreadable. */
static uint64_t proc_rss_kib(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    uint64_t kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %" SCNu64, &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* CPU seconds the whole machine (all cores) has spent so far, from /proc/stat: in processes
 * (user, nice, system), in interrupts (irq, softirq), and stolen by the hypervisor. */
typedef struct machine {
    double tasks, irq, steal;
} machine;

static machine machine_cpu(void)
{
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    machine m = {0};
    if (!f)
        return m;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 8)
        return m;
    double hz = (double)sysconf(_SC_CLK_TCK);
    m.tasks = (double)(v[0] + v[1] + v[2]) / hz;
    m.irq = (double)(v[5] + v[6]) / hz;
    m.steal = (double)v[7] / hz;
    return m;
}

typedef struct metrics {
    uint64_t members, clients, nodes, envelopes, events, malformed, misrouted, flood, queries;
    uint64_t resyncs, count_only;
} metrics;

/* GET /metrics from the router's admin port. */
static metrics get_metrics(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        die("cannot reach the router's /metrics on 127.0.0.1:%d: %s", port, strerror(errno));
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1))
        die("writing to /metrics: %s", strerror(errno));
    static char buf[1 << 17];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf - 1 && (r = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)r;
    close(fd);
    buf[n] = '\0';
    metrics m = {0};
    const struct {
        const char *name;
        uint64_t *v;
    } want[] = {
        {"wsfan_router_members ", &m.members},
        {"wsfan_router_clients ", &m.clients},
        {"wsfan_router_nodes ", &m.nodes},
        {"wsfan_router_envelopes_total ", &m.envelopes},
        {"wsfan_router_events_total ", &m.events},
        {"wsfan_router_malformed_total ", &m.malformed},
        {"wsfan_router_misrouted_total ", &m.misrouted},
        {"wsfan_router_flood_dropped_total ", &m.flood},
        {"wsfan_router_queries_total ", &m.queries},
        {"wsfan_router_resyncs_total ", &m.resyncs},
        {"wsfan_router_count_only_total ", &m.count_only},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *p = buf;
        size_t len = strlen(want[i].name);
        while ((p = strstr(p, want[i].name)) && p != buf && p[-1] != '\n')
            p += len;
        if (!p)
            die("/metrics has no %s", want[i].name);
        *want[i].v = strtoull(p + len, NULL, 10);
    }
    return m;
}

/* ---- Redis ------------------------------------------------------------------------------- */

typedef struct bench {
    const opts *o;
    redisContext *pub, *sub, *ctl; /* PUBLISH pipeline; SUBSCRIBEd to node:ASKER; CLIENT LIST */
    char router_ch[CLUSTER_NAME_MAX + 1]; /* <prefix>router:0 */
    char asker_ch[CLUSTER_NAME_MAX + 1];  /* <prefix>node:ASKER */
    long redis_pid;
    uint64_t qid;
    /* pipeline state */
    size_t cur_cmds, cur_bytes, prev_cmds, steps;
    uint64_t unrouted;
    uint64_t backlog_peak; /* the largest output buffer Redis held for the router's link */
    /* one envelope being built */
    Wsfan__Envelope__Member *m, **mp;
    char (*strs)[STR_SLOT];
    size_t n, cap;
    const char *node;
    char node_buf[CLUSTER_NODE_ID_MAX + 1];
    uint8_t *buf;
    size_t bufcap;
} bench;

static redisContext *connect_redis(const opts *o)
{
    redisContext *c = redisConnect(o->host, o->port);
    if (!c || c->err)
        die("redis %s:%d: %s", o->host, o->port, c ? c->errstr : "out of memory");
    return c;
}

static void flush_out(redisContext *c)
{
    int done = 0;
    do {
        if (redisBufferWrite(c, &done) != REDIS_OK)
            die("redis write: %s", c->errstr);
    } while (!done);
}

static void read_publish_replies(bench *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        redisReply *r;
        if (redisGetReply(b->pub, (void **)&r) != REDIS_OK)
            die("redis: %s", b->pub->errstr);
        if (r->type != REDIS_REPLY_INTEGER)
            die("PUBLISH answered %s", r->type == REDIS_REPLY_ERROR ? r->str : "not an integer");
        if (r->integer < 1)
            b->unrouted++;
        freeReplyObject(r);
    }
}

/* The largest output buffer Redis holds for a pub/sub client other than ours: the router's
 * subscription, i.e. what Redis has queued and the router not yet read. */
static uint64_t router_backlog(bench *b)
{
    redisReply *r = redisCommand(b->ctl, "CLIENT LIST TYPE pubsub");
    if (!r || r->type != REDIS_REPLY_STRING)
        die("CLIENT LIST failed");
    uint64_t most = 0;
    for (char *line = r->str, *end; line && *line; line = end ? end + 1 : NULL) {
        end = strchr(line, '\n');
        if (end)
            *end = '\0';
        if (strstr(line, " name=" ASKER " "))
            continue;
        const char *om = strstr(line, " omem=");
        uint64_t v = om ? strtoull(om + 6, NULL, 10) : 0;
        if (v > most)
            most = v;
    }
    freeReplyObject(r);
    if (most > b->backlog_peak)
        b->backlog_peak = most;
    return most;
}

/* One pipeline step is complete: push it out, then take the answers of the step before (so
 * Redis works on this step while we build the next). */
static void step(bench *b)
{
    flush_out(b->pub);
    read_publish_replies(b, b->prev_cmds);
    b->prev_cmds = b->cur_cmds;
    b->cur_cmds = b->cur_bytes = 0;
    if (++b->steps % 8 == 0)
        router_backlog(b);
}

static void publish(bench *b, const uint8_t *p, size_t n)
{
    const char *argv[3] = {"PUBLISH", b->router_ch, (const char *)p};
    size_t len[3] = {7, strlen(b->router_ch), n};
    if (redisAppendCommandArgv(b->pub, 3, argv, len) != REDIS_OK)
        die("redis: %s", b->pub->errstr);
    b->cur_cmds++;
    b->cur_bytes += n;
    if (b->cur_bytes >= FLUSH_BYTES || b->cur_cmds >= FLUSH_CMDS)
        step(b);
}

/* Everything appended is sent and answered. */
static void drain(bench *b)
{
    flush_out(b->pub);
    read_publish_replies(b, b->prev_cmds + b->cur_cmds);
    b->prev_cmds = b->cur_cmds = b->cur_bytes = 0;
}

static void publish_env(bench *b, Wsfan__Envelope *e)
{
    size_t n = wsfan__envelope__get_packed_size(e);
    if (n > b->bufcap) {
        b->bufcap = n * 2;
        if (!(b->buf = realloc(b->buf, b->bufcap)))
            die("out of memory");
    }
    wsfan__envelope__pack(e, b->buf);
    publish(b, b->buf, n);
}

/* ---- members of a fake cluster ------------------------------------------------------------ */

/* clients spread in contiguous blocks over nodes "<tag>-n<i>", each on per_client channels
 * "<tag>-c<j>". Member g is pass k = g / clients of client c = g % clients, so the first
 * `clients` members are every client on its first channel. */
typedef struct shape {
    const char *tag;
    uint64_t clients, per_client, channels, nodes;
} shape;

static uint64_t shape_members(const shape *s) { return s->clients * s->per_client; }

static void member_of(const shape *s, uint64_t g, char *node, size_t ncap, char *slot)
{
    uint64_t c = g % s->clients, k = g / s->clients;
    uint64_t per_node = (s->clients + s->nodes - 1) / s->nodes;
    snprintf(node, ncap, "%s-n%" PRIu64, s->tag, c / per_node);
    int a = (int)cluster_client_id(slot, STR_SLOT, node, c) + 1;
    int u = snprintf(slot + a, STR_SLOT - (size_t)a, "u-%s-%" PRIx64, s->tag, c) + 1;
    snprintf(slot + a + u, STR_SLOT - (size_t)(a + u), "%s-c%" PRIu64, s->tag,
             (c * s->per_client + k) % s->channels);
}

static void env_flush(bench *b, Wsfan__Envelope__Kind kind, uint64_t *envelopes)
{
    if (!b->n)
        return;
    Wsfan__Envelope e = WSFAN__ENVELOPE__INIT;
    e.kind = kind;
    e.origin = b->node_buf;
    e.members = b->mp;
    e.n_members = b->n;
    publish_env(b, &e);
    b->n = 0;
    (*envelopes)++;
}

/* Sends members [from, to) of s as JOIN or LEAVE envelopes of up to batch members (one node
 * per envelope, as a node sends its own). Returns how many envelopes. */
static uint64_t send_members(bench *b, const shape *s, uint64_t from, uint64_t to, bool join,
                             uint64_t batch)
{
    Wsfan__Envelope__Kind kind = join ? WSFAN__ENVELOPE__KIND__JOIN : WSFAN__ENVELOPE__KIND__LEAVE;
    if (batch > b->cap) {
        b->cap = batch;
        b->m = realloc(b->m, batch * sizeof *b->m);
        b->mp = realloc(b->mp, batch * sizeof *b->mp);
        b->strs = realloc(b->strs, batch * sizeof *b->strs);
        if (!b->m || !b->mp || !b->strs)
            die("out of memory");
    }
    uint64_t envelopes = 0;
    char node[CLUSTER_NODE_ID_MAX + 1];
    b->n = 0;
    char tmp[STR_SLOT];
    for (uint64_t g = from; g < to; g++) {
        member_of(s, g, node, sizeof node, tmp);
        if (b->n && (b->n == batch || strcmp(node, b->node_buf) != 0))
            env_flush(b, kind, &envelopes);
        if (!b->n)
            snprintf(b->node_buf, sizeof b->node_buf, "%s", node);
        char *slot = memcpy(b->strs[b->n], tmp, sizeof tmp);
        Wsfan__Envelope__Member *m = &b->m[b->n];
        wsfan__envelope__member__init(m);
        m->client_id = slot;
        m->user_id = slot + strlen(slot) + 1;
        m->channel = m->user_id + strlen(m->user_id) + 1;
        b->mp[b->n] = m;
        b->n++;
    }
    env_flush(b, kind, &envelopes);
    return envelopes;
}

/* ---- questions -------------------------------------------------------------------------- */

typedef struct answer {
    uint64_t rtt_ns;    /* publish of the question to the whole answer read */
    uint64_t unpack_ns; /* then unpacking it here */
    uint64_t count, listed, bytes;
} answer;

/* Waits for the PRESENCE_REPLY to request id on the subscription; returns it unpacked. */
static Wsfan__Envelope *wait_answer(bench *b, uint64_t id, answer *a, uint64_t t0)
{
    for (;;) {
        redisReply *r;
        if (redisGetReply(b->sub, (void **)&r) != REDIS_OK)
            die("redis: %s", b->sub->errstr);
        uint64_t t1 = now_ns();
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || strcmp(r->element[0]->str, "message")) {
            freeReplyObject(r);
            continue;
        }
        redisReply *msg = r->element[2];
        Wsfan__Envelope *e = wsfan__envelope__unpack(NULL, msg->len, (const uint8_t *)msg->str);
        uint64_t t2 = now_ns();
        size_t bytes = msg->len;
        freeReplyObject(r);
        if (!e)
            die("an answer that is not an Envelope");
        if (e->kind != WSFAN__ENVELOPE__KIND__PRESENCE_REPLY || e->request_id != id) {
            wsfan__envelope__free_unpacked(e, NULL);
            continue;
        }
        if (e->error && e->error[0])
            die("the router answered error %s", e->error);
        if (a) {
            a->rtt_ns = t1 - t0;
            a->unpack_ns = t2 - t1;
            a->count = e->count;
            a->listed = e->n_members;
            a->bytes = bytes;
        }
        return e;
    }
}

/* Appends a PRESENCE_QUERY for channel to the pipeline (not yet sent); returns its id. */
static uint64_t ask(bench *b, const char *channel, bool count_only)
{
    Wsfan__Envelope e = WSFAN__ENVELOPE__INIT;
    e.kind = WSFAN__ENVELOPE__KIND__PRESENCE_QUERY;
    e.origin = ASKER;
    e.channel = (char *)channel;
    e.request_id = ++b->qid;
    e.count_only = count_only;
    publish_env(b, &e);
    return b->qid;
}

/* The floor under every question: an answer-shaped Envelope PUBLISHed straight to our own
 * node channel, Redis and back, no router. */
static void redis_echo(bench *b, answer *a)
{
    Wsfan__Envelope e = WSFAN__ENVELOPE__INIT;
    e.kind = WSFAN__ENVELOPE__KIND__PRESENCE_REPLY;
    e.origin = ASKER;
    e.request_id = ++b->qid;
    const char *ch = b->asker_ch;
    size_t n = wsfan__envelope__get_packed_size(&e);
    uint8_t buf[64];
    wsfan__envelope__pack(&e, buf);
    const char *argv[3] = {"PUBLISH", ch, (const char *)buf};
    size_t len[3] = {7, strlen(ch), n};
    uint64_t t0 = now_ns();
    if (redisAppendCommandArgv(b->pub, 3, argv, len) != REDIS_OK)
        die("redis: %s", b->pub->errstr);
    b->cur_cmds++;
    flush_out(b->pub);
    Wsfan__Envelope *r = wait_answer(b, b->qid, a, t0);
    wsfan__envelope__free_unpacked(r, NULL);
    drain(b);
}

/* One question on its own, timed. */
static void query(bench *b, const char *channel, bool count_only, answer *a)
{
    uint64_t t0 = now_ns();
    uint64_t id = ask(b, channel, count_only);
    flush_out(b->pub);
    Wsfan__Envelope *e = wait_answer(b, id, a, t0);
    wsfan__envelope__free_unpacked(e, NULL);
    drain(b); /* the PUBLISH's own answer, long since there */
}

/* Sends everything queued plus a count-only question after it, and waits for the answer: the
 * router has then applied all of it. Returns the time that took from `since`. */
static double sync_router(bench *b, const char *channel, uint64_t since)
{
    uint64_t id = ask(b, channel, true);
    drain(b);
    Wsfan__Envelope *e = wait_answer(b, id, NULL, 0);
    uint64_t t = now_ns();
    wsfan__envelope__free_unpacked(e, NULL);
    return (double)(t - since) / 1e9;
}

/* ---- sampling around a phase --------------------------------------------------------------- */

typedef struct sample {
    uint64_t t;
    double router, redis, self;
    metrics m;
} sample;

static sample take(bench *b)
{
    return (sample){.t = now_ns(),
                    .router = proc_cpu(b->o->router_pid),
                    .redis = proc_cpu(b->redis_pid),
                    .self = self_cpu(),
                    .m = get_metrics(b->o->admin)};
}

/* Complains (and fails the run) if the router did not apply exactly what was sent. */
static void check(const sample *s0, const sample *s1, uint64_t envelopes, uint64_t members, bench *b)
{
    uint64_t got = s1->m.envelopes - s0->m.envelopes;
    bool bad = false;
    if (got != envelopes) {
        fprintf(stderr, "routerbench: the router counted %" PRIu64 " envelopes, %" PRIu64 " sent\n",
                got, envelopes);
        bad = true;
    }
    if (s1->m.members != members) {
        fprintf(stderr, "routerbench: wsfan_router_members is %" PRIu64 ", expected %" PRIu64 "\n",
                s1->m.members, members);
        bad = true;
    }
    if (s1->m.malformed != s0->m.malformed || s1->m.flood != s0->m.flood ||
        s1->m.misrouted != s0->m.misrouted || s1->m.resyncs != s0->m.resyncs) {
        fprintf(stderr, "routerbench: malformed +%" PRIu64 ", flood-dropped +%" PRIu64
                        ", misrouted +%" PRIu64 ", resyncs +%" PRIu64
                        " (raise --node-rate / --node-timeout?)\n",
                s1->m.malformed - s0->m.malformed, s1->m.flood - s0->m.flood,
                s1->m.misrouted - s0->m.misrouted, s1->m.resyncs - s0->m.resyncs);
        bad = true;
    }
    if (b->unrouted) {
        fprintf(stderr, "routerbench: %" PRIu64 " PUBLISHes reached no subscriber: is the router up?\n",
                b->unrouted);
        bad = true;
    }
    if (bad)
        exit(1);
}

/* ---- phases ------------------------------------------------------------------------------ */

typedef struct rate_cell {
    uint64_t envelopes;
    double secs[16], router, redis, self; /* seconds of each round; CPU summed over rounds */
    uint64_t backlog;
} rate_cell;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Joins (join) or leaves all of s in envelopes of bsz, then waits for the router. */
static void rate_once(bench *b, const shape *s, const char *sync_ch, uint64_t bsz, bool join,
                      rate_cell *c, size_t round)
{
    b->backlog_peak = 0;
    sample s0 = take(b);
    uint64_t envs = send_members(b, s, 0, s->clients, join, bsz);
    flush_out(b->pub);
    router_backlog(b); /* all sent: what is still queued for the router */
    double secs = sync_router(b, sync_ch, s0.t);
    sample s1 = take(b);
    check(&s0, &s1, envs + 1, join ? s->clients : 0, b);
    if (!c)
        return;
    c->envelopes = envs;
    c->secs[round] = secs;
    c->router += s1.router - s0.router;
    c->redis += s1.redis - s0.redis;
    c->self += s1.self - s0.self;
    if (b->backlog_peak > c->backlog)
        c->backlog = b->backlog_peak;
}

static void phase_rate(bench *b)
{
    const opts *o = b->o;
    shape s = {o->tag, o->members, 1, o->channels, o->nodes};
    char sync_ch[96];
    snprintf(sync_ch, sizeof sync_ch, "%s-c0", o->tag);
    printf("## rate: %" PRIu64 " members (%" PRIu64 " clients x 1 channel of %" PRIu64
           ", %" PRIu64 " nodes), joined then left, per batch size; median of %" PRIu64
           " rounds, batch sizes alternating within each round, after one untimed round\n\n",
           o->members, o->members, o->channels, o->nodes, o->rounds);
    fflush(stdout);
    rate_cell *cells = calloc(o->nbatches * 2, sizeof *cells);
    if (!cells)
        die("out of memory");
    /* The untimed round grows the router's tables to their size for this many members (they
     * never shrink), so every timed round sees the same long-lived router. */
    rate_once(b, &s, sync_ch, o->batches[o->nbatches - 1], true, NULL, 0);
    rate_once(b, &s, sync_ch, o->batches[o->nbatches - 1], false, NULL, 0);
    for (size_t r = 0; r < o->rounds; r++)
        for (size_t i = 0; i < o->nbatches; i++)
            for (int join = 1; join >= 0; join--)
                rate_once(b, &s, sync_ch, o->batches[i], join, &cells[2 * i + !join], r);
    printf("| batch | op | envelopes | seconds | members/s | envelopes/s | members/s, min-max | "
           "router CPU %% | redis CPU %% | bench CPU %% | router us/member | Redis backlog peak MiB |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < o->nbatches; i++)
        for (int join = 1; join >= 0; join--) {
            rate_cell *c = &cells[2 * i + !join];
            double total = 0;
            for (size_t r = 0; r < o->rounds; r++)
                total += c->secs[r];
            qsort(c->secs, o->rounds, sizeof c->secs[0], cmp_double);
            double med = o->rounds % 2 ? c->secs[o->rounds / 2]
                                       : (c->secs[o->rounds / 2 - 1] + c->secs[o->rounds / 2]) / 2;
            printf("| %" PRIu64 " | %s | %" PRIu64 " | %.3f | %.0f | %.0f | %.0f-%.0f | %.0f | %.0f | "
                   "%.0f | %.2f | %.1f |\n",
                   o->batches[i], join ? "join" : "leave", c->envelopes, med, o->members / med,
                   c->envelopes / med, o->members / c->secs[o->rounds - 1], o->members / c->secs[0],
                   100 * c->router / total, 100 * c->redis / total, 100 * c->self / total,
                   c->router * 1e6 / (double)(o->members * o->rounds), c->backlog / 1048576.0);
        }
    free(cells);
    printf("\nseconds: first envelope sent to the router's answer to a question sent after the last. "
           "CPU %% over all rounds (100 = one core), from /proc/<pid>/task/*/schedstat; router CPU "
           "near 100 means its one thread is the limit. Backlog: the router link's output buffer "
           "in Redis (CLIENT LIST omem), peak.\n\n");
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct series {
    const char *what, *channel; /* channel NULL: redis_echo */
    bool count_only;
    uint64_t members, n;
    uint64_t *rtt, *unpack;
    uint64_t bytes, listed, count;
    double router_cpu;
} series;

static void series_add(series *s, const answer *a)
{
    s->rtt[s->n] = a->rtt_ns;
    s->unpack[s->n] = a->unpack_ns;
    s->n++;
    s->bytes = a->bytes;
    s->listed = a->listed;
    s->count = a->count;
}

static double pct_us(uint64_t *v, uint64_t n, double p)
{
    if (!n)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i] / 1e3;
}

static void series_print(series *s)
{
    qsort(s->rtt, s->n, sizeof *s->rtt, cmp_u64);
    qsort(s->unpack, s->n, sizeof *s->unpack, cmp_u64);
    printf("| %s | %" PRIu64 " | %" PRIu64 " | %.0f | %.0f | %.0f | %.0f | %" PRIu64 " | %" PRIu64
           " | %.0f |\n",
           s->what, s->count, s->n, pct_us(s->rtt, s->n, 0.5), pct_us(s->rtt, s->n, 0.99),
           pct_us(s->rtt, s->n, 1.0), pct_us(s->unpack, s->n, 0.5), s->listed, s->bytes,
           s->router_cpu * 1e6 / (double)s->n);
    if (s->count != s->members)
        die("%s: the router counted %" PRIu64 " members, %" PRIu64 " joined", s->what, s->count,
            s->members);
}

static void series_init(series *s, const char *what, const char *channel, bool count_only,
                        uint64_t members, uint64_t n)
{
    *s = (series){.what = what, .channel = channel, .count_only = count_only, .members = members};
    s->rtt = calloc(n, sizeof *s->rtt);
    s->unpack = calloc(n, sizeof *s->unpack);
    if (!s->rtt || !s->unpack)
        die("out of memory");
}

static void phase_query(bench *b)
{
    const opts *o = b->o;
    char big_tag[64], small_tag[64], big_ch[96], small_ch[96];
    snprintf(big_tag, sizeof big_tag, "%s-big", o->tag);
    snprintf(small_tag, sizeof small_tag, "%s-small", o->tag);
    snprintf(big_ch, sizeof big_ch, "%s-c0", big_tag);
    snprintf(small_ch, sizeof small_ch, "%s-c0", small_tag);
    shape big = {big_tag, o->members, 1, 1, o->nodes};
    shape small = {small_tag, o->small, 1, 1, 1};
    uint64_t rss0 = proc_rss_kib(o->router_pid);
    sample s0 = take(b);
    uint64_t envs = send_members(b, &small, 0, o->small, true, o->batch);
    envs += send_members(b, &big, 0, o->members, true, o->batch);
    double fill = sync_router(b, small_ch, s0.t);
    sample s1 = take(b);
    check(&s0, &s1, envs + 1, o->members + o->small, b);
    printf("## query: one channel of %" PRIu64 " members (%" PRIu64 " nodes, joined in batches of %" PRIu64
           " in %.2f s: %.0f members/s), and the baseline, one of %" PRIu64 " (same router, same run)\n\n",
           o->members, o->nodes, o->batch, fill, o->members / fill, o->small);
    printf("router RSS %" PRIu64 " KiB before, %" PRIu64 " KiB after the fill\n\n", rss0,
           proc_rss_kib(o->router_pid));

    /* Cheap questions interleaved (so the baseline sees the same machine), then the full
     * lists of the big channel on their own. A few of each first, untimed. */
    series re, sc, bc, sf, bf;
    series_init(&re, "no router: Redis round trip only", NULL, true, 0, o->queries);
    series_init(&sc, "count only, baseline", small_ch, true, o->small, o->queries);
    series_init(&bc, "count only", big_ch, true, o->members, o->queries);
    series_init(&sf, "member list, baseline", small_ch, false, o->small, o->queries);
    series_init(&bf, "member list", big_ch, false, o->members, o->full_queries);
    series *cheap[] = {&re, &sc, &bc, &sf};
    const size_t ncheap = sizeof cheap / sizeof cheap[0];
    answer a;
    for (int i = 0; i < 20; i++)
        for (size_t k = 1; k < ncheap; k++)
            query(b, cheap[k]->channel, cheap[k]->count_only, &a);
    query(b, big_ch, false, &a);
    for (uint64_t i = 0; i < o->queries; i++)
        for (size_t k = 0; k < ncheap; k++) {
            double c0 = proc_cpu(o->router_pid);
            if (cheap[k]->channel)
                query(b, cheap[k]->channel, cheap[k]->count_only, &a);
            else
                redis_echo(b, &a);
            cheap[k]->router_cpu += proc_cpu(o->router_pid) - c0;
            series_add(cheap[k], &a);
        }
    double c0 = proc_cpu(o->router_pid);
    for (uint64_t i = 0; i < o->full_queries; i++) {
        query(b, big_ch, false, &a);
        series_add(&bf, &a);
    }
    bf.router_cpu = proc_cpu(o->router_pid) - c0;
    metrics m = get_metrics(o->admin);
    printf("| question | members | queries | p50 us | p99 us | max us | unpack p50 us (bench) | "
           "listed | answer bytes | router CPU us/query |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    series_print(&re);
    series_print(&sc);
    series_print(&bc);
    series_print(&sf);
    series_print(&bf);
    printf("\nround trip: PUBLISH of the question to the whole answer read from Redis "
           "(unpacking it is the next column). router CPU per query from /proc/<pid>/task/*/schedstat "
           "summed over the series. Router: %" PRIu64 " queries answered, %" PRIu64
           " count-only.\n\n",
           m.queries, m.count_only);
}

static void phase_memory(bench *b)
{
    const opts *o = b->o;
    shape s = {o->tag, o->clients, o->per_client, o->channels, o->nodes};
    char sync_ch[96];
    snprintf(sync_ch, sizeof sync_ch, "%s-c0", o->tag);
    uint64_t total = shape_members(&s);
    printf("## memory: %" PRIu64 " clients x %" PRIu64 " channels each (%" PRIu64
           " channels, %" PRIu64 " nodes), joined in batches of %" PRIu64 "\n\n",
           o->clients, o->per_client, o->channels, o->nodes, o->batch);
    printf("| members | clients | router RSS KiB | delta KiB | bytes/member | fill s | members/s | "
           "router CPU %% | redis CPU %% | Redis backlog peak MiB |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    uint64_t rss0 = proc_rss_kib(o->router_pid);
    printf("| 0 | 0 | %" PRIu64 " | | | | | | | |\n", rss0);
    fflush(stdout);
    uint64_t at = 0;
    for (size_t i = 0; i < o->ncheckpoints; i++) {
        uint64_t to = o->checkpoints[i] < total ? o->checkpoints[i] : total;
        if (to <= at)
            continue;
        b->backlog_peak = 0;
        sample s0 = take(b);
        uint64_t envs = send_members(b, &s, at, to, true, o->batch);
        flush_out(b->pub);
        router_backlog(b);
        double secs = sync_router(b, sync_ch, s0.t);
        sample s1 = take(b);
        check(&s0, &s1, envs + 1, to, b);
        uint64_t rss = proc_rss_kib(o->router_pid);
        printf("| %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRId64 " | %.0f | %.2f | %.0f | %.0f | %.0f | %.1f |\n",
               to, s1.m.clients, rss, (int64_t)(rss - rss0), ((double)rss - rss0) * 1024.0 / (double)to,
               secs, (to - at) / secs, 100 * (s1.router - s0.router) / secs,
               100 * (s1.redis - s0.redis) / secs, b->backlog_peak / 1048576.0);
        fflush(stdout);
        at = to;
    }
    if (o->drain) {
        b->backlog_peak = 0;
        sample s0 = take(b);
        uint64_t envs = send_members(b, &s, 0, at, false, o->batch);
        flush_out(b->pub);
        router_backlog(b);
        double secs = sync_router(b, sync_ch, s0.t);
        sample s1 = take(b);
        check(&s0, &s1, envs + 1, 0, b);
        uint64_t rss = proc_rss_kib(o->router_pid);
        printf("| 0 (all left) | %" PRIu64 " | %" PRIu64 " | %" PRId64 " | | %.2f | %.0f | %.0f | %.0f | %.1f |\n",
               s1.m.clients, rss, (int64_t)(rss - rss0), secs, at / secs,
               100 * (s1.router - s0.router) / secs, 100 * (s1.redis - s0.redis) / secs,
               b->backlog_peak / 1048576.0);
    }
    printf("\nbytes/member = RSS delta / members (VmRSS from /proc/<pid>/status).\n\n");
}

/* ---- main ------------------------------------------------------------------------------- */

static size_t parse_list(const char *s, uint64_t *out, size_t cap)
{
    size_t n = 0;
    char *end;
    while (*s && n < cap) {
        out[n++] = strtoull(s, &end, 10);
        if (end == s || out[n - 1] == 0)
            die("bad list '%s'", s);
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            die("bad list item at '%s'", end);
    }
    return n;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: routerbench [options] rate|query|memory\n"
            "  --redis HOST:PORT      Redis the router listens on (127.0.0.1:6379)\n"
            "  --prefix P             the router's --redis-prefix (wsfan:)\n"
            "  --admin PORT           the router's /metrics port (required)\n"
            "  --router-pid PID       the router's pid, for CPU and RSS (required)\n"
            "  --tag T                fake nodes are T-n<i>, channels T-c<j> (bench)\n"
            "  --nodes N              fake nodes the clients are spread over (100)\n"
            "  --members N            rate: members joined then left (200000); query: in the big channel (100000)\n"
            "  --batches B1,B2,..     rate: members per JOIN/LEAVE envelope (1,100,1000)\n"
            "  --rounds N             rate: timed rounds, median reported (3; at most 16)\n"
            "  --channels N           rate, memory: channels the members are spread over (1000)\n"
            "  --batch B              query, memory: members per envelope of the fills (1000)\n"
            "  --small N              query: members of the baseline channel (10)\n"
            "  --queries N            query: timed questions of each cheap kind (2000)\n"
            "  --full-queries N       query: timed full lists of the big channel (50)\n"
            "  --clients N            memory: clients (1000000)\n"
            "  --per-client K         memory: channels per client (1)\n"
            "  --checkpoints M1,M2,.. memory: member counts at which RSS is read (100000,1000000)\n"
            "  --drain                memory: then leave everything and read RSS again\n");
}

int main(int argc, char **argv)
{
    opts o = {.port = 6379, .prefix = "wsfan:", .tag = "bench", .nodes = 100, .channels = 1000,
              .small = 10, .batch = 1000, .queries = 2000, .full_queries = 50, .rounds = 3, .clients = 1000000,
              .per_client = 1};
    snprintf(o.host, sizeof o.host, "127.0.0.1");
    static const struct option lo[] = {
        {"redis", required_argument, 0, 'r'},       {"prefix", required_argument, 0, 'p'},
        {"admin", required_argument, 0, 'a'},       {"router-pid", required_argument, 0, 'P'},
        {"tag", required_argument, 0, 't'},         {"nodes", required_argument, 0, 'n'},
        {"members", required_argument, 0, 'm'},     {"batches", required_argument, 0, 'B'},
        {"channels", required_argument, 0, 'c'},    {"batch", required_argument, 0, 'b'},
        {"small", required_argument, 0, 's'},       {"queries", required_argument, 0, 'q'},
        {"full-queries", required_argument, 0, 'f'}, {"clients", required_argument, 0, 'C'},
        {"per-client", required_argument, 0, 'k'},  {"checkpoints", required_argument, 0, 'K'},
        {"drain", no_argument, 0, 'd'},             {"rounds", required_argument, 0, 'R'},             {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'r': {
            const char *colon = strrchr(optarg, ':');
            if (!colon || colon == optarg)
                die("--redis wants HOST:PORT");
            snprintf(o.host, sizeof o.host, "%.*s", (int)(colon - optarg), optarg);
            o.port = atoi(colon + 1);
            break;
        }
        case 'p': o.prefix = optarg; break;
        case 'a': o.admin = atoi(optarg); break;
        case 'P': o.router_pid = atol(optarg); break;
        case 't': o.tag = optarg; break;
        case 'n': o.nodes = strtoull(optarg, NULL, 10); break;
        case 'm': o.members = strtoull(optarg, NULL, 10); break;
        case 'B': o.nbatches = parse_list(optarg, o.batches, 16); break;
        case 'c': o.channels = strtoull(optarg, NULL, 10); break;
        case 'b': o.batch = strtoull(optarg, NULL, 10); break;
        case 's': o.small = strtoull(optarg, NULL, 10); break;
        case 'q': o.queries = strtoull(optarg, NULL, 10); break;
        case 'f': o.full_queries = strtoull(optarg, NULL, 10); break;
        case 'C': o.clients = strtoull(optarg, NULL, 10); break;
        case 'k': o.per_client = strtoull(optarg, NULL, 10); break;
        case 'K': o.ncheckpoints = parse_list(optarg, o.checkpoints, 16); break;
        case 'd': o.drain = true; break;
        case 'R': o.rounds = strtoull(optarg, NULL, 10); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1 || !o.admin || o.router_pid <= 0) {
        usage(stderr);
        return 2;
    }
    const char *what = argv[optind];
    if (!o.nbatches)
        o.nbatches = parse_list("1,100,1000", o.batches, 16);
    if (!o.ncheckpoints)
        o.ncheckpoints = parse_list("100000,1000000", o.checkpoints, 16);
    if (!o.members)
        o.members = strcmp(what, "query") == 0 ? 100000 : 200000;
    if (!o.tag[0] || strlen(o.tag) > 20 || strspn(o.tag, "abcdefghijklmnopqrstuvwxyz"
                                                       "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != strlen(o.tag))
        die("--tag must be 1-20 of [A-Za-z0-9_-]");
    if (!cluster_prefix_valid(o.prefix))
        die("--prefix must be at most %d bytes of printable ASCII without spaces", CLUSTER_PREFIX_MAX);
    if (!o.rounds || o.rounds > 16)
        die("--rounds must be 1-16");
    if (!o.nodes || !o.channels || !o.batch || !o.small || !o.clients || !o.per_client ||
        o.per_client > o.channels || o.batch > 100000)
        die("--nodes, --channels, --batch (<= 100000), --small, --clients, --per-client "
            "(<= --channels) must be positive");
    for (size_t i = 0; i < o.nbatches; i++)
        if (o.batches[i] > 100000)
            die("the router takes at most 100000 members per envelope");

    bench b = {.o = &o};
    char name[CLUSTER_NAME_MAX + 1];
    cluster_router_channel(name, sizeof name, 0);
    snprintf(b.router_ch, sizeof b.router_ch, "%s%s", o.prefix, name);
    cluster_node_channel(name, sizeof name, (ws_span){ASKER, strlen(ASKER)});
    snprintf(b.asker_ch, sizeof b.asker_ch, "%s%s", o.prefix, name);
    b.pub = connect_redis(&o);
    b.ctl = connect_redis(&o);
    b.sub = connect_redis(&o);
    redisReply *r = redisCommand(b.sub, "CLIENT SETNAME %s", ASKER);
    freeReplyObject(r);
    r = redisCommand(b.sub, "SUBSCRIBE %s", b.asker_ch);
    struct timeval tv = {60, 0}; /* an answer that never comes: the router lost its link? */
    redisSetTimeout(b.sub, tv);
    if (!r || r->type != REDIS_REPLY_ARRAY)
        die("SUBSCRIBE failed");
    freeReplyObject(r);
    r = redisCommand(b.ctl, "INFO server");
    const char *pp = r && r->type == REDIS_REPLY_STRING
                         ? strstr(r->str, "process_id:") : NULL;
    if (!pp)
        die("INFO server has no process_id");
    b.redis_pid = atol(pp + 11);
    freeReplyObject(r);
    if (proc_cpu(o.router_pid) < 0 || proc_cpu(b.redis_pid) < 0)
        die("cannot read /proc/%ld or /proc/%ld (same host?)", o.router_pid, b.redis_pid);
    metrics m = get_metrics(o.admin);
    printf("# routerbench %s: router pid %ld (/metrics on :%d, %" PRIu64 " members now), "
           "redis-server pid %ld on %s:%d\n\n",
           what, o.router_pid, o.admin, m.members, b.redis_pid, o.host, o.port);
    machine m0 = machine_cpu();
    double r0 = proc_cpu(o.router_pid), d0 = proc_cpu(b.redis_pid), b0 = self_cpu();
    uint64_t t0 = now_ns();
    if (strcmp(what, "rate") == 0)
        phase_rate(&b);
    else if (strcmp(what, "query") == 0)
        phase_query(&b);
    else if (strcmp(what, "memory") == 0)
        phase_memory(&b);
    else {
        usage(stderr);
        return 2;
    }
    /* Whatever else ran meanwhile: other processes, interrupts, the hypervisor. Our three
     * processes' schedstat time may include some of their own softirq work, hence the clamp. */
    double secs = (double)(now_ns() - t0) / 1e9;
    machine m1 = machine_cpu();
    double ours = (proc_cpu(o.router_pid) - r0) + (proc_cpu(b.redis_pid) - d0) + (self_cpu() - b0);
    double other = m1.tasks - m0.tasks + m1.irq - m0.irq - ours;
    if (other < 0)
        other = 0;
    printf("%.1f s; meanwhile the rest of the machine (other processes, interrupts beyond ours) "
           "took %.0f%% of a core, the hypervisor stole %.0f%%%s\n\n",
           secs, 100 * other / secs, 100 * (m1.steal - m0.steal) / secs,
           other / secs > 0.1 || (m1.steal - m0.steal) / secs > 0.1
               ? ": NOISY, run again on a quiet machine" : "");
    redisFree(b.pub);
    redisFree(b.sub);
    redisFree(b.ctl);
    return 0;
}
