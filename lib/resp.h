/*
 * The response builder: a body is a list of segments, each either a view
 * into memory someone else keeps alive (rows in a generation's mapping: the
 * zero-copy path) or a buffer the request's accountant owns (the gather
 * path, encoders' output, small JSON bodies). What a response cost follows
 * from its segments, not from which branch made it: the bytes in owned
 * buffers are the copied bytes, the rest went out zero-copy. Every buffer
 * belongs to the accountant, so closing the accountant frees them all: release
 * is structural, on every path.
 */
#ifndef EMBD_RESP_H
#define EMBD_RESP_H

#include <stddef.h>
#include <stdint.h>

#include "acct.h"
#include "encode.h"
#include "error.h"
#include "ids.h"
#include "matrix.h"
#include "plan.h"

/* One piece of the body; the same layout as struct iovec and libmicrohttpd's MHD_IoVec. */
typedef struct embd_seg {
	const void *base;
	size_t len;
} embd_seg;

/* The formats a body of rows goes out in. */
typedef enum embd_wire { EMBD_WIRE_JSON = 0, EMBD_WIRE_BIN, EMBD_WIRE_NPY, EMBD_WIRE_COUNT } embd_wire;

/* "json", "bin", "npy" (the ?format= names) and their media types; static storage. */
const char *embd_wire_name(embd_wire w);
const char *embd_wire_type(embd_wire w);
/* Every media type, indexed by embd_wire, for Accept negotiation (embd_query_accept). */
extern const char *const embd_wire_types[EMBD_WIRE_COUNT];
/* A ?format= name; 0 or EMBD_EBADPARAM. */
int embd_wire_parse(const char *name, embd_wire *out);

#define EMBD_RESP_INLINE_SEGS 4

typedef struct embd_resp {
	embd_acct *acct; /* borrowed: owns every buffer of the body */
	embd_seg *segs;  /* inline_segs, or an accounted array once there are more */
	size_t nsegs, cap;
	uint64_t len;    /* body bytes */
	uint64_t copied; /* of which in owned buffers */
	int reserved;    /* buffers may come from the budget's reserve (answers given whatever the load) */
	embd_seg inline_segs[EMBD_RESP_INLINE_SEGS];
} embd_resp;

/* An empty body whose buffers acct will own (borrowed; it must outlive the response). */
void embd_resp_init(embd_resp *b, embd_acct *acct);

/*
 * Append n bytes at p as they are, without copying: the caller keeps them
 * alive (and unchanged) until the response is done, e.g. by holding the
 * generation they belong to. Errors: those of embd_acct_alloc (growing the
 * segment list).
 */
int embd_resp_view(embd_resp *b, const void *p, size_t n);

/* Append an owned buffer of n bytes for the caller to fill (*out). Errors: those of embd_acct_alloc. */
int embd_resp_buffer(embd_resp *b, size_t n, void **out);

/* Append a copy of n bytes at p in an owned buffer. Errors: those of embd_acct_alloc. */
int embd_resp_copy(embd_resp *b, const void *p, size_t n);

/*
 * The last segment, an owned buffer, holds only its first n bytes (n <= its
 * length): for encoders that write less than their bound. The buffer stays
 * charged at its block size: it is still held.
 */
void embd_resp_shrink_last(embd_resp *b, size_t n);

/* "zero-copy" when any byte is sent from a view, else "gather" (design §1). */
embd_path embd_resp_path(const embd_resp *b);

/* What a rows response is made of. */
typedef struct embd_rows_query {
	const embd_run *runs;
	size_t nruns;
	const embd_ids *ids;      /* named in a JSON body as "ids"; may be NULL */
	const embd_token *tokens; /* named in a JSON body as "tokens"; may be NULL */
	size_t ntokens;
	int gather; /* copy even where a view would do: rows the request computed, not the matrix's */
	embd_wire wire;
	embd_encode_opts opts;
} embd_rows_query;

/*
 * Build the body of q's rows from m (whose mapping the caller keeps alive):
 * .npy header if asked, then the rows as views into the mapping when the
 * plan says zero-copy, else gathered (converted, normalised, or as JSON)
 * into owned buffers. On a failed charge returns its error (EMBD_ETOOBIG,
 * EMBD_EBUSY, -ENOMEM) with e naming what was being allocated ("the JSON
 * response"); the accountant's need says how much.
 */
int embd_resp_rows(embd_resp *b, const embd_matrix_info *m, const embd_plan_cfg *plan, const embd_rows_query *q,
                   embd_err *e);

#endif
