/* cli: command lines driven by one table per program, so parsing, defaults and --help never
 * disagree. wsnode (node/config.c), wsrouter (router/config.c) and wsload (loadtest/opts.c)
 * each keep a table of cli_def. */
#ifndef CLI_H
#define CLI_H

#include <stddef.h>

enum cli_kind {
    CLI_FLAG,    /* bool, set by its presence */
    CLI_INT,     /* int, decimal; 0..INT_MAX unless a cli_range says otherwise */
    CLI_SIZE,    /* size_t with k, m or g suffixes */
    CLI_SECONDS, /* double; above 0 and at most a year unless a cli_range says otherwise */
    CLI_STRING,  /* const char *, pointing into argv */
    CLI_LEVEL,   /* int, a log level name (log_level_parse) */
    CLI_CUSTOM,  /* parsed by the program's cli_custom_fn */
};

typedef struct cli_def {
    const char *name;
    enum cli_kind kind;
    size_t off;      /* where the value goes in the program's config struct */
    const char *arg; /* placeholder in --help; NULL for a flag */
    const char *def; /* default, as text: parsed at startup so help and behaviour agree */
    const char *help;
} cli_def;

/* Returned by a cli_custom_fn for a def it does not parse: a bug in the program's table,
 * reported as such (never taken for some other flag). */
#define CLI_UNKNOWN (-2)

/* Parses a CLI_CUSTOM value v for def d into the config at base; 0, -1 for a bad value, or
 * CLI_UNKNOWN. Repeatable flags append: it is called once per occurrence. */
typedef int (*cli_custom_fn)(void *base, const cli_def *d, const char *v);

/* The accepted values of a CLI_INT, CLI_SIZE or CLI_SECONDS flag, both ends included, in place
 * of the kind's own. */
typedef struct cli_range {
    const char *name;
    double min, max;
} cli_range;

typedef struct cli_prog {
    const char *name, *version, *about;
    const cli_def *defs;
    size_t ndefs;
    cli_custom_fn custom;    /* may be NULL when no def is CLI_CUSTOM */
    const cli_range *ranges; /* each names a def of a numeric kind; may be NULL */
    size_t nranges;
    const char *args; /* positional arguments for usage and errors ("SCENARIO URL"); NULL: none */
    size_t nargs;     /* the program takes exactly this many positional arguments ... */
    size_t args_off;  /* ... into a const char *[nargs] at this offset in the config */
} cli_prog;

/* Sets every default, then argv, into base (argv's strings are referenced, not copied).
 * Returns 0 to run, 1 when --help or --version printed what was asked, or -1 after printing
 * an error to stderr: a bad or unknown flag, a value out of range, the wrong number of
 * positional arguments, a CLI_CUSTOM value the program's function does not know (CLI_UNKNOWN),
 * or tables that disagree (a CLI_CUSTOM def without a function, a range naming no numeric def). */
int cli_parse(const cli_prog *p, void *base, int argc, char **argv);

/* Prints the usage line, about, and every flag with its default to f (a FILE *). */
void cli_usage(const cli_prog *p, void *f);

#endif
