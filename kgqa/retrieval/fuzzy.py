"""The fuzzy generator: names within a few character edits of the mention, however its words are
cut or ordered. rapidfuzz's WRatio (the best of plain, partial and token-sorted Indel similarity
of the normalised strings) ranks a shortlist of names, and the shortlist comes from the alias
index's character trigrams: the names sharing the most of the mention's rarest trigrams. Scoring
all names instead costs a full scan per mention, too slow at 1M names (docs/results.md,
"Candidate generators")."""
from __future__ import annotations

from typing import List, Sequence

import numpy as np
from rapidfuzz import fuzz, process

from ..aliases import AliasIndex, normalise, trigrams
from .base import Generator, Hit, best_unique, check_k, check_mentions

# Names rescored by rapidfuzz per mention: the trigram shortlist's length.
SHORTLIST = 256
# Trigram postings read per mention, the rarest trigrams first: a trigram common to 100k names
# ("the") says little and costs most. The rarest trigram is always read.
POSTINGS_BUDGET = 50_000


def shortlist(ix: AliasIndex, key: str, size: int = SHORTLIST, postings_budget: int = POSTINGS_BUDGET) -> np.ndarray:
    """Up to ``size`` ids of ``ix``'s names for a normalised mention ``key``: those sharing the most
    of its trigrams (Jaccard over the trigrams read), best first, reading the rarest trigrams' postings
    first, up to ``postings_budget`` of them (the rarest always)."""
    grams = trigrams(key)
    ids = np.array([ix.gram_ids[g] for g in grams if g in ix.gram_ids], dtype=np.int64)
    if not len(ids):
        return np.zeros(0, dtype=np.int64)
    sizes = ix.ptr[ids + 1] - ix.ptr[ids]
    order = np.argsort(sizes, kind="stable")
    read = max(1, int(np.searchsorted(np.cumsum(sizes[order]), postings_budget, side="right")))
    ids = ids[order[:read]]
    ents, shared = np.unique(np.concatenate([ix.postings[ix.ptr[g] : ix.ptr[g + 1]] for g in ids]), return_counts=True)
    jaccard = shared / (len(grams) + ix.gram_counts[ents] - shared)
    if len(ents) > size:
        keep = np.argpartition(-jaccard, size)[:size]
        ents, jaccard = ents[keep], jaccard[keep]
    return ents[np.argsort(-jaccard, kind="stable")]


class FuzzyGenerator(Generator):
    name = "fuzzy"

    def __init__(self, index: AliasIndex, shortlist: int = SHORTLIST, postings_budget: int = POSTINGS_BUDGET):
        self.index = index
        self.shortlist = shortlist
        self.postings_budget = postings_budget

    def candidates(self, key: str) -> np.ndarray:
        """The shortlist for a normalised mention (``shortlist``)."""
        return shortlist(self.index, key, self.shortlist, self.postings_budget)

    def search(self, mentions: Sequence[str], k: int) -> List[List[Hit]]:
        """Scores: WRatio / 100, in [0, 1]."""
        check_k(k)
        out = []
        for m in check_mentions(mentions):
            key = normalise(m)
            ents = self.candidates(key) if k and key else []
            if not len(ents):
                out.append([])
                continue
            keys = self.index.keys
            ranked = process.extract(key, [keys[e] for e in ents], scorer=fuzz.WRatio, limit=None)
            ranked.sort(key=lambda r: (-r[1], r[2]))  # ties: the shortlist's order
            out.append(best_unique(((ents[j], s / 100) for _, s, j in ranked), k))
        return out
