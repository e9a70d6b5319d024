#!/usr/bin/env bash
# One sharded hop (ShardedSparseKB.follow on 2 and 3 gloo processes on this machine's CPU) against
# the single-process follow on kgqa-bench's pl-1m KB (power-law, 1M entities, 1,000 relations, 1M
# facts), B = 64, float32, one torch thread in the single process and in each rank, medians of 5
# after a warm-up, the slowest rank's time; then the same with two threads for the single process.
# Both under nice -n 10, as recorded. Backs docs/DISTRIBUTED.md "Measured on this machine" for the
# sharded KB (the table, facts and KB bytes per rank, the two-thread comparison) and the facts
# per rank quoted in its worked estimate. These are CPU/gloo numbers, not GPU numbers.
#
# Usage: experiments/distributed-follow.sh      (no data needed)
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [[ $# -ne 0 ]]; then
    echo "usage: $0   (no arguments: the KB is generated)" >&2
    exit 2
fi
cd "$REPO"

nice -n 10 python benchmarks/distributed_follow.py --world 2 3
nice -n 10 python benchmarks/distributed_follow.py --world 2 --baseline-threads 2
