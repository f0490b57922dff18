/* Opening, validating and mapping matrix files through the format table (lib/format.c). */
#include "matrix.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "internal.h"

int embd_advice_parse(const char *name, embd_advice *out)
{
	static const char *const names[] = {"normal", "random", "willneed", "sequential"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (strcmp(name, names[i]) == 0) {
			*out = (embd_advice)i;
			return 0;
		}
	}
	return EMBD_EBADPARAM;
}

int embd_file_open_regular(const char *path, int not_regular, struct stat *st, embd_err *e)
{
	memset(st, 0, sizeof *st);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return embd_err_set(e, -errno, "%s: %s", path, strerror(errno));
	int rc = 0;
	if (fstat(fd, st) != 0 || (S_ISREG(st->st_mode) && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0))
		rc = embd_err_set(e, -errno, "%s: %s", path, strerror(errno));
	else if (!S_ISREG(st->st_mode))
		rc = embd_err_set(e, not_regular, "%s: not a regular file (a %s)", path,
		                  S_ISFIFO(st->st_mode)   ? "FIFO"
		                  : S_ISDIR(st->st_mode)  ? "directory"
		                  : S_ISCHR(st->st_mode)  ? "character device"
		                  : S_ISBLK(st->st_mode)  ? "block device"
		                  : S_ISSOCK(st->st_mode) ? "socket"
		                                          : "special file");
	if (rc == 0)
		return fd;
	close(fd);
	return rc;
}

int embd_file_read(const char *path, unsigned char **out, size_t *len, embd_err *e)
{
	struct stat st;
	int fd = embd_file_open_regular(path, EMBD_EFORMAT, &st, e);
	if (fd < 0)
		return fd;
	int rc = 0;
	unsigned char *buf = MAP_FAILED;
	size_t n = 0;
	if (st.st_size == 0) {
		rc = embd_err_set(e, EMBD_EFORMAT, "%s: file is empty", path);
		goto out;
	}
	if ((uint64_t)st.st_size > SIZE_MAX / 2) {
		rc = embd_err_set(e, EMBD_EOVERFLOW, "%s: %llu bytes do not fit in memory", path,
		                  (unsigned long long)st.st_size);
		goto out;
	}
	n = (size_t)st.st_size;
	/*
	 * Prefaulted in one go (MAP_POPULATE): a fresh 4 KiB page costs ~11 us to
	 * fault in one by one, which made reading 387 MB of GloVe text 0.5 s
	 * slower than parsing it through a mapping; populated, about 0.2 s.
	 */
	buf = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (buf == MAP_FAILED) {
		rc = embd_err_set(e, -errno, "%s: %zu bytes: %s", path, n, strerror(errno));
		goto out;
	}
	for (size_t at = 0; at < n;) {
		size_t want = n - at < ((size_t)1 << 24) ? n - at : (size_t)1 << 24;
		ssize_t got = read(fd, buf + at, want);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = embd_err_set(e, -errno, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (got == 0) {
			rc = embd_err_set(
			    e, EMBD_ETRUNC,
			    "%s: the file was cut short while it was read (%zu of %zu bytes); replace files by "
			    "rename, never by writing over them",
			    path, at, n);
			goto out;
		}
		at += (size_t)got;
	}
out:
	close(fd);
	if (rc != 0 && buf != MAP_FAILED)
		munmap(buf, n);
	if (rc == 0) {
		*out = buf;
		*len = n;
	}
	return rc;
}

void embd_file_free(unsigned char *buf, size_t len)
{
	if (buf != NULL)
		munmap(buf, len);
}

static int map_file(embd_matrix *m, const embd_matrix_spec *spec, embd_err *e)
{
	struct stat st;
	int fd = embd_file_open_regular(spec->path, EMBD_EFORMAT, &st, e);
	if (fd < 0)
		return fd;
	int rc = 0;
	if (st.st_size == 0) {
		rc = embd_err_set(e, EMBD_ETRUNC, "%s: file is empty", spec->path);
		goto out;
	}
	m->map_len = (size_t)st.st_size;
	m->file_bytes = (uint64_t)st.st_size;
	int flags = MAP_SHARED | (spec->populate ? MAP_POPULATE : 0);
	m->map = mmap(NULL, m->map_len, PROT_READ, flags, fd, 0);
	if (m->map == MAP_FAILED) {
		m->map = NULL;
		rc = embd_err_set(e, -errno, "%s: mmap: %s", spec->path, strerror(errno));
	}
out:
	close(fd);
	return rc;
}

int embd_matrix_open(const embd_matrix_spec *spec, embd_matrix **out, embd_err *e)
{
	uint64_t t0 = embd_now_ns();
	embd_matrix *m = calloc(1, sizeof *m);
	if (m == NULL)
		return embd_err_set(e, -ENOMEM, "out of memory");
	int rc;
	const char *path = spec->path != NULL ? spec->path : "";
	/* Without a file and without a format, the demo matrix: it is loaded only when nothing else is named. */
	embd_format format = spec->format == EMBD_FORMAT_AUTO && *path == '\0' ? EMBD_FORMAT_DEMO : spec->format;
	const embd_format_ops *ops = embd_format_ops_get(format);
	snprintf(m->source, sizeof m->source, "%s", ops != NULL && !ops->needs_file ? "builtin:demo" : path);
	if (ops == NULL || ops->needs_file) {
		if (*path == '\0') {
			rc = embd_err_set(e, EMBD_ECONFIG, "matrix format %s needs a file", embd_format_name(format));
			goto fail;
		}
		rc = map_file(m, spec, e);
		if (rc != 0)
			goto fail;
		if (ops == NULL && (rc = embd_format_detect(m, spec, &ops, e)) != 0)
			goto fail;
	}
	if (spec->tensor != NULL && spec->tensor[0] != '\0' && ops != NULL && ops->id != EMBD_FORMAT_SAFETENSORS) {
		rc = embd_err_set(e, EMBD_ECONFIG,
		                  "%s: a tensor (%.200s) is named, but this is a %s file; only safetensors "
		                  "files hold named tensors",
		                  m->source, spec->tensor, ops->name);
		goto fail;
	}
	rc = ops != NULL ? ops->layout(m, spec, e) : EMBD_EINTERNAL; /* detect found one, or failed above */
	if (rc != 0)
		goto fail;
	if (m->info.rows == 0 || m->info.dim == 0) {
		rc = embd_err_set(e, EMBD_EFORMAT, "%s: matrix is empty (shape (%llu, %llu))", m->source,
		                  (unsigned long long)m->info.rows, (unsigned long long)m->info.dim);
		goto fail;
	}
	m->info.row_bytes = (size_t)(m->info.dim * embd_dtype_size(m->info.dtype));
	m->info.data_bytes = m->info.rows * m->info.row_bytes;
	m->info.file_bytes = m->file_bytes != 0 ? m->file_bytes : m->map_len; /* the demo has no file: its mapping */
	m->info.heap_bytes = m->heap_bytes;
	m->info.format = ops->id;
	m->info.source = m->source;

	/* What is served: the mapping, or the rows a text format was parsed into. */
	void *region = m->map != NULL ? m->map : (void *)m->heap;
	size_t region_len = m->map != NULL ? m->map_len : m->heap_bytes;
	static const int advice[] = {MADV_NORMAL, MADV_RANDOM, MADV_WILLNEED, MADV_SEQUENTIAL};
	if (spec->advice != EMBD_ADVICE_NORMAL && m->map != NULL)
		(void)madvise(m->map, m->map_len, advice[spec->advice]); /* a hint: failure changes nothing */
	if (spec->lock && !spec->header_only) {
		if (mlock(region, region_len) != 0) {
			rc = embd_err_set(e, -errno,
			                  "%s: mlock of %zu bytes: %s (raise RLIMIT_MEMLOCK or turn matrix.mlock off)",
			                  m->source, region_len, strerror(errno));
			goto fail;
		}
		m->locked = 1;
	}
	m->info.load_ns = embd_now_ns() - t0;
	*out = m;
	return 0;
fail:
	embd_matrix_close(m);
	return rc;
}

void embd_matrix_close(embd_matrix *m)
{
	if (m == NULL)
		return;
	if (m->map != NULL) {
		if (m->locked)
			munlock(m->map, m->map_len);
		munmap(m->map, m->map_len);
	}
	if (m->heap != NULL && m->locked)
		munlock(m->heap, m->heap_bytes);
	free(m->heap);
	embd_vocab_free(m->vocab);
	free(m);
}

embd_vocab *embd_matrix_take_vocab(embd_matrix *m)
{
	embd_vocab *v = m->vocab;
	m->vocab = NULL;
	return v;
}

const embd_matrix_info *embd_matrix_info_get(const embd_matrix *m)
{
	return &m->info;
}
