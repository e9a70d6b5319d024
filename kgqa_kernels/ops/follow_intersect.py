"""follow_intersect: intersect(follow(x_i, r_i) for each branch) in one pass. The public op, and
the fake kernels and autograd of the follow_intersect ops."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .. import backends, checks, layout, reference
from ..kb import SparseKB


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
    who = "follow_intersect()"
    checks.check_kb(who, kb)
    if isinstance(xs, torch.Tensor) or isinstance(rs, torch.Tensor):
        raise TypeError(f"{who}: xs and rs must be sequences of tensors, one per branch")
    xs, rs = list(xs), list(rs)
    if len(xs) < 2:
        raise ValueError(f"{who}: needs at least 2 branches, got {len(xs)}")
    if len(rs) != len(xs):
        raise ValueError(f"{who}: xs has {len(xs)} branches but rs has {len(rs)}")
    checks.check_tnorm(who, tnorm, checks.INTERSECT_TNORMS)
    for i, (x, r) in enumerate(zip(xs, rs)):
        checks.check_follow_args(who, x, r, kb, f"xs[{i}]", f"rs[{i}]", dtype=xs[0].dtype)
        if x.shape[0] != xs[0].shape[0]:
            raise ValueError(f"{who}: xs[{i}] has batch size {x.shape[0]}, expected {xs[0].shape[0]} like xs[0]")
    chosen = backends.resolve(backend, xs[0].device, "follow_intersect")
    if chosen == "reference":
        return reference.follow_intersect(xs, rs, kb, inverse=inverse, tnorm=tnorm)
    checks.check_branch_count(who, chosen, len(xs))
    # For min, the forward keeps a uint8 mask of the tied branches when a backward will follow, so
    # the backward needs no recomputation (1 byte per element instead of the k follow outputs).
    save_ties = (
        tnorm == "min" and len(xs) <= layout.MAX_TIE_BRANCHES and torch.is_grad_enabled()
        and any(t.requires_grad for t in xs + rs)
    )
    impl = backends.op_namespace(chosen)
    out, _ = impl.follow_intersect([x.t() for x in xs], [r.t() for r in rs], kb.tensors(), bool(inverse), tnorm,
                                   save_ties)
    return out.t()


# ---- fake kernels and autograd ------------------------------------------------------------------

def register(namespace: str) -> None:
    """Fakes and autograd of the follow_intersect ops in ``namespace`` (a C++ library)."""
    torch.library.register_fake(f"{namespace}::follow_intersect", _follow_intersect_fake)
    torch.library.register_fake(f"{namespace}::follow_intersect_backward_x", _backward_x_fake)
    torch.library.register_fake(f"{namespace}::follow_intersect_backward_r", _backward_r_fake)
    torch.library.register_fake(f"{namespace}::follow_intersect_backward", _backward_fake)
    register_autograd(namespace)


def _follow_intersect_fake(xs, rs, kb, inverse, tnorm, save_ties):
    shape = (xs[0].shape[0], xs[0].shape[1])
    return xs[0].new_empty(shape), xs[0].new_empty(shape if save_ties else (0, 0), dtype=torch.uint8)


def _backward_x_fake(grad, ties, xs, rs, kb, inverse):
    return [x.new_empty((x.shape[0], x.shape[1])) for x in xs]


def _backward_r_fake(grad, ties, xs, rs, kb, inverse):
    return [r.new_empty((r.shape[0], r.shape[1])) for r in rs]


def _backward_fake(grad, xs, rs, kb, inverse, tnorm):
    return [x.new_empty((x.shape[0], x.shape[1])) for x in xs]


def register_autograd(namespace: str) -> None:
    ops = getattr(torch.ops, namespace)

    def setup(ctx, inputs, output):
        xs, rs, kb, inverse, tnorm, save_ties = inputs
        ctx.k = len(xs)
        ctx.save_for_backward(*xs, *rs, *kb, output[1])
        ctx.inverse, ctx.tnorm, ctx.save_ties = inverse, tnorm, save_ties

    def backward(ctx, grad, _grad_ties):
        k = ctx.k
        saved = ctx.saved_tensors
        xs, rs, kb, ties = saved[:k], saved[k : 2 * k], list(saved[2 * k : -1]), saved[-1]
        need_x, need_r = ctx.needs_input_grad[:2]  # one flag per branch
        if ctx.save_ties:  # the forward kept which branches tied: no follow to recompute, nothing [E, B] per branch
            dxs = ops.follow_intersect_backward_x(grad, ties, xs, rs, kb, ctx.inverse) if any(need_x) else [None] * k
            drs = ops.follow_intersect_backward_r(grad, ties, xs, rs, kb, ctx.inverse) if any(need_r) else [None] * k
        else:
            gys = ops.follow_intersect_backward(grad, xs, rs, kb, ctx.inverse, ctx.tnorm)
            dxs = [ops.follow(gy, r, kb, not ctx.inverse) if n else None for n, gy, r in zip(need_x, gys, rs)]
            drs = [ops.follow_backward_r(x, gy, kb, ctx.inverse) if n else None for n, x, gy in zip(need_r, xs, gys)]
        dxs = [d if n else None for n, d in zip(need_x, dxs)]
        drs = [d if n else None for n, d in zip(need_r, drs)]
        return dxs, drs, [None] * len(kb), None, None, None

    torch.library.register_autograd(f"{namespace}::follow_intersect", backward, setup_context=setup)
