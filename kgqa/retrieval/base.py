"""What every candidate generator shares: the names of the generators, a scored hit, and the
interface (``Generator.search``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Sequence, Tuple

# The generators, in the order everything uses (Retrieval.search, the policy's arms, reports).
GENERATORS = ("alias", "fuzzy", "lexical", "dense", "memory")


@dataclass
class Hit:
    entity: int  # entity id
    score: float  # the generator's own score, higher is better (not comparable across generators)


class Generator:
    """A candidate generator: entities for a mention (a span's text as the user wrote it)."""

    name: str = ""

    def search(self, mentions: Sequence[str], k: int) -> List[List[Hit]]:
        """Per mention, at most ``k`` hits, best first, no entity twice. Batched: one call for all
        the mentions (dense encodes them in one encoder call)."""
        raise NotImplementedError


def check_k(k, what: str = "k") -> int:
    """``k`` as a count of hits: a non-negative int (a bool is not one), else ValueError."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"{what} must be a non-negative int, got {k!r}")
    return k


def check_mentions(mentions: Sequence[str]) -> Sequence[str]:
    """``mentions`` as a sequence of strings (a lone string is refused: it would be read as its
    characters), else ValueError."""
    if isinstance(mentions, str) or not all(isinstance(m, str) for m in mentions):
        raise ValueError(f"mentions must be a sequence of strings, got {mentions!r:.80}")
    return mentions


def best_unique(scored: Iterable[Tuple[int, float]], k: int) -> List[Hit]:
    """At most ``k`` hits from (entity, score) pairs given best first: each entity once, at its
    first (best) score."""
    out: List[Hit] = []
    seen = set()
    for e, s in scored:
        if len(out) >= k:
            break
        if e not in seen:
            seen.add(e)
            out.append(Hit(int(e), float(s)))
    return out


def names_list(names: Sequence[str]) -> List[str]:
    """``names`` as a list of strings, else ValueError naming the first that is not one."""
    if isinstance(names, str):
        raise ValueError("names must be a sequence of entity names, not one string")
    out = list(names)
    for i, n in enumerate(out):
        if not isinstance(n, str):
            raise ValueError(f"names[{i}] is {type(n).__name__}, not a string")
    return out


Batch = Dict[str, List[Hit]]  # one mention's hits per generator
