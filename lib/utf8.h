/* The one UTF-8 validator: well-formed sequences by Unicode's Table 3-7, validity, repair. */
#ifndef EMBD_UTF8_H
#define EMBD_UTF8_H

#include <stddef.h>

/*
 * The well-formed UTF-8 sequence of 2 to 4 bytes at s (s[0] >= 0x80), by
 * Unicode's Table 3-7 (RFC 3629): its length, or 0 when it is ill-formed,
 * with *bad the length of its maximal ill-formed subpart (1 to 3 bytes),
 * which a repair replaces by one U+FFFD. The second byte's range shuts out
 * overlongs (C0, C1, E0 80-9F, F0 80-8F), surrogates (ED A0-BF) and code
 * points past U+10FFFF (F4 90-BF, F5-FF). Reads at most avail bytes (a
 * sequence cut short by avail is ill-formed); a NUL-terminated s may pass
 * SIZE_MAX, since NUL is not a continuation byte, so no read passes it.
 * Pure; thread-safe.
 */
size_t embd_utf8_seq(const unsigned char *s, size_t avail, size_t *bad);

/*
 * Length of the longest prefix of s (n bytes, borrowed) that is well-formed
 * UTF-8 (as embd_utf8_seq: no overlongs, surrogates or code points past
 * U+10FFFF; Python's strict decoder agrees) without a NUL byte; n when all
 * of it is. Thread-safe.
 */
size_t embd_utf8_valid_len(const void *s, size_t n);

/*
 * Copy s (NUL-terminated, borrowed; any bytes) into dst as valid UTF-8: each
 * maximal ill-formed subpart becomes U+FFFD (EF BF BD), by the same rule as
 * embd_json_escape; nothing is escaped. Writes at most cap-1 bytes and a NUL
 * (nothing when cap is 0), never half a character. Returns the length.
 * Thread-safe.
 */
size_t embd_utf8_sanitize(char *dst, size_t cap, const char *s);

#endif
