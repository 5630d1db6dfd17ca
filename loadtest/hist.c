#include "hist.h"

#include <string.h>

static size_t index_of(uint64_t v)
{
    if (v < HIST_SUB)
        return (size_t)v;
    int e = 63 - __builtin_clzll(v); /* >= 5 */
    size_t i = (size_t)(e - 4) * HIST_SUB + ((v >> (e - 5)) & (HIST_SUB - 1));
    return i < HIST_BUCKETS ? i : HIST_BUCKETS - 1;
}

uint64_t hist_bucket_low(size_t i)
{
    if (i < HIST_SUB)
        return i;
    int e = (int)(i / HIST_SUB) + 4;
    return (uint64_t)(HIST_SUB + i % HIST_SUB) << (e - 5);
}

uint64_t hist_bucket_high(size_t i)
{
    if (i < HIST_SUB)
        return i;
    int e = (int)(i / HIST_SUB) + 4;
    return hist_bucket_low(i) + ((uint64_t)1 << (e - 5)) - 1;
}

void hist_reset(hist *h) { memset(h, 0, sizeof *h); }

void hist_add(hist *h, uint64_t ns)
{
    h->b[index_of(ns)]++;
    h->count++;
    if (ns > h->max)
        h->max = ns;
}

void hist_merge(hist *into, const hist *from)
{
    for (size_t i = 0; i < HIST_BUCKETS; i++)
        into->b[i] += from->b[i];
    into->count += from->count;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t hist_quantile(const hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.5);
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t v = hist_bucket_high(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}
