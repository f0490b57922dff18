/* Vector maths on rows, through OpenBLAS. */
#include "ops.h"

#include <cblas.h>
#include <math.h>

void embd_ops_l2_normalize(float *x, size_t n)
{
	float norm = cblas_snrm2((blasint)n, x, 1);
	if (norm > 0.0f && isfinite(norm))
		cblas_sscal((blasint)n, 1.0f / norm, x, 1);
}

void embd_ops_set_threads(int n)
{
	openblas_set_num_threads(n);
}
