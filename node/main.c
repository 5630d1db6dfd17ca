/* wsnode master: parses the configuration, forks the workers, restarts any that die and, on
 * SIGTERM or SIGINT, has them drain; SIGHUP is forwarded (each worker reloads its TLS
 * certificate). Signals are taken synchronously (sigtimedwait), so no
 * handler runs at an awkward moment. */
#include <errno.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "files.h"
#include "log.h"
#include "tls.h"
#include "process.h"

#define MAX_WORKERS 256

typedef struct slot {
    pid_t pid;         /* 0: not running */
    double started;    /* when it was last forked */
    double restart_at; /* when to fork it again (0: not scheduled) */
    double backoff;
} slot;

/* Everything the master holds: the configuration, the signals it takes, the counters it
 * shares with the workers, and one slot per worker. */
typedef struct master {
    config cfg;
    char node_prefix[16]; /* the random --node-id, when none is given */
    sigset_t set, old;    /* the signals taken with sigtimedwait; the mask before */
    worker_stats *stats;  /* cfg.workers slots, mapped shared before forking */
    slot slots[MAX_WORKERS];
    bool stopping;
    double deadline; /* while stopping: when to kill workers that did not stop */
    int exit_code;
} master;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static pid_t spawn(master *m, int index)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* SIGHUP kills by default: a reload forwarded before the worker's own watcher is up
         * must not take the new worker down (its watcher replaces this). */
        signal(SIGHUP, SIG_IGN);
        /* A worker never outlives its master: if the master dies (kill -9, OOM killer), the
         * kernel sends this worker SIGTERM and it drains and exits, so no orphan keeps
         * listening on the port where no later master can see or stop it. The master may
         * have died before prctl took effect: then the parent is already someone else. */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
            _exit(1);
        sigprocmask(SIG_SETMASK, &m->old, NULL);
        worker w; /* the worker's whole state, alive until exit */
        exit(process_run(&w, &m->cfg, index, m->stats)); /* exit, not _exit: LeakSanitizer checks workers */
    }
    if (pid < 0)
        log_error("fork: %s", strerror(errno));
    return pid;
}

static void describe(int status, char *out, size_t n)
{
    if (WIFSIGNALED(status))
        snprintf(out, n, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(out, n, "exited with status %d", WEXITSTATUS(status));
}

/* Signals are taken synchronously from the very start: a SIGHUP (a reload hook) or a SIGTERM
 * that comes while the configuration is still being checked must not kill. */
static void block_signals(master *m)
{
    sigemptyset(&m->set);
    sigaddset(&m->set, SIGCHLD);
    sigaddset(&m->set, SIGTERM);
    sigaddset(&m->set, SIGINT);
    sigaddset(&m->set, SIGHUP);
    sigprocmask(SIG_BLOCK, &m->set, &m->old);
}

/* --auth: an unreadable key stops the start, not every worker; wide patterns are warned of. */
static bool check_auth(const config *cfg)
{
    char err[512];
    auth *a = auth_new(cfg, err, sizeof err);
    if (!a) {
        log_error("--auth: %s", err);
        return false;
    }
    auth_free(a);
    for (int i = 0; i < cfg->nanon_sub + cfg->nanon_pub; i++) {
        bool sub = i < cfg->nanon_sub;
        const char *pat = sub ? cfg->anon_sub[i] : cfg->anon_pub[i - cfg->nanon_sub];
        if (auth_pattern_wide((ws_span){pat, strlen(pat)}))
            log_warn("--anonymous-%s '%s' matches every channel whose name merely begins "
                     "with '%.*s'; end a prefix with '.', ':' or '-' (as in '%.*s.*') unless "
                     "that is meant", sub ? "sub" : "pub", pat, (int)strlen(pat) - 1, pat,
                     (int)strlen(pat) - 1, pat);
    }
    return true;
}

/* What would fail in every worker fails here, once: the port, the certificate, the --static
 * folder, the --auth key. Returns the exit code, 0 to go on. */
static int check_start(master *m)
{
    config *cfg = &m->cfg;
    if (cfg->workers > MAX_WORKERS) {
        log_error("--workers is at most %d", MAX_WORKERS);
        return 2;
    }
    if (!cfg->node_id) { /* public in every client id: random, not the host name */
        unsigned char rnd[4];
        if (RAND_bytes(rnd, sizeof rnd) != 1) {
            log_error("no randomness for the node id");
            return 1;
        }
        snprintf(m->node_prefix, sizeof m->node_prefix, "n%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
        cfg->node_id = m->node_prefix;
    }
    char host[256] = "?", err[512];
    gethostname(host, sizeof host - 1);
    log_info("node %s on host %s, port %d", cfg->node_id, host, cfg->port);
    if (!cfg->share_port && process_port_in_use(cfg))
        return 2;
    if (cfg->tls_cert) {
        SSL_CTX *ctx = tls_server_ctx(cfg->tls_cert, cfg->tls_key, err, sizeof err);
        if (!ctx) {
            log_error("TLS: %s", err);
            return 2;
        }
        SSL_CTX_free(ctx);
    }
    if (cfg->static_dir) {
        files *f = files_load(cfg->static_dir, err, sizeof err);
        if (!f) {
            log_error("--static: %s", err);
            return 2;
        }
        log_info("--static: %zu files from %s", files_count(f), cfg->static_dir);
        files_free(f);
    }
    return cfg->auth != AUTH_OFF && !check_auth(cfg) ? 2 : 0;
}

/* Has every running worker drain (SIGTERM), and gives them until the drain timeout. */
static void stop_all(master *m, double now)
{
    m->stopping = true;
    m->deadline = now + m->cfg.drain_timeout + 2;
    for (int i = 0; i < m->cfg.workers; i++)
        if (m->slots[i].pid > 0)
            kill(m->slots[i].pid, SIGTERM);
}

static void on_signal(master *m, int sig, double now)
{
    if ((sig == SIGTERM || sig == SIGINT) && !m->stopping) {
        log_info("%s: draining workers", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        stop_all(m, now);
    }
    if (sig == SIGHUP) { /* each worker reloads the TLS certificate (or ignores it) */
        int n = 0;
        for (int i = 0; i < m->cfg.workers; i++)
            if (m->slots[i].pid > 0 && kill(m->slots[i].pid, SIGHUP) == 0)
                n++;
        log_info("SIGHUP: %s, forwarded to %d worker%s",
                 m->cfg.tls_cert ? "reloading the TLS certificate" : "no TLS, nothing to reload",
                 n, n == 1 ? "" : "s");
    }
}

/* Worker i ended with status: schedule its restart, or stop the node if it could not start. */
static void ended(master *m, int i, int status, double now)
{
    slot *s = &m->slots[i];
    pid_t pid = s->pid;
    s->pid = 0;
    m->stats[i].overloaded = 0; /* its clients are gone with it */
    char how[64];
    describe(status, how, sizeof how);
    if (m->stopping) {
        log_info("worker %d %s", i, how);
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 2 && now - s->started < 2) {
        log_error("worker %d could not start (%s): stopping", i, how);
        m->exit_code = 1;
        stop_all(m, now);
        return;
    }
    /* A worker that dies right after starting is restarted ever more slowly. */
    s->backoff = now - s->started < 1 ? s->backoff * 2 : 0.1;
    if (s->backoff > 10)
        s->backoff = 10;
    s->restart_at = now + (now - s->started < 1 ? s->backoff : 0);
    log_warn("worker %d (pid %d) %s: restarting", i, (int)pid, how);
}

static void reap(master *m, double now)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        for (int i = 0; i < m->cfg.workers; i++)
            if (m->slots[i].pid == pid) {
                ended(m, i, status, now);
                break;
            }
}

/* Forks the workers whose restart is due; true if any worker runs. */
static bool restart_due(master *m, double now)
{
    bool any = false;
    for (int i = 0; i < m->cfg.workers; i++) {
        slot *s = &m->slots[i];
        if (!m->stopping && s->pid == 0 && s->restart_at && now >= s->restart_at) {
            s->restart_at = 0;
            s->started = now;
            s->pid = spawn(m, i);
            if (s->pid < 0)
                s->pid = 0, s->restart_at = now + 1;
            else
                log_info("worker %d restarted as pid %d", i, (int)s->pid);
        }
        any = any || s->pid > 0;
    }
    return any;
}

/* Watches the workers until they have all stopped; returns the exit code. */
static int supervise(master *m)
{
    for (;;) {
        struct timespec wait = {0, 100 * 1000 * 1000};
        siginfo_t si;
        int sig = sigtimedwait(&m->set, &si, &wait);
        double now = now_s();
        on_signal(m, sig, now);
        reap(m, now);
        bool any = restart_due(m, now);
        if (m->stopping && !any) {
            log_info("all workers stopped");
            return m->exit_code;
        }
        if (m->stopping && now > m->deadline) {
            log_warn("workers did not stop in time: killing them");
            for (int i = 0; i < m->cfg.workers; i++)
                if (m->slots[i].pid > 0)
                    kill(m->slots[i].pid, SIGKILL);
            m->deadline = now + 5;
        }
    }
}

int main(int argc, char **argv)
{
    master m;
    memset(&m, 0, sizeof m);
    block_signals(&m);
    int rc = config_parse(&m.cfg, argc, argv);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    log_setup(m.cfg.log_level, "master");
    if ((rc = check_start(&m)) != 0)
        return rc;
    /* Counters every worker writes to its own slot of and /metrics sums. */
    m.stats = mmap(NULL, sizeof(worker_stats) * (size_t)m.cfg.workers, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m.stats == MAP_FAILED) {
        log_error("mmap: %s", strerror(errno));
        return 1;
    }
    for (int i = 0; i < m.cfg.workers; i++) {
        m.slots[i].pid = spawn(&m, i);
        m.slots[i].started = now_s();
        m.slots[i].backoff = 0.1;
        if (m.slots[i].pid < 0)
            return 1;
    }
    log_info("started %d worker%s on port %d", m.cfg.workers, m.cfg.workers == 1 ? "" : "s", m.cfg.port);
    return supervise(&m);
}
