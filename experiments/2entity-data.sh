#!/usr/bin/env bash
# The two families of 2-entity questions derived from MetaQA's KB, 4,000 each (kgqa make-2entity,
# seed 0), the first 3,200 for training and the last 800 held out:
#   DATA/1hop/{all,train,test}.txt   --hops 1: one relation from each entity
#   DATA/2hop/{all,train,test}.txt   --hops 2: two hops from each entity, the last one shared
#   DATA/both-test.txt               the 1,600 held-out questions of both families
# The 2-entity experiments (2entity-1hop.sh, 2entity-2hop.sh, 2entity-2hop-learned.sh) call it.
#
# Usage: experiments/2entity-data.sh METAQA_DIR DATA_DIR
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [[ $# -ne 2 ]]; then
    echo "usage: $0 METAQA_DIR DATA_DIR   (METAQA_DIR holds kb.txt; the questions are written under DATA_DIR)" >&2
    exit 2
fi
M=$(metaqa_dir "$1")
DATA=$2
mkdir -p "$DATA"; DATA=$(cd "$DATA" && pwd)
cd "$REPO"

for H in 1 2; do
    mkdir -p "$DATA/${H}hop"
    python -m kgqa make-2entity --kb "$M/kb.txt" --out "$DATA/${H}hop/all.txt" --n 4000 --seed 0 --hops "$H"
    head -n 3200 "$DATA/${H}hop/all.txt" > "$DATA/${H}hop/train.txt"
    tail -n 800 "$DATA/${H}hop/all.txt" > "$DATA/${H}hop/test.txt"
done
cat "$DATA/1hop/test.txt" "$DATA/2hop/test.txt" > "$DATA/both-test.txt"
wc -l "$DATA"/*/all.txt "$DATA"/*/train.txt "$DATA"/*/test.txt "$DATA/both-test.txt"
