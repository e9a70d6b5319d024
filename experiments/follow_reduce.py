"""What follow's other reductions and messages cost (follow(..., reduce=, message=); docs/ops.md),
per KB: B = 64, row-major x (half zeros) and r requiring grad, a materialised upstream gradient,
forward + backward, providers timed in rounds (kgqa_kernels.bench.measure.time_interleaved), median
ms (quartiles): each (reduce, message) on the C++ backend, and on the reference backend (the
definition, reference.follow_generalized: gather + index_add / scatter_reduce over [B, T]
intermediates, PyG's way).

Usage: python experiments/follow_reduce.py [--kbs metaqa] [--repeats 5]
(kbs: keys of kgqa_kernels.bench.workloads.kb_specs)"""
from __future__ import annotations

import argparse

import torch

import kgqa_kernels as kk
from kgqa_kernels.bench.measure import time_interleaved
from kgqa_kernels.bench.workloads import kb_specs

CASES = [("sum", "mul"), ("mean", "mul"), ("sum", "add"), ("mean", "add"), ("max", "mul"), ("min", "add")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kbs", default="metaqa")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print("| KB | reduce, message | cpu backend (ms) | reference backend (ms) | reference / cpu |")
    print("|---|---|---|---|---|")
    for key in args.kbs.split(","):
        spec = kb_specs()[key]
        kb = spec.build()
        g = torch.Generator().manual_seed(0)
        B = 64
        x = torch.rand(B, kb.num_entities, generator=g)
        x[x < 0.5] = 0
        x.requires_grad_()
        r = torch.softmax(torch.randn(B, kb.num_relations, generator=g), 1).requires_grad_()
        grad = torch.randn(B, kb.num_entities, generator=g)

        def run(reduce, message, backend):
            def f():
                x.grad = r.grad = None
                kk.follow(x, r, kb, reduce=reduce, message=message, backend=backend).backward(grad)
            return f

        for reduce, message in CASES:
            fns = [run(reduce, message, "cpu"), run(reduce, message, "reference")]
            t = time_interleaved(fns, torch.device("cpu"), repeats=args.repeats, warmup=1)
            ref = t[-1]
            ours = f"{t[0].median_ms:,.1f} ({t[0].p25_ms:,.1f}-{t[0].p75_ms:,.1f})"
            ratio = f"{ref.median_ms / t[0].median_ms:.1f}x"
            print(f"| {spec.name} | {reduce}, {message} | {ours} | {ref.median_ms:,.1f} ({ref.p25_ms:,.1f}-"
                  f"{ref.p75_ms:,.1f}) | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
