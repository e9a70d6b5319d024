"""Triton kernels of follow: the pull (forward, and dx in the other direction) and dr as a two-pass
chunked reduction (the push from a sparse frontier is kgqa_kernels/triton/follow_push.py).

The KB's index orders (kgqa_kernels/kb.py, csrc/kb_layout.h) make every pass a pull over
contiguous segments, so each output element is written by one program: no atomics.
"""
from __future__ import annotations

from typing import List

import torch
import triton
import triton.language as tl
from torch import Tensor

from .. import layout
from ..checks import check_pull_operands, kb_num_entities as num_entities, kb_num_relations as num_relations
from ._launch import kernel_op, launch, acc_dtype, batch_configs, degree_bucket


def pull_index(kb: List[Tensor], inverse: bool):
    """(ptr, col, rel, weight) of the pull into objects, or into subjects when ``inverse``."""
    return tuple(kb[slot] for slot in layout.pull_slots(inverse))


@triton.jit
def pull_row(ptr, col, rel, w, x, r, row, bs, bm, B, HAS_W: tl.constexpr, ACC: tl.constexpr, BLOCK_B: tl.constexpr):
    """sum over the facts f of segment ``row`` of r[rel[f], bs] * (w[f] * x[col[f], bs]), in fact order."""
    acc = tl.zeros([BLOCK_B], dtype=ACC)
    for f in range(tl.load(ptr + row), tl.load(ptr + row + 1)):
        s = tl.load(col + f).to(tl.int64)
        p = tl.load(rel + f).to(tl.int64)
        xv = tl.load(x + s * B + bs, mask=bm, other=0).to(ACC)
        if HAS_W:
            xv = xv * tl.load(w + f).to(ACC)
        acc += tl.load(r + p * B + bs, mask=bm, other=0).to(ACC) * xv
    return acc


@triton.autotune(configs=batch_configs(), key=["B", "DEG"])
@triton.jit
def _pull_kernel(ptr, col, rel, w, x, r, y, B, DEG, HAS_W: tl.constexpr, ACC: tl.constexpr, BLOCK_B: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    bs = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = bs < B
    acc = pull_row(ptr, col, rel, w, x, r, row, bs, bm, B, HAS_W, ACC, BLOCK_B)
    tl.store(y + row * B + bs, acc.to(y.dtype.element_ty), mask=bm)


def launch_pull(x: Tensor, r: Tensor, kb: List[Tensor], inverse: bool, y: Tensor) -> None:
    """y [E, B] = the pull of x [E, B] through r [R, B]; x, r, y contiguous."""
    E, B = y.shape
    if E == 0 or B == 0:
        return
    ptr, col, rel, w = pull_index(kb, inverse)
    has_w = w.numel() > 0
    launch(_pull_kernel, lambda meta: (E, triton.cdiv(B, meta["BLOCK_B"])),
        ptr, col, rel, w if has_w else ptr, x, r, y, B, degree_bucket(col.shape[0], E),
        HAS_W=has_w, ACC=acc_dtype(x.dtype),
    )


@kernel_op("follow")
def follow(x: Tensor, r: Tensor, kb: List[Tensor], inverse: bool) -> Tensor:
    E = num_entities(kb)
    check_pull_operands("follow", x, "x", E, r, "r", num_relations(kb), kb)
    y = x.new_empty((E, x.shape[1]))
    launch_pull(x.contiguous(), r.contiguous(), kb, inverse, y)
    return y


@triton.autotune(configs=batch_configs(), key=["B"])
@triton.jit
def _rel_chunk_kernel(relptr, chunk_ptr, chunk_rel, subj, obj, w, a, b, partial, B, CHUNK: tl.constexpr,
                      HAS_W: tl.constexpr, ACC: tl.constexpr, BLOCK_B: tl.constexpr):
    # partial[c, b] = sum over the facts (s, p, o) of chunk c of a[s, b] * w * b[o, b].
    c = tl.program_id(0).to(tl.int64)
    bs = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = bs < B
    p = tl.load(chunk_rel + c)
    begin = tl.load(relptr + p) + (c - tl.load(chunk_ptr + p)) * CHUNK
    end = tl.minimum(begin + CHUNK, tl.load(relptr + p + 1))
    acc = tl.zeros([BLOCK_B], dtype=ACC)
    for f in range(begin, end):
        s = tl.load(subj + f).to(tl.int64)
        o = tl.load(obj + f).to(tl.int64)
        bv = tl.load(b + o * B + bs, mask=bm, other=0).to(ACC)
        if HAS_W:
            bv = bv * tl.load(w + f).to(ACC)
        acc += tl.load(a + s * B + bs, mask=bm, other=0).to(ACC) * bv
    tl.store(partial + c * B + bs, acc, mask=bm)


@triton.autotune(configs=batch_configs(), key=["B"])
@triton.jit
def _rel_reduce_kernel(chunk_ptr, partial, dr, B, ACC: tl.constexpr, BLOCK_B: tl.constexpr):
    # dr[p, b] = the sum of relation p's chunk partials, in chunk order (fixed by the KB).
    p = tl.program_id(0).to(tl.int64)
    bs = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = bs < B
    acc = tl.zeros([BLOCK_B], dtype=ACC)
    for c in range(tl.load(chunk_ptr + p), tl.load(chunk_ptr + p + 1)):
        acc += tl.load(partial + c * B + bs, mask=bm, other=0)
    tl.store(dr + p * B + bs, acc.to(dr.dtype.element_ty), mask=bm)


def launch_rel_reduction(a: Tensor, b: Tensor, kb: List[Tensor], dr: Tensor) -> None:
    """dr [R, B] = sum over facts (s, p, o) of a[s] * w * b[o] into row p; a, b [E, B] contiguous."""
    R, B = dr.shape
    if R == 0 or B == 0:
        return
    chunks = kb[layout.REL_CHUNK_REL].shape[0]
    acc = torch.float64 if a.dtype == torch.float64 else torch.float32
    partial = a.new_empty((chunks, B), dtype=acc)
    w = kb[layout.REL_WEIGHT]
    has_w = w.numel() > 0
    if chunks > 0:
        launch(_rel_chunk_kernel, lambda meta: (chunks, triton.cdiv(B, meta["BLOCK_B"])),
            kb[layout.REL_PTR], kb[layout.REL_CHUNK_PTR], kb[layout.REL_CHUNK_REL], kb[layout.REL_SUBJ], kb[layout.REL_OBJ], w if has_w else kb[layout.REL_PTR],
            a, b, partial, B, CHUNK=layout.REL_CHUNK, HAS_W=has_w, ACC=acc_dtype(a.dtype),
        )
    launch(_rel_reduce_kernel, lambda meta: (R, triton.cdiv(B, meta["BLOCK_B"])),
        kb[layout.REL_CHUNK_PTR], partial, dr, B, ACC=acc_dtype(a.dtype),
    )


@kernel_op("follow_backward_r")
def follow_backward_r(x: Tensor, grad: Tensor, kb: List[Tensor], inverse: bool) -> Tensor:
    E = num_entities(kb)
    check_pull_operands("follow_backward_r", x, "x", E, grad, "grad", E, kb)
    x, grad = x.contiguous(), grad.contiguous()
    dr = x.new_empty((num_relations(kb), x.shape[1]))
    # The forward reads x at subjects and writes at objects; inverse swaps them.
    launch_rel_reduction(grad if inverse else x, x if inverse else grad, kb, dr)
    return dr
