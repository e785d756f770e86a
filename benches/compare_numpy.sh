#!/usr/bin/env bash
# The book's NumPy implementation and backprop-rs on the same machine, in the
# same run: the default training run and the gradient check, with ratios;
# then GEMM at the training shapes, OpenBLAS (NumPy, one thread) against ours.
#
#   MNIST_DIR=../shared/data/mnist bash benches/compare_numpy.sh
#
# NumPy comes from pip into target/numpy-venv. OPENBLAS_CORETYPE and
# OPENBLAS_L2_SIZE are unset for the NumPy run only (they slow a current
# NumPy down on this machine).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${MNIST_DIR:?set MNIST_DIR to a folder with the four MNIST .gz files}"
MNIST_DIR="$(cd "$MNIST_DIR" && pwd)"

. benches/numpy/venv.sh

echo "NumPy (the book's code), float64 ..." >&2
numpy_json=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 \
  "$venv/bin/python" benches/numpy/book_two_layer_net.py "$MNIST_DIR")
echo "backprop-rs (f32 training, f64 gradient check) ..." >&2
train_json=$(MNIST_DIR="$MNIST_DIR" cargo xtask train --json --overwrite --out target/compare-run | tail -n 1)
grad_json=$(MNIST_DIR="$MNIST_DIR" cargo xtask gradcheck --json | tail -n 1)

NUMPY="$numpy_json" TRAIN="$train_json" GRAD="$grad_json" "$venv/bin/python" - <<'PY'
import json, os
n = json.loads(os.environ["NUMPY"]); t = json.loads(os.environ["TRAIN"]); g = json.loads(os.environ["GRAD"])
rows = [
    ("default run, seconds_total", n["seconds_total"], t["seconds_total"]),
    ("default run, seconds_train", n["seconds_train"], t["seconds_train"]),
    ("numerical gradient, 3 images (s)", n["numerical_seconds"], g["numerical_seconds"]),
    ("backprop, 3 images (us)", n["backprop_seconds"] * 1e6, g["backprop_seconds"] * 1e6),
]
print(f"{'':36} {'NumPy':>10} {'backprop-rs':>12} {'speed-up':>9}")
for name, a, b in rows:
    print(f"{name:36} {a:10.3f} {b:12.3f} {a / b:8.1f}x")
print(f"{'test accuracy':36} {n['test_accuracy']:10.4f} {t['test_accuracy']:12.4f}")
PY

echo "GEMM, one thread: OpenBLAS through NumPy, then ours ..." >&2
openblas_tsv=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$venv/bin/python" benches/numpy/gemm_table.py)
ours_tsv=$(cargo run --quiet --release -p benches --example gemm_table -- --tsv)
OPENBLAS="$openblas_tsv" OURS="$ours_tsv" "$venv/bin/python" - <<'PY'
import os
openblas = {}
for line in os.environ["OPENBLAS"].splitlines():
    dtype, name, gflops = line.split("\t")
    openblas[(dtype.replace("float", "f"), name)] = float(gflops)
print()
print(f"{'GEMM GFLOP/s, one thread':40} {'OpenBLAS':>9} {'ours':>7} {'ours/OpenBLAS':>14} {'matrixmultiply':>15}")
for line in os.environ["OURS"].splitlines():
    dtype, name, packed, mm = line.split("\t")
    reference = openblas[(dtype, name)]
    print(f"{dtype + ' ' + name:40} {reference:9.1f} {float(packed):7.1f} {float(packed) / reference:13.2f}x {float(mm):15.1f}")
PY
