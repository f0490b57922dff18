/* Element types and the float32 <-> float16 / bfloat16 conversions. */
#include "dtype.h"

#include <stdatomic.h>
#include <string.h>

/* EMBD_NO_SIMD (CFLAGS=-DEMBD_NO_SIMD) builds the scalar path alone, as a CPU without AVX2 or F16C runs it. */
#if (defined(__x86_64__) || defined(__i386__)) && !defined(EMBD_NO_SIMD)
#include <cpuid.h>
#include <immintrin.h>
#define EMBD_X86 1
#endif

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
	return embd_f16_from_bits(f32_bits(f));
}

float embd_bf16_to_f32(uint16_t b)
{
	return bits_f32((uint32_t)b << 16);
}

uint16_t embd_f32_to_bf16(float f)
{
	return embd_bf16_from_bits(f32_bits(f));
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
	embd_dtype_convert(t, dst, EMBD_F32, src, n);
}

/* One element: load as float32 (exact), store as the target type (rounded). */
void embd_dtype_convert_ref(embd_dtype to, void *dst, embd_dtype from, const void *src, size_t n)
{
	unsigned char *d = dst;
	size_t osz = embd_dtype_size(to);
	if (from == to) { /* as it is, NaN payloads and all */
		memcpy(d, src, n * osz);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		float f = embd_dtype_load(from, src, i);
		if (to == EMBD_F32) {
			memcpy(d + i * 4, &f, 4);
		} else {
			uint16_t h = to == EMBD_F16 ? embd_f32_to_f16(f) : embd_f32_to_bf16(f);
			memcpy(d + i * 2, &h, 2);
		}
	}
}

#ifdef EMBD_X86
/*
 * The vector kernels, 8 elements a step (n a multiple of 8; the caller does the
 * tail). Compiled for AVX2 and F16C whatever the build's -march, and called only
 * when the CPU has both. vcvtps2ph with immediate 0 rounds to nearest even, as
 * the scalar code does, and makes a NaN quiet keeping its top payload bits, as
 * the scalar code does too; vcvtph2ps would make a signalling NaN quiet, which
 * NumPy's astype does not, so the rare group of 8 that holds one (or an
 * infinity: the test is on the exponent and the quiet bit) goes the scalar way.
 */
#define TARGET __attribute__((target("avx2,f16c")))

TARGET static inline __m256i bf16_round(__m256 f)
{
	__m256i u = _mm256_castps_si256(f);
	__m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
	__m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)), 16);
	__m256i nan = _mm256_castps_si256(_mm256_cmp_ps(f, f, _CMP_UNORD_Q));
	return _mm256_blendv_epi8(r, _mm256_set1_epi32(0xffff), nan);
}

/* Eight 32-bit lanes holding 16-bit values, packed and stored in order. */
TARGET static inline void store_u16x8(unsigned char *d, __m256i v)
{
	__m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
	_mm_storeu_si128((__m128i *)(void *)d, _mm_packus_epi32(lo, hi));
}

TARGET static inline __m256 load_f32x8(const unsigned char *s)
{
	return _mm256_loadu_ps((const float *)(const void *)s);
}

TARGET static inline __m128i load_u16x8(const unsigned char *s)
{
	return _mm_loadu_si128((const __m128i *)(const void *)s);
}

/* Whether one of eight halves has the top exponent and a clear quiet bit: an infinity or a signalling NaN. */
TARGET static inline int f16_special(__m128i h)
{
	__m128i e = _mm_and_si128(h, _mm_set1_epi16(0x7e00));
	return _mm_movemask_epi8(_mm_cmpeq_epi16(e, _mm_set1_epi16(0x7c00))) != 0;
}

TARGET static inline __m256 bf16_widen(__m128i b)
{
	return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16));
}

/* One pair of types; inlined with constant types into each case of convert_avx2, so the loop has no branches. */
TARGET __attribute__((always_inline)) static inline void convert_pair(embd_dtype to, unsigned char *d, embd_dtype from,
                                                                      const unsigned char *s, size_t n)
{
	size_t isz = from == EMBD_F32 ? 4 : 2, osz = to == EMBD_F32 ? 4 : 2;
	for (size_t i = 0; i < n; i += 8, s += 8 * isz, d += 8 * osz) {
		__m256 f;
		if (from == EMBD_F32) {
			f = load_f32x8(s);
		} else if (from == EMBD_BF16) {
			f = bf16_widen(load_u16x8(s));
		} else {
			__m128i h = load_u16x8(s);
			if (to == EMBD_F32 && f16_special(h)) {
				embd_dtype_convert_ref(to, d, from, s, 8);
				continue;
			}
			f = _mm256_cvtph_ps(h);
		}
		if (to == EMBD_F32)
			_mm256_storeu_ps((float *)(void *)d, f);
		else if (to == EMBD_F16)
			_mm_storeu_si128((__m128i *)(void *)d, _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT));
		else
			store_u16x8(d, bf16_round(f));
	}
}

TARGET static void convert_avx2(embd_dtype to, unsigned char *d, embd_dtype from, const unsigned char *s, size_t n)
{
#define PAIR(T, F)                                                                                                     \
	if (to == (T) && from == (F)) {                                                                                \
		convert_pair(T, d, F, s, n);                                                                           \
		return;                                                                                                \
	}
	PAIR(EMBD_F16, EMBD_F32)
	PAIR(EMBD_BF16, EMBD_F32)
	PAIR(EMBD_F32, EMBD_F16)
	PAIR(EMBD_F32, EMBD_BF16)
	PAIR(EMBD_BF16, EMBD_F16)
	PAIR(EMBD_F16, EMBD_BF16)
#undef PAIR
}
#endif

int embd_dtype_vector(void)
{
#ifdef EMBD_X86
	/*
	 * AVX2 (which also says the OS saves the YMM registers) from the
	 * compiler's CPU table; F16C from CPUID leaf 1, ECX bit 29 (clang's table
	 * does not name it). Looked up once: CPUID can trap to a hypervisor.
	 */
	static _Atomic int known = -1;
	int v = atomic_load_explicit(&known, memory_order_relaxed);
	if (v < 0) {
		unsigned a, b, c, d;
		v = __builtin_cpu_supports("avx2") && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
		atomic_store_explicit(&known, v, memory_order_relaxed);
	}
	return v;
#else
	return 0;
#endif
}

void embd_dtype_convert(embd_dtype to, void *dst, embd_dtype from, const void *src, size_t n)
{
	if (from == to) {
		memcpy(dst, src, n * embd_dtype_size(to));
		return;
	}
	size_t bulk = 0;
#ifdef EMBD_X86
	if (embd_dtype_vector()) {
		bulk = n & ~(size_t)7;
		convert_avx2(to, dst, from, src, bulk);
	}
#endif
	embd_dtype_convert_ref(to, (unsigned char *)dst + bulk * embd_dtype_size(to), from,
	                       (const unsigned char *)src + bulk * embd_dtype_size(from), n - bulk);
}
