#!/usr/bin/env bash
# MetaQA 1-hop with counting and superlative questions in the same model, against the same
# 1-hop questions without them (docs/results.md "Operations"). Needs MetaQA (its README:
# /work/shared/data/metaqa in development); writes under runs/metaqa-ops.
#   operations questions: `kgqa make-questions --ops count,argmax,argmin --hops 1` on MetaQA's KB,
#     seed 0 for training (3000), seed 1 for the held-out test (3000, minus any text seed 0 has);
#   1-hop: qa_dev.txt shuffled (seed 0): 10% test, 10% valid, 80% train (as experiments/answer_sets.py);
#   each model: the default encoder (frozen), gold entities, --threads 1, --max-minutes $MINUTES.
# Usage: [EPOCHS=N] [SKIP_ON=1] [SKIP_OFF=1] [WITH_2ENTITY=1] experiments/operations-metaqa.sh METAQA_DIR [MINUTES]
#   docs/results.md "Operations": the defaults (the run with operations stopped at its 12-minute
#   cap after 2 epochs), then EPOCHS=2 SKIP_ON=1 for the model without them at the same epochs, and
#   EPOCHS=2 SKIP_OFF=1 WITH_2ENTITY=1 MINUTES 14.
set -euo pipefail
METAQA=${1:?usage: $0 METAQA_DIR [MINUTES]}
MINUTES=${2:-12}
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=$REPO/runs/metaqa-ops
PY=${PYTHON:-python}
mkdir -p "$OUT"
cd "$OUT"
for s in 0 1; do
  PYTHONPATH=$REPO $PY -m kgqa make-questions --kb "$METAQA/kb.txt" --hops 1 --ops count,argmax,argmin --n 3000 \
    --seed $s --out ops_$s.txt --qtype-out ops_${s}_qtype.txt -q
done
# WITH_2ENTITY=1: the model with operations also trains on 1000 2-entity path questions (make-questions
# --ops 2-entity, seed 2), which teach the second branch's relation heads before counting with them
EXTRA=()
if [ -n "${WITH_2ENTITY:-}" ]; then
  PYTHONPATH=$REPO $PY -m kgqa make-questions --kb "$METAQA/kb.txt" --hops 1 --ops 2-entity --n 1000 --seed 2 \
    --out two_2.txt --qtype-out two_2_qtype.txt -q
  EXTRA=(two_2.txt:two_2_qtype.txt)
fi
$PY - "$METAQA" <<'PYEOF'
import random, sys
from pathlib import Path
metaqa = Path(sys.argv[1])
seen = {l.split("\t")[0] for l in open("ops_0.txt", encoding="utf-8")}
test = [(l, t) for l, t in zip(open("ops_1.txt", encoding="utf-8"), open("ops_1_qtype.txt", encoding="utf-8"))
        if l.split("\t")[0] not in seen]
Path("ops_test.txt").write_text("".join(l for l, _ in test), encoding="utf-8")
Path("ops_test_qtype.txt").write_text("".join(t for _, t in test), encoding="utf-8")
lines = list(zip(open(metaqa / "1-hop/qa_dev.txt", encoding="utf-8"), open(metaqa / "1-hop/qa_dev_qtype.txt", encoding="utf-8")))
random.Random(0).shuffle(lines)
n = len(lines)
for name, part in (("test", lines[: n // 10]), ("valid", lines[n // 10: n // 5]), ("train", lines[n // 5:])):
    Path(f"1hop_{name}.txt").write_text("".join(l for l, _ in part), encoding="utf-8")
    Path(f"1hop_{name}_qtype.txt").write_text("".join(t for _, t in part), encoding="utf-8")
print(f"held-out operations questions: {len(test)} of 3000 (the rest share a text with training)", file=sys.stderr)
PYEOF
# With operations: 1-hop and the operations questions; without: the same 1-hop questions alone
# (--operations off), for EPOCHS epochs each when given (the comparison at equal epochs).
EPOCHS_ARG=${EPOCHS:+--epochs $EPOCHS}
if [ -z "${SKIP_ON:-}" ]; then
  PYTHONPATH=$REPO $PY "$REPO/experiments/operations.py" files --kb "$METAQA/kb.txt" --hops 1 --operations on \
    --train 1hop_train.txt:1hop_train_qtype.txt ops_0.txt:ops_0_qtype.txt "${EXTRA[@]}" --valid 1hop_valid.txt:1hop_valid_qtype.txt \
    --test 1hop_test.txt:1hop_test_qtype.txt ops_test.txt:ops_test_qtype.txt --max-minutes "$MINUTES" $EPOCHS_ARG \
    --tag metaqa-1hop-ops-on${WITH_2ENTITY:+-2entity} 2> train_on${WITH_2ENTITY:+_2entity}.log | tee -a results.jsonl
fi
[ -n "${SKIP_OFF:-}" ] && exit 0
PYTHONPATH=$REPO $PY "$REPO/experiments/operations.py" files --kb "$METAQA/kb.txt" --hops 1 --operations off \
  --train 1hop_train.txt:1hop_train_qtype.txt --valid 1hop_valid.txt:1hop_valid_qtype.txt \
  --test 1hop_test.txt:1hop_test_qtype.txt ops_test.txt:ops_test_qtype.txt --max-minutes "$MINUTES" $EPOCHS_ARG \
  --tag metaqa-1hop-ops-off 2> train_off.log | tee -a results.jsonl
