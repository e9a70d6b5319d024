"""The GPU kernels' work plan (csrc/work_plan.h) through kgqa_kernels.launch_plan: no worker reads
more than PLAN_ITEMS facts whatever the skew, every fact is read once per batch lane group, and
every row split over workers is completed by exactly one fixup. The counts are checked against a
plain-Python merge path written from the header's definition. (The kernels' results on split rows
are checked against the reference by the op tests, on the "hub" KB.)"""
import pytest
import torch

import cases
import kgqa_kernels as kk
from cases import assert_close
from conftest import INTERPRETED
from kgqa_kernels import layout, reference

C = layout.PLAN_ITEMS


def merge_path(ptr):
    """[(row, first fact, end fact, ends here)] per worker, from the definition: a pull visits row
    r's facts, then row r's end; worker w owns items [w*C, (w+1)*C)."""
    items = []
    for r in range(len(ptr) - 1):
        items += [("fact", r)] * (ptr[r + 1] - ptr[r]) + [("end", r)]
    return [items[i:i + C] for i in range(0, len(items), C)]


def row_facts(ptr):
    """Per worker, the facts it reads in each row it visits, in row order (a row of which it holds
    only the end: 0)."""
    out = []
    for items in merge_path(ptr):
        per_row = {}
        for kind, r in items:
            per_row[r] = per_row.get(r, 0) + (kind == "fact")
        out.append(list(per_row.values()))
    return out


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


@pytest.mark.parametrize("kb_name", ["hub", "power-law"])
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("B, lanes", [(1, 1), (3, 4), (8, 8), (16, 16), (31, 32)])
def test_narrow_batches_pack_workers_into_warps(kb_name, inverse, B, lanes, monkeypatch):
    """Packed as far as it goes (KGQA_PULL_WORKERS_PER_WARP=32; the launch's own rule packs only
    KBs far larger than these), a worker has Bp lanes (the next power of two >= B), so a warp holds
    32 / Bp workers, consecutive ones (threads are numbered x-fastest). A warp's work is its row loop in
    lockstep: the sum over row-loop iterations j of the largest j-th row among its workers (lanes
    reconverge after each row); its fixup, the most partials any of its workers adds. work.sum()
    is then the fact steps of all the launch's warps: from facts / (32 / Bp) to facts."""
    monkeypatch.setenv("KGQA_PULL_WORKERS_PER_WARP", "32")
    kb = cases.kb(kb_name)
    ptr = kb.tensors()[layout.pull_slots(inverse)[0]].tolist()
    rows = row_facts(ptr)
    _, fixup = expected_counts(ptr)
    plan = kk.launch_plan(kb, B, inverse=inverse)
    per_block = 256 // lanes
    assert plan.block == (lanes, per_block, 1)
    assert plan.grid == (-(-len(rows) // per_block), 1, 1)
    per_warp = 32 // lanes
    warps = plan.grid[0] * 8
    assert plan.work.numel() == plan.fixup.numel() == warps
    want_work, want_fixup = [], []
    for i in range(warps):
        ws = range(i * per_warp, min((i + 1) * per_warp, len(rows)))
        steps = max((len(rows[w]) for w in ws), default=0)
        want_work.append(sum(max(rows[w][j] if j < len(rows[w]) else 0 for w in ws) for j in range(steps)))
        want_fixup.append(max((fixup[w] for w in ws), default=0))
    assert plan.work.tolist() == want_work
    assert plan.fixup.tolist() == want_fixup
    # Between every worker of a warp in step (facts / per_warp) and none (facts).
    assert kb.num_facts / per_warp <= int(plan.work.sum()) <= kb.num_facts
    assert int(plan.work.max()) <= per_warp * C
    if lanes == 32:  # one worker per warp: its facts, every fact once
        assert int(plan.work.sum()) == kb.num_facts


def test_packing_rule_and_its_override(monkeypatch):
    """By default a plan is packed only from kPackMinWorkers workers (csrc/cuda/planned_pull.cuh:
    where the work model says it pays), at most 8 to a warp; KGQA_PULL_WORKERS_PER_WARP sets the
    limit on any KB, 1 turning packing off."""
    kb = cases.kb("hub")
    monkeypatch.delenv("KGQA_PULL_WORKERS_PER_WARP", raising=False)
    assert kk.launch_plan(kb, 3).block == (32, 8, 1)  # a few workers: not packed
    for limit, B, lanes in (("8", 1, 4), ("8", 3, 4), ("8", 8, 8), ("4", 1, 8), ("2", 16, 16), ("1", 1, 32),
                            ("32", 17, 32), ("32", 2, 2)):
        monkeypatch.setenv("KGQA_PULL_WORKERS_PER_WARP", limit)
        assert kk.launch_plan(kb, B).block == (lanes, 256 // lanes, 1), (limit, B)
    for bad in ("0", "33", "eight", ""):
        monkeypatch.setenv("KGQA_PULL_WORKERS_PER_WARP", bad)
        with pytest.raises(RuntimeError, match="KGQA_PULL_WORKERS_PER_WARP must be an integer"):
            kk.launch_plan(kb, 3)


@pytest.mark.parametrize("op", ["follow", "follow_intersect"])
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("B", [1, 3, 8])
def test_packed_narrow_launch_sums_as_the_wide_one(op, inverse, B, monkeypatch):
    """The packed launch (several workers per warp) runs the same plan as a wide batch's launch (one
    worker per warp group), so each (row, column) is the same sum in the same order: the first B
    columns of a B = 64 result, bitwise; and both match the reference."""
    monkeypatch.setenv("KGQA_PULL_WORKERS_PER_WARP", "32")
    kb = cases.kb("hub")
    assert kk.launch_plan(kb, B).block[0] < 32
    g = torch.Generator().manual_seed(1)
    k = 2 if op == "follow_intersect" else None
    xs = [torch.rand(64, kb.num_entities, generator=g) for _ in range(k or 1)]
    rs = [torch.rand(64, kb.num_relations, generator=g) for _ in range(k or 1)]

    def run(n):
        if op == "follow":
            return kk.follow(xs[0][:n], rs[0][:n], kb, inverse=inverse, backend="emulated")
        return kk.follow_intersect([x[:n] for x in xs], [r[:n] for r in rs], kb, inverse=inverse,
                                   backend="emulated")

    narrow, wide = run(B), run(64)
    assert torch.equal(narrow, wide[:B])
    if op == "follow":
        assert_close(narrow, reference.follow_dense(xs[0][:B].double(), rs[0][:B].double(), kb, inverse=inverse),
                     dtype=torch.float32)


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
