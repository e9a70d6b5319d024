import pytest
import torch

import kgqa_kernels as kk
from kgqa_kernels import reference
from kbgen import DTYPE_TOLERANCES, edge_case_kb, power_law_kb, random_kb


def _branches(kb, k, B, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.rand(B, kb.num_entities, generator=g, dtype=torch.float64).to(dtype).requires_grad_() for _ in range(k)]
    rs = [torch.rand(B, kb.num_relations, generator=g, dtype=torch.float64).to(dtype).requires_grad_() for _ in range(k)]
    return xs, rs


def _detached(ts):
    return [t.detach().clone().requires_grad_() for t in ts]


@pytest.mark.parametrize("tnorm", ["min", "product"])
@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("B", [1, 5, 130])
def test_equals_intersect_of_follows(tnorm, k, inverse, B):
    kb = edge_case_kb(weighted=True)
    xs, rs = _branches(kb, k, B)
    out = kk.follow_intersect(xs, rs, kb, inverse=inverse, tnorm=tnorm)
    xs2, rs2 = _detached(xs), _detached(rs)
    expected = reference.follow_intersect(xs2, rs2, kb, inverse=inverse, tnorm=tnorm, form=reference.follow_dense)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-12)
    g = torch.rand(out.shape, dtype=torch.float64)
    grads = torch.autograd.grad(out, xs + rs, g)
    expected_grads = torch.autograd.grad(expected, xs2 + rs2, g)
    for a, b in zip(grads, expected_grads):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("dtype, atol, rtol", DTYPE_TOLERANCES)
@pytest.mark.parametrize("tnorm", ["min", "product"])
def test_dtypes_match_the_unfused_ops(dtype, atol, rtol, tnorm):
    kb = random_kb(weighted=True)
    xs, rs = _branches(kb, 3, 6, dtype)
    out = kk.follow_intersect(xs, rs, kb, tnorm=tnorm)
    xs2, rs2 = _detached(xs), _detached(rs)
    unfused = kk.intersect(*[kk.follow(x, r, kb) for x, r in zip(xs2, rs2)], tnorm=tnorm)
    assert out.dtype == dtype
    torch.testing.assert_close(out, unfused, atol=atol, rtol=rtol)
    g = torch.rand(out.shape, dtype=torch.float64).to(dtype)
    for a, b in zip(torch.autograd.grad(out, xs + rs, g), torch.autograd.grad(unfused, xs2 + rs2, g)):
        torch.testing.assert_close(a, b, atol=atol * 4, rtol=rtol)


def test_ties_between_branches_split_the_gradient():
    kb = edge_case_kb()
    xs, rs = _branches(kb, 1, 4)
    xs, rs = xs * 3, rs * 3  # three identical branches: every output element is a 3-way tie
    xs2, rs2 = _detached(xs), _detached(rs)
    out = kk.follow_intersect(xs2, rs2, kb)
    out.sum().backward()
    single = xs[0].detach().clone().requires_grad_()
    kk.follow(single, rs[0].detach(), kb).sum().backward()
    for x in xs2:
        torch.testing.assert_close(x.grad, single.grad / 3)


@pytest.mark.parametrize("kb_name", ["edge", "power-law"])
@pytest.mark.parametrize("tnorm", ["min", "product"])
def test_gradcheck_float64(kb_name, tnorm):
    kb = edge_case_kb(weighted=True) if kb_name == "edge" else power_law_kb(60, 3, 300)
    xs, rs = _branches(kb, 3, 2)
    assert torch.autograd.gradcheck(lambda *a: kk.follow_intersect(a[:3], a[3:], kb, tnorm=tnorm), xs + rs)


def test_some_branches_without_gradients():
    kb = random_kb()
    xs, rs = _branches(kb, 2, 3)
    xs[1].requires_grad_(False)
    rs[0].requires_grad_(False)
    out = kk.follow_intersect(xs, rs, kb)
    out.sum().backward()
    assert xs[1].grad is None and rs[0].grad is None
    assert xs[0].grad is not None and rs[1].grad is not None


def test_batch_of_zero_and_backends():
    kb = edge_case_kb()
    xs, rs = _branches(kb, 2, 0)
    out = kk.follow_intersect(xs, rs, kb)
    assert out.shape == (0, kb.num_entities)
    out.sum().backward()
    xs, rs = _branches(kb, 2, 3)
    torch.testing.assert_close(
        kk.follow_intersect(xs, rs, kb, backend="reference"), kk.follow_intersect(xs, rs, kb, backend="cpu")
    )


def test_deterministic():
    kb = power_law_kb()
    xs, rs = _branches(kb, 3, 40, torch.float32)
    g = torch.rand(40, kb.num_entities)
    runs = [torch.autograd.grad(kk.follow_intersect(xs, rs, kb), xs + rs, g) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_bad_input():
    kb = random_kb()
    xs, rs = _branches(kb, 2, 3)
    with pytest.raises(ValueError, match="at least 2 branches"):
        kk.follow_intersect(xs[:1], rs[:1], kb)
    with pytest.raises(ValueError, match="xs has 2 branches but rs has 1"):
        kk.follow_intersect(xs, rs[:1], kb)
    with pytest.raises(TypeError, match="sequences of tensors"):
        kk.follow_intersect(torch.stack(xs), rs, kb)
    with pytest.raises(ValueError, match=r"xs\[1\] has batch size 2"):
        kk.follow_intersect([xs[0], xs[1][:2]], [rs[0], rs[1][:2]], kb)
    with pytest.raises(ValueError, match=r"rs\[1\] has batch size 2"):
        kk.follow_intersect(xs, [rs[0], rs[1][:2]], kb)
    with pytest.raises(TypeError, match=r"xs\[1\] has dtype torch.float32"):
        kk.follow_intersect([xs[0], xs[1].float()], [rs[0], rs[1].float()], kb)
    with pytest.raises(ValueError, match="tnorm must be one of"):
        kk.follow_intersect(xs, rs, kb, tnorm="max")


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_tie_mask_backward_equals_the_recomputing_backward(dtype):
    ops = torch.ops.kgqa_kernels
    kb = edge_case_kb(weighted=True)
    xs, rs = _branches(kb, 3, 7, dtype)
    xs[2] = xs[0].detach().clone()  # ties between branches 0 and 2
    rs[2] = rs[0].detach().clone()
    xt, rt = [x.detach().t().contiguous() for x in xs], [r.detach().t().contiguous() for r in rs]
    out, ties = ops.follow_intersect(xt, rt, kb.tensors(), False, "min", True)
    out2, no_ties = ops.follow_intersect(xt, rt, kb.tensors(), False, "min", False)
    assert torch.equal(out, out2) and no_ties.numel() == 0 and ties.dtype == torch.uint8
    assert bool((ties == 0b101).any())
    g = torch.rand(out.shape, dtype=torch.float64).to(dtype)
    t = kb.tensors()
    for inverse in (False, True):
        gys = ops.follow_intersect_backward(g, xt, rt, t, inverse, "min")
        out, ties = ops.follow_intersect(xt, rt, t, inverse, "min", True)
        # The fused backward forms the same branch gradients per gathered row and sums them in the
        # order follow and follow_backward_r do: bitwise the same.
        dxs = ops.follow_intersect_backward_x(g, ties, xt, rt, t, inverse)
        drs = ops.follow_intersect_backward_r(g, ties, xt, rt, t, inverse)
        for gy, x, r, dx, dr in zip(gys, xt, rt, dxs, drs):
            assert torch.equal(dx, ops.follow(gy, r, t, not inverse))
            assert torch.equal(dr, ops.follow_backward_r(x, gy, t, inverse))


def test_nan_propagates_through_the_fused_min():
    kb = edge_case_kb()
    xs, rs = _branches(kb, 2, 3)
    with torch.no_grad():
        xs[0][1, 0] = float("nan")  # entity 0 reaches entity 19, among others
    xs2, rs2 = _detached(xs), _detached(rs)
    out = kk.follow_intersect(xs, rs, kb)
    expected = reference.follow_intersect(xs2, rs2, kb)
    torch.testing.assert_close(out, expected, equal_nan=True)
    assert bool(torch.isnan(out).any())
    g = torch.rand(out.shape, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad(out, xs + rs, g), torch.autograd.grad(expected, xs2 + rs2, g)):
        torch.testing.assert_close(a, b, equal_nan=True)


def test_more_branches_than_a_tie_mask_holds():
    kb = random_kb()
    xs, rs = _branches(kb, 9, 2)
    out = kk.follow_intersect(xs, rs, kb)
    xs2, rs2 = _detached(xs), _detached(rs)
    expected = reference.follow_intersect(xs2, rs2, kb, form=reference.follow_dense)
    torch.testing.assert_close(out, expected)
    for a, b in zip(torch.autograd.grad(out.sum(), xs + rs), torch.autograd.grad(expected.sum(), xs2 + rs2)):
        torch.testing.assert_close(a, b)
