"""follow_intersect (intersect of k follows, fused): forward and gradients against the unfused
references with ties between branches, gradcheck, second derivatives, opcheck, determinism on every backend through the
public API; then the raw ops (the tie mask and its backwards) and bad input."""
import numpy as np
import pytest
import torch

import cases
import kgqa_kernels as kk
from cases import assert_close, inputs, leaves, matrix, rounded_follow_intersect
from kgqa_kernels import checks, layout, reference


def _branches(kb, k, B, dtype=torch.float64, seed=0):
    """k branches of leaves x [B, E] and r [B, R] on the KB's device."""
    return inputs(kb, B, dtype, requires_grad=True, seed=seed, k=k)


def _grad_out(shape, dtype, device, seed=1):
    g = torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return g.to(dtype).to(device)


@matrix("k", B="B_fused", dtype="dtype_fused")
@pytest.mark.parametrize("tnorm", ["min", "product"])
@pytest.mark.parametrize("inverse", [False, True])
def test_forward_and_gradients_match_the_unfused_reference(backend, device, B, dtype, k, tnorm, inverse):
    kb = cases.kb("edge-weighted", device)
    xs, rs = inputs(kb, B, dtype, k=k)
    # In the first half of the batch the last branch repeats the first: ties between branches there,
    # none (but chance ones) in the second.
    xs[-1][: B // 2], rs[-1][: B // 2] = xs[0][: B // 2], rs[0][: B // 2]
    xs, rs = leaves(xs), leaves(rs)
    out = kk.follow_intersect(xs, rs, kb, inverse=inverse, tnorm=tnorm, backend=backend)
    assert out.shape == (B, kb.num_entities) and out.dtype == dtype
    ref_x, ref_r = leaves(xs, torch.float64), leaves(rs, torch.float64)
    expected, _ = rounded_follow_intersect(ref_x, ref_r, kb, inverse, tnorm, dtype)
    assert_close(out, expected, dtype)
    g = _grad_out(out.shape, dtype, device)
    grads = torch.autograd.grad(out, xs + rs, g)
    for a, b in zip(grads, torch.autograd.grad(expected, ref_x + ref_r, g.double())):
        assert_close(a, b, dtype)


@matrix(kb_name="split_kb")
@pytest.mark.parametrize("tnorm", ["min", "product"])
def test_rows_split_over_workers_match_the_unfused_reference(backend, device, kb_name, tnorm):
    """Hub rows that the GPU kernels' work plan (csrc/work_plan.h) splits over several workers: the
    forward (min with its tie mask, ties in the first two examples) and the gradients of the xs
    (min: from the tie mask; product: the recomputing backward, which finishes the split rows
    itself) against the rounded unfused reference; min pulls into objects, product into subjects."""
    kb = cases.kb(kb_name, device)
    inverse = tnorm == "product"
    xs, rs = inputs(kb, 3, k=2)
    xs[1][:2], rs[1][:2] = xs[0][:2], rs[0][:2]
    xs = leaves(xs)
    out = kk.follow_intersect(xs, rs, kb, inverse=inverse, tnorm=tnorm, backend=backend)
    ref_x = leaves(xs)
    expected, _ = rounded_follow_intersect(ref_x, rs, kb, inverse, tnorm, torch.float64)
    assert_close(out, expected)
    g = _grad_out(out.shape, torch.float64, device)
    for a, b in zip(torch.autograd.grad(out, xs, g), torch.autograd.grad(expected, ref_x, g)):
        assert_close(a, b)


@matrix(dtype="dtype_fused")
@pytest.mark.parametrize("tnorm", ["min", "product"])
def test_dtypes_match_the_unfused_ops(backend, device, dtype, tnorm):
    kb = cases.kb_for(backend, device, "random-weighted")
    xs, rs = _branches(kb, 3, 6, dtype)
    out = kk.follow_intersect(xs, rs, kb, tnorm=tnorm, backend=backend)
    xs2, rs2 = leaves(xs), leaves(rs)
    unfused = kk.intersect(*[kk.follow(x, r, kb, backend=backend) for x, r in zip(xs2, rs2)], tnorm=tnorm,
                           backend=backend)
    assert out.dtype == dtype
    assert_close(out, unfused.double(), dtype)
    g = _grad_out(out.shape, dtype, device)
    for a, b in zip(torch.autograd.grad(out, xs + rs, g), torch.autograd.grad(unfused, xs2 + rs2, g)):
        assert_close(a, b.double(), dtype, atol_factor=4)


def test_ties_between_branches_split_the_gradient(backend, device):
    kb = cases.kb("edge", device)
    xs, rs = _branches(kb, 1, 4)
    xs, rs = xs * 3, rs * 3  # three identical branches: every output element is a 3-way tie
    xs2, rs2 = leaves(xs), leaves(rs)
    out = kk.follow_intersect(xs2, rs2, kb, backend=backend)
    out.sum().backward()
    single = leaves(xs[:1])[0]
    kk.follow(single, rs[0].detach(), kb, backend=backend).sum().backward()
    for x in xs2:
        torch.testing.assert_close(x.grad, single.grad / 3)


@matrix(kb_name="gradcheck_kb_fused")
@pytest.mark.parametrize("tnorm", ["min", "product"])
def test_gradcheck_float64(backend, device, backend_cases, kb_name, tnorm):
    kb = cases.kb(kb_name, device)
    xs, rs = _branches(kb, 3, 2)
    assert torch.autograd.gradcheck(lambda *a: kk.follow_intersect(a[:3], a[3:], kb, tnorm=tnorm, backend=backend),
                                    xs + rs, fast_mode=backend_cases.gradcheck_fast)


# ---- second derivatives ---------------------------------------------------------------------------

@pytest.mark.parametrize("tnorm", ["min", "product"])
def test_gradgradcheck_float64(backend, device, backend_cases, tnorm):
    """min keeps a tie mask (a backward follows), so its second derivatives are those of the tie-mask
    backwards; product's those of the recomputing backward."""
    kb = cases.kb(backend_cases.gradgradcheck_kb, device)
    xs, rs = _branches(kb, 3, 2)
    assert torch.autograd.gradgradcheck(
        lambda *a: kk.follow_intersect(a[:3], a[3:], kb, tnorm=tnorm, backend=backend), xs + rs,
        fast_mode=backend_cases.gradcheck_fast)


def test_gradgradcheck_min_without_a_tie_mask(backend, device, backend_cases):
    """The recomputing backward of min (more branches than a mask holds), through the raw op."""
    kb = cases.kb(backend_cases.gradgradcheck_kb, device)
    xs, rs = _branches(kb, 2, 2)
    ops, t = cases.ops_for(backend), kb.tensors()

    def fused(*a):
        return ops.follow_intersect([x.t() for x in a[:2]], [r.t() for r in a[2:]], t, True, "min", False)[0]

    assert torch.autograd.gradgradcheck(fused, xs + rs, fast_mode=backend_cases.gradcheck_fast)


@pytest.mark.parametrize("tnorm", ["min", "product"])
@pytest.mark.parametrize("inverse", [False, True])
def test_gradient_penalty_matches_the_reference(backend, device, tnorm, inverse):
    kb = cases.kb_for(backend, device, "edge-weighted")
    xs, rs = inputs(kb, 4, k=3)
    xs[2][:2], rs[2][:2] = xs[0][:2], rs[0][:2]  # ties between branches 0 and 2 in the first two examples
    wrt = (3, 4, 5)  # a penalty on every dL/dr_i; it reaches every x_i

    def run(b):
        return cases.penalised_grads(lambda *a: kk.follow_intersect(a[:3], a[3:], kb, inverse=inverse, tnorm=tnorm,
                                                                    backend=b), xs + rs, wrt)

    expected = run("reference")
    assert all(e is not None and bool(e.abs().sum() > 0) for e in expected[:3])
    cases.assert_same_grads(run(backend), expected)


def test_kb_tensors_that_require_grad_are_refused(backend, device):
    kb = cases.kb("tiny-weighted", device).tensors()
    kb[layout.REL_WEIGHT] = kb[layout.REL_WEIGHT].detach().clone().requires_grad_()
    x, r = torch.rand(8, 2, device=device), torch.rand(3, 2, device=device)
    with pytest.raises(RuntimeError, match=r"follow_intersect\(\): .*kb\[REL_WEIGHT\] requires grad"):
        cases.ops_for(backend).follow_intersect([x, x], [r, r], kb, False, "min", False)


def test_some_branches_without_gradients(backend, device):
    kb = cases.kb_for(backend, device, "random")
    xs, rs = _branches(kb, 2, 3)
    xs[1].requires_grad_(False)
    rs[0].requires_grad_(False)
    out = kk.follow_intersect(xs, rs, kb, backend=backend)
    out.sum().backward()
    assert xs[1].grad is None and rs[0].grad is None
    assert xs[0].grad is not None and rs[1].grad is not None


def test_batch_of_zero_and_the_reference(backend, device):
    kb = cases.kb("edge", device)
    xs, rs = _branches(kb, 2, 0)
    out = kk.follow_intersect(xs, rs, kb, backend=backend)
    assert out.shape == (0, kb.num_entities)
    out.sum().backward()
    xs, rs = _branches(kb, 2, 3)
    torch.testing.assert_close(
        kk.follow_intersect(xs, rs, kb, backend="reference"), kk.follow_intersect(xs, rs, kb, backend=backend)
    )


def test_nan_propagates_through_the_fused_min(backend, device):
    kb = cases.kb("edge", device)
    xs, rs = _branches(kb, 2, 3)
    with torch.no_grad():
        xs[0][1, 0] = float("nan")  # entity 0 reaches entity 19, among others
    xs2, rs2 = leaves(xs), leaves(rs)
    out = kk.follow_intersect(xs, rs, kb, backend=backend)
    expected = reference.follow_intersect(xs2, rs2, kb)
    torch.testing.assert_close(out, expected, equal_nan=True)
    assert bool(torch.isnan(out).any())
    g = _grad_out(out.shape, torch.float64, device)
    for a, b in zip(torch.autograd.grad(out, xs + rs, g), torch.autograd.grad(expected, xs2 + rs2, g)):
        torch.testing.assert_close(a, b, equal_nan=True)


def test_more_branches_than_a_tie_mask_holds(backend, device):
    kb = cases.kb_for(backend, device, "random")
    k = layout.MAX_TIE_BRANCHES + 1
    xs, rs = _branches(kb, k, 2)
    limit = checks.max_branches(backend)
    if limit is not None and limit < k:  # Triton: one pointer argument per branch
        with pytest.raises(ValueError, match=f"backend='{backend}' takes at most {limit} inputs, got {k}"):
            kk.follow_intersect(xs, rs, kb, backend=backend)
        return
    out = kk.follow_intersect(xs, rs, kb, backend=backend)
    xs2, rs2 = leaves(xs), leaves(rs)
    expected = reference.follow_intersect(xs2, rs2, kb, form=reference.follow_dense)
    torch.testing.assert_close(out, expected)
    for a, b in zip(torch.autograd.grad(out.sum(), xs + rs), torch.autograd.grad(expected.sum(), xs2 + rs2)):
        torch.testing.assert_close(a, b)


def test_deterministic(backend, device):
    kb = cases.kb_for(backend, device, "power-law")
    B = cases.batch(backend, device, 40)
    xs, rs = _branches(kb, 3, B, torch.float32)
    g = torch.rand(B, kb.num_entities, device=device)
    runs = [torch.autograd.grad(kk.follow_intersect(xs, rs, kb, backend=backend), xs + rs, g) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs))


@pytest.mark.parametrize("kb_name", ["edge-weighted", "chunked", "hub"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_avx2_and_baseline_cpu_loops_give_the_same_bits(monkeypatch, kb_name, dtype):
    # csrc/cpu/isa.h: follow_intersect's CPU kernels are compiled twice, baseline and AVX2 without
    # FMA; both give the same bits (ties between branches 0 and 2; widths around the tiles; NaN).
    ops = torch.ops.kgqa_kernels
    kb = cases.kb(kb_name)
    t = kb.tensors()
    for B in (1, 7, 64, 130):
        xs, rs = inputs(kb, B, dtype, k=3, seed=B)
        xs[2], rs[2] = xs[0].clone(), rs[0].clone()
        xs[1][0, 0] = float("nan")
        xt, rt = [x.t().contiguous() for x in xs], [r.t().contiguous() for r in rs]
        g = torch.randn(kb.num_entities, B, generator=torch.Generator().manual_seed(B), dtype=torch.float64).to(dtype)

        def every_kernel():
            got = []
            for inverse in (False, True):
                out, ties = ops.follow_intersect(xt, rt, t, inverse, "min", True)
                got += [out, ties, ops.follow_intersect(xt, rt, t, inverse, "product", False)[0]]
                for tnorm in ("min", "product"):
                    got += ops.follow_intersect_backward(g, xt, rt, t, inverse, tnorm)
                got += ops.follow_intersect_backward_x(g, ties, xt, rt, t, inverse)
                got += ops.follow_intersect_backward_r(g, ties, xt, rt, t, inverse)
            return got

        cases.assert_isas_agree(monkeypatch, every_kernel)


def _opcheck_cases(device):
    # opcheck checks registrations, not numerics: a small KB (a few launches of few programs each).
    kb = cases.kb("tiny-weighted", device)
    E, R, B = kb.num_entities, kb.num_relations, 3
    kb = kb.tensors()

    def t(rows, grad=True):
        return torch.rand(rows, B, dtype=torch.float64, device=device, requires_grad=grad)

    yield "follow_intersect-min", "follow_intersect", ([t(E), t(E)], [t(R), t(R)], kb, False, "min", False)
    yield "follow_intersect-min-ties", "follow_intersect", ([t(E), t(E)], [t(R), t(R)], kb, False, "min", True)
    yield "follow_intersect-product", "follow_intersect", ([t(E), t(E), t(E)], [t(R), t(R), t(R)], kb, True,
                                                           "product", False)
    ties = torch.randint(1, 4, (E, B), dtype=torch.uint8, device=device)  # 0 (no tie: a NaN output) gives NaN
    for part in ("x", "r"):
        name = f"follow_intersect_backward_{part}"
        yield name, name, (t(E, False), ties, [t(E, False)] * 2, [t(R, False)] * 2, kb, True)
    yield "follow_intersect_backward", "follow_intersect_backward", (t(E, False), [t(E, False)] * 2,
                                                                     [t(R, False)] * 2, kb, False, "min")
    # The backwards' own autograd (the derivatives of a gradient penalty).
    for part in ("x", "r"):
        name = f"follow_intersect_backward_{part}"
        yield f"{name}-grad", name, (t(E), ties, [t(E), t(E)], [t(R), t(R)], kb, False)
    for tnorm in ("min", "product"):
        yield f"follow_intersect_backward-grad-{tnorm}", "follow_intersect_backward", (
            t(E), [t(E), t(E), t(E)], [t(R), t(R), t(R)], kb, True, tnorm)


OPCHECK_CASES = ["follow_intersect-min", "follow_intersect-min-ties", "follow_intersect-product",
                 "follow_intersect_backward_x", "follow_intersect_backward_r", "follow_intersect_backward",
                 "follow_intersect_backward_x-grad", "follow_intersect_backward_r-grad",
                 "follow_intersect_backward-grad-min", "follow_intersect_backward-grad-product"]


@pytest.mark.parametrize("case", OPCHECK_CASES)
def test_opcheck(backend, device, case):
    name, args = next((op, args) for c, op, args in _opcheck_cases(device) if c == case)
    cases.opcheck(getattr(cases.ops_for(backend), name), args)


# ---- the raw ops: the tie mask and the backwards --------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_branch_gradients_and_the_tie_mask_backwards(backend, device, dtype):
    ops = cases.ops_for(backend)
    kb = cases.kb_for(backend, device, "edge-weighted")
    xs, rs = inputs(kb, 7, dtype, k=3)
    xs[2], rs[2] = xs[0].clone(), rs[0].clone()  # ties between branches 0 and 2
    xt, rt = [x.t().contiguous() for x in xs], [r.t().contiguous() for r in rs]
    t = kb.tensors()
    out, ties = ops.follow_intersect(xt, rt, t, False, "min", True)
    out2, no_ties = ops.follow_intersect(xt, rt, t, False, "min", False)
    assert torch.equal(out, out2) and no_ties.numel() == 0 and ties.dtype == torch.uint8
    assert bool((ties == 0b101).any())
    g = _grad_out(out.shape, dtype, device)
    for inverse in (False, True):
        # The recomputing backward's gradients of the k follow outputs: the rounded unfused reference's.
        for tnorm in ("min", "product"):
            gys = ops.follow_intersect_backward(g, xt, rt, t, inverse, tnorm)
            _, ys = rounded_follow_intersect(leaves(xs, torch.float64), leaves(rs, torch.float64), kb, inverse, tnorm,
                                             dtype)
            ys = leaves(ys)
            expected_gys = torch.autograd.grad(reference.intersect(*ys, tnorm=tnorm), ys, g.t().double())
            for gy, expected in zip(gys, expected_gys):
                assert_close(gy.t(), expected, dtype)
        gys = ops.follow_intersect_backward(g, xt, rt, t, inverse, "min")
        out, ties = ops.follow_intersect(xt, rt, t, inverse, "min", True)
        # The fused backward forms the same branch gradients per gathered row and sums them in the
        # order follow and follow_backward_r do: bitwise the same.
        dxs = ops.follow_intersect_backward_x(g, ties, xt, rt, t, inverse)
        drs = ops.follow_intersect_backward_r(g, ties, xt, rt, t, inverse)
        for gy, x, r, dx, dr in zip(gys, xt, rt, dxs, drs):
            assert torch.equal(dx, ops.follow(gy, r, t, not inverse))
            assert torch.equal(dr, ops.follow_backward_r(x, gy, t, inverse))


E, R = 40, 6  # the KB of the bad-input tests: random_kb(E, R)


def _raw(d, k, B=2, rows=E):
    return [torch.rand(rows, B, device=d) for _ in range(k)]


RAW_ERRORS = [  # (call, error types, what the error says: the C++ ops' words | the Triton ops' words)
    (lambda ops, kb, d: ops.follow_intersect(_raw(d, 2), _raw(d, 1, rows=R), kb, False, "min", False),
     RuntimeError, "one tensor per branch"),
    (lambda ops, kb, d: ops.follow_intersect([*_raw(d, 1), *_raw(d, 1, B=3)], _raw(d, 2, rows=R), kb, False, "min",
                                             False),
     RuntimeError, r"branch 1|xs\[1\] must be"),
    # Tie masks need tnorm min and at most 8 branches (Triton refuses 9 branches before that).
    (lambda ops, kb, d: ops.follow_intersect(_raw(d, 9), _raw(d, 9, rows=R), kb, False, "min", True),
     (RuntimeError, ValueError), "at most 8"),
    (lambda ops, kb, d: ops.follow_intersect(_raw(d, 2), _raw(d, 2, rows=R), kb, False, "product", True),
     RuntimeError, "save_ties needs tnorm 'min'"),
]


@pytest.mark.parametrize("call, err, match", RAW_ERRORS)
def test_raw_ops_check_their_inputs(backend, device, call, err, match):
    with pytest.raises(err, match=match):
        call(cases.ops_for(backend), cases.kb("random", device).tensors(), device)


@pytest.mark.parametrize("part", ["x", "r"])
def test_tie_mask_backwards_check_the_mask(backend, device, part):
    op = getattr(cases.ops_for(backend), f"follow_intersect_backward_{part}")
    kb = cases.kb("random", device).tensors()
    xs, rs, g = _raw(device, 2), _raw(device, 2, rows=R), torch.rand(E, 2, device=device)
    bad = [torch.ones(E, 2, device=device), torch.ones(E, 3, dtype=torch.uint8, device=device)]
    if backend != "triton":  # Triton copies a strided mask; the C++ ops read it in place
        bad.append(torch.ones(2, E, dtype=torch.uint8, device=device).t())
    for ties in bad:
        with pytest.raises(RuntimeError, match="ties must be a contiguous uint8 tensor shaped like grad"):
            op(g, ties, xs, rs, kb, False)
    with pytest.raises((RuntimeError, ValueError), match="at most 8"):  # a tie mask holds 8 branches
        op(g, torch.ones(E, 2, dtype=torch.uint8, device=device), xs * 5, rs * 5, kb, False)
    with pytest.raises(RuntimeError, match="grad must be"):
        op(torch.rand(E, 3, device=device), torch.ones(E, 3, dtype=torch.uint8, device=device), xs, rs, kb, False)


def test_branch_limit_of_a_launch(backend, device):
    """The GPU kernels (and their emulation) take the branches' pointers in a fixed-size array, Triton
    one argument per branch: beyond that the raw op and the public op refuse. The C++ CPU kernels
    take any number."""
    limit = checks.max_branches(backend)
    kb = cases.kb("random", device)
    k = (limit or layout.GPU_MAX_BRANCHES) + 1
    xs, rs = _branches(kb, k, 2)
    if limit is None:
        expected = reference.follow_intersect(xs, rs, kb, form=reference.follow_dense)
        torch.testing.assert_close(kk.follow_intersect(xs, rs, kb, backend=backend), expected)
        return
    with pytest.raises((RuntimeError, ValueError), match=f"at most {limit}"):
        cases.ops_for(backend).follow_intersect(_raw(device, k), _raw(device, k, rows=R), kb.tensors(), False, "min",
                                                False)
    with pytest.raises(ValueError, match=f"backend='{backend}' takes at most {limit} inputs, got {k}"):
        kk.follow_intersect(xs, rs, kb, backend=backend)


# ---- bad input to the public op (checked before any backend is chosen) ------------------------------

def test_bad_input():
    kb = cases.random_kb()
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
    with pytest.raises(TypeError, match=r"follow_intersect\(\): inverse must be a bool, got str 'no'"):
        kk.follow_intersect(xs, rs, kb, inverse="no")
    with pytest.raises(TypeError, match="inverse must be a bool, got int"):
        kk.follow_intersect(xs, rs, kb, inverse=1)
    with pytest.raises(TypeError, match=r"xs\[1\] must be a dense tensor"):
        kk.follow_intersect([xs[0], xs[1].detach().to_sparse()], rs, kb)
    with pytest.raises(TypeError, match=r"rs\[0\] must be a dense tensor"):
        kk.follow_intersect(xs, [rs[0].detach().to_sparse(), rs[1]], kb)


def test_numpy_bool_inverse():
    kb = cases.random_kb()
    xs, rs = _branches(kb, 2, 3)
    assert torch.equal(kk.follow_intersect(xs, rs, kb, inverse=np.bool_(True)),
                       kk.follow_intersect(xs, rs, kb, inverse=True))
