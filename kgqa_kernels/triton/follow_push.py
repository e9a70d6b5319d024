"""Triton kernels of follow_push: follow from a sparse frontier (example b's entries j in
[ptr[b], ptr[b+1]), entity ids[j], weight vals[j]), and its backward, with the work balanced over
the facts pushed whatever the frontier: a hub seed holding most of the KB's facts is split over
many programs like any other. The CUDA push is specified by the same steps (and gives the same
bits):

1. entries (_entries_kernel, one lane per entry): the example b_j of entry j (a binary search
   over ptr), and count_j, the number of facts leaving ids[j] (the pull index of the other
   direction groups facts by the entity they leave); 0 for an entry outside its example's segment
   (only a corrupt ptr leaves one) or a bad id or segment, which is reported. The same launch
   checks each example's ptr segment.
2. items: item_ptr = [0, cumsum(count)], one item per (entry, fact); T = item_ptr[N] is read on
   the host: it sizes the next launches (a synchronisation per call; torch.compile cannot trace
   a size that depends on the data, so these two ops stay opaque to it: kernel_op(opaque=True)).
3. expand (_expand_kernel, _expand_backward_kernel, one lane per item i): its entry j (a binary
   search over item_ptr), example and fact; a fact with bad ids is reported and adds 0. Forward,
   item i is the term r[rel, b] * (w * vals[j]) keyed by its target col * B + b; backward, the
   two terms of dvals[j] and dr[rel, b].
4. a stable sort by key (torch) makes each output element's terms a run, in item order: entry
   order, then fact order (the order the former one-program-per-example kernel added them in).
5. a planned segment sum (_segment_sum_kernel, then _segment_fixup_kernel) over rows = runs and
   items = sorted terms: the merge path of csrc/work_plan.h (work_plan.py's plan functions), each
   worker PLAN_ITEMS items. A row whole in one worker is summed there from zero in item order (a
   worker's rows are lanes, each adding its items one after another); a split one leaves a
   partial per worker, which the fixup adds in worker order. No atomics, and nothing depends on
   the launch: results are bitwise repeatable.
6. backward: dvals is the planned sum over rows = entries (item_ptr is their row pointer, already
   in order), dr the sort and sum of step 4 and 5 over the keys rel * B + b.
"""
from __future__ import annotations

from typing import List

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..checks import check_frontier, check_matrix, kb_num_entities as num_entities, kb_num_relations as num_relations
from ..numerics import acc_dtype as _acc_like
from .. import layout
from ._launch import INTERPRETED, KernelErrors, acc_dtype, kernel_op, launch, traced
from .follow import pull_bounds, pull_index
from .work_plan import fixup_row, last_row, row_part, search_steps, worker_span, workers

# Lanes per program of the entries and expand kernels: fixed, not autotuned, since N and T change
# with every frontier and each new value would be tuned again.
ITEM_BLOCK = 1024

# Rows a worker of the planned segment sum visits, at most: PLAN_ITEMS ends, and the row it stops in.
ROW_BLOCK = triton.next_power_of_2(layout.PLAN_ITEMS + 1)

# Workers per program of the planned segment sum: compiled, one; interpreted, a block (tiles of
# SUM_BLOCK_W * ROW_BLOCK lanes), since the interpreter pays per operation, not per element.
SUM_BLOCK_W = 64 if INTERPRETED else 1


@triton.jit
def rank(a, n, key, STEPS: tl.constexpr):
    """The number of a[0 .. n) that are <= key, a sorted ascending: a branch-free binary search of
    STEPS halvings (work_plan.search_steps(n)), key a scalar or a block. Reads a[0 .. n) only and
    returns a value in [0, n] whatever a holds."""
    lo = key * 0
    hi = lo + n
    for _ in tl.static_range(STEPS):
        active = lo < hi
        mid = lo + (hi - lo) // 2
        below = tl.load(a + mid, mask=active, other=0) <= key
        lo = tl.where(active & below, mid + 1, lo)
        hi = tl.where(active & (below == 0), mid, hi)
    return lo


@triton.jit
def _entries_kernel(ptr, ids, fptr, count, example, B, E, FACTS, N, PTR_SLOT, err, STEPS: tl.constexpr,
                    FPTR_CODE: tl.constexpr, IDS_CODE: tl.constexpr, BLOCK: tl.constexpr):
    # Lane k is entry k (k < N) and example k (k < B): the grid spans max(N, B).
    k = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    zero = tl.zeros([BLOCK], dtype=tl.int32)
    # Example k's segment, checked as segment() does: a bad one is an error whatever its entries.
    xm = k < B
    begin = tl.load(ptr + k, mask=xm, other=0)
    end = tl.load(ptr + k + 1, mask=xm, other=0)
    tl.atomic_max(err + zero, zero + FPTR_CODE, mask=xm & ((begin < 0) | (begin > end) | (end > N)))
    # Entry k: its example, and whether that example's segment holds it: else no example does (a
    # corrupt ptr the segment check passes, such as ptr[0] > 0) and it pushes nothing.
    jm = k < N
    b = tl.minimum(rank(ptr + 1, B, k, STEPS), B - 1)
    covered = jm & (tl.load(ptr + b, mask=jm, other=0) <= k) & (k < tl.load(ptr + b + 1, mask=jm, other=0))
    s = tl.load(ids + k, mask=covered, other=0)
    s_ok = (s >= 0) & (s < E)
    f0 = tl.load(fptr + s, mask=covered & s_ok, other=0)
    f1 = tl.load(fptr + s + 1, mask=covered & s_ok, other=0)
    seg_ok = (f0 >= 0) & (f0 <= f1) & (f1 <= FACTS)
    # The codes seed_facts reported: the id, else the pull index's ptr slot (the largest code wins).
    code = tl.where(s_ok, tl.where(seg_ok, 0, PTR_SLOT + 1), IDS_CODE)
    tl.atomic_max(err + zero, code.to(tl.int32), mask=covered & (code > 0))
    tl.store(count + k, tl.where(covered & s_ok & seg_ok, f1 - f0, 0), mask=jm)
    tl.store(example + k, b, mask=jm)


@triton.jit
def item_fact(item_ptr, example, ids, fptr, col, rel, i, im, N, E, R, PTR_SLOT, err, STEPS: tl.constexpr):
    """(entry j, example b, fact f, target c, relation p, whether c and p are in range) of items i
    (mask im). Item i is fact i - item_ptr[j] of entry j's segment; only an entry whose id and
    segment the entries kernel found good has items, so f is in range. Bad fact ids are reported as
    fact_ids() does (the col and rel slots follow the ptr slot)."""
    j = tl.minimum(rank(item_ptr + 1, N, i, STEPS), N - 1)  # the entries before i's: empty ones too
    b = tl.load(example + j, mask=im, other=0)
    s = tl.load(ids + j, mask=im, other=0)
    f = tl.load(fptr + s, mask=im, other=0) + (i - tl.load(item_ptr + j, mask=im, other=0))
    c = tl.load(col + f, mask=im, other=0).to(tl.int64)
    p = tl.load(rel + f, mask=im, other=0).to(tl.int64)
    c_ok = (c >= 0) & (c < E)
    p_ok = (p >= 0) & (p < R)
    code = tl.where(p_ok, tl.where(c_ok, 0, PTR_SLOT + 2), PTR_SLOT + 3)
    tl.atomic_max(err + (i * 0).to(tl.int32), code.to(tl.int32), mask=im & (code > 0))
    return j, b, f, c, p, im & c_ok & p_ok


@triton.jit
def _expand_kernel(item_ptr, example, ids, vals, fptr, col, rel, w, r, key, val, B, E, R, FACTS, N, PTR_SLOT, err, T,
                   STEPS: tl.constexpr, HAS_W: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    # Item i's target key col * B + b and term r[rel, b] * (w * vals[j]) (the order of every follow
    # kernel's product, csrc/cpu/pull_row.h); a fact with bad ids adds 0 to key 0.
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    im = i < T
    j, b, f, c, p, ok = item_fact(item_ptr, example, ids, fptr, col, rel, i, im, N, E, R, PTR_SLOT, err, STEPS)
    v = tl.load(vals + j, mask=im, other=0).to(ACC)
    t = tl.load(r + p * B + b, mask=ok, other=0).to(ACC)
    if HAS_W:
        t = t * (tl.load(w + f, mask=im, other=0).to(ACC) * v)
    else:
        t = t * v
    tl.store(key + i, tl.where(ok, c * B + b, 0), mask=im)
    tl.store(val + i, tl.where(ok, t, 0), mask=im)


@triton.jit
def _expand_backward_kernel(item_ptr, example, ids, vals, fptr, col, rel, w, r, grad, dv_item, dr_key, dr_item, B, E,
                            R, FACTS, N, PTR_SLOT, err, T, STEPS: tl.constexpr, HAS_W: tl.constexpr,
                            ACC: tl.constexpr, BLOCK: tl.constexpr):
    # Item i's terms of the backward, wg = grad[col, b] * w: r[rel, b] * wg of dvals[j], and
    # vals[j] * wg of dr[rel, b] keyed rel * B + b; a fact with bad ids adds 0 (to dr at key 0).
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    im = i < T
    j, b, f, c, p, ok = item_fact(item_ptr, example, ids, fptr, col, rel, i, im, N, E, R, PTR_SLOT, err, STEPS)
    g = tl.load(grad + c * B + b, mask=ok, other=0).to(ACC)
    if HAS_W:
        g = g * tl.load(w + f, mask=im, other=0).to(ACC)
    dv = tl.load(r + p * B + b, mask=ok, other=0).to(ACC) * g
    dr = tl.load(vals + j, mask=im, other=0).to(ACC) * g
    tl.store(dv_item + i, tl.where(ok, dv, 0), mask=im)
    tl.store(dr_key + i, tl.where(ok, p * B + b, 0), mask=im)
    tl.store(dr_item + i, tl.where(ok, dr, 0), mask=im)


@triton.jit
def _segment_sum_kernel(ptr, vals, dest, out, carry, rows, items, WORKERS, STEPS: tl.constexpr,
                        HAS_DEST: tl.constexpr, BLOCK_W: tl.constexpr, ROW_BLOCK: tl.constexpr):
    # Pass 1 of the planned segment sum, for the BLOCK_W workers w of this program: each row w
    # visits summed from zero in item order over the items w holds, written to out[dest[row]] when
    # whole in w, else left in w's head (slot 0: the row ends in w) or tail (slot 1) carry slot. A
    # worker's rows (at most ROW_BLOCK) are lanes, each adding its row's items one after another:
    # the order of a loop over rows and items, in at most PLAN_ITEMS steps. ptr is built by the op,
    # not read from the caller: it needs no checks.
    w = (tl.program_id(0).to(tl.int64) * BLOCK_W + tl.arange(0, BLOCK_W))[:, None]
    row0, fact0, row1, fact1 = worker_span(ptr, w, rows, items, STEPS)
    row = row0 + tl.arange(0, ROW_BLOCK)[None, :]
    rm = (w < WORKERS) & (row <= last_row(row1, rows))
    f0, f1, whole, slot = row_part(row, tl.load(ptr + row, mask=rm, other=0), tl.load(ptr + row + 1, mask=rm, other=0),
                                   row0, fact0, row1, fact1)
    n = tl.where(rm, f1 - f0, 0)
    s = tl.zeros([BLOCK_W, ROW_BLOCK], dtype=carry.dtype.element_ty)
    for k in range(0, tl.max(tl.max(n, axis=1), axis=0)):
        m = k < n
        s = tl.where(m, s + tl.load(vals + f0 + k, mask=m, other=0), s)
    at = row
    if HAS_DEST:
        at = tl.load(dest + row, mask=rm & whole, other=0)
    tl.store(out + at, s.to(out.dtype.element_ty), mask=rm & whole)
    # At most one row of each slot: only row0 can end in w without starting there, only row1 go on.
    tl.store(carry + w * 2 + slot, s, mask=rm & (whole == 0))


@triton.jit
def _segment_fixup_kernel(ptr, dest, out, carry, rows, items, WORKERS, STEPS: tl.constexpr, HAS_DEST: tl.constexpr,
                          BLOCK_W: tl.constexpr):
    # Pass 2, for the BLOCK_W workers w of this program: the split row that ends in w, if any: the
    # tails of the workers from its first to w - 1, then w's head, added in that order
    # (work_plan.fixup_sums with one lane).
    w = tl.program_id(0).to(tl.int64) * BLOCK_W + tl.arange(0, BLOCK_W)
    row0, fact0, row1, _ = worker_span(ptr, w, rows, items, STEPS)
    needed, first = fixup_row(ptr, w, rows, row0, fact0, row1)
    needed = needed & (w < WORKERS)
    tails = tl.where(needed, w - first, 0)
    s = tl.zeros([BLOCK_W], dtype=carry.dtype.element_ty)
    for k in range(0, tl.max(tails, axis=0)):
        s = tl.where(k < tails, s + tl.load(carry + (first + k) * 2 + 1, mask=k < tails, other=0), s)
    s += tl.load(carry + w * 2, mask=needed, other=0)
    at = row0
    if HAS_DEST:
        at = tl.load(dest + row0, mask=needed, other=0)
    tl.store(out + at, s.to(out.dtype.element_ty), mask=needed)


def planned_segment_sum(ptr: Tensor, vals: Tensor, out: Tensor, dest: Tensor | None = None) -> None:
    """out[dest[row]] (out[row] without dest) = the sum of vals[ptr[row] .. ptr[row+1]), from zero
    in index order, for each of the rows = ptr.numel() - 1 rows: the two launches of step 5 above.
    ptr int64, from 0 to vals.numel(), non-decreasing; vals in the accumulator dtype."""
    rows, items = ptr.numel() - 1, vals.numel()
    if rows == 0:
        return
    count = workers(rows, items)
    carry = vals.new_empty(count * 2)  # a head and a tail per worker; only split rows' are written
    block_w = min(SUM_BLOCK_W, triton.next_power_of_2(count))
    meta = dict(STEPS=search_steps(rows), HAS_DEST=dest is not None, BLOCK_W=block_w)
    dest = ptr if dest is None else dest
    grid = (triton.cdiv(count, block_w),)
    launch(_segment_sum_kernel, grid, ptr, vals, dest, out, carry, rows, items, count, ROW_BLOCK=ROW_BLOCK, **meta)
    launch(_segment_fixup_kernel, grid, ptr, dest, out, carry, rows, items, count, **meta)


def sum_by_key(key: Tensor, vals: Tensor, out: Tensor) -> None:
    """out[k] = the sum of the vals of key k, in their order (steps 4 and 5): a stable sort makes each
    key's terms one run, in item order, and the runs are the rows of a planned segment sum."""
    skey, perm = torch.sort(key, stable=True)
    starts = torch.nonzero(skey[1:] != skey[:-1]).flatten() + 1
    run_ptr = torch.cat([starts.new_zeros(1), starts, starts.new_full((1,), key.numel())])
    planned_segment_sum(run_ptr, vals[perm], out, skey[run_ptr[:-1]])


def _frontier_items(ptr: Tensor, ids: Tensor, fptr: Tensor, kb: List[Tensor], inverse: bool, errors: KernelErrors):
    """Steps 1 and 2: (item_ptr [N+1], the example of each entry, T, the bounds the expand kernels
    take: E, R, FACTS, N, PTR_SLOT). ptr holds B + 1 >= 2 offsets, N >= 1."""
    E, R, facts, ptr_slot = pull_bounds(kb, not inverse)
    B, N = ptr.shape[0] - 1, ids.shape[0]
    count = torch.empty(N, dtype=torch.int64, device=ids.device)
    example = torch.empty_like(count)
    launch(_entries_kernel, (triton.cdiv(max(N, B), ITEM_BLOCK),), ptr, ids, fptr, count, example, B, E,
           facts, N, ptr_slot, errors.flag, STEPS=search_steps(B), FPTR_CODE=layout.BAD_FRONTIER_PTR,
           IDS_CODE=layout.BAD_FRONTIER_IDS, BLOCK=ITEM_BLOCK)
    item_ptr = count.new_zeros(N + 1)
    torch.cumsum(count, 0, out=item_ptr[1:])
    return item_ptr, example, int(item_ptr[-1]), (E, R, facts, N, ptr_slot)


@kernel_op("follow_push", opaque=True)  # T and the runs are read from the data
def follow_push(ptr: Tensor, ids: Tensor, vals: Tensor, r: Tensor, kb: List[Tensor], inverse: bool) -> Tensor:
    check_frontier("follow_push", ptr, ids, vals, r, kb)
    B, N, E = ptr.shape[0] - 1, ids.shape[0], num_entities(kb)
    acc = _acc_like(vals.dtype)
    y = vals.new_zeros(E * B, dtype=acc)
    if B > 0 and N > 0 and not traced(ptr, ids, vals, r, *kb):
        ptr, ids, vals, r = ptr.contiguous(), ids.contiguous(), vals.contiguous(), r.contiguous()
        fptr, col, rel, w = pull_index(kb, not inverse)  # facts grouped by the entity they leave
        has_w = w.numel() > 0
        errors = KernelErrors("follow_push", y.device)
        item_ptr, example, T, bounds = _frontier_items(ptr, ids, fptr, kb, inverse, errors)
        if T > 0:
            key = torch.empty(T, dtype=torch.int64, device=y.device)
            terms = torch.empty(T, dtype=acc, device=y.device)
            launch(_expand_kernel, (triton.cdiv(T, ITEM_BLOCK),), item_ptr, example, ids, vals, fptr,
                   col, rel, w if has_w else fptr, r, key, terms, B, *bounds, errors.flag, T, STEPS=search_steps(N),
                   HAS_W=has_w, ACC=acc_dtype(vals.dtype), BLOCK=ITEM_BLOCK)
            sum_by_key(key, terms, y)
        errors.done()
    return y.view(E, B).to(vals.dtype)


@kernel_op("follow_push_backward", opaque=True)
def follow_push_backward(
    grad: Tensor, ptr: Tensor, ids: Tensor, vals: Tensor, r: Tensor, kb: List[Tensor], inverse: bool
) -> tuple[Tensor, Tensor]:
    check_frontier("follow_push_backward", ptr, ids, vals, r, kb)
    B, N, R = ptr.shape[0] - 1, ids.shape[0], num_relations(kb)
    check_matrix("follow_push_backward", "grad", grad, num_entities(kb), kb, batch=B)
    acc = _acc_like(vals.dtype)
    dvals = torch.zeros_like(vals)
    dr = vals.new_zeros(R * B, dtype=acc)
    if B > 0 and N > 0 and not traced(grad, ptr, ids, vals, r, *kb):
        ptr, ids, vals, r = ptr.contiguous(), ids.contiguous(), vals.contiguous(), r.contiguous()
        grad = grad.contiguous()
        fptr, col, rel, w = pull_index(kb, not inverse)
        has_w = w.numel() > 0
        errors = KernelErrors("follow_push_backward", dr.device)
        item_ptr, example, T, bounds = _frontier_items(ptr, ids, fptr, kb, inverse, errors)
        if T > 0:
            dv_item = torch.empty(T, dtype=acc, device=dr.device)
            dr_key = torch.empty(T, dtype=torch.int64, device=dr.device)
            dr_item = torch.empty_like(dv_item)
            launch(_expand_backward_kernel, (triton.cdiv(T, ITEM_BLOCK),), item_ptr, example, ids,
                   vals, fptr, col, rel, w if has_w else fptr, r, grad, dv_item, dr_key, dr_item, B, *bounds,
                   errors.flag, T, STEPS=search_steps(N), HAS_W=has_w, ACC=acc_dtype(vals.dtype), BLOCK=ITEM_BLOCK)
            planned_segment_sum(item_ptr, dv_item, dvals)  # rows = entries, in order: no sort
            sum_by_key(dr_key, dr_item, dr)
        errors.done()
    return dvals, dr.view(R, B).to(vals.dtype)
