"""``launch_plan()``: how a pull-shaped GPU kernel divides its work, as the code that launches it
computes it.

Every pull-shaped GPU kernel (follow forward and dx, follow_intersect forward and backward, in
CUDA and Triton) runs on one work plan, defined in csrc/work_plan.h: a merge path over rows and
facts that gives each worker at most ``layout.PLAN_ITEMS`` facts, whatever the KB's skew. The
counts here come from the kernels' own plan code (the CUDA op ``launch_plan``, run by the
emulation on CPU tensors; the Triton plan kernel), not from a copy of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor

from . import checks

# The pull-shaped ops, and whether each pulls against the direction it is asked for: dx of a
# follow is the pull in the other direction.
PULL_OPS = {
    "follow": False,
    "follow_backward_x": True,
    "follow_intersect": False,
    "follow_intersect_backward": False,
}
BACKENDS = ("cuda", "triton")


@dataclass(frozen=True)
class LaunchPlan:
    """The work of one planned pull launch.

    ``work``: int64, per unit of the launch, its fact steps in the main pass: each warp of the CUDA
    launch (in the hardware's numbering: blocks x-fastest, warps by linear thread index), or each
    Triton program (in program-id order). ``fixup``: the partial sums each adds in the fixup pass
    that completes rows split over several workers. ``grid``: the launch grid (blocks; programs
    for Triton); ``block``: threads per block (CUDA), None for Triton.

    A CUDA warp holds one worker (its work: the facts the worker reads), except when the launch packs
    a narrow batch (B <= 16 on a KB of many workers, or as KGQA_PULL_WORKERS_PER_WARP allows:
    planned_pull_config in csrc/cuda/planned_pull.cuh): block.x is then the lanes per worker (< 32)
    and a warp holds 32 / block.x consecutive workers. Such a warp runs its workers' row loops in
    lockstep, so its work is the critical path of a SIMT warp, not a sum over workers: for
    each row-loop iteration j, the most facts any of its workers reads in its j-th row, summed over
    j (lanes reconverge after each row); its fixup, the most partials any of its workers adds.
    ``work.sum()`` is therefore the fact steps of all the launch's warps: each fact once per warp
    holding its batch columns when not packed; packed, from facts / (32 / block.x) (a warp's workers
    all in step) to facts (never two in step)."""

    backend: str
    op: str
    inverse: bool
    batch: int
    work: Tensor
    fixup: Tensor
    grid: Tuple[int, ...]
    block: Optional[Tuple[int, ...]]


def launch_plan(kb, batch: int, *, op: str = "follow", backend: str = "cuda", inverse: bool = False) -> LaunchPlan:
    """The work plan of ``op`` on ``kb`` for a batch of ``batch`` columns (``inverse``: the pull
    into subjects, as ``follow(..., inverse=True)``).

    ``backend="cuda"`` gives the CUDA launch: on a KB on a GPU from the CUDA kernels' own host
    code, on a CPU KB from the same code run by the emulation (every build has it).
    ``backend="triton"`` gives the Triton launch: on a GPU, or on the CPU under the interpreter
    (TRITON_INTERPRET=1 set before triton is imported)."""
    who = "launch_plan()"
    checks.check_kb(who, kb)
    batch = checks.check_count(who, "batch", batch)
    inverse = checks.check_inverse(who, inverse)
    if op not in PULL_OPS:
        raise ValueError(f"{who}: op must be one of {', '.join(PULL_OPS)}, got {op!r}")
    if backend not in BACKENDS:
        raise ValueError(f"{who}: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    direction = inverse != PULL_OPS[op]
    if backend == "cuda":
        work, fixup, config = _cuda_ops(kb.device).launch_plan(kb.tensors(), batch, direction)
        return LaunchPlan(backend, op, inverse, batch, work, fixup, tuple(config[:3]), tuple(config[3:]))
    from . import backends

    if not backends.triton_usable(kb.device.type):
        raise ValueError(f"{who}: backend='triton' cannot run on {kb.device} here (Triton needs a CUDA GPU, or "
                         "TRITON_INTERPRET=1 set before triton is imported to run on the CPU)")
    from .triton import work_plan as triton_plan

    work, fixup, grid = triton_plan.launch_plan(kb.tensors(), batch, direction)
    return LaunchPlan(backend, op, inverse, batch, work, fixup, tuple(grid), None)


def _cuda_ops(device: torch.device):
    from . import backends

    if device.type == "cuda":
        if not backends.cuda_kernels_built():
            raise ValueError("launch_plan(): this build of kgqa_kernels has no CUDA kernels")
        return torch.ops.kgqa_kernels
    return backends.op_namespace("emulated")
