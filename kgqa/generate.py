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
gives fewer: the caller reports how many of each it got.

``ops`` chooses the operations (``QUESTION_OPS``): "path" (the hop kinds), "2-entity" (as
``two_entity``), "count" (kinds "count" and "count-2entity") and "argmax", "argmin"
(``kgqa.op_questions``, over paths of at most 2 hops and the KB's numeric attributes)."""
from __future__ import annotations

import random
from typing import Dict, List, Optional, Sequence, Set, Tuple

from . import op_questions, two_entity
from .config import QUESTION_OPS
# kgqa.config owns these: the command line shows them without importing torch
from .config import QUESTIONS_DEFAULT_N as DEFAULT_N
from .config import QUESTIONS_MAX_ANSWERS as DEFAULT_MAX_ANSWERS
from .config import QUESTIONS_MAX_HOPS as MAX_HOPS
from .kb import KnowledgeBase
from .numbers import numeric_relations, numeric_values
from .op_questions import qtype_line
from .phrasing import phrasing
from .questions import Question, writable_name, write_questions

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

    def draw(self, hops: int, rng) -> Optional[List[int]]:
        """A relation path of ``hops`` hops: the first uniformly among the relations, each next one
        among those that leave what the previous one reaches; None where it ends early."""
        path = [rng.choice(self.relations)]
        while len(path) < hops and self.next[path[-1]]:
            path.append(rng.choice(self.next[path[-1]]))
        return path if len(path) == hops else None

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
        path = graph.draw(hops, rng)
        if path is None:
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


def operations(ops: Optional[Sequence[str]] = None, with_two_entity: bool = False) -> List[str]:
    """The operations asked for, checked, in the order of ``QUESTION_OPS``: ``ops`` (default
    "path"), and "2-entity" with ``with_two_entity``."""
    ops = ["path"] if ops is None else list(ops)
    bad = [o for o in ops if o not in QUESTION_OPS]
    if bad or not ops:
        got = ", ".join(map(str, ops)) or "none"
        raise ValueError(f"ops must be one or more of {', '.join(QUESTION_OPS)}, got {got}")
    chosen = set(ops) | ({"2-entity"} if with_two_entity else set())
    return [o for o in QUESTION_OPS if o in chosen]


def kinds(hops: int, with_two_entity: bool = False, ops: Optional[Sequence[str]] = None) -> List[str]:
    """The kinds of question ``generate`` makes, in order: "1hop" ... "<hops>hop" (op "path"),
    "2entity" (one hop a branch) and "2entity-2hop" (two hops a branch, when hops >= 2) (op
    "2-entity", or ``with_two_entity``), "count" and "count-2entity" (op "count"), "argmax",
    "argmin"."""
    chosen = operations(ops, with_two_entity)
    out = [f"{h}hop" for h in range(1, hops + 1)] if "path" in chosen else []
    if "2-entity" in chosen:
        out += ["2entity"] + (["2entity-2hop"] if hops >= 2 else [])
    if "count" in chosen:
        out += [op_questions.COUNT, op_questions.COUNT_2ENTITY]
    return out + [o for o in (op_questions.ARGMAX, op_questions.ARGMIN) if o in chosen]


def shares(n: int, count: int) -> List[int]:
    """n questions shared among ``count`` kinds: equal shares, the first kinds one more."""
    return [n // count + (i < n % count) for i in range(count)]


def kind_of(q: Question) -> str:
    """The kind (see ``kinds``) of a generated question, from its qtype."""
    return q.qtype.split(":", 1)[0]


def generate(kb: KnowledgeBase, hops: int, n: int = DEFAULT_N, seed: int = 0,
             max_answers: int = DEFAULT_MAX_ANSWERS, with_two_entity: bool = False,
             ops: Optional[Sequence[str]] = None) -> List[Question]:
    """Up to n questions over ``kb``: equal shares of each kind of ``kinds(hops, with_two_entity,
    ops)`` (fewer of a kind the KB cannot give its share of), grouped by kind. Each has one topic
    entity (two for 2-entity questions), its full answer set (at most ``max_answers``; a count
    question, a ``kgqa.op_questions.CountQuestion``, its count, at most ``max_answers``) and a
    qtype "<kind>:<relation path>" (superlatives: "<kind>:<path>@<attribute>")."""
    if not isinstance(hops, int) or not 1 <= hops <= MAX_HOPS:
        raise ValueError(f"generate(): hops must be 1, 2 or 3, got {hops!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"generate(): n must be an integer >= 1, got {n!r}")
    if not isinstance(max_answers, int) or max_answers < 1:
        raise ValueError(f"generate(): max_answers must be an integer >= 1, got {max_answers!r}")
    try:
        todo = kinds(hops, with_two_entity, ops)
    except ValueError as err:
        raise ValueError(f"generate(): {err}") from None
    rng = random.Random(seed)
    graph = _Graph(kb)
    op_hops = min(hops, op_questions.MAX_OP_HOPS)
    attributes = None
    out: List[Question] = []
    for kind, share in zip(todo, shares(n, len(todo))):
        if share == 0:
            continue
        if kind.startswith("2entity"):
            out += two_entity.generate(kb, share, seed, max_answers, hops=2 if kind == "2entity-2hop" else 1)
        elif kind == op_questions.COUNT:
            out += op_questions.count_questions(kb, graph, share, rng, max_answers, op_hops, TRIES)
        elif kind == op_questions.COUNT_2ENTITY:
            out += op_questions.intersection_counts(kb, share, seed, max_answers)
        elif kind in (op_questions.ARGMAX, op_questions.ARGMIN):
            if attributes is None:
                attributes = op_questions.Attributes(kb, graph, numeric_relations(kb), numeric_values(kb))
            mode = "max" if kind == op_questions.ARGMAX else "min"
            out += op_questions.superlative_questions(kb, graph, attributes, mode, share, rng, max_answers, op_hops,
                                                      TRIES)
        else:
            out += path_questions(kb, graph, int(kind[0]), share, rng, max_answers)
    return out


def write_generated(path, questions: Sequence[Question], kb: KnowledgeBase, qtype_path=None) -> None:
    """The questions in MetaQA's format (a count's answer: its numeral), and with ``qtype_path``
    their types one a line (``kgqa.op_questions.qtype_line``), aligned."""
    write_questions(path, list(questions), kb)
    if qtype_path is not None:
        with open(qtype_path, "w", encoding="utf-8") as f:
            f.writelines(qtype_line(q) + "\n" for q in questions)
