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

/* The range given for d, or NULL for the kind's own. */
static const cli_range *range_of(const cli_prog *p, const cli_def *d)
{
    for (size_t i = 0; i < p->nranges; i++)
        if (strcmp(p->ranges[i].name, d->name) == 0)
            return &p->ranges[i];
    return NULL;
}

static int set_int(const cli_range *r, const char *v, int *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < INT_MIN || n > INT_MAX)
        return -1;
    if (r ? n < r->min || n > r->max : n < 0)
        return -1;
    *out = (int)n;
    return 0;
}

static int set_seconds(const cli_range *r, const char *v, double *out)
{
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !isfinite(x))
        return -1;
    if (r ? x < r->min || x > r->max : x <= 0 || x > 86400 * 365)
        return -1;
    *out = x;
    return 0;
}

/* Parses v into the field of d; 0, -1 (a bad value) or CLI_UNKNOWN. */
static int set(const cli_prog *prog, void *base, const cli_def *d, const char *v)
{
    char *p = (char *)base + d->off;
    const cli_range *r = range_of(prog, d);
    switch (d->kind) {
    case CLI_FLAG:
        *(bool *)p = true;
        return 0;
    case CLI_INT:
        return set_int(r, v, (int *)p);
    case CLI_SIZE: {
        size_t n;
        if (parse_size(v, &n) < 0 || (r && ((double)n < r->min || (double)n > r->max)))
            return -1;
        *(size_t *)p = n;
        return 0;
    }
    case CLI_SECONDS:
        return set_seconds(r, v, (double *)p);
    case CLI_STRING:
        *(const char **)p = v;
        return 0;
    case CLI_LEVEL:
        *(int *)p = log_level_parse(v);
        return *(int *)p < 0 ? -1 : 0;
    case CLI_CUSTOM: {
        int rc = prog->custom(base, d, v);
        return rc == 0 || rc == CLI_UNKNOWN ? rc : -1;
    }
    }
    return -1;
}

void cli_usage(const cli_prog *p, void *fp)
{
    FILE *f = fp;
    fprintf(f, "usage: %s [options]%s%s\n\n%s\nSIZE takes k, m or g suffixes (KiB, MiB, GiB); "
               "SEC takes fractions.\n\n", p->name, p->args ? " " : "", p->args ? p->args : "",
            p->about);
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

/* The tables must agree: every CLI_CUSTOM def needs the program's function, every range a
 * numeric def. Checked before anything is parsed. */
static int tables_valid(const cli_prog *p)
{
    for (size_t i = 0; i < p->ndefs; i++) {
        if (p->defs[i].kind == CLI_CUSTOM && !p->custom) {
            fprintf(stderr, "%s: --%s has no parser (a bug in the flag table)\n", p->name,
                    p->defs[i].name);
            return -1;
        }
    }
    for (size_t k = 0; k < p->nranges; k++) {
        size_t i = 0;
        while (i < p->ndefs && strcmp(p->defs[i].name, p->ranges[k].name) != 0)
            i++;
        enum cli_kind kind = i < p->ndefs ? p->defs[i].kind : CLI_CUSTOM;
        if (kind != CLI_INT && kind != CLI_SIZE && kind != CLI_SECONDS) {
            fprintf(stderr, "%s: range for --%s, which is no numeric flag (a bug in the flag "
                            "table)\n", p->name, p->ranges[k].name);
            return -1;
        }
    }
    return 0;
}

/* The error for a flag whose value set() refused. */
static void report(const cli_prog *p, const cli_def *d, const char *v, int rc)
{
    if (rc == CLI_UNKNOWN)
        fprintf(stderr, "%s: --%s has no parser (a bug in the flag table)\n", p->name, d->name);
    else
        fprintf(stderr, "%s: bad value for --%s: '%s'\n", p->name, d->name, v);
}

/* Runs getopt_long over argv; returns 0, 1 (--help, --version) or -1. */
static int parse_flags(const cli_prog *p, void *base, int argc, char **argv,
                       const struct option *longopts)
{
    int n = (int)p->ndefs, ch;
    optind = 0; /* glibc: start afresh, even after an earlier parse stopped half-way */
    while ((ch = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
        if (ch == 'h') {
            cli_usage(p, stdout);
            return 1;
        }
        if (ch == 'V') {
            printf("%s %s\n", p->name, p->version);
            return 1;
        }
        if (ch < 256 || ch >= 256 + n) {
            fprintf(stderr, "%s: see --help\n", p->name);
            return -1;
        }
        int rc = set(p, base, &p->defs[ch - 256], optarg);
        if (rc < 0) {
            report(p, &p->defs[ch - 256], optarg, rc);
            return -1;
        }
    }
    return 0;
}

/* Stores the positional arguments left in argv[optind..argc); 0 or -1. */
static int set_args(const cli_prog *p, void *base, int argc, char **argv)
{
    size_t left = (size_t)(argc - optind);
    if (left != p->nargs) {
        if (p->nargs == 0)
            fprintf(stderr, "%s: unexpected argument '%s'; see --help\n", p->name, argv[optind]);
        else
            fprintf(stderr, "%s: need %s; see --help\n", p->name, p->args);
        return -1;
    }
    const char **out = (const char **)(void *)((char *)base + p->args_off);
    for (size_t i = 0; i < left; i++)
        out[i] = argv[optind + (int)i];
    return 0;
}

int cli_parse(const cli_prog *p, void *base, int argc, char **argv)
{
    size_t n = p->ndefs;
    if (tables_valid(p) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int rc = p->defs[i].def ? set(p, base, &p->defs[i], p->defs[i].def) : 0;
        if (rc < 0) { /* a default in the table does not parse: a programming error */
            report(p, &p->defs[i], p->defs[i].def, rc);
            abort();
        }
    }

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
    int rc = parse_flags(p, base, argc, argv, longopts);
    free(longopts);
    return rc == 0 ? set_args(p, base, argc, argv) : rc;
}
