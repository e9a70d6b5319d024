"""A short end-to-end run of the ops on a generated KB, checked and timed against torch.sparse
(ReifKB's formulation). `make demo-kernels` runs it; `python -m kgqa_kernels.demo --help` for sizes."""
from __future__ import annotations

import argparse
import time
import warnings

import torch

import kgqa_kernels as kk
from kgqa_kernels import reference
from kgqa_kernels.synthetic import power_law_kb


def _best_ms(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


def _fwd_bwd(follow_fn, x, r):
    def run():
        xg, rg = x.detach().requires_grad_(), r.detach().requires_grad_()
        follow_fn(xg, rg).sum().backward()
        return xg.grad, rg.grad

    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entities", type=int, default=50_000)
    ap.add_argument("--relations", type=int, default=18)
    ap.add_argument("--facts", type=int, default=500_000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

    t0 = time.perf_counter()
    kb = power_law_kb(args.entities, args.relations, args.facts, seed=0)
    print(f"{kb}\n  built in {time.perf_counter() - t0:.2f} s (deduplicated, three index orders)")
    B = args.batch
    g = torch.Generator().manual_seed(0)
    # A first hop: each question starts from one topic entity; the relation weights are soft.
    seeds = torch.randint(0, kb.num_entities, (B,), generator=g)
    x = torch.zeros(B, kb.num_entities).index_put_((torch.arange(B), seeds), torch.tensor(1.0))
    r1 = torch.softmax(torch.randn(B, kb.num_relations, generator=g), -1)
    r2 = torch.softmax(torch.randn(B, kb.num_relations, generator=g), -1)
    hop1 = kk.follow(x, r1, kb)
    hop2 = kk.follow(hop1, r2, kb)
    print(f"two hops from {B} topic entities: {int((hop1 > 0).sum())} then {int((hop2 > 0).sum())} entities reached")

    mats = {
        layout: (lambda m: (m[0], m[1], m[2].t().to_sparse_csr() if layout == torch.sparse_csr else m[2].t()))(
            reference.incidence_matrices(kb, layout)
        )
        for layout in (torch.sparse_coo, torch.sparse_csr)
    }
    providers = {
        "kgqa_kernels (C++ CPU)": lambda x, r: kk.follow(x, r, kb),
        "torch.sparse COO (ReifKB)": lambda x, r: reference.follow_sparse(x, r, kb, matrices=mats[torch.sparse_coo]),
        "torch.sparse CSR (ReifKB)": lambda x, r: reference.follow_sparse(x, r, kb, matrices=mats[torch.sparse_csr]),
    }
    xd = torch.rand(B, kb.num_entities, generator=g)  # a later hop: dense entity weights
    truth = providers["torch.sparse COO (ReifKB)"](xd, r1)
    print(f"\nfollow on dense x [{B} x {kb.num_entities}], best of {args.repeats} (ms):")
    print(f"  {'provider':28s} {'forward':>9s} {'fwd+bwd':>9s} {'max|y-y_COO| / max|y_COO|':>27s}")
    timings = {}
    for name, fn in providers.items():
        diff = ((fn(xd, r1) - truth).abs().max() / truth.abs().max()).item()
        fwd = _best_ms(lambda: fn(xd, r1), args.repeats)
        both = _best_ms(_fwd_bwd(fn, xd, r1), args.repeats)
        timings[name] = (fwd, both)
        print(f"  {name:28s} {fwd:9.1f} {both:9.1f} {diff:27.1e}")
    ours = timings["kgqa_kernels (C++ CPU)"]
    csr = timings["torch.sparse CSR (ReifKB)"]
    print(f"  speed-up over torch.sparse CSR: forward {csr[0] / ours[0]:.1f}x, forward+backward {csr[1] / ours[1]:.1f}x")

    xs, rs = [xd, torch.rand(B, kb.num_entities, generator=g)], [r1, r2]
    fused = kk.follow_intersect(xs, rs, kb)
    unfused = kk.intersect(*[kk.follow(a, b, kb) for a, b in zip(xs, rs)])
    ref = reference.follow_intersect(xs, rs, kb)
    rel = (fused - ref).abs().max() / ref.abs().max()
    print(f"\nfollow_intersect of 2 branches: max |fused - unfused| = {(fused - unfused).abs().max():.1e}, "
          f"max |fused - torch.sparse| / max |torch.sparse| = {rel:.1e}")
    t_fused = _best_ms(lambda: kk.follow_intersect(xs, rs, kb), args.repeats)
    t_unfused = _best_ms(lambda: kk.intersect(*[kk.follow(a, b, kb) for a, b in zip(xs, rs)]), args.repeats)
    print(f"  fused {t_fused:.1f} ms, two follows + intersect {t_unfused:.1f} ms")


if __name__ == "__main__":
    main()
