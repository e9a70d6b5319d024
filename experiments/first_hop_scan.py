"""Where a first hop with a dense one-hot x spends its time: in one process, alternated, 7 rounds,
on the 10M-fact power-law KB (`pl-10m`), B = 64, one seed per example: follow with the auto
direction (which scans x for its nonzeros, then pushes), the scan alone (`dense_frontier`), the
push alone (x given as a sparse tensor),
`x.sum()` and `torch.count_nonzero(x)` (torch's own reads of x, for the memory bandwidth), and the
dense pull. x is the benchmark suite's one-hot input (`workloads.make_inputs`); a push costs the
facts leaving its seeds, so other seeds (a hub among them) give other push times. Prints the
seeds' out-degree, and the median and the fastest of each.

Usage: python experiments/first_hop_scan.py [--kb pl-10m] [--rounds 7]"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import kgqa_kernels as kk
from kgqa_kernels.bench.workloads import kb_specs, make_inputs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kb", default="pl-10m")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    kb = kb_specs()[args.kb].build()
    B, E = 64, kb.num_entities
    xs, rs = make_inputs(kb, B, "one-hot", torch.device("cpu"))
    x, r = xs[0], rs[0]
    xsp = x.to_sparse()
    seeds = x.nonzero()[:, 1]
    out_degree = torch.bincount(kb.subj, minlength=E)[seeds]
    ops = torch.ops.kgqa_kernels
    fns = {
        "follow, auto (scan, then push)": lambda: kk.follow(x, r, kb),
        "dense_frontier (the scan)": lambda: ops.dense_frontier(x, 2**20),
        "follow, x sparse (the push alone)": lambda: kk.follow(xsp, r, kb),
        "x.sum()": lambda: x.sum(),
        "torch.count_nonzero(x)": lambda: torch.count_nonzero(x),
        "follow, pull": lambda: kk.follow(x, r, kb, direction="pull"),
    }
    times = {k: [] for k in fns}
    with torch.no_grad():
        for fn in fns.values():
            fn()
        for _ in range(args.rounds):
            for k, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(1e3 * (time.perf_counter() - t0))
    print(f"seeds' out-degree: {int(out_degree.sum()):,} facts in all, largest {int(out_degree.max()):,}")
    print(f"| {kb_specs()[args.kb].name}, B = {B}, x {x.numel() * 4 / 2**20:.0f} MiB | median (ms) | fastest (ms) |")
    print("|---|---|---|")
    for k, v in times.items():
        print(f"| {k} | {statistics.median(v):.1f} | {min(v):.1f} |")


if __name__ == "__main__":
    main()
