"""Write a seeded random float32 matrix as .npy (and optionally raw): loadtest/make_matrix.py OUT.npy ROWS DIM [RAW]."""
import sys

import numpy as np

out, rows, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(1234)
m = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=(rows, dim))
step = max(1, 2**26 // (dim * 4))
for a in range(0, rows, step):
    b = min(rows, a + step)
    m[a:b] = rng.standard_normal((b - a, dim), dtype=np.float32)
m.flush()
if len(sys.argv) > 4:
    np.asarray(m).tofile(sys.argv[4])
