"""Why the noisy-mention benchmark's dropped-token mentions are hard: for each (1-hop by default),
where the gold entity ranks among the fuzzy and lexical generators' 200 best names, and how many
names tie with it there. A mention whose gold entity neither generator ranks in its top 10 is
printed with both ranks and tie counts ("Robert" for Robert Stack: a first name alone names
hundreds of entities equally). Backs docs/results.md "Training on noisy copies".

    PYTHONPATH=. python experiments/dropped_tokens_ties.py METAQA_DIR/kb.txt runs/noisy/1-hop/noisy_meta.tsv
"""
from __future__ import annotations

import argparse
import sys

from kgqa.kb import KnowledgeBase
from kgqa.retrieval import Retrieval

DEPTH = 200  # names asked of each generator
TOP = 10  # a mention is counted as missed when neither generator ranks its gold entity this high


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kb")
    ap.add_argument("meta", help="experiments/noisy_mentions.py's N-hop/noisy_meta.tsv")
    ap.add_argument("--kind", default="dropped_tokens")
    ap.add_argument("--show", type=int, default=20, help="missed mentions printed")
    args = ap.parse_args(argv)
    kb = KnowledgeBase.load(args.kb)
    retrieval = Retrieval.build(kb.entities, generators=("fuzzy", "lexical"), aliases=kb.aliases)
    rows = [line.rstrip("\n").split("\t") for line in open(args.meta, encoding="utf-8")]
    picked = [(mention, gold) for kind, mention, _, _, gold in rows if kind == args.kind]
    found = retrieval.search([m for m, _ in picked], {"fuzzy": DEPTH, "lexical": DEPTH})
    missed = []
    for (mention, gold), row in zip(picked, found):
        gid = kb.entity_ids[gold]
        where = {}
        for gen, hits in row.items():
            rank = next((r for r, h in enumerate(hits) if h.entity == gid), None)
            ties = None if rank is None else sum(abs(h.score - hits[rank].score) < 1e-6 for h in hits)
            where[gen] = (rank, ties)
        if all(r is None or r >= TOP for r, _ in where.values()):
            missed.append((mention, gold, where))
    print(f"{args.kind}: {len(picked)} mentions; the gold entity beyond the top {TOP} of both generators "
          f"(of {DEPTH} each) for {len(missed)}")
    for mention, gold, where in missed[: args.show]:
        print(f"  {mention!r} for {gold!r}: " + ", ".join(
            f"{g} rank {r} ({t} names tied)" if r is not None else f"{g} not in {DEPTH}" for g, (r, t) in where.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
