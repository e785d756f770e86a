# What every benches/compare_*.sh against a peer does first, sourced after
# `cd` to the project root: MNIST_DIR made absolute, RUNS (the script's
# first argument, default 3) checked, our release binary built ($xtask),
# and a file for the runs' JSON lines ($results), removed at exit. With
# BUSY_CORE=1 a shell loop holds one core for the whole comparison (another
# process on the machine, as a browser or a build is on a laptop).
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
busy_pid=
trap 'rm -f "$results"; [ -z "$busy_pid" ] || kill "$busy_pid"' EXIT
case "${BUSY_CORE:-0}" in
  0) ;;
  1) (while :; do :; done) & busy_pid=$!; echo "one core held by process $busy_pid" >&2 ;;
  *) echo "error: BUSY_CORE must be 0 or 1, got '$BUSY_CORE'" >&2; exit 2 ;;
esac
