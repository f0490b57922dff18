/* GloVe, word2vec/fastText text and word2vec binary files parsed into float32 rows and a word arena. */
#include "textvec.h"

#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/*
 * What gensim does, and therefore what this file does (gensim 4.2,
 * keyedvectors.py, _word2vec_line_to_vector): a line is the bytes up to '\n';
 * its trailing ASCII whitespace (bytes.rstrip: space, \t, \n, \r, \v, \f) is
 * dropped; the rest is split at every single space; the first field is the
 * word and every other field goes through np.float32(field), which reads the
 * field as Python's float() does (nearest double) and rounds that double to
 * float32. So "a  1" (two spaces) has an empty field and is a bad line, as in
 * gensim, and a tab never separates fields.
 *
 * The number syntax accepted is Python float()'s, restricted to ASCII:
 * optional leading and trailing \t \n \v \f \r, an optional sign, then either
 * "inf", "infinity" or "nan" in any case, or digits with an optional '.' and
 * fraction (at least one digit in all) and an optional exponent (e or E, an
 * optional sign, digits); a single '_' may stand between two digits. Python
 * also accepts non-ASCII digits and whitespace (U+0661, U+00A0): those lines
 * are refused here. NaN is 0x7fc00000 with the sign of the text, as NumPy
 * makes it. Where gensim differs on purpose: duplicate words (gensim keeps the
 * first with a warning), an empty word, a word with a NUL, and a header whose
 * row count disagrees with the lines are errors here (skip_bad leaves the
 * later duplicates out, like gensim).
 */

#define PARALLEL_MIN_BYTES (1u << 20) /* below this, threads cost more than they save */
#define SNIFF_MAX          (1u << 20)
#define PROGRESS_STEP      (1u << 20) /* bytes between two adds to opts.bytes_done */

/* Add the bytes from *reported to p to *done (when there is one) once they make a step, or when final. */
static void progress(_Atomic uint64_t *done, const unsigned char **reported, const unsigned char *p, int final)
{
	if (done != NULL && (final || (size_t)(p - *reported) >= PROGRESS_STEP)) {
		atomic_fetch_add_explicit(done, (uint64_t)(p - *reported), memory_order_relaxed);
		*reported = p;
	}
}

static int line_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* The whitespace float() strips inside a field: a space cannot be there (it separates fields). */
static int field_ws(unsigned char c)
{
	return c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                       1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int ieq(const unsigned char *s, size_t n, const char *lit)
{
	if (strlen(lit) != n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		if (c != (unsigned char)lit[i])
			return 0;
	}
	return 1;
}

static float f32_from_bits(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

/*
 * The correctly rounded double of a validated decimal [s, e) (sign, digits,
 * underscores, '.', exponent) through strtod_l in the C locale: the slow path,
 * for more than 19 significant digits or a power of ten beyond 10^22.
 */
static int slow_double(const unsigned char *s, const unsigned char *e, locale_t loc, double *out)
{
	char small[128];
	size_t n = (size_t)(e - s);
	char *buf = n < sizeof small ? small : malloc(n + 1);
	if (buf == NULL)
		return -1; /* a field of more than 127 bytes and no memory: refused as if not a number */
	size_t k = 0;
	for (const unsigned char *p = s; p < e; p++)
		if (*p != '_')
			buf[k++] = (char)*p;
	buf[k] = '\0';
	*out = strtod_l(buf, NULL, loc);
	if (buf != small)
		free(buf);
	return 0;
}

/*
 * One field starting at p (the byte after a separating space) and ending at
 * the next space or at le. On success stores the float, returns the end of
 * the field; NULL when it is not a number.
 */
static const unsigned char *parse_field(const unsigned char *p, const unsigned char *le, float *out, locale_t loc)
{
	/* The common shape first ("-0.41242": sign, at most 19 digits, '.'), in one tight loop; else the full grammar.
	 */
	{
		const unsigned char *s = p;
		int neg = s < le && *s == '-';
		s += neg;
		const unsigned char *d0 = s;
		uint64_t m = 0;
		while (s < le && digit(*s))
			m = m * 10 + (uint64_t)(*s++ - '0');
		ptrdiff_t ni = s - d0, nf = 0;
		if (s < le && *s == '.') {
			const unsigned char *f0 = ++s;
			while (s < le && digit(*s))
				m = m * 10 + (uint64_t)(*s++ - '0');
			nf = s - f0;
		}
		if ((s == le || *s == ' ') && ni + nf > 0 && ni + nf <= 19 && nf <= 22 && m <= (UINT64_C(1) << 53)) {
			float f = (float)((double)m / pow10_exact[nf]);
			*out = neg ? -f : f;
			return s;
		}
	}
	const unsigned char *s = p;
	while (s < le && field_ws(*s))
		s++;
	const unsigned char *num = s;
	int neg = 0;
	if (s < le && (*s == '+' || *s == '-')) {
		neg = *s == '-';
		s++;
	}
	if (s < le && !digit(*s) && *s != '.') {
		/* inf, infinity, nan: the letters run to the end of the field (before trailing whitespace). */
		const unsigned char *w = s;
		while (w < le && *w != ' ' && !field_ws(*w))
			w++;
		size_t n = (size_t)(w - s);
		uint32_t bits;
		if (ieq(s, n, "inf") || ieq(s, n, "infinity"))
			bits = 0x7f800000u;
		else if (ieq(s, n, "nan"))
			bits = 0x7fc00000u; /* NumPy's NaN; the sign of the text is kept, as float('-nan') keeps it */
		else
			return NULL;
		while (w < le && field_ws(*w))
			w++;
		if (w < le && *w != ' ')
			return NULL;
		*out = f32_from_bits(bits | (neg ? 0x80000000u : 0));
		return w;
	}
	uint64_t mant = 0;
	int nd = 0, trunc = 0, any = 0;
	long exp10 = 0;
	/* Integer part. */
	while (s < le) {
		unsigned char c = *s;
		if (digit(c)) {
			any = 1;
			if (mant == 0 && c == '0') {
				/* a leading zero adds nothing */
			} else if (nd < 19) {
				mant = mant * 10 + (uint64_t)(c - '0');
				nd++;
			} else {
				exp10++;
				trunc |= c != '0';
			}
			s++;
		} else if (c == '_' && s > num && digit(s[-1]) && s + 1 < le && digit(s[1])) {
			s++;
		} else {
			break;
		}
	}
	if (s < le && *s == '.') {
		s++;
		while (s < le) {
			unsigned char c = *s;
			if (digit(c)) {
				any = 1;
				if (mant == 0 && c == '0') {
					exp10--;
				} else if (nd < 19) {
					mant = mant * 10 + (uint64_t)(c - '0');
					nd++;
					exp10--;
				} else {
					trunc |= c != '0';
				}
				s++;
			} else if (c == '_' && digit(s[-1]) && s + 1 < le && digit(s[1])) {
				s++;
			} else {
				break;
			}
		}
	}
	if (!any)
		return NULL;
	if (s < le && (*s == 'e' || *s == 'E')) {
		s++;
		int eneg = 0;
		if (s < le && (*s == '+' || *s == '-')) {
			eneg = *s == '-';
			s++;
		}
		if (s >= le || !digit(*s))
			return NULL;
		long ev = 0;
		while (s < le) {
			if (digit(*s)) {
				if (ev < 100000000)
					ev = ev * 10 + (*s - '0');
				s++;
			} else if (*s == '_' && digit(s[-1]) && s + 1 < le && digit(s[1])) {
				s++;
			} else {
				break;
			}
		}
		exp10 += eneg ? -ev : ev;
	}
	const unsigned char *nend = s;
	while (s < le && field_ws(*s))
		s++;
	if (s < le && *s != ' ')
		return NULL;
	double d;
	if (mant == 0) {
		d = 0.0;
	} else if (!trunc && mant <= (UINT64_C(1) << 53) && exp10 >= -22 && exp10 <= 22) {
		/* Clinger's fast path: both operands exact, so one IEEE operation rounds once, correctly. */
		d = (double)mant;
		d = exp10 >= 0 ? d * pow10_exact[exp10] : d / pow10_exact[-exp10];
	} else {
		if (slow_double(num + (num < nend && (*num == '+' || *num == '-')), nend, loc, &d) != 0)
			return NULL;
	}
	float f = (float)d; /* the second rounding: np.float32(float(text)) */
	*out = neg ? -f : f;
	return s;
}

/* Why a word is refused, or NULL. */
static const char *word_problem(const unsigned char *w, size_t n, size_t *at)
{
	*at = 0;
	if (n == 0)
		return "empty word";
	*at = embd_utf8_valid_len(w, n);
	if (*at == n)
		return NULL;
	return w[*at] == 0 ? "NUL byte in the word" : "invalid UTF-8 in the word";
}

/* ---- text formats ---- */

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

static uint64_t count_lines(const unsigned char *b, const unsigned char *e)
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
	j->lines = count_lines(j->b, j->e);
	return NULL;
}

/* Count the fields after the word of a line, for messages. */
static uint64_t count_fields(const unsigned char *p, const unsigned char *le)
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
		progress(j->done, &reported, p, 0);
		uint64_t line = j->line0 + i;
		/* Every job has its bytes; clang-analyzer loses that through the thread start. */
		const unsigned char *nl =
		    memchr(p, '\n', (size_t)(j->e - p)); // NOLINT(clang-analyzer-core.NonNullParamChecker)
		const unsigned char *le = nl != NULL ? nl : j->e;
		const unsigned char *next = nl != NULL ? nl + 1 : j->e;
		while (le > p && line_ws(le[-1]))
			le--;
		const unsigned char *sp = memchr(p, ' ', (size_t)(le - p));
		const unsigned char *we = sp != NULL ? sp : le;
		size_t at;
		const char *why = word_problem(p, (size_t)(we - p), &at);
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
			q = parse_field(f, le, &row[room ? k : 0], j->loc);
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
			        (unsigned long long)count_fields(we, le), (unsigned long long)dim);
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
	progress(j->done, &reported, p, 1);
	return NULL;
}

/* Unsigned decimal with overflow check; returns the end, or NULL. */
static const unsigned char *parse_u64(const unsigned char *p, const unsigned char *e, uint64_t *out)
{
	uint64_t v = 0;
	const unsigned char *s = p;
	while (p < e && digit(*p)) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return NULL;
		v = v * 10 + d;
		p++;
	}
	if (p == s)
		return NULL;
	*out = v;
	return p;
}

/*
 * A `rows dim` header line in [p, le) (le at its '\n' or the end): two
 * decimal integers separated and surrounded by spaces or tabs (a trailing \r,
 * \v, \f too). Returns 0 or -1.
 */
static int parse_header(const unsigned char *p, const unsigned char *le, uint64_t *rows, uint64_t *dim)
{
	while (le > p && line_ws(le[-1]))
		le--;
	while (p < le && (*p == ' ' || *p == '\t'))
		p++;
	p = parse_u64(p, le, rows);
	if (p == NULL || p >= le || (*p != ' ' && *p != '\t'))
		return -1;
	while (p < le && (*p == ' ' || *p == '\t'))
		p++;
	p = parse_u64(p, le, dim);
	return p == le ? 0 : -1;
}

/* Open-addressing set of row indices by word, for duplicates. */
static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3u;
	return h ^ (h >> 29);
}

/*
 * Marks keep[r] = 0 for every row whose word came earlier; returns the number
 * of such rows and, for the first, its row and the earlier row in *dup, *orig.
 */
static int find_dups(const embd_textvec *tv, unsigned char *keep, uint64_t *ndup, uint64_t *dup, uint64_t *orig)
{
	uint64_t cap = 16;
	while (cap < tv->rows * 2)
		cap *= 2;
	uint64_t *slot = calloc(cap, sizeof *slot); /* row + 1; 0 empty */
	if (slot == NULL)
		return -ENOMEM;
	*ndup = 0;
	for (uint64_t r = 0; r < tv->rows; r++) {
		const char *w = tv->words + tv->word_off[r];
		size_t n = (size_t)(tv->word_off[r + 1] - tv->word_off[r] - 1);
		uint64_t i = hash_bytes(w, n) & (cap - 1);
		for (;; i = (i + 1) & (cap - 1)) {
			if (slot[i] == 0) {
				slot[i] = r + 1;
				break;
			}
			uint64_t o = slot[i] - 1;
			if (tv->word_off[o + 1] - tv->word_off[o] - 1 == n &&
			    memcmp(tv->words + tv->word_off[o], w, n) == 0) {
				if ((*ndup)++ == 0) {
					*dup = r;
					*orig = o;
				}
				keep[r] = 0;
				break;
			}
		}
	}
	free(slot);
	return 0;
}

/* Move the kept rows (keep[r] != 0) to the front, in order; line_of moves along. */
static void compact(embd_textvec *tv, const unsigned char *keep, uint64_t *line_of)
{
	uint64_t w = 0, woff = 0;
	for (uint64_t r = 0; r < tv->rows; r++) {
		uint64_t b = tv->word_off[r], n = tv->word_off[r + 1] - b;
		if (!keep[r])
			continue;
		if (w != r) {
			memmove(tv->data + w * tv->dim, tv->data + r * tv->dim, (size_t)tv->dim * sizeof(float));
			line_of[w] = line_of[r];
		}
		memmove(tv->words + woff, tv->words + b, (size_t)n);
		tv->word_off[w] = woff;
		woff += n;
		w++;
	}
	tv->word_off[w] = woff;
	tv->rows = w;
	tv->words_bytes = woff;
}

static void note_skip(embd_textvec *tv, uint64_t *first_line, uint64_t line, const char *unit, const char *msg)
{
	if (*first_line != 0 && *first_line <= line)
		return;
	*first_line = line;
	snprintf(tv->first_skip, sizeof tv->first_skip, "%s %llu: %s", unit, (unsigned long long)line, msg);
}

static int check_rows_dim(uint64_t rows, uint64_t dim, embd_err *e)
{
	if (rows == 0 || dim == 0)
		return embd_err_set(e, EMBD_EFORMAT, "no vectors (%llu rows of %llu numbers)", (unsigned long long)rows,
		                    (unsigned long long)dim);
	if (dim > SIZE_MAX / sizeof(float) / rows)
		return embd_err_set(e, EMBD_EOVERFLOW, "%llu rows x %llu float32 overflows", (unsigned long long)rows,
		                    (unsigned long long)dim);
	return 0;
}

/* The duplicate check shared by both kinds: an error, or (skip) the later copies left out. */
static int dedup(embd_textvec *tv, uint64_t *line_of, int skip, const char *unit, uint64_t *first_line, embd_err *e)
{
	unsigned char *keep = malloc((size_t)tv->rows + 1);
	if (keep == NULL)
		return embd_err_set(e, -ENOMEM, "out of memory");
	memset(keep, 1, (size_t)tv->rows);
	uint64_t ndup = 0, dup = 0, orig = 0;
	int rc = find_dups(tv, keep, &ndup, &dup, &orig);
	if (rc != 0) {
		free(keep);
		return embd_err_set(e, rc, "out of memory");
	}
	if (ndup > 0) {
		char msg[200];
		const char *w = tv->words + tv->word_off[dup];
		snprintf(msg, sizeof msg, "duplicate word '%.60s' (first on %s %llu)", w, unit,
		         (unsigned long long)line_of[orig]);
		if (!skip) {
			rc = embd_err_set(e, EMBD_EFORMAT, "%s %llu: %s", unit, (unsigned long long)line_of[dup], msg);
			free(keep);
			return rc;
		}
		note_skip(tv, first_line, line_of[dup], unit, msg);
		tv->skipped += ndup;
		compact(tv, keep, line_of);
	}
	free(keep);
	return 0;
}

static int parse_text(const unsigned char *buf, size_t len, int header, const embd_textvec_opts *o, embd_textvec *tv,
                      embd_err *e)
{
	const unsigned char *end = buf + len, *body = buf;
	uint64_t hrows = 0, dim = 0, line0 = 1;
	if (header) {
		const unsigned char *nl = memchr(buf, '\n', len);
		const unsigned char *le = nl != NULL ? nl : end;
		if (parse_header(buf, le, &hrows, &dim) != 0)
			return embd_err_set(e, EMBD_EFORMAT, "line 1: not a `rows dim` header");
		body = nl != NULL ? nl + 1 : end;
		line0 = 2;
	}
	/* Whitespace at the very end (blank lines too) is not a line. */
	while (end > body && line_ws(end[-1]))
		end--;
	if (!header) {
		/* GloVe: the first line's field count is the dim, as in gensim. */
		const unsigned char *nl = memchr(body, '\n', (size_t)(end - body));
		const unsigned char *le = nl != NULL ? nl : end;
		while (le > body && line_ws(le[-1]))
			le--;
		const unsigned char *sp = memchr(body, ' ', (size_t)(le - body));
		dim = sp != NULL ? count_fields(sp, le) : 0;
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
	if ((rc = check_rows_dim(lines, dim, e)) != 0)
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
			note_skip(tv, &first_line, jobs[t].err_line, "line", jobs[t].err);
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
	rc = dedup(tv, line_of, o != NULL && o->skip_bad, "line", &first_line, e);
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

/* ---- word2vec binary ---- */

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int parse_bin(const unsigned char *buf, size_t len, const embd_textvec_opts *o, embd_textvec *tv, embd_err *e)
{
	const unsigned char *end = buf + len;
	const unsigned char *nl = memchr(buf, '\n', len);
	uint64_t rows, dim;
	if (nl == NULL || parse_header(buf, nl, &rows, &dim) != 0)
		return embd_err_set(e, EMBD_EFORMAT, "not a `rows dim` header line");
	if (rows == 0 || dim == 0)
		return check_rows_dim(rows, dim, e);
	int rc, skip = o != NULL && o->skip_bad;
	if (dim > SIZE_MAX / 4)
		return embd_err_set(e, EMBD_ETRUNC, "record 1: %llu float32 need more bytes than the file has",
		                    (unsigned long long)dim);
	size_t vbytes = (size_t)dim * 4;
	/* Pass 1: walk the records without keeping anything, so that a lying header costs no memory. */
	uint64_t good = 0, words = 0, first_line = 0;
	const unsigned char *p = nl + 1;
	for (uint64_t r = 1; r <= rows; r++) {
		while (p < end && *p == '\n')
			p++;
		const unsigned char *sp = memchr(p, ' ', (size_t)(end - p));
		if (sp == NULL)
			return embd_err_set(e, EMBD_ETRUNC,
			                    "record %llu (byte %zu): no space ending a word before the end of the file",
			                    (unsigned long long)r, (size_t)(p - buf));
		if ((size_t)(end - sp - 1) < vbytes)
			return embd_err_set(e, EMBD_ETRUNC,
			                    "record %llu (byte %zu): %zu bytes of floats needed, %zu left in the file",
			                    (unsigned long long)r, (size_t)(p - buf), vbytes, (size_t)(end - sp - 1));
		size_t at;
		const char *why = word_problem(p, (size_t)(sp - p), &at);
		if (why != NULL) {
			if (!skip)
				return embd_err_set(e, EMBD_EFORMAT, "record %llu (byte %zu): %s",
				                    (unsigned long long)r, (size_t)(p - buf), why);
			char msg[96];
			snprintf(msg, sizeof msg, "%s", why);
			note_skip(tv, &first_line, r, "record", msg);
			tv->skipped++;
		} else {
			good++;
			words += (uint64_t)(sp - p) + 1;
		}
		p = sp + 1 + vbytes;
	}
	const unsigned char *tail = p;
	while (tail < end && line_ws(*tail))
		tail++;
	if (tail < end)
		return embd_err_set(e, EMBD_EFORMAT, "byte %zu: data after the header's %llu records",
		                    (size_t)(tail - buf), (unsigned long long)rows);
	if (good == 0)
		return embd_err_set(e, EMBD_EFORMAT, "no vectors: all %llu records were bad (first: %s)",
		                    (unsigned long long)rows, tv->first_skip);
	if ((rc = check_rows_dim(good, dim, e)) != 0)
		return rc;
	tv->dim = dim;
	tv->data = malloc((size_t)good * vbytes);
	tv->words = malloc((size_t)words);
	tv->word_off = malloc((size_t)(good + 1) * sizeof(uint64_t));
	uint64_t *line_of = calloc((size_t)good, sizeof(uint64_t)); /* calloc: for clang-analyzer, as in parse_text */
	if (tv->data == NULL || tv->words == NULL || tv->word_off == NULL || line_of == NULL) {
		free(line_of);
		return embd_err_set(e, -ENOMEM, "out of memory for %llu x %llu floats", (unsigned long long)good,
		                    (unsigned long long)dim);
	}
	/* Pass 2: the same walk, now known to be in bounds, copying. */
	_Atomic uint64_t *done = o != NULL ? o->bytes_done : NULL;
	const unsigned char *reported = buf;
	p = nl + 1;
	uint64_t w = 0, woff = 0;
	tv->word_off[0] = 0;
	for (uint64_t r = 1; r <= rows; r++) {
		while (*p == '\n')
			p++;
		const unsigned char *sp = memchr(p, ' ', (size_t)(end - p));
		size_t n = (size_t)(sp - p), at;
		if (word_problem(p, n, &at) == NULL) {
			memcpy(tv->words + woff, p, n);
			tv->words[woff + n] = '\0';
			woff += n + 1;
			tv->word_off[w + 1] = woff;
			float *row = tv->data + w * dim;
			const unsigned char *f = sp + 1;
			for (uint64_t k = 0; k < dim; k++) {
				uint32_t u = le32(f + 4 * k);
				memcpy(&row[k], &u, 4);
			}
			line_of[w] = r;
			w++;
		}
		p = sp + 1 + vbytes;
		progress(done, &reported, p, 0);
	}
	tv->rows = w;
	tv->words_bytes = woff;
	rc = dedup(tv, line_of, skip, "record", &first_line, e);
	free(line_of);
	if (rc == 0)
		progress(done, &reported, end, 1);
	return rc;
}

/* ---- public ---- */

const char *embd_textvec_kind_name(embd_textvec_kind kind)
{
	switch (kind) {
	case EMBD_TEXTVEC_GLOVE:
		return "glove";
	case EMBD_TEXTVEC_W2V_TEXT:
		return "word2vec";
	case EMBD_TEXTVEC_W2V_BIN:
		return "word2vec_bin";
	default:
		return "none";
	}
}

/* A text line [p, le) of a word and numbers: how many numbers; 0 when it is not one. */
static uint64_t numbers_line(const unsigned char *p, const unsigned char *le, locale_t loc)
{
	while (le > p && line_ws(le[-1]))
		le--;
	const unsigned char *sp = memchr(p, ' ', (size_t)(le - p));
	size_t at;
	if (sp == NULL || word_problem(p, (size_t)(sp - p), &at) != NULL)
		return 0;
	uint64_t n = 0;
	for (const unsigned char *q = sp; q < le; n++) {
		float f;
		q = parse_field(q + 1, le, &f, loc);
		if (q == NULL)
			return 0;
	}
	return n;
}

/*
 * The end of the complete fields of a line that the sniff window cut at le:
 * the space before the field the cut fell in (which may have been cut inside
 * a number, "-1e" of "-1e-05", or right after a space), or b when there is
 * no space.
 */
static const unsigned char *complete_fields(const unsigned char *b, const unsigned char *le)
{
	while (le > b && le[-1] != ' ')
		le--;
	if (le > b)
		le--;
	return le;
}

embd_textvec_kind embd_textvec_sniff(const unsigned char *buf, size_t len)
{
	int cut = len > SNIFF_MAX;
	if (cut)
		len = SNIFF_MAX;
	const unsigned char *end = buf + len;
	const unsigned char *nl = memchr(buf, '\n', len);
	const unsigned char *le = nl != NULL ? nl : end;
	if (nl == NULL && cut)
		le = complete_fields(buf, le); /* a first line longer than the window */
	uint64_t rows, dim;
	locale_t loc = newlocale(LC_ALL_MASK, "C", (locale_t)0);
	if (loc == (locale_t)0)
		return EMBD_TEXTVEC_NONE;
	embd_textvec_kind kind = EMBD_TEXTVEC_NONE;
	if (parse_header(buf, le, &rows, &dim) == 0) {
		if (nl == NULL) {
			kind = EMBD_TEXTVEC_W2V_TEXT;
			goto out;
		}
		/*
		 * Text or binary: does the first record read as a word and numbers?
		 * Any count of them: a text file whose lines disagree with its header
		 * is text, for the parse to report the line, never binary floats made
		 * of its digits.
		 */
		const unsigned char *p = nl + 1;
		const unsigned char *rl = memchr(p, '\n', (size_t)(end - p));
		if (rl == NULL)
			rl = cut ? complete_fields(p, end) : end; /* a first record longer than the window */
		if (p == end || numbers_line(p, rl, loc) > 0)
			kind = EMBD_TEXTVEC_W2V_TEXT;
		else
			kind = EMBD_TEXTVEC_W2V_BIN;
		goto out;
	}
	if (numbers_line(buf, le, loc) > 0)
		kind = EMBD_TEXTVEC_GLOVE;
out:
	freelocale(loc);
	return kind;
}

int embd_textvec_parse(const unsigned char *buf, size_t len, embd_textvec_kind kind, const embd_textvec_opts *o,
                       embd_textvec *out, embd_err *e)
{
	memset(out, 0, sizeof *out);
	if (buf == NULL || len == 0)
		return embd_err_set(e, EMBD_EFORMAT, "the file is empty");
	int rc;
	switch (kind) {
	case EMBD_TEXTVEC_GLOVE:
		rc = parse_text(buf, len, 0, o, out, e);
		break;
	case EMBD_TEXTVEC_W2V_TEXT:
		rc = parse_text(buf, len, 1, o, out, e);
		break;
	case EMBD_TEXTVEC_W2V_BIN:
		rc = parse_bin(buf, len, o, out, e);
		break;
	default:
		rc = embd_err_set(e, EMBD_EFORMAT, "not a text vector format");
	}
	if (rc != 0)
		embd_textvec_free(out);
	return rc;
}

void embd_textvec_free(embd_textvec *tv)
{
	if (tv == NULL)
		return;
	free(tv->data);
	free(tv->words);
	free(tv->word_off);
	memset(tv, 0, sizeof *tv);
}

/* The word at [p, le) (up to the first space) as the next peeked word. */
static void peek_word(embd_textvec_look *out, const unsigned char *p, const unsigned char *le)
{
	const unsigned char *sp = memchr(p, ' ', (size_t)(le - p));
	size_t n = (size_t)((sp != NULL ? sp : le) - p);
	if (n > 63) {
		n = 63;
		while (n > 0 && (p[n] & 0xc0) == 0x80)
			n--; /* cut between UTF-8 characters, not inside one */
	}
	memcpy(out->words[out->nwords], p, n);
	out->words[out->nwords][n] = '\0';
	out->nwords++;
}

int embd_textvec_peek(const unsigned char *buf, size_t len, embd_textvec_kind kind, embd_textvec_look *out, embd_err *e)
{
	memset(out, 0, sizeof *out);
	const unsigned char *end = buf + len, *p = buf;
	if (kind == EMBD_TEXTVEC_W2V_TEXT || kind == EMBD_TEXTVEC_W2V_BIN) {
		const unsigned char *nl = memchr(buf, '\n', len);
		if (nl == NULL || parse_header(buf, nl, &out->rows, &out->dim) != 0)
			return embd_err_set(e, EMBD_EFORMAT, "line 1: not a `rows dim` header");
		p = nl + 1;
	}
	if (kind == EMBD_TEXTVEC_W2V_BIN) {
		/* Records: a word, a space, dim float32; gensim skips newlines before a word. */
		uint64_t vbytes = out->dim * 4;
		while (out->nwords < EMBD_TEXTVEC_PEEK_WORDS && out->nwords < out->rows && out->dim <= UINT64_MAX / 4) {
			while (p < end && *p == '\n')
				p++;
			const unsigned char *sp = p < end ? memchr(p, ' ', (size_t)(end - p)) : NULL;
			if (sp == NULL)
				break;
			peek_word(out, p, sp);
			if ((uint64_t)(end - sp - 1) < vbytes)
				break;
			p = sp + 1 + vbytes;
		}
		return 0;
	}
	while (end > p && line_ws(end[-1]))
		end--;
	if (kind == EMBD_TEXTVEC_GLOVE) {
		const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
		const unsigned char *le = nl != NULL ? nl : end;
		while (le > p && line_ws(le[-1]))
			le--;
		const unsigned char *sp = memchr(p, ' ', (size_t)(le - p));
		out->dim = sp != NULL ? count_fields(sp, le) : 0;
		if (out->dim == 0)
			return embd_err_set(e, EMBD_EFORMAT, "line 1: no numbers after the word");
		out->rows = count_lines(p, end);
	}
	while (p < end && out->nwords < EMBD_TEXTVEC_PEEK_WORDS) {
		const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
		const unsigned char *le = nl != NULL ? nl : end;
		peek_word(out, p, le);
		p = le + 1;
	}
	return 0;
}
