#!/usr/bin/python3
"""Top-10 nearest neighbours on a 400,000 x 100 random matrix: lib/vecops (loadtest/vecops_bench.c) against NumPy and
gensim in the same run, by OpenBLAS threads and block size; checks that all three return the same ids.

    python3 loadtest/vecops_bench.py [--rows 400000] [--dim 100] [--blocks 0,1024,4096] (0: the default) [--threads 1,2]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NWORDS, K = 256, 10

# NumPy and gensim in a child per thread count: OpenBLAS reads OPENBLAS_NUM_THREADS once, at load.
CHILD = r"""
import json, sys, time
import numpy as np
path, rows, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
M = np.fromfile(path, dtype=np.float32).reshape(rows, dim)
words = [i * 1999 % rows for i in range(256)]
out = {}
t0 = time.perf_counter()
norms = np.linalg.norm(M, axis=1)
out["numpy_norms_ms"] = (time.perf_counter() - t0) * 1e3
normed = M / norms[:, None]  # the normalised copy gensim 3 kept and NumPy users make
Q = normed[words]
def top(d, w):
    d[w] = -np.inf
    idx = np.argpartition(-d, 10)[:10]
    return idx[np.argsort(-d[idx], kind="stable")]
t0 = time.perf_counter()
ids1 = [top(normed @ Q[i], w) for i, w in enumerate(words)]
out["numpy_nq1_ms"] = (time.perf_counter() - t0) * 1e3 / 256
t0 = time.perf_counter()
for b in range(0, 256, 64):
    D = Q[b:b + 64] @ normed.T
    for i in range(64):
        top(D[i], words[b + i])
out["numpy_nq64_ms"] = (time.perf_counter() - t0) * 1e3 / 256
out["numpy_ids"] = [[int(x) for x in r] for r in ids1]
try:
    from gensim.models import KeyedVectors
    kv = KeyedVectors(vector_size=dim)  # no count=: add_vectors would append after count zero rows
    kv.add_vectors([str(i) for i in range(rows)], M)
    kv.fill_norms()
    kv.most_similar(str(words[0]), topn=10)
    t0 = time.perf_counter()
    res = [kv.most_similar(str(w), topn=10) for w in words]
    out["gensim_ms"] = (time.perf_counter() - t0) * 1e3 / 256
    out["gensim_ids"] = [[int(k) for k, _ in r] for r in res]
    out["gensim_scores"] = [[float(s) for _, s in r] for r in res]
    w = [str(x) for x in words]
    res = [kv.most_similar(positive=[w[3 * i], w[3 * i + 2]], negative=[w[3 * i + 1]], topn=10) for i in range(16)]
    out["gensim_analogy_ids"] = [[int(k) for k, _ in r] for r in res]
    out["gensim_analogy_scores"] = [[float(s) for _, s in r] for r in res]
except ImportError:
    pass
print(json.dumps(out))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=400000)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--blocks", default="0,256,1024,4096,16384,65536")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--dtypes", default="f32,f16")
    a = ap.parse_args()
    subprocess.run(["make", "-s", "-C", ROOT, "build/libembd.a"], check=True)
    exe = os.path.join(ROOT, "build", "vecops_bench")
    cflags = subprocess.run(["pkg-config", "--cflags", "--libs", "openblas", "jansson", "libmicrohttpd"], capture_output=True, text=True,
                            check=True).stdout.split()
    subprocess.run(["cc", "-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra", "-Werror", "-I" + ROOT + "/lib",
                    "-o", exe, HERE + "/vecops_bench.c", ROOT + "/build/libembd.a"] + cflags + ["-lm", "-lpthread"],
                   check=True)
    M = np.random.default_rng(0).standard_normal((a.rows, a.dim), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        files = {"f32": os.path.join(tmp, "m.f32"), "f16": os.path.join(tmp, "m.f16")}
        M.tofile(files["f32"])
        M.astype(np.float16).tofile(files["f16"])
        ours = {}
        for dt in a.dtypes.split(","):
            ids_path = os.path.join(tmp, "ids." + dt)
            p = subprocess.run([exe, files[dt], str(a.rows), str(a.dim), dt, ids_path, a.threads, a.blocks],
                               capture_output=True, text=True, check=True)
            for line in p.stdout.splitlines():
                print("embd  ", line)
            lines = [[(int(h.split(":")[0]), float(h.split(":")[1])) for h in ln.split()] for ln in open(ids_path)]
            ours[dt] = [[i for i, _ in r] for r in lines[:NWORDS]]
            ours[dt + "_scores"] = [[s for _, s in r] for r in lines[:NWORDS]]
            ours[dt + "_analogy"] = lines[NWORDS:]
        for th in a.threads.split(","):
            env = dict(os.environ, OPENBLAS_NUM_THREADS=th, OMP_NUM_THREADS=th)
            p = subprocess.run([sys.executable, "-c", CHILD, files["f32"], str(a.rows), str(a.dim)],
                               capture_output=True, text=True, check=True, env=env)
            r = json.loads(p.stdout)
            same_np = sum(x == y for x, y in zip(ours["f32"], r["numpy_ids"]))
            line = {"threads": int(th), "numpy_norms_ms": round(r["numpy_norms_ms"], 2),
                    "numpy_nq1_ms": round(r["numpy_nq1_ms"], 3), "numpy_nq64_ms": round(r["numpy_nq64_ms"], 3),
                    "same_top10_as_numpy": f"{same_np}/{NWORDS}"}
            if "gensim_ms" in r:
                same_g = sum(x == y for x, y in zip(ours["f32"], r["gensim_ids"]))
                line.update(gensim_ms=round(r["gensim_ms"], 3), same_top10_as_gensim=f"{same_g}/{NWORDS}")
                diff = max(abs(a - b) for x, y in zip(ours["f32_scores"], r["gensim_scores"]) for a, b in zip(x, y))
                an = ours["f32_analogy"]
                same_a = sum([i for i, _ in x] == y for x, y in zip(an, r["gensim_analogy_ids"]))
                diff_a = max(abs(a[1] - b) for x, y in zip(an, r["gensim_analogy_scores"]) for a, b in zip(x, y))
                line.update(max_score_diff_vs_gensim=f"{diff:.1e}", same_analogy_top10_as_gensim=f"{same_a}/{len(an)}",
                            max_analogy_score_diff=f"{diff_a:.1e}")
            if "f16" in ours:
                line["f16_same_top10_as_f32"] = f"{sum(x == y for x, y in zip(ours['f16'], ours['f32']))}/{NWORDS}"
            print("python", json.dumps(line))


if __name__ == "__main__":
    main()
