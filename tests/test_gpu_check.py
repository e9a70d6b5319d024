"""`make gpu-check`'s dry run, end to end in a fresh process: no build, the CPU, a tiny KB, the CUDA
kernels emulated and Triton interpreted, the GPU tests' files checked; the report it writes names the
versions, the tests and every benchmark row with its time and the model's prediction. So the GPU
path runs in `make test` and cannot rot before a GPU machine runs it for real."""
import json
import os
import subprocess
import sys

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
