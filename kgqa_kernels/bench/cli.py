"""kgqa-bench: run a chosen set of benchmarks; write JSON, a Markdown table and a PNG plot. Progress
(one line per case, with an ETA) goes to stderr; the result files are rewritten after each case."""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from .ports import PORT_SIZES, PORTS, run_ports
from .progress import Progress, duration
from .providers import MODES
from .results import ResultFiles, write_reports
from .runner import OPS, Config, run_suite
from .workloads import KB_GROUPS, X_KINDS, expand_kb_keys, kb_specs

# The family suites' grid: the layouts users pass (a row-major x with and without requires_grad,
# and the batch-innermost one chained hops hand on), sum() and a materialised upstream gradient,
# two chained hops; and the providers the per-shape targets compare (report.evaluate_shape_targets).
_FAMILY = dict(batches=[64], x_kinds=["dense-rowmajor", "dense-rowmajor-nograd", "dense"],
               modes=["forward", "fwd+bwd", "fwd+bwd-grad", "2-hop-fwd+bwd-grad"], ops=["follow"],
               providers=["kgqa:cpu", "torch.sparse-csr", "csr-spmm-floor", "csr-spmm-floor-bi"])

SUITES = {
    # Under 2 minutes on 2 cores (docs/benchmarks.md): every provider, op, x kind and mode, on the
    # small KB and MetaQA's shape at one batch; 3 timed calls, fewer where a provider's took 1 s.
    "quick": dict(kbs=["small", "metaqa"], batches=[16], x_kinds=["dense", "one-hot"],
                  modes=["forward", "fwd+bwd"], ops=["follow", "follow_intersect-2"],
                  repeats=3, case_seconds=1.0, min_repeats=1),
    # What the targets are judged on, plus the sizes the plot needs.
    "targets": dict(kbs=["metaqa", "pl-1m", "pl-10m"], batches=[64], x_kinds=["dense", "one-hot"],
                    modes=["forward", "fwd+bwd"], ops=["follow", "follow_intersect-2"]),
    "full": dict(kbs=["small", "metaqa", "pl-1m", "pl-10m", "pl-30m"], batches=[1, 16, 64, 256],
                 x_kinds=["dense", "one-hot"], modes=["forward", "fwd+bwd"],
                 ops=["follow", "follow_intersect-2", "follow_intersect-3"]),
    # Every KB shape at 10M facts (and MetaQA's), the layouts and modes users run.
    "family": dict(kbs=["family"], **_FAMILY),
    # Only what the per-shape targets need: row-major x, forward and forward + backward from a
    # materialised gradient.
    "family-targets": dict(kbs=["family"], **dict(_FAMILY, x_kinds=["dense-rowmajor"],
                                                   modes=["forward", "fwd+bwd-grad"])),
    # The family suite on the small twins (1M facts): a smoke run.
    "family-small": dict(kbs=["family-small"], **_FAMILY),
    # The ports in examples/ (ports.py) against their original pure-torch formulations, forward +
    # backward from a materialised gradient; --kbs chooses the sizes (PORT_SIZES), --ops the ports.
    "ports": dict(kbs=["ports-small"], ops=list(PORTS)),
}


def _csv(s):
    return [x for x in s.split(",") if x]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kgqa-bench", description=__doc__)
    ap.add_argument("--suite", choices=sorted(SUITES), default="quick")
    ap.add_argument("--kbs", type=_csv, help=f"comma list of KB keys ({', '.join(kb_specs())}) or groups "
                                              f"({', '.join(KB_GROUPS)}); with --suite ports, sizes "
                                              f"({', '.join(PORT_SIZES)})")
    ap.add_argument("--batches", type=lambda s: [int(x) for x in _csv(s)])
    ap.add_argument("--x", dest="x_kinds", type=_csv, help=",".join(X_KINDS))
    ap.add_argument("--modes", type=_csv, help=",".join(MODES))
    ap.add_argument("--ops", type=_csv, help=",".join(OPS) + f"; with --suite ports, ports ({','.join(PORTS)})")
    ap.add_argument("--providers", type=_csv, help="only these providers (names as in the tables; "
                                                   "a suite may choose some, 'all' lifts its choice)")
    ap.add_argument("--metaqa-kb", help="path to MetaQA's kb.txt: the metaqa KB is then the real one")
    ap.add_argument("--repeats", type=int, help="timed calls per provider and workload (default: the suite's, else 5)")
    ap.add_argument("--case-seconds", type=float,
                    help="a provider stops repeating in a workload once its timed calls took this long "
                         "(default: the suite's, else 60)")
    ap.add_argument("--min-repeats", type=int,
                    help="timed calls a provider gets whatever --case-seconds says (default: the suite's, else 3)")
    ap.add_argument("--quiet", action="store_true", help="print nothing while running (no progress, no log)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads")
    ap.add_argument("--memory-budget-gb", type=float, help="skip providers whose intermediates need more")
    ap.add_argument("--out", default="bench-results", help="output folder")
    ap.add_argument("--render", metavar="JSON", help="only write the Markdown and PNG of an earlier results.json")
    ap.add_argument("--gpu-model", metavar="GPUS", type=_csv,
                    help="also write gpu-model.md/.json: the GPU work model's predicted times (not measurements) "
                         "for the suite's KBs and batches on these GPU presets (h100,h200; docs/gpu.md)")
    args = ap.parse_args(argv)
    for g in args.gpu_model or []:
        from .gpu_model import GPUS

        if g not in GPUS:
            ap.error(f"--gpu-model: gpu must be one of {sorted(GPUS)}, got {g!r}")
    if args.render:
        with open(args.render) as f:
            result = json.load(f)
        os.makedirs(args.out, exist_ok=True)
        return _write_reports(result, args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.suite == "ports":
        return _run_ports(ap, args)
    chosen = dict(SUITES[args.suite])
    providers = chosen.pop("providers", None)
    if args.providers:
        providers = None if args.providers == ["all"] else args.providers
    for key in ("kbs", "batches", "x_kinds", "modes", "ops"):
        if getattr(args, key):
            chosen[key] = getattr(args, key)
    timing = _timing_args(ap, args, chosen)
    chosen["kbs"] = expand_kb_keys(chosen["kbs"])
    known = kb_specs(args.metaqa_kb)
    for flag, key, valid in (("--ops", "ops", OPS), ("--kbs", "kbs", known), ("--x", "x_kinds", X_KINDS),
                             ("--modes", "modes", MODES)):
        for v in chosen[key]:
            if v not in valid:
                ap.error(f"{flag}: unknown {v!r}; choose from {', '.join(valid)}")
    cfg = Config(providers=providers, device=args.device, metaqa_kb=args.metaqa_kb,
                 memory_budget_gb=args.memory_budget_gb, **timing, **chosen)
    rc = _run(args, lambda log, progress, on_case: run_suite(cfg, log=log, progress=progress, on_case=on_case))
    if rc == 0 and args.gpu_model:
        _write_gpu_model(args, chosen)
    return rc


def _timing_args(ap, args, chosen) -> dict:
    """repeats, case_seconds and min_repeats: the flags', else the suite's (popped from chosen), else
    the defaults; checked."""
    timing = {key: chosen.pop(key, default) for key, default in
              (("repeats", 5), ("case_seconds", 60.0), ("min_repeats", 3))}
    timing.update({key: getattr(args, key) for key in timing if getattr(args, key) is not None})
    if timing["repeats"] < 1:
        ap.error(f"--repeats must be at least 1, got {timing['repeats']}")
    if not timing["case_seconds"] > 0:
        ap.error(f"--case-seconds must be positive, got {timing['case_seconds']}")
    if timing["min_repeats"] < 1:
        ap.error(f"--min-repeats must be at least 1, got {timing['min_repeats']}")
    timing["min_repeats"] = min(timing["min_repeats"], timing["repeats"])
    return timing


def _run(args, measure) -> int:
    """Runs measure(log, progress, on_case) with the result files written as it goes; after an
    interruption (Ctrl-C) the files hold every case finished before it, and the exit status is 130."""
    quiet = args.quiet
    say = (lambda s: None) if quiet else (lambda s: print(s, flush=True))
    progress = Progress(stream=None if quiet else sys.stderr)
    files = ResultFiles(args.out)
    try:
        result, interrupted = measure(say, progress, files.case), None
    except KeyboardInterrupt:
        result, interrupted = None, f"after {progress.done} of {progress.total} cases"
        if progress.start is not None:
            interrupted += f" ({duration(progress.clock() - progress.start)})"
    written = files.finish(result, interrupted)
    if interrupted:
        print(f"interrupted {interrupted}" + (f"; kept what was measured in {args.out}" if written else
                                              "; nothing was measured"), file=sys.stderr, flush=True)
    say("")
    for what, where in written:
        say(_written_line(what, where))
    return 130 if interrupted else 0


def _run_ports(ap, args) -> int:
    """The ports suite: its own grid (port x size), rows in the same JSON and Markdown."""
    for flag in ("batches", "x_kinds", "modes", "providers", "metaqa_kb", "memory_budget_gb", "gpu_model"):
        if getattr(args, flag):
            ap.error(f"--suite ports: --{flag.replace('_kinds', '').replace('_', '-')} does not apply (each size "
                     f"fixes its batch; every port runs forward + backward from a materialised gradient)")
    chosen = dict(SUITES["ports"])
    sizes, ports = args.kbs or chosen["kbs"], args.ops or chosen["ops"]
    for flag, values, valid in (("--kbs", sizes, PORT_SIZES), ("--ops", ports, PORTS)):
        for v in values:
            if v not in valid:
                ap.error(f"{flag}: unknown {v!r} for --suite ports; choose from {', '.join(valid)}")
    timing = _timing_args(ap, args, chosen)
    return _run(args, lambda log, progress, on_case: run_ports(ports, sizes, device=args.device, log=log,
                                                               progress=progress, on_case=on_case, **timing))


def _write_gpu_model(args, chosen) -> None:
    """The work model's predictions beside the measured suite (it builds each KB again)."""
    from . import gpu_model

    model = gpu_model.run(chosen["kbs"], [], args.gpu_model, chosen["batches"], ["float32", "bfloat16"], args.metaqa_kb)
    with open(os.path.join(args.out, "gpu-model.json"), "w") as f:
        json.dump(model, f, indent=1)
    with open(os.path.join(args.out, "gpu-model.md"), "w") as f:
        f.write(gpu_model.markdown(model))
    print(f"wrote {os.path.join(args.out, 'gpu-model.md')} (predicted GPU times, not measurements)")


def _written_line(what, where) -> str:
    return f"no plot: {where}" if what == "no plot" else f"wrote {where}"


def _write_reports(result, out) -> int:
    for what, where in write_reports(result, out):
        print(_written_line(what, where))
    return 0


if __name__ == "__main__":
    sys.exit(main())
