"""Triton kernels of follow_intersect: k <= 8 pulls combined by a t-norm row by row (the k follow
outputs never exist), the min's tie mask, and the backward from it."""
from __future__ import annotations

from typing import List

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..checks import check_matrix, check_raw_branches, check_ties, kb_num_relations as num_relations
from ._launch import KernelErrors, kernel_op, launch, acc_dtype, batch_configs, degree_bucket, elementwise_configs, padded, pick
from .follow import launch_pull, launch_rel_reduction, pull_bounds, pull_index, pull_row
from .intersect import combine, combine_backward, nan_min


@triton.autotune(configs=batch_configs(), key=["B", "DEG"])
@triton.jit
def _follow_intersect_kernel(ptr, col, rel, w, X0, X1, X2, X3, X4, X5, X6, X7, R0, R1, R2, R3, R4, R5, R6, R7,
                             out, ties, B, DEG, E, R, FACTS, PTR_SLOT, err, K: tl.constexpr, PRODUCT: tl.constexpr, SAVE_TIES: tl.constexpr,
                             HAS_W: tl.constexpr, ACC: tl.constexpr, BLOCK_B: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    bs = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = bs < B
    v = tl.zeros([BLOCK_B], dtype=ACC)
    tied = tl.zeros([BLOCK_B], dtype=tl.int32)
    for i in tl.static_range(K):
        y = pull_row(ptr, col, rel, w, pick(i, X0, X1, X2, X3, X4, X5, X6, X7),
                     pick(i, R0, R1, R2, R3, R4, R5, R6, R7), row, bs, bm, B, E, R, FACTS, PTR_SLOT, err,
                     HAS_W, ACC, BLOCK_B)
        if PRODUCT:
            if i == 0:
                v = y
            else:
                v = v * y
        else:
            # The running minimum of the outputs rounded to the output dtype (rounding is monotonic,
            # so this is the rounded minimum) and which branches equal it, as intersect(follow(...))
            # decides ties.
            y = y.to(out.dtype.element_ty).to(ACC)
            if i == 0:
                v = y
                tied = tl.full([BLOCK_B], 1, tl.int32)
            else:
                tied = tl.where(y < v, 1 << i, tl.where(y == v, tied | (1 << i), tied))
                v = nan_min(v, y)
    tl.store(out + row * B + bs, v.to(out.dtype.element_ty), mask=bm)
    if SAVE_TIES:
        tl.store(ties + row * B + bs, tl.where(v != v, 0, tied).to(tl.uint8), mask=bm)  # NaN ties nothing


def _check(op: str, xs: List[Tensor], rs: List[Tensor], kb: List[Tensor]):
    return check_raw_branches(op, xs, rs, kb, "triton")


@kernel_op("follow_intersect")
def follow_intersect(
    xs: List[Tensor], rs: List[Tensor], kb: List[Tensor], inverse: bool, tnorm: str, save_ties: bool
) -> tuple[Tensor, Tensor]:
    xs, rs, E, B = _check("follow_intersect", xs, rs, kb)
    if tnorm not in ("min", "product"):
        raise RuntimeError(f"follow_intersect(): tnorm must be 'min' or 'product', got {tnorm!r}")
    if save_ties and tnorm != "min":
        raise RuntimeError("follow_intersect(): save_ties needs tnorm 'min'")
    out = xs[0].new_empty((E, B))
    ties = xs[0].new_empty((E, B) if save_ties else (0, 0), dtype=torch.uint8)
    if E > 0 and B > 0:
        ptr, col, rel, w = pull_index(kb, inverse)
        has_w = w.numel() > 0
        errors = KernelErrors("follow_intersect", out.device)
        launch(_follow_intersect_kernel, lambda meta: (E, triton.cdiv(B, meta["BLOCK_B"])),
            ptr, col, rel, w if has_w else ptr, *padded(xs), *padded(rs), out, ties if save_ties else out, B,
            degree_bucket(col.shape[0], E), *pull_bounds(kb, inverse), errors.flag, K=len(xs),
            PRODUCT=tnorm == "product", SAVE_TIES=save_ties, HAS_W=has_w, ACC=acc_dtype(out.dtype),
        )
        errors.done()
    return out, ties


@triton.autotune(configs=elementwise_configs(), key=["n"])
@triton.jit
def _tie_shares_kernel(grad, ties, G0, G1, G2, G3, G4, G5, G6, G7, n, K: tl.constexpr, ACC: tl.constexpr,
                       BLOCK: tl.constexpr):
    # g_i = grad / (number of tied branches) where branch i is tied, else 0.
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    g = tl.load(grad + offs, mask=m, other=0).to(ACC)
    t = tl.load(ties + offs, mask=m, other=0).to(tl.int32)
    count = tl.zeros([BLOCK], dtype=ACC)
    for i in tl.static_range(K):
        count += ((t >> i) & 1).to(ACC)
    share = g / tl.where(m, count, 1)  # a real count of 0 (a NaN output) gives inf * 0 = NaN, as intersect
    for i in tl.static_range(K):
        dst = pick(i, G0, G1, G2, G3, G4, G5, G6, G7)
        tl.store(dst + offs, (share * ((t >> i) & 1).to(ACC)).to(dst.dtype.element_ty), mask=m)


def _tie_shares(op: str, grad: Tensor, ties: Tensor, k: int) -> List[Tensor]:
    """Each branch's follow-output gradient, stored (the GPU has no fused gather of them yet)."""
    check_ties(op, ties, grad)
    grad, ties = grad.contiguous(), ties.contiguous()
    gys = [torch.empty_like(grad) for _ in range(k)]
    n = grad.numel()
    if n > 0:
        launch(_tie_shares_kernel, lambda meta: (triton.cdiv(n, meta["BLOCK"]),),
            grad, ties, *padded(gys), n, K=k, ACC=acc_dtype(grad.dtype)
        )
    return gys


def _branch_grads(op: str, grad: Tensor, ties: Tensor, xs: List[Tensor], rs: List[Tensor], kb: List[Tensor]):
    """(xs, rs, E, B, the branch gradients from the tie mask), arguments checked."""
    xs, rs, E, B = _check(op, xs, rs, kb)
    check_matrix(op, "grad", grad, E, kb, batch=B)
    if grad.dtype != xs[0].dtype:
        raise RuntimeError(f"{op}(): grad must be [{E}, {B}] of the inputs' dtype")
    return xs, rs, E, B, _tie_shares(op, grad, ties, len(xs))


@kernel_op("follow_intersect_backward_x")
def follow_intersect_backward_x(
    grad: Tensor, ties: Tensor, xs: List[Tensor], rs: List[Tensor], kb: List[Tensor], inverse: bool
) -> List[Tensor]:
    xs, rs, E, B, gys = _branch_grads("follow_intersect_backward_x", grad, ties, xs, rs, kb)
    dxs = [gy.new_empty((E, B)) for gy in gys]
    errors = KernelErrors("follow_intersect_backward_x", grad.device)
    for gy, r, dx in zip(gys, rs, dxs):
        launch_pull(gy, r, kb, not inverse, dx, errors)
    errors.done()
    return dxs


@kernel_op("follow_intersect_backward_r")
def follow_intersect_backward_r(
    grad: Tensor, ties: Tensor, xs: List[Tensor], rs: List[Tensor], kb: List[Tensor], inverse: bool
) -> List[Tensor]:
    xs, rs, E, B, gys = _branch_grads("follow_intersect_backward_r", grad, ties, xs, rs, kb)
    drs = [gy.new_empty((num_relations(kb), B)) for gy in gys]
    errors = KernelErrors("follow_intersect_backward_r", grad.device)
    for gy, x, dr in zip(gys, xs, drs):
        # The forward reads x at subjects and writes at objects; inverse swaps them.
        launch_rel_reduction(gy if inverse else x, x if inverse else gy, kb, dr, errors)
    errors.done()
    return drs


@kernel_op("follow_intersect_backward")
def follow_intersect_backward(
    grad: Tensor, xs: List[Tensor], rs: List[Tensor], kb: List[Tensor], inverse: bool, tnorm: str
) -> List[Tensor]:
    """Without a tie mask (product, or min over more branches than a mask holds): the k follow
    outputs are recomputed and stored, then intersect's backward."""
    op = "follow_intersect_backward"
    xs, rs, E, B = _check(op, xs, rs, kb)
    check_matrix(op, "grad", grad, E, kb, batch=B)
    ys = []
    errors = KernelErrors(op, grad.device)
    for x, r in zip(xs, rs):
        y = x.new_empty((E, B))
        launch_pull(x, r, kb, inverse, y, errors)
        ys.append(y)
    errors.done()
    out = combine(op, ys, tnorm, False)
    return combine_backward(op, grad.contiguous(), ys, out, tnorm, False)
