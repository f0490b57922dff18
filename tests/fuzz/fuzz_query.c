/* libFuzzer target: the request-text parsers (percent-decoding, decimal integers, Accept headers). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* libmicrohttpd hands these parsers NUL-terminated strings; so does the fuzzer. */
	char *s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	size_t len = strlen(s);

	static const char *const types[] = {"application/json", "application/octet-stream", "application/x-npy"};
	int best = embd_query_accept(s, types, 3);
	if (best < -1 || best > 2)
		abort();

	uint64_t v;
	int rc = embd_query_u64(s, &v);
	if (rc != 0 && rc != -EINVAL && rc != -ERANGE)
		abort();
	if (rc == 0 && (len == 0 || strspn(s, "0123456789") != len))
		abort(); /* accepted something that is not all digits */

	size_t n = embd_query_unescape(s);
	if (n > len || n != strlen(s))
		abort(); /* decoding never grows, and the length returned is the string's */
	free(s);
	return 0;
}
