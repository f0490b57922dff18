/* word2vec binary files: a `rows dim` line, then per row a word, a space and dim little-endian float32. */
#include "textvec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int embd_tv_parse_bin(const unsigned char *buf, size_t len, const embd_textvec_opts *o, embd_textvec *tv, embd_err *e)
{
	const unsigned char *end = buf + len;
	const unsigned char *nl = memchr(buf, '\n', len);
	uint64_t rows, dim;
	if (nl == NULL || embd_tv_parse_header(buf, nl, &rows, &dim) != 0)
		return embd_err_set(e, EMBD_EFORMAT, "not a `rows dim` header line");
	if (rows == 0 || dim == 0)
		return embd_tv_check_rows_dim(rows, dim, e);
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
		const char *why = embd_tv_word_problem(p, (size_t)(sp - p), &at);
		if (why != NULL) {
			if (!skip)
				return embd_err_set(e, EMBD_EFORMAT, "record %llu (byte %zu): %s",
				                    (unsigned long long)r, (size_t)(p - buf), why);
			char msg[96];
			snprintf(msg, sizeof msg, "%s", why);
			embd_tv_note_skip(tv, &first_line, r, "record", msg);
			tv->skipped++;
		} else {
			good++;
			words += (uint64_t)(sp - p) + 1;
		}
		p = sp + 1 + vbytes;
	}
	const unsigned char *tail = p;
	while (tail < end && embd_tv_line_ws(*tail))
		tail++;
	if (tail < end)
		return embd_err_set(e, EMBD_EFORMAT, "byte %zu: data after the header's %llu records",
		                    (size_t)(tail - buf), (unsigned long long)rows);
	if (good == 0)
		return embd_err_set(e, EMBD_EFORMAT, "no vectors: all %llu records were bad (first: %s)",
		                    (unsigned long long)rows, tv->first_skip);
	if ((rc = embd_tv_check_rows_dim(good, dim, e)) != 0)
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
		if (embd_tv_word_problem(p, n, &at) == NULL) {
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
		embd_tv_progress(done, &reported, p, 0);
	}
	tv->rows = w;
	tv->words_bytes = woff;
	rc = embd_tv_dedup(tv, line_of, skip, "record", &first_line, e);
	free(line_of);
	if (rc == 0)
		embd_tv_progress(done, &reported, end, 1);
	return rc;
}
