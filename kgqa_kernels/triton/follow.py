"""Triton kernels of follow: the pull (forward, and dx in the other direction), dr as a two-pass
chunked reduction, and the push from a sparse frontier with its backward.

The KB's index orders (kgqa_kernels/kb.py, csrc/kb_layout.h) make every pass a pull over
contiguous segments, so each output element is written by one program: no atomics.
"""
from __future__ import annotations

from typing import List

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..kb import REL_CHUNK
from ._launch import kernel_op, launch, acc_dtype, batch_configs, degree_bucket

# Slots of the KB tensor list (csrc/kb_layout.h).
OBJ_PTR, SUBJ_PTR, REL_PTR, REL_SUBJ, REL_OBJ, REL_WEIGHT, REL_CHUNK_PTR, REL_CHUNK_REL = 0, 4, 8, 9, 10, 11, 12, 13


def pull_index(kb: List[Tensor], inverse: bool):
    """(ptr, col, rel, weight) of the pull into objects, or into subjects when ``inverse``."""
    base = SUBJ_PTR if inverse else OBJ_PTR
    return kb[base], kb[base + 1], kb[base + 2], kb[base + 3]


def num_entities(kb) -> int:
    return kb[OBJ_PTR].shape[0] - 1


def num_relations(kb) -> int:
    return kb[REL_PTR].shape[0] - 1


def check_matrix(op: str, name: str, t: Tensor, rows: int, kb, batch=None) -> None:
    if t.dim() != 2 or t.shape[0] != rows or (batch is not None and t.shape[1] != batch):
        want = f"[{rows}, {'B' if batch is None else batch}]"
        raise RuntimeError(f"{op}(): {name} must be {want}, got {list(t.shape)}")
    if t.device != kb[0].device:
        raise RuntimeError(f"{op}(): {name} is on {t.device}, the KB on {kb[0].device}")
    if not t.is_floating_point():
        raise RuntimeError(f"{op}(): {name} must be a floating tensor, got {t.dtype}")


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
    check_matrix("follow", "x", x, E, kb)
    check_matrix("follow", "r", r, num_relations(kb), kb, batch=x.shape[1])
    if r.dtype != x.dtype:
        raise RuntimeError(f"follow(): x and r must have one dtype, got {x.dtype} and {r.dtype}")
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
    chunks = kb[REL_CHUNK_REL].shape[0]
    acc = torch.float64 if a.dtype == torch.float64 else torch.float32
    partial = a.new_empty((chunks, B), dtype=acc)
    w = kb[REL_WEIGHT]
    has_w = w.numel() > 0
    if chunks > 0:
        launch(_rel_chunk_kernel, lambda meta: (chunks, triton.cdiv(B, meta["BLOCK_B"])),
            kb[REL_PTR], kb[REL_CHUNK_PTR], kb[REL_CHUNK_REL], kb[REL_SUBJ], kb[REL_OBJ], w if has_w else kb[REL_PTR],
            a, b, partial, B, CHUNK=REL_CHUNK, HAS_W=has_w, ACC=acc_dtype(a.dtype),
        )
    launch(_rel_reduce_kernel, lambda meta: (R, triton.cdiv(B, meta["BLOCK_B"])),
        kb[REL_CHUNK_PTR], partial, dr, B, ACC=acc_dtype(a.dtype),
    )


@kernel_op("follow_backward_r")
def follow_backward_r(x: Tensor, grad: Tensor, kb: List[Tensor], inverse: bool) -> Tensor:
    E = num_entities(kb)
    check_matrix("follow_backward_r", "x", x, E, kb)
    check_matrix("follow_backward_r", "grad", grad, E, kb, batch=x.shape[1])
    if grad.dtype != x.dtype:
        raise RuntimeError(f"follow_backward_r(): x and grad must have one dtype, got {x.dtype} and {grad.dtype}")
    x, grad = x.contiguous(), grad.contiguous()
    dr = x.new_empty((num_relations(kb), x.shape[1]))
    # The forward reads x at subjects and writes at objects; inverse swaps them.
    launch_rel_reduction(grad if inverse else x, x if inverse else grad, kb, dr)
    return dr


# ---- push from a sparse frontier: one program per example owns column b of the output -----------

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


def _check_frontier(op: str, ptr: Tensor, ids: Tensor, vals: Tensor, r: Tensor, kb: List[Tensor]) -> None:
    for name, t in (("ptr", ptr), ("ids", ids)):
        if t.dim() != 1 or t.dtype != torch.int64 or t.device != kb[0].device:
            raise RuntimeError(f"{op}(): {name} must be an int64 vector on {kb[0].device}")
    if ptr.shape[0] < 1:
        raise RuntimeError(f"{op}(): ptr must hold B + 1 offsets")
    if vals.dim() != 1 or vals.shape[0] != ids.shape[0]:
        raise RuntimeError(f"{op}(): vals must hold one weight per id")
    check_matrix(op, "r", r, num_relations(kb), kb, batch=ptr.shape[0] - 1)
    if r.dtype != vals.dtype:
        raise RuntimeError(f"{op}(): r must be [R, B] of the dtype of vals")


def _acc_like(t: Tensor) -> torch.dtype:
    return t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float32


@kernel_op("follow_push")
def follow_push(ptr: Tensor, ids: Tensor, vals: Tensor, r: Tensor, kb: List[Tensor], inverse: bool) -> Tensor:
    _check_frontier("follow_push", ptr, ids, vals, r, kb)
    B = ptr.shape[0] - 1
    y = vals.new_zeros((num_entities(kb), B), dtype=_acc_like(vals))
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
    _check_frontier("follow_push_backward", ptr, ids, vals, r, kb)
    B = ptr.shape[0] - 1
    check_matrix("follow_push_backward", "grad", grad, num_entities(kb), kb, batch=B)
    dvals = torch.empty_like(vals)
    dr = vals.new_zeros((num_relations(kb), B), dtype=_acc_like(vals))
    if B > 0:
        fptr, col, rel, w = pull_index(kb, not inverse)
        has_w = w.numel() > 0
        launch(_push_backward_kernel, (B,),
            ptr.contiguous(), ids.contiguous(), vals.contiguous(), fptr, col, rel, w if has_w else fptr,
            r.contiguous(), grad.contiguous(), dvals, dr, B, HAS_W=has_w, ACC=acc_dtype(vals.dtype),
        )
    return dvals, dr.to(vals.dtype)
