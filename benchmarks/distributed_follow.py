"""Wall time of one sharded hop (ShardedSparseKB.follow on N gloo processes on this machine's CPU)
against the single-process kgqa_kernels.follow on the same KB and batch.

    python benchmarks/distributed_follow.py --world 2 3

Default KB: kgqa-bench's pl-1m (power-law, 1M entities, 1,000 relations, 1M facts), B = 64,
float32. Ops: the dense pull forward (later hops), pull forward + backward (x and r need
gradients), and a first hop from one seed entity per example (auto: the sparse-frontier push). Each
op runs --repeats times after one warm-up, every rank starting together (a barrier); a sharded
time is the slowest rank's median. The baseline runs in this process with --baseline-threads
threads (default: --threads), each rank with --threads threads. These are CPU/gloo numbers over
loopback TCP: they show what the exchange costs next to the kernels, not what NCCL on GPUs does.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kgqa_kernels as kk  # noqa: E402
from kgqa_kernels import synthetic  # noqa: E402


def build_kb(args) -> kk.SparseKB:
    if args.kb == "power-law":
        return synthetic.power_law_kb(args.entities, args.relations, args.facts, seed=args.seed)
    g = torch.Generator().manual_seed(args.seed)
    s, p, o = (torch.randint(0, n, (args.facts,), generator=g) for n in (args.entities, args.relations, args.entities))
    return kk.SparseKB(s, p, o, args.entities, args.relations)


def make_inputs(args, dtype=torch.float32):
    g = torch.Generator().manual_seed(args.seed + 1)
    x = torch.rand(args.batch, args.entities, generator=g).to(dtype)
    r = torch.rand(args.batch, args.relations, generator=g).to(dtype)
    seeds = torch.zeros(args.batch, args.entities, dtype=dtype)
    seeds[torch.arange(args.batch), torch.randint(0, args.entities, (args.batch,), generator=g)] = 1
    return x, r, seeds


def timed(fn, repeats, sync=lambda: None):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ops(follow, x, r, seeds):
    def fwd():
        follow(x, r, direction="pull")

    def fwd_bwd():
        xl, rl = x.detach().requires_grad_(), r.detach().requires_grad_()
        follow(xl, rl).sum().backward()

    def first_hop():
        follow(seeds, r)

    return {"pull forward": fwd, "pull forward + backward": fwd_bwd, "first hop (one seed, push)": first_hop}


def worker(rank, world, port, args, out_path):
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(minutes=10))
    kb = build_kb(args)
    t0 = time.perf_counter()
    skb = kk.ShardedSparseKB(kb.subj, kb.rel, kb.obj, kb.num_entities, kb.num_relations)
    build_s = time.perf_counter() - t0
    del kb
    lo, hi = skb.shard_range()
    x, r, seeds = make_inputs(args)
    x, seeds = x[:, lo:hi].contiguous(), seeds[:, lo:hi].contiguous()
    res = {"rank": rank, "local_facts": skb.num_local_facts, "memory": skb.local_memory(), "build_s": build_s}
    for name, fn in ops(lambda x, r, **kw: skb.follow(x, r, **kw), x, r, seeds).items():
        res[name] = timed(fn, args.repeats, sync=dist.barrier)
    everyone = [None] * world
    dist.all_gather_object(everyone, res)
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump(everyone, f)
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", type=int, nargs="+", default=[2, 3], help="numbers of gloo processes")
    ap.add_argument("--entities", type=int, default=1_000_000)
    ap.add_argument("--relations", type=int, default=1000)
    ap.add_argument("--facts", type=int, default=1_000_000)
    ap.add_argument("--kb", choices=("power-law", "uniform"), default="power-law")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each rank")
    ap.add_argument("--baseline-threads", type=int, default=None, help="torch threads of the baseline (default: --threads)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.baseline_threads or args.threads)
    kb = build_kb(args)
    x, r, seeds = make_inputs(args)
    print(f"KB: {args.kb}, {kb.num_entities:,} entities, {kb.num_relations:,} relations, {kb.num_facts:,} facts; "
          f"B = {args.batch}, float32; torch threads: {args.baseline_threads or args.threads} (single process), "
          f"{args.threads} (each rank); {os.cpu_count()} cores; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    base = {name: timed(fn, args.repeats) for name, fn in ops(lambda x, r, **kw: kk.follow(x, r, kb, **kw), x, r, seeds).items()}
    del kb, x, seeds
    rows = {name: [f"{1e3 * t:,.1f}"] for name, t in base.items()}
    notes = []
    for world in args.world:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "res.json")
            mp.start_processes(worker, args=(world, free_port(), args, out), nprocs=world, start_method="spawn")
            with open(out) as f:
                res = json.load(f)
        for name in base:
            slowest = max(rr[name] for rr in res)
            rows[name].append(f"{1e3 * slowest:,.1f} ({slowest / base[name]:.2f}x)")
        facts = [rr["local_facts"] for rr in res]
        mib = [rr["memory"]["total"] / 2**20 for rr in res]
        notes.append(f"N = {world}: facts per rank {facts}; KB bytes per rank {[f'{m:.1f} MiB' for m in mib]}; "
                     f"build {max(rr['build_s'] for rr in res):.1f} s")
    print()
    print("| op | single process (ms) | " + " | ".join(f"sharded, N = {w} (ms, vs single)" for w in args.world) + " |")
    print("|---|---|" + "---|" * len(args.world))
    for name, cells in rows.items():
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    for n in notes:
        print(n)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
