/* Unit tests of the encoders: shortest float text, f16/bf16 conversions, JSON rows, escaping, the error table. */
#include "fixture.h"

#include <math.h>

#include "dtype.h"
#include "encode.h"
#include "vocab.h"

static const char *shortest(float v)
{
	static char buf[EMBD_F32_TEXT_MAX + 1];
	size_t n = embd_f32_shortest(v, buf);
	buf[n] = '\0';
	return buf;
}

static void shortest_known_values(void **state)
{
	(void)state;
	assert_string_equal(shortest(0.1f), "0.1");
	assert_string_equal(shortest(7.063f), "7.063");
	assert_string_equal(shortest(1.0f), "1");
	assert_string_equal(shortest(-2.5f), "-2.5");
	assert_string_equal(shortest(1e-5f), "1e-05");
	assert_string_equal(shortest(0.0f), "0");
	assert_string_equal(shortest(-0.0f), "-0.0");
	assert_string_equal(shortest(16777216.0f), "16777216");
	assert_string_equal(shortest(3.4028235e38f), "3.4028235e+38");
	/* Laid out as Python's repr: fixed from 1e-4 up to 1e16, never "1e+01" for ten. */
	assert_string_equal(shortest(10.0f), "10");
	assert_string_equal(shortest(20.0f), "20");
	assert_string_equal(shortest(1000000.0f), "1000000");
	assert_string_equal(shortest(1e15f), "1000000000000000");
	assert_string_equal(shortest(1e16f), "1e+16");
	assert_string_equal(shortest(0.0001f), "0.0001");
	assert_string_equal(shortest(-1.5e-5f), "-1.5e-05");
	assert_string_equal(shortest(-1234567800000000.0f), "-1234567800000000");
	assert_string_equal(shortest(-1.17549435e-38f), "-1.1754944e-38");
	assert_string_equal(shortest(NAN), "null");
	assert_string_equal(shortest(INFINITY), "null");
	assert_string_equal(shortest(-INFINITY), "null");
}

/* Fewest significant digits that read back to v, by brute force. */
static int min_digits(float v)
{
	char buf[32];
	for (int p = 1; p <= 9; p++) {
		snprintf(buf, sizeof buf, "%.*g", p, (double)v);
		if (strtof(buf, NULL) == v)
			return p;
	}
	return 99;
}

static int digits_of(const char *s)
{
	int fraction = strchr(s, '.') != NULL;
	int n = 0, leading = 1, zeros = 0;
	for (; *s && *s != 'e'; s++) {
		if (*s < '0' || *s > '9')
			continue;
		if (*s == '0' && leading)
			continue;
		leading = 0;
		n++;
		zeros = *s == '0' ? zeros + 1 : 0;
	}
	/* Trailing zeros of an integer written out in full ("1000000") are not significant. */
	return fraction ? n : n - zeros;
}

static void shortest_round_trips_and_is_shortest(void **state)
{
	(void)state;
	uint64_t x = 0x9e3779b97f4a7c15u;
	for (int i = 0; i < 300000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint32_t bits = (uint32_t)x;
		if (i % 3 == 0) /* also powers of two, where the round-trip interval is lopsided */
			bits &= 0xff800000u;
		float v;
		memcpy(&v, &bits, 4);
		if (!isfinite(v) || v == 0.0f)
			continue;
		const char *s = shortest(v);
		if (strtof(s, NULL) != v)
			fail_msg("%s does not read back to %a", s, (double)v);
		char full[128];
		snprintf(full, sizeof full, "%.*g", min_digits(v), (double)v);
		if (strcmp(s, full) != 0 && digits_of(s) > min_digits(v))
			fail_msg("%s for %a is not the shortest (%s)", s, (double)v, full);
	}
}

/* The fast path against the printf/strtof reference on 2 million floats, powers of two and round values included. */
static void fast_path_matches_reference(void **state)
{
	(void)state;
	uint64_t x = 0x2545f4914f6cdd1du;
	for (int i = 0; i < 2000000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint32_t bits = (uint32_t)x;
		if (i % 5 == 0)
			bits &= 0xff800000u; /* powers of two, zeros, infinities, NaN */
		if (i % 7 == 0)
			bits &= 0xfffff000u; /* short mantissas: round decimals */
		float v;
		memcpy(&v, &bits, 4);
		char a[32], r[32];
		size_t la = embd_f32_shortest(v, a), lr = embd_f32_shortest_ref(v, r);
		a[la] = r[lr] = '\0';
		if (strcmp(a, r) == 0)
			continue;
		/* Only where the interval is lopsided may the exact search find a shorter text than the probe. */
		if ((bits & 0x7fffffu) != 0 || la >= lr || strtof(a, NULL) != v)
			fail_msg("0x%08x: fast %s, reference %s", bits, a, r);
	}
	assert_string_equal(shortest(0x1p90f), "1.2379401e+27"); /* NumPy's repr; the probe says 1.23794004e+27 */
	assert_string_equal(shortest(100.0f), "100");
	assert_string_equal(shortest(0x1p-149f), "1e-45");
	assert_string_equal(shortest(0x1p-126f), "1.1754944e-38");
}

static void f16_exhaustive(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 65536; h++) {
		float f = embd_f16_to_f32((uint16_t)h);
		uint16_t back = embd_f32_to_f16(f);
		if (isnan(f))
			assert_true((back & 0x7c00) == 0x7c00 && (back & 0x3ff) != 0);
		else if (back != h)
			fail_msg("half 0x%04x -> %a -> 0x%04x", h, (double)f, back);
	}
	assert_int_equal(embd_f32_to_f16(1.0f), 0x3c00);
	assert_int_equal(embd_f32_to_f16(0.1f), 0x2e66);
	assert_int_equal(embd_f32_to_f16(65504.0f), 0x7bff);
	assert_int_equal(embd_f32_to_f16(65520.0f), 0x7c00);   /* rounds to infinity */
	assert_int_equal(embd_f32_to_f16(65519.0f), 0x7bff);   /* rounds down */
	assert_int_equal(embd_f32_to_f16(0x1p-24f), 0x0001);   /* smallest subnormal */
	assert_int_equal(embd_f32_to_f16(0x1p-25f), 0x0000);   /* tie to even: zero */
	assert_int_equal(embd_f32_to_f16(0x1.8p-25f), 0x0001); /* above the tie */
	assert_int_equal(embd_f32_to_f16(-2.0f), 0xc000);
	/* Ties to even between 1 and the next half (1 + 2^-10). */
	assert_int_equal(embd_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
	assert_int_equal(embd_f32_to_f16(1.0f + 0x1p-10f + 0x1p-11f), 0x3c02);
}

static void bf16(void **state)
{
	(void)state;
	assert_int_equal(embd_f32_to_bf16(1.0f), 0x3f80);
	assert_true(embd_bf16_to_f32(0x3f80) == 1.0f);
	assert_int_equal(embd_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);           /* tie: down to even */
	assert_int_equal(embd_f32_to_bf16(1.0f + 0x1p-7f + 0x1p-8f), 0x3f82); /* tie: up to even */
	assert_true(isnan(embd_bf16_to_f32(embd_f32_to_bf16(NAN))));
	embd_dtype t;
	assert_int_equal(embd_dtype_parse("bfloat16", &t), 0);
	assert_int_equal(t, EMBD_BF16);
	assert_int_equal(embd_dtype_parse("f64", &t), EMBD_EBADPARAM);
	assert_null(embd_dtype_npy_descr(EMBD_BF16));
	assert_string_equal(embd_dtype_npy_descr(EMBD_F16), "<f2");
}

static void json_rows(void **state)
{
	(void)state;
	float data[3][2] = {{0.1f, -2}, {3e-7f, 4}, {NAN, 1e20f}};
	embd_matrix_info m = {
	    .data = (const unsigned char *)data, .rows = 3, .dim = 2, .dtype = EMBD_F32, .row_bytes = 8};
	embd_run runs[] = {{2, 1}, {0, 1}};
	int64_t idv[] = {2, 0};
	embd_ids ids = {(const unsigned char *)idv, 2, 8};
	embd_encode_opts o = {EMBD_F32, 0};
	char out[512];
	float scratch[2];
	assert_true(embd_json_rows_bound(2, 2, 2) < sizeof out);
	size_t n = embd_json_rows_write(out, &m, runs, 2, &ids, NULL, 0, &o, scratch);
	out[n] = '\0';
	assert_string_equal(out, "{\"shape\":[2,2],\"dtype\":\"f32\",\"ids\":[2,0],\"rows\":[[null,1e+20],[0.1,-2]]}");
	runs[0] = (embd_run){1, 1};
	o.dtype = EMBD_F16;
	n = embd_json_rows_write(out, &m, runs, 1, NULL, NULL, 0, &o, scratch);
	out[n] = '\0';
	/* 3e-7 is a half subnormal: 5 * 2^-24 = 2.98023224e-07. */
	assert_string_equal(out, "{\"shape\":[1,2],\"dtype\":\"f16\",\"rows\":[[2.9802322e-07,4]]}");
}

/*
 * embd_json_rows_write into a heap buffer of exactly embd_json_rows_bound
 * bytes and a guard after it: the guard must stay untouched and the length
 * within the bound. Returns the length.
 */
static size_t write_within_bound(const embd_matrix_info *m, const embd_run *runs, size_t nruns, const embd_ids *ids,
                                 embd_dtype dtype)
{
	enum { GUARD = 256 };
	uint64_t nrows = 0;
	for (size_t k = 0; k < nruns; k++)
		nrows += runs[k].count;
	uint64_t bound = embd_json_rows_bound(nrows, m->dim, ids != NULL ? ids->n : 0);
	unsigned char *buf = malloc(bound + GUARD);
	float *scratch = malloc(m->dim * sizeof *scratch);
	assert_non_null(buf);
	assert_non_null(scratch);
	memset(buf + bound, 0xa5, GUARD);
	embd_encode_opts o = {dtype, 0};
	size_t n = embd_json_rows_write((char *)buf, m, runs, nruns, ids, NULL, 0, &o, scratch);
	for (size_t i = 0; i < GUARD; i++)
		if (buf[bound + i] != 0xa5)
			fail_msg("%llu rows x %llu, %zu ids: byte %zu past the bound %llu was written",
			         (unsigned long long)nrows, (unsigned long long)m->dim, ids != NULL ? ids->n : 0, i,
			         (unsigned long long)bound);
	assert_true(n <= bound);
	assert_true(n >= 2 && buf[0] == '{' && buf[n - 1] == '}');
	free(scratch);
	free(buf);
	return n;
}

/* Negative floats in [1e15, 1e16) that need all nine digits: sixteen in fixed notation, the longest text. */
static size_t longest_floats(float *out, size_t want)
{
	size_t k = 0;
	float v = -1e15f;
	for (uint32_t bits = 0xd8635fa9u; k < want && bits < 0xda0e1bcau; bits += 4099) {
		memcpy(&v, &bits, sizeof v);
		char buf[EMBD_F32_TEXT_MAX + 1];
		if (embd_f32_shortest(v, buf) == EMBD_F32_TEXT_MAX)
			out[k++] = v;
	}
	return k;
}

/* The JSON size bound is the only guard of the writer's buffer: check it on every worst case. */
static void json_rows_bound_holds(void **state)
{
	(void)state;
	enum { ROWS = 200, MAXDIM = 100, NLONG = 64 };
	float longv[NLONG];
	assert_int_equal(longest_floats(longv, NLONG), NLONG);
	float *data = malloc((size_t)ROWS * MAXDIM * sizeof *data);
	assert_non_null(data);
	int64_t *idv = malloc(4 * ROWS * sizeof *idv);
	assert_non_null(idv);
	static const uint64_t dims[] = {1, 2, 17, MAXDIM};
	static const uint64_t counts[] = {1, 2, ROWS};
	static const embd_dtype dtypes[] = {EMBD_F32, EMBD_F16, EMBD_BF16};
	for (int fill = 0; fill < 2; fill++) {
		for (size_t i = 0; i < (size_t)ROWS * MAXDIM; i++) {
			static const float special[] = {NAN, INFINITY, -INFINITY, -0.0f};
			data[i] = fill == 0 ? longv[i % NLONG] : special[i % 4];
		}
		for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
			embd_matrix_info m = {.data = (const unsigned char *)data,
			                      .rows = ROWS,
			                      .dim = dims[d],
			                      .dtype = EMBD_F32,
			                      .row_bytes = dims[d] * sizeof(float)};
			for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
				uint64_t nrows = counts[c];
				/* One run, and the same rows as one run each (a gather of scattered ids). */
				embd_run one = {0, nrows};
				embd_run *each = malloc(nrows * sizeof *each);
				assert_non_null(each);
				for (uint64_t r = 0; r < nrows; r++)
					each[r] = (embd_run){r, 1};
				for (size_t t = 0; t < sizeof dtypes / sizeof dtypes[0]; t++) {
					write_within_bound(&m, &one, 1, NULL, dtypes[t]);
					write_within_bound(&m, each, nrows, NULL, dtypes[t]);
					/* The longest ids: 2^63-1, and -2^63 for a caller that did not validate. */
					for (size_t i = 0; i < nrows; i++)
						idv[i] = i % 2 ? INT64_MAX : INT64_MIN;
					embd_ids ids = {(const unsigned char *)idv, nrows, 8};
					write_within_bound(&m, each, nrows, &ids, dtypes[t]);
					for (size_t i = 0; i < nrows; i++)
						idv[i] = INT64_MAX;
					write_within_bound(&m, &one, 1, &ids, dtypes[t]);
				}
				free(each);
			}
		}
	}
	/* The contract allows more ids than rows: the bound counts each id on its own. */
	for (size_t i = 0; i < 4 * ROWS; i++)
		idv[i] = INT64_MIN;
	embd_matrix_info m1 = {
	    .data = (const unsigned char *)data, .rows = ROWS, .dim = 1, .dtype = EMBD_F32, .row_bytes = 4};
	embd_run one = {0, 1};
	embd_ids many = {(const unsigned char *)idv, 4 * ROWS, 8};
	write_within_bound(&m1, &one, 1, &many, EMBD_BF16);
	free(idv);
	free(data);
	/* A bound past 64 bits is UINT64_MAX, which no allocation satisfies, never a wrapped small one. */
	assert_true(embd_json_rows_bound(UINT64_MAX, 1, 0) == UINT64_MAX);
	assert_true(embd_json_rows_bound(1, UINT64_MAX / 8, 0) == UINT64_MAX);
	assert_true(embd_json_rows_bound(1ull << 32, 1ull << 30, 0) == UINT64_MAX);
	assert_true(embd_json_rows_bound(1, 1, SIZE_MAX) == UINT64_MAX);
	assert_true(embd_json_rows_bound(2, 3, 2) == 128 + 2 * (3 * (EMBD_F32_TEXT_MAX + 1) + 3) + 2 * 21);
}

static void converts_and_normalizes(void **state)
{
	(void)state;
	float data[2][2] = {{3, 4}, {0, 0}};
	embd_matrix_info m = {
	    .data = (const unsigned char *)data, .rows = 2, .dim = 2, .dtype = EMBD_F32, .row_bytes = 8};
	embd_run runs[] = {{0, 2}};
	embd_encode_opts o = {EMBD_F32, 1};
	float out[4], scratch[2];
	assert_true(embd_encode_transforms(&m, &o));
	embd_rows_convert(out, &m, runs, 1, &o, scratch);
	assert_true(fabsf(out[0] - 0.6f) < 1e-7f && fabsf(out[1] - 0.8f) < 1e-7f);
	assert_true(out[2] == 0.0f && out[3] == 0.0f); /* a zero row stays zero */
	o = (embd_encode_opts){EMBD_F16, 0};
	uint16_t half[4];
	embd_rows_convert(half, &m, runs, 1, &o, scratch);
	assert_int_equal(half[0], 0x4200); /* 3.0 */
	assert_int_equal(half[1], 0x4400); /* 4.0 */
	o.dtype = EMBD_F32;
	assert_false(embd_encode_transforms(&m, &o));
}

/* embd_json_escape of in into cap bytes with a guard after them; checks the length and the guard. */
static const char *esc(const char *in, size_t cap)
{
	static char buf[512 + 16];
	assert_true(cap <= 512);
	memset(buf, 'G', sizeof buf);
	size_t n = embd_json_escape(buf, cap, in);
	for (size_t i = cap; i < sizeof buf; i++)
		assert_int_equal(buf[i], 'G');
	if (cap == 0) {
		assert_int_equal(n, 0);
		return "";
	}
	assert_true(n < cap);
	assert_int_equal(strlen(buf), n);
	return buf;
}

static void escapes_json(void **state)
{
	(void)state;
	assert_string_equal(esc("a\"b\\c\n\x01", 64), "a\\\"b\\\\c\\u000a\\u0001");
	assert_string_equal(esc("\x1f/\x7f", 64), "\\u001f/\x7f"); /* DEL and '/' need no escape */
	assert_string_equal(esc("caf\xc3\xa9 \xff!", 64), "caf\xc3\xa9 \\ufffd!");
	assert_string_equal(esc("abcdefgh", 5), "abcd");
	assert_string_equal(esc("", 64), "");
}

/* Well-formed UTF-8 at the edges of every row of Unicode's Table 3-7 passes through unchanged. */
static void escape_passes_valid_utf8(void **state)
{
	(void)state;
	static const char *const valid[] = {
	    "\xc2\x80",         /* U+0080 */
	    "\xdf\xbf",         /* U+07FF */
	    "\xe0\xa0\x80",     /* U+0800, the first 3-byte after the overlongs */
	    "\xe1\x80\x80",     /* U+1000 */
	    "\xec\xbf\xbf",     /* U+CFFF */
	    "\xed\x80\x80",     /* U+D000 */
	    "\xed\x9f\xbf",     /* U+D7FF, just below the surrogates */
	    "\xee\x80\x80",     /* U+E000, just above them */
	    "\xef\xbf\xbf",     /* U+FFFF */
	    "\xf0\x90\x80\x80", /* U+10000 */
	    "\xf0\x9f\x98\x80", /* U+1F600 */
	    "\xf3\xbf\xbf\xbf", /* U+FFFFF */
	    "\xf4\x80\x80\x80", /* U+100000 */
	    "\xf4\x8f\xbf\xbf", /* U+10FFFF, the last code point */
	    "\xe2\x80\xa7",     /* U+2027, next to the line separator */
	    "\xe2\x80\xaa",     /* U+202A */
	};
	for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
		char in[16];
		snprintf(in, sizeof in, "<%s>", valid[i]);
		assert_string_equal(esc(in, 64), in);
	}
}

/* Each maximal ill-formed subpart becomes exactly one \ufffd; what follows it is read afresh. */
static void escape_replaces_invalid_utf8(void **state)
{
	(void)state;
#define FFFD "\\ufffd"
	/* Overlongs: C0 and C1 never lead; E0 80-9F and F0 80-8F are not valid second bytes. */
	assert_string_equal(esc("\xc0\xaf", 64), FFFD FFFD);
	assert_string_equal(esc("\xc1\xbf", 64), FFFD FFFD);
	assert_string_equal(esc("\xe0\x80\xaf", 64), FFFD FFFD FFFD);
	assert_string_equal(esc("\xe0\x9f\xbf", 64), FFFD FFFD FFFD);
	assert_string_equal(esc("\xf0\x80\x80\xaf", 64), FFFD FFFD FFFD FFFD);
	assert_string_equal(esc("\xf0\x8f\xbf\xbf", 64), FFFD FFFD FFFD FFFD);
	/* Surrogates, U+D800 and U+DFFF. */
	assert_string_equal(esc("\xed\xa0\x80", 64), FFFD FFFD FFFD);
	assert_string_equal(esc("\xed\xbf\xbf", 64), FFFD FFFD FFFD);
	/* Past U+10FFFF: F4 90 and up, and F5-FF, which never lead. */
	assert_string_equal(esc("\xf4\x90\x80\x80", 64), FFFD FFFD FFFD FFFD);
	assert_string_equal(esc("\xf5\x80\x80\x80", 64), FFFD FFFD FFFD FFFD);
	assert_string_equal(esc("\xf7\xbf\xbf\xbf", 64), FFFD FFFD FFFD FFFD);
	assert_string_equal(esc("\xfe\xff", 64), FFFD FFFD);
	/* Truncated: a good start cut short by the end or by another character is one replacement. */
	assert_string_equal(esc("\xe2\x82", 64), FFFD);
	assert_string_equal(esc("\xe2\x82x", 64), FFFD "x");
	assert_string_equal(esc("\xf0\x9f\x98", 64), FFFD);
	assert_string_equal(esc("\xf0\x9f\x98\xe2\x82\xac", 64), FFFD "\xe2\x82\xac");
	assert_string_equal(esc("\xf4\x8f\xbf\"", 64), FFFD "\\\"");
	assert_string_equal(esc("\xc3", 64), FFFD);
	assert_string_equal(esc("\xc3\xc3\xa9", 64), FFFD "\xc3\xa9");
	/* Stray continuation bytes, one each. */
	assert_string_equal(esc("\x80", 64), FFFD);
	assert_string_equal(esc("a\x80\xbf"
	                        "b",
	                        64),
	                    "a" FFFD FFFD "b");
	assert_string_equal(esc("\xc3\xa9\xa9", 64), "\xc3\xa9" FFFD);
#undef FFFD
}

/* U+2028 and U+2029 are written as escapes, so the JSON can be pasted into JavaScript. */
static void escape_line_separators(void **state)
{
	(void)state;
	assert_string_equal(esc("a\xe2\x80\xa8"
	                        "b\xe2\x80\xa9",
	                        64),
	                    "a\\u2028b\\u2029");
}

/* At the capacity boundary the output stops before a character or escape that does not fit whole. */
static void escape_capacity_boundary(void **state)
{
	(void)state;
	assert_string_equal(esc("a\xc3\xa9", 2), "a");
	assert_string_equal(esc("a\xc3\xa9", 3), "a"); /* room for one byte of the two */
	assert_string_equal(esc("a\xc3\xa9", 4), "a\xc3\xa9");
	assert_string_equal(esc("\xf0\x9f\x98\x80", 4), "");
	assert_string_equal(esc("\xf0\x9f\x98\x80", 5), "\xf0\x9f\x98\x80");
	assert_string_equal(esc("ab\"c", 4), "ab"); /* no "c" after a dropped escape either */
	assert_string_equal(esc("ab\"c", 5), "ab\\\"");
	assert_string_equal(esc("\x01", 6), "");
	assert_string_equal(esc("\x01", 7), "\\u0001");
	assert_string_equal(esc("\xff", 6), "");
	assert_string_equal(esc("\xff", 7), "\\ufffd");
	assert_string_equal(esc("\xe2\x80\xa8", 6), "");
	assert_string_equal(esc("\xe2\x80\xa8", 7), "\\u2028");
	assert_string_equal(esc("abc", 1), "");
	assert_string_equal(esc("abc", 0), "");
}

static void error_table(void **state)
{
	(void)state;
	assert_int_equal(embd_error_status(EMBD_ERANGE), 400);
	assert_string_equal(embd_error_code(EMBD_ERANGE), "id_out_of_range");
	assert_int_equal(embd_error_status(EMBD_ENOROW), 404);
	assert_int_equal(embd_error_status(EMBD_EBUSY), 503);
	assert_int_equal(embd_error_status(EMBD_ETOOMANYIDS), 413);
	assert_int_equal(embd_error_status(EMBD_EMEDIATYPE), 415);
	assert_int_equal(embd_error_status(EMBD_EACCEPT), 406);
	assert_int_equal(embd_error_status(-2), 500);
	assert_string_equal(embd_strerror(-2), "No such file or directory");
	assert_string_equal(embd_error_code(-2), "internal");
}

/* Top-k hits as JSON: ids, escaped tokens with a vocabulary, shortest scores, null for what JSON cannot hold. */
static void json_hits(void **state)
{
	(void)state;
	static const char words[] = "the\nq\"ueen\nk\xc3\xb6ln\n\x01x\n";
	embd_vocab *v;
	embd_err e;
	assert_int_equal(embd_vocab_parse(words, sizeof words - 1, 4, &v, &e), 0);
	embd_hit hits[4] = {{1, 0.7839f}, {2, -0.5f}, {3, NAN}, {0, INFINITY}};
	char out[1024];
	assert_true(embd_json_hits_bound(hits, 4, v) < sizeof out);
	size_t n = embd_json_hits_write(out, hits, 4, v);
	out[n] = '\0';
	assert_string_equal(out,
	                    "[{\"id\":1,\"token\":\"q\\\"ueen\",\"score\":0.7839},{\"id\":2,\"token\":\"k\xc3\xb6ln\","
	                    "\"score\":-0.5},{\"id\":3,\"token\":\"\\u0001x\",\"score\":null},{\"id\":0,\"token\":"
	                    "\"the\",\"score\":null}]");
	n = embd_json_hits_write(out, hits, 2, NULL);
	out[n] = '\0';
	assert_string_equal(out, "[{\"id\":1,\"score\":0.7839},{\"id\":2,\"score\":-0.5}]");
	n = embd_json_hits_write(out, hits, 0, v);
	out[n] = '\0';
	assert_string_equal(out, "[]");
	/* The bound holds for the longest id and score, and a token escaped six bytes per byte. */
	embd_hit worst = {UINT64_MAX, -1.23456789e-5f};
	n = embd_json_hits_write(out, &worst, 1, NULL);
	assert_true(n <= embd_json_hits_bound(&worst, 1, NULL));
	embd_vocab_free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(shortest_known_values),
	    cmocka_unit_test(shortest_round_trips_and_is_shortest),
	    cmocka_unit_test(fast_path_matches_reference),
	    cmocka_unit_test(f16_exhaustive),
	    cmocka_unit_test(bf16),
	    cmocka_unit_test(json_rows),
	    cmocka_unit_test(json_rows_bound_holds),
	    cmocka_unit_test(converts_and_normalizes),
	    cmocka_unit_test(escapes_json),
	    cmocka_unit_test(escape_passes_valid_utf8),
	    cmocka_unit_test(escape_replaces_invalid_utf8),
	    cmocka_unit_test(escape_line_separators),
	    cmocka_unit_test(escape_capacity_boundary),
	    cmocka_unit_test(error_table),
	    cmocka_unit_test(json_hits),
	};
	return cmocka_run_group_tests_name("encode", tests, NULL, NULL);
}
