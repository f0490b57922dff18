/*
 * libFuzzer target: whole matrix files as the daemon opens them (format by
 * magic, every header field checked against the file), then the first and
 * last row are read, which must not fault whatever the header claimed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "matrix.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64];

static volatile unsigned char sink;

static void open_and_touch(const embd_matrix_spec *spec)
{
	embd_matrix *m;
	embd_err e;
	if (embd_matrix_open(spec, &m, &e) != 0)
		return;
	const embd_matrix_info *i = embd_matrix_info_get(m);
	if (i->rows == 0 || i->row_bytes == 0 || i->data_bytes != i->rows * i->row_bytes ||
	    i->data_bytes > i->file_bytes)
		abort(); /* an accepted matrix must describe bytes that exist */
	sink = i->data[0];
	sink = i->data[i->data_bytes - 1];
	embd_matrix_close(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fd < 0) {
		fd = memfd_create("fuzz-matrix", 0);
		if (fd < 0)
			abort();
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	embd_matrix_spec spec;
	memset(&spec, 0, sizeof spec);
	spec.path = path;
	spec.format = EMBD_FORMAT_NPY;
	open_and_touch(&spec);
	/* The same bytes as a raw matrix, with a dim and offset taken from the first bytes. */
	if (size >= 2) {
		spec.format = EMBD_FORMAT_RAW;
		spec.dim = data[0] % 17;
		spec.offset = data[1] % 9;
		spec.dtype = (embd_dtype)(data[0] % 3);
		open_and_touch(&spec);
	}
	return 0;
}
