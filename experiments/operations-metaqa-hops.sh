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
#   ARGS="...": more arguments of experiments/operations.py for both models (--restrict-hops off
#     --no-topic-types: the model before RigelModel's restrict_hops and topic_types)
#   MIX="M ...": both models also train on MetaQA's M-hop training split (made as the N-hop one) and
#     are also tested on its M-hop test split (MIX=2 with N = 3: the 3-hop model's second hop learns
#     the relations from films that MetaQA 2-hop questions end on)
#   PATHS=n: the model with operations also trains on n path questions of one or two hops
#     (`kgqa make-questions --ops path --hops 2`, seed 3; those whose topic is a held-out topic of
#     SETS, metaqa_ops.py's --test-share 0.3 and --seed 0, dropped), which teach the relations of the
#     KB's paths from entity answers (MetaQA's own questions follow few of the paths ops-2hop counts over)
# Writes under runs/metaqa-ops-hops (OUT=dir): results.jsonl (one line a model: Hits@1 per kind of
# the N-hop test and the operations test, counts of at most 10 apart), the logs, the splits and the
# models with operations (model_Nhop_on*/, for experiments/count_hops_diag.py).
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
  $PY - "$METAQA" "$N" ${MIX:-} <<'PYEOF'
import random, sys
from pathlib import Path
metaqa = Path(sys.argv[1])
for n_hops in sys.argv[2:]:
    lines = list(zip(open(metaqa / f"{n_hops}-hop/qa_dev.txt", encoding="utf-8"),
                     open(metaqa / f"{n_hops}-hop/qa_dev_qtype.txt", encoding="utf-8")))
    random.Random(0).shuffle(lines)
    n = len(lines)
    for name, part in (("test", lines[: n // 10]), ("valid", lines[n // 10: n // 5]), ("train", lines[n // 5:])):
        Path(f"{n_hops}hop_{name}.txt").write_text("".join(l for l, _ in part), encoding="utf-8")
        Path(f"{n_hops}hop_{name}_qtype.txt").write_text("".join(t for _, t in part), encoding="utf-8")
PYEOF
  EXTRA=() MIXED=() TESTS=() TAG=""
  for M in ${MIX:-}; do
    MIXED+=("${M}hop_train.txt:${M}hop_train_qtype.txt"); TESTS+=("${M}hop_test.txt:${M}hop_test_qtype.txt")
    TAG+="-mix$M"
  done
  if [ -n "${PATHS:-}" ]; then
    PYTHONPATH=$REPO $PY -m kgqa make-questions --kb "$METAQA/kb.txt" --hops 2 --ops path --n "$PATHS" --seed 3 \
      --out paths_all.txt --qtype-out paths_all_qtype.txt -q
    PYTHONPATH=$REPO:$REPO/experiments $PY - "$METAQA/kb.txt" <<'PYEOF'
import sys
from pathlib import Path
from kgqa import KnowledgeBase
from kgqa.questions import MENTION
from metaqa_ops import held_out_entities
kb = KnowledgeBase.load(sys.argv[1])
held = held_out_entities(kb.num_entities, 0.3, 0)
lines = list(zip(open("paths_all.txt", encoding="utf-8"), open("paths_all_qtype.txt", encoding="utf-8")))
kept = [(l, t) for l, t in lines if not any(kb.entity_ids[m] in held for m in MENTION.findall(l.split("\t")[0]))]
Path("paths.txt").write_text("".join(l for l, _ in kept), encoding="utf-8")
Path("paths_qtype.txt").write_text("".join(t for _, t in kept), encoding="utf-8")
print(f"path questions: {len(kept)} of {len(lines)} kept (no held-out topic)", file=sys.stderr)
PYEOF
    EXTRA=(paths.txt:paths_qtype.txt)
  fi
  common=(files --kb "$METAQA/kb.txt" --hops "$N" --max-minutes "$MINUTES" --epochs "$EPOCHS"
          --test "${N}hop_test.txt:${N}hop_test_qtype.txt" "$OPS/test.txt:$OPS/test_qtype.txt" "${TESTS[@]}"
          ${ARGS:-})
  PYTHONPATH=$REPO $PY "$REPO/experiments/operations.py" "${common[@]}" --operations on \
    --train "${N}hop_train.txt:${N}hop_train_qtype.txt" "$OPS/train.txt:$OPS/train_qtype.txt" "${EXTRA[@]}" \
      "${MIXED[@]}" \
    --valid "${N}hop_valid.txt:${N}hop_valid_qtype.txt" "$OPS/valid.txt:$OPS/valid_qtype.txt" \
    --tag "metaqa-${N}hop-ops-on${PATHS:+-paths$PATHS}$TAG" --save "model_${N}hop_on${PATHS:+_paths}$TAG" \
    2> "train_${N}hop_on${PATHS:+_paths}$TAG.log" \
    > "on_${N}hop${PATHS:+_paths}$TAG.jsonl" &
  on=$!
  if [ -z "${SKIP_OFF:-}" ]; then
    PYTHONPATH=$REPO $PY "$REPO/experiments/operations.py" "${common[@]}" --operations off \
      --train "${N}hop_train.txt:${N}hop_train_qtype.txt" "${MIXED[@]}" \
      --valid "${N}hop_valid.txt:${N}hop_valid_qtype.txt" \
      --tag "metaqa-${N}hop-ops-off$TAG" 2> "train_${N}hop_off$TAG.log" > "off_${N}hop$TAG.jsonl"
  fi
  wait $on
  cat "on_${N}hop${PATHS:+_paths}$TAG.jsonl" | tee -a results.jsonl
  [ -n "${SKIP_OFF:-}" ] || tee -a results.jsonl < "off_${N}hop$TAG.jsonl"
done
