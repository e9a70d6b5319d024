#!/usr/bin/env bash
# Before/after numbers of a code reorganisation: for each of two commits, a fresh clone, the
# time of `make test` from scratch (virtualenv, build, tests), the quick benchmark suite on our
# CPU providers, and lines per module; then the benchmark compared case by case.
#
#   experiments/redesign-before-after.sh BEFORE_COMMIT AFTER_COMMIT OUT_DIR
#   SIDES=before experiments/redesign-before-after.sh ...   (one side now, the other later)
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 BEFORE_COMMIT AFTER_COMMIT OUT_DIR" >&2
  exit 2
fi
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mkdir -p "$3" && cd "$3" && pwd)"
providers="kgqa:cpu,kgqa:cpu-pull,kgqa:cpu-sparse-x,kgqa:cpu-fused,kgqa:cpu-unfused"
for which in ${SIDES:-before after}; do
  commit=$1; [ "$which" = after ] && commit=$2
  dir="$out/$which"
  rm -rf "$dir"
  git clone --quiet "$repo" "$dir"
  git -C "$dir" checkout --quiet "$commit"
  start=$(date +%s)
  (cd "$dir" && make test) > "$out/$which-make-test.log" 2>&1
  echo "$which ($commit): make test from a fresh clone took $(( $(date +%s) - start )) s (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$out/summary.txt"
  tail -1 "$out/$which-make-test.log" | tee -a "$out/summary.txt"
  (cd "$dir" && make bench SUITE=quick ARGS="--providers $providers --out $out/$which-bench") > "$out/$which-bench.log" 2>&1
  python3 "$repo/experiments/lines_per_module.py" "$dir" > "$out/$which-lines.md"
done
[ -f "$out/before-bench/results.json" ] && [ -f "$out/after-bench/results.json" ] || exit 0
python3 "$repo/experiments/compare_bench.py" "$out/before-bench/results.json" "$out/after-bench/results.json" \
  > "$out/bench-compare.md"
tail -1 "$out/bench-compare.md" | tee -a "$out/summary.txt"
