"""Triton kernels of follow_push: follow from a sparse frontier, one program per example owning
column b of the output, and its backward."""
from __future__ import annotations

from typing import List

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..checks import check_frontier, check_matrix, kb_num_entities as num_entities, kb_num_relations as num_relations
from ..numerics import acc_dtype as _acc_like
from ._launch import kernel_op, launch, acc_dtype
from .follow import pull_index


@triton.jit
def _push_kernel(fptr, ids, vals, ptr, col, rel, w, r, y, B, HAS_W: tl.constexpr, ACC: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    for j in range(tl.load(fptr + b), tl.load(fptr + b + 1)):
        s = tl.load(ids + j)
        v = tl.load(vals + j).to(ACC)
        for f in range(tl.load(ptr + s), tl.load(ptr + s + 1)):
            c = tl.load(r + tl.load(rel + f).to(tl.int64) * B + b).to(ACC)
            if HAS_W:
                c = c * (tl.load(w + f).to(ACC) * v)
            else:
                c = c * v
            dst = y + tl.load(col + f).to(tl.int64) * B + b
            tl.store(dst, tl.load(dst) + c)


@triton.jit
def _push_backward_kernel(fptr, ids, vals, ptr, col, rel, w, r, grad, dvals, dr, B, HAS_W: tl.constexpr,
                          ACC: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    for j in range(tl.load(fptr + b), tl.load(fptr + b + 1)):
        s = tl.load(ids + j)
        v = tl.load(vals + j).to(ACC)
        dv = tl.zeros([], dtype=ACC)
        for f in range(tl.load(ptr + s), tl.load(ptr + s + 1)):
            p = tl.load(rel + f).to(tl.int64)
            g = tl.load(grad + tl.load(col + f).to(tl.int64) * B + b).to(ACC)
            if HAS_W:
                g = g * tl.load(w + f).to(ACC)
            dv += tl.load(r + p * B + b).to(ACC) * g
            dst = dr + p * B + b
            tl.store(dst, tl.load(dst) + v * g)
        tl.store(dvals + j, dv.to(dvals.dtype.element_ty))


@kernel_op("follow_push")
def follow_push(ptr: Tensor, ids: Tensor, vals: Tensor, r: Tensor, kb: List[Tensor], inverse: bool) -> Tensor:
    check_frontier("follow_push", ptr, ids, vals, r, kb)
    B = ptr.shape[0] - 1
    y = vals.new_zeros((num_entities(kb), B), dtype=_acc_like(vals.dtype))
    if B > 0:
        fptr, col, rel, w = pull_index(kb, not inverse)  # facts grouped by the entity they leave
        has_w = w.numel() > 0
        launch(_push_kernel, (B,),
            ptr.contiguous(), ids.contiguous(), vals.contiguous(), fptr, col, rel, w if has_w else fptr,
            r.contiguous(), y, B, HAS_W=has_w, ACC=acc_dtype(vals.dtype),
        )
    return y.to(vals.dtype)


@kernel_op("follow_push_backward")
def follow_push_backward(
    grad: Tensor, ptr: Tensor, ids: Tensor, vals: Tensor, r: Tensor, kb: List[Tensor], inverse: bool
) -> tuple[Tensor, Tensor]:
    check_frontier("follow_push_backward", ptr, ids, vals, r, kb)
    B = ptr.shape[0] - 1
    check_matrix("follow_push_backward", "grad", grad, num_entities(kb), kb, batch=B)
    dvals = torch.empty_like(vals)
    dr = vals.new_zeros((num_relations(kb), B), dtype=_acc_like(vals.dtype))
    if B > 0:
        fptr, col, rel, w = pull_index(kb, not inverse)
        has_w = w.numel() > 0
        launch(_push_backward_kernel, (B,),
            ptr.contiguous(), ids.contiguous(), vals.contiguous(), fptr, col, rel, w if has_w else fptr,
            r.contiguous(), grad.contiguous(), dvals, dr, B, HAS_W=has_w, ACC=acc_dtype(vals.dtype),
        )
    return dvals, dr.to(vals.dtype)
