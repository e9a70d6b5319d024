"""Triton kernels of count and its backward. One program per example sums its column of x [E, B]
in blocks of a fixed width (no autotuning of the width, no atomics), so the result never depends on
the launch: deterministic."""
from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from ..checks import check_raw_count_grad, check_raw_set
from ._launch import acc_dtype, elementwise_configs, kernel_op, launch

# Entities one program adds per step, a lane each; the lanes are added at the end (tl.sum's fixed
# tree). Fixed, not tuned: the order of a sum depends on it.
BLOCK_E = 1024


@triton.jit
def _count_kernel(x, se, sb, E, y, ACC: tl.constexpr, BLOCK_E: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    lanes = tl.arange(0, BLOCK_E).to(tl.int64)
    acc = tl.zeros([BLOCK_E], dtype=ACC)
    for e0 in range(0, E, BLOCK_E):
        e = e0 + lanes
        acc += tl.load(x + e * se + b * sb, mask=e < E, other=0).to(ACC)
    tl.store(y + b, tl.sum(acc, axis=0).to(y.dtype.element_ty))


@triton.autotune(configs=elementwise_configs(), key=["n"])
@triton.jit
def _count_backward_kernel(grad, gs, B, n, dx, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    tl.store(dx + offs, tl.load(grad + (offs % B) * gs, mask=m, other=0), mask=m)


@kernel_op("count")
def count(x: Tensor) -> Tensor:
    check_raw_set("count", x)
    E, B = x.shape
    y = x.new_empty((B,))
    if B > 0:
        launch(_count_kernel, (B,), x, x.stride(0), x.stride(1), E, y, ACC=acc_dtype(x.dtype), BLOCK_E=BLOCK_E)
    return y


@kernel_op("count_backward")
def count_backward(grad: Tensor, x: Tensor) -> Tensor:
    check_raw_count_grad("count_backward", grad, x)
    E, B = x.shape
    dx = x.new_empty((E, B))
    n = E * B
    if n > 0:
        launch(_count_backward_kernel, lambda meta: (triton.cdiv(n, meta["BLOCK"]),), grad, grad.stride(0), B, n, dx)
    return dx
