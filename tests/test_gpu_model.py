"""The GPU work model (kgqa_kernels/bench/gpu_model.py): its byte counts on a KB small enough to
count by hand, the two plans' worst warps, the list scheduling, and a prediction that is the larger
of its two terms. (Whether the model is right about a GPU is for `make gpu-check` to show.)"""
import json
from dataclasses import replace

import pytest
import torch

import kgqa_kernels as kk
from kgqa_kernels import layout
from kgqa_kernels.bench import gpu_model as gm
from kgqa_kernels.synthetic import power_law_kb

H100 = gm.GPUS["h100"]


def tiny_kb():
    # 5 facts (s, p, o) over 4 entities and 2 relations, int32 ids, no weights.
    return kk.SparseKB(subj=[0, 1, 2, 3, 0], rel=[0, 0, 1, 1, 1], obj=[1, 1, 1, 0, 2], num_entities=4,
                       num_relations=2)


@pytest.fixture(scope="module")
def skewed_kb():
    return power_law_kb(2_000, 18, 20_000, exponent=1.3, seed=0)


def test_row_sectors_count_whole_32_byte_sectors():
    assert gm.row_sectors(4) == 1  # B = 1 fp32: a whole sector for 4 useful bytes
    assert gm.row_sectors(32) == 1 and gm.row_sectors(256) == 8  # aligned rows
    assert gm.row_sectors(48) == 2  # starts at 0 or 16: two sectors either way
    assert gm.row_sectors(16) == 1  # starts at 0 or 16: never crosses a sector
    assert gm.row_sectors(40) == 2  # starts 0, 8, 16, 24: always two sectors


def test_pull_bytes_by_hand():
    s = gm.KBSizes.of(tiny_kb())
    assert (s.facts, s.entities, s.relations, s.index_bytes, s.weighted) == (5, 4, 2, 4, False)
    # B = 8 fp32: 32-byte rows. Per fact 2 int32 ids (8 B); the row pointer 5 int64 (40 B); the
    # output 4 rows x 32 B.
    no_l2 = replace(H100, l2_bytes=0)  # nothing L2-resident: each fact gathers a sector of x and of r
    pass1, carry, resident = gm.pull_bytes(s, 8, 4, 4, 1, no_l2, partial_lanes=0)
    assert (pass1, carry) == (5 * 8 + 40 + 5 * (32 + 32) + 4 * 32, 0)
    assert resident == {"x0": False, "r0": False}
    # With an L2: x (4 x 32 B) and r (2 x 32 B) are read from HBM once each.
    pass1, _, resident = gm.pull_bytes(s, 8, 4, 4, 1, H100, partial_lanes=0)
    assert pass1 == 5 * 8 + 40 + (4 * 32 + 2 * 32) + 4 * 32 and resident == {"x0": True, "r0": True}
    # k = 2 branches: twice the gathers; 3 partial lanes: 3 x k x 4 B written by pass 1, read by the fixup.
    pass1, carry, _ = gm.pull_bytes(s, 8, 4, 4, 2, no_l2, partial_lanes=3)
    assert carry == 3 * 2 * 4 and pass1 == 5 * 8 + 40 + 2 * 5 * 64 + 4 * 32 + carry
    # dr: per fact 2 ids and two gathered rows; one partial per chunk; then R x B outputs.
    chunk_pass, reduce_pass, _ = gm.dr_bytes(s, 8, 4, 4, no_l2)
    assert s.chunks == 2  # one chunk per relation
    assert chunk_pass == 5 * 8 + 3 * 8 * 2 + 5 * 2 * 32 + 2 * 8 * 4
    assert reduce_pass == 2 * 8 * 4 + 2 * 8 * 4 + 3 * 8


def test_rows_by_batch_mirror_matches_the_launch(skewed_kb, monkeypatch):
    workers = -(-(skewed_kb.num_entities + skewed_kb.num_facts) // layout.PLAN_ITEMS)
    monkeypatch.delenv("KGQA_PULL_WORKERS_PER_WARP", raising=False)
    for batch in (1, 20, 64, 100, 300):  # a KB too small for the launch to pack
        p = gm.launch_plan(skewed_kb, batch)
        assert (p.grid, p.block) == gm.rows_by_batch(workers, batch, 256), batch
    # Packed as far as it goes: 32 / Bp workers per warp (Bp: the next power of two >= B).
    monkeypatch.setenv("KGQA_PULL_WORKERS_PER_WARP", "32")
    for batch, lanes in ((1, 1), (3, 4), (20, 32)):
        p = gm.launch_plan(skewed_kb, batch)
        assert p.block == (lanes, 256 // lanes, 1) and p.grid == (-(-workers // (256 // lanes)), 1, 1), batch


def test_old_plan_worst_warp_is_the_largest_row(skewed_kb):
    for inverse in (False, True):
        lengths = gm._row_lengths(skewed_kb, inverse)
        for batch in (8, 64, 300):
            plan = gm.row_per_warp_plan(skewed_kb, batch, inverse)
            assert int(plan.work.max()) == int(lengths.max())
            assert gm.work_balance(plan)["max_warp_facts"] == int(lengths.max())
            # every row's facts are read by each of the warps that hold its batch columns
            warps_per_row = -(-batch // gm.WARP)
            assert int(plan.work[plan.active()].sum()) == skewed_kb.num_facts * warps_per_row


def test_new_plan_worst_warp_is_at_most_plan_items(skewed_kb):
    lengths = gm._row_lengths(skewed_kb, False)
    assert int(lengths.max()) > 4 * layout.PLAN_ITEMS  # a hub the old plan gives one warp
    for inverse in (False, True):
        for batch, packed in ((8, False), (64, True), (300, True)):
            plan = gm.planned_pull_plan(skewed_kb, batch, inverse, packed=packed)
            assert int(plan.work.max()) <= layout.PLAN_ITEMS
            assert int(plan.work[plan.active()].sum()) == skewed_kb.num_facts * -(-batch // gm.WARP)
            assert int(plan.work[~plan.active()].sum()) == 0
            assert gm.work_balance(plan)["max_over_mean"] <= 2.0


def test_packed_plan_counts_lanes_and_partials_per_worker(skewed_kb, monkeypatch):
    """B = 3 packed (KGQA_PULL_WORKERS_PER_WARP=32): 8 workers per warp (4 lanes each, 3 busy); the
    fixup's traffic is per worker (a packed warp reports its workers' max partials, its critical
    path), the same as with one worker per warp."""
    monkeypatch.setenv("KGQA_PULL_WORKERS_PER_WARP", "32")
    workers = -(-(skewed_kb.num_entities + skewed_kb.num_facts) // layout.PLAN_ITEMS)
    for inverse in (False, True):
        packed = gm.planned_pull_plan(skewed_kb, 3, inverse)
        one = gm.planned_pull_plan(skewed_kb, 3, inverse, packed=False)
        assert (packed.label, one.label) == (gm.MERGE_PATH, gm.ONE_WORKER_PER_WARP)
        assert int(packed.lanes.sum()) == int(one.lanes.sum()) == 3 * workers
        assert int(packed.lanes.max()) == 8 * 3 and int(one.lanes.max()) == 3
        assert packed.partials_read() == one.partials_read() == 3 * int(one.fixup.sum()) > 0
        assert packed.active().sum() == -(-workers // 8)
        # In lockstep a packed warp takes from its 8 workers' facts / 8 to their sum.
        assert skewed_kb.num_facts / 8 <= int(packed.work.sum()) <= skewed_kb.num_facts == int(one.work.sum())


def test_narrow_batches_are_modelled_both_ways(skewed_kb):
    recs = gm.predict(skewed_kb, 4, torch.float32, H100)
    plans = {r["plan"] for r in recs if r["op"] == "follow"}
    assert plans == {gm.MERGE_PATH, gm.ONE_WORKER_PER_WARP, "one row per warp (before)"}
    assert {r["plan"] for r in gm.predict(skewed_kb, 32, torch.float32, H100)} == {
        gm.MERGE_PATH, "one row per warp (before)", "fixed chunks"}
    result = dict(records=[dict(kb="k", gpu="h100", batch=4, dtype="float32", **r) for r in recs])
    rows = gm.packing_summary(result)
    assert len(rows) == 3 and rows[2].startswith("| k | h100 | 4 | float32 |")


def test_makespan_list_schedules_blocks_in_launch_order():
    gpu = replace(H100, sms=1, warps_per_sm=2)  # two slots of one-warp blocks
    # 3 and 1 start at 0; the third block takes the slot free at 1 (ends 2), the fourth the one free at 2.
    assert gm.makespan(torch.tensor([3.0, 1.0, 1.0, 1.0]), 1, gpu) == 3.0
    assert gm.makespan(torch.tensor([1.0, 1.0, 1.0, 5.0]), 1, gpu) == 6.0
    # a two-warp block lasts as long as its slower warp and holds both slots
    assert gm.makespan(torch.tensor([4.0, 1.0, 2.0, 2.0]), 2, gpu) == 6.0


def _plan(work):
    work = torch.tensor(work)
    return gm.WarpPlan("test", work, torch.zeros_like(work), torch.full_like(work, 32), 1, 0.0, 0.0)


def test_prediction_is_the_larger_term_plus_launch():
    gpu = replace(H100, sms=1, warps_per_sm=1)
    plan = _plan([10, 20])  # one slot: the path is 30 facts
    path_bound = gm.kernel_time("k", plan, nbytes=1e3, per_fact_ns=100.0, gpu=gpu)
    assert path_bound["path_facts"] == 30 and path_bound["path_ms"] == pytest.approx(3e-3)
    assert path_bound["predicted_ms"] == pytest.approx(3e-3 + gpu.launch_ns * 1e-6)
    assert path_bound["bound"] == "critical path"
    bw_bound = gm.kernel_time("k", plan, nbytes=1e9, per_fact_ns=100.0, gpu=gpu)
    assert bw_bound["predicted_ms"] == pytest.approx(1e9 / gpu.hbm_bytes_per_s * 1e3 + gpu.launch_ns * 1e-6)
    assert bw_bound["bound"] == "bandwidth"


def test_predict_records_and_plans(skewed_kb):
    recs = gm.predict(skewed_kb, 64, torch.float32, H100)
    by = {(r["op"], r["mode"], r["plan"]): r for r in recs}
    new, old = by[("follow", "forward", "merge path")], by[("follow", "forward", "one row per warp (before)")]
    assert new["max_warp_facts"] <= layout.PLAN_ITEMS < old["max_warp_facts"]
    assert old["path_ms"] > new["path_ms"]  # the hub's warp is the old plan's critical path
    assert [k["kernel"] for k in new["kernels"]] == ["pass 1", "fixup"]  # the hub is split
    assert [k["kernel"] for k in old["kernels"]] == ["pass 1"]
    fb = by[("follow", "fwd+bwd", "merge path")]
    parts = [new, by[("follow dx", "backward", "merge path")], by[("follow dr", "backward", "fixed chunks")]]
    assert fb["bytes"] == pytest.approx(sum(p["bytes"] for p in parts))
    assert fb["predicted_ms"] == pytest.approx(sum(p["predicted_ms"] for p in parts))
    for r in recs:
        assert 0 < r["hbm_fraction"] <= 1.0, r


def test_the_model_takes_the_cuda_launch_only():
    """It schedules warps; a Triton plan counts programs (kgqa_kernels.launch_plan has both)."""
    for backend in ("triton", "cpu"):
        with pytest.raises(ValueError, match="backend='cuda' only"):
            gm.launch_plan(tiny_kb(), 8, backend=backend)
    with pytest.raises(ValueError, match="gpu must be one of"):
        gm.gpu_preset("a100")


def test_command_writes_markdown_and_json(tmp_path):
    out = tmp_path / "model"
    assert gm.main(["--kbs", "small", "--gpus", "h100,h200", "--dtypes", "float32", "--out", str(out)]) == 0
    result = json.loads((out / "gpu-model.json").read_text())
    assert {r["gpu"] for r in result["records"]} == {"h100", "h200"}
    md = (out / "gpu-model.md").read_text()
    assert "predictions, not measurements" in md and "merge path" in md and "one row per warp (before)" in md


def test_kgqa_bench_gpu_model_flag_adds_the_predicted_table(tmp_path):
    from kgqa_kernels.bench import cli

    out = tmp_path / "bench"
    assert cli.main(["--kbs", "small", "--batches", "4", "--x", "dense", "--modes", "forward", "--ops", "follow",
                     "--providers", "kgqa:cpu", "--repeats", "1", "--gpu-model", "h200", "--out", str(out)]) == 0
    model = json.loads((out / "gpu-model.json").read_text())
    assert {(r["gpu"], r["batch"]) for r in model["records"]} == {("h200", 4)}
    assert "## Summary: follow" in (out / "gpu-model.md").read_text()
    with pytest.raises(SystemExit):
        cli.main(["--gpu-model", "a100", "--out", str(out)])
