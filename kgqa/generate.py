"""Questions for a KB that has none (``kgqa make-questions``): 1- to 3-hop questions, and 2-entity
ones, drawn from the KB's facts and said in words from its relation names (``kgqa.phrasing``).

A question of h hops follows a relation path from one topic entity: r1 from [X], then r2 from
what r1 reached, and so on, each relation either way round (``r`` or ``r~inv``). Its answers are
every entity the path reaches, with the model's rule that a path never comes back to its topic:
the topic is dropped from what each hop reaches, so it is never an answer and a path that only
returns to it gives no question. Questions with more than ``max_answers`` answers are skipped.

``generate(kb, hops)`` makes questions of every hop count from 1 to ``hops`` (a model trained
with ``kgqa train --hops N`` answers questions of up to N hops, and learns how many a question
takes from seeing each), in equal shares, and with ``two_entity`` also 2-entity questions
(``kgqa.two_entity``: one hop a branch, and two hops a branch when ``hops`` >= 2). Paths are drawn
relation by relation (the first uniformly among the relations, each next one among those that
leave what the previous one reaches), then a topic among the entities the path starts from, so
rare relations get their share; each hop's phrasing is drawn from several templates. The same
seed gives the same questions. A KB too small for its share of distinct questions of some kind
gives fewer: the caller reports how many of each it got."""
from __future__ import annotations

import random
from typing import Dict, List, Optional, Sequence, Set, Tuple

from . import two_entity
# kgqa.config owns these: the command line shows them without importing torch
from .config import QUESTIONS_DEFAULT_N as DEFAULT_N
from .config import QUESTIONS_MAX_ANSWERS as DEFAULT_MAX_ANSWERS
from .config import QUESTIONS_MAX_HOPS as MAX_HOPS
from .kb import KnowledgeBase
from .phrasing import phrasing
from .questions import Question, writable_name

TRIES = 30  # draws per question wanted before a kind is given up as exhausted
MAX_REACH = 10_000  # a hop reaching more entities ends the draw: its answers would be too many anyway


class _Graph:
    """The KB's facts both ways round: relation ids [0, R) forward, [R, 2R) inverse (``kgqa.kb``)."""

    def __init__(self, kb: KnowledgeBase):
        nrel = len(kb.base_relations)
        self.out: Dict[Tuple[int, int], Set[int]] = {}  # (entity, relation) -> entities it reaches
        for s, p, o in kb.triples.tolist():
            self.out.setdefault((s, p), set()).add(o)
            self.out.setdefault((o, p + nrel), set()).add(s)
        starts: Dict[int, Set[int]] = {}
        for e, r in self.out:
            starts.setdefault(r, set()).add(e)
        self.starts = {r: sorted(es) for r, es in starts.items()}  # relation -> entities it leaves
        self.relations = sorted(self.starts)
        leaving: Dict[int, Set[int]] = {}  # entity -> relations leaving it
        for e, r in self.out:
            leaving.setdefault(e, set()).add(r)
        # relation -> the relations that leave some entity it reaches: the paths worth drawing
        self.next: Dict[int, List[int]] = {}
        for r, es in self.starts.items():
            reached = set().union(*(self.out[(e, r)] for e in es))
            self.next[r] = sorted(set().union(*(leaving.get(e, ()) for e in reached)))

    def walk(self, topic: int, path: Sequence[int]) -> Optional[List[Set[int]]]:
        """What each hop of ``path`` reaches from ``topic``, never the topic; None where a hop
        reaches nothing or more than MAX_REACH."""
        frontier, reached = {topic}, []
        for r in path:
            nxt: Set[int] = set()
            for e in frontier:
                nxt |= self.out.get((e, r), set())
            nxt.discard(topic)
            if not nxt or len(nxt) > MAX_REACH:
                return None
            reached.append(nxt)
            frontier = nxt
        return reached


def phrase(kb: KnowledgeBase, topic: int, path: Sequence[int], reached: Sequence[Set[int]], rng) -> str:
    """The question of ``path`` from ``topic``: each hop but the last a noun phrase nested into
    the next ("the people who work in [X]"), the last a question about them."""
    nrel = len(kb.base_relations)
    x, plural = f"[{kb.entities[topic]}]", False
    for r, hits in zip(path[:-1], reached[:-1]):
        many = len(hits) > 1
        x = rng.choice(phrasing(kb.base_relations[r % nrel]).describe(r >= nrel, x, plural, many))
        plural = many
    last = path[-1]
    return rng.choice(phrasing(kb.base_relations[last % nrel]).ask(last >= nrel, x, plural, len(reached[-1]) > 1))


def path_questions(kb: KnowledgeBase, graph: _Graph, hops: int, n: int, rng, max_answers: int) -> List[Question]:
    """Up to n distinct questions of exactly ``hops`` hops."""
    out: List[Question] = []
    seen: Set[str] = set()
    for _ in range(TRIES * n):
        if len(out) >= n or not graph.relations:
            break
        path = [rng.choice(graph.relations)]
        while len(path) < hops and graph.next[path[-1]]:
            path.append(rng.choice(graph.next[path[-1]]))
        if len(path) < hops:
            continue
        topic = rng.choice(graph.starts[path[0]])
        reached = graph.walk(topic, path)
        if reached is None or len(reached[-1]) > max_answers:
            continue
        answers = sorted(reached[-1])
        if not all(writable_name(kb.entities[e]) for e in [topic] + answers):
            continue
        text = phrase(kb, topic, path, reached, rng)
        if text in seen:
            continue
        seen.add(text)
        qtype = f"{hops}hop:" + ">".join(kb.relations[r] for r in path)
        out.append(Question(text, [topic], answers, qtype))
    return out


def kinds(hops: int, with_two_entity: bool) -> List[str]:
    """The kinds of question ``generate`` makes, in order: "1hop" ... "<hops>hop", then
    "2entity" (one hop a branch) and "2entity-2hop" (two hops a branch, when hops >= 2)."""
    out = [f"{h}hop" for h in range(1, hops + 1)]
    if with_two_entity:
        out += ["2entity"] + (["2entity-2hop"] if hops >= 2 else [])
    return out


def shares(n: int, count: int) -> List[int]:
    """n questions shared among ``count`` kinds: equal shares, the first kinds one more."""
    return [n // count + (i < n % count) for i in range(count)]


def kind_of(q: Question) -> str:
    """The kind (see ``kinds``) of a generated question, from its qtype."""
    return q.qtype.split(":", 1)[0]


def generate(kb: KnowledgeBase, hops: int, n: int = DEFAULT_N, seed: int = 0,
             max_answers: int = DEFAULT_MAX_ANSWERS, with_two_entity: bool = False) -> List[Question]:
    """Up to n questions over ``kb``: equal shares of each kind of ``kinds(hops, with_two_entity)``
    (fewer of a kind the KB cannot give its share of), grouped by kind. Each has one topic entity
    (two for 2-entity questions), its full answer set (at most ``max_answers``) and a qtype
    "<kind>:<relation path>"."""
    if not isinstance(hops, int) or not 1 <= hops <= MAX_HOPS:
        raise ValueError(f"generate(): hops must be 1, 2 or 3, got {hops!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"generate(): n must be an integer >= 1, got {n!r}")
    if not isinstance(max_answers, int) or max_answers < 1:
        raise ValueError(f"generate(): max_answers must be an integer >= 1, got {max_answers!r}")
    todo = kinds(hops, with_two_entity)
    rng = random.Random(seed)
    graph = _Graph(kb)
    out: List[Question] = []
    for kind, share in zip(todo, shares(n, len(todo))):
        if share == 0:
            continue
        if kind.startswith("2entity"):
            out += two_entity.generate(kb, share, seed, max_answers, hops=2 if kind == "2entity-2hop" else 1)
        else:
            out += path_questions(kb, graph, int(kind[0]), share, rng, max_answers)
    return out
