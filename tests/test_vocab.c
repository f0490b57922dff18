/* Unit tests of vocabularies: the builder, look-ups both ways, and the vocabulary-file parser and reader. */
#include "fixture.h"

#include <errno.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <time.h>

#include "vocab.h"

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void expect_msg(const embd_err *e, const char *fragment)
{
	if (strstr(e->msg, fragment) == NULL)
		fail_msg("message '%s' lacks '%s'", e->msg, fragment);
}

static int64_t find_str(const embd_vocab *v, const char *s)
{
	return embd_vocab_find(v, s, strlen(s));
}

static void builder_ids_both_ways(void **state)
{
	(void)state;
	const char *words[] = {"the", ",", "king", "queen", "a\rb", "x y", "\t"};
	size_t n = sizeof words / sizeof words[0];
	embd_vocab *v;
	assert_int_equal(embd_vocab_new(0, 0, &v), 0);
	assert_int_equal(embd_vocab_size(v), 0);
	assert_int_equal(find_str(v, "the"), EMBD_VOCAB_NONE);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(embd_vocab_add(v, words[i], strlen(words[i]), NULL), 0);
		/* Readers work while building, from the builder's thread. */
		assert_int_equal(find_str(v, words[i]), i);
	}
	embd_vocab_finish(v);
	assert_int_equal(embd_vocab_size(v), n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(find_str(v, words[i]), i);
		size_t len = 99;
		const char *t = embd_vocab_token(v, i, &len);
		assert_non_null(t);
		assert_int_equal(len, strlen(words[i]));
		assert_string_equal(t, words[i]); /* NUL-terminated */
	}
	assert_null(embd_vocab_token(v, n, NULL));
	assert_null(embd_vocab_token(v, UINT64_MAX, NULL));
	assert_non_null(embd_vocab_token(v, 0, NULL));
	assert_int_equal(find_str(v, "kin"), EMBD_VOCAB_NONE);
	assert_int_equal(find_str(v, "kingg"), EMBD_VOCAB_NONE);
	assert_int_equal(find_str(v, "King"), EMBD_VOCAB_NONE);
	assert_int_equal(embd_vocab_find(v, "", 0), EMBD_VOCAB_NONE);
	assert_int_equal(embd_vocab_find(v, "king", 3), EMBD_VOCAB_NONE);
	assert_int_equal(embd_vocab_find(v, "kings", 4), 2); /* counted bytes, not C strings */
	assert_true(embd_vocab_bytes(v) > 0);
	assert_true(embd_vocab_build_ns(v) > 0);
	embd_vocab_free(v);
	embd_vocab_free(NULL);
}

static void builder_refuses_bad_tokens(void **state)
{
	(void)state;
	static const struct {
		const char *tok;
		size_t len;
		const char *msg;
	} bad[] = {
	    {"", 0, "row 1: empty token"},
	    {"a\0b", 3, "row 1: NUL byte in the token (byte 2)"},
	    {"ab\n", 3, "row 1: newline in the token (byte 3)"},
	    {"abcdefghij\nk", 12, "row 1: newline in the token (byte 11)"},
	    {"abcdefghij\0k", 12, "row 1: NUL byte in the token (byte 11)"},
	    {"ab\r", 3, "row 1: the token ends in a carriage return"},
	    {"\xc0\x80", 2, "row 1: invalid UTF-8 in the token (byte 1)"},  /* overlong NUL */
	    {"\xc1\xbf", 2, "invalid UTF-8 in the token (byte 1)"},         /* overlong */
	    {"ok\xe0\x80\x80", 5, "invalid UTF-8 in the token (byte 3)"},   /* overlong 3-byte */
	    {"\xed\xa0\x80", 3, "invalid UTF-8 in the token (byte 1)"},     /* surrogate U+D800 */
	    {"\xf0\x80\x80\x80", 4, "invalid UTF-8 in the token (byte 1)"}, /* overlong 4-byte */
	    {"\xf4\x90\x80\x80", 4, "invalid UTF-8 in the token (byte 1)"}, /* past U+10FFFF */
	    {"\xf5\x80\x80\x80", 4, "invalid UTF-8 in the token (byte 1)"}, /* F5 never appears */
	    {"\xff", 1, "invalid UTF-8 in the token (byte 1)"},             /* FF never appears */
	    {"abcdefgh\x80", 9, "invalid UTF-8 in the token (byte 9)"},     /* stray continuation */
	    {"abc\xe2\x82", 5, "invalid UTF-8 in the token (byte 4)"},      /* truncated at the end */
	    {"\xe2\x82x", 3, "invalid UTF-8 in the token (byte 1)"},        /* truncated inside */
	    {"\xf0\x9f\x98", 3, "invalid UTF-8 in the token (byte 1)"},     /* truncated 4-byte */
	    {"\xf0\x9f\x98\x80\xf0\x9f\x98", 7, "invalid UTF-8 in the token (byte 5)"},
	};
	embd_vocab *v;
	assert_int_equal(embd_vocab_new(4, 0, &v), 0);
	assert_int_equal(embd_vocab_add(v, "first", 5, NULL), 0);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		embd_err e;
		memset(&e, 0, sizeof e);
		assert_int_equal(embd_vocab_add(v, bad[i].tok, bad[i].len, &e), EMBD_EVOCAB);
		expect_msg(&e, bad[i].msg);
		assert_int_equal(embd_vocab_size(v), 1); /* nothing added */
	}
	/* The duplicate names both rows, and find gives the first, for callers that speak of lines. */
	embd_err e;
	assert_int_equal(embd_vocab_add(v, "second", 6, NULL), 0);
	assert_int_equal(embd_vocab_add(v, "first", 5, &e), EMBD_EVOCAB);
	assert_string_equal(e.msg, "row 2: duplicate token \"first\" (first at row 0)");
	assert_int_equal(find_str(v, "first"), 0);
	assert_int_equal(embd_vocab_size(v), 2);
	/* A long duplicate is quoted in part. */
	char long_tok[100];
	memset(long_tok, 'q', sizeof long_tok);
	assert_int_equal(embd_vocab_add(v, long_tok, sizeof long_tok, NULL), 0);
	assert_int_equal(embd_vocab_add(v, long_tok, sizeof long_tok, &e), EMBD_EVOCAB);
	expect_msg(&e, "row 3: duplicate token \"qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq...\" (first at row 2)");
	embd_vocab_finish(v);
	assert_int_equal(embd_vocab_add(v, "late", 4, &e), EMBD_EINTERNAL);
	assert_int_equal(embd_vocab_size(v), 3);
	embd_vocab_finish(v); /* twice is harmless */
	embd_vocab_free(v);
}

/* Valid UTF-8 of every length, the edges of Table 3-7, and tokens one byte apart at each hash length. */
static void utf8_and_near_twins(void **state)
{
	(void)state;
	const char *good[] = {
	    "König",
	    "日本語",
	    "😀",
	    "\xc2\x80",
	    "\xdf\xbf",
	    "\xe0\xa0\x80",
	    "\xed\x9f\xbf",
	    "\xee\x80\x80",
	    "\xef\xbf\xbf",
	    "\xf0\x90\x80\x80",
	    "\xf4\x8f\xbf\xbf",
	    "ab\xc3\xa9",
	    "ab\xc3\xa8",
	    "a",
	    "b",
	    "ab",
	    "ba",
	    "abc",
	    "abd",
	    "abcd",
	    "abce",
	    "\x7f",
	};
	embd_vocab *v;
	assert_int_equal(embd_vocab_new(0, 0, &v), 0);
	uint64_t n = 0;
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++, n++)
		assert_int_equal(embd_vocab_add(v, good[i], strlen(good[i]), NULL), 0);
	/* For each length from 1 to 130 (every path of the hash), tokens that differ in one byte at each place. */
	char buf[131];
	for (size_t len = 1; len <= 130; len++) {
		for (size_t at = 0; at < len; at++) {
			memset(buf, 'm', len);
			buf[at] = 'n';
			assert_int_equal(embd_vocab_add(v, buf, len, NULL), 0);
			n++;
		}
		memset(buf, 'm', len);
		assert_int_equal(embd_vocab_add(v, buf, len, NULL), 0);
		n++;
	}
	embd_vocab_finish(v);
	assert_int_equal(embd_vocab_size(v), n);
	for (uint64_t id = 0; id < n; id++) {
		size_t len;
		const char *t = embd_vocab_token(v, id, &len);
		assert_int_equal(embd_vocab_find(v, t, len), id);
	}
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		assert_int_equal(find_str(v, good[i]), i);
	memset(buf, 'm', 131);
	assert_int_equal(embd_vocab_find(v, buf, 131), EMBD_VOCAB_NONE);
	buf[64] = 'o';
	assert_int_equal(embd_vocab_find(v, buf, 100), EMBD_VOCAB_NONE);
	embd_vocab_free(v);
}

/* With the hash masked, every token (or every token in a few classes) collides: probing must still be exact. */
static void forced_collisions(void **state)
{
	(void)state;
	const uint64_t masks[] = {0, 0x3, 0xffffffff00000000u, 0x00000000ffffffffu};
	for (size_t m = 0; m < sizeof masks / sizeof masks[0]; m++) {
		embd_vocab *v;
		assert_int_equal(embd_vocab_new(0, 0, &v), 0); /* no hint: the table grows while colliding */
		embd_vocab_test_hash_mask(v, masks[m]);
		char tok[32];
		const uint64_t n = 1500;
		for (uint64_t i = 0; i < n; i++) {
			int len = snprintf(tok, sizeof tok, "t%" PRIu64, i);
			assert_int_equal(embd_vocab_add(v, tok, (size_t)len, NULL), 0);
		}
		embd_err e;
		assert_int_equal(embd_vocab_add(v, "t777", 4, &e), EMBD_EVOCAB);
		assert_string_equal(e.msg, "row 1500: duplicate token \"t777\" (first at row 777)");
		embd_vocab_finish(v);
		for (uint64_t i = 0; i < n; i++) {
			int len = snprintf(tok, sizeof tok, "t%" PRIu64, i);
			assert_int_equal(embd_vocab_find(v, tok, (size_t)len), i);
		}
		assert_int_equal(find_str(v, "t1500"), EMBD_VOCAB_NONE);
		assert_int_equal(find_str(v, "t"), EMBD_VOCAB_NONE);
		assert_int_equal(find_str(v, "u1"), EMBD_VOCAB_NONE);
		/* Half full at most: 1500 tokens need 4096 slots of 8 bytes. */
		assert_true(embd_vocab_bytes(v) >= 4096 * 8);
		embd_vocab_free(v);
	}
}

static void parse_ok(const char *text, uint64_t expect, embd_vocab **v)
{
	embd_err e = {{0}};
	int rc = embd_vocab_parse(text, strlen(text), expect, v, &e);
	if (rc != 0)
		fail_msg("parse failed (%d): %s", rc, e.msg);
}

static void parse_lines_and_endings(void **state)
{
	(void)state;
	/* LF, CRLF, mixed, without and with a final newline: the same three tokens. */
	const char *texts[] = {"king\nqueen\n\xc3\xa9t\xc3\xa9\n", "king\r\nqueen\r\n\xc3\xa9t\xc3\xa9\r\n",
	                       "king\r\nqueen\n\xc3\xa9t\xc3\xa9", "king\nqueen\r\n\xc3\xa9t\xc3\xa9\r"};
	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		embd_vocab *v;
		parse_ok(texts[i], 3, &v);
		assert_int_equal(embd_vocab_size(v), 3);
		assert_int_equal(find_str(v, "king"), 0);
		assert_int_equal(find_str(v, "queen"), 1);
		assert_int_equal(find_str(v, "été"), 2);
		assert_int_equal(find_str(v, "king\r"), EMBD_VOCAB_NONE);
		size_t len;
		assert_string_equal(embd_vocab_token(v, 1, &len), "queen");
		assert_int_equal(len, 5);
		assert_true(embd_vocab_build_ns(v) > 0);
		embd_vocab_free(v);
	}
	/* expect 0 takes any count; an empty text is zero lines; a CR inside a token is a byte like any other. */
	embd_vocab *v;
	parse_ok("a\rb\nc", 0, &v);
	assert_int_equal(embd_vocab_size(v), 2);
	assert_int_equal(find_str(v, "a\rb"), 0);
	embd_vocab_free(v);
	parse_ok("", 0, &v);
	assert_int_equal(embd_vocab_size(v), 0);
	assert_null(embd_vocab_token(v, 0, NULL));
	embd_vocab_free(v);
	parse_ok("only", 1, &v);
	assert_int_equal(find_str(v, "only"), 0);
	embd_vocab_free(v);
}

static void expect_parse_error(const char *text, size_t len, uint64_t expect, const char *msg)
{
	embd_vocab *v = (embd_vocab *)0x1;
	embd_err e = {{0}};
	assert_int_equal(embd_vocab_parse(text, len, expect, &v, &e), EMBD_EVOCAB);
	assert_ptr_equal(v, (embd_vocab *)0x1); /* not written */
	if (strcmp(e.msg, msg) != 0)
		fail_msg("text '%.*s': message '%s', expected '%s'", (int)len, text, e.msg, msg);
}

#define BAD(text, expect, msg) expect_parse_error(text, sizeof text - 1, expect, msg)

static void parse_errors_name_lines(void **state)
{
	(void)state;
	BAD("a\nb\nc\n", 2, "the vocabulary has 3 lines but the matrix has 2 rows");
	BAD("a\nb\nc", 4, "the vocabulary has 3 lines but the matrix has 4 rows");
	BAD("", 1, "the vocabulary has 0 lines but the matrix has 1 rows");
	BAD("\n", 0, "line 1: empty token");
	BAD("\r\n", 0, "line 1: empty token");
	BAD("a\n\nb\n", 3, "line 2: empty token");
	BAD("a\nb\n\n", 2, "line 3: empty token"); /* one final newline is optional; two make an empty line */
	BAD("a\r\nb\r\n\r\n", 0, "line 3: empty token");
	BAD("a\nb\nc\nb\n", 4, "line 4: duplicate token \"b\" (first at line 2)");
	BAD("a\r\nb\r\nc\r\nb", 4, "line 4: duplicate token \"b\" (first at line 2)");
	BAD("x\nb\r\nb\n", 3, "line 3: duplicate token \"b\" (first at line 2)"); /* the same token, either ending */
	BAD("a\nb\xff\n", 2, "line 2: invalid UTF-8 in the token (byte 2)");
	BAD("a\nb\nc\xed\xa0\x80\n", 3, "line 3: invalid UTF-8 in the token (byte 2)");
	BAD("a\nb\0c\n", 2, "line 2: NUL byte in the token (byte 2)");
	BAD("a\r\r\n", 1, "line 1: the token ends in a carriage return");
	/* A bad line is named before the count is compared: it is the more precise news. */
	BAD("a\n\nb\nc\n", 3, "line 2: empty token");
}

/* 400,000 tokens (the size of GloVe 6B's vocabulary), parsed and built; the time is printed, not asserted. */
static void large_vocabulary(void **state)
{
	(void)state;
	const uint64_t n = 400000;
	char *text = malloc(n * 16);
	assert_non_null(text);
	size_t len = 0;
	for (uint64_t i = 0; i < n; i++)
		len += (size_t)sprintf(text + len, "w%" PRIu64 "\xc3\xa9\n", i * 2654435761u % 1000000007u);
	embd_vocab *v;
	embd_err e = {{0}};
	uint64_t t0 = now_ns();
	int rc = embd_vocab_parse(text, len, n, &v, &e);
	uint64_t t1 = now_ns();
	if (rc != 0)
		fail_msg("%s", e.msg);
	assert_int_equal(embd_vocab_size(v), n);
	/* Every token back at its own line, and look-ups of absent ones. */
	const char *p = text;
	for (uint64_t i = 0; i < n; i++) {
		const char *nl = strchr(p, '\n');
		assert_int_equal(embd_vocab_find(v, p, (size_t)(nl - p)), i);
		assert_int_equal(embd_vocab_find(v, p, (size_t)(nl - p) - 1), EMBD_VOCAB_NONE);
		p = nl + 1;
	}
	uint64_t t2 = now_ns();
	print_message("vocab: parsed %" PRIu64 " tokens (%zu bytes) in %.1f ms (build_ns %.1f ms), %.1f MB held; "
	              "%.0f ns per hit+miss look-up pair\n",
	              n, len, (double)(t1 - t0) / 1e6, (double)embd_vocab_build_ns(v) / 1e6,
	              (double)embd_vocab_bytes(v) / 1e6, (double)(t2 - t1) / (double)n);
	/* Table 1 Mi slots x 8 bytes, offsets (n + 1) x 8, arena exactly the token bytes and NULs. */
	assert_true(embd_vocab_bytes(v) > 1048576 * 8 + (n + 1) * 8 + len);
	assert_true(embd_vocab_bytes(v) < 1048576 * 8 + (n + 1) * 8 + len + 256);
	embd_vocab_free(v);

	/* The builder without hints: the table and the arena grow as they go. */
	t0 = now_ns();
	assert_int_equal(embd_vocab_new(0, 0, &v), 0);
	p = text;
	for (uint64_t i = 0; i < n; i++) {
		const char *nl = strchr(p, '\n');
		assert_int_equal(embd_vocab_add(v, p, (size_t)(nl - p), NULL), 0);
		p = nl + 1;
	}
	embd_vocab_finish(v);
	t1 = now_ns();
	print_message("vocab: built %" PRIu64 " tokens without hints in %.1f ms, %.1f MB held\n", n,
	              (double)(t1 - t0) / 1e6, (double)embd_vocab_bytes(v) / 1e6);
	assert_int_equal(embd_vocab_size(v), n);
	assert_int_equal(embd_vocab_find(v, "w0\xc3\xa9", 4), 0);
	embd_vocab_free(v);
	free(text);
}

static void open_reads_files(void **state)
{
	(void)state;
	const char text[] = "alpha\r\nbeta\r\ngamma\r\n";
	const char *path = fixture_file(0, text, sizeof text - 1);
	embd_vocab *v;
	embd_err e = {{0}};
	assert_int_equal(embd_vocab_open(path, 3, &v, &e), 0);
	assert_int_equal(find_str(v, "gamma"), 2);
	assert_true(embd_vocab_build_ns(v) > 0);
	embd_vocab_free(v);

	/* Errors name the path and then the line. */
	char want[512];
	assert_int_equal(embd_vocab_open(path, 4, &v, &e), EMBD_EVOCAB);
	snprintf(want, sizeof want, "%s: the vocabulary has 3 lines but the matrix has 4 rows", path);
	assert_string_equal(e.msg, want);
	const char dup[] = "alpha\nbeta\nalpha\n";
	path = fixture_file(1, dup, sizeof dup - 1);
	assert_int_equal(embd_vocab_open(path, 3, &v, &e), EMBD_EVOCAB);
	snprintf(want, sizeof want, "%s: line 3: duplicate token \"alpha\" (first at line 1)", path);
	assert_string_equal(e.msg, want);
	assert_int_equal(embd_vocab_open(path, 3, &v, NULL), EMBD_EVOCAB); /* e is optional */
	unlink(path);
	assert_int_equal(embd_vocab_open(path, 3, &v, &e), -ENOENT);
	expect_msg(&e, path);

	/* An empty file is zero lines. */
	path = fixture_file(2, "", 0);
	assert_int_equal(embd_vocab_open(path, 0, &v, &e), 0);
	assert_int_equal(embd_vocab_size(v), 0);
	embd_vocab_free(v);
	assert_int_equal(embd_vocab_open(path, 5, &v, &e), EMBD_EVOCAB);
	expect_msg(&e, "0 lines but the matrix has 5 rows");
	unlink(path);
	unlink(fixture_file(0, "", 0));
}

/* A FIFO with no writer would block a plain open() forever; a directory would fail at read. Both are refused. */
static void open_refuses_special_files(void **state)
{
	(void)state;
	char dir[] = "/tmp/embd-test-vocab-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char fifo[64];
	snprintf(fifo, sizeof fifo, "%s/fifo", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	embd_vocab *v;
	embd_err e;
	assert_int_equal(embd_vocab_open(fifo, 0, &v, &e), EMBD_EVOCAB);
	char want[512];
	snprintf(want, sizeof want, "%s: not a regular file (a FIFO)", fifo);
	assert_string_equal(e.msg, want);
	assert_int_equal(embd_vocab_open(dir, 0, &v, &e), EMBD_EVOCAB);
	snprintf(want, sizeof want, "%s: not a regular file (a directory)", dir);
	assert_string_equal(e.msg, want);
	assert_int_equal(embd_vocab_open("/dev/null", 0, &v, &e), EMBD_EVOCAB);
	assert_string_equal(e.msg, "/dev/null: not a regular file (a character device)");
	unlink(fifo);
	rmdir(dir);
}

static void error_table_entry(void **state)
{
	(void)state;
	assert_int_equal(embd_error_status(EMBD_EVOCAB), 500);
	assert_string_equal(embd_error_code(EMBD_EVOCAB), "bad_vocabulary");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(builder_ids_both_ways),      cmocka_unit_test(builder_refuses_bad_tokens),
	    cmocka_unit_test(utf8_and_near_twins),        cmocka_unit_test(forced_collisions),
	    cmocka_unit_test(parse_lines_and_endings),    cmocka_unit_test(parse_errors_name_lines),
	    cmocka_unit_test(large_vocabulary),           cmocka_unit_test(open_reads_files),
	    cmocka_unit_test(open_refuses_special_files), cmocka_unit_test(error_table_entry),
	};
	return cmocka_run_group_tests_name("vocab", tests, NULL, NULL);
}
