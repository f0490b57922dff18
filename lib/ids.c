/* Parsing id lists out of untrusted request input. */
#include "ids.h"

#include <stdio.h>

#include "npy.h"
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

/* Digits at s[*i..] into *v; 0, or EMBD_EBADID on overflow. At least one digit is the caller's check. */
static int digits(const char *s, size_t len, size_t *i, int64_t *v)
{
	uint64_t x = 0;
	while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
		unsigned d = (unsigned)(s[*i] - '0');
		if (x > ((uint64_t)INT64_MAX - d) / 10)
			return EMBD_EBADID;
		x = x * 10 + d;
		(*i)++;
	}
	*v = (int64_t)x;
	return 0;
}

static int item_error(embd_err *e, const char *s, size_t start, size_t len, const char *why)
{
	size_t end = start;
	while (end < len && s[end] != ',')
		end++;
	int shown = (int)(end - start > 40 ? 40 : end - start);
	return embd_err_set(e, EMBD_EBADID, "id '%.*s'%s %s", shown, s + start, end - start > 40 ? "..." : "", why);
}

static int parse_list(const char *s, size_t len, int64_t *out, size_t *n, embd_err *e)
{
	size_t i = 0;
	while (i < len && is_space(s[i]))
		i++;
	if (i == len)
		return embd_err_set(e, EMBD_EEMPTY, "the id list is empty");
	if (out == NULL) {
		size_t count = 1;
		for (size_t j = 0; j < len; j++)
			count += s[j] == ',';
		*n = count;
		return 0;
	}
	size_t k = 0;
	for (;;) {
		while (i < len && is_space(s[i]))
			i++;
		size_t start = i;
		if (i < len && s[i] == '-')
			return item_error(e, s, start, len, "is negative; ids count from 0");
		if (i == len || s[i] < '0' || s[i] > '9')
			return i == len || s[i] == ','
			           ? embd_err_set(e, EMBD_EBADID, "empty id at item %zu of the list", k)
			           : item_error(e, s, start, len, "is not a non-negative decimal integer");
		if (digits(s, len, &i, &out[k]) != 0)
			return item_error(e, s, start, len, "does not fit in a 64-bit id");
		while (i < len && is_space(s[i]))
			i++;
		if (i < len && s[i] != ',')
			return item_error(e, s, start, len, "is not a non-negative decimal integer");
		k++;
		if (i == len)
			break;
		i++; /* the comma */
		if (k == *n)
			return embd_err_set(e, EMBD_EINTERNAL, "id list grew between passes");
	}
	*n = k;
	return 0;
}

int embd_ids_parse_list(const char *s, size_t len, int64_t *out, size_t *n, embd_err *e)
{
	int rc = parse_list(s, len, out, n, e);
	if (rc != 0)
		*n = 0; /* a caller that copies the count on failure copies nothing */
	return rc;
}

/* JSON body parsing: a cursor and a recursive-descent subset that only ever descends two levels. */
struct json {
	const char *s;
	size_t len, i;
	embd_err *e;
};

static void ws(struct json *j)
{
	while (j->i < j->len && is_space(j->s[j->i]))
		j->i++;
}

static int syntax(struct json *j, const char *expected)
{
	if (j->i >= j->len)
		return embd_err_set(j->e, EMBD_EJSON, "malformed JSON: the body ends where %s was expected", expected);
	return embd_err_set(j->e, EMBD_EJSON, "malformed JSON at byte %zu: expected %s", j->i, expected);
}

/* Four hex digits at the cursor into *cp. */
static int hex4(struct json *j, unsigned *cp)
{
	*cp = 0;
	for (int d = 0; d < 4; d++, j->i++) {
		char h = j->i < j->len ? j->s[j->i] : '\0';
		int v = h >= '0' && h <= '9'   ? h - '0'
		        : h >= 'a' && h <= 'f' ? h - 'a' + 10
		        : h >= 'A' && h <= 'F' ? h - 'A' + 10
		                               : -1;
		if (v < 0)
			return syntax(j, "four hex digits after \\u");
		*cp = *cp * 16 + (unsigned)v;
	}
	return 0;
}

/*
 * A JSON string into key (truncated to cap-1 bytes and NUL-terminated;
 * \u escapes decoded for ASCII but NUL, '?' for the rest) and its length into
 * *klen, which with the bytes says which key it is.
 */
static int json_string(struct json *j, char *key, size_t cap, size_t *klen)
{
	size_t k = 0;
	j->i++; /* the opening quote */
	while (j->i < j->len) {
		unsigned char c = (unsigned char)j->s[j->i++];
		if (c == '"') {
			key[k] = '\0';
			*klen = k;
			return 0;
		}
		if (c < 0x20)
			return embd_err_set(j->e, EMBD_EJSON,
			                    "malformed JSON at byte %zu: control character in a string", j->i - 1);
		if (c == '\\') {
			if (j->i >= j->len)
				break;
			char esc = j->s[j->i++];
			static const char simple[] = "\"\\/bfnrt", decoded[] = "\"\\/\b\f\n\r\t";
			const char *at = in_set(simple, esc) ? strchr(simple, esc) : NULL;
			if (esc == 'u') {
				unsigned cp;
				int rc = hex4(j, &cp);
				if (rc != 0)
					return rc;
				/* '?' for NUL too: a NUL would cut the key short in messages. */
				c = cp != 0 && cp < 0x80 ? (unsigned char)cp : '?';
			} else if (at != NULL) {
				c = (unsigned char)decoded[at - simple];
			} else {
				j->i--;
				return syntax(j, "a valid escape");
			}
		}
		if (k + 1 < cap)
			key[k++] = (char)c;
	}
	return syntax(j, "a closing '\"'");
}

static const char *type_name(char c)
{
	switch (c) {
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
		return "not a JSON value";
	}
}

/* One array element: an integer id. */
static int json_id(struct json *j, size_t index, int64_t *out)
{
	size_t start = j->i;
	char c = j->s[j->i];
	if (c == '-' || (c >= '0' && c <= '9')) {
		int neg = c == '-';
		if (neg)
			j->i++;
		int64_t v = 0;
		size_t d0 = j->i;
		int rc = digits(j->s, j->len, &j->i, &v);
		if (j->i == d0)
			return syntax(j, "a digit");
		if (j->s[d0] == '0' && j->i - d0 > 1)
			return embd_err_set(j->e, EMBD_EJSON, "malformed JSON at byte %zu: a number has a leading zero",
			                    d0);
		int frac = j->i < j->len && (j->s[j->i] == '.' || j->s[j->i] == 'e' || j->s[j->i] == 'E');
		if (frac) {
			/* Valid JSON, but not an integer: consume it to quote it. */
			while (j->i < j->len && in_set("0123456789.eE+-", j->s[j->i]))
				j->i++;
			return embd_err_set(j->e, EMBD_EJSONTYPE, "ids[%zu] is %.*s, not an integer", index,
			                    (int)(j->i - start > 40 ? 40 : j->i - start), j->s + start);
		}
		if (neg)
			return embd_err_set(j->e, EMBD_EBADID, "ids[%zu] is %.*s: ids count from 0", index,
			                    (int)(j->i - start > 40 ? 40 : j->i - start), j->s + start);
		if (rc != 0)
			return embd_err_set(j->e, EMBD_EBADID, "ids[%zu] does not fit in a 64-bit id", index);
		if (out != NULL)
			*out = v;
		return 0;
	}
	if (in_set("\"{[tfn", c))
		return embd_err_set(j->e, EMBD_EJSONTYPE, "ids[%zu] is %s; ids are integers", index, type_name(c));
	return syntax(j, "a number");
}

static int json_ids_array(struct json *j, int64_t *out, size_t *n)
{
	size_t k = 0;
	j->i++; /* '[' */
	ws(j);
	if (j->i < j->len && j->s[j->i] == ']') {
		j->i++;
		return embd_err_set(j->e, EMBD_EEMPTY, "\"ids\" is an empty list");
	}
	for (;;) {
		ws(j);
		if (j->i >= j->len)
			return syntax(j, "an id");
		if (out != NULL && k >= *n)
			return embd_err_set(j->e, EMBD_EINTERNAL, "id list grew between passes");
		int rc = json_id(j, k, out != NULL ? &out[k] : NULL);
		if (rc != 0)
			return rc;
		k++;
		ws(j);
		if (j->i < j->len && j->s[j->i] == ',') {
			j->i++;
			continue;
		}
		if (j->i < j->len && j->s[j->i] == ']') {
			j->i++;
			break;
		}
		return syntax(j, "',' or ']'");
	}
	*n = k;
	return 0;
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

static int bad_token(struct json *j, size_t index, const char *why)
{
	return embd_err_set(j->e, EMBD_EBADTOKEN, "tokens[%zu] %s", index, why);
}

/*
 * tokens[index], a JSON string at the cursor, decoded (escapes, surrogate
 * pairs) into dst (NULL: only checked and measured) with a NUL after it;
 * its length in *len. Raw bytes between escapes must be valid UTF-8 on their
 * own (an escape cannot finish a sequence), so checking each stretch checks
 * the whole token without a copy.
 */
static int json_token(struct json *j, size_t index, char *dst, size_t *len)
{
	size_t k = 0;
	j->i++; /* the opening quote */
	for (;;) {
		size_t run = j->i;
		while (j->i < j->len && j->s[j->i] != '"' && j->s[j->i] != '\\' && (unsigned char)j->s[j->i] >= 0x20)
			j->i++;
		size_t n = j->i - run;
		if (embd_utf8_valid_len(j->s + run, n) != n)
			return bad_token(j, index, "is not valid UTF-8");
		if (dst != NULL)
			memcpy(dst + k, j->s + run, n);
		k += n;
		if (j->i >= j->len)
			return syntax(j, "a closing '\"'");
		char c = j->s[j->i++];
		if (c == '"')
			break;
		if (c != '\\')
			return embd_err_set(j->e, EMBD_EJSON,
			                    "malformed JSON at byte %zu: control character in a string", j->i - 1);
		if (j->i >= j->len)
			return syntax(j, "an escape");
		char esc = j->s[j->i++];
		static const char simple[] = "\"\\/bfnrt", decoded[] = "\"\\/\b\f\n\r\t";
		unsigned cp;
		if (esc == 'u') {
			int rc = hex4(j, &cp);
			if (rc != 0)
				return rc;
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return bad_token(j, index, "holds a lone low surrogate");
			if (cp >= 0xd800 && cp <= 0xdbff) {
				unsigned lo;
				if (j->i + 1 >= j->len || j->s[j->i] != '\\' || j->s[j->i + 1] != 'u')
					return bad_token(j, index, "holds a lone high surrogate");
				j->i += 2;
				if ((rc = hex4(j, &lo)) != 0)
					return rc;
				if (lo < 0xdc00 || lo > 0xdfff)
					return bad_token(j, index, "holds a lone high surrogate");
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			if (cp == 0)
				return bad_token(j, index, "holds a NUL (\\u0000)");
		} else if (in_set(simple, esc)) {
			cp = (unsigned char)decoded[strchr(simple, esc) - simple];
		} else {
			j->i--;
			return syntax(j, "a valid escape");
		}
		k += put_utf8(dst != NULL ? dst + k : NULL, cp);
	}
	if (k == 0)
		return bad_token(j, index, "is empty");
	if (dst != NULL)
		dst[k] = '\0';
	*len = k;
	return 0;
}

/* "tokens": an array of strings; counts into b (count pass) or fills b's tokens and arena. */
static int json_tokens_array(struct json *j, embd_batch *b)
{
	size_t k = 0, used = 0;
	int fill = b->toks != NULL;
	j->i++; /* '[' */
	ws(j);
	if (j->i < j->len && j->s[j->i] == ']') {
		j->i++;
		return embd_err_set(j->e, EMBD_EEMPTY, "\"tokens\" is an empty list");
	}
	for (;;) {
		ws(j);
		if (j->i >= j->len)
			return syntax(j, "a token");
		if (fill && k >= b->n)
			return embd_err_set(j->e, EMBD_EINTERNAL, "token list grew between passes");
		char c = j->s[j->i];
		if (c != '"')
			return in_set("{[tfn-0123456789", c)
			           ? embd_err_set(j->e, EMBD_EJSONTYPE, "tokens[%zu] is %s; tokens are strings", k,
			                          c == '-' || (c >= '0' && c <= '9') ? "a number" : type_name(c))
			           : syntax(j, "a string");
		size_t len = 0;
		char *dst = fill ? b->arena + used : NULL;
		int rc = json_token(j, k, dst, &len);
		if (rc != 0)
			return rc;
		if (fill)
			b->toks[k] = (embd_token){dst, len};
		used += len + 1;
		k++;
		ws(j);
		if (j->i < j->len && j->s[j->i] == ',') {
			j->i++;
			continue;
		}
		if (j->i < j->len && j->s[j->i] == ']') {
			j->i++;
			break;
		}
		return syntax(j, "',' or ']'");
	}
	b->n = k;
	b->bytes = used;
	return 0;
}

static int parse_json(const char *s, size_t len, embd_batch *b, int tokens_ok, embd_err *e)
{
	struct json j = {s, len, 0, e};
	const char *want = tokens_ok ? "{\"ids\": [...]} or {\"tokens\": [...]}" : "{\"ids\": [...]}";
	const char *seen = NULL;
	/* JSON has no NUL outside a \u0000 escape; refusing it first keeps it from reading as a terminator. */
	const char *nul = memchr(s, '\0', len);
	if (nul != NULL)
		return embd_err_set(e, EMBD_EJSON, "malformed JSON at byte %zu: a NUL byte", (size_t)(nul - s));
	ws(&j);
	if (j.i >= j.len)
		return embd_err_set(e, EMBD_EJSON, "malformed JSON: the body is empty");
	if (s[j.i] != '{')
		return in_set("\"[tfn-0123456789", s[j.i])
		           ? embd_err_set(e, EMBD_EJSONTYPE, "the body is %s; send an object %s",
		                          s[j.i] == '-' || (s[j.i] >= '0' && s[j.i] <= '9') ? "a number"
		                                                                            : type_name(s[j.i]),
		                          want)
		           : syntax(&j, "'{'");
	j.i++;
	ws(&j);
	if (j.i < j.len && s[j.i] == '}')
		return embd_err_set(e, EMBD_EBADBODY, "the body has no \"ids\"%s; send %s",
		                    tokens_ok ? " or \"tokens\"" : "", want);
	for (;;) {
		ws(&j);
		if (j.i >= j.len || s[j.i] != '"')
			return syntax(&j, "a key in quotes");
		char key[64];
		size_t klen = 0;
		int rc = json_string(&j, key, sizeof key, &klen);
		if (rc != 0)
			return rc;
		ws(&j);
		if (j.i >= j.len || s[j.i] != ':')
			return syntax(&j, "':'");
		j.i++;
		ws(&j);
		if (j.i >= j.len)
			return syntax(&j, "a value");
		int is_ids = klen == 3 && memcmp(key, "ids", 3) == 0;
		int is_tokens = tokens_ok && klen == 6 && memcmp(key, "tokens", 6) == 0;
		if (!is_ids && !is_tokens)
			return embd_err_set(e, EMBD_EBADBODY, "unknown key \"%s\"; the body is %s", key, want);
		if (seen != NULL)
			return strcmp(seen, key) == 0
			           ? embd_err_set(e, EMBD_EBADBODY, "\"%s\" appears twice", key)
			           : embd_err_set(e, EMBD_EBADBODY, "give either \"ids\" or \"tokens\", not both");
		if (s[j.i] != '[')
			return embd_err_set(e, EMBD_EJSONTYPE, "\"%s\" is %s; it must be an array of %s", key,
			                    s[j.i] == '-' || (s[j.i] >= '0' && s[j.i] <= '9') ? "a number"
			                                                                      : type_name(s[j.i]),
			                    is_ids ? "integers" : "strings");
		b->tokens = is_tokens;
		rc = is_ids ? json_ids_array(&j, b->ids, &b->n) : json_tokens_array(&j, b);
		if (rc != 0)
			return rc;
		seen = is_ids ? "ids" : "tokens";
		ws(&j);
		if (j.i < j.len && s[j.i] == ',') {
			j.i++;
			continue;
		}
		if (j.i < j.len && s[j.i] == '}') {
			j.i++;
			break;
		}
		return syntax(&j, "',' or '}'");
	}
	ws(&j);
	if (j.i != j.len)
		return embd_err_set(e, EMBD_EJSON, "malformed JSON at byte %zu: data after the object", j.i);
	return 0;
}

int embd_ids_parse_json(const char *s, size_t len, int64_t *out, size_t *n, embd_err *e)
{
	embd_batch b = {.n = *n, .ids = out};
	int rc = parse_json(s, len, &b, 0, e);
	*n = rc != 0 ? 0 : b.n; /* a caller that copies the count on failure copies nothing */
	return rc;
}

int embd_batch_parse_json(const char *s, size_t len, embd_batch *b, embd_err *e)
{
	int rc = parse_json(s, len, b, 1, e);
	if (rc != 0)
		b->n = 0;
	return rc;
}

int embd_ids_from_npy(const void *body, size_t len, embd_ids *out, embd_err *e)
{
	embd_npy h;
	embd_err why;
	int rc = embd_npy_parse(body, len, &h, &why);
	if (rc != 0)
		return embd_err_set(e, EMBD_EBADBODY, "ids body: %s", why.msg);
	if (h.kind != 'i' || (h.itemsize != 4 && h.itemsize != 8))
		return embd_err_set(e, EMBD_EBADBODY, "ids body: .npy dtype '%s'; ids must be int32 or int64", h.descr);
	if (h.ndim != 1)
		return embd_err_set(e, EMBD_EBADBODY, "ids body: .npy array has %d dimensions; ids must be 1-D",
		                    h.ndim);
	if (h.shape[0] > (len - h.data_offset) / h.itemsize)
		return embd_err_set(e, EMBD_EBADBODY, "ids body: .npy header says %llu ids but %zu bytes follow it",
		                    (unsigned long long)h.shape[0], len - h.data_offset);
	if (h.shape[0] * h.itemsize != len - h.data_offset)
		return embd_err_set(
		    e, EMBD_EBADBODY, "ids body: %zu bytes follow the %llu ids the .npy header announces",
		    len - h.data_offset - (size_t)h.shape[0] * h.itemsize, (unsigned long long)h.shape[0]);
	if (h.shape[0] == 0)
		return embd_err_set(e, EMBD_EEMPTY, "ids body: the .npy array is empty");
	out->p = (const unsigned char *)body + h.data_offset;
	out->n = (size_t)h.shape[0];
	out->width = h.itemsize;
	return 0;
}

int embd_ids_from_raw(const void *body, size_t len, unsigned width, embd_ids *out, embd_err *e)
{
	if (len == 0)
		return embd_err_set(e, EMBD_EEMPTY, "ids body is empty");
	if (len % width != 0)
		return embd_err_set(e, EMBD_EBADBODY,
		                    "ids body of %zu bytes is not a whole number of %u-byte int%u ids", len, width,
		                    width * 8);
	out->p = body;
	out->n = len / width;
	out->width = width;
	return 0;
}
