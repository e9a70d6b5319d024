"""What every Triton op file shares: the op namespace, accumulator dtypes, branch pointers, the
autotuning configurations and the bounds checks of what the kernels read (csrc/bounds.h).

Sums never depend on the launch configuration: each program adds facts one at a time in index
order, vectorised over the batch only, into whole output rows, fixed chunks of dr, or the fixed
pieces of a row that the work plan (kgqa_kernels/triton/work_plan.py, csrc/work_plan.h) splits and
its fixup adds in worker order, none of which depends on BLOCK_B. So autotuning (which picks a
configuration by timing, possibly differently in each process) changes speed, never the result, and
every kernel is deterministic without atomics.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch._subclasses.fake_tensor import FakeTensor
from torch._subclasses.functional_tensor import FunctionalTensor
from torch.library import triton_op, wrap_triton

NAMESPACE = "kgqa_triton"
MAX_BRANCHES = 8  # pointer arguments per branch list in one launch (X0..X7)

# Under TRITON_INTERPRET=1 every program instance costs milliseconds and autotuning would run each
# configuration: one small configuration there.
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"


def kernel_op(name: str, *, opaque: bool = False):
    """Decorator defining op ``kgqa_triton::name`` from a function that launches Triton kernels:
    torch.library.triton_op, so torch.compile traces into the kernels. Under the interpreter torch
    cannot trace Triton kernels, so there it is an opaque custom op whose fake is the same function
    (its launches are skipped on fake tensors). ``opaque``: an opaque custom op on a GPU too, for a
    function whose host code reads sizes from the data (follow_push), which torch.compile could
    not trace; the function must return its outputs before any such read when ``traced``."""
    def define(fn):
        if not INTERPRETED and not opaque:
            return triton_op(f"{NAMESPACE}::{name}", fn, mutates_args=())
        op = torch.library.custom_op(f"{NAMESPACE}::{name}", fn, mutates_args=())
        op.register_fake(fn)
        return op

    return define


def launch(kernel, grid, *args, **kwargs) -> None:
    """``wrap_triton(kernel)[grid](*args, **kwargs)``: visible to torch.compile as a kernel call.

    Under the interpreter wrap_triton hands back the interpreted function itself, which cannot run
    on the fake tensors of tracing (torch.compile, opcheck); there the launch is skipped, since
    tracing needs only the outputs' metadata, which the caller has already set."""
    if INTERPRETED and traced(*args):
        return
    wrap_triton(kernel)[grid](*args, **kwargs)


def traced(*args) -> bool:
    """Whether any argument is a fake or functional tensor: the op runs as its own fake (torch.compile,
    opcheck), where only the outputs' metadata is wanted."""
    return any(_traced(a) for a in args)


def _traced(a) -> bool:
    return isinstance(a, (FakeTensor, FunctionalTensor)) or (
        isinstance(a, torch.Tensor) and torch._is_functional_tensor(a)
    )


def acc_dtype(dtype: torch.dtype):
    """Accumulator of a kernel reading ``dtype``: float64 stays float64, the rest sum in float32."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def batch_configs(widths=(32, 64, 128), warps=(1, 2, 4)):
    """Configurations over BLOCK_B (batch columns per program) and warps per program."""
    if INTERPRETED:
        return [triton.Config({"BLOCK_B": 16}, num_warps=1)]
    return [triton.Config({"BLOCK_B": b}, num_warps=w) for b in widths for w in warps if b >= 32 * w]


def elementwise_configs():
    if INTERPRETED:
        return [triton.Config({"BLOCK": 1024}, num_warps=1)]
    return [triton.Config({"BLOCK": b}, num_warps=w) for b, w in ((512, 4), (1024, 4), (2048, 8))]


def padded(ts, count=MAX_BRANCHES):
    """ts followed by copies of ts[0] up to ``count`` pointer arguments (unused ones are never read)."""
    ts = list(ts)
    return ts + [ts[0]] * (count - len(ts))


@triton.jit
def pick(i: tl.constexpr, p0, p1, p2, p3, p4, p5, p6, p7):
    """The i-th of eight pointer arguments, chosen at compile time."""
    if i == 0:
        return p0
    elif i == 1:
        return p1
    elif i == 2:
        return p2
    elif i == 3:
        return p3
    elif i == 4:
        return p4
    elif i == 5:
        return p5
    elif i == 6:
        return p6
    else:
        return p7


@triton.jit
def report(err, bad, code):
    """Leave ``code`` in the error flag when ``bad`` (csrc/bounds.h; the largest code wins)."""
    if bad:
        tl.atomic_max(err, code)


@triton.jit
def segment(ptr, row, facts, err, code):
    """(begin, end) of segment ``row``, empty and reported when its row pointers are out of range."""
    begin = tl.load(ptr + row)
    end = tl.load(ptr + row + 1)
    bad = (begin < 0) | (begin > end) | (end > facts)
    report(err, bad, code)
    return begin, tl.where(bad, begin, end)


@triton.jit
def fact_ids(col, rel, f, E, R, err, PTR_SLOT):
    """(entity id, relation id, whether both are in range) of fact f; one out of range is reported
    (the col and rel slots follow the ptr slot)."""
    c = tl.load(col + f).to(tl.int64)
    p = tl.load(rel + f).to(tl.int64)
    c_ok = (c >= 0) & (c < E)
    p_ok = (p >= 0) & (p < R)
    report(err, c_ok == 0, PTR_SLOT + 2)
    report(err, p_ok == 0, PTR_SLOT + 3)
    return c, p, c_ok & p_ok


class KernelErrors:
    """The error flag of one op call (csrc/bounds.h): the kernels check every row pointer, id and
    chunk entry they read, skip what is out of range and leave a code in ``flag``; ``done()`` after
    the last launch turns it into an error. On the CPU (the interpreter) the launches have finished
    when they return, so the error comes at once. On a GPU, reading the flag after each call would
    synchronise every op, so ``done()`` queues a copy into pinned memory and the next call on the
    device whose copy has landed raises it (as csrc/cuda/launch_cuda.cuh does for the CUDA ops).
    Under torch.compile the flag is not read: the kernels still never read out of bounds."""

    _states: dict = {}

    def __init__(self, op: str, device: torch.device):
        self.op = op
        self.cpu = device.type == "cpu"
        self.traced = torch.compiler.is_compiling()
        if self.cpu or self.traced:
            self.flag = torch.zeros(1, dtype=torch.int32, device=device)
            return
        state = self._states.get(device)
        if state is None:
            state = self._states[device] = {
                "flag": torch.zeros(1, dtype=torch.int32, device=device),
                "host": torch.zeros(1, dtype=torch.int32, pin_memory=True),
                "event": torch.cuda.Event(), "pending": False, "op": op,
            }
        self.state = state
        if state["pending"] and state["event"].query():
            state["pending"] = False
            code = int(state["host"][0])
            if code:
                state["host"].zero_()
                state["flag"].zero_()
                _raise_bad_value(state["op"], code, "(reported at the next call on this device) ")
        self.flag = state["flag"]

    def done(self) -> None:
        if self.traced or _traced(self.flag):
            return
        if self.cpu:
            code = int(self.flag[0])
            if code:
                _raise_bad_value(self.op, code)
            return
        state = self.state
        if not state["pending"]:  # else a copy is in flight; the flag stays set for a later one
            state["host"].copy_(state["flag"], non_blocking=True)
            state["event"].record()
            state["pending"], state["op"] = True, self.op


def _raise_bad_value(op: str, code: int, when: str = "") -> None:
    from .. import _C

    raise RuntimeError(f"{op}(): {when}{_C.bad_value_message(code)}")
