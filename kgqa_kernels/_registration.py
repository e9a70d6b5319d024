"""Fake (meta) kernels and autograd for the ops whose schemas csrc/kgqa.cpp defines.

Backwards are themselves custom ops, so they run on the same backend as the forward, are
deterministic like it, and stay visible to torch.compile.
"""
from __future__ import annotations

import torch

from . import _C  # noqa: F401  (loads the schemas and the CPU kernels)

ops = torch.ops.kgqa_kernels
_REL_PTR = 8  # csrc/kb_layout.h


# ---- fake kernels: output metadata only, mirroring the C++ layouts --------------------------

@torch.library.register_fake("kgqa_kernels::follow")
def _follow_fake(x, r, kb, inverse):
    return x.new_empty((x.shape[0], x.shape[1]))


@torch.library.register_fake("kgqa_kernels::follow_backward_r")
def _follow_backward_r_fake(x, grad, kb, inverse):
    return x.new_empty((kb[_REL_PTR].shape[0] - 1, x.shape[1]))


def _non_overlapping_and_dense(t) -> bool:
    """Some permutation of t's dims is contiguous (c10's is_non_overlapping_and_dense)."""
    if t.numel() < 2:
        return True
    expected = 1
    for d in sorted(range(t.dim()), key=t.stride):
        if t.shape[d] != 1:
            if t.stride(d) != expected:
                return False
            expected *= t.shape[d]
    return True


@torch.library.register_fake("kgqa_kernels::follow_push")
def _follow_push_fake(ptr, ids, vals, r, kb, inverse):
    return vals.new_empty((kb[0].shape[0] - 1, ptr.shape[0] - 1))


@torch.library.register_fake("kgqa_kernels::dense_frontier")
def _dense_frontier_fake(x, max_nnz):
    nnz = torch.library.get_ctx().new_dynamic_size()
    ptr_len = torch.library.get_ctx().new_dynamic_size()
    return x.new_empty((ptr_len,), dtype=torch.int64), x.new_empty((nnz,), dtype=torch.int64), x.new_empty((nnz,))


@torch.library.register_fake("kgqa_kernels::follow_push_backward")
def _follow_push_backward_fake(grad, ptr, ids, vals, r, kb, inverse):
    return torch.empty_like(vals), r.new_empty(r.shape)


def _combined_like(xs):
    """The C++ combine kernels keep the inputs' layout when all share strides and are dense."""
    ref = xs[0]
    same = _non_overlapping_and_dense(ref) and all(t.stride() == ref.stride() for t in xs)
    return torch.empty_like(ref) if same else ref.new_empty(ref.shape)


def _combine_fake(xs, tnorm):
    return _combined_like(xs)


def _combine_backward_fake(grad, xs, out, tnorm):
    return [_combined_like(xs) for _ in xs]


for _name in ("intersect", "union"):
    torch.library.register_fake(f"kgqa_kernels::{_name}", _combine_fake)
    torch.library.register_fake(f"kgqa_kernels::{_name}_backward", _combine_backward_fake)


@torch.library.register_fake("kgqa_kernels::follow_intersect")
def _follow_intersect_fake(xs, rs, kb, inverse, tnorm, save_ties):
    shape = (xs[0].shape[0], xs[0].shape[1])
    return xs[0].new_empty(shape), xs[0].new_empty(shape if save_ties else (0, 0), dtype=torch.uint8)


@torch.library.register_fake("kgqa_kernels::follow_intersect_backward_x")
def _follow_intersect_backward_x_fake(grad, ties, xs, rs, kb, inverse):
    return [x.new_empty((x.shape[0], x.shape[1])) for x in xs]


@torch.library.register_fake("kgqa_kernels::follow_intersect_backward_r")
def _follow_intersect_backward_r_fake(grad, ties, xs, rs, kb, inverse):
    return [r.new_empty((r.shape[0], r.shape[1])) for r in rs]


@torch.library.register_fake("kgqa_kernels::follow_intersect_backward")
def _follow_intersect_backward_fake(grad, xs, rs, kb, inverse, tnorm):
    return [x.new_empty((x.shape[0], x.shape[1])) for x in xs]


# ---- autograd ------------------------------------------------------------------------------

def register_autograd(namespace: str) -> None:
    """Autograd of every differentiable op in ``namespace``: kgqa_kernels (C++/CUDA) and kgqa_triton
    (kgqa_kernels/triton) share the schemas, so the same formulas call the same-named ops."""
    ops = getattr(torch.ops, namespace)
    def _follow_setup(ctx, inputs, output):
        x, r, kb, inverse = inputs
        ctx.save_for_backward(x, r, *kb)
        ctx.inverse = inverse

    def _follow_backward(ctx, grad):
        x, r, *kb = ctx.saved_tensors
        grad = grad.contiguous()  # once for both kernels (the gradient of a sum is an expanded view)
        dx = dr = None
        # dx[s] = sum over facts (s, p, o) of grad[o] * r[p]: the pull in the other direction.
        if ctx.needs_input_grad[0]:
            dx = ops.follow(grad, r, kb, not ctx.inverse)
        if ctx.needs_input_grad[1]:
            dr = ops.follow_backward_r(x, grad, kb, ctx.inverse)
        return dx, dr, [None] * len(kb), None

    torch.library.register_autograd(f"{namespace}::follow", _follow_backward, setup_context=_follow_setup)

    def _follow_push_setup(ctx, inputs, output):
        ptr, ids, vals, r, kb, inverse = inputs
        ctx.save_for_backward(ptr, ids, vals, r, *kb)
        ctx.inverse = inverse

    def _follow_push_backward(ctx, grad):
        ptr, ids, vals, r, *kb = ctx.saved_tensors
        dvals, dr = ops.follow_push_backward(grad, ptr, ids, vals, r, kb, ctx.inverse)
        need = ctx.needs_input_grad
        return None, None, dvals if need[2] else None, dr if need[3] else None, [None] * len(kb), None

    torch.library.register_autograd(f"{namespace}::follow_push", _follow_push_backward, setup_context=_follow_push_setup)

    def _combine_setup(ctx, inputs, output):
        xs, tnorm = inputs
        ctx.save_for_backward(*xs, output)
        ctx.tnorm = tnorm

    def _make_combine_backward(backward_op):
        def backward(ctx, grad):
            *xs, out = ctx.saved_tensors
            return list(backward_op(grad, xs, out, ctx.tnorm)), None

        return backward

    torch.library.register_autograd(
        f"{namespace}::intersect", _make_combine_backward(ops.intersect_backward), setup_context=_combine_setup
    )
    torch.library.register_autograd(
        f"{namespace}::union", _make_combine_backward(ops.union_backward), setup_context=_combine_setup
    )

    def _follow_intersect_setup(ctx, inputs, output):
        xs, rs, kb, inverse, tnorm, save_ties = inputs
        ctx.k = len(xs)
        ctx.save_for_backward(*xs, *rs, *kb, output[1])
        ctx.inverse, ctx.tnorm, ctx.save_ties = inverse, tnorm, save_ties

    def _follow_intersect_backward(ctx, grad, _grad_ties):
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

    torch.library.register_autograd(
        f"{namespace}::follow_intersect", _follow_intersect_backward, setup_context=_follow_intersect_setup
    )


register_autograd("kgqa_kernels")
