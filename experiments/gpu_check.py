"""`make gpu-check`: one command for a GPU machine, from a fresh clone, with the Python it finds
(torch, Triton and nvcc installed; no virtualenv, no downloads; torch may be older than the pinned
one, e.g. 2.11 with Triton 3.6). In order:

1. print the versions it runs with (Python, torch, Triton, CUDA, nvcc, driver, GPU);
2. build kgqa_kernels._C in place for the GPU present (TORCH_CUDA_ARCH_LIST from its compute
   capability, MAX_JOBS = the cores);
3. run the GPU tests: tests/ops -k cuda (the cuda and triton-cuda backends) and
   tests/kgqa/test_device.py (tests/test_distributed.py has no GPU part on one GPU: its NCCL tests
   need two);
4. run the GPU benchmark (kgqa_kernels/bench/gpu_check.py: follow on the 10M-fact power-law KB,
   B = 64, fp32 and bf16, forward and forward + backward, ours against torch.sparse and the
   cuSPARSE SpMM floor, the work model's prediction beside each);
5. write gpu-check-report.md and gpu-check-report.json into --out.

``--dry-run`` (what `make test` runs, through tests/test_gpu_check.py): no build, the CPU, a tiny KB,
the CUDA kernels emulated and Triton interpreted, the GPU tests not run (their files checked); the same report.

This file imports only the standard library at the top: it runs before the extension exists.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The whole run must fit in 8 minutes on a 16-core machine; each step gets a share, and a step
# that overruns is reported as timed out rather than holding up the report.
BUILD_TIMEOUT_S = 300
TEST_TIMEOUT_S = 240
BENCH_TIMEOUT_S = 300
# The GPU tests: (label, pytest arguments).
GPU_TESTS = [
    ("tests/ops -k cuda", ["tests/ops", "-k", "cuda"]),
    ("tests/kgqa/test_device.py", ["tests/kgqa/test_device.py"]),
]


def _run(cmd, timeout, env=None, log_path=None):
    """(returncode or 'timeout', seconds, output) of a command run in the repository root."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, timeout=timeout, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        rc, out = p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        rc, out = "timeout", (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    if log_path:
        with open(log_path, "w") as f:
            f.write(out)
    return rc, time.perf_counter() - t0, out


def _first_line(cmd):
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30).stdout
        return out.strip().splitlines()[-1] if out.strip() else "?"
    except (OSError, subprocess.SubprocessError):
        return "not found"


# The versions torch reports, asked of the Python that builds and tests, before the extension
# exists (the benchmark reports the same from its own process; a dry run takes them from there).
PROBE = (
    "import json, torch\n"
    "v = dict(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())\n"
    "try:\n    import triton; v['triton'] = triton.__version__\nexcept ImportError:\n    v['triton'] = None\n"
    "if v['cuda_available']:\n"
    "    p = torch.cuda.get_device_properties(0)\n"
    "    v.update(gpu=p.name, capability='%d.%d' % (p.major, p.minor), sms=p.multi_processor_count,\n"
    "             memory_gib=round(p.total_memory / 2**30, 1), l2_mb=round(getattr(p, 'L2_cache_size', 0) / 1e6, 1))\n"
    "print(json.dumps(v))\n"
)


def tool_versions() -> dict:
    return dict(nvcc=_first_line(["nvcc", "--version"]) if shutil.which("nvcc") else "not found",
                driver=(_first_line(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
                        if shutil.which("nvidia-smi") else "no nvidia-smi"))


def torch_versions(python) -> dict:
    out = subprocess.run([python, "-c", PROBE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    v = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {"error": out.stderr[-500:]}
    v["python"] = platform.python_version() if python == sys.executable else _first_line([python, "--version"])
    return v


def build(python, capability, out_dir) -> dict:
    """setup.py build_ext --inplace against the torch this Python has, for this GPU only."""
    env = dict(os.environ, TORCH_CUDA_ARCH_LIST=capability, MAX_JOBS=str(os.cpu_count() or 1))
    rc, secs, out = _run([python, "setup.py", "build_ext", "--inplace"], BUILD_TIMEOUT_S, env,
                         os.path.join(out_dir, "gpu-check-build.log"))
    lines = [line for line in out.splitlines() if "kgqa-kernels build:" in line]
    return dict(rc=rc, seconds=secs, arch=capability, summary=lines[-1] if lines else out.strip()[-300:])


def _pytest_counts(out: str) -> dict:
    """The counts of pytest's last summary line ("3 passed, 2 skipped in 1.2s")."""
    counts = {}
    for line in reversed(out.strip().splitlines()):
        found = re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected|tests? collected)", line)
        if found:
            for n, what in found:
                counts[what.rstrip("s") if what.startswith("error") else what] = int(n)
            break
    return counts


def run_tests(python, dry_run, out_dir) -> list:
    """The GPU tests, in parallel where pytest-xdist is installed. A dry run only checks that their
    files are there: `make test` runs (and skips, without a GPU) the same tests itself."""
    results = []
    xdist = not dry_run and subprocess.run([python, "-c", "import xdist"], capture_output=True).returncode == 0
    for label, args in GPU_TESTS:
        cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
        if xdist:
            cmd += ["-n", str(min(8, os.cpu_count() or 1))]
        rec = dict(tests=label, command=" ".join(["python3"] + cmd[1:]), dry_run=dry_run)
        if dry_run:
            missing = [a for a in args if a.startswith("tests") and not os.path.exists(os.path.join(ROOT, a))]
            rec.update(rc=1 if missing else 0, seconds=0.0, counts={}, missing=missing)
        else:
            rc, secs, out = _run(cmd, TEST_TIMEOUT_S, None, os.path.join(out_dir, f"gpu-check-tests-{len(results)}.log"))
            rec.update(rc=rc, seconds=secs, counts=_pytest_counts(out))
        results.append(rec)
        print(f"  {label}: rc {rec['rc']}, {rec['counts'] or 'not run (dry run)'}, {rec['seconds']:.0f} s", flush=True)
    return results


def run_bench(python, dry_run, out_dir) -> dict:
    path = os.path.join(out_dir, "gpu-check-bench.json")
    cmd = [python, "-m", "kgqa_kernels.bench.gpu_check", "--out", path] + (["--dry-run"] if dry_run else [])
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if dry_run:
        env["TRITON_INTERPRET"] = "1"  # before triton is imported: its interpreter runs the kernels on the CPU
    rc, secs, out = _run(cmd, BENCH_TIMEOUT_S, env, os.path.join(out_dir, "gpu-check-bench.log"))
    print(out.rstrip()[-4000:], flush=True)
    if rc != 0 or not os.path.isfile(path):
        return dict(rc=rc, seconds=secs, error=out.strip()[-1500:])
    with open(path) as f:
        return dict(json.load(f), rc=rc, seconds=secs)


def _ms(v):
    return "-" if v is None else f"{v:.3f}"


def markdown(report) -> str:
    v, b = report["versions"], report["bench"]
    title = "GPU check" + (" (DRY RUN: CPU, tiny KB, emulated / interpreted kernels; times mean nothing)"
                           if report["dry_run"] else "")
    lines = [f"# {title}", "",
             f"GPU: **{v.get('gpu', 'none')}** (compute capability {v.get('capability', '-')}, {v.get('sms', '-')} SMs, "
             f"{v.get('memory_gib', '-')} GiB, L2 {v.get('l2_mb', '-')} MB); driver {v.get('driver')}.",
             f"Python {v.get('python')}, torch {v.get('torch')} (CUDA {v.get('torch_cuda')}), Triton {v.get('triton')}, "
             f"nvcc: {v.get('nvcc')}.",
             f"Run {report['started']} to {report['finished']} ({report['seconds']:.0f} s).", ""]
    bd = report.get("build")
    lines += ["## Build", "", (f"rc {bd['rc']} in {bd['seconds']:.0f} s for sm_{bd['arch'].replace('.', '')}: "
                               f"{bd['summary']}") if bd else "skipped (dry run: the extension already built)", ""]
    lines += ["## Tests", "", "| tests | rc | counts | seconds |", "|---|---|---|---|"]
    for t in report["tests"]:
        counts = ", ".join(f"{n} {k}" for k, n in t["counts"].items()) or ("not run (dry run)" if t["dry_run"] else "-")
        lines.append(f"| `{t['command']}` | {t['rc']} | {counts} | {t['seconds']:.0f} |")
    lines += ["", "## Benchmark", ""]
    if "records" not in b:
        lines += [f"failed (rc {b.get('rc')}):", "", "```", b.get("error", ""), "```"]
        return "\n".join(lines) + "\n"
    kb = b["kb"]
    lines += [f"follow on a power-law KB of {kb['facts']:,} facts ({kb['entities']:,} entities, {kb['relations']:,} "
              f"relations), B = {b['batch']}, on {b['device']}; measured device copy {b['copy_gbps']:.0f} GB/s "
              "(read + write). Times: medians after warm-up (CUDA: triton.testing.do_bench, L2 flushed between "
              "calls). Achieved GB/s: the work model's bytes of our op over the time, for every provider, so they "
              f"compare on the same work. Model: kgqa_kernels.bench.gpu_model with the {b['model_gpu']} preset, our "
              "CUDA kernels' merge-path plan (and the one-row-per-warp plan before it), counted by "
              f"{b.get('model_plan', 'launch_plan')}; a prediction, beside the measurement. Rel err: ‖out − ref‖ / ‖ref‖ against float64 (output and, fwd+bwd, both "
              "gradients; the floor against its own A x).", "",
              "| dtype | mode | provider | ms | achieved GB/s | model ms (merge path) | model ms (row per warp) | "
              "rel err | correct |", "|---|---|---|---|---|---|---|---|---|"]
    for r in b["records"]:
        if "ms" not in r:
            lines.append(f"| {r['dtype']} | {r['mode']} | {r['provider']} | {r.get('skipped', '')} | | | | | |")
            continue
        lines.append(f"| {r['dtype']} | {r['mode']} | {r['provider']} | {r['ms']:.3f} | {r['achieved_gbps']:.3g} | "
                     f"{_ms(r['predicted_ms'])} | {_ms(r['old_plan_predicted_ms'])} | {r['rel_err']:.1e} | "
                     f"{'yes' if r['correct'] else '**NO**'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="experiments/gpu_check.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, no build, GPU tests not run")
    ap.add_argument("--no-build", action="store_true", help="use the extension already built")
    ap.add_argument("--out", default=ROOT, help="folder of gpu-check-report.md / .json (default: the repository)")
    ap.add_argument("--python", default=sys.executable, help="the Python to build and test with (default: this one)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    started, t0 = time.strftime("%Y-%m-%d %H:%M:%S"), time.perf_counter()
    v = tool_versions()
    if not args.dry_run:
        v.update(torch_versions(args.python))
        print("versions: " + ", ".join(f"{k} {val}" for k, val in v.items()), flush=True)
        if not v.get("cuda_available"):
            print("gpu-check: torch sees no CUDA GPU here; on a CPU machine run it with --dry-run", file=sys.stderr)
            return 2
    report = dict(dry_run=args.dry_run, versions=v, started=started, build=None)
    if not args.dry_run and not args.no_build:
        print(f"building for sm_{v['capability'].replace('.', '')} ...", flush=True)
        report["build"] = build(args.python, v["capability"], args.out)
        print(f"  build: rc {report['build']['rc']} in {report['build']['seconds']:.0f} s", flush=True)
        if report["build"]["rc"] != 0:
            print(f"gpu-check: the build failed; see {args.out}/gpu-check-build.log", file=sys.stderr)
    print("tests ...", flush=True)
    report["tests"] = run_tests(args.python, args.dry_run, args.out)
    print("benchmark ...", flush=True)
    report["bench"] = run_bench(args.python, args.dry_run, args.out)
    for k, val in report["bench"].get("versions", {}).items():
        v.setdefault(k, val)  # a dry run's torch versions come from the benchmark's process
    report["finished"], report["seconds"] = time.strftime("%Y-%m-%d %H:%M:%S"), time.perf_counter() - t0
    with open(os.path.join(args.out, "gpu-check-report.json"), "w") as f:
        json.dump(report, f, indent=1)
    md = markdown(report)
    with open(os.path.join(args.out, "gpu-check-report.md"), "w") as f:
        f.write(md)
    print("\n" + md[md.find("## Tests"):], flush=True)
    print(f"wrote {args.out}/gpu-check-report.md and .json in {report['seconds']:.0f} s")
    failed = (report["build"] and report["build"]["rc"] != 0) or any(t["rc"] != 0 for t in report["tests"]) \
        or "records" not in report["bench"] or any(r.get("correct") is False for r in report["bench"]["records"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
