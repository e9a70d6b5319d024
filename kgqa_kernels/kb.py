"""SparseKB: the facts of a knowledge base, validated once and indexed for the kernels."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

_INT32_MAX = 2**31 - 1
REL_CHUNK = 4096  # csrc/kb_layout.h: kRelChunk
TensorLike = Union[torch.Tensor, Sequence[int]]


def _as_index_vector(value: TensorLike, name: str, device=None) -> torch.Tensor:
    if isinstance(value, torch.Tensor) and device is not None and value.device != device:
        raise ValueError(f"SparseKB: {name} is on {value.device} but subj is on {device}")
    t = torch.as_tensor(value, device=device)
    if not isinstance(value, torch.Tensor) and t.numel() == 0:
        t = t.long()  # torch.as_tensor([]) is float32
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise TypeError(f"SparseKB: {name} must hold integer ids, got dtype {t.dtype}")
    if t.dim() != 1:
        raise ValueError(f"SparseKB: {name} must be 1-D (one id per fact), got shape {tuple(t.shape)}")
    return t.to(torch.int64)


def _check_range(ids: torch.Tensor, name: str, limit: int, limit_name: str) -> None:
    bad = (ids < 0) | (ids >= limit)
    if bool(bad.any()):
        pos = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"SparseKB: {name}[{pos}] = {int(ids[pos])} is out of range: ids must be in "
            f"[0, {limit_name}={limit})"
        )


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

    The ops never re-validate a SparseKB, so build it through this constructor (or ``.to``).
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
        for name, n in (("num_entities", num_entities), ("num_relations", num_relations)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"SparseKB: {name} must be a positive int, got {n!r}")
        device = subj.device if isinstance(subj, torch.Tensor) else None
        s = _as_index_vector(subj, "subj", device)
        p = _as_index_vector(rel, "rel", s.device)
        o = _as_index_vector(obj, "obj", s.device)
        if not (s.numel() == p.numel() == o.numel()):
            raise ValueError(
                f"SparseKB: subj, rel and obj must have one entry per fact, got lengths "
                f"{s.numel()}, {p.numel()}, {o.numel()}"
            )
        if s.numel() == 0:
            raise ValueError("SparseKB: the KB has no facts (subj, rel and obj are empty)")
        _check_range(s, "subj", num_entities, "num_entities")
        _check_range(o, "obj", num_entities, "num_entities")
        _check_range(p, "rel", num_relations, "num_relations")
        w = None
        if weight is not None:
            w = torch.as_tensor(weight, device=s.device)
            if not w.is_floating_point():
                raise TypeError(f"SparseKB: weight must be floating point, got dtype {w.dtype}")
            if w.shape != s.shape:
                raise ValueError(
                    f"SparseKB: weight must have one entry per fact, shape {tuple(s.shape)}, "
                    f"got {tuple(w.shape)}"
                )
            w = w.to(torch.float32)
        if index_dtype is None:
            index_dtype = torch.int32 if max(num_entities, num_relations) <= _INT32_MAX else torch.int64
        elif index_dtype not in (torch.int32, torch.int64):
            raise TypeError(f"SparseKB: index_dtype must be torch.int32 or torch.int64, got {index_dtype}")
        elif index_dtype == torch.int32 and max(num_entities, num_relations) > _INT32_MAX:
            raise ValueError("SparseKB: index_dtype=torch.int32 cannot hold ids of this many entities")

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
        by_obj = order(_lexsort((o, p, s), (E, R, E)), o, E, s, p)  # obj_ptr, subj, rel, w
        by_subj = order(ident, s, E, o, p)  # subj_ptr, obj, rel, w
        by_rel = order(_lexsort((p, s, o), (R, E, E)), p, R, s, o)  # rel_ptr, subj, obj, w
        # Chunks of at most REL_CHUNK facts of one relation, the fixed reduction order of dr.
        per_rel = torch.div(by_rel[0].diff() + REL_CHUNK - 1, REL_CHUNK, rounding_mode="floor")
        chunk_ptr = torch.zeros(R + 1, dtype=torch.int64, device=s.device)
        torch.cumsum(per_rel, 0, out=chunk_ptr[1:])
        chunk_rel = torch.repeat_interleave(torch.arange(R, device=s.device), per_rel)
        # The layout of csrc/kb_layout.h (KBSlot).
        self._tensors = by_obj + by_subj + by_rel + [chunk_ptr, chunk_rel]

    @property
    def num_facts(self) -> int:
        return self.subj.numel()

    @property
    def device(self) -> torch.device:
        return self.subj.device

    def tensors(self) -> list:
        """The index tensors every op takes, in the order of csrc/kb_layout.h."""
        return list(self._tensors)

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
