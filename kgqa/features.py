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
# Two kinds of fuzzy match that ``--retrieval policy`` names (kgqa.retrieval_policy): the span is the
# name's initials ("lotr"), or every word of the span is a word of a longer name ("hanks"). Each is
# a fuzzy match in MATCH_KINDS' one-hot, and has a feature of its own after the degree: their
# character similarity alone (0.32 for "lotr" against "the lord of the rings") told the ranker
# nothing, and it linked 17.6% of initials right (docs/results.md "Training on noisy copies").
NAME_KINDS = ("initials", "words")

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
ENTITY_FEATURES = 7  # the length of a row of match_features(): kinds (3), similarity, degree, NAME_KINDS (2)
DEGREE_FEATURE = 4  # where the degree feature sits in an entity's features
# A resolver trained before NAME_KINDS reads the first 5 (its checkpoint's model config has no
# "entity_features"): what it was trained on, in the same places.
ENTITY_FEATURES_BEFORE_NAME_KINDS = 5


def match_kind(how: str) -> str:
    """The MATCH_KINDS kind of a candidate's ``how``: a NAME_KINDS match is a fuzzy one."""
    return "fuzzy" if how in NAME_KINDS else how


def span_features(m: Mention, plain: str) -> List[float]:
    """[length, any exact match, only normalised matches, only fuzzy matches, candidates, start]."""
    kinds = set(map(match_kind, m.how))
    return [len(m.text.split()) / SPAN_WORDS_SCALE, float("exact" in kinds), float(kinds == {"normalised"}),
            float(kinds == {"fuzzy"}), math.log1p(len(m.entities)) / math.log(CANDIDATES_LOG_BASE),
            m.start / max(1, len(plain))]  # where the span starts, as a fraction of the question


def match_features(m: Mention) -> List[List[float]]:
    """Per candidate entity of the mention, ENTITY_FEATURES values: its match kind one-hot
    (MATCH_KINDS), its similarity (1.0 exact, 0.99 normalised, else a similarity of the names:
    already in [0, 1]), 0 where the degree goes (``collate`` fills it in on the device), and
    whether it is each of NAME_KINDS."""
    return [[float(match_kind(h) == k) for k in MATCH_KINDS] + [s, 0.0] + [float(h == k) for k in NAME_KINDS]
            for h, s in zip(m.how, m.similarity)]


def degree_feature(log_degree: torch.Tensor) -> torch.Tensor:
    """The degree feature from log(1 + degree) (``EntityFacts.log_degree``), on its device."""
    return log_degree / DEGREE_LOG_SCALE
