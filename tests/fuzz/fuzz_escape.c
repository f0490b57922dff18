/* libFuzzer target: embd_json_escape writes valid UTF-8 JSON string text for any bytes and any capacity. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The checker is written apart from the escaper on purpose: it decodes each
 * sequence to its code point and judges the value (shortest form, not a
 * surrogate, at most U+10FFFF) where the escaper checks byte ranges.
 * Returns the sequence's length and its code point in *cp, or 0 if ill-formed.
 */
static size_t decode_utf8(const unsigned char *s, size_t len, uint32_t *cp)
{
	static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
	size_t n;
	uint32_t v;
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	} else if ((s[0] & 0xe0) == 0xc0) {
		n = 2;
		v = s[0] & 0x1fu;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3;
		v = s[0] & 0x0fu;
	} else if ((s[0] & 0xf8) == 0xf0) {
		n = 4;
		v = s[0] & 0x07u;
	} else {
		return 0;
	}
	if (n > len)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (s[i] & 0x3fu);
	}
	if (v < min_cp[n] || (v >= 0xd800 && v <= 0xdfff) || v > 0x10ffff)
		return 0;
	*cp = v;
	return n;
}

static int valid_utf8(const unsigned char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t n = decode_utf8(s + i, len - i, &cp);
		if (n == 0)
			return 0;
		i += n;
	}
	return 1;
}

static size_t encode_utf8(uint32_t cp, unsigned char *o)
{
	if (cp < 0x80) {
		o[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (unsigned char)(0xc0 | cp >> 6);
		o[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	o[0] = (unsigned char)(0xe0 | cp >> 12); /* the escapes decoded here are all in the BMP */
	o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
	o[2] = (unsigned char)(0x80 | (cp & 0x3f));
	return 3;
}

static int hexval(unsigned char h)
{
	return h >= '0' && h <= '9'   ? h - '0'
	       : h >= 'a' && h <= 'f' ? h - 'a' + 10
	       : h >= 'A' && h <= 'F' ? h - 'A' + 10
	                              : -1;
}

/*
 * Check out (len bytes) as the inside of a JSON string and decode its escapes
 * into dec (room for len bytes: no escape decodes longer than itself);
 * returns the decoded length. Aborts on anything a strict JSON parser refuses.
 */
static size_t check_json_text(const unsigned char *out, size_t len, unsigned char *dec)
{
	size_t d = 0;
	if (!valid_utf8(out, len))
		abort();
	for (size_t i = 0; i < len;) {
		unsigned char c = out[i];
		if (c < 0x20 || c == '"')
			abort(); /* a raw control character or an unescaped quote */
		if (c >= 0x80) {
			uint32_t cp;
			size_t n = decode_utf8(out + i, len - i, &cp);
			if (cp == 0x2028 || cp == 0x2029)
				abort(); /* raw line separators end a JavaScript string */
			memcpy(dec + d, out + i, n);
			d += n;
			i += n;
			continue;
		}
		if (c != '\\') {
			dec[d++] = c;
			i++;
			continue;
		}
		if (i + 1 >= len)
			abort(); /* a backslash cut off at the end */
		unsigned char e = out[i + 1];
		static const char simple[] = "\"\\/bfnrt", decoded[] = "\"\\/\b\f\n\r\t";
		const char *at = e != '\0' ? strchr(simple, e) : NULL;
		if (at != NULL) {
			dec[d++] = (unsigned char)decoded[at - simple];
			i += 2;
			continue;
		}
		if (e != 'u' || i + 6 > len)
			abort();
		uint32_t cp = 0;
		for (size_t k = 2; k < 6; k++) {
			int v = hexval(out[i + k]);
			if (v < 0)
				abort();
			cp = cp * 16 + (uint32_t)v;
		}
		if (cp >= 0xd800 && cp <= 0xdfff)
			abort(); /* the escaper never needs a surrogate pair, and a lone one is not text */
		d += encode_utf8(cp, dec + d);
		i += 6;
	}
	return d;
}

/* Escape s into exactly cap bytes of heap (so ASan sees any write past them) and check the result. */
static unsigned char *escape_checked(const char *s, size_t cap, size_t *len)
{
	unsigned char *out = malloc(cap);
	if (out == NULL)
		abort();
	*len = embd_json_escape((char *)out, cap, s);
	if (*len >= cap || out[*len] != '\0' || strlen((char *)out) != *len)
		abort();
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	size_t in_len = strlen(s); /* the escaper sees the text up to the first NUL */

	/* Every input byte becomes at most one 6-byte escape: with this much room nothing is cut. */
	size_t big_cap = 6 * in_len + 1, big_len;
	unsigned char *big = escape_checked(s, big_cap, &big_len);
	unsigned char *dec = malloc(big_len + 1);
	if (dec == NULL)
		abort();
	size_t dec_len = check_json_text(big, big_len, dec);
	if (valid_utf8((const unsigned char *)s, in_len) && (dec_len != in_len || memcmp(dec, s, in_len) != 0))
		abort(); /* valid text must come back exactly */
	if (in_len > 0 && big_len == 0)
		abort();

	/* A smaller buffer holds a prefix of the whole output that ends between two units. */
	static const size_t caps[] = {1, 2, 7, 64};
	for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
		size_t len;
		unsigned char *out = escape_checked(s, caps[c], &len);
		if (len > big_len || memcmp(out, big, len) != 0)
			abort();
		unsigned char *dec2 = malloc(len + 1);
		if (dec2 == NULL)
			abort();
		check_json_text(out, len, dec2);
		free(dec2);
		free(out);
	}
	/*
	 * embd_utf8_sanitize, which error and info bodies use before jansson: its
	 * output is valid UTF-8, equals the input when that was valid, never
	 * passes its cap, and a smaller cap gives a prefix that ends between two
	 * characters.
	 */
	size_t san_cap = 3 * in_len + 1; /* each input byte becomes at most one 3-byte U+FFFD */
	char *san = malloc(san_cap);
	if (san == NULL)
		abort();
	size_t san_len = embd_utf8_sanitize(san, san_cap, s);
	if (san_len >= san_cap || san[san_len] != '\0' || strlen(san) != san_len ||
	    !valid_utf8((const unsigned char *)san, san_len))
		abort();
	if (valid_utf8((const unsigned char *)s, in_len) && (san_len != in_len || memcmp(san, s, in_len) != 0))
		abort();
	for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
		char *cut = malloc(caps[c]);
		if (cut == NULL)
			abort();
		size_t len = embd_utf8_sanitize(cut, caps[c], s);
		if (len >= caps[c] || len > san_len || memcmp(cut, san, len) != 0 ||
		    !valid_utf8((const unsigned char *)cut, len))
			abort();
		free(cut);
	}
	free(san);
	free(dec);
	free(big);
	free(s);
	return 0;
}
