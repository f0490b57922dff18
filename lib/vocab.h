/* Vocabularies: token <-> row id, a hash table built once at load, and the parser of vocabulary files. */
#ifndef EMBD_VOCAB_H
#define EMBD_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/*
 * A vocabulary names each row of a matrix: token i is row i. Tokens are byte
 * strings of 1 or more bytes, valid UTF-8, with no NUL and no newline, not
 * ending in a carriage return (so that every token survives a round trip
 * through a vocabulary file with "\n" or "\r\n" endings), and all distinct.
 * At most EMBD_VOCAB_MAX tokens.
 *
 * Memory: the token bytes live in one arena (each followed by a NUL), one
 * 64-bit offset per token, and an open-addressing table of 64-bit slots
 * (a 32-bit tag of the token's hash and its id), kept at most half full, so
 * that a look-up costs one hash and, almost always, one or two probes.
 */
typedef struct embd_vocab embd_vocab;

/* The most tokens a vocabulary holds (ids are stored in 32 bits). */
#define EMBD_VOCAB_MAX ((uint64_t)UINT32_MAX - 1)

/* What embd_vocab_find answers for a token that is not in the vocabulary. */
#define EMBD_VOCAB_NONE ((int64_t)-1)

/*
 * Builder, for parsers of files that carry their own tokens (GloVe,
 * word2vec). embd_vocab_new starts an empty vocabulary; tokens_hint and
 * bytes_hint (total token bytes) size it up front when the caller knows
 * them (0: unknown; it grows by doubling either way). Bound hints by what
 * the input can hold (a header's row count by the file's size): the memory
 * is reserved at once. *out is new (free it with embd_vocab_free). Errors:
 * -ENOMEM. Thread-safe.
 */
int embd_vocab_new(uint64_t tokens_hint, size_t bytes_hint, embd_vocab **out);

/*
 * Append the token tok (len bytes, borrowed, copied) as the next row: its
 * id is embd_vocab_size() before the call. Errors (EMBD_EVOCAB, nothing
 * added, e says which rule the token breaks and names rows counting from
 * 0): empty, a NUL or newline byte, a final carriage return, invalid UTF-8,
 * a duplicate (the message names both rows; embd_vocab_find on the same
 * bytes gives the first row's id, for callers that name lines instead).
 * EMBD_EOVERFLOW past EMBD_VOCAB_MAX tokens, -ENOMEM, EMBD_EINTERNAL after
 * embd_vocab_finish. Not thread-safe: one builder per thread.
 */
int embd_vocab_add(embd_vocab *v, const void *tok, size_t len, embd_err *e);

/*
 * End building: trim the arena and record the build time (the time from
 * embd_vocab_new to here, including whatever the caller did between adds).
 * After it the vocabulary is read-only and every reader below is
 * thread-safe. Before it, the readers work too, from the builder's thread.
 */
void embd_vocab_finish(embd_vocab *v);

/* The id of the token tok (len bytes, borrowed), or EMBD_VOCAB_NONE. */
int64_t embd_vocab_find(const embd_vocab *v, const void *tok, size_t len);

/*
 * Token id: NUL-terminated, borrowed for the vocabulary's life; its length
 * in *len when len is not NULL. NULL when id >= embd_vocab_size().
 */
const char *embd_vocab_token(const embd_vocab *v, uint64_t id, size_t *len);

/* Number of tokens. */
uint64_t embd_vocab_size(const embd_vocab *v);

/* Bytes of heap the vocabulary holds: arena, offsets, table and record. */
size_t embd_vocab_bytes(const embd_vocab *v);

/* The longest token's length in bytes, once finished (an answer's size is bounded by it before a search). */
size_t embd_vocab_max_token_bytes(const embd_vocab *v);

/* Nanoseconds the build took (see embd_vocab_finish; 0 before it). */
uint64_t embd_vocab_build_ns(const embd_vocab *v);

/* Free v and everything it holds. NULL is a no-op. */
void embd_vocab_free(embd_vocab *v);

/*
 * Parse a vocabulary file's text (len bytes, borrowed): one token per line,
 * line i (counting from 1) names row i-1, lines end in "\n" or "\r\n", and
 * the last line's ending is optional. The tokens follow the rules above.
 * expect_rows is the matrix's row count: a different line count is an
 * error that gives both; 0 accepts any count. An empty text is zero lines.
 * On success *out is new and finished; its build time is the whole parse.
 * Errors: EMBD_EVOCAB with a one-line message naming the line (both lines
 * for a duplicate), EMBD_EOVERFLOW, -ENOMEM. Thread-safe.
 */
int embd_vocab_parse(const char *text, size_t len, uint64_t expect_rows, embd_vocab **out, embd_err *e);

/*
 * Read the vocabulary file at path (borrowed) and parse it as above; the
 * messages start with the path. Anything but a regular file (a FIFO, a
 * directory, a device) is refused with EMBD_EVOCAB before a byte is read,
 * without blocking. Sizes are 64-bit. The build time counts the read too.
 * Other errors: -errno from the system calls. Thread-safe.
 */
int embd_vocab_open(const char *path, uint64_t expect_rows, embd_vocab **out, embd_err *e);

/*
 * For tests only: AND every hash with mask (0 makes every token collide),
 * so that probing and duplicate detection can be tested on long collision
 * chains. Call on an empty builder.
 */
void embd_vocab_test_hash_mask(embd_vocab *v, uint64_t mask);

#endif
