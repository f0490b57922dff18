/* The NumPy .npy format: parsing untrusted headers and writing our own. */
#include "npy.h"

#include <stdio.h>
#include <string.h>

static const char magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

struct cursor {
	const char *p;
	const char *end;
};

static void skip_ws(struct cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

static int eat(struct cursor *c, char ch)
{
	skip_ws(c);
	if (c->p < c->end && *c->p == ch) {
		c->p++;
		return 1;
	}
	return 0;
}

/* A Python string literal in ' or " quotes, without escapes (NumPy never writes any). */
static int parse_str(struct cursor *c, char *dst, size_t cap)
{
	skip_ws(c);
	if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
		return -1;
	char q = *c->p++;
	size_t n = 0;
	while (c->p < c->end && *c->p != q) {
		if (*c->p == '\\' || n + 1 >= cap)
			return -1;
		dst[n++] = *c->p++;
	}
	if (c->p >= c->end)
		return -1;
	c->p++;
	dst[n] = '\0';
	return 0;
}

static int parse_u64(struct cursor *c, uint64_t *out)
{
	skip_ws(c);
	uint64_t v = 0;
	const char *start = c->p;
	while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
		unsigned d = (unsigned)(*c->p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
		c->p++;
	}
	if (c->p == start)
		return -1;
	/* Python 2 era files may write longs as 10L. */
	if (c->p < c->end && *c->p == 'L')
		c->p++;
	*out = v;
	return 0;
}

static int parse_shape(struct cursor *c, embd_npy *h, embd_err *e)
{
	if (!eat(c, '('))
		return embd_err_set(e, EMBD_EFORMAT, ".npy header: 'shape' is not a tuple");
	h->ndim = 0;
	for (;;) {
		if (eat(c, ')'))
			return 0;
		if (h->ndim == EMBD_NPY_MAX_NDIM)
			return embd_err_set(e, EMBD_EFORMAT, ".npy header: more than %d dimensions", EMBD_NPY_MAX_NDIM);
		if (parse_u64(c, &h->shape[h->ndim]) != 0)
			return embd_err_set(e, EMBD_EFORMAT,
			                    ".npy header: 'shape' holds a non-integer or an overflowing integer");
		h->ndim++;
		if (eat(c, ')'))
			return 0;
		if (!eat(c, ','))
			return embd_err_set(e, EMBD_EFORMAT, ".npy header: malformed 'shape' tuple");
	}
}

static int parse_descr(const char *d, embd_npy *h, embd_err *e)
{
	snprintf(h->descr, sizeof h->descr, "%s", d);
	char order = d[0];
	if (order == '>')
		return embd_err_set(e, EMBD_EDTYPE, ".npy dtype '%s' is big-endian; only little-endian is supported",
		                    d);
	if (order != '<' && order != '|' && order != '=')
		return embd_err_set(e, EMBD_EDTYPE, ".npy dtype '%s' is not a plain numeric dtype", d);
	char kind = d[1];
	if (kind == '\0' || strchr("fiub", kind) == NULL)
		return embd_err_set(e, EMBD_EDTYPE, ".npy dtype '%s' is not a numeric dtype", d);
	unsigned size = 0;
	const char *p = d + 2;
	if (*p == '\0')
		return embd_err_set(e, EMBD_EDTYPE, ".npy dtype '%s' has no item size", d);
	for (; *p; p++) {
		if (*p < '0' || *p > '9' || size > 1000)
			return embd_err_set(e, EMBD_EDTYPE, ".npy dtype '%s' has a bad item size", d);
		size = size * 10 + (unsigned)(*p - '0');
	}
	if (size == 0 || size > 16)
		return embd_err_set(e, EMBD_EDTYPE, ".npy dtype '%s' has a bad item size", d);
	h->kind = kind;
	h->itemsize = size;
	return 0;
}

static int parse_dict(struct cursor *c, embd_npy *h, embd_err *e)
{
	int seen_descr = 0, seen_order = 0, seen_shape = 0;
	if (!eat(c, '{'))
		return embd_err_set(e, EMBD_EFORMAT, ".npy header is not a dict");
	for (;;) {
		if (eat(c, '}'))
			break;
		char key[32], val[32];
		if (parse_str(c, key, sizeof key) != 0 || !eat(c, ':'))
			return embd_err_set(e, EMBD_EFORMAT, ".npy header: malformed key");
		int rc;
		if (strcmp(key, "descr") == 0) {
			if (parse_str(c, val, sizeof val) != 0)
				return embd_err_set(e, EMBD_EDTYPE,
				                    ".npy header: 'descr' is not a simple dtype string (structured "
				                    "dtypes are not supported)");
			rc = parse_descr(val, h, e);
			if (rc != 0)
				return rc;
			seen_descr = 1;
		} else if (strcmp(key, "fortran_order") == 0) {
			skip_ws(c);
			if ((size_t)(c->end - c->p) >= 4 && memcmp(c->p, "True", 4) == 0) {
				h->fortran_order = 1;
				c->p += 4;
			} else if ((size_t)(c->end - c->p) >= 5 && memcmp(c->p, "False", 5) == 0) {
				h->fortran_order = 0;
				c->p += 5;
			} else {
				return embd_err_set(e, EMBD_EFORMAT,
				                    ".npy header: 'fortran_order' is not True or False");
			}
			seen_order = 1;
		} else if (strcmp(key, "shape") == 0) {
			rc = parse_shape(c, h, e);
			if (rc != 0)
				return rc;
			seen_shape = 1;
		} else {
			return embd_err_set(e, EMBD_EFORMAT, ".npy header: unexpected key '%s'", key);
		}
		if (eat(c, '}'))
			break;
		if (!eat(c, ','))
			return embd_err_set(e, EMBD_EFORMAT, ".npy header: expected ',' or '}'");
	}
	if (!seen_descr || !seen_order || !seen_shape)
		return embd_err_set(e, EMBD_EFORMAT, ".npy header lacks %s",
		                    !seen_descr   ? "'descr'"
		                    : !seen_order ? "'fortran_order'"
		                                  : "'shape'");
	return 0;
}

int embd_npy_parse(const void *buf, size_t len, embd_npy *out, embd_err *e)
{
	const unsigned char *b = buf;
	memset(out, 0, sizeof *out);
	if (len < 10 || memcmp(b, magic, sizeof magic) != 0)
		return len < 10 && (len == 0 || memcmp(b, magic, len < 6 ? len : 6) == 0)
		           ? embd_err_set(e, EMBD_ETRUNC,
		                          ".npy file is truncated: %zu bytes, shorter than the magic and header length",
		                          len)
		           : embd_err_set(e, EMBD_EFORMAT, "not a .npy file (no \\x93NUMPY magic)");
	out->version = b[6];
	size_t hlen, start;
	if (out->version == 1) {
		hlen = (size_t)b[8] | (size_t)b[9] << 8;
		start = 10;
	} else if (out->version == 2 || out->version == 3) {
		if (len < 12)
			return embd_err_set(e, EMBD_ETRUNC, ".npy file is truncated inside its header length");
		hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
		start = 12;
	} else {
		return embd_err_set(e, EMBD_EFORMAT, ".npy version %d.%d is not supported (1.0 to 3.0 are)", b[6],
		                    b[7]);
	}
	if (hlen > len - start)
		return embd_err_set(e, EMBD_ETRUNC, ".npy header announces %zu bytes but only %zu follow", hlen,
		                    len - start);
	struct cursor c = {(const char *)b + start, (const char *)b + start + hlen};
	int rc = parse_dict(&c, out, e);
	if (rc != 0)
		return rc;
	out->data_offset = start + hlen;
	return 0;
}

int embd_npy_count(const embd_npy *h, uint64_t *count)
{
	uint64_t n = 1;
	for (int i = 0; i < h->ndim; i++) {
		if (h->shape[i] != 0 && n > UINT64_MAX / h->shape[i])
			return EMBD_EOVERFLOW;
		n *= h->shape[i];
	}
	*count = n;
	return 0;
}

static int format_dict(char *dst, size_t cap, const char *descr, const uint64_t *shape, int ndim)
{
	char tuple[EMBD_NPY_MAX_NDIM * 24 + 4];
	size_t t = 0;
	tuple[t++] = '(';
	for (int i = 0; i < ndim; i++)
		t += (size_t)snprintf(tuple + t, sizeof tuple - t, "%s%llu", i ? ", " : "",
		                      (unsigned long long)shape[i]);
	if (ndim == 1)
		tuple[t++] = ',';
	tuple[t++] = ')';
	tuple[t] = '\0';
	return snprintf(dst, cap, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, tuple);
}

size_t embd_npy_header_size(const char *descr, const uint64_t *shape, int ndim)
{
	char dict[512];
	int n = format_dict(dict, sizeof dict, descr, shape, ndim);
	/* magic(6) + version(2) + length(2) + dict + '\n', rounded up to 64. */
	return ((size_t)10 + (size_t)n + 1 + 63) / 64 * 64;
}

size_t embd_npy_header_write(char *dst, size_t cap, const char *descr, const uint64_t *shape, int ndim)
{
	if (ndim < 0 || ndim > EMBD_NPY_MAX_NDIM)
		return 0;
	size_t total = embd_npy_header_size(descr, shape, ndim);
	if (cap < total || total - 10 > 0xffff)
		return 0;
	memcpy(dst, magic, sizeof magic);
	dst[6] = 1;
	dst[7] = 0;
	size_t hlen = total - 10;
	dst[8] = (char)(hlen & 0xff);
	dst[9] = (char)(hlen >> 8);
	int n = format_dict(dst + 10, cap - 10, descr, shape, ndim);
	memset(dst + 10 + n, ' ', total - 10 - (size_t)n - 1);
	dst[total - 1] = '\n';
	return total;
}
