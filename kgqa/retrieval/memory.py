"""The memory generator: (mention, entity) pairs that led to correct answers in training, looked up
by the mention normalised (``kgqa.aliases.normalise``) and, failing an exact key, by the nearest
remembered mentions (rapidfuzz's ratio of the normalised strings), so that "tom hanx" finds what
"Tom Hanks" taught it. Its state is plain JSON-able data: a checkpoint stores it, and loading it
runs no code."""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

from rapidfuzz import fuzz, process

from ..aliases import AliasIndex, normalise
from .base import Generator, Hit, best_unique, check_k, check_mentions
from .fuzzy import shortlist

STATE_VERSION = 1
# A remembered mention is looked at when its similarity to the mention (rapidfuzz's ratio: 2 *
# matching characters / both lengths, on the normalised strings) is at least this: one typo in a
# 9-letter name scores about 0.82-0.94.
MIN_SIMILARITY = 0.8
NEAREST_KEYS = 10  # remembered mentions looked at per mention, the most similar first
# Up to this many remembered mentions, a lookup scores them all with rapidfuzz (about 0.4 s a lookup
# at 1M, docs/results.md "Candidate generators"); above, only a trigram shortlist of them (the fuzzy
# generator's), kept in an alias index over the mentions, rebuilt when the mentions added since its
# build outnumber REBUILD_FRACTION of it (those are scored in full meanwhile).
SCAN_ALL_UP_TO = 20_000
REBUILD_FRACTION = 0.1


class MemoryIndex(Generator):
    name = "memory"

    def __init__(self, min_similarity: float = MIN_SIMILARITY):
        if not 0.0 < min_similarity <= 1.0:
            raise ValueError(f"min_similarity must be in (0, 1], got {min_similarity!r}")
        self.min_similarity = float(min_similarity)
        self.rewards: Dict[str, Dict[int, float]] = {}  # normalised mention -> entity -> reward summed
        # The keys that ever had an entity of positive reward, in the order they first did (append
        # only: a key whose rewards fall to zero stays, and finds no entity), for the fuzzy lookup.
        self._keys: List[str] = []
        self._listed = set()
        self._indexed: Optional[AliasIndex] = None  # over many keys: a trigram index of _keys[:its size]

    def __len__(self) -> int:
        """The number of (mention, entity) pairs remembered."""
        return sum(len(v) for v in self.rewards.values())

    def add(self, mention: str, entity: int, reward: float = 1.0) -> None:
        """Remembers that ``entity`` for ``mention`` led to a correct answer; rewards add up (a
        negative one takes back). ValueError for a mention with no letter or digit, an entity that
        is not a non-negative int, a reward that is not a finite number."""
        if not isinstance(mention, str):
            raise ValueError(f"mention must be a string, got {type(mention).__name__}")
        key = normalise(mention)
        if not key:
            raise ValueError(f"mention {mention!r} has no letter or digit to remember it by")
        if isinstance(entity, bool) or not isinstance(entity, int) or entity < 0:
            raise ValueError(f"entity must be a non-negative int (an entity id), got {entity!r}")
        if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward):
            raise ValueError(f"reward must be a finite number, got {reward!r}")
        per = self.rewards.setdefault(key, {})
        per[entity] = per.get(entity, 0.0) + float(reward)
        if per[entity] > 0 and key not in self._listed:
            self._listed.add(key)
            self._keys.append(key)

    def _choices(self, key: str) -> List[str]:
        """The remembered mentions to score against ``key``: all of them, or, past SCAN_ALL_UP_TO,
        the trigram shortlist of the indexed ones and all added since the index was built."""
        keys = self._keys
        if len(keys) <= SCAN_ALL_UP_TO:
            return keys
        ix = self._indexed
        if ix is None or len(keys) - len(ix.names) > REBUILD_FRACTION * len(ix.names):
            ix = self._indexed = AliasIndex(keys)
        return [ix.names[e] for e in shortlist(ix, key)] + keys[len(ix.names) :]

    def search(self, mentions: Sequence[str], k: int) -> List[List[Hit]]:
        """Scores: the similarity of the remembered mention (1.0 the same once normalised) times the
        entity's summed reward; entities whose reward sums to zero or less are left out."""
        check_k(k)
        out = []
        for m in check_mentions(mentions):
            key = normalise(m)
            if not k or not key or not self.rewards:
                out.append([])
                continue
            if key in self.rewards:
                near = [(key, 1.0)]
            else:
                near = [(c, s / 100) for c, s, _ in process.extract(
                    key, self._choices(key), scorer=fuzz.ratio, score_cutoff=100 * self.min_similarity,
                    limit=NEAREST_KEYS)]
            best: Dict[int, float] = {}
            for c, sim in near:
                for e, r in self.rewards[c].items():
                    if r > 0:
                        best[e] = max(best.get(e, 0.0), sim * r)
            out.append(best_unique(sorted(best.items(), key=lambda t: (-t[1], t[0])), k))
        return out

    def state_dict(self) -> dict:
        """Plain data: {"version", "min_similarity", "entries": [[mention, entity, reward], ...]},
        sorted, so that the same memory gives the same JSON."""
        entries = [[key, e, r] for key in sorted(self.rewards) for e, r in sorted(self.rewards[key].items())]
        return {"version": STATE_VERSION, "min_similarity": self.min_similarity, "entries": entries}

    @classmethod
    def from_state_dict(cls, d: dict) -> "MemoryIndex":
        """The memory ``state_dict`` gave; ValueError naming what is wrong in a malformed one."""
        if not isinstance(d, dict) or d.get("version") != STATE_VERSION:
            raise ValueError(f"memory state: expected a dict with version {STATE_VERSION}, got "
                             f"{d.get('version') if isinstance(d, dict) else type(d).__name__!r}")
        entries = d.get("entries")
        if not isinstance(entries, list):
            raise ValueError("memory state: 'entries' must be a list of [mention, entity, reward]")
        mem = cls(d.get("min_similarity", MIN_SIMILARITY))
        for i, row in enumerate(entries):
            if not (isinstance(row, (list, tuple)) and len(row) == 3 and isinstance(row[0], str)):
                raise ValueError(f"memory state: entries[{i}] is not [mention, entity, reward]: {row!r:.80}")
            try:
                mem.add(*row)
            except ValueError as e:
                raise ValueError(f"memory state: entries[{i}]: {e}") from None
        return mem
