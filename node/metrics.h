/* metrics: the Prometheus text exposition of a node's counters, summed over its workers'
 * shared stat slots. Pure: no I/O. */
#ifndef METRICS_H
#define METRICS_H

#include <stddef.h>

#include "worker.h"

/* Writes the exposition for n workers' stats into out[0..cap); returns its length, or 0 if it
 * does not fit. */
size_t metrics_render(const worker_stats *all, int n, char *out, size_t cap);

#endif
