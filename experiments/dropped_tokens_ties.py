"""Why the noisy-mention benchmark's dropped-token mentions are hard: for each (1-hop by default),
where the gold entity ranks among the fuzzy and lexical generators' 200 best names, and how many
names tie with it there. A mention whose gold entity neither generator ranks in its top 10 is
printed with both ranks and tie counts ("Robert" for Robert Stack: a first name alone names
hundreds of entities equally). Backs docs/results.md "Training on noisy copies".

With --questions (the benchmark's N-hop/noisy.txt, whose lines are the meta file's), also a ceiling
of any entity ranker that reads only the name, the question's relations and how many facts an
entity has, among the names the mention could stand for (those that hold every word of it; with
--kind abbreviation, those it abbreviates): how often the gold entity is the one with the most
facts, and the one with the most facts among those with a path of the relations that lead the gold
entity to an answer (--hops of them: the relations the question asks, read from the answers, which
no model is given), and how often the answer that most of those names lead to by that path is
right (the best an answer ranker spread over every such name could do). The same two again knowing
the kind's rule (kgqa.mention_noise): only the names one of its draws makes the mention from, each
weighted by how many of its equally likely draws do ("Hanks" is two of Tom Hanks' three), ranked by
that weight, then facts; and how many of those mentions name one entity (only the gold one has
such a name and a path). --qtypes FILE labels each line for ``kgqa eval --qtype``: its kind, and
for those two kinds whether the mention names one entity. --first N: the first N lines only (the
e2e runs' evaluation).

    PYTHONPATH=. python experiments/dropped_tokens_ties.py METAQA_DIR/kb.txt runs/noisy/1-hop/noisy_meta.tsv \
        [--questions runs/noisy/1-hop/noisy.txt --first 1000] [--kind abbreviation] [--hops 2] [--qtypes F]
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict

import torch

from kgqa.aliases import normalise
from kgqa.kb import KnowledgeBase
from kgqa.mention_noise import PERTURB, dropped_token_draws
from kgqa.retrieval import Retrieval

DEPTH = 200  # names asked of each generator
TOP = 10  # a mention is counted as missed when neither generator ranks its gold entity this high
# The kinds whose mention can name several entities alike (--qtypes splits them)
AMBIGUOUS = ("abbreviation", "dropped_tokens")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kb")
    ap.add_argument("meta", help="experiments/noisy_mentions.py's N-hop/noisy_meta.tsv")
    ap.add_argument("--kind", default="dropped_tokens")
    ap.add_argument("--show", type=int, default=20, help="missed mentions printed")
    ap.add_argument("--questions", help="the N-hop/noisy.txt of the meta file: also print the ceiling")
    ap.add_argument("--first", type=int, help="only the first FIRST lines")
    ap.add_argument("--hops", type=int, choices=(1, 2), default=1, help="the questions' hops (the ceiling's relations)")
    ap.add_argument("--qtypes", help="write, a line per meta line, its kind, and for the kinds of AMBIGUOUS "
                                     "whether the mention names one entity: KIND:one or KIND:several (kgqa eval --qtype)")
    args = ap.parse_args(argv)
    kb = KnowledgeBase.load(args.kb)
    retrieval = Retrieval.build(kb.entities, generators=("fuzzy", "lexical"), aliases=kb.aliases)
    rows = [line.rstrip("\n").split("\t") for line in open(args.meta, encoding="utf-8")][: args.first]
    if args.qtypes and not args.questions:
        ap.error("--qtypes needs --questions")
    if args.questions:
        answers = [line.rstrip("\n").split("\t")[1].split("|") for line in open(args.questions, encoding="utf-8")]
        labels, tables = [r[0] for r in rows], Tables(kb)
        for kind in sorted({args.kind} | (set(AMBIGUOUS) if args.qtypes else set())):
            at = [i for i, r in enumerate(rows) if r[0] == kind]
            one = ceiling(kb, tables, [(rows[i][1], rows[i][4], answers[i]) for i in at], kind, args.hops)
            for i, alone in zip(at, one):
                labels[i] = f"{kind}:{'one' if alone else 'several'}"
        if args.qtypes:
            with open(args.qtypes, "w", encoding="utf-8") as f:
                f.writelines(label + "\n" for label in labels)
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


def path_to(g: int, answers: set, relations, reach, hops: int):
    """The first (in sorted order) ``hops`` steps (relation, direction) from ``g`` that reach one of
    ``answers``: the relations the question asks, read from its answers; None if none does."""
    for step in sorted(relations[g]):
        xs = reach[g, step]
        if hops == 1:
            if xs & answers:
                return (step,)
            continue
        for step2 in sorted({s for x in xs for s in relations[x]}):
            if any(reach[x, step2] & answers for x in xs):
                return step, step2
    return None


def follow(e: int, path, reach) -> set:
    """The entities ``path`` leads to from ``e``, never back to ``e`` (MetaQA's answers exclude the topic)."""
    xs = {e}
    for step in path:
        xs = set().union(*(reach[x, step] for x in xs)) - {e}
    return xs


class Tables:
    """What every ceiling reads of the KB, made once: each entity's count of facts, the entities
    holding each (normalised) word, for each kind of AMBIGUOUS the mentions its draws make of each
    name (mention -> {entity: how many of its equally likely draws make it}), and the facts as
    steps (entity -> its (relation, 0 as subject / 1 as object); (entity, step) -> where it leads)."""

    def __init__(self, kb: KnowledgeBase):
        s, _, o = kb.triples.unbind(1)
        self.degree = torch.bincount(torch.cat([s, o]), minlength=kb.num_entities).tolist()
        self.with_word = defaultdict(set)
        self.made = {kind: defaultdict(Counter) for kind in AMBIGUOUS}
        for e, name in enumerate(kb.entities):
            for w in normalise(name).split():
                self.with_word[w].add(e)
            for kind, made in self.made.items():
                for out in draws(kind, name):
                    made[out][e] += 1
        self.relations, self.reach = defaultdict(set), defaultdict(set)
        for a, r, b in kb.triples.tolist():
            self.relations[a].add((r, 0))
            self.relations[b].add((r, 1))
            self.reach[a, (r, 0)].add(b)
            self.reach[b, (r, 1)].add(a)


def vote_right(votes: Counter, ids: set) -> float:
    """The share of the answers with the most ``votes`` that are right (ties shared); 0 for no vote."""
    if not votes:
        return 0.0
    top = [a for a, c in votes.items() if c == max(votes.values())]
    return sum(a in ids for a in top) / len(top)


def ceiling(kb: KnowledgeBase, tables: Tables, picked, kind: str, hops: int) -> list:
    """``picked``: (mention, gold name, answer names). Prints how often the gold entity has the
    most facts among the names the mention could stand for (holding its words; for an
    abbreviation, those it abbreviates), without and with the question's relations (``hops`` of
    them), and how often the answer most of those names lead to is right; the same knowing the
    kind's rule. Returns per mention whether the gold entity is the only name the rule makes it
    from that has a path of the question's relations: whether it names one entity."""
    t = tables
    made = t.made.get(kind, {})
    by_degree = by_relation = by_vote = by_made = by_made_vote = 0
    alone = []
    for mention, gold, answers in picked:
        g = kb.entity_ids[gold]
        ids = {kb.entity_ids[a] for a in answers if a in kb.entity_ids}
        if kind == "abbreviation":
            names = set(made[mention])
        else:
            words = normalise(mention).split()
            names = set.intersection(*(t.with_word[w] for w in words)) if words else set()
        rule = made[mention] if mention in made else Counter()
        asked = path_to(g, ids, t.relations, t.reach, hops)
        first = max(names, key=lambda e: (t.degree[e], -e), default=None)
        leads = {e: follow(e, asked, t.reach) for e in names | set(rule)} if asked else {}
        fits = [e for e in names if leads.get(e)]
        by_degree += first == g
        by_relation += max(fits, key=lambda e: (t.degree[e], -e), default=None) == g
        # An answer ranker over all of them at once (what a model whose seed spreads over the
        # candidates can do): the answer most of those names lead to, ties shared.
        by_vote += vote_right(Counter(a for e in fits for a in leads[e]), ids)
        # The same, knowing the kind's rule: only the names it could have made the mention from,
        # each as likely as the share of the kind's draws that make it (a Bayes ranker of the
        # benchmark's own generator, with the count of facts as the prior's tie-break).
        made_fits = {e: c for e, c in rule.items() if leads.get(e)}
        alone.append(set(made_fits) == {g})
        by_made += max(made_fits, key=lambda e: (made_fits[e], t.degree[e], -e), default=None) == g
        made_votes = Counter()
        for e, c in made_fits.items():
            for a in leads[e]:
                made_votes[a] += c
        by_made_vote += vote_right(made_votes, ids)
    n = max(1, len(picked))
    print(f"{kind}: {len(picked)} mentions; the gold entity has the most facts among the names the mention "
          f"could stand for: {100 * by_degree / n:.1f}%; among those with a path of the question's "
          f"relations: {100 * by_relation / n:.1f}%; the answer most of those lead to is right: "
          f"{100 * by_vote / n:.1f}%")
    print(f"{kind}, knowing the kind's rule (only the names it makes the mention from, weighted by its "
          f"draws that do): the most likely, then most facts, is the gold entity: {100 * by_made / n:.1f}%; "
          f"the answer most of their weight leads to is right: {100 * by_made_vote / n:.1f}%; "
          f"the mention names one entity: {sum(alone)}")
    return alone


def draws(kind: str, name: str) -> list:
    """Every mention ``kind`` (of AMBIGUOUS) can make of ``name``, one per equally likely draw."""
    if kind == "dropped_tokens":
        return dropped_token_draws(name)
    out = PERTURB[kind](name, None)
    return [out] if out else []

if __name__ == "__main__":
    sys.exit(main())
