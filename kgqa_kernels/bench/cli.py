"""kgqa-bench: run a chosen set of benchmarks; write JSON, a Markdown table and a PNG plot."""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from .ports import PORT_SIZES, PORTS, run_ports
from .providers import MODES
from .report import markdown, plot
from .runner import OPS, Config, run_suite
from .workloads import KB_GROUPS, X_KINDS, expand_kb_keys, kb_specs

# The family suites' grid: the layouts users pass (a row-major x with and without requires_grad,
# and the batch-innermost one chained hops hand on), sum() and a materialised upstream gradient,
# two chained hops; and the providers the per-shape targets compare (report.evaluate_shape_targets).
_FAMILY = dict(batches=[64], x_kinds=["dense-rowmajor", "dense-rowmajor-nograd", "dense"],
               modes=["forward", "fwd+bwd", "fwd+bwd-grad", "2-hop-fwd+bwd-grad"], ops=["follow"],
               providers=["kgqa:cpu", "torch.sparse-csr", "csr-spmm-floor", "csr-spmm-floor-bi"])

SUITES = {
    # A few minutes: every provider on small and mid-size KBs.
    "quick": dict(kbs=["small", "metaqa", "pl-1m"], batches=[16, 64], x_kinds=["dense", "one-hot"],
                  modes=["forward", "fwd+bwd"], ops=["follow", "follow_intersect-2"]),
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
    ap.add_argument("--repeats", type=int, default=5)
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
    chosen["kbs"] = expand_kb_keys(chosen["kbs"])
    known = kb_specs(args.metaqa_kb)
    for flag, key, valid in (("--ops", "ops", OPS), ("--kbs", "kbs", known), ("--x", "x_kinds", X_KINDS),
                             ("--modes", "modes", MODES)):
        for v in chosen[key]:
            if v not in valid:
                ap.error(f"{flag}: unknown {v!r}; choose from {', '.join(valid)}")
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "results.json")
    cfg = Config(providers=providers, repeats=args.repeats, device=args.device, metaqa_kb=args.metaqa_kb,
                 memory_budget_gb=args.memory_budget_gb, out_json=json_path, **chosen)
    result = run_suite(cfg, log=lambda s: print(s, flush=True))
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {json_path}")
    rc = _write_reports(result, args.out)
    if args.gpu_model:
        _write_gpu_model(args, chosen)
    return rc


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
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "results.json")
    result = run_ports(ports, sizes, repeats=args.repeats, device=args.device, log=lambda s: print(s, flush=True),
                       out_json=json_path)
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {json_path}")
    return _write_reports(result, args.out)


def _write_gpu_model(args, chosen) -> None:
    """The work model's predictions beside the measured suite (it builds each KB again)."""
    from . import gpu_model

    model = gpu_model.run(chosen["kbs"], [], args.gpu_model, chosen["batches"], ["float32", "bfloat16"], args.metaqa_kb)
    with open(os.path.join(args.out, "gpu-model.json"), "w") as f:
        json.dump(model, f, indent=1)
    with open(os.path.join(args.out, "gpu-model.md"), "w") as f:
        f.write(gpu_model.markdown(model))
    print(f"wrote {os.path.join(args.out, 'gpu-model.md')} (predicted GPU times, not measurements)")


def _write_reports(result, out) -> int:
    md_path = os.path.join(out, "results.md")
    with open(md_path, "w") as f:
        f.write(markdown(result))
    png_path = os.path.join(out, "results.png")
    wrote_png = plot(result, png_path)
    print(f"wrote {md_path}" + (f", {png_path}" if wrote_png else " (no dense follow records to plot)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
