"""select_extreme (the members of a set with the largest or smallest value): forward and gradients
against the reference on every dtype, both modes, exact and soft, shared [E] and per-example [B, E]
values, with ties (also across the kernels' chunks), NaN values, zero weights and rows without a
member; gradcheck and second derivatives; determinism, torch.compile, opcheck; bad input. Every
backend through the public API."""
import math

import pytest
import torch

import cases
import kgqa_kernels as kk
from cases import assert_close, assert_compiled_matches_eager, leaves, matrix
from kgqa_kernels import reference

NAN = float("nan")
E = 2500  # more than two of the kernels' chunks of 1024 entities (csrc/count.h)


def _case(B, E, dtype=torch.float64, shared=True, seed=0, device="cpu"):
    """x [B, E] with a quarter zeros, values on a coarse grid (many ties, also across chunks) with a
    tenth NaN; row 1 has no member (all x 0), row 2 no member with a value (all values NaN)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, E, generator=g, dtype=torch.float64) + 0.1
    x[torch.rand(B, E, generator=g) < 0.25] = 0
    v = torch.randint(0, 20, (E,) if shared else (B, E), generator=g).double()
    v[torch.rand(v.shape, generator=g) < 0.1] = NAN
    if B > 1:
        x[1] = 0
    if B > 2 and not shared:
        v[2] = NAN
    return x.to(dtype).to(device), v.to(dtype).to(device)


def _grads(y, inputs, g):
    return [torch.zeros_like(t) if d is None else d
            for d, t in zip(torch.autograd.grad(y, inputs, g, allow_unused=True), inputs)]


# Each mode, temperature and kind of values twice, in four combinations rather than all eight (test time).
@matrix("dtype")
@pytest.mark.parametrize("mode, temperature, shared", [("max", 0.0, True), ("min", 0.0, False), ("max", 2.0, False),
                                                       ("min", 2.0, True)])
def test_forward_and_gradients_match_the_reference(backend, device, dtype, mode, temperature, shared):
    B = 5
    x, v = _case(B, E, dtype, shared, device=device)
    x = x.t().contiguous().t()  # follow's batch-innermost [B, E] view
    x.requires_grad_()
    v.requires_grad_()
    y = kk.select_extreme(x, v, mode=mode, temperature=temperature, backend=backend)
    assert y.shape == (B, E) and y.dtype == dtype and not y.isnan().any()
    x_ref, v_ref = leaves([x, v], torch.float64)
    expected = reference.select_extreme(x_ref, v_ref, mode=mode, temperature=temperature)
    assert_close(y, expected, dtype)
    assert not y[1].any() and not y[2].any() if not shared else not y[1].any()
    g = torch.rand(B, E, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(dtype).to(device)
    got = _grads(y, [x, v], g)
    want = _grads(expected, [x_ref, v_ref], g.double())
    assert all(not t.isnan().any() for t in got)
    assert_close(got[0], want[0], dtype)
    assert_close(got[1], want[1], dtype, atol_factor=10)  # a shared values' gradient sums 5 rows
    if temperature == 0:
        assert not got[1].any()  # exact: piecewise constant in the values


def test_ties_share_and_nan_never_wins(backend, device):
    x = torch.tensor([[0.5, 0.2, 0.7, 0.0, 0.9], [0.0, 0.0, 0.0, 0.0, 0.0]], device=device)
    v = torch.tensor([3.0, 1.0, 3.0, 9.0, NAN], device=device)
    y = kk.select_extreme(x, v, backend=backend)
    assert y.tolist() == [pytest.approx([0.5, 0.0, 0.7, 0.0, 0.0]), [0.0] * 5]  # entity 3 is no member, 4 has no value
    y = kk.select_extreme(x, v, mode="min", backend=backend)
    assert y.tolist()[0] == pytest.approx([0.0, 0.2, 0.0, 0.0, 0.0])


def test_soft_tends_to_the_exact_selection(backend, device):
    x, v = _case(4, 60, shared=False, device=device)
    exact = kk.select_extreme(x, v, backend=backend)
    soft = kk.select_extreme(x, v, temperature=1e-3, backend=backend)
    torch.testing.assert_close(soft, exact, atol=1e-12, rtol=0)
    warm = kk.select_extreme(x, v, temperature=5.0, backend=backend)
    assert bool((warm >= exact).all()) and bool((warm > exact).any())


def _no_ties(B, E, shared, device, mode="max", seed=1):
    """Distinct values (finite differences cross no tie), a few NaN; a zero weight only on the entity
    whose value is worst for ``mode`` (a probe that makes it a member changes the result by about
    exp(-range / temperature), far below gradcheck's tolerance)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, E, generator=g, dtype=torch.float64) + 0.1
    v = torch.randperm(B * E if not shared else E, generator=g).double().view((E,) if shared else (B, E)) / 3
    v[..., 1] = NAN
    worst = v.nan_to_num(1e9).argmin(-1) if mode == "max" else v.nan_to_num(-1e9).argmax(-1)
    if shared:
        x[:, int(worst)] = 0
    else:
        x[torch.arange(B), worst] = 0
    return x.to(device).requires_grad_(), v.to(device).requires_grad_()


@pytest.mark.parametrize("shared", [True, False])
def test_gradcheck_float64(backend, device, backend_cases, shared):
    fast = backend_cases.gradcheck_fast
    x, v = _no_ties(3, 9, shared, device)
    soft = lambda x, v: kk.select_extreme(x, v, temperature=0.2, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(soft, (x, v), fast_mode=fast)
    # Exact: ties on purpose (values on a grid), NaN values, a row whose values are all NaN; the
    # gradient to x only (values' is 0, and a probe of a tied value breaks the tie).
    tied = torch.tensor([[2.0, 1.0, 2.0, NAN, 0.5], [NAN] * 5, [1.0, 1.0, 3.0, 3.0, NAN]], dtype=torch.float64,
                        device=device)
    xt = torch.rand(3, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64).add(0.1).to(device)
    exact = lambda x: kk.select_extreme(x, tied if not shared else tied[0], mode="max", backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(exact, (xt.requires_grad_(),), fast_mode=fast)


@pytest.mark.parametrize("temperature", [0.0, 0.2])
def test_gradgradcheck_float64(backend, device, backend_cases, temperature):
    x, v = _no_ties(2, 5, False, device, mode="min")
    # No zero weights: the first derivative itself jumps where a probe makes an entity a member.
    x = x.detach().clamp_min(0.1).requires_grad_()
    if temperature == 0:
        v = v.detach()
        fn = lambda x: kk.select_extreme(x, v, mode="min", backend=backend)  # noqa: E731
        assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=backend_cases.gradcheck_fast)
    else:
        fn = lambda x, v: kk.select_extreme(x, v, mode="min", temperature=temperature, backend=backend)  # noqa: E731
        assert torch.autograd.gradgradcheck(fn, (x, v), fast_mode=backend_cases.gradcheck_fast)


def test_deterministic_across_runs_and_thread_counts(backend, device):
    x, v = _case(4, E, torch.float32, device=device)
    x.requires_grad_()
    v.requires_grad_()
    g = torch.rand(4, E, device=device)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (threads, 1, threads):
            torch.set_num_threads(n)
            y = kk.select_extreme(x, v, temperature=3.0, backend=backend)
            results.append((y.detach(), *torch.autograd.grad(y, (x, v), g)))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


def test_torch_compile_fullgraph(backend, device):
    x, v = _no_ties(3, 7, True, device)

    def fn(x, v):  # exact and soft in one graph
        exact = kk.select_extreme(x, v, backend=backend)
        return (exact ** 2).sum() + (kk.select_extreme(x, v, mode="min", temperature=1.5, backend=backend) ** 2).sum()

    assert_compiled_matches_eager(fn, [x, v])


def _opcheck_cases(device):
    x = (torch.rand(7, 3, device=device) + 0.1).requires_grad_()  # [E, B], batch innermost
    v = torch.randn(7, device=device).requires_grad_()
    vb = torch.randn(3, 7, device=device).t().requires_grad_()
    yield "exact-shared", "select_extreme", (x, v, False, 0.0)
    yield "soft-rows", "select_extreme", (x, vb, True, 0.7)
    grad = torch.rand(7, 3, device=device)
    yield "backward", "select_extreme_backward", (grad, x.detach(), v.detach(), False, 0.7, True)
    yield "backward-no-values", "select_extreme_backward", (grad, x.detach(), vb.detach(), True, 0.0, False)
    yield "backward-grad-exact", "select_extreme_backward", (grad.requires_grad_(), x.detach(), v.detach(), False,
                                                             0.0, True)


OPCHECK_CASES = ["exact-shared", "soft-rows", "backward", "backward-no-values", "backward-grad-exact"]


@pytest.mark.parametrize("case", OPCHECK_CASES)
def test_opcheck(backend, device, case):
    name, args = next((op, args) for c, op, args in _opcheck_cases(device) if c == case)
    cases.opcheck(getattr(cases.ops_for(backend), name), args)


def test_raw_ops_check_their_inputs(backend, device):
    ops = cases.ops_for(backend)
    x = torch.rand(5, 2, device=device)
    with pytest.raises(RuntimeError, match="values must be"):
        ops.select_extreme(x, torch.rand(4, device=device), False, 0.0)
    with pytest.raises(RuntimeError, match="temperature must be"):
        ops.select_extreme(x, torch.rand(5, device=device), False, -1.0)
    with pytest.raises(RuntimeError, match="grad must"):
        ops.select_extreme_backward(torch.rand(2, 5, device=device), x, torch.rand(5, device=device), False, 0.0, True)


X, V = torch.rand(2, 4), torch.rand(4)


@pytest.mark.parametrize(
    "args, kwargs, err, match",
    [
        ((X, V), {"mode": "largest"}, ValueError, r"select_extreme\(\): mode must be one of"),
        ((X, V), {"temperature": -0.1}, ValueError, r"temperature must be finite and >= 0"),
        ((X, V), {"temperature": math.nan}, ValueError, r"temperature must be finite and >= 0"),
        ((X, V), {"temperature": math.inf}, ValueError, r"temperature must be finite and >= 0"),
        ((X, V), {"temperature": "hot"}, TypeError, r"temperature must be a float"),
        ((X, V), {"temperature": torch.tensor(1.0)}, TypeError, r"temperature must be a float"),
        ((X, torch.rand(5)), {}, ValueError, r"values must be \[E=4\] or \[B, E\]"),
        ((X, torch.rand(3, 4)), {}, ValueError, r"values must be \[E=4\] or \[B, E\]"),
        ((X, V.double()), {}, TypeError, r"values has dtype torch.float64, expected torch.float32"),
        ((X, torch.arange(4)), {}, TypeError, r"values must be float32"),
        ((X.long(), V), {}, TypeError, r"x must be float32"),
        ((V, V), {}, ValueError, r"x must be \[B, E\]"),
        ((X, V.to("meta")), {}, ValueError, r"values is on meta"),
    ],
)
def test_bad_input(args, kwargs, err, match):
    with pytest.raises(err, match=match):
        kk.select_extreme(*args, **kwargs)
