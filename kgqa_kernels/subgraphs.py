"""``SubgraphBatch``: a follow over many small per-example KBs at a cost proportional to their
facts.

Code whose graph changes with every example (a retrieved subgraph per question, as in
TransferNet's CompWebQ model; edge dropout) would otherwise build one SparseKB per example, or run
every follow over a global KB whose size has nothing to do with the few hundred facts an example
has. Here the subgraphs are joined into one block-diagonal SparseKB: example b's local entity j
is joined entity ``offsets[b] + j`` and its relation p is joined relation ``b * num_relations +
p``, so that the relation weights ``r[b]`` reach only example b's facts. One follow with a batch
of one over the joined KB is then every example's follow at once, and the same kernels, autograd
and backends serve it.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from . import checks
from .kb import SparseKB
from .ops import follow


class SubgraphBatch:
    """B subgraphs with local entity ids, joined for one follow per hop.

    ``subgraphs``: one ``(subj, rel, obj, num_entities)`` per example, or ``(subj, rel, obj,
    num_entities, weight)``; ids local to the example (entities in [0, num_entities), relations in
    [0, num_relations), the relation vocabulary shared). ``duplicates`` and ``index_dtype`` as for
    ``SparseKB``.

    Entity vectors are padded ``[B, max_entities]`` tensors (example b's entity j at [b, j]);
    columns at or past an example's own entity count are ignored on input and zero on output.
    """

    def __init__(self, subgraphs: Sequence, num_relations: int, *, duplicates: str = "merge",
                 index_dtype: Optional[torch.dtype] = None):
        who = "SubgraphBatch"
        num_relations = checks.check_count(who, "num_relations", num_relations)
        if len(subgraphs) == 0:
            raise ValueError(f"{who}: needs at least one subgraph")
        subj, rel, obj, weights, sizes = [], [], [], [], []
        for b, g in enumerate(subgraphs):
            if not isinstance(g, (tuple, list)) or len(g) not in (4, 5):
                raise ValueError(f"{who}: subgraphs[{b}] must be (subj, rel, obj, num_entities[, weight])")
            n = checks.check_count(f"{who}: subgraphs[{b}]", "num_entities", g[3])
            s, p, o, w = checks.check_facts(f"{who}: subgraphs[{b}]", g[0], g[1], g[2], g[4] if len(g) == 5 else None,
                                            n, num_relations, allow_empty=True, trainable=True)
            subj.append(s)
            rel.append(p)
            obj.append(o)
            weights.append(w)
            sizes.append(n)
        weighted = [w is not None for w in weights]
        if any(weighted) and not all(weighted):
            raise ValueError(f"{who}: give a weight to every subgraph or to none")
        device = subj[0].device
        self.num_subgraphs = len(sizes)
        self.num_relations = num_relations
        self.sizes = torch.tensor(sizes, dtype=torch.int64)
        self.max_entities = max(sizes)
        self.offsets = torch.zeros(len(sizes) + 1, dtype=torch.int64)
        torch.cumsum(self.sizes, 0, out=self.offsets[1:])
        facts = torch.tensor([s.numel() for s in subj], dtype=torch.int64, device=device)
        if int(facts.sum()) == 0:
            raise ValueError(f"{who}: the subgraphs hold no facts")
        example = torch.repeat_interleave(torch.arange(len(sizes), device=device), facts)
        entity_shift = self.offsets[:-1].to(device)[example]
        self.kb = SparseKB(torch.cat(subj) + entity_shift, torch.cat(rel) + example * num_relations,
                           torch.cat(obj) + entity_shift, int(self.offsets[-1]), len(sizes) * num_relations,
                           torch.cat(weights) if weighted[0] else None, duplicates=duplicates, index_dtype=index_dtype)
        # Where each joined entity sits in the flattened [B, max_entities] padded layout.
        entity_example = torch.repeat_interleave(torch.arange(len(sizes)), self.sizes)
        local = torch.arange(int(self.offsets[-1])) - self.offsets[:-1][entity_example]
        self._flat = (entity_example * self.max_entities + local).to(device)

    @property
    def device(self) -> torch.device:
        return self.kb.device

    def pack(self, x: Tensor) -> Tensor:
        """x [B, max_entities] padded -> [1, total entities], the joined KB's layout."""
        self._check_padded("x", x)
        return x.reshape(-1)[self._flat].unsqueeze(0)

    def unpack(self, y: Tensor) -> Tensor:
        """[1, total entities] -> [B, max_entities] padded, zeros past each example's entities."""
        out = y.new_zeros(self.num_subgraphs * self.max_entities)
        return out.index_copy(0, self._flat, y[0]).view(self.num_subgraphs, self.max_entities)

    def follow(self, x: Tensor, r: Tensor, *, inverse: bool = False, backend: Optional[str] = None) -> Tensor:
        """Every example's ``follow(x[b], r[b], subgraph b)`` at once: x [B, max_entities] padded,
        r [B, num_relations]; returns [B, max_entities] padded. Differentiable in x and r."""
        who = "SubgraphBatch.follow()"
        if not isinstance(r, Tensor) or r.shape != (self.num_subgraphs, self.num_relations):
            raise ValueError(f"{who}: r must be [B={self.num_subgraphs}, num_relations={self.num_relations}], got "
                             f"{tuple(r.shape) if isinstance(r, Tensor) else type(r).__name__}")
        y = follow(self.pack(x), r.reshape(1, -1), self.kb, inverse=inverse, backend=backend)
        return self.unpack(y)

    def _check_padded(self, name: str, x) -> None:
        want = (self.num_subgraphs, self.max_entities)
        if not isinstance(x, Tensor) or x.shape != want:
            raise ValueError(f"SubgraphBatch: {name} must be [B={want[0]}, max_entities={want[1]}], got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")

    def __repr__(self) -> str:
        return (f"SubgraphBatch(num_subgraphs={self.num_subgraphs}, max_entities={self.max_entities}, "
                f"num_facts={self.kb.num_facts}, num_relations={self.num_relations}, device={self.device})")
