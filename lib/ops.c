/* Vector maths on rows, through OpenBLAS. */
#include "ops.h"

#include <cblas.h>
#include <math.h>

void embd_ops_l2_normalize(float *x, size_t n)
{
	/*
	 * The sum of squares in double: a float32 row can hold values whose squares
	 * overflow float32 (3.4e38), and dividing in double gives each element the
	 * one rounding NumPy's x / np.linalg.norm(x) gives it in float64. Not
	 * cblas_snrm2 (float, overflows) nor cblas_dsdot: OpenBLAS 0.3.21's SIMD
	 * kernel for n >= 32 accumulates in float and returns inf for such rows.
	 */
	double sum = 0.0;
	for (size_t i = 0; i < n; i++)
		sum += (double)x[i] * (double)x[i];
	double norm = sqrt(sum);
	if (norm > 0.0 && isfinite(norm))
		for (size_t i = 0; i < n; i++)
			x[i] = (float)((double)x[i] / norm);
}

void embd_ops_set_threads(int n)
{
	openblas_set_num_threads(n);
}
