/* A loaded matrix: a read-only mapping with a validated shape, refcounted as one generation. */
#ifndef EMBD_MATRIX_H
#define EMBD_MATRIX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "error.h"

typedef enum embd_format {
	EMBD_FORMAT_AUTO = 0, /* by magic bytes, else by extension */
	EMBD_FORMAT_NPY,
	EMBD_FORMAT_RAW,
	EMBD_FORMAT_DEMO, /* the built-in demo matrix; no file */
} embd_format;

typedef enum embd_advice {
	EMBD_ADVICE_NORMAL = 0,
	EMBD_ADVICE_RANDOM,
	EMBD_ADVICE_WILLNEED,
	EMBD_ADVICE_SEQUENTIAL,
} embd_advice;

/* What to open and how. Strings are borrowed for the call only. */
typedef struct embd_matrix_spec {
	const char *path; /* NULL or "" with EMBD_FORMAT_DEMO or AUTO: the demo matrix */
	embd_format format;
	/* raw only: rows may be 0 (derived from the file size), dim and dtype are required */
	uint64_t rows;
	uint64_t dim;
	embd_dtype dtype;
	uint64_t offset; /* raw only: bytes to skip before the first row */
	int populate;    /* prefault every page at open (MAP_POPULATE) */
	int lock;        /* mlock the mapping */
	embd_advice advice;
	uint64_t generation; /* number stamped on this generation */
	atomic_long *live;   /* optional, borrowed for the matrix's life: count of live generations */
} embd_matrix_spec;

/* Read-only facts of an open matrix; valid while a reference is held. */
typedef struct embd_matrix_info {
	const unsigned char *data; /* first byte of row 0 */
	uint64_t rows;
	uint64_t dim;
	embd_dtype dtype;
	size_t row_bytes;
	uint64_t data_bytes; /* rows * row_bytes */
	uint64_t file_bytes;
	uint64_t generation;
	embd_format format;
	const char *source; /* path, or "builtin:demo" */
} embd_matrix_info;

typedef struct embd_matrix embd_matrix;

/* Demo matrix: DEMO_ROWS x DEMO_DIM float32 with E[i][j] = i + j / 1000. */
#define EMBD_DEMO_ROWS 10000
#define EMBD_DEMO_DIM  64

/*
 * Open, validate and map a matrix. On success *out is new with one reference.
 * Every header field is checked against the file before the mapping is
 * trusted, so a lying header is an error here, never a SIGBUS later.
 * Errors: -errno (open, fstat, mmap), EMBD_EFORMAT, EMBD_ETRUNC, EMBD_EDTYPE,
 * EMBD_EOVERFLOW, EMBD_ECONFIG (a spec that cannot describe a matrix); e says
 * why in one line that names the file. Thread-safe.
 */
int embd_matrix_open(const embd_matrix_spec *spec, embd_matrix **out, embd_err *e);

/* Take another reference; returns m. Thread-safe (atomic). */
embd_matrix *embd_matrix_retain(embd_matrix *m);

/* Drop a reference; the last one unmaps and frees. NULL is a no-op. Thread-safe. */
void embd_matrix_release(embd_matrix *m);

/* Borrowed facts; valid while the caller holds a reference. */
const embd_matrix_info *embd_matrix_info_get(const embd_matrix *m);

/* Current reference count (for tests and metrics; racy by nature). */
long embd_matrix_refs(const embd_matrix *m);

/* Name of a format ("npy", "raw", "demo", "auto"); parse one. */
const char *embd_format_name(embd_format f);
int embd_format_parse(const char *name, embd_format *out);
int embd_advice_parse(const char *name, embd_advice *out);

/*
 * The server's current generation. acquire() returns a new reference to the
 * current matrix; swap() installs a new one (stealing its reference) and drops
 * the slot's reference to the old one, which lives on until the responses
 * that still point into it are done. All three are thread-safe.
 */
typedef struct embd_matrix_slot {
	pthread_mutex_t lock;
	embd_matrix *current;
} embd_matrix_slot;

void embd_matrix_slot_init(embd_matrix_slot *s, embd_matrix *m); /* steals m */
embd_matrix *embd_matrix_slot_acquire(embd_matrix_slot *s);
void embd_matrix_slot_swap(embd_matrix_slot *s, embd_matrix *m); /* steals m */
void embd_matrix_slot_destroy(embd_matrix_slot *s);

#endif
