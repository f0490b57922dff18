/* Element types of a matrix or a response, and the conversions between them. */
#ifndef EMBD_DTYPE_H
#define EMBD_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum embd_dtype { EMBD_F32 = 0, EMBD_F16 = 1, EMBD_BF16 = 2, EMBD_DTYPE_COUNT } embd_dtype;

/* Bytes per element. */
size_t embd_dtype_size(embd_dtype t);

/* "f32", "f16", "bf16". Static storage. */
const char *embd_dtype_name(embd_dtype t);

/* The .npy descr ("<f4", "<f2"), or NULL for bf16, which NumPy has no dtype for. */
const char *embd_dtype_npy_descr(embd_dtype t);

/* Parse a name ("f32", "float32", "f16", "float16", "bf16", "bfloat16"). 0 or EMBD_EBADPARAM. */
int embd_dtype_parse(const char *name, embd_dtype *out);

/*
 * IEEE half and bfloat16 from/to float32; rounding to nearest even. A NaN
 * stays NaN: to f16 quiet, with its payload's top ten bits; to bf16 0xFFFF
 * (what torch's vectorised conversion gives every NaN); widening keeps it
 * as it is.
 */
float embd_f16_to_f32(uint16_t h);
/*
 * The roundings from float32's bits, without a branch (selects the compiler
 * can turn into vector blends): what embd_f32_to_f16 and embd_f32_to_bf16
 * compute, and the tails of embd_dtype_convert. f16: a normal result rebiases
 * the exponent and rounds the 13 dropped bits to even; a subnormal one is
 * |f| * 2^24 rounded to an integer by adding 2^23 (the float addition's own
 * round to nearest even; exact for every |f| under 2^-14); 65520 and up is
 * infinity. Valid under the default floating-point environment (round to
 * nearest, no flush to zero), which embd never changes.
 */
static inline uint32_t embd_select(int c, uint32_t a, uint32_t b) /* c ? a : b, as a mask */
{
	uint32_t m = 0u - (uint32_t)c;
	return (a & m) | (b & ~m);
}

static inline uint16_t embd_f16_from_bits(uint32_t u)
{
	uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
	uint32_t r = a - 0x38000000u;
	uint32_t normal = (r + 0xfffu + ((r >> 13) & 1u)) >> 13;
	union {
		uint32_t u;
		float f;
	} x = {a};
	x.f = x.f * 0x1p24f + 0x1p23f;
	uint32_t sub = x.u - 0x4b000000u;
	uint32_t nan = 0x7e00u | ((a >> 13) & 0x3ffu); /* quiet, the payload's top bits kept */
	uint32_t h = embd_select(a >= 0x38800000u, normal, sub);
	h = embd_select(a >= 0x477ff000u, 0x7c00u, h);
	h = embd_select(a > 0x7f800000u, nan, h);
	return (uint16_t)(sign | h);
}

/* bf16: the top half, rounded to even; every NaN 0xFFFF, as torch's vectorised conversion answers. */
static inline uint16_t embd_bf16_from_bits(uint32_t u)
{
	uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
	return (uint16_t)embd_select((u & 0x7fffffffu) > 0x7f800000u, 0xffffu, r);
}

uint16_t embd_f32_to_f16(float f);
float embd_bf16_to_f32(uint16_t b);
uint16_t embd_f32_to_bf16(float f);

/* Load element i of a little-endian array of type t as float32 (src may be unaligned). */
float embd_dtype_load(embd_dtype t, const void *src, size_t i);

/* Convert n float32 values to type t at dst (dst may be unaligned): embd_dtype_convert from EMBD_F32. */
void embd_dtype_store(embd_dtype t, void *dst, const float *src, size_t n);

/*
 * Convert n elements of type from at src to type to at dst, straight, without
 * a float32 copy in between (either pointer may be unaligned; the two must not
 * overlap). Every result is bit for bit that of the scalar conversions above
 * (embd_dtype_convert_ref): f16 as NumPy's astype rounds (to nearest, ties to
 * even; a NaN stays NaN, quiet, its payload's top bits kept), bf16 as torch's
 * vectorised .to(torch.bfloat16) (to nearest even; every NaN 0xFFFF), widening
 * exact (a signalling f16 NaN stays signalling, as NumPy's astype keeps it).
 * On x86-64 with AVX2 and F16C (looked up at run time) the bulk goes 8 or 16
 * elements at a time; the rest, and every other CPU, the scalar way.
 */
void embd_dtype_convert(embd_dtype to, void *dst, embd_dtype from, const void *src, size_t n);

/* The same, one element at a time: the reference the vector path is tested against. */
void embd_dtype_convert_ref(embd_dtype to, void *dst, embd_dtype from, const void *src, size_t n);

/* 1 when embd_dtype_convert uses the CPU's vector instructions (AVX2 and F16C), else 0. */
int embd_dtype_vector(void);

#endif
