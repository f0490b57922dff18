/* embd convert: the command line around lib/convert.c, with a progress bar when stderr is a terminal. */
#include "convert.h" /* server/convert.h: this file's contract */

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/convert.h"
#include "clock.h"

static void convert_usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: embd convert IN -o OUT.npy [--vocab OUT.vocab] [--format auto|glove|word2vec|word2vec_bin]\n"
	    "                    [--skip-bad] [--threads N] [--progress | --quiet]\n"
	    "\n"
	    "Converts a GloVe (.txt), word2vec / fastText text (.vec) or word2vec binary (.bin) file into the pair\n"
	    "embd serves by mmap: OUT.npy (float32, rows x dim, NumPy format 1.0) and a vocabulary file (word i on\n"
	    "line i+1). The floats are bit-identical to what gensim's load_word2vec_format reads from IN.\n"
	    "Serve the pair with: embd serve OUT.npy --vocab OUT.vocab\n"
	    "\n"
	    "  -o, --output OUT.npy   the matrix to write (required)\n"
	    "  --vocab FILE           the vocabulary to write; default: OUT with .npy replaced by .vocab\n"
	    "                         (.vocab appended when OUT does not end in .npy)\n"
	    "  --format F             auto (default: from the file's first line), glove (no header line),\n"
	    "                         word2vec (text with a `rows dim` header; fastText .vec), word2vec_bin\n"
	    "  --skip-bad             leave bad lines out (wrong column count, unparsable number, invalid UTF-8,\n"
	    "                         duplicate word, ...) and say how many on stderr; default: the first one\n"
	    "                         fails the convert\n"
	    "  --threads N            parser threads (default: the number of CPUs online)\n"
	    "  --progress             draw the progress bar on stderr even when it is not a terminal\n"
	    "  --quiet                no progress bar and no summary line\n"
	    "\n"
	    "Both files are written to temporary files beside their targets and renamed into place only when both\n"
	    "are complete: a failed convert leaves neither OUT nor a partial file, and an existing pair is replaced\n"
	    "whole or not at all (the old vocabulary is put back if the matrix cannot be renamed). OUT's directory\n"
	    "is flock'd across the two renames, so a daemon loading the pair never sees half of it.\n"
	    "A progress bar is drawn on stderr when stderr is a terminal; otherwise nothing is, except errors.\n"
	    "On success one summary line goes to stdout (unless --quiet). Errors: one line on stderr naming the\n"
	    "file and line; exit 1.\n"
	    "Bad usage: exit 2.\n");
}

/* The progress bar's thread: redraws every 100 ms until told to stop. */
typedef struct bar {
	_Atomic uint64_t done;
	uint64_t total;
	uint64_t t0;
	const char *name;
	int stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
} bar;

static void bar_draw(bar *b, uint64_t done)
{
	enum { WIDTH = 30 };
	if (done > b->total)
		done = b->total;
	double f = b->total > 0 ? (double)done / (double)b->total : 1.0;
	char cells[WIDTH + 1];
	int full = (int)(f * WIDTH);
	for (int i = 0; i < WIDTH; i++)
		cells[i] = i < full ? '#' : '.';
	cells[WIDTH] = '\0';
	fprintf(stderr, "\r\033[K%s [%s] %3d%%  %.0f/%.0f MB  %.1f s", b->name, cells, (int)(f * 100),
	        (double)done / 1e6, (double)b->total / 1e6, (double)(embd_now_ns() - b->t0) / 1e9);
	fflush(stderr);
}

static void *bar_run(void *arg)
{
	bar *b = arg;
	pthread_mutex_lock(&b->mu);
	while (!b->stop) {
		bar_draw(b, atomic_load_explicit(&b->done, memory_order_relaxed));
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 100000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&b->cv, &b->mu, &ts);
	}
	pthread_mutex_unlock(&b->mu);
	return NULL;
}

static const char *flag_value(int argc, char **argv, int *i, const char *flag)
{
	const char *a = argv[*i];
	size_t n = strlen(flag);
	if (strncmp(a, flag, n) == 0 && a[n] == '=')
		return a + n + 1;
	if (*i + 1 >= argc) {
		fprintf(stderr, "embd convert: %s needs a value\n", flag);
		return NULL;
	}
	return argv[++*i];
}

static int is_flag(const char *a, const char *flag)
{
	size_t n = strlen(flag);
	return strncmp(a, flag, n) == 0 && (a[n] == '\0' || a[n] == '=');
}

int embd_cmd_convert(int argc, char **argv)
{
	const char *in = NULL, *out = NULL, *vocab = NULL, *format = "auto";
	int skip_bad = 0, threads = 0, progress = -1, quiet = 0;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		const char *v;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			convert_usage(stdout);
			return 0;
		} else if (strcmp(a, "-o") == 0 || is_flag(a, "--output")) {
			if ((v = flag_value(argc, argv, &i, strcmp(a, "-o") == 0 ? "-o" : "--output")) == NULL)
				return 2;
			out = v;
		} else if (is_flag(a, "--vocab")) {
			if ((v = flag_value(argc, argv, &i, "--vocab")) == NULL)
				return 2;
			vocab = v;
		} else if (is_flag(a, "--format")) {
			if ((v = flag_value(argc, argv, &i, "--format")) == NULL)
				return 2;
			format = v;
		} else if (is_flag(a, "--threads")) {
			if ((v = flag_value(argc, argv, &i, "--threads")) == NULL)
				return 2;
			char *end;
			long t = strtol(v, &end, 10);
			if (*v == '\0' || *end != '\0' || t < 1 || t > 64) {
				fprintf(stderr, "embd convert: --threads: '%s' is not a number from 1 to 64\n", v);
				return 2;
			}
			threads = (int)t;
		} else if (strcmp(a, "--skip-bad") == 0) {
			skip_bad = 1;
		} else if (strcmp(a, "--progress") == 0) {
			progress = 1;
		} else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
			quiet = 1;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "embd convert: unknown option '%s' (see embd convert --help)\n", a);
			return 2;
		} else if (in == NULL) {
			in = a;
		} else {
			fprintf(stderr, "embd convert: one input file at a time ('%s' is a second one)\n", a);
			return 2;
		}
	}
	if (in == NULL || out == NULL) {
		fprintf(stderr, "embd convert: name the input file and -o OUT.npy (see embd convert --help)\n");
		return 2;
	}
	embd_convert_opts o = {0};
	if (strcmp(format, "auto") != 0) {
		static const embd_textvec_kind kinds[] = {EMBD_TEXTVEC_GLOVE, EMBD_TEXTVEC_W2V_TEXT,
		                                          EMBD_TEXTVEC_W2V_BIN};
		for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
			if (strcmp(format, embd_textvec_kind_name(kinds[k])) == 0)
				o.kind = kinds[k];
		if (o.kind == EMBD_TEXTVEC_NONE) {
			fprintf(stderr, "embd convert: --format: '%s' is not auto, glove, word2vec or word2vec_bin\n",
			        format);
			return 2;
		}
	}
	char vocab_buf[PATH_MAX];
	if (vocab == NULL) {
		if (embd_convert_vocab_path(out, vocab_buf, sizeof vocab_buf) != 0) {
			fprintf(stderr, "embd convert: %s: path too long\n", out);
			return 2;
		}
		vocab = vocab_buf;
	}
	if (threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		threads = n < 1 ? 1 : n > 64 ? 64 : (int)n;
	}
	o.skip_bad = skip_bad;
	o.threads = threads;
	if (progress < 0)
		progress = !quiet && isatty(STDERR_FILENO);
	if (quiet)
		progress = 0;

	static bar b; /* its address goes to the parser threads; static keeps it out of the way of the stack */
	pthread_t tid;
	int drawing = 0;
	if (progress) {
		FILE *f = fopen(in, "rb");
		if (f != NULL && fseeko(f, 0, SEEK_END) == 0)
			b.total = (uint64_t)ftello(f);
		if (f != NULL)
			fclose(f);
		atomic_init(&b.done, 0);
		b.t0 = embd_now_ns();
		b.name = in;
		pthread_mutex_init(&b.mu, NULL);
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&b.cv, &ca);
		pthread_condattr_destroy(&ca);
		drawing = pthread_create(&tid, NULL, bar_run, &b) == 0;
		if (drawing)
			o.bytes_done = &b.done;
	}
	uint64_t t0 = embd_now_ns();
	embd_convert_result r;
	embd_err e;
	int rc = embd_convert_file(in, out, vocab, &o, &r, &e);
	double secs = (double)(embd_now_ns() - t0) / 1e9;
	if (drawing) {
		pthread_mutex_lock(&b.mu);
		b.stop = 1;
		pthread_cond_signal(&b.cv);
		pthread_mutex_unlock(&b.mu);
		pthread_join(tid, NULL);
		/* The last frame: full when the parse went through, where it stopped otherwise. */
		bar_draw(&b, atomic_load(&b.done));
		fputc('\n', stderr);
	}
	if (rc != 0) {
		fprintf(stderr, "embd convert: %s\n", e.msg);
		return 1;
	}
	const char *unit = r.kind == EMBD_TEXTVEC_W2V_BIN ? "records" : "lines";
	if (r.skipped > 0)
		fprintf(stderr, "embd convert: %s: skipped %" PRIu64 " bad %s; the first: %s\n", in, r.skipped, unit,
		        r.first_skip);
	if (!quiet)
		printf("embd convert: %s (%s): %" PRIu64 " rows x %" PRIu64
		       " dim in %.2f s (parse %.2f s, write %.2f s); "
		       "wrote %s and %s\n",
		       in, embd_textvec_kind_name(r.kind), r.rows, r.dim, secs, (double)r.parse_ns / 1e9,
		       (double)r.write_ns / 1e9, out, vocab);
	return 0;
}
