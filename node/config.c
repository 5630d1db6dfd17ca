#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define WSNODE_VERSION "0.1.0"

enum kind { K_FLAG, K_INT, K_SIZE, K_SECONDS, K_STRING, K_POLICY, K_ORIGIN, K_LEVEL };

typedef struct option_def {
    const char *name;
    enum kind kind;
    size_t off;
    const char *arg;
    const char *def; /* default, as text: parsed at startup so help and behaviour agree */
    const char *help;
} option_def;

#define O(f) offsetof(config, f)

static const option_def defs[] = {
    {"bind", K_STRING, O(bind), "ADDR", "0.0.0.0", "address to listen on"},
    {"port", K_INT, O(port), "N", "8080", "TCP port (every worker binds it with SO_REUSEPORT)"},
    {"workers", K_INT, O(workers), "K", NULL,
     "worker processes (default: 1, or the CPU count with --redis); more than 1 needs --redis, "
     "since workers without a bus would split channels between them"},
    {"echo", K_FLAG, O(echo), NULL, NULL, "serve /echo: every message echoed back"},
    {"echo-max-message", K_SIZE, O(echo_max_message), "SIZE", "16m",
     "largest message on /echo (close 1009 above)"},
    {"max-message", K_SIZE, O(max_message), "SIZE", "64k",
     "largest message on /ws, over all its fragments (close 1009 above)"},
    {"max-data", K_SIZE, O(max_data), "SIZE", "32k",
     "largest data value of a pub (err too_large above)"},
    {"max-subs", K_INT, O(max_subs), "N", "256", "channels one connection may subscribe"},
    {"max-header-size", K_SIZE, O(max_header_size), "SIZE", "8k",
     "largest HTTP request head (431 above)"},
    {"max-headers", K_INT, O(max_headers), "N", "64", "most HTTP header lines (431 above)"},
    {"handshake-timeout", K_SECONDS, O(handshake_timeout), "SEC", "5",
     "time for TLS and HTTP upgrade before the connection is dropped"},
    {"ping-interval", K_SECONDS, O(ping_interval), "SEC", "30",
     "silence from a client before the server pings it"},
    {"idle-timeout", K_SECONDS, O(idle_timeout), "SEC", "10",
     "silence after a ping before the connection is dropped"},
    {"close-timeout", K_SECONDS, O(close_timeout), "SEC", "3",
     "wait for the client's close frame before dropping TCP"},
    {"drain-timeout", K_SECONDS, O(drain_timeout), "SEC", "10",
     "on SIGTERM/SIGINT: time for clients to close after 1001 before workers exit"},
    {"outbuf-soft", K_SIZE, O(outbuf_soft), "SIZE", "1m",
     "queued bytes per connection above which it is a slow consumer"},
    {"outbuf-hard", K_SIZE, O(outbuf_hard), "SIZE", "8m",
     "queued bytes per connection that close it at once (any policy)"},
    {"outbuf-soft-seconds", K_SECONDS, O(outbuf_soft_seconds), "SEC", "5",
     "time above the soft limit before a slow consumer is closed (policy close)"},
    {"slow-policy", K_POLICY, O(slow_policy), "close|drop", "close",
     "slow consumer: close it with 1008, or drop its messages and count them"},
    {"tls-cert", K_STRING, O(tls_cert), "FILE", NULL, "PEM certificate chain: serve wss://"},
    {"tls-key", K_STRING, O(tls_key), "FILE", NULL, "PEM private key for --tls-cert"},
    {"origin", K_ORIGIN, 0, "ORIGIN", NULL,
     "allow browsers from this Origin only (repeatable; none: any). Clients that send no "
     "Origin are not browsers and are allowed"},
    {"max-connections", K_INT, O(max_connections), "N", "0",
     "connections per worker (0: as many as file descriptors allow)"},
    {"node-id", K_STRING, O(node_id), "PREFIX", NULL,
     "node id prefix; workers are PREFIX.wK.<random> (default: hostname-port)"},
    {"redis", K_STRING, O(redis), "HOST:PORT", NULL,
     "Redis for the cluster bus (or a unix socket path): every worker and node on it is one "
     "pub/sub system"},
    {"redis-password", K_STRING, O(redis_password), "PASSWORD", NULL, "Redis AUTH password"},
    {"redis-prefix", K_STRING, O(redis_prefix), "PREFIX", "wsfan:",
     "prefix of every Redis key and channel, so several clusters can share one Redis"},
    {"publish-key", K_STRING, O(publish_key), "KEY", NULL,
     "enable POST /publish/<channel> for backends, authorized by Authorization: Bearer KEY"},
    {"log-level", K_LEVEL, O(log_level), "LEVEL", "info", "debug, info, warn or error"},
};

#define NDEFS (sizeof defs / sizeof defs[0])

static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-')
        return -1;
    unsigned long long mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1024 * 1024, end++;
    else if (*end == 'g' || *end == 'G')
        mul = 1024ull * 1024 * 1024, end++;
    if (*end || v > SIZE_MAX / mul)
        return -1;
    *out = (size_t)(v * mul);
    return 0;
}

static int set(config *c, const option_def *d, const char *v)
{
    char *p = (char *)c + d->off;
    char *end;
    switch (d->kind) {
    case K_FLAG:
        *(bool *)p = true;
        return 0;
    case K_INT: {
        errno = 0;
        long n = strtol(v, &end, 10);
        if (errno || end == v || *end || n < 0 || n > INT_MAX)
            return -1;
        *(int *)p = (int)n;
        return 0;
    }
    case K_SIZE:
        return parse_size(v, (size_t *)p);
    case K_SECONDS: {
        double x = strtod(v, &end);
        if (end == v || *end || !isfinite(x) || x <= 0 || x > 86400 * 365)
            return -1;
        *(double *)p = x;
        return 0;
    }
    case K_STRING:
        *(const char **)p = v;
        return 0;
    case K_POLICY:
        if (strcmp(v, "close") == 0)
            c->slow_policy = SLOW_CLOSE;
        else if (strcmp(v, "drop") == 0)
            c->slow_policy = SLOW_DROP;
        else
            return -1;
        return 0;
    case K_ORIGIN:
        if (c->norigins == CONFIG_MAX_ORIGINS)
            return -1;
        c->origins[c->norigins++] = v;
        return 0;
    case K_LEVEL:
        c->log_level = log_level_parse(v);
        return c->log_level < 0 ? -1 : 0;
    }
    return -1;
}

void config_usage(void *fp)
{
    FILE *f = fp;
    fprintf(f, "usage: wsnode [options]\n\nA wsfan WebSocket node: /ws (client protocol v1), "
               "/echo, /healthz on one port.\nSIZE takes k, m or g suffixes (KiB, MiB, GiB); "
               "SEC takes fractions.\n\n");
    for (size_t i = 0; i < NDEFS; i++) {
        char lhs[64];
        snprintf(lhs, sizeof lhs, "--%s%s%s", defs[i].name, defs[i].arg ? " " : "",
                 defs[i].arg ? defs[i].arg : "");
        fprintf(f, "  %-28s %s", lhs, defs[i].help);
        if (defs[i].def)
            fprintf(f, " (default %s)", defs[i].def);
        fprintf(f, "\n");
    }
    fprintf(f, "  %-28s %s\n  %-28s %s\n", "--help", "print this and exit", "--version",
            "print the version and exit");
}

int config_parse(config *c, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NDEFS; i++)
        if (defs[i].def && set(c, &defs[i], defs[i].def) < 0)
            abort(); /* a default in the table does not parse: a programming error */

    struct option longopts[NDEFS + 3];
    for (size_t i = 0; i < NDEFS; i++)
        longopts[i] = (struct option){defs[i].name, defs[i].arg ? required_argument : no_argument,
                                      NULL, (int)(256 + i)};
    longopts[NDEFS] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[NDEFS + 1] = (struct option){"version", no_argument, NULL, 'V'};
    longopts[NDEFS + 2] = (struct option){0, 0, 0, 0};

    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
        if (ch == 'h') {
            config_usage(stdout);
            return 1;
        }
        if (ch == 'V') {
            printf("wsnode %s\n", WSNODE_VERSION);
            return 1;
        }
        if (ch < 256 || ch >= 256 + (int)NDEFS) {
            fprintf(stderr, "wsnode: see --help\n");
            return -1;
        }
        const option_def *d = &defs[ch - 256];
        if (set(c, d, optarg) < 0) {
            fprintf(stderr, "wsnode: bad value for --%s: '%s'\n", d->name, optarg);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "wsnode: unexpected argument '%s'; see --help\n", argv[optind]);
        return -1;
    }
    if (c->port < 1 || c->port > 65535) {
        fprintf(stderr, "wsnode: --port must be 1-65535\n");
        return -1;
    }
    if (c->workers == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = c->redis && cpus > 0 ? (int)cpus : 1;
    }
    if (c->workers > 1 && !c->redis) {
        fprintf(stderr, "wsnode: --workers %d needs --redis: without the bus, workers would split "
                        "channels between them and subscribers on one worker would miss messages "
                        "published on another. Give --redis HOST:PORT, or run --workers 1.\n",
                c->workers);
        return -1;
    }
    if (!c->tls_cert != !c->tls_key) {
        fprintf(stderr, "wsnode: --tls-cert and --tls-key go together\n");
        return -1;
    }
    if (c->outbuf_soft > c->outbuf_hard) {
        fprintf(stderr, "wsnode: --outbuf-soft must not exceed --outbuf-hard\n");
        return -1;
    }
    if (c->max_headers < 1 || c->max_headers > 128 || c->max_header_size < 64) {
        fprintf(stderr, "wsnode: --max-headers must be 1-128 and --max-header-size at least 64\n");
        return -1;
    }
    if (c->max_subs < 1 || c->max_subs > 65535) {
        fprintf(stderr, "wsnode: --max-subs must be 1-65535\n");
        return -1;
    }
    if (c->echo_max_message > (size_t)1 << 31 || c->max_message > (size_t)1 << 31) {
        fprintf(stderr, "wsnode: message limits must be at most 2g\n");
        return -1;
    }
    return 0;
}
