/* The vector operations' handlers: nearest neighbours, similarity, pooling (the maths is lib/vecops.c). */
#include "vector.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "encode.h"
#include "json.h"
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

/* Rows ids[0 .. n) as float32 queries (n x dim), read as embd_dtype_load reads them (any alignment). */
static int rows_as_queries(struct req *r, const int64_t *ids, size_t n, float **out, embd_err *e)
{
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	int rc = scratch(r, n * m->dim * sizeof(float), (void **)out, "the query vectors", e);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const unsigned char *row = m->data + (uint64_t)ids[i] * m->row_bytes;
		for (size_t j = 0; j < m->dim; j++)
			(*out)[i * m->dim + j] = embd_dtype_load(m->dtype, row, j);
	}
	return rc;
}

/* One half of a lone query's search, on a thread of its own with an accountant of its own. */
struct half {
	embd_matrix_info m;
	embd_topk t;
	embd_acct acct;
	embd_hit *hits;
	size_t count;
	uint64_t base;
	int rc;
};

static void *half_run(void *arg)
{
	struct half *h = arg;
	h->rc = embd_vecops_topk(&h->m, &h->t, &h->acct, h->hits, &h->count);
	return NULL;
}

/*
 * One query, when no other search runs: the rows split in two halves searched
 * at once (one BLAS thread each), then the two best-first lists merged. A lone
 * query is bound by memory bandwidth, which one core does not fill. Falls back
 * to one pass (returns 1) when the second thread cannot start.
 */
static int topk_split(struct req *r, const embd_matrix_info *m, const embd_topk *t, embd_hit *out, size_t *count)
{
	struct half h[2];
	uint64_t mid = m->rows / 2;
	embd_hit *tmp;
	int rc = scratch(r, 2 * t->k * sizeof *tmp, (void **)&tmp, "the results", NULL);
	if (rc != 0)
		return rc;
	for (int i = 0; i < 2; i++) {
		h[i].base = i == 0 ? 0 : mid;
		h[i].m = *m;
		h[i].m.data = m->data + h[i].base * m->row_bytes;
		h[i].m.rows = i == 0 ? mid : m->rows - mid;
		h[i].m.data_bytes = h[i].m.rows * m->row_bytes;
		h[i].t = *t;
		h[i].t.k = t->k < h[i].m.rows ? t->k : (size_t)h[i].m.rows;
		h[i].t.norms = t->norms != NULL ? t->norms + h[i].base : NULL;
		h[i].hits = tmp + (size_t)i * t->k;
		h[i].count = 0;
		h[i].rc = 0;
		embd_acct_init(&h[i].acct, &r->srv->budget, &r->srv->pool, r->acct.limit);
	}
	/* Exclusions are row ids: each half sees them shifted to its own rows (ids before it wrap past its end). */
	uint64_t ex[2][1];
	size_t off[2] = {0, 0};
	for (int i = 0; i < 2; i++) {
		if (t->exclude != NULL && t->exclude_off[1] == 1) {
			ex[i][0] = t->exclude[0] - h[i].base;
			off[1] = 1;
			h[i].t.exclude = ex[i];
			h[i].t.exclude_off = off;
		}
	}
	pthread_t other;
	int started = pthread_create(&other, NULL, half_run, &h[1]) == 0;
	half_run(&h[0]);
	if (started)
		pthread_join(other, NULL);
	else
		half_run(&h[1]);
	/* What the halves held counts as the request's: the peak of the two at once, at most their sum. */
	r->acct_extra += h[0].acct.peak + h[1].acct.peak;
	embd_acct_close(&h[0].acct);
	embd_acct_close(&h[1].acct);
	rc = h[0].rc != 0 ? h[0].rc : h[1].rc;
	if (rc != 0)
		return rc;
	/* Merge: higher score first, then lower id; the second half's ids shifted back. */
	size_t a = 0, b = 0, n = 0;
	while (n < t->k && (a < h[0].count || b < h[1].count)) {
		embd_hit x = a < h[0].count ? h[0].hits[a] : (embd_hit){0, 0};
		embd_hit y = b < h[1].count ? h[1].hits[b] : (embd_hit){0, 0};
		y.id += mid;
		int take_a =
		    b >= h[1].count || (a < h[0].count && (x.score > y.score || (x.score == y.score && x.id < y.id)));
		out[n++] = take_a ? x : y;
		if (take_a)
			a++;
		else
			b++;
	}
	*count = n;
	return 0;
}

/*
 * The top-k answer for nq queries: {"k":K,"metric":"cosine","results":[...]}
 * with one list (single) or a list per query. exclude/exclude_off as in
 * embd_topk (NULL: none).
 */
static int topk_answer(struct req *r, const float *queries, size_t nq, uint64_t k, embd_metric metric,
                       const uint64_t *exclude, const size_t *exclude_off, int single, embd_err *e)
{
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	const embd_vocab *v = embd_gen_vocab(r->gen);
	size_t kk = (size_t)(k < m->rows ? k : m->rows);
	/*
	 * The scores block is nq x block rows: 1 MiB of rows per query would put a
	 * big batch past limits.request_bytes, so a batch takes fewer rows per
	 * block, keeping the block near 8 MiB (at least 64 rows).
	 */
	size_t block = (size_t)(EMBD_TOPK_BLOCK_BYTES / ((m->dim ? m->dim : 1) * sizeof(float)));
	size_t fit = ((size_t)8 << 20) / ((nq ? nq : 1) * sizeof(float));
	block = fit < block ? fit : block;
	embd_topk t = {queries, nq, kk, metric, NULL, exclude, exclude_off, block < 64 ? 64 : block};
	int rc;
	if (metric == EMBD_METRIC_COSINE && (rc = embd_gen_norms(r->gen, &t.norms, e)) != 0)
		return rc;
	embd_hit *hits = NULL;
	size_t *counts;
	if ((rc = scratch(r, nq * sizeof *counts, (void **)&counts, "the result counts", e)) != 0)
		return rc;
	if (kk > 0 && (rc = scratch(r, nq * kk * sizeof *hits, (void **)&hits, "the results", e)) != 0)
		return rc;
	if (kk > 0) {
		int alone = atomic_fetch_add(&r->srv->topk_live, 1) == 0;
		if (alone && nq == 1 && m->rows >= 65536 && (exclude == NULL || exclude_off[1] <= 1))
			rc = topk_split(r, m, &t, hits, counts);
		else
			rc = embd_vecops_topk(m, &t, &r->acct, hits, counts);
		atomic_fetch_sub(&r->srv->topk_live, 1);
		if (rc == EMBD_ETOOBIG || rc == EMBD_EBUSY || rc == -ENOMEM)
			return embd_req_charge_error(r, rc, "the similarity scratch", e);
		if (rc != 0)
			return embd_err_set(e, rc, "the top-k search failed: %s", embd_strerror(rc));
	} else {
		memset(counts, 0, nq * sizeof *counts);
	}
	/* The body: a bound from the hits, then the writer. */
	uint64_t bound = 96;
	for (size_t q = 0; q < nq && bound != UINT64_MAX; q++) {
		uint64_t b = embd_json_hits_bound(hits != NULL ? hits + q * kk : NULL, counts[q], v);
		bound = b > UINT64_MAX - bound - 1 ? UINT64_MAX : bound + b + 1;
	}
	char *buf;
	if (bound > SIZE_MAX)
		return embd_req_charge_error(r, EMBD_ETOOBIG, "the similarity answer", e);
	if ((rc = embd_resp_buffer(&r->resp, (size_t)bound, (void **)&buf)) != 0)
		return embd_req_charge_error(r, rc, "the similarity answer", e);
	char *p = buf;
	p += sprintf(p, "{\"k\":%" PRIu64 ",\"metric\":\"%s\",\"results\":%s", k, embd_metric_name(metric),
	             single ? "" : "[");
	for (size_t q = 0; q < nq; q++) {
		if (q)
			*p++ = ',';
		p += embd_json_hits_write(p, hits != NULL ? hits + q * kk : NULL, counts[q], v);
	}
	p += sprintf(p, "%s}", single ? "" : "]");
	embd_resp_shrink_last(&r->resp, (size_t)(p - buf));
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
	return embd_vecreq_resolve(embd_gen_vocab(r->gen), m->rows, &ref, 1, id, &r->acct, e);
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
	return topk_answer(r, q, 1, k, metric, &self, off, 1, e);
}

/* The body of a POST: JSON (keys allowed) or, when vectors_ok, a 2-D float .npy of query vectors. */
static int parse_body(struct req *r, unsigned allowed, int npy_ok, embd_vecreq *vq, embd_err *e)
{
	const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	size_t n = ct != NULL ? strcspn(ct, "; ") : 0;
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	size_t max = (size_t)r->srv->cfg.max_ids;
	int rc;
	if (ct != NULL && n == 16 && strncasecmp(ct, "application/json", n) == 0) {
		embd_json_charge_budget(1); /* a client's body: from the budget, never from the reserve */
		rc = embd_vecreq_parse_json(r->body, r->body_len, allowed, m->dim, max, &r->acct, vq, e);
		/*
		 * jansson reports a failed allocation as it can (out of memory, or a
		 * bare failure at byte 0): when the accountant refused one, that is
		 * the answer, 413 or 503, never "malformed".
		 */
		if ((rc == -ENOMEM || rc == EMBD_EJSON) && embd_json_refusal() != 0)
			rc = embd_json_refusal();
		embd_json_charge_budget(0);
	} else if (npy_ok && ct != NULL && n == 17 && strncasecmp(ct, "application/x-npy", n) == 0) {
		rc = embd_vecreq_parse_npy(r->body, r->body_len, m->dim, max, &r->acct, vq, e);
	} else {
		return embd_err_set(e, EMBD_EMEDIATYPE,
		                    "Content-Type '%.100s' is not supported; send application/json%s",
		                    ct != NULL ? ct : "(none)", npy_ok ? " or application/x-npy (query vectors)" : "");
	}
	if (rc == EMBD_ETOOBIG || rc == EMBD_EBUSY || rc == -ENOMEM)
		return embd_req_charge_error(r, rc, "the request body's values", e);
	if (rc == EMBD_ETOOMANYIDS)
		atomic_fetch_add(&r->srv->metrics.rejected[REJ_MAX_IDS], 1);
	return rc;
}

/* The ids of vq's rows (refs resolved through the vocabulary), in accounted memory. */
static int resolve(struct req *r, const embd_vecreq *vq, int64_t **ids, embd_err *e)
{
	int rc = scratch(r, (vq->nrefs ? vq->nrefs : 1) * sizeof **ids, (void **)ids, "the row ids", e);
	if (rc == 0)
		rc = embd_vecreq_resolve(embd_gen_vocab(r->gen), embd_gen_matrix(r->gen)->rows, vq->refs, vq->nrefs,
		                         *ids, &r->acct, e);
	return rc;
}

/* POST /v1/similar: many queries (ids, tokens, vectors as JSON or .npy) or one analogy. */
static int similar_post(struct req *r, embd_err *e)
{
	uint64_t k = 10;
	int include_self = 0;
	embd_metric metric = EMBD_METRIC_COSINE;
	int rc = metric_arg(r, &metric, e);
	if (rc == 0)
		rc = topk_args(r, &k, &include_self, e);
	embd_vecreq vq = {0};
	if (rc == 0)
		rc = parse_body(r, EMBD_VQ_ROWS | EMBD_VQ_VECTORS | EMBD_VQ_ANALOGY, 1, &vq, e);
	if (rc != 0)
		return rc;
	if (vq.given == EMBD_VQ_VECTORS)
		return topk_answer(r, vq.vectors, vq.nvectors, k, metric, NULL, NULL, 0, e);
	int64_t *ids;
	if ((rc = resolve(r, &vq, &ids, e)) != 0)
		return rc;
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	if (vq.given == EMBD_VQ_ANALOGY) {
		/* gensim's most_similar(positive, negative): the mean of unit rows, every named row left out. */
		float *q;
		if ((rc = scratch(r, m->dim * sizeof *q, (void **)&q, "the query vector", e)) != 0)
			return rc;
		const uint64_t *u = (const uint64_t *)ids;
		if ((rc = embd_vecops_analogy(m, u, vq.split, u + vq.split, vq.nrefs - vq.split, q, e)) != 0)
			return rc;
		size_t off[2] = {0, vq.nrefs};
		return topk_answer(r, q, 1, k, metric, u, off, 1, e);
	}
	float *q;
	size_t *off;
	if ((rc = rows_as_queries(r, ids, vq.nrefs, &q, e)) != 0 ||
	    (rc = scratch(r, (vq.nrefs + 1) * sizeof *off, (void **)&off, "the exclusions", e)) != 0)
		return rc;
	for (size_t i = 0; i <= vq.nrefs; i++)
		off[i] = include_self ? 0 : i; /* query i leaves out its own row */
	return topk_answer(r, q, vq.nrefs, k, metric, (const uint64_t *)ids, off, 0, e);
}

int vector_similar(struct req *r, embd_err *e)
{
	static const char *const params[] = {"id", "token", "k", "metric", "include_self", NULL};
	static const char *const post_params[] = {"k", "metric", "include_self", NULL};
	int rc = route_check_params(r, r->method == M_POST ? post_params : params, e);
	if (rc != 0)
		return rc;
	return r->method == M_POST ? similar_post(r, e) : similar_get(r, e);
}

/* The dot product of the means of two sets of rows (a, then b after na of them), means in double as np.mean. */
static int sets_dot(struct req *r, const embd_matrix_info *m, const uint64_t *ids, size_t na, size_t nb, float *out,
                    embd_err *e)
{
	float *ma, *mb;
	int rc = scratch(r, 2 * m->dim * sizeof *ma, (void **)&ma, "the means", e);
	if (rc != 0)
		return rc;
	mb = ma + m->dim;
	if ((rc = embd_vecops_pool(m, ids, NULL, na, EMBD_POOLING_MEAN, &r->acct, ma, e)) != 0 ||
	    (rc = embd_vecops_pool(m, ids + na, NULL, nb, EMBD_POOLING_MEAN, &r->acct, mb, e)) != 0)
		return rc;
	double d = 0;
	for (size_t j = 0; j < m->dim; j++)
		d += (double)ma[j] * mb[j];
	*out = (float)d;
	return 0;
}

/* POST /v1/similarity: {"pairs": [[a, b], ...]} -> scores, or {"a": [...], "b": [...]} -> gensim's n_similarity. */
int vector_similarity(struct req *r, embd_err *e)
{
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
		rc = resolve(r, &vq, &ids, e);
	if (rc != 0)
		return rc;
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	const uint64_t *u = (const uint64_t *)ids;
	size_t nscores = vq.given == EMBD_VQ_PAIRS ? vq.nrefs / 2 : 1;
	char *buf;
	if ((rc = embd_resp_buffer(&r->resp, 64 + nscores * (EMBD_F32_TEXT_MAX + 1), (void **)&buf)) != 0)
		return embd_req_charge_error(r, rc, "the similarity answer", e);
	char *p = buf + sprintf(buf, "{\"metric\":\"%s\",", embd_metric_name(metric));
	if (vq.given == EMBD_VQ_SETS) {
		float s;
		if (metric == EMBD_METRIC_COSINE)
			rc = embd_vecops_n_similarity(m, u, vq.split, u + vq.split, vq.nrefs - vq.split, &r->acct, &s,
			                              e);
		else
			rc = sets_dot(r, m, u, vq.split, vq.nrefs - vq.split, &s, e);
		if (rc != 0)
			return rc == EMBD_ETOOBIG || rc == EMBD_EBUSY ? embd_req_charge_error(r, rc, "the means", e)
			                                              : rc;
		p += sprintf(p, "\"score\":");
		p += embd_f32_shortest(s, p);
	} else {
		p += sprintf(p, "\"scores\":[");
		for (size_t i = 0; i < nscores; i++) {
			float s;
			if ((rc = embd_vecops_similarity(m, u[2 * i], u[2 * i + 1], metric, &s, e)) != 0)
				return rc;
			if (i)
				*p++ = ',';
			p += embd_f32_shortest(s, p);
		}
		*p++ = ']';
	}
	*p++ = '}';
	embd_resp_shrink_last(&r->resp, (size_t)(p - buf));
	r->type = "application/json";
	r->scratch = 1;
	return 0;
}

/* POST /v1/pool: {"ids"|"tokens": [...], "op": "mean"|"sum", "weights": [...]} -> one row, in any row format. */
int vector_pool(struct req *r, embd_err *e)
{
	static const char *const params[] = {"format", "dtype", "normalize", NULL};
	embd_rows_query q = {0};
	embd_vecreq vq = {0};
	int64_t *ids = NULL;
	/* The pooled row is computed in float32: that is its dtype unless ?dtype= says otherwise. */
	int rc = route_rows_opts(r, params, EMBD_F32, &q, e);
	if (rc == 0)
		rc = parse_body(r, EMBD_VQ_ROWS | EMBD_VQ_OP | EMBD_VQ_WEIGHTS, 0, &vq, e);
	if (rc == 0)
		rc = resolve(r, &vq, &ids, e);
	if (rc != 0)
		return rc;
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	const double *w = vq.weights;
	float *row;
	if ((rc = scratch(r, m->dim * sizeof *row, (void **)&row, "the pooled row", e)) != 0)
		return rc;
	rc = embd_vecops_pool(m, (const uint64_t *)ids, w, vq.nrefs, vq.sum ? EMBD_POOLING_SUM : EMBD_POOLING_MEAN,
	                      &r->acct, row, e);
	if (rc != 0)
		return rc == EMBD_ETOOBIG || rc == EMBD_EBUSY ? embd_req_charge_error(r, rc, "the pooling sums", e)
		                                              : rc;
	/* The pooled row as a one-row matrix of its own, answered like any rows (JSON, bin, npy; dtype; normalize). */
	embd_matrix_info one = *m;
	one.data = (const unsigned char *)row;
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
