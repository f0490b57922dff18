/* Request bodies of the vector operations: rows by id or token, query vectors, pairs, sets, pooling options. */
#include "vecreq.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "dtype.h"
#include "npy.h"
#include "query.h"
#include "utf8.h"
#include "vecops.h"

#define MAX_NESTING 8

struct key {
	const char *name;
	unsigned bit;
};

static const struct key keys[] = {
    {"ids", EMBD_VQ_IDS},
    {"tokens", EMBD_VQ_TOKENS},
    {"vectors", EMBD_VQ_VECTORS},
    {"positive", EMBD_VQ_ANALOGY},
    {"negative", EMBD_VQ_ANALOGY},
    {"pairs", EMBD_VQ_PAIRS},
    {"a", EMBD_VQ_SETS},
    {"b", EMBD_VQ_SETS},
    {"op", EMBD_VQ_OP},
    {"weights", EMBD_VQ_WEIGHTS},
    {"k", EMBD_VQ_K},
    {"metric", EMBD_VQ_METRIC},
    {"include_self", EMBD_VQ_INCLUDE_SELF},
};
#define NKEYS (sizeof keys / sizeof keys[0])

/* The groups of rows a body may name: exactly one of them. */
#define GROUPS (EMBD_VQ_IDS | EMBD_VQ_TOKENS | EMBD_VQ_VECTORS | EMBD_VQ_ANALOGY | EMBD_VQ_PAIRS | EMBD_VQ_SETS)

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number with a fraction";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	default:
		return "null";
	}
}

/* "every key this body may have", for messages. */
static void allowed_list(unsigned allowed, char *buf, size_t cap)
{
	size_t n = 0;
	buf[0] = '\0';
	for (size_t k = 0; k < NKEYS && n < cap; k++)
		if (allowed & keys[k].bit)
			n += (size_t)snprintf(buf + n, cap - n, "%s\"%s\"", n ? ", " : "", keys[k].name);
}

/* One element naming a row: an integer id or a token string (copied into acct's memory). */
static int ref_from(json_t *v, const char *key, size_t i, int ids_ok, int tokens_ok, embd_acct *acct, embd_ref *out,
                    embd_err *e)
{
	if (json_is_integer(v) && ids_ok) {
		json_int_t id = json_integer_value(v);
		if (id < 0)
			return embd_err_set(e, EMBD_EBADID, "%s[%zu] is %lld: ids count from 0", key, i, (long long)id);
		*out = (embd_ref){(int64_t)id, {NULL, 0}};
		return 0;
	}
	if (json_is_string(v) && tokens_ok) {
		size_t n = json_string_length(v);
		const char *s = json_string_value(v);
		if (n == 0)
			return embd_err_set(e, EMBD_EBADTOKEN, "%s[%zu] is empty", key, i);
		if (memchr(s, '\0', n) != NULL)
			return embd_err_set(e, EMBD_EBADTOKEN, "%s[%zu] holds a NUL (\\u0000)", key, i);
		if (embd_utf8_valid_len(s, n) != n) /* jansson decodes \ud800 alone to bytes that are not UTF-8 */
			return embd_err_set(e, EMBD_EBADTOKEN, "%s[%zu] is not valid UTF-8", key, i);
		char *copy;
		int rc = embd_acct_alloc(acct, n + 1, (void **)&copy);
		if (rc != 0)
			return embd_err_set(e, rc, "the parsed tokens");
		memcpy(copy, s, n + 1);
		*out = (embd_ref){-1, {copy, n}};
		return 0;
	}
	return embd_err_set(e, EMBD_EJSONTYPE, "%s[%zu] is %s; rows are named by %s", key, i, type_name(v),
	                    ids_ok && tokens_ok ? "id (an integer) or token (a string)"
	                    : ids_ok            ? "id (an integer)"
	                                        : "token (a string)");
}

/* A JSON array of rows into refs[at ...]; *count elements. */
static int refs_from(json_t *arr, const char *key, int ids_ok, int tokens_ok, embd_acct *acct, embd_ref *refs,
                     size_t at, embd_err *e)
{
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v)
	{
		int rc = ref_from(v, key, i, ids_ok, tokens_ok, acct, &refs[at + i], e);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* A number as float32 (the nearest double, then float32, as np.float32(float(text))), within float32's range. */
static int number(json_t *v, const char *what, float *out, embd_err *e)
{
	if (!json_is_number(v))
		return embd_err_set(e, EMBD_EJSONTYPE, "%s is %s; a number is needed", what, type_name(v));
	double d = json_number_value(v);
	float f = (float)d;
	if (!isfinite(f))
		return embd_err_set(e, EMBD_EBADVECTOR, "%s is %g, past float32's range", what, d);
	*out = f;
	return 0;
}

static int array_of(json_t *v, const char *key, embd_err *e)
{
	if (!json_is_array(v))
		return embd_err_set(e, EMBD_EJSONTYPE, "\"%s\" is %s; it must be an array", key, type_name(v));
	if (json_array_size(v) == 0)
		return embd_err_set(e, EMBD_EEMPTY, "\"%s\" is an empty list", key);
	return 0;
}

static int too_many(size_t n, size_t max_items, const char *what, embd_err *e)
{
	if (n <= max_items)
		return 0;
	return embd_err_set(e, EMBD_ETOOMANYIDS, "the body names %zu %s; limits.max_ids is %zu", n, what, max_items);
}

/* "k", "metric" and "include_self": the options of a top-k search, as its query string has them. */
static int options(json_t *root, embd_vecreq *out, embd_err *e)
{
	json_t *v = json_object_get(root, "k");
	if (v != NULL) {
		if (!json_is_integer(v))
			return embd_err_set(e, EMBD_EJSONTYPE, "\"k\" is %s; it is a non-negative integer",
			                    type_name(v));
		if (json_integer_value(v) < 0)
			return embd_err_set(e, EMBD_EBADPARAM, "\"k\" is %lld; it is a non-negative integer",
			                    (long long)json_integer_value(v));
		out->k = (uint64_t)json_integer_value(v);
	}
	v = json_object_get(root, "metric");
	if (v != NULL) {
		embd_metric m;
		if (!json_is_string(v))
			return embd_err_set(e, EMBD_EJSONTYPE, "\"metric\" is %s; it is \"cosine\" or \"dot\"",
			                    type_name(v));
		if (strlen(json_string_value(v)) != json_string_length(v) ||
		    embd_metric_parse(json_string_value(v), &m) != 0)
			return embd_err_set(e, EMBD_EBADPARAM, "\"metric\" '%.100s' is not \"cosine\" or \"dot\"",
			                    json_string_value(v));
		out->metric = (int)m;
	}
	v = json_object_get(root, "include_self");
	if (v != NULL) {
		/* Booleans, or 0 and 1 as the query string's include_self=0|1. */
		if (json_is_boolean(v))
			out->include_self = json_is_true(v);
		else if (!json_is_integer(v))
			return embd_err_set(e, EMBD_EJSONTYPE,
			                    "\"include_self\" is %s; it is true or false (or 1 or 0)", type_name(v));
		else if (json_integer_value(v) == 0 || json_integer_value(v) == 1)
			out->include_self = (int)json_integer_value(v);
		else
			return embd_err_set(e, EMBD_EBADPARAM,
			                    "\"include_self\" is %lld; it is true or false (or 1 or 0)",
			                    (long long)json_integer_value(v));
	}
	return 0;
}

static int parse_root(json_t *root, unsigned allowed, uint64_t dim, size_t max_items, embd_acct *acct, embd_vecreq *out,
                      embd_err *e)
{
	char list[160];
	allowed_list(allowed, list, sizeof list);
	if (!json_is_object(root))
		return embd_err_set(e, EMBD_EJSONTYPE, "the body is %s; send an object with %s", type_name(root), list);
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v)
	{
		unsigned bit = 0;
		for (size_t k = 0; k < NKEYS; k++)
			if (strcmp(key, keys[k].name) == 0)
				bit = keys[k].bit;
		if ((bit & allowed) == 0)
			return embd_err_set(e, EMBD_EBADBODY, "unknown key \"%.60s\"; this body takes %s", key, list);
		out->given |= bit;
	}
	unsigned groups = out->given & GROUPS;
	if (groups == 0)
		return embd_err_set(e, EMBD_EBADBODY, "the body names no rows; it takes %s", list);
	if (groups & (groups - 1))
		return embd_err_set(e, EMBD_EBADBODY, "the body names rows in two ways; give one of %s", list);

	if (groups == EMBD_VQ_VECTORS) {
		json_t *arr = json_object_get(root, "vectors");
		int rc = array_of(arr, "vectors", e);
		if (rc == 0)
			rc = too_many(json_array_size(arr), max_items, "vectors", e);
		if (rc != 0)
			return rc;
		size_t n = json_array_size(arr);
		if (dim > SIZE_MAX / sizeof(float) / n)
			return embd_err_set(e, EMBD_ETOOBIG, "%zu vectors of %llu floats", n, (unsigned long long)dim);
		if ((rc = embd_acct_alloc(acct, n * (size_t)dim * sizeof(float), (void **)&out->vectors)) != 0)
			return embd_err_set(e, rc, "the query vectors");
		size_t i;
		json_t *row;
		json_array_foreach(arr, i, row)
		{
			if (!json_is_array(row))
				return embd_err_set(e, EMBD_EJSONTYPE,
				                    "vectors[%zu] is %s; a vector is an array of numbers", i,
				                    type_name(row));
			if (json_array_size(row) != dim)
				return embd_err_set(e, EMBD_EBADVECTOR,
				                    "vectors[%zu] has %zu numbers; the rows have %llu", i,
				                    json_array_size(row), (unsigned long long)dim);
			size_t j;
			json_t *x;
			json_array_foreach(row, j, x)
			{
				char what[64];
				snprintf(what, sizeof what, "vectors[%zu][%zu]", i, j);
				if ((rc = number(x, what, &out->vectors[i * dim + j], e)) != 0)
					return rc;
			}
		}
		out->nvectors = n;
	} else if (groups == EMBD_VQ_IDS || groups == EMBD_VQ_TOKENS) {
		const char *k = groups == EMBD_VQ_IDS ? "ids" : "tokens";
		json_t *arr = json_object_get(root, k);
		int rc = array_of(arr, k, e);
		if (rc == 0)
			rc = too_many(json_array_size(arr), max_items, k, e);
		if (rc == 0 &&
		    (rc = embd_acct_alloc(acct, json_array_size(arr) * sizeof(embd_ref), (void **)&out->refs)) != 0)
			embd_err_set(e, rc, "the rows named");
		if (rc == 0)
			rc = refs_from(arr, k, groups == EMBD_VQ_IDS, groups == EMBD_VQ_TOKENS, acct, out->refs, 0, e);
		if (rc != 0)
			return rc;
		out->nrefs = json_array_size(arr);
	} else if (groups == EMBD_VQ_PAIRS) {
		json_t *arr = json_object_get(root, "pairs");
		int rc = array_of(arr, "pairs", e);
		if (rc == 0)
			rc = too_many(json_array_size(arr) * 2, max_items, "rows", e);
		if (rc == 0 &&
		    (rc = embd_acct_alloc(acct, 2 * json_array_size(arr) * sizeof(embd_ref), (void **)&out->refs)) != 0)
			embd_err_set(e, rc, "the rows named");
		if (rc != 0)
			return rc;
		size_t i;
		json_t *pair;
		json_array_foreach(arr, i, pair)
		{
			if (!json_is_array(pair) || json_array_size(pair) != 2)
				return embd_err_set(e, EMBD_EJSONTYPE, "pairs[%zu] is %s; a pair is [row, row]", i,
				                    json_is_array(pair) ? "not two rows" : type_name(pair));
			for (size_t s = 0; s < 2; s++)
				if ((rc = ref_from(json_array_get(pair, s), "pairs", i, 1, 1, acct,
				                   &out->refs[2 * i + s], e)) != 0)
					return rc;
		}
		out->nrefs = 2 * json_array_size(arr);
	} else {
		/*
		 * positive/negative (gensim's most_similar: either list may be empty
		 * or missing, not both), a/b (n_similarity: neither may be empty).
		 */
		int sets = groups == EMBD_VQ_SETS;
		const char *k1 = sets ? "a" : "positive", *k2 = sets ? "b" : "negative";
		json_t *l1 = json_object_get(root, k1), *l2 = json_object_get(root, k2);
		if (sets && (l1 == NULL || l2 == NULL))
			return embd_err_set(e, EMBD_EBADBODY, "\"%s\" is missing", l1 == NULL ? k1 : k2);
		int rc = 0;
		for (int i = 0; i < 2 && rc == 0; i++) {
			json_t *l = i == 0 ? l1 : l2;
			const char *k = i == 0 ? k1 : k2;
			if (sets)
				rc = array_of(l, k, e);
			else if (l != NULL && !json_is_array(l))
				rc = embd_err_set(e, EMBD_EJSONTYPE, "\"%s\" is %s; it must be an array", k,
				                  type_name(l));
		}
		size_t n1 = json_array_size(l1), n2 = json_array_size(l2); /* 0 for NULL */
		if (rc == 0 && n1 + n2 == 0)
			rc = embd_err_set(e, EMBD_EEMPTY, "\"positive\" and \"negative\" name no rows");
		if (rc == 0)
			rc = too_many(n1 + n2, max_items, "rows", e);
		if (rc == 0 && (rc = embd_acct_alloc(acct, (n1 + n2) * sizeof(embd_ref), (void **)&out->refs)) != 0)
			embd_err_set(e, rc, "the rows named");
		if (rc == 0 && l1 != NULL)
			rc = refs_from(l1, k1, 1, 1, acct, out->refs, 0, e);
		if (rc == 0 && l2 != NULL)
			rc = refs_from(l2, k2, 1, 1, acct, out->refs, n1, e);
		if (rc != 0)
			return rc;
		out->nrefs = n1 + n2;
		out->split = n1;
	}

	json_t *op = json_object_get(root, "op");
	if (op != NULL) {
		const char *s = json_string_value(op);
		if (s == NULL)
			return embd_err_set(e, EMBD_EJSONTYPE, "\"op\" is %s; it is \"mean\" or \"sum\"",
			                    type_name(op));
		if (strcmp(s, "sum") == 0)
			out->sum = 1;
		else if (strcmp(s, "mean") != 0)
			return embd_err_set(e, EMBD_EBADBODY, "\"op\" is not \"mean\" or \"sum\"");
	}
	int rc = options(root, out, e);
	if (rc != 0)
		return rc;
	json_t *w = json_object_get(root, "weights");
	if (w != NULL) {
		rc = array_of(w, "weights", e);
		if (rc != 0)
			return rc;
		if (json_array_size(w) != out->nrefs)
			return embd_err_set(e, EMBD_EBADBODY, "%zu weights for %zu rows; give one weight per row",
			                    json_array_size(w), out->nrefs);
		if ((rc = embd_acct_alloc(acct, out->nrefs * sizeof(double), (void **)&out->weights)) != 0)
			return embd_err_set(e, rc, "the weights");
		size_t i;
		json_t *x;
		json_array_foreach(w, i, x)
		{
			if (!json_is_number(x))
				return embd_err_set(e, EMBD_EJSONTYPE, "weights[%zu] is %s; a number is needed", i,
				                    type_name(x));
			out->weights[i] = json_number_value(x); /* JSON cannot hold a NaN or an infinity */
		}
		out->nweights = out->nrefs;
	}
	return 0;
}

/* Whether [t, end) starts with word, in any case. */
static int starts_with(const char *t, const char *end, const char *word)
{
	size_t n = strlen(word);
	return (size_t)(end - t) >= n && strncasecmp(t, word, n) == 0;
}

/*
 * Where jansson refused a number that JSON cannot hold but clients' encoders
 * write (Python's json.dumps writes NaN, Infinity, -Infinity; 1e400
 * overflows a double), inside "vectors": the body holds a query vector that
 * is not finite, and the error names it. pos: jansson's error position, the
 * end of the token it refused. 0 when the refusal was anything else: then it
 * stays malformed JSON.
 */
static int nonfinite_vector(const char *body, size_t len, size_t pos, const json_error_t *jerr, embd_err *e)
{
	size_t start = pos;
	while (start > 0 && (isalnum((unsigned char)body[start - 1]) || body[start - 1] == '.' ||
	                     body[start - 1] == '+' || body[start - 1] == '-'))
		start--;
	const char *t = body + start, *end = body + len;
	t += t < end && (*t == '-' || *t == '+');
	if (strncmp(jerr->text, "real number overflow", 20) != 0 && !starts_with(t, end, "nan") &&
	    !starts_with(t, end, "inf"))
		return 0;
	/* The path to start: the root object's key, then the index in each array (nesting is at most 8). */
	struct {
		char open;
		size_t index;
	} stack[MAX_NESTING + 1];
	int depth = 0, in_string = 0, want_key = 0, key_is_vectors = 0;
	size_t key_at = 0;
	for (size_t i = 0; i < start; i++) {
		char c = body[i];
		if (in_string) {
			if (c == '\\') {
				i++;
			} else if (c == '"') {
				in_string = 0;
				if (depth == 1 && want_key)
					key_is_vectors = i - key_at == 7 && memcmp(body + key_at, "vectors", 7) == 0;
			}
		} else if (c == '"') {
			in_string = 1;
			key_at = i + 1;
		} else if ((c == '{' || c == '[') && depth <= MAX_NESTING) {
			stack[depth].open = c;
			stack[depth++].index = 0;
			want_key = c == '{';
		} else if ((c == '}' || c == ']') && depth > 0) {
			depth--;
		} else if (c == ',' && depth > 0) {
			stack[depth - 1].index++;
			want_key = stack[depth - 1].open == '{';
		} else if (c == ':') {
			want_key = 0;
		}
	}
	if (depth != 3 || stack[0].open != '{' || !key_is_vectors || stack[1].open != '[' || stack[2].open != '[')
		return 0;
	return embd_err_set(e, EMBD_EBADVECTOR, "vectors[%zu][%zu] is NaN or an infinity; query vectors must be finite",
	                    stack[1].index, stack[2].index);
}

int embd_vecreq_parse_json(const char *body, size_t len, unsigned allowed, uint64_t dim, size_t max_items,
                           embd_acct *acct, embd_vecreq *out, embd_err *e)
{
	memset(out, 0, sizeof *out);
	if (len == 0)
		return embd_err_set(e, EMBD_EJSON, "malformed JSON: the body is empty");
	if (!embd_json_nesting_within(body, len, MAX_NESTING))
		return embd_err_set(e, EMBD_EJSON, "malformed JSON: nested deeper than %d levels", MAX_NESTING);
	json_error_t jerr;
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (root == NULL && json_error_code(&jerr) == json_error_out_of_memory)
		return embd_err_set(e, -ENOMEM, "the body's JSON values");
	if (root == NULL && jerr.position >= 0 && (size_t)jerr.position <= len &&
	    nonfinite_vector(body, len, (size_t)jerr.position, &jerr, e) != 0)
		return EMBD_EBADVECTOR;
	if (root == NULL)
		return embd_err_set(e, EMBD_EJSON, "malformed JSON at byte %d: %s", jerr.position, jerr.text);
	int rc = parse_root(root, allowed, dim, max_items, acct, out, e);
	json_decref(root);
	return rc;
}

int embd_vecreq_parse_npy(const void *body, size_t len, uint64_t dim, size_t max_items, embd_acct *acct,
                          embd_vecreq *out, embd_err *e)
{
	memset(out, 0, sizeof *out);
	embd_npy h;
	embd_err why;
	int rc = embd_npy_parse(body, len, &h, &why);
	if (rc != 0)
		return embd_err_set(e, EMBD_EBADBODY, "query body: %s", why.msg);
	if (h.kind != 'f' || (h.itemsize != 4 && h.itemsize != 2))
		return embd_err_set(e, EMBD_EBADBODY, "query body: .npy dtype '%s'; queries are float32 or float16",
		                    h.descr);
	if (h.fortran_order && h.ndim == 2 && h.shape[0] > 1)
		return embd_err_set(e, EMBD_EBADBODY, "query body: Fortran order; send np.ascontiguousarray(q)");
	if (h.ndim != 1 && h.ndim != 2)
		return embd_err_set(e, EMBD_EBADBODY, "query body: %d dimensions; send (n, dim) or (dim,)", h.ndim);
	uint64_t n = h.ndim == 2 ? h.shape[0] : 1, d = h.shape[h.ndim - 1];
	if (d != dim)
		return embd_err_set(e, EMBD_EBADVECTOR, "query vectors have %llu numbers; the rows have %llu",
		                    (unsigned long long)d, (unsigned long long)dim);
	if (n == 0)
		return embd_err_set(e, EMBD_EEMPTY, "query body: no vectors");
	if ((rc = too_many(n, max_items, "vectors", e)) != 0)
		return rc;
	if (n * d > (len - h.data_offset) / h.itemsize || n * d * h.itemsize != len - h.data_offset)
		return embd_err_set(e, EMBD_EBADBODY,
		                    "query body: the header says (%llu, %llu) but %zu data bytes follow",
		                    (unsigned long long)n, (unsigned long long)d, len - h.data_offset);
	if ((rc = embd_acct_alloc(acct, (size_t)(n * d) * sizeof(float), (void **)&out->vectors)) != 0)
		return embd_err_set(e, rc, "the query vectors");
	const unsigned char *src = (const unsigned char *)body + h.data_offset;
	embd_dtype t = h.itemsize == 4 ? EMBD_F32 : EMBD_F16;
	for (uint64_t i = 0; i < n * d; i++) {
		out->vectors[i] = embd_dtype_load(t, src, (size_t)i);
		if (!isfinite(out->vectors[i]))
			return embd_err_set(
			    e, EMBD_EBADVECTOR,
			    "query vectors[%llu][%llu] is NaN or an infinity; query vectors must be finite",
			    (unsigned long long)(i / d), (unsigned long long)(i % d));
	}
	out->nvectors = (size_t)n;
	out->given = EMBD_VQ_VECTORS;
	return 0;
}

int embd_vecreq_resolve(const embd_vocab *v, uint64_t rows, const embd_ref *refs, size_t n, int64_t *ids,
                        embd_acct *acct, embd_err *e)
{
	size_t ntok = 0;
	for (size_t i = 0; i < n; i++) {
		if (refs[i].tok.p != NULL) {
			ntok++;
			continue;
		}
		if ((uint64_t)refs[i].id >= rows)
			return embd_err_set(e, EMBD_ERANGE, "id %lld is out of range [0, %llu)", (long long)refs[i].id,
			                    (unsigned long long)rows);
		ids[i] = refs[i].id;
	}
	if (ntok == 0)
		return 0;
	if (v == NULL)
		return embd_err_set(
		    e, EMBD_ENOVOCAB,
		    "the matrix has no vocabulary, so rows cannot be named by token: serve it with --vocab "
		    "FILE, or name them by id");
	embd_token *toks;
	int64_t *found;
	int rc = embd_acct_alloc(acct, ntok * sizeof *toks, (void **)&toks);
	if (rc == 0)
		rc = embd_acct_alloc(acct, ntok * sizeof *found, (void **)&found);
	if (rc != 0)
		return embd_err_set(e, rc, "the token ids");
	for (size_t i = 0, k = 0; i < n; i++)
		if (refs[i].tok.p != NULL)
			toks[k++] = refs[i].tok;
	size_t m = ntok, unknown;
	rc = embd_tokens_resolve(v, toks, &m, EMBD_OOV_ERROR, found, &unknown, e);
	if (rc == 0)
		for (size_t i = 0, k = 0; i < n; i++)
			if (refs[i].tok.p != NULL)
				ids[i] = found[k++];
	embd_acct_free(acct, found);
	embd_acct_free(acct, toks);
	return rc;
}
