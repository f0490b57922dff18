/* Element types and the float32 <-> float16 / bfloat16 conversions. */
#include "dtype.h"

#include <string.h>

#include "error.h"

static const struct {
	const char *name;
	const char *alias;
	const char *npy;
	size_t size;
} types[EMBD_DTYPE_COUNT] = {
    [EMBD_F32] = {"f32", "float32", "<f4", 4},
    [EMBD_F16] = {"f16", "float16", "<f2", 2},
    [EMBD_BF16] = {"bf16", "bfloat16", NULL, 2},
};

size_t embd_dtype_size(embd_dtype t)
{
	return types[t].size;
}

const char *embd_dtype_name(embd_dtype t)
{
	return types[t].name;
}

const char *embd_dtype_npy_descr(embd_dtype t)
{
	return types[t].npy;
}

int embd_dtype_parse(const char *name, embd_dtype *out)
{
	for (int t = 0; t < EMBD_DTYPE_COUNT; t++) {
		if (strcmp(name, types[t].name) == 0 || strcmp(name, types[t].alias) == 0) {
			*out = (embd_dtype)t;
			return 0;
		}
	}
	return EMBD_EBADPARAM;
}

static uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	return u;
}

static float bits_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

float embd_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t man = h & 0x3ffu;
	if (exp == 0x1f) /* Inf or NaN; keep the payload. */
		return bits_f32(sign | 0x7f800000u | (man << 13));
	if (exp == 0) {
		if (man == 0)
			return bits_f32(sign);
		/* Subnormal half: value is man * 2^-24, exact in float32. */
		float v = (float)man * 0x1p-24f;
		return sign ? -v : v;
	}
	return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t embd_f32_to_f16(float f)
{
	uint32_t u = f32_bits(f);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
	uint32_t abs = u & 0x7fffffffu;
	if (abs >= 0x7f800000u) /* Inf stays Inf, NaN stays a quiet NaN. */
		return (uint16_t)(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u | ((abs >> 13) & 0x3ffu) : 0));
	if (abs >= 0x477ff000u) /* Rounds to beyond the largest half (65504): Inf. */
		return (uint16_t)(sign | 0x7c00u);
	if (abs < 0x38800000u) {
		/* Result is subnormal or zero: round abs * 2^24 to an integer, ties to even. */
		if (abs < 0x33000000u) /* below half the smallest subnormal */
			return sign;
		uint32_t man = (abs & 0x7fffffu) | 0x800000u;
		unsigned shift = 126u - (abs >> 23);
		uint32_t half = man >> shift;
		uint32_t rem = man & ((1u << shift) - 1u);
		uint32_t mid = 1u << (shift - 1u);
		if (rem > mid || (rem == mid && (half & 1u)))
			half++;
		return (uint16_t)(sign | half);
	}
	/* Normal: rebias the exponent and round the 13 dropped bits, ties to even. */
	uint32_t r = abs - 0x38000000u;
	uint32_t lsb = (r >> 13) & 1u;
	r += 0xfffu + lsb;
	return (uint16_t)(sign | (r >> 13));
}

float embd_bf16_to_f32(uint16_t b)
{
	return bits_f32((uint32_t)b << 16);
}

uint16_t embd_f32_to_bf16(float f)
{
	uint32_t u = f32_bits(f);
	if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a quiet NaN. */
		return (uint16_t)((u >> 16) | 0x40u);
	uint32_t lsb = (u >> 16) & 1u;
	return (uint16_t)((u + 0x7fffu + lsb) >> 16);
}

float embd_dtype_load(embd_dtype t, const void *src, size_t i)
{
	const unsigned char *p = src;
	if (t == EMBD_F32) {
		float f;
		memcpy(&f, p + i * 4, 4);
		return f;
	}
	uint16_t h;
	memcpy(&h, p + i * 2, 2);
	return t == EMBD_F16 ? embd_f16_to_f32(h) : embd_bf16_to_f32(h);
}

void embd_dtype_store(embd_dtype t, void *dst, const float *src, size_t n)
{
	unsigned char *p = dst;
	if (t == EMBD_F32) {
		memcpy(p, src, n * 4);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		uint16_t h = t == EMBD_F16 ? embd_f32_to_f16(src[i]) : embd_f32_to_bf16(src[i]);
		memcpy(p + i * 2, &h, 2);
	}
}
