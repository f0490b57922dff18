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

/* What a request body is, by its Content-Type or, when it has none, by its first bytes. */
typedef enum embd_body_kind {
	EMBD_BODY_UNKNOWN = 0, /* could be anything: refused, not guessed */
	EMBD_BODY_JSON,
	EMBD_BODY_NPY,
	EMBD_BODY_RAW /* raw little-endian ids: only with ?id_dtype= */
} embd_body_kind;

/*
 * What a body sent without a Content-Type is, from its bytes alone (len
 * bytes, not NUL-terminated): EMBD_BODY_NPY when it opens with the .npy magic
 * "\x93NUMPY", EMBD_BODY_JSON when its first byte past JSON whitespace is '{'
 * or '[' and no byte is NUL (JSON text holds none; raw ids nearly always do),
 * else EMBD_BODY_UNKNOWN: a raw body cannot say its own type. Never RAW.
 * Thread-safe.
 */
embd_body_kind embd_body_sniff(const void *body, size_t len);

/*
 * The media type a Content-Type header names, the one parser of it for every
 * POST body: what comes before ';', a space or a tab, case aside.
 * content_type NULL or "" (or only parameters) is none: *n 0 and
 * EMBD_BODY_UNKNOWN. Else *n is the media type's length and the result
 * EMBD_BODY_JSON (application/json), EMBD_BODY_NPY (application/x-npy),
 * EMBD_BODY_RAW (application/octet-stream) or EMBD_BODY_UNKNOWN (another).
 * Thread-safe.
 */
embd_body_kind embd_media_kind(const char *content_type, size_t *n);

/*
 * How to read a POST body of ids: content_type is the request's header
 * (NULL or "" when it has none; parameters after ';' are ignored) and id_dtype
 * its ?id_dtype= (NULL when absent). application/json and application/x-npy
 * say it; application/octet-stream is raw and needs id_dtype (int64 or int32,
 * which sets *width to 8 or 4): a raw body cannot say its own width. A body
 * without a Content-Type is raw when id_dtype is given, else whatever
 * embd_body_sniff finds in it. Sets *kind (never EMBD_BODY_UNKNOWN on
 * success). Errors: EMBD_EBADPARAM (id_dtype missing, not int32/int64, or
 * with a JSON or .npy body), EMBD_EMEDIATYPE (another Content-Type, or no
 * Content-Type on a body that could be anything), each saying what to send.
 * Thread-safe.
 */
int embd_ids_body_kind(const char *content_type, const char *id_dtype, const void *body, size_t len,
                       embd_body_kind *kind, unsigned *width, embd_err *e);

#endif
