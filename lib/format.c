/* The format table: each matrix format's name, how it is recognised and how its mapped bytes become rows. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"
#include "npy.h"
#include "safetensors.h"
#include "textvec.h"

static int has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* rows * dim * itemsize without overflow; EMBD_EOVERFLOW otherwise. */
static int shape_bytes(uint64_t rows, uint64_t dim, size_t itemsize, uint64_t *out)
{
	if (dim != 0 && itemsize > UINT64_MAX / dim)
		return EMBD_EOVERFLOW;
	uint64_t row = dim * itemsize;
	if (row != 0 && rows > UINT64_MAX / row)
		return EMBD_EOVERFLOW;
	*out = rows * row;
	return 0;
}

/* .npy: "\x93NUMPY" magic; C-order 2-D float32 or float16. */
static int sniff_npy(const unsigned char *head, size_t len, const char *path, const embd_matrix_spec *spec)
{
	(void)spec;
	if (len >= 6 && memcmp(head, "\x93NUMPY", 6) == 0)
		return 3;
	return has_suffix(path, ".npy") ? 1 : 0;
}

static int layout_npy(struct embd_matrix *m, const embd_matrix_spec *spec, embd_err *e)
{
	(void)spec;
	embd_npy h;
	const char *src = m->source;
	embd_err why;
	int rc = embd_npy_parse(m->map, m->map_len, &h, &why);
	if (rc != 0)
		return embd_err_set(e, rc, "%s: %s", src, why.msg);
	if (h.kind == 'f' && h.itemsize == 4)
		m->info.dtype = EMBD_F32;
	else if (h.kind == 'f' && h.itemsize == 2)
		m->info.dtype = EMBD_F16;
	else
		return embd_err_set(e, EMBD_EDTYPE,
		                    "%s: dtype '%s' is not supported (float32 '<f4' and float16 '<f2' are)", src,
		                    h.descr);
	if (h.fortran_order)
		return embd_err_set(e, EMBD_EFORMAT,
		                    "%s: array is in Fortran order; save it C-contiguous (np.ascontiguousarray)", src);
	if (h.ndim != 2)
		return embd_err_set(e, EMBD_EFORMAT, "%s: array has %d dimensions; a matrix needs 2 (rows, dim)", src,
		                    h.ndim);
	m->info.rows = h.shape[0];
	m->info.dim = h.shape[1];
	uint64_t need;
	if (shape_bytes(h.shape[0], h.shape[1], h.itemsize, &need) != 0)
		return embd_err_set(e, EMBD_EOVERFLOW, "%s: shape (%llu, %llu) x %u bytes overflows", src,
		                    (unsigned long long)h.shape[0], (unsigned long long)h.shape[1], h.itemsize);
	if (need > m->map_len - h.data_offset)
		return embd_err_set(e, EMBD_ETRUNC,
		                    "%s: header says shape (%llu, %llu) of '%s', which needs %llu data bytes, but the "
		                    "file has %llu after its %zu-byte header",
		                    src, (unsigned long long)h.shape[0], (unsigned long long)h.shape[1], h.descr,
		                    (unsigned long long)need, (unsigned long long)(m->map_len - h.data_offset),
		                    h.data_offset);
	m->info.data = (const unsigned char *)m->map + h.data_offset;
	return 0;
}

/* safetensors: no magic, but an 8-byte little-endian length that fits the file, then the JSON header's '{'. */
static int sniff_safetensors(const unsigned char *head, size_t len, const char *path, const embd_matrix_spec *spec)
{
	(void)spec;
	if (len > 9 && head[8] == '{') {
		uint64_t n = 0;
		for (int i = 7; i >= 0; i--)
			n = n << 8 | head[i];
		if (n >= 2 && n <= len - 8)
			return 3;
	}
	return has_suffix(path, ".safetensors") ? 1 : 0;
}

static int layout_safetensors(struct embd_matrix *m, const embd_matrix_spec *spec, embd_err *e)
{
	embd_safetensors *st;
	const embd_safetensors_tensor *t;
	embd_dtype dtype;
	embd_err why;
	int rc = embd_safetensors_parse(m->map, m->map_len, m->map_len, &st, &why);
	if (rc != 0)
		return embd_err_set(e, rc, "%s: %s", m->source, why.msg);
	if ((rc = embd_safetensors_pick(st, spec->tensor, &t, &dtype, &why)) != 0) {
		embd_safetensors_free(st);
		return embd_err_set(e, rc, "%s: %s", m->source, why.msg);
	}
	/* parse checked end - begin == rows * dim * itemsize and end <= the data section. */
	m->info.rows = t->shape[0];
	m->info.dim = t->shape[1];
	m->info.dtype = dtype;
	m->info.data = (const unsigned char *)m->map + st->data_offset + t->begin;
	embd_safetensors_free(st);
	return 0;
}

/* raw: no header, so never by magic; recognised only when the spec gives the shape. */
static int sniff_raw(const unsigned char *head, size_t len, const char *path, const embd_matrix_spec *spec)
{
	(void)head;
	(void)len;
	(void)path;
	return spec->dim != 0 ? 1 : 0;
}

static int layout_raw(struct embd_matrix *m, const embd_matrix_spec *spec, embd_err *e)
{
	const char *src = m->source;
	size_t item = embd_dtype_size(spec->dtype);
	if (spec->dim == 0)
		return embd_err_set(e, EMBD_ECONFIG, "%s: a raw matrix needs its dim (--dim N)", src);
	if (spec->offset > m->map_len)
		return embd_err_set(e, EMBD_ETRUNC, "%s: offset %llu is past the end of the %zu-byte file", src,
		                    (unsigned long long)spec->offset, m->map_len);
	uint64_t avail = m->map_len - spec->offset, row_bytes, need;
	if (shape_bytes(1, spec->dim, item, &row_bytes) != 0)
		return embd_err_set(e, EMBD_EOVERFLOW, "%s: dim %llu overflows", src, (unsigned long long)spec->dim);
	if (row_bytes == 0)
		return embd_err_set(e, EMBD_ECONFIG, "%s: rows of 0 bytes", src);
	uint64_t rows = spec->rows;
	if (rows == 0) {
		if (avail % row_bytes != 0)
			return embd_err_set(
			    e, EMBD_EFORMAT,
			    "%s: %llu data bytes is not a whole number of %llu-byte rows (dim %llu, %s)", src,
			    (unsigned long long)avail, (unsigned long long)row_bytes, (unsigned long long)spec->dim,
			    embd_dtype_name(spec->dtype));
		rows = avail / row_bytes;
	}
	if (shape_bytes(rows, spec->dim, item, &need) != 0)
		return embd_err_set(e, EMBD_EOVERFLOW, "%s: shape (%llu, %llu) overflows", src,
		                    (unsigned long long)rows, (unsigned long long)spec->dim);
	if (need > avail)
		return embd_err_set(e, EMBD_ETRUNC,
		                    "%s: shape (%llu, %llu) of %s needs %llu bytes but the file has %llu", src,
		                    (unsigned long long)rows, (unsigned long long)spec->dim,
		                    embd_dtype_name(spec->dtype), (unsigned long long)need, (unsigned long long)avail);
	m->info.rows = rows;
	m->info.dim = spec->dim;
	m->info.dtype = spec->dtype;
	m->info.data = (const unsigned char *)m->map + spec->offset;
	return 0;
}

/* The text formats: by their first line (embd_textvec_sniff), or by extension. */
static int sniff_text(const unsigned char *head, size_t len, const char *path, embd_textvec_kind kind, const char *ext)
{
	if (embd_textvec_sniff(head, len) == kind)
		return 2;
	return has_suffix(path, ext) ? 1 : 0;
}

static int sniff_glove(const unsigned char *head, size_t len, const char *path, const embd_matrix_spec *spec)
{
	(void)spec;
	return sniff_text(head, len, path, EMBD_TEXTVEC_GLOVE, ".txt");
}

static int sniff_word2vec(const unsigned char *head, size_t len, const char *path, const embd_matrix_spec *spec)
{
	(void)spec;
	return sniff_text(head, len, path, EMBD_TEXTVEC_W2V_TEXT, ".vec");
}

static int sniff_word2vec_bin(const unsigned char *head, size_t len, const char *path, const embd_matrix_spec *spec)
{
	(void)spec;
	return sniff_text(head, len, path, EMBD_TEXTVEC_W2V_BIN, ".bin");
}

/* demo: EMBD_DEMO_ROWS x EMBD_DEMO_DIM float32, E[i][j] = i + j / 1000, made in anonymous memory. */
static int layout_demo(struct embd_matrix *m, const embd_matrix_spec *spec, embd_err *e)
{
	(void)spec;
	m->map_len = (size_t)EMBD_DEMO_ROWS * EMBD_DEMO_DIM * sizeof(float);
	m->map = mmap(NULL, m->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m->map == MAP_FAILED) {
		m->map = NULL;
		return embd_err_set(e, -errno, "demo matrix: %s", strerror(errno));
	}
	float *f = m->map;
	for (size_t i = 0; i < EMBD_DEMO_ROWS; i++)
		for (size_t j = 0; j < EMBD_DEMO_DIM; j++)
			f[i * EMBD_DEMO_DIM + j] = (float)i + (float)j / 1000.0f;
	/* Read-only from here on, like a file mapping. */
	if (mprotect(m->map, m->map_len, PROT_READ) != 0)
		return embd_err_set(e, -errno, "demo matrix: %s", strerror(errno));
	m->info.rows = EMBD_DEMO_ROWS;
	m->info.dim = EMBD_DEMO_DIM;
	m->info.dtype = EMBD_F32;
	m->info.data = m->map;
	return 0;
}

/* Every format embd reads, in the order auto-detection tries them. A new format is one row here. */
static const embd_format_ops formats[] = {
    {EMBD_FORMAT_NPY, "npy", 1, EMBD_USES_VOCAB, sniff_npy, layout_npy, EMBD_TEXTVEC_NONE, ".npy"},
    {EMBD_FORMAT_SAFETENSORS, "safetensors", 1, EMBD_USES_TENSOR | EMBD_USES_VOCAB, sniff_safetensors,
     layout_safetensors, EMBD_TEXTVEC_NONE, ".safetensors"},
    {EMBD_FORMAT_RAW, "raw", 1, EMBD_USES_SHAPE | EMBD_USES_VOCAB, sniff_raw, layout_raw, EMBD_TEXTVEC_NONE, ""},
    {EMBD_FORMAT_GLOVE, "glove", 1, 0, sniff_glove, NULL, EMBD_TEXTVEC_GLOVE, ".txt"},
    {EMBD_FORMAT_WORD2VEC, "word2vec", 1, 0, sniff_word2vec, NULL, EMBD_TEXTVEC_W2V_TEXT, ".vec"},
    {EMBD_FORMAT_WORD2VEC_BIN, "word2vec_bin", 1, 0, sniff_word2vec_bin, NULL, EMBD_TEXTVEC_W2V_BIN, ".bin"},
    {EMBD_FORMAT_DEMO, "demo", 0, EMBD_USES_VOCAB, NULL, layout_demo, EMBD_TEXTVEC_NONE, ""},
};
#define NFORMATS (sizeof formats / sizeof formats[0])

const embd_format_ops *embd_format_ops_get(embd_format id)
{
	for (size_t i = 0; i < NFORMATS; i++)
		if (formats[i].id == id)
			return &formats[i];
	return NULL;
}

const char *embd_format_name(embd_format f)
{
	const embd_format_ops *ops = embd_format_ops_get(f);
	return ops != NULL ? ops->name : "auto";
}

int embd_format_parse(const char *name, embd_format *out)
{
	if (strcmp(name, "auto") == 0) {
		*out = EMBD_FORMAT_AUTO;
		return 0;
	}
	for (size_t i = 0; i < NFORMATS; i++) {
		if (strcmp(name, formats[i].name) == 0) {
			*out = formats[i].id;
			return 0;
		}
	}
	return EMBD_EBADPARAM;
}

size_t embd_format_names(char *buf, size_t cap)
{
	size_t n = (size_t)snprintf(buf, cap, "auto");
	for (size_t i = 0; i < NFORMATS && n < cap; i++)
		n += (size_t)snprintf(buf + n, cap - n, ", %s", formats[i].name);
	return n < cap ? n : (cap > 0 ? cap - 1 : 0);
}

int embd_format_detect(const struct embd_matrix *m, const embd_matrix_spec *spec, const embd_format_ops **out,
                       embd_err *e)
{
	const embd_format_ops *best = NULL;
	int best_score = 0;
	for (size_t i = 0; i < NFORMATS; i++) {
		if (formats[i].sniff == NULL)
			continue;
		int score = formats[i].sniff(m->map, m->map_len, m->source, spec);
		if (score > best_score) {
			best = &formats[i];
			best_score = score;
		}
	}
	if (best == NULL)
		return embd_err_set(
		    e, EMBD_EUNKNOWNFORMAT,
		    "%s: unknown format: not .npy (no \\x93NUMPY magic), not safetensors (no header length "
		    "and '{'), not GloVe or word2vec text (the first line is neither `rows dim` nor a word "
		    "and numbers), no known extension; for a raw matrix give --dim and --dtype, or name the "
		    "format with --format",
		    m->source);
	*out = best;
	return 0;
}
