/* The safetensors format: parsing an untrusted header against the size of its file, and picking a table. */
#ifndef EMBD_SAFETENSORS_H
#define EMBD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "error.h"

/* The reference implementation (huggingface/safetensors) refuses headers over 100 MB; so do we. */
#define EMBD_SAFETENSORS_MAX_HEADER 100000000u
/* Nesting of the JSON header: a file needs 3 ({ tensor { shape [ ); anything past this is refused unparsed. */
#define EMBD_SAFETENSORS_MAX_DEPTH 16

/* One tensor of the header. Strings and shape are owned by the embd_safetensors they came from. */
typedef struct embd_safetensors_tensor {
	const char *name;
	const char *dtype; /* as written: "F32", "BF16", "I64", ... */
	size_t ndim;
	const uint64_t *shape; /* ndim dims */
	uint64_t begin;        /* data_offsets, relative to the first byte after the header */
	uint64_t end;
} embd_safetensors_tensor;

/* A parsed header: every offset has been checked against the file size it was parsed with. */
typedef struct embd_safetensors {
	uint64_t header_len;  /* N, the JSON header's length */
	uint64_t data_offset; /* 8 + N: where the data section starts in the file (any alignment) */
	uint64_t data_len;    /* the data section's length: file size - 8 - N */
	size_t ntensors;
	embd_safetensors_tensor *tensors; /* in file order (sorted by data_offsets) */
	void *priv;                       /* the JSON document the strings live in */
	void *priv_dims;                  /* the one block every shape lives in */
} embd_safetensors;

/*
 * Parse the header at the start of buf (len bytes available, borrowed) of a
 * file of file_size bytes (len <= file_size; only the first 8 + N bytes are
 * read, never the data). Checked before anything is trusted: N against the
 * file and EMBD_SAFETENSORS_MAX_HEADER, JSON nesting (scanned before the JSON
 * parser recurses), duplicate keys, '__metadata__' (an object of strings,
 * otherwise ignored), and for each tensor: dtype a string, shape and
 * data_offsets arrays of non-negative integers, begin <= end <= data
 * length, end - begin == prod(shape) * itemsize for known dtypes (the
 * product must fit in 64 bits), and the tensors tiling the data section
 * exactly (see safetensors.c). On success *out is new
 * (embd_safetensors_free). Errors: EMBD_ETRUNC (N or an offset past the
 * file), EMBD_EFORMAT (anything malformed), EMBD_EOVERFLOW (a shape whose
 * size does not fit in 64 bits), -ENOMEM; e says why in one line (without
 * the file name). Thread-safe.
 */
int embd_safetensors_parse(const void *buf, size_t len, uint64_t file_size, embd_safetensors **out, embd_err *e);

/*
 * Read and parse the header of the file at path (borrowed) without reading
 * or mapping its data section: what `embd info` lists. Errors as
 * embd_safetensors_parse plus -errno; e names the file. Thread-safe.
 */
int embd_safetensors_read(const char *path, embd_safetensors **out, embd_err *e);

/* Free a parsed header. NULL is a no-op. */
void embd_safetensors_free(embd_safetensors *st);

/*
 * The tensor a matrix is served from: the one called name when name is
 * neither NULL nor "", else the only 2-D tensor. It must be 2-D and of dtype
 * F32, F16 or BF16 (*dtype gets the embd_dtype). *out is borrowed from st.
 * Errors: EMBD_ECONFIG (no tensor of that name; several 2-D tensors and no
 * name: the message lists each with its shape and dtype, bounded),
 * EMBD_EFORMAT (no 2-D tensor; the named one is not 2-D), EMBD_EDTYPE (its
 * dtype is another one; the message says which). Thread-safe.
 */
int embd_safetensors_pick(const embd_safetensors *st, const char *name, const embd_safetensors_tensor **out,
                          embd_dtype *dtype, embd_err *e);

/* The embd_dtype of a safetensors dtype name: 0, or EMBD_EDTYPE for any but F32, F16 and BF16. */
int embd_safetensors_dtype(const char *name, embd_dtype *out);

/*
 * Write the shape as "(4, 8)" (a 1-D shape as "(4,)", a scalar as "()") into
 * dst (cap bytes, NUL-terminated, cut short with "...)" if it does not fit).
 * Returns the length.
 */
size_t embd_safetensors_shape_text(char *dst, size_t cap, const embd_safetensors_tensor *t);

#endif
