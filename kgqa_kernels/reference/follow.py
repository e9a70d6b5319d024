"""The pure-torch definition of follow (follow_push computes the same function from a sparse
frontier, so it has no reference of its own).

- ``follow_dense``: ``einsum`` over the dense [R, E, E] relation tensor; the plainest statement of
  the semantics, for small KBs only.
- ``follow`` (= ``follow_sparse``): ReifKB's formulation ``(x M_subj^T * r M_rel^T) M_obj`` with
  torch.sparse matrices (Cohen et al. 2020), which materialises [B, T] intermediates.
- ``follow_gather``: gather + index_add_, the PyG / DGL way (a benchmark baseline).
"""
from __future__ import annotations

import torch

from ..kb import SparseKB
from ..numerics import acc_dtype


def fact_weights(kb: SparseKB, dtype=torch.float32) -> torch.Tensor:
    if kb.weight is None:
        return torch.ones(kb.num_facts, dtype=dtype, device=kb.device)
    return kb.weight.to(dtype)


def dense_relation_tensor(kb: SparseKB, dtype=torch.float32) -> torch.Tensor:
    """M[p, s, o] = weight of fact (s, p, o), 0 where there is none."""
    m = torch.zeros(kb.num_relations, kb.num_entities, kb.num_entities, dtype=dtype, device=kb.device)
    m[kb.rel, kb.subj, kb.obj] = fact_weights(kb, dtype)
    return m


def follow_dense(x: torch.Tensor, r: torch.Tensor, kb: SparseKB, *, inverse: bool = False, m=None) -> torch.Tensor:
    """y[b, o] = sum over s, p of x[b, s] * r[b, p] * M[p, s, o] (inverse: s and o swapped).
    ``m`` may hold a precomputed ``dense_relation_tensor`` for benchmarks."""
    dt = acc_dtype(x.dtype)
    m = dense_relation_tensor(kb, dt) if m is None else m.to(dt)
    eq = "bo,bp,pso->bs" if inverse else "bs,bp,pso->bo"
    return torch.einsum(eq, x.to(dt), r.to(dt), m).to(x.dtype)


def incidence_matrices(kb: SparseKB, layout=torch.sparse_coo, dtype=torch.float32):
    """ReifKB's one-hot fact incidence matrices M_subj [T, E], M_rel [T, R], M_obj [T, E]."""
    t = kb.num_facts
    rows = torch.arange(t, device=kb.device)
    ones = torch.ones(t, dtype=dtype, device=kb.device)

    def onehot(cols, n):
        m = torch.sparse_coo_tensor(torch.stack([rows, cols]), ones, (t, n), check_invariants=False).coalesce()
        return m if layout == torch.sparse_coo else m.to_sparse_csr()

    return onehot(kb.subj, kb.num_entities), onehot(kb.rel, kb.num_relations), onehot(kb.obj, kb.num_entities)


def follow_sparse(
    x: torch.Tensor, r: torch.Tensor, kb: SparseKB, *, inverse: bool = False, layout=torch.sparse_coo,
    matrices=None,
) -> torch.Tensor:
    """ReifKB: y = (x M_subj^T * r M_rel^T) M_obj, computed as sparse @ dense products.
    ``matrices`` may hold precomputed ``incidence_matrices`` and their transposes for benchmarks."""
    dt = acc_dtype(x.dtype)
    if matrices is None:
        m_subj, m_rel, m_obj = incidence_matrices(kb, layout, dt)
        m_src = (m_obj if inverse else m_subj)
        m_dst_t = (m_subj if inverse else m_obj).t()
        if layout != torch.sparse_coo:
            m_dst_t = m_dst_t.to_sparse_csr()
    else:
        m_src, m_rel, m_dst_t = matrices
    w = fact_weights(kb, dt)
    # [T, B] per-fact messages: the intermediates a fused kernel avoids.
    # Each fact's term is r * (w * x), the order of operations of every kernel (docs/ops.md), so
    # the reference overflows, and meets Inf and NaN, exactly where they do.
    msgs = torch.sparse.mm(m_src, x.to(dt).t())
    if kb.weight is not None:
        msgs = msgs * w[:, None]
    msgs = torch.sparse.mm(m_rel, r.to(dt).t()) * msgs
    return torch.sparse.mm(m_dst_t, msgs).t().to(x.dtype)


follow = follow_sparse


def follow_gather(x: torch.Tensor, r: torch.Tensor, kb: SparseKB, *, inverse: bool = False) -> torch.Tensor:
    """Message passing with gather + index_add_ (the PyG / DGL way); also [B, T] intermediates."""
    dt = acc_dtype(x.dtype)
    src, dst = (kb.obj, kb.subj) if inverse else (kb.subj, kb.obj)
    msgs = x.to(dt)[:, src]
    if kb.weight is not None:
        msgs = msgs * kb.weight.to(dt)
    msgs = r.to(dt)[:, kb.rel] * msgs
    y = torch.zeros(x.shape[0], kb.num_entities, dtype=dt, device=x.device)
    return y.index_add_(1, dst, msgs).to(x.dtype)


def follow_generalized(x: torch.Tensor, r: torch.Tensor, kb: SparseKB, *, inverse: bool = False,
                       reduce: str = "sum", message: str = "mul") -> torch.Tensor:
    """The definition of follow's ``reduce`` and ``message``: y[b, o] is the reduction ("sum",
    "mean", "max", "min") over the facts (s, p, o) into o of x[b, s] * r[b, p] * w ("mul") or
    x[b, s] + r[b, p] + w ("add"; w = 1 on an unweighted KB), 0 where no fact reaches o (inverse:
    s and o swapped). Max and min send the gradient to the winning terms, ties split evenly
    (torch's scatter_reduce). [B, T] intermediates, for small KBs and the tests."""
    dt = acc_dtype(x.dtype)
    src, dst = (kb.obj, kb.subj) if inverse else (kb.subj, kb.obj)
    w = fact_weights(kb, dt)
    xs, rp = x.to(dt)[:, src], r.to(dt)[:, kb.rel]
    # r * (w * x) and (x + r) + w: the kernels' order of operations, so ties and overflow agree.
    terms = rp * (w * xs) if message == "mul" else xs + rp + w
    B, E = x.shape[0], kb.num_entities
    y = torch.zeros(B, E, dtype=dt, device=x.device)
    if reduce in ("sum", "mean"):
        y = y.index_add(1, dst, terms)
        if reduce == "mean":
            y = y / torch.bincount(dst, minlength=E).clamp(min=1).to(dt)
    else:
        y = _SelectReduce.apply(terms, dst, E, reduce == "min")
    return y.to(x.dtype)


class _SelectReduce(torch.autograd.Function):
    """y[b, o] = the max (min) of terms[b, f] over the facts f into o (dst[f] == o), 0 where there is
    none; the gradient of y[b, o] goes to the terms equal to it, split evenly, and none to a NaN.
    Written out rather than left to scatter_reduce's own backward, which counts the excluded initial
    value as one more tie when the result equals it (torch 2.14: two terms 0 into a zero-initialised
    row get 1/3 each; terms 0 and -1, the 0 gets 1/2)."""

    @staticmethod
    def forward(ctx, terms, dst, num_entities, minimum):
        B = terms.shape[0]
        y = terms.new_zeros(B, num_entities).scatter_reduce(1, dst.expand(B, -1), terms,
                                                            "amin" if minimum else "amax", include_self=False)
        ctx.save_for_backward(terms, dst, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        terms, dst, y = ctx.saved_tensors
        won = terms == y[:, dst]
        ties = torch.zeros_like(y).index_add(1, dst, won.to(y.dtype))
        return torch.where(won, grad[:, dst] / ties[:, dst], 0), None, None, None
