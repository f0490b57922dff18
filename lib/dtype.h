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

/* IEEE half and bfloat16 from/to float32; rounding to nearest even, NaN stays NaN. */
float embd_f16_to_f32(uint16_t h);
uint16_t embd_f32_to_f16(float f);
float embd_bf16_to_f32(uint16_t b);
uint16_t embd_f32_to_bf16(float f);

/* Load element i of a little-endian array of type t as float32 (src may be unaligned). */
float embd_dtype_load(embd_dtype t, const void *src, size_t i);

/* Convert n float32 values to type t at dst (dst may be unaligned). */
void embd_dtype_store(embd_dtype t, void *dst, const float *src, size_t n);

#endif
