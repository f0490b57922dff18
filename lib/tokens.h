/* Token lists from untrusted request input, and their look-up in a vocabulary with an out-of-vocabulary policy. */
#ifndef EMBD_TOKENS_H
#define EMBD_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "vocab.h"

/*
 * One token of a request: len bytes at p, followed by a NUL (p is borrowed
 * from an arena the parser filled). Parsed tokens are non-empty, valid UTF-8
 * and hold no NUL byte.
 */
typedef struct embd_token {
	const char *p;
	size_t len;
} embd_token;

/* What to do with a token the vocabulary does not have. */
typedef enum embd_oov {
	EMBD_OOV_ERROR = 0, /* the request fails: EMBD_ETOKEN, listing the unknown tokens */
	EMBD_OOV_ZERO,      /* a row of zeros stands for it */
	EMBD_OOV_SKIP,      /* it is left out of the answer */
} embd_oov;

/* "error", "zero", "skip" (the ?oov= names); 0 or EMBD_EBADPARAM. */
int embd_oov_parse(const char *name, embd_oov *out);

/*
 * The tokens of a query value "king,queen" (len bytes, already
 * percent-decoded, not NUL-terminated): a comma separates tokens, so a token
 * holding a comma must come in a JSON body; nothing else is special (spaces
 * belong to the token). With out NULL, validates the whole list and sets *n
 * (tokens) and *bytes (arena bytes the fill needs: len + *n); with out (room
 * for *n) and arena (room for *bytes), fills both. Errors: EMBD_EEMPTY (no
 * token), EMBD_EBADTOKEN (an empty token, a NUL byte, invalid UTF-8), with e
 * naming the token's position. On any error *n is 0. Thread-safe.
 */
int embd_tokens_parse_list(const char *s, size_t len, embd_token *out, char *arena, size_t *n, size_t *bytes,
                           embd_err *e);

/*
 * Look up toks[0 .. *n) in v. ids[i] becomes the row of toks[i], or
 * EMBD_VOCAB_NONE when v does not have it, and *unknown counts those. Then
 * by oov: ERROR fails with EMBD_ETOKEN when *unknown > 0 (e lists the first
 * unknown tokens, quoted, as many as fit, and the total; ids[] still marks
 * each unknown one, for a caller that lists them); ZERO keeps the
 * EMBD_VOCAB_NONE ids (rows of zeros, see embd_plan_runs); SKIP removes the
 * unknown tokens from toks[] and ids[] alike and lowers *n. Thread-safe for
 * a finished vocabulary.
 */
int embd_tokens_resolve(const embd_vocab *v, embd_token *toks, size_t *n, embd_oov oov, int64_t *ids, size_t *unknown,
                        embd_err *e);

/* Bytes a JSON array of these tokens, escaped by embd_json_escape (commas, quotes and brackets included), can take. */
uint64_t embd_tokens_json_bound(const embd_token *toks, size_t n);

#endif
