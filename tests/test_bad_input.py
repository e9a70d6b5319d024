"""Bad input to follow gets a Python exception naming the argument; the raw ops refuse what would
otherwise read out of bounds."""
import pytest
import torch

import kgqa_kernels as kk
from kbgen import random_kb

E, R = 40, 6


@pytest.fixture
def kb():
    return random_kb(E, R)


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


def test_follow_rejects_a_kb_that_is_not_a_sparse_kb():
    with pytest.raises(TypeError, match="kb must be a kgqa_kernels.SparseKB"):
        kk.follow(torch.rand(2, E), torch.rand(2, R), [torch.zeros(3)])


def test_cpu_backend_refuses_other_devices(kb):
    with pytest.raises(ValueError, match="backend='cpu' cannot run on meta"):
        kk.intersect(torch.rand(3, device="meta"), torch.rand(3, device="meta"), backend="cpu")


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda kb: torch.ops.kgqa_kernels.follow(torch.rand(E + 1, 2), torch.rand(R, 2), kb.tensors(), False), r"x must be \[40, B\]"),
        (lambda kb: torch.ops.kgqa_kernels.follow(torch.rand(E, 2), torch.rand(R, 3), kb.tensors(), False), "x and r must have the same batch size"),
        (lambda kb: torch.ops.kgqa_kernels.follow(torch.rand(E, 2), torch.rand(R, 2), kb.tensors()[:5], False), "kb must be the 14 tensors"),
        (lambda kb: torch.ops.kgqa_kernels.follow(torch.rand(E, 2), torch.rand(R, 2).double(), kb.tensors(), False), "one dtype"),
        (lambda kb: torch.ops.kgqa_kernels.follow_backward_r(torch.rand(E, 2), torch.rand(E, 3), kb.tensors(), False), "x and grad must have the same batch size"),
        (lambda kb: torch.ops.kgqa_kernels.intersect([torch.rand(3)], "min"), "at least 2"),
        (lambda kb: torch.ops.kgqa_kernels.intersect([torch.rand(3), torch.rand(3)], "max"), "tnorm must be 'min' or 'product'"),
        (lambda kb: torch.ops.kgqa_kernels.union([torch.rand(3), torch.rand(4)], "max"), "must have shape"),
        (lambda kb: torch.ops.kgqa_kernels.follow_intersect([torch.rand(E, 2)] * 2, [torch.rand(R, 2)], kb.tensors(), False, "min", False), "one tensor per branch"),
        (lambda kb: torch.ops.kgqa_kernels.follow_intersect([torch.rand(E, 2), torch.rand(E, 3)], [torch.rand(R, 2)] * 2, kb.tensors(), False, "min", False), "branch 1"),
    ],
)
def test_raw_ops_check_shapes(kb, call, match):
    with pytest.raises(RuntimeError, match=match):
        call(kb)


def test_tie_masks_need_min_and_few_branches(kb):
    xs, rs = [torch.rand(E, 2)] * 9, [torch.rand(R, 2)] * 9
    with pytest.raises(RuntimeError, match="save_ties needs tnorm 'min' and at most 8 branches"):
        torch.ops.kgqa_kernels.follow_intersect(xs, rs, kb.tensors(), False, "min", True)
    with pytest.raises(RuntimeError, match="save_ties needs tnorm 'min'"):
        torch.ops.kgqa_kernels.follow_intersect(xs[:2], rs[:2], kb.tensors(), False, "product", True)


@pytest.mark.parametrize("part", ["x", "r"])
def test_tie_mask_backwards_check_the_mask(kb, part):
    op = getattr(torch.ops.kgqa_kernels, f"follow_intersect_backward_{part}")
    xs, rs, g = [torch.rand(E, 2)] * 2, [torch.rand(R, 2)] * 2, torch.rand(E, 2)
    for ties in (torch.ones(E, 2), torch.ones(E, 3, dtype=torch.uint8), torch.ones(2, E, dtype=torch.uint8).t()):
        with pytest.raises(RuntimeError, match="ties must be a contiguous uint8 tensor shaped like grad"):
            op(g, ties, xs, rs, kb.tensors(), False)
    with pytest.raises(RuntimeError, match="a tie mask holds at most 8 branches"):
        op(g, torch.ones(E, 2, dtype=torch.uint8), xs * 5, rs * 5, kb.tensors(), False)
    with pytest.raises(RuntimeError, match="grad must be"):
        op(torch.rand(E, 3), torch.ones(E, 3, dtype=torch.uint8), xs, rs, kb.tensors(), False)
