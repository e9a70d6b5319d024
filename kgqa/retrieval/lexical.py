"""The lexical generator: BM25 over the words of the normalised names, so that a mention with words
dropped, reordered or added ("hanks", "matrix the") finds the names that share its rarer words.

Its own inverted index (per word, the names that hold it and their BM25 weights, as CSR arrays)
rather than bm25s: bm25s scores every name for each query (a vector of N per query), 7-9 ms a
mention over MetaQA's 43k names and linear in N, where this touches only the postings of the
mention's words; the same scores (bm25s' default Lucene variant). docs/results.md, "Candidate
generators": both measured at 43k and 1M names (experiments/retrieval_latency.py)."""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from ..aliases import AliasIndex, normalise
from .base import Generator, Hit, best_unique, check_k, check_mentions

K1 = 1.5  # BM25's term-frequency saturation (bm25s' and Lucene's default)
B = 0.75  # BM25's length normalisation (the same)
# Postings read per mention, the rarest words first (the rarest always): a word in 100k of 1M names
# ("the") adds little to a score (a low idf) and cost up to 39 ms a mention at 1M names without
# this cap (docs/results.md, "Candidate generators"). MetaQA's commonest name word is in 4,820 names:
# the cap never binds there.
POSTINGS_BUDGET = 50_000


def words(key: str) -> List[str]:
    """A normalised name's tokens: its words (normalise leaves letters, digits and single spaces)."""
    return key.split()


class LexicalGenerator(Generator):
    name = "lexical"

    def __init__(self, index: AliasIndex, k1: float = K1, b: float = B, postings_budget: int = POSTINGS_BUDGET):
        self.postings_budget = postings_budget
        docs = [words(key) for key in index.keys]
        self.size = n = len(docs)
        self.vocab: Dict[str, int] = {}
        rows, cols, tfs = [], [], []
        for d, ws in enumerate(docs):
            counts: Dict[int, int] = {}
            for w in ws:
                t = self.vocab.setdefault(w, len(self.vocab))
                counts[t] = counts.get(t, 0) + 1
            rows.extend(counts)
            cols.extend([d] * len(counts))
            tfs.extend(counts.values())
        rows_a = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows_a, kind="stable")  # postings by word, names in id order within a word
        self.postings = np.asarray(cols, dtype=np.int32)[order]
        df = np.bincount(rows_a, minlength=len(self.vocab))
        self.ptr = np.zeros(len(self.vocab) + 1, dtype=np.int64)
        np.cumsum(df, out=self.ptr[1:])
        lengths = np.fromiter(map(len, docs), dtype=np.float64, count=n)
        avg = float(lengths.mean()) if n and lengths.mean() > 0 else 1.0
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5))  # Lucene's, never negative
        tf = np.asarray(tfs, dtype=np.float64)[order]
        norm = k1 * (1 - b + b * lengths[self.postings] / avg)
        # Without Lucene's constant factor (k1 + 1), as bm25s: the same ranking, the same scores as bm25s.
        self.weights = (idf[rows_a[order]] * tf / (tf + norm)).astype(np.float32)
        self._acc = np.zeros(n, dtype=np.float32)  # scores of one query, zeroed again after it

    def _one(self, query: List[str], k: int) -> List[Hit]:
        terms: Dict[int, int] = {}
        for w in query:
            if w in self.vocab:
                t = self.vocab[w]
                terms[t] = terms.get(t, 0) + 1  # a word said twice counts twice, as in bm25s
        if not terms:
            return []
        acc = self._acc
        touched = []
        read = 0
        for t in sorted(terms, key=lambda t: (self.ptr[t + 1] - self.ptr[t], t)):  # the rarest first
            c = terms[t]
            size = int(self.ptr[t + 1] - self.ptr[t])
            if touched and read + size > self.postings_budget:
                break
            read += size
            ids = self.postings[self.ptr[t] : self.ptr[t + 1]]
            acc[ids] += c * self.weights[self.ptr[t] : self.ptr[t + 1]]  # a name is once in a word's postings
            touched.append(ids)
        ids = np.unique(np.concatenate(touched)) if len(touched) > 1 else touched[0]
        scores = acc[ids]
        acc[ids] = 0.0
        if len(ids) > k:
            top = np.argpartition(-scores, k - 1)[:k]
            ids, scores = ids[top], scores[top]
        order = np.lexsort((ids, -scores))  # best first, ties by entity id
        return best_unique(zip(ids[order].tolist(), scores[order].tolist()), k)

    def search(self, mentions: Sequence[str], k: int) -> List[List[Hit]]:
        """Scores: BM25 (k1 1.5, b 0.75, Lucene's idf) over the words read (all but those past
        ``postings_budget``); names sharing no word are left out."""
        check_k(k)
        return [self._one(words(normalise(m)), k) if k and self.size else [] for m in check_mentions(mentions)]
