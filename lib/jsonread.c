/* The one reader of untrusted JSON request bodies (see jsonread.h). */
#include "jsonread.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Is c one of the characters of set? Unlike a bare strchr, NUL is in no set: strchr finds the terminator. */
static int in_set(const char *set, char c)
{
	return c != '\0' && strchr(set, c) != NULL;
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

void embd_jr_ws(embd_jr *j)
{
	while (j->i < j->len && is_space(j->s[j->i]))
		j->i++;
}

char embd_jr_peek(const embd_jr *j)
{
	return j->i < j->len ? j->s[j->i] : '\0';
}

int embd_jr_eat(embd_jr *j, char c)
{
	embd_jr_ws(j);
	if (j->i < j->len && j->s[j->i] == c) {
		j->i++;
		return 1;
	}
	return 0;
}

int embd_jr_syntax(embd_jr *j, const char *expected)
{
	if (j->i >= j->len)
		return embd_err_set(j->e, EMBD_EJSON, "malformed JSON: the body ends where %s was expected", expected);
	return embd_err_set(j->e, EMBD_EJSON, "malformed JSON at byte %zu: expected %s", j->i, expected);
}

/* The end of the number text at s[i] ('-' or a digit): digits, '.', exponent; not checked, only spanned. */
static size_t number_end(const embd_jr *j, size_t i, int *fraction)
{
	*fraction = 0;
	if (i < j->len && j->s[i] == '-')
		i++;
	while (i < j->len && is_digit(j->s[i]))
		i++;
	while (i < j->len && in_set(".eE+-0123456789", j->s[i])) {
		*fraction = 1;
		i++;
	}
	return i;
}

const char *embd_jr_type(const embd_jr *j)
{
	switch (embd_jr_peek(j)) {
	case '"':
		return "a string";
	case '{':
		return "an object";
	case '[':
		return "an array";
	case 't':
	case 'f':
		return "a boolean";
	case 'n':
		return "null";
	default:
		break;
	}
	char c = embd_jr_peek(j);
	if (!is_digit(c) && !(c == '-' && j->i + 1 < j->len && is_digit(j->s[j->i + 1])))
		return NULL;
	int fraction;
	number_end(j, j->i, &fraction);
	return fraction ? "a number with a fraction" : "an integer";
}

/* Four hex digits at the cursor into *cp. */
static int hex4(embd_jr *j, unsigned *cp)
{
	*cp = 0;
	for (int d = 0; d < 4; d++, j->i++) {
		char h = j->i < j->len ? j->s[j->i] : '\0';
		int v = h >= '0' && h <= '9'   ? h - '0'
		        : h >= 'a' && h <= 'f' ? h - 'a' + 10
		        : h >= 'A' && h <= 'F' ? h - 'A' + 10
		                               : -1;
		if (v < 0)
			return embd_jr_syntax(j, "four hex digits after \\u");
		*cp = *cp * 16 + (unsigned)v;
	}
	return 0;
}

static const char simple_escapes[] = "\"\\/bfnrt", simple_decoded[] = "\"\\/\b\f\n\r\t";

int embd_jr_key(embd_jr *j, char *key, size_t cap, size_t *klen)
{
	size_t k = 0, n = 0;
	j->i++; /* the opening quote */
	while (j->i < j->len) {
		unsigned char c = (unsigned char)j->s[j->i++];
		if (c == '"') {
			key[k] = '\0';
			*klen = n;
			return 0;
		}
		if (c < 0x20)
			return embd_err_set(j->e, EMBD_EJSON,
			                    "malformed JSON at byte %zu: control character in a string", j->i - 1);
		if (c == '\\') {
			if (j->i >= j->len)
				break;
			char esc = j->s[j->i++];
			const char *at = in_set(simple_escapes, esc) ? strchr(simple_escapes, esc) : NULL;
			if (esc == 'u') {
				unsigned cp;
				int rc = hex4(j, &cp);
				if (rc != 0)
					return rc;
				/* '?' for NUL too: a NUL would cut the key short in messages. */
				c = cp != 0 && cp < 0x80 ? (unsigned char)cp : '?';
			} else if (at != NULL) {
				c = (unsigned char)simple_decoded[at - simple_escapes];
			} else {
				j->i--;
				return embd_jr_syntax(j, "a valid escape");
			}
		}
		if (k + 1 < cap)
			key[k++] = (char)c;
		n++;
	}
	return embd_jr_syntax(j, "a closing '\"'");
}

/* Append code point cp as UTF-8 at dst (may be NULL: only counted); the bytes it takes. */
static size_t put_utf8(char *dst, unsigned cp)
{
	char b[4];
	size_t n;
	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | cp >> 6);
		b[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | cp >> 12);
		b[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | cp >> 18);
		b[1] = (char)(0x80 | (cp >> 12 & 0x3f));
		b[2] = (char)(0x80 | (cp >> 6 & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	if (dst != NULL)
		memcpy(dst, b, n);
	return n;
}

int embd_jr_token(embd_jr *j, char *dst, size_t *len, const char **why)
{
	size_t k = 0;
	j->i++; /* the opening quote */
	for (;;) {
		size_t run = j->i;
		while (j->i < j->len && j->s[j->i] != '"' && j->s[j->i] != '\\' && (unsigned char)j->s[j->i] >= 0x20)
			j->i++;
		size_t n = j->i - run;
		if (embd_utf8_valid_len(j->s + run, n) != n) {
			*why = "is not valid UTF-8";
			return EMBD_EBADTOKEN;
		}
		if (dst != NULL)
			memcpy(dst + k, j->s + run, n);
		k += n;
		if (j->i >= j->len)
			return embd_jr_syntax(j, "a closing '\"'");
		char c = j->s[j->i++];
		if (c == '"')
			break;
		if (c != '\\')
			return embd_err_set(j->e, EMBD_EJSON,
			                    "malformed JSON at byte %zu: control character in a string", j->i - 1);
		if (j->i >= j->len)
			return embd_jr_syntax(j, "an escape");
		char esc = j->s[j->i++];
		unsigned cp;
		if (esc == 'u') {
			int rc = hex4(j, &cp);
			if (rc != 0)
				return rc;
			if (cp >= 0xdc00 && cp <= 0xdfff) {
				*why = "holds a lone low surrogate";
				return EMBD_EBADTOKEN;
			}
			if (cp >= 0xd800 && cp <= 0xdbff) {
				unsigned lo;
				*why = "holds a lone high surrogate";
				if (j->i + 1 >= j->len || j->s[j->i] != '\\' || j->s[j->i + 1] != 'u')
					return EMBD_EBADTOKEN;
				j->i += 2;
				if ((rc = hex4(j, &lo)) != 0)
					return rc;
				if (lo < 0xdc00 || lo > 0xdfff)
					return EMBD_EBADTOKEN;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			if (cp == 0) {
				*why = "holds a NUL (\\u0000)";
				return EMBD_EBADTOKEN;
			}
		} else if (in_set(simple_escapes, esc)) {
			cp = (unsigned char)simple_decoded[strchr(simple_escapes, esc) - simple_escapes];
		} else {
			j->i--;
			return embd_jr_syntax(j, "a valid escape");
		}
		k += put_utf8(dst != NULL ? dst + k : NULL, cp);
	}
	if (k == 0) {
		*why = "is empty";
		return EMBD_EBADTOKEN;
	}
	if (dst != NULL)
		dst[k] = '\0';
	*len = k;
	return 0;
}

/* Digits at the cursor into *v; 0, or 1 on overflow past INT64_MAX (the digits are consumed all the same). */
static int digits(embd_jr *j, int64_t *v)
{
	uint64_t x = 0;
	int over = 0;
	while (j->i < j->len && is_digit(j->s[j->i])) {
		unsigned d = (unsigned)(j->s[j->i] - '0');
		if (x > ((uint64_t)INT64_MAX - d) / 10)
			over = 1;
		else
			x = x * 10 + d;
		j->i++;
	}
	*v = over ? 0 : (int64_t)x;
	return over;
}

/* '-'? digits, with JSON's rules on them (at least one, no leading zero); *neg and the value. */
static int integer_part(embd_jr *j, int *neg, int64_t *v, int *over)
{
	*neg = embd_jr_peek(j) == '-';
	if (*neg)
		j->i++;
	size_t d0 = j->i;
	*over = digits(j, v);
	if (j->i == d0)
		return embd_jr_syntax(j, "a digit");
	if (j->s[d0] == '0' && j->i - d0 > 1)
		return embd_err_set(j->e, EMBD_EJSON, "malformed JSON at byte %zu: a number has a leading zero", d0);
	return 0;
}

int embd_jr_id(embd_jr *j, const char *key, size_t index, int64_t *out)
{
	size_t start = j->i;
	int neg, over;
	int64_t v;
	int rc = integer_part(j, &neg, &v, &over);
	if (rc != 0)
		return rc;
	if (j->i < j->len && in_set(".eE", j->s[j->i])) {
		/* Valid JSON, but not an integer: consume it to quote it. */
		while (j->i < j->len && in_set("0123456789.eE+-", j->s[j->i]))
			j->i++;
		return embd_err_set(j->e, EMBD_EJSONTYPE, "%s[%zu] is %.*s, not an integer", key, index,
		                    (int)(j->i - start > 40 ? 40 : j->i - start), j->s + start);
	}
	if (neg)
		return embd_err_set(j->e, EMBD_EBADID, "%s[%zu] is %.*s: ids count from 0", key, index,
		                    (int)(j->i - start > 40 ? 40 : j->i - start), j->s + start);
	if (over)
		return embd_err_set(j->e, EMBD_EBADID, "%s[%zu] does not fit in a 64-bit id", key, index);
	*out = v;
	return 0;
}

int embd_jr_int(embd_jr *j, const char *what, int64_t *out, int *fits)
{
	int neg, over;
	int64_t v;
	int rc = integer_part(j, &neg, &v, &over);
	if (rc != 0)
		return rc;
	if (j->i < j->len && in_set(".eE", j->s[j->i]))
		return embd_err_set(j->e, EMBD_EJSONTYPE, "%s is a number with a fraction", what);
	*fits = !over;
	*out = neg ? -v : v;
	return 0;
}

/* Does the text at the cursor start with word? Consumes it if so. */
static int word(embd_jr *j, const char *w)
{
	size_t n = strlen(w);
	if (j->len - j->i < n || memcmp(j->s + j->i, w, n) != 0)
		return 0;
	j->i += n;
	return 1;
}

int embd_jr_number(embd_jr *j, double *out)
{
	if (word(j, "NaN")) {
		*out = NAN;
		return 0;
	}
	int neg = embd_jr_peek(j) == '-';
	if (word(j, neg ? "-Infinity" : "Infinity")) {
		*out = neg ? -INFINITY : INFINITY;
		return 0;
	}
	size_t start = j->i;
	int64_t v;
	int over;
	int rc = integer_part(j, &neg, &v, &over);
	if (rc != 0)
		return rc;
	if (embd_jr_peek(j) == '.') {
		j->i++;
		size_t d0 = j->i;
		while (j->i < j->len && is_digit(j->s[j->i]))
			j->i++;
		if (j->i == d0)
			return embd_jr_syntax(j, "a digit after '.'");
	}
	if (embd_jr_peek(j) == 'e' || embd_jr_peek(j) == 'E') {
		j->i++;
		if (embd_jr_peek(j) == '+' || embd_jr_peek(j) == '-')
			j->i++;
		size_t d0 = j->i;
		while (j->i < j->len && is_digit(j->s[j->i]))
			j->i++;
		if (j->i == d0)
			return embd_jr_syntax(j, "a digit in the exponent");
	}
	/*
	 * strtod on a NUL-terminated copy: the body is not terminated. The C
	 * locale's '.' is the decimal point: nothing in embd calls setlocale.
	 */
	char buf[512];
	size_t n = j->i - start;
	if (n >= sizeof buf)
		return embd_err_set(j->e, EMBD_EJSON,
		                    "malformed JSON at byte %zu: a number of more than %zu characters", start,
		                    sizeof buf - 1);
	memcpy(buf, j->s + start, n);
	buf[n] = '\0';
	*out = strtod(buf, NULL); /* past a double: HUGE_VAL, an infinity, for the caller to refuse */
	return 0;
}

int embd_jr_bool(embd_jr *j, int *out)
{
	if (word(j, "true"))
		*out = 1;
	else if (word(j, "false"))
		*out = 0;
	else
		return embd_jr_syntax(j, "true or false");
	return 0;
}
