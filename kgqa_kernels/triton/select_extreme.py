"""Triton kernels of select_extreme and its backward, the arithmetic of ExtremeRows
(csrc/select_extreme.h): a valid member has x > 0 and a finite value, the best is the largest
s * value over the valid members, and its first entity in index order carries the gradient that
moves the best. One program per example scans its column of x [E, B] in blocks of a fixed width;
the backward's row sum and a shared values' sum over the batch run in a fixed order (no atomics,
no tuned widths): deterministic."""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..checks import check_raw_extreme
from ._launch import acc_dtype, kernel_op, launch

BLOCK_E = 1024  # entities per step of a program; fixed (a sum's order depends on it)


@triton.jit
def _keys(x, xe, xb, v, ve, vb, e, b, E, SIGN: tl.constexpr, ACC: tl.constexpr):
    """(x, s * value, valid) of entities e of example b (valid: in range, x > 0, value finite)."""
    m = e < E
    xv = tl.load(x + e * xe + b * xb, mask=m, other=0).to(ACC)
    k = tl.load(v + e * ve + b * vb, mask=m, other=0).to(ACC) * SIGN
    return xv, k, m & (xv > 0) & (k - k == 0)


@triton.jit
def _best(x, xe, xb, v, ve, vb, b, E, SIGN: tl.constexpr, ACC: tl.constexpr, BLOCK_E: tl.constexpr):
    """Example b's best key and the first entity that has it (-inf and 2**62 if none)."""
    lanes = tl.arange(0, BLOCK_E).to(tl.int64)
    best = tl.full([BLOCK_E], float("-inf"), ACC)
    first = tl.full([BLOCK_E], 2**62, tl.int64)
    for e0 in range(0, E, BLOCK_E):
        e = e0 + lanes
        xv, k, ok = _keys(x, xe, xb, v, ve, vb, e, b, E, SIGN, ACC)
        better = ok & ((first == 2**62) | (k > best))  # a lane sees its entities in order: keeps the first
        best = tl.where(better, k, best)
        first = tl.where(better, e, first)
    top = tl.max(best, axis=0)
    return top, tl.min(tl.where((best == top) & (first != 2**62), first, 2**62), axis=0)


@triton.jit
def _factor(k, ok, top, T, SOFT: tl.constexpr):
    if SOFT:
        f = tl.exp(tl.where(ok, k - top, 0) / T)
    else:
        f = (k == top).to(k.dtype)
    return tl.where(ok, f, 0)


@triton.jit
def _select_kernel(x, xe, xb, v, ve, vb, y, E, B, T, SIGN: tl.constexpr, SOFT: tl.constexpr, ACC: tl.constexpr,
                   BLOCK_E: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    top, _ = _best(x, xe, xb, v, ve, vb, b, E, SIGN, ACC, BLOCK_E)
    lanes = tl.arange(0, BLOCK_E).to(tl.int64)
    for e0 in range(0, E, BLOCK_E):
        e = e0 + lanes
        xv, k, ok = _keys(x, xe, xb, v, ve, vb, e, b, E, SIGN, ACC)
        f = _factor(k, ok, top, T, SOFT)
        tl.store(y + e * B + b, tl.where(f == 0, 0, xv * f).to(y.dtype.element_ty), mask=e < E)


@triton.jit
def _select_backward_kernel(x, xe, xb, v, ve, vb, grad, ge, gb, dx, dv, top_out, first_out, sum_out, E, B, T,
                            SIGN: tl.constexpr, SOFT: tl.constexpr, ROW_DV: tl.constexpr, ACC: tl.constexpr,
                            BLOCK_E: tl.constexpr):
    """dx = grad * factor; with ROW_DV (values [E, B], soft) also dv; else each example's best, first
    best entity and sum of grad * y for _shared_dv_kernel."""
    b = tl.program_id(0).to(tl.int64)
    top, first = _best(x, xe, xb, v, ve, vb, b, E, SIGN, ACC, BLOCK_E)
    lanes = tl.arange(0, BLOCK_E).to(tl.int64)
    total = tl.zeros([BLOCK_E], dtype=ACC)
    for e0 in range(0, E, BLOCK_E):
        e = e0 + lanes
        xv, k, ok = _keys(x, xe, xb, v, ve, vb, e, b, E, SIGN, ACC)
        f = _factor(k, ok, top, T, SOFT)
        g = tl.load(grad + e * ge + b * gb, mask=e < E, other=0).to(ACC)
        tl.store(dx + e * B + b, (g * f).to(dx.dtype.element_ty), mask=e < E)
        total += g * tl.where(f == 0, 0, xv * f)
    s = tl.sum(total, axis=0)
    tl.store(top_out + b, top)
    tl.store(first_out + b, first)
    tl.store(sum_out + b, s)
    if ROW_DV:
        for e0 in range(0, E, BLOCK_E):
            e = e0 + lanes
            xv, k, ok = _keys(x, xe, xb, v, ve, vb, e, b, E, SIGN, ACC)
            f = _factor(k, ok, top, T, SOFT)
            g = tl.load(grad + e * ge + b * gb, mask=e < E, other=0).to(ACC)
            gy = g * tl.where(f == 0, 0, xv * f)
            d = SIGN / T * (gy - tl.where(e == first, s, 0))
            tl.store(dv + e * B + b, d.to(dv.dtype.element_ty), mask=e < E)


@triton.jit
def _shared_dv_kernel(x, xe, xb, v, ve, grad, ge, gb, dv, top_in, first_in, sum_in, E, B, T, SIGN: tl.constexpr,
                      ACC: tl.constexpr, BLOCK_E: tl.constexpr):
    """values [E]: dv[e] = the sum over the examples, in batch order, of their gradients."""
    e = tl.program_id(0).to(tl.int64) * BLOCK_E + tl.arange(0, BLOCK_E).to(tl.int64)
    acc = tl.zeros([BLOCK_E], dtype=ACC)
    for b in range(0, B):
        top = tl.load(top_in + b)
        first = tl.load(first_in + b)
        s = tl.load(sum_in + b)
        xv, k, ok = _keys(x, xe, xb, v, ve, 0, e, b, E, SIGN, ACC)
        f = _factor(k, ok, top, T, True)
        g = tl.load(grad + e * ge + b * gb, mask=e < E, other=0).to(ACC)
        acc += SIGN / T * (g * tl.where(f == 0, 0, xv * f) - tl.where(e == first, s, 0))
    tl.store(dv + e, acc.to(dv.dtype.element_ty), mask=e < E)


def _value_strides(values: Tensor):
    return values.stride(0), (values.stride(1) if values.dim() == 2 else 0)


@kernel_op("select_extreme")
def select_extreme(x: Tensor, values: Tensor, minimum: bool, temperature: float) -> Tensor:
    check_raw_extreme("select_extreme", x, values, temperature)
    E, B = x.shape
    y = x.new_empty((E, B))
    if E > 0 and B > 0:
        launch(_select_kernel, (B,), x, x.stride(0), x.stride(1), values, *_value_strides(values), y, E, B,
               temperature, SIGN=-1.0 if minimum else 1.0, SOFT=temperature > 0, ACC=acc_dtype(x.dtype),
               BLOCK_E=BLOCK_E)
    return y


@kernel_op("select_extreme_backward")
def select_extreme_backward(grad: Tensor, x: Tensor, values: Tensor, minimum: bool, temperature: float,
                            need_values: bool) -> tuple[Tensor, Tensor]:
    check_raw_extreme("select_extreme_backward", x, values, temperature, grad)
    E, B = x.shape
    dx = x.new_empty((E, B))
    soft, shared = temperature > 0, values.dim() == 1
    dv = values.new_zeros(tuple(values.shape)) if need_values else values.new_empty((0,))
    if E == 0 or B == 0:
        return dx, dv
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    top, s = x.new_empty((B,), dtype=acc), x.new_empty((B,), dtype=acc)
    first = x.new_empty((B,), dtype=torch.int64)
    sign = -1.0 if minimum else 1.0
    with_dv = need_values and soft
    args = (x, x.stride(0), x.stride(1), values, *_value_strides(values), grad, grad.stride(0), grad.stride(1))
    launch(_select_backward_kernel, (B,), *args, dx, dv if with_dv and not shared else dx, top, first, s, E, B,
           temperature if soft else 1.0, SIGN=sign, SOFT=soft, ROW_DV=with_dv and not shared, ACC=acc_dtype(x.dtype),
           BLOCK_E=BLOCK_E)
    if with_dv and shared:
        launch(_shared_dv_kernel, (triton.cdiv(E, BLOCK_E),), x, x.stride(0), x.stride(1), values, values.stride(0),
               grad, grad.stride(0), grad.stride(1), dv, top, first, s, E, B, temperature, SIGN=sign,
               ACC=acc_dtype(x.dtype), BLOCK_E=BLOCK_E)
    return dx, dv
