#include <arpa/inet.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsload.h"

static const char usage[] =
    "usage: wsload SCENARIO [options] URL\n"
    "\n"
    "Scenarios\n"
    "  fanout   S subscribers over C channels, P publishers at a total rate R; end-to-end\n"
    "           latency, and every message counted lost, duplicated or reordered\n"
    "  echo     N connections each sending R msgs/s to an echo endpoint: round-trip latency\n"
    "  connect  open N connections (as fast as possible or at R/s), hold them --hold seconds:\n"
    "           connect rate, handshake latency, failures, server memory (--server-pid)\n"
    "  churn    N connections closing and reconnecting at R/s in total (--storm: all at once\n"
    "           every --storm-every seconds): reconnect latency and errors\n"
    "\n"
    "Target\n"
    "  URL                    ws:// or wss://; {ch} in the path is replaced by the channel name\n"
    "  --proto P              wsfan (client protocol v1, default), echo (any echo server) or\n"
    "                         template (any pub/sub server, with the two templates below)\n"
    "  --sub-template T       template: text sent by each subscriber after connecting; {ch}\n"
    "  --pub-template T       template: text of each publish; {ts} {seq} {pub} {ch} {pad} {msg}\n"
    "  --pub-url URL          publish here instead of URL: ws(s):// or http(s):// (HTTP POST,\n"
    "                         body = the publish text, pipelined)\n"
    "\n"
    "Load (defaults: fanout 100 subscribers, 1 channel, 1 publisher, 1000 msgs/s)\n"
    "  --subscribers S  --channels C  --publishers P  --connections N (echo/connect/churn, 100)\n"
    "  --rate R|max           fanout: total msgs/s; echo: msgs/s per connection (10);\n"
    "                         connect: connections/s (max); churn: reconnects/s (100, or\n"
    "                         none with --storm)\n"
    "  --size M               payload bytes per message (64)\n"
    "  --duration SEC         sending time (10); --drain SEC: then wait for messages in\n"
    "                         flight, at most this long, ending early after 0.5 s of quiet (5)\n"
    "  --hold SEC             connect: how long the connections are held once open (5)\n"
    "  --storm  --storm-every SEC (5)\n"
    "  --handshake-timeout SEC (10)\n"
    "\n"
    "Generator\n"
    "  --workers W            processes (default: one per 15,000 connections)\n"
    "  --source-range A[-B]   bind connections to source addresses A..B (IPv4), in turn;\n"
    "                         repeatable. Needed beyond ~28,000 connections to one address\n"
    "  --max-connections N    refuse to open more than this many in total (200000)\n"
    "  --pipeline N           HTTP publish requests in flight per connection (8)\n"
    "  --server-pid PID       measure this process and its descendants' memory (repeatable)\n"
    "\n"
    "Output\n"
    "  --json FILE            every figure and the latency histogram\n"
    "  --plot FILE.svg        latency over time and the histogram\n"
    "  --quiet                no progress line\n";

int url_parse(url *u, const char *s, bool http_ok)
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

static int num(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int opts_parse(opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->subscribers = 100;
    o->channels = 1;
    o->publishers = 1;
    o->connections = 100;
    o->rate = -1;
    o->size = 64;
    o->duration = 10;
    o->drain = 5;
    o->hold = 5;
    o->handshake_timeout = 10;
    o->storm_every = 5;
    o->max_connections = 200000;
    o->pipeline = 8;

    enum { O_PROTO = 256, O_SUBT, O_PUBT, O_PUBURL, O_SUBS, O_CHANS, O_PUBS, O_CONNS, O_RATE, O_SIZE,
           O_DUR, O_DRAIN, O_HOLD, O_STORM, O_STORMEV, O_HST, O_WORKERS, O_SRC, O_MAXC, O_PIPE,
           O_PID, O_JSON, O_PLOT, O_QUIET, O_HELP };
    static const struct option lo[] = {
        {"proto", 1, 0, O_PROTO}, {"sub-template", 1, 0, O_SUBT}, {"pub-template", 1, 0, O_PUBT},
        {"pub-url", 1, 0, O_PUBURL}, {"subscribers", 1, 0, O_SUBS}, {"channels", 1, 0, O_CHANS},
        {"publishers", 1, 0, O_PUBS}, {"connections", 1, 0, O_CONNS}, {"rate", 1, 0, O_RATE},
        {"size", 1, 0, O_SIZE}, {"duration", 1, 0, O_DUR}, {"drain", 1, 0, O_DRAIN},
        {"hold", 1, 0, O_HOLD}, {"storm", 0, 0, O_STORM}, {"storm-every", 1, 0, O_STORMEV},
        {"handshake-timeout", 1, 0, O_HST}, {"workers", 1, 0, O_WORKERS},
        {"source-range", 1, 0, O_SRC}, {"max-connections", 1, 0, O_MAXC},
        {"pipeline", 1, 0, O_PIPE}, {"server-pid", 1, 0, O_PID}, {"json", 1, 0, O_JSON},
        {"plot", 1, 0, O_PLOT}, {"quiet", 0, 0, O_QUIET}, {"help", 0, 0, O_HELP}, {0, 0, 0, 0}};
    int ch;
    double v = 0;
    const char *pub_url = NULL;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        int bad = 0;
        switch (ch) {
        case 'h':
        case O_HELP:
            fputs(usage, stdout);
            return 1;
        case O_PROTO:
            if (strcmp(optarg, "wsfan") == 0)
                o->proto = PR_WSFAN;
            else if (strcmp(optarg, "echo") == 0)
                o->proto = PR_ECHO;
            else if (strcmp(optarg, "template") == 0)
                o->proto = PR_TEMPLATE;
            else
                bad = 1;
            break;
        case O_SUBT: o->sub_template = optarg; break;
        case O_PUBT: o->pub_template = optarg; break;
        case O_PUBURL: pub_url = optarg; break;
        case O_SUBS: bad = num(optarg, 0, 1e7, &v); o->subscribers = (int)v; break;
        case O_CHANS: bad = num(optarg, 1, MAX_CHANNELS, &v); o->channels = (int)v; break;
        case O_PUBS: bad = num(optarg, 1, MAX_PUBLISHERS, &v); o->publishers = (int)v; break;
        case O_CONNS: bad = num(optarg, 1, 1e7, &v); o->connections = (int)v; break;
        case O_RATE:
            if (strcmp(optarg, "max") == 0)
                o->rate = 0;
            else
                bad = num(optarg, 0.001, 1e9, &o->rate);
            break;
        case O_SIZE: bad = num(optarg, 0, 1 << 19, &v); o->size = (int)v; break;
        case O_DUR: bad = num(optarg, 0.1, 86400, &o->duration); break;
        case O_DRAIN: bad = num(optarg, 0, 3600, &o->drain); break;
        case O_HOLD: bad = num(optarg, 0, 86400, &o->hold); break;
        case O_STORM: o->storm = true; break;
        case O_STORMEV: bad = num(optarg, 0.1, 3600, &o->storm_every); break;
        case O_HST: bad = num(optarg, 0.1, 600, &o->handshake_timeout); break;
        case O_WORKERS: bad = num(optarg, 1, MAX_WORKERS, &v); o->workers = (int)v; break;
        case O_SRC: bad = add_sources(o, optarg); break;
        case O_MAXC: bad = num(optarg, 1, 1e8, &v); o->max_connections = (int)v; break;
        case O_PIPE: bad = num(optarg, 1, 1024, &v); o->pipeline = (int)v; break;
        case O_PID:
            bad = num(optarg, 1, 1 << 30, &v) || o->npids == MAX_PIDS;
            if (!bad)
                o->server_pids[o->npids++] = (int)v;
            break;
        case O_JSON: o->json_path = optarg; break;
        case O_PLOT: o->plot_path = optarg; break;
        case O_QUIET: o->quiet = true; break;
        default:
            fprintf(stderr, "wsload: see --help\n");
            return -1;
        }
        if (bad) {
            fprintf(stderr, "wsload: bad value for --%s: '%s'\n", lo[ch - 256].name, optarg);
            return -1;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "wsload: need SCENARIO and URL; see --help\n");
        return -1;
    }
    const char *sc = argv[optind];
    if (strcmp(sc, "fanout") == 0)
        o->scenario = SC_FANOUT;
    else if (strcmp(sc, "echo") == 0)
        o->scenario = SC_ECHO;
    else if (strcmp(sc, "connect") == 0)
        o->scenario = SC_CONNECT;
    else if (strcmp(sc, "churn") == 0)
        o->scenario = SC_CHURN;
    else {
        fprintf(stderr, "wsload: unknown scenario '%s'\n", sc);
        return -1;
    }
    if (url_parse(&o->target, argv[optind + 1], false) < 0) {
        fprintf(stderr, "wsload: bad or unresolvable URL '%s' (ws:// or wss://)\n", argv[optind + 1]);
        return -1;
    }
    if (pub_url) {
        if (url_parse(&o->pub_url, pub_url, true) < 0) {
            fprintf(stderr, "wsload: bad --pub-url '%s'\n", pub_url);
            return -1;
        }
        o->has_pub_url = true;
    }
    if (o->rate < 0) /* --storm alone: only the storms, no steady churn */
        o->rate = o->scenario == SC_FANOUT ? 1000 : o->scenario == SC_ECHO ? 10
                : o->scenario == SC_CHURN && !o->storm ? 100 : 0;
    if (o->scenario == SC_CHURN && o->rate == 0 && !o->storm) {
        fprintf(stderr, "wsload: churn needs a --rate (or --storm)\n");
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
    if (o->scenario == SC_FANOUT && (double)o->publishers * o->channels > 1e7) {
        fprintf(stderr, "wsload: publishers x channels must stay under 10 million\n");
        return -1;
    }
    long total = o->scenario == SC_FANOUT ? (long)o->subscribers + o->publishers : o->connections;
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
