/* Vector maths on rows, through OpenBLAS. */
#ifndef EMBD_OPS_H
#define EMBD_OPS_H

#include <stddef.h>

/* Scale x (n floats) to unit L2 norm in place (norm summed in double); a zero or non-finite norm leaves x as it is.
 * Thread-safe. */
void embd_ops_l2_normalize(float *x, size_t n);

/* Keep OpenBLAS to n threads so request threads and BLAS threads do not oversubscribe the cores. */
void embd_ops_set_threads(int n);

#endif
