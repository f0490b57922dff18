/* Response encoders: shortest float text, JSON rows, converted binary rows, JSON string escaping. */
#include "encode.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "utf8.h"

static size_t format_g(char *buf, int neg, uint64_t c, int k);

static int round_trips(float v, int digits, char *buf, size_t *len)
{
	char text[40];
	snprintf(text, sizeof text, "%.*e", digits - 1, (double)v);
	if (strtof(text, NULL) != v)
		return 0;
	/* text is [-]d.ddde[+-]XX: its digits c and exponent k (v = c * 10^k), laid out by format_g. */
	const char *p = text;
	int neg = *p == '-';
	p += neg;
	uint64_t c = 0;
	int ndig = 0;
	for (; *p != 'e'; p++)
		if (*p != '.') {
			c = c * 10 + (uint64_t)(*p - '0');
			ndig++;
		}
	int k = (int)strtol(p + 1, NULL, 10) - (ndig - 1);
	*len = format_g(buf, neg, c, k);
	return 1;
}

size_t embd_f32_shortest_ref(float v, char *buf)
{
	if (!isfinite(v)) {
		memcpy(buf, "null", 4);
		return 4;
	}
	if (v == 0.0f) {
		if (signbit(v)) {
			memcpy(buf, "-0.0", 4);
			return 4;
		}
		buf[0] = '0';
		return 1;
	}
	size_t len = 0; /* nine digits always read back to a float32: round_trips(9) sets it */
	uint32_t bits;
	memcpy(&bits, &v, sizeof bits);
	/*
	 * Away from powers of two the round-trip interval is symmetric, so if p
	 * digits read back so do p+1: probe 7 digits first, then walk the short
	 * side. At a power of two the interval is lopsided: try every length.
	 */
	if ((bits & 0x7fffffu) != 0 && !round_trips(v, 7, buf, &len)) {
		if (!round_trips(v, 8, buf, &len))
			round_trips(v, 9, buf, &len);
		return len;
	}
	for (int p = 1; p < 9; p++)
		if (round_trips(v, p, buf, &len))
			return len;
	round_trips(v, 9, buf, &len);
	return len;
}

/*
 * The fast path: exact integer arithmetic on the float's rounding interval.
 * v = m2 * 2^e2; in units of 2^(e2-2) v is V = 4*m2 and the decimals that
 * read back to v lie within [V - 2, V + 2] (V - 1 below a power of two),
 * ends included when m2 is even (strtof rounds ties to even). The shortest
 * text is a multiple of the largest power of ten 10^k that has a multiple in
 * the interval; of those multiples, the one closest to v.
 */
typedef unsigned __int128 u128;

static const uint64_t pow5_64[28] = {1u,
                                     5u,
                                     25u,
                                     125u,
                                     625u,
                                     3125u,
                                     15625u,
                                     78125u,
                                     390625u,
                                     1953125u,
                                     9765625u,
                                     48828125u,
                                     244140625u,
                                     1220703125u,
                                     6103515625u,
                                     30517578125u,
                                     152587890625u,
                                     762939453125u,
                                     3814697265625u,
                                     19073486328125u,
                                     95367431640625u,
                                     476837158203125u,
                                     2384185791015625u,
                                     11920928955078125u,
                                     59604644775390625u,
                                     298023223876953125u,
                                     1490116119384765625u,
                                     7450580596923828125u};

static u128 pow5(int s)
{
	return s <= 27 ? pow5_64[s] : (u128)pow5_64[27] * pow5_64[s - 27];
}

/*
 * floor(a * 2^e / 10^k) for a < 2^28 and the k this file asks about;
 * *exact says whether nothing was dropped. Returns -1 when the quotient
 * would not fit, which sends the caller to the reference path.
 */
static int64_t scaled_floor(uint64_t a, int e, int k, int *exact)
{
	int t = e - k, s = -k; /* a * 2^t * 5^s */
	if (s > 54 || s < -54)
		return -1;
	if (s >= 0 && t >= 0) {
		*exact = 1;
		if (t > 60)
			return -1;
		u128 q = (u128)a * pow5(s) << t;
		return q >> 62 ? -1 : (int64_t)q;
	}
	if (s >= 0) { /* a * 5^s / 2^r, the product up to three 64-bit limbs */
		int r = -t;
		u128 p = pow5(s);
		u128 x = (u128)a * (uint64_t)p;
		u128 y = (u128)a * (uint64_t)(p >> 64) + (x >> 64); /* product = y * 2^64 + (uint64_t)x */
		uint64_t lo = (uint64_t)x;
		u128 q;
		if (r >= 64) {
			if (r - 64 >= 127)
				return -1;
			q = y >> (r - 64);
			*exact = lo == 0 && (y & (((u128)1 << (r - 64)) - 1)) == 0;
		} else {
			if (y >> 64)
				return -1;
			u128 n = (y << 64) | lo;
			q = n >> r;
			*exact = (n & (((u128)1 << r) - 1)) == 0;
		}
		return q >> 62 ? -1 : (int64_t)q;
	}
	/* k > 0: divide by 5^k and by what is left of 2^k. */
	if (t > 90 || t < -30)
		return -1;
	u128 num = t >= 0 ? (u128)a << t : a;
	u128 den = pow5(-s) << (t < 0 ? -t : 0);
	u128 q = num / den;
	*exact = num % den == 0;
	return q >> 62 ? -1 : (int64_t)q;
}

/* The multiples c of 10^k with c * 10^k inside the interval: [*c_lo, *c_hi]; 0 if none, -1 to give up. */
static int candidates(uint64_t lo, uint64_t hi, int inclusive, int e, int k, int64_t *c_lo, int64_t *c_hi)
{
	int ex_lo, ex_hi;
	int64_t fl = scaled_floor(lo, e, k, &ex_lo), fh = scaled_floor(hi, e, k, &ex_hi);
	if (fl < 0 || fh < 0)
		return -1;
	*c_lo = ex_lo && inclusive ? fl : fl + 1;
	*c_hi = ex_hi && !inclusive ? fh - 1 : fh;
	return *c_lo <= *c_hi;
}

/* Write c times 10^k (c without trailing zeros: the fewest digits) as Python's repr writes a float. */
static size_t format_g(char *buf, int neg, uint64_t c, int k)
{
	if (c == 0) { /* not reached: a nonzero float has a nonzero digit */
		buf[0] = '0';
		return 1;
	}
	while (c % 10 == 0) {
		c /= 10;
		k++;
	}
	char d[24];
	int p = 0;
	for (uint64_t x = c; x; x /= 10)
		d[p++] = (char)('0' + x % 10);
	for (int i = 0; i < p / 2; i++) {
		char tmp = d[i];
		d[i] = d[p - 1 - i];
		d[p - 1 - i] = tmp;
	}
	int x10 = k + p - 1; /* the exponent of the leading digit */
	char *o = buf;
	if (neg)
		*o++ = '-';
	if (x10 < -4 || x10 >= 16) {
		*o++ = d[0];
		if (p > 1) {
			*o++ = '.';
			memcpy(o, d + 1, (size_t)p - 1);
			o += p - 1;
		}
		*o++ = 'e';
		*o++ = x10 < 0 ? '-' : '+';
		int ax = x10 < 0 ? -x10 : x10;
		if (ax >= 10) {
			*o++ = (char)('0' + ax / 10);
			*o++ = (char)('0' + ax % 10);
		} else {
			*o++ = '0';
			*o++ = (char)('0' + ax);
		}
	} else if (x10 >= 0) {
		if (p > x10) {
			memcpy(o, d, (size_t)x10 + 1);
			o += x10 + 1;
		} else { /* an integer with trailing zeros: 10, 1000000 */
			memcpy(o, d, (size_t)p);
			memset(o + p, '0', (size_t)(x10 + 1 - p));
			o += x10 + 1;
		}
		if (p > x10 + 1) {
			*o++ = '.';
			memcpy(o, d + x10 + 1, (size_t)(p - x10 - 1));
			o += p - x10 - 1;
		}
	} else {
		*o++ = '0';
		*o++ = '.';
		for (int i = 0; i < -x10 - 1; i++)
			*o++ = '0';
		memcpy(o, d, (size_t)p);
		o += p;
	}
	return (size_t)(o - buf);
}

size_t embd_f32_shortest(float v, char *buf)
{
	uint32_t bits;
	memcpy(&bits, &v, sizeof bits);
	uint32_t exp = (bits >> 23) & 0xffu, man = bits & 0x7fffffu;
	if (exp == 0xff || (exp == 0 && man == 0))
		return embd_f32_shortest_ref(v, buf); /* null, 0 and -0.0 */
	uint64_t m2 = exp ? man | 0x800000u : man;
	int e2 = exp ? (int)exp - 150 : -149;
	uint64_t V = 4 * m2, hi = V + 2, lo = V - (man == 0 && exp > 1 ? 1 : 2);
	int inclusive = (m2 & 1) == 0;
	int e = e2 - 2;
	/* floor(log10(2^e2)) + 1 is as far up as the interval's width can reach... */
	int k = (int)((e2 * 78913) >> 18) + 1;
	int64_t c_lo, c_hi;
	int found = 0;
	for (int tries = 0; tries < 4 && !found; tries++, k--) {
		found = candidates(lo, hi, inclusive, e, k, &c_lo, &c_hi);
		if (found < 0)
			return embd_f32_shortest_ref(v, buf);
	}
	if (!found)
		return embd_f32_shortest_ref(v, buf);
	k++;
	/* ...but a round value (100, 0.5) is a multiple of a larger power: climb while there are candidates. */
	for (;;) {
		int64_t l2, h2;
		int more = candidates(lo, hi, inclusive, e, k + 1, &l2, &h2);
		if (more < 0)
			return embd_f32_shortest_ref(v, buf);
		if (!more)
			break;
		k++;
		c_lo = l2;
		c_hi = h2;
	}
	/* The candidate closest to v: round v / 10^k to nearest (ties to even), then keep it inside. */
	int ex;
	int64_t q2 = scaled_floor(2 * V, e, k, &ex);
	if (q2 < 0)
		return embd_f32_shortest_ref(v, buf);
	int64_t c = q2 / 2;
	if ((q2 & 1) && (!ex || (c & 1)))
		c++;
	if (c < c_lo)
		c = c_lo;
	if (c > c_hi)
		c = c_hi;
	if (c <= 0) /* cannot happen: the interval's lower end is above 0; the reference answers if it does */
		return embd_f32_shortest_ref(v, buf);
	return format_g(buf, (int)(bits >> 31), (uint64_t)c, k);
}

uint64_t embd_json_rows_bound(uint64_t nrows, uint64_t dim, size_t nids)
{
	/*
	 * Fixed: {"shape":[N,D],"dtype":"bf16","ids":[],"rows":[]} is 87 bytes with
	 * 20-digit N and D. Per row: per element the longest number and a comma,
	 * then two brackets and a comma. Per id: the longest int64 text
	 * ("-9223372036854775808", 20 bytes; ids reach here validated, but the
	 * bound does not lean on that) and a comma.
	 */
	const uint64_t fixed = 128, per_elem = EMBD_F32_TEXT_MAX + 1, per_id = 21;
	if (dim > (UINT64_MAX - 3) / per_elem)
		return UINT64_MAX;
	uint64_t per_row = dim * per_elem + 3;
	if (nrows > (UINT64_MAX - fixed) / per_row)
		return UINT64_MAX;
	uint64_t total = fixed + nrows * per_row;
	if (nids > (UINT64_MAX - total) / per_id)
		return UINT64_MAX;
	return total + (uint64_t)nids * per_id;
}

int embd_encode_transforms(const embd_matrix_info *m, const embd_encode_opts *o)
{
	return o->dtype != m->dtype || o->normalize;
}

/* Row r of the matrix as float32 in scratch, normalised and rounded to the wire dtype as asked. */
static void load_row(const embd_matrix_info *m, uint64_t r, const embd_encode_opts *o, float *scratch)
{
	if (r == EMBD_RUN_ZERO) {
		memset(scratch, 0, m->dim * sizeof *scratch);
		return;
	}
	embd_dtype_convert(EMBD_F32, scratch, m->dtype, m->data + r * m->row_bytes, m->dim);
	if (o->normalize)
		embd_ops_l2_normalize(scratch, m->dim);
}

size_t embd_json_rows_write(char *dst, const embd_matrix_info *m, const embd_run *runs, size_t nruns,
                            const embd_ids *ids, const embd_token *tokens, size_t ntokens, const embd_encode_opts *o,
                            float *scratch)
{
	char *p = dst;
	uint64_t nrows = embd_plan_rows(runs, nruns);
	p += sprintf(p, "{\"shape\":[%llu,%llu],\"dtype\":\"%s\"", (unsigned long long)nrows,
	             (unsigned long long)m->dim, embd_dtype_name(o->dtype));
	if (ids != NULL) {
		memcpy(p, ",\"ids\":[", 8);
		p += 8;
		for (size_t i = 0; i < ids->n; i++)
			p += sprintf(p, i ? ",%lld" : "%lld", (long long)embd_ids_at(ids, i));
		*p++ = ']';
	}
	if (tokens != NULL) {
		memcpy(p, ",\"tokens\":[", 11);
		p += 11;
		for (size_t i = 0; i < ntokens; i++) {
			if (i)
				*p++ = ',';
			*p++ = '"';
			p += embd_json_escape(p, tokens[i].len * 6 + 1, tokens[i].p);
			*p++ = '"';
		}
		*p++ = ']';
	}
	memcpy(p, ",\"rows\":[", 9);
	p += 9;
	int first_row = 1;
	for (size_t k = 0; k < nruns; k++) {
		for (uint64_t i = 0; i < runs[k].count; i++) {
			load_row(m, runs[k].start == EMBD_RUN_ZERO ? EMBD_RUN_ZERO : runs[k].start + i, o, scratch);
			if (!first_row)
				*p++ = ',';
			first_row = 0;
			*p++ = '[';
			for (size_t j = 0; j < m->dim; j++) {
				float v = scratch[j];
				if (o->dtype == EMBD_F16)
					v = embd_f16_to_f32(embd_f32_to_f16(v));
				else if (o->dtype == EMBD_BF16)
					v = embd_bf16_to_f32(embd_f32_to_bf16(v));
				if (j)
					*p++ = ',';
				p += embd_f32_shortest(v, p);
			}
			*p++ = ']';
		}
	}
	*p++ = ']';
	*p++ = '}';
	/* The bound is the only guard of dst (the hot loop has no capacity checks): a miss is a bug, loudly. */
	assert((uint64_t)(p - dst) <= embd_json_rows_bound(nrows, m->dim, ids != NULL ? ids->n : 0) +
	                                  (tokens != NULL ? embd_tokens_json_bound(tokens, ntokens) : 0));
	return (size_t)(p - dst);
}

void embd_rows_convert(void *dst, const embd_matrix_info *m, const embd_run *runs, size_t nruns,
                       const embd_encode_opts *o, float *scratch)
{
	unsigned char *d = dst;
	size_t out_row = m->dim * embd_dtype_size(o->dtype);
	if (!o->normalize) {
		/* A dtype change alone: each run (consecutive rows) straight from the mapping, in one call. */
		for (size_t k = 0; k < nruns; k++) {
			size_t n = (size_t)runs[k].count * m->dim;
			if (runs[k].start == EMBD_RUN_ZERO)
				memset(d, 0, (size_t)runs[k].count * out_row); /* +0 in every dtype */
			else
				embd_dtype_convert(o->dtype, d, m->dtype, m->data + runs[k].start * m->row_bytes, n);
			d += (size_t)runs[k].count * out_row;
		}
		return;
	}
	for (size_t k = 0; k < nruns; k++) {
		for (uint64_t i = 0; i < runs[k].count; i++) {
			load_row(m, runs[k].start == EMBD_RUN_ZERO ? EMBD_RUN_ZERO : runs[k].start + i, o, scratch);
			embd_dtype_store(o->dtype, d, scratch, m->dim);
			d += out_row;
		}
	}
}

size_t embd_json_escape(char *dst, size_t cap, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t k = 0;
	const unsigned char *p = (const unsigned char *)s;
	if (cap == 0)
		return 0;
	while (*p) {
		char tmp[6];
		const char *out = tmp;
		size_t n, adv = 1;
		if (*p == '"' || *p == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)*p;
			n = 2;
		} else if (*p < 0x20) {
			memcpy(tmp, "\\u00", 4);
			tmp[4] = hex[*p >> 4];
			tmp[5] = hex[*p & 0xf];
			n = 6;
		} else if (*p < 0x80) {
			tmp[0] = (char)*p;
			n = 1;
		} else if ((adv = embd_utf8_seq(p, SIZE_MAX, &n)) == 0) {
			adv = n;
			out = "\\ufffd";
			n = 6;
		} else if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
			/* U+2028 and U+2029 are valid JSON but end a line in JavaScript before ES2019. */
			out = p[2] == 0xa8 ? "\\u2028" : "\\u2029";
			n = 6;
		} else {
			out = (const char *)p;
			n = adv;
		}
		/* A unit that does not fit ends the text: never half a sequence or half an escape. */
		if (n >= cap - k)
			break;
		memcpy(dst + k, out, n);
		k += n;
		p += adv;
	}
	dst[k] = '\0';
	return k;
}

uint64_t embd_json_hits_bound(const embd_hit *hits, size_t n, const embd_vocab *v)
{
	/* Per hit: {"id":<20 digits>,"token":"","score":<17>}, and a comma: 64 bytes; a token six per byte. */
	uint64_t total = 2;
	for (size_t i = 0; i < n; i++) {
		size_t len = 0;
		if (v != NULL && embd_vocab_token(v, hits[i].id, &len) == NULL)
			len = 0;
		if (len > (UINT64_MAX - total - 64) / 6)
			return UINT64_MAX;
		total += 64 + (uint64_t)len * 6;
	}
	return total;
}

size_t embd_json_hits_write(char *dst, const embd_hit *hits, size_t n, const embd_vocab *v)
{
	char *p = dst;
	*p++ = '[';
	for (size_t i = 0; i < n; i++) {
		p += sprintf(p, "%s{\"id\":%llu", i ? "," : "", (unsigned long long)hits[i].id);
		size_t len = 0;
		const char *tok = v != NULL ? embd_vocab_token(v, hits[i].id, &len) : NULL;
		if (tok != NULL) {
			memcpy(p, ",\"token\":\"", 10);
			p += 10;
			p += embd_json_escape(p, len * 6 + 1, tok);
			*p++ = '"';
		}
		memcpy(p, ",\"score\":", 9);
		p += 9;
		p += embd_f32_shortest(hits[i].score, p);
		*p++ = '}';
	}
	*p++ = ']';
	assert((uint64_t)(p - dst) <= embd_json_hits_bound(hits, n, v));
	return (size_t)(p - dst);
}
