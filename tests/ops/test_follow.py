"""follow, pulled (the dense direction): forward and gradients against the references, gradcheck,
second derivatives (gradgradcheck, a gradient penalty against the reference backend), opcheck, edge
cases, determinism and torch.compile on every backend through the public API (kk.follow(...,
backend=backend)); then the raw ops' own checks and bad input.

The push direction (sparse frontiers) is tests/ops/test_follow_push.py.
"""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import cases
import kgqa_kernels as kk
from cases import assert_close, inputs, leaves, matrix
from kgqa_kernels import layout, reference


def _grad_out(y, seed=1):
    """A float64 output gradient for y, rounded to y's dtype, on y's device."""
    g = torch.rand(y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return g.to(y.dtype).to(y.device)


# ---- forward and gradients ------------------------------------------------------------------------

@matrix("kb_name", "B", "dtype")
@pytest.mark.parametrize("inverse", [False, True])
def test_forward_and_gradients_match_the_references(backend, device, kb_name, B, dtype, inverse):
    kb = cases.kb(kb_name, device)
    x, r = inputs(kb, B, dtype, requires_grad=True)
    y = kk.follow(x, r, kb, inverse=inverse, backend=backend)
    assert y.shape == (B, kb.num_entities) and y.dtype == dtype and y.device.type == device.type
    g = _grad_out(y)
    dx, dr = torch.autograd.grad(y, (x, r), g)
    # The truth: float64 on the same (rounded) inputs and output gradient.
    x64, r64 = leaves((x, r), torch.float64)
    y64 = reference.follow_dense(x64, r64, kb, inverse=inverse)
    dx64, dr64 = torch.autograd.grad(y64, (x64, r64), g.double())
    assert_close(y, y64, dtype)
    assert_close(dx, dx64, dtype)
    assert_close(dr, dr64, dtype)
    if dtype == torch.float64:  # ReifKB's sparse-matrix form, in both sparse layouts, agrees too
        for sparse_layout in (torch.sparse_coo, torch.sparse_csr):
            expected = reference.follow_sparse(x64, r64, kb, inverse=inverse, layout=sparse_layout)
            torch.testing.assert_close(y, expected, atol=1e-12, rtol=1e-12)


@matrix(kb_name="gradcheck_kb")
@pytest.mark.parametrize("inverse", [False, True])
def test_gradcheck_float64(backend, device, backend_cases, kb_name, inverse):
    kb = cases.kb(kb_name, device)
    x, r = inputs(kb, 3, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, r: kk.follow(x, r, kb, inverse=inverse, backend=backend), (x, r),
                                    fast_mode=backend_cases.gradcheck_fast)


# ---- second derivatives ---------------------------------------------------------------------------

@pytest.mark.parametrize("inverse", [False, True])
def test_gradgradcheck_float64(backend, device, backend_cases, inverse):
    kb = cases.kb(backend_cases.gradgradcheck_kb, device)
    x, r = inputs(kb, 2, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x, r: kk.follow(x, r, kb, inverse=inverse, backend=backend), (x, r),
                                        fast_mode=backend_cases.gradcheck_fast)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("wrt", [(1,), (0, 1)], ids=["penalty-on-dr", "penalty-on-dx-and-dr"])
def test_gradient_penalty_matches_the_reference(backend, device, inverse, wrt):
    """A penalty on dL/dr reaches x through follow_backward_r's own derivative."""
    kb = cases.kb_for(backend, device, "edge-weighted")
    x, r = inputs(kb, 3)
    ours = cases.penalised_grads(lambda x, r: kk.follow(x, r, kb, inverse=inverse, backend=backend), (x, r), wrt)
    expected = cases.penalised_grads(lambda x, r: kk.follow(x, r, kb, inverse=inverse, backend="reference"), (x, r),
                                     wrt)
    assert expected[0] is not None and bool(expected[0].abs().sum() > 0)  # the penalty depends on x
    cases.assert_same_grads(ours, expected)


def test_kb_tensors_that_require_grad_are_refused(backend, device):
    kb = cases.kb("tiny-weighted", device).tensors()
    kb[layout.OBJ_WEIGHT] = kb[layout.OBJ_WEIGHT].detach().clone().requires_grad_()
    x, r = torch.rand(8, 2, device=device), torch.rand(3, 2, device=device)
    ops = cases.ops_for(backend)
    with pytest.raises(RuntimeError, match=r"follow\(\): kb\[OBJ_WEIGHT\] requires grad: the fact weights train "
                                           r"through kb\[SUBJ_WEIGHT\] only"):
        ops.follow(x, r, kb, False)
    with pytest.raises(RuntimeError, match=r"follow_backward_r\(\): kb\[OBJ_WEIGHT\] requires grad"):
        ops.follow_backward_r(x, x, kb, False)



@pytest.mark.parametrize("which", ["x", "r", "none"])
def test_inputs_without_gradients(backend, device, which):
    kb = cases.kb("edge", device)
    x, r = inputs(kb, 4)
    x.requires_grad_(which == "x")
    r.requires_grad_(which == "r")
    y = kk.follow(x, r, kb, backend=backend)
    if which == "none":
        assert not y.requires_grad
        return
    y.sum().backward()
    x2, r2 = x.detach().requires_grad_(which == "x"), r.detach().requires_grad_(which == "r")
    reference.follow_dense(x2, r2, kb).sum().backward()
    leaf, ref_leaf = (x, x2) if which == "x" else (r, r2)
    torch.testing.assert_close(leaf.grad, ref_leaf.grad)


def test_gradients_match_the_sparse_reference_on_a_power_law_kb(backend, device):
    kb = cases.kb_for(backend, device, "power-law")
    B = cases.batch(backend, device, 33)
    x, r = inputs(kb, B, torch.float32, requires_grad=True)
    x2, r2 = leaves((x, r))
    g = torch.randn(B, kb.num_entities, device=device)
    (kk.follow(x, r, kb, backend=backend) * g).sum().backward()
    (reference.follow_sparse(x2, r2, kb) * g).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(r.grad, r2.grad, atol=1e-3, rtol=1e-4)


def test_property_random_kbs_match_the_dense_reference(backend, device, backend_cases):
    @settings(max_examples=backend_cases.examples, deadline=None)
    @given(
        E=st.integers(1, 12),
        R=st.integers(1, 4),
        T=st.integers(1, 40),
        B=st.integers(0, 5),
        weighted=st.booleans(),
        inverse=st.booleans(),
        seed=st.integers(0, 2**16),
    )
    def check(E, R, T, B, weighted, inverse, seed):
        g = torch.Generator().manual_seed(seed)
        s, p, o = (torch.randint(0, n, (T,), generator=g) for n in (E, R, E))
        w = torch.rand(T, generator=g, dtype=torch.float64) if weighted else None
        kb = kk.SparseKB(s, p, o, E, R, weight=w).to(device)
        x, r = inputs(kb, B, requires_grad=True, seed=seed)
        y = kk.follow(x, r, kb, inverse=inverse, backend=backend)
        torch.testing.assert_close(y, reference.follow_dense(x, r, kb, inverse=inverse))
        if B:
            gy = torch.rand(B, E, generator=g, dtype=torch.float64).to(device)
            dx, dr = torch.autograd.grad(y, (x, r), gy)
            edx, edr = torch.autograd.grad(reference.follow_dense(x, r, kb, inverse=inverse), (x, r), gy)
            torch.testing.assert_close(dx, edx)
            torch.testing.assert_close(dr, edr)

    check()


# ---- edge cases -----------------------------------------------------------------------------------

def test_batch_of_zero(backend, device):
    kb = cases.kb("edge", device)
    x, r = inputs(kb, 0, requires_grad=True)
    y = kk.follow(x, r, kb, backend=backend)
    assert y.shape == (0, kb.num_entities)
    y.sum().backward()
    assert x.grad.shape == x.shape and r.grad.shape == r.shape


def test_single_entity_self_loop(backend, device):
    kb = kk.SparseKB([0], [1], [0], 1, 2).to(device)
    x, r = inputs(kb, 3, requires_grad=True)
    torch.testing.assert_close(kk.follow(x, r, kb, backend=backend), x * r[:, 1:2])
    assert torch.autograd.gradcheck(lambda x, r: kk.follow(x, r, kb, backend=backend), (x, r))


def test_entities_and_relations_without_facts_get_zeros(backend, device):
    kb = cases.kb("edge", device)  # entities 5..9 and relation 4 have no facts
    x, r = inputs(kb, 5, requires_grad=True)
    y = kk.follow(x, r, kb, backend=backend)
    zeros = torch.zeros(5, 5, dtype=y.dtype, device=device)
    assert torch.equal(y[:, 5:10], zeros)
    y.sum().backward()
    assert torch.equal(x.grad[:, 5:10], zeros)
    assert torch.equal(r.grad[:, 4], zeros[0])
    # Weight on those entities only: every output and every relation gradient is zero.
    x = torch.zeros(3, 20, device=device)
    x[:, 5:10] = 1.0
    x.requires_grad_()
    r = torch.rand(3, 5, device=device, requires_grad=True)
    y = kk.follow(x, r, kb, backend=backend)
    assert torch.equal(y, torch.zeros(3, 20, device=device))
    dx, dr = torch.autograd.grad(y.sum(), (x, r))
    assert torch.equal(dx[:, 5:10], torch.zeros(3, 5, device=device)) and torch.equal(dr, torch.zeros_like(r))


def test_nan_and_inf_propagate_like_the_sparse_reference(backend, device):
    kb = cases.kb("edge", device)
    x, r = inputs(kb, 4)
    x[0, 0] = float("nan")
    x[1, 3] = float("inf")
    r[2, 1] = float("-inf")
    torch.testing.assert_close(kk.follow(x, r, kb, backend=backend), reference.follow_sparse(x, r, kb), equal_nan=True)
    kbw = kk.SparseKB([0, 1], [0, 0], [1, 1], 2, 1, weight=[float("nan"), 1.0]).to(device)
    y = kk.follow(torch.ones(1, 2, device=device), torch.ones(1, 1, device=device), kbw, backend=backend)
    assert torch.isnan(y[0, 1]) and y[0, 0] == 0


def test_layouts_and_chained_hops_give_the_same_answer(backend, device):
    kb = cases.kb_for(backend, device, "random")
    x, r1 = inputs(kb, 6)
    _, r2 = inputs(kb, 6, seed=1)
    y1 = kk.follow(x, r1, kb, backend=backend)
    assert y1.t().is_contiguous()  # batch-innermost: the next hop reads it without a copy
    y_row_major = kk.follow(x.contiguous(), r1, kb, backend=backend)
    y_col_major = kk.follow(x.t().contiguous().t(), r1, kb, backend=backend)
    assert torch.equal(y_row_major, y_col_major)
    two_hops = kk.follow(y1, r2, kb, backend=backend)
    expected = reference.follow_dense(reference.follow_dense(x, r1, kb), r2, kb)
    torch.testing.assert_close(two_hops, expected)
    torch.testing.assert_close(kk.follow(y1.contiguous(), r2, kb, backend=backend), two_hops, atol=0, rtol=0)


@pytest.mark.parametrize("shape", ["[R]", "[1, R]"])
def test_one_relation_weighting_for_the_whole_batch_is_broadcast(backend, device, shape):
    # r of shape [R] or [1, R] means the same relation weights for every example; its gradient is
    # the sum over the batch, as torch broadcasting gives.
    kb = cases.kb_for(backend, device, "random-weighted")
    x, r = inputs(kb, 4, requires_grad=True)
    r_one = r[:1].detach().clone().requires_grad_()
    r_arg = r_one[0] if shape == "[R]" else r_one
    y = kk.follow(x, r_arg, kb, backend=backend)
    x2 = x.detach().clone().requires_grad_()
    r2 = r_one.detach().clone().requires_grad_()
    expected = reference.follow_dense(x2, r2.expand(4, -1), kb)
    assert_close(y, expected)
    g = torch.rand(y.shape, dtype=y.dtype, device=device)
    for got, want in zip(torch.autograd.grad(y, (x, r_one), g), torch.autograd.grad(expected, (x2, r2), g)):
        assert_close(got, want)
    seeds = torch.zeros(4, kb.num_entities, dtype=x.dtype, device=device)
    seeds[torch.arange(4), torch.arange(4)] = 1  # pushed ("auto" on a one-hot x without gradient)
    assert_close(kk.follow(seeds, r_arg.detach(), kb, backend=backend),
                 reference.follow_dense(seeds, r2.detach().expand(4, -1), kb))
    y2 = kk.follow_intersect([x, x], [r_arg, r[1:2].detach().expand(4, -1)], kb, backend=backend)
    assert_close(y2, reference.follow_intersect([x2, x2], [r2.expand(4, -1), r[1:2].detach().expand(4, -1)], kb))
    with pytest.raises(ValueError, match=r"r must be \[B, num_relations="):
        kk.follow(x, r_one[:, :-1], kb, backend=backend)
    with pytest.raises(ValueError, match=r"r must be \[B, num_relations="):
        kk.follow(x, torch.rand(2, 2, kb.num_relations, dtype=x.dtype, device=device), kb, backend=backend)


def test_batch_sizes_around_the_tiles_of_the_launch(backend, device):
    """Every batch size around a warp (32) and a block (256) of the CUDA launch, which the emulation
    runs as configured (threads across the batch in whole warps, several rows per block for narrow
    batches): no thread outside the output writes. Other backends run the sizes they can."""
    kb = cases.kb("edge", device)
    for B in sorted({cases.batch(backend, device, B) for B in (1, 31, 32, 33, 255, 256, 257)}):
        # Batch innermost, as the kernels take it.
        x = torch.rand(kb.num_entities, B, dtype=torch.float64, device=device)
        r = torch.rand(kb.num_relations, B, dtype=torch.float64, device=device)
        y = kk.follow(x.t(), r.t(), kb, backend=backend)
        torch.testing.assert_close(y, reference.follow_dense(x.t(), r.t(), kb))


# ---- determinism, torch.compile, opcheck -----------------------------------------------------------

@pytest.mark.parametrize("which", ["edge-weighted", "power-law"])
def test_deterministic_across_runs_and_thread_counts(backend, device, which):
    kb = cases.kb_for(backend, device, which)
    B = cases.batch(backend, device, 70)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (threads, 1, threads):
            torch.set_num_threads(n)
            x, r = inputs(kb, B, torch.float32, requires_grad=True)
            y = kk.follow(x, r, kb, backend=backend)
            (y * torch.linspace(-1, 1, y.numel(), device=device).view_as(y)).sum().backward()
            results.append((y.detach(), x.grad, r.grad))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


def test_kgqa_cpu_isa_baseline_turns_the_avx2_loops_off(monkeypatch):
    assert cases.use_cpu_isa(monkeypatch, "baseline") == "baseline"
    assert cases.use_cpu_isa(monkeypatch, "best") in ("avx2", "baseline")


@pytest.mark.parametrize("kb_name", ["edge-weighted", "chunked", "hub", "edge-int64"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_avx2_and_baseline_cpu_loops_give_the_same_bits(monkeypatch, kb_name, dtype):
    # csrc/cpu/isa.h: the pulls and dr are compiled twice (baseline x86-64, and AVX2 without FMA);
    # both must give the same bits, on batch widths around the vector widths and the 128-column
    # tile, with Inf and NaN taking the runs' term-by-term path, and a row-major output.
    ops = torch.ops.kgqa_kernels
    kb = cases.kb(kb_name)
    T = kb.tensors()
    g = torch.Generator().manual_seed(0)
    for B in (1, 7, 64, 130):
        x = torch.randn(kb.num_entities, B, generator=g, dtype=torch.float64).to(dtype)
        r = torch.randn(kb.num_relations, B, generator=g, dtype=torch.float64).to(dtype)
        grad = torch.randn(kb.num_entities, B, generator=g, dtype=torch.float64).to(dtype)
        x[0, 0], x[1, -1], r[0, 0] = float("inf"), float("nan"), 3e38 if dtype == torch.float64 else 1e4
        cases.assert_isas_agree(monkeypatch, lambda: (
            [ops.follow(x, r, T, inverse, row_major) for inverse in (False, True) for row_major in (False, True)]
            + [ops.follow_backward_r(x, grad, T, inverse) for inverse in (False, True)]))


def test_torch_compile_traces_the_ops(backend, device):
    kb = cases.kb("edge-weighted", device)
    x, r = inputs(kb, 4, requires_grad=True)

    def hops_and(x, r):
        a = kk.follow(x, r, kb, backend=backend)
        b = kk.follow(kk.follow(x, r.flip(0), kb, inverse=True, backend=backend), r, kb, backend=backend)
        return kk.intersect(a, b, backend=backend).sum()

    compiled = torch.compile(hops_and, backend="aot_eager", fullgraph=True)
    out = compiled(x, r)
    out.backward()
    x2, r2 = leaves((x, r))
    expected = hops_and(x2, r2)
    expected.backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(r.grad, r2.grad)


def _opcheck_cases(device):
    # opcheck checks registrations, not numerics: a small KB (a few launches of few programs each).
    kb, kb64 = cases.kb("tiny-weighted", device), cases.kb("tiny-int64", device)
    E, R, B = kb.num_entities, kb.num_relations, 3
    kb, kb64 = kb.tensors(), kb64.tensors()

    def t(rows, grad=True):
        return torch.rand(rows, B, dtype=torch.float64, device=device, requires_grad=grad)

    yield "follow", "follow", (t(E), t(R), kb, False)
    yield "follow-inverse-int64", "follow", (t(E), t(R), kb64, True)
    yield "follow-no-grad", "follow", (t(E, False), t(R, False), kb, False)
    yield "follow-row-major", "follow", (t(E), t(R), kb, False, True)  # the fake's strides too
    yield "follow_backward_r", "follow_backward_r", (t(E, False), t(E, False), kb, True)
    yield "follow_backward_r-grad", "follow_backward_r", (t(E), t(E), kb, False)  # its own autograd


OPCHECK_CASES = ["follow", "follow-inverse-int64", "follow-no-grad", "follow-row-major", "follow_backward_r", "follow_backward_r-grad"]


@pytest.mark.parametrize("case", OPCHECK_CASES)
def test_opcheck(backend, device, case):
    """torch.library.opcheck of the backend's raw ops: schema, autograd registration, fake kernels,
    and AOT dispatch with dynamic shapes."""
    name, args = next((op, args) for c, op, args in _opcheck_cases(device) if c == case)
    cases.opcheck(getattr(cases.ops_for(backend), name), args)


# ---- the raw ops ----------------------------------------------------------------------------------

def test_backward_r_over_several_chunks_is_deterministic(backend, device):
    ops = cases.ops_for(backend)
    kb = cases.kb("chunked", device)  # each relation spans several fixed-size chunks
    assert int(kb.tensor("REL_CHUNK_PTR").diff().max()) > 1
    (x, _) = inputs(kb, 3, device="cpu")
    g = torch.rand(kb.num_entities, 3, dtype=torch.float64)
    xt, gt = x.t().contiguous().to(device), g.to(device)
    dr = ops.follow_backward_r(xt, gt, kb.tensors(), False)
    x64 = x.clone().requires_grad_()
    r64 = torch.ones(3, kb.num_relations, dtype=torch.float64, requires_grad=True)
    (_, expected) = torch.autograd.grad(reference.follow_sparse(x64, r64, kb.cpu()), (x64, r64), g.t())
    torch.testing.assert_close(dr.t().cpu(), expected)
    assert torch.equal(dr, ops.follow_backward_r(xt, gt, kb.tensors(), False))


def test_raw_ops_take_an_empty_batch(backend, device):
    kb = cases.kb("edge", device)
    x, r = torch.rand(20, 0, device=device), torch.rand(5, 0, device=device)
    y = cases.ops_for(backend).follow(x, r, kb.tensors(), False)
    assert y.shape == (20, 0)


E, R = 40, 6  # the KB of the bad-input tests: random_kb(E, R)
RAW_SHAPE_ERRORS = [  # (call, what the error says: the C++ ops' words | the Triton ops' words)
    (lambda ops, kb, d: ops.follow(torch.rand(E + 1, 2, device=d), torch.rand(R, 2, device=d), kb, False),
     r"x must be \[40, B\]"),
    (lambda ops, kb, d: ops.follow(torch.rand(E, 2, device=d), torch.rand(R, 3, device=d), kb, False),
     r"x and r must have the same batch size|r must be \[6, 2\]"),
    (lambda ops, kb, d: ops.follow(torch.rand(E, 2, device=d), torch.rand(R, 2, device=d), kb[:5], False),
     f"kb must be the {layout.NUM_KB_SLOTS} tensors"),
    (lambda ops, kb, d: ops.follow(torch.rand(E, 2, device=d), torch.rand(R, 2, device=d).double(), kb, False),
     "one dtype"),
    (lambda ops, kb, d: ops.follow_backward_r(torch.rand(E, 2, device=d), torch.rand(E, 3, device=d), kb, False),
     r"x and grad must have the same batch size|grad must be \[40, 2\]"),
]


@pytest.mark.parametrize("call, match", RAW_SHAPE_ERRORS)
def test_raw_ops_check_shapes(backend, device, call, match):
    with pytest.raises(RuntimeError, match=match):
        call(cases.ops_for(backend), cases.kb("random", device).tensors(), device)


# ---- bad input to the public op (checked before any backend is chosen) ------------------------------

@pytest.fixture
def kb():
    return cases.random_kb(E, R)


@pytest.mark.parametrize(
    "x, r, err, match",
    [
        (torch.rand(E), torch.rand(2, R), ValueError, r"x must be \[B, num_entities=40\]"),
        (torch.rand(2, E + 1), torch.rand(2, R), ValueError, r"x must be \[B, num_entities=40\], got shape \(2, 41\)"),
        (torch.rand(2, 1, E), torch.rand(2, R), ValueError, r"x must be \[B, num_entities=40\]"),
        (torch.rand(2, E), torch.rand(2, R - 1), ValueError, r"r must be \[B, num_relations=6\]"),
        (torch.rand(2, E), torch.rand(3, R), ValueError, r"r has batch size 3, expected 2"),
        (torch.ones(2, E, dtype=torch.long), torch.rand(2, R), TypeError, "x must be float32, float64, bfloat16 or float16"),
        (torch.rand(2, E), torch.ones(2, R, dtype=torch.bool), TypeError, "r must be float32"),
        (torch.rand(2, E, dtype=torch.complex64), torch.rand(2, R), TypeError, "x must be float32"),
        (torch.rand(2, E), torch.rand(2, R, dtype=torch.float64), TypeError, "r has dtype torch.float64, expected torch.float32"),
        (torch.rand(2, E).numpy(), torch.rand(2, R), TypeError, "x must be a torch.Tensor"),
        (torch.rand(2, E, device="meta"), torch.rand(2, R), ValueError, "x is on meta but kb is on cpu"),
        (torch.rand(2, E), torch.rand(2, R, device="meta"), ValueError, "r is on meta but kb is on cpu"),
    ],
)
def test_follow_rejects(kb, x, r, err, match):
    with pytest.raises(err, match=match):
        kk.follow(x, r, kb)


@pytest.mark.parametrize("inverse", ["no", "False", 1, 0, None, torch.tensor(True)])
def test_follow_rejects_an_inverse_that_is_not_a_bool(kb, inverse):
    with pytest.raises(TypeError, match="follow\\(\\): inverse must be a bool"):
        kk.follow(torch.rand(2, E), torch.rand(2, R), kb, inverse=inverse)


def test_follow_takes_a_numpy_bool_as_inverse(kb):
    x, r = torch.rand(2, E), torch.rand(2, R)
    for flag in (True, False):
        assert torch.equal(kk.follow(x, r, kb, inverse=np.bool_(flag)), kk.follow(x, r, kb, inverse=flag))


def test_follow_rejects_a_sparse_r(kb):
    with pytest.raises(TypeError, match="r must be a dense tensor"):
        kk.follow(torch.rand(2, E), torch.rand(2, R).to_sparse(), kb)


def test_follow_rejects_a_kb_that_is_not_a_sparse_kb():
    with pytest.raises(TypeError, match="kb must be a kgqa_kernels.SparseKB"):
        kk.follow(torch.rand(2, E), torch.rand(2, R), [torch.zeros(3)])


# ---- one order of operations ----------------------------------------------------------------------

@matrix(kb_name="split_kb")
@pytest.mark.parametrize("inverse", [False, True])
def test_rows_split_over_workers_match_the_reference(backend, device, kb_name, inverse):
    """Hub rows that the GPU kernels' work plan (csrc/work_plan.h) splits over several workers, beside
    short and empty rows: forward and dx (the pull in the other direction) against the reference in
    both directions, so each hub row is split both as an output row and as dx's; dr (no pull: chunks
    of each relation's facts) in one direction."""
    kb = cases.kb(kb_name, device)
    x, r = inputs(kb, 3, requires_grad=True)
    y = kk.follow(x, r, kb, inverse=inverse, backend=backend)
    g = _grad_out(y)
    wrt = (x,) if inverse else (x, r)
    x64, r64 = leaves((x, r))
    y64 = reference.follow_dense(x64, r64, kb, inverse=inverse)
    assert_close(y, y64)
    for a, b in zip(torch.autograd.grad(y, wrt, g), torch.autograd.grad(y64, (x64, r64)[:len(wrt)], g)):
        assert_close(a, b)


@pytest.mark.parametrize("direction", ["pull", "push"])
@pytest.mark.parametrize("case", ["overflow", "inf-times-zero", "inf-minus-inf"])
def test_every_backend_and_direction_forms_the_same_terms(backend, device, direction, case):
    """Each fact's term is r * (w * x), added in fact order, in every kernel and the reference: two
    x = 3e38 through r = 0.5 sum to 3e38 (summing x before multiplying by r overflowed to inf), and
    Inf and NaN come out alike."""
    kb = kk.SparseKB([0, 1], [0, 0], [2, 2], 3, 1, weight=[1.0, 1.0]).to(device)
    x, r, want = {
        "overflow": ([3e38, 3e38, 0.0], [0.5], 3e38),
        "inf-times-zero": ([float("inf"), 1.0, 0.0], [0.0], float("nan")),
        "inf-minus-inf": ([float("inf"), float("-inf"), 0.0], [1.0], float("nan")),
    }[case]
    x, r = torch.tensor([x], device=device), torch.tensor([r], device=device)
    y = kk.follow(x, r, kb, direction=direction, backend=backend)
    expected = kk.follow(x, r, kb, backend="reference")
    torch.testing.assert_close(y.cpu(), expected.cpu(), equal_nan=True, atol=0, rtol=0)
    torch.testing.assert_close(y[0, 2].cpu(), torch.tensor(want), equal_nan=True, rtol=1e-6, atol=0)


@pytest.mark.parametrize("direction", ["pull", "push"])
def test_a_run_that_overflows_beside_finite_runs(backend, device, direction):
    """One object with three runs of one relation each: the first run's x sum to inf where its terms
    r * x do not (the C++ pull sums a run, then multiplies by r, and must notice it per run), the
    others are finite. Every value is exact in float32, so the result is the reference's, bitwise."""
    kb = kk.SparseKB([0, 1, 2, 3, 4], [0, 0, 1, 1, 2], [5, 5, 5, 5, 5], 6, 3).to(device)
    x = torch.tensor([[3e38, 3e38, 1.0, 2.0, 4.0, 0.0], [1.0] * 6], device=device)
    r = torch.tensor([[0.5, 0.25, 1.0], [1.0, 2.0, 4.0]], device=device)
    y = kk.follow(x, r, kb, direction=direction, backend=backend)
    torch.testing.assert_close(y.cpu(), kk.follow(x, r, kb, backend="reference").cpu(), atol=0, rtol=0)
    assert y[0, 5] == torch.tensor(3e38) and y[1, 5] == 10.0


# ---- the Triton work plan --------------------------------------------------------------------------

def _triton_plan_device():
    """Where the Triton work plan's kernel runs here, or None (no triton, or neither a GPU nor the
    interpreter)."""
    import importlib.util
    import os

    if importlib.util.find_spec("triton") is None:
        return None
    if torch.cuda.is_available():
        return "cuda"
    return "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else None


def _plan_by_hand(ptr, items_per_worker):
    """(facts, fixup partials) per worker of the merge path of csrc/work_plan.h, item by item: fact f
    of row r is item f + r, row r's end item ptr[r + 1] + r; a row whose first item (first fact, or
    end when empty) and end lie in different workers is split, and the worker of its end adds the
    partials of every worker from the first one's."""
    rows = len(ptr) - 1
    workers = -(-(rows + ptr[-1]) // items_per_worker)
    facts, fixup = [0] * workers, [0] * workers
    for r in range(rows):
        for f in range(ptr[r], ptr[r + 1]):
            facts[(f + r) // items_per_worker] += 1
        first, last = (ptr[r] + r) // items_per_worker, (ptr[r + 1] + r) // items_per_worker
        if last > first:
            fixup[last] = last - first + 1
    return facts, fixup


@pytest.mark.skipif(_triton_plan_device() is None, reason="Triton runs neither on a GPU nor interpreted here")
@pytest.mark.parametrize("inverse", [False, True])
def test_triton_launch_plan_bounds_each_program_on_a_hub_kb(inverse):
    """kgqa_kernels.triton.work_plan.launch_plan, the plan the Triton pulls launch, on the KB whose
    hub rows are split: per program the facts of the merge path counted by hand, each at most
    PLAN_ITEMS, every fact read once per block of the batch, and the split rows' fixups."""
    from kgqa_kernels.triton import work_plan

    kb = cases.kb("hub", _triton_plan_device())
    t = kb.tensors()
    ptr = t[layout.pull_slots(inverse)[0]].tolist()
    facts, B, block_b = t[layout.OBJ_SUBJ].numel(), 40, 16
    work, fixup, grid = work_plan.launch_plan(t, B, inverse, block_b=block_b)
    assert grid == (-(-(kb.num_entities + facts) // layout.PLAN_ITEMS), -(-B // block_b))
    assert work.dtype == fixup.dtype == torch.int64 and work.numel() == fixup.numel() == grid[0] * grid[1]
    assert int(work.sum()) == facts * grid[1] and int(work.max()) <= layout.PLAN_ITEMS
    # Programs in launch order, axis 0 (the worker) fastest: each block of the batch repeats the workers.
    expected_work, expected_fixup = _plan_by_hand(ptr, layout.PLAN_ITEMS)
    assert work.view(grid[1], grid[0]).cpu().tolist() == [expected_work] * grid[1]
    assert fixup.view(grid[1], grid[0]).cpu().tolist() == [expected_fixup] * grid[1]
    hub = 3 if inverse else 4  # subject 1 spans at least 3 workers' items, object 0 at least 4
    assert max(expected_fixup) >= hub
    # Without block_b: the autotuned or first configuration's, the same workers.
    assert work_plan.launch_plan(t, B, inverse)[2][0] == grid[0]


# ---- reduce and message (the generalized follow) ---------------------------------------------------

@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("message", ["mul", "add"])
@pytest.mark.parametrize("inverse", [False, True])
def test_reduce_and_message_match_their_definition(backend, device, reduce, message, inverse):
    kb = cases.kb_for(backend, device, "edge-weighted")
    x, r = inputs(kb, 3, requires_grad=True)
    y = kk.follow(x, r, kb, inverse=inverse, reduce=reduce, message=message, backend=backend)
    want = reference.follow_generalized(x, r, kb, inverse=inverse, reduce=reduce, message=message)
    torch.testing.assert_close(y, want)
    g = _grad_out(y)
    for a, b in zip(torch.autograd.grad(y, (x, r), g), torch.autograd.grad(want, (x, r), g)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("reduce, message", [("mean", "mul"), ("sum", "add"), ("mean", "add")])
def test_gradcheck_reduce_and_message(backend, device, backend_cases, reduce, message):
    kb = cases.kb_for(backend, device, "tiny-weighted")
    x, r = inputs(kb, 2, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, r: kk.follow(x, r, kb, reduce=reduce, message=message, backend=backend), (x, r),
        fast_mode=backend_cases.gradcheck_fast)


def test_the_definition_of_sum_and_mul_is_follows():
    kb = cases.kb("edge-weighted")
    x, r = inputs(kb, 4)
    for inverse in (False, True):
        torch.testing.assert_close(reference.follow_generalized(x, r, kb, inverse=inverse),
                                   reference.follow_dense(x, r, kb, inverse=inverse))


@pytest.mark.parametrize("kwargs, match", [(dict(reduce="avg"), "reduce must be one of"),
                                           (dict(message="sub"), "message must be one of")])
def test_reduce_and_message_are_checked(kb, kwargs, match):
    x, r = torch.rand(2, E), torch.rand(2, R)
    with pytest.raises(ValueError, match=match):
        kk.follow(x, r, kb, **kwargs)


def test_trainable_weights_through_add_and_mean(backend, device):
    s, p, o = cases.random_facts(12, 3, 40, seed=5)
    w = (torch.rand(40, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.5).float().double()
    w = w.to(device).requires_grad_()
    kb = kk.SparseKB(s.to(device), p.to(device), o.to(device), 12, 3, weight=w)
    x, r = inputs(kb, 3)
    for reduce, message in (("sum", "add"), ("mean", "mul"), ("mean", "add")):
        (ours,) = torch.autograd.grad(kk.follow(x, r, kb, reduce=reduce, message=message, backend=backend).sum(), (w,))
        (want,) = torch.autograd.grad(reference.follow_generalized(x, r, kb, reduce=reduce, message=message).sum(), (w,))
        torch.testing.assert_close(ours, want, msg=lambda m: f"{reduce}/{message}: {m}")
