/* libFuzzer target: bodies of the vector operations (JSON and .npy), parsed and resolved as the server does. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"
#include "vecreq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static embd_vocab *vocab;
static embd_budget budget;
static embd_pool pool;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (vocab == NULL) {
		static const char words[] = "the\nking\nqueen\nk\xc3\xb6ln\na,b\n";
		embd_err e;
		if (embd_vocab_parse(words, sizeof words - 1, 0, &vocab, &e) != 0)
			abort();
		embd_budget_init(&budget, 1 << 26);
		embd_pool_init(&pool, 1 << 20);
	}
	/* The first byte picks the keys a route allows and the dim; the rest is the body. */
	if (size == 0)
		return 0;
	/* A route that takes vectors takes the top-k options too, as POST /v1/similar does. */
	unsigned allowed = data[0] | (EMBD_VQ_IDS);
	if (allowed & EMBD_VQ_VECTORS)
		allowed |= EMBD_VQ_K | EMBD_VQ_METRIC | EMBD_VQ_INCLUDE_SELF;
	uint64_t dim = 1 + (data[0] & 3);
	data++;
	size--;
	embd_acct a;
	embd_acct_init(&a, &budget, &pool, 1 << 22);
	embd_vecreq q;
	embd_err e;
	if (embd_vecreq_parse_json((const char *)data, size, allowed, dim, 1000, &a, &q, &e) == 0) {
		if ((q.given & ~allowed) != 0 || ((q.given & EMBD_VQ_METRIC) == 0 && q.metric != 0) || q.include_self > 1 || (q.nweights != 0 && q.nweights != q.nrefs) || q.split > q.nrefs)
			abort();
		for (size_t i = 0; i < q.nrefs; i++)
			if (q.refs[i].tok.p != NULL && (q.refs[i].tok.len == 0 || q.refs[i].tok.p[q.refs[i].tok.len] != '\0' ||
			                                embd_utf8_valid_len(q.refs[i].tok.p, q.refs[i].tok.len) != q.refs[i].tok.len))
				abort();
		volatile float sink = 0;
		for (size_t i = 0; i < q.nvectors * dim; i++)
			sink += q.vectors[i];
		if (q.nrefs > 0) {
			int64_t *ids = malloc(q.nrefs * sizeof *ids);
			(void)embd_vecreq_resolve(vocab, 5, q.refs, q.nrefs, EMBD_OOV_ERROR, ids, &a, &e);
			free(ids);
		}
	} else if (e.msg[0] == '\0') {
		abort();
	}
	if (embd_vecreq_parse_npy(data, size, dim, 1000, &a, &q, &e) == 0 && q.nvectors == 0)
		abort();
	if (embd_acct_close(&a) != 0)
		abort(); /* everything was the accountant's, and it gave everything back */
	return 0;
}
