#!/usr/bin/env bash
# Benchmark run 2, "scaling": the targets suite on the MetaQA-shaped KB (generated with MetaQA's
# sizes: 43,234 entities, 18 relations, 269,482 facts), the 1M-fact and the 10M-fact power-law KBs,
# 3 repeats. Writes OUT/results.json, results.md and results.png (the plot of docs/benchmarks.md,
# docs/benchmark-scaling.png). Backs docs/benchmarks.md "Run 2".
#
# The recorded run was stopped after the 10M-fact one-hot tables, so this script runs longer than
# it did (its duration was not recorded). To use MetaQA's real KB instead of the generated one, add
# --metaqa-kb PATH/kb.txt (the recorded run did not).
#
# Usage: experiments/bench-scaling.sh
#        OUT=dir experiments/bench-scaling.sh    (default OUT: runs/experiments/bench-scaling)
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [[ $# -ne 0 ]]; then
    echo "usage: $0   (no arguments: the KBs are generated; OUT=dir sets the output folder)" >&2
    exit 2
fi
OUT=${OUT:-$REPO/runs/experiments/bench-scaling}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
cd "$REPO"

kgqa-bench --suite targets --repeats 3 --out "$OUT"
