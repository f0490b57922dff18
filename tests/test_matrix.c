/* Unit tests of opening, validating and mapping matrices through the format table. */
#include "fixture.h"

#include <errno.h>
#include <sys/stat.h>

#include "matrix.h"
#include "vocab.h"

/* A .npy file of the given dict followed by data_len bytes of data; returns its path. */
static const char *npy_file(int slot, const char *dict, const void *data, size_t data_len)
{
	unsigned char buf[4096];
	size_t n = npy_header_v1(buf, dict);
	memcpy(buf + n, data, data_len);
	return fixture_file(slot, buf, n + data_len);
}

static int open_path(const char *path, embd_matrix **m, embd_err *e)
{
	embd_matrix_spec spec = {.path = path};
	return embd_matrix_open(&spec, m, e);
}

static void opens_f32_npy(void **state)
{
	(void)state;
	float data[12];
	for (int i = 0; i < 12; i++)
		data[i] = (float)i * 0.5f;
	const char *p = npy_file(0, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", data, sizeof data);
	embd_matrix *m;
	embd_err e;
	assert_int_equal(open_path(p, &m, &e), 0);
	const embd_matrix_info *i = embd_matrix_info_get(m);
	assert_int_equal(i->rows, 3);
	assert_int_equal(i->dim, 4);
	assert_int_equal(i->dtype, EMBD_F32);
	assert_int_equal(i->row_bytes, 16);
	assert_int_equal(i->format, EMBD_FORMAT_NPY);
	assert_memory_equal(i->data, data, sizeof data);
	assert_string_equal(i->source, p);
	embd_matrix_close(m);
	unlink(p);
}

static void opens_f16_npy_with_extra_trailing_bytes(void **state)
{
	(void)state;
	uint16_t data[9] = {0x3c00, 0, 0, 0, 0x3c00, 0, 0, 0, 0x3c00};
	const char *p = npy_file(0, "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 4), }", data, sizeof data);
	embd_matrix *m;
	assert_int_equal(open_path(p, &m, NULL), 0);
	assert_int_equal(embd_matrix_info_get(m)->dtype, EMBD_F16);
	assert_int_equal(embd_matrix_info_get(m)->row_bytes, 8);
	embd_matrix_close(m);
	unlink(p);
}

static void expect_open_error(const char *dict, size_t data_len, int code, const char *fragment)
{
	static unsigned char zeros[2048];
	const char *p = npy_file(1, dict, zeros, data_len);
	/* A failed open leaves *out as it was: a sentinel shows it was not written (NULL would pass either way). */
	embd_matrix *const untouched = (embd_matrix *)&zeros;
	embd_matrix *m = untouched;
	embd_err e;
	assert_int_equal(open_path(p, &m, &e), code);
	assert_ptr_equal(m, untouched);
	if (strstr(e.msg, fragment) == NULL)
		fail_msg("message '%s' lacks '%s'", e.msg, fragment);
	assert_non_null(strstr(e.msg, p)); /* every message names the file */
	unlink(p);
}

static void rejects_bad_files(void **state)
{
	(void)state;
	/* A header that lies about its shape: 10 x 4 floats need 160 bytes, 100 follow. */
	expect_open_error("{'descr': '<f4', 'fortran_order': False, 'shape': (10, 4), }", 100, EMBD_ETRUNC,
	                  "needs 160 data bytes");
	expect_open_error("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16, EMBD_EFORMAT,
	                  "Fortran order");
	expect_open_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", 32, EMBD_EDTYPE, "'<f8'");
	expect_open_error("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }", 16, EMBD_EDTYPE, "'<i4'");
	expect_open_error("{'descr': '<f4', 'fortran_order': False, 'shape': (16,), }", 64, EMBD_EFORMAT,
	                  "1 dimensions");
	expect_open_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }", 32, EMBD_EFORMAT,
	                  "3 dimensions");
	expect_open_error(
	    "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4611686018427387904), }", 16,
	    EMBD_EOVERFLOW, "overflows");
	expect_open_error("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4), }", 0, EMBD_EFORMAT, "empty");
}

static void truncated_inside_header(void **state)
{
	(void)state;
	unsigned char buf[128];
	size_t n = npy_header_v1(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }");
	const char *p = fixture_file(2, buf, n / 2);
	embd_matrix *m;
	embd_err e;
	assert_int_equal(open_path(p, &m, &e), EMBD_ETRUNC);
	unlink(p);
	p = fixture_file(2, "", 0);
	assert_int_equal(open_path(p, &m, &e), EMBD_ETRUNC);
	assert_non_null(strstr(e.msg, "empty"));
	unlink(p);
}

static void missing_file_is_errno(void **state)
{
	(void)state;
	embd_matrix *m;
	embd_err e;
	assert_int_equal(open_path("/nonexistent/embd.npy", &m, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "/nonexistent/embd.npy"));
	assert_int_equal(open_path("/tmp", &m, &e), EMBD_EFORMAT);
}

static void raw_files(void **state)
{
	(void)state;
	float data[6] = {1, 2, 3, 4, 5, 6};
	const char *p = fixture_file(3, data, sizeof data);
	embd_matrix_spec spec = {.path = p, .format = EMBD_FORMAT_RAW, .dim = 3, .dtype = EMBD_F32};
	embd_matrix *m;
	embd_err e;
	assert_int_equal(embd_matrix_open(&spec, &m, &e), 0);
	assert_int_equal(embd_matrix_info_get(m)->rows, 2); /* derived from the size */
	assert_int_equal(embd_matrix_info_get(m)->format, EMBD_FORMAT_RAW);
	embd_matrix_close(m);

	spec.format = EMBD_FORMAT_AUTO; /* a dim makes a non-.npy file raw */
	assert_int_equal(embd_matrix_open(&spec, &m, &e), 0);
	embd_matrix_close(m);

	spec.dim = 4; /* 24 bytes is not whole 16-byte rows */
	assert_int_equal(embd_matrix_open(&spec, &m, &e), EMBD_EFORMAT);
	assert_non_null(strstr(e.msg, "whole number"));

	spec.dim = 3;
	spec.rows = 3; /* more rows than the file holds */
	assert_int_equal(embd_matrix_open(&spec, &m, &e), EMBD_ETRUNC);

	spec.rows = 1;
	spec.offset = 12; /* skip a 3-float header: one row left */
	assert_int_equal(embd_matrix_open(&spec, &m, &e), 0);
	float first;
	memcpy(&first, embd_matrix_info_get(m)->data, 4);
	assert_true(first == 4.0f);
	embd_matrix_close(m);

	spec.offset = 100;
	assert_int_equal(embd_matrix_open(&spec, &m, &e), EMBD_ETRUNC);

	spec = (embd_matrix_spec){.path = p, .format = EMBD_FORMAT_RAW, .dtype = EMBD_F32};
	assert_int_equal(embd_matrix_open(&spec, &m, &e), EMBD_ECONFIG);

	spec.format = EMBD_FORMAT_AUTO; /* neither .npy nor a dim: say what is missing */
	assert_int_equal(embd_matrix_open(&spec, &m, &e), EMBD_EUNKNOWNFORMAT);
	assert_non_null(strstr(e.msg, "--dim"));
	unlink(p);
}

/* A spec field the file's format does not read is refused before a row is read, naming every such flag. */
static void refuses_what_the_format_does_not_use(void **state)
{
	(void)state;
	float data[6] = {1, 2, 3, 4, 5, 6};
	const char *npy = npy_file(4, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data, sizeof data);
	static const char glove[] = "a 1 2\nb 3 4\n";
	const char *txt = fixture_file(5, glove, sizeof glove - 1);
	embd_matrix *m;
	embd_err e;
	embd_matrix_spec spec = {.path = npy, .dim = 99, .dtype = EMBD_BF16, .dtype_given = 1, .rows = 5};
	assert_int_equal(embd_matrix_open(&spec, &m, &e), EMBD_ENOTAPPLICABLE);
	char want[512];
	snprintf(want, sizeof want,
	         "%s: a npy file carries its own shape and dtype: --rows, --dim, --dtype (matrix.rows, matrix.dim, "
	         "matrix.dtype) do not apply; rows, dim, dtype and offset describe a raw matrix (--format raw)",
	         npy);
	assert_string_equal(e.msg, want);
	/* dtype alone counts when named, even as the f32 a raw file takes by default. */
	spec = (embd_matrix_spec){.path = npy, .dtype = EMBD_F32, .dtype_given = 1};
	assert_int_equal(embd_matrix_open(&spec, &m, &e), EMBD_ENOTAPPLICABLE);
	assert_non_null(strstr(e.msg, ": --dtype (matrix.dtype) does not apply;"));
	spec = (embd_matrix_spec){.path = npy, .offset = 8, .format = EMBD_FORMAT_NPY};
	assert_int_equal(embd_matrix_open(&spec, &m, &e), EMBD_ENOTAPPLICABLE);
	assert_non_null(strstr(e.msg, ": --offset (matrix.offset) does not apply;"));
	/* A vocabulary file applies to npy; a tensor does not. */
	spec = (embd_matrix_spec){.path = npy, .vocab = "words.txt"};
	assert_int_equal(embd_matrix_open(&spec, &m, &e), 0);
	embd_matrix_close(m);
	spec = (embd_matrix_spec){.path = npy, .tensor = "w"};
	assert_int_equal(embd_matrix_open(&spec, &m, &e), EMBD_ENOTAPPLICABLE);
	assert_non_null(strstr(e.msg, "a npy file holds no named tensors: --tensor (matrix.tensor) does not apply"));
	/* A text format reads none of them, a vocabulary file included; header_only (embd info) checks too. */
	spec = (embd_matrix_spec){.path = txt, .vocab = "words.txt", .header_only = 1};
	assert_int_equal(embd_matrix_open(&spec, &m, &e), EMBD_ENOTAPPLICABLE);
	assert_non_null(strstr(e.msg, "a glove file names its rows itself: --vocab (matrix.vocab) does not apply"));
	spec = (embd_matrix_spec){.path = txt, .dim = 2};
	assert_int_equal(embd_matrix_open(&spec, &m, &e), EMBD_ENOTAPPLICABLE);
	/* The demo matrix has its own shape; raw reads them all. */
	spec = (embd_matrix_spec){.dim = 2};
	assert_int_equal(embd_matrix_open(&spec, &m, &e), EMBD_ENOTAPPLICABLE);
	assert_non_null(strstr(e.msg, "builtin:demo: the demo matrix carries its own shape and dtype"));
	spec = (embd_matrix_spec){
	    .path = npy, .format = EMBD_FORMAT_RAW, .dim = 2, .dtype_given = 1, .rows = 1, .offset = 8, .vocab = "w"};
	assert_int_equal(embd_matrix_open(&spec, &m, &e), 0);
	embd_matrix_close(m);
	unlink(npy);
	unlink(txt);
}

static void demo_matrix(void **state)
{
	(void)state;
	embd_matrix_spec spec = {0};
	embd_matrix *m;
	assert_int_equal(embd_matrix_open(&spec, &m, NULL), 0);
	const embd_matrix_info *i = embd_matrix_info_get(m);
	assert_int_equal(i->rows, EMBD_DEMO_ROWS);
	assert_int_equal(i->dim, EMBD_DEMO_DIM);
	assert_string_equal(i->source, "builtin:demo");
	const float *f = (const float *)i->data;
	assert_true(f[7 * EMBD_DEMO_DIM + 63] == 7.0f + 63.0f / 1000.0f);
	embd_matrix_close(m);
}

/* A FIFO is refused at once (O_NONBLOCK), never waited on; so are directories. */
static void refuses_special_files(void **state)
{
	(void)state;
	char dir[] = "/tmp/embd-test-dirXXXXXX";
	assert_non_null(mkdtemp(dir));
	char fifo[64];
	snprintf(fifo, sizeof fifo, "%s/fifo", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	embd_matrix *m = NULL;
	embd_err e;
	assert_int_equal(open_path(fifo, &m, &e), EMBD_EFORMAT);
	assert_non_null(strstr(e.msg, "not a regular file (a FIFO)"));
	assert_null(m);
	assert_int_equal(open_path(dir, &m, &e), EMBD_EFORMAT);
	assert_non_null(strstr(e.msg, "(a directory)"));
	unlink(fifo);
	rmdir(dir);
}

/* The format table names every format once: parse, name and the list agree. */
static void format_table(void **state)
{
	(void)state;
	char names[128];
	embd_format_names(names, sizeof names);
	assert_string_equal(names, "auto, npy, safetensors, raw, glove, word2vec, word2vec_bin, demo");
	embd_format f;
	assert_int_equal(embd_format_parse("raw", &f), 0);
	assert_int_equal(f, EMBD_FORMAT_RAW);
	assert_string_equal(embd_format_name(f), "raw");
	assert_int_equal(embd_format_parse("auto", &f), 0);
	assert_int_equal(f, EMBD_FORMAT_AUTO);
	assert_int_equal(embd_format_parse("csv", &f), EMBD_EBADPARAM);
	/* A file named .npy without the magic is taken as .npy, and its header is then refused. */
	const char *p = fixture_file(0, "not an npy file at all", 22);
	char named[80];
	snprintf(named, sizeof named, "%s.npy", p);
	assert_int_equal(rename(p, named), 0);
	embd_matrix *m;
	embd_err e;
	assert_int_equal(open_path(named, &m, &e), EMBD_EFORMAT);
	unlink(named);
	/* No magic, no extension, no --dim: the error says what would work. */
	p = fixture_file(0, "0123456789abcdef", 16);
	assert_int_equal(open_path(p, &m, &e), EMBD_EUNKNOWNFORMAT);
	assert_non_null(strstr(e.msg, "--format"));
	unlink(p);
	/* An explicit format needs a file, except the demo. */
	embd_matrix_spec spec = {.format = EMBD_FORMAT_NPY};
	assert_int_equal(embd_matrix_open(&spec, &m, &e), EMBD_ECONFIG);
}

/* GloVe and word2vec text are found by their first line, parsed into the heap, and carry their words. */
static void text_formats(void **state)
{
	(void)state;
	static const char glove[] = "the 0.1 -2 3e-2\nk\xc3\xb6ln 1 2 3\nx 4 5 6\n";
	const char *p = fixture_file(0, glove, sizeof glove - 1);
	embd_matrix *m;
	embd_err e;
	assert_int_equal(open_path(p, &m, &e), 0);
	const embd_matrix_info *i = embd_matrix_info_get(m);
	assert_int_equal(i->format, EMBD_FORMAT_GLOVE);
	assert_int_equal(i->rows, 3);
	assert_int_equal(i->dim, 3);
	assert_int_equal(i->dtype, EMBD_F32);
	assert_int_equal(i->heap_bytes, 36);
	assert_int_equal(i->file_bytes, sizeof glove - 1);
	float row0[3];
	memcpy(row0, i->data, sizeof row0);
	assert_true(row0[0] == 0.1f && row0[1] == -2.0f && row0[2] == 3e-2f);
	embd_vocab *v = embd_matrix_take_vocab(m);
	assert_non_null(v);
	assert_null(embd_matrix_take_vocab(m)); /* handed over once */
	assert_int_equal(embd_vocab_size(v), 3);
	assert_int_equal(embd_vocab_find(v, "k\xc3\xb6ln", 5), 1);
	embd_vocab_free(v);
	embd_matrix_close(m);
	unlink(p);

	static const char w2v[] = "2 2\nof 1 2\nand 3 4\n";
	p = fixture_file(0, w2v, sizeof w2v - 1);
	assert_int_equal(open_path(p, &m, &e), 0);
	assert_int_equal(embd_matrix_info_get(m)->format, EMBD_FORMAT_WORD2VEC);
	assert_int_equal(embd_matrix_info_get(m)->rows, 2);
	embd_matrix_close(m); /* the vocabulary not taken is freed with the matrix (LeakSanitizer checks) */
	unlink(p);

	unsigned char bin[64];
	size_t n = (size_t)sprintf((char *)bin, "2 2\n");
	float f[2][2] = {{1.5f, -2.0f}, {3.0f, 4.25f}};
	n += (size_t)sprintf((char *)bin + n, "a ");
	memcpy(bin + n, f[0], 8);
	n += 8;
	n += (size_t)sprintf((char *)bin + n, "b ");
	memcpy(bin + n, f[1], 8);
	n += 8;
	p = fixture_file(0, bin, n);
	assert_int_equal(open_path(p, &m, &e), 0);
	i = embd_matrix_info_get(m);
	assert_int_equal(i->format, EMBD_FORMAT_WORD2VEC_BIN);
	assert_memory_equal(i->data, f, sizeof f);
	embd_matrix_close(m);

	/* header_only: shape and first words, no rows read. */
	embd_matrix_spec spec = {.path = p, .header_only = 1};
	assert_int_equal(embd_matrix_open(&spec, &m, &e), 0);
	i = embd_matrix_info_get(m);
	assert_int_equal(i->rows, 2);
	assert_int_equal(i->dim, 2);
	assert_null(i->data);
	assert_int_equal(i->heap_bytes, 0);
	v = embd_matrix_take_vocab(m);
	assert_int_equal(embd_vocab_size(v), 2);
	assert_string_equal(embd_vocab_token(v, 1, NULL), "b");
	embd_vocab_free(v);
	embd_matrix_close(m);
	unlink(p);

	/* A bad line names its line; --format forces a reading. */
	static const char bad[] = "a 1 2\nb 1 x\n";
	p = fixture_file(0, bad, sizeof bad - 1);
	assert_int_equal(open_path(p, &m, &e), EMBD_EFORMAT);
	assert_non_null(strstr(e.msg, "line 2"));
	spec = (embd_matrix_spec){.path = p, .format = EMBD_FORMAT_WORD2VEC};
	assert_int_equal(embd_matrix_open(&spec, &m, &e), EMBD_EFORMAT);
	assert_non_null(strstr(e.msg, "line 1: not a `rows dim` header"));
	unlink(p);
}

/* header_only on GloVe counts lines and keeps the first eight words. */
/*
 * A word2vec text file whose first record (dim 10,000: ~70 KB) runs past the
 * sniff window is text wherever the window cuts it: the words of 1 to 7 bytes
 * move the cut through every byte of a field " -1e-05", cutting after the
 * '-', the 'e', the space... (Auto-detection once read such files as binary
 * and refused them, while `convert` and gensim read them.)
 */
static void long_word2vec_text_lines(void **state)
{
	(void)state;
	enum { DIM = 10000 };
	size_t cap = 2 * (8 + DIM * 7 + 2) + 16;
	char *text = malloc(cap);
	assert_non_null(text);
	for (int wl = 1; wl <= 7; wl++) {
		size_t n = (size_t)sprintf(text, "2 %d\n", DIM);
		for (int r = 0; r < 2; r++) {
			for (int c = 0; c < wl; c++)
				text[n++] = (char)('a' + r);
			for (int k = 0; k < DIM; k++)
				n += (size_t)sprintf(text + n, " -1e-05");
			text[n++] = '\n';
		}
		const char *p = fixture_file(0, text, n);
		embd_matrix *m;
		embd_err e;
		int rc = open_path(p, &m, &e);
		if (rc != 0)
			fail_msg("word of %d bytes: %s", wl, e.msg);
		const embd_matrix_info *i = embd_matrix_info_get(m);
		assert_int_equal(i->format, EMBD_FORMAT_WORD2VEC);
		assert_int_equal(i->rows, 2);
		assert_int_equal(i->dim, DIM);
		assert_true(((const float *)i->data)[2 * DIM - 1] == -1e-05f);
		embd_matrix_close(m);
		unlink(p);
	}
	free(text);
}

static void text_peek(void **state)
{
	(void)state;
	char text[4096];
	size_t n = 0;
	for (int r = 0; r < 20; r++)
		n += (size_t)sprintf(text + n, "w%d %d.5 1\n", r, r);
	n += (size_t)sprintf(text + n, "\n\n");
	const char *p = fixture_file(0, text, n);
	embd_matrix_spec spec = {.path = p, .header_only = 1};
	embd_matrix *m;
	embd_err e;
	assert_int_equal(embd_matrix_open(&spec, &m, &e), 0);
	assert_int_equal(embd_matrix_info_get(m)->rows, 20);
	assert_int_equal(embd_matrix_info_get(m)->dim, 2);
	embd_vocab *v = embd_matrix_take_vocab(m);
	assert_int_equal(embd_vocab_size(v), 8);
	assert_string_equal(embd_vocab_token(v, 7, NULL), "w7");
	embd_vocab_free(v);
	embd_matrix_close(m);
	unlink(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(opens_f32_npy),
	    cmocka_unit_test(opens_f16_npy_with_extra_trailing_bytes),
	    cmocka_unit_test(rejects_bad_files),
	    cmocka_unit_test(truncated_inside_header),
	    cmocka_unit_test(missing_file_is_errno),
	    cmocka_unit_test(raw_files),
	    cmocka_unit_test(refuses_what_the_format_does_not_use),
	    cmocka_unit_test(demo_matrix),
	    cmocka_unit_test(refuses_special_files),
	    cmocka_unit_test(format_table),
	    cmocka_unit_test(text_formats),
	    cmocka_unit_test(long_word2vec_text_lines),
	    cmocka_unit_test(text_peek),
	};
	return cmocka_run_group_tests_name("matrix", tests, NULL, NULL);
}
