"""intersect and union: elementwise t-norms over k >= 2 same-shape tensors. The public ops, and the
fake kernels and autograd of the combine ops."""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends, checks, reference


def intersect(*xs: torch.Tensor, tnorm: str = "min", backend: Optional[str] = None) -> torch.Tensor:
    """Fuzzy AND of k >= 2 same-shape tensors: elementwise minimum (``tnorm="min"``, Rigel-Intersect;
    the gradient is split evenly among tied inputs, as with ``torch.stack(xs).amin(0)``) or product
    (``tnorm="product"``)."""
    return _combine("intersect", xs, tnorm, checks.INTERSECT_TNORMS, backend)


def union(*xs: torch.Tensor, tnorm: str = "max", backend: Optional[str] = None) -> torch.Tensor:
    """Fuzzy OR of k >= 2 same-shape tensors: elementwise maximum (``tnorm="max"``) or the
    probabilistic sum ``1 - prod(1 - x)`` (``tnorm="product"``)."""
    return _combine("union", xs, tnorm, checks.UNION_TNORMS, backend)


def _combine(op: str, xs, tnorm: str, allowed, backend: Optional[str]) -> torch.Tensor:
    xs = checks.check_combine_args(f"{op}()", xs)
    checks.check_tnorm(f"{op}()", tnorm, allowed)
    chosen = backends.resolve(backend, xs[0].device, op)
    if chosen == "reference":
        return getattr(reference, op)(*xs, tnorm=tnorm)
    checks.check_branch_count(f"{op}()", chosen, len(xs))
    return getattr(backends.op_namespace(chosen), op)(xs, tnorm)


# ---- fake kernels and autograd ------------------------------------------------------------------

def combined_like(xs):
    """The output of a combine kernel: the inputs' layout when all share strides and are dense
    (csrc/checks.h: common_layout), else contiguous."""
    ref = xs[0]
    same = checks.non_overlapping_and_dense(ref) and all(t.stride() == ref.stride() for t in xs)
    return torch.empty_like(ref) if same else ref.new_empty(ref.shape)


def _combine_fake(xs, tnorm):
    return combined_like(xs)


def _combine_backward_fake(grad, xs, out, tnorm):
    return [combined_like(xs) for _ in xs]


def register(namespace: str) -> None:
    """Fakes and autograd of intersect, union and their backwards in ``namespace`` (a C++ library)."""
    for name in ("intersect", "union"):
        torch.library.register_fake(f"{namespace}::{name}", _combine_fake)
        torch.library.register_fake(f"{namespace}::{name}_backward", _combine_backward_fake)
    register_autograd(namespace)


def register_autograd(namespace: str) -> None:
    ops = getattr(torch.ops, namespace)

    def setup(ctx, inputs, output):
        xs, tnorm = inputs
        ctx.save_for_backward(*xs, output)
        ctx.tnorm = tnorm

    def make_backward(backward_op):
        def backward(ctx, grad):
            *xs, out = ctx.saved_tensors
            return list(backward_op(grad, xs, out, ctx.tnorm)), None

        return backward

    torch.library.register_autograd(f"{namespace}::intersect", make_backward(ops.intersect_backward), setup_context=setup)
    torch.library.register_autograd(f"{namespace}::union", make_backward(ops.union_backward), setup_context=setup)
