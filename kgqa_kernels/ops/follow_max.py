"""follow_max: follow's ``reduce="max" | "min"`` on the kernel backends, and the fake kernels and
autograd of its ops (the public entry is ``follow(..., reduce=)`` in ops/follow.py;
``reference.follow_generalized`` defines the semantics)."""
from __future__ import annotations

import torch

from .. import backends, checks, layout
from ..kb import SparseKB


def follow_max(x: torch.Tensor, r: torch.Tensor, kb: SparseKB, inverse: bool, direction: str, chosen: str,
               minimum: bool, add: bool) -> torch.Tensor:
    """y [B, E] = the max (min) over the facts into each entity of each fact's term, on backend
    ``chosen``; x [B, E] (dense or sparse) and r [B, R] checked by follow(). Always a pull: a max
    has no cheaper push from a sparse frontier here, so ``direction`` is only checked."""
    checks.check_direction("follow()", direction)
    if x.layout != torch.strided:
        checks.check_sparse_x("follow()", "x", x)
        x = x.to_dense()
    impl = backends.op_namespace(chosen)
    return impl.follow_max(x.t(), r.t(), kb.tensors(), inverse, minimum, add).t()


# ---- fake kernels and autograd ------------------------------------------------------------------

def register(namespace: str) -> None:
    """Fakes and autograd of follow_max and follow_max_backward in ``namespace`` (a C++ library)."""
    torch.library.register_fake(f"{namespace}::follow_max", _follow_max_fake)
    torch.library.register_fake(f"{namespace}::follow_max_backward", _follow_max_backward_fake)
    register_autograd(namespace)


def _follow_max_fake(x, r, kb, inverse, minimum, add):
    return x.new_empty((x.shape[0], x.shape[1]))


def _follow_max_backward_fake(x, r, grad, kb, inverse, minimum, add, need_w):
    facts = kb[layout.SUBJ_OBJ].shape[0] if need_w else 0
    return x.new_empty(x.shape), x.new_empty((checks.kb_num_relations(kb), x.shape[1])), x.new_empty((facts,))


def register_autograd(namespace: str) -> None:
    """follow_max's backward is the op follow_max_backward (dx, dr and, for a trainable KB, dw in
    one call: they share its pass that finds each row's winning facts). Its own derivative is
    refused with an error naming it (a gradient penalty through a max hop)."""
    ops = getattr(torch.ops, namespace)

    def setup(ctx, inputs, output):
        x, r, kb, inverse, minimum, add = inputs
        checks.check_kb_grad("follow_max", kb, True)
        ctx.save_for_backward(x, r, *kb)
        ctx.args = (inverse, minimum, add)

    def backward(ctx, grad):
        x, r, *kb = ctx.saved_tensors
        need_x, need_r, need_kb = ctx.needs_input_grad[:3]
        need_w = bool(need_kb[layout.SUBJ_WEIGHT])
        dkb = [None] * len(kb)
        if not (need_x or need_r or need_w):
            return None, None, dkb, None, None, None
        dx, dr, dw = ops.follow_max_backward(x, r, grad, kb, *ctx.args, need_w)
        if need_w:
            dkb[layout.SUBJ_WEIGHT] = dw
        return dx if need_x else None, dr if need_r else None, dkb, None, None, None

    torch.library.register_autograd(f"{namespace}::follow_max", backward, setup_context=setup)

    def no_setup(ctx, inputs, output):
        pass

    def backward_backward(ctx, *grads):
        raise RuntimeError("follow_max_backward(): second-order gradients (create_graph=True) through "
                           "follow(reduce='max' or 'min') are not supported; use reduce='sum' or 'mean' for a "
                           "gradient penalty, or take the first-order gradient only")

    torch.library.register_autograd(f"{namespace}::follow_max_backward", backward_backward,
                                    setup_context=no_setup)
