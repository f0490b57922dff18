/* The vector operations' handlers: nearest neighbours, similarity, pooling (the maths is lib/vecops.c). */
#include "vector.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "encode.h"
#include "query.h"
#include "server.h"
#include "vecops.h"
#include "vecreq.h"

/* Scratch from the request's accountant, with the 413/503 answer when it does not fit. */
static int scratch(struct req *r, size_t n, void **out, const char *what, embd_err *e)
{
	int rc = embd_acct_alloc(&r->acct, n, out);
	return rc != 0 ? embd_req_charge_error(r, rc, what, e) : 0;
}

/* ?metric=cosine|dot (default cosine). */
static int metric_arg(struct req *r, embd_metric *out, embd_err *e)
{
	const char *s = embd_arg(r, "metric");
	*out = EMBD_METRIC_COSINE;
	if (s != NULL && embd_metric_parse(s, out) != 0)
		return embd_err_set(e, EMBD_EBADPARAM, "metric '%.100s' is not cosine or dot", s);
	return 0;
}

/* ?k= (default 10, at most limits.max_ids) and ?include_self=0|1. */
static int topk_args(struct req *r, uint64_t *k, int *include_self, embd_err *e)
{
	*k = 10;
	const char *ks = embd_arg(r, "k");
	if (ks != NULL && embd_query_u64(ks, k) != 0)
		return embd_err_set(e, EMBD_EBADPARAM, "k '%.100s' is not a non-negative decimal integer", ks);
	if (*k > (uint64_t)r->srv->cfg.max_ids) {
		atomic_fetch_add(&r->srv->metrics.rejected[REJ_MAX_IDS], 1);
		return embd_err_set(e, EMBD_ETOOMANYIDS, "k %" PRIu64 " is over limits.max_ids (%" PRId64 ")", *k,
		                    r->srv->cfg.max_ids);
	}
	const char *s = embd_arg(r, "include_self");
	*include_self = 0;
	if (s != NULL) {
		if (strcmp(s, "1") == 0 || strcmp(s, "true") == 0)
			*include_self = 1;
		else if (strcmp(s, "0") != 0 && strcmp(s, "false") != 0)
			return embd_err_set(e, EMBD_EBADPARAM, "include_self '%.100s' is not 0 or 1", s);
	}
	return 0;
}

/*
 * "k", "metric" and "include_self" written in a POST body (users write them
 * there as often as in the query): taken, unless the query says otherwise
 * (the same key in both places with different values is 400).
 */
static int body_opts(struct req *r, const embd_vecreq *vq, uint64_t *k, embd_metric *metric, int *include_self,
                     embd_err *e)
{
	if (vq->given & EMBD_VQ_K) {
		if (embd_arg(r, "k") != NULL && *k != vq->k)
			return embd_err_set(e, EMBD_EBADPARAM,
			                    "k is %" PRIu64 " in the query and %" PRIu64 " in the body: give it once",
			                    *k, vq->k);
		if (vq->k > (uint64_t)r->srv->cfg.max_ids) {
			atomic_fetch_add(&r->srv->metrics.rejected[REJ_MAX_IDS], 1);
			return embd_err_set(e, EMBD_ETOOMANYIDS, "k %" PRIu64 " is over limits.max_ids (%" PRId64 ")",
			                    vq->k, r->srv->cfg.max_ids);
		}
		*k = vq->k;
	}
	if (vq->given & EMBD_VQ_METRIC) {
		if (embd_arg(r, "metric") != NULL && *metric != (embd_metric)vq->metric)
			return embd_err_set(e, EMBD_EBADPARAM,
			                    "metric is %s in the query and %s in the body: give it once",
			                    embd_metric_name(*metric), embd_metric_name((embd_metric)vq->metric));
		*metric = (embd_metric)vq->metric;
	}
	if (vq->given & EMBD_VQ_INCLUDE_SELF) {
		if (embd_arg(r, "include_self") != NULL && *include_self != vq->include_self)
			return embd_err_set(e, EMBD_EBADPARAM,
			                    "include_self is %d in the query and %d in the body: give it once",
			                    *include_self, vq->include_self);
		*include_self = vq->include_self;
	}
	return 0;
}

/* Rows ids[0 .. n) as float32 queries (n x dim), widened exactly (any alignment). */
static int rows_as_queries(struct req *r, const int64_t *ids, size_t n, float **out, embd_err *e)
{
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	int rc = scratch(r, n * m->dim * sizeof(float), (void **)out, "the query vectors", e);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		embd_dtype_convert(EMBD_F32, *out + i * m->dim, m->dtype, m->data + (uint64_t)ids[i] * m->row_bytes,
		                   m->dim);
	}
	return rc;
}

/*
 * Rows [*a, *b) of part `part` of `parts`: cut at multiples of the search's
 * block (t.block_rows), so that every BLAS call of a part is one the search
 * in one pass would make (the same rows, the same count): BLAS kernels may
 * round a column differently by where it falls in the call (OpenBLAS's
 * Haswell sgemm did, for rows past a cut at 50,000 of 100,000), and a search
 * cut in parts must answer as one pass, bit for bit.
 */
static void part_range(uint64_t rows, uint64_t block, unsigned part, unsigned parts, uint64_t *a, uint64_t *b)
{
	uint64_t blocks = block > 0 ? (rows + block - 1) / block : 0;
	*a = blocks * part / parts * block;
	*b = blocks * (part + 1) / parts * block;
	if (*a > rows)
		*a = rows;
	if (*b > rows)
		*b = rows;
}

/* The most parts one search is cut into (one per compute thread, up to this). */
#define MAX_PARTS 8
/*
 * A search over fewer bytes of rows than this runs as one part: below a block
 * of rows (EMBD_TOPK_BLOCK_BYTES), handing a part to another thread costs
 * about what it saves.
 */
#define PART_MIN_BYTES EMBD_TOPK_BLOCK_BYTES

enum vkind { V_TOPK, V_PAIRS, V_SETS, V_POOL };

/*
 * One vector operation's work on the compute pool. It lives in the request's
 * accounted memory, like every buffer it points to: all of them are charged
 * before the work is admitted, so that a search never fails for memory once
 * it has run. While it runs, the connection is suspended and nothing else
 * touches the request: the parts of a search write only their own hits and
 * scratch, and a single-part work may use the request's accountant.
 */
struct vwork {
	embd_work w;
	struct req *r;
	enum vkind kind;
	const embd_matrix_info *m;
	/* V_TOPK: t is the whole search, each part searches its share of the rows into its own hits. */
	embd_topk t;
	uint64_t k;   /* as asked (the answer says it) */
	size_t kshow; /* hits answered per query: k clamped to the rows; t.k, the hits searched, may be more */
	int single;   /* one query: "results" is its list, not a list of lists */
	/* ?oov=skip: the queries asked (nall), skipped[i] set for those not searched (an empty list); NULL: none. */
	const unsigned char *skipped;
	size_t nall;
	embd_hit *hits;   /* parts x nq x t.k */
	size_t *counts;   /* parts x nq */
	embd_hit *merged; /* nq x t.k, when there are several parts */
	char *answer;     /* the answer's buffer, bound bytes, charged before the search */
	void *scratch[MAX_PARTS];
	int part_rc[MAX_PARTS];
	/* V_PAIRS, V_SETS, V_POOL */
	const uint64_t *ids;
	size_t n, split;
	const double *weights;
	embd_metric metric;
	embd_pooling op;
	int unit;   /* V_POOL: pool unit rows (gensim's pre_normalize) */
	float *out; /* V_PAIRS: n / 2 scores; V_SETS: 1; V_POOL: dim */
	int rc;
	embd_err err;
};

/* A part of a work, on a pool thread. */
static void vwork_run(embd_work *w, unsigned part)
{
	struct vwork *v = (struct vwork *)w;
	int *rc = v->kind == V_TOPK ? &v->part_rc[part] : &v->rc;
	if ((*rc = embd_work_cancelled(w)) != 0)
		return;
	const embd_matrix_info *m = v->m;
	switch (v->kind) {
	case V_TOPK: {
		embd_topk t = v->t;
		/* Norms are computed once per generation, by the first search that needs them (the others wait). */
		if (t.metric == EMBD_METRIC_COSINE && (*rc = embd_gen_norms(v->r->gen, &t.norms, NULL)) != 0)
			return;
		uint64_t a, b;
		part_range(m->rows, t.block_rows, part, w->parts, &a, &b);
		t.first = a;
		t.count = b - a;
		t.cancel = &w->cancel;
		t.scratch = v->scratch[part];
		*rc = b > a
		          ? embd_vecops_topk(m, &t, NULL, v->hits + (size_t)part * t.nq * t.k, v->counts + part * t.nq)
		          : 0;
		if (b == a)
			memset(v->counts + part * t.nq, 0, t.nq * sizeof *v->counts);
		break;
	}
	case V_PAIRS:
		for (size_t i = 0; *rc == 0 && i < v->n / 2; i++)
			*rc =
			    embd_vecops_similarity(m, v->ids[2 * i], v->ids[2 * i + 1], v->metric, &v->out[i], &v->err);
		break;
	case V_SETS:
		if (v->metric == EMBD_METRIC_COSINE) {
			*rc = embd_vecops_n_similarity(m, v->ids, v->split, v->ids + v->split, v->n - v->split,
			                               &v->r->acct, v->out, &v->err);
		} else {
			/* The dot product of the two means, each in double as np.mean. */
			float *mb = v->out + 1;
			*rc = embd_vecops_pool(m, v->ids, NULL, v->split, EMBD_POOLING_MEAN, NULL, &v->r->acct, mb,
			                       &v->err);
			if (*rc == 0)
				*rc = embd_vecops_pool(m, v->ids + v->split, NULL, v->n - v->split, EMBD_POOLING_MEAN,
				                       NULL, &v->r->acct, mb + m->dim, &v->err);
			double d = 0;
			for (size_t j = 0; *rc == 0 && j < m->dim; j++)
				d += (double)mb[j] * mb[m->dim + j];
			v->out[0] = (float)d;
		}
		break;
	case V_POOL: {
		/* Unit rows need the generation's norms, computed once by whichever operation needs them first. */
		const float *norms = NULL;
		if (v->unit && (*rc = embd_gen_norms(v->r->gen, &norms, NULL)) != 0)
			return;
		*rc = embd_vecops_pool(m, v->ids, v->weights, v->n, v->op, norms, &v->r->acct, v->out, &v->err);
		break;
	}
	}
}

/* Every part has returned: give the search's scratch back at once (an abandoned one too), then wake the request. */
static void vwork_done(embd_work *w)
{
	struct vwork *v = (struct vwork *)w;
	for (unsigned p = 0; p < w->parts; p++) {
		embd_acct_free(&v->r->acct, v->scratch[p]);
		v->scratch[p] = NULL;
		if (v->rc == 0 && v->kind == V_TOPK)
			v->rc = v->part_rc[p];
	}
	MHD_resume_connection(v->r->conn); /* the last touch: once resumed, the request may end */
}

/*
 * Admit v: its work (multiply-adds) against limits.work, then onto the pool
 * with the connection suspended. EMBD_PENDING: it runs, and the handler is
 * called again with r->job set when it is done; else an error with e.
 */
static int submit(struct req *r, struct vwork *v, unsigned parts, uint64_t work, const char *what, embd_err *e)
{
	embd_server *s = r->srv;
	if (work > (uint64_t)s->cfg.work) {
		atomic_fetch_add(&s->metrics.rejected[REJ_WORK], 1);
		return embd_err_set(e, EMBD_ETOOMUCHWORK,
		                    "%s asks for %" PRIu64 " multiply-adds; limits.work is %" PRId64
		                    " (ask for fewer queries or rows)",
		                    what, work, s->cfg.work);
	}
	v->r = r;
	v->m = embd_gen_matrix(r->gen);
	v->w.run = vwork_run;
	v->w.done = vwork_done;
	v->w.parts = parts;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	v->w.fd = ci != NULL ? ci->connect_fd : -1;
	v->w.deadline_ns =
	    s->cfg.compute_timeout_s > 0 ? embd_now_ns() + (uint64_t)s->cfg.compute_timeout_s * 1000000000u : 0;
	v->w.bytes = r->acct.held; /* everything it will hold (but a few dim-sized sums) is charged already */
	r->job = v;
	MHD_suspend_connection(r->conn);
	int rc = embd_compute_submit(&s->compute, &v->w);
	if (rc == 0)
		return EMBD_PENDING;
	MHD_resume_connection(r->conn);
	r->job = NULL;
	for (unsigned p = 0; p < parts; p++)
		embd_acct_free(&r->acct, v->scratch[p]);
	if (rc == EMBD_ECOMPUTEBUSY) {
		atomic_fetch_add(&s->metrics.rejected[REJ_COMPUTE_QUEUE], 1);
		size_t n = embd_compute_admitted(&s->compute);
		if (n >= (size_t)s->cfg.compute_queue)
			return embd_err_set(
			    e, rc, "the compute queue is full (compute.queue %" PRId64 " operations); retry later",
			    s->cfg.compute_queue);
		return embd_err_set(e, rc,
		                    "this operation holds %" PRIu64 " bytes and the %zu admitted hold %" PRIu64
		                    " of compute.inflight_bytes %" PRId64 "; retry later",
		                    v->w.bytes, n, (uint64_t)atomic_load(&s->compute.bytes_held),
		                    s->cfg.compute_inflight_bytes);
	}
	return embd_err_set(e, rc, "%s", embd_strerror(rc));
}

/*
 * The work is done: 0 to go on answering, or why not. A client that left gets
 * no answer (EMBD_DROP closes its connection).
 */
static int finished(struct req *r, struct vwork *v, embd_err *e)
{
	r->job = NULL;
	int why = embd_work_cancelled(&v->w);
	if (why == EMBD_ECANCELED)
		return EMBD_DROP;
	if (why == EMBD_EDEADLINE)
		return embd_err_set(
		    e, why, "stopped after compute.timeout_s (%" PRId64 " s): %.3f s queued, %.3f s running",
		    r->srv->cfg.compute_timeout_s,
		    (double)((v->w.started_ns ? v->w.started_ns : embd_now_ns()) - v->w.queued_ns) / 1e9,
		    v->w.started_ns ? (double)(embd_now_ns() - v->w.started_ns) / 1e9 : 0.0);
	if (why == EMBD_ESHUTDOWN)
		return embd_err_set(e, why, "the server is shutting down; this operation was stopped");
	if (v->rc == EMBD_ETOOBIG || v->rc == EMBD_EBUSY || v->rc == -ENOMEM)
		return embd_req_charge_error(r, v->rc, "the operation's scratch", e);
	if (v->rc != 0) {
		if (v->err.msg[0] != '\0')
			*e = v->err;
		else
			embd_err_set(e, v->rc, "%s", embd_strerror(v->rc));
		return v->rc;
	}
	return 0;
}

/* Query vectors must be finite: a NaN or an infinity would score every row NaN or 0. ids: their rows, or NULL. */
static int check_queries(const float *q, size_t nq, size_t dim, const uint64_t *ids, embd_err *e)
{
	for (size_t i = 0; i < nq; i++) {
		for (size_t j = 0; j < dim; j++) {
			if (isfinite(q[i * dim + j]))
				continue;
			char row[48] = "";
			if (ids != NULL)
				snprintf(row, sizeof row, " (row %" PRIu64 ")", ids[i]);
			return embd_err_set(e, EMBD_EBADVECTOR,
			                    "query %zu%s holds %s at element %zu: a query must be finite", i, row,
			                    isnan(q[i * dim + j]) ? "NaN" : "an infinity", j);
		}
	}
	return 0;
}

static int topk_answer(struct req *r, struct vwork *v, embd_err *e);

/*
 * Plan, charge and admit a top-k search for nq queries (accounted; the
 * request keeps them): the hits of every part, the scratch of every part and
 * the answer's buffer at its bound, all charged now, so that a search is
 * refused (413, 503) before it runs, never after. exclude/exclude_off as in
 * embd_topk (NULL: none); single: one query's answer.
 */
static int topk_submit(struct req *r, const float *queries, size_t nq, const uint64_t *rows, uint64_t k,
                       embd_metric metric, const uint64_t *exclude, const size_t *exclude_off, int single,
                       const unsigned char *skipped, size_t nall, embd_err *e)
{
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	const embd_vocab *voc = embd_gen_vocab(r->gen);
	int rc = check_queries(queries, nq, (size_t)m->dim, rows, e);
	if (rc != 0)
		return rc;
	size_t kk = (size_t)(k < m->rows ? k : m->rows);
	/* The answer's bound, known before the search: every hit at its longest (a token escaped six bytes a byte). */
	uint64_t per_hit = 64 + 6 * (uint64_t)(voc != NULL ? embd_vocab_max_token_bytes(voc) : 0);
	if (skipped == NULL)
		nall = nq;
	/* 96: the fixed text at its longest is 58 bytes with its closing newline; 3 a query: its brackets and comma. */
	uint64_t bound = 96 + 3 * (uint64_t)nall;
	if (kk != 0 && (uint64_t)nq * kk > (UINT64_MAX - bound) / per_hit)
		bound = UINT64_MAX;
	else
		bound += (uint64_t)nq * kk * per_hit;
	if (bound > r->acct.limit - (r->acct.held < r->acct.limit ? r->acct.held : r->acct.limit) || bound > SIZE_MAX) {
		atomic_fetch_add(&r->srv->metrics.rejected[REJ_REQUEST_BYTES], 1);
		return embd_err_set(e, EMBD_ETOOBIG,
		                    "the answer of %zu queries x k %zu can need %" PRIu64 " bytes with %" PRIu64
		                    " held already; limits.request_bytes is %" PRIu64,
		                    nq, kk, bound, r->acct.held, r->acct.limit);
	}
	unsigned parts = embd_compute_threads(&r->srv->compute);
	if (parts > MAX_PARTS)
		parts = MAX_PARTS;
	if (parts < 1 || m->rows * m->row_bytes < PART_MIN_BYTES || m->rows < parts)
		parts = 1;
	struct vwork *v;
	if ((rc = scratch(r, sizeof *v, (void **)&v, "the operation", e)) != 0)
		return rc;
	memset(v, 0, sizeof *v);
	v->kind = V_TOPK;
	v->k = k;
	v->single = single;
	v->skipped = skipped;
	v->nall = nall;
	/*
	 * The scores block is nq x block rows: 1 MiB of rows per query would put a
	 * big batch past limits.request_bytes, so a batch takes fewer rows per
	 * block, keeping the block near 8 MiB (at least 64 rows), per part.
	 */
	size_t block = (size_t)(EMBD_TOPK_BLOCK_BYTES / ((m->dim ? m->dim : 1) * sizeof(float)));
	size_t fit = ((size_t)8 << 20) / ((nq ? nq : 1) * sizeof(float));
	block = fit < block ? fit : block;
	/* The exclusions may live on the caller's stack: the search outlives it, so they are copied. */
	if (exclude != NULL) {
		size_t nx = exclude_off[nq];
		uint64_t *x;
		size_t *xo;
		if ((rc = scratch(r, (nx ? nx : 1) * sizeof *x, (void **)&x, "the exclusions", e)) != 0 ||
		    (rc = scratch(r, (nq + 1) * sizeof *xo, (void **)&xo, "the exclusions", e)) != 0)
			return rc;
		memcpy(x, exclude, nx * sizeof *x);
		memcpy(xo, exclude_off, (nq + 1) * sizeof *xo);
		exclude = x;
		exclude_off = xo;
	}
	/*
	 * A lone query's hits are rescored in double (embd_vecops_topk), which
	 * may reorder rows whose float32 scores were within a rounding of each
	 * other: it searches a few more than it answers, so that a row just
	 * past the k-th by float32 but ahead of it in double is still answered.
	 */
	size_t ks = kk;
	if (nq == 1 && kk > 0)
		ks = kk + (kk < 32 ? kk : 32) < m->rows ? kk + (kk < 32 ? kk : 32) : (size_t)m->rows;
	v->kshow = kk;
	kk = ks;
	v->t = (embd_topk){.queries = queries,
	                   .nq = nq,
	                   .k = kk,
	                   .metric = metric,
	                   .exclude = exclude,
	                   .exclude_off = exclude_off,
	                   .block_rows = block < 64 ? 64 : block};
	/* No more parts than blocks: a part holds at least one whole block. */
	uint64_t blocks = (m->rows + v->t.block_rows - 1) / v->t.block_rows;
	if (parts > blocks)
		parts = blocks > 0 ? (unsigned)blocks : 1;
	if (kk > 0 && nq > 0) {
		if ((rc = scratch(r, parts * nq * kk * sizeof *v->hits, (void **)&v->hits, "the results", e)) != 0 ||
		    (rc = scratch(r, parts * nq * sizeof *v->counts, (void **)&v->counts, "the result counts", e)) != 0)
			return rc;
		if (parts > 1 &&
		    (rc = scratch(r, nq * kk * sizeof *v->merged, (void **)&v->merged, "the results", e)) != 0)
			return rc;
		for (unsigned p = 0; p < parts; p++) {
			embd_topk pt = v->t;
			uint64_t a, b;
			part_range(m->rows, pt.block_rows, p, parts, &a, &b);
			pt.first = a;
			pt.count = b - a;
			uint64_t need = embd_vecops_topk_scratch(m, &pt);
			if (need > SIZE_MAX)
				return embd_err_set(e, EMBD_EOVERFLOW, "the search's scratch size overflows");
			if ((rc = scratch(r, (size_t)need, &v->scratch[p], "the similarity scratch", e)) != 0) {
				for (unsigned q = 0; q < p; q++)
					embd_acct_free(&r->acct, v->scratch[q]);
				return rc;
			}
		}
	}
	if ((rc = embd_resp_buffer(&r->resp, (size_t)bound, (void **)&v->answer)) != 0) {
		for (unsigned p = 0; p < parts; p++)
			embd_acct_free(&r->acct, v->scratch[p]);
		return embd_req_charge_error(r, rc, "the similarity answer", e);
	}
	if (kk == 0 || nq == 0) { /* nothing to search: answered at once */
		v->w.parts = 1;
		return topk_answer(r, v, e);
	}
	uint64_t work = (uint64_t)nq * m->rows;
	work = m->dim != 0 && work > UINT64_MAX / m->dim ? UINT64_MAX : work * m->dim;
	char what[96];
	snprintf(what, sizeof what, "a search of %zu quer%s over %" PRIu64 " rows of %" PRIu64, nq,
	         nq == 1 ? "y" : "ies", m->rows, m->dim);
	return submit(r, v, parts, work, what, e);
}

/* The parts' best-first lists of query q merged into out (kk at most): higher score first, then lower id. */
static size_t merge(const struct vwork *v, size_t q, embd_hit *out)
{
	unsigned parts = v->w.parts;
	size_t at[MAX_PARTS] = {0}, n = 0, nq = v->t.nq, kk = v->t.k;
	while (n < kk) {
		int best = -1;
		embd_hit bh = {0, 0};
		for (unsigned p = 0; p < parts; p++) {
			if (at[p] >= v->counts[p * nq + q])
				continue;
			embd_hit h = v->hits[(p * nq + q) * kk + at[p]];
			if (best < 0 || h.score > bh.score || (h.score == bh.score && h.id < bh.id)) {
				best = (int)p;
				bh = h;
			}
		}
		if (best < 0)
			break;
		at[best]++;
		out[n++] = bh;
	}
	return n;
}

/* The top-k answer: {"k":K,"metric":"cosine","results":[...]} with one list (single) or a list per query. */
static int topk_answer(struct req *r, struct vwork *v, embd_err *e)
{
	int rc = finished(r, v, e);
	if (rc != 0)
		return rc;
	const embd_vocab *voc = embd_gen_vocab(r->gen);
	size_t kk = v->t.k;
	char *p = v->answer;
	p += sprintf(p, "{\"k\":%" PRIu64 ",\"metric\":\"%s\",\"results\":%s", v->k, embd_metric_name(v->t.metric),
	             v->single ? "" : "[");
	for (size_t i = 0, q = 0; i < v->nall; i++) {
		if (i)
			*p++ = ',';
		if (v->skipped != NULL && v->skipped[i]) { /* ?oov=skip: a token the vocabulary lacks */
			p += sprintf(p, "[]");
			continue;
		}
		const embd_hit *hits = NULL;
		size_t count = 0;
		if (kk > 0 && v->w.parts > 1) {
			hits = v->merged + q * kk;
			count = merge(v, q, v->merged + q * kk);
		} else if (kk > 0) {
			hits = v->hits + q * kk;
			count = v->counts[q];
		}
		if (count > v->kshow)
			count = v->kshow;
		p += embd_json_hits_write(p, hits, count, voc);
		q++;
	}
	p += sprintf(p, "%s}\n", v->single ? "" : "]");
	embd_resp_shrink_last(&r->resp, (size_t)(p - v->answer));
	r->type = "application/json";
	r->scratch = 1;
	return 0;
}

/* The row ?id= or ?token= names. */
static int query_row(struct req *r, int64_t *id, embd_err *e)
{
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	const char *ids = embd_arg(r, "id"), *tok = embd_arg(r, "token");
	if ((ids != NULL) == (tok != NULL))
		return embd_err_set(e, EMBD_EBADPARAM, "name the query row: ?id=N or ?token=WORD (one of them)");
	embd_ref ref = {0, {NULL, 0}};
	if (ids != NULL) {
		uint64_t v;
		int rc = embd_query_u64(ids, &v);
		if (rc != 0 || v > INT64_MAX)
			return embd_err_set(e, EMBD_EBADID, "id '%.100s' is not a non-negative decimal integer", ids);
		ref.id = (int64_t)v;
	} else {
		size_t n = strlen(tok);
		if (n == 0 || embd_utf8_valid_len(tok, n) != n)
			return embd_err_set(e, EMBD_EBADTOKEN, "token %s", n == 0 ? "is empty" : "is not valid UTF-8");
		ref.tok = (embd_token){tok, n};
	}
	return embd_vecreq_resolve(embd_gen_vocab(r->gen), m->rows, &ref, 1, EMBD_OOV_ERROR, id, &r->acct, e);
}

/* GET /v1/similar?id=|token=&k=&metric=&include_self= */
static int similar_get(struct req *r, embd_err *e)
{
	uint64_t k = 10;
	int include_self = 0;
	embd_metric metric = EMBD_METRIC_COSINE;
	int64_t id = 0;
	int rc = metric_arg(r, &metric, e);
	if (rc == 0)
		rc = topk_args(r, &k, &include_self, e);
	if (rc == 0)
		rc = query_row(r, &id, e);
	float *q = NULL;
	if (rc == 0)
		rc = rows_as_queries(r, &id, 1, &q, e);
	if (rc != 0)
		return rc;
	uint64_t self = (uint64_t)id;
	size_t off[2] = {0, include_self ? 0 : 1};
	return topk_submit(r, q, 1, &self, k, metric, &self, off, 1, NULL, 0, e);
}

/* The body of a POST: JSON (keys allowed) or, when vectors_ok, a 2-D float .npy of query vectors. */
static int parse_body(struct req *r, unsigned allowed, int npy_ok, embd_vecreq *vq, embd_err *e)
{
	const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	size_t n;
	embd_body_kind kind = embd_media_kind(ct, &n); /* lib/ids.c's parser, as for the ids of /v1/rows */
	if (n == 0) /* requests.post(url, data=...) sends none: a JSON or .npy body says itself */
		kind = embd_body_sniff(r->body, r->body_len);
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	size_t max = (size_t)r->srv->cfg.max_ids;
	int rc;
	if (kind == EMBD_BODY_JSON) {
		rc = embd_vecreq_parse_json(r->body, r->body_len, allowed, m->dim, max, &r->acct, vq, e);
	} else if (npy_ok && kind == EMBD_BODY_NPY) {
		rc = embd_vecreq_parse_npy(r->body, r->body_len, m->dim, max, &r->acct, vq, e);
	} else if (n == 0) {
		return embd_err_set(e, EMBD_EMEDIATYPE, "the body has no Content-Type and is %s; send Content-Type: %s",
		                    npy_ok ? "neither JSON nor .npy" : "not JSON",
		                    npy_ok ? "application/json or application/x-npy (query vectors)"
		                           : "application/json");
	} else {
		return embd_err_set(e, EMBD_EMEDIATYPE,
		                    "Content-Type '%.100s' is not supported; send application/json%s", ct,
		                    npy_ok ? " or application/x-npy (query vectors)" : "");
	}
	if (rc == EMBD_ETOOBIG || rc == EMBD_EBUSY || rc == -ENOMEM)
		return embd_req_charge_error(r, rc, "the request body's values", e);
	if (rc == EMBD_ETOOMANYIDS)
		atomic_fetch_add(&r->srv->metrics.rejected[REJ_MAX_IDS], 1);
	return rc;
}

/* The ids of vq's rows (refs resolved through the vocabulary, unknown tokens by oov), in accounted memory. */
static int resolve(struct req *r, const embd_vecreq *vq, embd_oov oov, int64_t **ids, embd_err *e)
{
	int rc = scratch(r, (vq->nrefs ? vq->nrefs : 1) * sizeof **ids, (void **)ids, "the row ids", e);
	if (rc == 0)
		rc = embd_vecreq_resolve(embd_gen_vocab(r->gen), embd_gen_matrix(r->gen)->rows, vq->refs, vq->nrefs,
		                         oov, *ids, &r->acct, e);
	return rc;
}

/* ?oov=error|skip (default error), for a body of tokens only, as on /v1/rows. */
static int oov_arg(struct req *r, const embd_vecreq *vq, embd_oov *oov, embd_err *e)
{
	const char *s = embd_arg(r, "oov");
	*oov = EMBD_OOV_ERROR;
	if (s == NULL)
		return 0;
	if (embd_oov_parse(s, oov) != 0 || *oov == EMBD_OOV_ZERO)
		return embd_err_set(e, EMBD_EBADPARAM, "oov '%.100s' is not error or skip", s);
	if (vq->given & ~(unsigned)(EMBD_VQ_TOKENS | EMBD_VQ_K | EMBD_VQ_METRIC | EMBD_VQ_INCLUDE_SELF))
		return embd_err_set(e, EMBD_EBADPARAM,
		                    "oov goes with {\"tokens\": [...]}; this body names no tokens list");
	return 0;
}

/* POST /v1/similar: many queries (ids, tokens, vectors as JSON or .npy) or one analogy. */
static int similar_post(struct req *r, embd_err *e)
{
	uint64_t k = 10;
	int include_self = 0;
	embd_metric metric = EMBD_METRIC_COSINE;
	embd_oov oov = EMBD_OOV_ERROR;
	int rc = metric_arg(r, &metric, e);
	if (rc == 0)
		rc = topk_args(r, &k, &include_self, e);
	embd_vecreq vq = {0};
	if (rc == 0)
		rc = parse_body(r,
		                EMBD_VQ_ROWS | EMBD_VQ_VECTORS | EMBD_VQ_ANALOGY | EMBD_VQ_K | EMBD_VQ_METRIC |
		                    EMBD_VQ_INCLUDE_SELF,
		                1, &vq, e);
	if (rc == 0)
		rc = body_opts(r, &vq, &k, &metric, &include_self, e);
	if (rc == 0)
		rc = oov_arg(r, &vq, &oov, e);
	if (rc != 0)
		return rc;
	if (vq.given & EMBD_VQ_VECTORS)
		return topk_submit(r, vq.vectors, vq.nvectors, NULL, k, metric, NULL, NULL, 0, NULL, 0, e);
	int64_t *ids;
	if ((rc = resolve(r, &vq, oov, &ids, e)) != 0)
		return rc;
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	if (vq.given & EMBD_VQ_ANALOGY) {
		/* gensim's most_similar(positive, negative): the mean of unit rows, every named row left out. */
		float *q;
		if ((rc = scratch(r, m->dim * sizeof *q, (void **)&q, "the query vector", e)) != 0)
			return rc;
		const uint64_t *u = (const uint64_t *)ids;
		if ((rc = embd_vecops_analogy(m, u, vq.split, u + vq.split, vq.nrefs - vq.split, q, e)) != 0)
			return rc;
		size_t off[2] = {0, vq.nrefs};
		return topk_submit(r, q, 1, NULL, k, metric, u, off, 1, NULL, 0, e);
	}
	/* ?oov=skip: the tokens the vocabulary lacks are not searched; each answers an empty list in its place. */
	unsigned char *skipped = NULL;
	size_t nq = vq.nrefs;
	if (oov == EMBD_OOV_SKIP) {
		if ((rc = scratch(r, vq.nrefs, (void **)&skipped, "the skipped tokens", e)) != 0)
			return rc;
		nq = 0;
		for (size_t i = 0; i < vq.nrefs; i++) {
			skipped[i] = ids[i] == EMBD_VOCAB_NONE;
			if (!skipped[i])
				ids[nq++] = ids[i];
		}
	}
	float *q;
	size_t *off;
	if ((rc = rows_as_queries(r, ids, nq, &q, e)) != 0 ||
	    (rc = scratch(r, (nq + 1) * sizeof *off, (void **)&off, "the exclusions", e)) != 0)
		return rc;
	for (size_t i = 0; i <= nq; i++)
		off[i] = include_self ? 0 : i; /* query i leaves out its own row */
	return topk_submit(r, q, nq, (const uint64_t *)ids, k, metric, (const uint64_t *)ids, off, 0, skipped, vq.nrefs,
	                   e);
}

int vector_similar(struct req *r, embd_err *e)
{
	static const char *const params[] = {"id", "token", "k", "metric", "include_self", NULL};
	static const char *const post_params[] = {"k", "metric", "include_self", "oov", NULL};
	if (r->job != NULL) /* resumed: the search is done */
		return topk_answer(r, r->job, e);
	int rc = route_check_params(r, r->method == M_POST ? post_params : params, e);
	if (rc != 0)
		return rc;
	return r->method == M_POST ? similar_post(r, e) : similar_get(r, e);
}

/* The scores of a similarity work, as {"metric":"cosine","scores":[...]} or {"metric":"cosine","score":S}. */
static int similarity_answer(struct req *r, struct vwork *v, embd_err *e)
{
	int rc = finished(r, v, e);
	if (rc != 0)
		return rc;
	size_t nscores = v->kind == V_PAIRS ? v->n / 2 : 1;
	char *buf;
	if ((rc = embd_resp_buffer(&r->resp, 64 + nscores * (EMBD_F32_TEXT_MAX + 1), (void **)&buf)) != 0)
		return embd_req_charge_error(r, rc, "the similarity answer", e);
	char *p = buf + sprintf(buf, "{\"metric\":\"%s\",", embd_metric_name(v->metric));
	if (v->kind == V_SETS) {
		p += sprintf(p, "\"score\":");
		p += embd_f32_shortest(v->out[0], p);
	} else {
		p += sprintf(p, "\"scores\":[");
		for (size_t i = 0; i < nscores; i++) {
			if (i)
				*p++ = ',';
			p += embd_f32_shortest(v->out[i], p);
		}
		*p++ = ']';
	}
	*p++ = '}';
	*p++ = '\n';
	embd_resp_shrink_last(&r->resp, (size_t)(p - buf));
	r->type = "application/json";
	r->scratch = 1;
	return 0;
}

/* A work over the rows ids[0 .. n) (pairs, sets, pooling) with nout floats of results; the caller fills it in. */
static int rows_work(struct req *r, enum vkind kind, const int64_t *ids, size_t n, size_t split, size_t nout,
                     struct vwork **out, embd_err *e)
{
	struct vwork *v;
	int rc = scratch(r, sizeof *v, (void **)&v, "the operation", e);
	if (rc != 0)
		return rc;
	memset(v, 0, sizeof *v);
	v->kind = kind;
	v->ids = (const uint64_t *)ids;
	v->n = n;
	v->split = split;
	if ((rc = scratch(r, (nout ? nout : 1) * sizeof *v->out, (void **)&v->out, "the results", e)) != 0)
		return rc;
	*out = v;
	return 0;
}

/* Admit a rows work by its n x dim multiply-adds. */
static int rows_submit(struct req *r, struct vwork *v, embd_err *e)
{
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	uint64_t work = m->dim != 0 && v->n > UINT64_MAX / m->dim ? UINT64_MAX : (uint64_t)v->n * m->dim;
	char what[64];
	snprintf(what, sizeof what, "an operation over %zu rows of %" PRIu64, v->n, m->dim);
	return submit(r, v, 1, work, what, e);
}

/* POST /v1/similarity: {"pairs": [[a, b], ...]} -> scores, or {"a": [...], "b": [...]} -> gensim's n_similarity. */
int vector_similarity(struct req *r, embd_err *e)
{
	if (r->job != NULL) /* resumed: the scores are done */
		return similarity_answer(r, r->job, e);
	static const char *const params[] = {"metric", NULL};
	embd_metric metric = EMBD_METRIC_COSINE;
	embd_vecreq vq = {0};
	int64_t *ids = NULL;
	int rc = route_check_params(r, params, e);
	if (rc == 0)
		rc = metric_arg(r, &metric, e);
	if (rc == 0)
		rc = parse_body(r, EMBD_VQ_PAIRS | EMBD_VQ_SETS, 0, &vq, e);
	if (rc == 0)
		rc = resolve(r, &vq, EMBD_OOV_ERROR, &ids, e);
	if (rc != 0)
		return rc;
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	int sets = vq.given == EMBD_VQ_SETS;
	/* Sets: the score, then (for dot) the two means after it. */
	size_t nout = sets ? 1 + (metric == EMBD_METRIC_DOT ? 2 * (size_t)m->dim : 0) : vq.nrefs / 2;
	struct vwork *v;
	if ((rc = rows_work(r, sets ? V_SETS : V_PAIRS, ids, vq.nrefs, vq.split, nout, &v, e)) != 0)
		return rc;
	v->metric = metric;
	return rows_submit(r, v, e);
}

/* The pooled row as a one-row matrix of its own, answered like any rows (JSON, bin, npy; dtype; normalize). */
static int pool_answer(struct req *r, struct vwork *v, embd_err *e)
{
	int rc = finished(r, v, e);
	if (rc != 0)
		return rc;
	static const char *const params[] = {"format", "dtype", "normalize", "pre_normalize", NULL};
	embd_rows_query q = {0};
	if ((rc = route_rows_opts(r, params, EMBD_F32, &q, e)) != 0)
		return rc;
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	embd_matrix_info one = *m;
	one.data = (const unsigned char *)v->out;
	one.rows = 1;
	one.dtype = EMBD_F32;
	one.row_bytes = m->dim * sizeof(float);
	one.data_bytes = one.row_bytes;
	embd_run run = {0, 1};
	q.runs = &run;
	q.nruns = 1;
	q.gather = 1; /* computed, not stored: the bytes are the request's, never a view of the matrix */
	return route_rows_answer(r, &one, &q, e);
}

/*
 * ?pre_normalize=0|1 or "pre_normalize": true|false in the body (default
 * false: the rows as they are, gensim's get_mean_vector(pre_normalize=False));
 * the same key in both places with different values is 400.
 */
static int pre_normalize_opt(struct req *r, const embd_vecreq *vq, int *unit, embd_err *e)
{
	const char *s = embd_arg(r, "pre_normalize");
	*unit = 0;
	if (s != NULL) {
		if (strcmp(s, "1") == 0 || strcmp(s, "true") == 0)
			*unit = 1;
		else if (strcmp(s, "0") != 0 && strcmp(s, "false") != 0)
			return embd_err_set(e, EMBD_EBADPARAM, "pre_normalize '%.100s' is not 0 or 1", s);
	}
	if (vq->given & EMBD_VQ_PRE_NORMALIZE) {
		if (s != NULL && *unit != vq->pre_normalize)
			return embd_err_set(e, EMBD_EBADPARAM,
			                    "pre_normalize is %d in the query and %d in the body: give it once", *unit,
			                    vq->pre_normalize);
		*unit = vq->pre_normalize;
	}
	return 0;
}

/* POST /v1/pool: {"ids"|"tokens": [...], "op": "mean"|"sum", "weights": [...]} -> one row, in any row format. */
int vector_pool(struct req *r, embd_err *e)
{
	if (r->job != NULL) /* resumed: the row is pooled */
		return pool_answer(r, r->job, e);
	static const char *const params[] = {"format", "dtype", "normalize", "pre_normalize", NULL};
	embd_rows_query q = {0};
	embd_vecreq vq = {0};
	int64_t *ids = NULL;
	int unit = 0;
	/* The pooled row is computed in float32: that is its dtype unless ?dtype= says otherwise. */
	int rc = route_rows_opts(r, params, EMBD_F32, &q, e);
	if (rc == 0)
		rc = parse_body(r, EMBD_VQ_ROWS | EMBD_VQ_OP | EMBD_VQ_WEIGHTS | EMBD_VQ_PRE_NORMALIZE, 0, &vq, e);
	if (rc == 0)
		rc = pre_normalize_opt(r, &vq, &unit, e);
	if (rc == 0)
		rc = resolve(r, &vq, EMBD_OOV_ERROR, &ids, e);
	if (rc != 0)
		return rc;
	struct vwork *v;
	if ((rc = rows_work(r, V_POOL, ids, vq.nrefs, 0, (size_t)embd_gen_matrix(r->gen)->dim, &v, e)) != 0)
		return rc;
	v->weights = vq.weights;
	v->op = vq.sum ? EMBD_POOLING_SUM : EMBD_POOLING_MEAN;
	v->unit = unit;
	return rows_submit(r, v, e);
}
