/* The route table and its handlers: info, rows (one, slice, batch), healthz, metrics. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "encode.h"
#include "ids.h"
#include "npy.h"
#include "query.h"
#include "reload.h"
#include "server.h"

enum fmt { F_JSON, F_BIN, F_NPY };
static const char *const fmt_types[] = {"application/json", "application/octet-stream", "application/x-npy"};
static const char *const fmt_names[] = {"json", "bin", "npy"};

#define BIT(m)   (1u << (m))
#define GET_ONLY (BIT(M_GET) | BIT(M_HEAD))

static enum MHD_Result h_info(struct req *r);
static enum MHD_Result h_row(struct req *r);
static enum MHD_Result h_rows(struct req *r);
static enum MHD_Result h_healthz(struct req *r);
static enum MHD_Result h_metrics(struct req *r);
static enum MHD_Result h_reload(struct req *r);

static const struct route routes[] = {
    {"/v1/info", 0, R_INFO, GET_ONLY, h_info},       {"/v1/rows", 0, R_ROWS, GET_ONLY | BIT(M_POST), h_rows},
    {"/v1/rows/", 1, R_ROW, GET_ONLY, h_row},        {"/healthz", 0, R_HEALTHZ, GET_ONLY, h_healthz},
    {"/metrics", 0, R_METRICS, GET_ONLY, h_metrics}, {"/v1/admin/reload", 0, R_ADMIN, BIT(M_POST), h_reload},
};

const struct route *embd_route_find(const char *url)
{
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		const struct route *rt = &routes[i];
		size_t n = strlen(rt->path);
		if (rt->prefix ? strncmp(url, rt->path, n) == 0 : strcmp(url, rt->path) == 0)
			return rt;
	}
	return NULL;
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

static int check_params(struct req *r, const char *const *allowed)
{
	struct param_check pc = {allowed, NULL};
	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, check_one, &pc);
	if (pc.bad != NULL) {
		char list[256] = "";
		for (const char *const *a = allowed; *a != NULL; a++) {
			strcat(list, a == allowed ? "" : ", ");
			strcat(list, *a);
		}
		embd_reply_error(r, EMBD_EBADPARAM, "unknown query parameter '%s'%s%s", pc.bad,
		                 *list ? "; this path takes " : "; this path takes none", list);
		return -1;
	}
	return 0;
}

static enum MHD_Result h_healthz(struct req *r)
{
	static const char *const none[] = {NULL};
	if (check_params(r, none) != 0)
		return MHD_YES;
	char *buf;
	int rc = embd_req_alloc_reserved(r, EMBD_HEALTHZ_BYTES, (void **)&buf);
	if (rc != 0)
		return embd_reply_charge_error(r, rc, "the response");
	int n = snprintf(buf, EMBD_HEALTHZ_BYTES, "{\"status\":\"ok\",\"generation\":%" PRIu64 "}",
	                 embd_gen_number(r->gen));
	return embd_reply_buffer(r, 200, "application/json", buf, (size_t)n);
}

static enum MHD_Result h_metrics(struct req *r)
{
	static const char *const none[] = {NULL};
	if (check_params(r, none) != 0)
		return MHD_YES;
	char *buf;
	size_t cap = embd_metrics_bound();
	int rc = embd_req_alloc_reserved(r, cap, (void **)&buf);
	if (rc != 0)
		return embd_reply_charge_error(r, rc, "the metrics page");
	size_t n = embd_metrics_render(&r->srv->metrics, &r->srv->budget, &r->srv->pool, r->acct.held, buf, cap);
	if (n == 0)
		return embd_reply_error(r, EMBD_EINTERNAL, "the metrics page outgrew its buffer");
	return embd_reply_buffer(r, 200, "text/plain; version=0.0.4", buf, n);
}

static enum MHD_Result h_info(struct req *r)
{
	static const char *const none[] = {NULL};
	if (check_params(r, none) != 0)
		return MHD_YES;
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	char src[1024];
	embd_json_escape(src, sizeof src, m->source);
	size_t cap = 2048;
	char *buf;
	int rc = embd_req_alloc(r, cap, (void **)&buf);
	if (rc != 0)
		return embd_reply_charge_error(r, rc, "the response");
	int n = snprintf(buf, cap,
	                 "{\"rows\":%" PRIu64 ",\"dim\":%" PRIu64 ",\"dtype\":\"%s\",\"row_bytes\":%zu,"
	                 "\"source\":\"%s\",\"format\":\"%s\",\"vocab\":false,\"generation\":%" PRIu64
	                 ",\"bytes\":%" PRIu64 ",\"data_bytes\":%" PRIu64 ",\"version\":\"%s\"}",
	                 m->rows, m->dim, embd_dtype_name(m->dtype), m->row_bytes, src, embd_format_name(m->format),
	                 embd_gen_number(r->gen), m->file_bytes, m->data_bytes, EMBD_VERSION);
	return embd_reply_buffer(r, 200, "application/json", buf, (size_t)n);
}

/*
 * The response format: ?format= wins, then Accept (embd_query_accept: each
 * type at the q of its most specific range; a wildcard means JSON), then
 * JSON. -1: replied with an error.
 */
static int negotiate(struct req *r, enum fmt *out)
{
	const char *f = embd_arg(r, "format");
	if (f != NULL) {
		for (int i = 0; i < 3; i++) {
			if (strcmp(f, fmt_names[i]) == 0) {
				*out = (enum fmt)i;
				return 0;
			}
		}
		embd_reply_error(r, EMBD_EBADPARAM, "format '%s' is not one of json, bin, npy", f);
		return -1;
	}
	const char *accept = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
	*out = F_JSON;
	if (accept == NULL)
		return 0;
	int best = embd_query_accept(accept, fmt_types, 3);
	if (best < 0) {
		embd_reply_error(r, EMBD_EACCEPT,
		                 "Accept '%s' names no format embd serves: application/json, application/octet-stream, "
		                 "application/x-npy",
		                 accept);
		return -1;
	}
	*out = (enum fmt)best;
	return 0;
}

/* A decimal, non-negative query integer; 1 when absent, -1 with a reply on error. */
static int arg_u64(struct req *r, const char *name, uint64_t *out)
{
	const char *v = embd_arg(r, name);
	if (v == NULL)
		return 1;
	int rc = embd_query_u64(v, out);
	if (rc == -ERANGE) {
		embd_reply_error(r, EMBD_EBADSLICE, "%s '%s' is past 2^64-1", name, v);
		return -1;
	}
	if (rc != 0) {
		embd_reply_error(r, EMBD_EBADSLICE, "%s '%s' is not a non-negative integer", name, v);
		return -1;
	}
	return 0;
}

/* Everything a rows response is made of. */
struct rows_req {
	const embd_ids *ids; /* NULL for a slice */
	embd_run *runs;
	size_t nruns;
	embd_run one; /* the run of a slice or a single row */
};

static enum MHD_Result send_rows(struct req *r, struct rows_req *q, enum fmt fmt, const embd_encode_opts *o)
{
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	uint64_t nrows = embd_plan_rows(q->runs, q->nruns);
	size_t out_row = (size_t)m->dim * embd_dtype_size(o->dtype);
	int transform = fmt == F_JSON || embd_encode_transforms(m, o);
	embd_path path = embd_plan_choose(&r->srv->plan, q->nruns, nrows, m->row_bytes, transform);
	uint64_t shape[2] = {nrows, m->dim};
	char hdr_text[128];
	size_t hdr_len = 0;
	if (fmt == F_NPY)
		hdr_len = embd_npy_header_write(hdr_text, sizeof hdr_text, embd_dtype_npy_descr(o->dtype), shape, 2);
	uint64_t data_len = nrows * out_row;
	struct MHD_Response *resp;
	uint64_t body_len, copied;
	int rc;
	float *scratch = NULL;
	if (transform) {
		rc = embd_req_alloc(r, m->dim * sizeof(float), (void **)&scratch);
		if (rc != 0)
			return embd_reply_charge_error(r, rc, "a row of scratch space");
	}
	if (fmt == F_JSON) {
		uint64_t bound = embd_json_rows_bound(nrows, m->dim, q->ids ? q->ids->n : 0);
		char *buf;
		rc = bound > SIZE_MAX ? EMBD_ETOOBIG : embd_req_alloc(r, (size_t)bound, (void **)&buf);
		if (rc != 0)
			return embd_reply_charge_error(r, rc, "the JSON response");
		body_len = embd_json_rows_write(buf, m, q->runs, q->nruns, q->ids, o, scratch);
		copied = body_len;
		resp = embd_response_pinned_buffer(r, buf, body_len);
	} else if (path == EMBD_PATH_GATHER) {
		unsigned char *buf;
		rc = embd_req_alloc(r, hdr_len + data_len, (void **)&buf);
		if (rc != 0)
			return embd_reply_charge_error(r, rc, "the gathered rows");
		memcpy(buf, hdr_text, hdr_len);
		if (transform)
			embd_rows_convert(buf + hdr_len, m, q->runs, q->nruns, o, scratch);
		else
			embd_plan_gather(m, q->runs, q->nruns, buf + hdr_len);
		body_len = copied = hdr_len + data_len;
		resp = embd_response_pinned_buffer(r, buf, body_len);
	} else if (hdr_len == 0 && q->nruns == 1) {
		body_len = data_len;
		copied = 0;
		resp = embd_response_pinned_buffer(r, m->data + q->runs[0].start * m->row_bytes, data_len);
	} else {
		/* The .npy header (ours, accounted) and then the runs, straight from the mapping. */
		unsigned n = (unsigned)q->nruns + (hdr_len != 0);
		struct MHD_IoVec *iov;
		char *hdr = NULL;
		rc = embd_req_alloc(r, n * sizeof *iov + hdr_len, (void **)&iov);
		if (rc != 0)
			return embd_reply_charge_error(r, rc, "the I/O vector");
		unsigned k = 0;
		if (hdr_len != 0) {
			hdr = (char *)(iov + n);
			memcpy(hdr, hdr_text, hdr_len);
			iov[k++] = (struct MHD_IoVec){hdr, hdr_len};
		}
		for (size_t i = 0; i < q->nruns; i++)
			iov[k++] = (struct MHD_IoVec){m->data + q->runs[i].start * m->row_bytes,
			                              (size_t)q->runs[i].count * m->row_bytes};
		body_len = hdr_len + data_len;
		copied = hdr_len;
		resp = embd_response_pinned_iovec(r, iov, n);
	}
	if (resp == NULL)
		return embd_reply_error(r, -ENOMEM, "could not create the response");
	embd_metrics *mt = &r->srv->metrics;
	atomic_fetch_add_explicit(&mt->copied_bytes, copied, memory_order_relaxed);
	atomic_fetch_add_explicit(&mt->zerocopy_bytes, body_len - copied, memory_order_relaxed);
	r->copied = copied;
	r->path_taken = embd_path_name(fmt == F_JSON ? EMBD_PATH_GATHER : path);
	char v[64];
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, fmt_types[fmt]);
	MHD_add_response_header(resp, "X-Embd-Path", r->path_taken);
	snprintf(v, sizeof v, "%" PRIu64, copied);
	MHD_add_response_header(resp, "X-Embd-Copied-Bytes", v);
	snprintf(v, sizeof v, "%" PRIu64, r->acct.peak);
	MHD_add_response_header(resp, "X-Embd-Accounted-Bytes", v);
	snprintf(v, sizeof v, "%" PRIu64 ",%" PRIu64, nrows, m->dim);
	MHD_add_response_header(resp, "X-Embd-Shape", v);
	MHD_add_response_header(resp, "X-Embd-Dtype", embd_dtype_name(o->dtype));
	return embd_reply(r, 200, resp, body_len);
}

/* Format, dtype and normalisation of a rows response; -1: replied with an error. */
static int response_opts(struct req *r, enum fmt *fmt, embd_encode_opts *o)
{
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	o->dtype = m->dtype;
	o->normalize = 0;
	const char *d = embd_arg(r, "dtype");
	if (d != NULL && embd_dtype_parse(d, &o->dtype) != 0) {
		embd_reply_error(r, EMBD_EBADPARAM, "dtype '%s' is not one of f32, f16, bf16", d);
		return -1;
	}
	const char *nz = embd_arg(r, "normalize");
	if (nz != NULL) {
		if (strcmp(nz, "l2") == 0)
			o->normalize = 1;
		else if (strcmp(nz, "none") != 0) {
			embd_reply_error(r, EMBD_EBADPARAM, "normalize '%s' is not l2 or none", nz);
			return -1;
		}
	}
	if (negotiate(r, fmt) != 0)
		return -1;
	if (*fmt == F_NPY && embd_dtype_npy_descr(o->dtype) == NULL) {
		embd_reply_error(r, EMBD_EBADPARAM,
		                 "NumPy has no %s dtype, so it cannot go out as .npy; use format=bin",
		                 embd_dtype_name(o->dtype));
		return -1;
	}
	return 0;
}

static const char *const rows_params[] = {"start", "stop", "ids", "format", "dtype", "normalize", "id_dtype", NULL};

/* GET /v1/rows/{id} */
static enum MHD_Result h_row(struct req *r)
{
	static const char *const params[] = {"format", "dtype", "normalize", NULL};
	if (check_params(r, params) != 0)
		return MHD_YES;
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	const char *s = r->url + strlen("/v1/rows/");
	if (strchr(s, '/') != NULL)
		return embd_reply_error(r, EMBD_ENOTFOUND, "no such path: %s", r->url);
	/* Lists forgive spaces around ids ("ids=1, 2"); a path segment is the id and nothing else. */
	if (s[strcspn(s, " \t\r\n\v\f")] != '\0')
		return embd_reply_error(r, EMBD_EBADID, "'%s' is not a non-negative decimal integer", s);
	int64_t id;
	size_t n = 1;
	embd_err e;
	int rc = embd_ids_parse_list(s, strlen(s), NULL, &n, &e);
	if (rc == 0 && n != 1)
		return embd_reply_error(r, EMBD_EBADID, "'%s' is not one id; for several use /v1/rows?ids=", s);
	if (rc == 0)
		rc = embd_ids_parse_list(s, strlen(s), &id, &n, &e);
	if (rc != 0)
		return embd_reply_error(r, rc == EMBD_EEMPTY ? EMBD_EBADID : rc, "%s",
		                        rc == EMBD_EEMPTY ? "the path names no id" : e.msg);
	if ((uint64_t)id >= m->rows)
		return embd_reply_error(r, EMBD_ENOROW, "id %" PRId64 " is out of range [0, %" PRIu64 ")", id, m->rows);
	enum fmt fmt;
	embd_encode_opts o;
	if (response_opts(r, &fmt, &o) != 0)
		return MHD_YES;
	embd_ids view = {(const unsigned char *)&id, 1, 8};
	struct rows_req q = {&view, NULL, 1, {(uint64_t)id, 1}};
	q.runs = &q.one;
	return send_rows(r, &q, fmt, &o);
}

/* Refuse a request naming more than limits.max_ids ids (before anything is allocated for them): 1 if refused. */
static int too_many_ids(struct req *r, size_t n, const char *who)
{
	if (n <= (uint64_t)r->srv->cfg.max_ids)
		return 0;
	atomic_fetch_add(&r->srv->metrics.rejected[REJ_MAX_IDS], 1);
	embd_reply_error(r, EMBD_ETOOMANYIDS, "%s names %zu ids; limits.max_ids is %" PRId64, who, n,
	                 r->srv->cfg.max_ids);
	return 1;
}

/* The ids of a POST body, by Content-Type; -1: replied with an error. */
static int body_ids(struct req *r, embd_ids *ids, int64_t **parsed)
{
	const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	char type[64] = "";
	if (ct != NULL) {
		size_t n = strcspn(ct, "; ");
		snprintf(type, sizeof type, "%.*s", (int)(n < 63 ? n : 63), ct);
	}
	embd_err e;
	int rc;
	const char *id_dtype = embd_arg(r, "id_dtype");
	if (id_dtype != NULL && strcasecmp(type, "application/octet-stream") != 0) {
		embd_reply_error(r, EMBD_EBADPARAM, "id_dtype goes with an application/octet-stream body");
		return -1;
	}
	if (r->body_len == 0) {
		embd_reply_error(r, EMBD_EEMPTY, "the request body is empty; send {\"ids\": [...]} or binary ids");
		return -1;
	}
	if (strcasecmp(type, "application/json") == 0) {
		size_t n = 0;
		rc = embd_ids_parse_json(r->body, r->body_len, NULL, &n, &e);
		if (rc == 0 && too_many_ids(r, n, "the body"))
			return -1;
		if (rc == 0) {
			rc = embd_req_alloc(r, n * sizeof(int64_t), (void **)parsed);
			if (rc != 0) {
				embd_reply_charge_error(r, rc, "the parsed ids");
				return -1;
			}
			rc = embd_ids_parse_json(r->body, r->body_len, *parsed, &n, &e);
		}
		*ids = (embd_ids){(const unsigned char *)*parsed, n, 8};
	} else if (strcasecmp(type, "application/x-npy") == 0) {
		rc = embd_ids_from_npy(r->body, r->body_len, ids, &e);
	} else if (strcasecmp(type, "application/octet-stream") == 0) {
		unsigned width = 8;
		if (id_dtype != NULL && strcmp(id_dtype, "int32") == 0)
			width = 4;
		else if (id_dtype != NULL && strcmp(id_dtype, "int64") != 0) {
			embd_reply_error(r, EMBD_EBADPARAM, "id_dtype '%s' is not int32 or int64", id_dtype);
			return -1;
		}
		rc = embd_ids_from_raw(r->body, r->body_len, width, ids, &e);
	} else {
		embd_reply_error(r, EMBD_EMEDIATYPE,
		                 "Content-Type '%s' is not supported; send application/json {\"ids\": [...]}, "
		                 "application/x-npy or application/octet-stream (int64, or int32 with ?id_dtype=int32)",
		                 ct != NULL ? ct : "(none)");
		return -1;
	}
	if (rc != 0) {
		embd_reply_error(r, rc, "%s", e.msg);
		return -1;
	}
	return 0;
}

/* GET /v1/rows?start=&stop= | ?ids=, POST /v1/rows */
static enum MHD_Result h_rows(struct req *r)
{
	if (check_params(r, rows_params) != 0)
		return MHD_YES;
	const embd_matrix_info *m = embd_gen_matrix(r->gen);
	const char *ids_arg = embd_arg(r, "ids");
	int has_slice = embd_arg(r, "start") != NULL || embd_arg(r, "stop") != NULL;
	embd_ids ids;
	int64_t *parsed = NULL;
	struct rows_req q = {NULL, NULL, 0, {0, 0}};
	embd_err e;
	int rc;
	if (r->method == M_POST) {
		if (has_slice || ids_arg != NULL)
			return embd_reply_error(r, EMBD_EBADPARAM,
			                        "a POST names its ids in the body, not in ?ids= or ?start=");
		if (body_ids(r, &ids, &parsed) != 0)
			return MHD_YES;
		q.ids = &ids;
	} else if (ids_arg != NULL) {
		if (has_slice)
			return embd_reply_error(r, EMBD_EBADPARAM, "give either ?ids= or ?start=&stop=, not both");
		if (embd_arg(r, "id_dtype") != NULL)
			return embd_reply_error(r, EMBD_EBADPARAM, "id_dtype goes with a binary POST body");
		size_t n;
		rc = embd_ids_parse_list(ids_arg, strlen(ids_arg), NULL, &n, &e);
		if (rc != 0)
			return embd_reply_error(r, rc, "%s", e.msg);
		if (too_many_ids(r, n, "?ids="))
			return MHD_YES;
		rc = embd_req_alloc(r, n * sizeof(int64_t), (void **)&parsed);
		if (rc != 0)
			return embd_reply_charge_error(r, rc, "the parsed ids");
		rc = embd_ids_parse_list(ids_arg, strlen(ids_arg), parsed, &n, &e);
		if (rc != 0)
			return embd_reply_error(r, rc, "%s", e.msg);
		ids = (embd_ids){(const unsigned char *)parsed, n, 8};
		q.ids = &ids;
	} else if (has_slice) {
		if (embd_arg(r, "id_dtype") != NULL)
			return embd_reply_error(r, EMBD_EBADPARAM, "id_dtype goes with a binary POST body");
		uint64_t start = 0, stop = m->rows;
		if (arg_u64(r, "start", &start) < 0 || arg_u64(r, "stop", &stop) < 0)
			return MHD_YES;
		if (start > stop)
			return embd_reply_error(r, EMBD_EBADSLICE, "start %" PRIu64 " is after stop %" PRIu64, start,
			                        stop);
		if (stop > m->rows)
			return embd_reply_error(r, EMBD_ERANGE,
			                        "stop %" PRIu64 " is past the end: rows are [0, %" PRIu64 ")", stop,
			                        m->rows);
		if (start == stop)
			return embd_reply_error(r, EMBD_EEMPTY, "the slice [%" PRIu64 ", %" PRIu64 ") is empty", start,
			                        stop);
		q.one = (embd_run){start, stop - start};
		q.runs = &q.one;
		q.nruns = 1;
	} else {
		return embd_reply_error(r, EMBD_EBADPARAM,
		                        "name the rows: ?start=A&stop=B, ?ids=3,17,42, /v1/rows/{id} or a POST body");
	}
	if (q.ids != NULL) {
		if (too_many_ids(r, q.ids->n, "the request"))
			return MHD_YES;
		rc = embd_plan_runs(q.ids, m->rows, NULL, &q.nruns, &e);
		if (rc != 0)
			return embd_reply_error(r, rc, "%s", e.msg);
		rc = embd_req_alloc(r, q.nruns * sizeof(embd_run), (void **)&q.runs);
		if (rc != 0)
			return embd_reply_charge_error(r, rc, "the plan");
		embd_plan_runs(q.ids, m->rows, q.runs, &q.nruns, &e);
	}
	enum fmt fmt;
	embd_encode_opts o;
	if (response_opts(r, &fmt, &o) != 0)
		return MHD_YES;
	return send_rows(r, &q, fmt, &o);
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
 * POST /v1/admin/reload[?path=FILE]: load the next generation (bearer token
 * required). The load runs on the reload thread while the connection is
 * suspended: opening a big file with matrix.populate may take seconds, and no
 * request thread waits for it. The job lives in the request's accounted memory.
 */
static enum MHD_Result h_reload(struct req *r)
{
	embd_server *s = r->srv;
	embd_reload_job *j = r->job;
	if (j != NULL) { /* resumed: the reload is done */
		if (j->rc != 0)
			return embd_reply_error(r, EMBD_ERELOAD, "%s", j->msg);
		char esc[700];
		embd_json_escape(esc, sizeof esc, j->msg);
		char *buf;
		size_t cap = sizeof esc + 64;
		int rc = embd_req_alloc(r, cap, (void **)&buf);
		if (rc != 0)
			return embd_reply_charge_error(r, rc, "the response");
		int n = snprintf(buf, cap, "{\"generation\":%" PRIu64 ",\"message\":\"%s\"}", j->generation, esc);
		return embd_reply_buffer(r, 200, "application/json", buf, (size_t)n);
	}
	if (s->admin_token[0] == '\0')
		return embd_reply_error(r, EMBD_ENOTFOUND,
		                        "no such path: %s (the admin endpoints are off: set admin.token_file)", r->url);
	const char *auth = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (auth == NULL || strncmp(auth, "Bearer ", 7) != 0 || !token_equal(auth + 7, s->admin_token))
		return embd_reply_error(r, EMBD_EUNAUTH, "%s",
		                        auth == NULL ? "send Authorization: Bearer <token>" : "wrong token");
	static const char *const params[] = {"path", NULL};
	if (check_params(r, params) != 0)
		return MHD_YES;
	/* No path: reload matrix.path. A path given empty names no file; it never means the demo matrix. */
	const char *path = NULL;
	size_t len = 0;
	if (MHD_lookup_connection_value_n(r->conn, MHD_GET_ARGUMENT_KIND, "path", 4, &path, &len) == MHD_YES) {
		if (path == NULL || len == 0)
			return embd_reply_error(
			    r, EMBD_EBADPARAM,
			    "path is empty: name a matrix file, or leave path out to reload matrix.path");
		if (len >= sizeof s->cfg.matrix_path)
			return embd_reply_error(r, EMBD_EBADPARAM, "path is %zu bytes long; the limit is %zu", len,
			                        sizeof s->cfg.matrix_path - 1);
	}
	int rc = embd_req_alloc(r, sizeof *j, (void **)&j);
	if (rc != 0)
		return embd_reply_charge_error(r, rc, "the reload");
	memset(j, 0, sizeof *j);
	j->path = path;
	j->done = reload_done;
	j->cls = r;
	r->job = j;
	MHD_suspend_connection(r->conn);
	if (embd_reloader_submit(&s->reloader, j) != 0) {
		MHD_resume_connection(r->conn);
		r->job = NULL;
		return embd_reply_error(r, EMBD_ERELOAD, "the server is shutting down; this reload did not run");
	}
	return MHD_YES;
}
