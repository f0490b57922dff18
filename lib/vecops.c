/* Vector operations on the mapped matrix: row norms, top-k neighbours by blocked BLAS, analogy, pooling, similarity. */
#include "vecops.h"

#include <cblas.h>
#include <limits.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "ops.h"

/* Elements converted at a time where a function keeps its working row on the stack. */
#define CHUNK 256

static const char *const metric_names[] = {[EMBD_METRIC_COSINE] = "cosine", [EMBD_METRIC_DOT] = "dot"};
static const char *const pooling_names[] = {[EMBD_POOLING_MEAN] = "mean", [EMBD_POOLING_SUM] = "sum"};

const char *embd_metric_name(embd_metric m)
{
	return metric_names[m];
}

int embd_metric_parse(const char *name, embd_metric *out)
{
	for (int i = 0; i < (int)(sizeof metric_names / sizeof metric_names[0]); i++)
		if (strcmp(name, metric_names[i]) == 0) {
			*out = (embd_metric)i;
			return 0;
		}
	return EMBD_EBADPARAM;
}

const char *embd_pooling_name(embd_pooling op)
{
	return pooling_names[op];
}

int embd_pooling_parse(const char *name, embd_pooling *out)
{
	for (int i = 0; i < (int)(sizeof pooling_names / sizeof pooling_names[0]); i++)
		if (strcmp(name, pooling_names[i]) == 0) {
			*out = (embd_pooling)i;
			return 0;
		}
	return EMBD_EBADPARAM;
}

/*
 * Half to float with the common case (a normal number) inline: the top-k
 * pass converts every element of an f16 matrix, and a call per element to
 * embd_f16_to_f32 costs more than the BLAS work on it. Subnormals, zeros,
 * infinities and NaN take the library's exact path.
 */
static inline float half(uint16_t h)
{
	uint32_t e = h & 0x7c00u;
	if (e == 0 || e == 0x7c00u)
		return embd_f16_to_f32(h);
	uint32_t u = ((uint32_t)(h & 0x8000u) << 16) | (((uint32_t)(h & 0x7fffu) + 0x1c000u) << 13);
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

static inline float bhalf(uint16_t b)
{
	uint32_t u = (uint32_t)b << 16;
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

#if defined(__x86_64__)
/*
 * n halves at p (any alignment) to float32 with the F16C instruction, 8 at a
 * time: exact for every value, as embd_f16_to_f32 (a NaN stays NaN). With it
 * an f16 top-k pass costs about what an f32 one does, where the scalar
 * conversion took twice as long as the BLAS work.
 */
__attribute__((target("avx2,f16c"))) static void half_f16c(const unsigned char *p, size_t n, float *dst)
{
	size_t j = 0;
	for (; j + 8 <= n; j += 8)
		_mm256_storeu_ps(dst + j,
		                 _mm256_cvtph_ps(_mm_loadu_si128((const __m128i_u *)(const void *)(p + 2 * j))));
	for (; j < n; j++) {
		uint16_t h;
		memcpy(&h, p + 2 * j, 2);
		dst[j] = half(h);
	}
}

/* n bfloat16s at p (any alignment) to float32, 8 at a time: widen to 32 bits and shift into the top half. */
__attribute__((target("avx2"))) static void bhalf_avx2(const unsigned char *p, size_t n, float *dst)
{
	size_t j = 0;
	for (; j + 8 <= n; j += 8) {
		__m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i_u *)(const void *)(p + 2 * j)));
		_mm256_storeu_ps(dst + j, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
	}
	for (; j < n; j++) {
		uint16_t h;
		memcpy(&h, p + 2 * j, 2);
		dst[j] = bhalf(h);
	}
}
#endif

/* Elements [j0, j0 + n) of the row at p (any alignment) as float32 into dst. */
static void load(embd_dtype t, const unsigned char *p, size_t j0, size_t n, float *dst)
{
	switch (t) {
	case EMBD_F32:
		memcpy(dst, p + j0 * 4, n * 4);
		return;
	case EMBD_F16:
#if defined(__x86_64__)
		if (__builtin_cpu_supports("avx2")) { /* every x86 CPU with AVX2 has F16C */
			half_f16c(p + j0 * 2, n, dst);
			return;
		}
#endif
		for (size_t j = 0; j < n; j++) {
			uint16_t h;
			memcpy(&h, p + (j0 + j) * 2, 2);
			dst[j] = half(h);
		}
		return;
	default:
#if defined(__x86_64__)
		if (__builtin_cpu_supports("avx2")) {
			bhalf_avx2(p + j0 * 2, n, dst);
			return;
		}
#endif
		for (size_t j = 0; j < n; j++) {
			uint16_t h;
			memcpy(&h, p + (j0 + j) * 2, 2);
			dst[j] = bhalf(h);
		}
		return;
	}
}

static const unsigned char *row_at(const embd_matrix_info *m, uint64_t id)
{
	return m->data + id * m->row_bytes;
}

/* Sum of squares of a row, in double. */
static double sumsq(const embd_matrix_info *m, const unsigned char *p)
{
	float buf[CHUNK];
	double s = 0.0;
	for (size_t j0 = 0; j0 < m->dim; j0 += CHUNK) {
		size_t n = m->dim - j0 < CHUNK ? m->dim - j0 : CHUNK;
		load(m->dtype, p, j0, n, buf);
		/* Four partial sums: one chain of dependent double adds made the norms of 400k x 100 take 130 ms. */
		double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
		size_t j = 0;
		for (; j + 4 <= n; j += 4) {
			s0 += (double)buf[j] * (double)buf[j];
			s1 += (double)buf[j + 1] * (double)buf[j + 1];
			s2 += (double)buf[j + 2] * (double)buf[j + 2];
			s3 += (double)buf[j + 3] * (double)buf[j + 3];
		}
		for (; j < n; j++)
			s0 += (double)buf[j] * (double)buf[j];
		s += (s0 + s1) + (s2 + s3);
	}
	return s;
}

void embd_vecops_norms(const embd_matrix_info *m, uint64_t first, uint64_t count, float *out)
{
	for (uint64_t i = first; i < first + count; i++)
		out[i] = (float)sqrt(sumsq(m, row_at(m, i)));
}

typedef struct norms_job {
	const embd_matrix_info *m;
	uint64_t first, count;
	float *out;
} norms_job;

static void *norms_thread(void *arg)
{
	norms_job *j = arg;
	embd_vecops_norms(j->m, j->first, j->count, j->out);
	return NULL;
}

void embd_vecops_norms_threads(const embd_matrix_info *m, float *out, int nthreads)
{
	enum { MAX_THREADS = 64 };
	if (nthreads < 1)
		nthreads = 1;
	if (nthreads > MAX_THREADS)
		nthreads = MAX_THREADS;
	if ((uint64_t)nthreads > m->rows)
		nthreads = m->rows > 0 ? (int)m->rows : 1;
	norms_job jobs[MAX_THREADS] = {{0}};
	pthread_t tids[MAX_THREADS];
	int started[MAX_THREADS] = {0};
	uint64_t per = m->rows / (uint64_t)nthreads;
	for (int i = 0; i < nthreads; i++) {
		jobs[i] = (norms_job){m, per * (uint64_t)i, i == nthreads - 1 ? m->rows - per * (uint64_t)i : per, out};
		if (i > 0)
			started[i] = pthread_create(&tids[i], NULL, norms_thread, &jobs[i]) == 0;
	}
	norms_thread(&jobs[0]);
	for (int i = 1; i < nthreads; i++) {
		if (started[i])
			pthread_join(tids[i], NULL);
		else
			norms_thread(&jobs[i]);
	}
}

/* Top-k selection. The heap's root is its worst hit: lowest score, and of equal scores the highest id. */
static int worse(embd_hit a, embd_hit b)
{
	return a.score < b.score || (a.score == b.score && a.id > b.id);
}

static void sift_down(embd_hit *h, size_t n, size_t i)
{
	for (;;) {
		size_t w = i, l = 2 * i + 1, r = l + 1;
		if (l < n && worse(h[l], h[w]))
			w = l;
		if (r < n && worse(h[r], h[w]))
			w = r;
		if (w == i)
			return;
		embd_hit tmp = h[i];
		h[i] = h[w];
		h[w] = tmp;
		i = w;
	}
}

static void sift_up(embd_hit *h, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!worse(h[i], h[p]))
			return;
		embd_hit tmp = h[i];
		h[i] = h[p];
		h[p] = tmp;
		i = p;
	}
}

/* Offer scores s[0 .. nb) of rows r0 + j to the heap h (*n hits held, cap at most). NaN is never taken. */
static void offer(embd_hit *h, size_t *n, size_t cap, const float *s, size_t nb, uint64_t r0)
{
	size_t j = 0;
	for (; j < nb && *n < cap; j++) {
		if (isnan(s[j]))
			continue;
		h[*n] = (embd_hit){r0 + j, s[j]};
		sift_up(h, (*n)++);
	}
	if (*n < cap)
		return;
	/*
	 * Rows come in ascending id order, so every held hit has a lower id than
	 * row r0 + j: a score equal to the root's loses the tie, and only a
	 * strictly greater one gets in. NaN compares false and stays out.
	 */
	float floor = h[0].score;
	for (; j < nb; j++) {
		if (!(s[j] > floor))
			continue;
		h[0] = (embd_hit){r0 + j, s[j]};
		sift_down(h, cap, 0);
		floor = h[0].score;
	}
}

/*
 * The score of a query against row b, in double and rounded to float32 once:
 * dot, or cosine as dot / (|x| |y|) (a norm of 0 gives 0; a NaN norm is not
 * 0, so a NaN row gives NaN). The query is q (m->dim floats), or row a when q
 * is NULL; either way the same sums in the same order, so that
 * /v1/similarity of (a, b) and a lone /v1/similar query of a scoring b give
 * the same float, bit for bit.
 */
static float pair_score(const embd_matrix_info *m, const float *q, uint64_t a, uint64_t b, embd_metric metric)
{
	float x[CHUNK], y[CHUNK];
	double dot = 0.0, xx = 0.0, yy = 0.0;
	for (size_t j0 = 0; j0 < m->dim; j0 += CHUNK) {
		size_t n = m->dim - j0 < CHUNK ? m->dim - j0 : CHUNK;
		if (q != NULL)
			memcpy(x, q + j0, n * sizeof *x);
		else
			load(m->dtype, row_at(m, a), j0, n, x);
		load(m->dtype, row_at(m, b), j0, n, y);
		for (size_t j = 0; j < n; j++) {
			dot += (double)x[j] * (double)y[j];
			xx += (double)x[j] * (double)x[j];
			yy += (double)y[j] * (double)y[j];
		}
	}
	if (metric == EMBD_METRIC_DOT)
		return (float)dot;
	return xx == 0.0 || yy == 0.0 ? 0.0f : (float)(dot / (sqrt(xx) * sqrt(yy)));
}

/* Whether hit x goes before hit y: higher score first, then lower id. */
static int before(embd_hit x, embd_hit y)
{
	return x.score > y.score || (x.score == y.score && x.id < y.id);
}

/*
 * A lone query's hits, chosen by the BLAS pass, rescored by pair_score and
 * put in order again (an insertion sort: they were in order but for the last
 * bits). k dot products of dim: nothing beside the pass over every row.
 */
static void rescore(const embd_matrix_info *m, const embd_topk *t, embd_hit *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h[i].score = pair_score(m, t->queries, 0, h[i].id, t->metric);
	for (size_t i = 1; i < n; i++) {
		embd_hit x = h[i];
		size_t j = i;
		for (; j > 0 && before(x, h[j - 1]); j--)
			h[j] = h[j - 1];
		h[j] = x;
	}
}

/* Heapsort the held hits, best first. */
static void finish(embd_hit *h, size_t n)
{
	for (size_t end = n; end > 1; end--) {
		embd_hit tmp = h[0];
		h[0] = h[end - 1];
		h[end - 1] = tmp;
		sift_down(h, end - 1, 0);
	}
}

/* The rows t searches: count from first (0 when the range is not within the matrix). */
static uint64_t rows_of(const embd_matrix_info *m, const embd_topk *t)
{
	if (t->first > m->rows)
		return 0;
	uint64_t left = m->rows - t->first;
	return t->count == 0 ? left : t->count <= left ? t->count : 0;
}

static size_t block_of(const embd_matrix_info *m, const embd_topk *t)
{
	size_t b = t->block_rows;
	if (b == 0) {
		uint64_t row = m->dim > 0 ? m->dim * sizeof(float) : 1;
		b = row < EMBD_TOPK_BLOCK_BYTES / 64 ? (size_t)(EMBD_TOPK_BLOCK_BYTES / row) : 64;
	}
	uint64_t rows = rows_of(m, t);
	return rows < b ? (size_t)rows : b;
}

/* Rows of an f32 matrix can go to BLAS straight from the mapping when they are float-aligned. */
static int direct(const embd_matrix_info *m)
{
	return m->dtype == EMBD_F32 && (uintptr_t)m->data % _Alignof(float) == 0 && m->row_bytes % sizeof(float) == 0;
}

/* The three scratch sizes in bytes; 0 on overflow. */
static int scratch_sizes(const embd_matrix_info *m, const embd_topk *t, size_t *scores, size_t *conv, size_t *qn)
{
	size_t b = block_of(m, t), dim = (size_t)m->dim, f = sizeof(float);
	if (m->dim > SIZE_MAX || (b && t->nq > SIZE_MAX / b / f) || (b && dim > SIZE_MAX / b / f) ||
	    (dim && t->nq > SIZE_MAX / dim / f))
		return EMBD_EOVERFLOW;
	*scores = t->nq * b * f;
	*conv = direct(m) ? 0 : b * dim * f;
	*qn = t->metric == EMBD_METRIC_COSINE ? t->nq * dim * f : 0;
	if (*scores > SIZE_MAX - *conv - *qn)
		return EMBD_EOVERFLOW;
	return 0;
}

uint64_t embd_vecops_topk_scratch(const embd_matrix_info *m, const embd_topk *t)
{
	size_t s, c, q;
	if (scratch_sizes(m, t, &s, &c, &q) != 0)
		return UINT64_MAX;
	return (uint64_t)s + c + q;
}

int embd_vecops_topk(const embd_matrix_info *m, const embd_topk *t, embd_acct *a, embd_hit *out, size_t *counts)
{
	if (t->nq == 0 || t->queries == NULL || (t->metric == EMBD_METRIC_COSINE && t->norms == NULL) ||
	    (t->exclude != NULL && t->exclude_off == NULL) || (unsigned)t->metric > EMBD_METRIC_DOT)
		return EMBD_EBADPARAM;
	uint64_t nrows = rows_of(m, t), end = t->first + nrows;
	if (nrows == 0 && m->rows != 0)
		return EMBD_EBADPARAM;
	size_t nb_max = block_of(m, t), dim = (size_t)m->dim;
	if (m->dim > INT_MAX || nb_max > INT_MAX || t->nq > INT_MAX || m->row_bytes / sizeof(float) > INT_MAX)
		return EMBD_EBADPARAM;
	size_t kk = t->k < nrows ? t->k : (size_t)nrows;
	if (kk == 0) {
		memset(counts, 0, t->nq * sizeof *counts);
		return 0;
	}
	size_t scores_bytes, conv_bytes, qn_bytes;
	int rc = scratch_sizes(m, t, &scores_bytes, &conv_bytes, &qn_bytes);
	if (rc != 0)
		return rc;
	float *scores = NULL, *conv = NULL, *qn = NULL;
	embd_acct *owner = t->scratch != NULL ? NULL : a; /* who gives the buffers back */
	if (t->scratch != NULL) {
		/* One block the caller holds, cut in three at float alignment (each size is a multiple of 4). */
		scores = t->scratch;
		conv = conv_bytes ? scores + scores_bytes / sizeof(float) : NULL;
		qn = qn_bytes ? scores + (scores_bytes + conv_bytes) / sizeof(float) : NULL;
	} else {
		if ((rc = embd_acct_alloc(a, scores_bytes, (void **)&scores)) != 0)
			goto out;
		if (conv_bytes && (rc = embd_acct_alloc(a, conv_bytes, (void **)&conv)) != 0)
			goto out;
		if (qn_bytes && (rc = embd_acct_alloc(a, qn_bytes, (void **)&qn)) != 0)
			goto out;
	}

	const float *q = t->queries;
	if (qn) {
		memcpy(qn, t->queries, qn_bytes);
		for (size_t i = 0; i < t->nq; i++)
			embd_ops_l2_normalize(qn + i * dim, dim);
		q = qn;
	}
	memset(counts, 0, t->nq * sizeof *counts);
	int nq = (int)t->nq, idim = (int)dim;
	for (uint64_t r0 = t->first; r0 < end; r0 += nb_max) {
		if (t->cancel != NULL && atomic_load_explicit(t->cancel, memory_order_relaxed) != 0) {
			rc = EMBD_ECANCELED;
			goto out;
		}
		size_t nb = end - r0 < nb_max ? (size_t)(end - r0) : nb_max;
		const float *rows;
		int ld;
		if (conv) {
			for (size_t r = 0; r < nb; r++)
				load(m->dtype, row_at(m, r0 + r), 0, dim, conv + r * dim);
			rows = conv;
			ld = idim;
		} else {
			rows = (const float *)(const void *)row_at(m, r0);
			ld = (int)(m->row_bytes / sizeof(float));
		}
		if (dim == 0)
			memset(scores, 0, t->nq * nb * sizeof(float)); /* BLAS refuses a leading dimension of 0 */
		else if (nq == 1)
			cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)nb, idim, 1.0f, rows, ld, q, 1, 0.0f, scores, 1);
		else
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, (int)nb, idim, 1.0f, q, idim, rows, ld,
			            0.0f, scores, (int)nb);
		for (size_t i = 0; i < t->nq; i++) {
			float *s = scores + i * nb;
			if (t->metric == EMBD_METRIC_COSINE) {
				/* norm 0 is a zero row: its score is 0, not 0 / 0; a NaN norm keeps the NaN. */
				const float *norms = t->norms + r0;
				for (size_t r = 0; r < nb; r++)
					s[r] = norms[r] == 0.0f ? 0.0f : s[r] / norms[r];
			}
			if (t->exclude)
				for (size_t e = t->exclude_off[i]; e < t->exclude_off[i + 1]; e++)
					if (t->exclude[e] >= r0 && t->exclude[e] - r0 < nb)
						s[t->exclude[e] - r0] = NAN;
			offer(out + i * t->k, &counts[i], kk, s, nb, r0);
		}
	}
	for (size_t i = 0; i < t->nq; i++)
		finish(out + i * t->k, counts[i]);
	if (t->nq == 1)
		rescore(m, t, out, counts[0]);
out:
	if (owner != NULL) {
		embd_acct_free(owner, qn);
		embd_acct_free(owner, conv);
		embd_acct_free(owner, scores);
	}
	return rc;
}

static int check_ids(const embd_matrix_info *m, const uint64_t *ids, size_t n, embd_err *e)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] >= m->rows)
			return embd_err_set(e, EMBD_ERANGE, "id %llu out of range (rows: %llu)",
			                    (unsigned long long)ids[i], (unsigned long long)m->rows);
	return 0;
}

int embd_vecops_analogy(const embd_matrix_info *m, const uint64_t *pos, size_t npos, const uint64_t *neg, size_t nneg,
                        float *out, embd_err *e)
{
	if (npos + nneg == 0)
		return embd_err_set(e, EMBD_EEMPTY, "an analogy needs at least one positive or negative id");
	int rc = check_ids(m, pos, npos, e);
	if (rc == 0)
		rc = check_ids(m, neg, nneg, e);
	if (rc != 0)
		return rc;
	size_t dim = (size_t)m->dim;
	memset(out, 0, dim * sizeof *out);
	float buf[CHUNK];
	for (size_t i = 0; i < npos + nneg; i++) {
		const unsigned char *p = row_at(m, i < npos ? pos[i] : neg[i - npos]);
		/* gensim: vectors[i] / norms[i] in float32, then mean += weight * vec in float32. */
		float norm = (float)sqrt(sumsq(m, p));
		float w = i < npos ? 1.0f : -1.0f;
		for (size_t j0 = 0; j0 < dim; j0 += CHUNK) {
			size_t n = dim - j0 < CHUNK ? dim - j0 : CHUNK;
			load(m->dtype, p, j0, n, buf);
			for (size_t j = 0; j < n; j++)
				out[j0 + j] += w * (norm == 0.0f ? 0.0f : buf[j] / norm);
		}
	}
	/* mean / total_weight in float32, then matutils.unitvec: dnrm2 and dscal(1 / veclen) in double. */
	float total = (float)(npos + nneg);
	double ss = 0.0;
	for (size_t j = 0; j < dim; j++) {
		out[j] /= total;
		ss += (double)out[j] * (double)out[j];
	}
	double len = sqrt(ss);
	if (len > 0.0) {
		double inv = 1.0 / len;
		for (size_t j = 0; j < dim; j++)
			out[j] = (float)((double)out[j] * inv);
	}
	return 0;
}

/* acc[j] += w * row[j] for the whole row, in double. */
/* acc += w * row id; with norm (not NULL), w * (row / *norm), the quotient rounded to float32 as gensim's. */
static void accumulate(const embd_matrix_info *m, uint64_t id, double w, const float *norm, double *acc)
{
	float buf[CHUNK];
	const unsigned char *p = row_at(m, id);
	if (norm != NULL && *norm == 0.0f)
		return; /* a row of norm 0 stays 0 */
	for (size_t j0 = 0; j0 < m->dim; j0 += CHUNK) {
		size_t n = m->dim - j0 < CHUNK ? m->dim - j0 : CHUNK;
		load(m->dtype, p, j0, n, buf);
		if (norm != NULL)
			for (size_t j = 0; j < n; j++)
				buf[j] = buf[j] / *norm;
		for (size_t j = 0; j < n; j++)
			acc[j0 + j] += w * (double)buf[j];
	}
}

static int alloc_doubles(embd_acct *a, size_t n, double **out)
{
	if (n > SIZE_MAX / sizeof(double))
		return EMBD_EOVERFLOW;
	int rc = embd_acct_alloc(a, n * sizeof(double), (void **)out);
	if (rc == 0)
		memset(*out, 0, n * sizeof(double));
	return rc;
}

int embd_vecops_pool(const embd_matrix_info *m, const uint64_t *ids, const double *weights, size_t n, embd_pooling op,
                     const float *norms, embd_acct *a, float *out, embd_err *e)
{
	if (n == 0)
		return embd_err_set(e, EMBD_EEMPTY, "pooling needs at least one id");
	if ((unsigned)op > EMBD_POOLING_SUM)
		return embd_err_set(e, EMBD_EBADPARAM, "unknown pooling");
	int rc = check_ids(m, ids, n, e);
	if (rc != 0)
		return rc;
	double wsum = 0.0;
	for (size_t i = 0; i < n; i++) {
		double w = weights ? weights[i] : 1.0;
		if (!isfinite(w))
			return embd_err_set(e, EMBD_EBADPARAM, "weight %zu is not a finite number", i);
		wsum += w;
	}
	if (op == EMBD_POOLING_MEAN && wsum == 0.0)
		return embd_err_set(e, EMBD_EBADPARAM, "the weights of a mean sum to zero");
	if (!isfinite(wsum))
		return embd_err_set(e, EMBD_EBADPARAM, "the weights sum past the largest double");
	double *acc;
	if ((rc = alloc_doubles(a, (size_t)m->dim, &acc)) != 0)
		return rc;
	for (size_t i = 0; i < n; i++)
		accumulate(m, ids[i], weights ? weights[i] : 1.0, norms != NULL ? &norms[ids[i]] : NULL, acc);
	for (size_t j = 0; j < m->dim; j++)
		out[j] = (float)(op == EMBD_POOLING_MEAN ? acc[j] / wsum : acc[j]);
	embd_acct_free(a, acc);
	return 0;
}

/* Cosine of two double vectors; 0 when either has norm 0. */
static double cosine(const double *x, const double *y, size_t n)
{
	double dot = 0.0, xx = 0.0, yy = 0.0;
	for (size_t j = 0; j < n; j++) {
		dot += x[j] * y[j];
		xx += x[j] * x[j];
		yy += y[j] * y[j];
	}
	return xx == 0.0 || yy == 0.0 ? 0.0 : dot / (sqrt(xx) * sqrt(yy));
}

int embd_vecops_similarity(const embd_matrix_info *m, uint64_t a, uint64_t b, embd_metric metric, float *out,
                           embd_err *e)
{
	uint64_t ids[2] = {a, b};
	int rc = check_ids(m, ids, 2, e);
	if (rc != 0)
		return rc;
	*out = pair_score(m, NULL, a, b, metric);
	return 0;
}

int embd_vecops_n_similarity(const embd_matrix_info *m, const uint64_t *ids1, size_t n1, const uint64_t *ids2,
                             size_t n2, embd_acct *a, float *out, embd_err *e)
{
	if (n1 == 0 || n2 == 0)
		return embd_err_set(e, EMBD_EEMPTY, "n_similarity needs two non-empty sets of ids");
	int rc = check_ids(m, ids1, n1, e);
	if (rc == 0)
		rc = check_ids(m, ids2, n2, e);
	if (rc != 0)
		return rc;
	size_t dim = (size_t)m->dim;
	if (dim > SIZE_MAX / 2)
		return EMBD_EOVERFLOW;
	double *acc;
	if ((rc = alloc_doubles(a, 2 * dim, &acc)) != 0)
		return rc;
	/* The means' 1/n scale cancels in the cosine, as does gensim's; the sums are enough. */
	for (size_t i = 0; i < n1; i++)
		accumulate(m, ids1[i], 1.0, NULL, acc);
	for (size_t i = 0; i < n2; i++)
		accumulate(m, ids2[i], 1.0, NULL, acc + dim);
	*out = (float)cosine(acc, acc + dim, dim);
	embd_acct_free(a, acc);
	return 0;
}
