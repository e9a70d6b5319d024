import pytest
import torch

import kgqa_kernels as kk
from kgqa_kernels import reference
from kbgen import DTYPE_TOLERANCES

OPS = [("intersect", "min"), ("intersect", "product"), ("union", "max"), ("union", "product")]


def _op(name):
    return getattr(kk, name), getattr(reference, name)


def _tied_inputs(k, shape, dtype=torch.float64, seed=0):
    """Values on a coarse grid, so many elements tie across the k inputs."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 4, shape, generator=g).double() / 4).to(dtype).requires_grad_() for _ in range(k)]


@pytest.mark.parametrize("name, tnorm", OPS)
@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("dtype, atol, rtol", DTYPE_TOLERANCES)
def test_forward_and_gradients_match_the_reference_with_ties(name, tnorm, k, dtype, atol, rtol):
    ours, ref = _op(name)
    xs = _tied_inputs(k, (5, 37), dtype)
    xs_ref = [x.detach().clone().requires_grad_() for x in xs]
    out = ours(*xs, tnorm=tnorm)
    expected = ref(*xs_ref, tnorm=tnorm)
    torch.testing.assert_close(out, expected, atol=atol, rtol=rtol)
    g = torch.rand(out.shape, dtype=torch.float64).to(dtype)
    grads = torch.autograd.grad(out, xs, g)
    expected_grads = torch.autograd.grad(expected, xs_ref, g)
    for a, b in zip(grads, expected_grads):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


def test_ties_split_the_gradient_evenly():
    a = torch.tensor([0.5, 0.2, 0.3], requires_grad=True)
    b = torch.tensor([0.5, 0.4, 0.3], requires_grad=True)
    c = torch.tensor([0.5, 0.9, 0.1], requires_grad=True)
    kk.intersect(a, b, c).sum().backward()
    assert a.grad.tolist() == pytest.approx([1 / 3, 1.0, 0.0])
    assert b.grad.tolist() == pytest.approx([1 / 3, 0.0, 0.0])
    assert c.grad.tolist() == pytest.approx([1 / 3, 0.0, 1.0])


@pytest.mark.parametrize("name, tnorm", OPS)
@pytest.mark.parametrize("k", [2, 3, 4])
def test_gradcheck_float64(name, tnorm, k):
    ours, _ = _op(name)
    xs = [torch.rand(3, 11, dtype=torch.float64, requires_grad=True) for _ in range(k)]  # no ties
    assert torch.autograd.gradcheck(lambda *xs: ours(*xs, tnorm=tnorm), xs)


@pytest.mark.parametrize("name, tnorm", OPS)
def test_product_gradients_with_zeros_are_exact(name, tnorm):
    ours, ref = _op(name)
    zero = 0.0 if name == "intersect" else 1.0  # where the product term vanishes
    xs = [torch.full((4,), 0.5, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    with torch.no_grad():
        xs[0][1] = zero
        xs[1][1] = zero
        xs[2][2] = zero
    xs_ref = [x.detach().clone().requires_grad_() for x in xs]
    ours(*xs, tnorm=tnorm).sum().backward()
    ref(*xs_ref, tnorm=tnorm).sum().backward()
    for a, b in zip(xs, xs_ref):
        torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("shape", [(0, 5), (7,), (2, 3, 4), ()])
def test_any_shape(shape):
    xs = [torch.rand(shape, dtype=torch.float64) for _ in range(3)]
    torch.testing.assert_close(kk.intersect(*xs), reference.intersect(*xs))
    torch.testing.assert_close(kk.union(*xs, tnorm="product"), reference.union(*xs, tnorm="product"))


def test_layouts_are_kept_when_shared_and_fixed_when_mixed():
    a, b = torch.rand(4, 9), torch.rand(4, 9)
    col_a, col_b = a.t().contiguous().t(), b.t().contiguous().t()
    out = kk.intersect(col_a, col_b)
    assert out.stride() == col_a.stride()
    assert torch.equal(out, torch.minimum(a, b))
    mixed = kk.union(col_a, b)
    assert mixed.is_contiguous() and torch.equal(mixed, torch.maximum(a, b))
    sliced = torch.rand(4, 18)[:, ::2]
    assert torch.equal(kk.intersect(sliced, a), torch.minimum(sliced, a))
    # The backward accepts a gradient in another layout than the inputs.
    col_a.requires_grad_()
    kk.intersect(col_a, col_b).backward(torch.ones(4, 9))
    assert torch.equal(col_a.grad, (a <= b).float() / (1 + (a == b).float()))


def test_nan_propagates_forward_and_backward_like_amin():
    xs = [torch.tensor([0.2, float("nan"), 0.7], dtype=torch.float64, requires_grad=True) for _ in range(2)]
    xs_ref = [x.detach().clone().requires_grad_() for x in xs]
    with torch.no_grad():
        xs[1][0] = 0.1
        xs_ref[1][0] = 0.1
    out, expected = kk.intersect(*xs), reference.intersect(*xs_ref)
    torch.testing.assert_close(out, expected, equal_nan=True)
    out.sum().backward()
    expected.sum().backward()
    for a, b in zip(xs, xs_ref):
        torch.testing.assert_close(a.grad, b.grad, equal_nan=True)
    assert torch.isnan(kk.union(*[x.detach() for x in xs])[1])


def test_list_argument_and_backends():
    xs = [torch.rand(3, 4) for _ in range(2)]
    assert torch.equal(kk.intersect(xs), kk.intersect(*xs))
    assert torch.equal(kk.union(*xs, backend="reference"), kk.union(*xs, backend="cpu"))


def test_deterministic():
    xs = _tied_inputs(3, (64, 300), torch.float32)
    g = torch.rand(64, 300)
    first = torch.autograd.grad(kk.intersect(*xs), xs, g)
    second = torch.autograd.grad(kk.intersect(*xs), xs, g)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize(
    "args, kwargs, err, match",
    [
        ((torch.rand(3),), {}, ValueError, "at least 2 tensors"),
        ((torch.rand(3), torch.rand(4)), {}, ValueError, r"xs\[1\] has shape"),
        ((torch.rand(3), torch.rand(3, dtype=torch.float64)), {}, TypeError, r"xs\[1\] has dtype"),
        ((torch.rand(3), torch.ones(3, dtype=torch.long)), {}, TypeError, r"xs\[1\] must be float32"),
        ((torch.rand(3), [1.0, 2.0, 3.0]), {}, TypeError, r"xs\[1\] must be a torch.Tensor"),
        ((torch.rand(3), torch.rand(3, device="meta")), {}, ValueError, r"xs\[1\] is on meta"),
        ((torch.rand(3), torch.rand(3)), {"tnorm": "max"}, ValueError, "tnorm must be one of"),
    ],
)
def test_bad_input_intersect(args, kwargs, err, match):
    with pytest.raises(err, match=match):
        kk.intersect(*args, **kwargs)


def test_bad_tnorm_union():
    with pytest.raises(ValueError, match=r"union\(\): tnorm must be one of"):
        kk.union(torch.rand(2), torch.rand(2), tnorm="min")
