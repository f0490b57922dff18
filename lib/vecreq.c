/* Request bodies of the vector operations: rows by id or token, query vectors, pairs, sets, pooling options. */
#include "vecreq.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dtype.h"
#include "jsonread.h"
#include "npy.h"
#include "vecops.h"

/* slot: where a list of rows goes, 0 (first, or only) or 1 (negative, b); -1 for keys that are not lists of rows. */
struct key {
	const char *name;
	unsigned bit;
	int slot;
};

enum {
	K_IDS,
	K_TOKENS,
	K_VECTORS,
	K_POSITIVE,
	K_NEGATIVE,
	K_PAIRS,
	K_A,
	K_B,
	K_OP,
	K_WEIGHTS,
	K_K,
	K_METRIC,
	K_SELF,
	K_PRENORM
};

static const struct key keys[] = {
    [K_IDS] = {"ids", EMBD_VQ_IDS, 0},
    [K_TOKENS] = {"tokens", EMBD_VQ_TOKENS, 0},
    [K_VECTORS] = {"vectors", EMBD_VQ_VECTORS, -1},
    [K_POSITIVE] = {"positive", EMBD_VQ_ANALOGY, 0},
    [K_NEGATIVE] = {"negative", EMBD_VQ_ANALOGY, 1},
    [K_PAIRS] = {"pairs", EMBD_VQ_PAIRS, -1},
    [K_A] = {"a", EMBD_VQ_SETS, 0},
    [K_B] = {"b", EMBD_VQ_SETS, 1},
    [K_OP] = {"op", EMBD_VQ_OP, -1},
    [K_WEIGHTS] = {"weights", EMBD_VQ_WEIGHTS, -1},
    [K_K] = {"k", EMBD_VQ_K, -1},
    [K_METRIC] = {"metric", EMBD_VQ_METRIC, -1},
    [K_SELF] = {"include_self", EMBD_VQ_INCLUDE_SELF, -1},
    [K_PRENORM] = {"pre_normalize", EMBD_VQ_PRE_NORMALIZE, -1},
};
#define NKEYS (sizeof keys / sizeof keys[0])

/* The groups of rows a body may name: exactly one of them. */
#define GROUPS (EMBD_VQ_IDS | EMBD_VQ_TOKENS | EMBD_VQ_VECTORS | EMBD_VQ_ANALOGY | EMBD_VQ_PAIRS | EMBD_VQ_SETS)

/*
 * One pass over a body, with the one JSON reader (jsonread.h). The count
 * pass (fill 0) checks every value and counts the elements of each key and
 * the bytes of the tokens; the fill pass, over the same bytes, writes them
 * into out's accounted arrays, sized from the counts. No tree is built.
 */
struct pass {
	embd_jr j;
	unsigned allowed;
	uint64_t dim;
	int fill;
	embd_vecreq *out;
	unsigned seen;       /* bits by index in keys[] */
	size_t count[NKEYS]; /* elements of each key's array (pairs: pairs) */
	size_t token_bytes;  /* count pass: arena bytes; fill pass: the bytes used */
	char *arena;         /* fill pass: the tokens, each NUL-terminated */
	char list[160];      /* "every key this body may have", for messages */
};

static void allowed_list(unsigned allowed, char *buf, size_t cap)
{
	size_t n = 0;
	buf[0] = '\0';
	for (size_t k = 0; k < NKEYS && n < cap; k++)
		if (allowed & keys[k].bit)
			n += (size_t)snprintf(buf + n, cap - n, "%s\"%s\"", n ? ", " : "", keys[k].name);
}

/* An EMBD_EJSONTYPE naming what is at the cursor, or a syntax error where no JSON value starts. */
static int wrong_type(struct pass *p, const char *fmt_what, const char *need)
{
	const char *t = embd_jr_type(&p->j);
	if (t == NULL)
		return embd_jr_syntax(&p->j, "a JSON value");
	return embd_err_set(p->j.e, EMBD_EJSONTYPE, "%s is %s; %s", fmt_what, t, need);
}

/* '[' at the cursor, else "\"key\" is ...; it must be an array". */
static int open_array(struct pass *p, const char *key)
{
	if (embd_jr_eat(&p->j, '['))
		return 0;
	char what[80];
	snprintf(what, sizeof what, "\"%s\"", key);
	return wrong_type(p, what, "it must be an array");
}

/* After an element: 1 for ',', 0 for ']', or a syntax error (negative). */
static int next(struct pass *p)
{
	if (embd_jr_eat(&p->j, ','))
		return 1;
	if (embd_jr_eat(&p->j, ']'))
		return 0;
	return embd_jr_syntax(&p->j, "',' or ']'");
}

/* One element naming a row, key[i]: an integer id or a token string (into the arena in the fill pass). */
static int ref(struct pass *p, const char *key, size_t i, int ids_ok, int tokens_ok, embd_ref *out)
{
	embd_jr *j = &p->j;
	embd_jr_ws(j);
	char c = embd_jr_peek(j);
	const char *need = ids_ok && tokens_ok ? "rows are named by id (an integer) or token (a string)"
	                   : ids_ok            ? "rows are named by id (an integer)"
	                                       : "rows are named by token (a string)";
	char what[80];
	snprintf(what, sizeof what, "%s[%zu]", key, i);
	if (ids_ok && (c == '-' || (c >= '0' && c <= '9'))) {
		int64_t id;
		int rc = embd_jr_id(j, key, i, &id);
		if (rc == 0 && out != NULL)
			*out = (embd_ref){id, {NULL, 0}};
		return rc;
	}
	if (tokens_ok && c == '"') {
		char *dst = p->fill ? p->arena + p->token_bytes : NULL;
		size_t len = 0;
		const char *why = NULL;
		int rc = embd_jr_token(j, dst, &len, &why);
		if (rc == EMBD_EBADTOKEN)
			return embd_err_set(j->e, rc, "%s %s", what, why);
		if (rc != 0)
			return rc;
		if (out != NULL)
			*out = (embd_ref){-1, {dst, len}};
		p->token_bytes += len + 1;
		return 0;
	}
	return wrong_type(p, what, need);
}

/* An array of rows for key k into refs[base ...] (fill pass). */
static int refs(struct pass *p, int k, int ids_ok, int tokens_ok, size_t base)
{
	const char *key = keys[k].name;
	int rc = open_array(p, key);
	if (rc != 0)
		return rc;
	size_t n = 0;
	if (!embd_jr_eat(&p->j, ']'))
		do {
			embd_ref *out = p->fill ? &p->out->refs[base + n] : NULL;
			if (p->fill && n >= p->count[k])
				return embd_err_set(p->j.e, EMBD_EINTERNAL, "a list grew between passes");
			if ((rc = ref(p, key, n, ids_ok, tokens_ok, out)) != 0)
				return rc;
			n++;
		} while ((rc = next(p)) > 0);
	if (rc < 0)
		return rc;
	/* positive and negative may each be empty (not both: checked after the pass); no other list may. */
	if (n == 0 && k != K_POSITIVE && k != K_NEGATIVE)
		return embd_err_set(p->j.e, EMBD_EEMPTY, "\"%s\" is an empty list", key);
	p->count[k] = n;
	return 0;
}

/* A number at the cursor, named what, as a double: NaN and the infinities come back for the caller to judge. */
static int number(struct pass *p, const char *what, double *out)
{
	embd_jr_ws(&p->j);
	char c = embd_jr_peek(&p->j);
	if (c == '-' || (c >= '0' && c <= '9') || c == 'N' || c == 'I')
		return embd_jr_number(&p->j, out);
	return wrong_type(p, what, "a number is needed");
}

/* "vectors": [[dim numbers], ...] as float32 (np.float32(float(text))), finite. */
static int vectors(struct pass *p)
{
	int rc = open_array(p, "vectors");
	if (rc != 0)
		return rc;
	size_t n = 0;
	if (!embd_jr_eat(&p->j, ']'))
		do {
			char what[64];
			snprintf(what, sizeof what, "vectors[%zu]", n);
			embd_jr_ws(&p->j);
			if (!embd_jr_eat(&p->j, '['))
				return wrong_type(p, what, "a vector is an array of numbers");
			uint64_t m = 0;
			if (!embd_jr_eat(&p->j, ']'))
				do {
					snprintf(what, sizeof what, "vectors[%zu][%llu]", n, (unsigned long long)m);
					double d = 0;
					if ((rc = number(p, what, &d)) != 0)
						return rc;
					float f = (float)d;
					if (!isfinite(d))
						return embd_err_set(p->j.e, EMBD_EBADVECTOR,
						                    "%s is NaN, an infinity or past a double's range; "
						                    "query vectors must be "
						                    "finite",
						                    what);
					if (!isfinite(f))
						return embd_err_set(p->j.e, EMBD_EBADVECTOR,
						                    "%s is %g, past float32's range", what, d);
					if (p->fill && m < p->dim)
						p->out->vectors[n * p->dim + m] = f;
					m++;
				} while ((rc = next(p)) > 0);
			if (rc < 0)
				return rc;
			if (m != p->dim)
				return embd_err_set(p->j.e, EMBD_EBADVECTOR,
				                    "vectors[%zu] has %llu numbers; the rows have %llu", n,
				                    (unsigned long long)m, (unsigned long long)p->dim);
			n++;
		} while ((rc = next(p)) > 0);
	if (rc < 0)
		return rc;
	if (n == 0)
		return embd_err_set(p->j.e, EMBD_EEMPTY, "\"vectors\" is an empty list");
	p->count[K_VECTORS] = n;
	return 0;
}

static int not_two(struct pass *p, size_t n)
{
	return embd_err_set(p->j.e, EMBD_EJSONTYPE, "pairs[%zu] is not two rows; a pair is [row, row]", n);
}

/* "pairs": [[row, row], ...]. */
static int pairs(struct pass *p)
{
	int rc = open_array(p, "pairs");
	if (rc != 0)
		return rc;
	size_t n = 0;
	if (!embd_jr_eat(&p->j, ']'))
		do {
			char what[64];
			snprintf(what, sizeof what, "pairs[%zu]", n);
			embd_jr_ws(&p->j);
			if (!embd_jr_eat(&p->j, '['))
				return wrong_type(p, what, "a pair is [row, row]");
			if (p->fill && n >= p->count[K_PAIRS])
				return embd_err_set(p->j.e, EMBD_EINTERNAL, "a list grew between passes");
			if (embd_jr_eat(&p->j, ']'))
				return not_two(p, n);
			if ((rc = ref(p, "pairs", n, 1, 1, p->fill ? &p->out->refs[2 * n] : NULL)) != 0)
				return rc;
			if ((rc = next(p)) <= 0)
				return rc < 0 ? rc : not_two(p, n);
			if ((rc = ref(p, "pairs", n, 1, 1, p->fill ? &p->out->refs[2 * n + 1] : NULL)) != 0)
				return rc;
			if ((rc = next(p)) != 0)
				return rc < 0 ? rc : not_two(p, n);
			n++;
		} while ((rc = next(p)) > 0);
	if (rc < 0)
		return rc;
	if (n == 0)
		return embd_err_set(p->j.e, EMBD_EEMPTY, "\"pairs\" is an empty list");
	p->count[K_PAIRS] = n;
	return 0;
}

/* "weights": [1, 0.5], finite numbers, one per row (checked after the pass). */
static int weights(struct pass *p)
{
	int rc = open_array(p, "weights");
	if (rc != 0)
		return rc;
	size_t n = 0;
	if (!embd_jr_eat(&p->j, ']'))
		do {
			char what[64];
			snprintf(what, sizeof what, "weights[%zu]", n);
			double d = 0;
			if ((rc = number(p, what, &d)) != 0)
				return rc;
			if (!isfinite(d))
				return embd_err_set(p->j.e, EMBD_EBADBODY,
				                    "%s is NaN or an infinity; weights must be finite", what);
			if (p->fill && n < p->out->nweights)
				p->out->weights[n] = d;
			n++;
		} while ((rc = next(p)) > 0);
	if (rc < 0)
		return rc;
	if (n == 0)
		return embd_err_set(p->j.e, EMBD_EEMPTY, "\"weights\" is an empty list");
	p->count[K_WEIGHTS] = n;
	return 0;
}

/* A short string value (op, metric) into buf; *len its full length. */
static int word(struct pass *p, const char *key, const char *need, char *buf, size_t cap, size_t *len)
{
	embd_jr_ws(&p->j);
	if (embd_jr_peek(&p->j) == '"')
		return embd_jr_key(&p->j, buf, cap, len);
	char what[64];
	snprintf(what, sizeof what, "\"%s\"", key);
	return wrong_type(p, what, need);
}

/* An integer value (k, include_self): EMBD_EJSONTYPE for anything else. */
static int integer(struct pass *p, const char *key, const char *need, int64_t *v, int *fits)
{
	char what[64];
	snprintf(what, sizeof what, "\"%s\"", key);
	embd_jr_ws(&p->j);
	const char *t = embd_jr_type(&p->j);
	if (t == NULL || strcmp(t, "an integer") != 0)
		return wrong_type(p, what, need);
	return embd_jr_int(&p->j, what, v, fits);
}

/* "op", "k", "metric" and "include_self": options, as the query string has them. */
static int option(struct pass *p, int k)
{
	char buf[16] = "";
	size_t len = 0;
	int64_t v = 0;
	int fits = 0, rc;
	embd_vecreq *out = p->out;
	switch (k) {
	case K_OP:
		if ((rc = word(p, "op", "it is \"mean\" or \"sum\"", buf, sizeof buf, &len)) != 0)
			return rc;
		if (len != strlen(buf) || (strcmp(buf, "sum") != 0 && strcmp(buf, "mean") != 0))
			return embd_err_set(p->j.e, EMBD_EBADBODY, "\"op\" is not \"mean\" or \"sum\"");
		out->sum = strcmp(buf, "sum") == 0;
		return 0;
	case K_METRIC: {
		embd_metric m;
		if ((rc = word(p, "metric", "it is \"cosine\" or \"dot\"", buf, sizeof buf, &len)) != 0)
			return rc;
		if (len != strlen(buf) || embd_metric_parse(buf, &m) != 0)
			return embd_err_set(p->j.e, EMBD_EBADPARAM, "\"metric\" '%s%s' is not \"cosine\" or \"dot\"",
			                    buf, len != strlen(buf) ? "..." : "");
		out->metric = (int)m;
		return 0;
	}
	case K_K:
		if ((rc = integer(p, "k", "it is a non-negative integer", &v, &fits)) != 0)
			return rc;
		if (!fits)
			return embd_err_set(p->j.e, EMBD_EBADPARAM,
			                    "\"k\" does not fit in 64 bits; it is a non-negative integer");
		if (v < 0)
			return embd_err_set(p->j.e, EMBD_EBADPARAM, "\"k\" is %lld; it is a non-negative integer",
			                    (long long)v);
		out->k = (uint64_t)v;
		return 0;
	default: { /* K_SELF, K_PRENORM: booleans, or 0 and 1 as the query string's include_self=0|1 */
		const char *name = keys[k].name;
		int *flag = k == K_SELF ? &out->include_self : &out->pre_normalize;
		embd_jr_ws(&p->j);
		if (embd_jr_peek(&p->j) == 't' || embd_jr_peek(&p->j) == 'f')
			return embd_jr_bool(&p->j, flag);
		if ((rc = integer(p, name, "it is true or false (or 1 or 0)", &v, &fits)) != 0)
			return rc;
		if (!fits)
			return embd_err_set(p->j.e, EMBD_EBADPARAM,
			                    "\"%s\" is past 2^63; it is true or false (or 1 or 0)", name);
		if (v != 0 && v != 1)
			return embd_err_set(p->j.e, EMBD_EBADPARAM, "\"%s\" is %lld; it is true or false (or 1 or 0)",
			                    name, (long long)v);
		*flag = (int)v;
		return 0;
	}
	}
}

/* The value of key k. */
static int value(struct pass *p, int k)
{
	embd_vecreq *out = p->out;
	size_t base = 0;
	switch (k) {
	case K_IDS:
	case K_TOKENS:
	case K_POSITIVE:
	case K_A:
		return refs(p, k, k != K_TOKENS, k != K_IDS, 0);
	case K_NEGATIVE:
	case K_B:
		base = p->fill ? out->split : 0;
		return refs(p, k, 1, 1, base);
	case K_VECTORS:
		return vectors(p);
	case K_PAIRS:
		return pairs(p);
	case K_WEIGHTS:
		return weights(p);
	default:
		return option(p, k);
	}
}

/* One walk over the object: its keys in any order, each once. */
static int walk(struct pass *p)
{
	embd_jr *j = &p->j;
	embd_jr_ws(j);
	if (j->i >= j->len)
		return embd_err_set(j->e, EMBD_EJSON, "malformed JSON: the body is empty");
	if (embd_jr_peek(j) != '{') {
		const char *t = embd_jr_type(j);
		return t != NULL
		           ? embd_err_set(j->e, EMBD_EJSONTYPE, "the body is %s; send an object with %s", t, p->list)
		           : embd_jr_syntax(j, "'{'");
	}
	j->i++;
	if (!embd_jr_eat(j, '}'))
		for (;;) {
			embd_jr_ws(j);
			if (embd_jr_peek(j) != '"')
				return embd_jr_syntax(j, "a key in quotes");
			char key[64];
			size_t klen;
			int rc = embd_jr_key(j, key, sizeof key, &klen);
			if (rc != 0)
				return rc;
			if (!embd_jr_eat(j, ':'))
				return embd_jr_syntax(j, "':'");
			embd_jr_ws(j);
			if (j->i >= j->len)
				return embd_jr_syntax(j, "a value");
			int k = -1;
			for (size_t x = 0; x < NKEYS; x++)
				if (klen == strlen(keys[x].name) && strcmp(key, keys[x].name) == 0)
					k = (int)x;
			if (k < 0 || (keys[k].bit & p->allowed) == 0)
				return embd_err_set(j->e, EMBD_EBADBODY, "unknown key \"%.60s\"; this body takes %s",
				                    key, p->list);
			if (p->seen & 1u << k)
				return embd_err_set(j->e, EMBD_EBADBODY, "\"%s\" appears twice", keys[k].name);
			p->seen |= 1u << k;
			p->out->given |= keys[k].bit;
			unsigned groups = p->out->given & GROUPS;
			if (groups & (groups - 1))
				return embd_err_set(j->e, EMBD_EBADBODY,
				                    "the body names rows in two ways; give one of %s", p->list);
			if ((rc = value(p, k)) != 0)
				return rc;
			if (embd_jr_eat(j, ','))
				continue;
			if (embd_jr_eat(j, '}'))
				break;
			return embd_jr_syntax(j, "',' or '}'");
		}
	embd_jr_ws(j);
	if (j->i != j->len)
		return embd_err_set(j->e, EMBD_EJSON, "malformed JSON at byte %zu: data after the object", j->i);
	return 0;
}

static int too_many(size_t n, size_t max_items, const char *what, embd_err *e)
{
	if (n <= max_items)
		return 0;
	return embd_err_set(e, EMBD_ETOOMANYIDS, "the body names %zu %s; limits.max_ids is %zu", n, what, max_items);
}

int embd_vecreq_parse_json(const char *body, size_t len, unsigned allowed, uint64_t dim, size_t max_items,
                           embd_acct *acct, embd_vecreq *out, embd_err *e)
{
	memset(out, 0, sizeof *out);
	struct pass p = {.j = {body, len, 0, e}, .allowed = allowed, .dim = dim, .out = out};
	allowed_list(allowed, p.list, sizeof p.list);
	int rc = walk(&p);
	if (rc != 0)
		return rc;
	unsigned groups = out->given & GROUPS;
	if (groups == 0)
		return embd_err_set(e, EMBD_EBADBODY, "the body names no rows; it takes %s", p.list);
	/* The rows: one list, two (positive/negative, a/b: gensim's most_similar and n_similarity), or pairs. */
	size_t n1 = 0, n2 = 0;
	const char *what = "rows";
	if (groups == EMBD_VQ_IDS || groups == EMBD_VQ_TOKENS) {
		n1 = p.count[groups == EMBD_VQ_IDS ? K_IDS : K_TOKENS];
		what = groups == EMBD_VQ_IDS ? "ids" : "tokens";
	} else if (groups == EMBD_VQ_ANALOGY || groups == EMBD_VQ_SETS) {
		int sets = groups == EMBD_VQ_SETS;
		int k1 = sets ? K_A : K_POSITIVE, k2 = sets ? K_B : K_NEGATIVE;
		if (sets && (p.seen & (1u << K_A | 1u << K_B)) != (1u << K_A | 1u << K_B))
			return embd_err_set(e, EMBD_EBADBODY, "\"%s\" is missing", p.seen & 1u << K_A ? "b" : "a");
		n1 = p.count[k1];
		n2 = p.count[k2];
		if (n1 + n2 == 0)
			return embd_err_set(e, EMBD_EEMPTY, "\"positive\" and \"negative\" name no rows");
	} else if (groups == EMBD_VQ_PAIRS) {
		n1 = 2 * p.count[K_PAIRS];
	}
	size_t nvec = p.count[K_VECTORS];
	if ((rc = too_many(groups == EMBD_VQ_VECTORS ? nvec : n1 + n2, max_items,
	                   groups == EMBD_VQ_VECTORS ? "vectors" : what, e)) != 0)
		return rc;
	size_t nrefs = n1 + n2;
	if ((out->given & EMBD_VQ_WEIGHTS) && p.count[K_WEIGHTS] != nrefs)
		return embd_err_set(e, EMBD_EBADBODY, "%zu weights for %zu rows; give one weight per row",
		                    p.count[K_WEIGHTS], nrefs);
	/* Memory for what the count found, from the accountant; then the same walk fills it. */
	if (nvec > 0 && dim > SIZE_MAX / sizeof(float) / nvec)
		return embd_err_set(e, EMBD_ETOOBIG, "%zu vectors of %llu floats", nvec, (unsigned long long)dim);
	if (nvec > 0 && (rc = embd_acct_alloc(acct, nvec * (size_t)dim * sizeof(float), (void **)&out->vectors)) != 0)
		return embd_err_set(e, rc, "the query vectors");
	if (nrefs > 0 && (rc = embd_acct_alloc(acct, nrefs * sizeof(embd_ref), (void **)&out->refs)) != 0)
		return embd_err_set(e, rc, "the rows named");
	if (p.token_bytes > 0 && (rc = embd_acct_alloc(acct, p.token_bytes, (void **)&p.arena)) != 0)
		return embd_err_set(e, rc, "the parsed tokens");
	if ((out->given & EMBD_VQ_WEIGHTS) &&
	    (rc = embd_acct_alloc(acct, nrefs * sizeof(double), (void **)&out->weights)) != 0)
		return embd_err_set(e, rc, "the weights");
	out->nrefs = nrefs;
	out->split = groups == EMBD_VQ_ANALOGY || groups == EMBD_VQ_SETS ? n1 : 0;
	out->nvectors = nvec;
	out->nweights = out->given & EMBD_VQ_WEIGHTS ? nrefs : 0;
	out->given = 0; /* given again by the fill walk */
	struct pass fill = {
	    .j = {body, len, 0, e}, .allowed = allowed, .dim = dim, .fill = 1, .out = out, .arena = p.arena};
	memcpy(fill.count, p.count, sizeof fill.count);
	memcpy(fill.list, p.list, sizeof fill.list);
	if ((rc = walk(&fill)) != 0)
		return rc == EMBD_EINTERNAL ? rc
		                            : embd_err_set(e, EMBD_EINTERNAL, "the body read twice read differently");
	return 0;
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

int embd_vecreq_resolve(const embd_vocab *v, uint64_t rows, const embd_ref *refs, size_t n, embd_oov oov, int64_t *ids,
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
	/* ZERO keeps each unknown token's place (EMBD_VOCAB_NONE), where SKIP would close the gaps. */
	rc = embd_tokens_resolve(v, toks, &m, oov == EMBD_OOV_ERROR ? EMBD_OOV_ERROR : EMBD_OOV_ZERO, found, &unknown,
	                         e);
	if (rc == 0)
		for (size_t i = 0, k = 0; i < n; i++)
			if (refs[i].tok.p != NULL)
				ids[i] = found[k++];
	embd_acct_free(acct, found);
	embd_acct_free(acct, toks);
	return rc;
}
