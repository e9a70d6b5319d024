"""follow: one hop over the KB. The public op, and the fake kernels and autograd of the follow ops."""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends, checks, layout, reference
from ..kb import SparseKB
from .follow_max import follow_max
from .follow_push import choose_direction
from .transpose import batch_innermost, is_transposed_row_major


def follow(
    x: torch.Tensor,
    r: torch.Tensor,
    kb: SparseKB,
    *,
    inverse: bool = False,
    direction: str = "auto",
    backend: Optional[str] = None,
    reduce: str = "sum",
    message: str = "mul",
):
    """One hop over the KB: ``y[b, o] = sum over facts (s, p, o) of x[b, s] * r[b, p] * w``.

    x: [B, num_entities] entity weights, dense or a torch sparse (COO or CSR) tensor; r:
    [B, num_relations] relation weights, or [num_relations] / [1, num_relations] for the same
    weights in every example (broadcast); one float dtype (16-bit inputs accumulate in float32).
    ``inverse=True`` follows facts from object to subject.

    ``direction``: "pull" computes every output row from the facts that reach it (dense x, later
    hops); "push" spreads the few nonzero entries of x along the facts that leave them (first hops);
    "auto" pushes for a sparse x, or a dense x without gradient whose nonzeros are at most
    ``PUSH_MAX_DENSITY`` of it (under torch.compile "auto" pulls a dense x: counting its nonzeros
    would be a data-dependent branch). Both give the same result. A sparse x gets gradients for its
    stored values only; it must be COO with 2 sparse and no dense dimensions, or CSR, with indices
    in [0, B) x [0, num_entities) (checked: ValueError).

    ``inverse`` must be a bool (or a numpy bool). Gradients of any order in x and r: the backward is
    made of follows and ``follow_backward_r`` on the same KB, which are differentiable themselves.
    Fact weights that require grad (``SparseKB(..., weight=w)``, ``kb.with_weight(w)``) get their
    gradient, w.grad, in the order the facts were given (first order only; such a KB always
    pulls while grad is enabled).

    ``reduce`` ("sum", "mean", "max", "min") and ``message`` ("mul", "add") generalise the hop
    (TorchDrug's ``generalized_rspmm(sum=, mul=)``, PyG's ``aggr=``): y[b, o] is the reduction over
    the facts into o of x[b, s] * r[b, p] * w or x[b, s] + r[b, p] + w, 0 where none reaches o
    (``reference.follow_generalized`` defines it). Every combination runs on every backend: "sum"
    and "mean" as follows of the fused kernel (an "add" hop costs three; "mean" divides by the
    number of facts into o), "max" and "min" on kernels of their own (follow_max), which always
    pull and send the gradient to the winning facts, ties split evenly (first order only).

    ``backend``: "auto" | "cpu" | "cuda" | "triton" | "emulated" | "reference"; None (every op's
    default) takes the process-wide default: ``set_backend()``, else $KGQA_BACKEND, else "auto".

    Returns [B, num_entities] as a transposed view of a batch-innermost buffer, the layout the next
    hop reads fastest (``.contiguous()`` if you need row-major).
    """
    checks.check_kb("follow()", kb)
    r = checks.check_follow_args("follow()", x, r, kb)
    checks.check_dense("follow()", "r", r)
    inverse = checks.check_inverse("follow()", inverse)
    checks.check_reduce_message("follow()", reduce, message)
    chosen = backends.resolve(backend, x.device, "follow")
    if (reduce, message) == ("sum", "mul"):
        return _follow(x, r, kb, inverse, direction, chosen)
    if reduce in ("max", "min") and chosen != "reference":
        return follow_max(x, r, kb, inverse, direction, chosen, reduce == "min", message == "add")
    if chosen == "reference":
        choose_direction(x, direction)  # the same argument checks
        x = x.to_dense() if x.layout != torch.strided else x
        return reference.follow_generalized(x, r, kb, inverse=inverse, reduce=reduce, message=message)
    if message == "mul":
        y = _follow(x, r, kb, inverse, direction, chosen)
    else:
        # sum over facts into o of (x[s] + r[p] + w) = sum of x[s] + sum of r[p] + sum of w: two
        # unweighted follows, with r or x all ones, and one of ones through the weights (whose
        # gradient reaches trainable weights).
        unit = kb.unweighted()
        B, E, R = x.shape[0], kb.num_entities, kb.num_relations
        ones = dict(dtype=x.dtype, device=x.device)
        y = (_follow(x, torch.ones(1, R, **ones).expand(B, R), unit, inverse, direction, chosen)
             + _follow(torch.ones(B, E, **ones), r, unit, inverse, "pull", chosen)
             + _follow(torch.ones(1, E, **ones), torch.ones(1, R, **ones), kb, inverse, "pull", chosen))
    if reduce == "mean":
        y = y / _fact_counts(kb, inverse).to(y.dtype)
    return y


def _fact_counts(kb: SparseKB, inverse: bool) -> torch.Tensor:
    """The number of facts into each entity (out of it with ``inverse``), at least 1: [E]."""
    ptr = kb.tensor("SUBJ_PTR" if inverse else "OBJ_PTR")
    return ptr.diff().clamp(min=1)


def _follow(x, r, kb, inverse, direction, chosen):
    """follow's sum of products on backend ``chosen``, the arguments checked."""
    if chosen == "reference":
        choose_direction(x, direction)  # the same argument checks
        return reference.follow(x.to_dense() if x.layout != torch.strided else x, r, kb, inverse=inverse)
    if kb.trainable and torch.is_grad_enabled():
        # The fact weights' gradient is computed by the pull's backward (follow_backward_w).
        checks.check_direction("follow()", direction)
        if direction == "push":
            raise ValueError("follow(): direction='push' cannot train the KB's fact weights (they require grad); "
                             "use 'pull' or 'auto'")
        direction = "pull"
    impl = backends.op_namespace(chosen)
    how, front = choose_direction(x, direction)
    if how == "push":
        ptr, ids, vals = front
        return impl.follow_push(ptr, ids, vals, r.t(), kb.tensors(), inverse).t()
    if x.layout != torch.strided:
        x = x.to_dense()
    return impl.follow(x.t(), r.t(), kb.tensors(), inverse).t()


# ---- fake kernels and autograd ------------------------------------------------------------------

def register(namespace: str) -> None:
    """Fakes and autograd of follow, follow_backward_r and follow_backward_w in ``namespace`` (a C++
    library)."""
    torch.library.register_fake(f"{namespace}::follow", _follow_fake)
    torch.library.register_fake(f"{namespace}::follow_backward_r", _follow_backward_r_fake)
    torch.library.register_fake(f"{namespace}::follow_backward_w", _follow_backward_w_fake)
    register_autograd(namespace)


def _follow_fake(x, r, kb, inverse, row_major=False):
    if row_major:
        return x.new_empty((x.shape[1], x.shape[0])).t()
    return x.new_empty((x.shape[0], x.shape[1]))


def _follow_backward_r_fake(x, grad, kb, inverse):
    return x.new_empty((checks.kb_num_relations(kb), x.shape[1]))


def _follow_backward_w_fake(x, r, grad, kb, inverse):
    return x.new_empty((kb[layout.SUBJ_OBJ].shape[0],))


def register_autograd(namespace: str) -> None:
    """Backwards are themselves ops of ``namespace``: they run on the forward's backend, are
    deterministic like it, and stay visible to torch.compile. follow is bilinear in (x, r), so
    every derivative of any order in x and r is a follow or a follow_backward_r on the same KB.
    Fact weights that require grad (SparseKB.tensors() puts them in SUBJ_WEIGHT) get their
    gradient from follow_backward_w; derivatives of follow_backward_r and follow_backward_w with
    respect to the fact weights, and of follow_backward_w itself, are refused with an error."""
    ops = getattr(torch.ops, namespace)

    def saving(op):
        """The setup of op(a, b, ..., kb, inverse): follow (whose row_major changes only the output's
        layout), follow_backward_r or follow_backward_w; saves the tensors and the KB. Only
        SUBJ_WEIGHT of the KB may require grad (SparseKB.tensors() of a trainable KB)."""
        n = 3 if op == "follow_backward_w" else 2

        def setup(ctx, inputs, output):
            kb, inverse = inputs[n:n + 2]
            checks.check_kb_grad(op, kb, True)
            ctx.save_for_backward(*inputs[:n], *kb)
            ctx.inverse = inverse
        return setup

    def no_second_order_in_the_weights(op, ctx, kb_arg: int) -> None:
        if ctx.needs_input_grad[kb_arg][layout.SUBJ_WEIGHT]:
            raise RuntimeError(f"{op}(): second-order gradients (create_graph=True) with respect to trainable fact "
                               f"weights are not supported; differentiate the first-order gradient with respect "
                               f"to x and r only, or detach the weights")

    def backward(ctx, grad):
        x, r, *kb = ctx.saved_tensors
        # Once for all kernels (the gradient of a sum is an expanded view; a user's materialised
        # gradient of the row-major output, a transpose).
        grad = batch_innermost(grad)
        dx = dr = None
        dkb = [None] * len(kb)
        need_w = ctx.needs_input_grad[2][layout.SUBJ_WEIGHT]
        # dr and dw read x batch-innermost: a row-major x is transposed once for both.
        xb = batch_innermost(x) if ctx.needs_input_grad[1] and need_w else x
        if ctx.needs_input_grad[1]:
            dr = ops.follow_backward_r(xb, grad, kb, ctx.inverse)
        # dx[s] = sum over facts (s, p, o) of grad[o] * r[p]: the pull in the other direction,
        # handed back in x's layout (a user's row-major x gets a row-major gradient, written so by
        # the kernel: autograd copies nothing).
        if ctx.needs_input_grad[0]:
            dx = ops.follow(grad, r, kb, not ctx.inverse, is_transposed_row_major(x))
        # dw[f] = sum over the batch of x[s] * r[p] * grad[o], in the canonical (subject) order: the
        # gradient of all three weight slots, since they hold the same weights.
        if need_w:
            dkb[layout.SUBJ_WEIGHT] = ops.follow_backward_w(xb, r, grad, kb, ctx.inverse)
        return dx, dr, dkb, None, None

    torch.library.register_autograd(f"{namespace}::follow", backward, setup_context=saving("follow"))

    # follow_backward_r(x, grad)[p] = sum over facts (s, p, o) of x[s] * w * grad[o] (inverse: x
    # read at o, grad at s) is bilinear: with ggr the gradient of its output [R, B], the gradient of
    # x is a follow of grad through ggr in the other direction, that of grad a follow of x through
    # ggr in the same direction.
    def backward_r_backward(ctx, ggr):
        no_second_order_in_the_weights("follow_backward_r", ctx, 2)
        x, grad, *kb = ctx.saved_tensors
        ggr = ggr.contiguous()
        need_x, need_grad = ctx.needs_input_grad[:2]
        dx = ops.follow(grad, ggr, kb, not ctx.inverse) if need_x else None
        dgrad = ops.follow(x, ggr, kb, ctx.inverse) if need_grad else None
        return dx, dgrad, [None] * len(kb), None

    torch.library.register_autograd(f"{namespace}::follow_backward_r", backward_r_backward,
                                    setup_context=saving("follow_backward_r"))

    def backward_w_backward(ctx, gdw):
        raise RuntimeError("follow_backward_w(): second-order gradients (create_graph=True) through the fact "
                           "weights' gradient are not supported; differentiate the first-order gradient with "
                           "respect to x and r only, or detach the weights")

    torch.library.register_autograd(f"{namespace}::follow_backward_w", backward_w_backward,
                                    setup_context=saving("follow_backward_w"))
