"""Triton kernels of follow: the pull (forward, and dx in the other direction) on the work plan of
csrc/work_plan.h (kgqa_kernels/triton/work_plan.py), and dr as a two-pass chunked reduction (the
push from a sparse frontier is kgqa_kernels/triton/follow_push.py).

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
from ._launch import KernelErrors, kernel_op, launch, acc_dtype, batch_configs, report
from .work_plan import FACT_BLOCK, carry_buffer, fixup_sums, last_row, plan_grid, program_tiles, row_sums, search_steps


def pull_index(kb: List[Tensor], inverse: bool):
    """(ptr, col, rel, weight) of the pull into objects, or into subjects when ``inverse``."""
    return tuple(kb[slot] for slot in layout.pull_slots(inverse))


@triton.jit
def _follow_finish(y, row, s, bs, m, B):
    """follow's finish (FollowFinish): y[row] = the row's sum, written once."""
    tl.store(y + row * B + bs[None, :], s.to(y.dtype.element_ty), mask=m[None, :])


@triton.autotune(configs=batch_configs(), key=["B"])
@triton.jit
def _pull_kernel(ptr, col, rel, wt, x, r, y, carry, B, E, R, FACTS, PTR_SLOT, err, STEPS: tl.constexpr,
                 FACT_BLOCK: tl.constexpr, HAS_W: tl.constexpr, ACC: tl.constexpr, BLOCK_B: tl.constexpr):
    # Pass 1 of the planned pull (work_plan.py): worker w's rows, finished where whole.
    w, bs, bm, B, kid, km, fi, row0, fact0, row1, fact1 = program_tiles(ptr, E, FACTS, B, 1, 1, STEPS, FACT_BLOCK,
                                                                     BLOCK_B)
    cols = kid * 0 + bs[None, :]
    for row in range(row0, last_row(row1, E) + 1):
        s, whole = row_sums(ptr, col, rel, wt, x + cols, r + cols, carry, row, w, row0, fact0, row1, fact1, kid, bs,
                            km, fi, B, E, R, FACTS, PTR_SLOT, err, 1, 1, FACT_BLOCK, HAS_W, ACC, BLOCK_B)
        if whole:
            _follow_finish(y, row, s, bs, bm, B)


@triton.autotune(configs=batch_configs(), key=["B"])
@triton.jit
def _pull_fixup_kernel(ptr, carry, y, B, E, FACTS, STEPS: tl.constexpr, ACC: tl.constexpr, BLOCK_B: tl.constexpr):
    # Pass 2: the row split over workers that ends in worker w, if any.
    w, bs, bm, B, kid, km, _, row0, fact0, row1, _ = program_tiles(ptr, E, FACTS, B, 1, 1, STEPS, 1, BLOCK_B)
    row, s, needed = fixup_sums(ptr, carry, w, E, row0, fact0, row1, kid, bs, km, B, 1, ACC)
    if needed:
        _follow_finish(y, row, s, bs, bm, B)


def pull_bounds(kb: List[Tensor], inverse: bool):
    """(E, R, facts, ptr slot): what the pull kernels check the values they read against."""
    return num_entities(kb), num_relations(kb), kb[layout.OBJ_SUBJ].numel(), layout.pull_slots(inverse)[0]


def planned_pull_args(kb: List[Tensor], inverse: bool, k: int, B: int, dtype: torch.dtype, device):
    """What both launches of a planned pull of k branches take (work_plan.py): (the pull index with
    the weight slot filled, the bounds, the carry buffer, the grid, the constexprs STEPS and ACC,
    whether weighted)."""
    ptr, col, rel, w = pull_index(kb, inverse)
    has_w = w.numel() > 0
    E, facts = num_entities(kb), col.shape[0]
    acc = acc_dtype(dtype)
    carry = carry_buffer(E, facts, k, B, torch.float64 if acc == tl.float64 else torch.float32, device)
    grid = lambda meta: plan_grid(E, facts, B, meta["BLOCK_B"])  # noqa: E731
    meta = dict(STEPS=search_steps(E), ACC=acc)
    return (ptr, col, rel, w if has_w else ptr), pull_bounds(kb, inverse), carry, grid, meta, has_w


def launch_pull(x: Tensor, r: Tensor, kb: List[Tensor], inverse: bool, y: Tensor, errors: KernelErrors) -> None:
    """y [E, B] = the pull of x [E, B] through r [R, B]; x, r, y contiguous. Two launches on the
    work plan's grid: pass 1, then the fixup of the rows it split."""
    E, B = y.shape
    if E == 0 or B == 0:
        return
    index, bounds, carry, grid, meta, has_w = planned_pull_args(kb, inverse, 1, B, x.dtype, y.device)
    launch(_pull_kernel, grid, *index, x, r, y, carry, B, *bounds, errors.flag, FACT_BLOCK=FACT_BLOCK, HAS_W=has_w,
           **meta)
    launch(_pull_fixup_kernel, grid, index[0], carry, y, B, E, index[1].shape[0], **meta)


@kernel_op("follow")
def follow(x: Tensor, r: Tensor, kb: List[Tensor], inverse: bool, row_major: bool = False) -> Tensor:
    E = num_entities(kb)
    check_pull_operands("follow", x, "x", E, r, "r", num_relations(kb), kb)
    y = x.new_empty((E, x.shape[1]))
    errors = KernelErrors("follow", y.device)
    launch_pull(x.contiguous(), r.contiguous(), kb, inverse, y, errors)
    errors.done()
    # The kernels write whole rows; a row-major result (the schema's row_major) is their transpose.
    return y.t().contiguous().t() if row_major else y


@triton.jit
def chunk_facts(relptr, chunk_ptr, chunk_rel, c, R, FACTS, err, CHUNK: tl.constexpr, REL_PTR_CODE: tl.constexpr,
                CHUNK_PTR_CODE: tl.constexpr, CHUNK_REL_CODE: tl.constexpr):
    """(relation, begin, end) of dr's chunk c, with the checks of RelChunks::chunk_facts
    (csrc/kb_layout.h): where one fails it is reported and the range is empty (relation 0)."""
    p = tl.load(chunk_rel + c)
    p_ok = (p >= 0) & (p < R)
    p = tl.where(p_ok, p, 0)
    c0 = tl.load(chunk_ptr + p)
    f0 = tl.load(relptr + p)
    f1 = tl.load(relptr + p + 1)
    in_rel = p_ok & (c >= c0) & (c < tl.load(chunk_ptr + p + 1))
    facts_ok = (f0 >= 0) & (f0 <= f1) & (f1 <= FACTS)
    chunk_ok = (c - c0) < (f1 - f0 + CHUNK - 1) // CHUNK
    report(err, in_rel == 0, CHUNK_REL_CODE)
    report(err, in_rel & (facts_ok == 0), REL_PTR_CODE)
    report(err, in_rel & facts_ok & (chunk_ok == 0), CHUNK_PTR_CODE)
    begin = f0 + (c - c0) * CHUNK
    end = tl.where(in_rel & facts_ok & chunk_ok, tl.minimum(begin + CHUNK, f1), begin)
    return p, begin, end


@triton.jit
def chunk_fact_ids(subj, obj, f, E, err, SUBJ_CODE: tl.constexpr, OBJ_CODE: tl.constexpr):
    """(subject, object, whether both are entities) of fact f of the (p, s, o) order; one out of
    range is reported (RelChunks::bad_fact_ids)."""
    s = tl.load(subj + f).to(tl.int64)
    o = tl.load(obj + f).to(tl.int64)
    s_ok = (s >= 0) & (s < E)
    o_ok = (o >= 0) & (o < E)
    report(err, s_ok == 0, SUBJ_CODE)
    report(err, o_ok == 0, OBJ_CODE)
    return s, o, s_ok & o_ok


@triton.autotune(configs=batch_configs(), key=["B"])
@triton.jit
def _rel_chunk_kernel(relptr, chunk_ptr, chunk_rel, subj, obj, w, a, b, partial, B, E, R, FACTS, err,
                      CHUNK: tl.constexpr, HAS_W: tl.constexpr, ACC: tl.constexpr, BLOCK_B: tl.constexpr,
                      REL_PTR_CODE: tl.constexpr, CHUNK_PTR_CODE: tl.constexpr, CHUNK_REL_CODE: tl.constexpr,
                      SUBJ_CODE: tl.constexpr, OBJ_CODE: tl.constexpr):
    # partial[c, b] = sum over the facts (s, p, o) of chunk c of a[s, b] * (w * b[o, b]), with the
    # checks of RelChunks::chunk_facts (csrc/kb_layout.h).
    c = tl.program_id(0).to(tl.int64)
    bs = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = bs < B
    _, begin, end = chunk_facts(relptr, chunk_ptr, chunk_rel, c, R, FACTS, err, CHUNK, REL_PTR_CODE, CHUNK_PTR_CODE,
                                CHUNK_REL_CODE)
    acc = tl.zeros([BLOCK_B], dtype=ACC)
    for f in range(begin, end):
        s, o, ok = chunk_fact_ids(subj, obj, f, E, err, SUBJ_CODE, OBJ_CODE)
        m = bm & ok
        bv = tl.load(b + o * B + bs, mask=m, other=0).to(ACC)
        if HAS_W:
            bv = bv * tl.load(w + f).to(ACC)
        acc += tl.load(a + s * B + bs, mask=m, other=0).to(ACC) * bv
    tl.store(partial + c * B + bs, acc, mask=bm)


@triton.autotune(configs=batch_configs(), key=["B"])
@triton.jit
def _rel_reduce_kernel(relptr, chunk_ptr, partial, dr, B, FACTS, CHUNKS, err, CHUNK: tl.constexpr,
                       ACC: tl.constexpr, BLOCK_B: tl.constexpr, REL_PTR_CODE: tl.constexpr,
                       CHUNK_PTR_CODE: tl.constexpr):
    # dr[p, b] = the sum of relation p's chunk partials, in chunk order (fixed by the KB), with the
    # checks of RelChunks::bad_relation.
    p = tl.program_id(0).to(tl.int64)
    bs = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = bs < B
    c0 = tl.load(chunk_ptr + p)
    c1 = tl.load(chunk_ptr + p + 1)
    f0 = tl.load(relptr + p)
    f1 = tl.load(relptr + p + 1)
    chunks_ok = (c0 >= 0) & (c0 <= c1) & (c1 <= CHUNKS) & ((p != 0) | (c0 == 0))
    facts_ok = (f0 >= 0) & (f0 <= f1) & (f1 <= FACTS)
    count_ok = (c1 - c0) == (f1 - f0 + CHUNK - 1) // CHUNK
    report(err, chunks_ok == 0, CHUNK_PTR_CODE)
    report(err, chunks_ok & (facts_ok == 0), REL_PTR_CODE)
    report(err, chunks_ok & facts_ok & (count_ok == 0), CHUNK_PTR_CODE)
    acc = tl.zeros([BLOCK_B], dtype=ACC)
    for c in range(c0, tl.where(chunks_ok & facts_ok & count_ok, c1, c0)):
        acc += tl.load(partial + c * B + bs, mask=bm, other=0)
    tl.store(dr + p * B + bs, acc.to(dr.dtype.element_ty), mask=bm)


def launch_rel_reduction(a: Tensor, b: Tensor, kb: List[Tensor], dr: Tensor, errors: KernelErrors) -> None:
    """dr [R, B] = sum over facts (s, p, o) of a[s] * w * b[o] into row p; a, b [E, B] contiguous."""
    R, B = dr.shape
    if R == 0 or B == 0:
        return
    chunks = kb[layout.REL_CHUNK_REL].shape[0]
    acc = torch.float64 if a.dtype == torch.float64 else torch.float32
    partial = a.new_empty((chunks, B), dtype=acc)
    w = kb[layout.REL_WEIGHT]
    has_w = w.numel() > 0
    facts = kb[layout.REL_SUBJ].numel()
    codes = dict(REL_PTR_CODE=layout.REL_PTR + 1, CHUNK_PTR_CODE=layout.REL_CHUNK_PTR + 1)
    if chunks > 0:
        launch(_rel_chunk_kernel, lambda meta: (chunks, triton.cdiv(B, meta["BLOCK_B"])),
            kb[layout.REL_PTR], kb[layout.REL_CHUNK_PTR], kb[layout.REL_CHUNK_REL], kb[layout.REL_SUBJ], kb[layout.REL_OBJ], w if has_w else kb[layout.REL_PTR],
            a, b, partial, B, num_entities(kb), R, facts, errors.flag, CHUNK=layout.REL_CHUNK, HAS_W=has_w,
            ACC=acc_dtype(a.dtype), CHUNK_REL_CODE=layout.REL_CHUNK_REL + 1, SUBJ_CODE=layout.REL_SUBJ + 1,
            OBJ_CODE=layout.REL_OBJ + 1, **codes,
        )
    launch(_rel_reduce_kernel, lambda meta: (R, triton.cdiv(B, meta["BLOCK_B"])),
        kb[layout.REL_PTR], kb[layout.REL_CHUNK_PTR], partial, dr, B, facts, chunks, errors.flag,
        CHUNK=layout.REL_CHUNK, ACC=acc_dtype(a.dtype), **codes,
    )


@kernel_op("follow_backward_r")
def follow_backward_r(x: Tensor, grad: Tensor, kb: List[Tensor], inverse: bool) -> Tensor:
    E = num_entities(kb)
    check_pull_operands("follow_backward_r", x, "x", E, grad, "grad", E, kb)
    x, grad = x.contiguous(), grad.contiguous()
    dr = x.new_empty((num_relations(kb), x.shape[1]))
    # The forward reads x at subjects and writes at objects; inverse swaps them.
    errors = KernelErrors("follow_backward_r", dr.device)
    launch_rel_reduction(grad if inverse else x, x if inverse else grad, kb, dr, errors)
    errors.done()
    return dr


@triton.jit
def _fact_dot_kernel(ptr, col, rel, a, r, c, dw, B, E, R, FACTS, err, STEPS, BLOCK_F: tl.constexpr,
                     BLOCK_B: tl.constexpr, ACC: tl.constexpr, PTR_CODE: tl.constexpr, COL_CODE: tl.constexpr,
                     REL_CODE: tl.constexpr):
    # dw[f] = sum over b of a[s, b] * r[p, b] * c[o, b] for BLOCK_F facts f of the subject order
    # (FactDotKernel in csrc/cuda/follow.cuh): each fact's subject by a binary search of the row
    # pointers, checked as there.
    f = tl.program_id(0).to(tl.int64) * BLOCK_F + tl.arange(0, BLOCK_F)
    fm = f < FACTS
    lo = tl.zeros([BLOCK_F], dtype=tl.int64)
    hi = tl.zeros([BLOCK_F], dtype=tl.int64) + E
    for _ in range(STEPS):  # the last row whose start is <= f
        mid = lo + (hi - lo + 1) // 2
        go = tl.load(ptr + mid, mask=fm & (lo < hi), other=0) <= f
        lo = tl.where((lo < hi) & go, mid, lo)
        hi = tl.where((lo < hi) & (go == 0), mid - 1, hi)
    s = lo
    tiled = (tl.load(ptr) == 0) & (tl.load(ptr + E) == FACTS)
    seg_begin = tl.load(ptr + s, mask=fm, other=0)
    seg_end = tl.load(ptr + s + 1, mask=fm & (s < E), other=0)
    seg_ok = tiled & (s < E) & (seg_begin >= 0) & (seg_begin <= f) & (f < seg_end) & (seg_end <= FACTS)
    report(err, tl.max((fm & (seg_ok == 0)).to(tl.int32), 0) > 0, PTR_CODE)
    o = tl.load(col + f, mask=fm, other=0).to(tl.int64)
    p = tl.load(rel + f, mask=fm, other=0).to(tl.int64)
    o_ok = (o >= 0) & (o < E)
    p_ok = (p >= 0) & (p < R)
    report(err, tl.max((fm & seg_ok & (o_ok == 0)).to(tl.int32), 0) > 0, COL_CODE)
    report(err, tl.max((fm & seg_ok & o_ok & (p_ok == 0)).to(tl.int32), 0) > 0, REL_CODE)
    ok = fm & seg_ok & o_ok & p_ok
    acc = tl.zeros([BLOCK_F, BLOCK_B], dtype=ACC)
    for b0 in range(0, B, BLOCK_B):
        bs = b0 + tl.arange(0, BLOCK_B)
        m = ok[:, None] & (bs < B)[None, :]
        av = tl.load(a + s[:, None] * B + bs[None, :], mask=m, other=0).to(ACC)
        rv = tl.load(r + p[:, None] * B + bs[None, :], mask=m, other=0).to(ACC)
        cv = tl.load(c + o[:, None] * B + bs[None, :], mask=m, other=0).to(ACC)
        acc += av * rv * cv
    tl.store(dw + f, tl.sum(acc, 1).to(dw.dtype.element_ty), mask=fm)


# Facts per program of dw: a block's three row gathers per batch block stay in registers.
FACT_DOT_BLOCK_F = 32
FACT_DOT_BLOCK_B = 32


@kernel_op("follow_backward_w")
def follow_backward_w(x: Tensor, r: Tensor, grad: Tensor, kb: List[Tensor], inverse: bool) -> Tensor:
    E, R = num_entities(kb), num_relations(kb)
    check_pull_operands("follow_backward_w", x, "x", E, r, "r", R, kb)
    check_pull_operands("follow_backward_w", x, "x", E, grad, "grad", E, kb)
    x, r, grad = x.contiguous(), r.contiguous(), grad.contiguous()
    ptr, col, rel, _ = pull_index(kb, True)  # grouped by subject: col = object
    facts = col.numel()
    dw = x.new_empty((facts,))
    if facts == 0:
        return dw
    if x.shape[1] == 0:
        return dw.zero_()
    errors = KernelErrors("follow_backward_w", dw.device)
    # The forward reads x at subjects and grad at objects; inverse swaps them.
    a, c = (grad, x) if inverse else (x, grad)
    launch(_fact_dot_kernel, (triton.cdiv(facts, FACT_DOT_BLOCK_F),), ptr, col, rel, a, r, c, dw, x.shape[1], E, R,
           facts, errors.flag, search_steps(E), BLOCK_F=FACT_DOT_BLOCK_F, BLOCK_B=FACT_DOT_BLOCK_B,
           ACC=acc_dtype(x.dtype), PTR_CODE=layout.SUBJ_PTR + 1, COL_CODE=layout.SUBJ_OBJ + 1,
           REL_CODE=layout.SUBJ_REL + 1)
    errors.done()
    return dw
