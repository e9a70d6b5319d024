"""SparseKB: the facts of a knowledge base, validated once and indexed for the kernels."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from . import checks, layout
from .checks import _INT32_MAX

TensorLike = Union[torch.Tensor, Sequence[int]]
# How SparseKB handles a fact listed more than once (its docstring says what each does).
DUPLICATES = ("merge", "sum", "error")
# SparseKB.from_edge_index's directions, PyG's names.
FLOWS = ("source_to_target", "target_to_source")


def _one_per_row(who: str, name: str, m) -> tuple:
    """(column, value) of the one nonzero in each row of a 2-D matrix (sparse or dense)."""
    if not isinstance(m, torch.Tensor) or m.dim() != 2:
        raise ValueError(f"{who}: {name} must be a 2-D tensor (sparse or dense), got "
                         f"{tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__}")
    if m.layout == torch.strided:
        m = m.to_sparse()
    elif m.layout != torch.sparse_coo:
        m = m.to_sparse_coo()
    m = m.coalesce()
    rows, cols = m.indices()
    vals = m.values()
    keep = vals != 0
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    if rows.numel() != m.shape[0] or not torch.equal(rows, torch.arange(m.shape[0], device=rows.device)):
        counts = torch.bincount(rows, minlength=m.shape[0])
        bad = int((counts != 1).nonzero()[0, 0])
        raise ValueError(f"{who}: each row of {name} must hold exactly one nonzero (one fact per row); row {bad} "
                         f"holds {int(counts[bad])}")
    return cols, vals.to(torch.float32)


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


def _compact_perms(*perms) -> tuple:
    """Permutations as int32 where every position fits (half the memory; index_select takes them)."""
    return tuple(p.to(torch.int32) if p.numel() <= _INT32_MAX else p for p in perms)


def _order_perms(s, p, o, num_entities: int, num_relations: int) -> tuple:
    """The permutations from the canonical (s, p, o) order to the object order (o, p, s) and the
    relation order (p, s, o)."""
    E, R = num_entities, num_relations
    return _lexsort((o, p, s), (E, R, E)), _lexsort((p, s, o), (R, E, E))


def _row_pointer(sorted_rows: torch.Tensor, num_rows: int) -> torch.Tensor:
    ptr = torch.zeros(num_rows + 1, dtype=torch.int64, device=sorted_rows.device)
    torch.cumsum(torch.bincount(sorted_rows, minlength=num_rows), 0, out=ptr[1:])
    return ptr


class SparseKB:
    """Facts (subject, relation, object) with an optional per-fact weight.

    Built once from integer tensors (or sequences) of equal length. The constructor checks every
    id against ``num_entities`` / ``num_relations`` (ints, or integer-like: a numpy integer, a
    one-element integer tensor), handles facts listed more than once as ``duplicates`` says, and
    stores the facts in the three orders the kernels pull over: grouped by object, by subject and
    by relation.

    ``duplicates``: "merge" (the default) keeps one copy of a repeated fact: weight 1 without
    weights, the sum of its weights with them (like ``Tensor.coalesce``); "sum" makes a repeated
    fact count as often as it is listed: its weight is the sum of its copies' weights, 1 each
    without weights (so an unweighted KB with repeats becomes weighted, as torch.sparse incidence
    matrices with repeated entries sum them); "error" raises ValueError naming the first repeat.
    ``num_duplicates_removed`` says how many copies were folded. A ``weight`` that requires grad
    trains: ``follow`` gives it a gradient (``trainable``); ``with_weight`` gives the same facts
    other weights without a build. For those the KB keeps where each fact given went (int32, 4
    bytes a fact; nothing when the facts come sorted by (s, p, o) and unique).
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
        duplicates: str = "merge",
    ):
        num_entities = checks.check_count("SparseKB", "num_entities", num_entities)
        num_relations = checks.check_count("SparseKB", "num_relations", num_relations)
        if duplicates not in DUPLICATES:
            raise ValueError(f"SparseKB: duplicates must be one of {DUPLICATES}, got {duplicates!r}")
        s, p, o, w = checks.check_facts("SparseKB", subj, rel, obj, weight, num_entities, num_relations,
                                        trainable=True)
        index_dtype = checks.check_index_dtype("SparseKB", index_dtype, num_entities, num_relations)

        # Canonical order (s, p, o); duplicates become adjacent and are merged.
        perm = _lexsort((s, p, o), (num_entities, num_relations, num_entities))
        s, p, o = s[perm], p[perm], o[perm]
        first = torch.ones_like(s, dtype=torch.bool)
        first[1:] = (s[1:] != s[:-1]) | (p[1:] != p[:-1]) | (o[1:] != o[:-1])
        self.num_duplicates_removed = int((~first).sum())
        if self.num_duplicates_removed and duplicates == "error":
            i = int((~first).nonzero()[0, 0])
            raise ValueError(f"SparseKB: {self.num_duplicates_removed} facts repeat an earlier one, the first "
                             f"(subj, rel, obj) = ({int(s[i])}, {int(p[i])}, {int(o[i])}); pass duplicates='merge' to "
                             f"keep one copy or duplicates='sum' to count each")
        # Where each fact given lands (with_weight and a trainable weight map a weight given per input
        # fact through it): input fact perm[i] is canonical fact group[i].
        self.num_input_facts = perm.numel()
        index = torch.int32 if perm.numel() <= _INT32_MAX else torch.int64
        self._input_perm = None if bool((perm == torch.arange(perm.numel(), device=perm.device)).all()) \
            else perm.to(index)
        self._input_group = (torch.cumsum(first, 0) - 1).to(index) if self.num_duplicates_removed else None
        if self.num_duplicates_removed and duplicates == "sum" and w is None:
            w = torch.ones(perm.numel(), dtype=torch.float32, device=s.device)
        s, p, o = s[first], p[first], o[first]
        self._build(s, p, o, num_entities, num_relations, index_dtype)
        self._set_weight(w)

    def _build(self, s, p, o, num_entities, num_relations, index_dtype):
        self.num_entities = num_entities
        self.num_relations = num_relations
        self.index_dtype = index_dtype
        self.subj, self.rel, self.obj = s, p, o  # int64, sorted (s, p, o)
        E, R = num_entities, num_relations

        def order(perm, row, row_count, a, b):
            return [_row_pointer(row[perm], row_count), a[perm].to(index_dtype), b[perm].to(index_dtype), None]

        # The subject order is the canonical one, so SUBJ_WEIGHT is the canonical weight itself.
        obj_perm, rel_perm = _order_perms(s, p, o, E, R)
        by_obj = order(obj_perm, o, E, s, p)
        by_subj = order(torch.arange(s.numel(), device=s.device), s, E, o, p)
        by_rel = order(rel_perm, p, R, s, o)
        self._order_perms = (obj_perm, rel_perm)  # _set_weight keeps them only for a trainable weight
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

    def _canonical_weight(self, w: torch.Tensor) -> torch.Tensor:
        """A weight per input fact -> per canonical fact, float32 (differentiable: gathers and, for
        merged duplicates, a sum)."""
        w = w.to(torch.float32)
        # index_select, not w[perm]: on 10M facts 126 against 273 ms, and with its backward 341
        # against 690 ms (2 threads).
        if self._input_perm is not None:
            w = w.index_select(0, self._input_perm)
        if self._input_group is not None:
            w = torch.zeros(self.num_facts, dtype=w.dtype, device=w.device).index_add(0, self._input_group, w)
        return w

    def _weight_slots(self, canonical: Optional[torch.Tensor]) -> list:
        """The KB list with its three weight slots taken from ``canonical`` (None: unweighted)."""
        t = list(self._tensors)
        if canonical is None:
            empty = torch.empty(0, dtype=torch.float32, device=self.device)
            t[layout.OBJ_WEIGHT] = t[layout.SUBJ_WEIGHT] = t[layout.REL_WEIGHT] = empty
        else:
            t[layout.OBJ_WEIGHT] = canonical.index_select(0, self._order_perms[0])
            t[layout.SUBJ_WEIGHT] = canonical
            t[layout.REL_WEIGHT] = canonical.index_select(0, self._order_perms[1])
        return t

    def _set_weight(self, w: Optional[torch.Tensor]) -> None:
        """Takes ``w`` (one per input fact, or None) as the fact weights, and seals the KB. A weight
        that requires grad is kept as given and mapped again at every use (tensors(), weight), so
        every call differentiates through the weight's current values and a fresh graph: an
        optimizer's in-place step is seen, and each backward reaches the weight."""
        self._weight_source = w if w is not None and w.requires_grad else None
        canonical = None if w is None else self._canonical_weight(w.detach())
        self._weight = canonical
        self._tensors = self._weight_slots(canonical)
        if self._weight_source is None:
            self._order_perms = None  # needed again only to re-map a trainable weight, or by with_weight
        else:
            self._order_perms = _compact_perms(*self._order_perms)
        self._seal()

    @property
    def weight(self) -> Optional[torch.Tensor]:
        """The fact weights in canonical order (that of ``subj``, ``rel``, ``obj``), float32, or None.
        For a weight that requires grad, a differentiable map of its current values."""
        if self._weight_source is not None:
            return self._canonical_weight(self._weight_source)
        return self._weight

    @property
    def trainable(self) -> bool:
        """Whether the fact weights require grad (follow() then gives them a gradient)."""
        return self._weight_source is not None

    def unweighted(self) -> "SparseKB":
        """The same facts without weights (every weight 1), sharing the index tensors; this KB when
        it has none. Kept once made."""
        if self._weight is None and self._weight_source is None:
            return self
        if getattr(self, "_unweighted", None) is None:
            kb = SparseKB.__new__(SparseKB)
            kb.__dict__.update(self.__dict__)
            kb._unweighted = None
            kb._set_weight(None)
            self._unweighted = kb
        return self._unweighted

    def forget_input_order(self) -> None:
        """Drops the map from the facts as given to the canonical order (4 bytes a fact, int32; 8
        beyond 2**31 facts): for a KB that is never re-weighted. with_weight then raises."""
        if self._weight_source is not None:
            raise ValueError("SparseKB.forget_input_order(): the fact weights train, and are mapped through it")
        self._input_perm = self._input_group = None
        self.num_input_facts = None

    def with_weight(self, weight) -> "SparseKB":
        """The same facts with other weights: ``weight`` [num_input_facts], one per fact as given to
        the constructor, in that order (merged duplicates add up, as there). The index tensors are
        shared, so this costs three gathers of the weights, not a build. A weight that requires grad
        gets its gradient through ``follow``."""
        who = "SparseKB.with_weight()"
        self.check_unmodified(who)
        if self.num_input_facts is None:
            raise ValueError(f"{who}: this KB forgot the order its facts were given in (forget_input_order()); "
                             f"build it again with the weights")
        w = checks.check_fact_weight(who, "weight", weight, self.num_input_facts, self.device, trainable=True)
        if self._order_perms is None:  # kept from now on: a KB re-weighted once is re-weighted again
            self._order_perms = _compact_perms(*_order_perms(self.subj, self.rel, self.obj, self.num_entities,
                                                             self.num_relations))
        kb = SparseKB.__new__(SparseKB)
        kb.__dict__.update(self.__dict__)
        kb._set_weight(w)
        return kb

    def _guarded(self):
        """(name, tensor) of everything the ops read, for the check that nothing changed them."""
        named = list(zip(layout.SLOT_NAMES, self._tensors))
        named += [("subj", self.subj), ("rel", self.rel), ("obj", self.obj)]
        if self._weight_source is not None:  # re-mapped at every use, and meant to change in place
            named = [(n, t) for n, t in named if not n.endswith("WEIGHT")]
        return named + ([("weight", self._weight)] if self._weight is not None and self._weight_source is None else [])

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
        (``check_unmodified``). With a weight that requires grad, the weight slots are mapped from
        its current values at each call, SUBJ_WEIGHT (the canonical order) differentiably: the ops
        put the whole gradient of the fact weights there (``follow_backward_w``)."""
        self.check_unmodified("SparseKB.tensors()")
        if self._weight_source is None:
            return list(self._tensors)
        canonical = self._canonical_weight(self._weight_source)
        t = self._weight_slots(canonical.detach())
        t[layout.SUBJ_WEIGHT] = canonical
        return t

    def tensor(self, slot: str) -> torch.Tensor:
        """One of ``tensors()`` by its slot name (``"SUBJ_PTR"``, ``"REL_CHUNK_PTR"``, ...)."""
        if slot not in layout.SLOT_NAMES:
            raise ValueError(f"SparseKB.tensor(): slot must be one of {layout.SLOT_NAMES}, got {slot!r}")
        if self._weight_source is not None and slot.endswith("WEIGHT"):
            return self.tensors()[getattr(layout, slot)]  # mapped from the weight's current values
        return self._tensors[getattr(layout, slot)]

    def to(self, device) -> "SparseKB":
        device = torch.device(device)
        if device == self.device:
            return self
        if self._weight_source is not None:
            raise ValueError("SparseKB.to(): the fact weights require grad, and a copy on another device would "
                             "not train them; use kb.to(device).with_weight(weight.to(device)) with the weight "
                             "tensor made on that device (a leaf)")
        kb = SparseKB.__new__(SparseKB)
        kb.num_entities, kb.num_relations = self.num_entities, self.num_relations
        kb.index_dtype = self.index_dtype
        kb.num_duplicates_removed = self.num_duplicates_removed
        kb.subj, kb.rel, kb.obj = (t.to(device) for t in (self.subj, self.rel, self.obj))
        kb.num_input_facts = self.num_input_facts
        kb._input_perm, kb._input_group = (None if t is None else t.to(device)
                                           for t in (self._input_perm, self._input_group))
        kb._weight_source, kb._order_perms = None, None
        kb._weight = None if self._weight is None else self._weight.to(device)
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

    @classmethod
    def from_edge_index(cls, edge_index: TensorLike, edge_type: Optional[TensorLike], num_nodes: int,
                        num_relations: Optional[int] = None, edge_weight=None, *, flow: str = "source_to_target",
                        duplicates: str = "sum", **kw) -> "SparseKB":
        """From PyTorch Geometric-style edges: ``edge_index`` [2, T] node ids, ``edge_type`` [T]
        relation ids (None: every edge has relation 0), ``edge_weight`` [T] (None: unweighted).

        ``flow`` has PyG's meaning. "source_to_target" (PyG's default): an edge (j, i) =
        (edge_index[0], edge_index[1]) carries j's value to i, so ``follow`` sums into
        edge_index[1] (subjects edge_index[0], objects edge_index[1]). "target_to_source": it sums
        into edge_index[0], as TorchDrug's and ULTRA's ``generalized_rspmm`` do
        (``kgqa_kernels.compat``). ``num_relations`` defaults to the largest type + 1. A repeated
        edge sends its message once per copy, as in message passing: ``duplicates="sum"`` (see
        ``SparseKB``)."""
        who = "SparseKB.from_edge_index"
        if flow not in FLOWS:
            raise ValueError(f"{who}: flow must be one of {FLOWS}, got {flow!r}")
        ei = torch.as_tensor(edge_index)
        if ei.dim() != 2 or ei.shape[0] != 2:
            raise ValueError(f"{who}: edge_index must be [2, num_edges], got shape {tuple(ei.shape)}")
        num_nodes = checks.check_count(who, "num_nodes", num_nodes)
        src, dst = ei[0], ei[1]
        if not (ei.dtype == torch.bool or ei.is_floating_point() or ei.is_complex()):
            for name, ids in (("edge_index[0]", src), ("edge_index[1]", dst)):  # named as the caller knows them
                checks.check_range(who, ids, name, num_nodes, "num_nodes")
        if edge_type is None:
            edge_type = torch.zeros_like(src)
            num_relations = 1 if num_relations is None else num_relations
        et = torch.as_tensor(edge_type, device=src.device)
        if num_relations is None:
            if et.numel() == 0 or et.is_floating_point():
                raise ValueError(f"{who}: pass num_relations (it cannot be read off edge_type of dtype {et.dtype}, "
                                 f"{et.numel()} entries)")
            num_relations = int(et.max()) + 1
        subj, obj = (src, dst) if flow == "source_to_target" else (dst, src)
        return cls(subj, et, obj, num_nodes, num_relations, edge_weight, duplicates=duplicates, **kw)

    @classmethod
    def from_incidence(cls, m_subj: torch.Tensor, m_rel: torch.Tensor, m_obj: torch.Tensor, *,
                       duplicates: str = "sum", **kw) -> "SparseKB":
        """From ReifKB's (TransferNet's) fact incidence matrices, torch sparse (COO or CSR) or dense:
        ``m_subj`` [T, E], ``m_rel`` [T, R] and ``m_obj`` [T, E], one nonzero per row (fact t is
        (subject, relation, object) at those columns), so that ``follow(x, r, kb)`` is
        ``((x @ m_subj.T) * (r @ m_rel.T)) @ m_obj``. A fact's weight is the product of its three
        values (none when all are 1). Repeated rows add up as in the matrix product:
        ``duplicates="sum"``."""
        who = "SparseKB.from_incidence"
        cols, vals = [], []
        for name, m in (("m_subj", m_subj), ("m_rel", m_rel), ("m_obj", m_obj)):
            c, v = _one_per_row(who, name, m)
            cols.append(c)
            vals.append(v)
        if not (m_subj.shape[0] == m_rel.shape[0] == m_obj.shape[0]):
            raise ValueError(f"{who}: m_subj, m_rel and m_obj must have one row per fact, got "
                             f"{m_subj.shape[0]}, {m_rel.shape[0]} and {m_obj.shape[0]} rows")
        if m_subj.shape[1] != m_obj.shape[1]:
            raise ValueError(f"{who}: m_subj and m_obj must have one column per entity, got {m_subj.shape[1]} "
                             f"and {m_obj.shape[1]}")
        w = vals[0] * vals[1] * vals[2]
        weight = None if bool((w == 1).all()) else w
        return cls(cols[0], cols[1], cols[2], m_subj.shape[1], m_rel.shape[1], weight, duplicates=duplicates, **kw)

    def __repr__(self) -> str:
        return (
            f"SparseKB(num_entities={self.num_entities}, num_relations={self.num_relations}, "
            f"num_facts={self.num_facts}, weighted={self.weight is not None}, "
            f"index_dtype={self.index_dtype}, device={self.device})"
        )
