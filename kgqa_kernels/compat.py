"""Functions with other libraries' signatures and semantics, running on this package's kernels,
so that code written against them ports by changing an import.

``generalized_rspmm``: TorchDrug's ``torchdrug.layers.functional.generalized_rspmm`` (which ULTRA
and NBFNet call), every combination of its ``sum=`` and ``mul=`` (follow's ``reduce=`` and
``message=``).
"""
from __future__ import annotations

import weakref
from typing import Optional

import torch
from torch import Tensor

from .kb import SparseKB
from .ops import follow

# TorchDrug's names of the reductions and messages (generalized_rspmm's sum= and mul=).
RSPMM_SUMS = ("add", "min", "max")
RSPMM_MULS = ("add", "mul")

_last_kb: Optional[tuple] = None  # (weak refs to the edge tensors, (their versions, sizes), the KB)


def _kb_for(edge_index: Tensor, edge_type: Tensor, edge_weight: Optional[Tensor], num_nodes: int,
            num_relations: int) -> SparseKB:
    """The KB of these edges. Its structure is built once while the same index tensor objects,
    unchanged (their version counters), are passed again: layers of one model call
    generalized_rspmm on one graph many times. Weak references, so a freed graph is never mistaken
    for a new one at the same address. The weights are mapped onto it at each call (with_weight:
    three gathers), so new or trained weights on one graph cost no build."""
    global _last_kb
    tensors = (edge_index, edge_type)
    key = (tuple(t._version for t in tensors), num_nodes, num_relations)
    kb = None
    if _last_kb is not None:
        refs, old_key, cached = _last_kb
        if old_key == key and all(r() is t for r, t in zip(refs, tensors)):
            kb = cached
    if kb is None:
        kb = SparseKB.from_edge_index(edge_index, edge_type, num_nodes, num_relations, flow="target_to_source")
        _last_kb = (tuple(weakref.ref(t) for t in tensors), key, kb)
    return kb if edge_weight is None else kb.with_weight(edge_weight)


def generalized_rspmm(edge_index: Tensor, edge_type: Tensor, edge_weight: Tensor, relation: Tensor, input: Tensor,
                      sum: str = "add", mul: str = "mul", *, backend: Optional[str] = None) -> Tensor:
    """TorchDrug's generalized relational sparse-dense product, with its argument order:
    ``out[h] = (sum over edges (h, t) = edge_index[:, k]) of edge_weight[k] (x) relation[edge_type[k]]
    (x) input[t]``, for ``input`` [num_nodes, d] and ``relation`` [num_relations, d]; out is
    [num_nodes, d]. ``sum``: "add" | "max" | "min" (follow's reduce "sum", "max", "min"); ``mul``:
    "mul" | "add" (follow's message). Note the direction: it sums into edge_index[0] (PyG's message
    passing sums into edge_index[1]). Differentiable in ``input``, ``relation`` and an
    ``edge_weight`` that requires grad. Repeated edges are one message per copy with sum="add",
    mul="mul" and refused otherwise (a SparseKB keeps one fact per repeat)."""
    who = "generalized_rspmm()"
    if sum not in RSPMM_SUMS or mul not in RSPMM_MULS:
        raise ValueError(f"{who}: sum must be one of {RSPMM_SUMS} and mul one of {RSPMM_MULS}, got sum={sum!r}, "
                         f"mul={mul!r}")
    for name, t in (("input", input), ("relation", relation)):
        if not isinstance(t, Tensor) or t.dim() != 2:
            raise ValueError(f"{who}: {name} must be a 2-D tensor [rows, d], got "
                             f"{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}")
    if relation.shape[1] != input.shape[1]:
        raise ValueError(f"{who}: relation [num_relations, d] and input [num_nodes, d] must share d, got "
                         f"{tuple(relation.shape)} and {tuple(input.shape)}")
    kb = _kb_for(edge_index, edge_type, edge_weight, input.shape[0], relation.shape[0])
    if kb.num_duplicates_removed and (sum, mul) != ("add", "mul"):
        # A repeat is one fact with the copies' weights summed: right for a sum of products only.
        raise ValueError(f"{who}: the graph repeats {kb.num_duplicates_removed} edges; with sum={sum!r}, "
                         f"mul={mul!r} each copy is a message of its own, which a SparseKB (one fact per "
                         f"repeated edge) cannot express: remove the repeats")
    # input [V, d] is the batch-innermost layout of a [d, V] x: no copy either way.
    reduce = "sum" if sum == "add" else sum
    return follow(input.t(), relation.t(), kb, reduce=reduce, message=mul, backend=backend).t()
