"""`make gpu-check`: one command for a GPU machine, from a fresh clone, with the Python it finds
(torch, Triton and nvcc installed; no virtualenv, no downloads; torch may be older than the pinned
one, e.g. 2.11 with Triton 3.6). In order:

1. print the versions it runs with (Python, torch, Triton, CUDA, nvcc, driver, GPU);
2. build kgqa_kernels._C in place for the GPU present (TORCH_CUDA_ARCH_LIST from its compute
   capability, MAX_JOBS = the cores);
3. run the GPU tests: tests/ops -k cuda (the cuda and triton-cuda backends) and
   tests/kgqa/test_device.py, in one pytest process or a few at once (GPU_TEST_FILES, shard_tests);
4. run the GPU benchmark (kgqa_kernels/bench/gpu_check.py: follow on the 10M-fact power-law KB,
   B = 64, fp32 and bf16, forward and forward + backward, ours against torch.sparse and the
   cuSPARSE SpMM floor, the work model's prediction beside each);
5. write gpu-check-report.md and gpu-check-report.json into --out.

All of it within one deadline (BUDGET_S, --budget-s): each step's limit is derived from what is left
(Budget), a step still running at its limit is interrupted and reported as cut short, and the report
is written before the deadline.

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
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The bound: `make gpu-check` finishes in under 8 minutes from a fresh clone. The budget is
# 30 s under it, for what runs before this clock starts (Python's start, make) and for slack on a
# loaded machine. Every step's time limit is derived from it (Budget below); --budget-s overrides it.
BUDGET_S = 450.0
# A step still running at its limit gets SIGINT (pytest then prints its counts, the benchmark writes
# the rows it has), GRACE_S to stop, then SIGKILL: so a step can last its limit + GRACE_S.
GRACE_S = 10.0
# Kept back from every step so the report (a second's work) is written before the budget ends even
# when the last step is cut short and uses its grace.
RESERVE_S = 2 * GRACE_S
# Per step, in order: (cap_s, least_s). A step runs for at most its cap and at most what is left
# less the reserve and the least_s of every later step, so a slow build cannot leave nothing for
# the tests and the benchmark. The caps are well above what these steps should take on a 16-core
# GPU machine (the build is one arch; see docs/gpu.md for what was measured on the CPU); the
# least_s is about what each needs to report anything (tests: start + collection; benchmark: start,
# the 10M-fact KB and a first provider).
STEPS = {"build": (240.0, 0.0), "tests": (180.0, 60.0), "bench": (180.0, 90.0)}
# The GPU tests, one pytest process per shard (see run_tests): the cuda and triton-cuda backends of
# the op tests, and the model layer on the device. tests/test_distributed.py has no GPU part on
# one GPU (its NCCL tests need two). test_device.py comes first in a process: tests/ops/
# test_work_plan.py imports `conftest`, which must then be tests/ops/conftest.py (the last loaded).
GPU_TEST_FILES = ["tests/kgqa/test_device.py", "tests/ops"]
GPU_TEST_K = "cuda or test_device"  # selects exactly tests/ops -k cuda plus all of test_device.py


class Budget:
    """The whole run's deadline, and each step's share of what is left of it."""

    def __init__(self, total_s: float = BUDGET_S, clock=time.perf_counter):
        self.total_s, self.clock, self.t0 = total_s, clock, clock()

    def left(self) -> float:
        return self.total_s - (self.clock() - self.t0)

    def limit(self, step: str) -> float:
        """Seconds step may run from now (<= 0: none left; the step is not started)."""
        later = list(STEPS)[list(STEPS).index(step) + 1:]
        return min(STEPS[step][0], self.left() - RESERVE_S - sum(STEPS[s][1] for s in later))


def _children_take_sigint() -> None:
    """A driver started with SIGINT ignored (a background job of a non-interactive shell: `make
    gpu-check &`) hands that on to every step, so a step past its limit would only be killed,
    without printing its summary. Python's own handler instead, which exec resets to the default in
    the children. (Only the main thread may set a handler; elsewhere nothing changes.)"""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        try:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        except ValueError:
            pass


def _run_group(cmds, timeout, env=None, log_paths=None):
    """Runs the commands at once in the repository root; [(returncode or 'timeout', seconds,
    output)]. Those still running at timeout get SIGINT, GRACE_S later SIGKILL (whole process
    groups: the build's ninja and nvcc, pytest's children)."""
    _children_take_sigint()
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True) for c in cmds]
    outs = [[] for _ in procs]
    # One reader thread per process, so no pipe fills up while another process is waited for.
    readers = [threading.Thread(target=lambda p=p, o=o: o.append(p.stdout.read()), daemon=True)
               for p, o in zip(procs, outs)]
    for t in readers:
        t.start()
    results = [None] * len(procs)
    for i, p in enumerate(procs):
        try:
            p.wait(timeout=max(0.0, timeout - (time.perf_counter() - t0)))
            results[i] = (p.returncode, time.perf_counter() - t0)
        except subprocess.TimeoutExpired:
            pass
    late = [i for i, r in enumerate(results) if r is None]
    for i in late:
        _signal(procs[i], signal.SIGINT)
    for i in late:
        try:
            procs[i].wait(timeout=max(0.0, timeout + GRACE_S - (time.perf_counter() - t0)))
        except subprocess.TimeoutExpired:
            _signal(procs[i], signal.SIGKILL)
            procs[i].wait()
        results[i] = ("timeout", time.perf_counter() - t0)
    out = []
    for i, (rc, secs) in enumerate(results):
        readers[i].join(timeout=GRACE_S)  # a grandchild that kept the pipe open: do not wait for it
        text = b"".join(outs[i]).decode(errors="replace")
        if log_paths:
            with open(log_paths[i], "w") as f:
                f.write(text)
        out.append((rc, secs, text))
    return out


def _signal(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _run(cmd, timeout, env=None, log_path=None):
    """(returncode or 'timeout', seconds, output) of one command (_run_group)."""
    return _run_group([cmd], timeout, env, [log_path] if log_path else None)[0]


def _not_run(limit) -> dict:
    return dict(rc="no time left", seconds=0.0, limit_s=limit, cut_short=True)


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
    "from torch.utils.cpp_extension import is_ninja_available; v['ninja'] = is_ninja_available()\n"
    "print(json.dumps(v))\n"
)


def tool_versions() -> dict:
    return dict(nvcc=_first_line(["nvcc", "--version"]) if shutil.which("nvcc") else "not found",
                driver=(_first_line(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
                        if shutil.which("nvidia-smi") else "no nvidia-smi"))


def torch_versions(python, timeout) -> dict:
    try:
        out = subprocess.run([python, "-c", PROBE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=timeout)
        v = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {"error": out.stderr[-500:]}
    except subprocess.TimeoutExpired:
        v = {"error": f"importing torch took over {timeout:.0f} s"}
    v["python"] = platform.python_version() if python == sys.executable else _first_line([python, "--version"])
    return v


def _step(rec: dict, limit: float, rc) -> dict:
    """rec with the step's limit and whether it was cut short at it."""
    rec.update(limit_s=round(limit, 1), cut_short=rc == "timeout")
    return rec


def build(python, capability, out_dir, limit) -> dict:
    """setup.py build_ext --inplace against the torch this Python has, for this GPU only: one arch
    (TORCH_CUDA_ARCH_LIST), MAX_JOBS = the cores (ninja compiles the sources in parallel; nvcc is
    one process per source)."""
    if limit <= 0:
        return dict(_not_run(limit), arch=capability, summary="not started: no time left in the budget")
    env = dict(os.environ, TORCH_CUDA_ARCH_LIST=capability, MAX_JOBS=str(os.cpu_count() or 1))
    rc, secs, out = _run([python, "setup.py", "build_ext", "--inplace"], limit, env,
                         os.path.join(out_dir, "gpu-check-build.log"))
    lines = [line for line in out.splitlines() if "kgqa-kernels build:" in line]
    return _step(dict(rc=rc, seconds=secs, arch=capability, summary=lines[-1] if lines else out.strip()[-300:]),
                 limit, rc)


def _pytest_counts(out: str) -> dict:
    """The counts of pytest's last summary line ("3 passed, 2 skipped in 1.2s"; pytest prints it on
    SIGINT too, with the counts so far)."""
    counts = {}
    for line in reversed(out.strip().splitlines()):
        found = re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected|tests? collected)", line)
        if found:
            for n, what in found:
                counts[what.rstrip("s") if what.startswith("error") else what] = int(n)
            break
    return counts


def shard_tests(cores: int, xdist: bool) -> list:
    """The GPU test paths split over pytest processes run at once. Each process pays the start
    (torch, Triton, the extension, collection: about 10 s on this project's CPU machine) and its
    own Triton compiles, which are single-threaded: so one process where there are few cores or
    pytest-xdist spreads the tests itself, else up to 4, the op test files spread by size."""
    n = 1 if xdist else max(1, min(4, cores // 4))
    if n == 1:
        return [list(GPU_TEST_FILES)]
    files = [GPU_TEST_FILES[0]] + sorted(
        (os.path.join("tests/ops", f) for f in os.listdir(os.path.join(ROOT, "tests/ops"))
         if f.startswith("test_") and f.endswith(".py")),
        key=lambda f: -os.path.getsize(os.path.join(ROOT, f)))
    shards, sizes = [[] for _ in range(n)], [0] * n
    for f in files:  # largest first onto the lightest shard; test_device.py first in its shard
        i = sizes.index(min(sizes))
        shards[i].append(f)
        sizes[i] += os.path.getsize(os.path.join(ROOT, f))
    return shards


def run_tests(python, dry_run, out_dir, limit) -> list:
    """The GPU tests (GPU_TEST_FILES -k GPU_TEST_K), shards at once (shard_tests), all within limit.
    A dry run only checks that their files are there: `make test` runs (and skips, without a GPU)
    the same tests itself."""
    cores = os.cpu_count() or 1
    xdist = not dry_run and subprocess.run([python, "-c", "import xdist"], capture_output=True).returncode == 0
    shards = shard_tests(cores, xdist)
    cmds = [[python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths, "-k", GPU_TEST_K]
            + (["-n", str(min(8, cores))] if xdist else []) for paths in shards]
    recs = [dict(tests=" ".join(paths), command=shlex.join(["python3"] + cmd[1:]), dry_run=dry_run)
            for paths, cmd in zip(shards, cmds)]
    if dry_run:
        for rec, paths in zip(recs, shards):
            missing = [a for a in paths if not os.path.exists(os.path.join(ROOT, a))]
            rec.update(rc=1 if missing else 0, seconds=0.0, counts={}, missing=missing, cut_short=False)
    elif limit <= 0:
        for rec in recs:
            rec.update(_not_run(limit), counts={})
    else:
        logs = [os.path.join(out_dir, f"gpu-check-tests-{i}.log") for i in range(len(cmds))]
        for rec, (rc, secs, out) in zip(recs, _run_group(cmds, limit, None, logs)):
            _step(rec, limit, rc).update(rc=rc, seconds=secs, counts=_pytest_counts(out))
    for rec in recs:
        print(f"  {rec['tests']}: rc {rec['rc']}, {rec['counts'] or 'not run'}, {rec['seconds']:.0f} s"
              + (f" (cut short at its limit of {rec['limit_s']:.0f} s)" if rec["cut_short"] else ""), flush=True)
    return recs


def run_bench(python, dry_run, out_dir, limit) -> dict:
    """The benchmark in its own process. It is told its limit less the grace (--time-limit-s), so it
    stops starting rows in time and writes the rows it has; past the limit it is interrupted, and
    still writes them (kgqa_kernels/bench/gpu_check.py main)."""
    if limit <= 0:
        return dict(_not_run(limit), error="not started: no time left in the budget")
    path = os.path.join(out_dir, "gpu-check-bench.json")
    if os.path.exists(path):
        os.remove(path)  # a report from an earlier run must not pass for this one's
    cmd = [python, "-m", "kgqa_kernels.bench.gpu_check", "--out", path,
           "--time-limit-s", f"{max(1.0, limit - GRACE_S):.1f}"] + (["--dry-run"] if dry_run else [])
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if dry_run:
        env["TRITON_INTERPRET"] = "1"  # before triton is imported: its interpreter runs the kernels on the CPU
    rc, secs, out = _run(cmd, limit, env, os.path.join(out_dir, "gpu-check-bench.log"))
    print(out.rstrip()[-4000:], flush=True)
    rec = _step(dict(rc=rc, seconds=secs), limit, rc)
    if os.path.isfile(path):
        with open(path) as f:
            rec = dict(json.load(f), **rec)
        # Rows left out by its own time limit: cut short as well.
        rec["cut_short"] = rec["cut_short"] or bool(rec.get("out_of_time"))
    if rc != 0:
        rec["error"] = out.strip()[-1500:]
    return rec


def _ms(v):
    return "-" if v is None else f"{v:.3f}"


def _limit_note(step) -> str:
    if step.get("cut_short"):
        return f" **CUT SHORT** (its limit: {step['limit_s']:.0f} s)"
    return f" (limit {step['limit_s']:.0f} s)" if "limit_s" in step else ""


def markdown(report) -> str:
    v, b = report["versions"], report["bench"]
    title = "GPU check" + (" (DRY RUN: CPU, tiny KB, emulated / interpreted kernels; times mean nothing)"
                           if report["dry_run"] else "")
    cut = [name for name in ("build", "tests", "bench") if any(
        (s or {}).get("cut_short") for s in (report[name] if name == "tests" else [report[name]]))]
    lines = [f"# {title}", "",
             f"GPU: **{v.get('gpu', 'none')}** (compute capability {v.get('capability', '-')}, {v.get('sms', '-')} SMs, "
             f"{v.get('memory_gib', '-')} GiB, L2 {v.get('l2_mb', '-')} MB); driver {v.get('driver')}.",
             f"Python {v.get('python')}, torch {v.get('torch')} (CUDA {v.get('torch_cuda')}), Triton {v.get('triton')}, "
             f"nvcc: {v.get('nvcc')}, ninja: {v.get('ninja', '-')}.",
             f"Run {report['started']} to {report['finished']} ({report['seconds']:.0f} s of a {report['budget_s']:.0f} s "
             f"budget{'; cut short: ' + ', '.join(cut) if cut else ''}).", ""]
    bd = report.get("build")
    lines += ["## Build", "", (f"rc {bd['rc']} in {bd['seconds']:.0f} s{_limit_note(bd)} for "
                               f"sm_{bd['arch'].replace('.', '')}: {bd['summary']}") if bd
              else "skipped (dry run or --no-build: the extension already built)", ""]
    lines += ["## Tests", "", "| tests | rc | counts | seconds |", "|---|---|---|---|"]
    for t in report["tests"]:
        counts = ", ".join(f"{n} {k}" for k, n in t["counts"].items()) or ("not run (dry run)" if t["dry_run"] else "-")
        lines.append(f"| `{t['command']}` | {t['rc']} | {counts} | {t['seconds']:.0f}{_limit_note(t)} |")
    lines += ["", "## Benchmark", "", f"rc {b.get('rc')} in {b.get('seconds', 0):.0f} s{_limit_note(b)}"
              + (f"; {b['out_of_time']} rows not run: its time limit came first" if b.get("out_of_time") else "")
              + ".", ""]
    if "records" not in b:
        lines += ["failed:", "", "```", b.get("error", ""), "```"]
        return "\n".join(lines) + "\n"
    kb = b["kb"]
    lines += [f"follow on a power-law KB of {kb['facts']:,} facts ({kb['entities']:,} entities, {kb['relations']:,} "
              f"relations; generated in {kb['build_s']:.1f} s), B = {b['batch']}, on {b['device']}; measured device copy "
              f"{b['copy_gbps']:.0f} GB/s "
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
    ap.add_argument("--budget-s", type=float, default=BUDGET_S,
                    help=f"the whole run's deadline in seconds; each step's limit comes from it (default {BUDGET_S:.0f})")
    args = ap.parse_args(argv)
    budget = Budget(args.budget_s)
    os.makedirs(args.out, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    v = tool_versions()
    if not args.dry_run:
        v.update(torch_versions(args.python, timeout=max(1.0, min(120.0, budget.limit("build")))))
        print("versions: " + ", ".join(f"{k} {val}" for k, val in v.items()), flush=True)
        if not v.get("cuda_available"):
            print("gpu-check: torch sees no CUDA GPU here; on a CPU machine run it with --dry-run", file=sys.stderr)
            return 2
        if v.get("ninja") is False and not args.no_build:
            print("gpu-check: no ninja for this Python: torch's build falls back to compiling one source after "
                  "another (MAX_JOBS unused), slower", file=sys.stderr)
    report = dict(dry_run=args.dry_run, versions=v, started=started, build=None, budget_s=args.budget_s)
    if not args.dry_run and not args.no_build:
        limit = budget.limit("build")
        print(f"building for sm_{v['capability'].replace('.', '')} (limit {limit:.0f} s) ...", flush=True)
        report["build"] = build(args.python, v["capability"], args.out, limit)
        print(f"  build: rc {report['build']['rc']} in {report['build']['seconds']:.0f} s", flush=True)
        if report["build"]["rc"] != 0:
            print(f"gpu-check: the build failed; see {args.out}/gpu-check-build.log", file=sys.stderr)
    limit = budget.limit("tests")
    print(f"tests (limit {limit:.0f} s) ...", flush=True)
    report["tests"] = run_tests(args.python, args.dry_run, args.out, limit)
    limit = budget.limit("bench")
    print(f"benchmark (limit {limit:.0f} s) ...", flush=True)
    report["bench"] = run_bench(args.python, args.dry_run, args.out, limit)
    for k, val in report["bench"].get("versions", {}).items():
        v.setdefault(k, val)  # a dry run's torch versions come from the benchmark's process
    report["finished"], report["seconds"] = time.strftime("%Y-%m-%d %H:%M:%S"), budget.clock() - budget.t0
    with open(os.path.join(args.out, "gpu-check-report.json"), "w") as f:
        json.dump(report, f, indent=1)
    md = markdown(report)
    with open(os.path.join(args.out, "gpu-check-report.md"), "w") as f:
        f.write(md)
    print("\n" + md[md.find("## Tests"):], flush=True)
    print(f"wrote {args.out}/gpu-check-report.md and .json in {report['seconds']:.0f} s")
    steps = [report["build"], report["bench"], *report["tests"]]
    failed = any(s and (s["rc"] != 0 or s.get("cut_short")) for s in steps) or "records" not in report["bench"] \
        or any(r.get("correct") is False for r in report["bench"]["records"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
