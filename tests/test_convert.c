/* Unit tests of embd convert's library half: the .npy + vocabulary pair, its atomicity, and textvec's progress hook. */
#include "fixture.h"

#include <sys/xattr.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "convert.h"
#include "gen.h"
#include "npy.h"
#include "vocab.h"

/*
 * rename(2) as the library sees it: this definition takes the place of libc's
 * in this test program (libembd.a is linked statically), so that a test can
 * make the rename onto one path fail, or act just before it.
 */
static const char *rename_fail_to; /* a rename onto this path fails with EISDIR */
static const char *rename_hook_to; /* before a rename onto this path, rename_hook runs */
static void (*rename_hook)(void);
int rename(const char *from, const char *to)
{
	if (rename_hook_to != NULL && strcmp(to, rename_hook_to) == 0 && rename_hook != NULL)
		rename_hook();
	if (rename_fail_to != NULL && strcmp(to, rename_fail_to) == 0) {
		errno = EISDIR;
		return -1;
	}
	return renameat(AT_FDCWD, from, AT_FDCWD, to);
}

/* A fresh empty directory for one test; its path in dir (64 bytes). */
static void make_dir(char *dir)
{
	snprintf(dir, 64, "/tmp/embd-convert-XXXXXX");
	assert_non_null(mkdtemp(dir));
}

/* Entries in dir other than . and .. */
static int dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	for (struct dirent *de; (de = readdir(d)) != NULL;)
		n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
	closedir(d);
	return n;
}

/* The whole file at path into a new buffer; its size in *len. */
static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	unsigned char *b = malloc((size_t)n + 1);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return b;
}

static void rm_dir(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	for (struct dirent *de; (de = readdir(d)) != NULL;) {
		char p[512];
		snprintf(p, sizeof p, "%.200s/%.255s", dir, de->d_name);
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static const char *write_in(const char *dir, const char *name, const char *text)
{
	static char p[128];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	fclose(f);
	return p;
}

/* GloVe text in, .npy and vocabulary out: shape, 64-byte aligned data equal to the parser's floats, the words back. */
static void glove_pair_round_trips(void **state)
{
	(void)state;
	char dir[64], npy[128], voc[128], in[128];
	make_dir(dir);
	const char *text = "the 0.418 0.24968 -0.41242\nüber -1e-3 2.5 inf\n日本 0 -0 3.14159\n";
	snprintf(in, sizeof in, "%s", write_in(dir, "g.txt", text));
	snprintf(npy, sizeof npy, "%s/out.npy", dir);
	assert_int_equal(embd_convert_vocab_path(npy, voc, sizeof voc), 0);
	assert_string_equal(voc + strlen(dir), "/out.vocab");
	embd_convert_result r;
	embd_err e;
	assert_int_equal(embd_convert_file(in, npy, voc, NULL, &r, &e), 0);
	assert_int_equal(r.kind, EMBD_TEXTVEC_GLOVE);
	assert_int_equal(r.rows, 3);
	assert_int_equal(r.dim, 3);
	assert_int_equal(r.skipped, 0);
	assert_int_equal(r.in_bytes, strlen(text));

	size_t n;
	unsigned char *b = slurp(npy, &n);
	embd_npy h;
	assert_int_equal(embd_npy_parse(b, n, &h, &e), 0);
	assert_int_equal(h.version, 1);
	assert_string_equal(h.descr, "<f4");
	assert_int_equal(h.fortran_order, 0);
	assert_int_equal(h.ndim, 2);
	assert_int_equal(h.shape[0], 3);
	assert_int_equal(h.shape[1], 3);
	assert_int_equal(h.data_offset % 64, 0);
	assert_int_equal(n, h.data_offset + 9 * sizeof(float));
	embd_textvec tv;
	assert_int_equal(
	    embd_textvec_parse((const unsigned char *)text, strlen(text), EMBD_TEXTVEC_GLOVE, NULL, &tv, &e), 0);
	assert_memory_equal(b + h.data_offset, tv.data, 9 * sizeof(float));
	embd_textvec_free(&tv);
	free(b);

	b = slurp(voc, &n);
	assert_int_equal(n, strlen("the\nüber\n日本\n"));
	assert_memory_equal(b, "the\nüber\n日本\n", n);
	embd_vocab *v;
	assert_int_equal(embd_vocab_parse((const char *)b, n, 3, &v, &e), 0);
	assert_int_equal(embd_vocab_find(v, "über", strlen("über")), 1);
	assert_int_equal(embd_vocab_find(v, "日本", strlen("日本")), 2);
	embd_vocab_free(v);
	free(b);
	assert_int_equal(dir_entries(dir), 3); /* g.txt, out.npy, out.vocab: no temporary file left */
	rm_dir(dir);
}

/* word2vec text and binary, sniffed; an existing pair is replaced whole. */
static void word2vec_kinds_and_replace(void **state)
{
	(void)state;
	char dir[64], in[128], npy[128], voc[128];
	make_dir(dir);
	snprintf(npy, sizeof npy, "%s/m.npy", dir);
	snprintf(voc, sizeof voc, "%s/m.words", dir);
	embd_convert_result r;
	embd_err e;
	snprintf(in, sizeof in, "%s", write_in(dir, "a.vec", "2 2\na 1 2\nb 3 4\n"));
	assert_int_equal(embd_convert_file(in, npy, voc, NULL, &r, &e), 0);
	assert_int_equal(r.kind, EMBD_TEXTVEC_W2V_TEXT);
	/* The binary: `rows dim\n`, then word, space, dim little-endian float32. */
	static const unsigned char bin[] = "1 2\nzz \x00\x00\x80\x3f\x00\x00\x00\x40\n";
	char binp[128];
	snprintf(binp, sizeof binp, "%s/b.bin", dir);
	FILE *f = fopen(binp, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(bin, 1, sizeof bin - 1, f), sizeof bin - 1);
	fclose(f);
	assert_int_equal(embd_convert_file(binp, npy, voc, NULL, &r, &e), 0);
	assert_int_equal(r.kind, EMBD_TEXTVEC_W2V_BIN);
	assert_int_equal(r.rows, 1);
	size_t n;
	unsigned char *b = slurp(npy, &n);
	embd_npy h;
	assert_int_equal(embd_npy_parse(b, n, &h, &e), 0);
	assert_int_equal(h.shape[0], 1);
	static const float want[2] = {1.0f, 2.0f};
	assert_int_equal(n, h.data_offset + sizeof want);
	assert_memory_equal(b + h.data_offset, want, sizeof want);
	free(b);
	b = slurp(voc, &n);
	assert_int_equal(n, 3);
	assert_memory_equal(b, "zz\n", 3);
	free(b);
	assert_int_equal(dir_entries(dir), 4);
	rm_dir(dir);
}

/* Every failure leaves the directory as it was: no OUT, no vocabulary, no temporary file; the message names the line.
 */
static void failure_leaves_nothing(void **state)
{
	(void)state;
	char dir[64], in[128], npy[128], voc[128];
	make_dir(dir);
	snprintf(npy, sizeof npy, "%s/o.npy", dir);
	snprintf(voc, sizeof voc, "%s/o.vocab", dir);
	embd_err e;
	static const struct {
		const char *text;
		const char *msg;
	} bad[] = {
	    {"a 1 2\nb 1\n", "line 2: 1 numbers after the word, expected 2"},
	    {"a 1 2\nb 1 x2\n", "line 2: field 3 is not a number: 'x2'"},
	    {"a 1 2\nb\xff 1 2\n", "line 2: invalid UTF-8"},
	    {"a 1 2\nb 1 2\na 3 4\n", "line 3: duplicate word 'a' (first on line 1)"},
	    {"3 2\na 1 2\nb 1 2\n", "line 1: the header says 3 rows but 2 lines follow it"},
	    {"a\r 1 2\n", "row 1: the word 'a\r' has a final carriage return"},
	    {"just some words\n", "not GloVe, word2vec/fastText text or word2vec binary"},
	};
	for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
		snprintf(in, sizeof in, "%s", write_in(dir, "in.txt", bad[k].text));
		embd_convert_result r;
		assert_int_not_equal(embd_convert_file(in, npy, voc, NULL, &r, &e), 0);
		assert_non_null(strstr(e.msg, in));
		if (strstr(e.msg, bad[k].msg) == NULL)
			fail_msg("case %zu: '%s' lacks '%s'", k, e.msg, bad[k].msg);
		assert_int_equal(dir_entries(dir), 1); /* only in.txt */
	}
	/* An existing pair is left untouched by a failed convert. */
	write_in(dir, "o.npy", "old matrix");
	write_in(dir, "o.vocab", "old words");
	snprintf(in, sizeof in, "%s", write_in(dir, "in.txt", "a 1 2\nb 1\n"));
	assert_int_equal(embd_convert_file(in, npy, voc, NULL, NULL, &e), EMBD_EFORMAT);
	size_t n;
	unsigned char *b = slurp(npy, &n);
	assert_memory_equal(b, "old matrix", n);
	free(b);
	assert_int_equal(dir_entries(dir), 3);
	/* An unwritable target fails before the input is parsed, and the same path twice is refused. */
	char nodir[128];
	snprintf(nodir, sizeof nodir, "%s/missing/o.npy", dir);
	assert_int_equal(embd_convert_file(in, nodir, voc, NULL, NULL, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "cannot create a temporary file"));
	assert_int_equal(embd_convert_file(in, npy, npy, NULL, NULL, &e), EMBD_ECONFIG);
	assert_int_equal(embd_convert_file(dir, npy, voc, NULL, NULL, &e), EMBD_EFORMAT); /* a directory */
	assert_non_null(strstr(e.msg, "not a regular file"));
	assert_int_equal(dir_entries(dir), 3);
	rm_dir(dir);
}

/* skip_bad: every kind of bad line is left out and counted, the first one's message kept. */
static void skip_bad_counts(void **state)
{
	(void)state;
	char dir[64], in[128], npy[128], voc[128];
	make_dir(dir);
	snprintf(npy, sizeof npy, "%s/o.npy", dir);
	snprintf(voc, sizeof voc, "%s/o.vocab", dir);
	snprintf(in, sizeof in, "%s", write_in(dir, "in.txt", "a 1 2\nb 1\nc 1 x\nd\xff 1 2\na 5 6\ne\r 1 2\nf 7 8\n"));
	embd_convert_opts o = {.skip_bad = 1};
	embd_convert_result r;
	embd_err e;
	assert_int_equal(embd_convert_file(in, npy, voc, &o, &r, &e), 0);
	assert_int_equal(r.rows, 2);
	assert_int_equal(r.skipped, 5);
	assert_non_null(strstr(r.first_skip, "line 2:"));
	size_t n;
	unsigned char *b = slurp(voc, &n);
	assert_int_equal(n, 4);
	assert_memory_equal(b, "a\nf\n", 4);
	free(b);
	b = slurp(npy, &n);
	embd_npy h;
	assert_int_equal(embd_npy_parse(b, n, &h, &e), 0);
	static const float want[4] = {1, 2, 7, 8};
	assert_int_equal(h.shape[0], 2);
	assert_memory_equal(b + h.data_offset, want, sizeof want);
	free(b);
	rm_dir(dir);
}

/* The progress hook: a parse adds exactly len, from one thread or two, text or binary; more than one step of it. */
static void progress_adds_up_to_len(void **state)
{
	(void)state;
	size_t cap = 3u << 20, len = 0;
	char *text = malloc(cap);
	assert_non_null(text);
	len += (size_t)sprintf(text, "%20s\n", ""); /* the header, once the rows are known */
	uint64_t rows = 0;
	while (len + 64 < cap)
		len += (size_t)sprintf(text + len, "w%llu 0.5 -1.25 3\n", (unsigned long long)rows++);
	char head[32];
	int hn = sprintf(head, "%llu 3", (unsigned long long)rows);
	size_t old = (size_t)(strchr(text, '\n') - text);
	assert_true((size_t)hn <= old);
	memset(text, ' ', old);
	memcpy(text, head, (size_t)hn);
	len += (size_t)sprintf(text + len, "\n\n  \n"); /* trailing whitespace counts too */
	for (int threads = 1; threads <= 2; threads++) {
		_Atomic uint64_t done = 0;
		embd_textvec_opts o = {.threads = threads, .bytes_done = &done};
		embd_textvec tv;
		embd_err e;
		assert_int_equal(embd_textvec_parse((unsigned char *)text, len, EMBD_TEXTVEC_W2V_TEXT, &o, &tv, &e), 0);
		assert_int_equal(tv.rows, rows);
		assert_int_equal(atomic_load(&done), len);
		embd_textvec_free(&tv);
		/* A failed parse adds at most len. */
		text[len / 2] = 'x';
		text[len / 2 + 1] = 'x';
		atomic_store(&done, 0);
		assert_int_not_equal(embd_textvec_parse((unsigned char *)text, len, EMBD_TEXTVEC_W2V_TEXT, &o, &tv, &e),
		                     0);
		assert_true(atomic_load(&done) <= len);
		text[len / 2] = '0';
		text[len / 2 + 1] = '0';
	}
	free(text);
	/* Binary: 2 MiB of records. */
	size_t recs = 1 << 14, dim = 32, blen = 0;
	unsigned char *bin = malloc(32 + recs * (8 + dim * 4));
	assert_non_null(bin);
	blen += (size_t)sprintf((char *)bin, "%zu %zu\n", recs, dim);
	for (size_t i = 0; i < recs; i++) {
		blen += (size_t)sprintf((char *)bin + blen, "%05zx ", i);
		memset(bin + blen, 0, dim * 4);
		blen += dim * 4;
	}
	_Atomic uint64_t done = 0;
	embd_textvec_opts o = {.bytes_done = &done};
	embd_textvec tv;
	embd_err e;
	assert_int_equal(embd_textvec_parse(bin, blen, EMBD_TEXTVEC_W2V_BIN, &o, &tv, &e), 0);
	assert_int_equal(tv.rows, recs);
	assert_int_equal(atomic_load(&done), blen);
	embd_textvec_free(&tv);
	free(bin);
}

/* The whole of path equals text. */
static void file_is(const char *path, const char *text)
{
	size_t n;
	unsigned char *b = slurp(path, &n);
	assert_int_equal(n, strlen(text));
	assert_memory_equal(b, text, n);
	free(b);
}

/*
 * The matrix's rename fails after the vocabulary's went through: the previous
 * pair is put back whole (its vocabulary was deleted before), and without a
 * previous pair nothing is left; no temporary or kept file either.
 */
static void a_failed_second_rename_keeps_the_old_pair(void **state)
{
	(void)state;
	char dir[64], in[128], npy[128], voc[128];
	make_dir(dir);
	snprintf(npy, sizeof npy, "%s/o.npy", dir);
	snprintf(voc, sizeof voc, "%s/o.vocab", dir);
	snprintf(in, sizeof in, "%s", write_in(dir, "in.txt", "a 1 2\nb 3 4\n"));
	embd_err e;
	rename_fail_to = npy;
	assert_int_equal(embd_convert_file(in, npy, voc, NULL, NULL, &e), -EISDIR);
	assert_non_null(strstr(e.msg, npy));
	assert_int_equal(dir_entries(dir), 1); /* no previous pair: none after */
	write_in(dir, "o.npy", "old matrix");
	write_in(dir, "o.vocab", "old words\n");
	assert_int_equal(embd_convert_file(in, npy, voc, NULL, NULL, &e), -EISDIR);
	rename_fail_to = NULL;
	file_is(npy, "old matrix");
	file_is(voc, "old words\n");
	assert_int_equal(dir_entries(dir), 3); /* in.txt and the old pair */
	/* The rename of the vocabulary failing leaves the old pair too. */
	rename_fail_to = voc;
	assert_int_equal(embd_convert_file(in, npy, voc, NULL, NULL, &e), -EISDIR);
	rename_fail_to = NULL;
	file_is(npy, "old matrix");
	file_is(voc, "old words\n");
	assert_int_equal(dir_entries(dir), 3);
	/* And a convert that goes through replaces both, leaving nothing else (no lock file). */
	assert_int_equal(embd_convert_file(in, npy, voc, NULL, NULL, &e), 0);
	file_is(voc, "a\nb\n");
	assert_int_equal(dir_entries(dir), 3);
	rm_dir(dir);
}

/* A load that starts between a convert's two renames, on a thread of its own. */
static struct {
	char npy[128], voc[128];
	pthread_t thread;
	atomic_int opened; /* the load has returned */
	int rc;
	embd_gen *g;
} between;

static void *load_pair(void *arg)
{
	(void)arg;
	embd_matrix_spec spec = {.path = between.npy, .vocab = between.voc};
	embd_err e;
	between.rc = embd_gen_open(&spec, 1, NULL, &between.g, &e);
	atomic_store(&between.opened, 1);
	return NULL;
}

/* Just before the matrix's rename (the vocabulary is already the new one): start a load, give it 200 ms. */
static void start_load(void)
{
	assert_int_equal(pthread_create(&between.thread, NULL, load_pair, NULL), 0);
	struct timespec ts = {0, 200 * 1000 * 1000};
	nanosleep(&ts, NULL);
	/* It waits for the pair's lock: had it opened the files, it would have the new words and the old rows. */
	assert_int_equal(atomic_load(&between.opened), 0);
}

/* A load never pairs the words of one convert with the rows of another, even with the same row count. */
static void a_load_never_sees_half_a_convert(void **state)
{
	(void)state;
	char dir[64], in[128];
	make_dir(dir);
	snprintf(between.npy, sizeof between.npy, "%s/p.npy", dir);
	snprintf(between.voc, sizeof between.voc, "%s/p.vocab", dir);
	embd_err e;
	snprintf(in, sizeof in, "%s", write_in(dir, "old.txt", "a 1 2\nb 3 4\n"));
	assert_int_equal(embd_convert_file(in, between.npy, between.voc, NULL, NULL, &e), 0);
	snprintf(in, sizeof in, "%s", write_in(dir, "new.txt", "c 5 6\nd 7 8\n"));
	atomic_store(&between.opened, 0);
	rename_hook_to = between.npy;
	rename_hook = start_load;
	assert_int_equal(embd_convert_file(in, between.npy, between.voc, NULL, NULL, &e), 0);
	rename_hook_to = NULL;
	rename_hook = NULL;
	assert_int_equal(pthread_join(between.thread, NULL), 0);
	assert_int_equal(between.rc, 0);
	const embd_matrix_info *m = embd_gen_matrix(between.g);
	static const float want[2] = {5.0f, 6.0f};
	assert_int_equal(m->rows, 2);
	assert_memory_equal(m->data, want, sizeof want);
	assert_int_equal(embd_vocab_find(embd_gen_vocab(between.g), "c", 1), 0);
	embd_gen_release(between.g);
	rm_dir(dir);
}

/*
 * A convert killed between its two renames leaves the new words beside the
 * old rows: the pair's marks differ, and a load refuses the two instead of
 * serving rows under the wrong words (same row count: nothing else would
 * tell).
 */
static void a_load_refuses_halves_of_two_converts(void **state)
{
	(void)state;
	char dir[64], in[128], a_npy[128], a_voc[128], b_npy[128], b_voc[128];
	make_dir(dir);
	snprintf(a_npy, sizeof a_npy, "%s/a.npy", dir);
	snprintf(a_voc, sizeof a_voc, "%s/a.vocab", dir);
	snprintf(b_npy, sizeof b_npy, "%s/b.npy", dir);
	snprintf(b_voc, sizeof b_voc, "%s/b.vocab", dir);
	embd_err e;
	snprintf(in, sizeof in, "%s", write_in(dir, "old.txt", "a 1 2\nb 3 4\n"));
	assert_int_equal(embd_convert_file(in, a_npy, a_voc, NULL, NULL, &e), 0);
	snprintf(in, sizeof in, "%s", write_in(dir, "new.txt", "c 5 6\nd 7 8\n"));
	assert_int_equal(embd_convert_file(in, b_npy, b_voc, NULL, NULL, &e), 0);
	char mark[64];
	if (getxattr(a_npy, "user.embd.pair", mark, sizeof mark) < 0)
		skip(); /* a file system without user attributes: pairs go unmarked */
	/* A whole pair loads. */
	embd_matrix_spec spec = {.path = a_npy, .vocab = a_voc};
	embd_gen *g = NULL;
	assert_int_equal(embd_gen_open(&spec, 1, NULL, &g, &e), 0);
	embd_gen_release(g);
	/* The state a crash between the renames leaves: the new vocabulary in place, the old matrix still there. */
	assert_int_equal(rename(b_voc, a_voc), 0);
	g = NULL;
	assert_int_equal(embd_gen_open(&spec, 1, NULL, &g, &e), EMBD_ECONFIG);
	assert_null(g);
	assert_non_null(strstr(e.msg, "are not one pair"));
	assert_non_null(strstr(e.msg, a_npy));
	/* A vocabulary written by hand (no mark) beside a converted matrix: refused too, and the message says how. */
	assert_int_equal(unlink(a_voc), 0);
	write_in(dir, "a.vocab", "x\ny\n");
	assert_int_equal(embd_gen_open(&spec, 1, NULL, &g, &e), EMBD_ECONFIG);
	assert_non_null(strstr(e.msg, "setfattr -x user.embd.pair"));
	assert_int_equal(removexattr(a_npy, "user.embd.pair"), 0);
	assert_int_equal(embd_gen_open(&spec, 1, NULL, &g, &e), 0);
	embd_gen_release(g);
	rm_dir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(glove_pair_round_trips),
	    cmocka_unit_test(word2vec_kinds_and_replace),
	    cmocka_unit_test(failure_leaves_nothing),
	    cmocka_unit_test(skip_bad_counts),
	    cmocka_unit_test(progress_adds_up_to_len),
	    cmocka_unit_test(a_failed_second_rename_keeps_the_old_pair),
	    cmocka_unit_test(a_load_never_sees_half_a_convert),
	    cmocka_unit_test(a_load_refuses_halves_of_two_converts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
