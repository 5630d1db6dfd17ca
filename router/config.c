#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define O(f) offsetof(rconfig, f)

static const cli_def defs[] = {
    RLINK_CLI_DEFS(O(redis), "127.0.0.1:6379", "Redis the nodes use (or a unix socket path)"),
    {"shard", CLI_CUSTOM, 0, "i/N", "0/1",
     "own the channels whose hash falls in shard i of N (the nodes' --router-shards N)"},
    {"bind", CLI_STRING, O(bind), "ADDR", "127.0.0.1", "address of /healthz and /metrics"},
    {"port", CLI_INT, O(port), "N", "8090", "port of /healthz and /metrics (0: none)"},
    {"node-timeout", CLI_SECONDS, O(node_timeout), "SEC", NULL,
     "silence after which a node's members are dropped (default: three of its heartbeats)"},
    {"presence-max-members", CLI_INT, O(presence_max_members), "N", "1000",
     "larger channels get a count instead of the member list"},
    {"event-interval", CLI_SECONDS, O(event_interval), "SEC", "0.1",
     "joins and leaves go out in one batch per channel this often"},
    {"event-max", CLI_INT, O(event_max), "N", "20",
     "joins and leaves listed per channel and batch; more are only counted"},
    {"node-rate", CLI_INT, O(node_rate), "N", "5000",
     "membership envelopes a second one node may send; beyond, they are dropped and the node "
     "resynced"},
    {"log-level", CLI_LEVEL, O(log_level), "LEVEL", "info", "debug, info, warn or error"},
};

static int custom(void *base, const cli_def *d, const char *v)
{
    rconfig *c = base;
    if (strcmp(d->name, "shard") != 0)
        return CLI_UNKNOWN;
    unsigned i, n;
    char rest;
    if (sscanf(v, "%u/%u%c", &i, &n, &rest) != 2 || n < 1 || n > 1024 || i >= n)
        return -1;
    c->shard = i;
    c->shards = n;
    return 0;
}

static const cli_prog prog = {
    .name = "wsrouter",
    .version = "0.1.0",
    .about = "The wsfan router: presence (who is on which channel, on which node) for one shard "
             "of the cluster,\nfed by the nodes over Redis.",
    .defs = defs,
    .ndefs = sizeof defs / sizeof defs[0],
    .custom = custom,
};

int rconfig_parse(rconfig *c, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    int rc = cli_parse(&prog, c, argc, argv);
    if (rc != 0)
        return rc;
    if (c->port > 65535) {
        fprintf(stderr, "wsrouter: --port must be 0-65535\n");
        return -1;
    }
    if (c->event_max < 1 || c->event_max > 10000 || c->presence_max_members < 1 || c->node_rate < 1) {
        fprintf(stderr, "wsrouter: --event-max must be 1-10000; --presence-max-members and "
                        "--node-rate at least 1\n");
        return -1;
    }
    if (rlink_opts_check(&c->redis, "wsrouter") < 0)
        return -1;
    return 0;
}
