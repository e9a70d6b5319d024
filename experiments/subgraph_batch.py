"""What a follow over per-example subgraphs costs (kgqa_kernels.SubgraphBatch), as TransferNet's
CompWebQ model and edge dropout need: B subgraphs of about F facts each, cut from MetaQA's shape
(each example: the facts around a few random seed entities, relabelled to local ids), three ways,
each median of --repeats:

- batch: SubgraphBatch built from the B subgraphs, then one follow forward + backward;
- per example: a SparseKB built per subgraph, then B follows forward + backward;
- global: the global KB (built once, outside the timing) and one follow forward + backward of a
  [B, E] x, with each example's seeds in its row: the cost of ignoring that the graphs are small.

Also times SparseKB's build on MetaQA's shape and on a 10M-fact KB (--big).

Usage: python experiments/subgraph_batch.py [--batch 64] [--facts 400] [--repeats 5] [--big]"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import kgqa_kernels as kk
from kgqa_kernels.bench.workloads import kb_specs


def timed(fn, repeats):
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(ts)


def cut_subgraphs(kb, batch, facts, g):
    """Per example: facts leaving random seeds until about `facts` are taken, relabelled locally."""
    out = []
    subj, rel, obj = kb.subj, kb.rel, kb.obj
    ptr = torch.zeros(kb.num_entities + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(subj, minlength=kb.num_entities), 0, out=ptr[1:])  # kb.subj is sorted
    for _ in range(batch):
        picked = []
        while sum(p.numel() for p in picked) < facts:
            e = int(torch.randint(0, kb.num_entities, (1,), generator=g))
            picked.append(torch.arange(int(ptr[e]), int(ptr[e + 1])))
        idx = torch.cat(picked)[:facts]
        s, p, o = subj[idx], rel[idx], obj[idx]
        ids, local = torch.unique(torch.cat([s, o]), return_inverse=True)
        out.append((local[: idx.numel()], p, local[idx.numel():], ids.numel(), s))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--facts", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--big", action="store_true", help="also time building a 10M-fact SparseKB")
    args = ap.parse_args()
    spec = kb_specs()["metaqa"]
    kb = spec.build()
    B, R = args.batch, kb.num_relations
    g = torch.Generator().manual_seed(0)
    graphs = cut_subgraphs(kb, B, args.facts, g)
    r = torch.rand(B, R, generator=g, requires_grad=True)
    seeds = [torch.zeros(n) for _, _, _, n, _ in graphs]
    for x, graph in zip(seeds, graphs):
        x[graph[0][0]] = 1.0  # the first fact's subject seeds the example

    def batch_way():
        sb = kk.SubgraphBatch([gr[:4] for gr in graphs], R)
        x = torch.zeros(B, sb.max_entities)
        for b, s in enumerate(seeds):
            x[b, : s.numel()] = s
        x.requires_grad_()
        sb.follow(x, r).sum().backward()

    def per_example():
        for b, gr in enumerate(graphs):
            own = kk.SparseKB(gr[0], gr[1], gr[2], gr[3], R)
            x = seeds[b][None].clone().requires_grad_()
            kk.follow(x, r[b:b + 1], own).sum().backward()

    xg = torch.zeros(B, kb.num_entities)
    for b, gr in enumerate(graphs):
        xg[b, gr[4][0]] = 1.0
    xg.requires_grad_()

    def global_way():
        kk.follow(xg, r, kb).sum().backward()

    sb = kk.SubgraphBatch([gr[:4] for gr in graphs], R)
    build = timed(lambda: kk.SubgraphBatch([gr[:4] for gr in graphs], R), args.repeats)
    print(f"{B} subgraphs of {args.facts} facts from {spec.name} ({sb.kb.num_facts:,} facts, "
          f"{int(sb.offsets[-1]):,} entities joined)")
    print("| way | forward + backward (ms) |")
    print("|---|---|")
    print(f"| SubgraphBatch: build only | {build:.1f} |")
    print(f"| SubgraphBatch: build, then one follow | {timed(batch_way, args.repeats):.1f} |")
    print(f"| a SparseKB and a follow per example | {timed(per_example, args.repeats):.1f} |")
    print(f"| one follow over the global KB ({kb.num_entities:,} entities) | {timed(global_way, args.repeats):.1f} |")
    t = (kb.subj, kb.rel, kb.obj)
    print(f"\nSparseKB build, {spec.name} ({kb.num_facts:,} facts): "
          f"{timed(lambda: kk.SparseKB(*t, kb.num_entities, R), args.repeats):.0f} ms")
    if args.big:
        big = kb_specs()["zipf-0.8"].build()
        t = (big.subj, big.rel, big.obj)
        print(f"SparseKB build, zipf-0.8-10M ({big.num_facts:,} facts): "
              f"{timed(lambda: kk.SparseKB(*t, big.num_entities, big.num_relations), 3):,.0f} ms")


if __name__ == "__main__":
    main()
