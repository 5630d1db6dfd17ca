#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-')
        return -1;
    unsigned long long mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1024 * 1024, end++;
    else if (*end == 'g' || *end == 'G')
        mul = 1024ull * 1024 * 1024, end++;
    if (*end || v > SIZE_MAX / mul)
        return -1;
    *out = (size_t)(v * mul);
    return 0;
}

static int set(const cli_prog *prog, void *base, const cli_def *d, const char *v)
{
    char *p = (char *)base + d->off;
    char *end;
    switch (d->kind) {
    case CLI_FLAG:
        *(bool *)p = true;
        return 0;
    case CLI_INT: {
        errno = 0;
        long n = strtol(v, &end, 10);
        if (errno || end == v || *end || n < 0 || n > INT_MAX)
            return -1;
        *(int *)p = (int)n;
        return 0;
    }
    case CLI_SIZE:
        return parse_size(v, (size_t *)p);
    case CLI_SECONDS: {
        double x = strtod(v, &end);
        if (end == v || *end || !isfinite(x) || x <= 0 || x > 86400 * 365)
            return -1;
        *(double *)p = x;
        return 0;
    }
    case CLI_STRING:
        *(const char **)p = v;
        return 0;
    case CLI_LEVEL:
        *(int *)p = log_level_parse(v);
        return *(int *)p < 0 ? -1 : 0;
    case CLI_CUSTOM:
        return prog->custom ? prog->custom(base, d, v) : -1;
    }
    return -1;
}

void cli_usage(const cli_prog *p, void *fp)
{
    FILE *f = fp;
    fprintf(f, "usage: %s [options]\n\n%s\nSIZE takes k, m or g suffixes (KiB, MiB, GiB); "
               "SEC takes fractions.\n\n", p->name, p->about);
    for (size_t i = 0; i < p->ndefs; i++) {
        const cli_def *d = &p->defs[i];
        char lhs[64];
        snprintf(lhs, sizeof lhs, "--%s%s%s", d->name, d->arg ? " " : "", d->arg ? d->arg : "");
        fprintf(f, "  %-28s %s", lhs, d->help);
        if (d->def)
            fprintf(f, " (default %s)", d->def);
        fprintf(f, "\n");
    }
    fprintf(f, "  %-28s %s\n  %-28s %s\n", "--help", "print this and exit", "--version",
            "print the version and exit");
}

int cli_parse(const cli_prog *p, void *base, int argc, char **argv)
{
    size_t n = p->ndefs;
    for (size_t i = 0; i < n; i++)
        if (p->defs[i].def && set(p, base, &p->defs[i], p->defs[i].def) < 0)
            abort(); /* a default in the table does not parse: a programming error */

    struct option *longopts = calloc(n + 3, sizeof *longopts);
    if (!longopts) {
        fprintf(stderr, "%s: out of memory\n", p->name);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        longopts[i] = (struct option){p->defs[i].name,
                                      p->defs[i].arg ? required_argument : no_argument, NULL,
                                      (int)(256 + i)};
    longopts[n] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[n + 1] = (struct option){"version", no_argument, NULL, 'V'};

    int rc = 0;
    optind = 1;
    int ch;
    while (rc == 0 && (ch = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
        if (ch == 'h') {
            cli_usage(p, stdout);
            rc = 1;
        } else if (ch == 'V') {
            printf("%s %s\n", p->name, p->version);
            rc = 1;
        } else if (ch < 256 || ch >= 256 + (int)n) {
            fprintf(stderr, "%s: see --help\n", p->name);
            rc = -1;
        } else if (set(p, base, &p->defs[ch - 256], optarg) < 0) {
            fprintf(stderr, "%s: bad value for --%s: '%s'\n", p->name, p->defs[ch - 256].name,
                    optarg);
            rc = -1;
        }
    }
    free(longopts);
    if (rc == 0 && optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'; see --help\n", p->name, argv[optind]);
        rc = -1;
    }
    return rc;
}
