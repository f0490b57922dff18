/* The one UTF-8 validator (see utf8.h): tokens, words of text vector files, JSON escaping and log repair use it. */
#include "utf8.h"

#include <stdint.h>
#include <string.h>

size_t embd_utf8_seq(const unsigned char *s, size_t avail, size_t *bad)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t n;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else {
		*bad = 1; /* a continuation byte without a lead, C0, C1 or F5-FF */
		return 0;
	}
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	for (size_t i = 1; i < n; i++) {
		if (i >= avail || s[i] < lo || s[i] > hi) {
			*bad = i;
			return 0;
		}
		lo = 0x80;
		hi = 0xbf;
	}
	return n;
}

size_t embd_utf8_valid_len(const void *s, size_t n)
{
	const unsigned char *p = s;
	size_t i = 0, bad;
	while (i < n) {
		if (p[i] >= 0x01 && p[i] < 0x80) {
			i++;
			continue;
		}
		size_t k = p[i] == 0 ? 0 : embd_utf8_seq(p + i, n - i, &bad); /* NUL, or a sequence cut short: stop */
		if (k == 0)
			return i;
		i += k;
	}
	return i;
}

size_t embd_utf8_sanitize(char *dst, size_t cap, const char *s)
{
	size_t k = 0;
	const unsigned char *p = (const unsigned char *)s;
	if (cap == 0)
		return 0;
	while (*p) {
		const char *out = (const char *)p;
		size_t n = 1, adv = 1;
		if (*p >= 0x80) {
			size_t bad;
			n = adv = embd_utf8_seq(p, SIZE_MAX, &bad);
			if (adv == 0) { /* a maximal ill-formed subpart: one U+FFFD */
				out = "\xef\xbf\xbd";
				n = 3;
				adv = bad;
			}
		}
		if (n >= cap - k)
			break;
		memcpy(dst + k, out, n);
		k += n;
		p += adv;
	}
	dst[k] = '\0';
	return k;
}
