"""KnowledgeBase: entity and relation vocabularies with names over a kgqa_kernels.SparseKB, loaded
from MetaQA's kb.txt (``subject|relation|object``) or tab-separated triples, with inverse relations
added, and cached in a binary file (safetensors: no pickle) for fast reloads. The file itself is
read by ``kgqa_kernels.kb_file`` (the package's one KB file reader, which the benchmarks use too)."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch
from safetensors.torch import load_file, save_file

import kgqa_kernels as kk
from kgqa_kernels.kb_file import KBFormatError, read_triples

__all__ = ["KnowledgeBase", "KBFormatError", "LoadReport", "INVERSE_SUFFIX"]

INVERSE_SUFFIX = "~inv"  # relation "r~inv" follows r from object to subject
# 2: files are read by kgqa_kernels.kb_file, which takes each line's separator from the line
# (before, the first line's decided for the file): a cache of the older reader is not reused.
CACHE_VERSION = "2"


@dataclass
class LoadReport:
    lines: int = 0
    facts: int = 0
    skipped: List[str] = field(default_factory=list)  # "file:line: why", when on_error="skip"


class KnowledgeBase:
    """Facts over named entities and relations. Relation ids [0, R) are the file's relations and
    [R, 2R) their inverses (``name~inv``), so one relation distribution covers both directions."""

    def __init__(self, entities: List[str], relations: List[str], triples: torch.Tensor):
        if triples.dim() != 2 or triples.shape[1] != 3:
            raise ValueError(f"KnowledgeBase: triples must be [T, 3] (subject, relation, object), got {tuple(triples.shape)}")
        self.entities = list(entities)
        self.base_relations = list(relations)
        self.relations = self.base_relations + [r + INVERSE_SUFFIX for r in self.base_relations]
        self.triples = triples.to(torch.int64)
        self.entity_ids: Dict[str, int] = {name: i for i, name in enumerate(self.entities)}
        self.relation_ids: Dict[str, int] = {name: i for i, name in enumerate(self.relations)}
        s, p, o = self.triples.unbind(1)
        nrel = len(self.base_relations)
        self.sparse = kk.SparseKB(torch.cat([s, o]), torch.cat([p, p + nrel]), torch.cat([o, s]),
                                  len(self.entities), 2 * nrel)
        self.report = LoadReport(facts=len(self.triples))

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        """Including the inverses."""
        return len(self.relations)

    def to(self, device) -> "KnowledgeBase":
        self.sparse = self.sparse.to(device)
        return self

    # ---- loading ------------------------------------------------------------------------------

    @classmethod
    def load(cls, path, *, on_error: str = "raise", cache_dir: Optional[str] = None, use_cache: bool = True) -> "KnowledgeBase":
        """Reads ``path``: one fact a line, ``subject|relation|object`` (MetaQA) or tab-separated.
        Blank lines are ignored. A malformed line raises KBFormatError naming file and line, or with
        ``on_error="skip"`` is skipped and listed in ``kb.report.skipped``. The parsed KB is cached
        under ``cache_dir`` (default $KGQA_CACHE or ~/.cache/kgqa), keyed by the file's path, size
        and modification time."""
        if on_error not in ("raise", "skip"):
            raise ValueError(f"KnowledgeBase.load(): on_error must be 'raise' or 'skip', got {on_error!r}")
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"KnowledgeBase.load(): no file {path}")
        cache = _cache_path(path, on_error, cache_dir) if use_cache else None
        if cache is not None and cache.is_file():
            try:
                return cls._from_cache(cache)
            except Exception:  # a stale or truncated cache is rebuilt, never trusted
                pass
        kb = cls._parse(path, on_error)
        if cache is not None:
            kb._save_cache(cache)
        return kb

    @classmethod
    def _parse(cls, path: Path, on_error: str) -> "KnowledgeBase":
        f = read_triples(path, on_error)
        kb = cls(f.entities, f.relations, f.triples)
        kb.report = LoadReport(lines=f.lines, facts=f.num_facts, skipped=f.skipped)
        return kb

    def _save_cache(self, cache: Path) -> None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        meta = {"version": CACHE_VERSION, "entities": json.dumps(self.entities), "relations": json.dumps(self.base_relations),
                "report": json.dumps(self.report.__dict__)}
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")  # per process: torchrun's ranks may write it at once
        save_file({"triples": self.triples.contiguous()}, str(tmp), metadata=meta)
        os.replace(tmp, cache)

    @classmethod
    def _from_cache(cls, cache: Path) -> "KnowledgeBase":
        from safetensors import safe_open

        with safe_open(str(cache), framework="pt") as f:
            meta = f.metadata()
        if meta.get("version") != CACHE_VERSION:
            raise ValueError("cache version")
        kb = cls(json.loads(meta["entities"]), json.loads(meta["relations"]), load_file(str(cache))["triples"])
        kb.report = LoadReport(**json.loads(meta["report"]))
        return kb


def _cache_path(path: Path, on_error: str, cache_dir: Optional[str]) -> Path:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{on_error}|{CACHE_VERSION}"
    root = Path(cache_dir or os.environ.get("KGQA_CACHE") or Path.home() / ".cache" / "kgqa")
    return root / f"kb-{hashlib.sha1(key.encode()).hexdigest()[:16]}.safetensors"
