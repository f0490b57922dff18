/* libFuzzer target: id lists from query strings and JSON bodies, both passes, as the server runs them; body sniffing. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "ids.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	embd_err e;
	size_t n;
	if (embd_ids_parse_list(s, size, NULL, &n, &e) == 0 && n <= 100000) {
		int64_t *out = malloc(n * sizeof *out);
		embd_ids_parse_list(s, size, out, &n, &e);
		free(out);
	}
	if (embd_ids_parse_json(s, size, NULL, &n, &e) == 0 && n <= 100000) {
		int64_t *out = malloc((n ? n : 1) * sizeof *out);
		size_t m = n;
		if (embd_ids_parse_json(s, size, out, &m, &e) != 0 || m != n)
			abort(); /* the second pass must agree with the first */
		free(out);
	}
	embd_ids raw;
	(void)embd_ids_from_raw(data, size, 4, &raw, &e);
	/* A body without a Content-Type: what the server reads it as must be what the sniffer says. */
	embd_body_kind kind, sniffed = embd_body_sniff(data, size);
	unsigned width;
	int rc = embd_ids_body_kind(NULL, NULL, data, size, &kind, &width, &e);
	if ((rc == 0) != (sniffed != EMBD_BODY_UNKNOWN) || (rc == 0 && kind != sniffed) || sniffed == EMBD_BODY_RAW)
		abort();
	return 0;
}
