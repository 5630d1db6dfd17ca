/* config: wsrouter's command line (one table drives parsing and --help; docs/configuration.md
 * repeats it). */
#ifndef ROUTER_CONFIG_H
#define ROUTER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "rlink.h"

typedef struct rconfig {
    rlink_opts redis; /* --redis, --redis-user, --redis-password, --redis-prefix */
    uint32_t shard, shards; /* --shard i/N */
    const char *bind;
    int port; /* /healthz and /metrics; 0: none */
    double node_timeout; /* 0: three of the node's heartbeats */
    int presence_max_members;
    double event_interval;
    int event_max;
    int node_rate;
    int log_level;
} rconfig;

/* Fills c from argv (defaults first). Returns 0 to run, 1 when --help or --version printed
 * what was asked, or -1 after printing an error to stderr. */
int rconfig_parse(rconfig *c, int argc, char **argv);

#endif
