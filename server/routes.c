/* The route table and its handlers: info, rows (one, slice, batch), healthz, metrics, admin reload. */
#include "routes.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "encode.h"
#include "ids.h"
#include "json.h"
#include "query.h"
#include "reload.h"
#include "tokens.h"
#include "vector.h"
#include "server.h"

#define BIT(m)   (1u << (m))
#define GET_ONLY (BIT(M_GET) | BIT(M_HEAD))

static int h_info(struct req *r, embd_err *e);
static int h_row(struct req *r, embd_err *e);
static int h_rows(struct req *r, embd_err *e);
static int h_healthz(struct req *r, embd_err *e);
static int h_metrics(struct req *r, embd_err *e);
static int h_reload(struct req *r, embd_err *e);

static const struct route routes[] = {
    {"/v1/info", 0, R_INFO, "info", GET_ONLY, h_info},
    {"/v1/rows", 0, R_ROWS, "rows", GET_ONLY | BIT(M_POST), h_rows},
    {"/v1/rows/", 1, R_ROW, "row", GET_ONLY, h_row},
    {"/v1/similar", 0, R_SIMILAR, "similar", GET_ONLY | BIT(M_POST), vector_similar},
    {"/v1/similarity", 0, R_SIMILARITY, "similarity", BIT(M_POST), vector_similarity},
    {"/v1/pool", 0, R_POOL, "pool", BIT(M_POST), vector_pool},
    {"/healthz", 0, R_HEALTHZ, "healthz", GET_ONLY, h_healthz},
    {"/metrics", 0, R_METRICS, "metrics", GET_ONLY, h_metrics},
    {"/v1/admin/reload", 0, R_ADMIN, "admin", BIT(M_POST), h_reload},
};
#define NROUTES (sizeof routes / sizeof routes[0])

const struct route *embd_route_find(const char *url)
{
	for (size_t i = 0; i < NROUTES; i++) {
		const struct route *rt = &routes[i];
		size_t n = strlen(rt->path);
		if (rt->prefix ? strncmp(url, rt->path, n) == 0 : strcmp(url, rt->path) == 0)
			return rt;
	}
	return NULL;
}

const char *embd_route_name(enum route_id id)
{
	for (size_t i = 0; i < NROUTES; i++)
		if (routes[i].id == id)
			return routes[i].name;
	return "other";
}

/* Parameters a route accepts; anything else is a typo worth a 400. */
struct param_check {
	const char *const *allowed;
	const char *bad;
};

static enum MHD_Result check_one(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void)kind;
	(void)value;
	struct param_check *pc = cls;
	for (const char *const *a = pc->allowed; *a != NULL; a++)
		if (strcmp(*a, key) == 0)
			return MHD_YES;
	pc->bad = key;
	return MHD_NO;
}

int route_check_params(struct req *r, const char *const *allowed, embd_err *e)
{
	struct param_check pc = {allowed, NULL};
	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, check_one, &pc);
	if (pc.bad == NULL)
		return 0;
	char list[256] = "";
	for (const char *const *a = allowed; *a != NULL; a++) {
		strcat(list, a == allowed ? "" : ", ");
		strcat(list, *a);
	}
	return embd_err_set(e, EMBD_EBADPARAM, "unknown query parameter '%.100s'%s%s", pc.bad,
	                    *list ? "; this path takes " : "; this path takes none", list);
}

int route_json_answer(struct req *r, json_t *v, embd_err *e)
{
	r->type = "application/json";
	int rc = embd_json_body(&r->resp, v);
	return rc != 0 ? embd_req_charge_error(r, rc, "the response", e) : 0;
}

static int h_healthz(struct req *r, embd_err *e)
{
	static const char *const none[] = {NULL};
	int rc = route_check_params(r, none, e);
	if (rc != 0)
		return rc;
	r->resp.reserved = 1; /* answered whatever the load: the budget keeps a reserve for it */
	return route_json_answer(
	    r, json_pack("{s:s,s:I}", "status", "ok", "generation", (json_int_t)embd_gen_number(r->gen)), e);
}

static int h_metrics(struct req *r, embd_err *e)
{
	static const char *const none[] = {NULL};
	int rc = route_check_params(r, none, e);
	if (rc != 0)
		return rc;
	r->resp.reserved = 1; /* answered whatever the load: the budget keeps a reserve for it */
	char *buf;
	size_t cap = embd_metrics_bound();
	rc = embd_resp_buffer(&r->resp, cap, (void **)&buf);
	if (rc != 0)
		return embd_req_charge_error(r, rc, "the metrics page", e);
	/* The scrape's own bytes (its record and this page) are left out of the in-flight gauge. */
	size_t n =
	    embd_metrics_render(&r->srv->metrics, &r->srv->budget, &r->srv->pool, r->gen, r->acct.held, buf, cap);
	size_t nc = n != 0 ? embd_metrics_render_compute(&r->srv->compute, buf + n, cap - n) : 0;
	size_t nt = nc != 0 ? embd_metrics_render_turns(&r->srv->turns, buf + n + nc, cap - n - nc) : 0;
	if (n == 0 || nc == 0 || nt == 0)
		return embd_err_set(e, EMBD_EINTERNAL, "the metrics page outgrew its buffer");
	embd_resp_shrink_last(&r->resp, n + nc + nt);
	r->type = "text/plain; version=0.0.4";
	return 0;
}

static int h_info(struct req *r, embd_err *e)
{
	static const char *const none[] = {NULL};
	int rc = route_check_params(r, none, e);
	if (rc != 0)
		return rc;
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	const embd_vocab *voc = embd_gen_vocab(r->gen);
	json_t *v = json_pack(
	    "{s:I,s:I,s:s,s:I,s:o,s:s,s:b,s:I,s:I,s:I,s:I,s:I,s:f,s:s}", "rows", (json_int_t)m->rows, "dim",
	    (json_int_t)m->dim, "dtype", embd_dtype_name(m->dtype), "row_bytes", (json_int_t)m->row_bytes, "source",
	    embd_json_text(m->source, 4095), "format", embd_format_name(m->format), "vocab", voc != NULL, "generation",
	    (json_int_t)embd_gen_number(r->gen), "bytes", (json_int_t)m->file_bytes, "data_bytes",
	    (json_int_t)m->data_bytes, "heap_bytes", (json_int_t)m->heap_bytes, "norms_bytes",
	    (json_int_t)embd_gen_norms_bytes(r->gen), "load_ms", (double)m->load_ns / 1e6, "version", EMBD_VERSION);
	/* What a client needs to split a batch: the most ids, the most bytes a request may hold, the largest body. */
	const embd_config *cfg = &r->srv->cfg;
	json_t *lim = v != NULL
	                  ? json_pack("{s:I,s:I,s:I}", "max_ids", (json_int_t)cfg->max_ids, "request_bytes",
	                              (json_int_t)cfg->request_bytes, "max_body_bytes", (json_int_t)cfg->max_body_bytes)
	                  : NULL;
	if (v != NULL && (lim == NULL || json_object_set_new(v, "limits", lim) != 0)) {
		json_decref(v);
		v = NULL;
	}
	/* listen.unix, for a client on this host that found the daemon by its port: the faster way in. */
	if (v != NULL && r->srv->cfg.listen_unix[0] != '\0' &&
	    json_object_set_new(v, "unix", embd_json_text(r->srv->cfg.listen_unix, 4095)) != 0) {
		json_decref(v);
		v = NULL;
	}
	if (v != NULL && voc != NULL) {
		json_t *w =
		    json_pack("{s:I,s:I,s:f}", "tokens", (json_int_t)embd_vocab_size(voc), "bytes",
		              (json_int_t)embd_vocab_bytes(voc), "build_ms", (double)embd_vocab_build_ns(voc) / 1e6);
		if (w == NULL || json_object_set_new(v, "vocabulary", w) != 0) {
			json_decref(v);
			v = NULL;
		}
	}
	/* Every live generation, oldest first: what it holds and the requests pinning it (this one left out). */
	struct metrics_gen gens[METRICS_GENERATIONS];
	size_t n = embd_metrics_generations(&r->srv->metrics, r->gen, gens, METRICS_GENERATIONS);
	json_t *list = v != NULL ? json_array() : NULL;
	for (size_t i = 0; list != NULL && i < n && i < METRICS_GENERATIONS; i++) {
		json_t *g = json_pack("{s:I,s:I,s:I}", "generation", (json_int_t)gens[i].number, "bytes",
		                      (json_int_t)gens[i].bytes, "readers", (json_int_t)gens[i].readers);
		if (g == NULL || json_array_append_new(list, g) != 0) {
			json_decref(list);
			list = NULL;
		}
	}
	if (v != NULL && (list == NULL || json_object_set_new(v, "generations", list) != 0)) {
		json_decref(v);
		v = NULL;
	}
	return route_json_answer(r, v, e);
}

/*
 * The query parameters a rows route takes (any other is a 400), and how its
 * response is to look: ?format= wins, then Accept
 * (embd_query_accept: each type at the q of its most specific range; a
 * wildcard means JSON), then JSON; ?dtype= converts and ?normalize=l2
 * normalises. Decided before any id is parsed: a 406 costs nothing.
 */
int route_rows_opts(struct req *r, const char *const *params, embd_dtype stored, embd_rows_query *q, embd_err *e)
{
	int rc = route_check_params(r, params, e);
	if (rc != 0)
		return rc;
	q->opts.dtype = stored;
	q->opts.normalize = 0;
	const char *d = embd_arg(r, "dtype");
	if (d != NULL && embd_dtype_parse(d, &q->opts.dtype) != 0)
		return embd_err_set(e, EMBD_EBADPARAM, "dtype '%.100s' is not one of f32, f16, bf16", d);
	const char *nz = embd_arg(r, "normalize");
	if (nz != NULL) {
		if (strcmp(nz, "l2") == 0)
			q->opts.normalize = 1;
		else if (strcmp(nz, "none") != 0)
			return embd_err_set(e, EMBD_EBADPARAM, "normalize '%.100s' is not l2 or none", nz);
	}
	const char *f = embd_arg(r, "format");
	const char *accept = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
	q->wire = EMBD_WIRE_JSON;
	if (f != NULL) {
		if (embd_wire_parse(f, &q->wire) != 0)
			return embd_err_set(e, EMBD_EBADPARAM, "format '%.100s' is not one of json, bin, npy", f);
	} else if (accept != NULL) {
		int best = embd_query_accept(accept, embd_wire_types, EMBD_WIRE_COUNT);
		if (best < 0)
			return embd_err_set(e, EMBD_EACCEPT,
			                    "Accept '%.200s' names no format embd serves: application/json, "
			                    "application/octet-stream, application/x-npy",
			                    accept);
		q->wire = (embd_wire)best;
	}
	if (q->wire == EMBD_WIRE_NPY && embd_dtype_npy_descr(q->opts.dtype) == NULL)
		return embd_err_set(e, EMBD_EBADPARAM,
		                    "NumPy has no %s dtype, so it cannot go out as .npy; use format=bin",
		                    embd_dtype_name(q->opts.dtype));
	return 0;
}

int route_rows_answer(struct req *r, const embd_matrix_info *m, const embd_rows_query *q, embd_err *e)
{
	int rc = embd_resp_rows(&r->resp, m, &r->srv->plan, q, e);
	if (rc != 0)
		return embd_req_charge_error(r, rc, e->msg, e);
	r->type = embd_wire_type(q->wire);
	r->rows = 1;
	r->nrows = embd_plan_rows(q->runs, q->nruns);
	r->dtype = q->opts.dtype;
	return 0;
}

int route_arg_u64(struct req *r, const char *name, uint64_t *out, embd_err *e)
{
	const char *v = embd_arg(r, name);
	if (v == NULL)
		return 1;
	int rc = embd_query_u64(v, out);
	if (rc == -ERANGE)
		return embd_err_set(e, EMBD_EBADSLICE, "%s '%.100s' is past 2^64-1", name, v);
	if (rc != 0)
		return embd_err_set(e, EMBD_EBADSLICE, "%s '%.100s' is not a non-negative integer", name, v);
	return 0;
}

/* GET /v1/rows/{id} */
static int h_row(struct req *r, embd_err *e)
{
	static const char *const params[] = {"format", "dtype", "normalize", NULL};
	embd_rows_query q = {0};
	int rc = route_rows_opts(r, params, embd_gen_matrix(r->gen)->dtype, &q, e);
	if (rc != 0)
		return rc;
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	const char *s = r->url + strlen("/v1/rows/");
	if (strchr(s, '/') != NULL)
		return embd_err_set(e, EMBD_ENOTFOUND, "no such path: %.200s", r->url);
	/* Lists forgive spaces around ids ("ids=1, 2"); a path segment is the id and nothing else. */
	if (s[strcspn(s, " \t\r\n\v\f")] != '\0')
		return embd_err_set(e, EMBD_EBADID, "'%.100s' is not a non-negative decimal integer", s);
	int64_t id;
	size_t n = 1;
	rc = embd_ids_parse_list(s, strlen(s), NULL, &n, e);
	if (rc == 0 && n != 1)
		return embd_err_set(e, EMBD_EBADID, "'%.100s' is not one id; for several use /v1/rows?ids=", s);
	if (rc == 0)
		rc = embd_ids_parse_list(s, strlen(s), &id, &n, e);
	if (rc == EMBD_EEMPTY)
		return embd_err_set(e, EMBD_EBADID, "the path names no id");
	if (rc != 0)
		return rc;
	if ((uint64_t)id >= m->rows)
		return embd_err_set(e, EMBD_ENOROW, "id %" PRId64 " is out of range [0, %" PRIu64 ")", id, m->rows);
	embd_ids view = {(const unsigned char *)&id, 1, 8};
	embd_run run = {(uint64_t)id, 1};
	q.runs = &run;
	q.nruns = 1;
	q.ids = &view;
	return route_rows_answer(r, embd_gen_matrix(r->gen), &q, e);
}

int route_check_max_ids(struct req *r, size_t n, const char *who, const char *what, embd_err *e)
{
	if (n <= (uint64_t)r->srv->cfg.max_ids)
		return 0;
	atomic_fetch_add(&r->srv->metrics.rejected[REJ_MAX_IDS], 1);
	return embd_err_set(e, EMBD_ETOOMANYIDS, "%s names %zu %s; limits.max_ids is %" PRId64, who, n, what,
	                    r->srv->cfg.max_ids);
}

/* A batch as the request named it: ids (parsed, or viewed in a binary body) or tokens, resolved to ids. */
struct batch {
	embd_ids ids;
	embd_token *toks; /* NULL unless named by token */
	size_t ntoks;
};

/* Parse a query string's id list into accounted int64s (two passes: count, then fill). */
static int list_ids(struct req *r, const char *s, struct batch *b, embd_err *e)
{
	size_t n = 0;
	int rc = embd_ids_parse_list(s, strlen(s), NULL, &n, e);
	if (rc == 0)
		rc = route_check_max_ids(r, n, "?ids=", "ids", e);
	if (rc != 0)
		return rc;
	int64_t *parsed;
	rc = embd_acct_alloc(&r->acct, n * sizeof *parsed, (void **)&parsed);
	if (rc != 0)
		return embd_req_charge_error(r, rc, "the parsed ids", e);
	rc = embd_ids_parse_list(s, strlen(s), parsed, &n, e);
	b->ids = (embd_ids){(const unsigned char *)parsed, n, 8};
	return rc;
}

/* Room for n tokens and their bytes, from the accountant. */
static int alloc_tokens(struct req *r, size_t n, size_t bytes, embd_token **toks, char **arena, embd_err *e)
{
	int rc = embd_acct_alloc(&r->acct, n * sizeof **toks, (void **)toks);
	if (rc == 0)
		rc = embd_acct_alloc(&r->acct, bytes, (void **)arena);
	return rc != 0 ? embd_req_charge_error(r, rc, "the parsed tokens", e) : 0;
}

/* ?tokens=king,queen: the tokens, in accounted memory. */
static int list_tokens(struct req *r, const char *s, struct batch *b, embd_err *e)
{
	size_t n = 0, bytes = 0, len = strlen(s);
	char *arena = NULL;
	int rc = embd_tokens_parse_list(s, len, NULL, NULL, &n, &bytes, e);
	if (rc == 0)
		rc = route_check_max_ids(r, n, "?tokens=", "tokens", e);
	if (rc == 0)
		rc = alloc_tokens(r, n, bytes, &b->toks, &arena, e);
	if (rc == 0)
		rc = embd_tokens_parse_list(s, len, b->toks, arena, &n, &bytes, e);
	b->ntoks = n;
	return rc;
}

/* A JSON body: {"ids": [...]} or {"tokens": [...]}, counted, then filled into accounted memory. */
static int json_batch(struct req *r, struct batch *b, embd_err *e)
{
	embd_batch jb = {0};
	int rc = embd_batch_parse_json(r->body, r->body_len, &jb, e);
	if (rc == 0)
		rc = route_check_max_ids(r, jb.n, "the body", jb.tokens ? "tokens" : "ids", e);
	if (rc != 0)
		return rc;
	if (jb.tokens) {
		rc = alloc_tokens(r, jb.n, jb.bytes, &jb.toks, &jb.arena, e);
		if (rc == 0)
			rc = embd_batch_parse_json(r->body, r->body_len, &jb, e);
		b->toks = jb.toks;
		b->ntoks = jb.n;
		return rc;
	}
	rc = embd_acct_alloc(&r->acct, jb.n * sizeof *jb.ids, (void **)&jb.ids);
	if (rc != 0)
		return embd_req_charge_error(r, rc, "the parsed ids", e);
	rc = embd_batch_parse_json(r->body, r->body_len, &jb, e);
	b->ids = (embd_ids){(const unsigned char *)jb.ids, jb.n, 8};
	return rc;
}

/* The batch of a POST body, by Content-Type (or, without one, by ?id_dtype= or what the body is). */
static int body_batch(struct req *r, struct batch *b, embd_err *e)
{
	const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (r->body_len == 0)
		return embd_err_set(
		    e, EMBD_EEMPTY,
		    "the request body is empty; send {\"ids\": [...]}, {\"tokens\": [...]} or binary ids");
	embd_body_kind kind;
	unsigned width;
	int rc = embd_ids_body_kind(ct, embd_arg(r, "id_dtype"), r->body, r->body_len, &kind, &width, e);
	if (rc != 0)
		return rc;
	if (kind == EMBD_BODY_JSON)
		return json_batch(r, b, e);
	if (kind == EMBD_BODY_NPY)
		return embd_ids_from_npy(r->body, r->body_len, &b->ids, e);
	return embd_ids_from_raw(r->body, r->body_len, width, &b->ids, e);
}

/* Tokens to ids through the generation's vocabulary, by ?oov= (error, zero or skip). */
static int resolve_tokens(struct req *r, embd_oov oov, struct batch *b, embd_err *e)
{
	const embd_vocab *v = embd_gen_vocab(r->gen);
	if (v == NULL)
		return embd_err_set(e, EMBD_ENOVOCAB,
		                    "%.200s has no vocabulary, so rows cannot be asked by token: serve it with --vocab "
		                    "FILE (one token per line), or ask by id",
		                    embd_gen_matrix(r->gen)->source);
	int64_t *ids;
	int rc = embd_acct_alloc(&r->acct, b->ntoks * sizeof *ids, (void **)&ids);
	if (rc != 0)
		return embd_req_charge_error(r, rc, "the token ids", e);
	size_t unknown = 0;
	rc = embd_tokens_resolve(v, b->toks, &b->ntoks, oov, ids, &unknown, e);
	r->by_tokens = 1;
	r->unknown_tokens = unknown;
	b->ids = (embd_ids){(const unsigned char *)ids, b->ntoks, 8};
	return rc;
}

/* ?start=&stop=: one run. */
static int slice_run(struct req *r, embd_run *run, embd_err *e)
{
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	if (embd_arg(r, "id_dtype") != NULL)
		return embd_err_set(e, EMBD_EBADPARAM, "id_dtype goes with a binary POST body");
	uint64_t start = 0, stop = m->rows;
	int rc = route_arg_u64(r, "start", &start, e);
	if (rc < 0 || (rc = route_arg_u64(r, "stop", &stop, e)) < 0)
		return rc;
	if (start > stop)
		return embd_err_set(e, EMBD_EBADSLICE, "start %" PRIu64 " is after stop %" PRIu64, start, stop);
	if (stop > m->rows)
		return embd_err_set(e, EMBD_ERANGE, "stop %" PRIu64 " is past the end: rows are [0, %" PRIu64 ")", stop,
		                    m->rows);
	if (start == stop)
		return embd_err_set(e, EMBD_EEMPTY, "the slice [%" PRIu64 ", %" PRIu64 ") is empty", start, stop);
	*run = (embd_run){start, stop - start};
	return 0;
}

/* GET /v1/rows?start=&stop= | ?ids= | ?tokens=, POST /v1/rows: parse, plan, then the rows. */
static int h_rows(struct req *r, embd_err *e)
{
	static const char *const params[] = {"start",  "stop",  "ids",       "tokens",   "oov",
	                                     "format", "dtype", "normalize", "id_dtype", NULL};
	embd_rows_query q = {0};
	int rc = route_rows_opts(r, params, embd_gen_matrix(r->gen)->dtype, &q, e);
	if (rc != 0)
		return rc;
	const char *ids_arg = embd_arg(r, "ids"), *tokens_arg = embd_arg(r, "tokens"), *oov_arg = embd_arg(r, "oov");
	int has_slice = embd_arg(r, "start") != NULL || embd_arg(r, "stop") != NULL;
	embd_oov oov = EMBD_OOV_ERROR;
	if (oov_arg != NULL && embd_oov_parse(oov_arg, &oov) != 0)
		return embd_err_set(e, EMBD_EBADPARAM, "oov '%.100s' is not error, zero or skip", oov_arg);
	struct batch b = {{NULL, 0, 8}, NULL, 0};
	embd_run one;
	if (r->method == M_POST) {
		if (has_slice || ids_arg != NULL || tokens_arg != NULL)
			return embd_err_set(e, EMBD_EBADPARAM,
			                    "a POST names its rows in the body, not in ?ids=, ?tokens= or ?start=");
		rc = body_batch(r, &b, e);
	} else if ((ids_arg != NULL) + (tokens_arg != NULL) + has_slice > 1) {
		return embd_err_set(e, EMBD_EBADPARAM, "give one of ?ids=, ?tokens= or ?start=&stop=");
	} else if (embd_arg(r, "id_dtype") != NULL) {
		return embd_err_set(e, EMBD_EBADPARAM, "id_dtype goes with a binary POST body");
	} else if (ids_arg != NULL) {
		rc = list_ids(r, ids_arg, &b, e);
	} else if (tokens_arg != NULL) {
		rc = list_tokens(r, tokens_arg, &b, e);
	} else if (has_slice) {
		if (oov_arg != NULL)
			return embd_err_set(e, EMBD_EBADPARAM, "oov goes with tokens");
		rc = slice_run(r, &one, e);
		if (rc != 0)
			return rc;
		q.runs = &one;
		q.nruns = 1;
		return route_rows_answer(r, embd_gen_matrix(r->gen), &q, e);
	} else {
		return embd_err_set(e, EMBD_EBADPARAM,
		                    "name the rows: ?start=A&stop=B, ?ids=3,17,42, ?tokens=king,queen, /v1/rows/{id} "
		                    "or a POST body");
	}
	if (rc != 0)
		return rc;
	if (b.toks == NULL && oov_arg != NULL)
		return embd_err_set(e, EMBD_EBADPARAM, "oov goes with tokens; these rows are named by id");
	if (b.toks != NULL && (rc = resolve_tokens(r, oov, &b, e)) != 0)
		return rc;
	if ((rc = route_check_max_ids(r, b.ids.n, "the request", "ids", e)) != 0)
		return rc;
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	int zero_rows = oov == EMBD_OOV_ZERO;
	rc = embd_plan_runs(&b.ids, m->rows, zero_rows, NULL, &q.nruns, e);
	if (rc != 0)
		return rc;
	embd_run *runs;
	rc = embd_acct_alloc(&r->acct, q.nruns * sizeof *runs, (void **)&runs);
	if (rc != 0)
		return embd_req_charge_error(r, rc, "the plan", e);
	embd_plan_runs(&b.ids, m->rows, zero_rows, runs, &q.nruns, e);
	q.runs = runs;
	if (b.toks != NULL) {
		q.tokens = b.toks;
		q.ntokens = b.ntoks;
	} else {
		q.ids = &b.ids;
	}
	return route_rows_answer(r, embd_gen_matrix(r->gen), &q, e);
}

/* Equal in time that does not depend on where the strings differ. */
static int token_equal(const char *a, const char *b)
{
	size_t n = strlen(a), m = strlen(b);
	unsigned char diff = (unsigned char)(n != m);
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)(a[i] ^ b[i < m ? i : 0]);
	return diff == 0;
}

/* The reload thread has answered the job: the handler runs again and replies. */
static void reload_done(embd_reload_job *j)
{
	struct req *r = j->cls;
	MHD_resume_connection(r->conn);
}

/*
 * What a file named by path= is, from the request alone (format, and a raw
 * file's dim, dtype, rows, offset): nothing of the file served now carries
 * over to a new one. 0, or EMBD_EBADPARAM with e saying why.
 */
static int reload_file_params(struct req *r, embd_reload_job *j, int has_path, embd_err *e)
{
	static const char *const shape[] = {"format", "dim", "dtype", "rows", "offset"};
	for (size_t i = 0; i < sizeof shape / sizeof shape[0]; i++)
		if (!has_path && embd_arg(r, shape[i]) != NULL)
			return embd_err_set(e, EMBD_EBADPARAM,
			                    "%s describes the file named by path=: give path too (without it, the "
			                    "reload opens the file served now, as it was loaded)",
			                    shape[i]);
	const char *v = embd_arg(r, "format");
	if (v != NULL && (embd_format_parse(v, &j->format) != 0 || j->format == EMBD_FORMAT_DEMO)) {
		char names[128];
		embd_format_names(names, sizeof names);
		return embd_err_set(e, EMBD_EBADPARAM, "format '%.40s' is not one of %s (demo names no file)", v,
		                    names);
	}
	uint64_t *const num[] = {&j->dim, &j->rows, &j->offset};
	static const char *const num_name[] = {"dim", "rows", "offset"};
	for (size_t i = 0; i < 3; i++) {
		if ((v = embd_arg(r, num_name[i])) == NULL)
			continue;
		if (embd_query_u64(v, num[i]) != 0 || (i == 0 && *num[i] == 0))
			return embd_err_set(e, EMBD_EBADPARAM, "%s '%.40s' is not a %s integer", num_name[i], v,
			                    i == 0 ? "positive" : "non-negative");
	}
	v = embd_arg(r, "dtype");
	if (v != NULL && embd_dtype_parse(v, &j->dtype) != 0)
		return embd_err_set(e, EMBD_EBADPARAM, "dtype '%.40s' is not f32, f16 or bf16", v);
	/* A raw file has no header: its dim and dtype come together, and rows, offset and format=raw need them. */
	int dim = embd_arg(r, "dim") != NULL, dtype = v != NULL;
	int raw_only = embd_arg(r, "rows") != NULL || embd_arg(r, "offset") != NULL || j->format == EMBD_FORMAT_RAW;
	if (dim != dtype || (raw_only && !dim))
		return embd_err_set(e, EMBD_EBADPARAM,
		                    "a raw matrix needs dim=N and dtype=f32|f16|bf16 together (rows= and offset= "
		                    "go with them)");
	return 0;
}

/*
 * POST /v1/admin/reload[?path=FILE[&format=F][&dim=N&dtype=T[&rows=N][&offset=N]]][&tensor=NAME][&vocab=FILE]:
 * load the next generation (bearer token required). The load runs on the reload thread while the connection is
 * suspended: opening a big file with matrix.populate may take seconds, and no
 * request thread waits for it. The job lives in the request's accounted memory.
 */
static int h_reload(struct req *r, embd_err *e)
{
	embd_server *s = r->srv;
	embd_reload_job *j = r->job;
	if (j != NULL) { /* resumed: the reload is done; the request holds the generation current now */
		r->gen = embd_gen_current_acquire(&s->current);
		embd_conn_generation(r->slot, embd_gen_number(r->gen));
		/* The request's fault (a file named without its format or its vocabulary, an option its format does not
		 * use) is 400; the rest 500. */
		if (j->rc != 0)
			return embd_err_set(e,
			                    j->err == EMBD_EUNKNOWNFORMAT || j->err == EMBD_EBADPARAM ||
			                            j->err == EMBD_ENOTAPPLICABLE
			                        ? j->err
			                        : EMBD_ERELOAD,
			                    "%s", j->msg);
		r->answer_gen = j->generation; /* the answer is about the generation it loaded, not the one it held */
		return route_json_answer(r,
		                         json_pack("{s:I,s:o}", "generation", (json_int_t)j->generation, "message",
		                                   embd_json_text(j->msg, sizeof j->msg)),
		                         e);
	}
	if (s->admin_token[0] == '\0')
		return embd_err_set(e, EMBD_ENOTFOUND,
		                    "no such path: %.200s (the admin endpoints are off: set admin.token_file)", r->url);
	const char *auth = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (auth == NULL || strncmp(auth, "Bearer ", 7) != 0 || !token_equal(auth + 7, s->admin_token))
		return embd_err_set(e, EMBD_EUNAUTH, "%s",
		                    auth == NULL ? "send Authorization: Bearer <token>" : "wrong token");
	static const char *const params[] = {"path",  "tensor", "vocab",  "format", "dim",
	                                     "dtype", "rows",   "offset", NULL};
	int rc = route_check_params(r, params, e);
	if (rc != 0)
		return rc;
	/* No path: reopen the file served now, with its spec. A path given empty names no file; it never means the demo
	 * matrix. */
	const char *path = NULL, *tensor = NULL, *vocab = NULL;
	size_t len = 0;
	if (MHD_lookup_connection_value_n(r->conn, MHD_GET_ARGUMENT_KIND, "path", 4, &path, &len) == MHD_YES) {
		if (path == NULL || len == 0)
			return embd_err_set(
			    e, EMBD_EBADPARAM,
			    "path is empty: name a matrix file, or leave path out to reopen the file served now");
		if (len >= sizeof s->cfg.matrix_path)
			return embd_err_set(e, EMBD_EBADPARAM, "path is %zu bytes long; the limit is %zu", len,
			                    sizeof s->cfg.matrix_path - 1);
	}
	/*
	 * Given empty, tensor means none (the only 2-D tensor). An empty vocab is
	 * refused: it is what a script's vocab=$VOCAB sends with the variable
	 * unset, and taking it for none would drop the words in use.
	 */
	if (MHD_lookup_connection_value_n(r->conn, MHD_GET_ARGUMENT_KIND, "tensor", 6, &tensor, &len) == MHD_YES) {
		if (tensor == NULL)
			tensor = "";
		if (len >= sizeof s->cfg.matrix_tensor)
			return embd_err_set(e, EMBD_EBADPARAM, "tensor is %zu bytes long; the limit is %zu", len,
			                    sizeof s->cfg.matrix_tensor - 1);
	}
	if (MHD_lookup_connection_value_n(r->conn, MHD_GET_ARGUMENT_KIND, "vocab", 5, &vocab, &len) == MHD_YES) {
		if (vocab == NULL || len == 0)
			return embd_err_set(e, EMBD_EBADPARAM,
			                    "vocab is empty: name a vocabulary file with vocab=FILE, or say vocab=none "
			                    "for a table without words");
		if (len >= sizeof s->cfg.matrix_vocab)
			return embd_err_set(e, EMBD_EBADPARAM, "vocab is %zu bytes long; the limit is %zu", len,
			                    sizeof s->cfg.matrix_vocab - 1);
	}
	rc = embd_acct_alloc(&r->acct, sizeof *j, (void **)&j);
	if (rc != 0)
		return embd_req_charge_error(r, rc, "the reload", e);
	memset(j, 0, sizeof *j);
	if ((rc = reload_file_params(r, j, path != NULL, e)) != 0) {
		embd_acct_free(&r->acct, j);
		return rc;
	}
	j->path = path;
	j->tensor = tensor;
	j->vocab = vocab;
	j->done = reload_done;
	j->cls = r;
	r->job = j;
	/*
	 * While it waits, the reload holds no generation: a reload past
	 * limits.generations drains the oldest one's readers, and a queued admin
	 * reload must not be one of them (its connection would be closed for a
	 * reload it is itself waiting for). It takes the current one back when it
	 * resumes.
	 */
	embd_gen_release(r->gen);
	r->gen = NULL;
	embd_conn_generation(r->slot, 0);
	MHD_suspend_connection(r->conn);
	if (embd_reloader_submit(&s->reloader, j) != 0) {
		MHD_resume_connection(r->conn);
		r->job = NULL;
		r->gen = embd_gen_current_acquire(&s->current);
		embd_conn_generation(r->slot, embd_gen_number(r->gen));
		return embd_err_set(e, EMBD_ERELOAD, "the server is shutting down; this reload did not run");
	}
	return EMBD_PENDING;
}
