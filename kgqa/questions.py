"""MetaQA question files: ``question<TAB>answer1|answer2|...`` with every topic entity in
[brackets], UTF-8 (read by ``kgqa_kernels.kb_file.text_lines``: a byte-order mark is dropped, a
line that is not UTF-8 is an error naming file and line). Questions the model cannot use (a topic
entity or every answer missing from the KB, more topic entities than it takes) are counted and
left out, not fatal.

Bracketed names: a question asked (``parse_question``) is forgiving, a question file
(``read_questions``) is exact. Asked, ``[the electric harbor]`` and ``[The Electrik Harbour]``
mean The Electric Harbor when no other name fits as well (``kgqa.aliases.AliasIndex.resolve``:
exact, then normalised, then fuzzy with a margin over the runner-up); a name that fits none, or
several, is an ``UnknownEntity`` that offers the nearest names. In a training or test file every
name must be exact: a fuzzy match there would silently change what a question is labelled with,
and the files are written by programs, not typed.

Count answers (issue 20): an answer field that is one whole number ("how many films did [X]
direct<TAB>3") is kept as ``Question.count``, whether or not an entity has that name: a numeral
that names an entity ("1999", a year) is both, an entity answer and a count, and the model decides
which it answers with. A question whose only answer is a numeral that names no entity is kept
(no entity answers) and counted in ``ReadReport.count_only``."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from kgqa_kernels.kb_file import text_lines

from .aliases import NameMatch
from .kb import KnowledgeBase
from .numbers import parse_number

MENTION = re.compile(r"\[([^\]]+)\]")
MENTION_TOKEN = "NE"  # what the encoder sees in place of each bracketed mention


class QuestionFormatError(ValueError):
    """A malformed line in a question file: the message starts with file:line."""


@dataclass
class Question:
    text: str  # as written, brackets included
    topics: List[int]  # entity ids of the bracketed mentions, in order
    answers: List[int]
    qtype: Optional[str] = None
    count: Optional[int] = None  # the answer as a number, when it is one whole number (see the module's docstring)

    @property
    def masked(self) -> str:
        """The text with each mention replaced by NE: the relation path depends on the phrasing,
        not on which entity is asked about."""
        return MENTION.sub(MENTION_TOKEN, self.text)


@dataclass
class ReadReport:
    lines: int = 0
    kept: int = 0
    missing_topic: int = 0  # questions dropped: a bracketed entity is not in the KB
    no_answer_in_kb: int = 0  # questions dropped: no answer is in the KB
    too_many_topics: int = 0  # questions dropped: more topic entities than the model takes (max_topics)
    missing_answers: int = 0  # answers dropped (the question kept other answers)
    joined_answers: int = 0  # answers found by re-joining a title that contains "|"-split commas
    counts: int = 0  # questions kept with a count answer (one whole number), entity names or not
    count_only: int = 0  # of those, the numerals that name no entity: kept with no entity answer
    examples: List[str] = field(default_factory=list)

    def summary(self) -> str:
        too_many = f", {self.too_many_topics} with too many topic entities" if self.too_many_topics else ""
        counts = (f"; {self.counts} count answers ({self.count_only} of them numerals no entity is named)"
                  if self.counts else "")
        return (f"{self.kept} of {self.lines} questions kept; dropped {self.missing_topic} whose topic entity "
                f"is not in the KB{too_many} and {self.no_answer_in_kb} with no answer in the KB; "
                f"{self.missing_answers} answers not in the KB{counts}")


class UnknownEntity(KeyError):
    """A bracketed name that means no entity of the KB, or several: ``name`` as written and
    ``suggestions``, the nearest entity names (best first; possibly none). The message names both:
    ``topic entity 'X' is not in the KB; did you mean [Y], [Z]?``."""

    def __init__(self, name: str, suggestions: List[str] = ()):
        self.name, self.suggestions = name, list(suggestions)
        hint = f"; did you mean {', '.join(f'[{s}]' for s in self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"topic entity {name!r} is not in the KB{hint}")

    def __str__(self) -> str:  # KeyError's would quote the message
        return self.args[0]


@dataclass
class TopicMatch:
    """A bracketed mention and the entity it was read as (``resolve_topics``)."""

    name: str  # as written between the brackets
    entity: int
    how: str  # "exact", "normalised" or "fuzzy" (kgqa.aliases.NameMatch)
    similarity: float


def resolve_topics(text: str, kb: KnowledgeBase, forgiving: bool = True) -> List[TopicMatch]:
    """The entity of each bracketed mention of ``text``, in order. An exact name is looked up
    directly; with ``forgiving`` any other goes through the KB's alias index (built on first use:
    ``KnowledgeBase.aliases``) and may match normalised or fuzzily. UnknownEntity (a KeyError)
    for the first mention that matches nothing or several, with suggestions when ``forgiving``."""
    out = []
    for name in MENTION.findall(text):
        if name in kb.entity_ids:
            out.append(TopicMatch(name, kb.entity_ids[name], "exact", 1.0))
            continue
        if not forgiving:
            raise UnknownEntity(name)
        m: NameMatch = kb.aliases.resolve(name)
        if m.entity is None:
            raise UnknownEntity(name, [kb.entities[e] for e in m.suggestions])
        out.append(TopicMatch(name, m.entity, m.how, m.similarity))
    return out


def parse_question(text: str, kb: KnowledgeBase, forgiving: bool = True) -> List[int]:
    """Entity ids of the bracketed mentions of ``text`` (``resolve_topics``); UnknownEntity (a
    KeyError) naming a mention that means no entity of the KB, with the nearest names."""
    return [m.entity for m in resolve_topics(text, kb, forgiving)]


def _resolve_answers(names: List[str], kb: KnowledgeBase, report: ReadReport) -> List[int]:
    ids, i = [], 0
    while i < len(names):
        name = names[i]
        if name in kb.entity_ids:
            ids.append(kb.entity_ids[name])
            i += 1
            continue
        # MetaQA split a few titles containing ", " into two answers ("Paris", "Texas").
        if i + 1 < len(names) and f"{name}, {names[i + 1]}" in kb.entity_ids:
            ids.append(kb.entity_ids[f"{name}, {names[i + 1]}"])
            report.joined_answers += 1
            i += 2
            continue
        report.missing_answers += 1
        i += 1
    return sorted(set(ids))


def count_answer(names: List[str]) -> Optional[int]:
    """The answer as a count: the one answer of ``names`` when it is a whole number >= 0, else None."""
    if len(names) != 1:
        return None
    v = parse_number(names[0])
    return int(v) if v is not None and v >= 0 and v == int(v) else None


def read_questions(path, kb: KnowledgeBase, qtype_path=None, require_topics: bool = True,
                   max_topics: Optional[int] = None) -> tuple:
    """(questions, report). ``qtype_path``: a file with one question type a line, aligned with
    ``path`` (MetaQA's qa_*_qtype.txt). ``require_topics=False`` (learned entity resolution)
    keeps questions without [brackets], with no gold topic entities. ``max_topics``: questions
    with more topic entities are counted and left out (``kgqa.qa.max_topics`` of the model)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_questions(): no file {path}")
    qtypes = None
    if qtype_path is not None:
        if not Path(qtype_path).is_file():
            raise FileNotFoundError(f"read_questions(): no question-type file {qtype_path}")
        qtypes = [line for _, line in text_lines(qtype_path, QuestionFormatError)]
    report = ReadReport()
    questions: List[Question] = []
    for lineno, line in text_lines(path, QuestionFormatError):
        if not line.strip():
            continue
        report.lines += 1
        if "\t" not in line:
            raise QuestionFormatError(f"{path}:{lineno}: expected 'question<TAB>answer1|answer2', got {line[:200]!r}")
        text, answers = line.split("\t", 1)
        if require_topics and not MENTION.search(text):
            raise QuestionFormatError(f"{path}:{lineno}: no [bracketed] topic entity in {text[:200]!r}")
        try:
            topics = parse_question(text, kb, forgiving=False)  # exact names only: see the module's docstring
        except UnknownEntity:
            report.missing_topic += 1
            continue
        if max_topics is not None and len(topics) > max_topics:
            report.too_many_topics += 1
            continue
        names = [a.strip() for a in answers.split("|") if a.strip()]
        count = count_answer(names)
        if count is not None and names[0] not in kb.entity_ids:
            ids = []  # a count that names no entity: the count is its answer
            report.count_only += 1
        else:
            ids = _resolve_answers(names, kb, report)
            if not ids:
                report.no_answer_in_kb += 1
                continue
        report.counts += count is not None
        qtype = None
        if qtypes is not None:
            if lineno > len(qtypes):
                raise QuestionFormatError(f"{qtype_path}: has {len(qtypes)} lines, {path} has more questions")
            qtype = qtypes[lineno - 1].strip()
        questions.append(Question(text, topics, ids, qtype, count))
    report.kept = len(questions)
    return questions, report


def writable_name(name: str) -> bool:
    """Whether an entity name can be a topic or an answer in a question file: no brackets (they
    mark topics), no "|" (it separates answers), no tab or line break."""
    return not any(c in name for c in "[]|\t\n\r")


def write_questions(path, questions: List[Question], kb: KnowledgeBase) -> None:
    """MetaQA format (a count with no entity answer as its numeral)."""
    with open(path, "w", encoding="utf-8") as f:
        for q in questions:
            answers = "|".join(kb.entities[a] for a in q.answers) if q.answers or q.count is None else str(q.count)
            f.write(q.text + "\t" + answers + "\n")
