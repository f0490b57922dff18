/* Response encoders: shortest float text, JSON rows, converted binary rows. */
#include "encode.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

static int round_trips(float v, int digits, char *buf, size_t *len)
{
	int n = snprintf(buf, EMBD_F32_TEXT_MAX + 1, "%.*g", digits, (double)v);
	*len = (size_t)n;
	return strtof(buf, NULL) == v;
}

size_t embd_f32_shortest(float v, char *buf)
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
	size_t len;
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

uint64_t embd_json_rows_bound(uint64_t nrows, uint64_t dim, size_t nids)
{
	/* Per element: the longest number and a comma. Per row: brackets and a comma. Per id: 19 digits and a comma. */
	return 128 + nrows * (dim * (EMBD_F32_TEXT_MAX + 1) + 3) + (uint64_t)nids * 20;
}

int embd_encode_transforms(const embd_matrix_info *m, const embd_encode_opts *o)
{
	return o->dtype != m->dtype || o->normalize;
}

/* Row r of the matrix as float32 in scratch, normalised and rounded to the wire dtype as asked. */
static void load_row(const embd_matrix_info *m, uint64_t r, const embd_encode_opts *o, float *scratch)
{
	const unsigned char *src = m->data + r * m->row_bytes;
	for (size_t j = 0; j < m->dim; j++)
		scratch[j] = embd_dtype_load(m->dtype, src, j);
	if (o->normalize)
		embd_ops_l2_normalize(scratch, m->dim);
}

size_t embd_json_rows_write(char *dst, const embd_matrix_info *m, const embd_run *runs, size_t nruns,
                            const embd_ids *ids, const embd_encode_opts *o, float *scratch)
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
	memcpy(p, ",\"rows\":[", 9);
	p += 9;
	int first_row = 1;
	for (size_t k = 0; k < nruns; k++) {
		for (uint64_t r = runs[k].start; r < runs[k].start + runs[k].count; r++) {
			load_row(m, r, o, scratch);
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
	return (size_t)(p - dst);
}

void embd_rows_convert(void *dst, const embd_matrix_info *m, const embd_run *runs, size_t nruns,
                       const embd_encode_opts *o, float *scratch)
{
	unsigned char *d = dst;
	size_t out_row = m->dim * embd_dtype_size(o->dtype);
	for (size_t k = 0; k < nruns; k++) {
		for (uint64_t r = runs[k].start; r < runs[k].start + runs[k].count; r++) {
			load_row(m, r, o, scratch);
			embd_dtype_store(o->dtype, d, scratch, m->dim);
			d += out_row;
		}
	}
}

/* Length of the valid UTF-8 sequence at s, or 0. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];
	size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
	if (c >= 0xf5)
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

size_t embd_json_escape(char *dst, size_t cap, const char *s)
{
	size_t k = 0;
	const unsigned char *p = (const unsigned char *)s;
	while (*p && cap > 0) {
		char tmp[8];
		const char *out = tmp;
		size_t n, adv = 1;
		if (*p == '"' || *p == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)*p;
			n = 2;
		} else if (*p < 0x20) {
			n = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", *p);
		} else if (*p < 0x80) {
			tmp[0] = (char)*p;
			n = 1;
		} else if ((adv = utf8_len(p)) != 0) {
			out = (const char *)p;
			n = adv;
		} else {
			out = "\\ufffd";
			n = 6;
			adv = 1;
		}
		if (k + n >= cap)
			break;
		memcpy(dst + k, out, n);
		k += n;
		p += adv;
	}
	if (cap > 0)
		dst[k] = '\0';
	return k;
}
