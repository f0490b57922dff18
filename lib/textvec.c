/* Text vector files (GloVe, word2vec/fastText text, word2vec binary): the API, sniffing, peeking, and what the
 * formats share (headers, words, duplicates); the parsers are textvec_text.c and textvec_bin.c, numbers textvec_num.c.
 */
#include "textvec.h"

#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "utf8.h"

/*
 * What gensim does, and therefore what this module does (gensim 4.2,
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

#define SNIFF_MAX     (1u << 20)
#define PROGRESS_STEP (1u << 20) /* bytes between two adds to opts.bytes_done */

/* Add the bytes from *reported to p to *done (when there is one) once they make a step, or when final. */
void embd_tv_progress(_Atomic uint64_t *done, const unsigned char **reported, const unsigned char *p, int final)
{
	if (done != NULL && (final || (size_t)(p - *reported) >= PROGRESS_STEP)) {
		atomic_fetch_add_explicit(done, (uint64_t)(p - *reported), memory_order_relaxed);
		*reported = p;
	}
}

/* Why a word is refused, or NULL. */
const char *embd_tv_word_problem(const unsigned char *w, size_t n, size_t *at)
{
	*at = 0;
	if (n == 0)
		return "empty word";
	*at = embd_utf8_valid_len(w, n);
	if (*at == n)
		return NULL;
	return w[*at] == 0 ? "NUL byte in the word" : "invalid UTF-8 in the word";
}

/* Unsigned decimal with overflow check; returns the end, or NULL. */
static const unsigned char *parse_u64(const unsigned char *p, const unsigned char *e, uint64_t *out)
{
	uint64_t v = 0;
	const unsigned char *s = p;
	while (p < e && *p >= '0' && *p <= '9') {
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
int embd_tv_parse_header(const unsigned char *p, const unsigned char *le, uint64_t *rows, uint64_t *dim)
{
	while (le > p && embd_tv_line_ws(le[-1]))
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

void embd_tv_note_skip(embd_textvec *tv, uint64_t *first_line, uint64_t line, const char *unit, const char *msg)
{
	if (*first_line != 0 && *first_line <= line)
		return;
	*first_line = line;
	snprintf(tv->first_skip, sizeof tv->first_skip, "%s %llu: %s", unit, (unsigned long long)line, msg);
}

int embd_tv_check_rows_dim(uint64_t rows, uint64_t dim, embd_err *e)
{
	if (rows == 0 || dim == 0)
		return embd_err_set(e, EMBD_EFORMAT, "no vectors (%llu rows of %llu numbers)", (unsigned long long)rows,
		                    (unsigned long long)dim);
	if (dim > SIZE_MAX / sizeof(float) / rows)
		return embd_err_set(e, EMBD_EOVERFLOW, "%llu rows x %llu float32 overflows", (unsigned long long)rows,
		                    (unsigned long long)dim);
	return 0;
}

/*
 * The duplicate check shared by both kinds, through lib/vocab: each word is
 * added to the vocabulary the rows will be served with, so that the one hash
 * table of words is built once. A word seen before is an error naming both
 * lines, or (skip) left out with its row, the kept rows moving up in order.
 * A word the vocabulary refuses for another reason (one ending in a carriage
 * return, which no vocabulary file can hold) stays a row, as before, and
 * the vocabulary is dropped: its callers refuse such a word in their words.
 */
int embd_tv_dedup(embd_textvec *tv, uint64_t *line_of, int skip, const char *unit, uint64_t *first_line, embd_err *e)
{
	embd_vocab *v;
	int rc = embd_vocab_new(tv->rows, (size_t)tv->words_bytes, &v);
	if (rc != 0)
		return embd_err_set(e, rc, "out of memory");
	/* The kept row of each vocabulary id: the id itself until a word stays out of the vocabulary. */
	uint64_t *row_of = NULL;
	uint64_t w = 0, woff = 0;
	for (uint64_t r = 0; r < tv->rows; r++) {
		uint64_t b = tv->word_off[r], n = tv->word_off[r + 1] - b; /* n: with the NUL */
		const char *word = tv->words + b;
		embd_err why;
		rc = embd_vocab_add(v, word, (size_t)n - 1, &why);
		int64_t first = rc == EMBD_EVOCAB ? embd_vocab_find(v, word, (size_t)n - 1) : -1;
		if (first >= 0) {
			char msg[200];
			uint64_t first_row = row_of != NULL ? row_of[first] : (uint64_t)first;
			snprintf(msg, sizeof msg, "duplicate word '%.60s' (first on %s %llu)", word, unit,
			         (unsigned long long)line_of[first_row]);
			if (!skip) {
				rc = embd_err_set(e, EMBD_EFORMAT, "%s %llu: %s", unit, (unsigned long long)line_of[r],
				                  msg);
				goto out;
			}
			embd_tv_note_skip(tv, first_line, line_of[r], unit, msg);
			tv->skipped++;
			continue;
		}
		if (rc == EMBD_EVOCAB && row_of == NULL) {
			row_of = malloc((size_t)tv->rows * sizeof *row_of);
			if (row_of == NULL) {
				rc = embd_err_set(e, -ENOMEM, "out of memory");
				goto out;
			}
			for (uint64_t i = 0; i < embd_vocab_size(v); i++)
				row_of[i] = i;
		} else if (rc == 0 && row_of != NULL) {
			row_of[embd_vocab_size(v) - 1] = w;
		} else if (rc != 0 && rc != EMBD_EVOCAB) {
			rc = embd_err_set(e, rc, "%s", rc == -ENOMEM ? "out of memory" : why.msg);
			goto out;
		}
		if (w != r) {
			memmove(tv->data + w * tv->dim, tv->data + r * tv->dim, (size_t)tv->dim * sizeof(float));
			line_of[w] = line_of[r];
			memmove(tv->words + woff, word, (size_t)n);
		}
		tv->word_off[w] = woff;
		woff += n;
		w++;
	}
	tv->word_off[w] = woff;
	tv->rows = w;
	tv->words_bytes = woff;
	rc = 0;
	if (row_of == NULL) {
		embd_vocab_finish(v);
		tv->vocab = v;
		v = NULL;
	}
out:
	free(row_of);
	embd_vocab_free(v);
	return rc;
}

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
	while (le > p && embd_tv_line_ws(le[-1]))
		le--;
	const unsigned char *sp = memchr(p, ' ', (size_t)(le - p));
	size_t at;
	if (sp == NULL || embd_tv_word_problem(p, (size_t)(sp - p), &at) != NULL)
		return 0;
	uint64_t n = 0;
	for (const unsigned char *q = sp; q < le; n++) {
		float f;
		q = embd_tv_parse_field(q + 1, le, &f, loc);
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
	if (embd_tv_parse_header(buf, le, &rows, &dim) == 0) {
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
		rc = embd_tv_parse_text(buf, len, 0, o, out, e);
		break;
	case EMBD_TEXTVEC_W2V_TEXT:
		rc = embd_tv_parse_text(buf, len, 1, o, out, e);
		break;
	case EMBD_TEXTVEC_W2V_BIN:
		rc = embd_tv_parse_bin(buf, len, o, out, e);
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
	embd_vocab_free(tv->vocab);
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
		if (nl == NULL || embd_tv_parse_header(buf, nl, &out->rows, &out->dim) != 0)
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
	while (end > p && embd_tv_line_ws(end[-1]))
		end--;
	if (kind == EMBD_TEXTVEC_GLOVE) {
		const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
		const unsigned char *le = nl != NULL ? nl : end;
		while (le > p && embd_tv_line_ws(le[-1]))
			le--;
		const unsigned char *sp = memchr(p, ' ', (size_t)(le - p));
		out->dim = sp != NULL ? embd_tv_count_fields(sp, le) : 0;
		if (out->dim == 0)
			return embd_err_set(e, EMBD_EFORMAT, "line 1: no numbers after the word");
		out->rows = embd_tv_count_lines(p, end);
	}
	while (p < end && out->nwords < EMBD_TEXTVEC_PEEK_WORDS) {
		const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
		const unsigned char *le = nl != NULL ? nl : end;
		peek_word(out, p, le);
		p = le + 1;
	}
	return 0;
}
