"""Triton kernels of follow_intersect: k <= 8 pulls combined by a t-norm row by row (the k follow
outputs never exist), the min's tie mask, and the backwards from it and without it. The pulls run
on the work plan of csrc/work_plan.h (work_plan.py): pass 1 sums all k branches of each row in one
walk over its facts, and what a kernel does with a row's k sums is its finish, called by pass 1
for the rows a worker holds whole and by the fixup for the rows it split."""
from __future__ import annotations

from typing import List

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..checks import check_matrix, check_raw_branches, check_ties, kb_num_relations as num_relations
from ._launch import KernelErrors, kernel_op, launch, acc_dtype, batch_configs, elementwise_configs, padded, pick
from .follow import launch_pull, launch_rel_reduction, planned_pull_args
from .intersect import PRODUCT as PRODUCT_TNORM, parse_tnorm
from .work_plan import FACT_BLOCK, branch_tile, fixup_sums, last_row, program_tiles, row_sums


@triton.jit
def _intersect_finish(out, ties, row, s, bs, m, B, K: tl.constexpr, PRODUCT: tl.constexpr,
                      SAVE_TIES: tl.constexpr, ACC: tl.constexpr, BLOCK_B: tl.constexpr):
    """follow_intersect's finish (IntersectFinish): the row's k branch sums combined by the t-norm,
    and the min's tie mask."""
    v = tl.zeros([BLOCK_B], dtype=ACC)
    tied = tl.zeros([BLOCK_B], dtype=tl.int32)
    for i in tl.static_range(K):
        y = tl.reshape(tl.gather(s, tl.full([1, BLOCK_B], i, tl.int32), 0), [BLOCK_B])  # branch i's sum
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
                v = tl.where((v < y) | (v != v), v, y)  # nan_min, inline: a jit call costs the interpreter
    tl.store(out + row * B + bs, v.to(out.dtype.element_ty), mask=m)
    if SAVE_TIES:
        tl.store(ties + row * B + bs, tl.where(v != v, 0, tied).to(tl.uint8), mask=m)  # NaN ties nothing


@triton.jit
def _backward_finish(grad, GP, row, s, kid, km, bs, m, B, K: tl.constexpr, KP: tl.constexpr, PRODUCT: tl.constexpr,
                     ACC: tl.constexpr, BLOCK_B: tl.constexpr):
    """follow_intersect backward's finish without a tie mask (IntersectBackwardFinish): each
    branch's follow-output gradient from the row's k sums, as intersect's backward
    (intersect._combine_backward_kernel) gives it from the follow outputs stored in the dtype; all
    branches at once (GP: the [KP, BLOCK_B] pointer tile of their gradients at columns bs)."""
    DT: tl.constexpr = grad.dtype.element_ty
    e = row * B + bs
    g = tl.load(grad + e, mask=m, other=0).to(ACC)
    ys = s.to(DT).to(ACC)  # the follow outputs as stored in the dtype
    if PRODUCT:
        # d/dy_i = grad * prod over j != i of y_j, in branch order.
        d = tl.broadcast_to(g[None, :], (KP, BLOCK_B))
        for j in tl.static_range(K):
            d = tl.where(kid == j, d, d * tl.gather(ys, tl.full([1, BLOCK_B], j, tl.int32), 0))
    else:
        # Min: grad split evenly among the branches equal to the output (the minimum of values in
        # the dtype is one of them, so comparing in ACC is comparing in the dtype); a NaN output has
        # none and gives NaN.
        v = tl.reshape(tl.gather(ys, tl.full([1, BLOCK_B], 0, tl.int32), 0), [BLOCK_B])
        for i in tl.static_range(1, K):
            y = tl.reshape(tl.gather(ys, tl.full([1, BLOCK_B], i, tl.int32), 0), [BLOCK_B])
            v = tl.where((v < y) | (v != v), v, y)  # nan_min, inline: a jit call costs the interpreter
        hits = (ys == v.to(DT).to(ACC)[None, :]).to(ACC)
        count = tl.zeros([BLOCK_B], dtype=ACC)
        for i in tl.static_range(K):
            count += tl.reshape(tl.gather(hits, tl.full([1, BLOCK_B], i, tl.int32), 0), [BLOCK_B])
        d = (g / tl.where(m, count, 1))[None, :] * hits
    tl.store(GP + row * B, d.to(DT), mask=km & m[None, :])


@triton.autotune(configs=batch_configs(), key=["B"])
@triton.jit
def _follow_intersect_kernel(ptr, col, rel, wt, X0, X1, X2, X3, X4, X5, X6, X7, R0, R1, R2, R3, R4, R5, R6, R7,
                             out, ties, carry, B, E, R, FACTS, PTR_SLOT, err, K: tl.constexpr, KP: tl.constexpr,
                             STEPS: tl.constexpr, FACT_BLOCK: tl.constexpr, PRODUCT: tl.constexpr,
                             SAVE_TIES: tl.constexpr, HAS_W: tl.constexpr, ACC: tl.constexpr, BLOCK_B: tl.constexpr):
    w, bs, bm, B, kid, km, fi, row0, fact0, row1, fact1 = program_tiles(ptr, E, FACTS, B, K, KP, STEPS, FACT_BLOCK,
                                                                     BLOCK_B)
    XP = branch_tile(kid, K, X0, X1, X2, X3, X4, X5, X6, X7) + bs[None, :]
    RP = branch_tile(kid, K, R0, R1, R2, R3, R4, R5, R6, R7) + bs[None, :]
    for row in range(row0, last_row(row1, E) + 1):
        s, whole = row_sums(ptr, col, rel, wt, XP, RP, carry, row, w, row0, fact0, row1, fact1, kid, bs, km, fi, B, E,
                            R, FACTS, PTR_SLOT, err, K, KP, FACT_BLOCK, HAS_W, ACC, BLOCK_B)
        if whole:
            _intersect_finish(out, ties, row, s, bs, bm, B, K, PRODUCT, SAVE_TIES, ACC, BLOCK_B)


@triton.autotune(configs=batch_configs(), key=["B"])
@triton.jit
def _follow_intersect_fixup_kernel(ptr, carry, out, ties, B, E, FACTS, K: tl.constexpr, KP: tl.constexpr,
                                   STEPS: tl.constexpr, PRODUCT: tl.constexpr, SAVE_TIES: tl.constexpr,
                                   ACC: tl.constexpr, BLOCK_B: tl.constexpr):
    w, bs, bm, B, kid, km, _, row0, fact0, row1, _ = program_tiles(ptr, E, FACTS, B, K, KP, STEPS, 1, BLOCK_B)
    row, s, needed = fixup_sums(ptr, carry, w, E, row0, fact0, row1, kid, bs, km, B, K, ACC)
    if needed:
        _intersect_finish(out, ties, row, s, bs, bm, B, K, PRODUCT, SAVE_TIES, ACC, BLOCK_B)


@triton.autotune(configs=batch_configs(), key=["B"])
@triton.jit
def _follow_intersect_backward_kernel(ptr, col, rel, wt, X0, X1, X2, X3, X4, X5, X6, X7, R0, R1, R2, R3, R4, R5,
                                      R6, R7, grad, G0, G1, G2, G3, G4, G5, G6, G7, carry, B, E, R, FACTS, PTR_SLOT,
                                      err, K: tl.constexpr, KP: tl.constexpr, STEPS: tl.constexpr,
                                      FACT_BLOCK: tl.constexpr, PRODUCT: tl.constexpr, HAS_W: tl.constexpr,
                                      ACC: tl.constexpr, BLOCK_B: tl.constexpr):
    w, bs, bm, B, kid, km, fi, row0, fact0, row1, fact1 = program_tiles(ptr, E, FACTS, B, K, KP, STEPS, FACT_BLOCK,
                                                                     BLOCK_B)
    XP = branch_tile(kid, K, X0, X1, X2, X3, X4, X5, X6, X7) + bs[None, :]
    RP = branch_tile(kid, K, R0, R1, R2, R3, R4, R5, R6, R7) + bs[None, :]
    GP = branch_tile(kid, K, G0, G1, G2, G3, G4, G5, G6, G7) + bs[None, :]
    for row in range(row0, last_row(row1, E) + 1):
        s, whole = row_sums(ptr, col, rel, wt, XP, RP, carry, row, w, row0, fact0, row1, fact1, kid, bs, km, fi, B, E,
                            R, FACTS, PTR_SLOT, err, K, KP, FACT_BLOCK, HAS_W, ACC, BLOCK_B)
        if whole:
            _backward_finish(grad, GP, row, s, kid, km, bs, bm, B, K, KP, PRODUCT, ACC, BLOCK_B)


@triton.autotune(configs=batch_configs(), key=["B"])
@triton.jit
def _follow_intersect_backward_fixup_kernel(ptr, carry, grad, G0, G1, G2, G3, G4, G5, G6, G7, B, E, FACTS,
                                            K: tl.constexpr, KP: tl.constexpr, STEPS: tl.constexpr,
                                            PRODUCT: tl.constexpr, ACC: tl.constexpr, BLOCK_B: tl.constexpr):
    w, bs, bm, B, kid, km, _, row0, fact0, row1, _ = program_tiles(ptr, E, FACTS, B, K, KP, STEPS, 1, BLOCK_B)
    row, s, needed = fixup_sums(ptr, carry, w, E, row0, fact0, row1, kid, bs, km, B, K, ACC)
    if needed:
        GP = branch_tile(kid, K, G0, G1, G2, G3, G4, G5, G6, G7) + bs[None, :]
        _backward_finish(grad, GP, row, s, kid, km, bs, bm, B, K, KP, PRODUCT, ACC, BLOCK_B)


def _planned(kb: List[Tensor], inverse: bool, k: int, B: int, dtype: torch.dtype, device):
    """follow's planned_pull_args, with the branch count and its power of two among the constexprs."""
    index, bounds, carry, grid, meta, has_w = planned_pull_args(kb, inverse, k, B, dtype, device)
    return index, bounds, carry, grid, dict(meta, K=k, KP=triton.next_power_of_2(k)), has_w


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
        index, bounds, carry, grid, meta, has_w = _planned(kb, inverse, len(xs), B, out.dtype, out.device)
        errors = KernelErrors("follow_intersect", out.device)
        modes = dict(PRODUCT=tnorm == "product", SAVE_TIES=save_ties)
        ties_or_out = ties if save_ties else out
        launch(_follow_intersect_kernel, grid, *index, *padded(xs), *padded(rs), out, ties_or_out, carry, B, *bounds,
               errors.flag, FACT_BLOCK=FACT_BLOCK, HAS_W=has_w, **meta, **modes)
        launch(_follow_intersect_fixup_kernel, grid, index[0], carry, out, ties_or_out, B, E, index[1].shape[0],
               **meta, **modes)
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
    outputs are recomputed on the work plan and, row by row, turned into each branch's output
    gradient as intersect's backward does (the follow outputs never exist)."""
    op = "follow_intersect_backward"
    xs, rs, E, B = _check(op, xs, rs, kb)
    check_matrix(op, "grad", grad, E, kb, batch=B)
    code = parse_tnorm(op, tnorm, False)
    if grad.dtype != xs[0].dtype:
        raise RuntimeError(f"{op}(): grad must be [{E}, {B}] of the inputs' dtype")
    grad = grad.contiguous()
    gys = [torch.empty_like(grad) for _ in xs]
    if E > 0 and B > 0:
        index, bounds, carry, grid, meta, has_w = _planned(kb, inverse, len(xs), B, grad.dtype, grad.device)
        errors = KernelErrors(op, grad.device)
        launch(_follow_intersect_backward_kernel, grid, *index, *padded(xs), *padded(rs), grad, *padded(gys), carry,
               B, *bounds, errors.flag, FACT_BLOCK=FACT_BLOCK, PRODUCT=code == PRODUCT_TNORM, HAS_W=has_w,
               **meta)
        launch(_follow_intersect_backward_fixup_kernel, grid, index[0], carry, grad, *padded(gys), B, E,
               index[1].shape[0], PRODUCT=code == PRODUCT_TNORM, **meta)
        errors.done()
    return gys
