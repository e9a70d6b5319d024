"""intersect and union: elementwise t-norms over k >= 2 same-shape tensors. The public ops, and the
fake kernels and autograd of the combine ops."""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends, checks, reference
from ..numerics import acc_dtype


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


# ---- second derivatives ---------------------------------------------------------------------------
#
# The backward of a t-norm over x_1..x_k is dx_i = grad * D_i(x). Its own derivatives:
# - min / max: D_i is the share of the gradient branch i gets (1 / number of inputs tied at the
#   output, 0 elsewhere): piecewise constant in x, so the backward is linear in grad and its
#   derivative in x is zero wherever no two inputs tie (almost everywhere; torch.amin's double
#   backward says the same). The derivative in grad: sum_i gg_i * D_i.
# - product (intersect: u_j = x_j) and the probabilistic sum (union: u_j = 1 - x_j, so each
#   derivative in x changes sign): D_i = prod over j != i of u_j, so the derivative in grad is
#   sum_i gg_i * D_i and the one in x_m is grad * sum over i != m of gg_i * prod over j != i, m of
#   u_j. Both are written with torch ops here, so derivatives of higher order follow by autograd.


def _others_product(us, skip):
    """The product of the us whose index is not in ``skip`` (1 where none is left)."""
    out = None
    for j, u in enumerate(us):
        if j not in skip:
            out = u if out is None else out * u
    return torch.ones_like(us[0]) if out is None else out


def product_backward_backward(grad, us, ggs, need_grad: bool, need_us):
    """(d grad, [d u_m]) of the backward dx_i = grad * prod over j != i of u_j, given gg_i the
    gradients of the dx_i: in grad's dtype, computed in the dtype its sums run in."""
    dtype = grad.dtype
    acc = acc_dtype(dtype)
    grad, us, ggs = grad.to(acc), [u.to(acc) for u in us], [g.to(acc) for g in ggs]
    k = len(us)
    dgrad = None
    if need_grad:
        dgrad = sum(ggs[i] * _others_product(us, {i}) for i in range(k)).to(dtype)
    dus = []
    for m in range(k):
        if not need_us[m]:
            dus.append(None)
            continue
        inner = sum(ggs[i] * _others_product(us, {i, m}) for i in range(k) if i != m)
        dus.append((grad * inner).to(dtype))
    return dgrad, dus


def tie_shares_backward(ggs, shares):
    """d grad of a backward dx_i = grad * share_i with shares constant: sum_i gg_i * share_i, summed
    in the dtype sums run in."""
    dtype = ggs[0].dtype
    acc = acc_dtype(dtype)
    return sum(g.to(acc) * s.to(acc) for g, s in zip(ggs, shares)).to(dtype)


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

    # The backwards' own derivatives (see above). ``out`` (the forward's output) gets none: the
    # product forms do not read it, and min / max read it only to find the tied inputs, which is
    # piecewise constant.
    def setup_backward(ctx, inputs, output):
        grad, xs, out, tnorm = inputs
        ctx.save_for_backward(grad, *xs, out)
        ctx.tnorm = tnorm

    def make_backward_backward(backward_op, is_union: bool):
        def backward_backward(ctx, ggs):
            grad, *xs, out = ctx.saved_tensors
            need_grad, need_xs = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
            if ctx.tnorm == "product":
                us = [1 - x.to(acc_dtype(x.dtype)) for x in xs] if is_union else list(xs)  # 1 - x unrounded
                dgrad, dus = product_backward_backward(grad, us, ggs, need_grad, need_xs)
                dxs = [None if d is None else (-d if is_union else d) for d in dus]
                return dgrad, dxs, None, None
            dgrad = None
            if need_grad:  # the shares are the backward of a unit gradient (the kernels' tie rule)
                shares = backward_op(torch.ones_like(grad), [x.detach() for x in xs], out.detach(), ctx.tnorm)
                dgrad = tie_shares_backward(ggs, shares)
            return dgrad, [None] * len(xs), None, None

        return backward_backward

    for name, is_union in (("intersect", False), ("union", True)):
        op = getattr(ops, f"{name}_backward")
        torch.library.register_autograd(f"{namespace}::{name}_backward", make_backward_backward(op, is_union),
                                        setup_context=setup_backward)
