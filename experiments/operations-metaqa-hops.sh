#!/usr/bin/env bash
# MetaQA N-hop with counting and superlative questions in the same model, against the same N-hop
# questions without them, at equal epochs (docs/results.md "Operations": issue 20's "no more than
# 0.5 points lost on MetaQA 1/2/3-hop"; experiments/operations-metaqa.sh is the first 1-hop run).
#   N-hop: qa_dev.txt shuffled (seed 0): 10% test, 10% valid, 80% train (as experiments/answer_sets.py);
#   operations: SETS/ops-2hop/{train,valid,test} of `experiments/metaqa_ops.py METAQA_DIR --out SETS`
#     (held out by topic; counts drawn evenly over 1..10 and 11+; one or two hops), ops-1hop for N = 1;
#   each model: the default encoder (frozen), gold entities, --threads 1, --epochs $EPOCHS, capped at
#   $MINUTES; the two models of a hop count train side by side (one core each).
# Usage: [EPOCHS=2] [HOPS="2 3"] [SKIP_OFF=1] experiments/operations-metaqa-hops.sh METAQA_DIR SETS [MINUTES]
#   SKIP_OFF=1: the model with operations only (the one a change to the operations retrains)
# Writes under runs/metaqa-ops-hops (OUT=dir): results.jsonl (one line a model: Hits@1 per kind of
# the N-hop test and the operations test, counts of at most 10 apart), the logs and the splits.
set -euo pipefail
METAQA=${1:?usage: $0 METAQA_DIR SETS [MINUTES]}
SETS=$(cd "${2:?usage: $0 METAQA_DIR SETS [MINUTES]}" && pwd)
MINUTES=${3:-40}
EPOCHS=${EPOCHS:-2}
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$REPO/runs/metaqa-ops-hops}
PY=${PYTHON:-python}
mkdir -p "$OUT"
cd "$OUT"
for N in ${HOPS:-2 3}; do
  OPS=$SETS/ops-2hop  # counts and ranks what one or two hops reach; ops-1hop for a 1-hop model
  [ "$N" = 1 ] && OPS=$SETS/ops-1hop
  $PY - "$METAQA" "$N" <<'PYEOF'
import random, sys
from pathlib import Path
metaqa, n_hops = Path(sys.argv[1]), sys.argv[2]
lines = list(zip(open(metaqa / f"{n_hops}-hop/qa_dev.txt", encoding="utf-8"),
                 open(metaqa / f"{n_hops}-hop/qa_dev_qtype.txt", encoding="utf-8")))
random.Random(0).shuffle(lines)
n = len(lines)
for name, part in (("test", lines[: n // 10]), ("valid", lines[n // 10: n // 5]), ("train", lines[n // 5:])):
    Path(f"{n_hops}hop_{name}.txt").write_text("".join(l for l, _ in part), encoding="utf-8")
    Path(f"{n_hops}hop_{name}_qtype.txt").write_text("".join(t for _, t in part), encoding="utf-8")
PYEOF
  common=(files --kb "$METAQA/kb.txt" --hops "$N" --max-minutes "$MINUTES" --epochs "$EPOCHS"
          --test "${N}hop_test.txt:${N}hop_test_qtype.txt" "$OPS/test.txt:$OPS/test_qtype.txt")
  PYTHONPATH=$REPO $PY "$REPO/experiments/operations.py" "${common[@]}" --operations on \
    --train "${N}hop_train.txt:${N}hop_train_qtype.txt" "$OPS/train.txt:$OPS/train_qtype.txt" \
    --valid "${N}hop_valid.txt:${N}hop_valid_qtype.txt" "$OPS/valid.txt:$OPS/valid_qtype.txt" \
    --tag "metaqa-${N}hop-ops-on" 2> "train_${N}hop_on.log" > "on_${N}hop.jsonl" &
  on=$!
  if [ -z "${SKIP_OFF:-}" ]; then
    PYTHONPATH=$REPO $PY "$REPO/experiments/operations.py" "${common[@]}" --operations off \
      --train "${N}hop_train.txt:${N}hop_train_qtype.txt" --valid "${N}hop_valid.txt:${N}hop_valid_qtype.txt" \
      --tag "metaqa-${N}hop-ops-off" 2> "train_${N}hop_off.log" > "off_${N}hop.jsonl"
  fi
  wait $on
  cat "on_${N}hop.jsonl" | tee -a results.jsonl
  [ -n "${SKIP_OFF:-}" ] || tee -a results.jsonl < "off_${N}hop.jsonl"
done
