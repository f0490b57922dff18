/* embd convert: a GloVe / word2vec / fastText file to the mmap-able pair of a .npy matrix and a vocabulary file. */
#include "convert.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "internal.h"
#include "npy.h"
#include "pair.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "embd_convert_write writes the floats as they are in memory, which must be little-endian ('<f4')"
#endif

#define WRITE_CHUNK ((size_t)1 << 30)

static int write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t k = write(fd, p, n < WRITE_CHUNK ? n : WRITE_CHUNK);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (k == 0)
			return -EIO;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* The next name path.<pid>.<nonce>.<ext> to try for a new file beside path; 0 or -ENAMETOOLONG. */
static int tmp_name(const char *path, const char *ext, uint64_t *nonce, char *out, size_t cap)
{
	*nonce = *nonce * 6364136223846793005u + 1442695040888963407u;
	int n = snprintf(out, cap, "%s.%ld.%08" PRIx32 ".%s", path, (long)getpid(), (uint32_t)(*nonce >> 32), ext);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/*
 * A new file beside path, named path.<pid>.<nonce>.tmp, created with O_EXCL
 * and mode 0666 (less the umask, as for any new file). Returns the fd, or
 * -errno; the name in tmp (cap bytes).
 */
static int open_tmp(const char *path, char *tmp, size_t cap)
{
	uint64_t nonce = embd_now_ns() ^ (uint64_t)(uintptr_t)tmp;
	for (int attempt = 0; attempt < 64; attempt++) {
		if (tmp_name(path, "tmp", &nonce, tmp, cap) != 0)
			return -ENAMETOOLONG;
		int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd >= 0 || errno != EEXIST)
			return fd >= 0 ? fd : -errno;
	}
	return -EEXIST;
}

/* How the previous file at a path was kept while a new one replaces it. */
enum kept { KEPT_NONE, KEPT_LINKED, KEPT_MOVED };

/*
 * Keep the file at path (if any) under a new name beside it (path.<pid>.<nonce>.old,
 * in old) so that it can be put back: a hard link, or where the file system
 * has none, a rename (path is then absent until it is put back or replaced;
 * only the holder of the pair's lock can see that). *how says which; 0 or
 * -errno.
 */
static int keep_old(const char *path, char *old, size_t cap, enum kept *how)
{
	*how = KEPT_NONE;
	uint64_t nonce = embd_now_ns() ^ (uint64_t)(uintptr_t)old;
	for (int attempt = 0; attempt < 64; attempt++) {
		if (tmp_name(path, "old", &nonce, old, cap) != 0)
			return -ENAMETOOLONG;
		if (link(path, old) == 0) {
			*how = KEPT_LINKED;
			return 0;
		}
		if (errno == ENOENT)
			return 0; /* no previous file */
		if (errno == EEXIST)
			continue;
		if (rename(path, old) == 0) {
			*how = KEPT_MOVED;
			return 0;
		}
		return errno == ENOENT ? 0 : -errno;
	}
	return -EEXIST;
}

/* Why word i cannot be a line of a vocabulary file, or NULL (textvec already refused empty, NUL, bad UTF-8). */
static const char *unwritable(const embd_textvec *tv, uint64_t i)
{
	const char *w = tv->words + tv->word_off[i];
	size_t n = (size_t)(tv->word_off[i + 1] - tv->word_off[i] - 1);
	if (memchr(w, '\n', n) != NULL)
		return "a newline";
	if (n > 0 && w[n - 1] == '\r')
		return "a final carriage return";
	return NULL;
}

/* The .npy header, then the kept rows in runs. */
static int write_npy(int fd, const embd_textvec *tv, const unsigned char *keep, uint64_t rows)
{
	char header[1024];
	uint64_t shape[2] = {rows, tv->dim};
	size_t h = embd_npy_header_write(header, sizeof header, "<f4", shape, 2);
	if (h == 0)
		return EMBD_EINTERNAL;
	int rc = write_all(fd, header, h);
	size_t row_bytes = (size_t)tv->dim * sizeof(float);
	for (uint64_t r = 0; rc == 0 && r < tv->rows;) {
		uint64_t b = r;
		while (r < tv->rows && (keep == NULL || keep[r]))
			r++;
		if (r > b)
			rc = write_all(fd, tv->data + b * tv->dim, (size_t)(r - b) * row_bytes);
		while (r < tv->rows && keep != NULL && !keep[r])
			r++;
	}
	return rc;
}

static int write_vocab(int fd, const embd_textvec *tv, const unsigned char *keep)
{
	char *buf = malloc(tv->words_bytes > 0 ? (size_t)tv->words_bytes : 1);
	if (buf == NULL)
		return -ENOMEM;
	size_t n = 0;
	for (uint64_t r = 0; r < tv->rows; r++) {
		if (keep != NULL && !keep[r])
			continue;
		size_t len = (size_t)(tv->word_off[r + 1] - tv->word_off[r] - 1);
		memcpy(buf + n, tv->words + tv->word_off[r], len);
		buf[n + len] = '\n';
		n += len + 1;
	}
	int rc = write_all(fd, buf, n);
	free(buf);
	return rc;
}

/* Sync the directory of path, so that the renames last; a failure here is not worth failing the convert for. */
static void sync_dir(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		snprintf(dir, sizeof dir, ".");
	else
		snprintf(dir, sizeof dir, "%.*s", (int)(slash == path ? 1 : slash - path), path);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

static int same_file(const char *a, const char *b)
{
	if (strcmp(a, b) == 0)
		return 1;
	struct stat sa, sb;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The two temporary files of a convert, beside their targets. */
typedef struct pair {
	const char *npy_path, *vocab_path;
	char npy_tmp[PATH_MAX], vocab_tmp[PATH_MAX];
	int fd_npy, fd_vocab;
} pair;

/* Close and remove whatever of the pair is still open. */
static void pair_abort(pair *p)
{
	if (p->fd_vocab >= 0) {
		close(p->fd_vocab);
		unlink(p->vocab_tmp);
	}
	if (p->fd_npy >= 0) {
		close(p->fd_npy);
		unlink(p->npy_tmp);
	}
	p->fd_npy = p->fd_vocab = -1;
}

/* Create both temporary files: done before the parse, so that an unwritable target fails at once. */
static int pair_open(pair *p, const char *npy_path, const char *vocab_path, embd_err *e)
{
	p->npy_path = npy_path;
	p->vocab_path = vocab_path;
	p->fd_npy = p->fd_vocab = -1;
	if (same_file(npy_path, vocab_path))
		return embd_err_set(e, EMBD_ECONFIG, "%s: the matrix and the vocabulary cannot be the same file",
		                    npy_path);
	struct stat st;
	if (stat(npy_path, &st) == 0 && !S_ISREG(st.st_mode))
		return embd_err_set(e, EMBD_ECONFIG, "%s: not a regular file; convert writes regular files only",
		                    npy_path);
	if (stat(vocab_path, &st) == 0 && !S_ISREG(st.st_mode))
		return embd_err_set(e, EMBD_ECONFIG, "%s: not a regular file; convert writes regular files only",
		                    vocab_path);
	int fd = open_tmp(npy_path, p->npy_tmp, sizeof p->npy_tmp);
	if (fd < 0)
		return embd_err_set(e, fd, "%s: cannot create a temporary file beside it: %s", npy_path, strerror(-fd));
	p->fd_npy = fd;
	fd = open_tmp(vocab_path, p->vocab_tmp, sizeof p->vocab_tmp);
	if (fd < 0) {
		pair_abort(p);
		return embd_err_set(e, fd, "%s: cannot create a temporary file beside it: %s", vocab_path,
		                    strerror(-fd));
	}
	p->fd_vocab = fd;
	return 0;
}

/* Write, sync and close one temporary file; 0 or -errno. */
static int finish(int *fd, int rc)
{
	if (rc == 0 && fsync(*fd) != 0)
		rc = -errno;
	if (close(*fd) != 0 && rc == 0)
		rc = -errno;
	*fd = -1;
	return rc;
}

/*
 * Rename both complete files into place, the vocabulary first, under the
 * pair's exclusive lock (pair.h): no load opens the two between the renames.
 * The previous vocabulary is kept until the matrix is in place, and put back
 * if the matrix's rename fails, so that the previous pair is never broken:
 * on failure both paths are as they were (the message says so if putting
 * back failed too, and where the old file is).
 */
static int pair_install(pair *p, embd_err *e)
{
	int lock = embd_pair_lock(p->npy_path, 1);
	char old[PATH_MAX];
	enum kept how;
	int rc = keep_old(p->vocab_path, old, sizeof old, &how);
	if (rc != 0) {
		rc = embd_err_set(e, rc, "%s: cannot keep the previous vocabulary to put it back on failure: %s",
		                  p->vocab_path, strerror(-rc));
		goto out;
	}
	if (rename(p->vocab_tmp, p->vocab_path) != 0) {
		rc = -errno;
		if (how == KEPT_MOVED && rename(old, p->vocab_path) != 0)
			rc = embd_err_set(e, rc, "%s: %s; the previous vocabulary could not be put back: it is %s",
			                  p->vocab_path, strerror(-rc), old);
		else
			rc = embd_err_set(e, rc, "%s: %s", p->vocab_path, strerror(-rc));
		if (how == KEPT_LINKED)
			(void)unlink(old);
		goto out;
	}
	if (rename(p->npy_tmp, p->npy_path) != 0) {
		rc = -errno;
		/* No half pair: the previous words go back over the new ones, or (none before) the new ones go. */
		if (how != KEPT_NONE ? rename(old, p->vocab_path) != 0 : unlink(p->vocab_path) != 0 && errno != ENOENT)
			rc =
			    embd_err_set(e, rc, "%s: %s; the vocabulary %s could not be put back as it was%s%s",
			                 p->npy_path, strerror(-rc), p->vocab_path,
			                 how != KEPT_NONE ? ": the previous one is " : "", how != KEPT_NONE ? old : "");
		else
			rc = embd_err_set(e, rc, "%s: %s", p->npy_path, strerror(-rc));
		goto out;
	}
	if (how != KEPT_NONE)
		(void)unlink(old);
out:
	embd_pair_unlock(lock);
	return rc;
}

/* Write the pair and rename it into place; on failure nothing of it is left. */
static int pair_commit(pair *p, const embd_textvec *tv, int skip_bad, uint64_t *rows_written, uint64_t *skipped,
                       char *first_skip, embd_err *e)
{
	/* Rows whose word a vocabulary file cannot hold: an error, or (skip_bad) left out. */
	unsigned char *keep = NULL;
	uint64_t dropped = 0;
	int rc;
	for (uint64_t r = 0; r < tv->rows; r++) {
		const char *why = unwritable(tv, r);
		if (why == NULL)
			continue;
		char msg[200];
		snprintf(msg, sizeof msg,
		         "row %" PRIu64 ": the word '%.60s' has %s, which a vocabulary file cannot hold", r + 1,
		         tv->words + tv->word_off[r], why);
		if (!skip_bad) {
			rc = embd_err_set(e, EMBD_EFORMAT, "%s", msg);
			goto fail;
		}
		if (keep == NULL) {
			keep = malloc((size_t)tv->rows);
			if (keep == NULL) {
				rc = embd_err_set(e, -ENOMEM, "out of memory");
				goto fail;
			}
			memset(keep, 1, (size_t)tv->rows);
			if (first_skip != NULL && first_skip[0] == '\0')
				snprintf(first_skip, 256, "%s", msg);
		}
		keep[r] = 0;
		dropped++;
	}
	uint64_t rows = tv->rows - dropped;
	if (rows == 0) {
		rc = embd_err_set(e, EMBD_EFORMAT, "no vectors: every word was left out");
		goto fail;
	}
	/* One mark on both files, before either is renamed: a load refuses halves of two converts (pair.h). */
	(void)embd_pair_mark(p->fd_npy, p->fd_vocab);
	if ((rc = finish(&p->fd_npy, write_npy(p->fd_npy, tv, keep, rows))) != 0) {
		rc =
		    embd_err_set(e, rc, "%s: %s", p->npy_tmp, rc == EMBD_EINTERNAL ? "header too long" : strerror(-rc));
		goto fail;
	}
	if ((rc = finish(&p->fd_vocab, write_vocab(p->fd_vocab, tv, keep))) != 0) {
		rc = embd_err_set(e, rc, "%s: %s", p->vocab_tmp, strerror(-rc));
		goto fail;
	}
	if ((rc = pair_install(p, e)) != 0)
		goto fail;
	sync_dir(p->npy_path);
	sync_dir(p->vocab_path);
	free(keep);
	if (rows_written != NULL)
		*rows_written = rows;
	if (skipped != NULL)
		*skipped += dropped;
	return 0;
fail:
	free(keep);
	/* Whichever temporary file is closed already is unlinked here too (a no-op once renamed away). */
	pair_abort(p);
	unlink(p->npy_tmp);
	unlink(p->vocab_tmp);
	return rc;
}

int embd_convert_write(const embd_textvec *tv, const char *npy_path, const char *vocab_path, int skip_bad,
                       uint64_t *rows_written, uint64_t *skipped, char *first_skip, embd_err *e)
{
	pair p;
	int rc = pair_open(&p, npy_path, vocab_path, e);
	return rc != 0 ? rc : pair_commit(&p, tv, skip_bad, rows_written, skipped, first_skip, e);
}

int embd_convert_file(const char *in_path, const char *npy_path, const char *vocab_path, const embd_convert_opts *o,
                      embd_convert_result *r, embd_err *e)
{
	embd_convert_result scratch;
	if (r == NULL)
		r = &scratch;
	memset(r, 0, sizeof *r);
	/* The outputs are never the input, nor anything but regular files (a device, a FIFO). */
	if (same_file(in_path, npy_path) || same_file(in_path, vocab_path))
		return embd_err_set(e, EMBD_ECONFIG, "%s: the output would overwrite the input; name another file",
		                    same_file(in_path, npy_path) ? npy_path : vocab_path);
	/* Read, not mapped: a file cut short while it is read is an error, not a SIGBUS. */
	unsigned char *map;
	size_t len;
	int rc = embd_file_read(in_path, &map, &len, e);
	if (rc != 0)
		return rc;
	r->in_bytes = len;
	const unsigned char *buf = map;
	embd_textvec_kind kind = o != NULL ? o->kind : EMBD_TEXTVEC_NONE;
	if (kind == EMBD_TEXTVEC_NONE)
		kind = embd_textvec_sniff(buf, len);
	if (kind == EMBD_TEXTVEC_NONE) {
		rc = embd_err_set(
		    e, EMBD_EFORMAT,
		    "%s: not GloVe, word2vec/fastText text or word2vec binary (line 1 is neither a `rows dim` "
		    "header nor a word and numbers); --format forces one",
		    in_path);
		embd_file_free(map, len);
		return rc;
	}
	r->kind = kind;
	embd_textvec_opts to = {0};
	if (o != NULL) {
		to.skip_bad = o->skip_bad;
		to.threads = o->threads;
		to.bytes_done = o->bytes_done;
	}
	pair p;
	if ((rc = pair_open(&p, npy_path, vocab_path, e)) != 0) {
		embd_file_free(map, len);
		return rc;
	}
	embd_textvec tv;
	embd_err pe;
	uint64_t t0 = embd_now_ns();
	rc = embd_textvec_parse(buf, len, kind, &to, &tv, &pe);
	embd_file_free(map, len);
	r->parse_ns = embd_now_ns() - t0;
	if (rc != 0) {
		pair_abort(&p);
		return embd_err_set(e, rc, "%s: %s", in_path, pe.msg);
	}
	r->dim = tv.dim;
	r->skipped = tv.skipped;
	memcpy(r->first_skip, tv.first_skip, sizeof r->first_skip);
	t0 = embd_now_ns();
	rc = pair_commit(&p, &tv, to.skip_bad, &r->rows, &r->skipped, r->first_skip, &pe);
	r->write_ns = embd_now_ns() - t0;
	embd_textvec_free(&tv);
	if (rc == EMBD_EFORMAT) /* a word of the input that no vocabulary file can hold */
		return embd_err_set(e, rc, "%s: %s", in_path, pe.msg);
	if (rc != 0)
		return embd_err_set(e, rc, "%s", pe.msg);
	return 0;
}

int embd_convert_vocab_path(const char *npy_path, char *dst, size_t cap)
{
	size_t n = strlen(npy_path);
	if (n >= 4 && strcmp(npy_path + n - 4, ".npy") == 0)
		n -= 4;
	int k = snprintf(dst, cap, "%.*s.vocab", (int)n, npy_path);
	if (k < 0 || (size_t)k >= cap)
		return EMBD_EOVERFLOW;
	return 0;
}
