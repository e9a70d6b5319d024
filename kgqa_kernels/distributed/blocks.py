"""The local work of a sharded hop, one block at a time: each function runs one backend kernel (or
the reference definition) on one block SparseKB of slice-local ids, with the [S, B] batch-innermost
outputs the kernels write."""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends, reference
from ..kb import SparseKB
from ..numerics import acc_dtype


def kernels(backend: Optional[str], device: torch.device):
    """(the resolved backend, the torch.ops namespace of its kernels or None for the reference)."""
    chosen = backends.resolve(backend, device, "ShardedSparseKB.follow")
    return chosen, (None if chosen == "reference" else backends.op_namespace(chosen))


def pull(impl, x: torch.Tensor, r: torch.Tensor, blk: SparseKB, inverse: bool) -> torch.Tensor:
    """[S, B]: follow(x [B, S], r, blk) with the output in the kernels' batch-innermost layout."""
    if impl is None:
        return reference.follow(x, r, blk, inverse=inverse).t()
    return impl.follow(x.t(), r.t(), blk.tensors(), inverse)


def pull_dr(impl, x: torch.Tensor, gy: torch.Tensor, r: torch.Tensor, blk: SparseKB, inverse: bool) -> torch.Tensor:
    """[R, B]: the gradient of r of follow(x, r, blk) for output gradient gy [B, S]."""
    if impl is None:
        with torch.enable_grad():
            rr = r.detach().requires_grad_()
            (dr,) = torch.autograd.grad(reference.follow(x, rr, blk, inverse=inverse), rr, gy)
        return dr.t()
    return impl.follow_backward_r(x.t(), gy.t(), blk.tensors(), inverse)


def dense_from_frontier(front, batch: int, width: int) -> torch.Tensor:
    ptr, ids, vals = front
    rows = torch.repeat_interleave(torch.arange(batch, device=ids.device), ptr.diff())
    return vals.new_zeros(batch, width).index_put((rows, ids), vals)


def push(impl, front, r: torch.Tensor, blk: SparseKB, batch: int) -> torch.Tensor:
    """[S, B]: follow from the frontier (ptr [B+1], slice-local ids, vals) along blk."""
    if impl is None:
        return reference.follow(dense_from_frontier(front, batch, blk.num_entities), r, blk).t()
    ptr, ids, vals = front
    return impl.follow_push(ptr, ids, vals, r.t(), blk.tensors(), False)


def push_backward(impl, gy: torch.Tensor, front, r: torch.Tensor, blk: SparseKB, batch: int):
    """(dvals [nnz], dr [R, B]) of push for output gradient gy [B, S]."""
    ptr, ids, vals = front
    if impl is None:
        with torch.enable_grad():
            v, rr = vals.detach().requires_grad_(), r.detach().requires_grad_()
            y = reference.follow(dense_from_frontier((ptr, ids, v), batch, blk.num_entities), rr, blk)
            dvals, dr = torch.autograd.grad(y, (v, rr), gy)
        return dvals, dr.t()
    dvals, dr = impl.follow_push_backward(gy.t(), ptr, ids, vals, r.t(), blk.tensors(), False)
    return dvals, dr


class BlockSum:
    """Sum of fresh [S, B] kernel outputs: the first one becomes the accumulator (no zero-fill
    and no extra pass over it), converted to float32 for 16-bit dtypes."""

    def __init__(self, dtype: torch.dtype):
        self.dtype, self.acc = acc_dtype(dtype), None

    def add(self, out: torch.Tensor) -> None:
        if self.acc is None:
            self.acc = out.to(self.dtype)  # no copy when the dtype is already right: out is fresh
        else:
            self.acc.add_(out)

    def result(self, rows: int, batch: int, like: torch.Tensor) -> torch.Tensor:
        if self.acc is None:
            return like.new_zeros((rows, batch), dtype=self.dtype)
        return self.acc


def touched_rows(blk: SparseKB, ids: torch.Tensor) -> torch.Tensor:
    """The (slice-local) objects of the facts of blk that leave the entities ``ids``: the only
    rows a push from them writes."""
    subj_ptr, obj = blk.tensor("SUBJ_PTR"), blk.tensor("SUBJ_OBJ")  # the facts grouped by subject
    u = torch.unique(ids)
    start, count = subj_ptr[u], subj_ptr[u + 1] - subj_ptr[u]
    total = int(count.sum())
    offset = torch.repeat_interleave(start - (torch.cumsum(count, 0) - count), count)
    return torch.unique(obj[offset + torch.arange(total, device=ids.device)].long())
