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
#include "worker.h"

#define MAX_WORKERS 256

typedef struct slot {
    pid_t pid;         /* 0: not running */
    double started;    /* when it was last forked */
    double restart_at; /* when to fork it again (0: not scheduled) */
    double backoff;
} slot;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static worker_stats *shared_stats;

static pid_t spawn(const config *cfg, int index, const sigset_t *old)
{
    pid_t master = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* SIGHUP kills by default: a reload forwarded before the worker's own watcher is up
         * must not take the new worker down (its watcher replaces this). */
        signal(SIGHUP, SIG_IGN);
        /* A worker never outlives its master: if the master dies (kill -9, OOM killer), the
         * kernel sends this worker SIGTERM and it drains and exits, so no orphan keeps
         * listening on the port where no later master can see or stop it. The master may
         * have died before prctl took effect: then the parent is already someone else. */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != master)
            _exit(1);
        sigprocmask(SIG_SETMASK, old, NULL);
        exit(worker_run(cfg, index, shared_stats)); /* exit, not _exit: LeakSanitizer checks workers */
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

int main(int argc, char **argv)
{
    /* Signals are taken synchronously from the very start: a SIGHUP (a reload hook) or a
     * SIGTERM that comes while the configuration is still being checked must not kill. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, &old);

    config cfg;
    int rc = config_parse(&cfg, argc, argv);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    log_setup(cfg.log_level, "master");
    if (cfg.workers > MAX_WORKERS) {
        log_error("--workers is at most %d", MAX_WORKERS);
        return 2;
    }
    static char node_prefix[16];
    if (!cfg.node_id) { /* public in every client id: random, not the host name */
        unsigned char rnd[4];
        if (RAND_bytes(rnd, sizeof rnd) != 1) {
            log_error("no randomness for the node id");
            return 1;
        }
        snprintf(node_prefix, sizeof node_prefix, "n%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
        cfg.node_id = node_prefix;
    }
    char host[256] = "?";
    gethostname(host, sizeof host - 1);
    log_info("node %s on host %s, port %d", cfg.node_id, host, cfg.port);
    if (!cfg.share_port && worker_port_in_use(&cfg))
        return 2;
    if (cfg.tls_cert) { /* fail here, once, rather than in every worker */
        char err[512];
        SSL_CTX *ctx = tls_server_ctx(cfg.tls_cert, cfg.tls_key, err, sizeof err);
        if (!ctx) {
            log_error("TLS: %s", err);
            return 2;
        }
        SSL_CTX_free(ctx);
    }
    if (cfg.static_dir) { /* the same: a bad --static folder stops the start */
        char err[512];
        files *f = files_load(cfg.static_dir, err, sizeof err);
        if (!f) {
            log_error("--static: %s", err);
            return 2;
        }
        log_info("--static: %zu files from %s", files_count(f), cfg.static_dir);
        files_free(f);
    }
    if (cfg.auth != AUTH_OFF) { /* an unreadable key stops the start, not every worker */
        char err[512];
        auth *a = auth_new(&cfg, err, sizeof err);
        if (!a) {
            log_error("--auth: %s", err);
            return 2;
        }
        auth_free(a);
        for (int i = 0; i < cfg.nanon_sub + cfg.nanon_pub; i++) {
            bool sub = i < cfg.nanon_sub;
            const char *pat = sub ? cfg.anon_sub[i] : cfg.anon_pub[i - cfg.nanon_sub];
            if (auth_pattern_wide((ws_span){pat, strlen(pat)}))
                log_warn("--anonymous-%s '%s' matches every channel whose name merely begins "
                         "with '%.*s'; end a prefix with '.', ':' or '-' (as in '%.*s.*') unless "
                         "that is meant", sub ? "sub" : "pub", pat, (int)strlen(pat) - 1, pat,
                         (int)strlen(pat) - 1, pat);
        }
    }

    /* Counters every worker writes to its own slot of and /metrics sums. */
    shared_stats = mmap(NULL, sizeof(worker_stats) * (size_t)cfg.workers, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared_stats == MAP_FAILED) {
        log_error("mmap: %s", strerror(errno));
        return 1;
    }

    static slot slots[MAX_WORKERS];
    for (int i = 0; i < cfg.workers; i++) {
        slots[i].pid = spawn(&cfg, i, &old);
        slots[i].started = now_s();
        slots[i].backoff = 0.1;
        if (slots[i].pid < 0)
            return 1;
    }
    log_info("started %d worker%s on port %d", cfg.workers, cfg.workers == 1 ? "" : "s", cfg.port);

    bool stopping = false;
    double deadline = 0;
    int exit_code = 0;
    for (;;) {
        struct timespec wait = {0, 100 * 1000 * 1000};
        siginfo_t si;
        int sig = sigtimedwait(&set, &si, &wait);
        double now = now_s();

        if ((sig == SIGTERM || sig == SIGINT) && !stopping) {
            stopping = true;
            deadline = now + cfg.drain_timeout + 2;
            log_info("%s: draining workers", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            for (int i = 0; i < cfg.workers; i++)
                if (slots[i].pid > 0)
                    kill(slots[i].pid, SIGTERM);
        }
        if (sig == SIGHUP) { /* each worker reloads the TLS certificate (or ignores it) */
            int n = 0;
            for (int i = 0; i < cfg.workers; i++)
                if (slots[i].pid > 0 && kill(slots[i].pid, SIGHUP) == 0)
                    n++;
            log_info("SIGHUP: %s, forwarded to %d worker%s",
                     cfg.tls_cert ? "reloading the TLS certificate" : "no TLS, nothing to reload",
                     n, n == 1 ? "" : "s");
        }

        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (int i = 0; i < cfg.workers; i++) {
                if (slots[i].pid != pid)
                    continue;
                slots[i].pid = 0;
                shared_stats[i].overloaded = 0; /* its clients are gone with it */
                char how[64];
                describe(status, how, sizeof how);
                if (stopping) {
                    log_info("worker %d %s", i, how);
                    break;
                }
                if (WIFEXITED(status) && WEXITSTATUS(status) == 2 && now - slots[i].started < 2) {
                    log_error("worker %d could not start (%s): stopping", i, how);
                    exit_code = 1;
                    stopping = true;
                    deadline = now + cfg.drain_timeout + 2;
                    for (int j = 0; j < cfg.workers; j++)
                        if (slots[j].pid > 0)
                            kill(slots[j].pid, SIGTERM);
                    break;
                }
                /* A worker that dies right after starting is restarted ever more slowly. */
                slots[i].backoff = now - slots[i].started < 1 ? slots[i].backoff * 2 : 0.1;
                if (slots[i].backoff > 10)
                    slots[i].backoff = 10;
                slots[i].restart_at = now + (now - slots[i].started < 1 ? slots[i].backoff : 0);
                log_warn("worker %d (pid %d) %s: restarting", i, (int)pid, how);
                break;
            }
        }

        bool any = false;
        for (int i = 0; i < cfg.workers; i++) {
            if (!stopping && slots[i].pid == 0 && slots[i].restart_at && now >= slots[i].restart_at) {
                slots[i].restart_at = 0;
                slots[i].started = now;
                slots[i].pid = spawn(&cfg, i, &old);
                if (slots[i].pid < 0)
                    slots[i].pid = 0, slots[i].restart_at = now + 1;
                else
                    log_info("worker %d restarted as pid %d", i, (int)slots[i].pid);
            }
            any = any || slots[i].pid > 0;
        }
        if (stopping && !any) {
            log_info("all workers stopped");
            return exit_code;
        }
        if (stopping && now > deadline) {
            log_warn("workers did not stop in time: killing them");
            for (int i = 0; i < cfg.workers; i++)
                if (slots[i].pid > 0)
                    kill(slots[i].pid, SIGKILL);
            deadline = now + 5;
        }
    }
}
