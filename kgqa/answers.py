"""Answers to questions in plain text: what ``QA.ask`` and ``QA.ask_many`` return, and how they
are made. A question is read (its topic entities from the [brackets], or found by the model with
learned entities), the model runs once per batch, ``qa.calibration`` picks the answers the model
stands behind (none: it abstains), and each answer gets its evidence (``kgqa.evidence``).

A model with operations (``kgqa.operations``) says which it chose (``Response.operation``, and
P(operation) in ``operations``). A count's answer is the number, as its numeral in
``Answer.entity`` (score: the count distribution's probability of it); its evidence is the paths
to the entities it counted (``Response.counted``, largest weight first), one each. A superlative's
answers are entities with their paths as evidence (the path reaches each answer; the selection by
value keeps it). A question the calibration refuses gets no answer whatever the operation.

A question that cannot be read (empty, an unknown or missing topic entity, more topic entities than
the model takes, or, with learned entities, no span that names an entity) is a Response with
``error`` set from ``ask_many``, so one bad question never stops a batch; ``ask`` raises a
ValueError with that message instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Tuple

from .decoding import branch_links
from .evidence import HostTrace, EvidencePath, answer_paths, named
from .mentions import nearest_names
from .operations import COUNT, OPERATIONS, members
from .questions import Question, TopicMatch, resolve_topics

if TYPE_CHECKING:
    from .qa import QA

__all__ = ["Answer", "Link", "ReadAs", "Response", "ask", "ask_many", "read_question", "BATCH_SIZE", "NO_LINK"]

BATCH_SIZE = 64  # questions per model run: a run holds [batch, entities] weights per hop and chain
NO_LINK = "no span of the question names an entity of the KB"
NOT_SURE = "no entity scores above the answer threshold"
NO_BRACKETS = "no topic entity: put it in [brackets], e.g. what films did [Tom Hanks] star in"
MAX_COUNTED = 50  # the counted entities a Response lists (a count may be of thousands)


@dataclass
class Answer:
    entity: str
    score: float  # in [0, 1]
    # The paths that carry the score, largest share first; a topic entity's paths sum to ``score``.
    evidence: List[EvidencePath] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"entity": self.entity, "score": self.score, "evidence": [p.to_dict() for p in self.evidence]}


@dataclass
class Link:
    """Learned entities: a branch's span of the question and the entity the model took it for."""

    span: str
    entity: str
    span_p: float  # P(span) (the second branch: P2(span))
    entity_p: float  # P(entity | span)

    def to_dict(self) -> dict:
        return {"span": self.span, "entity": self.entity, "span_p": self.span_p, "entity_p": self.entity_p}


@dataclass
class ReadAs:
    """A bracketed name that is no exact entity name and the entity it was read as."""

    name: str  # as written
    entity: str
    how: str  # "normalised" or "fuzzy"
    similarity: float

    def to_dict(self) -> dict:
        return {"name": self.name, "entity": self.entity, "how": self.how, "similarity": self.similarity}


@dataclass
class Response:
    question: str
    answers: List[Answer] = field(default_factory=list)  # every answer the model stands behind, best first
    abstained: bool = False  # the model stands behind no answer
    abstain_reason: Optional[str] = None  # why, when it abstained (kgqa.calibration)
    topics: List[str] = field(default_factory=list)  # the bracketed or linked topic entities
    error: Optional[str] = None  # why the question could not be read (then no answers, not abstained)
    hop_attention: List[float] = field(default_factory=list)  # P(the question takes t + 1 hops)
    links: List[Link] = field(default_factory=list)  # learned entities only
    two_entities: Optional[float] = None  # learned entities with intersection: P(two topic entities)
    # Bracketed names that were not exact, as read (kgqa.questions.resolve_topics): shown, so that a
    # wrong guess is seen
    read_as: List[ReadAs] = field(default_factory=list)
    # A model with operations (kgqa.operations): the one it chose, P(each), and for a count the
    # entities counted (at most MAX_COUNTED, largest weight first); None / empty otherwise
    operation: Optional[str] = None
    operations: Dict[str, float] = field(default_factory=dict)
    counted: List[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-able: {"question", "answers": [{"entity", "score", "evidence"}], "abstained",
        "abstain_reason", "error", "topics", "hop_attention", "links", "two_entities", "read_as",
        "operation", "operations", "counted"}; a count's answer is its numeral in "entity"."""
        return {"question": self.question, "answers": [a.to_dict() for a in self.answers], "abstained": self.abstained,
                "abstain_reason": self.abstain_reason, "error": self.error, "topics": self.topics,
                "hop_attention": self.hop_attention, "links": [link.to_dict() for link in self.links],
                "two_entities": self.two_entities, "read_as": [m.to_dict() for m in self.read_as],
                "operation": self.operation, "operations": self.operations, "counted": self.counted}


def read_question(qa: "QA", text: str) -> Tuple[Optional[Question], Optional[str], List[TopicMatch]]:
    """(the Question, None, how its bracketed names were read), or (None, why it cannot be asked,
    []). Bracketed names are forgiving (``resolve_topics``: normalised or fuzzy, else an error
    with "did you mean"). With learned entities the model finds the topic entities when it runs
    (``NO_LINK`` if it finds none)."""
    if not text.strip():
        return None, "empty question", []
    if qa.learned:
        return Question(text, [], []), None, []
    try:
        matches = resolve_topics(text, qa.kb)
    except (KeyError, ValueError) as e:  # resolve_topics' message, as it words it
        return None, str(e.args[0]) if e.args else str(e), []
    if not matches:
        return None, NO_BRACKETS, []
    if qa.max_topics is not None and len(matches) > qa.max_topics:
        return None, f"{len(matches)} bracketed entities, but this model takes at most {qa.max_topics}", []
    return Question(text, [m.entity for m in matches], []), None, matches


def _check(name: str, value, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return value


def ask_many(qa: "QA", questions: Iterable[str], top: int = 5, paths: int = 3,
             batch_size: int = BATCH_SIZE) -> List[Response]:
    """One Response per question, in order; the model runs once per ``batch_size`` questions.
    ``top``: the most answers per question; ``paths``: the most evidence paths per answer and
    topic entity (0: none, and the model keeps nothing for them)."""
    if isinstance(questions, (str, bytes)):
        raise TypeError("ask_many(): questions must be a list of strings, not one string (ask() takes one)")
    questions = list(questions)
    for i, text in enumerate(questions):
        if not isinstance(text, str):
            raise TypeError(f"ask_many(): questions[{i}] must be a string, got {type(text).__name__}")
    _check("top", top, 1)
    _check("paths", paths, 0)
    _check("batch_size", batch_size, 1)
    out: List[Optional[Response]] = [None] * len(questions)
    todo = []
    for i, text in enumerate(questions):
        q, error, matches = read_question(qa, text)
        if error is None:
            todo.append((i, q, matches))
        else:
            out[i] = Response(text, error=error)
    for start in range(0, len(todo), batch_size):
        part = todo[start : start + batch_size]
        qs = [q for _, q, _ in part]
        scores, model_out = qa.predict(qs, trace=paths > 0)
        chosen = qa.calibration.select(scores)
        for b, ((i, q, matches), ids) in enumerate(zip(part, chosen)):
            out[i] = _respond(qa, q, matches, b, scores, model_out, ids[:top], paths)
    return out


def _respond(qa: "QA", q: Question, matches: List[TopicMatch], b: int, scores, out, ids: List[int],
             paths: int) -> Response:
    kb = qa.kb
    r = Response(q.text, hop_attention=out.hop_attention[b].tolist(),
                 read_as=[ReadAs(m.name, kb.entities[m.entity], m.how, m.similarity) for m in matches
                          if m.how != "exact"])
    if out.topics is not None:  # learned entities
        topics = out.topics[b]
        r.links = [Link(link.mention.text, kb.entities[link.entity], link.span_p, link.entity_p)
                   for link in branch_links(out.resolution, out.links[b].mentions, b, branches=len(topics))]
        if qa.cfg.intersection:
            r.two_entities = float(out.resolution.two[b, 0])
        if not topics:
            near = nearest_names(out.links[b].plain, kb.aliases)
            r.error = NO_LINK + (f"; did you mean {', '.join(f'[{kb.entities[e]}]' for e in near)}?" if near else "")
            return r
    else:
        topics = q.topics
    r.topics = [kb.entities[e] for e in topics]
    if out.ops is not None:
        r.operations = {op: float(p) for op, p in zip(OPERATIONS, out.ops.p[b].tolist())}
        r.operation = OPERATIONS[int(out.ops.chosen[b])]
        if r.operation == COUNT:
            return _count(qa, r, b, out, paths)
    r.abstained = not ids
    if r.abstained:
        r.abstain_reason = out.refusals[b] or NOT_SURE
    values = scores[b, ids].tolist() if ids else []
    trace = HostTrace(out.trace[b]) if paths and ids else None
    for e, v in zip(ids, values):
        evidence = [named(kb, p) for p in answer_paths(trace, qa.fact_index, e, paths)] if paths else []
        r.answers.append(Answer(kb.entities[e], v, evidence))
    return r


def _count(qa: "QA", r: Response, b: int, out, paths: int) -> Response:
    """A count's Response: the number, and the entities counted with a path to each as evidence."""
    kb = qa.kb
    if out.refusals is not None and out.refusals[b] is not None:
        r.abstained, r.abstain_reason = True, out.refusals[b]
        return r
    x = out.scores[b : b + 1].clamp(min=0)
    if out.exclude is not None:
        x = x.masked_fill(out.exclude[b : b + 1], 0.0)
    weights = members(x)[0]
    ids = weights.nonzero().flatten()
    ids = ids[weights[ids].argsort(descending=True, stable=True)][:MAX_COUNTED].tolist()
    r.counted = [kb.entities[e] for e in ids]
    n = int(out.ops.number[b])
    trace = HostTrace(out.trace[b]) if paths and ids else None
    evidence = ([named(kb, p) for e in ids[:paths] for p in answer_paths(trace, qa.fact_index, e, 1)[:1]]
                if trace is not None else [])
    r.answers.append(Answer(str(n), float(out.ops.count_dist[b, n]), evidence))
    return r


def ask(qa: "QA", question: str, top: int = 5, paths: int = 3) -> Response:
    """``ask_many(qa, [question], ...)[0]``, but a ValueError with the Response's error for a
    question that cannot be read."""
    if not isinstance(question, str):
        raise TypeError(f"ask(): question must be a string, got {type(question).__name__}")
    r = ask_many(qa, [question], top, paths)[0]
    if r.error is not None:
        raise ValueError(r.error)
    return r
