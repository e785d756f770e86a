"""OpenBLAS (through NumPy, one thread) at the GEMM shapes of
benches/lib.rs TRAINING_SHAPES, timed the way examples/gemm_table.rs times
ours: best of 7 runs of enough repetitions for ~2e8 multiply-adds.

Prints one tab-separated line per shape: type, shape name, GFLOP/s.
"""

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"

import time  # noqa: E402

import numpy as np  # noqa: E402

# (name, m, k, n, transpose A, transpose B): op(A) is m x k, op(B) is k x n.
SHAPES = [
    ("fwd1 [100x784]x[784x50]", 100, 784, 50, False, False),
    ("dW1 x^T.dout [784x100]x[100x50]", 784, 100, 50, True, False),
    ("fwd2 [100x50]x[50x10]", 100, 50, 10, False, False),
    ("dW2 h^T.dout [50x100]x[100x10]", 50, 100, 10, True, False),
    ("dx2 dout.W2^T [100x10]x[10x50]", 100, 10, 50, False, True),
    ("eval [10000x784]x[784x50]", 10000, 784, 50, False, False),
    ("gradcheck fwd1 [3x784]x[784x50]", 3, 784, 50, False, False),
    ("gradcheck dW1 [784x3]x[3x50]", 784, 3, 50, True, False),
]


def best_seconds(f, macs):
    reps = max(1, 200_000_000 // macs)
    for _ in range(min(reps, 50)):
        f()
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(reps):
            f()
        best = min(best, (time.perf_counter() - start) / reps)
    return best


rng = np.random.default_rng(1)
for dtype in (np.float32, np.float64):
    for name, m, k, n, ta, tb in SHAPES:
        a = rng.uniform(-1, 1, (k, m) if ta else (m, k)).astype(dtype)
        b = rng.uniform(-1, 1, (n, k) if tb else (k, n)).astype(dtype)
        a_op = a.T if ta else a
        b_op = b.T if tb else b
        c = np.empty((m, n), dtype)
        seconds = best_seconds(lambda: np.matmul(a_op, b_op, out=c), m * k * n)
        print(f"{np.dtype(dtype).name}\t{name}\t{2 * m * k * n / seconds / 1e9:.1f}", flush=True)
