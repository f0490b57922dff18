/* libFuzzer target: arbitrary bytes as a vocabulary file, checked against an independent reading of its lines. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vocab.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next line at *p (before end): its token bytes in *len, with "\n" or "\r\n" left out. */
static const char *next_line(const char **p, const char *end, size_t *len)
{
	const char *tok = *p;
	const char *nl = memchr(tok, '\n', (size_t)(end - tok));
	*len = (size_t)((nl != NULL ? nl : end) - tok);
	if (*len > 0 && tok[*len - 1] == '\r')
		(*len)--;
	*p = nl != NULL ? nl + 1 : end;
	return tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	const char *end = text + size;
	embd_vocab *v = NULL;
	embd_err e;
	int rc = embd_vocab_parse(text, size, 0, &v, &e);
	if (rc != 0) {
		if (rc != EMBD_EVOCAB || (strncmp(e.msg, "line ", 5) != 0))
			abort();
	} else {
		uint64_t lines = 0;
		for (const char *p = text; p < end; lines++) {
			size_t len;
			const char *tok = next_line(&p, end, &len);
			size_t got_len;
			const char *got = embd_vocab_token(v, lines, &got_len);
			if (got == NULL || got_len != len || memcmp(got, tok, len) != 0 || got[len] != '\0')
				abort();
			if (embd_vocab_find(v, tok, len) != (int64_t)lines)
				abort();
			/* One byte less is another token or none, never this one. */
			if (embd_vocab_find(v, tok, len - 1) == (int64_t)lines)
				abort();
		}
		if (embd_vocab_size(v) != lines || embd_vocab_token(v, lines, NULL) != NULL)
			abort();
		/* The count is checked both ways. */
		embd_vocab *w;
		if (embd_vocab_parse(text, size, lines + 1, &w, &e) != EMBD_EVOCAB)
			abort();
		if (lines > 0) {
			if (embd_vocab_parse(text, size, lines, &w, &e) != 0)
				abort();
			embd_vocab_free(w);
		}
	}

	/* The builder, with most hash bits masked off so that tokens collide, must agree with the parser. */
	if (size <= 4096) {
		embd_vocab *b;
		if (embd_vocab_new(0, 0, &b) != 0)
			abort();
		embd_vocab_test_hash_mask(b, size > 0 ? data[0] & 7u : 0);
		int brc = 0;
		for (const char *p = text; p < end && brc == 0;) {
			size_t len;
			const char *tok = next_line(&p, end, &len);
			brc = embd_vocab_add(b, tok, len, NULL);
		}
		if ((brc == 0) != (rc == 0))
			abort();
		if (brc == 0) {
			embd_vocab_finish(b);
			for (uint64_t id = 0; id < embd_vocab_size(b); id++) {
				size_t len;
				const char *tok = embd_vocab_token(b, id, &len);
				if (embd_vocab_find(b, tok, len) != (int64_t)id ||
				    embd_vocab_find(v, tok, len) != (int64_t)id)
					abort();
			}
		}
		embd_vocab_free(b);
	}
	embd_vocab_free(v);
	return 0;
}
