#!/usr/bin/env bash
# Data-parallel training overhead on the CPU: the demo KB's questions (2,827 training, 404
# validation), scratch encoder, 5 epochs at lr 1e-4, in three variants (1 process with 1 thread;
# 2 processes under torchrun with gloo, 1 thread each; 1 process with 2 threads), each 3 times,
# alternating, under nice -n 10. Prints each run's wall clock and its training time
# (train_minutes of config.json: inside train(), no process start, imports or KB loading). Backs
# the timing table of docs/DISTRIBUTED.md "Data-parallel training", "Measured on this machine".
# These are CPU/gloo numbers, not GPU numbers.
#
# The training commands are the recorded ones; only the --out folders (recorded: /tmp/one,
# /tmp/two, /tmp/one2) are under OUT, and the wall-clock timing around them is this script's.
#
# Usage: experiments/ddp-demo.sh
#        OUT=dir experiments/ddp-demo.sh     (default OUT: runs/experiments/ddp-demo)
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [[ $# -ne 0 ]]; then
    echo "usage: $0   (no arguments: uses the demo KB shipped in the package)" >&2
    exit 2
fi
OUT=${OUT:-$REPO/runs/experiments/ddp-demo}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
cd "$REPO"

D=kgqa/data/demo; export OMP_NUM_THREADS=1
ARGS="train --kb $D/kb.txt --train $D/qa_train.txt --train-qtype $D/qa_train_qtype.txt --valid $D/qa_valid.txt
      --valid-qtype $D/qa_valid_qtype.txt --hops 2 --encoder scratch --epochs 5 --lr 1e-4 --patience 100 --no-progress"

report() {  # report NAME RUN START_NS
    local end; end=$(date +%s%N)
    python - "$OUT/$1-$2/config.json" "$1" "$2" "$3" "$end" <<'PY'
import json, sys
path, name, run, t0, t1 = sys.argv[1:]
c = json.load(open(path))
print(f"{name} run {run}: wall clock {(int(t1) - int(t0)) / 1e9:.1f} s, training {60 * c['train_minutes']:.1f} s")
PY
}

for run in 1 2 3; do
    t=$(date +%s%N); nice -n 10 python -m kgqa $ARGS --threads 1 --out "$OUT/one-$run"; report one "$run" "$t"
    t=$(date +%s%N); nice -n 10 python -m torch.distributed.run --standalone --nproc_per_node 2 -m kgqa $ARGS --threads 1 --out "$OUT/two-$run"; report two "$run" "$t"
    t=$(date +%s%N); nice -n 10 python -m kgqa $ARGS --threads 2 --out "$OUT/one2-$run"; report one2 "$run" "$t"
done
