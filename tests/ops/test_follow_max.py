"""follow(..., reduce="max" | "min"): the definition (reference.follow_generalized, checked against a
loop over the facts), then every backend through the public API against it: forward and gradients
of x, r and trainable fact weights, ties, NaN and Inf, 16-bit dtypes, float64 gradcheck, the refused
second derivative, determinism and the same bits from the CUDA functors (emulated) as from the CPU
loops, opcheck and torch.compile of the raw ops follow_max and follow_max_backward."""
import pytest
import torch

import cases
import kgqa_kernels as kk
from cases import assert_close, inputs, leaves, matrix
from kgqa_kernels import layout, reference

REDUCE_MESSAGE = [("max", "mul"), ("min", "mul"), ("max", "add"), ("min", "add")]


def _signed_inputs(kb, B, dtype=torch.float64, seed=0, device=None):
    """x and r in [-1, 1): negative r makes a product's max come from a small x."""
    x, r = inputs(kb, B, dtype, seed=seed, device=device)
    return leaves((2 * x - 1, 2 * r - 1))


def _grad_out(y, seed=1):
    g = torch.rand(y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return g.to(y.dtype).to(y.device)


def _by_loop(x, r, kb, reduce, message):
    """y [B, E] by a loop over the facts: the plainest statement of the semantics."""
    w = kb.weight.double() if kb.weight is not None else torch.ones(kb.num_facts, dtype=torch.float64)
    best = {}
    for f in range(kb.num_facts):
        s, p, o = int(kb.subj[f]), int(kb.rel[f]), int(kb.obj[f])
        term = r[:, p] * (w[f] * x[:, s]) if message == "mul" else x[:, s] + r[:, p] + w[f]
        best[o] = term if o not in best else (torch.maximum if reduce == "max" else torch.minimum)(best[o], term)
    y = torch.zeros(x.shape[0], kb.num_entities, dtype=x.dtype)
    for o, t in best.items():
        y[:, o] = t
    return y


# ---- the definition ---------------------------------------------------------------------------------

@pytest.mark.parametrize("reduce, message", REDUCE_MESSAGE)
def test_the_reference_is_the_loop_over_facts(reduce, message):
    """An entity no fact reaches gets 0; tied terms share the gradient evenly."""
    kb = cases.kb("edge-weighted")
    x, r = _signed_inputs(kb, 2)
    y = kk.follow(x, r, kb, reduce=reduce, message=message, backend="reference")
    torch.testing.assert_close(y, _by_loop(x, r, kb, reduce, message))
    assert torch.autograd.gradcheck(lambda x, r: kk.follow(x, r, kb, reduce=reduce, message=message,
                                                           backend="reference"), (x, r))


# ---- every backend against the definition -----------------------------------------------------------

@pytest.mark.parametrize("reduce, message", REDUCE_MESSAGE)
@pytest.mark.parametrize("kb_name", ["edge-weighted", "edge-int64", "power-law"])
@pytest.mark.parametrize("inverse", [False, True])
def test_forward_and_gradients_match_the_reference(backend, device, reduce, message, kb_name, inverse):
    kb = cases.kb_for(backend, device, kb_name)
    B = cases.batch(backend, device, 17)
    x, r = _signed_inputs(kb, B)
    y = kk.follow(x, r, kb, inverse=inverse, reduce=reduce, message=message, backend=backend)
    want = reference.follow_generalized(x, r, kb, inverse=inverse, reduce=reduce, message=message)
    torch.testing.assert_close(y, want)
    g = _grad_out(y)
    for name, a, b in zip("xr", torch.autograd.grad(y, (x, r), g), torch.autograd.grad(want, (x, r), g)):
        torch.testing.assert_close(a, b, msg=lambda m: f"d{name}: {m}")


@matrix("dtype")
@pytest.mark.parametrize("reduce, message", [("max", "mul"), ("min", "add")])
def test_every_dtype(backend, device, dtype, reduce, message):
    """16-bit inputs are compared in float32, their accumulation type, as the reference does: the
    winners are decided there (float64 may pick another of two terms float32 rounds to a tie, and
    send the whole gradient elsewhere), and only the results are rounded to the dtype."""
    kb = cases.kb_for(backend, device, "power-law")
    x, r = _signed_inputs(kb, cases.batch(backend, device, 7), dtype)
    y = kk.follow(x, r, kb, reduce=reduce, message=message, backend=backend)
    assert y.dtype == dtype
    g = _grad_out(y)
    dx, dr = torch.autograd.grad(y, (x, r), g)
    xr, rr = leaves((x, r))
    want = reference.follow_generalized(xr, rr, kb, reduce=reduce, message=message)
    want_dx, want_dr = torch.autograd.grad(want, (xr, rr), g)
    assert_close(y, want, dtype)
    assert_close(dx, want_dx, dtype)
    assert_close(dr, want_dr, dtype)


@pytest.mark.parametrize("reduce", ["max", "min"])
@pytest.mark.parametrize("message", ["mul", "add"])
def test_ties_split_the_gradient_evenly(backend, device, reduce, message):
    """Values on a grid of a few integers: most rows have several facts with the same best term."""
    kb = cases.kb_for(backend, device, "power-law")
    B = cases.batch(backend, device, 5)
    g = torch.Generator().manual_seed(3)
    x = torch.randint(-2, 3, (B, kb.num_entities), generator=g).double().to(device).requires_grad_()
    r = torch.randint(-1, 2, (B, kb.num_relations), generator=g).double().to(device).requires_grad_()
    unit = kb.unweighted()
    y = kk.follow(x, r, unit, reduce=reduce, message=message, backend=backend)
    want = reference.follow_generalized(x, r, unit, reduce=reduce, message=message)
    torch.testing.assert_close(y, want)
    gy = _grad_out(y)
    for a, b in zip(torch.autograd.grad(y, (x, r), gy), torch.autograd.grad(want, (x, r), gy)):
        torch.testing.assert_close(a, b)
    # Two facts into entity 1 with equal terms: each subject gets half.
    tie = kk.SparseKB([0, 2], [0, 0], [1, 1], 3, 1).to(device)
    xt = torch.tensor([[0.5, 0.0, 0.5]], dtype=torch.float64, device=device, requires_grad=True)
    yt = kk.follow(xt, torch.ones(1, 1, dtype=torch.float64, device=device), tie, reduce=reduce, message=message,
                   backend=backend)
    (dx,) = torch.autograd.grad(yt[0, 1], (xt,))
    torch.testing.assert_close(dx.cpu(), torch.tensor([[0.5, 0.0, 0.5]], dtype=torch.float64))
    assert yt[0, 0] == 0 and yt[0, 2] == 0  # no fact reaches them


def test_nan_and_inf_come_out_as_the_reference(backend, device):
    kb = cases.kb_for(backend, device, "edge-weighted")
    x, r = _signed_inputs(kb, 3, device=device)
    x = x.detach().clone()
    x[0, :4] = float("nan")
    x[1, :4] = float("inf")
    x[2, :4] = -float("inf")
    for reduce, message in REDUCE_MESSAGE:
        y = kk.follow(x, r, kb, reduce=reduce, message=message, backend=backend)
        want = reference.follow_generalized(x, r, kb, reduce=reduce, message=message)
        torch.testing.assert_close(y, want, equal_nan=True, msg=lambda m: f"{reduce}/{message}: {m}")


@matrix(kb_name="gradcheck_kb")
@pytest.mark.parametrize("reduce, message", [("max", "mul"), ("min", "add")])
def test_gradcheck_float64(backend, device, backend_cases, kb_name, reduce, message):
    kb = cases.kb(kb_name, device)
    x, r = _signed_inputs(kb, 3, device=device)
    assert torch.autograd.gradcheck(
        lambda x, r: kk.follow(x, r, kb, reduce=reduce, message=message, backend=backend), (x, r),
        fast_mode=backend_cases.gradcheck_fast)


@pytest.mark.parametrize("reduce, message", REDUCE_MESSAGE)
@pytest.mark.parametrize("inverse", [False, True])
def test_fact_weights_train(backend, device, reduce, message, inverse):
    """w.grad in the order the facts were given, as the reference's (autograd through its terms). No
    gradcheck in w: the KB stores weights as float32, and a finite-difference step large enough for
    that (1e-2) changes which fact wins."""
    s, p, o = cases.random_facts(12, 3, 40, seed=5)
    w = (torch.rand(40, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.5).float().double()
    w = w.to(device).requires_grad_()
    kb = kk.SparseKB(s.to(device), p.to(device), o.to(device), 12, 3, weight=w)
    x, r = _signed_inputs(kb, 3, device=device)
    g = _grad_out(torch.empty(3, 12)).to(device)

    def grads(backend):
        y = kk.follow(x, r, kb, inverse=inverse, reduce=reduce, message=message, backend=backend)
        return torch.autograd.grad(y, (x, r, w), g)

    for name, a, b in zip(("x", "r", "weight"), grads(backend), grads("reference")):
        torch.testing.assert_close(a, b, msg=lambda m: f"{name}: {m}")


def test_second_derivatives_are_refused_with_the_op_named(backend, device):
    kb = cases.kb_for(backend, device, "edge-weighted")
    x, r = _signed_inputs(kb, 2, device=device)
    y = kk.follow(x, r, kb, reduce="max", backend=backend)
    (dx,) = torch.autograd.grad(y.pow(2).sum(), (x,), create_graph=True)
    with pytest.raises(RuntimeError, match=r"follow_max_backward\(\): second-order gradients"):
        dx.sum().backward()


def test_layouts_of_x_and_r(backend, device):
    """A sparse x, a row-major output's gradient, r broadcast from [R]: the same as dense."""
    kb = cases.kb_for(backend, device, "edge-weighted")
    x, r = _signed_inputs(kb, 2, device=device)
    want = kk.follow(x, r[:1].expand(2, -1), kb, reduce="max", backend=backend)
    torch.testing.assert_close(kk.follow(x.detach().to_sparse(), r[0].detach(), kb, reduce="max", backend=backend),
                               want.detach())
    y = kk.follow(x, r[0], kb, reduce="max", backend=backend, direction="push")  # max always pulls
    torch.testing.assert_close(y, want)
    with pytest.raises(ValueError, match="direction"):
        kk.follow(x, r, kb, reduce="max", backend=backend, direction="sideways")


@pytest.mark.parametrize("which", ["edge-weighted", "power-law"])
def test_deterministic_across_runs_and_thread_counts(backend, device, which):
    kb = cases.kb_for(backend, device, which)
    B = cases.batch(backend, device, 70)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (threads, 1, threads):
            torch.set_num_threads(n)
            x, r = _signed_inputs(kb, B, torch.float32, device=device)
            y = kk.follow(x, r, kb, reduce="max", backend=backend)
            (y * torch.linspace(-1, 1, y.numel(), device=device).view_as(y)).sum().backward()
            results.append((y.detach(), x.grad, r.grad))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("inverse", [False, True])
def test_cuda_functors_give_the_cpu_loops_bits(dtype, inverse):
    """The emulated CUDA functors and the CPU loops take the same steps in the same order."""
    kb = cases.kb("chunked")  # dr's relations span several chunks
    T = kb.tensors()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(kb.num_entities, 33, generator=g).to(dtype)
    r = torch.randn(kb.num_relations, 33, generator=g).to(dtype)
    grad = torch.randn(kb.num_entities, 33, generator=g).to(dtype)
    cpu, emu = torch.ops.kgqa_kernels, torch.ops.kgqa_kernels_emu
    for minimum, add in ((False, False), (True, True)):
        assert torch.equal(cpu.follow_max(x, r, T, inverse, minimum, add), emu.follow_max(x, r, T, inverse, minimum, add))
        for a, b in zip(cpu.follow_max_backward(x, r, grad, T, inverse, minimum, add, True),
                        emu.follow_max_backward(x, r, grad, T, inverse, minimum, add, True)):
            assert torch.equal(a, b)


# ---- the raw ops --------------------------------------------------------------------------------------

def _opcheck_cases(device):
    kb, kb64 = cases.kb("tiny-weighted", device).tensors(), cases.kb("tiny-int64", device).tensors()
    E, R = kb[layout.OBJ_PTR].numel() - 1, kb[layout.REL_PTR].numel() - 1
    B = 3

    def t(rows, grad=True):
        return (2 * torch.rand(rows, B, dtype=torch.float64, device=device) - 1).requires_grad_(grad)

    yield "follow_max", "follow_max", (t(E), t(R), kb, False, False, False)
    yield "follow_max-min-add-int64", "follow_max", (t(E), t(R), kb64, True, True, True)
    yield "follow_max_backward", "follow_max_backward", (t(E, False), t(R, False), t(E, False), kb, False, False,
                                                         False, True)


@pytest.mark.parametrize("case", ["follow_max", "follow_max-min-add-int64", "follow_max_backward"])
def test_opcheck(backend, device, case):
    name, args = next((op, args) for c, op, args in _opcheck_cases(device) if c == case)
    cases.opcheck(getattr(cases.ops_for(backend), name), args)


def test_torch_compile_traces_the_ops(backend, device):
    kb = cases.kb("edge-weighted", device)
    x, r = _signed_inputs(kb, 4, device=device)

    def hops(x, r):
        a = kk.follow(x, r, kb, reduce="max", backend=backend)
        return kk.follow(a, r.flip(0), kb, reduce="min", message="add", backend=backend).sum()

    out = torch.compile(hops, backend="aot_eager", fullgraph=True)(x, r)
    out.backward()
    x2, r2 = leaves((x, r))
    expected = hops(x2, r2)
    expected.backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(r.grad, r2.grad)


def test_raw_ops_take_an_empty_batch_and_check_shapes(backend, device):
    ops = cases.ops_for(backend)
    kb = cases.kb("edge", device).tensors()
    E, R = kb[layout.OBJ_PTR].numel() - 1, kb[layout.REL_PTR].numel() - 1
    assert ops.follow_max(torch.rand(E, 0, device=device), torch.rand(R, 0, device=device), kb, False, False,
                          False).shape == (E, 0)
    with pytest.raises(RuntimeError, match=r"x must be \[20, B\]"):
        ops.follow_max(torch.rand(E + 1, 2, device=device), torch.rand(R, 2, device=device), kb, False, False, False)
    with pytest.raises(RuntimeError, match=r"x and grad must have the same batch size|grad must be \[20, 2\]"):
        ops.follow_max_backward(torch.rand(E, 2, device=device), torch.rand(R, 2, device=device),
                                torch.rand(E, 3, device=device), kb, False, False, False, False)
