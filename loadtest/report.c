#include "report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const scenario_names[] = {"fanout", "echo", "connect", "churn", "reconnect"};

void result_tick(result *r, int k, const hist *lat, const counters *now, const counters *before)
{
    if (k < 0)
        return;
    if (k >= MAX_INTERVALS)
        k = MAX_INTERVALS - 1;
    interval *iv = &r->iv[k];
    if (!iv->lat && !(iv->lat = calloc(1, sizeof *iv->lat)))
        return;
    hist_merge(iv->lat, lat);
    iv->received += now->received - before->received;
    iv->sent += now->sent - before->sent;
    iv->opened += now->opened - before->opened;
    iv->cpu_ns += (now->cpu_user_ns + now->cpu_sys_ns) - (before->cpu_user_ns + before->cpu_sys_ns);
    if (k + 1 > r->nint)
        r->nint = k + 1;
}

static double ms(uint64_t ns) { return (double)ns / 1e6; }

void result_progress(const result *r, double t, int ready, int workers)
{
    if (t < 0) {
        fprintf(stderr, "\r[%5.1fs] connecting: %d/%d workers ready   ", -t, ready, workers);
        return;
    }
    const interval *iv = r->nint >= 2 ? &r->iv[r->nint - 2] : r->nint ? &r->iv[0] : NULL;
    if (!iv || !iv->lat) {
        fprintf(stderr, "\r[%5.1fs] running   ", t);
        return;
    }
    fprintf(stderr, "\r[%5.1fs] %llu msgs/s in, %llu out, p99 %.3f ms, wsload cpu %.0f%%     ", t,
            (unsigned long long)iv->received, (unsigned long long)iv->sent,
            ms(hist_quantile(iv->lat, 0.99)), (double)iv->cpu_ns / 1e7 / workers);
}

void result_finish(result *r)
{
    const opts *o = r->o;
    if (SC_HAS_CHANNELS(o->scenario)) {
        for (int i = 0; i < MAX_CHANNELS; i++)
            r->expected += r->expected_subs[i] * r->expected_pubs[i];
    } else if (o->scenario == SC_ECHO) {
        r->expected = r->c.sent;
    }
    r->lost = r->expected > r->c.unique ? r->expected - r->c.unique : 0;
    /* Throughput over the sending window only (whole seconds), so the drain does not flatter. */
    int full = (int)o->duration < r->nint ? (int)o->duration : r->nint;
    uint64_t recv = 0, cpu = 0;
    for (int k = 0; k < full; k++) {
        recv += r->iv[k].received;
        cpu += r->iv[k].cpu_ns;
        double busy = (double)r->iv[k].cpu_ns / 1e9 / r->workers * 100;
        if (busy > r->busy_max)
            r->busy_max = busy;
    }
    r->rate = full ? (double)recv / full : r->wall_s > 0 ? (double)r->c.received / r->wall_s : 0;
    r->busy_avg = full ? (double)cpu / 1e9 / full / r->workers * 100 : 0;
    r->cpu_s = (double)(r->c.cpu_user_ns + r->c.cpu_sys_ns) / 1e9;
    r->ns_per_msg = recv ? (double)cpu / (double)recv : r->c.received ? r->cpu_s * 1e9 / (double)r->c.received : 0;
}

static void print_lat(FILE *f, const char *what, const hist *h)
{
    if (!h->count) {
        fprintf(f, "  %-22s none\n", what);
        return;
    }
    fprintf(f, "  %-22s p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms  (%llu samples)\n", what,
            ms(hist_quantile(h, 0.5)), ms(hist_quantile(h, 0.9)), ms(hist_quantile(h, 0.99)),
            ms(hist_quantile(h, 0.999)), ms(h->max), (unsigned long long)h->count);
}

/* One line of messages accounted for: "<what> N <total_word>, N received: N lost<note>, N
 * duplicated, N reordered". */
static void print_counts(FILE *f, const char *what, uint64_t total, const char *total_word,
                         const result *r, const char *lost_note)
{
    const counters *c = &r->c;
    fprintf(f, "  %-22s %llu %s, %llu received: %llu lost%s, %llu duplicated, %llu reordered\n",
            what, (unsigned long long)total, total_word, (unsigned long long)c->received,
            (unsigned long long)r->lost, lost_note, (unsigned long long)c->duplicates,
            (unsigned long long)c->reordered);
}

/* Fanout's and reconnect's lines: publishes, deliveries, throughput, latency. */
static void print_channels(const result *r, FILE *f)
{
    const counters *c = &r->c;
    fprintf(f, "  published              %llu (%s)\n", (unsigned long long)c->sent,
            r->o->rate > 0 ? "paced" : "max rate");
    print_counts(f, "deliveries", r->expected, "expected", r, " (or still in flight at the end)");
    fprintf(f, "  throughput             %.0f deliveries/s\n", r->rate);
    print_lat(f, "latency (end to end)", &r->lat);
}

/* Reconnect's lines: the resumes, and what the subscribers' channel streams showed. */
static void print_resumes(const result *r, FILE *f)
{
    const counters *c = &r->c;
    fprintf(f, "  resumes                %llu acked: %llu recovered, %llu not (%llu messages "
               "declared gone), %llu without an ack at the end\n",
            (unsigned long long)c->resumes, (unsigned long long)c->recovered,
            (unsigned long long)c->not_recovered, (unsigned long long)c->skipped,
            (unsigned long long)c->resume_pending);
    fprintf(f, "  channel streams        %llu gaps (seqs never received, not declared gone), "
               "%llu duplicated, %llu reordered, %llu resets\n",
            (unsigned long long)c->ch_gaps, (unsigned long long)c->ch_duplicates,
            (unsigned long long)c->ch_reordered, (unsigned long long)c->resets);
    print_lat(f, "recovery (to the ack)", &r->rec);
}

void result_print(const result *r, FILE *f)
{
    const opts *o = r->o;
    const counters *c = &r->c;
    fprintf(f, "wsload %s %s://%s:%d%s  (%d worker%s%s)\n", scenario_names[o->scenario],
            o->target.tls ? "wss" : "ws", o->target.host, o->target.port, o->target.path,
            r->workers, r->workers == 1 ? "" : "s", r->interrupted ? ", INTERRUPTED" : "");
    fprintf(f, "  connections            %llu opened, %llu failed, %llu closed by the server side\n",
            (unsigned long long)c->opened, (unsigned long long)c->failed,
            (unsigned long long)c->fail[F_CLOSED_BY_SERVER]);
    for (int i = 0; i < F_COUNT; i++)
        if (c->fail[i])
            fprintf(f, "    %-20s %llu\n", fail_names[i], (unsigned long long)c->fail[i]);
    switch (o->scenario) {
    case SC_FANOUT:
        print_channels(r, f);
        break;
    case SC_RECONNECT:
        print_channels(r, f);
        print_resumes(r, f);
        break;
    case SC_ECHO:
        print_counts(f, "echoes", c->sent, "sent", r, "");
        fprintf(f, "  throughput             %.0f echoes/s\n", r->rate);
        print_lat(f, "round trip", &r->lat);
        break;
    case SC_CONNECT:
        fprintf(f, "  connect rate           %.0f connections/s (%llu in %.2f s)\n",
                r->setup_ns ? (double)c->opened / ((double)r->setup_ns / 1e9) : 0,
                (unsigned long long)c->opened, (double)r->setup_ns / 1e9);
        fprintf(f, "  held                   %llu open when the hold began\n", (unsigned long long)r->open_at_go);
        if (o->npids) {
            fprintf(f, "  server memory          RSS %llu -> %llu KiB, PSS %llu -> %llu KiB\n",
                    (unsigned long long)r->rss_before, (unsigned long long)r->rss_after,
                    (unsigned long long)r->pss_before, (unsigned long long)r->pss_after);
            if (r->open_at_go)
                fprintf(f, "  per connection         %.0f bytes RSS, %.0f bytes PSS\n",
                        ((double)r->rss_after - (double)r->rss_before) * 1024 / (double)r->open_at_go,
                        ((double)r->pss_after - (double)r->pss_before) * 1024 / (double)r->open_at_go);
        }
        break;
    case SC_CHURN:
        fprintf(f, "  reconnects             %llu\n", (unsigned long long)c->reconnects);
        print_lat(f, "reconnect", &r->lat);
        break;
    }
    print_lat(f, "handshake", &r->hs);
    fprintf(f, "  wsload cpu             %.2f s in all; %.0f%% of a core per worker while sending "
               "(peak %.0f%%)",
            r->cpu_s, r->busy_avg, r->busy_max);
    if (r->ns_per_msg > 0 && (SC_HAS_CHANNELS(o->scenario) || o->scenario == SC_ECHO))
        fprintf(f, "; %.0f ns per message received", r->ns_per_msg);
    fprintf(f, "\n");
    if (r->busy_max > 90)
        fprintf(f, "  WARNING: a wsload worker was over 90%% busy: the generator, not the server, "
                   "may be the limit. Add --workers.\n");
}

static void json_hist(FILE *f, const char *name, const hist *h)
{
    fprintf(f, "\"%s\":{\"count\":%llu,\"p50_us\":%.3f,\"p90_us\":%.3f,\"p99_us\":%.3f,"
               "\"p999_us\":%.3f,\"max_us\":%.3f,\"buckets\":[",
            name, (unsigned long long)h->count, hist_quantile(h, 0.5) / 1e3,
            hist_quantile(h, 0.9) / 1e3, hist_quantile(h, 0.99) / 1e3, hist_quantile(h, 0.999) / 1e3,
            (double)h->max / 1e3);
    bool first = true;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        if (!h->b[i])
            continue;
        fprintf(f, "%s[%llu,%llu,%llu]", first ? "" : ",", (unsigned long long)hist_bucket_low(i),
                (unsigned long long)hist_bucket_high(i), (unsigned long long)h->b[i]);
        first = false;
    }
    fprintf(f, "]}");
}

/* Reconnect: "resumes" and "recovery" (close to resume ack), then a comma. */
static void json_resumes(FILE *f, const result *r)
{
    const counters *c = &r->c;
    fprintf(f, "\"resumes\":{\"every_s\":%g,\"delay_s\":%g,\"acked\":%llu,\"recovered\":%llu,"
               "\"not_recovered\":%llu,\"declared_gone\":%llu,\"pending\":%llu,\"gaps\":%llu,"
               "\"duplicates\":%llu,\"reordered\":%llu,\"resets\":%llu},",
            r->o->reconnect_every, r->o->reconnect_delay, (unsigned long long)c->resumes,
            (unsigned long long)c->recovered, (unsigned long long)c->not_recovered,
            (unsigned long long)c->skipped, (unsigned long long)c->resume_pending,
            (unsigned long long)c->ch_gaps, (unsigned long long)c->ch_duplicates,
            (unsigned long long)c->ch_reordered, (unsigned long long)c->resets);
    json_hist(f, "recovery", &r->rec);
    fprintf(f, ",");
}

int result_json(const result *r, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    const opts *o = r->o;
    const counters *c = &r->c;
    fprintf(f, "{\"scenario\":\"%s\",\"url\":\"%s://%s:%d%s\",\"workers\":%d,\"interrupted\":%s,",
            scenario_names[o->scenario], o->target.tls ? "wss" : "ws", o->target.host, o->target.port,
            o->target.path, r->workers, r->interrupted ? "true" : "false");
    fprintf(f, "\"params\":{\"subscribers\":%d,\"channels\":%d,\"publishers\":%d,\"connections\":%d,"
               "\"rate\":%g,\"size\":%d,\"duration\":%g,\"drain\":%g},",
            o->subscribers, o->channels, o->publishers, o->connections, o->rate, o->size, o->duration,
            o->drain);
    fprintf(f, "\"connections\":{\"opened\":%llu,\"failed\":%llu,\"closed\":%llu,\"open_at_start\":%llu,"
               "\"setup_s\":%.3f,\"failures\":{",
            (unsigned long long)c->opened, (unsigned long long)c->failed, (unsigned long long)c->closed,
            (unsigned long long)r->open_at_go, (double)r->setup_ns / 1e9);
    for (int i = 0; i < F_COUNT; i++)
        fprintf(f, "%s\"%s\":%llu", i ? "," : "", fail_names[i], (unsigned long long)c->fail[i]);
    fprintf(f, "}},");
    fprintf(f, "\"messages\":{\"sent\":%llu,\"expected\":%llu,\"received\":%llu,\"unique\":%llu,"
               "\"lost\":%llu,\"duplicates\":%llu,\"reordered\":%llu,\"other_frames\":%llu,"
               "\"errors\":%llu,\"send_errors\":%llu,\"reconnects\":%llu,\"per_second\":%.1f},",
            (unsigned long long)c->sent, (unsigned long long)r->expected, (unsigned long long)c->received,
            (unsigned long long)c->unique, (unsigned long long)r->lost, (unsigned long long)c->duplicates,
            (unsigned long long)c->reordered, (unsigned long long)c->other_frames,
            (unsigned long long)c->errs, (unsigned long long)c->send_errors,
            (unsigned long long)c->reconnects, r->rate);
    fprintf(f, "\"bytes\":{\"in\":%llu,\"out\":%llu},", (unsigned long long)c->bytes_in,
            (unsigned long long)c->bytes_out);
    fprintf(f, "\"cpu\":{\"seconds\":%.3f,\"busy_avg_pct\":%.1f,\"busy_max_pct\":%.1f,"
               "\"ns_per_message\":%.1f,\"generator_limited\":%s},",
            r->cpu_s, r->busy_avg, r->busy_max, r->ns_per_msg, r->busy_max > 90 ? "true" : "false");
    if (o->npids)
        fprintf(f, "\"server_memory_kib\":{\"rss_before\":%llu,\"rss_after\":%llu,\"pss_before\":%llu,"
                   "\"pss_after\":%llu},",
                (unsigned long long)r->rss_before, (unsigned long long)r->rss_after,
                (unsigned long long)r->pss_before, (unsigned long long)r->pss_after);
    if (o->scenario == SC_RECONNECT)
        json_resumes(f, r);
    json_hist(f, "latency", &r->lat);
    fprintf(f, ",");
    json_hist(f, "handshake", &r->hs);
    fprintf(f, ",\"timeline\":[");
    for (int k = 0; k < r->nint; k++) {
        const interval *iv = &r->iv[k];
        fprintf(f, "%s{\"t\":%d,\"received\":%llu,\"sent\":%llu,\"p50_us\":%.3f,\"p99_us\":%.3f,"
                   "\"max_us\":%.3f,\"cpu_s\":%.3f}",
                k ? "," : "", k + 1, (unsigned long long)iv->received, (unsigned long long)iv->sent,
                iv->lat ? hist_quantile(iv->lat, 0.5) / 1e3 : 0, iv->lat ? hist_quantile(iv->lat, 0.99) / 1e3 : 0,
                iv->lat ? (double)iv->lat->max / 1e3 : 0, (double)iv->cpu_ns / 1e9);
    }
    fprintf(f, "]}\n");
    return fclose(f) == 0 ? 0 : -1;
}

/* ---- SVG ---------------------------------------------------------------------------------- */

#define SVG_W 900
#define PLOT_L 70
#define PLOT_R 870

/* y of a latency (ns) on a log axis from 1 us to 10 s inside [top, top + h]. */
static double log_y(double ns, double top, double h)
{
    double lo = 3, hi = 10; /* log10 ns */
    double v = ns < 1e3 ? 3 : log10(ns);
    if (v > hi)
        v = hi;
    return top + h - (v - lo) / (hi - lo) * h;
}

static double log_density(const hist *h, size_t i)
{
    double lo = (double)hist_bucket_low(i), hi = (double)hist_bucket_high(i) + 1;
    return (double)h->b[i] * (lo + hi) / 2 / (hi - lo);
}

static const char *const decade_labels[] = {"1 us", "10 us", "100 us", "1 ms", "10 ms", "100 ms", "1 s", "10 s"};

int result_svg(const result *r, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    const double top1 = 50, h1 = 250, top2 = 370, h2 = 200;
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='620' "
               "font-family='sans-serif' font-size='12'>\n<rect width='100%%' height='100%%' fill='white'/>\n",
            SVG_W);
    fprintf(f, "<text x='%d' y='24' font-size='15'>wsload %s: latency over time (p50, p99, max)</text>\n",
            PLOT_L, scenario_names[r->o->scenario]);
    for (int d = 0; d < 8; d++) {
        double y = log_y(pow(10, 3 + d), top1, h1);
        fprintf(f, "<line x1='%d' x2='%d' y1='%.1f' y2='%.1f' stroke='#ddd'/>"
                   "<text x='%d' y='%.1f' text-anchor='end'>%s</text>\n",
                PLOT_L, PLOT_R, y, y, PLOT_L - 6, y + 4, decade_labels[d]);
    }
    int n = r->nint > 0 ? r->nint : 1;
    double dx = (double)(PLOT_R - PLOT_L) / n;
    static const struct { double q; const char *color; const char *name; } series[] = {
        {0.5, "#2a7", "p50"}, {0.99, "#e80", "p99"}, {2, "#c22", "max"}};
    for (int s = 0; s < 3; s++) {
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='", series[s].color);
        for (int k = 0; k < r->nint; k++) {
            const hist *h = r->iv[k].lat;
            if (!h || !h->count)
                continue;
            double v = series[s].q > 1 ? (double)h->max : (double)hist_quantile(h, series[s].q);
            fprintf(f, "%.1f,%.1f ", PLOT_L + dx * (k + 0.5), log_y(v, top1, h1));
        }
        fprintf(f, "'/>\n<text x='%d' y='%.0f' fill='%s'>%s</text>\n", PLOT_R - 40 + 0 * s,
                top1 + 14 + 14 * s, series[s].color, series[s].name);
    }
    for (int k = 0; k <= n; k += n > 20 ? n / 10 : 1)
        fprintf(f, "<text x='%.1f' y='%.0f' text-anchor='middle'>%ds</text>\n", PLOT_L + dx * k,
                top1 + h1 + 16, k);

    fprintf(f, "<text x='%d' y='%.0f' font-size='15'>latency histogram (%llu samples)</text>\n", PLOT_L,
            top2 - 20, (unsigned long long)r->lat.count);
    /* Bars are drawn on a log axis, so each is the bucket's count per unit of log latency
     * (count x value / width): linear sub-buckets would otherwise show steps at every octave. */
    double peak = 1e-300;
    for (size_t i = 0; i < HIST_BUCKETS; i++)
        if (r->lat.b[i] && log_density(&r->lat, i) > peak)
            peak = log_density(&r->lat, i);
    /* x: log latency from 1 us to 10 s; each bucket a bar at its position. */
    for (int d = 0; d < 8; d++) {
        double x = PLOT_L + (double)d / 7 * (PLOT_R - PLOT_L);
        fprintf(f, "<line x1='%.1f' x2='%.1f' y1='%.0f' y2='%.0f' stroke='#ddd'/>"
                   "<text x='%.1f' y='%.0f' text-anchor='middle'>%s</text>\n",
                x, x, top2, top2 + h2, x, top2 + h2 + 16, decade_labels[d]);
    }
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        if (!r->lat.b[i])
            continue;
        double lo = (double)hist_bucket_low(i), hi = (double)hist_bucket_high(i) + 1;
        double x0 = PLOT_L + (log10(lo < 1e3 ? 1e3 : lo) - 3) / 7 * (PLOT_R - PLOT_L);
        double x1 = PLOT_L + (log10(hi < 1e3 ? 1e3 : hi) - 3) / 7 * (PLOT_R - PLOT_L);
        double bh = log_density(&r->lat, i) / peak * h2;
        fprintf(f, "<rect x='%.1f' y='%.1f' width='%.2f' height='%.1f' fill='#47c'/>\n", x0,
                top2 + h2 - bh, x1 - x0 > 0.5 ? x1 - x0 : 0.5, bh);
    }
    fprintf(f, "</svg>\n");
    return fclose(f) == 0 ? 0 : -1;
}
