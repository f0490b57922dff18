/* GloVe and word2vec/fastText text files: lines of a word and numbers, parsed by threads over chunks of lines. */
#include "textvec.h"

#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PARALLEL_MIN_BYTES (1u << 20) /* below this, threads cost more than they save */

typedef struct job {
	const unsigned char *b, *e; /* whole lines */
	uint64_t lines;             /* lines in [b, e) */
	uint64_t cap;               /* rows reserved: one per 2 * dim + 1 bytes, the least a good line takes */
	uint64_t base;              /* its first row */
	uint64_t line0;             /* file line number of its first line, 1-based */
	uint64_t dim;
	locale_t loc;
	float *data;            /* shared: row r at data + r * dim, for r in [base, base + cap) */
	uint64_t *rel_end;      /* shared: end of row r's word (with its NUL) in this job's arena */
	uint64_t *line_of;      /* shared: file line of row r */
	_Atomic uint64_t *done; /* shared: opts.bytes_done, or NULL */
	char *arena;
	size_t arena_len, arena_cap;
	uint64_t good, skipped;
	uint64_t err_line;
	int skip;
	int rc;
	char err[224];
} job;

static void job_bad(job *j, uint64_t line, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void job_bad(job *j, uint64_t line, int rc, const char *fmt, ...)
{
	if (j->skip)
		j->skipped++;
	if (j->err_line != 0)
		return; /* the first one in this chunk is what counts */
	j->err_line = line;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(j->err, sizeof j->err, fmt, ap);
	va_end(ap);
	if (!j->skip)
		j->rc = rc;
}

static int arena_put(job *j, const unsigned char *w, size_t n)
{
	if (j->arena_cap - j->arena_len < n + 1) {
		size_t cap = j->arena_cap ? j->arena_cap : 4096;
		while (cap - j->arena_len < n + 1)
			cap *= 2;
		char *a = realloc(j->arena, cap);
		if (a == NULL)
			return -ENOMEM;
		j->arena = a;
		j->arena_cap = cap;
	}
	memcpy(j->arena + j->arena_len, w, n);
	j->arena[j->arena_len + n] = '\0';
	j->arena_len += n + 1;
	return 0;
}

uint64_t embd_tv_count_lines(const unsigned char *b, const unsigned char *e)
{
	uint64_t n = 0;
	const unsigned char *p = b;
	while (p < e) {
		const unsigned char *nl = memchr(p, '\n', (size_t)(e - p));
		n++;
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	return n;
}

static void *count_job(void *arg)
{
	job *j = arg;
	j->lines = embd_tv_count_lines(j->b, j->e);
	return NULL;
}

/* Count the fields after the word of a line, for messages. */
uint64_t embd_tv_count_fields(const unsigned char *p, const unsigned char *le)
{
	uint64_t n = 0;
	for (; p < le; p++)
		n += *p == ' ';
	return n;
}

static void *parse_job(void *arg)
{
	job *j = arg;
	const unsigned char *p = j->b, *reported = j->b;
	uint64_t dim = j->dim;
	for (uint64_t i = 0; i < j->lines && j->rc == 0; i++) {
		embd_tv_progress(j->done, &reported, p, 0);
		uint64_t line = j->line0 + i;
		/* Every job has its bytes; clang-analyzer loses that through the thread start. */
		const unsigned char *nl =
		    memchr(p, '\n', (size_t)(j->e - p)); // NOLINT(clang-analyzer-core.NonNullParamChecker)
		const unsigned char *le = nl != NULL ? nl : j->e;
		const unsigned char *next = nl != NULL ? nl + 1 : j->e;
		while (le > p && embd_tv_line_ws(le[-1]))
			le--;
		const unsigned char *sp = memchr(p, ' ', (size_t)(le - p));
		const unsigned char *we = sp != NULL ? sp : le;
		size_t at;
		const char *why = embd_tv_word_problem(p, (size_t)(we - p), &at);
		if (why != NULL) {
			if (le == p)
				job_bad(j, line, EMBD_EFORMAT, "empty line");
			else
				job_bad(j, line, EMBD_EFORMAT, "%s (byte %zu)", why, at + 1);
			p = next;
			continue;
		}
		/* No room means this line cannot be good (see cap): its fields are still read, for the message. */
		uint64_t r = j->base + j->good;
		float sink[1];
		int room = j->good < j->cap;
		float *row = room ? j->data + r * dim : sink;
		const unsigned char *q = we;
		uint64_t k = 0;
		for (; k < dim && q < le; k++) {
			const unsigned char *f = q + 1; /* *q is the separating space */
			q = embd_tv_parse_field(f, le, &row[room ? k : 0], j->loc);
			if (q == NULL) {
				const unsigned char *fe = memchr(f, ' ', (size_t)(le - f));
				int n = (int)((fe != NULL ? fe : le) - f);
				job_bad(j, line, EMBD_EFORMAT, "field %llu is not a number: '%.*s'",
				        (unsigned long long)k + 2, n > 40 ? 40 : n, (const char *)f);
				break;
			}
		}
		if (q == NULL) {
			p = next;
			continue;
		}
		if (k < dim || q < le) {
			job_bad(j, line, EMBD_EFORMAT, "%llu numbers after the word, expected %llu",
			        (unsigned long long)embd_tv_count_fields(we, le), (unsigned long long)dim);
			p = next;
			continue;
		}
		if (!room) { /* cannot happen (see cap): refuse rather than overrun */
			j->rc = EMBD_EINTERNAL;
			j->err_line = line;
			snprintf(j->err, sizeof j->err, "more rows than the bytes allow");
			break;
		}
		int rc = arena_put(j, p, (size_t)(we - p));
		if (rc != 0) {
			j->rc = rc;
			j->err_line = line;
			snprintf(j->err, sizeof j->err, "out of memory");
			break;
		}
		j->rel_end[r] = j->arena_len;
		j->line_of[r] = line;
		j->good++;
		p = next;
	}
	embd_tv_progress(j->done, &reported, p, 1);
	return NULL;
}

int embd_tv_parse_text(const unsigned char *buf, size_t len, int header, const embd_textvec_opts *o, embd_textvec *tv,
                       embd_err *e)
{
	const unsigned char *end = buf + len, *body = buf;
	uint64_t hrows = 0, dim = 0, line0 = 1;
	if (header) {
		const unsigned char *nl = memchr(buf, '\n', len);
		const unsigned char *le = nl != NULL ? nl : end;
		if (embd_tv_parse_header(buf, le, &hrows, &dim) != 0)
			return embd_err_set(e, EMBD_EFORMAT, "line 1: not a `rows dim` header");
		body = nl != NULL ? nl + 1 : end;
		line0 = 2;
	}
	/* Whitespace at the very end (blank lines too) is not a line. */
	while (end > body && embd_tv_line_ws(end[-1]))
		end--;
	if (!header) {
		/* GloVe: the first line's field count is the dim, as in gensim. */
		const unsigned char *nl = memchr(body, '\n', (size_t)(end - body));
		const unsigned char *le = nl != NULL ? nl : end;
		while (le > body && embd_tv_line_ws(le[-1]))
			le--;
		const unsigned char *sp = memchr(body, ' ', (size_t)(le - body));
		dim = sp != NULL ? embd_tv_count_fields(sp, le) : 0;
		if (dim == 0)
			return embd_err_set(e, EMBD_EFORMAT, "line 1: no numbers after the word");
	}
	int threads = o != NULL && o->threads > 0 ? o->threads : 2;
	if (threads > 64)
		threads = 64;
	if ((size_t)(end - body) < PARALLEL_MIN_BYTES)
		threads = 1;
	job jobs[64];
	memset(jobs, 0, sizeof(job) * (size_t)threads);
	const unsigned char *cut = body;
	for (int t = 0; t < threads; t++) {
		jobs[t].b = cut;
		if (t == threads - 1) {
			cut = end;
		} else {
			cut = body + (size_t)(end - body) / (size_t)threads * (size_t)(t + 1);
			if (cut < jobs[t].b)
				cut = jobs[t].b;
			const unsigned char *nl = memchr(cut, '\n', (size_t)(end - cut));
			cut = nl != NULL ? nl + 1 : end;
		}
		jobs[t].e = cut;
	}
	int rc = 0, started = 0;
	pthread_t tid[64];
	for (int t = 1; t < threads; t++, started++)
		if ((rc = pthread_create(&tid[t], NULL, count_job, &jobs[t])) != 0)
			break;
	count_job(&jobs[0]);
	for (int t = 1; t <= started; t++)
		pthread_join(tid[t], NULL);
	if (rc != 0)
		return embd_err_set(e, -rc, "pthread_create: %s", strerror(rc));
	/*
	 * Rows are reserved per job by what its bytes can hold, not by its line
	 * count, so that a wide first line over many short lines cannot ask for
	 * more memory than about twice the file.
	 */
	uint64_t lines = 0, cap = 0;
	for (int t = 0; t < threads; t++) {
		jobs[t].base = cap;
		jobs[t].line0 = line0 + lines;
		lines += jobs[t].lines;
		uint64_t fit = (uint64_t)(jobs[t].e - jobs[t].b) / (2 * dim + 1);
		jobs[t].cap = fit < jobs[t].lines ? fit : jobs[t].lines;
		cap += jobs[t].cap;
	}
	if (header && lines != hrows)
		return embd_err_set(e, EMBD_EFORMAT, "line 1: the header says %llu rows but %llu lines follow it",
		                    (unsigned long long)hrows, (unsigned long long)lines);
	if ((rc = embd_tv_check_rows_dim(lines, dim, e)) != 0)
		return rc;

	locale_t loc = newlocale(LC_ALL_MASK, "C", (locale_t)0);
	if (loc == (locale_t)0)
		return embd_err_set(e, -errno, "newlocale: %s", strerror(errno));
	tv->dim = dim;
	/* calloc for the small arrays: clang-analyzer cannot see that the rows read are the rows written. */
	tv->data = cap > 0 ? malloc((size_t)(cap * dim) * sizeof(float)) : NULL;
	uint64_t *rel_end = calloc((size_t)cap + 1, sizeof(uint64_t));
	uint64_t *line_of = calloc((size_t)cap + 1, sizeof(uint64_t));
	if ((cap > 0 && tv->data == NULL) || rel_end == NULL || line_of == NULL) {
		rc = embd_err_set(e, -ENOMEM, "out of memory for %llu x %llu floats", (unsigned long long)lines,
		                  (unsigned long long)dim);
		goto out;
	}
	for (int t = 0; t < threads; t++) {
		jobs[t].dim = dim;
		jobs[t].skip = o != NULL && o->skip_bad;
		jobs[t].loc = loc;
		jobs[t].data = tv->data;
		jobs[t].rel_end = rel_end;
		jobs[t].line_of = line_of;
		jobs[t].done = o != NULL ? o->bytes_done : NULL;
	}
	started = 0;
	for (int t = 1; t < threads; t++, started++)
		if ((rc = pthread_create(&tid[t], NULL, parse_job, &jobs[t])) != 0)
			break;
	parse_job(&jobs[0]);
	for (int t = 1; t <= started; t++)
		pthread_join(tid[t], NULL);
	if (rc != 0) {
		rc = embd_err_set(e, -rc, "pthread_create: %s", strerror(rc));
		goto out;
	}
	uint64_t first_line = 0;
	for (int t = 0; t < threads; t++) {
		if (jobs[t].rc != 0) {
			rc = embd_err_set(e, jobs[t].rc, "line %llu: %s", (unsigned long long)jobs[t].err_line,
			                  jobs[t].err);
			goto out;
		}
		if (jobs[t].skipped > 0)
			embd_tv_note_skip(tv, &first_line, jobs[t].err_line, "line", jobs[t].err);
		tv->skipped += jobs[t].skipped;
	}
	/* Gather the jobs' rows and words into one run, in order. */
	size_t words = 0;
	uint64_t good = 0;
	for (int t = 0; t < threads; t++) {
		words += jobs[t].arena_len;
		good += jobs[t].good;
	}
	if (good == 0 || tv->data == NULL) {
		rc = embd_err_set(e, EMBD_EFORMAT, "no vectors: all %llu lines were bad (first: %s)",
		                  (unsigned long long)lines, tv->first_skip);
		goto out;
	}
	tv->words = malloc(words);
	tv->word_off = malloc((size_t)(cap + 1) * sizeof(uint64_t));
	if (tv->words == NULL || tv->word_off == NULL) {
		rc = embd_err_set(e, -ENOMEM, "out of memory");
		goto out;
	}
	uint64_t w = 0, woff = 0;
	tv->word_off[0] = 0;
	for (int t = 0; t < threads; t++) {
		const job *j = &jobs[t];
		for (uint64_t k = 0; k < j->good; k++, w++) {
			uint64_t r = j->base + k;
			if (r != w) {
				memmove(tv->data + w * dim, tv->data + r * dim, (size_t)dim * sizeof(float));
				line_of[w] = line_of[r];
			}
			tv->word_off[w + 1] = woff + rel_end[r];
		}
		if (j->arena_len > 0)
			memcpy(tv->words + woff, j->arena, j->arena_len);
		woff += j->arena_len;
	}
	tv->rows = w;
	tv->words_bytes = woff;
	rc = embd_tv_dedup(tv, line_of, o != NULL && o->skip_bad, "line", &first_line, e);
	if (rc == 0 && o != NULL && o->bytes_done != NULL) {
		/* The jobs went through [body, end): the header and the trailing whitespace make up len. */
		atomic_fetch_add_explicit(o->bytes_done, (uint64_t)(body - buf) + (uint64_t)(buf + len - end),
		                          memory_order_relaxed);
	}
out:
	for (int t = 0; t < threads; t++)
		free(jobs[t].arena);
	free(rel_end);
	free(line_of);
	freelocale(loc);
	return rc;
}
