/* The response builder: segments that are views into the mapping or buffers the accountant owns. */
#include "resp.h"

#include <string.h>

#include "npy.h"

const char *const embd_wire_types[EMBD_WIRE_COUNT] = {"application/json", "application/octet-stream",
                                                      "application/x-npy"};
static const char *const wire_names[EMBD_WIRE_COUNT] = {"json", "bin", "npy"};

const char *embd_wire_name(embd_wire w)
{
	return wire_names[w];
}

const char *embd_wire_type(embd_wire w)
{
	return embd_wire_types[w];
}

int embd_wire_parse(const char *name, embd_wire *out)
{
	for (int i = 0; i < EMBD_WIRE_COUNT; i++) {
		if (strcmp(name, wire_names[i]) == 0) {
			*out = (embd_wire)i;
			return 0;
		}
	}
	return EMBD_EBADPARAM;
}

void embd_resp_init(embd_resp *b, embd_acct *acct)
{
	b->acct = acct;
	b->segs = b->inline_segs;
	b->nsegs = 0;
	b->cap = EMBD_RESP_INLINE_SEGS;
	b->len = 0;
	b->copied = 0;
	b->reserved = 0;
}

static int alloc(embd_resp *b, size_t n, void **out)
{
	return b->reserved ? embd_acct_alloc_reserved(b->acct, n, out) : embd_acct_alloc(b->acct, n, out);
}

/* Room for one more segment: the inline ones first, then an accounted array that doubles. */
static int reserve(embd_resp *b)
{
	if (b->nsegs < b->cap)
		return 0;
	embd_seg *more;
	int rc = alloc(b, 2 * b->cap * sizeof *more, (void **)&more);
	if (rc != 0)
		return rc;
	memcpy(more, b->segs, b->nsegs * sizeof *more);
	if (b->segs != b->inline_segs)
		embd_acct_free(b->acct, b->segs);
	b->segs = more;
	b->cap *= 2;
	return 0;
}

int embd_resp_view(embd_resp *b, const void *p, size_t n)
{
	int rc = reserve(b);
	if (rc != 0)
		return rc;
	b->segs[b->nsegs++] = (embd_seg){p, n};
	b->len += n;
	return 0;
}

int embd_resp_buffer(embd_resp *b, size_t n, void **out)
{
	int rc = reserve(b);
	if (rc != 0)
		return rc;
	rc = alloc(b, n, out);
	if (rc != 0)
		return rc;
	b->segs[b->nsegs++] = (embd_seg){*out, n};
	b->len += n;
	b->copied += n;
	return 0;
}

int embd_resp_copy(embd_resp *b, const void *p, size_t n)
{
	void *dst;
	int rc = embd_resp_buffer(b, n, &dst);
	if (rc == 0)
		memcpy(dst, p, n);
	return rc;
}

void embd_resp_shrink_last(embd_resp *b, size_t n)
{
	embd_seg *s = &b->segs[b->nsegs - 1];
	b->len -= s->len - n;
	b->copied -= s->len - n;
	s->len = n;
}

embd_path embd_resp_path(const embd_resp *b)
{
	return b->copied < b->len ? EMBD_PATH_ZEROCOPY : EMBD_PATH_GATHER;
}

int embd_resp_rows(embd_resp *b, const embd_matrix_info *m, const embd_plan_cfg *plan, const embd_rows_query *q,
                   embd_err *e)
{
	const embd_encode_opts *o = &q->opts;
	uint64_t nrows = embd_plan_rows(q->runs, q->nruns);
	int transform = q->wire == EMBD_WIRE_JSON || embd_encode_transforms(m, o);
	embd_path path = q->gather || embd_plan_has_zero(q->runs, q->nruns)
	                     ? EMBD_PATH_GATHER
	                     : embd_plan_choose(plan, q->nruns, nrows, m->row_bytes, transform);
	float *scratch = NULL;
	int rc;
	if (transform && (rc = embd_acct_alloc(b->acct, m->dim * sizeof(float), (void **)&scratch)) != 0)
		return embd_err_set(e, rc, "a row of scratch space");
	if (q->wire == EMBD_WIRE_JSON) {
		uint64_t bound = embd_json_rows_bound(nrows, m->dim, q->ids != NULL ? q->ids->n : 0);
		if (q->tokens != NULL && bound != UINT64_MAX)
			bound += embd_tokens_json_bound(q->tokens, q->ntokens);
		char *buf;
		/* One more byte for the newline that ends every JSON body. */
		rc = bound >= SIZE_MAX ? EMBD_ETOOBIG : embd_resp_buffer(b, (size_t)bound + 1, (void **)&buf);
		if (rc != 0)
			return embd_err_set(e, rc, "the JSON response");
		size_t n = embd_json_rows_write(buf, m, q->runs, q->nruns, q->ids, q->tokens, q->ntokens, o, scratch);
		buf[n] = '\n';
		embd_resp_shrink_last(b, n + 1);
		return 0;
	}
	if (q->wire == EMBD_WIRE_NPY) {
		uint64_t shape[2] = {nrows, m->dim};
		char hdr[128];
		size_t n = embd_npy_header_write(hdr, sizeof hdr, embd_dtype_npy_descr(o->dtype), shape, 2);
		if ((rc = embd_resp_copy(b, hdr, n)) != 0)
			return embd_err_set(e, rc, "the .npy header");
	}
	if (path == EMBD_PATH_ZEROCOPY) {
		for (size_t i = 0; i < q->nruns; i++) {
			rc = embd_resp_view(b, m->data + q->runs[i].start * m->row_bytes,
			                    (size_t)q->runs[i].count * m->row_bytes);
			if (rc != 0)
				return embd_err_set(e, rc, "the I/O vector");
		}
		return 0;
	}
	uint64_t data_len = nrows * m->dim * embd_dtype_size(o->dtype);
	void *buf;
	rc = data_len > SIZE_MAX ? EMBD_ETOOBIG : embd_resp_buffer(b, (size_t)data_len, &buf);
	if (rc != 0)
		return embd_err_set(e, rc, "the gathered rows");
	if (transform)
		embd_rows_convert(buf, m, q->runs, q->nruns, o, scratch);
	else
		embd_plan_gather(m, q->runs, q->nruns, buf);
	return 0;
}
