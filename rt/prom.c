#include "prom.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

void prom_init(prom *p, char *buf, size_t cap) { *p = (prom){.buf = buf, .cap = cap}; }

static void put(prom *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(prom *p, const char *fmt, ...)
{
    if (p->overflow || p->len >= p->cap) {
        p->overflow = true; /* every line has at least one byte */
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p->buf + p->len, p->cap - p->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= p->cap - p->len)
        p->overflow = true;
    else
        p->len += (size_t)n;
}

static void head(prom *p, const char *name, const char *type, const char *help)
{
    put(p, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void prom_metric(prom *p, prom_kind kind, const char *name, const char *help, uint64_t v)
{
    head(p, name, kind == PROM_GAUGE ? "gauge" : "counter", help);
    put(p, "%s %" PRIu64 "\n", name, v);
}

void prom_histogram(prom *p, const char *name, const char *help, const double *bounds,
                    const uint64_t *cumulative, size_t n, uint64_t count, double sum)
{
    head(p, name, "histogram", help);
    for (size_t i = 0; i < n; i++)
        put(p, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, bounds[i], cumulative[i]);
    put(p, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, count);
    put(p, "%s_sum %.6f\n%s_count %" PRIu64 "\n", name, sum, name, count);
}

size_t prom_end(const prom *p) { return p->overflow ? 0 : p->len; }

static bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

bool prom_name_valid(const char *name)
{
    if (!name || !name[0])
        return false;
    for (size_t i = 0; name[i]; i++)
        if (!name_char(name[i], i == 0))
            return false;
    return true;
}
