/* Response encoders: shortest float text, JSON rows, converted binary rows, JSON string escaping. */
#ifndef EMBD_ENCODE_H
#define EMBD_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "ids.h"
#include "matrix.h"
#include "plan.h"
#include "tokens.h"
#include "utf8.h" /* embd_utf8_valid_len and embd_utf8_sanitize were declared here */
#include "vecops.h"
#include "vocab.h"

/* How the rows of a response are to look. */
typedef struct embd_encode_opts {
	embd_dtype dtype; /* element type on the wire */
	int normalize;    /* scale every row to unit L2 norm */
} embd_encode_opts;

/* The longest text embd_f32_shortest writes (nine digits in fixed notation below 1e16: "-1234567800000000"). */
#define EMBD_F32_TEXT_MAX 17

/*
 * The decimal text with the fewest significant digits that reads back
 * (strtof, Python float, JSON parsers) to exactly v: fixed notation from
 * 1e-4 up to 1e16 (where Python's repr draws the line), exponential outside
 * it, whole numbers without a fraction as JavaScript writes them ("0.1",
 * "7.063", "10", "1000000", "1e-05", "1e+16", "-0.0").
 * NaN and infinities, which JSON cannot carry, are written as null. buf
 * needs EMBD_F32_TEXT_MAX + 1 bytes; returns the length (no NUL written).
 */
size_t embd_f32_shortest(float v, char *buf);

/*
 * The same text, found the slow way (printf at 1..9 digits and strtof): the
 * reference embd_f32_shortest is tested against, and its fallback.
 */
size_t embd_f32_shortest_ref(float v, char *buf);

/*
 * Bytes that embd_json_rows_write can need at most, for nrows x dim and nids
 * ids of any int64 value; UINT64_MAX when that does not fit in 64 bits (no
 * buffer is that big, so the caller refuses). The writer checks no capacity:
 * a buffer of this size is its only guard.
 */
uint64_t embd_json_rows_bound(uint64_t nrows, uint64_t dim, size_t nids);

/*
 * Write {"shape":[n,dim],"dtype":"f32","ids":[...],"tokens":[...],"rows":[[...],...]}
 * for the runs' rows (zeros for EMBD_RUN_ZERO runs) into dst, which has room
 * for embd_json_rows_bound plus, with tokens, embd_tokens_json_bound. ids
 * may be NULL (no "ids" member), tokens too (no "tokens"; each is escaped
 * by embd_json_escape). scratch: room for dim floats. Returns the length.
 */
size_t embd_json_rows_write(char *dst, const embd_matrix_info *m, const embd_run *runs, size_t nruns,
                            const embd_ids *ids, const embd_token *tokens, size_t ntokens, const embd_encode_opts *o,
                            float *scratch);

/*
 * Write the runs' rows, row-major, converted to o->dtype and normalised if
 * asked, into dst (room for nrows * dim * dtype size). scratch: dim floats,
 * used only to normalise: a dtype change alone goes from the mapping to dst
 * a run at a time (embd_dtype_convert, vectorised where the CPU can).
 */
void embd_rows_convert(void *dst, const embd_matrix_info *m, const embd_run *runs, size_t nruns,
                       const embd_encode_opts *o, float *scratch);

/* Does this response need its bytes changed, i.e. can it not be sent as stored? */
int embd_encode_transforms(const embd_matrix_info *m, const embd_encode_opts *o);

/*
 * Copy s (NUL-terminated, borrowed; any bytes) into dst as the inside of a
 * JSON string (quotes not included), so that the output is always valid
 * UTF-8 and valid JSON: quotes and backslashes are escaped, control
 * characters become \u00XX, U+2028 and U+2029 become \u2028 and \u2029
 * (safe to embed in JavaScript), well-formed UTF-8 (Unicode Table 3-7)
 * passes through, and each maximal ill-formed subpart (an overlong, a
 * surrogate, a code point past U+10FFFF, a truncated sequence, a stray
 * continuation byte) becomes one \ufffd. Writes at most cap-1 bytes and a NUL
 * (nothing when cap is 0); a character or escape that does not fit ends the
 * output whole, never half of it. Returns the length written. Thread-safe.
 */
size_t embd_json_escape(char *dst, size_t cap, const char *s);

/*
 * Bytes embd_json_hits_write can need at most for n hits (with v's tokens
 * when v is not NULL). UINT64_MAX on overflow.
 */
uint64_t embd_json_hits_bound(const embd_hit *hits, size_t n, const embd_vocab *v);

/*
 * Write [{"id":1212,"token":"queen","score":0.7839},...] for n hits into dst
 * (room for the bound): scores as the shortest float32 text (null for NaN
 * or an infinity), "token" only with a vocabulary (escaped by
 * embd_json_escape). Returns the length. Thread-safe.
 */
size_t embd_json_hits_write(char *dst, const embd_hit *hits, size_t n, const embd_vocab *v);

#endif
