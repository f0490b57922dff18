/* A matrix and its vocabulary file as one pair on disk: the directory lock that keeps a convert and a load apart. */
#include "pair.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int embd_pair_lock(const char *matrix_path, int exclusive)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(matrix_path, '/');
	int n = slash == NULL ? snprintf(dir, sizeof dir, ".")
	                      : snprintf(dir, sizeof dir, "%.*s", (int)(slash == matrix_path ? 1 : slash - matrix_path),
	                                 matrix_path);
	if (n < 0 || (size_t)n >= sizeof dir)
		return -1;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc;
	while ((rc = flock(fd, exclusive ? LOCK_EX : LOCK_SH)) != 0 && errno == EINTR)
		;
	if (rc != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

void embd_pair_unlock(int fd)
{
	if (fd >= 0)
		close(fd); /* the lock goes with the last descriptor of its open file */
}
