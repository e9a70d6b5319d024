"""What the prefetch in csrc/transpose.h (transpose_into) buys: the transpose of a row-major
[B, E] fp32 tensor with and without it, into an already touched buffer and into a fresh one (as
transpose_copy allocates), beside torch's Tensor.contiguous(). Medians of --repeats rounds, each
variant once per round. Prints a Markdown table.

Usage: python experiments/transpose_prefetch.py [--batch 64] [--entities 1000000] [--repeats 7]"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch.utils.cpp_extension import load

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--entities", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    ext = load("kgqa_transpose_prefetch", [os.path.join(HERE, "transpose_prefetch.cpp")],
               extra_include_paths=[os.path.join(HERE, "..", "csrc")],
               extra_cflags=["-O3", "-fno-math-errno", "-fopenmp"], extra_ldflags=["-fopenmp"])
    src = torch.rand(args.batch, args.entities)
    want = src.t().contiguous()
    touched = torch.zeros(args.entities, args.batch)
    variants = {
        "Tensor.contiguous(), fresh": lambda: src.t().contiguous(),
        "without prefetch, fresh": lambda: ext.run(src, False, True, touched),
        "with prefetch, fresh": lambda: ext.run(src, True, True, touched),
        "without prefetch, touched": lambda: ext.run(src, False, False, touched),
        "with prefetch, touched": lambda: ext.run(src, True, False, touched),
    }
    for fn in variants.values():
        assert torch.equal(fn(), want)
    times = {k: [] for k in variants}
    for _ in range(args.repeats):
        for k, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(1e3 * (time.perf_counter() - t0))
    print(f"| {args.batch} x {args.entities:,} fp32 -> transpose, {torch.get_num_threads()} threads | median ms |")
    print("|---|---|")
    for k, v in times.items():
        print(f"| {k} | {statistics.median(v):.0f} |")


if __name__ == "__main__":
    main()
