"""The context the candidate-allocation bandit (``kgqa.bandit``) sees for a span: what the span looks
like, and what a cheap first probe of each generator (its PROBE_K best hits) found for it.

Every feature is in about [0, 1], as the resolver's are (``kgqa.features``), so that the ridge
regressions' shared prior (``bandit.RIDGE``) treats them alike. The generators' own scores are
not comparable across generators (``kgqa.retrieval.Hit``), so besides a squashed raw score each
generator's hits are also described by how similar their names are to the span
(``aliases.similarity`` of the normalised texts): the same measure for every generator.

Changing a feature changes what a trained policy reads: ``CONTEXT_VERSION`` is stored with the
policy (``kgqa.retrieval_policy``), which refuses a policy of another version."""
from __future__ import annotations

import math
from typing import Dict, List, Sequence

import numpy as np

from .aliases import normalise, similarity
from .mentions import MAX_SPAN_WORDS

CONTEXT_VERSION = 1
PROBE_K = 3  # hits per generator in the first probe: the top one, and whether runners-up are as close
SPAN_CHARS_SCALE = 40  # a span's length in characters over this, capped at 1 (MetaQA's names: median 13)
SPAN_FEATURES = ("bias", "words", "chars", "lower", "capitalised", "digits", "punctuation",
                 "exact", "normalised")
PER_GENERATOR = ("found", "score", "similarity", "second")


def context_dim(generators: Sequence[str]) -> int:
    """The width of ``context_features``' vector for these generators."""
    return len(SPAN_FEATURES) + len(PER_GENERATOR) * len(generators)


def _squash(score: float) -> float:
    """A generator's raw score (any sign, any scale: BM25's are unbounded) into (-1, 1)."""
    return score / (1.0 + abs(score)) if math.isfinite(score) else 0.0


def context_features(mention: str, probe: Dict[str, list], names: Sequence[str],
                     generators: Sequence[str]) -> np.ndarray:
    """The context vector of ``mention`` (a span's text as written) given ``probe`` (generator ->
    its best hits for the mention, best first: ``Retrieval.search`` with PROBE_K each) over the
    entity ``names``, for the ``generators`` in this order (one without hits in ``probe``: zeros).

    Span: [1 (the regression's intercept), words / MAX_SPAN_WORDS, characters / SPAN_CHARS_SCALE
    (both capped at 1), all lower case, the fraction of words capitalised, any digit, any
    character neither letter, digit nor space, exact name matches and normalised ones, each as
    log10(1 + count) capped at 1]. Per generator: [any hit, its best hit's squashed raw score, the
    similarity of its best hit's name to the span, of its second's (0 without one)]."""
    if not isinstance(mention, str):
        raise ValueError(f"mention must be a string, got {type(mention).__name__}")
    words = mention.split()
    key = normalise(mention)
    exact = normalised = 0
    sims: Dict[str, List[float]] = {}
    for g, hits in probe.items():
        sims[g] = []
        for h in hits[:PROBE_K]:
            name = names[h.entity]
            exact += g == "alias" and name == mention
            normalised += g == "alias" and name != mention and normalise(name) == key
            sims[g].append(similarity(key, normalise(name)) if key else 0.0)
    out = [1.0, min(1.0, len(words) / MAX_SPAN_WORDS), min(1.0, len(mention) / SPAN_CHARS_SCALE),
           float(mention == mention.lower()),
           sum(w[:1].isupper() for w in words) / max(1, len(words)),
           float(any(c.isdigit() for c in mention)),
           float(any(not (c.isalnum() or c.isspace()) for c in mention)),
           min(1.0, math.log10(1 + exact)), min(1.0, math.log10(1 + normalised))]
    for g in generators:
        hits = probe.get(g) or []
        s = sims.get(g, [])
        out += [float(bool(hits)), _squash(hits[0].score) if hits else 0.0, s[0] if s else 0.0,
                s[1] if len(s) > 1 else 0.0]
    return np.asarray(out, dtype=np.float64)
