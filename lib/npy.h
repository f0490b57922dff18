/* The NumPy .npy format: parsing untrusted headers and writing our own. */
#ifndef EMBD_NPY_H
#define EMBD_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define EMBD_NPY_MAX_NDIM 8

typedef struct embd_npy {
	int version;       /* 1, 2 or 3 */
	char kind;         /* 'f' float, 'i' signed int, 'u' unsigned int, 'b' bool, ... */
	unsigned itemsize; /* bytes per element */
	int fortran_order; /* 0 or 1 */
	int ndim;
	uint64_t shape[EMBD_NPY_MAX_NDIM];
	size_t data_offset; /* bytes before the first element: magic + header */
	char descr[32];     /* as written, e.g. "<f4" */
} embd_npy;

/*
 * Parse the header at the start of buf (len bytes available, borrowed).
 * Accepts versions 1-3, little-endian or byte-order-free descrs; element
 * data is not looked at. Errors: EMBD_ETRUNC (len too short for the header
 * it announces), EMBD_EFORMAT (not .npy, or a malformed header dict),
 * EMBD_EDTYPE (big-endian or non-numeric descr). Detailed message in e.
 * Thread-safe.
 */
int embd_npy_parse(const void *buf, size_t len, embd_npy *out, embd_err *e);

/* Element count of a parsed header; EMBD_EOVERFLOW if it does not fit in 64 bits. */
int embd_npy_count(const embd_npy *h, uint64_t *count);

/*
 * Write a version 1.0 header for a C-order array of descr and shape into dst
 * (cap bytes). The header is padded with spaces and a newline to a multiple
 * of 64 bytes, as NumPy does. Returns its length, or 0 when cap is too small.
 * embd_npy_header_size() gives the length without writing.
 */
size_t embd_npy_header_write(char *dst, size_t cap, const char *descr, const uint64_t *shape, int ndim);
size_t embd_npy_header_size(const char *descr, const uint64_t *shape, int ndim);

#endif
