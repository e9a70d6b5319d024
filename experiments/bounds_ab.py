"""What the CPU kernels' id checks cost (csrc/bounds.h; issue: no benchmark may slow by more than
3%): builds experiments/bounds_ab.cpp twice, the package's loops with the checks
(KGQA_BOUNDS_CHECKS=1, as shipped) and without (0), both for AVX2 as the package's default copy;
checks both against the package's ops, then times them in alternation in one process, rounds of
one call each, on B = 64 fp32 inputs on huge pages: the forward pull, the inverse pull (dx), dr and
follow_intersect k = 2 (min). Prints per KB and pass the median of each and the median of the paired
ratios (checked / unchecked) with their quartiles.

Usage: python experiments/bounds_ab.py [--kbs zipf-0.8,zipf-1.2] [--pairs 15]
(kbs: keys of kgqa_kernels.bench.workloads.kb_specs; a 10M-fact KB takes about 20 s to build)"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch.utils.cpp_extension import load

import kgqa_kernels as kk  # noqa: F401  (loads the ops compared against)
from kgqa_kernels.bench.workloads import kb_specs

HERE = os.path.dirname(os.path.abspath(__file__))


def build(checks: int):
    ns = "ab_checked" if checks else "ab_unchecked"
    return load(f"kgqa_bounds_{ns}", [os.path.join(HERE, "bounds_ab.cpp")],
                extra_include_paths=[os.path.join(HERE, "..", "csrc")],
                extra_cflags=["-O3", "-fno-math-errno", "-fopenmp", f"-DKGQA_BOUNDS_CHECKS={checks}",
                              f"-DKGQA_CPU_NS={ns}"], extra_ldflags=["-fopenmp"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kbs", default="zipf-0.8,zipf-1.2,zipf-s1.2-uniform,metaqa")
    ap.add_argument("--pairs", type=int, default=15)
    args = ap.parse_args()
    mods = {"checked": build(1), "unchecked": build(0)}
    ops = torch.ops.kgqa_kernels
    print("| KB | pass | checked (ms) | unchecked (ms) | checked / unchecked, paired: median (quartiles) |")
    print("|---|---|---|---|---|")
    for key in args.kbs.split(","):
        kb = kb_specs()[key].build()
        T, B = kb.tensors(), 64
        g = torch.Generator().manual_seed(0)
        x = torch.rand(B, kb.num_entities, generator=g)
        x[x < 0.5] = 0
        x = ops.transpose_copy(x)
        grad = ops.transpose_copy(torch.randn(B, kb.num_entities, generator=g))
        r = torch.softmax(torch.randn(kb.num_relations, B, generator=g), 0)
        passes = {
            "forward pull": (lambda m: m.pull(x, r, T, False), lambda: ops.follow(x, r, T, False)),
            "inverse pull (dx)": (lambda m: m.pull(grad, r, T, True), lambda: ops.follow(grad, r, T, True)),
            "dr": (lambda m: m.dr(x, grad, T), lambda: ops.follow_backward_r(x, grad, T, False)),
            "follow_intersect k=2": (lambda m: m.intersect2([x, grad], [r, r], T),
                                     lambda: ops.follow_intersect([x, grad], [r, r], T, False, "min", False)[0]),
        }
        for name, (fn, reference) in passes.items():
            want = reference()
            for m in mods.values():  # also the warm-up
                assert torch.equal(fn(m), want), f"{name}: a build differs from the package's op"
            times = {k: [] for k in mods}
            for i in range(args.pairs):  # alternate which goes first
                for k in (list(mods) if i % 2 == 0 else list(mods)[::-1]):
                    t0 = time.perf_counter()
                    fn(mods[k])
                    times[k].append(1e3 * (time.perf_counter() - t0))
            ratios = [a / b for a, b in zip(times["checked"], times["unchecked"])]
            q = statistics.quantiles(ratios, n=4)
            print(f"| {kb_specs()[key].name} | {name} | {statistics.median(times['checked']):,.0f} | "
                  f"{statistics.median(times['unchecked']):,.0f} | {statistics.median(ratios):.3f} "
                  f"({q[0]:.2f}-{q[2]:.2f}) |", flush=True)


if __name__ == "__main__":
    main()
