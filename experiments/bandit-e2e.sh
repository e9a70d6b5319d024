#!/usr/bin/env bash
# End-to-end Hits@1 with learned entities, today's candidates (--retrieval alias) against the
# bandit's (--retrieval policy), on clean and noisy 1-hop questions of the noisy-mention benchmark.
# Both are evaluated on the first EVAL (default 1000) questions of the benchmark's 1-hop clean.txt and
# noisy.txt, and train on the same first TRAIN (default 3000) of the other questions of MetaQA's
# 1-hop qa_dev.txt (bracketed: the policy's bandit learns from those mentions; only the dev split is
# available), one thread, capped at MINUTES (default 10). Backs docs/results.md
# "Candidate allocation by a contextual bandit" (end-to-end).
#
# HOPS=2 does the same on the 2-hop questions (MetaQA's 2-hop qa_dev.txt, the benchmark's 2-hop/).
#
# FOLLOW_EACH=n evaluates with `kgqa eval --follow-each n` (a model already in OUT is not trained
# again: this scores its weights another way). Backs "Each candidate followed alone".
#
# NOISE=share trains with `--mention-noise share` (and NOISE_KINDS=k,k `--mention-noise-kinds`): the
# models go to OUT/RETRIEVAL-noiseSHARE[-KINDS]. Backs "Training on noisy copies" too.
#
# Usage: experiments/bandit-e2e.sh METAQA_DIR BENCH_DIR   (BENCH_DIR: experiments/noisy_mentions.py's --out)
#        OUT=dir HOPS=n TRAIN=n EVAL=n MINUTES=m RETRIEVALS="alias policy" NOISE=share NOISE_KINDS=k,k FOLLOW_EACH=n \
#        experiments/bandit-e2e.sh ...   (default OUT: runs/experiments/bandit-e2e)
set -euo pipefail
source "$(dirname "$0")/common.sh"
[[ $# -eq 2 ]] || { echo "usage: $0 METAQA_DIR BENCH_DIR" >&2; exit 2; }
M=$(metaqa_dir "$1"); B=$(cd "$2" && pwd)
OUT=${OUT:-$REPO/runs/experiments/bandit-e2e}; TRAIN=${TRAIN:-3000}; EVAL=${EVAL:-1000}; MINUTES=${MINUTES:-10}
HOPS=${HOPS:-1}; [[ $HOPS == [12] ]] || { echo "error: HOPS must be 1 or 2, got $HOPS" >&2; exit 2; }
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
cd "$REPO"
# The kind of noise each question's twin got (noisy_meta.tsv's first column), as --qtype: Hits@1 per kind.
for kind in clean noisy; do
    head -n "$EVAL" "$B/$HOPS-hop/$kind.txt" > "$OUT/$kind.txt"
    head -n "$EVAL" "$B/$HOPS-hop/${kind}_meta.tsv" | cut -f1 > "$OUT/${kind}_kind.txt"
done
python - "$M/$HOPS-hop/qa_dev.txt" "$OUT/clean.txt" "$TRAIN" > "$OUT/train.txt" <<'PY'
import re, sys
held = {line.split("\t")[0] for line in open(sys.argv[2], encoding="utf-8")}
kept = [line for line in open(sys.argv[1], encoding="utf-8") if re.sub(r"\[([^\]]+)\]", r"\1", line.split("\t")[0]) not in held]
sys.stdout.writelines(kept[: int(sys.argv[3])])
PY
NOISE_ARGS=(); SUFFIX=""
if [[ -n "${NOISE:-}" ]]; then
    NOISE_ARGS=(--mention-noise "$NOISE"); SUFFIX="-noise$NOISE"
    if [[ -n "${NOISE_KINDS:-}" ]]; then NOISE_ARGS+=(--mention-noise-kinds "$NOISE_KINDS"); SUFFIX+="-${NOISE_KINDS//,/+}"; fi
fi
for R in ${RETRIEVALS:-alias policy}; do
    MODEL="$OUT/$R$SUFFIX"
    [[ -d "$MODEL" ]] || timed python -m kgqa train --kb "$M/kb.txt" --train "$OUT/train.txt" --hops "$HOPS" \
        --out "$MODEL" --max-minutes "$MINUTES" --entities learned --no-intersection --retrieval "$R" \
        --threads 1 --no-progress "${NOISE_ARGS[@]}"
    for kind in clean noisy; do
        echo "== $R$SUFFIX on $kind"
        timed python -m kgqa eval --model "$MODEL" --questions "$OUT/$kind.txt" --qtype "$OUT/${kind}_kind.txt" --json \
            ${FOLLOW_EACH:+--follow-each "$FOLLOW_EACH"}
    done
done
