"""count (the soft size of each example's entity set): forward and gradient against the reference on
every dtype and layout, float32 accumulation of 16-bit inputs, gradcheck and second derivatives,
determinism, torch.compile, opcheck of both raw ops, and bad input, on every backend through the
public API."""
import pytest
import torch

import cases
import kgqa_kernels as kk
from cases import assert_close, assert_compiled_matches_eager, leaves, matrix
from kgqa_kernels import reference

# More entities than one chunk of the fixed summation order (csrc/count.h: 1024), and a ragged last one.
E = 2500


def _sets(B, E, dtype=torch.float64, seed=0, device="cpu"):
    """Weights in [0, 1), a quarter of them exactly 0, and an empty row (row 1) when B > 1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, E, generator=g, dtype=torch.float64)
    x[torch.rand(B, E, generator=g) < 0.25] = 0
    if B > 1:
        x[1] = 0
    return x.to(dtype).to(device)


@matrix("dtype")
@pytest.mark.parametrize("layout", ["row-major", "transposed"])
def test_forward_and_gradient_match_the_reference(backend, device, dtype, layout):
    B = 5
    x = _sets(B, E, dtype, device=device)
    if layout == "transposed":  # follow's batch-innermost [B, E] view
        x = x.t().contiguous().t()
    x.requires_grad_()
    y = kk.count(x, backend=backend)
    assert y.shape == (B,) and y.dtype == dtype
    (x_ref,) = leaves([x], torch.float64)
    expected = reference.count(x_ref)
    assert_close(y, expected, dtype, atol_factor=10)  # a sum of 2500 terms
    g = torch.linspace(-1, 2, B, dtype=torch.float64).to(dtype).to(device)
    (dx,) = torch.autograd.grad(y, x, g)
    assert dx.shape == x.shape and torch.equal(dx.cpu(), g.cpu()[:, None].expand(B, E))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16_bit_inputs_accumulate_in_float32(backend, device, dtype):
    # 4096 ones: a float16 running sum stops at 2048 (bfloat16 at 256); a float32 one reaches 4096.
    x = torch.ones(2, 4096, dtype=dtype, device=device)
    assert kk.count(x, backend=backend).tolist() == [4096.0, 4096.0]


def test_gradcheck_and_gradgradcheck_float64(backend, device, backend_cases):
    x = _sets(3, 40, device=device).requires_grad_()
    fn = lambda x: kk.count(x, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), fast_mode=backend_cases.gradcheck_fast)
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=backend_cases.gradcheck_fast)


def test_gradient_penalty_matches_the_reference(backend, device):
    x = _sets(3, 30, device=device)
    fn = lambda x: kk.count(x, backend=backend) ** 2  # noqa: E731  (a first derivative that depends on x)
    got = cases.penalised_grads(fn, [x], (0,))
    expected = cases.penalised_grads(lambda x: reference.count(x) ** 2, [x], (0,))
    cases.assert_same_grads(got, expected)


def test_empty_shapes(backend, device):
    assert kk.count(torch.zeros(0, 5, device=device), backend=backend).shape == (0,)
    assert kk.count(torch.zeros(3, 0, device=device), backend=backend).tolist() == [0.0, 0.0, 0.0]


def test_deterministic_across_runs_and_thread_counts(backend, device):
    x = _sets(4, 5000, torch.float32, device=device)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (threads, 1, threads):
            torch.set_num_threads(n)
            results.append(kk.count(x, backend=backend))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(results[0], other) for other in results[1:])
    # The same order of additions whatever the layout (the CPU kernel reads the two differently).
    assert torch.equal(kk.count(x.t().contiguous().t(), backend=backend), results[0])


def test_torch_compile_fullgraph(backend, device):
    x = _sets(3, 50, device=device).requires_grad_()

    def fn(x):
        return (kk.count(x, backend=backend) ** 2).sum()

    assert_compiled_matches_eager(fn, [x])


def _opcheck_cases(device):
    x = torch.rand(7, 3, device=device, requires_grad=True)  # [E, B], batch innermost
    yield "count", "count", (x,)
    yield "count-row-major", "count", (torch.rand(3, 7, device=device).t().requires_grad_(),)
    yield "count_backward", "count_backward", (torch.rand(3, device=device), x.detach())
    yield "count_backward-grad", "count_backward", (torch.rand(3, device=device, requires_grad=True), x.detach())


@pytest.mark.parametrize("case", ["count", "count-row-major", "count_backward", "count_backward-grad"])
def test_opcheck(backend, device, case):
    name, args = next((op, args) for c, op, args in _opcheck_cases(device) if c == case)
    cases.opcheck(getattr(cases.ops_for(backend), name), args)


def test_raw_ops_check_their_inputs(backend, device):
    ops = cases.ops_for(backend)
    with pytest.raises(RuntimeError, match="x must be"):
        ops.count(torch.rand(3, device=device))
    with pytest.raises(RuntimeError, match="grad must be"):
        ops.count_backward(torch.rand(4, device=device), torch.rand(5, 3, device=device))


@pytest.mark.parametrize(
    "x, err, match",
    [
        (torch.ones(2, 3, dtype=torch.long), TypeError, r"count\(\): x must be float32"),
        ([[1.0, 2.0]], TypeError, r"x must be a torch.Tensor"),
        (torch.rand(3), ValueError, r"x must be \[B, E\]"),
        (torch.rand(2, 3).to_sparse(), TypeError, r"x must be a dense tensor"),
    ],
)
def test_bad_input(x, err, match):
    with pytest.raises(err, match=match):
        kk.count(x)
