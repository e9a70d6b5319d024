"""An alias index over entity names, for entity resolution without [brackets]: exact
names, normalised names (case, punctuation, accents, spacing), and fuzzy matches by character
trigrams, with a cap on candidates per query.

The trigram index is a CSR inverted list in numpy: building it for MetaQA's 43k names takes well
under a second, and it stays practical at 1M names (measured: docs/results.md, `experiments/alias-index.sh`; `python -m kgqa.aliases KB
--synthetic 1000000`)."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalise(name: str) -> str:
    """Lower case, accents removed, punctuation and runs of spaces turned into single spaces."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NON_WORD.sub(" ", ascii_only).strip()


def trigrams(text: str) -> List[str]:
    padded = f"  {text} "
    return sorted({padded[i : i + 3] for i in range(len(padded) - 2)})


@dataclass
class Candidate:
    entity: int
    score: float  # 1.0 exact, 0.99 normalised, else the trigram Jaccard similarity
    how: str  # "exact" | "normalised" | "fuzzy"


class AliasIndex:
    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self.exact: Dict[str, List[int]] = {}
        self.normalised: Dict[str, List[int]] = {}
        for i, n in enumerate(self.names):
            self.exact.setdefault(n, []).append(i)
            self.normalised.setdefault(normalise(n), []).append(i)
        # Trigram ids by first appearance; postings as one CSR array sorted by trigram.
        gram_ids: Dict[str, int] = {}
        rows, cols = [], []
        self.gram_counts = np.zeros(len(self.names), dtype=np.int32)
        for i, n in enumerate(self.names):
            grams = trigrams(normalise(n))
            self.gram_counts[i] = len(grams)
            for g in grams:
                rows.append(gram_ids.setdefault(g, len(gram_ids)))
                cols.append(i)
        rows_a = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows_a, kind="stable")
        self.postings = np.asarray(cols, dtype=np.int32)[order]
        self.ptr = np.zeros(len(gram_ids) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows_a, minlength=len(gram_ids)), out=self.ptr[1:])
        self.gram_ids = gram_ids

    def lookup(self, text: str, limit: int = 10, min_score: float = 0.3, max_postings: int = 200_000,
               fuzzy: bool = True) -> List[Candidate]:
        """At most ``limit`` candidates, best first: exact names, then normalised, then (with
        ``fuzzy``) those whose trigram Jaccard similarity is at least ``min_score``. Trigrams listed for more than
        ``max_postings`` names (e.g. "the") are skipped, keeping a query fast at 1M names."""
        out: List[Candidate] = []
        seen = set()
        for e in self.exact.get(text, []):
            out.append(Candidate(e, 1.0, "exact"))
            seen.add(e)
        key = normalise(text)
        for e in self.normalised.get(key, []):
            if e not in seen:
                out.append(Candidate(e, 0.99, "normalised"))
                seen.add(e)
        if len(out) >= limit or not key or not fuzzy:
            return out[:limit]
        grams = [self.gram_ids[g] for g in trigrams(key) if g in self.gram_ids]
        lists = [self.postings[self.ptr[g] : self.ptr[g + 1]] for g in grams if self.ptr[g + 1] - self.ptr[g] <= max_postings]
        if not lists:
            return out[:limit]
        ents, shared = np.unique(np.concatenate(lists), return_counts=True)
        jaccard = shared / (len(trigrams(key)) + self.gram_counts[ents] - shared)
        best = np.argsort(-jaccard, kind="stable")[: limit + len(seen)]
        for j in best:
            e = int(ents[j])
            if jaccard[j] < min_score or len(out) >= limit:
                break
            if e not in seen:
                out.append(Candidate(e, float(jaccard[j]), "fuzzy"))
                seen.add(e)
        return out


def _main(argv=None) -> int:
    """python -m kgqa.aliases KB [--synthetic N]: build and query times of the index."""
    import argparse
    import random
    import time

    from .kb import KnowledgeBase

    ap = argparse.ArgumentParser(description=_main.__doc__)
    ap.add_argument("kb")
    ap.add_argument("--synthetic", type=int, default=0, help="also N names made of the KB's words")
    args = ap.parse_args(argv)
    kb = KnowledgeBase.load(args.kb)
    rng = random.Random(0)
    sets = [("KB", kb.entities)]
    if args.synthetic:
        words = [w for n in kb.entities for w in n.split()]
        sets.append((f"{args.synthetic} synthetic", [" ".join(rng.choice(words) for _ in range(rng.randint(1, 4)))
                                                     for _ in range(args.synthetic)]))
    for label, names in sets:
        t0 = time.perf_counter()
        index = AliasIndex(names)
        built = time.perf_counter() - t0
        queries = [q[:-1] for q in rng.sample(names, min(200, len(names)))]  # a typo: the last letter dropped
        t0 = time.perf_counter()
        for q in queries:
            index.lookup(q)
        per = (time.perf_counter() - t0) / len(queries)
        print(f"{label}: {len(names)} names, built in {built:.2f} s, {1000 * per:.2f} ms per fuzzy lookup")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
