/* Unit tests of the .npy header parser and writer. */
#include "fixture.h"

#include "npy.h"

static void roundtrip_2d(void **state)
{
	(void)state;
	char buf[256];
	uint64_t shape[2] = {341479, 300};
	size_t n = embd_npy_header_write(buf, sizeof buf, "<f4", shape, 2);
	assert_int_equal(n % 64, 0);
	assert_int_equal(n, embd_npy_header_size("<f4", shape, 2));
	assert_int_equal(buf[n - 1], '\n');
	embd_npy h;
	assert_int_equal(embd_npy_parse(buf, n, &h, NULL), 0);
	assert_int_equal(h.version, 1);
	assert_int_equal(h.kind, 'f');
	assert_int_equal(h.itemsize, 4);
	assert_int_equal(h.ndim, 2);
	assert_int_equal(h.shape[0], 341479);
	assert_int_equal(h.shape[1], 300);
	assert_int_equal(h.fortran_order, 0);
	assert_int_equal(h.data_offset, n);
}

static void one_d_tuple_has_trailing_comma(void **state)
{
	(void)state;
	char buf[256];
	uint64_t shape[1] = {5};
	size_t n = embd_npy_header_write(buf, sizeof buf, "<i8", shape, 1);
	assert_non_null(memmem(buf, n, "'shape': (5,), }", 16));
	embd_npy h;
	assert_int_equal(embd_npy_parse(buf, n, &h, NULL), 0);
	assert_int_equal(h.ndim, 1);
	assert_int_equal(h.kind, 'i');
	assert_int_equal(h.itemsize, 8);
}

static void write_refuses_small_buffer(void **state)
{
	(void)state;
	char buf[32];
	uint64_t shape[2] = {1, 1};
	assert_int_equal(embd_npy_header_write(buf, sizeof buf, "<f4", shape, 2), 0);
}

static void versions_2_and_3(void **state)
{
	(void)state;
	const char *dict = "{\"descr\": \"<f2\", \"shape\": (3, 4), \"fortran_order\": False}";
	unsigned char buf[128];
	for (int v = 2; v <= 3; v++) {
		size_t n = strlen(dict);
		memcpy(buf, "\x93NUMPY", 6);
		buf[6] = (unsigned char)v;
		buf[7] = 0;
		buf[8] = (unsigned char)n;
		buf[9] = buf[10] = buf[11] = 0;
		memcpy(buf + 12, dict, n);
		embd_npy h;
		assert_int_equal(embd_npy_parse(buf, 12 + n, &h, NULL), 0);
		assert_int_equal(h.version, v);
		assert_int_equal(h.itemsize, 2);
		assert_int_equal(h.shape[1], 4);
		assert_int_equal(h.data_offset, 12 + n);
	}
}

static void expect(const char *dict, int code, const char *fragment)
{
	unsigned char buf[512];
	size_t n = npy_header_v1(buf, dict);
	embd_npy h;
	embd_err e;
	assert_int_equal(embd_npy_parse(buf, n, &h, &e), code);
	if (strstr(e.msg, fragment) == NULL)
		fail_msg("message '%s' lacks '%s'", e.msg, fragment);
}

static void bad_headers(void **state)
{
	(void)state;
	expect("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", EMBD_EDTYPE, "big-endian");
	expect("{'descr': '<c8', 'fortran_order': False, 'shape': (2, 2), }", EMBD_EDTYPE, "not a numeric");
	expect("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", EMBD_EDTYPE, "structured");
	expect("{'descr': '<f4', 'shape': (2, 2), }", EMBD_EFORMAT, "'fortran_order'");
	expect("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2, 2), }", EMBD_EFORMAT, "True or False");
	expect("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", EMBD_EFORMAT, "non-integer");
	expect("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 2), }", EMBD_EFORMAT,
	       "overflowing");
	expect("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'extra': 1}", EMBD_EFORMAT, "'extra'");
	expect("['descr']", EMBD_EFORMAT, "not a dict");
	expect("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)", EMBD_EFORMAT, "expected");
}

static void truncated_and_foreign(void **state)
{
	(void)state;
	embd_npy h;
	assert_int_equal(embd_npy_parse("\x93NUM", 4, &h, NULL), EMBD_ETRUNC);
	assert_int_equal(embd_npy_parse("", 0, &h, NULL), EMBD_ETRUNC);
	assert_int_equal(embd_npy_parse("PK\x03\x04 this is a zip file", 24, &h, NULL), EMBD_EFORMAT);
	unsigned char buf[256];
	size_t n = npy_header_v1(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }");
	embd_err e;
	assert_int_equal(embd_npy_parse(buf, n - 1, &h, &e), EMBD_ETRUNC);
	assert_non_null(strstr(e.msg, "announces"));
	buf[6] = 9;
	assert_int_equal(embd_npy_parse(buf, n, &h, &e), EMBD_EFORMAT);
	assert_non_null(strstr(e.msg, "version 9"));
}

static void count_overflow(void **state)
{
	(void)state;
	embd_npy h = {.ndim = 2, .shape = {UINT64_MAX / 2, 3}};
	uint64_t n;
	assert_int_equal(embd_npy_count(&h, &n), EMBD_EOVERFLOW);
	h.shape[1] = 2;
	assert_int_equal(embd_npy_count(&h, &n), 0);
	assert_int_equal(n, UINT64_MAX / 2 * 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(roundtrip_2d),
	    cmocka_unit_test(one_d_tuple_has_trailing_comma),
	    cmocka_unit_test(write_refuses_small_buffer),
	    cmocka_unit_test(versions_2_and_3),
	    cmocka_unit_test(bad_headers),
	    cmocka_unit_test(truncated_and_foreign),
	    cmocka_unit_test(count_overflow),
	};
	return cmocka_run_group_tests_name("npy", tests, NULL, NULL);
}
