"""follow from a sparse frontier, and the choice between pushing and pulling: the fake kernels and
autograd of the follow_push ops, and how follow() finds a frontier and picks a direction (the
sharded KB makes the same choice through these functions)."""
from __future__ import annotations

import torch

from .. import checks

# Above this fraction of nonzero entity weights, the dense pull beats pushing from a frontier.
PUSH_MAX_DENSITY = 1 / 32


def frontier(x: torch.Tensor):
    """(ptr [B+1], ids, vals) of the nonzero entries of x [B, E], ids sorted within each example."""
    if x.layout == torch.sparse_coo:
        x = x.coalesce()  # sorted by (b, s), duplicates summed
        b, ids = x.indices()
        vals = x.values()
    elif x.layout == torch.sparse_csr:
        return x.crow_indices().to(torch.int64), x.col_indices().to(torch.int64), x.values()
    elif x.device.type == "cpu" and x.is_contiguous():
        return torch.ops.kgqa_kernels.dense_frontier(x, x.numel())  # one parallel read of x
    else:
        b, ids = x.nonzero(as_tuple=True)  # row-major order: sorted by (b, s)
        vals = x[b, ids]
    ptr = torch.zeros(x.shape[0] + 1, dtype=torch.int64, device=x.device)
    torch.cumsum(torch.bincount(b, minlength=x.shape[0]), 0, out=ptr[1:])
    return ptr, ids, vals


def bounded_frontier(x: torch.Tensor, limit: int):
    """(ptr, ids, vals) of a dense x [B, n] if it has at most ``limit`` nonzeros, else None: on the
    CPU one read of x that stops counting past the limit."""
    if x.device.type == "cpu" and x.is_contiguous():
        ptr, ids, vals = torch.ops.kgqa_kernels.dense_frontier(x, limit)
        return (ptr, ids, vals) if ptr.numel() else None
    if int(torch.count_nonzero(x)) > limit:
        return None
    return frontier(x)


def check_push_allowed(who: str, direction: str, sparse: bool, needs_grad: bool) -> None:
    if direction == "push" and not sparse and needs_grad:
        raise ValueError(
            f"{who}: direction='push' needs an x without gradient, or a sparse x (the gradient of a "
            f"dense x is dense: use direction='pull')"
        )


def choose_direction(x: torch.Tensor, direction: str):
    """("push", frontier) or ("pull", None) for follow(x, ...), x's shape already checked.

    Under torch.compile, "auto" pulls a dense x: whether x is sparse enough to push is a property of
    its values, which a compiled graph cannot branch on (fullgraph=True would fail on the guard).
    Both directions give the same result; pass direction="push" to push a first hop anyway."""
    checks.check_direction("follow()", direction)
    sparse = x.layout != torch.strided
    if sparse:  # every direction reads a sparse x's indices (the pull through to_dense)
        checks.check_sparse_x("follow()", "x", x)
    check_push_allowed("follow()", direction, sparse, x.requires_grad)
    if direction == "pull" or (direction == "auto" and not sparse and (
            x.requires_grad or x.numel() == 0 or torch.compiler.is_compiling())):
        return "pull", None
    if direction == "push" or sparse:
        return "push", frontier(x)
    # auto on a dense x without gradient: a first hop (a few seed entities per example) is far
    # cheaper to push; finding out costs one read of x.
    found = bounded_frontier(x, int(PUSH_MAX_DENSITY * x.numel()))
    return ("push", found) if found is not None else ("pull", None)


# ---- fake kernels and autograd ------------------------------------------------------------------

def register(namespace: str) -> None:
    """Fakes and autograd of the follow_push ops of ``namespace`` (a C++ library: kgqa_kernels or
    kgqa_kernels_emu; Triton's ops register their fakes themselves, kgqa_kernels/triton)."""
    torch.library.register_fake(f"{namespace}::follow_push", _follow_push_fake)
    torch.library.register_fake(f"{namespace}::dense_frontier", _dense_frontier_fake)
    torch.library.register_fake(f"{namespace}::follow_push_backward", _follow_push_backward_fake)
    register_autograd(namespace)


def _follow_push_fake(ptr, ids, vals, r, kb, inverse):
    return vals.new_empty((checks.kb_num_entities(kb), ptr.shape[0] - 1))


def _dense_frontier_fake(x, max_nnz):
    nnz = torch.library.get_ctx().new_dynamic_size()
    ptr_len = torch.library.get_ctx().new_dynamic_size()
    return x.new_empty((ptr_len,), dtype=torch.int64), x.new_empty((nnz,), dtype=torch.int64), x.new_empty((nnz,))


def _follow_push_backward_fake(grad, ptr, ids, vals, r, kb, inverse):
    return torch.empty_like(vals), r.new_empty(r.shape)


def register_autograd(namespace: str) -> None:
    """follow_push and its backward, each differentiable: follow_push is bilinear in (vals, r), so
    every derivative is a follow_push or a follow_push_backward from the same frontier."""
    ops = getattr(torch.ops, namespace)

    def setup(ctx, inputs, output):
        ptr, ids, vals, r, kb, inverse = inputs
        checks.check_kb_no_grad("follow_push", kb)
        ctx.save_for_backward(ptr, ids, vals, r, *kb)
        ctx.inverse = inverse

    def backward(ctx, grad):
        ptr, ids, vals, r, *kb = ctx.saved_tensors
        dvals, dr = ops.follow_push_backward(grad, ptr, ids, vals, r, kb, ctx.inverse)
        need = ctx.needs_input_grad
        return None, None, dvals if need[2] else None, dr if need[3] else None, [None] * len(kb), None

    torch.library.register_autograd(f"{namespace}::follow_push", backward, setup_context=setup)

    # follow_push_backward(grad, ...) = (dvals, dr) with dvals[j] = sum over the facts leaving ids[j]
    # of r[p] * w * grad[o] (linear in (r, grad)) and dr[p] = sum over the frontier and the facts of
    # vals[j] * w * grad[o] (linear in (vals, grad)). With (ggv, ggr) the gradients of its outputs:
    # grad gets follow_push(ggv through r) + follow_push(vals through ggr), vals gets the dvals of
    # (grad, ggr), r gets the dr of (grad, ggv).
    def setup_backward(ctx, inputs, output):
        grad, ptr, ids, vals, r, kb, inverse = inputs
        checks.check_kb_no_grad("follow_push_backward", kb)
        ctx.save_for_backward(grad, ptr, ids, vals, r, *kb)
        ctx.inverse = inverse

    def backward_backward(ctx, ggv, ggr):
        grad, ptr, ids, vals, r, *kb = ctx.saved_tensors
        need_grad, _, _, need_vals, need_r = ctx.needs_input_grad[:5]
        inverse = ctx.inverse
        dgrad = dvals = dr = None
        if need_grad:
            dgrad = ops.follow_push(ptr, ids, ggv, r, kb, inverse) + ops.follow_push(ptr, ids, vals, ggr, kb, inverse)
        if need_vals:
            dvals = ops.follow_push_backward(grad, ptr, ids, vals, ggr, kb, inverse)[0]
        if need_r:
            dr = ops.follow_push_backward(grad, ptr, ids, ggv, r, kb, inverse)[1]
        return dgrad, None, None, dvals, dr, [None] * len(kb), None

    torch.library.register_autograd(f"{namespace}::follow_push_backward", backward_backward,
                                    setup_context=setup_backward)
