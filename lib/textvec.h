/* Parsers of the text embedding formats that carry their own words: GloVe, word2vec/fastText text, word2vec binary. */
#ifndef EMBD_TEXTVEC_H
#define EMBD_TEXTVEC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef enum embd_textvec_kind {
	EMBD_TEXTVEC_NONE = 0, /* embd_textvec_sniff: none of the three */
	EMBD_TEXTVEC_GLOVE,    /* no header; `word f1 ... fd` per line; d from the first line */
	EMBD_TEXTVEC_W2V_TEXT, /* word2vec / fastText .vec: a `rows dim` line, then GloVe-like lines */
	EMBD_TEXTVEC_W2V_BIN,  /* `rows dim\n`, then per row: word, ' ', dim little-endian float32 */
} embd_textvec_kind;

typedef struct embd_textvec_opts {
	/*
	 * 0 (default): the first bad line (record) fails the parse, and the error
	 * names it. 1: bad lines are left out and counted in embd_textvec.skipped.
	 * A header that disagrees with the number of lines, an unreadable header
	 * and a truncated binary record always fail.
	 */
	int skip_bad;
	/* Threads for the text formats: 0 means 2; 1 parses on the calling thread. */
	int threads;
	/*
	 * Progress (may be NULL; borrowed): the parser adds the input bytes it has
	 * been through, from its threads, about every MiB (relaxed atomic adds),
	 * so that another thread can poll it for a progress bar. A successful
	 * parse adds exactly len in all; a failed one at most len.
	 */
	_Atomic uint64_t *bytes_done;
} embd_textvec_opts;

typedef struct embd_textvec {
	uint64_t rows, dim;
	/* rows * dim float32, row-major, on the heap (new: embd_textvec_free frees it). */
	float *data;
	/*
	 * The words, in row order, in one arena (new: embd_textvec_free frees both
	 * arrays): word i is the bytes words[word_off[i]] .. words[word_off[i + 1] - 2],
	 * followed by a NUL at words[word_off[i + 1] - 1]; word_off has rows + 1
	 * entries and word_off[0] == 0. Each word is non-empty, valid UTF-8 without
	 * NUL or space, and unique among the rows.
	 */
	char *words;
	uint64_t *word_off;
	uint64_t words_bytes; /* == word_off[rows] */
	/* Lines (records) left out under skip_bad, and the message of the first one. */
	uint64_t skipped;
	char first_skip[256];
} embd_textvec;

/*
 * Which of the three formats buf (the whole file, or as much of it as there
 * is: the sniff reads at most its first 1 MiB, and judges a line that runs
 * past that window by its complete fields) is in, from its first line and,
 * for word2vec, the start of the first record. A caller must not cut buf
 * shorter itself: a record line cut inside a number would read as binary.
 * EMBD_TEXTVEC_NONE when the first line is neither a `rows dim` header
 * nor a GloVe line of a word and numbers. A first line of exactly two integers
 * is read as a header (as gensim does). Never fails; pure.
 */
embd_textvec_kind embd_textvec_sniff(const unsigned char *buf, size_t len);

/* "glove", "word2vec", "word2vec_bin", "none". Static storage. */
const char *embd_textvec_kind_name(embd_textvec_kind kind);

/*
 * Parse buf[0 .. len) (borrowed; typically the mmapped file, read only) as
 * kind into *out, which is new on success (free with embd_textvec_free) and
 * zeroed on failure. o may be NULL (defaults). The floats are bit-identical to
 * gensim's KeyedVectors.load_word2vec_format (np.float32 of each token: the
 * decimal text rounded to the nearest double, then to float32); see
 * lib/textvec.c for the exact number syntax. Errors, each with a message that
 * names the 1-based line (text) or record (binary) in e:
 *   EMBD_EFORMAT  bad header, wrong column count, unparsable number, empty word,
 *                 invalid UTF-8, duplicate word, header rows != lines, no rows
 *   EMBD_ETRUNC   a binary record that runs past the end
 *   EMBD_EOVERFLOW rows * dim floats do not fit in memory sizes
 *   -ENOMEM, or -errno from pthread_create.
 * Thread-safe (no shared state); uses o->threads threads for text.
 */
int embd_textvec_parse(const unsigned char *buf, size_t len, embd_textvec_kind kind, const embd_textvec_opts *o,
                       embd_textvec *out, embd_err *e);

#define EMBD_TEXTVEC_PEEK_WORDS 8

/* What embd_textvec_peek finds. */
typedef struct embd_textvec_peek {
	uint64_t rows;                           /* the header's; GloVe: the lines */
	uint64_t dim;                            /* the header's; GloVe: the fields after the first line's word */
	size_t nwords;                           /* first words found, at most EMBD_TEXTVEC_PEEK_WORDS */
	char words[EMBD_TEXTVEC_PEEK_WORDS][64]; /* NUL-terminated, cut to 63 bytes, not checked */
} embd_textvec_look;

/*
 * A look at buf (len bytes, borrowed) as kind without reading a number: the
 * shape and the first words, for `embd info`. Rows and words are what the
 * file says, not what a parse would accept (that takes embd_textvec_parse).
 * GloVe counts lines (one memchr pass). Errors: EMBD_EFORMAT (no header, no
 * numbers on the first line). Thread-safe.
 */
int embd_textvec_peek(const unsigned char *buf, size_t len, embd_textvec_kind kind, embd_textvec_look *out,
                      embd_err *e);

/* Free what embd_textvec_parse made and zero *tv. NULL is a no-op. */
void embd_textvec_free(embd_textvec *tv);

#endif
