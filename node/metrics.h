/* metrics: the Prometheus text exposition of a node: every row of stats.h, summed over the
 * workers' shared stat slots, and the number of workers. Pure: no I/O. */
#ifndef METRICS_H
#define METRICS_H

#include <stddef.h>

#include "stats.h"

/* Writes the exposition for n workers' slots all[0..n) into out[0..cap); returns its length,
 * or 0 if it does not fit. */
size_t metrics_render(const stats_slot *all, int n, char *out, size_t cap);

#endif
