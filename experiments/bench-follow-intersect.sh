#!/usr/bin/env bash
# Benchmark run 3: fused follow_intersect (k = 2) against two follows plus intersect, dense x, on
# the 10M-fact power-law KB, B = 64, forward and forward + backward, 5 repeats. Writes
# OUT/results.json, results.md and results.png. Backs docs/benchmarks.md "Run 3" and the
# follow_intersect rows of the summary in docs/results.md (1.40x / 1.21x faster, 1/3 and 0.75x the
# memory). Its duration was not recorded.
#
# Usage: experiments/bench-follow-intersect.sh
#        OUT=dir experiments/bench-follow-intersect.sh    (default OUT: runs/experiments/bench-follow-intersect)
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [[ $# -ne 0 ]]; then
    echo "usage: $0   (no arguments: the KB is generated; OUT=dir sets the output folder)" >&2
    exit 2
fi
OUT=${OUT:-$REPO/runs/experiments/bench-follow-intersect}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
cd "$REPO"

kgqa-bench --suite targets --kbs pl-10m --ops follow_intersect-2 --x dense --repeats 5 --out "$OUT"
