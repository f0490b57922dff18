/* What libembd's modules share inside the library and nobody outside it: the matrix record and the format table. */
#ifndef EMBD_INTERNAL_H
#define EMBD_INTERNAL_H

#include <locale.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "error.h"
#include "matrix.h"
#include "textvec.h"
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
 * (text formats), 1 by extension only, 0 not; a tie goes to the earlier
 * row. A row describes; loading (matrix.c) loads. For a mapped format,
 * layout validates the mapping (m->map, m->map_len) against spec and fills
 * m->info's data, rows, dim and dtype, errors naming the file. A text format
 * has no layout but its textvec kind: matrix.c reads the file, parses it
 * and builds its vocabulary.
 */
/* What of a spec a format reads besides the path (embd_format_ops.uses); a field it does not read is refused. */
enum {
	EMBD_USES_SHAPE = 1,  /* rows, dim, dtype, offset: a raw file has no header to carry them */
	EMBD_USES_TENSOR = 2, /* tensor: only safetensors files hold named tensors */
	EMBD_USES_VOCAB = 4,  /* vocab: a vocabulary file; the text formats carry their own words */
};

typedef struct embd_format_ops {
	embd_format id;
	const char *name;
	int needs_file; /* 0: the format makes its own data (demo) */
	unsigned uses;  /* EMBD_USES_* */
	int (*sniff)(const unsigned char *head, size_t len, const char *path, const embd_matrix_spec *spec);
	int (*layout)(struct embd_matrix *m, const embd_matrix_spec *spec, embd_err *e); /* NULL for text */
	embd_textvec_kind text; /* EMBD_TEXTVEC_NONE, or the text format it is */
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

/*
 * Text vector files (textvec.h), split by format: textvec.c (the API, and
 * what the formats share), textvec_text.c (GloVe, word2vec/fastText text),
 * textvec_bin.c (word2vec binary), textvec_num.c (numbers as gensim reads
 * them). Lines are [p, le) views of the file; nothing here allocates but
 * the two parsers and embd_tv_dedup.
 */
/* Add the bytes from *reported to p to *done (when there is one) once they make a step, or when final. */
void embd_tv_progress(_Atomic uint64_t *done, const unsigned char **reported, const unsigned char *p, int final);
/* Why a word is refused (empty, a NUL, invalid UTF-8), with *at the byte; NULL when it is a word. */
const char *embd_tv_word_problem(const unsigned char *w, size_t n, size_t *at);
/* A `rows dim` header line [p, le): 0, or -1 when it is not one. */
int embd_tv_parse_header(const unsigned char *p, const unsigned char *le, uint64_t *rows, uint64_t *dim);
/* Keep the first skipped line's message (the lowest line) in tv->first_skip. */
void embd_tv_note_skip(embd_textvec *tv, uint64_t *first_line, uint64_t line, const char *unit, const char *msg);
/* EMBD_EFORMAT for no rows or no numbers, EMBD_EOVERFLOW when rows x dim floats do not fit; else 0. */
int embd_tv_check_rows_dim(uint64_t rows, uint64_t dim, embd_err *e);
/* Duplicate words: an error naming both lines, or (skip) the later copies left out. */
int embd_tv_dedup(embd_textvec *tv, uint64_t *line_of, int skip, const char *unit, uint64_t *first_line, embd_err *e);
/* The whitespace bytes.rstrip() drops at a line's end. */
int embd_tv_line_ws(unsigned char c);
/* One field at p (up to the next space or le) as np.float32(float(field)): its end, or NULL when not a number. */
const unsigned char *embd_tv_parse_field(const unsigned char *p, const unsigned char *le, float *out, locale_t loc);
/* Lines in [b, e) (a last line without '\n' counts). */
uint64_t embd_tv_count_lines(const unsigned char *b, const unsigned char *e);
/* The fields after the word of a line, for messages. */
uint64_t embd_tv_count_fields(const unsigned char *p, const unsigned char *le);
/* The text formats (header: word2vec/fastText's `rows dim` line first) and word2vec binary, as embd_textvec_parse. */
int embd_tv_parse_text(const unsigned char *buf, size_t len, int header, const embd_textvec_opts *o, embd_textvec *tv,
                       embd_err *e);
int embd_tv_parse_bin(const unsigned char *buf, size_t len, const embd_textvec_opts *o, embd_textvec *tv, embd_err *e);

#endif
