"""transpose_copy (csrc/transpose.h, kgqa_kernels/ops/transpose.py): the copy between a user's
row-major [B, E] tensors and the kernels' batch-innermost [E, B], against torch's own transpose;
its gradients and registration; and follow handing a row-major x a row-major gradient."""
import pytest
import torch

import cases
import kgqa_kernels as kk
from cases import leaves
from kgqa_kernels import reference, synthetic
from kgqa_kernels.ops.transpose import batch_innermost, is_transposed_row_major

transpose_copy = torch.ops.kgqa_kernels.transpose_copy


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(1, 1), (3, 130), (64, 1000), (129, 65), (0, 5), (5, 0)])
def test_transpose_copy_is_the_contiguous_transpose(dtype, shape):
    # Sizes below, at and across the 64-element tiles, and empty ones.
    src = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    out = transpose_copy(src)
    assert out.shape == (shape[1], shape[0]) and out.is_contiguous() and torch.equal(out, src.t())
    strided = torch.randn(shape[0], 2 * shape[1]).to(dtype)[:, ::2]  # not contiguous: copied first
    assert torch.equal(transpose_copy(strided), strided.t())


def test_transpose_copy_gradients_and_registration():
    src = torch.rand(5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(transpose_copy, (src,))
    assert torch.autograd.gradgradcheck(transpose_copy, (src,))
    cases.opcheck(transpose_copy, (src,))
    with pytest.raises(RuntimeError, match="src must be 2-D"):
        transpose_copy(torch.rand(3))


def test_layout_helpers_keep_values_and_pick_the_layout():
    rm = torch.rand(4, 9)  # a user's row-major [B, E]
    t = rm.t()  # what an op receives
    assert is_transposed_row_major(t) and batch_innermost(t).is_contiguous() and torch.equal(batch_innermost(t), t)
    other = torch.rand(9, 4)  # already batch innermost: left as it is
    assert not is_transposed_row_major(other) and batch_innermost(other) is other


@pytest.mark.parametrize("batch", [0, 1, 5, 130])  # 130: across the CPU kernel's 128-column tiles
@pytest.mark.parametrize("inverse", [False, True])
def test_follow_row_major_output_is_the_same_values_transposed(backend, device, batch, inverse):
    # The raw op's row_major: the result is the transpose of a contiguous [B, E] tensor, bit for
    # bit the values of the contiguous result.
    ops = cases.ops_for(backend)
    kb = cases.kb_for(backend, device, "random-weighted")
    x = torch.rand(kb.num_entities, batch, device=device)
    r = torch.rand(kb.num_relations, batch, device=device)
    want = ops.follow(x, r, kb.tensors(), inverse)
    got = ops.follow(x, r, kb.tensors(), inverse, True)
    assert want.is_contiguous() and got.shape == want.shape
    assert got.t().is_contiguous()
    assert torch.equal(got, want)


def test_row_major_x_gets_a_row_major_gradient(backend, device):
    kb = cases.kb_for(backend, device, "random-weighted")
    x = torch.rand(5, kb.num_entities, dtype=torch.float64, device=device).requires_grad_()
    r = torch.rand(5, kb.num_relations, dtype=torch.float64, device=device).requires_grad_()
    y = kk.follow(x, r, kb, direction="pull", backend=backend)
    g = torch.rand(y.shape, dtype=torch.float64, device=device)  # materialised, row-major
    y.backward(g)
    assert x.grad.is_contiguous()  # autograd kept it: nothing copied into x's layout
    x64, r64 = leaves((x, r))
    reference.follow_dense(x64, r64, kb).backward(g)
    torch.testing.assert_close(x.grad, x64.grad)
    torch.testing.assert_close(r.grad, r64.grad)


def test_large_cpu_buffers_come_on_huge_pages(monkeypatch):
    # csrc/huge_pages.h: a CPU buffer of 4 MiB or more that a kernel returns starts on a 2 MiB
    # boundary (the huge-page allocator), unless KGQA_HUGE_PAGES=0; the values never change.
    kb = synthetic.power_law_kb(20_000, 5, 60_000)
    x = torch.rand(64, kb.num_entities)  # a row-major x: 5 MB
    r = torch.rand(64, kb.num_relations)
    huge = 2 << 20
    out = transpose_copy(x)
    y = kk.follow(x, r, kb, direction="pull")
    assert out.data_ptr() % huge == 0 and y.data_ptr() % huge == 0
    assert torch.equal(out, x.t())
    monkeypatch.setenv("KGQA_HUGE_PAGES", "0")
    assert torch.equal(transpose_copy(x), out) and torch.equal(kk.follow(x, r, kb, direction="pull"), y)
    y.resize_(3, 4)  # a huge-page tensor's storage stays resizable like any other
    assert y.shape == (3, 4)
