/* libFuzzer target: arbitrary bytes as GloVe, word2vec text and word2vec binary; the contract of what comes out. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "textvec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const embd_textvec *tv)
{
	if (tv->rows == 0 || tv->dim == 0 || tv->data == NULL || tv->word_off == NULL || tv->word_off[0] != 0)
		abort();
	/* Every float is there (ASan checks the read) and every word lies inside the arena, NUL-terminated. */
	volatile float sink = 0;
	for (uint64_t i = 0; i < tv->rows * tv->dim; i++)
		sink += tv->data[i];
	for (uint64_t r = 0; r < tv->rows; r++) {
		uint64_t b = tv->word_off[r], e = tv->word_off[r + 1];
		if (e <= b + 1 || e > tv->words_bytes || tv->words[e - 1] != '\0' || strlen(tv->words + b) != e - b - 1)
			abort();
	}
	if (tv->word_off[tv->rows] != tv->words_bytes)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The first byte picks skip_bad; the rest is the file. The sniff must agree with itself on any bytes. */
	if (size == 0)
		return 0;
	embd_textvec_opts o = {.skip_bad = data[0] & 1, .threads = 1 + ((data[0] >> 1) & 1)};
	data++;
	size--;
	(void)embd_textvec_sniff(data, size);
	static const embd_textvec_kind kinds[] = {EMBD_TEXTVEC_GLOVE, EMBD_TEXTVEC_W2V_TEXT, EMBD_TEXTVEC_W2V_BIN};
	for (size_t k = 0; k < 3; k++) {
		embd_textvec tv;
		embd_err e;
		if (embd_textvec_parse(data, size, kinds[k], &o, &tv, &e) == 0) {
			check(&tv);
			embd_textvec_free(&tv);
		} else if (tv.data != NULL || tv.words != NULL || tv.word_off != NULL || e.msg[0] == '\0') {
			abort();
		}
		/* The look embd info takes: words inside their slots, NUL-terminated. */
		embd_textvec_look lk;
		if (embd_textvec_peek(data, size, kinds[k], &lk, &e) == 0) {
			if (lk.nwords > EMBD_TEXTVEC_PEEK_WORDS)
				abort();
			for (size_t w = 0; w < lk.nwords; w++)
				if (strlen(lk.words[w]) > 63)
					abort();
		}
	}
	return 0;
}
