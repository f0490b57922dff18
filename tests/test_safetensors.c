/* Unit tests of the safetensors header parser and of safetensors files opened as matrices. */
#include "fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>

#include "dtype.h"
#include "encode.h"
#include "matrix.h"
#include "safetensors.h"

/*
 * A safetensors file built byte by byte from the published format: an 8-byte
 * little-endian header length N, N bytes of JSON (padded with spaces to pad
 * bytes when pad is larger), then the data section. Returns its path.
 */
static const char *st_file(int slot, const char *json, size_t pad, const void *data, size_t data_len)
{
	size_t n = strlen(json) > pad ? strlen(json) : pad;
	unsigned char *buf = malloc(8 + n + data_len);
	assert_non_null(buf);
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
	memset(buf + 8, ' ', n);
	memcpy(buf + 8, json, strlen(json));
	if (data_len > 0)
		memcpy(buf + 8 + n, data, data_len);
	const char *p = fixture_file(slot, buf, 8 + n + data_len);
	free(buf);
	return p;
}

/* The same with the 8-byte length given, whatever the JSON's length. */
static const char *st_file_lying(int slot, uint64_t n, const char *json, size_t extra)
{
	size_t len = strlen(json);
	unsigned char *buf = calloc(1, 8 + len + extra);
	assert_non_null(buf);
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)(n >> (8 * i));
	memcpy(buf + 8, json, len);
	const char *p = fixture_file(slot, buf, 8 + len + extra);
	free(buf);
	return p;
}

static int open_st(const char *path, embd_format f, const char *tensor, embd_matrix **m, embd_err *e)
{
	embd_matrix_spec spec = {.path = path, .format = f, .tensor = tensor};
	return embd_matrix_open(&spec, m, e);
}

static void expect_error(const char *path, const char *tensor, int code, const char *fragment)
{
	embd_matrix *m = NULL;
	embd_err e;
	int rc = open_st(path, EMBD_FORMAT_SAFETENSORS, tensor, &m, &e);
	if (rc != code)
		fail_msg("open gave %d, wanted %d: %s", rc, code, rc ? e.msg : "(opened)");
	assert_null(m);
	if (strstr(e.msg, fragment) == NULL)
		fail_msg("message '%s' lacks '%s'", e.msg, fragment);
	if (strstr(e.msg, path) == NULL)
		fail_msg("message '%s' does not name the file", e.msg);
	assert_null(strchr(e.msg, '\n')); /* one line */
}

/* Pad the header so that the data section starts at an odd offset (8 + pad is 1 mod 4). */
static size_t odd_pad(const char *json)
{
	size_t n = strlen(json);
	while ((8 + n) % 4 != 1)
		n++;
	return n;
}

/*
 * A 3 x 4 F32 table among other tensors (a 1-D F32 bias, a 1-D I64 tensor,
 * metadata), its data section starting at an odd byte: it opens by sniffing
 * and by name, its rows are the stored bytes, and rows converted (to JSON,
 * to f16) read the unaligned floats right (under UBSan too).
 */
static void unaligned_f32_table(void **state)
{
	(void)state;
	float emb[12];
	for (int i = 0; i < 12; i++)
		emb[i] = (float)i * 0.25f - 1.0f;
	float bias[4] = {9, 8, 7, 6};
	int64_t ids[2] = {-1, 42};
	unsigned char data[48 + 16 + 16];
	memcpy(data, bias, 16);
	memcpy(data + 16, emb, 48);
	memcpy(data + 64, ids, 16);
	/* JSON order differs from data order: offsets, not member order, place the tensors. */
	const char *json = "{\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[64,80]},"
	                   "\"__metadata__\":{\"format\":\"pt\",\"note\":\"x\"},"
	                   "\"emb\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[16,64]},"
	                   "\"bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
	size_t pad = odd_pad(json);
	const char *p = st_file(0, json, pad, data, sizeof data);
	embd_format formats[2] = {EMBD_FORMAT_AUTO, EMBD_FORMAT_SAFETENSORS};
	for (int k = 0; k < 2; k++) {
		embd_matrix *m;
		embd_err e;
		if (open_st(p, formats[k], NULL, &m, &e) != 0)
			fail_msg("%s", e.msg);
		const embd_matrix_info *i = embd_matrix_info_get(m);
		assert_int_equal(i->format, EMBD_FORMAT_SAFETENSORS);
		assert_int_equal(i->rows, 3);
		assert_int_equal(i->dim, 4);
		assert_int_equal(i->dtype, EMBD_F32);
		assert_int_equal(i->row_bytes, 16);
		assert_int_equal(i->file_bytes, 8 + pad + sizeof data);
		assert_int_equal((uintptr_t)i->data % 4, 1); /* 8 + pad + 16 is 1 mod 4 */
		assert_memory_equal(i->data, emb, 16);
		assert_memory_equal(i->data + 2 * i->row_bytes, emb + 8, 16);

		/* Conversions read the unaligned rows through embd_dtype_load. */
		embd_run runs[1] = {{0, 3}};
		float scratch[4];
		embd_encode_opts as_f32 = {.dtype = EMBD_F32}, as_f16 = {.dtype = EMBD_F16};
		char *json_out = malloc(embd_json_rows_bound(3, 4, 0));
		assert_non_null(json_out);
		size_t n = embd_json_rows_write(json_out, i, runs, 1, NULL, NULL, 0, &as_f32, scratch);
		json_out[n] = '\0';
		assert_string_equal(json_out, "{\"shape\":[3,4],\"dtype\":\"f32\",\"rows\":[[-1,-0.75,-0.5,-0.25],"
		                              "[0,0.25,0.5,0.75],[1,1.25,1.5,1.75]]}");
		free(json_out);
		uint16_t half[12];
		embd_rows_convert(half, i, runs, 1, &as_f16, scratch);
		for (int j = 0; j < 12; j++)
			assert_int_equal(half[j], embd_f32_to_f16(emb[j]));
		embd_matrix_close(m);
	}
	unlink(p);
}

static void f16_and_bf16_tables(void **state)
{
	(void)state;
	uint16_t h[6], b[6];
	for (int j = 0; j < 6; j++) {
		h[j] = embd_f32_to_f16((float)j + 0.5f);
		b[j] = embd_f32_to_bf16(-(float)j * 3.0f);
	}
	const char *json16 = "{\"t\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]}}";
	const char *p = st_file(0, json16, odd_pad(json16), h, sizeof h);
	embd_matrix *m;
	embd_err e;
	assert_int_equal(open_st(p, EMBD_FORMAT_AUTO, NULL, &m, &e), 0);
	const embd_matrix_info *i = embd_matrix_info_get(m);
	assert_int_equal(i->dtype, EMBD_F16);
	assert_int_equal(i->rows, 2);
	assert_int_equal(i->dim, 3);
	assert_int_equal(i->row_bytes, 6);
	assert_memory_equal(i->data, h, 6);
	assert_memory_equal(i->data + 6, h + 3, 6);
	embd_matrix_close(m);
	unlink(p);

	/* bf16, an even header length this time, named by --tensor though it is the only 2-D one. */
	const char *jsonb =
	    "{\"model.embed_tokens.weight\":{\"dtype\":\"BF16\",\"shape\":[3,2],\"data_offsets\":[0,12]}}";
	p = st_file(0, jsonb, 0, b, sizeof b);
	assert_int_equal(open_st(p, EMBD_FORMAT_AUTO, "model.embed_tokens.weight", &m, &e), 0);
	i = embd_matrix_info_get(m);
	assert_int_equal(i->dtype, EMBD_BF16);
	assert_int_equal(i->rows, 3);
	assert_int_equal(i->dim, 2);
	assert_memory_equal(i->data, b, 4);
	assert_memory_equal(i->data + 8, b + 4, 4);
	embd_run runs[1] = {{2, 1}};
	float scratch[2];
	embd_encode_opts as_f32 = {.dtype = EMBD_F32};
	char out[256];
	size_t n = embd_json_rows_write(out, i, runs, 1, NULL, NULL, 0, &as_f32, scratch);
	out[n] = '\0';
	assert_string_equal(out, "{\"shape\":[1,2],\"dtype\":\"f32\",\"rows\":[[-12,-15]]}");
	embd_matrix_close(m);
	unlink(p);
}

/* Without --tensor the only 2-D tensor; with several, an error naming each; with a name, that one. */
static void tensor_choice(void **state)
{
	(void)state;
	unsigned char data[16 + 8 + 16 + 16] = {0};
	for (size_t j = 0; j < sizeof data; j++)
		data[j] = (unsigned char)j;
	const char *json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
	                   "\"b\":{\"dtype\":\"BF16\",\"shape\":[1,4],\"data_offsets\":[16,24]},"
	                   "\"c\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[24,40]},"
	                   "\"d\":{\"dtype\":\"I64\",\"shape\":[2,1],\"data_offsets\":[40,56]}}";
	const char *p = st_file(0, json, 0, data, sizeof data);
	expect_error(p, NULL, EMBD_ECONFIG,
	             "3 2-D tensors; name the one to serve with --tensor (matrix.tensor): 'a' (2, 2) F32, 'b' (1, 4) "
	             "BF16, 'd' (2, 1) I64");
	expect_error(p, "", EMBD_ECONFIG, "3 2-D tensors");
	expect_error(p, "zz", EMBD_ECONFIG, "no tensor named 'zz'; the file has 4: 'a' (2, 2) F32, 'b'");
	expect_error(p, "c", EMBD_EFORMAT, "tensor 'c' has shape (4,); a matrix needs 2 dimensions");
	expect_error(p, "d", EMBD_EDTYPE, "tensor 'd' is I64; embd serves F32, F16 and BF16");
	embd_matrix *m;
	embd_err e;
	assert_int_equal(open_st(p, EMBD_FORMAT_AUTO, "b", &m, &e), 0);
	assert_int_equal(embd_matrix_info_get(m)->rows, 1);
	assert_int_equal(embd_matrix_info_get(m)->dim, 4);
	assert_int_equal(embd_matrix_info_get(m)->dtype, EMBD_BF16);
	assert_memory_equal(embd_matrix_info_get(m)->data, data + 16, 8);
	embd_matrix_close(m);
	unlink(p);

	/* Only 1-D tensors: nothing to serve. */
	const char *json1 = "{\"c\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
	p = st_file(0, json1, 0, data, 16);
	expect_error(p, NULL, EMBD_EFORMAT, "no 2-D tensor to serve among its 1: 'c' (4,) F32");
	unlink(p);
	p = st_file(0, "{}", 0, NULL, 0);
	expect_error(p, NULL, EMBD_EFORMAT, "no 2-D tensor to serve among its 0: none");
	unlink(p);
}

/* Hundreds of 2-D tensors with long names: the list is cut short and says how many it left out. */
static void several_2d_message_is_bounded(void **state)
{
	(void)state;
	size_t cap = 200 * 400;
	char *json = malloc(cap);
	assert_non_null(json);
	size_t n = (size_t)snprintf(json, cap, "{");
	for (int t = 0; t < 200; t++)
		n += (size_t)snprintf(json + n, cap - n,
		                      "%s\"layer.%03d.a_rather_long_tensor_name_that_goes_on_and_on_and_on_and_on_"
		                      "and_on_and_on\\n\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[%d,%d]}",
		                      t ? "," : "", t, 4 * t, 4 * t + 4);
	snprintf(json + n, cap - n, "}");
	unsigned char data[800] = {0};
	const char *p = st_file(0, json, 0, data, sizeof data);
	free(json);
	expect_error(p, NULL, EMBD_ECONFIG, "200 2-D tensors");
	embd_matrix *m;
	embd_err e;
	assert_int_equal(open_st(p, EMBD_FORMAT_AUTO, NULL, &m, &e), EMBD_ECONFIG);
	assert_non_null(strstr(
	    e.msg, "'layer.000.a_rather_long_tensor_name_that_goes_on_and_on_and_on_a...' (1, 1) F32, 'layer.001."));
	assert_non_null(strstr(e.msg, "more"));
	assert_null(strstr(e.msg, "layer.199"));
	assert_true(strlen(e.msg) < sizeof e.msg - 1); /* ends with its count, not cut by the buffer */
	unlink(p);
}

/* Each lie a header can tell is a one-line error with its code, naming the file. */
static void hostile_headers(void **state)
{
	(void)state;
	unsigned char z[64] = {0};
	const char *p;
#define E4 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9" /* four of U+00E9 */
#define E8 E4 E4
#define T(name, dtype, shape, b, e)                                                                                    \
	"\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" b "," e "]}"
	struct {
		const char *json;
		size_t data_len;
		int code;
		const char *fragment;
	} cases[] = {
	    {"{" T("t", "F32", "[2,2]", "0", "17") "}", 16, EMBD_ETRUNC,
	     "tensor 't': data_offsets [0, 17] go past the end of the 16-byte data section"},
	    {"{" T("t", "F32", "[2,2]", "9223372036854775807", "9223372036854775807") "}", 16, EMBD_ETRUNC,
	     "go past the end"},
	    {"{" T("t", "F32", "[2,2]", "16", "0") "}", 16, EMBD_EFORMAT, "data_offsets [16, 0] end before they begin"},
	    {"{" T("t", "F32", "[2,2]", "0", "12") "}", 12, EMBD_EFORMAT,
	     "tensor 't': shape (2, 2) of F32 needs 16 bytes but data_offsets [0, 12] hold 12"},
	    {"{" T("t", "BF16", "[2,2]", "0", "16") "}", 16, EMBD_EFORMAT, "needs 8 bytes"},
	    {"{" T("a", "F32", "[2,2]", "0", "16") "," T("b", "F32", "[1,2]", "8", "16") "}", 16, EMBD_EFORMAT,
	     "tensor 'b' at data_offsets [8, 16] overlaps tensor 'a', which ends at 16"},
	    {"{" T("a", "F32", "[1,2]", "0", "8") "," T("b", "F32", "[1,2]", "12", "20") "}", 20, EMBD_EFORMAT,
	     "4 bytes at data offset 8 belong to no tensor (the next, 'b', begins at 12)"},
	    {"{" T("a", "F32", "[1,2]", "4", "12") "}", 12, EMBD_EFORMAT,
	     "4 bytes at data offset 0 belong to no tensor"},
	    {"{" T("a", "F32", "[2,2]", "0", "16") "}", 20, EMBD_EFORMAT,
	     "the tensors cover 16 bytes of the 20-byte data section"},
	    {"{" T("a", "F32", "[4294967296,4294967296]", "0", "16") "}", 16, EMBD_EOVERFLOW,
	     "shape (4294967296, 4294967296) has more elements than 64 bits count"},
	    {"{" T("a", "F32", "[4611686018427387904,2]", "0", "16") "}", 16, EMBD_EOVERFLOW,
	     "shape (4611686018427387904, 2) of F32 overflows 64 bits"},
	    {"{" T("a", "F32", "[2.0,2]", "0", "16") "}", 16, EMBD_EFORMAT,
	     "tensor 'a': a shape dimension is not an integer"},
	    {"{" T("a", "F32", "[2,2]", "0", "1.6e1") "}", 16, EMBD_EFORMAT, "data_offsets end is not an integer"},
	    {"{" T("a", "F32", "[2,2]", "\"0\"", "16") "}", 16, EMBD_EFORMAT, "data_offsets begin is not an integer"},
	    {"{" T("a", "F32", "[-2,-2]", "0", "16") "}", 16, EMBD_EFORMAT, "a shape dimension is negative (-2)"},
	    {"{" T("a", "F32", "[2,2]", "-16", "0") "}", 16, EMBD_EFORMAT, "data_offsets begin is negative (-16)"},
	    {"{" T("a", "F32", "[2,2]", "0", "18446744073709551616") "}", 16, EMBD_EFORMAT, "bad JSON"},
	    {"{" T("a", "F32", "[2,2]", "0", "16") "," T("a", "F32", "[2,2]", "0", "16") "}", 16, EMBD_EFORMAT,
	     "duplicate object key"},
	    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2]}}", 16, EMBD_EFORMAT,
	     "tensor 'a' has no 'data_offsets' array [begin, end]"},
	    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,8,16]}}", 16, EMBD_EFORMAT,
	     "no 'data_offsets'"},
	    {"{\"a\":{\"dtype\":32,\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16, EMBD_EFORMAT, "no string 'dtype'"},
	    {"{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16, EMBD_EFORMAT, "no 'shape' array"},
	    {"{\"a\":[1,2]}", 0, EMBD_EFORMAT, "tensor 'a' is not an object"},
	    {"{\"__metadata__\":{\"k\":1}," T("a", "F32", "[2,2]", "0", "16") "}", 16, EMBD_EFORMAT,
	     "'__metadata__' value of 'k' is not a string"},
	    {"{\"__metadata__\":[]," T("a", "F32", "[2,2]", "0", "16") "}", 16, EMBD_EFORMAT,
	     "'__metadata__' is not an object"},
	    {"{" T("a", "F32", "[2,2]", "0", "16") "} x", 16, EMBD_EFORMAT, "bad JSON"},
	    {"{" T("a", "F4", "[1,3]", "0", "2") "}", 2, EMBD_EFORMAT, "is not a whole number of bytes"},
	    {"{" T("a\\u0001\\n", "F32", "[2,2]", "0", "12") "}", 12, EMBD_EFORMAT,
	     "tensor 'a?"
	     "?'"},
	    {"{\"a\\u0000\":{}}", 0, EMBD_EFORMAT, "bad JSON"},
	    {"{\"\xff\":{}}", 0, EMBD_EFORMAT, "bad JSON"},
	    {"[1]", 0, EMBD_EFORMAT, "does not start with '{'"},
	    /* A long name is cut on a character boundary: 'x' and 31 two-byte characters fit in 64 bytes. */
	    {"{" T("x" E8 E8 E8 E8 E8, "F32", "[1]", "0", "8") "}", 8, EMBD_EFORMAT,
	     "tensor 'x" E4 E4 E4 E4 E4 E4 E4 "\xc3\xa9\xc3\xa9\xc3\xa9...': shape (1,) of F32 needs 4 bytes"},
	};
#undef T
#undef E8
#undef E4
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		p = st_file(1, cases[k].json, 0, z, cases[k].data_len);
		expect_error(p, NULL, cases[k].code, cases[k].fragment);
		unlink(p);
	}

	/* Lying header lengths: 2^62, one byte past the file, zero. */
	const char *json = "{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[0,4]}}";
	p = st_file_lying(1, (uint64_t)1 << 62, json, 4);
	expect_error(p, NULL, EMBD_ETRUNC, "header length 4611686018427387904 is past the end of the");
	unlink(p);
	p = st_file_lying(1, strlen(json) + 5, json, 4);
	expect_error(p, NULL, EMBD_ETRUNC, "is past the end of the");
	unlink(p);
	p = st_file_lying(1, UINT64_MAX, json, 4);
	expect_error(p, NULL, EMBD_ETRUNC, "header length 18446744073709551615 is past the end");
	unlink(p);
	p = st_file_lying(1, 0, json, 4);
	expect_error(p, NULL, EMBD_EFORMAT, "does not start with '{'");
	unlink(p);
	p = fixture_file(1, "\x02\0\0\0", 4);
	expect_error(p, NULL, EMBD_ETRUNC, "the file has 4 bytes; it must start with an 8-byte header length");
	unlink(p);

	/* A header over the reference's 100 MB limit, in a sparse file that does hold it: refused unread. */
	p = st_file_lying(1, EMBD_SAFETENSORS_MAX_HEADER + 1, "{", 0);
	assert_int_equal(truncate(p, 8 + EMBD_SAFETENSORS_MAX_HEADER + 1), 0);
	expect_error(p, NULL, EMBD_EFORMAT, "header length 100000001 is over the 100000000-byte limit");
	unlink(p);
}

/* Nesting is refused from the bytes, before jansson would recurse: 100,000 brackets deep, and just past the limit. */
static void deep_nesting(void **state)
{
	(void)state;
	size_t depth = 100000;
	char *json = malloc(2 * depth + 64);
	assert_non_null(json);
	size_t n = (size_t)sprintf(json, "{\"__metadata__\":");
	memset(json + n, '[', depth);
	memset(json + n + depth, ']', depth);
	strcpy(json + n + 2 * depth, "}");
	const char *p = st_file(1, json, 0, NULL, 0);
	expect_error(p, NULL, EMBD_EFORMAT, "JSON nested deeper than 16 levels");
	unlink(p);
	/* Brackets inside strings (escaped quotes too) do not count; 16 levels parse (the object and 15), 17 do not. */
	n = (size_t)sprintf(json, "{\"__metadata__\":{\"k\":\"[[[[[[[[[[[[[[[[[[[[\\\"[[[[[[[[[[[[[[\"},\"x\":");
	memset(json + n, '[', 15);
	memset(json + n + 15, ']', 15);
	strcpy(json + n + 30, "}");
	p = st_file(1, json, 0, NULL, 0);
	expect_error(p, NULL, EMBD_EFORMAT, "tensor 'x' is not an object"); /* parsed */
	unlink(p);
	json[n + 15] = '[';
	memset(json + n + 16, ']', 16);
	strcpy(json + n + 32, "}");
	p = st_file(1, json, 0, NULL, 0);
	expect_error(p, NULL, EMBD_EFORMAT, "nested deeper than 16");
	unlink(p);
	free(json);
}

/* Tensors of dtypes embd does not serve are fine in the file; sorted listing without the data. */
static void listing_without_rows(void **state)
{
	(void)state;
	unsigned char data[4 + 16 + 8 + 1] = {0};
	const char *json = "{\"__metadata__\":null,"
	                   "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[4,20]},"
	                   "\"s\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4]},"
	                   "\"future\":{\"dtype\":\"F3_NEW\",\"shape\":[5],\"data_offsets\":[20,28],\"extra\":1},"
	                   "\"empty\":{\"dtype\":\"F16\",\"shape\":[0,7],\"data_offsets\":[28,28]},"
	                   "\"nib\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[28,29]}}";
	const char *p = st_file(2, json, 0, data, sizeof data);
	embd_safetensors *st;
	embd_err e;
	if (embd_safetensors_read(p, &st, &e) != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(st->ntensors, 5);
	assert_int_equal(st->header_len, strlen(json));
	assert_int_equal(st->data_offset, 8 + strlen(json));
	assert_int_equal(st->data_len, sizeof data);
	const char *order[] = {"s", "w", "future", "empty", "nib"};
	const char *shapes[] = {"()", "(2, 2)", "(5,)", "(0, 7)", "(2,)"};
	const char *dtypes[] = {"I32", "F32", "F3_NEW", "F16", "F4"};
	for (size_t k = 0; k < 5; k++) {
		char sh[32];
		assert_string_equal(st->tensors[k].name, order[k]);
		assert_string_equal(st->tensors[k].dtype, dtypes[k]);
		embd_safetensors_shape_text(sh, sizeof sh, &st->tensors[k]);
		assert_string_equal(sh, shapes[k]);
	}
	assert_int_equal(st->tensors[1].begin, 4);
	assert_int_equal(st->tensors[1].end, 20);
	/* Two 2-D tensors (w, and the empty f16 one): pick needs a name. */
	const embd_safetensors_tensor *t;
	embd_dtype dt;
	assert_int_equal(embd_safetensors_pick(st, NULL, &t, &dt, &e), EMBD_ECONFIG);
	assert_int_equal(embd_safetensors_pick(st, "w", &t, &dt, &e), 0);
	assert_string_equal(t->name, "w");
	assert_int_equal(dt, EMBD_F32);
	assert_int_equal(embd_safetensors_pick(st, "future", &t, &dt, &e), EMBD_EFORMAT);
	embd_safetensors_free(st);
	embd_safetensors_free(NULL);

	/* The empty table opens as far as the matrix, which refuses it for being empty. */
	embd_matrix *m;
	assert_int_equal(open_st(p, EMBD_FORMAT_AUTO, "empty", &m, &e), EMBD_EFORMAT);
	assert_non_null(strstr(e.msg, "matrix is empty (shape (0, 7))"));
	unlink(p);

	assert_int_equal(embd_safetensors_read("/nonexistent/x.safetensors", &st, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "/nonexistent/x.safetensors"));
	/* Opened as every file lib reads is: not regular is refused unread, saying what it is. */
	assert_int_equal(embd_safetensors_read("/dev/null", &st, &e), EMBD_EFORMAT);
	assert_string_equal(e.msg, "/dev/null: not a regular file (a character device)");
	p = fixture_file(2, "\x02\0\0", 3);
	assert_int_equal(embd_safetensors_read(p, &st, &e), EMBD_ETRUNC);
	assert_non_null(strstr(e.msg, p));
	unlink(p);
	p = st_file_lying(2, (uint64_t)1 << 62, "{}", 0);
	assert_int_equal(embd_safetensors_read(p, &st, &e), EMBD_ETRUNC);
	unlink(p);

	/* Shape text cut short rather than overrun. */
	uint64_t dims[6] = {123456789, 123456789, 123456789, 123456789, 123456789, 123456789};
	embd_safetensors_tensor big = {.name = "x", .dtype = "F32", .ndim = 6, .shape = dims};
	char sh[40];
	size_t n = embd_safetensors_shape_text(sh, sizeof sh, &big);
	assert_int_equal(n, strlen(sh));
	assert_string_equal(sh, "(123456789, 123456789, 123456789...)");
}

/* Sniffing: by the length and '{'; by the .safetensors extension when the bytes do not say. */
static void sniffing(void **state)
{
	(void)state;
	embd_matrix *m;
	embd_err e;
	char named[96];
	const char *p = fixture_file(3, "definitely not a header", 23);
	snprintf(named, sizeof named, "%s.safetensors", p);
	assert_int_equal(rename(p, named), 0);
	assert_int_equal(open_st(named, EMBD_FORMAT_AUTO, NULL, &m, &e), EMBD_ETRUNC);
	assert_non_null(strstr(e.msg, "safetensors header"));
	unlink(named);
	char names[160];
	embd_format_names(names, sizeof names);
	assert_non_null(strstr(names, "safetensors"));
	embd_format f;
	assert_int_equal(embd_format_parse("safetensors", &f), 0);
	assert_int_equal(f, EMBD_FORMAT_SAFETENSORS);
	assert_string_equal(embd_format_name(f), "safetensors");
}

/*
 * Over 4 GiB: a (1048577, 1024) F32 table in a sparse file. Offsets, sizes
 * and the last row's address all need 64 bits.
 */
static void over_4_gib(void **state)
{
	(void)state;
	const char *json = "{\"big\":{\"dtype\":\"F32\",\"shape\":[1048577,1024],\"data_offsets\":[0,4294971392]}}";
	size_t pad = odd_pad(json);
	const char *p = st_file(3, json, pad, NULL, 0);
	uint64_t size = 8 + pad + 4294971392ull;
	int fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	if (ftruncate(fd, (off_t)size) != 0) {
		close(fd);
		unlink(p);
		skip(); /* a filesystem without sparse files this big */
	}
	unsigned char last[4] = {1, 2, 3, 4};
	assert_int_equal(pwrite(fd, last, 4, (off_t)(size - 4)), 4);
	close(fd);
	embd_matrix *m;
	embd_err e;
	if (open_st(p, EMBD_FORMAT_AUTO, NULL, &m, &e) != 0)
		fail_msg("%s", e.msg);
	const embd_matrix_info *i = embd_matrix_info_get(m);
	assert_int_equal(i->rows, 1048577);
	assert_int_equal(i->dim, 1024);
	assert_int_equal(i->data_bytes, 4294971392ull);
	assert_int_equal(i->file_bytes, size);
	assert_memory_equal(i->data + i->data_bytes - 4, last, 4);
	embd_matrix_close(m);
	unlink(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(unaligned_f32_table),  cmocka_unit_test(f16_and_bf16_tables),
	    cmocka_unit_test(tensor_choice),        cmocka_unit_test(several_2d_message_is_bounded),
	    cmocka_unit_test(hostile_headers),      cmocka_unit_test(deep_nesting),
	    cmocka_unit_test(listing_without_rows), cmocka_unit_test(sniffing),
	    cmocka_unit_test(over_4_gib),
	};
	return cmocka_run_group_tests_name("safetensors", tests, NULL, NULL);
}
