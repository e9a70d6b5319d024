#!/usr/bin/env bash
# MetaQA with learned topic entities (--entities learned: the brackets are stripped and serve only
# to score the linking), on the same 90% / 10% split of each hop's qa_dev.txt as metaqa.sh (seed 0),
# default encoder, 13-minute limit. MetaQA's questions have one entity each, so these runs use
# --no-intersection (the first branch alone). Backs docs/results.md "Learned entities" (the 1-, 2-
# and 3-hop rows: Hits@1, entity linking accuracy, training time and epochs; peak RSS of a
# learned-mode run). The training time includes encoding every question, its spans and its
# span-masked forms once.
#
# Usage: experiments/metaqa-learned.sh METAQA_DIR [HOPS...]   (HOPS: any of 1 2 3; default all three)
#        OUT=dir experiments/metaqa-learned.sh ...            (default OUT: runs/experiments/learned)
set -euo pipefail
source "$(dirname "$0")/common.sh"
metaqa_hops "$0" "$@"
OUT=${OUT:-$REPO/runs/experiments/learned}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
cd "$REPO"

for N in "${HOPS[@]}"; do
    timed python -m kgqa train --kb "$M/kb.txt" --train "$M/$N-hop/qa_dev.txt" --train-qtype "$M/$N-hop/qa_dev_qtype.txt" \
        --hops "$N" --out "$OUT/metaqa-${N}hop" --max-minutes 13 --entities learned --no-intersection
    show_checkpoint "$OUT/metaqa-${N}hop"
done
