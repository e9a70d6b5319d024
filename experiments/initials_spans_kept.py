"""How many noisy mentions of one kind (initials by default) are among the MAX_SPANS spans that
``--retrieval policy`` keeps per question (``CandidatePolicy.choose_spans``: the spans whose
best-probed name is most like them), with and without the policy's name kinds (with them, a span
that is the initials of its best-probed name counts as INITIALS_CLOSENESS alike). Prints a few
mentions left out, with their closeness and the 16th span's. Backs docs/results.md "Training on
noisy copies" (39 of 200 noisy 1-hop initials left out without, 0 with).

    PYTHONPATH=. python experiments/initials_spans_kept.py METAQA_DIR/kb.txt runs/noisy/1-hop [--kind abbreviation] [--n 200]
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter

import torch

from kgqa.encoder import TransformerEncoder
from kgqa.kb import KnowledgeBase
from kgqa.mentions import MAX_SPANS
from kgqa.retrieval import Retrieval
from kgqa.retrieval_policy import CandidatePolicy


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kb")
    ap.add_argument("bench", help="experiments/noisy_mentions.py's N-hop folder (noisy.txt, noisy_meta.tsv)")
    ap.add_argument("--kind", default="abbreviation")
    ap.add_argument("--n", type=int, default=200, help="the first N questions of the kind")
    ap.add_argument("--show", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    kb = KnowledgeBase.load(args.kb)
    policy = CandidatePolicy(Retrieval.build(kb.entities, encoder=TransformerEncoder(), aliases=kb.aliases), kb.entities)
    meta = [line.rstrip("\n").split("\t") for line in open(f"{args.bench}/noisy_meta.tsv", encoding="utf-8")]
    questions = [line.split("\t")[0] for line in open(f"{args.bench}/noisy.txt", encoding="utf-8")]
    picked = [(q, int(m[2]), int(m[3])) for q, m in zip(questions, meta) if m[0] == args.kind][: args.n]
    for name_kinds in (False, True):
        policy.name_kinds = name_kinds  # only the closeness is measured: the bandit plays no part
        counts, shown = Counter(), 0
        chosen = policy.choose_spans([q for q, _, _ in picked])
        for i, (q, start, end) in enumerate(picked):
            spans, near, kept = chosen.spans[i], chosen.closeness[i], chosen.kept[i]
            at = next((j for j, s in enumerate(spans) if s == (start, end)), None)
            if at is None:
                counts["not a span"] += 1
                continue
            counts["kept" if at in kept else "left out"] += 1
            if at not in kept and shown < args.show:
                shown += 1
                last = min(near[j] for j in kept)
                print(f"  {q!r}: {q[start:end]!r} closeness {near[at]:.2f}, the {MAX_SPANS}th span's {last:.2f}")
        print(f"{args.kind}, name kinds {'on' if name_kinds else 'off'}: {len(picked)} mentions, {dict(counts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
