"""intersect and union (elementwise t-norms of k >= 2 tensors): forward and gradients against the
references with ties, NaN and zeros, gradcheck, second derivatives, opcheck, layouts, determinism on
every backend through the public API; then the raw ops' checks and bad input."""
import pytest
import torch

import cases
import kgqa_kernels as kk
from cases import assert_close, leaves, matrix
from kgqa_kernels import checks, reference

OPS = [("intersect", "min"), ("intersect", "product"), ("union", "max"), ("union", "product")]


def _op(name):
    return getattr(kk, name), getattr(reference, name)


def _tied(k, shape, dtype=torch.float64, seed=0, device="cpu"):
    """Values on a coarse grid, so many elements tie across the k inputs."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 4, shape, generator=g).double() / 4).to(dtype).to(device).requires_grad_()
            for _ in range(k)]


@matrix("dtype")
@pytest.mark.parametrize("name, tnorm", OPS)
@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("layout", ["row-major", "transposed"])
def test_forward_and_gradients_match_the_reference_with_ties(backend, device, dtype, name, tnorm, k, layout):
    ours, ref = _op(name)
    xs = [x.detach() for x in _tied(k, (300, 7) if layout == "transposed" else (7, 300), seed=k)]
    if layout == "transposed":  # the batch-innermost [B, E] views follow returns
        xs = [x.t() for x in xs]
    if tnorm in ("min", "max"):  # NaN wins, as in amin / amax. (Products: torch's prod backward
        xs[0][0, 0] = float("nan")  # divides, so spreads a NaN to the other inputs' gradients; ours does not.)
    xs[k - 1][2, 5] = 0.0  # a zero in a product
    xs = [x.to(dtype).requires_grad_() for x in xs]
    out = ours(*xs, tnorm=tnorm, backend=backend)
    assert out.dtype == dtype and out.stride() == xs[0].stride()
    refs = leaves(xs, torch.float64)
    expected = ref(*refs, tnorm=tnorm)
    assert_close(out, expected, dtype)
    g = torch.rand(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype).to(device)
    for a, b in zip(torch.autograd.grad(out, xs, g), torch.autograd.grad(expected, refs, g.double())):
        assert_close(a, b, dtype)


def test_ties_split_the_gradient_evenly(backend, device):
    a = torch.tensor([0.5, 0.2, 0.3], device=device, requires_grad=True)
    b = torch.tensor([0.5, 0.4, 0.3], device=device, requires_grad=True)
    c = torch.tensor([0.5, 0.9, 0.1], device=device, requires_grad=True)
    kk.intersect(a, b, c, backend=backend).sum().backward()
    assert a.grad.tolist() == pytest.approx([1 / 3, 1.0, 0.0])
    assert b.grad.tolist() == pytest.approx([1 / 3, 0.0, 0.0])
    assert c.grad.tolist() == pytest.approx([1 / 3, 0.0, 1.0])


@pytest.mark.parametrize("name, tnorm", OPS)
@pytest.mark.parametrize("k", [2, 3, 4])
def test_gradcheck_float64(backend, device, backend_cases, name, tnorm, k):
    ours, _ = _op(name)
    xs = [torch.rand(3, 11, dtype=torch.float64, device=device, requires_grad=True) for _ in range(k)]  # no ties
    assert torch.autograd.gradcheck(lambda *xs: ours(*xs, tnorm=tnorm, backend=backend), xs,
                                    fast_mode=backend_cases.gradcheck_fast)


# ---- second derivatives ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, tnorm", OPS)
@pytest.mark.parametrize("k", [2, 3])
def test_gradgradcheck_float64(backend, device, backend_cases, name, tnorm, k):
    """min / max: the second derivative in xs is zero away from ties (all these inputs differ), the
    one in the output gradient the shares; products: products of the other inputs."""
    ours, _ = _op(name)
    g = torch.Generator().manual_seed(k)
    xs = [torch.rand(3, 5, generator=g, dtype=torch.float64).to(device).requires_grad_() for _ in range(k)]
    assert torch.autograd.gradgradcheck(lambda *xs: ours(*xs, tnorm=tnorm, backend=backend), xs,
                                        fast_mode=backend_cases.gradcheck_fast)


@pytest.mark.parametrize("name, tnorm", OPS)
def test_gradient_penalty_matches_the_reference_with_ties(backend, device, name, tnorm):
    ours, ref = _op(name)
    xs = [x.detach() for x in _tied(3, (4, 9), device=device)]  # ties between inputs: shares of 1/2 and 1/3
    xs[2][1, 1] = 0.0  # a zero in a product
    wrt = (0, 2)
    got = cases.penalised_grads(lambda *xs: ours(*xs, tnorm=tnorm, backend=backend), xs, wrt)
    expected = cases.penalised_grads(lambda *xs: ref(*xs, tnorm=tnorm), xs, wrt)
    assert all(e is not None and bool(e.abs().sum() > 0) for e in expected)
    cases.assert_same_grads(got, expected)


@pytest.mark.parametrize("name, tnorm", OPS)
def test_product_gradients_with_zeros_are_exact(backend, device, name, tnorm):
    ours, ref = _op(name)
    zero = 0.0 if name == "intersect" else 1.0  # where the product term vanishes
    xs = [torch.full((4,), 0.5, dtype=torch.float64, device=device, requires_grad=True) for _ in range(3)]
    with torch.no_grad():
        xs[0][1] = zero
        xs[1][1] = zero
        xs[2][2] = zero
    xs_ref = leaves(xs)
    ours(*xs, tnorm=tnorm, backend=backend).sum().backward()
    ref(*xs_ref, tnorm=tnorm).sum().backward()
    for a, b in zip(xs, xs_ref):
        torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("shape", [(0, 5), (7,), (2, 3, 4), ()])
def test_any_shape(backend, device, shape):
    xs = [torch.rand(shape, dtype=torch.float64, device=device) for _ in range(3)]
    torch.testing.assert_close(kk.intersect(*xs, backend=backend), reference.intersect(*xs))
    torch.testing.assert_close(kk.union(*xs, tnorm="product", backend=backend), reference.union(*xs, tnorm="product"))


def test_layouts_are_kept_when_shared_and_fixed_when_mixed(backend, device):
    a, b = torch.rand(4, 9, device=device), torch.rand(4, 9, device=device)
    col_a, col_b = a.t().contiguous().t(), b.t().contiguous().t()
    out = kk.intersect(col_a, col_b, backend=backend)
    assert out.stride() == col_a.stride()
    assert torch.equal(out, torch.minimum(a, b))
    mixed = kk.union(col_a, b, backend=backend)
    assert mixed.is_contiguous() and torch.equal(mixed, torch.maximum(a, b))
    sliced = torch.rand(4, 18, device=device)[:, ::2]
    assert torch.equal(kk.intersect(sliced, a, backend=backend), torch.minimum(sliced, a))
    # The backward accepts a gradient in another layout than the inputs.
    col_a.requires_grad_()
    kk.intersect(col_a, col_b, backend=backend).backward(torch.ones(4, 9, device=device))
    assert torch.equal(col_a.grad, (a <= b).float() / (1 + (a == b).float()))


def test_nan_propagates_forward_and_backward_like_amin(backend, device):
    xs = [torch.tensor([0.2, float("nan"), 0.7], dtype=torch.float64, device=device, requires_grad=True)
          for _ in range(2)]
    xs_ref = leaves(xs)
    with torch.no_grad():
        xs[1][0] = 0.1
        xs_ref[1][0] = 0.1
    out, expected = kk.intersect(*xs, backend=backend), reference.intersect(*xs_ref)
    torch.testing.assert_close(out, expected, equal_nan=True)
    out.sum().backward()
    expected.sum().backward()
    for a, b in zip(xs, xs_ref):
        torch.testing.assert_close(a.grad, b.grad, equal_nan=True)
    assert torch.isnan(kk.union(*[x.detach() for x in xs], backend=backend)[1])


def test_list_argument_and_the_reference(backend, device):
    xs = [torch.rand(3, 4, device=device) for _ in range(2)]
    assert torch.equal(kk.intersect(xs, backend=backend), kk.intersect(*xs, backend=backend))
    assert torch.equal(kk.union(*xs, backend="reference"), kk.union(*xs, backend=backend))


def test_deterministic(backend, device):
    xs = _tied(3, (64, 300), torch.float32, device=device)
    g = torch.rand(64, 300, device=device)
    first = torch.autograd.grad(kk.intersect(*xs, backend=backend), xs, g)
    second = torch.autograd.grad(kk.intersect(*xs, backend=backend), xs, g)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def _opcheck_cases(device):
    B = 3
    xs = [torch.rand(B, 7, device=device, requires_grad=True) for _ in range(3)]
    col_major = [torch.rand(7, B, device=device).t().requires_grad_() for _ in range(2)]
    yield "intersect-min", "intersect", (xs, "min")
    yield "intersect-product-col-major", "intersect", (col_major, "product")
    yield "union-max", "union", (xs, "max")
    yield "union-product", "union", (xs[:2], "product")
    plain = [x.detach() for x in xs]
    out = torch.stack(plain).amin(0)  # a real output, or no input would match it and all would be NaN
    yield "intersect_backward", "intersect_backward", (torch.rand(B, 7, device=device), plain, out, "min")
    yield "union_backward", "union_backward", (torch.rand(B, 7, device=device), plain,
                                               1 - (1 - torch.stack(plain)).prod(0), "product")
    # The backwards' own autograd (the derivatives of a gradient penalty).
    grad = torch.rand(B, 7, device=device, requires_grad=True)
    yield "intersect_backward-grad-min", "intersect_backward", (grad, xs, out, "min")
    yield "intersect_backward-grad-product", "intersect_backward", (grad, xs, out, "product")
    yield "union_backward-grad-max", "union_backward", (grad, xs, torch.stack(plain).amax(0), "max")
    yield "union_backward-grad-product", "union_backward", (grad, xs, 1 - (1 - torch.stack(plain)).prod(0), "product")


OPCHECK_CASES = ["intersect-min", "intersect-product-col-major", "union-max", "union-product", "intersect_backward",
                 "union_backward", "intersect_backward-grad-min", "intersect_backward-grad-product",
                 "union_backward-grad-max", "union_backward-grad-product"]


@pytest.mark.parametrize("case", OPCHECK_CASES)
def test_opcheck(backend, device, case):
    name, args = next((op, args) for c, op, args in _opcheck_cases(device) if c == case)
    cases.opcheck(getattr(cases.ops_for(backend), name), args)


# ---- the raw ops ----------------------------------------------------------------------------------

RAW_ERRORS = [  # (call, what the error says: the C++ ops' words | the Triton ops' words)
    (lambda ops, d: ops.intersect([torch.rand(3, device=d)], "min"), "at least 2"),
    (lambda ops, d: ops.intersect([torch.rand(3, device=d), torch.rand(3, device=d)], "max"),
     "tnorm must be 'min' or 'product'"),
    (lambda ops, d: ops.union([torch.rand(3, device=d), torch.rand(4, device=d)], "max"), "must have (the )?shape"),
]


@pytest.mark.parametrize("call, match", RAW_ERRORS)
def test_raw_ops_check_their_inputs(backend, device, call, match):
    with pytest.raises(RuntimeError, match=match):
        call(cases.ops_for(backend), device)


def test_branch_limit_of_a_launch(backend, device):
    """The GPU kernels (and their emulation) take their inputs' pointers in a fixed-size array,
    Triton one argument per input: beyond that the raw op and the public op refuse; the C++ CPU
    kernels take any number."""
    limit = checks.max_branches(backend)
    xs = [torch.rand(3, device=device) for _ in range((limit or 16) + 1)]
    if limit is None:
        torch.testing.assert_close(cases.ops_for(backend).intersect(xs, "min"), reference.intersect(*xs))
        return
    with pytest.raises((RuntimeError, ValueError), match=f"at most {limit}"):
        cases.ops_for(backend).intersect(xs, "min")
    with pytest.raises(ValueError, match=f"backend='{backend}' takes at most {limit} inputs"):
        kk.intersect(*xs, backend=backend)


# ---- bad input to the public ops (checked before any backend is chosen) -----------------------------

@pytest.mark.parametrize(
    "args, kwargs, err, match",
    [
        ((torch.rand(3),), {}, ValueError, "at least 2 tensors"),
        ((torch.rand(3), torch.rand(4)), {}, ValueError, r"xs\[1\] has shape"),
        ((torch.rand(3), torch.rand(3, dtype=torch.float64)), {}, TypeError, r"xs\[1\] has dtype"),
        ((torch.rand(3), torch.ones(3, dtype=torch.long)), {}, TypeError, r"xs\[1\] must be float32"),
        ((torch.rand(3), [1.0, 2.0, 3.0]), {}, TypeError, r"xs\[1\] must be a torch.Tensor"),
        ((torch.rand(3), torch.rand(3, device="meta")), {}, ValueError, r"xs\[1\] is on meta"),
        ((torch.rand(3), torch.rand(3).to_sparse()), {}, TypeError, r"xs\[1\] must be a dense tensor"),
        ((torch.rand(3), torch.rand(3)), {"tnorm": "max"}, ValueError, "tnorm must be one of"),
    ],
)
def test_bad_input_intersect(args, kwargs, err, match):
    with pytest.raises(err, match=match):
        kk.intersect(*args, **kwargs)


def test_bad_tnorm_union():
    with pytest.raises(ValueError, match=r"union\(\): tnorm must be one of"):
        kk.union(torch.rand(2), torch.rand(2), tnorm="min")
