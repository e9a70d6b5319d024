#!/usr/bin/env bash
# The per-shape CPU targets (docs/benchmarks.md "The KB-shape family"): every KB shape of the
# family at 10M facts (1M entities, 1,000 relations; subjects and objects at Zipf 0.8, 1.0, 1.2,
# 1.2/0.8, 0.8/1.2, 1.2/uniform) and MetaQA's shape, B = 64, row-major x, forward and forward +
# backward from a materialised upstream gradient; ours, torch.sparse CSR (ReifKB) and the CSR
# SpMM floor (x as given and copied to batch-innermost), 3 repeats. Writes OUT/results.json and
# results.md, whose "Targets per KB shape" table is the one docs/benchmarks.md asks to fill.
# SUITE=family runs the whole layout grid instead (row-major x with and without requires_grad and
# the batch-innermost x; sum() and materialised gradients; two chained hops). Not run yet at 10M;
# the estimates of its time and memory are in docs/benchmarks.md.
#
# Usage: experiments/bench-family.sh
#        SUITE=family OUT=dir experiments/bench-family.sh    (default OUT: runs/experiments/bench-family)
#        KBS=zipf-0.8 SUITE=family experiments/bench-family.sh    (some shapes only: kgqa-bench --kbs)
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [[ $# -ne 0 ]]; then
    echo "usage: $0   (no arguments: the KBs are generated; SUITE=family-targets|family, KBS=k1,k2, OUT=dir)" >&2
    exit 2
fi
SUITE=${SUITE:-family-targets}
OUT=${OUT:-$REPO/runs/experiments/bench-family}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
cd "$REPO"

kgqa-bench --suite "$SUITE" --repeats 3 --out "$OUT" ${KBS:+--kbs "$KBS"}
