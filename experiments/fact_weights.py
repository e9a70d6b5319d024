"""What trainable fact weights cost (SparseKB(..., weight=w) with w.requires_grad, kb.with_weight;
docs/ops.md "Trainable fact weights"), per KB: B = 64, a row-major x [B, E] with half zeros and r
[B, R], both requiring grad, a materialised row-major upstream gradient; providers timed in rounds
(kgqa_kernels.bench.measure.time_interleaved), medians with quartiles:

- follow fwd+bwd, weights fixed (gradients of x and r);
- follow fwd+bwd, weights trained (the same plus w.grad): the extra is follow_backward_w and the
  per-call map of the weight onto the KB's three orders;
- follow_backward_w alone, and follow_backward_r (dr) alone for scale;
- kb.with_weight(w) (a re-weighting without a build) and the KB's build;
- with --reference: the reference backend (ReifKB's torch.sparse formulation, autograd gives
  w.grad) fwd+bwd with weights trained, and its peak memory against ours.

Usage: python experiments/fact_weights.py [--kbs zipf-0.8,metaqa] [--repeats 5] [--reference]
(kbs: keys of kgqa_kernels.bench.workloads.kb_specs)"""
from __future__ import annotations

import argparse
import time

import torch

import kgqa_kernels as kk
from kgqa_kernels.bench.measure import peak_memory_bytes, time_interleaved
from kgqa_kernels.bench.workloads import kb_specs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kbs", default="zipf-0.8,metaqa")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reference", action="store_true", help="also the reference backend (skip at 10M: ~12 GiB)")
    args = ap.parse_args()
    cpu = torch.device("cpu")
    ops = torch.ops.kgqa_kernels
    print("| KB | what | median ms (quartiles) |")
    print("|---|---|---|")
    for key in args.kbs.split(","):
        spec = kb_specs()[key]
        t0 = time.perf_counter()
        structure = spec.build()
        build_ms = 1e3 * (time.perf_counter() - t0)
        g = torch.Generator().manual_seed(0)
        w0 = torch.rand(structure.num_input_facts, generator=g) + 0.5
        fixed = structure.with_weight(w0)
        w = w0.clone().requires_grad_()
        trained = structure.with_weight(w)
        B, E, R = 64, structure.num_entities, structure.num_relations
        x = torch.rand(B, E, generator=g)
        x[x < 0.5] = 0
        x.requires_grad_()
        r = torch.softmax(torch.randn(B, R, generator=g), 1).requires_grad_()
        grad = torch.randn(B, E, generator=g)

        def fwd_bwd(kb, backend=None):
            def run():
                x.grad = r.grad = w.grad = None
                kk.follow(x, r, kb, backend=backend).backward(grad)
            return run

        xt, gt, rt, T = ops.transpose_copy(x.detach()), ops.transpose_copy(grad), r.detach().t().contiguous(), \
            fixed.tensors()
        named = [
            ("follow fwd+bwd, weights fixed", fwd_bwd(fixed)),
            ("follow fwd+bwd, weights trained", fwd_bwd(trained)),
            ("follow_backward_w (dw) alone", lambda: ops.follow_backward_w(xt, rt, gt, T, False)),
            ("follow_backward_r (dr) alone", lambda: ops.follow_backward_r(xt, gt, T, False)),
            ("kb.with_weight(w)", lambda: structure.with_weight(w0)),
        ]
        if args.reference:
            named.append(("reference (torch.sparse) fwd+bwd, weights trained", fwd_bwd(trained, "reference")))
        timings = time_interleaved([fn for _, fn in named], cpu, repeats=args.repeats, warmup=1)
        for (name, _), t in zip(named, timings):
            print(f"| {spec.name} | {name} | {t.median_ms:,.1f} ({t.p25_ms:,.1f}-{t.p75_ms:,.1f}) |", flush=True)
        print(f"| {spec.name} | generating and building the KB (once, for scale) | {build_ms:,.0f} |", flush=True)
        if args.reference:
            ours = peak_memory_bytes(fwd_bwd(trained), cpu)
            ref = peak_memory_bytes(fwd_bwd(trained, "reference"), cpu)
            print(f"| {spec.name} | peak memory, weights trained: ours / reference | {ours / 2**20:,.0f} / "
                  f"{ref / 2**20:,.0f} MiB |", flush=True)


if __name__ == "__main__":
    main()
