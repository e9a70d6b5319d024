"""A GPU work model of the pull kernels (csrc/cuda/planned_pull.cuh) and of dr's chunked reduction
(csrc/cuda/follow.cuh): for a KB, a batch width B, a dtype and a GPU preset, the bytes each kernel
moves through HBM, the critical path of its slowest workers, and a predicted time

    kernel time = max(bytes / HBM bandwidth, makespan of the warps) + launch
    pull time   = pass 1 + the fixup pass (each a kernel as above)

**Predictions of a model, not measurements**: nothing here has run on a GPU. `make gpu-check`
prints the model's prediction beside each measured time, which is how it gets checked.

The plan of the planned pull (which facts each warp reads, and the partials it adds in the fixup)
comes from the launch_plan op, the launch code's own count (csrc/cuda/launch_plan.cuh over
csrc/work_plan.h): this module never re-derives the merge path. For B <= 16 the launch may pack
several workers into a warp (planned_pull_config: on KBs of many workers, or as far as
KGQA_PULL_WORKERS_PER_WARP allows when it is set), and launch_plan counts such a warp's fact steps
with its workers in lockstep; the same plan with one worker per warp (which is the launch at B = 32,
B of its lanes busy) is modelled beside it. The plan before the merge path (one row per
warp group: `rows_by_batch` over rows) is computed from row lengths, for comparison.

Run as ``python -m kgqa_kernels.bench.gpu_model --kbs metaqa,pl-1m,pl-10m --skews 0.9,1.1 --gpus
h100,h200 --out DIR``: Markdown + JSON tables (docs/gpu.md shows one).
"""
from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from types import SimpleNamespace
from typing import Optional

import torch

from .. import layout
from ..kb import SparseKB
from ..numerics import acc_dtype

# ---- the GPU --------------------------------------------------------------------------------------

WARP = 32  # threads per warp: CUDA's warpSize on every NVIDIA GPU so far
SECTOR = 32  # bytes: the unit in which L2 and HBM serve a load (CUDA C++ Best Practices Guide,
#              "Coalesced Access to Global Memory"): a gathered row costs whole sectors
# Assumption: a gathered tensor (r, or x on small KBs) stays in L2 after its first read when it
# fits in this share of the L2; the rest of the L2 is churned by the streamed indices and outputs.
L2_RESIDENT_SHARE = 0.5
# The facts whose gathers one warp has in flight at once. PlannedPullKernel and RelChunkKernel load
# and check the ids of layout.PULL_UNROLL facts before gathering their rows, so that many facts'
# gathers go out together (their owner is csrc/kb_layout.h; the SASS on a GPU should confirm the
# compiler issues them so). The one-row-per-warp kernel before them checked each fact's ids and
# could return before its gathers, so the compiler could not start fact f + 1's loads before fact
# f's ids were back and checked: one fact at a time.
FACTS_IN_FLIGHT = layout.PULL_UNROLL
OLD_PLAN_FACTS_IN_FLIGHT = 1
# Assumption (also for the SASS to confirm): the partials of a split row that the fixup pass has in
# flight at once. Its loop is a plain sum with no exit, which nvcc unrolls (by 4 when the trip
# count is not known), so the loads of 4 partials go out together.
PARTIALS_IN_FLIGHT = 4


@dataclass(frozen=True)
class GPU:
    name: str
    sms: int  # streaming multiprocessors
    warps_per_sm: int  # resident warps per SM
    hbm_bytes_per_s: float  # HBM bandwidth, datasheet
    l2_bytes: int
    hbm_latency_ns: float  # a dependent load that misses L2, under load
    l2_latency_ns: float  # a load that hits L2
    l1_latency_ns: float  # a load that hits L1
    launch_ns: float  # one kernel launch on a busy stream, with the tail of its last wave


GPUS = {
    "h100": GPU(
        name="H100 SXM5 80GB",
        sms=132,  # NVIDIA H100 datasheet / Hopper whitepaper (SXM5: 132 SMs)
        warps_per_sm=64,  # CUDA Programming Guide, compute capability 9.0: 64 resident warps per SM
        hbm_bytes_per_s=3.35e12,  # NVIDIA H100 datasheet, SXM: 3.35 TB/s
        l2_bytes=50 * 2**20,  # Hopper whitepaper: 50 MB L2 on H100 SXM5
        hbm_latency_ns=600.0,  # assumption: loaded HBM latency (unloaded pointer chases are lower)
        l2_latency_ns=250.0,  # assumption: roughly 260 cycles at ~1.75-1.98 GHz
        l1_latency_ns=20.0,  # assumption: roughly 35 cycles
        launch_ns=4000.0,  # assumption: a few microseconds per launch
    ),
    "h200": GPU(
        name="H200 SXM 141GB",
        sms=132,  # torch.cuda.get_device_properties on this workplace's H200 (.library/device/KINDS.md)
        warps_per_sm=64,  # compute capability 9.0, as the H100
        hbm_bytes_per_s=4.8e12,  # NVIDIA H200 datasheet: 4.8 TB/s (4.3 TB/s device copy measured here)
        l2_bytes=60 * 10**6,  # torch reported 60 MB of L2 on this workplace's H200 (KINDS.md)
        hbm_latency_ns=600.0,  # assumption, as the H100 (same memory system, HBM3e)
        l2_latency_ns=250.0,  # assumption, as the H100
        l1_latency_ns=20.0,  # assumption, as the H100
        launch_ns=4000.0,  # assumption, as the H100
    ),
}


def gpu_preset(name: str) -> GPU:
    key = name.lower()
    if key not in GPUS:
        raise ValueError(f"gpu must be one of {sorted(GPUS)}, got {name!r}")
    return GPUS[key]


def gpu_from_device(device=None) -> GPU:
    """The preset of the GPU torch sees (by name), else one from its properties with the H100's
    latency and bandwidth assumptions (bandwidth is not a device property)."""
    props = torch.cuda.get_device_properties(device)
    for key, g in GPUS.items():
        if key.upper() in props.name.upper():
            return g
    return replace(GPUS["h100"], name=props.name, sms=props.multi_processor_count,
                   warps_per_sm=props.max_threads_per_multi_processor // WARP, l2_bytes=props.L2_cache_size)


# ---- the plans ------------------------------------------------------------------------------------

def launch_plan(kb: SparseKB, batch: int, *, backend: str = "cuda", inverse: bool = False):
    """(work, fixup, grid, block) of the planned pull's CUDA launch, from kgqa_kernels.launch_plan
    (the launch code's own count). The model schedules warps, so it takes the CUDA launch only:
    Triton's plan counts programs, whose warps the Triton compiler lays out."""
    if backend != "cuda":
        raise ValueError(f"launch_plan(): the work model takes backend='cuda' only, got {backend!r}")
    from ..work_plan import launch_plan as plan_of

    plan = plan_of(kb, int(batch), backend="cuda", inverse=bool(inverse))
    return SimpleNamespace(work=plan.work.cpu(), fixup=plan.fixup.cpu(), grid=plan.grid, block=plan.block)


def rows_by_batch(rows: int, batch: int, threads_per_block: int):
    """(grid, block) of csrc/cuda/launch.h's rows_by_batch: one warp group per row, the batch
    across its lanes, several rows per block when the batch is narrow. The planned pull launches
    its workers with it, and the kernels before it launched rows with it."""
    bx = min(math.ceil(max(batch, 1) / WARP) * WARP, threads_per_block)
    by = threads_per_block // bx
    return (max(1, math.ceil(rows / by)), max(1, math.ceil(batch / bx)), 1), (bx, by, 1)


def warp_coords(grid, block, batch: int):
    """(row, lanes) of each warp of a rows_by_batch launch, warps numbered as the hardware does
    (blocks x-fastest, then by linear thread index): the row it works on (thread_row) and how many
    of its lanes hold batch columns (thread_col < batch). Block widths are whole warps, so a warp
    never spans two rows."""
    bx, by, bz = block
    threads = bx * by * bz
    if threads % WARP or bx % WARP:
        raise ValueError(f"block {block} is not made of whole warps in x")
    wpb = threads // WARP
    warp = torch.arange(grid[0] * grid[1] * grid[2] * wpb, dtype=torch.int64)
    blk, lane0 = warp // wpb, (warp % wpb) * WARP
    tx, ty = lane0 % bx, (lane0 // bx) % by
    row = (blk % grid[0]) * by + ty
    col0 = ((blk // grid[0]) % grid[1]) * bx + tx
    return row, (batch - col0).clamp(0, WARP)


def warp_lanes(grid, block, batch: int, rows: int) -> torch.Tensor:
    """Per warp of a launch of thread (row, column) = (thread_row, thread_col), warps numbered as
    the hardware does (blocks x-fastest, then by linear thread index): how many of its lanes hold a
    row below `rows` and a column below `batch`. Unlike warp_coords, a warp may hold several rows
    (the planned pull's packed workers, block.x < 32)."""
    bx, by, bz = block
    threads = bx * by * bz
    if threads % WARP:
        raise ValueError(f"block {block} is not made of whole warps")
    t = torch.arange(grid[0] * grid[1] * grid[2] * threads, dtype=torch.int64)
    blk, lin = t // threads, t % threads
    row = (blk % grid[0]) * by + (lin // bx) % by
    col = ((blk // grid[0]) % grid[1]) * bx + lin % bx
    return ((row < rows) & (col < batch)).view(-1, WARP).sum(1)


@dataclass
class WarpPlan:
    """Per warp of one launch, in launch order: facts read, partials added by the fixup pass, batch
    lanes held (0: the warp has no work); and the dependent loads each warp makes before its first
    fact, that hit L1 and that go to L2. ``partial_lanes``: the split rows' partials the fixup reads,
    summed over workers, times the batch lanes of each (None: fixup x lanes per warp, right when
    each warp holds one worker; a packed warp's fixup is its workers' max, not their sum)."""
    label: str
    work: torch.Tensor
    fixup: torch.Tensor
    lanes: torch.Tensor
    warps_per_block: int
    start_l1_loads: float
    start_l2_loads: float
    partial_lanes: Optional[int] = None
    workers_per_warp: int = 1

    def active(self) -> torch.Tensor:
        return self.lanes > 0

    def partials_read(self) -> int:
        return int((self.fixup * self.lanes).sum()) if self.partial_lanes is None else self.partial_lanes

    def start_ns(self, gpu: "GPU") -> float:
        return self.start_l1_loads * gpu.l1_latency_ns + self.start_l2_loads * gpu.l2_latency_ns


MERGE_PATH = "merge path"
# Set, it makes the planned pull's launch pack up to that many workers per warp on any KB
# (csrc/cuda/planned_pull.cuh; 1: never), instead of its own rule.
PACK_ENV = "KGQA_PULL_WORKERS_PER_WARP"
ONE_WORKER_PER_WARP = "merge path, one worker per warp"


def planned_pull_plan(kb: SparseKB, batch: int, inverse: bool = False, backend: str = "cuda",
                      packed: bool = True) -> WarpPlan:
    """The merge-path plan (csrc/work_plan.h), from launch_plan: the launch as it is (``packed``:
    for B <= 16 it may hold several workers per warp), or with one worker per warp (B of its lanes
    busy), which is the launch at B = 32: rows_by_batch gives both the same grid and blocks."""
    unpacked = launch_plan(kb, max(batch, WARP), backend=backend, inverse=inverse)
    p = launch_plan(kb, batch, backend=backend, inverse=inverse) if packed and batch < WARP else unpacked
    # A lane is busy when its row (worker) is below the plan's worker count (WorkPlan::workers) and
    # its column below the batch.
    workers = math.ceil((kb.num_entities + kb.num_facts) / layout.PLAN_ITEMS)
    lanes = warp_lanes(p.grid, p.block, batch, workers)
    # The partials the fixup reads: per worker, from the launch with one worker per warp (a packed
    # warp reports the max over its workers, which is its critical path, not its traffic).
    partial_lanes = int((unpacked.fixup * warp_lanes(unpacked.grid, unpacked.block, batch, workers)).sum())
    # Each warp first finds its span: two binary searches over the row pointer (path_pos), about
    # log2(rows) dependent loads each; assumption: half of their levels hit L1 (shared with the
    # neighbouring workers), the other half go to L2. A packed warp's workers search side by side.
    levels = math.log2(max(kb.num_entities, 2))
    label = MERGE_PATH if packed or batch > WARP // 2 else ONE_WORKER_PER_WARP
    return WarpPlan(label, p.work, p.fixup, lanes, _warps_per_block(p.block), start_l1_loads=levels,
                    start_l2_loads=levels, partial_lanes=partial_lanes,
                    workers_per_warp=WARP // p.block[0] if p.block[0] < WARP else 1)


def _row_lengths(kb: SparseKB, inverse: bool) -> torch.Tensor:
    ptr = kb.tensors()[layout.pull_slots(inverse)[0]].cpu()
    return ptr.diff()


def row_per_warp_plan(kb: SparseKB, batch: int, inverse: bool = False, threads_per_block: int = 256) -> WarpPlan:
    """The plan before the merge path: rows_by_batch over rows, each warp reading its whole row."""
    lengths = _row_lengths(kb, inverse)
    return _rows_plan("one row per warp (before)", lengths, batch, threads_per_block)


def _rows_plan(label, lengths: torch.Tensor, batch: int, threads_per_block: int) -> WarpPlan:
    grid, block = rows_by_batch(lengths.numel(), batch, threads_per_block)
    row, lanes = warp_coords(grid, block, batch)
    inside = row < lengths.numel()
    work = torch.where(inside & (lanes > 0), lengths[row.clamp(max=max(lengths.numel() - 1, 0))], 0)
    lanes = torch.where(inside, lanes, 0)
    # One dependent load (its row's ptr[r], ptr[r + 1]) before the first fact.
    return WarpPlan(label, work, torch.zeros_like(work), lanes, _warps_per_block(block), start_l1_loads=0.0,
                    start_l2_loads=1.0)


def _warps_per_block(block) -> int:
    return block[0] * block[1] * block[2] // WARP


def chunk_lengths(kb: SparseKB) -> torch.Tensor:
    """Facts of each of dr's chunks, from the KB's chunk table (RelChunks::chunk_facts in
    csrc/kb_layout.h): relation p's facts cut into REL_CHUNK-fact chunks, the last one shorter."""
    t = kb.tensors()
    rel_ptr, chunk_ptr = t[layout.REL_PTR].cpu(), t[layout.REL_CHUNK_PTR].cpu()
    chunk_rel = t[layout.REL_CHUNK_REL].cpu()
    c = torch.arange(chunk_rel.numel(), dtype=torch.int64)
    begin = rel_ptr[chunk_rel] + (c - chunk_ptr[chunk_rel]) * layout.REL_CHUNK
    return torch.minimum(begin + layout.REL_CHUNK, rel_ptr[chunk_rel + 1]) - begin


def dr_plan(kb: SparseKB, batch: int, threads_per_block: int = 256) -> WarpPlan:
    """dr's first pass: rows_by_batch over the KB's fixed chunks, a warp group per chunk."""
    return _rows_plan("fixed chunks", chunk_lengths(kb), batch, threads_per_block)


def work_balance(plan: WarpPlan) -> dict:
    """Slowest warp's facts / the mean over the warps that hold work (a hub row is one slow warp
    under the old plan; at most PLAN_ITEMS facts under the merge path)."""
    w = plan.work[plan.active()].double()
    if w.numel() == 0:
        return dict(max_warp_facts=0, mean_warp_facts=0.0, max_over_mean=float("nan"))
    mean = float(w.mean())
    return dict(max_warp_facts=int(w.max()), mean_warp_facts=mean,
                max_over_mean=float(w.max()) / mean if mean > 0 else float("nan"))


def makespan(durations: torch.Tensor, warps_per_block: int, gpu: GPU) -> float:
    """List scheduling of the launch's blocks, in launch order, onto the GPU's block slots (SMs x
    resident warps / warps per block), each block taking the first slot to come free. Assumption:
    a block holds its slots until its last warp ends (a CTA's resources are freed at its exit), so
    a block lasts as long as its slowest warp."""
    per_block = durations.double().view(-1, warps_per_block).amax(1).tolist()
    slots = gpu.sms * max(1, gpu.warps_per_sm // warps_per_block)
    if len(per_block) <= slots:
        return max(per_block, default=0.0)
    heap = per_block[:slots]
    heapq.heapify(heap)
    for d in per_block[slots:]:
        heapq.heapreplace(heap, heap[0] + d)
    return max(heap)


# ---- the bytes ------------------------------------------------------------------------------------

def row_sectors(row_bytes: int) -> float:
    """Mean 32-byte sectors a gathered row of `row_bytes` contiguous bytes touches, over the
    alignments its start takes (row c starts at byte c * row_bytes)."""
    g = math.gcd(row_bytes, SECTOR)
    starts = range(0, SECTOR, g)
    return sum(math.ceil((a + row_bytes) / SECTOR) for a in starts) / len(starts)


@dataclass(frozen=True)
class KBSizes:
    entities: int
    relations: int
    facts: int
    chunks: int
    index_bytes: int
    weighted: bool

    @classmethod
    def of(cls, kb: SparseKB) -> "KBSizes":
        return cls(kb.num_entities, kb.num_relations, kb.num_facts, kb.tensors()[layout.REL_CHUNK_REL].numel(),
                   torch.empty(0, dtype=kb.index_dtype).element_size(), kb.weight is not None)

    def fact_index_bytes(self) -> int:
        """Per fact, the two ids a kernel reads (and the float32 weight)."""
        return 2 * self.index_bytes + (4 if self.weighted else 0)


def _gathers(tensors, facts: int, gpu: GPU):
    """HBM bytes of gathering rows of each (name, rows, row_bytes) tensor once per fact, and
    whether each is L2-resident: the smallest first while they fit in L2_RESIDENT_SHARE of the
    L2, each then read from HBM once; the others cost whole sectors per fact."""
    budget = L2_RESIDENT_SHARE * gpu.l2_bytes
    total, resident = 0.0, {}
    for name, rows, row_bytes in sorted(tensors, key=lambda t: t[1] * t[2]):
        size = rows * row_bytes
        if size <= budget:
            budget -= size
            total += size
            resident[name] = True
        else:
            total += facts * row_sectors(row_bytes) * SECTOR
            resident[name] = False
    return total, resident


def fact_ns(gpu: GPU, resident: dict, index_bytes: int, facts_in_flight: int = FACTS_IN_FLIGHT) -> float:
    """Time of one fact in one warp: its ids (L1 hits, with a miss to HBM at every new sector of an
    id stream: the streams of one fact, `index_bytes` wide each, miss together) then its gathers,
    issued together, as slow as the slowest (L2 when the tensor is L2-resident, else HBM); divided
    by the facts a warp has in flight."""
    index = gpu.l1_latency_ns + gpu.hbm_latency_ns * index_bytes / SECTOR
    gather = max(gpu.l2_latency_ns if r else gpu.hbm_latency_ns for r in resident.values())
    return (index + gather) / facts_in_flight


def pull_bytes(s: KBSizes, batch: int, elem: int, acc: int, k: int, gpu: GPU, partial_lanes: int):
    """(pass-1 bytes, fixup bytes, residency) of a planned pull of k branches over every fact: ids
    (+ weight) once, the row pointer, k gathered rows of x and of r per fact, the output, and the
    partials of split rows (`partial_lanes`: sum over warps of partials x lanes, from the plan),
    written by pass 1 and read once by the fixup."""
    tensors = [(f"x{i}", s.entities, batch * elem) for i in range(k)]
    tensors += [(f"r{i}", s.relations, batch * elem) for i in range(k)]
    gathered, resident = _gathers(tensors, s.facts, gpu)
    carry = partial_lanes * k * acc
    pass1 = s.facts * s.fact_index_bytes() + (s.entities + 1) * 8 + gathered + s.entities * batch * elem + carry
    return pass1, carry, resident


def dr_bytes(s: KBSizes, batch: int, elem: int, acc: int, gpu: GPU):
    """(chunk pass bytes, reduce pass bytes, residency) of dr: per fact two ids (+ weight) and two
    gathered rows (a at the subject, b at the object), a partial per chunk; then the partials
    reduced into dr [R, B]. The chunk table's reads are three int64 per chunk."""
    gathered, resident = _gathers([("a", s.entities, batch * elem), ("b", s.entities, batch * elem)], s.facts, gpu)
    partials = s.chunks * batch * acc
    chunk_pass = s.facts * s.fact_index_bytes() + 3 * 8 * s.chunks + gathered + partials
    return chunk_pass, partials + s.relations * batch * elem + (s.relations + 1) * 8, resident


# ---- predictions ----------------------------------------------------------------------------------

def kernel_time(name: str, plan: Optional[WarpPlan], nbytes: float, per_fact_ns: float, gpu: GPU,
                per_partial_ns: float = 0.0) -> dict:
    """max(bytes / bandwidth, makespan) + launch, with the terms beside it. The makespan's warp
    durations: the start loads (L2), then the plan's facts (or, for the fixup pass, partials)."""
    bw_ns = nbytes / gpu.hbm_bytes_per_s * 1e9
    rec = dict(kernel=name, bytes=nbytes, bandwidth_ms=bw_ns * 1e-6)
    if plan is not None:
        active = plan.active()
        items = plan.fixup if per_partial_ns else plan.work
        unit = per_partial_ns or per_fact_ns
        durations = torch.where(active, plan.start_ns(gpu) + items.double() * unit, 0.0)
        path_ns = makespan(durations, plan.warps_per_block, gpu)
        rec.update(path_facts=makespan(torch.where(active, items.double(), 0.0), plan.warps_per_block, gpu),
                   path_ms=path_ns * 1e-6)
    else:
        path_ns = 0.0
        rec.update(path_facts=0.0, path_ms=0.0)
    rec["predicted_ms"] = (max(bw_ns, path_ns) + gpu.launch_ns) * 1e-6
    rec["bound"] = "bandwidth" if bw_ns >= path_ns else "critical path"
    return rec


def pull_prediction(kb: SparseKB, s: KBSizes, plan: WarpPlan, batch: int, dtype: torch.dtype, k: int, gpu: GPU,
                    facts_in_flight: int = FACTS_IN_FLIGHT) -> dict:
    """A planned (or old) pull of k branches: pass 1, and the fixup pass when the plan splits rows."""
    elem, acc = _sizes(dtype)
    partial_lanes = plan.partials_read()
    pass1_bytes, carry, resident = pull_bytes(s, batch, elem, acc, k, gpu, partial_lanes)
    per_fact = fact_ns(gpu, resident, s.index_bytes, facts_in_flight)
    kernels = [kernel_time("pass 1", plan, pass1_bytes, per_fact, gpu)]
    if partial_lanes:
        # The partials were written just before by pass 1: L2 reads, PARTIALS_IN_FLIGHT at a time. The
        # worker that ends a split row sums all its partials, so a hub's fixup grows with the hub.
        kernels.append(kernel_time("fixup", plan, carry, per_fact, gpu,
                                   per_partial_ns=gpu.l2_latency_ns / PARTIALS_IN_FLIGHT))
    return _combine(kernels, plan, per_fact, gpu, facts_in_flight)


def dr_prediction(kb: SparseKB, s: KBSizes, batch: int, dtype: torch.dtype, gpu: GPU,
                  facts_in_flight: int = FACTS_IN_FLIGHT, threads_per_block: int = 256) -> dict:
    elem, acc = _sizes(dtype)
    chunk_bytes, reduce_bytes, resident = dr_bytes(s, batch, elem, acc, gpu)
    plan = dr_plan(kb, batch, threads_per_block)
    per_fact = fact_ns(gpu, resident, s.index_bytes, facts_in_flight)
    kernels = [kernel_time("dr chunks", plan, chunk_bytes, per_fact, gpu),
               kernel_time("dr reduce", None, reduce_bytes, per_fact, gpu)]
    return _combine(kernels, plan, per_fact, gpu, facts_in_flight)


def _combine(kernels, plan, per_fact, gpu, facts_in_flight) -> dict:
    total_bytes = sum(kr["bytes"] for kr in kernels)
    ms = sum(kr["predicted_ms"] for kr in kernels)
    main = kernels[0]
    # The facts in flight per warp at which the first kernel's critical path would fall to its
    # bandwidth term (the path scales as 1 / facts in flight): past it, more memory-level
    # parallelism buys nothing.
    needed = facts_in_flight * main["path_ms"] / main["bandwidth_ms"] if main["bandwidth_ms"] else float("nan")
    return dict(plan=plan.label, workers_per_warp=plan.workers_per_warp, **work_balance(plan), fact_ns=per_fact, bytes=total_bytes,
                bandwidth_ms=sum(kr["bandwidth_ms"] for kr in kernels), path_ms=main["path_ms"],
                path_facts=main["path_facts"], predicted_ms=ms,
                hbm_fraction=total_bytes / (ms * 1e-3) / gpu.hbm_bytes_per_s, bound=main["bound"],
                in_flight_for_bandwidth=needed, kernels=kernels)


def _sizes(dtype: torch.dtype):
    return torch.empty(0, dtype=dtype).element_size(), torch.empty(0, dtype=acc_dtype(dtype)).element_size()


def _sum_ops(label, parts, gpu) -> dict:
    total_bytes = sum(p["bytes"] for p in parts)
    ms = sum(p["predicted_ms"] for p in parts)
    return dict(plan=label, bytes=total_bytes, predicted_ms=ms, bandwidth_ms=sum(p["bandwidth_ms"] for p in parts),
                hbm_fraction=total_bytes / (ms * 1e-3) / gpu.hbm_bytes_per_s,
                max_over_mean=max(p["max_over_mean"] for p in parts),
                kernels=[kr for p in parts for kr in p["kernels"]])


def predict(kb: SparseKB, batch: int, dtype: torch.dtype, gpu: GPU, *, k_intersect: int = 2,
            facts_in_flight: int = FACTS_IN_FLIGHT, backend: str = "cuda") -> list:
    """Records (op, plan, ...) for follow forward, forward + backward (forward, dx = the pull the
    other way, dr) and follow_intersect forward of k_intersect branches, under the merge-path plan
    and under the one-row-per-warp plan before it; for B <= 16 also under the merge path with one
    worker per warp (the launch without packing), whatever the launch does."""
    s = KBSizes.of(kb)
    new = {inv: planned_pull_plan(kb, batch, inv, backend) for inv in (False, True)}
    tpb = _warps_per_block_threads(new[False])
    old = {inv: row_per_warp_plan(kb, batch, inv, tpb) for inv in (False, True)}
    dr = dr_prediction(kb, s, batch, dtype, gpu, facts_in_flight, tpb)
    out = []
    variants = [(new, facts_in_flight), (old, OLD_PLAN_FACTS_IN_FLIGHT)]
    if batch <= WARP // 2:
        variants.append(({inv: planned_pull_plan(kb, batch, inv, backend, packed=False) for inv in (False, True)},
                         facts_in_flight))
    for plans, in_flight in variants:
        fwd = pull_prediction(kb, s, plans[False], batch, dtype, 1, gpu, in_flight)
        dx = pull_prediction(kb, s, plans[True], batch, dtype, 1, gpu, in_flight)
        inter = pull_prediction(kb, s, plans[False], batch, dtype, k_intersect, gpu, in_flight)
        label = fwd["plan"]
        out += [dict(op="follow", mode="forward", **fwd),
                dict(op="follow", mode="fwd+bwd", **_sum_ops(label, [fwd, dx, dr], gpu)),
                dict(op="follow dx", mode="backward", **dx),
                dict(op=f"follow_intersect-{k_intersect}", mode="forward", **inter)]
    out.append(dict(op="follow dr", mode="backward", **dr))
    return out


def _warps_per_block_threads(plan: WarpPlan) -> int:
    """Threads per block of the planned pull's launch: rows_by_batch's constant (launch.h's
    kThreadsPerBlock), read off launch_plan's configuration instead of copied here."""
    return plan.warps_per_block * WARP


# ---- the command ----------------------------------------------------------------------------------

def kb_workloads(keys, skews, metaqa_kb=None) -> list:
    """(key, KBSpec) per KB: the bench suite's (kgqa_kernels/bench/workloads.py), each power-law
    size at every skew (the Zipf exponent of subjects, objects and relations)."""
    from .workloads import kb_specs

    specs = kb_specs(metaqa_kb)
    out = []
    for key in keys:
        if key not in specs:
            raise ValueError(f"--kbs: unknown KB {key!r}; choose from {', '.join(specs)}")
        spec = specs[key]
        if key.startswith("pl-") and skews:
            out += [(f"{key}@{e:g}", replace(spec, exponent=e, name=f"{spec.name} zipf {e:g}")) for e in skews]
        else:
            out.append((key, spec))
    return out


def hub_share(kb: SparseKB) -> float:
    """The largest row of the forward pull (an object's facts), as a share of all facts."""
    lengths = _row_lengths(kb, False)
    return float(lengths.max()) / max(kb.num_facts, 1) if lengths.numel() else 0.0


def run(keys, skews, gpus, batches, dtypes, metaqa_kb=None, facts_in_flight=FACTS_IN_FLIGHT, log=print) -> dict:
    result = dict(model="kgqa_kernels.bench.gpu_model", facts_in_flight=facts_in_flight,
                  partials_in_flight=PARTIALS_IN_FLIGHT,
                  l2_resident_share=L2_RESIDENT_SHARE, plan_items=layout.PLAN_ITEMS,
                  gpus={g: asdict(gpu_preset(g)) for g in gpus}, kbs=[], records=[])
    for key, spec in kb_workloads(keys, skews, metaqa_kb):
        t0 = time.perf_counter()
        kb = spec.build()
        built = time.perf_counter() - t0
        info = dict(key=key, name=spec.name, entities=kb.num_entities, relations=kb.num_relations,
                    facts=kb.num_facts, hub_share=hub_share(kb), build_s=built)
        t0 = time.perf_counter()
        for g in gpus:
            for batch in batches:
                for dt in dtypes:
                    for rec in predict(kb, batch, getattr(torch, dt), gpu_preset(g), facts_in_flight=facts_in_flight):
                        result["records"].append(dict(kb=key, gpu=g, batch=batch, dtype=dt, **rec))
        info["model_s"] = time.perf_counter() - t0
        result["kbs"].append(info)
        log(f"{key}: {kb.num_facts:,} facts, hub {100 * info['hub_share']:.1f}% of facts; built in {built:.1f} s, "
            f"modelled in {info['model_s']:.1f} s")
        del kb
    return result


def markdown(result, command: str = "") -> str:
    lines = ["# GPU work model: predictions, not measurements", ""]
    if command:
        lines += [f"`{command}`", ""]
    lines += [
        f"Facts in flight per warp: {result['facts_in_flight']} (the one-row-per-warp plan: {OLD_PLAN_FACTS_IN_FLIGHT}; fixup partials: {result['partials_in_flight']}); a gathered tensor counts as L2-resident when it "
        f"fits in {result['l2_resident_share']:.0%} of the L2; PLAN_ITEMS = {result['plan_items']}. "
        "Bytes: HBM traffic at 32-byte sectors. Path: the makespan of the warps list-scheduled onto the GPU "
        "(ms; in facts for the first kernel). Predicted = max(bytes / bandwidth, path) + launch, per kernel, summed. "
        "% HBM: bytes / predicted time / datasheet bandwidth. max/mean: the slowest warp's facts over the mean warp's.",
        "", "## KBs", "", "| KB | entities | relations | facts | largest row (% of facts) |", "|---|---|---|---|---|"]
    for kb in result["kbs"]:
        lines.append(f"| {kb['key']} ({kb['name']}) | {kb['entities']:,} | {kb['relations']:,} | {kb['facts']:,} | "
                     f"{100 * kb['hub_share']:.2f}% |")
    lines += ["", "## Summary: follow", "", *summary(result)]
    packing = packing_summary(result)
    if packing:
        lines += ["", "## Narrow batches: workers packed into warps", "",
                  "For B <= 16 the launch may put several workers in each warp (csrc/cuda/planned_pull.cuh: "
                  f"on KBs of many workers, or up to {PACK_ENV} when set), their row loops in lockstep; "
                  "beside it, the same plan with one worker per warp.", "", *packing]
    lines += ["", "## Every kernel"]
    groups = {}
    for r in result["records"]:
        groups.setdefault((r["gpu"], r["batch"], r["dtype"]), []).append(r)
    for (g, batch, dt), recs in groups.items():
        lines += ["", f"### {result['gpus'][g]['name']}, B = {batch}, {dt}", "",
                  "| KB | op | plan | max/mean warp | path (facts) | GB | bytes/BW ms | path ms | predicted ms | % HBM | bound |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in recs:
            path_facts = f"{r['path_facts']:,.0f}" if "path_facts" in r else "-"
            path_ms = f"{r['path_ms']:.3f}" if "path_ms" in r else "-"
            lines.append(
                f"| {r['kb']} | {r['op']} {r['mode']} | {r['plan']} | {r['max_over_mean']:.2f} | {path_facts} | "
                f"{r['bytes'] / 1e9:.3f} | {r['bandwidth_ms']:.3f} | {path_ms} | {r['predicted_ms']:.3f} | "
                f"{100 * r['hbm_fraction']:.0f}% | {r.get('bound', '-')} |")
    return "\n".join(lines) + "\n"


def summary(result) -> list:
    """Markdown rows: per KB, GPU, B and dtype, follow under the merge path beside the plan before
    it: the slowest warp over the mean, predicted forward (and its share of HBM bandwidth) and
    forward + backward, and what bounds the forward."""
    find = {(r["kb"], r["gpu"], r["batch"], r["dtype"], r["op"], r["mode"], r["plan"]): r for r in result["records"]}
    rows = ["| KB | GPU | B | dtype | max/mean warp: merge path / before | forward ms: merge path / before | "
            "forward % HBM | forward bound (needs N facts in flight) | fwd+bwd ms: merge path / before |",
            "|---|---|---|---|---|---|---|---|---|"]
    for (kb, g, batch, dt, op, mode, plan), new in find.items():
        if (op, mode, plan) != ("follow", "forward", MERGE_PATH):
            continue
        old = find[(kb, g, batch, dt, op, mode, "one row per warp (before)")]
        fb_new = find[(kb, g, batch, dt, op, "fwd+bwd", MERGE_PATH)]
        fb_old = find[(kb, g, batch, dt, op, "fwd+bwd", "one row per warp (before)")]
        rows.append(f"| {kb} | {g} | {batch} | {dt} | {new['max_over_mean']:.2f} / {old['max_over_mean']:,.0f} | "
                    f"{new['predicted_ms']:.3f} / {old['predicted_ms']:.3f} | {100 * new['hbm_fraction']:.0f}% | "
                    f"{new['bound']} ({new['in_flight_for_bandwidth']:.1f}) | "
                    f"{fb_new['predicted_ms']:.3f} / {fb_old['predicted_ms']:.3f} |")
    return rows


def packing_summary(result) -> list:
    """Markdown rows: per KB, GPU, B <= 16 and dtype, follow under the merge path as the launch packs
    it (its workers per warp) beside one worker per warp: the critical path of the forward's pass 1,
    the predicted forward and forward + backward, and what bounds the forward."""
    find = {(r["kb"], r["gpu"], r["batch"], r["dtype"], r["op"], r["mode"], r["plan"]): r for r in result["records"]}
    rows = ["| KB | GPU | B | dtype | workers per warp | forward path ms: packed / one worker per warp | "
            "forward ms: packed / one worker per warp | forward bound: packed / one per warp | "
            "fwd+bwd ms: packed / one worker per warp |", "|---|---|---|---|---|---|---|---|---|"]
    for (kb, g, batch, dt, op, mode, plan), one in find.items():
        if (op, mode, plan) != ("follow", "forward", ONE_WORKER_PER_WARP):
            continue
        packed = find[(kb, g, batch, dt, op, mode, MERGE_PATH)]
        fb_p = find[(kb, g, batch, dt, op, "fwd+bwd", MERGE_PATH)]
        fb_1 = find[(kb, g, batch, dt, op, "fwd+bwd", ONE_WORKER_PER_WARP)]
        rows.append(f"| {kb} | {g} | {batch} | {dt} | {packed['workers_per_warp']} | "
                    f"{packed['path_ms']:.3f} / {one['path_ms']:.3f} | "
                    f"{packed['predicted_ms']:.3f} / {one['predicted_ms']:.3f} | {packed['bound']} / {one['bound']} | "
                    f"{fb_p['predicted_ms']:.3f} / {fb_1['predicted_ms']:.3f} |")
    return rows if len(rows) > 2 else []


def _csv(s):
    return [x for x in s.split(",") if x]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kgqa_kernels.bench.gpu_model", description=__doc__.split("\n\n")[0])
    ap.add_argument("--kbs", type=_csv, default=["metaqa", "pl-1m", "pl-10m"],
                    help="comma list of the bench suite's KBs: small, metaqa, pl-1m, pl-10m, pl-30m")
    ap.add_argument("--skews", type=lambda s: [float(x) for x in _csv(s)], default=[],
                    help="Zipf exponents of the power-law KBs (default: the suite's 1.1)")
    ap.add_argument("--gpus", type=_csv, default=["h100", "h200"], help=",".join(GPUS))
    ap.add_argument("--batches", type=lambda s: [int(x) for x in _csv(s)], default=[64])
    ap.add_argument("--dtypes", type=_csv, default=["float32", "bfloat16"])
    ap.add_argument("--metaqa-kb", help="MetaQA's kb.txt: the metaqa KB is then the real one (with inverses)")
    ap.add_argument("--facts-in-flight", type=int, default=FACTS_IN_FLIGHT,
                    help="facts whose gathers a warp of the planned pull and of dr has in flight at once "
                         "(default: the kernels' layout.PULL_UNROLL; the one-row-per-warp plan keeps 1)")
    ap.add_argument("--out", default="gpu-model", help="output folder (gpu-model.md, gpu-model.json)")
    args = ap.parse_args(argv)
    for g in args.gpus:
        gpu_preset(g)
    for dt in args.dtypes:
        if not isinstance(getattr(torch, dt, None), torch.dtype) or not getattr(torch, dt).is_floating_point:
            ap.error(f"--dtypes: {dt!r} is not a torch floating dtype")
    if args.facts_in_flight < 1:
        ap.error(f"--facts-in-flight must be at least 1, got {args.facts_in_flight}")
    result = run(args.kbs, args.skews, args.gpus, args.batches, args.dtypes, args.metaqa_kb, args.facts_in_flight)
    os.makedirs(args.out, exist_ok=True)
    command = "python -m kgqa_kernels.bench.gpu_model " + " ".join(argv if argv is not None else sys.argv[1:])
    if PACK_ENV in os.environ:  # it changes the launch, so it is part of the command
        command = f"{PACK_ENV}={os.environ[PACK_ENV]} {command}"
    with open(os.path.join(args.out, "gpu-model.json"), "w") as f:
        json.dump(dict(result, command=command), f, indent=1)
    with open(os.path.join(args.out, "gpu-model.md"), "w") as f:
        f.write(markdown(result, command))
    print(f"wrote {args.out}/gpu-model.md, {args.out}/gpu-model.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
