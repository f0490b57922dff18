/* Unit tests of id parsing from query strings, JSON, .npy and raw bodies. */
#include "fixture.h"

#include "ids.h"
#include "npy.h"

struct error_case {
	const char *in;
	int code;
	const char *fragment;
};

typedef int (*parse_fn)(const char *s, int64_t *out, size_t *n, embd_err *e);

/* Each input must fail with its code and a message holding its fragment. */
static void expect_errors(parse_fn parse, const struct error_case *cases, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		int64_t out[8];
		size_t n;
		embd_err e = {{0}};
		int rc = parse(cases[i].in, out, &n, &e);
		if (rc != cases[i].code || strstr(e.msg, cases[i].fragment) == NULL)
			fail_msg("'%s': got %d '%s', want %d '%s'", cases[i].in, rc, e.msg, cases[i].code,
			         cases[i].fragment);
	}
}

static int parse_list(const char *s, int64_t *out, size_t *n, embd_err *e)
{
	int rc = embd_ids_parse_list(s, strlen(s), NULL, n, e);
	if (rc != 0)
		return rc;
	return embd_ids_parse_list(s, strlen(s), out, n, e);
}

static void list_ok(void **state)
{
	(void)state;
	int64_t out[8];
	size_t n;
	assert_int_equal(parse_list("3,17,42", out, &n, NULL), 0);
	assert_int_equal(n, 3);
	assert_int_equal(out[0], 3);
	assert_int_equal(out[2], 42);
	assert_int_equal(parse_list(" 0 , 9223372036854775807 ", out, &n, NULL), 0);
	assert_int_equal(n, 2);
	assert_int_equal(out[1], INT64_MAX);
}

static void list_errors(void **state)
{
	(void)state;
	static const struct error_case cases[] = {
	    {"", EMBD_EEMPTY, "empty"},
	    {"  ", EMBD_EEMPTY, "empty"},
	    {"3,,4", EMBD_EBADID, "empty id at item 1"},
	    {"3,4,", EMBD_EBADID, "empty id at item 2"},
	    {"-1", EMBD_EBADID, "'-1' is negative"},
	    {"abc", EMBD_EBADID, "'abc' is not"},
	    {"1.5", EMBD_EBADID, "'1.5' is not"},
	    {"0x10", EMBD_EBADID, "'0x10' is not"},
	    {"1 2", EMBD_EBADID, "'1 2' is not"},
	    {"9223372036854775808", EMBD_EBADID, "64-bit"},
	    {"99999999999999999999999", EMBD_EBADID, "64-bit"},
	};
	expect_errors(parse_list, cases, sizeof cases / sizeof cases[0]);
}

static int parse_json(const char *s, int64_t *out, size_t *n, embd_err *e)
{
	int rc = embd_ids_parse_json(s, strlen(s), NULL, n, e);
	if (rc != 0)
		return rc;
	return embd_ids_parse_json(s, strlen(s), out, n, e);
}

static void json_ok(void **state)
{
	(void)state;
	int64_t out[8];
	size_t n;
	assert_int_equal(parse_json("{\"ids\":[3,17,42]}", out, &n, NULL), 0);
	assert_int_equal(n, 3);
	assert_int_equal(out[1], 17);
	assert_int_equal(parse_json(" \n{ \"ids\" : [ 0 ,\t5 ] }\n", out, &n, NULL), 0);
	assert_int_equal(n, 2);
	assert_int_equal(out[1], 5);
	assert_int_equal(parse_json("{\"\\u0069ds\":[1]}", out, &n, NULL), 0); /* escaped key */
}

static void json_errors(void **state)
{
	(void)state;
	static const struct error_case cases[] = {
	    {"", EMBD_EJSON, "empty"},
	    {"{\"ids\":[1,2", EMBD_EJSON, "ends"},
	    {"{\"ids\":[1 2]}", EMBD_EJSON, "byte 10: expected ',' or ']'"},
	    {"{ids:[1]}", EMBD_EJSON, "a key in quotes"},
	    {"{\"ids\":[1]} x", EMBD_EJSON, "data after"},
	    {"{\"ids\":[01]}", EMBD_EJSON, "leading zero"},
	    {"{\"ids\":[1,]}", EMBD_EJSON, "a number"},
	    {"{\"ids\":[-]}", EMBD_EJSON, "a digit"},
	    {"{\"ids\":[\"3\"]}", EMBD_EJSONTYPE, "ids[0] is a string"},
	    {"{\"ids\":[1,1.5]}", EMBD_EJSONTYPE, "ids[1] is 1.5, not an integer"},
	    {"{\"ids\":[1e3]}", EMBD_EJSONTYPE, "not an integer"},
	    {"{\"ids\":[true]}", EMBD_EJSONTYPE, "a boolean"},
	    {"{\"ids\":[null]}", EMBD_EJSONTYPE, "null"},
	    {"{\"ids\":[[1]]}", EMBD_EJSONTYPE, "an array"},
	    {"{\"ids\":[{}]}", EMBD_EJSONTYPE, "an object"},
	    {"{\"ids\":\"1,2\"}", EMBD_EJSONTYPE, "\"ids\" is a string"},
	    {"{\"ids\":7}", EMBD_EJSONTYPE, "\"ids\" is a number"},
	    {"[1,2]", EMBD_EJSONTYPE, "the body is an array"},
	    {"{\"ids\":[-3]}", EMBD_EBADID, "ids[0] is -3"},
	    {"{\"ids\":[99999999999999999999]}", EMBD_EBADID, "64-bit"},
	    {"{\"ids\":[]}", EMBD_EEMPTY, "empty"},
	    {"{}", EMBD_EBADBODY, "no \"ids\""},
	    {"{\"idz\":[1]}", EMBD_EBADBODY, "unknown key \"idz\""},
	    {"{\"ids\":[1],\"ids\":[2]}", EMBD_EBADBODY, "twice"},
	    {"{\"ids\":[1],}", EMBD_EJSON, "a key in quotes"},
	};
	expect_errors(parse_json, cases, sizeof cases / sizeof cases[0]);
}

static void json_deep_nesting_is_not_recursed(void **state)
{
	(void)state;
	size_t depth = 100000;
	char *s = malloc(depth + 16);
	strcpy(s, "{\"ids\":");
	memset(s + 7, '[', depth);
	s[7 + depth] = '\0';
	size_t n;
	embd_err e;
	assert_int_equal(embd_ids_parse_json(s, strlen(s), NULL, &n, &e), EMBD_EJSONTYPE);
	free(s);
}

/* A NUL anywhere in a JSON body is malformed JSON that names its offset, on both passes, and never a terminator. */
static void json_nul_is_bad_json(void **state)
{
	(void)state;
	static const struct {
		const char *body;
		size_t len, at;
	} cases[] = {
	    {"{\"ids\":[1,\0 2]}", 15, 10}, /* where a value starts: strchr found the terminator */
	    {"\0{\"ids\":[1]}", 12, 0},     /* where the body starts */
	    {"{\"ids\":[1.\0]}", 13, 10},   /* inside a number */
	    {"{\"ids\":[1\0]}", 12, 9},     /* between values */
	    {"{\"i\0s\":[1]}", 11, 3},      /* inside a key */
	    {"{\"ids\":[1]}\0", 12, 11},    /* after the object */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char want[64];
		snprintf(want, sizeof want, "malformed JSON at byte %zu: a NUL byte", cases[i].at);
		int64_t out[8];
		for (int pass = 0; pass < 2; pass++) {
			size_t n = 8;
			embd_err e = {{0}};
			int rc = embd_ids_parse_json(cases[i].body, cases[i].len, pass ? out : NULL, &n, &e);
			if (rc != EMBD_EJSON || strcmp(e.msg, want) != 0 || n != 0)
				fail_msg("case %zu pass %d: got %d '%s' n=%zu, want %d '%s' n=0", i, pass, rc, e.msg, n,
				         EMBD_EJSON, want);
		}
	}
}

/* A key is matched by its bytes and length: a \u0000 in it does not cut it short to "ids". */
static void json_key_with_escaped_nul(void **state)
{
	(void)state;
	int64_t out[8];
	size_t n;
	embd_err e = {{0}};
	assert_int_equal(parse_json("{\"ids\\u0000\":[1]}", out, &n, &e), EMBD_EBADBODY);
	assert_string_equal(e.msg, "unknown key \"ids?\"; the body is {\"ids\": [...]}");
	assert_int_equal(parse_json("{\"ids\\u0000x\":[1]}", out, &n, &e), EMBD_EBADBODY);
	assert_non_null(strstr(e.msg, "unknown key \"ids?x\""));
}

/* Every failure leaves the count at 0, so that a caller that copies it copies no garbage. */
static void failures_zero_the_count(void **state)
{
	(void)state;
	static const char *const json[] = {"",
	                                   "{\"ids\":[1,2",
	                                   "[1]",
	                                   "{\"ids\":[-1]}",
	                                   "{\"ids\":[]}",
	                                   "{\"idz\":[1]}",
	                                   "{\"ids\":[1.5]}",
	                                   "{\"ids\":[1]} x"};
	for (size_t i = 0; i < sizeof json / sizeof json[0]; i++) {
		int64_t out[8];
		size_t n = 12345;
		assert_int_not_equal(embd_ids_parse_json(json[i], strlen(json[i]), NULL, &n, NULL), 0);
		assert_int_equal(n, 0);
		n = 8;
		assert_int_not_equal(embd_ids_parse_json(json[i], strlen(json[i]), out, &n, NULL), 0);
		assert_int_equal(n, 0);
	}
	/* The second pass finding more ids than the first counted is a failure too. */
	int64_t out[2];
	size_t n = 2;
	assert_int_equal(embd_ids_parse_json("{\"ids\":[1,2,3]}", 15, out, &n, NULL), EMBD_EINTERNAL);
	assert_int_equal(n, 0);
	static const char *const list[] = {"", "1,,2", "-1", "x", "99999999999999999999"};
	for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) {
		int64_t lout[8];
		size_t m = 12345;
		int rc = embd_ids_parse_list(list[i], strlen(list[i]), NULL, &m, NULL);
		if (rc == 0) /* the counting pass only looks for emptiness; the second pass judges the items */
			rc = embd_ids_parse_list(list[i], strlen(list[i]), lout, &m, NULL);
		assert_int_not_equal(rc, 0);
		assert_int_equal(m, 0);
	}
	n = 2;
	assert_int_equal(embd_ids_parse_list("1,2,3", 5, out, &n, NULL), EMBD_EINTERNAL);
	assert_int_equal(n, 0);
}

static void npy_bodies(void **state)
{
	(void)state;
	unsigned char buf[256];
	uint64_t shape[1] = {3};
	size_t h = embd_npy_header_write((char *)buf, sizeof buf, "<i4", shape, 1);
	int32_t v32[3] = {5, 6, -1};
	memcpy(buf + h, v32, sizeof v32);
	embd_ids ids;
	embd_err e;
	assert_int_equal(embd_ids_from_npy(buf, h + 12, &ids, &e), 0);
	assert_int_equal(ids.n, 3);
	assert_int_equal(ids.width, 4);
	assert_int_equal(embd_ids_at(&ids, 1), 6);
	assert_int_equal(embd_ids_at(&ids, 2), -1); /* sign kept; the planner refuses it */
	assert_int_equal(embd_ids_from_npy(buf, h + 11, &ids, &e), EMBD_EBADBODY);
	assert_non_null(strstr(e.msg, "3 ids but 11 bytes"));
	assert_int_equal(embd_ids_from_npy(buf, h + 13, &ids, &e), EMBD_EBADBODY);

	h = embd_npy_header_write((char *)buf, sizeof buf, "<f8", shape, 1);
	assert_int_equal(embd_ids_from_npy(buf, h + 24, &ids, &e), EMBD_EBADBODY);
	assert_non_null(strstr(e.msg, "'<f8'"));

	uint64_t shape2[2] = {1, 2};
	h = embd_npy_header_write((char *)buf, sizeof buf, "<i8", shape2, 2);
	assert_int_equal(embd_ids_from_npy(buf, h + 16, &ids, &e), EMBD_EBADBODY);
	assert_non_null(strstr(e.msg, "1-D"));

	uint64_t zero[1] = {0};
	h = embd_npy_header_write((char *)buf, sizeof buf, "<i8", zero, 1);
	assert_int_equal(embd_ids_from_npy(buf, h, &ids, &e), EMBD_EEMPTY);
	assert_int_equal(embd_ids_from_npy("{\"ids\":[1]}", 11, &ids, &e), EMBD_EBADBODY);
}

static void raw_bodies(void **state)
{
	(void)state;
	int64_t v[2] = {9, 10};
	embd_ids ids;
	embd_err e;
	assert_int_equal(embd_ids_from_raw(v, 16, 8, &ids, &e), 0);
	assert_int_equal(ids.n, 2);
	assert_int_equal(embd_ids_at(&ids, 1), 10);
	assert_int_equal(embd_ids_from_raw(v, 16, 4, &ids, &e), 0);
	assert_int_equal(ids.n, 4);
	assert_int_equal(embd_ids_from_raw(v, 12, 8, &ids, &e), EMBD_EBADBODY);
	assert_non_null(strstr(e.msg, "12 bytes"));
	assert_int_equal(embd_ids_from_raw(v, 0, 8, &ids, &e), EMBD_EEMPTY);
}

static void sniff_bodies(void **state)
{
	(void)state;
	static const struct {
		const char *body;
		size_t len;
		embd_body_kind want;
	} cases[] = {
	    {"\x93NUMPY\x01\x00", 8, EMBD_BODY_NPY},
	    {"\x93NUMPY", 6, EMBD_BODY_NPY},
	    {"\x93NUMP", 5, EMBD_BODY_UNKNOWN}, /* the magic cut short */
	    {"{\"ids\":[1]}", 11, EMBD_BODY_JSON},
	    {" \r\n\t[1,2]", 9, EMBD_BODY_JSON},
	    {"[", 1, EMBD_BODY_JSON}, /* JSON, malformed: the JSON parser says so */
	    {"", 0, EMBD_BODY_UNKNOWN},
	    {"   ", 3, EMBD_BODY_UNKNOWN},
	    {"ids=1,2", 7, EMBD_BODY_UNKNOWN},
	    {"\v{}", 3, EMBD_BODY_UNKNOWN}, /* not JSON whitespace */
	    /* int64 id 123 is '{' and seven NULs: raw ids, not JSON */
	    {"{\0\0\0\0\0\0\0", 8, EMBD_BODY_UNKNOWN},
	    {"[1]\0", 4, EMBD_BODY_UNKNOWN},
	    {"\x05\0\0\0\0\0\0\0", 8, EMBD_BODY_UNKNOWN},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (embd_body_sniff(cases[i].body, cases[i].len) != cases[i].want)
			fail_msg("case %zu: got %d, want %d", i, (int)embd_body_sniff(cases[i].body, cases[i].len),
			         (int)cases[i].want);
}

/* The one parser of a Content-Type's media type: parameters after ';', a space or a tab, case aside. */
static void media_kinds(void **state)
{
	(void)state;
	size_t n = 99;
	assert_int_equal(embd_media_kind(NULL, &n), EMBD_BODY_UNKNOWN);
	assert_int_equal(n, 0);
	assert_int_equal(embd_media_kind("", &n), EMBD_BODY_UNKNOWN);
	assert_int_equal(n, 0);
	assert_int_equal(embd_media_kind("application/json\t; charset=utf-8", &n), EMBD_BODY_JSON);
	assert_int_equal(n, 16);
	assert_int_equal(embd_media_kind("Application/JSON;charset=utf-8", &n), EMBD_BODY_JSON);
	assert_int_equal(embd_media_kind("application/x-npy ; x=1", &n), EMBD_BODY_NPY);
	assert_int_equal(embd_media_kind("application/octet-stream", &n), EMBD_BODY_RAW);
	assert_int_equal(embd_media_kind("application/jsonx", &n), EMBD_BODY_UNKNOWN);
	assert_int_equal(n, 17);
	assert_int_equal(embd_media_kind("text/plain", &n), EMBD_BODY_UNKNOWN);
}

static void body_kinds(void **state)
{
	(void)state;
	static const char npy_magic[] = "\x93NUMPY\x01\x00";
	static const char raw[8] = {5, 0, 0, 0, 7, 0, 0, 0};
	static const struct {
		const char *ct, *id_dtype, *body;
		size_t len;
		int rc;
		embd_body_kind kind;
		unsigned width;
		const char *msg;
	} cases[] = {
	    {"application/json", NULL, "{}", 2, 0, EMBD_BODY_JSON, 8, NULL},
	    {"Application/JSON; charset=utf-8", NULL, "{}", 2, 0, EMBD_BODY_JSON, 8, NULL},
	    {"application/x-npy", NULL, npy_magic, 8, 0, EMBD_BODY_NPY, 8, NULL},
	    {"application/octet-stream", "int64", raw, 8, 0, EMBD_BODY_RAW, 8, NULL},
	    {"application/octet-stream", "int32", raw, 8, 0, EMBD_BODY_RAW, 4, NULL},
	    {NULL, "int32", raw, 8, 0, EMBD_BODY_RAW, 4, NULL},
	    {NULL, "int64", "{}", 2, 0, EMBD_BODY_RAW, 8, NULL}, /* with id_dtype a body is raw, whatever it holds */
	    {"", NULL, "[1]", 3, 0, EMBD_BODY_JSON, 8, NULL},
	    {NULL, NULL, "{\"ids\":[1]}", 11, 0, EMBD_BODY_JSON, 8, NULL},
	    {NULL, NULL, npy_magic, 8, 0, EMBD_BODY_NPY, 8, NULL},
	    {"application/octet-stream", NULL, raw, 8, EMBD_EBADPARAM, EMBD_BODY_UNKNOWN, 8,
	     "an application/octet-stream body of ids needs ?id_dtype=int64 or ?id_dtype=int32: raw bytes do not say "
	     "their width (a .npy body, application/x-npy, says it itself)"},
	    {NULL, NULL, raw, 8, EMBD_EMEDIATYPE, EMBD_BODY_UNKNOWN, 8,
	     "the body has no Content-Type and is neither JSON nor .npy; send Content-Type: application/json "
	     "({\"ids\": [...]} or {\"tokens\": [...]}) or application/x-npy, or raw little-endian ids with "
	     "?id_dtype=int64 or ?id_dtype=int32"},
	    {"application/octet-stream", "int16", raw, 8, EMBD_EBADPARAM, EMBD_BODY_UNKNOWN, 8,
	     "id_dtype 'int16' is not int32 or int64"},
	    {"application/json", "int32", "{}", 2, EMBD_EBADPARAM, EMBD_BODY_UNKNOWN, 8,
	     "id_dtype goes with an application/octet-stream body (or one without a Content-Type)"},
	    {"application/x-npy", "int64", npy_magic, 8, EMBD_EBADPARAM, EMBD_BODY_UNKNOWN, 8,
	     "id_dtype goes with an application/octet-stream body (or one without a Content-Type)"},
	    {"text/plain", NULL, "{}", 2, EMBD_EMEDIATYPE, EMBD_BODY_UNKNOWN, 8,
	     "Content-Type 'text/plain' is not supported; send application/json {\"ids\": [...]} or {\"tokens\": "
	     "[...]}, application/x-npy, or application/octet-stream with ?id_dtype=int64 or ?id_dtype=int32"},
	    {"application/jsonx", NULL, "{}", 2, EMBD_EMEDIATYPE, EMBD_BODY_UNKNOWN, 8, NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		embd_body_kind kind = EMBD_BODY_RAW;
		unsigned width = 0;
		embd_err e = {{0}};
		int rc =
		    embd_ids_body_kind(cases[i].ct, cases[i].id_dtype, cases[i].body, cases[i].len, &kind, &width, &e);
		if (rc != cases[i].rc || kind != cases[i].kind || (rc == 0 && width != cases[i].width) ||
		    (cases[i].msg != NULL && strcmp(e.msg, cases[i].msg) != 0))
			fail_msg("case %zu: got %d kind %d width %u '%s'", i, rc, (int)kind, width, e.msg);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(list_ok),
	    cmocka_unit_test(list_errors),
	    cmocka_unit_test(json_ok),
	    cmocka_unit_test(json_errors),
	    cmocka_unit_test(json_deep_nesting_is_not_recursed),
	    cmocka_unit_test(json_nul_is_bad_json),
	    cmocka_unit_test(json_key_with_escaped_nul),
	    cmocka_unit_test(failures_zero_the_count),
	    cmocka_unit_test(npy_bodies),
	    cmocka_unit_test(raw_bodies),
	    cmocka_unit_test(sniff_bodies),
	    cmocka_unit_test(media_kinds),
	    cmocka_unit_test(body_kinds),
	};
	return cmocka_run_group_tests_name("ids", tests, NULL, NULL);
}
