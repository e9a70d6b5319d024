"""count: the soft size of each example's entity set. The public op, and the fake kernels and
autograd of count and count_backward."""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends, checks, reference


def count(x: torch.Tensor, *, backend: Optional[str] = None) -> torch.Tensor:
    """``y[b] = sum over e of x[b, e]``: how many entities example b's set holds (a soft count for
    weights in [0, 1]). x: [B, E] floating, any strides (e.g. follow's batch-innermost output).

    Summed in a fixed order on every backend (deterministic: the same bits on every call); 16-bit
    inputs accumulate in float32 and the result has x's dtype. Gradient: ``dx[b, e] = grad[b]``
    (the backward is the op count_backward; second derivatives too)."""
    checks.check_set("count()", "x", x)
    chosen = backends.resolve(backend, x.device, "count")
    if chosen == "reference":
        return reference.count(x)
    return backends.op_namespace(chosen).count(x.t())


# ---- fake kernels and autograd ------------------------------------------------------------------

def _count_fake(x):
    return x.new_empty((x.shape[1],))


def _count_backward_fake(grad, x):
    return x.new_empty((x.shape[0], x.shape[1]))


def register(namespace: str) -> None:
    """Fakes and autograd of count and count_backward in ``namespace`` (a C++ library)."""
    torch.library.register_fake(f"{namespace}::count", _count_fake)
    torch.library.register_fake(f"{namespace}::count_backward", _count_backward_fake)
    register_autograd(namespace)


def register_autograd(namespace: str) -> None:
    """count's backward is count_backward (grad broadcast over the entities); count_backward is
    linear in grad and reads x for its shape only, so its own derivative is count of the incoming
    gradient (to grad) and nothing (to x): derivatives of every order are ops of the namespace."""
    ops = getattr(torch.ops, namespace)

    def setup(ctx, inputs, output):
        (x,) = inputs
        ctx.save_for_backward(x)

    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return ops.count_backward(grad, x)

    torch.library.register_autograd(f"{namespace}::count", backward, setup_context=setup)

    def setup_backward(ctx, inputs, output):
        pass

    def backward_backward(ctx, gg):
        return ops.count(gg), None

    torch.library.register_autograd(f"{namespace}::count_backward", backward_backward, setup_context=setup_backward)
