"""The alias generator: entities whose name is the mention exactly, then those whose normalised name
is the mention's (``kgqa.aliases``: case, punctuation, accents, spacing)."""
from __future__ import annotations

from typing import List, Sequence

from ..aliases import AliasIndex
from .base import Generator, Hit, check_k, check_mentions


class AliasGenerator(Generator):
    name = "alias"

    def __init__(self, index: AliasIndex):
        self.index = index

    def search(self, mentions: Sequence[str], k: int) -> List[List[Hit]]:
        """Scores as the alias index gives them: 1.0 an exact name, 0.99 a normalised one."""
        check_k(k)
        return [[Hit(c.entity, c.score) for c in self.index.lookup(m, limit=k, fuzzy=False)] if k else []
                for m in check_mentions(mentions)]
