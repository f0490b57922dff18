/* Unit tests of the GloVe, word2vec text and word2vec binary parsers; expected bits are np.float32(text). */
#include "fixture.h"

#include "textvec.h"

static uint32_t bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	return u;
}

static const char *word(const embd_textvec *tv, uint64_t i)
{
	return tv->words + tv->word_off[i];
}

static int parse_str(const char *s, embd_textvec_kind kind, int skip, embd_textvec *tv, embd_err *e)
{
	embd_textvec_opts o = {.skip_bad = skip, .threads = 0};
	return embd_textvec_parse((const unsigned char *)s, strlen(s), kind, &o, tv, e);
}

/* The arena contract: word_off has rows + 1 entries, each word is NUL-terminated, the last ends the arena. */
static void check_arena(const embd_textvec *tv)
{
	assert_int_equal(tv->word_off[0], 0);
	for (uint64_t i = 0; i < tv->rows; i++) {
		uint64_t b = tv->word_off[i], n = tv->word_off[i + 1] - b;
		assert_true(n >= 2);
		assert_int_equal(tv->words[b + n - 1], '\0');
		assert_int_equal(strlen(tv->words + b), n - 1);
	}
	assert_int_equal(tv->word_off[tv->rows], tv->words_bytes);
	/* The vocabulary the duplicate check built: token i is the word of row i. */
	assert_non_null(tv->vocab);
	assert_int_equal(embd_vocab_size(tv->vocab), tv->rows);
	for (uint64_t i = 0; i < tv->rows; i++) {
		assert_string_equal(embd_vocab_token(tv->vocab, i, NULL), tv->words + tv->word_off[i]);
		assert_int_equal(
		    embd_vocab_find(tv->vocab, tv->words + tv->word_off[i], strlen(tv->words + tv->word_off[i])),
		    (int64_t)i);
	}
}

/*
 * A word no vocabulary can hold (a final carriage return) stays a row, as
 * before the vocabulary was built here, and the vocabulary is left out;
 * duplicates after it still name the right first line.
 */
static void a_word_no_vocabulary_holds(void **state)
{
	(void)state;
	embd_textvec tv;
	embd_err e;
	assert_int_equal(parse_str("a\r 1 2\nb 3 4\nb 5 6\n", EMBD_TEXTVEC_GLOVE, 1, &tv, &e), 0);
	assert_int_equal(tv.rows, 2);
	assert_int_equal(tv.skipped, 1);
	assert_string_equal(tv.first_skip, "line 3: duplicate word 'b' (first on line 2)");
	assert_string_equal(word(&tv, 0), "a\r");
	assert_null(tv.vocab);
	embd_textvec_free(&tv);
	assert_int_equal(parse_str("y 1\na\r 2\nx 3\nx 4\n", EMBD_TEXTVEC_GLOVE, 0, &tv, &e), EMBD_EFORMAT);
	assert_string_equal(e.msg, "line 4: duplicate word 'x' (first on line 3)");
	assert_int_equal(parse_str("y 1\na\r 2\nb\r 2\ny 3\nz 4\nz 5\n", EMBD_TEXTVEC_GLOVE, 1, &tv, &e), 0);
	assert_int_equal(tv.rows, 4);
	assert_string_equal(tv.first_skip, "line 4: duplicate word 'y' (first on line 1)");
	assert_int_equal(tv.skipped, 2);
	assert_string_equal(word(&tv, 3), "z");
	embd_textvec_free(&tv);
}

static void glove_exact_floats_and_words(void **state)
{
	(void)state;
	/* CRLF, trailing spaces and tabs (gensim rstrips them), the last line without a newline. */
	const char *s = "the 0.418 0.24968 -0.41242\r\n"
	                "of 0.1 -2.5e-3 1e39 \t \r\n"
	                "über -nan inf 1_000.5\n"
	                "x\ty \t7\v -0 3.14159";
	embd_textvec tv;
	embd_err e;
	assert_int_equal(parse_str(s, EMBD_TEXTVEC_GLOVE, 0, &tv, &e), 0);
	assert_int_equal(tv.rows, 4);
	assert_int_equal(tv.dim, 3);
	assert_int_equal(tv.skipped, 0);
	static const uint32_t want[] = {0x3ed60419, 0x3e7fac1d, 0xbed328b7, 0x3dcccccd, 0xbb23d70a, 0x7f800000,
	                                0xffc00000, 0x7f800000, 0x447a2000, 0x40e00000, 0x80000000, 0x40490fd0};
	for (size_t i = 0; i < 12; i++)
		assert_int_equal(bits(tv.data[i]), want[i]);
	assert_string_equal(word(&tv, 0), "the");
	assert_string_equal(word(&tv, 1), "of");
	assert_string_equal(word(&tv, 2), "über");
	assert_string_equal(word(&tv, 3), "x\ty");
	check_arena(&tv);
	embd_textvec_free(&tv);
	assert_null(tv.data);
	embd_textvec_free(NULL);
}

/* The double rounding np.float32 does: strtof would give 0x3f800001 for the second (just above a midpoint). */
static void rounds_through_double_like_numpy(void **state)
{
	(void)state;
	const char *s = "mid 1.000000059604644776257986737988403547205962240695953369140625\n"
	                "above 1.0000000596046447762579867379884035472059622406959533691406250000000000000001\n"
	                "sub 7.006492321624087e-46\n"
	                "under 1e-46\n";
	embd_textvec tv;
	embd_err e;
	assert_int_equal(parse_str(s, EMBD_TEXTVEC_GLOVE, 0, &tv, &e), 0);
	assert_int_equal(tv.rows, 4);
	assert_int_equal(bits(tv.data[0]), 0x3f800000);
	assert_int_equal(bits(tv.data[1]), 0x3f800000);
	assert_int_equal(bits(tv.data[2]), 0x00000001);
	assert_int_equal(bits(tv.data[3]), 0x00000000);
	embd_textvec_free(&tv);
}

static void word2vec_text_with_header(void **state)
{
	(void)state;
	/* fastText .vec: a space before every newline; a blank line at the very end is not a row. */
	const char *s = "2 2 \r\n</s> 0.5 -1 \r\nb 2 3 \n\n";
	embd_textvec tv;
	embd_err e;
	assert_int_equal(parse_str(s, EMBD_TEXTVEC_W2V_TEXT, 0, &tv, &e), 0);
	assert_int_equal(tv.rows, 2);
	assert_int_equal(tv.dim, 2);
	assert_string_equal(word(&tv, 0), "</s>");
	assert_string_equal(word(&tv, 1), "b");
	assert_true(tv.data[0] == 0.5f && tv.data[1] == -1.0f && tv.data[2] == 2.0f && tv.data[3] == 3.0f);
	check_arena(&tv);
	embd_textvec_free(&tv);
}

static size_t bin_record(unsigned char *dst, const char *w, const float *v, size_t dim, int newline)
{
	size_t n = strlen(w);
	memcpy(dst, w, n);
	dst[n++] = ' ';
	for (size_t k = 0; k < dim; k++) {
		uint32_t u = bits(v[k]);
		for (int b = 0; b < 4; b++)
			dst[n++] = (unsigned char)(u >> (8 * b));
	}
	if (newline)
		dst[n++] = '\n';
	return n;
}

static void word2vec_binary(void **state)
{
	(void)state;
	unsigned char buf[256];
	const float a[3] = {1.5f, -0.0f, 3e-39f}, b[3] = {-2.0f, 1e30f, 0.25f};
	size_t n = 0;
	memcpy(buf, "2 3\n", 4);
	n = 4;
	n += bin_record(buf + n, "king", a, 3, 1);
	n += bin_record(buf + n, "日本", b, 3, 0); /* gensim 4 writes no newline between records */
	embd_textvec tv;
	embd_err e;
	assert_int_equal(embd_textvec_sniff(buf, n), EMBD_TEXTVEC_W2V_BIN);
	assert_int_equal(embd_textvec_parse(buf, n, EMBD_TEXTVEC_W2V_BIN, NULL, &tv, &e), 0);
	assert_int_equal(tv.rows, 2);
	assert_int_equal(tv.dim, 3);
	assert_memory_equal(tv.data, a, sizeof a);
	assert_memory_equal(tv.data + 3, b, sizeof b);
	assert_string_equal(word(&tv, 0), "king");
	assert_string_equal(word(&tv, 1), "日本");
	check_arena(&tv);
	embd_textvec_free(&tv);

	/* A record that runs past the end: its number, at any cut. */
	for (size_t cut = 4 + 5 + 12 + 1 + 1; cut < n; cut++) {
		int rc = embd_textvec_parse(buf, cut, EMBD_TEXTVEC_W2V_BIN, NULL, &tv, &e);
		assert_int_equal(rc, EMBD_ETRUNC);
		assert_non_null(strstr(e.msg, "record 2 "));
		assert_null(tv.data);
	}
	/* Bytes after the last record are a header that disagrees with the body. */
	unsigned char more[300];
	memcpy(more, buf, n);
	memcpy(more + n, "x 1234", 6);
	assert_int_equal(embd_textvec_parse(more, n + 6, EMBD_TEXTVEC_W2V_BIN, NULL, &tv, &e), EMBD_EFORMAT);
	assert_non_null(strstr(e.msg, "after the header's 2 records"));
}

static void word2vec_binary_bad_word_and_duplicate(void **state)
{
	(void)state;
	unsigned char buf[256];
	const float v[2] = {1, 2};
	size_t n = 4;
	memcpy(buf, "3 2\n", 4);
	n += bin_record(buf + n, "a", v, 2, 1);
	n += bin_record(buf + n, "b\xff", v, 2, 1);
	n += bin_record(buf + n, "a", v, 2, 1);
	embd_textvec tv;
	embd_err e;
	assert_int_equal(embd_textvec_parse(buf, n, EMBD_TEXTVEC_W2V_BIN, NULL, &tv, &e), EMBD_EFORMAT);
	assert_string_equal(e.msg, "record 2 (byte 15): invalid UTF-8 in the word");
	embd_textvec_opts o = {.skip_bad = 1};
	assert_int_equal(embd_textvec_parse(buf, n, EMBD_TEXTVEC_W2V_BIN, &o, &tv, &e), 0);
	assert_int_equal(tv.rows, 1);
	assert_int_equal(tv.skipped, 2);
	assert_string_equal(tv.first_skip, "record 2: invalid UTF-8 in the word");
	embd_textvec_free(&tv);
	buf[16] = 'c'; /* "bc": now only the duplicate */
	assert_int_equal(embd_textvec_parse(buf, n, EMBD_TEXTVEC_W2V_BIN, NULL, &tv, &e), EMBD_EFORMAT);
	assert_string_equal(e.msg, "record 3: duplicate word 'a' (first on record 1)");
}

/* Each bad line is reported with its 1-based file line number. */
static void errors_name_the_line(void **state)
{
	(void)state;
	static const struct {
		embd_textvec_kind kind;
		const char *text;
		int rc;
		const char *msg;
	} cases[] = {
	    {EMBD_TEXTVEC_GLOVE, "a 1 2\nb 1 2\nc 1 2 3\n", EMBD_EFORMAT,
	     "line 3: 3 numbers after the word, expected 2"},
	    {EMBD_TEXTVEC_GLOVE, "a 1 2\nb 1\n", EMBD_EFORMAT, "line 2: 1 numbers after the word, expected 2"},
	    {EMBD_TEXTVEC_GLOVE, "a 1 2\nb 1 2x\n", EMBD_EFORMAT, "line 2: field 3 is not a number: '2x'"},
	    {EMBD_TEXTVEC_GLOVE, "a 1 2\nb 1  2\n", EMBD_EFORMAT, "line 2: field 3 is not a number: ''"},
	    {EMBD_TEXTVEC_GLOVE, "a 1 2\nb 1 0x10\n", EMBD_EFORMAT, "line 2: field 3 is not a number: '0x10'"},
	    {EMBD_TEXTVEC_GLOVE, "a 1 2\nb 1 1__0\n", EMBD_EFORMAT, "line 2: field 3 is not a number: '1__0'"},
	    {EMBD_TEXTVEC_GLOVE, "a 1 2\nb 1 infinit\n", EMBD_EFORMAT, "line 2: field 3 is not a number: 'infinit'"},
	    {EMBD_TEXTVEC_GLOVE, "a 1 2\nb\xc3\x28 1 2\n", EMBD_EFORMAT, "line 2: invalid UTF-8 in the word (byte 2)"},
	    {EMBD_TEXTVEC_GLOVE, "a 1 2\n\xed\xa0\x80 1 2\n", EMBD_EFORMAT,
	     "line 2: invalid UTF-8 in the word (byte 1)"}, /* a surrogate, refused by Python's decoder */
	    {EMBD_TEXTVEC_GLOVE, "a 1 2\n 1 2\n", EMBD_EFORMAT, "line 2: empty word (byte 1)"},
	    {EMBD_TEXTVEC_GLOVE, "a 1 2\n\nb 1 2\n", EMBD_EFORMAT, "line 2: empty line"},
	    {EMBD_TEXTVEC_GLOVE, "a 1 2\nb 3 4\nc 5 6\nb 7 8\n", EMBD_EFORMAT,
	     "line 4: duplicate word 'b' (first on line 2)"},
	    {EMBD_TEXTVEC_GLOVE, "a\n", EMBD_EFORMAT, "line 1: no numbers after the word"},
	    {EMBD_TEXTVEC_GLOVE, "\n\n", EMBD_EFORMAT, "line 1: no numbers after the word"},
	    {EMBD_TEXTVEC_W2V_TEXT, "3 2\na 1 2\nb 1 2\n", EMBD_EFORMAT,
	     "line 1: the header says 3 rows but 2 lines follow it"},
	    {EMBD_TEXTVEC_W2V_TEXT, "1 2\na 1 2\nb 1 2\n", EMBD_EFORMAT,
	     "line 1: the header says 1 rows but 2 lines follow it"},
	    {EMBD_TEXTVEC_W2V_TEXT, "2 2\na 1 2\nb 1 2 3\n", EMBD_EFORMAT,
	     "line 3: 3 numbers after the word, expected 2"},
	    {EMBD_TEXTVEC_W2V_TEXT, "2 x\na 1 2\n", EMBD_EFORMAT, "line 1: not a `rows dim` header"},
	    {EMBD_TEXTVEC_W2V_TEXT, "2 2 2\na 1 2\n", EMBD_EFORMAT, "line 1: not a `rows dim` header"},
	    {EMBD_TEXTVEC_W2V_TEXT, "0 2\n", EMBD_EFORMAT, "no vectors (0 rows of 2 numbers)"},
	    {EMBD_TEXTVEC_W2V_TEXT, "99999999999999999999 2\n", EMBD_EFORMAT, "line 1: not a `rows dim` header"},
	    {EMBD_TEXTVEC_W2V_BIN, "1 2\na ", EMBD_ETRUNC,
	     "record 1 (byte 4): 8 bytes of floats needed, 0 left in the file"},
	    {EMBD_TEXTVEC_W2V_BIN, "1 2\nabc", EMBD_ETRUNC,
	     "record 1 (byte 4): no space ending a word before the end of the file"},
	    {EMBD_TEXTVEC_W2V_BIN, "1 2", EMBD_EFORMAT, "not a `rows dim` header line"},
	    {EMBD_TEXTVEC_W2V_BIN, "4611686018427387904 4611686018427387904\na ", EMBD_ETRUNC,
	     "record 1: 4611686018427387904 float32 need more bytes than the file has"},
	    {EMBD_TEXTVEC_NONE, "a 1\n", EMBD_EFORMAT, "not a text vector format"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		embd_textvec tv;
		embd_err e = {{0}};
		int rc = parse_str(cases[i].text, cases[i].kind, 0, &tv, &e);
		if (rc != cases[i].rc || strcmp(e.msg, cases[i].msg) != 0)
			fail_msg("case %zu: rc %d '%s', want %d '%s'", i, rc, e.msg, cases[i].rc, cases[i].msg);
		assert_null(tv.data);
		assert_null(tv.words);
	}
}

static void skip_bad_lines_counts_them(void **state)
{
	(void)state;
	const char *s = "a 1 2\n"
	                "b 1\n"      /* short */
	                "c 1 x\n"    /* not a number */
	                "d 3 4\n"    /* good */
	                "a 9 9\n"    /* duplicate: the first stays, as in gensim */
	                "\xff 1 2\n" /* invalid UTF-8 */
	                "e 5 6";
	embd_textvec tv;
	embd_err e;
	assert_int_equal(parse_str(s, EMBD_TEXTVEC_GLOVE, 1, &tv, &e), 0);
	assert_int_equal(tv.rows, 3);
	assert_int_equal(tv.skipped, 4);
	assert_string_equal(tv.first_skip, "line 2: 1 numbers after the word, expected 2");
	assert_string_equal(word(&tv, 0), "a");
	assert_string_equal(word(&tv, 1), "d");
	assert_string_equal(word(&tv, 2), "e");
	const float want[6] = {1, 2, 3, 4, 5, 6};
	assert_memory_equal(tv.data, want, sizeof want);
	check_arena(&tv);
	embd_textvec_free(&tv);
	/* All lines bad: an error even when skipping. */
	assert_int_equal(parse_str("a 1 x\nb x 2\n", EMBD_TEXTVEC_GLOVE, 1, &tv, &e), EMBD_EFORMAT);
	assert_string_equal(e.msg, "no vectors: all 2 lines were bad (first: line 1: field 3 is not a number: 'x')");
	/* The header's row count still has to match the lines. */
	assert_int_equal(parse_str("3 1\na 1\nb x\n", EMBD_TEXTVEC_W2V_TEXT, 1, &tv, &e), EMBD_EFORMAT);
	assert_int_equal(parse_str("2 1\na 1\nb x\n", EMBD_TEXTVEC_W2V_TEXT, 1, &tv, &e), 0);
	assert_int_equal(tv.rows, 1);
	assert_int_equal(tv.skipped, 1);
	assert_string_equal(tv.first_skip, "line 3: field 2 is not a number: 'x'");
	embd_textvec_free(&tv);
}

static void sniff_tells_the_kinds_apart(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		embd_textvec_kind kind;
	} cases[] = {
	    {"the 0.418 0.24968\nof 1 2\n", EMBD_TEXTVEC_GLOVE},
	    {"the 0.418 0.24968", EMBD_TEXTVEC_GLOVE},
	    {"2 3\nthe 1 2 3\n", EMBD_TEXTVEC_W2V_TEXT},
	    {"2 3 \r\nthe 1 2 3 \r\n", EMBD_TEXTVEC_W2V_TEXT},
	    {"2 3\n", EMBD_TEXTVEC_W2V_TEXT},
	    {"2 1\nthe \x01\x02\x03\x04", EMBD_TEXTVEC_W2V_BIN},
	    {"5 3\n", EMBD_TEXTVEC_W2V_TEXT}, /* GloVe "5" of dim 1 and a header look the same: gensim reads a header */
	    {"hello world\n", EMBD_TEXTVEC_NONE},
	    {"\x93NUMPY\x01\x00", EMBD_TEXTVEC_NONE},
	    {"{\"a\": 1}", EMBD_TEXTVEC_NONE},
	    {"", EMBD_TEXTVEC_NONE},
	    {"word\n", EMBD_TEXTVEC_NONE},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		embd_textvec_kind k = embd_textvec_sniff((const unsigned char *)cases[i].text, strlen(cases[i].text));
		if (k != cases[i].kind)
			fail_msg("case %zu: %s, want %s", i, embd_textvec_kind_name(k),
			         embd_textvec_kind_name(cases[i].kind));
	}
	assert_string_equal(embd_textvec_kind_name(EMBD_TEXTVEC_W2V_BIN), "word2vec_bin");
}

/* 40,000 rows of 4 (over 1 MiB, so two threads share it); row i on line i + 2. Row bad gets a bad field, dup the word
 * "w5". */
static char *big_text(int bad, int dup, size_t *len)
{
	size_t cap = 3u << 20, n = 0;
	char *s = malloc(cap);
	assert_non_null(s);
	n += (size_t)sprintf(s, "%d 4\n", 40000);
	for (int i = 0; i < 40000; i++) {
		if (i == bad)
			n += (size_t)sprintf(s + n, "w%d 1 2 x 4\n", i);
		else
			n += (size_t)sprintf(s + n, "w%d %d.%03d -%de-%d %d 0.%d\n", i == dup ? 5 : i, i, i % 1000,
			                     i % 97, i % 30, i * 7, i % 9999);
	}
	assert_true(n > (1u << 20) && n < cap);
	*len = n;
	return s;
}

static void two_threads_match_one(void **state)
{
	(void)state;
	size_t n;
	char *s = big_text(-1, -1, &n);
	embd_textvec one, two;
	embd_err e;
	embd_textvec_opts o1 = {.threads = 1}, o2 = {.threads = 2}, skip = {.threads = 2, .skip_bad = 1};
	assert_int_equal(embd_textvec_parse((unsigned char *)s, n, EMBD_TEXTVEC_W2V_TEXT, &o1, &one, &e), 0);
	assert_int_equal(embd_textvec_parse((unsigned char *)s, n, EMBD_TEXTVEC_W2V_TEXT, &o2, &two, &e), 0);
	assert_int_equal(one.rows, 40000);
	assert_int_equal(two.rows, 40000);
	assert_memory_equal(one.data, two.data, 40000 * 4 * sizeof(float));
	assert_int_equal(one.words_bytes, two.words_bytes);
	assert_memory_equal(one.words, two.words, one.words_bytes);
	assert_memory_equal(one.word_off, two.word_off, 40001 * sizeof(uint64_t));
	assert_string_equal(word(&two, 39999), "w39999");
	assert_true(two.data[39999 * 4] == 39999.999f);
	check_arena(&two);
	embd_textvec_free(&one);
	embd_textvec_free(&two);
	free(s);

	/* A bad line and a duplicate in the second half: their file line numbers, with and without skipping. */
	s = big_text(30000, 35000, &n);
	assert_int_equal(embd_textvec_parse((unsigned char *)s, n, EMBD_TEXTVEC_W2V_TEXT, &o2, &two, &e), EMBD_EFORMAT);
	assert_string_equal(e.msg, "line 30002: field 4 is not a number: 'x'");
	assert_int_equal(embd_textvec_parse((unsigned char *)s, n, EMBD_TEXTVEC_W2V_TEXT, &skip, &two, &e), 0);
	assert_int_equal(two.skipped, 2);
	assert_int_equal(two.rows, 39998);
	assert_string_equal(two.first_skip, "line 30002: field 4 is not a number: 'x'");
	assert_string_equal(word(&two, 29999), "w29999");
	assert_string_equal(word(&two, 30000), "w30001");
	assert_string_equal(word(&two, 34998), "w34999");
	assert_string_equal(word(&two, 34999), "w35001");
	assert_true(two.data[34999 * 4] == 35001.001f);
	check_arena(&two);
	embd_textvec_free(&two);
	free(s);
	s = big_text(-1, 35000, &n);
	assert_int_equal(embd_textvec_parse((unsigned char *)s, n, EMBD_TEXTVEC_W2V_TEXT, &o2, &two, &e), EMBD_EFORMAT);
	assert_string_equal(e.msg, "line 35002: duplicate word 'w5' (first on line 7)");
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(glove_exact_floats_and_words),
	    cmocka_unit_test(rounds_through_double_like_numpy),
	    cmocka_unit_test(word2vec_text_with_header),
	    cmocka_unit_test(word2vec_binary),
	    cmocka_unit_test(word2vec_binary_bad_word_and_duplicate),
	    cmocka_unit_test(errors_name_the_line),
	    cmocka_unit_test(skip_bad_lines_counts_them),
	    cmocka_unit_test(sniff_tells_the_kinds_apart),
	    cmocka_unit_test(two_threads_match_one),
	    cmocka_unit_test(a_word_no_vocabulary_holds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
