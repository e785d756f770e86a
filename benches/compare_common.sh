# What every benches/compare_*.sh against a peer does first, sourced after
# `cd` to the project root: MNIST_DIR made absolute, RUNS (the script's
# first argument, default 3) checked, our release binary built ($xtask),
# and a file for the runs' JSON lines ($results), removed at exit.
: "${MNIST_DIR:?set MNIST_DIR to a folder with the four MNIST .gz files}"
MNIST_DIR="$(cd "$MNIST_DIR" && pwd)"
runs="${1:-3}"
case "$runs" in
  [1-9] | [1-9][0-9]) ;;
  *) echo "error: RUNS must be a whole number from 1 to 99, got '$runs'" >&2; exit 2 ;;
esac
cargo build --quiet --release -p xtask
xtask="${CARGO_TARGET_DIR:-target}/release/xtask"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
