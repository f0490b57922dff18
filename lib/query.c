/* Small parsers of untrusted request text: percent-decoding, decimal integers, Accept media ranges. */
#include "query.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

size_t embd_query_unescape(char *s)
{
	char *w = s;
	for (const char *p = s; *p != '\0'; p++) {
		int hi, lo;
		if (*p == '%' && (hi = hexval(p[1])) >= 0 && (lo = hexval(p[2])) >= 0) {
			if ((hi | lo) == 0) { /* a NUL: the two bytes no valid UTF-8 or digit string holds */
				*w++ = (char)0xc0;
				*w++ = (char)0x80;
			} else {
				*w++ = (char)(hi << 4 | lo);
			}
			p += 2;
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
	return (size_t)(w - s);
}

int embd_query_u64(const char *s, uint64_t *out)
{
	if (*s == '\0')
		return -EINVAL;
	uint64_t v = 0;
	int range = 0;
	for (const char *p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			range = 1; /* keep looking: a later non-digit makes it -EINVAL, which says more */
		else
			v = v * 10 + d;
	}
	if (range)
		return -ERANGE;
	*out = v;
	return 0;
}

/* An RFC 9110 qvalue ("0", "0.5", "1.000") in thousandths; -1 when it is not one. */
static int qvalue(const char *p, size_t len)
{
	if (len == 0 || (p[0] != '0' && p[0] != '1') || (len > 1 && p[1] != '.') || len > 5)
		return -1;
	int q = (p[0] - '0') * 1000, scale = 100;
	for (size_t i = 2; i < len; i++, scale /= 10) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		q += (p[i] - '0') * scale;
	}
	return q <= 1000 ? q : -1;
}

/* How specifically the media range (len bytes) names t ("type/subtype"): 3 exactly, 2 by its type, 1 as the wildcard, 0
 * not. */
static int range_matches(const char *range, size_t len, const char *t)
{
	if (len == 3 && memcmp(range, "*/*", 3) == 0)
		return 1;
	const char *slash = strchr(t, '/');
	size_t tl = slash != NULL ? (size_t)(slash - t) : strlen(t);
	if (len == tl + 2 && strncasecmp(range, t, tl) == 0 && memcmp(range + tl, "/*", 2) == 0)
		return 2;
	return len == strlen(t) && strncasecmp(range, t, len) == 0 ? 3 : 0;
}

enum { MAX_TYPES = 16 };

int embd_query_accept(const char *accept, const char *const *types, int n)
{
	/* Each type takes the q of the most specific range naming it (RFC 9110 12.5.1), and where that range was. */
	int spec[MAX_TYPES] = {0}, q_of[MAX_TYPES] = {0}, pos[MAX_TYPES] = {0};
	if (n > MAX_TYPES)
		n = MAX_TYPES;
	const char *p = accept;
	for (int at = 0; *p != '\0'; at++) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		const char *range = p;
		while (*p != '\0' && *p != ';' && *p != ',' && *p != ' ' && *p != '\t')
			p++;
		size_t len = (size_t)(p - range);
		int q = 1000;
		/* Parameters up to the next comma; only q counts, and a broken qvalue counts as 0. */
		while (*p != '\0' && *p != ',') {
			if (*p != ';') {
				p++;
				continue;
			}
			p++;
			while (*p == ' ' || *p == '\t')
				p++;
			const char *name = p;
			while (*p != '\0' && *p != ';' && *p != ',' && *p != ' ' && *p != '\t')
				p++;
			if ((name[0] == 'q' || name[0] == 'Q') && name[1] == '=') {
				q = qvalue(name + 2, (size_t)(p - name - 2));
				if (q < 0)
					q = 0;
			}
		}
		for (int i = 0; i < n; i++) {
			int sp = range_matches(range, len, types[i]);
			if (sp > spec[i]) { /* the first of equally specific ranges stands */
				spec[i] = sp;
				q_of[i] = q;
				pos[i] = at;
			}
		}
	}
	int best = -1;
	for (int i = 0; i < n; i++) {
		if (q_of[i] > 0 && (best < 0 || q_of[i] > q_of[best] || (q_of[i] == q_of[best] && pos[i] < pos[best])))
			best = i;
	}
	return best;
}

int embd_json_nesting_within(const void *text, size_t n, int max)
{
	const unsigned char *p = text;
	int depth = 0, in_string = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];
		if (in_string) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = 0;
		} else if (c == '"') {
			in_string = 1;
		} else if (c == '{' || c == '[') {
			if (++depth > max)
				return 0;
		} else if (c == '}' || c == ']') {
			depth--;
		}
	}
	return 1;
}
