/* cli: command lines driven by one table per program, so parsing, defaults and --help never
 * disagree. wsnode (config.c) and wsrouter (router/config.c) each keep a table of cli_def. */
#ifndef CLI_H
#define CLI_H

#include <stddef.h>

enum cli_kind { CLI_FLAG, CLI_INT, CLI_SIZE, CLI_SECONDS, CLI_STRING, CLI_LEVEL, CLI_CUSTOM };

typedef struct cli_def {
    const char *name;
    enum cli_kind kind;
    size_t off;      /* where the value goes in the program's config struct */
    const char *arg; /* placeholder in --help; NULL for a flag */
    const char *def; /* default, as text: parsed at startup so help and behaviour agree */
    const char *help;
} cli_def;

/* Parses a CLI_CUSTOM value into the config at base; 0 or -1. */
typedef int (*cli_custom_fn)(void *base, const cli_def *d, const char *v);

typedef struct cli_prog {
    const char *name, *version, *about;
    const cli_def *defs;
    size_t ndefs;
    cli_custom_fn custom; /* may be NULL when no def is CLI_CUSTOM */
} cli_prog;

/* Sets every default, then argv, into base. Returns 0 to run, 1 when --help or --version
 * printed what was asked, or -1 after printing an error to stderr. */
int cli_parse(const cli_prog *p, void *base, int argc, char **argv);

/* Prints every flag with its default to f (a FILE *). */
void cli_usage(const cli_prog *p, void *f);

#endif
