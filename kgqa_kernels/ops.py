"""The public ops. Each checks its arguments (naming the one that is wrong), picks a backend and
runs it; the kernels see entity tensors as [E, B] (batch innermost), which is the transposed view
of the [B, E] tensors users pass, so no data moves when hops are chained."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from . import _registration  # noqa: F401  (fake kernels and autograd)
from . import backends, reference
from .kb import SparseKB

ops = torch.ops.kgqa_kernels
FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
INTERSECT_TNORMS = ("min", "product")
UNION_TNORMS = ("max", "product")
MAX_TIE_BRANCHES = 8  # csrc/tnorm.h: kMaxTieBranches, one uint8 of tie bits per element


def _check_kb(op: str, kb) -> None:
    if not isinstance(kb, SparseKB):
        raise TypeError(f"{op}(): kb must be a kgqa_kernels.SparseKB, got {type(kb).__name__}")


def _check_float(op: str, name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}(): {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}(): {name} must be float32, float64, bfloat16 or float16, got {t.dtype}")


def _check_weights(op: str, name: str, t, cols: int, cols_name: str, kb: SparseKB, batch=None) -> None:
    _check_float(op, name, t)
    if t.dim() != 2 or t.shape[1] != cols:
        raise ValueError(f"{op}(): {name} must be [B, {cols_name}={cols}], got shape {tuple(t.shape)}")
    if batch is not None and t.shape[0] != batch:
        raise ValueError(f"{op}(): {name} has batch size {t.shape[0]}, expected {batch} (the batch size of x)")
    if t.device != kb.device:
        raise ValueError(f"{op}(): {name} is on {t.device} but kb is on {kb.device} (use kb.to(device))")


def _check_follow_args(op: str, x, r, kb, xname="x", rname="r", dtype=None) -> None:
    _check_weights(op, xname, x, kb.num_entities, "num_entities", kb)
    _check_weights(op, rname, r, kb.num_relations, "num_relations", kb, batch=x.shape[0])
    want = dtype or x.dtype
    for name, t in ((xname, x), (rname, r)):
        if t.dtype != want:
            raise TypeError(f"{op}(): {name} has dtype {t.dtype}, expected {want} like the other inputs")


# The Triton kernels take each branch as its own pointer argument, up to this many.
TRITON_MAX_BRANCHES = 8  # kgqa_kernels/triton/_launch.py: MAX_BRANCHES


def _check_branch_count(op: str, backend: str, k: int) -> None:
    if backend == "triton" and k > TRITON_MAX_BRANCHES:
        raise ValueError(f"{op}(): backend='triton' takes at most {TRITON_MAX_BRANCHES} inputs, got {k}")


def _check_tnorm(op: str, tnorm, allowed) -> None:
    if tnorm not in allowed:
        raise ValueError(f"{op}(): tnorm must be one of {allowed}, got {tnorm!r}")


# Above this fraction of nonzero entity weights, the dense pull beats pushing from a frontier.
PUSH_MAX_DENSITY = 1 / 32
DIRECTIONS = ("auto", "pull", "push")


def _frontier(x: torch.Tensor):
    """(ptr [B+1], ids, vals) of the nonzero entries of x [B, E], ids sorted within each example."""
    if x.layout == torch.sparse_coo:
        x = x.coalesce()  # sorted by (b, s), duplicates summed
        b, ids = x.indices()
        vals = x.values()
    elif x.layout == torch.sparse_csr:
        return x.crow_indices().to(torch.int64), x.col_indices().to(torch.int64), x.values()
    elif x.device.type == "cpu" and x.is_contiguous():
        return ops.dense_frontier(x, x.numel())  # one parallel read of x
    else:
        b, ids = x.nonzero(as_tuple=True)  # row-major order: sorted by (b, s)
        vals = x[b, ids]
    ptr = torch.zeros(x.shape[0] + 1, dtype=torch.int64, device=x.device)
    torch.cumsum(torch.bincount(b, minlength=x.shape[0]), 0, out=ptr[1:])
    return ptr, ids, vals


def _choose_direction(x: torch.Tensor, direction: str):
    """("push", frontier) or ("pull", None)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"follow(): direction must be one of {DIRECTIONS}, got {direction!r}")
    sparse = x.layout != torch.strided
    if direction == "push" and not sparse and x.requires_grad:
        raise ValueError(
            "follow(): direction='push' needs an x without gradient, or a sparse x (the gradient of a "
            "dense x is dense: use direction='pull')"
        )
    if direction == "pull" or (direction == "auto" and not sparse and (x.requires_grad or x.numel() == 0)):
        return "pull", None
    if direction == "push" or sparse:
        return "push", _frontier(x)
    # auto on a dense x without gradient: a first hop (a few seed entities per example) is far
    # cheaper to push; finding out costs one read of x.
    limit = int(PUSH_MAX_DENSITY * x.numel())
    if x.device.type == "cpu" and x.is_contiguous():
        ptr, ids, vals = ops.dense_frontier(x, limit)
        return ("push", (ptr, ids, vals)) if ptr.numel() else ("pull", None)
    return ("push", _frontier(x)) if int(torch.count_nonzero(x)) <= limit else ("pull", None)


def follow(
    x: torch.Tensor,
    r: torch.Tensor,
    kb: SparseKB,
    *,
    inverse: bool = False,
    direction: str = "auto",
    backend: Optional[str] = None,
):
    """One hop over the KB: ``y[b, o] = sum over facts (s, p, o) of x[b, s] * r[b, p] * w``.

    x: [B, num_entities] entity weights, dense or a torch sparse (COO or CSR) tensor; r:
    [B, num_relations] relation weights; one float dtype (16-bit inputs accumulate in float32).
    ``inverse=True`` follows facts from object to subject.

    ``direction``: "pull" computes every output row from the facts that reach it (dense x, later
    hops); "push" spreads the few nonzero entries of x along the facts that leave them (first hops);
    "auto" pushes for a sparse x, or a dense x without gradient whose nonzeros are at most
    ``PUSH_MAX_DENSITY`` of it. Both give the same result. A sparse x gets gradients for its
    stored values only.

    ``backend``: "auto" | "cpu" | "cuda" | "triton" | "reference"; None (every op's default) takes
    the process-wide default: ``set_backend()``, else $KGQA_BACKEND, else "auto".

    Returns [B, num_entities] as a transposed view of a batch-innermost buffer, the layout the next
    hop reads fastest (``.contiguous()`` if you need row-major).
    """
    _check_kb("follow", kb)
    _check_follow_args("follow", x, r, kb)
    chosen = backends.resolve(backend, x.device, "follow")
    if chosen == "reference":
        _choose_direction(x, direction)  # the same argument checks
        return reference.follow(x.to_dense() if x.layout != torch.strided else x, r, kb, inverse=inverse)
    impl = backends.op_namespace(chosen)
    how, frontier = _choose_direction(x, direction)
    if how == "push":
        ptr, ids, vals = frontier
        return impl.follow_push(ptr, ids, vals, r.t(), kb._tensors, bool(inverse)).t()
    if x.layout != torch.strided:
        x = x.to_dense()
    return impl.follow(x.t(), r.t(), kb._tensors, bool(inverse)).t()


def _check_combine_args(op: str, xs) -> list:
    if len(xs) == 1 and isinstance(xs[0], (list, tuple)):
        xs = xs[0]
    xs = list(xs)
    if len(xs) < 2:
        raise ValueError(f"{op}(): needs at least 2 tensors, got {len(xs)}")
    for i, t in enumerate(xs):
        _check_float(op, f"xs[{i}]", t)
        if t.shape != xs[0].shape:
            raise ValueError(f"{op}(): xs[{i}] has shape {tuple(t.shape)}, expected {tuple(xs[0].shape)} like xs[0]")
        if t.dtype != xs[0].dtype:
            raise TypeError(f"{op}(): xs[{i}] has dtype {t.dtype}, expected {xs[0].dtype} like xs[0]")
        if t.device != xs[0].device:
            raise ValueError(f"{op}(): xs[{i}] is on {t.device}, expected {xs[0].device} like xs[0]")
    return xs


def intersect(*xs: torch.Tensor, tnorm: str = "min", backend: Optional[str] = None) -> torch.Tensor:
    """Fuzzy AND of k >= 2 same-shape tensors: elementwise minimum (``tnorm="min"``, Rigel-Intersect;
    the gradient is split evenly among tied inputs, as with ``torch.stack(xs).amin(0)``) or product
    (``tnorm="product"``)."""
    xs = _check_combine_args("intersect", xs)
    _check_tnorm("intersect", tnorm, INTERSECT_TNORMS)
    chosen = backends.resolve(backend, xs[0].device, "intersect")
    if chosen == "reference":
        return reference.intersect(*xs, tnorm=tnorm)
    _check_branch_count("intersect", chosen, len(xs))
    return backends.op_namespace(chosen).intersect(xs, tnorm)


def union(*xs: torch.Tensor, tnorm: str = "max", backend: Optional[str] = None) -> torch.Tensor:
    """Fuzzy OR of k >= 2 same-shape tensors: elementwise maximum (``tnorm="max"``) or the
    probabilistic sum ``1 - prod(1 - x)`` (``tnorm="product"``)."""
    xs = _check_combine_args("union", xs)
    _check_tnorm("union", tnorm, UNION_TNORMS)
    chosen = backends.resolve(backend, xs[0].device, "union")
    if chosen == "reference":
        return reference.union(*xs, tnorm=tnorm)
    _check_branch_count("union", chosen, len(xs))
    return backends.op_namespace(chosen).union(xs, tnorm)


def follow_intersect(
    xs: Sequence[torch.Tensor],
    rs: Sequence[torch.Tensor],
    kb: SparseKB,
    *,
    inverse: bool = False,
    tnorm: str = "min",
    backend: Optional[str] = None,
) -> torch.Tensor:
    """``intersect(*[follow(x, r, kb) for x, r in zip(xs, rs)], tnorm=tnorm)`` in one pass that
    never stores the k follow outputs (one branch per topic entity of the question)."""
    _check_kb("follow_intersect", kb)
    if isinstance(xs, torch.Tensor) or isinstance(rs, torch.Tensor):
        raise TypeError("follow_intersect(): xs and rs must be sequences of tensors, one per branch")
    xs, rs = list(xs), list(rs)
    if len(xs) < 2:
        raise ValueError(f"follow_intersect(): needs at least 2 branches, got {len(xs)}")
    if len(rs) != len(xs):
        raise ValueError(f"follow_intersect(): xs has {len(xs)} branches but rs has {len(rs)}")
    _check_tnorm("follow_intersect", tnorm, INTERSECT_TNORMS)
    for i, (x, r) in enumerate(zip(xs, rs)):
        _check_follow_args("follow_intersect", x, r, kb, f"xs[{i}]", f"rs[{i}]", dtype=xs[0].dtype)
        if x.shape[0] != xs[0].shape[0]:
            raise ValueError(
                f"follow_intersect(): xs[{i}] has batch size {x.shape[0]}, expected {xs[0].shape[0]} like xs[0]"
            )
    chosen = backends.resolve(backend, xs[0].device, "follow_intersect")
    if chosen == "reference":
        return reference.follow_intersect(xs, rs, kb, inverse=inverse, tnorm=tnorm)
    _check_branch_count("follow_intersect", chosen, len(xs))
    # For min, the forward keeps a uint8 mask of the tied branches when a backward will follow, so
    # the backward needs no recomputation (1 byte per element instead of the k follow outputs).
    save_ties = (
        tnorm == "min" and len(xs) <= MAX_TIE_BRANCHES and torch.is_grad_enabled()
        and any(t.requires_grad for t in xs + rs)
    )
    out, _ = backends.op_namespace(chosen).follow_intersect([x.t() for x in xs], [r.t() for r in rs], kb._tensors, bool(inverse), tnorm, save_ties)
    return out.t()
