"""Triton kernels of follow_max (follow's reduce="max" | "min") and its backward, with the passes of
csrc/cpu/follow_max.cpp: one program per (row, block of the batch) walks its row's facts; the
backward finds each row's best term and its ties again (in the accumulation type), then sends the
gradient share to the winning facts in a pull for dx, dr's chunked reduction and one program per
subject for dw. The per-fact arithmetic is MaxTerm's (csrc/follow_max.h): r * (w * x) or
(x + r) + w, NaN wins and stays, a tie counts once more.
"""
from __future__ import annotations

from typing import List

import torch
import triton
import triton.language as tl
from torch import Tensor

from .. import layout
from ..checks import check_pull_operands, kb_num_entities as num_entities, kb_num_relations as num_relations
from ._launch import KernelErrors, acc_dtype, batch_configs, fact_ids, kernel_op, launch, report, segment
from .follow import _rel_reduce_kernel, chunk_fact_ids, chunk_facts, pull_bounds, pull_index


@triton.jit
def _term(xv, rv, w, ADD: tl.constexpr):
    if ADD:
        return (xv + rv) + w
    else:
        return rv * (w * xv)


@triton.jit
def _winning_share(t, d_term, best, share, dst, B, bs, m):
    """share[dst] * d_term where the fact's term t equals best[dst] (it wins there), else 0: the
    gradient a fact takes from destination row dst, per batch column."""
    won = m & (t == tl.load(best + dst * B + bs, mask=m, other=0))
    return tl.where(won, tl.load(share + dst * B + bs, mask=m, other=0) * d_term, 0.0)


@triton.jit
def _d_term(a, b, ADD: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr):
    """A term's derivative in one operand (MaxTerm::d_x, d_r, d_w): 1 for a sum, else the product
    a * b of the other two."""
    if ADD:
        return tl.full([BLOCK], 1.0, ACC)
    else:
        return a * b


@triton.jit
def _fact_weight(wt, f, HAS_W: tl.constexpr, ACC: tl.constexpr):
    if HAS_W:
        return tl.load(wt + f).to(ACC)
    else:
        return tl.full([], 1.0, ACC)


@triton.autotune(configs=batch_configs(), key=["B"])
@triton.jit
def _max_rows_kernel(ptr, col, rel, wt, x, r, y, grad, best_out, share_out, B, E, R, FACTS, PTR_SLOT, err,
                     MINIMUM: tl.constexpr, ADD: tl.constexpr, HAS_W: tl.constexpr, BACKWARD: tl.constexpr,
                     ACC: tl.constexpr, BLOCK_B: tl.constexpr):
    # MaxRowKernel (csrc/cuda/follow_max.cuh): y = the best term of the row, 0 without facts; in the
    # backward, the best and grad / ties instead.
    row = tl.program_id(0).to(tl.int64)
    bs = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = bs < B
    begin, end = segment(ptr, row, FACTS, err, PTR_SLOT + 1)
    if MINIMUM:
        best = tl.full([BLOCK_B], float("inf"), ACC)
    else:
        best = tl.full([BLOCK_B], float("-inf"), ACC)
    ties = tl.zeros([BLOCK_B], dtype=ACC)
    for f in range(begin, end):
        c, p, ok = fact_ids(col, rel, f, E, R, err, PTR_SLOT)
        m = bm & ok
        xv = tl.load(x + c * B + bs, mask=m, other=0).to(ACC)
        rv = tl.load(r + p * B + bs, mask=m, other=0).to(ACC)
        t = _term(xv, rv, _fact_weight(wt, f, HAS_W, ACC), ADD)
        if MINIMUM:
            better = (t != t) | ((best == best) & (t < best))
        else:
            better = (t != t) | ((best == best) & (t > best))
        tie = (t == best) & m
        better = better & m & (tie == 0)
        ties = tl.where(tie, ties + 1, tl.where(better, tl.where(t == t, 1.0, 0.0).to(ACC), ties))
        best = tl.where(better, t, best)
    if BACKWARD:
        g = tl.load(grad + row * B + bs, mask=bm, other=0).to(ACC)
        tl.store(best_out + row * B + bs, best, mask=bm)
        tl.store(share_out + row * B + bs, tl.where(ties > 0, g / tl.where(ties > 0, ties, 1.0), 0.0), mask=bm)
    else:
        out = tl.where(end > begin, best, 0.0)
        tl.store(y + row * B + bs, out.to(y.dtype.element_ty), mask=bm)


@triton.autotune(configs=batch_configs(), key=["B"])
@triton.jit
def _max_dx_kernel(ptr, col, rel, wt, x, r, best, share, dx, B, E, R, FACTS, PTR_SLOT, err, ADD: tl.constexpr,
                   HAS_W: tl.constexpr, ACC: tl.constexpr, BLOCK_B: tl.constexpr):
    # MaxDxKernel: over the rows the forward reads (col = each fact's destination).
    row = tl.program_id(0).to(tl.int64)
    bs = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = bs < B
    begin, end = segment(ptr, row, FACTS, err, PTR_SLOT + 1)
    xv = tl.load(x + row * B + bs, mask=bm, other=0).to(ACC)
    acc = tl.zeros([BLOCK_B], dtype=ACC)
    for f in range(begin, end):
        d, p, ok = fact_ids(col, rel, f, E, R, err, PTR_SLOT)
        m = bm & ok
        rv = tl.load(r + p * B + bs, mask=m, other=0).to(ACC)
        w = _fact_weight(wt, f, HAS_W, ACC)
        acc += _winning_share(_term(xv, rv, w, ADD), _d_term(rv, w, ADD, BLOCK_B, ACC), best, share, d, B, bs, m)
    tl.store(dx + row * B + bs, acc.to(dx.dtype.element_ty), mask=bm)


@triton.autotune(configs=batch_configs(), key=["B"])
@triton.jit
def _max_rel_chunk_kernel(relptr, chunk_ptr, chunk_rel, subj, obj, wt, x, r, best, share, partial, B, E, R, FACTS,
                          err, INVERSE: tl.constexpr, ADD: tl.constexpr, CHUNK: tl.constexpr, HAS_W: tl.constexpr,
                          ACC: tl.constexpr, BLOCK_B: tl.constexpr, REL_PTR_CODE: tl.constexpr,
                          CHUNK_PTR_CODE: tl.constexpr, CHUNK_REL_CODE: tl.constexpr, SUBJ_CODE: tl.constexpr,
                          OBJ_CODE: tl.constexpr):
    # MaxRelChunkKernel: chunk c's winning facts into partial[c]; _rel_reduce_kernel adds them up.
    c = tl.program_id(0).to(tl.int64)
    bs = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = bs < B
    p, begin, end = chunk_facts(relptr, chunk_ptr, chunk_rel, c, R, FACTS, err, CHUNK, REL_PTR_CODE, CHUNK_PTR_CODE,
                                CHUNK_REL_CODE)
    rv = tl.load(r + p * B + bs, mask=bm & (end > begin), other=0).to(ACC)
    acc = tl.zeros([BLOCK_B], dtype=ACC)
    for f in range(begin, end):
        s, o, ok = chunk_fact_ids(subj, obj, f, E, err, SUBJ_CODE, OBJ_CODE)
        m = bm & ok
        if INVERSE:
            src, dst = o, s
        else:
            src, dst = s, o
        xv = tl.load(x + src * B + bs, mask=m, other=0).to(ACC)
        w = _fact_weight(wt, f, HAS_W, ACC)
        acc += _winning_share(_term(xv, rv, w, ADD), _d_term(w, xv, ADD, BLOCK_B, ACC), best, share, dst, B, bs, m)
    tl.store(partial + c * B + bs, acc, mask=bm)


@triton.jit
def _max_fact_kernel(ptr, col, rel, wt, x, r, best, share, dw, B, E, R, FACTS, err, INVERSE: tl.constexpr,
                     ADD: tl.constexpr, HAS_W: tl.constexpr, ACC: tl.constexpr, BLOCK_B: tl.constexpr,
                     PTR_SLOT: tl.constexpr):
    # dw of subject s's facts (the subject order, col = object): one sum over the batch per fact.
    s = tl.program_id(0).to(tl.int64)
    report(err, (tl.load(ptr) != 0) | (tl.load(ptr + E) != FACTS), PTR_SLOT + 1)  # the segments tile the facts
    begin, end = segment(ptr, s, FACTS, err, PTR_SLOT + 1)
    for f in range(begin, end):
        o, p, ok = fact_ids(col, rel, f, E, R, err, PTR_SLOT)
        if INVERSE:
            src, dst = o, s
        else:
            src, dst = s, o
        w = _fact_weight(wt, f, HAS_W, ACC)
        acc = tl.zeros([BLOCK_B], dtype=ACC)
        for b0 in range(0, B, BLOCK_B):
            bs = b0 + tl.arange(0, BLOCK_B)
            m = (bs < B) & ok
            xv = tl.load(x + src * B + bs, mask=m, other=0).to(ACC)
            rv = tl.load(r + p * B + bs, mask=m, other=0).to(ACC)
            acc += _winning_share(_term(xv, rv, w, ADD), _d_term(rv, xv, ADD, BLOCK_B, ACC), best, share, dst, B, bs, m)
        tl.store(dw + f, tl.sum(acc, 0).to(dw.dtype.element_ty))


def _rows_grid(rows: int, B: int):
    return lambda meta: (rows, triton.cdiv(B, meta["BLOCK_B"]))


def _weight_arg(w: Tensor, fallback: Tensor):
    """(the weight tensor or a stand-in pointer, whether weighted)."""
    return (w, True) if w.numel() > 0 else (fallback, False)


@kernel_op("follow_max")
def follow_max(x: Tensor, r: Tensor, kb: List[Tensor], inverse: bool, minimum: bool, add: bool) -> Tensor:
    E = num_entities(kb)
    check_pull_operands("follow_max", x, "x", E, r, "r", num_relations(kb), kb)
    x, r = x.contiguous(), r.contiguous()
    y = x.new_empty((E, x.shape[1]))
    if E == 0 or x.shape[1] == 0:
        return y
    errors = KernelErrors("follow_max", y.device)
    ptr, col, rel, w = pull_index(kb, inverse)
    w, has_w = _weight_arg(w, ptr)
    launch(_max_rows_kernel, _rows_grid(E, x.shape[1]), ptr, col, rel, w, x, r, y, x, x, x, x.shape[1],
           *pull_bounds(kb, inverse), errors.flag, MINIMUM=minimum, ADD=add, HAS_W=has_w, BACKWARD=False,
           ACC=acc_dtype(x.dtype))
    errors.done()
    return y


@kernel_op("follow_max_backward")
def follow_max_backward(x: Tensor, r: Tensor, grad: Tensor, kb: List[Tensor], inverse: bool, minimum: bool,
                        add: bool, need_w: bool) -> tuple[Tensor, Tensor, Tensor]:
    E, R = num_entities(kb), num_relations(kb)
    check_pull_operands("follow_max_backward", x, "x", E, r, "r", R, kb)
    check_pull_operands("follow_max_backward", x, "x", E, grad, "grad", E, kb)
    x, r, grad = x.contiguous(), r.contiguous(), grad.contiguous()
    B, facts = x.shape[1], kb[layout.SUBJ_OBJ].numel()
    dx = x.new_empty((E, B))
    dr = x.new_empty((R, B))
    dw = x.new_zeros((facts if need_w else 0,))
    if B == 0:
        return dx, dr.zero_(), dw
    acc = acc_dtype(x.dtype)
    acc_t = torch.float64 if acc == tl.float64 else torch.float32
    best, share = x.new_empty((E, B), dtype=acc_t), x.new_empty((E, B), dtype=acc_t)
    errors = KernelErrors("follow_max_backward", dx.device)
    if E > 0:
        ptr, col, rel, w = pull_index(kb, inverse)
        w, has_w = _weight_arg(w, ptr)
        launch(_max_rows_kernel, _rows_grid(E, B), ptr, col, rel, w, x, r, x, grad, best, share, B,
               *pull_bounds(kb, inverse), errors.flag, MINIMUM=minimum, ADD=add, HAS_W=has_w, BACKWARD=True, ACC=acc)
        ptr, col, rel, w = pull_index(kb, not inverse)
        w, has_w = _weight_arg(w, ptr)
        launch(_max_dx_kernel, _rows_grid(E, B), ptr, col, rel, w, x, r, best, share, dx, B,
               *pull_bounds(kb, not inverse), errors.flag, ADD=add, HAS_W=has_w, ACC=acc)
    chunks = kb[layout.REL_CHUNK_REL].shape[0]
    partial = x.new_empty((chunks, B), dtype=acc_t)
    rel_facts = kb[layout.REL_SUBJ].numel()
    codes = dict(REL_PTR_CODE=layout.REL_PTR + 1, CHUNK_PTR_CODE=layout.REL_CHUNK_PTR + 1)
    if chunks > 0:
        w, has_w = _weight_arg(kb[layout.REL_WEIGHT], kb[layout.REL_PTR])
        launch(_max_rel_chunk_kernel, _rows_grid(chunks, B), kb[layout.REL_PTR], kb[layout.REL_CHUNK_PTR],
               kb[layout.REL_CHUNK_REL], kb[layout.REL_SUBJ], kb[layout.REL_OBJ], w, x, r, best, share, partial, B, E,
               R, rel_facts, errors.flag, INVERSE=inverse, ADD=add, CHUNK=layout.REL_CHUNK, HAS_W=has_w, ACC=acc,
               CHUNK_REL_CODE=layout.REL_CHUNK_REL + 1, SUBJ_CODE=layout.REL_SUBJ + 1, OBJ_CODE=layout.REL_OBJ + 1,
               **codes)
    if R > 0:
        launch(_rel_reduce_kernel, _rows_grid(R, B), kb[layout.REL_PTR], kb[layout.REL_CHUNK_PTR], partial, dr, B,
               rel_facts, chunks, errors.flag, CHUNK=layout.REL_CHUNK, ACC=acc, **codes)
    if need_w and facts > 0 and E > 0:
        ptr, col, rel, w = pull_index(kb, True)  # grouped by subject: col = object
        w, has_w = _weight_arg(w, ptr)
        launch(_max_fact_kernel, (E,), ptr, col, rel, w, x, r, best, share, dw, B, E, R, facts, errors.flag,
               INVERSE=inverse, ADD=add, HAS_W=has_w, ACC=acc, BLOCK_B=MAX_FACT_BLOCK_B, PTR_SLOT=layout.SUBJ_PTR)
    errors.done()
    return dx, dr, dw


# Batch columns per step of dw's sum over the batch.
MAX_FACT_BLOCK_B = 32
