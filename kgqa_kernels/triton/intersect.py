"""Triton kernels of intersect and union (elementwise t-norms over k <= 8 same-shape tensors) and
their backward."""
from __future__ import annotations

from typing import List

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..checks import check_branch_count, common_layout
from ._launch import kernel_op, launch, acc_dtype, elementwise_configs, padded, pick

MIN, MAX, PRODUCT, PROBSUM = 0, 1, 2, 3  # PROBSUM: the union's 1 - prod(1 - x)
_TNORMS = {False: {"min": MIN, "product": PRODUCT}, True: {"max": MAX, "product": PROBSUM}}


@triton.jit
def nan_min(a, b):
    return tl.where((a < b) | (a != a), a, b)  # NaN wins, as torch.amin


@triton.jit
def nan_max(a, b):
    return tl.where((a > b) | (a != a), a, b)


@triton.jit
def _value(x, i: tl.constexpr, X0, X1, X2, X3, X4, X5, X6, X7, offs, m, OP: tl.constexpr, ACC: tl.constexpr):
    # What the t-norm multiplies or compares: x, or 1 - x for the probabilistic sum.
    v = tl.load(pick(i, X0, X1, X2, X3, X4, X5, X6, X7) + offs, mask=m, other=0).to(ACC)
    if OP == 3:
        v = 1 - v
    return v


@triton.autotune(configs=elementwise_configs(), key=["n"])
@triton.jit
def _combine_kernel(X0, X1, X2, X3, X4, X5, X6, X7, out, n, K: tl.constexpr, OP: tl.constexpr, ACC: tl.constexpr,
                    BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    v = _value(X0, 0, X0, X1, X2, X3, X4, X5, X6, X7, offs, m, OP, ACC)
    for i in tl.static_range(1, K):
        xi = _value(X0, i, X0, X1, X2, X3, X4, X5, X6, X7, offs, m, OP, ACC)
        if OP == 0:
            v = nan_min(v, xi)
        elif OP == 1:
            v = nan_max(v, xi)
        else:
            v = v * xi
    if OP == 3:
        v = 1 - v
    tl.store(out + offs, v.to(out.dtype.element_ty), mask=m)


@triton.autotune(configs=elementwise_configs(), key=["n"])
@triton.jit
def _combine_backward_kernel(X0, X1, X2, X3, X4, X5, X6, X7, D0, D1, D2, D3, D4, D5, D6, D7, grad, out, n,
                             K: tl.constexpr, OP: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    g = tl.load(grad + offs, mask=m, other=0).to(ACC)
    if OP <= 1:
        # Min/max: grad split evenly among the inputs equal to the output (torch's amin backward);
        # ties are decided in the input dtype, a NaN output has none and gives NaN.
        # (Compared after the exact widening to ACC: equal to comparing in the input dtype.)
        o = tl.load(out + offs, mask=m, other=0).to(ACC)
        count = tl.zeros([BLOCK], dtype=ACC)
        for i in tl.static_range(K):
            count += (tl.load(pick(i, X0, X1, X2, X3, X4, X5, X6, X7) + offs, mask=m, other=0).to(ACC) == o).to(ACC)
        share = g / tl.where(m, count, 1)
        for i in tl.static_range(K):
            hit = (tl.load(pick(i, X0, X1, X2, X3, X4, X5, X6, X7) + offs, mask=m, other=0).to(ACC) == o).to(ACC)
            dst = pick(i, D0, D1, D2, D3, D4, D5, D6, D7)
            tl.store(dst + offs, (share * hit).to(dst.dtype.element_ty), mask=m)
    else:
        # Products: d/dx_i = prod over j != i (no division, so zeros are exact); k <= 8 reloads.
        for i in tl.static_range(K):
            d = g
            for j in tl.static_range(K):
                if j != i:
                    d = d * _value(X0, j, X0, X1, X2, X3, X4, X5, X6, X7, offs, m, OP, ACC)
            dst = pick(i, D0, D1, D2, D3, D4, D5, D6, D7)
            tl.store(dst + offs, d.to(dst.dtype.element_ty), mask=m)


def parse_tnorm(op: str, tnorm: str, is_union: bool) -> int:
    table = _TNORMS[is_union]
    if tnorm not in table:
        raise RuntimeError(f"{op}(): tnorm must be {' or '.join(repr(k) for k in table)}, got {tnorm!r}")
    return table[tnorm]


def _grid(n):
    return lambda meta: (triton.cdiv(n, meta["BLOCK"]),)


def combine(op: str, xs: List[Tensor], tnorm: str, is_union: bool) -> Tensor:
    code = parse_tnorm(op, tnorm, is_union)
    xs = common_layout(op, xs)
    check_branch_count(f"{op}()", "triton", len(xs))
    out = torch.empty_like(xs[0])
    n = out.numel()
    if n > 0:
        launch(_combine_kernel, _grid(n), *padded(xs), out, n, K=len(xs), OP=code, ACC=acc_dtype(out.dtype))
    return out


def combine_backward(op: str, grad: Tensor, xs: List[Tensor], out: Tensor, tnorm: str, is_union: bool) -> List[Tensor]:
    code = parse_tnorm(op, tnorm, is_union)
    *xs, out, grad = common_layout(op, list(xs) + [out, grad])
    check_branch_count(f"{op}()", "triton", len(xs))
    dxs = [torch.empty_like(x) for x in xs]
    n = out.numel()
    if n > 0:
        launch(_combine_backward_kernel, _grid(n),
            *padded(xs), *padded(dxs), grad, out, n, K=len(xs), OP=code, ACC=acc_dtype(out.dtype)
        )
    return dxs


@kernel_op("intersect")
def intersect(xs: List[Tensor], tnorm: str) -> Tensor:
    return combine("intersect", xs, tnorm, False)


@kernel_op("union")
def union(xs: List[Tensor], tnorm: str) -> Tensor:
    return combine("union", xs, tnorm, True)


@kernel_op("intersect_backward")
def intersect_backward(grad: Tensor, xs: List[Tensor], out: Tensor, tnorm: str) -> List[Tensor]:
    return combine_backward("intersect_backward", grad, xs, out, tnorm, False)


@kernel_op("union_backward")
def union_backward(grad: Tensor, xs: List[Tensor], out: Tensor, tnorm: str) -> List[Tensor]:
    return combine_backward("union_backward", grad, xs, out, tnorm, True)
