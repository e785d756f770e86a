#!/usr/bin/env bash
# The book's SimpleConvNet in NumPy and backprop-rs's on the same machine, in
# the same run: one epoch of the book's recipe (Adam 0.001, 600 steps of
# batch 100) and an evaluation of the 10000 test images, with the ratios.
#
#   MNIST_DIR=../shared/data/mnist bash benches/compare_convnet.sh
#
# NumPy comes from pip into target/numpy-venv, as for compare_numpy.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${MNIST_DIR:?set MNIST_DIR to a folder with the four MNIST .gz files}"
MNIST_DIR="$(cd "$MNIST_DIR" && pwd)"

. benches/numpy/venv.sh

echo "NumPy (the book's SimpleConvNet), one epoch ..." >&2
numpy_json=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 \
  "$venv/bin/python" benches/numpy/book_simple_convnet.py "$MNIST_DIR")
echo "backprop-rs, one epoch ..." >&2
# Evaluations only before and after the epoch; the training accuracy on 100 images.
ours_json=$(MNIST_DIR="$MNIST_DIR" cargo xtask train --model simple-convnet --epochs 1 \
  --eval-every 100000 --eval-train-size 100 --json --overwrite --out target/compare-convnet | tail -n 1)

NUMPY="$numpy_json" OURS="$ours_json" "$venv/bin/python" - <<'PY'
import json, os
n = json.loads(os.environ["NUMPY"]); o = json.loads(os.environ["OURS"])
# Two evaluations (before and after), each of the 10000 test and 100 training images.
ours_eval = (o["seconds_total"] - o["seconds_train"]) / 2
rows = [
    ("one epoch of training (s)", n["seconds_epoch"], o["seconds_train"]),
    ("evaluation of 10000 test images (s)", n["seconds_eval"], ours_eval),
]
print(f"{'SimpleConvNet':38} {'NumPy':>9} {'backprop-rs':>12} {'speed-up':>9}")
for name, a, b in rows:
    print(f"{name:38} {a:9.2f} {b:12.2f} {a / b:8.1f}x")
print(f"{'test accuracy after one epoch':38} {n['test_accuracy']:9.4f} {o['test_accuracy']:12.4f}")
PY
