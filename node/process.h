/* process: the life of one wsnode worker process: its listening socket, accept, the periodic
 * tick, the flush before the loop sleeps, the Redis bus and presence, drain on SIGTERM and
 * TLS reload on SIGHUP. Only the master (main.c) includes it. */
#ifndef PROCESS_H
#define PROCESS_H

#include <stdbool.h>

#include "config.h"
#include "worker.h"

/* Runs worker `index` in w until it is drained or fails; returns the process exit code
 * (0 after a drain, 2 when the listening socket cannot be set up). The caller owns w and
 * keeps it until the process exits: connections still open at the end point into it. shared
 * holds cfg->workers stat slots in memory shared with the other workers. */
int process_run(worker *w, const config *cfg, int index, worker_stats *shared);

/* True (logged) when cfg's address and port cannot be taken without sharing them with whoever
 * listens there already: the master checks it once before forking, unless --share-port. */
bool process_port_in_use(const config *cfg);

#endif
