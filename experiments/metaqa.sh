#!/usr/bin/env bash
# MetaQA with gold (bracketed) topic entities: one model per hop count, trained on 90% of that
# hop's qa_dev.txt and scored on the other 10% (kgqa train's default --valid-fraction 0.1, seed 0),
# default encoder (all-MiniLM-L6-v2, frozen), stopped by early stopping or after the epoch that
# passes 13 minutes. Backs docs/results.md "Gold entities" (Hits@1, Hits@5, training time and
# epochs, wall clock, peak RSS, Hits@1 per question type).
#
# The held-out score is the final validation evaluation that `kgqa train` prints ("valid Hits@1")
# and writes to OUT/metaqa-Nhop/config.json, per question type included; show_checkpoint prints it.
#
# Usage: experiments/metaqa.sh METAQA_DIR [HOPS...]     (HOPS: any of 1 2 3; default all three)
#        OUT=dir experiments/metaqa.sh ...              (default OUT: runs/experiments/metaqa)
set -euo pipefail
source "$(dirname "$0")/common.sh"
metaqa_hops "$0" "$@"
OUT=${OUT:-$REPO/runs/experiments/metaqa}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
cd "$REPO"

for N in "${HOPS[@]}"; do
    timed python -m kgqa train --kb "$M/kb.txt" --train "$M/$N-hop/qa_dev.txt" --train-qtype "$M/$N-hop/qa_dev_qtype.txt" \
        --hops "$N" --out "$OUT/metaqa-${N}hop" --max-minutes 13
    show_checkpoint "$OUT/metaqa-${N}hop"
done
