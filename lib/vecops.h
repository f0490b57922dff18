/* Vector operations on the mapped matrix: row norms, top-k neighbours, gensim's analogy vector, pooling, similarity. */
#ifndef EMBD_VECOPS_H
#define EMBD_VECOPS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "acct.h"
#include "error.h"
#include "matrix.h"

/*
 * Every function reads rows of m (borrowed: the caller holds a reference to
 * the matrix for the call) through memcpy or the dtype.h conversions, so
 * m->data may be unaligned (safetensors) and f32, f16 or bf16. Ids are
 * checked against m->rows (EMBD_ERANGE). Scratch memory comes from the
 * accountant passed in and is given back before the function returns, on
 * every path; over the budget the function returns the accountant's error
 * (EMBD_ETOOBIG or EMBD_EBUSY, a->need says what it would have held) having
 * written nothing. Every function is thread-safe for distinct accountants
 * and outputs (the matrix and norms are only read); BLAS calls use however
 * many threads OpenBLAS is set to (embd_ops_set_threads).
 */

typedef enum embd_metric {
	EMBD_METRIC_COSINE = 0, /* q.row / (|q| |row|); a row of norm 0 scores 0 */
	EMBD_METRIC_DOT = 1,    /* q.row */
} embd_metric;

/* "cosine", "dot"; parse one (0 or EMBD_EBADPARAM). */
const char *embd_metric_name(embd_metric m);
int embd_metric_parse(const char *name, embd_metric *out);

/* One neighbour: a row id and its score. */
typedef struct embd_hit {
	uint64_t id;
	float score;
} embd_hit;

/*
 * L2 norms of rows [first, first + count): out[first + i] = sqrt(sum of
 * squares, summed in double as embd_ops_l2_normalize does, in four partial
 * sums for speed) rounded to float32. A row holding NaN gets NaN, one whose norm passes FLT_MAX
 * gets +inf. out has m->rows floats (borrowed). Ranges must be within rows.
 * Thread-safe; disjoint ranges may run at once (that is how
 * embd_vecops_norms_threads splits the work).
 */
void embd_vecops_norms(const embd_matrix_info *m, uint64_t first, uint64_t count, float *out);

/*
 * Every row's norm into out (m->rows floats), split across nthreads threads
 * (this one and nthreads - 1 it starts and joins; nthreads < 1 counts as 1).
 * Never fails: a thread that cannot start leaves its range to this thread.
 */
void embd_vecops_norms_threads(const embd_matrix_info *m, float *out, int nthreads);

/* A top-k request: nq queries against every row of the matrix. */
typedef struct embd_topk {
	const float *queries; /* nq x dim float32, row-major (borrowed; never written: cosine normalises a copy) */
	size_t nq;
	size_t k; /* hits per query; 0 gives none; more than the rows gives every row */
	embd_metric metric;
	const float *norms; /* cosine: the m->rows row norms of embd_vecops_norms (borrowed); dot: unused */
	/*
	 * Ids left out per query (gensim leaves the query word out of
	 * most_similar, and every positive and negative word out of an
	 * analogy): query q's are exclude[exclude_off[q] .. exclude_off[q + 1]),
	 * in any order, ids at or past rows ignored. Both NULL: none.
	 */
	const uint64_t *exclude;
	const size_t *exclude_off; /* nq + 1 offsets */
	size_t block_rows;         /* rows per BLAS call; 0: EMBD_TOPK_BLOCK_BYTES of f32 rows (at least 64) */
	/*
	 * The rows searched: [first, first + count) of the matrix (count 0: from
	 * first to the end), so that parts of one search can run on several
	 * threads; hits keep the matrix's row ids, norms and exclusions are
	 * indexed by them.
	 */
	uint64_t first, count;
	/* Read between blocks (NULL: never): not 0, the search stops and returns EMBD_ECANCELED. */
	const atomic_int *cancel;
	/* embd_vecops_topk_scratch bytes the caller holds for the search (NULL: from the accountant). */
	void *scratch;
} embd_topk;

/*
 * The default block: 1 MiB of f32 rows (2621 rows of 100 dims). On 400k x 100
 * (loadtest/vecops_bench.py) 1024 to 4096 rows ran alike; 256 and 65536 were
 * slower by up to 1.5x (BLAS calls per row; the converted block and scores
 * leaving L2).
 */
#define EMBD_TOPK_BLOCK_BYTES ((uint64_t)1 << 20)

/*
 * Bytes of scratch embd_vecops_topk asks the accountant for (the sum of its
 * buffers' sizes; each is charged as its block, embd_acct_block_bytes):
 * a block of scores (nq x block rows), for f16/bf16 or an unaligned f32
 * matrix a block of rows converted to f32, for cosine the normalised
 * queries. UINT64_MAX on overflow.
 */
uint64_t embd_vecops_topk_scratch(const embd_matrix_info *m, const embd_topk *t);

/*
 * The k best rows for each query, by one pass over the matrix in blocks of
 * rows: cblas_sgemv (one query) or cblas_sgemm (several) into a block of
 * scores, then per query a bounded heap of k hits (no sort of every row).
 *
 * Scores are float32: dot, q.row; cosine, (q/|q|).row / norm[row], as
 * gensim's most_similar computes dot(vectors, mean) / norms; a row of norm
 * 0 scores 0 (never NaN) and a query of norm 0 scores 0 against every row.
 * A lone query's (nq 1) k hits are then rescored as embd_vecops_similarity
 * scores a pair (in double, rounded once) and ordered again, so that its
 * scores are the pair scores bit for bit; several queries keep sgemm's
 * float32 scores, which may differ from those in the last bits (README:
 * at most about (dim + 4) x 2^-24 for cosine).
 * Order: higher score first; equal scores, lower id first. A score that is
 * NaN (a row holding NaN, or inf / inf) is never returned; +-inf scores
 * (dot with huge rows) rank as numbers. Excluded ids are never returned.
 *
 * out (borrowed) has nq * k hits: query q's are out[q * k ..], best first,
 * counts[q] of them (min(k, rows minus excluded and NaN rows)); the rest of
 * its stretch is unspecified. out steps by t->k as given: clamp k to
 * m->rows before sizing out (and pass the clamped k), since a larger k gets
 * no more hits.
 *
 * Errors, with counts not written: EMBD_EBADPARAM (nq 0, no queries, cosine
 * without norms, exclude without exclude_off, dim or a block too large for
 * BLAS's int, rows past the matrix), EMBD_EOVERFLOW (scratch size), the
 * accountant's (a may be NULL when t->scratch is given), EMBD_ECANCELED
 * (*t->cancel was set: counts and out are then partial).
 */
int embd_vecops_topk(const embd_matrix_info *m, const embd_topk *t, embd_acct *a, embd_hit *out, size_t *counts);

/*
 * gensim's most_similar(positive, negative) query vector into out (m->dim
 * floats): each row scaled to unit L2 (row / norm in float32, a row of norm
 * 0 stays 0), weighted +1 (positive) or -1 (negative), summed in float32,
 * divided by the number of rows, then scaled to unit L2 (in double, as
 * gensim's matutils.unitvec does with BLAS dnrm2 and dscal). Pass it to
 * embd_vecops_topk (cosine) with every positive and negative id excluded,
 * as gensim excludes them. Errors: EMBD_EEMPTY (no ids), EMBD_ERANGE. No
 * scratch. Thread-safe.
 */
int embd_vecops_analogy(const embd_matrix_info *m, const uint64_t *pos, size_t npos, const uint64_t *neg, size_t nneg,
                        float *out, embd_err *e);

/* How embd_vecops_pool combines rows ("pooling", not acct.h's pool of buffers). */
typedef enum embd_pooling {
	EMBD_POOLING_MEAN = 0,
	EMBD_POOLING_SUM = 1,
} embd_pooling;

/* "mean", "sum"; parse one (0 or EMBD_EBADPARAM). */
const char *embd_pooling_name(embd_pooling op);
int embd_pooling_parse(const char *name, embd_pooling *out);

/*
 * Pool n rows into out (m->dim floats): sum, sum(w_i x_i); mean,
 * sum(w_i x_i) / sum(w_i), which is NumPy's np.average(rows, axis=0,
 * weights=w) (weights NULL: every w_i = 1, the plain mean). Accumulated in
 * double, row after row as NumPy reduces axis 0, and rounded to float32
 * once. Ids may repeat. Scratch: m->dim doubles from the accountant.
 * Errors: EMBD_EEMPTY (n 0), EMBD_ERANGE, EMBD_EBADPARAM (a weight not
 * finite; mean with weights summing to 0, where np.average raises
 * ZeroDivisionError), the accountant's.
 *
 * norms (m->rows floats, embd_vecops_norms; borrowed) pools unit rows: each
 * row divided by its norm in float32 first, as gensim's
 * get_vector(key, norm=True) and so get_mean_vector(pre_normalize=True),
 * gensim's default, do (a row of norm 0 stays 0, where gensim makes NaN);
 * NULL pools the rows as they are (get_mean_vector(pre_normalize=False) for
 * non-negative weights: gensim divides by the sum of |w_i|, this by sum(w_i)).
 */
int embd_vecops_pool(const embd_matrix_info *m, const uint64_t *ids, const double *weights, size_t n, embd_pooling op,
                     const float *norms, embd_acct *a, float *out, embd_err *e);

/*
 * Similarity of rows a and b into *out: dot, or cosine as gensim's
 * similarity (dot of the two unit vectors; a row of norm 0 gives 0), in
 * double, rounded to float32. NaN when a row holds NaN (the caller decides
 * how to write it). Errors: EMBD_ERANGE. Thread-safe.
 */
int embd_vecops_similarity(const embd_matrix_info *m, uint64_t a, uint64_t b, embd_metric metric, float *out,
                           embd_err *e);

/*
 * gensim's n_similarity(ws1, ws2): the cosine between the plain means of
 * two sets of rows (a mean of norm 0 gives 0), means and cosine in double,
 * rounded to float32. Scratch: 2 x m->dim doubles from the accountant.
 * Errors: EMBD_EEMPTY (either set empty, where gensim raises
 * ZeroDivisionError), EMBD_ERANGE, the accountant's.
 */
int embd_vecops_n_similarity(const embd_matrix_info *m, const uint64_t *ids1, size_t n1, const uint64_t *ids2,
                             size_t n2, embd_acct *a, float *out, embd_err *e);

#endif
