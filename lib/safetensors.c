/* The safetensors format: parsing an untrusted header against the size of its file, and picking a table. */
#include "safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "query.h"

/*
 * What is enforced, following the published format and its reference
 * implementation (huggingface/safetensors, Metadata::validate):
 * - 8-byte little-endian N, 8 + N <= file size, N <= 100 MB, the header
 *   starts with '{' and is one JSON object (trailing whitespace allowed,
 *   nothing else), valid UTF-8, no duplicate keys, nested at most
 *   EMBD_SAFETENSORS_MAX_DEPTH deep (counted on the bytes before parsing, so
 *   the JSON parser never recurses on hostile nesting);
 * - '__metadata__', if present, is null or an object of string values; it is
 *   otherwise ignored;
 * - every other member is a tensor {"dtype": string, "shape": [n, ...],
 *   "data_offsets": [begin, end]} with non-negative integers (no fractions,
 *   no exponents, nothing over 2^63 - 1); other members of a tensor are
 *   ignored, as the reference does;
 * - begin <= end <= the data section's length; for the dtypes the format
 *   defines, end - begin == prod(shape) * bits / 8, computed without
 *   overflow (a sub-byte total is refused); unknown dtypes are allowed in
 *   the file (newer writers add some) and only sized by their offsets;
 * - sorted by (begin, end), the tensors tile the data section exactly: the
 *   first starts at 0, each starts where the previous ends (no overlap, no
 *   hole), and the last ends at the end of the file (no trailing bytes), as
 *   the spec requires ("the byte buffer needs to be entirely indexed, and
 *   cannot contain holes").
 */

/* Bits per element of every dtype the format defines; 0 for a name it does not. */
static unsigned dtype_bits(const char *name)
{
	static const struct {
		const char *name;
		unsigned bits;
	} table[] = {
	    {"BOOL", 8}, {"U8", 8},   {"I8", 8},    {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"I16", 16},
	    {"U16", 16}, {"F16", 16}, {"BF16", 16}, {"I32", 32},    {"U32", 32},    {"F32", 32},    {"F64", 64},
	    {"I64", 64}, {"U64", 64}, {"C64", 64},  {"F4", 4},      {"F6_E2M3", 6}, {"F6_E3M2", 6},
	};
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
		if (strcmp(name, table[i].name) == 0)
			return table[i].bits;
	return 0;
}

int embd_safetensors_dtype(const char *name, embd_dtype *out)
{
	if (strcmp(name, "F32") == 0)
		*out = EMBD_F32;
	else if (strcmp(name, "F16") == 0)
		*out = EMBD_F16;
	else if (strcmp(name, "BF16") == 0)
		*out = EMBD_BF16;
	else
		return EMBD_EDTYPE;
	return 0;
}

/*
 * A name from the file, fit for a one-line message: at most cap - 4 bytes
 * of it, control characters as '?', cut on a UTF-8 boundary and marked with
 * "..." when cut. jansson has already checked the UTF-8.
 */
static const char *printable(char *dst, size_t cap, const char *s)
{
	size_t n = 0, keep = cap - 4;
	for (; n < keep && s[n] != '\0'; n++)
		dst[n] = ((unsigned char)s[n] < 0x20 || s[n] == 0x7f) ? '?' : s[n];
	if (s[n] != '\0') {
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) /* s[n] continues a character: drop it whole */
			n--;
		memcpy(dst + n, "...", 3);
		n += 3;
	}
	dst[n] = '\0';
	return dst;
}

#define NAME_CAP 68

size_t embd_safetensors_shape_text(char *dst, size_t cap, const embd_safetensors_tensor *t)
{
	if (cap < 8) {
		if (cap > 0)
			dst[0] = '\0';
		return 0;
	}
	size_t n = 1;
	dst[0] = '(';
	for (size_t i = 0; i < t->ndim; i++) {
		char num[24];
		int k = snprintf(num, sizeof num, i ? ", %llu" : "%llu", (unsigned long long)t->shape[i]);
		if (n + (size_t)k + 3 > cap - 4) { /* leave room for "...)" */
			memcpy(dst + n, "...)", 5);
			return n + 4;
		}
		memcpy(dst + n, num, (size_t)k);
		n += (size_t)k;
	}
	if (t->ndim == 1)
		dst[n++] = ',';
	dst[n++] = ')';
	dst[n] = '\0';
	return n;
}

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* A non-negative JSON integer; what of tensor name says where, for the message. */
static int json_u64(const json_t *v, const char *what, const char *name, uint64_t *out, embd_err *e)
{
	char nm[NAME_CAP];
	if (!json_is_integer(v))
		return embd_err_set(e, EMBD_EFORMAT, "safetensors header: tensor '%s': %s is not an integer",
		                    printable(nm, sizeof nm, name), what);
	json_int_t i = json_integer_value(v);
	if (i < 0)
		return embd_err_set(e, EMBD_EFORMAT, "safetensors header: tensor '%s': %s is negative (%lld)",
		                    printable(nm, sizeof nm, name), what, (long long)i);
	*out = (uint64_t)i;
	return 0;
}

static int check_metadata(const json_t *meta, embd_err *e)
{
	if (json_is_null(meta))
		return 0;
	if (!json_is_object(meta))
		return embd_err_set(e, EMBD_EFORMAT, "safetensors header: '__metadata__' is not an object");
	const char *key;
	const json_t *v;
	json_object_foreach((json_t *)meta, key, v)
	{
		char nm[NAME_CAP];
		if (!json_is_string(v))
			return embd_err_set(e, EMBD_EFORMAT,
			                    "safetensors header: '__metadata__' value of '%s' is not a string",
			                    printable(nm, sizeof nm, key));
	}
	return 0;
}

/* Fill t from the tensor member name: v, with shape room at dims (its dim count was counted before). */
static int parse_tensor(const char *name, const json_t *v, uint64_t data_len, embd_safetensors_tensor *t,
                        uint64_t *dims, embd_err *e)
{
	char nm[NAME_CAP], dt[NAME_CAP];
	printable(nm, sizeof nm, name);
	if (!json_is_object(v))
		return embd_err_set(e, EMBD_EFORMAT, "safetensors header: tensor '%s' is not an object", nm);
	const json_t *dtype = json_object_get(v, "dtype");
	const json_t *shape = json_object_get(v, "shape");
	const json_t *offsets = json_object_get(v, "data_offsets");
	if (!json_is_string(dtype))
		return embd_err_set(e, EMBD_EFORMAT, "safetensors header: tensor '%s' has no string 'dtype'", nm);
	if (!json_is_array(shape))
		return embd_err_set(e, EMBD_EFORMAT, "safetensors header: tensor '%s' has no 'shape' array", nm);
	if (!json_is_array(offsets) || json_array_size(offsets) != 2)
		return embd_err_set(e, EMBD_EFORMAT,
		                    "safetensors header: tensor '%s' has no 'data_offsets' array [begin, end]", nm);
	t->name = name;
	t->dtype = json_string_value(dtype);
	t->ndim = json_array_size(shape);
	t->shape = dims;
	int rc;
	if ((rc = json_u64(json_array_get(offsets, 0), "data_offsets begin", name, &t->begin, e)) != 0 ||
	    (rc = json_u64(json_array_get(offsets, 1), "data_offsets end", name, &t->end, e)) != 0)
		return rc;
	uint64_t count = 1;
	int overflow = 0;
	for (size_t i = 0; i < t->ndim; i++) {
		if ((rc = json_u64(json_array_get(shape, i), "a shape dimension", name, &dims[i], e)) != 0)
			return rc;
		if (dims[i] != 0 && count > UINT64_MAX / dims[i])
			overflow = 1;
		count *= dims[i];
	}
	char sh[96];
	embd_safetensors_shape_text(sh, sizeof sh, t);
	if (overflow)
		return embd_err_set(e, EMBD_EOVERFLOW,
		                    "safetensors header: tensor '%s': shape %s has more elements than 64 bits count",
		                    nm, sh);
	if (t->end < t->begin)
		return embd_err_set(e, EMBD_EFORMAT,
		                    "safetensors header: tensor '%s': data_offsets [%llu, %llu] end before they begin",
		                    nm, (unsigned long long)t->begin, (unsigned long long)t->end);
	if (t->end > data_len)
		return embd_err_set(e, EMBD_ETRUNC,
		                    "safetensors header: tensor '%s': data_offsets [%llu, %llu] go past the end of the "
		                    "%llu-byte data section",
		                    nm, (unsigned long long)t->begin, (unsigned long long)t->end,
		                    (unsigned long long)data_len);
	unsigned bits = dtype_bits(t->dtype);
	if (bits == 0)
		return 0; /* a dtype the format did not define when this was written: sized by its offsets alone */
	if (count > UINT64_MAX / bits)
		return embd_err_set(e, EMBD_EOVERFLOW,
		                    "safetensors header: tensor '%s': shape %s of %s overflows 64 bits", nm, sh,
		                    printable(dt, sizeof dt, t->dtype));
	uint64_t nbits = count * bits;
	if (nbits % 8 != 0)
		return embd_err_set(e, EMBD_EFORMAT,
		                    "safetensors header: tensor '%s': shape %s of %s is not a whole number of bytes",
		                    nm, sh, t->dtype);
	if (t->end - t->begin != nbits / 8)
		return embd_err_set(e, EMBD_EFORMAT,
		                    "safetensors header: tensor '%s': shape %s of %s needs %llu bytes but data_offsets "
		                    "[%llu, %llu] hold %llu",
		                    nm, sh, t->dtype, (unsigned long long)(nbits / 8), (unsigned long long)t->begin,
		                    (unsigned long long)t->end, (unsigned long long)(t->end - t->begin));
	return 0;
}

static int by_offsets(const void *a, const void *b)
{
	const embd_safetensors_tensor *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return 0;
}

/* Sorted tensors must cover [0, data_len) exactly, end to end. */
static int check_tiling(const embd_safetensors *st, embd_err *e)
{
	uint64_t at = 0;
	char nm[NAME_CAP], prev[NAME_CAP];
	for (size_t i = 0; i < st->ntensors; i++) {
		const embd_safetensors_tensor *t = &st->tensors[i];
		if (t->begin < at)
			return embd_err_set(
			    e, EMBD_EFORMAT,
			    "safetensors header: tensor '%s' at data_offsets [%llu, %llu] overlaps tensor "
			    "'%s', which ends at %llu",
			    printable(nm, sizeof nm, t->name), (unsigned long long)t->begin, (unsigned long long)t->end,
			    printable(prev, sizeof prev, st->tensors[i - 1].name), (unsigned long long)at);
		if (t->begin > at)
			return embd_err_set(
			    e, EMBD_EFORMAT,
			    "safetensors header: %llu bytes at data offset %llu belong to no tensor (the "
			    "next, '%s', begins at %llu); the data section must have no holes",
			    (unsigned long long)(t->begin - at), (unsigned long long)at,
			    printable(nm, sizeof nm, t->name), (unsigned long long)t->begin);
		at = t->end;
	}
	if (at != st->data_len)
		return embd_err_set(
		    e, EMBD_EFORMAT,
		    "safetensors header: the tensors cover %llu bytes of the %llu-byte data section; the "
		    "rest belongs to no tensor",
		    (unsigned long long)at, (unsigned long long)st->data_len);
	return 0;
}

void embd_safetensors_free(embd_safetensors *st)
{
	if (st == NULL)
		return;
	free(st->priv_dims);
	free(st->tensors);
	json_decref(st->priv);
	free(st);
}

int embd_safetensors_parse(const void *buf, size_t len, uint64_t file_size, embd_safetensors **out, embd_err *e)
{
	const unsigned char *p = buf;
	if (file_size < 8 || len < 8)
		return embd_err_set(e, EMBD_ETRUNC,
		                    "safetensors header: the file has %llu bytes; it must start with an 8-byte header "
		                    "length",
		                    (unsigned long long)file_size);
	uint64_t n = le64(p);
	if (n > file_size - 8)
		return embd_err_set(e, EMBD_ETRUNC,
		                    "safetensors header: header length %llu is past the end of the %llu-byte file",
		                    (unsigned long long)n, (unsigned long long)file_size);
	if (n > EMBD_SAFETENSORS_MAX_HEADER)
		return embd_err_set(e, EMBD_EFORMAT, "safetensors header: header length %llu is over the %u-byte limit",
		                    (unsigned long long)n, EMBD_SAFETENSORS_MAX_HEADER);
	if (len - 8 < n)
		return embd_err_set(e, EMBD_ETRUNC, "safetensors header: only %zu of its %llu bytes were read", len - 8,
		                    (unsigned long long)n);
	if (n < 2 || p[8] != '{')
		return embd_err_set(e, EMBD_EFORMAT, "safetensors header: the JSON header does not start with '{'");
	if (!embd_json_nesting_within(p + 8, n, EMBD_SAFETENSORS_MAX_DEPTH))
		return embd_err_set(e, EMBD_EFORMAT, "safetensors header: JSON nested deeper than %d levels",
		                    EMBD_SAFETENSORS_MAX_DEPTH);
	json_error_t jerr;
	json_t *root = json_loadb((const char *)p + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return embd_err_set(e, EMBD_EFORMAT, "safetensors header: bad JSON at header byte %d: %s",
		                    jerr.position, jerr.text);
	int rc = 0;
	embd_safetensors *st = calloc(1, sizeof *st);
	if (st == NULL) {
		json_decref(root);
		return embd_err_set(e, -ENOMEM, "out of memory");
	}
	st->priv = root;
	st->header_len = n;
	st->data_offset = 8 + n;
	st->data_len = file_size - 8 - n;
	if (!json_is_object(root)) {
		rc = embd_err_set(e, EMBD_EFORMAT, "safetensors header: the JSON header is not an object");
		goto fail;
	}
	/* Count tensors and dims first, so that every shape lives in one block. */
	size_t ntensors = 0, ndims = 0;
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v)
	{
		if (strcmp(key, "__metadata__") == 0) {
			if ((rc = check_metadata(v, e)) != 0)
				goto fail;
			continue;
		}
		ntensors++;
		if (json_is_object(v) && json_is_array(json_object_get(v, "shape")))
			ndims += json_array_size(json_object_get(v, "shape"));
	}
	if (ntensors > 0) {
		st->tensors = calloc(ntensors, sizeof *st->tensors);
		uint64_t *dims = st->priv_dims = calloc(ndims + 1, sizeof *dims);
		if (st->tensors == NULL || dims == NULL) {
			rc = embd_err_set(e, -ENOMEM, "out of memory");
			goto fail;
		}
		json_object_foreach(root, key, v)
		{
			if (strcmp(key, "__metadata__") == 0)
				continue;
			embd_safetensors_tensor *t = &st->tensors[st->ntensors];
			if ((rc = parse_tensor(key, v, st->data_len, t, dims, e)) != 0)
				goto fail;
			dims += t->ndim;
			st->ntensors++;
		}
		qsort(st->tensors, st->ntensors, sizeof *st->tensors, by_offsets);
	}
	if ((rc = check_tiling(st, e)) != 0)
		goto fail;
	*out = st;
	return 0;
fail:
	embd_safetensors_free(st);
	return rc;
}

/* Append "'name' (4, 8) BF16" items to a list of at most cap bytes, then ", and K more" if some did not fit. */
struct list {
	char *buf;
	size_t cap, len;
	size_t left_out;
};

static void list_add(struct list *l, const embd_safetensors_tensor *t)
{
	char nm[NAME_CAP], dt[24], sh[64], item[NAME_CAP + 96];
	embd_safetensors_shape_text(sh, sizeof sh, t);
	int k = snprintf(item, sizeof item, "%s'%s' %s %s", l->len ? ", " : "", printable(nm, sizeof nm, t->name), sh,
	                 printable(dt, sizeof dt, t->dtype));
	/* Keep room for ", and 18446744073709551615 more". */
	if (l->left_out > 0 || l->len + (size_t)k + 32 >= l->cap) {
		l->left_out++;
		return;
	}
	memcpy(l->buf + l->len, item, (size_t)k + 1);
	l->len += (size_t)k;
}

static const char *list_end(struct list *l)
{
	if (l->left_out > 0)
		snprintf(l->buf + l->len, l->cap - l->len, ", and %zu more", l->left_out);
	return l->buf;
}

/* The message list is bounded so that it fits embd_err with a path before it. */
#define LIST_CAP 320

int embd_safetensors_pick(const embd_safetensors *st, const char *name, const embd_safetensors_tensor **out,
                          embd_dtype *dtype, embd_err *e)
{
	char buf[LIST_CAP], nm[NAME_CAP];
	struct list l = {buf, sizeof buf, 0, 0};
	buf[0] = '\0';
	const embd_safetensors_tensor *t = NULL;
	if (name != NULL && *name != '\0') {
		for (size_t i = 0; i < st->ntensors && t == NULL; i++)
			if (strcmp(st->tensors[i].name, name) == 0)
				t = &st->tensors[i];
		if (t == NULL) {
			for (size_t i = 0; i < st->ntensors; i++)
				list_add(&l, &st->tensors[i]);
			return embd_err_set(e, EMBD_ECONFIG, "no tensor named '%s'; the file has %zu: %s",
			                    printable(nm, sizeof nm, name), st->ntensors,
			                    st->ntensors ? list_end(&l) : "none");
		}
	} else {
		size_t n2 = 0;
		for (size_t i = 0; i < st->ntensors; i++) {
			if (st->tensors[i].ndim == 2) {
				t = &st->tensors[i];
				list_add(&l, t);
				n2++;
			}
		}
		if (n2 == 0) {
			for (size_t i = 0; i < st->ntensors; i++)
				list_add(&l, &st->tensors[i]);
			return embd_err_set(e, EMBD_EFORMAT, "no 2-D tensor to serve among its %zu: %s", st->ntensors,
			                    st->ntensors ? list_end(&l) : "none");
		}
		if (n2 > 1)
			return embd_err_set(e, EMBD_ECONFIG,
			                    "%zu 2-D tensors; name the one to serve with --tensor (matrix.tensor): %s",
			                    n2, list_end(&l));
	}
	char sh[64], dt[24];
	embd_safetensors_shape_text(sh, sizeof sh, t);
	printable(nm, sizeof nm, t->name);
	if (t->ndim != 2)
		return embd_err_set(e, EMBD_EFORMAT,
		                    "tensor '%s' has shape %s; a matrix needs 2 dimensions (rows, dim)", nm, sh);
	if (embd_safetensors_dtype(t->dtype, dtype) != 0)
		return embd_err_set(e, EMBD_EDTYPE, "tensor '%s' is %s; embd serves F32, F16 and BF16", nm,
		                    printable(dt, sizeof dt, t->dtype));
	*out = t;
	return 0;
}

/* pread until len bytes are in or the file ends; 0 or -errno (-EIO for a file shorter than fstat said). */
static int read_at(int fd, void *dst, size_t len, uint64_t off)
{
	unsigned char *p = dst;
	while (len > 0) {
		ssize_t k = pread(fd, p, len, (off_t)off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return -EIO;
		p += k;
		len -= (size_t)k;
		off += (uint64_t)k;
	}
	return 0;
}

int embd_safetensors_read(const char *path, embd_safetensors **out, embd_err *e)
{
	struct stat st;
	int fd = embd_file_open_regular(path, EMBD_EFORMAT, &st, e);
	if (fd < 0)
		return fd;
	unsigned char *buf = NULL;
	int rc;
	embd_err why;
	uint64_t size = (uint64_t)st.st_size;
	unsigned char head[8] = {0};
	if (size < 8) {
		rc = embd_safetensors_parse(head, 0, size, out, &why);
		embd_err_set(e, rc, "%s: %s", path, why.msg);
		goto out;
	}
	if ((rc = read_at(fd, head, 8, 0)) != 0) {
		embd_err_set(e, rc, "%s: %s", path, strerror(-rc));
		goto out;
	}
	/* Read the header only when parse would not refuse its length unread. */
	uint64_t n = le64(head);
	size_t want = n <= size - 8 && n <= EMBD_SAFETENSORS_MAX_HEADER ? (size_t)(8 + n) : 8;
	buf = malloc(want);
	if (buf == NULL) {
		rc = embd_err_set(e, -ENOMEM, "%s: out of memory", path);
		goto out;
	}
	if ((rc = read_at(fd, buf, want, 0)) != 0) {
		embd_err_set(e, rc, "%s: %s", path, strerror(-rc));
		goto out;
	}
	if ((rc = embd_safetensors_parse(buf, want, size, out, &why)) != 0)
		embd_err_set(e, rc, "%s: %s", path, why.msg);
out:
	free(buf);
	close(fd);
	return rc;
}
