/* Unit tests of the vector operations' request bodies: JSON groups, .npy queries, resolution of ids and tokens. */
#include "fixture.h"

#include <math.h>

#include "npy.h"
#include "vecops.h"
#include "vecreq.h"

static embd_budget budget;
static embd_pool pool;

static int setup(void **state)
{
	(void)state;
	embd_budget_init(&budget, 1 << 24);
	embd_pool_init(&pool, 1 << 20);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	embd_pool_destroy(&pool);
	return 0;
}

static int parse(const char *body, unsigned allowed, uint64_t dim, embd_acct *a, embd_vecreq *q, embd_err *e)
{
	embd_acct_init(a, &budget, &pool, 0);
	return embd_vecreq_parse_json(body, strlen(body), allowed, dim, 100, a, q, e);
}

static void rows_groups(void **state)
{
	(void)state;
	embd_acct a;
	embd_vecreq q;
	embd_err e;
	unsigned similar = EMBD_VQ_ROWS | EMBD_VQ_VECTORS | EMBD_VQ_ANALOGY;
	assert_int_equal(parse("{\"ids\": [3, 0]}", similar, 2, &a, &q, &e), 0);
	assert_int_equal(q.given, EMBD_VQ_IDS);
	assert_int_equal(q.nrefs, 2);
	assert_int_equal(q.refs[0].id, 3);
	assert_null(q.refs[0].tok.p);
	assert_int_equal(embd_acct_close(&a), 0);

	assert_int_equal(parse("{\"tokens\": [\"k\\u00f6ln\", \"a,b\"]}", similar, 2, &a, &q, &e), 0);
	assert_int_equal(q.nrefs, 2);
	assert_string_equal(q.refs[0].tok.p, "k\xc3\xb6ln");
	assert_int_equal(q.refs[0].tok.len, 5);
	assert_int_equal(embd_acct_close(&a), 0);

	assert_int_equal(parse("{\"vectors\": [[1, 0.5], [-2e-3, 3]]}", similar, 2, &a, &q, &e), 0);
	assert_int_equal(q.nvectors, 2);
	assert_true(q.vectors[1] == 0.5f && q.vectors[2] == -2e-3f && q.vectors[3] == 3.0f);
	assert_int_equal(embd_acct_close(&a), 0);

	assert_int_equal(parse("{\"positive\": [\"king\", 7], \"negative\": [\"man\"]}", similar, 2, &a, &q, &e), 0);
	assert_int_equal(q.given, EMBD_VQ_ANALOGY);
	assert_int_equal(q.nrefs, 3);
	assert_int_equal(q.split, 2);
	assert_int_equal(q.refs[1].id, 7);
	assert_string_equal(q.refs[2].tok.p, "man");
	assert_int_equal(embd_acct_close(&a), 0);

	assert_int_equal(parse("{\"positive\": [\"king\"]}", similar, 2, &a, &q, &e), 0); /* negative is optional */
	assert_int_equal(q.split, 1);
	assert_int_equal(embd_acct_close(&a), 0);

	unsigned similarity = EMBD_VQ_PAIRS | EMBD_VQ_SETS;
	assert_int_equal(parse("{\"pairs\": [[\"a\", 1], [2, 3]]}", similarity, 2, &a, &q, &e), 0);
	assert_int_equal(q.nrefs, 4);
	assert_string_equal(q.refs[0].tok.p, "a");
	assert_int_equal(q.refs[3].id, 3);
	assert_int_equal(embd_acct_close(&a), 0);
	assert_int_equal(parse("{\"a\": [1, 2], \"b\": [\"x\"]}", similarity, 2, &a, &q, &e), 0);
	assert_int_equal(q.nrefs, 3);
	assert_int_equal(q.split, 2);
	assert_int_equal(embd_acct_close(&a), 0);

	unsigned pool_keys = EMBD_VQ_ROWS | EMBD_VQ_OP | EMBD_VQ_WEIGHTS;
	assert_int_equal(parse("{\"ids\": [1, 2], \"op\": \"sum\", \"weights\": [0.5, 2]}", pool_keys, 2, &a, &q, &e),
	                 0);
	assert_true(q.sum);
	assert_int_equal(q.nweights, 2);
	assert_true(q.weights[0] == 0.5 && q.weights[1] == 2.0);
	assert_int_equal(embd_acct_close(&a), 0);
}

/* The count pass and the fill pass agree whatever the order of the keys; escapes are decoded into the tokens. */
static void key_order_and_escapes(void **state)
{
	(void)state;
	embd_acct a;
	embd_vecreq q;
	embd_err e;
	enum {
		similar = EMBD_VQ_ROWS | EMBD_VQ_VECTORS | EMBD_VQ_ANALOGY | EMBD_VQ_K,
		pool_keys = EMBD_VQ_ROWS | EMBD_VQ_OP | EMBD_VQ_WEIGHTS
	};
	assert_int_equal(parse(" {\"negative\" : [\"m\\u00e4n\", 4], \"k\": 2,\n\"positive\":[\"\\ud83d\\ude00\"]} ",
	                       similar, 2, &a, &q, &e),
	                 0);
	assert_int_equal(q.given, EMBD_VQ_ANALOGY | EMBD_VQ_K);
	assert_int_equal(q.nrefs, 3);
	assert_int_equal(q.split, 1);
	assert_string_equal(q.refs[0].tok.p, "\xf0\x9f\x98\x80");
	assert_string_equal(q.refs[1].tok.p, "m\xc3\xa4n");
	assert_int_equal(q.refs[1].tok.len, 4);
	assert_int_equal(q.refs[2].id, 4);
	assert_null(q.refs[2].tok.p);
	assert_int_equal(embd_acct_close(&a), 0);
	assert_int_equal(parse("{\"weights\": [-1.5e-3, 2E2], \"op\": \"mean\", \"tokens\": [\"a\", \"b\"]}", pool_keys,
	                       2, &a, &q, &e),
	                 0);
	assert_int_equal(q.nweights, 2);
	assert_true(q.weights[0] == -1.5e-3 && q.weights[1] == 200.0);
	assert_false(q.sum);
	assert_int_equal(embd_acct_close(&a), 0);
	static const struct {
		const char *in;
		unsigned allowed;
		int code;
		const char *msg;
	} cases[] = {
	    {"{\"ids\": [1], \"weights\": [NaN]}", pool_keys, EMBD_EBADBODY,
	     "weights[0] is NaN or an infinity; weights must be finite"},
	    {"{\"ids\": [99999999999999999999]}", EMBD_VQ_ROWS, EMBD_EBADID, "ids[0] does not fit in a 64-bit id"},
	    {"{\"ids\": [1.0]}", EMBD_VQ_ROWS, EMBD_EJSONTYPE, "ids[0] is 1.0, not an integer"},
	    {"{\"ids\": [01]}", EMBD_VQ_ROWS, EMBD_EJSON, "malformed JSON at byte 9: a number has a leading zero"},
	    {"{\"ids\": [1]} x", EMBD_VQ_ROWS, EMBD_EJSON, "malformed JSON at byte 13: data after the object"},
	    {"{\"ids\": [1] \"k\": 1}", EMBD_VQ_ROWS, EMBD_EJSON, "malformed JSON at byte 12: expected ',' or '}'"},
	    {"{\"ids\": [1", EMBD_VQ_ROWS, EMBD_EJSON, "malformed JSON: the body ends where ',' or ']' was expected"},
	    {"{\"ids\": [1], \"k\": 99999999999999999999}", similar, EMBD_EBADPARAM,
	     "\"k\" does not fit in 64 bits; it is a non-negative integer"},
	    {"{\"ids\": [1], \"k\": tru}", similar, EMBD_EJSONTYPE, "\"k\" is a boolean; it is a non-negative integer"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int rc = parse(cases[i].in, cases[i].allowed, 2, &a, &q, &e);
		if (rc != cases[i].code || strcmp(e.msg, cases[i].msg) != 0)
			fail_msg("'%s': got %d '%s', want %d '%s'", cases[i].in, rc, e.msg, cases[i].code,
			         cases[i].msg);
		assert_int_equal(embd_acct_close(&a), 0);
	}
}

static void json_errors(void **state)
{
	(void)state;
	enum {
		similar = EMBD_VQ_ROWS | EMBD_VQ_VECTORS | EMBD_VQ_ANALOGY,
		pool_keys = EMBD_VQ_ROWS | EMBD_VQ_OP | EMBD_VQ_WEIGHTS
	};
	static const struct {
		const char *in;
		unsigned allowed;
		int code;
		const char *fragment;
	} cases[] = {
	    {"", EMBD_VQ_ROWS, EMBD_EJSON, "empty"},
	    {"{\"ids\": [1,}", EMBD_VQ_ROWS, EMBD_EJSON, "malformed JSON at byte"},
	    {"[[[[[[[[[[1]]]]]]]]]]", EMBD_VQ_ROWS, EMBD_EJSONTYPE, "the body is an array"},
	    {"{\"vectors\": [[[[[[[[[[1]]]]]]]]]]}", similar, EMBD_EJSONTYPE, "vectors[0][0] is an array"},
	    {"[1]", EMBD_VQ_ROWS, EMBD_EJSONTYPE, "the body is an array"},
	    {"{\"ids\": [1], \"ids\": [2]}", EMBD_VQ_ROWS, EMBD_EBADBODY, "\"ids\" appears twice"},
	    {"{}", similar, EMBD_EBADBODY, "names no rows"},
	    {"{\"ids\": [1], \"tokens\": [\"a\"]}", similar, EMBD_EBADBODY, "two ways"},
	    {"{\"pairs\": [[1, 2]]}", similar, EMBD_EBADBODY, "unknown key \"pairs\""},
	    {"{\"ids\": []}", similar, EMBD_EEMPTY, "\"ids\" is an empty list"},
	    {"{\"ids\": 3}", similar, EMBD_EJSONTYPE, "\"ids\" is an integer"},
	    {"{\"ids\": [-1]}", similar, EMBD_EBADID, "ids[0] is -1"},
	    {"{\"ids\": [\"king\"]}", similar, EMBD_EJSONTYPE, "ids[0] is a string; rows are named by id"},
	    {"{\"tokens\": [1]}", similar, EMBD_EJSONTYPE, "tokens[0] is an integer"},
	    {"{\"tokens\": [\"\"]}", similar, EMBD_EBADTOKEN, "tokens[0] is empty"},
	    {"{\"tokens\": [\"a\\u0000b\"]}", similar, EMBD_EBADTOKEN, "holds a NUL"},
	    {"{\"tokens\": [\"\xff\"]}", similar, EMBD_EBADTOKEN, "tokens[0] is not valid UTF-8"},
	    {"{\"vectors\": [[1, 2, 3]]}", similar, EMBD_EBADVECTOR, "vectors[0] has 3 numbers; the rows have 2"},
	    {"{\"vectors\": [[1, \"a\"]]}", similar, EMBD_EJSONTYPE, "vectors[0][1] is a string"},
	    {"{\"vectors\": [[1, 1e39]]}", similar, EMBD_EBADVECTOR, "vectors[0][1] is 1e+39, past float32"},
	    {"{\"vectors\": [1, 2]}", similar, EMBD_EJSONTYPE, "vectors[0] is an integer"},
	    {"{\"positive\": []}", similar, EMBD_EEMPTY, "\"positive\" and \"negative\" name no rows"},
	    {"{\"positive\": [], \"negative\": []}", similar, EMBD_EEMPTY, "name no rows"},
	    {"{\"positive\": [\"a\"], \"negative\": 1}", similar, EMBD_EJSONTYPE, "\"negative\" is an integer"},
	    {"{\"positive\": [null]}", similar, EMBD_EJSONTYPE, "positive[0] is null"},
	    {"{\"a\": [1]}", EMBD_VQ_SETS, EMBD_EBADBODY, "\"b\" is missing"},
	    {"{\"a\": [1], \"b\": []}", EMBD_VQ_SETS, EMBD_EEMPTY, "\"b\" is an empty list"},
	    {"{\"pairs\": [[1]]}", EMBD_VQ_PAIRS, EMBD_EJSONTYPE, "pairs[0] is not two rows"},
	    {"{\"pairs\": [1]}", EMBD_VQ_PAIRS, EMBD_EJSONTYPE, "pairs[0] is an integer"},
	    {"{\"ids\": [1], \"op\": \"max\"}", pool_keys, EMBD_EBADBODY, "\"op\" is not \"mean\" or \"sum\""},
	    {"{\"ids\": [1], \"op\": 1}", pool_keys, EMBD_EJSONTYPE, "\"op\" is an integer"},
	    {"{\"ids\": [1, 2], \"weights\": [1]}", pool_keys, EMBD_EBADBODY, "1 weights for 2 rows"},
	    {"{\"ids\": [1], \"weights\": [true]}", pool_keys, EMBD_EJSONTYPE, "weights[0] is a boolean"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		embd_acct a;
		embd_vecreq q;
		embd_err e = {{0}};
		int rc = parse(cases[i].in, cases[i].allowed, 2, &a, &q, &e);
		if (rc != cases[i].code || strstr(e.msg, cases[i].fragment) == NULL)
			fail_msg("'%s': got %d '%s', want %d '%s'", cases[i].in, rc, e.msg, cases[i].code,
			         cases[i].fragment);
		assert_int_equal(embd_acct_close(&a), 0);
	}
}

/* "k", "metric" and "include_self" in a body, as the query string has them: users write them there. */
static void topk_options(void **state)
{
	(void)state;
	enum { similar = EMBD_VQ_ROWS | EMBD_VQ_VECTORS | EMBD_VQ_K | EMBD_VQ_METRIC | EMBD_VQ_INCLUDE_SELF };
	embd_acct a;
	embd_vecreq q;
	embd_err e;
	assert_int_equal(
	    parse("{\"ids\": [1], \"k\": 3, \"metric\": \"dot\", \"include_self\": true}", similar, 2, &a, &q, &e), 0);
	assert_int_equal(q.given, EMBD_VQ_IDS | EMBD_VQ_K | EMBD_VQ_METRIC | EMBD_VQ_INCLUDE_SELF);
	assert_int_equal(q.k, 3);
	assert_int_equal(q.metric, EMBD_METRIC_DOT);
	assert_int_equal(q.include_self, 1);
	assert_int_equal(embd_acct_close(&a), 0);
	assert_int_equal(
	    parse("{\"k\": 0, \"metric\": \"cosine\", \"include_self\": 0, \"ids\": [1]}", similar, 2, &a, &q, &e), 0);
	assert_int_equal(q.given, EMBD_VQ_IDS | EMBD_VQ_K | EMBD_VQ_METRIC | EMBD_VQ_INCLUDE_SELF);
	assert_int_equal(q.k, 0);
	assert_int_equal(q.metric, EMBD_METRIC_COSINE);
	assert_int_equal(q.include_self, 0);
	assert_int_equal(embd_acct_close(&a), 0);
	assert_int_equal(parse("{\"ids\": [1], \"include_self\": 1}", similar, 2, &a, &q, &e), 0);
	assert_int_equal(q.given, EMBD_VQ_IDS | EMBD_VQ_INCLUDE_SELF);
	assert_int_equal(q.include_self, 1);
	assert_int_equal(q.k, 0); /* not given: the route's default */
	assert_int_equal(embd_acct_close(&a), 0);

	static const struct {
		const char *in;
		int code;
		const char *msg;
	} cases[] = {
	    {"{\"ids\": [1], \"k\": \"3\"}", EMBD_EJSONTYPE, "\"k\" is a string; it is a non-negative integer"},
	    {"{\"ids\": [1], \"k\": 2.5}", EMBD_EJSONTYPE,
	     "\"k\" is a number with a fraction; it is a non-negative integer"},
	    {"{\"ids\": [1], \"k\": -1}", EMBD_EBADPARAM, "\"k\" is -1; it is a non-negative integer"},
	    {"{\"ids\": [1], \"metric\": 1}", EMBD_EJSONTYPE, "\"metric\" is an integer; it is \"cosine\" or \"dot\""},
	    {"{\"ids\": [1], \"metric\": \"l2\"}", EMBD_EBADPARAM, "\"metric\" 'l2' is not \"cosine\" or \"dot\""},
	    {"{\"ids\": [1], \"metric\": \"dot\\u0000x\"}", EMBD_EBADPARAM,
	     "\"metric\" 'dot?x' is not \"cosine\" or \"dot\""},
	    {"{\"ids\": [1], \"include_self\": \"yes\"}", EMBD_EJSONTYPE,
	     "\"include_self\" is a string; it is true or false (or 1 or 0)"},
	    {"{\"ids\": [1], \"include_self\": 2}", EMBD_EBADPARAM,
	     "\"include_self\" is 2; it is true or false (or 1 or 0)"},
	    {"{\"ids\": [1], \"include_self\": null}", EMBD_EJSONTYPE,
	     "\"include_self\" is null; it is true or false (or 1 or 0)"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int rc = parse(cases[i].in, similar, 2, &a, &q, &e);
		if (rc != cases[i].code || strcmp(e.msg, cases[i].msg) != 0)
			fail_msg("'%s': got %d '%s', want %d '%s'", cases[i].in, rc, e.msg, cases[i].code,
			         cases[i].msg);
		assert_int_equal(embd_acct_close(&a), 0);
	}
	/* A route that does not take them still refuses them, naming what it takes. */
	assert_int_equal(parse("{\"ids\": [1], \"k\": 3}", EMBD_VQ_ROWS, 2, &a, &q, &e), EMBD_EBADBODY);
	assert_string_equal(e.msg, "unknown key \"k\"; this body takes \"ids\", \"tokens\"");
	assert_int_equal(embd_acct_close(&a), 0);
}

/* A query vector that is NaN or an infinity is a bad vector, named by its index, in JSON as in .npy. */
static void nonfinite_queries(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int code;
		const char *msg;
	} cases[] = {
	    /* What Python's json.dumps writes for NaN and the infinities, and a number past a double. */
	    {"{\"vectors\": [[1, 2], [1, NaN]]}", EMBD_EBADVECTOR,
	     "vectors[1][1] is NaN, an infinity or past a double's range; query vectors must be finite"},
	    {"{\"vectors\": [[Infinity, 2]]}", EMBD_EBADVECTOR,
	     "vectors[0][0] is NaN, an infinity or past a double's range; query vectors must be finite"},
	    {"{\"vectors\":[[1,2],[3,4],[-Infinity,0]]}", EMBD_EBADVECTOR,
	     "vectors[2][0] is NaN, an infinity or past a double's range; query vectors must be finite"},
	    {"{\"k\": 1, \"vectors\": [[0, 1e400]]}", EMBD_EBADVECTOR,
	     "vectors[0][1] is NaN, an infinity or past a double's range; query vectors must be finite"},
	    /* Elsewhere it stays malformed JSON. */
	    {"{\"ids\": [NaN]}", EMBD_EJSON, "malformed JSON at byte 9: expected a JSON value"},
	    {"{\"vectors\": [NaN]}", EMBD_EJSON, "malformed JSON at byte 13: expected a JSON value"},
	    {"{\"vectors\": [[1, 2], [Nope]]}", EMBD_EJSON, "malformed JSON at byte 22: expected a digit"},
	};
	enum { similar = EMBD_VQ_ROWS | EMBD_VQ_VECTORS | EMBD_VQ_K };
	embd_acct a;
	embd_vecreq q;
	embd_err e;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int rc = parse(cases[i].in, similar, 2, &a, &q, &e);
		if (rc != cases[i].code || strcmp(e.msg, cases[i].msg) != 0)
			fail_msg("'%s': got %d '%s', want %d '%s'", cases[i].in, rc, e.msg, cases[i].code,
			         cases[i].msg);
		assert_int_equal(embd_acct_close(&a), 0);
	}
	unsigned char buf[256];
	float v[2][2] = {{1, 2}, {3, 0}};
	v[1][1] = NAN;
	size_t n = npy_header_v1(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }");
	memcpy(buf + n, v, sizeof v);
	embd_acct_init(&a, &budget, &pool, 0);
	assert_int_equal(embd_vecreq_parse_npy(buf, n + sizeof v, 2, 100, &a, &q, &e), EMBD_EBADVECTOR);
	assert_string_equal(e.msg, "query vectors[1][1] is NaN or an infinity; query vectors must be finite");
	uint16_t h[2] = {0x7c00, 0x3c00}; /* float16 +inf, 1 */
	n = npy_header_v1(buf, "{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }");
	memcpy(buf + n, h, sizeof h);
	assert_int_equal(embd_vecreq_parse_npy(buf, n + sizeof h, 2, 100, &a, &q, &e), EMBD_EBADVECTOR);
	assert_string_equal(e.msg, "query vectors[0][0] is NaN or an infinity; query vectors must be finite");
	assert_int_equal(embd_acct_close(&a), 0);
}

static void max_items(void **state)
{
	(void)state;
	embd_acct a;
	embd_vecreq q;
	embd_err e;
	embd_acct_init(&a, &budget, &pool, 0);
	const char *body = "{\"ids\": [1, 2, 3]}";
	assert_int_equal(embd_vecreq_parse_json(body, strlen(body), EMBD_VQ_ROWS, 2, 2, &a, &q, &e), EMBD_ETOOMANYIDS);
	assert_non_null(strstr(e.msg, "3 ids; limits.max_ids is 2"));
	body = "{\"pairs\": [[1, 2], [3, 4]]}";
	assert_int_equal(embd_vecreq_parse_json(body, strlen(body), EMBD_VQ_PAIRS, 2, 3, &a, &q, &e), EMBD_ETOOMANYIDS);
	assert_int_equal(embd_acct_close(&a), 0);
	/* Over the request's memory limit: the accountant's error. */
	embd_acct_init(&a, &budget, &pool, 64);
	body = "{\"vectors\": [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16], [17, 18]]}";
	assert_int_equal(embd_vecreq_parse_json(body, strlen(body), EMBD_VQ_VECTORS, 2, 100, &a, &q, &e), EMBD_ETOOBIG);
	assert_int_equal(embd_acct_close(&a), 0);
}

static void npy_queries(void **state)
{
	(void)state;
	unsigned char buf[512];
	float v[2][3] = {{1, 2, 3}, {-0.5f, 0, 7}};
	size_t n = npy_header_v1(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
	memcpy(buf + n, v, sizeof v);
	embd_acct a;
	embd_vecreq q;
	embd_err e;
	embd_acct_init(&a, &budget, &pool, 0);
	assert_int_equal(embd_vecreq_parse_npy(buf, n + sizeof v, 3, 100, &a, &q, &e), 0);
	assert_int_equal(q.nvectors, 2);
	assert_memory_equal(q.vectors, v, sizeof v);
	assert_int_equal(embd_vecreq_parse_npy(buf, n + sizeof v, 4, 100, &a, &q, &e), EMBD_EBADVECTOR);
	assert_int_equal(embd_vecreq_parse_npy(buf, n + sizeof v - 1, 3, 100, &a, &q, &e), EMBD_EBADBODY);
	assert_int_equal(embd_vecreq_parse_npy(buf, n + sizeof v, 3, 1, &a, &q, &e), EMBD_ETOOMANYIDS);
	/* One vector as (dim,), float16. */
	uint16_t h[3] = {0x3c00, 0xc000, 0x3800}; /* 1, -2, 0.5 */
	n = npy_header_v1(buf, "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }");
	memcpy(buf + n, h, sizeof h);
	assert_int_equal(embd_vecreq_parse_npy(buf, n + sizeof h, 3, 100, &a, &q, &e), 0);
	assert_int_equal(q.nvectors, 1);
	assert_true(q.vectors[0] == 1.0f && q.vectors[1] == -2.0f && q.vectors[2] == 0.5f);
	n = npy_header_v1(buf, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }");
	assert_int_equal(embd_vecreq_parse_npy(buf, n + 24, 3, 100, &a, &q, &e), EMBD_EBADBODY);
	assert_non_null(strstr(e.msg, "float32 or float16"));
	assert_int_equal(embd_acct_close(&a), 0);
}

static void resolve(void **state)
{
	(void)state;
	static const char words[] = "the\nking\nqueen\n";
	embd_vocab *v;
	embd_err e;
	assert_int_equal(embd_vocab_parse(words, sizeof words - 1, 3, &v, &e), 0);
	embd_acct a;
	embd_acct_init(&a, &budget, &pool, 0);
	embd_ref refs[3] = {{2, {NULL, 0}}, {-1, {"king", 4}}, {0, {NULL, 0}}};
	int64_t ids[3];
	assert_int_equal(embd_vecreq_resolve(v, 3, refs, 3, EMBD_OOV_ERROR, ids, &a, &e), 0);
	assert_true(ids[0] == 2 && ids[1] == 1 && ids[2] == 0);
	refs[1].tok = (embd_token){"kong", 4};
	assert_int_equal(embd_vecreq_resolve(v, 3, refs, 3, EMBD_OOV_ERROR, ids, &a, &e), EMBD_ETOKEN);
	assert_string_equal(e.msg, "1 token is not in the vocabulary: 'kong'");
	/* ?oov=skip: the unknown token keeps its place, as EMBD_VOCAB_NONE. */
	ids[1] = 7;
	assert_int_equal(embd_vecreq_resolve(v, 3, refs, 3, EMBD_OOV_SKIP, ids, &a, &e), 0);
	assert_true(ids[0] == 2 && ids[1] == EMBD_VOCAB_NONE && ids[2] == 0);
	assert_int_equal(embd_vecreq_resolve(NULL, 3, refs, 3, EMBD_OOV_ERROR, ids, &a, &e), EMBD_ENOVOCAB);
	refs[0].id = 3;
	assert_int_equal(embd_vecreq_resolve(v, 3, refs, 3, EMBD_OOV_ERROR, ids, &a, &e), EMBD_ERANGE);
	assert_non_null(strstr(e.msg, "id 3 is out of range [0, 3)"));
	assert_int_equal(embd_acct_close(&a), 0);
	embd_vocab_free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(rows_groups),  cmocka_unit_test(key_order_and_escapes),
	    cmocka_unit_test(json_errors),  cmocka_unit_test(max_items),
	    cmocka_unit_test(topk_options), cmocka_unit_test(nonfinite_queries),
	    cmocka_unit_test(npy_queries),  cmocka_unit_test(resolve),
	};
	return cmocka_run_group_tests_name("vecreq", tests, setup, teardown);
}
