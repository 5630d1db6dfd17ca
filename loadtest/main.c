/* wsload parent: forks the workers, starts them together once every connection is up, merges
 * their reports, shows progress, and prints the table, the JSON and the plot. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "report.h"
#include "wsload.h"

static volatile sig_atomic_t interrupted;
static void on_sigint(int s)
{
    (void)s;
    interrupted = 1;
}

static int read_all(int fd, void *p, size_t n)
{
    char *s = p;
    while (n) {
        ssize_t r = read(fd, s, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        s += r;
        n -= (size_t)r;
    }
    return 0;
}

/* RSS and PSS in KiB of each pid and all its descendants (a start script's server, a
 * master's workers). */
static void memory_of(const int *pids, int n, uint64_t *rss, uint64_t *pss)
{
    *rss = *pss = 0;
    int list[512], nl = 0;
    for (int i = 0; i < n && nl < 512; i++)
        list[nl++] = pids[i];
    for (int k = 0; k < nl; k++) { /* breadth first: children are appended as found */
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/task/%d/children", list[k], list[k]);
        FILE *f = fopen(path, "r");
        int child;
        while (f && nl < 512 && fscanf(f, "%d", &child) == 1)
            list[nl++] = child;
        if (f)
            fclose(f);
        snprintf(path, sizeof path, "/proc/%d/smaps_rollup", list[k]);
        if (!(f = fopen(path, "r")))
            continue;
        char line[256];
        unsigned long long v;
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, "Rss: %llu", &v) == 1)
                *rss += v;
            else if (sscanf(line, "Pss: %llu", &v) == 1)
                *pss += v;
        }
        fclose(f);
    }
}

static void add_counters(counters *a, const counters *b)
{
    uint64_t *x = (uint64_t *)a;
    const uint64_t *y = (const uint64_t *)b;
    for (size_t i = 0; i < sizeof *a / sizeof(uint64_t); i++)
        x[i] += y[i];
}

/* The parent's view of the run while it lasts. */
typedef struct run {
    const opts *o;
    result *res;
    int W, rfd[MAX_WORKERS], cfd[MAX_WORKERS];
    pid_t pids[MAX_WORKERS];
    struct pollfd pf[MAX_WORKERS];
    counters tick_c[MAX_WORKERS];
    int ready, finals;
    bool went, quit_sent;
    uint64_t t0, t_go;
} run;

/* Forks the workers, each with a report pipe and a control pipe; 0 or -1. */
static int spawn(run *r)
{
    for (int i = 0; i < r->W; i++) {
        int rp[2], cp[2];
        if (pipe(rp) < 0 || pipe(cp) < 0) {
            perror("wsload: pipe");
            return -1;
        }
        r->pids[i] = fork();
        if (r->pids[i] < 0) {
            perror("wsload: fork");
            return -1;
        }
        if (r->pids[i] == 0) {
            for (int k = 0; k < i; k++) {
                close(r->rfd[k]);
                close(r->cfd[k]);
            }
            close(rp[0]);
            close(cp[1]);
            _exit(worker_main(r->o, i, rp[1], cp[0]));
        }
        close(rp[1]);
        close(cp[0]);
        r->rfd[i] = rp[0];
        r->cfd[i] = cp[1];
        r->pf[i] = (struct pollfd){.fd = rp[0], .events = POLLIN};
    }
    return 0;
}

/* Sends the one-byte command to every worker. */
static void tell_all(run *r, char cmd)
{
    for (int i = 0; i < r->W; i++)
        if (write(r->cfd[i], &cmd, 1) < 0) {
        }
}

/* Reads one report of worker i and merges it; false when the worker died. */
static bool take_report(run *r, int i)
{
    static report rep;
    result *res = r->res;
    if (read_all(r->rfd[i], &rep, sizeof rep) < 0)
        return false;
    switch (rep.kind) {
    case R_READY:
        r->ready++;
        r->tick_c[i] = rep.c;
        res->setup_ns = rep.c.setup_ns > res->setup_ns ? rep.c.setup_ns : res->setup_ns;
        break;
    case R_TICK:
        result_tick(res, rep.interval, &rep.lat, &rep.c, &r->tick_c[i]);
        r->tick_c[i] = rep.c;
        break;
    case R_FINAL:
        r->finals++;
        r->pf[i].fd = -1; /* its pipe will hang up: not a death */
        add_counters(&res->c, &rep.c);
        hist_merge(&res->lat, &rep.lat);
        hist_merge(&res->hs, &rep.hs);
        hist_merge(&res->rec, &rep.rec);
        for (uint32_t k = 0; k < rep.nchan; k++) {
            chan_tally t;
            if (read_all(r->rfd[i], &t, sizeof t) < 0)
                break;
            res->expected_subs[t.channel % MAX_CHANNELS] += t.subscribers;
            res->expected_pubs[t.channel % MAX_CHANNELS] += t.published;
        }
        break;
    }
    return true;
}

/* Every worker is ready: measure the server, then say go. */
static void start(run *r)
{
    const opts *o = r->o;
    if (o->npids)
        memory_of(o->server_pids, o->npids, &r->res->rss_after, &r->res->pss_after);
    for (int i = 0; i < r->W; i++)
        r->res->open_at_go += r->tick_c[i].open_now;
    if (o->proto == PR_TEMPLATE && o->sub_template)
        usleep(500000); /* no ack to wait for: let subscriptions settle */
    tell_all(r, 'g');
    r->went = true;
    r->t_go = now_ns();
}

/* Polls the workers' reports until every one sent its FINAL (or died); stops them on ^C or
 * when the run is overdue. */
static void collect(run *r)
{
    const opts *o = r->o;
    bool progress = !o->quiet && isatty(2);
    double run_s = o->scenario == SC_CONNECT ? o->hold : o->duration;
    double setup_bound = o->handshake_timeout * 3 + 30; /* setup, the run, the drain, a margin */
    while (r->finals < r->W) {
        int n = poll(r->pf, (nfds_t)r->W, 250);
        double elapsed = (double)(now_ns() - r->t0) / 1e9;
        bool overdue = r->went ? (double)(now_ns() - r->t_go) / 1e9 > run_s + o->drain + 15
                               : elapsed > setup_bound;
        if ((interrupted || overdue) && !r->quit_sent) {
            if (overdue)
                fprintf(stderr, "\nwsload: run overdue: stopping the workers\n");
            tell_all(r, 'q');
            r->quit_sent = true;
            r->res->interrupted = true;
        }
        for (int i = 0; n > 0 && i < r->W; i++) {
            if (!(r->pf[i].revents & (POLLIN | POLLHUP)))
                continue;
            if (!take_report(r, i)) {
                fprintf(stderr, "wsload: worker %d died\n", i);
                r->res->interrupted = true;
                r->finals++;
                r->pf[i].fd = -1;
            }
        }
        if (!r->went && r->ready == r->W)
            start(r);
        if (progress)
            result_progress(r->res, r->went ? (double)(now_ns() - r->t_go) / 1e9 : -elapsed,
                            r->ready, r->W);
    }
    if (progress)
        fputc('\n', stderr);
}

int main(int argc, char **argv)
{
    static opts o;
    int rc = opts_parse(&o, argc, argv);
    if (rc)
        return rc > 0 ? 0 : 2;

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);

    static result res;
    memset(&res, 0, sizeof res);
    res.o = &o;
    if (o.npids)
        memory_of(o.server_pids, o.npids, &res.rss_before, &res.pss_before);

    static run r;
    r = (run){.o = &o, .res = &res, .W = o.workers};
    if (spawn(&r) < 0)
        return 1;
    struct sigaction sa = {.sa_handler = on_sigint};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    r.t0 = now_ns();
    collect(&r);
    for (int i = 0; i < r.W; i++)
        waitpid(r.pids[i], NULL, 0);
    res.wall_s = r.went ? (double)(now_ns() - r.t_go) / 1e9 : 0;
    res.workers = r.W;

    result_finish(&res);
    result_print(&res, stdout);
    if (o.json_path && result_json(&res, o.json_path) < 0)
        fprintf(stderr, "wsload: cannot write %s\n", o.json_path);
    if (o.plot_path && result_svg(&res, o.plot_path) < 0)
        fprintf(stderr, "wsload: cannot write %s\n", o.plot_path);
    return res.interrupted ? 1 : 0;
}
