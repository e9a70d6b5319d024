#!/usr/bin/env bash
# Candidate spans of questions without brackets on MetaQA's dev questions: how often the gold topic
# entity is among the candidates (the ceiling of any ranker) and how often the rule "longest
# matching span" picks it (the brackets only score it). Backs the 1-, 2- and 3-hop rows of
# docs/results.md "Entity linking: candidates and the alias index".
#
# Usage: experiments/linking-candidates.sh METAQA_DIR
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [[ $# -ne 1 ]]; then
    echo "usage: $0 METAQA_DIR   (METAQA_DIR holds kb.txt and N-hop/qa_dev.txt)" >&2
    exit 2
fi
M=$(metaqa_dir "$1")
cd "$REPO"

for N in 1 2 3; do
    echo "== $N-hop dev"
    python -m kgqa.linking "$M/kb.txt" "$M/$N-hop/qa_dev.txt"
done
