"""An alias index over entity names, for entity resolution without [brackets] and for forgiving
[bracketed] names: exact names, normalised names (case, punctuation, accents, spacing), and fuzzy
matches by character trigrams, with a cap on candidates per query. ``AliasIndex.resolve`` picks
the one entity a name means, when there is one, and the nearest names otherwise.

The trigram index is a CSR inverted list in numpy: building it for MetaQA's 43k names takes well
under a second, and it stays practical at 1M names (measured: docs/results.md, `experiments/alias-index.sh`; `python -m kgqa.aliases KB
--synthetic 1000000`)."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Dict, List, Optional, Sequence

import numpy as np

_NON_WORD = re.compile(r"[^0-9a-z]+")

# AliasIndex.resolve's fuzzy rule. A name that is neither a KB name nor one normalised is read as
# the KB name most similar to it (difflib's ratio of the two normalised names: 2 * matching
# characters / both lengths; one typo in a 20-letter name gives about 0.95) when that similarity
# is at least FUZZY_MIN and beats the runner-up's by at least FUZZY_MARGIN; otherwise it is refused
# with the nearest names. Chosen on typos of MetaQA's and the demo's names and on names missing
# from the KB (experiments/forgiving_names.py; docs/model-layer.md gives the rates).
FUZZY_MIN = 0.88
FUZZY_MARGIN = 0.05
FUZZY_CANDIDATES = 10  # trigram candidates rescored by similarity
SUGGESTIONS = 3  # nearest names offered when a name is refused


def normalise(name: str) -> str:
    """Lower case, accents removed, punctuation and runs of spaces turned into single spaces."""
    if name.isascii():  # most names: nothing to decompose, and casefold is lower
        return _NON_WORD.sub(" ", name.lower()).strip()
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


@dataclass
class NameMatch:
    """What ``AliasIndex.resolve`` made of a name: the entity it means (None when no name matches
    it unambiguously), how it matched, and otherwise the nearest names."""

    entity: Optional[int]
    how: str  # "exact" | "normalised" | "fuzzy", or "" when entity is None
    similarity: float  # 1.0 exact or normalised, else the similarity of the normalised names
    suggestions: List[int] = field(default_factory=list)  # when entity is None: the nearest, best first


def similarity(a: str, b: str) -> float:
    """The similarity of two normalised names in [0, 1] (difflib's ratio)."""
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


def similarity_any_order(a: str, b: str) -> float:
    """``similarity``, or that of the two names' words each sorted, whichever is higher: "hanks tom"
    is as like "tom hanks" as "tom hanks" is (difflib's ratio alone: 0.56)."""
    return max(similarity(a, b), similarity(" ".join(sorted(a.split())), " ".join(sorted(b.split()))))


class AliasIndex:
    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self.exact: Dict[str, List[int]] = {}
        self.normalised: Dict[str, List[int]] = {}
        keys = [normalise(n) for n in self.names]  # once each: the index's build is mostly this
        self.keys = keys  # each name normalised (kgqa.retrieval's fuzzy generator rescores them)
        for i, (n, key) in enumerate(zip(self.names, keys)):
            self.exact.setdefault(n, []).append(i)
            self.normalised.setdefault(key, []).append(i)
        # Trigram ids by first appearance; postings as one CSR array sorted by trigram. Flat
        # comprehensions rather than a loop of appends: this is most of the build.
        grams = [trigrams(key) for key in keys]
        self.gram_counts = np.fromiter(map(len, grams), dtype=np.int32, count=len(grams))
        gram_ids: Dict[str, int] = {}
        rows_a = np.fromiter((gram_ids.setdefault(g, len(gram_ids)) for gs in grams for g in gs), dtype=np.int64,
                             count=int(self.gram_counts.sum()))
        cols = np.repeat(np.arange(len(keys), dtype=np.int32), self.gram_counts)
        order = np.argsort(rows_a, kind="stable")
        self.postings = cols[order]
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

    def resolve(self, name: str, min_similarity: float = FUZZY_MIN, margin: float = FUZZY_MARGIN) -> NameMatch:
        """The entity ``name`` means: an exact name; else the one entity whose normalised name is
        ``name``'s; else the most similar name (``similarity`` of the normalised names, among the
        trigram candidates) when it scores at least ``min_similarity`` and beats the runner-up by
        ``margin``. Otherwise no entity, with up to SUGGESTIONS nearest names: several with the
        same normalised name (ambiguous), or the best fuzzy candidates."""
        exact = self.exact.get(name, [])
        if len(exact) == 1:
            return NameMatch(exact[0], "exact", 1.0)
        key = normalise(name)
        same = self.normalised.get(key, [])
        if len(same) == 1:
            return NameMatch(same[0], "normalised", 1.0)
        if same:  # e.g. "Heat" and "HEAT": the name does not say which
            return NameMatch(None, "", 0.0, same[:SUGGESTIONS])
        if not key:
            return NameMatch(None, "", 0.0)
        scored = sorted(((similarity(key, normalise(self.names[c.entity])), c.entity)
                         for c in self.lookup(name, limit=FUZZY_CANDIDATES)), key=lambda t: -t[0])  # stable
        if scored and scored[0][0] >= min_similarity and (len(scored) == 1 or scored[0][0] - scored[1][0] >= margin):
            return NameMatch(scored[0][1], "fuzzy", scored[0][0])
        return NameMatch(None, "", 0.0, [e for _, e in scored[:SUGGESTIONS]])


def synthetic_names(names: Sequence[str], n: int, rng) -> List[str]:
    """``n`` names of 1 to 4 words drawn (``rng``: a random.Random) from the words of ``names``: a
    KB of ``n`` names for timing lookups at sizes no real KB here has."""
    words = [w for name in names for w in name.split()]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 4))) for _ in range(n)]


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
        sets.append((f"{args.synthetic} synthetic", synthetic_names(kb.entities, args.synthetic, rng)))
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
