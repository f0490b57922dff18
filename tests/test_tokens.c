/* Unit tests of token lists (query strings, JSON bodies), their look-up, the OOV policies and zero rows. */
#include "fixture.h"

#include "encode.h"
#include "ids.h"
#include "plan.h"
#include "tokens.h"
#include "vocab.h"

/* A vocabulary of "the", "king", "queen", "köln", "a,b" (rows 0..4). */
static embd_vocab *small_vocab(void)
{
	static const char text[] = "the\nking\nqueen\nk\xc3\xb6ln\na,b\n";
	embd_vocab *v;
	embd_err e;
	assert_int_equal(embd_vocab_parse(text, sizeof text - 1, 5, &v, &e), 0);
	return v;
}

/* Both passes of the list parser; *n tokens into out and arena. */
static int parse_list(const char *s, embd_token *out, char *arena, size_t *n, embd_err *e)
{
	size_t bytes = 0;
	int rc = embd_tokens_parse_list(s, strlen(s), NULL, NULL, n, &bytes, e);
	if (rc != 0)
		return rc;
	assert_true(bytes <= 256);
	return embd_tokens_parse_list(s, strlen(s), out, arena, n, &bytes, e);
}

static void list_ok(void **state)
{
	(void)state;
	embd_token t[8];
	char arena[256];
	size_t n = 0;
	embd_err e;
	assert_int_equal(parse_list("king,queen, the", t, arena, &n, &e), 0);
	assert_int_equal(n, 3);
	assert_string_equal(t[0].p, "king");
	assert_int_equal(t[1].len, 5);
	assert_string_equal(t[2].p, " the"); /* spaces belong to the token */
	assert_int_equal(parse_list("k\xc3\xb6ln", t, arena, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_int_equal(t[0].len, 5);
}

static void list_errors(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int code;
		const char *fragment;
	} cases[] = {
	    {"", EMBD_EEMPTY, "empty"},
	    {"a,,b", EMBD_EBADTOKEN, "tokens[1] is empty"},
	    {",a", EMBD_EBADTOKEN, "tokens[0] is empty"},
	    {"a,", EMBD_EBADTOKEN, "tokens[1] is empty"},
	    {"a,\xff", EMBD_EBADTOKEN, "tokens[1] is not valid UTF-8"},
	    {"\xc0\xaf", EMBD_EBADTOKEN, "not valid UTF-8"},     /* overlong '/' */
	    {"\xed\xa0\x80", EMBD_EBADTOKEN, "not valid UTF-8"}, /* a surrogate */
	    {"\xf4\x90\x80\x80", EMBD_EBADTOKEN, "not valid UTF-8"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		embd_token t[8];
		char arena[256];
		size_t n = 99;
		embd_err e = {{0}};
		int rc = parse_list(cases[i].in, t, arena, &n, &e);
		if (rc != cases[i].code || strstr(e.msg, cases[i].fragment) == NULL || n != 0)
			fail_msg("'%s': got %d '%s' n=%zu, want %d '%s'", cases[i].in, rc, e.msg, n, cases[i].code,
			         cases[i].fragment);
	}
	/* A NUL inside the value (len covers it) is refused, not cut short. */
	size_t n, bytes;
	embd_err e;
	assert_int_equal(embd_tokens_parse_list("a\0b", 3, NULL, NULL, &n, &bytes, &e), EMBD_EBADTOKEN);
	assert_non_null(strstr(e.msg, "NUL"));
}

/* Both passes of the JSON batch parser. */
static int parse_json(const char *s, embd_batch *b, embd_token *toks, char *arena, int64_t *ids, embd_err *e)
{
	*b = (embd_batch){0};
	int rc = embd_batch_parse_json(s, strlen(s), b, e);
	if (rc != 0)
		return rc;
	size_t n = b->n;
	if (b->tokens) {
		assert_true(b->bytes <= 256);
		b->toks = toks;
		b->arena = arena;
	} else {
		b->ids = ids;
	}
	rc = embd_batch_parse_json(s, strlen(s), b, e);
	assert_int_equal(b->n, n); /* the passes agree */
	return rc;
}

static void json_tokens(void **state)
{
	(void)state;
	embd_batch b;
	embd_token t[8];
	char arena[256];
	int64_t ids[8];
	embd_err e;
	assert_int_equal(
	    parse_json("{\"tokens\": [\"king\", \"k\\u00f6ln\", \"a,b\", \"\\ud83d\\ude00\", \"q\\\"\\n\"]}", &b, t,
	               arena, ids, &e),
	    0);
	assert_true(b.tokens);
	assert_int_equal(b.n, 5);
	assert_string_equal(t[0].p, "king");
	assert_string_equal(t[1].p, "k\xc3\xb6ln");
	assert_int_equal(t[1].len, 5);
	assert_string_equal(t[2].p, "a,b");
	assert_string_equal(t[3].p, "\xf0\x9f\x98\x80"); /* a surrogate pair is one code point */
	assert_string_equal(t[4].p, "q\"\n");
	/* Raw UTF-8 passes as it is. */
	assert_int_equal(parse_json("{\"tokens\":[\"\xe6\x9d\xb1\xe4\xba\xac\"]}", &b, t, arena, ids, &e), 0);
	assert_string_equal(t[0].p, "\xe6\x9d\xb1\xe4\xba\xac");
	/* The same parser still reads ids. */
	assert_int_equal(parse_json("{\"ids\":[4,2]}", &b, t, arena, ids, &e), 0);
	assert_false(b.tokens);
	assert_int_equal(b.n, 2);
	assert_int_equal(ids[1], 2);
}

static void json_token_errors(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int code;
		const char *fragment;
	} cases[] = {
	    {"{\"tokens\":[]}", EMBD_EEMPTY, "\"tokens\" is an empty list"},
	    {"{\"tokens\":[\"\"]}", EMBD_EBADTOKEN, "tokens[0] is empty"},
	    {"{\"tokens\":[\"a\",\"\\u0000\"]}", EMBD_EBADTOKEN, "tokens[1] holds a NUL"},
	    {"{\"tokens\":[\"\\ud800\"]}", EMBD_EBADTOKEN, "lone high surrogate"},
	    {"{\"tokens\":[\"\\ud800\\u0041\"]}", EMBD_EBADTOKEN, "lone high surrogate"},
	    {"{\"tokens\":[\"\\udc00\"]}", EMBD_EBADTOKEN, "lone low surrogate"},
	    {"{\"tokens\":[\"\xff\"]}", EMBD_EBADTOKEN, "not valid UTF-8"},
	    {"{\"tokens\":[\"\xc3\"]}", EMBD_EBADTOKEN, "not valid UTF-8"},
	    {"{\"tokens\":[3]}", EMBD_EJSONTYPE, "tokens[0] is a number"},
	    {"{\"tokens\":[\"a\",null]}", EMBD_EJSONTYPE, "tokens[1] is null"},
	    {"{\"tokens\":\"a\"}", EMBD_EJSONTYPE, "\"tokens\" is a string"},
	    {"{\"tokens\":[\"a\"],\"ids\":[1]}", EMBD_EBADBODY, "not both"},
	    {"{\"tokens\":[\"a\"],\"tokens\":[\"b\"]}", EMBD_EBADBODY, "appears twice"},
	    {"{\"tokens\":[\"a\\x\"]}", EMBD_EJSON, "a valid escape"},
	    {"{\"tokens\":[\"a\\u12\"]}", EMBD_EJSON, "four hex digits"},
	    {"{\"tokens\":[\"a\nb\"]}", EMBD_EJSON, "control character"},
	    {"{\"tokens\":[\"a\"", EMBD_EJSON, "the body ends"},
	    {"{\"tokens\":[\"a", EMBD_EJSON, "closing"},
	    {"{}", EMBD_EBADBODY, "no \"ids\" or \"tokens\""},
	    {"{\"words\":[\"a\"]}", EMBD_EBADBODY, "unknown key \"words\""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		embd_batch b;
		embd_token t[8];
		char arena[256];
		int64_t ids[8];
		embd_err e = {{0}};
		int rc = parse_json(cases[i].in, &b, t, arena, ids, &e);
		if (rc != cases[i].code || strstr(e.msg, cases[i].fragment) == NULL || b.n != 0)
			fail_msg("'%s': got %d '%s', want %d '%s'", cases[i].in, rc, e.msg, cases[i].code,
			         cases[i].fragment);
	}
	/* The ids-only parser does not take tokens. */
	size_t n;
	embd_err e;
	assert_int_equal(embd_ids_parse_json("{\"tokens\":[\"a\"]}", 16, NULL, &n, &e), EMBD_EBADBODY);
}

static embd_token tok(const char *s)
{
	return (embd_token){s, strlen(s)};
}

static void resolve_policies(void **state)
{
	(void)state;
	embd_vocab *v = small_vocab();
	embd_token t[4] = {tok("queen"), tok("nope"), tok("k\xc3\xb6ln"), tok("a,b")};
	int64_t ids[4];
	size_t n = 4, unknown = 9;
	embd_err e;
	assert_int_equal(embd_tokens_resolve(v, t, &n, EMBD_OOV_ZERO, ids, &unknown, &e), 0);
	assert_int_equal(n, 4);
	assert_int_equal(unknown, 1);
	assert_int_equal(ids[0], 2);
	assert_int_equal(ids[1], -1);
	assert_int_equal(ids[2], 3);
	assert_int_equal(ids[3], 4);

	n = 4;
	assert_int_equal(embd_tokens_resolve(v, t, &n, EMBD_OOV_SKIP, ids, &unknown, &e), 0);
	assert_int_equal(n, 3);
	assert_int_equal(unknown, 1);
	assert_int_equal(ids[1], 3);
	assert_string_equal(t[1].p, "k\xc3\xb6ln"); /* the tokens are compacted with the ids */
	assert_string_equal(t[2].p, "a,b");

	embd_token u[3] = {tok("king"), tok("x'y"), tok("zz")};
	n = 3;
	assert_int_equal(embd_tokens_resolve(v, u, &n, EMBD_OOV_ERROR, ids, &unknown, &e), EMBD_ETOKEN);
	assert_int_equal(unknown, 2);
	assert_string_equal(e.msg, "2 tokens are not in the vocabulary: 'x'y', 'zz'");
	assert_int_equal(ids[0], 1); /* each unknown one stays marked, for a caller that lists them */
	assert_int_equal(ids[1], -1);

	n = 1;
	assert_int_equal(embd_tokens_resolve(v, &u[2], &n, EMBD_OOV_ERROR, ids, &unknown, &e), EMBD_ETOKEN);
	assert_string_equal(e.msg, "1 token is not in the vocabulary: 'zz'");
	embd_vocab_free(v);
}

/* Many unknown tokens: the message names what fits and counts the rest; long tokens are cut. */
static void resolve_error_is_bounded(void **state)
{
	(void)state;
	embd_vocab *v = small_vocab();
	static char words[100][16];
	embd_token t[100];
	for (int i = 0; i < 100; i++) {
		snprintf(words[i], sizeof words[i], "unknown%03d", i);
		t[i] = tok(words[i]);
	}
	int64_t ids[100];
	size_t n = 100, unknown;
	embd_err e;
	assert_int_equal(embd_tokens_resolve(v, t, &n, EMBD_OOV_ERROR, ids, &unknown, &e), EMBD_ETOKEN);
	assert_int_equal(unknown, 100);
	assert_non_null(strstr(e.msg, "100 tokens are not in the vocabulary: 'unknown000', 'unknown001'"));
	/* 14 bytes per listed token (", 'unknownNNN'") in a list under 300: 21 listed, 79 more, all in 400 bytes. */
	assert_non_null(strstr(e.msg, "'unknown020' and 79 more"));
	assert_true(strlen(e.msg) <= 400);

	char longtok[300];
	memset(longtok, 'x', sizeof longtok - 1);
	longtok[sizeof longtok - 1] = '\0';
	embd_token l = tok(longtok);
	n = 1;
	assert_int_equal(embd_tokens_resolve(v, &l, &n, EMBD_OOV_ERROR, ids, &unknown, &e), EMBD_ETOKEN);
	assert_string_equal(e.msg, "1 token is not in the vocabulary: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'");
	embd_vocab_free(v);
}

static void oov_names(void **state)
{
	(void)state;
	embd_oov o;
	assert_int_equal(embd_oov_parse("zero", &o), 0);
	assert_int_equal(o, EMBD_OOV_ZERO);
	assert_int_equal(embd_oov_parse("skip", &o), 0);
	assert_int_equal(o, EMBD_OOV_SKIP);
	assert_int_equal(embd_oov_parse("error", &o), 0);
	assert_int_equal(o, EMBD_OOV_ERROR);
	assert_int_equal(embd_oov_parse("ZERO", &o), EMBD_EBADPARAM);
}

/* -1 ids become zero runs only when asked; consecutive ones merge; zeros never merge with real rows. */
static void zero_runs(void **state)
{
	(void)state;
	int64_t v[6] = {-1, -1, 3, 4, -1, 5};
	embd_ids ids = {(const unsigned char *)v, 6, 8};
	embd_run runs[8];
	size_t n = 0;
	embd_err e;
	assert_int_equal(embd_plan_runs(&ids, 10, 0, NULL, &n, &e), EMBD_EBADID);
	assert_int_equal(embd_plan_runs(&ids, 10, 1, NULL, &n, &e), 0);
	assert_int_equal(n, 4);
	assert_int_equal(embd_plan_runs(&ids, 10, 1, runs, &n, &e), 0);
	assert_true(runs[0].start == EMBD_RUN_ZERO && runs[0].count == 2);
	assert_true(runs[1].start == 3 && runs[1].count == 2);
	assert_true(runs[2].start == EMBD_RUN_ZERO && runs[2].count == 1);
	assert_true(runs[3].start == 5 && runs[3].count == 1);
	assert_true(embd_plan_has_zero(runs, n));
	assert_false(embd_plan_has_zero(&runs[1], 1));
	assert_int_equal(embd_plan_rows(runs, n), 6);
	/* Other negative ids stay errors. */
	int64_t w[1] = {-2};
	embd_ids bad = {(const unsigned char *)w, 1, 8};
	assert_int_equal(embd_plan_runs(&bad, 10, 1, NULL, &n, &e), EMBD_EBADID);

	/* Gathered and encoded, a zero run is zeros. */
	float data[6 * 2];
	for (int i = 0; i < 12; i++)
		data[i] = (float)i + 0.5f;
	embd_matrix_info m = {
	    .data = (const unsigned char *)data, .rows = 6, .dim = 2, .dtype = EMBD_F32, .row_bytes = 8};
	float out[12];
	embd_plan_gather(&m, runs, 4, out);
	static const float want[12] = {0, 0, 0, 0, 6.5f, 7.5f, 8.5f, 9.5f, 0, 0, 10.5f, 11.5f};
	assert_memory_equal(out, want, sizeof want);
	char json[1024];
	float scratch[2];
	embd_encode_opts o = {EMBD_F32, 0};
	embd_token t[6] = {tok("a"), tok("b"), tok("c"), tok("d"), tok("e\"\x01"), tok("f")};
	uint64_t bound = embd_json_rows_bound(6, 2, 0) + embd_tokens_json_bound(t, 6);
	assert_true(bound < sizeof json);
	size_t len = embd_json_rows_write(json, &m, runs, 4, NULL, t, 6, &o, scratch);
	json[len] = '\0';
	assert_string_equal(
	    json, "{\"shape\":[6,2],\"dtype\":\"f32\",\"tokens\":[\"a\",\"b\",\"c\",\"d\",\"e\\\"\\u0001\",\"f\"],"
	          "\"rows\":[[0,0],[0,0],[6.5,7.5],[8.5,9.5],[0,0],[10.5,11.5]]}");
	/* Normalised, a zero row stays zeros (no NaN). */
	o.normalize = 1;
	len = embd_json_rows_write(json, &m, runs, 1, NULL, NULL, 0, &o, scratch);
	json[len] = '\0';
	assert_string_equal(json, "{\"shape\":[2,2],\"dtype\":\"f32\",\"rows\":[[0,0],[0,0]]}");
}

/* The JSON bound holds for the worst tokens: every byte escaped to six. */
static void json_bound_worst_case(void **state)
{
	(void)state;
	static char worst[3][64];
	memset(worst[0], 0x01, 63);
	memset(worst[1], 0xff, 63);
	for (int i = 0; i < 21; i++)
		memcpy(worst[2] + 3 * i, "\xe2\x80\xa8", 3); /* U+2028, 3 bytes to 6 */
	embd_token t[3] = {tok(worst[0]), tok(worst[1]), tok(worst[2])};
	uint64_t bound = embd_tokens_json_bound(t, 3);
	assert_int_equal(bound, 2 + 3 * (63 * 6 + 3));
	char out[2048];
	char *p = out;
	*p++ = '[';
	for (int i = 0; i < 3; i++) {
		if (i)
			*p++ = ',';
		*p++ = '"';
		p += embd_json_escape(p, t[i].len * 6 + 1, t[i].p);
		*p++ = '"';
	}
	*p++ = ']';
	assert_true((uint64_t)(p - out) <= bound);
	assert_int_equal(p - out, 2 + 2 + 3 * 2 + 63 * 6 * 2 + 21 * 6); /* the first two at the limit */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(list_ok),
	    cmocka_unit_test(list_errors),
	    cmocka_unit_test(json_tokens),
	    cmocka_unit_test(json_token_errors),
	    cmocka_unit_test(resolve_policies),
	    cmocka_unit_test(resolve_error_is_bounded),
	    cmocka_unit_test(oov_names),
	    cmocka_unit_test(zero_runs),
	    cmocka_unit_test(json_bound_worst_case),
	};
	return cmocka_run_group_tests_name("tokens", tests, NULL, NULL);
}
