/* log: one line per event on stderr, with time, process and worker, and a rate limit so a
 * flood of bad clients cannot turn the log into the bottleneck. */
#ifndef LOG_H
#define LOG_H

enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the lowest level printed and the name shown for this process ("master", "w0"). */
void log_setup(int level, const char *who);

/* Parses "debug", "info", "warn", "error"; -1 if none of them. */
int log_level_parse(const char *s);

/* Prints one line at level. Lines at LOG_INFO and LOG_WARN beyond 100 a second are counted and
 * summarised once the second is over; errors are always printed. */
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
