"""select_extreme: the members of each example's entity set whose value is the largest or the
smallest (superlatives: "the most recent film of X"). The public op, and the fake kernels and
autograd of select_extreme and select_extreme_backward."""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends, checks, reference


def select_extreme(x: torch.Tensor, values: torch.Tensor, *, mode: str = "max", temperature: float = 0.0,
                   backend: Optional[str] = None) -> torch.Tensor:
    """The members of each example's set whose value is the largest (``mode="max"``) or smallest
    (``"min"``), keeping their weights: y [B, E].

    x: [B, E] set weights (>= 0; an entry <= 0 or NaN is not a member); values: [E] (shared by the
    examples) or [B, E], x's dtype; NaN (or an infinity) = the entity has no value, and is never
    selected nor sets the best. With s = +1 for max, -1 for min, m[b] = the best s * values over
    b's members that have a value:

    - ``temperature=0`` (exact): y = x * [s * values == m[b]]: every tied member keeps its x;
    - ``temperature > 0`` (soft): y = x * exp((s * values - m[b]) / temperature), which tends to the
      exact selection as temperature -> 0;

    0 for non-members, and a row with no member that has a value is all zeros. No NaN reaches the
    output or a gradient. Gradients: to x (the indicator, or the exp factor); to values only in
    soft mode (including through m[b], which moves with the value of the first best entity in
    index order): the exact selection is piecewise constant in values, so their gradient is 0
    there. A shared values [E] gets its gradient summed over the examples (in a fixed order: every
    backend is deterministic). Second derivatives: exact mode through the backward op, soft mode
    through torch expressions of the reference."""
    who = "select_extreme()"
    checks.check_set(who, "x", x)
    checks.check_values(who, values, x, "x")
    checks.check_mode(who, mode)
    temperature = checks.check_temperature(who, temperature)
    chosen = backends.resolve(backend, x.device, "select_extreme")
    if chosen == "reference":
        return reference.select_extreme(x, values, mode=mode, temperature=temperature)
    v = values if values.dim() == 1 else values.t()
    return backends.op_namespace(chosen).select_extreme(x.t(), v, mode == "min", temperature).t()


# ---- fake kernels and autograd ------------------------------------------------------------------

def _select_fake(x, values, minimum, temperature):
    return x.new_empty((x.shape[0], x.shape[1]))


def _select_backward_fake(grad, x, values, minimum, temperature, need_values):
    dv = values.new_empty(tuple(values.shape)) if need_values else values.new_empty((0,))
    return x.new_empty((x.shape[0], x.shape[1])), dv


def register(namespace: str) -> None:
    """Fakes and autograd of select_extreme and its backward in ``namespace`` (a C++ library)."""
    torch.library.register_fake(f"{namespace}::select_extreme", _select_fake)
    torch.library.register_fake(f"{namespace}::select_extreme_backward", _select_backward_fake)
    register_autograd(namespace)


def _raw_reference(x, values, minimum: bool, temperature: float):
    """The reference on the raw ops' batch-innermost tensors (x [E, B], values [E] or [E, B])."""
    v = values if values.dim() == 1 else values.t()
    return reference.select_extreme(x.t(), v, mode="min" if minimum else "max", temperature=temperature).t()


def register_autograd(namespace: str) -> None:
    """select_extreme's backward is the op select_extreme_backward (dx and, when values needs it,
    dvalues in one call: they share its pass that finds each row's best).

    Its own derivatives: at temperature 0, dx = grad * [member is best] is linear in grad with a
    piecewise constant factor and dvalues is 0, so the derivative in grad is the backward op
    applied to the incoming gradient and those in x and values are 0. At temperature > 0 the
    backward is differentiated as torch expressions: the reference's first derivatives, taken with
    create_graph, differentiated again."""
    ops = getattr(torch.ops, namespace)

    def setup(ctx, inputs, output):
        x, values, minimum, temperature = inputs
        ctx.save_for_backward(x, values)
        ctx.args = (minimum, temperature)

    def backward(ctx, grad):
        x, values = ctx.saved_tensors
        need_x, need_v = ctx.needs_input_grad[:2]
        if not (need_x or need_v):
            return None, None, None, None
        dx, dv = ops.select_extreme_backward(grad, x, values, *ctx.args, need_v)
        return dx if need_x else None, dv if need_v else None, None, None

    torch.library.register_autograd(f"{namespace}::select_extreme", backward, setup_context=setup)

    def setup_backward(ctx, inputs, output):
        grad, x, values, minimum, temperature, need_values = inputs
        ctx.save_for_backward(grad, x, values)
        ctx.args = (minimum, temperature)

    def backward_backward(ctx, gg_x, gg_v):
        grad, x, values = ctx.saved_tensors
        minimum, temperature = ctx.args
        need = ctx.needs_input_grad[:3]
        if temperature == 0:
            dgrad = None
            if need[0]:
                dgrad = ops.select_extreme_backward(gg_x, x.detach(), values.detach(), minimum, temperature, False)[0]
            return dgrad, None, None, None, None, None
        with torch.enable_grad():
            g_, x_, v_ = (t.detach().requires_grad_() for t in (grad, x, values))
            y = _raw_reference(x_, v_, minimum, temperature)
            dx, dv = torch.autograd.grad(y, (x_, v_), g_, create_graph=True)
            outs, ggs = [dx], [gg_x]
            if gg_v is not None and gg_v.numel() == dv.numel():
                outs.append(dv)
                ggs.append(gg_v)
            got = torch.autograd.grad(outs, (g_, x_, v_), ggs, allow_unused=True,
                                      create_graph=torch.is_grad_enabled())
        got = [None if not n else (torch.zeros_like(t) if d is None else d)
               for d, n, t in zip(got, need, (grad, x, values))]
        return got[0], got[1], got[2], None, None, None

    torch.library.register_autograd(f"{namespace}::select_extreme_backward", backward_backward,
                                    setup_context=setup_backward)
