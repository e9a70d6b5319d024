#!/usr/bin/env bash
# MetaQA with gold entities, the relation head that reads relation names against the one that
# classifies relation ids (kgqa train --relation-head), per hop count: trained on 90% of that
# hop's qa_dev.txt and scored on the other 10% (seed 0), default encoder (all-MiniLM-L6-v2,
# frozen), both heads under the same time cap (--max-minutes, default 6: training stops after the
# epoch that passes it, or earlier by early stopping). Backs docs/results.md "Relation names"
# (MetaQA rows).
#
# Usage: experiments/metaqa-relation-heads.sh METAQA_DIR [HOPS...]   (HOPS: any of 1 2 3; default all)
#        MINUTES=13 OUT=dir experiments/metaqa-relation-heads.sh ...  (default OUT: runs/experiments/relation-heads)
set -euo pipefail
source "$(dirname "$0")/common.sh"
metaqa_hops "$0" "$@"
MINUTES=${MINUTES:-6}
OUT=${OUT:-$REPO/runs/experiments/relation-heads}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
cd "$REPO"

for N in "${HOPS[@]}"; do
    for HEAD in ids names; do
        timed python -m kgqa train --kb "$M/kb.txt" --train "$M/$N-hop/qa_dev.txt" --train-qtype "$M/$N-hop/qa_dev_qtype.txt" \
            --hops "$N" --relation-head "$HEAD" --out "$OUT/metaqa-${N}hop-$HEAD" --max-minutes "$MINUTES" --no-progress
        show_checkpoint "$OUT/metaqa-${N}hop-$HEAD"
    done
done
