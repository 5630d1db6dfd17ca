#include "log.h"

#include <errno.h> /* program_invocation_short_name */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_PER_SECOND 100

static int min_level = LOG_INFO;
static char who_name[16] = "wsnode";
static time_t window;
static unsigned in_window, suppressed;

void log_setup(int level, const char *who)
{
    min_level = level;
    snprintf(who_name, sizeof who_name, "%s", who);
}

int log_level_parse(const char *s)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

void log_msg(int level, const char *fmt, ...)
{
    static const char *const tags[] = {"debug", "info", "warn", "error"};
    if (level < min_level)
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (tv.tv_sec != window) {
        if (suppressed)
            fprintf(stderr, "%s[%d] %s warn: %u log lines suppressed in the last second\n",
                    program_invocation_short_name, (int)getpid(), who_name, suppressed);
        window = tv.tv_sec;
        in_window = suppressed = 0;
    }
    if (level < LOG_ERROR && ++in_window > LOG_PER_SECOND) {
        suppressed++;
        return;
    }
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char line[1024];
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s[%d] %s %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), program_invocation_short_name,
                     (int)getpid(), who_name, tags[level]);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
