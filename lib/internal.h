/* What libembd's modules share inside the library and nobody outside it: the matrix record and the format table. */
#ifndef EMBD_INTERNAL_H
#define EMBD_INTERNAL_H

#include <stddef.h>
#include <sys/stat.h>

#include "error.h"
#include "matrix.h"
#include "vocab.h"

struct embd_matrix {
	void *map; /* the whole file (or the demo's anonymous mapping); NULL before mapping and once a parse is done */
	size_t map_len;
	uint64_t file_bytes;
	float *heap; /* rows a text format parsed (new, freed at close); NULL for the mapped formats */
	size_t heap_bytes;
	embd_vocab *vocab; /* the words a text format carries, until the generation takes them */
	int locked;
	embd_matrix_info info;
	char source[4096];
};

/*
 * One row of the format table (lib/format.c). sniff says how sure it is
 * that a file is in this format from its first bytes and its name: 3 by
 * magic bytes (or a binary header that fits the file), 2 by its first line
 * (text formats), 1 by extension only, 0 not; a tie goes to the earlier row. layout validates the mapped file
 * (m->map, m->map_len) against spec and fills m->info's data, rows, dim and
 * dtype; errors name the file.
 */
typedef struct embd_format_ops {
	embd_format id;
	const char *name;
	int needs_file; /* 0: the format makes its own data (demo) */
	int (*sniff)(const unsigned char *head, size_t len, const char *path, const embd_matrix_spec *spec);
	int (*layout)(struct embd_matrix *m, const embd_matrix_spec *spec, embd_err *e);
	const char *extensions; /* for help: "" or the extensions it is recognised by */
} embd_format_ops;

/*
 * Open path for reading only if it is a regular file, its facts in *st: the
 * descriptor (blocking), or a negative code with e set: -errno, or
 * not_regular ("not a regular file (a FIFO)"). O_NONBLOCK while it opens, so
 * that a FIFO (or a device that waits for a peer) returns at once instead of
 * hanging the thread that loads; anything that is not a regular file is
 * refused before a byte is read. The one way lib opens a file it reads.
 * Thread-safe.
 */
int embd_file_open_regular(const char *path, int not_regular, struct stat *st, embd_err *e);

/*
 * The whole regular file at path read (not mapped) into new anonymous
 * memory: *len bytes at *out, freed with embd_file_free. For files that are
 * parsed, not served: a file cut short while it is read (written over in
 * place, against the advice to replace files by rename) is EMBD_ETRUNC,
 * where reading through a mapping would die of SIGBUS. Other errors: -errno,
 * EMBD_EFORMAT (not a regular file, or empty), EMBD_EOVERFLOW. Messages name
 * the path. Thread-safe.
 */
int embd_file_read(const char *path, unsigned char **out, size_t *len, embd_err *e);
void embd_file_free(unsigned char *buf, size_t len);

/* The row for id; NULL for EMBD_FORMAT_AUTO. */
const embd_format_ops *embd_format_ops_get(embd_format id);

/*
 * The format of a mapped file: the best sniff (magic bytes beat extensions);
 * EMBD_EUNKNOWNFORMAT with a message listing what was tried when none matches.
 */
int embd_format_detect(const struct embd_matrix *m, const embd_matrix_spec *spec, const embd_format_ops **out,
                       embd_err *e);

#endif
