/* Id lists from untrusted request input: query strings, JSON bodies, .npy and raw binary bodies. */
#ifndef EMBD_IDS_H
#define EMBD_IDS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "error.h"
#include "tokens.h"

/*
 * A borrowed view of n little-endian signed integers of width 4 or 8 bytes.
 * Binary bodies are used in place (no copy); text is parsed into int64.
 */
typedef struct embd_ids {
	const unsigned char *p;
	size_t n;
	unsigned width;
} embd_ids;

static inline int64_t embd_ids_at(const embd_ids *ids, size_t i)
{
	if (ids->width == 8) {
		int64_t v;
		memcpy(&v, ids->p + i * 8, 8);
		return v;
	}
	int32_t v;
	memcpy(&v, ids->p + i * 4, 4);
	return v;
}

/*
 * "3,17,42" (len bytes, not NUL-terminated). With out NULL, only counts: *n is
 * the number of items the list holds (1 + commas), for sizing out. With out
 * (room for *n ids), parses and validates. Errors: EMBD_EEMPTY, EMBD_EBADID
 * (empty item, non-digit, negative, over 2^63-1), with e naming the item.
 * On any error *n is 0.
 */
int embd_ids_parse_list(const char *s, size_t len, int64_t *out, size_t *n, embd_err *e);

/*
 * A JSON body {"ids": [3, 17, 42]}. With out NULL, validates the whole body
 * and sets *n; with out (room for *n), fills it. s is len bytes, not
 * NUL-terminated; a NUL byte anywhere in them is EMBD_EJSON. Errors: EMBD_EJSON
 * (syntax, with the byte offset), EMBD_EJSONTYPE (a value of the wrong type),
 * EMBD_EBADID (negative or too large), EMBD_EBADBODY (no "ids", unknown key),
 * EMBD_EEMPTY. On any error *n is 0.
 */
int embd_ids_parse_json(const char *s, size_t len, int64_t *out, size_t *n, embd_err *e);

/* A JSON batch body: {"ids": [...]} or {"tokens": [...]}. */
typedef struct embd_batch {
	int tokens;       /* set by the parse: 1 when the body names tokens */
	size_t n;         /* ids or tokens: set by the count pass; the room the fill pass has */
	size_t bytes;     /* tokens: arena bytes the fill pass needs (set by the count pass) */
	int64_t *ids;     /* fill pass of an ids body: room for n; NULL in the count pass */
	embd_token *toks; /* fill pass of a tokens body: room for n; NULL in the count pass */
	char *arena;      /* fill pass of a tokens body: room for bytes */
} embd_batch;

/*
 * {"ids": [3, 17]} or {"tokens": ["king", "k\u00f6nig"]} (len bytes, not
 * NUL-terminated): the count pass (b->ids and b->toks NULL) validates the
 * whole body and sets b->tokens, b->n and, for tokens, b->bytes; the fill
 * pass (the array for its kind and, for tokens, an arena) fills them; each
 * token is decoded (escapes, surrogate pairs) into the arena with a NUL
 * after it. Errors: those of embd_ids_parse_json, and EMBD_EBADTOKEN (a
 * token empty, holding a NUL or a lone surrogate, or not valid UTF-8),
 * EMBD_EJSONTYPE (a token that is not a string), EMBD_EBADBODY (both keys).
 * On any error b->n is 0. Thread-safe.
 */
int embd_batch_parse_json(const char *s, size_t len, embd_batch *b, embd_err *e);

/* A 1-D int32/int64 .npy body, viewed in place. Errors: EMBD_EBADBODY, EMBD_EEMPTY. */
int embd_ids_from_npy(const void *body, size_t len, embd_ids *out, embd_err *e);

/* A raw little-endian body of width 4 or 8, viewed in place. Errors: EMBD_EBADBODY, EMBD_EEMPTY. */
int embd_ids_from_raw(const void *body, size_t len, unsigned width, embd_ids *out, embd_err *e);

#endif
