"""The CUDA kernels (csrc/cuda), checked against the references on every device they can run on:

- "emulated": the real kernel bodies and launch configurations run on the CPU by the host launcher
  (torch.ops.kgqa_kernels_emu), always — there is no GPU on this project's machines;
- "cuda": the compiled kernels, when a GPU is present (skipped, with the reason, otherwise).
"""
import pytest
import torch

from kgqa_kernels import reference
from kbgen import edge_case_kb, power_law_kb, random_kb, rounded_follow_intersect

DEVICES = [
    "emulated",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")),
]


def _ops(device):
    return torch.ops.kgqa_kernels_emu if device == "emulated" else torch.ops.kgqa_kernels


def _dev(device):
    return "cpu" if device == "emulated" else "cuda"


def _kbs():
    return {
        "edge": edge_case_kb(),
        "edge-weighted": edge_case_kb(weighted=True),
        "edge-int64": edge_case_kb(index_dtype=torch.int64),
        "power-law": power_law_kb(200, 5, 2000),
    }


KB_NAMES = ["edge", "edge-weighted", "edge-int64", "power-law"]
TOL = {torch.float64: (1e-12, 1e-12), torch.float32: (1e-5, 1e-5), torch.bfloat16: (2e-2, 2e-2), torch.float16: (2e-3, 2e-3)}


def _inputs(kb, B, dtype, seed=0, k=1):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.rand(B, kb.num_entities, generator=g, dtype=torch.float64).to(dtype) for _ in range(k)]
    rs = [torch.rand(B, kb.num_relations, generator=g, dtype=torch.float64).to(dtype) for _ in range(k)]
    return xs, rs


def _close(a, b, dtype):
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(a.cpu().double(), b.cpu().double(), atol=atol, rtol=rtol, equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kb_name", KB_NAMES)
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("B", [1, 5, 33, 300])  # 33: a partly used warp; 300: two blocks across the batch
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_follow_and_its_gradients(device, kb_name, inverse, B, dtype):
    ops, kbs = _ops(device), _kbs()
    kb = kbs[kb_name]
    (x,), (r,) = _inputs(kb, B, dtype)
    x64, r64 = x.double().requires_grad_(), r.double().requires_grad_()
    y64 = reference.follow_dense(x64, r64, kb, inverse=inverse)
    g = torch.rand(y64.shape, dtype=torch.float64)
    dx64, dr64 = torch.autograd.grad(y64, (x64, r64), g)
    t = [a.to(_dev(device)) for a in kb.tensors()]
    xt, rt, gt = (a.t().contiguous().to(_dev(device)) for a in (x, r, g.to(dtype)))
    _close(ops.follow(xt, rt, t, inverse).t(), y64, dtype)
    _close(ops.follow(gt, rt, t, not inverse).t(), dx64, dtype)  # dx is the pull the other way
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(ops.follow_backward_r(xt, gt, t, inverse).t().cpu().double(), dr64,
                               atol=atol * 8, rtol=rtol)


@pytest.mark.parametrize("device", DEVICES)
def test_backward_r_over_several_chunks_is_deterministic(device):
    from kgqa_kernels.layout import REL_CHUNK

    ops = _ops(device)
    kb = random_kb(300, 2, 3 * REL_CHUNK)  # each relation spans several fixed-size chunks
    assert kb.tensors()[13].numel() > kb.num_relations
    (x,), _ = _inputs(kb, 3, torch.float64)
    g = torch.rand(kb.num_entities, 3, dtype=torch.float64)
    t = [a.to(_dev(device)) for a in kb.tensors()]
    xt = x.t().contiguous().to(_dev(device))
    dr = ops.follow_backward_r(xt, g.to(_dev(device)), t, False)
    x64 = x.clone().requires_grad_()
    r64 = torch.ones(3, kb.num_relations, dtype=torch.float64, requires_grad=True)
    (_, expected) = torch.autograd.grad(reference.follow_sparse(x64, r64, kb), (x64, r64), g.t())
    torch.testing.assert_close(dr.t().cpu(), expected)
    assert torch.equal(dr, ops.follow_backward_r(xt, g.to(_dev(device)), t, False))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op, tnorm", [("intersect", "min"), ("intersect", "product"), ("union", "max"), ("union", "product")])
@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_intersect_union_and_their_gradients_with_ties(device, op, tnorm, k, dtype):
    ops = _ops(device)
    g = torch.Generator().manual_seed(k)
    xs = [(torch.randint(0, 4, (7, 300), generator=g).double() / 4).to(dtype) for _ in range(k)]  # many ties
    if tnorm in ("min", "max"):  # NaN follows amin/amax; torch's prod backward turns exact products into NaN
        xs[0][0, 0] = float("nan")
    ref = [x.double().requires_grad_() for x in xs]
    expected = getattr(reference, op)(*ref, tnorm=tnorm)
    grad = torch.rand(expected.shape, dtype=torch.float64)
    expected_grads = torch.autograd.grad(expected, ref, grad)
    dev = [x.to(_dev(device)) for x in xs]
    out = getattr(ops, op)(dev, tnorm)
    _close(out, expected, dtype)
    grads = getattr(ops, f"{op}_backward")(grad.to(dtype).to(_dev(device)), dev, out, tnorm)
    for a, b in zip(grads, expected_grads):
        _close(a, b, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tnorm", ["min", "product"])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_follow_intersect_and_its_gradients(device, tnorm, k, inverse, dtype):
    ops = _ops(device)
    kb = edge_case_kb(weighted=True)
    xs, rs = _inputs(kb, 37, dtype, k=k)
    xs[-1], rs[-1] = xs[0].clone(), rs[0].clone()  # ties between branches
    ref_x = [x.double().requires_grad_() for x in xs]
    ref_r = [r.double().requires_grad_() for r in rs]
    expected, ys = rounded_follow_intersect(ref_x, ref_r, kb, inverse, tnorm, dtype)
    g = torch.rand(expected.shape, dtype=torch.float64)
    t = [a.to(_dev(device)) for a in kb.tensors()]
    xt = [x.t().contiguous().to(_dev(device)) for x in xs]
    rt = [r.t().contiguous().to(_dev(device)) for r in rs]
    gt = g.to(dtype).t().contiguous().to(_dev(device))
    save_ties = tnorm == "min"
    out, ties = ops.follow_intersect(xt, rt, t, inverse, tnorm, save_ties)
    _close(out.t(), expected, dtype)
    gys = ops.follow_intersect_backward(gt, xt, rt, t, inverse, tnorm)
    ys_leaf = [y.detach().requires_grad_() for y in ys]
    expected_gys = torch.autograd.grad(reference.intersect(*ys_leaf, tnorm=tnorm), ys_leaf, g)
    for a, b in zip(gys, expected_gys):
        _close(a.t(), b, dtype)
    if save_ties:
        dxs = ops.follow_intersect_backward_x(gt, ties, xt, rt, t, inverse)
        drs = ops.follow_intersect_backward_r(gt, ties, xt, rt, t, inverse)
        for gy, x, r, dx, dr in zip(gys, xt, rt, dxs, drs):
            assert torch.equal(dx, ops.follow(gy, r, t, not inverse))
            assert torch.equal(dr, ops.follow_backward_r(x, gy, t, inverse))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kb_name", KB_NAMES)
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_follow_push_and_its_gradients(device, kb_name, inverse, dtype):
    ops, kb = _ops(device), _kbs()[kb_name]
    B = 6
    x = torch.zeros(B, kb.num_entities, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    for _ in range(2):
        x[torch.arange(B), torch.randint(0, kb.num_entities, (B,), generator=g)] = torch.rand(B, generator=g, dtype=torch.float64) + 0.5
    x[3] = 0  # an empty frontier
    x = x.to(dtype)
    r = torch.rand(B, kb.num_relations, generator=g, dtype=torch.float64).to(dtype)
    b_idx, ids = x.nonzero(as_tuple=True)
    ptr = torch.zeros(B + 1, dtype=torch.int64)
    ptr[1:] = torch.cumsum(torch.bincount(b_idx, minlength=B), 0)
    vals = x[b_idx, ids]
    x64, r64 = x.double().requires_grad_(), r.double().requires_grad_()
    y64 = reference.follow_dense(x64, r64, kb, inverse=inverse)
    grad = torch.rand(y64.shape, dtype=torch.float64)
    dx64, dr64 = torch.autograd.grad(y64, (x64, r64), grad)
    d = _dev(device)
    t = [a.to(d) for a in kb.tensors()]
    rt = r.t().contiguous().to(d)
    y = ops.follow_push(ptr.to(d), ids.to(d), vals.to(d), rt, t, inverse)
    _close(y.t(), y64, dtype)
    dvals, dr = ops.follow_push_backward(grad.to(dtype).t().contiguous().to(d), ptr.to(d), ids.to(d), vals.to(d), rt, t,
                                         inverse)
    _close(dvals, dx64[b_idx, ids], dtype)
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(dr.t().cpu().double(), dr64, atol=atol * 8, rtol=rtol)


@pytest.mark.parametrize("device", DEVICES)
def test_batch_of_zero_and_bad_input(device):
    ops, kb = _ops(device), edge_case_kb()
    d = _dev(device)
    t = [a.to(d) for a in kb.tensors()]
    assert ops.follow(torch.rand(20, 0, device=d), torch.rand(5, 0, device=d), t, False).shape == (20, 0)
    with pytest.raises(RuntimeError, match=r"x must be \[20, B\]"):
        ops.follow(torch.rand(21, 2, device=d), torch.rand(5, 2, device=d), t, False)
    with pytest.raises(RuntimeError, match="at most 16"):
        ops.intersect([torch.rand(3, device=d)] * 17, "min")


def test_launch_configuration_covers_the_batch_with_warps():
    """The emulation runs the configuration the CUDA launch uses: threads across the batch in whole
    warps, several rows per block for narrow batches, and no thread outside the output writes."""
    ops, kb = _ops("emulated"), edge_case_kb()
    t = kb.tensors()
    for B in (1, 31, 32, 33, 255, 256, 257):
        x = torch.rand(20, B, dtype=torch.float64)
        r = torch.rand(5, B, dtype=torch.float64)
        torch.testing.assert_close(ops.follow(x, r, t, False).t(), reference.follow_dense(x.t(), r.t(), kb))
