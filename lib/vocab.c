/* Vocabularies: one arena of tokens, an open-addressing table of ids, and the vocabulary-file parser. */
#include "vocab.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "internal.h"
#include "utf8.h"

/*
 * A slot is 0 when empty, else (tag << 32) | (id + 1), where tag is the top
 * 32 bits of the token's hash: a probe that meets another token's slot tells
 * it apart without touching the arena, almost always.
 */
struct embd_vocab {
	char *arena; /* token i is arena + off[i], NUL-terminated */
	size_t arena_len;
	size_t arena_cap;
	uint64_t *off; /* n + 1 entries in use: off[n] == arena_len */
	uint64_t off_cap;
	uint64_t n;
	uint64_t *slots;
	uint64_t cap; /* slots; a power of two, at least 2 * n */
	uint64_t mask;
	uint64_t start_ns;
	uint64_t build_ns;
	size_t max_len; /* the longest token's bytes, once finished */
	int finished;
};

#define MIN_SLOTS 16
/* Lines hashed ahead of their inserts by the file parser. */
#define BATCH 32
/* Longest stretch of a token quoted in an error message. */
#define QUOTE_MAX 40

/*
 * The hash: wyhash's construction (64x64->128-bit multiply-and-fold), which
 * passes SMHasher and reads 16 bytes per multiply. Unaligned reads go
 * through memcpy. The byte order of the machine changes the values, not the
 * quality; nothing hashed is ever stored in a file.
 */
static const uint64_t P0 = 0xa0761d6478bd642fu, P1 = 0xe7037ed1a0b428dbu, P2 = 0x8ebc6af09c88c6e3u,
                      P3 = 0x589965cc75374cc3u;

static inline void mum(uint64_t *a, uint64_t *b)
{
	__uint128_t r = (__uint128_t)*a * *b;
	*a = (uint64_t)r;
	*b = (uint64_t)(r >> 64);
}

static inline uint64_t mix(uint64_t a, uint64_t b)
{
	mum(&a, &b);
	return a ^ b;
}

static inline uint64_t r8(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline uint64_t r4(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint64_t hash(const void *key, size_t len)
{
	const unsigned char *p = key;
	uint64_t seed = P0 ^ P3;
	uint64_t a, b;
	if (len <= 16) {
		if (len >= 4) {
			size_t mid = (len >> 3) << 2;
			a = (r4(p) << 32) | r4(p + mid);
			b = (r4(p + len - 4) << 32) | r4(p + len - 4 - mid);
		} else if (len > 0) {
			a = ((uint64_t)p[0] << 16) | ((uint64_t)p[len >> 1] << 8) | p[len - 1];
			b = 0;
		} else {
			a = b = 0;
		}
	} else {
		size_t i = len;
		if (i > 48) {
			uint64_t s1 = seed, s2 = seed;
			do {
				seed = mix(r8(p) ^ P1, r8(p + 8) ^ seed);
				s1 = mix(r8(p + 16) ^ P2, r8(p + 24) ^ s1);
				s2 = mix(r8(p + 32) ^ P3, r8(p + 40) ^ s2);
				p += 48;
				i -= 48;
			} while (i > 48);
			seed ^= s1 ^ s2;
		}
		while (i > 16) {
			seed = mix(r8(p) ^ P1, r8(p + 8) ^ seed);
			p += 16;
			i -= 16;
		}
		/* The last 16 bytes of the key, overlapping what the loops read: len > 16, so they exist. */
		a = r8(p + i - 16);
		b = r8(p + i - 8);
	}
	a ^= P1;
	b ^= seed;
	mum(&a, &b);
	return mix(a ^ P0 ^ len, b ^ P1);
}

/* Why a token is refused, found in one pass; at is the offending byte's index. */
enum verdict { TOKEN_OK, TOKEN_NUL, TOKEN_NEWLINE, TOKEN_UTF8 };

#define ONES  0x0101010101010101u
#define HIGHS 0x8080808080808080u
/* High bit set in each byte of w that is zero (exact when no byte has its own high bit set, as below). */
#define ZEROS(w) (((w)-ONES) & ~(w)&HIGHS)

/* Well-formed UTF-8 (embd_utf8_seq), no NUL, no newline; 8 ASCII bytes at a time where it can. */
static enum verdict check(const unsigned char *s, size_t n, size_t *at)
{
	size_t i = 0;
	while (i < n) {
		while (n - i >= 8) {
			uint64_t w = r8(s + i);
			if (((w | ZEROS(w) | ZEROS(w ^ (ONES * '\n'))) & HIGHS) != 0)
				break;
			i += 8;
		}
		if (i >= n)
			break;
		unsigned c = s[i];
		*at = i;
		if (c < 0x80) {
			if (c == 0)
				return TOKEN_NUL;
			if (c == '\n')
				return TOKEN_NEWLINE;
			i++;
			continue;
		}
		size_t bad, k = embd_utf8_seq(s + i, n - i, &bad);
		if (k == 0)
			return TOKEN_UTF8;
		i += k;
	}
	return TOKEN_OK;
}

/*
 * Find the token: its id, or EMBD_VOCAB_NONE with *slot at the empty slot
 * where it would go.
 */
static int64_t probe(const embd_vocab *v, const void *tok, size_t len, uint64_t h, uint64_t *slot)
{
	uint64_t tag = h >> 32;
	uint64_t i = h & (v->cap - 1);
	for (;;) {
		uint64_t s = v->slots[i];
		if (s == 0) {
			*slot = i;
			return EMBD_VOCAB_NONE;
		}
		if (s >> 32 == tag) {
			uint64_t id = (s & 0xffffffffu) - 1;
			const uint64_t *o = v->off + id;
			if (o[1] - o[0] - 1 == len && memcmp(v->arena + o[0], tok, len) == 0)
				return (int64_t)id;
		}
		i = (i + 1) & (v->cap - 1);
	}
}

/* Double the table and put every id back: hashes are recomputed from the arena, which is cheap and rare. */
static int grow_table(embd_vocab *v)
{
	uint64_t cap = v->cap * 2;
	uint64_t *slots = calloc(cap, sizeof *slots);
	if (slots == NULL)
		return -ENOMEM;
	for (uint64_t id = 0; id < v->n; id++) {
		uint64_t len = v->off[id + 1] - v->off[id] - 1;
		uint64_t h = hash(v->arena + v->off[id], len) & v->mask;
		uint64_t i = h & (cap - 1);
		while (slots[i] != 0)
			i = (i + 1) & (cap - 1);
		slots[i] = (h >> 32 << 32) | (id + 1);
	}
	free(v->slots);
	v->slots = slots;
	v->cap = cap;
	return 0;
}

/* Room for one more token of len bytes (and its NUL) in the arena and the offsets. */
static int reserve(embd_vocab *v, size_t len)
{
	if (len > SIZE_MAX - 1 - v->arena_len)
		return EMBD_EOVERFLOW;
	size_t need = v->arena_len + len + 1;
	if (need > v->arena_cap) {
		size_t cap = v->arena_cap;
		while (cap < need)
			cap = cap > SIZE_MAX / 2 ? need : cap * 2;
		char *arena = realloc(v->arena, cap);
		if (arena == NULL)
			return -ENOMEM;
		v->arena = arena;
		v->arena_cap = cap;
	}
	if (v->n + 2 > v->off_cap) {
		uint64_t cap = v->off_cap * 2;
		if (cap > SIZE_MAX / sizeof *v->off)
			return -ENOMEM;
		uint64_t *off = realloc(v->off, cap * sizeof *off);
		if (off == NULL)
			return -ENOMEM;
		v->off = off;
		v->off_cap = cap;
	}
	return 0;
}

int embd_vocab_new(uint64_t tokens_hint, size_t bytes_hint, embd_vocab **out)
{
	embd_vocab *v = calloc(1, sizeof *v);
	if (v == NULL)
		return -ENOMEM;
	v->start_ns = embd_now_ns();
	v->mask = UINT64_MAX;
	/* Hints past what could ever be held are treated as unknown rather than trusted. */
	if (tokens_hint > EMBD_VOCAB_MAX)
		tokens_hint = 0;
	v->cap = MIN_SLOTS;
	while (v->cap < 2 * tokens_hint)
		v->cap *= 2;
	v->off_cap = tokens_hint + 1 > 16 ? tokens_hint + 1 : 16;
	/* The arena always exists, so that no path meets a NULL one. */
	v->arena_cap =
	    bytes_hint <= SIZE_MAX - tokens_hint && bytes_hint + tokens_hint > 64 ? bytes_hint + tokens_hint : 64;
	v->arena = malloc(v->arena_cap);
	v->slots = calloc(v->cap, sizeof *v->slots);
	v->off = malloc(v->off_cap * sizeof *v->off);
	if (v->arena == NULL || v->slots == NULL || v->off == NULL)
		goto fail;
	v->off[0] = 0;
	*out = v;
	return 0;
fail:
	embd_vocab_free(v);
	return -ENOMEM;
}

/* Quote at most QUOTE_MAX bytes of a token in a message: the length to print and the ellipsis after it. */
static int quote_len(size_t len)
{
	return (int)(len > QUOTE_MAX ? QUOTE_MAX : len);
}

static const char *quote_tail(size_t len)
{
	return len > QUOTE_MAX ? "..." : "";
}

/*
 * Append one token whose hash (masked) is h. unit and base say how messages
 * name a token's place: ("row", 0) for the builder, ("line", 1) for
 * vocabulary files.
 */
static int add(embd_vocab *v, const void *tok, size_t len, uint64_t h, const char *unit, uint64_t base, embd_err *e)
{
	uint64_t where = v->n + base;
	if (v->finished)
		return embd_err_set(e, EMBD_EINTERNAL, "vocabulary: add after finish");
	if (v->n >= EMBD_VOCAB_MAX)
		return embd_err_set(e, EMBD_EOVERFLOW, "%s %" PRIu64 ": more than %" PRIu64 " tokens", unit, where,
		                    EMBD_VOCAB_MAX);
	if (len == 0)
		return embd_err_set(e, EMBD_EVOCAB, "%s %" PRIu64 ": empty token", unit, where);
	size_t at = 0;
	switch (check(tok, len, &at)) {
	case TOKEN_OK:
		break;
	case TOKEN_NUL:
		return embd_err_set(e, EMBD_EVOCAB, "%s %" PRIu64 ": NUL byte in the token (byte %zu)", unit, where,
		                    at + 1);
	case TOKEN_NEWLINE:
		return embd_err_set(e, EMBD_EVOCAB, "%s %" PRIu64 ": newline in the token (byte %zu)", unit, where,
		                    at + 1);
	case TOKEN_UTF8:
		return embd_err_set(e, EMBD_EVOCAB, "%s %" PRIu64 ": invalid UTF-8 in the token (byte %zu)", unit,
		                    where, at + 1);
	}
	if (((const char *)tok)[len - 1] == '\r')
		return embd_err_set(e, EMBD_EVOCAB, "%s %" PRIu64 ": the token ends in a carriage return", unit, where);
	uint64_t slot = 0; /* set by probe when it answers EMBD_VOCAB_NONE */
	int64_t first = probe(v, tok, len, h, &slot);
	if (first != EMBD_VOCAB_NONE)
		return embd_err_set(e, EMBD_EVOCAB,
		                    "%s %" PRIu64 ": duplicate token \"%.*s%s\" (first at %s %" PRIu64 ")", unit, where,
		                    quote_len(len), (const char *)tok, quote_tail(len), unit, (uint64_t)first + base);
	int rc = reserve(v, len);
	if (rc == 0 && 2 * (v->n + 1) > v->cap) {
		rc = grow_table(v);
		if (rc == 0)
			(void)probe(v, tok, len, h, &slot);
	}
	if (rc != 0)
		return embd_err_set(e, rc, "%s %" PRIu64 ": %s", unit, where,
		                    rc == -ENOMEM ? "out of memory" : "too big");
	memcpy(v->arena + v->arena_len, tok, len);
	v->arena[v->arena_len + len] = '\0';
	v->arena_len += len + 1;
	v->slots[slot] = (h >> 32 << 32) | (v->n + 1);
	v->n++;
	v->off[v->n] = v->arena_len;
	return 0;
}

int embd_vocab_add(embd_vocab *v, const void *tok, size_t len, embd_err *e)
{
	return add(v, tok, len, hash(tok, len) & v->mask, "row", 0, e);
}

void embd_vocab_finish(embd_vocab *v)
{
	if (v->finished)
		return;
	/* Give back what the doubling over-reserved; a failed shrink keeps the larger block, which is fine. */
	if (v->arena_cap > v->arena_len && v->arena_len > 0) {
		char *arena = realloc(v->arena, v->arena_len);
		if (arena != NULL) {
			v->arena = arena;
			v->arena_cap = v->arena_len;
		}
	}
	if (v->off_cap > v->n + 1) {
		uint64_t *off = realloc(v->off, (v->n + 1) * sizeof *off);
		if (off != NULL) {
			v->off = off;
			v->off_cap = v->n + 1;
		}
	}
	for (uint64_t i = 0; i < v->n; i++)
		if (v->off[i + 1] - v->off[i] - 1 > v->max_len)
			v->max_len = (size_t)(v->off[i + 1] - v->off[i] - 1);
	v->finished = 1;
	v->build_ns = embd_now_ns() - v->start_ns;
}

size_t embd_vocab_max_token_bytes(const embd_vocab *v)
{
	return v->max_len;
}

int64_t embd_vocab_find(const embd_vocab *v, const void *tok, size_t len)
{
	uint64_t slot;
	return probe(v, tok, len, hash(tok, len) & v->mask, &slot);
}

const char *embd_vocab_token(const embd_vocab *v, uint64_t id, size_t *len)
{
	if (id >= v->n)
		return NULL;
	if (len != NULL)
		*len = v->off[id + 1] - v->off[id] - 1;
	return v->arena + v->off[id];
}

uint64_t embd_vocab_size(const embd_vocab *v)
{
	return v->n;
}

size_t embd_vocab_bytes(const embd_vocab *v)
{
	return sizeof *v + v->arena_cap + v->off_cap * sizeof *v->off + v->cap * sizeof *v->slots;
}

uint64_t embd_vocab_build_ns(const embd_vocab *v)
{
	return v->build_ns;
}

void embd_vocab_free(embd_vocab *v)
{
	if (v == NULL)
		return;
	free(v->arena);
	free(v->off);
	free(v->slots);
	free(v);
}

void embd_vocab_test_hash_mask(embd_vocab *v, uint64_t mask)
{
	v->mask = mask;
}

int embd_vocab_parse(const char *text, size_t len, uint64_t expect_rows, embd_vocab **out, embd_err *e)
{
	/* Count the lines first so that the table and the arena are sized once: no rehash, no copy. */
	uint64_t newlines = 0;
	for (const char *p = text, *end = text + len; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
		newlines++;
	uint64_t lines = newlines + (len > 0 && text[len - 1] != '\n');
	embd_vocab *v;
	if (embd_vocab_new(lines, len - newlines, &v) != 0)
		return embd_err_set(e, -ENOMEM, "vocabulary of %" PRIu64 " lines: out of memory", lines);
	/*
	 * Lines go in batches: first each line's bounds and hash, with a
	 * prefetch of its slot, then the inserts. A table of a few hundred
	 * thousand tokens is far bigger than the caches, and one line at a time
	 * would wait for each slot's miss in turn; this way they overlap.
	 */
	struct pending {
		const char *tok;
		size_t len;
		uint64_t h;
	} batch[BATCH];
	int rc;
	const char *p = text, *end = text + len;
	while (p < end) {
		size_t k = 0;
		for (; k < BATCH && p < end; k++) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t n = (size_t)((nl != NULL ? nl : end) - p);
			if (n > 0 && p[n - 1] == '\r')
				n--;
			uint64_t h = hash(p, n) & v->mask;
			__builtin_prefetch(&v->slots[h & (v->cap - 1)]);
			batch[k] = (struct pending){p, n, h};
			p = nl != NULL ? nl + 1 : end;
		}
		for (size_t i = 0; i < k; i++)
			if ((rc = add(v, batch[i].tok, batch[i].len, batch[i].h, "line", 1, e)) != 0)
				goto fail;
	}
	if (expect_rows != 0 && v->n != expect_rows) {
		rc = embd_err_set(e, EMBD_EVOCAB,
		                  "the vocabulary has %" PRIu64 " lines but the matrix has %" PRIu64 " rows", v->n,
		                  expect_rows);
		goto fail;
	}
	embd_vocab_finish(v);
	*out = v;
	return 0;
fail:
	embd_vocab_free(v);
	return rc;
}

int embd_vocab_open(const char *path, uint64_t expect_rows, embd_vocab **out, embd_err *e)
{
	uint64_t t0 = embd_now_ns();
	struct stat st;
	int fd = embd_file_open_regular(path, EMBD_EVOCAB, &st, e);
	if (fd < 0)
		return fd;
	char *buf = NULL;
	int rc = 0;
	if ((uint64_t)st.st_size >= SIZE_MAX) {
		rc = embd_err_set(e, EMBD_EOVERFLOW, "%s: %" PRIu64 " bytes do not fit in memory", path,
		                  (uint64_t)st.st_size);
		goto out;
	}
	size_t size = (size_t)st.st_size;
	buf = malloc(size > 0 ? size : 1);
	if (buf == NULL) {
		rc = embd_err_set(e, -ENOMEM, "%s: out of memory for %zu bytes", path, size);
		goto out;
	}
	/* Read what fstat promised, in bounded pieces; a file that shrank meanwhile is parsed as it now is. */
	size_t got = 0;
	while (got < size) {
		size_t want = size - got < ((size_t)1 << 30) ? size - got : (size_t)1 << 30;
		ssize_t r = read(fd, buf + got, want);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = embd_err_set(e, -errno, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	embd_err inner;
	rc = embd_vocab_parse(buf, got, expect_rows, out, &inner);
	if (rc != 0)
		embd_err_set(e, rc, "%s: %s", path, inner.msg);
	else
		(*out)->build_ns = embd_now_ns() - t0;
out:
	free(buf);
	close(fd);
	return rc;
}
