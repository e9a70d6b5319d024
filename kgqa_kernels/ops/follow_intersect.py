"""follow_intersect: intersect(follow(x_i, r_i) for each branch) in one pass. The public op, and
the fake kernels and autograd of the follow_intersect ops."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .. import backends, checks, layout, reference
from ..kb import SparseKB
from ..numerics import acc_dtype
from .intersect import product_backward_backward, tie_shares_backward


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
    never stores the k follow outputs (one branch per topic entity of the question). xs and rs are
    dense (each r may be broadcast as in ``follow``); ``inverse`` is a bool (or a numpy bool). Differentiable to any order (with "min", the
    second derivative in xs and rs is zero almost everywhere, as for intersect)."""
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
    inverse = checks.check_inverse(who, inverse)
    for i, (x, r) in enumerate(zip(xs, rs)):
        rs[i] = r = checks.check_follow_args(who, x, r, kb, f"xs[{i}]", f"rs[{i}]", dtype=xs[0].dtype)
        checks.check_dense(who, f"xs[{i}]", x)
        checks.check_dense(who, f"rs[{i}]", r)
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
    out, _ = impl.follow_intersect([x.t() for x in xs], [r.t() for r in rs], kb.tensors(), inverse, tnorm,
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


def tie_shares(ties: torch.Tensor, k: int, dtype: torch.dtype):
    """The share of the output gradient each of the k branches gets, from the forward's tie mask:
    bit i of a mask byte says branch i equals the minimum there (csrc/follow_intersect.h), and each
    tied branch gets 1 / (number tied), the others 0; where none tied (a NaN output) every share is
    NaN, as the kernels' gradients are."""
    bits = [((ties >> i) & 1).to(dtype) for i in range(k)]
    count = sum(bits)
    return [b / count for b in bits]


def register_autograd(namespace: str) -> None:
    ops = getattr(torch.ops, namespace)

    def setup(ctx, inputs, output):
        xs, rs, kb, inverse, tnorm, save_ties = inputs
        checks.check_kb_no_grad("follow_intersect", kb)
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

    # ---- the backwards' own derivatives ----------------------------------------------------------
    # With a tie mask, g_i = grad * share_i (shares constant: min is piecewise linear), and
    # backward_x gives dx_i = follow(g_i, r_i, inverted), backward_r dr_i = follow_backward_r(x_i,
    # g_i): both bilinear, so their derivatives are follows and follow_backward_r again. The xs and
    # rs get none through the shares (zero almost everywhere: where no two branches tie).

    def setup_tie_backward(ctx, inputs, output):
        grad, ties, xs, rs, kb, inverse = inputs
        checks.check_kb_no_grad("follow_intersect_backward", kb)
        ctx.k = len(xs)
        ctx.save_for_backward(grad, ties, *xs, *rs, *kb)
        ctx.inverse = inverse

    def unpack_tie_backward(ctx):
        k = ctx.k
        grad, ties, *rest = ctx.saved_tensors
        xs, rs, kb = list(rest[:k]), list(rest[k : 2 * k]), list(rest[2 * k :])
        shares = tie_shares(ties, k, acc_dtype(grad.dtype))
        gs = [(grad.to(s.dtype) * s).to(grad.dtype) for s in shares]  # rounded as the kernels round them
        return grad, xs, rs, kb, shares, gs

    def backward_x_backward(ctx, ggx):
        grad, xs, rs, kb, shares, gs = unpack_tie_backward(ctx)
        need_grad, _, _, need_r = ctx.needs_input_grad[:4]
        inv = ctx.inverse
        dgrad = None
        if need_grad:
            dgrad = tie_shares_backward([ops.follow(gg.contiguous(), r, kb, inv) for gg, r in zip(ggx, rs)], shares)
        drs = [ops.follow_backward_r(g, gg.contiguous(), kb, not inv) if n else None
               for n, g, gg in zip(need_r, gs, ggx)]
        return dgrad, None, [None] * len(xs), drs, [None] * len(kb), None

    def backward_r_backward(ctx, ggr):
        grad, xs, rs, kb, shares, gs = unpack_tie_backward(ctx)
        need_grad, _, need_x = ctx.needs_input_grad[:3]
        inv = ctx.inverse
        dgrad = None
        if need_grad:
            dgrad = tie_shares_backward([ops.follow(x, gg.contiguous(), kb, inv) for x, gg in zip(xs, ggr)], shares)
        dxs = [ops.follow(g, gg.contiguous(), kb, not inv) if n else None for n, g, gg in zip(need_x, gs, ggr)]
        return dgrad, None, dxs, [None] * len(rs), [None] * len(kb), None

    for part, fn in (("x", backward_x_backward), ("r", backward_r_backward)):
        torch.library.register_autograd(f"{namespace}::follow_intersect_backward_{part}", fn,
                                        setup_context=setup_tie_backward)

    # Without a tie mask: gys[i] = grad * D_i(y) of the follow outputs y_i = follow(x_i, r_i), the
    # derivatives intersect_backward has (kgqa_kernels/ops/intersect.py). min: the derivative in
    # grad only, from the shares of a unit gradient. product: also a derivative in each y_m,
    # carried to x_m and r_m as follow's backward carries it.
    def setup_recompute_backward(ctx, inputs, output):
        grad, xs, rs, kb, inverse, tnorm = inputs
        checks.check_kb_no_grad("follow_intersect_backward", kb)
        ctx.k = len(xs)
        ctx.save_for_backward(grad, *xs, *rs, *kb)
        ctx.inverse, ctx.tnorm = inverse, tnorm

    def recompute_backward_backward(ctx, ggy):
        k = ctx.k
        grad, *rest = ctx.saved_tensors
        xs, rs, kb = list(rest[:k]), list(rest[k : 2 * k]), list(rest[2 * k :])
        need_grad, need_x, need_r = ctx.needs_input_grad[:3]
        inv = ctx.inverse
        none = [None] * k
        if ctx.tnorm != "product":
            dgrad = None
            if need_grad:
                shares = ops.follow_intersect_backward(torch.ones_like(grad), [x.detach() for x in xs],
                                                      [r.detach() for r in rs], kb, inv, ctx.tnorm)
                dgrad = tie_shares_backward(ggy, shares)
            return dgrad, none, none, [None] * len(kb), None, None
        ys = [ops.follow(x, r, kb, inv) for x, r in zip(xs, rs)]
        need_y = [a or b for a, b in zip(need_x, need_r)]
        dgrad, dys = product_backward_backward(grad, ys, ggy, need_grad, need_y)
        dxs = [ops.follow(dy.contiguous(), r, kb, not inv) if n else None for n, dy, r in zip(need_x, dys, rs)]
        drs = [ops.follow_backward_r(x, dy.contiguous(), kb, inv) if n else None for n, x, dy in zip(need_r, xs, dys)]
        return dgrad, dxs, drs, [None] * len(kb), None, None

    torch.library.register_autograd(f"{namespace}::follow_intersect_backward", recompute_backward_backward,
                                    setup_context=setup_recompute_backward)
