/* Small parsers of untrusted request text: percent-decoding, decimal integers, Accept media ranges. */
#ifndef EMBD_QUERY_H
#define EMBD_QUERY_H

#include <stddef.h>
#include <stdint.h>

/*
 * Percent-decodes the NUL-terminated s in place and returns its new length
 * (never longer than before). "%00" becomes the two bytes C0 80 (a NUL in
 * "modified UTF-8"), not a NUL: a NUL would cut the C string short, so
 * "ids=1%002" would quietly read as "ids=1"; C0 80 is neither a digit nor
 * valid UTF-8, so it fails the parser of whatever it was meant for, and it
 * cannot be taken for the three characters "%00" (which come as "%2500"). A '%' not followed by two
 * hex digits is kept as it is, as libmicrohttpd does. '+' is left alone:
 * libmicrohttpd has already made it a space before this runs, as form
 * encoding says (a '+' in a token comes as %2B). Thread-safe.
 */
size_t embd_query_unescape(char *s);

/*
 * A non-negative decimal integer that is all of s (borrowed, NUL-terminated):
 * digits only, no sign, no spaces. 0 and *out set; -EINVAL when s is empty or
 * holds anything but digits; -ERANGE past 2^64-1. Thread-safe.
 */
int embd_query_u64(const char *s, uint64_t *out);

/*
 * Which of the n (at most 16) media types in types[] ("type/subtype") an
 * Accept header value (borrowed, NUL-terminated, untrusted) prefers. Each
 * type takes the q of the most specific range naming it (the exact type,
 * then its type with a star subtype, then the star-slash-star wildcard;
 * case-insensitive), as RFC 9110 says, so a client can rule out JSON with
 * "application/json;q=0" and take anything else; a qvalue that is not one
 * counts as 0. The highest q above 0 wins; a tie goes to the type whose
 * range was listed first, then to the earlier entry of types[]. Returns the
 * index, or -1 when no type is acceptable. Thread-safe.
 */
int embd_query_accept(const char *accept, const char *const *types, int n);

/*
 * Does the nesting of [ and { outside strings in text (n bytes, untrusted)
 * stay within max? Errs towards "no" on malformed text. For JSON handed to a
 * recursive parser (jansson): deep nesting is refused before it recurses.
 * Thread-safe.
 */
int embd_json_nesting_within(const void *text, size_t n, int max);

#endif
