#!/usr/bin/env bash
# backprop-rs's default run against the same recipe in JAX (jit, float32,
# CPU) on the same machine, in the same run: RUNS interleaved runs of each
# (ours with 2 threads and with 1 thread, then JAX), the median of each and
# the ratios.
#
#   MNIST_DIR=../shared/data/mnist bash benches/compare_jax.sh [RUNS]
#   BUSY_CORE=1 MNIST_DIR=../shared/data/mnist bash benches/compare_jax.sh [RUNS]
#
# (the second with one core held by a shell loop throughout).
# JAX comes from pip into target/jax-venv (benches/jax/venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/compare_common.sh
. benches/jax/venv.sh
for i in $(seq "$runs"); do
  echo "run $i of $runs ..." >&2
  for threads in 2 1; do
    json=$(MNIST_DIR="$MNIST_DIR" "$xtask" train --json --threads "$threads" \
      --overwrite --out "target/compare-jax-$threads" | tail -n 1)
    echo "ours-$threads	$json" >>"$results"
  done
  json=$("$jax_venv/bin/python" benches/jax/two_layer_net.py "$MNIST_DIR")
  echo "jax	$json" >>"$results"
done

RESULTS="$results" "$jax_venv/bin/python" - <<'PY'
import json, os, statistics
runs = {}
for line in open(os.environ["RESULTS"]):
    name, text = line.rstrip("\n").split("\t", 1)
    runs.setdefault(name, []).append(json.loads(text))
def median(name, key):
    return statistics.median(r[key] for r in runs[name])
jax = median("jax", "seconds_total")
# Two ratios: of the medians, and the median of each round's own ratio
# (a round runs ours and JAX back to back, so a slow spell of the machine
# weighs on both sides of that round's ratio alike).
def per_round(name):
    return statistics.median(j["seconds_total"] / r["seconds_total"] for r, j in zip(runs[name], runs["jax"]))
print(f"{'default run, median of ' + str(len(runs['jax'])):32} {'seconds_total':>14} {'seconds_train':>14} {'test acc':>9} {'JAX / this':>11} {'per round':>10}")
for name, label in [("ours-2", "backprop-rs, 2 threads"), ("ours-1", "backprop-rs, 1 thread"), ("jax", "JAX jit (f32, CPU)")]:
    total, train = median(name, "seconds_total"), median(name, "seconds_train")
    acc = runs[name][0]["test_accuracy"]
    print(f"{label:32} {total:14.2f} {train:14.2f} {acc:9.4f} {jax / total:10.2f}x {per_round(name):9.2f}x")
PY
