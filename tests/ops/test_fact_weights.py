"""Fact weights that train: follow's gradient of the KB's per-fact weights (follow_backward_w) on
every backend through the public API, against the reference backend (autograd through torch.sparse)
and float64 gradcheck; SparseKB(..., weight=w) and kb.with_weight(w) over several optimizer steps;
the raw op's opcheck and its agreement across the CPU's two ISAs; and the clear errors where fact
weights cannot train (push, follow_intersect, second order)."""
import pytest
import torch

import cases
import kgqa_kernels as kk
from cases import inputs, matrix
from kgqa_kernels import layout


def _facts(kb_name):
    """(subj, rel, obj, E, R) of a registry KB as given to its constructor: the edge-case KB's list
    has duplicate facts, which merge (their weights add up)."""
    if kb_name == "edge":
        g = torch.Generator().manual_seed(0)
        s = [0, 19, 0, 3, 3, 3, 11, 2, 2, 4, 4, 0, 19]
        p = [0, 1, 2, 0, 0, 0, 1, 2, 2, 3, 0, 0, 3]
        o = [19, 0, 0, 1, 2, 19, 3, 2, 2, 4, 4, 19, 19]
        extra = cases.random_facts(20, 4, 30, seed=3)
        s, p, o = (torch.cat([torch.tensor(a), b]) for a, b in zip((s, p, o), extra))
        return s, p, o, 20, 5
    s, p, o = cases.random_facts(12, 3, 40, seed=5)
    return s, p, o, 12, 3


def _trainable(kb_name, device, dtype=torch.float64, seed=2):
    s, p, o, E, R = _facts(kb_name)
    w = (torch.rand(s.numel(), generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.5)
    w = w.to(dtype).to(device).requires_grad_()
    return kk.SparseKB(s.to(device), p.to(device), o.to(device), E, R, weight=w), w


def _grads(backend, kb, w, x, r, inverse, g):
    y = kk.follow(x, r, kb, inverse=inverse, backend=backend)
    return torch.autograd.grad(y, (x, r, w), g)


@pytest.mark.parametrize("kb_name", ["edge", "random"])
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("B", [1, 7])
def test_fact_weight_gradients_match_the_reference(backend, device, kb_name, inverse, B):
    kb, w = _trainable(kb_name, device)
    x, r = inputs(kb, B, requires_grad=True)
    g = torch.rand(B, kb.num_entities, generator=torch.Generator().manual_seed(4), dtype=torch.float64).to(device)
    ours = _grads(backend, kb, w, x, r, inverse, g)
    expected = _grads("reference", kb, w, x, r, inverse, g)
    for name, a, e in zip(("x", "r", "weight"), ours, expected):
        torch.testing.assert_close(a, e, msg=lambda m: f"{name}: {m}")
    assert ours[2].shape == (kb.num_input_facts,)


@matrix("dtype")
def test_fact_weight_gradients_in_every_dtype(backend, device, dtype):
    """16-bit inputs accumulate in float32; the weight's gradient is the dtype of x."""
    kb, w = _trainable("random", device)
    x, r = inputs(kb, 5, dtype=dtype, requires_grad=True)
    (dw,) = torch.autograd.grad(kk.follow(x, r, kb, backend=backend).float().sum(), (w,))
    x64, r64 = x.detach().double(), r.detach().double()
    (expected,) = torch.autograd.grad(kk.follow(x64, r64, kb, backend="reference").sum(), (w,))
    cases.assert_close(dw, expected, dtype=dtype, atol_factor=10)


@pytest.mark.parametrize("inverse", [False, True])
def test_gradcheck_float64_through_the_fact_weights(backend, device, backend_cases, inverse):
    """The KB stores weights in float32, so the function of w is linear in w rounded to float32:
    central differences with eps 1e-2 are exact up to that rounding (about 3e-6 relative)."""
    base = cases.kb_for(backend, device, "edge-weighted")
    x, r = inputs(base, 3, requires_grad=True)
    w = (torch.rand(base.num_input_facts, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
         + 0.5).to(device).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, r, w: kk.follow(x, r, base.with_weight(w), inverse=inverse, backend=backend), (x, r, w),
        eps=1e-2, atol=1e-5, rtol=1e-3, fast_mode=backend_cases.gradcheck_fast)


def test_a_kb_built_with_a_trainable_weight_trains_over_several_steps(backend, device):
    """The optimizer's in-place steps are seen, and each step's backward reaches the weight (the KB
    keeps no graph between calls)."""
    kb, w = _trainable("edge", device, dtype=torch.float32)
    w0 = w.detach().clone()
    w_ref = w.detach().clone().requires_grad_()
    kb_ref = kb.with_weight(w_ref)
    x, r = inputs(kb, 4, dtype=torch.float32)
    target = torch.rand(4, kb.num_entities, generator=torch.Generator().manual_seed(9)).to(device)
    opts = [torch.optim.SGD([w], lr=0.1), torch.optim.SGD([w_ref], lr=0.1)]
    for _ in range(3):
        for opt, k, b in zip(opts, (kb, kb_ref), (backend, "reference")):
            opt.zero_grad()
            loss = ((kk.follow(x, r, k, backend=b) - target) ** 2).sum()
            loss.backward()
            opt.step()
        torch.testing.assert_close(w.grad, w_ref.grad)
        torch.testing.assert_close(w, w_ref)
    assert not torch.equal(w.detach(), w0)


def test_auto_pulls_a_sparse_x_when_the_weights_train(backend, device):
    kb, w = _trainable("random", device)
    x, r = inputs(kb, 3)
    xs = (x * (x > 0.8)).to_sparse()
    (dw,) = torch.autograd.grad(kk.follow(xs, r, kb, backend=backend).sum(), (w,))
    (expected,) = torch.autograd.grad(kk.follow(xs.to_dense(), r, kb, backend="reference").sum(), (w,))
    torch.testing.assert_close(dw, expected)
    with pytest.raises(ValueError, match="direction='push' cannot train the KB's fact weights"):
        kk.follow(xs, r, kb, direction="push", backend=backend)
    with torch.no_grad():  # nothing to train: the push is allowed
        torch.testing.assert_close(kk.follow(xs, r, kb, direction="push", backend=backend),
                                   kk.follow(xs.to_dense(), r, kb, backend="reference"))


def test_ops_that_cannot_train_fact_weights_say_so(backend, device):
    kb, w = _trainable("random", device)
    (xs, rs) = inputs(kb, 2, k=2)
    with pytest.raises(RuntimeError, match=r"kb\[SUBJ_WEIGHT\] requires grad: only follow\(\) trains fact weights"):
        kk.follow_intersect(xs, rs, kb, backend=backend)
    x, r = inputs(kb, 2, requires_grad=True)
    y = kk.follow(x, r, kb, backend=backend)
    (dr,) = torch.autograd.grad(y.sum(), (r,), create_graph=True)
    with pytest.raises(RuntimeError, match="second-order gradients"):
        torch.autograd.grad(dr.sum(), (w,))


def test_the_weights_gradient_is_the_same_every_run(backend, device):
    kb, w = _trainable("edge", device, dtype=torch.float32)
    x, r = inputs(kb, 9, dtype=torch.float32)
    runs = [torch.autograd.grad(kk.follow(x, r, kb, backend=backend).sum(), (w,))[0] for _ in range(3)]
    assert all(torch.equal(runs[0], d) for d in runs[1:])


# ---- the raw op -----------------------------------------------------------------------------------

def test_opcheck_follow_backward_w(backend, device):
    kb = cases.kb("tiny-weighted", device)
    E, R, B = kb.num_entities, kb.num_relations, 3
    t = lambda rows: torch.rand(rows, B, dtype=torch.float64, device=device)  # noqa: E731
    for inverse in (False, True):
        cases.opcheck(cases.ops_for(backend).follow_backward_w, (t(E), t(R), t(E), kb.tensors(), inverse))


def test_follow_backward_w_is_in_the_subject_order_and_takes_an_empty_batch(backend, device):
    kb = cases.kb("edge-weighted", device)
    ops = cases.ops_for(backend)
    x, r, g = (torch.rand(n, 2, dtype=torch.float64, device=device)
               for n in (kb.num_entities, kb.num_relations, kb.num_entities))
    dw = ops.follow_backward_w(x, r, g, kb.tensors(), False)
    s, p, o = kb.subj.to(device), kb.rel.to(device), kb.obj.to(device)  # the canonical (subject) order
    torch.testing.assert_close(dw, (x[s] * r[p] * g[o]).sum(1))
    torch.testing.assert_close(ops.follow_backward_w(x, r, g, kb.tensors(), True), (g[s] * r[p] * x[o]).sum(1))
    empty = ops.follow_backward_w(x[:, :0], r[:, :0], g[:, :0], kb.tensors(), False)
    assert empty.shape == (kb.num_facts,) and not empty.any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_avx2_and_baseline_cpu_loops_give_the_same_fact_weight_gradient(monkeypatch, dtype):
    kb = cases.kb("hub")
    B = 37  # full blocks of the dot product's lanes and a tail
    x, r, g = (torch.rand(n, B, generator=torch.Generator().manual_seed(n)).to(dtype)
               for n in (kb.num_entities, kb.num_relations, kb.num_entities + 1))
    g = g[:-1]
    cases.assert_isas_agree(monkeypatch, lambda: [torch.ops.kgqa_kernels.follow_backward_w(x, r, g, kb.tensors(), inv)
                                                   for inv in (False, True)])


def test_the_emulated_cuda_kernel_sums_in_the_cpus_order():
    """FactDotKernel (csrc/cuda/follow.cuh) and dw_into (csrc/cpu/follow_kernels.h) add the same terms
    in the same order: the same bits."""
    kb = cases.kb("hub")
    B = 37
    x, r, g = (torch.rand(n, B, generator=torch.Generator().manual_seed(n))
               for n in (kb.num_entities, kb.num_relations, kb.num_entities + 1))
    g = g[:-1]
    for inverse in (False, True):
        cpu = torch.ops.kgqa_kernels.follow_backward_w(x, r, g, kb.tensors(), inverse)
        emulated = torch.ops.kgqa_kernels_emu.follow_backward_w(x, r, g, kb.tensors(), inverse)
        assert torch.equal(cpu, emulated)
