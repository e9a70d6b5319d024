"""The hand-made features the entity resolver scores besides the encodings: per candidate span
(how long, how it matched, how ambiguous, where) and per candidate entity of a span (how it matched,
how well, how many facts it has).

Every feature is scaled to about [0, 1], the range of the one-hot ones, so none outweighs the
others in the scorers' first layer at initialisation; each scale is named below with its reason.
The values (and so a trained model's weights) depend on these constants: changing one changes what
a checkpoint's resolver reads.
"""
from __future__ import annotations

import math
from typing import List

import torch

from .mentions import CANDIDATES_PER_SPAN, MAX_SPAN_WORDS, Mention

MATCH_KINDS = ("exact", "normalised", "fuzzy")  # how a span's text matched a name (kgqa.aliases)

# A span's length in words over the longest span looked up (find_mentions' default max_words):
# in (0, 1].
SPAN_WORDS_SCALE = MAX_SPAN_WORDS
# A span's candidate count n enters as log(1 + n) in base 10, the cap on candidates per span
# (find_mentions' default per_span): 0 for none, about 1 (log10 11 = 1.04) at the cap. The log:
# the difference between 1 and 2 candidates matters more than between 9 and 10.
CANDIDATES_LOG_BASE = CANDIDATES_PER_SPAN
# An entity's log(1 + degree) over 10: 1 at e^10 - 1 ~ 22,000 facts, so the feature stays near
# the others' [0, 1] for all but the largest hubs; the log keeps a hub's thousands of facts from
# dwarfing an entity with a few.
DEGREE_LOG_SCALE = 10

SPAN_FEATURES = 6  # the length of span_features()
ENTITY_FEATURES = 5  # the length of a row of match_features() (4) and the degree feature (1)
DEGREE_FEATURE = 4  # where the degree feature sits in an entity's features


def span_features(m: Mention, plain: str) -> List[float]:
    """[length, any exact match, only normalised matches, only fuzzy matches, candidates, start]."""
    kinds = set(m.how)
    return [len(m.text.split()) / SPAN_WORDS_SCALE, float("exact" in kinds), float(kinds == {"normalised"}),
            float(kinds == {"fuzzy"}), math.log1p(len(m.entities)) / math.log(CANDIDATES_LOG_BASE),
            m.start / max(1, len(plain))]  # where the span starts, as a fraction of the question


def match_features(m: Mention) -> List[List[float]]:
    """Per candidate entity of the mention: its match kind one-hot (MATCH_KINDS) and its similarity
    (1.0 exact, 0.99 normalised, else the trigram Jaccard similarity: already in [0, 1])."""
    return [[float(h == k) for k in MATCH_KINDS] + [s] for h, s in zip(m.how, m.similarity)]


def degree_feature(log_degree: torch.Tensor) -> torch.Tensor:
    """The degree feature from log(1 + degree) (``EntityFacts.log_degree``), on its device."""
    return log_degree / DEGREE_LOG_SCALE
