#!/usr/bin/env bash
# MetaQA 1-hop with counting and superlative questions in the same model, against the same
# 1-hop questions without them (docs/results.md "Operations"). Needs MetaQA (its README:
# /work/shared/data/metaqa in development); writes under runs/metaqa-ops.
#   operations questions: `kgqa make-questions --ops count,argmax,argmin --hops 1` on MetaQA's KB,
#     seed 0 for training (3000), seed 1 for the held-out test (3000, minus any text seed 0 has);
#   1-hop: qa_dev.txt shuffled (seed 0): 10% test, 10% valid, 80% train (as experiments/answer_sets.py);
#   each model: the default encoder (frozen), gold entities, --threads 1, --max-minutes $MINUTES.
# Usage: experiments/operations-metaqa.sh METAQA_DIR [MINUTES]
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
for ops in on off; do
  PYTHONPATH=$REPO $PY "$REPO/experiments/operations.py" files --kb "$METAQA/kb.txt" --hops 1 --operations $ops \
    --train 1hop_train.txt:1hop_train_qtype.txt ops_0.txt:ops_0_qtype.txt --valid 1hop_valid.txt:1hop_valid_qtype.txt \
    --test 1hop_test.txt:1hop_test_qtype.txt ops_test.txt:ops_test_qtype.txt --max-minutes "$MINUTES" \
    --tag metaqa-1hop-ops-$ops 2> train_$ops.log | tee -a results.jsonl
done
