"""Mentions: the candidate spans of a plain question (no [brackets]) that name an entity of the KB,
found through the alias index (``kgqa.linking``), with the entities each span matches and how."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

from .aliases import SUGGESTIONS, AliasIndex, normalise, similarity
from .linking import candidate_spans, word_spans
from .questions import MENTION_TOKEN

MAX_SPAN_WORDS = 8  # the longest span looked up, in words (MetaQA's longest names fit)
MAX_FUZZY_WORDS = 4  # the longest span looked up by fuzzy (trigram) match, which costs a lookup per n-gram
CANDIDATES_PER_SPAN = 10  # entities kept per span, best match first
MAX_SPANS = 16  # spans kept per question, the longest first
# nearest_names: trigram similarity a name needs to be looked at, below find_mentions' 0.3 (the
# lookup default), which found nothing where it is called.
NEAREST_MIN_TRIGRAMS = 0.2


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


def nearest_names(plain: str, index: AliasIndex, limit: int = SUGGESTIONS,
                  max_words: int = MAX_FUZZY_WORDS) -> List[int]:
    """For a question where ``find_mentions`` found no span: the entities whose names are nearest
    one of its spans (up to ``max_words`` words), best first, at most ``limit``, to suggest ("did
    you mean"). One trigram lookup per span, as find_mentions' fuzzy pass: cheap beside encoding."""
    best = {}
    for start, end in word_spans(plain, max_words):
        piece = normalise(plain[start:end])
        for c in index.lookup(piece, limit=limit, min_score=NEAREST_MIN_TRIGRAMS):
            score = similarity(piece, normalise(index.names[c.entity]))
            best[c.entity] = max(best.get(c.entity, 0.0), score)
    return sorted(best, key=lambda e: -best[e])[:limit]


def mask_span(plain: str, m: Mention, token: str = MENTION_TOKEN) -> str:
    """The question with the mention's span replaced by ``token`` (NE, as gold mode masks a
    [bracketed] mention)."""
    return plain[: m.start] + token + plain[m.end :]


def overlaps(a: Mention, b: Mention) -> bool:
    """Whether two mentions share a character (a mention overlaps itself)."""
    return a.start < b.end and b.start < a.end
