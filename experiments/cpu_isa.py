"""What the AVX2 copy of the CPU loops gains over the baseline one (csrc/cpu/isa.h): in one process,
the two alternated through KGQA_CPU_ISA, the forward pull, the inverse pull (dx), dr and the fused
follow_intersect of 2 branches (min) on B = 64 fp32 inputs on huge pages (as the ops' own [E, B]
buffers are), and follow forward + backward through the public API with a row-major x and a
materialised row-major upstream gradient.
Checks that both give the same bits. Prints the median ms per pass and ISA, and their ratio.

Usage: python experiments/cpu_isa.py [--kbs zipf-0.8,zipf-1.2] [--repeats 5]
(kbs: keys of kgqa_kernels.bench.workloads.kb_specs; a 10M-fact KB takes about 20 s to build)"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

import kgqa_kernels as kk
from kgqa_kernels.bench.workloads import kb_specs


def use(isa: str) -> None:
    if isa == "baseline":
        os.environ["KGQA_CPU_ISA"] = "baseline"
    else:
        os.environ.pop("KGQA_CPU_ISA", None)
    assert kk._C.cpu_isa() == isa, f"asked for {isa}, the kernels run {kk._C.cpu_isa()}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kbs", default="zipf-0.8,zipf-1.2,zipf-s1.2-uniform,metaqa")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    ops = torch.ops.kgqa_kernels
    isas = ("baseline", "avx2")
    print("| KB | pass | baseline (ms) | avx2 (ms) | avx2 / baseline |")
    print("|---|---|---|---|---|")
    for key in args.kbs.split(","):
        kb = kb_specs()[key].build()
        T, B, E, R = kb.tensors(), 64, kb.num_entities, kb.num_relations
        g = torch.Generator().manual_seed(0)
        x_rm = torch.rand(B, E, generator=g)
        x_rm[x_rm < 0.5] = 0
        grad_rm = torch.randn(B, E, generator=g)
        r_rm = torch.softmax(torch.randn(B, R, generator=g), 1)
        x, grad = ops.transpose_copy(x_rm), ops.transpose_copy(grad_rm)
        r = r_rm.t().contiguous()

        def fwd_bwd():
            xl, rl = x_rm.clone().requires_grad_(), r_rm.clone().requires_grad_()
            kk.follow(xl, rl, kb).backward(grad_rm)
            return xl.grad, rl.grad

        passes = {
            "forward pull": lambda: ops.follow(x, r, T, False),
            "inverse pull (dx)": lambda: ops.follow(grad, r, T, True),
            "dr": lambda: ops.follow_backward_r(x, grad, T, False),
            "follow_intersect k=2 (min)": lambda: ops.follow_intersect([x, grad], [r, r], T, False, "min", False)[0],
            "follow fwd+bwd, row-major x and grad": fwd_bwd,
        }
        for name, fn in passes.items():
            outs = {}
            for isa in isas:  # also the warm-up
                use(isa)
                outs[isa] = fn()
            for a, b in zip(*[o if isinstance(o, tuple) else (o,) for o in outs.values()]):
                assert torch.equal(a, b), f"{name}: the two ISAs differ"
            del outs
            times = {isa: [] for isa in isas}
            for _ in range(args.repeats):
                for isa in isas:
                    use(isa)
                    t0 = time.perf_counter()
                    fn()
                    times[isa].append(1e3 * (time.perf_counter() - t0))
            med = {isa: statistics.median(v) for isa, v in times.items()}
            print(f"| {kb_specs()[key].name} | {name} | {med['baseline']:,.0f} | {med['avx2']:,.0f} | "
                  f"{med['avx2'] / med['baseline']:.2f} |", flush=True)
    os.environ.pop("KGQA_CPU_ISA", None)


if __name__ == "__main__":
    main()
