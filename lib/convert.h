/* embd convert: a GloVe / word2vec / fastText file to the mmap-able pair of a .npy matrix and a vocabulary file. */
#ifndef EMBD_CONVERT_H
#define EMBD_CONVERT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "textvec.h"

typedef struct embd_convert_opts {
	/* EMBD_TEXTVEC_NONE (0, default): found from the file's first bytes (embd_textvec_sniff). */
	embd_textvec_kind kind;
	/* As in embd_textvec_opts; a word that a vocabulary file cannot hold (see below) counts as a bad line. */
	int skip_bad;
	int threads;
	/* As in embd_textvec_opts: input bytes parsed so far (may be NULL; borrowed). */
	_Atomic uint64_t *bytes_done;
} embd_convert_opts;

typedef struct embd_convert_result {
	embd_textvec_kind kind; /* the format read */
	uint64_t in_bytes;      /* size of the input file */
	uint64_t rows, dim;     /* of the matrix written */
	uint64_t skipped;       /* lines (records) left out under skip_bad */
	char first_skip[256];   /* the first one's message, when skipped > 0 */
	uint64_t parse_ns, write_ns;
} embd_convert_result;

/*
 * Write tv's rows and words as the pair npy_path (a version 1.0 .npy, '<f4',
 * C order, rows x dim, data 64-byte aligned) and vocab_path (word i on line
 * i + 1, each line ending in "\n"). Both are written to new temporary files
 * in their target directories (mode 0666 less the umask), synced, and renamed
 * into place only when both are complete: on failure neither path has been
 * created or replaced, and no temporary file is left. Rows whose word a
 * vocabulary file cannot hold (a newline in it, or a final carriage return;
 * only word2vec binary and `word\r 1 2`-like text lines have them) fail the
 * write (EMBD_EFORMAT naming the row and its word), or with skip_bad are left
 * out and counted in *skipped (may be NULL; first_skip, 256 bytes or NULL,
 * gets the first one's message when it is still empty). *rows_written gets
 * the rows written (may be NULL). All paths borrowed. Errors: EMBD_EFORMAT,
 * EMBD_ECONFIG (the two paths are the same file), -errno from the system
 * calls (message names the path). Thread-safe for distinct paths.
 */
int embd_convert_write(const embd_textvec *tv, const char *npy_path, const char *vocab_path, int skip_bad,
                       uint64_t *rows_written, uint64_t *skipped, char *first_skip, embd_err *e);

/*
 * Convert the file in_path (a regular file: GloVe, word2vec/fastText text or
 * word2vec binary; o->kind or sniffed) into npy_path and vocab_path as
 * embd_convert_write does. o may be NULL (defaults). *r (may be NULL) gets
 * what was done; it is filled as far as the convert went on failure too.
 * Errors, each with a one-line message in e that starts with the path of the
 * file at fault (and for a bad line, the line or record number): everything
 * embd_textvec_parse and embd_convert_write return; EMBD_EFORMAT for a file
 * none of the three formats, or empty, or not a regular file; -errno. Never
 * prints, never exits. Thread-safe for distinct paths.
 */
int embd_convert_file(const char *in_path, const char *npy_path, const char *vocab_path, const embd_convert_opts *o,
                      embd_convert_result *r, embd_err *e);

/*
 * The default vocabulary path for npy_path: ".npy" at its end replaced by
 * ".vocab", or ".vocab" appended when it does not end in ".npy". Writes at
 * most cap bytes with a NUL; returns 0, or EMBD_EOVERFLOW when cap is short.
 */
int embd_convert_vocab_path(const char *npy_path, char *dst, size_t cap);

#endif
