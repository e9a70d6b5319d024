"""The lexical generator: BM25 over the words of the normalised names (bm25s), so that a mention
with words dropped, reordered or added ("hanks", "matrix the") finds the names that share its
rarer words."""
from __future__ import annotations

from typing import List, Sequence

import bm25s

from ..aliases import AliasIndex, normalise
from .base import Generator, Hit, best_unique, check_k, check_mentions


def words(key: str) -> List[str]:
    """A normalised name's tokens: its words (normalise leaves letters, digits and single spaces)."""
    return key.split()


class LexicalGenerator(Generator):
    name = "lexical"

    def __init__(self, index: AliasIndex):
        self.size = len(index.keys)
        self.bm25 = bm25s.BM25()
        if self.size:
            self.bm25.index([words(key) for key in index.keys], show_progress=False)

    def search(self, mentions: Sequence[str], k: int) -> List[List[Hit]]:
        """Scores: BM25 (bm25s' Lucene variant, k1 1.5, b 0.75); names sharing no word are left out."""
        check_k(k)
        mentions = check_mentions(mentions)
        queries = [words(normalise(m)) for m in mentions]
        todo = [i for i, q in enumerate(queries) if q]
        out: List[List[Hit]] = [[] for _ in mentions]
        if not k or not todo or not self.size:
            return out
        ids, scores = self.bm25.retrieve([queries[i] for i in todo], k=min(k, self.size), show_progress=False,
                                         n_threads=1)
        for i, row_ids, row_scores in zip(todo, ids, scores):
            out[i] = best_unique(((e, s) for e, s in zip(row_ids.tolist(), row_scores.tolist()) if s > 0), k)
        return out
