"""Counting and superlative questions for ``kgqa make-questions --ops count,argmax,argmin``
(``kgqa.generate`` calls these; ``kgqa.phrasing`` says them in words).

Kinds (each question's qtype starts with its kind; a question file's qtype lines hold the kind
alone, ``qtype_line``):

- ``count``: how many entities a relation path of 1 or 2 hops reaches from [X] (the path's answer
  set as ``kgqa.generate`` makes it: the topic never in it), "how many films directed by [X] are
  there". The answer is the numeral; a count of 0 is never asked, and counts above
  ``max_answers`` are skipped, as answer sets above it are.
- ``count-2entity``: how many entities both of two topics reach, one hop each (the 1-hop
  2-entity questions of ``kgqa.two_entity``, counted): "how many films did [A] and [B] star in
  together".
- ``argmax`` / ``argmin``: which member(s) of what a path of 1 or 2 hops reaches from [X] have the
  highest / lowest value of a numeric attribute (``kgqa.numbers.numeric_relations``): "what is the
  most recent film starring [X]". Members without a value take no part, but at least half of the
  set must have one (``MIN_VALUED_SHARE``: else it ranks things of another kind); a set with a member of
  several different values is not asked (MetaQA's "Kismet" is three films, of 1920, 1944 and 1955:
  is it more recent than one of 1950?), so each member's value is the one number its attribute
  leads to, the same under ``kgqa_kernels.entity_values``' mean; at least two members must have
  values, and not all the same; every tied member is an answer.

A count question is a ``CountQuestion``: its ``answers`` are empty (the answer is a numeral, not an
entity) and ``members`` holds the set counted."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Set

import numpy as np

from . import two_entity
from .kb import KnowledgeBase
from .phrasing import count_question, intersection_count_question, set_phrases, superlative_question
from .questions import Question, writable_name

COUNT, COUNT_2ENTITY, ARGMAX, ARGMIN = "count", "count-2entity", "argmax", "argmin"
OP_KINDS = (COUNT, COUNT_2ENTITY, ARGMAX, ARGMIN)
MAX_OP_HOPS = 2  # the longest path counted or ranked: "the films of the director of [X]" still reads
# A superlative ranks a set most of whose members have the attribute: in MetaQA the genre "Western"
# is also a film's title, with a release year, and without this "which of the genres of the films
# from [2011] is the oldest" was asked (of the genres, only the ones that are also titles have years).
MIN_VALUED_SHARE = 0.5


@dataclass
class CountQuestion(Question):
    """A question whose answer is a number: ``Question.count`` (no entity answers: the question
    file holds its numeral, ``kgqa.questions.write_questions``)."""

    members: List[int] = field(default_factory=list)  # the entities counted


def qtype_line(q: Question) -> str:
    """q's line of a question-type file: the kind alone for the kinds of this module (a model's
    Hits@1 is reported per line value), the whole qtype for the others ("2hop:works_in>located_in")."""
    kind = (q.qtype or "").split(":", 1)[0]
    return kind if kind in OP_KINDS else (q.qtype or "")


def _writable(kb: KnowledgeBase, entities) -> bool:
    return all(writable_name(kb.entities[e]) for e in entities)


def _set_phrases(kb: KnowledgeBase, topic: int, path: Sequence[int], reached: Sequence[Set[int]], rng,
                 many: bool) -> List[str]:
    """Noun phrases (no article) for what ``path`` reaches from ``topic``, singular unless ``many``:
    each hop but the last nested into the next ("films directed by the director of [X]")."""
    nrel = len(kb.base_relations)
    x, plural = f"[{kb.entities[topic]}]", False
    for r, hits in zip(path[:-1], reached[:-1]):
        several = len(hits) > 1
        x = "the " + rng.choice(set_phrases(kb.base_relations[r % nrel], r >= nrel, x, plural, several))
        plural = several
    last = path[-1]
    return set_phrases(kb.base_relations[last % nrel], last >= nrel, x, plural, many)


def _path_name(kb: KnowledgeBase, path: Sequence[int]) -> str:
    return ">".join(kb.relations[r] for r in path)


def count_questions(kb: KnowledgeBase, graph, n: int, rng, max_answers: int, max_hops: int,
                    tries: int) -> List[CountQuestion]:
    """Up to n distinct ``count`` questions over paths of 1 to ``max_hops`` hops (each drawn as
    ``kgqa.generate`` draws paths; ``graph`` is its ``_Graph``)."""
    out: List[CountQuestion] = []
    seen: Set[str] = set()
    for _ in range(tries * n):
        if len(out) >= n or not graph.relations:
            break
        path = graph.draw(rng.randint(1, max_hops), rng)
        if path is None:
            continue
        topic = rng.choice(graph.starts[path[0]])
        reached = graph.walk(topic, path)
        if reached is None or len(reached[-1]) > max_answers or not _writable(kb, [topic]):
            continue
        text = count_question(rng, _set_phrases(kb, topic, path, reached, rng, many=True))
        if text in seen:
            continue
        seen.add(text)
        members = sorted(reached[-1])
        out.append(CountQuestion(text, [topic], [], f"{COUNT}:{_path_name(kb, path)}", count=len(members),
                                 members=members))
    return out


def intersection_counts(kb: KnowledgeBase, n: int, seed: int, max_answers: int) -> List[CountQuestion]:
    """Up to n ``count-2entity`` questions: the 1-hop 2-entity questions of ``kgqa.two_entity``
    (the intersection changes the answer; at most ``max_answers`` entities), counted."""
    rng = random.Random(seed + 1)  # the phrasing's draws, apart from two_entity's own (seeded with ``seed``)
    out: List[CountQuestion] = []
    for q in two_entity.generate(kb, n, seed, max_answers, hops=1):
        ra, rb = _relation_pair(kb, q.qtype.split(":", 1)[1])
        a, b = q.topics
        text = intersection_count_question(rng, ra, kb.entities[a], rb, kb.entities[b])
        out.append(CountQuestion(text, [a, b], [], f"{COUNT_2ENTITY}:{ra}+{rb}", count=len(q.answers),
                                 members=list(q.answers)))
    return out


def _relation_pair(kb: KnowledgeBase, pair: str):
    """"ra+rb" of a 2-entity qtype back into its two relation names (a name may hold "+")."""
    names = set(kb.base_relations)
    for i, c in enumerate(pair):
        if c == "+" and pair[:i] in names and pair[i + 1:] in names:
            return pair[:i], pair[i + 1:]
    raise ValueError(f"2-entity qtype {pair!r} is not two relations of the KB")


class Attributes:
    """The KB's numeric attributes (``kgqa.numbers``) and each entity's value through one: the mean
    of the numbers its facts of that relation lead to, None where there is none."""

    def __init__(self, kb: KnowledgeBase, graph, relations: Sequence[int], numbers: np.ndarray):
        self.graph, self.numbers = graph, numbers
        nrel = len(kb.base_relations)
        self.relations = [a for a in relations if a in graph.starts]
        self.into: Dict[int, List[int]] = {}  # attribute -> relations that reach an entity with it
        for a in self.relations:
            has = set(graph.starts[a])
            self.into[a] = [r for r in graph.relations if r % nrel != a % nrel
                            and any(o in has for e in graph.starts[r] for o in graph.out[(e, r)])]
        self.prev: Dict[int, List[int]] = {}  # relation -> relations reaching an entity it leaves
        for q in graph.relations:
            for r in graph.next[q]:
                self.prev.setdefault(r, []).append(q)
        self._values: Dict[tuple, Set[float]] = {}

    def values(self, entity: int, attribute: int) -> Set[float]:
        """The distinct numbers ``attribute`` leads to from ``entity``."""
        key = (entity, attribute)
        if key not in self._values:
            self._values[key] = {self.numbers[o] for o in self.graph.out.get(key, ()) if math.isfinite(self.numbers[o])}
        return self._values[key]

    def draw(self, hops: int, rng):
        """(attribute, path) with the path's last relation reaching entities with the attribute,
        drawn from the end backwards; None where no such path of ``hops`` hops was found."""
        attribute = rng.choice(self.relations)
        if not self.into[attribute]:
            return None
        path = [rng.choice(self.into[attribute])]
        while len(path) < hops:
            before = self.prev.get(path[0])
            if not before:
                return None
            path.insert(0, rng.choice(before))
        return attribute, path


def superlative_questions(kb: KnowledgeBase, graph, attributes: Attributes, mode: str, n: int, rng,
                          max_answers: int, max_hops: int, tries: int) -> List[Question]:
    """Up to n distinct ``argmax`` (mode "max") or ``argmin`` ("min") questions."""
    if mode not in ("max", "min"):
        raise ValueError(f"superlative_questions(): mode must be 'max' or 'min', got {mode!r}")
    kind = ARGMAX if mode == "max" else ARGMIN
    out: List[Question] = []
    seen: Set[str] = set()
    for _ in range(tries * n):
        if len(out) >= n or not attributes.relations:
            break
        drawn = attributes.draw(rng.randint(1, max_hops), rng)
        if drawn is None:
            continue
        attribute, path = drawn
        topic = rng.choice(graph.starts[path[0]])
        reached = graph.walk(topic, path)
        if reached is None:
            continue
        found = {e: v for e in reached[-1] if (v := attributes.values(e, attribute))}
        if any(len(v) > 1 for v in found.values()):
            continue  # a member of several values (a title of two films): which is more recent is not clear
        if len(found) < MIN_VALUED_SHARE * len(reached[-1]):
            continue  # members mostly without the attribute: things of another kind (MIN_VALUED_SHARE)
        valued = {e: next(iter(v)) for e, v in found.items()}
        if len(set(valued.values())) < 2:
            continue  # fewer than two members with a value, or no two values differ: not a superlative
        best = max(valued.values()) if mode == "max" else min(valued.values())
        answers = sorted(e for e, v in valued.items() if v == best)
        if len(answers) > max_answers or not _writable(kb, [topic] + answers):
            continue
        one = _set_phrases(kb, topic, path, reached, rng, many=False)
        many = _set_phrases(kb, topic, path, reached, rng, many=True)
        text = superlative_question(rng, mode, kb.base_relations[attribute % len(kb.base_relations)], one, many)
        if text in seen:
            continue
        seen.add(text)
        out.append(Question(text, [topic], answers, f"{kind}:{_path_name(kb, path)}@{kb.relations[attribute]}"))
    return out
