/* A matrix and its vocabulary file as one pair on disk: the directory lock that keeps a convert and a load apart. */
#include "pair.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/xattr.h>
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

#define MARK_NAME "user.embd.pair"
#define MARK_LEN  32 /* 16 random bytes in hex */

int embd_pair_mark(int fd_a, int fd_b)
{
	unsigned char raw[MARK_LEN / 2];
	char mark[MARK_LEN + 1];
	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
		return -EIO;
	for (size_t i = 0; i < sizeof raw; i++)
		snprintf(mark + 2 * i, 3, "%02x", raw[i]);
	if (fsetxattr(fd_a, MARK_NAME, mark, MARK_LEN, 0) != 0 || fsetxattr(fd_b, MARK_NAME, mark, MARK_LEN, 0) != 0) {
		int err = errno;
		(void)fremovexattr(fd_a, MARK_NAME);
		return -err;
	}
	return 0;
}

/* The file's mark into out (MARK_LEN + 1 bytes): its length, or 0 when it has none (or no attributes at all). */
static ssize_t read_mark(const char *path, char *out)
{
	ssize_t n = getxattr(path, MARK_NAME, out, MARK_LEN);
	if (n < 0)
		n = 0;
	out[n] = '\0';
	return n;
}

int embd_pair_check(const char *matrix_path, const char *vocab_path, embd_err *e)
{
	char a[MARK_LEN + 1], b[MARK_LEN + 1];
	ssize_t na = read_mark(matrix_path, a), nb = read_mark(vocab_path, b);
	if (na == nb && memcmp(a, b, (size_t)na) == 0)
		return 0;
	return embd_err_set(e, EMBD_ECONFIG,
	                    "%s and %s are not one pair: `embd convert` wrote them in two runs (one stopped between "
	                    "its two renames: run it again), or one of them was replaced by hand (if they do belong "
	                    "together, remove the mark: setfattr -x " MARK_NAME " on both)",
	                    matrix_path, vocab_path);
}
