"""The benchmark of `make gpu-check` (experiments/gpu_check.py runs it after building): follow on a
power-law KB, ours (the CUDA and the Triton backend) against torch.sparse (ReifKB, CSR) and the
plain CSR SpMM floor (cuSPARSE on a GPU), fp32 and bf16, forward and forward + backward; each
result checked once against a float64 reference, then timed; the work model's prediction
(kgqa_kernels.bench.gpu_model) beside each time. Writes one JSON file.

``--dry-run`` runs the same code on the CPU at a tiny size: the CUDA kernels emulated
(backend "emulated"), Triton under its interpreter (TRITON_INTERPRET=1 must be set before triton
is first imported: experiments/gpu_check.py sets it), CPU timers. Its times mean nothing; it
exists so that this path is exercised by `make test` and cannot rot.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings

import torch

from .. import backends, ops, reference
from ..kb import SparseKB
from ..synthetic import power_law_kb
from . import gpu_model
from .measure import copy_bandwidth_gbps
from .workloads import kb_specs

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

# Relative L2 error against float64 that each dtype must stay under (.library METHOD.md: fp32 far
# under 1e-3, bf16 between 1e-3 and 1e-2; the pull sums ~10 facts a row in fp32 either way, so
# bf16's error is its final rounding).
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 5e-3, torch.float64: 1e-12}


def _ours(backend):
    def fn(ctx, x, r):
        return ops.follow(x, r, ctx["kb"], backend=backend, direction="pull")
    return fn


def _reifkb(ctx, x, r):
    # ReifKB's three sparse products; computes in float32 for 16-bit inputs (reference.follow_sparse).
    return reference.follow_sparse(x, r, ctx["kb"], matrices=ctx["reifkb"])


def _spmm_floor(ctx, x, r):
    # y = A x over the same nonzeros with values 1 and no relations: strictly less work than follow
    # (no gradient for r: its fwd+bwd is the forward and dx).
    return torch.sparse.mm(ctx["spmm"][x.dtype], x.t()).t()


def providers(dry_run: bool) -> list:
    """(name, fn(ctx, x, r), is ours): ours on both GPU backends, then the two torch baselines."""
    cuda = "emulated" if dry_run else "cuda"
    return [
        ("kgqa:cuda" + (" (emulated)" if dry_run else ""), _ours(cuda), "cuda"),
        ("kgqa:triton" + (" (interpreted)" if dry_run else ""), _ours("triton"), "triton"),
        ("torch.sparse-csr (ReifKB)", _reifkb, None),
        ("csr-spmm-floor" + (" (CPU)" if dry_run else " (cuSPARSE)"), _spmm_floor, None),
    ]


def _context(kb: SparseKB, dtypes):
    m_subj, m_rel, m_obj = reference.incidence_matrices(kb, torch.sparse_csr)
    t = kb.tensors()
    spmm = {dt: torch.sparse_csr_tensor(t[0], t[1].to(torch.int64), torch.ones(kb.num_facts, dtype=dt, device=kb.device),
                                        (kb.num_entities, kb.num_entities), check_invariants=False) for dt in dtypes}
    return dict(kb=kb, reifkb=(m_subj, m_rel, m_obj.t().to_sparse_csr()), spmm=spmm)


def _inputs(kb: SparseKB, batch: int, dtype, seed: int):
    """A later hop's inputs: x dense [B, E] in the batch-innermost layout follow returns, r a
    softmax over relations; fresh random values (never zeros) for every seed."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(kb.num_entities, batch, generator=g).t()
    r = torch.softmax(torch.randn(batch, kb.num_relations, generator=g), -1)
    return x.to(kb.device, dtype), r.to(kb.device, dtype)


def _call(fn, ctx, x, r, backward: bool):
    """One forward, or forward + backward of sum(y) into x and r; returns (y, [dx, dr])."""
    if not backward:
        with torch.no_grad():
            return fn(ctx, x, r), []
    x, r = x.detach().requires_grad_(), r.detach().requires_grad_()
    y = fn(ctx, x, r)
    y.sum().backward()
    return y, [x.grad, r.grad]


def _poison(nbytes: int, device) -> None:
    """Fill a freed block of the caching allocator with NaN, so an output that lands in it and is
    not fully written shows NaN (on the CPU memory comes fresh from the OS: zeros, no poison)."""
    if torch.device(device).type == "cuda":
        torch.full((nbytes // 4 + 1,), float("nan"), device=device)


def _rel_err(out, ref) -> float:
    out, ref = out.detach().double(), ref.detach().double()
    if not torch.isfinite(out).all():
        return float("inf")
    return float((out - ref).norm() / ref.norm().clamp_min(1e-300))


def _reference(kb, x, r, backward, spmm: bool):
    """float64 truth: gather + index_add_ (another formulation than every provider's)."""
    x64, r64 = x.detach().double(), r.detach().double()
    if spmm:
        r64 = torch.ones_like(r64)  # the floor's A x: every relation weight 1
    return _call(lambda c, a, b: reference.follow_gather(a, b, kb), None, x64, r64, backward)


# do_bench's warm-up and measuring time per row, in ms: 16 rows (4 providers x 2 dtypes x 2 modes)
# cost about 16 x 0.6 s of timing, small beside the KB's generation and Triton's compiles.
WARMUP_MS, REP_MS = 100, 500


def _timer():
    """Median ms of fn after warm-up on the GPU: triton.testing.do_bench (CUDA events, L2 flushed
    between calls), or CUDA events where Triton is missing or its do_bench has no return_mode
    (Triton before 3.0; 3.6 has it)."""
    try:
        import inspect

        from triton.testing import do_bench

        if "return_mode" in inspect.signature(do_bench).parameters:
            return lambda fn: float(do_bench(fn, warmup=WARMUP_MS, rep=REP_MS, return_mode="median"))
    except ImportError:
        pass
    return _events_median


def _events_median(fn, warmup=5, repeats=30):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def versions() -> dict:
    """The versions this process runs with (the report's header)."""
    v = dict(python=sys.version.split()[0], torch=torch.__version__, torch_cuda=torch.version.cuda,
             cuda_available=torch.cuda.is_available())
    try:
        import triton

        v["triton"] = triton.__version__
    except ImportError:
        v["triton"] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        v.update(gpu=p.name, capability=f"{p.major}.{p.minor}", sms=p.multi_processor_count,
                 memory_gib=round(p.total_memory / 2**30, 1), l2_mb=round(getattr(p, "L2_cache_size", 0) / 1e6, 1))
    return v


def build_kb(dry_run: bool, device) -> SparseKB:
    if dry_run:  # small: Triton's interpreter takes about a second per call even here
        return power_law_kb(40, 3, 120, seed=0).to(device)
    return kb_specs()["pl-10m"].build().to(device)


def model_predictions(kb: SparseKB, batch: int, dtypes, gpu) -> dict:
    """{(dtype, mode): record} of the work model for our follow under the merge-path plan, and the
    one-row-per-warp plan's prediction beside it."""
    out = {}
    for dt in dtypes:
        recs = gpu_model.predict(kb, batch, dt, gpu)
        for mode in ("forward", "fwd+bwd"):
            # The launch's plan and the one before it; for B <= 16 the model also gives the plan with
            # one worker per warp (packing's comparison), which is not what runs.
            new, old = [r for r in recs if r["op"] == "follow" and r["mode"] == mode
                        and r["plan"] in (gpu_model.MERGE_PATH, "one row per warp (before)")]
            out[(dt, mode)] = dict(bytes=new["bytes"], predicted_ms=new["predicted_ms"],
                                   old_plan_predicted_ms=old["predicted_ms"], max_over_mean=new["max_over_mean"],
                                   hbm_fraction=new["hbm_fraction"])
    return out


def run(dry_run: bool, batch: int = 64, dtype_names=("float32", "bfloat16"), modes=("forward", "fwd+bwd"),
        log=print, time_limit_s: float | None = None, into: dict | None = None) -> dict:
    """The benchmark's result (into, filled as it goes, so an interrupted run still has its rows).
    time_limit_s: seconds from the start after which no row is started that could not finish (a row
    is expected to take as long as the longest so far); those rows say so and count in out_of_time."""
    start = time.perf_counter()
    device = torch.device("cpu" if dry_run else "cuda")
    if not dry_run and not torch.cuda.is_available():
        raise RuntimeError("gpu_check: no CUDA GPU here (use --dry-run on a CPU machine)")
    if dry_run and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("gpu_check --dry-run: set TRITON_INTERPRET=1 before Python starts (triton reads it on import)")
    dtypes = [getattr(torch, n) for n in dtype_names]
    gpu = gpu_model.GPUS["h200"] if dry_run else gpu_model.gpu_from_device(device)
    t0 = time.perf_counter()
    kb = build_kb(dry_run, device)
    result = into if into is not None else {}
    result.update(dry_run=dry_run, device=str(device), versions=versions(),
                  gpu_name="none (dry run on the CPU)" if dry_run else torch.cuda.get_device_name(device),
                  model_gpu=gpu.name, batch=batch,
                  kb=dict(entities=kb.num_entities, relations=kb.num_relations, facts=kb.num_facts,
                          build_s=time.perf_counter() - t0),
                  copy_gbps=copy_bandwidth_gbps(device, mbytes=16 if dry_run else 2048), records=[],
                  time_limit_s=time_limit_s, out_of_time=0)
    log(f"KB: {kb.num_facts:,} facts, {kb.num_entities:,} entities on {device} "
        f"({result['kb']['build_s']:.1f} s); copy bandwidth {result['copy_gbps']:.0f} GB/s")
    try:
        model = model_predictions(kb, batch, dtypes, gpu)  # on a GPU: launch_plan's CUDA kernel counts
        result["model_plan"] = f"launch_plan on {device}"
    except Exception as e:  # noqa: BLE001  (the CUDA launch_plan has never run: fall back to its emulation)
        log(f"launch_plan on {device} failed ({type(e).__name__}: {e}); the model uses the CPU emulation's count")
        model = model_predictions(kb.cpu(), batch, dtypes, gpu)
        result["model_plan"] = f"launch_plan emulated on the CPU (on {device}: {type(e).__name__})"
    ctx = _context(kb, dtypes)
    timer = None if dry_run else _timer()
    longest = 0.0  # the longest row so far, in s: what the next one is expected to take
    for dt in dtypes:
        for mode in modes:
            backward = mode == "fwd+bwd"
            pred = model[(dt, mode)]
            for seed, (name, fn, backend) in enumerate(providers(dry_run)):
                rec = dict(provider=name, dtype=str(dt).replace("torch.", ""), mode=mode, model_bytes=pred["bytes"],
                           predicted_ms=pred["predicted_ms"] if backend == "cuda" else None,
                           old_plan_predicted_ms=pred["old_plan_predicted_ms"] if backend == "cuda" else None)
                result["records"].append(rec)
                if backend is not None:
                    usable = backends.available_backends(device)
                    wanted = "emulated" if (dry_run and backend == "cuda") else backend
                    if wanted not in usable:
                        rec["skipped"] = f"backend {wanted!r} not available here ({usable})"
                        log(f"  {dt} {mode:8s} {name:30s} skipped: {rec['skipped']}")
                        continue
                if time_limit_s is not None and time.perf_counter() - start + longest > time_limit_s:
                    rec["skipped"] = f"not run: the benchmark's time limit ({time_limit_s:.0f} s) came first"
                    result["out_of_time"] += 1
                    log(f"  {dt} {mode:8s} {name:30s} {rec['skipped']}")
                    continue
                row_start = time.perf_counter()
                try:
                    x, r = _inputs(kb, batch, dt, seed=1000 * seed + 7)
                    _poison(kb.num_entities * batch * 4, device)
                    t0 = time.perf_counter()
                    y, grads = _call(fn, ctx, x, r, backward)
                    checked_ms = 1e3 * (time.perf_counter() - t0)
                    ref_y, ref_grads = _reference(kb, x, r, backward, spmm=name.startswith("csr-spmm"))
                    errs = [_rel_err(y, ref_y)] + [_rel_err(g, rg) for g, rg in zip(grads, ref_grads) if g is not None]
                    rec["rel_err"] = max(errs)
                    rec["correct"] = rec["rel_err"] <= TOLERANCE[dt]
                    del y, grads, ref_y, ref_grads
                    # Dry run: the checked call's own time (the interpreter is far too slow to repeat).
                    rec["ms"] = checked_ms if dry_run else timer(lambda: _call(fn, ctx, x, r, backward))
                except Exception as e:  # noqa: BLE001  (a provider that fails is a row of the report)
                    rec["skipped"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
                    log(f"  {dt} {mode:8s} {name:30s} {rec['skipped']}")
                    continue
                finally:
                    longest = max(longest, time.perf_counter() - row_start)
                rec["achieved_gbps"] = pred["bytes"] / (rec["ms"] * 1e-3) / 1e9
                log(f"  {rec['dtype']:8s} {mode:8s} {name:30s} {rec['ms']:9.3f} ms  {rec['achieved_gbps']:8.1f} GB/s  "
                    f"rel err {rec['rel_err']:.1e}{'' if rec['correct'] else '  WRONG'}"
                    + (f"  model {rec['predicted_ms']:.3f} ms" if rec["predicted_ms"] else ""))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kgqa_kernels.bench.gpu_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny KB, emulated CUDA kernels, Triton interpreter")
    ap.add_argument("--batch", type=int, help="batch width B (default 64; 8 in a dry run)")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--out", required=True, help="the JSON file to write")
    ap.add_argument("--time-limit-s", type=float, help="start no row after this many seconds (rows left say so)")
    args = ap.parse_args(argv)
    batch = args.batch if args.batch is not None else (8 if args.dry_run else 64)
    if batch < 1:
        ap.error(f"--batch must be at least 1, got {batch}")
    result = {}
    rc = 0
    try:
        run(args.dry_run, batch, [d for d in args.dtypes.split(",") if d], time_limit_s=args.time_limit_s, into=result)
    except KeyboardInterrupt:  # experiments/gpu_check.py's deadline: keep the rows done so far
        result["interrupted"], rc = True, 130
        print("gpu_check: interrupted; writing the rows done so far", file=sys.stderr)
    if "records" in result:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return rc


if __name__ == "__main__":
    sys.exit(main())
