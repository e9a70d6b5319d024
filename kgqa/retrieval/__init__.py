"""Candidate generators for entity resolution, behind one interface (``Generator.search``: per
mention, scored entities, best first), and ``Retrieval``, all of them over one KB's entity names:

- ``alias``: exact and normalised names (``kgqa.aliases``);
- ``fuzzy``: rapidfuzz over a character-trigram shortlist (typos, cut or reordered words);
- ``lexical``: BM25 over the names' words (bm25s);
- ``dense``: the question encoder's embeddings of the names, searched with faiss;
- ``memory``: mentions that led to correct answers in training, and their entities.

A policy (``kgqa.bandit``) chooses how many candidates to draw from each; docs/model-layer.md,
"Candidate generators", describes them and docs/results.md gives their recall and latency."""
from __future__ import annotations

import warnings
from typing import Dict, List, Optional, Sequence

from ..aliases import AliasIndex
from .alias import AliasGenerator
from .base import GENERATORS, Batch, Generator, Hit, check_k, check_mentions, names_list
from .fuzzy import FuzzyGenerator
from .lexical import LexicalGenerator
from .memory import MemoryIndex

__all__ = ["GENERATORS", "Hit", "Generator", "Retrieval", "MemoryIndex", "RetrievalWarning", "AliasGenerator",
           "FuzzyGenerator", "LexicalGenerator"]


class RetrievalWarning(UserWarning):
    """A generator asked for could not be built (the dense one without an encoder)."""


class Retrieval:
    """The generators over one KB's entity names (entity i is names[i])."""

    def __init__(self, generators: Dict[str, Generator], missing: Optional[Dict[str, str]] = None):
        for name, g in generators.items():
            if name not in GENERATORS or g.name != name:
                raise ValueError(f"generators: {name!r} -> {type(g).__name__} (named {g.name!r}); "
                                 f"expected one of {GENERATORS} under its own name")
        self.generators: Dict[str, Generator] = {n: generators[n] for n in GENERATORS if n in generators}
        self.missing: Dict[str, str] = dict(missing or {})  # generator -> why it was not built

    @classmethod
    def build(cls, names: Sequence[str], *, encoder=None, memory: Optional[MemoryIndex] = None,
              generators: Sequence[str] = GENERATORS, aliases: Optional[AliasIndex] = None,
              cache_dir: Optional[str] = None) -> "Retrieval":
        """The ``generators`` named, over ``names``. ``encoder``: a kgqa.encoder question encoder,
        for "dense" (the names' vectors are cached beside the KB cache: ``cache_dir``, else
        $KGQA_CACHE, else ~/.cache/kgqa); without one, "dense" is left out, with a RetrievalWarning
        and the reason in ``missing``. ``memory``: the memory to search (default: an empty one).
        ``aliases``: the names' alias index when there is one already (``KnowledgeBase.aliases``)."""
        names = names_list(names)
        if isinstance(generators, str) or not set(generators) <= set(GENERATORS):
            raise ValueError(f"generators must name some of {GENERATORS}, got {generators!r}")
        if aliases is None and set(generators) & {"alias", "fuzzy", "lexical"}:
            aliases = AliasIndex(names)
        elif aliases is not None and aliases.names != names:
            raise ValueError("aliases: an alias index over other names than names")
        if memory is not None and not isinstance(memory, MemoryIndex):
            raise ValueError(f"memory must be a MemoryIndex, got {type(memory).__name__}")
        built: Dict[str, Generator] = {}
        missing: Dict[str, str] = {}
        for name in GENERATORS:
            if name not in generators:
                continue
            if name == "alias":
                built[name] = AliasGenerator(aliases)
            elif name == "fuzzy":
                built[name] = FuzzyGenerator(aliases)
            elif name == "lexical":
                built[name] = LexicalGenerator(aliases)
            elif name == "dense":
                if encoder is None:
                    missing[name] = "no encoder given"
                    warnings.warn("Retrieval.build: no encoder, so no dense generator", RetrievalWarning, stacklevel=2)
                    continue
                from .dense import DenseGenerator  # faiss and torch only when asked for

                built[name] = DenseGenerator.build(names, encoder, cache_dir)
            else:
                built[name] = memory if memory is not None else MemoryIndex()
        return cls(built, missing)

    @property
    def memory(self) -> Optional[MemoryIndex]:
        return self.generators.get("memory")

    def search(self, mentions: Sequence[str], k: Dict[str, int]) -> List[Batch]:
        """Per mention, per generator named in ``k``, at most k[name] hits (an empty list for 0).
        ValueError for a generator not in GENERATORS or not built (with the reason)."""
        mentions = check_mentions(mentions)
        if not isinstance(k, dict):
            raise ValueError(f"k must be a dict generator -> count, got {type(k).__name__}")
        for name, n in k.items():
            if name not in GENERATORS:
                raise ValueError(f"k: unknown generator {name!r}; expected some of {GENERATORS}")
            check_k(n, f"k[{name!r}]")
            if n and name not in self.generators:
                raise ValueError(f"k: generator {name!r} was not built ({self.missing.get(name, 'not asked for')})")
        out: List[Batch] = [{} for _ in mentions]
        for name in GENERATORS:
            if name not in k:
                continue
            hits = self.generators[name].search(mentions, k[name]) if k[name] else [[] for _ in mentions]
            for row, h in zip(out, hits):
                row[name] = h
        return out
