/* Opening, validating and mapping matrix files through the format table (lib/format.c). */
#include "matrix.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "internal.h"
#include "textvec.h"

int embd_advice_parse(const char *name, embd_advice *out)
{
	static const char *const names[] = {"normal", "random", "willneed", "sequential"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (strcmp(name, names[i]) == 0) {
			*out = (embd_advice)i;
			return 0;
		}
	}
	return EMBD_EBADPARAM;
}

static int map_file(embd_matrix *m, const embd_matrix_spec *spec, embd_err *e)
{
	struct stat st;
	int fd = embd_file_open_regular(spec->path, EMBD_EFORMAT, &st, e);
	if (fd < 0)
		return fd;
	int rc = 0;
	if (st.st_size == 0) {
		rc = embd_err_set(e, EMBD_ETRUNC, "%s: file is empty", spec->path);
		goto out;
	}
	m->map_len = (size_t)st.st_size;
	m->file_bytes = (uint64_t)st.st_size;
	int flags = MAP_SHARED | (spec->populate ? MAP_POPULATE : 0);
	m->map = mmap(NULL, m->map_len, PROT_READ, flags, fd, 0);
	if (m->map == MAP_FAILED) {
		m->map = NULL;
		rc = embd_err_set(e, -errno, "%s: mmap: %s", spec->path, strerror(errno));
	}
out:
	close(fd);
	return rc;
}

/* header_only: the shape and the first words, not a number read. */
static int peek_text(embd_matrix *m, embd_textvec_kind kind, embd_err *e)
{
	embd_textvec_look pk;
	embd_err why;
	int rc = embd_textvec_peek(m->map, m->map_len, kind, &pk, &why);
	if (rc != 0)
		return embd_err_set(e, rc, "%s: %s", m->source, why.msg);
	if ((rc = embd_vocab_new(pk.nwords, 0, &m->vocab)) != 0)
		return embd_err_set(e, rc, "%s: out of memory", m->source);
	for (size_t i = 0; i < pk.nwords; i++)
		if (embd_vocab_add(m->vocab, pk.words[i], strlen(pk.words[i]), NULL) != 0)
			break; /* a word a parse would refuse: the look stops there */
	embd_vocab_finish(m->vocab);
	m->info.rows = pk.rows;
	m->info.dim = pk.dim;
	m->info.dtype = EMBD_F32;
	return 0;
}

/*
 * The text formats (and word2vec binary) carry their words: the file is read
 * (not mapped: a file cut short meanwhile is an error, not a SIGBUS), parsed
 * once into heap rows and a vocabulary, and the rows are served from the
 * heap, zero-copy all the same. The format table says which kind a format
 * is; loading it is this file's work.
 */
static int load_text(embd_matrix *m, const embd_matrix_spec *spec, embd_textvec_kind kind, embd_err *e)
{
	if (spec->header_only)
		return peek_text(m, kind, e);
	/* Parsed from a copy read with read(2), not from the mapping: a file cut short meanwhile is an error, not a
	 * SIGBUS. */
	munmap(m->map, m->map_len);
	m->map = NULL;
	m->map_len = 0;
	unsigned char *text;
	size_t text_len;
	int rc = embd_file_read(m->source, &text, &text_len, e);
	if (rc != 0)
		return rc;
	embd_textvec tv;
	embd_err why;
	rc = embd_textvec_parse(text, text_len, kind, NULL, &tv, &why);
	embd_file_free(text, text_len);
	m->file_bytes = text_len;
	if (rc != 0)
		return embd_err_set(e, rc, "%s: %s", m->source, why.msg);
	/* The parse built the vocabulary as it checked for duplicates; without one, a word cannot be a token: say
	 * which. */
	int built_here = tv.vocab == NULL;
	m->vocab = tv.vocab;
	tv.vocab = NULL;
	if (built_here)
		rc = embd_vocab_new(tv.rows, tv.words_bytes, &m->vocab);
	for (uint64_t i = 0; built_here && rc == 0 && i < tv.rows; i++) {
		rc = embd_vocab_add(m->vocab, tv.words + tv.word_off[i], tv.word_off[i + 1] - tv.word_off[i] - 1, &why);
		if (rc != 0)
			rc = embd_err_set(e, rc, "%s: the word of row %llu: %s", m->source, (unsigned long long)i,
			                  why.msg);
	}
	if (rc == -ENOMEM)
		embd_err_set(e, rc, "%s: out of memory for the vocabulary", m->source);
	if (rc != 0) {
		embd_textvec_free(&tv);
		return rc;
	}
	if (built_here)
		embd_vocab_finish(m->vocab);
	m->heap = tv.data;
	m->heap_bytes = (size_t)(tv.rows * tv.dim * sizeof(float));
	tv.data = NULL;
	m->info.rows = tv.rows;
	m->info.dim = tv.dim;
	m->info.dtype = EMBD_F32;
	m->info.data = (const unsigned char *)m->heap;
	embd_textvec_free(&tv);
	return 0;
}

/*
 * Refuse what the spec names that the file's format does not use, before a
 * row is read: a flag that does not apply is a mistake to say, not to ignore
 * (an .npy served with --dim 99 --dtype bf16 would otherwise serve its own
 * shape without a word). Each field is named as its flag and its config key.
 */
static int check_uses(const embd_matrix *m, const embd_matrix_spec *spec, const embd_format_ops *ops, embd_err *e)
{
	const struct {
		const char *name;
		unsigned use;
		int given;
	} fields[] = {
	    {"rows", EMBD_USES_SHAPE, spec->rows != 0},
	    {"dim", EMBD_USES_SHAPE, spec->dim != 0},
	    {"dtype", EMBD_USES_SHAPE, spec->dtype_given},
	    {"offset", EMBD_USES_SHAPE, spec->offset != 0},
	    {"tensor", EMBD_USES_TENSOR, spec->tensor != NULL && spec->tensor[0] != '\0'},
	    {"vocab", EMBD_USES_VOCAB, spec->vocab != NULL && spec->vocab[0] != '\0'},
	};
	const size_t nfields = sizeof fields / sizeof fields[0];
	/* The first kind of field given and not used; every field of that kind given, named as flags and as keys. */
	unsigned use = 0;
	for (size_t i = 0; i < nfields && use == 0; i++)
		if (fields[i].given && (ops->uses & fields[i].use) == 0)
			use = fields[i].use;
	if (use == 0)
		return 0;
	char flags[128] = "", keys[128] = "";
	size_t nflags = 0;
	for (size_t i = 0; i < nfields; i++) {
		if (!fields[i].given || fields[i].use != use)
			continue;
		size_t f = strlen(flags), k = strlen(keys);
		snprintf(flags + f, sizeof flags - f, "%s--%s", nflags ? ", " : "", fields[i].name);
		snprintf(keys + k, sizeof keys - k, "%smatrix.%s", nflags ? ", " : "", fields[i].name);
		nflags++;
	}
	char what[96];
	if (!ops->needs_file)
		snprintf(what, sizeof what, "the %s matrix", ops->name);
	else
		snprintf(what, sizeof what, "a %s file", ops->name);
	const char *verb = nflags > 1 ? "do" : "does";
	if (use == EMBD_USES_SHAPE)
		return embd_err_set(
		    e, EMBD_ENOTAPPLICABLE,
		    "%s: %s carries its own shape and dtype: %s (%s) %s not apply; rows, dim, dtype and "
		    "offset describe a raw matrix (--format raw)",
		    m->source, what, flags, keys, verb);
	if (use == EMBD_USES_TENSOR)
		return embd_err_set(
		    e, EMBD_ENOTAPPLICABLE,
		    "%s: %s holds no named tensors: %s (%s) %s not apply (a tensor, %.200s, is named; only "
		    "safetensors files hold named tensors)",
		    m->source, what, flags, keys, verb, spec->tensor);
	return embd_err_set(
	    e, EMBD_ENOTAPPLICABLE,
	    "%s: %s names its rows itself: %s (%s) %s not apply; a vocabulary file (%.200s) is for npy, "
	    "safetensors and raw matrices",
	    m->source, what, flags, keys, verb, spec->vocab);
}

int embd_matrix_open(const embd_matrix_spec *spec, embd_matrix **out, embd_err *e)
{
	uint64_t t0 = embd_now_ns();
	embd_matrix *m = calloc(1, sizeof *m);
	if (m == NULL)
		return embd_err_set(e, -ENOMEM, "out of memory");
	int rc;
	const char *path = spec->path != NULL ? spec->path : "";
	/* Without a file and without a format, the demo matrix: it is loaded only when nothing else is named. */
	embd_format format = spec->format == EMBD_FORMAT_AUTO && *path == '\0' ? EMBD_FORMAT_DEMO : spec->format;
	const embd_format_ops *ops = embd_format_ops_get(format);
	snprintf(m->source, sizeof m->source, "%s", ops != NULL && !ops->needs_file ? "builtin:demo" : path);
	if (ops == NULL || ops->needs_file) {
		if (*path == '\0') {
			rc = embd_err_set(e, EMBD_ECONFIG, "matrix format %s needs a file", embd_format_name(format));
			goto fail;
		}
		rc = map_file(m, spec, e);
		if (rc != 0)
			goto fail;
		if (ops == NULL && (rc = embd_format_detect(m, spec, &ops, e)) != 0)
			goto fail;
	}
	if (ops != NULL && (rc = check_uses(m, spec, ops, e)) != 0)
		goto fail;
	/* detect found one, or failed above */
	rc = ops == NULL                      ? EMBD_EINTERNAL
	     : ops->text != EMBD_TEXTVEC_NONE ? load_text(m, spec, ops->text, e)
	                                      : ops->layout(m, spec, e);
	if (rc != 0)
		goto fail;
	if (m->info.rows == 0 || m->info.dim == 0) {
		rc = embd_err_set(e, EMBD_EFORMAT, "%s: matrix is empty (shape (%llu, %llu))", m->source,
		                  (unsigned long long)m->info.rows, (unsigned long long)m->info.dim);
		goto fail;
	}
	m->info.row_bytes = (size_t)(m->info.dim * embd_dtype_size(m->info.dtype));
	m->info.data_bytes = m->info.rows * m->info.row_bytes;
	m->info.file_bytes = m->file_bytes != 0 ? m->file_bytes : m->map_len; /* the demo has no file: its mapping */
	m->info.heap_bytes = m->heap_bytes;
	m->info.format = ops->id;
	m->info.source = m->source;

	/* What is served: the mapping, or the rows a text format was parsed into. */
	void *region = m->map != NULL ? m->map : (void *)m->heap;
	size_t region_len = m->map != NULL ? m->map_len : m->heap_bytes;
	static const int advice[] = {MADV_NORMAL, MADV_RANDOM, MADV_WILLNEED, MADV_SEQUENTIAL};
	if (spec->advice != EMBD_ADVICE_NORMAL && m->map != NULL)
		(void)madvise(m->map, m->map_len, advice[spec->advice]); /* a hint: failure changes nothing */
	if (spec->lock && !spec->header_only) {
		if (mlock(region, region_len) != 0) {
			rc = embd_err_set(e, -errno,
			                  "%s: mlock of %zu bytes: %s (raise RLIMIT_MEMLOCK or turn matrix.mlock off)",
			                  m->source, region_len, strerror(errno));
			goto fail;
		}
		m->locked = 1;
	}
	m->info.load_ns = embd_now_ns() - t0;
	*out = m;
	return 0;
fail:
	embd_matrix_close(m);
	return rc;
}

void embd_matrix_close(embd_matrix *m)
{
	if (m == NULL)
		return;
	if (m->map != NULL) {
		if (m->locked)
			munlock(m->map, m->map_len);
		munmap(m->map, m->map_len);
	}
	if (m->heap != NULL && m->locked)
		munlock(m->heap, m->heap_bytes);
	free(m->heap);
	embd_vocab_free(m->vocab);
	free(m);
}

embd_vocab *embd_matrix_take_vocab(embd_matrix *m)
{
	embd_vocab *v = m->vocab;
	m->vocab = NULL;
	return v;
}

const embd_matrix_info *embd_matrix_info_get(const embd_matrix *m)
{
	return &m->info;
}
