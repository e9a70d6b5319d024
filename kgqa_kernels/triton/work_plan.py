"""The work plan of every pull-shaped Triton kernel (follow forward and dx, follow_intersect forward
and backward): the merge path over rows and facts that csrc/work_plan.h defines, in Triton. A
worker is one program along the grid's first axis (its second axis blocks the batch), so a hub row
is split over several programs and no program reads more than PLAN_ITEMS facts.

Here: the @triton.jit plan functions (path_pos, worker_span, last_row, row_part, fixup_row: WorkPlan
and WorkerSpan), the per-row sums of pass 1 and the fixup's sums (what csrc/cuda/planned_pull.cuh's
PlannedPullKernel and PlanFixupKernel do before calling their Finish), the carry layout, the launch
grid, and ``launch_plan``: what each program of that grid reads, found by a Triton kernel that calls
the same span functions on the same grid (as csrc/cuda/launch_plan.cuh does for the CUDA kernels).

Unlike the CUDA kernels, a worker that meets a bad row segment or id reports it and goes on (the
segment read as empty, the fact skipped, as the Triton pulls always did) rather than stopping: the
op raises either way, and nothing out of bounds is read.

The functions are elementwise, so one code serves a program's scalar worker and the plan kernel's
block of workers. Each pull kernel is two launches on ``plan_grid``: pass 1 (row_sums per visited
row, then the op's finish for the rows it holds whole) and the fixup (fixup_sums, then the same
finish for the split row it ends).
"""
from __future__ import annotations

from typing import List, Tuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from .. import layout
from ..checks import check_raw_kb, kb_num_entities
from ._launch import INTERPRETED, batch_configs, launch, pick

# csrc/kb_layout.h owns the value; a global constexpr so the jit functions read it as a constant.
PLAN_ITEMS = tl.constexpr(layout.PLAN_ITEMS)

# Facts pass 1 reads at once (row_sums): compiled, one (the sums' order needs it); interpreted, a
# block, since the interpreter pays per operation, not per element.
FACT_BLOCK = 64 if INTERPRETED else 1

# Workers per program of the compiled plan kernel: a block of 128 compiles in about a second (1,024
# made a 960 kB cubin in 16 s for sm_90: the unrolled searches of 8 workers a thread).
PLAN_BLOCK_W = 128

# Halvings of path_pos's search when the row count is symbolic (torch.compile's dynamic shapes):
# enough for any int64 row count.
MAX_SEARCH_STEPS = 64


def workers(rows, facts):
    """WorkPlan::workers(): PLAN_ITEMS items of the path per worker."""
    return triton.cdiv(rows + facts, layout.PLAN_ITEMS)


def search_steps(rows) -> int:
    """Halvings that settle path_pos's binary search whatever d: its interval [lo, hi] lies in
    [0, rows], and each step at least halves hi - lo, so the bit length of rows + 1 is enough."""
    return (rows + 1).bit_length() if isinstance(rows, int) else MAX_SEARCH_STEPS


def plan_grid(rows, facts, B, block_b) -> Tuple[int, int]:
    """The grid of both passes of a planned pull (planned_pull_config in csrc/cuda/planned_pull.cuh):
    one program per (worker, block of ``block_b`` batch columns), worker along axis 0."""
    return (workers(rows, facts), triton.cdiv(B, block_b))


def carry_buffer(rows: int, facts: int, k: int, B: int, acc: torch.dtype, device) -> Tensor:
    """Every worker's partials, a head and a tail slot of k * B accumulators each (carry_at below);
    only split rows' slots are written and read, so it is not initialised."""
    return torch.empty(workers(rows, facts) * 2 * k * B, dtype=acc, device=device)


@triton.jit
def carry_at(w, slot, kid, K: tl.constexpr, B, bs):
    """Offsets of branches kid [KP, 1] and columns bs of worker w's head (slot 0) or tail (slot 1):
    carry_at in csrc/cuda/planned_pull.cuh."""
    return ((w * 2 + slot) * K + kid) * B + bs[None, :]


@triton.jit
def path_pos(ptr, rows, facts, d, STEPS: tl.constexpr):
    """(row, fact) after the first d items: path_pos of csrc/work_plan.h, as a branch-free search of
    STEPS halvings (search_steps) so that d may be a scalar or a block. Reads ptr[1] .. ptr[rows]
    only, whatever they hold."""
    lo = tl.maximum(d - facts, 0)
    hi = tl.minimum(d, rows)
    lo = tl.minimum(lo, hi)
    for _ in tl.static_range(STEPS):
        active = lo < hi
        mid = lo + (hi - lo) // 2
        left = tl.load(ptr + mid + 1, mask=active, other=0) + mid >= d
        hi = tl.where(active & left, mid, hi)
        lo = tl.where(active & (left == 0), mid + 1, lo)
    return lo, d - lo


@triton.jit
def worker_span(ptr, w, rows, facts, STEPS: tl.constexpr):
    """(begin.row, begin.fact, end.row, end.fact) of worker w (int64): WorkPlan::span."""
    d0 = w * PLAN_ITEMS
    d1 = tl.minimum(d0 + PLAN_ITEMS, rows + facts)
    row0, fact0 = path_pos(ptr, rows, facts, d0, STEPS)
    row1, fact1 = path_pos(ptr, rows, facts, d1, STEPS)
    return row0, fact0, row1, fact1


@triton.jit
def last_row(row1, rows):
    """WorkerSpan::last_row: a worker visits rows begin.row .. last_row."""
    return tl.minimum(row1, rows - 1)


@triton.jit
def row_part(r, seg_begin, seg_end, row0, fact0, row1, fact1):
    """What a worker of span (row0, fact0) .. (row1, fact1) does with row r, whose segment is
    [seg_begin, seg_end): (first fact, end fact) of the row that it reads (WorkerSpan::first_fact,
    last_fact), whether it holds the row whole (starts_here and ends_here), and else the carry slot
    of its partial: 0 (head) when the row ends here, 1 (tail) when it goes on after the worker."""
    ends = r < row1
    whole = ((r > row0) | (seg_begin >= fact0)) & ends
    return tl.maximum(seg_begin, fact0), tl.minimum(seg_end, fact1), whole, tl.where(ends, 0, 1)


@triton.jit
def fixup_row(ptr, w, rows, row0, fact0, row1):
    """(whether worker w finishes a split row, the row's first worker): w's first row ends in w but
    started before (not starts_here for begin.row), and its first tail (WorkPlan::fixup_first),
    clamped to [0, w] so that a corrupt ptr cannot send the fixup out of bounds."""
    has_row = (row0 < rows) & (row0 < row1)
    seg_begin = tl.load(ptr + row0, mask=has_row, other=0)
    first = tl.minimum(tl.maximum((seg_begin + row0) // PLAN_ITEMS, 0), w)
    return has_row & (seg_begin < fact0), first


@triton.jit
def branch_tile(kid, K: tl.constexpr, P0, P1, P2, P3, P4, P5, P6, P7):
    """Branch i's pointer in row i of a [KP, 1] tile (kid = arange(KP)[:, None]), so one gather
    reads a fact's row of every branch."""
    t = P0 + kid * 0
    for i in tl.static_range(1, K):
        t = tl.where(kid == i, pick(i, P0, P1, P2, P3, P4, P5, P6, P7) + kid * 0, t)
    return t


@triton.jit
def program_tiles(ptr, rows, facts, B, K: tl.constexpr, KP: tl.constexpr, STEPS: tl.constexpr,
                  FACT_BLOCK: tl.constexpr, BLOCK_B: tl.constexpr):
    """What a program of either pass works on: (worker w, its batch columns bs and their mask bm,
    B as int64 (interpreted, a loop's row is a Python int, and row * B must not be int32), kid =
    arange(KP)[:, None] (the branches' rows of a [KP, BLOCK_B] tile), the tile's mask km, arange
    (FACT_BLOCK) as int64, and w's span: begin.row, begin.fact, end.row, end.fact)."""
    w = tl.program_id(0).to(tl.int64)
    bs = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = bs < B
    kid = tl.arange(0, KP)[:, None]
    row0, fact0, row1, fact1 = worker_span(ptr, w, rows, facts, STEPS)
    return (w, bs, bm, tl.cast(B, tl.int64), kid, (kid < K) & bm[None, :], tl.arange(0, FACT_BLOCK).to(tl.int64), row0,
            fact0, row1, fact1)


@triton.jit
def row_sums(ptr, col, rel, wt, XP, RP, carry, r, w, row0, fact0, row1, fact1, kid, bs, km, fi, B, E, R, FACTS,
             PTR_SLOT, err, K: tl.constexpr, KP: tl.constexpr, FACT_BLOCK: tl.constexpr, HAS_W: tl.constexpr,
             ACC: tl.constexpr, BLOCK_B: tl.constexpr):
    """Pass 1 for row r of worker w (PlannedPullKernel): (sums [KP, BLOCK_B] of the row's facts among
    the worker's items, whether the row is whole here). A row not whole here leaves its sums in the
    worker's head or tail slot. XP, RP: [KP, BLOCK_B] pointer tiles of the branches' x and r at
    columns bs; km, fi: from program_tiles. Per fact and branch the order of every follow kernel,
    sum += r[rel] * (w * x[col]) (csrc/cpu/pull_row.h). The row's segment and each fact's ids are
    checked and reported as segment() and fact_ids() do (the row pointers as PTR_SLOT + 1, the ids
    as + 2 and + 3).

    FACT_BLOCK facts are read at once: their terms t_j, then the running sums s + t_0, ... by a
    cumsum along the block, whose last row is the new s. That is the fold ((s + t_0) + t_1) + ...
    in fact order only while the scan is sequential: compiled, FACT_BLOCK is 1 (one fact per step,
    as the CUDA kernel); interpreted, cumsum is numpy's sequential accumulate, and a block costs the
    interpreter about what one fact would. Facts past the row add zeros (no sum is -0: exact)."""
    seg_begin = tl.load(ptr + r)
    seg_end = tl.load(ptr + r + 1)
    bad = (seg_begin < 0) | (seg_begin > seg_end) | (seg_end > FACTS)
    if bad:
        tl.atomic_max(err, PTR_SLOT + 1)
    f0, f1, whole, slot = row_part(r, seg_begin, tl.where(bad, seg_begin, seg_end), row0, fact0, row1, fact1)
    s = tl.zeros([KP, BLOCK_B], dtype=ACC)
    col_code = PTR_SLOT + 2
    rel_code = PTR_SLOT + 3
    for base in range(f0, f1, FACT_BLOCK):
        f = base + fi
        fm = f < f1
        c = tl.load(col + f, mask=fm, other=0).to(tl.int64)
        p = tl.load(rel + f, mask=fm, other=0).to(tl.int64)
        c_ok = (c >= 0) & (c < E)
        p_ok = (p >= 0) & (p < R)
        code = tl.where(p_ok, tl.where(c_ok, 0, col_code), rel_code)
        tl.atomic_max(err + (f - f), code, mask=fm & (code > 0))
        m = (fm & c_ok & p_ok)[:, None, None] & km[None, :, :]
        xv = tl.load(XP[None, :, :] + (c * B)[:, None, None], mask=m, other=0).to(ACC)
        if HAS_W:
            xv = xv * tl.load(wt + f, mask=fm, other=0).to(ACC)[:, None, None]
        t = tl.load(RP[None, :, :] + (p * B)[:, None, None], mask=m, other=0).to(ACC) * xv
        t = tl.cumsum(tl.where((f == base)[:, None, None], s[None, :, :] + t, t), axis=0)
        s = tl.reshape(tl.gather(t, tl.full([1, KP, BLOCK_B], FACT_BLOCK - 1, tl.int32), 0), [KP, BLOCK_B])
    if whole == 0:
        tl.store(carry + carry_at(w, slot, kid, K, B, bs), s, mask=km)
    return s, whole


@triton.jit
def fixup_sums(ptr, carry, w, rows, row0, fact0, row1, kid, bs, km, B, K: tl.constexpr, ACC: tl.constexpr):
    """The fixup for worker w of span row0, fact0 .. row1 (PlanFixupKernel): (row, sums [KP,
    BLOCK_B], whether w finishes the row). The sums of a split row are the tails of the workers from
    its first one to w - 1, then w's head, added in that order."""
    needed, first = fixup_row(ptr, w, rows, row0, fact0, row1)
    km = km & needed
    # Starting from zero changes no bit: a partial is never -0 (each is a sum from +0).
    s = tl.zeros(km.shape, dtype=ACC)
    for v in range(first, tl.where(needed, w, first)):
        s += tl.load(carry + carry_at(v, 1, kid, K, B, bs), mask=km, other=0)
    return row0, s + tl.load(carry + carry_at(w, 0, kid, K, B, bs), mask=km, other=0).to(ACC), needed


# ---- launch_plan ------------------------------------------------------------------------------------

@triton.jit
def _plan_kernel(ptr, work, fixup, rows, facts, WORKERS, BATCH_BLOCKS, STEPS: tl.constexpr,
                 BLOCK_W: tl.constexpr):
    # Workers w of this block, each as pass 1 and the fixup see it (PlanWorkKernel): the facts of
    # each visited row that w reads, and the partials its fixup adds.
    w = tl.program_id(0).to(tl.int64) * BLOCK_W + tl.arange(0, BLOCK_W)
    wm = w < WORKERS
    row0, fact0, row1, fact1 = worker_span(ptr, w, rows, facts, STEPS)
    last = tl.where(wm, last_row(row1, rows), -1)
    row0 = tl.where(wm, row0, 0)
    n = tl.zeros([BLOCK_W], dtype=tl.int64)
    for j in range(0, tl.max(last - row0 + 1, axis=0)):
        r = row0 + j
        rm = r <= last
        seg_begin = tl.load(ptr + r, mask=rm, other=0)
        seg_end = tl.load(ptr + r + 1, mask=rm, other=0)
        f0, f1, _, _ = row_part(r, seg_begin, seg_end, row0, fact0, row1, fact1)
        n += tl.where(rm & (f1 > f0), f1 - f0, 0)
    needed, first = fixup_row(ptr, w, rows, row0, fact0, row1)
    partials = tl.where(wm & needed, w - first + 1, 0)
    # Every batch block of a worker reads the same (the grid has no block past the batch).
    for j in range(0, BATCH_BLOCKS):
        tl.store(work + j * WORKERS + w, n, mask=wm)
        tl.store(fixup + j * WORKERS + w, partials, mask=wm)


def _launch_block_b(batch: int) -> int:
    """BLOCK_B of the planned pull at ``batch``: follow pass 1's autotuned choice at this batch if
    the autotuner has run at it in this process (the latest, whatever the dtypes), else the first
    configuration (under the interpreter, the only one)."""
    from .follow import _pull_kernel

    chosen = [cfg.kwargs["BLOCK_B"] for key, cfg in getattr(_pull_kernel, "cache", {}).items() if key[:1] == (batch,)]
    return chosen[-1] if chosen else batch_configs()[0].kwargs["BLOCK_B"]


def launch_plan(kb: List[Tensor], batch: int, inverse: bool, block_b: int | None = None):
    """(work, fixup, grid) of a planned pull of ``batch`` columns over the raw KB list ``kb`` (into
    subjects when ``inverse``), as csrc/cuda/launch_plan.cuh reports the CUDA launch: ``grid`` =
    (workers, batch blocks) from plan_grid, the grid of both passes; ``work[i]`` the facts program i
    reads in pass 1 and ``fixup[i]`` the partials it adds in the fixup, int64, i over the grid with
    axis 0 fastest (i = worker + workers * batch block, CUDA's order of blockIdx.x, y).

    The grid depends on BLOCK_B, batch columns per program: ``block_b`` if given, else the one
    follow's pass 1 was autotuned to at this batch in this process, else the first configuration
    (the interpreter's only one). On a GPU the fixup is autotuned on its own and may take another
    BLOCK_B; per worker it adds the same partials. The counts come from the KB's row pointers,
    whose structure is checked (not their values: a corrupt ptr gives in-bounds nonsense)."""
    check_raw_kb("launch_plan", kb)
    if batch < 1:
        raise RuntimeError(f"launch_plan(): batch must be at least 1, got {batch}")
    ptr = kb[layout.pull_slots(inverse)[0]]
    rows, facts = kb_num_entities(kb), kb[layout.OBJ_SUBJ].numel()
    grid = plan_grid(rows, facts, batch, block_b or _launch_block_b(batch))
    work = torch.zeros(grid[0] * grid[1], dtype=torch.int64, device=ptr.device)
    fixup = torch.zeros_like(work)
    if work.numel() > 0:
        # Workers per program: interpreted, one program for up to 65536 workers (16M items), since the
        # interpreter pays per operation, not per element.
        block_w = min(65536, triton.next_power_of_2(grid[0])) if INTERPRETED else PLAN_BLOCK_W
        launch(_plan_kernel, (triton.cdiv(grid[0], block_w),), ptr, work, fixup, rows, facts, grid[0], grid[1],
               STEPS=search_steps(rows), BLOCK_W=block_w)
    return work, fixup, grid
