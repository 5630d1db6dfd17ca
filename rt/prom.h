/* prom: the Prometheus text exposition format (0.0.4) written into the caller's buffer: HELP and
 * TYPE lines, counters, gauges, histograms with cumulative buckets. Pure: no I/O, no
 * allocation. The tables that declare each program's metrics render through it. */
#ifndef PROM_H
#define PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum prom_kind { PROM_COUNTER, PROM_GAUGE } prom_kind;

/* A writer over buf[0..cap); buf stays the caller's. Once something did not fit it writes
 * nothing more and prom_end returns 0. */
typedef struct prom {
    char *buf;
    size_t cap, len;
    bool overflow;
} prom;

/* Starts writing at buf[0]. */
void prom_init(prom *p, char *buf, size_t cap);

/* A counter or a gauge: "# HELP name help", "# TYPE name counter|gauge", "name v". */
void prom_metric(prom *p, prom_kind kind, const char *name, const char *help, uint64_t v);

/* A histogram of n buckets: cumulative[i] observations were at most bounds[i] (ascending),
 * count in all (the +Inf bucket and name_count); sum is written with six decimals. */
void prom_histogram(prom *p, const char *name, const char *help, const double *bounds,
                    const uint64_t *cumulative, size_t n, uint64_t count, double sum);

/* The length written, or 0 if it did not all fit. */
size_t prom_end(const prom *p);

/* True if name is a valid metric name: [a-zA-Z_:][a-zA-Z0-9_:]*. */
bool prom_name_valid(const char *name);

#endif
