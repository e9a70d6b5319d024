"""The Triton backend (kgqa_kernels/triton), against the references, forward and gradients.

Without a GPU the kernels run on the CPU under TRITON_INTERPRET=1 (tests/conftest.py sets it), at
about 2-3 ms per program instance: the KBs and batches here are sized for that. With a GPU the same
tests run compiled on it. test_kernels_compile_for_gpus compiles every kernel for sm_80 and sm_90
without a GPU; compiling is not running, which only the GPU half of these tests does.
"""
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

import kgqa_kernels as kk
from kgqa_kernels import reference
from kbgen import edge_case_kb, power_law_kb, random_kb, rounded_follow_intersect

HAS_GPU = torch.cuda.is_available()
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICES = [
    pytest.param("cpu", marks=pytest.mark.skipif(not INTERPRETED, reason="Triton runs on the CPU only interpreted")),
    pytest.param("cuda", marks=pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU on this machine")),
]
TOL = {torch.float64: (1e-12, 1e-12), torch.float32: (1e-5, 1e-5), torch.bfloat16: (2e-2, 2e-2), torch.float16: (2e-3, 2e-3)}
T = None


def _triton_ops():
    global T
    if T is None:
        import kgqa_kernels.triton  # noqa: F401

        T = torch.ops.kgqa_triton
    return T


def _kbs():
    return {
        "edge": edge_case_kb(),
        "edge-weighted": edge_case_kb(weighted=True),
        "edge-int64": edge_case_kb(index_dtype=torch.int64),
        "power-law": power_law_kb(60, 4, 400),
    }


def _rand(shape, dtype, g, device):
    return torch.rand(shape, generator=g, dtype=torch.float64).to(dtype).to(device)


def _close(a, b, dtype):
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(a.detach().cpu().double(), b.detach().cpu().double(), atol=atol, rtol=rtol, equal_nan=True)


def _grads(out, inputs, g):
    return torch.autograd.grad(out, inputs, g)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kb_name", ["edge", "edge-weighted", "edge-int64", "power-law"])
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_follow_and_its_gradients(device, kb_name, inverse, dtype):
    kb = _kbs()[kb_name].to(device)
    g = torch.Generator().manual_seed(0)
    B = 17  # two column blocks of the interpreter's BLOCK_B=16, the second almost empty
    x = _rand((B, kb.num_entities), dtype, g, device).requires_grad_()
    r = _rand((B, kb.num_relations), dtype, g, device).requires_grad_()
    y = kk.follow(x, r, kb, inverse=inverse, backend="triton")
    x64, r64 = x.detach().double().requires_grad_(), r.detach().double().requires_grad_()
    y64 = reference.follow_dense(x64, r64, kb, inverse=inverse)
    _close(y, y64, dtype)
    grad = torch.rand(y64.shape, generator=g, dtype=torch.float64)
    for a, b in zip(_grads(y, (x, r), grad.to(dtype).to(device)), _grads(y64, (x64, r64), grad.to(device))):
        _close(a, b, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kb_name", ["edge-weighted", "power-law"])
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_follow_push_and_its_gradients(device, kb_name, inverse, dtype):
    kb = _kbs()[kb_name].to(device)
    B = 5
    x = torch.zeros(B, kb.num_entities, dtype=torch.float64)
    x[0, 0] = x[1, kb.num_entities - 1] = 1.0  # the first and last entity
    x[2, 3], x[2, 1] = 0.5, 2.0
    x[4, 0] = 0.25  # example 3 has an empty frontier
    x = x.to(dtype).to(device)
    r = torch.rand(B, kb.num_relations, dtype=torch.float64).to(dtype).to(device).requires_grad_()
    sparse_x = x.to_sparse().requires_grad_()  # gradients for the stored values
    y = kk.follow(sparse_x, r, kb, inverse=inverse, backend="triton")
    x64, r64 = x.double().clone().requires_grad_(), r.detach().double().clone().requires_grad_()
    y64 = reference.follow_dense(x64, r64, kb, inverse=inverse)
    _close(y, y64, dtype)
    grad = torch.rand(y64.shape, dtype=torch.float64, device=device)
    dx, dr = _grads(y, (sparse_x, r), grad.to(dtype))
    dx64, dr64 = _grads(y64, (x64, r64), grad)
    _close(dr, dr64, dtype)
    _close(dx.to_dense(), dx64 * (x != 0), dtype)
    dense = kk.follow(x, r.detach(), kb, inverse=inverse, direction="push", backend="triton")
    _close(dense, y64, dtype)


def _with_ties_and_nan(k, dtype, device, nan, shape=(6, 9)):
    g = torch.Generator().manual_seed(3)
    xs = [torch.rand(shape, generator=g, dtype=torch.float64) for _ in range(k)]
    xs[1][0, :4] = xs[0][0, :4]  # ties
    if nan:  # min/max: NaN wins as in amin/amax. (Products: torch's prod backward divides, and
        xs[0][1, 2] = float("nan")  # so spreads a NaN to the other inputs' gradients; ours does not.)
    xs[k - 1][2, 5] = 0.0  # a zero in a product
    return [x.to(dtype).to(device).requires_grad_() for x in xs]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op, tnorm", [("intersect", "min"), ("intersect", "product"), ("union", "max"), ("union", "product")])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["row-major", "transposed"])
def test_intersect_union_and_their_gradients(device, op, tnorm, k, dtype, layout):
    xs = _with_ties_and_nan(k, dtype, device, nan=tnorm != "product")
    if layout == "transposed":
        xs = [x.detach().t().contiguous().t().requires_grad_() for x in xs]
    out = getattr(kk, op)(*xs, tnorm=tnorm, backend="triton")
    assert out.stride() == xs[0].stride()
    refs = [x.detach().double().requires_grad_() for x in xs]
    expected = getattr(reference, op)(*refs, tnorm=tnorm)
    _close(out, expected, dtype)
    grad = torch.rand(out.shape, dtype=torch.float64, device=device)
    for a, b in zip(_grads(out, xs, grad.to(dtype)), _grads(expected, refs, grad)):
        _close(a, b, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tnorm", ["min", "product"])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_follow_intersect_and_its_gradients(device, tnorm, k, inverse, dtype):
    kb = edge_case_kb(weighted=True).to(device)
    g = torch.Generator().manual_seed(1)
    B = 7
    xs = [_rand((B, kb.num_entities), dtype, g, device) for _ in range(k)]
    rs = [_rand((B, kb.num_relations), dtype, g, device) for _ in range(k)]
    xs[-1], rs[-1] = xs[0].clone(), rs[0].clone()  # ties between branches
    xs = [x.requires_grad_() for x in xs]
    rs = [r.requires_grad_() for r in rs]
    out = kk.follow_intersect(xs, rs, kb, inverse=inverse, tnorm=tnorm, backend="triton")
    ref_x = [x.detach().double().requires_grad_() for x in xs]
    ref_r = [r.detach().double().requires_grad_() for r in rs]
    expected, _ = rounded_follow_intersect(ref_x, ref_r, kb, inverse, tnorm, dtype)
    _close(out, expected, dtype)
    grad = torch.rand(expected.shape, dtype=torch.float64, device=device)
    for a, b in zip(_grads(out, xs + rs, grad.to(dtype)), _grads(expected, ref_x + ref_r, grad)):
        _close(a, b, dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_tie_mask_backwards_equal_follows_of_the_branch_gradients(device):
    T = _triton_ops()
    kb = edge_case_kb(weighted=True).to(device)
    t = kb.tensors()
    xs = [torch.rand(kb.num_entities, 4, dtype=torch.float64, device=device) for _ in range(3)]
    rs = [torch.rand(kb.num_relations, 4, dtype=torch.float64, device=device) for _ in range(3)]
    xs[2], rs[2] = xs[0], rs[0]
    g = torch.rand(kb.num_entities, 4, dtype=torch.float64, device=device)
    for inverse in (False, True):
        out, ties = T.follow_intersect(xs, rs, t, inverse, "min", True)
        assert bool((ties == 0b101).any())
        gys = T.follow_intersect_backward(g, xs, rs, t, inverse, "min")
        dxs = T.follow_intersect_backward_x(g, ties, xs, rs, t, inverse)
        drs = T.follow_intersect_backward_r(g, ties, xs, rs, t, inverse)
        for gy, x, r, dx, dr in zip(gys, xs, rs, dxs, drs):
            assert torch.equal(dx, T.follow(gy, r, t, not inverse))
            assert torch.equal(dr, T.follow_backward_r(x, gy, t, inverse))


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_float64(device):
    # fast_mode: one random projection of the Jacobian per input, so a handful of interpreted
    # launches instead of one per input element.
    kb = random_kb(8, 3, 24, weighted=True).to(device)

    def check(fn, *inputs):
        assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)

    def leaf(*shape):
        return torch.rand(*shape, dtype=torch.float64, device=device, requires_grad=True)

    x, r = leaf(2, 8), leaf(2, 3)
    for inverse in (False, True):
        check(lambda x, r: kk.follow(x, r, kb, inverse=inverse, backend="triton"), x, r)
    seeds = torch.zeros(2, 8, dtype=torch.float64, device=device)
    seeds[0, 0], seeds[1, 7] = 1.0, 0.5
    check(lambda r: kk.follow(seeds, r, kb, direction="push", backend="triton"), r)
    xs, rs = [leaf(2, 8), leaf(2, 8)], [leaf(2, 3), leaf(2, 3)]
    for tnorm in ("min", "product"):
        check(lambda *a: kk.follow_intersect(a[:2], a[2:], kb, tnorm=tnorm, backend="triton"), *xs, *rs)
    a, b = leaf(3, 4), leaf(3, 4)
    for op, tnorm in (("intersect", "min"), ("intersect", "product"), ("union", "max"), ("union", "product")):
        check(lambda a, b: getattr(kk, op)(a, b, tnorm=tnorm, backend="triton"), a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batches_and_empty_kbs(device):
    kb = edge_case_kb().to(device)
    x, r = torch.rand(0, 20, device=device), torch.rand(0, 5, device=device)
    assert kk.follow(x, r, kb, backend="triton").shape == (0, 20)
    # Entities 5..9 and relation 4 have no facts: their rows and columns must come out zero.
    x, r = torch.zeros(3, 20, device=device), torch.rand(3, 5, device=device, requires_grad=True)
    x[:, 5:10] = 1.0
    x.requires_grad_()
    y = kk.follow(x, r, kb, backend="triton")
    assert torch.equal(y, torch.zeros(3, 20, device=device))
    dx, dr = torch.autograd.grad(y.sum(), (x, r))
    assert torch.equal(dx[:, 5:10], torch.zeros(3, 5, device=device)) and torch.equal(dr, torch.zeros_like(r))


@pytest.mark.parametrize("device", DEVICES)
def test_deterministic(device):
    kb = power_law_kb(60, 4, 400).to(device)
    xs = [torch.rand(5, 60, device=device, requires_grad=True) for _ in range(2)]
    rs = [torch.rand(5, 4, device=device, requires_grad=True) for _ in range(2)]
    g = torch.rand(5, 60, device=device)
    runs = [torch.autograd.grad(kk.follow_intersect(xs, rs, kb, backend="triton"), xs + rs, g) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    T = _triton_ops()
    kb = edge_case_kb(weighted=True).to(device).tensors()

    def t(*shape, grad=True):
        return torch.rand(*shape, dtype=torch.float64, device=device, requires_grad=grad)

    ties = torch.randint(1, 4, (20, 3), dtype=torch.uint8, device=device)
    ptr, ids = torch.tensor([0, 2, 2, 3], device=device), torch.tensor([0, 19, 4], device=device)
    cases = [
        (T.follow, (t(20, 3), t(5, 3), kb, False)),
        (T.follow_backward_r, (t(20, 3, grad=False), t(20, 3, grad=False), kb, True)),
        (T.follow_push, (ptr, ids, t(3), t(5, 3), kb, False)),
        (T.intersect, ([t(3, 7), t(3, 7)], "min")),
        (T.union, ([t(3, 7), t(3, 7), t(3, 7)], "product")),
        (T.follow_intersect, ([t(20, 3), t(20, 3)], [t(5, 3), t(5, 3)], kb, False, "min", True)),
        (T.follow_intersect_backward_x, (t(20, 3, grad=False), ties, [t(20, 3, grad=False)] * 2, [t(5, 3, grad=False)] * 2, kb, False)),
    ]
    for op, args in cases:
        result = torch.library.opcheck(op, args)
        assert all(v == "SUCCESS" for v in result.values()), (op, result)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_sees_the_op(device):
    kb = edge_case_kb(weighted=True).to(device)

    def hop(x, r):
        return kk.follow(kk.follow(x, r, kb, backend="triton"), r, kb, backend="triton").sum()

    x = torch.rand(3, 20, dtype=torch.float64, device=device, requires_grad=True)
    r = torch.rand(3, 5, dtype=torch.float64, device=device, requires_grad=True)
    compiled = torch.compile(hop, backend="aot_eager", fullgraph=True)
    eager_grads = torch.autograd.grad(hop(x, r), (x, r))
    out = compiled(x, r)
    torch.testing.assert_close(out, hop(x, r))
    for a, b in zip(torch.autograd.grad(out, (x, r)), eager_grads):
        torch.testing.assert_close(a, b)


def test_bad_input_names_the_argument():
    T = _triton_ops() if INTERPRETED or HAS_GPU else pytest.skip("Triton cannot run here")
    kb = edge_case_kb().tensors()
    with pytest.raises(RuntimeError, match=r"follow\(\): x must be \[20, B\]"):
        T.follow(torch.rand(19, 2), torch.rand(5, 2), kb, False)
    with pytest.raises(RuntimeError, match=r"r must be \[5, 2\]"):
        T.follow(torch.rand(20, 2), torch.rand(5, 3), kb, False)
    with pytest.raises(RuntimeError, match="tnorm must be 'min' or 'product'"):
        T.intersect([torch.rand(3), torch.rand(3)], "max")
    with pytest.raises(RuntimeError, match="ties must be a contiguous uint8"):
        T.follow_intersect_backward_x(torch.rand(20, 2), torch.ones(20, 2), [torch.rand(20, 2)] * 2, [torch.rand(5, 2)] * 2, kb, False)
    xs, rs = [torch.rand(2, 20)] * 9, [torch.rand(2, 5)] * 9
    with pytest.raises(ValueError, match="backend='triton' takes at most 8 inputs, got 9"):
        kk.follow_intersect(xs, rs, edge_case_kb(), backend="triton")
    with pytest.raises(ValueError, match="backend='triton' takes at most 8 inputs"):
        kk.intersect(*[torch.rand(3)] * 9, backend="triton")


def test_backend_choice(monkeypatch):
    assert kk.available_backends("cpu")[0] == "cpu"
    assert ("triton" in kk.available_backends("cpu")) == INTERPRETED
    kb = edge_case_kb()
    x, r = torch.rand(2, 20, dtype=torch.float64), torch.rand(2, 5, dtype=torch.float64)
    expected = reference.follow_dense(x, r, kb)
    with pytest.raises(ValueError, match="backend must be one of"):
        kk.follow(x, r, kb, backend="tpu")
    with pytest.raises(ValueError, match="set_backend\\(\\): backend must be one of"):
        kk.set_backend("tpu")
    monkeypatch.setenv("KGQA_BACKEND", "reference")
    assert kk.get_backend() == "reference"
    calls = []
    monkeypatch.setattr(reference, "follow", lambda *a, **k: calls.append(1) or reference.follow_dense(*a, **k))
    torch.testing.assert_close(kk.follow(x, r, kb), expected)
    assert calls, "KGQA_BACKEND=reference did not reach the reference"
    try:
        kk.set_backend("cpu")  # set_backend wins over the environment
        assert kk.get_backend() == "cpu"
        calls.clear()
        torch.testing.assert_close(kk.follow(x, r, kb), expected)
        assert not calls
        if INTERPRETED:
            kk.set_backend("triton")
            torch.testing.assert_close(kk.follow(x, r, kb), expected)
    finally:
        kk.set_backend(None)
    monkeypatch.setenv("KGQA_BACKEND", "nope")
    with pytest.raises(ValueError, match="KGQA_BACKEND must be one of"):
        kk.follow(x, r, kb)


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_kernels_compile_for_gpus():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    for arch in ("80", "90"):
        run = subprocess.run([sys.executable, "-m", "kgqa_kernels.triton.aot_check", "--arch", arch], env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.stdout.count("ok   sm_" + arch) == 48, run.stdout
