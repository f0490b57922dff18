/* Unit tests of vector operations: norms, top-k (ties, NaN and zero rows, k, exclusion, dtypes), analogy, pooling. */
#include "fixture.h"

#include <math.h>

#include "acct.h"
#include "ops.h"
#include "vecops.h"

/* A matrix in memory, stored as dtype t from float32 values, misalign bytes past an aligned address. */
typedef struct fx {
	unsigned char *buf;
	embd_matrix_info m;
} fx;

static void fx_make(fx *f, const float *vals, uint64_t rows, uint64_t dim, embd_dtype t, size_t misalign)
{
	size_t isz = embd_dtype_size(t);
	f->buf = malloc(rows * dim * isz + 16);
	assert_non_null(f->buf);
	unsigned char *p = f->buf + misalign;
	for (uint64_t i = 0; i < rows; i++)
		embd_dtype_store(t, p + i * dim * isz, vals + i * dim, dim);
	f->m = (embd_matrix_info){
	    .data = p, .rows = rows, .dim = dim, .dtype = t, .row_bytes = dim * isz, .data_bytes = rows * dim * isz};
}

static void fx_free(fx *f)
{
	free(f->buf);
}

/* An unlimited accountant whose every block must be back by the end of the test. */
static embd_budget budget;
static embd_acct ac;

static int acct_setup(void **state)
{
	(void)state;
	embd_budget_init(&budget, 0);
	embd_acct_init(&ac, &budget, NULL, 0);
	return 0;
}

static int acct_teardown(void **state)
{
	(void)state;
	assert_int_equal(ac.held, 0);
	assert_int_equal(embd_acct_close(&ac), 0);
	assert_int_equal(embd_budget_inflight(&budget), 0);
	return 0;
}

/*
 * dim 2: r0 (1,0), r1 (0,1), r2 (1,1), r3 (2,0) the direction of r0, r4 zero, r5 holds NaN, r6 (-1,0).
 * Against the query (1,0): cosine 1, 0, 0.7071, 1, 0 (norm 0), NaN, -1; dot 1, 0, 1, 2, 0, NaN, -1.
 */
static const float M7[] = {1, 0, 0, 1, 1, 1, 2, 0, 0, 0, NAN, 1, -1, 0};

static void norms_known(void **state)
{
	(void)state;
	const float v[] = {3, 4, 0, 0, NAN, 1, 1e30f, 1e30f, 3e38f, 3e38f, -6, 8};
	for (int t = 0; t < EMBD_DTYPE_COUNT; t++) {
		fx f;
		fx_make(&f, v, t == EMBD_F32 ? 6 : 3, 2, (embd_dtype)t, 1); /* halves cannot hold 1e30 */
		float n[6];
		embd_vecops_norms(&f.m, 0, f.m.rows, n);
		assert_true(n[0] == 5.0f);
		assert_true(n[1] == 0.0f);
		assert_true(isnan(n[2]));
		if (t == EMBD_F32) {
			assert_float_equal(n[3], 1.41421356e30f,
			                   1e24f); /* squares pass FLT_MAX; the double sum does not */
			assert_true(isinf(n[4]));
			assert_true(n[5] == 10.0f);
		}
		fx_free(&f);
	}
}

static void norms_threads_match(void **state)
{
	(void)state;
	enum { R = 1001, D = 37 };
	float *v = malloc(R * D * sizeof *v);
	for (int i = 0; i < R * D; i++)
		v[i] = (float)((i * 7919) % 201 - 100) / 8.0f;
	fx f;
	fx_make(&f, v, R, D, EMBD_F32, 0);
	float one[R], many[R];
	embd_vecops_norms(&f.m, 0, R, one);
	for (int th = 0; th <= 7; th++) {
		memset(many, 0xff, sizeof many);
		embd_vecops_norms_threads(&f.m, many, th);
		assert_memory_equal(one, many, sizeof one);
	}
	/* A matrix with fewer rows than threads. */
	fx g;
	fx_make(&g, v, 2, D, EMBD_F32, 0);
	embd_vecops_norms_threads(&g.m, many, 8);
	assert_memory_equal(one, many, 2 * sizeof(float));
	fx_free(&g);
	fx_free(&f);
	free(v);
}

/* Run a single-query top-k; returns the count. */
static size_t topk1(const embd_matrix_info *m, const float *norms, const float *q, size_t k, embd_metric metric,
                    const uint64_t *excl, size_t nexcl, size_t block, embd_hit *out)
{
	size_t off[2] = {0, nexcl}, count = 12345;
	embd_topk t = {.queries = q,
	               .nq = 1,
	               .k = k,
	               .metric = metric,
	               .norms = norms,
	               .exclude = excl,
	               .exclude_off = excl ? off : NULL,
	               .block_rows = block};
	assert_int_equal(embd_vecops_topk(m, &t, &ac, out, &count), 0);
	assert_int_equal(ac.held, 0);
	return count;
}

static void expect_hits(const embd_hit *h, size_t n, const uint64_t *ids, const float *scores)
{
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(h[i].id, ids[i]);
		assert_float_equal(h[i].score, scores[i], 1e-6);
	}
}

static void topk_cosine_known(void **state)
{
	(void)state;
	fx f;
	fx_make(&f, M7, 7, 2, EMBD_F32, 0);
	float norms[7];
	embd_vecops_norms(&f.m, 0, 7, norms);
	const float q[] = {5, 0}; /* any length: cosine normalises the query */
	embd_hit h[20];
	/* Every block size gives the same answer, ties across block edges included. */
	for (size_t block = 0; block <= 8; block++) {
		/* Ties: r0 and r3 score 1, r1 and r4 score 0: lower id first. NaN r5 never; zero r4 scores 0. */
		assert_int_equal(topk1(&f.m, norms, q, 20, EMBD_METRIC_COSINE, NULL, 0, block, h), 6);
		expect_hits(h, 6, (const uint64_t[]){0, 3, 2, 1, 4, 6}, (const float[]){1, 1, 0.70710678f, 0, 0, -1});
		assert_int_equal(topk1(&f.m, norms, q, 3, EMBD_METRIC_COSINE, NULL, 0, block, h), 3);
		expect_hits(h, 3, (const uint64_t[]){0, 3, 2}, (const float[]){1, 1, 0.70710678f});
		assert_int_equal(topk1(&f.m, norms, q, 1, EMBD_METRIC_COSINE, NULL, 0, block, h), 1);
		expect_hits(h, 1, (const uint64_t[]){0}, (const float[]){1});
		/* Exclusion (the query word itself, as gensim); ids past the rows and repeats are harmless. */
		const uint64_t ex[] = {0, 99, 0};
		assert_int_equal(topk1(&f.m, norms, q, 2, EMBD_METRIC_COSINE, ex, 3, block, h), 2);
		expect_hits(h, 2, (const uint64_t[]){3, 2}, (const float[]){1, 0.70710678f});
		/* k larger than the rows: every row minus the excluded and the NaN one. */
		assert_int_equal(topk1(&f.m, norms, q, 1000, EMBD_METRIC_COSINE, ex, 3, block, h), 5);
		expect_hits(h, 5, (const uint64_t[]){3, 2, 1, 4, 6}, (const float[]){1, 0.70710678f, 0, 0, -1});
	}
	fx_free(&f);
}

/* A row range searches only its rows, with the matrix's ids; a cancel flag stops it; scratch may be the caller's. */
static void topk_range_cancel_scratch(void **state)
{
	(void)state;
	fx f;
	fx_make(&f, M7, 7, 2, EMBD_F32, 0);
	float norms[7];
	embd_vecops_norms(&f.m, 0, 7, norms);
	const float q[] = {5, 0};
	const uint64_t ex[] = {3};
	size_t off[2] = {0, 1};
	embd_hit h[7];
	size_t count = 99;
	/* Rows 2..5 of 0, 3, 2, 1, 4, 6 (best first over all rows): 3 is excluded, 5 is NaN, 2 and 4 are left. */
	embd_topk t = {.queries = q,
	               .nq = 1,
	               .k = 7,
	               .metric = EMBD_METRIC_COSINE,
	               .norms = norms,
	               .exclude = ex,
	               .exclude_off = off,
	               .block_rows = 1,
	               .first = 2,
	               .count = 4};
	assert_int_equal(embd_vecops_topk(&f.m, &t, &ac, h, &count), 0);
	assert_int_equal(count, 2);
	expect_hits(h, 2, (const uint64_t[]){2, 4}, (const float[]){0.70710678f, 0});
	/* count 0: from first to the end. */
	t.first = 5;
	t.count = 0;
	assert_int_equal(embd_vecops_topk(&f.m, &t, &ac, h, &count), 0);
	assert_int_equal(count, 1);
	expect_hits(h, 1, (const uint64_t[]){6}, (const float[]){-1});
	/* A range past the rows is refused. */
	t.first = 5;
	t.count = 3;
	assert_int_equal(embd_vecops_topk(&f.m, &t, &ac, h, &count), EMBD_EBADPARAM);
	/* The caller's scratch: nothing is charged to the accountant. */
	t.first = 0;
	t.count = 0;
	uint64_t need = embd_vecops_topk_scratch(&f.m, &t);
	void *mem = malloc(need);
	t.scratch = mem;
	assert_int_equal(embd_vecops_topk(&f.m, &t, NULL, h, &count), 0);
	assert_int_equal(count, 5);
	expect_hits(h, 5, (const uint64_t[]){0, 2, 1, 4, 6}, (const float[]){1, 0.70710678f, 0, 0, -1});
	/* A set flag stops the search before its first block. */
	atomic_int stop;
	atomic_init(&stop, 1);
	t.cancel = &stop;
	assert_int_equal(embd_vecops_topk(&f.m, &t, NULL, h, &count), EMBD_ECANCELED);
	atomic_store(&stop, 0);
	assert_int_equal(embd_vecops_topk(&f.m, &t, NULL, h, &count), 0);
	assert_int_equal(count, 5);
	assert_int_equal(ac.held, 0);
	free(mem);
	fx_free(&f);
}

static void topk_dot_known(void **state)
{
	(void)state;
	fx f;
	fx_make(&f, M7, 7, 2, EMBD_F32, 0);
	const float q[] = {1, 0};
	embd_hit h[7];
	for (size_t block = 0; block <= 8; block++) {
		/* No norms needed for dot; r0 and r2 tie at 1, r1 and r4 at 0. */
		assert_int_equal(topk1(&f.m, NULL, q, 7, EMBD_METRIC_DOT, NULL, 0, block, h), 6);
		expect_hits(h, 6, (const uint64_t[]){3, 0, 2, 1, 4, 6}, (const float[]){2, 1, 1, 0, 0, -1});
	}
	fx_free(&f);
}

static void topk_k0_and_zero_query(void **state)
{
	(void)state;
	fx f;
	fx_make(&f, M7, 7, 2, EMBD_F32, 0);
	float norms[7];
	embd_vecops_norms(&f.m, 0, 7, norms);
	embd_hit h[7];
	/* k = 0: no hits, no scratch (an accountant with no room at all still answers). */
	embd_budget nb;
	embd_budget_init(&nb, 1);
	embd_acct na;
	embd_acct_init(&na, &nb, NULL, 1);
	size_t count = 99;
	embd_topk t = {.queries = (const float[]){1, 0}, .nq = 1, .k = 0, .metric = EMBD_METRIC_COSINE, .norms = norms};
	assert_int_equal(embd_vecops_topk(&f.m, &t, &na, h, &count), 0);
	assert_int_equal(count, 0);
	assert_int_equal(embd_acct_close(&na), 0);
	/* A zero query scores 0 against every row (never NaN), NaN row still out: ids in order. */
	assert_int_equal(topk1(&f.m, norms, (const float[]){0, 0}, 7, EMBD_METRIC_COSINE, NULL, 0, 0, h), 6);
	expect_hits(h, 6, (const uint64_t[]){0, 1, 2, 3, 4, 6}, (const float[]){0, 0, 0, 0, 0, 0});
	/* A NaN query: every score NaN, so no hits. */
	assert_int_equal(topk1(&f.m, NULL, (const float[]){NAN, 0}, 7, EMBD_METRIC_DOT, NULL, 0, 0, h), 0);
	fx_free(&f);
}

static void topk_bad_params(void **state)
{
	(void)state;
	fx f;
	fx_make(&f, M7, 7, 2, EMBD_F32, 0);
	embd_hit h[7];
	size_t count[2] = {77, 77};
	const float q[] = {1, 0};
	embd_topk t = {.queries = q, .nq = 0, .k = 3, .metric = EMBD_METRIC_DOT};
	assert_int_equal(embd_vecops_topk(&f.m, &t, &ac, h, count), EMBD_EBADPARAM);
	t.nq = 1;
	t.metric = EMBD_METRIC_COSINE; /* without norms */
	assert_int_equal(embd_vecops_topk(&f.m, &t, &ac, h, count), EMBD_EBADPARAM);
	t.metric = EMBD_METRIC_DOT;
	t.exclude = (const uint64_t[]){1}; /* without offsets */
	assert_int_equal(embd_vecops_topk(&f.m, &t, &ac, h, count), EMBD_EBADPARAM);
	assert_int_equal(count[0], 77);
	fx_free(&f);
}

/* Several queries at once (sgemm) give what each gives alone (sgemv), with their own exclusions. */
static void topk_batch_matches_single(void **state)
{
	(void)state;
	fx f;
	fx_make(&f, M7, 7, 2, EMBD_F32, 0);
	float norms[7];
	embd_vecops_norms(&f.m, 0, 7, norms);
	const float q[] = {1, 0, 0, 1, -1, -1};
	const uint64_t ex[] = {0, 1, 2, 1};
	const size_t off[] = {0, 1, 1, 4}; /* q0 excludes 0, q1 nothing, q2 excludes 1, 2, 1 */
	for (int metric = 0; metric < 2; metric++)
		for (size_t block = 0; block <= 4; block++) {
			embd_hit h[3 * 4], one[4];
			size_t count[3];
			embd_topk t = {.queries = q,
			               .nq = 3,
			               .k = 4,
			               .metric = (embd_metric)metric,
			               .norms = norms,
			               .exclude = ex,
			               .exclude_off = off,
			               .block_rows = block};
			assert_int_equal(embd_vecops_topk(&f.m, &t, &ac, h, count), 0);
			for (size_t i = 0; i < 3; i++) {
				size_t n = topk1(&f.m, norms, q + 2 * i, 4, (embd_metric)metric, ex + off[i],
				                 off[i + 1] - off[i], block, one);
				assert_int_equal(count[i], n);
				for (size_t j = 0; j < n; j++) {
					assert_int_equal(h[i * 4 + j].id, one[j].id);
					assert_float_equal(h[i * 4 + j].score, one[j].score, 1e-6);
				}
			}
			assert_int_equal(count[1], 4);
			assert_int_equal(h[4].id, 1); /* (0,1) finds r1 first: cosine 1, dot 1 tied with r2, lower id */
		}
	fx_free(&f);
}

/*
 * Against a brute-force reference (every score in double, a full sort with
 * lower ids first on ties) on small-integer matrices, where every float32
 * dot product is exact, so ties are exact and many: the ids must be equal.
 */
static int ref_cmp(const void *x, const void *y)
{
	const embd_hit *a = x, *b = y;
	if (a->score != b->score)
		return a->score > b->score ? -1 : 1;
	return a->id < b->id ? -1 : a->id > b->id;
}

static void topk_random_vs_reference(void **state)
{
	(void)state;
	enum { R = 3000, D = 17, NQ = 5, K = 40 };
	float *v = malloc(R * D * sizeof *v), q[NQ * D];
	unsigned seed = 12345;
	for (int i = 0; i < R * D; i++)
		v[i] = (float)((int)((seed = seed * 1103515245u + 12345u) >> 16) % 5 - 2);
	for (int i = 0; i < NQ * D; i++)
		q[i] = (float)((int)((seed = seed * 1103515245u + 12345u) >> 16) % 5 - 2);
	embd_hit *ref = malloc(R * sizeof *ref);
	for (int t = 0; t < EMBD_DTYPE_COUNT; t++) {
		fx f;
		fx_make(&f, v, R, D, (embd_dtype)t, t == EMBD_F32 ? 2 : 1); /* unaligned: the scratch path */
		for (size_t block = 1; block <= 4096; block *= 8) {
			embd_hit h[NQ * K];
			size_t count[NQ];
			embd_topk tk = {.queries = q, .nq = NQ, .k = K, .metric = EMBD_METRIC_DOT, .block_rows = block};
			assert_int_equal(embd_vecops_topk(&f.m, &tk, &ac, h, count), 0);
			for (int i = 0; i < NQ; i++) {
				for (int r = 0; r < R; r++) {
					double s = 0;
					for (int j = 0; j < D; j++)
						s += (double)q[i * D + j] * v[r * D + j];
					ref[r] = (embd_hit){(uint64_t)r, (float)s};
				}
				qsort(ref, R, sizeof *ref, ref_cmp);
				assert_int_equal(count[i], K);
				for (int j = 0; j < K; j++) {
					assert_int_equal(h[i * K + j].id, ref[j].id);
					assert_true(h[i * K + j].score == ref[j].score);
				}
			}
		}
		fx_free(&f);
	}
	free(ref);
	free(v);
}

/* f16 and bf16 matrices of values they hold exactly answer as the f32 one; unaligned data too. */
static void topk_dtypes_equal(void **state)
{
	(void)state;
	const float v[] = {1, 0.5f, -2, 0.25f, 3, 1, 0,   0, -1.5f, 4,  0.5f,  2,
	                   1, 1,    1,  0,     0, 8, NAN, 1, 2,     -3, 0.75f, 1};
	const float q[] = {0.5f, -1, 2, 1, 1, 1};
	embd_hit want[2 * 6], got[2 * 6];
	size_t wc[2], gc[2];
	for (int metric = 0; metric < 2; metric++)
		for (int t = 0; t < EMBD_DTYPE_COUNT; t++)
			for (size_t mis = 0; mis < 4; mis += 3) {
				fx f;
				fx_make(&f, v, 8, 3, (embd_dtype)t, mis);
				float norms[8];
				embd_vecops_norms(&f.m, 0, 8, norms);
				embd_topk tk = {
				    .queries = q, .nq = 2, .k = 6, .metric = (embd_metric)metric, .norms = norms};
				embd_hit *h = t == EMBD_F32 && mis == 0 ? want : got;
				size_t *c = t == EMBD_F32 && mis == 0 ? wc : gc;
				assert_int_equal(embd_vecops_topk(&f.m, &tk, &ac, h, c), 0);
				assert_int_equal(c[0], 6);
				assert_int_equal(c[1], 6);
				assert_memory_equal(wc, c, sizeof wc);
				for (int i = 0; i < 12; i++) {
					assert_int_equal(h[i].id, want[i].id);
					assert_true(h[i].score == want[i].score);
				}
				fx_free(&f);
			}
}

/* Over the budget or the request's limit, at each of the three scratch buffers: the error, nothing held. */
static void topk_over_budget(void **state)
{
	(void)state;
	fx f;
	fx_make(&f, M7, 7, 2, EMBD_F16, 0);
	float norms[7];
	embd_vecops_norms(&f.m, 0, 7, norms);
	const float q[] = {1, 0, 0, 1};
	embd_topk t = {.queries = q, .nq = 2, .k = 3, .metric = EMBD_METRIC_COSINE, .norms = norms};
	/* scores 2 x 7, conversion 7 x 2, normalised queries 2 x 2 floats */
	assert_int_equal(embd_vecops_topk_scratch(&f.m, &t), (2 * 7 + 7 * 2 + 2 * 2) * 4);
	uint64_t b1 = embd_acct_block_bytes(2 * 7 * 4), b2 = embd_acct_block_bytes(7 * 2 * 4),
	         b3 = embd_acct_block_bytes(2 * 2 * 4);
	const uint64_t limits[] = {b1 - 1, b1 + b2 - 1, b1 + b2 + b3 - 1};
	embd_hit h[6];
	size_t count[2] = {55, 55};
	for (int i = 0; i < 3; i++)
		for (int per_request = 0; per_request < 2; per_request++) {
			embd_budget b;
			embd_budget_init(&b, per_request ? 0 : limits[i]);
			embd_acct a;
			embd_acct_init(&a, &b, NULL, per_request ? limits[i] : 0);
			assert_int_equal(embd_vecops_topk(&f.m, &t, &a, h, count),
			                 per_request ? EMBD_ETOOBIG : EMBD_EBUSY);
			assert_int_equal(a.held, 0);
			assert_int_equal(count[0], 55);
			assert_int_equal(embd_acct_close(&a), 0);
			assert_int_equal(embd_budget_inflight(&b), 0);
		}
	/* With exactly enough it answers. */
	embd_budget b;
	embd_budget_init(&b, b1 + b2 + b3);
	embd_acct a;
	embd_acct_init(&a, &b, NULL, 0);
	assert_int_equal(embd_vecops_topk(&f.m, &t, &a, h, count), 0);
	assert_int_equal(count[0], 3);
	assert_int_equal(a.peak, b1 + b2 + b3);
	assert_int_equal(embd_acct_close(&a), 0);
	fx_free(&f);
}

static void analogy_known(void **state)
{
	(void)state;
	/* a (3,4) -> (.6,.8), b (1,0), c (0,2) -> (0,1): a - b + c = (-.4, 1.8), / 3, unit: (-.4, 1.8) / 1.8439 */
	const float v[] = {3, 4, 1, 0, 0, 2, 0, 0};
	embd_err e;
	for (int t = 0; t < EMBD_DTYPE_COUNT; t++) {
		fx f;
		fx_make(&f, v, 4, 2, (embd_dtype)t, 1);
		float out[2];
		assert_int_equal(
		    embd_vecops_analogy(&f.m, (const uint64_t[]){0, 2}, 2, (const uint64_t[]){1}, 1, out, &e), 0);
		double len = sqrt(0.16 + 3.24);
		assert_float_equal(out[0], -0.4 / len, 1e-6);
		assert_float_equal(out[1], 1.8 / len, 1e-6);
		/* One positive word: its unit vector, as gensim's most_similar(word) uses. */
		assert_int_equal(embd_vecops_analogy(&f.m, (const uint64_t[]){0}, 1, NULL, 0, out, &e), 0);
		assert_float_equal(out[0], 0.6, 1e-7);
		assert_float_equal(out[1], 0.8, 1e-7);
		/* Only negatives: the opposite direction. A zero row adds nothing (gensim would make it NaN). */
		assert_int_equal(embd_vecops_analogy(&f.m, NULL, 0, (const uint64_t[]){1, 3}, 2, out, &e), 0);
		assert_true(out[0] == -1.0f && out[1] == 0.0f);
		assert_int_equal(embd_vecops_analogy(&f.m, NULL, 0, NULL, 0, out, &e), EMBD_EEMPTY);
		assert_int_equal(embd_vecops_analogy(&f.m, (const uint64_t[]){0}, 1, (const uint64_t[]){4}, 1, out, &e),
		                 EMBD_ERANGE);
		assert_non_null(strstr(e.msg, "id 4"));
		fx_free(&f);
	}
}

static void pool_known(void **state)
{
	(void)state;
	const float v[] = {1, 2, 3, 4, 5, -6};
	embd_err e;
	for (int t = 0; t < EMBD_DTYPE_COUNT; t++) {
		fx f;
		fx_make(&f, v, 3, 2, (embd_dtype)t, 3);
		float out[2];
		const uint64_t ids[] = {0, 1, 2};
		assert_int_equal(embd_vecops_pool(&f.m, ids, NULL, 3, EMBD_POOLING_MEAN, NULL, &ac, out, &e), 0);
		assert_true(out[0] == 3 && out[1] == 0);
		assert_int_equal(embd_vecops_pool(&f.m, ids, NULL, 3, EMBD_POOLING_SUM, NULL, &ac, out, &e), 0);
		assert_true(out[0] == 9 && out[1] == 0);
		/* np.average(rows, axis=0, weights=[1, 2, 1]) = (12, 4) / 4; the weighted sum is (12, 4). */
		const double w[] = {1, 2, 1};
		assert_int_equal(embd_vecops_pool(&f.m, ids, w, 3, EMBD_POOLING_MEAN, NULL, &ac, out, &e), 0);
		assert_true(out[0] == 3 && out[1] == 1);
		assert_int_equal(embd_vecops_pool(&f.m, ids, w, 3, EMBD_POOLING_SUM, NULL, &ac, out, &e), 0);
		assert_true(out[0] == 12 && out[1] == 4);
		/* Repeated ids count each time; negative weights are allowed while the sum is not 0. */
		assert_int_equal(embd_vecops_pool(&f.m, (const uint64_t[]){1, 1, 0}, (const double[]){1, 1, -1}, 3,
		                                  EMBD_POOLING_MEAN, NULL, &ac, out, &e),
		                 0);
		assert_true(out[0] == 5 && out[1] == 6);
		/* A mean of weights summing to 0 (np.average: ZeroDivisionError), a NaN weight, no ids, a bad id. */
		assert_int_equal(
		    embd_vecops_pool(&f.m, ids, (const double[]){1, -1, 0}, 3, EMBD_POOLING_MEAN, NULL, &ac, out, &e),
		    EMBD_EBADPARAM);
		assert_int_equal(
		    embd_vecops_pool(&f.m, ids, (const double[]){1, -1, 0}, 3, EMBD_POOLING_SUM, NULL, &ac, out, &e),
		    0);
		assert_int_equal(
		    embd_vecops_pool(&f.m, ids, (const double[]){1, NAN, 0}, 3, EMBD_POOLING_SUM, NULL, &ac, out, &e),
		    EMBD_EBADPARAM);
		assert_int_equal(embd_vecops_pool(&f.m, ids, NULL, 0, EMBD_POOLING_MEAN, NULL, &ac, out, &e),
		                 EMBD_EEMPTY);
		assert_int_equal(
		    embd_vecops_pool(&f.m, (const uint64_t[]){3}, NULL, 1, EMBD_POOLING_MEAN, NULL, &ac, out, &e),
		    EMBD_ERANGE);
		fx_free(&f);
	}
}

/* Pooling unit rows (norms given, gensim's pre_normalize=True): a row of norm 0 stays 0 rather than NaN. */
static void pool_unit_rows(void **state)
{
	(void)state;
	const float v[] = {3, 4, 0, 0, 0, 2};
	embd_err e;
	for (int t = 0; t < EMBD_DTYPE_COUNT; t++) {
		fx f;
		fx_make(&f, v, 3, 2, (embd_dtype)t, 0);
		float norms[3], out[2];
		embd_vecops_norms(&f.m, 0, 3, norms);
		const uint64_t ids[] = {0, 1, 2};
		/* Unit rows (0.6, 0.8), (0, 0), (0, 1): the mean (0.2, 0.6), the sum (0.6, 1.8). */
		assert_int_equal(embd_vecops_pool(&f.m, ids, NULL, 3, EMBD_POOLING_MEAN, norms, &ac, out, &e), 0);
		assert_float_equal(out[0], 0.2, 1e-7);
		assert_float_equal(out[1], 0.6, 1e-7);
		assert_int_equal(embd_vecops_pool(&f.m, ids, NULL, 3, EMBD_POOLING_SUM, norms, &ac, out, &e), 0);
		assert_float_equal(out[0], 0.6, 1e-7);
		assert_float_equal(out[1], 1.8, 1e-7);
		/* Weighted (1, 1, 2): (0.6, 2.8) / 4; the zero row alone: 0, not NaN. */
		assert_int_equal(
		    embd_vecops_pool(&f.m, ids, (const double[]){1, 1, 2}, 3, EMBD_POOLING_MEAN, norms, &ac, out, &e),
		    0);
		assert_float_equal(out[0], 0.15, 1e-7);
		assert_float_equal(out[1], 0.7, 1e-7);
		assert_int_equal(
		    embd_vecops_pool(&f.m, (const uint64_t[]){1}, NULL, 1, EMBD_POOLING_MEAN, norms, &ac, out, &e), 0);
		assert_true(out[0] == 0 && out[1] == 0);
		fx_free(&f);
	}
}

static void pool_over_budget(void **state)
{
	(void)state;
	const float v[] = {1, 2, 3, 4};
	fx f;
	fx_make(&f, v, 2, 2, EMBD_F32, 0);
	embd_budget b;
	embd_budget_init(&b, embd_acct_block_bytes(2 * sizeof(double)) - 1);
	embd_acct a;
	embd_acct_init(&a, &b, NULL, 0);
	float out[2] = {7, 7};
	uint64_t id = 1;
	assert_int_equal(embd_vecops_pool(&f.m, &id, NULL, 1, EMBD_POOLING_SUM, NULL, &a, out, NULL), EMBD_EBUSY);
	assert_true(out[0] == 7);
	assert_int_equal(embd_vecops_n_similarity(&f.m, &id, 1, &id, 1, &a, out, NULL), EMBD_EBUSY);
	assert_int_equal(a.held, 0);
	assert_int_equal(embd_acct_close(&a), 0);
	fx_free(&f);
}

static void similarity_known(void **state)
{
	(void)state;
	const float v[] = {3, 4, 4, 3, 0, 0, NAN, 1, 1, 0, 0, 1, 2, 2};
	embd_err e;
	for (int t = 0; t < EMBD_DTYPE_COUNT; t++) {
		fx f;
		fx_make(&f, v, 7, 2, (embd_dtype)t, 1);
		float s;
		assert_int_equal(embd_vecops_similarity(&f.m, 0, 1, EMBD_METRIC_COSINE, &s, &e), 0);
		assert_float_equal(s, 0.96, 1e-7);
		assert_int_equal(embd_vecops_similarity(&f.m, 0, 1, EMBD_METRIC_DOT, &s, &e), 0);
		assert_true(s == 24);
		assert_int_equal(embd_vecops_similarity(&f.m, 0, 0, EMBD_METRIC_COSINE, &s, &e), 0);
		assert_float_equal(s, 1, 1e-7);
		assert_int_equal(embd_vecops_similarity(&f.m, 0, 2, EMBD_METRIC_COSINE, &s, &e), 0);
		assert_true(s == 0); /* norm 0: 0, as gensim's unitvec leaves a zero vector zero */
		assert_int_equal(embd_vecops_similarity(&f.m, 0, 3, EMBD_METRIC_COSINE, &s, &e), 0);
		assert_true(isnan(s));
		assert_int_equal(embd_vecops_similarity(&f.m, 0, 7, EMBD_METRIC_COSINE, &s, &e), EMBD_ERANGE);

		/* n_similarity: mean of (1,0), (0,1) against (2,2): cosine 1; (1,0) against (0,1): 0. */
		const uint64_t s1[] = {4, 5}, s2[] = {6};
		assert_int_equal(embd_vecops_n_similarity(&f.m, s1, 2, s2, 1, &ac, &s, &e), 0);
		assert_float_equal(s, 1, 1e-7);
		assert_int_equal(embd_vecops_n_similarity(&f.m, s1, 1, s1 + 1, 1, &ac, &s, &e), 0);
		assert_true(s == 0);
		/* (3,4) + (4,3) = (7,7) against (1,0): 1/sqrt(2). */
		assert_int_equal(embd_vecops_n_similarity(&f.m, (const uint64_t[]){0, 1}, 2, s1, 1, &ac, &s, &e), 0);
		assert_float_equal(s, 0.70710678, 1e-7);
		assert_int_equal(embd_vecops_n_similarity(&f.m, s1, 0, s2, 1, &ac, &s, &e), EMBD_EEMPTY);
		assert_int_equal(embd_vecops_n_similarity(&f.m, s1, 1, (const uint64_t[]){9}, 1, &ac, &s, &e),
		                 EMBD_ERANGE);
		fx_free(&f);
	}
}

static void names(void **state)
{
	(void)state;
	embd_metric m;
	embd_pooling p;
	assert_int_equal(embd_metric_parse("dot", &m), 0);
	assert_int_equal(m, EMBD_METRIC_DOT);
	assert_string_equal(embd_metric_name(EMBD_METRIC_COSINE), "cosine");
	assert_int_equal(embd_metric_parse("euclid", &m), EMBD_EBADPARAM);
	assert_int_equal(embd_pooling_parse("sum", &p), 0);
	assert_int_equal(p, EMBD_POOLING_SUM);
	assert_string_equal(embd_pooling_name(EMBD_POOLING_MEAN), "mean");
	assert_int_equal(embd_pooling_parse("max", &p), EMBD_EBADPARAM);
}

int main(void)
{
	embd_ops_set_threads(1);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(norms_known),
	    cmocka_unit_test(norms_threads_match),
	    cmocka_unit_test_setup_teardown(topk_cosine_known, acct_setup, acct_teardown),
	    cmocka_unit_test_setup_teardown(topk_dot_known, acct_setup, acct_teardown),
	    cmocka_unit_test_setup_teardown(topk_range_cancel_scratch, acct_setup, acct_teardown),
	    cmocka_unit_test_setup_teardown(topk_k0_and_zero_query, acct_setup, acct_teardown),
	    cmocka_unit_test_setup_teardown(topk_bad_params, acct_setup, acct_teardown),
	    cmocka_unit_test_setup_teardown(topk_batch_matches_single, acct_setup, acct_teardown),
	    cmocka_unit_test_setup_teardown(topk_random_vs_reference, acct_setup, acct_teardown),
	    cmocka_unit_test_setup_teardown(topk_dtypes_equal, acct_setup, acct_teardown),
	    cmocka_unit_test(topk_over_budget),
	    cmocka_unit_test(analogy_known),
	    cmocka_unit_test_setup_teardown(pool_known, acct_setup, acct_teardown),
	    cmocka_unit_test_setup_teardown(pool_unit_rows, acct_setup, acct_teardown),
	    cmocka_unit_test(pool_over_budget),
	    cmocka_unit_test_setup_teardown(similarity_known, acct_setup, acct_teardown),
	    cmocka_unit_test(names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
