"""How far ahead the CPU pulls and dr should request the rows they gather (csrc/cpu/pull_row.h:
kPrefetchFacts). Builds experiments/prefetch_distance.cpp, the package's pull_row and sum_chunk at
distances 0 (no prefetch), 4, ..., 64, checks each against the package's ops, and prints the median
time of the forward pull, the inverse pull (dx) and dr per distance, on B = 64 fp32 dense inputs.

Usage: python experiments/prefetch_distance.py [--kbs zipf-0.8,zipf-1.2] [--distances 0,16,32,64]
[--repeats 3] [--passes forward,dx,dr] [--huge-pages] (--huge-pages: the gathered inputs made by
transpose_copy, on the huge pages the ops' own [E, B] buffers get, as a row-major x's copy and a
follow's output are) (kbs: keys of kgqa_kernels.bench.workloads.kb_specs; a 10M-fact KB takes 20-60 s to build)."""
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kbs", default="zipf-0.8,zipf-1.2,zipf-s1.2-uniform,metaqa")
    ap.add_argument("--distances", default="0,16,32,64")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--passes", default="forward,dx,dr")
    ap.add_argument("--huge-pages", action="store_true")
    args = ap.parse_args()
    ext = load("kgqa_prefetch_distance", [os.path.join(HERE, "prefetch_distance.cpp")],
               extra_include_paths=[os.path.join(HERE, "..", "csrc")],
               extra_cflags=["-O3", "-fno-math-errno", "-fopenmp"], extra_ldflags=["-fopenmp"])
    distances = [int(d) for d in args.distances.split(",")]
    ops = torch.ops.kgqa_kernels
    print(f"| KB | pass | " + " | ".join(f"{d} ahead (ms)" for d in distances) + " |")
    print("|---|---|" + "---|" * len(distances))
    for key in args.kbs.split(","):
        kb = kb_specs()[key].build()
        T, B = kb.tensors(), args.batch
        g = torch.Generator().manual_seed(0)
        x = torch.rand(kb.num_entities, B, generator=g)
        x[x < 0.5] = 0
        r = torch.softmax(torch.randn(kb.num_relations, B, generator=g), 0)
        grad = torch.randn(kb.num_entities, B, generator=g)
        if args.huge_pages:
            x, grad = ops.transpose_copy(x.t().contiguous()), ops.transpose_copy(grad.t().contiguous())
        passes = {
            "forward": ("forward pull", lambda d: ext.pull(x, r, T, False, d), lambda: ops.follow(x, r, T, False)),
            "dx": ("inverse pull (dx)", lambda d: ext.pull(grad, r, T, True, d), lambda: ops.follow(grad, r, T, True)),
            "dr": ("dr", lambda d: ext.dr(x, grad, T, d), lambda: ops.follow_backward_r(x, grad, T, False)),
        }
        for key_pass in args.passes.split(","):
            name, fn, reference = passes[key_pass]
            want = reference()
            times = {d: [] for d in distances}
            for d in distances:  # also the warm-up
                torch.testing.assert_close(fn(d), want, rtol=1e-4, atol=1e-3)
            for _ in range(args.repeats):
                for d in distances:
                    t0 = time.perf_counter()
                    fn(d)
                    times[d].append(1e3 * (time.perf_counter() - t0))
            cells = " | ".join(f"{statistics.median(times[d]):,.0f}" for d in distances)
            print(f"| {kb_specs()[key].name} | {name} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
