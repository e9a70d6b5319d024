"""What the kernels' bounds checks and their one order of operations cost: times follow (pull
forward; forward + backward with a materialised upstream gradient; dr alone), follow_intersect with
two branches, and a one-hot push, on 10M-fact power-law KBs (subject/object exponents 1.1 and 0.8),
B = 64, CPU. Run it once per build and compare, alternating builds so both see the same machine
load:

    for i in 1 2 3; do
      PYTHONPATH=OLD_CHECKOUT python experiments/bounds_cost.py --label before
      python experiments/bounds_cost.py --label after
    done

Prints one JSON line per KB: the median seconds of each op over --repeats runs.
"""
import argparse
import json
import os
import statistics
import time

import torch

import kgqa_kernels as kk
from kgqa_kernels.synthetic import power_law_kb


def load_kb(exponent: float, facts: int, cache_dir: str):
    """The KB's facts are generated once and kept in cache_dir (generation takes minutes)."""
    path = os.path.join(cache_dir, f"pl-{facts}-{exponent}.pt")
    if not os.path.exists(path):
        kb = power_law_kb(facts // 10, 1000, facts, exponent=exponent, seed=0)
        torch.save({"s": kb.subj, "p": kb.rel, "o": kb.obj, "E": kb.num_entities, "R": kb.num_relations}, path)
    d = torch.load(path)
    return kk.SparseKB(d["s"], d["p"], d["o"], d["E"], d["R"])


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: first touch of the buffers
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--facts", type=int, default=10_000_000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cache-dir", default="/tmp")
    args = ap.parse_args()
    for exponent in (1.1, 0.8):
        kb = load_kb(exponent, args.facts, args.cache_dir)
        g = torch.Generator().manual_seed(0)
        B, E, R = args.batch, kb.num_entities, kb.num_relations
        x = torch.rand(E, B, generator=g)  # batch innermost, as the raw ops take it
        r = torch.rand(R, B, generator=g)
        grad = torch.rand(E, B, generator=g)
        kt = kb.tensors()
        ops = torch.ops.kgqa_kernels
        hubs = torch.bincount(kb.subj, minlength=E).argsort(descending=True)[:B]  # one-hot seeds
        ptr, ids, vals = torch.arange(B + 1), hubs.clone(), torch.ones(B)
        row = {
            "follow": lambda: ops.follow(x, r, kt, False),
            "follow dx": lambda: ops.follow(grad, r, kt, True),
            "follow dr": lambda: ops.follow_backward_r(x, grad, kt, False),
            "follow_intersect-2": lambda: ops.follow_intersect([x, grad], [r, r], kt, False, "min", True),
            "push one-hot (hubs)": lambda: ops.follow_push(ptr, ids, vals, r, kt, False),
        }
        out = {name: round(timed(fn, args.repeats), 4) for name, fn in row.items()}
        print(json.dumps({"label": args.label, "kb": f"pl-{args.facts}-zipf{exponent}", "B": B,
                          "threads": torch.get_num_threads(), "median_s": out}), flush=True)


if __name__ == "__main__":
    main()
