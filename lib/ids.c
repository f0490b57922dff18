/* Parsing id lists out of untrusted request input. */
#include "ids.h"

#include <stdio.h>
#include <strings.h>

#include "jsonread.h"
#include "npy.h"

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

/* JSON bodies, read with the one JSON reader (jsonread.h); the messages name "ids" and "tokens". */

/* A value's kind for messages, with every number "a number": the words these bodies have always used. */
static const char *kind(const embd_jr *j)
{
	char c = embd_jr_peek(j);
	const char *t = embd_jr_type(j);
	return c == '-' || (c >= '0' && c <= '9') ? "a number" : t != NULL ? t : "not a JSON value";
}

/* One array element: an integer id. */
static int json_id(embd_jr *j, size_t index, int64_t *out)
{
	char c = embd_jr_peek(j);
	int64_t v;
	if (c == '-' || (c >= '0' && c <= '9')) {
		int rc = embd_jr_id(j, "ids", index, &v);
		if (rc == 0 && out != NULL)
			*out = v;
		return rc;
	}
	if (in_set("\"{[tfn", c))
		return embd_err_set(j->e, EMBD_EJSONTYPE, "ids[%zu] is %s; ids are integers", index, kind(j));
	return embd_jr_syntax(j, "a number");
}

static int json_ids_array(embd_jr *j, int64_t *out, size_t *n)
{
	size_t k = 0;
	j->i++; /* '[' */
	if (embd_jr_eat(j, ']'))
		return embd_err_set(j->e, EMBD_EEMPTY, "\"ids\" is an empty list");
	for (;;) {
		embd_jr_ws(j);
		if (j->i >= j->len)
			return embd_jr_syntax(j, "an id");
		if (out != NULL && k >= *n)
			return embd_err_set(j->e, EMBD_EINTERNAL, "id list grew between passes");
		int rc = json_id(j, k, out != NULL ? &out[k] : NULL);
		if (rc != 0)
			return rc;
		k++;
		if (embd_jr_eat(j, ','))
			continue;
		if (embd_jr_eat(j, ']'))
			break;
		return embd_jr_syntax(j, "',' or ']'");
	}
	*n = k;
	return 0;
}

/* "tokens": an array of strings; counts into b (count pass) or fills b's tokens and arena. */
static int json_tokens_array(embd_jr *j, embd_batch *b)
{
	size_t k = 0, used = 0;
	int fill = b->toks != NULL;
	j->i++; /* '[' */
	if (embd_jr_eat(j, ']'))
		return embd_err_set(j->e, EMBD_EEMPTY, "\"tokens\" is an empty list");
	for (;;) {
		embd_jr_ws(j);
		if (j->i >= j->len)
			return embd_jr_syntax(j, "a token");
		if (fill && k >= b->n)
			return embd_err_set(j->e, EMBD_EINTERNAL, "token list grew between passes");
		char c = embd_jr_peek(j);
		if (c != '"')
			return in_set("{[tfn-0123456789", c)
			           ? embd_err_set(j->e, EMBD_EJSONTYPE, "tokens[%zu] is %s; tokens are strings", k,
			                          c == '-' || (c >= '0' && c <= '9') ? "a number" : kind(j))
			           : embd_jr_syntax(j, "a string");
		size_t len = 0;
		char *dst = fill ? b->arena + used : NULL;
		const char *why = NULL;
		int rc = embd_jr_token(j, dst, &len, &why);
		if (rc == EMBD_EBADTOKEN)
			return embd_err_set(j->e, rc, "tokens[%zu] %s", k, why);
		if (rc != 0)
			return rc;
		if (fill)
			b->toks[k] = (embd_token){dst, len};
		used += len + 1;
		k++;
		if (embd_jr_eat(j, ','))
			continue;
		if (embd_jr_eat(j, ']'))
			break;
		return embd_jr_syntax(j, "',' or ']'");
	}
	b->n = k;
	b->bytes = used;
	return 0;
}

static int parse_json(const char *s, size_t len, embd_batch *b, int tokens_ok, embd_err *e)
{
	embd_jr jr = {s, len, 0, e}, *j = &jr;
	const char *want = tokens_ok ? "{\"ids\": [...]} or {\"tokens\": [...]}" : "{\"ids\": [...]}";
	const char *seen = NULL;
	/* JSON has no NUL outside a \u0000 escape; refusing it first keeps it from reading as a terminator. */
	const char *nul = memchr(s, '\0', len);
	if (nul != NULL)
		return embd_err_set(e, EMBD_EJSON, "malformed JSON at byte %zu: a NUL byte", (size_t)(nul - s));
	embd_jr_ws(j);
	if (j->i >= j->len)
		return embd_err_set(e, EMBD_EJSON, "malformed JSON: the body is empty");
	if (s[j->i] != '{')
		return in_set("\"[tfn-0123456789", s[j->i])
		           ? embd_err_set(e, EMBD_EJSONTYPE, "the body is %s; send an object %s", kind(j), want)
		           : embd_jr_syntax(j, "'{'");
	j->i++;
	if (embd_jr_eat(j, '}'))
		return embd_err_set(e, EMBD_EBADBODY, "the body has no \"ids\"%s; send %s",
		                    tokens_ok ? " or \"tokens\"" : "", want);
	for (;;) {
		embd_jr_ws(j);
		if (j->i >= j->len || s[j->i] != '"')
			return embd_jr_syntax(j, "a key in quotes");
		char key[64];
		size_t klen = 0;
		int rc = embd_jr_key(j, key, sizeof key, &klen);
		if (rc != 0)
			return rc;
		if (!embd_jr_eat(j, ':'))
			return embd_jr_syntax(j, "':'");
		embd_jr_ws(j);
		if (j->i >= j->len)
			return embd_jr_syntax(j, "a value");
		int is_ids = klen == 3 && memcmp(key, "ids", 3) == 0;
		int is_tokens = tokens_ok && klen == 6 && memcmp(key, "tokens", 6) == 0;
		if (!is_ids && !is_tokens)
			return embd_err_set(e, EMBD_EBADBODY, "unknown key \"%s\"; the body is %s", key, want);
		if (seen != NULL)
			return strcmp(seen, key) == 0
			           ? embd_err_set(e, EMBD_EBADBODY, "\"%s\" appears twice", key)
			           : embd_err_set(e, EMBD_EBADBODY, "give either \"ids\" or \"tokens\", not both");
		if (s[j->i] != '[')
			return embd_err_set(e, EMBD_EJSONTYPE, "\"%s\" is %s; it must be an array of %s", key, kind(j),
			                    is_ids ? "integers" : "strings");
		b->tokens = is_tokens;
		rc = is_ids ? json_ids_array(j, b->ids, &b->n) : json_tokens_array(j, b);
		if (rc != 0)
			return rc;
		seen = is_ids ? "ids" : "tokens";
		if (embd_jr_eat(j, ','))
			continue;
		if (embd_jr_eat(j, '}'))
			break;
		return embd_jr_syntax(j, "',' or '}'");
	}
	embd_jr_ws(j);
	if (j->i != j->len)
		return embd_err_set(e, EMBD_EJSON, "malformed JSON at byte %zu: data after the object", j->i);
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

embd_body_kind embd_body_sniff(const void *body, size_t len)
{
	static const char magic[] = "\x93NUMPY";
	const char *s = body;
	if (len >= sizeof magic - 1 && memcmp(s, magic, sizeof magic - 1) == 0)
		return EMBD_BODY_NPY;
	size_t i = 0;
	while (i < len && is_space(s[i]))
		i++;
	/* Raw int32/int64 ids have NUL high bytes unless every id is huge: one NUL rules JSON out. */
	if (i < len && (s[i] == '{' || s[i] == '[') && memchr(s, '\0', len) == NULL)
		return EMBD_BODY_JSON;
	return EMBD_BODY_UNKNOWN;
}

/* Does the media type of header (what comes before ';' or a space) equal type, case aside? */
static int media_is(const char *header, size_t n, const char *type)
{
	return n == strlen(type) && strncasecmp(header, type, n) == 0;
}

embd_body_kind embd_media_kind(const char *content_type, size_t *n)
{
	const char *ct = content_type != NULL ? content_type : "";
	*n = strcspn(ct, "; \t");
	if (media_is(ct, *n, "application/json"))
		return EMBD_BODY_JSON;
	if (media_is(ct, *n, "application/x-npy"))
		return EMBD_BODY_NPY;
	if (media_is(ct, *n, "application/octet-stream"))
		return EMBD_BODY_RAW;
	return EMBD_BODY_UNKNOWN;
}

int embd_ids_body_kind(const char *content_type, const char *id_dtype, const void *body, size_t len,
                       embd_body_kind *kind, unsigned *width, embd_err *e)
{
	const char *ct = content_type != NULL ? content_type : "";
	size_t n;
	embd_body_kind media = embd_media_kind(ct, &n);
	int raw = n == 0 || media == EMBD_BODY_RAW;
	*kind = EMBD_BODY_UNKNOWN;
	*width = 8;
	if (id_dtype != NULL && !raw)
		return embd_err_set(
		    e, EMBD_EBADPARAM,
		    "id_dtype goes with an application/octet-stream body (or one without a Content-Type)");
	if (id_dtype != NULL && strcmp(id_dtype, "int32") != 0 && strcmp(id_dtype, "int64") != 0)
		return embd_err_set(e, EMBD_EBADPARAM, "id_dtype '%.100s' is not int32 or int64", id_dtype);
	if (id_dtype != NULL) {
		*kind = EMBD_BODY_RAW;
		*width = strcmp(id_dtype, "int32") == 0 ? 4 : 8;
		return 0;
	}
	if (media == EMBD_BODY_JSON || media == EMBD_BODY_NPY)
		*kind = media;
	else if (n == 0)
		*kind = embd_body_sniff(body, len);
	else if (raw)
		return embd_err_set(
		    e, EMBD_EBADPARAM,
		    "an application/octet-stream body of ids needs ?id_dtype=int64 or ?id_dtype=int32: raw "
		    "bytes do not say their width (a .npy body, application/x-npy, says it itself)");
	else
		return embd_err_set(e, EMBD_EMEDIATYPE,
		                    "Content-Type '%.100s' is not supported; send application/json {\"ids\": [...]} or "
		                    "{\"tokens\": [...]}, application/x-npy, or application/octet-stream with "
		                    "?id_dtype=int64 or ?id_dtype=int32",
		                    ct);
	if (*kind == EMBD_BODY_UNKNOWN)
		return embd_err_set(
		    e, EMBD_EMEDIATYPE,
		    "the body has no Content-Type and is neither JSON nor .npy; send Content-Type: "
		    "application/json ({\"ids\": [...]} or {\"tokens\": [...]}) or application/x-npy, or "
		    "raw little-endian ids with ?id_dtype=int64 or ?id_dtype=int32");
	return 0;
}
