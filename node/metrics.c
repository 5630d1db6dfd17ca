#include "metrics.h"

#include <string.h>

#include "prom.h"

/* The slot-by-slot sum of all[0..n): a stats_slot is uint64_t slots only (stats.h). */
static void sum_slots(const stats_slot *all, int n, stats_slot *sum)
{
    uint64_t acc[STATS_NSLOTS] = {0}, one[STATS_NSLOTS];
    for (int i = 0; i < n; i++) {
        memcpy(one, &all[i], sizeof one);
        for (size_t k = 0; k < STATS_NSLOTS; k++)
            acc[k] += one[k];
    }
    memcpy(sum, acc, sizeof *sum);
}

#define RENDER_METRIC(field, kind, name, help) prom_metric(&p, PROM_##kind, name, help, s.field);
#define RENDER_HISTOGRAM(f, name, help, buckets, bounds) \
    { \
        static const double f##_bounds[buckets] = bounds; \
        prom_histogram(&p, name, help, f##_bounds, s.f##_bucket, buckets, s.f##_count, \
                       (double)s.f##_sum_us / 1e6); \
    }

size_t metrics_render(const stats_slot *all, int n, char *out, size_t cap)
{
    stats_slot s;
    sum_slots(all, n, &s);
    prom p;
    prom_init(&p, out, cap);
    STATS_METRICS(RENDER_METRIC)
    STATS_HISTOGRAMS(RENDER_HISTOGRAM)
    prom_metric(&p, PROM_GAUGE, "wsfan_workers", "Worker processes.", (uint64_t)n);
    return prom_end(&p);
}
