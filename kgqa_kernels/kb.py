"""SparseKB: the facts of a knowledge base, validated once and indexed for the kernels."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from . import checks, layout

TensorLike = Union[torch.Tensor, Sequence[int]]


def _lexsort(keys, sizes) -> torch.Tensor:
    """Permutation that sorts lexicographically by keys[0], then keys[1], ...; keys[i] < sizes[i]."""
    span = 1
    for n in sizes:
        span *= n
    if span < 2**63:  # one sort of a combined key
        combined = keys[0]
        for key, n in zip(keys[1:], sizes[1:]):
            combined = combined * n + key
        return torch.argsort(combined)
    # Stable sorts from the last key to the first: nothing can overflow.
    perm = torch.argsort(keys[-1], stable=True)
    for key in reversed(keys[:-1]):
        perm = perm[torch.argsort(key[perm], stable=True)]
    return perm


def _row_pointer(sorted_rows: torch.Tensor, num_rows: int) -> torch.Tensor:
    ptr = torch.zeros(num_rows + 1, dtype=torch.int64, device=sorted_rows.device)
    torch.cumsum(torch.bincount(sorted_rows, minlength=num_rows), 0, out=ptr[1:])
    return ptr


class SparseKB:
    """Facts (subject, relation, object) with an optional per-fact weight.

    Built once from integer tensors (or sequences) of equal length. The constructor checks every
    id against ``num_entities`` / ``num_relations``, removes duplicate facts (with weights, a fact
    listed several times keeps the sum of its weights, like ``Tensor.coalesce``) and stores the
    facts in the three orders the kernels pull over: grouped by object, by subject and by relation.
    Entity and relation ids are stored as int32 when they fit and as int64 otherwise; row pointers
    are always int64, so more than 2**31 facts work.

    The ops never re-validate the values, so build it through this constructor (or ``.to``); a
    KB whose tensors were written in place afterwards is refused (``check_unmodified``).
    """

    def __init__(
        self,
        subj: TensorLike,
        rel: TensorLike,
        obj: TensorLike,
        num_entities: int,
        num_relations: int,
        weight: Optional[TensorLike] = None,
        *,
        index_dtype: Optional[torch.dtype] = None,
    ):
        checks.check_count("SparseKB", "num_entities", num_entities)
        checks.check_count("SparseKB", "num_relations", num_relations)
        s, p, o, w = checks.check_facts("SparseKB", subj, rel, obj, weight, num_entities, num_relations)
        index_dtype = checks.check_index_dtype("SparseKB", index_dtype, num_entities, num_relations)

        # Canonical order (s, p, o); duplicates become adjacent and are merged.
        perm = _lexsort((s, p, o), (num_entities, num_relations, num_entities))
        s, p, o = s[perm], p[perm], o[perm]
        first = torch.ones_like(s, dtype=torch.bool)
        first[1:] = (s[1:] != s[:-1]) | (p[1:] != p[:-1]) | (o[1:] != o[:-1])
        self.num_duplicates_removed = int((~first).sum())
        if w is not None:
            w = w[perm]
            if self.num_duplicates_removed:
                group = torch.cumsum(first, 0) - 1
                w = torch.zeros(int(group[-1]) + 1, dtype=w.dtype, device=w.device).index_add_(0, group, w)
        s, p, o = s[first], p[first], o[first]
        self._build(s, p, o, w, num_entities, num_relations, index_dtype)

    def _build(self, s, p, o, w, num_entities, num_relations, index_dtype):
        self.num_entities = num_entities
        self.num_relations = num_relations
        self.index_dtype = index_dtype
        self.subj, self.rel, self.obj = s, p, o  # int64, sorted (s, p, o)
        self.weight = w
        empty_w = torch.empty(0, dtype=torch.float32, device=s.device)

        def order(perm, row, row_count, a, b):
            return [
                _row_pointer(row[perm], row_count),
                a[perm].to(index_dtype),
                b[perm].to(index_dtype),
                empty_w if w is None else w[perm],
            ]

        E, R = num_entities, num_relations
        ident = torch.arange(s.numel(), device=s.device)
        by_obj = order(_lexsort((o, p, s), (E, R, E)), o, E, s, p)
        by_subj = order(ident, s, E, o, p)
        by_rel = order(_lexsort((p, s, o), (R, E, E)), p, R, s, o)
        # Chunks of at most REL_CHUNK facts of one relation, the fixed reduction order of dr.
        chunk = layout.REL_CHUNK
        per_rel = torch.div(by_rel[0].diff() + chunk - 1, chunk, rounding_mode="floor")
        chunk_ptr = torch.zeros(R + 1, dtype=torch.int64, device=s.device)
        torch.cumsum(per_rel, 0, out=chunk_ptr[1:])
        chunk_rel = torch.repeat_interleave(torch.arange(R, device=s.device), per_rel)
        slots = dict(zip(("OBJ_PTR", "OBJ_SUBJ", "OBJ_REL", "OBJ_WEIGHT"), by_obj))
        slots.update(zip(("SUBJ_PTR", "SUBJ_OBJ", "SUBJ_REL", "SUBJ_WEIGHT"), by_subj))
        slots.update(zip(("REL_PTR", "REL_SUBJ", "REL_OBJ", "REL_WEIGHT"), by_rel))
        slots.update(REL_CHUNK_PTR=chunk_ptr, REL_CHUNK_REL=chunk_rel)
        self._tensors = [slots[name] for name in layout.SLOT_NAMES]  # the order of csrc/kb_layout.h
        self._seal()

    def _guarded(self):
        """(name, tensor) of everything the ops read, for the check that nothing changed them."""
        named = list(zip(layout.SLOT_NAMES, self._tensors))
        named += [("subj", self.subj), ("rel", self.rel), ("obj", self.obj)]
        return named + ([("weight", self.weight)] if self.weight is not None else [])

    def _seal(self) -> None:
        # Validated once, so the ops trust the values; an in-place write to any of these tensors
        # bumps its version counter, and check_unmodified() refuses the KB from then on. (Writes that
        # bypass autograd's counter, through .data or numpy, can still change values: the kernels
        # then report an id out of range rather than read out of bounds, csrc/bounds.h.)
        self._versions = [t._version for _, t in self._guarded()]

    def check_unmodified(self, who: str = "SparseKB") -> None:
        """Raise if a tensor of this KB was written in place since it was built. Skipped while
        torch.compile traces: a version counter is not something a graph can guard on (the eager
        calls around a compiled function still check)."""
        if torch.compiler.is_compiling():
            return
        for (name, t), version in zip(self._guarded(), self._versions):
            if t._version != version:
                raise RuntimeError(
                    f"{who}: the KB's tensor {name} was modified in place after the SparseKB was built, so "
                    "its indices can no longer be trusted; build a new SparseKB (or copy the tensors before "
                    "editing them)"
                )

    @property
    def num_facts(self) -> int:
        return self.subj.numel()

    @property
    def device(self) -> torch.device:
        return self.subj.device

    def tensors(self) -> list:
        """The index tensors every op takes, in the order of ``kgqa_kernels.layout.SLOT_NAMES``.
        They are the KB's own tensors, not copies: writing to one makes the KB refuse to be used
        (``check_unmodified``)."""
        self.check_unmodified("SparseKB.tensors()")
        return list(self._tensors)

    def tensor(self, slot: str) -> torch.Tensor:
        """One of ``tensors()`` by its slot name (``"SUBJ_PTR"``, ``"REL_CHUNK_PTR"``, ...)."""
        if slot not in layout.SLOT_NAMES:
            raise ValueError(f"SparseKB.tensor(): slot must be one of {layout.SLOT_NAMES}, got {slot!r}")
        return self._tensors[getattr(layout, slot)]

    def to(self, device) -> "SparseKB":
        device = torch.device(device)
        if device == self.device:
            return self
        kb = SparseKB.__new__(SparseKB)
        kb.num_entities, kb.num_relations = self.num_entities, self.num_relations
        kb.index_dtype = self.index_dtype
        kb.num_duplicates_removed = self.num_duplicates_removed
        kb.subj, kb.rel, kb.obj = (t.to(device) for t in (self.subj, self.rel, self.obj))
        kb.weight = None if self.weight is None else self.weight.to(device)
        kb._tensors = [t.to(device) for t in self._tensors]
        kb._seal()
        return kb

    def cpu(self) -> "SparseKB":
        return self.to("cpu")

    def cuda(self, device=None) -> "SparseKB":
        return self.to(torch.device("cuda", device) if isinstance(device, int) else (device or "cuda"))

    @classmethod
    def from_triples(cls, triples: TensorLike, num_entities: int, num_relations: int, weight=None, **kw):
        """From an [T, 3] tensor of (subject, relation, object) rows."""
        t = torch.as_tensor(triples)
        if t.dim() != 2 or t.shape[1] != 3:
            raise ValueError(f"SparseKB.from_triples: triples must be [T, 3], got shape {tuple(t.shape)}")
        return cls(t[:, 0], t[:, 1], t[:, 2], num_entities, num_relations, weight, **kw)

    def __repr__(self) -> str:
        return (
            f"SparseKB(num_entities={self.num_entities}, num_relations={self.num_relations}, "
            f"num_facts={self.num_facts}, weighted={self.weight is not None}, "
            f"index_dtype={self.index_dtype}, device={self.device})"
        )
