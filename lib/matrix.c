/* Opening, validating and mapping matrix files; refcounted generations. */
#include "matrix.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "npy.h"

struct embd_matrix {
	atomic_long refs;
	atomic_long *live;
	void *map;
	size_t map_len;
	int locked;
	embd_matrix_info info;
	char source[4096];
};

static const char *const format_names[] = {
    [EMBD_FORMAT_AUTO] = "auto",
    [EMBD_FORMAT_NPY] = "npy",
    [EMBD_FORMAT_RAW] = "raw",
    [EMBD_FORMAT_DEMO] = "demo",
};

const char *embd_format_name(embd_format f)
{
	return format_names[f];
}

int embd_format_parse(const char *name, embd_format *out)
{
	for (size_t i = 0; i < sizeof format_names / sizeof format_names[0]; i++) {
		if (strcmp(name, format_names[i]) == 0) {
			*out = (embd_format)i;
			return 0;
		}
	}
	return EMBD_EBADPARAM;
}

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

static int has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* rows * dim * itemsize without overflow; EMBD_EOVERFLOW otherwise. */
static int shape_bytes(uint64_t rows, uint64_t dim, size_t itemsize, uint64_t *out)
{
	if (dim != 0 && itemsize > UINT64_MAX / dim)
		return EMBD_EOVERFLOW;
	uint64_t row = dim * itemsize;
	if (row != 0 && rows > UINT64_MAX / row)
		return EMBD_EOVERFLOW;
	*out = rows * row;
	return 0;
}

static int npy_dtype(const embd_npy *h, embd_dtype *out)
{
	if (h->kind == 'f' && h->itemsize == 4)
		*out = EMBD_F32;
	else if (h->kind == 'f' && h->itemsize == 2)
		*out = EMBD_F16;
	else
		return EMBD_EDTYPE;
	return 0;
}

/* Fill info from the .npy header at the start of the mapping. */
static int layout_npy(embd_matrix *m, embd_err *e)
{
	embd_npy h;
	const char *src = m->source;
	embd_err why;
	int rc = embd_npy_parse(m->map, m->map_len, &h, &why);
	if (rc != 0)
		return embd_err_set(e, rc, "%s: %s", src, why.msg);
	if (npy_dtype(&h, &m->info.dtype) != 0)
		return embd_err_set(e, EMBD_EDTYPE,
		                    "%s: dtype '%s' is not supported (float32 '<f4' and float16 '<f2' are)", src,
		                    h.descr);
	if (h.fortran_order)
		return embd_err_set(e, EMBD_EFORMAT,
		                    "%s: array is in Fortran order; save it C-contiguous (np.ascontiguousarray)", src);
	if (h.ndim != 2)
		return embd_err_set(e, EMBD_EFORMAT, "%s: array has %d dimensions; a matrix needs 2 (rows, dim)", src,
		                    h.ndim);
	m->info.rows = h.shape[0];
	m->info.dim = h.shape[1];
	uint64_t need;
	if (shape_bytes(h.shape[0], h.shape[1], h.itemsize, &need) != 0)
		return embd_err_set(e, EMBD_EOVERFLOW, "%s: shape (%llu, %llu) x %u bytes overflows", src,
		                    (unsigned long long)h.shape[0], (unsigned long long)h.shape[1], h.itemsize);
	if (need > m->map_len - h.data_offset)
		return embd_err_set(e, EMBD_ETRUNC,
		                    "%s: header says shape (%llu, %llu) of '%s', which needs %llu data bytes, but the "
		                    "file has %llu after its %zu-byte header",
		                    src, (unsigned long long)h.shape[0], (unsigned long long)h.shape[1], h.descr,
		                    (unsigned long long)need, (unsigned long long)(m->map_len - h.data_offset),
		                    h.data_offset);
	m->info.data = (const unsigned char *)m->map + h.data_offset;
	return 0;
}

static int layout_raw(embd_matrix *m, const embd_matrix_spec *spec, embd_err *e)
{
	const char *src = m->source;
	size_t item = embd_dtype_size(spec->dtype);
	if (spec->dim == 0)
		return embd_err_set(e, EMBD_ECONFIG, "%s: a raw matrix needs its dim (--dim N)", src);
	if (spec->offset > m->map_len)
		return embd_err_set(e, EMBD_ETRUNC, "%s: offset %llu is past the end of the %zu-byte file", src,
		                    (unsigned long long)spec->offset, m->map_len);
	uint64_t avail = m->map_len - spec->offset, row_bytes, need;
	if (shape_bytes(1, spec->dim, item, &row_bytes) != 0)
		return embd_err_set(e, EMBD_EOVERFLOW, "%s: dim %llu overflows", src, (unsigned long long)spec->dim);
	if (row_bytes == 0)
		return embd_err_set(e, EMBD_ECONFIG, "%s: rows of 0 bytes", src);
	uint64_t rows = spec->rows;
	if (rows == 0) {
		if (avail % row_bytes != 0)
			return embd_err_set(
			    e, EMBD_EFORMAT,
			    "%s: %llu data bytes is not a whole number of %llu-byte rows (dim %llu, %s)", src,
			    (unsigned long long)avail, (unsigned long long)row_bytes, (unsigned long long)spec->dim,
			    embd_dtype_name(spec->dtype));
		rows = avail / row_bytes;
	}
	if (shape_bytes(rows, spec->dim, item, &need) != 0)
		return embd_err_set(e, EMBD_EOVERFLOW, "%s: shape (%llu, %llu) overflows", src,
		                    (unsigned long long)rows, (unsigned long long)spec->dim);
	if (need > avail)
		return embd_err_set(e, EMBD_ETRUNC,
		                    "%s: shape (%llu, %llu) of %s needs %llu bytes but the file has %llu", src,
		                    (unsigned long long)rows, (unsigned long long)spec->dim,
		                    embd_dtype_name(spec->dtype), (unsigned long long)need, (unsigned long long)avail);
	m->info.rows = rows;
	m->info.dim = spec->dim;
	m->info.dtype = spec->dtype;
	m->info.data = (const unsigned char *)m->map + spec->offset;
	return 0;
}

static int map_demo(embd_matrix *m)
{
	m->map_len = (size_t)EMBD_DEMO_ROWS * EMBD_DEMO_DIM * sizeof(float);
	m->map = mmap(NULL, m->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m->map == MAP_FAILED) {
		m->map = NULL;
		return -errno;
	}
	float *f = m->map;
	for (size_t i = 0; i < EMBD_DEMO_ROWS; i++)
		for (size_t j = 0; j < EMBD_DEMO_DIM; j++)
			f[i * EMBD_DEMO_DIM + j] = (float)i + (float)j / 1000.0f;
	/* Read-only from here on, like a file mapping. */
	if (mprotect(m->map, m->map_len, PROT_READ) != 0)
		return -errno;
	m->info.rows = EMBD_DEMO_ROWS;
	m->info.dim = EMBD_DEMO_DIM;
	m->info.dtype = EMBD_F32;
	m->info.data = m->map;
	return 0;
}

static int map_file(embd_matrix *m, const embd_matrix_spec *spec, embd_err *e)
{
	/*
	 * O_NONBLOCK so that opening a FIFO (or a device that waits for a peer)
	 * returns at once instead of hanging the thread that loads; anything that
	 * is not a regular file is refused before a byte is read.
	 */
	int fd = open(spec->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return embd_err_set(e, -errno, "%s: %s", spec->path, strerror(errno));
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) != 0) {
		rc = embd_err_set(e, -errno, "%s: %s", spec->path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = embd_err_set(e, EMBD_EFORMAT, "%s: not a regular file (a %s)", spec->path,
		                  S_ISFIFO(st.st_mode)   ? "FIFO"
		                  : S_ISDIR(st.st_mode)  ? "directory"
		                  : S_ISCHR(st.st_mode)  ? "character device"
		                  : S_ISBLK(st.st_mode)  ? "block device"
		                  : S_ISSOCK(st.st_mode) ? "socket"
		                                         : "special file");
		goto out;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
		rc = embd_err_set(e, -errno, "%s: %s", spec->path, strerror(errno));
		goto out;
	}
	if (st.st_size == 0) {
		rc = embd_err_set(e, EMBD_ETRUNC, "%s: file is empty", spec->path);
		goto out;
	}
	m->map_len = (size_t)st.st_size;
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

static void unmap(embd_matrix *m)
{
	if (m->map != NULL) {
		if (m->locked)
			munlock(m->map, m->map_len);
		munmap(m->map, m->map_len);
	}
	free(m);
}

int embd_matrix_open(const embd_matrix_spec *spec, embd_matrix **out, embd_err *e)
{
	embd_matrix *m = calloc(1, sizeof *m);
	if (m == NULL)
		return embd_err_set(e, -ENOMEM, "out of memory");
	int rc;
	embd_format format = spec->format;
	int demo = format == EMBD_FORMAT_DEMO || (format == EMBD_FORMAT_AUTO && (spec->path == NULL || !*spec->path));
	snprintf(m->source, sizeof m->source, "%s", demo ? "builtin:demo" : spec->path ? spec->path : "");
	if (demo) {
		format = EMBD_FORMAT_DEMO;
		rc = map_demo(m);
		if (rc != 0) {
			embd_err_set(e, rc, "demo matrix: %s", strerror(-rc));
			goto fail;
		}
	} else {
		if (spec->path == NULL || *spec->path == '\0') {
			rc = embd_err_set(e, EMBD_ECONFIG, "matrix format %s needs a file", embd_format_name(format));
			goto fail;
		}
		rc = map_file(m, spec, e);
		if (rc != 0)
			goto fail;
		if (format == EMBD_FORMAT_AUTO) {
			int is_npy = m->map != NULL && m->map_len >= 6 && memcmp(m->map, "\x93NUMPY", 6) == 0;
			if (is_npy || has_suffix(m->source, ".npy"))
				format = EMBD_FORMAT_NPY;
			else if (spec->dim != 0)
				format = EMBD_FORMAT_RAW;
			else {
				rc = embd_err_set(
				    e, EMBD_EFORMAT,
				    "%s: unknown format: not a .npy file; for a raw matrix give --dim and --dtype",
				    spec->path);
				goto fail;
			}
		}
		rc = format == EMBD_FORMAT_NPY ? layout_npy(m, e) : layout_raw(m, spec, e);
		if (rc != 0)
			goto fail;
	}
	if (m->info.rows == 0 || m->info.dim == 0) {
		rc = embd_err_set(e, EMBD_EFORMAT, "%s: matrix is empty (shape (%llu, %llu))", m->source,
		                  (unsigned long long)m->info.rows, (unsigned long long)m->info.dim);
		goto fail;
	}
	m->info.row_bytes = (size_t)(m->info.dim * embd_dtype_size(m->info.dtype));
	m->info.data_bytes = m->info.rows * m->info.row_bytes;
	m->info.file_bytes = m->map_len;
	m->info.generation = spec->generation;
	m->info.format = format;
	m->info.source = m->source;

	static const int advice[] = {MADV_NORMAL, MADV_RANDOM, MADV_WILLNEED, MADV_SEQUENTIAL};
	if (spec->advice != EMBD_ADVICE_NORMAL)
		(void)madvise(m->map, m->map_len, advice[spec->advice]); /* a hint: failure changes nothing */
	if (spec->lock) {
		if (mlock(m->map, m->map_len) != 0) {
			rc = embd_err_set(e, -errno,
			                  "%s: mlock of %zu bytes: %s (raise RLIMIT_MEMLOCK or turn matrix.mlock off)",
			                  m->source, m->map_len, strerror(errno));
			goto fail;
		}
		m->locked = 1;
	}
	atomic_init(&m->refs, 1);
	m->live = spec->live;
	if (m->live != NULL)
		atomic_fetch_add(m->live, 1);
	*out = m;
	return 0;
fail:
	unmap(m);
	return rc;
}

embd_matrix *embd_matrix_retain(embd_matrix *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
	return m;
}

void embd_matrix_release(embd_matrix *m)
{
	if (m == NULL)
		return;
	if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
		return;
	atomic_long *live = m->live;
	unmap(m);
	if (live != NULL)
		atomic_fetch_sub(live, 1);
}

const embd_matrix_info *embd_matrix_info_get(const embd_matrix *m)
{
	return &m->info;
}

long embd_matrix_refs(const embd_matrix *m)
{
	return atomic_load(&((embd_matrix *)m)->refs);
}

void embd_matrix_slot_init(embd_matrix_slot *s, embd_matrix *m)
{
	pthread_mutex_init(&s->lock, NULL);
	s->current = m;
}

embd_matrix *embd_matrix_slot_acquire(embd_matrix_slot *s)
{
	/* The lock makes load-and-retain atomic against a concurrent swap's release. */
	pthread_mutex_lock(&s->lock);
	embd_matrix *m = embd_matrix_retain(s->current);
	pthread_mutex_unlock(&s->lock);
	return m;
}

void embd_matrix_slot_swap(embd_matrix_slot *s, embd_matrix *m)
{
	pthread_mutex_lock(&s->lock);
	embd_matrix *old = s->current;
	s->current = m;
	pthread_mutex_unlock(&s->lock);
	embd_matrix_release(old);
}

void embd_matrix_slot_destroy(embd_matrix_slot *s)
{
	embd_matrix_release(s->current);
	s->current = NULL;
	pthread_mutex_destroy(&s->lock);
}
