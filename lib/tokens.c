/* Token lists from query strings, their look-up, and the out-of-vocabulary policies. */
#include "tokens.h"

#include <stdio.h>
#include <string.h>

#include "utf8.h"

int embd_oov_parse(const char *name, embd_oov *out)
{
	static const char *const names[] = {"error", "zero", "skip"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (strcmp(name, names[i]) == 0) {
			*out = (embd_oov)i;
			return 0;
		}
	}
	return EMBD_EBADPARAM;
}

/* Why the token t (n bytes) cannot be one, or NULL. */
static const char *token_problem(const char *t, size_t n)
{
	if (n == 0)
		return "is empty";
	if (memchr(t, '\0', n) != NULL || memmem(t, n, "\xc0\x80", 2) != NULL)
		return "holds a NUL byte (%00)";
	if (embd_utf8_valid_len(t, n) != n)
		return "is not valid UTF-8";
	return NULL;
}

int embd_tokens_parse_list(const char *s, size_t len, embd_token *out, char *arena, size_t *n, size_t *bytes,
                           embd_err *e)
{
	size_t count = 0, at = 0;
	*n = 0;
	if (len == 0)
		return embd_err_set(e, EMBD_EEMPTY, "the token list is empty");
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != ',')
			continue;
		const char *why = token_problem(s + at, i - at);
		if (why != NULL)
			return embd_err_set(e, EMBD_EBADTOKEN, "tokens[%zu] %s (tokens are separated by commas)", count,
			                    why);
		if (out != NULL) {
			memcpy(arena, s + at, i - at);
			arena[i - at] = '\0';
			out[count] = (embd_token){arena, i - at};
			arena += i - at + 1;
		}
		count++;
		at = i + 1;
	}
	*n = count;
	*bytes = len + count;
	return 0;
}

/* t quoted into dst as far as it fits in cap bytes (at most 40 bytes of it, then "..."); the length. */
static size_t quote(char *dst, size_t cap, const embd_token *t)
{
	char clean[64];
	char cut[44];
	size_t k = t->len > 40 ? 40 : t->len;
	while (k < t->len && k > 0 && ((unsigned char)t->p[k] & 0xC0) == 0x80)
		k--; /* cut between characters, not inside one (tokens are valid UTF-8) */
	memcpy(cut, t->p, k);
	cut[k] = '\0';
	embd_utf8_sanitize(clean, sizeof clean, cut);
	int w = snprintf(dst, cap, "'%s%s'", clean, t->len > 40 ? "..." : "");
	return w < 0 || (size_t)w >= cap ? 0 : (size_t)w;
}

int embd_tokens_resolve(const embd_vocab *v, embd_token *toks, size_t *n, embd_oov oov, int64_t *ids, size_t *unknown,
                        embd_err *e)
{
	size_t missing = 0;
	for (size_t i = 0; i < *n; i++) {
		ids[i] = embd_vocab_find(v, toks[i].p, toks[i].len);
		missing += ids[i] == EMBD_VOCAB_NONE;
	}
	*unknown = missing;
	if (missing == 0 || oov == EMBD_OOV_ZERO)
		return 0;
	if (oov == EMBD_OOV_SKIP) {
		size_t k = 0;
		for (size_t i = 0; i < *n; i++) {
			if (ids[i] == EMBD_VOCAB_NONE)
				continue;
			toks[k] = toks[i];
			ids[k++] = ids[i];
		}
		*n = k;
		return 0;
	}
	/*
	 * The message names as many unknown tokens as fit in it, and how many there were. The list leaves room
	 * for the count before it and " and N more" after it within the 400 bytes an error body keeps of a
	 * message (server/http.c error_json), so the tail is never cut off.
	 */
	char list[300];
	size_t len = 0, listed = 0;
	for (size_t i = 0; i < *n && listed < missing; i++) {
		if (ids[i] != EMBD_VOCAB_NONE)
			continue;
		char one[64];
		size_t w = quote(one, sizeof one, &toks[i]);
		if (w == 0 || len + w + 2 >= sizeof list)
			break;
		len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", listed ? ", " : "", one);
		listed++;
	}
	list[len] = '\0';
	if (listed == missing)
		return embd_err_set(e, EMBD_ETOKEN, "%zu token%s not in the vocabulary: %s", missing,
		                    missing == 1 ? " is" : "s are", list);
	return embd_err_set(e, EMBD_ETOKEN, "%zu tokens are not in the vocabulary: %s and %zu more", missing, list,
	                    missing - listed);
}

uint64_t embd_tokens_json_bound(const embd_token *toks, size_t n)
{
	/* embd_json_escape writes at most six bytes per input byte (\u00XX, or \ufffd for one bad byte). */
	uint64_t total = 2;
	for (size_t i = 0; i < n; i++)
		total += (uint64_t)toks[i].len * 6 + 3;
	return total;
}
