/* Bodies of the vector operations (POST /v1/similar, /v1/similarity, /v1/pool) from untrusted JSON or .npy. */
#ifndef EMBD_VECREQ_H
#define EMBD_VECREQ_H

#include <stddef.h>
#include <stdint.h>

#include "acct.h"
#include "error.h"
#include "tokens.h"
#include "vocab.h"

/* A row a request names: by id (tok.p is NULL), or by token. */
typedef struct embd_ref {
	int64_t id;
	embd_token tok;
} embd_ref;

/* The keys of a body, as bits: a route says which it takes, the parse says which were given. */
enum {
	EMBD_VQ_IDS = 1 << 0,            /* "ids": [3, 17] */
	EMBD_VQ_TOKENS = 1 << 1,         /* "tokens": ["king", "queen"] */
	EMBD_VQ_VECTORS = 1 << 2,        /* "vectors": [[0.1, ...], ...] (each dim numbers) */
	EMBD_VQ_ANALOGY = 1 << 3,        /* "positive": [...], "negative": [...] (ids or tokens, mixed) */
	EMBD_VQ_PAIRS = 1 << 4,          /* "pairs": [["king", "queen"], [3, 17]] */
	EMBD_VQ_SETS = 1 << 5,           /* "a": [...], "b": [...] (ids or tokens, mixed) */
	EMBD_VQ_OP = 1 << 6,             /* "op": "mean" | "sum" */
	EMBD_VQ_WEIGHTS = 1 << 7,        /* "weights": [1, 0.5] (finite doubles, one per row) */
	EMBD_VQ_K = 1 << 8,              /* "k": 10 (a non-negative integer; the caller checks it against its limit) */
	EMBD_VQ_METRIC = 1 << 9,         /* "metric": "cosine" | "dot" */
	EMBD_VQ_INCLUDE_SELF = 1 << 10,  /* "include_self": true | false | 1 | 0 */
	EMBD_VQ_PRE_NORMALIZE = 1 << 11, /* "pre_normalize": true | false | 1 | 0 (pool unit rows, gensim's default) */
	EMBD_VQ_ROWS = EMBD_VQ_IDS | EMBD_VQ_TOKENS,
};

typedef struct embd_vecreq {
	unsigned given; /* EMBD_VQ_* bits of the keys the body named */
	/*
	 * The rows named, in order: ids or tokens; positive then negative;
	 * pairs, two refs each; a then b. split: how many of them are
	 * positive, or in a. Accounted (the accountant owns them).
	 */
	embd_ref *refs;
	size_t nrefs, split;
	float *vectors; /* nvectors x dim, row-major; accounted */
	size_t nvectors;
	double *weights; /* nweights (== nrefs when given), as JSON's numbers are: doubles; accounted */
	size_t nweights;
	int sum; /* "op": "sum" (else mean) */
	/* Set only when their bit is in given (else 0): the route keeps its own defaults. */
	uint64_t k;
	int metric; /* embd_metric */
	int include_self;
	int pre_normalize;
} embd_vecreq;

/*
 * Parse a JSON body (len bytes, untrusted, not NUL-terminated) naming only
 * keys of `allowed`, each once, one group of rows at a time (ids, tokens,
 * vectors, positive/negative, pairs or a/b), into *out, whose arrays acct
 * owns. Read with the one JSON reader (jsonread.h) in two passes over the
 * bytes, count then fill: no tree, the only memory the arrays themselves,
 * charged to acct once their sizes are known and max_items was checked.
 * dim: the length every vector must have. max_items: the most rows or
 * vectors (limits.max_ids). Errors: EMBD_EJSON (syntax, with the byte),
 * EMBD_EJSONTYPE (a value of the wrong type), EMBD_EBADBODY (an unknown or
 * repeated key, two groups, a missing group, weights whose count is not the
 * rows', a weight that is NaN or an infinity), EMBD_EBADPARAM ("k"
 * negative, "metric" not cosine or dot, "include_self" not 0 or 1),
 * EMBD_EEMPTY, EMBD_EBADID (negative ids, past 2^63), EMBD_EBADTOKEN,
 * EMBD_EBADVECTOR (a vector of the wrong length, a number past float32, a
 * NaN or an infinity as encoders write them though JSON has none: NaN,
 * Infinity, -Infinity, 1e400), EMBD_ETOOMANYIDS, and acct's charge errors.
 * e names the key and index. Not thread-safe for one acct.
 */
int embd_vecreq_parse_json(const char *body, size_t len, unsigned allowed, uint64_t dim, size_t max_items,
                           embd_acct *acct, embd_vecreq *out, embd_err *e);

/*
 * A .npy body of query vectors: float32 (or float16), shape (n, dim) or
 * (dim,), converted (or copied) into acct's memory. Errors: EMBD_EBADBODY,
 * EMBD_EEMPTY, EMBD_EBADVECTOR (a dim other than dim; a NaN or an infinity,
 * naming the vector), EMBD_ETOOMANYIDS, acct's charge errors.
 */
int embd_vecreq_parse_npy(const void *body, size_t len, uint64_t dim, size_t max_items, embd_acct *acct,
                          embd_vecreq *out, embd_err *e);

/*
 * The row ids of refs[0 .. n): ids checked against rows (EMBD_ERANGE),
 * tokens looked up in v (NULL: EMBD_ENOVOCAB when any ref is a token).
 * Unknown tokens, by oov: EMBD_OOV_ERROR fails with EMBD_ETOKEN listing
 * them; EMBD_OOV_SKIP (or ZERO) gives each the id EMBD_VOCAB_NONE, in its
 * place, for the caller to answer as it must (an empty list of neighbours).
 * ids has room for n. scratch memory from acct. Thread-safe for a finished
 * v and distinct accts.
 */
int embd_vecreq_resolve(const embd_vocab *v, uint64_t rows, const embd_ref *refs, size_t n, embd_oov oov, int64_t *ids,
                        embd_acct *acct, embd_err *e);

#endif
