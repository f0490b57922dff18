/* The one reader of untrusted JSON request bodies: a cursor over the bytes, no tree, no allocation. */
#ifndef EMBD_JSONREAD_H
#define EMBD_JSONREAD_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/*
 * A body is read in place, left to right, by the grammar of what it must
 * hold (POST /v1/rows' {"ids"} / {"tokens"} in ids.c, the vector operations'
 * bodies in vecreq.c): each value is checked as it is met, and an error
 * names the byte, the key and the index. Nothing is allocated: a caller
 * counts in a first pass and fills the memory it sized in a second. Errors:
 * EMBD_EJSON ("malformed JSON at byte N: expected X", "the body ends where X
 * was expected") and what each function lists; e is set. Not thread-safe
 * for one reader; readers of one body are independent.
 */
typedef struct embd_jr {
	const char *s; /* the body, borrowed, not NUL-terminated */
	size_t len, i; /* its length, the cursor */
	embd_err *e;
} embd_jr;

/* Skip JSON whitespace (space, tab, CR, LF). */
void embd_jr_ws(embd_jr *j);

/* The byte at the cursor, or '\0' at the end (a NUL in the body is never a value's first byte). */
char embd_jr_peek(const embd_jr *j);

/* Consume c at the cursor (after whitespace) and return 1, or return 0 and consume nothing. */
int embd_jr_eat(embd_jr *j, char c);

/* EMBD_EJSON: "expected <expected>" at the cursor. */
int embd_jr_syntax(embd_jr *j, const char *expected);

/*
 * What the value at the cursor is, for messages: "a string", "an object",
 * "an array", "a boolean", "null", "an integer", "a number with a
 * fraction", or NULL when no JSON value starts there. Reads, never consumes.
 */
const char *embd_jr_type(const embd_jr *j);

/*
 * An object key (or any string) at the cursor, into key (truncated to
 * cap - 1 bytes and NUL-terminated; \u escapes decoded for ASCII but NUL,
 * '?' for the rest) and its full length into *klen.
 */
int embd_jr_key(embd_jr *j, char *key, size_t cap, size_t *klen);

/*
 * A string at the cursor decoded (escapes, surrogate pairs) into dst (NULL:
 * only checked and measured) with a NUL after it; its length in *len. A
 * string that is not a token is EMBD_EBADTOKEN with *why saying why ("is
 * empty", "is not valid UTF-8", "holds a NUL (\u0000)", "holds a lone high
 * surrogate", "holds a lone low surrogate") and e not set: the caller names
 * the string. Raw bytes between escapes must be valid UTF-8 on their own (an
 * escape cannot finish a sequence), so checking each stretch checks the
 * whole string without a copy.
 */
int embd_jr_token(embd_jr *j, char *dst, size_t *len, const char **why);

/*
 * An id at the cursor: a non-negative integer below 2^63, named key[index]
 * in errors: EMBD_EJSONTYPE (a number with a fraction or an exponent),
 * EMBD_EBADID (negative, too large). The cursor must be at '-' or a digit.
 */
int embd_jr_id(embd_jr *j, const char *key, size_t index, int64_t *out);

/*
 * An integer at the cursor (optional '-', digits) into *out; *fits is 0 when
 * it is past int64 (then *out is 0). EMBD_EJSONTYPE, naming what, when the
 * number has a fraction or an exponent. The cursor must be at '-' or a digit.
 */
int embd_jr_int(embd_jr *j, const char *what, int64_t *out, int *fits);

/*
 * A number at the cursor as the nearest double (what Python's float() and
 * jansson give), into *out. Also takes what encoders write for the numbers
 * JSON cannot hold, NaN, Infinity and -Infinity (Python's json.dumps), and
 * reads a number past a double as an infinity: *out is then NaN or an
 * infinity, for the caller to refuse by name. The cursor must be at '-', a
 * digit, 'N' or 'I'; anything else is EMBD_EJSON.
 */
int embd_jr_number(embd_jr *j, double *out);

/* true or false at the cursor into *out (1 or 0); EMBD_EJSON if it is not one of them. */
int embd_jr_bool(embd_jr *j, int *out);

#endif
