"""The GPU kernels' work plan (csrc/work_plan.h) through kgqa_kernels.launch_plan: no worker reads
more than PLAN_ITEMS facts whatever the skew, every fact is read once per batch lane group, and
every row split over workers is completed by exactly one fixup. The counts are checked against a
plain-Python merge path written from the header's definition. (The kernels' results on split rows
are checked against the reference by the op tests, on the "hub" KB.)"""
import pytest
import torch

import cases
import kgqa_kernels as kk
from conftest import INTERPRETED
from kgqa_kernels import layout

C = layout.PLAN_ITEMS


def merge_path(ptr):
    """[(row, first fact, end fact, ends here)] per worker, from the definition: a pull visits row
    r's facts, then row r's end; worker w owns items [w*C, (w+1)*C)."""
    items = []
    for r in range(len(ptr) - 1):
        items += [("fact", r)] * (ptr[r + 1] - ptr[r]) + [("end", r)]
    return [items[i:i + C] for i in range(0, len(items), C)]


def expected_counts(ptr):
    """(facts per worker, partials per worker added by the fixup)."""
    workers = merge_path(ptr)
    facts = [sum(kind == "fact" for kind, _ in w) for w in workers]
    fixup = [0] * len(workers)
    first_of_row = {}
    for w, items in enumerate(workers):
        for _, r in items:
            first_of_row.setdefault(r, w)
        # The worker holding a row's end completes it when the row began in an earlier worker.
        for kind, r in items:
            if kind == "end" and first_of_row[r] < w:
                fixup[w] = w - first_of_row[r] + 1
    return facts, fixup


def per_worker(plan, workers):
    """Work per worker from a CUDA plan's per-warp counts: each worker is the batch lanes of one
    block row (block.x threads, block.x / 32 warps), repeated over grid.y batch tiles."""
    bx, by, _ = plan.block
    warps = bx // 32
    w = plan.work.view(plan.grid[1], plan.grid[0] * by, warps)
    f = plan.fixup.view(plan.grid[1], plan.grid[0] * by, warps)
    # With every lane busy (a batch filling the tiles), each warp of a worker reads the same facts.
    assert plan.batch == bx * plan.grid[1] and torch.equal(w[:1, :, :1].expand_as(w), w)
    return w[0, :workers, 0].tolist(), f[0, :workers, 0].tolist()


@pytest.mark.parametrize("kb_name", ["hub", "power-law", "edge", "chunked"])
@pytest.mark.parametrize("inverse", [False, True])
def test_cuda_plan_counts_match_the_merge_path(kb_name, inverse):
    kb = cases.kb(kb_name)
    ptr = kb.tensors()[layout.pull_slots(inverse)[0]].tolist()
    facts, fixup = expected_counts(ptr)
    plan = kk.launch_plan(kb, 64, inverse=inverse)
    assert per_worker(plan, len(facts)) == (facts, fixup)
    assert int(plan.work.max()) <= C
    assert int(plan.work.sum()) == kb.num_facts * (plan.block[0] // 32) * plan.grid[1]


@pytest.mark.parametrize("B", [1, 33, 300])
def test_cuda_plan_covers_every_batch_column(B):
    kb = cases.kb("hub")
    plan = kk.launch_plan(kb, B)
    lanes = plan.block[0] * plan.grid[1]
    assert lanes >= B and plan.grid[0] * plan.block[1] >= len(merge_path(kb.tensors()[layout.OBJ_PTR].tolist()))
    # Warps past the batch read nothing; the others read each fact once per warp.
    warps_with_columns = -(-B // 32)
    assert int(plan.work.sum()) == kb.num_facts * warps_with_columns


def test_a_hub_row_is_spread_over_workers():
    """The hub KB's largest row holds over 3 * PLAN_ITEMS facts; one row per warp would give that
    warp all of them."""
    kb = cases.kb("hub")
    ptr = kb.tensors()[layout.OBJ_PTR]
    assert int((ptr[1:] - ptr[:-1]).max()) > 3 * C
    plan = kk.launch_plan(kb, 64, op="follow_intersect")
    assert int(plan.work.max()) <= C and int(plan.fixup.max()) >= 4


def test_dx_is_planned_in_the_other_direction():
    kb = cases.kb("hub")
    dx = kk.launch_plan(kb, 16, op="follow_backward_x")
    assert torch.equal(dx.work, kk.launch_plan(kb, 16, inverse=True).work)


@pytest.mark.skipif(not INTERPRETED and not torch.cuda.is_available(),
                    reason="Triton runs here only under its interpreter (tests/conftest.py sets it without a GPU)")
@pytest.mark.parametrize("inverse", [False, True])
def test_triton_plan_has_the_same_workers(inverse):
    kb = cases.kb("hub")
    triton_plan = kk.launch_plan(kb, 16, backend="triton", inverse=inverse)
    facts, fixup = expected_counts(kb.tensors()[layout.pull_slots(inverse)[0]].tolist())
    tiles = triton_plan.grid[1] if len(triton_plan.grid) > 1 else 1
    assert int(triton_plan.work.sum()) == kb.num_facts * tiles
    assert sorted(triton_plan.work.tolist()) == sorted(facts * tiles)
    assert sorted(triton_plan.fixup.tolist()) == sorted(fixup * tiles)


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch=0), "batch must be a positive int"),
    (dict(batch=4, op="intersect"), "op must be one of"),
    (dict(batch=4, backend="cpu"), "backend must be one of"),
    (dict(batch=4, inverse="yes"), "inverse must be a bool"),
])
def test_bad_arguments_are_named(kwargs, message):
    kb = cases.kb("tiny")
    batch = kwargs.pop("batch")
    with pytest.raises((ValueError, TypeError), match=message):
        kk.launch_plan(kb, batch, **kwargs)
