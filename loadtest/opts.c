#include <arpa/inet.h>
#include <math.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "wsload.h"

#define O(f) offsetof(opts, f)

static const char ABOUT[] =
    "Load generator for WebSocket servers: wsfan's client protocol v1, any echo server, or any\n"
    "pub/sub server through two templates. URL is ws:// or wss://; {ch} in its path is replaced\n"
    "by the channel name.\n"
    "\n"
    "Scenarios\n"
    "  fanout   S subscribers over C channels, P publishers at a total rate R; end-to-end\n"
    "           latency, and every message counted lost, duplicated or reordered\n"
    "  echo     N connections each sending R msgs/s to an echo endpoint: round-trip latency\n"
    "  connect  open N connections (as fast as possible or at R/s), hold them --hold seconds:\n"
    "           connect rate, handshake latency, failures, server memory (--server-pid)\n"
    "  churn    N connections closing and reconnecting at R/s in total (--storm: all at once\n"
    "           every --storm-every seconds): reconnect latency and errors\n"
    "  reconnect fanout whose subscribers all close and resume with since every\n"
    "           --reconnect-every seconds (--proto wsfan): recovery time, recovered or not,\n"
    "           and each channel's seqs checked once and in order across the resumes\n";

/* The index of v in the NULL-terminated names, -1 if it is none of them. */
static int name_index(const char *const *names, const char *v)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(v, names[i]) == 0)
            return i;
    return -1;
}

static int parse_custom(void *base, const cli_def *d, const char *v);

static const cli_def DEFS[] = {
    /* Target */
    {"proto", CLI_CUSTOM, O(proto), "P", "wsfan",
     "wsfan (client protocol v1), echo (any echo server) or template (any pub/sub server, with "
     "the two templates below)"},
    {"transport", CLI_CUSTOM, O(transport), "T", "ws",
     "how subscribers (and connect's connections) listen: ws, sse (a Server-Sent Events "
     "stream, URL http://.../sse/{ch}), poll (long-polls, URL http://.../poll?ch={ch}) or "
     "interval (a plain poll every --poll-every seconds, answered at once: the same URL) or "
     "etag-poll (Nchan's long-poll: one message an answer, Etag and Last-Modified)"},
    {"poll-every", CLI_SECONDS, O(poll_every), "SEC", "1", "--transport interval: seconds between polls"},
    {"sub-template", CLI_STRING, O(sub_template), "T", NULL,
     "template: text sent by each subscriber after connecting; {ch}"},
    {"pub-template", CLI_STRING, O(pub_template), "T", NULL,
     "template: text of each publish; {ts} {seq} {pub} {ch} {pad} {msg}"},
    {"pub-url", CLI_STRING, O(pub_url_arg), "URL", NULL,
     "publish here instead of URL: ws(s):// or http(s):// (HTTP POST, body = the publish text, "
     "pipelined)"},
    /* Load */
    {"subscribers", CLI_INT, O(subscribers), "S", "100", "fanout: subscribing connections"},
    {"channels", CLI_INT, O(channels), "C", "1", "fanout: channels, subscribers spread evenly"},
    {"publishers", CLI_INT, O(publishers), "P", "1", "fanout: publishing connections"},
    {"connections", CLI_INT, O(connections), "N", "100", "echo, connect, churn: connections"},
    {"rate", CLI_CUSTOM, O(rate), "R|max", NULL,
     "fanout: total msgs/s (1000); echo: msgs/s per connection (10); connect: connections/s "
     "(max); churn: reconnects/s (100, or none with --storm)"},
    {"size", CLI_INT, O(size), "M", "64", "payload bytes per message"},
    {"duration", CLI_SECONDS, O(duration), "SEC", "10", "sending time"},
    {"drain", CLI_SECONDS, O(drain), "SEC", "5",
     "then wait for messages in flight, at most this long, ending early after 0.5 s of quiet"},
    {"hold", CLI_SECONDS, O(hold), "SEC", "5",
     "connect: how long the connections are held once open"},
    {"storm", CLI_FLAG, O(storm), NULL, NULL, "churn: close and reopen all at once"},
    {"storm-every", CLI_SECONDS, O(storm_every), "SEC", "5", "churn --storm: how often"},
    {"reconnect-every", CLI_SECONDS, O(reconnect_every), "SEC", "2",
     "reconnect: every subscriber closes and resumes this often (0: never by itself; only "
     "those the server dropped resume, at once)"},
    {"failover-url", CLI_STRING, O(failover_arg), "URL", NULL,
     "reconnect: subscribers the server dropped (a node killed or drained) resume here"},
    {"reconnect-delay", CLI_SECONDS, O(reconnect_delay), "SEC", "0",
     "reconnect: time offline between the close and the reconnect (messages to recover)"},
    {"handshake-timeout", CLI_SECONDS, O(handshake_timeout), "SEC", "10",
     "time for TCP, TLS and the upgrade (and a subscriber's ack)"},
    /* Generator */
    {"workers", CLI_INT, O(workers), "W", NULL, "processes (default: one per 15,000 connections)"},
    {"source-range", CLI_CUSTOM, 0, "A[-B]",  NULL,
     "bind connections to source addresses A..B (IPv4), in turn; repeatable. Needed beyond "
     "~28,000 connections to one address"},
    {"max-connections", CLI_INT, O(max_connections), "N", "200000",
     "refuse to open more than this many in total"},
    {"pipeline", CLI_INT, O(pipeline), "N", "8", "HTTP publish requests in flight per connection"},
    {"server-pid", CLI_CUSTOM, 0, "PID", NULL,
     "measure this process and its descendants' memory (repeatable)"},
    /* Output */
    {"json", CLI_STRING, O(json_path), "FILE", NULL, "every figure and the latency histogram"},
    {"plot", CLI_STRING, O(plot_path), "FILE.svg", NULL, "latency over time and the histogram"},
    {"quiet", CLI_FLAG, O(quiet), NULL, NULL, "no progress line"},
};

static const cli_range RANGES[] = {
    {"subscribers", 0, 1e7},        {"channels", 1, MAX_CHANNELS},
    {"publishers", 1, MAX_PUBLISHERS}, {"connections", 1, 1e7},
    {"size", 0, 1 << 19},           {"duration", 0.1, 86400},
    {"drain", 0, 3600},             {"hold", 0, 86400},
    {"storm-every", 0.1, 3600},     {"reconnect-every", 0, 3600},
    {"reconnect-delay", 0, 600},     {"handshake-timeout", 0.1, 600},
    {"workers", 1, MAX_WORKERS},    {"max-connections", 1, 1e8},
    {"pipeline", 1, 1024},
};

static const cli_prog PROG = {
    .name = "wsload",
    .version = "0.1.0",
    .about = ABOUT,
    .defs = DEFS,
    .ndefs = sizeof DEFS / sizeof DEFS[0],
    .custom = parse_custom,
    .ranges = RANGES,
    .nranges = sizeof RANGES / sizeof RANGES[0],
    .args = "SCENARIO URL",
    .nargs = 2,
    .args_off = O(args),
};

size_t opts_expand_ch(char *out, size_t cap, const char *tpl, uint32_t ch)
{
    size_t n = 0;
    for (const char *p = tpl; *p && n + 16 < cap; p++) {
        if (strncmp(p, "{ch}", 4) == 0) {
            n += (size_t)snprintf(out + n, cap - n, "ch.%u", ch);
            p += 3;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    return n;
}

int opts_url(url *u, const char *s, bool http_ok)
{
    memset(u, 0, sizeof *u);
    const char *rest;
    if (strncmp(s, "ws://", 5) == 0)
        rest = s + 5;
    else if (strncmp(s, "wss://", 6) == 0)
        rest = s + 6, u->tls = true;
    else if (http_ok && strncmp(s, "http://", 7) == 0)
        rest = s + 7, u->http = true;
    else if (http_ok && strncmp(s, "https://", 8) == 0)
        rest = s + 8, u->http = u->tls = true;
    else
        return -1;
    u->port = u->tls ? 443 : 80;
    const char *slash = strchr(rest, '/');
    size_t hl = slash ? (size_t)(slash - rest) : strlen(rest);
    if (hl == 0 || hl >= sizeof u->host)
        return -1;
    memcpy(u->host, rest, hl);
    char *colon = u->host[0] == '[' ? strstr(u->host, "]:") : strrchr(u->host, ':');
    if (colon) {
        if (*colon == ']')
            colon++;
        u->port = atoi(colon + 1);
        *colon = '\0';
    }
    if (u->host[0] == '[') {
        memmove(u->host, u->host + 1, strlen(u->host));
        u->host[strcspn(u->host, "]")] = '\0';
    }
    snprintf(u->path, sizeof u->path, "%s", slash ? slash : "/");
    if (u->port <= 0 || u->port > 65535)
        return -1;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    char port[8];
    snprintf(port, sizeof port, "%d", u->port);
    if (getaddrinfo(u->host, port, &hints, &res) != 0)
        return -1;
    memcpy(&u->addr, res->ai_addr, res->ai_addrlen);
    u->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int add_sources(opts *o, const char *arg)
{
    char a[64], b[64];
    const char *dash = strchr(arg, '-');
    snprintf(a, sizeof a, "%.*s", dash ? (int)(dash - arg) : (int)strlen(arg), arg);
    snprintf(b, sizeof b, "%s", dash ? dash + 1 : a);
    struct in_addr lo, hi;
    if (inet_pton(AF_INET, a, &lo) != 1 || inet_pton(AF_INET, b, &hi) != 1)
        return -1;
    for (uint32_t x = ntohl(lo.s_addr); x <= ntohl(hi.s_addr); x++) {
        if (o->nsources == MAX_SOURCES)
            return -1;
        struct sockaddr_in *s = &o->sources[o->nsources++];
        memset(s, 0, sizeof *s);
        s->sin_family = AF_INET;
        s->sin_addr.s_addr = htonl(x);
    }
    return 0;
}

/* A number in [lo, hi], fractions and exponents allowed; 0 or -1. */
static int num(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_custom(void *base, const cli_def *d, const char *v)
{
    opts *o = base;
    double x;
    if (strcmp(d->name, "transport") == 0) {
        static const char *const names[] = {"ws", "sse", "poll", "interval", "etag-poll", NULL};
        int i = name_index(names, v);
        o->transport = (enum transport)(i < 0 ? 0 : i);
        return i < 0 ? -1 : 0;
    }
    if (strcmp(d->name, "proto") == 0) {
        static const char *const names[] = {"wsfan", "echo", "template", NULL}; /* enum proto */
        int i = name_index(names, v);
        o->proto = (enum proto)(i < 0 ? 0 : i);
        return i < 0 ? -1 : 0;
    }
    if (strcmp(d->name, "rate") == 0) {
        if (strcmp(v, "max") == 0) {
            o->rate = 0;
            return 0;
        }
        return num(v, 0.001, 1e9, &o->rate);
    }
    if (strcmp(d->name, "source-range") == 0)
        return add_sources(o, v);
    if (strcmp(d->name, "server-pid") == 0) {
        if (num(v, 1, 1 << 30, &x) < 0 || o->npids == MAX_PIDS)
            return -1;
        o->server_pids[o->npids++] = (int)x;
        return 0;
    }
    return CLI_UNKNOWN;
}

/* The scenario, the URLs, and the defaults that depend on the scenario; 0 or -1. */
static int resolve(opts *o)
{
    static const char *const names[] = {"fanout", "echo", "connect", "churn", "reconnect"};
    int sc = 0; /* enum scenario */
    while (sc < 5 && strcmp(o->args[0], names[sc]) != 0)
        sc++;
    if (sc == 5) {
        fprintf(stderr, "wsload: unknown scenario '%s'\n", o->args[0]);
        return -1;
    }
    o->scenario = (enum scenario)sc;
    bool stream = o->transport != TR_WS;
    if (opts_url(&o->target, o->args[1], stream) < 0 || stream != o->target.http) {
        fprintf(stderr, "wsload: bad or unresolvable URL '%s' (%s)\n", o->args[1],
                stream ? "http:// or https:// for --transport sse or poll" : "ws:// or wss://");
        return -1;
    }
    if (o->pub_url_arg) {
        if (opts_url(&o->pub_url, o->pub_url_arg, true) < 0) {
            fprintf(stderr, "wsload: bad --pub-url '%s'\n", o->pub_url_arg);
            return -1;
        }
        o->has_pub_url = true;
    }
    if (o->failover_arg) {
        if (opts_url(&o->failover, o->failover_arg, false) < 0) {
            fprintf(stderr, "wsload: bad or unresolvable --failover-url '%s'\n", o->failover_arg);
            return -1;
        }
        o->has_failover = true;
    }
    if (o->rate < 0) /* --storm alone: only the storms, no steady churn */
        o->rate = SC_HAS_CHANNELS(o->scenario) ? 1000 : o->scenario == SC_ECHO ? 10
                : o->scenario == SC_CHURN && !o->storm ? 100 : 0;
    return 0;
}

/* The combinations the flags alone cannot refuse; 0 or -1. */
static int check(opts *o)
{
    if (o->scenario == SC_CHURN && o->rate == 0 && !o->storm) {
        fprintf(stderr, "wsload: churn needs a --rate (or --storm)\n");
        return -1;
    }
    if (o->transport != TR_WS && ((o->scenario != SC_FANOUT && o->scenario != SC_CONNECT) ||
                                  (o->scenario == SC_FANOUT && !o->has_pub_url))) {
        fprintf(stderr, "wsload: --transport sse or poll is for fanout (with a --pub-url for "
                        "the publishers) and connect\n");
        return -1;
    }
    if ((o->has_failover || o->reconnect_every == 0) && o->scenario != SC_RECONNECT) {
        fprintf(stderr, "wsload: --failover-url and --reconnect-every 0 are for reconnect\n");
        return -1;
    }
    if (o->scenario == SC_RECONNECT && (o->proto != PR_WSFAN || (o->has_pub_url && o->pub_url.http))) {
        fprintf(stderr, "wsload: reconnect resumes with wsfan's since and epoch: it needs --proto "
                        "wsfan (and a ws:// --pub-url)\n");
        return -1;
    }
    if (o->proto == PR_TEMPLATE && o->scenario == SC_ECHO && !o->pub_template) {
        fprintf(stderr, "wsload: echo with --proto template needs --pub-template\n");
        return -1;
    }
    if (o->proto == PR_TEMPLATE && o->scenario == SC_FANOUT &&
        (!o->pub_template || (!strstr(o->pub_template, "{msg}") &&
                              (!strstr(o->pub_template, "{ts}") || !strstr(o->pub_template, "{seq}"))))) {
        fprintf(stderr, "wsload: --proto template needs --pub-template with {ts} and {seq} (or {msg})\n");
        return -1;
    }
    if (SC_HAS_CHANNELS(o->scenario) && (double)o->publishers * o->channels > 1e7) {
        fprintf(stderr, "wsload: publishers x channels must stay under 10 million\n");
        return -1;
    }
    return 0;
}

/* Connections in total, the workers for them (one per 15,000 unless given); 0 or -1. */
static int size_workers(opts *o)
{
    long total = SC_HAS_CHANNELS(o->scenario) ? (long)o->subscribers + o->publishers : o->connections;
    if (total > o->max_connections) {
        fprintf(stderr, "wsload: %ld connections is over --max-connections %d\n", total, o->max_connections);
        return -1;
    }
    if (!o->workers) {
        o->workers = (int)((total + 14999) / 15000);
        if (o->workers < 1)
            o->workers = 1;
        if (o->workers > MAX_WORKERS)
            o->workers = MAX_WORKERS;
    }
    if (total / o->workers > 19000) {
        fprintf(stderr, "wsload: %ld connections need more than %d workers (a process may hold "
                        "about 19,000 here)\n", total, o->workers);
        return -1;
    }
    return 0;
}

int opts_parse(opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->rate = -1; /* not given: the scenario's default */
    int rc = cli_parse(&PROG, o, argc, argv);
    if (rc != 0)
        return rc;
    if (resolve(o) < 0 || check(o) < 0 || size_workers(o) < 0)
        return -1;
    return 0;
}
