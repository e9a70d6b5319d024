"""Mentions: the candidate spans of a plain question (no [brackets]) that name an entity of the KB,
found through the alias index (``kgqa.linking``), with the entities each span matches and how."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

from .aliases import AliasIndex
from .linking import candidate_spans
from .questions import MENTION_TOKEN

MAX_SPAN_WORDS = 8  # the longest span looked up, in words (MetaQA's longest names fit)
MAX_FUZZY_WORDS = 4  # the longest span looked up by fuzzy (trigram) match, which costs a lookup per n-gram
CANDIDATES_PER_SPAN = 10  # entities kept per span, best match first
MAX_SPANS = 16  # spans kept per question, the longest first


@dataclass
class Mention:
    """A candidate span of a plain question and the entities its text matches."""

    start: int
    end: int
    text: str
    entities: List[int]
    how: List[str]
    similarity: List[float]


def find_mentions(plain: str, index: AliasIndex, max_words: int = MAX_SPAN_WORDS, per_span: int = CANDIDATES_PER_SPAN,
                  max_spans: int = MAX_SPANS) -> List[Mention]:
    """Spans with an exact or normalised match; only when there is none, fuzzy (trigram) matches
    of spans up to 4 words, which keeps a typo answerable without a fuzzy lookup per n-gram of
    every question. At most ``max_spans``, the longest first."""
    spans = candidate_spans(plain, index, max_words, per_span)
    if not spans:
        spans = candidate_spans(plain, index, min(MAX_FUZZY_WORDS, max_words), per_span, fuzzy=True)
    spans.sort(key=lambda s: (-(s.end - s.start), s.start))
    return [Mention(s.start, s.end, s.text, [c.entity for c in s.candidates], [c.how for c in s.candidates],
                    [c.score for c in s.candidates]) for s in spans[:max_spans]]


def mask_span(plain: str, m: Mention, token: str = MENTION_TOKEN) -> str:
    """The question with the mention's span replaced by ``token`` (NE, as gold mode masks a
    [bracketed] mention)."""
    return plain[: m.start] + token + plain[m.end :]


def overlaps(a: Mention, b: Mention) -> bool:
    """Whether two mentions share a character (a mention overlaps itself)."""
    return a.start < b.end and b.start < a.end
