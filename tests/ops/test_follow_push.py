"""follow, pushed from a sparse frontier (``direction="push"``, a sparse x, or "auto" on a dense x
with few nonzeros): against the pull and the references, gradients of a sparse x's stored values,
gradcheck, second derivatives and opcheck of follow_push on every backend through the public API;
the choice of direction (also under torch.compile); the sparse layouts x may have; dense_frontier
and the frontier checks of the raw ops."""
import pytest
import torch

import cases
import kgqa_kernels as kk
from cases import assert_close, frontier_inputs, leaves, matrix
from kgqa_kernels import layout, reference
from kgqa_kernels.ops.follow_push import choose_direction, frontier


@matrix("kb_name")
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("per_example", [1, 3])
def test_push_equals_pull(backend, device, kb_name, inverse, per_example):
    kb = cases.kb(kb_name, device)
    x, r = frontier_inputs(kb, 6, per_example=per_example)  # example 2 has an empty frontier
    pull = kk.follow(x, r, kb, inverse=inverse, direction="pull", backend=backend)
    for xin in (x, x.to_sparse(), x.to_sparse_csr()):
        push = kk.follow(xin, r, kb, inverse=inverse, direction="push", backend=backend)
        torch.testing.assert_close(push, pull, atol=1e-12, rtol=1e-12)
    if per_example == 1 and kb.weight is None:  # one entity per example: the same summation order
        assert torch.equal(kk.follow(x, r, kb, inverse=inverse, direction="push", backend=backend), pull)


@matrix("kb_name", "dtype")
@pytest.mark.parametrize("inverse", [False, True])
def test_push_forward_and_gradients_match_the_reference(backend, device, kb_name, dtype, inverse):
    kb = cases.kb(kb_name, device)
    x, r = frontier_inputs(kb, 6, dtype, per_example=2)
    xs = x.to_sparse().requires_grad_()  # a sparse x gets gradients for its stored values
    r1 = r.clone().requires_grad_()
    y = kk.follow(xs, r1, kb, inverse=inverse, backend=backend)  # "auto": a sparse x is pushed
    assert y.dtype == dtype
    x64, r64 = leaves((x, r), torch.float64)
    y64 = reference.follow_dense(x64, r64, kb, inverse=inverse)
    assert_close(y, y64, dtype)
    g = torch.rand(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype).to(device)
    dxs, dr = torch.autograd.grad(y, (xs, r1), g)
    edx, edr = torch.autograd.grad(y64, (x64, r64), g.double())
    assert_close(dr, edr, dtype)
    mask = x != 0
    assert_close(dxs.to_dense()[mask], edx[mask], dtype)
    assert (dxs.to_dense()[~mask] == 0).all()
    # A dense x without gradient, and a CSR x, push the same.
    for xin in (x, x.to_sparse_csr()):
        assert_close(kk.follow(xin, r, kb, inverse=inverse, direction="push", backend=backend), y64, dtype)


@matrix(kb_name="split_kb")
@pytest.mark.parametrize("inverse", [False, True])
def test_push_from_hubs_matches_the_reference(backend, device, kb_name, inverse):
    """Frontiers whose facts the GPU push kernels' plan splits over several workers: a hub seed
    alone; every entity at once, so that one target receives hundreds of terms (a sum split over
    workers after the sort by target); nothing; the hub beside a few others. Forward and the
    gradients of the stored values and of r against the reference, and bitwise repeatable."""
    kb = cases.kb(kb_name, device)
    E = kb.num_entities
    hub = 0 if inverse else 1  # cases.hub_kb: object 0 and subject 1 lead several workers' facts
    g = torch.Generator().manual_seed(3)
    x = torch.zeros(4, E, dtype=torch.float64)
    x[0, hub] = 1.5
    x[1] = torch.rand(E, generator=g, dtype=torch.float64) + 0.5
    x[3, [hub, 2, 7, E - 1]] = torch.tensor([0.5, 1.0, 2.0, 0.25], dtype=torch.float64)
    r = torch.rand(4, kb.num_relations, generator=g, dtype=torch.float64)
    x, r = x.to(device), r.to(device)
    xs = x.to_sparse().requires_grad_()
    r1 = r.clone().requires_grad_()
    y = kk.follow(xs, r1, kb, inverse=inverse, backend=backend)
    x64, r64 = leaves((x, r))
    y64 = reference.follow_dense(x64, r64, kb, inverse=inverse)
    assert_close(y, y64)
    grad = torch.rand(y.shape, generator=g, dtype=torch.float64).to(device)
    dxs, dr = torch.autograd.grad(y, (xs, r1), grad)
    edx, edr = torch.autograd.grad(y64, (x64, r64), grad)
    assert_close(dr, edr)
    mask = x != 0
    assert_close(dxs.to_dense()[mask], edx[mask])
    assert torch.equal(kk.follow(x, r, kb, inverse=inverse, direction="push", backend=backend), y.detach())


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_cuda_and_triton_pushes_give_the_same_bits(device):
    """The CUDA and the Triton push run one plan (csrc/cuda/follow_push.cuh, kgqa_kernels/triton/
    follow_push.py): the same terms, sorted the same way, summed in the same chunks and order. On
    the CPU: the emulated CUDA launch and the interpreted Triton one."""
    from conftest import _why_not
    pair = ("emulated", "triton") if device == "cpu" else ("cuda", "triton")
    why = _why_not("cuda", "cuda") if device == "cuda" else _why_not("triton", "cpu")
    if why:
        pytest.skip(why)
    kb = cases.kb("hub", device)
    x, r = frontier_inputs(kb, 4, per_example=3)
    x[1] = torch.rand(kb.num_entities, generator=torch.Generator().manual_seed(5), dtype=x.dtype).to(device)
    xs = x.to_sparse().requires_grad_()
    for inverse in (False, True):
        out = []
        for backend in pair:
            r1 = r.clone().requires_grad_()
            y = kk.follow(xs, r1, kb, inverse=inverse, backend=backend)
            dx, dr = torch.autograd.grad(y, (xs, r1), torch.linspace(0, 1, y.numel(), device=device).view_as(y))
            out.append((y, dx.to_dense(), dr))
        for a, b in zip(*out):
            assert torch.equal(a, b)


@pytest.mark.parametrize("inverse", [False, True])
def test_push_gradcheck_float64(backend, device, backend_cases, inverse):
    kb = cases.kb(backend_cases.gradcheck_kb[0], device)  # a weighted KB
    x, r = frontier_inputs(kb, 4, per_example=3)
    sparse = x.to_sparse()
    indices, vals = sparse.indices(), sparse.values().clone().requires_grad_()
    r.requires_grad_()

    def from_values(v, r):
        x = torch.sparse_coo_tensor(indices, v, sparse.shape, check_invariants=True)
        return kk.follow(x, r, kb, inverse=inverse, backend=backend)

    fast = backend_cases.gradcheck_fast
    assert torch.autograd.gradcheck(from_values, (vals, r), fast_mode=fast)
    # A dense frontier without gradient: the gradient of r alone.
    assert torch.autograd.gradcheck(
        lambda r: kk.follow(x, r, kb, inverse=inverse, direction="push", backend=backend), (r,), fast_mode=fast)


@pytest.mark.parametrize("inverse", [False, True])
def test_push_gradgradcheck_float64(backend, device, backend_cases, inverse):
    """Second derivatives of follow_push in (vals, r), through the raw op: torch's sparse tensors have
    no double backward of their own (a sparse x's values cannot be gradgradchecked through follow,
    on the reference backend either); and of a pushed dense frontier in r, through follow."""
    kb = cases.kb(backend_cases.gradgradcheck_kb, device)
    x, r = frontier_inputs(kb, 4, per_example=2)
    ptr, ids, vals = frontier(x)
    vals, r = vals.clone().requires_grad_(), r.requires_grad_()
    ops, t = cases.ops_for(backend), kb.tensors()
    fast = backend_cases.gradcheck_fast
    assert torch.autograd.gradgradcheck(lambda v, r: ops.follow_push(ptr, ids, v, r.t(), t, inverse), (vals, r),
                                        fast_mode=fast)
    assert torch.autograd.gradgradcheck(
        lambda r: kk.follow(x, r, kb, inverse=inverse, direction="push", backend=backend), (r,), fast_mode=fast)


@pytest.mark.parametrize("inverse", [False, True])
def test_push_gradient_penalty_matches_the_reference(backend, device, inverse):
    kb = cases.kb_for(backend, device, "edge-weighted")
    x, r = frontier_inputs(kb, 4, per_example=2)
    # A dense frontier without gradient (pushed): the penalty on dL/dr reaches r through the output
    # gradient, that is through follow_push_backward's derivative in grad.
    ours = cases.penalised_grads(lambda r: kk.follow(x, r, kb, inverse=inverse, direction="push", backend=backend),
                                 (r,), (0,))
    expected = cases.penalised_grads(lambda r: kk.follow(x, r, kb, inverse=inverse, backend="reference"), (r,), (0,))
    cases.assert_same_grads(ours, expected)
    # A sparse x: the penalty on dL/dr reaches x's stored values (follow_push_backward's derivative in vals).
    mask = x != 0
    sparse = leaves([x.to_sparse()])[0]
    r1 = r.clone().requires_grad_()
    y = kk.follow(sparse, r1, kb, inverse=inverse, backend=backend)
    g = torch.rand(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(device)
    (dr,) = torch.autograd.grad((y * g).sum() + (y * y).sum() / 2, r1, create_graph=True)
    dr.norm().backward()
    expected_x, expected_r = cases.penalised_grads(
        lambda x, r: kk.follow(x, r, kb, inverse=inverse, backend="reference"), (x, r), (1,))
    assert bool(expected_x[mask].abs().sum() > 0)
    torch.testing.assert_close(sparse.grad.to_dense()[mask], expected_x[mask])
    torch.testing.assert_close(r1.grad, expected_r)


def test_kb_tensors_that_require_grad_are_refused(backend, device):
    kb = cases.kb("tiny-weighted", device).tensors()
    kb[layout.SUBJ_WEIGHT] = kb[layout.SUBJ_WEIGHT].detach().clone().requires_grad_()
    ptr, ids, vals = torch.tensor([0, 1], device=device), torch.tensor([2], device=device), torch.ones(1, device=device)
    r = torch.rand(3, 1, device=device)
    with pytest.raises(RuntimeError, match=r"follow_push\(\): .*kb\[SUBJ_WEIGHT\] requires grad"):
        cases.ops_for(backend).follow_push(ptr, ids, vals, r, kb, False)


def test_auto_direction(backend, device):
    kb = cases.kb_for(backend, device, "power-law")
    x, r = frontier_inputs(kb, 8)
    assert choose_direction(x, "auto")[0] == "push"
    assert choose_direction(x.to_sparse(), "auto")[0] == "push"
    assert choose_direction(torch.rand(8, kb.num_entities, device=device), "auto")[0] == "pull"
    assert choose_direction(x.clone().requires_grad_(), "auto")[0] == "pull"
    assert choose_direction(x.t().contiguous().t(), "auto")[0] == "push"  # not row-major: the torch path
    y = kk.follow(x, r, kb, backend=backend)
    assert torch.equal(y, kk.follow(x, r, kb, direction="pull", backend=backend))
    with pytest.raises(ValueError, match="direction must be one of"):
        kk.follow(x, r, kb, direction="sideways", backend=backend)
    with pytest.raises(ValueError, match="needs an x without gradient"):
        kk.follow(x.requires_grad_(), r, kb, direction="push", backend=backend)


def test_push_output_is_a_normal_tensor_when_large(backend, device):
    # Outputs of 1 MiB and more come from lazily zeroed pages; they must behave like any tensor.
    kb = kk.SparseKB([0, 5], [0, 0], [70000, 3], 70001, 1).to(device)
    x = torch.zeros(4, 70001, device=device)
    x[:, 0] = 1.0
    y = kk.follow(x, torch.ones(4, 1, device=device), kb, direction="push", backend=backend)
    assert y.sum().item() == 4.0 and y[:, 70000].tolist() == [1.0] * 4
    y.add_(1)
    assert y.sum().item() == 4.0 + 4 * 70001


def _opcheck_cases(device):
    # opcheck checks registrations, not numerics: a small KB (a few launches of few programs each).
    kb, kb64 = cases.kb("tiny-weighted", device), cases.kb("tiny-int64", device)
    E, R = kb.num_entities, kb.num_relations
    kb, kb64 = kb.tensors(), kb64.tensors()
    ptr, ids = torch.tensor([0, 2, 2, 3], device=device), torch.tensor([0, E - 1, 4], device=device)

    def t(*shape, grad=True):
        return torch.rand(*shape, dtype=torch.float64, device=device, requires_grad=grad)

    vals = t(3)
    yield "follow_push", "follow_push", (ptr, ids, vals, t(R, 3), kb, False)
    yield "follow_push-inverse-int64", "follow_push", (ptr, ids, vals, t(R, 3), kb64, True)
    yield "follow_push_backward", "follow_push_backward", (t(E, 3, grad=False), ptr, ids, vals.detach(),
                                                           t(R, 3, grad=False), kb, False)
    yield "follow_push_backward-grad", "follow_push_backward", (t(E, 3), ptr, ids, t(3), t(R, 3), kb, True)


@pytest.mark.parametrize("case", ["follow_push", "follow_push-inverse-int64", "follow_push_backward",
                                  "follow_push_backward-grad"])
def test_opcheck(backend, device, case):
    name, args = next((op, args) for c, op, args in _opcheck_cases(device) if c == case)
    cases.opcheck(getattr(cases.ops_for(backend), name), args)


def test_auto_direction_under_torch_compile_fullgraph():
    """Eagerly "auto" pushes this x (few nonzeros), a decision on its values; compiled, "auto" pulls,
    so fullgraph=True traces without a data-dependent branch, and the result is the same."""
    kb = cases.kb("power-law")
    x, r = frontier_inputs(kb, 6)
    assert choose_direction(x, "auto")[0] == "push"

    def two_hops(x, r):
        return kk.follow(kk.follow(x, r, kb, backend="cpu"), r, kb, inverse=True, backend="cpu")

    compiled = torch.compile(two_hops, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x, r), two_hops(x, r))
    torch.testing.assert_close(compiled(x * 2, r), two_hops(x * 2, r))
    # Asked for, the push compiles too (the frontier's size is a dynamic size of the graph).
    pushed = torch.compile(lambda x, r: kk.follow(x, r, kb, direction="push", backend="cpu"), backend="aot_eager",
                           fullgraph=True)
    torch.testing.assert_close(pushed(x, r), kk.follow(x, r, kb, direction="pull", backend="cpu"))


# ---- sparse x: the layouts follow takes ------------------------------------------------------------

def _coo(indices, shape, n=None):
    """A COO tensor built without torch's invariant checks (as a user can build one)."""
    idx = torch.tensor(indices)
    return torch.sparse_coo_tensor(idx, torch.ones(idx.shape[1], dtype=torch.float64), shape, check_invariants=False)


def _csr(crow, col, shape):
    return torch.sparse_csr_tensor(torch.tensor(crow), torch.tensor(col), torch.ones(len(col), dtype=torch.float64),
                                   shape, check_invariants=False)


B_, E_ = 3, 20  # the edge-case KB's entities


BAD_SPARSE_X = [  # (x, what the error says)
    (lambda x: x.to_sparse_csc(), "x has layout torch.sparse_csc; x must be a dense tensor, a sparse COO"),
    (lambda x: x.to_sparse_bsr((1, 1)), "x has layout torch.sparse_bsr"),
    (lambda x: x.to_sparse_bsc((1, 1)), "x has layout torch.sparse_bsc"),
    (lambda x: x.to_sparse(1), r"x is a hybrid sparse COO tensor \(1 sparse and 1 dense dimensions\)"),
    (lambda x: _coo([[0, B_], [1, 2]], (B_, E_)), rf"x is a sparse COO tensor with row index {B_} out of range: row "
                                                  rf"indices must be in \[0, B={B_}\)"),
    (lambda x: _coo([[0, -1], [1, 2]], (B_, E_)), "row index -1 out of range"),
    (lambda x: _coo([[0, 1], [1, E_]], (B_, E_)), rf"column index {E_} out of range: column indices must be in "
                                                  rf"\[0, num_entities={E_}\)"),
    (lambda x: _csr([0, 1, 1, 2], [3, E_ + 5], (B_, E_)), f"x is a sparse CSR tensor with column index {E_ + 5} out"),
    (lambda x: _csr([0, 2, 1, 2], [3, 4], (B_, E_)), "invalid crow_indices: .* without decreasing"),
    (lambda x: _csr([1, 1, 2, 2], [3, 4], (B_, E_)), "invalid crow_indices: they must run from 0 to nnz=2"),
]


@pytest.mark.parametrize("make, match", BAD_SPARSE_X)
@pytest.mark.parametrize("direction", ["auto", "pull", "push"])
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_sparse_x_of_other_layouts_or_bad_indices_is_refused(make, match, direction, backend):
    kb = cases.kb("edge")
    x, r = frontier_inputs(kb, B_)
    with pytest.raises(ValueError, match=match):
        kk.follow(make(x), r, kb, direction=direction, backend=backend)


def test_sparse_x_accepted_layouts_with_unsorted_and_duplicate_indices():
    """A valid COO x needs neither coalescing nor sorted indices; a CSR x may list columns unsorted."""
    kb = cases.kb("edge")
    r = torch.rand(B_, kb.num_relations, dtype=torch.float64)
    coo = _coo([[2, 0, 2, 0], [3, 19, 0, 19]], (B_, E_))  # (0, 19) twice: summed, as coalesce does
    csr = _csr([0, 1, 1, 3], [19, 4, 0], (B_, E_))
    for x in (coo, csr):
        torch.testing.assert_close(kk.follow(x, r, kb), reference.follow_dense(x.to_dense(), r, kb))


# ---- frontiers ------------------------------------------------------------------------------------

def test_frontier_of_each_layout_is_sorted_within_each_example():
    x = torch.zeros(3, 9, dtype=torch.float64)
    x[0, 8], x[0, 2], x[2, 5] = 1.0, 2.0, 3.0
    for xin in (x, x.to_sparse(), x.to_sparse_csr(), x.t().contiguous().t()):
        ptr, ids, vals = frontier(xin)
        assert ptr.tolist() == [0, 2, 2, 3] and ids.tolist() == [2, 8, 5] and vals.tolist() == [2.0, 1.0, 3.0]


def test_dense_frontier_finds_every_nonzero_and_gives_up_when_dense():
    x = torch.zeros(3, 10000)
    x[0, 0], x[0, 9999], x[2, 4096], x[2, 17] = 1.0, float("nan"), -2.0, -0.0
    ptr, ids, vals = torch.ops.kgqa_kernels.dense_frontier(x, 100)
    assert ptr.tolist() == [0, 2, 2, 3]
    assert ids.tolist() == [0, 9999, 4096]
    assert vals[0] == 1 and torch.isnan(vals[1]) and vals[2] == -2
    ptr, ids, vals = torch.ops.kgqa_kernels.dense_frontier(torch.rand(3, 10000), 100)
    assert ptr.numel() == 0


def test_opcheck_dense_frontier():
    x = torch.zeros(3, 50)
    x[0, 3], x[2, 7] = 1.0, 2.0
    cases.opcheck(torch.ops.kgqa_kernels.dense_frontier, (x, 10))


# The C++ ops range-check a frontier on the CPU: the cpu and emulated backends. On a GPU (cuda, and
# Triton) that would read device memory, a synchronisation per call, so there only follow() builds
# frontiers, from x.
@pytest.mark.parametrize("namespace", ["kgqa_kernels", "kgqa_kernels_emu"])
def test_bad_frontier_raises(namespace):
    ops = getattr(torch.ops, namespace)
    kb = cases.kb("edge")
    r = torch.rand(kb.num_relations, 2, dtype=torch.float64)
    ptr = torch.tensor([0, 1, 2])
    with pytest.raises(RuntimeError, match=r"ids\[1\] = 20 is not an entity id"):
        ops.follow_push(ptr, torch.tensor([0, 20]), torch.ones(2, dtype=torch.float64), r, kb.tensors(), False)
    with pytest.raises(RuntimeError, match="ptr must run from 0"):
        ops.follow_push(torch.tensor([0, 1, 3]), torch.tensor([0, 1]), torch.ones(2, dtype=torch.float64), r, kb.tensors(), False)
