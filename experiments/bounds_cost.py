"""What the kernels' bounds checks and their one order of operations cost, against an earlier build:
follow (pull forward), its dx (the pull the other way), dr, follow_intersect with two branches and
a one-hot push from 64 hub entities, through the raw CPU ops, on 10M-fact power-law KBs (Zipf 1.1
and 0.8 over 1M entities, 1,000 relations), B = 64.

These machines are shared and their speed drifts by tens of percent within minutes, so the two
builds run side by side: one worker process per build (the earlier one imports kgqa_kernels from
--before, a checkout with its compiled extension), each loads the KB once, and the driver asks them
in turn for one timing at a time, alternating which goes first. Each op's cost is the median of the
paired ratios (this build / earlier build). The pairs are spread over --rounds pairs of fresh
worker processes, since a process's memory placement biases all its timings.

    python experiments/bounds_cost.py --before /path/to/earlier/checkout [--pairs 15] [--rounds 3]
        [--ops "follow,follow dx"] [--exponents 1.1]

Prints one JSON line per KB and op: the medians of both builds and of the paired ratios.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch


def load_kb(exponent: float, facts: int, cache_dir: str):
    """The KB's tensor list and subjects, generated once and kept in cache_dir (the list is the same
    for both builds: csrc/kb_layout.h did not change its slots)."""
    from kgqa_kernels.synthetic import power_law_kb

    path = os.path.join(cache_dir, f"pl-{facts}-{exponent}-tensors.pt")
    if not os.path.exists(path):
        kb = power_law_kb(facts // 10, 1000, facts, exponent=exponent, seed=0)
        torch.save({"tensors": kb.tensors(), "subj": kb.subj}, path)
    d = torch.load(path)
    return d["tensors"], d["subj"]


def workloads(kt, subj, batch):
    import kgqa_kernels  # noqa: F401  (registers the ops)
    from kgqa_kernels import layout

    g = torch.Generator().manual_seed(0)
    E, R = kt[layout.OBJ_PTR].numel() - 1, kt[layout.REL_PTR].numel() - 1
    x = torch.rand(E, batch, generator=g)  # batch innermost, as the raw ops take it
    r = torch.rand(R, batch, generator=g)
    grad = torch.rand(E, batch, generator=g)
    ops = torch.ops.kgqa_kernels
    hubs = torch.bincount(subj, minlength=E).argsort(descending=True)[:batch]  # one-hot seeds
    ptr, ids, vals = torch.arange(batch + 1), hubs.clone(), torch.ones(batch)
    return {
        "follow": lambda: ops.follow(x, r, kt, False),
        "follow dx": lambda: ops.follow(grad, r, kt, True),
        "follow dr": lambda: ops.follow_backward_r(x, grad, kt, False),
        "follow_intersect-2": lambda: ops.follow_intersect([x, grad], [r, r], kt, False, "min", True),
        "push one-hot (hubs)": lambda: ops.follow_push(ptr, ids, vals, r, kt, False),
    }


def worker(args) -> None:
    """Reads 'KB OP' lines, answers with the seconds of one call (after one warm-up per op)."""
    kbs = {}
    for line in sys.stdin:
        kb_name, op = line.rstrip("\n").split(" ", 1)
        if kb_name not in kbs:
            kt, subj = load_kb(float(kb_name), args.facts, args.cache_dir)
            kbs[kb_name] = workloads(kt, subj, args.batch)
            for fn in kbs[kb_name].values():
                fn()
        fn = kbs[kb_name][op]
        t0 = time.perf_counter()
        fn()
        print(time.perf_counter() - t0, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", help="checkout (with its built extension) of the build to compare with")
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3, help="fresh worker processes this many times")
    ap.add_argument("--facts", type=int, default=10_000_000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--ops", default="all", help="comma list of op names, or all")
    ap.add_argument("--exponents", default="1.1,0.8", help="comma list of the KBs' Zipf exponents")
    ap.add_argument("--cache-dir", default="/tmp")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if not args.before:
        ap.error("--before is required")
    exponents = [float(e) for e in args.exponents.split(",")]
    for exponent in exponents:
        load_kb(exponent, args.facts, args.cache_dir)  # generate once, outside the timings
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--facts", str(args.facts), "--batch",
           str(args.batch), "--cache-dir", args.cache_dir]
    names = ["follow", "follow dx", "follow dr", "follow_intersect-2", "push one-hot (hubs)"]
    if args.ops != "all":
        names = [n for n in names if n in args.ops.split(",")]
    times = {(e, op): {"before": [], "after": []} for e in exponents for op in names}
    for rnd in range(args.rounds):
        # Fresh workers each round: one process's memory placement made the same build 4% faster or
        # slower than another process of itself (this script with --before a copy of this build), for
        # the whole life of the process.
        procs = {}
        for label, root in (("before", args.before), ("after", here)):
            env = dict(os.environ, PYTHONPATH=root)
            procs[label] = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

        def ask(label, kb_name, op):
            p = procs[label]
            p.stdin.write(f"{kb_name} {op}\n")
            p.stdin.flush()
            return float(p.stdout.readline())

        for exponent in exponents:
            for op in names:
                for i in range(rnd, args.pairs, args.rounds):  # this round's share of the pairs
                    order = ("before", "after") if i % 2 == 0 else ("after", "before")
                    for label in order:
                        times[exponent, op][label].append(ask(label, str(exponent), op))
        for p in procs.values():
            p.stdin.close()
            p.wait()
        print(f"round {rnd + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    for (exponent, op), t in times.items():
        ratios = [a / b for a, b in zip(t["after"], t["before"])]
        print(json.dumps({
            "kb": f"pl-{args.facts}-zipf{exponent}", "op": op, "B": args.batch, "pairs": len(ratios),
            "rounds": args.rounds,
            "before_median_s": round(statistics.median(t["before"]), 4),
            "after_median_s": round(statistics.median(t["after"]), 4),
            "ratio_median": round(statistics.median(ratios), 3),
            "ratio_quartiles": [round(q, 3) for q in statistics.quantiles(ratios, n=4)],
        }), flush=True)

if __name__ == "__main__":
    main()
