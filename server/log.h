/* Logging: one access-log line per request, and errors with their cause. */
#ifndef EMBD_LOG_H
#define EMBD_LOG_H

#include <stdio.h>

/* Send logs to path (NULL or "": standard error). Returns 0 or -errno. Not thread-safe: call before serving. */
int embd_log_open(const char *path);

/* One line, prefixed with the time; thread-safe (one write per line). */
void embd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
