/* report: the parent's merged view of a run, and its three outputs: the table, the JSON and
 * the SVG plot. */
#ifndef REPORT_H
#define REPORT_H

#include <stdio.h>

#include "wsload.h"

#define MAX_INTERVALS 1200 /* one a second; later ones are merged into the last */

typedef struct interval {
    hist *lat;
    uint64_t received, sent, cpu_ns, opened;
} interval;

typedef struct result {
    const opts *o;
    counters c;
    hist lat, hs, rec; /* rec: reconnect, close to resume ack */
    uint64_t expected_subs[MAX_CHANNELS];
    uint64_t expected_pubs[MAX_CHANNELS];
    interval iv[MAX_INTERVALS];
    int nint;
    uint64_t rss_before, pss_before, rss_after, pss_after;
    uint64_t setup_ns, open_at_go;
    bool interrupted;
    double wall_s;
    int workers;
    /* computed by result_finish */
    uint64_t expected, lost;
    double rate, cpu_s, ns_per_msg, busy_max, busy_avg;
} result;

/* Adds one worker's tick for interval k: its latencies and the counters since its last tick. */
void result_tick(result *r, int k, const hist *lat, const counters *now, const counters *before);

/* Rewrites the progress line on stderr; t < 0 while connecting. */
void result_progress(const result *r, double t, int ready, int workers);

void result_finish(result *r);
void result_print(const result *r, FILE *f);
int result_json(const result *r, const char *path);
int result_svg(const result *r, const char *path);

#endif
