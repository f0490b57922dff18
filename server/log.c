/* Logging: timestamped lines, each written with one write(2) so threads never interleave. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_fd = 2;
static char log_path[4096]; /* empty: standard error */
static enum embd_log_level log_level = EMBD_LOG_INFO;
static const char *const level_names[] = {"error", "warn", "notice", "info"};

int embd_log_open(const char *path)
{
	if (path == NULL || *path == '\0')
		return 0;
	if (strlen(path) >= sizeof log_path)
		return -ENAMETOOLONG;
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	log_fd = fd;
	memcpy(log_path, path, strlen(path) + 1);
	return 0;
}

int embd_log_reopen(void)
{
	if (log_path[0] == '\0')
		return 0;
	int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	/* dup3 swaps the file under the descriptor number at once: a line written meanwhile goes to one or the other.
	 */
	int rc = dup3(fd, log_fd, O_CLOEXEC) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

int embd_log_level_parse(const char *name, enum embd_log_level *out)
{
	for (int i = EMBD_LOG_ERROR; i <= EMBD_LOG_INFO; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum embd_log_level)i;
			return 0;
		}
	}
	return -1;
}

void embd_log_set_level(enum embd_log_level level)
{
	log_level = level;
}

int embd_log_enabled(enum embd_log_level level)
{
	return level <= log_level;
}

void embd_log(enum embd_log_level level, const char *fmt, ...)
{
	if (level > log_level)
		return;
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ %s ", ts.tv_nsec / 1000000, level_names[level]);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
	va_end(ap);
	n = m < 0 ? n : n + (size_t)m;
	if (n > sizeof line - 2)
		n = sizeof line - 2;
	line[n++] = '\n';
	ssize_t w = write(log_fd, line, n);
	(void)w; /* nowhere to report a failed log write */
}

const char *embd_log_safe(char *out, size_t cap, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t k = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p > 0x20 && *p < 0x7f && *p != '\\') {
			if (k + 1 >= cap)
				break;
			out[k++] = (char)*p;
		} else {
			if (k + 4 >= cap)
				break;
			out[k++] = '\\';
			out[k++] = 'x';
			out[k++] = hex[*p >> 4];
			out[k++] = hex[*p & 15];
		}
	}
	out[k] = '\0';
	return out;
}
