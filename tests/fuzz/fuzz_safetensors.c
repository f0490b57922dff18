/*
 * libFuzzer target: whole safetensors files. The header is parsed from the
 * fuzzer's own buffer (where ASan sees every byte read) and each tensor's
 * first and last byte is touched; then the same bytes, as a file, are opened
 * as a matrix (sniffed and by name), whose first and last row must be in the
 * file whatever the header claimed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "matrix.h"
#include "safetensors.h"

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
	sink = i->data[i->row_bytes - 1];
	sink = i->data[i->data_bytes - i->row_bytes];
	sink = i->data[i->data_bytes - 1];
	embd_matrix_close(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fd < 0) {
		fd = memfd_create("fuzz-safetensors", 0);
		if (fd < 0)
			abort();
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	}
	/* The parser on the bytes themselves: every tensor it accepts lies inside them. */
	embd_safetensors *st;
	embd_err e;
	if (embd_safetensors_parse(data, size, size, &st, &e) == 0) {
		for (size_t k = 0; k < st->ntensors; k++) {
			const embd_safetensors_tensor *t = &st->tensors[k];
			if (t->begin > t->end || t->end > st->data_len || st->data_offset + st->data_len != size)
				abort();
			if (t->end > t->begin) {
				sink = data[st->data_offset + t->begin];
				sink = data[st->data_offset + t->end - 1];
			}
			char sh[64];
			embd_safetensors_shape_text(sh, sizeof sh, t);
		}
		const embd_safetensors_tensor *t;
		embd_dtype dt;
		if (embd_safetensors_pick(st, NULL, &t, &dt, &e) == 0 &&
		    (t->ndim != 2 || t->end - t->begin != t->shape[0] * t->shape[1] * embd_dtype_size(dt)))
			abort();
		if (st->ntensors > 0)
			(void)embd_safetensors_pick(st, st->tensors[st->ntensors - 1].name, &t, &dt, &e);
		embd_safetensors_free(st);
	}
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	embd_matrix_spec spec;
	memset(&spec, 0, sizeof spec);
	spec.path = path;
	spec.format = EMBD_FORMAT_AUTO;
	open_and_touch(&spec);
	spec.format = EMBD_FORMAT_SAFETENSORS;
	open_and_touch(&spec);
	if (embd_safetensors_read(path, &st, &e) == 0) {
		/* By name: the last tensor in data order (its name outlives st only until free). */
		spec.tensor = st->ntensors > 0 ? st->tensors[st->ntensors - 1].name : NULL;
		open_and_touch(&spec);
		embd_safetensors_free(st);
	}
	return 0;
}
