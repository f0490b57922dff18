/* Logging: one access-log line per request, and events with their cause, each line with its level. */
#ifndef EMBD_LOG_H
#define EMBD_LOG_H

#include <stddef.h>

/* notice: the daemon's life (start, reloads, stop); info: that and one access line per request. */
enum embd_log_level { EMBD_LOG_ERROR, EMBD_LOG_WARN, EMBD_LOG_NOTICE, EMBD_LOG_INFO };

/* Send logs to path (NULL or "": standard error). Returns 0 or -errno. Not thread-safe: call before serving. */
int embd_log_open(const char *path);

/*
 * Open the log file again by its name (SIGUSR1, after logrotate has moved
 * it): lines go to the new file from now on. No-op when logging to standard
 * error. 0 or -errno (the old file is kept then). Thread-safe against
 * embd_log; call from one thread at a time.
 */
int embd_log_reopen(void);

/* "error", "warn", "notice" or "info" -> level. 0, or -1 for any other name. */
int embd_log_level_parse(const char *name, enum embd_log_level *out);

/* Lines above level are dropped. Not thread-safe: call before serving. */
void embd_log_set_level(enum embd_log_level level);

/* Whether a line at level would be written (to skip building one that would not). */
int embd_log_enabled(enum embd_log_level level);

/* One line, prefixed with the time and the level; thread-safe (one write per line). */
void embd_log(enum embd_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * s with every byte outside printable ASCII, the space and '\' written as
 * \xHH, so that a client's bytes can neither split a log line nor fake one.
 * Truncated to fit cap (which must be at least 1). Returns out.
 */
const char *embd_log_safe(char *out, size_t cap, const char *s);

#endif
