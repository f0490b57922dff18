/* libFuzzer target: token lists from query strings and JSON bodies, both passes, then their look-up. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"
#include "ids.h"
#include "tokens.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static embd_vocab *vocab;

/* Every parsed token keeps the contract: non-empty, NUL-terminated at len, valid UTF-8; then resolve it. */
static void check_and_resolve(embd_token *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (t[i].len == 0 || t[i].p[t[i].len] != '\0' || embd_utf8_valid_len(t[i].p, t[i].len) != t[i].len)
			abort();
	int64_t *ids = malloc((n ? n : 1) * sizeof *ids);
	embd_oov policies[] = {EMBD_OOV_ERROR, EMBD_OOV_ZERO, EMBD_OOV_SKIP};
	for (size_t k = 0; k < 3; k++) {
		size_t m = n, unknown;
		embd_err e;
		int rc = embd_tokens_resolve(vocab, t, &m, policies[k], ids, &unknown, &e);
		if (unknown > n || m > n || (rc != 0 && rc != EMBD_ETOKEN) || (rc != 0 && strlen(e.msg) >= sizeof e.msg))
			abort();
	}
	free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (vocab == NULL) {
		static const char words[] = "the\nking\nqueen\nk\xc3\xb6ln\na,b\n";
		embd_err e;
		if (embd_vocab_parse(words, sizeof words - 1, 0, &vocab, &e) != 0)
			abort();
	}
	const char *s = (const char *)data;
	embd_err e;
	size_t n = 0, bytes = 0;
	if (embd_tokens_parse_list(s, size, NULL, NULL, &n, &bytes, &e) == 0 && n <= 100000) {
		embd_token *t = malloc(n * sizeof *t);
		char *arena = malloc(bytes);
		size_t m = n, b2 = bytes;
		if (embd_tokens_parse_list(s, size, t, arena, &m, &b2, &e) != 0 || m != n)
			abort(); /* the second pass must agree with the first */
		check_and_resolve(t, n);
		free(t);
		free(arena);
	}
	embd_batch b = {0};
	if (embd_batch_parse_json(s, size, &b, &e) == 0 && b.n <= 100000) {
		size_t want = b.n;
		if (b.tokens) {
			b.toks = malloc(b.n * sizeof *b.toks);
			b.arena = malloc(b.bytes);
			if (embd_batch_parse_json(s, size, &b, &e) != 0 || b.n != want)
				abort();
			check_and_resolve(b.toks, b.n);
			free(b.toks);
			free(b.arena);
		} else {
			b.ids = malloc(b.n * sizeof *b.ids);
			if (embd_batch_parse_json(s, size, &b, &e) != 0 || b.n != want)
				abort();
			free(b.ids);
		}
	}
	return 0;
}
