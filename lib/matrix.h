/* A loaded matrix: a read-only mapping with a validated shape. A generation (gen.h) owns one. */
#ifndef EMBD_MATRIX_H
#define EMBD_MATRIX_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "error.h"
#include "vocab.h"

typedef enum embd_format {
	EMBD_FORMAT_AUTO = 0, /* by magic bytes, else by extension */
	EMBD_FORMAT_NPY,
	EMBD_FORMAT_RAW,
	EMBD_FORMAT_DEMO, /* the built-in demo matrix; no file */
	EMBD_FORMAT_SAFETENSORS,
	EMBD_FORMAT_GLOVE,        /* GloVe text: `word f1 ... fd` lines; carries its words */
	EMBD_FORMAT_WORD2VEC,     /* word2vec / fastText .vec text: a `rows dim` line first; carries its words */
	EMBD_FORMAT_WORD2VEC_BIN, /* word2vec binary; carries its words */
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
	int dtype_given; /* dtype was named (not the f32 a raw file takes by default): refused for any other format */
	uint64_t offset; /* raw only: bytes to skip before the first row */
	int populate;    /* prefault every page at open (MAP_POPULATE) */
	int lock;        /* mlock the mapping */
	embd_advice advice;
	const char *tensor; /* safetensors only: the tensor to serve; NULL or "": the only 2-D tensor */
	const char *vocab;  /* a vocabulary file naming the rows (embd_gen_open reads it); NULL or "": none */
	/*
	 * Describe the file, do not read its rows (`embd info`): the text formats
	 * are not parsed (info.data is NULL; rows and dim are what the file says;
	 * the vocabulary holds only its first words); lock is ignored.
	 */
	int header_only;
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
	uint64_t heap_bytes; /* rows held in the heap (text formats are parsed); 0 when they are mapped */
	uint64_t load_ns;    /* time embd_matrix_open took (the parse, for text formats) */
	embd_format format;
	const char *source; /* path, or "builtin:demo" */
} embd_matrix_info;

typedef struct embd_matrix embd_matrix;

/* Demo matrix: DEMO_ROWS x DEMO_DIM float32 with E[i][j] = i + j / 1000. */
#define EMBD_DEMO_ROWS 10000
#define EMBD_DEMO_DIM  64

/*
 * Open, validate and map a matrix; the format comes from spec->format, or
 * for EMBD_FORMAT_AUTO from the format table's sniffers (magic bytes, then
 * extension). On success *out is new (embd_matrix_close frees it); on
 * failure *out is not written. Every header field is checked against the
 * file before the mapping is trusted, so a lying header is an error here,
 * never a SIGBUS later; a path that is not a regular file (a FIFO, a device,
 * a directory) is refused without blocking. Errors: -errno (open, fstat,
 * mmap), EMBD_EFORMAT, EMBD_ETRUNC, EMBD_EDTYPE, EMBD_EOVERFLOW, EMBD_ECONFIG
 * (a spec that cannot describe a matrix), EMBD_EUNKNOWNFORMAT (AUTO, and no
 * format recognises the file), EMBD_ENOTAPPLICABLE (the spec names what
 * the file's format does not use: rows, dim, dtype or offset for anything
 * but raw, a tensor for anything but safetensors, a vocabulary file for a
 * format that carries its words; checked before the rows are read); e says
 * why in one line that names the file. Thread-safe.
 */
int embd_matrix_open(const embd_matrix_spec *spec, embd_matrix **out, embd_err *e);

/* Unmap and free. NULL is a no-op. Nothing may point into the mapping any more. */
void embd_matrix_close(embd_matrix *m);

/* Borrowed facts; valid until close. */
const embd_matrix_info *embd_matrix_info_get(const embd_matrix *m);

/*
 * The vocabulary the file carries (GloVe, word2vec: the words), handed over:
 * new (the caller frees it), and the matrix no longer holds it. NULL for
 * formats without words, and on a second call.
 */
embd_vocab *embd_matrix_take_vocab(embd_matrix *m);

/* Name of a format ("npy", "safetensors", "raw", "demo", "auto"); parse one (0 or EMBD_EBADPARAM). */
const char *embd_format_name(embd_format f);
int embd_format_parse(const char *name, embd_format *out);
/* Every name embd_format_parse takes, comma-separated ("auto, npy, raw, demo"), for help and errors. */
size_t embd_format_names(char *buf, size_t cap);
int embd_advice_parse(const char *name, embd_advice *out);

#endif
