"""KnowledgeBase: entity and relation vocabularies with names over a kgqa_kernels.SparseKB, loaded
from MetaQA's kb.txt (``subject|relation|object``) or tab-separated triples, with inverse relations
added, and cached in a binary file (safetensors: no pickle) for fast reloads. The file itself is
read by ``kgqa_kernels.kb_file`` (the package's one KB file reader, which the benchmarks use too).

The cache is an optimisation only: where it cannot be read or written (no writable $KGQA_CACHE or
home folder) the KB is parsed each time, after one ``CacheWarning``."""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch
from safetensors.torch import load_file, save_file

import kgqa_kernels as kk
from kgqa_kernels.kb_file import KBFormatError, read_triples

from .aliases import AliasIndex

__all__ = ["KnowledgeBase", "KBFormatError", "LoadReport", "CacheWarning", "INVERSE_SUFFIX"]

INVERSE_SUFFIX = "~inv"  # relation "r~inv" follows r from object to subject
# 2: files are read by kgqa_kernels.kb_file, which takes each line's separator from the line
# (before, the first line's decided for the file): a cache of the older reader is not reused.
# 3: the reader drops byte-order marks and names lines that are not UTF-8; the key is the file's
# content hash.
CACHE_VERSION = "3"
HASH_BLOCK = 1 << 20  # bytes read at a time to hash a KB file
WRITE_BLOCK = 1 << 16  # facts turned into text at a time by KnowledgeBase.write


class CacheWarning(UserWarning):
    """The KB cache could not be read or written: the KB was parsed from its file instead."""


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
        self._aliases: Optional[AliasIndex] = None

    @property
    def aliases(self) -> AliasIndex:
        """The alias index of the entity names (``kgqa.aliases``: normalised and fuzzy lookups),
        built on first use and kept: every caller of one KB shares one index. MetaQA's 43k names
        took 0.8 s of CPU time (docs/model-layer.md); an exact name never needs it
        (``entity_ids``)."""
        if self._aliases is None:
            self._aliases = AliasIndex(self.entities)
        return self._aliases

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

    def write(self, path) -> None:
        """Writes the facts as tab-separated ``subject<TAB>relation<TAB>object`` lines, in order:
        ``load`` reads them back to the same entity and relation ids (ids are given in order of
        first appearance, and a name never holds a tab, since the reader splits at tabs). Entities
        and relations without a fact are not written: only a KB built in memory has them."""
        names, rels = self.entities, self.base_relations
        with open(path, "w", encoding="utf-8") as f:
            for block in self.triples.cpu().split(WRITE_BLOCK):  # a block of Python ints at a time
                f.writelines(f"{names[s]}\t{rels[p]}\t{names[o]}\n" for s, p, o in block.tolist())

    # ---- loading ------------------------------------------------------------------------------

    @classmethod
    def load(cls, path, *, on_error: str = "raise", cache_dir: Optional[str] = None, use_cache: bool = True) -> "KnowledgeBase":
        """Reads ``path``: one fact a line, ``subject|relation|object`` (MetaQA) or tab-separated.
        Blank lines are ignored. A malformed line raises KBFormatError naming file and line, or with
        ``on_error="skip"`` is skipped and listed in ``kb.report.skipped``. The parsed KB is cached
        under ``cache_dir`` (default $KGQA_CACHE or ~/.cache/kgqa), keyed by the file's path and
        content hash; a cache that cannot be read or written is skipped with one CacheWarning."""
        if on_error not in ("raise", "skip"):
            raise ValueError(f"KnowledgeBase.load(): on_error must be 'raise' or 'skip', got {on_error!r}")
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"KnowledgeBase.load(): no file {path}")
        cache = _cache_path(path, on_error, cache_dir) if use_cache else None
        if cache is not None:
            try:
                return cls._from_cache(cache)
            except Exception:  # not cached yet, unreadable, stale or truncated: parsed and written again
                pass
        kb = cls._parse(path, on_error)
        if cache is not None:
            try:
                kb._save_cache(cache)
            except Exception as err:  # OSError, or safetensors' own error for one it met writing
                _cache_unusable(cache.parent, err)
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
        try:
            save_file({"triples": self.triples.contiguous()}, str(tmp), metadata=meta)
            os.replace(tmp, cache)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
            raise

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


_warned_folders = set()  # cache folders already warned about: one warning each per process


def _cache_unusable(folder: Path, err: Exception) -> None:
    if str(folder) not in _warned_folders:
        _warned_folders.add(str(folder))
        warnings.warn(f"KB cache {folder} not used ({err}); the KB is parsed each time: set KGQA_CACHE to a "
                      f"writable folder", CacheWarning, stacklevel=3)


def content_hash(path: Path) -> str:
    """The hex SHA-256 of the file's bytes, read in 1 MiB blocks. Measured on 408 MB (10M triples),
    two runs on the busy shared 2-core AMD EPYC (with SHA instructions) of experiments/README.md,
    `python experiments/kb_file_costs.py`: sha256 0.84-1.3 GB/s, sha1 0.93-1.4, blake2b 0.46-0.68,
    md5 0.39-0.59. Hashing 1M facts (40 MB) so takes about 0.05 s, against 2-5 s to load them from
    the cache."""
    digest = hashlib.sha256()
    buf = bytearray(HASH_BLOCK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def cache_root(cache_dir: Optional[str] = None) -> Optional[Path]:
    """The folder of the model layer's caches: ``cache_dir``, else $KGQA_CACHE, else ~/.cache/kgqa;
    None, after a CacheWarning, where there is no home folder to find."""
    try:
        return Path(cache_dir or os.environ.get("KGQA_CACHE") or Path.home() / ".cache" / "kgqa")
    except RuntimeError as err:  # no home folder to find
        _cache_unusable(Path("~/.cache/kgqa"), err)
        return None


def _cache_path(path: Path, on_error: str, cache_dir: Optional[str]) -> Optional[Path]:
    """The cache file of ``path``, keyed by its content (a file edited in place, even to the same size and
    mtime, misses the cache); None, after a CacheWarning, where there is no cache folder to use."""
    root = cache_root(cache_dir)
    if root is None:
        return None
    # The resolved path stays in the key: the report's skipped lines name the file.
    key = f"{path.resolve()}|{content_hash(path)}|{on_error}|{CACHE_VERSION}"
    return root / f"kb-{hashlib.sha1(key.encode()).hexdigest()[:16]}.safetensors"
