#!/usr/bin/env bash
# Benchmark run 1, "targets": every provider on the 10M-fact power-law KB (1M entities, 1,000
# relations), B = 64, dense and one-hot x, forward and forward + backward, follow and
# follow_intersect k = 2, 3 repeats. Writes OUT/results.json, results.md (the tables of
# docs/benchmarks.md "Run 1") and results.png. Backs docs/benchmarks.md "Run 1" and the follow rows
# of the summary in docs/results.md. Took about 13 minutes on the 2-core development machine.
#
# Usage: experiments/bench-targets.sh
#        OUT=dir experiments/bench-targets.sh    (default OUT: runs/experiments/bench-targets)
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [[ $# -ne 0 ]]; then
    echo "usage: $0   (no arguments: the KBs are generated; OUT=dir sets the output folder)" >&2
    exit 2
fi
OUT=${OUT:-$REPO/runs/experiments/bench-targets}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
cd "$REPO"

kgqa-bench --suite targets --kbs pl-10m --repeats 3 --out "$OUT"
