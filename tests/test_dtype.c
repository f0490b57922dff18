/* Unit tests of the dtype conversions: the vector path against the scalar reference, bit for bit. */
#include "fixture.h"

#include "dtype.h"

/*
 * Every float bit pattern in the plain build; under a sanitizer (each load
 * checked, 10 to 50 times slower) every 31st, which still crosses every
 * exponent and both signs, so the test stays a few seconds.
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define STRIDE 31u
#else
#define STRIDE 1u
#endif

#define CHUNK 65536u

/*
 * The scalar reference over a chunk of patterns, base + i * STRIDE: the
 * branch-free roundings of dtype.h, which the compiler vectorises here (with
 * AVX2, as the vector path needs anyway), so all 2^32 take a second or two.
 */
__attribute__((target("avx2"))) static void reference(uint32_t base, uint32_t *restrict in, uint16_t *restrict h,
                                                      uint16_t *restrict b)
{
	for (uint32_t i = 0; i < CHUNK; i++) {
		uint32_t u = base + i * STRIDE;
		in[i] = u;
		h[i] = embd_f16_from_bits(u);
		b[i] = embd_bf16_from_bits(u);
	}
}

/* f32 to f16 and to bf16 over all 2^32 patterns (signalling NaNs too: the scalar code quiets them as F16C does). */
static void f32_to_half_all_patterns(void **state)
{
	(void)state;
	if (!embd_dtype_vector())
		skip();
	uint32_t *in = malloc(CHUNK * 4);
	uint16_t *h = malloc(CHUNK * 2), *b = malloc(CHUNK * 2), *vec = malloc(CHUNK * 2);
	uint64_t chunks = (((uint64_t)1 << 32) + (uint64_t)CHUNK * STRIDE - 1) / ((uint64_t)CHUNK * STRIDE);
	for (uint64_t c = 0; c < chunks; c++) {
		reference((uint32_t)(c * CHUNK * STRIDE), in, h, b);
		for (int t = 0; t < 2; t++) {
			embd_dtype to = t == 0 ? EMBD_F16 : EMBD_BF16;
			const uint16_t *ref = t == 0 ? h : b;
			embd_dtype_convert(to, vec, EMBD_F32, in, CHUNK);
			if (memcmp(vec, ref, CHUNK * 2) != 0) {
				for (size_t i = 0; i < CHUNK; i++)
					if (vec[i] != ref[i])
						fail_msg("%s of 0x%08x: vector 0x%04x, scalar 0x%04x",
						         embd_dtype_name(to), in[i], vec[i], ref[i]);
			}
		}
	}
	/* The reference is the scalar conversions' own code: spot-check that it is. */
	for (uint32_t i = 0; i < CHUNK; i += 7) {
		float f;
		memcpy(&f, &in[i], 4);
		assert_int_equal(embd_f32_to_f16(f), h[i]);
		assert_int_equal(embd_f32_to_bf16(f), b[i]);
	}
	free(in);
	free(h);
	free(b);
	free(vec);
}

/* Every half and bfloat16 to f32 and to the other half type. */
static void half_all_patterns(void **state)
{
	(void)state;
	if (!embd_dtype_vector())
		skip();
	uint16_t *in = malloc(65536 * 2);
	unsigned char *vec = malloc(65536 * 4), *ref = malloc(65536 * 4);
	for (uint32_t h = 0; h < 65536; h++)
		in[h] = (uint16_t)h;
	static const embd_dtype pairs[][2] = {
	    {EMBD_F32, EMBD_F16}, {EMBD_F32, EMBD_BF16}, {EMBD_BF16, EMBD_F16}, {EMBD_F16, EMBD_BF16}};
	for (size_t p = 0; p < 4; p++) {
		embd_dtype to = pairs[p][0], from = pairs[p][1];
		embd_dtype_convert(to, vec, from, in, 65536);
		embd_dtype_convert_ref(to, ref, from, in, 65536);
		assert_memory_equal(vec, ref, 65536 * embd_dtype_size(to));
	}
	free(in);
	free(vec);
	free(ref);
}

/*
 * The values the README promises, in the vector path's bulk and in its scalar
 * tail alike: f16 as NumPy rounds, bf16 as torch's vectorised .to() does.
 */
static void known_values(void **state)
{
	(void)state;
	static const struct {
		uint32_t f;
		uint16_t h, b;
	} cases[] = {
	    {0x3f800000u, 0x3c00, 0x3f80}, /* 1 */
	    {0xc0000000u, 0xc000, 0xc000}, /* -2 */
	    {0x3f801000u, 0x3c00, 0x3f80}, /* 1 + 2^-11: f16 tie, down to even */
	    {0x3f803000u, 0x3c02, 0x3f80}, /* 1 + 2^-10 + 2^-11: f16 tie, up to even */
	    {0x3f808000u, 0x3c04, 0x3f80}, /* 1 + 2^-8: bf16 tie, down to even */
	    {0x3f818000u, 0x3c0c, 0x3f82}, /* 1 + 2^-7 + 2^-8: bf16 tie, up to even */
	    {0x477fe000u, 0x7bff, 0x4780}, /* 65504, the largest half */
	    {0x477ff000u, 0x7c00, 0x4780}, /* 65520: the tie above it goes to infinity */
	    {0x477fefffu, 0x7bff, 0x4780}, /* just under it does not */
	    {0x33800000u, 0x0001, 0x3380}, /* 2^-24, the smallest subnormal half */
	    {0x33000000u, 0x0000, 0x3300}, /* 2^-25: tie to even, zero */
	    {0x33400000u, 0x0001, 0x3340}, /* 1.5 * 2^-25: above the tie */
	    {0x387fc000u, 0x03ff, 0x3880}, /* the largest subnormal half; bf16 rounds up */
	    {0x00000001u, 0x0000, 0x0000}, /* the smallest subnormal float */
	    {0x80000000u, 0x8000, 0x8000}, /* -0 */
	    {0x7f7fffffu, 0x7c00, 0x7f80}, /* FLT_MAX: both overflow to infinity */
	    {0x7f800000u, 0x7c00, 0x7f80}, /* inf */
	    {0xff800000u, 0xfc00, 0xff80}, /* -inf */
	    {0x7fc00000u, 0x7e00, 0xffff}, /* quiet NaN */
	    {0xffc00001u, 0xfe00, 0xffff}, /* negative quiet NaN, payload below f16's bits */
	    {0x7fe02000u, 0x7f01, 0xffff}, /* quiet NaN with payload */
	    {0x7f800001u, 0x7e00, 0xffff}, /* signalling NaN: quiet (NumPy keeps it signalling: 0x7c01) */
	    {0xffa00000u, 0xff00, 0xffff}, /* negative signalling NaN: quiet (NumPy: 0xfd00) */
	};
	size_t n = sizeof cases / sizeof cases[0];
	for (size_t i = 0; i < n; i++) {
		/* 9 copies: 8 through the vector step, the last in the scalar tail; then 1 alone (scalar). */
		uint32_t in[9];
		uint16_t h[10], b[10];
		for (size_t k = 0; k < 9; k++)
			in[k] = cases[i].f;
		embd_dtype_convert(EMBD_F16, h, EMBD_F32, in, 9);
		embd_dtype_convert(EMBD_BF16, b, EMBD_F32, in, 9);
		embd_dtype_convert(EMBD_F16, h + 9, EMBD_F32, in, 1);
		embd_dtype_convert(EMBD_BF16, b + 9, EMBD_F32, in, 1);
		for (size_t k = 0; k < 10; k++)
			if (h[k] != cases[i].h || b[k] != cases[i].b)
				fail_msg("0x%08x at %zu: f16 0x%04x (want 0x%04x), bf16 0x%04x (want 0x%04x)",
				         cases[i].f, k, h[k], cases[i].h, b[k], cases[i].b);
	}
	/* Widening keeps a signalling f16 NaN signalling, as NumPy's astype(float32): 0x7c01 is 0x7f802000. */
	uint16_t s[16] = {0x7c01, 0xfd00, 0x7e00, 0x7c00, 0x0001, 0x3c00, 0x7c01, 0x8000,
	                  0x7c01, 0x7c01, 0x7c01, 0x7c01, 0x7c01, 0x7c01, 0x7c01, 0x7c01};
	uint32_t w[16];
	embd_dtype_convert(EMBD_F32, w, EMBD_F16, s, 16);
	static const uint32_t want[8] = {0x7f802000u, 0xffa00000u, 0x7fc00000u, 0x7f800000u,
	                                 0x33800000u, 0x3f800000u, 0x7f802000u, 0x80000000u};
	for (size_t i = 0; i < 16; i++)
		assert_int_equal(w[i], i < 8 ? want[i] : 0x7f802000u);
}

/* Unaligned sources and destinations, every length up to past two vector steps: the tails are right. */
static void unaligned_and_tails(void **state)
{
	(void)state;
	unsigned char src[4 * 64 + 8], vec[4 * 64 + 8], ref[4 * 64 + 8];
	uint64_t x = 0x9e3779b97f4a7c15u;
	for (size_t i = 0; i < sizeof src; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		src[i] = (unsigned char)x;
	}
	static const embd_dtype types[] = {EMBD_F32, EMBD_F16, EMBD_BF16};
	for (size_t a = 0; a < 3; a++)
		for (size_t b = 0; b < 3; b++)
			for (size_t so = 0; so < 4; so++)
				for (size_t d_off = 0; d_off < 4; d_off++)
					for (size_t n = 0; n <= 40; n++) {
						embd_dtype to = types[a], from = types[b];
						size_t bytes = n * embd_dtype_size(to);
						memset(vec, 0xa5, sizeof vec);
						memset(ref, 0xa5, sizeof ref);
						embd_dtype_convert(to, vec + d_off, from, src + so, n);
						embd_dtype_convert_ref(to, ref + d_off, from, src + so, n);
						/* the same bytes written, and none past the end */
						assert_memory_equal(vec, ref, sizeof vec);
						assert_int_equal(vec[d_off + bytes], 0xa5);
					}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(known_values),
	    cmocka_unit_test(unaligned_and_tails),
	    cmocka_unit_test(half_all_patterns),
	    cmocka_unit_test(f32_to_half_all_patterns),
	};
	return cmocka_run_group_tests_name("dtype", tests, NULL, NULL);
}
