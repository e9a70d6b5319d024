"""What a row-major [B, E] input costs follow on the CPU, in one process: the transpose of a
64 x 1M fp32 tensor by torch's Tensor.contiguous() (what the ops did) against transpose_copy (what
they do: csrc/transpose.h); follow forward and forward + backward (a materialised row-major
upstream gradient) with x row-major against the same values already batch-innermost; and the
forward as the ops ran it before (torch's transpose, then the kernel); the inverse pull that makes
x's gradient, written row-major by the kernel against transposed after it. Medians of --repeats calls,
alternated. Prints a Markdown table.

With --huge-pages, every row twice: the kernels' buffers on huge pages (their default) and with
KGQA_HUGE_PAGES=0.

Usage: python experiments/rowmajor_layout.py [--kb zipf-0.8] [--repeats 5] [--huge-pages]
(--kb: a key of kgqa_kernels.bench.workloads.kb_specs; the 10M-fact ones take about 20-60 s to build)."""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

import kgqa_kernels as kk
from kgqa_kernels.bench.workloads import kb_specs

transpose_copy = torch.ops.kgqa_kernels.transpose_copy
follow_op = torch.ops.kgqa_kernels.follow


def pages_env(fn, flag: str):
    """fn run with KGQA_HUGE_PAGES=flag (the kernels read it at each allocation)."""
    def run():
        os.environ["KGQA_HUGE_PAGES"] = flag
        try:
            return fn()
        finally:
            os.environ.pop("KGQA_HUGE_PAGES")
    return run


def median_ms(fns: dict, repeats: int) -> dict:
    """Each fn once to warm up, then `repeats` rounds calling every fn once per round."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(1e3 * (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kb", default="zipf-0.8")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--huge-pages", action="store_true",
                    help="run every row twice, with the kernels' buffers on huge pages and with "
                         "KGQA_HUGE_PAGES=0 (csrc/huge_pages.h), alternated in each round")
    args = ap.parse_args()
    spec = kb_specs()[args.kb]
    t0 = time.perf_counter()
    kb = spec.build()
    print(f"{spec.name}: {kb.num_facts:,} facts, built in {time.perf_counter() - t0:.1f} s; "
          f"{torch.get_num_threads()} threads")
    B, E, R = args.batch, kb.num_entities, kb.num_relations
    g = torch.Generator().manual_seed(0)
    x_rm = torch.rand(B, E, generator=g)
    x_rm[x_rm < 0.5] = 0
    x_bi = x_rm.t().contiguous().t()  # the same values, batch innermost
    r = torch.softmax(torch.randn(B, R, generator=g), -1)
    grad_rm = torch.randn(B, E, generator=g)
    grad_bi = grad_rm.t().contiguous().t()
    r_bi = r.t().contiguous()

    def fwd_bwd(x, grad):
        x = x.detach().requires_grad_()
        r1 = r.detach().requires_grad_()
        kk.follow(x, r1, kb, direction="pull").backward(grad)
        return x.grad, r1.grad

    fns = {
        "transpose: Tensor.contiguous()": lambda: x_rm.t().contiguous(),
        "transpose: transpose_copy": lambda: transpose_copy(x_rm),
        "forward, x row-major": lambda: kk.follow(x_rm, r, kb, direction="pull"),
        "forward, x row-major, transposed by torch first (as before)":
            lambda: kk.follow(x_rm.t().contiguous().t(), r, kb, direction="pull"),
        "forward, x batch-innermost": lambda: kk.follow(x_bi, r, kb, direction="pull"),
        "inverse pull (x's gradient) in x's row-major layout, written by the kernel (row_major)":
            lambda: follow_op(grad_bi.t(), r_bi, kb.tensors(), True, True),
        "inverse pull, contiguous, then transpose_copy (as before)":
            lambda: transpose_copy(follow_op(grad_bi.t(), r_bi, kb.tensors(), True)).t(),
        "fwd+bwd, x and grad row-major": lambda: fwd_bwd(x_rm, grad_rm),
        "fwd+bwd, x and grad batch-innermost": lambda: fwd_bwd(x_bi, grad_bi),
    }
    if args.huge_pages:
        fns = {f"{k} [{pages}]": pages_env(fn, flag) for k, fn in fns.items()
               for pages, flag in (("huge pages", "1"), ("4 KiB pages", "0"))}
    rows = median_ms(fns, args.repeats)
    print(f"\n| {spec.name}, B = {B}, fp32 | median ms ({args.repeats} rounds) |\n|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v:.1f} |")


if __name__ == "__main__":
    main()
