"""Why the noisy-mention benchmark's dropped-token mentions are hard: for each (1-hop by default),
where the gold entity ranks among the fuzzy and lexical generators' 200 best names, and how many
names tie with it there. A mention whose gold entity neither generator ranks in its top 10 is
printed with both ranks and tie counts ("Robert" for Robert Stack: a first name alone names
hundreds of entities equally). Backs docs/results.md "Training on noisy copies".

With --questions (the benchmark's N-hop/noisy.txt, whose lines are the meta file's), also a ceiling
of any entity ranker that reads only the name, the question's relation and how many facts an
entity has: how often the gold entity is, among the names that hold every word of the mention,
the one with the most facts, and the one with the most facts among those with a fact of the
relation that links the gold entity to an answer (the relation the question asks, read from the
answers, which no model is given), and how often the answer that most of those names lead to by
that relation is right (the best an answer ranker spread over every such name could do). --first N:
the first N lines only (the e2e runs' evaluation).

    PYTHONPATH=. python experiments/dropped_tokens_ties.py METAQA_DIR/kb.txt runs/noisy/1-hop/noisy_meta.tsv \
        [--questions runs/noisy/1-hop/noisy.txt --first 1000]
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict

import torch

from kgqa.aliases import normalise
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
    ap.add_argument("--questions", help="the N-hop/noisy.txt of the meta file: also print the ceiling")
    ap.add_argument("--first", type=int, help="only the first FIRST lines")
    args = ap.parse_args(argv)
    kb = KnowledgeBase.load(args.kb)
    retrieval = Retrieval.build(kb.entities, generators=("fuzzy", "lexical"), aliases=kb.aliases)
    rows = [line.rstrip("\n").split("\t") for line in open(args.meta, encoding="utf-8")][: args.first]
    if args.questions:
        answers = [line.rstrip("\n").split("\t")[1].split("|") for line in open(args.questions, encoding="utf-8")]
        ceiling(kb, [(r[1], r[4], a) for r, a in zip(rows, answers) if r[0] == args.kind], args.kind)
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


def ceiling(kb: KnowledgeBase, picked, kind: str) -> None:
    """``picked``: (mention, gold name, answer names). Prints how often the gold entity has the
    most facts among the names holding the mention's words, without and with the relation."""
    s, p, o = kb.triples.unbind(1)
    degree = torch.bincount(torch.cat([s, o]), minlength=kb.num_entities).tolist()
    with_word = defaultdict(set)
    for e, name in enumerate(kb.entities):
        for w in normalise(name).split():
            with_word[w].add(e)
    relations = defaultdict(set)  # entity -> (relation, 0 as subject / 1 as object)
    reach = defaultdict(set)  # (entity, (relation, direction)) -> the entities that fact leads to
    link = {}
    for a, r, b in kb.triples.tolist():
        relations[a].add((r, 0))
        relations[b].add((r, 1))
        reach[a, (r, 0)].add(b)
        reach[b, (r, 1)].add(a)
        link[a, b], link[b, a] = (r, 0), (r, 1)
    by_degree = by_relation = by_vote = 0
    for mention, gold, answers in picked:
        g = kb.entity_ids[gold]
        words = normalise(mention).split()
        names = set.intersection(*(with_word[w] for w in words)) if words else set()
        asked = next((link[g, kb.entity_ids[a]] for a in answers if (g, kb.entity_ids.get(a)) in link), None)
        first = max(names, key=lambda e: (degree[e], -e), default=None)
        fits = [e for e in names if asked in relations[e]]
        by_degree += first == g
        by_relation += max(fits, key=lambda e: (degree[e], -e), default=None) == g
        # An answer ranker over all of them at once (what a model whose seed spreads over the
        # candidates can do): the answer most of those names lead to, ties shared.
        votes = Counter(a for e in fits for a in reach[e, asked])
        if votes:
            top = [a for a, c in votes.items() if c == max(votes.values())]
            by_vote += sum(kb.entity_ids.get(a) in top for a in set(answers)) / len(top)
    n = max(1, len(picked))
    print(f"{kind}: {len(picked)} mentions; the gold entity has the most facts among the names holding the "
          f"mention's words: {100 * by_degree / n:.1f}%; among those with a fact of the question's relation: "
          f"{100 * by_relation / n:.1f}%; the answer most of those lead to is right: {100 * by_vote / n:.1f}%")


if __name__ == "__main__":
    sys.exit(main())
