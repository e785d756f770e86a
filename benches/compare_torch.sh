#!/usr/bin/env bash
# backprop-rs against PyTorch (eager, float32, CPU) on the book's three nets,
# on the same machine, interleaved: RUNS rounds (default 3), each running
# the nets in ours and in PyTorch; the medians and the ratios.
#
#   MNIST_DIR=../shared/data/mnist bash benches/compare_torch.sh [RUNS]
#   NETS="deep-convnet" MNIST_DIR=... bash benches/compare_torch.sh [RUNS]
#
# NETS (default: all three) names the nets to run, of:
#
#   default        the default run (TwoLayerNet, SGD, 10000 steps and 18
#                  evaluations of 70k images): seconds_total
#   simple-convnet one epoch of the book's SimpleConvNet (Adam, 600 steps
#                  of 100): seconds_train
#   deep-convnet   100 steps of the book's DeepConvNet (Adam, batch 100,
#                  dropout): seconds_train
#
# PyTorch comes from pip into target/torch-venv (benches/torch/venv.sh); its
# side is benches/torch/book_nets.py.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/compare_common.sh
. benches/torch/venv.sh

ours() {
  local net="$1"; shift
  MNIST_DIR="$MNIST_DIR" "$xtask" train --json --overwrite \
    --out "target/compare-torch-$net" "$@" | tail -n 1
}

nets="${NETS:-default simple-convnet deep-convnet}"
if [ -z "${nets// /}" ]; then
  echo "compare_torch.sh: NETS names no net (default, simple-convnet, deep-convnet)" >&2
  exit 2
fi
for net in $nets; do
  case "$net" in
    default | simple-convnet | deep-convnet) ;;
    *) echo "compare_torch.sh: unknown net '$net' in NETS (default, simple-convnet, deep-convnet)" >&2; exit 2 ;;
  esac
done

for i in $(seq "$runs"); do
  for net in $nets; do
    echo "run $i of $runs: $net ..." >&2
    case "$net" in
      default) json=$(ours "$net") ;;
      simple-convnet) json=$(ours "$net" --model simple-convnet --epochs 1 --eval-every 100000 --eval-train-size 100) ;;
      deep-convnet) json=$(ours "$net" --model deep-convnet --iters 100 --eval-every 100000 --eval-train-size 100) ;;
    esac
    echo "ours $net	$json" >>"$results"
    json=$("$torch_venv/bin/python" benches/torch/book_nets.py "$MNIST_DIR" "$net")
    echo "torch $net	$json" >>"$results"
  done
done

CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
AVX512="$(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)" \
RESULTS="$results" "$torch_venv/bin/python" - <<'PY'
import json, os, statistics
runs = {}
for line in open(os.environ["RESULTS"]):
    name, text = line.rstrip("\n").split("\t", 1)
    runs.setdefault(name, []).append(json.loads(text))
first = next(r[0] for name, r in runs.items() if name.startswith("torch "))
rounds = len(next(iter(runs.values())))
print(f"CPU: {os.environ['CPU']} (AVX-512: {os.environ['AVX512']}); PyTorch {first['torch']} on {first['threads']} threads; medians of {rounds}")
# Two ratios: of the medians, and the median of each round's own ratio
# (ours and PyTorch run back to back in a round, so a slow spell of the
# machine weighs on both sides of that round's ratio alike).
print(f"{'work':44} {'ours':>8} {'PyTorch':>8} {'PyTorch / ours':>15} {'per round':>10}")
for net, key, what in [
    ("default", "seconds_total", "default run, seconds_total"),
    ("simple-convnet", "seconds_train", "SimpleConvNet one epoch, seconds_train"),
    ("deep-convnet", "seconds_train", "DeepConvNet 100 steps, seconds_train"),
]:
    if "ours " + net not in runs:
        continue
    ours = statistics.median(r[key] for r in runs["ours " + net])
    torch = statistics.median(r[key] for r in runs["torch " + net])
    per_round = statistics.median(t[key] / o[key] for o, t in zip(runs["ours " + net], runs["torch " + net]))
    spread = lambda name: "/".join(f"{r[key]:.2f}" for r in runs[name + " " + net])
    print(f"{what:44} {ours:8.2f} {torch:8.2f} {torch / ours:14.2f}x {per_round:9.2f}x   (ours {spread('ours')}; PyTorch {spread('torch')})")
PY
