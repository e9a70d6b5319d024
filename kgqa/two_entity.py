"""2-entity questions from any KB, in MetaQA format with both topic entities in brackets, kept
only where the intersection matters (the first entity's branch alone gives more answers).

Two families (``hops``):
- 1: the answers are the entities reached from [A] by one relation AND from [B] by another:
  "which movies starred [A] and were directed by [B]".
- 2: each branch takes two hops and they share the last one: "which actors appeared in films
  directed by [A] and in films written by [B]" (an actor of some film of A's and of some film of
  B's). Here one branch seeded with both entities cannot stand in for intersection: weights add
  up over paths, so an actor of many of A's films outranks one of A's and B's.

Phrasings (``kgqa.phrasing``): several per MetaQA relation, hand-written; for other relations,
built from their names: "who reports to [A] and works in [B]"."""
from __future__ import annotations

import random
from typing import Dict, List, Optional, Sequence, Set, Tuple

from .kb import KnowledgeBase
from .phrasing import METAQA_ASK, intersection_question, shared_object_question
from .questions import Question, writable_name

def _writable(kb: KnowledgeBase, *entities) -> bool:
    return all(writable_name(kb.entities[e]) for e in entities)


class _Facts:
    """The KB's facts over the allowed relations, indexed both ways."""

    def __init__(self, kb: KnowledgeBase, relations: Optional[Sequence[str]]):
        allowed = set(relations or kb.base_relations)
        self.by_value: Dict[Tuple[int, int], Set[int]] = {}  # (relation, value) -> subjects
        self.by_subject: Dict[int, List[Tuple[int, int]]] = {}  # subject -> [(relation, value)]
        for s, p, o in kb.triples.tolist():
            if kb.base_relations[p] in allowed:
                self.by_value.setdefault((p, o), set()).add(s)
                self.by_subject.setdefault(s, []).append((p, o))
        self._reach: Dict[Tuple[int, int, int], Set[int]] = {}

    def values(self, s: int, p: int) -> Set[int]:
        return {o for q, o in self.by_subject.get(s, ()) if q == p}

    def reach2(self, p: int, a: int, last: int) -> Set[int]:
        """Values reached from [a] backwards over p, then forwards over ``last``."""
        key = (p, a, last)
        if key not in self._reach:
            self._reach[key] = set().union(*(self.values(s, last) for s in self.by_value[(p, a)]))
        return self._reach[key]


def generate(kb: KnowledgeBase, n: int, seed: int = 0, max_answers: int = 20,
             relations: Optional[List[str]] = None, hops: int = 1) -> List[Question]:
    """Up to n questions of the family ``hops`` (1 or 2)."""
    if hops not in (1, 2):
        raise ValueError(f"two_entity.generate: hops must be 1 or 2, got {hops!r}")
    facts = _Facts(kb, relations)
    make = _one_hop if hops == 1 else _two_hop
    return make(kb, facts, n, random.Random(seed), max_answers)


def _one_hop(kb, facts: _Facts, n, rng, max_answers) -> List[Question]:
    subjects = sorted(s for s, fs in facts.by_subject.items() if len(fs) >= 2)
    out, seen = [], set()
    for _ in range(20 * n):
        if len(out) >= n or not subjects:
            break
        t = rng.choice(subjects)
        (pa, a), (pb, b) = rng.sample(facts.by_subject[t], 2)
        if a == b or (a, b) in seen or not _writable(kb, a, b):
            continue
        answers = facts.by_value[(pa, a)] & facts.by_value[(pb, b)]
        if answers == facts.by_value[(pa, a)] or len(answers) > max_answers or not _writable(kb, *answers):
            continue  # A alone would answer it, too broad to be a question, or an answer the file cannot hold
        seen.add((a, b))
        text = intersection_question(rng, kb.base_relations[pa], kb.entities[a], kb.base_relations[pb], kb.entities[b])
        qtype = f"2entity:{kb.base_relations[pa]}+{kb.base_relations[pb]}"
        out.append(Question(text, [a, b], sorted(answers), qtype))
    return out


def _two_hop(kb, facts: _Facts, n, rng, max_answers) -> List[Question]:
    """Walk subject s1 -last-> y <-last- s2 and take a fact of each subject as a branch's topic,
    so that y answers the question; the answers are every value both branches reach."""
    names = kb.base_relations
    lasts = sorted({p for fs in facts.by_subject.values() for p, _ in fs if names[p] in METAQA_ASK})
    if not lasts:  # not MetaQA: any relation may be the shared last hop
        lasts = sorted({p for fs in facts.by_subject.values() for p, _ in fs})
    with_last = {p: sorted(s for s, fs in facts.by_subject.items() if any(q == p for q, _ in fs)) for p in lasts}
    out, seen = [], set()
    for _ in range(50 * n):
        if len(out) >= n or not lasts:
            break
        last = rng.choice(lasts)
        if not with_last[last]:
            continue
        s1 = rng.choice(with_last[last])
        y = rng.choice(sorted(facts.values(s1, last)))
        s2 = rng.choice(sorted(facts.by_value[(last, y)]))
        (pa, a), (pb, b) = rng.choice(facts.by_subject[s1]), rng.choice(facts.by_subject[s2])
        if len({a, b, y}) < 3 or (a, b, last) in seen or not _writable(kb, a, b):
            continue
        from_a = facts.reach2(pa, a, last) - {a, b}  # the model never answers a topic entity
        answers = from_a & facts.reach2(pb, b, last)
        if answers == from_a or len(answers) > max_answers or not _writable(kb, *answers):
            continue
        seen.add((a, b, last))
        text = shared_object_question(rng, names[pa], kb.entities[a], names[pb], kb.entities[b], names[last])
        out.append(Question(text, [a, b], sorted(answers), f"2entity-2hop:{names[pa]}+{names[pb]}>{names[last]}"))
    return out
