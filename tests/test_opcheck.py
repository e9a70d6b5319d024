"""torch.library.opcheck on every op: schema, autograd registration, fake kernels, and
AOT dispatch with dynamic shapes."""
import pytest
import torch

from kbgen import edge_case_kb

ops = torch.ops.kgqa_kernels


def _cases():
    kb = edge_case_kb(weighted=True).tensors()
    kb64 = edge_case_kb(index_dtype=torch.int64).tensors()
    E, R, B = 20, 5, 3

    def ent(grad=True):
        return torch.rand(E, B, dtype=torch.float64, requires_grad=grad)

    def rel(grad=True):
        return torch.rand(R, B, dtype=torch.float64, requires_grad=grad)

    xs = [torch.rand(B, 7, requires_grad=True) for _ in range(3)]
    col_major = [torch.rand(7, B).t().requires_grad_() for _ in range(2)]
    yield "follow", ops.follow, (ent(), rel(), kb, False)
    yield "follow-inverse-int64", ops.follow, (ent(), rel(), kb64, True)
    yield "follow-no-grad", ops.follow, (ent(False), rel(False), kb, False)
    yield "follow_backward_r", ops.follow_backward_r, (ent(False), ent(False), kb, True)
    yield "intersect-min", ops.intersect, (xs, "min")
    yield "intersect-product-col-major", ops.intersect, (col_major, "product")
    yield "union-max", ops.union, (xs, "max")
    yield "union-product", ops.union, (xs[:2], "product")
    plain = [x.detach() for x in xs]
    out = torch.stack(plain).amin(0)  # a real output, or no input would match it and all would be NaN
    yield "intersect_backward", ops.intersect_backward, (torch.rand(B, 7), plain, out, "min")
    yield "union_backward", ops.union_backward, (torch.rand(B, 7), plain, 1 - (1 - torch.stack(plain)).prod(0), "product")
    yield "follow_intersect-min", ops.follow_intersect, ([ent(), ent()], [rel(), rel()], kb, False, "min", False)
    yield "follow_intersect-min-ties", ops.follow_intersect, ([ent(), ent()], [rel(), rel()], kb, False, "min", True)
    yield "follow_intersect-product", ops.follow_intersect, ([ent(), ent(), ent()], [rel(), rel(), rel()], kb, True, "product", False)
    ties = torch.randint(1, 4, (E, B), dtype=torch.uint8)  # 0 (no tie: a NaN output) gives NaN
    for part in ("x", "r"):
        name = f"follow_intersect_backward_{part}"
        yield name, getattr(ops, name), (ent(False), ties, [ent(False)] * 2, [rel(False)] * 2, kb, True)
    ptr, ids = torch.tensor([0, 2, 2, 3]), torch.tensor([0, 19, 4])
    vals = torch.rand(3, dtype=torch.float64, requires_grad=True)
    yield "follow_push", ops.follow_push, (ptr, ids, vals, rel(), kb, False)
    yield "follow_push-inverse-int64", ops.follow_push, (ptr, ids, vals, rel(), kb64, True)
    yield "follow_push_backward", ops.follow_push_backward, (ent(False), ptr, ids, vals.detach(), rel(False), kb, False)
    frontier_x = torch.zeros(3, 50)
    frontier_x[0, 3], frontier_x[2, 7] = 1.0, 2.0
    yield "dense_frontier", ops.dense_frontier, (frontier_x, 10)
    yield "follow_intersect_backward", ops.follow_intersect_backward, (ent(False), [ent(False)] * 2, [rel(False)] * 2, kb, False, "min")


CASES = list(_cases())


@pytest.mark.parametrize("name, op, args", CASES, ids=[c[0] for c in CASES])
def test_opcheck(name, op, args):
    result = torch.library.opcheck(op, args)
    assert all(v == "SUCCESS" for v in result.values()), result
