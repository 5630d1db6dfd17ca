/* hist: a log-linear latency histogram in nanoseconds: 32 linear sub-buckets per power of two,
 * so any value is known to within 3%. Fixed size, merged by adding, no allocation. */
#ifndef HIST_H
#define HIST_H

#include <stddef.h>
#include <stdint.h>

#define HIST_SUB 32
#define HIST_BUCKETS (HIST_SUB * 60)

typedef struct hist {
    uint64_t count;
    uint64_t max;
    uint64_t b[HIST_BUCKETS];
} hist;

void hist_reset(hist *h);
void hist_add(hist *h, uint64_t ns);
void hist_merge(hist *into, const hist *from);

/* Value at quantile q in [0, 1] (upper edge of its bucket, never above max); 0 when empty. */
uint64_t hist_quantile(const hist *h, double q);

/* Smallest and largest value bucket i holds. */
uint64_t hist_bucket_low(size_t i);
uint64_t hist_bucket_high(size_t i);

#endif
