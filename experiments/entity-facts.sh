#!/usr/bin/env bash
# The entity scorer's per-entity relations, kept sparse, against the dense [entities, relations]
# float32 table they replaced: benchmarks/entity_facts.py with its defaults (a generated KB of 2M
# entities, 20M facts, 1,000 relations, 2,000 with inverses; a batch of 5,120 candidates), three
# runs under /usr/bin/time -v for the peak RSS. Backs docs/results.md "The entity scorer's relation
# table" (38.6M pairs in 310 MiB, built in 6.0-6.6 s, peak RSS 3.0 GB, dense table 14.9 GiB,
# 98.6k pairs in 3-24 ms).
#
# Usage: experiments/entity-facts.sh      (no data needed)
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [[ $# -ne 0 ]]; then
    echo "usage: $0   (no arguments: the KB is generated)" >&2
    exit 2
fi
cd "$REPO"

for run in 1 2 3; do
    echo "== run $run"
    timed python benchmarks/entity_facts.py
done
