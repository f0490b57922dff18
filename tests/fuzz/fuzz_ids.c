/* libFuzzer target: id lists from query strings and JSON bodies, both passes, as the server runs them. */
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
	return 0;
}
