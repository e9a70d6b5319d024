import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kgqa_kernels as kk
from kgqa_kernels import reference
from kbgen import DTYPE_TOLERANCES, edge_case_kb, power_law_kb, random_kb


def _inputs(kb, B, dtype=torch.float64, requires_grad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, kb.num_entities, generator=g, dtype=torch.float64).to(dtype)
    r = torch.rand(B, kb.num_relations, generator=g, dtype=torch.float64).to(dtype)
    return x.requires_grad_(requires_grad), r.requires_grad_(requires_grad)


KBS = {
    "edge": lambda: edge_case_kb(),
    "edge-weighted": lambda: edge_case_kb(weighted=True),
    "edge-int64": lambda: edge_case_kb(index_dtype=torch.int64),
    "random-weighted": lambda: random_kb(weighted=True),
    "power-law": lambda: power_law_kb(),
}


@pytest.mark.parametrize("kb_name", sorted(KBS))
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("B", [1, 7, 130])  # 130 spans two batch tiles of the CPU kernel
def test_forward_matches_both_references(kb_name, inverse, B):
    kb = KBS[kb_name]()
    x, r = _inputs(kb, B)
    y = kk.follow(x, r, kb, inverse=inverse)
    assert y.shape == (B, kb.num_entities) and y.dtype == x.dtype
    torch.testing.assert_close(y, reference.follow_dense(x, r, kb, inverse=inverse), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(y, reference.follow_sparse(x, r, kb, inverse=inverse), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(
        y, reference.follow_sparse(x, r, kb, inverse=inverse, layout=torch.sparse_csr), atol=1e-12, rtol=1e-12
    )


@pytest.mark.parametrize("dtype, atol, rtol", DTYPE_TOLERANCES)
@pytest.mark.parametrize("inverse", [False, True])
def test_dtypes_forward_and_gradients(dtype, atol, rtol, inverse):
    kb = edge_case_kb(weighted=True)
    x, r = _inputs(kb, 9, dtype, requires_grad=True)
    y = kk.follow(x, r, kb, inverse=inverse)
    assert y.dtype == dtype
    g = torch.rand_like(y)
    (y * g).sum().backward()
    # The truth: float64 on the same (rounded) inputs.
    x64, r64 = (t.detach().double().requires_grad_() for t in (x, r))
    y64 = reference.follow_dense(x64, r64, kb, inverse=inverse)
    (y64 * g.double()).sum().backward()
    torch.testing.assert_close(y.double(), y64, atol=atol, rtol=rtol)
    torch.testing.assert_close(x.grad.double(), x64.grad, atol=atol, rtol=rtol)
    torch.testing.assert_close(r.grad.double(), r64.grad, atol=atol * 4, rtol=rtol)


@pytest.mark.parametrize("kb_name", sorted(KBS))
@pytest.mark.parametrize("inverse", [False, True])
def test_gradcheck_float64(kb_name, inverse):
    kb = KBS[kb_name]()
    x, r = _inputs(kb, 3, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, r: kk.follow(x, r, kb, inverse=inverse), (x, r))


@pytest.mark.parametrize("which", ["x", "r", "none"])
def test_inputs_without_gradients(which):
    kb = edge_case_kb()
    x, r = _inputs(kb, 4)
    x.requires_grad_(which == "x")
    r.requires_grad_(which == "r")
    y = kk.follow(x, r, kb)
    if which == "none":
        assert not y.requires_grad
        return
    y.sum().backward()
    x2, r2 = x.detach().requires_grad_(which == "x"), r.detach().requires_grad_(which == "r")
    reference.follow_dense(x2, r2, kb).sum().backward()
    leaf, ref_leaf = (x, x2) if which == "x" else (r, r2)
    torch.testing.assert_close(leaf.grad, ref_leaf.grad)


def test_gradients_match_the_sparse_reference_on_a_power_law_kb():
    kb = power_law_kb()
    x, r = _inputs(kb, 33, torch.float32, requires_grad=True)
    x2, r2 = (t.detach().clone().requires_grad_() for t in (x, r))
    g = torch.randn(33, kb.num_entities)
    (kk.follow(x, r, kb) * g).sum().backward()
    (reference.follow_sparse(x2, r2, kb) * g).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(r.grad, r2.grad, atol=1e-3, rtol=1e-4)


def test_batch_of_zero():
    kb = edge_case_kb()
    x, r = _inputs(kb, 0, requires_grad=True)
    y = kk.follow(x, r, kb)
    assert y.shape == (0, kb.num_entities)
    y.sum().backward()
    assert x.grad.shape == x.shape and r.grad.shape == r.shape


def test_single_entity_self_loop():
    kb = kk.SparseKB([0], [1], [0], 1, 2)
    x, r = _inputs(kb, 3, requires_grad=True)
    torch.testing.assert_close(kk.follow(x, r, kb), x * r[:, 1:2])
    assert torch.autograd.gradcheck(lambda x, r: kk.follow(x, r, kb), (x, r))


def test_entities_and_relations_without_facts_get_zeros():
    kb = edge_case_kb()
    x, r = _inputs(kb, 5, requires_grad=True)
    y = kk.follow(x, r, kb)
    assert torch.equal(y[:, 5:10], torch.zeros(5, 5, dtype=y.dtype))
    y.sum().backward()
    assert torch.equal(x.grad[:, 5:10], torch.zeros(5, 5, dtype=y.dtype))
    assert torch.equal(r.grad[:, 4], torch.zeros(5, dtype=y.dtype))


def test_nan_and_inf_propagate_like_the_sparse_reference():
    kb = edge_case_kb()
    x, r = _inputs(kb, 4)
    x[0, 0] = float("nan")
    x[1, 3] = float("inf")
    r[2, 1] = float("-inf")
    torch.testing.assert_close(kk.follow(x, r, kb), reference.follow_sparse(x, r, kb), equal_nan=True)
    kbw = kk.SparseKB([0, 1], [0, 0], [1, 1], 2, 1, weight=[float("nan"), 1.0])
    y = kk.follow(torch.ones(1, 2), torch.ones(1, 1), kbw)
    assert torch.isnan(y[0, 1]) and y[0, 0] == 0


def test_layouts_and_chained_hops_give_the_same_answer():
    kb = random_kb()
    x, r1 = _inputs(kb, 6)
    _, r2 = _inputs(kb, 6, seed=1)
    y1 = kk.follow(x, r1, kb)
    assert y1.t().is_contiguous()  # batch-innermost: the next hop reads it without a copy
    y_row_major = kk.follow(x.contiguous(), r1, kb)
    y_col_major = kk.follow(x.t().contiguous().t(), r1, kb)
    assert torch.equal(y_row_major, y_col_major)
    two_hops = kk.follow(y1, r2, kb)
    expected = reference.follow_dense(reference.follow_dense(x, r1, kb), r2, kb)
    torch.testing.assert_close(two_hops, expected)
    torch.testing.assert_close(kk.follow(y1.contiguous(), r2, kb), two_hops, atol=0, rtol=0)


@pytest.mark.parametrize("kb_name", ["edge-weighted", "power-law"])
def test_deterministic_across_runs_and_thread_counts(kb_name):
    kb = KBS[kb_name]()
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (threads, 1, threads):
            torch.set_num_threads(n)
            x, r = _inputs(kb, 70, torch.float32, requires_grad=True)
            y = kk.follow(x, r, kb)
            (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
            results.append((y.detach(), x.grad, r.grad))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


def test_backend_choice():
    kb = edge_case_kb()
    x, r = _inputs(kb, 3)
    assert kk.available_backends("cpu")[0] == "cpu"
    for backend in ("auto", "cpu", "reference"):
        torch.testing.assert_close(kk.follow(x, r, kb, backend=backend), reference.follow_dense(x, r, kb))
    with pytest.raises(ValueError, match="backend must be one of"):
        kk.follow(x, r, kb, backend="fast")


def test_torch_compile_traces_the_ops():
    kb = edge_case_kb()
    x, r = _inputs(kb, 4, requires_grad=True)

    def two_hop_and(x, r):
        a = kk.follow(x, r, kb)
        b = kk.follow(x, r.flip(0), kb, inverse=True)
        return kk.intersect(a, b).sum()

    compiled = torch.compile(two_hop_and, backend="aot_eager", fullgraph=True)
    out = compiled(x, r)
    out.backward()
    x2, r2 = (t.detach().clone().requires_grad_() for t in (x, r))
    expected = two_hop_and(x2, r2)
    expected.backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(r.grad, r2.grad)


@settings(max_examples=40, deadline=None)
@given(
    E=st.integers(1, 12),
    R=st.integers(1, 4),
    T=st.integers(1, 40),
    B=st.integers(0, 5),
    weighted=st.booleans(),
    inverse=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_random_kbs_match_the_dense_reference(E, R, T, B, weighted, inverse, seed):
    g = torch.Generator().manual_seed(seed)
    s, p, o = (torch.randint(0, n, (T,), generator=g) for n in (E, R, E))
    w = torch.rand(T, generator=g, dtype=torch.float64) if weighted else None
    kb = kk.SparseKB(s, p, o, E, R, weight=w)
    x, r = _inputs(kb, B, requires_grad=True, seed=seed)
    y = kk.follow(x, r, kb, inverse=inverse)
    torch.testing.assert_close(y, reference.follow_dense(x, r, kb, inverse=inverse))
    if B:
        gy = torch.rand(B, E, generator=g, dtype=torch.float64)
        dx, dr = torch.autograd.grad(y, (x, r), gy)
        edx, edr = torch.autograd.grad(reference.follow_dense(x, r, kb, inverse=inverse), (x, r), gy)
        torch.testing.assert_close(dx, edx)
        torch.testing.assert_close(dr, edr)


# ---- the push direction (sparse frontiers) ---------------------------------------------------

def _one_hot_inputs(kb, B, dtype=torch.float64, seed=0, per_example=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(B, kb.num_entities, dtype=dtype)
    for _ in range(per_example):
        x[torch.arange(B), torch.randint(0, kb.num_entities, (B,), generator=g)] = torch.rand(B, generator=g).to(dtype) + 0.5
    r = torch.rand(B, kb.num_relations, generator=g, dtype=torch.float64).to(dtype)
    return x, r


@pytest.mark.parametrize("kb_name", sorted(KBS))
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("per_example", [1, 3])
def test_push_equals_pull(kb_name, inverse, per_example):
    kb = KBS[kb_name]()
    x, r = _one_hot_inputs(kb, 6, per_example=per_example)
    x[2] = 0  # an example with an empty frontier
    pull = kk.follow(x, r, kb, inverse=inverse, direction="pull")
    for xin in (x, x.to_sparse(), x.to_sparse_csr()):
        push = kk.follow(xin, r, kb, inverse=inverse, direction="push")
        torch.testing.assert_close(push, pull, atol=1e-12, rtol=1e-12)
    if per_example == 1 and kb.weight is None:
        assert torch.equal(kk.follow(x, r, kb, inverse=inverse, direction="push"), pull)  # same summation order


@pytest.mark.parametrize("dtype, atol, rtol", DTYPE_TOLERANCES)
def test_push_dtypes_and_gradients(dtype, atol, rtol):
    kb = edge_case_kb(weighted=True)
    x, r = _one_hot_inputs(kb, 5, dtype, per_example=2)
    xs = x.to_sparse().requires_grad_()
    r1, r2 = r.clone().requires_grad_(), r.clone().requires_grad_()
    y = kk.follow(xs, r1, kb)
    x64 = x.double().requires_grad_()
    y64 = reference.follow_dense(x64, r2.double(), kb)
    torch.testing.assert_close(y.double(), y64, atol=atol, rtol=rtol)
    g = torch.rand(y.shape, dtype=torch.float64)
    dxs, dr = torch.autograd.grad(y, (xs, r1), g.to(dtype))
    edx, edr = torch.autograd.grad(y64, (x64, r2), g)
    torch.testing.assert_close(dr.double(), edr.double(), atol=atol * 4, rtol=rtol)
    # A sparse x gets the gradient of its stored values only.
    mask = x != 0
    torch.testing.assert_close(dxs.to_dense().double()[mask], edx[mask], atol=atol, rtol=rtol)
    assert (dxs.to_dense()[~mask] == 0).all()


@pytest.mark.parametrize("inverse", [False, True])
def test_push_gradcheck_float64(inverse):
    kb = edge_case_kb(weighted=True)
    x, r = _one_hot_inputs(kb, 4, per_example=3)
    ptr, ids, vals = kk.ops.follow_push.frontier(x)
    vals.requires_grad_()
    rt = r.t().contiguous().requires_grad_()
    fn = lambda v, rt: torch.ops.kgqa_kernels.follow_push(ptr, ids, v, rt, kb.tensors(), inverse)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (vals, rt))


def test_auto_direction():
    from kgqa_kernels.ops.follow_push import choose_direction as _choose_direction

    kb = power_law_kb()
    x, r = _one_hot_inputs(kb, 8)
    assert _choose_direction(x, "auto")[0] == "push"
    assert _choose_direction(x.to_sparse(), "auto")[0] == "push"
    assert _choose_direction(torch.rand(8, kb.num_entities), "auto")[0] == "pull"
    assert _choose_direction(x.clone().requires_grad_(), "auto")[0] == "pull"
    assert _choose_direction(x.t().contiguous().t(), "auto")[0] == "push"  # not row-major: the torch path
    y = kk.follow(x, r, kb)
    assert torch.equal(y, kk.follow(x, r, kb, direction="pull"))
    with pytest.raises(ValueError, match="direction must be one of"):
        kk.follow(x, r, kb, direction="sideways")
    with pytest.raises(ValueError, match="needs an x without gradient"):
        kk.follow(x.requires_grad_(), r, kb, direction="push")


def test_dense_frontier_finds_every_nonzero_and_gives_up_when_dense():
    x = torch.zeros(3, 10000)
    x[0, 0], x[0, 9999], x[2, 4096], x[2, 17] = 1.0, float("nan"), -2.0, -0.0
    ptr, ids, vals = torch.ops.kgqa_kernels.dense_frontier(x, 100)
    assert ptr.tolist() == [0, 2, 2, 3]
    assert ids.tolist() == [0, 9999, 4096]
    assert vals[0] == 1 and torch.isnan(vals[1]) and vals[2] == -2
    ptr, ids, vals = torch.ops.kgqa_kernels.dense_frontier(torch.rand(3, 10000), 100)
    assert ptr.numel() == 0


def test_push_output_is_a_normal_tensor_when_large():
    # Outputs of 1 MiB and more come from lazily zeroed pages; they must behave like any tensor.
    kb = kk.SparseKB([0, 5], [0, 0], [70000, 3], 70001, 1)
    x = torch.zeros(4, 70001)
    x[:, 0] = 1.0
    y = kk.follow(x, torch.ones(4, 1), kb, direction="push")
    assert y.sum().item() == 4.0 and y[:, 70000].tolist() == [1.0] * 4
    y.add_(1)
    assert y.sum().item() == 4.0 + 4 * 70001


def test_bad_frontier_raises():
    kb = edge_case_kb()
    r = torch.rand(kb.num_relations, 2, dtype=torch.float64)
    ptr = torch.tensor([0, 1, 2])
    with pytest.raises(RuntimeError, match=r"ids\[1\] = 20 is not an entity id"):
        torch.ops.kgqa_kernels.follow_push(ptr, torch.tensor([0, 20]), torch.ones(2, dtype=torch.float64), r, kb.tensors(), False)
    with pytest.raises(RuntimeError, match="ptr must run from 0"):
        torch.ops.kgqa_kernels.follow_push(torch.tensor([0, 1, 3]), torch.tensor([0, 1]), torch.ones(2, dtype=torch.float64), r, kb.tensors(), False)
