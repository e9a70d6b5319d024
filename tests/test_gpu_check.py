"""`make gpu-check`'s dry run, end to end in a fresh process: no build, the CPU, a tiny KB, the CUDA
kernels emulated and Triton interpreted, the GPU tests' files checked; the report it writes names the
versions, the tests and every benchmark row with its time and the model's prediction. So the GPU
path runs in `make test` and cannot rot before a GPU machine runs it for real."""
import importlib.util
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_check_dry_run_writes_the_report(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the driver sets it for its child
    p = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "gpu_check.py"), "--dry-run",
                        "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    report = json.loads((tmp_path / "gpu-check-report.json").read_text())
    assert report["dry_run"] and report["build"] is None
    assert report["versions"]["torch"] and "triton" in report["versions"]
    for t in report["tests"]:
        assert t["rc"] == 0 and t["dry_run"] and "pytest" in t["command"], t  # the test files exist
    bench = report["bench"]
    assert not bench["cut_short"] and not bench["out_of_time"] and report["seconds"] < report["budget_s"]
    assert bench["kb"]["facts"] > 0 and bench["copy_gbps"] > 0
    rows = {(r["provider"].split(" ")[0], r["dtype"], r["mode"]): r for r in bench["records"]}
    assert len(rows) == 16  # 4 providers x fp32, bf16 x forward, fwd+bwd
    for (provider, dtype, mode), r in rows.items():
        if provider == "csr-spmm-floor" and dtype == "bfloat16" and "ms" not in r:
            assert "not implemented for 'BFloat16'" in r["skipped"], r  # the CPU's SpMM has no bf16; a row says so
            continue
        assert "ms" in r, r  # every other provider ran on the CPU
        assert r["ms"] > 0 and r["achieved_gbps"] > 0 and r["correct"], r
        if provider == "kgqa:cuda":
            assert r["predicted_ms"] > 0 and r["old_plan_predicted_ms"] > 0
    md = (tmp_path / "gpu-check-report.md").read_text()
    assert "DRY RUN" in md and "## Tests" in md and "## Benchmark" in md and "kgqa:triton" in md


def _driver():
    """experiments/gpu_check.py as a module (it is a script, not in a package)."""
    spec = importlib.util.spec_from_file_location("gpu_check_driver", os.path.join(ROOT, "experiments", "gpu_check.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_budget_gives_each_step_what_is_left_less_the_later_steps_least():
    g = _driver()
    now = [0.0]
    b = g.Budget(450.0, clock=lambda: now[0])
    (build_cap, _), (tests_cap, tests_least), (bench_cap, bench_least) = g.STEPS.values()
    assert b.limit("build") == min(build_cap, 450 - g.RESERVE_S - tests_least - bench_least)
    now[0] = 400.0  # a slow build: the tests get what is left less the benchmark's least, maybe nothing
    assert b.limit("tests") == min(tests_cap, 50 - g.RESERVE_S - bench_least)
    assert b.limit("bench") == 50 - g.RESERVE_S
    now[0] = 440.0
    assert b.limit("bench") <= 0  # under the reserve: the step is not started
    # Every step, started at its limit, ends (with its grace) before the budget, so the report is written.
    for step in g.STEPS:
        for t in (0.0, 100.0, 300.0, 420.0):
            now[0] = t
            if b.limit(step) > 0:
                assert t + b.limit(step) + g.GRACE_S < 450.0


def test_a_step_past_its_limit_is_interrupted_then_killed(monkeypatch):
    g = _driver()
    monkeypatch.setattr(g, "GRACE_S", 1.0)
    obeys = [sys.executable, "-c", "import time\ntry:\n time.sleep(60)\nexcept KeyboardInterrupt:\n print('3 passed')"]
    ignores = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)"]
    quick = [sys.executable, "-c", "print('done')"]
    limit = 1.5
    t0 = time.perf_counter()
    (rc1, s1, out1), (rc2, s2, _), (rc3, _, out3) = g._run_group([obeys, ignores, quick], limit)
    assert time.perf_counter() - t0 < limit + 1.0 + 5  # limit + grace (+ slack for a loaded machine)
    assert rc1 == "timeout" and "3 passed" in out1  # SIGINT first: pytest prints its counts then
    assert rc2 == "timeout" and s2 >= limit + 1.0  # ignored SIGINT: killed after the grace
    assert rc3 == 0 and "done" in out3


def test_gpu_check_with_a_tiny_budget_cuts_the_benchmark_short_and_still_reports(tmp_path):
    g = _driver()
    budget = 25.0  # leaves the benchmark about 5 s: too little for it (the dry run's benchmark takes 15-25 s)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    p = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "gpu_check.py"), "--dry-run",
                        "--budget-s", str(budget), "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]  # a step cut short fails the check
    report = json.loads((tmp_path / "gpu-check-report.json").read_text())
    bench = report["bench"]
    assert bench["cut_short"] and bench["limit_s"] <= budget - g.RESERVE_S, bench.get("error", bench)
    assert report["budget_s"] == budget and report["seconds"] < budget
    md = (tmp_path / "gpu-check-report.md").read_text()
    assert "CUT SHORT" in md and "cut short: bench" in md


def test_gpu_tests_are_sharded_only_without_xdist_on_many_cores():
    g = _driver()
    assert g.shard_tests(2, False) == [g.GPU_TEST_FILES] == g.shard_tests(16, True)
    shards = g.shard_tests(16, False)
    files = sorted(f for shard in shards for f in shard)
    ops = sorted(os.path.join("tests/ops", f) for f in os.listdir(os.path.join(ROOT, "tests/ops"))
                 if f.startswith("test_") and f.endswith(".py"))
    assert len(shards) == 4 and all(shards) and files == sorted(ops + ["tests/kgqa/test_device.py"])
    assert any(shard[0] == "tests/kgqa/test_device.py" for shard in shards)  # first in its process (conftest)
