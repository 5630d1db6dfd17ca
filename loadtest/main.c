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

    int W = o.workers, rfd[MAX_WORKERS], cfd[MAX_WORKERS];
    pid_t pids[MAX_WORKERS];
    for (int i = 0; i < W; i++) {
        int rp[2], cp[2];
        if (pipe(rp) < 0 || pipe(cp) < 0) {
            perror("wsload: pipe");
            return 1;
        }
        pids[i] = fork();
        if (pids[i] < 0) {
            perror("wsload: fork");
            return 1;
        }
        if (pids[i] == 0) {
            for (int k = 0; k < i; k++) {
                close(rfd[k]);
                close(cfd[k]);
            }
            close(rp[0]);
            close(cp[1]);
            _exit(worker_main(&o, i, rp[1], cp[0]));
        }
        close(rp[1]);
        close(cp[0]);
        rfd[i] = rp[0];
        cfd[i] = cp[1];
    }
    struct sigaction sa = {.sa_handler = on_sigint};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    bool progress = !o.quiet && isatty(2);
    int ready = 0, finals = 0;
    bool went = false, quit_sent = false;
    uint64_t t0 = now_ns(), t_go = 0;
    double run = o.scenario == SC_CONNECT ? o.hold : o.duration;
    /* Bound on the whole run: setup, the run, the drain, and a margin. */
    double setup_bound = o.handshake_timeout * 3 + 30;
    counters tick_c[MAX_WORKERS];
    memset(tick_c, 0, sizeof tick_c);
    static report r;

    struct pollfd pf[MAX_WORKERS];
    for (int i = 0; i < W; i++)
        pf[i] = (struct pollfd){.fd = rfd[i], .events = POLLIN};
    while (finals < W) {
        int n = poll(pf, (nfds_t)W, 250);
        double elapsed = (double)(now_ns() - t0) / 1e9;
        bool overdue = went ? (double)(now_ns() - t_go) / 1e9 > run + o.drain + 15 : elapsed > setup_bound;
        if ((interrupted || overdue) && !quit_sent) {
            if (overdue)
                fprintf(stderr, "\nwsload: run overdue: stopping the workers\n");
            for (int i = 0; i < W; i++)
                if (write(cfd[i], "q", 1) < 0) {
                }
            quit_sent = true;
            res.interrupted = true;
        }
        for (int i = 0; n > 0 && i < W; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP)))
                continue;
            if (read_all(rfd[i], &r, sizeof r) < 0) {
                fprintf(stderr, "wsload: worker %d died\n", i);
                res.interrupted = true;
                finals++;
                pf[i].fd = -1;
                continue;
            }
            switch (r.kind) {
            case R_READY:
                ready++;
                tick_c[i] = r.c;
                res.setup_ns = r.c.setup_ns > res.setup_ns ? r.c.setup_ns : res.setup_ns;
                break;
            case R_TICK:
                result_tick(&res, r.interval, &r.lat, &r.c, &tick_c[i]);
                tick_c[i] = r.c;
                break;
            case R_FINAL:
                finals++;
                pf[i].fd = -1; /* its pipe will hang up: not a death */
                add_counters(&res.c, &r.c);
                hist_merge(&res.lat, &r.lat);
                hist_merge(&res.hs, &r.hs);
                for (uint32_t k = 0; k < r.nchan; k++) {
                    chan_tally t;
                    if (read_all(rfd[i], &t, sizeof t) < 0)
                        break;
                    res.expected_subs[t.channel % MAX_CHANNELS] += t.subscribers;
                    res.expected_pubs[t.channel % MAX_CHANNELS] += t.published;
                }
                break;
            }
        }
        if (!went && ready == W) {
            if (o.npids)
                memory_of(o.server_pids, o.npids, &res.rss_after, &res.pss_after);
            for (int i = 0; i < W; i++)
                res.open_at_go += tick_c[i].open_now;
            if (o.proto == PR_TEMPLATE && o.sub_template)
                usleep(500000); /* no ack to wait for: let subscriptions settle */
            for (int i = 0; i < W; i++)
                if (write(cfd[i], "g", 1) < 0) {
                }
            went = true;
            t_go = now_ns();
        }
        if (progress)
            result_progress(&res, went ? (double)(now_ns() - t_go) / 1e9 : -elapsed, ready, W);
    }
    if (progress)
        fputc('\n', stderr);
    for (int i = 0; i < W; i++)
        waitpid(pids[i], NULL, 0);
    res.wall_s = went ? (double)(now_ns() - t_go) / 1e9 : 0;
    res.workers = W;

    result_finish(&res);
    result_print(&res, stdout);
    if (o.json_path && result_json(&res, o.json_path) < 0)
        fprintf(stderr, "wsload: cannot write %s\n", o.json_path);
    if (o.plot_path && result_svg(&res, o.plot_path) < 0)
        fprintf(stderr, "wsload: cannot write %s\n", o.plot_path);
    return res.interrupted ? 1 : 0;
}
