"""The alias generator: entities whose name is the mention exactly, then those whose normalised name
is the mention's (``kgqa.aliases``: case, punctuation, accents, spacing), then, for a mention of
one short word, those whose name abbreviates to it ("LOTR", "lotr" or "L.O.T.R." for "The Lord of
the Rings"): no other generator finds an abbreviation, which shares no word and few characters with
the name (docs/results.md, "Candidate generators": recall on abbreviations)."""
from __future__ import annotations

from typing import Dict, List, Sequence

from ..aliases import AliasIndex, normalise
from .base import Generator, Hit, best_unique, check_k, check_mentions

ARTICLES = ("the", "a", "an")  # a name abbreviates with and without its leading article
ABBREVIATED_SCORE = 0.5  # below an exact name (1.0) and a normalised one (0.99)
MAX_ABBREVIATION = 8  # the longest word read as an abbreviation, in characters


def abbreviations(key: str) -> List[str]:
    """What a normalised name abbreviates to: its words' first characters, and the same without a
    leading article; only those of 2 characters or more."""
    ws = key.split()
    out = ["".join(w[0] for w in ws)] if len(ws) >= 2 else []
    if len(ws) >= 3 and ws[0] in ARTICLES:
        out.append("".join(w[0] for w in ws[1:]))
    return out


def as_abbreviation(mention: str) -> str:
    """The mention as an abbreviation to look up ("" when it is not one): one word of 2 to
    MAX_ABBREVIATION characters, or single characters spaced out ("L.O.T.R." normalises to "l o t r")."""
    ws = normalise(mention).split()
    if len(ws) == 1 or (len(ws) > 1 and all(len(w) == 1 for w in ws)):
        word = "".join(ws)
        if 2 <= len(word) <= MAX_ABBREVIATION:
            return word
    return ""


class AliasGenerator(Generator):
    name = "alias"

    def __init__(self, index: AliasIndex):
        self.index = index
        self.abbreviated: Dict[str, List[int]] = {}
        for e, key in enumerate(index.keys):
            for a in abbreviations(key):
                ids = self.abbreviated.setdefault(a, [])
                if not ids or ids[-1] != e:  # a name with and without its article can abbreviate the same
                    ids.append(e)

    def search(self, mentions: Sequence[str], k: int) -> List[List[Hit]]:
        """Scores: 1.0 an exact name, 0.99 a normalised one (the alias index's), 0.5 an abbreviation;
        among equals, entity ids in order."""
        check_k(k)
        out = []
        for m in check_mentions(mentions):
            if not k:
                out.append([])
                continue
            scored = [(c.entity, c.score) for c in self.index.lookup(m, limit=k, fuzzy=False)]
            if len(scored) < k:
                scored += [(e, ABBREVIATED_SCORE) for e in self.abbreviated.get(as_abbreviation(m), [])[: 2 * k]]
            out.append(best_unique(scored, k))
        return out
